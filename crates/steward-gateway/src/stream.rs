//! Body wrappers: a response body that counts bytes and reports when the stream ends, and
//! request bodies that replay a prefetched prefix or refuse to carry the caller's token.

use std::collections::VecDeque;
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
        Self {
            inner,
            bytes: 0,
            on_end: Some(on_end),
        }
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

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
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

/// A request body that yields already-read chunks before the rest of the stream.
pub struct PrefixedBody<B> {
    prefix: VecDeque<Bytes>,
    rest: B,
}

impl<B> PrefixedBody<B> {
    /// `prefix` first, then `rest`.
    pub fn new(prefix: Vec<Bytes>, rest: B) -> Self {
        Self {
            prefix: prefix.into(),
            rest,
        }
    }
}

impl<B> Body for PrefixedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.rest.is_end_stream()
    }
}

/// The error a [`TokenGuardBody`] ends the stream with.
#[derive(Debug, thiserror::Error)]
#[error("the request body contains the caller's Steward token; the stream was cut")]
pub struct TokenInBody;

/// A streamed request body that never forwards a byte sequence: it holds back the last
/// `needle.len() - 1` bytes of each chunk until the next one arrives, and ends the stream
/// with [`TokenInBody`] as soon as the needle appears, so the upstream never receives it
/// (not even split across chunk boundaries).
pub struct TokenGuardBody<B> {
    inner: B,
    needle: zeroize::Zeroizing<Vec<u8>>,
    carry: Vec<u8>,
    pending: Option<Frame<Bytes>>,
    done: bool,
}

impl<B> TokenGuardBody<B> {
    /// Guards `inner` against `needle` (an empty needle guards nothing).
    pub fn new(inner: B, needle: &[u8]) -> Self {
        Self {
            inner,
            needle: zeroize::Zeroizing::new(needle.to_vec()),
            carry: Vec::new(),
            pending: None,
            done: false,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

impl<B> Body for TokenGuardBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                if !this.carry.is_empty() {
                    let rest = std::mem::take(&mut this.carry);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                }
                return Poll::Ready(this.pending.take().map(Ok));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.done = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.carry.extend_from_slice(&data);
                        if contains(&this.carry, &this.needle) {
                            this.carry.clear();
                            this.done = true;
                            return Poll::Ready(Some(Err(Box::new(TokenInBody))));
                        }
                        // INVARIANT: any occurrence starting in the released part would end
                        // inside the searched buffer, so the released bytes are clean.
                        let keep = this.needle.len().saturating_sub(1).min(this.carry.len());
                        let release = this.carry.len() - keep;
                        if release > 0 {
                            let out: Vec<u8> = this.carry.drain(..release).collect();
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(trailers) => {
                        this.pending = Some(trailers);
                        this.done = true;
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.carry.is_empty() && self.pending.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(
        parts: &[&str],
    ) -> StreamBody<
        futures_util::stream::Iter<
            std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>,
        >,
    > {
        let frames: Vec<_> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from(p.to_string()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    async fn drain<B: Body<Data = Bytes> + Unpin>(mut body: B) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    out.extend_from_slice(f.data_ref().map(|b| b.as_ref()).unwrap_or_default())
                }
                Err(_) => return (out, true),
            }
        }
        (out, false)
    }

    #[tokio::test]
    async fn token_split_across_chunks_is_never_released() {
        for split in [
            &["aaa stw", "t_SECRET bbb"][..],
            &["aaa stwt_SECRET"],
            &["s", "t", "w", "t", "_", "SECRET"],
            &["xx", "stwt_SECRE", "T"],
        ] {
            let (out, failed) = drain(TokenGuardBody::new(chunks(split), b"stwt_SECRET")).await;
            assert!(failed, "{split:?}");
            assert!(!contains(&out, b"stwt_SECRET"));
            assert!(
                !out.ends_with(b"stwt_SECRE"),
                "{split:?} released a prefix: {out:?}"
            );
        }
    }

    #[tokio::test]
    async fn clean_bodies_pass_unchanged() {
        let (out, failed) = drain(TokenGuardBody::new(
            chunks(&["hello ", "stwt_SECRE", "X world"]),
            b"stwt_SECRET",
        ))
        .await;
        assert!(!failed);
        assert_eq!(out, b"hello stwt_SECREX world");
        let (out, _) = drain(PrefixedBody::new(
            vec![Bytes::from_static(b"ab")],
            chunks(&["cd"]),
        ))
        .await;
        assert_eq!(out, b"abcd");
    }
}
