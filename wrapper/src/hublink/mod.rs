//! The Hub link of `clawgate serve`, run when the appliance is enrolled (`hub-identity.json` in
//! the state directory). Pure protocol logic (signature checks, the outbox, backoff, the health
//! score) is `clawgate_hub`'s; this module owns order, time and the effects on the daemon.
//!
//! Three tasks share one pinned [`HubClient`] and one circuit breaker:
//!
//! * **events**: long-polls `GET /v1/events` from the cursor persisted in `hub.db` and handles
//!   each event, then persists the new cursor. Approval decisions are checked with
//!   `clawgate_hub::decision::check` and applied to `clawgate.db` first, then marked consumed in
//!   `hub.db` (a crash in between re-delivers the decision as `not_pending`, never twice);
//!   rejected ones are audited with their code. Pushed bundles are downloaded, checked against
//!   the announced SHA-256, verified against `policy.trust_file` and the persisted high-water
//!   mark, stored, applied through the reload path (calls in flight keep their snapshot) and
//!   reported. Commands are checked, recorded in the command ledger before they run (at most
//!   once per id), run, audited and reported. Keyset statements replace the pinned keys.
//! * **sender**: drains the outbox in order (approval requests, bundle reports, command
//!   results), stages the egress proxy's usage buckets (absolute totals, a new revision per
//!   change, closed once the hour is over) and ships them, then ships the audit chain from the
//!   acknowledged cursor in batches. Woken at once by a new approval request.
//! * **heartbeat**: every Hub-chosen interval with ±10 % jitter (the first one after a random
//!   share of it, so a fleet restart does not stampede): versions, hashes, drift facts and the
//!   health score.
//!
//! Failures back off with full jitter ([`Backoff`]); consecutive failures open the breaker. While
//! the Hub is unreachable nothing that needs approval is allowed: requests stay pending locally
//! and in the outbox, and the agent's block reason says the Hub is unreachable.

pub mod bundles;
pub mod enroll;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use clawgate_hub::backoff::{Backoff, CircuitBreaker, CircuitState, OsRng, Rng};
use clawgate_hub::client::{HubClient, Timeouts};
use clawgate_hub::command::{self, CommandName, CommandRejection};
use clawgate_hub::decision::{self, LocalApproval, LocalStatus};
use clawgate_hub::health::{BundleFact, HealthFacts};
use clawgate_hub::identity::Identity;
use clawgate_hub::outbox::{Limits, Outbox, OutboxItem, QueueKind, UsageTotals};
use clawgate_hub::protocol::{
    ApprovalClass, ApprovalRequest, AuditBatch, AuditRecord, BundleStatus, BundleStatusReport,
    CommandResult, CommandStatus, DecisionKind, EgressLock as WireLock, Event, Health, Heartbeat,
    KnownEvent, PluginState, SignedCommand, SignedDecision, SignedKeyset, UsageBatch,
};
use clawgate_hub::{ErrorClass, signing};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::lock::LockStatus;
use crate::metrics::{HubLabels, KindLabels, RejectLabels};
use crate::store::{Approval, GrantKind, Status};
use bundles::{BundleStore, Rejected};

/// `hub.db` in the state directory.
pub const HUB_DB: &str = "hub.db";
/// The bundle directory in the state directory.
pub(crate) const BUNDLE_DIR: &str = "bundle";
/// Long-poll wait asked of the Hub.
const POLL_WAIT: Duration = Duration::from_secs(25);
/// How often the sender runs when nothing wakes it.
const SEND_EVERY: Duration = Duration::from_secs(10);
/// Entries sent per outbox round.
const BATCH: usize = 100;
/// Usage buckets per request (the protocol's maximum is 500).
const USAGE_BATCH: usize = 500;
/// Audit records per request (the protocol's maximum is 1,000).
const AUDIT_BATCH: usize = 500;
/// An hour's bucket is closed this long after the hour ended (late records of requests that
/// were in flight at the turn of the hour).
const CLOSE_GRACE_SECS: i64 = 300;
/// Usage hours re-read from the egress store each round.
const USAGE_LOOKBACK_SECS: i64 = 48 * 3600;
/// Usage hours read by the first round after a start (a daemon stopped for up to a week still
/// closes the buckets it left open).
const USAGE_FIRST_LOOKBACK_SECS: i64 = 7 * 24 * 3600;
/// Closed, acknowledged buckets are forgotten this long after their hour (longer than the first
/// look-back, so a restart never stages a forgotten bucket again).
const USAGE_PRUNE_SECS: i64 = 8 * 24 * 3600;
/// The bearer credential is rotated once it is this old (`POST /v1/credential/rotate`).
pub const CREDENTIAL_MAX_AGE_SECS: i64 = 30 * 24 * 3600;
/// Consecutive failures that open the breaker.
const BREAKER_THRESHOLD: u32 = 5;
/// Longest wait between two attempts (backoff cap, breaker's longest cool-down): a decision
/// the owner made during an outage takes effect at most this long after the Hub is back. A
/// `Retry-After` from the Hub may still ask for longer (capped at an hour by `clawgate_hub`).
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the link asks of the serve loop (which owns the reload path and the process).
#[derive(Debug)]
pub enum Control {
    /// Re-read configuration and policy (the SIGHUP path); answers with the outcome.
    Reload(oneshot::Sender<std::result::Result<(), String>>),
    /// Stop gracefully so systemd restarts the daemon.
    Restart,
}

/// Running totals the health score turns into last-hour rates.
#[derive(Debug, Clone, Copy, Default)]
struct RuntimeCounts {
    hook_calls: u64,
    hook_errors: u64,
    /// Egress proxy requests answered, and of those failed on Clawgate's side.
    proxy_requests: u64,
    proxy_errors: u64,
}

#[derive(Debug)]
struct LinkStatus {
    reachable: bool,
    last_success: Option<Instant>,
    last_poll: Option<Instant>,
    failures: VecDeque<Instant>,
    skew: Option<i64>,
    breaker: CircuitBreaker,
    last_error: Option<String>,
    heartbeat_secs: u64,
    health: Option<Health>,
    /// Counter samples for the last hour's rates.
    samples: VecDeque<(Instant, RuntimeCounts)>,
}

/// The part of the Hub link the engine sees: the outbox (approval requests go into it in the
/// transaction that creates them) and whether the Hub is reachable.
#[derive(Debug)]
pub struct HubState {
    identity: RwLock<Identity>,
    client: RwLock<Arc<HubClient>>,
    outbox: Outbox,
    bundles: BundleStore,
    state_dir: PathBuf,
    wake: Notify,
    status: Mutex<LinkStatus>,
    control: mpsc::Sender<Control>,
    config_sha256: String,
    usage_db: PathBuf,
}

