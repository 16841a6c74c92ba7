//! Vault benchmarks: `SECRET_REF` resolution in a 1,000-record vault after unlock (target ≤ 20 µs
//! p50), and unlock time with the default Argon2id parameters (64 MiB, t=3, p=4) and with a key
//! file. Besides criterion's estimates, prints per-call p50/p99 of resolve from 20,000 timed
//! calls, since criterion reports medians of batch means rather than per-call percentiles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // benchmark code

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use clawgate_protocol::{SecretName, SecretRef, SecretString};
use clawgate_vault::{KdfParams, KeySource, ResolveContext, Scope, Vault, generate_key_file};
use criterion::{Criterion, criterion_group};

const RECORDS: usize = 1000;

fn filled_vault(dir: &Path, source: &KeySource) -> Vault {
    let vault = Vault::create(&dir.join("vault.db"), source, KdfParams::default()).unwrap();
    let scope = Scope::new(["web_fetch", "exec"], ["api.example.com"]).unwrap();
    let items: Vec<_> = (0..RECORDS)
        .map(|i| {
            (
                format!("secret_{i:04}").parse::<SecretName>().unwrap(),
                SecretString::new(format!("value-{i:04}-{}", "x".repeat(40))),
                scope.clone(),
            )
        })
        .collect();
    vault.put_many(&items).unwrap();
    vault
}

/// A 1,000-record vault unlocked by a key file, and a reference to each record.
fn key_file_vault() -> (tempfile::TempDir, Vault, Vec<SecretRef>) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vault.key");
    generate_key_file(&key).unwrap();
    let vault = filled_vault(dir.path(), &KeySource::KeyFile(key));
    (dir, vault, refs())
}

fn refs() -> Vec<SecretRef> {
    (0..RECORDS)
        .map(|i| SecretRef::parse(&format!("SECRET_REF(secret_{i:04})")).unwrap())
        .collect()
}

fn resolve(c: &mut Criterion) {
    let (_dir, vault, refs) = key_file_vault();
    let hosts = ["api.example.com".to_owned()];
    let ctx = ResolveContext {
        tool: "web_fetch",
        hosts: &hosts,
    };
    let mut i = 0;
    c.bench_function("resolve/1000_records", |b| {
        b.iter(|| {
            i = (i + 7) % RECORDS;
            black_box(vault.resolve(&refs[i], &ctx).unwrap());
        })
    });
    // Every hook decision and every proxied request asks whether the vault changed.
    c.bench_function("generation", |b| {
        b.iter(|| black_box(vault.generation().unwrap()))
    });
    let denied = ResolveContext {
        tool: "message",
        hosts: &[],
    };
    c.bench_function("resolve/1000_records_out_of_scope", |b| {
        b.iter(|| {
            i = (i + 7) % RECORDS;
            black_box(vault.resolve(&refs[i], &denied).is_err());
        })
    });
}

fn unlock(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let pass = KeySource::Passphrase(SecretString::new("correct horse battery staple".into()));
    drop(filled_vault(dir.path(), &pass));
    let mut group = c.benchmark_group("unlock");
    group.sample_size(10);
    group.bench_function("argon2id_64MiB_t3_p4_1000_records", |b| {
        b.iter(|| black_box(Vault::open(&dir.path().join("vault.db"), &pass).unwrap()))
    });
    let dir2 = tempfile::tempdir().unwrap();
    let key = dir2.path().join("vault.key");
    generate_key_file(&key).unwrap();
    let source = KeySource::KeyFile(key);
    drop(filled_vault(dir2.path(), &source));
    group.bench_function("key_file_1000_records", |b| {
        b.iter(|| black_box(Vault::open(&dir2.path().join("vault.db"), &source).unwrap()))
    });
    group.finish();
}

/// Per-call latency percentiles of `resolve`, printed for the closing notes.
fn resolve_percentiles() {
    let (_dir, vault, refs) = key_file_vault();
    let hosts = ["api.example.com".to_owned()];
    let ctx = ResolveContext {
        tool: "web_fetch",
        hosts: &hosts,
    };
    for r in refs.iter().take(2000) {
        black_box(vault.resolve(r, &ctx).unwrap()); // warm-up
    }
    let n = if std::env::args().any(|a| a == "--test") {
        200
    } else {
        20_000
    };
    let mut samples: Vec<u128> = (0..n)
        .map(|i| {
            let start = Instant::now();
            black_box(vault.resolve(&refs[(i * 7) % RECORDS], &ctx).unwrap());
            start.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0
    };
    println!(
        "resolve per-call latency over {n} calls, 1,000-record vault: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}

criterion_group!(benches, resolve, unlock);

fn main() {
    resolve_percentiles();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
