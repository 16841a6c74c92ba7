//! The egress proxy run by `clawgate serve`: agent tokens from `clawgate egress token`, provider
//! keys from the vault, the engine's redactor, usage in `clawgate usage show`, metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{clawgate, ok, random_value, stdout};
use crate::serve::{Daemon, put_secret};

/// One request as the fake provider saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

/// A fake Anthropic upstream on loopback: answers every request with one non-streamed message
/// and fixed usage, and keeps what it received.
pub(crate) struct FakeAnthropic {
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const ANSWER: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-test-1","content":[{"type":"text","text":"done"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":7,"cache_creation_input_tokens":3,"cache_read_input_tokens":5}}"#;

impl FakeAnthropic {
    pub(crate) fn start() -> FakeAnthropic {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let log = log.clone();
                std::thread::spawn(move || serve_one(conn, &log));
            }
        });
        FakeAnthropic { port, seen }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_one(conn: TcpStream, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let hang = body.windows(4).any(|w| w == b"HANG");
    log.lock().unwrap().push(Seen { head, body });
    if hang {
        // A provider still thinking: the connection stays open, nothing is answered.
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{ANSWER}",
        ANSWER.len()
    );
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Mints `agent`'s proxy token with `clawgate egress token` (revoking any earlier one).
pub(crate) fn mint_token(d: &Daemon, agent: &str) -> String {
    stdout(&ok(d.cli_cmd(&["egress", "token", agent]), ""))
        .trim()
        .to_owned()
}

/// Stores a random Anthropic key the proxy may send to the loopback fake.
pub(crate) fn put_loopback_anthropic_key(d: &Daemon) {
    put_secret(
        d,
        "provider.anthropic",
        &format!("sk-ant-api03-{}", random_value()),
        &["clawgate:egress"],
        &["127.0.0.1"],
    );
}

/// POSTs `body` to the proxy's Anthropic messages route with `token` as the agent's key.
pub(crate) fn post_messages(port: u16, token: &str, body: &str) -> (u16, String, String) {
    post(
        port,
        "/anthropic/v1/messages",
        &[("x-api-key", token)],
        body,
    )
}

/// POSTs `body` to the proxy; returns the status, the response head and body.
pub(crate) fn post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn usage(d: &Daemon) -> Vec<Value> {
    let out = ok(d.cli_cmd(&["usage", "show", "--json"]), "");
    serde_json::from_str::<Vec<Value>>(&stdout(&out)).unwrap()
}

fn wait_for_usage(d: &Daemon, requests: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = usage(d);
        if rows
            .iter()
            .map(|r| r["requests"].as_u64().unwrap())
            .sum::<u64>()
            >= requests
        {
            return rows;
        }
        assert!(Instant::now() < deadline, "usage never arrived: {rows:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_proxies_with_vault_keys_agent_tokens_and_redaction() {
    let fake = FakeAnthropic::start();
    let port = free_port();
    let d = Daemon::start(&format!(
        "[egress]\nlisten = \"127.0.0.1:{port}\"\nconnect_listen = \"off\"\n[egress.upstreams]\nanthropic = \"http://127.0.0.1:{}\"\n",
        fake.port
    ));
    let real_key = format!("sk-ant-api03-{}", random_value());
    let planted = format!("pg-{}", random_value());
    let body = json!({"model": "claude-test-1", "max_tokens": 16,
                      "messages": [{"role": "user", "content": format!("the db password is {planted}")}]})
    .to_string();

    // No key in the vault yet, no token minted: refused, never forwarded.
    let (status, head, _) = post_messages(port, "cgt_nope", &body);
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("x-clawgate-error: invalid_token"), "{head}");
    let token = mint_token(&d, "main");
    assert!(token.starts_with("cgt_"));
    let (status, head, _) = post_messages(port, &token, &body);
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("no_provider_key"), "{head}");
    assert!(fake.seen().is_empty());

    // A key scoped to another host is not handed to this upstream.
    put_secret(
        &d,
        "provider.anthropic",
        &real_key,
        &["clawgate:egress"],
        &["api.anthropic.com"],
    );
    let (status, _, _) = post_messages(port, &token, &body);
    assert_eq!(status, 503);
    put_secret(
        &d,
        "provider.anthropic",
        &real_key,
        &["clawgate:egress"],
        &["127.0.0.1"],
    );
    put_secret(&d, "db.password", &planted, &["exec"], &[]);

    let (status, head, answer) = post(
        port,
        "/anthropic/v1/messages",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("anthropic-version", "2023-06-01"),
        ],
        &body,
    );
    assert_eq!(status, 200, "{head}\n{answer}\n{}", d.log());
    assert_eq!(answer, ANSWER);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    let up_body = String::from_utf8(up.body.clone()).unwrap();
    assert!(
        up.head.contains(&format!("x-api-key: {real_key}")),
        "{}",
        up.head
    );
    assert!(up.head.contains("anthropic-version: 2023-06-01"));
    assert!(!up.head.contains(&token) && !up_body.contains(&token));
    assert!(!up_body.contains(&planted), "{up_body}");
    assert!(up_body.contains("SECRET_REF(db.password)"), "{up_body}");

    // A minted replacement revokes the old token at once.
    let token2 = mint_token(&d, "main");
    let (status, _, _) = post_messages(port, &token, &body);
    assert_eq!(status, 401);
    let (status, _, _) = post_messages(port, &token2, &body);
    assert_eq!(status, 200);

    let rows = wait_for_usage(&d, 2);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (
            r["agent"].as_str(),
            r["provider"].as_str(),
            r["model"].as_str()
        ),
        (Some("main"), Some("anthropic"), Some("claude-test-1"))
    );
    assert_eq!(
        [
            &r["input"],
            &r["output"],
            &r["cache_read"],
            &r["cache_write"],
            &r["requests"]
        ],
        [&json!(22), &json!(14), &json!(10), &json!(6), &json!(2)]
    );
    // The fake's model has no price: its cost is unknown, not zero.
    assert!(r["cost_micros"].is_null(), "{r}");
    let table = stdout(&ok(d.cli_cmd(&["usage", "show"]), ""));
    assert!(
        table.contains("claude-test-1") && table.contains("main"),
        "{table}"
    );
    assert!(
        table.contains("cost (USD)") && table.lines().nth(1).is_some_and(|l| l.contains(" ?")),
        "{table}"
    );

    // One metrics exposition holds both the hook server's and the proxy's metrics.
    let text = {
        let mut s = std::os::unix::net::UnixStream::connect(d.state().join("admin.sock")).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw
    };
    assert!(text.contains("clawgate_egress_requests_total"), "{text}");
    assert!(text.contains("clawgate_egress_tokens_total"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");

    // Nothing secret in the daemon's log (trace level) or the usage table.
    let log = d.log();
    for s in [&real_key, &planted, &token, &token2] {
        assert!(!log.contains(s.as_str()), "a secret reached the log");
        assert!(!table.contains(s.as_str()));
    }
}

#[test]
fn openclaw_configure_routes_providers_through_the_proxy() {
    let port = free_port();
    let d = Daemon::start(&format!(
        "[egress]\nlisten = \"127.0.0.1:{port}\"\nconnect_listen = \"off\"\n"
    ));
    let oc = d.dir.path().join("openclaw.json");
    std::fs::write(
        &oc,
        json!({"models": {"providers": {"fake": {"baseUrl": "http://127.0.0.1:9/v1", "apiKey": "x", "api": "openai-completions"}}}})
            .to_string(),
    )
    .unwrap();
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/wrapper/openclaw-plugin");
    let args = [
        "openclaw",
        "configure",
        "--openclaw-config",
        oc.to_str().unwrap(),
        "--plugin-dir",
        plugin,
        "--route",
        "fake=openai",
    ];
    let first = stdout(&ok(d.cli_cmd(&args), ""));
    assert!(first.contains("models.providers.fake.baseUrl"), "{first}");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&oc).unwrap()).unwrap();
    let fake = &cfg["models"]["providers"]["fake"];
    assert_eq!(
        fake["baseUrl"],
        format!("http://127.0.0.1:{port}/openai/v1")
    );
    let token = fake["apiKey"].as_str().unwrap();
    assert!(token.starts_with("cgt_"));
    assert_eq!(cfg["models"]["providers"]["anthropic"]["apiKey"], token);
    let again = stdout(&ok(d.cli_cmd(&args), ""));
    assert!(again.contains("already configured"), "{again}");
    // The token works on the proxy (401 would mean it is not the agent's).
    let (status, head, _) = post(
        port,
        "/openai/v1/chat/completions",
        &[("authorization", &format!("Bearer {token}"))],
        "{}",
    );
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("no_provider_key"), "{head}");
}

