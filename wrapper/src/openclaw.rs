//! `clawgate openclaw configure`: installs Clawgate's plugin entry into OpenClaw's config and
//! routes its model providers through the egress proxy, idempotently, keeping everything else
//! the user wrote, with a backup before any change.
//!
//! Routing a provider sets its `baseUrl` to the proxy's route (`http://127.0.0.1:8787/anthropic`,
//! `…/openai/v1`, `…/gemini/v1beta`, `…/openrouter/v1`) and its `apiKey` to the agent's local
//! token. The built-in ids `anthropic`, `openai`, `google` and `openrouter` are always routed
//! (created with `models: []` when absent, and given their `api` when it is unset, since a provider
//! with a `baseUrl` and no `api` would speak `openai-completions`); a custom provider is routed
//! when its `baseUrl` is a known provider's host or when `--route ID=ROUTE` names it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clawgate_egress::Provider;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// The plugin id (its manifest's `id`).
pub const PLUGIN_ID: &str = "clawgate";
/// Largest OpenClaw config read.
const MAX_CONFIG: u64 = 8 * 1024 * 1024;
/// OpenClaw's ceiling for a plugin hook timeout.
const MAX_HOOK_TIMEOUT_MS: u64 = 600_000;

/// What to install.
#[derive(Debug, Clone)]
pub struct PluginSetup {
    /// Directory holding `openclaw.plugin.json` and `index.js`.
    pub plugin_dir: PathBuf,
    /// The hook socket.
    pub socket: PathBuf,
    /// The daemon's approval wait; the plugin's deadline and OpenClaw's hook timeout exceed it.
    pub approval_wait: Duration,
    /// Model provider routing through the egress proxy; `None` when the proxy is off.
    pub proxy: Option<ProxySetup>,
}

/// Routing OpenClaw's model providers through the egress proxy.
#[derive(Debug, Clone)]
pub struct ProxySetup {
    /// The proxy's base URL, e.g. `http://127.0.0.1:8787`.
    pub base: String,
    /// The agent whose token the providers carry.
    pub agent: String,
    /// The agent token file (`agent-tokens.json`).
    pub tokens_file: PathBuf,
    /// Custom provider ids routed explicitly (`--route ID=ROUTE`).
    pub routes: Vec<(String, Provider)>,
}

/// OpenClaw's built-in provider ids, their route and the `api` they speak.
const BUILTIN_PROVIDERS: [(&str, Provider, &str); 4] = [
    ("anthropic", Provider::Anthropic, "anthropic-messages"),
    ("openai", Provider::OpenAi, "openai-responses"),
    ("google", Provider::Gemini, "google-generative-ai"),
    ("openrouter", Provider::OpenRouter, "openai-completions"),
];

/// The proxy URL OpenClaw's `baseUrl` gets for a route (OpenClaw appends `/chat/completions`,
/// `/responses`, `/v1/messages` or `/models/…` itself).
fn route_url(base: &str, provider: Provider) -> String {
    let base = base.trim_end_matches('/');
    let suffix = match provider {
        Provider::Anthropic => "",
        Provider::Gemini => "/v1beta",
        _ => "/v1",
    };
    format!("{base}/{}{suffix}", provider.route())
}

