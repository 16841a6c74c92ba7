//! The outbox: order, idempotency, bounds, persistence across reopen, and usage shipped exactly
//! once against a model Hub through lost acknowledgements and crashes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use proptest::prelude::*;

use super::*;
use crate::protocol::{ApprovalClass, BundleStatus};

fn open(dir: &tempfile::TempDir, limits: Limits) -> Outbox {
    Outbox::open(&dir.path().join("hub.db"), limits).unwrap()
}

fn approval(n: u32) -> OutboxItem {
    OutboxItem::Approval {
        request: ApprovalRequest {
            approval_id: format!("ap_{n:016x}"),
            action_hash: "ab".repeat(32),
            class: ApprovalClass::Red,
            summary: format!("exec: step {n}"),
            agent: "main".into(),
            tool: "exec".into(),
            created_at: 1000,
            expires_at: 1000 + 86_400,
        },
    }
}

#[test]
fn queues_keep_order_survive_reopen_and_are_idempotent_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, Limits::default());
    let mode = std::fs::metadata(dir.path().join("hub.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let a = o.push(&approval(1), 10).unwrap();
    let report = OutboxItem::BundleStatus {
        version: 7,
        report: BundleStatusReport {
            status: BundleStatus::Rejected,
            reason: Some("rollback".into()),
        },
    };
    let b = o.push(&report, 11).unwrap();
    let c = o.push(&approval(2), 12).unwrap();
    assert!(
        matches!((a, b, c), (Pushed::Added(x), Pushed::Added(y), Pushed::Added(z)) if x < y && y < z)
    );
    // The same approval id again: nothing changes.
    assert_eq!(
        o.push(&approval(1), 13).unwrap(),
        Pushed::AlreadyQueued(match a {
            Pushed::Added(id) => id,
            Pushed::AlreadyQueued(_) => unreachable!(),
        })
    );
    drop(o);

    let o = open(&dir, Limits::default());
    let all = o.peek(None, 10).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].item, approval(1));
    assert_eq!(all[1].item, report);
    assert_eq!(all[2].item, approval(2));
    let approvals = o.peek(Some(QueueKind::Approval), 10).unwrap();
    assert_eq!(approvals.len(), 2);
    assert_eq!(o.depth(QueueKind::BundleStatus).unwrap(), 1);
    assert_eq!(o.oldest_unsent_at().unwrap(), Some(10));

    o.record_failure(all[0].id, "hub answered 503 unavailable")
        .unwrap();
    o.record_failure(all[0].id, "timeout").unwrap();
    let head = &o.peek(None, 1).unwrap()[0];
    assert_eq!(head.attempts, 2);
    assert_eq!(head.last_error.as_deref(), Some("timeout"));

    o.ack(all[0].id).unwrap();
    o.ack(all[0].id).unwrap(); // twice is fine
    let discarded = o.discard(all[1].id).unwrap().unwrap();
    assert_eq!(discarded.item, report);
    assert!(o.discard(all[1].id).unwrap().is_none());
    assert_eq!(o.peek(None, 10).unwrap().len(), 1);
    // Positions are never reused, so order holds after deletions.
    let Pushed::Added(d) = o.push(&approval(3), 20).unwrap() else {
        panic!()
    };
    assert!(d > all[2].id);
}

