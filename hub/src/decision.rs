//! Checking a signed approval decision from the Hub: a pure function of the decision, the
//! keyset, this appliance's identity, the local approval it claims to answer, the time and the
//! set of approval ids that already consumed a decision.
//!
//! Every rejection has its own [`Rejection`] variant and [`Rejection::code`] for the audit log.
//! The checks run in this order (the first failure is the reason): signature (kid pinned, then
//! `verify_strict`), tenant, appliance, replay, the local request (known, pending, same action
//! hash), then times.
//!
//! For the caller (the Hub sync code): record the accepted decision in `clawgate.db` first (its
//! approval must still be pending there, which makes it single-use on its own), then mark the
//! approval id consumed in the outbox. A crash in between re-delivers the decision, which is
//! then refused as `not_pending`, never applied twice; the other order could lose the decision.

use std::collections::{BTreeSet, HashSet};

use crate::protocol::{DecisionKind, SignedDecision};
use crate::signing::{Keyset, SignatureError, verify};

/// How far the Hub's clock may be ahead of ours (decided in the future) or our clock ahead of
/// the decision's expiry, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// This appliance, as enrolled.
#[derive(Debug, Clone, Copy)]
pub struct Me<'a> {
    /// Tenant.
    pub tenant_id: &'a str,
    /// Appliance.
    pub appliance_id: &'a str,
}

/// Where a local approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalStatus {
    /// Waiting for an answer.
    Pending,
    /// Already answered (by an earlier decision or locally).
    Decided,
    /// Expired, or cleared by a policy change.
    Expired,
}

/// The local approval request a decision claims to answer.
#[derive(Debug, Clone, Copy)]
pub struct LocalApproval<'a> {
    /// Its id.
    pub approval_id: &'a str,
    /// Its action hash.
    pub action_hash: &'a str,
    /// Its status.
    pub status: LocalStatus,
    /// Its own expiry, Unix seconds (appliance clock).
    pub expires_at: i64,
}

/// Approval ids that already consumed a decision.
pub trait ConsumedSet {
    /// True if `approval_id` consumed a decision before.
    fn contains_id(&self, approval_id: &str) -> bool;
}

impl ConsumedSet for HashSet<String> {
    fn contains_id(&self, approval_id: &str) -> bool {
        self.contains(approval_id)
    }
}

impl ConsumedSet for BTreeSet<String> {
    fn contains_id(&self, approval_id: &str) -> bool {
        self.contains(approval_id)
    }
}

/// A decision that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The approval it answers.
    pub approval_id: String,
    /// Its action hash.
    pub action_hash: String,
    /// Allow once, for 24 h, or deny.
    pub decision: DecisionKind,
    /// When the owner decided, Unix seconds (Hub clock).
    pub decided_at: i64,
    /// Void after, Unix seconds.
    pub expires_at: i64,
    /// Who decided.
    pub decided_by: String,
    /// The key that signed it.
    pub kid: String,
}

/// Why a decision was refused. Each variant is one audited reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The signature or payload is malformed.
    #[error("malformed decision: {0}")]
    Malformed(String),
    /// Signed by a key that is not pinned.
    #[error("decision signed by key `{0}`, which is not pinned")]
    UnknownKid(String),
    /// The signature does not verify.
    #[error("decision signature by key `{0}` does not verify (forged or altered)")]
    BadSignature(String),
    /// For another tenant.
    #[error("decision is for tenant `{found}`, this appliance is in `{expected}`")]
    WrongTenant {
        /// In the decision.
        found: String,
        /// Ours.
        expected: String,
    },
    /// For another appliance.
    #[error("decision is for appliance `{found}`, this is `{expected}`")]
    WrongAppliance {
        /// In the decision.
        found: String,
        /// Ours.
        expected: String,
    },
    /// This approval id already consumed a decision.
    #[error("decision for approval {0} was already used (replay)")]
    Replayed(String),
    /// No such local request.
    #[error("decision for approval {0}, which this appliance never asked for")]
    UnknownApproval(String),
    /// The local request is no longer pending.
    #[error("decision for approval {id}, which is {status} here, not pending")]
    NotPending {
        /// Approval id.
        id: String,
        /// `decided` or `expired`.
        status: &'static str,
    },
    /// The action hash differs from the request's.
    #[error(
        "decision for approval {id} names another action (hash {found}, request has {expected})"
    )]
    ActionMismatch {
        /// Approval id.
        id: String,
        /// In the decision.
        found: String,
        /// The request's.
        expected: String,
    },
    /// `expires_at` not after `decided_at`.
    #[error(
        "decision times are inconsistent: expires {expires_at} is not after decided {decided_at}"
    )]
    InconsistentTimes {
        /// Decided.
        decided_at: i64,
        /// Expires.
        expires_at: i64,
    },
    /// Decided more than [`MAX_SKEW_SECS`] in our future.
    #[error(
        "decision is dated {decided_at}, more than {MAX_SKEW_SECS} s after now ({now}): clock skew or forgery"
    )]
    DecidedInFuture {
        /// Decided.
        decided_at: i64,
        /// Our now.
        now: i64,
    },
    /// Expired more than [`MAX_SKEW_SECS`] ago.
    #[error("decision expired at {expires_at} (now {now})")]
    DecisionExpired {
        /// Expiry.
        expires_at: i64,
        /// Our now.
        now: i64,
    },
    /// The local request's own expiry passed.
    #[error("approval {id} expired at {expires_at} before the decision arrived (now {now})")]
    RequestExpired {
        /// Approval id.
        id: String,
        /// Its expiry.
        expires_at: i64,
        /// Our now.
        now: i64,
    },
}

