//! Request framing on the wire: follows where each HTTP/1.1 request head and body ends, so
//! a head that carries both `Content-Length` and `Transfer-Encoding` is refused with 400
//! before the HTTP parser sees it.
//!
//! # Why
//!
//! hyper resolves that conflict on its own (RFC 9112 §6.3): it drops `Content-Length`,
//! reads the body as chunked and closes the connection afterwards. No handler can tell the
//! request ever had both, so the gateway could not refuse it. Such a request is the classic
//! smuggling probe (a front end that honours `Content-Length` and a back end that honours
//! `Transfer-Encoding` disagree about where it ends), and Steward refuses it outright.
//!
//! # How
//!
//! [`RequestFraming`] is a byte-level state machine that mirrors hyper's HTTP/1 request
//! framing: heads parsed with `httparse` (as hyper does), bodies by `Content-Length` or by
//! the chunked coding (sizes, extensions, trailers). It holds back the bytes of a head until
//! the head is complete, so a refused head never reaches hyper, not even in part.
//!
//! Whenever it meets something hyper refuses by itself (a malformed head, a bad chunk, an
//! invalid length, a head over 80 KiB), an upgrade or HTTP/2 (whose preface is not an
//! HTTP/1.1 request line), it stops following and passes every later byte
//! through unchanged: hyper answers those, and closes the connection where it must.
//!
//! [`FramingGuard`] wraps a connection's byte stream with it. On a refused head it gives
//! hyper an end of stream right before that head, so responses to earlier pipelined
//! requests still go out in order, then writes its own 400 and closes the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request head followed (hyper's own buffer limit is 64 KiB; a longer head is
/// refused by hyper, so following stops there).
const MAX_HEAD: usize = 80 * 1024;
/// Most headers a head may carry (hyper's default limit is 100).
const MAX_HEADERS: usize = 128;

/// What feeding bytes decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// Every byte given is either passed on or held as part of an incomplete head.
    Pass,
    /// A head was refused: nothing from its first byte on was passed on.
    Refuse(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The first hex digit of a chunk size.
    Start,
    /// More hex digits, whitespace, an extension or the end of the size line.
    Size,
    /// Whitespace after the size.
    SizeLws,
    /// A chunk extension, up to CR.
    Extension,
    /// The LF ending a size line.
    SizeLf,
    /// Chunk data still to come.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// After the last chunk: CR of the final empty line, or a trailer.
    EndCr,
    /// Inside a trailer line.
    Trailer,
    /// The LF ending a trailer line.
    TrailerLf,
    /// The LF of the final empty line.
    EndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Fixed-length body bytes still to come.
    Body(u64),
    /// Inside a chunked body.
    Chunked { state: Chunk, size: u64 },
    /// No longer following (HTTP/2, upgrade, or something hyper refuses itself).
    Passthrough,
    /// A head was refused; nothing more is passed on.
    Refused,
}

/// Follows the framing of the requests on one connection. See the module docs.
#[derive(Debug)]
pub struct RequestFraming {
    state: State,
    /// The start of an incomplete head, held back from the parser.
    held: Vec<u8>,
}

impl Default for RequestFraming {
    fn default() -> Self {
        Self::new()
    }
}

/// How a complete head frames the body after it.
enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    /// Both `Content-Length` and `Transfer-Encoding`.
    Conflict,
    /// An upgrade, CONNECT, or a framing hyper refuses by itself.
    Unfollowed,
}

enum Head {
    Partial,
    Invalid,
    Complete(usize, BodyFraming),
}

fn parse_head(bytes: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Invalid,
    };
    let mut length: Option<u64> = None;
    let mut saw_length = false;
    let mut length_ok = true;
    let mut te_chunked: Option<bool> = None;
    let mut upgrade = req.method == Some("CONNECT");
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            saw_length = true;
            match (from_digits(h.value), length) {
                (None, _) => length_ok = false,
                (Some(v), Some(prev)) if v != prev => length_ok = false,
                (Some(v), _) => length = Some(v),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // hyper goes by the last Transfer-Encoding line.
            te_chunked = Some(last_coding_is_chunked(h.value));
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let framing = if saw_length && te_chunked.is_some() {
        BodyFraming::Conflict
    } else if upgrade || !length_ok {
        BodyFraming::Unfollowed
    } else if let Some(chunked) = te_chunked {
        if chunked && req.version == Some(1) {
            BodyFraming::Chunked
        } else {
            BodyFraming::Unfollowed
        }
    } else {
        match length {
            Some(0) | None => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        }
    };
    Head::Complete(len, framing)
}

