//! A response body wrapper that counts bytes and reports when the stream ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Counts data bytes; calls `on_end(bytes, complete)` once, at the end or on drop.
pub struct CountingBody<B, F: FnOnce(u64, bool)> {
    inner: B,
    bytes: u64,
    on_end: Option<F>,
}

impl<B, F: FnOnce(u64, bool)> CountingBody<B, F> {
    /// Wraps `inner`.
    pub fn new(inner: B, on_end: F) -> Self {
        Self { inner, bytes: 0, on_end: Some(on_end) }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(f) = self.on_end.take() {
            f(self.bytes, complete);
        }
    }
}

impl<B, F: FnOnce(u64, bool)> Drop for CountingBody<B, F> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl<B, F> Body for CountingBody<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce(u64, bool) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
