//! The provisioning steps other than `firewall`: `secrets`, `import-env`, `openclaw` and `all`.
//!
//! Every step is idempotent: it checks what is already so and changes only the rest, and says
//! which (`done` when it changed something, `already done` when it found everything in place,
//! `FAILED` with the reason). Each marks itself `started` in the progress journal
//! (`provision-journal.json` in the state directory) before its first change and `done` after
//! its last; a step killed midway is completed by the re-run, which also says that an earlier
//! run stopped there. Bad input (a refused secrets file, a malformed provisioning file, an
//! unknown user) is reported before anything is changed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clawgate_protocol::env::Env;
use clawgate_protocol::{SecretName, SecretString};
use clawgate_provisioner::daemon_config;
use clawgate_provisioner::journal::{Journal, StepState};
use clawgate_provisioner::secrets_file::SecretsFile;
use clawgate_vault::envfile::{self, MAX_ENV_FILE};
use clawgate_vault::{Scope, Vault};
use clawgate_wrapper::Settings;
use serde::Deserialize;

use crate::cli::{ConfigArg, GlobalArgs, UsageError};
use crate::daemon_cmd;
use crate::provision_cmd::{
    FirewallArgs, ImportEnvArgs, OpenclawArgs, PACKAGED_CONFIG, SecretsArgs, systemctl,
    systemd_is_running,
};

/// Journal step names.
pub(crate) const STEP_SECRETS: &str = "secrets";
pub(crate) const STEP_IMPORT_ENV: &str = "import-env";
pub(crate) const STEP_OPENCLAW: &str = "openclaw";
pub(crate) const STEP_FIREWALL: &str = "firewall";
pub(crate) const STEP_ENROLL: &str = "enroll";
/// The Hub identity `clawgate enroll` stores in the state directory: the binary does not link
/// the hub crate, so a test checks this against `clawgate_hub::identity::IDENTITY_FILE`.
pub(crate) const HUB_IDENTITY: &str = "hub-identity.json";

/// What a step did.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Whether it changed anything.
    changed: bool,
    /// One line: what it found or did.
    detail: String,
}

impl Outcome {
    fn new(changed: bool, detail: impl Into<String>) -> Outcome {
        Outcome {
            changed,
            detail: detail.into(),
        }
    }
}

/// The environment variable naming a crash point (see [`crash_point`]).
pub(crate) const ABORT_AT: &str = "CLAWGATE_PROVISION_ABORT_AT";

/// Fault injection for the interrupted-run tests: when `CLAWGATE_PROVISION_ABORT_AT` names
/// `point`, the process aborts there (SIGABRT, no cleanup, no unwinding), as a `kill -9` or a
/// power cut would leave it. Points: `secrets.imported` (vault written, file not yet
/// destroyed), `import-env.imported` (likewise), `openclaw.daemon-config` (hook user written,
/// OpenClaw's config not yet), `firewall.daemon-config` (`[egress_lock]` written, table not yet
/// loaded).
fn crash_point(env: &dyn Env, point: &str) {
    if env
        .non_empty(ABORT_AT)
        .is_some_and(|v| v.to_str() == Some(point))
    {
        eprintln!("clawgate: {ABORT_AT}={point}: aborting here");
        std::process::abort();
    }
}

/// Prints a step's result in the one format every step uses.
fn report(step: &str, result: &anyhow::Result<Outcome>) {
    match result {
        Ok(o) if o.changed => println!("{step}: done: {}", o.detail),
        Ok(o) => println!("{step}: already done: {}", o.detail),
        Err(e) => println!("{step}: FAILED: {e:#}"),
    }
}

/// Runs one step as a command: prints its result, fails the command when it failed.
fn as_command(step: &str, result: anyhow::Result<Outcome>) -> anyhow::Result<()> {
    report(step, &result);
    result.map(|_| ())
}

fn settings_of(global: &GlobalArgs, env: &dyn Env, config: &Path) -> anyhow::Result<Settings> {
    daemon_cmd::settings(global, env, Some(config))
        .with_context(|| format!("reading the daemon configuration {}", config.display()))
}

/// Opens the journal of the daemon's state directory (created 0700 if missing).
fn open_journal(s: &Settings) -> anyhow::Result<Journal> {
    clawgate_wrapper::daemon::ensure_private_dir(&s.state_dir)?;
    let j = Journal::load(&s.state_dir)?;
    Ok(j)
}

