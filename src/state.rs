//! Where Clawgate keeps its state, and how a command unlocks the vault in it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clawgate_protocol::SecretString;
use clawgate_protocol::env::Env;
use clawgate_vault::KeySource;
use zeroize::Zeroizing;

use crate::cli::{KeyArgs, UsageError};

/// File names inside the state directory.
pub(crate) const VAULT_DB: &str = "vault.db";
pub(crate) const VAULT_KEY: &str = "vault.key";
/// Longest passphrase file accepted.
const MAX_PASSPHRASE: u64 = 4096;

/// The state directory: `--state-dir`/`CLAWGATE_STATE_DIR` (already in `flag`), then systemd's
/// `$STATE_DIRECTORY`, then `$XDG_STATE_HOME/clawgate`, then `~/.local/state/clawgate`.
pub(crate) fn state_dir(flag: Option<&Path>, env: &dyn Env) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_owned());
    }
    // systemd may pass several colon-separated directories; ours is the first.
    if let Some(dirs) = env.non_empty("STATE_DIRECTORY")
        && let Some(first) = dirs.to_string_lossy().split(':').next()
    {
        return Ok(PathBuf::from(first));
    }
    if let Some(xdg) = env.non_empty("XDG_STATE_HOME") {
        return Ok(PathBuf::from(xdg).join("clawgate"));
    }
    let home = env.non_empty("HOME").ok_or_else(|| {
        UsageError(
            "cannot choose a state directory: set --state-dir, CLAWGATE_STATE_DIR or HOME".into(),
        )
    })?;
    Ok(PathBuf::from(home).join(".local/state/clawgate"))
}

/// Creates the state directory (mode 0700) if needed and refuses one that others can enter.
pub(crate) fn ensure_state_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "state directory {} has mode {mode:04o}; group and others must have no access (chmod 700)",
            dir.display()
        );
    }
    Ok(())
}

/// The key source chosen by the flags, or the embedded default key file.
pub(crate) fn key_source(args: &KeyArgs, state: &Path, env: &dyn Env) -> anyhow::Result<KeySource> {
    if let Some(file) = &args.passphrase_file {
        return Ok(KeySource::Passphrase(read_passphrase(file)?));
    }
    if let Some(file) = &args.key_file {
        return Ok(KeySource::KeyFile(file.clone()));
    }
    if let Some(name) = &args.credential {
        return Ok(KeySource::credential(env, name)?);
    }
    Ok(KeySource::KeyFile(state.join(VAULT_KEY)))
}

/// True when no flag chose a key, i.e. the embedded default key file is used.
pub(crate) fn is_default_key(args: &KeyArgs) -> bool {
    args.passphrase_file.is_none() && args.key_file.is_none() && args.credential.is_none()
}

/// Reads a passphrase file: one line, trailing newline dropped, never empty.
pub(crate) fn read_passphrase(file: &Path) -> anyhow::Result<SecretString> {
    let bytes = Zeroizing::new(
        clawgate_protocol::io::read_capped(file, MAX_PASSPHRASE)
            .with_context(|| format!("reading passphrase file {}", file.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("passphrase file {} is not UTF-8", file.display()))?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        anyhow::bail!("passphrase file {} is empty", file.display());
    }
    Ok(SecretString::new(line.to_owned()))
}

#[cfg(test)]
mod tests {
    use clawgate_protocol::env::MapEnv;

    use super::*;

    #[test]
    fn state_dir_precedence() {
        let all = MapEnv::from_pairs([
            ("STATE_DIRECTORY", "/var/lib/clawgate:/x"),
            ("XDG_STATE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(
            state_dir(Some(Path::new("/flag")), &all).unwrap(),
            Path::new("/flag")
        );
        assert_eq!(
            state_dir(None, &all).unwrap(),
            Path::new("/var/lib/clawgate")
        );
        let xdg = MapEnv::from_pairs([("XDG_STATE_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(state_dir(None, &xdg).unwrap(), Path::new("/xdg/clawgate"));
        let home = MapEnv::from_pairs([("HOME", "/home/u")]);
        assert_eq!(
            state_dir(None, &home).unwrap(),
            Path::new("/home/u/.local/state/clawgate")
        );
        assert!(state_dir(None, &MapEnv::default()).is_err());
    }
}
