//! Every rejection reason, each from one change to an otherwise valid decision, plus the clock
//! boundaries.

use std::collections::{BTreeSet, HashSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::*;
use crate::protocol::DecisionPayload;
use crate::signing::sign;
use crate::signing::tests::{vector_key, vector_keyset};

const ACTION: &str = "5b3463b0333e6e3f5ba9dc7b4974a83c4792bc64bcad7859941e8551924ed0c3";
const ID: &str = "ap_0123456789abcdef";
const DECIDED: i64 = 1_795_000_300;
const EXPIRES: i64 = 1_795_086_000;

fn payload() -> DecisionPayload {
    DecisionPayload {
        tenant_id: "tenant-example".into(),
        appliance_id: "appl-0001".into(),
        approval_id: ID.into(),
        action_hash: ACTION.into(),
        decision: DecisionKind::AllowOnce,
        decided_at: DECIDED,
        expires_at: EXPIRES,
        decided_by: "user:owner".into(),
        kid: "hub-sign-2026-01".into(),
    }
}

struct Case {
    name: &'static str,
    decision: SignedDecision,
    local: Option<LocalApproval<'static>>,
    now: i64,
    consumed: HashSet<String>,
}

fn local() -> LocalApproval<'static> {
    LocalApproval {
        approval_id: ID,
        action_hash: ACTION,
        status: LocalStatus::Pending,
        expires_at: EXPIRES,
    }
}

fn base(name: &'static str) -> Case {
    Case {
        name,
        decision: sign(&payload(), &vector_key("hub-sign-2026-01")).unwrap(),
        local: Some(local()),
        now: DECIDED + 5,
        consumed: HashSet::new(),
    }
}

fn signed_with(f: impl FnOnce(&mut DecisionPayload)) -> SignedDecision {
    let mut p = payload();
    f(&mut p);
    sign(&p, &vector_key("hub-sign-2026-01")).unwrap()
}

fn run(c: &Case) -> Result<Accepted, Rejection> {
    check(
        &c.decision,
        &vector_keyset(),
        Me {
            tenant_id: "tenant-example",
            appliance_id: "appl-0001",
        },
        c.local,
        c.now,
        &c.consumed,
    )
}

fn rejections() -> Vec<(Case, &'static str)> {
    let mut v = Vec::new();

    let mut c = base("signed by another key under a pinned kid (forged)");
    c.decision = sign(&payload(), &vector_key("hub-sign-2026-07")).unwrap();
    v.push((c, "bad_signature"));

    let mut c = base("changed after signing");
    c.decision.signed.decision = DecisionKind::Allow24h;
    v.push((c, "bad_signature"));

    let mut c = base("kid not pinned");
    let mut p = payload();
    p.kid = "hub-sign-2026-07".into();
    c.decision = sign(&p, &vector_key("hub-sign-2026-07")).unwrap();
    v.push((c, "unknown_kid"));

    let mut c = base("signature not base64 of 64 bytes");
    c.decision.signature = B64.encode([7u8; 32]);
    v.push((c, "malformed"));

    let mut c = base("another tenant");
    c.decision = signed_with(|p| p.tenant_id = "tenant-other".into());
    v.push((c, "wrong_tenant"));

    let mut c = base("another appliance of the same tenant");
    c.decision = signed_with(|p| p.appliance_id = "appl-0002".into());
    v.push((c, "wrong_appliance"));

    let mut c = base("already consumed (replay)");
    c.consumed.insert(ID.into());
    v.push((c, "replayed"));

    let mut c = base("no local request");
    c.local = None;
    v.push((c, "unknown_approval"));

    let mut c = base("a local request with another id");
    c.local = Some(LocalApproval {
        approval_id: "ap_ffffffffffffffff",
        ..local()
    });
    v.push((c, "unknown_approval"));

    let mut c = base("request already decided");
    c.local = Some(LocalApproval {
        status: LocalStatus::Decided,
        ..local()
    });
    v.push((c, "not_pending"));

    let mut c = base("request expired or cleared by a policy change");
    c.local = Some(LocalApproval {
        status: LocalStatus::Expired,
        ..local()
    });
    v.push((c, "not_pending"));

    let mut c = base("another action");
    c.decision = signed_with(|p| p.action_hash = "00".repeat(32));
    v.push((c, "action_mismatch"));

    let mut c = base("expires before it was decided");
    c.decision = signed_with(|p| p.expires_at = p.decided_at);
    v.push((c, "inconsistent_times"));

    let mut c = base("decided 301 s in our future");
    c.now = DECIDED - 301;
    v.push((c, "decided_in_future"));

    let mut c = base("expired 301 s ago");
    c.now = EXPIRES + 301;
    c.local = Some(LocalApproval {
        expires_at: EXPIRES + 10_000,
        ..local()
    });
    v.push((c, "decision_expired"));

    let mut c = base("the local request expired first");
    c.now = DECIDED + 100;
    c.local = Some(LocalApproval {
        expires_at: DECIDED + 100,
        ..local()
    });
    v.push((c, "request_expired"));
    v
}

#[test]
fn a_valid_decision_is_accepted() {
    let accepted = run(&base("valid")).unwrap();
    assert_eq!(accepted.approval_id, ID);
    assert_eq!(accepted.decision, DecisionKind::AllowOnce);
    assert_eq!(accepted.kid, "hub-sign-2026-01");
    assert_eq!(accepted.decided_by, "user:owner");
}

#[test]
fn every_rejection_has_its_own_reason() {
    let mut codes = BTreeSet::new();
    for (case, want) in rejections() {
        let err = run(&case).expect_err(case.name);
        assert_eq!(err.code(), want, "{}: {err}", case.name);
        codes.insert(err.code());
    }
    // Thirteen distinct reasons, all exercised.
    assert_eq!(codes.len(), 13, "{codes:?}");
}

#[test]
fn clock_skew_boundaries() {
    let mut c = base("decided exactly 300 s in our future");
    c.now = DECIDED - 300;
    run(&c).unwrap();
    let mut c = base("300 s past expiry, request still open locally");
    c.now = EXPIRES + 300;
    c.local = Some(LocalApproval {
        expires_at: EXPIRES + 10_000,
        ..local()
    });
    run(&c).unwrap();
}

#[test]
fn each_change_to_a_valid_decision_is_caught_before_it_counts() {
    // A decision for one request cannot answer another: same signature, other local request.
    let mut c = base("re-targeted");
    c.local = Some(LocalApproval {
        approval_id: "ap_1111111111111111",
        action_hash: ACTION,
        ..local()
    });
    c.decision.signed.approval_id = "ap_1111111111111111".into();
    assert_eq!(run(&c).unwrap_err().code(), "bad_signature");
}

#[test]
fn a_btree_consumed_set_works_too() {
    let c = base("btree");
    let consumed: BTreeSet<String> = [ID.to_owned()].into();
    let err = check(
        &c.decision,
        &vector_keyset(),
        Me {
            tenant_id: "tenant-example",
            appliance_id: "appl-0001",
        },
        c.local,
        c.now,
        &consumed,
    )
    .unwrap_err();
    assert_eq!(err.code(), "replayed");
}
