//! Prometheus metrics of the egress proxy (prefix `clawgate_egress_`). Labels carry routes,
//! statuses, detector and rule names and token kinds: never a token, key or body.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::usage::Usage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) route: &'static str,
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RedactionLabels {
    pub(crate) route: &'static str,
    pub(crate) detector: &'static str,
    pub(crate) rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TokenLabels {
    pub(crate) route: &'static str,
    pub(crate) kind: &'static str,
}

/// A budget refusal: `kind` is `tokens`, `cost` (the budget is spent) or `unpriced` (a cost
/// budget applies and a model has no price).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BudgetLabels {
    pub(crate) route: &'static str,
    pub(crate) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub(crate) route: &'static str,
    pub(crate) kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 10 µs .. ~5 s.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Option<Registry>,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) added_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub(crate) redactions: Family<RedactionLabels, Counter>,
    pub(crate) tokens: Family<TokenLabels, Counter>,
    pub(crate) upstream_errors: Family<ErrorLabels, Counter>,
    pub(crate) budget_refusals: Family<BudgetLabels, Counter>,
    pub(crate) incomplete_usage: Family<RouteLabels, Counter>,
    /// Every request answered (for the health score; not exported).
    answered: AtomicU64,
    /// Of which Clawgate itself failed (a refusal on its own side: no redactor, usage store
    /// down, redaction failed, no provider key). Not the provider's errors, not the client's.
    failed_here: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics in their own registry (prefix `clawgate_egress`); see [`Metrics::encode`].
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("clawgate_egress");
        let mut m = Self::unregistered();
        m.register(&mut registry);
        m.registry = Some(registry);
        m
    }

    /// Metrics registered into `registry` under the sub-prefix `egress` (so the daemon serves
    /// one exposition); [`Metrics::encode`] then returns nothing, encode the registry instead.
    pub fn register_into(registry: &mut Registry) -> Metrics {
        let mut m = Self::unregistered();
        m.register(registry.sub_registry_with_prefix("egress"));
        m
    }

    fn unregistered() -> Metrics {
        Metrics {
            registry: None,
            requests: Family::default(),
            added_latency: Family::new_with_constructor(latency_histogram),
            redactions: Family::default(),
            tokens: Family::default(),
            upstream_errors: Family::default(),
            budget_refusals: Family::default(),
            incomplete_usage: Family::default(),
            answered: AtomicU64::new(0),
            failed_here: AtomicU64::new(0),
        }
    }

    /// Counts one answered request; `failed_here`: Clawgate's own failure refused it.
    pub(crate) fn answered(&self, failed_here: bool) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if failed_here {
            self.failed_here.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests answered since start, and of those the ones Clawgate failed itself (what the
    /// Hub heartbeat's health score rates).
    pub fn health_counts(&self) -> (u64, u64) {
        (
            self.answered.load(Ordering::Relaxed),
            self.failed_here.load(Ordering::Relaxed),
        )
    }

    fn register(&mut self, r: &mut Registry) {
        r.register(
            "requests",
            "Requests by route and the status the client got (the provider's, or Clawgate's refusal)",
            self.requests.clone(),
        );
        r.register(
            "added_latency_seconds",
            "Time the proxy adds: request processing (redaction included) before the upstream is called, plus response-head handling",
            self.added_latency.clone(),
        );
        r.register(
            "redactions",
            "Secrets redacted from request bodies, by detector and rule",
            self.redactions.clone(),
        );
        r.register(
            "tokens",
            "Tokens metered, by route and kind (input, output, cache_read, cache_write)",
            self.tokens.clone(),
        );
        r.register(
            "upstream_errors",
            "Upstream failures by kind (connect: no response; stream: the response broke off)",
            self.upstream_errors.clone(),
        );
        r.register(
            "budget_refusals",
            "Requests refused by the agent's daily budget, by kind (tokens or cost: spent; unpriced: a cost budget and a model without a price)",
            self.budget_refusals.clone(),
        );
        r.register(
            "incomplete_usage",
            "Responses whose usage was not fully seen (cancelled, cut, or no usage reported)",
            self.incomplete_usage.clone(),
        );
    }

    pub(crate) fn tokens(&self, route: &'static str, u: &Usage) {
        for (kind, n) in [
            ("input", u.input),
            ("output", u.output),
            ("cache_read", u.cache_read),
            ("cache_write", u.cache_write),
        ] {
            if n > 0 {
                self.tokens
                    .get_or_create(&TokenLabels { route, kind })
                    .inc_by(n);
            }
        }
    }

    pub(crate) fn upstream_error(&self, route: &'static str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&ErrorLabels { route, kind })
            .inc();
    }

    pub(crate) fn budget_refusal(&self, route: &'static str, kind: &'static str) {
        self.budget_refusals
            .get_or_create(&BudgetLabels { route, kind })
            .inc();
    }

    /// The text exposition (empty when registered into another registry).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Some(r) = &self.registry
            && prometheus_client::encoding::text::encode(&mut out, r).is_err()
        {
            out.clear();
        }
        out
    }
}
