//! The appliance's HTTPS client for the Hub: reqwest with rustls only (no native-tls, no CA
//! store, no proxy from the environment, no redirects), the pinned-key verifier of `tls.rs`, one
//! typed call per endpoint of `hub/openapi.json`, deadlines on every call, capped answers, and
//! errors classified for the caller ([`crate::ErrorClass`]), `Retry-After` included.
//!
//! Nothing here logs or keeps the credential or the enrollment token: the bearer header is
//! marked sensitive (reqwest's `Debug` hides it), error details are built from URLs and causes,
//! and the Hub's own error messages are scrubbed of both before they are kept.

use std::sync::Mutex;
use std::time::Duration;

use clawgate_protocol::SecretString;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backoff::MAX_RETRY_AFTER;
use crate::error::{Error, Result, TransportKind};
use crate::protocol::{
    ApprovalRequest, ApprovalStatus, AuditAck, AuditBatch, BundleStatusReport, CommandResult,
    EnrollRequest, EnrollResponse, ErrorBody, EventsResponse, Heartbeat, HeartbeatResponse,
    RotateResponse, UsageAckResponse, UsageBatch,
};
use crate::signing::valid_id;

/// Every path of `hub/openapi.json`, each with a typed call below (a test compares the two).
pub const ENDPOINTS: [&str; 11] = [
    "/v1/enroll",
    "/v1/credential/rotate",
    "/v1/events",
    "/v1/bundles/{version}",
    "/v1/bundles/{version}/status",
    "/v1/approvals",
    "/v1/approvals/{id}",
    "/v1/usage",
    "/v1/audit",
    "/v1/heartbeat",
    "/v1/commands/{id}/result",
];

/// Largest bundle document read (as `clawgate_policies::bundle::MAX_BUNDLE_BYTES`).
pub const MAX_BUNDLE_BYTES: usize = 8 * 1024 * 1024;
/// Largest answer read for any other call.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Longest event long-poll asked for.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(60);
/// Error messages from the Hub are cut at this many characters.
const MAX_MESSAGE_CHARS: usize = 1024;

/// Deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// A whole ordinary call (send, wait, read the answer).
    pub request: Duration,
    /// Added to the long-poll `wait` for the events call.
    pub poll_margin: Duration,
    /// A whole bundle download.
    pub bundle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
            poll_margin: Duration::from_secs(15),
            bundle: Duration::from_secs(120),
        }
    }
}

/// The Hub client. Cheap to share behind an `Arc`; calls may run concurrently.
#[derive(Debug)]
pub struct HubClient {
    http: reqwest::Client,
    base: Url,
    credential: Mutex<Option<SecretString>>,
    timeouts: Timeouts,
}

/// What `POST /v1/approvals` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalCreated {
    /// 201 (new) rather than 200 (already known).
    pub created: bool,
    /// The request's status on the Hub.
    pub status: ApprovalStatus,
}

