//! Every endpoint through the appliance's own client.

use std::collections::HashSet;
use std::time::Duration;

use clawgate_hub::Error;
use clawgate_hub::client::HubClient;
use clawgate_hub::command::CommandName;
use clawgate_hub::decision::{self, LocalApproval, LocalStatus};
use clawgate_hub::protocol::{
    ApprovalState, AuditBatch, BundleStatus, BundleStatusReport, CommandResult, CommandStatus,
    DecisionKind, EnrollRequest, Event, KnownEvent, UsageBatch, UsageBucket, WireSecret,
};
use clawgate_policies::bundle::{BundleSigner, Expectations, TrustStore};

use crate::{TestHub, approval_request, audit_chain, bundle, fast, heartbeat, now};

fn schema_ok(name: &str, value: &impl serde::Serialize) {
    clawgate_devhub::schema::schemas()
        .unwrap()
        .validate(name, &serde_json::to_value(value).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

fn http_status(e: &Error) -> (u16, String) {
    match e {
        Error::Http { status, code, .. } => (*status, code.clone()),
        other => panic!("expected an HTTP error, got {other}"),
    }
}

#[tokio::test]
async fn enrollment_is_one_time_and_heartbeats_are_recorded() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    assert_eq!(a.identity.tenant_id, "tenant-a");
    assert!(a.identity.appliance_id.starts_with("appl-"));
    assert_eq!(
        a.identity.keyset().signing_keys(),
        t.hub.signing_keys().unwrap()
    );

    // The same token again: 401 token_invalid.
    let file = t.hub.mint_token("tenant-a").unwrap();
    let client = HubClient::new(&t.hub.url(), vec![t.hub.spki_pin()], None, fast()).unwrap();
    let req = EnrollRequest {
        token: WireSecret::new(file.token.expose().to_owned()),
        hostname: "h".into(),
        version: "0.1.0".into(),
    };
    let answer = client.enroll(&req).await.unwrap();
    schema_ok("EnrollResponse", &answer);
    let again = client.enroll(&req).await.unwrap_err();
    assert_eq!(http_status(&again), (401, "token_invalid".into()));

    let before = now();
    let hb = a.client.heartbeat(&heartbeat()).await.unwrap();
    schema_ok("HeartbeatResponse", &hb);
    assert!(hb.server_time >= before);
    assert!(
        (54..=66).contains(&hb.next_in_seconds),
        "{}",
        hb.next_in_seconds
    );
    a.client.heartbeat(&heartbeat()).await.unwrap();
    let seen = t.hub.heartbeats().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].appliance, a.identity.appliance_id);
    assert_eq!(seen[0].count, 2);
    assert_eq!(seen[0].heartbeat.health.score, 100);
}

#[tokio::test]
async fn unauthenticated_and_unknown_credentials_are_refused() {
    let t = TestHub::start().await;
    let _a = t.enroll("tenant-a").await;
    let bogus = format!("cga_{}", "A".repeat(43));
    let client = HubClient::new(
        &t.hub.url(),
        vec![t.hub.spki_pin()],
        Some(clawgate_protocol::SecretString::new(bogus)),
        fast(),
    )
    .unwrap();
    let e = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert_eq!(http_status(&e), (401, "unauthorized".into()));
    let e = client.poll_events(None, Duration::ZERO).await.unwrap_err();
    assert_eq!(http_status(&e), (401, "unauthorized".into()));
    let e = client.get_bundle(1).await.unwrap_err();
    assert_eq!(http_status(&e), (401, "unauthorized".into()));
    let e = client.rotate_credential().await.unwrap_err();
    assert_eq!(http_status(&e), (401, "unauthorized".into()));
    assert!(
        t.hub.heartbeats().unwrap().is_empty(),
        "nothing was recorded"
    );
}

