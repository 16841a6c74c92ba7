//! The rollback counter: the vault's generation, kept in a small file *outside* the database.
//!
//! Every committed write bumps a generation number stored in the database and covered by the
//! index MAC. Per-record AEAD and the MAC detect any edit, deletion or splice *within* a file, but
//! a whole older copy of the database is self-consistent. So the newest generation is also
//! written here after each commit (authenticated with the index key), and opening a database
//! whose generation is lower than this file's is refused as a rollback. Order of writes: database
//! commit first, counter second, so a crash in between leaves the counter behind (accepted and
//! caught up at open), never ahead (which would be a false alarm).
//!
//! An attacker who can replace both files together defeats this; the Hub heartbeat carries the
//! generation as a third, off-box witness.

use std::path::{Path, PathBuf};

use hmac::Mac;

use crate::crypto::{VAULT_ID_LEN, hmac};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::hardening::KeyBytes;

const MAGIC: &str = "clawgate-vault-generation/v1";

/// The counter file beside a vault database.
#[derive(Debug, Clone)]
pub(crate) struct Counter {
    path: PathBuf,
}

impl Counter {
    pub(crate) fn beside(db: &Path) -> Self {
        let mut name = db.as_os_str().to_owned();
        name.push(".generation");
        Self {
            path: PathBuf::from(name),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn mac(key: &KeyBytes, vault_id: &[u8], generation: i64) -> String {
        let mut mac = hmac(key);
        mac.update(b"clawgate-vault/v1/counter\0");
        mac.update(vault_id);
        mac.update(&generation.to_be_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The stored generation, `None` if the file does not exist.
    pub(crate) fn read(
        &self,
        key: &KeyBytes,
        vault_id: &[u8; VAULT_ID_LEN],
    ) -> Result<Option<i64>> {
        let problem = |p: &str| Error::Counter {
            path: self.path.clone(),
            problem: p.to_owned(),
        };
        let bytes = match clawgate_protocol::io::read_capped(&self.path, 512) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", self.path.display()), e)),
        };
        let text = String::from_utf8(bytes).map_err(|_| problem("not text"))?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [magic, id, generation, mac] = fields[..] else {
            return Err(problem("malformed"));
        };
        if magic != MAGIC {
            return Err(problem("malformed"));
        }
        if id != hex::encode(vault_id) {
            return Err(problem("for another vault"));
        }
        let generation: i64 = generation.parse().map_err(|_| problem("malformed"))?;
        let expected = Self::mac(key, vault_id, generation);
        // Constant-time compare is not needed for a public MAC check, but costs nothing.
        if !clawgate_protocol::secret::constant_time_eq(mac.as_bytes(), expected.as_bytes()) {
            return Err(problem("not authentic (edited outside Clawgate)"));
        }
        Ok(Some(generation))
    }

    /// Records `generation` unless the file already holds a later one: writers in several
    /// processes finish in any order, and the counter must never move backwards.
    pub(crate) fn write(
        &self,
        key: &KeyBytes,
        vault_id: &[u8; VAULT_ID_LEN],
        generation: i64,
    ) -> Result<()> {
        if let Ok(Some(current)) = self.read(key, vault_id)
            && current >= generation
        {
            return Ok(());
        }
        self.reset(key, vault_id, generation)
    }

    /// Records `generation` even if it is lower: only for an explicitly accepted restore.
    pub(crate) fn reset(
        &self,
        key: &KeyBytes,
        vault_id: &[u8; VAULT_ID_LEN],
        generation: i64,
    ) -> Result<()> {
        let line = format!(
            "{MAGIC} {} {generation} {}\n",
            hex::encode(vault_id),
            Self::mac(key, vault_id, generation)
        );
        write_atomic(&self.path, line.as_bytes())
    }
}
