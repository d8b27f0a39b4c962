//! The listener: accepts TCP (optionally TLS), serves HTTP/1.1 and HTTP/2 with hyper,
//! and drains in-flight requests on SIGINT/SIGTERM within a grace period.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::PrometheusHandle;
use steward_gateway::framing::FramingGuard;
use steward_gateway::peer::PeerSocket;
use steward_gateway::runtime::Runtime;
use tower::Service;

/// The whole application: agent routes, admin routes, metrics.
pub fn app(rt: Arc<Runtime>, metrics: PrometheusHandle) -> Router {
    steward_gateway::router(Arc::clone(&rt))
        .merge(steward_admin::router(rt))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .layer(axum::middleware::from_fn(request_log))
}

/// The request path as it may be logged: a segment that carries (or may carry) a Steward
/// credential, in any percent-encoding, or that is long enough to be one, is masked. A
/// client can put anything in a path, including its own token.
fn loggable_path(path: &str) -> String {
    fn decoded(segment: &str) -> String {
        let bytes = segment.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (b, hex) {
                (b'%', Some(v)) => {
                    out.push(v);
                    i += 3;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).to_ascii_lowercase()
    }
    path.split('/')
        .map(|segment| {
            let plain = decoded(&decoded(segment));
            if segment.len() > 64 || ["stw_", "stwt_", "stwa_"].iter().any(|p| plain.contains(p)) {
                format!("<redacted:{}>", segment.len())
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn request_log(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let method = req.method().clone();
    // Log the path only: query strings can carry credentials.
    let path = loggable_path(req.uri().path());
    let started = std::time::Instant::now();
    // One id per request, assigned here (never taken from the client), so admin and agent
    // requests alike carry it on every log line and in the `Steward-Request-Id` header.
    let rid = steward_gateway::pipeline::request_id();
    req.extensions_mut()
        .insert(steward_gateway::pipeline::RequestId(rid.clone()));
    let span = tracing::info_span!(
        "request",
        request.id = %rid,
        identity.id = tracing::field::Empty,
        operation.name = tracing::field::Empty
    );
    let mut resp = next.run(req).instrument(span.clone()).await;
    if !resp.headers().contains_key("steward-request-id")
        && let Ok(v) = axum::http::HeaderValue::from_str(&rid)
    {
        resp.headers_mut().insert("steward-request-id", v);
    }
    let rid = resp
        .headers()
        .get("steward-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&rid)
        .to_owned();
    span.in_scope(|| {
        tracing::info!(request.id = %rid, http.method = %method, http.path = %path, http.status = resp.status().as_u16(), latency_ms = started.elapsed().as_millis() as u64, "request");
    });
    resp
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Serves until a shutdown signal, then drains connections for up to `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    grace: Duration,
    header_read_timeout: Duration,
) -> Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(64 * 1024)
        // The framing guard ends the stream right before a refused head; earlier requests
        // on the connection must still be answered (hyper would otherwise drop them as
        // cut short). The cost: a client that disconnects mid-call is noticed when the
        // response is written, not while the call runs (except a call held for a human,
        // which watches the socket itself: `steward_gateway::peer`).
        .half_close(true);
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    builder.http2().max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let builder = Arc::clone(&builder);
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // A second descriptor for the socket (one `dup`), for calls held for a
                    // human to notice a hang-up (see `steward_gateway::peer`).
                    let watch = stream
                        .as_fd()
                        .try_clone_to_owned()
                        .ok()
                        .map(|fd| PeerSocket::new(std::net::TcpStream::from(fd)));
                    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                        if let Some(watch) = &watch {
                            req.extensions_mut().insert(watch.clone());
                        }
                        let mut app = app.clone();
                        async move { app.call(req.map(axum::body::Body::new)).await }
                    });
                    match acceptor {
                        Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let conn = builder.serve_connection(TokioIo::new(FramingGuard::new(tls, header_read_timeout)), service);
                                let _ = watcher.watch(conn.into_owned()).await;
                            }
                            _ => tracing::debug!(%peer, "tls handshake failed"),
                        },
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(FramingGuard::new(stream, header_read_timeout)), service);
                            let _ = watcher.watch(conn.into_owned()).await;
                        }
                    }
                });
            }
            _ = &mut signal => {
                tracing::info!("shutdown requested; draining in-flight requests");
                break;
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn credentials_in_paths_are_not_logged() {
        assert_eq!(
            loggable_path("/gw/github/repos/o/r"),
            "/gw/github/repos/o/r"
        );
        assert_eq!(loggable_path("/gw/a/stwt_abc"), "/gw/a/<redacted:8>");
        assert_eq!(loggable_path("/gw/a/x%73twt_abc"), "/gw/a/<redacted:11>");
        assert_eq!(loggable_path("/gw/a/%2573twa_abc"), "/gw/a/<redacted:12>");
        assert!(!loggable_path(&format!("/gw/a/{}", "k".repeat(100))).contains("kkk"));
    }
}