impl Rejection {
    /// A stable code for the audit log and metrics, distinct per variant.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::UnknownKid(_) => "unknown_kid",
            Rejection::BadSignature(_) => "bad_signature",
            Rejection::WrongTenant { .. } => "wrong_tenant",
            Rejection::WrongAppliance { .. } => "wrong_appliance",
            Rejection::Replayed(_) => "replayed",
            Rejection::UnknownApproval(_) => "unknown_approval",
            Rejection::NotPending { .. } => "not_pending",
            Rejection::ActionMismatch { .. } => "action_mismatch",
            Rejection::InconsistentTimes { .. } => "inconsistent_times",
            Rejection::DecidedInFuture { .. } => "decided_in_future",
            Rejection::DecisionExpired { .. } => "decision_expired",
            Rejection::RequestExpired { .. } => "request_expired",
        }
    }
}

/// Checks `signed` (see the module docs). `local` is the request with the decision's approval
/// id, if this appliance has one.
pub fn check(
    signed: &SignedDecision,
    keyset: &Keyset,
    me: Me<'_>,
    local: Option<LocalApproval<'_>>,
    now: i64,
    consumed: &dyn ConsumedSet,
) -> Result<Accepted, Rejection> {
    let d = verify(signed, keyset).map_err(|e| match e {
        SignatureError::UnknownKid(kid) => Rejection::UnknownKid(kid),
        SignatureError::BadSignature(kid) => Rejection::BadSignature(kid),
        SignatureError::Malformed(why) => Rejection::Malformed(why),
    })?;
    let id = crate::signing::escape(&d.approval_id);
    if d.tenant_id != me.tenant_id {
        return Err(Rejection::WrongTenant {
            found: crate::signing::escape(&d.tenant_id),
            expected: me.tenant_id.to_owned(),
        });
    }
    if d.appliance_id != me.appliance_id {
        return Err(Rejection::WrongAppliance {
            found: crate::signing::escape(&d.appliance_id),
            expected: me.appliance_id.to_owned(),
        });
    }
    if consumed.contains_id(&d.approval_id) {
        return Err(Rejection::Replayed(id));
    }
    let local = match local {
        Some(l) if l.approval_id == d.approval_id => l,
        _ => return Err(Rejection::UnknownApproval(id)),
    };
    match local.status {
        LocalStatus::Pending => {}
        LocalStatus::Decided => {
            return Err(Rejection::NotPending {
                id,
                status: "decided",
            });
        }
        LocalStatus::Expired => {
            return Err(Rejection::NotPending {
                id,
                status: "expired",
            });
        }
    }
    if d.action_hash != local.action_hash {
        return Err(Rejection::ActionMismatch {
            id,
            found: crate::signing::escape(&d.action_hash),
            expected: local.action_hash.to_owned(),
        });
    }
    check_times(d.decided_at, d.expires_at, now)?;
    if now >= local.expires_at {
        return Err(Rejection::RequestExpired {
            id,
            expires_at: local.expires_at,
            now,
        });
    }
    Ok(Accepted {
        approval_id: d.approval_id.clone(),
        action_hash: d.action_hash.clone(),
        decision: d.decision,
        decided_at: d.decided_at,
        expires_at: d.expires_at,
        decided_by: d.decided_by.clone(),
        kid: d.kid.clone(),
    })
}

fn check_times(decided_at: i64, expires_at: i64, now: i64) -> Result<(), Rejection> {
    if expires_at <= decided_at {
        return Err(Rejection::InconsistentTimes {
            decided_at,
            expires_at,
        });
    }
    if decided_at > now.saturating_add(MAX_SKEW_SECS) {
        return Err(Rejection::DecidedInFuture { decided_at, now });
    }
    if now > expires_at.saturating_add(MAX_SKEW_SECS) {
        return Err(Rejection::DecisionExpired { expires_at, now });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
