//! The listener: accepts TCP (optionally TLS), serves HTTP/1.1 and HTTP/2 with hyper,
//! and drains in-flight requests on SIGINT/SIGTERM within a grace period.

use std::net::SocketAddr;
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
use steward_gateway::runtime::Runtime;
use tower::Service;

/// The whole application: agent routes, admin routes, metrics.
pub fn app(rt: Arc<Runtime>, metrics: PrometheusHandle) -> Router {
    steward_gateway::router(Arc::clone(&rt))
        .merge(steward_admin::router(rt))
        .route("/metrics", get(move || std::future::ready(metrics.render())))
        .layer(axum::middleware::from_fn(request_log))
}

async fn request_log(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let method = req.method().clone();
    // Log the path only: query strings can carry credentials.
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let rid = resp.headers().get("steward-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    tracing::info!(request.id = %rid, http.method = %method, http.path = %path, http.status = resp.status().as_u16(), latency_ms = started.elapsed().as_millis() as u64, "request");
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
) -> Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(30)).max_buf_size(64 * 1024);
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
                    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                        let mut app = app.clone();
                        async move { app.call(req.map(axum::body::Body::new)).await }
                    });
                    match acceptor {
                        Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let conn = builder.serve_connection(TokioIo::new(tls), service);
                                let _ = watcher.watch(conn.into_owned()).await;
                            }
                            _ => tracing::debug!(%peer, "tls handshake failed"),
                        },
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
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
