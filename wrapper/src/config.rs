//! `clawgate serve`'s configuration: TOML read in two phases.
//!
//! Phase one is syntax and shape: serde with `deny_unknown_fields`, so a misspelt key is an error
//! with its line, never silently ignored. Phase two is meaning: values in range, users and groups
//! that exist, paths made absolute against the state directory. Only a fully validated
//! [`Settings`] reaches the daemon, and `clawgate validate` runs exactly the same two phases.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::{BTreeMap, HashMap};

use clawgate_egress::prices::usd_to_micros;
use clawgate_egress::{Budgets, EgressConfig, PriceUsd, Prices, Provider, Upstream};
use clawgate_policies::Tier;
use serde::Deserialize;

use crate::capture::{CaptureMode, CaptureSettings};
use crate::error::{Error, Result};

/// Largest configuration file read.
const MAX_CONFIG: u64 = 1024 * 1024;
/// OpenClaw caps a plugin hook's timeout at 600 s; the approval wait must leave room inside it.
pub const MAX_APPROVAL_WAIT_SECS: u64 = 590;

/// File names inside the state directory.
pub const HOOK_SOCKET: &str = "hook.sock";
/// The admin socket (approvals CLI).
pub const ADMIN_SOCKET: &str = "admin.sock";
/// The admin page's token.
pub const ADMIN_TOKEN: &str = "admin.token";
/// Approvals and audit.
pub const DAEMON_DB: &str = "clawgate.db";
/// The vault.
pub const VAULT_DB: &str = "vault.db";
/// The embedded default's vault key file.
pub const VAULT_KEY: &str = "vault.key";
/// Token buckets of the egress proxy.
pub const USAGE_DB: &str = "usage.db";
/// Hashes of the agents' local proxy tokens.
pub const AGENT_TOKENS: &str = "agent-tokens.json";
/// The egress proxy's default reverse listener.
pub const DEFAULT_EGRESS_LISTEN: &str = "127.0.0.1:8787";
/// The egress proxy's default CONNECT listener (the agent's other outbound traffic).
pub const DEFAULT_CONNECT_LISTEN: &str = "127.0.0.1:8788";

/// The configuration file as written (phase one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where state lives; default as for every other command.
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    hook: RawHook,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    approvals: RawApprovals,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    vault: RawVault,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    egress: RawEgress,
    #[serde(default)]
    redact: RawRedact,
    /// Absent: no egress lock is expected (the embedded default, for developer machines).
    egress_lock: Option<RawEgressLock>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    socket: Option<PathBuf>,
    /// Octal string, e.g. "0660".
    socket_mode: Option<String>,
    socket_group: Option<String>,
    /// Users whose processes may connect (peer credentials). Default: this daemon's own user.
    allowed_users: Option<Vec<String>>,
    max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    socket: Option<PathBuf>,
    socket_mode: Option<String>,
    socket_group: Option<String>,
    /// Approval page and metrics; `"off"` disables the listener.
    listen: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    wait_seconds: Option<u64>,
    expiry_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    dir: Option<PathBuf>,
    tier: Option<u8>,
    /// Pinned bundle-signing keys (`docs/bundle-format.md`, "Trust file"): bundles the Hub
    /// pushes are verified against these.
    trust_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    path: Option<PathBuf>,
    key_file: Option<PathBuf>,
    credential: Option<String>,
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    /// `auto` (journald when present, else stderr), `journald` or `stderr`.
    target: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    /// The reverse proxy (`/anthropic/*`, …); `"off"` disables it.
    listen: Option<String>,
    /// The CONNECT forward proxy; `"off"` disables it.
    connect_listen: Option<String>,
    /// Provider route name → upstream base URL.
    #[serde(default)]
    upstreams: BTreeMap<String, String>,
    max_body_bytes: Option<usize>,
    /// Default daily token budget of every agent.
    daily_tokens: Option<u64>,
    /// Per-agent daily token budgets.
    #[serde(default)]
    agent_daily_tokens: BTreeMap<String, u64>,
    /// Default daily cost budget of every agent, in USD.
    daily_usd: Option<f64>,
    /// Per-agent daily cost budgets, in USD.
    #[serde(default)]
    agent_daily_usd: BTreeMap<String, f64>,
    /// Model prices (`"<route>/<model>"` → USD per million tokens of each kind), added to or
    /// replacing the built-in table.
    #[serde(default)]
    prices: BTreeMap<String, PriceUsd>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedact {
    /// `off` (default), `rules` or `rules+entropy`: unknown secrets found in tool results and
    /// LLM requests are captured into the vault (see `crate::capture`).
    capture_unknown: Option<String>,
    /// Most captured secrets in the vault (default 1,000).
    capture_max: Option<usize>,
    /// Tools a captured secret may be resolved into (default `["exec"]`).
    capture_tools: Option<Vec<String>>,
    /// Hosts a captured secret may be sent to (default none: no network use).
    capture_hosts: Option<Vec<String>>,
}

