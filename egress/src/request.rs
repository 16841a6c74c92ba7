//! The request phase: route, token, body decoding and redaction, what is forwarded.
//!
//! The body is redacted in place rather than re-serialised from a parsed tree: one pass
//! (`json.rs`) validates the whole document, finds every JSON string (object keys included) and
//! where `model`, `stream` and `stream_options` are; then every string is decoded, passed
//! through the redactor, and re-encoded only if the redactor changed it. Everything else keeps
//! its exact bytes, so key order, number spelling and whitespace survive, and a body with no
//! secret is forwarded byte for byte (which also keeps provider prompt caches warm).

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use clawgate_redact::{Capture, Redactor};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;
use serde_json::Value;

use crate::cache::{Entry, RedactionCache};
use crate::config::Provider;
use crate::error::Refusal;

mod json;
mod unescape;
use unescape::unescape;

/// Where a request goes: its provider and the path after the route (`""` or starting with `/`).
pub(crate) fn route(path: &str) -> Option<(Provider, &str)> {
    let trimmed = path.strip_prefix('/')?;
    let (name, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    };
    Provider::from_route(name).map(|p| (p, rest))
}

/// Refuses `.`/`..` segments (also percent-encoded) so a request cannot climb out of the
/// upstream's base path.
pub(crate) fn check_path(rest: &str) -> Result<(), Refusal> {
    let bad = rest.split('/').any(|seg| {
        let s = seg.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    });
    if bad {
        return Err(Refusal::client(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "the request path may not contain `.` or `..` segments",
        ));
    }
    Ok(())
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the legacy
/// `proxy-connection`. Never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Credentials the agent may send (all stripped, whichever was used).
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(crate) const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

/// Names listed in `Connection` (they are hop-by-hop too).
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Copies `from` without hop-by-hop headers and without `drop`.
pub(crate) fn copy_headers(from: &HeaderMap, drop: &[HeaderName]) -> HeaderMap {
    let named = connection_named(from);
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if HOP_BY_HOP.contains(name) || named.contains(name) || drop.contains(name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The request headers the upstream gets: the client's minus hop-by-hop, host, length,
/// encodings, `expect` and every credential header; the caller adds the real key.
pub(crate) fn upstream_headers(from: &HeaderMap, body_len: usize) -> HeaderMap {
    let mut h = copy_headers(
        from,
        &[
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::ACCEPT_ENCODING,
            header::EXPECT,
            header::AUTHORIZATION,
            X_API_KEY,
            X_GOOG_API_KEY,
        ],
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    // Identity responses: the usage side parser reads them as they are.
    h.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    h
}

/// Adds the real key in `provider`'s own header (marked sensitive: never indexed by HPACK nor
/// shown by `Debug`).
pub(crate) fn inject_key(h: &mut HeaderMap, provider: Provider, key: &str) -> Result<(), Refusal> {
    let bad = || {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "invalid_provider_key",
            crate::error::Side::Internal,
            format!(
                "the {} key stored in Clawgate's vault is not a valid header value",
                provider.display_name()
            ),
        )
    };
    let (name, value) = match provider {
        Provider::Anthropic => (X_API_KEY, HeaderValue::from_str(key)),
        Provider::Gemini => (X_GOOG_API_KEY, HeaderValue::from_str(key)),
        Provider::OpenAi | Provider::OpenRouter => (
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {key}")),
        ),
    };
    let mut value = value.map_err(|_| bad())?;
    value.set_sensitive(true);
    h.insert(name, value);
    Ok(())
}

/// Removes `key=` parameters from a query (Gemini's `?key=`); returns the rest and the value.
pub(crate) fn split_key_param(query: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(q) = query else {
        return (None, None);
    };
    let mut key = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in q.split('&') {
        let name = pair.split('=').next().unwrap_or("");
        if name == "key" {
            let v = pair.get(4..).unwrap_or("");
            key = Some(percent_decode(v));
        } else if !pair.is_empty() {
            kept.push(pair);
        }
    }
    let rest = (!kept.is_empty()).then(|| kept.join("&"));
    (rest, key)
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The agent token, from whichever header (or `?key=`) carries it. Several different tokens:
/// refused.
pub(crate) fn presented_token(
    headers: &HeaderMap,
    query_key: Option<&str>,
) -> Result<String, Refusal> {
    let mut found: Vec<&str> = Vec::new();
    for v in headers.get_all(header::AUTHORIZATION) {
        let s = v.to_str().map_err(|_| unauthorized())?;
        let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized());
        }
        found.push(rest.trim());
    }
    for name in [X_API_KEY, X_GOOG_API_KEY] {
        for v in headers.get_all(name) {
            found.push(v.to_str().map_err(|_| unauthorized())?.trim());
        }
    }
    if let Some(k) = query_key {
        found.push(k);
    }
    let Some(first) = found.first() else {
        return Err(Refusal::client(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "no Clawgate agent token: send it as `x-api-key`, `Authorization: Bearer` (Gemini: `x-goog-api-key` or `?key=`)",
        ));
    };
    if found.iter().any(|t| t != first) || first.is_empty() {
        return Err(unauthorized());
    }
    Ok((*first).to_owned())
}

pub(crate) fn unauthorized() -> Refusal {
    Refusal::client(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "invalid Clawgate agent token (the proxy holds the real provider key; use the local token Clawgate issued for this agent)",
    )
}

/// Decodes `content-encoding: gzip | x-gzip | deflate` (identity passes), capped at `max`
/// bytes; anything else is refused (415), never forwarded undecoded.
pub(crate) fn decode_body(body: Bytes, headers: &HeaderMap, max: usize) -> Result<Bytes, Refusal> {
    let mut codings: Vec<String> = Vec::new();
    for v in headers.get_all(header::CONTENT_ENCODING) {
        let s = v.to_str().map_err(|_| unsupported_encoding("?"))?;
        for c in s.split(',') {
            let c = c.trim().to_ascii_lowercase();
            if !c.is_empty() && c != "identity" {
                codings.push(c);
            }
        }
    }
    match codings.as_slice() {
        [] => Ok(body),
        [one] => match one.as_str() {
            "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(&body[..]), max),
            "deflate" => inflate(flate2::read::ZlibDecoder::new(&body[..]), max)
                .or_else(|_| inflate(flate2::read::DeflateDecoder::new(&body[..]), max)),
            other => Err(unsupported_encoding(other)),
        },
        _ => Err(unsupported_encoding(&codings.join(", "))),
    }
}

fn unsupported_encoding(what: &str) -> Refusal {
    Refusal::client(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_encoding",
        format!(
            "request content-encoding {what:?} is not supported (use identity, gzip or deflate)"
        ),
    )
}

fn inflate(mut r: impl Read, max: usize) -> Result<Bytes, Refusal> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = r.read(&mut chunk).map_err(|_| {
            Refusal::client(
                StatusCode::BAD_REQUEST,
                "bad_encoding",
                "the compressed request body could not be decompressed",
            )
        })?;
        if n == 0 {
            return Ok(Bytes::from(out));
        }
        if out.len() + n > max {
            return Err(too_large(max));
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

pub(crate) fn too_large(max: usize) -> Refusal {
    Refusal::client(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body is larger than Clawgate's limit of {max} bytes"),
    )
}

fn bad_json(why: &str) -> Refusal {
    Refusal::client(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!(
            "Clawgate forwards only JSON request bodies it can check for secrets; this one is refused: {why}"
        ),
    )
}

/// The fields of a request body the proxy reads.
#[derive(Default)]
struct Head {
    model: Option<Value>,
    stream: Option<Value>,
    /// `Some(Value::Null)` for an explicit `null` (present, so never appended a second time).
    stream_options: Option<Value>,
}

impl Head {
    /// The top-level fields [`json::scan`] found, each parsed from its own bytes.
    fn of(text: &str, scanned: &json::Scanned) -> Result<Self, Refusal> {
        let value = |at: Option<(usize, usize)>| {
            at.map(|(s, e)| serde_json::from_str::<Value>(&text[s..e]))
                .transpose()
                .map_err(|e| bad_json(&format!("{e}")))
        };
        // (`"model": null` is no model, as an `Option` reads it; an explicit
        // `"stream_options": null` is kept, see above.)
        let not_null = |v: Option<Value>| v.filter(|v| !v.is_null());
        Ok(Head {
            model: not_null(value(scanned.model)?),
            stream: not_null(value(scanned.stream)?),
            stream_options: value(scanned.stream_options)?,
        })
    }
}

/// A redaction, for metrics: detector and rule (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redaction {
    pub(crate) detector: &'static str,
    pub(crate) rule: String,
}

fn detector_name(d: clawgate_redact::DetectorKind) -> &'static str {
    match format!("{d:?}").as_str() {
        "Vault" => "vault",
        "Rule" => "rule",
        "Entropy" => "entropy",
        _ => "other",
    }
}

/// A request body ready to forward.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The bytes the upstream gets.
    pub(crate) body: Bytes,
    /// `model` from the body (or Gemini's path).
    pub(crate) model: Option<String>,
    /// We added `stream_options.include_usage`; the usage-only chunk is not the client's.
    pub(crate) strip_usage_chunk: bool,
    /// What was redacted.
    pub(crate) redactions: Vec<Redaction>,
}

