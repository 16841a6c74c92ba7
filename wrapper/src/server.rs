//! HTTP/1.1 over the hook socket, the admin socket and the admin TCP listener.
//!
//! Each listener is an accept loop that checks the peer (Unix sockets: its uid from
//! `SO_PEERCRED`) before hyper sees a byte, then serves requests with a capped body. On shutdown
//! the loop stops accepting and lets open connections finish their requests.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin;
use crate::engine::{Engine, Hook};
use crate::error::Error;
use crate::metrics::HookLabels;

/// A response body.
pub type Body = Full<Bytes>;
/// A boxed future of a response.
pub type Handled = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Answers one request (the body already read and capped).
pub trait Handler: Send + Sync + 'static {
    /// Handles a request.
    fn handle(self: Arc<Self>, req: Parts) -> Handled;
}

/// A request with its body read.
#[derive(Debug)]
pub struct Parts {
    /// Method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Query string.
    pub query: Option<String>,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON error response: `{"error": message}`.
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

/// 405 with the `Allow` header RFC 9110 requires: the methods `routes` declare for `path`
/// (`{param}` segments match any one segment). `None` when no route has this path (a 404).
pub fn method_not_allowed(
    routes: &[(&str, &str)],
    method: &Method,
    path: &str,
) -> Option<Response<Body>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let allow: Vec<&str> = routes
        .iter()
        .filter(|(_, route)| {
            let pattern: Vec<&str> = route.trim_matches('/').split('/').collect();
            pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p == s || (p.starts_with('{') && p.ends_with('}')))
        })
        .map(|(m, _)| *m)
        .collect();
    if allow.is_empty() {
        return None;
    }
    let mut r = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{path} takes {}, not {method}", allow.join(" or ")),
    );
    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
        r.headers_mut().insert(hyper::header::ALLOW, v);
    }
    Some(r)
}

/// Maps an error to its status: the caller's fault is 4xx with the message; ours is 500 with a
/// generic message (the plugin blocks either way).
pub fn error_to_response(e: &Error) -> Response<Body> {
    match e {
        Error::BadRequest(m) => error_response(StatusCode::BAD_REQUEST, m),
        Error::NoSuchApproval(_) => error_response(StatusCode::NOT_FOUND, &e.to_string()),
        Error::NotPending { .. } => error_response(StatusCode::CONFLICT, &e.to_string()),
        _ => {
            tracing::error!(error = %e, "Request failed.");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the call is blocked (see the clawgate log)",
            )
        }
    }
}

/// Who may use a Unix socket.
#[derive(Debug, Clone)]
pub struct PeerRule {
    /// Allowed peer uids.
    pub uids: Vec<u32>,
    /// Peers in this group are allowed too.
    pub gid: Option<u32>,
}

impl PeerRule {
    fn allows(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) || self.gid.is_some_and(|g| g == gid || user_in_group(uid, g))
    }
}

/// Supplementary group membership (SO_PEERCRED reports only the primary group).
fn user_in_group(uid: u32, group: u32) -> bool {
    use nix::unistd::{Gid, Uid, User, getgrouplist};
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    getgrouplist(&name, user.gid)
        .map(|groups| groups.contains(&Gid::from_raw(group)))
        .unwrap_or(false)
}

/// Where connections come from: a listener plus the check a peer must pass.
trait Accept: Send {
    type Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static;
    /// The next connection; `None` when it was refused (already logged).
    fn next(&self) -> impl Future<Output = std::io::Result<Option<Self::Io>>> + Send;
}

struct UnixAccept {
    listener: UnixListener,
    peers: PeerRule,
    name: &'static str,
}

impl Accept for UnixAccept {
    type Io = TokioIo<tokio::net::UnixStream>;
    async fn next(&self) -> std::io::Result<Option<Self::Io>> {
        let (stream, _) = self.listener.accept().await?;
        let cred = stream.peer_cred().ok();
        if !cred.is_some_and(|c| self.peers.allows(c.uid(), c.gid())) {
            let who = cred.map(|c| (c.uid(), c.pid()));
            tracing::warn!(socket = self.name, peer = ?who, "Refused a connection from a user that may not use this socket.");
            return Ok(None);
        }
        Ok(Some(TokioIo::new(stream)))
    }
}

struct TcpAccept(TcpListener);

