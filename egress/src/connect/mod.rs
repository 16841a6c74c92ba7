//! The CONNECT forward proxy: how the agent's traffic that is *not* an LLM call leaves the box.
//! It listens on its own loopback port (the firewall lets the agent's user reach exactly this
//! port and the reverse proxy's) and speaks only HTTP/1.1 `CONNECT host:port`.
//!
//! For every request, in this order:
//!
//! 1. the head is read within [`ConnectConfig::max_head_bytes`] and
//!    [`ConnectConfig::header_timeout`] (431 / 408), parsed (400), and must be `CONNECT`
//!    (405 with `Allow: CONNECT`); the target must be `host:port` or `[v6]:port` without user
//!    info (400);
//! 2. `Proxy-Authorization: Basic base64(agent:token)` or `Bearer token` is checked through the
//!    same [`Tokens`] as the reverse routes (the user name is informational; the token decides
//!    the agent). Missing or wrong: 407 with `Proxy-Authenticate`. A CONNECT to an LLM provider
//!    host is counted and reported as a bypass attempt even then;
//! 3. the host policy ([`HostPolicy`], from the bundle's `[egress]` tables) decides: an LLM
//!    provider host is refused (403) and reported to [`ConnectAudit::bypass_attempt`]; a denied
//!    host or port gets 403 with the reason (400 for a malformed host);
//! 4. the proxy resolves the name itself ([`Resolver`]); if *any* address is not public
//!    ([`AddressFilter`]: loopback, private, CGNAT, link-local and metadata, unique-local,
//!    multicast, reserved, documentation, IPv4-mapped or NAT64 forms of those) the request is
//!    refused (403), so a split or rebinding DNS answer cannot smuggle an internal address in.
//!    IP-literal targets are only accepted when the allow list names the address exactly;
//! 5. `200 Connection Established`; then the client's TLS ClientHello is read (within
//!    [`ConnectConfig::max_hello_bytes`] and [`ConnectConfig::hello_timeout`], reassembled
//!    across TCP reads and TLS records) and must name the CONNECT host in its SNI
//!    (case-insensitive, trailing dot ignored; for an IP-literal target SNI must be absent or
//!    the same address). Anything else — not TLS, malformed, no SNI, another name, or an
//!    Encrypted ClientHello that hides the real name ([`ConnectConfig::refuse_ech`]) — closes
//!    the connection (with a TLS alert where the client speaks TLS);
//! 6. only then does the proxy connect to the addresses it vetted (never resolving again),
//!    forward the buffered bytes and splice both ways until either side closes or nothing
//!    moves for [`ConnectConfig::idle_timeout`].
//!
//! Connecting upstream only after the SNI check means refused traffic never opens a
//! connection anywhere, and a client cannot use the proxy to probe which hosts and ports
//! answer. The cost: an unreachable upstream shows up as a connection closed after `200`
//! (counted as `upstream_unreachable` and audited).
//!
//! Responses made by the proxy carry `x-clawgate-error: <outcome>`; the same outcomes label
//! the `clawgate_egress_connect_requests` metric ([`ConnectMetrics`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use clawgate_egress::TokenTable;
//! use clawgate_egress::connect::{ConnectConfig, ConnectProxy, SharedHostPolicy};
//! use clawgate_policies::Policy;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::default_policy()?;
//! let hosts = Arc::new(SharedHostPolicy::new(policy.connect_policy()));
//! let proxy = ConnectProxy::builder(ConnectConfig::default())
//!     .tokens(Arc::new(TokenTable::new()))
//!     .policy(hosts.clone())
//!     .build()?;
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let listener = proxy.bind().await?;
//! let server = tokio::spawn({ let p = proxy.clone(); async move { p.serve(listener, stopped).await } });
//! // … a new bundle: hosts.set(new_policy.connect_policy());
//! stop.send(true)?;
//! server.await?;
//! # Ok(()) }
//! ```

