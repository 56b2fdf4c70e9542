//! TLS for the etcd connection: calico-node's `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE` and
//! `ETCD_KEY_FILE`.
//!
//! The files are read and checked before connecting (PEM content, a certificate together with
//! its key, the key belonging to the certificate), so a broken file is an error naming the
//! variable and the path instead of an opaque handshake failure later. Every https endpoint is
//! then probed once with the same settings ([`probe`], in `etcd_tls_probe.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use etcd_client::{Certificate, Identity, TlsOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[path = "etcd_tls_probe.rs"]
mod probe;
pub use probe::probe;

pub const CA_CERT_VARIABLE: &str = "ETCD_CA_CERT_FILE";
pub const CERT_VARIABLE: &str = "ETCD_CERT_FILE";
pub const KEY_VARIABLE: &str = "ETCD_KEY_FILE";

/// The TLS files as configured (each optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTlsFiles {
    /// The CA that signs etcd's server certificates; the system's roots when absent.
    pub ca_cert_file: Option<PathBuf>,
    /// The client certificate (with `key_file`) for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl EtcdTlsFiles {
    /// Reads the three variables; empty values count as unset, as in calico-node.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> EtcdTlsFiles {
        let path = |name: &str| {
            get(name)
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        EtcdTlsFiles {
            ca_cert_file: path(CA_CERT_VARIABLE),
            cert_file: path(CERT_VARIABLE),
            key_file: path(KEY_VARIABLE),
        }
    }

    fn any(&self) -> bool {
        self.ca_cert_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// Why the etcd connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EtcdConnectError {
    #[error("{variable} {}: cannot read the file: {error}", path.display())]
    Unreadable {
        variable: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{variable} {}: {problem}", path.display())]
    Invalid {
        variable: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("{set} is set but {missing} is not: a client certificate needs both")]
    Unpaired {
        set: &'static str,
        missing: &'static str,
    },
    #[error(
        "ETCD_KEY_FILE {} is not the private key of the certificate in ETCD_CERT_FILE {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("ETCD_ENDPOINTS mixes http:// and https:// URLs; use one scheme for every endpoint")]
    MixedSchemes,
    #[error("etcd at {endpoint}: TLS handshake failed: {detail}")]
    Handshake { endpoint: String, detail: String },
    #[error("connecting to etcd at {endpoints}: {reason}")]
    Connect { endpoints: String, reason: String },
}

/// The TLS settings of an https connection, built from the same files for etcd-client (tonic)
/// and for the start-up probe (plain rustls).
pub struct EtcdTls {
    pub options: TlsOptions,
    probe_config: Arc<rustls::ClientConfig>,
}

/// The TLS settings for `endpoints`: `None` for plain-http endpoints (the files, if set, are
/// still checked, so a broken file never goes unnoticed), otherwise the configured CA (or the
/// system's roots) and the client certificate.
pub fn tls_settings(
    endpoints: &[String],
    files: &EtcdTlsFiles,
) -> Result<Option<EtcdTls>, EtcdConnectError> {
    let https = endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    if https != 0 && https != endpoints.len() {
        return Err(EtcdConnectError::MixedSchemes);
    }
    let mut options = TlsOptions::new();
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca_cert_file {
        Some(path) => {
            let pem = read(CA_CERT_VARIABLE, path)?;
            roots = ca_roots(path, &pem)?;
            options = options.ca_certificate(Certificate::from_pem(pem));
        }
        // Go's crypto/tls (calico-node) trusts the system's roots when no CA is given.
        None => {
            options = options.with_native_roots();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| EtcdConnectError::Connect {
            endpoints: endpoints.join(","),
            reason: format!("TLS settings: {error}"),
        })?
        .with_root_certificates(roots);
    let mut probe_config = match (&files.cert_file, &files.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let cert = read(CERT_VARIABLE, cert_path)?;
            let key = read(KEY_VARIABLE, key_path)?;
            let (chain, private_key) = client_pair(&provider, cert_path, &cert, key_path, &key)?;
            options = options.identity(Identity::from_pem(cert, key));
            builder
                .with_client_auth_cert(chain, private_key)
                .map_err(|error| {
                    invalid(
                        CERT_VARIABLE,
                        cert_path,
                        format!("not usable with {KEY_VARIABLE}: {error}"),
                    )
                })?
        }
        (Some(_), None) => {
            return Err(EtcdConnectError::Unpaired {
                set: CERT_VARIABLE,
                missing: KEY_VARIABLE,
            })
        }
        (None, Some(_)) => {
            return Err(EtcdConnectError::Unpaired {
                set: KEY_VARIABLE,
                missing: CERT_VARIABLE,
            })
        }
        (None, None) => builder.with_no_client_auth(),
    };
    // etcd's gRPC server only speaks HTTP/2 and insists on ALPN saying so.
    probe_config.alpn_protocols = vec![b"h2".to_vec()];
    if https == 0 {
        if files.any() {
            tracing::warn!(
                "ETCD_CA_CERT_FILE / ETCD_CERT_FILE / ETCD_KEY_FILE are set but every \
                 ETCD_ENDPOINTS URL is http://: connecting without TLS"
            );
        }
        return Ok(None);
    }
    Ok(Some(EtcdTls {
        options,
        probe_config: Arc::new(probe_config),
    }))
}

fn read(variable: &'static str, path: &Path) -> Result<Vec<u8>, EtcdConnectError> {
    std::fs::read(path).map_err(|error| EtcdConnectError::Unreadable {
        variable,
        path: path.to_path_buf(),
        error,
    })
}

fn invalid(variable: &'static str, path: &Path, problem: impl Into<String>) -> EtcdConnectError {
    EtcdConnectError::Invalid {
        variable,
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn certificates(
    variable: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, EtcdConnectError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            invalid(
                variable,
                path,
                format!("not a PEM certificate file: {error}"),
            )
        })?;
    if certificates.is_empty() {
        return Err(invalid(
            variable,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certificates)
}

fn ca_roots(path: &Path, pem: &[u8]) -> Result<rustls::RootCertStore, EtcdConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    for (index, certificate) in certificates(CA_CERT_VARIABLE, path, pem)?
        .into_iter()
        .enumerate()
    {
        roots.add(certificate).map_err(|error| {
            invalid(
                CA_CERT_VARIABLE,
                path,
                format!("certificate {} is not usable as a CA: {error}", index + 1),
            )
        })?;
    }
    Ok(roots)
}

/// The client certificate chain and its key, checked to belong together.
fn client_pair(
    provider: &rustls::crypto::CryptoProvider,
    cert_path: &Path,
    cert: &[u8],
    key_path: &Path,
    key: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), EtcdConnectError> {
    let chain = certificates(CERT_VARIABLE, cert_path, cert)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|error| {
        invalid(
            KEY_VARIABLE,
            key_path,
            format!("holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {error}"),
        )
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|error| invalid(KEY_VARIABLE, key_path, format!("unusable key: {error}")))?;
    match rustls::sign::CertifiedKey::new(chain.clone(), signing_key).keys_match() {
        Ok(()) => Ok((chain, key)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(EtcdConnectError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        // The key type cannot say its public key: the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok((chain, key)),
        Err(error) => Err(invalid(
            CERT_VARIABLE,
            cert_path,
            format!("not a usable certificate: {error}"),
        )),
    }
}

#[cfg(test)]
#[path = "etcd_tls_tests.rs"]
mod tests;
