//! Load on the real egress proxy: starts `clawgate serve` with the proxy on, 1,000 vault secrets
//! (so every request is redacted against 1,000 values, every rule and the entropy detector) and
//! both routes pointed at an in-process fake provider on loopback, then reports:
//!
//! * added latency (p50, p99) of chat requests of 4 KB, 64 KB and 1 MB, against direct calls to
//!   the same fake, interleaved (1 ms apart), over the same keep-alive client; twice: "history
//!   resent" (the same body every turn, as agents send it: the proxy answers strings it has seen
//!   from its redaction cache) and "all-new content" (fresh text every request: all scanned);
//! * added SSE time to first byte (an Anthropic stream whose first event is written at once);
//! * redaction throughput of `Redactor::redact` (no cache) on one core, clean and dense text;
//! * the daemon's resident memory idle, sampled through a soak of 100 concurrent long SSE
//!   streams (`CLAWGATE_BENCH_SOAK_SECS`, default 60; 600 for the 10-minute run), and idle
//!   again 95 s after the last request (the redaction cache is dropped after a minute unused);
//! * that every proxied request was metered with the fake's exact token counts.
//!
//! `cargo bench --bench egress_load` for the full run; `-- --test` (what CI runs) does a short
//! one that still takes every path and exits non-zero on any functional error.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // a benchmark driver

use std::convert::Infallible;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clawgate_protocol::{SecretName, SecretString};
use clawgate_redact::Redactor;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Channel, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const VAULT_SECRETS: usize = 1000;
const STREAMS: usize = 100;

// ---------------------------------------------------------------------------------------------
// Failing cleanly: a functional error kills the daemon and exits non-zero.

static DAEMON: Mutex<Option<Child>> = Mutex::new(None);
static DAEMON_LOG: Mutex<Option<PathBuf>> = Mutex::new(None);