mod addr;
mod head;
mod metrics;
mod seams;
pub mod tls;
mod tunnel;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clawgate_policies::egress::ConnectHost;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use addr::{AddressFilter, is_public};
pub use clawgate_policies::egress::{ConnectPolicy, DenyKind, HostDecision};
pub use metrics::ConnectMetrics;
pub use seams::{
    ConnectAudit, HostPolicy, LogAudit, ResolveFuture, Resolver, SharedHostPolicy, SystemResolver,
};

use crate::error::{Error, Result};
use crate::reply::CLAWGATE_ERROR_HEADER;
use crate::seams::{AgentId, Tokens};
use head::{BadHead, Credentials, HeadError};
use tls::Hello;
use tunnel::{Activity, Counted};

/// Most addresses of one name tried (and all of them checked).
const MAX_ADDRESSES: usize = 16;

/// The CONNECT listener's configuration.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Where [`ConnectProxy::bind`] listens; must be loopback. Default 127.0.0.1:8788.
    pub listen: SocketAddr,
    /// Largest request head, in bytes (431 above). Default 8 KiB.
    pub max_head_bytes: usize,
    /// Time allowed for the whole request head (408 after). Default 10 s.
    pub header_timeout: Duration,
    /// Largest TLS ClientHello, in bytes. Default 16 KiB.
    pub max_hello_bytes: usize,
    /// Time allowed, after `200`, for the whole ClientHello. Default 10 s.
    pub hello_timeout: Duration,
    /// Time allowed to resolve the host (504 after). Default 5 s.
    pub dns_timeout: Duration,
    /// Time allowed to connect to one upstream address. Default 10 s.
    pub connect_timeout: Duration,
    /// A tunnel in which no byte moved either way for this long is closed. Default 10 min.
    pub idle_timeout: Duration,
    /// Most connections served at once; more wait in the listen backlog. Default 256.
    pub max_connections: usize,
    /// After shutdown is signalled, open tunnels get this long before they are cut. Default 5 s.
    pub shutdown_grace: Duration,
    /// Refuse ClientHellos carrying Encrypted ClientHello (or ESNI): the name they really ask
    /// for is hidden, so the SNI check would be meaningless. Default true.
    pub refuse_ech: bool,
    /// The reverse proxy's base URL, named in the refusal of an LLM provider host.
    /// Default `http://127.0.0.1:8787`.
    pub reverse_proxy_base: String,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8788),
            max_head_bytes: 8 * 1024,
            header_timeout: Duration::from_secs(10),
            max_hello_bytes: 16 * 1024,
            hello_timeout: Duration::from_secs(10),
            dns_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(5),
            refuse_ech: true,
            reverse_proxy_base: "http://127.0.0.1:8787".into(),
        }
    }
}

impl ConnectConfig {
    /// Checks the values that have a meaning beyond their type.
    pub fn validate(&self) -> Result<()> {
        if !self.listen.ip().is_loopback() {
            return Err(Error::Config(format!(
                "the CONNECT proxy must listen on a loopback address, not {}",
                self.listen
            )));
        }
        if !(256..=64 * 1024).contains(&self.max_head_bytes) {
            return Err(Error::Config(
                "max_head_bytes must be between 256 and 65536".into(),
            ));
        }
        if !(1024..=64 * 1024).contains(&self.max_hello_bytes) {
            return Err(Error::Config(
                "max_hello_bytes must be between 1024 and 65536".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(Error::Config("max_connections must be positive".into()));
        }
        for (name, d) in [
            ("header_timeout", self.header_timeout),
            ("hello_timeout", self.hello_timeout),
            ("dns_timeout", self.dns_timeout),
            ("connect_timeout", self.connect_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be positive")));
            }
        }
        Ok(())
    }
}

/// The CONNECT proxy. Cheap to clone (one shared state).
#[derive(Debug, Clone)]
pub struct ConnectProxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ConnectConfig,
    tokens: Arc<dyn Tokens>,
    policy: Arc<dyn HostPolicy>,
    resolver: Arc<dyn Resolver>,
    filter: AddressFilter,
    audit: Arc<dyn ConnectAudit>,
    metrics: Arc<ConnectMetrics>,
}

/// Builds a [`ConnectProxy`]: [`tokens`](ConnectProxyBuilder::tokens) and
/// [`policy`](ConnectProxyBuilder::policy) are required.
#[derive(Debug)]
pub struct ConnectProxyBuilder {
    config: ConnectConfig,
    tokens: Option<Arc<dyn Tokens>>,
    policy: Option<Arc<dyn HostPolicy>>,
    resolver: Option<Arc<dyn Resolver>>,
    filter: AddressFilter,
    audit: Option<Arc<dyn ConnectAudit>>,
    metrics: Option<Arc<ConnectMetrics>>,
}

impl ConnectProxyBuilder {
    /// Who the agent tokens belong to (the same table as the reverse routes).
    pub fn tokens(mut self, t: Arc<dyn Tokens>) -> Self {
        self.tokens = Some(t);
        self
    }

