//! The CONNECT forward proxy end to end, on loopback only: a fake upstream (a TCP echo server
//! that records what reached it), a static resolver (no real DNS), real rustls ClientHellos.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clawgate_egress::connect::{
    AddressFilter, ConnectAudit, ConnectConfig, ConnectMetrics, ConnectPolicy, ConnectProxy,
    HostDecision, HostPolicy, ResolveFuture, Resolver, SharedHostPolicy,
};
use clawgate_egress::{AgentId, TokenTable};
use clawgate_protocol::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const TOKEN: &str = "cg-connect-agent-token-5d4c3b2a";
const IO: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Fakes

/// A name → addresses table; a name mapped to nothing fails; `slow.test` never answers.
#[derive(Debug, Default)]
struct StaticResolver {
    map: HashMap<String, Vec<IpAddr>>,
    calls: Mutex<Vec<String>>,
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        self.calls.lock().unwrap().push(host.to_owned());
        Box::pin(async move {
            if host == "slow.test" {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            self.map
                .get(host)
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
        })
    }
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl ConnectAudit for Recorder {
    fn bypass_attempt(&self, agent: Option<&AgentId>, host: &str, port: u16) {
        let agent = agent.map_or("-", AgentId::as_str);
        self.0
            .lock()
            .unwrap()
            .push(format!("bypass {agent} {host}:{port}"));
    }

    fn refused(&self, agent: &AgentId, host: &str, port: u16, outcome: &'static str, _: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("refused {agent} {host}:{port} {outcome}"));
    }

    fn tunnel_closed(&self, agent: &AgentId, host: &str, port: u16, up: u64, down: u64) {
        self.0
            .lock()
            .unwrap()
            .push(format!("closed {agent} {host}:{port} up={up} down={down}"));
    }
}

/// A host policy that allows exactly one IP literal (to test IP-literal tunnels to loopback,
/// which the real policy never allows).
#[derive(Debug)]
struct AllowIp(&'static str);

impl HostPolicy for AllowIp {
    fn decide(&self, host: &str, _port: u16) -> HostDecision {
        if host == self.0 {
            HostDecision::Allow
        } else {
            ConnectPolicy::builtin().decide_host(host, 443)
        }
    }
}

/// The "upstream": echoes everything and records every connection and byte.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (accepted.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                r.lock().unwrap().extend_from_slice(&buf[..n]);
                                if s.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            accepted,
            received,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn bytes(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

/// Non-public addresses, each behind its own name `bad<i>.test`.
const NON_PUBLIC: &[&str] = &[
    "10.0.0.5",
    "172.16.3.4",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "169.254.1.1",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.10",
    "198.18.0.1",
    "::",
    "fd00:ec2::254",
    "fc00::1",
    "fe80::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:10.0.0.5",
    "::ffff:169.254.169.254",
    "::ffff:192.168.1.1",
    "64:ff9b::a9fe:a9fe",
    "::10.0.0.5",
];

// ---------------------------------------------------------------------------------------------
// Harness

struct Harness {
    proxy: ConnectProxy,
    addr: SocketAddr,
    upstream: Upstream,
    resolver: Arc<StaticResolver>,
    audit: Arc<Recorder>,
    metrics: Arc<ConnectMetrics>,
    policy: Arc<SharedHostPolicy>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

struct Opts {
    config: ConnectConfig,
    policy: Option<Arc<dyn HostPolicy>>,
    egress_toml: String,
}

impl Default for Opts {
    fn default() -> Self {
        let config = ConnectConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            header_timeout: Duration::from_secs(3),
            hello_timeout: Duration::from_secs(3),
            dns_timeout: Duration::from_millis(300),
            shutdown_grace: Duration::from_millis(200),
            ..ConnectConfig::default()
        };
        Opts {
            config,
            policy: None,
            egress_toml: String::new(),
        }
    }
}

async fn start() -> Harness {
    start_with(Opts::default()).await
}

async fn start_with(opts: Opts) -> Harness {
    let upstream = Upstream::start().await;
    let port = upstream.port();
    let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    for name in [
        "allowed.test",
        "other.test",
        "ok.example.com",
        "bad.example.com",
    ] {
        map.insert(name.into(), vec![lo]);
    }
    for (i, a) in NON_PUBLIC.iter().enumerate() {
        map.insert(format!("bad{i}.test"), vec![a.parse().unwrap()]);
    }
    map.insert("mixed.test".into(), vec![lo, "10.0.0.1".parse().unwrap()]);
    map.insert(
        "mixed6.test".into(),
        vec![lo, "fd00:ec2::254".parse().unwrap()],
    );
    map.insert(
        "mixed-public.test".into(),
        vec![
            "93.184.216.34".parse().unwrap(),
            "169.254.169.254".parse().unwrap(),
        ],
    );
    map.insert("empty.test".into(), vec![]);
    let resolver = Arc::new(StaticResolver {
        map,
        calls: Mutex::new(Vec::new()),
    });
    let toml = format!(
        "[egress]\nconnect_ports = [443, {port}]\n{}",
        opts.egress_toml
    );
    let policy = Arc::new(SharedHostPolicy::new(Arc::new(
        ConnectPolicy::from_tables(&[("test.toml", &toml)]).unwrap(),
    )));
    let audit = Arc::new(Recorder::default());
    let metrics = Arc::new(ConnectMetrics::new());
    let proxy = ConnectProxy::builder(opts.config)
        .tokens(Arc::new(
            TokenTable::new().with("main", &SecretString::new(TOKEN.into())),
        ))
        .policy(opts.policy.unwrap_or_else(|| policy.clone()))
        .resolver(resolver.clone())
        .address_filter(AddressFilter::public_and_loopback_for_tests())
        .audit(audit.clone())
        .metrics(metrics.clone())
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn({
        let p = proxy.clone();
        async move { p.serve(listener, stopped).await }
    });
    Harness {
        proxy,
        addr,
        upstream,
        resolver,
        audit,
        metrics,
        policy,
        stop,
        server,
    }
}

fn basic(user: &str, token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    )
}

fn connect_head(target: &str, auth: Option<&str>) -> String {
    let mut h = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = auth {
        h.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    h.push_str("\r\n");
    h
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn kind(&self) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix("x-clawgate-error: "))
    }
}

/// Reads a response head (and the body by Content-Length).
async fn read_reply(s: &mut TcpStream) -> Reply {
    tokio::time::timeout(IO, async {
        let mut buf = Vec::new();
        let mut b = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut b).await.unwrap();
            assert!(
                n > 0,
                "closed before the reply head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.push(b[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let status: u16 = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        Reply {
            status,
            head,
            body: String::from_utf8(body).unwrap(),
        }
    })
    .await
    .expect("reply in time")
}

