//! The appliance's Hub identity, `hub-identity.json` in the state directory (mode 0600): Hub
//! URL, tenant and appliance ids, the bearer credential, the trusted keyset (signing keys, TLS
//! pins, version). Written only whole, atomically (temporary file, fsync, rename, fsync of the
//! directory), so a crash leaves the old file or the new one, never a mix.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use clawgate_protocol::SecretString;
use serde::{Deserialize, Serialize};

use crate::client::{HubClient, Timeouts};
use crate::decision::Me;
use crate::error::{Error, Result};
use crate::protocol::{SignedKeyset, SigningKey, WireSecret};
use crate::signing::{Keyset, KeysetRejection, apply_keyset, valid_id};

/// File name in the state directory.
pub const IDENTITY_FILE: &str = "hub-identity.json";
/// Format tag of the file.
pub const IDENTITY_FORMAT: &str = "clawgate-hub-identity/1";
/// Largest identity file read.
const MAX_IDENTITY_BYTES: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    format: String,
    hub: String,
    tenant_id: String,
    appliance_id: String,
    credential: WireSecret,
    keyset_version: u64,
    signing_keys: Vec<SigningKey>,
    tls_spki_sha256: Vec<String>,
    heartbeat_seconds: u32,
    enrolled_at: i64,
}

/// This appliance's enrollment. `Debug` never shows the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Hub base URL.
    pub hub: String,
    /// Tenant.
    pub tenant_id: String,
    /// This appliance.
    pub appliance_id: String,
    credential: SecretString,
    keyset: Keyset,
    /// Heartbeat interval from enrollment.
    pub heartbeat_seconds: u32,
    /// When enrolled, Unix seconds.
    pub enrolled_at: i64,
}

impl Identity {
    /// Builds an identity, checking the ids' grammar and that the credential has the protocol's
    /// form.
    pub fn new(
        hub: String,
        tenant_id: String,
        appliance_id: String,
        credential: SecretString,
        keyset: Keyset,
        heartbeat_seconds: u32,
        enrolled_at: i64,
    ) -> Result<Identity> {
        for (what, id) in [("tenant id", &tenant_id), ("appliance id", &appliance_id)] {
            if !valid_id(id) {
                return Err(Error::Invalid(format!(
                    "{what} `{}` is not [A-Za-z0-9._:-]{{1,64}}",
                    id.escape_debug()
                )));
            }
        }
        check_credential(&credential)?;
        Ok(Identity {
            hub,
            tenant_id,
            appliance_id,
            credential,
            keyset,
            heartbeat_seconds,
            enrolled_at,
        })
    }

    /// `<state_dir>/hub-identity.json`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(IDENTITY_FILE)
    }

    /// The bearer credential.
    pub fn credential(&self) -> &SecretString {
        &self.credential
    }

    /// The trusted keyset.
    pub fn keyset(&self) -> &Keyset {
        &self.keyset
    }

    /// Tenant and appliance, for the decision and command checks.
    pub fn me(&self) -> Me<'_> {
        Me {
            tenant_id: &self.tenant_id,
            appliance_id: &self.appliance_id,
        }
    }

    /// A client for this identity's Hub, pins and credential.
    pub fn client(&self, timeouts: Timeouts) -> Result<HubClient> {
        HubClient::new(
            &self.hub,
            self.keyset.tls_pins().to_vec(),
            Some(self.credential.clone()),
            timeouts,
        )
    }

    /// Loads the identity from `state_dir`; `None` if not enrolled. Refused: a file group or
    /// other may access, a symlink, a malformed or inconsistent file.
    pub fn load(state_dir: &Path) -> Result<Option<Identity>> {
        let path = Self::path(state_dir);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        check_private_file(&path, &meta)?;
        let bytes = clawgate_protocol::io::read_capped(&path, MAX_IDENTITY_BYTES)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let file: IdentityFile = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Invalid(format!("{} is not a Hub identity: {e}", path.display()))
        })?;
        if file.format != IDENTITY_FORMAT {
            return Err(Error::Invalid(format!(
                "{} has format `{}`, not {IDENTITY_FORMAT}",
                path.display(),
                file.format.escape_debug()
            )));
        }
        let keyset = Keyset::new(
            file.keyset_version,
            &file.signing_keys,
            &file.tls_spki_sha256,
        )?;
        Identity::new(
            file.hub,
            file.tenant_id,
            file.appliance_id,
            file.credential.secret().clone(),
            keyset,
            file.heartbeat_seconds,
            file.enrolled_at,
        )
        .map(Some)
    }

    /// Writes the identity to `state_dir` atomically, mode 0600.
    pub fn store(&self, state_dir: &Path) -> Result<()> {
        let file = IdentityFile {
            format: IDENTITY_FORMAT.into(),
            hub: self.hub.clone(),
            tenant_id: self.tenant_id.clone(),
            appliance_id: self.appliance_id.clone(),
            credential: WireSecret::from(self.credential.clone()),
            keyset_version: self.keyset.version(),
            signing_keys: self.keyset.signing_keys(),
            tls_spki_sha256: self.keyset.tls_pins_hex(),
            heartbeat_seconds: self.heartbeat_seconds,
            enrolled_at: self.enrolled_at,
        };
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(&file)
                .map_err(|e| Error::Invalid(format!("identity does not serialise: {e}")))?,
        );
        write_atomic(&Self::path(state_dir), &bytes)
    }

    /// This identity with another credential (not yet stored).
    pub fn with_credential(&self, credential: SecretString) -> Result<Identity> {
        check_credential(&credential)?;
        Ok(Identity {
            credential,
            ..self.clone()
        })
    }

    /// Checks a keyset statement against the keyset in force; on success returns this identity
    /// with the new keyset (not yet stored: store it, then use it).
    pub fn with_keyset(
        &self,
        statement: &SignedKeyset,
    ) -> std::result::Result<Identity, KeysetRejection> {
        let keyset = apply_keyset(&self.keyset, statement)?;
        Ok(Identity {
            keyset,
            ..self.clone()
        })
    }
}

