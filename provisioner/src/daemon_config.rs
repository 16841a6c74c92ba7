//! Edits of the daemon's configuration (`/etc/clawgate/clawgate.toml`) that provisioning makes:
//! the agent's user into `hook.allowed_users`, and the `[egress_lock]` table. The file is a
//! conffile an admin may have edited: the edits keep every comment, key and order (toml_edit),
//! change only what they name, and return `None` when the file already says it. The caller
//! validates the new text as the daemon would before [`write_preserving`] puts it in place.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::error::{Error, Result};

fn parse(path: &Path, text: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| Error::Config {
        path: path.to_owned(),
        reason: format!("not valid TOML: {e}"),
    })
}

fn table<'a>(path: &Path, doc: &'a mut DocumentMut, name: &str) -> Result<&'a mut Table> {
    let item = doc
        .as_table_mut()
        .entry(name)
        .or_insert_with(|| Item::Table(Table::new()));
    item.as_table_mut().ok_or_else(|| Error::Config {
        path: path.to_owned(),
        reason: format!("`{name}` is not a table"),
    })
}

/// Adds `user` to `hook.allowed_users` (created as `[user]` when absent). `None`: already there.
pub fn allow_hook_user(path: &Path, text: &str, user: &str) -> Result<Option<String>> {
    let mut doc = parse(path, text)?;
    let hook = table(path, &mut doc, "hook")?;
    match hook.get_mut("allowed_users") {
        None => {
            let mut users = Array::new();
            users.push(user);
            hook.insert("allowed_users", toml_edit::value(users));
        }
        Some(item) => {
            let users = item.as_array_mut().ok_or_else(|| Error::Config {
                path: path.to_owned(),
                reason: "hook.allowed_users is not a list of user names".into(),
            })?;
            if users.iter().any(|v| v.as_str() == Some(user)) {
                return Ok(None);
            }
            users.push(user);
        }
    }
    Ok(Some(doc.to_string()))
}

/// Sets `[egress_lock] agent_user = user` and `probe = probe`. A different `agent_user` already
/// configured is an error (the lock and the watcher would disagree about whom they guard); a
/// different `probe` is replaced. `None`: already so.
pub fn set_egress_lock(path: &Path, text: &str, user: &str, probe: &str) -> Result<Option<String>> {
    let mut doc = parse(path, text)?;
    let lock = table(path, &mut doc, "egress_lock")?;
    let mut changed = false;
    match lock.get("agent_user").map(|i| i.as_str()) {
        None => {
            lock.insert("agent_user", toml_edit::value(user));
            changed = true;
        }
        Some(Some(current)) if current == user => {}
        Some(current) => {
            return Err(Error::Config {
                path: path.to_owned(),
                reason: format!(
                    "egress_lock.agent_user is {}, not `{user}`: fix the file or the provisioning \
                     request (one agent user per host)",
                    current.map_or_else(|| "not a string".to_owned(), |c| format!("`{c}`"))
                ),
            });
        }
    }
    if lock.get("probe").and_then(Item::as_str) != Some(probe) {
        lock.insert("probe", Item::Value(Value::from(probe)));
        changed = true;
    }
    Ok(changed.then(|| doc.to_string()))
}

/// Replaces `path` with `text` atomically, keeping the file's owner, group and mode (the
/// packaged configuration is root:clawgate 0640: the daemon reads it and cannot change it).
pub fn write_preserving(path: &Path, text: &str) -> Result<()> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mode = meta.permissions().mode() & 0o7777;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".clawgate-tmp.{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if meta.uid() != nix::unistd::geteuid().as_raw()
            || meta.gid() != nix::unistd::getegid().as_raw()
        {
            std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("replacing {}", path.display()), e));
    }
    clawgate_protocol::io::sync_parent_dir(path)
        .map_err(|e| Error::io(format!("syncing the directory of {}", path.display()), e))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test files are small and our own
mod tests {
    use super::*;

    const PACKAGED: &str = "# comment kept\nstate_dir = \"/var/lib/clawgate\"\n\n[hook]\n# the socket\nsocket = \"/run/clawgate/hook.sock\"\n\n[egress]\nlisten = \"127.0.0.1:8787\"\n";

    #[test]
    fn hook_user_is_added_once_keeping_everything_else() {
        let p = Path::new("c.toml");
        let once = allow_hook_user(p, PACKAGED, "openclaw").unwrap().unwrap();
        assert!(
            once.contains("# comment kept") && once.contains("# the socket"),
            "{once}"
        );
        assert!(once.contains("allowed_users = [\"openclaw\"]"), "{once}");
        assert_eq!(allow_hook_user(p, &once, "openclaw").unwrap(), None);
        let two = allow_hook_user(p, &once, "other").unwrap().unwrap();
        assert!(
            two.contains("allowed_users = [\"openclaw\", \"other\"]"),
            "{two}"
        );
        let e = allow_hook_user(p, "[hook]\nallowed_users = \"x\"\n", "a").unwrap_err();
        assert!(e.to_string().contains("not a list"), "{e}");
        assert!(allow_hook_user(p, "[hook\n", "a").is_err());
        assert!(allow_hook_user(p, "hook = 1\n", "a").is_err());
    }

    #[test]
    fn egress_lock_is_set_and_a_conflict_refused() {
        let p = Path::new("c.toml");
        let once = set_egress_lock(p, PACKAGED, "openclaw", "status-file")
            .unwrap()
            .unwrap();
        assert!(
            once.contains("[egress_lock]\nagent_user = \"openclaw\"\nprobe = \"status-file\""),
            "{once}"
        );
        assert_eq!(
            set_egress_lock(p, &once, "openclaw", "status-file").unwrap(),
            None
        );
        let e = set_egress_lock(p, &once, "mallory", "status-file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`openclaw`, not `mallory`"), "{e}");
        let nft = "[egress_lock]\nagent_user = \"openclaw\"\nprobe = \"nft\"\n";
        let switched = set_egress_lock(p, nft, "openclaw", "status-file")
            .unwrap()
            .unwrap();
        assert!(
            switched.contains("probe = \"status-file\"") && !switched.contains("\"nft\""),
            "{switched}"
        );
    }

    #[test]
    fn write_preserving_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_preserving(&path, "a = 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 2\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
