//! The vault itself: an SQLite file of sealed records under a key hierarchy.
//!
//! ```text
//! master key (KEK)  ← Argon2id(passphrase, salt) | HKDF(key file or systemd credential, salt)
//!   ├─ kek_check    = HMAC(KEK, vault id)                  wrong key → refused before any record
//!   ├─ index key    = HKDF(KEK, vault id, "index-mac")     HMAC over every row + generation
//!   └─ DEK[term]    wrapped with XChaCha20-Poly1305, AAD = (vault id, term)
//!        └─ record  sealed with XChaCha20-Poly1305, fresh 24-byte nonce,
//!                   AAD = (vault id, name, version, term, scope)
//! ```
//!
//! Every write runs in one `BEGIN IMMEDIATE` transaction that first re-verifies the index MAC
//! (so a write never launders tampering that happened while the vault was open), applies the
//! change, bumps the generation, re-computes the MAC and commits; the generation is then written
//! to the rollback counter outside the file ([`crate::counter`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use clawgate_protocol::secret::constant_time_eq as ct_eq;
use clawgate_protocol::{SecretName, SecretRef, SecretString};
use hmac::Mac;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde::Serialize;

use crate::counter::Counter;
use crate::crypto::{
    VAULT_ID_LEN, dek_aad, fill_random, hkdf, hmac, open, random_key, record_aad, seal,
};
use crate::error::{Error, Result};
use crate::hardening::{KEY_LEN, KeyBytes};
use crate::keys::{KdfParams, KekKind, KeySource, derive_kek};
use crate::scope::{ResolveContext, Scope};

/// The on-disk format this build reads and writes (SQLite `user_version`).
pub const FORMAT: i64 = 1;
/// SQLite `application_id`: "CLGV".
pub const APPLICATION_ID: i32 = 0x434C_4756;
/// Largest secret value accepted.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value ANY NOT NULL) STRICT;
CREATE TABLE keyring (
    term INTEGER PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('active', 'decrypt_only', 'retired')),
    wrapped BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE heads (
    name TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE records (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    term INTEGER NOT NULL REFERENCES keyring (term),
    scope TEXT NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) STRICT;
CREATE INDEX records_by_term ON records (term);
CREATE TABLE changelog (
    seq INTEGER PRIMARY KEY, -- rowid: monotonic because rows are never deleted; AUTOINCREMENT would dirty a second page per insert
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    name TEXT,
    version INTEGER,
    tool TEXT,
    hosts TEXT,
    outcome TEXT NOT NULL,
    detail TEXT
) STRICT;
";

/// Public facts about one secret (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordInfo {
    /// Name.
    pub name: String,
    /// Current version (1 for the first put; kept across removal and re-creation).
    pub version: i64,
    /// Key term the current version is sealed under.
    pub term: i64,
    /// Scope of the current version.
    pub scope: Scope,
    /// First put, Unix milliseconds.
    pub created_at_ms: i64,
    /// Latest put, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// One change-log entry: what happened to which secret, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeEntry {
    /// Monotonic sequence number.
    pub seq: i64,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// `init`, `put`, `remove`, `reveal`, `resolve`, `rotate-begin`, `rotate-batch`,
    /// `rotate-finish`, `rekey`, `restore-accepted`.
    pub action: String,
    /// Secret concerned, if any.
    pub name: Option<String>,
    /// Version concerned, if any.
    pub version: Option<i64>,
    /// Tool a resolution was for.
    pub tool: Option<String>,
    /// Hosts a resolution was for.
    pub hosts: Vec<String>,
    /// `ok`, `denied` or `not-found`.
    pub outcome: String,
    /// Reason or counts.
    pub detail: Option<String>,
}

/// What a full [`Vault::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Current generation.
    pub generation: i64,
    /// Live secrets.
    pub secrets: usize,
    /// Stored versions, all decrypted and checked.
    pub versions: usize,
    /// Key terms still holding a key.
    pub live_terms: usize,
    /// Records still sealed under a pre-rotation term (non-zero: a rotation is unfinished).
    pub pending_reseal: usize,
}

/// Result of [`Vault::rotate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// The term all records are now sealed under.
    pub term: i64,
    /// True when an interrupted rotation was finished instead of starting a new term.
    pub resumed: bool,
    /// Records re-sealed by this call.
    pub resealed: usize,
    /// Terms retired (wrapped key erased).
    pub retired: usize,
}

#[derive(Debug)]
struct MasterKeys {
    kek: KeyBytes,
    index: KeyBytes,
    kek_check: [u8; 32],
}

/// An unlocked vault. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Vault {
    path: PathBuf,
    conn: Mutex<Connection>,
    vault_id: [u8; VAULT_ID_LEN],
    master: RwLock<MasterKeys>,
    deks: RwLock<BTreeMap<i64, Arc<KeyBytes>>>,
    counter: Counter,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn master_keys(kek: KeyBytes, vault_id: &[u8]) -> Result<MasterKeys> {
    let index = hkdf(kek.as_bytes(), vault_id, b"clawgate-vault/v1/index-mac")?;
    let mut mac = hmac(&kek);
    mac.update(b"clawgate-vault/v1/kek-check\0");
    mac.update(vault_id);
    let kek_check = mac.finalize().into_bytes().into();
    Ok(MasterKeys {
        kek,
        index,
        kek_check,
    })
}

/// Maps SQLite's "this is not a database / it is damaged" errors to a clear [`Error::Corrupt`].
fn corrupt_or(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase, SystemIoFailure};
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if matches!(f.code, DatabaseCorrupt | NotADatabase | SystemIoFailure) =>
        {
            Error::Corrupt {
                reason: msg.clone().unwrap_or_else(|| f.to_string()),
            }
        }
        _ => Error::Sqlite(e),
    }
}