/// `cga_` + 43 base64url characters.
fn check_credential(credential: &SecretString) -> Result<()> {
    let c = credential.expose();
    let ok = c.len() == 47
        && c.starts_with("cga_")
        && c[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        // Never echo it: say what is wrong with its shape only.
        Err(Error::Invalid(format!(
            "the Hub credential is not cga_ followed by 43 base64url characters ({} bytes)",
            c.len()
        )))
    }
}

/// Rotates the credential: asks the Hub for a new one, stores the identity with it (atomic),
/// and only then makes the client use it. If storing fails the client keeps the old
/// credential, which the Hub keeps valid until the new one is first used, so the appliance is
/// never locked out.
pub async fn rotate_credential(
    client: &HubClient,
    identity: &mut Identity,
    state_dir: &Path,
) -> Result<()> {
    let answer = client.rotate_credential().await?;
    let rotated = identity.with_credential(answer.credential.secret().clone())?;
    rotated.store(state_dir)?;
    client.set_credential(rotated.credential.clone())?;
    *identity = rotated;
    Ok(())
}

/// Refuses a symlink, a non-file, or a file whose mode gives group or other any access.
pub(crate) fn check_private_file(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if !meta.file_type().is_file() {
        return Err(Error::Invalid(format!(
            "{} is not a regular file (symlinks are refused)",
            path.display()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureFile {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Writes `contents` to `path` atomically, mode 0600 (see `clawgate_protocol::io::write_atomic`).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    clawgate_protocol::io::write_atomic(path, contents)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// fsyncs the directory holding `path`, so a create, rename or unlink survives power loss.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<()> {
    clawgate_protocol::io::sync_parent_dir(path)
        .map_err(|e| Error::io(format!("syncing the directory of {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::signing::tests::vector_keyset;

    fn identity() -> Identity {
        Identity::new(
            "https://hub.example.com/".into(),
            "tenant-example".into(),
            "appl-0001".into(),
            SecretString::new("cga_YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8".into()),
            vector_keyset(),
            60,
            1_795_000_000,
        )
        .unwrap()
    }

    #[test]
    fn store_and_load_round_trip_private_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Identity::load(dir.path()).unwrap().is_none());
        let id = identity();
        id.store(dir.path()).unwrap();
        let path = Identity::path(dir.path());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Identity::load(dir.path()).unwrap().unwrap(), id);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Debug never shows the credential.
        let debug = format!("{id:?}");
        assert!(!debug.contains("YGFiY2Rl"), "{debug}");
    }

    #[test]
    fn insecure_symlinked_or_malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        identity().store(dir.path()).unwrap();
        let path = Identity::path(dir.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(Error::InsecureFile { mode: 0o640, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&path, Identity::path(other.path())).unwrap();
        let err = Identity::load(other.path()).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");

        let text =
            String::from_utf8(clawgate_protocol::io::read_capped(&path, 1 << 16).unwrap()).unwrap();
        for (from, to, want) in [
            (
                "clawgate-hub-identity/1",
                "clawgate-hub-identity/2",
                "format",
            ),
            ("\"cga_", "\"cgx_", "credential"),
            ("\"tenant-example\"", "\"tenant example\"", "tenant id"),
            (
                "\"heartbeat_seconds\"",
                "\"extra\": 1, \"heartbeat_seconds\"",
                "unknown field",
            ),
        ] {
            std::fs::write(&path, text.replace(from, to)).unwrap();
            let err = Identity::load(dir.path()).unwrap_err();
            assert!(err.to_string().contains(want), "{want}: {err}");
            assert!(!err.to_string().contains("YGFiY2Rl"), "{err}");
        }
    }
}
