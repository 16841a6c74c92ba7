//! Capturing unknown secrets into the vault (`[redact] capture_unknown`, off by default).
//!
//! A secret the rules (and, if asked, the entropy detector) find in a tool result or an LLM
//! request is written to the vault as `captured_<rule>_<10 hex>`, and the text says
//! `SECRET_REF(captured_…)` instead of `[REDACTED:…]`, so the agent can still use it by
//! reference. The name comes from the keyed HMAC that also makes the placeholder, so it is
//! decided synchronously; the write is not:
//!
//! ```text
//! redactor ── Offer ──▶ Capturer::offer (hot path: map lookups, try_send) ──▶ bounded queue
//!                                                                                 │
//!                               one writer thread: batch ─▶ CaptureSink::write ◀─┘
//!                               (clawgate.db: provenance + audit `secret.captured`, then vault)
//! ```
//!
//! Fail closed, lose nothing: a value is only offered a reference while its write is queued or
//! done; a full queue, the cap, or a recent write failure keeps the placeholder (never the raw
//! value). A reference whose write was lost after all (failure, crash) names a secret the vault
//! does not have, and a tool call using it is refused as an unknown secret.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawgate_protocol::{SecretName, SecretString};
use clawgate_redact::capture::captured_tag;
use clawgate_redact::{Capture, DetectorKind, Offer};
use clawgate_vault::{Scope, Vault};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::error::Result;
use crate::metrics::KindLabels;
use crate::store::{CaptureRecord, Store};

/// Default most captured secrets held in the vault.
pub const DEFAULT_MAX_CAPTURED: usize = 1000;
/// Captures waiting for the writer; beyond this the placeholder stays (bounded memory, and the
/// hot path never waits for the vault).
const QUEUE: usize = 256;
/// Most captures written in one vault transaction (one fsync, one redactor rebuild).
const BATCH: usize = 64;
/// After a failed write, no new capture is offered a reference for this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Which unknown secrets are captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMode {
    /// None (the default): unknown secrets keep their placeholder.
    Off,
    /// Findings of the credential-format rules.
    Rules,
    /// Rule findings and entropy findings (more likely to be false positives).
    RulesAndEntropy,
}

impl CaptureMode {
    /// Parses the configuration value (`off`, `rules`, `rules+entropy`).
    pub fn parse(s: &str) -> Option<CaptureMode> {
        match s {
            "off" => Some(CaptureMode::Off),
            "rules" => Some(CaptureMode::Rules),
            "rules+entropy" => Some(CaptureMode::RulesAndEntropy),
            _ => None,
        }
    }

    fn allows(self, detector: DetectorKind) -> bool {
        matches!(
            (self, detector),
            (CaptureMode::Rules, DetectorKind::Rule)
                | (
                    CaptureMode::RulesAndEntropy,
                    DetectorKind::Rule | DetectorKind::Entropy
                )
        )
    }
}

/// The validated `[redact]` capture settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// What is captured.
    pub mode: CaptureMode,
    /// Most captured secrets in the vault; beyond it the placeholder stays.
    pub max: usize,
    /// The scope every captured secret gets.
    pub scope: Scope,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            mode: CaptureMode::Off,
            max: DEFAULT_MAX_CAPTURED,
            scope: Scope::new(["exec"], Vec::<String>::new()).unwrap_or_default(),
        }
    }
}

/// One value on its way to the vault. `Debug` shows no value.
#[derive(Debug)]
pub struct Captured {
    /// Where it is stored.
    pub name: SecretName,
    /// The rule that found it.
    pub rule: String,
    /// `rule` or `entropy`.
    pub detector: &'static str,
    /// The agent whose traffic held it.
    pub agent: String,
    /// `tool_result` or `egress`.
    pub source: &'static str,
    /// The value.
    pub value: SecretString,
}

/// Where captures are written; the daemon's is [`VaultSink`].
pub trait CaptureSink: Send + Sync + 'static {
    /// Stores a batch, all or none. The error must not contain a value.
    fn write(&self, batch: &[Captured]) -> Result<()>;
}

