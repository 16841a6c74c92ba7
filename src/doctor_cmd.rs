//! `clawgate doctor`: everything a support engineer would ask about a provisioned host, as a
//! pass/fail list with the fix for each failure; `--json` for the Hub. Exits 1 when any check
//! fails. It changes nothing (opening the vault as root may leave SQLite's WAL files, which are
//! given back to the state directory's owner).
//!
//! Each check is a small function of facts gathered once (the configuration, the daemon's
//! health over the admin socket, OpenClaw's config, the journal), so the verdicts are unit
//! tested for both outcomes without a host to break.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use clawgate_protocol::env::Env;
use clawgate_provisioner::firewall::{self, LockState, Nft, status};
use clawgate_provisioner::journal::Journal;
use clawgate_vault::{KeySource, Vault};
use clawgate_wrapper::Settings;
use clawgate_wrapper::config::{LockProbeKind, VaultKey};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::GlobalArgs;
use crate::daemon_cmd;
use crate::provision_cmd::{DaemonConfigArg, systemctl_says, systemd_is_running, unix_now};
use crate::provision_steps::{HUB_IDENTITY, STEP_OPENCLAW, adopt_state_files};

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    config: DaemonConfigArg,
    /// One JSON document: {"ok": bool, "checks": [{"name","ok","detail","fix"}]}.
    #[arg(long)]
    json: bool,
    /// OpenClaw's config (default: the one `clawgate provision openclaw` recorded).
    #[arg(long, value_name = "PATH")]
    openclaw_config: Option<PathBuf>,
    /// Test the hook socket as this user (default: the recorded agent user, else the first
    /// user of hook.allowed_users).
    #[arg(long, value_name = "USER")]
    agent_user: Option<String>,
    /// Internal: connect to this hook socket, ask /v1/health, exit 0 if it answers 200.
    #[arg(long, hide = true, value_name = "SOCKET")]
    probe_hook: Option<PathBuf>,
}

/// One check's verdict.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn verdict(name: &'static str, result: Result<String, (String, String)>) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
            fix: None,
        },
        Err((detail, fix)) => Check {
            name,
            ok: false,
            detail,
            fix: Some(fix),
        },
    }
}

type Verdict = Result<String, (String, String)>;

fn fail(detail: impl Into<String>, fix: impl Into<String>) -> Verdict {
    Err((detail.into(), fix.into()))
}

pub(crate) fn doctor(global: &GlobalArgs, env: &dyn Env, args: &DoctorArgs) -> anyhow::Result<()> {
    if let Some(socket) = &args.probe_hook {
        return probe_hook(socket);
    }
    let config = &args.config.config;
    let mut checks = Vec::new();
    let s = match daemon_cmd::settings(global, env, Some(config)) {
        Ok(s) => {
            checks.push(verdict(
                "configuration",
                Ok(format!("{} is valid", config.display())),
            ));
            s
        }
        Err(e) => {
            checks.push(verdict(
                "configuration",
                fail(
                    format!("{e:#}"),
                    format!(
                        "fix {} until `clawgate validate --config {}` passes",
                        config.display(),
                        config.display()
                    ),
                ),
            ));
            return finish(&checks, args.json);
        }
    };
    let journal = Journal::load(&s.state_dir).ok();
    let health = daemon_health(&s);
    checks.push(verdict(
        "service",
        service_verdict(systemd_is_running(), &health),
    ));
    checks.push(verdict("daemon health", health_verdict(&health)));
    checks.push(verdict(
        "hook socket",
        hook_check(&s, journal.as_ref(), args),
    ));
    let openclaw = args.openclaw_config.clone().or_else(|| {
        journal
            .as_ref()
            .and_then(|j| j.fact(STEP_OPENCLAW, "openclaw_config"))
            .map(PathBuf::from)
    });
    let agent = journal
        .as_ref()
        .and_then(|j| j.fact(STEP_OPENCLAW, "agent"))
        .unwrap_or("main")
        .to_owned();
    match read_openclaw(openclaw.as_deref()) {
        Ok((path, doc, meta)) => {
            checks.push(verdict("openclaw plugin", plugin_verdict(&doc, &s)));
            checks.push(verdict(
                "provider routes",
                routes_verdict(&doc, &s, &|key| {
                    clawgate_wrapper::tokens::is_current(&s.egress.tokens_file, &agent, key)
                        .unwrap_or(false)
                }),
            ));
            checks.push(verdict(
                "openclaw config ownership",
                ownership_verdict(&path, meta.uid(), meta.mode()),
            ));
        }
        Err((detail, fix)) => {
            for name in [
                "openclaw plugin",
                "provider routes",
                "openclaw config ownership",
            ] {
                checks.push(verdict(name, fail(detail.clone(), fix.clone())));
            }
        }
    }
    checks.push(verdict("egress lock", lock_check(&s)));
    checks.push(verdict("policy", policy_check(&s, &health)));
    checks.push(verdict(
        "hub",
        hub_verdict(s.state_dir.join(HUB_IDENTITY).exists(), &health),
    ));
    checks.push(verdict("vault", vault_check(&s, &health)));
    checks.push(verdict(
        "clock",
        clock_verdict(unix_now(), newest_mtime(&s.state_dir)),
    ));
    checks.push(verdict("disk space", disk_check(&s.state_dir)));
    finish(&checks, args.json)
}