#[tokio::test]
async fn approval_round_trip_passes_the_appliance_checks_and_is_single_use() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let id = "ap_00112233445566aa";
    let req = approval_request(id, "exec: curl https://example.com | sh");
    let created = a.client.create_approval(&req).await.unwrap();
    assert!(created.created);
    assert_eq!(created.status.status, ApprovalState::Pending);
    schema_ok("ApprovalStatus", &created.status);
    // Idempotent: the same request answers 200 with its status; another request with the
    // same id is a conflict.
    let again = a.client.create_approval(&req).await.unwrap();
    assert!(!again.created);
    let mut other = req.clone();
    other.summary = "something else".into();
    let e = a.client.create_approval(&other).await.unwrap_err();
    assert_eq!(http_status(&e), (409, "approval_conflict".into()));

    // The page lists it; the operator approves.
    assert_eq!(t.hub.pending_approvals().unwrap().len(), 1);
    let first = a.client.poll_events(None, Duration::ZERO).await.unwrap();
    assert!(first.events.is_empty());
    let signed = t.hub.decide(id, DecisionKind::AllowOnce).unwrap();
    assert!(
        t.hub.decide(id, DecisionKind::Deny).is_err(),
        "decided once"
    );

    let got = a
        .client
        .poll_events(Some(&first.cursor), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.events.len(), 1);
    let Event::Known(KnownEvent::ApprovalDecision { decision: d }) = &got.events[0] else {
        panic!("{:?}", got.events);
    };
    assert_eq!(d, &signed);
    schema_ok("SignedDecision", d);
    let local = LocalApproval {
        approval_id: id,
        action_hash: &req.action_hash,
        status: LocalStatus::Pending,
        expires_at: req.expires_at,
    };
    let mut consumed = HashSet::new();
    let accepted = decision::check(
        d,
        a.identity.keyset(),
        a.identity.me(),
        Some(local),
        now(),
        &consumed,
    )
    .unwrap();
    assert_eq!(accepted.decision, DecisionKind::AllowOnce);
    assert_eq!(accepted.action_hash, req.action_hash);
    consumed.insert(id.to_owned());
    let replay = decision::check(
        d,
        a.identity.keyset(),
        a.identity.me(),
        Some(local),
        now(),
        &consumed,
    )
    .unwrap_err();
    assert_eq!(replay.code(), "replayed");

    // The status endpoint carries the same decision.
    let status = a.client.get_approval(id).await.unwrap();
    assert_eq!(status.status, ApprovalState::Decided);
    assert_eq!(status.decision.as_ref(), Some(&signed));
    let e = a
        .client
        .get_approval("ap_ffffffffffffffff")
        .await
        .unwrap_err();
    assert_eq!(http_status(&e).0, 404);

    // Another appliance of the same tenant cannot see it.
    let b = t.enroll("tenant-a").await;
    let e = b.client.get_approval(id).await.unwrap_err();
    assert_eq!(http_status(&e).0, 404);

    // A poll without a cursor starts with the current state: the decided, unexpired decision.
    let fresh = a.client.poll_events(None, Duration::ZERO).await.unwrap();
    assert!(
        fresh
            .events
            .iter()
            .any(|e| matches!(e, Event::Known(KnownEvent::ApprovalDecision { .. })))
    );
}

