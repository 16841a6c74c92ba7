//! The crate's error type, and the refusals a request can get. Like every error in the
//! workspace they carry names, counts and reasons, never a body, a token or a key.

use hyper::StatusCode;

/// Errors setting up or running the proxy (not per-request refusals: see [`Refusal`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The usage database.
    #[error("usage database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The usage recorder thread has stopped (it only stops when every handle is dropped).
    #[error("the usage recorder has stopped")]
    RecorderGone,
    /// I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An internal lock was poisoned by a panic elsewhere.
    #[error("internal state poisoned")]
    Poisoned,
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whose fault a refusal is (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// The client (the agent): bad token, bad body, over budget. Retrying the same request fails
    /// the same way.
    Downstream,
    /// The provider: unreachable or broken. Retrying may work.
    Upstream,
    /// Clawgate itself: no key, no redactor. Retrying may work once the daemon recovers.
    Internal,
}

/// Why a request was answered by the proxy instead of the provider. Becomes a response in the
/// provider's own error format (see [`crate::reply`]), with the header `x-clawgate-error: <kind>`.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable kind (`invalid_token`, `budget_exceeded`, …).
    pub kind: &'static str,
    /// Whose fault.
    pub side: Side,
    /// What the agent reads. Never contains a body, token or key.
    pub message: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        side: Side,
        message: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            kind,
            side,
            message: message.into(),
        }
    }

    /// The client's fault.
    pub fn client(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Refusal::new(status, kind, Side::Downstream, message)
    }

    /// Whether retrying the same request may succeed.
    pub fn retryable(&self) -> bool {
        self.side != Side::Downstream
            || self.status == StatusCode::REQUEST_TIMEOUT
            || self.status == StatusCode::TOO_MANY_REQUESTS
    }
}
