use std::path::{Path, PathBuf};

use clawgate_protocol::{SecretName, SecretString};
use clawgate_vault::{KdfParams, KeySource, Scope, Vault, generate_key_file};
use tempfile::TempDir;

pub(crate) struct Fixture {
    pub(crate) dir: TempDir,
    pub(crate) db: PathBuf,
    pub(crate) key: KeySource,
}

impl Fixture {
    pub(crate) fn new() -> (Self, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("vault.key");
        generate_key_file(&key_path).unwrap();
        let key = KeySource::KeyFile(key_path);
        let db = dir.path().join("vault.db");
        let vault = Vault::create(&db, &key, KdfParams::default()).unwrap();
        (Self { dir, db, key }, vault)
    }

    pub(crate) fn reopen(&self) -> clawgate_vault::Result<Vault> {
        Vault::open(&self.db, &self.key)
    }

    pub(crate) fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).unwrap()
    }

    pub(crate) fn other_key(&self, file: &str) -> KeySource {
        let p = self.dir.path().join(file);
        if !p.exists() {
            generate_key_file(&p).unwrap();
        }
        KeySource::KeyFile(p)
    }
}

pub(crate) fn name(s: &str) -> SecretName {
    s.parse().unwrap()
}

pub(crate) fn secret(s: &str) -> SecretString {
    SecretString::new(s.to_owned())
}

pub(crate) fn any_scope() -> Scope {
    Scope::new(["*"], ["*"]).unwrap()
}

/// Bytes of the database file and its WAL, for grepping.
pub(crate) fn disk_bytes(db: &Path) -> Vec<u8> {
    let mut all = std::fs::read(db).unwrap();
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(b) = std::fs::read(PathBuf::from(p)) {
            all.extend(b);
        }
    }
    all
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !found_needles(hay, &[needle]).is_empty()
}

/// Indexes of the `needles` that occur anywhere in `hay` (overlaps included), in one pass.
pub(crate) fn found_needles<N: AsRef<[u8]>>(hay: &[u8], needles: &[N]) -> Vec<usize> {
    let ac = aho_corasick::AhoCorasick::new(needles).unwrap();
    let mut found: Vec<usize> = ac
        .find_overlapping_iter(hay)
        .map(|m| m.pattern().as_usize())
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}
