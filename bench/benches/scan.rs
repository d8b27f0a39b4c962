//! Secret-scan throughput on a 64 KiB buffer: the full rule set (Aho-Corasick prefilter,
//! per-rule regexes, generic line scoring) against a clean buffer of the same size that
//! the prefilter rejects almost entirely (the floor set by the prefilter pass).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use steward_scan::Scanner;

/// 64 KiB of config-like text with a few secrets and many near misses.
fn buffer() -> Vec<u8> {
    let lines = [
        "def load_user(self, user_id: int) -> dict:",
        "    return self.cache.get(user_id, {})",
        "  timeout: 30s",
        "password: \"${DB_PASSWORD}\"",
        "max_tokens = 4096",
        "DB_PASSWORD=Zq8x!Wv3pLm9K",
        "api_key_id = \"550e8400-e29b-41d4-a716-446655440000\"",
        "INSERT INTO orders (id, item) VALUES (42, 'session');",
        "GITHUB_TOKEN=ghp_R7fX2kq9LmZpT4vB8nW1cY6dH3sJ0a1ZpK9x",
        "DATABASE_URL=postgresql://app:Zq8xWv3pLm9K@db.internal:5432/app",
        "  image: registry.local/worker:1.4",
        "logger.info(\"processing %s\", event)",
    ];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut index = 0usize;
    while out.len() < 64 * 1024 {
        out.extend_from_slice(
            lines
                .get(index % lines.len())
                .copied()
                .unwrap_or_default()
                .as_bytes(),
        );
        out.push(b'\n');
        index += 1;
    }
    out.truncate(64 * 1024);
    out
}

fn scan(c: &mut Criterion) {
    let data = buffer();
    let mut group = c.benchmark_group("scan_64k");
    group.throughput(Throughput::Bytes(data.len() as u64));
    let Ok(scanner) = Scanner::new() else {
        return;
    };
    group.bench_function("steward_scanner", |b| {
        b.iter(|| black_box(scanner.scan("bench.txt", black_box(&data))))
    });
    let clean: Vec<u8> = b"INSERT INTO orders (id, item) VALUES (42, 'session');\n"
        .iter()
        .copied()
        .cycle()
        .take(data.len())
        .collect();
    group.bench_function("prefilter_only_clean_buffer", |b| {
        b.iter(|| black_box(scanner.scan("bench.txt", black_box(&clean))))
    });
    group.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
