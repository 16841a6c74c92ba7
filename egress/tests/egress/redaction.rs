//! Planted vault values never reach the upstream, in any form; JSON key order survives.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clawgate_egress::RedactorSource;
use serde_json::{Value, json};

use crate::harness::*;

/// Every form of every planted value the upstream must not see.
fn forbidden() -> Vec<String> {
    let mut v = Vec::new();
    for s in [VAULT_PLAIN, VAULT_QUOTED, VAULT_B64] {
        v.push(s.to_owned());
        let escaped = serde_json::to_string(s).unwrap();
        v.push(escaped[1..escaped.len() - 1].to_owned());
        v.push(STANDARD.encode(s));
        v.push(URL_SAFE_NO_PAD.encode(s));
    }
    v.push(STANDARD.encode(format!("admin:{VAULT_B64}")));
    v
}

fn assert_clean(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    for f in forbidden() {
        assert!(
            !text.contains(&f),
            "upstream got a planted secret form: {text}"
        );
    }
    // Decoded strings too (the upstream decodes JSON).
    fn walk(v: &Value) {
        match v {
            Value::String(s) => {
                for x in [VAULT_PLAIN, VAULT_QUOTED, VAULT_B64] {
                    assert!(!s.contains(x), "decoded string holds a planted secret");
                }
            }
            Value::Array(a) => a.iter().for_each(walk),
            Value::Object(o) => o.values().for_each(walk),
            _ => {}
        }
    }
    walk(&serde_json::from_slice(raw).expect("the upstream got valid JSON"));
}

/// The object keys of `v`, depth first, in document order.
fn key_order(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                out.push(k.clone());
                key_order(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| key_order(v, out)),
        _ => {}
    }
}

