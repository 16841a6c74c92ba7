//! The crate's error type (library callers and the binary). HTTP answers have their own type,
//! [`crate::api::ApiError`], mapped to the protocol's `{"error": {code, message}}` in one place.

/// What went wrong. Messages never contain a token, credential or signing key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input from the caller (operator, test, command line): nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// No such approval, appliance, bundle or command.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request contradicts the stored state (already decided, version not above the newest).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The SQLite state.
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A file of the state directory.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Key material, TLS or signing.
    #[error("keys: {0}")]
    Keys(String),
    /// A lock was poisoned by a panic elsewhere.
    #[error("internal lock poisoned")]
    Poisoned,
}

impl Error {
    /// An I/O error with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;