#[test]
fn a_request_in_flight_when_the_daemon_is_killed_is_still_counted() {
    let fake = FakeAnthropic::start();
    let port = free_port();
    let mut d = Daemon::start(&format!(
        "[egress]\nlisten = \"127.0.0.1:{port}\"\nconnect_listen = \"off\"\n[egress.upstreams]\nanthropic = \"http://127.0.0.1:{}\"\n",
        fake.port
    ));
    put_loopback_anthropic_key(&d);
    let token = mint_token(&d, "main");
    let body = json!({"model": "claude-test-1", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "HANG"}]})
    .to_string();
    let client = std::thread::spawn(move || {
        // The connection breaks when the daemon dies; the status does not matter.
        let _ = std::panic::catch_unwind(|| post_messages(port, &token, &body));
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.seen().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.kill_hard();
    let _ = client.join();
    assert!(usage(&d).is_empty(), "nothing is a bucket before recovery");
    d.spawn();
    let rows = usage(&d);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            &rows[0]["requests"],
            &rows[0]["incomplete"],
            &rows[0]["model"]
        ),
        (&json!(1), &json!(1), &json!("claude-test-1"))
    );
}

/// Sends `CONNECT target` with the agent's token; returns the response head.
fn connect(port: u16, target: &str, token: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "CONNECT {target} HTTP/1.1\r\nhost: {target}\r\nproxy-authorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn the_connect_listener_refuses_llm_hosts_and_private_addresses_and_audits_them() {
    let port = free_port();
    let d = Daemon::start(&format!(
        "[egress]\nlisten = \"off\"\nconnect_listen = \"127.0.0.1:{port}\"\n"
    ));
    let token = mint_token(&d, "main");
    assert!(connect(port, "example.com:443", "cgt_wrong").contains(" 407 "));
    let llm = connect(port, "api.openai.com:443", &token);
    assert!(llm.starts_with("HTTP/1.1 403"), "{llm}");
    assert!(llm.contains("x-clawgate-error: llm_provider"), "{llm}");
    for target in ["127.0.0.1:443", "169.254.169.254:443", "[::1]:443"] {
        let head = connect(port, target, &token);
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
    }
    let audit = stdout(&ok(
        d.cli_cmd(&["audit", "show", "--json", "--limit", "50"]),
        "",
    ));
    assert!(
        audit.contains("egress.bypass_attempt") && audit.contains("api.openai.com"),
        "{audit}"
    );
    assert!(
        audit.contains("egress.connect_refused") && audit.contains("169.254.169.254"),
        "{audit}"
    );
    assert!(!audit.contains(&token));
    // The bundle's host policy is reloaded with the policy (SIGHUP keeps the listener).
    d.reload();
    assert!(connect(port, "api.anthropic.com:443", &token).starts_with("HTTP/1.1 403"));
}

