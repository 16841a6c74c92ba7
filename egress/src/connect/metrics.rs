//! Prometheus metrics of the CONNECT listener (prefix `clawgate_egress_connect_`). Labels carry
//! outcomes and directions only: never a host, an agent's token or a byte of traffic.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

/// Every metric of the CONNECT listener.
#[derive(Debug)]
pub struct ConnectMetrics {
    registry: Option<Registry>,
    requests: Family<OutcomeLabels, Counter>,
    bypass_attempts: Counter,
    bytes: Family<DirectionLabels, Counter>,
    open_tunnels: Gauge,
}

impl Default for ConnectMetrics {
    fn default() -> Self {
        ConnectMetrics::new()
    }
}

impl ConnectMetrics {
    /// Metrics in their own registry (prefix `clawgate_egress_connect`); see
    /// [`ConnectMetrics::encode`].
    pub fn new() -> ConnectMetrics {
        let mut registry = Registry::with_prefix("clawgate_egress_connect");
        let m = ConnectMetrics::unregistered();
        m.register(&mut registry);
        ConnectMetrics {
            registry: Some(registry),
            ..m
        }
    }

    /// Metrics registered into `registry` under the sub-prefix `egress_connect` (so the daemon
    /// serves one exposition); [`ConnectMetrics::encode`] then returns nothing, encode the
    /// registry instead.
    pub fn register_into(registry: &mut Registry) -> ConnectMetrics {
        let m = ConnectMetrics::unregistered();
        m.register(registry.sub_registry_with_prefix("egress_connect"));
        m
    }

    fn unregistered() -> ConnectMetrics {
        ConnectMetrics {
            registry: None,
            requests: Family::default(),
            bypass_attempts: Counter::default(),
            bytes: Family::default(),
            open_tunnels: Gauge::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "requests",
            "CONNECT requests by outcome (tunnelled, or why it was refused or ended early)",
            self.requests.clone(),
        );
        r.register(
            "bypass_attempts",
            "CONNECT requests to an LLM provider host (refused: that traffic must use the redacting reverse routes)",
            self.bypass_attempts.clone(),
        );
        r.register(
            "bytes",
            "Bytes carried by tunnels, by direction (up: agent to host, down: host to agent)",
            self.bytes.clone(),
        );
        r.register(
            "open_tunnels",
            "Tunnels open now",
            self.open_tunnels.clone(),
        );
    }

    pub(crate) fn outcome(&self, outcome: &'static str) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub(crate) fn bypass_attempt(&self) {
        self.bypass_attempts.inc();
    }

    pub(crate) fn bytes_counter(&self, direction: &'static str) -> Counter {
        self.bytes
            .get_or_create(&DirectionLabels { direction })
            .clone()
    }

    pub(crate) fn open_tunnels(&self) -> &Gauge {
        &self.open_tunnels
    }

    /// How many CONNECT requests ended with `outcome` (a metric label value).
    pub fn requests_with_outcome(&self, outcome: &'static str) -> u64 {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }

    /// How many bypass attempts were seen.
    pub fn bypass_attempts(&self) -> u64 {
        self.bypass_attempts.get()
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
