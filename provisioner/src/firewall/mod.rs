//! The egress lock: an nftables table that lets the agent's user reach nothing but Clawgate's
//! proxy listeners on loopback.
//!
//! The ruleset is one table, `inet clawgate_egress` (IPv4 and IPv6), and a file that replaces
//! only that table: it first declares the table empty (so the delete cannot fail), deletes it,
//! then defines it. `nft -f` applies a file as one transaction, so a reload never leaves a moment
//! without the lock, and a file that fails to load leaves the old table untouched (both checked
//! against the kernel here: the table's handle is unchanged after a failing load). It never
//! says `flush ruleset`, which would take every other table on the host with it.
//!
//! ```text
//! chain output   (type filter hook output priority filter; policy accept)
//!     meta skuid <uid> jump agent_out          positive match: only the agent's sockets
//! chain agent_out
//!     replies on loopback to connections others opened to the agent     accept
//!     established traffic to each proxy listener                         accept
//!     new connections to each proxy listener      counter agent_allowed_proxy, accept
//!     (rate-limited kernel log line "clawgate-egress-denied: ")
//!     any other TCP                               counter agent_rejected_tcp, reset
//!     anything else (UDP incl. DNS, ICMP, …)      counter agent_rejected_other, icmpx admin-prohibited
//! ```
//!
//! The uid is resolved when the file is generated (nft would resolve a name at load time
//! anyway): re-generate after re-creating the user. Packets without an owning socket (kernel
//! resets, a listener's SYN-ACK) do not match `meta skuid`, which is why the match is positive.
//! Established traffic is accepted only towards the proxy, and replies only on loopback: a
//! connection the agent opened elsewhere before the lock was (re)loaded dies at its next packet,
//! and a port the agent listens on cannot be used from outside the host to pull data out.
//!
//! The same [`Spec`] renders the file ([`Spec::ruleset`]) and judges the live table
//! ([`Spec::judge`], [`inspect`]), so the daemon's watcher checks exactly what was loaded.

mod model;
mod nft;
pub mod status;
pub mod systemd;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use nft::Nft;

use crate::error::{Error, Result};
use model::{BaseHook, Chain, Rule, Stmt, Table};

/// The table's family.
pub const FAMILY: &str = "inet";
/// The table's name.
pub const TABLE: &str = "clawgate_egress";
/// Where `clawgate provision firewall` writes the ruleset by default (the unit
/// `clawgate-egress-lock.service` loads it).
pub const DEFAULT_PATH: &str = "/etc/clawgate/egress-lock.nft";
/// Counter of new connections from the agent to the proxy listeners.
pub const COUNTER_ALLOWED_PROXY: &str = "agent_allowed_proxy";
/// Counter of the agent's refused TCP connection attempts (answered with a reset).
pub const COUNTER_REJECTED_TCP: &str = "agent_rejected_tcp";
/// Counter of every other refused packet of the agent (UDP including DNS, ICMP, …).
pub const COUNTER_REJECTED_OTHER: &str = "agent_rejected_other";
/// Prefix of the kernel log line for a refused packet (rate-limited).
pub const LOG_PREFIX: &str = "clawgate-egress-denied: ";

const OUTPUT_CHAIN: &str = "output";
const AGENT_CHAIN: &str = "agent_out";

/// The agent's user, resolved to its uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    name: String,
    uid: u32,
}

impl Agent {
    /// Looks the user up by name (or by numeric uid, which must exist too). Refuses root.
    pub fn resolve(user: &str) -> Result<Agent> {
        use nix::unistd::{Uid, User};
        let found = match user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(user),
        };
        let found = found
            .map_err(|e| Error::io(format!("looking up user {user}"), e.into()))?
            .ok_or_else(|| Error::NoSuchUser(user.to_owned()))?;
        Agent::new(&found.name, found.uid.as_raw())
    }

    /// An agent from a name and uid already known (refuses uid 0).
    pub fn new(name: &str, uid: u32) -> Result<Agent> {
        if uid == 0 {
            return Err(Error::RootAgent(name.to_owned()));
        }
        Ok(Agent {
            name: name.to_owned(),
            uid,
        })
    }

    /// User name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Numeric uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

