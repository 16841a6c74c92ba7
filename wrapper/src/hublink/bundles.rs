//! The signed bundle in force, on disk: `bundle/current.json` (the verified document, exactly as
//! received) and `bundle/high-water` (the highest version ever accepted). Both are written
//! atomically, the document first: a crash in between leaves a document above the mark, which
//! the next start accepts and records; the other order could leave a mark above the only
//! document, which would then be refused as a rollback.
//!
//! Verification is `clawgate_policies::bundle::verify` against the trust file of
//! `policy.trust_file` and this appliance's tenant. A new bundle must be strictly above the
//! mark; at start the document in force is re-verified with `allow_current`. A bundle past its
//! expiry stays in force (the Hub may be unreachable for a while) and is marked expired: the
//! engine then asks for everything above green.

use std::path::{Path, PathBuf};

use clawgate_policies::bundle::{self, BundleError, Expectations, TrustStore, VerifiedBundle};
use clawgate_policies::{Policy, Tier};

use crate::error::{Error, Result};

/// Where the bundle lives in the state directory.
pub(crate) const CURRENT: &str = "current.json";
const HIGH_WATER: &str = "high-water";

/// What the engine needs to know about the bundle in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    /// Its version.
    pub version: u64,
    /// SHA-256 (hex) of its manifest.
    pub manifest_sha256: String,
    /// SHA-256 (hex) of the whole document, as the Hub announces it.
    pub document_sha256: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// Past its expiry: still enforced, but everything above green is asked.
    pub expired: bool,
}

impl BundleInfo {
    /// The policy version string grants and approvals are bound to.
    pub fn policy_version(&self) -> String {
        format!(
            "bundle:{}:{}",
            self.version,
            &self.manifest_sha256[..16.min(self.manifest_sha256.len())]
        )
    }
}

/// A verified bundle ready to apply.
#[derive(Debug)]
pub struct Active {
    /// About it.
    pub info: BundleInfo,
    /// Its policy.
    pub policy: Policy,
    /// Its autonomy tier.
    pub tier: Tier,
}

/// The bundle directory and the keys bundles are checked against.
#[derive(Debug)]
pub struct BundleStore {
    dir: PathBuf,
    trust: Option<TrustStore>,
    tenant_id: String,
    /// The highest version accepted by this process: the mark in force even if writing the
    /// file failed (the next start re-derives it from the document).
    accepted: std::sync::atomic::AtomicU64,
}