fn planted_body() -> String {
    // Built by hand so the key order is deliberately not alphabetical, and with a unicode escape
    // no serializer would produce.
    let tool_args =
        serde_json::to_string(&json!({"password": VAULT_QUOTED, "host": "db"})).unwrap();
    let basic = STANDARD.encode(format!("admin:{VAULT_B64}"));
    let b64 = STANDARD.encode(VAULT_B64);
    let unicode_escaped = format!("\\u0056{}", &VAULT_PLAIN[1..]);
    format!(
        r#"{{"zeta":1,"model":"claude-sonnet-4-5","messages":[{{"role":"user","content":"the password is {VAULT_PLAIN}, keep it"}},{{"role":"assistant","content":[{{"type":"tool_use","name":"exec","input":{{"cmd":"psql","env":{tool_args}}}}}]}},{{"role":"user","content":[{{"type":"tool_result","content":"Authorization: Basic {basic}\nblob={b64}\nagain: {unicode_escaped}"}}]}}],"alpha":{{"y":2,"b":[3,{{"q":{quoted}}}]}},"max_tokens":10}}"#,
        quoted = serde_json::to_string(VAULT_QUOTED).unwrap(),
        tool_args = serde_json::to_string(&tool_args).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_reach_the_upstream_and_key_order_survives() {
    let h = start().await;
    let body = planted_body();
    // The planted forms really are in what the client sent.
    assert!(body.contains(VAULT_PLAIN));
    assert!(body.contains(&STANDARD.encode(VAULT_B64)));
    assert!(body.contains(&serde_json::to_string(VAULT_QUOTED).unwrap()[1..10]));
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.fake.last();
    assert_clean(&seen.body);
    let up = String::from_utf8_lossy(&seen.body);
    assert!(up.contains("SECRET_REF(db_password)"), "{up}");
    assert!(up.contains("SECRET_REF(quoted)"), "{up}");
    assert!(up.contains("SECRET_REF(api_secret)"), "{up}");
    let (mut before, mut after) = (Vec::new(), Vec::new());
    key_order(&serde_json::from_str(&body).unwrap(), &mut before);
    key_order(&serde_json::from_slice(&seen.body).unwrap(), &mut after);
    assert_eq!(before, after, "JSON key order changed");
    assert_eq!(seen.headers["content-length"], seen.body.len().to_string());

    let m = h.egress.metrics().encode();
    assert!(
        m.contains("clawgate_egress_redactions_total{route=\"anthropic\",detector=\"vault\""),
        "{m}"
    );
    for f in forbidden() {
        assert!(!m.contains(&f));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_redacts_including_the_injected_usage_path() {
    let h = start().await;
    let bearer = format!("Bearer {TOKEN_A}");
    let chat = json!({"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":format!("x {VAULT_PLAIN} y")}]}).to_string();
    h.call(
        "POST",
        "/openai/v1/chat/completions",
        &[("authorization", &bearer)],
        chat,
    )
    .await;
    assert_clean(&h.fake.last().body);
    let gem = json!({"contents":[{"parts":[{"text":VAULT_QUOTED}]}]}).to_string();
    h.call(
        "POST",
        "/gemini/v1beta/models/g:generateContent",
        &[("x-goog-api-key", TOKEN_A)],
        gem,
    )
    .await;
    assert_clean(&h.fake.last().body);
    let or = json!({"model":"x","messages":[{"role":"user","content":STANDARD.encode(VAULT_B64)}]})
        .to_string();
    h.call(
        "POST",
        "/openrouter/v1/chat/completions",
        &[("authorization", &bearer)],
        or,
    )
    .await;
    assert_clean(&h.fake.last().body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_deflate_bodies_are_decoded_then_redacted() {
    let h = start().await;
    let body = planted_body();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A), ("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.fake.last();
    assert!(seen.headers.get("content-encoding").is_none());
    assert_clean(&seen.body);

    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(body.as_bytes()).unwrap();
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A), ("content-encoding", "deflate")],
            z.finish().unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_clean(&h.fake.last().body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_redactor_applies_to_the_next_request_and_none_refuses() {
    let h = start().await;
    let fresh = clawgate_redact::Redactor::builder()
        .vault_value(
            "rotated".parse().unwrap(),
            clawgate_protocol::SecretString::new("Nw4-freshly-added-secret-77".into()),
        )
        .build()
        .unwrap();
    h.redactor.set(Arc::new(fresh));
    assert!(h.redactor.current().is_some());
    let body = json!({"messages":[{"content":"Nw4-freshly-added-secret-77"}]}).to_string();
    h.call(
        "POST",
        "/anthropic/v1/messages",
        &[("x-api-key", TOKEN_A)],
        body.clone(),
    )
    .await;
    assert!(String::from_utf8_lossy(&h.fake.last().body).contains("SECRET_REF(rotated)"));

    h.fake.clear();
    h.redactor.clear();
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            body,
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["x-clawgate-error"], "redactor_unavailable");
    assert!(h.fake.seen().is_empty(), "forwarded without a redactor");
}

/// Takes every offer, remembering agent-free facts: name, rule and value.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(String, String, String)>>);

impl clawgate_redact::Capture for Recorder {
    fn offer(&self, o: &clawgate_redact::Offer<'_>) -> Option<clawgate_protocol::SecretName> {
        self.0
            .lock()
            .unwrap()
            .push((o.name.to_string(), o.rule.to_owned(), o.value.to_owned()));
        Some(o.name.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_secrets_in_a_request_are_captured_and_referenced() {
    const GH: &str = "ghp_N7ITxKLUkX0vyOYx6tzSnWQ36xgB0Oz54321";
    let rec = Arc::new(Recorder::default());
    let h = start_capturing(|_| {}, Some(rec.clone())).await;
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [
        {"role": "user", "content": format!("my token is {GH}; the db password is {VAULT_PLAIN}")}]})
    .to_string();
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 200);
    let up = String::from_utf8_lossy(&h.fake.last().body).into_owned();
    assert!(!up.contains(GH), "{up}");
    let taken = rec.0.lock().unwrap().clone();
    assert_eq!(
        taken.len(),
        1,
        "only the unknown secret is offered: {taken:?}"
    );
    let (name, rule, value) = &taken[0];
    assert_eq!((rule.as_str(), value.as_str()), ("github-pat", GH));
    assert!(name.starts_with("captured_github-pat_"));
    assert!(
        up.contains(&format!(
            "my token is SECRET_REF({name}); the db password is SECRET_REF(db_password)"
        )),
        "{up}"
    );
    // The same request again: the same bytes upstream (prompt caching holds).
    h.call(
        "POST",
        "/anthropic/v1/messages",
        &[("x-api-key", TOKEN_A)],
        body,
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&h.fake.last().body), up);
    let m = h.egress.metrics().encode();
    assert!(!m.contains(GH));
}
