//! Enrollment: the one-time token file the provisioner drops over SSH, the `POST /v1/enroll`
//! call, and the identity it yields.
//!
//! Order, chosen so a failure at any step leaves either the old state or a complete new one:
//!
//! 1. refuse if this state directory is already enrolled (no network, token untouched);
//! 2. read the token file: a regular file, no group/other access, at most 64 KiB, well-formed
//!    (https Hub URL, 1–16 valid pins, 1–16 valid keys);
//! 3. call the Hub over TLS pinned to the file's SPKI hashes;
//! 4. check the answer: ids, credential shape, and every key of the file present in the answer
//!    with the same public key (the file is the trust anchor; the Hub may add keys, never
//!    replace them);
//! 5. store the identity (atomic, 0600);
//! 6. only then overwrite the token file with zeros, fsync it, unlink it and fsync the directory.
//!
//! A crash between 3 and 5 spends the token without an identity: enrollment then fails with
//! `token_invalid` and the provisioner issues a new token (documented in `hub/openapi.json`).

use std::io::{Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use clawgate_protocol::SecretString;

use crate::client::{HubClient, Timeouts};
use crate::error::{Error, Result};
use crate::identity::{Identity, check_private_file, sync_parent_dir};
use crate::protocol::{
    EnrollRequest, EnrollmentTokenFile, MAX_SAFE_INTEGER, SigningKey, WireSecret,
};
use crate::signing::{Keyset, parse_pins};

/// Largest token file read.
pub const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// A parsed, checked token file. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct TokenFile {
    /// Hub base URL.
    pub hub: String,
    token: SecretString,
    /// The pinned TLS SPKI hashes.
    pub pins: Vec<[u8; 32]>,
    /// The anchor signing keys.
    pub signing_keys: Vec<SigningKey>,
}

impl TokenFile {
    /// The token.
    pub fn token(&self) -> &SecretString {
        &self.token
    }
}

/// Reads and checks the token file at `path` (see the module docs, step 2). Errors name the
/// file and what is wrong, never the token.
pub fn read_token_file(path: &Path) -> Result<TokenFile> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Error::io(format!("reading token file {}", path.display()), e))?;
    check_private_file(path, &meta)?;
    let bytes = zeroize::Zeroizing::new(
        clawgate_protocol::io::read_capped(path, MAX_TOKEN_FILE_BYTES)
            .map_err(|e| Error::io(format!("reading token file {}", path.display()), e))?,
    );
    // serde_json's messages quote the offending *token* of JSON syntax only on syntax errors
    // near it; keep the message to its position to be sure no part of the token leaks.
    let file: EnrollmentTokenFile = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Invalid(format!(
            "token file {} is not valid ({:?} error at line {} column {}); expected {{hub, token, tls_spki_sha256, signing_keys}}",
            path.display(),
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if !file.hub.starts_with("https://") {
        return Err(Error::Invalid(format!(
            "token file {}: hub `{}` is not an https URL",
            path.display(),
            file.hub.escape_debug()
        )));
    }
    let t = file.token.expose();
    if !(16..=512).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Invalid(format!(
            "token file {}: the token must be 16 to 512 printable ASCII characters ({} bytes found)",
            path.display(),
            t.len()
        )));
    }
    let pins = parse_pins(&file.tls_spki_sha256)
        .map_err(|e| Error::Invalid(format!("token file {}: {e}", path.display())))?;
    // Validates every key (grammar, base64, curve point, not weak, unique ids).
    Keyset::new(1, &file.signing_keys, &file.tls_spki_sha256)
        .map_err(|e| Error::Invalid(format!("token file {}: {e}", path.display())))?;
    Ok(TokenFile {
        hub: file.hub,
        token: file.token.secret().clone(),
        pins,
        signing_keys: file.signing_keys,
    })
}

/// What enrollment needs besides the token file.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// This machine's host name (see [`local_hostname`]).
    pub hostname: String,
    /// Clawgate's version.
    pub version: String,
    /// Deadlines for the call.
    pub timeouts: Timeouts,
}

/// Enrolls this appliance (see the module docs) and returns its stored identity.
pub async fn enroll(
    token_path: &Path,
    state_dir: &Path,
    options: &EnrollOptions,
) -> Result<Identity> {
    if let Some(existing) = Identity::load(state_dir)? {
        return Err(Error::AlreadyEnrolled {
            path: Identity::path(state_dir).display().to_string(),
            tenant_id: existing.tenant_id,
            appliance_id: existing.appliance_id,
        });
    }
    let token_file = read_token_file(token_path)?;
    let client = HubClient::new(
        &token_file.hub,
        token_file.pins.clone(),
        None,
        options.timeouts,
    )?;
    let answer = client
        .enroll(&EnrollRequest {
            token: WireSecret::from(token_file.token.clone()),
            hostname: options.hostname.clone(),
            version: options.version.clone(),
        })
        .await?;

    if answer.keyset_version == 0 || answer.keyset_version > MAX_SAFE_INTEGER {
        return Err(bad_answer(format!(
            "keyset_version {} out of range",
            answer.keyset_version
        )));
    }
    if !(5..=3600).contains(&answer.heartbeat_seconds) {
        return Err(bad_answer(format!(
            "heartbeat_seconds {} is not within 5..=3600",
            answer.heartbeat_seconds
        )));
    }
    let keyset = Keyset::new(
        answer.keyset_version,
        &answer.signing_keys,
        &hex_pins(&token_file.pins),
    )
    .map_err(|e| bad_answer(e.to_string()))?;
    if !keyset.contains_all(&token_file.signing_keys)? {
        return Err(bad_answer(
            "its signing keys do not include every key of the token file (same id, same public key): \
             refusing a Hub that does not hold the provisioned keys"
                .into(),
        ));
    }
    let identity = Identity::new(
        token_file.hub.clone(),
        answer.tenant_id,
        answer.appliance_id,
        answer.credential.secret().clone(),
        keyset,
        answer.heartbeat_seconds,
        unix_now(),
    )
    .map_err(|e| bad_answer(e.to_string()))?;
    identity.store(state_dir)?;
    destroy_token_file(token_path)?;
    Ok(identity)
}