    /// The host policy (a [`SharedHostPolicy`] to swap it when a bundle loads).
    pub fn policy(mut self, p: Arc<dyn HostPolicy>) -> Self {
        self.policy = Some(p);
        self
    }

    /// Name resolution. Default [`SystemResolver`].
    pub fn resolver(mut self, r: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(r);
        self
    }

    /// Which resolved addresses may be reached. Default [`AddressFilter::public_only`].
    pub fn address_filter(mut self, f: AddressFilter) -> Self {
        self.filter = f;
        self
    }

    /// Where bypass attempts, refusals and closed tunnels are reported. Default [`LogAudit`].
    pub fn audit(mut self, a: Arc<dyn ConnectAudit>) -> Self {
        self.audit = Some(a);
        self
    }

    /// The metrics (default: a fresh [`ConnectMetrics::new`]).
    pub fn metrics(mut self, m: Arc<ConnectMetrics>) -> Self {
        self.metrics = Some(m);
        self
    }

    /// Checks the configuration and builds the proxy.
    pub fn build(self) -> Result<ConnectProxy> {
        self.config.validate()?;
        let missing = |what: &str| Error::Config(format!("the CONNECT proxy needs {what}"));
        Ok(ConnectProxy {
            inner: Arc::new(Inner {
                tokens: self.tokens.ok_or_else(|| missing("agent tokens"))?,
                policy: self.policy.ok_or_else(|| missing("a host policy"))?,
                resolver: self.resolver.unwrap_or_else(|| Arc::new(SystemResolver)),
                filter: self.filter,
                audit: self.audit.unwrap_or_else(|| Arc::new(LogAudit)),
                metrics: self.metrics.unwrap_or_default(),
                config: self.config,
            }),
        })
    }
}

/// A reply the proxy makes itself before any tunnel exists.
struct Reply<'a> {
    status: u16,
    outcome: &'static str,
    message: String,
    extra: &'a [(&'a str, &'a str)],
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "Connection Established",
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// At most `max` characters of `s` (hosts echoed in messages come from the client).
fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// The outcome label of a policy denial.
fn deny_outcome(kind: DenyKind) -> &'static str {
    match kind {
        DenyKind::InvalidHost => "invalid_host",
        DenyKind::DenyList => "denied_deny_list",
        DenyKind::Port => "denied_port",
        DenyKind::NonPublic => "denied_non_public_host",
        DenyKind::IpLiteral => "denied_ip_literal",
        DenyKind::NotAllowed => "denied_not_allowed",
        _ => "denied",
    }
}

/// The reverse route of the four providers Clawgate proxies, by their API host.
fn route_of(host: &str) -> Option<&'static str> {
    match host {
        "api.anthropic.com" => Some("anthropic"),
        "api.openai.com" => Some("openai"),
        "generativelanguage.googleapis.com" => Some("gemini"),
        "openrouter.ai" => Some("openrouter"),
        _ => None,
    }
}

/// Ends a tunnel's bookkeeping, even when its task is cut at shutdown.
struct TunnelGuard {
    gauge: Gauge,
    audit: Arc<dyn ConnectAudit>,
    agent: AgentId,
    host: String,
    port: u16,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.gauge.dec();
        let (up, down) = (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        );
        tracing::debug!(agent = %self.agent, host = %self.host, port = self.port, up, down, "CONNECT tunnel closed.");
        self.audit
            .tunnel_closed(&self.agent, &self.host, self.port, up, down);
    }
}

