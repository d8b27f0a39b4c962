//! TLS on rustls/aws-lc-rs: the listener's (with optional client-certificate verification)
//! and the client settings for a TLS syslog collector.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Builds a rustls server config from PEM files. With `client_ca`, clients must present
/// a certificate chaining to it (mTLS).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>> {
    let (certs, key) = cert_and_key(cert, key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(ca) => {
            let roots = roots_from_pem(ca, "client CA")?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CA certificates in PEM file `path` (`what` names it in errors); at least one.
fn roots_from_pem(path: &Path, what: &str) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?
    {
        roots
            .add(cert.with_context(|| format!("invalid PEM in `{}`", path.display()))?)
            .with_context(|| format!("{what} certificate rejected"))?;
    }
    if roots.is_empty() {
        bail!("no certificate in `{}`", path.display());
    }
    Ok(roots)
}

/// A certificate chain and its private key from PEM files.
fn cert_and_key(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read TLS certificate `{}`", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM in `{}`", cert.display()))?;
    if certs.is_empty() {
        bail!("no certificate found in `{}`", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read TLS private key `{}`", key.display()))?;
    Ok((certs, key))
}

/// TLS client settings for a syslog collector: trust `ca_file` (PEM), or the system's
/// roots; with `client`, present that certificate and key (PEM files) to a collector that
/// authenticates its senders.
pub fn syslog_client_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>> {
    let roots = match ca_file {
        Some(path) => roots_from_pem(path, "syslog CA")?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let (certs, key) = cert_and_key(cert, key)?;
            config
                .with_client_auth_cert(certs, key)
                .context("client certificate and key do not match")?
        }
        None => config.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
