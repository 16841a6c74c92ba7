//! `clawgate serve`, `validate`, `approvals`, `audit` and `openclaw configure`: the daemon and
//! the commands that talk to it or read its state.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clawgate_protocol::env::Env;
use clawgate_wrapper::config::{self, Settings};
use clawgate_wrapper::store::Store;
use clawgate_wrapper::{LogTarget, SystemAccounts, client};
use serde_json::{Value, json};

use crate::cli::{ApprovalsCommand, AuditCommand, GlobalArgs, OpenclawCommand, UsageError};
use crate::state;

/// Where the packaged plugin is installed.
pub(crate) const PACKAGED_PLUGIN_DIR: &str = "/usr/share/clawgate/openclaw-plugin";

/// Reads and validates the configuration (both phases); `--state-dir` wins over the file.
pub(crate) fn settings(
    global: &GlobalArgs,
    env: &dyn Env,
    config: Option<&Path>,
) -> anyhow::Result<Settings> {
    let mut raw = match config {
        Some(path) => config::read(path)?,
        None => config::RawConfig::default(),
    };
    if let Some(dir) = &global.state_dir {
        raw.state_dir = Some(dir.clone());
    }
    let default_dir = match &raw.state_dir {
        Some(d) => d.clone(),
        None => state::state_dir(None, env)?,
    };
    Ok(raw.validate(&default_dir, &SystemAccounts)?)
}

/// The log target `serve` should use, read leniently: a broken config is reported by `serve`
/// itself once logging is up.
pub(crate) fn log_target(global: &GlobalArgs, env: &dyn Env, config: Option<&Path>) -> LogTarget {
    settings(global, env, config).map_or(LogTarget::Auto, |s| s.log)
}

pub(crate) fn serve(
    global: &GlobalArgs,
    env: &dyn Env,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    // Before the runtime starts its threads: a daemon that rebuilds megabyte-sized redactors
    // should not keep one arena of freed memory per thread.
    clawgate_vault::hardening::bound_allocator();
    let initial = settings(global, env, config.as_deref())?;
    let lock_probe = crate::provision_cmd::lock_probe(&initial)?;
    let state_flag = global.state_dir.clone();
    let reload = Box::new(move || {
        let global = GlobalArgs {
            state_dir: state_flag.clone(),
        };
        settings(
            &global,
            &clawgate_protocol::env::ProcessEnv,
            config.as_deref(),
        )
        .map_err(|e| clawgate_wrapper::Error::Config(format!("{e:#}")))
    });
    match clawgate_wrapper::daemon::run(initial, reload, lock_probe)? {
        clawgate_wrapper::daemon::Exit::Stopped => Ok(()),
        clawgate_wrapper::daemon::Exit::RestartRequested => Err(RestartRequested.into()),
        clawgate_wrapper::daemon::Exit::ListenerFailed(what) => {
            Err(anyhow::anyhow!("the {what} stopped serving unexpectedly"))
        }
    }
}

/// `serve` stopped because the Hub asked for a restart.
#[derive(Debug, thiserror::Error)]
#[error("stopped for a restart the Hub asked for")]
pub(crate) struct RestartRequested;

pub(crate) fn enroll(
    global: &GlobalArgs,
    env: &dyn Env,
    args: &crate::cli::EnrollArgs,
) -> anyhow::Result<()> {
    use clawgate_wrapper::hublink::enroll::{EnrollArgs, enroll};
    let s = settings(global, env, args.config.config.as_deref())?;
    let done = enroll(&EnrollArgs {
        hub: args.hub.clone(),
        token_file: args.token_file.clone(),
        pins: args.pins.clone(),
        force: args.force,
        state_dir: s.state_dir.clone(),
    })?;
    println!(
        "enrolled as appliance {} of tenant {} with {} (identity in {}); restart clawgate serve to connect",
        done.identity.appliance_id,
        done.identity.tenant_id,
        done.identity.hub,
        s.state_dir.display()
    );
    if let Some(old) = done.replaced {
        println!(
            "the previous enrollment's state was moved to {}",
            old.display()
        );
    }
    Ok(())
}

