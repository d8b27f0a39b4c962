//! Structured logs through `tracing`, as text or JSON, written to stderr off the request
//! path.
//!
//! Every request logs one line. Writing each line to stderr with its own `write(2)` put a
//! system call on the request path, and a log consumer that stopped reading (a full pipe,
//! a stalled collector) blocked the runtime's threads, and every call with them. Lines now
//! go into a shared buffer, and a thread of its own writes them out:
//!
//! - at most [`FLUSH_INTERVAL`] after they were logged while lines keep coming, at once
//!   for warnings and errors and for the first line after a quiet spell, in the order they
//!   were logged;
//! - when the buffer holds [`BUFFER_CAP`] bytes the consumer is not keeping up: further
//!   lines are dropped and counted (never waited on), and a line saying how many were
//!   dropped is written once there is room (`steward_log_lines_dropped_total` counts them
//!   too). The audit log is not affected: it has its own durable path;
//! - at exit and on a panic whatever is buffered is written first ([`flush`]). A process
//!   killed outright loses at most the last [`FLUSH_INTERVAL`] of lines.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

/// How long a line may wait in the buffer while lines keep coming.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(5);

/// Bytes the buffer holds before lines are dropped.
pub const BUFFER_CAP: usize = 8 * 1024 * 1024;

struct State {
    buf: Vec<u8>,
    dropped: u64,
    /// A warning or error is waiting: write now, not at the next tick.
    urgent: bool,
    /// The writer found nothing to write and sleeps until a line arrives.
    idle: bool,
}

/// Log lines on their way to an output, written by [`LogBuffer::write_out`].
pub struct LogBuffer {
    state: Mutex<State>,
    wake: Condvar,
    cap: usize,
    /// The note of dropped lines is a JSON object, like the lines around it.
    json: bool,
}

