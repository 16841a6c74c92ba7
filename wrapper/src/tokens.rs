//! Agents' local proxy tokens: what an agent holds instead of a provider key, and how the egress
//! proxy knows whom a request is from (usage and budgets are per agent).
//!
//! Only SHA-256 hashes are stored, in `agent-tokens.json` (mode 0600) in the state directory:
//!
//! ```json
//! {"version": 1, "agents": {"main": {"sha256": "<64 hex>", "created": 1764000000}}}
//! ```
//!
//! A token is shown once, when minted (`clawgate egress token AGENT`, or by
//! `clawgate openclaw configure`, which writes it into OpenClaw's provider config). Minting again
//! replaces the agent's token: the old one stops working. The running daemon notices the file
//! changing on the next request (one `stat` per request), so no restart is needed; a file that is
//! missing or unreadable refuses every token (fail closed).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use clawgate_egress::{AgentId, TokenTable, Tokens, token_hash};
use clawgate_protocol::SecretString;
use clawgate_protocol::secret::constant_time_eq;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Prefix of every minted token (recognisable in a config file, never a provider's format).
pub const TOKEN_PREFIX: &str = "cgt_";
/// Largest token file read.
const MAX_FILE: u64 = 1024 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    version: u32,
    agents: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    sha256: String,
    created: i64,
}

/// Checks an agent id: 1-64 characters of `A-Z a-z 0-9 _ . -` (it becomes a label and a
/// usage-table key).
pub fn check_agent_id(agent: &str) -> Result<()> {
    let ok = !agent.is_empty()
        && agent.len() <= 64
        && agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "`{agent}` is not an agent id (1-64 characters of A-Z a-z 0-9 _ . -)"
        )))
    }
}

fn read(path: &Path) -> Result<TokenFile> {
    let bytes = match clawgate_protocol::io::read_capped(path, MAX_FILE) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TokenFile {
                version: 1,
                agents: BTreeMap::new(),
            });
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let file: TokenFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    if file.version != 1 {
        return Err(Error::Config(format!(
            "{} has format version {}, this clawgate reads 1",
            path.display(),
            file.version
        )));
    }
    Ok(file)
}

fn write(path: &Path, file: &TokenFile) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(file)
        .map_err(|e| Error::Config(format!("encoding {}: {e}", path.display())))?;
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("replacing {}", path.display()), e))
}

/// Mints a new token for `agent`, replacing any previous one, and returns it (the only time it
/// exists outside the agent's config).
pub fn mint(path: &Path, agent: &str) -> Result<SecretString> {
    check_agent_id(agent)?;
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(raw.as_mut())
        .map_err(|e| Error::io("random token", std::io::Error::other(e.to_string())))?;
    let token = SecretString::new(format!("{TOKEN_PREFIX}{}", hex::encode(raw.as_ref())));
    let mut file = read(path)?;
    file.agents.insert(
        agent.to_owned(),
        Entry {
            sha256: hex::encode(token_hash(token.expose())),
            created: clawgate_egress::store::unix_now(),
        },
    );
    write(path, &file)?;
    Ok(token)
}

/// Whether `token` is `agent`'s current token (so a re-run of `openclaw configure` keeps it).
pub fn is_current(path: &Path, agent: &str, token: &str) -> Result<bool> {
    let file = read(path)?;
    Ok(file.agents.get(agent).is_some_and(|e| {
        hex::decode(&e.sha256).is_ok_and(|h| constant_time_eq(&h, &token_hash(token)))
    }))
}

/// The agents that have a token.
pub fn agents(path: &Path) -> Result<Vec<String>> {
    Ok(read(path)?.agents.into_keys().collect())
}

fn table(file: &TokenFile) -> Result<TokenTable> {
    let mut t = TokenTable::new();
    for (agent, e) in &file.agents {
        check_agent_id(agent)?;
        let hash: [u8; 32] = hex::decode(&e.sha256)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| Error::Config(format!("token hash of agent {agent} is not 64 hex")))?;
        t.insert_hash(AgentId::new(agent.as_str()), hash);
    }
    Ok(t)
}

/// What identifies one version of the file.
type Stamp = (u64, i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
}

/// The [`Tokens`] the daemon gives the proxy: the token file, re-read whenever it changes.
#[derive(Debug)]
pub struct TokenFileWatcher {
    path: PathBuf,
    state: RwLock<(Option<Stamp>, Arc<TokenTable>)>,
}

impl TokenFileWatcher {
    /// Watches `path` (which need not exist yet: until it does, every token is refused).
    pub fn new(path: PathBuf) -> Self {
        TokenFileWatcher {
            path,
            state: RwLock::new((None, Arc::new(TokenTable::new()))),
        }
    }

    fn current(&self) -> Option<Arc<TokenTable>> {
        let now = stamp(&self.path);
        if let Ok(g) = self.state.read()
            && g.0 == now
            && now.is_some()
        {
            return Some(g.1.clone());
        }
        let fresh = match now.map(|_| read(&self.path).and_then(|f| table(&f))) {
            Some(Ok(t)) => Arc::new(t),
            Some(Err(e)) => {
                tracing::error!(error = %e, "Agent token file unreadable; refusing every token until it is fixed.");
                Arc::new(TokenTable::new())
            }
            None => Arc::new(TokenTable::new()),
        };
        if let Ok(mut g) = self.state.write() {
            *g = (now, fresh.clone());
        }
        Some(fresh)
    }
}

impl Tokens for TokenFileWatcher {
    fn verify(&self, presented: &str) -> Option<AgentId> {
        // A poisoned lock refuses (fail closed).
        self.current()?.verify(presented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_replace_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-tokens.json");
        let w = TokenFileWatcher::new(path.clone());
        assert!(w.verify("cgt_nothing").is_none());
        let a1 = mint(&path, "main").unwrap();
        let b = mint(&path, "helper").unwrap();
        assert_eq!(w.verify(a1.expose()).unwrap().as_str(), "main");
        assert_eq!(w.verify(b.expose()).unwrap().as_str(), "helper");
        assert!(is_current(&path, "main", a1.expose()).unwrap());
        assert!(!is_current(&path, "helper", a1.expose()).unwrap());
        let a2 = mint(&path, "main").unwrap();
        assert!(
            w.verify(a1.expose()).is_none(),
            "a replaced token stops working"
        );
        assert_eq!(w.verify(a2.expose()).unwrap().as_str(), "main");
        let text =
            String::from_utf8(clawgate_protocol::io::read_capped(&path, 1 << 20).unwrap()).unwrap();
        assert!(!text.contains(a2.expose()) && !text.contains(&a2.expose()[4..]));
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(agents(&path).unwrap(), ["helper", "main"]);
    }

    #[test]
    fn a_damaged_or_missing_file_refuses_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-tokens.json");
        let t = mint(&path, "main").unwrap();
        let w = TokenFileWatcher::new(path.clone());
        assert!(w.verify(t.expose()).is_some());
        std::fs::write(&path, "{not json").unwrap();
        assert!(w.verify(t.expose()).is_none());
        std::fs::remove_file(&path).unwrap();
        assert!(w.verify(t.expose()).is_none());
        assert!(mint(&path, "bad agent").is_err());
        assert!(mint(&path, "").is_err());
    }
}
