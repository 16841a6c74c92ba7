//! `clawgate serve`: opens state, binds the sockets, runs until SIGTERM, reloads on SIGHUP.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clawgate_policies::{Policy, Tier, bundle};
use clawgate_protocol::SecretString;
use clawgate_vault::{KdfParams, KeySource, Vault};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::admin::AdminPage;
use crate::config::{EgressSettings, Settings, SocketSettings, VaultKey};
use crate::engine::{Engine, Timing};
use crate::error::{Error, Result};
use crate::hublink::{Control, HubLink, HubState};
use crate::lock::{EgressLock, LockProbe};
use crate::server::{self, AdminSocketApi, HookApi, PeerRule};
use crate::store::Store;
use clawgate_hub::identity::Identity;

/// The per-tenant key that keeps placeholders of unknown secrets stable across turns.
pub const PLACEHOLDER_KEY: &str = "placeholder.key";
/// Longest passphrase or token file read.
const MAX_SMALL_FILE: u64 = 4096;
/// How often expired approvals are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Re-reads and validates the configuration (for SIGHUP).
pub type Reloader = Box<dyn Fn() -> Result<Settings> + Send + Sync>;

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT.
    Stopped,
    /// The Hub sent `restart`: exit non-zero so systemd (`Restart=on-failure`) starts it again.
    RestartRequested,
    /// A listener (named) stopped serving before shutdown, by a panic or a lost listening
    /// socket: the daemon stops (non-zero, so systemd starts it again) rather than run on with
    /// that door shut and nobody told.
    ListenerFailed(&'static str),
}

