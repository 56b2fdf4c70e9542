//! The start-up probe of etcd's https endpoints: one TLS connection per endpoint with the
//! configured CA and client certificate, so a misconfiguration is an error naming the endpoint,
//! what failed and the file to look at, instead of requests that keep failing later.
//!
//! The probe speaks rustls directly rather than through etcd-client: behind tonic and h2 the
//! reason a server closes the connection is reduced to text or lost (a TLS 1.3 server checks the
//! client certificate after the handshake, and its alert races the close). Here the probe writes
//! the HTTP/2 preface and reads until the server's first frame or its alert, which makes the
//! answer deterministic. An endpoint that does not answer at all is not an error: the callers
//! retry (start-up's backoff, `WAIT_FOR_DATASTORE`).

use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    EtcdConnectError, EtcdTls, EtcdTlsFiles, CA_CERT_VARIABLE, CERT_VARIABLE, KEY_VARIABLE,
};

/// What one endpoint's probe found.
enum Probe {
    Answered,
    Unreachable(String),
    Tls(String),
}

/// How long connecting to one endpoint, and then its first answer, may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP/2 client preface and an empty SETTINGS frame (RFC 9113 §3.4, §6.5): what makes an
/// HTTP/2 server answer with its own SETTINGS.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Probes every https endpoint once. An error when no endpoint answered and at least one failed
/// its TLS handshake (a configuration problem no retry fixes); TLS failures of some endpoints
/// while others answer, and endpoints that do not answer, are logged.
pub async fn probe(
    endpoints: &[String],
    tls: &EtcdTls,
    files: &EtcdTlsFiles,
) -> Result<(), EtcdConnectError> {
    let mut answered = false;
    let mut first_tls = None;
    for endpoint in endpoints {
        match probe_one(endpoint, tls, files).await {
            Probe::Answered => answered = true,
            Probe::Unreachable(reason) => {
                tracing::warn!(%endpoint, %reason, "etcd endpoint does not answer yet");
            }
            Probe::Tls(detail) => {
                tracing::warn!(%endpoint, %detail, "etcd endpoint: TLS handshake failed");
                first_tls.get_or_insert(EtcdConnectError::Handshake {
                    endpoint: endpoint.clone(),
                    detail,
                });
            }
        }
    }
    match first_tls {
        Some(error) if !answered => Err(error),
        _ => Ok(()),
    }
}

/// Host and port of an `https://host[:port][/...]` URL (IPv6 hosts in brackets).
fn host_and_port(endpoint: &str) -> Option<(String, u16)> {
    let rest = endpoint.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => 443,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

async fn probe_one(endpoint: &str, tls: &EtcdTls, files: &EtcdTlsFiles) -> Probe {
    let Some((host, port)) = host_and_port(endpoint) else {
        return Probe::Unreachable("not an https://host:port URL".to_string());
    };
    let Ok(server_name) = ServerName::try_from(host.clone()) else {
        return Probe::Unreachable(format!("{host:?} is not a host name or address"));
    };
    let tcp = match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return Probe::Unreachable(error.to_string()),
        Err(_) => return Probe::Unreachable(format!("no connection within {PROBE_TIMEOUT:?}")),
    };
    let connector = tokio_rustls::TlsConnector::from(tls.probe_config.clone());
    let exchange = async {
        let mut stream = connector.connect(server_name, tcp).await?;
        stream.write_all(H2_PREFACE).await?;
        stream.flush().await?;
        let mut first = [0u8; 9];
        stream.read(&mut first).await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, exchange).await {
        Ok(Ok(0)) => Probe::Unreachable("closed the connection without answering".to_string()),
        Ok(Ok(_)) => Probe::Answered,
        Ok(Err(error)) => match tls_cause(&error) {
            Some(tls_error) => Probe::Tls(explain(tls_error, files)),
            None => Probe::Unreachable(error.to_string()),
        },
        Err(_) => Probe::Unreachable(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// The rustls error tokio-rustls wraps in an io error.
fn tls_cause(error: &std::io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

fn shown(path: &Option<PathBuf>) -> String {
    path.as_deref()
        .map(|path| path.display().to_string())
        .unwrap_or_default()
}

/// What a rustls error means for the operator, naming the file to look at.
fn explain(error: &rustls::Error, files: &EtcdTlsFiles) -> String {
    use rustls::{AlertDescription as Alert, CertificateError, Error};
    match error {
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("the server's certificate is not valid for this address ({error})"),
        Error::InvalidCertificate(_) => match &files.ca_cert_file {
            Some(_) => format!(
                "the server's certificate is not trusted by the CA in {CA_CERT_VARIABLE} {} \
                 ({error})",
                shown(&files.ca_cert_file)
            ),
            None => format!(
                "the server's certificate is not trusted by the system's root certificates \
                 ({error}); set {CA_CERT_VARIABLE} to the CA that signs etcd's certificates"
            ),
        },
        // The alerts with which a server refuses the client's certificate.
        Error::AlertReceived(
            alert @ (Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied),
        ) => match &files.cert_file {
            Some(_) => format!(
                "the server rejected the client certificate in {CERT_VARIABLE} {} \
                 (alert {alert:?})",
                shown(&files.cert_file)
            ),
            None => format!(
                "the server requires a client certificate (alert {alert:?}); set \
                 {CERT_VARIABLE} and {KEY_VARIABLE}"
            ),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::host_and_port;

    #[test]
    fn endpoint_urls_give_host_and_port() {
        let parsed = |url: &str| host_and_port(url);
        assert_eq!(
            parsed("https://127.0.0.1:2379"),
            Some(("127.0.0.1".into(), 2379))
        );
        assert_eq!(
            parsed("https://etcd.example:2379/"),
            Some(("etcd.example".into(), 2379))
        );
        assert_eq!(
            parsed("https://[fd00::1]:2379"),
            Some(("fd00::1".into(), 2379))
        );
        assert_eq!(parsed("https://etcd"), Some(("etcd".into(), 443)));
        assert_eq!(parsed("https://etcd:port"), None);
        assert_eq!(parsed("http://etcd:2379"), None);
    }
}
