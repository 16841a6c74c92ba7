//! The heartbeat's health score: 0–100, the sum of five components of 0–20, from plain facts the
//! daemon already knows. Pure, so the rules below are tested as a table.
//!
//! | component | points | rule |
//! |---|---|---|
//! | connectivity | 20 | last successful Hub exchange ≤ 2 heartbeat intervals ago: 20; ≤ 5: 10; older or never: 0. Then capped at 10 while the circuit breaker is half-open, 5 while open |
//! | sync freshness | 8 + 8 + 4 | last event poll ≤ 120 s ago: 8, ≤ 900 s: 4, else 0 · oldest unsent outbox entry none or ≤ 300 s old: 8, ≤ 3,600 s: 4, else 0 · clock skew to the Hub known and ≤ 60 s: 4, ≤ 300 s: 2, else 0 |
//! | policy compliance | 10 + 6 + 4 | signed bundle in force and unexpired: 10, expired (still enforced, asking for everything above green): 4, none (built-in policy only): 0 · egress lock active: 6, unknown: 2, inactive: 0 · OpenClaw plugin present: 4 |
//! | runtime health | 10 + 10 | 0 if the vault cannot be opened; else hook errors ≤ 1 % of calls in the last hour: 10, ≤ 5 %: 5, else 0 (errors with no calls counted: 0) · the same for the egress proxy |
//! | stability | 10 + 10 | restarts in 24 h: 0 → 10, 1–2 → 5, more → 0 · failed Hub requests in the last hour: 0 → 10, 1–5 → 5, more → 0 |
//!
//! Bands: healthy ≥ 80, warning ≥ 60, degraded ≥ 40, critical below (the brief's thresholds;
//! the fleet seed's 90/70/40 were not taken).

use crate::backoff::CircuitState;
use crate::protocol::{Band, EgressLock, Health, HealthComponents};

/// The policy in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFact {
    /// Only the built-in policy (no signed bundle accepted yet).
    None,
    /// A signed bundle, unexpired.
    Current,
    /// A signed bundle past its expiry (kept, with everything above green asked).
    Expired,
}

/// What the daemon knows about itself; every field a plain fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthFacts {
    /// Seconds since the last successful request to the Hub (`None`: never).
    pub last_hub_success_age_secs: Option<u64>,
    /// The heartbeat interval in force, seconds.
    pub heartbeat_interval_secs: u64,
    /// The circuit breaker.
    pub circuit: CircuitState,
    /// Seconds since the last successful event poll (`None`: never).
    pub last_event_poll_age_secs: Option<u64>,
    /// Age of the oldest unsent outbox entry, seconds (`None`: nothing waiting).
    pub oldest_unsent_age_secs: Option<u64>,
    /// Hub clock minus ours, seconds (`None`: not measured yet).
    pub clock_skew_secs: Option<i64>,
    /// The policy in force.
    pub bundle: BundleFact,
    /// The nftables egress lock.
    pub egress_lock: EgressLock,
    /// The OpenClaw plugin is installed and enabled.
    pub plugin_present: bool,
    /// The vault opens.
    pub vault_ok: bool,
    /// Hook calls in the last hour.
    pub hook_calls_1h: u64,
    /// Of which failed (500s, timeouts).
    pub hook_errors_1h: u64,
    /// Proxy requests in the last hour.
    pub proxy_requests_1h: u64,
    /// Of which failed on Clawgate's side.
    pub proxy_errors_1h: u64,
    /// Daemon starts in the last 24 hours, not counting the first.
    pub restarts_24h: u32,
    /// Failed Hub requests in the last hour.
    pub failed_pushes_1h: u64,
}

/// The band of a score.
pub fn band(score: u8) -> Band {
    match score {
        80.. => Band::Healthy,
        60..=79 => Band::Warning,
        40..=59 => Band::Degraded,
        _ => Band::Critical,
    }
}

/// Scores `facts` (see the module docs).
pub fn score(facts: &HealthFacts) -> Health {
    let components = HealthComponents {
        connectivity: connectivity(facts),
        sync_freshness: sync_freshness(facts),
        policy_compliance: policy_compliance(facts),
        runtime_health: runtime_health(facts),
        stability: stability(facts),
    };
    let score = components.connectivity
        + components.sync_freshness
        + components.policy_compliance
        + components.runtime_health
        + components.stability;
    Health {
        score,
        band: band(score),
        components,
    }
}

fn connectivity(f: &HealthFacts) -> u8 {
    let interval = f.heartbeat_interval_secs.max(1);
    let by_age = match f.last_hub_success_age_secs {
        Some(age) if age <= interval.saturating_mul(2) => 20,
        Some(age) if age <= interval.saturating_mul(5) => 10,
        _ => 0,
    };
    match f.circuit {
        CircuitState::Closed => by_age,
        CircuitState::HalfOpen => by_age.min(10),
        CircuitState::Open => by_age.min(5),
    }
}

