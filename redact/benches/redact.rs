//! Redaction throughput with 1,000 vault secrets, every rule and the entropy detector (target
//! ≥ 300 MB/s per core), on prompt-like text: code, logs, configs, chat, JSON tool output.
//!
//! * `redact_1000_vault_secrets_all_rules`: the original mix (one line in ten carries a GitHub
//!   token), at 4 KiB, 64 KiB and 1 MiB.
//! * `redact_no_secrets`: that mix without the tokens, and each detector alone.
//! * `realistic_1MiB`: a richer mix (code, logs, configs, chat, JSON, lockfiles, URLs) with no
//!   secret (`clean`), and with a planted secret in one line in eight (`dense`: rule formats,
//!   assignments caught by entropy, vault values raw, JSON-escaped, URL-encoded, hex and base64),
//!   and at lower densities (one line in 32, one in 128); on `dense`, also each detector alone.
//!   `REDACT_BENCH_DUMP=DIR` writes these texts to `DIR` (for profiling outside the bench).
//! * `conversation_replay`: a 30-turn agent conversation replayed the way agents send it (every
//!   request carries the whole history); bytes are all bytes of all requests. `uncached` calls
//!   `redact` on every string, `cached` calls `redact_cached` (the cache is emptied before each
//!   replay, so every new string is still scanned once).
//!
//! `cargo bench -p clawgate-redact --bench redact` measures wall time; on a shared machine,
//! `REDACT_BENCH_CLOCK=cpu` measures the benchmark thread's CPU time instead (20 equal samples per
//! benchmark), which other processes disturb much less. Compare versions in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code

use std::hint::black_box;

use base64::Engine;
use clawgate_protocol::SecretString;
use clawgate_redact::Redactor;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

/// A tiny deterministic generator (xorshift), so the bench needs no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn word(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[(self.next() % alphabet.len() as u64) as usize]))
            .collect()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

fn cut(mut out: String, size: usize) -> String {
    out.truncate(size);
    while !out.is_char_boundary(out.len()) {
        out.pop();
    }
    out
}

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
    cut(out, size)
}

/// One line of realistic prompt text without a secret. Many lines name secrets (`token`,
/// `password`, `api_key`) without holding one, as code and configs do.
fn clean_line(rng: &mut Rng) -> String {
    match rng.below(16) {
        0 => format!(
            "    let {} = client.get(\"https://api.example.com/v1/items/{}?page={}\").await?;\n",
            rng.word(b"abcdefghij_", 8),
            rng.below(10_000),
            rng.below(50)
        ),
        1 => format!(
            "2026-11-23T04:{:02}:{:02}.{:03}Z INFO http request_id={} method=POST path=/v1/sessions status=200 duration_ms={}\n",
            rng.below(60),
            rng.below(60),
            rng.below(1000),
            rng.word(HEX, 32),
            rng.below(900)
        ),
        2 => format!(
            "{{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_{}\",\"content\":\"total {}\\ndrwxr-xr-x  5 agent agent 4096 Nov 23 src\\n-rw-r--r-- 1 agent agent {} README.md\"}}\n",
            rng.word(ALNUM, 24),
            rng.below(100),
            rng.below(9000)
        ),
        3 => rng
            .pick(&[
                "The function returns the parsed configuration; if the file is missing we fall back to defaults and log a warning.\n",
                "I updated the retry logic so the client backs off exponentially, and added a test that fails without the fix.\n",
                "Could you check why the session token refresh fails after an hour? The logs show a 401 from the auth service.\n",
                "Sure! Here is the corrected version. I also renamed `api_key` to `api_key_env` so the key itself never lands in the config.\n",
            ])
            .to_owned(),
        4 => format!(
            "commit {}\nAuthor: Dev <dev@example.com>\nDate:   Mon Nov 23 04:12:33 2026 +0000\n",
            rng.word(HEX, 40)
        ),
        5 => format!(
            "    \"node_modules/{}\": {{\n      \"version\": \"{}.{}.{}\",\n      \"resolved\": \"https://registry.npmjs.org/{}/-/{}.tgz\",\n      \"integrity\": \"sha512-{}==\"\n    }},\n",
            rng.word(LOWER, 7),
            rng.below(10),
            rng.below(30),
            rng.below(10),
            rng.word(LOWER, 7),
            rng.word(LOWER, 7),
            rng.word(ALNUM, 86)
        ),
        6 => format!(
            "def handler(event, context):\n    token = os.environ[\"API_TOKEN\"]\n    key = event['{}']\n    return {{'ok': True, 'session': session_id}}\n",
            rng.word(LOWER, 6)
        ),
        7 => format!(
            "| {} | {} | {} |\n",
            rng.word(ALNUM, 12),
            rng.below(1000),
            rng.word(b"abcdefghijklmnop ", 30)
        ),
        8 => format!(
            "export PATH=/usr/local/bin:$PATH  # token bucket size {}\n",
            rng.below(64)
        ),
        9 => rng
            .pick(&[
                "database:\n  host: db.internal\n  port: 5432\n  user: app\n  password: ${DB_PASSWORD}\n  pool_size: 10\n",
                "[auth]\nprovider = \"oidc\"\nclient_id = \"web-frontend\"\nclient_secret = \"{{ vault('oidc/secret') }}\"\nscopes = [\"openid\", \"email\"]\n",
                "API_BASE_URL=https://api.example.com\nLOG_LEVEL=debug\nSESSION_COOKIE_NAME=sid\nACCESS_TOKEN_TTL=3600\n",
            ])
            .to_owned(),
        10 => format!(
            "Traceback (most recent call last):\n  File \"/srv/app/{}.py\", line {}, in refresh_token\n    raise AuthError(\"token expired\")\nAuthError: token expired\n",
            rng.word(LOWER, 8),
            rng.below(400)
        ),
        11 => format!(
            "  {{\"id\": {}, \"name\": \"{}\", \"email\": \"{}@example.com\", \"created_at\": \"2026-11-{:02}T10:00:00Z\", \"active\": true}},\n",
            rng.below(100_000),
            rng.word(LOWER, 9),
            rng.word(LOWER, 6),
            1 + rng.below(28)
        ),
        12 => format!(
            "    if (!response.ok) throw new Error(`request ${{url}} failed: ${{response.status}}`); // retry {}\n",
            rng.below(5)
        ),
        13 => format!(
            "<img src=\"data:image/png;base64,{}\" alt=\"chart\">\n",
            rng.word(ALNUM, 120)
        ),
        14 => format!(
            "docker run --rm -e AWS_REGION=eu-west-1 -v $(pwd):/work ghcr.io/acme/{}:{}.{} make test\n",
            rng.word(LOWER, 6),
            rng.below(10),
            rng.below(10)
        ),
        _ => format!(
            "- [{}] {} ({} ms)\n",
            rng.pick(&["x", " "]),
            rng.word(b"abcdefghijklmnopqrstuvwxyz ", 40),
            rng.below(2000)
        ),
    }
}