fn finish(checks: &[Check], json: bool) -> anyhow::Result<()> {
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        let doc = json!({ "ok": failed == 0, "checks": checks });
        println!("{doc}");
    } else {
        for c in checks {
            println!(
                "{} {:<26} {}",
                if c.ok { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(fix) = &c.fix {
                println!("     {:<26} fix: {fix}", "");
            }
        }
        println!(
            "{} of {} checks passed",
            checks.len() - failed,
            checks.len()
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", checks.len());
    }
    Ok(())
}

/// The daemon's `/v1/health` over the admin socket, or why it could not be had.
fn daemon_health(s: &Settings) -> Result<Value, String> {
    match clawgate_wrapper::client::request(&s.admin.path, "GET", "/v1/health", None) {
        Ok(r) if r.status == 200 => Ok(r.body),
        Ok(r) => Err(format!("the admin socket answered {}", r.status)),
        Err(e) => Err(format!(
            "no answer on the admin socket {}: {e}",
            s.admin.path.display()
        )),
    }
}

fn service_verdict(systemd: bool, health: &Result<Value, String>) -> Verdict {
    if systemd {
        let state = systemctl_says(&["is-active", "clawgate.service"]);
        return if state == "active" {
            Ok("clawgate.service is active".into())
        } else {
            fail(
                format!(
                    "clawgate.service is {}",
                    if state.is_empty() { "unknown" } else { &state }
                ),
                "systemctl start clawgate.service; journalctl -u clawgate.service -n 50 shows why it stopped",
            )
        };
    }
    match health {
        Ok(_) => {
            Ok("clawgate serve answers on its admin socket (systemd is not running here)".into())
        }
        Err(e) => fail(
            e.clone(),
            "start the daemon: clawgate serve --config /etc/clawgate/clawgate.toml (as user clawgate)",
        ),
    }
}

fn health_verdict(health: &Result<Value, String>) -> Verdict {
    let h = match health {
        Ok(h) => h,
        Err(e) => return fail(e.clone(), "start clawgate.service (see the service check)"),
    };
    let status = h.get("status").and_then(Value::as_str).unwrap_or("unknown");
    let lock = h
        .get("egressLock")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let detail = format!(
        "status {status}, egress lock {lock}, policy {}, {} pending approval(s)",
        h.get("policyVersion")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        h.get("pendingApprovals")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    );
    if status == "ok" {
        Ok(detail)
    } else if lock != "held" && lock != "not_configured" {
        fail(
            detail,
            "the egress lock is not in force, so every tool call is blocked: systemctl restart clawgate-egress-lock.service clawgate-egress-lock-status.service (see the egress lock check)",
        )
    } else {
        fail(detail, "journalctl -u clawgate.service -n 50")
    }
}

/// The hook socket's `/v1/health`, asked as the agent's user (root cannot use the socket).
fn hook_check(s: &Settings, journal: Option<&Journal>, args: &DoctorArgs) -> Verdict {
    let socket = &s.hook.path;
    let fix = format!(
        "start clawgate.service; make sure {} exists (systemd-tmpfiles --create clawgate.conf) and the agent's user is in group clawgate-hook and hook.allowed_users (clawgate provision openclaw)",
        socket.parent().unwrap_or(Path::new("/")).display()
    );
    if !nix::unistd::geteuid().is_root() {
        return match probe(socket) {
            Ok(()) => Ok(format!("{} answers", socket.display())),
            Err(e) => fail(e, fix),
        };
    }
    let named = args.agent_user.clone().or_else(|| {
        journal
            .and_then(|j| j.fact(STEP_OPENCLAW, "agent_user"))
            .map(str::to_owned)
    });
    let user = match named {
        Some(name) => nix::unistd::User::from_name(&name).ok().flatten(),
        None => s.hook.allowed_uids.iter().find(|u| **u != 0).and_then(|u| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*u))
                .ok()
                .flatten()
        }),
    };
    let Some(user) = user else {
        return fail(
            "no agent user to test the hook socket as (none recorded, none in hook.allowed_users)",
            "clawgate provision openclaw --agent-user USER …, or clawgate doctor --agent-user USER",
        );
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return fail(
                format!("finding this program: {e}"),
                "run /usr/bin/clawgate doctor",
            );
        }
    };
    let out = std::process::Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg(&exe)
        .arg("doctor")
        .arg("--probe-hook")
        .arg(socket)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CLAWGATE_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(format!(
            "{} answers {} (uid {})",
            socket.display(),
            user.name,
            user.uid
        )),
        Ok(o) => fail(
            format!(
                "as {}: {}",
                user.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            fix,
        ),
        Err(e) => fail(
            format!("running setpriv: {e}"),
            "apt-get install util-linux",
        ),
    }
}

