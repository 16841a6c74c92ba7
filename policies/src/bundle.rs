//! Signed policy bundles: the only way a policy reaches an enrolled appliance.
//!
//! A bundle is one JSON document (format `clawgate-bundle/1`, specified with test vectors in
//! `docs/bundle-format.md`):
//!
//! ```text
//! { "format": "clawgate-bundle/1",
//!   "manifest": base64(manifest bytes),
//!   "signatures": [ { "key_id": "...", "sig": base64(ed25519(KEY, "clawgate-bundle/1\n" ‖ manifest bytes)) } ],
//!   "files": { "<relative path>": base64(contents), … } }
//! ```
//!
//! The signature covers the *exact* manifest bytes, and is checked (with `verify_strict`, against
//! pinned keys) before the manifest is parsed. The manifest then binds tenant, monotonic version,
//! issue and expiry times, key id, autonomy tier and the SHA-256 of every file; the file set must
//! match exactly. Verification takes `now` and the persisted high-water mark as inputs, so it is a
//! pure function of its arguments.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Format tag of the outer document, and the signature's domain-separation prefix.
pub const FORMAT: &str = "clawgate-bundle/1";
/// `type` field of the manifest.
pub const MANIFEST_TYPE: &str = "clawgate-policy-bundle";
/// Largest bundle document accepted.
pub const MAX_BUNDLE_BYTES: usize = 8 * 1024 * 1024;
/// Largest manifest accepted.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// Most files in one bundle.
pub const MAX_FILES: usize = 512;
/// How far in the future `issued_at` may be (clock skew between Hub and appliance).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Why a bundle was refused. Every variant names the check that failed; none carries file
/// contents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// The document is not a well-formed bundle.
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// No signature by a pinned key.
    #[error("bundle is not signed by a trusted key (signed by: {0})")]
    UntrustedKey(String),
    /// A signature by a pinned key does not verify: the manifest was changed after signing.
    #[error("bundle signature by key `{0}` does not verify (tampered or corrupt)")]
    BadSignature(String),
    /// The manifest names another key than the one that signed it.
    #[error("manifest names key `{manifest}` but was signed by `{signer}`")]
    KeyMismatch {
        /// `key_id` inside the manifest.
        manifest: String,
        /// Key that produced the verified signature.
        signer: String,
    },
    /// Bundle for another tenant.
    #[error("bundle is for tenant `{found}`, this appliance is `{expected}`")]
    WrongTenant {
        /// Tenant in the manifest.
        found: String,
        /// This appliance's tenant.
        expected: String,
    },
    /// Version not above the high-water mark: a rollback or a replay.
    #[error(
        "bundle version {found} is not newer than version {high_water} already accepted (rollback or replay)"
    )]
    NotNewer {
        /// Version in the manifest.
        found: u64,
        /// Highest version accepted before.
        high_water: u64,
    },
    /// Past its expiry.
    #[error("bundle expired at {expires_at} (now {now})")]
    Expired {
        /// `expires_at` (Unix seconds).
        expires_at: i64,
        /// The time used for the check.
        now: i64,
    },
    /// Issued in the future beyond the allowed skew, or expiry before issue.
    #[error("bundle times are inconsistent: {0}")]
    BadTimes(String),
    /// A file the manifest does not list.
    #[error("bundle carries file `{0}`, which its manifest does not list")]
    UnknownFile(String),
    /// A listed file is absent.
    #[error("bundle lacks file `{0}`, which its manifest lists")]
    MissingFile(String),
    /// A file's contents do not match the manifest's hash.
    #[error("file `{0}` does not match its SHA-256 in the manifest")]
    HashMismatch(String),
    /// A file path that could escape the bundle directory or is otherwise unsafe.
    #[error("unsafe file path `{0}` in bundle")]
    BadPath(String),
    /// Key material could not be read or is invalid.
    #[error("key error: {0}")]
    Key(String),
}

/// The signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Tenant the bundle is for.
    pub tenant_id: String,
    /// Monotonic version; must exceed the appliance's high-water mark.
    pub version: u64,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// Expiry time, Unix seconds.
    pub expires_at: i64,
    /// Id of the signing key.
    pub key_id: String,
    /// Autonomy tier 1 (supervised), 2 (balanced) or 3 (autonomous).
    pub autonomy_tier: u8,
    /// SHA-256 (lower-case hex) of every file, by relative path.
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    manifest: String,
    signatures: Vec<SignatureEntry>,
    files: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureEntry {
    key_id: String,
    sig: String,
}

/// A pinned public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// Key id, as named in manifests.
    pub id: String,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