/// Runs the daemon until SIGTERM or SIGINT. `lock_probe` reads the egress lock; it is required
/// when the configuration has an `[egress_lock]` table.
pub fn run(
    settings: Settings,
    reload: Reloader,
    lock_probe: Option<Arc<dyn LockProbe>>,
) -> Result<Exit> {
    let watcher = match (&settings.egress_lock, lock_probe) {
        (None, _) => None,
        (Some(l), Some(probe)) => Some((
            Arc::new(EgressLock::new(&l.agent_user, l.required)),
            probe,
            l.check_every,
        )),
        (Some(_), None) => {
            return Err(Error::Config(
                "egress_lock is configured but this build has no way to read it".into(),
            ));
        }
    };
    ensure_private_dir(&settings.state_dir)?;
    let vault = open_vault(&settings)?;
    let placeholder_key = placeholder_key(&settings.state_dir)?;
    // Enrolled: the Hub link's state, and the signed bundle in force if there is one (it wins
    // over the configured policy and tier). An identity that does not load refuses the start.
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(4);
    let hub = match Identity::load(&settings.state_dir)? {
        None => None,
        Some(identity) => Some(Arc::new(HubState::open(
            identity,
            &settings.state_dir,
            settings.bundle_trust_file.as_deref(),
            &settings.egress.usage_db,
            config_sha256(&settings),
            control_tx,
        )?)),
    };
    let active = match &hub {
        Some(h) => h.bundles().load_current(crate::hublink::unix_now())?,
        None => None,
    };
    let (policy, tier, version, bundle_info) = match active {
        Some(a) => {
            let version = a.info.policy_version();
            (a.policy, a.tier, version, Some(a.info))
        }
        None => {
            let (policy, version) = load_policy(&settings)?;
            (policy, settings.tier, version, None)
        }
    };
    let store = Store::open(&settings.db_path)?;
    let mut engine = Engine::new(
        policy,
        tier,
        version,
        vault,
        placeholder_key,
        store,
        timing(&settings),
    )?
    .with_bundle(bundle_info)?
    .with_capture(&settings.capture)?;
    if let Some(h) = &hub {
        engine = engine.with_hub(h.clone());
    }
    if let Some((lock, _, _)) = &watcher {
        engine = engine.with_egress_lock(lock.clone());
    }
    let engine = Arc::new(engine);
    let watcher = watcher.map(|(_, probe, every)| (probe, every));
    let token = admin_token(&settings.admin_token_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the runtime", e))?;
    runtime.block_on(serve(settings, engine, token, reload, watcher, control_rx))
}

/// SHA-256 of the effective configuration (its `Debug` form: paths, addresses, numbers; no
/// secret is ever part of [`Settings`]), for the heartbeat's drift check.
fn config_sha256(s: &Settings) -> String {
    hex::encode(Sha256::digest(format!("{s:?}").as_bytes()))
}

async fn serve(
    settings: Settings,
    engine: Arc<Engine>,
    token: SecretString,
    reload: Reloader,
    watcher: Option<(Arc<dyn LockProbe>, Duration)>,
    mut control: tokio::sync::mpsc::Receiver<Control>,
) -> Result<Exit> {
    // Handlers first: a SIGHUP that arrives once the sockets answer must reload, not kill.
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::io("SIGTERM handler", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::io("SIGINT handler", e))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Error::io("SIGHUP handler", e))?;
    let hook = bind_unix(&settings.hook)?;
    let admin = bind_unix(&settings.admin)?;
    let page = match settings.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| Error::io(format!("binding the admin listener {addr}"), e))?,
        ),
        None => None,
    };
    let egress = match settings.egress.listen {
        Some(addr) => {
            let proxy = crate::egress::build(&settings.egress, engine.clone())?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| Error::io(format!("binding the egress proxy {addr}"), e))?;
            Some((proxy, listener))
        }
        None => None,
    };
    let connect = match crate::egress::build_connect(&settings.egress, engine.clone())? {
        Some(proxy) => {
            let listener = proxy
                .bind()
                .await
                .map_err(|e| Error::Config(format!("egress CONNECT listener: {e}")))?;
            Some((proxy, listener))
        }
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // The serving tasks, each ending with its name: they end only at shutdown, so one that ends
    // before is a failure of the daemon.
    let mut listeners: tokio::task::JoinSet<&'static str> = tokio::task::JoinSet::new();
    if let Some((probe, every)) = watcher {
        // Before the listeners: the first check runs at once (calls are blocked until it
        // passes when the lock is required).
        tasks.spawn(crate::lock::watch(
            engine.clone(),
            probe,
            every,
            stop_rx.clone(),
        ));
    }
    // Kept for reloads, which replace its budgets and prices.
    let egress_proxy = egress.as_ref().map(|(proxy, _)| proxy.clone());
    if let Some((proxy, listener)) = egress {
        tracing::info!(addr = ?listener.local_addr().ok(), "Egress proxy listening.");
        let served = serve_egress_on_own_thread(proxy, listener, stop_rx.clone())?;
        // The thread reports when the proxy stopped (or that it died).
        spawn_listener(&mut listeners, "egress proxy", async move {
            let _ = served.await;
        });
    }
    if let Some((proxy, listener)) = connect {
        tracing::info!(addr = ?listener.local_addr().ok(), "Egress CONNECT listener listening.");
        let stop = stop_rx.clone();
        spawn_listener(&mut listeners, "egress CONNECT listener", async move {
            proxy.serve(listener, stop).await;
        });
    }
    let hook_server = server::serve_unix(
        hook,
        PeerRule {
            uids: settings.hook.allowed_uids.clone(),
            gid: None,
        },
        settings.max_body_bytes,
        Arc::new(HookApi {
            engine: engine.clone(),
        }),
        stop_rx.clone(),
        "hook",
    );
    spawn_listener(&mut listeners, "hook socket", hook_server);
    let admin_server = server::serve_unix(
        admin,
        PeerRule {
            uids: settings.admin.allowed_uids.clone(),
            gid: settings.admin.group.as_ref().map(|g| g.1),
        },
        64 * 1024,
        Arc::new(AdminSocketApi {
            engine: engine.clone(),
        }),
        stop_rx.clone(),
        "admin",
    );
    spawn_listener(&mut listeners, "admin socket", admin_server);
    if let Some(listener) = page {
        let addr = listener.local_addr().ok();
        tracing::info!(?addr, "Approval page listening.");
        let page_server = server::serve_tcp(
            listener,
            64 * 1024,
            Arc::new(AdminPage {
                engine: engine.clone(),
                token,
            }),
            stop_rx.clone(),
        );
        spawn_listener(&mut listeners, "approval page", page_server);
    }
    if let Some(hub) = engine.hub() {
        let link = HubLink::new(engine.clone(), hub.clone());
        tasks.spawn(link.run(stop_rx.clone()));
    }
    engine.store().audit(
        "daemon.started",
        &json!({ "version": env!("CARGO_PKG_VERSION"), "pid": std::process::id() }),
    )?;
    tracing::info!(hook = %settings.hook.path.display(), admin = %settings.admin.path.display(), "clawgate serve ready.");

    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut exit = Exit::Stopped;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let _ = reload_now(&engine, egress_proxy.as_ref(), &reload, &settings);
            }
            Some(c) = control.recv() => match c {
                Control::Reload(answer) => {
                    let _ = answer.send(reload_now(&engine, egress_proxy.as_ref(), &reload, &settings));
                }
                Control::Restart => {
                    tracing::warn!("The Hub asked for a restart: stopping so systemd starts the daemon again.");
                    exit = Exit::RestartRequested;
                    break;
                }
            },
            _ = sweep.tick() => {
                if let Err(e) = engine.sweep() {
                    tracing::error!(error = %e, "Sweeping expired approvals failed.");
                }
                // An idle proxy's redaction cache, and the heap pages its requests left free,
                // go back to the kernel (RSS after a 10-minute soak and 1 MB bodies: 46 MiB
                // held while idle, against 23 MiB at start).
                if egress_proxy.as_ref().is_some_and(|p| p.release_idle_memory()) {
                    clawgate_vault::hardening::release_free_memory();
                }
            }
            Some(what) = next_listener_end(&mut listeners) => {
                tracing::error!(listener = what, "A listener stopped serving before shutdown; stopping so systemd starts the daemon again.");
                exit = Exit::ListenerFailed(what);
                break;
            }
        }
    }
    tracing::info!("Shutting down: no new connections; open requests finish.");
    engine.begin_shutdown();
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    while listeners.join_next().await.is_some() {}
    // Captures still queued were already referenced in text the agent got: give the writer a
    // moment to store them, or those references would not resolve after the restart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while engine.captures_pending() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for path in [&settings.hook.path, &settings.admin.path] {
        let _ = std::fs::remove_file(path);
    }
    engine.store().audit(
        "daemon.stopped",
        &json!({
            "pid": std::process::id(),
            "restart": exit == Exit::RestartRequested,
            "failed_listener": match exit {
                Exit::ListenerFailed(what) => Some(what),
                _ => None,
            },
        }),
    )?;
    Ok(exit)
}