impl HubClient {
    /// A client for the Hub at `base_url` (https, no path beyond `/`), trusting only `pins`
    /// (SHA-256 of the DER SPKI of the Hub's TLS key), authenticating with `credential` (none
    /// before enrollment).
    pub fn new(
        base_url: &str,
        pins: Vec<[u8; 32]>,
        credential: Option<SecretString>,
        timeouts: Timeouts,
    ) -> Result<HubClient> {
        let base = parse_base_url(base_url)?;
        if pins.is_empty() {
            return Err(Error::Invalid(
                "at least one TLS pin is needed to talk to the Hub".into(),
            ));
        }
        let tls = crate::tls::client_config(pins)
            .map_err(|e| Error::Invalid(format!("TLS configuration: {e}")))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeouts.connect)
            .user_agent(concat!("clawgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        Ok(HubClient {
            http,
            base,
            credential: Mutex::new(credential),
            timeouts,
        })
    }

    /// Replaces the credential used from the next call on. Persist it first
    /// ([`crate::identity::rotate_credential`] does both in the right order).
    pub fn set_credential(&self, credential: SecretString) -> Result<()> {
        *self.credential.lock().map_err(|_| Error::Poisoned)? = Some(credential);
        Ok(())
    }

    fn current_credential(&self) -> Result<Option<SecretString>> {
        Ok(self.credential.lock().map_err(|_| Error::Poisoned)?.clone())
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::Invalid(format!("URL for {path}: {e}")))
    }

    /// `POST /v1/enroll` (unauthenticated: the token is the authentication).
    pub async fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse> {
        let (_, body) = self
            .call(
                "enroll",
                Method::POST,
                self.url("/v1/enroll")?,
                Some(json_body(request)?),
                Auth::None,
                &[request.token.expose()],
                self.timeouts.request,
                MAX_ANSWER_BYTES,
            )
            .await?;
        parse_secret_bearing("enroll", &body)
    }

    /// `POST /v1/credential/rotate`.
    pub async fn rotate_credential(&self) -> Result<RotateResponse> {
        let (_, body) = self
            .call_bearer(
                "credential/rotate",
                Method::POST,
                self.url("/v1/credential/rotate")?,
                None,
            )
            .await?;
        parse_secret_bearing("credential/rotate", &body)
    }

    /// `GET /v1/events` (long poll of up to `wait`, capped at [`MAX_POLL_WAIT`]).
    pub async fn poll_events(
        &self,
        cursor: Option<&str>,
        wait: Duration,
    ) -> Result<EventsResponse> {
        let wait = wait.min(MAX_POLL_WAIT);
        let mut url = self.url("/v1/events")?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(c) = cursor {
                q.append_pair("cursor", c);
            }
            q.append_pair("wait", &wait.as_secs().to_string());
        }
        let (_, body) = self
            .call(
                "events",
                Method::GET,
                url,
                None,
                Auth::Bearer,
                &[],
                wait + self.timeouts.poll_margin,
                MAX_ANSWER_BYTES,
            )
            .await?;
        parse("events", &body)
    }

    /// `GET /v1/bundles/{version}`: the bundle document's bytes, unparsed (at most
    /// [`MAX_BUNDLE_BYTES`]). Check them against the event's SHA-256, then verify them with
    /// `clawgate_policies::bundle::verify`.
    pub async fn get_bundle(&self, version: u64) -> Result<Vec<u8>> {
        let (_, body) = self
            .call(
                "bundles",
                Method::GET,
                self.url(&format!("/v1/bundles/{version}"))?,
                None,
                Auth::Bearer,
                &[],
                self.timeouts.bundle,
                MAX_BUNDLE_BYTES,
            )
            .await?;
        Ok(body)
    }

    /// `POST /v1/bundles/{version}/status`.
    pub async fn report_bundle_status(
        &self,
        version: u64,
        report: &BundleStatusReport,
    ) -> Result<()> {
        self.call_bearer(
            "bundles/status",
            Method::POST,
            self.url(&format!("/v1/bundles/{version}/status"))?,
            Some(json_body(report)?),
        )
        .await?;
        Ok(())
    }

    /// `POST /v1/approvals`.
    pub async fn create_approval(&self, request: &ApprovalRequest) -> Result<ApprovalCreated> {
        let (status, body) = self
            .call_bearer(
                "approvals",
                Method::POST,
                self.url("/v1/approvals")?,
                Some(json_body(request)?),
            )
            .await?;
        Ok(ApprovalCreated {
            created: status == StatusCode::CREATED,
            status: parse("approvals", &body)?,
        })
    }

    /// `GET /v1/approvals/{id}`.
    pub async fn get_approval(&self, approval_id: &str) -> Result<ApprovalStatus> {
        let id = path_segment("approval id", approval_id)?;
        let (_, body) = self
            .call_bearer(
                "approvals/{id}",
                Method::GET,
                self.url(&format!("/v1/approvals/{id}"))?,
                None,
            )
            .await?;
        parse("approvals/{id}", &body)
    }

    /// `POST /v1/usage`.
    pub async fn ingest_usage(&self, batch: &UsageBatch) -> Result<UsageAckResponse> {
        let (_, body) = self
            .call_bearer(
                "usage",
                Method::POST,
                self.url("/v1/usage")?,
                Some(json_body(batch)?),
            )
            .await?;
        parse("usage", &body)
    }

    /// `POST /v1/audit`. A gap answers [`Error::Http`] 409 with `expected_seq`.
    pub async fn ingest_audit(&self, batch: &AuditBatch) -> Result<AuditAck> {
        let (_, body) = self
            .call_bearer(
                "audit",
                Method::POST,
                self.url("/v1/audit")?,
                Some(json_body(batch)?),
            )
            .await?;
        parse("audit", &body)
    }

    /// `POST /v1/heartbeat`.
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatResponse> {
        let (_, body) = self
            .call_bearer(
                "heartbeat",
                Method::POST,
                self.url("/v1/heartbeat")?,
                Some(json_body(heartbeat)?),
            )
            .await?;
        parse("heartbeat", &body)
    }

    /// `POST /v1/commands/{id}/result`.
    pub async fn report_command_result(
        &self,
        command_id: &str,
        result: &CommandResult,
    ) -> Result<()> {
        let id = path_segment("command id", command_id)?;
        self.call_bearer(
            "commands/result",
            Method::POST,
            self.url(&format!("/v1/commands/{id}/result"))?,
            Some(json_body(result)?),
        )
        .await?;
        Ok(())
    }

    async fn call_bearer(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>)> {
        self.call(
            operation,
            method,
            url,
            body,
            Auth::Bearer,
            &[],
            self.timeouts.request,
            MAX_ANSWER_BYTES,
        )
        .await
    }

    /// One request: send, read at most `limit` bytes within `deadline`, map failures. `secrets`
    /// (besides the credential) are scrubbed from the Hub's error messages.
    #[allow(clippy::too_many_arguments)] // private; every caller names each argument's role
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        auth: Auth,
        secrets: &[&str],
        deadline: Duration,
        limit: usize,
    ) -> Result<(StatusCode, Vec<u8>)> {
        let credential = match auth {
            Auth::Bearer => Some(self.current_credential()?.ok_or_else(|| {
                Error::Invalid(format!("no Hub credential for {operation}: enroll first"))
            })?),
            Auth::None => None,
        };
        let mut request = self.http.request(method, url).timeout(deadline);
        if let Some(c) = &credential {
            request = request.bearer_auth(c.expose());
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let error = transport_error(e);
                tracing::debug!(operation, %error, "Hub request failed.");
                return Err(error);
            }
        };
        let status = response.status();
        tracing::debug!(operation, status = status.as_u16(), "Hub answered.");
        let retry_after = retry_after(response.headers());
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if bytes.len() + chunk.len() > limit {
                return Err(Error::BadResponse {
                    operation,
                    detail: format!("answer larger than {limit} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((status, bytes));
        }
        let mut scrub_list: Vec<&str> = secrets.to_vec();
        if let Some(c) = &credential {
            scrub_list.push(c.expose());
        }
        Err(http_error(status, retry_after, &bytes, &scrub_list))
    }
}

#[derive(Debug, Clone, Copy)]
enum Auth {
    None,
    Bearer,
}

fn parse_base_url(base_url: &str) -> Result<Url> {
    let mut url = Url::parse(base_url)
        .map_err(|e| Error::Invalid(format!("Hub URL `{}`: {e}", base_url.escape_debug())))?;
    if url.scheme() != "https" {
        return Err(Error::Invalid(format!(
            "Hub URL `{}` is not https: the Hub is only reached over TLS",
            base_url.escape_debug()
        )));
    }
    if url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(Error::Invalid(format!(
            "Hub URL `{}` must be https://host[:port][/path], without credentials, query or fragment",
            base_url.escape_debug()
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// An id used as a path segment: the protocol's id grammar, so it cannot add segments or a
/// query.
fn path_segment<'a>(what: &str, id: &'a str) -> Result<&'a str> {
    if valid_id(id) {
        Ok(id)
    } else {
        Err(Error::Invalid(format!(
            "{what} `{}` is not [A-Za-z0-9._:-]{{1,64}}",
            id.escape_debug()
        )))
    }
}

fn json_body<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Invalid(format!("request body: {e}")))
}

fn parse<T: DeserializeOwned>(operation: &'static str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadResponse {
        operation,
        detail: e.to_string(),
    })
}

