//! The HTTP side: the protocol's `/v1/` endpoints (appliances, bearer credential), the
//! operator's `/admin/` API and the page at `/ui` (operator token).
//!
//! Every protocol request is checked in the same order: armed fault, route and method (404,
//! 405), credential (401), body size (413), content type and JSON (400), the body's schema from
//! `hub/openapi.json` (400), then the operation. Errors become the document's
//! `{"error": {"code", "message"}}` in exactly one place, `ApiError::into_response`; internal
//! errors answer a generic 500 and are logged (no error here carries a secret).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use clawgate_hub::command::CommandName;
use clawgate_hub::protocol::{
    ApprovalRequest, AuditBatch, BundleStatusReport, CommandResult, DecisionKind, EnrollRequest,
    EnrollResponse, EventsResponse, Heartbeat, HeartbeatResponse, MAX_SAFE_INTEGER, RotateResponse,
    UsageAckResponse, UsageBatch, WireSecret,
};

use crate::error::Error;
use crate::faults::{Fault, FaultAction};
use crate::hub::{DecisionFault, Hub};
use crate::store::{Appliance, AuditRefusal, secret_hash};

/// Response body type.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type RespBody = BoxBody<Bytes, BoxError>;

/// Largest request body of the protocol (the document's 4 MiB).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest admin request body (a bundle, base64 in JSON for the fault API).
const MAX_ADMIN_BYTES: usize = 12 * 1024 * 1024;
/// Most events in one answer.
pub const MAX_EVENTS: usize = 100;
/// `wait` when the appliance gives none.
const DEFAULT_WAIT: u64 = 30;

const PAGE: &str = include_str!("ui.html");

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    expected_seq: Option<i64>,
    retry_after: Option<u32>,
    allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            expected_seq: None,
            retry_after: None,
            allow: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid credential is required (Authorization: Bearer …)",
        )
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "Internal error.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The one mapping to an HTTP answer.
    pub(crate) fn into_response(self) -> Response<RespBody> {
        let mut message: String = self.message.chars().take(1024).collect();
        if message.is_empty() {
            message.push_str("error");
        }
        let mut detail = json!({"code": self.code, "message": message});
        if let Some(seq) = self.expected_seq {
            detail["expected_seq"] = json!(seq);
        }
        let mut r = Response::builder()
            .status(self.status)
            .header(CONTENT_TYPE, "application/json");
        if let Some(secs) = self.retry_after {
            r = r.header(RETRY_AFTER, secs.to_string());
        }
        if let Some(allow) = self.allow {
            r = r.header(ALLOW, allow);
        }
        r.body(full(json!({ "error": detail }).to_string()))
            .unwrap_or_else(|_| Response::new(full("")))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(m) => ApiError::bad_request(m),
            Error::NotFound(m) => ApiError::not_found(m),
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            other => ApiError::internal(&other),
        }
    }
}

type ApiResult = Result<Response<RespBody>, ApiError>;

pub(crate) fn full(body: impl Into<Bytes>) -> RespBody {
    BoxBody::new(Full::new(body.into()).map_err(|e: Infallible| match e {}))
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> ApiResult {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(&e))?;
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header("cache-control", "no-store")
        .body(full(body))
        .map_err(|e| ApiError::internal(&e))
}

fn no_content() -> ApiResult {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(full(""))
        .map_err(|e| ApiError::internal(&e))
}

/// What the connection does with a request.
pub(crate) enum Outcome {
    /// Answer.
    Answer(Response<RespBody>),
    /// Never answer.
    Hang,
    /// Drop the connection.
    Close,
}