/// The pinned keys a verifier accepts.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    #[serde(default)]
    key: Vec<TrustFileKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFileKey {
    id: String,
    public_key: String,
}

impl TrustStore {
    /// Parses a TOML trust file: `[[key]] id = "…" public_key = "<base64 of 32 bytes>"`.
    pub fn from_toml(text: &str) -> Result<Self, BundleError> {
        let file: TrustFile =
            toml::from_str(text).map_err(|e| BundleError::Key(format!("trust file: {e}")))?;
        let mut store = Self::default();
        for k in file.key {
            let bytes = B64.decode(k.public_key.trim()).map_err(|_| {
                BundleError::Key(format!("key `{}`: public_key is not base64", k.id))
            })?;
            let arr: [u8; 32] = bytes.try_into().map_err(|_| {
                BundleError::Key(format!("key `{}`: public_key must be 32 bytes", k.id))
            })?;
            store.add(&k.id, &arr)?;
        }
        if store.keys.is_empty() {
            return Err(BundleError::Key("trust file names no key".into()));
        }
        Ok(store)
    }

    /// Pins `public_key` under `id`. Weak (small-order) keys and duplicate ids are refused.
    pub fn add(&mut self, id: &str, public_key: &[u8; 32]) -> Result<(), BundleError> {
        validate_key_id(id)?;
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| BundleError::Key(format!("key `{id}` is not a valid Ed25519 point")))?;
        if key.is_weak() {
            return Err(BundleError::Key(format!(
                "key `{id}` is a weak (small-order) key"
            )));
        }
        if self.keys.iter().any(|k| k.id == id) {
            return Err(BundleError::Key(format!("key id `{id}` is pinned twice")));
        }
        self.keys.push(TrustedKey {
            id: id.to_owned(),
            key,
        });
        Ok(())
    }

    fn get(&self, id: &str) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

fn validate_key_id(id: &str) -> Result<(), BundleError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BundleError::Key(format!(
            "`{id}` is not a valid key id ([A-Za-z0-9-_.:]{{1,64}})"
        )))
    }
}

/// What the verifier checks a bundle against.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// This appliance's tenant.
    pub tenant_id: &'a str,
    /// Highest version accepted so far (persisted); a new bundle must be strictly above it.
    pub high_water: u64,
    /// Accept `version == high_water` too: for re-verifying the bundle already in force at start-up.
    pub allow_current: bool,
    /// Current time, Unix seconds.
    pub now: i64,
}

/// A bundle that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The signed manifest.
    pub manifest: Manifest,
    /// File contents by relative path, each matching its manifest hash.
    pub files: BTreeMap<String, Vec<u8>>,
    /// SHA-256 (hex) of the manifest bytes: the bundle's identity, e.g. in heartbeats.
    pub manifest_sha256: String,
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(FORMAT.len() + 1 + manifest.len());
    msg.extend_from_slice(FORMAT.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(manifest);
    msg
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A relative path of `[A-Za-z0-9._-]` segments separated by `/`, none empty, `.` or `..`.
fn validate_path(path: &str) -> Result<(), BundleError> {
    let ok = !path.is_empty()
        && path.len() <= 200
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(BundleError::BadPath(path.escape_debug().to_string()))
    }
}

/// Verifies `bundle` (the raw document) against pinned `trust` and `expect`. Nothing from the
/// document is parsed beyond the envelope before the signature has verified.
pub fn verify(
    bundle: &[u8],
    trust: &TrustStore,
    expect: &Expectations<'_>,
) -> Result<VerifiedBundle, BundleError> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::Malformed(format!(
            "larger than {MAX_BUNDLE_BYTES} bytes"
        )));
    }
    let envelope: Envelope =
        serde_json::from_slice(bundle).map_err(|e| BundleError::Malformed(e.to_string()))?;
    if envelope.format != FORMAT {
        return Err(BundleError::Malformed(format!(
            "format `{}` is not {FORMAT}",
            envelope.format.escape_debug()
        )));
    }
    let manifest_bytes = B64
        .decode(&envelope.manifest)
        .map_err(|_| BundleError::Malformed("manifest is not base64".into()))?;
    if manifest_bytes.len() > MAX_MANIFEST_BYTES {
        return Err(BundleError::Malformed("manifest too large".into()));
    }
    let signer = verify_signatures(&envelope.signatures, &manifest_bytes, trust)?;

    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| BundleError::Malformed(format!("manifest: {e}")))?;
    check_manifest(&manifest, &signer, expect)?;
    let files = check_files(&manifest, &envelope.files)?;
    Ok(VerifiedBundle {
        manifest,
        files,
        manifest_sha256: sha256_hex(&manifest_bytes),
    })
}