/// For answers that carry a credential: serde's message may quote a value (or a field name)
/// from the body, which could be the credential, so only the error's category and position are
/// kept.
fn parse_secret_bearing<T: DeserializeOwned>(operation: &'static str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadResponse {
        operation,
        detail: format!(
            "{:?} error at line {} column {} (not the documented shape)",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}

/// `Retry-After` as delta-seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = parse_http_date(value)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            Duration::from_secs(at.saturating_sub(now))
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only date form HTTP senders may produce,
/// to Unix seconds.
fn parse_http_date(s: &str) -> Option<u64> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1970..=9999).contains(&year) || !(1..=31).contains(&day) || *h > 23 || *m > 59 || *sec > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm, for years ≥ 1970).
    let (y, mo) = if month < 2 {
        (year - 1, month + 10)
    } else {
        (year, month - 2)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo as u64 + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe;
    let days = days.checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

fn http_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    let (code, message, expected_seq) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (b.error.code, b.error.message, b.error.expected_seq),
        Err(_) => (
            "unknown".to_owned(),
            String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE_CHARS)]).into_owned(),
            None,
        ),
    };
    Error::Http {
        status: status.as_u16(),
        code: sanitize(&code, secrets),
        message: sanitize(&message, secrets),
        retry_after,
        expected_seq,
    }
}

