//! The vault's error type. No variant ever carries a secret value: names, paths, counts and
//! reasons only.

use std::path::PathBuf;

use clawgate_protocol::secret_ref::InvalidName;

/// Result alias for the vault.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key or passphrase does not open this vault. Checked before any record is read.
    #[error("wrong vault key or passphrase: it does not match this vault (no record was read)")]
    WrongKey,
    /// The vault is unlocked by another kind of key than the one given.
    #[error("this vault is unlocked by a {expected}, but a {given} was given")]
    KeyKindMismatch {
        /// What the vault header says.
        expected: &'static str,
        /// What the caller supplied.
        given: &'static str,
    },
    /// `init` on a path that already holds a file.
    #[error("a vault already exists at {0}; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// No vault at the path.
    #[error("no vault at {0}; create one with `clawgate vault init`")]
    Missing(PathBuf),
    /// The file is not a Clawgate vault at all.
    #[error("{path} is not a Clawgate vault: {reason}")]
    NotAVault {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The file is a vault but SQLite reports it damaged (truncated, malformed). Never repaired.
    #[error(
        "the vault database is damaged ({reason}); it was not modified. Restore it from a backup \
         (then run `clawgate vault accept-restore`)"
    )]
    Corrupt {
        /// SQLite's own words, or ours.
        reason: String,
    },
    /// Authenticated data failed to verify: a record, a wrapped key or the index MAC was changed.
    #[error("vault integrity check failed: {what} was modified outside Clawgate")]
    Tampered {
        /// Which part failed (never a value).
        what: String,
    },
    /// The database is older than the last state this host saw: a rollback to an older copy.
    #[error(
        "vault rollback detected: the database is at generation {found}, but this host last saw \
         generation {expected}. If you restored an older copy on purpose, run `clawgate vault \
         accept-restore`"
    )]
    RolledBack {
        /// Generation recorded inside the database.
        found: i64,
        /// Generation recorded in the counter file.
        expected: i64,
    },
    /// The rollback counter next to the database is missing or belongs to another vault.
    #[error(
        "the vault's rollback counter {path} is {problem}; if this vault was moved or restored on \
         purpose, run `clawgate vault accept-restore`"
    )]
    Counter {
        /// The counter file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The vault format is newer (or older) than this build understands.
    #[error("vault format {found} is not supported by this clawgate (supports {supported})")]
    UnsupportedFormat {
        /// Format found in the file.
        found: i64,
        /// Format this build writes.
        supported: i64,
    },
    /// No such secret.
    #[error("no secret named {0}")]
    NotFound(String),
    /// A resolution outside the secret's scope: an exfiltration attempt until proven otherwise.
    #[error("SECRET_REF({name}) may not be used here: {reason}")]
    OutOfScope {
        /// The secret's name.
        name: String,
        /// Which scope rule refused (tool or host, never the value).
        reason: String,
    },
    /// A name that breaks the `SECRET_REF` grammar.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// A value the vault will not store.
    #[error("invalid secret value: {0}")]
    InvalidValue(&'static str),
    /// A malformed scope entry.
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    /// Bad KDF parameters.
    #[error("invalid key-derivation parameters: {0}")]
    InvalidKdf(String),
    /// A key file that cannot be used.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A `.env` file that cannot be imported. Line numbers only; never the value.
    #[error("{path}: line {line}: {reason}")]
    EnvFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A lock was poisoned by a panic in another thread; refuse rather than continue.
    #[error("internal vault state is poisoned by an earlier panic; restart the process")]
    Poisoned,
    /// Random number generation failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// File-system error.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite error not covered above.
    #[error("vault database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn tampered(what: impl Into<String>) -> Self {
        Self::Tampered { what: what.into() }
    }
}