/// Returns the id of the pinned key whose signature verified. Any signature by a pinned key that
/// fails is a hard error (not skipped), duplicate entries for one key are refused, and entries by
/// unknown keys are ignored (they may be for other appliances during a key rotation).
fn verify_signatures(
    entries: &[SignatureEntry],
    manifest: &[u8],
    trust: &TrustStore,
) -> Result<String, BundleError> {
    let message = signed_message(manifest);
    let mut verified: Option<String> = None;
    for (i, entry) in entries.iter().enumerate() {
        if entries[..i].iter().any(|e| e.key_id == entry.key_id) {
            return Err(BundleError::Malformed(format!(
                "two signatures by key `{}`",
                entry.key_id.escape_debug()
            )));
        }
        let Some(key) = trust.get(&entry.key_id) else {
            continue;
        };
        let raw = B64
            .decode(&entry.sig)
            .map_err(|_| BundleError::BadSignature(key.id.clone()))?;
        let sig =
            Signature::from_slice(&raw).map_err(|_| BundleError::BadSignature(key.id.clone()))?;
        key.key
            .verify_strict(&message, &sig)
            .map_err(|_| BundleError::BadSignature(key.id.clone()))?;
        verified.get_or_insert_with(|| key.id.clone());
    }
    verified.ok_or_else(|| {
        let ids: Vec<String> = entries
            .iter()
            .map(|e| e.key_id.escape_debug().to_string())
            .collect();
        BundleError::UntrustedKey(if ids.is_empty() {
            "nobody".into()
        } else {
            ids.join(", ")
        })
    })
}

fn check_manifest(
    m: &Manifest,
    signer: &str,
    expect: &Expectations<'_>,
) -> Result<(), BundleError> {
    if m.kind != MANIFEST_TYPE {
        return Err(BundleError::Malformed(format!(
            "manifest type `{}` is not {MANIFEST_TYPE}",
            m.kind.escape_debug()
        )));
    }
    if m.key_id != signer {
        return Err(BundleError::KeyMismatch {
            manifest: m.key_id.clone(),
            signer: signer.to_owned(),
        });
    }
    if m.tenant_id != expect.tenant_id {
        return Err(BundleError::WrongTenant {
            found: m.tenant_id.clone(),
            expected: expect.tenant_id.to_owned(),
        });
    }
    let newer =
        m.version > expect.high_water || (expect.allow_current && m.version == expect.high_water);
    if !newer {
        return Err(BundleError::NotNewer {
            found: m.version,
            high_water: expect.high_water,
        });
    }
    if !(1..=3).contains(&m.autonomy_tier) {
        return Err(BundleError::Malformed(format!(
            "autonomy tier {} is not 1, 2 or 3",
            m.autonomy_tier
        )));
    }
    if m.expires_at <= m.issued_at {
        return Err(BundleError::BadTimes(
            "expires_at is not after issued_at".into(),
        ));
    }
    if m.issued_at > expect.now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(BundleError::BadTimes(format!(
            "issued_at {} is in the future (now {})",
            m.issued_at, expect.now
        )));
    }
    if m.expires_at <= expect.now {
        return Err(BundleError::Expired {
            expires_at: m.expires_at,
            now: expect.now,
        });
    }
    if m.files.len() > MAX_FILES {
        return Err(BundleError::Malformed(format!(
            "more than {MAX_FILES} files"
        )));
    }
    for (path, hash) in &m.files {
        validate_path(path)?;
        if hash.len() != 64
            || !hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(BundleError::Malformed(format!(
                "hash of `{path}` is not lower-case hex SHA-256"
            )));
        }
    }
    Ok(())
}

fn check_files(
    m: &Manifest,
    carried: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    if let Some(extra) = carried.keys().find(|p| !m.files.contains_key(*p)) {
        return Err(BundleError::UnknownFile(extra.escape_debug().to_string()));
    }
    let mut files = BTreeMap::new();
    for (path, hash) in &m.files {
        let encoded = carried
            .get(path)
            .ok_or_else(|| BundleError::MissingFile(path.clone()))?;
        let bytes = B64
            .decode(encoded)
            .map_err(|_| BundleError::Malformed(format!("file `{path}` is not base64")))?;
        if sha256_hex(&bytes) != *hash {
            return Err(BundleError::HashMismatch(path.clone()));
        }
        files.insert(path.clone(), bytes);
    }
    Ok(files)
}

/// A bundle-signing key (the Hub holds these; `clawgate policy sign` uses one for tests and
/// self-managed installs).
pub struct BundleSigner {
    id: String,
    key: SigningKey,
}