impl RawRedact {
    fn validate(self) -> Result<CaptureSettings> {
        let default = CaptureSettings::default();
        let mode = match self.capture_unknown.as_deref() {
            None => default.mode,
            Some(m) => CaptureMode::parse(m).ok_or_else(|| {
                bad(format!(
                    "redact.capture_unknown `{m}` is not \"off\", \"rules\" or \"rules+entropy\""
                ))
            })?,
        };
        let max = self.capture_max.unwrap_or(default.max);
        if !(1..=100_000).contains(&max) {
            return Err(bad("redact.capture_max must be 1..=100000"));
        }
        let scope = match (self.capture_tools, self.capture_hosts) {
            (None, None) => default.scope,
            (tools, hosts) => {
                let tools = tools.unwrap_or_else(|| default.scope.tools.clone());
                let hosts = hosts.unwrap_or_else(|| default.scope.hosts.clone());
                if let Some(t) = tools
                    .iter()
                    .find(|t| t.starts_with(crate::secrets::RESERVED_TOOL_PREFIX))
                {
                    return Err(bad(format!(
                        "redact.capture_tools: `{t}` is reserved for Clawgate itself"
                    )));
                }
                clawgate_vault::Scope::new(&tools, &hosts)
                    .map_err(|e| bad(format!("redact.capture_tools/capture_hosts: {e}")))?
            }
        };
        Ok(CaptureSettings { mode, max, scope })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgressLock {
    /// The agent's user, as locked by `clawgate provision firewall --agent-user`.
    agent_user: Option<String>,
    /// Block every tool call while the lock is not verified (default true).
    required: Option<bool>,
    /// Seconds between checks (default 2).
    check_seconds: Option<u64>,
    /// How the lock is read: `nft` (the daemon runs nft itself; needs CAP_NET_ADMIN) or
    /// `status-file` (the root status service's verdict). Default `nft`.
    probe: Option<String>,
    /// The status file (probe `status-file`); default /run/clawgate-lock/status.json.
    status_file: Option<PathBuf>,
    /// Oldest status accepted, in seconds (default 10).
    status_max_age_seconds: Option<u64>,
}

/// Default seconds between two checks of the egress lock.
pub const DEFAULT_LOCK_CHECK_SECS: u64 = 2;
/// Where the root status service writes the lock's status by default.
pub const DEFAULT_LOCK_STATUS_FILE: &str = "/run/clawgate-lock/status.json";
/// Default oldest status file accepted, in seconds (the service writes every 2 s).
pub const DEFAULT_LOCK_STATUS_MAX_AGE_SECS: u64 = 10;

/// How `clawgate serve` reads the egress lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockProbeKind {
    /// Runs `nft -j list table` itself (needs `CAP_NET_ADMIN` in the host's network namespace).
    Nft,
    /// Reads the verdict the root service `clawgate-egress-lock-status` writes; a missing,
    /// stale or untrustworthy file reads as the lock lost.
    StatusFile {
        /// The file.
        path: PathBuf,
        /// Oldest verdict accepted.
        max_age: Duration,
    },
}

/// The egress lock `clawgate serve` watches (the nftables table `inet clawgate_egress`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressLockSettings {
    /// The agent's user name as configured.
    pub agent_user: String,
    /// Its uid.
    pub agent_uid: u32,
    /// Tool calls are blocked while the lock is not verified; when false the watcher only
    /// reports (audit, metrics, health).
    pub required: bool,
    /// Time between checks.
    pub check_every: Duration,
    /// How the lock is read.
    pub probe: LockProbeKind,
}

impl RawEgressLock {
    fn validate(self, accounts: &dyn Accounts) -> Result<EgressLockSettings> {
        let agent_user = self.agent_user.ok_or_else(|| {
            bad("egress_lock.agent_user is missing: name the agent's user (the one `clawgate provision firewall --agent-user` locked)")
        })?;
        let agent_uid = accounts
            .uid(&agent_user)
            .ok_or_else(|| bad(format!("egress_lock.agent_user: no user `{agent_user}`")))?;
        if agent_uid == 0 {
            return Err(bad(
                "egress_lock.agent_user is root: the agent must run as its own unprivileged user",
            ));
        }
        if agent_uid == accounts.own_uid() {
            return Err(bad(format!(
                "egress_lock.agent_user `{agent_user}` is the daemon's own user: the lock would cut the proxy off from the providers"
            )));
        }
        let secs = self.check_seconds.unwrap_or(DEFAULT_LOCK_CHECK_SECS);
        if !(1..=60).contains(&secs) {
            return Err(bad("egress_lock.check_seconds must be 1..=60"));
        }
        let probe = match self.probe.as_deref().unwrap_or("nft") {
            "nft" => {
                if self.status_file.is_some() || self.status_max_age_seconds.is_some() {
                    return Err(bad(
                        "egress_lock.status_file and status_max_age_seconds need probe = \"status-file\"",
                    ));
                }
                LockProbeKind::Nft
            }
            "status-file" => {
                let path = self
                    .status_file
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_STATUS_FILE));
                if !path.is_absolute() {
                    return Err(bad("egress_lock.status_file must be an absolute path"));
                }
                let age = self
                    .status_max_age_seconds
                    .unwrap_or(DEFAULT_LOCK_STATUS_MAX_AGE_SECS);
                if !(2..=300).contains(&age) {
                    return Err(bad("egress_lock.status_max_age_seconds must be 2..=300"));
                }
                LockProbeKind::StatusFile {
                    path,
                    max_age: Duration::from_secs(age),
                }
            }
            other => {
                return Err(bad(format!(
                    "egress_lock.probe `{other}` is not \"nft\" or \"status-file\""
                )));
            }
        };
        Ok(EgressLockSettings {
            agent_user,
            agent_uid,
            required: self.required.unwrap_or(true),
            check_every: Duration::from_secs(secs),
            probe,
        })
    }
}