/// [`prepare_capturing`] without capture (the unit tests' shorthand).
#[cfg(test)]
pub(crate) fn prepare(
    provider: Provider,
    rest: &str,
    post: bool,
    body: Bytes,
    redactor: &Arc<Redactor>,
    cache: Option<&RedactionCache>,
) -> Result<Prepared, Refusal> {
    prepare_capturing(provider, rest, post, body, redactor, cache, None)
}

/// Validates, redacts and (for streamed OpenAI chat) adds `include_usage` to a request body.
/// Unknown secrets are offered to `capture`, if any (the text then references the captured
/// vault secret instead of a placeholder).
pub(crate) fn prepare_capturing(
    provider: Provider,
    rest: &str,
    post: bool,
    body: Bytes,
    redactor: &Arc<Redactor>,
    cache: Option<&RedactionCache>,
    capture: Option<&dyn Capture>,
) -> Result<Prepared, Refusal> {
    let path_model = gemini_model(provider, rest);
    if body.is_empty() {
        return Ok(Prepared {
            body,
            model: path_model,
            strip_usage_chunk: false,
            redactions: Vec::new(),
        });
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        bad_json(&format!(
            "it is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let scanned = json::scan(text).map_err(|e| bad_json(&e.to_string()))?;
    let head = Head::of(text, &scanned)?;
    let mut redactions = Vec::new();
    // Vault values split across strings first (they are in no string whole), then every string.
    let mut strings = TextStrings::look_up(text, scanned.strings, redactor, cache);
    let joined = redact_across(text, &mut strings, redactor, &mut redactions)?;
    let redacted = match &joined {
        // Rare: pieces were replaced, so the strings moved; they are looked up again.
        Some(j) => {
            let all = json_strings(j)?;
            redact_strings_walk(j, &all, None, redactor, cache, &mut redactions, capture)?
        }
        None => {
            let r = redact_strings_walk(
                text,
                &strings.all,
                Some(&mut strings.looked),
                redactor,
                cache,
                &mut redactions,
                capture,
            )?;
            strings.remember_clean_seams();
            r
        }
    };
    let mut out: Cow<'_, str> = match redacted.or(joined) {
        Some(s) => Cow::Owned(s),
        None => Cow::Borrowed(text),
    };

    let wants_usage = head
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let completions = rest.ends_with("/chat/completions") || rest.ends_with("/completions");
    let inject = post
        && matches!(provider, Provider::OpenAi | Provider::OpenRouter)
        && completions
        && head.stream.as_ref().and_then(Value::as_bool) == Some(true)
        && !wants_usage;
    if inject {
        out = Cow::Owned(add_include_usage(&out, head.stream_options.is_none())?);
    }
    let body = match out {
        Cow::Borrowed(_) => body,
        Cow::Owned(s) => Bytes::from(s),
    };
    Ok(Prepared {
        body,
        model: path_model.or_else(|| {
            head.model
                .as_ref()
                .and_then(Value::as_str)
                .map(str::to_owned)
        }),
        // OpenRouter always sends usage in its last chunk, asked or not: the client would have
        // got it directly, so it keeps it.
        strip_usage_chunk: inject && provider == Provider::OpenAi,
        redactions,
    })
}

/// `stream_options.include_usage = true`. Without `stream_options`, appended to the top-level
/// object as raw bytes; otherwise through a parsed tree (key order kept by `preserve_order`).
fn add_include_usage(text: &str, no_options: bool) -> Result<String, Refusal> {
    let trimmed = text.trim_end();
    if no_options && trimmed.ends_with('}') {
        let body = &trimmed[..trimmed.len() - 1];
        let empty = body.trim_end().ends_with('{');
        let mut s = String::with_capacity(text.len() + 48);
        s.push_str(body);
        if !empty {
            s.push(',');
        }
        s.push_str("\"stream_options\":{\"include_usage\":true}}");
        return Ok(s);
    }
    let mut v: Value = serde_json::from_str(text).map_err(|e| bad_json(&format!("{e}")))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(bad_json("the top level is not an object"));
    };
    match obj.get_mut("stream_options").and_then(Value::as_object_mut) {
        Some(o) => {
            o.insert("include_usage".into(), Value::Bool(true));
        }
        None => {
            obj.insert(
                "stream_options".into(),
                serde_json::json!({ "include_usage": true }),
            );
        }
    }
    serde_json::to_string(&v).map_err(|e| bad_json(&format!("{e}")))
}

/// Gemini names the model in the path: `/v1beta/models/{model}:generateContent`.
fn gemini_model(provider: Provider, rest: &str) -> Option<String> {
    if provider != Provider::Gemini {
        return None;
    }
    let after = &rest[rest.find("models/")? + "models/".len()..];
    let end = after.find([':', '/', '?']).unwrap_or(after.len());
    let m = &after[..end];
    (!m.is_empty()).then(|| m.to_owned())
}

/// One JSON string (`quoted`, as written) through the redactor: its JSON-encoded replacement
/// if the redactor changed it, and what was redacted.
type Redacted = (Option<String>, Vec<Redaction>);

fn redact_json_string(
    redactor: &Redactor,
    quoted: &str,
    escaped: bool,
    capture: Option<&dyn Capture>,
) -> Result<Redacted, Refusal> {
    let raw = &quoted[1..quoted.len() - 1];
    let decoded: Cow<'_, str> = if escaped {
        Cow::Owned(unescape(raw).map_err(|e| bad_json(&e.to_string()))?)
    } else {
        Cow::Borrowed(raw)
    };
    // One scan gives both the text and what to report (a second scan doubled the cost of
    // every string holding a secret).
    let (redacted, findings) = match capture {
        Some(c) => redactor.redact_capturing_with_findings(&decoded, c),
        None => redactor.redact_with_findings(&decoded),
    };
    match redacted {
        Cow::Borrowed(_) => Ok((None, Vec::new())),
        Cow::Owned(new) => {
            let found = findings
                .into_iter()
                .map(|f| Redaction {
                    detector: detector_name(f.detector),
                    rule: f.rule.into_owned(),
                })
                .collect();
            let enc = serde_json::to_string(&new).map_err(|e| bad_json(&format!("{e}")))?;
            Ok((Some(enc), found))
        }
    }
}