#[tokio::test]
async fn events_resume_from_the_cursor_across_a_hub_restart() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let b = t.enroll("tenant-b").await;
    let signer = BundleSigner::generate("bundle-key-1").unwrap();

    let first = a.client.poll_events(None, Duration::ZERO).await.unwrap();
    assert!(first.events.is_empty());
    // Nothing new: the same cursor comes back.
    let idle = a
        .client
        .poll_events(Some(&first.cursor), Duration::ZERO)
        .await
        .unwrap();
    assert!(idle.events.is_empty());
    assert_eq!(idle.cursor, first.cursor);

    let bytes = bundle(&signer, "tenant-a", 3);
    let (_, version, sha) = t.hub.publish_bundle(&bytes).unwrap();
    assert_eq!(version, 3);
    let cmd = t
        .hub
        .send_command(&a.identity.appliance_id, CommandName::Reconcile)
        .unwrap();

    let got = a
        .client
        .poll_events(Some(&first.cursor), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.events.len(), 2, "{:?}", got.events);
    assert_eq!(
        got.events[0],
        Event::Known(KnownEvent::BundleAvailable {
            version: 3,
            sha256: sha.clone()
        })
    );
    let Event::Known(KnownEvent::Command { command }) = &got.events[1] else {
        panic!("{:?}", got.events[1]);
    };
    let accepted =
        clawgate_hub::command::check(command, a.identity.keyset(), a.identity.me(), now()).unwrap();
    assert_eq!(accepted.command_id, cmd);
    assert_eq!(accepted.name, CommandName::Reconcile);

    // The other tenant sees neither.
    let other = b.client.poll_events(None, Duration::ZERO).await.unwrap();
    assert!(other.events.is_empty(), "{:?}", other.events);

    // The bundle downloads byte for byte and verifies with the appliance's pinned bundle key.
    let downloaded = a.client.get_bundle(3).await.unwrap();
    assert_eq!(downloaded, bytes);
    let mut trust = TrustStore::default();
    trust.add("bundle-key-1", &signer.public_key()).unwrap();
    clawgate_policies::bundle::verify(
        &downloaded,
        &trust,
        &Expectations {
            tenant_id: "tenant-a",
            high_water: 0,
            allow_current: false,
            now: now(),
        },
    )
    .unwrap();
    assert_eq!(
        http_status(&b.client.get_bundle(3).await.unwrap_err()).0,
        404
    );
    assert!(
        t.hub
            .publish_bundle(&bundle(&signer, "tenant-a", 3))
            .is_err(),
        "not above the newest"
    );
    assert!(
        t.hub
            .publish_bundle(&bundle(&signer, "tenant-a", 2))
            .is_err(),
        "a rollback"
    );
    a.client
        .report_bundle_status(
            3,
            &BundleStatusReport {
                status: BundleStatus::Applied,
                reason: None,
            },
        )
        .await
        .unwrap();
    a.client
        .report_command_result(
            &cmd,
            &CommandResult {
                status: CommandStatus::Succeeded,
                detail: "ok".into(),
            },
        )
        .await
        .unwrap();
    let e = a
        .client
        .report_command_result(
            "cmd_unknown",
            &CommandResult {
                status: CommandStatus::Succeeded,
                detail: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e).0, 400);

    // Restart the Hub on the same state: the cursor still serves, and only what is new comes.
    let cursor = got.cursor.clone();
    let t = t.restart().await;
    let quiet = a
        .client
        .poll_events(Some(&cursor), Duration::ZERO)
        .await
        .unwrap();
    assert!(quiet.events.is_empty(), "{:?}", quiet.events);
    t.hub
        .send_command(&a.identity.appliance_id, CommandName::Reload)
        .unwrap();
    let next = a
        .client
        .poll_events(Some(&cursor), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(next.events.len(), 1);
    assert!(
        matches!(&next.events[0], Event::Known(KnownEvent::Command { command }) if command.signed.name == "reload")
    );
    // The credential survived the restart too (the heartbeat authenticated).
    a.client.heartbeat(&heartbeat()).await.unwrap();

    // A cursor from the future (another Hub's state) answers 410.
    let e = a
        .client
        .poll_events(Some("c999999"), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), (410, "cursor_expired".into()));
    // Without a cursor: the newest bundle_available is part of the current state.
    let fresh = a.client.poll_events(None, Duration::ZERO).await.unwrap();
    assert!(
        fresh
            .events
            .contains(&Event::Known(KnownEvent::BundleAvailable {
                version: 3,
                sha256: sha
            }))
    );
}

fn bucket(revision: u64, input: u64) -> UsageBucket {
    UsageBucket {
        agent: "main".into(),
        provider: "anthropic".into(),
        model: "claude-x".into(),
        hour: 1_795_000_000 / 3600 * 3600,
        revision,
        input,
        output: input / 2,
        cache_read: 1,
        cache_write: 2,
        requests: revision,
        incomplete: 0,
        closed: false,
    }
}

#[tokio::test]
async fn usage_keeps_the_latest_revision_and_retries_never_double_count() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let send = |b: Vec<UsageBucket>| {
        let client = &a.client;
        async move {
            client
                .ingest_usage(&UsageBatch { buckets: b })
                .await
                .unwrap()
        }
    };
    let ack = send(vec![bucket(1, 100)]).await;
    schema_ok("UsageAckResponse", &ack);
    assert_eq!(ack.acks[0].revision, 1);
    send(vec![bucket(1, 100)]).await; // a retry
    send(vec![bucket(2, 250)]).await; // the open bucket grew
    send(vec![bucket(2, 250)]).await; // a retry
    let late = send(vec![bucket(1, 100)]).await; // a stale resend
    assert_eq!(late.acks[0].revision, 2, "the ack names the revision held");
    let mut other_hour = bucket(1, 7);
    other_hour.hour += 3600;
    send(vec![other_hour]).await;
    let sum = t.hub.usage_sum("tenant-a").unwrap();
    assert_eq!(sum.input, 257);
    assert_eq!(sum.output, 125 + 3);
    assert_eq!(sum.requests, 3);
    assert_eq!(sum.buckets, 2);
    // Invalid buckets are refused whole.
    let mut bad = bucket(0, 1);
    bad.revision = 0;
    let e = a
        .client
        .ingest_usage(&UsageBatch {
            buckets: vec![bucket(3, 999), bad],
        })
        .await
        .unwrap_err();
    assert_eq!(http_status(&e).0, 400);
    assert_eq!(
        t.hub.usage_sum("tenant-a").unwrap().input,
        257,
        "nothing of the batch was kept"
    );
}

