//! The daemon's error type. Like every error in the workspace it carries names, paths and
//! reasons, never a secret value.

/// Errors of the hook server, approvals, audit and configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A request body is malformed; the message says what is wrong (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// An approval id that does not exist (HTTP 404).
    #[error("no approval {0}")]
    NoSuchApproval(String),
    /// An approval that was already decided or expired (HTTP 409).
    #[error("approval {id} is {status}, not pending")]
    NotPending {
        /// Approval id.
        id: String,
        /// Its status.
        status: String,
    },
    /// The approvals and audit database.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The audit chain is broken.
    #[error("audit log broken at record {seq}: {reason}")]
    AuditBroken {
        /// First bad record.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
    /// The vault refused.
    #[error(transparent)]
    Vault(#[from] clawgate_vault::Error),
    /// The policy refused to load.
    #[error(transparent)]
    Policy(#[from] clawgate_policies::Error),
    /// The redactor could not be built or failed.
    #[error("redactor: {0}")]
    Redact(String),
    /// I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The Hub protocol: enrollment, identity, outbox, client.
    #[error(transparent)]
    Hub(#[from] clawgate_hub::Error),
    /// A signed bundle was refused.
    #[error(transparent)]
    Bundle(#[from] clawgate_policies::bundle::BundleError),
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