impl std::fmt::Debug for BundleSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleSigner")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BundleSigner {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(id: &str, seed: &[u8; 32]) -> Result<Self, BundleError> {
        validate_key_id(id)?;
        Ok(Self {
            id: id.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// A fresh random key.
    pub fn generate(id: &str) -> Result<Self, BundleError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(seed.as_mut()).map_err(|e| BundleError::Key(e.to_string()))?;
        Self::from_seed(id, &seed)
    }

    /// Key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The 32-byte seed, for writing a secret-key file.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The trust-file entry that pins this key.
    pub fn trust_entry(&self) -> String {
        format!(
            "[[key]]\nid = \"{}\"\npublic_key = \"{}\"\n",
            self.id,
            B64.encode(self.public_key())
        )
    }

    /// Builds a signed bundle from `files` (relative path → contents).
    pub fn sign(
        &self,
        template: &ManifestTemplate<'_>,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Vec<u8>, BundleError> {
        for path in files.keys() {
            validate_path(path)?;
        }
        let manifest = Manifest {
            kind: MANIFEST_TYPE.to_owned(),
            tenant_id: template.tenant_id.to_owned(),
            version: template.version,
            issued_at: template.issued_at,
            expires_at: template.expires_at,
            key_id: self.id.clone(),
            autonomy_tier: template.autonomy_tier,
            files: files
                .iter()
                .map(|(p, c)| (p.clone(), sha256_hex(c)))
                .collect(),
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| BundleError::Malformed(e.to_string()))?;
        let sig = self.key.sign(&signed_message(&manifest_bytes));
        let envelope = Envelope {
            format: FORMAT.to_owned(),
            manifest: B64.encode(&manifest_bytes),
            signatures: vec![SignatureEntry {
                key_id: self.id.clone(),
                sig: B64.encode(sig.to_bytes()),
            }],
            files: files
                .iter()
                .map(|(p, c)| (p.clone(), B64.encode(c)))
                .collect(),
        };
        serde_json::to_vec_pretty(&envelope).map_err(|e| BundleError::Malformed(e.to_string()))
    }
}

/// The unsigned fields of a manifest.
#[derive(Debug, Clone, Copy)]
pub struct ManifestTemplate<'a> {
    /// Tenant.
    pub tenant_id: &'a str,
    /// Version.
    pub version: u64,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// Autonomy tier.
    pub autonomy_tier: u8,
}

/// Reads every regular, non-hidden file under `dir` as bundle files (paths relative to `dir`,
/// `/`-separated). Symlinks are refused rather than followed.
pub fn read_policy_dir(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    if out.is_empty() {
        return Err(BundleError::Malformed(format!(
            "{} holds no files",
            dir.display()
        )));
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> Result<(), BundleError> {
    let io = |e: std::io::Error| BundleError::Malformed(format!("{}: {e}", dir.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(io)?;
        if kind.is_symlink() {
            return Err(BundleError::BadPath(format!(
                "{} is a symlink",
                path.display()
            )));
        }
        if kind.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .map_err(|_| BundleError::BadPath(path.display().to_string()))?;
        let rel = rel
            .to_str()
            .ok_or_else(|| BundleError::BadPath(rel.display().to_string()))?
            .to_owned();
        validate_path(&rel)?;
        let file = std::fs::File::open(&path).map_err(io)?;
        let bytes = {
            use std::io::Read;
            let mut buf = Vec::new();
            #[allow(clippy::disallowed_methods)] // bounded by take()
            file.take(MAX_BUNDLE_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(io)?;
            buf
        };
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::Malformed(format!(
                "{} is too large",
                path.display()
            )));
        }
        out.insert(rel, bytes);
        if out.len() > MAX_FILES {
            return Err(BundleError::Malformed(format!(
                "more than {MAX_FILES} files"
            )));
        }
    }
    Ok(())
}

impl VerifiedBundle {
    /// The policy in the bundle (its `*.toml` files, every rule example checked) and the autonomy
    /// tier it sets.
    pub fn policy(&self) -> crate::Result<(crate::Policy, crate::Tier)> {
        let mut sources = Vec::new();
        for (path, bytes) in self.files.iter().filter(|(p, _)| p.ends_with(".toml")) {
            let text = std::str::from_utf8(bytes).map_err(|_| crate::Error::Parse {
                file: path.clone(),
                message: "not UTF-8".into(),
            })?;
            sources.push((path.as_str(), text));
        }
        let policy = crate::Policy::from_sources(&sources)?;
        // Verified to be 1..=3; anything else would fall back to the strictest tier.
        let tier = crate::Tier::from_number(self.manifest.autonomy_tier)
            .unwrap_or(crate::Tier::Supervised);
        Ok((policy, tier))
    }
}