/// Handles one request.
pub(crate) async fn handle(hub: Arc<Hub>, req: Request<Incoming>) -> Outcome {
    let path = req.uri().path().to_owned();
    if path.starts_with("/v1/")
        && let Some(action) = hub.faults.take(&path)
    {
        tracing::debug!(%path, ?action, "Injected fault.");
        return match action {
            FaultAction::Status {
                status,
                retry_after,
            } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut e = ApiError::new(status, "injected_fault", "injected fault (dev Hub)");
                if matches!(status.as_u16(), 429 | 503) {
                    e.retry_after = Some(retry_after.unwrap_or(1));
                }
                Outcome::Answer(e.into_response())
            }
            FaultAction::Hang => Outcome::Hang,
            FaultAction::Close => Outcome::Close,
            FaultAction::Cut => Outcome::Answer(
                Response::builder()
                    .status(StatusCode::OK)
                    .header(CONTENT_TYPE, "application/json")
                    .header("content-length", "4096")
                    .body(BoxBody::new(CutBody(Some(Bytes::from_static(
                        b"{\"events\":[",
                    )))))
                    .unwrap_or_else(|_| Response::new(full(""))),
            ),
        };
    }
    let method = req.method().clone();
    // The body is read (capped) before anything else, so every answer leaves the connection
    // reusable; one over the cap answers 413 and closes the connection.
    let limit = if path.starts_with("/admin/") {
        MAX_ADMIN_BYTES
    } else {
        MAX_REQUEST_BYTES
    };
    let (parts, body) = req.into_parts();
    let body = match read_body(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let mut r = e.into_response();
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return Outcome::Answer(r);
        }
    };
    let result = if path.starts_with("/v1/") {
        protocol(&hub, &parts, &body, &path).await
    } else if path.starts_with("/admin/") {
        admin(&hub, &parts, &body, &path)
    } else if path == "/" || path == "/ui" {
        if method == Method::GET {
            Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, "text/html; charset=utf-8")
                .header("cache-control", "no-store")
                .header(
                    "content-security-policy",
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'",
                )
                .header("referrer-policy", "no-referrer")
                .body(full(PAGE))
                .map_err(|e| ApiError::internal(&e))
        } else {
            Err(not_allowed("GET"))
        }
    } else {
        Err(ApiError::not_found(format!(
            "no such path {}",
            path.escape_debug()
        )))
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    tracing::debug!(%method, %path, status = response.status().as_u16(), "Answered.");
    Outcome::Answer(response)
}

fn not_allowed(allow: &'static str) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("only {allow} is allowed here"),
    );
    e.allow = Some(allow);
    e
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