/// Reads the 100-byte SQLite header and checks it names a Clawgate vault of our format, before
/// SQLite is allowed near the file (so garbage is refused without being touched).
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let not = |reason: &str| Error::NotAVault {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Missing(path.to_owned()));
        }
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let mut header = [0u8; 100];
    let mut filled = 0;
    while filled < header.len() {
        match file.read(&mut header[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
    if filled == 0 {
        return Err(not("the file is empty"));
    }
    if filled < header.len() || &header[..16] != SQLITE_MAGIC {
        return Err(not("it is not an SQLite database"));
    }
    let app_id = i32::from_be_bytes([header[68], header[69], header[70], header[71]]);
    if app_id != APPLICATION_ID {
        return Err(not("it is an SQLite database of another application"));
    }
    let format = i64::from(i32::from_be_bytes([
        header[60], header[61], header[62], header[63],
    ]));
    if format != FORMAT {
        return Err(Error::UnsupportedFormat {
            found: format,
            supported: FORMAT,
        });
    }
    Ok(())
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // secure_delete: freed cells and pages are zeroed, so removed records and retired keys do
    // not linger. temp_store=MEMORY: VACUUM's temporary copy never touches /tmp.
    conn.execute_batch(
        "PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = ON; \
         PRAGMA synchronous = NORMAL;",
    )
    .map_err(corrupt_or)?;
    Ok(())
}

fn get_meta<T: rusqlite::types::FromSql>(conn: &Connection, key: &str) -> Result<T> {
    // Cached: the generation is read before every hook decision and every proxied request.
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
        .map_err(corrupt_or)?
        .ok_or_else(|| Error::tampered(format!("the vault header (`{key}` missing)")))
}

fn set_meta(conn: &Connection, key: &str, value: impl rusqlite::ToSql) -> Result<()> {
    conn.execute("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", params![key, value])?;
    Ok(())
}

fn meta_blob<const N: usize>(conn: &Connection, key: &str) -> Result<[u8; N]> {
    let v: Vec<u8> = get_meta(conn, key)?;
    v.try_into()
        .map_err(|_| Error::tampered(format!("the vault header (`{key}` has the wrong length)")))
}

/// One column of an authenticated row: integers as 8 big-endian bytes, text and blobs
/// length-prefixed (format 1's encoding; the golden fixture test holds it). Anything else cannot
/// occur in these STRICT tables and is fed as a marker that never verifies.
fn mac_column(mac: &mut crate::crypto::HmacSha256, value: rusqlite::types::ValueRef<'_>) {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Integer(i) => mac.update(&i.to_be_bytes()),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        }
        ValueRef::Null | ValueRef::Real(_) => mac.update(b"\xff-not-a-format-1-column"),
    }
}

/// Streams every authenticated row into an HMAC. Order is fixed by the queries' ORDER BY.
fn index_mac(
    conn: &Connection,
    key: &KeyBytes,
    vault_id: &[u8],
    generation: i64,
) -> Result<[u8; 32]> {
    fn field(mac: &mut crate::crypto::HmacSha256, bytes: &[u8]) {
        mac.update(&(bytes.len() as u64).to_be_bytes());
        mac.update(bytes);
    }
    let mut mac = hmac(key);
    field(&mut mac, b"clawgate-vault/v1/index");
    field(&mut mac, vault_id);
    mac.update(&generation.to_be_bytes());
    for key in ["format", "kek_kind", "kdf", "salt", "kek_check"] {
        let value: rusqlite::types::Value = get_meta(conn, key)?;
        field(&mut mac, key.as_bytes());
        match value {
            rusqlite::types::Value::Integer(i) => field(&mut mac, &i.to_be_bytes()),
            rusqlite::types::Value::Text(t) => field(&mut mac, t.as_bytes()),
            rusqlite::types::Value::Blob(b) => field(&mut mac, &b),
            _ => field(&mut mac, b"?"),
        }
    }
    for (label, sql, columns) in [
        (
            "keyring",
            "SELECT term, status, wrapped, created_at FROM keyring ORDER BY term",
            4,
        ),
        (
            "heads",
            "SELECT name, version, deleted, created_at, updated_at FROM heads ORDER BY name",
            5,
        ),
        (
            "records",
            "SELECT name, version, term, scope, nonce, sealed, created_at FROM records ORDER BY name, version",
            7,
        ),
    ] {
        field(&mut mac, label.as_bytes());
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            for i in 0..columns {
                mac_column(&mut mac, row.get_ref(i)?);
            }
        }
    }
    Ok(mac.finalize().into_bytes().into())
}

/// Verifies the stored MAC against the current rows; returns the generation it covers.
fn verify_index(conn: &Connection, key: &KeyBytes, vault_id: &[u8]) -> Result<i64> {
    let generation: i64 = get_meta(conn, "generation")?;
    let stored: [u8; 32] = meta_blob(conn, "index_mac")?;
    let computed = index_mac(conn, key, vault_id, generation)?;
    if !ct_eq(&stored, &computed) {
        return Err(Error::tampered(
            "the record index (a row was added, removed, replaced or rolled back)",
        ));
    }
    Ok(generation)
}

fn wrap_dek(kek: &KeyBytes, vault_id: &[u8], term: i64, dek: &KeyBytes) -> Result<Vec<u8>> {
    let (nonce, sealed) = seal(kek, dek_aad(vault_id, term).as_slice(), dek.as_bytes())?;
    Ok([nonce.as_slice(), &sealed].concat())
}

