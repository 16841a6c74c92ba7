//! `clawgate openclaw configure`: installs Clawgate's plugin entry into OpenClaw's config,
//! idempotently, keeping everything else the user wrote, with a backup before any change.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

impl PluginSetup {
    fn deadlines(&self) -> (u64, u64) {
        let wait = u64::try_from(self.approval_wait.as_millis()).unwrap_or(u64::MAX);
        let plugin = wait.saturating_add(5_000).min(MAX_HOOK_TIMEOUT_MS - 5_000);
        let host = plugin.saturating_add(5_000).min(MAX_HOOK_TIMEOUT_MS);
        (plugin, host)
    }
}

/// Applies the setup to a parsed config; returns what changed (empty: already configured).
pub fn apply(doc: &mut Value, setup: &PluginSetup) -> Result<Vec<String>> {
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

/// Reads, changes, backs up and atomically rewrites the config file. Returns the changes and
/// the backup path (none when nothing changed).
pub fn configure_file(path: &Path, setup: &PluginSetup) -> Result<(Vec<String>, Option<PathBuf>)> {
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
    if changes.is_empty() {
        return Ok((changes, None));
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
    Ok((changes, backup))
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
        }
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
        let (changes, backup) = configure_file(&path, &setup()).unwrap();
        assert!(!changes.is_empty());
        let backup = backup.unwrap();
        assert_eq!(
            String::from_utf8(clawgate_protocol::io::read_capped(&backup, 1 << 20).unwrap())
                .unwrap(),
            "{\"agents\": {\"defaults\": {}}}"
        );
        let (changes, backup) = configure_file(&path, &setup()).unwrap();
        assert!(changes.is_empty() && backup.is_none());
        std::fs::write(&path, "{ // json5\n}").unwrap();
        let err = configure_file(&path, &setup()).unwrap_err().to_string();
        assert!(err.contains("JSON5"), "{err}");
    }
}
