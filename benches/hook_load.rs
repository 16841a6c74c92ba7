//! Load on the real hook socket: starts `clawgate serve`, drives it with realistic
//! `before_tool_call` events over keep-alive HTTP/1.1, and reports decision latency (p50, p99,
//! max), throughput and the daemon's resident memory idle, under load and after.
//!
//! The baseline, measured in the same run over the same socket and client, is `GET /v1/health`
//! (transport and HTTP only, no decision): the report gives the decision's cost as a ratio and a
//! difference against it. `cargo bench --bench hook_load` for the full run; `-- --test` (what CI
//! runs) does a short one.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)] // a benchmark driver

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// Green calls of the kinds a coding agent makes all day (every one is checked to be allowed).
const GREEN: [(&str, &str); 8] = [
    ("exec", r#"{"command":"ls -la"}"#),
    ("exec", r#"{"command":"git status --short"}"#),
    (
        "exec",
        r#"{"command":"grep -rn \"fn main\" src | head -20"}"#,
    ),
    ("exec", r#"{"command":"cat README.md"}"#),
    (
        "exec",
        r#"{"command":"cargo test --workspace 2>&1 | tail -5","workdir":"/home/agent/project"}"#,
    ),
    ("read", r#"{"path":"src/main.rs"}"#),
    ("ls", r#"{"path":"src"}"#),
    (
        "exec",
        r#"{"command":"find . -name '*.rs' -newer Cargo.toml | wc -l"}"#,
    ),
];

struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    fn open(path: &Path) -> Conn {
        let s = UnixStream::connect(path).unwrap();
        Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    /// One request on the kept-alive connection; returns the body.
    fn call(&mut self, method: &str, path: &str, body: &str) -> String {
        write!(
            self.writer,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }
}

fn event(i: usize) -> String {
    let (tool, params) = GREEN[i % GREEN.len()];
    format!(
        r#"{{"event":{{"toolName":"{tool}","params":{params},"runId":"r1","toolCallId":"call_{i}"}},"ctx":{{"agentId":"main","sessionKey":"agent:main:main","runId":"r1","toolCallId":"call_{i}","toolName":"{tool}","trace":{{"traceId":"97e8","spanId":"9601","parentSpanId":"44ca","traceFlags":"01"}},"requester":{{"senderIsOwner":true}}}}}}"#
    )
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[admin]\nlisten = \"off\"\n[egress]\nlisten = \"off\"\nconnect_listen = \"off\"\n",
            state.display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CLAWGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = state.join("hook.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "clawgate serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon {
        child,
        _dir: dir,
        socket,
    }
}

/// Sequential requests on one connection: per-request latency.
fn latencies(socket: &Path, n: usize, decide: bool) -> Vec<Duration> {
    let mut c = Conn::open(socket);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let body = if decide { event(i) } else { String::new() };
        let started = Instant::now();
        let answer = if decide {
            c.call("POST", "/v1/before_tool_call", &body)
        } else {
            c.call("GET", "/v1/health", "")
        };
        out.push(started.elapsed());
        if decide {
            assert!(answer.starts_with("{\"params\":"), "not allowed: {answer}");
        }
    }
    out.sort();
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let (n, threads, per_thread) = if quick {
        (300, 2, 200)
    } else {
        (20_000, 4, 10_000)
    };
    let d = start();
    let pid = d.child.id();
    std::thread::sleep(Duration::from_millis(if quick { 100 } else { 2000 }));
    let idle = rss_kib(pid);

    // Warm up (page in the policy, the parser, SQLite's cache).
    latencies(&d.socket, 200, true);
    let base = latencies(&d.socket, n, false);
    let green = latencies(&d.socket, n, true);

    // Throughput: several connections at once (OpenClaw serialises one agent's calls; several
    // agents or sessions do not).
    let started = Instant::now();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            while Instant::now() < end && std::fs::metadata(format!("/proc/{pid}")).is_ok() {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                if PEAK_DONE.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let socket = d.socket.clone();
            std::thread::spawn(move || latencies(&socket, per_thread, true))
        })
        .collect();
    let mut all: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    PEAK_DONE.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    all.sort();
    let after = rss_kib(pid);
    // Flat over time: more rounds of the same load, RSS after each.
    let rounds = if quick { 0 } else { 3 };
    let mut later = Vec::new();
    for _ in 0..rounds {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let socket = d.socket.clone();
                std::thread::spawn(move || latencies(&socket, per_thread, true))
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        later.push(rss_kib(pid));
    }

    let p50 = percentile(&green, 0.5);
    let p99 = percentile(&green, 0.99);
    let b50 = percentile(&base, 0.5);
    let b99 = percentile(&base, 0.99);
    #[allow(clippy::cast_precision_loss)]
    let rps = (threads * per_thread) as f64 / elapsed.as_secs_f64();
    println!(
        "hook_load: {} green decisions on one connection, {threads}x{per_thread} concurrent",
        n
    );
    println!(
        "  baseline GET /v1/health   p50 {:>8.1} us  p99 {:>8.1} us",
        us(b50),
        us(b99)
    );
    println!(
        "  green before_tool_call    p50 {:>8.1} us  p99 {:>8.1} us  max {:>8.1} us  (target p99 <= 1000 us)",
        us(p50),
        us(p99),
        us(*green.last().unwrap())
    );
    println!(
        "  decision cost over baseline: p50 +{:.1} us (x{:.2}), p99 +{:.1} us (x{:.2})",
        us(p50) - us(b50),
        us(p50) / us(b50),
        us(p99) - us(b99),
        us(p99) / us(b99)
    );
    println!(
        "  concurrent: {:.0} decisions/s, p50 {:.1} us, p99 {:.1} us",
        rps,
        us(percentile(&all, 0.5)),
        us(percentile(&all, 0.99))
    );
    println!(
        "  RSS: idle {:.1} MiB, peak under load {:.1} MiB, after load {:.1} MiB (target idle <= 30 MiB)",
        idle as f64 / 1024.0,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
        after as f64 / 1024.0
    );
    if !later.is_empty() {
        let mib: Vec<String> = later
            .iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect();
        println!(
            "  RSS after {} more rounds of {} decisions each: {} MiB",
            later.len(),
            threads * per_thread,
            mib.join(", ")
        );
    }
}

static PEAK_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
