//! Noticing that an agent hung up while its call is held for a human approval.
//!
//! hyper does not read an HTTP/1 connection while a handler runs (and the listener keeps
//! half-closed connections open), so a client that goes away mid-call is normally only
//! noticed when the response is written. For a call held for minutes that is too late: a
//! human approving it would run a call nobody awaits. The listener therefore keeps a
//! second handle on each accepted socket; a held call watches it for the peer's FIN or a
//! reset, without reading (the request bytes stay hyper's).
//!
//! A client that shuts down only its sending side after its request (rare for HTTP
//! clients) is taken for gone as well: its held call ends with a 408 problem instead of
//! waiting for the human.

use std::sync::Arc;

use tokio::io::Interest;
use tokio::sync::watch;

/// What tells a call held for a human that its agent went away: the agent's socket
/// closing, or, for an answer streamed from a spawned task, that stream being dropped.
/// The default never fires. Only the hold listens (see `pipeline`): once admitted, a call
/// runs to its end whatever the agent does, so its outcome is recorded.
#[derive(Debug, Clone, Default)]
pub struct Hangup {
    socket: Option<PeerSocket>,
    stream: Option<Arc<watch::Sender<bool>>>,
}

/// Raised by whoever holds the agent's response stream when it is dropped.
#[derive(Debug, Clone)]
pub struct StreamClosed(Arc<watch::Sender<bool>>);

impl StreamClosed {
    /// The agent's response stream is gone.
    pub fn raise(&self) {
        self.0.send_replace(true);
    }
}

impl Hangup {
    /// Watches the agent's socket, when the listener provided one.
    pub fn new(socket: Option<PeerSocket>) -> Self {
        Self {
            socket,
            stream: None,
        }
    }

    /// Also fires when the returned handle is raised.
    pub fn watch_stream(&mut self) -> StreamClosed {
        let tx = Arc::new(watch::channel(false).0);
        self.stream = Some(Arc::clone(&tx));
        StreamClosed(tx)
    }

    /// Resolves once the agent is gone; pends forever when nothing says so.
    pub async fn gone(&self) {
        let socket = async {
            match &self.socket {
                Some(socket) => socket.gone().await,
                None => std::future::pending().await,
            }
        };
        let stream = async {
            let Some(tx) = &self.stream else {
                return std::future::pending().await;
            };
            let mut rx = tx.subscribe();
            if rx.wait_for(|closed| *closed).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = socket => {}
            () = stream => {}
        }
    }
}

/// A second handle on an agent's TCP connection, carried in the request's extensions.
#[derive(Debug, Clone)]
pub struct PeerSocket(Arc<std::net::TcpStream>);

impl PeerSocket {
    /// Takes `stream` (a duplicate of the accepted socket, as from `try_clone`).
    pub fn new(stream: std::net::TcpStream) -> Self {
        Self(Arc::new(stream))
    }

    /// Resolves once the peer has closed its side of the connection or the connection
    /// failed. Pends forever when that cannot be watched (no registration possible).
    pub async fn gone(&self) {
        let watch = self.0.try_clone().and_then(|s| {
            s.set_nonblocking(true)?;
            tokio::net::TcpStream::from_std(s)
        });
        let Ok(watch) = watch else {
            return std::future::pending().await;
        };
        loop {
            match watch.ready(Interest::READABLE).await {
                Ok(ready) if ready.is_read_closed() || ready.is_error() => return,
                Ok(_) => {
                    // Bytes the agent sent after its request (a pipelined request, a TLS
                    // alert) are left for hyper: forget this readiness and wait for the
                    // next event, which a FIN or reset raises.
                    let _ = watch.try_io(Interest::READABLE, || {
                        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                    });
                }
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn pair() -> (PeerSocket, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let server = server.into_std().unwrap();
        (PeerSocket::new(server.try_clone().unwrap()), client)
    }

    #[tokio::test]
    async fn a_hang_up_is_noticed_and_pending_bytes_are_not() {
        let (peer, client) = pair().await;
        // Bytes from the client are not a hang-up.
        client.writable().await.unwrap();
        client.try_write(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let early = tokio::time::timeout(Duration::from_millis(300), peer.gone()).await;
        assert!(early.is_err(), "pending bytes were taken for a hang-up");
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), peer.gone())
            .await
            .expect("the hang-up was not noticed");
    }

    #[tokio::test]
    async fn a_hangup_fires_on_a_raised_stream_and_never_by_default() {
        let idle = Hangup::default();
        let waited = tokio::time::timeout(Duration::from_millis(200), idle.gone()).await;
        assert!(waited.is_err());
        let mut hangup = Hangup::new(None);
        let closed = hangup.watch_stream();
        let waited = tokio::time::timeout(Duration::from_millis(200), hangup.gone()).await;
        assert!(waited.is_err(), "fired before the stream closed");
        closed.raise();
        tokio::time::timeout(Duration::from_secs(1), hangup.gone())
            .await
            .expect("the closed stream was not noticed");
    }

    #[tokio::test]
    async fn an_open_connection_is_not_gone() {
        let (peer, _client) = pair().await;
        let waited = tokio::time::timeout(Duration::from_millis(300), peer.gone()).await;
        assert!(waited.is_err());
    }
}
