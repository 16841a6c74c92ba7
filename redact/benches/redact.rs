//! Redaction throughput with 1,000 vault secrets and every rule (target ≥ 300 MB/s per core), on
//! prompt-like text: code, logs, JSON tool output, prose, lockfile lines, with a few secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code

use std::hint::black_box;

use clawgate_protocol::SecretString;
use clawgate_redact::Redactor;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A tiny deterministic generator (xorshift), so the bench needs no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn word(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[(self.next() % alphabet.len() as u64) as usize]))
            .collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

fn prompt_text(size: usize, rng: &mut Rng) -> String {
    let mut out = String::with_capacity(size + 512);
    while out.len() < size {
        let line = match rng.next() % 10 {
            0 => format!("    let {} = client.get(\"https://api.example.com/v1/items/{}\").await?;\n", rng.word(b"abcdefghij_", 8), rng.next() % 10_000),
            1 => format!("2026-11-23T04:{:02}:{:02}Z INFO request_id={} status=200 duration_ms={}\n", rng.next() % 60, rng.next() % 60, rng.word(HEX, 32), rng.next() % 900),
            2 => format!("{{\"role\":\"tool\",\"content\":\"total {} drwxr-xr-x  5 agent agent 4096 Nov 23 src\\n-rw-r--r-- 1 agent agent {} README.md\"}}\n", rng.next() % 100, rng.next() % 9000),
            3 => "The function returns the parsed configuration; if the file is missing we fall back to defaults and log a warning.\n".to_owned(),
            4 => format!("commit {}\nAuthor: Dev <dev@example.com>\n", rng.word(HEX, 40)),
            5 => format!("\"integrity\": \"sha512-{}==\",\n", rng.word(ALNUM, 86)),
            6 => format!("def handler(event, context):\n    key = event['{}']\n    return {{'ok': True}}\n", rng.word(b"abcdefgh", 6)),
            7 => format!("| {} | {} | {} |\n", rng.word(ALNUM, 12), rng.next() % 1000, rng.word(b"abcdefghijklmnop ", 30)),
            8 => format!("export PATH=/usr/local/bin:$PATH  # token bucket size {}\n", rng.next() % 64),
            _ => format!("GITHUB_TOKEN=ghp_{}\n", rng.word(ALNUM, 36)),
        };
        out.push_str(&line);
    }
    out.truncate(size);
    while !out.is_char_boundary(out.len()) {
        out.pop();
    }
    out
}

fn redactor(rng: &mut Rng) -> Redactor {
    let vault = (0..1000).map(|i| {
        (
            format!("secret_{i}").parse().unwrap(),
            SecretString::new(rng.word(ALNUM, 24 + (i % 24))),
        )
    });
    Redactor::builder()
        .vault_values(vault)
        .placeholder_key([9; 32])
        .build()
        .unwrap()
}

fn throughput(c: &mut Criterion) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let redactor = redactor(&mut rng);
    let mut group = c.benchmark_group("redact_1000_vault_secrets_all_rules");
    for size in [4 * 1024, 64 * 1024, 1024 * 1024] {
        let text = prompt_text(size, &mut rng);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("scan", size), &text, |b, t| {
            b.iter(|| black_box(redactor.scan(t)))
        });
        group.bench_with_input(BenchmarkId::new("redact", size), &text, |b, t| {
            b.iter(|| black_box(redactor.redact(t)))
        });
    }
    group.finish();
    let clean =
        prompt_text(1024 * 1024, &mut Rng(7)).replace("GITHUB_TOKEN=ghp_", "GITHUB_USER=octo_");
    let mut group = c.benchmark_group("redact_no_secrets");
    group.throughput(Throughput::Bytes(clean.len() as u64));
    group.bench_function("scan_1MiB", |b| b.iter(|| black_box(redactor.scan(&clean))));
    // Each detector alone, to see where the time goes.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let vault = (0..1000).map(|i| {
        (
            format!("secret_{i}").parse().unwrap(),
            SecretString::new(rng.word(ALNUM, 24 + (i % 24))),
        )
    });
    let vault_only = Redactor::builder()
        .vault_values(vault)
        .without_rules()
        .without_entropy()
        .build()
        .unwrap();
    let rules_only = Redactor::builder().without_entropy().build().unwrap();
    let entropy_only = Redactor::builder().without_rules().build().unwrap();
    group.bench_function("vault_only_1MiB", |b| {
        b.iter(|| black_box(vault_only.scan(&clean)))
    });
    group.bench_function("rules_only_1MiB", |b| {
        b.iter(|| black_box(rules_only.scan(&clean)))
    });
    group.bench_function("entropy_only_1MiB", |b| {
        b.iter(|| black_box(entropy_only.scan(&clean)))
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