fn sync_freshness(f: &HealthFacts) -> u8 {
    let events = match f.last_event_poll_age_secs {
        Some(age) if age <= 120 => 8,
        Some(age) if age <= 900 => 4,
        _ => 0,
    };
    let outbox = match f.oldest_unsent_age_secs {
        None => 8,
        Some(age) if age <= 300 => 8,
        Some(age) if age <= 3600 => 4,
        Some(_) => 0,
    };
    let clock = match f.clock_skew_secs.map(i64::unsigned_abs) {
        Some(skew) if skew <= 60 => 4,
        Some(skew) if skew <= 300 => 2,
        _ => 0,
    };
    events + outbox + clock
}

fn policy_compliance(f: &HealthFacts) -> u8 {
    let bundle = match f.bundle {
        BundleFact::Current => 10,
        BundleFact::Expired => 4,
        BundleFact::None => 0,
    };
    let lock = match f.egress_lock {
        EgressLock::Active => 6,
        EgressLock::Unknown => 2,
        EgressLock::Inactive => 0,
    };
    let plugin = if f.plugin_present { 4 } else { 0 };
    bundle + lock + plugin
}

/// 10 when errors are at most 1 % of the total (or there were none), 5 at most 5 %, else 0.
/// Errors with no counted total count as 100 %.
fn error_rate_points(errors: u64, total: u64) -> u8 {
    let errors = u128::from(errors);
    let total = u128::from(total);
    if errors == 0 {
        10
    } else if total == 0 {
        0
    } else if errors * 100 <= total {
        10
    } else if errors * 100 <= total * 5 {
        5
    } else {
        0
    }
}

fn runtime_health(f: &HealthFacts) -> u8 {
    if !f.vault_ok {
        return 0;
    }
    error_rate_points(f.hook_errors_1h, f.hook_calls_1h)
        + error_rate_points(f.proxy_errors_1h, f.proxy_requests_1h)
}