impl Accept for TcpAccept {
    type Io = TokioIo<tokio::net::TcpStream>;
    async fn next(&self) -> std::io::Result<Option<Self::Io>> {
        let (stream, _) = self.0.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok(Some(TokioIo::new(stream)))
    }
}

/// Serves a Unix socket until `shutdown` turns true, then waits for open connections.
pub async fn serve_unix<H: Handler>(
    listener: UnixListener,
    peers: PeerRule,
    max_body: usize,
    handler: Arc<H>,
    shutdown: watch::Receiver<bool>,
    name: &'static str,
) {
    let accept = UnixAccept {
        listener,
        peers,
        name,
    };
    serve(accept, max_body, handler, shutdown).await;
}

/// Serves a TCP listener (the admin page) until shutdown.
pub async fn serve_tcp<H: Handler>(
    listener: TcpListener,
    max_body: usize,
    handler: Arc<H>,
    shutdown: watch::Receiver<bool>,
) {
    serve(TcpAccept(listener), max_body, handler, shutdown).await;
}

async fn serve<A: Accept, H: Handler>(
    accept: A,
    max_body: usize,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = accept.next() => match accepted {
                Ok(Some(io)) => {
                    conns.spawn(connection(io, max_body, handler.clone(), shutdown.clone()));
                }
                Ok(None) => {}
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
}

async fn connection<IO, H>(
    io: IO,
    max_body: usize,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Handler,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(read_and_handle(req, max_body, handler).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn read_and_handle<H: Handler>(
    req: Request<Incoming>,
    max_body: usize,
    handler: Arc<H>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body is larger than {max_body} bytes"),
                )
            } else {
                error_response(StatusCode::BAD_REQUEST, "could not read the request body")
            };
        }
    };
    handler
        .handle(Parts {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body,
        })
        .await
}

/// Parses a JSON body or explains why not.
pub fn parse_json(body: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("request body is not valid JSON: {e}")))
}

/// `wrapper/openapi.json`, compiled in: every hook body is checked against its request schema
/// before the engine sees it, so a body the document does not allow is a 400 that changes
/// nothing (no approval asked, no audit record) rather than a call judged on fields read
/// leniently. Extra fields stay allowed where the document allows them (OpenClaw adds fields).
const OPENAPI: &str = include_str!("../openapi.json");

static SCHEMAS: std::sync::OnceLock<Result<clawgate_protocol::jsonschema::Schemas, String>> =
    std::sync::OnceLock::new();

/// Checks a hook's body against its request schema in `wrapper/openapi.json`.
fn check_hook_body(hook: &str, body: &Value) -> Result<(), Error> {
    let component = match hook {
        "before_tool_call" | "trusted_policy" => "ToolCallRequest",
        "after_tool_call" => "AfterToolCallRequest",
        "tool_result" => "ToolResultRequest",
        _ => "LlmOutputRequest",
    };
    check_body(component, body)
}

/// Checks a request body against `component` of `wrapper/openapi.json` (400 when it does not
/// match; 500, so the caller refuses, if the document itself does not load).
pub fn check_body(component: &str, body: &Value) -> Result<(), Error> {
    let schemas = SCHEMAS
        .get_or_init(|| clawgate_protocol::jsonschema::Schemas::load(OPENAPI))
        .as_ref()
        // A 500: the plugin blocks the call (a test loads the document, so this cannot ship).
        .map_err(|e| Error::Config(format!("wrapper/openapi.json: {e}")))?;
    schemas
        .validate(component, body)
        .map_err(|e| Error::BadRequest(format!("request body does not match {component}: {e}")))
}

/// The hook API (the OpenClaw plugin's socket).
#[derive(Debug)]
pub struct HookApi {
    /// The engine.
    pub engine: Arc<Engine>,
}

/// The hook API's routes, for the OpenAPI check: `(method, path)`.
pub const HOOK_ROUTES: [(&str, &str); 6] = [
    ("POST", "/v1/before_tool_call"),
    ("POST", "/v1/trusted_policy"),
    ("POST", "/v1/after_tool_call"),
    ("POST", "/v1/tool_result"),
    ("POST", "/v1/llm_output"),
    ("GET", "/v1/health"),
];