/// hyper's rule: digits only, no sign, no overflow.
fn from_digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

fn last_coding_is_chunked(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.rsplit(',').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

impl RequestFraming {
    /// A connection at its start.
    pub fn new() -> Self {
        Self {
            state: State::Head,
            held: Vec::new(),
        }
    }

    /// Whether every later byte passes through unexamined.
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Whether the start of a head is held back, waiting for the rest.
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Feeds the next bytes read from the client. Appends to `out` those that may reach the
    /// HTTP parser now; holds back the start of an incomplete head.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Fed {
        let mut rest = data;
        while !rest.is_empty() {
            match self.state {
                State::Passthrough => {
                    out.extend_from_slice(rest);
                    return Fed::Pass;
                }
                State::Refused => return Fed::Refuse("request refused earlier"),
                State::Head => match self.head(rest, out) {
                    Ok(after) => rest = after,
                    Err(fed) => return fed,
                },
                State::Body(remaining) => {
                    let take = usize::try_from(remaining).unwrap_or(usize::MAX);
                    let (body, after) = rest.split_at_checked(take).unwrap_or((rest, &[]));
                    out.extend_from_slice(body);
                    rest = after;
                    // `body.len() <= remaining`: it was cut at `remaining` or is shorter.
                    let left = remaining.saturating_sub(body.len() as u64);
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                }
                State::Chunked { .. } => {
                    let used = self.chunked(rest);
                    let (body, after) = rest.split_at_checked(used).unwrap_or((rest, &[]));
                    out.extend_from_slice(body);
                    rest = after;
                }
            }
        }
        Fed::Pass
    }

    /// The head state: returns what follows a complete head, or how feeding ends (every
    /// byte held or passed on, or a refusal).
    fn head<'d>(&mut self, rest: &'d [u8], out: &mut Vec<u8>) -> Result<&'d [u8], Fed> {
        let old = self.held.len();
        let parsed = if old == 0 {
            parse_head(rest)
        } else {
            self.held.extend_from_slice(rest);
            // A head ends with an empty line: parse again only if the new bytes may have
            // brought one (a trickled head stays linear).
            let tail = self.held.get(old.saturating_sub(3)..).unwrap_or_default();
            if tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n") {
                parse_head(&self.held)
            } else {
                Head::Partial
            }
        };
        let held_len = if old == 0 {
            rest.len()
        } else {
            self.held.len()
        };
        let (len, framing) = match parsed {
            Head::Complete(len, framing) if len <= MAX_HEAD && len > old => (len, framing),
            Head::Partial if held_len <= MAX_HEAD => {
                if old == 0 {
                    self.held.extend_from_slice(rest);
                }
                return Err(Fed::Pass);
            }
            // Malformed, or too large: hyper answers it; stop following.
            _ => {
                if old == 0 {
                    self.held.extend_from_slice(rest);
                }
                self.pass_held(out);
                return Err(Fed::Pass);
            }
        };
        if let BodyFraming::Conflict = framing {
            self.held.clear();
            self.state = State::Refused;
            return Err(Fed::Refuse(
                "both Content-Length and Transfer-Encoding are present",
            ));
        }
        // `len > old`: this head ends inside `rest`.
        let (head_part, after) = rest.split_at_checked(len - old).unwrap_or((rest, &[]));
        if old == 0 {
            out.extend_from_slice(head_part);
        } else {
            self.held.truncate(len);
            out.append(&mut self.held);
        }
        self.state = match framing {
            BodyFraming::None => State::Head,
            BodyFraming::Length(n) => State::Body(n),
            BodyFraming::Chunked => State::Chunked {
                state: Chunk::Start,
                size: 0,
            },
            BodyFraming::Unfollowed | BodyFraming::Conflict => State::Passthrough,
        };
        Ok(after)
    }

    /// At the end of the stream: passes on whatever was held, so the parser sees exactly
    /// what the client sent (and reports an incomplete request itself).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
    }

    fn pass_held(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
        self.state = State::Passthrough;
    }

    /// Runs the chunked-body machine over `data`; returns how many bytes it consumed (all,
    /// or up to the end of the body, after which a head follows).
    fn chunked(&mut self, data: &[u8]) -> usize {
        let State::Chunked {
            state: mut st,
            mut size,
        } = self.state
        else {
            return 0;
        };
        let mut i = 0;
        while let Some(&b) = data.get(i) {
            if let Chunk::Data(rem) = st {
                let available = (data.len() - i) as u64;
                let take = rem.min(available);
                // `take <= available`, which is a `usize`.
                i += usize::try_from(take).unwrap_or(data.len() - i);
                st = if rem == take {
                    Chunk::DataCr
                } else {
                    Chunk::Data(rem - take)
                };
                continue;
            }
            i += 1;
            let next = match st {
                Chunk::Start => hex(b).map(|d| {
                    size = d;
                    Chunk::Size
                }),
                Chunk::Size => match b {
                    b'\t' | b' ' => Some(Chunk::SizeLws),
                    b';' => Some(Chunk::Extension),
                    b'\r' => Some(Chunk::SizeLf),
                    _ => hex(b).and_then(|d| {
                        size = size.checked_mul(16)?.checked_add(d)?;
                        Some(Chunk::Size)
                    }),
                },
                Chunk::SizeLws => match b {
                    b'\t' | b' ' => Some(Chunk::SizeLws),
                    b';' => Some(Chunk::Extension),
                    b'\r' => Some(Chunk::SizeLf),
                    _ => None,
                },
                Chunk::Extension => match b {
                    b'\r' => Some(Chunk::SizeLf),
                    b'\n' => None,
                    _ => Some(Chunk::Extension),
                },
                Chunk::SizeLf => match (b, size) {
                    (b'\n', 0) => Some(Chunk::EndCr),
                    (b'\n', n) => Some(Chunk::Data(n)),
                    _ => None,
                },
                Chunk::DataCr => (b == b'\r').then_some(Chunk::DataLf),
                Chunk::DataLf => (b == b'\n').then_some(Chunk::Start),
                Chunk::EndCr => Some(if b == b'\r' {
                    Chunk::EndLf
                } else {
                    Chunk::Trailer
                }),
                Chunk::Trailer => Some(if b == b'\r' {
                    Chunk::TrailerLf
                } else {
                    Chunk::Trailer
                }),
                Chunk::TrailerLf => (b == b'\n').then_some(Chunk::EndCr),
                Chunk::EndLf => {
                    if b == b'\n' {
                        self.state = State::Head;
                        return i;
                    }
                    None
                }
                // Handled before reading a byte.
                Chunk::Data(_) => None,
            };
            match next {
                Some(n) => st = n,
                None => {
                    // hyper refuses this body and closes the connection by itself.
                    self.state = State::Passthrough;
                    return i;
                }
            }
        }
        self.state = State::Chunked { state: st, size };
        i
    }
}