fn probe(socket: &Path) -> Result<(), String> {
    match clawgate_wrapper::client::request(socket, "GET", "/v1/health", None) {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("{} answered {}", socket.display(), r.status)),
        Err(e) => Err(format!("{}: {e}", socket.display())),
    }
}

fn probe_hook(socket: &Path) -> anyhow::Result<()> {
    probe(socket).map_err(|e| anyhow::anyhow!(e))
}

type OpenclawDoc = (PathBuf, Value, std::fs::Metadata);

fn read_openclaw(path: Option<&Path>) -> Result<OpenclawDoc, (String, String)> {
    let Some(path) = path else {
        return Err((
            "no OpenClaw config known (none recorded by `clawgate provision openclaw`)".into(),
            "clawgate provision openclaw --openclaw-config PATH --agent-user USER, or clawgate doctor --openclaw-config PATH".into(),
        ));
    };
    let fix = format!(
        "clawgate provision openclaw --openclaw-config {} --agent-user USER",
        path.display()
    );
    let meta =
        std::fs::metadata(path).map_err(|e| (format!("{}: {e}", path.display()), fix.clone()))?;
    let bytes = clawgate_protocol::io::read_capped(path, 8 * 1024 * 1024)
        .map_err(|e| (format!("{}: {e}", path.display()), fix.clone()))?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| (format!("{} is not JSON: {e}", path.display()), fix.clone()))?;
    Ok((path.to_owned(), doc, meta))
}