/// Says so when an earlier run stopped during `step`.
fn note_interrupted(journal: &Journal, step: &str) {
    if journal.get(step).map(|r| r.state) == Some(StepState::Started) {
        println!("{step}: note: an earlier run stopped during this step; completing it");
    }
}

// --- secrets -------------------------------------------------------------------------------

pub(crate) fn secrets_cmd(
    global: &GlobalArgs,
    env: &dyn Env,
    args: &SecretsArgs,
) -> anyhow::Result<()> {
    let result =
        settings_of(global, env, &args.config.config).and_then(|s| secrets(env, &s, &args.from));
    as_command(STEP_SECRETS, result)
}

pub(crate) fn secrets(env: &dyn Env, s: &Settings, from: &Path) -> anyhow::Result<Outcome> {
    let from = std::path::absolute(from)?;
    let shown = from.display().to_string();
    // Read-only until the file passed its checks: a refusal changes nothing, not even the
    // state directory.
    let mut journal = Journal::load(&s.state_dir)?;
    let mut file = match SecretsFile::open(&from) {
        Ok(f) => f,
        Err(clawgate_provisioner::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            let consumed = journal.fact(STEP_SECRETS, "file") == Some(shown.as_str())
                && journal.fact(STEP_SECRETS, "imported") == Some("yes");
            if !consumed {
                bail!(
                    "{shown} does not exist, and this host has no record of importing it: nothing \
                     was imported; have the platform write the secrets file again"
                );
            }
            if journal.get(STEP_SECRETS).map(|r| r.state) != Some(StepState::Done) {
                journal.finish(STEP_SECRETS, &[])?;
            }
            return Ok(Outcome::new(
                false,
                format!(
                    "{shown} was imported ({}) and destroyed by an earlier run",
                    journal.fact(STEP_SECRETS, "names").unwrap_or("")
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let entries = file.read()?;
    let mut items = Vec::with_capacity(entries.len());
    for e in entries {
        let scope = if e.scoped {
            Scope::new(&e.tools, &e.hosts)
                .map_err(|err| anyhow::anyhow!("{shown}: secret {}: {err}", e.name))?
        } else {
            provider_scope(s, &e.name)?.unwrap_or_default()
        };
        items.push((e.name, e.value, scope));
    }
    let vault = open_vault(env, s)?;
    let mut journal = open_journal(s)?;
    note_interrupted(&journal, STEP_SECRETS);
    journal.start(STEP_SECRETS)?;
    journal.note(STEP_SECRETS, &[("file", &shown), ("imported", "no")])?;
    let imported = import(&vault, items)?;
    drop(vault);
    adopt_state_files(&s.state_dir)?;
    let names = imported.all_names();
    journal.note(STEP_SECRETS, &[("imported", "yes"), ("names", &names)])?;
    crash_point(env, "secrets.imported");
    file.destroy()?;
    journal.finish(STEP_SECRETS, &[])?;
    Ok(Outcome::new(
        true,
        format!("{}; {shown} overwritten and removed", imported.summary()),
    ))
}

// --- import-env ----------------------------------------------------------------------------

pub(crate) fn import_env_cmd(
    global: &GlobalArgs,
    env: &dyn Env,
    args: &ImportEnvArgs,
) -> anyhow::Result<()> {
    let result =
        settings_of(global, env, &args.config.config).and_then(|s| import_env(env, &s, &args.path));
    as_command(STEP_IMPORT_ENV, result)
}

/// Imports a `KEY=value` file and destroys it. The whole file goes: every line, the keys with
/// empty values (skipped, not imported) and anything that is not a secret. Provider keys get
/// the egress proxy's scope; every other secret an empty scope (no tool may receive it until
/// the owner scopes it with `clawgate vault put`).
pub(crate) fn import_env(env: &dyn Env, s: &Settings, path: &Path) -> anyhow::Result<Outcome> {
    let path = std::path::absolute(path)?;
    let shown = path.display().to_string();
    let mut journal = Journal::load(&s.state_dir)?;
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if journal.fact(STEP_IMPORT_ENV, "file") == Some(shown.as_str())
                && journal.fact(STEP_IMPORT_ENV, "imported") == Some("yes")
            {
                if journal.get(STEP_IMPORT_ENV).map(|r| r.state) != Some(StepState::Done) {
                    journal.finish(STEP_IMPORT_ENV, &[])?;
                }
                return Ok(Outcome::new(
                    false,
                    format!(
                        "{shown} was imported ({}) and destroyed by an earlier run",
                        journal.fact(STEP_IMPORT_ENV, "names").unwrap_or("")
                    ),
                ));
            }
            bail!(
                "{shown} does not exist, and this host has no record of importing it (nothing to \
                 import; leave [import_env] out of the provisioning file if there is no .env)"
            );
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {shown}"))),
    };
    if !meta.file_type().is_file() {
        bail!(
            "{shown} is not a regular file (symlinks are refused, so the overwrite cannot hit another file)"
        );
    }
    if meta.nlink() != 1 {
        bail!(
            "{shown} has {} hard links; refused (unlinking it would leave the plaintext under another name)",
            meta.nlink()
        );
    }
    let bytes = zeroize::Zeroizing::new(
        clawgate_protocol::io::read_capped(&path, MAX_ENV_FILE)
            .with_context(|| format!("reading {shown}"))?,
    );
    let text =
        std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("{shown} is not UTF-8 text"))?;
    let entries = envfile::parse(&path, text)?;
    let (empty, entries): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.value.is_empty());
    let mut items = Vec::with_capacity(entries.len());
    for e in entries {
        let scope = provider_scope(s, &e.name)?.unwrap_or_default();
        items.push((e.name, e.value, scope));
    }
    let vault = open_vault(env, s)?;
    let mut journal = open_journal(s)?;
    note_interrupted(&journal, STEP_IMPORT_ENV);
    journal.start(STEP_IMPORT_ENV)?;
    journal.note(STEP_IMPORT_ENV, &[("file", &shown), ("imported", "no")])?;
    let imported = import(&vault, items)?;
    drop(vault);
    adopt_state_files(&s.state_dir)?;
    let names = imported.all_names();
    journal.note(STEP_IMPORT_ENV, &[("imported", "yes"), ("names", &names)])?;
    crash_point(env, "import-env.imported");
    envfile::destroy_plaintext(&path)?;
    journal.finish(STEP_IMPORT_ENV, &[])?;
    let skipped = if empty.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = empty.iter().map(|e| e.name.as_str()).collect();
        format!("; skipped empty {}", names.join(", "))
    };
    Ok(Outcome::new(
        true,
        format!(
            "{}{skipped}; {shown} overwritten and removed (all of it: put back anything OpenClaw \
             itself needs from it, such as OPENCLAW_GATEWAY_TOKEN, through its service environment)",
            imported.summary()
        ),
    ))
}

/// The egress proxy's scope for a provider key name (`provider.anthropic`, `ANTHROPIC_API_KEY`,
/// …): tool `clawgate:egress`, host the configured upstream's. `None` for other names.
fn provider_scope(s: &Settings, name: &SecretName) -> anyhow::Result<Option<Scope>> {
    for provider in clawgate_egress::Provider::ALL {
        if clawgate_wrapper::egress::key_names(provider).contains(&name.as_str()) {
            let url = s
                .egress
                .upstreams
                .iter()
                .find(|(p, _)| *p == provider)
                .map_or(provider.default_upstream(), |(_, u)| u.as_str());
            let host = host_of_url(url);
            let scope = Scope::new([clawgate_wrapper::egress::EGRESS_TOOL], [host])
                .map_err(|e| anyhow::anyhow!("scope for {name}: {e}"))?;
            return Ok(Some(scope));
        }
    }
    Ok(None)
}

/// The host of `scheme://host[:port]/path`.
fn host_of_url(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Opens the daemon's vault as the daemon would (the embedded default creates it and its key).
fn open_vault(env: &dyn Env, s: &Settings) -> anyhow::Result<Vault> {
    if let clawgate_wrapper::config::VaultKey::Credential(name) = &s.vault_key
        && env.non_empty("CREDENTIALS_DIRECTORY").is_none()
    {
        bail!(
            "the vault key is the systemd credential {name}, which only a unit can decrypt: run \
             this step as `systemd-run -P --wait -p LoadCredentialEncrypted={name} clawgate \
             provision …` (or provision before moving the key into the credential)"
        );
    }
    clawgate_wrapper::daemon::ensure_private_dir(&s.state_dir)?;
    clawgate_wrapper::daemon::open_vault(s)?
        .ok_or_else(|| anyhow::anyhow!("the configuration has no vault"))
}

/// What [`import`] did.
struct Imported {
    written: Vec<String>,
    unchanged: Vec<String>,
}

impl Imported {
    fn all_names(&self) -> String {
        let mut all: Vec<&str> = self
            .written
            .iter()
            .chain(&self.unchanged)
            .map(String::as_str)
            .collect();
        all.sort_unstable();
        all.join(",")
    }

    fn summary(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.join(", "))
            }
        };
        format!(
            "{} secret(s) written{}, {} already in the vault unchanged{}",
            self.written.len(),
            list(&self.written),
            self.unchanged.len(),
            list(&self.unchanged)
        )
    }
}