impl Handler for HookApi {
    fn handle(self: Arc<Self>, req: Parts) -> Handled {
        Box::pin(async move {
            let started = Instant::now();
            let hook: &'static str = match req.path.as_str() {
                "/v1/before_tool_call" => "before_tool_call",
                "/v1/trusted_policy" => "trusted_policy",
                "/v1/after_tool_call" => "after_tool_call",
                "/v1/tool_result" => "tool_result",
                "/v1/llm_output" => "llm_output",
                "/v1/health" => "health",
                _ => {
                    return error_response(
                        StatusCode::NOT_FOUND,
                        &format!("no such endpoint {}", req.path),
                    );
                }
            };
            let want = if hook == "health" {
                Method::GET
            } else {
                Method::POST
            };
            if req.method != want {
                if let Some(r) = method_not_allowed(&HOOK_ROUTES, &req.method, &req.path) {
                    return r;
                }
                return error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("{} takes {want}", req.path),
                );
            }
            if let Some(v) = req
                .headers
                .get("x-clawgate-plugin")
                .and_then(|v| v.to_str().ok())
            {
                self.engine.note_plugin_version(v);
            }
            let response = self.route(hook, &req.body).await;
            if !response.status().is_success() {
                self.engine.metrics.error(match response.status().as_u16() {
                    400..=499 => "bad_request",
                    _ => "internal",
                });
            }
            self.engine
                .metrics
                .hook_latency
                .get_or_create(&HookLabels { hook })
                .observe(started.elapsed().as_secs_f64());
            response
        })
    }
}

impl HookApi {
    async fn route(&self, hook: &str, body: &[u8]) -> Response<Body> {
        if hook == "health" {
            return match self.engine.health() {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(e) => error_to_response(&e),
            };
        }
        let body = match parse_json(body).and_then(|b| check_hook_body(hook, &b).map(|()| b)) {
            Ok(v) => v,
            Err(e) => return error_to_response(&e),
        };
        let result = match hook {
            "before_tool_call" => self
                .engine
                .decide(Hook::BeforeToolCall, &body)
                .await
                .map(|r| r.to_json()),
            "trusted_policy" => self
                .engine
                .decide(Hook::TrustedPolicy, &body)
                .await
                .map(|r| r.to_json()),
            "after_tool_call" => self.engine.after_tool_call(&body).map(|()| json!({})),
            "tool_result" => self.engine.tool_result(&body),
            _ => self.engine.llm_output(&body).map(|()| json!({})),
        };
        match result {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => error_to_response(&e),
        }
    }
}

/// The admin socket's API (root and the admin group only).
#[derive(Debug)]
pub struct AdminSocketApi {
    /// The engine.
    pub engine: Arc<Engine>,
}

impl Handler for AdminSocketApi {
    fn handle(self: Arc<Self>, req: Parts) -> Handled {
        Box::pin(async move { admin::socket_route(&self.engine, req, "admin-socket") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What OpenClaw 2026.9.6 really sent (captured from a live gateway, ../shared/openclaw/
    /// samples, as the plugin wraps it): every body passes, or every call would be blocked.
    #[test]
    fn captured_openclaw_bodies_match_the_document() {
        let lines = include_str!("../testdata/openclaw-hook-bodies.jsonl");
        let mut hooks = std::collections::BTreeSet::new();
        for line in lines.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let hook = v["hook"].as_str().unwrap();
            check_hook_body(hook, &v["body"]).unwrap_or_else(|e| panic!("{hook}: {e}"));
            hooks.insert(hook.to_owned());
        }
        assert_eq!(hooks.len(), 5, "{hooks:?}");
    }

    #[test]
    fn wrongly_typed_fields_are_refused_with_where() {
        let ok = serde_json::json!({"event": {"toolName": "exec", "params": {"command": "ls"}}, "ctx": {"agentId": "main"}});
        check_hook_body("before_tool_call", &ok).unwrap();
        for (hook, body) in [
            (
                "before_tool_call",
                serde_json::json!({"event": {"toolName": "exec", "params": {}}, "ctx": 7}),
            ),
            (
                "trusted_policy",
                serde_json::json!({"event": {"toolName": 1, "params": {}}}),
            ),
            (
                "llm_output",
                serde_json::json!({"event": {"usage": {"total": "9"}}, "ctx": {}}),
            ),
            (
                "after_tool_call",
                serde_json::json!({"event": {"toolName": "exec", "durationMs": {}}, "ctx": {}}),
            ),
        ] {
            match check_hook_body(hook, &body) {
                Err(Error::BadRequest(m)) => assert!(m.contains("expected"), "{hook}: {m}"),
                other => panic!("{hook}: {other:?}"),
            }
        }
    }
}
