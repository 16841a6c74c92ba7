//! `clawgate serve` enrolled against the dev Hub (`devhub/`, the protocol's reference Hub side,
//! which checks every request body against `hub/openapi.json`): enrollment, a remote approval
//! and denial, a pushed bundle, usage totals, the audit chain, heartbeats and a command, end to
//! end over pinned TLS on loopback.

use clawgate_devhub::{Config, DevHub, Settings};
use clawgate_hub::command::CommandName;
use clawgate_hub::protocol::DecisionKind;
use serde_json::json;

use crate::common::stderr;
use crate::hub::now;
use crate::hubwire::{Bundles, health, local_audit, record_usage, usage_record, wait_until};
use crate::serve::{Daemon, audit_text, blocked, verify_audit};

const TENANT: &str = "tenant-dev";

struct Dev {
    hub: Option<DevHub>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Dev {
    fn start() -> Dev {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = Config {
            settings: Settings {
                heartbeat_seconds: 5,
                token_ttl_secs: 3600,
                ..Settings::default()
            },
            ..Config::new(dir.path().join("hub"))
        };
        let hub = runtime.block_on(DevHub::start(config)).unwrap();
        Dev {
            hub: Some(hub),
            runtime,
            _dir: dir,
        }
    }

    fn hub(&self) -> &DevHub {
        self.hub.as_ref().unwrap()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _guard = self.runtime.enter();
        drop(self.hub.take());
    }
}

#[test]
fn enrolled_against_the_dev_hub_end_to_end() {
    let dev = Dev::start();
    let hub = dev.hub();
    let bundles = Bundles::new("bundle-key-dev");
    let mut d = Daemon::prepare(&format!(
        "[approvals]\nwait_seconds = 60\n[policy]\ntier = 2\ntrust_file = \"{}\"\n",
        bundles.trust_file().display()
    ));
    let token = d.dir.path().join("enroll.json");
    hub.write_token_file(TENANT, &hub.url(), &token).unwrap();
    let out = d.cli(&[
        "enroll",
        "--hub",
        &hub.url(),
        "--token-file",
        token.to_str().unwrap(),
        "--pin",
        &hub.spki_pin_hex(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hour = now() - now().rem_euclid(3600);
    let usage_db = d.state().join("usage.db");
    record_usage(
        &usage_db,
        vec![
            usage_record("main", "claude-x", hour - 3600, 40),
            usage_record("main", "claude-x", hour, 12),
        ],
    );
    d.spawn();

    // Approve once on the Hub: the held call runs.
    let fetch = json!({"command": "curl -fsS https://example.com/"});
    let answer = std::thread::scope(|scope| {
        let held = scope.spawn(|| d.decide("exec", fetch.clone(), "v1"));
        wait_until("the request on the dev Hub", || {
            !hub.pending_approvals().unwrap().is_empty()
        });
        let id = hub.pending_approvals().unwrap()[0]
            .request
            .approval_id
            .clone();
        hub.decide(&id, DecisionKind::AllowOnce).unwrap();
        held.join().unwrap()
    });
    assert_eq!(answer["params"], fetch, "{answer}");

    // Deny: it never runs.
    let other = json!({"command": "curl -fsS https://example.org/"});
    let answer = std::thread::scope(|scope| {
        let held = scope.spawn(|| d.decide("exec", other.clone(), "v2"));
        wait_until("the second request", || {
            !hub.pending_approvals().unwrap().is_empty()
        });
        let id = hub.pending_approvals().unwrap()[0]
            .request
            .approval_id
            .clone();
        hub.decide(&id, DecisionKind::Deny).unwrap();
        held.join().unwrap()
    });
    assert!(blocked(&answer).contains("owner denied"), "{answer}");

    // A bundle published on the Hub changes a decision (tier 2 → 1: yellow is asked).
    let page = json!({"url": "https://example.com/"});
    assert_eq!(d.decide("web_fetch", page.clone(), "v3")["params"], page);
    hub.publish_bundle(&bundles.make(2, 1, TENANT)).unwrap();
    wait_until("bundle 2 in force", || health(&d)["bundle"]["version"] == 2);
    let answer = std::thread::scope(|scope| {
        let held = scope.spawn(|| d.decide("web_fetch", page.clone(), "v4"));
        wait_until("the bundle's ask on the Hub", || {
            !hub.pending_approvals().unwrap().is_empty()
        });
        let id = hub.pending_approvals().unwrap()[0]
            .request
            .approval_id
            .clone();
        hub.decide(&id, DecisionKind::Deny).unwrap();
        held.join().unwrap()
    });
    blocked(&answer);

    // Usage totals and the audit chain arrive whole; heartbeats carry the health score.
    wait_until("usage totals", || {
        let sum = hub.usage_sum(TENANT).unwrap();
        sum.input == 52 && sum.requests == 2
    });
    let appliance = hub.appliances().unwrap()[0].id.clone();
    hub.send_command(&appliance, CommandName::Reconcile)
        .unwrap();
    wait_until("the reconcile ran", || {
        audit_text(&d).contains("hub.command_finished")
    });
    let last = local_audit(&d).last().unwrap()["seq"].as_i64().unwrap();
    wait_until("the audit chain", || {
        hub.audit_status()
            .unwrap()
            .iter()
            .any(|a| a.appliance == appliance && a.last_seq >= last && a.breaks.is_empty())
    });
    wait_until("a heartbeat", || !hub.heartbeats().unwrap().is_empty());
    let beat = &hub.heartbeats().unwrap()[0].heartbeat;
    assert!(beat.health.score <= 100);
    d.stop();
    verify_audit(&d);
}

/// Enrolls a fresh daemon with `dev`'s Hub (config `extra`), not started.
fn enrolled_daemon(dev: &Dev, extra: &str) -> Daemon {
    let hub = dev.hub();
    let d = Daemon::prepare(extra);
    let token = d.dir.path().join("enroll.json");
    hub.write_token_file(TENANT, &hub.url(), &token).unwrap();
    let out = d.cli(&[
        "enroll",
        "--hub",
        &hub.url(),
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    d
}

#[test]
fn error_statuses_cut_and_closed_answers_expired_cursors_and_clock_skew() {
    use clawgate_devhub::{Fault, FaultAction};
    let dev = Dev::start();
    let hub = dev.hub();
    let mut d = enrolled_daemon(&dev, "[approvals]\nwait_seconds = 1\n");
    let hour = now() - now().rem_euclid(3600);
    let usage_db = d.state().join("usage.db");
    record_usage(&usage_db, vec![usage_record("main", "m1", hour, 21)]);
    let arm = |action, path: &str, times| {
        hub.faults().arm(Fault {
            action,
            path_prefix: Some(path.into()),
            times: Some(times),
        });
    };
    // One of each, fewer than the breaker's threshold: every queue must get through on retries
    // alone (the breaker has its own unit tests in hub/).
    arm(
        FaultAction::Status {
            status: 503,
            retry_after: Some(1),
        },
        "/v1/approvals",
        1,
    );
    arm(FaultAction::Cut, "/v1/usage", 1);
    arm(FaultAction::Close, "/v1/audit", 1);
    arm(
        FaultAction::Status {
            status: 500,
            retry_after: None,
        },
        "/v1/heartbeat",
        1,
    );
    hub.faults().expire_cursors_through(1_000_000);
    d.spawn();
    let fetch = json!({"command": "curl -fsS https://example.com/"});
    blocked(&d.decide("exec", fetch.clone(), "f1"));
    wait_until("the request through the faults", || {
        hub.approvals().unwrap().len() == 1
    });
    wait_until("usage through a cut answer", || {
        hub.usage_sum(TENANT).unwrap().input == 21
    });
    let appliance = hub.appliances().unwrap()[0].id.clone();
    let last = local_audit(&d).last().unwrap()["seq"].as_i64().unwrap();
    wait_until("the audit chain through a closed connection", || {
        hub.audit_status()
            .unwrap()
            .iter()
            .any(|a| a.appliance == appliance && a.last_seq >= last && a.breaks.is_empty())
    });
    wait_until("a heartbeat after a 500", || {
        !hub.heartbeats().unwrap().is_empty()
    });

    // The Hub's clock an hour ahead: its decision is dated in our future and refused.
    hub.faults().set_skew(3600);
    let id = hub.pending_approvals().unwrap()[0]
        .request
        .approval_id
        .clone();
    hub.decide(&id, DecisionKind::AllowOnce).unwrap();
    wait_until("the skewed decision refused", || {
        audit_text(&d).contains("decided_in_future")
    });
    assert!(blocked(&d.decide("exec", fetch, "f2")).contains("owner has been asked"));
    // Each request reached the Hub once, the chain has no break, nothing was counted twice.
    assert_eq!(hub.approvals().unwrap().len(), 1);
    assert_eq!(hub.usage_sum(TENANT).unwrap().requests, 1);
    d.stop();
    verify_audit(&d);
}

#[test]
fn a_rotated_signing_key_is_trusted_after_its_keyset_statement_and_persisted() {
    let dev = Dev::start();
    let hub = dev.hub();
    let mut d = enrolled_daemon(&dev, "[approvals]\nwait_seconds = 1\n");
    d.spawn();
    let new_kid = hub.rotate_signing_key().unwrap();
    wait_until("the keyset applied", || {
        audit_text(&d).contains("hub.keyset_applied")
    });
    let identity = std::fs::read_to_string(d.state().join("hub-identity.json")).unwrap();
    assert!(identity.contains(&new_kid), "the new key is persisted");
    // A decision signed by the new key is accepted, across a restart too.
    d.stop();
    d.spawn();
    let fetch = json!({"command": "curl -fsS https://example.com/"});
    blocked(&d.decide("exec", fetch.clone(), "k1"));
    wait_until("the request", || {
        !hub.pending_approvals().unwrap().is_empty()
    });
    let id = hub.pending_approvals().unwrap()[0]
        .request
        .approval_id
        .clone();
    let signed = hub.decide(&id, DecisionKind::AllowOnce).unwrap();
    assert_eq!(signed.signed.kid, new_kid);
    wait_until("the decision applied", || {
        audit_text(&d).contains("approval.approved")
    });
    assert_eq!(d.decide("exec", fetch.clone(), "k2")["params"], fetch);
    assert!(!audit_text(&d).contains("hub.decision_rejected"));
}

#[test]
fn an_old_credential_is_rotated_stored_first_and_never_logged() {
    let dev = Dev::start();
    let hub = dev.hub();
    let mut d = enrolled_daemon(&dev, "[approvals]\nwait_seconds = 1\n");
    // Enrolled 31 days ago, as far as the identity file says.
    let path = d.state().join("hub-identity.json");
    let mut identity: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let old = identity["credential"].as_str().unwrap().to_owned();
    identity["enrolled_at"] = json!(now() - 31 * 24 * 3600);
    std::fs::write(&path, identity.to_string()).unwrap();
    d.spawn();
    wait_until("the rotation", || {
        audit_text(&d).contains("hub.credential_rotated")
    });
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let new = stored["credential"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    // The new credential works (and, once used, is the only one the Hub accepts).
    let fetch = json!({"command": "curl -fsS https://example.com/"});
    blocked(&d.decide("exec", fetch, "c1"));
    wait_until("the request with the new credential", || {
        !hub.pending_approvals().unwrap().is_empty()
    });
    // Rotated once: a restart does not rotate again.
    d.stop();
    d.spawn();
    let fetch = json!({"command": "curl -fsS https://example.org/"});
    blocked(&d.decide("exec", fetch, "c2"));
    wait_until("the second request", || hub.approvals().unwrap().len() == 2);
    assert_eq!(audit_text(&d).matches("hub.credential_rotated").count(), 1);
    for text in [d.log(), audit_text(&d)] {
        assert!(!text.contains(&old) && !text.contains(&new));
    }
}

#[test]
fn a_hanging_hub_holds_up_one_queue_but_not_decisions() {
    use clawgate_devhub::{Fault, FaultAction};
    let dev = Dev::start();
    let hub = dev.hub();
    let mut d = enrolled_daemon(&dev, "[approvals]\nwait_seconds = 1\n");
    d.spawn();
    let first = json!({"command": "curl -fsS https://example.com/"});
    blocked(&d.decide("exec", first.clone(), "g1"));
    wait_until("the first request", || hub.approvals().unwrap().len() == 1);
    let id = hub.approvals().unwrap()[0].request.approval_id.clone();
    // The next request hangs (until the client's 30 s deadline); the event channel is a
    // separate task, so the owner's answer to the first still lands.
    hub.faults().arm(Fault {
        action: FaultAction::Hang,
        path_prefix: Some("/v1/approvals".into()),
        times: Some(1),
    });
    let second = json!({"command": "curl -fsS https://example.org/"});
    blocked(&d.decide("exec", second.clone(), "g2"));
    hub.decide(&id, DecisionKind::AllowOnce).unwrap();
    wait_until("the first decision applied", || {
        audit_text(&d).contains("approval.approved")
    });
    assert_eq!(
        d.decide("exec", first, "g3")["params"]["command"],
        "curl -fsS https://example.com/"
    );
    // The hung request is retried after its deadline and arrives once.
    crate::hubwire::wait_until_within("the second request after the hang", 120, || {
        hub.approvals().unwrap().len() == 2
    });
    d.stop();
    verify_audit(&d);
}

/// Exactly-once usage against the dev Hub itself: `clawgate serve` is killed (SIGKILL) at a
/// random moment after each start, twenty times, while it ships usage, with more usage metered
/// between rounds; once it is left running, the dev Hub's totals equal the metered totals, field
/// by field (a double count or a loss would show).
#[test]
fn killed_while_shipping_the_dev_hub_totals_equal_the_metered_totals() {
    let dev = Dev::start();
    let hub = dev.hub();
    let mut d = enrolled_daemon(&dev, "");
    let usage_db = d.state().join("usage.db");
    let hour = now() - now().rem_euclid(3600);
    record_usage(
        &usage_db,
        vec![
            usage_record("main", "claude-x", hour - 7200, 100),
            usage_record("main", "claude-x", hour, 10),
            usage_record("ops", "gpt-y", hour, 7),
        ],
    );
    let mut rng = u64::try_from(now()).unwrap() | 1;
    for round in 0..20u64 {
        d.spawn();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(std::time::Duration::from_millis(rng % 1200));
        d.kill_hard();
        record_usage(
            &usage_db,
            vec![usage_record(
                if round % 3 == 0 { "ops" } else { "main" },
                "claude-x",
                hour,
                round + 1,
            )],
        );
    }
    d.spawn();
    let metered =
        clawgate_egress::read_buckets(&usage_db, &clawgate_egress::BucketQuery::default())
            .unwrap()
            .iter()
            .fold([0u64; 5], |t, b| {
                [
                    t[0] + b.usage.input,
                    t[1] + b.usage.output,
                    t[2] + b.usage.cache_read,
                    t[3] + b.usage.cache_write,
                    t[4] + b.requests,
                ]
            });
    wait_until("the dev Hub's totals equal the metered totals", || {
        let s = hub.usage_sum(TENANT).unwrap();
        [s.input, s.output, s.cache_read, s.cache_write, s.requests] == metered
    });
    d.stop();
}
