//! The fault knobs, seen from the appliance's client.

use std::collections::HashSet;
use std::time::Duration;

use clawgate_devhub::{DecisionFault, Fault, FaultAction};
use clawgate_hub::Error;
use clawgate_hub::decision::{self, LocalApproval, LocalStatus};
use clawgate_hub::protocol::{DecisionKind, Event, KnownEvent};
use clawgate_policies::bundle::BundleSigner;

use crate::{TestHub, approval_request, bundle, heartbeat, now};

#[tokio::test]
async fn transport_faults_fail_the_call_the_way_they_say_then_disarm() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    t.hub.faults().arm(Fault {
        action: FaultAction::Status {
            status: 503,
            retry_after: Some(7),
        },
        path_prefix: Some("/v1/heartbeat".into()),
        times: Some(1),
    });
    match a.client.heartbeat(&heartbeat()).await.unwrap_err() {
        e @ Error::Http { status: 503, .. } => {
            assert!(e.is_retryable());
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        }
        other => panic!("{other}"),
    }
    a.client.heartbeat(&heartbeat()).await.unwrap();

    for action in [FaultAction::Hang, FaultAction::Cut, FaultAction::Close] {
        t.hub.faults().arm(Fault {
            action,
            path_prefix: None,
            times: Some(1),
        });
        let e = a.client.heartbeat(&heartbeat()).await.unwrap_err();
        assert!(e.is_retryable(), "{action:?}: {e}");
        assert!(matches!(e, Error::Transport { .. }), "{action:?}: {e}");
    }
    a.client.heartbeat(&heartbeat()).await.unwrap();
    assert_eq!(
        t.hub.heartbeats().unwrap()[0].count,
        2,
        "faulted requests were not recorded"
    );
}

#[tokio::test]
async fn clock_skew_shows_in_server_time_and_decisions() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    t.hub.faults().set_skew(3600);
    let hb = a.client.heartbeat(&heartbeat()).await.unwrap();
    assert!(hb.server_time >= now() + 3500, "{}", hb.server_time);
    let id = "ap_00000000000000aa";
    let req = approval_request(id, "exec: ls");
    a.client.create_approval(&req).await.unwrap();
    let d = t.hub.decide(id, DecisionKind::AllowOnce).unwrap();
    let local = LocalApproval {
        approval_id: id,
        action_hash: &req.action_hash,
        status: LocalStatus::Pending,
        expires_at: req.expires_at,
    };
    let e = decision::check(
        &d,
        a.identity.keyset(),
        a.identity.me(),
        Some(local),
        now(),
        &HashSet::<String>::new(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "decided_in_future");
}

#[tokio::test]
async fn forged_replayed_and_foreign_decisions_are_each_rejected_by_the_appliance_checks() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let id = "ap_00000000000000bb";
    let req = approval_request(id, "exec: rm -rf build");
    a.client.create_approval(&req).await.unwrap();
    let local = LocalApproval {
        approval_id: id,
        action_hash: &req.action_hash,
        status: LocalStatus::Pending,
        expires_at: req.expires_at,
    };
    let none = HashSet::<String>::new();
    let check = |d: &clawgate_hub::protocol::SignedDecision, consumed: &HashSet<String>| {
        decision::check(
            d,
            a.identity.keyset(),
            a.identity.me(),
            Some(local),
            now(),
            consumed,
        )
        .map_err(|e| e.code())
    };
    let cases: [(DecisionFault, &str); 5] = [
        (
            DecisionFault {
                unpinned_key: true,
                ..Default::default()
            },
            "bad_signature",
        ),
        (
            DecisionFault {
                tenant: Some("tenant-b".into()),
                ..Default::default()
            },
            "wrong_tenant",
        ),
        (
            DecisionFault {
                appliance: Some("appl-other".into()),
                ..Default::default()
            },
            "wrong_appliance",
        ),
        (
            DecisionFault {
                action_hash: Some("ef".repeat(32)),
                ..Default::default()
            },
            "action_mismatch",
        ),
        (
            DecisionFault {
                decided_at: Some(now() - 10 * 86400),
                expires_at: Some(now() - 9 * 86400),
                ..Default::default()
            },
            "decision_expired",
        ),
    ];
    let first = a
        .client
        .poll_events(None, std::time::Duration::ZERO)
        .await
        .unwrap();
    for (fault, code) in &cases {
        let d = t
            .hub
            .decide_with(id, DecisionKind::AllowOnce, fault)
            .unwrap();
        assert_eq!(check(&d, &none), Err(*code));
    }
    // Each was delivered as an event to the appliance, and the approval is still pending.
    let got = a
        .client
        .poll_events(Some(&first.cursor), std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.events.len(), cases.len());
    assert_eq!(t.hub.pending_approvals().unwrap().len(), 1);

    // The honest decision passes; its replay is refused once consumed.
    let d = t.hub.decide(id, DecisionKind::AllowOnce).unwrap();
    check(&d, &none).unwrap();
    let replayed = t.hub.replay_decision(id).unwrap();
    assert_eq!(replayed, d);
    let consumed: HashSet<String> = [id.to_owned()].into();
    assert_eq!(check(&replayed, &consumed), Err("replayed"));
}

#[tokio::test]
async fn rolled_back_bundles_and_unknown_commands_can_be_served_on_purpose() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let signer = BundleSigner::generate("bundle-key-1").unwrap();
    t.hub
        .publish_bundle(&bundle(&signer, "tenant-a", 5))
        .unwrap();
    let first = a
        .client
        .poll_events(None, std::time::Duration::ZERO)
        .await
        .unwrap();
    let (_, v, sha) = t
        .hub
        .publish_rolled_back_bundle(&bundle(&signer, "tenant-a", 4))
        .unwrap();
    assert_eq!(v, 4);
    let raw = t
        .hub
        .send_raw_command(&a.identity.appliance_id, "exec")
        .unwrap();
    let got = a
        .client
        .poll_events(Some(&first.cursor), std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        got.events[0],
        Event::Known(KnownEvent::BundleAvailable {
            version: 4,
            sha256: sha
        })
    );
    let Event::Known(KnownEvent::Command { command }) = &got.events[1] else {
        panic!("{:?}", got.events)
    };
    assert_eq!(command.signed.command_id, raw);
    let e = clawgate_hub::command::check(command, a.identity.keyset(), a.identity.me(), now())
        .unwrap_err();
    assert_eq!(e.code(), "unknown_command");
    // Expired cursors: 410, then a poll without a cursor recovers.
    t.hub
        .faults()
        .expire_cursors_through(t.hub.store().head().unwrap());
    let e = a
        .client
        .poll_events(Some(&got.cursor), std::time::Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Http { status: 410, .. }), "{e}");
    a.client
        .poll_events(None, std::time::Duration::ZERO)
        .await
        .unwrap();
}