async fn protocol(hub: &Arc<Hub>, parts: &Parts, body: &Bytes, path: &str) -> ApiResult {
    let method = parts.method.clone();
    let segs = segments(path);
    let want = |m: &'static str| -> Result<(), ApiError> {
        if method.as_str() == m {
            Ok(())
        } else {
            Err(not_allowed(m))
        }
    };
    match segs.as_slice() {
        ["v1", "enroll"] => {
            want("POST")?;
            enroll(hub, parts, body)
        }
        ["v1", "credential", "rotate"] => {
            want("POST")?;
            let a = authenticate(hub, parts)?;
            rotate(hub, &a)
        }
        ["v1", "events"] => {
            want("GET")?;
            let a = authenticate(hub, parts)?;
            events(hub, &a, parts.uri.query().unwrap_or("")).await
        }
        ["v1", "bundles", version] => {
            want("GET")?;
            let a = authenticate(hub, parts)?;
            let version = parse_version(version)?;
            let (bytes, _) = hub
                .store
                .bundle(&a.tenant, version)?
                .ok_or_else(|| ApiError::not_found(format!("no bundle version {version}")))?;
            Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, "application/json")
                .body(full(bytes))
                .map_err(|e| ApiError::internal(&e))
        }
        ["v1", "bundles", version, "status"] => {
            want("POST")?;
            let a = authenticate(hub, parts)?;
            let version = parse_version(version)?;
            let report: BundleStatusReport = read_json(parts, body, "BundleStatusReport")?;
            if hub.store.bundle(&a.tenant, version)?.is_none() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_bundle",
                    format!("no bundle version {version} was published for this tenant"),
                ));
            }
            hub.store.bundle_status(&a, version, &report, hub.now())?;
            no_content()
        }
        ["v1", "approvals"] => {
            want("POST")?;
            let a = authenticate(hub, parts)?;
            let request: ApprovalRequest = read_json(parts, body, "ApprovalRequest")?;
            let now = hub.now();
            match hub.store.create_approval(&a, &request, now) {
                Ok((created, stored)) => {
                    if created {
                        tracing::info!(appliance = %a.id, approval = %request.approval_id, "Approval requested.");
                    }
                    let status = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    json_response(status, &stored.status(now))
                }
                Err(Error::Conflict(m)) => {
                    Err(ApiError::new(StatusCode::CONFLICT, "approval_conflict", m))
                }
                Err(e) => Err(e.into()),
            }
        }
        ["v1", "approvals", id] => {
            want("GET")?;
            let a = authenticate(hub, parts)?;
            if !valid_approval_id(id) {
                return Err(ApiError::bad_request(
                    "approval id must be ap_ and 16 hex digits",
                ));
            }
            let stored = hub
                .store
                .approval(&a.id, id)?
                .ok_or_else(|| ApiError::not_found(format!("no approval {id}")))?;
            json_response(StatusCode::OK, &stored.status(hub.now()))
        }
        ["v1", "usage"] => {
            want("POST")?;
            let a = authenticate(hub, parts)?;
            let batch: UsageBatch = read_json(parts, body, "UsageBatch")?;
            let acks = hub.store.ingest_usage(&a, &batch.buckets, hub.now())?;
            json_response(StatusCode::OK, &UsageAckResponse { acks })
        }
        ["v1", "audit"] => {
            want("POST")?;
            let a = authenticate(hub, parts)?;
            let batch: AuditBatch = read_json(parts, body, "AuditBatch")?;
            match hub.store.ingest_audit(&a, &batch.records, hub.now())? {
                Ok(ack) => json_response(StatusCode::OK, &ack),
                Err(AuditRefusal::Gap { expected_seq }) => {
                    let mut e = ApiError::new(
                        StatusCode::CONFLICT,
                        "audit_gap",
                        format!("the Hub's chain continues at seq {expected_seq}"),
                    );
                    e.expected_seq = Some(expected_seq);
                    Err(e)
                }
                Err(AuditRefusal::Invalid { seq, detail }) => {
                    tracing::warn!(appliance = %a.id, seq, "Audit chain break recorded.");
                    Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "audit_invalid",
                        detail,
                    ))
                }
            }
        }
        ["v1", "heartbeat"] => {
            want("POST")?;
            let a = authenticate(hub, parts)?;
            let hb: Heartbeat = read_json(parts, body, "Heartbeat")?;
            let now = hub.now();
            hub.store.heartbeat(&a, &hb, now)?;
            json_response(
                StatusCode::OK,
                &HeartbeatResponse {
                    server_time: now.max(0),
                    next_in_seconds: jittered(hub.settings.heartbeat_seconds),
                },
            )
        }
        ["v1", "commands", id, "result"] => {
            want("POST")?;
            let a = authenticate(hub, parts)?;
            if !clawgate_hub::signing::valid_id(id) {
                return Err(ApiError::bad_request(
                    "command id must be [A-Za-z0-9._:-]{1,64}",
                ));
            }
            let result: CommandResult = read_json(parts, body, "CommandResult")?;
            if !hub.store.command_issued_to(&a.id, id)? {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_command",
                    format!("no command {id} was sent to this appliance"),
                ));
            }
            hub.store.command_result(&a, id, &result, hub.now())?;
            no_content()
        }
        _ => Err(ApiError::not_found(format!(
            "no such path {}",
            path.escape_debug()
        ))),
    }
}

fn valid_approval_id(id: &str) -> bool {
    id.len() == 19
        && id.starts_with("ap_")
        && id[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn parse_version(text: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::bad_request("bundle version must be an integer from 0 to 2^53 - 1");
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let v: u64 = text.parse().map_err(|_| bad())?;
    if v > MAX_SAFE_INTEGER {
        return Err(bad());
    }
    Ok(v)
}

/// ±10 % around `base`, within the document's 5..=3600.
fn jittered(base: u32) -> u32 {
    let mut b = [0u8; 4];
    let r = if getrandom::getrandom(&mut b).is_ok() {
        u32::from_le_bytes(b)
    } else {
        0
    };
    let spread = (base / 10).max(1);
    let offset = r % (2 * spread + 1);
    (base + offset).saturating_sub(spread).clamp(5, 3600)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn authenticate(hub: &Hub, parts: &Parts) -> Result<Appliance, ApiError> {
    let Some(token) = bearer(parts) else {
        return Err(ApiError::unauthorized());
    };
    if !token.starts_with("cga_") || token.len() != 47 {
        return Err(ApiError::unauthorized());
    }
    hub.store
        .authenticate(&secret_hash(token))?
        .ok_or_else(ApiError::unauthorized)
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request bodies are at most {limit} bytes"),
            ))
        }
        Err(_) => Err(ApiError::bad_request("the request body could not be read")),
    }
}