impl BundleStore {
    /// `dir` (created 0700 if missing), the trust file (none: every bundle is refused), the
    /// tenant.
    pub fn open(dir: &Path, trust_file: Option<&Path>, tenant_id: &str) -> Result<BundleStore> {
        crate::daemon::ensure_private_dir(dir)?;
        let trust = match trust_file {
            None => None,
            Some(f) => {
                let bytes = clawgate_protocol::io::read_capped(f, 1024 * 1024)
                    .map_err(|e| Error::io(format!("reading {}", f.display()), e))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| Error::Config(format!("{} is not UTF-8", f.display())))?;
                Some(TrustStore::from_toml(&text)?)
            }
        };
        Ok(BundleStore {
            dir: dir.to_owned(),
            trust,
            tenant_id: tenant_id.to_owned(),
            accepted: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The highest version accepted so far (0: none): the persisted mark, or a higher version
    /// this process accepted.
    pub fn high_water(&self) -> Result<u64> {
        let accepted = self.accepted.load(std::sync::atomic::Ordering::SeqCst);
        Ok(self.persisted_high_water()?.max(accepted))
    }

    fn persisted_high_water(&self) -> Result<u64> {
        let path = self.dir.join(HIGH_WATER);
        if !path.exists() {
            return Ok(0);
        }
        let bytes = clawgate_protocol::io::read_capped(&path, 64)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{} does not hold a version number: refusing to guess the bundle high-water mark",
                    path.display()
                ))
            })
    }

    fn trust(&self) -> std::result::Result<&TrustStore, BundleError> {
        self.trust.as_ref().ok_or_else(|| {
            BundleError::Key(
                "no bundle trust file is configured (policy.trust_file): every pushed bundle is refused"
                    .into(),
            )
        })
    }

    /// The bundle in force, re-verified (`None`: none yet). A document that no longer verifies
    /// (another tenant, a key no longer pinned, below the mark, altered) is an error: the daemon
    /// refuses to start rather than fall back to a policy the Hub did not send.
    pub fn load_current(&self, now: i64) -> Result<Option<Active>> {
        let path = self.dir.join(CURRENT);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = clawgate_protocol::io::read_capped(&path, bundle::MAX_BUNDLE_BYTES as u64)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let high_water = self.high_water()?;
        let check = |now| {
            bundle::verify(
                &bytes,
                self.trust()?,
                &Expectations {
                    tenant_id: &self.tenant_id,
                    high_water,
                    allow_current: true,
                    now,
                },
            )
        };
        let (verified, expired) = match check(now) {
            Ok(v) => (v, false),
            // Past its expiry: everything else is checked as of just before it.
            Err(BundleError::Expired { expires_at, .. }) => (check(expires_at - 1)?, true),
            Err(e) => {
                return Err(Error::Config(format!(
                    "the bundle in force ({}) no longer verifies: {e}; move it aside to start \
                     on the configured policy, or have the Hub push a new one",
                    path.display()
                )));
            }
        };
        let active = activate(&verified, &bytes, expired)?;
        self.accepted
            .fetch_max(active.info.version, std::sync::atomic::Ordering::SeqCst);
        if active.info.version > high_water {
            self.write_high_water(active.info.version)?;
        }
        Ok(Some(active))
    }

    /// Verifies a pushed bundle (strictly above the mark), builds its policy and persists it
    /// (document, then mark). Nothing is written unless every check passed.
    pub fn accept(
        &self,
        bytes: &[u8],
        announced: u64,
        now: i64,
    ) -> std::result::Result<Active, Rejected> {
        let high_water = self.high_water().map_err(Rejected::Local)?;
        let trust = self.trust().map_err(Rejected::Bundle)?;
        let verified = bundle::verify(
            bytes,
            trust,
            &Expectations {
                tenant_id: &self.tenant_id,
                high_water,
                allow_current: false,
                now,
            },
        )
        .map_err(Rejected::Bundle)?;
        if verified.manifest.version != announced {
            return Err(Rejected::Bundle(BundleError::Malformed(format!(
                "the Hub announced version {announced} but the manifest says {}",
                verified.manifest.version
            ))));
        }
        let active = activate(&verified, bytes, false).map_err(Rejected::Local)?;
        clawgate_protocol::io::write_atomic(&self.dir.join(CURRENT), bytes)
            .map_err(|e| Rejected::Local(Error::io("writing the bundle", e)))?;
        // The document is stored: from here on it is the bundle in force (the next start loads
        // it and re-derives the mark), so a failure to write the mark is logged, not a refusal.
        self.accepted
            .fetch_max(active.info.version, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = self.write_high_water(active.info.version) {
            tracing::error!(error = %e, "Writing the bundle high-water mark failed; the next start re-derives it.");
        }
        Ok(active)
    }

    fn write_high_water(&self, version: u64) -> Result<()> {
        clawgate_protocol::io::write_atomic(
            &self.dir.join(HIGH_WATER),
            format!("{version}\n").as_bytes(),
        )
        .map_err(|e| Error::io("writing the bundle high-water mark", e))
    }
}

/// Why a pushed bundle was not applied.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// The bundle failed verification.
    #[error(transparent)]
    Bundle(BundleError),
    /// Its policy does not load, or it could not be stored.
    #[error(transparent)]
    Local(Error),
}

