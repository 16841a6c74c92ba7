//! The egress lock watcher: `clawgate serve` checks every few seconds that the nftables table
//! `inet clawgate_egress` (written by `clawgate provision firewall`) is loaded exactly as
//! generated and that its counters only move forward. While it is not, every tool call is blocked
//! (when `egress_lock.required`, the default): a host whose firewall was flushed lets the agent
//! talk to the internet directly, past the proxy's redaction, so nothing the agent asks for runs.
//!
//! The probe is a trait: the binary's real one shells out to `nft -j list table …` and judges
//! the listing with `clawgate-provisioner`; tests use a fake. The state machine
//! ([`EgressLock::observe`]) is pure and returns the audit events, the watcher
//! ([`watch()`], [`check_now`]) records them.
//!
//! ```text
//! Unverified ──in force──▶ Held ──missing / altered / unreadable──▶ Lost ──in force──▶ Held
//!      └──────not in force──────────────────────────────────────────▶ Lost
//! Held ──counters went backwards──▶ Held (audited as lost + restored: the table was recreated
//!                                         or reset between two checks, a gap we did not see)
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::engine::Engine;

/// The table, as named in messages.
pub const TABLE: &str = "inet clawgate_egress";
/// Longest reason kept (it reaches the model in a block reason and the audit log).
const MAX_REASON: usize = 600;

/// One reading of the live lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockReading {
    /// The table is loaded exactly as generated; packet counts of its named counters.
    InForce(BTreeMap<String, u64>),
    /// The table does not exist.
    Missing,
    /// The table exists but differs from what was generated: what differs.
    Altered(Vec<String>),
    /// The table could not be read (nft missing, no permission, timeout): unverifiable.
    Unreadable(String),
}

/// Reads the live lock. Called from a blocking thread, every `check_seconds`.
pub trait LockProbe: Send + Sync + fmt::Debug {
    /// The lock as it is now.
    fn read(&self) -> LockReading;
}

/// What the daemon knows about the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStatus {
    /// Not checked yet (the first check runs at start).
    Unverified,
    /// In force at the last check.
    Held,
    /// Not in force at the last check: why.
    Lost(String),
}

impl LockStatus {
    /// `unverified`, `held` or `lost` (health and metrics).
    pub fn as_str(&self) -> &'static str {
        match self {
            LockStatus::Unverified => "unverified",
            LockStatus::Held => "held",
            LockStatus::Lost(_) => "lost",
        }
    }
}

/// An audit record the watcher writes.
#[derive(Debug, Clone, PartialEq)]
pub struct LockEvent {
    /// `egress_lock.verified`, `egress_lock.lost` or `egress_lock.restored`.
    pub kind: &'static str,
    /// The record.
    pub record: Value,
}

#[derive(Debug)]
struct Inner {
    status: LockStatus,
    /// Counters at the last check in force (empty after a loss: a restored table starts at 0).
    counters: BTreeMap<String, u64>,
    lost_since: Option<Instant>,
}

/// The lock's state, shared by the watcher (writes) and the engine (reads on every decision).
#[derive(Debug)]
pub struct EgressLock {
    agent_user: String,
    required: bool,
    inner: Mutex<Inner>,
}

impl EgressLock {
    /// A lock on `agent_user`'s egress, not verified yet. `required`: block tool calls while it
    /// is not in force.
    pub fn new(agent_user: &str, required: bool) -> EgressLock {
        EgressLock {
            agent_user: agent_user.to_owned(),
            required,
            inner: Mutex::new(Inner {
                status: LockStatus::Unverified,
                counters: BTreeMap::new(),
                lost_since: None,
            }),
        }
    }

    /// Whether tool calls are blocked while the lock is not in force.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The status at the last check (a poisoned state reads as lost).
    pub fn status(&self) -> LockStatus {
        self.inner.lock().map_or_else(
            |_| LockStatus::Lost("the lock's state was poisoned".into()),
            |i| i.status.clone(),
        )
    }

