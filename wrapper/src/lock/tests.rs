//! The lock's state machine, and the engine's decision path with a fake probe.

use std::sync::Mutex;

use clawgate_policies::{Policy, Tier};

use super::*;
use crate::engine::{Hook, Reply, Timing};
use crate::store::Store;

fn counters(allowed: u64, tcp: u64, other: u64) -> LockReading {
    LockReading::InForce(
        [
            ("agent_allowed_proxy".to_owned(), allowed),
            ("agent_rejected_other".to_owned(), other),
            ("agent_rejected_tcp".to_owned(), tcp),
        ]
        .into_iter()
        .collect(),
    )
}

fn kinds(events: &[LockEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn the_state_machine_audits_every_transition_once() {
    use LockReading::*;
    // (reading, status after, events)
    let steps: Vec<(LockReading, &str, Vec<&str>)> = vec![
        (counters(0, 0, 0), "held", vec!["egress_lock.verified"]),
        (counters(2, 1, 0), "held", vec![]),
        (counters(2, 1, 0), "held", vec![]),
        (Missing, "lost", vec!["egress_lock.lost"]),
        // Still lost, for another reason: no second audit record.
        (Unreadable("nft timed out".into()), "lost", vec![]),
        (
            Altered(vec!["chain output has 0 rules, expected 1".into()]),
            "lost",
            vec![],
        ),
        // A restored table starts at 0: not a counter going backwards.
        (counters(0, 0, 0), "held", vec!["egress_lock.restored"]),
        (counters(5, 3, 1), "held", vec![]),
        // Recreated between two checks: the gap is audited.
        (
            counters(1, 3, 1),
            "held",
            vec!["egress_lock.lost", "egress_lock.restored"],
        ),
        (counters(1, 3, 1), "held", vec![]),
    ];
    let lock = EgressLock::new("openclaw", true);
    assert_eq!(lock.status(), LockStatus::Unverified);
    for (i, (reading, status, events)) in steps.into_iter().enumerate() {
        let got = lock.observe(reading);
        assert_eq!(lock.status().as_str(), status, "step {i}");
        assert_eq!(kinds(&got), events, "step {i}");
        for e in &got {
            assert_eq!(e.record["agent_user"], "openclaw");
            assert_eq!(e.record["table"], "inet clawgate_egress");
        }
    }
}

#[test]
fn reasons_say_what_happened() {
    let lock = EgressLock::new("openclaw", true);
    let lost = lock.observe(LockReading::Missing);
    assert!(
        lost[0].record["reason"]
            .as_str()
            .unwrap()
            .contains("missing (deleted, or the whole ruleset was flushed)"),
        "{lost:?}"
    );
    let reason = lock.block_reason().unwrap();
    assert!(reason.contains("egress lock"), "{reason}");
    assert!(reason.contains("is missing"), "{reason}");
    assert!(reason.contains("clawgate provision firewall"), "{reason}");
    // A huge alteration list is cut, so the block reason stays readable.
    let lock = EgressLock::new("openclaw", true);
    lock.observe(LockReading::Altered(vec!["x".repeat(5000)]));
    assert!(lock.block_reason().unwrap().len() < 1200);

    let lock = EgressLock::new("openclaw", true);
    lock.observe(counters(4, 0, 0));
    let gap = lock.observe(counters(1, 0, 0));
    assert!(
        gap[0].record["reason"]
            .as_str()
            .unwrap()
            .contains("counter agent_allowed_proxy went back from 4 to 1"),
        "{gap:?}"
    );
}

#[test]
fn a_lock_that_is_not_required_never_blocks() {
    let lock = EgressLock::new("openclaw", false);
    assert_eq!(lock.block_reason(), None);
    assert_eq!(
        kinds(&lock.observe(LockReading::Missing)),
        ["egress_lock.lost"]
    );
    assert_eq!(lock.block_reason(), None);
    let lock = EgressLock::new("openclaw", true);
    assert!(
        lock.block_reason()
            .unwrap()
            .contains("not been verified yet")
    );
}

/// A probe whose reading the test sets.
#[derive(Debug)]
struct FakeProbe(Mutex<LockReading>);

impl FakeProbe {
    fn set(&self, r: LockReading) {
        *self.0.lock().unwrap() = r;
    }
}

impl LockProbe for FakeProbe {
    fn read(&self) -> LockReading {
        self.0.lock().unwrap().clone()
    }
}

fn engine(dir: &std::path::Path, required: bool) -> Arc<Engine> {
    let store = Store::open(&dir.join("clawgate.db")).unwrap();
    let engine = Engine::new(
        Policy::default_policy().unwrap(),
        Tier::Balanced,
        "test".into(),
        None,
        [7; 32],
        store,
        Timing {
            approval_wait: Duration::from_millis(50),
            approval_expiry: Duration::from_secs(3600),
        },
    )
    .unwrap();
    Arc::new(engine.with_egress_lock(Arc::new(EgressLock::new("openclaw", required))))
}

fn call(id: &str, command: &str) -> Value {
    json!({"event": {"toolName": "exec", "params": {"command": command}, "toolCallId": id},
           "ctx": {"agentId": "main", "toolCallId": id}})
}

fn blocked_by_lock(r: &Reply) -> bool {
    matches!(r, Reply::Block(reason) if reason.contains("egress lock"))
}

fn audit_kinds(e: &Engine) -> Vec<String> {
    e.store()
        .audit_tail(1000)
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect()
}

#[tokio::test]
async fn tool_calls_are_blocked_until_the_lock_is_verified_and_while_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), true);
    let fake = Arc::new(FakeProbe(Mutex::new(LockReading::Missing)));
    let probe: Arc<dyn LockProbe> = fake.clone();

    // Not checked yet: blocked, health critical.
    let r = engine
        .decide(Hook::TrustedPolicy, &call("c0", "ls"))
        .await
        .unwrap();
    assert!(blocked_by_lock(&r), "{r:?}");
    assert!(
        r.to_json()["blockReason"]
            .as_str()
            .unwrap()
            .contains("not been verified yet")
    );
    assert_eq!(engine.health().unwrap()["status"], "critical");
    assert_eq!(engine.health().unwrap()["egressLock"], "unverified");

    // In force: decided as usual.
    fake.set(counters(0, 0, 0));
    check_now(&engine, &probe).await;
    let r = engine
        .decide(Hook::TrustedPolicy, &call("c1", "ls"))
        .await
        .unwrap();
    assert!(matches!(r, Reply::Allow(_)), "{r:?}");
    assert_eq!(engine.health().unwrap()["status"], "ok");
    assert_eq!(engine.health().unwrap()["egressLock"], "held");
    let metrics = engine.metrics_text();
    assert!(
        metrics.contains("clawgate_egress_lock_status 1"),
        "{metrics}"
    );

    // `nft flush ruleset`: the next check finds the table gone; every call is blocked, even
    // the second gate's echo of an answer given while the lock held.
    let Reply::Allow(returned) = engine
        .decide(Hook::TrustedPolicy, &call("c2", "ls"))
        .await
        .unwrap()
    else {
        panic!("not allowed");
    };
    fake.set(LockReading::Missing);
    check_now(&engine, &probe).await;
    let echo = json!({"event": {"toolName": "exec", "params": returned, "toolCallId": "c2"},
                      "ctx": {"agentId": "main", "toolCallId": "c2"}});
    let r = engine.decide(Hook::BeforeToolCall, &echo).await.unwrap();
    assert!(blocked_by_lock(&r), "{r:?}");
    let r = engine
        .decide(Hook::BeforeToolCall, &call("c3", "ls"))
        .await
        .unwrap();
    assert!(blocked_by_lock(&r), "{r:?}");
    assert!(
        r.to_json()["blockReason"]
            .as_str()
            .unwrap()
            .contains("is missing")
    );
    assert_eq!(engine.health().unwrap()["status"], "critical");
    assert_eq!(engine.health().unwrap()["egressLock"], "lost");
    let metrics = engine.metrics_text();
    assert!(
        metrics.contains("clawgate_egress_lock_status 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("clawgate_egress_lock_losses_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "clawgate_decisions_total{hook=\"before_tool_call\",class=\"unclassified\",outcome=\"egress_unlocked\"} 2"
        ),
        "{metrics}"
    );

    // Restored: the same call passes again (a lock block is not remembered).
    fake.set(counters(1, 0, 0));
    check_now(&engine, &probe).await;
    let r = engine
        .decide(Hook::BeforeToolCall, &call("c3", "ls"))
        .await
        .unwrap();
    assert!(matches!(r, Reply::Allow(_)), "{r:?}");
    let metrics = engine.metrics_text();
    assert!(
        metrics.contains("clawgate_egress_lock_packets{counter=\"agent_allowed_proxy\"} 1"),
        "{metrics}"
    );

    let kinds = audit_kinds(&engine);
    let lock_kinds: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| k.starts_with("egress_lock."))
        .collect();
    assert_eq!(
        lock_kinds,
        [
            "egress_lock.verified",
            "egress_lock.lost",
            "egress_lock.restored"
        ]
    );
    // Each block is an audited decision with its outcome.
    let unlocked = engine
        .store()
        .audit_tail(1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "decision" && r.record.contains("\"egress_unlocked\""))
        .count();
    assert_eq!(unlocked, 3);
    engine.store().verify_audit().unwrap();
}

