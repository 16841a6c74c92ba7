//! The owner's side: the admin socket's JSON API (for `clawgate approvals`) and the approval
//! page on the admin listener (phone-sized HTML forms, no JavaScript).
//!
//! The page is protected by a 256-bit token from the state directory: `GET /approvals?token=…`
//! sets an `HttpOnly`, `SameSite=Strict` cookie and redirects; every form carries a CSRF field
//! derived from the token. The agent's user can read neither the token nor the admin socket.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, COOKIE, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use clawgate_protocol::SecretString;
use clawgate_protocol::secret::constant_time_eq;

use crate::engine::Engine;
use crate::server::{
    Body, Handled, Handler, Parts, check_body, error_response, error_to_response, json_response,
    method_not_allowed,
};
use crate::store::{Approval, GrantKind, Status};

/// The admin socket's routes, for the OpenAPI check.
pub const ADMIN_ROUTES: [(&str, &str); 5] = [
    ("GET", "/v1/approvals"),
    ("POST", "/v1/approvals/{id}/approve"),
    ("POST", "/v1/approvals/{id}/deny"),
    ("GET", "/v1/health"),
    ("GET", "/metrics"),
];

/// The admin socket's JSON API.
pub fn socket_route(engine: &Engine, req: Parts, by: &str) -> Response<Body> {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.clone(), segments.as_slice()) {
        (Method::GET, ["v1", "health"]) => match engine.health() {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => error_to_response(&e),
        },
        (Method::GET, ["metrics"]) => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            engine.metrics_text(),
        ),
        (Method::GET, ["v1", "approvals"]) => {
            let status = query_param(req.query.as_deref(), "status");
            let status = match status.as_deref() {
                None | Some("all") => None,
                Some("pending") => Some(Status::Pending),
                Some("approved") => Some(Status::Approved),
                Some("denied") => Some(Status::Denied),
                Some("expired") => Some(Status::Expired),
                Some(other) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "status `{other}` is not pending, approved, denied, expired or all"
                        ),
                    );
                }
            };
            match engine.store().list(status, 500) {
                Ok(list) => json_response(StatusCode::OK, &json!({ "approvals": list })),
                Err(e) => error_to_response(&e),
            }
        }
        (Method::POST, ["v1", "approvals", id, verb @ ("approve" | "deny")]) => {
            let grant = if *verb == "approve" {
                match grant_from_body(&req.body) {
                    Ok(g) => g,
                    Err(m) => return error_response(StatusCode::BAD_REQUEST, &m),
                }
            } else {
                GrantKind::Once
            };
            match engine.answer(id, *verb == "approve", grant, by) {
                Ok(a) => json_response(StatusCode::OK, &json!({ "approval": a })),
                Err(e) => error_to_response(&e),
            }
        }
        _ => method_not_allowed(&ADMIN_ROUTES, &req.method, &req.path).unwrap_or_else(|| {
            error_response(
                StatusCode::NOT_FOUND,
                &format!("no such endpoint {} {}", req.method, req.path),
            )
        }),
    }
}