fn bad_answer(detail: String) -> Error {
    Error::BadResponse {
        operation: "enroll",
        detail,
    }
}

fn hex_pins(pins: &[[u8; 32]]) -> Vec<String> {
    pins.iter().map(hex::encode).collect()
}

/// Overwrites the token file with zeros (its whole length), fsyncs it, unlinks it and fsyncs
/// the directory. The token is spent, but a copy on disk is still a secret until it is gone.
pub fn destroy_token_file(path: &Path) -> Result<()> {
    let context = || format!("destroying token file {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(context(), e))?;
    let len = file.metadata().map_err(|e| Error::io(context(), e))?.size();
    file.rewind().map_err(|e| Error::io(context(), e))?;
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(4096)).unwrap_or(4096);
        file.write_all(&zeros[..n])
            .map_err(|e| Error::io(context(), e))?;
        left -= n as u64;
    }
    file.sync_all().map_err(|e| Error::io(context(), e))?;
    drop(file);
    std::fs::remove_file(path).map_err(|e| Error::io(context(), e))?;
    sync_parent_dir(path)
}

/// The kernel's host name (`/proc/sys/kernel/hostname`), or `unknown`.
pub fn local_hostname() -> String {
    clawgate_protocol::io::read_capped(Path::new("/proc/sys/kernel/hostname"), 256)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const TOKEN: &str = "cgt_PLANTED_q7N1x0vKZ2m4T8w5bR3y";

    fn write(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join("enroll.json");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn good() -> serde_json::Value {
        let key = crate::signing::tests::vector_keyset().signing_keys();
        serde_json::json!({"hub": "https://hub.example.com", "token": TOKEN,
            "tls_spki_sha256": ["ab".repeat(32)], "signing_keys": key})
    }

    #[test]
    fn a_good_file_parses() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &good().to_string(), 0o600);
        let t = read_token_file(&p).unwrap();
        assert_eq!(t.token().expose(), TOKEN);
        assert_eq!(t.pins, vec![[0xab; 32]]);
        assert!(!format!("{t:?}").contains("PLANTED"));
    }

    #[test]
    fn bad_files_are_refused_without_echoing_the_token() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644, 0o602] {
            let p = write(dir.path(), &good().to_string(), mode);
            let err = read_token_file(&p).unwrap_err();
            assert!(matches!(err, Error::InsecureFile { .. }), "{mode:o}: {err}");
        }
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                {
                    let mut v = good();
                    v["hub"] = "http://hub.example.com".into();
                    v
                },
                "https",
            ),
            (
                {
                    let mut v = good();
                    v["token"] = "short".into();
                    v
                },
                "16 to 512",
            ),
            (
                {
                    let mut v = good();
                    v["token"] = format!("{TOKEN} with space").into();
                    v
                },
                "printable",
            ),
            (
                {
                    let mut v = good();
                    v["tls_spki_sha256"] = serde_json::json!([]);
                    v
                },
                "pins",
            ),
            (
                {
                    let mut v = good();
                    v["tls_spki_sha256"] = serde_json::json!(["xyz"]);
                    v
                },
                "hex",
            ),
            (
                {
                    let mut v = good();
                    v["signing_keys"] = serde_json::json!([]);
                    v
                },
                "signing keys",
            ),
            (
                {
                    let mut v = good();
                    v["extra"] = 1.into();
                    v
                },
                "not valid",
            ),
            (
                {
                    let mut v = good();
                    v.as_object_mut().unwrap().remove("token");
                    v
                },
                "not valid",
            ),
        ];
        for (value, want) in cases {
            let p = write(dir.path(), &value.to_string(), 0o600);
            let err = read_token_file(&p).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert!(!err.contains("PLANTED"), "{err}");
        }
        // Syntax errors anywhere, including inside the token string.
        let broken = good().to_string().replace("PLANTED", "PLANTED\u{0}\"");
        let p = write(dir.path(), &broken, 0o600);
        let err = read_token_file(&p).unwrap_err().to_string();
        assert!(!err.contains("PLANTED"), "{err}");
        // A symlink to a good file.
        let good_path = write(dir.path(), &good().to_string(), 0o600);
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&good_path, &link).unwrap();
        assert!(
            read_token_file(&link)
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
        // Too large.
        let p = write(dir.path(), &" ".repeat(70_000), 0o600);
        assert!(read_token_file(&p).is_err());
    }

    #[test]
    fn destroying_overwrites_then_unlinks() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &good().to_string(), 0o600);
        // Keep a second name on the same inode to see what was left in the file's blocks.
        let witness = dir.path().join("witness");
        std::fs::hard_link(&p, &witness).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        destroy_token_file(&p).unwrap();
        assert!(!p.exists());
        let left = clawgate_protocol::io::read_capped(&witness, 1 << 20).unwrap();
        assert_eq!(left.len() as u64, len);
        assert!(left.iter().all(|&b| b == 0));
    }
}
