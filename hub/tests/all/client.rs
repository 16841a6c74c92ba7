//! The client against the loopback HTTPS Hub: every endpoint with the document's examples, pins,
//! and every failure the Hub can inflict.

use std::time::{Duration, Instant};

use clawgate_hub::backoff::{Backoff, OsRng};
use clawgate_hub::client::{HubClient, Timeouts};
use clawgate_hub::protocol::*;
use clawgate_hub::{Error, ErrorClass, TransportKind};
use clawgate_protocol::SecretString;
use serde_json::{Value, json};

use crate::server::{FakeHub, Reply};

pub(crate) const CREDENTIAL: &str = "cga_YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8";

pub(crate) fn doc() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    serde_json::from_slice(&clawgate_protocol::io::read_capped(&path, 1 << 20).unwrap()).unwrap()
}

/// `paths.<path>.<method>` example `name` of the request body, or of the response `status`.
pub(crate) fn example(path: &str, method: &str, status: Option<&str>, name: &str) -> Value {
    let d = doc();
    let op = &d["paths"][path][method];
    let media = match status {
        None => &op["requestBody"]["content"]["application/json"],
        Some(s) => &op["responses"][s]["content"]["application/json"],
    };
    let v = media["examples"][name]["value"].clone();
    assert!(!v.is_null(), "no example {path} {method} {status:?} {name}");
    v
}

pub(crate) fn fast() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_millis(800),
        poll_margin: Duration::from_millis(800),
        bundle: Duration::from_secs(2),
    }
}