/// Reads until the proxy closes (EOF or reset); what arrived before.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    tokio::time::timeout(IO, async {
        let mut out = Vec::new();
        let mut b = [0u8; 1024];
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&b[..n]),
            }
        }
    })
    .await
    .expect("the proxy closed the connection in time")
}

/// Polls the audit recorder for an event starting with `prefix`.
async fn audited(audit: &Recorder, prefix: &str) -> String {
    let deadline = Instant::now() + IO;
    loop {
        if let Some(e) = audit.events().into_iter().find(|e| e.starts_with(prefix)) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no audit event {prefix}: {:?}",
            audit.events()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Harness {
    /// Sends a CONNECT and reads the reply.
    async fn connect(&self, target: &str, auth: Option<&str>) -> (TcpStream, Reply) {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        s.write_all(connect_head(target, auth).as_bytes())
            .await
            .unwrap();
        let r = read_reply(&mut s).await;
        (s, r)
    }

    async fn connect_ok(&self, target: &str) -> TcpStream {
        let (s, r) = self.connect(target, Some(&basic("main", TOKEN))).await;
        assert_eq!(r.status, 200, "{target}: {r:?}");
        assert_eq!(r.head, "HTTP/1.1 200 Connection Established\r\n\r\n");
        s
    }

    fn target(&self, host: &str) -> String {
        format!("{host}:{}", self.upstream.port())
    }

    async fn audited(&self, prefix: &str) -> String {
        audited(&self.audit, prefix).await
    }

    async fn outcome_count(&self, outcome: &'static str, want: u64) {
        let deadline = Instant::now() + IO;
        while self.metrics.requests_with_outcome(outcome) < want {
            assert!(
                Instant::now() < deadline,
                "{outcome}: {}",
                self.metrics.encode()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            self.metrics.requests_with_outcome(outcome),
            want,
            "{outcome}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ClientHellos

fn rustls_hello(name: &str, sni: bool) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.enable_sni = sni;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert_eq!(out[0], 0x16);
    out
}

/// The handshake message inside `records` (one or more handshake records).
fn handshake_of(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 5 <= records.len() {
        let len = u16::from_be_bytes([records[i + 3], records[i + 4]]) as usize;
        out.extend_from_slice(&records[i + 5..i + 5 + len]);
        i += 5 + len;
    }
    out
}

/// Re-frames a handshake message into records of `chunk` bytes.
fn reframe(msg: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in msg.chunks(chunk) {
        out.extend([0x16, 0x03, 0x01]);
        out.extend((c.len() as u16).to_be_bytes());
        out.extend(c);
    }
    out
}

/// A ClientHello with the given SNI and an Encrypted ClientHello extension added.
fn hello_with_ech(name: &str) -> Vec<u8> {
    let msg = handshake_of(&rustls_hello(name, true));
    // Append an extension (type 0xfe0d) and fix the three lengths.
    let ext = [0xfe, 0x0d, 0x00, 0x04, 0, 0, 0, 0];
    let mut body = msg[4..].to_vec();
    // legacy_version(2) random(32) session_id cipher_suites compression, then extensions.
    let mut i = 2 + 32;
    i += 1 + body[i] as usize;
    i += 2 + u16::from_be_bytes([body[i], body[i + 1]]) as usize;
    i += 1 + body[i] as usize;
    let ext_len = u16::from_be_bytes([body[i], body[i + 1]]) as usize + ext.len();
    body[i..i + 2].copy_from_slice(&(ext_len as u16).to_be_bytes());
    body.extend(ext);
    let mut m = vec![1];
    m.extend(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend(body);
    reframe(&m, 16384)
}

// ---------------------------------------------------------------------------------------------
// Tunnels

#[tokio::test]
async fn an_allowed_host_gets_a_tunnel_both_ways_however_the_hello_arrives() {
    let h = start().await;
    let hello = rustls_hello("allowed.test", true);
    let reframed = reframe(&handshake_of(&hello), 100);
    // (label, auth, host as written, bytes of the hello, how many bytes per write)
    let cases: Vec<(&str, String, &str, Vec<u8>, usize)> = vec![
        (
            "one write",
            basic("main", TOKEN),
            "allowed.test",
            hello.clone(),
            usize::MAX,
        ),
        (
            "bearer",
            format!("Bearer {TOKEN}"),
            "allowed.test",
            hello.clone(),
            usize::MAX,
        ),
        (
            "user name is informational",
            basic("whoever", TOKEN),
            "allowed.test",
            hello.clone(),
            usize::MAX,
        ),
        (
            "upper case, trailing dot",
            basic("main", TOKEN),
            "ALLOWED.Test.",
            hello.clone(),
            usize::MAX,
        ),
        (
            "split across TCP reads",
            basic("main", TOKEN),
            "allowed.test",
            hello.clone(),
            37,
        ),
        (
            "split across TLS records",
            basic("main", TOKEN),
            "allowed.test",
            reframed.clone(),
            150,
        ),
    ];
    for (i, (label, auth, host, hello, step)) in cases.into_iter().enumerate() {
        let before = h.upstream.bytes().len();
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        s.write_all(connect_head(&h.target(host), Some(&auth)).as_bytes())
            .await
            .unwrap();
        let r = read_reply(&mut s).await;
        assert_eq!(r.status, 200, "{label}: {r:?}");
        for c in hello.chunks(step.min(hello.len())) {
            s.write_all(c).await.unwrap();
            if step != usize::MAX {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        s.write_all(b"ping").await.unwrap();
        let mut back = vec![0u8; hello.len() + 4];
        tokio::time::timeout(IO, s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        let mut want = hello.clone();
        want.extend(b"ping");
        assert_eq!(back, want, "{label}: echoed bytes");
        assert_eq!(
            &h.upstream.bytes()[before..],
            &want[..],
            "{label}: upstream bytes"
        );
        assert_eq!(h.upstream.connections(), i + 1, "{label}");
        drop(s);
        h.outcome_count("tunnelled", i as u64 + 1).await;
    }
    // Closed tunnels are audited with their byte counts.
    let n = hello.len() + 4;
    let want = format!(
        "closed main allowed.test:{} up={n} down={n}",
        h.upstream.port()
    );
    assert_eq!(h.audited(&want).await, want);
    let text = h.metrics.encode();
    assert!(
        text.contains("clawgate_egress_connect_bytes_total{direction=\"up\"}"),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
}

#[tokio::test]
async fn a_hello_sent_with_the_connect_head_is_forwarded() {
    let h = start().await;
    let hello = rustls_hello("allowed.test", true);
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut first =
        connect_head(&h.target("allowed.test"), Some(&basic("main", TOKEN))).into_bytes();
    first.extend(&hello);
    s.write_all(&first).await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 200);
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(IO, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, hello);
}

#[tokio::test]
async fn an_ip_literal_tunnel_needs_no_sni_or_the_same_address() {
    let h = start_with(Opts {
        policy: Some(Arc::new(AllowIp("127.0.0.1"))),
        ..Opts::default()
    })
    .await;
    let target = h.target("127.0.0.1");
    // rustls sends no SNI for an IP address.
    let hello = rustls_hello("127.0.0.1", true);
    let mut s = h.connect_ok(&target).await;
    s.write_all(&hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(IO, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, hello);
    drop(s);
    // A name in the SNI of an IP-literal tunnel is a mismatch.
    let mut s = h.connect_ok(&target).await;
    s.write_all(&rustls_hello("allowed.test", true))
        .await
        .unwrap();
    let alert = read_until_closed(&mut s).await;
    assert_eq!(alert, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]);
    h.outcome_count("sni_mismatch", 1).await;
    assert_eq!(h.upstream.connections(), 1);
}

#[tokio::test]
async fn an_idle_tunnel_is_closed() {
    let mut opts = Opts::default();
    opts.config.idle_timeout = Duration::from_millis(300);
    let h = start_with(opts).await;
    let mut s = h.connect_ok(&h.target("allowed.test")).await;
    let hello = rustls_hello("allowed.test", true);
    s.write_all(&hello).await.unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut s).await;
    assert_eq!(got, hello);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    h.audited("closed main allowed.test").await;
}

#[tokio::test]
async fn shutdown_cuts_open_tunnels_after_the_grace() {
    let h = start().await;
    let mut s = h.connect_ok(&h.target("allowed.test")).await;
    s.write_all(&rustls_hello("allowed.test", true))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let Harness {
        stop,
        server,
        audit,
        addr,
        ..
    } = h;
    stop.send(true).unwrap();
    tokio::time::timeout(IO, server).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let _ = read_until_closed(&mut s).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    audited(&audit, "closed main allowed.test").await;
}

// ---------------------------------------------------------------------------------------------
// Policy

#[tokio::test]
async fn llm_provider_hosts_are_refused_and_audited_as_bypass_attempts() {
    let h = start().await;
    let cases = [
        (
            "api.anthropic.com:443",
            "api.anthropic.com",
            Some("/anthropic"),
        ),
        ("API.OpenAI.com.:443", "api.openai.com", Some("/openai")),
        (
            "generativelanguage.googleapis.com:443",
            "generativelanguage.googleapis.com",
            Some("/gemini"),
        ),
        ("openrouter.ai:443", "openrouter.ai", Some("/openrouter")),
        (
            "api.anthropic.com:80",
            "api.anthropic.com",
            Some("/anthropic"),
        ),
        ("api.mistral.ai:443", "api.mistral.ai", None),
        (
            "contoso.openai.azure.com:443",
            "contoso.openai.azure.com",
            None,
        ),
        (
            "bedrock-runtime.us-east-1.amazonaws.com:443",
            "bedrock-runtime.us-east-1.amazonaws.com",
            None,
        ),
    ];
    for (i, (target, host, route)) in cases.iter().enumerate() {
        let (mut s, r) = h.connect(target, Some(&basic("main", TOKEN))).await;
        assert_eq!(
            (r.status, r.kind()),
            (403, Some("llm_provider")),
            "{target}: {r:?}"
        );
        assert!(
            r.body.contains("redacting proxy") && r.body.contains("recorded"),
            "{}",
            r.body
        );
        if let Some(route) = route {
            assert!(
                r.body.contains(&format!("http://127.0.0.1:8787{route}")),
                "{}",
                r.body
            );
        }
        assert!(read_until_closed(&mut s).await.is_empty());
        let port = target.rsplit(':').next().unwrap();
        h.audited(&format!("bypass main {host}:{port}")).await;
        assert_eq!(h.metrics.bypass_attempts(), i as u64 + 1);
    }
    // Without credentials: 407, but still counted and reported (agent unknown).
    let (_s, r) = h.connect("api.openai.com:443", None).await;
    assert_eq!(r.status, 407);
    h.audited("bypass - api.openai.com:443").await;
    assert_eq!(h.metrics.bypass_attempts(), cases.len() as u64 + 1);
    h.outcome_count("llm_provider", cases.len() as u64).await;
    // Never resolved, never connected.
    assert!(h.resolver.calls.lock().unwrap().is_empty());
    assert_eq!(h.upstream.connections(), 0);
    let text = h.metrics.encode();
    assert!(
        text.contains(&format!(
            "clawgate_egress_connect_bypass_attempts_total {}",
            cases.len() + 1
        )),
        "{text}"
    );
}

#[tokio::test]
async fn denied_hosts_and_ports_are_refused_with_the_reason() {
    let h = start_with(Opts {
        egress_toml: "connect_deny = [\"bad.example.com\"]\n".into(),
        ..Opts::default()
    })
    .await;
    let port = h.upstream.port();
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            "pastebin.com:443".into(),
            403,
            "denied_deny_list",
            "deny list",
        ),
        (
            "x.ngrok-free.app:443".into(),
            403,
            "denied_deny_list",
            "deny list",
        ),
        (
            h.target("bad.example.com"),
            403,
            "denied_deny_list",
            "bad.example.com",
        ),
        ("allowed.test:22".into(), 403, "denied_port", "port 22"),
        (
            h.target("localhost"),
            403,
            "denied_non_public_host",
            "not a public",
        ),
        (
            h.target("metadata.google.internal"),
            403,
            "denied_non_public_host",
            "not a public",
        ),
        (
            h.target("10.0.0.1.nip.io"),
            403,
            "denied_non_public_host",
            "not a public",
        ),
        (
            h.target("printer"),
            403,
            "denied_non_public_host",
            "not a public",
        ),
        (
            h.target("127.0.0.1"),
            403,
            "denied_non_public_host",
            "not a public",
        ),
        (
            h.target("169.254.169.254"),
            403,
            "denied_non_public_host",
            "not a public",
        ),
        (
            h.target("[::1]"),
            403,
            "denied_non_public_host",
            "not a public",
        ),
        (
            h.target("[::ffff:127.0.0.1]"),
            403,
            "denied_non_public_host",
            "not a public",
        ),
        (
            h.target("[fd00:ec2::254]"),
            403,
            "denied_non_public_host",
            "not a public",
        ),
        ("8.8.8.8:443".into(), 403, "denied_ip_literal", "IP address"),
        (
            "[2606:4700::1111]:443".into(),
            403,
            "denied_ip_literal",
            "IP address",
        ),
        (h.target("127.1"), 400, "invalid_host", "not a valid host"),
        (
            h.target("2130706433"),
            400,
            "invalid_host",
            "not a valid host",
        ),
        (
            h.target("bad_host!"),
            400,
            "invalid_host",
            "not a valid host",
        ),
        (
            h.target("xn--\u{0456}"),
            400,
            "invalid_host",
            "not a valid host",
        ),
    ];
    for (target, status, kind, needle) in &cases {
        let (_s, r) = h.connect(target, Some(&basic("main", TOKEN))).await;
        assert_eq!(
            (r.status, r.kind()),
            (*status, Some(*kind)),
            "{target}: {r:?}"
        );
        assert!(r.body.contains(needle), "{target}: {}", r.body);
    }
    assert_eq!(h.upstream.connections(), 0);
    assert!(h.resolver.calls.lock().unwrap().is_empty());
    h.audited(&format!(
        "refused main bad.example.com:{port} denied_deny_list"
    ))
    .await;
    assert_eq!(h.metrics.bypass_attempts(), 0);
}

#[tokio::test]
async fn an_allow_list_restricts_and_a_policy_swap_takes_effect_at_once() {
    let h = start_with(Opts {
        egress_toml: "connect_allow = [\"allowed.test\", \"*.example.com\"]\n".into(),
        ..Opts::default()
    })
    .await;
    h.connect_ok(&h.target("allowed.test")).await;
    h.connect_ok(&h.target("ok.example.com")).await;
    let (_s, r) = h
        .connect(&h.target("other.test"), Some(&basic("main", TOKEN)))
        .await;
    assert_eq!((r.status, r.kind()), (403, Some("denied_not_allowed")));
    // A new bundle: allowed.test is now denied.
    let port = h.upstream.port();
    let next = ConnectPolicy::from_tables(&[(
        "next.toml",
        &format!("[egress]\nconnect_ports = [{port}]\nconnect_deny = [\"allowed.test\"]\n"),
    )])
    .unwrap();
    h.policy.set(Arc::new(next));
    let (_s, r) = h
        .connect(&h.target("allowed.test"), Some(&basic("main", TOKEN)))
        .await;
    assert_eq!((r.status, r.kind()), (403, Some("denied_deny_list")));
    h.connect_ok(&h.target("other.test")).await;
}

// ---------------------------------------------------------------------------------------------
// Addresses

#[tokio::test]
async fn names_resolving_to_non_public_addresses_are_refused() {
    let h = start().await;
    let mut names: Vec<(String, String)> = NON_PUBLIC
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("bad{i}.test"), a.to_string()))
        .collect();
    names.push(("mixed.test".into(), "10.0.0.1".into()));
    names.push(("mixed6.test".into(), "fd00:ec2::254".into()));
    names.push(("mixed-public.test".into(), "169.254.169.254".into()));
    for (name, addr) in &names {
        let (mut s, r) = h
            .connect(&h.target(name), Some(&basic("main", TOKEN)))
            .await;
        assert_eq!(
            (r.status, r.kind()),
            (403, Some("address_refused")),
            "{name} → {addr}: {r:?}"
        );
        let shown: IpAddr = addr.parse().unwrap();
        assert!(r.body.contains(&shown.to_string()), "{name}: {}", r.body);
        assert!(read_until_closed(&mut s).await.is_empty());
    }
    assert_eq!(h.upstream.connections(), 0);
    h.outcome_count("address_refused", names.len() as u64).await;
    h.audited("refused main mixed.test").await;
}

#[tokio::test]
async fn resolution_failures_are_reported() {
    let h = start().await;
    for (name, status) in [
        ("unknown.test", 502),
        ("empty.test", 502),
        ("slow.test", 504),
    ] {
        let (_s, r) = h
            .connect(&h.target(name), Some(&basic("main", TOKEN)))
            .await;
        assert_eq!(
            (r.status, r.kind()),
            (status, Some("dns_failed")),
            "{name}: {r:?}"
        );
    }
    assert_eq!(h.upstream.connections(), 0);
}

// ---------------------------------------------------------------------------------------------
// The ClientHello

#[tokio::test]
async fn a_tunnel_whose_hello_does_not_name_the_host_is_closed_before_any_upstream_connection() {
    let h = start().await;
    let no_ext = {
        // A bare ClientHello without extensions.
        let mut body = vec![0x03, 0x03];
        body.extend([1u8; 32]);
        body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
        let mut m = vec![1, 0, 0, body.len() as u8];
        m.extend(body);
        reframe(&m, 16384)
    };
    let garbage_tls = vec![0x16, 0x03, 0x01, 0x00, 0x05, 9, 9, 9, 9, 9];
    // (label, bytes after 200, outcome, the alert the client gets, if any)
    let cases: Vec<(&str, Vec<u8>, &str, Option<u8>)> = vec![
        (
            "another name",
            rustls_hello("other.test", true),
            "sni_mismatch",
            Some(112),
        ),
        (
            "a suffix of it",
            rustls_hello("test", true),
            "sni_mismatch",
            Some(112),
        ),
        (
            "a longer name",
            rustls_hello("evil.allowed.test", true),
            "sni_mismatch",
            Some(112),
        ),
        (
            "an LLM host",
            rustls_hello("api.anthropic.com", true),
            "sni_mismatch",
            Some(112),
        ),
        (
            "no SNI",
            rustls_hello("allowed.test", false),
            "sni_missing",
            Some(112),
        ),
        ("no extensions", no_ext, "sni_missing", Some(112)),
        (
            "Encrypted ClientHello",
            hello_with_ech("allowed.test"),
            "ech_refused",
            Some(49),
        ),
        (
            "plain HTTP",
            b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n".to_vec(),
            "not_tls",
            None,
        ),
        ("SSH", b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(), "not_tls", None),
        ("malformed TLS", garbage_tls, "tls_malformed", Some(50)),
    ];
    for (label, bytes, outcome, alert) in &cases {
        let mut s = h.connect_ok(&h.target("allowed.test")).await;
        s.write_all(bytes).await.unwrap();
        let got = read_until_closed(&mut s).await;
        match alert {
            Some(a) => assert_eq!(got, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, *a], "{label}"),
            None => assert!(got.is_empty(), "{label}: {got:?}"),
        }
        h.audited(&format!(
            "refused main allowed.test:{} {outcome}",
            h.upstream.port()
        ))
        .await;
    }
    for outcome in [
        "sni_mismatch",
        "sni_missing",
        "ech_refused",
        "not_tls",
        "tls_malformed",
    ] {
        let want = cases.iter().filter(|c| c.2 == outcome).count() as u64;
        h.outcome_count(outcome, want).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        h.upstream.connections(),
        0,
        "nothing may reach the upstream"
    );
    assert!(h.upstream.bytes().is_empty());
}

#[tokio::test]
async fn a_missing_or_oversized_hello_is_refused() {
    let mut opts = Opts::default();
    opts.config.hello_timeout = Duration::from_millis(300);
    opts.config.max_hello_bytes = 2048;
    let h = start_with(opts).await;
    // Nothing after 200.
    let mut s = h.connect_ok(&h.target("allowed.test")).await;
    assert!(read_until_closed(&mut s).await.is_empty());
    h.outcome_count("hello_timeout", 1).await;
    // Half a hello, then silence.
    let hello = rustls_hello("allowed.test", true);
    let mut s = h.connect_ok(&h.target("allowed.test")).await;
    s.write_all(&hello[..hello.len() / 2]).await.unwrap();
    assert!(read_until_closed(&mut s).await.is_empty());
    h.outcome_count("hello_timeout", 2).await;
    // A hello over the limit (declared in its header).
    let mut m = vec![1, 0, 0x10, 0];
    m.extend(vec![0u8; 4096]);
    let mut s = h.connect_ok(&h.target("allowed.test")).await;
    let _ = s.write_all(&reframe(&m, 16384)).await;
    let got = read_until_closed(&mut s).await;
    assert_eq!(got, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50]);
    h.outcome_count("tls_malformed", 1).await;
    assert_eq!(h.upstream.connections(), 0);
}

// ---------------------------------------------------------------------------------------------
// The request

#[tokio::test]
async fn credentials_are_required_and_never_echoed() {
    let h = start().await;
    let target = h.target("allowed.test");
    let cases = [
        None,
        Some(basic("main", "wrong-token")),
        Some(basic("main", "")),
        Some(format!("Bearer {TOKEN}x")),
        Some("Basic !!!notbase64".to_owned()),
        Some(format!("Digest {TOKEN}")),
        Some(base64::engine::general_purpose::STANDARD.encode(TOKEN)),
    ];
    for auth in &cases {
        let (_s, r) = h.connect(&target, auth.as_deref()).await;
        assert_eq!(
            (r.status, r.kind()),
            (407, Some("auth_required")),
            "{auth:?}"
        );
        assert!(
            r.head
                .contains("Proxy-Authenticate: Basic realm=\"clawgate\""),
            "{r:?}"
        );
        assert!(!r.head.contains(TOKEN) && !r.body.contains(TOKEN));
    }
    h.outcome_count("auth_required", cases.len() as u64).await;
    assert_eq!(h.upstream.connections(), 0);
    assert!(h.resolver.calls.lock().unwrap().is_empty());
    assert!(h.audit.events().is_empty(), "{:?}", h.audit.events());
    let dbg = format!("{:?}", h.proxy);
    assert!(!dbg.contains(TOKEN), "{dbg}");
}

#[tokio::test]
async fn malformed_and_non_connect_requests_are_refused() {
    let h = start().await;
    let auth = basic("main", TOKEN);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("GET http://allowed.test/ HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n"),
            405,
            "method_not_allowed",
        ),
        ("POST / HTTP/1.1\r\n\r\n".into(), 405, "method_not_allowed"),
        (
            "connect allowed.test:443 HTTP/1.1\r\n\r\n".into(),
            405,
            "method_not_allowed",
        ),
        ("hello\r\n\r\n".into(), 400, "bad_request"),
        (
            "CONNECT allowed.test:443 HTTP/2.0\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            "CONNECT allowed.test HTTP/1.1\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            "CONNECT allowed.test:0 HTTP/1.1\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            "CONNECT allowed.test:99999 HTTP/1.1\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            "CONNECT user:pw@allowed.test:443 HTTP/1.1\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            "CONNECT allowed.test:443 HTTP/1.1\r\n folded: x\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            "CONNECT allowed.test\t:443 HTTP/1.1\r\n\r\n".into(),
            400,
            "bad_request",
        ),
    ];
    for (raw, status, kind) in &cases {
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let r = read_reply(&mut s).await;
        assert_eq!(
            (r.status, r.kind()),
            (*status, Some(*kind)),
            "{raw:?}: {r:?}"
        );
        if *status == 405 {
            assert!(r.head.contains("Allow: CONNECT\r\n"), "{r:?}");
        }
    }
    assert_eq!(h.upstream.connections(), 0);
}

