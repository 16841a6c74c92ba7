//! The provisioner's error type. Errors name users, paths, commands and reasons; the provisioner
//! never puts a secret value into one: the secrets file's errors carry names, line and column
//! numbers only.

/// Errors of the provisioning steps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The agent's user does not exist (the firewall matches a numeric uid resolved now).
    #[error("no user `{0}` on this host: create the agent's user before locking its egress")]
    NoSuchUser(String),
    /// The agent's user is root: locking root's egress would cut off the proxy and the host.
    #[error(
        "refusing to lock the egress of `{0}` (uid 0): the agent must run as its own unprivileged user"
    )]
    RootAgent(String),
    /// A proxy listener that is not on loopback cannot be the agent's only way out.
    #[error("the proxy listener {0} is not on a loopback address")]
    NotLoopback(std::net::SocketAddr),
    /// A systemd unit name the drop-in cannot be written for.
    #[error("`{0}` is not a systemd unit name ending in .service or .slice")]
    BadUnitName(String),
    /// `nft` is not installed where we look for it.
    #[error("nftables is not installed (no nft in /usr/sbin or /sbin): apt-get install nftables")]
    NftMissing,
    /// `nft` ran and failed.
    #[error("`nft {action}` failed ({status}): {stderr}")]
    Nft {
        /// What nft was asked to do.
        action: String,
        /// Exit status.
        status: String,
        /// Its error output (trimmed and capped).
        stderr: String,
    },
    /// `nft` did not finish in time (it was killed).
    #[error("`nft {action}` did not finish within {seconds} s")]
    NftTimeout {
        /// What nft was asked to do.
        action: String,
        /// The limit.
        seconds: u64,
    },
    /// `nft -j` printed something that is not the JSON we expect.
    #[error("cannot read nft's JSON listing: {0}")]
    NftOutput(String),
    /// After applying, the table in the kernel is not what was generated.
    #[error("the egress lock was applied but does not read back as generated: {0}")]
    NotInForce(String),
    /// A host command (other than nft) failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command.
        command: String,
        /// Why.
        reason: String,
    },
    /// The one-time secrets file is refused or malformed. Never carries a value.
    #[error("secrets file {path}: {reason}")]
    SecretsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why (names, line and column numbers; never a value).
        reason: String,
    },
    /// The progress journal cannot be read or written.
    #[error("provisioning journal {path}: {reason}")]
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// A configuration file the provisioner edits is malformed or conflicts with the request.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The egress lock's status file is missing, stale, untrustworthy or malformed.
    #[error("egress lock status {path}: {reason}")]
    LockStatus {
        /// The status file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
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