#[tokio::test]
async fn a_call_approved_after_the_lock_was_lost_is_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("clawgate.db")).unwrap();
    let engine = Engine::new(
        Policy::default_policy().unwrap(),
        Tier::Supervised,
        "test".into(),
        None,
        [7; 32],
        store,
        Timing {
            approval_wait: Duration::from_secs(20),
            approval_expiry: Duration::from_secs(3600),
        },
    )
    .unwrap()
    .with_egress_lock(Arc::new(EgressLock::new("openclaw", true)));
    let engine = Arc::new(engine);
    record(&engine, counters(0, 0, 0));
    // Supervised: writing a file in the home directory asks the owner; the call is held.
    let held = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .decide(
                    Hook::TrustedPolicy,
                    &call("a1", "echo hi > /home/agent/notes.txt"),
                )
                .await
        }
    });
    let mut pending = Vec::new();
    for _ in 0..500 {
        pending = engine
            .store()
            .list(Some(crate::store::Status::Pending), 10)
            .unwrap();
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pending.len(), 1, "the call was not held for approval");
    // The table disappears while the owner is deciding; then the owner approves.
    record(&engine, LockReading::Missing);
    engine
        .answer(&pending[0].id, true, crate::store::GrantKind::Once, "test")
        .unwrap();
    let r = held.await.unwrap().unwrap();
    assert!(blocked_by_lock(&r), "{r:?}");
}