/// What the lock allows: the agent's user may open TCP connections to these loopback listeners
/// (the proxy's reverse and CONNECT ports) and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    agent: Agent,
    proxy: Vec<SocketAddr>,
}

/// The live table compared with the [`Spec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// Present and exactly as generated; packet counts of the named counters.
    InForce(BTreeMap<String, u64>),
    /// The table does not exist (never loaded, deleted, or `nft flush ruleset`).
    Missing,
    /// The table exists but differs from what was generated: what differs.
    Altered(Vec<String>),
}

impl Spec {
    /// The lock for `agent`, allowing `proxy` (loopback listeners; duplicates ignored, order
    /// kept).
    pub fn new(agent: Agent, proxy: &[SocketAddr]) -> Result<Spec> {
        let mut listeners: Vec<SocketAddr> = Vec::new();
        for addr in proxy {
            if !addr.ip().is_loopback() {
                return Err(Error::NotLoopback(*addr));
            }
            if !listeners.contains(addr) {
                listeners.push(*addr);
            }
        }
        Ok(Spec {
            agent,
            proxy: listeners,
        })
    }

    /// The agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The listeners the agent may reach.
    pub fn proxy(&self) -> &[SocketAddr] {
        &self.proxy
    }

    /// The table as it must be in the kernel.
    fn table(&self) -> Table {
        let lo = || Stmt::OifName("lo".into());
        let states = |s: &[&str]| Stmt::CtState(s.iter().map(|s| (*s).to_owned()).collect());
        let mut rules = vec![Rule(vec![
            states(&["established", "related"]),
            Stmt::CtDirection("reply".into()),
            lo(),
            Stmt::Accept,
        ])];
        for addr in &self.proxy {
            rules.push(Rule(vec![
                states(&["established"]),
                lo(),
                Stmt::Daddr(addr.ip()),
                Stmt::TcpDport(addr.port()),
                Stmt::Accept,
            ]));
            rules.push(Rule(vec![
                states(&["new"]),
                lo(),
                Stmt::Daddr(addr.ip()),
                Stmt::TcpDport(addr.port()),
                Stmt::Counter(COUNTER_ALLOWED_PROXY.into()),
                Stmt::Accept,
            ]));
        }
        rules.extend([
            Rule(vec![
                Stmt::Limit {
                    rate: 10,
                    per: "second".into(),
                    burst: 20,
                },
                Stmt::Log {
                    prefix: LOG_PREFIX.into(),
                    level: "info".into(),
                },
            ]),
            Rule(vec![
                Stmt::L4Proto("tcp".into()),
                Stmt::Counter(COUNTER_REJECTED_TCP.into()),
                Stmt::RejectTcpReset,
            ]),
            Rule(vec![
                Stmt::Counter(COUNTER_REJECTED_OTHER.into()),
                Stmt::RejectIcmpx("admin-prohibited".into()),
            ]),
        ]);
        Table {
            flags: None,
            counters: [
                COUNTER_ALLOWED_PROXY,
                COUNTER_REJECTED_TCP,
                COUNTER_REJECTED_OTHER,
            ]
            .into_iter()
            .map(|c| (c.to_owned(), 0))
            .collect(),
            chains: vec![
                Chain {
                    name: OUTPUT_CHAIN.into(),
                    base: Some(BaseHook {
                        kind: "filter".into(),
                        hook: "output".into(),
                        prio: 0,
                        policy: "accept".into(),
                    }),
                    rules: vec![Rule(vec![
                        Stmt::SkUid(self.agent.uid),
                        Stmt::Jump(AGENT_CHAIN.into()),
                    ])],
                },
                Chain {
                    name: AGENT_CHAIN.into(),
                    base: None,
                    rules,
                },
            ],
            others: Vec::new(),
        }
    }