/// The route of a custom provider whose `baseUrl` is a real provider's API host.
fn route_of_base_url(url: &str) -> Option<Provider> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest
        .split(['/', ':', '?'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    Provider::ALL.into_iter().find(|p| {
        let real = p.default_upstream();
        let real_host = real
            .split_once("://")
            .map_or(real, |(_, r)| r)
            .split('/')
            .next()
            .unwrap_or("");
        host == real_host
    })
}

impl PluginSetup {
    fn deadlines(&self) -> (u64, u64) {
        let wait = u64::try_from(self.approval_wait.as_millis()).unwrap_or(u64::MAX);
        let plugin = wait.saturating_add(5_000).min(MAX_HOOK_TIMEOUT_MS - 5_000);
        let host = plugin.saturating_add(5_000).min(MAX_HOOK_TIMEOUT_MS);
        (plugin, host)
    }
}

/// The routes `apply` gives the config's providers: `(id, route, api to set when unset)`.
fn provider_routes(
    doc: &Value,
    proxy: &ProxySetup,
) -> Vec<(String, Provider, Option<&'static str>)> {
    let mut out: Vec<(String, Provider, Option<&'static str>)> = BUILTIN_PROVIDERS
        .iter()
        .map(|(id, p, api)| ((*id).to_owned(), *p, Some(*api)))
        .collect();
    if let Some(providers) = doc.pointer("/models/providers").and_then(Value::as_object) {
        for (id, entry) in providers {
            if out.iter().any(|(known, ..)| known == id) {
                continue;
            }
            if let Some(p) = entry
                .get("baseUrl")
                .and_then(Value::as_str)
                .and_then(route_of_base_url)
            {
                out.push((id.clone(), p, None));
            }
        }
    }
    for (id, p) in &proxy.routes {
        out.retain(|(known, ..)| known != id);
        out.push((id.clone(), *p, None));
    }
    out
}

/// A token already in the config that is still the agent's current one.
fn current_token(doc: &Value, proxy: &ProxySetup) -> Result<Option<String>> {
    let Some(providers) = doc.pointer("/models/providers").and_then(Value::as_object) else {
        return Ok(None);
    };
    for entry in providers.values() {
        if let Some(key) = entry.get("apiKey").and_then(Value::as_str)
            && key.starts_with(crate::tokens::TOKEN_PREFIX)
            && crate::tokens::is_current(&proxy.tokens_file, &proxy.agent, key)?
        {
            return Ok(Some(key.to_owned()));
        }
    }
    Ok(None)
}

fn route_providers(
    doc: &mut Map<String, Value>,
    proxy: &ProxySetup,
    routes: &[(String, Provider, Option<&'static str>)],
    token: &str,
    changes: &mut Vec<String>,
) -> Result<()> {
    let models = object_at(doc, "models", changes)?;
    if !models.contains_key("mode") {
        models.insert("mode".into(), Value::String("merge".into()));
    }
    let providers = object_at(models, "providers", changes)?;
    for (id, provider, api) in routes {
        let url = route_url(&proxy.base, *provider);
        let entry = providers
            .entry(id.clone())
            .or_insert_with(|| json!({ "models": [] }));
        let entry = entry.as_object_mut().ok_or_else(|| {
            Error::Config(format!(
                "models.providers.{id} in the OpenClaw config is not an object"
            ))
        })?;
        if entry.get("baseUrl").and_then(Value::as_str) != Some(url.as_str()) {
            entry.insert("baseUrl".into(), Value::String(url.clone()));
            changes.push(format!("models.providers.{id}.baseUrl = {url}"));
        }
        if entry.get("apiKey").and_then(Value::as_str) != Some(token) {
            entry.insert("apiKey".into(), Value::String(token.to_owned()));
            changes.push(format!(
                "models.providers.{id}.apiKey = agent {}'s local proxy token",
                proxy.agent
            ));
        }
        if let Some(api) = api
            && !entry.contains_key("api")
        {
            entry.insert("api".into(), Value::String((*api).to_owned()));
            changes.push(format!("models.providers.{id}.api = {api}"));
        }
    }
    Ok(())
}

/// Providers that will not go through the proxy after `apply` (their traffic is for the egress
/// lock to block): one line each.
pub fn unrouted_providers(doc: &Value, setup: &PluginSetup) -> Vec<String> {
    let Some(proxy) = &setup.proxy else {
        return Vec::new();
    };
    let base = proxy.base.trim_end_matches('/');
    doc.pointer("/models/providers")
        .and_then(Value::as_object)
        .map(|providers| {
            providers
                .iter()
                .filter_map(|(id, e)| {
                    let url = e.get("baseUrl").and_then(Value::as_str)?;
                    (!url.starts_with(base)).then(|| {
                        format!(
                            "models.providers.{id} ({url}) does not go through Clawgate's proxy; route it with --route {id}=openai|anthropic|gemini|openrouter if it speaks one of those APIs"
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Applies the setup to a parsed config; returns what changed (empty: already configured).
/// Mints the agent's proxy token when the config holds no current one.
pub fn apply(doc: &mut Value, setup: &PluginSetup) -> Result<Vec<String>> {
    let routing = match &setup.proxy {
        Some(proxy) => {
            let routes = provider_routes(doc, proxy);
            let token = match current_token(doc, proxy)? {
                Some(t) => t,
                None => crate::tokens::mint(&proxy.tokens_file, &proxy.agent)?
                    .expose()
                    .to_owned(),
            };
            Some((proxy, routes, token))
        }
        None => None,
    };
    let root = doc
        .as_object_mut()
        .ok_or_else(|| Error::Config("the OpenClaw config is not a JSON object".into()))?;
    let mut changes = Vec::new();
    let plugins = object_at(root, "plugins", &mut changes)?;
    if plugins.get("enabled") != Some(&Value::Bool(true)) {
        if plugins.contains_key("enabled") {
            changes.push("plugins.enabled was false; set to true (Clawgate is a plugin)".into());
        }
        plugins.insert("enabled".into(), Value::Bool(true));
    }
    let dir = setup.plugin_dir.display().to_string();
    let load = object_at(plugins, "load", &mut changes)?;
    let paths = array_at(load, "paths")?;
    if !paths.iter().any(|p| p.as_str() == Some(dir.as_str())) {
        paths.push(Value::String(dir.clone()));
        changes.push(format!("plugins.load.paths += {dir}"));
    }
    if let Some(allow) = plugins.get_mut("allow").and_then(Value::as_array_mut)
        && !allow.iter().any(|v| v.as_str() == Some(PLUGIN_ID))
    {
        allow.push(Value::String(PLUGIN_ID.into()));
        changes.push(format!("plugins.allow += {PLUGIN_ID}"));
    }
    if let Some(deny) = plugins.get_mut("deny").and_then(Value::as_array_mut) {
        let before = deny.len();
        deny.retain(|v| v.as_str() != Some(PLUGIN_ID));
        if deny.len() != before {
            changes.push(format!("plugins.deny -= {PLUGIN_ID}"));
        }
    }
    let (plugin_deadline, host_timeout) = setup.deadlines();
    let entries = object_at(plugins, "entries", &mut changes)?;
    let mut entry = entries.get(PLUGIN_ID).cloned().unwrap_or_else(|| json!({}));
    let wanted = json!({
        "enabled": true,
        "config": {
            "socketPath": setup.socket.display().to_string(),
            "decisionDeadlineMs": plugin_deadline,
        },
        "hooks": {
            "allowConversationAccess": true,
            "timeouts": { "before_tool_call": host_timeout },
        },
    });
    merge(&mut entry, &wanted);
    if entries.get(PLUGIN_ID) != Some(&entry) {
        entries.insert(PLUGIN_ID.into(), entry);
        changes.push(format!(
            "plugins.entries.{PLUGIN_ID} set (socket {}, plugin deadline {plugin_deadline} ms, \
             before_tool_call timeout {host_timeout} ms, conversation access for llm_output)",
            setup.socket.display()
        ));
    }
    if let Some((proxy, routes, token)) = routing {
        route_providers(root, proxy, &routes, &token, &mut changes)?;
    }
    Ok(changes)
}

/// Deep-merges `wanted` into `have`: wanted values win, other keys the user set stay.
fn merge(have: &mut Value, wanted: &Value) {
    match (have, wanted) {
        (Value::Object(h), Value::Object(w)) => {
            for (k, v) in w {
                match h.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        h.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (have, wanted) => *have = wanted.clone(),
    }
}

fn object_at<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    changes: &mut Vec<String>,
) -> Result<&'a mut Map<String, Value>> {
    if !parent.contains_key(key) {
        parent.insert(key.into(), json!({}));
        changes.push(format!("created {key}"));
    }
    parent
        .get_mut(key)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::Config(format!("`{key}` in the OpenClaw config is not an object")))
}

fn array_at<'a>(parent: &'a mut Map<String, Value>, key: &str) -> Result<&'a mut Vec<Value>> {
    parent.entry(key).or_insert_with(|| json!([]));
    parent
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::Config(format!("`{key}` in the OpenClaw config is not an array")))
}

/// What `configure_file` did.
#[derive(Debug)]
pub struct Configured {
    /// One line per change (empty: the config was already right).
    pub changes: Vec<String>,
    /// The backup of the previous file, when it was changed.
    pub backup: Option<PathBuf>,
    /// Providers left outside the proxy (see [`unrouted_providers`]).
    pub unrouted: Vec<String>,
}

/// Reads, changes, backs up and atomically rewrites the config file.
pub fn configure_file(path: &Path, setup: &PluginSetup) -> Result<Configured> {
    let (original, mut doc) = if path.exists() {
        let bytes = clawgate_protocol::io::read_capped(path, MAX_CONFIG)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Config(format!(
                "{} is not plain JSON ({e}); OpenClaw also accepts JSON5, which this command does not \
                 rewrite (it would lose comments): convert it or add the entry by hand (see the plugin README)",
                path.display()
            ))
        })?;
        (Some(bytes), doc)
    } else {
        (None, json!({}))
    };
    let changes = apply(&mut doc, setup)?;
    let unrouted = unrouted_providers(&doc, setup);
    if changes.is_empty() {
        return Ok(Configured {
            changes,
            backup: None,
            unrouted,
        });
    }
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o777);
    let backup = match &original {
        Some(bytes) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let backup = path.with_file_name(format!(
                "{}.clawgate-backup-{stamp}",
                path.file_name()
                    .map_or("openclaw.json".into(), |n| n.to_string_lossy())
            ));
            write_new(&backup, bytes, mode)?;
            Some(backup)
        }
        None => None,
    };
    let mut text = serde_json::to_string_pretty(&doc)
        .map_err(|e| Error::Config(format!("serialising the config: {e}")))?;
    text.push('\n');
    let tmp = path.with_file_name(format!(
        ".{}.clawgate-tmp-{}",
        path.file_name()
            .map_or("openclaw.json".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, text.as_bytes(), mode)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("replacing {}", path.display()), e))?;
    Ok(Configured {
        changes,
        backup,
        unrouted,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> PluginSetup {
        PluginSetup {
            plugin_dir: "/usr/share/clawgate/openclaw-plugin".into(),
            socket: "/run/clawgate/hook.sock".into(),
            approval_wait: Duration::from_secs(60),
            proxy: None,
        }
    }

    fn proxied(dir: &Path) -> PluginSetup {
        PluginSetup {
            proxy: Some(ProxySetup {
                base: "http://127.0.0.1:8787".into(),
                agent: "main".into(),
                tokens_file: dir.join("agent-tokens.json"),
                routes: vec![("fake".into(), Provider::OpenAi)],
            }),
            ..setup()
        }
    }

    #[test]
    fn providers_are_routed_through_the_proxy_with_a_kept_token() {
        let dir = tempfile::tempdir().unwrap();
        let s = proxied(dir.path());
        let mut doc = json!({"models": {"providers": {
            "anthropic": {"baseUrl": "https://api.anthropic.com", "apiKey": "sk-ant-real", "models": [{"id": "x"}]},
            "compat": {"baseUrl": "https://api.openai.com/v1", "apiKey": "sk-real", "api": "openai-completions"},
            "fake": {"baseUrl": "http://127.0.0.1:9/v1", "apiKey": "x"},
            "groq": {"baseUrl": "https://api.groq.com/openai/v1", "apiKey": "gsk"}
        }}});
        let changes = apply(&mut doc, &s).unwrap();
        assert!(!changes.is_empty());
        let p = &doc["models"]["providers"];
        assert_eq!(p["anthropic"]["baseUrl"], "http://127.0.0.1:8787/anthropic");
        assert_eq!(p["anthropic"]["api"], "anthropic-messages");
        assert_eq!(p["anthropic"]["models"], json!([{"id": "x"}]));
        assert_eq!(p["openai"]["baseUrl"], "http://127.0.0.1:8787/openai/v1");
        assert_eq!(p["openai"]["models"], json!([]));
        assert_eq!(
            p["google"]["baseUrl"],
            "http://127.0.0.1:8787/gemini/v1beta"
        );
        assert_eq!(
            p["openrouter"]["baseUrl"],
            "http://127.0.0.1:8787/openrouter/v1"
        );
        assert_eq!(p["compat"]["baseUrl"], "http://127.0.0.1:8787/openai/v1");
        assert_eq!(p["compat"]["api"], "openai-completions");
        assert_eq!(p["fake"]["baseUrl"], "http://127.0.0.1:8787/openai/v1");
        assert!(
            p["fake"].get("api").is_none(),
            "a custom provider keeps its own api"
        );
        assert_eq!(p["groq"]["baseUrl"], "https://api.groq.com/openai/v1");
        let token = p["anthropic"]["apiKey"].as_str().unwrap().to_owned();
        assert!(token.starts_with("cgt_"));
        for id in ["openai", "google", "openrouter", "compat", "fake"] {
            assert_eq!(p[id]["apiKey"], token.as_str(), "{id}");
        }
        assert!(
            crate::tokens::is_current(&dir.path().join("agent-tokens.json"), "main", &token)
                .unwrap()
        );
        let unrouted = unrouted_providers(&doc, &s);
        assert_eq!(unrouted.len(), 1, "{unrouted:?}");
        assert!(unrouted[0].contains("groq"));
        let again = doc.clone();
        assert!(
            apply(&mut doc, &s).unwrap().is_empty(),
            "the second run changes nothing"
        );
        assert_eq!(doc, again);
        // A token minted elsewhere since (the old one revoked) is replaced on the next run.
        crate::tokens::mint(&dir.path().join("agent-tokens.json"), "main").unwrap();
        assert!(!apply(&mut doc, &s).unwrap().is_empty());
        assert_ne!(
            doc["models"]["providers"]["openai"]["apiKey"],
            token.as_str()
        );
    }

    #[test]
    fn configure_is_idempotent_and_keeps_the_rest() {
        let mut doc = json!({
            "gateway": {"mode": "local"},
            "plugins": {"allow": ["other"], "deny": ["clawgate"], "load": {"paths": ["/x"]},
                        "entries": {"other": {"enabled": true},
                                    "clawgate": {"config": {"extra": 1}, "hooks": {"timeoutMs": 1}}}}
        });
        let changes = apply(&mut doc, &setup()).unwrap();
        assert!(!changes.is_empty());
        assert_eq!(doc["gateway"]["mode"], "local");
        assert_eq!(
            doc["plugins"]["load"]["paths"],
            json!(["/x", "/usr/share/clawgate/openclaw-plugin"])
        );
        assert_eq!(doc["plugins"]["allow"], json!(["other", "clawgate"]));
        assert_eq!(doc["plugins"]["deny"], json!([]));
        assert_eq!(doc["plugins"]["entries"]["other"], json!({"enabled": true}));
        let entry = &doc["plugins"]["entries"]["clawgate"];
        assert_eq!(entry["config"]["extra"], 1);
        assert_eq!(entry["config"]["socketPath"], "/run/clawgate/hook.sock");
        assert_eq!(entry["config"]["decisionDeadlineMs"], 65_000);
        assert_eq!(entry["hooks"]["timeouts"]["before_tool_call"], 70_000);
        assert_eq!(entry["hooks"]["allowConversationAccess"], true);
        let again = doc.clone();
        assert!(apply(&mut doc, &setup()).unwrap().is_empty());
        assert_eq!(doc, again);
    }

    #[test]
    fn the_timeouts_stay_under_openclaws_ceiling() {
        let mut s = setup();
        s.approval_wait = Duration::from_secs(590);
        let (plugin, host) = s.deadlines();
        assert!(
            plugin < host && host <= MAX_HOOK_TIMEOUT_MS,
            "{plugin} {host}"
        );
    }

    #[test]
    fn the_file_is_backed_up_and_rewritten_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openclaw.json");
        std::fs::write(&path, "{\"agents\": {\"defaults\": {}}}").unwrap();
        let done = configure_file(&path, &setup()).unwrap();
        assert!(!done.changes.is_empty());
        let backup = done.backup.unwrap();
        assert_eq!(
            String::from_utf8(clawgate_protocol::io::read_capped(&backup, 1 << 20).unwrap())
                .unwrap(),
            "{\"agents\": {\"defaults\": {}}}"
        );
        let done = configure_file(&path, &setup()).unwrap();
        assert!(done.changes.is_empty() && done.backup.is_none());
        std::fs::write(&path, "{ // json5\n}").unwrap();
        let err = configure_file(&path, &setup()).unwrap_err().to_string();
        assert!(err.contains("JSON5"), "{err}");
    }
}
