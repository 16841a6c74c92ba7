//! Fleet load simulation: N appliances (default 1,000) against one dev Hub on this machine, to
//! size the real Hub from measured figures. Reports, it asserts nothing about speed.
//!
//! ```text
//! cargo bench -p clawgate-devhub --bench fleet
//! FLEET_APPLIANCES=1000 FLEET_SECONDS=60 FLEET_COMPRESSION=30 cargo bench -p clawgate-devhub --bench fleet
//! ```
//!
//! The dev Hub runs as its own process (the `clawgate-devhub` binary of this build), so its CPU
//! time and RSS are read from `/proc/<pid>` apart from the simulated appliances. Every appliance
//! is the real client (`clawgate_hub::client::HubClient`, its own connection pool, so its own
//! TLS connections), enrolled with its own one-time token, and then, in simulated time
//! (`FLEET_COMPRESSION` simulated seconds per real second):
//!
//! - heartbeats every `next_in_seconds` of the previous answer (the Hub's 60 s, jittered ±10 %),
//!   the first at a uniformly random offset in the first interval (no stampede at start);
//! - ships usage every 300 s × U(0.8, 1.2): two buckets (two models) of the current hour, the
//!   open bucket's revision rising each time (absolute totals), first at a random offset;
//! - holds one event long-poll open (`wait` = 30 s, real time: not compressed, see the report).
//!
//! Bytes are JSON bodies (request + answer) as the client serialises them; HTTP headers and TLS
//! framing come on top (about 200–300 bytes of headers per request with keep-alive).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)] // a benchmark: failures abort, figures go to stdout

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clawgate_hub::client::{HubClient, Timeouts};
use clawgate_hub::protocol::{
    Band, EgressLock, EnrollRequest, Health, HealthComponents, Heartbeat, PluginState, UsageBatch,
    UsageBucket,
};
use clawgate_protocol::SecretString;
use tokio::sync::Mutex;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap_or_default();
    u64::from_le_bytes(b)
}

/// Uniform in [0, 1).
fn unit() -> f64 {
    (rand_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Default)]
struct Kind {
    latencies_us: Mutex<Vec<u64>>,
    requests: AtomicU64,
    errors: AtomicU64,
    req_bytes: AtomicU64,
    resp_bytes: AtomicU64,
}

impl Kind {
    async fn record(&self, started: Instant, req: usize, resp: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.req_bytes.fetch_add(req as u64, Ordering::Relaxed);
        self.resp_bytes.fetch_add(resp as u64, Ordering::Relaxed);
        self.latencies_us
            .lock()
            .await
            .push(started.elapsed().as_micros() as u64);
    }
}

#[derive(Default)]
struct Stats {
    heartbeat: Kind,
    usage: Kind,
    poll: Kind,
}

fn heartbeat() -> Heartbeat {
    Heartbeat {
        version: "0.1.0".into(),
        bundle_version: Some(12),
        bundle_sha256: Some("9f".repeat(32)),
        config_sha256: "3c".repeat(32),
        openclaw_plugin: PluginState {
            present: true,
            version: Some("2026.11.1".into()),
        },
        egress_lock: EgressLock::Active,
        pending_approvals: 0,
        failed_pushes_1h: 0,
        vault_generation: Some(3),
        health: Health {
            score: 100,
            band: Band::Healthy,
            components: HealthComponents {
                connectivity: 20,
                sync_freshness: 20,
                policy_compliance: 20,
                runtime_health: 20,
                stability: 20,
            },
        },
        sent_at: now(),
    }
}

