//! `clawgate provision …`: the host provisioning steps of `clawgate-provisioner`, and the real
//! egress-lock probe `clawgate serve` watches the nftables table with.
//!
//! The clap types of this subcommand live here rather than in `cli.rs`, so further steps add
//! their variants in this file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use clawgate_protocol::env::Env;
use clawgate_provisioner::firewall::{self, Agent, Applied, LockState, Nft, Spec, systemd};
use clawgate_wrapper::Settings;
use clawgate_wrapper::lock::{LockProbe, LockReading};

use crate::cli::{ConfigArg, GlobalArgs, UsageError};
use crate::daemon_cmd;

#[derive(Debug, Subcommand)]
pub(crate) enum ProvisionCommand {
    /// Lock the agent's user's egress: an nftables table (inet clawgate_egress) that lets it
    /// reach only the proxy's loopback listeners (from --config). Writes
    /// /etc/clawgate/egress-lock.nft (0644) and loads it; safe to re-run (an identical table in
    /// force is left alone, counters kept). Needs root to load.
    Firewall(FirewallArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FirewallArgs {
    /// The agent's user (name or uid): must exist, must not be root. Resolved to its uid now.
    #[arg(long, value_name = "USER")]
    agent_user: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Print the ruleset (and, with --agent-unit, the drop-in) instead of writing files.
    #[arg(long, conflicts_with = "write")]
    print: bool,
    /// Write the ruleset to FILE instead of /etc/clawgate/egress-lock.nft.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Load the ruleset now (the default when neither --print nor --write is given).
    #[arg(long)]
    apply: bool,
    /// Also give this systemd unit of the agent (a .service or a slice such as user-1001.slice)
    /// the second layer, a drop-in with IPAddressDeny=any and IPAddressAllow=localhost, if this
    /// host really enforces it (checked with a probe unit; skipped with the reason otherwise).
    #[arg(long, value_name = "UNIT")]
    agent_unit: Option<String>,
}

pub(crate) fn run(global: &GlobalArgs, env: &dyn Env, cmd: ProvisionCommand) -> anyhow::Result<()> {
    match cmd {
        ProvisionCommand::Firewall(args) => provision_firewall(global, env, &args),
    }
}

/// The proxy listeners the agent may reach: the reverse proxy and the CONNECT listener.
fn proxy_listeners(s: &Settings) -> Vec<SocketAddr> {
    [s.egress.listen, s.egress.connect_listen]
        .into_iter()
        .flatten()
        .collect()
}

fn provision_firewall(
    global: &GlobalArgs,
    env: &dyn Env,
    args: &FirewallArgs,
) -> anyhow::Result<()> {
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
    if let Some(unit) = &args.agent_unit {
        systemd_layer(unit, args.print)?;
    }
    Ok(())
}

/// The drop-in for the agent's unit, written only where systemd really enforces it (printed
/// with the verdict under --print).
fn systemd_layer(unit: &str, print_only: bool) -> anyhow::Result<()> {
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
        return Ok(());
    }
    match systemd::detect() {
        systemd::IpFirewall::Unsupported(why) => {
            println!(
                "note: no systemd drop-in for {unit}: {why}. The nftables table is the lock on this host."
            );
            Ok(())
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
            Ok(())
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

/// The probe `clawgate serve` watches the lock with, when the configuration has one.
pub(crate) fn lock_probe(settings: &Settings) -> anyhow::Result<Option<Arc<dyn LockProbe>>> {
    let Some(lock) = &settings.egress_lock else {
        return Ok(None);
    };
    let agent = Agent::new(&lock.agent_user, lock.agent_uid)?;
    let spec = Spec::new(agent, &proxy_listeners(settings))?;
    Ok(Some(Arc::new(NftProbe { spec })))
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