fn check_json_content_type(parts: &Parts) -> Result<(), ApiError> {
    let ok = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "Content-Type must be application/json",
        ))
    }
}

/// Reads a JSON body, checks it against schema `schema` of the document, then deserialises it.
fn read_json<T: DeserializeOwned>(
    parts: &Parts,
    body: &Bytes,
    schema: &str,
) -> Result<T, ApiError> {
    check_json_content_type(parts)?;
    parse_checked(body, schema)
}

fn parse_checked<T: DeserializeOwned>(bytes: &[u8], schema: &str) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    crate::schema::schemas()
        .map_err(|e| ApiError::internal(&e))?
        .validate(schema, &value)
        .map_err(|e| ApiError::bad_request(format!("{schema}: {e}")))?;
    // Messages of serde may quote values; the schema check above already passed, so this
    // rarely fails, and its message is kept to the category.
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("{schema}: {:?} error", e.classify())))
}

fn enroll(hub: &Arc<Hub>, parts: &Parts, body: &Bytes) -> ApiResult {
    // The token may be in the body: parse errors never quote it (positions only).
    let request: EnrollRequest = read_json(parts, body, "EnrollRequest")?;
    let appliance_id = format!("appl-{}", hex::encode(&crate::keys::random32()?[..8]));
    let credential = new_credential()?;
    let now = hub.now();
    let enrolled = hub.store.enroll(
        &secret_hash(request.token.expose()),
        &appliance_id,
        &secret_hash(credential.expose()),
        &request.hostname,
        &request.version,
        now,
    )?;
    let Some(a) = enrolled else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_invalid",
            "the enrollment token is unknown, expired or already used",
        ));
    };
    tracing::info!(tenant = %a.tenant, appliance = %a.id, "Appliance enrolled.");
    json_response(
        StatusCode::OK,
        &EnrollResponse {
            tenant_id: a.tenant,
            appliance_id: a.id,
            credential,
            signing_keys: hub.signing_keys()?,
            keyset_version: hub.keyset_version()?,
            heartbeat_seconds: hub.settings.heartbeat_seconds,
        },
    )
}

fn new_credential() -> Result<WireSecret, ApiError> {
    use base64::Engine;
    let raw = crate::keys::random32()?;
    Ok(WireSecret::new(format!(
        "cga_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice())
    )))
}

fn rotate(hub: &Hub, a: &Appliance) -> ApiResult {
    let credential = new_credential()?;
    hub.store
        .set_next_credential(&a.id, &secret_hash(credential.expose()))?;
    tracing::info!(appliance = %a.id, "Credential rotation issued.");
    json_response(StatusCode::OK, &RotateResponse { credential })
}

/// Decodes `%XX` and `+` in a query component.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn cursor_text(seq: i64) -> String {
    format!("c{seq}")
}

