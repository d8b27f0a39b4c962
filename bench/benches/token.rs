//! Token verification cost, as ratios to one raw aws-lc Ed25519 verify measured in the same run.
//!
//! Paths: first use (parse + verify of a 1-block and a 2-block token) and the cached path
//! of `TokenVerifier` (hash + cache hit + key and revocation checks). Targets from the
//! issue: first use at most 4x one Ed25519 verify; cached at most 5 µs.
//!
//! Run: `cargo bench -p steward-bench --bench token -- --warm-up-time 1 --measurement-time 3`

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, ParsedPublicKey, UnparsedPublicKey};
use criterion::Criterion;
use steward_token::{
    Claims, Restriction, SigningKey, TokenVerifier, VerifyingKeys, attenuate, mint, verify,
};

const AUDIENCE: &str = "steward.bench";
const NOW_MS: i64 = 1_800_000_000_000;
const TTL_MS: i64 = 15 * 60 * 1000;

struct Fixture {
    keys: VerifyingKeys,
    one_block: String,
    two_blocks: String,
    verifier: TokenVerifier,
    raw_public: Vec<u8>,
    raw_message: Vec<u8>,
    raw_signature: Vec<u8>,
    parsed_public: ParsedPublicKey,
}

fn fixture() -> Result<Fixture, Box<dyn Error>> {
    let (signing, _seed) = SigningKey::generate("bench-key")?;
    let keys = VerifyingKeys::from_signing_key(&signing)?;
    let claims = Claims::new("tok_bench", "idn_bench", AUDIENCE, NOW_MS, NOW_MS + TTL_MS);
    let one_block = mint(&signing, &claims)?;
    let two_blocks = attenuate(
        &one_block,
        &Restriction::default()
            .services(["github"])
            .operations_from_strs(["github:issues.read", "github:issues.create"])?
            .expires_at_ms(NOW_MS + 60_000),
    )?;
    let verifier = TokenVerifier::new(keys.clone(), AUDIENCE, 10_000);
    verifier.verify(&one_block, NOW_MS)?;
    // Some revocation state, so the cached path does real lookups.
    for i in 0..1_000 {
        verifier.revoke_token(&format!("tok_revoked_{i}"), Some(NOW_MS + TTL_MS));
        verifier.suspend_identity(&format!("idn_suspended_{i}"));
    }

    // Baseline: a raw Ed25519 verify of a message the size of a token's signed block.
    let pair = Ed25519KeyPair::generate().map_err(|_| "ed25519 key generation failed")?;
    let raw_message = vec![0x5a; 200];
    let raw_signature = pair
        .try_sign(&raw_message)
        .map_err(|_| "ed25519 signing failed")?
        .as_ref()
        .to_vec();
    let raw_public = pair.public_key().as_ref().to_vec();
    let parsed_public =
        ParsedPublicKey::new(&ED25519, &raw_public).map_err(|_| "ed25519 public key rejected")?;
    Ok(Fixture {
        keys,
        one_block,
        two_blocks,
        verifier,
        raw_public,
        raw_message,
        raw_signature,
        parsed_public,
    })
}

fn raw_verify(f: &Fixture) -> bool {
    UnparsedPublicKey::new(&ED25519, &f.raw_public)
        .verify(&f.raw_message, &f.raw_signature)
        .is_ok()
}

fn criterion_benches(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("token");
    group.bench_function("ed25519_verify_raw", |b| {
        b.iter(|| black_box(raw_verify(f)))
    });
    group.bench_function("ed25519_verify_parsed_key", |b| {
        b.iter(|| {
            black_box(
                f.parsed_public
                    .verify_sig(&f.raw_message, &f.raw_signature)
                    .is_ok(),
            )
        })
    });
    group.bench_function("first_use_1_block", |b| {
        b.iter(|| black_box(verify(black_box(&f.one_block), &f.keys, AUDIENCE, NOW_MS).is_ok()))
    });
    group.bench_function("first_use_2_blocks", |b| {
        b.iter(|| black_box(verify(black_box(&f.two_blocks), &f.keys, AUDIENCE, NOW_MS).is_ok()))
    });
    group.bench_function("cached", |b| {
        b.iter(|| black_box(f.verifier.verify(black_box(&f.one_block), NOW_MS).is_ok()))
    });
    group.finish();
}

/// Mean time of one call, over `iterations` calls.
fn time_per_call(iterations: u32, mut call: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    let mut ok = 0u32;
    for _ in 0..iterations {
        ok += u32::from(black_box(call()));
    }
    let elapsed = start.elapsed();
    black_box(ok);
    elapsed / iterations.max(1)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Interleaved rounds, so machine load affects every path alike; reports medians and ratios.
fn ratio_report(f: &Fixture) {
    const ROUNDS: usize = 31;
    let mut raw = Vec::with_capacity(ROUNDS);
    let mut one = Vec::with_capacity(ROUNDS);
    let mut two = Vec::with_capacity(ROUNDS);
    let mut cached = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        raw.push(time_per_call(200, || raw_verify(f)));
        one.push(time_per_call(200, || {
            verify(&f.one_block, &f.keys, AUDIENCE, NOW_MS).is_ok()
        }));
        two.push(time_per_call(200, || {
            verify(&f.two_blocks, &f.keys, AUDIENCE, NOW_MS).is_ok()
        }));
        cached.push(time_per_call(20_000, || {
            f.verifier.verify(&f.one_block, NOW_MS).is_ok()
        }));
    }
    let raw = median(raw);
    let base = raw.as_secs_f64().max(f64::MIN_POSITIVE);
    println!("\ntoken ratio report (median of {ROUNDS} interleaved rounds)");
    println!("| path | time | ratio to one Ed25519 verify | target |");
    println!("|---|---|---|---|");
    println!(
        "| raw Ed25519 verify (aws-lc) | {:.1} µs | 1.00 | baseline |",
        raw.as_secs_f64() * 1e6
    );
    for (name, samples, target) in [
        ("first use, 1 block", one, "≤ 4.00"),
        ("first use, 2 blocks", two, "≤ 4.00"),
        ("cached (TokenVerifier hit)", cached, "≤ 5 µs"),
    ] {
        let m = median(samples);
        println!(
            "| {name} | {:.2} µs | {:.3} | {target} |",
            m.as_secs_f64() * 1e6,
            m.as_secs_f64() / base
        );
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let f = fixture()?;
    if !(raw_verify(&f)
        && verify(&f.one_block, &f.keys, AUDIENCE, NOW_MS).is_ok()
        && verify(&f.two_blocks, &f.keys, AUDIENCE, NOW_MS).is_ok()
        && f.verifier.verify(&f.one_block, NOW_MS).is_ok())
    {
        return Err("a benchmarked path does not verify".into());
    }
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &f);
    criterion.final_summary();
    ratio_report(&f);
    Ok(())
}