fn plugin_verdict(doc: &Value, s: &Settings) -> Verdict {
    let fix = "clawgate provision openclaw (or clawgate openclaw configure), then restart OpenClaw's gateway";
    let entry = doc.pointer("/plugins/entries/clawgate");
    if doc.pointer("/plugins/enabled") != Some(&Value::Bool(true)) {
        return fail("plugins.enabled is not true", fix);
    }
    let Some(entry) = entry else {
        return fail("plugins.entries.clawgate is missing", fix);
    };
    if entry.get("enabled") != Some(&Value::Bool(true)) {
        return fail("plugins.entries.clawgate.enabled is not true", fix);
    }
    let deny = doc.pointer("/plugins/deny").and_then(Value::as_array);
    if deny.is_some_and(|d| d.iter().any(|v| v.as_str() == Some("clawgate"))) {
        return fail("plugins.deny lists clawgate", fix);
    }
    let socket = entry.pointer("/config/socketPath").and_then(Value::as_str);
    if socket != Some(&*s.hook.path.to_string_lossy()) {
        return fail(
            format!(
                "the plugin's socketPath is {}, the daemon's hook socket {}",
                socket.unwrap_or("unset"),
                s.hook.path.display()
            ),
            fix,
        );
    }
    let loaded = doc
        .pointer("/plugins/load/paths")
        .and_then(Value::as_array)
        .and_then(|paths| {
            paths
                .iter()
                .filter_map(Value::as_str)
                .find(|p| Path::new(p).join("openclaw.plugin.json").is_file())
                .map(str::to_owned)
        });
    let Some(dir) = loaded else {
        return fail(
            "no directory in plugins.load.paths holds the plugin (openclaw.plugin.json)",
            fix,
        );
    };
    let timeout = entry
        .pointer("/hooks/timeouts/before_tool_call")
        .and_then(Value::as_u64)
        .unwrap_or(15_000);
    let wait = u64::try_from(s.approval_wait.as_millis()).unwrap_or(u64::MAX);
    if timeout <= wait {
        return fail(
            format!(
                "the before_tool_call timeout ({timeout} ms) does not exceed the approval wait ({wait} ms)"
            ),
            fix,
        );
    }
    Ok(format!(
        "plugin from {dir}, socket {}, hook timeout {timeout} ms",
        s.hook.path.display()
    ))
}

fn routes_verdict(doc: &Value, s: &Settings, current: &dyn Fn(&str) -> bool) -> Verdict {
    let fix = "clawgate provision openclaw (re-run: it routes every provider and refreshes the token), then restart OpenClaw's gateway";
    let Some(listen) = s.egress.listen else {
        return fail(
            "egress.listen is off: model traffic does not go through the proxy",
            "set egress.listen in the daemon configuration",
        );
    };
    let base = format!("http://{listen}/");
    let Some(providers) = doc.pointer("/models/providers").and_then(Value::as_object) else {
        return fail("models.providers is missing", fix);
    };
    let mut wrong = Vec::new();
    let mut stale = Vec::new();
    for (id, p) in providers {
        let url = p.get("baseUrl").and_then(Value::as_str).unwrap_or("");
        if !url.starts_with(&base) {
            wrong.push(format!(
                "{id} ({})",
                if url.is_empty() { "no baseUrl" } else { url }
            ));
        } else if !p.get("apiKey").and_then(Value::as_str).is_some_and(current) {
            stale.push(id.clone());
        }
    }
    if !wrong.is_empty() {
        return fail(
            format!("not through the proxy {base}: {}", wrong.join(", ")),
            fix,
        );
    }
    if !stale.is_empty() {
        return fail(
            format!("the proxy would refuse the token of {}", stale.join(", ")),
            fix,
        );
    }
    if providers.is_empty() {
        return fail("no model providers configured", fix);
    }
    Ok(format!(
        "{} provider(s) through {base} with the agent's current token",
        providers.len()
    ))
}

fn ownership_verdict(path: &Path, uid: u32, mode: u32) -> Verdict {
    if uid == 0 && mode & 0o022 == 0 {
        Ok(format!(
            "{} root-owned, mode {:04o}",
            path.display(),
            mode & 0o7777
        ))
    } else {
        fail(
            format!(
                "{} is owned by uid {uid} with mode {:04o}: the agent could rewrite it",
                path.display(),
                mode & 0o7777
            ),
            "clawgate provision openclaw (makes it root-owned, the agent's group, 0640)",
        )
    }
}

