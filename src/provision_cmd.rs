//! `clawgate provision …`: the host provisioning steps of `clawgate-provisioner`, and the
//! egress-lock probes `clawgate serve` watches the nftables table with (`nft` itself, or the
//! status file the root status service writes).
//!
//! The clap types of this subcommand live here rather than in `cli.rs`, so further steps add
//! their variants in this file. The steps other than `firewall` are in `provision_steps.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use clawgate_protocol::env::Env;
use clawgate_provisioner::firewall::{self, Agent, Applied, LockState, Nft, Spec, status, systemd};
use clawgate_wrapper::Settings;
use clawgate_wrapper::config::LockProbeKind;
use clawgate_wrapper::lock::{LockProbe, LockReading};

use crate::cli::{ConfigArg, GlobalArgs, UsageError};
use crate::daemon_cmd;
use crate::provision_steps;

/// The packaged daemon configuration, the default of every step but `firewall`.
pub(crate) const PACKAGED_CONFIG: &str = "/etc/clawgate/clawgate.toml";
/// The lock's units, enabled by the provisioner.
pub(crate) const LOCK_UNIT: &str = "clawgate-egress-lock.service";
/// The root service that writes the lock's status file for the daemon.
pub(crate) const LOCK_STATUS_UNIT: &str = "clawgate-egress-lock-status.service";

#[derive(Debug, Subcommand)]
pub(crate) enum ProvisionCommand {
    /// Import the platform's one-time secrets file into the vault, then overwrite it with zeros
    /// and remove it. Refuses a symlink, a file another user owns, one group or others can
    /// access, or one with other hard links (nothing is imported, the file is left alone).
    /// Unchanged values are not rewritten; a file an earlier run already consumed is reported
    /// as already done. Format: clawgate(1), SECRETS FILE.
    Secrets(SecretsArgs),
    /// Move a KEY=value file (OpenClaw's ~/.openclaw/.env) into the vault, then overwrite and
    /// remove the whole file. Provider keys (ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY,
    /// GOOGLE_API_KEY, OPENROUTER_API_KEY) get the egress proxy's scope; others an empty scope.
    ImportEnv(ImportEnvArgs),
    /// Set up OpenClaw for Clawgate: the agent's user into the hook socket's group and
    /// hook.allowed_users, the plugin and provider routes (as `clawgate openclaw configure`)
    /// into OpenClaw's config, which is then owned by root (group: the agent's, mode 0640) so
    /// the agent cannot rewrite it.
    Openclaw(OpenclawArgs),
    /// Lock the agent's user's egress: an nftables table (inet clawgate_egress) that lets it
    /// reach only the proxy's loopback listeners (from --config). Writes
    /// /etc/clawgate/egress-lock.nft (0644) and loads it; safe to re-run (an identical table in
    /// force is left alone, counters kept). Needs root to load. Under systemd it also enables
    /// and starts clawgate-egress-lock.service (and, when the configuration has `[egress_lock]`,
    /// clawgate-egress-lock-status.service).
    Firewall(FirewallArgs),
    /// Every step in order from one provisioning file: secrets, import-env, openclaw, firewall,
    /// and enroll when the file has a `[hub]` table. Format: clawgate(1), PROVISIONING FILE.
    All(AllArgs),
    /// Judge the live egress lock and write the verdict to the status file the daemon reads
    /// (root; what clawgate-egress-lock-status.service runs, with --every).
    LockStatus(LockStatusArgs),
}

/// The daemon configuration a provisioning step reads (and edits).
#[derive(Debug, Args)]
pub(crate) struct DaemonConfigArg {
    /// The daemon's configuration.
    #[arg(long, env = "CLAWGATE_CONFIG", value_name = "FILE", default_value = PACKAGED_CONFIG)]
    pub(crate) config: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct SecretsArgs {
    /// The secrets file the platform wrote (JSON, mode 0600, owned by the caller).
    #[arg(long, value_name = "FILE")]
    pub(crate) from: PathBuf,
    #[command(flatten)]
    pub(crate) config: DaemonConfigArg,
}

#[derive(Debug, Args)]
pub(crate) struct ImportEnvArgs {
    /// The KEY=value file, e.g. /home/openclaw/.openclaw/.env
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,
    #[command(flatten)]
    pub(crate) config: DaemonConfigArg,
}

#[derive(Debug, Args)]
pub(crate) struct OpenclawArgs {
    /// OpenClaw's config file (openclaw.json; created if missing).
    #[arg(long, value_name = "PATH")]
    pub(crate) openclaw_config: PathBuf,
    /// The user OpenClaw (the agent) runs as: must exist, must not be root.
    #[arg(long, value_name = "USER")]
    pub(crate) agent_user: String,
    /// The agent whose proxy token the model providers carry.
    #[arg(long, default_value = "main")]
    pub(crate) agent: String,
    /// The plugin directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/usr/share/clawgate/openclaw-plugin"
    )]
    pub(crate) plugin_dir: PathBuf,
    /// Also route custom provider ID through the proxy's ROUTE; repeatable (as for
    /// `clawgate openclaw configure`).
    #[arg(long, value_name = "ID=ROUTE")]
    pub(crate) route: Vec<String>,
    /// The group whose members may reach the hook socket (the packaged /run/clawgate's group).
    #[arg(long, value_name = "GROUP", default_value = "clawgate-hook")]
    pub(crate) hook_group: String,
    #[command(flatten)]
    pub(crate) config: DaemonConfigArg,
}