#[test]
fn a_full_queue_refuses_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        approvals: 3,
        ..Limits::default()
    };
    let o = open(&dir, limits);
    for n in 0..3 {
        o.push(&approval(n), 1).unwrap();
    }
    let err = o.push(&approval(9), 2).unwrap_err();
    assert!(
        matches!(
            err,
            Error::QueueFull {
                queue: "approval",
                capacity: 3
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was dropped"), "{err}");
    // A duplicate of a queued entry is still fine, and other queues are not affected.
    assert!(matches!(
        o.push(&approval(0), 2).unwrap(),
        Pushed::AlreadyQueued(_)
    ));
    o.finish_command(
        "cmd1",
        "reload",
        &CommandResult {
            status: CommandStatus::Succeeded,
            detail: String::new(),
        },
        3,
    )
    .unwrap();
    let queued: Vec<OutboxItem> = o
        .peek(Some(QueueKind::Approval), 10)
        .unwrap()
        .into_iter()
        .map(|q| q.item)
        .collect();
    assert_eq!(queued, vec![approval(0), approval(1), approval(2)]);
    let head = o.peek(Some(QueueKind::Approval), 1).unwrap()[0].id;
    o.ack(head).unwrap();
    o.push(&approval(9), 4).unwrap();
}

fn totals(hour: i64, input: u64, requests: u64) -> UsageTotals {
    UsageTotals {
        agent: "main".into(),
        provider: "anthropic".into(),
        model: "claude".into(),
        hour,
        input,
        output: input / 10,
        cache_read: 0,
        cache_write: 0,
        requests,
        incomplete: 0,
    }
}

fn ack_for(b: &UsageBucket, revision: u64) -> UsageAck {
    UsageAck {
        agent: b.agent.clone(),
        provider: b.provider.clone(),
        model: b.model.clone(),
        hour: b.hour,
        revision,
    }
}

#[test]
fn usage_revisions_coalesce_and_ship_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, Limits::default());
    assert_eq!(
        o.stage_usage(&totals(3600, 100, 1), false, 1).unwrap(),
        Staged::New
    );
    assert_eq!(
        o.stage_usage(&totals(3600, 100, 1), false, 2).unwrap(),
        Staged::Unchanged
    );
    assert_eq!(
        o.stage_usage(&totals(3600, 150, 2), false, 3).unwrap(),
        Staged::Revised(2)
    );
    assert_eq!(
        o.stage_usage(&totals(3600, 180, 3), false, 4).unwrap(),
        Staged::Revised(3)
    );
    // Only the latest revision is shipped: one row however often it changed.
    let ship = o.usage_to_ship(10).unwrap();
    assert_eq!(ship.len(), 1);
    assert_eq!(
        (ship[0].revision, ship[0].input, ship[0].requests),
        (3, 180, 3)
    );
    // A change lands while revision 3 is in flight; the ack of 3 leaves revision 4 to ship.
    o.stage_usage(&totals(3600, 200, 4), false, 5).unwrap();
    o.ack_usage(&[ack_for(&ship[0], 3)]).unwrap();
    let ship = o.usage_to_ship(10).unwrap();
    assert_eq!((ship[0].revision, ship[0].input), (4, 200));
    o.ack_usage(&[ack_for(&ship[0], 4)]).unwrap();
    assert!(o.usage_to_ship(10).unwrap().is_empty());
    assert_eq!(o.usage_pending().unwrap(), 0);
    // Closing makes a final revision even with the same totals; closing again changes nothing.
    assert_eq!(
        o.stage_usage(&totals(3600, 200, 4), true, 6).unwrap(),
        Staged::Revised(5)
    );
    assert_eq!(
        o.stage_usage(&totals(3600, 200, 4), true, 7).unwrap(),
        Staged::Unchanged
    );
    // Closing is sticky: a late change ships closed.
    assert_eq!(
        o.stage_usage(&totals(3600, 210, 5), false, 8).unwrap(),
        Staged::Revised(6)
    );
    let ship = o.usage_to_ship(10).unwrap();
    assert!(ship[0].closed);
    o.ack_usage(&[ack_for(&ship[0], 6)]).unwrap();
    // Pruned only once closed, acknowledged and old enough.
    o.stage_usage(&totals(7200, 1, 1), false, 9).unwrap();
    assert_eq!(o.prune_usage(3600).unwrap(), 0);
    assert_eq!(o.prune_usage(7200).unwrap(), 1);
    assert_eq!(o.prune_usage(1 << 40).unwrap(), 0, "the open bucket stays");
    // Hours must be hour starts.
    assert!(o.stage_usage(&totals(3601, 1, 1), false, 9).is_err());
}

