//! The seams the daemon plugs into: who an agent token belongs to ([`Tokens`]), the real
//! provider keys ([`ProviderKeys`]) and the current redactor ([`RedactorSource`]). Tests use the
//! simple implementations here; the daemon backs them with the vault.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use clawgate_protocol::SecretString;
use clawgate_protocol::secret::constant_time_eq;
use clawgate_redact::{Capture, Redactor};
use sha2::{Digest, Sha256};

use crate::config::Provider;

/// An agent's id: whom a request is attributed to (metering, budgets). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(Arc<str>);

impl AgentId {
    /// An agent id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        AgentId(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Maps a per-agent local token (what the agent holds instead of a provider key) to its agent.
pub trait Tokens: Send + Sync + fmt::Debug + 'static {
    /// The agent `presented` belongs to, or `None`. Must take time independent of how much of
    /// the token matched.
    fn verify(&self, presented: &str) -> Option<AgentId>;
}

/// The SHA-256 of a token: what [`TokenTable`] stores (and what a daemon may persist).
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A [`Tokens`] that keeps only SHA-256 hashes of the tokens and compares every entry in
/// constant time (no early exit, no hash-map probe keyed by the secret).
#[derive(Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], AgentId)>,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTable")
            .field(
                "agents",
                &self.entries.iter().map(|(_, a)| a).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl TokenTable {
    /// An empty table (every token refused).
    pub fn new() -> Self {
        TokenTable::default()
    }

    /// Adds `token` for `agent` (only its hash is kept).
    pub fn insert(&mut self, agent: AgentId, token: &SecretString) {
        self.insert_hash(agent, token_hash(token.expose()));
    }

    /// Adds a token by its SHA-256 (see [`token_hash`]).
    pub fn insert_hash(&mut self, agent: AgentId, hash: [u8; 32]) {
        self.entries.push((hash, agent));
    }

    /// Builder form of [`TokenTable::insert`].
    pub fn with(mut self, agent: &str, token: &SecretString) -> Self {
        self.insert(AgentId::new(agent), token);
        self
    }
}

impl Tokens for TokenTable {
    fn verify(&self, presented: &str) -> Option<AgentId> {
        let h = token_hash(presented);
        let mut found = None;
        for (hash, agent) in &self.entries {
            if constant_time_eq(hash, &h) {
                found = Some(agent.clone());
            }
        }
        found
    }
}

/// The real provider keys. The daemon resolves them from the vault; `None` refuses the request
/// (503, fail closed) with a message naming the provider.
pub trait ProviderKeys: Send + Sync + fmt::Debug + 'static {
    /// The real key for `provider`.
    fn key(&self, provider: Provider) -> Option<SecretString>;
}

/// Fixed keys (tests, or a daemon that caches them).
#[derive(Debug, Default, Clone)]
pub struct StaticKeys(HashMap<Provider, SecretString>);

impl StaticKeys {
    /// No keys.
    pub fn new() -> Self {
        StaticKeys::default()
    }

    /// Sets `provider`'s key.
    pub fn with(mut self, provider: Provider, key: SecretString) -> Self {
        self.0.insert(provider, key);
        self
    }
}

impl ProviderKeys for StaticKeys {
    fn key(&self, provider: Provider) -> Option<SecretString> {
        self.0.get(&provider).cloned()
    }
}

/// The redactor in force. It changes when the vault changes; a request uses the one current
/// when its body is redacted. `None` refuses every request (503): nothing is forwarded
/// unredacted.
pub trait RedactorSource: Send + Sync + fmt::Debug + 'static {
    /// The current redactor.
    fn current(&self) -> Option<Arc<Redactor>>;

    /// Where unknown secrets in `agent`'s requests are captured into the vault, if anywhere
    /// (`clawgate_redact::capture`; the daemon's `[redact] capture_unknown`). Default: nowhere,
    /// they keep their placeholder.
    fn capture(&self, agent: &AgentId) -> Option<Arc<dyn Capture>> {
        let _ = agent;
        None
    }
}

/// A [`RedactorSource`] the daemon swaps when the vault changes.
#[derive(Debug, Default)]
pub struct SharedRedactor(RwLock<Option<Arc<Redactor>>>);

impl SharedRedactor {
    /// Starts with `redactor`.
    pub fn new(redactor: Arc<Redactor>) -> Self {
        SharedRedactor(RwLock::new(Some(redactor)))
    }

    /// Replaces the redactor (requests already past redaction keep the old one).
    pub fn set(&self, redactor: Arc<Redactor>) {
        if let Ok(mut g) = self.0.write() {
            *g = Some(redactor);
        }
    }

    /// Removes the redactor: every request is refused until [`SharedRedactor::set`].
    pub fn clear(&self) {
        if let Ok(mut g) = self.0.write() {
            *g = None;
        }
    }
}

impl RedactorSource for SharedRedactor {
    fn current(&self) -> Option<Arc<Redactor>> {
        // A poisoned lock refuses (fail closed).
        self.0.read().ok().and_then(|g| g.clone())
    }
}

impl RedactorSource for Arc<Redactor> {
    fn current(&self) -> Option<Arc<Redactor>> {
        Some(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_finds_the_agent_and_nothing_else() {
        let t = TokenTable::new()
            .with("alpha", &SecretString::new("cg-alpha-0123456789".into()))
            .with("beta", &SecretString::new("cg-beta-0123456789".into()));
        assert_eq!(t.verify("cg-alpha-0123456789").unwrap().as_str(), "alpha");
        assert_eq!(t.verify("cg-beta-0123456789").unwrap().as_str(), "beta");
        assert!(t.verify("cg-alpha-012345678").is_none());
        assert!(t.verify("").is_none());
        let dbg = format!("{t:?}");
        assert!(dbg.contains("alpha") && !dbg.contains("0123456789"));
    }

    #[test]
    fn shared_redactor_can_be_cleared() {
        let r = Arc::new(Redactor::builder().build().unwrap());
        let s = SharedRedactor::new(r);
        assert!(s.current().is_some());
        s.clear();
        assert!(s.current().is_none());
    }
}