impl ConnectProxy {
    /// Starts a builder.
    pub fn builder(config: ConnectConfig) -> ConnectProxyBuilder {
        ConnectProxyBuilder {
            config,
            tokens: None,
            policy: None,
            resolver: None,
            filter: AddressFilter::public_only(),
            audit: None,
            metrics: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ConnectConfig {
        &self.inner.config
    }

    /// The metrics (render with [`ConnectMetrics::encode`], or build them with
    /// [`ConnectMetrics::register_into`] to serve one exposition).
    pub fn metrics(&self) -> &Arc<ConnectMetrics> {
        &self.inner.metrics
    }

    /// Binds the configured listen address.
    pub async fn bind(&self) -> Result<TcpListener> {
        let addr = self.inner.config.listen;
        TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))
    }

    /// Serves `listener` until `shutdown` turns true (or its sender is dropped), then stops
    /// accepting, gives open tunnels [`ConnectConfig::shutdown_grace`] and cuts the rest. A
    /// listener that is not on a loopback address is refused (nothing is served).
    pub async fn serve(&self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        match listener.local_addr() {
            Ok(a) if a.ip().is_loopback() => {}
            other => {
                tracing::error!(addr = ?other.ok(), "The CONNECT proxy serves loopback listeners only; not serving.");
                return;
            }
        }
        let proxy = self.clone();
        crate::server::accept_loop(
            listener,
            self.inner.config.max_connections,
            self.inner.config.shutdown_grace,
            shutdown,
            "connect",
            move |stream| {
                let proxy = proxy.clone();
                async move { proxy.connection(stream).await }
            },
        )
        .await;
    }

    async fn connection(&self, mut client: TcpStream) {
        if let Some(outcome) = self.handle(&mut client).await {
            self.inner.metrics.outcome(outcome);
        }
    }