impl LogBuffer {
    /// An empty buffer that drops lines beyond `cap` bytes; `json` if the lines are JSON.
    pub fn new(cap: usize, json: bool) -> Self {
        Self {
            state: Mutex::new(State {
                buf: Vec::with_capacity(64 * 1024),
                dropped: 0,
                urgent: false,
                idle: false,
            }),
            wake: Condvar::new(),
            cap,
            json,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bytes behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues one formatted line (or drops it, counted, when the buffer is full).
    pub fn push(&self, line: &[u8], urgent: bool) {
        let mut state = self.lock();
        if state.buf.len() + line.len() > self.cap {
            state.dropped += 1;
            metrics::counter!("steward_log_lines_dropped_total").increment(1);
            return;
        }
        state.buf.extend_from_slice(line);
        // Under load the writer is awake and takes the line at its next tick: no wake-up
        // per line. An idle writer is woken by the first line, a busy one by a warning.
        if state.idle || (urgent && !state.urgent) {
            state.urgent |= urgent;
            state.idle = false;
            self.wake.notify_one();
        }
    }

    /// Writes everything buffered to `out`, preceded by a note of lines dropped since the
    /// last write, if any; returns whether there was anything. The lock is not held while
    /// writing.
    pub fn write_out(&self, out: &mut dyn Write, spare: &mut Vec<u8>) -> std::io::Result<bool> {
        let dropped = {
            let mut state = self.lock();
            spare.clear();
            std::mem::swap(&mut state.buf, spare);
            state.urgent = false;
            std::mem::take(&mut state.dropped)
        };
        if dropped > 0 {
            let message = "log lines dropped: the log output is not keeping up";
            if self.json {
                writeln!(
                    out,
                    r#"{{"level":"WARN","fields":{{"message":"{message}","dropped":{dropped}}},"target":"steward::logging"}}"#
                )?;
            } else {
                writeln!(out, " WARN steward::logging: {message} dropped={dropped}")?;
            }
        }
        if !spare.is_empty() {
            out.write_all(spare)?;
        }
        out.flush()?;
        Ok(dropped > 0 || !spare.is_empty())
    }

    /// Waits for the next write: after a write that found lines, until a warning or error
    /// is queued or `interval` passes; after one that found none, until any line arrives.
    fn wait(&self, wrote: bool, interval: Duration) {
        let mut state = self.lock();
        if wrote {
            if !state.urgent {
                let _ = self.wake.wait_timeout(state, interval);
            }
            return;
        }
        state.idle = true;
        while state.idle && state.buf.is_empty() && state.dropped == 0 {
            state = match self.wake.wait_timeout(state, Duration::from_secs(1)) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        state.idle = false;
    }
}

/// The process's log buffer and the lock that serializes writing it to stderr.
struct Output {
    buffer: LogBuffer,
    writing: Mutex<Vec<u8>>,
}

static OUTPUT: OnceLock<Arc<Output>> = OnceLock::new();

impl Output {
    /// Writes the buffer to stderr; returns whether there was anything to write.
    fn write_out(&self) -> bool {
        let mut spare = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.write_with(&mut spare)
    }

    fn write_with(&self, spare: &mut Vec<u8>) -> bool {
        // Nothing to do with a failed write to stderr but carry on (the lines are gone).
        self.buffer
            .write_out(&mut std::io::stderr().lock(), spare)
            .unwrap_or(true)
    }
}

/// Writes whatever is buffered to stderr now (at exit).
pub fn flush() {
    if let Some(output) = OUTPUT.get() {
        let _ = output.write_out();
    }
}

/// A [`MakeWriter`] over the process's log buffer.
#[derive(Clone)]
struct Buffered(Arc<Output>);

/// One event's writer: `tracing-subscriber` formats an event, then writes it whole.
struct Line<'a> {
    output: &'a Output,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.buffer.push(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffered {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            output: &self.0,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        Line {
            output: &self.0,
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// Starts the thread that writes the buffer out, and writes it on a panic.
fn start_output(json: bool) -> Option<Arc<Output>> {
    let output = Arc::clone(OUTPUT.get_or_init(|| {
        Arc::new(Output {
            buffer: LogBuffer::new(BUFFER_CAP, json),
            writing: Mutex::new(Vec::with_capacity(64 * 1024)),
        })
    }));
    let writer = Arc::clone(&output);
    std::thread::Builder::new()
        .name("steward-log".to_owned())
        .spawn(move || {
            let mut wrote = true;
            loop {
                writer.buffer.wait(wrote, FLUSH_INTERVAL);
                wrote = writer.write_out();
            }
        })
        .ok()?;
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Not `flush`: a panic on the thread that holds the writing lock must not wait for
        // itself. If the lock is taken, that thread is writing already.
        if let Some(output) = OUTPUT.get()
            && let Ok(mut spare) = output.writing.try_lock()
        {
            let _ = output.write_with(&mut spare);
        }
        previous(info);
    }));
    Some(output)
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`.
pub fn init(json: bool, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    match start_output(json) {
        Some(output) => install(filter, json, Buffered(output)),
        // Without the writer thread, lines go to stderr directly.
        None => install(filter, json, std::io::stderr),
    }
}

fn install<W>(filter: EnvFilter, json: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        // Colour only for a terminal: escape codes in a log file or collector are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    // Request ids travel as span fields, so every line inside a request carries one.
    if json {
        let _ = builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init();
    } else {
        let _ = builder.try_init();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn lines_come_out_in_order_and_once() {
        let buffer = LogBuffer::new(1024, false);
        let (mut out, mut spare) = (Vec::new(), Vec::new());
        buffer.push(b"one\n", false);
        buffer.push(b"two\n", true);
        assert!(buffer.write_out(&mut out, &mut spare).unwrap());
        buffer.push(b"three\n", false);
        assert!(buffer.write_out(&mut out, &mut spare).unwrap());
        assert!(!buffer.write_out(&mut out, &mut spare).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\nthree\n");
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines_and_never_blocks() {
        let buffer = LogBuffer::new(10, false);
        let (mut out, mut spare) = (Vec::new(), Vec::new());
        buffer.push(b"12345\n", false);
        buffer.push(b"678\n", false);
        // Both would overflow the 10 bytes: dropped, counted.
        buffer.push(b"abcdef\n", false);
        buffer.push(b"ghijkl\n", true);
        buffer.write_out(&mut out, &mut spare).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("log lines dropped"), "{text}");
        assert!(lines[0].ends_with("dropped=2"), "{text}");
        assert_eq!(&lines[1..], ["12345", "678"]);
        // Room again: lines are kept, and the count starts over.
        let mut out = Vec::new();
        buffer.push(b"back\n", false);
        buffer.write_out(&mut out, &mut spare).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "back\n");

        // In JSON mode the note is a JSON line like the others.
        let buffer = LogBuffer::new(4, true);
        buffer.push(b"too long\n", false);
        let mut out = Vec::new();
        buffer.write_out(&mut out, &mut spare).unwrap();
        let note: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(note["fields"]["dropped"], 1);
        assert_eq!(note["level"], "WARN");
    }

    #[test]
    fn a_warning_wakes_the_writer_before_the_interval() {
        let buffer = Arc::new(LogBuffer::new(1024, false));
        let waiter = Arc::clone(&buffer);
        let started = std::time::Instant::now();
        let thread = std::thread::spawn(move || waiter.wait(true, Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        buffer.push(b"WARN something\n", true);
        thread.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn an_idle_writer_sleeps_until_a_line_arrives() {
        let buffer = Arc::new(LogBuffer::new(1024, false));
        let (mut out, mut spare) = (Vec::new(), Vec::new());
        assert!(
            !buffer.write_out(&mut out, &mut spare).unwrap(),
            "nothing yet"
        );
        let waiter = Arc::clone(&buffer);
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            waiter.wait(false, Duration::from_millis(5));
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(300));
        buffer.push(b"info line\n", false);
        let slept = thread.join().unwrap();
        // It did not wake at the 5 ms interval, and woke for the line well before any
        // timeout could (its own re-checks come once a second, and find the line).
        assert!(slept >= Duration::from_millis(250), "{slept:?}");
        assert!(
            slept < Duration::from_millis(900),
            "not woken by the line: {slept:?}"
        );
        assert!(buffer.write_out(&mut out, &mut spare).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), "info line\n");
    }
}
