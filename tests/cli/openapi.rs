//! `wrapper/openapi.json` checked against the running daemon: the same routes, every example
//! accepted, every answer valid against the documented schema for its status.

use std::collections::BTreeSet;
use std::path::Path;

use clawgate_wrapper::admin::ADMIN_ROUTES;
use clawgate_wrapper::client;
use clawgate_wrapper::server::HOOK_ROUTES;
use serde_json::{Value, json};

use crate::serve::{Daemon, event};

fn doc() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("wrapper/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {r}")),
            )
        }
        None => v,
    }
}

/// The JSON Schema subset the document uses: $ref, type (with null), enum, required,
/// properties, additionalProperties: false, items, oneOf.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let ok = options
            .iter()
            .filter(|s| validate(doc, s, v, at).is_ok())
            .count();
        return if ok == 1 {
            Ok(())
        } else {
            Err(format!("{at}: {ok} of oneOf match {v}"))
        };
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let fits = types
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"));
        if !fits {
            return Err(format!("{at}: {actual} is not {types:?}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        return Err(format!("{at}: {v} not in {allowed:?}"));
    }
    if let Value::Object(obj) = v {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap();
            if !obj.contains_key(key) {
                return Err(format!("{at}: missing {key}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(doc, s, val, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: undocumented field {k}"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(doc, s, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn the_documented_routes_are_the_served_routes() {
    let doc = doc();
    let served: BTreeSet<(String, String)> = HOOK_ROUTES
        .iter()
        .chain(ADMIN_ROUTES.iter())
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented_routes(&doc), served);
}

/// Checks one answer against the operation's documented response for its status.
fn check(doc: &Value, op: &Value, status: u16, body: &Value, what: &str) {
    let response = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{what}: status {status} is not documented ({body})"));
    let response = resolve(doc, response);
    if let Some(schema) = response.pointer("/content/application~1json/schema")
        && let Err(e) = validate(doc, schema, body, what)
    {
        panic!("{what}: answer does not match the document: {e}\n{body}");
    }
}

fn examples(op: &Value) -> Vec<(String, Value)> {
    op.pointer("/requestBody/content/application~1json/examples")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["value"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_example_is_answered_as_documented() {
    let doc = doc();
    let d = Daemon::start("[approvals]\nwait_seconds = 1\n");
    let hook = d.hook_socket();
    let admin = d.state().join("admin.sock");
    let schema_of = |name: &str| {
        doc.pointer(&format!("/components/schemas/{name}"))
            .unwrap()
            .clone()
    };

    for (method, path) in HOOK_ROUTES {
        let op = &doc["paths"][path][method.to_lowercase()];
        if method == "GET" {
            let r = client::request(&hook, "GET", path, None).unwrap();
            check(&doc, op, r.status, &r.body, path);
            continue;
        }
        let examples = examples(op);
        assert!(!examples.is_empty(), "{path} has no example");
        for (name, body) in examples {
            let request_schema = op
                .pointer("/requestBody/content/application~1json/schema")
                .unwrap();
            validate(
                &doc,
                request_schema,
                &body,
                &format!("{path} example {name}"),
            )
            .unwrap();
            let r = client::request(&hook, "POST", path, Some(&body)).unwrap();
            assert_eq!(r.status, 200, "{path} example {name}: {}", r.body);
            check(
                &doc,
                op,
                r.status,
                &r.body,
                &format!("{path} example {name}"),
            );
        }
        // Malformed input: a documented 400 with a message.
        let r = client::request(&hook, "POST", path, Some(&json!({"event": "nope"}))).unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        check(&doc, op, r.status, &r.body, &format!("{path} malformed"));
    }

    // The admin side: an ask makes a pending approval to answer.
    let ask = |id: &str, url: &str| {
        d.hook(
            "/v1/before_tool_call",
            &event("exec", json!({"command": format!("curl {url}")}), id),
        );
    };
    ask("o1", "https://example.com/");
    ask("o2", "https://example.org/");
    let list_op = &doc["paths"]["/v1/approvals"]["get"];
    let r = client::request(&admin, "GET", "/v1/approvals?status=pending", None).unwrap();
    check(&doc, list_op, r.status, &r.body, "list");
    let ids: Vec<String> = r.body["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let r = client::request(&admin, "GET", "/v1/approvals?status=bogus", None).unwrap();
    check(&doc, list_op, r.status, &r.body, "list bogus");
    assert_eq!(r.status, 400);

    let approve_op = &doc["paths"]["/v1/approvals/{id}/approve"]["post"];
    let ex = examples(approve_op);
    let once = &ex.iter().find(|(n, _)| n == "once").unwrap().1;
    let r = client::request(
        &admin,
        "POST",
        &format!("/v1/approvals/{}/approve", ids[0]),
        Some(once),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    check(&doc, approve_op, r.status, &r.body, "approve");
    let r = client::request(
        &admin,
        "POST",
        &format!("/v1/approvals/{}/approve", ids[0]),
        Some(once),
    )
    .unwrap();
    assert_eq!(r.status, 409);
    check(&doc, approve_op, r.status, &r.body, "approve twice");
    let r = client::request(
        &admin,
        "POST",
        "/v1/approvals/ap_0000000000000000/approve",
        None,
    )
    .unwrap();
    assert_eq!(r.status, 404);
    check(&doc, approve_op, r.status, &r.body, "approve unknown");
    let r = client::request(
        &admin,
        "POST",
        &format!("/v1/approvals/{}/approve", ids[1]),
        Some(&json!({"grant": "forever"})),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    check(&doc, approve_op, r.status, &r.body, "approve bad grant");

    let deny_op = &doc["paths"]["/v1/approvals/{id}/deny"]["post"];
    let r = client::request(
        &admin,
        "POST",
        &format!("/v1/approvals/{}/deny", ids[1]),
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    check(&doc, deny_op, r.status, &r.body, "deny");

    let r = client::request(&admin, "GET", "/v1/health", None).unwrap();
    validate(&doc, &schema_of("Health"), &r.body, "admin health").unwrap();
    // Undocumented paths do not exist.
    let r = client::request(&hook, "POST", "/v1/approvals", Some(&json!({}))).unwrap();
    assert_eq!(r.status, 404);
}