/// The egress proxy's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressSettings {
    /// Where the reverse proxy listens; `None`: not run.
    pub listen: Option<SocketAddr>,
    /// Where the CONNECT proxy listens; `None`: not run.
    pub connect_listen: Option<SocketAddr>,
    /// Upstream base URL overrides.
    pub upstreams: Vec<(Provider, String)>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Daily token and cost budgets.
    pub budgets: Budgets,
    /// Model prices: the built-in table with the operator's entries.
    pub prices: Prices,
    /// Usage database.
    pub usage_db: PathBuf,
    /// Agent token hashes.
    pub tokens_file: PathBuf,
}

impl EgressSettings {
    /// The proxy's configuration (the listen address is ignored when the proxy is off).
    pub fn to_config(&self) -> Result<EgressConfig> {
        let mut c = EgressConfig::default();
        c.max_body = self.max_body_bytes;
        c.budgets = self.budgets.clone();
        c.prices = self.prices.clone();
        if let Some(l) = self.listen {
            c.listen = l;
        }
        for (p, url) in &self.upstreams {
            c.set_upstream(*p, url)
                .map_err(|e| bad(format!("egress.upstreams.{p}: {e}")))?;
        }
        c.validate().map_err(|e| bad(format!("egress: {e}")))?;
        Ok(c)
    }
}

/// A loopback listen address, its default, or `"off"`.
fn loopback_listen(value: Option<&str>, default: &str, key: &str) -> Result<Option<SocketAddr>> {
    match value {
        Some("off") => Ok(None),
        other => {
            let text = other.unwrap_or(default);
            let addr: SocketAddr = text.parse().map_err(|_| {
                bad(format!(
                    "{key} `{text}` is not an address:port (or \"off\")"
                ))
            })?;
            if !addr.ip().is_loopback() {
                return Err(bad(format!(
                    "{key} {addr} must be a loopback address: the proxy holds the real provider keys and the agent's tokens"
                )));
            }
            Ok(Some(addr))
        }
    }
}

impl RawEgress {
    fn validate(self, state_dir: &Path) -> Result<EgressSettings> {
        let listen = loopback_listen(
            self.listen.as_deref(),
            DEFAULT_EGRESS_LISTEN,
            "egress.listen",
        )?;
        let connect_listen = loopback_listen(
            self.connect_listen.as_deref(),
            DEFAULT_CONNECT_LISTEN,
            "egress.connect_listen",
        )?;
        if listen.is_some() && listen == connect_listen {
            return Err(bad("egress.listen and egress.connect_listen must differ"));
        }
        let mut upstreams = Vec::new();
        for (route, url) in self.upstreams {
            let provider = Provider::from_route(&route).ok_or_else(|| {
                bad(format!(
                    "egress.upstreams: `{route}` is not a provider route (anthropic, openai, gemini, openrouter)"
                ))
            })?;
            Upstream::parse(&url).map_err(|e| bad(format!("egress.upstreams.{route}: {e}")))?;
            upstreams.push((provider, url));
        }
        let max_body_bytes = self.max_body_bytes.unwrap_or(8 * 1024 * 1024);
        if !(64 * 1024..=256 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(bad(
                "egress.max_body_bytes must be between 64 KiB and 256 MiB",
            ));
        }
        let mut per_agent_cost_micros = HashMap::new();
        for (agent, usd) in &self.agent_daily_usd {
            let micros = usd_to_micros(*usd, &format!("egress.agent_daily_usd.{agent}"))
                .map_err(|e| bad(egress_reason(e)))?;
            per_agent_cost_micros.insert(agent.clone(), micros);
        }
        let budgets = Budgets {
            default_daily_tokens: self.daily_tokens,
            per_agent: self
                .agent_daily_tokens
                .into_iter()
                .collect::<HashMap<_, _>>(),
            default_daily_cost_micros: self
                .daily_usd
                .map(|usd| usd_to_micros(usd, "egress.daily_usd"))
                .transpose()
                .map_err(|e| bad(egress_reason(e)))?,
            per_agent_cost_micros,
        };
        // A bad price refuses the whole configuration: running without it would mean running
        // a cost budget blind.
        let prices = Prices::builtin()
            .and_then(|p| p.with_overrides(&self.prices))
            .map_err(|e| bad(format!("egress.prices: {}", egress_reason(e))))?;
        let settings = EgressSettings {
            listen,
            connect_listen,
            upstreams,
            max_body_bytes,
            budgets,
            prices,
            usage_db: state_dir.join(USAGE_DB),
            tokens_file: state_dir.join(AGENT_TOKENS),
        };
        settings.to_config()?;
        Ok(settings)
    }
}

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// journald when its socket answers, else stderr.
    Auto,
    /// journald or fail.
    Journald,
    /// stderr.
    Stderr,
}