fn unwrap_dek(kek: &KeyBytes, vault_id: &[u8], term: i64, wrapped: &[u8]) -> Result<KeyBytes> {
    let bad = || Error::tampered(format!("the wrapped data key of term {term}"));
    let (nonce, sealed) = wrapped
        .split_at_checked(crate::crypto::NONCE_LEN)
        .ok_or_else(bad)?;
    let plain = open(kek, nonce, dek_aad(vault_id, term).as_slice(), sealed).ok_or_else(bad)?;
    let mut raw: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| bad())?;
    Ok(KeyBytes::from_array(&mut raw))
}

fn load_deks(
    conn: &Connection,
    kek: &KeyBytes,
    vault_id: &[u8],
) -> Result<BTreeMap<i64, Arc<KeyBytes>>> {
    let mut stmt =
        conn.prepare_cached("SELECT term, wrapped FROM keyring WHERE status != 'retired'")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let mut deks = BTreeMap::new();
    for row in rows {
        let (term, wrapped) = row?;
        deks.insert(term, Arc::new(unwrap_dek(kek, vault_id, term, &wrapped)?));
    }
    Ok(deks)
}

fn active_term(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT term FROM keyring WHERE status = 'active'",
        [],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::tampered("the keyring (no active key)"))
}

/// A change-log row about to be written.
#[derive(Debug, Default)]
struct Change<'a> {
    action: &'a str,
    name: Option<&'a str>,
    version: Option<i64>,
    tool: Option<&'a str>,
    hosts: Option<String>,
    outcome: &'a str,
    detail: Option<String>,
}

fn log_change(conn: &Connection, c: Change<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO changelog (at, action, name, version, tool, hosts, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![now_ms(), c.action, c.name, c.version, c.tool, c.hosts, c.outcome, c.detail])?;
    Ok(())
}

/// What an open verified: vault id, master keys, the authenticated generation, the data keys.
type Checked = (
    [u8; VAULT_ID_LEN],
    MasterKeys,
    i64,
    BTreeMap<i64, Arc<KeyBytes>>,
);

/// A record row as stored.
struct SealedRow {
    name: String,
    version: i64,
    term: i64,
    scope: String,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
}