    /// The ruleset file: self-contained and re-loadable (`nft -f FILE` any number of times).
    pub fn ruleset(&self) -> String {
        let who = if is_plain_name(&self.agent.name) {
            format!("{} (uid {})", self.agent.name, self.agent.uid)
        } else {
            format!("uid {}", self.agent.uid)
        };
        let allowed = if self.proxy.is_empty() {
            "no connection at all (the proxy's listeners are off)".to_owned()
        } else {
            let list: Vec<String> = self.proxy.iter().map(ToString::to_string).collect();
            format!("TCP connections only to {}", list.join(" and "))
        };
        format!(
            "#!/usr/sbin/nft -f\n\
             # Clawgate egress lock. Generated by `clawgate provision firewall`; re-run it instead of\n\
             # editing: `clawgate serve` checks that this table is loaded exactly as generated.\n\
             #\n\
             # Agent: {who}, resolved when this file was generated (re-generate if the user is\n\
             # re-created). It may open {allowed};\n\
             # everything else it sends (IPv4 and IPv6, TCP, UDP including DNS, ICMP) is refused\n\
             # and counted. Other users are not affected.\n\
             #\n\
             # Loading replaces only table {FAMILY} {TABLE}, in one transaction; it never flushes\n\
             # the ruleset.\n\
             \n\
             table {FAMILY} {TABLE} {{}}\n\
             delete table {FAMILY} {TABLE}\n\
             {}",
            self.table().render(FAMILY, TABLE)
        )
    }

    /// Judges a `nft -j list table inet clawgate_egress` listing.
    pub fn judge(&self, listing_json: &str) -> Result<LockState> {
        let live = model::parse_listing(listing_json, FAMILY, TABLE)?;
        let differences = self.table().differences(&live);
        if differences.is_empty() {
            Ok(LockState::InForce(live.counters))
        } else {
            Ok(LockState::Altered(differences))
        }
    }
}

/// A user name safe to print in a comment line.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Reads the live table and judges it.
pub fn inspect(nft: &Nft, spec: &Spec) -> Result<LockState> {
    match nft.list_table_json(FAMILY, TABLE)? {
        None => Ok(LockState::Missing),
        Some(json) => spec.judge(&json),
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The table was already exactly as generated: nothing loaded, counters kept.
    AlreadyInForce,
    /// The ruleset was loaded (replacing a missing or different table) and reads back as
    /// generated.
    Loaded,
}

/// Loads the ruleset unless the live table already matches, then reads it back: an apply that
/// does not read back as generated is an error.
pub fn apply(nft: &Nft, spec: &Spec) -> Result<Applied> {
    if let LockState::InForce(_) = inspect(nft, spec)? {
        return Ok(Applied::AlreadyInForce);
    }
    nft.apply(&spec.ruleset())?;
    match inspect(nft, spec)? {
        LockState::InForce(_) => Ok(Applied::Loaded),
        LockState::Missing => Err(Error::NotInForce("the table is missing".into())),
        LockState::Altered(d) => Err(Error::NotInForce(d.join("; "))),
    }
}

/// Writes `text` to `path` atomically (a temporary file in the same directory, fsynced, renamed
/// over, directory fsynced), mode 0644. Creates the directory (0755) if needed. Returns false
/// when the file already held exactly `text` (nothing written).
pub fn write_file(path: &Path, text: &str) -> Result<bool> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if path.is_file() {
        let current = clawgate_protocol::io::read_capped(path, 1024 * 1024)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let mode = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .permissions()
            .mode();
        if current == text.as_bytes() && mode & 0o7777 == 0o644 {
            return Ok(false);
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = temporary_name(path);
    let result = write_new(&tmp, text).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    Ok(true)
}

fn temporary_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

fn write_new(tmp: &Path, text: &str) -> Result<()> {
    let _ = std::fs::remove_file(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    // The umask may have narrowed the mode; the unit's nft runs as root, but the file is meant
    // to be readable (it holds no secret) so an operator can inspect it.
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))
}