/// Who may connect to a Unix socket, checked with the peer's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSettings {
    /// Path.
    pub path: PathBuf,
    /// Permission bits.
    pub mode: u32,
    /// Group the socket is given to, with its id.
    pub group: Option<(String, u32)>,
    /// Peer user ids allowed (root is always allowed on the admin socket).
    pub allowed_uids: Vec<u32>,
}

/// How the vault is unlocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultKey {
    /// The embedded default: `vault.key` in the state directory, generated on first start.
    DefaultKeyFile(PathBuf),
    /// A key file given in the configuration.
    KeyFile(PathBuf),
    /// A systemd credential name.
    Credential(String),
    /// A passphrase file.
    PassphraseFile(PathBuf),
}

/// The validated configuration (phase two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// State directory (absolute).
    pub state_dir: PathBuf,
    /// The hook socket OpenClaw's plugin connects to.
    pub hook: SocketSettings,
    /// Largest hook request body.
    pub max_body_bytes: usize,
    /// The admin socket (approvals CLI); the OpenClaw user must not be able to open it.
    pub admin: SocketSettings,
    /// The approval page and metrics listener, if enabled.
    pub admin_listen: Option<SocketAddr>,
    /// Token for the admin listener.
    pub admin_token_file: PathBuf,
    /// How long a call that needs approval is held.
    pub approval_wait: Duration,
    /// How long an approval request (and an allow-for-24h grant) lives.
    pub approval_expiry: Duration,
    /// Policy directory; `None` is the built-in default.
    pub policy_dir: Option<PathBuf>,
    /// Autonomy tier.
    pub tier: Tier,
    /// Trust file of the bundle-signing keys; `None`: pushed bundles are refused.
    pub bundle_trust_file: Option<PathBuf>,
    /// Vault database.
    pub vault_path: PathBuf,
    /// Vault key.
    pub vault_key: VaultKey,
    /// Approvals and audit database.
    pub db_path: PathBuf,
    /// Log destination.
    pub log: LogTarget,
    /// The egress proxy.
    pub egress: EgressSettings,
    /// The egress lock to watch; `None`: none expected.
    pub egress_lock: Option<EgressLockSettings>,
    /// Capturing unknown secrets into the vault (`[redact]`).
    pub capture: CaptureSettings,
}

/// Looks up users and groups; a seam so tests need no real accounts.
pub trait Accounts {
    /// Uid of a user name (or a numeric id given as text).
    fn uid(&self, user: &str) -> Option<u32>;
    /// Gid of a group name (or a numeric id given as text).
    fn gid(&self, group: &str) -> Option<u32>;
    /// This process's uid.
    fn own_uid(&self) -> u32;
}

/// The system's account database.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemAccounts;

impl Accounts for SystemAccounts {
    fn uid(&self, user: &str) -> Option<u32> {
        if let Ok(n) = user.parse::<u32>() {
            return Some(n);
        }
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }
    fn gid(&self, group: &str) -> Option<u32> {
        if let Ok(n) = group.parse::<u32>() {
            return Some(n);
        }
        nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }
    fn own_uid(&self) -> u32 {
        nix::unistd::getuid().as_raw()
    }
}

/// Phase one: parses TOML; unknown keys and wrong types are errors with their location.
pub fn parse(text: &str, origin: &Path) -> Result<RawConfig> {
    toml::from_str(text).map_err(|e| Error::Config(format!("{}: {e}", origin.display())))
}

/// Reads and parses a configuration file.
pub fn read(path: &Path) -> Result<RawConfig> {
    let bytes = clawgate_protocol::io::read_capped(path, MAX_CONFIG)
        .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::Config(format!("{} is not UTF-8", path.display())))?;
    parse(text, path)
}