/// Puts the secrets whose value or scope differs from the vault's, in one transaction; those
/// already stored exactly so are left alone (no new version), so a re-run changes nothing.
fn import(
    vault: &Vault,
    items: Vec<(SecretName, SecretString, Scope)>,
) -> anyhow::Result<Imported> {
    let stored = vault.list()?;
    let mut written = Vec::new();
    let mut unchanged = Vec::new();
    let mut to_put = Vec::new();
    for (name, value, scope) in items {
        let same_scope = stored
            .iter()
            .any(|r| r.name == name.as_str() && r.scope == scope);
        let same_value = same_scope
            && vault.get(&name).is_ok_and(|v| {
                clawgate_protocol::secret::constant_time_eq(
                    v.expose().as_bytes(),
                    value.expose().as_bytes(),
                )
            });
        if same_value {
            unchanged.push(name.to_string());
        } else {
            written.push(name.to_string());
            to_put.push((name, value, scope));
        }
    }
    if !to_put.is_empty() {
        vault.put_many(&to_put)?;
    }
    Ok(Imported { written, unchanged })
}

/// Run as root on a packaged host, a step creates files in the daemon's state directory
/// (the vault and its WAL, the key file, the agent tokens) that the daemon, running as the
/// directory's owner, must read and write. Gives root's regular files there to the directory's
/// owner; the journal stays root's.
pub(crate) fn adopt_state_files(state_dir: &Path) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let dir =
        std::fs::metadata(state_dir).with_context(|| format!("reading {}", state_dir.display()))?;
    if dir.uid() == 0 {
        return Ok(());
    }
    for entry in
        std::fs::read_dir(state_dir).with_context(|| format!("listing {}", state_dir.display()))?
    {
        let entry = entry?;
        if entry.file_name() == clawgate_provisioner::journal::FILE {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.file_type().is_file() && meta.uid() == 0 {
            std::os::unix::fs::lchown(entry.path(), Some(dir.uid()), Some(dir.gid()))
                .with_context(|| {
                    format!("giving {} to uid {}", entry.path().display(), dir.uid())
                })?;
        }
    }
    Ok(())
}

