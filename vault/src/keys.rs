//! Where the master key comes from: a passphrase stretched with Argon2id, or 32 random bytes in a
//! key file or systemd credential (`LoadCredentialEncrypted=` puts it in
//! `$CREDENTIALS_DIRECTORY/<name>` on a non-swappable ramfs, mode 0400).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use clawgate_protocol::SecretString;
use clawgate_protocol::env::Env;
use clawgate_protocol::io::read_capped;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{fill_random, hkdf};
use crate::error::{Error, Result};
use crate::hardening::{KEY_LEN, KeyBytes};

/// Argon2id cost parameters. Stored in the vault header, so they can be raised by `rekey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// RFC 9106 §4 "second recommended option": 64 MiB, t=3, p=4.
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

impl KdfParams {
    /// The OWASP minimum (19 MiB, t=2, p=1): the floor this vault accepts.
    pub const MINIMUM: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// Refuses parameters below [`KdfParams::MINIMUM`] or absurdly high ones.
    pub fn validate(&self) -> Result<()> {
        let min = Self::MINIMUM;
        if self.memory_kib < min.memory_kib || self.iterations < min.iterations {
            return Err(Error::InvalidKdf(format!(
                "below the minimum of {} MiB and {} iterations",
                min.memory_kib / 1024,
                min.iterations
            )));
        }
        if self.memory_kib > 4 * 1024 * 1024
            || self.iterations > 64
            || !(1..=16).contains(&self.parallelism)
        {
            return Err(Error::InvalidKdf(
                "memory ≤ 4 GiB, iterations ≤ 64, parallelism 1–16".into(),
            ));
        }
        Ok(())
    }

    fn argon2(&self) -> Result<Argon2<'static>> {
        let params = Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|e| Error::InvalidKdf(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// A way to unlock the vault.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A passphrase, stretched with Argon2id using the parameters in the vault header.
    Passphrase(SecretString),
    /// A file holding 32 random bytes (raw, or as 64 hex digits): a key file in the state
    /// directory or a systemd credential.
    KeyFile(PathBuf),
}

impl KeySource {
    /// The systemd credential `name` from `$CREDENTIALS_DIRECTORY`.
    pub fn credential(env: &dyn Env, name: &str) -> Result<Self> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::KeyFile {
                path: name.into(),
                reason: "not a valid credential name".into(),
            });
        }
        let dir = env.non_empty("CREDENTIALS_DIRECTORY").ok_or_else(|| Error::KeyFile {
            path: name.into(),
            reason: "CREDENTIALS_DIRECTORY is not set (is the unit missing LoadCredentialEncrypted=?)".into(),
        })?;
        Ok(Self::KeyFile(PathBuf::from(dir).join(name)))
    }

    pub(crate) fn kind(&self) -> KekKind {
        match self {
            Self::Passphrase(_) => KekKind::Argon2id,
            Self::KeyFile(_) => KekKind::Raw,
        }
    }
}

/// How the vault's master key (the key-encryption key, KEK) is derived. Stored in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KekKind {
    Argon2id,
    Raw,
}

impl KekKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Argon2id => "argon2id",
            Self::Raw => "raw",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "argon2id" => Some(Self::Argon2id),
            "raw" => Some(Self::Raw),
            _ => None,
        }
    }
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Argon2id => "passphrase",
            Self::Raw => "key file",
        }
    }
}

/// Derives the KEK from `source`, using the header's salt (and KDF parameters for passphrases).
pub(crate) fn derive_kek(source: &KeySource, salt: &[u8], params: &KdfParams) -> Result<KeyBytes> {
    match source {
        KeySource::Passphrase(pass) => {
            if pass.is_empty() {
                return Err(Error::InvalidKdf("empty passphrase".into()));
            }
            let mut out = [0u8; KEY_LEN];
            params
                .argon2()?
                .hash_password_into(pass.expose().as_bytes(), salt, &mut out)
                .map_err(|e| Error::InvalidKdf(e.to_string()))?;
            Ok(KeyBytes::from_array(&mut out))
        }
        KeySource::KeyFile(path) => {
            let raw = read_key_file(path)?;
            hkdf(raw.as_slice(), salt, b"clawgate-vault/v1/kek-from-raw")
        }
    }
}

/// Reads a key file: exactly 32 bytes, or 64 hex digits with an optional trailing newline.
/// Refuses files that group or others can read or write.
pub fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let err = |reason: String| Error::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "mode {mode:04o} lets group or others access it; run `chmod 600` on it"
        )));
    }
    let bytes = Zeroizing::new(read_capped(path, 130).map_err(|e| err(e.to_string()))?);
    if bytes.len() == KEY_LEN {
        return Ok(bytes);
    }
    let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if text.len() == 2 * KEY_LEN {
        let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
        if hex::decode_to_slice(text, &mut key).is_ok() {
            return Ok(key);
        }
    }
    Err(err(format!(
        "must hold exactly {KEY_LEN} bytes or {} hex digits",
        2 * KEY_LEN
    )))
}

/// Creates a new key file of 32 random bytes, mode 0600. Refuses to overwrite an existing file.
pub fn generate_key_file(path: &Path) -> Result<()> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(key.as_mut())?;
    let context = || format!("creating key file {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(context(), e))?;
    file.write_all(key.as_ref())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(context(), e))?;
    crate::fsutil::sync_parent_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_formats_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        generate_key_file(&raw).unwrap();
        assert_eq!(read_key_file(&raw).unwrap().len(), 32);
        assert!(generate_key_file(&raw).is_err(), "never overwrites");

        let hexfile = dir.path().join("hex");
        std::fs::write(&hexfile, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&hexfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&hexfile).unwrap().as_slice(), &[0xab; 32]);

        std::fs::set_permissions(&hexfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_key_file(&hexfile).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");

        let short = dir.path().join("short");
        std::fs::write(&short, b"too short").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(
            read_key_file(&short)
                .unwrap_err()
                .to_string()
                .contains("exactly 32 bytes")
        );
    }

    #[test]
    fn credential_path_comes_from_env() {
        let env = clawgate_protocol::env::MapEnv::from_pairs([(
            "CREDENTIALS_DIRECTORY",
            "/run/credentials/x",
        )]);
        match KeySource::credential(&env, "vault-master-key").unwrap() {
            KeySource::KeyFile(p) => {
                assert_eq!(p, Path::new("/run/credentials/x/vault-master-key"))
            }
            KeySource::Passphrase(_) => panic!("wrong kind"),
        }
        assert!(KeySource::credential(&clawgate_protocol::env::MapEnv::default(), "k").is_err());
        assert!(KeySource::credential(&env, "../etc/shadow").is_err());
    }

    #[test]
    fn kdf_floor() {
        assert!(KdfParams::default().validate().is_ok());
        assert!(KdfParams::MINIMUM.validate().is_ok());
        assert!(
            KdfParams {
                memory_kib: 1024,
                iterations: 3,
                parallelism: 1
            }
            .validate()
            .is_err()
        );
    }
}