async fn events(hub: &Arc<Hub>, a: &Appliance, query: &str) -> ApiResult {
    let mut cursor: Option<String> = None;
    let mut wait: Option<u64> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| ApiError::bad_request("bad percent-encoding"))?;
        match k {
            "cursor" => {
                if v.is_empty()
                    || v.chars().count() > 256
                    || !v.bytes().all(|b| (b'!'..=b'~').contains(&b))
                {
                    return Err(ApiError::bad_request(
                        "cursor must be 1 to 256 printable ASCII characters",
                    ));
                }
                cursor = Some(v);
            }
            "wait" => {
                let w = (!v.is_empty() && v.len() <= 2 && v.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| v.parse::<u64>().ok())
                    .flatten()
                    .filter(|w| *w <= 60)
                    .ok_or_else(|| ApiError::bad_request("wait must be an integer from 0 to 60"))?;
                wait = Some(w);
            }
            _ => {}
        }
    }
    let wait = Duration::from_secs(wait.unwrap_or(DEFAULT_WAIT).min(hub.settings.max_wait_secs));
    let mut rx = hub.subscribe();
    rx.borrow_and_update();
    // Cursors: `c<seq>` (events after seq) or `s<head>.<skip>` (the rest of a cursor-less
    // snapshot taken at `head` that did not fit in one answer of 100 events).
    let gone = || {
        ApiError::new(
            StatusCode::GONE,
            "cursor_expired",
            "this cursor cannot be served: poll again without one",
        )
    };
    let number = |d: &str| {
        (!d.is_empty() && d.len() <= 16 && d.bytes().all(|b| b.is_ascii_digit()))
            .then(|| d.parse::<i64>().ok())
            .flatten()
    };
    let (snapshot_head, skip) = match &cursor {
        Some(c) => {
            let head = hub.store.head()?;
            let usable = |seq: i64| seq <= head && seq >= hub.faults.cursor_floor();
            if let Some(seq) = c.strip_prefix('c').and_then(number) {
                if !usable(seq) {
                    return Err(gone());
                }
                (seq, None)
            } else if let Some((h, k)) = c.strip_prefix('s').and_then(|r| r.split_once('.')) {
                match (number(h), number(k)) {
                    (Some(h), Some(k)) if usable(h) => (h, Some(k)),
                    _ => return Err(gone()),
                }
            } else {
                return Err(gone());
            }
        }
        None => (-1, Some(0)),
    };
    let (after, answer_cursor) = match skip {
        None => (snapshot_head, cursor.clone().unwrap_or_default()),
        Some(skip) => {
            let (state, head) = hub.store.snapshot(a, hub.now())?;
            let head = if snapshot_head >= 0 {
                snapshot_head
            } else {
                head
            };
            let skip = usize::try_from(skip).unwrap_or(usize::MAX);
            let rest: Vec<Value> = state.into_iter().skip(skip).collect();
            if rest.len() > MAX_EVENTS {
                let page = rest.into_iter().take(MAX_EVENTS).collect();
                return events_answer(page, format!("s{head}.{}", skip + MAX_EVENTS));
            }
            if !rest.is_empty() {
                return events_answer(rest, cursor_text(head));
            }
            (head, cursor_text(head))
        }
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let found = hub.store.events_after(a, after, MAX_EVENTS)?;
        if let Some((last, _)) = found.last() {
            let last = *last;
            return events_answer(
                found.into_iter().map(|(_, e)| e).collect(),
                cursor_text(last),
            );
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return events_answer(Vec::new(), answer_cursor),
        }
    }
}

fn events_answer(events: Vec<Value>, cursor: String) -> ApiResult {
    let response = EventsResponse {
        events: events
            .into_iter()
            .map(clawgate_hub::protocol::Event::from_value)
            .collect(),
        cursor,
    };
    json_response(StatusCode::OK, &response)
}

// ---- admin ----

/// The fault and test operations of `POST /admin/faults`.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum AdminFault {
    Arm {
        fault: Fault,
    },
    Clear,
    Skew {
        secs: i64,
    },
    ExpireCursors,
    Decide {
        approval_id: String,
        decision: DecisionKind,
        #[serde(default)]
        unpinned_key: bool,
        #[serde(default)]
        tenant: Option<String>,
        #[serde(default)]
        appliance: Option<String>,
        #[serde(default)]
        action_hash: Option<String>,
        #[serde(default)]
        decided_at: Option<i64>,
        #[serde(default)]
        expires_at: Option<i64>,
    },
    Replay {
        approval_id: String,
    },
    AnnounceBundle {
        tenant: String,
        version: u64,
    },
    PublishRolledBack {
        bundle_base64: String,
    },
    RawCommand {
        appliance: String,
        name: String,
    },
    RotateSigningKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    decision: DecisionKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    tenant: String,
    #[serde(default)]
    hub: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    appliance: String,
    name: String,
}

fn admin_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("body: {e}")))
}

