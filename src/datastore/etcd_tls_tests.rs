//! The TLS files' checks, on certificates generated for each test (no etcd needed).

use super::*;

#[path = "../../tests/support/tls_certs.rs"]
mod tls_certs;
use tls_certs::{write_certificates, TestCertificates};

const HTTPS: &str = "https://127.0.0.1:2379";

fn https() -> Vec<String> {
    vec![HTTPS.to_string()]
}

fn client_files(certs: &TestCertificates) -> EtcdTlsFiles {
    EtcdTlsFiles {
        ca_cert_file: Some(certs.ca.clone()),
        cert_file: Some(certs.client_cert.clone()),
        key_file: Some(certs.client_key.clone()),
    }
}

fn error_text(endpoints: &[String], files: &EtcdTlsFiles) -> String {
    match tls_settings(endpoints, files) {
        Ok(_) => panic!("{files:?} was accepted"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn good_files_give_tls_options_for_https_and_none_for_http() {
    let directory = tempfile::tempdir().unwrap();
    let certs = write_certificates(directory.path());
    let files = client_files(&certs);
    assert!(tls_settings(&https(), &files).unwrap().is_some());
    assert!(tls_settings(&https(), &EtcdTlsFiles::default())
        .unwrap()
        .is_some());
    let http = vec!["http://127.0.0.1:2379".to_string()];
    assert!(tls_settings(&http, &files).unwrap().is_none());
    assert!(tls_settings(&http, &EtcdTlsFiles::default())
        .unwrap()
        .is_none());
}

#[test]
fn every_broken_file_is_named_with_its_variable() {
    let directory = tempfile::tempdir().unwrap();
    let certs = write_certificates(directory.path());
    let missing = directory.path().join("absent.pem");
    let garbage = directory.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();

    let mut files = client_files(&certs);
    files.key_file = Some(missing.clone());
    let text = error_text(&https(), &files);
    assert!(
        text.starts_with(&format!("ETCD_KEY_FILE {}: cannot read", missing.display())),
        "{text}"
    );

    let mut files = client_files(&certs);
    files.ca_cert_file = Some(garbage.clone());
    let text = error_text(&https(), &files);
    assert!(
        text.starts_with(&format!("ETCD_CA_CERT_FILE {}:", garbage.display())),
        "{text}"
    );
    assert!(text.contains("no PEM certificate"), "{text}");

    // A certificate where the key should be.
    let mut files = client_files(&certs);
    files.key_file = Some(certs.client_cert.clone());
    let text = error_text(&https(), &files);
    assert!(
        text.starts_with(&format!("ETCD_KEY_FILE {}:", certs.client_cert.display())),
        "{text}"
    );
    assert!(text.contains("no PEM private key"), "{text}");

    // Broken files are reported for http endpoints too: they were meant to be used.
    let http = vec!["http://127.0.0.1:2379".to_string()];
    let mut files = client_files(&certs);
    files.cert_file = Some(garbage.clone());
    let text = error_text(&http, &files);
    assert!(
        text.starts_with(&format!("ETCD_CERT_FILE {}:", garbage.display())),
        "{text}"
    );
}

#[test]
fn a_key_of_another_certificate_is_a_mismatch_naming_both_files() {
    let directory = tempfile::tempdir().unwrap();
    let certs = write_certificates(directory.path());
    let mut files = client_files(&certs);
    files.key_file = Some(certs.other_key.clone());
    let text = error_text(&https(), &files);
    assert_eq!(
        text,
        format!(
            "ETCD_KEY_FILE {} is not the private key of the certificate in ETCD_CERT_FILE {}",
            certs.other_key.display(),
            certs.client_cert.display()
        )
    );
}

#[test]
fn a_certificate_without_its_key_and_mixed_schemes_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let certs = write_certificates(directory.path());
    let mut files = client_files(&certs);
    files.key_file = None;
    assert_eq!(
        error_text(&https(), &files),
        "ETCD_CERT_FILE is set but ETCD_KEY_FILE is not: a client certificate needs both"
    );
    let mut files = client_files(&certs);
    files.cert_file = None;
    assert_eq!(
        error_text(&https(), &files),
        "ETCD_KEY_FILE is set but ETCD_CERT_FILE is not: a client certificate needs both"
    );
    let mixed = vec![HTTPS.to_string(), "http://127.0.0.1:2380".to_string()];
    assert!(error_text(&mixed, &EtcdTlsFiles::default()).contains("mixes http:// and https://"));
}

#[test]
fn environment_values_are_trimmed_and_empty_means_unset() {
    let files = EtcdTlsFiles::from_env(|name| match name {
        "ETCD_CA_CERT_FILE" => Some(" /etc/etcd/ca.pem ".to_string()),
        "ETCD_CERT_FILE" => Some(String::new()),
        _ => None,
    });
    assert_eq!(
        files,
        EtcdTlsFiles {
            ca_cert_file: Some(PathBuf::from("/etc/etcd/ca.pem")),
            cert_file: None,
            key_file: None,
        }
    );
}