/// Provenance and audit in `clawgate.db` first (so a secret in the vault always has its
/// provenance), then the values in one vault transaction; a failed vault write is audited.
#[derive(Debug)]
pub struct VaultSink {
    /// The vault.
    pub vault: Arc<Vault>,
    /// Provenance and audit.
    pub store: Arc<Store>,
    /// Scope of every captured secret.
    pub scope: Scope,
}

impl CaptureSink for VaultSink {
    fn write(&self, batch: &[Captured]) -> Result<()> {
        let records: Vec<CaptureRecord<'_>> = batch
            .iter()
            .map(|c| CaptureRecord {
                name: c.name.as_str(),
                rule: &c.rule,
                detector: c.detector,
                agent: &c.agent,
                source: c.source,
            })
            .collect();
        self.store.record_captures(&records)?;
        let items: Vec<_> = batch
            .iter()
            .map(|c| (c.name.clone(), c.value.clone(), self.scope.clone()))
            .collect();
        if let Err(e) = self.vault.put_many(&items) {
            let names: Vec<&str> = records.iter().map(|r| r.name).collect();
            self.store.audit(
                "secret.capture_failed",
                &serde_json::json!({ "secrets": names, "error": e.to_string() }),
            )?;
            return Err(e.into());
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct State {
    /// Captured secrets the vault holds, by tag (the value's identity, whatever rule found it).
    known: HashMap<String, SecretName>,
    /// Queued, not yet written.
    pending: HashMap<String, SecretName>,
    /// The last failed write.
    failed_at: Option<Instant>,
    /// The cap was reported (once until the count drops below it again).
    cap_said: bool,
    /// A full queue was reported (once until the writer finishes a batch).
    full_said: bool,
}

/// Takes offers from the redactor and feeds the writer thread.
#[derive(Debug)]
pub struct Capturer {
    mode: CaptureMode,
    max: usize,
    state: Arc<Mutex<State>>,
    queue: SyncSender<Captured>,
    counts: Outcomes,
}

/// `clawgate_secret_captures_total{kind}`: what became of each offer.
#[derive(Debug, Clone, Default)]
pub struct Outcomes(Family<KindLabels, Counter>);

impl Outcomes {
    /// Counts into `family` (the daemon's registry).
    pub(crate) fn new(family: Family<KindLabels, Counter>) -> Self {
        Outcomes(family)
    }

    fn add(&self, kind: &'static str, n: usize) {
        self.0
            .get_or_create(&KindLabels { kind })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

impl Capturer {
    /// Starts the writer thread. `existing` are the vault's secret names now (captured ones
    /// count towards the cap and are answered without another write).
    pub fn start(
        settings: &CaptureSettings,
        sink: Arc<dyn CaptureSink>,
        existing: impl IntoIterator<Item = SecretName>,
        counts: Outcomes,
    ) -> Result<Arc<Capturer>> {
        let (queue, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let state = Arc::new(Mutex::new(State::default()));
        let capturer = Arc::new(Capturer {
            mode: settings.mode,
            max: settings.max,
            state: state.clone(),
            queue,
            counts: counts.clone(),
        });
        capturer.sync_known(existing);
        std::thread::Builder::new()
            .name("clawgate-capture".into())
            .spawn(move || writer(&rx, sink.as_ref(), &state, &counts))
            .map_err(|e| crate::error::Error::io("starting the capture writer", e))?;
        Ok(capturer)
    }

    /// Replaces the set of captured secrets the vault holds (after the vault changed: a
    /// `clawgate vault rm` must make the next sighting capture the value again).
    pub fn sync_known(&self, names: impl IntoIterator<Item = SecretName>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.known = names
            .into_iter()
            .filter_map(|n| Some((captured_tag(n.as_str())?.to_owned(), n)))
            .collect();
        if st.known.len() + st.pending.len() < self.max {
            st.cap_said = false;
        }
    }

    /// Offers bound to one agent and source, as the redactor takes them.
    pub fn for_agent(self: &Arc<Self>, agent: &str, source: &'static str) -> AgentCapture {
        AgentCapture {
            capturer: self.clone(),
            agent: agent.to_owned(),
            source,
        }
    }

    fn offer(&self, agent: &str, source: &'static str, o: &Offer<'_>) -> Option<SecretName> {
        // A poisoned lock keeps the placeholder (fail closed).
        let mut st = self.state.lock().ok()?;
        // Already captured (whichever detector found it then): the vault detector will say the
        // same once the redactor is rebuilt.
        if let Some(name) = st.known.get(o.tag).or_else(|| st.pending.get(o.tag)) {
            return Some(name.clone());
        }
        if !self.mode.allows(o.detector) {
            return None;
        }
        if st.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            return None;
        }
        if st.known.len() + st.pending.len() >= self.max {
            self.counts.add("over_cap", 1);
            if !st.cap_said {
                st.cap_said = true;
                tracing::warn!(
                    max = self.max,
                    "Captured-secret cap reached: further unknown secrets keep their [REDACTED] placeholder."
                );
            }
            return None;
        }
        if o.value.len() > clawgate_vault::MAX_VALUE_LEN {
            return None;
        }
        let job = Captured {
            name: o.name.clone(),
            rule: o.rule.to_owned(),
            detector: detector_name(o.detector),
            agent: agent.to_owned(),
            source,
            value: SecretString::new(o.value.to_owned()),
        };
        // Sent while the state is locked, so the writer cannot finish it before it is pending.
        match self.queue.try_send(job) {
            Ok(()) => {
                st.pending.insert(o.tag.to_owned(), o.name.clone());
                self.counts.add("queued", 1);
                Some(o.name.clone())
            }
            Err(TrySendError::Full(job)) => {
                self.counts.add("queue_full", 1);
                if !st.full_said {
                    st.full_said = true;
                    tracing::warn!(secret = %job.name, "Capture queue full: unknown secrets keep their placeholder until the vault catches up.");
                }
                None
            }
            Err(TrySendError::Disconnected(job)) => {
                tracing::error!(secret = %job.name, "The capture writer is gone: the secret keeps its placeholder.");
                None
            }
        }
    }

    /// Captures queued or in flight (for tests and health).
    pub fn pending(&self) -> usize {
        self.state.lock().map_or(0, |s| s.pending.len())
    }
}

fn detector_name(d: DetectorKind) -> &'static str {
    match d {
        DetectorKind::Rule => "rule",
        DetectorKind::Entropy => "entropy",
        DetectorKind::Vault => "vault",
    }
}

/// The writer: batches of queued captures into the sink, until every sender is gone.
fn writer(
    rx: &Receiver<Captured>,
    sink: &dyn CaptureSink,
    state: &Mutex<State>,
    counts: &Outcomes,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let result = sink.write(&batch);
        counts.add(
            if result.is_ok() { "stored" } else { "failed" },
            batch.len(),
        );
        let Ok(mut st) = state.lock() else {
            return;
        };
        st.full_said = false;
        let names: Vec<&str> = batch.iter().map(|c| c.name.as_str()).collect();
        match &result {
            Ok(()) => tracing::info!(secrets = ?names, "Unknown secrets captured into the vault."),
            Err(e) => {
                st.failed_at = Some(Instant::now());
                tracing::error!(error = %e, secrets = ?names, retry_after_s = RETRY_AFTER.as_secs(),
                    "Capturing secrets into the vault failed: their references will not resolve, and new unknown secrets keep their placeholder for a while.");
            }
        }
        for c in batch {
            let Some(tag) = captured_tag(c.name.as_str()).map(str::to_owned) else {
                continue;
            };
            st.pending.remove(&tag);
            if result.is_ok() {
                st.known.insert(tag, c.name);
            }
        }
    }
}

/// A [`Capturer`] bound to the agent and source of one text.
#[derive(Debug, Clone)]
pub struct AgentCapture {
    capturer: Arc<Capturer>,
    agent: String,
    source: &'static str,
}

impl Capture for AgentCapture {
    fn offer(&self, offer: &Offer<'_>) -> Option<SecretName> {
        self.capturer.offer(&self.agent, self.source, offer)
    }
}

#[cfg(test)]
mod tests;