#[test]
fn an_ack_above_our_revision_makes_our_totals_win() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, Limits::default());
    o.stage_usage(&totals(0, 50, 5), false, 1).unwrap();
    let b = o.usage_to_ship(1).unwrap().remove(0);
    assert_eq!(b.revision, 1);
    // The Hub holds revision 9 from a lost outbox.
    o.ack_usage(&[ack_for(&b, 9)]).unwrap();
    let again = o.usage_to_ship(1).unwrap().remove(0);
    assert_eq!((again.revision, again.input), (10, 50));
    // Acks for buckets we do not hold are ignored.
    o.ack_usage(&[UsageAck {
        agent: "ghost".into(),
        ..ack_for(&b, 1)
    }])
    .unwrap();
}

#[test]
fn usage_bucket_count_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(
        &dir,
        Limits {
            usage_buckets: 2,
            ..Limits::default()
        },
    );
    o.stage_usage(&totals(0, 1, 1), false, 1).unwrap();
    o.stage_usage(&totals(3600, 1, 1), false, 1).unwrap();
    let err = o.stage_usage(&totals(7200, 1, 1), false, 1).unwrap_err();
    assert!(
        matches!(err, Error::QueueFull { queue: "usage", .. }),
        "{err}"
    );
    // Existing buckets still take revisions.
    o.stage_usage(&totals(0, 2, 2), false, 2).unwrap();
}

/// The Hub's side of usage ingest: highest revision per bucket wins.
#[derive(Default)]
struct ModelHub(BTreeMap<(String, i64), (u64, u64, u64)>);

impl ModelHub {
    fn ingest(&mut self, buckets: &[UsageBucket]) -> Vec<UsageAck> {
        buckets
            .iter()
            .map(|b| {
                let e = self.0.entry((b.model.clone(), b.hour)).or_insert((0, 0, 0));
                if b.revision > e.0 {
                    *e = (b.revision, b.input, b.requests);
                }
                UsageAck {
                    agent: b.agent.clone(),
                    provider: b.provider.clone(),
                    model: b.model.clone(),
                    hour: b.hour,
                    revision: e.0,
                }
            })
            .collect()
    }

    fn total_input(&self) -> u64 {
        self.0.values().map(|v| v.1).sum()
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Tokens used in bucket `hour` (0..3).
    Use { hour: u8, tokens: u16 },
    /// Stage every bucket's totals into the outbox.
    Stage,
    /// Ship; the Hub stores, and the ack arrives or is lost.
    Ship { ack_lost: bool },
    /// The daemon dies and restarts: the outbox is reopened from disk.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 1u16..1000).prop_map(|(hour, tokens)| Op::Use { hour, tokens }),
        Just(Op::Stage),
        any::<bool>().prop_map(|ack_lost| Op::Ship { ack_lost }),
        Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the interleaving of usage, shipping, lost acknowledgements and crashes, once
    /// everything is staged and shipped the Hub's totals equal the metered totals: nothing lost,
    /// nothing counted twice.
    #[test]
    fn usage_is_counted_exactly_once(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut o = open(&dir, Limits::default());
        let mut truth = [(0u64, 0u64); 3]; // (input, requests) per hour: the usage store
        let mut hub = ModelHub::default();
        let stage = |o: &Outbox, truth: &[(u64, u64); 3]| {
            for (h, &(input, requests)) in truth.iter().enumerate() {
                if requests > 0 {
                    o.stage_usage(&totals(i64::try_from(h).unwrap() * 3600, input, requests), false, 0).unwrap();
                }
            }
        };
        for op in ops {
            match op {
                Op::Use { hour, tokens } => {
                    let t = &mut truth[usize::from(hour)];
                    t.0 += u64::from(tokens);
                    t.1 += 1;
                }
                Op::Stage => stage(&o, &truth),
                Op::Ship { ack_lost } => {
                    let batch = o.usage_to_ship(500).unwrap();
                    let acks = hub.ingest(&batch);
                    if !ack_lost {
                        o.ack_usage(&acks).unwrap();
                    }
                }
                Op::Crash => {
                    drop(o);
                    o = open(&dir, Limits::default());
                }
            }
        }
        stage(&o, &truth);
        loop {
            let batch = o.usage_to_ship(500).unwrap();
            if batch.is_empty() { break; }
            let acks = hub.ingest(&batch);
            o.ack_usage(&acks).unwrap();
        }
        let metered: u64 = truth.iter().map(|t| t.0).sum();
        prop_assert_eq!(hub.total_input(), metered);
    }
}

#[test]
fn cursors_persist_and_the_audit_cursor_only_moves_forward_unless_rewound() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, Limits::default());
    assert_eq!(o.event_cursor().unwrap(), None);
    assert_eq!(
        o.audit_cursor().unwrap(),
        AuditCursor {
            seq: 0,
            hash: AUDIT_GENESIS.into()
        }
    );
    o.set_event_cursor(Some("c_2a")).unwrap();
    o.advance_audit_cursor(5, &"55".repeat(32)).unwrap();
    drop(o);
    let o = open(&dir, Limits::default());
    assert_eq!(o.event_cursor().unwrap().as_deref(), Some("c_2a"));
    assert_eq!(o.audit_cursor().unwrap().seq, 5);
    assert!(o.advance_audit_cursor(4, &"44".repeat(32)).is_err());
    assert_eq!(o.audit_cursor().unwrap().seq, 5);
    o.rewind_audit_cursor(2, &"22".repeat(32)).unwrap();
    assert_eq!(
        o.audit_cursor().unwrap(),
        AuditCursor {
            seq: 2,
            hash: "22".repeat(32)
        }
    );
    o.set_event_cursor(None).unwrap();
    assert_eq!(o.event_cursor().unwrap(), None);
}