fn activate(verified: &VerifiedBundle, bytes: &[u8], expired: bool) -> Result<Active> {
    let (policy, tier) = verified.policy()?;
    let document_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
    Ok(Active {
        info: BundleInfo {
            version: verified.manifest.version,
            manifest_sha256: verified.manifest_sha256.clone(),
            document_sha256,
            expires_at: verified.manifest.expires_at,
            expired,
        },
        policy,
        tier,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use clawgate_policies::bundle::{BundleSigner, ManifestTemplate};

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn bundle(signer: &BundleSigner, tenant: &str, version: u64, expires_at: i64) -> Vec<u8> {
        let files: BTreeMap<String, Vec<u8>> = Policy::default_sources()
            .iter()
            .map(|(n, t)| ((*n).to_owned(), t.as_bytes().to_vec()))
            .collect();
        signer
            .sign(
                &ManifestTemplate {
                    tenant_id: tenant,
                    version,
                    issued_at: NOW - 60,
                    expires_at,
                    autonomy_tier: 1,
                },
                &files,
            )
            .unwrap()
    }

    fn store(dir: &Path, signer: &BundleSigner) -> BundleStore {
        let trust = dir.join("trust.toml");
        std::fs::write(&trust, signer.trust_entry()).unwrap();
        BundleStore::open(&dir.join("bundle"), Some(&trust), "t1").unwrap()
    }

    #[test]
    fn accepts_only_newer_versions_and_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let signer = BundleSigner::generate("k1").unwrap();
        let s = store(dir.path(), &signer);
        assert!(s.load_current(NOW).unwrap().is_none());
        let v2 = bundle(&signer, "t1", 2, NOW + 3600);
        assert_eq!(s.accept(&v2, 2, NOW).unwrap().info.version, 2);
        assert_eq!(s.high_water().unwrap(), 2);
        for (bytes, announced, code) in [
            (bundle(&signer, "t1", 1, NOW + 3600), 1, "not newer"),
            (v2.clone(), 2, "not newer"),
            (bundle(&signer, "t2", 3, NOW + 3600), 3, "tenant"),
            (
                bundle(&BundleSigner::generate("k2").unwrap(), "t1", 3, NOW + 3600),
                3,
                "trusted key",
            ),
            (
                bundle(&signer, "t1", 3, NOW + 3600),
                4,
                "announced version 4",
            ),
        ] {
            let err = s.accept(&bytes, announced, NOW).unwrap_err().to_string();
            assert!(err.contains(code), "{code}: {err}");
        }
        // Nothing refused was written: v2 is still the one in force.
        let current = s.load_current(NOW).unwrap().unwrap();
        assert_eq!(current.info.version, 2);
        assert!(!current.info.expired);
        assert_eq!(s.high_water().unwrap(), 2);
    }

    #[test]
    fn an_expired_bundle_stays_in_force_marked_expired_and_a_rolled_back_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let signer = BundleSigner::generate("k1").unwrap();
        let s = store(dir.path(), &signer);
        let v5 = bundle(&signer, "t1", 5, NOW + 60);
        s.accept(&v5, 5, NOW).unwrap();
        let later = s.load_current(NOW + 3600).unwrap().unwrap();
        assert!(later.info.expired);
        assert_eq!(later.info.version, 5);
        // An older document put back in place of the current one is a rollback.
        let v4 = bundle(&signer, "t1", 4, NOW + 3600);
        std::fs::write(dir.path().join("bundle").join(CURRENT), &v4).unwrap();
        let err = s.load_current(NOW).unwrap_err().to_string();
        assert!(err.contains("no longer verifies"), "{err}");
        // No trust file: every bundle is refused.
        let none = BundleStore::open(&dir.path().join("other"), None, "t1").unwrap();
        let err = none.accept(&v5, 5, NOW).unwrap_err().to_string();
        assert!(err.contains("trust file"), "{err}");
    }
}