/// Keys whose string values are structure, not text: a secret split across two messages has
/// `"role": "user"` or `"type": "text"` between its pieces, which must not hide it.
const STRUCTURAL_KEYS: [&str; 19] = [
    "role",
    "type",
    "model",
    "id",
    "name",
    "object",
    "tool_use_id",
    "tool_call_id",
    "call_id",
    "media_type",
    "mime_type",
    "stop_reason",
    "finish_reason",
    "status",
    "signature",
    "format",
    "detail",
    "cache_control",
    "ttl",
];

/// One JSON string of a body, object keys included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JsonString {
    /// Its opening quote.
    open: usize,
    /// Its closing quote.
    close: usize,
    /// Whether its content holds an escape.
    escaped: bool,
    /// A value whose key is not structural: text, where a secret split across two strings may
    /// lie ([`STRUCTURAL_KEYS`]).
    text: bool,
}

/// Every JSON string of `text` ([`json::scan`]; the strings of a body the proxy changed, which
/// stays valid JSON).
fn json_strings(text: &str) -> Result<Vec<JsonString>, Refusal> {
    json::scan(text)
        .map(|s| s.strings)
        .map_err(|e| bad_json(&e.to_string()))
}

/// Whether byte `pos` of JSON string content is inside an escape sequence (`\"`, `\n`,
/// `\uXXXX`), so that a match starting or ending there is not really in the decoded text.
fn inside_escape(bytes: &[u8], pos: usize) -> bool {
    for back in 1..=5 {
        let Some(at) = pos.checked_sub(back) else {
            return false;
        };
        if bytes[at] != b'\\' {
            continue;
        }
        let run = bytes[..at]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if run % 2 == 1 {
            // This backslash is itself escaped: a literal backslash, not an opener.
            continue;
        }
        return back == 1 || bytes.get(at + 1) == Some(&b'u');
    }
    false
}