fn stop_daemon() {
    if let Ok(mut d) = DAEMON.try_lock()
        && let Some(mut c) = d.take()
    {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("egress_load: FAILED: {msg}");
    stop_daemon();
    if let Ok(l) = DAEMON_LOG.try_lock()
        && let Some(p) = l.as_ref()
    {
        let log = std::fs::read_to_string(p).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!("--- last lines of the daemon's log ---");
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
    }
    std::process::exit(1);
}

// ---------------------------------------------------------------------------------------------
// Realistic prompt text.

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
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const IDENT: &[u8] = b"abcdefghijklmnopqrstuvwxyz_";

const PROSE: [&str; 10] = [
    "The function returns the parsed configuration; if the file is missing we fall back to defaults and log a warning.",
    "I looked at the failing test: the fixture creates the temp directory after the server starts, so the first request races it.",
    "Could you refactor this so the retry loop lives in one place and the backoff is configurable per caller?",
    "Here is the plan: first reproduce the bug with a unit test, then fix the off-by-one in the pagination cursor, then update the changelog.",
    "The migration adds a nullable column first, backfills it in batches of 10,000 rows, and only then adds the NOT NULL constraint.",
    "Running the linter now. It flagged two unused imports and a shadowed variable in the request handler; fixing those as well.",
    "We should not block the event loop here: move the file hashing to a worker thread and stream progress back over the channel.",
    "The benchmark shows a 12% regression after the upgrade, mostly in JSON serialisation; profile before changing anything.",
    "Please keep the public API unchanged; internal helpers can move, but the exported names are used by three other services.",
    "Done. All 214 tests pass locally; CI is still running the integration suite against the staging database.",
];

fn text_line(rng: &mut Rng) -> String {
    match rng.next() % 12 {
        0 | 1 => format!("{}\n", rng.pick(&PROSE)),
        2 => format!(
            "    let {} = client.get(\"https://api.example.com/v1/items/{}\").await?;\n",
            rng.word(IDENT, 8),
            rng.next() % 10_000
        ),
        3 => format!(
            "2026-11-23T04:{:02}:{:02}.{:03}Z INFO  http{{method=GET path=/v1/orders/{}}}: request_id={} status=200 duration_ms={}\n",
            rng.next() % 60,
            rng.next() % 60,
            rng.next() % 1000,
            rng.next() % 100_000,
            rng.word(HEX, 32),
            rng.next() % 900
        ),
        4 => format!(
            "def {}(event, context):\n    key = event[\"{}\"]\n    if not key:\n        raise ValueError(\"missing key\")\n    return {{\"ok\": True, \"count\": {}}}\n",
            rng.word(IDENT, 10),
            rng.word(IDENT, 6),
            rng.next() % 100
        ),
        5 => format!(
            "commit {}\nAuthor: Dev <dev@example.com>\nDate:   Mon Nov 23 04:{:02}:00 2026 +0000\n",
            rng.word(HEX, 40),
            rng.next() % 60
        ),
        6 => format!(
            "-rw-r--r--  1 agent agent {:>6} Nov 23 04:{:02} {}.rs\n",
            rng.next() % 90_000,
            rng.next() % 60,
            rng.word(IDENT, 9)
        ),
        7 => format!(
            "{{\"id\": {}, \"name\": \"{}\", \"tags\": [\"{}\", \"{}\"], \"active\": true}}\n",
            rng.next() % 10_000,
            rng.word(IDENT, 12),
            rng.word(IDENT, 5),
            rng.word(IDENT, 7)
        ),
        8 => format!(
            "error[E0308]: mismatched types\n  --> src/{}.rs:{}:{}\n   |\n   = note: expected `u64`, found `usize`\n",
            rng.word(IDENT, 6),
            rng.next() % 500,
            rng.next() % 80
        ),
        9 => format!(
            "  File \"/srv/app/{}.py\", line {}, in {}\n    return self._session.execute(query, params)\n",
            rng.word(IDENT, 8),
            rng.next() % 900,
            rng.word(IDENT, 7)
        ),
        10 => format!(
            "| {} | {:>5} | {} |\n",
            rng.word(ALNUM, 12),
            rng.next() % 1000,
            rng.word(b"abcdefghijklmnop ", 30)
        ),
        _ => format!(
            "+    assert_eq!(parse(\"{}\"), Ok({}));\n",
            rng.word(IDENT, 10),
            rng.next() % 1000
        ),
    }
}

/// One planted secret: the value that must not reach the provider, and whether it is a vault
/// value (a miss is then a functional error) or only credential-shaped (a rule's job).
struct Plant {
    value: String,
    vault: bool,
}

/// What [`planted_line`] plants, by kind.
const PLANT_KINDS: [&str; 7] = [
    "vault value after DB_PASSWORD=",
    "vault value in a URL",
    "vault value in a JSON string",
    "GitHub token",
    "AWS access key id",
    "Stripe live key",
    "password = \"...\"",
];

/// A line holding a planted secret of `kind` (an index into [`PLANT_KINDS`]; random if `None`).
fn planted_line(rng: &mut Rng, vault: &[(String, String)], kind: Option<u64>) -> (String, Plant) {
    let kind = kind.unwrap_or_else(|| rng.next() % PLANT_KINDS.len() as u64);
    let v = &vault[rng.below(vault.len())].1;
    match kind {
        0 => (
            format!("DB_PASSWORD={v}\n"),
            Plant {
                value: v.clone(),
                vault: true,
            },
        ),
        1 => (
            format!("DATABASE_URL=postgres://app:{v}@db.internal:5432/prod\n"),
            Plant {
                value: v.clone(),
                vault: true,
            },
        ),
        2 => (
            format!("config = {{\"api_token\": \"{v}\", \"retries\": 3}}\n"),
            Plant {
                value: v.clone(),
                vault: true,
            },
        ),
        3 => {
            let t = format!("ghp_{}", rng.word(ALNUM, 36));
            (
                format!("curl -H 'Authorization: Bearer {t}' https://api.github.com/user\n"),
                Plant {
                    value: t,
                    vault: false,
                },
            )
        }
        4 => {
            let t = format!("AKIA{}", rng.word(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
            (
                format!("aws_access_key_id = {t}\n"),
                Plant {
                    value: t,
                    vault: false,
                },
            )
        }
        5 => {
            let t = format!("sk_live_{}", rng.word(ALNUM, 32));
            (
                format!("stripe.api_key = \"{t}\"\n"),
                Plant {
                    value: t,
                    vault: false,
                },
            )
        }
        _ => {
            let t = format!("Zq8#{}!x", rng.word(ALNUM, 14));
            (
                format!("password = \"{t}\"\n"),
                Plant {
                    value: t,
                    vault: false,
                },
            )
        }
    }
}

/// About `len` bytes of prompt text; with `plant`, one planted secret in the middle.
fn text(
    rng: &mut Rng,
    len: usize,
    vault: &[(String, String)],
    plant: Option<bool>,
    plants: &mut Vec<Plant>,
) -> String {
    let mut out = String::with_capacity(len + 256);
    let at = len / 2;
    let mut planted = plant.is_none();
    while out.len() < len {
        if !planted && out.len() >= at {
            let (line, p) = planted_line(rng, vault, (plant == Some(true)).then_some(0));
            out.push_str(&line);
            plants.push(p);
            planted = true;
        }
        out.push_str(&text_line(rng));
    }
    out
}

const SYSTEM: &str = "You are a coding agent working in the user's repository. Use the tools to read files, run commands and edit code. Keep answers short; show diffs, not whole files. Never print credentials.";

/// An OpenAI chat request of about `size` bytes: a system prompt, then user and assistant turns
/// of 1-4 KB with code, logs and prose; the first user turn holds a vault value, about one turn
/// in three some other planted secret.
fn chat_body(rng: &mut Rng, size: usize, vault: &[(String, String)]) -> (Bytes, Vec<Plant>) {
    let mut plants = Vec::new();
    let mut messages = vec![serde_json::json!({"role": "system", "content": SYSTEM})];
    let mut total = SYSTEM.len() + 120;
    let mut i = 0usize;
    while total < size {
        let want = (1024 + rng.below(3072)).min(size - total).max(200);
        let plant = if i == 0 {
            Some(true)
        } else if rng.next().is_multiple_of(3) {
            Some(false)
        } else {
            None
        };
        let content = text(rng, want, vault, plant, &mut plants);
        // JSON escapes (newlines, quotes) make the encoded string a little longer.
        total += content.len() + content.matches(['\n', '"']).count() + 40;
        let role = if i.is_multiple_of(2) {
            "user"
        } else {
            "assistant"
        };
        messages.push(serde_json::json!({"role": role, "content": content}));
        i += 1;
    }
    let body = serde_json::json!({"model": "gpt-bench-1", "max_tokens": 1024, "temperature": 0.2, "messages": messages});
    (Bytes::from(body.to_string()), plants)
}

// ---------------------------------------------------------------------------------------------
// The fake provider: OpenAI chat (JSON) and Anthropic messages (SSE), real wire formats.

const OPENAI_KEY: &str = "sk-bench-openai-real-key-0123456789abcdef";
const ANTHROPIC_KEY: &str = "sk-ant-bench-real-key-0123456789abcdef";

const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1764000000,"model":"gpt-bench-1","choices":[{"index":0,"message":{"role":"assistant","content":"Done: the retry loop now lives in one place."},"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":7,"total_tokens":127,"prompt_tokens_details":{"cached_tokens":20}}}"#;

const SSE_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-bench-1\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":20,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";

/// Fake-side counts and the last body that came through the proxy (recognised by the real
/// provider key the proxy injects).
#[derive(Default)]
struct FakeState {
    last_proxied: Mutex<Option<Bytes>>,
    proxied: AtomicU64,
    direct: AtomicU64,
}

type FBody = BoxBody<Bytes, Infallible>;

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn fake_handle(
    req: Request<Incoming>,
    st: Arc<FakeState>,
) -> Result<Response<FBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let proxied = header(&req, "authorization") == Some(&format!("Bearer {OPENAI_KEY}"))
        || header(&req, "x-api-key") == Some(ANTHROPIC_KEY);
    let interval: u64 = header(&req, "x-fake-sse-interval-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let deltas: u64 = header(&req, "x-fake-sse-deltas")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let body = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if proxied {
        st.proxied.fetch_add(1, Ordering::Relaxed);
    } else {
        st.direct.fetch_add(1, Ordering::Relaxed);
    }
    match path.as_str() {
        "/v1/chat/completions" => {
            if proxied && let Ok(mut l) = st.last_proxied.lock() {
                *l = Some(body);
            }
            Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(OPENAI_ANSWER.as_bytes())).boxed())
                .unwrap())
        }
        "/v1/messages" => {
            let (mut tx, rx) = Channel::<Bytes, Infallible>::new(4);
            tokio::spawn(async move {
                // The first event at once: time to first byte is the proxy's, not the model's.
                if tx
                    .send_data(Bytes::from_static(SSE_START.as_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
                for i in 0..deltas {
                    if interval > 0 {
                        tokio::time::sleep(Duration::from_millis(interval)).await;
                    }
                    let ev = format!(
                        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i} \"}}}}\n\n"
                    );
                    if tx.send_data(Bytes::from(ev)).await.is_err() {
                        return;
                    }
                }
                let end = format!(
                    "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\nevent: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{deltas}}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
                );
                let _ = tx.send_data(Bytes::from(end)).await;
            });
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(rx.boxed())
                .unwrap())
        }
        _ => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()).boxed())
            .unwrap()),
    }
}

