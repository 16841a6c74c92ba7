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
    /// Generate an Ed25519 bundle-signing key.
    Keygen(KeygenArgs),
    /// Sign, verify and test policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Classify tool calls: OpenClaw `before_tool_call` events on stdin (one JSON object per line,
    /// bare or as {"event":…,"ctx":…}), or one shell command with --shell. Prints one JSON line each.
    Classify(ClassifyArgs),
    /// Find secrets in a file or stdin: vault values (every encoding), credential formats,
    /// high-entropy tokens. Prints byte offsets, never the secrets.
    Scan(ScanArgs),
    /// Print a file or stdin with every secret replaced (SECRET_REF(name) for vault values, a
    /// stable placeholder otherwise): the engine the egress proxy uses.
    Redact(RedactArgs),
    /// Run the daemon: the hook server OpenClaw's plugin calls, approvals, audit and metrics.
    /// Without --config it runs on the embedded default (per-user state directory, local
    /// approver, vault key generated on first start, default policy).
    Serve(ConfigArg),
    /// Check a configuration file (both phases) without starting anything.
    Validate(RequiredConfigArg),
    /// Answer approval requests (over the daemon's admin socket).
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Show or verify the hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Set up OpenClaw to use Clawgate.
    #[command(subcommand)]
    Openclaw(OpenclawCommand),
    /// The LLM egress proxy: agents' local tokens.
    #[command(subcommand)]
    Egress(EgressCommand),
    /// Tokens the egress proxy metered, per agent, provider, model and hour.
    #[command(subcommand)]
    Usage(UsageCommand),
    /// Enroll this appliance with a Hub: exchange the one-time token the provisioner dropped for
    /// an identity (tenant, appliance, credential, pinned keys) in the state directory. The token
    /// file is overwritten and removed once the identity is stored. Restart `clawgate serve`
    /// afterwards to connect.
    Enroll(EnrollArgs),
    /// Prepare this host, one idempotent step at a time (as root).
    #[command(subcommand)]
    Provision(crate::provision_cmd::ProvisionCommand),
    /// Check everything a provisioned host needs (service, hook socket, OpenClaw's config,
    /// provider routes, egress lock, policy, Hub, vault, clock, disk): a pass/fail list with the
    /// fix for each failure; exits 1 when a check fails.
    Doctor(crate::doctor_cmd::DoctorArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum EgressCommand {
    /// Mint a new local proxy token for AGENT and print it (the only time it is shown). It
    /// replaces the agent's previous token; a running daemon accepts it at once.
    Token {
        /// Agent id (1-64 characters of A-Z a-z 0-9 _ . -), e.g. `main`.
        agent: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsageCommand {
    /// Print usage buckets (newest hours last).
    Show {
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only the last N hours (default: everything).
        #[arg(long, value_name = "N")]
        hours: Option<u32>,
        /// One JSON array of {"agent","provider","model","hour","input","output",
        /// "cache_read","cache_write","cache_write_1h","requests","incomplete","cost_micros"}
        /// (hour: unix seconds; cache_write_1h: the one-hour part of cache_write; cost_micros:
        /// micro-dollars at the configured prices, null when the model has none).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Args)]
pub(crate) struct EnrollArgs {
    /// The Hub's base URL (https); must be the one the token file names.
    #[arg(long, value_name = "URL")]
    pub(crate) hub: String,
    /// The enrollment token file (JSON: hub, token, tls_spki_sha256, signing_keys; mode 0600).
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: PathBuf,
    /// SHA-256 (hex) of the Hub's TLS public key, checked against the token file's pins; may be
    /// repeated.
    #[arg(long = "pin", value_name = "SHA256")]
    pub(crate) pins: Vec<String>,
    /// Replace an existing enrollment (the old identity and Hub state are moved to
    /// `replaced-<time>/` in the state directory).
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// The daemon's TOML configuration (default: the embedded default).
    #[arg(long, env = "CLAWGATE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RequiredConfigArg {
    /// The configuration file to check.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// List approval requests (pending by default).
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// pending, approved, denied, expired or all.
        #[arg(long, default_value = "pending")]
        status: String,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request (once, unless --for-24h).
    Approve {
        /// Approval id (ap_…).
        id: String,
        /// Also allow the same action by the same agent for 24 hours.
        #[arg(long)]
        for_24h: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Deny a pending request.
    Deny {
        /// Approval id (ap_…).
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the approval page's login link (holds the admin token: show it only to the owner).
    Url {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Print the last records.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Verify the whole hash chain; fails on any edited, removed or reordered record.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum OpenclawCommand {
    /// Install Clawgate's plugin entry into OpenClaw's config (idempotent, with a backup).
    Configure {
        /// OpenClaw's config file (openclaw.json).
        #[arg(long, value_name = "PATH")]
        openclaw_config: PathBuf,
        /// The plugin directory (default: /usr/share/clawgate/openclaw-plugin).
        #[arg(long, value_name = "DIR")]
        plugin_dir: Option<PathBuf>,
        /// The agent whose proxy token the model providers carry.
        #[arg(long, default_value = "main")]
        agent: String,
        /// Also route custom provider ID through the proxy's ROUTE (anthropic, openai, gemini,
        /// openrouter); repeatable. Built-in providers and custom ones whose baseUrl is a known
        /// provider's host are routed without this.
        #[arg(long, value_name = "ID=ROUTE")]
        route: Vec<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// Input and vault options shared by `scan` and `redact`.
#[derive(Debug, Args)]
pub(crate) struct RedactInput {
    /// The file to read; `-` or nothing for standard input.
    #[arg(value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// Do not load vault values (use only the credential rules and entropy).
    #[arg(long)]
    pub(crate) no_vault: bool,
    #[command(flatten)]
    pub(crate) key: KeyArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    #[command(flatten)]
    pub(crate) input: RedactInput,
    /// One JSON array of {"start","end","rule","detector"} (byte offsets into the input).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RedactArgs {
    #[command(flatten)]
    pub(crate) input: RedactInput,
}

#[derive(Debug, Args)]
pub(crate) struct ClassifyArgs {
    /// A policy directory or a signed bundle (default: the built-in default policy).
    #[arg(long, value_name = "DIR|BUNDLE")]
    pub(crate) policy: Option<PathBuf>,
    /// Trust file for verifying a bundle given with --policy.
    #[arg(long, value_name = "FILE")]
    pub(crate) trust: Option<PathBuf>,
    /// Tenant for verifying a bundle given with --policy.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Autonomy tier 1-3 (default: the bundle's, else 1).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub(crate) tier: Option<u8>,
    /// Classify this one shell command instead of reading events.
    #[arg(long, value_name = "CMD")]
    pub(crate) shell: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Id the key is pinned under ([A-Za-z0-9-_.:]{1,64}).
    #[arg(long)]
    pub(crate) key_id: String,
    /// Where to write the secret key (created, mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub(crate) secret_key: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Sign every file under DIR into a bundle (format: docs/bundle-format.md).
    Sign {
        /// The policy directory.
        dir: PathBuf,
        /// Secret key written by `clawgate keygen`.
        #[arg(long, value_name = "FILE")]
        secret_key: PathBuf,
        /// The key's id, as pinned by appliances.
        #[arg(long)]
        key_id: String,
        /// Tenant the bundle is for.
        #[arg(long)]
        tenant: String,
        /// Monotonic bundle version.
        #[arg(long)]
        version: u64,
        /// Autonomy tier: 1 supervised, 2 balanced, 3 autonomous.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
        tier: u8,
        /// Days until the bundle expires.
        #[arg(long, default_value_t = 7)]
        expires_in_days: u32,
        /// Issue time in Unix seconds (default: now).
        #[arg(long)]
        issued_at: Option<i64>,
        /// Output file (created; never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Load a policy directory (every rule's match/not_match examples are checked) and run
    /// corpora of shell commands against it.
    Test {
        /// The policy directory.
        dir: PathBuf,
        /// JSON corpus: [{"command": "...", "expected_class": "red"}, ...]; each command must be
        /// classified at least as strict as expected (repeatable).
        #[arg(long, value_name = "FILE")]
        corpus: Vec<PathBuf>,
    },
    /// Verify a bundle as an appliance would, and print its manifest.
    Verify {
        /// The bundle file.
        bundle: PathBuf,
        /// Trust file pinning the signing keys.
        #[arg(long, value_name = "FILE")]
        trust: PathBuf,
        /// This appliance's tenant.
        #[arg(long)]
        tenant: String,
        /// Highest version accepted so far; the bundle must be newer.
        #[arg(long, default_value_t = 0)]
        high_water: u64,
        /// Also accept a bundle whose version equals the high-water mark.
        #[arg(long)]
        allow_current: bool,
        /// Check against this time (Unix seconds) instead of now.
        #[arg(long)]
        now: Option<i64>,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
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