#[tokio::test]
async fn a_slow_head_times_out_and_an_oversized_head_is_refused() {
    let mut opts = Opts::default();
    opts.config.header_timeout = Duration::from_millis(400);
    opts.config.max_head_bytes = 1024;
    let h = start_with(opts).await;
    // Slowloris: a byte every 50 ms never finishes the head in time.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let started = Instant::now();
    let head = connect_head(&h.target("allowed.test"), Some(&basic("main", TOKEN)));
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        for b in head.as_bytes() {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::future::pending::<()>().await;
    };
    let reader = async {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let got = tokio::time::timeout(IO, async {
        tokio::select! {
            out = reader => out,
            _ = trickle => unreachable!(),
        }
    })
    .await
    .unwrap();
    let rest = String::from_utf8(got).unwrap();
    assert!(rest.starts_with("HTTP/1.1 408 "), "{rest:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    h.outcome_count("head_timeout", 1).await;
    // Nothing at all.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let r = read_reply(&mut s).await;
    assert_eq!((r.status, r.kind()), (408, Some("head_timeout")));
    // Oversized.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let big = format!(
        "CONNECT allowed.test:443 HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(4000)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let r = read_reply(&mut s).await;
    assert_eq!((r.status, r.kind()), (431, Some("head_too_large")));
    assert_eq!(h.upstream.connections(), 0);
}

// ---------------------------------------------------------------------------------------------
// Setup

#[tokio::test]
async fn only_loopback_listeners_are_served() {
    let config = ConnectConfig {
        listen: "0.0.0.0:8788".parse().unwrap(),
        ..ConnectConfig::default()
    };
    let built = ConnectProxy::builder(config)
        .tokens(Arc::new(TokenTable::new()))
        .policy(Arc::new(ConnectPolicy::builtin()))
        .build();
    assert!(built.unwrap_err().to_string().contains("loopback"));
    let missing = ConnectProxy::builder(ConnectConfig::default())
        .tokens(Arc::new(TokenTable::new()))
        .build();
    assert!(missing.unwrap_err().to_string().contains("host policy"));

    let proxy = ConnectProxy::builder(ConnectConfig::default())
        .tokens(Arc::new(TokenTable::new()))
        .policy(Arc::new(ConnectPolicy::builtin()))
        .build()
        .unwrap();
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let (_stop, stopped) = watch::channel(false);
    tokio::time::timeout(IO, proxy.serve(listener, stopped))
        .await
        .expect("serve returns at once on a non-loopback listener");
}

#[test]
fn metrics_register_into_a_shared_registry() {
    let mut registry = prometheus_client::registry::Registry::with_prefix("clawgate");
    let m = ConnectMetrics::register_into(&mut registry);
    assert!(m.encode().is_empty());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    for name in [
        "clawgate_egress_connect_requests",
        "clawgate_egress_connect_bypass_attempts_total 0",
        "clawgate_egress_connect_open_tunnels 0",
    ] {
        assert!(out.contains(name), "{name}: {out}");
    }
}