#[derive(Debug, Args)]
pub(crate) struct AllArgs {
    /// The provisioning file (TOML).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct LockStatusArgs {
    #[command(flatten)]
    pub(crate) config: DaemonConfigArg,
    /// Where to write (default: the configuration's egress_lock.status_file, else
    /// /run/clawgate-lock/status.json).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Keep judging every SECONDS (1-60) instead of once.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=60))]
    pub(crate) every: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct FirewallArgs {
    /// The agent's user (name or uid): must exist, must not be root. Resolved to its uid now.
    #[arg(long, value_name = "USER")]
    pub(crate) agent_user: String,
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// Print the ruleset (and, with --agent-unit, the drop-in) instead of writing files.
    #[arg(long, conflicts_with = "write")]
    pub(crate) print: bool,
    /// Write the ruleset to FILE instead of /etc/clawgate/egress-lock.nft.
    #[arg(long, value_name = "FILE")]
    pub(crate) write: Option<PathBuf>,
    /// Load the ruleset now (the default when neither --print nor --write is given).
    #[arg(long)]
    pub(crate) apply: bool,
    /// Also give this systemd unit of the agent (a .service or a slice such as user-1001.slice)
    /// the second layer, a drop-in with IPAddressDeny=any and IPAddressAllow=localhost, if this
    /// host really enforces it (checked with a probe unit; skipped with the reason otherwise).
    #[arg(long, value_name = "UNIT")]
    pub(crate) agent_unit: Option<String>,
}

pub(crate) fn run(global: &GlobalArgs, env: &dyn Env, cmd: ProvisionCommand) -> anyhow::Result<()> {
    match cmd {
        ProvisionCommand::Firewall(args) => provision_firewall(global, env, &args).map(|_| ()),
        ProvisionCommand::Secrets(args) => provision_steps::secrets_cmd(global, env, &args),
        ProvisionCommand::ImportEnv(args) => provision_steps::import_env_cmd(global, env, &args),
        ProvisionCommand::Openclaw(args) => provision_steps::openclaw_cmd(global, env, &args),
        ProvisionCommand::All(args) => provision_steps::all(global, env, &args),
        ProvisionCommand::LockStatus(args) => lock_status(global, env, &args),
    }
}

/// The proxy listeners the agent may reach: the reverse proxy and the CONNECT listener.
pub(crate) fn proxy_listeners(s: &Settings) -> Vec<SocketAddr> {
    [s.egress.listen, s.egress.connect_listen]
        .into_iter()
        .flatten()
        .collect()
}

/// Runs the firewall step; returns whether anything changed (file written, table loaded, unit
/// enabled or drop-in written).
pub(crate) fn provision_firewall(
    global: &GlobalArgs,
    env: &dyn Env,
    args: &FirewallArgs,
) -> anyhow::Result<bool> {
    let mut changed = false;
    let settings = daemon_cmd::settings(global, env, args.config.config.as_deref())?;
    let agent = Agent::resolve(&args.agent_user).map_err(|e| UsageError(e.to_string()))?;
    match &settings.egress_lock {
        Some(lock) if lock.agent_uid != agent.uid() => anyhow::bail!(UsageError(format!(
            "--agent-user {} is uid {}, but the configuration's egress_lock.agent_user `{}` is uid {}: clawgate serve would report the lock as altered forever",
            args.agent_user,
            agent.uid(),
            lock.agent_user,
            lock.agent_uid
        ))),
        Some(_) => {}
        None if !args.print => println!(
            "note: the configuration has no [egress_lock] table, so clawgate serve will not watch this lock; add\n  [egress_lock]\n  agent_user = \"{}\"",
            agent.name()
        ),
        None => {}
    }
    let listeners = proxy_listeners(&settings);
    let spec = Spec::new(agent, &listeners)?;
    let text = spec.ruleset();
    if args.print {
        print!("{text}");
    } else {
        let path = args
            .write
            .clone()
            .unwrap_or_else(|| PathBuf::from(firewall::DEFAULT_PATH));
        let path =
            std::path::absolute(&path).with_context(|| format!("resolving {}", path.display()))?;
        let written = firewall::write_file(&path, &text)?;
        changed |= written;
        println!(
            "{}: {}",
            path.display(),
            if written { "written" } else { "unchanged" }
        );
    }
    let who = format!("{} (uid {})", spec.agent().name(), spec.agent().uid());
    if listeners.is_empty() {
        println!(
            "warning: the proxy's listeners are off in the configuration: {who} can reach nothing"
        );
    }
    if args.apply || (!args.print && args.write.is_none()) {
        let nft = Nft::find()?;
        let done = firewall::apply(&nft, &spec).context("loading the egress lock")?;
        changed |= done == Applied::Loaded;
        let allowed: Vec<String> = listeners.iter().map(ToString::to_string).collect();
        println!(
            "table {} {}: {}; {who} may reach only {}",
            firewall::FAMILY,
            firewall::TABLE,
            match done {
                Applied::AlreadyInForce => "already in force (left alone, counters kept)",
                Applied::Loaded => "loaded and verified",
            },
            if allowed.is_empty() {
                "nothing".to_owned()
            } else {
                allowed.join(", ")
            }
        );
    }
    if args.write.is_none() && !args.print && systemd_is_running() {
        changed |= enable_lock_units(settings.egress_lock.is_some())?;
    }
    if let Some(unit) = &args.agent_unit {
        changed |= systemd_layer(unit, args.print)?;
    }
    Ok(changed)
}

/// Whether systemd is the init system (the test sd_booted(3) makes).
pub(crate) fn systemd_is_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `systemctl enable --now` the lock's units (the status service only when the daemon watches
/// the lock); returns whether one was not already enabled and active.
fn enable_lock_units(with_status: bool) -> anyhow::Result<bool> {
    let mut units = vec![LOCK_UNIT];
    if with_status {
        units.push(LOCK_STATUS_UNIT);
    }
    let mut changed = false;
    for unit in units {
        let enabled = systemctl_says(&["is-enabled", unit]) == "enabled";
        let active = systemctl_says(&["is-active", unit]) == "active";
        if enabled && active {
            println!("{unit}: already enabled and active");
            continue;
        }
        systemctl(&["enable", "--now", unit])?;
        println!("{unit}: enabled and started");
        changed = true;
    }
    if !with_status {
        println!(
            "note: the configuration has no [egress_lock]: {LOCK_STATUS_UNIT} was not enabled, so clawgate serve does not watch the lock"
        );
    }
    Ok(changed)
}

/// The first line `systemctl ARGS` prints (empty when it cannot run).
pub(crate) fn systemctl_says(args: &[&str]) -> String {
    std::process::Command::new("systemctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// Runs `systemctl ARGS`; a failure is an error with systemctl's message.
pub(crate) fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !out.status.success() {
        anyhow::bail!(
            "systemctl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The drop-in for the agent's unit, written only where systemd really enforces it (printed
/// with the verdict under --print).
fn systemd_layer(unit: &str, print_only: bool) -> anyhow::Result<bool> {
    let path = systemd::drop_in_path(unit).map_err(|e| UsageError(e.to_string()))?;
    if print_only {
        let verdict = match systemd::detect() {
            systemd::IpFirewall::Supported => "enforced on this host".to_owned(),
            systemd::IpFirewall::Unsupported(why) => format!("not enforced on this host: {why}"),
        };
        print!(
            "\n# {} ({verdict})\n{}",
            path.display(),
            systemd::drop_in_text()
        );
        return Ok(false);
    }
    match systemd::detect() {
        systemd::IpFirewall::Unsupported(why) => {
            println!(
                "note: no systemd drop-in for {unit}: {why}. The nftables table is the lock on this host."
            );
            Ok(false)
        }
        systemd::IpFirewall::Supported => {
            let written = firewall::write_file(&path, systemd::drop_in_text())?;
            if written {
                reload_systemd()?;
            }
            println!(
                "{}: {} (IPAddressDeny=any, IPAddressAllow=localhost); restart {unit} for it to apply",
                path.display(),
                if written { "written" } else { "unchanged" }
            );
            Ok(written)
        }
    }
}

fn reload_systemd() -> anyhow::Result<()> {
    let status = std::process::Command::new("systemctl")
        .arg("daemon-reload")
        .status()
        .context("running systemctl daemon-reload")?;
    if !status.success() {
        anyhow::bail!("systemctl daemon-reload failed ({status})");
    }
    Ok(())
}

/// Reads the live table with nft and judges it against the lock the configuration expects.
#[derive(Debug)]
struct NftProbe {
    spec: Spec,
}

impl LockProbe for NftProbe {
    fn read(&self) -> LockReading {
        // Looked up at every check: nftables installed after the daemon started is found.
        let result = Nft::find().and_then(|nft| firewall::inspect(&nft, &self.spec));
        match result {
            Ok(LockState::InForce(counters)) => LockReading::InForce(counters),
            Ok(LockState::Missing) => LockReading::Missing,
            Ok(LockState::Altered(differences)) => LockReading::Altered(differences),
            Err(e) => LockReading::Unreadable(e.to_string()),
        }
    }
}

/// Reads the verdict of the root status service (`clawgate provision lock-status --every`):
/// the daemon needs no `CAP_NET_ADMIN`. Every doubt about the file reads as unreadable, which
/// the watcher counts as the lock lost.
#[derive(Debug)]
struct StatusFileProbe {
    spec: Spec,
    path: PathBuf,
    max_age: Duration,
}

impl LockProbe for StatusFileProbe {
    fn read(&self) -> LockReading {
        match status::read(&self.path, &self.spec, unix_now(), self.max_age) {
            Ok(LockState::InForce(counters)) => LockReading::InForce(counters),
            Ok(LockState::Missing) => LockReading::Missing,
            Ok(LockState::Altered(differences)) => LockReading::Altered(differences),
            Err(e) => LockReading::Unreadable(e.to_string()),
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The lock the configuration expects, if any.
pub(crate) fn lock_spec(settings: &Settings) -> anyhow::Result<Option<Spec>> {
    let Some(lock) = &settings.egress_lock else {
        return Ok(None);
    };
    let agent = Agent::new(&lock.agent_user, lock.agent_uid)?;
    Ok(Some(Spec::new(agent, &proxy_listeners(settings))?))
}

/// The probe `clawgate serve` watches the lock with, when the configuration has one.
pub(crate) fn lock_probe(settings: &Settings) -> anyhow::Result<Option<Arc<dyn LockProbe>>> {
    let (Some(lock), Some(spec)) = (&settings.egress_lock, lock_spec(settings)?) else {
        return Ok(None);
    };
    Ok(Some(match &lock.probe {
        LockProbeKind::Nft => Arc::new(NftProbe { spec }),
        LockProbeKind::StatusFile { path, max_age } => Arc::new(StatusFileProbe {
            spec,
            path: path.clone(),
            max_age: *max_age,
        }),
    }))
}

/// `clawgate provision lock-status`: judge the live table, write the verdict (once, or every
/// `--every` seconds until killed). A write that fails ends the command with an error: the
/// daemon then sees the file go stale and counts the lock as lost.
fn lock_status(global: &GlobalArgs, env: &dyn Env, args: &LockStatusArgs) -> anyhow::Result<()> {
    let settings = daemon_cmd::settings(global, env, Some(&args.config.config))?;
    let spec = lock_spec(&settings)?.ok_or_else(|| {
        UsageError(format!(
            "{} has no [egress_lock] table: there is no lock to report on",
            args.config.config.display()
        ))
    })?;
    let out = match (&args.out, settings.egress_lock.as_ref().map(|l| &l.probe)) {
        (Some(p), _) => p.clone(),
        (None, Some(LockProbeKind::StatusFile { path, .. })) => path.clone(),
        (None, _) => PathBuf::from(status::DEFAULT_PATH),
    };
    loop {
        let reading = Nft::find().and_then(|nft| firewall::inspect(&nft, &spec));
        let verdict = status::StatusFile::record(&spec, &reading, unix_now());
        status::write(&out, &verdict)
            .with_context(|| format!("writing the lock status to {}", out.display()))?;
        let Some(every) = args.every else {
            println!(
                "{}: {}{}",
                out.display(),
                verdict.state,
                if verdict.reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", verdict.reasons.join("; "))
                }
            );
            return Ok(());
        };
        std::thread::sleep(Duration::from_secs(every));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_probe_follows_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let raw = clawgate_wrapper::config::parse(
            "[egress]\nlisten = \"127.0.0.1:9100\"\nconnect_listen = \"off\"\n[egress_lock]\nagent_user = \"65534\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let s = raw
            .validate(dir.path(), &clawgate_wrapper::SystemAccounts)
            .unwrap();
        assert_eq!(proxy_listeners(&s), ["127.0.0.1:9100".parse().unwrap()]);
        assert!(lock_probe(&s).unwrap().is_some());
        let raw = clawgate_wrapper::config::parse("", Path::new("t.toml")).unwrap();
        let s = raw
            .validate(dir.path(), &clawgate_wrapper::SystemAccounts)
            .unwrap();
        assert!(lock_probe(&s).unwrap().is_none());
    }
}
