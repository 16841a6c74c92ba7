//! The command line, as clap types. Parsing only; behaviour lives in the `*_cmd` modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Clawgate: the safety appliance beside an OpenClaw agent.
#[derive(Debug, Parser)]
#[command(name = "clawgate", version, about)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Where state lives (vault, key file). Default: $STATE_DIRECTORY under systemd, else
    /// $XDG_STATE_HOME/clawgate or ~/.local/state/clawgate.
    #[arg(long, global = true, env = "CLAWGATE_STATE_DIR", value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage the encrypted secrets vault.
    #[command(subcommand)]
    Vault(VaultCommand),
}

/// How to unlock the vault. Without any of these, the key file `vault.key` in the state
/// directory is used (the embedded default).
#[derive(Debug, Args, Clone, Default)]
#[group(multiple = false)]
pub(crate) struct KeyArgs {
    /// A file holding the passphrase (one line; the trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// A file holding the 32-byte master key (raw or 64 hex digits), mode 0600.
    #[arg(long, value_name = "FILE")]
    pub(crate) key_file: Option<PathBuf>,
    /// A systemd credential name, read from $CREDENTIALS_DIRECTORY (LoadCredentialEncrypted=).
    #[arg(long, value_name = "NAME")]
    pub(crate) credential: Option<String>,
}

/// Argon2id cost for passphrase-protected vaults (RFC 9106 second recommendation by default).
#[derive(Debug, Args, Clone)]
pub(crate) struct KdfArgs {
    /// Argon2id memory in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub(crate) kdf_memory_mib: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub(crate) kdf_iterations: u32,
    /// Argon2id lanes.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub(crate) kdf_parallelism: u32,
}

/// Who may receive a secret.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct ScopeArgs {
    /// A tool allowed to receive the secret (repeatable; `*` for any tool).
    #[arg(long = "tool", value_name = "TOOL")]
    pub(crate) tools: Vec<String>,
    /// A host the secret may be sent to (repeatable; `*.example.com` for subdomains, `*` for any).
    #[arg(long = "host", value_name = "HOST")]
    pub(crate) hosts: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Create a new vault (and, on the embedded default, its key file).
    Init {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Store a secret; the value is read from standard input (prompted without echo on a terminal).
    Put {
        /// Secret name: 1-64 characters of A-Z a-z 0-9 _ . -
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print a secret's value: only to a terminal, or with --reveal.
    Get {
        /// Secret name.
        name: String,
        /// A stored older version instead of the current one.
        #[arg(long)]
        version: Option<i64>,
        /// Print even when standard output is not a terminal.
        #[arg(long)]
        reveal: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// List secrets (names, versions, scopes; never values).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Remove a secret and all its versions.
    Rm {
        /// Secret name.
        name: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Rotate the data key: new key term, re-seal every record in batches, retire the old term.
    Rotate {
        /// Records re-sealed per transaction.
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Change the master key or passphrase (re-wraps data keys only).
    Rekey {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        new: NewKeyArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Move KEY=value lines into the vault, then overwrite and delete the plaintext file.
    ImportEnv {
        /// The file, e.g. ~/.openclaw/.env
        file: PathBuf,
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Full integrity check: SQLite, index MAC, every stored version decrypted.
    Verify {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Accept a database restored from an older copy (resets the rollback counter).
    AcceptRestore {
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Show the change log (writes and resolutions; names only, never values).
    Log {
        /// Only entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// The new master key for `rekey`.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub(crate) struct NewKeyArgs {
    /// A file holding the new passphrase.
    #[arg(long, value_name = "FILE")]
    pub(crate) new_passphrase_file: Option<PathBuf>,
    /// A file holding the new 32-byte key (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub(crate) new_key_file: Option<PathBuf>,
}

/// A usage error found after parsing (exit code 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
