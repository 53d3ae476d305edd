//! TLS towards NATS beyond what a `tls://` URL gives: the certificate authorities of a NATS
//! whose certificates no public authority signs (a cluster's own CA, as cert-manager issues),
//! and a client certificate for a server that verifies its clients (`verify`, or
//! `verify_and_map` to take the certificate for the user). With neither, a `tls://` URL (or a
//! server that requires TLS) is verified against the system's certificate authorities.
//!
//! The files are checked when the configuration is parsed, so a wrong path stops the service
//! at start with the variable named, and together before the first connect ([`NatsTls::check`]:
//! a key that is not the certificate's, an authority that cannot be a trust anchor); the client
//! reads them again at every (re)connect, so certificates renewed in place are taken up without
//! a restart.

use std::path::PathBuf;

use async_nats::ConnectOptions;

use crate::config_value::{certificates_file, private_key_file};

/// The `PULSE_NATS_CA_FILE`, `PULSE_NATS_CERT_FILE` and `PULSE_NATS_KEY_FILE` settings.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// PEM file of the certificate authorities that sign the NATS servers' certificates,
    /// trusted in place of the system's. Setting it requires TLS, whatever `NATS_URL`'s scheme.
    #[arg(id = "nats_ca_file", long = "nats-ca-file", env = "PULSE_NATS_CA_FILE",
          value_name = "PULSE_NATS_CA_FILE", value_parser = certificates_file())]
    pub ca_file: Option<PathBuf>,

    /// PEM certificate (and its chain) shown to a NATS server that verifies its clients;
    /// needs `PULSE_NATS_KEY_FILE`. Setting it requires TLS.
    #[arg(id = "nats_cert_file", long = "nats-cert-file", env = "PULSE_NATS_CERT_FILE",
          value_name = "PULSE_NATS_CERT_FILE", requires = "nats_key_file",
          value_parser = certificates_file())]
    pub cert_file: Option<PathBuf>,

    /// PEM private key of `PULSE_NATS_CERT_FILE`.
    #[arg(id = "nats_key_file", long = "nats-key-file", env = "PULSE_NATS_KEY_FILE",
          value_name = "PULSE_NATS_KEY_FILE", requires = "nats_cert_file",
          value_parser = private_key_file())]
    pub key_file: Option<PathBuf>,
}

impl NatsTls {
    /// Checks what each file can only be checked for beside the others, before the first
    /// connect: that the key is the client certificate's, and that every certificate of the
    /// authorities' file can be a trust anchor. Found wrong only at connect, either would
    /// leave the service retrying with nothing said but an IO error.
    pub fn check(&self) -> anyhow::Result<()> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certificates = |var: &str, path: &PathBuf| {
            CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("{var}: cannot read certificates from {path:?}: {e}"))
        };
        if let Some(ca) = &self.ca_file {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates("PULSE_NATS_CA_FILE", ca)? {
                roots.add(certificate).map_err(|e| {
                    anyhow::anyhow!("PULSE_NATS_CA_FILE: {ca:?} holds a certificate that cannot be a trust anchor: {e}")
                })?;
            }
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            let chain = certificates("PULSE_NATS_CERT_FILE", cert)?;
            let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                anyhow::anyhow!("PULSE_NATS_KEY_FILE: cannot read a private key from {key:?}: {e}")
            })?;
            let provider = rustls::crypto::ring::default_provider();
            rustls::sign::CertifiedKey::from_der(chain, private, &provider).map_err(|e| {
                anyhow::anyhow!(
                    "PULSE_NATS_KEY_FILE: {key:?} is not the key of the certificate in \
                     PULSE_NATS_CERT_FILE {cert:?}: {e}"
                )
            })?;
        }
        Ok(())
    }

    /// `options` with these settings applied: the certificate authorities to trust, the client
    /// certificate, and TLS required when either is set. A service given a CA or a client
    /// certificate means to talk TLS: a server (or whoever answers in its place) that does
    /// not offer it is refused, not talked to in the clear.
    pub fn apply(&self, mut options: ConnectOptions) -> ConnectOptions {
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.ca_file.is_some() || self.cert_file.is_some() {
            options = options.require_tls(true);
        }
        options
    }
}