    /// Writes a reply, closes our side and drains what the client still sends for a moment, so
    /// closing does not reset the connection before the client has read the reply.
    async fn reply(&self, client: &mut TcpStream, r: Reply<'_>) -> Option<&'static str> {
        let body = format!("{}\n", r.message);
        let mut text = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{CLAWGATE_ERROR_HEADER}: {}\r\n",
            r.status,
            reason_phrase(r.status),
            body.len(),
            r.outcome,
        );
        for (k, v) in r.extra {
            text.push_str(k);
            text.push_str(": ");
            text.push_str(v);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text.push_str(&body);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            client.write_all(text.as_bytes()).await?;
            client.shutdown().await
        })
        .await;
        linger(client).await;
        Some(r.outcome)
    }

    /// Closes a connection after `200`: an optional TLS alert, then our side.
    async fn close_after_200(client: &mut TcpStream, alert: Option<u8>) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if let Some(a) = alert {
                client.write_all(&tls::alert(a)).await?;
            }
            client.shutdown().await
        })
        .await;
        linger(client).await;
    }

    fn refused(&self, agent: &AgentId, host: &str, port: u16, outcome: &'static str, detail: &str) {
        tracing::info!(agent = %agent, host, port, outcome, detail, "CONNECT refused.");
        self.inner.audit.refused(agent, host, port, outcome, detail);
    }

    fn bypass(&self, agent: Option<&AgentId>, host: &str, port: u16) {
        self.inner.metrics.bypass_attempt();
        self.inner.audit.bypass_attempt(agent, host, port);
    }

    /// One connection. Returns its outcome, or `None` when it became a tunnel (counted when it
    /// was established).
    async fn handle(&self, client: &mut TcpStream) -> Option<&'static str> {
        let cfg = &self.inner.config;
        let raw = match head::read_head(client, cfg.max_head_bytes, cfg.header_timeout).await {
            Ok(raw) => raw,
            Err(HeadError::Closed) => return Some("client_closed"),
            Err(HeadError::TooLarge) => {
                return self
                    .reply(
                        client,
                        Reply {
                            status: 431,
                            outcome: "head_too_large",
                            message: format!(
                                "the CONNECT request head is larger than {} bytes",
                                cfg.max_head_bytes
                            ),
                            extra: &[],
                        },
                    )
                    .await;
            }
            Err(HeadError::Timeout) => {
                return self
                    .reply(
                        client,
                        Reply {
                            status: 408,
                            outcome: "head_timeout",
                            message: format!(
                                "the CONNECT request head did not arrive within {} s",
                                cfg.header_timeout.as_secs_f64()
                            ),
                            extra: &[],
                        },
                    )
                    .await;
            }
        };
        let bad = |why: &str| Reply {
            status: 400,
            outcome: "bad_request",
            message: why.to_owned(),
            extra: &[],
        };
        let head = match head::parse_head(&raw.head) {
            Ok(h) => h,
            Err(BadHead(why)) => return self.reply(client, bad(why)).await,
        };
        if head.method != "CONNECT" {
            return self
                .reply(
                    client,
                    Reply {
                        status: 405,
                        outcome: "method_not_allowed",
                        message: format!(
                            "this is Clawgate's CONNECT proxy: only `CONNECT host:443` is served, not {}; LLM calls go to {}/<provider>",
                            clip(head.method, 32),
                            cfg.reverse_proxy_base
                        ),
                        extra: &[("Allow", "CONNECT")],
                    },
                )
                .await;
        }
        let (host_raw, port) = match head::parse_authority(head.target) {
            Ok(a) => a,
            Err(BadHead(why)) => return self.reply(client, bad(why)).await,
        };
        let host_raw = host_raw.to_owned();
        let host_raw = host_raw.as_str();
        // The host as audited and shown: normalised when it is valid, else clipped as sent.
        let shown = ConnectHost::parse(host_raw)
            .map_or_else(|| clip(host_raw, 255).to_owned(), |h| h.to_string());
        let agent = match head.proxy_token() {
            Credentials::Token(t) => self.inner.tokens.verify(t.expose()),
            Credentials::Missing | Credentials::Invalid => None,
        };
        let decision = self.inner.policy.decide(host_raw, port);
        let Some(agent) = agent else {
            if decision == HostDecision::LlmProvider {
                self.bypass(None, &shown, port);
            }
            tracing::debug!(host = %shown, port, "CONNECT without valid proxy credentials.");
            return self
                .reply(
                    client,
                    Reply {
                        status: 407,
                        outcome: "auth_required",
                        message: "proxy authentication required: send Proxy-Authorization: Basic base64(agent:token) with the agent's Clawgate token".into(),
                        extra: &[("Proxy-Authenticate", "Basic realm=\"clawgate\"")],
                    },
                )
                .await;
        };
        // The head (with the credentials in it) is zeroed and freed here.
        drop(head);
        let head::RawHead {
            head: head_bytes,
            rest,
        } = raw;
        drop(head_bytes);

        match decision {
            HostDecision::Allow => {}
            HostDecision::LlmProvider => {
                self.bypass(Some(&agent), &shown, port);
                let base = &cfg.reverse_proxy_base;
                let message = match route_of(&shown) {
                    Some(route) => format!(
                        "CONNECT to {shown} refused: it is an LLM provider, and LLM traffic must go through Clawgate's redacting proxy. Use the base URL {base}/{route} instead of https://{shown}. This attempt was recorded."
                    ),
                    None => format!(
                        "CONNECT to {shown} refused: it is an LLM provider, and LLM traffic must go through Clawgate's redacting proxy ({base}/anthropic, /openai, /gemini or /openrouter); other providers are not reachable from here. This attempt was recorded."
                    ),
                };
                tracing::warn!(agent = %agent, host = %shown, port, "CONNECT to an LLM provider refused (bypass attempt).");
                return self
                    .reply(
                        client,
                        Reply {
                            status: 403,
                            outcome: "llm_provider",
                            message,
                            extra: &[],
                        },
                    )
                    .await;
            }
            HostDecision::Deny { kind, reason } => {
                let outcome = deny_outcome(kind);
                self.refused(&agent, &shown, port, outcome, &reason);
                let status = if kind == DenyKind::InvalidHost {
                    400
                } else {
                    403
                };
                return self
                    .reply(
                        client,
                        Reply {
                            status,
                            outcome,
                            message: format!("CONNECT to {shown}:{port} refused: {reason}"),
                            extra: &[],
                        },
                    )
                    .await;
            }
        }
        let Some(target) = ConnectHost::parse(host_raw) else {
            return self
                .reply(client, bad("the CONNECT host is not valid"))
                .await;
        };
        let host = target.to_string();

        // Resolve ourselves, and vet every address.
        let mut addrs = match &target {
            ConnectHost::Ip(ip) => vec![*ip],
            ConnectHost::Name(name) => {
                match tokio::time::timeout(cfg.dns_timeout, self.inner.resolver.resolve(name)).await
                {
                    Ok(Ok(a)) if !a.is_empty() => a,
                    Ok(Ok(_)) | Ok(Err(_)) => {
                        let detail = format!("{host} could not be resolved");
                        self.refused(&agent, &host, port, "dns_failed", &detail);
                        return self
                            .reply(
                                client,
                                Reply {
                                    status: 502,
                                    outcome: "dns_failed",
                                    message: detail,
                                    extra: &[],
                                },
                            )
                            .await;
                    }
                    Err(_) => {
                        let detail = format!("resolving {host} timed out");
                        self.refused(&agent, &host, port, "dns_failed", &detail);
                        return self
                            .reply(
                                client,
                                Reply {
                                    status: 504,
                                    outcome: "dns_failed",
                                    message: detail,
                                    extra: &[],
                                },
                            )
                            .await;
                    }
                }
            }
        };
        addrs.sort();
        addrs.dedup();
        if let Some(bad_ip) = addrs.iter().find(|ip| !self.inner.filter.permits(**ip)) {
            let detail = format!(
                "{host} resolves to {bad_ip}, which is not a public address (loopback, private, link-local, metadata or reserved)"
            );
            self.refused(&agent, &host, port, "address_refused", &detail);
            return self
                .reply(
                    client,
                    Reply {
                        status: 403,
                        outcome: "address_refused",
                        message: format!("CONNECT to {host}:{port} refused: {detail}"),
                        extra: &[],
                    },
                )
                .await;
        }
        addrs.truncate(MAX_ADDRESSES);

        let established = b"HTTP/1.1 200 Connection Established\r\n\r\n";
        if !matches!(
            tokio::time::timeout(Duration::from_secs(5), client.write_all(established)).await,
            Ok(Ok(()))
        ) {
            return Some("client_closed");
        }

        // The ClientHello must name the host.
        let mut buf = rest;
        let hello = tokio::time::timeout(
            cfg.hello_timeout,
            read_hello(client, &mut buf, cfg.max_hello_bytes),
        )
        .await;
        let (outcome, alert, detail) = match hello {
            Err(_) => (
                "hello_timeout",
                None,
                "no TLS ClientHello in time".to_owned(),
            ),
            Ok(None) => return Some("client_closed"),
            Ok(Some(Hello::NeedMore)) => return Some("client_closed"),
            Ok(Some(Hello::NotTls)) => (
                "not_tls",
                None,
                "the tunnel does not start with TLS".to_owned(),
            ),
            Ok(Some(Hello::Malformed(why))) => (
                "tls_malformed",
                Some(tls::ALERT_DECODE_ERROR),
                format!("malformed TLS ClientHello: {why}"),
            ),
            Ok(Some(Hello::Complete(h))) => {
                let sni_ok = match (&target, h.sni.as_deref()) {
                    (ConnectHost::Name(n), Some(s)) => n == s,
                    (ConnectHost::Ip(_), None) => true,
                    (ConnectHost::Ip(ip), Some(s)) => {
                        ConnectHost::parse(s) == Some(ConnectHost::Ip(*ip))
                    }
                    (ConnectHost::Name(_), None) => false,
                };
                if h.ech && cfg.refuse_ech {
                    (
                        "ech_refused",
                        Some(tls::ALERT_ACCESS_DENIED),
                        "the ClientHello uses Encrypted ClientHello, which hides the real server name".to_owned(),
                    )
                } else if !sni_ok {
                    match h.sni {
                        None => (
                            "sni_missing",
                            Some(tls::ALERT_UNRECOGNIZED_NAME),
                            "the ClientHello names no server (SNI)".to_owned(),
                        ),
                        Some(s) => (
                            "sni_mismatch",
                            Some(tls::ALERT_UNRECOGNIZED_NAME),
                            format!("the ClientHello names {}, not {host}", clip(&s, 255)),
                        ),
                    }
                } else {
                    ("ok", None, String::new())
                }
            }
        };
        if outcome != "ok" {
            self.refused(&agent, &host, port, outcome, &detail);
            Self::close_after_200(client, alert).await;
            return Some(outcome);
        }

        // Only now: connect to a vetted address.
        let Some(mut upstream) = self.connect_upstream(&addrs, port).await else {
            let detail = format!("no address of {host} port {port} accepted a connection");
            self.refused(&agent, &host, port, "upstream_unreachable", &detail);
            Self::close_after_200(client, None).await;
            return Some("upstream_unreachable");
        };
        let _ = upstream.set_nodelay(true);
        self.inner.metrics.outcome("tunnelled");
        tracing::debug!(agent = %agent, host = %host, port, "CONNECT tunnel open.");

        let metrics = &self.inner.metrics;
        let up_metric = metrics.bytes_counter("up");
        let down_metric = metrics.bytes_counter("down");
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let gauge = metrics.open_tunnels().clone();
        gauge.inc();
        let _guard = TunnelGuard {
            gauge,
            audit: Arc::clone(&self.inner.audit),
            agent,
            host,
            port,
            up: Arc::clone(&up),
            down: Arc::clone(&down),
        };
        if upstream.write_all(&buf).await.is_err() {
            return None;
        }
        let sent = buf.len() as u64;
        up_metric.inc_by(sent);
        up.fetch_add(sent, Ordering::Relaxed);
        drop(buf);

        let activity = Activity::new();
        let mut a = Counted {
            inner: client,
            metric: up_metric,
            total: up,
            activity: Arc::clone(&activity),
        };
        let mut b = Counted {
            inner: &mut upstream,
            metric: down_metric,
            total: down,
            activity: Arc::clone(&activity),
        };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
            _ = activity.idle_for(cfg.idle_timeout) => {
                tracing::debug!("CONNECT tunnel idle; closing it.");
            }
        }
        None
    }

    async fn connect_upstream(&self, addrs: &[IpAddr], port: u16) -> Option<TcpStream> {
        for ip in addrs {
            // Checked again right before use: the address connected to is always a vetted one.
            if !self.inner.filter.permits(*ip) {
                continue;
            }
            let addr = SocketAddr::new(*ip, port);
            match tokio::time::timeout(self.inner.config.connect_timeout, TcpStream::connect(addr))
                .await
            {
                Ok(Ok(s)) => return Some(s),
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "CONNECT upstream refused."),
                Err(_) => tracing::debug!(%addr, "CONNECT upstream connect timed out."),
            }
        }
        None
    }
}

/// Reads until `buf` holds a complete ClientHello (or proof there is none). `None`: the client
/// closed first.
async fn read_hello(client: &mut TcpStream, buf: &mut Vec<u8>, max_hello: usize) -> Option<Hello> {
    // Records add 5 bytes each; tiny records could inflate a hello, so bound the buffer too.
    let cap = max_hello.saturating_mul(2).saturating_add(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match tls::parse_client_hello(buf, max_hello) {
            Hello::NeedMore => {}
            done => return Some(done),
        }
        if buf.len() >= cap {
            return Some(Hello::Malformed("the ClientHello is larger than the limit"));
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// After our side is closed, reads and discards what the client still sends (up to 64 KiB or
/// one second), so the kernel does not answer it with a reset that destroys our reply.
async fn linger(client: &mut TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 4096];
        let mut total = 0usize;
        while total < 64 * 1024 {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}
