//! The egress proxy inside `clawgate serve`: its seams backed by the daemon's state.
//!
//! * agent tokens: [`crate::tokens::TokenFileWatcher`] over `agent-tokens.json`;
//! * provider keys: the vault, secret `provider.<route>` (or the conventional environment name
//!   an `.env` import leaves, e.g. `ANTHROPIC_API_KEY`), resolved as tool `clawgate:egress` for the
//!   upstream's host, so the secret's scope decides where the key may go. Resolved once per vault
//!   generation (each resolution is logged by the vault; a per-request log would drown it);
//! * the redactor: the engine's, rebuilt when the vault changes, so the hook server and the proxy
//!   give a secret the same placeholder; with `[redact] capture_unknown`, unknown secrets in an
//!   agent's requests are captured for that agent ([`crate::capture`]);
//! * usage: `usage.db` in the state directory;
//! * the CONNECT listener ([`build_connect`]): the same tokens, the policy's `[egress]` host
//!   rules, bypass attempts and refusals audited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clawgate_egress::connect::{ConnectAudit, ConnectConfig, ConnectProxy};
use clawgate_egress::{
    AgentId, Egress, EgressConfig, Provider, ProviderKeys, RedactorSource, UsageStore,
};
use clawgate_protocol::SecretString;
use clawgate_protocol::secret_ref::{SecretName, SecretRef};
use clawgate_redact::Redactor;
use clawgate_vault::ResolveContext;
use serde_json::json;

use crate::config::EgressSettings;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::tokens::TokenFileWatcher;

/// The tool name the proxy resolves provider keys as (reserved: no tool call may claim it).
pub const EGRESS_TOOL: &str = "clawgate:egress";

/// Vault secret names holding `provider`'s key, most specific first.
pub fn key_names(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Anthropic => &["provider.anthropic", "ANTHROPIC_API_KEY"],
        Provider::OpenAi => &["provider.openai", "OPENAI_API_KEY"],
        Provider::Gemini => &["provider.gemini", "GEMINI_API_KEY", "GOOGLE_API_KEY"],
        Provider::OpenRouter => &["provider.openrouter", "OPENROUTER_API_KEY"],
        _ => &[],
    }
}

/// Builds the proxy from the daemon's settings and engine.
pub fn build(settings: &EgressSettings, engine: Arc<Engine>) -> Result<Egress> {
    let config = settings.to_config()?;
    let usage = UsageStore::open(&settings.usage_db)
        .map_err(|e| Error::Config(format!("usage database: {e}")))?;
    let keys = VaultKeys::new(engine.clone(), &config);
    Egress::builder(config)
        .tokens(Arc::new(TokenFileWatcher::new(
            settings.tokens_file.clone(),
        )))
        .provider_keys(Arc::new(keys))
        .redactor(Arc::new(EngineRedactor(engine.clone())))
        .usage_store(usage)
        .metrics(engine.egress_metrics.clone())
        .build()
        .map_err(|e| Error::Config(format!("egress: {e}")))
}

/// Builds the CONNECT listener: the same agent tokens, the policy's `[egress]` host rules
/// (swapped on reload through the engine), bypass attempts and refusals in the audit log.
pub fn build_connect(
    settings: &EgressSettings,
    engine: Arc<Engine>,
) -> Result<Option<ConnectProxy>> {
    let Some(listen) = settings.connect_listen else {
        return Ok(None);
    };
    let config = ConnectConfig {
        listen,
        reverse_proxy_base: settings.listen.map_or_else(
            || "the egress proxy's reverse routes".to_owned(),
            |a| format!("http://{a}"),
        ),
        ..ConnectConfig::default()
    };
    ConnectProxy::builder(config)
        .tokens(Arc::new(TokenFileWatcher::new(
            settings.tokens_file.clone(),
        )))
        .policy(engine.connect_policy.clone())
        .audit(Arc::new(EngineAudit(engine.clone())))
        .metrics(engine.connect_metrics.clone())
        .build()
        .map(Some)
        .map_err(|e| Error::Config(format!("egress CONNECT: {e}")))
}

/// CONNECT events worth keeping, in the hash-chained audit log.
#[derive(Debug)]
struct EngineAudit(Arc<Engine>);