// --- openclaw ------------------------------------------------------------------------------

pub(crate) fn openclaw_cmd(
    global: &GlobalArgs,
    env: &dyn Env,
    args: &OpenclawArgs,
) -> anyhow::Result<()> {
    let request = OpenclawRequest {
        daemon_config: args.config.config.clone(),
        openclaw_config: args.openclaw_config.clone(),
        agent_user: args.agent_user.clone(),
        agent: args.agent.clone(),
        plugin_dir: args.plugin_dir.clone(),
        routes: args.route.clone(),
        hook_group: args.hook_group.clone(),
    };
    as_command(STEP_OPENCLAW, openclaw(global, env, &request))
}

/// What the openclaw step needs.
#[derive(Debug, Clone)]
pub(crate) struct OpenclawRequest {
    pub(crate) daemon_config: PathBuf,
    pub(crate) openclaw_config: PathBuf,
    pub(crate) agent_user: String,
    pub(crate) agent: String,
    pub(crate) plugin_dir: PathBuf,
    pub(crate) routes: Vec<String>,
    pub(crate) hook_group: String,
}

/// The agent's user: must exist and must not be root.
fn agent_account(name: &str) -> anyhow::Result<nix::unistd::User> {
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("looking up user {name}"))?
        .ok_or_else(|| {
            UsageError(format!(
                "no user `{name}` on this host: create OpenClaw's user first"
            ))
        })?;
    if user.uid.is_root() {
        bail!(UsageError(format!(
            "`{name}` is root: OpenClaw must run as its own unprivileged user"
        )));
    }
    Ok(user)
}