/// The strings of a body ([`json_strings`]) and what the redaction cache knows of each text
/// string: looked up once, used by the seam scan (which seams are known clean) and by the
/// string pass.
struct TextStrings {
    all: Vec<JsonString>,
    /// The contents (between the quotes, as written) of the text strings, in order.
    spans: Vec<(usize, usize)>,
    /// Per span, when the cache wants it: its hash and entry (a hit, or the entry made when the
    /// string pass redacts it).
    looked: Vec<Option<Looked>>,
    /// Per boundary between spans `k` and `k + 1`: known clean before the scan, and found clean
    /// by it ([`clawgate_redact::Seams::clean`]).
    known_clean: Vec<bool>,
    found_clean: Vec<bool>,
}

struct Looked {
    h: u64,
    entry: Option<Arc<Entry>>,
}

impl TextStrings {
    fn look_up(
        text: &str,
        all: Vec<JsonString>,
        redactor: &Arc<Redactor>,
        cache: Option<&RedactionCache>,
    ) -> Self {
        let spans: Vec<(usize, usize)> = all
            .iter()
            .filter(|s| s.text)
            .map(|s| (s.open + 1, s.close))
            .collect();
        let looked: Vec<Option<Looked>> = spans
            .iter()
            .map(|&(s, e)| {
                let raw = &text[s..e];
                let c = cache.filter(|c| c.wants(raw))?;
                let h = c.hash(raw);
                Some(Looked {
                    h,
                    entry: c.get(redactor, raw, h),
                })
            })
            .collect();
        let entry = |k: usize| looked[k].as_ref().and_then(|l| l.entry.as_ref());
        let known_clean = (1..spans.len())
            .map(|k| match (entry(k - 1), entry(k)) {
                (Some(a), Some(b)) => a.seam_known_clean(b),
                _ => false,
            })
            .collect();
        TextStrings {
            all,
            spans,
            looked,
            known_clean,
            found_clean: Vec::new(),
        }
    }