/// The Hub's text made safe to keep: every secret replaced, control characters escaped, cut.
fn sanitize(text: &str, secrets: &[&str]) -> String {
    let mut clean = text.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        clean = clean.replace(s, "[REDACTED]");
    }
    let escaped: String = clean
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    // Cutting may have split a secret (which is long) only if it survived replacement, which
    // it cannot; but a secret cut by the Hub itself could remain partially: drop any tail that
    // is a prefix of a secret.
    trim_secret_prefix(escaped, secrets)
}

fn trim_secret_prefix(mut text: String, secrets: &[&str]) -> String {
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        for cut in (8..s.len()).rev().filter(|&c| s.is_char_boundary(c)) {
            if text.ends_with(&s[..cut]) {
                let keep = text.len() - cut;
                text.truncate(keep);
                text.push_str("[REDACTED]");
                break;
            }
        }
    }
    text
}

/// Maps a reqwest failure to [`Error::PinMismatch`] or [`Error::Transport`], keeping causes
/// (URLs and reasons; reqwest never puts headers in its errors).
fn transport_error(e: reqwest::Error) -> Error {
    if crate::tls::is_pin_mismatch(&e) {
        return Error::PinMismatch;
    }
    let kind = if e.is_timeout() {
        TransportKind::Timeout
    } else if crate::tls::is_tls_error(&e) {
        TransportKind::Tls
    } else if e.is_connect() {
        TransportKind::Connect
    } else if e.is_body() || e.is_decode() || e.is_request() {
        TransportKind::Cut
    } else {
        TransportKind::Other
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    Error::Transport {
        kind,
        detail: detail.chars().take(512).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://hub.example.com").unwrap().as_str(),
            "https://hub.example.com/"
        );
        assert_eq!(
            parse_base_url("https://hub.example.com:8443/api")
                .unwrap()
                .as_str(),
            "https://hub.example.com:8443/api/"
        );
        for bad in [
            "http://hub.example.com",
            "hub.example.com",
            "https://user:pw@hub.example.com",
            "https://hub.example.com/?x=1",
            "https://hub.example.com/#f",
            "file:///etc/passwd",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_ids_cannot_escape_their_segment() {
        for bad in ["../enroll", "a/b", "a?b", "", "a b", &"x".repeat(65)] {
            assert!(path_segment("id", bad).is_err(), "{bad}");
        }
        assert_eq!(
            path_segment("id", "ap_0123456789abcdef").unwrap(),
            "ap_0123456789abcdef"
        );
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "999999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date: retry now"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        assert_eq!(parse_http_date("Tue, 29 Feb 2028 12:00:00 UTC"), None);
        assert_eq!(parse_http_date("Tue, 32 Feb 2028 12:00:00 GMT"), None);
    }

    #[test]
    fn hub_messages_are_scrubbed_escaped_and_cut() {
        let cred = "cga_YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8";
        let err = http_error(
            StatusCode::UNAUTHORIZED,
            None,
            format!(r#"{{"error":{{"code":"unauthorized","message":"bad credential {cred}\n\u001b[31m"}}}}"#).as_bytes(),
            &[cred],
        );
        let text = err.to_string();
        assert!(!text.contains("YGFiY2RlZm"), "{text}");
        assert!(
            text.contains("[REDACTED]") && text.contains("\\n") && text.contains("\\u{1b}"),
            "{text}"
        );
        // A message cut by the Hub in the middle of the secret.
        let half = &cred[..20];
        let err = http_error(
            StatusCode::BAD_REQUEST,
            None,
            format!("not json {half}").as_bytes(),
            &[cred],
        );
        assert!(!err.to_string().contains(half), "{err}");
        // Long messages are cut.
        let long = "x".repeat(5000);
        let err = http_error(StatusCode::BAD_GATEWAY, None, long.as_bytes(), &[]);
        let Error::Http { message, code, .. } = err else {
            panic!()
        };
        assert_eq!(code, "unknown");
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
    }
}