async fn start_fake() -> (u16, Arc<FakeState>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let st = Arc::new(FakeState::default());
    let state = st.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let st = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| fake_handle(req, st.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (port, st)
}

// ---------------------------------------------------------------------------------------------
// The daemon.

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Daemon {
    _dir: tempfile::TempDir,
    state: PathBuf,
    config: PathBuf,
    pid: u32,
    port: u16,
}

impl Daemon {
    /// `clawgate ARGS` on this daemon's state, `stdin` fed in; stdout on success.
    fn cli(&self, args: &[&str], with_config: bool, stdin: &str) -> String {
        use std::io::Write;
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CLAWGATE_STATE_DIR", &self.state)
            .env("CLAWGATE_LOG", "warn")
            .args(args);
        if with_config {
            cmd.arg("--config").arg(&self.config);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            fail(&format!(
                "clawgate {}: {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn start_daemon(fake_port: u16) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("c.toml");
    let port = free_port();
    // The CONNECT listener is not measured here, and its fixed default port would collide with
    // other daemons on the machine.
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[admin]\nlisten = \"off\"\n[egress]\nlisten = \"127.0.0.1:{port}\"\nconnect_listen = \"off\"\n[egress.upstreams]\nopenai = \"http://127.0.0.1:{fake_port}\"\nanthropic = \"http://127.0.0.1:{fake_port}\"\n",
            state.display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CLAWGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    *DAEMON.lock().unwrap() = Some(child);
    *DAEMON_LOG.lock().unwrap() = Some(log_path);
    let socket = state.join("hook.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    {
        if Instant::now() > deadline {
            fail("clawgate serve did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon {
        _dir: dir,
        state,
        config,
        pid,
        port,
    }
}

// ---------------------------------------------------------------------------------------------
// The client side.

type Http = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> Http {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(120))
        .build(c)
}

struct Answer {
    /// To the last byte of the body.
    total: Duration,
    /// To the first body byte.
    first: Duration,
    body_tail: Vec<u8>,
}

/// One POST; fails the run on anything but 200 with a whole body.
async fn post(client: &Http, url: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let mut b = Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(body)).unwrap();
    let started = Instant::now();
    let r = match client.request(req).await {
        Ok(r) => r,
        Err(e) => fail(&format!("POST {url}: {e}")),
    };
    let status = r.status();
    let mut body = r.into_body();
    let mut first = None;
    let mut tail: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => fail(&format!("POST {url}: body: {e}")),
        };
        if let Some(d) = frame.data_ref()
            && !d.is_empty()
        {
            first.get_or_insert_with(|| started.elapsed());
            tail.extend_from_slice(d);
            if tail.len() > 4096 {
                tail.drain(..tail.len() - 4096);
            }
        }
    }
    let total = started.elapsed();
    if status != StatusCode::OK {
        fail(&format!(
            "POST {url}: status {status}: {}",
            String::from_utf8_lossy(&tail)
        ));
    }
    Answer {
        total,
        first: first.unwrap_or(total),
        body_tail: tail,
    }
}

/// With `pace`, a pause between measured requests, as between an agent's turns: the daemon
/// finishes what it does after answering (metering, cache upkeep, freeing a large body) before
/// the next request is timed, and idle threads park, so each request pays the wake-ups.
/// Back-to-back (no pause) keeps every thread hot, and the daemon's after-work lands on
/// whichever request comes next, often the direct one.
async fn settle(pace: bool) {
    if pace {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Interleaved SSE requests, direct and proxied: time to the first body byte.
async fn ttfb_latency(
    client: &Http,
    r: &Routes,
    sent: &Sent,
    pace: bool,
    warmup: usize,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut dd, mut pp) = (Vec::new(), Vec::new());
    for i in 0..warmup + n {
        let body = sse_body(&format!("turn {i}"));
        let (a, b) = if i % 2 == 0 {
            let a = sse(client, &r.direct_msgs, "direct", body.clone(), 0, 3).await;
            settle(pace).await;
            let b = sse(client, &r.proxy_msgs, &r.token, body, 0, 3).await;
            (a, b)
        } else {
            let b = sse(client, &r.proxy_msgs, &r.token, body.clone(), 0, 3).await;
            settle(pace).await;
            let a = sse(client, &r.direct_msgs, "direct", body, 0, 3).await;
            (a, b)
        };
        settle(pace).await;
        sent.anthropic.fetch_add(1, Ordering::Relaxed);
        sent.anthropic_output.fetch_add(3, Ordering::Relaxed);
        if i >= warmup {
            dd.push(ms(a.first));
            pp.push(ms(b.first));
        }
    }
    (dd, pp)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

struct Routes {
    direct_chat: String,
    proxy_chat: String,
    direct_msgs: String,
    proxy_msgs: String,
    token: String,
}

/// What was sent through the proxy, for the usage check.
#[derive(Default)]
struct Sent {
    openai: AtomicU64,
    anthropic: AtomicU64,
    anthropic_output: AtomicU64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Latencies of one scenario, in ms.
struct Row {
    group: &'static str,
    label: String,
    n: usize,
    d50: f64,
    d99: f64,
    p50: f64,
    p99: f64,
}

impl Row {
    fn new(group: &'static str, label: String, mut d: Vec<f64>, mut p: Vec<f64>) -> Row {
        d.sort_by(f64::total_cmp);
        p.sort_by(f64::total_cmp);
        Row {
            group,
            label,
            n: d.len(),
            d50: pct(&d, 0.5),
            d99: pct(&d, 0.99),
            p50: pct(&p, 0.5),
            p99: pct(&p, 0.99),
        }
    }
    fn print(&self) {
        println!(
            "  {:<34} {:>5} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>6.2} {:>6.2}",
            self.label,
            self.n,
            self.d50,
            self.d99,
            self.p50,
            self.p99,
            self.p50 - self.d50,
            self.p99 - self.d99,
            self.p50 / self.d50,
            self.p99 / self.d99
        );
    }
}

const BACK_TO_BACK: &str = "back-to-back";
const PACED: &str = "paced";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Interleaved direct and proxied chat requests of about `size` bytes; `fresh`: new content
/// every request, else the same body every time. Every proxied body is checked at the fake.
#[allow(clippy::too_many_arguments)]
async fn chat_latency(
    client: &Http,
    r: &Routes,
    fake: &FakeState,
    sent: &Sent,
    rng: &mut Rng,
    vault: &[(String, String)],
    size: usize,
    fresh: bool,
    pace: bool,
    warmup: usize,
    n: usize,
    misses: &mut RuleMisses,
) -> (Vec<f64>, Vec<f64>, usize) {
    let auth = format!("Bearer {}", r.token);
    let proxied_h = [("authorization", auth.as_str())];
    let direct_h = [("authorization", "Bearer direct")];
    let (mut body, mut plants) = chat_body(rng, size, vault);
    let len = body.len();
    let (mut d, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..warmup + n {
        if fresh && i > 0 {
            (body, plants) = chat_body(rng, size, vault);
        }
        // Alternate which goes first, so neither always follows the other.
        let (a, b) = if i % 2 == 0 {
            let a = post(client, &r.direct_chat, &direct_h, body.clone()).await;
            settle(pace).await;
            let b = post(client, &r.proxy_chat, &proxied_h, body.clone()).await;
            (a, b)
        } else {
            let b = post(client, &r.proxy_chat, &proxied_h, body.clone()).await;
            settle(pace).await;
            let a = post(client, &r.direct_chat, &direct_h, body.clone()).await;
            (a, b)
        };
        settle(pace).await;
        sent.openai.fetch_add(1, Ordering::Relaxed);
        if !contains(&b.body_tail, b"\"usage\"") || !contains(&a.body_tail, b"\"usage\"") {
            fail("a chat answer lost its body");
        }
        if fresh || i == 0 || i + 1 == warmup + n {
            check_redacted(fake, &plants, misses);
        }
        if i >= warmup {
            d.push(ms(a.total));
            p.push(ms(b.total));
        }
    }
    (d, p, len)
}

#[derive(Default)]
struct RuleMisses {
    checked: usize,
    missed: Vec<String>,
}

/// The last body the fake got through the proxy holds no planted vault value (else the run
/// fails) and, we hope, no credential-shaped plant (counted).
fn check_redacted(fake: &FakeState, plants: &[Plant], misses: &mut RuleMisses) {
    let Some(seen) = fake.last_proxied.lock().unwrap().clone() else {
        fail("the fake never saw a proxied request");
    };
    let seen = String::from_utf8_lossy(&seen);
    for p in plants {
        let leaked = seen.contains(p.value.as_str());
        if p.vault {
            if leaked {
                fail("a planted vault value reached the upstream unredacted");
            }
        } else {
            misses.checked += 1;
            if leaked {
                let shape: String = p.value.chars().take(8).collect();
                misses.missed.push(format!("{shape}…"));
            }
        }
    }
    if plants.iter().any(|p| p.vault) && !seen.contains("SECRET_REF(") {
        fail("no SECRET_REF placeholder in the redacted body");
    }
}

fn sse_body(extra: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({"model": "claude-bench-1", "max_tokens": 256, "stream": true,
            "messages": [{"role": "user", "content": format!("Summarise the last test run. {extra}")}]})
        .to_string(),
    )
}

/// One SSE request through the proxy (or direct); checks the stream ended with message_stop.
async fn sse(
    client: &Http,
    url: &str,
    auth: &str,
    body: Bytes,
    interval_ms: u64,
    deltas: u64,
) -> Answer {
    let interval = interval_ms.to_string();
    let deltas_s = deltas.to_string();
    let h = [
        ("x-api-key", auth),
        ("anthropic-version", "2023-06-01"),
        ("accept", "text/event-stream"),
        ("x-fake-sse-interval-ms", interval.as_str()),
        ("x-fake-sse-deltas", deltas_s.as_str()),
    ];
    let a = post(client, url, &h, body).await;
    if !contains(&a.body_tail, b"message_stop") {
        // Which side and where it stopped, so a recurrence can be told apart (seen once,
        // 2026-11-24, not reproduced in the next run).
        let tail = String::from_utf8_lossy(&a.body_tail);
        let skip = tail.chars().count().saturating_sub(300);
        let last: String = tail.chars().skip(skip).collect();
        fail(&format!(
            "an SSE stream from {url} ended without message_stop after {:.1} ms ({deltas} deltas every {interval_ms} ms asked); its last bytes: {last:?}",
            a.total.as_secs_f64() * 1000.0
        ));
    }
    a
}

// ---------------------------------------------------------------------------------------------
// Redaction throughput, in this process, one thread.

/// CPU time of the calling thread (ns resolution, from the scheduler's accounting).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns: u64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

struct Throughput {
    label: String,
    bytes: usize,
    cpu_mbs: f64,
    wall_mbs: f64,
}

fn redaction_throughput(quick: bool, vault: &[(String, String)]) -> (Vec<Throughput>, usize, f64) {
    let built = Instant::now();
    let redactor = Redactor::builder()
        .vault_values(vault.iter().map(|(n, v)| {
            (
                n.parse::<SecretName>().unwrap(),
                SecretString::new(v.clone()),
            )
        }))
        .placeholder_key([9; 32])
        .build()
        .unwrap_or_else(|e| fail(&format!("redactor: {e}")));
    let build_ms = ms(built.elapsed());
    let mut rng = Rng(0x0005_eed0_fc1a_55e5);
    let total = if quick { 256 << 10 } else { 4 << 20 };
    // Message-sized strings (the proxy redacts each JSON string of a request on its own).
    // `plant`: None, clean; Some(None), one line in eight a random planted secret; Some(Some(k)),
    // one line in eight a secret of kind k.
    let strings = |rng: &mut Rng, plant: Option<Option<u64>>, total: usize| -> Vec<String> {
        let mut out = Vec::new();
        let mut n = 0;
        while n < total {
            let mut s = String::new();
            while s.len() < 2048 {
                if let Some(kind) = plant
                    && rng.next().is_multiple_of(8)
                {
                    s.push_str(&planted_line(rng, vault, kind).0);
                } else {
                    s.push_str(&text_line(rng));
                }
            }
            n += s.len();
            out.push(s);
        }
        out
    };
    let clean = strings(&mut rng, None, total);
    let dense = strings(&mut rng, Some(None), total);
    let clean_one = clean.concat();
    let dense_one = dense.concat();
    let min_cpu = if quick {
        Duration::ZERO
    } else {
        Duration::from_secs(2)
    };
    let measure = |label: String, parts: &[&str], min_cpu: Duration| -> Throughput {
        let bytes: usize = parts.iter().map(|p| p.len()).sum();
        // One untimed pass (page in the automata).
        let mut found = 0usize;
        for p in parts {
            found += usize::from(matches!(redactor.redact(p), std::borrow::Cow::Owned(_)));
        }
        std::hint::black_box(found);
        let (c0, w0) = (thread_cpu(), Instant::now());
        let mut done = 0usize;
        loop {
            for p in parts {
                std::hint::black_box(redactor.redact(std::hint::black_box(p)));
            }
            done += bytes;
            if thread_cpu() - c0 >= min_cpu {
                break;
            }
        }
        let (cpu, wall) = (
            (thread_cpu() - c0).as_secs_f64(),
            w0.elapsed().as_secs_f64(),
        );
        // The scheduler's accounting lags by up to a tick: too coarse for a short run.
        let cpu = if cpu > 0.05 { cpu } else { wall };
        Throughput {
            label,
            bytes,
            cpu_mbs: done as f64 / cpu / 1e6,
            wall_mbs: done as f64 / wall / 1e6,
        }
    };
    let mut rows = vec![
        measure("clean, 2 KB strings".into(), &as_refs(&clean), min_cpu),
        measure("clean, one string".into(), &[clean_one.as_str()], min_cpu),
        measure(
            "dense (1 line in 8), 2 KB strings".into(),
            &as_refs(&dense),
            min_cpu,
        ),
        measure(
            "dense (1 line in 8), one string".into(),
            &[dense_one.as_str()],
            min_cpu,
        ),
    ];
    // Which kind of secret costs what (diagnostic rows, shorter).
    let breakdown = rows.len();
    for (k, name) in PLANT_KINDS.iter().enumerate() {
        let parts = strings(&mut rng, Some(Some(k as u64)), total / 4);
        rows.push(measure(format!("  {name}"), &as_refs(&parts), min_cpu / 4));
    }
    (rows, breakdown, build_ms)
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let only = only();
    std::panic::set_hook(Box::new(|info| {
        eprintln!("egress_load: panic: {info}");
        stop_daemon();
        std::process::exit(101);
    }));
    let soak_secs: u64 = if quick {
        2
    } else {
        std::env::var("CLAWGATE_BENCH_SOAK_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60)
    };

    // The vault: 1,000 random 32-character values.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let vault: Vec<(String, String)> = (0..VAULT_SECRETS)
        .map(|i| (format!("BENCH_SECRET_{i:04}"), rng.word(ALNUM, 32)))
        .collect();

    let (throughput, breakdown, build_ms) = if only.is_some() {
        (Vec::new(), 0, 0.0)
    } else {
        redaction_throughput(quick, &vault)
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(
        quick,
        only,
        soak_secs,
        vault,
        rng,
        (throughput, breakdown, build_ms),
    ));
    stop_daemon();
}

#[allow(clippy::too_many_lines)]
async fn run(
    quick: bool,
    only: Option<String>,
    soak_secs: u64,
    vault: Vec<(String, String)>,
    mut rng: Rng,
    (throughput, breakdown, build_ms): (Vec<Throughput>, usize, f64),
) {
    let (fake_port, fake) = start_fake().await;
    let d = tokio::task::spawn_blocking(move || start_daemon(fake_port))
        .await
        .unwrap();
    let d = Arc::new(d);
    let rss_started = rss_kib(d.pid);

    // Provider keys, 1,000 secrets, an agent token.
    let token = {
        let d = d.clone();
        let vault = vault.clone();
        tokio::task::spawn_blocking(move || {
            d.cli(
                &[
                    "vault",
                    "put",
                    "provider.openai",
                    "--tool",
                    "clawgate:egress",
                    "--host",
                    "127.0.0.1",
                ],
                false,
                OPENAI_KEY,
            );
            d.cli(
                &[
                    "vault",
                    "put",
                    "provider.anthropic",
                    "--tool",
                    "clawgate:egress",
                    "--host",
                    "127.0.0.1",
                ],
                false,
                ANTHROPIC_KEY,
            );
            let env = d.state.parent().unwrap().join("bench.env");
            let lines: String = vault.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
            std::fs::write(&env, lines).unwrap();
            d.cli(
                &[
                    "vault",
                    "import-env",
                    env.to_str().unwrap(),
                    "--tool",
                    "exec",
                ],
                false,
                "",
            );
            d.cli(&["egress", "token", "bench"], true, "")
                .trim()
                .to_owned()
        })
        .await
        .unwrap()
    };
    if token.is_empty() {
        fail("clawgate egress token printed nothing");
    }
    let r = Routes {
        direct_chat: format!("http://127.0.0.1:{fake_port}/v1/chat/completions"),
        proxy_chat: format!("http://127.0.0.1:{}/openai/v1/chat/completions", d.port),
        direct_msgs: format!("http://127.0.0.1:{fake_port}/v1/messages"),
        proxy_msgs: format!("http://127.0.0.1:{}/anthropic/v1/messages", d.port),
        token,
    };
    let client = http_client();
    let sent = Arc::new(Sent::default());
    let mut misses = RuleMisses::default();

    // One request (the daemon builds its redactor with the 1,000 values), then idle.
    let first = Instant::now();
    let (b, plants) = chat_body(&mut rng, 4096, &vault);
    post(
        &client,
        &r.proxy_chat,
        &[("authorization", &format!("Bearer {}", r.token))],
        b,
    )
    .await;
    let first_ms = ms(first.elapsed());
    sent.openai.fetch_add(1, Ordering::Relaxed);
    check_redacted(&fake, &plants, &mut misses);
    tokio::time::sleep(Duration::from_millis(if quick { 200 } else { 3000 })).await;
    let rss_idle = rss_kib(d.pid);

    // Soak: 100 concurrent long streams, each request a resent history plus a new turn.
    let stream_secs = soak_secs.clamp(1, 30);
    let per_worker = (soak_secs / stream_secs).max(1);
    let interval_ms: u64 = if quick { 100 } else { 500 };
    let deltas = stream_secs * 1000 / interval_ms;
    let history = {
        let mut plants = Vec::new();
        text(&mut rng, 6 << 10, &vault, Some(true), &mut plants)
    };
    let open = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let soak_started = Instant::now();
    let mut workers = Vec::new();
    // (`CLAWGATE_BENCH_ONLY`: no soak.)
    let streams = if only.is_some() { 0 } else { STREAMS };
    for w in 0..streams {
        let client = client.clone();
        let url = r.proxy_msgs.clone();
        let token = r.token.clone();
        let history = history.clone();
        let open = open.clone();
        let sent = sent.clone();
        let mut wrng = Rng(rng.next() | 1);
        let stagger = Duration::from_millis((w as u64 * stream_secs * 1000) / STREAMS as u64 / 4);
        workers.push(tokio::spawn(async move {
            tokio::time::sleep(stagger).await;
            for k in 0..per_worker {
                let turn = wrng.word(ALNUM, 1500);
                let body = Bytes::from(
                    serde_json::json!({"model": "claude-bench-1", "max_tokens": 4096, "stream": true,
                        "messages": [{"role": "user", "content": history},
                                     {"role": "assistant", "content": "Looking at it now."},
                                     {"role": "user", "content": format!("worker {w} turn {k}: {turn}")}]})
                    .to_string(),
                );
                open.fetch_add(1, Ordering::Relaxed);
                sse(&client, &url, &token, body, interval_ms, deltas).await;
                open.fetch_sub(1, Ordering::Relaxed);
                sent.anthropic.fetch_add(1, Ordering::Relaxed);
                sent.anthropic_output.fetch_add(deltas, Ordering::Relaxed);
            }
        }));
    }
    let sampler = {
        let open = open.clone();
        let done = done.clone();
        let pid = d.pid;
        let every = Duration::from_millis(if quick { 250 } else { 5000 });
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                samples.push((
                    soak_started.elapsed().as_secs_f64(),
                    rss_kib(pid),
                    open.load(Ordering::Relaxed),
                ));
            }
            samples
        })
    };
    for w in workers {
        if w.await.is_err() {
            fail("a soak stream task failed");
        }
    }
    done.store(true, Ordering::Relaxed);
    let soak_elapsed = soak_started.elapsed();
    let samples = sampler.await.unwrap();
    tokio::time::sleep(Duration::from_millis(if quick { 200 } else { 3000 })).await;
    let rss_after_soak = rss_kib(d.pid);

    // Added latency and SSE time to first byte, back-to-back then paced.
    let mut rows = Vec::new();
    let mut sizes_seen = Vec::new();
    for (pace, group) in [(false, BACK_TO_BACK), (true, PACED)] {
        for (label, size, n, warm) in [
            ("4 KB", 4 << 10, 2000, 200),
            ("64 KB", 64 << 10, 2000, 200),
            ("1 MB", 1 << 20, 200, 20),
        ] {
            let (n, warm) = if quick { (n / 100, 2) } else { (n, warm) };
            for fresh in [false, true] {
                let what = if fresh {
                    "all-new content"
                } else {
                    "history resent"
                };
                let label = format!("{label:<6} {what}");
                if !wanted(only.as_deref(), &label, group) {
                    continue;
                }
                let (dd, pp, len) = chat_latency(
                    &client,
                    &r,
                    &fake,
                    &sent,
                    &mut rng,
                    &vault,
                    size,
                    fresh,
                    pace,
                    warm,
                    n,
                    &mut misses,
                )
                .await;
                let size_label = format!("{} = ", label[..6].trim_end());
                if !pace
                    && !sizes_seen
                        .iter()
                        .any(|s: &String| s.starts_with(&size_label))
                {
                    sizes_seen.push(format!("{size_label}{len} B"));
                }
                rows.push(Row::new(group, label, dd, pp));
            }
        }
        let label = "SSE time to first byte";
        if wanted(only.as_deref(), label, group) {
            let (n, warm) = if quick { (20, 2) } else { (1000, 100) };
            let (dd, pp) = ttfb_latency(&client, &r, &sent, pace, warm, n).await;
            rows.push(Row::new(group, label.to_owned(), dd, pp));
        }
    }
    let rss_after_latency = rss_kib(d.pid);
    // Idle again: the daemon drops an unused redaction cache after a minute and returns free
    // heap pages at its next 30-second sweep (skipped by the quick run).
    let rss_idle_again = if quick || only.is_some() {
        None
    } else {
        tokio::time::sleep(Duration::from_secs(60 + 30 + 5)).await;
        Some(rss_kib(d.pid))
    };

    // Every proxied request metered, with the fake's exact counts.
    let n_oai = sent.openai.load(Ordering::Relaxed);
    let n_ant = sent.anthropic.load(Ordering::Relaxed);
    let want = (
        n_oai + n_ant,
        100 * n_oai + 25 * n_ant,
        7 * n_oai + sent.anthropic_output.load(Ordering::Relaxed),
        20 * n_oai + 20 * n_ant,
        5 * n_ant,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        let out = {
            let d = d.clone();
            tokio::task::spawn_blocking(move || d.cli(&["usage", "show", "--json"], true, ""))
                .await
                .unwrap()
        };
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out)
            .unwrap_or_else(|e| fail(&format!("usage show --json: {e}: {out}")));
        let sum = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum::<u64>();
        let got = (
            sum("requests"),
            sum("input"),
            sum("output"),
            sum("cache_read"),
            sum("cache_write"),
            sum("incomplete"),
        );
        if got.0 >= want.0 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let fake_proxied = fake.proxied.load(Ordering::Relaxed);

    // The report.
    println!(
        "egress_load: clawgate serve (egress proxy, {VAULT_SECRETS} vault secrets, redaction on) vs direct calls to the same in-process fake upstream; loopback, one run{}",
        if quick { " (--test: tiny counts)" } else { "" }
    );
    println!(
        "  added latency, ms, to the whole response (SSE: to the first byte); chat bodies {}; direct and proxied interleaved on one keep-alive client",
        sizes_seen.join(", ")
    );
    println!(
        "  {:<34} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}",
        "scenario",
        "n",
        "dir p50",
        "dir p99",
        "prx p50",
        "prx p99",
        "add p50",
        "add p99",
        "x p50",
        "x p99"
    );
    let mut group = "";
    for row in &rows {
        if row.group != group {
            group = row.group;
            println!(
                "  {}",
                if group == PACED {
                    "paced: 1 ms between requests (threads park and wake, as between an agent's turns)"
                } else {
                    "back-to-back: each request as soon as the last one ended (threads stay hot)"
                }
            );
        }
        row.print();
    }
    println!(
        "  (first request after the 1,000-secret import, redactor build included: {first_ms:.1} ms)"
    );
    if misses.missed.is_empty() {
        println!(
            "  redaction at the fake: every planted vault value replaced; {} credential-shaped plants checked, none leaked",
            misses.checked
        );
    } else {
        println!(
            "  redaction at the fake: every planted vault value replaced; {} of {} credential-shaped plants LEAKED: {}",
            misses.missed.len(),
            misses.checked,
            misses
                .missed
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "  redaction throughput, one core, Redactor::redact (no cache), {VAULT_SECRETS} vault values + rules + entropy (build {build_ms:.0} ms):"
    );
    for (i, t) in throughput.iter().enumerate() {
        if i == breakdown {
            println!(
                "    by planted kind, 2 KB strings, one line in 8 (diagnostic, shorter runs):"
            );
        }
        println!(
            "    {:<36} {:>7.1} MB/s CPU  {:>7.1} MB/s wall  ({} B)",
            t.label, t.cpu_mbs, t.wall_mbs, t.bytes
        );
    }
    println!(
        "  RSS: at start {:.1} MiB, idle (secrets loaded, one request served) {:.1} MiB; after the soak below and then the latency runs above {:.1} MiB; idle again 95 s later {}",
        mib(rss_started),
        mib(rss_idle),
        mib(rss_after_latency),
        rss_idle_again.map_or("(not measured by this run)".to_owned(), |k| format!(
            "{:.1} MiB",
            mib(k)
        ))
    );
    let rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
    if !rss.is_empty() {
        let half = rss.len() / 2;
        let avg = |v: &[u64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<u64>() as f64 / v.len() as f64 / 1024.0
            }
        };
        let (first_half, second_half) = (avg(&rss[..half.max(1)]), avg(&rss[half..]));
        let max_open = samples.iter().map(|s| s.2).max().unwrap_or(0);
        println!(
            "  RSS soak (right after idle, before the latency runs): {STREAMS} concurrent SSE streams ({} per worker, {stream_secs} s each, one event per {interval_ms} ms) for {:.0} s, sampled {} times (up to {max_open} open at once):",
            per_worker,
            soak_elapsed.as_secs_f64(),
            rss.len()
        );
        println!(
            "    min {:.1} MiB, max {:.1} MiB, last {:.1} MiB; mean first half {:.1} MiB, second half {:.1} MiB (growth {:+.1} MiB); 3 s after {:.1} MiB",
            mib(*rss.iter().min().unwrap()),
            mib(*rss.iter().max().unwrap()),
            mib(*rss.last().unwrap()),
            first_half,
            second_half,
            second_half - first_half,
            mib(rss_after_soak)
        );
        // At most about 25 samples shown (a 10-minute soak takes 120), the last always.
        let stride = samples.len().div_ceil(25).max(1);
        let trace: Vec<String> = samples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % stride == 0 || i + 1 == samples.len())
            .map(|(_, (t, k, o))| format!("{t:.0}s:{:.1}/{o}", mib(*k)))
            .collect();
        println!(
            "    samples (time:MiB/open streams{}): {}",
            if stride > 1 {
                format!(", every {stride}th")
            } else {
                String::new()
            },
            trace.join(" ")
        );
    }
    println!(
        "  usage metered: {} requests ({} incomplete), input {}, output {}, cache_read {}, cache_write {}; expected {} requests, input {}, output {}, cache_read {}, cache_write {} (fake saw {fake_proxied} proxied)",
        got.0, got.5, got.1, got.2, got.3, got.4, want.0, want.1, want.2, want.3, want.4
    );
    println!(
        "  targets: added p50 <= 0.300 ms and p99 <= 1.000 ms at 64 KB; added SSE TTFB p50 <= 0.500 ms; redaction >= 300 MB/s per core; RSS <= 30 MiB idle, flat under load"
    );
    for row in &rows {
        let label = format!("{}, {}", row.label.replace("  ", " "), row.group);
        if row.label.starts_with("64 KB") {
            println!(
                "    {label:<36} added p50 {:.3} ms {}, p99 {:.3} ms {}",
                row.p50 - row.d50,
                verdict(row.p50 - row.d50 <= 0.3),
                row.p99 - row.d99,
                verdict(row.p99 - row.d99 <= 1.0)
            );
        } else if row.label.starts_with("SSE") {
            println!(
                "    {label:<36} added p50 {:.3} ms {}",
                row.p50 - row.d50,
                verdict(row.p50 - row.d50 <= 0.5)
            );
        }
    }
    for kind in ["clean", "dense"] {
        if throughput.is_empty() {
            break;
        }
        let worst = throughput[..breakdown]
            .iter()
            .filter(|t| t.label.starts_with(kind))
            .map(|t| t.cpu_mbs)
            .fold(f64::INFINITY, f64::min);
        println!(
            "    {:<36} {worst:.1} MB/s CPU (slower case) {}",
            format!("redaction, {kind} text"),
            verdict(worst >= 300.0)
        );
    }
    println!(
        "    {:<36} {:.1} MiB {}",
        "RSS idle",
        mib(rss_idle),
        verdict(rss_idle <= 30 * 1024)
    );
    if let Some(k) = rss_idle_again {
        println!(
            "    {:<36} {:.1} MiB {}",
            "RSS idle again after the load",
            mib(k),
            verdict(k <= 30 * 1024)
        );
    }

    if got.0 != want.0
        || got.5 != 0
        || (got.1, got.2, got.3, got.4) != (want.1, want.2, want.3, want.4)
    {
        fail("usage does not match what was sent");
    }
    if fake_proxied != want.0 {
        fail("the fake did not see every proxied request exactly once");
    }
    stop_daemon();
}

/// `CLAWGATE_BENCH_ONLY`: run only the latency rows whose label (`64 KB  all-new content,
/// back-to-back`, `SSE time to first byte, paced`) contains it, with no throughput runs, no soak
/// and no wait for idle memory: for profiling the daemon under one kind of request.
fn only() -> Option<String> {
    std::env::var("CLAWGATE_BENCH_ONLY")
        .ok()
        .filter(|v| !v.is_empty())
}

/// Whether a row is run; spaces are compared collapsed (`64 KB all-new` matches).
fn wanted(only: Option<&str>, label: &str, group: &str) -> bool {
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    only.is_none_or(|o| words(&format!("{label}, {group}")).contains(&words(o)))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}