#[test]
fn decisions_are_consumed_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, Limits::default());
    assert!(!o.is_consumed("ap_1").unwrap());
    assert!(
        o.consume_decision("ap_1", DecisionKind::AllowOnce, 100, 50)
            .unwrap()
    );
    assert!(
        !o.consume_decision("ap_1", DecisionKind::Deny, 100, 51)
            .unwrap()
    );
    assert!(o.consumed_set_for("ap_1").unwrap().contains("ap_1"));
    assert!(o.consumed_set_for("ap_2").unwrap().is_empty());
    // Kept until its decision expired more than the margin ago.
    assert_eq!(o.prune_consumed(100 + 600, 600).unwrap(), 0);
    assert_eq!(o.prune_consumed(100 + 601, 600).unwrap(), 1);
    assert!(!o.is_consumed("ap_1").unwrap());
}

#[test]
fn commands_run_at_most_once_and_their_results_are_queued() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, Limits::default());
    assert!(o.begin_command("cmd_1", "restart", 10).unwrap());
    assert!(!o.begin_command("cmd_1", "restart", 11).unwrap());
    drop(o);
    // The daemon restarted for it: the command is still running in the ledger.
    let o = open(&dir, Limits::default());
    let unfinished = o.unfinished_commands().unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].command_id, "cmd_1");
    let ok = CommandResult {
        status: CommandStatus::Succeeded,
        detail: "restarted".into(),
    };
    o.finish_command("cmd_1", "restart", &ok, 12).unwrap();
    assert!(o.unfinished_commands().unwrap().is_empty());
    assert_eq!(
        o.command("cmd_1").unwrap().unwrap().result,
        Some(ok.clone())
    );
    assert!(!o.begin_command("cmd_1", "restart", 13).unwrap());
    // A refused command is recorded without being begun.
    let refused = CommandResult {
        status: CommandStatus::Refused,
        detail: "unknown command `exec`".into(),
    };
    o.finish_command("cmd_2", "exec", &refused, 14).unwrap();
    assert!(!o.begin_command("cmd_2", "exec", 15).unwrap());
    let queued: Vec<OutboxItem> = o
        .peek(Some(QueueKind::CommandResult), 10)
        .unwrap()
        .into_iter()
        .map(|q| q.item)
        .collect();
    assert_eq!(
        queued,
        vec![
            OutboxItem::CommandResult {
                command_id: "cmd_1".into(),
                result: ok
            },
            OutboxItem::CommandResult {
                command_id: "cmd_2".into(),
                result: refused
            },
        ]
    );
    assert!(o.command("cmd_9").unwrap().is_none());
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 7).unwrap();
    }
    let err = Outbox::open(&path, Limits::default()).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
    let c = Connection::open(&path).unwrap();
    let tables: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}