pub(crate) fn validate(global: &GlobalArgs, env: &dyn Env, config: &Path) -> anyhow::Result<()> {
    let s = settings(global, env, Some(config))?;
    clawgate_wrapper::daemon::load_policy(&s).context("loading the policy")?;
    println!(
        "{}: valid (state {}, hook socket {}, tier {:?}, approval wait {} s)",
        config.display(),
        s.state_dir.display(),
        s.hook.path.display(),
        s.tier,
        s.approval_wait.as_secs()
    );
    Ok(())
}

fn admin_call(
    s: &Settings,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let reply = client::request(&s.admin.path, method, path, body).with_context(|| {
        format!(
            "talking to clawgate serve over {} (is it running, and may you use its admin socket?)",
            s.admin.path.display()
        )
    })?;
    if !(200..300).contains(&reply.status) {
        let msg = reply
            .body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("");
        anyhow::bail!("the daemon answered {}: {msg}", reply.status);
    }
    Ok(reply.body)
}

pub(crate) fn approvals(
    global: &GlobalArgs,
    env: &dyn Env,
    cmd: ApprovalsCommand,
) -> anyhow::Result<()> {
    match cmd {
        ApprovalsCommand::List {
            config,
            status,
            json,
        } => {
            let s = settings(global, env, config.config.as_deref())?;
            let body = admin_call(&s, "GET", &format!("/v1/approvals?status={status}"), None)?;
            if json {
                println!("{body}");
                return Ok(());
            }
            let list = body
                .get("approvals")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if list.is_empty() {
                println!("No {status} approvals.");
            }
            for a in list {
                let f = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                println!(
                    "{}  {:<8} {:<15} agent={}  {}",
                    f("id"),
                    f("status"),
                    f("class"),
                    f("agent"),
                    f("summary")
                );
            }
            Ok(())
        }
        ApprovalsCommand::Approve {
            id,
            for_24h,
            config,
        } => {
            let s = settings(global, env, config.config.as_deref())?;
            let grant = if for_24h { "24h" } else { "once" };
            admin_call(
                &s,
                "POST",
                &format!("/v1/approvals/{}/approve", path_segment(&id)?),
                Some(&json!({ "grant": grant })),
            )?;
            println!("Approved {id} ({grant}).");
            Ok(())
        }
        ApprovalsCommand::Deny { id, config } => {
            let s = settings(global, env, config.config.as_deref())?;
            admin_call(
                &s,
                "POST",
                &format!("/v1/approvals/{}/deny", path_segment(&id)?),
                None,
            )?;
            println!("Denied {id}.");
            Ok(())
        }
        ApprovalsCommand::Url { config } => {
            let s = settings(global, env, config.config.as_deref())?;
            let addr = s
                .admin_listen
                .ok_or_else(|| UsageError("admin.listen is off in the configuration".into()))?;
            let token = clawgate_wrapper::daemon::admin_token(&s.admin_token_file)?;
            println!("http://{addr}/approvals?token={}", token.expose());
            Ok(())
        }
    }
}

fn path_segment(id: &str) -> anyhow::Result<&str> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        anyhow::bail!(UsageError(format!("`{id}` is not an approval id (ap_…)")));
    }
    Ok(id)
}