    /// Records the seams the scan found clean between two cached strings, so the next request
    /// that resends both in this order skips them (without a cache there are no entries).
    fn remember_clean_seams(&self) {
        for (k, clean) in self.found_clean.iter().enumerate() {
            if !clean || self.known_clean[k] {
                continue;
            }
            let entry = |i: usize| self.looked[i].as_ref().and_then(|l| l.entry.as_ref());
            if let (Some(a), Some(b)) = (entry(k), entry(k + 1)) {
                a.remember_clean_seam(b);
            }
        }
    }
}

/// Vault values split across consecutive text strings of the body (two messages, two content
/// blocks): each piece becomes `SECRET_REF(name)` in its own string. `None` when there is none
/// (the common case; only the bytes around each boundary are scanned, and not even those where
/// the two strings met before with nothing between them). Works on the raw JSON text: the
/// vault detector also knows each value's JSON-escaped form.
fn redact_across(
    text: &str,
    strings: &mut TextStrings,
    redactor: &Redactor,
    redactions: &mut Vec<Redaction>,
) -> Result<Option<String>, Refusal> {
    let spans = &strings.spans;
    if spans.len() < 2 {
        return Ok(None);
    }
    let parts: Vec<&str> = spans.iter().map(|&(s, e)| &text[s..e]).collect();
    let known = &strings.known_clean;
    let seams = redactor.scan_seams(&parts, |k| known[k]);
    strings.found_clean = seams.clean;
    if seams.pieces.iter().all(Vec::is_empty) {
        return Ok(None);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (&(s, _), pieces) in spans.iter().zip(seams.pieces) {
        for f in pieces {
            let (a, z) = (s + f.start, s + f.end);
            let Some(name) = &f.secret else { continue };
            if a < copied || inside_escape(bytes, a) || inside_escape(bytes, z) {
                continue;
            }
            out.push_str(&text[copied..a]);
            out.push_str(&format!("SECRET_REF({name})"));
            copied = z;
            redactions.push(Redaction {
                detector: "vault",
                rule: f.rule.into_owned(),
            });
        }
    }
    if copied == 0 {
        return Ok(None);
    }
    out.push_str(&text[copied..]);
    Ok(Some(out))
}

/// Every JSON string of `text` through the redactor, without capture and without looked-up
/// text strings (the unit tests' shorthand).
#[cfg(test)]
pub(crate) fn redact_strings(
    text: &str,
    redactor: &Arc<Redactor>,
    cache: Option<&RedactionCache>,
    redactions: &mut Vec<Redaction>,
) -> Result<Option<String>, Refusal> {
    let all = json_strings(text)?;
    redact_strings_walk(text, &all, None, redactor, cache, redactions, None)
}

/// Every JSON string of `text` (`all`, from [`json_strings`]) through the redactor (long
/// strings through `cache`); `None` when nothing changed. Unknown secrets are offered to
/// `capture`; a string answered from `cache` keeps what it was redacted to when first seen (a
/// reference, if it was captured then). `looked`, the text strings of `all` already looked up
/// in the cache, saves hashing and looking them up again, and gets the entries made for them.
fn redact_strings_walk(
    text: &str,
    all: &[JsonString],
    mut looked: Option<&mut [Option<Looked>]>,
    redactor: &Arc<Redactor>,
    cache: Option<&RedactionCache>,
    redactions: &mut Vec<Redaction>,
    capture: Option<&dyn Capture>,
) -> Result<Option<String>, Refusal> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    // The index of the next text string in `looked`.
    let mut next_text = 0;
    for s in all {
        let (start, end, escaped) = (s.open, s.close, s.escaped);
        // The string as written (quotes included), and between the quotes.
        let quoted = &text[start..=end];
        let raw = &text[start + 1..end];
        let mut splice = |enc: &str, out: &mut Option<String>| {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 64));
            o.push_str(&text[copied..start]);
            o.push_str(enc);
            copied = end + 1;
        };
        // This string's earlier lookup, if it is a text string that was looked up.
        let looked = match (s.text, looked.as_deref_mut()) {
            (true, Some(l)) => {
                next_text += 1;
                l.get_mut(next_text - 1).and_then(Option::as_mut)
            }
            _ => None,
        };
        match cache.filter(|c| c.wants(raw)) {
            Some(c) => {
                let (h, hit) = match &looked {
                    Some(l) => (l.h, l.entry.clone()),
                    None => {
                        let h = c.hash(raw);
                        (h, c.get(redactor, raw, h))
                    }
                };
                if let Some(hit) = hit {
                    redactions.extend(hit.redactions.iter().cloned());
                    if let Some(enc) = &hit.redacted {
                        splice(enc, &mut out);
                    }
                } else {
                    let (enc, found) = redact_json_string(redactor, quoted, escaped, capture)?;
                    let entry = c.put(redactor, raw, h, enc.as_deref(), found.clone());
                    if let Some(l) = looked {
                        l.entry = Some(entry);
                    }
                    redactions.extend(found);
                    if let Some(enc) = enc {
                        splice(&enc, &mut out);
                    }
                }
            }
            None => {
                let (enc, found) = redact_json_string(redactor, quoted, escaped, capture)?;
                redactions.extend(found);
                if let Some(enc) = enc {
                    splice(&enc, &mut out);
                }
            }
        }
    }
    if let Some(o) = &mut out {
        o.push_str(&text[copied..]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