/// Budgets and prices change with a reload (SIGHUP), not only with a restart: an operator
/// raises a spent budget, or prices a model an agent needs, without cutting open streams.
#[test]
fn a_reload_applies_new_budgets_and_prices() {
    let fake = FakeAnthropic::start();
    let port = free_port();
    let egress = |limits: &str| {
        format!(
            "[egress]\nlisten = \"127.0.0.1:{port}\"\nconnect_listen = \"off\"\n{limits}[egress.upstreams]\nanthropic = \"http://127.0.0.1:{}\"\n",
            fake.port
        )
    };
    let d = Daemon::start(&egress("daily_tokens = 10\n"));
    let base = std::fs::read_to_string(&d.config).unwrap();
    let set_limits = |limits: &str| {
        let text = base.replace(&egress("daily_tokens = 10\n"), &egress(limits));
        std::fs::write(&d.config, text).unwrap();
        d.reload();
    };
    put_loopback_anthropic_key(&d);
    let token = mint_token(&d, "main");
    let body = json!({"model": "claude-test-1", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let send = || {
        let (status, head, _) = post_messages(port, &token, &body);
        wait_for_usage(&d, u64::try_from(fake.seen().len()).unwrap());
        (status, head)
    };

    // The first request crosses the 10-token budget (the fake reports 26); the next is refused.
    assert_eq!(send().0, 200);
    let (status, head) = send();
    assert_eq!(status, 429, "{head}");
    assert!(head.contains("budget_exceeded"), "{head}");

    // Raised by a reload: served again, by the same daemon.
    set_limits("daily_tokens = 1000\n");
    assert_eq!(send().0, 200, "{}", d.log());

    // A cost budget arrives by reload: the fake's model has no price, so today's cost is
    // unknown and the agent is refused; a price arriving by reload lets it through.
    set_limits("daily_tokens = 1000\ndaily_usd = 5\n");
    let (status, head) = send();
    assert_eq!(status, 403, "{head}");
    assert!(head.contains("model_unpriced"), "{head}");
    set_limits(
        "daily_tokens = 1000\ndaily_usd = 5\n[egress.prices]\n\"anthropic/claude-test-1\" = { input = 1, output = 2, cache_read = 0.1, cache_write = 1.25 }\n",
    );
    assert_eq!(send().0, 200, "{}", d.log());
    let rows = wait_for_usage(&d, 3);
    assert!(rows.iter().all(|r| r["cost_micros"].is_u64()), "{rows:?}");
    assert_eq!(fake.seen().len(), 3);
}

/// A configuration with a bad price (or cost budget) is refused by `validate` and `serve` both:
/// the daemon never runs a cost budget without trustworthy prices.
#[test]
fn serve_refuses_to_start_on_a_bad_price() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cases = [
        (
            "[egress]\ndaily_usd = 5\n[egress.prices]\n\"openai/gpt-4o\" = { input = -2.5, output = 10, cache_read = 1.25, cache_write = 2.5 }\n",
            "egress.prices: price \"openai/gpt-4o\": input must be a non-negative",
        ),
        (
            "[egress.prices.\"anthropic/claude-x\"]\ninput = 1\noutput = 5\ncache_read = 0.1\n",
            "missing field `cache_write`",
        ),
        ("[egress]\ndaily_usd = -1\n", "egress.daily_usd must be"),
    ];
    for (i, (text, want)) in cases.into_iter().enumerate() {
        let cfg = dir.path().join(format!("c{i}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "state_dir = \"{}\"\n[admin]\nlisten = \"off\"\n{text}",
                state.display()
            ),
        )
        .unwrap();
        for cmd in ["validate", "serve"] {
            let mut child = clawgate(&state)
                .args([cmd, "--config"])
                .arg(&cfg)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // A serve that accepted the file would run until killed: bounded wait.
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{cmd} started with {text}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} accepted {text}");
            assert!(err.contains(want), "{cmd}: {want:?} not in {err}");
        }
    }
    assert!(
        !state.join("usage.db").exists(),
        "serve got as far as the usage database"
    );
}
