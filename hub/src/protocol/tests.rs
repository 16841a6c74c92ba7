//! `hub/openapi.json` against these types: every example deserialises into the Rust type of its
//! schema and re-serialises to the same JSON; every schema that has a Rust type has an example.

use std::collections::BTreeSet;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;

pub(crate) fn document() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let bytes = clawgate_protocol::io::read_capped(&path, 1 << 20).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

type RoundTrip = fn(&Value) -> Result<Value, String>;

fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// The bundle document belongs to the policies crate: the example must verify as a bundle.
fn bundle_document(v: &Value) -> Result<Value, String> {
    let vector: Value = serde_json::from_slice(
        &clawgate_protocol::io::read_capped(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../policies/testdata/bundle/vector-1.json"),
            1 << 20,
        )
        .unwrap(),
    )
    .unwrap();
    let mut trust = clawgate_policies::bundle::TrustStore::default();
    let key: [u8; 32] = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        vector["public_key_base64"].as_str().unwrap(),
    )
    .unwrap()
    .try_into()
    .unwrap();
    trust.add(vector["key_id"].as_str().unwrap(), &key).unwrap();
    let bytes = serde_json::to_vec(v).map_err(|e| e.to_string())?;
    clawgate_policies::bundle::verify(
        &bytes,
        &trust,
        &clawgate_policies::bundle::Expectations {
            tenant_id: vector["verify_with"]["tenant_id"].as_str().unwrap(),
            high_water: vector["verify_with"]["high_water"].as_u64().unwrap(),
            allow_current: false,
            now: vector["verify_with"]["now"].as_i64().unwrap(),
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(v.clone())
}

fn types() -> Vec<(&'static str, RoundTrip)> {
    vec![
        ("Error", round_trip::<ErrorBody>),
        ("EnrollmentTokenFile", round_trip::<EnrollmentTokenFile>),
        ("EnrollRequest", round_trip::<EnrollRequest>),
        ("EnrollResponse", round_trip::<EnrollResponse>),
        ("RotateResponse", round_trip::<RotateResponse>),
        ("EventsResponse", round_trip::<EventsResponse>),
        ("BundleDocument", bundle_document),
        ("BundleStatusReport", round_trip::<BundleStatusReport>),
        ("ApprovalRequest", round_trip::<ApprovalRequest>),
        ("ApprovalStatus", round_trip::<ApprovalStatus>),
        ("UsageBatch", round_trip::<UsageBatch>),
        ("UsageAckResponse", round_trip::<UsageAckResponse>),
        ("AuditBatch", round_trip::<AuditBatch>),
        ("AuditAck", round_trip::<AuditAck>),
        ("Heartbeat", round_trip::<Heartbeat>),
        ("HeartbeatResponse", round_trip::<HeartbeatResponse>),
        ("CommandResult", round_trip::<CommandResult>),
    ]
}

/// Every example in the document, with the schema it is an example of and where it is.
fn examples(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let schema_name = |media: &Value| -> String {
        media["schema"]["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .unwrap_or_else(|| panic!("media type without a schema $ref: {media}"))
            .to_owned()
    };
    let mut media_examples = |media: &Value, at: String| {
        for (name, ex) in media["examples"].as_object().into_iter().flatten() {
            out.push((
                schema_name(media),
                format!("{at} {name}"),
                ex["value"].clone(),
            ));
        }
    };
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if let Some(media) = op.pointer("/requestBody/content/application~1json") {
                media_examples(media, format!("{method} {path} request"));
            }
            for (status, resp) in op["responses"].as_object().unwrap() {
                if let Some(media) = resp.pointer("/content/application~1json") {
                    media_examples(media, format!("{method} {path} {status}"));
                }
            }
        }
    }
    for (name, resp) in doc["components"]["responses"].as_object().unwrap() {
        if let Some(media) = resp.pointer("/content/application~1json") {
            media_examples(media, format!("response {name}"));
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (i, ex) in schema["examples"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            out.push((name.clone(), format!("schema {name} #{i}"), ex.clone()));
        }
    }
    out
}

#[test]
fn every_example_round_trips_through_its_rust_type() {
    let doc = document();
    let table = types();
    let mut covered = BTreeSet::new();
    let all = examples(&doc);
    assert!(all.len() >= 29, "only {} examples found", all.len());
    for (schema, at, value) in &all {
        let (_, check) = table
            .iter()
            .find(|(name, _)| name == schema)
            .unwrap_or_else(|| panic!("{at}: schema {schema} has no Rust type in the table"));
        let back = check(value).unwrap_or_else(|e| panic!("{at}: {e}\n{value:#}"));
        assert_eq!(&back, value, "{at}: re-serialised JSON differs");
        covered.insert(schema.as_str());
    }
    for (name, _) in &table {
        assert!(covered.contains(name), "schema {name} has no example");
    }
}

#[test]
fn document_basics() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], PROTOCOL_VERSION);
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = crate::client::ENDPOINTS.iter().copied().collect();
    assert_eq!(
        paths, expected,
        "the client's endpoints and the document's paths"
    );
    // Every error answer uses the one error shape; 429 and 503 carry Retry-After.
    for (name, resp) in doc["components"]["responses"].as_object().unwrap() {
        assert_eq!(
            resp["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
            "{name}"
        );
    }
    for name in ["RateLimited", "Unavailable"] {
        assert!(
            doc["components"]["responses"][name]["headers"]["Retry-After"].is_object(),
            "{name}"
        );
    }
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().unwrap() {
                let code: u16 = status.parse().unwrap();
                if code >= 400 {
                    let schema = resp
                        .get("$ref")
                        .and_then(Value::as_str)
                        .map(|r| {
                            doc.pointer(r.trim_start_matches('#')).unwrap()["content"]
                                ["application/json"]["schema"]["$ref"]
                                .clone()
                        })
                        .unwrap_or_else(|| {
                            resp["content"]["application/json"]["schema"]["$ref"].clone()
                        });
                    assert_eq!(
                        schema, "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
            let public = path == "/v1/enroll";
            assert_eq!(
                op["security"].as_array().is_some_and(Vec::is_empty),
                public,
                "{method} {path}: only enroll is unauthenticated"
            );
        }
    }
}

#[test]
fn events_of_unknown_type_or_bad_body_are_kept_apart() {
    let batch = json!({"cursor": "c1", "events": [
        {"type": "bundle_available", "version": 3, "sha256": "ab"},
        {"type": "exec_shell", "command": "rm -rf /"},
        {"type": "bundle_available", "version": "three"},
        {"type": "bundle_available", "version": 4, "sha256": "cd", "extra": 1},
        {"no_type": true},
    ]});
    let parsed: EventsResponse = serde_json::from_value(batch.clone()).unwrap();
    assert!(matches!(
        &parsed.events[0],
        Event::Known(KnownEvent::BundleAvailable { version: 3, .. })
    ));
    assert!(matches!(&parsed.events[1], Event::Unrecognised { kind, .. } if kind == "exec_shell"));
    assert!(
        matches!(&parsed.events[2], Event::Malformed { kind, error, .. } if kind == "bundle_available" && error.contains("invalid type"))
    );
    assert!(
        matches!(&parsed.events[3], Event::Malformed { error, .. } if error.contains("unknown field")),
        "{:?}",
        parsed.events[3]
    );
    assert!(matches!(&parsed.events[4], Event::Unrecognised { kind, .. } if kind == "(none)"));
    // Kept as received, so re-serialising changes nothing.
    assert_eq!(serde_json::to_value(&parsed).unwrap(), batch);
}

#[test]
fn unknown_fields_are_refused() {
    let err = serde_json::from_value::<HeartbeatResponse>(
        json!({"server_time": 1, "next_in_seconds": 5, "extra": true}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn wire_secrets_never_print() {
    let r = EnrollRequest {
        token: WireSecret::new("cgt_planted-token-value-123456".into()),
        hostname: "h".into(),
        version: "1".into(),
    };
    let debug = format!("{r:?}");
    assert!(!debug.contains("planted"), "{debug}");
    assert!(debug.contains("REDACTED"));
    // But the wire carries it.
    assert!(
        serde_json::to_string(&r)
            .unwrap()
            .contains("cgt_planted-token-value-123456")
    );
}
