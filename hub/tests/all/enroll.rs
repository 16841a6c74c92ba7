//! Enrollment and credential rotation against the loopback Hub.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clawgate_hub::Error;
use clawgate_hub::enroll::{EnrollOptions, enroll};
use clawgate_hub::identity::{Identity, rotate_credential};
use serde_json::{Value, json};

use crate::client::{doc, example, fast};
use crate::server::{FakeHub, Recorded, Reply};

pub(crate) const TOKEN: &str = "cgt_PLANTEDtokenq7N1x0vKZ2m4T8w5bR3";
pub(crate) const NEW_CREDENTIAL: &str = "cga_gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp8";

/// The document's token file example, pointed at `hub`.
pub(crate) fn write_token_file(dir: &Path, hub: &FakeHub) -> PathBuf {
    let mut file = doc()["components"]["schemas"]["EnrollmentTokenFile"]["examples"][0].clone();
    file["hub"] = hub.url().into();
    file["token"] = TOKEN.into();
    file["tls_spki_sha256"] = json!([hex::encode(hub.pin)]);
    let path = dir.join("enroll-token.json");
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

pub(crate) fn options() -> EnrollOptions {
    EnrollOptions {
        hostname: "vps-4711".into(),
        version: "0.1.0".into(),
        timeouts: fast(),
    }
}

pub(crate) fn enroll_answer() -> Value {
    example("/v1/enroll", "post", Some("200"), "example")
}

pub(crate) fn hub_handler(enroll: Value) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |r| match r.target.as_str() {
        "/v1/enroll" => Reply::Json(200, enroll.clone(), vec![]),
        "/v1/credential/rotate" => Reply::Json(200, json!({"credential": NEW_CREDENTIAL}), vec![]),
        "/v1/heartbeat" => Reply::Json(
            200,
            json!({"server_time": 1, "next_in_seconds": 60}),
            vec![],
        ),
        _ => Reply::Json(
            404,
            json!({"error": {"code": "not_found", "message": "?"}}),
            vec![],
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_stores_a_private_identity_and_destroys_the_token() {
    let hub = FakeHub::start(hub_handler(enroll_answer())).await;
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let token = write_token_file(work.path(), &hub);

    let identity = enroll(&token, state.path(), &options()).await.unwrap();
    assert_eq!(identity.tenant_id, "tenant-example");
    assert_eq!(identity.appliance_id, "appl-0001");
    assert_eq!(identity.heartbeat_seconds, 60);
    assert_eq!(identity.keyset().version(), 1);
    assert_eq!(identity.keyset().tls_pins(), &[hub.pin]);
    assert!(identity.keyset().key("hub-sign-2026-01").is_some());

    let sent = hub.recorded();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].json(),
        json!({"token": TOKEN, "hostname": "vps-4711", "version": "0.1.0"})
    );
    assert_eq!(sent[0].header("authorization"), None);

    let path = Identity::path(state.path());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(Identity::load(state.path()).unwrap().unwrap(), identity);
    assert!(!token.exists(), "the token file is gone");

    // The stored identity talks to the Hub with its credential.
    let client = identity.client(fast()).unwrap();
    client
        .heartbeat(
            &serde_json::from_value(example("/v1/heartbeat", "post", None, "healthy")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        hub.recorded()[1].header("authorization"),
        Some(format!("Bearer {}", enroll_answer()["credential"].as_str().unwrap()).as_str())
    );

    // Enrolling again is refused without a request, and a new token file is left alone.
    let token = write_token_file(work.path(), &hub);
    let err = enroll(&token, state.path(), &options()).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyEnrolled { .. }), "{err}");
    assert!(token.exists());
    assert_eq!(hub.recorded().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_without_the_provisioned_keys_or_with_a_bad_answer_is_refused() {
    let swapped = {
        let mut a = enroll_answer();
        // Same kid, another public key (the second vector key's).
        a["signing_keys"][0]["public_key"] = "JUO5L/EJVRFHatyDadtt3JM2ZaEZeN2hQE7hBmypVZ0=".into();
        a
    };
    let cases: Vec<(Value, &str)> = vec![
        (swapped, "token file"),
        (
            {
                let mut a = enroll_answer();
                a["signing_keys"][0]["kid"] = "hub-other".into();
                a
            },
            "token file",
        ),
        (
            {
                let mut a = enroll_answer();
                a["credential"] = "cga_short".into();
                a
            },
            "credential",
        ),
        (
            {
                let mut a = enroll_answer();
                a["tenant_id"] = "tenant/../x".into();
                a
            },
            "tenant id",
        ),
        (
            {
                let mut a = enroll_answer();
                a["heartbeat_seconds"] = 1.into();
                a
            },
            "heartbeat_seconds",
        ),
        (
            {
                let mut a = enroll_answer();
                a["keyset_version"] = 0.into();
                a
            },
            "keyset_version",
        ),
        (
            {
                let mut a = enroll_answer();
                a["surprise"] = true.into();
                a
            },
            "not the documented shape",
        ),
    ];
    for (answer, want) in cases {
        let hub = FakeHub::start(hub_handler(answer)).await;
        let work = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let token = write_token_file(work.path(), &hub);
        let err = enroll(&token, state.path(), &options()).await.unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
        assert!(
            !err.to_string().contains("YGFiY2Rl") && !err.to_string().contains("cga_short"),
            "{err}"
        );
        assert!(
            Identity::load(state.path()).unwrap().is_none(),
            "{want}: nothing stored"
        );
        assert!(token.exists(), "{want}: the token file stays for a retry");
    }

    // The Hub refuses the token: nothing changes either.
    let hub = FakeHub::start(|_| {
        Reply::Json(
            401,
            json!({"error": {"code": "token_invalid", "message": "used"}}),
            vec![],
        )
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let token = write_token_file(work.path(), &hub);
    let err = enroll(&token, state.path(), &options()).await.unwrap_err();
    assert!(
        matches!(err, Error::Http { status: 401, ref code, .. } if code == "token_invalid"),
        "{err}"
    );
    assert!(token.exists());

    // A token file others may read is refused before any request.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = hub.recorded().len();
    let err = enroll(&token, state.path(), &options()).await.unwrap_err();
    assert!(
        matches!(err, Error::InsecureFile { mode: 0o644, .. }),
        "{err}"
    );
    assert_eq!(hub.recorded().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_pinned_to_another_key_never_reaches_the_hub() {
    let hub = FakeHub::start(hub_handler(enroll_answer())).await;
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let token = write_token_file(work.path(), &hub);
    let mut file: Value =
        serde_json::from_slice(&clawgate_protocol::io::read_capped(&token, 1 << 16).unwrap())
            .unwrap();
    file["tls_spki_sha256"] = json!(["ab".repeat(32)]);
    std::fs::write(&token, serde_json::to_vec(&file).unwrap()).unwrap();
    let err = enroll(&token, state.path(), &options()).await.unwrap_err();
    assert!(matches!(err, Error::PinMismatch), "{err:?}");
    assert!(hub.recorded().is_empty(), "the token was never sent");
    assert!(token.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_persists_the_new_credential_before_using_it() {
    let hub = FakeHub::start(hub_handler(enroll_answer())).await;
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let token = write_token_file(work.path(), &hub);
    let mut identity = enroll(&token, state.path(), &options()).await.unwrap();
    let old = identity.credential().expose().to_owned();
    let client = identity.client(fast()).unwrap();
    let hb = serde_json::from_value(example("/v1/heartbeat", "post", None, "healthy")).unwrap();

    // Storing fails (the state directory is gone): the client keeps the old credential, which
    // the Hub still honours, and nothing on disk changed.
    let gone = work.path().join("missing");
    let err = rotate_credential(&client, &mut identity, &gone)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(!err.to_string().contains(NEW_CREDENTIAL));
    assert_eq!(identity.credential().expose(), old);
    client.heartbeat(&hb).await.unwrap();
    assert_eq!(
        hub.recorded().last().unwrap().header("authorization"),
        Some(format!("Bearer {old}").as_str())
    );

    // Storing succeeds: on disk first, then used.
    rotate_credential(&client, &mut identity, state.path())
        .await
        .unwrap();
    assert_eq!(identity.credential().expose(), NEW_CREDENTIAL);
    assert_eq!(
        Identity::load(state.path())
            .unwrap()
            .unwrap()
            .credential()
            .expose(),
        NEW_CREDENTIAL
    );
    client.heartbeat(&hb).await.unwrap();
    assert_eq!(
        hub.recorded().last().unwrap().header("authorization"),
        Some(format!("Bearer {NEW_CREDENTIAL}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyset_statement_from_an_event_rotates_pins_and_keys() {
    // The document's keyset event is signed by the vector's first key, which enrollment pinned.
    let hub = FakeHub::start(hub_handler(enroll_answer())).await;
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let token = write_token_file(work.path(), &hub);
    let identity = enroll(&token, state.path(), &options()).await.unwrap();
    let events = example("/v1/events", "get", Some("200"), "events");
    let statement = serde_json::from_value(events["events"][3]["keyset"].clone()).unwrap();
    let rotated = identity.with_keyset(&statement).unwrap();
    assert_eq!(rotated.keyset().version(), 2);
    assert!(rotated.keyset().key("hub-sign-2026-07").is_some());
    assert_ne!(
        rotated.keyset().tls_pins(),
        &[hub.pin],
        "the example announces other pins"
    );
    rotated.store(state.path()).unwrap();
    assert_eq!(
        Identity::load(state.path())
            .unwrap()
            .unwrap()
            .keyset()
            .version(),
        2
    );
    // Replaying it is refused.
    assert_eq!(
        rotated.with_keyset(&statement).unwrap_err().code(),
        "not_newer"
    );
    // The rotated identity no longer trusts the old TLS key.
    let err = rotated
        .client(fast())
        .unwrap()
        .heartbeat(
            &serde_json::from_value(example("/v1/heartbeat", "post", None, "healthy")).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PinMismatch), "{err:?}");
}