pub(crate) fn openclaw(
    global: &GlobalArgs,
    env: &dyn Env,
    r: &OpenclawRequest,
) -> anyhow::Result<Outcome> {
    // Everything that can be refused is checked before the first change.
    let user = agent_account(&r.agent_user)?;
    let group = nix::unistd::Group::from_name(&r.hook_group)
        .with_context(|| format!("looking up group {}", r.hook_group))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no group `{}` on this host: is the clawgate package installed?",
                r.hook_group
            )
        })?;
    clawgate_wrapper::tokens::check_agent_id(&r.agent).map_err(|e| UsageError(e.to_string()))?;
    let config_text = read_text(&r.daemon_config)?;
    let new_config = daemon_config::allow_hook_user(&r.daemon_config, &config_text, &r.agent_user)?;
    if let Some(text) = &new_config {
        check_daemon_config(global, env, &r.daemon_config, text)?;
    }
    let s = settings_of(global, env, &r.daemon_config)?;
    let mut journal = open_journal(&s)?;
    note_interrupted(&journal, STEP_OPENCLAW);
    journal.start(STEP_OPENCLAW)?;
    let openclaw_config = std::path::absolute(&r.openclaw_config)?;
    journal.note(
        STEP_OPENCLAW,
        &[
            ("openclaw_config", &openclaw_config.display().to_string()),
            ("agent_user", &r.agent_user),
            ("agent", &r.agent),
        ],
    )?;
    let mut did = Vec::new();
    let mut found = Vec::new();

    // 1. The hook socket's group.
    let member = user.gid == group.gid || group.mem.iter().any(|m| m == &r.agent_user);
    if member {
        found.push(format!("{} in group {}", r.agent_user, r.hook_group));
    } else {
        run_tool(
            "/usr/sbin/usermod",
            &["-a", "-G", &r.hook_group, &r.agent_user],
        )?;
        did.push(format!(
            "{} added to group {} (restart OpenClaw's gateway so it runs with the group)",
            r.agent_user, r.hook_group
        ));
    }

    // 2. hook.allowed_users in the daemon's configuration.
    let s = match new_config {
        Some(text) => {
            daemon_config::write_preserving(&r.daemon_config, &text)?;
            did.push(format!(
                "{} added to hook.allowed_users in {}",
                r.agent_user,
                r.daemon_config.display()
            ));
            restart_daemon_if_running()?;
            crash_point(env, "openclaw.daemon-config");
            settings_of(global, env, &r.daemon_config)?
        }
        None => {
            found.push(format!("{} in hook.allowed_users", r.agent_user));
            s
        }
    };

    // 3. The plugin and the provider routes.
    let configured =
        daemon_cmd::configure_openclaw(&s, &openclaw_config, &r.plugin_dir, &r.agent, &r.routes)?;
    adopt_state_files(&s.state_dir)?;
    for u in &configured.unrouted {
        println!("{STEP_OPENCLAW}: warning: {u}");
    }
    if configured.changes.is_empty() {
        found.push(format!("{} configured", openclaw_config.display()));
    } else {
        did.push(format!(
            "{}: {}",
            openclaw_config.display(),
            configured.changes.join("; ")
        ));
    }
    if let Some(backup) = &configured.backup {
        // The previous config may hold real provider keys: root's alone.
        protect(backup, 0, 0, 0o600)?;
        did.push(format!("backup {} (root, 0600)", backup.display()));
    }

    // 4. Ownership: root, the agent's group, 0640 (the gateway reads it, the agent cannot write).
    let meta = std::fs::metadata(&openclaw_config)
        .with_context(|| format!("reading {}", openclaw_config.display()))?;
    if meta.uid() == 0
        && meta.gid() == user.gid.as_raw()
        && meta.permissions().mode() & 0o7777 == 0o640
    {
        found.push(format!(
            "{} root:{} 0640",
            openclaw_config.display(),
            user.gid
        ));
    } else {
        protect(&openclaw_config, 0, user.gid.as_raw(), 0o640)?;
        did.push(format!(
            "{} now root-owned, group {} (gid {}), mode 0640",
            openclaw_config.display(),
            r.agent_user,
            user.gid
        ));
    }
    if let Some(dir) = openclaw_config.parent()
        && let Ok(d) = std::fs::metadata(dir)
        && (d.uid() == user.uid.as_raw() || d.permissions().mode() & 0o002 != 0)
    {
        println!(
            "{STEP_OPENCLAW}: note: {} is writable by {}, who could replace (not edit) the file; \
             the default policy classifies writes to OpenClaw's config as critical, and \
             `clawgate doctor` checks the ownership",
            dir.display(),
            r.agent_user
        );
    }
    journal.finish(STEP_OPENCLAW, &[])?;
    Ok(if did.is_empty() {
        Outcome::new(false, found.join("; "))
    } else {
        Outcome::new(true, did.join("; "))
    })
}