fn lock_check(s: &Settings) -> Verdict {
    let fix_provision = "clawgate provision firewall --agent-user USER --config /etc/clawgate/clawgate.toml (or provision all)";
    let Some(lock) = &s.egress_lock else {
        return fail(
            "the configuration has no [egress_lock]: nothing watches the agent's egress",
            fix_provision,
        );
    };
    let spec = match crate::provision_cmd::lock_spec(s) {
        Ok(Some(spec)) => spec,
        Ok(None) => return fail("no lock expected", fix_provision),
        Err(e) => return fail(format!("{e:#}"), fix_provision),
    };
    let fix_restore = "systemctl restart clawgate-egress-lock.service (reloads /etc/clawgate/egress-lock.nft), or clawgate provision firewall again";
    let mut seen = Vec::new();
    if nix::unistd::geteuid().is_root() {
        match Nft::find().and_then(|nft| firewall::inspect(&nft, &spec)) {
            Ok(LockState::InForce(c)) => seen.push(format!(
                "table inet clawgate_egress in force for {} (allowed {}, rejected tcp {}, other {})",
                lock.agent_user,
                c.get(firewall::COUNTER_ALLOWED_PROXY).copied().unwrap_or(0),
                c.get(firewall::COUNTER_REJECTED_TCP).copied().unwrap_or(0),
                c.get(firewall::COUNTER_REJECTED_OTHER).copied().unwrap_or(0),
            )),
            Ok(LockState::Missing) => return fail("table inet clawgate_egress is missing", fix_restore),
            Ok(LockState::Altered(d)) => {
                return fail(format!("table inet clawgate_egress was altered: {}", d.join("; ")), fix_restore);
            }
            Err(e) => return fail(format!("cannot read nftables: {e}"), "apt-get install nftables; run doctor as root"),
        }
    }
    if let LockProbeKind::StatusFile { path, max_age } = &lock.probe {
        match status::read(path, &spec, unix_now(), *max_age) {
            Ok(LockState::InForce(_)) => seen.push(format!("{} says in force", path.display())),
            Ok(other) => {
                return fail(format!("{} says {other:?}", path.display()), fix_restore);
            }
            Err(e) => {
                return fail(
                    e.to_string(),
                    "systemctl enable --now clawgate-egress-lock-status.service",
                );
            }
        }
    }
    if seen.is_empty() {
        return fail(
            "cannot check the table without root (probe nft)",
            "run clawgate doctor as root",
        );
    }
    Ok(seen.join("; "))
}

fn policy_check(s: &Settings, health: &Result<Value, String>) -> Verdict {
    let loaded = clawgate_wrapper::daemon::load_policy(s);
    let (_, version) = match loaded {
        Ok(p) => p,
        Err(e) => {
            return fail(
                format!("the policy does not load: {e}"),
                "fix policy.dir in the configuration (clawgate policy test DIR shows the failing rule)",
            );
        }
    };
    let source = s.policy_dir.as_ref().map_or_else(
        || "the built-in default policy".to_owned(),
        |d| d.display().to_string(),
    );
    let short: String = version.chars().take(12).collect();
    // The Hub's signed bundle, when the daemon reports one.
    if let Ok(h) = health
        && let Some(bundle) = h.get("bundle")
    {
        let expired = bundle.get("expired").and_then(Value::as_bool) == Some(true)
            || matches!(
                bundle.get("status").and_then(Value::as_str),
                Some("expired" | "rejected" | "stale")
            );
        if expired {
            return fail(
                format!("the Hub bundle is not fresh: {bundle}"),
                "check the Hub connection (hub check); the last good bundle stays in force, asking for everything above green",
            );
        }
        return Ok(format!("{source} loads ({short}); Hub bundle {bundle}"));
    }
    Ok(format!(
        "{source} loads (version {short}); no Hub bundle reported"
    ))
}

fn hub_verdict(enrolled: bool, health: &Result<Value, String>) -> Verdict {
    if !enrolled {
        return Ok("not enrolled: approvals are local (clawgate approvals)".into());
    }
    let h = match health {
        Ok(h) => h,
        Err(e) => {
            return fail(
                format!("enrolled, but the daemon does not answer: {e}"),
                "start clawgate.service",
            );
        }
    };
    let Some(hub) = h.get("hub") else {
        return fail(
            "enrolled, but the daemon reports no Hub state (this build does not sync with the Hub)",
            "install a clawgate build with the Hub sync",
        );
    };
    // The daemon's view (wrapper/openapi.json, Health.hub): `reachable` is whether its last
    // exchange with the Hub succeeded.
    let field = |k: &str| {
        hub.get(k)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    };
    let summary = format!(
        "{} (appliance {}, circuit {}, last success {} s ago)",
        hub.get("hub").and_then(Value::as_str).unwrap_or("?"),
        hub.get("applianceId")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        hub.get("circuit").and_then(Value::as_str).unwrap_or("?"),
        field("lastSuccessAgeSecs"),
    );
    if hub.get("reachable").and_then(Value::as_bool) == Some(true) {
        Ok(format!("enrolled to {summary}"))
    } else {
        let why = hub
            .get("lastError")
            .and_then(Value::as_str)
            .unwrap_or("no exchange yet");
        fail(
            format!("enrolled to {summary}; the Hub is not reachable: {why}"),
            "check outbound HTTPS to the Hub (DNS, firewall, proxy); nothing that needs approval is allowed meanwhile",
        )
    }
}