#[tokio::test]
async fn audit_continuity_gaps_and_breaks() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let chain = audit_chain(6);
    let send = |r: &[clawgate_hub::protocol::AuditRecord]| {
        let batch = AuditBatch {
            records: r.to_vec(),
        };
        let client = &a.client;
        async move { client.ingest_audit(&batch).await }
    };
    let ack = send(&chain[0..3]).await.unwrap();
    schema_ok("AuditAck", &ack);
    assert_eq!(
        (ack.last_seq, ack.last_hash.as_str()),
        (3, chain[2].hash.as_str())
    );
    // A resend overlapping what the Hub holds (lost acknowledgement) is idempotent.
    let ack = send(&chain[1..4]).await.unwrap();
    assert_eq!(ack.last_seq, 4);
    // A gap: 409 with the seq to resend from.
    let e = send(&chain[5..6]).await.unwrap_err();
    match e {
        Error::Http {
            status: 409,
            code,
            expected_seq,
            ..
        } => {
            assert_eq!(code, "audit_gap");
            assert_eq!(expected_seq, Some(5));
        }
        other => panic!("{other}"),
    }
    // An altered record: 422, recorded as a break, nothing stored.
    let mut altered = chain[4].clone();
    altered.record = altered.record.replace("allow", "deny");
    let e = send(&[altered, chain[5].clone()]).await.unwrap_err();
    assert_eq!(http_status(&e), (422, "audit_invalid".into()));
    let status = t.hub.audit_status().unwrap();
    assert_eq!(status[0].last_seq, 4);
    assert_eq!(status[0].breaks.len(), 1);
    assert_eq!(status[0].breaks[0].seq, 5);
    // A held seq with another hash is a break too.
    let mut rewritten = chain[0].clone();
    rewritten.hash = "ee".repeat(32);
    assert_eq!(http_status(&send(&[rewritten]).await.unwrap_err()).0, 422);
    // The genuine continuation is still accepted.
    let ack = send(&chain[4..6]).await.unwrap();
    assert_eq!(ack.last_seq, 6);
    assert_eq!(
        t.hub.audit_records(&a.identity.appliance_id).unwrap(),
        chain
    );
}

#[tokio::test]
async fn the_audit_hash_matches_the_protocol_vector() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../../hub/testdata/vectors.json")).unwrap();
    let records = v["audit_chain"]["records"].as_array().unwrap();
    assert!(!records.is_empty());
    for r in records {
        let h = clawgate_devhub::store::audit_hash(
            r["seq"].as_i64().unwrap(),
            r["ts"].as_i64().unwrap(),
            r["kind"].as_str().unwrap(),
            r["prev"].as_str().unwrap(),
            r["record"].as_str().unwrap(),
        );
        assert_eq!(h, r["hash"].as_str().unwrap());
    }
}

#[tokio::test]
async fn credential_rotation_keeps_the_old_one_until_the_new_one_is_used() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let rotated = a.client.rotate_credential().await.unwrap();
    schema_ok("RotateResponse", &rotated);
    // The old credential still works (the appliance may not have stored the new one yet).
    a.client.heartbeat(&heartbeat()).await.unwrap();
    let new_client = HubClient::new(
        &t.hub.url(),
        vec![t.hub.spki_pin()],
        Some(rotated.credential.secret().clone()),
        fast(),
    )
    .unwrap();
    new_client.heartbeat(&heartbeat()).await.unwrap();
    // The first use of the new one revoked the old one.
    let e = a.client.heartbeat(&heartbeat()).await.unwrap_err();
    assert_eq!(http_status(&e).0, 401);
    new_client.heartbeat(&heartbeat()).await.unwrap();
}

