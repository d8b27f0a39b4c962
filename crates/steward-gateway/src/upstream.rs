//! The upstream HTTP client: pooled connections to addresses checked by the SSRF guard.
//!
//! The connector resolves the host itself, checks every resolved address against the
//! service's egress policy and connects to a checked address, so a DNS answer that
//! changes between the check and the connect cannot redirect the call (no re-resolution).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::ssrf::{EgressPolicy, Host, check_host, filter_resolved};

/// Request body type sent upstream.
pub type UpstreamBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A pooled client for one service.
pub type UpstreamClient = Client<PinnedConnector, UpstreamBody>;

/// Builds per-service clients sharing TLS roots.
#[derive(Debug, Clone)]
pub struct Upstream {
    roots: Arc<rustls::RootCertStore>,
    connect_timeout: Duration,
}

impl Upstream {
    /// Loads the system's trust roots.
    pub fn new(connect_timeout: Duration) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        Self {
            roots: Arc::new(roots),
            connect_timeout,
        }
    }

    /// A client for a service with its egress policy and optional CA bundle (PEM).
    pub fn client(
        &self,
        egress: EgressPolicy,
        ca_bundle: Option<&str>,
    ) -> Result<UpstreamClient, String> {
        self.client_with_identity(egress, ca_bundle, None)
    }

    /// Like [`Upstream::client`], presenting `identity` to the upstream for mutual TLS:
    /// PEM text with the certificate chain (leaf first) and the private key. Errors name
    /// what is wrong with it, never its content.
    pub fn client_with_identity(
        &self,
        egress: EgressPolicy,
        ca_bundle: Option<&str>,
        identity: Option<&[u8]>,
    ) -> Result<UpstreamClient, String> {
        let roots = match ca_bundle {
            None => Arc::clone(&self.roots),
            Some(pem) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let mut store = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert = cert.map_err(|e| format!("ca_bundle: {e}"))?;
                    store.add(cert).map_err(|e| format!("ca_bundle: {e}"))?;
                }
                Arc::new(store)
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut tls = match identity {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let (chain, key) = client_identity(pem)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = PinnedConnector {
            egress,
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout: self.connect_timeout,
        };
        Ok(Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector))
    }
}

/// Parses a client identity: every `CERTIFICATE` block (leaf first) and the one private
/// key (PKCS#8, PKCS#1 or SEC1).
fn client_identity(
    pem: &[u8],
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    String,
> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "client certificate: malformed PEM certificate".to_owned())?;
    if chain.is_empty() {
        return Err("client certificate: the secret holds no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| "client certificate: the secret holds no readable private key".to_owned())?;
    Ok((chain, key))
}

/// Connects only to addresses the egress policy allows.
#[derive(Clone)]
pub struct PinnedConnector {
    egress: EgressPolicy,
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl std::fmt::Debug for PinnedConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedConnector")
            .field("egress", &self.egress)
            .finish_non_exhaustive()
    }
}

/// A plain or TLS connection to an upstream.
#[derive(Debug)]
pub enum UpstreamStream {
    /// Plain TCP (only where the service allows http).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

fn blocked(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

impl tower::Service<Uri> for PinnedConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                other => return Err(blocked(format!("unsupported scheme {other:?}"))),
            };
            let host_text = uri.host().ok_or_else(|| blocked("no host".into()))?;
            let bare = host_text.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let host = check_host(
                &this.egress,
                if host_text.starts_with('[') {
                    host_text
                } else {
                    bare
                },
            )
            .map_err(|e| blocked(e.to_string()))?;
            let candidates: Vec<SocketAddr> = match &host {
                Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
                Host::Name(name) => tokio::net::lookup_host((name.as_str(), port))
                    .await?
                    .collect(),
            };
            // INVARIANT: only addresses returned by the guard are dialled.
            let allowed =
                filter_resolved(&this.egress, &candidates).map_err(|e| blocked(e.to_string()))?;
            let mut last_err = blocked("no address".into());
            for addr in allowed {
                match tokio::time::timeout(this.connect_timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(tcp)) => {
                        let _ = tcp.set_nodelay(true);
                        if !https {
                            return Ok(TokioIo::new(UpstreamStream::Plain(tcp)));
                        }
                        let server_name = rustls::pki_types::ServerName::try_from(bare.to_owned())
                            .map_err(|e| blocked(format!("tls server name: {e}")))?;
                        let tls = this.tls.connect(server_name, tcp).await?;
                        return Ok(TokioIo::new(UpstreamStream::Tls(Box::new(tls))));
                    }
                    Ok(Err(e)) => last_err = e,
                    Err(_) => {
                        last_err = io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
                    }
                }
            }
            Err(last_err)
        })
    }
}