impl RawConfig {
    /// Phase two: checks meaning and resolves defaults. `default_state_dir` is used when the file
    /// names none (the same precedence as every other command).
    pub fn validate(self, default_state_dir: &Path, accounts: &dyn Accounts) -> Result<Settings> {
        let state_dir = absolute(self.state_dir.as_deref().unwrap_or(default_state_dir))?;
        let in_state = |p: Option<PathBuf>, name: &str| match p {
            Some(p) if p.is_absolute() => p,
            Some(p) => state_dir.join(p),
            None => state_dir.join(name),
        };
        let own = accounts.own_uid();

        let hook_allowed = match &self.hook.allowed_users {
            None => vec![own],
            Some(users) if users.is_empty() => {
                return Err(bad("hook.allowed_users is empty: nobody could connect"));
            }
            Some(users) => users
                .iter()
                .map(|u| {
                    accounts
                        .uid(u)
                        .ok_or_else(|| bad(format!("hook.allowed_users: no user `{u}`")))
                })
                .collect::<Result<_>>()?,
        };
        let hook = SocketSettings {
            path: in_state(self.hook.socket, HOOK_SOCKET),
            mode: mode(self.hook.socket_mode.as_deref(), 0o600, "hook.socket_mode")?,
            group: group(self.hook.socket_group, accounts, "hook.socket_group")?,
            allowed_uids: hook_allowed,
        };
        let admin = SocketSettings {
            path: in_state(self.admin.socket, ADMIN_SOCKET),
            mode: mode(
                self.admin.socket_mode.as_deref(),
                0o600,
                "admin.socket_mode",
            )?,
            group: group(self.admin.socket_group, accounts, "admin.socket_group")?,
            allowed_uids: vec![own, 0],
        };
        if hook.path == admin.path {
            return Err(bad("hook.socket and admin.socket must differ"));
        }
        if admin.mode & 0o007 != 0 {
            return Err(bad(
                "admin.socket_mode gives others access; the agent's user must not reach the admin API",
            ));
        }
        let max_body_bytes = self.hook.max_body_bytes.unwrap_or(4 * 1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(bad("hook.max_body_bytes must be between 1 KiB and 64 MiB"));
        }
        let admin_listen = match self.admin.listen.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 7790))),
            Some("off") => None,
            Some(s) => Some(s.parse().map_err(|_| {
                bad(format!(
                    "admin.listen `{s}` is not an address:port (or \"off\")"
                ))
            })?),
        };
        let wait = self.approvals.wait_seconds.unwrap_or(60);
        if !(1..=MAX_APPROVAL_WAIT_SECS).contains(&wait) {
            return Err(bad(format!(
                "approvals.wait_seconds must be 1..={MAX_APPROVAL_WAIT_SECS} (OpenClaw's hook timeout is at most 600 s)"
            )));
        }
        let expiry = self.approvals.expiry_hours.unwrap_or(24);
        if !(1..=24 * 7).contains(&expiry) {
            return Err(bad("approvals.expiry_hours must be 1..=168"));
        }
        let tier = match self.policy.tier {
            None => Tier::Balanced,
            Some(n) => Tier::from_number(n)
                .ok_or_else(|| bad(format!("policy.tier {n} is not 1, 2 or 3")))?,
        };
        let policy_dir = match self.policy.dir {
            None => None,
            Some(d) => {
                let d = absolute(&d)?;
                if !d.is_dir() {
                    return Err(bad(format!(
                        "policy.dir {} is not a directory",
                        d.display()
                    )));
                }
                Some(d)
            }
        };
        let bundle_trust_file = match self.policy.trust_file {
            None => None,
            Some(f) => {
                let f = absolute(&f)?;
                let text = clawgate_protocol::io::read_capped(&f, MAX_CONFIG)
                    .map_err(|e| bad(format!("policy.trust_file {}: {e}", f.display())))?;
                let text = String::from_utf8(text)
                    .map_err(|_| bad(format!("policy.trust_file {} is not UTF-8", f.display())))?;
                clawgate_policies::bundle::TrustStore::from_toml(&text)
                    .map_err(|e| bad(format!("policy.trust_file {}: {e}", f.display())))?;
                Some(f)
            }
        };
        let v = self.vault;
        let chosen = [
            v.key_file.is_some(),
            v.credential.is_some(),
            v.passphrase_file.is_some(),
        ];
        if chosen.iter().filter(|c| **c).count() > 1 {
            return Err(bad(
                "vault: give at most one of key_file, credential, passphrase_file",
            ));
        }
        let vault_key = if let Some(f) = v.key_file {
            VaultKey::KeyFile(absolute(&f)?)
        } else if let Some(c) = v.credential {
            VaultKey::Credential(c)
        } else if let Some(f) = v.passphrase_file {
            VaultKey::PassphraseFile(absolute(&f)?)
        } else {
            VaultKey::DefaultKeyFile(state_dir.join(VAULT_KEY))
        };
        let log = match self.log.target.as_deref() {
            None | Some("auto") => LogTarget::Auto,
            Some("journald") => LogTarget::Journald,
            Some("stderr") => LogTarget::Stderr,
            Some(other) => {
                return Err(bad(format!(
                    "log.target `{other}` is not auto, journald or stderr"
                )));
            }
        };
        let egress = self.egress.validate(&state_dir)?;
        let egress_lock = self.egress_lock.map(|l| l.validate(accounts)).transpose()?;
        let capture = self.redact.validate()?;
        Ok(Settings {
            capture,
            egress,
            egress_lock,
            vault_path: in_state(v.path, VAULT_DB),
            admin_token_file: in_state(self.admin.token_file, ADMIN_TOKEN),
            db_path: state_dir.join(DAEMON_DB),
            state_dir,
            hook,
            max_body_bytes,
            admin,
            admin_listen,
            approval_wait: Duration::from_secs(wait),
            approval_expiry: Duration::from_secs(expiry * 3600),
            policy_dir,
            tier,
            bundle_trust_file,
            vault_key,
            log,
        })
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