#[tokio::test]
async fn a_keyset_rotation_is_accepted_by_the_appliance_and_new_decisions_verify() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let first = a.client.poll_events(None, Duration::ZERO).await.unwrap();
    let kid = t.hub.rotate_signing_key().unwrap();
    assert_eq!(kid, "devhub-2");
    let got = a
        .client
        .poll_events(Some(&first.cursor), Duration::from_secs(5))
        .await
        .unwrap();
    let Event::Known(KnownEvent::Keyset { keyset }) = &got.events[0] else {
        panic!("{:?}", got.events);
    };
    let next = clawgate_hub::signing::apply_keyset(a.identity.keyset(), keyset).unwrap();
    assert_eq!(next.version(), 2);
    // A decision signed by the new key verifies under the new keyset only.
    let id = "ap_0000000000000001";
    let req = approval_request(id, "exec: ls");
    a.client.create_approval(&req).await.unwrap();
    let d = t.hub.decide(id, DecisionKind::Deny).unwrap();
    assert_eq!(d.signed.kid, "devhub-2");
    let local = LocalApproval {
        approval_id: id,
        action_hash: &req.action_hash,
        status: LocalStatus::Pending,
        expires_at: req.expires_at,
    };
    let consumed: HashSet<String> = HashSet::new();
    decision::check(&d, &next, a.identity.me(), Some(local), now(), &consumed).unwrap();
    let e = decision::check(
        &d,
        a.identity.keyset(),
        a.identity.me(),
        Some(local),
        now(),
        &consumed,
    )
    .unwrap_err();
    assert_eq!(e.code(), "unknown_kid");
    // A new enrollment gets both keys and the new keyset version.
    let b = t.enroll("tenant-a").await;
    assert_eq!(b.identity.keyset().version(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_minted_by_another_process_while_appliances_enroll_never_fail_either_side() {
    // `clawgate-devhub token` opens the same database while the Hub serves: a second
    // connection here, writing all the time. Write transactions are IMMEDIATE, so neither side
    // sees SQLITE_BUSY (a read-then-write transaction would, when the other commits between).
    let t = TestHub::start().await;
    let other = std::sync::Arc::new(
        clawgate_devhub::Hub::open(&t.state(), clawgate_devhub::Settings::default()).unwrap(),
    );
    let url = t.hub.url();
    let files: Vec<_> = (0..80)
        .map(|_| other.mint_token_for("tenant-a", &url).unwrap())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let minter = {
        let (other, url, stop) = (other.clone(), url.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                other.mint_token_for("tenant-b", &url).unwrap();
                n += 1;
            }
            n
        })
    };
    let mut tasks = Vec::new();
    for (i, file) in files.into_iter().enumerate() {
        let url = url.clone();
        let pin = t.hub.spki_pin();
        tasks.push(tokio::spawn(async move {
            let client = HubClient::new(&url, vec![pin], None, fast()).unwrap();
            let a = client
                .enroll(&EnrollRequest {
                    token: file.token,
                    hostname: format!("h{i}"),
                    version: "1".into(),
                })
                .await?;
            client
                .set_credential(a.credential.secret().clone())
                .unwrap();
            client.heartbeat(&heartbeat()).await?;
            Ok::<_, Error>(())
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let minted = minter.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed (while {minted} tokens were minted): {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert_eq!(t.hub.appliances().unwrap().len(), 80);
}

#[tokio::test]
async fn a_snapshot_larger_than_one_answer_is_paged_through_the_cursor() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let n = 230;
    for i in 0..n {
        let id = format!("ap_{i:016x}");
        a.client
            .create_approval(&approval_request(&id, "exec: ls"))
            .await
            .unwrap();
        t.hub.decide(&id, DecisionKind::AllowOnce).unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut answers = 0;
    loop {
        let r = a
            .client
            .poll_events(cursor.as_deref(), Duration::ZERO)
            .await
            .unwrap();
        schema_ok("EventsResponse", &r);
        answers += 1;
        if r.events.is_empty() {
            break;
        }
        for e in &r.events {
            let Event::Known(KnownEvent::ApprovalDecision { decision }) = e else {
                panic!("{e:?}")
            };
            assert!(
                seen.insert(decision.signed.approval_id.clone()),
                "delivered twice"
            );
        }
        cursor = Some(r.cursor);
    }
    assert_eq!(seen.len(), n);
    assert_eq!(answers, 4, "100 + 100 + 30, then an empty answer");
}