fn read_proc(path: &str) -> String {
    clawgate_protocol::io::read_capped(std::path::Path::new(path), 1 << 20)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = read_proc(&format!("/proc/{pid}/stat"));
    // Fields after the command (which is in parentheses): utime is 14th, stime 15th overall.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = read_proc(&format!("/proc/{pid}/status"));
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let appliances = env_u64("FLEET_APPLIANCES", 1000) as usize;
    let seconds = env_u64("FLEET_SECONDS", 60);
    let compression = env_u64("FLEET_COMPRESSION", 30).max(1) as f64;
    let usage_interval = 300.0_f64;
    let poll_wait = Duration::from_secs(30);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let state = dir.path().join("hub");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().map(|a| a.port()).unwrap_or(0)
    };
    let bin = env!("CARGO_BIN_EXE_clawgate-devhub");
    let child = std::process::Command::new(bin)
        .args([
            "--state",
            &state.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("DEVHUB_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let pid = child.id();
    let _guard = Guard(child);
    let url = format!("https://127.0.0.1:{port}");
    // Wait for the dev Hub to listen (it writes `url` once it does).
    for _ in 0..600 {
        if state.join("url").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let hub = clawgate_devhub::Hub::open(&state, clawgate_devhub::Settings::default())
        .unwrap_or_else(|e| panic!("opening the state: {e}"));
    let pin = hub.spki_pin();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async move {
        let timeouts = Timeouts {
            connect: Duration::from_secs(30),
            request: Duration::from_secs(60),
            poll_margin: Duration::from_secs(30),
            bundle: Duration::from_secs(60),
        };
        // Enrollment: 50 at a time.
        let t0 = Instant::now();
        let mut clients = Vec::with_capacity(appliances);
        let sem = Arc::new(tokio::sync::Semaphore::new(50));
        let mut tasks = Vec::new();
        for i in 0..appliances {
            let tenant = format!("tenant-{:04}", i / 2); // two appliances per tenant
            let file = hub
                .mint_token_for(&tenant, &url)
                .unwrap_or_else(|e| panic!("token: {e}"));
            let sem = sem.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                let client = HubClient::new(&url, vec![pin], None, timeouts)
                    .unwrap_or_else(|e| panic!("{e}"));
                let answer = client
                    .enroll(&EnrollRequest {
                        token: file.token.clone(),
                        hostname: format!("vps-{i}"),
                        version: "0.1.0".into(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("enroll: {e}"));
                client
                    .set_credential(SecretString::new(answer.credential.expose().to_owned()))
                    .unwrap_or_else(|e| panic!("{e}"));
                client
            }));
        }
        for t in tasks {
            clients.push(Arc::new(t.await.unwrap_or_else(|e| panic!("{e}"))));
        }
        let enroll_secs = t0.elapsed().as_secs_f64();

        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let cpu0 = proc_cpu_ticks(pid);
        let start = Instant::now();
        let mut handles = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            // Heartbeats.
            {
                let (client, stats, stop) = (client.clone(), stats.clone(), stop.clone());
                handles.push(tokio::spawn(async move {
                    let mut delay = 60.0 * unit();
                    loop {
                        tokio::time::sleep(Duration::from_secs_f64(delay / compression)).await;
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let hb = heartbeat();
                        let req = serde_json::to_vec(&hb).map(|v| v.len()).unwrap_or(0);
                        let t = Instant::now();
                        match client.heartbeat(&hb).await {
                            Ok(r) => {
                                let resp = serde_json::to_vec(&r).map(|v| v.len()).unwrap_or(0);
                                stats.heartbeat.record(t, req, resp).await;
                                delay = f64::from(r.next_in_seconds);
                            }
                            Err(_) => {
                                stats.heartbeat.errors.fetch_add(1, Ordering::Relaxed);
                                delay = 60.0;
                            }
                        }
                    }
                }));
            }
            // Usage.
            {
                let (client, stats, stop) = (client.clone(), stats.clone(), stop.clone());
                handles.push(tokio::spawn(async move {
                    let mut delay = usage_interval * unit();
                    let mut revision = 0u64;
                    let mut input = 0u64;
                    loop {
                        tokio::time::sleep(Duration::from_secs_f64(delay / compression)).await;
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        revision += 1;
                        input += 1000 + rand_u64() % 5000;
                        let hour = now() / 3600 * 3600;
                        let bucket = |model: &str, scale: u64| UsageBucket {
                            agent: "main".into(),
                            provider: "anthropic".into(),
                            model: model.into(),
                            hour,
                            revision,
                            input: input * scale,
                            output: input * scale / 4,
                            cache_read: input * scale / 2,
                            cache_write: input * scale / 8,
                            requests: revision * 3 * scale,
                            incomplete: 0,
                            closed: false,
                        };
                        let batch = UsageBatch {
                            buckets: vec![bucket("claude-sonnet-4-5", 1), bucket("claude-haiku-4-5", 2)],
                        };
                        let req = serde_json::to_vec(&batch).map(|v| v.len()).unwrap_or(0);
                        let t = Instant::now();
                        match client.ingest_usage(&batch).await {
                            Ok(r) => {
                                let resp = serde_json::to_vec(&r).map(|v| v.len()).unwrap_or(0);
                                stats.usage.record(t, req, resp).await;
                            }
                            Err(_) => {
                                stats.usage.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        delay = usage_interval * (0.8 + 0.4 * unit());
                    }
                }));
            }
            // One long poll held open (real time).
            {
                let (client, stats, stop) = (client.clone(), stats.clone(), stop.clone());
                handles.push(tokio::spawn(async move {
                    // Spread the first polls over a second.
                    tokio::time::sleep(Duration::from_millis((i as u64 * 7) % 1000)).await;
                    let mut cursor: Option<String> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match client.poll_events(cursor.as_deref(), poll_wait).await {
                            Ok(r) => {
                                let resp = serde_json::to_vec(&r).map(|v| v.len()).unwrap_or(0);
                                stats.poll.record(t, 0, resp).await;
                                cursor = Some(r.cursor);
                            }
                            Err(_) => {
                                stats.poll.errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }));
            }
        }
        let rss_mid = {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            proc_status_kib(pid, "VmRSS:")
        };
        let wall = start.elapsed().as_secs_f64();
        let cpu1 = proc_cpu_ticks(pid);
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.abort();
        }
        let hwm = proc_status_kib(pid, "VmHWM:");
        let cpu_secs = (cpu1 - cpu0) as f64 / 100.0; // CLK_TCK = 100 on Linux

        let sim_hours = appliances as f64 * wall * compression / 3600.0;
        println!("fleet simulation: {appliances} appliances, {wall:.1} s wall, compression {compression}x ({:.1} simulated appliance-hours)", sim_hours);
        println!("enrollment: {appliances} in {enroll_secs:.1} s ({:.0}/s, 50 concurrent)", appliances as f64 / enroll_secs);
        let mut total_req = 0.0;
        let mut total_bytes = 0.0;
        for (name, k, compressed) in [("heartbeat", &stats.heartbeat, true), ("usage", &stats.usage, true), ("events (idle long-poll)*", &stats.poll, false)] {
            let n = k.requests.load(Ordering::Relaxed);
            let errors = k.errors.load(Ordering::Relaxed);
            let rq = k.req_bytes.load(Ordering::Relaxed) as f64;
            let rs = k.resp_bytes.load(Ordering::Relaxed) as f64;
            let mut lat = k.latencies_us.lock().await.clone();
            lat.sort_unstable();
            let rate = n as f64 / wall;
            let per_req = if n > 0 { (rq + rs) / n as f64 } else { 0.0 };
            // Per appliance-hour: compressed kinds ran `compression` times faster than real. The
            // long poll runs in real time and a run of a minute sees only one or two per
            // appliance, so its rate is the steady state: one poll per `wait` when idle.
            let hours = sim_hours;
            let per_hour_req = if compressed {
                n as f64 / hours
            } else {
                3600.0 / poll_wait.as_secs_f64()
            };
            let per_hour_bytes = per_hour_req * per_req;
            total_req += per_hour_req;
            total_bytes += per_hour_bytes;
            println!(
                "  {name:<24} {n:>7} req, {errors} errors, {rate:>7.1} req/s, body {:.0} B/req ({:.0} up + {:.0} down), {per_hour_req:.1} req and {:.1} KiB per appliance-hour, latency p50 {:.2} ms p99 {:.2} ms",
                per_req,
                if n > 0 { rq / n as f64 } else { 0.0 },
                if n > 0 { rs / n as f64 } else { 0.0 },
                per_hour_bytes / 1024.0,
                pct(&lat, 0.50),
                pct(&lat, 0.99),
            );
        }
        println!("  * per appliance-hour for events: the steady state of one idle poll per {} s wait", poll_wait.as_secs());
        println!("  per appliance-hour (real cadence): {total_req:.1} requests, {:.1} KiB of JSON bodies", total_bytes / 1024.0);
        println!(
            "  at real cadence, 1,000 appliances make {:.1} req/s ({:.2} KiB/s of bodies)",
            total_req * 1000.0 / 3600.0,
            total_bytes * 1000.0 / 3600.0 / 1024.0
        );
        println!(
            "dev Hub process: {:.1} s CPU over {wall:.1} s = {:.0} % of one core; RSS {} MiB (peak {} MiB) with {} open long-polls",
            cpu_secs,
            100.0 * cpu_secs / wall,
            rss_mid / 1024,
            hwm / 1024,
            appliances
        );
    });
}
