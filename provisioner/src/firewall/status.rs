//! The egress lock's status file: how `clawgate serve`, which has no `CAP_NET_ADMIN`, learns
//! whether the lock is in force.
//!
//! Reading nftables needs `CAP_NET_ADMIN` in the host's network namespace. Rather than give the
//! daemon that capability (and netlink), a small root service, `clawgate-egress-lock-status`
//! (`clawgate provision lock-status --every 2`), judges the live table with [`super::inspect`]
//! every few seconds and writes the verdict here, root-owned, mode 0644, in a root-owned
//! directory (`/run/clawgate-lock`, 0755): neither the daemon's user nor the agent's can forge
//! or replace it. The daemon's probe ([`read`]) trusts the file only when it is fresh, owned by
//! root, not writable by anyone else, in a directory nobody else can write, and describes the
//! lock its own configuration expects; anything else reads as an error, which the watcher counts
//! as the lock lost (fail closed). A stopped or crashed writer therefore blocks tool calls
//! within `max_age`.
//!
//! ```json
//! {"format":"clawgate-lock-status/1","checked_at":1795000000,"agent_uid":1001,
//!  "proxy":["127.0.0.1:8787","127.0.0.1:8788"],"state":"in_force",
//!  "counters":{"agent_allowed_proxy":12,"agent_rejected_other":0,"agent_rejected_tcp":3},
//!  "reasons":[]}
//! ```

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{LockState, Spec};
use crate::error::{Error, Result};

/// Where the status service writes, and the daemon reads by default.
pub const DEFAULT_PATH: &str = "/run/clawgate-lock/status.json";
/// The `format` field.
pub const FORMAT: &str = "clawgate-lock-status/1";
/// Largest status file read.
const MAX_STATUS: u64 = 64 * 1024;
/// How far in the future a timestamp may be (clock steps between two processes' reads).
const FUTURE_SLACK_SECS: u64 = 5;

/// The file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusFile {
    /// [`FORMAT`].
    pub format: String,
    /// When the table was judged, Unix seconds.
    pub checked_at: u64,
    /// The agent's uid the lock was judged for.
    pub agent_uid: u32,
    /// The proxy listeners it was judged for.
    pub proxy: Vec<String>,
    /// `in_force`, `missing`, `altered` or `unreadable`.
    pub state: String,
    /// Packet counts of the named counters (when in force).
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// What differs (altered) or why it could not be read (unreadable).
    #[serde(default)]
    pub reasons: Vec<String>,
}

impl StatusFile {
    /// The status for `spec` from a reading of the live table taken at `now` (Unix seconds).
    pub fn record(spec: &Spec, reading: &Result<LockState>, now: u64) -> StatusFile {
        let (state, counters, reasons) = match reading {
            Ok(LockState::InForce(c)) => ("in_force", c.clone(), Vec::new()),
            Ok(LockState::Missing) => ("missing", BTreeMap::new(), Vec::new()),
            Ok(LockState::Altered(d)) => ("altered", BTreeMap::new(), d.clone()),
            Err(e) => ("unreadable", BTreeMap::new(), vec![e.to_string()]),
        };
        StatusFile {
            format: FORMAT.to_owned(),
            checked_at: now,
            agent_uid: spec.agent().uid(),
            proxy: spec.proxy().iter().map(ToString::to_string).collect(),
            state: state.to_owned(),
            counters,
            reasons,
        }
    }
}

/// Writes the status atomically (0644; the directory is created 0755).
pub fn write(path: &Path, status: &StatusFile) -> Result<()> {
    let mut text = serde_json::to_string(status)
        .map_err(|e| Error::NftOutput(format!("serialising the lock status: {e}")))?;
    text.push('\n');
    super::write_file(path, &text).map(|_| ())
}