/// Runs `serving` as the listener `name` (the task ends with its name).
fn spawn_listener(
    listeners: &mut tokio::task::JoinSet<&'static str>,
    name: &'static str,
    serving: impl std::future::Future<Output = ()> + Send + 'static,
) {
    listeners.spawn(async move {
        serving.await;
        name
    });
}

/// The name of the next listener task to end (a generic one if it panicked); `None` when there
/// is none left.
async fn next_listener_end(
    listeners: &mut tokio::task::JoinSet<&'static str>,
) -> Option<&'static str> {
    let ended = listeners.join_next().await?;
    Some(ended.unwrap_or("listener that panicked"))
}

/// Runs the egress proxy on a thread of its own with a single-threaded runtime, so a request's
/// accept, body read, upstream exchange and response stream stay on one thread. On the shared
/// multi-threaded runtime every hop between those tasks could wake the other worker. Measured
/// with `scripts/bench-egress` on this 2-core VM (two rounds each, alternated), added p50
/// back-to-back: 4 KB 0.31–0.33 → 0.25–0.29 ms, 64 KB resent 0.35–0.40 → 0.32–0.34 ms, 64 KB
/// all new 0.92–0.97 → 0.80–0.85 ms; paced requests (idle threads) gain nothing. Redaction of bodies
/// over 256 KB still goes to the blocking pool, and the hook server keeps its own workers, so a
/// large request cannot delay a tool-call decision. The receiver resolves when `serve` returns.
fn serve_egress_on_own_thread(
    proxy: clawgate_egress::Egress,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) -> Result<tokio::sync::oneshot::Receiver<()>> {
    let listener = listener
        .into_std()
        .map_err(|e| Error::io("handing the egress listener to its thread", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the egress proxy's runtime", e))?;
    let (done, served) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("clawgate-egress".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => proxy.serve(listener, stop).await,
                    Err(e) => {
                        tracing::error!(error = %e, "The egress proxy could not take its listener.")
                    }
                }
            });
            let _ = done.send(());
        })
        .map_err(|e| Error::io("starting the egress proxy's thread", e))?;
    Ok(served)
}