/// The response written in place of a refused request.
fn refusal(reason: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": reason,
    })
    .to_string();
    let rid = crate::pipeline::request_id();
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nsteward-request-id: {rid}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

thread_local! {
    /// Where a guard reads the client's bytes before feeding them on (per worker thread).
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; 16 * 1024].into_boxed_slice());
}

/// A connection's byte stream with [`RequestFraming`] in front of the HTTP parser.
///
/// A head held back longer than `header_timeout` ends the connection with an error: hyper's
/// own header-read timeout cannot run on bytes it has not been given (slow loris).
#[derive(Debug)]
pub struct FramingGuard<S> {
    inner: S,
    framing: RequestFraming,
    header_timeout: Duration,
    /// When the head held back now must be complete.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes cleared for the parser, from `ready_pos` on.
    ready: Vec<u8>,
    ready_pos: usize,
    /// The client closed its side.
    eof: bool,
    /// The refusal to write once the parser is done, and how much of it was written.
    refusal: Option<(Vec<u8>, usize)>,
}

impl<S> FramingGuard<S> {
    /// Wraps `inner`; a request head must arrive whole within `header_timeout`.
    pub fn new(inner: S, header_timeout: Duration) -> Self {
        Self {
            inner,
            framing: RequestFraming::new(),
            header_timeout,
            deadline: None,
            ready: Vec::new(),
            ready_pos: 0,
            eof: false,
            refusal: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FramingGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_pos < this.ready.len() {
                let pending = this.ready.get(this.ready_pos..).unwrap_or_default();
                let n = pending.len().min(buf.remaining());
                buf.put_slice(pending.get(..n).unwrap_or_default());
                this.ready_pos += n;
                if this.ready_pos == this.ready.len() {
                    // An idle connection keeps no buffer beyond a small one.
                    if this.ready.capacity() > 4096 {
                        this.ready = Vec::new();
                    } else {
                        this.ready.clear();
                    }
                    this.ready_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof || this.refusal.is_some() {
                // End of stream for the parser: it finishes what it has, then shuts down.
                return Poll::Ready(Ok(()));
            }
            if this.framing.is_passthrough() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // Read into the worker thread's scratch buffer: it is used only within this
            // call, so connections do not each keep one.
            let read = SCRATCH.with(|cell| {
                let Ok(mut scratch) = cell.try_borrow_mut() else {
                    return Poll::Ready(Err(io::Error::other("framing scratch buffer in use")));
                };
                let mut rb = ReadBuf::new(&mut scratch[..]);
                match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(Ok(None)),
                    Poll::Ready(Ok(())) => {
                        Poll::Ready(Ok(Some(this.framing.feed(rb.filled(), &mut this.ready))))
                    }
                }
            });
            match read {
                Poll::Pending => {
                    if let Some(deadline) = &mut this.deadline
                        && deadline.as_mut().poll(cx).is_ready()
                    {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not completed in time",
                        )));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(None)) => {
                    this.eof = true;
                    this.framing.finish(&mut this.ready);
                    continue;
                }
                Poll::Ready(Ok(Some(Fed::Refuse(reason)))) => {
                    tracing::warn!(reason, "request framing refused; closing the connection");
                    metrics::counter!("steward_http_framing_refused_total").increment(1);
                    this.refusal = Some((refusal(reason), 0));
                }
                Poll::Ready(Ok(Some(Fed::Pass))) => {}
            }
            if !this.framing.is_holding() {
                this.deadline = None;
            } else if this.deadline.is_none() {
                this.deadline = Some(Box::pin(tokio::time::sleep(this.header_timeout)));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramingGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some((bytes, written)) = &mut this.refusal {
            while *written < bytes.len() {
                let unwritten = bytes.get(*written..).unwrap_or_default();
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, unwritten))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns what passed and the verdict.
    fn run(input: &[u8], step: usize) -> (Vec<u8>, Fed) {
        let mut f = RequestFraming::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            if let Fed::Refuse(r) = f.feed(piece, &mut out) {
                return (out, Fed::Refuse(r));
            }
        }
        f.finish(&mut out);
        (out, Fed::Pass)
    }

    fn every_split(input: &[u8]) -> Vec<(Vec<u8>, Fed)> {
        [1, 2, 3, 7, 16, 64, input.len()]
            .into_iter()
            .map(|s| run(input, s))
            .collect()
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn well_formed_requests_pass_unchanged_whatever_the_read_sizes() {
        let mut input = Vec::new();
        input.extend_from_slice(GET);
        input.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        input.extend_from_slice(
            b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n",
        );
        input.extend_from_slice(GET);
        for (out, fed) in every_split(&input) {
            assert_eq!(fed, Fed::Pass);
            assert_eq!(out, input);
        }
    }

    #[test]
    fn both_lengths_are_refused_and_nothing_of_that_head_passes() {
        for conflict in [
            &b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
            b"PUT /x HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 40\r\n\r\n0\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: identity\r\n\r\n",
        ] {
            // After a keep-alive request with a body, so the machine must follow that body.
            let first = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n\r\n\r\n";
            let mut input = first.to_vec();
            input.extend_from_slice(conflict);
            input.extend_from_slice(GET);
            for (out, fed) in every_split(&input) {
                assert!(matches!(fed, Fed::Refuse(_)), "{fed:?}");
                assert_eq!(out, first, "exactly the bytes before the refused head pass");
            }
        }
    }

    #[test]
    fn a_conflict_hidden_in_a_body_is_not_a_head() {
        // The body of the first request looks like a conflicting head; it is body bytes.
        let body = b"GET /y HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut input = format!(
            "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(GET);
        for (out, fed) in every_split(&input) {
            assert_eq!(fed, Fed::Pass);
            assert_eq!(out, input);
        }
    }

    #[test]
    fn what_hyper_refuses_itself_passes_through_unfollowed() {
        for input in [
            &b"PUT /x HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"[..],
            b"PUT /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x00",
        ] {
            let mut input = input.to_vec();
            // A conflicting head after it is no longer examined: hyper has closed by then.
            input.extend_from_slice(
                b"PUT /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            for (out, fed) in every_split(&input) {
                assert_eq!(fed, Fed::Pass);
                assert_eq!(out, input);
            }
        }
    }

    #[test]
    fn an_incomplete_head_is_held_until_it_completes_or_the_stream_ends() {
        let mut f = RequestFraming::new();
        let mut out = Vec::new();
        assert_eq!(f.feed(b"GET /a HTTP/1.1\r\nHo", &mut out), Fed::Pass);
        assert!(out.is_empty());
        assert_eq!(f.feed(b"st: x\r\n\r\nGET", &mut out), Fed::Pass);
        assert_eq!(out, GET);
        f.finish(&mut out);
        assert_eq!(&out[GET.len()..], b"GET");
    }

    #[test]
    fn oversized_heads_stop_being_followed() {
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        while input.len() <= MAX_HEAD {
            input.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let (out, fed) = run(&input, 4096);
        assert_eq!(fed, Fed::Pass);
        assert_eq!(out, input);
    }

    /// Pieces that make up plausible and hostile request streams.
    const PIECES: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"POST /x HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n",
        b"Host: a\r\n",
        b"Content-Length: 3\r\n",
        b"Content-Length: 0\r\n",
        b"Content-Length: +3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Upgrade: x\r\n",
        b"\r\n",
        b"\n",
        b"3\r\nabc\r\n",
        b"0\r\n\r\n",
        b"0\r\nT: v\r\n\r\n",
        b"abc",
        b"zz\r\n",
        b"\x00\xff",
    ];

    proptest::proptest! {
        /// Whatever the bytes and however they are split into reads: the outcome is the
        /// same, a passed stream is passed whole, and a refusal passes only a strict prefix.
        #[test]
        fn read_sizes_never_change_the_outcome(
            picks in proptest::collection::vec(0..PIECES.len(), 0..40),
            step in 1usize..40,
        ) {
            let input: Vec<u8> = picks.iter().flat_map(|&i| PIECES[i].iter().copied()).collect();
            let whole = run(&input, input.len().max(1));
            let split = run(&input, step);
            proptest::prop_assert_eq!(&whole, &split);
            match whole {
                (out, Fed::Pass) => proptest::prop_assert_eq!(out, input),
                (out, Fed::Refuse(_)) => {
                    proptest::prop_assert!(input.starts_with(&out) && out.len() < input.len());
                }
            }
        }
    }

    #[tokio::test]
    async fn a_head_held_past_the_timeout_ends_the_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guard = FramingGuard::new(server, Duration::from_millis(200));
        client
            .write_all(b"GET /a HTTP/1.1\r\nX-Slow: 1\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let err = guard.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        // A head that completes in time is passed on.
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guard = FramingGuard::new(server, Duration::from_millis(500));
        client.write_all(b"GET /a HTTP/1.1\r\n").await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"Host: x\r\n\r\n").await.unwrap();
            client
        });
        let n = guard.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], GET);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn the_guard_answers_400_after_earlier_responses_and_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut guard = FramingGuard::new(server, Duration::from_secs(5));
        let (mut cr, mut cw) = tokio::io::split(client);
        cw.write_all(GET).await.unwrap();
        cw.write_all(
            b"PUT /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        // The "parser" reads everything it is given, answers, then shuts down.
        let mut seen = Vec::new();
        guard.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, GET);
        guard
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        guard.shutdown().await.unwrap();
        drop(guard);
        let mut response = String::new();
        cr.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        let second = &response["HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".len()..];
        assert!(
            second.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{second}"
        );
        assert!(second.contains("connection: close"));
        assert!(second.contains("both Content-Length and Transfer-Encoding"));
    }
}
