//! The request-framing guard's cost per request, as ratios to work hyper does anyway.
//!
//! The guard (`steward_gateway::framing`) runs on every byte a client sends before hyper
//! parses it. Measured side by side in one run:
//! - a typical agent request head (~450 bytes with a bearer token): `feed` against one
//!   `httparse` parse of the same head (hyper's own parse, the floor);
//! - the same head followed by a 1 KiB JSON body, and ten keep-alive requests in one read;
//! - a 1 MiB chunked upload in 16 KiB reads: `feed` against copying the same bytes once
//!   (the guard hands bytes on through its own buffer).
//!
//! Run: `cargo bench -p steward-bench --bench framing -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use steward_gateway::framing::{Fed, RequestFraming};

fn head(body_len: usize) -> Vec<u8> {
    format!(
        "POST /gw/github/repos/acme/widgets/issues HTTP/1.1\r\nHost: steward:8080\r\nUser-Agent: agent-sdk/1.4 (python 3.12)\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\nAuthorization: Bearer stwt_{}\r\nSteward-Reason: triage ticket 4711\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n",
        "A".repeat(180)
    )
    .into_bytes()
}

fn feed_all(input: &[u8], read: usize, out: &mut Vec<u8>) -> usize {
    let mut framing = RequestFraming::new();
    out.clear();
    for piece in input.chunks(read) {
        if let Fed::Refuse(_) = framing.feed(piece, out) {
            break;
        }
    }
    out.len()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let bare = head(0);
    let mut with_body = head(1024);
    with_body.extend(std::iter::repeat_n(b'x', 1024));
    let pipelined: Vec<u8> = std::iter::repeat_n(bare.clone(), 10).flatten().collect();
    let mut out = Vec::with_capacity(64 * 1024);

    let mut g = c.benchmark_group("framing_head");
    g.bench_function("httparse_parse_only", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            black_box(req.parse(black_box(&bare)).ok())
        })
    });
    g.bench_function("guard_feed_head", |b| {
        b.iter(|| black_box(feed_all(black_box(&bare), 16 * 1024, &mut out)))
    });
    g.bench_function("guard_feed_head_and_1k_body", |b| {
        b.iter(|| black_box(feed_all(black_box(&with_body), 16 * 1024, &mut out)))
    });
    g.throughput(Throughput::Elements(10));
    g.bench_function("guard_feed_10_pipelined_heads", |b| {
        b.iter(|| black_box(feed_all(black_box(&pipelined), 16 * 1024, &mut out)))
    });
    g.finish();

    let mut upload =
        b"PUT /gw/files/blob HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..64 {
        upload.extend_from_slice(b"4000\r\n");
        upload.extend(std::iter::repeat_n(b'z', 0x4000));
        upload.extend_from_slice(b"\r\n");
    }
    upload.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("framing_body");
    g.throughput(Throughput::Bytes(upload.len() as u64));
    g.bench_function("memcpy_once", |b| {
        b.iter(|| {
            out.clear();
            for piece in upload.chunks(16 * 1024) {
                out.extend_from_slice(black_box(piece));
            }
            black_box(out.len())
        })
    });
    g.bench_function("guard_feed_chunked_1mib", |b| {
        b.iter(|| black_box(feed_all(black_box(&upload), 16 * 1024, &mut out)))
    });
    g.finish();
    c.final_summary();
}