/// Reads the status file and judges it against `spec`, as of `now` (Unix seconds). Every doubt
/// is an error ([`Error::LockStatus`]): missing, stale, from the future, not root's, writable by
/// another user (or in a directory another user can write), malformed, about another lock, or
/// a writer that could not read the table.
pub fn read(path: &Path, spec: &Spec, now: u64, max_age: Duration) -> Result<LockState> {
    let bad = |reason: String| Error::LockStatus {
        path: path.to_owned(),
        reason,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dir_meta = std::fs::metadata(dir).map_err(|e| bad(format!("its directory: {e}")))?;
    if dir_meta.uid() != 0 || dir_meta.mode() & 0o022 != 0 {
        return Err(bad(format!(
            "its directory {} is owned by uid {} with mode {:04o}: only root may write there",
            dir.display(),
            dir_meta.uid(),
            dir_meta.mode() & 0o7777
        )));
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        bad(if e.kind() == std::io::ErrorKind::NotFound {
            "missing: is clawgate-egress-lock-status.service running?".to_owned()
        } else {
            e.to_string()
        })
    })?;
    if !meta.file_type().is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(bad(format!(
            "owned by uid {} with mode {:04o}: only root may write it",
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    let bytes =
        clawgate_protocol::io::read_capped(path, MAX_STATUS).map_err(|e| bad(e.to_string()))?;
    let status: StatusFile =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("malformed: {e}")))?;
    if status.format != FORMAT {
        return Err(bad(format!(
            "format `{}`, expected `{FORMAT}`",
            status.format.escape_debug()
        )));
    }
    if status.checked_at > now.saturating_add(FUTURE_SLACK_SECS) {
        return Err(bad(format!(
            "checked at {} which is {} s in the future: the clock went backwards",
            status.checked_at,
            status.checked_at - now
        )));
    }
    let age = now.saturating_sub(status.checked_at);
    if age > max_age.as_secs() {
        return Err(bad(format!(
            "stale: last check {age} s ago (at most {} s): is clawgate-egress-lock-status.service running?",
            max_age.as_secs()
        )));
    }
    let proxy: Vec<String> = spec.proxy().iter().map(ToString::to_string).collect();
    if status.agent_uid != spec.agent().uid() || status.proxy != proxy {
        return Err(bad(format!(
            "describes the lock for uid {} and proxy [{}], but the configuration expects uid {} and \
             proxy [{}]: restart clawgate-egress-lock-status.service after changing the configuration",
            status.agent_uid,
            status.proxy.join(", "),
            spec.agent().uid(),
            proxy.join(", ")
        )));
    }
    match status.state.as_str() {
        "in_force" => Ok(LockState::InForce(status.counters)),
        "missing" => Ok(LockState::Missing),
        "altered" => Ok(LockState::Altered(status.reasons)),
        "unreadable" => Err(bad(format!(
            "the status service could not read the table: {}",
            status.reasons.join("; ")
        ))),
        other => Err(bad(format!("unknown state `{}`", other.escape_debug()))),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test files are small and our own
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::firewall::Agent;

    fn spec(uid: u32) -> Spec {
        Spec::new(
            Agent::new("agent", uid).unwrap(),
            &["127.0.0.1:8787".parse().unwrap()],
        )
        .unwrap()
    }

    const AGE: Duration = Duration::from_secs(10);

    fn in_force() -> Result<LockState> {
        Ok(LockState::InForce(BTreeMap::from([(
            "agent_allowed_proxy".to_owned(),
            7,
        )])))
    }

    // The trust checks need root-owned files; as another user only the refusals are testable.
    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn fresh_status_for_the_same_lock_is_believed() {
        if !root() {
            eprintln!("skipped: needs root to own the status file");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("status.json");
        let s = spec(1234);
        write(&path, &StatusFile::record(&s, &in_force(), 1000)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        match read(&path, &s, 1005, AGE).unwrap() {
            LockState::InForce(c) => assert_eq!(c["agent_allowed_proxy"], 7),
            other => panic!("{other:?}"),
        }
        write(
            &path,
            &StatusFile::record(&s, &Ok(LockState::Missing), 1000),
        )
        .unwrap();
        assert_eq!(read(&path, &s, 1000, AGE).unwrap(), LockState::Missing);
        let altered = Ok(LockState::Altered(vec!["a rule".into()]));
        write(&path, &StatusFile::record(&s, &altered, 1000)).unwrap();
        assert_eq!(
            read(&path, &s, 1000, AGE).unwrap(),
            LockState::Altered(vec!["a rule".into()])
        );
    }

    #[test]
    fn every_doubt_is_an_error() {
        if !root() {
            eprintln!("skipped: needs root to own the status file");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("status.json");
        let s = spec(1234);
        let err = |now: u64, s: &Spec| read(&path, s, now, AGE).unwrap_err().to_string();
        assert!(err(1000, &s).contains("missing"));
        write(&path, &StatusFile::record(&s, &in_force(), 1000)).unwrap();
        assert!(err(1011, &s).contains("stale"));
        assert!(err(990, &s).contains("future"));
        assert!(err(1000, &spec(999)).contains("expects uid 999"));
        let unreadable = Err(Error::NftMissing);
        write(&path, &StatusFile::record(&s, &unreadable, 1000)).unwrap();
        assert!(err(1000, &s).contains("could not read the table"));
        // Writable by others, owned by another user, in a directory others can write.
        write(&path, &StatusFile::record(&s, &in_force(), 1000)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(err(1000, &s).contains("only root may write it"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        assert!(err(1000, &s).contains("uid 65534"));
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(err(1000, &s).contains("only root may write there"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&path, "{\"format\":").unwrap();
        assert!(err(1000, &s).contains("malformed"));
        assert!(read(&path, &s, 1000, AGE).is_err());
    }
}