fn admin(hub: &Arc<Hub>, parts: &Parts, body: &Bytes, path: &str) -> ApiResult {
    let ok = bearer(parts).is_some_and(|t| hub.operator_ok(t));
    if !ok {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the operator token is required (Authorization: Bearer op_…)",
        ));
    }
    let method = parts.method.clone();
    let segs: Vec<String> = segments(path).into_iter().map(str::to_owned).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["admin", "overview"]) => json_response(StatusCode::OK, &hub.overview()?),
        ("POST", ["admin", "approvals", id, "decide"]) => {
            let d: DecideBody = admin_json(body)?;
            let signed = hub.decide(id, d.decision)?;
            json_response(StatusCode::OK, &signed)
        }
        ("POST", ["admin", "bundles"]) => {
            let (tenant, version, sha256) = hub.publish_bundle(body)?;
            json_response(
                StatusCode::OK,
                &json!({"tenant": tenant, "version": version, "sha256": sha256}),
            )
        }
        ("POST", ["admin", "tokens"]) => {
            let t: TokenBody = admin_json(body)?;
            let file = match &t.hub {
                Some(url) => hub.mint_token_for(&t.tenant, url)?,
                None => hub.mint_token(&t.tenant)?,
            };
            json_response(StatusCode::OK, &file)
        }
        ("POST", ["admin", "commands"]) => {
            let c: CommandBody = admin_json(body)?;
            let name = CommandName::parse(&c.name)
                .ok_or_else(|| ApiError::bad_request("only reload, reconcile and restart exist"))?;
            let id = hub.send_command(&c.appliance, name)?;
            json_response(StatusCode::OK, &json!({"command_id": id}))
        }
        ("POST", ["admin", "faults"]) => {
            let op: AdminFault = admin_json(body)?;
            admin_fault(hub, op)
        }
        (_, ["admin", "overview"]) => Err(not_allowed("GET")),
        (_, ["admin", ..]) if method != Method::POST => Err(not_allowed("POST")),
        _ => Err(ApiError::not_found(format!(
            "no such path {}",
            path.escape_debug()
        ))),
    }
}

fn admin_fault(hub: &Hub, op: AdminFault) -> ApiResult {
    let answer = match op {
        AdminFault::Arm { fault } => {
            hub.faults.arm(fault);
            json!({"armed": hub.faults.armed()})
        }
        AdminFault::Clear => {
            hub.faults.clear();
            json!({"armed": []})
        }
        AdminFault::Skew { secs } => {
            hub.faults.set_skew(secs);
            json!({"skew": secs})
        }
        AdminFault::ExpireCursors => {
            let head = hub.store.head()?;
            hub.faults.expire_cursors_through(head);
            json!({"expired_through": head})
        }
        AdminFault::Decide {
            approval_id,
            decision,
            unpinned_key,
            tenant,
            appliance,
            action_hash,
            decided_at,
            expires_at,
        } => {
            let fault = DecisionFault {
                unpinned_key,
                tenant,
                appliance,
                action_hash,
                decided_at,
                expires_at,
            };
            json!(hub.decide_with(&approval_id, decision, &fault)?)
        }
        AdminFault::Replay { approval_id } => json!(hub.replay_decision(&approval_id)?),
        AdminFault::AnnounceBundle { tenant, version } => {
            json!({"sha256": hub.announce_bundle(&tenant, version)?})
        }
        AdminFault::PublishRolledBack { bundle_base64 } => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(bundle_base64)
                .map_err(|_| ApiError::bad_request("bundle_base64 is not standard base64"))?;
            let (tenant, version, sha256) = hub.publish_rolled_back_bundle(&bytes)?;
            json!({"tenant": tenant, "version": version, "sha256": sha256})
        }
        AdminFault::RawCommand { appliance, name } => {
            json!({"command_id": hub.send_raw_command(&appliance, &name)?})
        }
        AdminFault::RotateSigningKey => json!({"kid": hub.rotate_signing_key()?}),
    };
    json_response(StatusCode::OK, &answer)
}

/// Yields its bytes, then fails: hyper aborts the connection mid-body.
struct CutBody(Option<Bytes>);

impl Body for CutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.0.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Ready(Some(Err(Box::new(std::io::Error::other("cut by fault"))))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_and_the_documented_range() {
        for _ in 0..200 {
            let j = jittered(60);
            assert!((54..=66).contains(&j), "{j}");
            assert!((5..=3600).contains(&jittered(5)));
            assert!(jittered(3600) <= 3600);
        }
    }

    #[test]
    fn versions_and_ids_parse_strictly() {
        assert_eq!(parse_version("0").unwrap(), 0);
        assert_eq!(parse_version("9007199254740991").unwrap(), MAX_SAFE_INTEGER);
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "9007199254740992",
            "x",
            "99999999999999999",
        ] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
        assert!(valid_approval_id("ap_0123456789abcdef"));
        for bad in ["ap_0123456789ABCDEF", "ap_0123", "xp_0123456789abcdef"] {
            assert!(!valid_approval_id(bad), "{bad}");
        }
        assert_eq!(percent_decode("a%2Bb+c").unwrap(), "a+b c");
        assert!(percent_decode("%zz").is_none());
    }
}