impl EngineAudit {
    fn record(&self, kind: &str, body: &serde_json::Value) {
        if let Err(e) = self.0.store().audit(kind, body) {
            tracing::error!(error = %e, kind, "Audit record not written.");
        }
    }
}

impl ConnectAudit for EngineAudit {
    fn bypass_attempt(&self, agent: Option<&AgentId>, host: &str, port: u16) {
        tracing::warn!(agent = ?agent, host, port, "CONNECT to an LLM provider refused: a redaction bypass attempt.");
        self.record(
            "egress.bypass_attempt",
            &json!({ "agent": agent.map(AgentId::as_str), "host": host, "port": port }),
        );
    }

    fn refused(&self, agent: &AgentId, host: &str, port: u16, outcome: &'static str, detail: &str) {
        self.record(
            "egress.connect_refused",
            &json!({ "agent": agent.as_str(), "host": host, "port": port, "outcome": outcome, "detail": detail }),
        );
    }
}

/// The engine's redactor, for the proxy.
#[derive(Debug)]
struct EngineRedactor(Arc<Engine>);

impl RedactorSource for EngineRedactor {
    fn current(&self) -> Option<Arc<Redactor>> {
        match self.0.redactor() {
            Ok(r) => Some(r),
            Err(e) => {
                // None refuses the request (503): nothing leaves unredacted.
                tracing::error!(error = %e, "No redactor for the egress proxy.");
                None
            }
        }
    }

    fn capture(&self, agent: &AgentId) -> Option<Arc<dyn clawgate_redact::Capture>> {
        let capture = self.0.capture_for(agent.as_str(), "egress")?;
        Some(Arc::new(capture))
    }
}

/// Provider keys from the vault, cached per vault generation (misses too).
#[derive(Debug)]
struct VaultKeys {
    engine: Arc<Engine>,
    hosts: HashMap<Provider, String>,
    cache: Mutex<KeyCache>,
}

#[derive(Debug, Default)]
struct KeyCache {
    generation: Option<i64>,
    keys: HashMap<Provider, Option<SecretString>>,
}

impl VaultKeys {
    fn new(engine: Arc<Engine>, config: &EgressConfig) -> Self {
        let hosts = Provider::ALL
            .into_iter()
            .map(|p| (p, host_of(config.upstream(p).authority()).to_owned()))
            .collect();
        VaultKeys {
            engine,
            hosts,
            cache: Mutex::new(KeyCache::default()),
        }
    }

    fn resolve(&self, provider: Provider) -> Option<SecretString> {
        let vault = self.engine.vault()?;
        let records = match vault.list() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "The vault failed listing secrets.");
                return None;
            }
        };
        let Some(name) = key_names(provider)
            .iter()
            .find(|n| records.iter().any(|r| r.name == **n))
        else {
            tracing::warn!(%provider, wanted = ?key_names(provider), "No provider key in the vault.");
            return None;
        };
        let name = SecretName::new(name).ok()?;
        let hosts = [self.hosts.get(&provider).cloned().unwrap_or_default()];
        let ctx = ResolveContext {
            tool: EGRESS_TOOL,
            hosts: &hosts,
        };
        match vault.resolve(&SecretRef { name: name.clone() }, &ctx) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(%provider, secret = %name, error = %e, "Provider key refused by the vault.");
                None
            }
        }
    }
}

impl ProviderKeys for VaultKeys {
    fn key(&self, provider: Provider) -> Option<SecretString> {
        let generation = match self.engine.vault()?.generation() {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "The vault failed.");
                return None;
            }
        };
        // A poisoned lock refuses (fail closed).
        let mut cache = self.cache.lock().ok()?;
        if cache.generation != Some(generation) {
            cache.keys.clear();
            cache.generation = Some(generation);
        }
        if let Some(k) = cache.keys.get(&provider) {
            return k.clone();
        }
        let k = self.resolve(provider);
        cache.keys.insert(provider, k.clone());
        k
    }
}

/// The host of `host[:port]` or `[v6]:port`.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_of("api.openai.com"), "api.openai.com");
        assert_eq!(host_of("127.0.0.1:9000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:80"), "::1");
    }

    #[test]
    fn every_provider_has_key_names() {
        for p in Provider::ALL {
            assert!(key_names(p)[0].starts_with("provider."));
        }
    }
}