/// A line holding one secret: a credential format, an assignment caught by entropy, or a vault
/// value in some encoding.
fn secret_line(rng: &mut Rng, vault: &[String]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    match rng.below(12) {
        0 => format!("GITHUB_TOKEN=ghp_{}\n", rng.word(ALNUM, 36)),
        1 => format!(
            "aws_access_key_id = AKIA{}\n",
            rng.word(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        ),
        2 => format!("stripe.api_key = \"sk_live_{}\"\n", rng.word(ALNUM, 24)),
        3 => format!(
            "curl -H 'Authorization: Bearer {}' https://api.example.com/v1/me\n",
            rng.word(ALNUM, 40)
        ),
        4 => format!(
            "DATABASE_URL=postgres://app:{}@db.internal:5432/app\n",
            rng.word(ALNUM, 18)
        ),
        5 => format!("  \"client_secret\": \"{}\",\n", rng.word(ALNUM, 32)),
        6 => format!(
            "    password = \"{}!{}\"\n",
            rng.word(ALNUM, 10),
            rng.below(100)
        ),
        7 => format!(
            "token: eyJhbGciOiJIUzI1NiJ9.eyJ{}.{}\n",
            rng.word(ALNUM, 40),
            rng.word(ALNUM, 43)
        ),
        8 => format!("export DEPLOY_KEY={}\n", vault[rng.below(vault.len())]),
        9 => format!(
            "{{\"content\": {}}}\n",
            serde_json::to_string(&vault[rng.below(vault.len())]).unwrap()
        ),
        10 => format!(
            "Authorization: Basic {}\n",
            b64.encode(format!("deploy:{}", vault[rng.below(vault.len())]))
        ),
        _ => format!("dump: {}\n", hex::encode(&vault[rng.below(vault.len())])),
    }
}

fn realistic_text(size: usize, rng: &mut Rng, vault: &[String], secret_every: usize) -> String {
    let mut out = String::with_capacity(size + 1024);
    while out.len() < size {
        if secret_every > 0 && rng.below(secret_every) == 0 {
            out.push_str(&secret_line(rng, vault));
        } else {
            out.push_str(&clean_line(rng));
        }
    }
    cut(out, size)
}

fn vault_values(rng: &mut Rng) -> Vec<String> {
    (0..1000).map(|i| rng.word(ALNUM, 24 + (i % 24))).collect()
}

fn redactor(values: &[String]) -> Redactor {
    let vault = values.iter().enumerate().map(|(i, v)| {
        (
            format!("secret_{i}").parse().unwrap(),
            SecretString::new(v.clone()),
        )
    });
    Redactor::builder()
        .vault_values(vault)
        .placeholder_key([9; 32])
        .build()
        .unwrap()
}

/// Redacts one string of a request the way the proxy would.
fn redact_string(r: &Redactor, s: &str) -> usize {
    r.redact_cached(s).len()
}

/// Forgets everything cached (so every replay starts cold).
fn reset(r: &Redactor) {
    r.clear_cache();
}

/// The strings of each turn's request: the system prompt, then every message so far.
fn conversation(rng: &mut Rng, vault: &[String], turns: usize) -> Vec<Vec<String>> {
    let system = realistic_text(8 * 1024, rng, vault, 0);
    let mut history: Vec<String> = vec![system];
    let mut requests = Vec::new();
    for _ in 0..turns {
        let user = realistic_text(200 + rng.below(800), rng, vault, 0);
        history.push(user);
        requests.push(history.clone());
        let assistant = realistic_text(1024 + rng.below(2048), rng, vault, 0);
        let tool = realistic_text(2048 + rng.below(14 * 1024), rng, vault, 12);
        history.push(assistant);
        history.push(tool);
    }
    requests
}

/// `flat`: equal samples (CPU time is read at scheduler-tick granularity, so short samples are
/// useless).
fn throughput<M: Measurement>(c: &mut Criterion<M>, flat: bool) {
    let mode = if flat {
        SamplingMode::Flat
    } else {
        SamplingMode::Auto
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let values = vault_values(&mut rng);
    let redactor = redactor(&values);
    let mut group = c.benchmark_group("redact_1000_vault_secrets_all_rules");
    group.sampling_mode(mode);
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
    group.sampling_mode(mode);
    group.throughput(Throughput::Bytes(clean.len() as u64));
    group.bench_function("scan_1MiB", |b| b.iter(|| black_box(redactor.scan(&clean))));
    // Each detector alone, to see where the time goes.
    let vault = values.iter().enumerate().map(|(i, v)| {
        (
            format!("secret_{i}").parse().unwrap(),
            SecretString::new(v.clone()),
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

    let mut group = c.benchmark_group("realistic_1MiB");
    group.sampling_mode(mode);
    let mut rng = Rng(11);
    for (name, every) in [
        ("clean", 0),
        ("dense", 8),
        ("one_in_32_lines", 32),
        ("one_in_128_lines", 128),
    ] {
        let text = realistic_text(1024 * 1024, &mut rng, &values, every);
        if let Ok(dir) = std::env::var("REDACT_BENCH_DUMP") {
            std::fs::write(format!("{dir}/{name}.txt"), &text).unwrap();
        }
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("redact", name), &text, |b, t| {
            b.iter(|| black_box(redactor.redact(t)))
        });
        if every == 8 {
            // Each detector alone on the dense text, to see where the time goes.
            for (detector, alone) in [
                ("vault_only", &vault_only),
                ("rules_only", &rules_only),
                ("entropy_only", &entropy_only),
            ] {
                group.bench_with_input(
                    BenchmarkId::new(format!("scan_{detector}"), name),
                    &text,
                    |b, t| b.iter(|| black_box(alone.scan(t))),
                );
            }
        }
    }
    group.finish();

    let requests = conversation(&mut Rng(13), &values, 30);
    let total: usize = requests.iter().flatten().map(String::len).sum();
    let mut group = c.benchmark_group("conversation_replay");
    group.sampling_mode(mode);
    group.throughput(Throughput::Bytes(total as u64));
    group.sample_size(20);
    group.bench_function("uncached", |b| {
        b.iter(|| {
            let mut n = 0;
            for request in &requests {
                for s in request {
                    n += redactor.redact(s).len();
                }
            }
            black_box(n)
        })
    });
    group.bench_function("cached", |b| {
        b.iter(|| {
            reset(&redactor);
            let mut n = 0;
            for request in &requests {
                for s in request {
                    n += redact_string(&redactor, s);
                }
            }
            black_box(n)
        })
    });
    group.finish();
}

/// CPU time of the benchmark thread (`/proc/thread-self/schedstat`, nanoseconds, updated by the
/// scheduler at least every tick). On a shared machine wall time also counts the time other
/// processes hold the core; with `REDACT_BENCH_CLOCK=cpu` the bench measures this instead.
struct CpuTime {
    wall: WallTime,
}

fn thread_cpu_ns() -> u64 {
    clawgate_protocol::io::read_capped(std::path::Path::new("/proc/thread-self/schedstat"), 256)
        .ok()
        .and_then(|bytes| {
            let text = String::from_utf8(bytes).ok()?;
            text.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = std::time::Duration;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> std::time::Duration {
        std::time::Duration::from_nanos(thread_cpu_ns().saturating_sub(start))
    }
    fn add(&self, a: &std::time::Duration, b: &std::time::Duration) -> std::time::Duration {
        *a + *b
    }
    fn zero(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    fn to_f64(&self, value: &std::time::Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

fn main() {
    if std::env::var("REDACT_BENCH_CLOCK").is_ok_and(|v| v == "cpu") {
        let mut c = Criterion::default()
            .with_measurement(CpuTime { wall: WallTime })
            .sample_size(20)
            .configure_from_args();
        throughput(&mut c, true);
        c.final_summary();
    } else {
        let mut c = Criterion::default().configure_from_args();
        throughput(&mut c, false);
        c.final_summary();
    }
}
