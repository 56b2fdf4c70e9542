//! Test certificates made with rcgen and written as PEM files: a CA, a server certificate for
//! 127.0.0.1 and localhost and a client certificate it signs, plus an unrelated CA and key to
//! get things wrong with. Shared by the unit tests of `datastore::etcd_tls` and tests/etcd_tls.rs.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Paths of the generated files (all under the directory given to [`write_certificates`]).
// Each user reads only the files it needs.
#[allow(dead_code)]
pub struct TestCertificates {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed none of the above.
    pub other_ca: PathBuf,
    /// A key that belongs to none of the certificates.
    pub other_key: PathBuf,
    /// A client certificate (and its key) signed by the other CA.
    pub foreign_client_cert: PathBuf,
    pub foreign_client_key: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).expect("a CA certificate").pem();
    (params, key, pem)
}

fn leaf(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> (String, String) {
    let key = KeyPair::generate().expect("a leaf key");
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "starling-test");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("a leaf certificate");
    (cert.pem(), key.serialize_pem())
}

fn write(directory: &Path, name: &str, content: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Generates every certificate and key and writes them into `directory`.
pub fn write_certificates(directory: &Path) -> TestCertificates {
    let (ca_params, ca_key, ca_pem) = ca("starling test CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let (server_cert, server_key) = leaf(
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    );
    let (client_cert, client_key) = leaf(
        &["starling-client"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    );
    let (other_params, other_ca_key, other_ca_pem) = ca("unrelated CA");
    let other_key_pem = other_ca_key.serialize_pem();
    let other_issuer = Issuer::new(other_params, other_ca_key);
    let (foreign_cert, foreign_key) = leaf(
        &["starling-client"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &other_issuer,
    );
    TestCertificates {
        ca: write(directory, "ca.pem", &ca_pem),
        server_cert: write(directory, "server.pem", &server_cert),
        server_key: write(directory, "server-key.pem", &server_key),
        client_cert: write(directory, "client.pem", &client_cert),
        client_key: write(directory, "client-key.pem", &client_key),
        other_ca: write(directory, "other-ca.pem", &other_ca_pem),
        other_key: write(directory, "other-key.pem", &other_key_pem),
        foreign_client_cert: write(directory, "foreign-client.pem", &foreign_cert),
        foreign_client_key: write(directory, "foreign-client-key.pem", &foreign_key),
    }
}
