//! The crate's error type. Like every error in the workspace it carries names, paths, counts and
//! reasons, never a credential, token or secret value: the Hub's own error messages are scrubbed
//! of the credential before they are kept (see `client.rs`).

use std::time::Duration;

/// Errors of the Hub protocol: local state, signatures, queues and the HTTPS client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// I/O on a local file.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The outbox database.
    #[error("hub outbox database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A file, message or value is not what the protocol says; the text says what is wrong.
    #[error("{0}")]
    Invalid(String),
    /// A file holding a token or credential may be read (or written) by group or other.
    #[error(
        "{path} has mode {mode:04o}: it holds a secret, so only its owner may access it (chmod 600)"
    )]
    InsecureFile {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// This state directory already holds a Hub identity.
    #[error("already enrolled as appliance {appliance_id} of tenant {tenant_id} ({path})")]
    AlreadyEnrolled {
        /// The identity file.
        path: String,
        /// Tenant.
        tenant_id: String,
        /// Appliance.
        appliance_id: String,
    },
    /// A persisted queue is at its capacity: the new entry was refused, nothing was dropped.
    #[error(
        "hub outbox queue `{queue}` is full ({capacity} entries waiting): the Hub has been unreachable \
         for too long; the entry was refused, nothing was dropped"
    )]
    QueueFull {
        /// Which queue.
        queue: &'static str,
        /// Its capacity.
        capacity: u64,
    },
    /// The Hub answered with an error status.
    #[error("hub answered {status} {code}: {message}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The error body's `code` (`unknown` if the body was not the protocol's error shape).
        code: String,
        /// The error body's `message`, scrubbed of the credential, control characters escaped,
        /// cut at 1,024 characters.
        message: String,
        /// `Retry-After`, capped.
        retry_after: Option<Duration>,
        /// `expected_seq` of an `audit_gap` answer.
        expected_seq: Option<u64>,
    },
    /// The Hub's TLS key matches none of the pinned SPKI hashes.
    #[error("the hub's TLS key matches no pinned key (pin mismatch): refusing to talk to it")]
    PinMismatch,
    /// The request did not complete: connection refused or reset, timeout, TLS failure, body cut.
    #[error("hub request failed ({kind}): {detail}")]
    Transport {
        /// What kind of failure.
        kind: TransportKind,
        /// Details (no credential: URLs and causes only).
        detail: String,
    },
    /// The Hub answered 2xx with a body that is not the documented shape or is too large.
    #[error("hub answer to {operation} is invalid: {detail}")]
    BadResponse {
        /// The operation (`enroll`, `events`...).
        operation: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// An internal lock was poisoned by a panic elsewhere.
    #[error("internal state poisoned")]
    Poisoned,
}

/// Kinds of [`Error::Transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// Could not connect (refused, unreachable, DNS).
    Connect,
    /// The TLS handshake failed for another reason than a pin mismatch.
    Tls,
    /// No answer within the deadline.
    Timeout,
    /// The connection closed before the answer was complete.
    Cut,
    /// Anything else reqwest reports.
    Other,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connect",
            TransportKind::Tls => "tls",
            TransportKind::Timeout => "timeout",
            TransportKind::Cut => "connection cut",
            TransportKind::Other => "other",
        })
    }
}

/// What a caller should do after an error of a Hub call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (timeout, connection failure, cut answer, 408, 429, 5xx, an invalid 2xx body):
    /// retry the same request after a backoff (at least `Retry-After`).
    Retryable,
    /// The Hub refused this request's content (400, 404, 409, 413, 422, other 4xx): sending it
    /// again unchanged cannot succeed. Report and audit it; do not retry it.
    Fatal,
    /// The channel itself is unusable (401/403: credential revoked; TLS pin mismatch): no
    /// request can succeed until an operator acts. Keep queued items, alert, keep probing
    /// slowly (the circuit breaker does that).
    Blocked,
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// How a caller should treat this error (see [`ErrorClass`]). Local errors (database, files)
    /// are [`ErrorClass::Fatal`] for the request at hand.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Transport { .. } | Error::BadResponse { .. } => ErrorClass::Retryable,
            Error::PinMismatch => ErrorClass::Blocked,
            Error::Http { status, .. } => match status {
                401 | 403 => ErrorClass::Blocked,
                408 | 429 | 500..=599 => ErrorClass::Retryable,
                _ => ErrorClass::Fatal,
            },
            _ => ErrorClass::Fatal,
        }
    }

    /// True when the same request may succeed later ([`ErrorClass::Retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    /// The Hub's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> Error {
        Error::Http {
            status,
            code: "x".into(),
            message: String::new(),
            retry_after: None,
            expected_seq: None,
        }
    }

    #[test]
    fn classes_by_status_and_kind() {
        let table = [
            (400, ErrorClass::Fatal),
            (401, ErrorClass::Blocked),
            (403, ErrorClass::Blocked),
            (404, ErrorClass::Fatal),
            (408, ErrorClass::Retryable),
            (409, ErrorClass::Fatal),
            (410, ErrorClass::Fatal),
            (413, ErrorClass::Fatal),
            (422, ErrorClass::Fatal),
            (429, ErrorClass::Retryable),
            (500, ErrorClass::Retryable),
            (502, ErrorClass::Retryable),
            (503, ErrorClass::Retryable),
            (599, ErrorClass::Retryable),
        ];
        for (status, class) in table {
            assert_eq!(http(status).class(), class, "{status}");
        }
        let cut = Error::Transport {
            kind: TransportKind::Cut,
            detail: String::new(),
        };
        assert!(cut.is_retryable());
        assert_eq!(Error::PinMismatch.class(), ErrorClass::Blocked);
        assert_eq!(Error::Invalid("x".into()).class(), ErrorClass::Fatal);
    }
}