pub(crate) fn audit(global: &GlobalArgs, env: &dyn Env, cmd: AuditCommand) -> anyhow::Result<()> {
    let (config, verify) = match &cmd {
        AuditCommand::Show { config, .. } => (config, false),
        AuditCommand::Verify { config } => (config, true),
    };
    let s = settings(global, env, config.config.as_deref())?;
    if !s.db_path.exists() {
        anyhow::bail!(
            "no audit log at {}: clawgate serve has not run here",
            s.db_path.display()
        );
    }
    let store = Store::open_read_only(&s.db_path)?;
    if verify {
        let report = store.verify_audit()?;
        println!(
            "audit log intact: {} records, head {}",
            report.records, report.head
        );
        return Ok(());
    }
    if let AuditCommand::Show { limit, json, .. } = cmd {
        let mut out = std::io::stdout().lock();
        for r in store.audit_tail(limit)? {
            let line = if json {
                serde_json::to_string(&r)?
            } else {
                format!("{:>6} {} {:<20} {}", r.seq, r.ts_ms, r.kind, r.record)
            };
            match writeln!(out, "{line}") {
                Ok(()) => {}
                // `clawgate audit show | head`: the reader has what it wanted.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

pub(crate) fn openclaw(
    global: &GlobalArgs,
    env: &dyn Env,
    cmd: OpenclawCommand,
) -> anyhow::Result<()> {
    let OpenclawCommand::Configure {
        openclaw_config,
        plugin_dir,
        agent,
        route,
        config,
    } = cmd;
    let s = settings(global, env, config.config.as_deref())?;
    let plugin_dir = plugin_dir.unwrap_or_else(|| PathBuf::from(PACKAGED_PLUGIN_DIR));
    let configured = configure_openclaw(&s, &openclaw_config, &plugin_dir, &agent, &route)?;
    print_configured(&openclaw_config, &configured, s.egress.listen.is_none());
    Ok(())
}

/// Prints what [`configure_openclaw`] did.
pub(crate) fn print_configured(
    openclaw_config: &Path,
    configured: &clawgate_wrapper::openclaw::Configured,
    proxy_off: bool,
) {
    if proxy_off {
        println!("note: egress.listen is off, so model providers are left as they are.");
    }
    for u in &configured.unrouted {
        println!("warning: {u}");
    }
    if configured.changes.is_empty() {
        println!("{}: already configured.", openclaw_config.display());
        return;
    }
    for c in &configured.changes {
        println!("{c}");
    }
    if let Some(b) = &configured.backup {
        println!("backup: {}", b.display());
    }
    println!(
        "{}: configured; restart the OpenClaw gateway.",
        openclaw_config.display()
    );
}

/// `clawgate openclaw configure` without the printing: the plugin entry and the provider routes
/// (minting the agent's proxy token when the config holds no current one).
pub(crate) fn configure_openclaw(
    s: &Settings,
    openclaw_config: &Path,
    plugin_dir: &Path,
    agent: &str,
    route: &[String],
) -> anyhow::Result<clawgate_wrapper::openclaw::Configured> {
    clawgate_wrapper::tokens::check_agent_id(agent).map_err(|e| UsageError(e.to_string()))?;
    let mut routes = Vec::new();
    for r in route {
        let (id, name) = r
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--route {r}: expected ID=ROUTE")))?;
        let provider = clawgate_egress::Provider::from_route(name).ok_or_else(|| {
            UsageError(format!(
                "--route {r}: `{name}` is not anthropic, openai, gemini or openrouter"
            ))
        })?;
        routes.push((id.to_owned(), provider));
    }
    if !plugin_dir.join("openclaw.plugin.json").exists() {
        anyhow::bail!(
            "{} does not hold the Clawgate plugin (no openclaw.plugin.json)",
            plugin_dir.display()
        );
    }
    let setup = clawgate_wrapper::openclaw::PluginSetup {
        plugin_dir: std::path::absolute(plugin_dir)?,
        socket: s.hook.path.clone(),
        approval_wait: s.approval_wait,
        proxy: s
            .egress
            .listen
            .map(|addr| clawgate_wrapper::openclaw::ProxySetup {
                base: format!("http://{addr}"),
                agent: agent.to_owned(),
                tokens_file: s.egress.tokens_file.clone(),
                routes,
            }),
    };
    clawgate_wrapper::daemon::ensure_private_dir(&s.state_dir)?;
    Ok(clawgate_wrapper::openclaw::configure_file(
        openclaw_config,
        &setup,
    )?)
}
