//! Key material in the state directory, generated on first start and reused after:
//!
//! - `signing-keys.json` (0600): the Ed25519 Hub signing keys (seeds), the current one, the
//!   keyset version;
//! - `tls-key.der` (0600, PKCS#8) and `tls-cert.der`: the self-signed TLS certificate (rcgen,
//!   names `localhost` and `127.0.0.1`); appliances pin the SHA-256 of its SPKI;
//! - `operator-token` (0600): the bearer token of the operator page and admin API.
//!
//! Every file is written whole (temporary file, fsync, rename) with its final mode from the
//! start; the directory itself is created 0700.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use ed25519_dalek::SigningKey as DalekKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use clawgate_hub::protocol::SigningKey;

use crate::error::{Error, Result};

const SIGNING_FILE: &str = "signing-keys.json";
const TLS_KEY_FILE: &str = "tls-key.der";
const TLS_CERT_FILE: &str = "tls-cert.der";
const OPERATOR_FILE: &str = "operator-token";
const MAX_KEY_FILE: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningFile {
    keyset_version: u64,
    current: String,
    keys: Vec<SeedEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedEntry {
    kid: String,
    seed_hex: String,
}

/// The Hub's signing keys. `Debug` shows key ids only.
#[derive(Clone)]
pub struct SigningKeys {
    /// Keyset version the appliances are told at enrollment.
    pub keyset_version: u64,
    /// The key id new decisions and commands are signed with.
    pub current: String,
    keys: Vec<(String, DalekKey)>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("keyset_version", &self.keyset_version)
            .field("current", &self.current)
            .field(
                "kids",
                &self
                    .keys
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SigningKeys {
    /// The key with id `kid`.
    pub fn key(&self, kid: &str) -> Option<&DalekKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    /// The current signing key and its id.
    pub fn current_key(&self) -> Result<(&str, &DalekKey)> {
        self.key(&self.current)
            .map(|k| (self.current.as_str(), k))
            .ok_or_else(|| Error::Keys(format!("current key `{}` is missing", self.current)))
    }

    /// The public keys, as the protocol lists them.
    pub fn public(&self) -> Vec<SigningKey> {
        self.keys
            .iter()
            .map(|(kid, key)| SigningKey {
                kid: kid.clone(),
                public_key: B64.encode(key.verifying_key().as_bytes()),
            })
            .collect()
    }

    /// A new keyset: a fresh key becomes current, the old ones stay listed (so statements and
    /// decisions signed by them still verify until the operator retires them), version + 1.
    /// Returns the new key id.
    pub fn rotate(&mut self) -> Result<String> {
        let version = self.keyset_version + 1;
        let kid = format!("devhub-{version}");
        self.keys
            .push((kid.clone(), DalekKey::from_bytes(&*random32()?)));
        self.keyset_version = version;
        self.current = kid.clone();
        Ok(kid)
    }
}

/// The TLS certificate and key, and the pin appliances use.
#[derive(Clone)]
pub struct TlsMaterial {
    /// DER certificate.
    pub cert_der: Vec<u8>,
    key_der: Zeroizing<Vec<u8>>,
    /// SHA-256 of the certificate's DER SubjectPublicKeyInfo.
    pub pin: [u8; 32],
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("pin", &hex::encode(self.pin))
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// The PKCS#8 private key.
    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }

    /// The pin as lower-case hex (token files, `keyset` statements).
    pub fn pin_hex(&self) -> String {
        hex::encode(self.pin)
    }

    /// The pin as standard base64, the form of Chromium's `--ignore-certificate-errors-spki-list`.
    pub fn pin_base64(&self) -> String {
        B64.encode(self.pin)
    }
}

/// Everything in the state directory that is not the database.
#[derive(Debug, Clone)]
pub struct KeyMaterial {
    /// Signing keys.
    pub signing: SigningKeys,
    /// TLS.
    pub tls: TlsMaterial,
    /// The operator's bearer token (page and admin API).
    pub operator_token: clawgate_protocol::SecretString,
}

/// Creates `dir` (0700) if needed and refuses one that group or other can access.
pub fn ensure_state_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(Error::Invalid(format!(
                    "state directory {} is not a directory",
                    dir.display()
                )));
            }
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::Invalid(format!(
                    "state directory {} is accessible to group or other (mode {:o}); it holds \
                     the Hub's private keys: chmod 700 it",
                    dir.display(),
                    meta.permissions().mode() & 0o777
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))
        }
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}

