//! Fault injection for the appliance's fault tests: answers that fail on purpose. The signed
//! object faults (decisions by an unpinned key or for another tenant, replays, rolled-back
//! bundles, unknown commands) are operations on [`crate::DevHub`]; this module holds the
//! transport faults and the clock skew, which apply to `/v1/` requests only (never the page or
//! the admin API).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

/// What a faulted request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// This status (500, 502, 503, 429, …) with the protocol's error body; 429 and 503 carry
    /// `Retry-After: retry_after`.
    Status {
        /// HTTP status.
        status: u16,
        /// Seconds for `Retry-After` (429 and 503 only).
        #[serde(default)]
        retry_after: Option<u32>,
    },
    /// Never answer (the connection stays open).
    Hang,
    /// Answer 200 with a `Content-Length` larger than the bytes sent, then drop the connection.
    Cut,
    /// Close the connection without an answer.
    Close,
}

/// One armed fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What happens.
    pub action: FaultAction,
    /// Only requests whose path starts with this (`/v1/events`, `/v1/usage`, …); every `/v1/`
    /// request if absent.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// How many requests it hits before it disarms itself; forever if absent.
    #[serde(default)]
    pub times: Option<u32>,
}

/// The armed faults and the clock skew.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Mutex<Vec<Fault>>,
    skew: AtomicI64,
    cursor_floor: AtomicI64,
}

impl Faults {
    /// Arms `fault` (after the ones already armed).
    pub fn arm(&self, fault: Fault) {
        if let Ok(mut list) = self.armed.lock() {
            list.push(fault);
        }
    }

    /// Disarms every fault and resets the skew.
    pub fn clear(&self) {
        if let Ok(mut list) = self.armed.lock() {
            list.clear();
        }
        self.skew.store(0, Ordering::SeqCst);
    }

    /// The armed faults.
    pub fn armed(&self) -> Vec<Fault> {
        self.armed.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The fault for a request to `path`, consuming one of its `times`. A poisoned lock
    /// answers 500: failing is the safe side for a fault injector.
    pub fn take(&self, path: &str) -> Option<FaultAction> {
        let Ok(mut list) = self.armed.lock() else {
            return Some(FaultAction::Status {
                status: 500,
                retry_after: None,
            });
        };
        let i = list.iter().position(|f| {
            f.path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
        })?;
        let action = list[i].action;
        if let Some(times) = list[i].times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                list.remove(i);
            }
        }
        Some(action)
    }

    /// Skews the Hub's clock by `secs` (heartbeat `server_time`, decisions' `decided_at`,
    /// commands' `issued_at`).
    pub fn set_skew(&self, secs: i64) {
        self.skew.store(secs, Ordering::SeqCst);
    }

    /// The clock skew in seconds.
    pub fn skew(&self) -> i64 {
        self.skew.load(Ordering::SeqCst)
    }

    /// Cursors at or below `seq` answer 410 `cursor_expired` from now on.
    pub fn expire_cursors_through(&self, seq: i64) {
        self.cursor_floor
            .fetch_max(seq.saturating_add(1), Ordering::SeqCst);
    }

    /// The lowest cursor seq still served (0 unless cursors were expired).
    pub fn cursor_floor(&self) -> i64 {
        self.cursor_floor.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_disarms_itself_and_prefixes_select() {
        let f = Faults::default();
        f.arm(Fault {
            action: FaultAction::Hang,
            path_prefix: Some("/v1/events".into()),
            times: Some(2),
        });
        assert_eq!(f.take("/v1/usage"), None);
        assert_eq!(f.take("/v1/events"), Some(FaultAction::Hang));
        assert_eq!(f.take("/v1/events"), Some(FaultAction::Hang));
        assert_eq!(f.take("/v1/events"), None);
        f.arm(Fault {
            action: FaultAction::Close,
            path_prefix: None,
            times: None,
        });
        for _ in 0..3 {
            assert_eq!(f.take("/v1/audit"), Some(FaultAction::Close));
        }
        f.clear();
        assert_eq!(f.take("/v1/audit"), None);
    }
}