/// A configuration file's text (at most 1 MiB of UTF-8).
fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = clawgate_protocol::io::read_capped(path, 1024 * 1024)
        .with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8", path.display()))
}

/// chown + chmod.
fn protect(path: &Path, uid: u32, gid: u32, mode: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:04o} {}", path.display()))
}

/// Validates a candidate daemon configuration as `clawgate validate` would, before it replaces
/// the real one.
fn check_daemon_config(
    global: &GlobalArgs,
    env: &dyn Env,
    path: &Path,
    text: &str,
) -> anyhow::Result<()> {
    let raw = clawgate_wrapper::config::parse(text, path)?;
    let mut raw = raw;
    if let Some(dir) = &global.state_dir {
        raw.state_dir = Some(dir.clone());
    }
    let default_dir = match &raw.state_dir {
        Some(d) => d.clone(),
        None => crate::state::state_dir(None, env)?,
    };
    raw.validate(&default_dir, &clawgate_wrapper::SystemAccounts)
        .with_context(|| {
            format!(
                "the edited {} would not be valid; left unchanged",
                path.display()
            )
        })?;
    Ok(())
}

/// Socket and lock settings take effect at a restart: restart the daemon if it runs under
/// systemd (`try-restart` leaves a stopped service stopped).
fn restart_daemon_if_running() -> anyhow::Result<()> {
    if systemd_is_running() {
        systemctl(&["try-restart", "clawgate.service"])?;
    }
    Ok(())
}