#[tokio::test]
async fn the_watcher_checks_at_once_and_then_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), true);
    let fake = Arc::new(FakeProbe(Mutex::new(counters(0, 0, 0))));
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(watch(
        engine.clone(),
        fake.clone(),
        Duration::from_millis(20),
        stop_rx,
    ));
    let lock = engine.egress_lock().unwrap().clone();
    wait_for(|| lock.status() == LockStatus::Held).await;
    fake.set(LockReading::Altered(vec!["unexpected set leak".into()]));
    wait_for(|| matches!(lock.status(), LockStatus::Lost(_))).await;
    let r = engine
        .decide(Hook::TrustedPolicy, &call("w1", "ls"))
        .await
        .unwrap();
    assert!(
        matches!(&r, Reply::Block(reason) if reason.contains("unexpected set leak")),
        "{r:?}"
    );
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn without_a_lock_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("clawgate.db")).unwrap();
    let engine = Engine::new(
        Policy::default_policy().unwrap(),
        Tier::Balanced,
        "test".into(),
        None,
        [7; 32],
        store,
        Timing {
            approval_wait: Duration::from_millis(50),
            approval_expiry: Duration::from_secs(3600),
        },
    )
    .unwrap();
    let r = engine
        .decide(Hook::TrustedPolicy, &call("n1", "ls"))
        .await
        .unwrap();
    assert!(matches!(r, Reply::Allow(_)), "{r:?}");
    assert_eq!(engine.health().unwrap()["egressLock"], "not_configured");
    assert!(
        engine
            .metrics_text()
            .contains("clawgate_egress_lock_status -1")
    );
    // Recording a reading without a lock is a no-op.
    record(&engine, LockReading::Missing);
    assert!(
        !audit_kinds(&engine)
            .iter()
            .any(|k| k.starts_with("egress_lock."))
    );
}