impl HubState {
    /// Opens the link's state for an enrolled appliance: `hub.db`, the bundle store, a client
    /// pinned to the identity's keys. Nothing is sent yet.
    pub fn open(
        identity: Identity,
        state_dir: &Path,
        trust_file: Option<&Path>,
        usage_db: &Path,
        config_sha256: String,
        control: mpsc::Sender<Control>,
    ) -> Result<HubState> {
        let outbox = Outbox::open(&state_dir.join(HUB_DB), Limits::default())?;
        let bundles =
            BundleStore::open(&state_dir.join(BUNDLE_DIR), trust_file, &identity.tenant_id)?;
        let client = identity.client(Timeouts::default())?;
        let heartbeat_secs = u64::from(identity.heartbeat_seconds).max(5);
        Ok(HubState {
            identity: RwLock::new(identity),
            client: RwLock::new(Arc::new(client)),
            outbox,
            bundles,
            state_dir: state_dir.to_owned(),
            wake: Notify::new(),
            status: Mutex::new(LinkStatus {
                reachable: false,
                last_success: None,
                last_poll: None,
                failures: VecDeque::new(),
                skew: None,
                breaker: CircuitBreaker::new(
                    BREAKER_THRESHOLD,
                    Duration::from_secs(15),
                    MAX_RETRY_WAIT,
                ),
                last_error: None,
                heartbeat_secs,
                health: None,
                samples: VecDeque::new(),
            }),
            control,
            config_sha256,
            usage_db: usage_db.to_owned(),
        })
    }

    /// The bundle store.
    pub fn bundles(&self) -> &BundleStore {
        &self.bundles
    }

    /// The outbox (`hub.db`).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Tenant and appliance ids.
    pub fn ids(&self) -> Result<(String, String)> {
        let id = self.identity.read().map_err(|_| Error::Poisoned)?;
        Ok((id.tenant_id.clone(), id.appliance_id.clone()))
    }

    /// Queues a new approval request for the Hub (called inside the transaction that creates
    /// it). Only the redacted summary and the action hash leave the box.
    pub fn queue_approval(&self, a: &Approval) -> Result<()> {
        let class = match a.class.as_str() {
            "yellow" => ApprovalClass::Yellow,
            "yellow_external" => ApprovalClass::YellowExternal,
            "red" => ApprovalClass::Red,
            other => {
                return Err(Error::Config(format!(
                    "class `{other}` is never asked: refusing to send it for approval"
                )));
            }
        };
        let request = ApprovalRequest {
            approval_id: a.id.clone(),
            action_hash: a.action_hash.clone(),
            class,
            summary: a.summary.clone(),
            agent: a.agent.clone(),
            tool: a.tool.clone(),
            created_at: a.created_ms / 1000,
            expires_at: a.expires_ms / 1000,
        };
        self.outbox
            .push(&OutboxItem::Approval { request }, unix_now())?;
        Ok(())
    }

    /// Wakes the sender (something was queued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The last exchange with the Hub succeeded and the breaker is closed.
    pub fn reachable(&self) -> bool {
        self.status
            .lock()
            .map(|s| s.reachable && s.breaker.state() == CircuitState::Closed)
            .unwrap_or(false)
    }

    /// The link's state for `/v1/health` (no credential, no secret).
    pub fn health_json(&self) -> Value {
        let (tenant, appliance, hub) = self.identity.read().map_or_else(
            |_| (String::new(), String::new(), String::new()),
            |i| (i.tenant_id.clone(), i.appliance_id.clone(), i.hub.clone()),
        );
        let depth = |k| self.outbox.depth(k).ok();
        let Ok(s) = self.status.lock() else {
            return json!({ "enrolled": true, "error": "poisoned" });
        };
        let age = |t: Option<Instant>| t.map(|t| t.elapsed().as_secs());
        json!({
            "enrolled": true,
            "hub": hub,
            "tenantId": tenant,
            "applianceId": appliance,
            "reachable": s.reachable,
            "circuit": circuit_name(s.breaker.state()),
            "lastSuccessAgeSecs": age(s.last_success),
            "lastEventPollAgeSecs": age(s.last_poll),
            "failedRequests1h": s.failures.len(),
            "clockSkewSecs": s.skew,
            "lastError": s.last_error,
            "health": s.health,
            "outbox": {
                "approval": depth(QueueKind::Approval),
                "bundleStatus": depth(QueueKind::BundleStatus),
                "commandResult": depth(QueueKind::CommandResult),
                "usageBuckets": self.outbox.usage_pending().ok(),
                "auditSeq": self.outbox.audit_cursor().ok().map(|c| c.seq),
            },
        })
    }

    fn client(&self) -> Result<Arc<HubClient>> {
        Ok(self.client.read().map_err(|_| Error::Poisoned)?.clone())
    }

    /// `None`: a request may go now; `Some(wait)`: the breaker is open for `wait`.
    fn permit(&self) -> Option<Duration> {
        let mut s = self.status.lock().ok()?;
        let now = Instant::now();
        if s.breaker.try_acquire(now) {
            None
        } else {
            Some(s.breaker.retry_in(now).max(Duration::from_secs(1)))
        }
    }
}

fn circuit_name(c: CircuitState) -> &'static str {
    match c {
        CircuitState::Closed => "closed",
        CircuitState::Open => "open",
        CircuitState::HalfOpen => "half_open",
    }
}

/// The task side of the link.
#[derive(Debug)]
pub struct HubLink {
    engine: Arc<Engine>,
    state: Arc<HubState>,
    /// A bundle announced but not yet fetched for a transient reason: retried.
    pending_bundle: Mutex<Option<(u64, String)>>,
}

impl HubLink {
    /// The link for `engine`, whose hub state is `state`.
    pub fn new(engine: Arc<Engine>, state: Arc<HubState>) -> Arc<HubLink> {
        engine.metrics.hub_connected.set(0);
        Arc::new(HubLink {
            engine,
            state,
            pending_bundle: Mutex::new(None),
        })
    }