/// Re-reads the configuration and the policy; `egress` (the running proxy, if any) takes the
/// new budgets and prices once the policy reloaded. Anything else that changed waits for a
/// restart (and says so).
fn reload_now(
    engine: &Engine,
    egress: Option<&clawgate_egress::Egress>,
    reload: &Reloader,
    running: &Settings,
) -> std::result::Result<(), String> {
    let result = reload().and_then(|s| {
        if s.hook != running.hook
            || s.admin != running.admin
            || s.admin_listen != running.admin_listen
            || !same_but_limits(&s.egress, &running.egress)
            || s.egress_lock != running.egress_lock
        {
            tracing::warn!(
                "Socket, listener, egress and egress-lock settings changed; they take effect at the next restart (egress budgets and prices take effect now)."
            );
        }
        reload_policy(engine, &s)?;
        if let Some(proxy) = egress {
            proxy.set_limits(s.egress.budgets.clone(), s.egress.prices.clone());
        }
        Ok(())
    });
    match result {
        Ok(()) => {
            tracing::info!("Reloaded configuration and policy.");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "Reload refused; the previous configuration and policy stay in force.");
            let _ = engine
                .store()
                .audit("reload.failed", &json!({ "error": e.to_string() }));
            Err(e.to_string())
        }
    }
}

/// Whether `new` differs from `old` at most in budgets and prices (what a reload applies).
fn same_but_limits(new: &EgressSettings, old: &EgressSettings) -> bool {
    let limits_as_old = EgressSettings {
        budgets: old.budgets.clone(),
        prices: old.prices.clone(),
        ..new.clone()
    };
    limits_as_old == *old
}

/// The policy and tier from the settings, or the signed bundle in force.
fn reload_policy(engine: &Engine, s: &Settings) -> Result<()> {
    // A signed bundle in force stays in force (re-verified from disk): the configured policy
    // and tier apply only without one.
    if let Some(hub) = engine.hub()
        && let Some(active) = hub.bundles().load_current(crate::hublink::unix_now())?
    {
        let version = active.info.policy_version();
        return engine.reload_bundle(
            active.policy,
            active.tier,
            version,
            timing(s),
            Some(active.info),
        );
    }
    let (policy, version) = load_policy(s)?;
    engine.reload(policy, s.tier, version, timing(s))
}

fn timing(s: &Settings) -> Timing {
    Timing {
        approval_wait: s.approval_wait,
        approval_expiry: s.approval_expiry,
    }
}

/// Loads the policy and names its version: a hash of its files.
pub fn load_policy(s: &Settings) -> Result<(Policy, String)> {
    let mut h = Sha256::new();
    let policy = match &s.policy_dir {
        None => {
            for (name, text) in Policy::default_sources() {
                h.update(name.as_bytes());
                h.update(b"\0");
                h.update(text.as_bytes());
                h.update(b"\0");
            }
            Policy::default_policy()?
        }
        Some(dir) => {
            let files = bundle::read_policy_dir(dir)
                .map_err(|e| Error::Config(format!("policy.dir: {e}")))?;
            let mut sources = Vec::new();
            for (name, bytes) in &files {
                h.update(name.as_bytes());
                h.update(b"\0");
                h.update(bytes);
                h.update(b"\0");
                if !name.contains('/') && name.ends_with(".toml") {
                    let text = std::str::from_utf8(bytes)
                        .map_err(|_| Error::Config(format!("policy file {name} is not UTF-8")))?;
                    sources.push((name.as_str(), text));
                }
            }
            Policy::from_sources(&sources)?
        }
    };
    let tier = match s.tier {
        Tier::Supervised => 1,
        Tier::Balanced => 2,
        Tier::Autonomous => 3,
    };
    h.update([tier]);
    Ok((
        policy,
        format!("sha256:{}", &hex::encode(h.finalize())[..16]),
    ))
}

/// Creates `dir` (mode 0700) if needed and refuses one that group or others can enter.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "state directory {} has mode {:04o}; group and others must have no access (chmod 700)",
            dir.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