/// Loads the key material of `dir`, generating what is missing (first start).
pub fn load_or_create(dir: &Path) -> Result<KeyMaterial> {
    ensure_state_dir(dir)?;
    let signing = match read_private(&dir.join(SIGNING_FILE))? {
        Some(bytes) => parse_signing(&bytes)?,
        None => {
            let keys = SigningKeys {
                keyset_version: 1,
                current: "devhub-1".into(),
                keys: vec![("devhub-1".into(), DalekKey::from_bytes(&*random32()?))],
            };
            store_signing(dir, &keys)?;
            keys
        }
    };
    let tls = match (
        read_private(&dir.join(TLS_KEY_FILE))?,
        read_public(&dir.join(TLS_CERT_FILE))?,
    ) {
        (Some(key_der), Some(cert_der)) => {
            let pin = clawgate_hub::tls::spki_sha256(&rustls::pki_types::CertificateDer::from(
                cert_der.as_slice(),
            ))
            .ok_or_else(|| {
                Error::Keys(format!(
                    "{} is not a certificate",
                    dir.join(TLS_CERT_FILE).display()
                ))
            })?;
            TlsMaterial {
                cert_der,
                key_der,
                pin,
            }
        }
        (None, None) => {
            let tls = generate_tls()?;
            write_atomic(&dir.join(TLS_KEY_FILE), tls.key_der(), 0o600)?;
            write_atomic(&dir.join(TLS_CERT_FILE), &tls.cert_der, 0o644)?;
            tls
        }
        _ => {
            return Err(Error::Keys(format!(
                "only one of {TLS_KEY_FILE} and {TLS_CERT_FILE} exists in {}: remove the other \
                 to generate a new certificate (appliances must then be re-pinned)",
                dir.display()
            )));
        }
    };
    let operator_token = match read_private(&dir.join(OPERATOR_FILE))? {
        Some(bytes) => {
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| Error::Keys(format!("{OPERATOR_FILE} is not UTF-8")))?;
            let text = text.trim();
            if !text.starts_with("op_") || text.len() < 20 {
                return Err(Error::Keys(format!(
                    "{OPERATOR_FILE} does not hold an operator token (op_…)"
                )));
            }
            clawgate_protocol::SecretString::new(text.to_owned())
        }
        None => {
            let token = clawgate_protocol::SecretString::new(format!(
                "op_{}",
                B64URL.encode(random32()?.as_slice())
            ));
            write_atomic(
                &dir.join(OPERATOR_FILE),
                format!("{}\n", token.expose()).as_bytes(),
                0o600,
            )?;
            token
        }
    };
    Ok(KeyMaterial {
        signing,
        tls,
        operator_token,
    })
}

/// Persists the signing keys (after a rotation).
pub fn store_signing(dir: &Path, keys: &SigningKeys) -> Result<()> {
    let file = SigningFile {
        keyset_version: keys.keyset_version,
        current: keys.current.clone(),
        keys: keys
            .keys
            .iter()
            .map(|(kid, key)| SeedEntry {
                kid: kid.clone(),
                seed_hex: hex::encode(key.to_bytes()),
            })
            .collect(),
    };
    let bytes = Zeroizing::new(
        serde_json::to_vec_pretty(&file).map_err(|e| Error::Keys(format!("encoding keys: {e}")))?,
    );
    write_atomic(&dir.join(SIGNING_FILE), &bytes, 0o600)
}

fn parse_signing(bytes: &[u8]) -> Result<SigningKeys> {
    let file: SigningFile = serde_json::from_slice(bytes).map_err(|e| {
        Error::Keys(format!(
            "{SIGNING_FILE} is malformed ({:?} error at line {})",
            e.classify(),
            e.line()
        ))
    })?;
    let mut keys = Vec::new();
    for entry in &file.keys {
        let seed =
            Zeroizing::new(hex::decode(&entry.seed_hex).map_err(|_| {
                Error::Keys(format!("{SIGNING_FILE}: key `{}` is not hex", entry.kid))
            })?);
        let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| {
            Error::Keys(format!(
                "{SIGNING_FILE}: key `{}` is not 32 bytes",
                entry.kid
            ))
        })?;
        if !clawgate_hub::signing::valid_id(&entry.kid) {
            return Err(Error::Keys(format!("{SIGNING_FILE}: bad key id")));
        }
        keys.push((entry.kid.clone(), DalekKey::from_bytes(&seed)));
    }
    let keys = SigningKeys {
        keyset_version: file.keyset_version,
        current: file.current,
        keys,
    };
    keys.current_key()?;
    Ok(keys)
}

fn generate_tls() -> Result<TlsMaterial> {
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Keys(format!("TLS key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| Error::Keys(format!("TLS certificate: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "clawgate dev Hub");
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Keys(format!("TLS certificate: {e}")))?;
    let pin: [u8; 32] = Sha256::digest(key.public_key_der()).into();
    Ok(TlsMaterial {
        cert_der: cert.der().to_vec(),
        key_der: Zeroizing::new(key.serialize_der()),
        pin,
    })
}

/// 32 random bytes from the OS.
pub fn random32() -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(out.as_mut()).map_err(|e| Error::Keys(format!("randomness: {e}")))?;
    Ok(out)
}

/// A fresh random Ed25519 key that no appliance pins (fault injection).
pub fn unpinned_key() -> Result<DalekKey> {
    Ok(DalekKey::from_bytes(&*random32()?))
}

fn read_private(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::Keys(format!(
            "{} must be a regular file only its owner can access (0600)",
            path.display()
        )));
    }
    clawgate_protocol::io::read_capped(path, MAX_KEY_FILE)
        .map(|b| Some(Zeroizing::new(b)))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

fn read_public(path: &Path) -> Result<Option<Vec<u8>>> {
    match clawgate_protocol::io::read_capped(path, MAX_KEY_FILE) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes `bytes` to `path` atomically with `mode` (temporary file created with that mode,
/// fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    let context = || format!("writing {}", path.display());
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io(context(), e))?;
    file.write_all(bytes).map_err(|e| Error::io(context(), e))?;
    file.sync_all().map_err(|e| Error::io(context(), e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(context(), e))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(context(), e))?;
    }
    Ok(())
}
