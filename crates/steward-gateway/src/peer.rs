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
    async fn an_open_connection_is_not_gone() {
        let (peer, _client) = pair().await;
        let waited = tokio::time::timeout(Duration::from_millis(300), peer.gone()).await;
        assert!(waited.is_err());
    }
}
