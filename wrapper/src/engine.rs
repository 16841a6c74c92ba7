//! The decision path behind every hook: classify, decide by tier, hold for approval, resolve
//! secrets, audit. No HTTP here; `server.rs` maps requests to these functions.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use clawgate_policies::rules::canonical_tool;
use clawgate_policies::{Action, Assessment, Class, Policy, Tier, ToolCall};
use clawgate_redact::Redactor;
use clawgate_vault::Vault;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::capture::{AgentCapture, CaptureMode, CaptureSettings, Capturer, Outcomes, VaultSink};
use crate::error::{Error, Result};
use crate::hublink::HubState;
use crate::hublink::bundles::BundleInfo;
use crate::lock::EgressLock;
use crate::metrics::{DecisionLabels, Metrics};
use crate::secrets;
use crate::store::{Approval, GrantKind, NewApproval, Status, Store};
use crate::summary;

/// How long a decision is remembered by tool call id, so the trusted policy and the
/// `before_tool_call` hook (which both see every call) decide once and ask once.
const REMEMBER_FOR: Duration = Duration::from_secs(600);
/// Most remembered decisions.
const REMEMBER_MAX: usize = 10_000;

/// Secrets resolved into a call: `(name, environment variable for exec)`.
type Resolved = Vec<(String, Option<String>)>;

/// The policy in force and everything derived from it. Replaced whole on reload; a call in
/// flight keeps the snapshot it started with.
#[derive(Debug)]
pub struct Snapshot {
    /// The classifier.
    pub policy: Policy,
    /// Autonomy tier.
    pub tier: Tier,
    /// Policy version (a hash of its sources): grants are bound to it.
    pub version: String,
    /// Redacts summaries, action hashes, tool results and (shared with the egress proxy) LLM
    /// requests.
    pub redactor: Arc<Redactor>,
    /// Vault generation the redactor was built from.
    pub vault_generation: Option<i64>,
    /// The signed bundle the policy came from (`None`: the configured or built-in policy).
    pub bundle: Option<BundleInfo>,
}

/// Which endpoint a decision request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `registerTrustedToolPolicy` (runs first; also in `openclaw agent exec`).
    TrustedPolicy,
    /// `api.on("before_tool_call")`.
    BeforeToolCall,
}

impl Hook {
    fn as_str(self) -> &'static str {
        match self {
            Hook::TrustedPolicy => "trusted_policy",
            Hook::BeforeToolCall => "before_tool_call",
        }
    }
}

/// The answer to OpenClaw.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Run with exactly these parameters.
    Allow(Value),
    /// Blocked; the model reads the reason.
    Block(String),
}

impl Reply {
    /// OpenClaw's result shape: `{params}` or `{block: true, blockReason}`.
    pub fn to_json(&self) -> Value {
        match self {
            Reply::Allow(params) => json!({ "params": params }),
            Reply::Block(reason) => json!({ "block": true, "blockReason": reason }),
        }
    }
}

/// The hook context fields Clawgate uses (OpenClaw's `PluginHookToolContext`).
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// Agent id (`main` when absent).
    pub agent: String,
    /// Session key.
    pub session_key: Option<String>,
    /// Run id.
    pub run_id: Option<String>,
    /// Tool call id.
    pub tool_call_id: Option<String>,
    /// Trace id.
    pub trace_id: Option<String>,
}