fn stability(f: &HealthFacts) -> u8 {
    let restarts = match f.restarts_24h {
        0 => 10,
        1..=2 => 5,
        _ => 0,
    };
    let pushes = match f.failed_pushes_1h {
        0 => 10,
        1..=5 => 5,
        _ => 0,
    };
    restarts + pushes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> HealthFacts {
        HealthFacts {
            last_hub_success_age_secs: Some(30),
            heartbeat_interval_secs: 60,
            circuit: CircuitState::Closed,
            last_event_poll_age_secs: Some(10),
            oldest_unsent_age_secs: None,
            clock_skew_secs: Some(-2),
            bundle: BundleFact::Current,
            egress_lock: EgressLock::Active,
            plugin_present: true,
            vault_ok: true,
            hook_calls_1h: 1000,
            hook_errors_1h: 0,
            proxy_requests_1h: 200,
            proxy_errors_1h: 0,
            restarts_24h: 0,
            failed_pushes_1h: 0,
        }
    }

    type Change = fn(&mut HealthFacts);

    /// (name, change to the healthy facts, expected [conn, sync, policy, runtime, stability]).
    const TABLE: &[(&str, Change, [u8; 5])] = &[
        ("all well", |_| {}, [20, 20, 20, 20, 20]),
        (
            "hub last reached 3 intervals ago",
            |f| f.last_hub_success_age_secs = Some(180),
            [10, 20, 20, 20, 20],
        ),
        (
            "hub last reached exactly 2 intervals ago",
            |f| f.last_hub_success_age_secs = Some(120),
            [20, 20, 20, 20, 20],
        ),
        (
            "hub never reached",
            |f| f.last_hub_success_age_secs = None,
            [0, 20, 20, 20, 20],
        ),
        (
            "breaker open",
            |f| f.circuit = CircuitState::Open,
            [5, 20, 20, 20, 20],
        ),
        (
            "breaker half-open",
            |f| f.circuit = CircuitState::HalfOpen,
            [10, 20, 20, 20, 20],
        ),
        (
            "events stale 10 min",
            |f| f.last_event_poll_age_secs = Some(600),
            [20, 16, 20, 20, 20],
        ),
        (
            "events never polled",
            |f| f.last_event_poll_age_secs = None,
            [20, 12, 20, 20, 20],
        ),
        (
            "outbox 20 min behind",
            |f| f.oldest_unsent_age_secs = Some(1200),
            [20, 16, 20, 20, 20],
        ),
        (
            "outbox 2 h behind",
            |f| f.oldest_unsent_age_secs = Some(7200),
            [20, 12, 20, 20, 20],
        ),
        (
            "outbox entry fresh",
            |f| f.oldest_unsent_age_secs = Some(300),
            [20, 20, 20, 20, 20],
        ),
        (
            "clock 2 min fast",
            |f| f.clock_skew_secs = Some(120),
            [20, 18, 20, 20, 20],
        ),
        (
            "clock 10 min slow",
            |f| f.clock_skew_secs = Some(-600),
            [20, 16, 20, 20, 20],
        ),
        (
            "skew unknown",
            |f| f.clock_skew_secs = None,
            [20, 16, 20, 20, 20],
        ),
        (
            "bundle expired",
            |f| f.bundle = BundleFact::Expired,
            [20, 20, 14, 20, 20],
        ),
        (
            "no bundle yet",
            |f| f.bundle = BundleFact::None,
            [20, 20, 10, 20, 20],
        ),
        (
            "egress lock missing",
            |f| f.egress_lock = EgressLock::Inactive,
            [20, 20, 14, 20, 20],
        ),
        (
            "egress lock unknown",
            |f| f.egress_lock = EgressLock::Unknown,
            [20, 20, 16, 20, 20],
        ),
        (
            "plugin missing",
            |f| f.plugin_present = false,
            [20, 20, 16, 20, 20],
        ),
        ("vault broken", |f| f.vault_ok = false, [20, 20, 20, 0, 20]),
        (
            "hook errors 1 %",
            |f| f.hook_errors_1h = 10,
            [20, 20, 20, 20, 20],
        ),
        (
            "hook errors 3 %",
            |f| f.hook_errors_1h = 30,
            [20, 20, 20, 15, 20],
        ),
        (
            "hook errors 50 %",
            |f| f.hook_errors_1h = 500,
            [20, 20, 20, 10, 20],
        ),
        (
            "proxy errors 6 %",
            |f| f.proxy_errors_1h = 12,
            [20, 20, 20, 10, 20],
        ),
        (
            "idle: no calls at all",
            |f| {
                f.hook_calls_1h = 0;
                f.proxy_requests_1h = 0;
            },
            [20, 20, 20, 20, 20],
        ),
        (
            "errors with no calls counted",
            |f| {
                f.hook_calls_1h = 0;
                f.hook_errors_1h = 3;
            },
            [20, 20, 20, 10, 20],
        ),
        (
            "restarted twice",
            |f| f.restarts_24h = 2,
            [20, 20, 20, 20, 15],
        ),
        ("restart loop", |f| f.restarts_24h = 9, [20, 20, 20, 20, 10]),
        (
            "some failed pushes",
            |f| f.failed_pushes_1h = 5,
            [20, 20, 20, 20, 15],
        ),
        (
            "many failed pushes",
            |f| f.failed_pushes_1h = 6,
            [20, 20, 20, 20, 10],
        ),
    ];

    #[test]
    fn components_follow_the_rules() {
        for (name, change, want) in TABLE {
            let mut f = healthy();
            change(&mut f);
            let h = score(&f);
            let c = h.components;
            let got = [
                c.connectivity,
                c.sync_freshness,
                c.policy_compliance,
                c.runtime_health,
                c.stability,
            ];
            assert_eq!(&got, want, "{name}");
            assert_eq!(h.score, want.iter().sum::<u8>(), "{name}");
            assert_eq!(h.band, band(h.score), "{name}");
        }
    }

    #[test]
    fn band_boundaries() {
        let table = [
            (100, Band::Healthy),
            (80, Band::Healthy),
            (79, Band::Warning),
            (60, Band::Warning),
            (59, Band::Degraded),
            (40, Band::Degraded),
            (39, Band::Critical),
            (0, Band::Critical),
        ];
        for (s, b) in table {
            assert_eq!(band(s), b, "{s}");
        }
    }

    #[test]
    fn cut_off_from_the_hub_is_degraded_and_a_restart_loop_makes_it_critical() {
        let f = HealthFacts {
            last_hub_success_age_secs: None,
            circuit: CircuitState::Open,
            last_event_poll_age_secs: None,
            oldest_unsent_age_secs: Some(86_400),
            clock_skew_secs: None,
            bundle: BundleFact::Expired,
            egress_lock: EgressLock::Unknown,
            failed_pushes_1h: 60,
            ..healthy()
        };
        let h = score(&f);
        assert_eq!(h.components.connectivity, 0);
        assert_eq!(h.components.sync_freshness, 0);
        assert_eq!(h.components.policy_compliance, 10);
        assert_eq!(h.score, 40);
        assert_eq!(h.band, Band::Degraded);
        let h = score(&HealthFacts {
            restarts_24h: 5,
            ..f
        });
        assert_eq!(h.score, 30);
        assert_eq!(h.band, Band::Critical);
    }

    #[test]
    fn every_score_is_within_range() {
        // All combinations of the coarse facts stay in 0..=100 and each component in 0..=20.
        for circuit in [
            CircuitState::Closed,
            CircuitState::Open,
            CircuitState::HalfOpen,
        ] {
            for bundle in [BundleFact::None, BundleFact::Current, BundleFact::Expired] {
                for lock in [
                    EgressLock::Active,
                    EgressLock::Inactive,
                    EgressLock::Unknown,
                ] {
                    for vault_ok in [true, false] {
                        let f = HealthFacts {
                            circuit,
                            bundle,
                            egress_lock: lock,
                            vault_ok,
                            hook_errors_1h: u64::MAX,
                            hook_calls_1h: u64::MAX,
                            ..healthy()
                        };
                        let h = score(&f);
                        let c = h.components;
                        for v in [
                            c.connectivity,
                            c.sync_freshness,
                            c.policy_compliance,
                            c.runtime_health,
                            c.stability,
                        ] {
                            assert!(v <= 20);
                        }
                        assert!(h.score <= 100);
                    }
                }
            }
        }
    }
}