fn vault_check(s: &Settings, health: &Result<Value, String>) -> Verdict {
    let fix =
        "check the vault key (clawgate(1), VAULT KEY); clawgate vault verify shows what fails";
    if !s.vault_path.exists() {
        return fail(
            format!("no vault at {}", s.vault_path.display()),
            "start clawgate.service once (it creates the vault), or clawgate provision secrets",
        );
    }
    let source = match &s.vault_key {
        VaultKey::DefaultKeyFile(k) | VaultKey::KeyFile(k) => KeySource::KeyFile(k.clone()),
        VaultKey::PassphraseFile(f) => match crate::state::read_passphrase(f) {
            Ok(p) => KeySource::Passphrase(p),
            Err(e) => return fail(format!("{e:#}"), fix),
        },
        VaultKey::Credential(name) => {
            // Only the service can decrypt its credential: ask it.
            return match health {
                Ok(h) if h.get("vault") == Some(&Value::Bool(true)) => {
                    Ok(format!("opened by the service from credential {name}"))
                }
                Ok(_) => fail(
                    format!("the service has no vault open (credential {name})"),
                    fix,
                ),
                Err(e) => fail(
                    format!("credential {name}: the service does not answer: {e}"),
                    fix,
                ),
            };
        }
    };
    let result = Vault::open(&s.vault_path, &source)
        .and_then(|v| v.verify())
        .with_context(|| format!("opening {}", s.vault_path.display()));
    let _ = adopt_state_files(&s.state_dir);
    match result {
        Ok(r) => Ok(format!(
            "{} opens and verifies: {} secret(s), generation {}",
            s.vault_path.display(),
            r.secrets,
            r.generation
        )),
        Err(e) => fail(format!("{e:#}"), fix),
    }
}

/// 2026-01-01T00:00:00Z: no clock reading before this is right.
const CLOCK_FLOOR: u64 = 1_767_225_600;

fn newest_mtime(dir: &Path) -> Option<(String, u64)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((
                e.path().display().to_string(),
                u64::try_from(m.mtime()).ok()?,
            ))
        })
        .max_by_key(|(_, t)| *t)
}

fn clock_verdict(now: u64, newest: Option<(String, u64)>) -> Verdict {
    let fix = "set the time (timedatectl set-ntp true; systemctl status systemd-timesyncd)";
    if now < CLOCK_FLOOR {
        return fail(format!("the clock says {now} (before 2026)"), fix);
    }
    if let Some((file, t)) = newest
        && t > now + 300
    {
        return fail(
            format!(
                "{file} was modified {} s in the future: the clock went backwards",
                t - now
            ),
            fix,
        );
    }
    Ok(format!("unix time {now}"))
}

/// Free space below this fails.
const MIN_FREE: u64 = 128 * 1024 * 1024;

fn disk_verdict(dir: &Path, free: u64, total: u64) -> Verdict {
    let detail = format!(
        "{} MiB free of {} MiB on {}",
        free / (1024 * 1024),
        total / (1024 * 1024),
        dir.display()
    );
    if free < MIN_FREE {
        fail(
            detail,
            "free space: the audit log, usage and vault need room to commit (journalctl --vacuum-size=100M, apt-get clean)",
        )
    } else {
        Ok(detail)
    }
}

fn disk_check(dir: &Path) -> Verdict {
    // The state directory, or the nearest directory above it that exists (a host not yet
    // provisioned has none).
    let dir = dir.ancestors().find(|d| d.is_dir()).unwrap_or(dir);
    match nix::sys::statvfs::statvfs(dir) {
        Ok(v) => {
            let frag = v.fragment_size();
            disk_verdict(
                dir,
                v.blocks_available().saturating_mul(frag),
                v.blocks().saturating_mul(frag),
            )
        }
        Err(e) => fail(
            format!("statvfs {}: {e}", dir.display()),
            "check the state directory exists",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test files are small and our own
mod tests;