    /// The counters at the last check in force.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.inner
            .lock()
            .map(|i| i.counters.clone())
            .unwrap_or_default()
    }

    /// Why a tool call must be blocked now, or `None` when it may be decided as usual. This is
    /// what the model reads.
    pub fn block_reason(&self) -> Option<String> {
        if !self.required {
            return None;
        }
        let why = match self.status() {
            LockStatus::Held => return None,
            LockStatus::Unverified => "it has not been verified yet".to_owned(),
            LockStatus::Lost(reason) => reason,
        };
        Some(format!(
            "Clawgate blocked this call: the egress lock (the firewall that keeps this agent's \
             network traffic inside Clawgate's proxy) is not in force: {why}. Every tool call is \
             blocked until an administrator restores it (`clawgate provision firewall`, or \
             `systemctl restart clawgate-egress-lock`). It did not run. Do not retry or work \
             around it; tell the user the egress lock is down."
        ))
    }

    /// Folds one reading into the state and returns the audit events it causes.
    pub fn observe(&self, reading: LockReading) -> Vec<LockEvent> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut events = Vec::new();
        match reading {
            LockReading::InForce(counters) => {
                match &inner.status {
                    LockStatus::Unverified => events
                        .push(self.event("egress_lock.verified", json!({ "counters": counters }))),
                    LockStatus::Held => {
                        if let Some(why) = went_backwards(&inner.counters, &counters) {
                            events.push(self.event(
                                "egress_lock.lost",
                                json!({ "reason": why, "seen": "between two checks" }),
                            ));
                            events.push(
                                self.event("egress_lock.restored", json!({ "counters": counters })),
                            );
                        }
                    }
                    LockStatus::Lost(reason) => {
                        let lost_ms = inner
                            .lost_since
                            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
                        events.push(self.event(
                            "egress_lock.restored",
                            json!({ "after": reason, "lost_ms": lost_ms, "counters": counters }),
                        ));
                    }
                }
                inner.status = LockStatus::Held;
                inner.counters = counters;
                inner.lost_since = None;
            }
            other => {
                let reason = describe(other);
                if !matches!(inner.status, LockStatus::Lost(_)) {
                    events.push(self.event("egress_lock.lost", json!({ "reason": reason })));
                    inner.lost_since = Some(Instant::now());
                }
                inner.status = LockStatus::Lost(reason);
                inner.counters.clear();
            }
        }
        events
    }

    fn event(&self, kind: &'static str, mut record: Value) -> LockEvent {
        if let Some(o) = record.as_object_mut() {
            o.insert("agent_user".into(), Value::String(self.agent_user.clone()));
            o.insert("table".into(), Value::String(TABLE.into()));
            o.insert("required".into(), Value::Bool(self.required));
        }
        LockEvent { kind, record }
    }
}

/// The first counter that is lower than at the previous check, described.
fn went_backwards(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> Option<String> {
    before.iter().find_map(|(name, was)| {
        let is = now.get(name).copied().unwrap_or(0);
        (is < *was).then(|| {
            format!(
                "counter {name} went back from {was} to {is} packets: the table was recreated or its counters reset since the previous check"
            )
        })
    })
}

fn describe(reading: LockReading) -> String {
    let text = match reading {
        LockReading::InForce(_) => format!("table {TABLE} is in force"),
        LockReading::Missing => {
            format!("table {TABLE} is missing (deleted, or the whole ruleset was flushed)")
        }
        LockReading::Altered(d) => format!("table {TABLE} was changed: {}", d.join("; ")),
        LockReading::Unreadable(e) => format!("table {TABLE} cannot be read: {e}"),
    };
    cap(text)
}

fn cap(mut text: String) -> String {
    if text.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Checks the lock every `every` until `stop` turns true. The first check runs at once.
pub async fn watch(
    engine: Arc<Engine>,
    probe: Arc<dyn LockProbe>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        check_now(&engine, &probe).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
}

/// One check: read the probe (on a blocking thread: it runs a process), then record.
pub async fn check_now(engine: &Engine, probe: &Arc<dyn LockProbe>) {
    let p = probe.clone();
    let reading = tokio::task::spawn_blocking(move || p.read())
        .await
        .unwrap_or_else(|e| LockReading::Unreadable(format!("the probe failed: {e}")));
    record(engine, reading);
}

/// Folds a reading into the engine's lock: audit, log, metrics. Does nothing when the engine
/// has no lock.
pub fn record(engine: &Engine, reading: LockReading) {
    let Some(lock) = engine.egress_lock() else {
        return;
    };
    for event in lock.observe(reading) {
        let reason = event.record.get("reason").and_then(Value::as_str);
        match event.kind {
            "egress_lock.lost" => {
                engine.metrics.egress_lock_losses.inc();
                tracing::error!(reason, required = lock.required(), "Egress lock lost.");
            }
            "egress_lock.restored" => tracing::warn!("Egress lock restored."),
            _ => tracing::info!("Egress lock verified."),
        }
        if let Err(e) = engine.store().audit(event.kind, &event.record) {
            engine.metrics.error("audit");
            tracing::error!(error = %e, kind = event.kind, "Auditing the egress lock failed.");
        }
    }
    engine
        .metrics
        .set_egress_lock(&lock.status(), &lock.counters());
}

#[cfg(test)]
mod tests;
