//! Certificates for tests of TLS: a certificate authority of the test's own, a server
//! certificate it signs for the loopback address, and client certificates, written as PEM
//! files into a folder of the test's own (removed on drop).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::unique;

/// A certificate authority and the certificates it signed, as files.
pub struct TestPki {
    dir: PathBuf,
    key: KeyPair,
    ca: rcgen::Certificate,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    /// A new certificate authority named `name`, its certificate written to [`TestPki::ca_file`].
    pub fn new(name: &str) -> TestPki {
        let dir = std::env::temp_dir().join(unique("pulse-pki"));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        let ca = params.self_signed(&key).expect("a self-signed CA");
        let pki = TestPki { dir, key, ca };
        write(&pki.ca_file(), &pki.ca.pem());
        pki
    }

    /// The PEM file of the authority's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `127.0.0.1` and `localhost`, signed by the authority.
    pub fn server(&self) -> CertFiles {
        self.issue(
            "server",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate for `name`, signed by the authority.
    pub fn client(&self, name: &str) -> CertFiles {
        self.issue(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A file of the folder, written with `contents`: for settings given a file that is not
    /// what they expect.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        write(&path, contents);
        path
    }

    fn issue(&self, name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose) -> CertFiles {
        let mut params = CertificateParams::new(sans).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.ca, &self.key)
            .expect("a signed certificate");
        let files = CertFiles {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        };
        write(&files.cert, &cert.pem());
        write(&files.key, &key.serialize_pem());
        files
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &Path, contents: &str) {
    if let Err(e) = std::fs::write(path, contents) {
        panic!("cannot write {}: {e}", path.display());
    }
}