fn grant_from_body(body: &[u8]) -> Result<GrantKind, String> {
    if body.is_empty() {
        return Ok(GrantKind::Once);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    // ApproveRequest, checked against the document like the hook bodies: anything else is
    // refused, not read as the default (a malformed answer must not approve).
    check_body("ApproveRequest", &v).map_err(|e| e.to_string())?;
    match v.get("grant").and_then(Value::as_str) {
        None | Some("once") => Ok(GrantKind::Once),
        Some("24h") => Ok(GrantKind::Day),
        Some(other) => Err(format!("grant `{other}` is not once or 24h")),
    }
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The admin listener: approval page and metrics, behind the token.
#[derive(Debug)]
pub struct AdminPage {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The token.
    pub token: SecretString,
}

const COOKIE_NAME: &str = "clawgate_admin";

impl AdminPage {
    fn csrf(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"clawgate-csrf/1\0");
        h.update(self.token.expose().as_bytes());
        hex::encode(&h.finalize()[..16])
    }

    fn token_ok(&self, candidate: &str) -> bool {
        constant_time_eq(candidate.as_bytes(), self.token.expose().as_bytes())
    }

    fn authenticated(&self, req: &Parts) -> bool {
        let bearer = req
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.token_ok(t)) {
            return true;
        }
        req.headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(k, v)| k == COOKIE_NAME && self.token_ok(v))
    }

    fn route(&self, req: Parts) -> Response<Body> {
        // Logging in: a valid token in the query sets the cookie and drops the token from the URL.
        if let Some(t) = query_param(req.query.as_deref(), "token") {
            if !self.token_ok(&t) {
                return error_response(StatusCode::UNAUTHORIZED, "wrong token");
            }
            let mut r = redirect("/approvals");
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/",
                self.token.expose()
            )) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            return r;
        }
        if !self.authenticated(&req) {
            return text(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                "Open the link with ?token=… from `clawgate approvals url` first.\n".into(),
            );
        }
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        match (req.method.clone(), segments.as_slice()) {
            (Method::GET, [""] | ["approvals"]) => {
                let notice = query_param(req.query.as_deref(), "done");
                match self.engine.store().list(Some(Status::Pending), 200) {
                    Ok(list) => text(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        page(&list, &self.csrf(), notice.as_deref()),
                    ),
                    Err(e) => error_to_response(&e),
                }
            }
            (Method::GET, ["metrics"]) => text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.engine.metrics_text(),
            ),
            (Method::POST, ["approvals", id, verb @ ("approve" | "approve24h" | "deny")]) => {
                let form = String::from_utf8_lossy(&req.body);
                let csrf_ok = form
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .any(|(k, v)| {
                        k == "csrf" && constant_time_eq(v.as_bytes(), self.csrf().as_bytes())
                    });
                if !csrf_ok {
                    return error_response(StatusCode::FORBIDDEN, "missing or wrong CSRF field");
                }
                let (approve, grant) = match *verb {
                    "approve" => (true, GrantKind::Once),
                    "approve24h" => (true, GrantKind::Day),
                    _ => (false, GrantKind::Once),
                };
                if self.engine.hub().is_some() {
                    // Enrolled: the owner answers on the Hub (see ARCHITECTURE.md, hublink).
                    return error_response(
                        StatusCode::CONFLICT,
                        "this appliance is enrolled with a Hub: the owner answers approvals there",
                    );
                }
                match self.engine.answer(id, approve, grant, "approval-page") {
                    Ok(a) => redirect(&format!("/approvals?done={}-{}", a.id, a.status.as_str())),
                    Err(e) => error_to_response(&e),
                }
            }
            _ => error_response(StatusCode::NOT_FOUND, "no such page"),
        }
    }
}

impl Handler for AdminPage {
    fn handle(self: Arc<Self>, req: Parts) -> Handled {
        Box::pin(async move { self.route(req) })
    }
}

fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(list: &[Approval], csrf: &str, notice: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(n) = notice {
        body.push_str(&format!(
            "<p class=notice id=notice>Done: {}</p>",
            html_escape(&n.replace('-', " "))
        ));
    }
    if list.is_empty() {
        body.push_str("<p id=empty>No pending approvals.</p>");
    }
    for a in list {
        let id = html_escape(&a.id);
        let form = |verb: &str, label: &str, class: &str| {
            format!(
                "<form method=post action=\"/approvals/{id}/{verb}\"><input type=hidden name=csrf value=\"{csrf}\">\
                 <button class={class} data-id=\"{id}\" data-action=\"{verb}\">{label}</button></form>"
            )
        };
        body.push_str(&format!(
            "<section class=card id=\"{id}\"><h2>{tool} <span class=\"class {class}\">{class}</span></h2>\
             <p class=summary>{summary}</p><p class=meta>agent {agent} · rule {rule} · {id}</p>\
             <div class=buttons>{approve}{approve24}{deny}</div></section>",
            tool = html_escape(&a.tool),
            class = html_escape(&a.class),
            summary = html_escape(&a.summary),
            agent = html_escape(&a.agent),
            rule = html_escape(&a.rule),
            approve = form("approve", "Approve once", "approve"),
            approve24 = form("approve24h", "Approve 24 h", "approve24"),
            deny = form("deny", "Deny", "deny"),
        ));
    }
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>Clawgate approvals</title><style>\
         body{{font:16px system-ui,sans-serif;margin:0;padding:12px;background:#f4f4f5;color:#18181b}}\
         h1{{font-size:20px}} .card{{background:#fff;border-radius:12px;padding:12px;margin:12px 0;box-shadow:0 1px 3px #0002}}\
         h2{{font-size:17px;margin:0 0 6px}} .summary{{font-family:ui-monospace,monospace;word-break:break-all;background:#f4f4f5;padding:8px;border-radius:8px}}\
         .meta{{color:#71717a;font-size:13px}} .buttons{{display:flex;gap:8px}} form{{flex:1}}\
         button{{width:100%;min-height:48px;border:0;border-radius:10px;font-size:16px;color:#fff}}\
         .approve{{background:#16a34a}} .approve24{{background:#0d9488}} .deny{{background:#dc2626}}\
         .class{{font-size:12px;padding:2px 6px;border-radius:6px;background:#e4e4e7;color:#18181b}}\
         .notice{{background:#dcfce7;padding:8px;border-radius:8px}}</style></head>\
         <body><h1>Clawgate approvals</h1>{body}</body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approve_bodies_are_read_strictly() {
        assert!(matches!(grant_from_body(b""), Ok(GrantKind::Once)));
        assert!(matches!(grant_from_body(br#"{}"#), Ok(GrantKind::Once)));
        assert!(matches!(
            grant_from_body(br#"{"grant":"24h"}"#),
            Ok(GrantKind::Day)
        ));
        for bad in [
            &br#"{"grant":{}}"#[..],
            br#"{"grant":"1y"}"#,
            br#"[]"#,
            br#"{"x":1}"#,
            b"{",
        ] {
            assert!(
                grant_from_body(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn undeclared_methods_are_405_with_allow_and_unknown_paths_404() {
        let r = method_not_allowed(&ADMIN_ROUTES, &Method::TRACE, "/v1/approvals/ap_1/approve")
            .expect("a declared path");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "POST");
        let r = method_not_allowed(&ADMIN_ROUTES, &Method::DELETE, "/metrics").unwrap();
        assert_eq!(r.headers()["allow"], "GET");
        let hooks = crate::server::HOOK_ROUTES;
        let r = method_not_allowed(&hooks, &Method::GET, "/v1/before_tool_call").unwrap();
        assert_eq!(r.headers()["allow"], "POST");
        assert!(method_not_allowed(&ADMIN_ROUTES, &Method::GET, "/v1/approvals/x").is_none());
        assert!(method_not_allowed(&hooks, &Method::GET, "/v2/health").is_none());
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param(Some("a=1&token=x%2By+z"), "token").as_deref(),
            Some("x+y z")
        );
        assert_eq!(query_param(Some("a=1"), "token"), None);
        assert_eq!(query_param(Some("t=%"), "t").as_deref(), Some("%"));
        assert_eq!(query_param(Some("t=%4"), "t").as_deref(), Some("%4"));
    }

    #[test]
    fn the_page_escapes_what_the_agent_wrote() {
        let a = Approval {
            id: "ap_1".into(),
            action_hash: "h".into(),
            tool: "exec".into(),
            class: "red".into(),
            rule: "r".into(),
            summary: "exec: <script>alert(1)</script>".into(),
            agent: "main".into(),
            session_key: None,
            tool_call_id: None,
            trace_id: None,
            policy_version: "v".into(),
            status: Status::Pending,
            grant: None,
            created_ms: 0,
            expires_ms: 1,
            decided_ms: None,
            decided_by: None,
        };
        let html = page(&[a], "c", None);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
    }
}