    /// Runs the three tasks until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        if let Err(e) = self.on_start() {
            tracing::error!(error = %e, "Hub link start-up bookkeeping failed.");
        }
        let events = tokio::spawn(self.clone().events_loop(stop.clone()));
        let sender = tokio::spawn(self.clone().sender_loop(stop.clone()));
        let heartbeat = tokio::spawn(self.clone().heartbeat_loop(stop));
        for task in [events, sender, heartbeat] {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "A Hub link task ended abnormally.");
            }
        }
    }

    /// At start: finish commands a previous run began (a `restart` succeeded by getting here),
    /// and queue every pending approval request again (idempotent on the Hub), in case the
    /// daemon died between creating one and the sender running.
    fn on_start(&self) -> Result<()> {
        let (tenant, appliance) = self.state.ids()?;
        self.audit(
            "hub.link_started",
            &json!({ "tenant_id": tenant, "appliance_id": appliance }),
        );
        let now = unix_now();
        for c in self.state.outbox.unfinished_commands()? {
            let result = if c.name == "restart" {
                CommandResult {
                    status: CommandStatus::Succeeded,
                    detail: "the daemon restarted".into(),
                }
            } else {
                CommandResult {
                    status: CommandStatus::Failed,
                    detail: "interrupted: the daemon stopped while running it".into(),
                }
            };
            self.audit(
                "hub.command_finished",
                &json!({ "command_id": c.command_id, "name": c.name, "status": result.status,
                         "detail": result.detail }),
            );
            self.state
                .outbox
                .finish_command(&c.command_id, &c.name, &result, now)?;
        }
        for a in self.engine.store().pending()? {
            if let Err(e) = self.state.queue_approval(&a) {
                tracing::error!(approval = %a.id, error = %e, "Could not queue a pending approval for the Hub.");
            }
        }
        self.update_gauges();
        Ok(())
    }

    fn audit(&self, kind: &str, record: &Value) {
        if let Err(e) = self.engine.store().audit(kind, record) {
            tracing::error!(kind, error = %e, "Writing a Hub audit record failed.");
        }
    }

    fn reject_metric(&self, what: &'static str, code: &'static str) {
        self.engine
            .metrics
            .hub_rejections
            .get_or_create(&RejectLabels { what, code })
            .inc();
    }

    /// Records the outcome of one Hub request (status, breaker, metrics).
    fn outcome<T>(
        &self,
        operation: &'static str,
        r: std::result::Result<T, clawgate_hub::Error>,
    ) -> std::result::Result<T, clawgate_hub::Error> {
        let label = match &r {
            Ok(_) => "ok",
            Err(e) => match e.class() {
                ErrorClass::Retryable => "retryable",
                ErrorClass::Fatal => "fatal",
                ErrorClass::Blocked => "blocked",
            },
        };
        self.engine
            .metrics
            .hub_requests
            .get_or_create(&HubLabels {
                operation,
                outcome: label,
            })
            .inc();
        if let Ok(mut s) = self.state.status.lock() {
            let now = Instant::now();
            match &r {
                // A fatal answer is still an answer: the Hub is reachable.
                Ok(_) => {
                    s.reachable = true;
                    s.last_success = Some(now);
                    s.breaker.on_success();
                }
                Err(e) if e.class() == ErrorClass::Fatal => {
                    s.reachable = true;
                    s.last_success = Some(now);
                    s.breaker.on_success();
                    s.last_error = Some(format!("{operation}: {e}"));
                }
                Err(e) => {
                    s.reachable = false;
                    s.breaker.on_failure(now);
                    s.failures.push_back(now);
                    s.last_error = Some(format!("{operation}: {e}"));
                    tracing::warn!(operation, error = %e, "Hub request failed.");
                }
            }
            while s
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(3600))
            {
                s.failures.pop_front();
            }
            self.engine
                .metrics
                .hub_connected
                .set(i64::from(s.reachable));
        }
        r
    }

    fn update_gauges(&self) {
        let m = &self.engine.metrics;
        for kind in [
            QueueKind::Approval,
            QueueKind::BundleStatus,
            QueueKind::CommandResult,
        ] {
            if let Ok(n) = self.state.outbox.depth(kind) {
                m.hub_outbox_depth
                    .get_or_create(&KindLabels {
                        kind: kind.as_str(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        if let Ok(n) = self.state.outbox.usage_pending() {
            m.hub_outbox_depth
                .get_or_create(&KindLabels { kind: "usage" })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Ok(snap) = self.engine.snapshot() {
            m.hub_bundle_version.set(
                snap.bundle
                    .as_ref()
                    .map_or(0, |b| i64::try_from(b.version).unwrap_or(i64::MAX)),
            );
        }
    }

    // ------------------------------------------------------------------ events

    async fn events_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_secs(1), MAX_RETRY_WAIT);
        let mut rng = OsRng;
        loop {
            if *stop.borrow() {
                break;
            }
            if let Some(wait) = self.state.permit() {
                if sleep_or_stop(wait, &mut stop).await {
                    break;
                }
                continue;
            }
            let delay = match self.poll_once(&mut stop).await {
                Ok(true) => break,
                Ok(false) => {
                    backoff.reset();
                    Duration::ZERO
                }
                Err(PollError::Hub(e)) => backoff.next_delay(&mut rng, e.retry_after()),
                Err(PollError::Local(e)) => {
                    tracing::error!(error = %e, "Handling Hub events failed locally.");
                    backoff.next_delay(&mut rng, None)
                }
            };
            if !delay.is_zero() && sleep_or_stop(delay, &mut stop).await {
                break;
            }
        }
    }

    /// One poll and its events. `Ok(true)`: stopped.
    async fn poll_once(
        &self,
        stop: &mut watch::Receiver<bool>,
    ) -> std::result::Result<bool, PollError> {
        let cursor = self.state.outbox.event_cursor().map_err(Error::from)?;
        let client = self.state.client()?;
        let answer = tokio::select! {
            _ = stop.changed() => return Ok(true),
            r = client.poll_events(cursor.as_deref(), POLL_WAIT) => r,
        };
        let answer = match self.outcome("events", answer) {
            Ok(a) => a,
            Err(clawgate_hub::Error::Http { status: 410, .. }) => {
                tracing::warn!("The Hub's event cursor expired: resuming from its current state.");
                self.audit("hub.cursor_expired", &json!({}));
                self.state
                    .outbox
                    .set_event_cursor(None)
                    .map_err(Error::from)?;
                return Ok(false);
            }
            Err(e) => return Err(PollError::Hub(e)),
        };
        if let Ok(mut s) = self.state.status.lock() {
            s.last_poll = Some(Instant::now());
        }
        for event in answer.events {
            self.handle_event(event).await;
        }
        self.state
            .outbox
            .set_event_cursor(Some(&answer.cursor))
            .map_err(Error::from)?;
        self.retry_pending_bundle().await;
        self.update_gauges();
        Ok(false)
    }

    async fn handle_event(&self, event: Event) {
        match event {
            Event::Known(KnownEvent::ApprovalDecision { decision }) => {
                self.apply_decision(&decision);
            }
            Event::Known(KnownEvent::BundleAvailable { version, sha256 }) => {
                self.apply_bundle(version, &sha256).await;
            }
            Event::Known(KnownEvent::Command { command }) => self.run_command(&command).await,
            Event::Known(KnownEvent::Keyset { keyset }) => self.apply_keyset(&keyset),
            Event::Unrecognised { kind, .. } => {
                tracing::warn!(kind, "Ignored a Hub event of unknown type.");
                self.audit(
                    "hub.event_ignored",
                    &json!({ "type": kind, "why": "unknown type" }),
                );
            }
            Event::Malformed { kind, error, .. } => {
                tracing::warn!(kind, error, "Ignored a malformed Hub event.");
                self.audit(
                    "hub.event_ignored",
                    &json!({ "type": kind, "why": cut(&error, 300) }),
                );
            }
        }
    }

    /// Checks and applies one signed decision (see the module docs for the order).
    pub fn apply_decision(&self, signed: &SignedDecision) {
        let claimed = signing::escape(&signed.signed.approval_id);
        let result = self.check_decision(signed);
        match result {
            Ok(()) => {}
            Err(DecisionOutcome::Rejected(code, reason)) => {
                self.reject_metric("decision", code);
                tracing::warn!(approval = %claimed, code, "Rejected an approval decision from the Hub.");
                self.audit(
                    "hub.decision_rejected",
                    &json!({ "approval_id": cut(&claimed, 80), "code": code,
                             "reason": cut(&reason, 400),
                             "kid": cut(&signing::escape(&signed.signed.kid), 80) }),
                );
            }
            Err(DecisionOutcome::Local(e)) => {
                tracing::error!(approval = %claimed, error = %e, "Applying an approval decision failed.");
            }
        }
    }

    fn check_decision(&self, signed: &SignedDecision) -> std::result::Result<(), DecisionOutcome> {
        let id = &signed.signed.approval_id;
        let local = if signing::valid_id(id) {
            self.engine.store().get(id)?
        } else {
            None
        };
        let now = unix_now();
        let local_view = local.as_ref().map(|a| LocalApproval {
            approval_id: &a.id,
            action_hash: &a.action_hash,
            status: match a.status {
                Status::Pending => LocalStatus::Pending,
                Status::Approved | Status::Denied => LocalStatus::Decided,
                Status::Expired => LocalStatus::Expired,
            },
            expires_at: a.expires_ms / 1000,
        });
        let consumed = self
            .state
            .outbox
            .consumed_set_for(id)
            .map_err(Error::from)?;
        let identity = self
            .state
            .identity
            .read()
            .map_err(|_| Error::Poisoned)?
            .clone();
        let accepted = decision::check(
            signed,
            identity.keyset(),
            identity.me(),
            local_view,
            now,
            &consumed,
        )
        .map_err(|r| DecisionOutcome::Rejected(r.code(), r.to_string()))?;
        let (approve, grant) = match accepted.decision {
            DecisionKind::AllowOnce => (true, GrantKind::Once),
            DecisionKind::Allow24h => (true, GrantKind::Day),
            DecisionKind::Deny => (false, GrantKind::Once),
        };
        let by = format!("hub:{}", cut(&signing::escape(&accepted.decided_by), 64));
        // clawgate.db first (it refuses anything not pending), then hub.db.
        match self
            .engine
            .answer(&accepted.approval_id, approve, grant, &by)
        {
            Ok(_) => {}
            Err(Error::NotPending { status, .. }) => {
                return Err(DecisionOutcome::Rejected(
                    "not_pending",
                    format!("approval is {status} here, not pending"),
                ));
            }
            Err(e) => return Err(DecisionOutcome::Local(e)),
        }
        self.state
            .outbox
            .consume_decision(
                &accepted.approval_id,
                accepted.decision,
                accepted.expires_at,
                now,
            )
            .map_err(Error::from)?;
        Ok(())
    }

    fn apply_keyset(&self, statement: &SignedKeyset) {
        let result = (|| -> std::result::Result<u64, (&'static str, String)> {
            let mut identity = self
                .state
                .identity
                .write()
                .map_err(|_| ("local", "poisoned".to_owned()))?;
            let next = identity
                .with_keyset(statement)
                .map_err(|r| (r.code(), r.to_string()))?;
            next.store(&self.state.state_dir)
                .map_err(|e| ("local", e.to_string()))?;
            let client = next
                .client(Timeouts::default())
                .map_err(|e| ("local", e.to_string()))?;
            *self
                .state
                .client
                .write()
                .map_err(|_| ("local", "poisoned".to_owned()))? = Arc::new(client);
            let version = next.keyset().version();
            *identity = next;
            Ok(version)
        })();
        match result {
            Ok(version) => {
                self.audit("hub.keyset_applied", &json!({ "version": version }));
                tracing::info!(version, "Applied a new Hub keyset.");
            }
            Err((code, reason)) => {
                self.reject_metric("keyset", code);
                self.audit(
                    "hub.keyset_rejected",
                    &json!({ "code": code, "reason": cut(&reason, 400) }),
                );
            }
        }
    }

    // ------------------------------------------------------------------ bundles

    async fn retry_pending_bundle(&self) {
        let pending = self.pending_bundle.lock().ok().and_then(|mut p| p.take());
        if let Some((version, sha)) = pending {
            self.apply_bundle(version, &sha).await;
        }
    }

    /// Fetches, verifies, stores, applies and reports bundle `version` (see the module docs).
    pub async fn apply_bundle(&self, version: u64, sha256: &str) {
        let current = self.engine.snapshot().ok().and_then(|s| s.bundle.clone());
        if let Some(c) = &current
            && c.version == version
            && c.document_sha256.eq_ignore_ascii_case(sha256)
        {
            // Announced again (a replayed event, a reconcile): already in force.
            self.report_bundle(version, BundleStatus::Applied, None);
            return;
        }
        let high_water = match self.state.bundles.high_water() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "Reading the bundle high-water mark failed.");
                return;
            }
        };
        if version <= high_water {
            let reason = clawgate_policies::bundle::BundleError::NotNewer {
                found: version,
                high_water,
            }
            .to_string();
            self.bundle_rejected(version, "not_newer", &reason);
            return;
        }
        let client = match self.state.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "No Hub client.");
                return;
            }
        };
        let bytes = match self.outcome("bundles", client.get_bundle(version).await) {
            Ok(b) => b,
            Err(e) if e.class() == ErrorClass::Fatal => {
                self.bundle_rejected(version, "download_refused", &e.to_string());
                return;
            }
            Err(_) => {
                // Transient: retried after the next poll.
                if let Ok(mut p) = self.pending_bundle.lock() {
                    *p = Some((version, sha256.to_owned()));
                }
                return;
            }
        };
        let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if !actual.eq_ignore_ascii_case(sha256) {
            self.bundle_rejected(
                version,
                "sha256_mismatch",
                &format!(
                    "the document's SHA-256 is {actual}, the Hub announced {}",
                    cut(&signing::escape(sha256), 80)
                ),
            );
            return;
        }
        match self.state.bundles.accept(&bytes, version, unix_now()) {
            Ok(active) => {
                let info = active.info.clone();
                let applied = self.engine.current_timing().and_then(|timing| {
                    self.engine.reload_bundle(
                        active.policy,
                        active.tier,
                        info.policy_version(),
                        timing,
                        Some(info.clone()),
                    )
                });
                match applied {
                    Ok(()) => {
                        tracing::info!(version, "Applied a policy bundle from the Hub.");
                        self.audit(
                            "bundle.applied",
                            &json!({ "version": version, "manifest_sha256": info.manifest_sha256,
                                     "tier": active.tier, "expires_at": info.expires_at }),
                        );
                        self.report_bundle(version, BundleStatus::Applied, None);
                    }
                    Err(e) => {
                        self.bundle_rejected(
                            version,
                            "apply_failed",
                            &format!(
                                "verified and stored, but applying it failed ({e}); it takes \
                                 effect at the next start"
                            ),
                        );
                    }
                }
            }
            Err(Rejected::Bundle(e)) => {
                self.bundle_rejected(version, bundle_code(&e), &e.to_string());
            }
            Err(Rejected::Local(e)) => {
                self.bundle_rejected(version, "policy_invalid", &e.to_string());
            }
        }
        self.update_gauges();
    }

    fn bundle_rejected(&self, version: u64, code: &'static str, reason: &str) {
        tracing::warn!(
            version,
            code,
            reason,
            "Refused a policy bundle from the Hub; the last good one stays in force."
        );
        self.reject_metric("bundle", code);
        self.audit(
            "bundle.rejected",
            &json!({ "version": version, "code": code, "reason": cut(reason, 400) }),
        );
        self.report_bundle(
            version,
            BundleStatus::Rejected,
            Some(format!("{code}: {}", cut(reason, 400))),
        );
    }

    fn report_bundle(&self, version: u64, status: BundleStatus, reason: Option<String>) {
        let item = OutboxItem::BundleStatus {
            version,
            report: BundleStatusReport { status, reason },
        };
        if let Err(e) = self.state.outbox.push(&item, unix_now()) {
            tracing::error!(error = %e, "Could not queue a bundle report for the Hub.");
        }
        self.state.wake();
    }

    // ------------------------------------------------------------------ commands

    async fn run_command(&self, signed: &SignedCommand) {
        let now = unix_now();
        let id = signing::escape(&signed.signed.command_id);
        let identity = match self.state.identity.read() {
            Ok(i) => i.clone(),
            Err(_) => return,
        };
        let accepted = match command::check(signed, identity.keyset(), identity.me(), now) {
            Ok(a) => a,
            Err(r) => {
                self.reject_metric("command", r.code());
                self.audit(
                    "hub.command_refused",
                    &json!({ "command_id": cut(&id, 80), "name": cut(&signing::escape(&signed.signed.name), 80),
                             "code": r.code(), "reason": cut(&r.to_string(), 400) }),
                );
                // Only a command the Hub really signed gets a result (and a ledger entry): a
                // forged one must not be able to take a real command's id.
                let signed_by_hub = !matches!(
                    r,
                    CommandRejection::Malformed(_)
                        | CommandRejection::UnknownKid(_)
                        | CommandRejection::BadSignature(_)
                        | CommandRejection::WrongTenant(_)
                        | CommandRejection::WrongAppliance(_)
                );
                if signed_by_hub && signing::valid_id(&signed.signed.command_id) {
                    let result = CommandResult {
                        status: CommandStatus::Refused,
                        detail: cut(&r.to_string(), 400),
                    };
                    if let Err(e) = self.state.outbox.finish_command(
                        &signed.signed.command_id,
                        &cut(&signing::escape(&signed.signed.name), 64),
                        &result,
                        now,
                    ) {
                        tracing::error!(error = %e, "Could not record a refused command.");
                    }
                    self.state.wake();
                }
                return;
            }
        };
        let name = accepted.name.as_str();
        match self
            .state
            .outbox
            .begin_command(&accepted.command_id, name, now)
        {
            Ok(true) => {}
            Ok(false) => {
                self.audit(
                    "hub.command_duplicate",
                    &json!({ "command_id": accepted.command_id, "name": name }),
                );
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "Could not record a command in the ledger: not running it.");
                return;
            }
        }
        self.audit(
            "hub.command",
            &json!({ "command_id": accepted.command_id, "name": name, "kid": accepted.kid }),
        );
        let result = match accepted.name {
            CommandName::Reload => self.command_reload().await,
            CommandName::Reconcile => self.command_reconcile().await,
            CommandName::Restart => {
                // Recorded as running: the next start reports it succeeded.
                if self.state.control.send(Control::Restart).await.is_err() {
                    CommandResult {
                        status: CommandStatus::Failed,
                        detail: "the daemon is already stopping".into(),
                    }
                } else {
                    return;
                }
            }
        };
        self.audit(
            "hub.command_finished",
            &json!({ "command_id": accepted.command_id, "name": name, "status": result.status,
                     "detail": result.detail }),
        );
        if let Err(e) =
            self.state
                .outbox
                .finish_command(&accepted.command_id, name, &result, unix_now())
        {
            tracing::error!(error = %e, "Could not record a command's result.");
        }
        self.state.wake();
    }

    async fn command_reload(&self) -> CommandResult {
        let (tx, rx) = oneshot::channel();
        if self.state.control.send(Control::Reload(tx)).await.is_err() {
            return CommandResult {
                status: CommandStatus::Failed,
                detail: "the daemon is stopping".into(),
            };
        }
        match rx.await {
            Ok(Ok(())) => CommandResult {
                status: CommandStatus::Succeeded,
                detail: "configuration and policy reloaded".into(),
            },
            Ok(Err(e)) => CommandResult {
                status: CommandStatus::Failed,
                detail: cut(&e, 400),
            },
            Err(_) => CommandResult {
                status: CommandStatus::Failed,
                detail: "the daemon is stopping".into(),
            },
        }
    }

    /// Re-fetches the bundle in force (and retries one announced but not fetched), and re-checks
    /// the egress lock and the plugin.
    async fn command_reconcile(&self) -> CommandResult {
        self.retry_pending_bundle().await;
        let mut problems = Vec::new();
        let mut facts = Vec::new();
        let current = self.engine.snapshot().ok().and_then(|s| s.bundle.clone());
        match &current {
            None => facts.push("no signed bundle in force".to_owned()),
            Some(b) => {
                let fetched = match self.state.client() {
                    Ok(c) => self.outcome("bundles", c.get_bundle(b.version).await),
                    Err(e) => {
                        problems.push(e.to_string());
                        Ok(Vec::new())
                    }
                };
                match fetched {
                    Ok(bytes) if bytes.is_empty() => {}
                    Ok(bytes) => {
                        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                        if sha == b.document_sha256 {
                            facts.push(format!("bundle v{} matches the Hub", b.version));
                        } else {
                            problems.push(format!(
                                "bundle v{} differs from the Hub's copy (drift)",
                                b.version
                            ));
                        }
                    }
                    Err(e) => problems.push(format!("re-fetching bundle v{}: {e}", b.version)),
                }
                if b.expired {
                    problems.push(format!("bundle v{} expired", b.version));
                }
            }
        }
        match self.engine.egress_lock().map(|l| l.status()) {
            None => facts.push("no egress lock configured".into()),
            Some(LockStatus::Held) => facts.push("egress lock in force".into()),
            Some(other) => problems.push(format!("egress lock {}", other.as_str())),
        }
        if self.engine.hook_seen() {
            facts.push("OpenClaw plugin calling the hook server".into());
        } else {
            problems.push("no hook call from the OpenClaw plugin since start".into());
        }
        let status = if problems.is_empty() {
            CommandStatus::Succeeded
        } else {
            CommandStatus::Failed
        };
        problems.extend(facts);
        CommandResult {
            status,
            detail: cut(&problems.join("; "), 1000),
        }
    }

    // ------------------------------------------------------------------ sender

    async fn sender_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_secs(1), MAX_RETRY_WAIT);
        let mut rng = OsRng;
        // The first staging after a start reads a week back; later ones the last two days.
        let mut since = Some(unix_now() - USAGE_FIRST_LOOKBACK_SECS);
        loop {
            if *stop.borrow() {
                break;
            }
            // Staging is local: it runs even while the Hub is unreachable, so a bucket that
            // closes during an outage is recorded closed.
            let now = unix_now();
            match self.stage_usage(now, since) {
                Ok(()) => since = Some(now - USAGE_LOOKBACK_SECS),
                Err(e) => tracing::error!(error = %e, "Staging usage for the Hub failed."),
            }
            // A consumed id is needed against replay only while its decision could still pass
            // the expiry check (expiry + the allowed skew); keep it an hour past that.
            if let Err(e) = self.state.outbox.prune_consumed(now, 3600) {
                tracing::error!(error = %e, "Pruning consumed decisions failed.");
            }
            if let Some(wait) = self.state.permit() {
                if sleep_or_stop(wait, &mut stop).await {
                    break;
                }
                continue;
            }
            let round = tokio::select! {
                _ = stop.changed() => break,
                r = self.send_round() => r,
            };
            let delay = match round {
                Ok(()) => {
                    backoff.reset();
                    None
                }
                Err(PollError::Hub(e)) => Some(backoff.next_delay(&mut rng, e.retry_after())),
                Err(PollError::Local(e)) => {
                    tracing::error!(error = %e, "Shipping to the Hub failed locally.");
                    Some(backoff.next_delay(&mut rng, None))
                }
            };
            self.update_gauges();
            let wait = delay.unwrap_or(SEND_EVERY);
            tokio::select! {
                _ = stop.changed() => break,
                () = self.state.wake.notified(), if delay.is_none() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round: the queues in order, then usage, then audit. Stops at the first failure that
    /// a retry may fix (later entries wait, so order holds).
    async fn send_round(&self) -> std::result::Result<(), PollError> {
        self.send_queue().await?;
        self.send_usage().await?;
        self.send_audit().await?;
        Ok(())
    }

    async fn send_queue(&self) -> std::result::Result<(), PollError> {
        loop {
            let batch = self.state.outbox.peek(None, BATCH).map_err(Error::from)?;
            if batch.is_empty() {
                return Ok(());
            }
            let client = self.state.client()?;
            for q in batch {
                let (operation, sent) = match &q.item {
                    OutboxItem::Approval { request } => (
                        "approvals",
                        client.create_approval(request).await.map(|_| ()),
                    ),
                    OutboxItem::BundleStatus { version, report } => (
                        "bundles/status",
                        client.report_bundle_status(*version, report).await,
                    ),
                    OutboxItem::CommandResult { command_id, result } => (
                        "commands/result",
                        client.report_command_result(command_id, result).await,
                    ),
                };
                match self.outcome(operation, sent) {
                    Ok(()) => self.state.outbox.ack(q.id).map_err(Error::from)?,
                    Err(e) if e.class() == ErrorClass::Fatal => {
                        let gone = self.state.outbox.discard(q.id).map_err(Error::from)?;
                        tracing::error!(queue = q.item.kind().as_str(), key = %q.item.key(), error = %e, "The Hub refused an outbox entry for good.");
                        self.audit(
                            "hub.outbox_discarded",
                            &json!({ "queue": q.item.kind().as_str(), "key": q.item.key(),
                                     "attempts": gone.map(|g| g.attempts), "error": cut(&e.to_string(), 400) }),
                        );
                    }
                    Err(e) => {
                        self.state
                            .outbox
                            .record_failure(q.id, &e.to_string())
                            .map_err(Error::from)?;
                        return Err(PollError::Hub(e));
                    }
                }
            }
        }
    }

    /// Stages the egress store's buckets of hours from `since` (absolute totals; unchanged ones
    /// stay as they are; a bucket is closed once its hour ended more than a grace ago).
    fn stage_usage(&self, now: i64, since: Option<i64>) -> Result<()> {
        // `since: None` reads every hour; the loop always passes a bound.
        if !self.state.usage_db.exists() {
            return Ok(());
        }
        let buckets = clawgate_egress::read_buckets(
            &self.state.usage_db,
            &clawgate_egress::BucketQuery {
                agent: None,
                since,
                until: None,
            },
        )
        .map_err(|e| Error::Config(format!("reading usage: {e}")))?;
        for b in buckets {
            let closed = b.hour + 3600 + CLOSE_GRACE_SECS <= now;
            self.state.outbox.stage_usage(
                &UsageTotals {
                    agent: b.agent,
                    provider: b.provider,
                    model: b.model,
                    hour: b.hour,
                    input: b.usage.input,
                    output: b.usage.output,
                    cache_read: b.usage.cache_read,
                    cache_write: b.usage.cache_write,
                    requests: b.requests,
                    incomplete: b.incomplete,
                },
                closed,
                now,
            )?;
        }
        let cutoff = now - USAGE_PRUNE_SECS;
        self.state
            .outbox
            .prune_usage(cutoff - cutoff.rem_euclid(3600))?;
        Ok(())
    }

    async fn send_usage(&self) -> std::result::Result<(), PollError> {
        loop {
            let buckets = self
                .state
                .outbox
                .usage_to_ship(USAGE_BATCH)
                .map_err(Error::from)?;
            if buckets.is_empty() {
                return Ok(());
            }
            let before = self.state.outbox.usage_pending().map_err(Error::from)?;
            let client = self.state.client()?;
            let acks = self
                .outcome("usage", client.ingest_usage(&UsageBatch { buckets }).await)
                .map_err(PollError::Hub)?;
            self.state
                .outbox
                .ack_usage(&acks.acks)
                .map_err(Error::from)?;
            let after = self.state.outbox.usage_pending().map_err(Error::from)?;
            if after >= before {
                // The Hub acknowledged nothing new: try again next round, not in a loop.
                return Ok(());
            }
        }
    }

    async fn send_audit(&self) -> std::result::Result<(), PollError> {
        loop {
            let cursor = self.state.outbox.audit_cursor().map_err(Error::from)?;
            let records = self.engine.store().audit_after(cursor.seq, AUDIT_BATCH)?;
            let Some(last) = records.last().map(|r| r.seq) else {
                return Ok(());
            };
            let batch = AuditBatch {
                records: records
                    .into_iter()
                    .map(|r| AuditRecord {
                        seq: r.seq,
                        ts: r.ts_ms,
                        kind: r.kind,
                        prev: r.prev,
                        hash: r.hash,
                        record: r.record,
                    })
                    .collect(),
            };
            let client = self.state.client()?;
            match self.outcome("audit", client.ingest_audit(&batch).await) {
                Ok(ack) => {
                    self.state
                        .outbox
                        .advance_audit_cursor(ack.last_seq, &ack.last_hash)
                        .map_err(Error::from)?;
                    if ack.last_seq < last {
                        return Ok(());
                    }
                }
                Err(clawgate_hub::Error::Http {
                    status: 409,
                    expected_seq: Some(expected),
                    ..
                }) => {
                    let seq = i64::try_from(expected)
                        .unwrap_or(i64::MAX)
                        .saturating_sub(1);
                    let hash = self.engine.store().audit_hash_at(seq)?.ok_or_else(|| {
                        Error::Config(format!(
                            "the Hub expects audit record {expected}, which this appliance does not have"
                        ))
                    })?;
                    tracing::warn!(
                        expected,
                        "The Hub asked for the audit chain from another record."
                    );
                    self.state
                        .outbox
                        .rewind_audit_cursor(seq, &hash)
                        .map_err(Error::from)?;
                }
                Err(e) => return Err(PollError::Hub(e)),
            }
        }
    }

    // ------------------------------------------------------------------ heartbeat

    async fn heartbeat_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut rng = OsRng;
        let mut backoff = Backoff::new(Duration::from_secs(2), MAX_RETRY_WAIT);
        let interval = self.state.status.lock().map_or(60, |s| s.heartbeat_secs);
        // The first one after a random share of the interval: a fleet restarting together
        // spreads out.
        let mut delay = Duration::from_millis(rng.next_u64() % (interval * 1000).max(1));
        loop {
            if sleep_or_stop(delay, &mut stop).await {
                break;
            }
            self.check_bundle_expiry();
            if let Some(wait) = self.state.permit() {
                delay = wait;
                continue;
            }
            let beat = tokio::select! {
                _ = stop.changed() => break,
                r = self.heartbeat_once() => r,
            };
            delay = match beat {
                Ok(next) => {
                    backoff.reset();
                    self.maybe_rotate_credential().await;
                    jitter(&mut rng, next)
                }
                Err(e) => backoff
                    .next_delay(&mut rng, e.retry_after())
                    .max(Duration::from_secs(1)),
            };
        }
    }

    /// Rotates the credential once it is [`CREDENTIAL_MAX_AGE_SECS`] old: the Hub's answer is
    /// stored in the identity (atomic) before any request uses it, and the Hub keeps the old
    /// credential valid until the new one is first used, so a failure at any step leaves a
    /// working credential. Audited without the value.
    async fn maybe_rotate_credential(&self) {
        let now = unix_now();
        let Ok(enrolled_at) = self.state.identity.read().map(|i| i.enrolled_at) else {
            return;
        };
        let last = match self.state.outbox.credential_rotated_at() {
            Ok(at) => at.unwrap_or(enrolled_at).max(enrolled_at),
            Err(e) => {
                tracing::error!(error = %e, "Reading the credential's age failed.");
                return;
            }
        };
        if now.saturating_sub(last) < CREDENTIAL_MAX_AGE_SECS {
            return;
        }
        let Ok(client) = self.state.client() else {
            return;
        };
        let Ok(answer) = self.outcome("credential/rotate", client.rotate_credential().await) else {
            return;
        };
        let stored = (|| -> Result<()> {
            let mut identity = self.state.identity.write().map_err(|_| Error::Poisoned)?;
            let next = identity.with_credential(answer.credential.secret().clone())?;
            next.store(&self.state.state_dir)?;
            self.state
                .client()?
                .set_credential(next.credential().clone())?;
            *identity = next;
            Ok(())
        })();
        match stored {
            Ok(()) => {
                if let Err(e) = self.state.outbox.set_credential_rotated_at(now) {
                    tracing::error!(error = %e, "Recording the credential rotation failed.");
                }
                tracing::info!("Rotated the Hub credential.");
                self.audit("hub.credential_rotated", &json!({ "previous_since": last }));
            }
            Err(e) => {
                tracing::error!(error = %e, "Storing the rotated credential failed; the old one stays in use.");
            }
        }
    }

    fn check_bundle_expiry(&self) {
        let expired = self
            .engine
            .snapshot()
            .ok()
            .and_then(|s| s.bundle.clone())
            .is_some_and(|b| !b.expired && unix_now() >= b.expires_at);
        if expired && let Err(e) = self.engine.mark_bundle_expired() {
            tracing::error!(error = %e, "Marking the bundle expired failed.");
        }
    }

    async fn heartbeat_once(&self) -> std::result::Result<Duration, clawgate_hub::Error> {
        let heartbeat = self
            .heartbeat()
            .map_err(|e| clawgate_hub::Error::Invalid(e.to_string()))?;
        let client = self
            .state
            .client()
            .map_err(|e| clawgate_hub::Error::Invalid(e.to_string()))?;
        let answer = self.outcome("heartbeat", client.heartbeat(&heartbeat).await)?;
        let next = u64::from(answer.next_in_seconds).clamp(5, 3600);
        if let Ok(mut s) = self.state.status.lock() {
            s.skew = Some(answer.server_time - heartbeat.sent_at);
            s.heartbeat_secs = next;
        }
        Ok(Duration::from_secs(next))
    }

    /// The heartbeat's facts, scored.
    pub fn heartbeat(&self) -> Result<Heartbeat> {
        let snap = self.engine.snapshot()?;
        let now = unix_now();
        let lock = match self.engine.egress_lock().map(|l| l.status()) {
            None => WireLock::Inactive,
            Some(LockStatus::Held) => WireLock::Active,
            Some(LockStatus::Lost(_)) => WireLock::Inactive,
            Some(LockStatus::Unverified) => WireLock::Unknown,
        };
        let pending = u64::try_from(self.engine.store().pending_count()?).unwrap_or(0);
        let oldest = self.state.outbox.oldest_unsent_at()?;
        let restarts = self
            .engine
            .store()
            .audit_count_since("daemon.started", (now - 24 * 3600) * 1000)?
            .saturating_sub(1);
        let calls = self
            .engine
            .metrics
            .calls_total
            .load(std::sync::atomic::Ordering::Relaxed);
        let errors = self
            .engine
            .metrics
            .errors_total
            .load(std::sync::atomic::Ordering::Relaxed);
        let (proxy_requests, proxy_errors) = self.engine.egress_metrics.health_counts();
        let now_counts = RuntimeCounts {
            hook_calls: calls,
            hook_errors: errors,
            proxy_requests,
            proxy_errors,
        };
        let mut s = self.state.status.lock().map_err(|_| Error::Poisoned)?;
        let instant = Instant::now();
        s.samples.push_back((instant, now_counts));
        while s
            .samples
            .front()
            .is_some_and(|(t, ..)| instant.duration_since(*t) > Duration::from_secs(3600))
        {
            s.samples.pop_front();
        }
        let hour_ago = s.samples.front().map_or(now_counts, |(_, c)| *c);
        let facts = HealthFacts {
            last_hub_success_age_secs: s.last_success.map(|t| t.elapsed().as_secs()),
            heartbeat_interval_secs: s.heartbeat_secs,
            circuit: s.breaker.state(),
            last_event_poll_age_secs: s.last_poll.map(|t| t.elapsed().as_secs()),
            oldest_unsent_age_secs: oldest.map(|t| u64::try_from(now - t).unwrap_or(0)),
            clock_skew_secs: s.skew,
            bundle: match &snap.bundle {
                None => BundleFact::None,
                Some(b) if b.expired => BundleFact::Expired,
                Some(_) => BundleFact::Current,
            },
            egress_lock: lock,
            plugin_present: self.engine.hook_seen(),
            vault_ok: self.engine.vault().is_some(),
            hook_calls_1h: calls.saturating_sub(hour_ago.hook_calls),
            hook_errors_1h: errors.saturating_sub(hour_ago.hook_errors),
            proxy_requests_1h: proxy_requests.saturating_sub(hour_ago.proxy_requests),
            proxy_errors_1h: proxy_errors.saturating_sub(hour_ago.proxy_errors),
            restarts_24h: u32::try_from(restarts).unwrap_or(u32::MAX),
            failed_pushes_1h: s.failures.len() as u64,
        };
        let health = clawgate_hub::health::score(&facts);
        s.health = Some(health);
        self.engine
            .metrics
            .hub_health_score
            .set(i64::from(health.score));
        Ok(Heartbeat {
            version: env!("CARGO_PKG_VERSION").into(),
            bundle_version: snap.bundle.as_ref().map(|b| b.version),
            bundle_sha256: snap.bundle.as_ref().map(|b| b.manifest_sha256.clone()),
            config_sha256: self.state.config_sha256.clone(),
            openclaw_plugin: PluginState {
                present: self.engine.hook_seen(),
                version: self.engine.plugin_version(),
            },
            egress_lock: lock,
            pending_approvals: pending,
            failed_pushes_1h: s.failures.len() as u64,
            vault_generation: self
                .engine
                .vault()
                .and_then(|v| v.generation().ok())
                .and_then(|g| u64::try_from(g).ok()),
            health,
            sent_at: now,
        })
    }
}