/// Runs a host tool (fixed path), failing with its error output.
fn run_tool(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

// --- all -----------------------------------------------------------------------------------

/// The provisioning file (`clawgate provision all --config FILE`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisioningFile {
    /// The daemon's configuration (default /etc/clawgate/clawgate.toml).
    clawgate_config: Option<PathBuf>,
    agent: AgentSection,
    secrets: Option<SecretsSection>,
    import_env: Option<ImportEnvSection>,
    openclaw: OpenclawSection,
    hub: Option<HubSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    user: String,
    id: Option<String>,
    unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsSection {
    from: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportEnvSection {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenclawSection {
    config: PathBuf,
    plugin_dir: Option<PathBuf>,
    #[serde(default)]
    routes: Vec<String>,
    hook_group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HubSection {
    url: String,
    token_file: PathBuf,
}

fn read_provisioning_file(path: &Path) -> anyhow::Result<ProvisioningFile> {
    let bytes = clawgate_protocol::io::read_capped(path, 256 * 1024)
        .with_context(|| format!("reading {}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| UsageError(format!("{} is not UTF-8", path.display())))?;
    let file: ProvisioningFile =
        toml::from_str(text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    for r in &file.openclaw.routes {
        if !r.contains('=') {
            bail!(UsageError(format!(
                "{}: openclaw.routes entry `{r}` is not ID=ROUTE",
                path.display()
            )));
        }
    }
    if let Some(hub) = &file.hub
        && !hub.url.starts_with("https://")
    {
        bail!(UsageError(format!(
            "{}: hub.url must be an https:// URL",
            path.display()
        )));
    }
    Ok(file)
}

pub(crate) fn all(
    global: &GlobalArgs,
    env: &dyn Env,
    args: &crate::provision_cmd::AllArgs,
) -> anyhow::Result<()> {
    let file = read_provisioning_file(&args.config)?;
    let daemon_config = file
        .clawgate_config
        .clone()
        .unwrap_or_else(|| PathBuf::from(PACKAGED_CONFIG));
    // Refusable input first: the daemon configuration, the agent's user, the hook group, the
    // plugin and the input files, so a bad request changes nothing.
    let s = settings_of(global, env, &daemon_config)?;
    agent_account(&file.agent.user)?;
    let hook_group = file
        .openclaw
        .hook_group
        .as_deref()
        .unwrap_or("clawgate-hook");
    if nix::unistd::Group::from_name(hook_group)
        .ok()
        .flatten()
        .is_none()
    {
        bail!(UsageError(format!(
            "no group `{hook_group}` on this host: is the clawgate package installed?"
        )));
    }
    let plugin_dir = file
        .openclaw
        .plugin_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(daemon_cmd::PACKAGED_PLUGIN_DIR));
    if !plugin_dir.join("openclaw.plugin.json").is_file() {
        bail!(UsageError(format!(
            "{} does not hold the Clawgate plugin (no openclaw.plugin.json)",
            plugin_dir.display()
        )));
    }

    type Step<'a> = (
        &'static str,
        Box<dyn FnOnce() -> anyhow::Result<Outcome> + 'a>,
    );
    let mut steps: Vec<Step<'_>> = Vec::new();
    if let Some(sec) = &file.secrets {
        let s = s.clone();
        steps.push((STEP_SECRETS, Box::new(move || secrets(env, &s, &sec.from))));
    }
    if let Some(ie) = &file.import_env {
        let s = s.clone();
        steps.push((
            STEP_IMPORT_ENV,
            Box::new(move || import_env(env, &s, &ie.path)),
        ));
    }
    let request = OpenclawRequest {
        daemon_config: daemon_config.clone(),
        openclaw_config: file.openclaw.config.clone(),
        agent_user: file.agent.user.clone(),
        agent: file.agent.id.clone().unwrap_or_else(|| "main".to_owned()),
        plugin_dir: file
            .openclaw
            .plugin_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(daemon_cmd::PACKAGED_PLUGIN_DIR)),
        routes: file.openclaw.routes.clone(),
        hook_group: file
            .openclaw
            .hook_group
            .clone()
            .unwrap_or_else(|| "clawgate-hook".to_owned()),
    };
    steps.push((
        STEP_OPENCLAW,
        Box::new(move || openclaw(global, env, &request)),
    ));
    {
        let daemon_config = daemon_config.clone();
        let agent = &file.agent;
        steps.push((
            STEP_FIREWALL,
            Box::new(move || {
                firewall(
                    global,
                    env,
                    &daemon_config,
                    &agent.user,
                    agent.unit.as_deref(),
                )
            }),
        ));
    }
    if let Some(hub) = &file.hub {
        let daemon_config = daemon_config.clone();
        steps.push((
            STEP_ENROLL,
            Box::new(move || enroll(global, env, &daemon_config, hub)),
        ));
    }

    let total = steps.len();
    for (i, (name, step)) in steps.into_iter().enumerate() {
        let result = step();
        report(name, &result);
        if let Err(e) = result {
            println!(
                "provision all: stopped at step {} of {total} ({name}); fix the cause and run it again (every step is safe to re-run)",
                i + 1
            );
            return Err(e.context(format!("provision all: step {name} failed")));
        }
    }
    println!("provision all: {total} step(s) complete; check the host with `clawgate doctor`");
    Ok(())
}

/// The firewall step of `all`: the daemon watches the lock through the status file (it has no
/// `CAP_NET_ADMIN`), then the table is written and loaded and, under systemd, its units enabled.
fn firewall(
    global: &GlobalArgs,
    env: &dyn Env,
    daemon_config: &Path,
    agent_user: &str,
    agent_unit: Option<&str>,
) -> anyhow::Result<Outcome> {
    let text = read_text(daemon_config)?;
    let edited = daemon_config::set_egress_lock(daemon_config, &text, agent_user, "status-file")?;
    if let Some(new) = &edited {
        check_daemon_config(global, env, daemon_config, new)?;
    }
    let s = settings_of(global, env, daemon_config)?;
    let mut journal = open_journal(&s)?;
    note_interrupted(&journal, STEP_FIREWALL);
    journal.start(STEP_FIREWALL)?;
    let mut changed = false;
    if let Some(new) = &edited {
        daemon_config::write_preserving(daemon_config, new)?;
        println!(
            "{STEP_FIREWALL}: {}: [egress_lock] agent_user = \"{agent_user}\", probe = \"status-file\"",
            daemon_config.display()
        );
        changed = true;
        crash_point(env, "firewall.daemon-config");
    }
    let args = FirewallArgs {
        agent_user: agent_user.to_owned(),
        config: ConfigArg {
            config: Some(daemon_config.to_owned()),
        },
        print: false,
        write: None,
        apply: false,
        agent_unit: agent_unit.map(str::to_owned),
    };
    changed |= crate::provision_cmd::provision_firewall(global, env, &args)?;
    if edited.is_some() {
        restart_daemon_if_running()?;
    }
    if !systemd_is_running() {
        // Offline (no systemd as PID 1, e.g. a chroot): enable the units for the next boot,
        // where the package installed them.
        let units = [
            crate::provision_cmd::LOCK_UNIT,
            crate::provision_cmd::LOCK_STATUS_UNIT,
        ];
        if units.iter().all(|u| unit_installed(u)) {
            let enabled = units
                .iter()
                .all(|u| crate::provision_cmd::systemctl_says(&["is-enabled", u]) == "enabled");
            if !enabled {
                let mut args = vec!["enable"];
                args.extend(units);
                systemctl(&args)?;
                println!(
                    "{STEP_FIREWALL}: enabled {} for the next boot (systemd is not running)",
                    units.join(", ")
                );
                changed = true;
            }
        } else {
            println!(
                "{STEP_FIREWALL}: note: systemd is not running and the lock's units are not installed: start `clawgate provision lock-status --every 2` as root yourself, or clawgate serve will count the lock as lost"
            );
        }
    }
    journal.finish(STEP_FIREWALL, &[("agent_user", agent_user)])?;
    Ok(Outcome::new(
        changed,
        format!(
            "inet clawgate_egress in force for {agent_user}; clawgate serve reads it from the status file"
        ),
    ))
}

/// Whether the package installed `unit`.
fn unit_installed(unit: &str) -> bool {
    [
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
        "/etc/systemd/system",
    ]
    .iter()
    .any(|d| Path::new(d).join(unit).exists())
}

/// `clawgate enroll --hub URL --token-file FILE`, run as a subprocess of this binary (the
/// daemon configuration through `CLAWGATE_CONFIG`, its state directory through
/// `CLAWGATE_STATE_DIR`). An identity already stored is "already done".
fn enroll(
    global: &GlobalArgs,
    env: &dyn Env,
    daemon_config: &Path,
    hub: &HubSection,
) -> anyhow::Result<Outcome> {
    let s = daemon_cmd::settings(global, env, Some(daemon_config))?;
    let identity = s.state_dir.join(HUB_IDENTITY);
    if identity.exists() {
        return Ok(Outcome::new(
            false,
            format!("enrolled ({} exists)", identity.display()),
        ));
    }
    let mut journal = open_journal(&s)?;
    note_interrupted(&journal, STEP_ENROLL);
    journal.start(STEP_ENROLL)?;
    let exe = std::env::current_exe().context("finding this program")?;
    let out = std::process::Command::new(&exe)
        .arg("enroll")
        .arg("--hub")
        .arg(&hub.url)
        .arg("--token-file")
        .arg(&hub.token_file)
        .env("CLAWGATE_CONFIG", daemon_config)
        .env("CLAWGATE_STATE_DIR", &s.state_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {} enroll", exe.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("clawgate enroll failed ({}): {}", out.status, stderr.trim());
    }
    adopt_state_files(&s.state_dir)?;
    journal.finish(STEP_ENROLL, &[("hub", &hub.url)])?;
    Ok(Outcome::new(
        true,
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace('\n', "; "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_identity_file_is_the_hub_crates() {
        assert_eq!(HUB_IDENTITY, clawgate_hub::identity::IDENTITY_FILE);
    }

    #[test]
    fn hosts_of_upstream_urls() {
        assert_eq!(
            host_of_url("https://api.anthropic.com"),
            "api.anthropic.com"
        );
        assert_eq!(host_of_url("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(host_of_url("http://127.0.0.1:9000/x"), "127.0.0.1");
        assert_eq!(host_of_url("http://[::1]:9000/x"), "::1");
    }

    #[test]
    fn provisioning_file_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        let cases = [
            ("[agent]\nuser = \"a\"\n", "missing field `openclaw`"),
            (
                "[agent]\nuser = \"a\"\n[openclaw]\nconfig = \"/x\"\nbogus = 1\n",
                "unknown field",
            ),
            (
                "[agent]\nuser = \"a\"\n[openclaw]\nconfig = \"/x\"\nroutes = [\"x\"]\n",
                "not ID=ROUTE",
            ),
            (
                "[agent]\nuser = \"a\"\n[openclaw]\nconfig = \"/x\"\n[hub]\nurl = \"http://h\"\ntoken_file = \"/t\"\n",
                "https://",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&p, text).unwrap();
            let e = read_provisioning_file(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        std::fs::write(
            &p,
            "[agent]\nuser = \"a\"\n[secrets]\nfrom = \"/s\"\n[openclaw]\nconfig = \"/x\"\n",
        )
        .unwrap();
        let f = read_provisioning_file(&p).unwrap();
        assert_eq!(f.secrets.unwrap().from, Path::new("/s"));
    }
}