impl Vault {
    /// Creates a new vault at `path` (which must not exist), unlocked by `source`. For
    /// passphrases, `kdf` sets the Argon2id cost (stored in the header).
    pub fn create(path: &Path, source: &KeySource, kdf: KdfParams) -> Result<Self> {
        kdf.validate()?;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(path);
        match created {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(path.to_owned()));
            }
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
            Ok(_) => {}
        }
        let result = Self::initialise(path, source, kdf);
        if result.is_err() {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
        result
    }

    fn initialise(path: &Path, source: &KeySource, kdf: KdfParams) -> Result<Self> {
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {FORMAT}; PRAGMA journal_mode = WAL;"
        ))?;
        configure(&conn)?;
        let mut vault_id = [0u8; VAULT_ID_LEN];
        let mut salt = [0u8; 16];
        fill_random(&mut vault_id)?;
        fill_random(&mut salt)?;
        let kind = source.kind();
        let master = master_keys(derive_kek(source, &salt, &kdf)?, &vault_id)?;
        let dek = random_key()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        set_meta(&tx, "format", FORMAT)?;
        set_meta(&tx, "vault_id", vault_id.as_slice())?;
        set_meta(&tx, "kek_kind", kind.as_str())?;
        set_meta(&tx, "kdf", kdf_json(kind, &kdf))?;
        set_meta(&tx, "salt", salt.as_slice())?;
        set_meta(&tx, "kek_check", master.kek_check.as_slice())?;
        tx.execute(
            "INSERT INTO keyring (term, status, wrapped, created_at) VALUES (1, 'active', ?1, ?2)",
            params![wrap_dek(&master.kek, &vault_id, 1, &dek)?, now_ms()],
        )?;
        log_change(
            &tx,
            Change {
                action: "init",
                outcome: "ok",
                detail: Some(format!("key: {}", kind.describe())),
                ..Default::default()
            },
        )?;
        set_meta(&tx, "generation", 1i64)?;
        set_meta(
            &tx,
            "index_mac",
            index_mac(&tx, &master.index, &vault_id, 1)?.as_slice(),
        )?;
        tx.commit()?;
        // Move the header (application id, format) into the main file now, so `check_header`
        // sees it even if this process dies before SQLite's own checkpoint.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let counter = Counter::beside(path);
        counter.write(&master.index, &vault_id, 1)?;
        let deks = BTreeMap::from([(1, Arc::new(dek))]);
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
            vault_id,
            master: RwLock::new(master),
            deks: RwLock::new(deks),
            counter,
        })
    }

    /// Opens and unlocks the vault at `path`: header, SQLite integrity, key check, index MAC and
    /// rollback counter, in that order. A wrong key is refused before any record is read.
    pub fn open(path: &Path, source: &KeySource) -> Result<Self> {
        Self::open_inner(path, source, false)
    }

    /// Like [`Vault::open`], but accepts a database older than the rollback counter (after a
    /// deliberate restore from backup) and resets the counter to it. Every other check still
    /// applies. The acceptance is recorded in the change log.
    pub fn open_accepting_restore(path: &Path, source: &KeySource) -> Result<Self> {
        Self::open_inner(path, source, true)
    }

    fn open_inner(path: &Path, source: &KeySource, accept_restore: bool) -> Result<Self> {
        check_header(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(corrupt_or)?;
        configure(&conn)?;
        let (vault_id, master, generation, deks) = Self::check_snapshot(&conn, source)?;
        let counter = Counter::beside(path);
        let vault = Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
            vault_id,
            master: RwLock::new(master),
            deks: RwLock::new(deks),
            counter,
        };
        if accept_restore {
            vault.write(|tx, _| {
                log_change(
                    tx,
                    Change {
                        action: "restore-accepted",
                        outcome: "ok",
                        detail: Some(format!("accepted generation {generation}")),
                        ..Default::default()
                    },
                )
            })?;
            // The counter only moves forward on its own; accepting a restore moves it back.
            let master = vault.master.read().map_err(|_| Error::Poisoned)?;
            vault
                .counter
                .reset(&master.index, &vault.vault_id, vault.generation()?)?;
        } else {
            vault.check_counter(generation)?;
        }
        Ok(vault)
    }

    /// Every open-time check, inside one read transaction so they all see the same snapshot: a
    /// write committed by another process between reading the stored MAC and reading the rows
    /// would otherwise look like tampering.
    fn check_snapshot(conn: &Connection, source: &KeySource) -> Result<Checked> {
        let snapshot = conn.unchecked_transaction()?;
        let conn: &Connection = &snapshot;
        let check: String = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(corrupt_or)?;
        if check != "ok" {
            return Err(Error::Corrupt { reason: check });
        }
        let format: i64 = get_meta(conn, "format")?;
        if format != FORMAT {
            return Err(Error::UnsupportedFormat {
                found: format,
                supported: FORMAT,
            });
        }
        let vault_id: [u8; VAULT_ID_LEN] = meta_blob(conn, "vault_id")?;
        let kind_text: String = get_meta(conn, "kek_kind")?;
        let kind = KekKind::parse(&kind_text)
            .ok_or_else(|| Error::tampered("the vault header (unknown key kind)"))?;
        if kind != source.kind() {
            return Err(Error::KeyKindMismatch {
                expected: kind.describe(),
                given: source.kind().describe(),
            });
        }
        let kdf = parse_kdf(&get_meta::<String>(conn, "kdf")?)?;
        let salt: [u8; 16] = meta_blob(conn, "salt")?;
        let master = master_keys(derive_kek(source, &salt, &kdf)?, &vault_id)?;
        let stored_check: [u8; 32] = meta_blob(conn, "kek_check")?;
        if !ct_eq(&stored_check, &master.kek_check) {
            return Err(Error::WrongKey);
        }
        let generation = verify_index(conn, &master.index, &vault_id)?;
        let deks = load_deks(conn, &master.kek, &vault_id)?;
        snapshot.commit()?;
        Ok((vault_id, master, generation, deks))
    }

    fn check_counter(&self, generation: i64) -> Result<()> {
        let master = self.master.read().map_err(|_| Error::Poisoned)?;
        match self.counter.read(&master.index, &self.vault_id)? {
            None => Err(Error::Counter {
                path: self.counter.path().to_owned(),
                problem: "missing".into(),
            }),
            Some(expected) if generation < expected => {
                // Writers commit the database before the counter, so our snapshot may just be
                // older than a commit that landed meanwhile. Re-verify a fresh snapshot (the MAC
                // authenticates its generation) before calling it a rollback.
                let fresh = {
                    let conn = self.lock()?;
                    let snapshot = conn.unchecked_transaction()?;
                    let fresh = verify_index(&snapshot, &master.index, &self.vault_id)?;
                    snapshot.commit()?;
                    fresh
                };
                if fresh >= expected {
                    Ok(())
                } else {
                    Err(Error::RolledBack {
                        found: fresh,
                        expected,
                    })
                }
            }
            // Behind: a crash between the database commit and the counter update. Catch up.
            Some(expected) if generation > expected => {
                self.counter
                    .write(&master.index, &self.vault_id, generation)
            }
            Some(_) => Ok(()),
        }
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vault's current generation (bumped by every committed write).
    pub fn generation(&self) -> Result<i64> {
        get_meta(&*self.lock()?, "generation")
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| Error::Poisoned)
    }

    /// Runs `change` in one immediate transaction between a verification of the index MAC and
    /// its re-computation, bumps the generation, commits durably and updates the counter.
    fn write<T>(
        &self,
        change: impl FnOnce(&Transaction<'_>, &MasterKeys) -> Result<T>,
    ) -> Result<T> {
        let master = self.master.read().map_err(|_| Error::Poisoned)?;
        let mut conn = self.lock()?;
        let stale = || Error::Counter {
            path: self.path.clone(),
            problem:
                "unusable by this process: the vault was rekeyed by another process; reopen it"
                    .into(),
        };
        let (out, generation) =
            self.guarded_commit(&mut conn, &master, &master.index, stale, change)?;
        drop(conn);
        self.counter
            .write(&master.index, &self.vault_id, generation)?;
        Ok(out)
    }

    /// The transaction every write shares: `synchronous=FULL`, `BEGIN IMMEDIATE`, a check that
    /// the stored key check still matches `master` (else `stale()`), the index MAC verified
    /// before `change` (so a write never launders tampering), the generation bumped and the MAC
    /// re-computed with `mac_after` (the new index key when rekeying). Returns the new generation;
    /// the caller updates the counter once its locks allow.
    fn guarded_commit<T>(
        &self,
        conn: &mut Connection,
        master: &MasterKeys,
        mac_after: &KeyBytes,
        stale: impl FnOnce() -> Error,
        change: impl FnOnce(&Transaction<'_>, &MasterKeys) -> Result<T>,
    ) -> Result<(T, i64)> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored_check: [u8; 32] = meta_blob(&tx, "kek_check")?;
            if !ct_eq(&stored_check, &master.kek_check) {
                return Err(stale());
            }
            let generation = verify_index(&tx, &master.index, &self.vault_id)? + 1;
            let out = change(&tx, master)?;
            set_meta(&tx, "generation", generation)?;
            set_meta(
                &tx,
                "index_mac",
                index_mac(&tx, mac_after, &self.vault_id, generation)?.as_slice(),
            )?;
            tx.commit()?;
            Ok((out, generation))
        })();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        result
    }

    /// The data key of `term`. Lock order everywhere is master → connection → deks, so this
    /// takes the already-held connection and master keys instead of locking them again.
    fn dek(&self, conn: &Connection, master: &MasterKeys, term: i64) -> Result<Arc<KeyBytes>> {
        if let Some(k) = self.deks.read().map_err(|_| Error::Poisoned)?.get(&term) {
            return Ok(Arc::clone(k));
        }
        // Another process may have rotated: reload the keyring once.
        let fresh = load_deks(conn, &master.kek, &self.vault_id)?;
        let mut deks = self.deks.write().map_err(|_| Error::Poisoned)?;
        *deks = fresh;
        deks.get(&term).cloned().ok_or_else(|| {
            Error::tampered(format!("a record (sealed under unknown key term {term})"))
        })
    }

    fn seal_record(
        &self,
        master_dek: &KeyBytes,
        name: &str,
        version: i64,
        term: i64,
        scope_json: &str,
        value: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let aad = record_aad(&self.vault_id, name, version, term, scope_json);
        let (nonce, sealed) = seal(master_dek, aad.as_slice(), value)?;
        Ok((nonce.to_vec(), sealed))
    }

    fn open_record(
        &self,
        conn: &Connection,
        master: &MasterKeys,
        row: &SealedRow,
    ) -> Result<SecretString> {
        let dek = self.dek(conn, master, row.term)?;
        let aad = record_aad(&self.vault_id, &row.name, row.version, row.term, &row.scope);
        let plain = open(&dek, &row.nonce, aad.as_slice(), &row.sealed).ok_or_else(|| {
            Error::tampered(format!("record {} version {}", row.name, row.version))
        })?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| Error::tampered(format!("record {} version {}", row.name, row.version)))?;
        Ok(SecretString::new(text.to_owned()))
    }

    /// Stores `value` as a new version of `name` with `scope`. Returns the new version.
    pub fn put(&self, name: &SecretName, value: &SecretString, scope: &Scope) -> Result<i64> {
        let versions = self.put_many(&[(name.clone(), value.clone(), scope.clone())])?;
        versions
            .into_iter()
            .next()
            .ok_or(Error::InvalidValue("nothing stored"))
    }

    /// Stores several secrets in one transaction: all or none.
    pub fn put_many(&self, items: &[(SecretName, SecretString, Scope)]) -> Result<Vec<i64>> {
        for (_, value, _) in items {
            validate_value(value)?;
        }
        self.write(|tx, master| {
            let term = active_term(tx)?;
            let dek = self.dek(tx, master, term)?;
            let now = now_ms();
            let mut versions = Vec::with_capacity(items.len());
            for (name, value, scope) in items {
                let head: Option<(i64, bool, i64)> = tx
                    .query_row("SELECT version, deleted, created_at FROM heads WHERE name = ?1", [name.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                let version = head.map_or(1, |h| h.0 + 1);
                let created_at = match head {
                    Some((_, false, created)) => created,
                    _ => now,
                };
                let scope_json = scope.to_json();
                let (nonce, sealed) = self.seal_record(&dek, name.as_str(), version, term, &scope_json, value.expose().as_bytes())?;
                tx.execute(
                    "INSERT INTO records (name, version, term, scope, nonce, sealed, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![name.as_str(), version, term, scope_json, nonce, sealed, now],
                )?;
                tx.execute(
                    "INSERT INTO heads (name, version, deleted, created_at, updated_at) VALUES (?1, ?2, 0, ?3, ?4) \
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version, deleted = 0, created_at = excluded.created_at, updated_at = excluded.updated_at",
                    params![name.as_str(), version, created_at, now],
                )?;
                log_change(tx, Change { action: "put", name: Some(name.as_str()), version: Some(version), outcome: "ok", detail: Some(scope_json), ..Default::default() })?;
                versions.push(version);
            }
            Ok(versions)
        })
    }

    fn current_row(conn: &Connection, name: &str) -> Result<Option<SealedRow>> {
        Ok(conn
            // A subquery, not a join: with the bundled SQLite's STAT4, the join form propagates ?1
            // through `r.name = h.name` and the statement is re-planned on every call (measured:
            // one reprepare per resolve, most of its cost).
            .prepare_cached(
                "SELECT name, version, term, scope, nonce, sealed FROM records \
                 WHERE name = ?1 AND version = (SELECT version FROM heads WHERE name = ?1 AND deleted = 0)",
            )?
            .query_row([name], row_from_sql)
            .optional()?)
    }

    /// The current value of `name`, for an administrator (`clawgate vault get`). Logged as a
    /// `reveal`. Agents never come through here: they get [`Vault::resolve`].
    pub fn get(&self, name: &SecretName) -> Result<SecretString> {
        let master = self.master.read().map_err(|_| Error::Poisoned)?;
        let conn = self.lock()?;
        let row = Self::current_row(&conn, name.as_str())?;
        let Some(row) = row else {
            log_change(
                &conn,
                Change {
                    action: "reveal",
                    name: Some(name.as_str()),
                    outcome: "not-found",
                    ..Default::default()
                },
            )?;
            return Err(Error::NotFound(name.to_string()));
        };
        let value = self.open_record(&conn, &master, &row)?;
        log_change(
            &conn,
            Change {
                action: "reveal",
                name: Some(name.as_str()),
                version: Some(row.version),
                outcome: "ok",
                ..Default::default()
            },
        )?;
        Ok(value)
    }

    /// A specific stored version of `name` (versions are kept until the secret is removed).
    pub fn get_version(&self, name: &SecretName, version: i64) -> Result<SecretString> {
        let master = self.master.read().map_err(|_| Error::Poisoned)?;
        let conn = self.lock()?;
        let row = conn
            .prepare_cached(
                "SELECT r.name, r.version, r.term, r.scope, r.nonce, r.sealed FROM records r JOIN heads h ON h.name = r.name \
                 WHERE r.name = ?1 AND r.version = ?2 AND h.deleted = 0",
            )?
            .query_row(params![name.as_str(), version], row_from_sql)
            .optional()?;
        let row = row.ok_or_else(|| Error::NotFound(format!("{name} version {version}")))?;
        let value = self.open_record(&conn, &master, &row)?;
        log_change(
            &conn,
            Change {
                action: "reveal",
                name: Some(name.as_str()),
                version: Some(version),
                outcome: "ok",
                ..Default::default()
            },
        )?;
        Ok(value)
    }

    /// Resolves `SECRET_REF(name)` for a tool call, checking the secret's scope first. An
    /// out-of-scope use is refused with [`Error::OutOfScope`] and logged as `denied`; every
    /// resolution is logged (names, tool and hosts; never the value).
    pub fn resolve(&self, reference: &SecretRef, ctx: &ResolveContext<'_>) -> Result<SecretString> {
        let name = reference.name.as_str();
        let master = self.master.read().map_err(|_| Error::Poisoned)?;
        let mut conn = self.lock()?;
        // One transaction for the lookup and its log entry. IMMEDIATE, not deferred: upgrading a
        // read to a write fails at once (SQLITE_BUSY, no busy timeout) if another process
        // committed in between, which would fail a resolution just because the CLI wrote.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (outcome, version, detail, result) = match Self::current_row(&tx, name)? {
            None => (
                "not-found",
                None,
                None,
                Err(Error::NotFound(name.to_owned())),
            ),
            Some(row) => match Scope::from_json(&row.scope).and_then(|scope| {
                scope.check(ctx).map_err(|reason| Error::OutOfScope {
                    name: name.to_owned(),
                    reason,
                })
            }) {
                Err(e @ Error::OutOfScope { .. }) => {
                    ("denied", Some(row.version), Some(e.to_string()), Err(e))
                }
                // The AEAD also authenticates the scope just checked: a widened scope fails here.
                Ok(()) => match self.open_record(&tx, &master, &row) {
                    Ok(value) => ("ok", Some(row.version), None, Ok(value)),
                    Err(e) => ("error", Some(row.version), Some(e.to_string()), Err(e)),
                },
                Err(e) => ("error", Some(row.version), Some(e.to_string()), Err(e)),
            },
        };
        let hosts =
            (!ctx.hosts.is_empty()).then(|| serde_json::to_string(ctx.hosts).unwrap_or_default());
        log_change(
            &tx,
            Change {
                action: "resolve",
                name: Some(name),
                version,
                tool: Some(ctx.tool),
                hosts,
                outcome,
                detail,
            },
        )?;
        tx.commit()?;
        result
    }

    /// Every live secret's current value, for building the redactor (which must know every
    /// value to find it in prompts and tool output). Logged once as `load-for-redaction` with the
    /// count; names only.
    pub fn values_for_redaction(&self) -> Result<Vec<(SecretName, SecretString)>> {
        let master = self.master.read().map_err(|_| Error::Poisoned)?;
        let conn = self.lock()?;
        let rows: Vec<SealedRow> = conn
            .prepare_cached(
                "SELECT name, version, term, scope, nonce, sealed FROM records r \
                 WHERE version = (SELECT version FROM heads h WHERE h.name = r.name AND h.deleted = 0)",
            )?
            .query_map([], row_from_sql)?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let name = SecretName::new(&row.name).map_err(|_| Error::tampered("a record name"))?;
            out.push((name, self.open_record(&conn, &master, row)?));
        }
        log_change(
            &conn,
            Change {
                action: "load-for-redaction",
                outcome: "ok",
                detail: Some(format!("{} value(s)", out.len())),
                ..Default::default()
            },
        )?;
        Ok(out)
    }

    /// Every live secret, by name.
    pub fn list(&self) -> Result<Vec<RecordInfo>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT h.name, h.version, r.term, r.scope, h.created_at, h.updated_at FROM heads h \
             JOIN records r ON r.name = h.name AND r.version = h.version WHERE h.deleted = 0 ORDER BY h.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, String>(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        rows.map(|row| {
            let (name, version, term, scope, created_at_ms, updated_at_ms) = row?;
            Ok(RecordInfo {
                name,
                version,
                term,
                scope: Scope::from_json(&scope)?,
                created_at_ms,
                updated_at_ms,
            })
        })
        .collect()
    }

    /// Removes `name` and all its versions (their bytes are zeroed by `secure_delete`, and the
    /// file is compacted so no copy survives in the WAL). The version counter is kept, so a
    /// later put continues the numbering.
    pub fn remove(&self, name: &SecretName) -> Result<()> {
        self.write(|tx, _| {
            let live: Option<i64> = tx
                .query_row(
                    "SELECT version FROM heads WHERE name = ?1 AND deleted = 0",
                    [name.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let version = live.ok_or_else(|| Error::NotFound(name.to_string()))?;
            tx.execute("DELETE FROM records WHERE name = ?1", [name.as_str()])?;
            tx.execute(
                "UPDATE heads SET deleted = 1, updated_at = ?2 WHERE name = ?1",
                params![name.as_str(), now_ms()],
            )?;
            log_change(
                tx,
                Change {
                    action: "remove",
                    name: Some(name.as_str()),
                    version: Some(version),
                    outcome: "ok",
                    ..Default::default()
                },
            )
        })?;
        // secure_delete zeroed the cells in the database pages, but earlier WAL frames still
        // hold copies of those pages until the WAL is checkpointed and truncated.
        self.compact()
    }

    /// Rotates the data key online: a new term for all new writes, then re-seals every stored
    /// version in batches of `batch` (each its own transaction, so reads and writes interleave
    /// and a crash loses nothing), then retires the old terms and vacuums them out of the file.
    /// An interrupted rotation is finished instead of starting another term.
    pub fn rotate(
        &self,
        batch: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<RotationReport> {
        let (term, resumed) = self.begin_rotation()?;
        let mut resealed = 0;
        loop {
            let (done, remaining) = self.reseal_batch(batch.max(1))?;
            resealed += done;
            progress(resealed, remaining);
            if remaining == 0 {
                break;
            }
        }
        let retired = self.finish_rotation()?;
        Ok(RotationReport {
            term,
            resumed,
            resealed,
            retired,
        })
    }

    /// Starts a rotation (or finds the one in progress). Returns the active term and whether it
    /// was already in progress.
    pub fn begin_rotation(&self) -> Result<(i64, bool)> {
        let (term, resumed, dek) = self.write(|tx, master| {
            let current = active_term(tx)?;
            let pending: i64 = tx.query_row("SELECT count(*) FROM keyring WHERE status = 'decrypt_only'", [], |r| r.get(0))?;
            if pending > 0 {
                return Ok((current, true, None));
            }
            let term = current + 1;
            let dek = random_key()?;
            tx.execute("UPDATE keyring SET status = 'decrypt_only' WHERE status = 'active'", [])?;
            tx.execute(
                "INSERT INTO keyring (term, status, wrapped, created_at) VALUES (?1, 'active', ?2, ?3)",
                params![term, wrap_dek(&master.kek, &self.vault_id, term, &dek)?, now_ms()],
            )?;
            log_change(tx, Change { action: "rotate-begin", outcome: "ok", detail: Some(format!("term {term}")), ..Default::default() })?;
            Ok((term, false, Some(dek)))
        })?;
        if let Some(dek) = dek {
            self.deks
                .write()
                .map_err(|_| Error::Poisoned)?
                .insert(term, Arc::new(dek));
        }
        Ok((term, resumed))
    }

    /// Re-seals up to `limit` records still under an old term. Returns `(resealed, remaining)`.
    pub fn reseal_batch(&self, limit: usize) -> Result<(usize, usize)> {
        self.write(|tx, master| {
            let term = active_term(tx)?;
            let dek = self.dek(tx, master, term)?;
            let rows: Vec<SealedRow> = tx
                .prepare_cached("SELECT name, version, term, scope, nonce, sealed FROM records WHERE term != ?1 ORDER BY name, version LIMIT ?2")?
                .query_map(params![term, limit as i64], row_from_sql)?
                .collect::<rusqlite::Result<_>>()?;
            for row in &rows {
                let value = self.open_record(tx, master, row)?;
                let (nonce, sealed) = self.seal_record(&dek, &row.name, row.version, term, &row.scope, value.expose().as_bytes())?;
                tx.prepare_cached("UPDATE records SET term = ?1, nonce = ?2, sealed = ?3 WHERE name = ?4 AND version = ?5 AND nonce = ?6")?
                    .execute(params![term, nonce, sealed, row.name, row.version, row.nonce])?;
            }
            let remaining: i64 = tx.query_row("SELECT count(*) FROM records WHERE term != ?1", [term], |r| r.get(0))?;
            if !rows.is_empty() {
                log_change(tx, Change { action: "rotate-batch", outcome: "ok", detail: Some(format!("resealed {}, remaining {remaining}", rows.len())), ..Default::default() })?;
            }
            Ok((rows.len(), remaining as usize))
        })
    }

    /// Retires every old term no record uses (its wrapped key is erased), then `VACUUM`s and
    /// truncates the WAL so no retired key survives in free pages. Returns the number retired.
    pub fn finish_rotation(&self) -> Result<usize> {
        let retired = self.write(|tx, _| {
            let n = tx.execute(
                "UPDATE keyring SET status = 'retired', wrapped = x'' WHERE status = 'decrypt_only' \
                 AND NOT EXISTS (SELECT 1 FROM records WHERE records.term = keyring.term)",
                [],
            )?;
            if n > 0 {
                log_change(tx, Change { action: "rotate-finish", outcome: "ok", detail: Some(format!("retired {n} term(s)")), ..Default::default() })?;
            }
            Ok(n)
        })?;
        let master = self.master.read().map_err(|_| Error::Poisoned)?;
        let live = load_deks(&*self.lock()?, &master.kek, &self.vault_id)?;
        *self.deks.write().map_err(|_| Error::Poisoned)? = live;
        self.compact()?;
        Ok(retired)
    }

    /// `VACUUM` and a truncating WAL checkpoint: rewrites the file without free pages and empties
    /// the WAL, so nothing deleted (values, retired keys) lingers on disk.
    pub fn compact(&self) -> Result<()> {
        let conn = self.lock()?;
        conn.execute_batch("VACUUM;")?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Changes the master key (passphrase or key file): re-wraps the data keys only, in one
    /// transaction; records are untouched. `kdf` sets new Argon2id costs for passphrases.
    pub fn rekey(&self, new_source: &KeySource, kdf: KdfParams) -> Result<()> {
        kdf.validate()?;
        let mut salt = [0u8; 16];
        fill_random(&mut salt)?;
        let kind = new_source.kind();
        let new_master = master_keys(derive_kek(new_source, &salt, &kdf)?, &self.vault_id)?;
        let mut master = self.master.write().map_err(|_| Error::Poisoned)?;
        let mut conn = self.lock()?;
        let rewrap = |tx: &Transaction<'_>, old: &MasterKeys| {
            for (term, dek) in &load_deks(tx, &old.kek, &self.vault_id)? {
                tx.execute(
                    "UPDATE keyring SET wrapped = ?1 WHERE term = ?2",
                    params![wrap_dek(&new_master.kek, &self.vault_id, *term, dek)?, term],
                )?;
            }
            set_meta(tx, "kek_kind", kind.as_str())?;
            set_meta(tx, "kdf", kdf_json(kind, &kdf))?;
            set_meta(tx, "salt", salt.as_slice())?;
            set_meta(tx, "kek_check", new_master.kek_check.as_slice())?;
            log_change(
                tx,
                Change {
                    action: "rekey",
                    outcome: "ok",
                    detail: Some(format!("key: {}", kind.describe())),
                    ..Default::default()
                },
            )
        };
        let ((), generation) = self.guarded_commit(
            &mut conn,
            &master,
            &new_master.index,
            || Error::WrongKey,
            rewrap,
        )?;
        *master = new_master;
        drop(conn);
        self.counter
            .write(&master.index, &self.vault_id, generation)?;
        drop(master);
        // The old wrapped keys are overwritten in place (secure_delete); compact anyway so no
        // copy survives in the WAL.
        self.compact()
    }

    /// Full check: SQLite integrity, index MAC, and every stored version decrypted.
    pub fn verify(&self) -> Result<VerifyReport> {
        let master = self.master.read().map_err(|_| Error::Poisoned)?;
        let guard = self.lock()?;
        // One snapshot for every check (see `check_snapshot`).
        let snapshot = guard.unchecked_transaction()?;
        let conn: &Connection = &snapshot;
        let (generation, rows, secrets, live_terms, active) = {
            let check: String = conn
                .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
                .map_err(corrupt_or)?;
            if check != "ok" {
                return Err(Error::Corrupt { reason: check });
            }
            let generation = verify_index(conn, &master.index, &self.vault_id)?;
            let rows: Vec<SealedRow> = conn
                .prepare("SELECT name, version, term, scope, nonce, sealed FROM records")?
                .query_map([], row_from_sql)?
                .collect::<rusqlite::Result<_>>()?;
            let secrets: i64 =
                conn.query_row("SELECT count(*) FROM heads WHERE deleted = 0", [], |r| {
                    r.get(0)
                })?;
            let live_terms: i64 = conn.query_row(
                "SELECT count(*) FROM keyring WHERE status != 'retired'",
                [],
                |r| r.get(0),
            )?;
            (
                generation,
                rows,
                secrets as usize,
                live_terms as usize,
                active_term(conn)?,
            )
        };
        for row in &rows {
            Scope::from_json(&row.scope)?;
            self.open_record(conn, &master, row)?;
        }
        snapshot.commit()?;
        let pending_reseal = rows.iter().filter(|r| r.term != active).count();
        Ok(VerifyReport {
            generation,
            secrets,
            versions: rows.len(),
            live_terms,
            pending_reseal,
        })
    }

    /// Change-log entries with `seq > after`, oldest first, at most `limit`.
    pub fn changes(&self, after: i64, limit: usize) -> Result<Vec<ChangeEntry>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, at, action, name, version, tool, hosts, outcome, detail FROM changelog WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            let hosts: Option<String> = r.get(6)?;
            Ok(ChangeEntry {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                action: r.get(2)?,
                name: r.get(3)?,
                version: r.get(4)?,
                tool: r.get(5)?,
                hosts: hosts
                    .and_then(|h| serde_json::from_str(&h).ok())
                    .unwrap_or_default(),
                outcome: r.get(7)?,
                detail: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn row_from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<SealedRow> {
    Ok(SealedRow {
        name: r.get(0)?,
        version: r.get(1)?,
        term: r.get(2)?,
        scope: r.get(3)?,
        nonce: r.get(4)?,
        sealed: r.get(5)?,
    })
}

fn validate_value(value: &SecretString) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidValue("empty"));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::InvalidValue("longer than 64 KiB"));
    }
    Ok(())
}

fn kdf_json(kind: KekKind, kdf: &KdfParams) -> String {
    match kind {
        KekKind::Argon2id => serde_json::to_string(kdf).unwrap_or_default(),
        KekKind::Raw => "{}".to_owned(),
    }
}

fn parse_kdf(json: &str) -> Result<KdfParams> {
    if json == "{}" {
        return Ok(KdfParams::default());
    }
    let params: KdfParams = serde_json::from_str(json)
        .map_err(|_| Error::tampered("the vault header (KDF parameters)"))?;
    params.validate()?;
    Ok(params)
}

trait OpenOptionsMode {
    fn mode_0600(&mut self) -> &mut Self;
}

impl OpenOptionsMode for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}
