//! Prometheus metrics, served in the text format on the admin listener and socket.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    pub(crate) hook: &'static str,
    pub(crate) class: &'static str,
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HookLabels {
    pub(crate) hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub(crate) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CounterLabels {
    pub(crate) counter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HubLabels {
    pub(crate) operation: &'static str,
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectLabels {
    pub(crate) what: &'static str,
    pub(crate) code: &'static str,
}

fn latency_histogram() -> Histogram {
    // 25 µs .. ~100 s: green decisions sit in the first buckets, approvals in the last.
    Histogram::new(exponential_buckets(0.000_025, 2.0, 22))
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) decisions: Family<DecisionLabels, Counter>,
    pub(crate) hook_latency: Family<HookLabels, Histogram, fn() -> Histogram>,
    pub(crate) approval_latency: Histogram,
    pub(crate) pending_approvals: Gauge,
    pub(crate) errors: Family<KindLabels, Counter>,
    pub(crate) resolutions: Family<KindLabels, Counter>,
    pub(crate) redactions: Counter,
    pub(crate) captures: Family<KindLabels, Counter>,
    pub(crate) executed_mismatch: Counter,
    pub(crate) egress_lock_status: Gauge,
    pub(crate) egress_lock_losses: Counter,
    pub(crate) egress_lock_packets: Family<CounterLabels, Gauge>,
    pub(crate) hub_connected: Gauge,
    pub(crate) hub_health_score: Gauge,
    pub(crate) hub_requests: Family<HubLabels, Counter>,
    pub(crate) hub_rejections: Family<RejectLabels, Counter>,
    pub(crate) hub_outbox_depth: Family<KindLabels, Gauge>,
    pub(crate) hub_bundle_version: Gauge,
    /// Hook decisions and failed hook requests since start (for the health score's error rate).
    pub(crate) calls_total: std::sync::atomic::AtomicU64,
    pub(crate) errors_total: std::sync::atomic::AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("clawgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Tool-call decisions by hook, class and outcome (allow, granted, approved, ask_pending, owner_denied, expired, denied, refused, egress_unlocked)",
            decisions.clone(),
        );
        let hook_latency = Family::<HookLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "hook_latency_seconds",
            "Time to answer a hook request, including any approval wait",
            hook_latency.clone(),
        );
        let approval_latency = latency_histogram();
        registry.register(
            "approval_latency_seconds",
            "Time from approval request to the owner's decision",
            approval_latency.clone(),
        );
        let pending_approvals = Gauge::default();
        registry.register(
            "pending_approvals",
            "Approval requests waiting for the owner",
            pending_approvals.clone(),
        );
        let errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "errors",
            "Failed requests and internal errors by kind",
            errors.clone(),
        );
        let resolutions = Family::<KindLabels, Counter>::default();
        registry.register(
            "secret_resolutions",
            "SECRET_REF resolutions by outcome (resolved, refused)",
            resolutions.clone(),
        );
        let redactions = Counter::default();
        registry.register(
            "tool_result_redactions",
            "Tool results in which a secret was redacted",
            redactions.clone(),
        );
        let captures = Family::<KindLabels, Counter>::default();
        registry.register(
            "secret_captures",
            "Unknown secrets offered for capture into the vault, by outcome (queued, stored, failed, over_cap, queue_full)",
            captures.clone(),
        );
        let executed_mismatch = Counter::default();
        registry.register(
            "executed_mismatch",
            "Executed calls whose parameters differ from what Clawgate allowed",
            executed_mismatch.clone(),
        );
        let egress_lock_status = Gauge::default();
        // Until a lock is attached: none is configured.
        egress_lock_status.set(-1);
        registry.register(
            "egress_lock_status",
            "The nftables egress lock: 1 in force, 0 lost or not verified yet, -1 none configured",
            egress_lock_status.clone(),
        );
        let egress_lock_losses = Counter::default();
        registry.register(
            "egress_lock_losses",
            "Times the egress lock was found missing, altered or unreadable (or recreated between two checks)",
            egress_lock_losses.clone(),
        );
        let egress_lock_packets = Family::<CounterLabels, Gauge>::default();
        registry.register(
            "egress_lock_packets",
            "Packets counted by the egress lock's named nftables counters at the last check (agent_allowed_proxy, agent_rejected_tcp, agent_rejected_other)",
            egress_lock_packets.clone(),
        );
        let hub_connected = Gauge::default();
        hub_connected.set(-1);
        registry.register(
            "hub_connected",
            "The Hub link: 1 the last exchange succeeded, 0 it failed, -1 not enrolled",
            hub_connected.clone(),
        );
        let hub_health_score = Gauge::default();
        registry.register(
            "hub_health_score",
            "The 0-100 health score sent with the last heartbeat",
            hub_health_score.clone(),
        );
        let hub_requests = Family::<HubLabels, Counter>::default();
        registry.register(
            "hub_requests",
            "Requests to the Hub by operation and outcome (ok, retryable, fatal, blocked)",
            hub_requests.clone(),
        );
        let hub_rejections = Family::<RejectLabels, Counter>::default();
        registry.register(
            "hub_rejections",
            "Decisions, commands, bundles and keysets from the Hub refused, by reason code",
            hub_rejections.clone(),
        );
        let hub_outbox_depth = Family::<KindLabels, Gauge>::default();
        registry.register(
            "hub_outbox_depth",
            "Entries waiting in hub.db for the Hub, by queue (approval, bundle_status, command_result, usage)",
            hub_outbox_depth.clone(),
        );
        let hub_bundle_version = Gauge::default();
        registry.register(
            "hub_bundle_version",
            "Version of the signed bundle in force (0: none)",
            hub_bundle_version.clone(),
        );
        Metrics {
            registry,
            hub_connected,
            hub_health_score,
            hub_requests,
            hub_rejections,
            hub_outbox_depth,
            hub_bundle_version,
            calls_total: std::sync::atomic::AtomicU64::new(0),
            errors_total: std::sync::atomic::AtomicU64::new(0),
            egress_lock_status,
            egress_lock_losses,
            egress_lock_packets,
            decisions,
            hook_latency,
            approval_latency,
            pending_approvals,
            errors,
            resolutions,
            redactions,
            captures,
            executed_mismatch,
        }
    }

    pub(crate) fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabels { kind }).inc();
        self.errors_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The egress lock's status and counters, after a check.
    pub(crate) fn set_egress_lock(
        &self,
        status: &crate::lock::LockStatus,
        counters: &std::collections::BTreeMap<String, u64>,
    ) {
        let up = matches!(status, crate::lock::LockStatus::Held);
        self.egress_lock_status.set(i64::from(up));
        for (name, packets) in counters {
            self.egress_lock_packets
                .get_or_create(&CounterLabels {
                    counter: name.clone(),
                })
                .set(i64::try_from(*packets).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