/// Opens the vault; the embedded default creates it (and its 0600 key file) on first start.
pub fn open_vault(s: &Settings) -> Result<Option<Vault>> {
    let source = match &s.vault_key {
        VaultKey::DefaultKeyFile(key) => {
            if !s.vault_path.exists() {
                if !key.exists() {
                    clawgate_vault::generate_key_file(key)?;
                    tracing::info!(key = %key.display(), "Generated the vault key file (mode 0600).");
                }
                let vault = Vault::create(
                    &s.vault_path,
                    &KeySource::KeyFile(key.clone()),
                    KdfParams::default(),
                )?;
                tracing::info!(vault = %s.vault_path.display(), "Created an empty vault.");
                return Ok(Some(vault));
            }
            KeySource::KeyFile(key.clone())
        }
        VaultKey::KeyFile(key) => KeySource::KeyFile(key.clone()),
        VaultKey::Credential(name) => {
            KeySource::credential(&clawgate_protocol::env::ProcessEnv, name)?
        }
        VaultKey::PassphraseFile(file) => {
            let bytes = zeroize::Zeroizing::new(
                clawgate_protocol::io::read_capped(file, MAX_SMALL_FILE)
                    .map_err(|e| Error::io(format!("reading {}", file.display()), e))?,
            );
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| Error::Config(format!("{} is not UTF-8", file.display())))?;
            let line = text.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                return Err(Error::Config(format!("{} is empty", file.display())));
            }
            KeySource::Passphrase(SecretString::new(line.to_owned()))
        }
    };
    if !s.vault_path.exists() {
        return Err(Error::Config(format!(
            "no vault at {}; create it with `clawgate vault init`",
            s.vault_path.display()
        )));
    }
    Ok(Some(Vault::open(&s.vault_path, &source)?))
}

/// Reads (creating 0600 if missing) the placeholder key.
pub fn placeholder_key(dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join(PLACEHOLDER_KEY);
    if !path.exists() {
        clawgate_vault::generate_key_file(&path)?;
    }
    let key = clawgate_vault::read_key_file(&path)?;
    key.as_slice()
        .try_into()
        .map_err(|_| Error::Config(format!("{} must hold 32 bytes", path.display())))
}

/// Reads the admin token, creating a random one (mode 0600) on first start.
pub fn admin_token(path: &Path) -> Result<SecretString> {
    if !path.exists() {
        let mut raw = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::getrandom(raw.as_mut())
            .map_err(|e| Error::io("random token", std::io::Error::other(e.to_string())))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        f.write_all(hex::encode(raw.as_ref()).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{} is readable by others; chmod 600 it",
            path.display()
        )));
    }
    let bytes = zeroize::Zeroizing::new(
        clawgate_protocol::io::read_capped(path, MAX_SMALL_FILE)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::Config(format!("{} is not UTF-8", path.display())))?
        .trim();
    if text.len() < 32 {
        return Err(Error::Config(format!(
            "{} must hold a token of at least 32 characters",
            path.display()
        )));
    }
    Ok(SecretString::new(text.to_owned()))
}

/// Binds a Unix socket with its mode and group set before anyone can connect: the umask keeps
/// it private while it is created, then it is opened up to exactly the configured mode.
fn bind_unix(s: &SocketSettings) -> Result<UnixListener> {
    let path: &PathBuf = &s.path;
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::Config(format!(
                "{} is in use: another clawgate serve is running",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| Error::io(format!("removing stale socket {}", path.display()), e))?;
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
    if let Some((_, gid)) = &s.group {
        std::os::unix::fs::chown(path, None, Some(*gid))
            .map_err(|e| Error::io(format!("giving {} to group {gid}", path.display()), e))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(s.mode))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_that_ends_or_panics_is_named_and_one_that_serves_is_not() {
        let mut listeners: tokio::task::JoinSet<&'static str> = tokio::task::JoinSet::new();
        let (_keep, mut serving) = watch::channel(false);
        spawn_listener(&mut listeners, "serving", async move {
            let _ = serving.changed().await;
        });
        spawn_listener(&mut listeners, "egress proxy", async {});
        assert_eq!(
            next_listener_end(&mut listeners).await,
            Some("egress proxy")
        );
        #[allow(clippy::panic)]
        spawn_listener(&mut listeners, "panics", async { panic!("listener bug") });
        assert_eq!(
            next_listener_end(&mut listeners).await,
            Some("listener that panicked")
        );
        // Only the one still serving is left: nothing ends.
        let waited =
            tokio::time::timeout(Duration::from_millis(50), next_listener_end(&mut listeners))
                .await;
        assert!(waited.is_err());
        listeners.abort_all();
    }
}
