//! The HTTP edges, with a plain HTTPS client pinned to the dev Hub's key: the error shape, 401,
//! 405 with Allow, 413, content type, schema refusals, and the operator API's protection.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TestHub, approval_request, heartbeat};

fn client(t: &TestHub) -> reqwest::Client {
    let tls = clawgate_hub::tls::client_config(vec![t.hub.spki_pin()]).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .build()
        .unwrap()
}

/// Asserts the document's error shape and returns the code.
async fn error_code(r: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    clawgate_devhub::schema::schemas()
        .unwrap()
        .validate("Error", &body)
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn protocol_edges_refuse_with_the_documented_error_shape() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let http = client(&t);
    let url = t.hub.url();
    let cred = a.identity.credential().expose().to_owned();
    let hb = serde_json::to_value(heartbeat()).unwrap();

    // No credential, a malformed one, an unknown one.
    for auth in [
        None,
        Some("Bearer nope"),
        Some("Basic abc"),
        Some(&*format!("Bearer cga_{}", "x".repeat(43))),
    ] {
        let mut r = http
            .post(format!("{url}/v1/heartbeat"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&hb).unwrap());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        assert_eq!(
            error_code(r.send().await.unwrap(), StatusCode::UNAUTHORIZED).await,
            "unauthorized"
        );
    }
    // Wrong method: 405 with Allow.
    let r = http
        .get(format!("{url}/v1/heartbeat"))
        .bearer_auth(&cred)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(
        error_code(r, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    // Unknown path.
    let r = http
        .get(format!("{url}/v1/nothing"))
        .bearer_auth(&cred)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::NOT_FOUND).await, "not_found");
    // Not JSON, wrong content type, schema violations: 400 naming the problem.
    let r = http
        .post(format!("{url}/v1/heartbeat"))
        .bearer_auth(&cred)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
    let r = http
        .post(format!("{url}/v1/heartbeat"))
        .bearer_auth(&cred)
        .header("content-type", "text/plain")
        .body(hb.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
    let mut bad = hb.clone();
    bad["health"]["components"]["stability"] = json!(21);
    let r = http
        .post(format!("{url}/v1/heartbeat"))
        .bearer_auth(&cred)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&bad).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/health/components/stability"),
        "{body}"
    );
    let mut extra = serde_json::to_value(approval_request("ap_0000000000000abc", "x")).unwrap();
    extra["surprise"] = json!(1);
    let r = http
        .post(format!("{url}/v1/approvals"))
        .bearer_auth(&cred)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&extra).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
    // Query and path parameters.
    for q in ["wait=61", "wait=-1", "wait=x", "cursor="] {
        let r = http
            .get(format!("{url}/v1/events?{q}"))
            .bearer_auth(&cred)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(r, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{q}"
        );
    }
    let r = http
        .get(format!("{url}/v1/bundles/-1"))
        .bearer_auth(&cred)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
    // Over 4 MiB: 413.
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = http
        .post(format!("{url}/v1/usage"))
        .bearer_auth(&cred)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r, StatusCode::PAYLOAD_TOO_LARGE).await,
        "too_large"
    );
    // Nothing of the refused requests was recorded; a good heartbeat still works.
    assert!(t.hub.heartbeats().unwrap().is_empty());
    assert!(t.hub.approvals().unwrap().is_empty());
    let r = http
        .post(format!("{url}/v1/heartbeat"))
        .bearer_auth(&cred)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&hb).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_operator_api_needs_the_operator_token_and_drives_the_hub() {
    let t = TestHub::start().await;
    let a = t.enroll("tenant-a").await;
    let http = client(&t);
    let url = t.hub.url();
    let op = t.hub.operator_token().expose().to_owned();
    let cred = a.identity.credential().expose().to_owned();

    // The page itself is static; everything else needs the operator token (an appliance
    // credential is not one).
    let page = http.get(format!("{url}/ui")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("id=\"pending\""));
    for auth in [
        None,
        Some(cred.as_str()),
        Some("op_wrong_wrong_wrong_wrong"),
    ] {
        let mut r = http.get(format!("{url}/admin/overview"));
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        assert_eq!(
            error_code(r.send().await.unwrap(), StatusCode::UNAUTHORIZED).await,
            "unauthorized"
        );
    }

    a.client
        .create_approval(&approval_request("ap_00000000000000ee", "exec: ls"))
        .await
        .unwrap();
    let o: Value = http
        .get(format!("{url}/admin/overview"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(o["pending"][0]["approval_id"], "ap_00000000000000ee");
    let r = http
        .post(format!("{url}/admin/approvals/ap_00000000000000ee/decide"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"decision": "deny"})).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(format!("{url}/admin/approvals/ap_00000000000000ee/decide"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"decision": "allow_once"})).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::CONFLICT).await, "conflict");
    assert_eq!(
        a.client
            .get_approval("ap_00000000000000ee")
            .await
            .unwrap()
            .decision
            .unwrap()
            .signed
            .decision,
        clawgate_hub::protocol::DecisionKind::Deny
    );

    // Only the three commands exist.
    let r = http
        .post(format!("{url}/admin/commands"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({"appliance": a.identity.appliance_id, "name": "exec"}))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
    let r = http
        .post(format!("{url}/admin/commands"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({"appliance": a.identity.appliance_id, "name": "restart"}))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Faults through the API: one 503 on heartbeats, then normal again.
    let r = http.post(format!("{url}/admin/faults")).bearer_auth(&op)
        .header("content-type", "application/json").body(serde_json::to_vec(&json!({"op": "arm", "fault": {"action": {"kind": "status", "status": 503}, "path_prefix": "/v1/heartbeat", "times": 1}})).unwrap())
        .send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let e = a.client.heartbeat(&heartbeat()).await.unwrap_err();
    assert!(
        matches!(
            e,
            clawgate_hub::Error::Http {
                status: 503,
                retry_after: Some(_),
                ..
            }
        ),
        "{e}"
    );
    a.client.heartbeat(&heartbeat()).await.unwrap();
    let r = http
        .post(format!("{url}/admin/faults"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"op": "launch_missiles"})).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");

    // Tokens minted through the API enroll.
    let file: Value = http
        .post(format!("{url}/admin/tokens"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"tenant": "tenant-z"})).unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(file["tls_spki_sha256"][0], t.hub.spki_pin_hex());
    let r = http
        .post(format!("{url}/admin/tokens"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"tenant": "bad tenant!"})).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
    // A bundle that is not a bundle is refused.
    let r = http
        .post(format!("{url}/admin/bundles"))
        .bearer_auth(&op)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, StatusCode::BAD_REQUEST).await, "bad_request");
}