pub(crate) fn client(hub: &FakeHub) -> HubClient {
    HubClient::new(
        &hub.url(),
        vec![hub.pin],
        Some(SecretString::new(CREDENTIAL.into())),
        fast(),
    )
    .unwrap()
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Routes each path to the document's example answer.
fn example_hub(r: &crate::server::Recorded) -> Reply {
    let path = r.target.split('?').next().unwrap();
    let ok = |p: &str, m: &str, s: &str, n: &str| {
        Reply::Json(s.parse().unwrap(), example(p, m, Some(s), n), vec![])
    };
    match (r.method.as_str(), path) {
        ("POST", "/v1/enroll") => ok("/v1/enroll", "post", "200", "example"),
        ("POST", "/v1/credential/rotate") => ok("/v1/credential/rotate", "post", "200", "example"),
        ("GET", "/v1/events") => ok("/v1/events", "get", "200", "events"),
        ("GET", "/v1/bundles/42") => ok("/v1/bundles/{version}", "get", "200", "example"),
        ("POST", "/v1/bundles/41/status") => Reply::Raw(204, vec![]),
        ("POST", "/v1/approvals") => ok("/v1/approvals", "post", "201", "pending"),
        ("GET", "/v1/approvals/ap_0123456789abcdef") => {
            ok("/v1/approvals/{id}", "get", "200", "decided")
        }
        ("POST", "/v1/usage") => ok("/v1/usage", "post", "200", "example"),
        ("POST", "/v1/audit") => ok("/v1/audit", "post", "200", "example"),
        ("POST", "/v1/heartbeat") => ok("/v1/heartbeat", "post", "200", "example"),
        ("POST", "/v1/commands/cmd_01J9Z3K7/result") => Reply::Raw(204, vec![]),
        _ => Reply::Json(
            404,
            json!({"error": {"code": "not_found", "message": "no route"}}),
            vec![],
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_sends_the_documented_request_and_parses_the_documented_answer() {
    let hub = FakeHub::start(example_hub).await;
    let c = client(&hub);

    let enroll_req = example("/v1/enroll", "post", None, "example");
    let r = c.enroll(&typed(enroll_req.clone())).await.unwrap();
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        example("/v1/enroll", "post", Some("200"), "example")
    );
    let r = c.rotate_credential().await.unwrap();
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        example("/v1/credential/rotate", "post", Some("200"), "example")
    );
    let events = c
        .poll_events(Some("c_000000000000002a"), Duration::from_secs(25))
        .await
        .unwrap();
    assert_eq!(events.events.len(), 4);
    assert!(events.events.iter().all(|e| matches!(e, Event::Known(_))));
    let bundle = c.get_bundle(42).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&bundle).unwrap(),
        example("/v1/bundles/{version}", "get", Some("200"), "example")
    );
    let status_req = example("/v1/bundles/{version}/status", "post", None, "rejected");
    c.report_bundle_status(41, &typed(status_req.clone()))
        .await
        .unwrap();
    let approval_req = example("/v1/approvals", "post", None, "example");
    let created = c
        .create_approval(&typed(approval_req.clone()))
        .await
        .unwrap();
    assert!(created.created);
    assert_eq!(created.status.status, ApprovalState::Pending);
    let decided = c.get_approval("ap_0123456789abcdef").await.unwrap();
    assert_eq!(decided.status, ApprovalState::Decided);
    assert!(decided.decision.is_some());
    let usage_req = example("/v1/usage", "post", None, "example");
    let acks = c.ingest_usage(&typed(usage_req.clone())).await.unwrap();
    assert_eq!(acks.acks.len(), 2);
    let audit_req = example("/v1/audit", "post", None, "example");
    let head = c.ingest_audit(&typed(audit_req.clone())).await.unwrap();
    assert_eq!(head.last_seq, 2);
    let hb_req = example("/v1/heartbeat", "post", None, "healthy");
    let next = c.heartbeat(&typed(hb_req.clone())).await.unwrap();
    assert_eq!(next.next_in_seconds, 57);
    let result_req = example("/v1/commands/{id}/result", "post", None, "succeeded");
    c.report_command_result("cmd_01J9Z3K7", &typed(result_req.clone()))
        .await
        .unwrap();

    let seen = hub.recorded();
    let expect: [(&str, &str, Option<&Value>); 11] = [
        ("POST", "/v1/enroll", Some(&enroll_req)),
        ("POST", "/v1/credential/rotate", None),
        ("GET", "/v1/events?cursor=c_000000000000002a&wait=25", None),
        ("GET", "/v1/bundles/42", None),
        ("POST", "/v1/bundles/41/status", Some(&status_req)),
        ("POST", "/v1/approvals", Some(&approval_req)),
        ("GET", "/v1/approvals/ap_0123456789abcdef", None),
        ("POST", "/v1/usage", Some(&usage_req)),
        ("POST", "/v1/audit", Some(&audit_req)),
        ("POST", "/v1/heartbeat", Some(&hb_req)),
        (
            "POST",
            "/v1/commands/cmd_01J9Z3K7/result",
            Some(&result_req),
        ),
    ];
    assert_eq!(seen.len(), expect.len());
    for (r, (method, target, body)) in seen.iter().zip(expect) {
        assert_eq!((r.method.as_str(), r.target.as_str()), (method, target));
        let auth = r.header("authorization");
        if target == "/v1/enroll" {
            assert_eq!(auth, None, "enroll is unauthenticated");
        } else {
            assert_eq!(
                auth,
                Some(format!("Bearer {CREDENTIAL}").as_str()),
                "{target}"
            );
        }
        match body {
            Some(b) => {
                assert_eq!(&r.json(), b, "{target}");
                assert_eq!(r.header("content-type"), Some("application/json"));
            }
            None => assert!(r.body.is_empty(), "{target}"),
        }
        assert!(r.header("user-agent").unwrap().starts_with("clawgate/"));
    }
    // The client's path list is the document's.
    let paths: std::collections::BTreeSet<String> = doc()["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let listed: std::collections::BTreeSet<String> = clawgate_hub::client::ENDPOINTS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(paths, listed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_key_is_not_pinned_is_refused_before_any_request() {
    let hub = FakeHub::start(example_hub).await;
    // The crate's own SPKI extraction agrees with rcgen's key.
    let cert = rustls::pki_types::CertificateDer::from(hub.cert_der.clone());
    assert_eq!(clawgate_hub::tls::spki_sha256(&cert), Some(hub.pin));

    let mut wrong = hub.pin;
    wrong[0] ^= 1;
    let c = HubClient::new(
        &hub.url(),
        vec![wrong],
        Some(SecretString::new(CREDENTIAL.into())),
        fast(),
    )
    .unwrap();
    let err = c
        .heartbeat(&typed(example("/v1/heartbeat", "post", None, "healthy")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PinMismatch), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Blocked);
    assert!(
        hub.recorded().is_empty(),
        "no HTTP request may reach an unpinned server"
    );

    // Any one of several pins is enough.
    let c = HubClient::new(
        &hub.url(),
        vec![wrong, hub.pin],
        Some(SecretString::new(CREDENTIAL.into())),
        fast(),
    )
    .unwrap();
    c.heartbeat(&typed(example("/v1/heartbeat", "post", None, "healthy")))
        .await
        .unwrap();
    assert_eq!(hub.recorded().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_showing_the_pinned_certificate_without_its_key_is_refused() {
    let hub = FakeHub::start(example_hub).await;
    let impostor = FakeHub::start_impostor(hub.cert_der.clone()).await;
    let c = HubClient::new(
        &impostor.url(),
        vec![hub.pin],
        Some(SecretString::new(CREDENTIAL.into())),
        fast(),
    )
    .unwrap();
    let err = c
        .heartbeat(&typed(example("/v1/heartbeat", "post", None, "healthy")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Tls,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        impostor.recorded().is_empty(),
        "the credential never reached the impostor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_are_classified_with_retry_after() {
    let hub = FakeHub::start(|_| Reply::Hang).await;
    let c = client(&hub);
    let hb: Heartbeat = typed(example("/v1/heartbeat", "post", None, "healthy"));
    let cases: Vec<(Reply, u16, &str, ErrorClass, Option<Duration>)> = vec![
        (
            Reply::Json(
                503,
                json!({"error": {"code": "unavailable", "message": "maintenance"}}),
                vec![("retry-after", "7".into())],
            ),
            503,
            "unavailable",
            ErrorClass::Retryable,
            Some(Duration::from_secs(7)),
        ),
        (
            Reply::Json(
                429,
                json!({"error": {"code": "rate_limited", "message": "slow down"}}),
                vec![("retry-after", "Thu, 01 Jan 1970 00:00:00 GMT".into())],
            ),
            429,
            "rate_limited",
            ErrorClass::Retryable,
            Some(Duration::ZERO),
        ),
        (
            Reply::Raw(500, b"<html>oops</html>".to_vec()),
            500,
            "unknown",
            ErrorClass::Retryable,
            None,
        ),
        (
            Reply::Raw(502, vec![]),
            502,
            "unknown",
            ErrorClass::Retryable,
            None,
        ),
        (
            Reply::Json(
                401,
                json!({"error": {"code": "unauthorized", "message": "revoked"}}),
                vec![],
            ),
            401,
            "unauthorized",
            ErrorClass::Blocked,
            None,
        ),
        (
            Reply::Json(
                400,
                json!({"error": {"code": "bad_request", "message": "no"}}),
                vec![],
            ),
            400,
            "bad_request",
            ErrorClass::Fatal,
            None,
        ),
        (
            Reply::Json(
                409,
                json!({"error": {"code": "approval_conflict", "message": "same id"}}),
                vec![],
            ),
            409,
            "approval_conflict",
            ErrorClass::Fatal,
            None,
        ),
        (
            Reply::Raw(302, vec![]),
            302,
            "unknown",
            ErrorClass::Fatal,
            None,
        ),
    ];
    for (reply, status, code, class, after) in cases {
        hub.set_handler(move |_| reply.clone());
        let err = c.heartbeat(&hb).await.unwrap_err();
        let Error::Http {
            status: s,
            code: c2,
            retry_after,
            ..
        } = &err
        else {
            panic!("{status}: {err:?}");
        };
        assert_eq!(
            (*s, c2.as_str(), err.class(), *retry_after),
            (status, code, class, after),
            "{err}"
        );
        assert_eq!(err.retry_after(), after);
    }

    // An audit gap carries the seq to resend from.
    hub.set_handler(|_| Reply::Json(409, example_gap(), vec![]));
    let err = c
        .ingest_audit(&typed(example("/v1/audit", "post", None, "example")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Http {
                status: 409,
                expected_seq: Some(3),
                ..
            }
        ),
        "{err:?}"
    );
}

fn example_gap() -> Value {
    doc()["paths"]["/v1/audit"]["post"]["responses"]["409"]["content"]["application/json"]["examples"]["example"]["value"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangs_cuts_closes_and_garbage_are_retryable_transport_failures() {
    let hub = FakeHub::start(|_| Reply::Hang).await;
    let c = client(&hub);
    let hb: Heartbeat = typed(example("/v1/heartbeat", "post", None, "healthy"));

    let started = Instant::now();
    let err = c.heartbeat(&hb).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline held"
    );

    // The long poll's deadline is wait + margin, not the ordinary deadline.
    let started = Instant::now();
    let err = c
        .poll_events(None, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1700),
        "{:?}",
        started.elapsed()
    );

    hub.set_handler(|_| Reply::Cut {
        promised: 500,
        sent: br#"{"server_time": 17"#.to_vec(),
    });
    let err = c.heartbeat(&hb).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Cut,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());

    hub.set_handler(|_| Reply::Close);
    let err = c.heartbeat(&hb).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");

    hub.set_handler(|_| Reply::Raw(200, b"{\"server_time\": \"noon\"}".to_vec()));
    let err = c.heartbeat(&hb).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadResponse {
                operation: "heartbeat",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());

    // Answers above the cap are refused (4 MiB for ordinary calls).
    hub.set_handler(|_| Reply::Raw(200, vec![b' '; 5 * 1024 * 1024]));
    let err = c.heartbeat(&hb).await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");

    // Nobody listening.
    let dead = HubClient::new("https://127.0.0.1:1", vec![hub.pin], None, fast()).unwrap();
    let err = dead
        .enroll(&typed(example("/v1/enroll", "post", None, "example")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_loop_honours_retry_after_then_succeeds() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = calls.clone();
    let hub = FakeHub::start(move |_| {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::Json(
                503,
                json!({"error": {"code": "unavailable", "message": "busy"}}),
                vec![("retry-after", "1".into())],
            )
        } else {
            Reply::Json(
                200,
                json!({"server_time": 1_795_000_501, "next_in_seconds": 57}),
                vec![],
            )
        }
    })
    .await;
    let c = client(&hub);
    let hb: Heartbeat = typed(example("/v1/heartbeat", "post", None, "healthy"));
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
    let started = Instant::now();
    let answer = loop {
        match c.heartbeat(&hb).await {
            Ok(a) => break a,
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(backoff.next_delay(&mut OsRng, e.retry_after())).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(answer.next_in_seconds, 57);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    // The jittered backoff alone would have waited at most 10 ms.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_and_ids_are_refused_before_any_request() {
    let hub = FakeHub::start(example_hub).await;
    assert!(
        HubClient::new(
            &format!("http://127.0.0.1:{}", hub.addr.port()),
            vec![hub.pin],
            None,
            fast()
        )
        .is_err()
    );
    assert!(HubClient::new(&hub.url(), vec![], None, fast()).is_err());
    let c = client(&hub);
    assert!(c.get_approval("../enroll").await.is_err());
    assert!(
        c.report_command_result(
            "a/b",
            &CommandResult {
                status: CommandStatus::Failed,
                detail: String::new()
            }
        )
        .await
        .is_err()
    );
    let anonymous = HubClient::new(&hub.url(), vec![hub.pin], None, fast()).unwrap();
    let err = anonymous
        .heartbeat(&typed(example("/v1/heartbeat", "post", None, "healthy")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("enroll first"), "{err}");
    assert!(hub.recorded().is_empty());
}