impl CallContext {
    fn from_body(body: &Value) -> CallContext {
        let ctx = body.get("ctx");
        let event = body.get("event");
        let text = |k: &str| {
            ctx.and_then(|c| c.get(k))
                .or_else(|| event.and_then(|e| e.get(k)))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        CallContext {
            agent: text("agentId").unwrap_or_else(|| "main".into()),
            session_key: text("sessionKey"),
            run_id: text("runId"),
            tool_call_id: text("toolCallId"),
            trace_id: ctx
                .and_then(|c| c.get("trace"))
                .and_then(|t| t.get("traceId"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    fn audit_fields(&self) -> Value {
        json!({ "agent": self.agent, "session_key": self.session_key, "run_id": self.run_id,
                "tool_call_id": self.tool_call_id, "trace_id": self.trace_id })
    }
}

#[derive(Debug, Clone)]
enum Remembered {
    Allowed { via: &'static str },
    Blocked(String),
}

/// What is remembered about one tool call id, so the second gate (OpenClaw runs the trusted
/// policy and then the `before_tool_call` hook on every call) reuses the first gate's decision.
///
/// An allow is lent out once, and only to the *other* gate (or, for Tool Search, to the one
/// inner call the outer call wrapped): the model chooses tool call ids, so an id replayed in a
/// later turn must not replay an approval.
#[derive(Debug)]
struct Entry {
    /// Action hash of the call as first seen.
    hash: String,
    outcome: Remembered,
    /// The gate that decided.
    hook: Hook,
    at: Instant,
    /// The other gate has reused the allow (or it was lent to the inner call).
    used: bool,
    /// Hash `after_tool_call` should report (injected secrets masked).
    executed: Option<String>,
    /// Exact hash of the params Clawgate returned (secret values included; memory only).
    returned: Option<String>,
}

#[derive(Debug, Default)]
struct Recent {
    map: HashMap<String, Entry>,
    order: VecDeque<(String, Instant)>,
}

impl Recent {
    /// The remembered outcome for this call at the other gate. A block is always reused; an
    /// allow only once, and never by the gate that made it.
    fn take(&mut self, id: &str, hash: &str, hook: Option<Hook>) -> Option<Remembered> {
        self.evict();
        let e = self.map.get_mut(id).filter(|e| e.hash == hash)?;
        match e.outcome {
            Remembered::Blocked(_) => Some(e.outcome.clone()),
            Remembered::Allowed { .. } if e.used || hook == Some(e.hook) => None,
            Remembered::Allowed { .. } => {
                e.used = true;
                Some(e.outcome.clone())
            }
        }
    }
    /// True once when `params_hash` is exactly what the other gate returned for this call.
    fn take_echo(&mut self, id: &str, params_hash: &str, hook: Hook) -> bool {
        self.evict();
        match self.map.get_mut(id) {
            Some(e) if !e.used && e.hook != hook && e.returned.as_deref() == Some(params_hash) => {
                e.used = true;
                true
            }
            _ => false,
        }
    }
    fn put(&mut self, id: &str, hash: &str, outcome: Remembered, hook: Hook) {
        self.evict();
        while self.map.len() >= REMEMBER_MAX {
            match self.order.pop_front() {
                Some((old, _)) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        // The same id put again leaves a stale queue entry behind: compact before the queue
        // outgrows the map, or it grows with every call for the whole retention window.
        if self.order.len() >= 2 * REMEMBER_MAX {
            let map = &self.map;
            self.order
                .retain(|(id, at)| map.get(id).is_some_and(|e| e.at == *at));
        }
        let at = Instant::now();
        self.map.insert(
            id.to_owned(),
            Entry {
                hash: hash.to_owned(),
                outcome,
                hook,
                at,
                used: false,
                executed: None,
                returned: None,
            },
        );
        self.order.push_back((id.to_owned(), at));
    }
    fn set_returned(&mut self, id: &str, executed: String, returned: String) {
        if let Some(e) = self.map.get_mut(id) {
            e.executed = Some(executed);
            e.returned = Some(returned);
        }
    }
    fn expected(&self, id: &str) -> Option<String> {
        self.map.get(id).and_then(|e| e.executed.clone())
    }
    fn evict(&mut self) {
        while let Some((id, at)) = self.order.front() {
            if at.elapsed() < REMEMBER_FOR {
                break;
            }
            if self.map.get(id).is_some_and(|e| e.at == *at) {
                self.map.remove(id);
            }
            self.order.pop_front();
        }
    }
}

/// Timing settings the engine needs (from the validated configuration).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a call that needs approval is held.
    pub approval_wait: Duration,
    /// How long a request, and an allow-for-24h grant, lives.
    pub approval_expiry: Duration,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Engine {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Held while the redactor is rebuilt, so concurrent calls wait for one rebuild instead of
    /// each building (and holding) a redactor of their own.
    rebuilding: Mutex<()>,
    timing: RwLock<Timing>,
    vault: Option<Arc<Vault>>,
    placeholder_key: [u8; 32],
    store: Arc<Store>,
    /// Captures unknown secrets into the vault (`[redact] capture_unknown`); `None`: off.
    capture: Option<Arc<Capturer>>,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    recent: Mutex<Recent>,
    shutting_down: AtomicBool,
    /// The egress lock the watcher keeps current; consulted first by every decision.
    egress_lock: Option<Arc<EgressLock>>,
    /// The Hub link when enrolled: the approver.
    hub: Option<Arc<HubState>>,
    /// A hook call arrived since start (the OpenClaw plugin is present and talking to us).
    hook_seen: AtomicBool,
    /// The version the plugin sends (`x-clawgate-plugin`), once seen.
    plugin_version: Mutex<Option<String>>,
    /// Metrics.
    pub metrics: Metrics,
    /// The egress proxy's metrics (served with the daemon's).
    pub egress_metrics: Arc<clawgate_egress::Metrics>,
    /// The CONNECT listener's metrics.
    pub connect_metrics: Arc<clawgate_egress::connect::ConnectMetrics>,
    /// The CONNECT listener's host policy, swapped with the policy on reload.
    pub connect_policy: Arc<clawgate_egress::connect::SharedHostPolicy>,
}

impl Engine {
    /// Builds the engine and audits the policy it starts with.
    pub fn new(
        policy: Policy,
        tier: Tier,
        policy_version: String,
        vault: Option<Vault>,
        placeholder_key: [u8; 32],
        store: Store,
        timing: Timing,
    ) -> Result<Engine> {
        let connect_policy = Arc::new(clawgate_egress::connect::SharedHostPolicy::new(
            policy.connect_policy(),
        ));
        let snapshot = build_snapshot(
            policy,
            tier,
            policy_version,
            vault.as_ref(),
            placeholder_key,
        )?;
        let engine = Engine {
            snapshot: RwLock::new(Arc::new(snapshot)),
            rebuilding: Mutex::new(()),
            timing: RwLock::new(timing),
            vault: vault.map(Arc::new),
            placeholder_key,
            store: Arc::new(store),
            capture: None,
            waiters: Mutex::new(HashMap::new()),
            recent: Mutex::new(Recent::default()),
            shutting_down: AtomicBool::new(false),
            egress_lock: None,
            hub: None,
            hook_seen: AtomicBool::new(false),
            plugin_version: Mutex::new(None),
            metrics: Metrics::new(),
            egress_metrics: Arc::new(clawgate_egress::Metrics::new()),
            connect_metrics: Arc::new(clawgate_egress::connect::ConnectMetrics::new()),
            connect_policy,
        };
        engine.after_policy_change()?;
        Ok(engine)
    }

    /// Makes every decision depend on `lock` (see [`crate::lock`]): while it is not in force
    /// (and required) every tool call is blocked.
    pub fn with_egress_lock(mut self, lock: Arc<EgressLock>) -> Engine {
        self.metrics
            .set_egress_lock(&lock.status(), &std::collections::BTreeMap::new());
        self.egress_lock = Some(lock);
        self
    }

    /// Makes the Hub the approver (see [`crate::hublink`]): every new approval request is
    /// queued for the Hub in the transaction that creates it.
    pub fn with_hub(mut self, hub: Arc<HubState>) -> Engine {
        self.hub = Some(hub);
        self
    }

    /// Captures unknown secrets found in tool results and LLM requests into the vault
    /// ([`crate::capture`]). Without a vault, or with the mode `off`, nothing changes.
    pub fn with_capture(mut self, settings: &CaptureSettings) -> Result<Engine> {
        let Some(vault) = self.vault.clone() else {
            if settings.mode != CaptureMode::Off {
                tracing::warn!(
                    "redact.capture_unknown is set but there is no vault: nothing is captured."
                );
            }
            return Ok(self);
        };
        if settings.mode == CaptureMode::Off {
            return Ok(self);
        }
        let sink = Arc::new(VaultSink {
            vault: vault.clone(),
            store: self.store.clone(),
            scope: settings.scope.clone(),
        });
        let existing = vault_names(&vault)?;
        let counts = Outcomes::new(self.metrics.captures.clone());
        self.capture = Some(Capturer::start(settings, sink, existing, counts)?);
        Ok(self)
    }

    /// The capture of unknown secrets for one agent's text from `source` (`tool_result`,
    /// `egress`), when capture is on.
    pub fn capture_for(&self, agent: &str, source: &'static str) -> Option<AgentCapture> {
        self.capture.as_ref().map(|c| c.for_agent(agent, source))
    }

    /// Captured secrets queued for the vault and not yet written.
    pub fn captures_pending(&self) -> usize {
        self.capture.as_ref().map_or(0, |c| c.pending())
    }

    /// The Hub link, when enrolled.
    pub fn hub(&self) -> Option<&Arc<HubState>> {
        self.hub.as_ref()
    }

    /// Records the version the plugin announced (1 to 32 characters of `[0-9A-Za-z.+-]`;
    /// anything else is ignored).
    pub fn note_plugin_version(&self, version: &str) {
        let ok = (1..=32).contains(&version.len())
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        if ok
            && let Ok(mut v) = self.plugin_version.lock()
            && v.as_deref() != Some(version)
        {
            *v = Some(version.to_owned());
        }
    }

    /// The plugin's version, if it announced one.
    pub fn plugin_version(&self) -> Option<String> {
        self.plugin_version.lock().ok().and_then(|v| v.clone())
    }

    /// True once a hook call arrived (the plugin is installed and talking to this daemon).
    pub fn hook_seen(&self) -> bool {
        self.hook_seen.load(Ordering::Relaxed)
    }

    /// Records which signed bundle the snapshot in force came from (at start, after
    /// [`Engine::new`] with the bundle's policy).
    pub fn with_bundle(self, bundle: Option<BundleInfo>) -> Result<Engine> {
        {
            let mut guard = self.snapshot.write().map_err(|_| Error::Poisoned)?;
            let fresh = Arc::new(Snapshot {
                policy: guard.policy.clone(),
                tier: guard.tier,
                version: guard.version.clone(),
                redactor: guard.redactor.clone(),
                vault_generation: guard.vault_generation,
                bundle,
            });
            *guard = fresh;
        }
        Ok(self)
    }

    /// The bundle in force passed its expiry: keep it, ask for everything above green.
    /// Audited once.
    pub fn mark_bundle_expired(&self) -> Result<bool> {
        let mut guard = self.snapshot.write().map_err(|_| Error::Poisoned)?;
        let Some(info) = guard.bundle.clone().filter(|b| !b.expired) else {
            return Ok(false);
        };
        let bundle = Some(BundleInfo {
            expired: true,
            ..info.clone()
        });
        *guard = Arc::new(Snapshot {
            policy: guard.policy.clone(),
            tier: guard.tier,
            version: guard.version.clone(),
            redactor: guard.redactor.clone(),
            vault_generation: guard.vault_generation,
            bundle,
        });
        drop(guard);
        self.store.audit(
            "bundle.expired",
            &json!({ "version": info.version, "expires_at": info.expires_at,
                     "effect": "still enforced; every call above green is asked" }),
        )?;
        tracing::warn!(
            version = info.version,
            "The policy bundle expired: still enforced, every call above green is asked."
        );
        Ok(true)
    }

    /// The egress lock, when one is configured.
    pub fn egress_lock(&self) -> Option<&Arc<EgressLock>> {
        self.egress_lock.as_ref()
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        Ok(self.snapshot.read().map_err(|_| Error::Poisoned)?.clone())
    }

    /// The redactor in force, rebuilt first if the vault changed since it was made. The egress
    /// proxy redacts with this one too, so the hook server and the proxy agree on placeholders.
    pub fn redactor(&self) -> Result<Arc<Redactor>> {
        Ok(self.fresh_snapshot()?.redactor.clone())
    }

    /// Every metric (hook server and egress proxy) in one text exposition.
    pub fn metrics_text(&self) -> String {
        let mut out = self.metrics.encode();
        // Each registry ends its exposition with `# EOF`; only the last may.
        if let Some(cut) = out.strip_suffix("# EOF\n").map(str::len) {
            out.truncate(cut);
        }
        for text in [self.egress_metrics.encode(), self.connect_metrics.encode()] {
            if let Some(cut) = out.strip_suffix("# EOF\n").map(str::len) {
                out.truncate(cut);
            }
            out.push_str(&text);
        }
        out
    }

    /// The vault, if the daemon has one.
    pub fn vault(&self) -> Option<&Vault> {
        self.vault.as_deref()
    }

    /// The approvals and audit store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The timing in force.
    pub fn current_timing(&self) -> Result<Timing> {
        self.timing()
    }

    fn timing(&self) -> Result<Timing> {
        Ok(*self.timing.read().map_err(|_| Error::Poisoned)?)
    }

    /// Swaps in a new policy, tier and timing (SIGHUP). Calls in flight finish on the old
    /// snapshot. A new policy version clears grants and pending requests made under the old one.
    pub fn reload(
        &self,
        policy: Policy,
        tier: Tier,
        version: String,
        timing: Timing,
    ) -> Result<()> {
        self.reload_bundle(policy, tier, version, timing, None)
    }

    /// [`Engine::reload`] with the signed bundle the policy came from.
    pub fn reload_bundle(
        &self,
        policy: Policy,
        tier: Tier,
        version: String,
        timing: Timing,
        bundle: Option<BundleInfo>,
    ) -> Result<()> {
        let connect = policy.connect_policy();
        let mut snapshot = build_snapshot(
            policy,
            tier,
            version,
            self.vault.as_deref(),
            self.placeholder_key,
        )?;
        snapshot.bundle = bundle;
        *self.snapshot.write().map_err(|_| Error::Poisoned)? = Arc::new(snapshot);
        self.connect_policy.set(connect);
        *self.timing.write().map_err(|_| Error::Poisoned)? = timing;
        self.after_policy_change()
    }

    fn after_policy_change(&self) -> Result<()> {
        let snap = self.snapshot()?;
        let cleared = self.store.expire(&snap.version)?;
        self.store.audit(
            "policy.loaded",
            &json!({ "policy_version": snap.version, "tier": snap.tier, "cleared": cleared }),
        )?;
        self.wake_all()?;
        self.refresh_pending_gauge();
        Ok(())
    }

    /// Rebuilds the redactor if the vault changed since the snapshot was made.
    fn fresh_snapshot(&self) -> Result<Arc<Snapshot>> {
        let snap = self.snapshot()?;
        let Some(vault) = &self.vault else {
            return Ok(snap);
        };
        if snap.vault_generation == Some(vault.generation()?) {
            return Ok(snap);
        }
        drop(snap);
        let _rebuilding = self.rebuilding.lock().map_err(|_| Error::Poisoned)?;
        // Another call may have rebuilt it while this one waited.
        let snap = self.snapshot()?;
        let generation = vault.generation()?;
        if snap.vault_generation == Some(generation) {
            return Ok(snap);
        }
        drop(snap);
        let redactor = Arc::new(build_redactor(Some(vault), self.placeholder_key)?);
        if let Some(c) = &self.capture {
            // A captured secret removed with `clawgate vault rm` is captured again when seen.
            c.sync_known(vault_names(vault)?);
        }
        let mut guard = self.snapshot.write().map_err(|_| Error::Poisoned)?;
        let fresh = Arc::new(Snapshot {
            policy: guard.policy.clone(),
            tier: guard.tier,
            version: guard.version.clone(),
            redactor,
            vault_generation: Some(generation),
            bundle: guard.bundle.clone(),
        });
        *guard = fresh.clone();
        drop(guard);
        // The old redactor (megabytes) is gone unless a call in flight still holds it; hand its
        // pages back instead of keeping them mapped until the next rebuild.
        clawgate_vault::hardening::release_free_memory();
        Ok(fresh)
    }

    /// `trusted_policy` and `before_tool_call`: the one decision path.
    pub async fn decide(&self, hook: Hook, body: &Value) -> Result<Reply> {
        let call = parse_call(body)?;
        self.hook_seen.store(true, Ordering::Relaxed);
        self.metrics.calls_total.fetch_add(1, Ordering::Relaxed);
        let ctx = CallContext::from_body(body);
        let snap = self.fresh_snapshot()?;
        let tool = canonical_tool(&call.tool).to_owned();
        // Before anything else, remembered answers included: without the lock the agent's
        // traffic may bypass the proxy, so nothing runs.
        if let Some(reason) = self.egress_lock.as_ref().and_then(|l| l.block_reason()) {
            return self.block_unlocked(hook, &tool, &call, &snap, &ctx, reason);
        }
        if let Some(id) = &ctx.tool_call_id
            && self
                .recent()?
                .take_echo(id, &exact_hash(&call.params), hook)
        {
            // Our own answer coming back: OpenClaw hands the trusted policy's params to the
            // before_tool_call hook. Judging the rewritten command again would ask twice.
            self.metrics
                .decisions
                .get_or_create(&DecisionLabels {
                    hook: hook.as_str(),
                    class: "same_call",
                    outcome: "allow",
                })
                .inc();
            return Ok(Reply::Allow(call.params));
        }
        let assessment = snap.policy.assess(&call);
        let mut decision = clawgate_policies::decide(&assessment.verdict, snap.tier);
        // Expired as marked, or as of now (the link marks it at its next heartbeat).
        let bundle_expired = snap
            .bundle
            .as_ref()
            .is_some_and(|b| b.expired || crate::hublink::unix_now() >= b.expires_at);
        if bundle_expired && decision.decision == Action::Allow && decision.class != Class::Green {
            // An expired bundle is still enforced, but nothing above green runs unasked.
            decision.decision = Action::Ask;
            decision.reason = format!(
                "{} (the policy bundle expired, so every action above green needs the owner's approval)",
                decision.reason
            );
        }
        let redacted = summary::redact_value(&snap.redactor, &call.params);
        // Tool Search's outer `tool_call {id, args}` is hashed as the call it wraps, so the
        // owner approves the real call once and the inner call (which OpenClaw gates again)
        // is recognised as the same action.
        let (hash_tool, hash_params) = wrapped_call(&tool, &redacted);
        let hash = summary::action_hash(hash_tool, hash_params);
        let class = assessment.verdict.class;

        let remembered = match &ctx.tool_call_id {
            Some(id) => {
                let mut recent = self.recent()?;
                recent.take(id, &hash, Some(hook)).or_else(|| {
                    // The one inner call a Tool Search outer call wrapped (either gate).
                    outer_call_id(id).and_then(|outer| recent.take(outer, &hash, None))
                })
            }
            None => None,
        };
        let reused = remembered.is_some();
        let outcome = match remembered {
            Some(Remembered::Blocked(reason)) => {
                return Ok(Reply::Block(reason));
            }
            Some(Remembered::Allowed { via }) => Outcome::Allowed {
                via,
                approval: None,
            },
            None => {
                self.judge(
                    hook,
                    &call,
                    &tool,
                    &assessment,
                    decision.decision,
                    &snap,
                    &ctx,
                    &hash,
                    &redacted,
                    &decision,
                )
                .await?
            }
        };
        // An approval wait can outlast the lock: check again before anything is allowed.
        if matches!(outcome, Outcome::Allowed { .. })
            && let Some(reason) = self.egress_lock.as_ref().and_then(|l| l.block_reason())
        {
            return self.block_unlocked(hook, &tool, &call, &snap, &ctx, reason);
        }
        let reply = match outcome {
            Outcome::Blocked {
                reason,
                outcome,
                approval,
            } => {
                self.record_decision(
                    hook,
                    &tool,
                    class,
                    outcome,
                    &decision,
                    &ctx,
                    &hash,
                    &redacted,
                    approval.as_deref(),
                    &[],
                )?;
                if let Some(id) = &ctx.tool_call_id {
                    // A pending ask is not remembered: the retry after approval must pass.
                    if outcome != "ask_pending" {
                        self.recent()?
                            .put(id, &hash, Remembered::Blocked(reason.clone()), hook);
                    }
                }
                Reply::Block(reason)
            }
            Outcome::Allowed { via, approval } => {
                match self.finish_allowed(&tool, &call, &assessment, !reused, &ctx) {
                    Ok((params, resolved)) => {
                        self.record_decision(
                            hook,
                            &tool,
                            class,
                            via,
                            &decision,
                            &ctx,
                            &hash,
                            &redacted,
                            approval.as_deref(),
                            &resolved,
                        )?;
                        if let Some(id) = &ctx.tool_call_id
                            && !reused
                        {
                            let mut recent = self.recent()?;
                            recent.put(id, &hash, Remembered::Allowed { via }, hook);
                            recent.set_returned(
                                id,
                                executed_hash(&snap.redactor, &tool, &params),
                                exact_hash(&params),
                            );
                        }
                        Reply::Allow(params)
                    }
                    Err(reason) => {
                        self.refuse_secrets(
                            &tool,
                            &hash,
                            &reason,
                            &call.params,
                            &assessment,
                            &ctx,
                        )?;
                        let reason = format!("Clawgate blocked this call: {reason}");
                        self.record_decision(
                            hook,
                            &tool,
                            class,
                            "refused",
                            &decision,
                            &ctx,
                            &hash,
                            &redacted,
                            None,
                            &[],
                        )?;
                        Reply::Block(reason)
                    }
                }
            }
        };
        Ok(reply)
    }

    #[allow(clippy::too_many_arguments)]
    async fn judge(
        &self,
        _hook: Hook,
        call: &ToolCall,
        tool: &str,
        assessment: &Assessment,
        action: Action,
        snap: &Snapshot,
        ctx: &CallContext,
        hash: &str,
        redacted: &Value,
        decision: &clawgate_policies::Decision,
    ) -> Result<Outcome> {
        if action == Action::Deny {
            return Ok(Outcome::Blocked {
                reason: decision.block_reason(),
                outcome: "denied",
                approval: None,
            });
        }
        if reserved_env(&call.params) {
            // Only Clawgate puts these variables in, and its own answers are recognised before
            // this point: anything else carrying them was forged or rewritten on the way.
            return Ok(Outcome::Blocked {
                reason: format!(
                    "Clawgate blocked this call: environment variables named {}* are reserved for \
                     secrets Clawgate injects; use SECRET_REF(name) instead",
                    secrets::ENV_PREFIX
                ),
                outcome: "refused",
                approval: None,
            });
        }
        if let Some(reason) = self.secret_precheck(tool, call, assessment, ctx, hash)? {
            return Ok(Outcome::Blocked {
                reason: format!("Clawgate blocked this call: {reason}"),
                outcome: "refused",
                approval: None,
            });
        }
        if action == Action::Allow {
            return Ok(Outcome::Allowed {
                via: "allow",
                approval: None,
            });
        }
        // Ask: a valid grant answers at once; otherwise ask (or join the open request) and wait.
        if let Some(grant) =
            self.store
                .take_grant(hash, &ctx.agent, &snap.version, ctx.tool_call_id.as_deref())?
        {
            return Ok(Outcome::Allowed {
                via: "granted",
                approval: Some(grant.id),
            });
        }
        if let Some(denial) = self.store.find_denial(
            hash,
            &ctx.agent,
            &snap.version,
            self.timing()?.approval_expiry,
        )? {
            return Ok(Outcome::Blocked {
                reason: denied_reason(&denial, decision),
                outcome: "owner_denied",
                approval: Some(denial.id),
            });
        }
        let approval = match self.store.find_pending(hash, &ctx.agent, &snap.version)? {
            Some(a) => a,
            None => {
                let (shown_tool, shown_params) = wrapped_call(tool, redacted);
                let summary = summary::summarize(shown_tool, shown_params);
                let hub = self.hub.clone();
                let to_hub = move |a: &Approval| match &hub {
                    Some(h) => h.queue_approval(a),
                    None => Ok(()),
                };
                let a = self.store.create_approval_then(
                    &NewApproval {
                        action_hash: hash,
                        tool,
                        class: decision.class.as_str(),
                        rule: &decision.rule,
                        summary: &summary,
                        agent: &ctx.agent,
                        session_key: ctx.session_key.as_deref(),
                        tool_call_id: ctx.tool_call_id.as_deref(),
                        trace_id: ctx.trace_id.as_deref(),
                        policy_version: &snap.version,
                    },
                    self.timing()?.approval_expiry,
                    &to_hub,
                )?;
                if let Some(h) = &self.hub {
                    h.wake();
                }
                tracing::info!(approval = %a.id, tool, class = %decision.class, rule = %decision.rule, agent = %ctx.agent, "Approval requested.");
                self.refresh_pending_gauge();
                a
            }
        };
        let status = self.wait_for(&approval.id).await?;
        Ok(match status {
            Status::Approved => {
                match self.store.take_grant(
                    hash,
                    &ctx.agent,
                    &snap.version,
                    ctx.tool_call_id.as_deref(),
                )? {
                    Some(grant) => Outcome::Allowed {
                        via: "approved",
                        approval: Some(grant.id),
                    },
                    // Another call with the same action used the single-use grant first.
                    None => Outcome::Blocked {
                        reason: self.asked_reason(&approval, decision),
                        outcome: "ask_pending",
                        approval: Some(approval.id.clone()),
                    },
                }
            }
            Status::Denied => Outcome::Blocked {
                reason: denied_reason(&approval, decision),
                outcome: "owner_denied",
                approval: Some(approval.id.clone()),
            },
            Status::Pending => Outcome::Blocked {
                reason: self.asked_reason(&approval, decision),
                outcome: "ask_pending",
                approval: Some(approval.id.clone()),
            },
            Status::Expired => Outcome::Blocked {
                reason: format!(
                    "Clawgate: approval {} expired or was cleared by a policy change; retry the action \
                     to ask the owner again.",
                    approval.id
                ),
                outcome: "expired",
                approval: Some(approval.id.clone()),
            },
        })
    }

    fn secret_precheck(
        &self,
        tool: &str,
        call: &ToolCall,
        assessment: &Assessment,
        ctx: &CallContext,
        hash: &str,
    ) -> Result<Option<String>> {
        let refs = secrets::refs_in(&call.params);
        if refs.is_empty() || tool == "tool_call" {
            // The outer `tool_call` wrapper keeps its references: the inner call, which OpenClaw
            // sends through this hook again, resolves them under its own tool name.
            return Ok(None);
        }
        let why = if call.tool_kind.as_deref() == Some("code_mode_exec") {
            Some("SECRET_REF is not resolved into Code Mode programs".to_owned())
        } else {
            secrets::precheck(tool, assessment, &refs, self.vault.as_deref())
                .and_then(|()| self.check_captured(&refs, &ctx.agent))
                .err()
        };
        if let Some(reason) = &why {
            self.refuse_secrets(tool, hash, reason, &call.params, assessment, ctx)?;
        }
        Ok(why)
    }

    /// A captured secret goes only to the agent whose traffic it was captured from: another
    /// agent never saw its value, so handing it over would leak it across agents.
    fn check_captured(
        &self,
        refs: &[clawgate_protocol::SecretName],
        agent: &str,
    ) -> std::result::Result<(), String> {
        for name in refs {
            if !name
                .as_str()
                .starts_with(clawgate_redact::capture::CAPTURED_PREFIX)
            {
                continue;
            }
            match self.store.captured_by(name.as_str()) {
                Ok(Some(owner)) if owner != agent => {
                    return Err(format!(
                        "SECRET_REF({name}) was captured from another agent's traffic and may only be used by that agent"
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(format!("the capture records failed: {e}")),
            }
        }
        Ok(())
    }

    /// Counts, logs (names only) and audits a refused `SECRET_REF` use.
    fn refuse_secrets(
        &self,
        tool: &str,
        hash: &str,
        reason: &str,
        params: &Value,
        assessment: &Assessment,
        ctx: &CallContext,
    ) -> Result<()> {
        self.metrics
            .resolutions
            .get_or_create(&crate::metrics::KindLabels { kind: "refused" })
            .inc();
        let secrets = names(params);
        tracing::warn!(tool, ?secrets, "SECRET_REF refused: possible exfiltration.");
        self.store.audit(
            "secret.refused",
            &json!({ "tool": tool, "action_hash": hash, "reason": reason, "secrets": secrets,
                     "hosts": assessment.hosts, "ctx": ctx.audit_fields() }),
        )?;
        Ok(())
    }

    /// Resolves secrets for an allowed call and returns the explicit parameters to run.
    /// `judged` is false when the outcome was remembered, so `judge`'s secret precheck did not
    /// run for this call and runs here.
    fn finish_allowed(
        &self,
        tool: &str,
        call: &ToolCall,
        assessment: &Assessment,
        judged: bool,
        ctx: &CallContext,
    ) -> std::result::Result<(Value, Resolved), String> {
        let refs = secrets::refs_in(&call.params);
        if refs.is_empty() || tool == "tool_call" {
            return Ok((call.params.clone(), Vec::new()));
        }
        let vault = self
            .vault
            .as_ref()
            .ok_or_else(|| "this Clawgate has no vault".to_owned())?;
        if !judged {
            secrets::precheck(tool, assessment, &refs, Some(vault))?;
            self.check_captured(&refs, &ctx.agent)?;
        }
        let applied = secrets::apply(tool, &call.params, &assessment.hosts, vault)?;
        for (name, var) in &applied.resolved {
            self.metrics
                .resolutions
                .get_or_create(&crate::metrics::KindLabels { kind: "resolved" })
                .inc();
            if let Err(e) = self.store.audit(
                "secret.resolved",
                &json!({ "secret": name, "env": var, "tool": tool, "hosts": assessment.hosts,
                         "ctx": ctx.audit_fields() }),
            ) {
                return Err(format!("the audit log failed ({e})"));
            }
        }
        Ok((applied.params, applied.resolved))
    }

    /// Blocks a call because the egress lock is not in force: counted, audited (with the
    /// redacted summary, like every decision), not remembered (it passes once the lock is back).
    fn block_unlocked(
        &self,
        hook: Hook,
        tool: &str,
        call: &ToolCall,
        snap: &Snapshot,
        ctx: &CallContext,
        reason: String,
    ) -> Result<Reply> {
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                hook: hook.as_str(),
                class: "unclassified",
                outcome: "egress_unlocked",
            })
            .inc();
        let redacted = summary::redact_value(&snap.redactor, &call.params);
        self.store.audit(
            "decision",
            &json!({ "hook": hook.as_str(), "tool": tool, "class": null, "rule": "egress_lock",
                     "outcome": "egress_unlocked", "action_hash": summary::action_hash(tool, &redacted),
                     "summary": summary::summarize(tool, &redacted), "approval": null,
                     "secrets": [], "ctx": ctx.audit_fields() }),
        )?;
        tracing::warn!(hook = hook.as_str(), tool, agent = %ctx.agent, tool_call_id = ?ctx.tool_call_id, "Blocked: the egress lock is not in force.");
        Ok(Reply::Block(reason))
    }

    #[allow(clippy::too_many_arguments)]
    fn record_decision(
        &self,
        hook: Hook,
        tool: &str,
        class: Class,
        outcome: &'static str,
        decision: &clawgate_policies::Decision,
        ctx: &CallContext,
        hash: &str,
        redacted: &Value,
        approval: Option<&str>,
        resolved: &[(String, Option<String>)],
    ) -> Result<()> {
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                hook: hook.as_str(),
                class: class.as_str(),
                outcome,
            })
            .inc();
        let secrets: Vec<&str> = resolved.iter().map(|(n, _)| n.as_str()).collect();
        self.store.audit(
            "decision",
            &json!({ "hook": hook.as_str(), "tool": tool, "class": class, "rule": decision.rule,
                     "outcome": outcome, "action_hash": hash,
                     "summary": summary::summarize(tool, redacted), "approval": approval,
                     "secrets": secrets, "ctx": ctx.audit_fields() }),
        )?;
        tracing::info!(hook = hook.as_str(), tool, class = class.as_str(), rule = %decision.rule, outcome, agent = %ctx.agent, tool_call_id = ?ctx.tool_call_id, "Decision.");
        Ok(())
    }

    /// Waits up to the configured time for an approval to leave `pending`.
    async fn wait_for(&self, id: &str) -> Result<Status> {
        let notify = self.waiter(id)?;
        let deadline = tokio::time::Instant::now() + self.timing()?.approval_wait;
        let status = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let status = self.store.get(id)?.map_or(Status::Expired, |a| a.status);
            if status != Status::Pending || self.shutting_down.load(Ordering::Acquire) {
                break status;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break Status::Pending;
            }
        };
        // Forget the waiter once nobody else waits on it (the map holds one reference, we hold
        // the other).
        let mut w = self.waiters.lock().map_err(|_| Error::Poisoned)?;
        if Arc::strong_count(&notify) <= 2 {
            w.remove(id);
        }
        Ok(status)
    }

    fn waiter(&self, id: &str) -> Result<Arc<Notify>> {
        let mut w = self.waiters.lock().map_err(|_| Error::Poisoned)?;
        Ok(w.entry(id.to_owned()).or_default().clone())
    }

    fn wake_all(&self) -> Result<()> {
        let w = self.waiters.lock().map_err(|_| Error::Poisoned)?;
        for n in w.values() {
            n.notify_waiters();
        }
        Ok(())
    }

    fn recent(&self) -> Result<std::sync::MutexGuard<'_, Recent>> {
        self.recent.lock().map_err(|_| Error::Poisoned)
    }

    fn refresh_pending_gauge(&self) {
        if let Ok(n) = self.store.pending_count() {
            self.metrics.pending_approvals.set(n);
        }
    }

    /// The owner's answer (admin socket or approval page). Wakes the held call at once.
    pub fn answer(&self, id: &str, approve: bool, grant: GrantKind, by: &str) -> Result<Approval> {
        let expiry = self.timing()?.approval_expiry;
        let a = self.store.decide(id, approve, grant, by, expiry)?;
        let waited = (a.decided_ms.unwrap_or(a.created_ms) - a.created_ms).max(0);
        #[allow(clippy::cast_precision_loss)] // milliseconds fit f64 exactly for 285,000 years
        self.metrics
            .approval_latency
            .observe(waited as f64 / 1000.0);
        tracing::info!(approval = %a.id, status = a.status.as_str(), by, "Approval answered.");
        if let Some(n) = self.waiters.lock().map_err(|_| Error::Poisoned)?.remove(id) {
            n.notify_waiters();
        }
        self.refresh_pending_gauge();
        Ok(a)
    }

    /// Stops holding calls: every held call answers now (the request stays pending and a retry
    /// after restart finds it).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let _ = self.wake_all();
    }

    /// Expires old requests (called periodically).
    pub fn sweep(&self) -> Result<()> {
        let version = self.snapshot()?.version.clone();
        if self.store.expire(&version)? > 0 {
            self.wake_all()?;
        }
        self.refresh_pending_gauge();
        Ok(())
    }

    /// `after_tool_call`: audits the executed call and checks it is what was allowed.
    pub fn after_tool_call(&self, body: &Value) -> Result<()> {
        let call = parse_call(body)?;
        let ctx = CallContext::from_body(body);
        let snap = self.fresh_snapshot()?;
        let tool = canonical_tool(&call.tool).to_owned();
        let event = body.get("event").unwrap_or(&Value::Null);
        let executed = executed_hash(&snap.redactor, &tool, &call.params);
        let expected = match &ctx.tool_call_id {
            Some(id) => self.recent()?.expected(id),
            None => None,
        };
        let matches = expected.as_ref().map(|e| *e == executed);
        if matches == Some(false) {
            self.metrics.executed_mismatch.inc();
            tracing::warn!(tool, tool_call_id = ?ctx.tool_call_id, "Executed parameters differ from what Clawgate allowed.");
        }
        let params = strip_injected_env(&call.params);
        let details = event.get("result").and_then(|r| r.get("details"));
        let error = event
            .get("error")
            .and_then(Value::as_str)
            .map(|e| summary::escape_invisible(&snap.redactor.redact(e), 500));
        self.store.audit(
            "executed",
            &json!({ "tool": tool, "summary": summary::summarize(&tool, &summary::redact_value(&snap.redactor, &params)),
                     "executed_hash": executed, "matches_decision": matches,
                     "status": details.and_then(|d| d.get("status")),
                     "exit_code": details.and_then(|d| d.get("exitCode")),
                     "duration_ms": event.get("durationMs"), "error": error,
                     "ctx": ctx.audit_fields() }),
        )?;
        Ok(())
    }

    /// `tool_result`: the result with every secret redacted, before the model sees it.
    pub fn tool_result(&self, body: &Value) -> Result<Value> {
        let event = body.get("event").filter(|e| e.is_object()).ok_or_else(|| {
            Error::BadRequest(
                "body must be {\"event\": {...}, \"ctx\": {...}} with event.result".into(),
            )
        })?;
        let result = event
            .get("result")
            .ok_or_else(|| Error::BadRequest("event.result is missing".into()))?;
        let snap = self.fresh_snapshot()?;
        let ctx = CallContext::from_body(body);
        let redacted = match self.capture_for(&ctx.agent, "tool_result") {
            Some(capture) => {
                summary::redact_value_with(result, &|s| snap.redactor.redact_capturing(s, &capture))
            }
            None => summary::redact_value(&snap.redactor, result),
        };
        if redacted != *result {
            self.metrics.redactions.inc();
            self.store.audit(
                "tool_result.redacted",
                &json!({ "tool": event.get("toolName"), "ctx": ctx.audit_fields() }),
            )?;
        }
        Ok(json!({ "result": redacted }))
    }

    /// `llm_output`: records the usage OpenClaw reports, for cross-checking the proxy's meter.
    pub fn llm_output(&self, body: &Value) -> Result<()> {
        let event = body.get("event").filter(|e| e.is_object()).ok_or_else(|| {
            Error::BadRequest("body must be {\"event\": {...}, \"ctx\": {...}}".into())
        })?;
        let ctx = CallContext::from_body(body);
        let s = |k: &str| event.get(k).and_then(Value::as_str);
        self.store.audit(
            "llm_output",
            &json!({ "provider": s("provider"), "model": s("model"), "resolved_ref": s("resolvedRef"),
                     "usage": event.get("usage"), "ctx": ctx.audit_fields() }),
        )?;
        Ok(())
    }

    /// Why a call is held: the owner was asked, and how (the Hub may be unreachable).
    fn asked_reason(&self, approval: &Approval, decision: &clawgate_policies::Decision) -> String {
        let base = asked_reason(approval, decision);
        match &self.hub {
            Some(h) if !h.reachable() => format!(
                "{base} Note: the Hub that relays approvals to the owner's phone is unreachable \
                 right now; the request is queued and reaches the owner when it is back. Nothing \
                 that needs approval runs meanwhile."
            ),
            _ => base,
        }
    }

    /// `health`.
    pub fn health(&self) -> Result<Value> {
        let snap = self.snapshot()?;
        let lock = self.egress_lock.as_ref().map(|l| l.status());
        let status = match &lock {
            Some(crate::lock::LockStatus::Held) | None => "ok",
            Some(_) => "critical",
        };
        Ok(json!({
            "status": status,
            "egressLock": lock.as_ref().map_or("not_configured", crate::lock::LockStatus::as_str),
            "version": env!("CARGO_PKG_VERSION"),
            "policyVersion": snap.version,
            "tier": snap.tier,
            "pendingApprovals": self.store.pending_count()?,
            "vault": self.vault.is_some(),
            "bundle": snap.bundle.as_ref().map(|b| json!({
                "version": b.version, "manifestSha256": b.manifest_sha256,
                "expiresAt": b.expires_at, "expired": b.expired })),
            "hub": self.hub.as_ref().map_or_else(
                || json!({ "enrolled": false }),
                |h| h.health_json()),
        }))
    }
}

#[derive(Debug)]
enum Outcome {
    Allowed {
        via: &'static str,
        /// The approval whose grant allowed it.
        approval: Option<String>,
    },
    Blocked {
        reason: String,
        outcome: &'static str,
        approval: Option<String>,
    },
}

fn denied_reason(approval: &Approval, decision: &clawgate_policies::Decision) -> String {
    format!(
        "Clawgate: the owner denied this {} action (approval {}, rule {}). It did not run. Do not \
         retry it; tell the user it was denied or choose another approach.",
        decision.class, approval.id, decision.rule
    )
}

fn asked_reason(approval: &Approval, decision: &clawgate_policies::Decision) -> String {
    format!(
        "Clawgate: this {} action needs the owner's approval ({}: {}). The owner has been asked \
         (approval {}). It has not run. Retry exactly the same action after the owner approves and \
         it will pass; do not work around it.",
        decision.class, decision.rule, decision.reason, approval.id
    )
}

fn parse_call(body: &Value) -> Result<ToolCall> {
    if !body.get("event").is_some_and(Value::is_object) {
        return Err(Error::BadRequest(
            "body must be {\"event\": {...}, \"ctx\": {...}}".into(),
        ));
    }
    if body.get("ctx").is_some_and(|c| !c.is_object()) {
        return Err(Error::BadRequest("ctx must be an object".into()));
    }
    ToolCall::from_hook_event(body).map_err(|e| Error::BadRequest(e.to_string()))
}

fn names(params: &Value) -> Vec<String> {
    secrets::refs_in(params)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Executed parameters minus the secret variables Clawgate injected, redacted and hashed: what
/// `after_tool_call` reports must hash the same as what was allowed.
fn executed_hash(redactor: &Redactor, tool: &str, params: &Value) -> String {
    summary::action_hash(
        tool,
        &summary::redact_value(redactor, &strip_injected_env(params)),
    )
}

/// SHA-256 of the exact canonical params (values included). Kept in memory only.
fn exact_hash(params: &Value) -> String {
    summary::action_hash("returned", params)
}

/// For Tool Search's `tool_call {id, args}`: the wrapped tool and its args; otherwise the call.
fn wrapped_call<'a>(tool: &'a str, params: &'a Value) -> (&'a str, &'a Value) {
    if tool == "tool_call"
        && let (Some(id), Some(args)) = (
            params.get("id").and_then(Value::as_str),
            params.get("args").filter(|a| a.is_object()),
        )
    {
        return (canonical_tool(id), args);
    }
    (tool, params)
}

/// The outer call id of a Tool Search inner call (`tool_search_code:<outer>:<tool>:<n>`).
fn outer_call_id(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("tool_search_code:")?;
    let (rest, n) = rest.rsplit_once(':')?;
    let (outer, _tool) = rest.rsplit_once(':')?;
    (n.bytes().all(|b| b.is_ascii_digit()) && !outer.is_empty()).then_some(outer)
}

fn reserved_env(params: &Value) -> bool {
    params
        .get("env")
        .and_then(Value::as_object)
        .is_some_and(|env| env.keys().any(|k| k.starts_with(secrets::ENV_PREFIX)))
}

fn strip_injected_env(params: &Value) -> Value {
    let mut p = params.clone();
    if let Some(env) = p.get_mut("env").and_then(Value::as_object_mut) {
        for (k, v) in env.iter_mut() {
            if k.starts_with(secrets::ENV_PREFIX) {
                *v = Value::String("(secret)".into());
            }
        }
    }
    p
}

/// The vault's secret names now.
fn vault_names(vault: &Vault) -> Result<Vec<clawgate_protocol::SecretName>> {
    Ok(vault
        .list()?
        .into_iter()
        .filter_map(|r| clawgate_protocol::SecretName::new(&r.name).ok())
        .collect())
}

fn build_redactor(vault: Option<&Vault>, key: [u8; 32]) -> Result<Redactor> {
    let mut builder = Redactor::builder().placeholder_key(key);
    if let Some(vault) = vault {
        builder = builder.vault_values(vault.values_for_redaction()?);
    }
    builder.build().map_err(|e| Error::Redact(e.to_string()))
}

fn build_snapshot(
    policy: Policy,
    tier: Tier,
    version: String,
    vault: Option<&Vault>,
    key: [u8; 32],
) -> Result<Snapshot> {
    let vault_generation = vault.map(Vault::generation).transpose()?;
    Ok(Snapshot {
        redactor: Arc::new(build_redactor(vault, key)?),
        policy,
        tier,
        version,
        vault_generation,
        bundle: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembering_the_same_ids_again_and_again_stays_bounded() {
        let mut r = Recent::default();
        for i in 0..(3 * REMEMBER_MAX) {
            let id = format!("call_{}", i % 100);
            r.put(
                &id,
                "h",
                Remembered::Allowed { via: "allow" },
                Hook::TrustedPolicy,
            );
        }
        assert_eq!(r.map.len(), 100);
        assert!(r.order.len() <= 2 * REMEMBER_MAX, "{}", r.order.len());
    }

    #[test]
    fn an_allow_is_lent_once_and_only_to_the_other_gate() {
        let mut r = Recent::default();
        r.put(
            "c",
            "h",
            Remembered::Allowed { via: "approved" },
            Hook::TrustedPolicy,
        );
        assert!(r.take("c", "h", Some(Hook::TrustedPolicy)).is_none());
        assert!(r.take("c", "other", Some(Hook::BeforeToolCall)).is_none());
        assert!(r.take("c", "h", Some(Hook::BeforeToolCall)).is_some());
        assert!(r.take("c", "h", Some(Hook::BeforeToolCall)).is_none());
        r.put(
            "b",
            "h",
            Remembered::Blocked("no".into()),
            Hook::TrustedPolicy,
        );
        for _ in 0..3 {
            assert!(r.take("b", "h", Some(Hook::TrustedPolicy)).is_some());
        }
    }

    #[test]
    fn tool_search_inner_ids_name_their_outer_call() {
        assert_eq!(
            outer_call_id("tool_search_code:toolu_5c41:web_fetch:1"),
            Some("toolu_5c41")
        );
        assert_eq!(
            outer_call_id("tool_search_code:a:b:web_fetch:12"),
            Some("a:b")
        );
        assert_eq!(outer_call_id("tool_search_code::web_fetch:1"), None);
        assert_eq!(outer_call_id("tool_search_code:x:web_fetch:one"), None);
        assert_eq!(outer_call_id("call_1"), None);
    }
}