#[derive(Debug)]
enum PollError {
    Hub(clawgate_hub::Error),
    Local(Error),
}

impl From<Error> for PollError {
    fn from(e: Error) -> Self {
        PollError::Local(e)
    }
}

#[derive(Debug)]
enum DecisionOutcome {
    Rejected(&'static str, String),
    Local(Error),
}

impl From<Error> for DecisionOutcome {
    fn from(e: Error) -> Self {
        DecisionOutcome::Local(e)
    }
}

fn bundle_code(e: &clawgate_policies::bundle::BundleError) -> &'static str {
    use clawgate_policies::bundle::BundleError as B;
    match e {
        B::Malformed(_) => "malformed",
        B::UntrustedKey(_) => "untrusted_key",
        B::BadSignature(_) => "bad_signature",
        B::KeyMismatch { .. } => "key_mismatch",
        B::WrongTenant { .. } => "wrong_tenant",
        B::NotNewer { .. } => "not_newer",
        B::Expired { .. } => "expired",
        B::BadTimes(_) => "bad_times",
        B::UnknownFile(_) => "unknown_file",
        B::MissingFile(_) => "missing_file",
        B::HashMismatch(_) => "hash_mismatch",
        B::BadPath(_) => "bad_path",
        B::Key(_) => "no_trust",
        _ => "rejected",
    }
}

/// `d` ± 10 %.
fn jitter(rng: &mut dyn Rng, d: Duration) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let spread = ms / 5;
    let offset = if spread == 0 {
        0
    } else {
        rng.next_u64() % spread
    };
    Duration::from_millis(ms - ms / 10 + offset)
}

/// Sleeps `d`; true if `stop` turned true (or its sender is gone) meanwhile.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        r = stop.changed() => r.is_err() || *stop.borrow(),
        () = tokio::time::sleep(d) => false,
    }
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
