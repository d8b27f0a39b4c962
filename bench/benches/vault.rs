//! Vault benchmarks: Steward envelope seal/open of 1 KiB against one raw aws-lc AES-256-GCM
//! call, and the gateway's secret fetch with and without the decrypted-value cache.
//!
//! Run: `cargo bench -p steward-bench --bench vault -- --warm-up-time 1 --measurement-time 3`

// `criterion_group!` generates an undocumented function; set-up failures should abort the run.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steward_vault::{Keyring, MasterKey, Sealed, SecretCache, open, rewrap, seal};

const VALUE_LEN: usize = 1024;

fn value() -> Vec<u8> {
    (0..VALUE_LEN).map(|i| (i % 251) as u8).collect()
}

fn raw_aead(c: &mut Criterion) {
    let plaintext = value();
    let key = RandomizedNonceKey::new(&AES_256_GCM, &[7u8; 32]).unwrap();
    let mut group = c.benchmark_group("vault_1k");
    group.throughput(Throughput::Bytes(VALUE_LEN as u64));

    // Baseline: one AES-256-GCM seal of 1 KiB into a fresh buffer (as Steward does).
    group.bench_function("raw_aes256gcm_seal", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(VALUE_LEN + 16);
            buf.extend_from_slice(black_box(&plaintext));
            let nonce = key
                .seal_in_place_append_tag(Aad::from(b"aad"), &mut buf)
                .unwrap();
            black_box((nonce, buf))
        })
    });

    let mut sealed_raw = plaintext.clone();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(b"aad"), &mut sealed_raw)
        .unwrap();
    let nonce_bytes = *nonce.as_ref();
    group.bench_function("raw_aes256gcm_open", |b| {
        b.iter(|| {
            let mut buf = black_box(&sealed_raw).clone();
            let len = key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce_bytes),
                    Aad::from(b"aad"),
                    &mut buf,
                )
                .unwrap()
                .len();
            black_box((len, buf))
        })
    });

    let ring = Keyring::single(MasterKey::generate(1).unwrap());
    group.bench_function("steward_seal", |b| {
        b.iter(|| {
            seal(
                ring.current(),
                black_box("sec_github"),
                3,
                black_box(&plaintext),
            )
            .unwrap()
        })
    });

    let stored = seal(ring.current(), "sec_github", 3, &plaintext).unwrap();
    group.bench_function("steward_open", |b| {
        b.iter(|| open(&ring, black_box("sec_github"), 3, black_box(&stored)).unwrap())
    });

    let new_key = MasterKey::generate(2).unwrap();
    group.bench_function("steward_rewrap", |b| {
        b.iter(|| rewrap(&ring, &new_key, "sec_github", 3, black_box(&stored)).unwrap())
    });
    group.finish();
}

fn secret_fetch(c: &mut Criterion) {
    let plaintext = value();
    let ring = Keyring::single(MasterKey::generate(1).unwrap());
    // What the store hands back: the serialized sealed value of the row.
    let row_bytes = seal(ring.current(), "sec_github", 3, &plaintext)
        .unwrap()
        .to_bytes();
    let mut group = c.benchmark_group("vault_fetch_1k");

    // Uncached: parse the row and open it on every call.
    group.bench_function("uncached_parse_open", |b| {
        b.iter(|| {
            let sealed = Sealed::from_bytes(black_box(&row_bytes)).unwrap();
            open(&ring, "sec_github", 3, &sealed).unwrap()
        })
    });

    // Cached hit: lookup under the lock, Arc clone of the zeroizing value.
    let cache = SecretCache::new(30_000, 1024);
    for i in 0..1000 {
        let id = format!("sec_{i}");
        let sealed = seal(ring.current(), &id, 1, &plaintext).unwrap();
        let ticket = cache.ticket();
        cache.insert(ticket, &id, 1, open(&ring, &id, 1, &sealed).unwrap(), 0);
    }
    group.bench_function("cached_hit", |b| {
        b.iter(|| cache.get(black_box("sec_500"), black_box(1_000)).unwrap())
    });

    // Miss then fill (the first call after expiry or invalidation).
    group.bench_function("cached_miss_fill", |b| {
        b.iter(|| {
            cache.invalidate("sec_github");
            cache
                .get_or_try_insert_with("sec_github", 1_000, || {
                    let sealed = Sealed::from_bytes(&row_bytes)?;
                    Ok::<_, steward_vault::VaultError>((3, open(&ring, "sec_github", 3, &sealed)?))
                })
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, raw_aead, secret_fetch);
criterion_main!(benches);