/// The reason in an egress configuration error, without its "invalid configuration" prefix.
fn egress_reason(e: clawgate_egress::Error) -> String {
    match e {
        clawgate_egress::Error::Config(m) => m,
        other => other.to_string(),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| bad(format!("{}: {e}", p.display())))
}

fn mode(text: Option<&str>, default: u32, key: &str) -> Result<u32> {
    let Some(text) = text else {
        return Ok(default);
    };
    let m = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| bad(format!("{key} `{text}` is not an octal mode like \"0660\"")))?;
    if m > 0o777 || m & 0o600 != 0o600 {
        return Err(bad(format!(
            "{key} {m:04o} must be a permission mode that lets the owner read and write"
        )));
    }
    Ok(m)
}

fn group(
    name: Option<String>,
    accounts: &dyn Accounts,
    key: &str,
) -> Result<Option<(String, u32)>> {
    name.map(|g| {
        accounts
            .gid(&g)
            .map(|gid| (g.clone(), gid))
            .ok_or_else(|| bad(format!("{key}: no group `{g}`")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Accounts for Fake {
        fn uid(&self, user: &str) -> Option<u32> {
            match user {
                "openclaw" => Some(1001),
                n => n.parse().ok(),
            }
        }
        fn gid(&self, group: &str) -> Option<u32> {
            (group == "openclaw").then_some(1001)
        }
        fn own_uid(&self) -> u32 {
            999
        }
    }

    fn settings(text: &str) -> Result<Settings> {
        parse(text, Path::new("test.toml"))?.validate(Path::new("/var/lib/clawgate"), &Fake)
    }

    #[test]
    fn the_empty_file_is_the_embedded_default() {
        let s = settings("").unwrap();
        assert_eq!(s.hook.path, Path::new("/var/lib/clawgate/hook.sock"));
        assert_eq!(s.hook.mode, 0o600);
        assert_eq!(s.hook.allowed_uids, vec![999]);
        assert_eq!(s.admin.allowed_uids, vec![999, 0]);
        assert_eq!(s.approval_wait, Duration::from_secs(60));
        assert_eq!(s.approval_expiry, Duration::from_secs(24 * 3600));
        assert_eq!(s.tier, Tier::Balanced);
        assert_eq!(
            s.vault_key,
            VaultKey::DefaultKeyFile("/var/lib/clawgate/vault.key".into())
        );
        assert_eq!(s.admin_listen, Some("127.0.0.1:7790".parse().unwrap()));
        assert_eq!(s.egress.listen, Some("127.0.0.1:8787".parse().unwrap()));
        assert_eq!(
            s.egress.connect_listen,
            Some("127.0.0.1:8788".parse().unwrap())
        );
        assert_eq!(s.egress.usage_db, Path::new("/var/lib/clawgate/usage.db"));
        assert_eq!(s.egress_lock, None, "no lock is expected by default");
        let c = s.egress.to_config().unwrap();
        assert_eq!(
            c.upstream(Provider::Anthropic).authority(),
            "api.anthropic.com"
        );
    }

    #[test]
    fn egress_upstreams_and_budgets() {
        let s = settings(
            "[egress]\nlisten = \"off\"\ndaily_tokens = 1000\n[egress.upstreams]\nopenai = \"http://127.0.0.1:9/v1\"\n[egress.agent_daily_tokens]\nmain = 5\n",
        )
        .unwrap();
        assert_eq!(s.egress.listen, None);
        let c = s.egress.to_config().unwrap();
        assert_eq!(c.upstream(Provider::OpenAi).authority(), "127.0.0.1:9");
        assert_eq!(c.budgets.limit_for("main"), Some(5));
        assert_eq!(c.budgets.limit_for("other"), Some(1000));
    }

    #[test]
    fn egress_cost_budgets_and_prices() {
        let s = settings(
            r#"
            [egress]
            daily_tokens = 1000000
            daily_usd = 5
            [egress.agent_daily_usd]
            main = 12.5
            [egress.prices]
            "openai/my-finetune" = { input = 1.5, output = 6, cache_read = 0.75, cache_write = 1.5 }
            [egress.prices."anthropic/claude-sonnet-4-5"]
            input = 2.0
            output = 10.0
            cache_read = 0.2
            cache_write = 2.5
            "#,
        )
        .unwrap();
        let c = s.egress.to_config().unwrap();
        assert_eq!(c.budgets.cost_limit_for("main"), Some(12_500_000));
        assert_eq!(c.budgets.cost_limit_for("other"), Some(5_000_000));
        assert_eq!(c.budgets.limit_for("other"), Some(1_000_000));
        let ft = c.prices.lookup(Provider::OpenAi, "my-finetune").unwrap();
        assert_eq!((ft.input, ft.output), (1_500_000, 6_000_000));
        let sonnet = c
            .prices
            .lookup(Provider::Anthropic, "claude-sonnet-4-5-20250929")
            .unwrap();
        assert_eq!(sonnet.input, 2_000_000, "the operator's price wins");
        // The built-in table is there without any [egress.prices].
        let plain = settings("").unwrap().egress.to_config().unwrap();
        assert!(plain.prices.lookup(Provider::OpenAi, "gpt-4o").is_some());
        assert_eq!(plain.budgets.cost_limit_for("main"), None);
    }

    #[test]
    fn capture_is_off_unless_asked_and_its_scope_is_narrow_by_default() {
        let off = settings("").unwrap().capture;
        assert_eq!(off.mode, CaptureMode::Off);
        assert_eq!(off.max, crate::capture::DEFAULT_MAX_CAPTURED);
        assert_eq!(
            (off.scope.tools.as_slice(), off.scope.hosts.len()),
            (&["exec".to_owned()][..], 0)
        );
        let on = settings(
            "[redact]\ncapture_unknown = \"rules+entropy\"\ncapture_max = 5\ncapture_hosts = [\"API.GitHub.com\"]\n",
        )
        .unwrap()
        .capture;
        assert_eq!(on.mode, CaptureMode::RulesAndEntropy);
        assert_eq!(on.max, 5);
        assert_eq!(on.scope.tools, ["exec"]);
        assert_eq!(on.scope.hosts, ["api.github.com"]);
    }

    #[test]
    fn the_egress_lock_table() {
        let s = settings("[egress_lock]\nagent_user = \"openclaw\"\n").unwrap();
        assert_eq!(
            s.egress_lock,
            Some(EgressLockSettings {
                agent_user: "openclaw".into(),
                agent_uid: 1001,
                required: true,
                check_every: Duration::from_secs(2),
                probe: LockProbeKind::Nft,
            })
        );
        let s = settings("[egress_lock]\nagent_user = \"openclaw\"\nprobe = \"status-file\"\n")
            .unwrap();
        assert_eq!(
            s.egress_lock.unwrap().probe,
            LockProbeKind::StatusFile {
                path: PathBuf::from(DEFAULT_LOCK_STATUS_FILE),
                max_age: Duration::from_secs(10),
            }
        );
        let s = settings(
            "[egress_lock]\nagent_user = \"openclaw\"\nrequired = false\ncheck_seconds = 5\n",
        )
        .unwrap();
        let lock = s.egress_lock.unwrap();
        assert!(!lock.required);
        assert_eq!(lock.check_every, Duration::from_secs(5));
    }

    #[test]
    fn a_packaged_config() {
        let s = settings(
            r#"
            state_dir = "/var/lib/clawgate"
            [hook]
            socket = "/run/clawgate/hook.sock"
            socket_mode = "0660"
            socket_group = "openclaw"
            allowed_users = ["openclaw"]
            [admin]
            listen = "off"
            [approvals]
            wait_seconds = 120
            [policy]
            tier = 1
            [vault]
            credential = "vault-key"
            [log]
            target = "journald"
            "#,
        )
        .unwrap();
        assert_eq!(s.hook.mode, 0o660);
        assert_eq!(s.hook.group, Some(("openclaw".into(), 1001)));
        assert_eq!(s.hook.allowed_uids, vec![1001]);
        assert_eq!(s.admin_listen, None);
        assert_eq!(s.tier, Tier::Supervised);
        assert_eq!(s.vault_key, VaultKey::Credential("vault-key".into()));
        assert_eq!(s.log, LogTarget::Journald);
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let cases = [
            ("[hook]\nsockett = \"x\"", "unknown field `sockett`"),
            ("bogus = 1", "unknown field `bogus`"),
            ("[approvals]\nwait_seconds = 0", "wait_seconds"),
            ("[approvals]\nwait_seconds = 900", "wait_seconds"),
            ("[approvals]\nwait_seconds = \"60\"", "invalid type"),
            ("[policy]\ntier = 4", "tier 4"),
            ("[hook]\nsocket_mode = \"rw\"", "octal"),
            ("[hook]\nsocket_mode = \"0066\"", "owner read and write"),
            ("[admin]\nsocket_mode = \"0666\"", "admin API"),
            ("[hook]\nsocket_group = \"nosuch\"", "no group `nosuch`"),
            ("[hook]\nallowed_users = [\"nosuch\"]", "no user `nosuch`"),
            ("[hook]\nallowed_users = []", "nobody"),
            ("[admin]\nlisten = \"localhost\"", "address:port"),
            (
                "[vault]\nkey_file = \"/k\"\ncredential = \"c\"",
                "at most one",
            ),
            ("[log]\ntarget = \"syslog\"", "syslog"),
            (
                "[hook]\nsocket = \"a\"\n[admin]\nsocket = \"a\"",
                "must differ",
            ),
            ("[policy]\ndir = \"/nonexistent/policy\"", "not a directory"),
            ("[egress]\nlisten = \"0.0.0.0:8787\"", "loopback"),
            ("[egress]\nconnect_listen = \"10.0.0.1:8788\"", "loopback"),
            (
                "[egress]\nconnect_listen = \"127.0.0.1:8787\"",
                "must differ",
            ),
            ("[egress]\nlisten = \"8787\"", "address:port"),
            ("[egress]\nmax_body_bytes = 10", "max_body_bytes"),
            ("[egress]\nlistn = \"off\"", "unknown field `listn`"),
            (
                "[egress.upstreams]\nmistral = \"https://api.mistral.ai\"",
                "not a provider route",
            ),
            (
                "[egress.upstreams]\nopenai = \"http://example.com\"",
                "loopback host",
            ),
            ("[egress]\ndaily_usd = -1", "egress.daily_usd must be"),
            ("[egress]\ndaily_usd = \"5\"", "invalid type"),
            (
                "[egress.agent_daily_usd]\nmain = nan",
                "egress.agent_daily_usd.main must be",
            ),
            (
                "[egress.prices]\n\"openai/x\" = { input = -1, output = 1, cache_read = 1, cache_write = 1 }",
                "egress.prices: price \"openai/x\": input must be a non-negative",
            ),
            (
                "[egress.prices.\"openai/x\"]\ninput = 1\noutput = 1\ncache_read = 1",
                "missing field `cache_write`",
            ),
            (
                "[egress.prices.\"openai/x\"]\ninput = 1\noutput = 1\ncache_read = 1\ncache_write = 1\ncached = 1",
                "unknown field `cached`",
            ),
            (
                "[egress.prices]\n\"mistral/large\" = { input = 1, output = 1, cache_read = 1, cache_write = 1 }",
                "unknown provider",
            ),
            ("[egress]\nprice = 1", "unknown field `price`"),
            ("[egress_lock]\nrequired = true", "agent_user is missing"),
            ("[egress_lock]\nagent_user = \"nosuch\"", "no user `nosuch`"),
            ("[egress_lock]\nagent_user = \"0\"", "root"),
            ("[egress_lock]\nagent_user = \"999\"", "daemon's own user"),
            (
                "[egress_lock]\nagent_user = \"openclaw\"\nprobe = \"netlink\"",
                "is not \"nft\"",
            ),
            (
                "[egress_lock]\nagent_user = \"openclaw\"\nstatus_file = \"/x\"",
                "need probe",
            ),
            (
                "[egress_lock]\nagent_user = \"openclaw\"\nprobe = \"status-file\"\nstatus_file = \"rel\"",
                "absolute",
            ),
            (
                "[egress_lock]\nagent_user = \"openclaw\"\nprobe = \"status-file\"\nstatus_max_age_seconds = 1",
                "2..=300",
            ),
            (
                "[egress_lock]\nagent_user = \"openclaw\"\ncheck_seconds = 0",
                "check_seconds",
            ),
            (
                "[egress_lock]\nagent_user = \"openclaw\"\ncheck_seconds = 61",
                "check_seconds",
            ),
            (
                "[egress_lock]\nagent_user = \"openclaw\"\nrequierd = true",
                "unknown field `requierd`",
            ),
            ("[redact]\ncapture_unknown = \"all\"", "rules+entropy"),
            ("[redact]\ncapture_unknown = true", "invalid type"),
            ("[redact]\ncapture_max = 0", "capture_max"),
            (
                "[redact]\ncapture_tools = [\"clawgate:egress\"]",
                "reserved",
            ),
            ("[redact]\ncapture_hosts = [\"*.com\"]", "capture_hosts"),
            ("[redact]\ncapture = \"rules\"", "unknown field `capture`"),
        ];
        for (text, want) in cases {
            let err = settings(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
