//! What the CONNECT listener plugs into: the host policy ([`HostPolicy`], swapped when a bundle
//! loads), name resolution ([`Resolver`]) and the audit trail ([`ConnectAudit`]).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use clawgate_policies::egress::{ConnectPolicy, DenyKind, HostDecision};

use crate::seams::AgentId;

/// The host policy of the CONNECT listener.
pub trait HostPolicy: Send + Sync + fmt::Debug + 'static {
    /// Decides `CONNECT host:port` (see [`ConnectPolicy::decide_host`]).
    fn decide(&self, host: &str, port: u16) -> HostDecision;
}

impl HostPolicy for ConnectPolicy {
    fn decide(&self, host: &str, port: u16) -> HostDecision {
        self.decide_host(host, port)
    }
}

impl HostPolicy for Arc<ConnectPolicy> {
    fn decide(&self, host: &str, port: u16) -> HostDecision {
        self.decide_host(host, port)
    }
}

/// A [`HostPolicy`] the daemon swaps when a new policy bundle loads. Tunnels already open keep
/// running; every new CONNECT is decided by the policy current when it arrives.
#[derive(Debug)]
pub struct SharedHostPolicy(RwLock<Arc<ConnectPolicy>>);

impl Default for SharedHostPolicy {
    fn default() -> Self {
        SharedHostPolicy::new(Arc::new(ConnectPolicy::builtin()))
    }
}

impl SharedHostPolicy {
    /// Starts with `policy`.
    pub fn new(policy: Arc<ConnectPolicy>) -> Self {
        SharedHostPolicy(RwLock::new(policy))
    }

    /// Replaces the policy (from `clawgate_policies::Policy::connect_policy`).
    pub fn set(&self, policy: Arc<ConnectPolicy>) {
        match self.0.write() {
            Ok(mut g) => *g = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }

    /// The policy in force (`None` if the lock was poisoned).
    pub fn current(&self) -> Option<Arc<ConnectPolicy>> {
        self.0.read().ok().map(|g| Arc::clone(&g))
    }
}

impl HostPolicy for SharedHostPolicy {
    fn decide(&self, host: &str, port: u16) -> HostDecision {
        match self.current() {
            Some(p) => p.decide_host(host, port),
            // Fail closed.
            None => HostDecision::Deny {
                kind: DenyKind::NotAllowed,
                reason: "the egress policy is unavailable".into(),
            },
        }
    }
}

/// The future a [`Resolver`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Resolves host names: the proxy does its own DNS so the addresses it checks are the addresses
/// it connects to (never resolved twice).
pub trait Resolver: Send + Sync + fmt::Debug + 'static {
    /// Every address of `host` (a lower-case name without trailing dot, never an IP literal).
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a>;
}

/// The system resolver (`getaddrinfo` through tokio). Names are looked up as absolute names
/// (with a trailing dot), so `/etc/resolv.conf` search domains never turn a public-looking
/// name into an internal one.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let absolute = format!("{host}.");
            let addrs = tokio::net::lookup_host((absolute.as_str(), 0u16)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Where the CONNECT listener reports what the audit trail must show. Implementations must be
/// quick (they run on the connection's task) and must not fail the connection.
pub trait ConnectAudit: Send + Sync + fmt::Debug + 'static {
    /// A CONNECT to an LLM provider host: traffic that would bypass redaction and metering. It
    /// was refused. `agent` is `None` when the client did not authenticate (it got 407).
    fn bypass_attempt(&self, agent: Option<&AgentId>, host: &str, port: u16);

    /// A CONNECT by an authenticated agent was refused for another reason (policy, address, TLS
    /// checks, upstream unreachable). `outcome` is the metric label, `detail` a sentence.
    fn refused(&self, agent: &AgentId, host: &str, port: u16, outcome: &'static str, detail: &str) {
        let _ = (agent, host, port, outcome, detail);
    }

    /// A tunnel closed after carrying `up` bytes to the host and `down` bytes back.
    fn tunnel_closed(&self, agent: &AgentId, host: &str, port: u16, up: u64, down: u64) {
        let _ = (agent, host, port, up, down);
    }
}

/// A [`ConnectAudit`] that only logs (the default when none is given).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogAudit;

impl ConnectAudit for LogAudit {
    fn bypass_attempt(&self, agent: Option<&AgentId>, host: &str, port: u16) {
        tracing::warn!(
            agent = agent.map_or("(unauthenticated)", AgentId::as_str),
            host,
            port,
            "CONNECT to an LLM provider refused: redaction bypass attempt."
        );
    }
}
