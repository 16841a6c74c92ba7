//! A fake LLM upstream on 127.0.0.1 that speaks the real wire formats: Anthropic messages,
//! OpenAI chat completions and Responses, Gemini (`alt=sse` and the JSON-array stream) and
//! OpenRouter (under `/api`), streamed and not, with realistic usage including cache fields.
//! Streams are cut into small pieces at arbitrary byte offsets (mid-event, mid-line) and written
//! with small delays.
//!
//! Request headers steer it:
//! * `x-fake-status: 429|500|…`: answer that status with the provider's error body;
//! * `x-fake-reset-after-event: K`: send K events (and half of the next), then reset;
//! * `x-fake-delay-ms: N`: delay between pieces (default 1);
//! * `x-fake-head-delay-ms: N`: wait before answering at all (a long time to first token);
//! * `x-fake-hop: 1`: add hop-by-hop headers to the response.
//!
//! It records every request it got ([`Seen`]) and every body it sent, to compare.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Usage the fake reports, per API (what the proxy must meter).
pub mod usage {
    /// Anthropic: input, cache_creation (write), cache_read, output (final cumulative).
    pub const ANTHROPIC: (u64, u64, u64, u64) = (25, 1000, 3000, 42);
    /// Anthropic first `message_delta` output (cumulative).
    pub const ANTHROPIC_FIRST_DELTA_OUTPUT: u64 = 10;
    /// OpenAI chat: prompt, cached, completion.
    pub const CHAT: (u64, u64, u64) = (2000, 1536, 77);
    /// OpenAI Responses: input, cached, output.
    pub const RESPONSES: (u64, u64, u64) = (1200, 1024, 300);
    /// Gemini final: prompt, cached, candidates, thoughts.
    pub const GEMINI: (u64, u64, u64, u64) = (500, 256, 40, 10);
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The body the fake meant to send back (whole, even when it reset).
    pub sent: Bytes,
}

/// The running fake.
#[derive(Clone)]
pub struct Fake {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    /// Starts on an ephemeral loopback port.
    pub async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let seen = s2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(answer(req, seen).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fake { addr, seen }
    }

    /// Base URL (`http://127.0.0.1:port`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the fake got no request")
    }

    /// Forgets the requests seen.
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// A body fed from a channel (so the fake can write in pieces, pause, and reset).
pub struct ChanBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Builds the events of one streamed answer, or the body of a non-streamed one.
enum Plan {
    Sse(Vec<String>),
    JsonArray(Vec<String>),
    Json(String),
}

async fn answer(req: Request<Incoming>, seen: Arc<Mutex<Vec<Seen>>>) -> Response<ChanBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let req_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stream = req_json.get("stream").and_then(Value::as_bool) == Some(true);
    let status = header(&parts.headers, "x-fake-status")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let reset_after =
        header(&parts.headers, "x-fake-reset-after-event").and_then(|s| s.parse::<usize>().ok());
    let delay = header(&parts.headers, "x-fake-delay-ms")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1);
    let hop = header(&parts.headers, "x-fake-hop").is_some();

    let plan = if status != 200 {
        Plan::Json(error_body(&path, status))
    } else if path.ends_with("/v1/messages") {
        if stream {
            Plan::Sse(anthropic_events())
        } else {
            Plan::Json(anthropic_json())
        }
    } else if path.ends_with("/chat/completions") {
        let include = req_json
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        if stream {
            Plan::Sse(chat_events(include))
        } else {
            Plan::Json(chat_json())
        }
    } else if path.ends_with("/v1/responses") {
        if stream {
            Plan::Sse(responses_events())
        } else {
            Plan::Json(responses_json())
        }
    } else if path.contains(":streamGenerateContent") {
        if parts.uri.query().is_some_and(|q| q.contains("alt=sse")) {
            Plan::Sse(
                gemini_chunks()
                    .into_iter()
                    .map(|c| format!("data: {c}\r\n\r\n"))
                    .collect(),
            )
        } else {
            Plan::JsonArray(gemini_chunks())
        }
    } else if path.contains(":generateContent") {
        Plan::Json(gemini_chunks().pop().unwrap_or_default())
    } else if path.starts_with("/echo") {
        Plan::Json(String::from_utf8_lossy(&body).into_owned())
    } else {
        Plan::Json(json!({"object": "list", "data": []}).to_string())
    };

    let (content_type, events): (&str, Vec<String>) = match plan {
        Plan::Sse(e) => ("text/event-stream", e),
        Plan::JsonArray(items) => {
            let n = items.len();
            let mut v = Vec::new();
            for (i, it) in items.into_iter().enumerate() {
                let pre = if i == 0 { "[" } else { "\n," };
                let post = if i + 1 == n { "]" } else { "" };
                v.push(format!("{pre}{it}{post}"));
            }
            ("application/json", v)
        }
        Plan::Json(b) => ("application/json", vec![b]),
    };
    let full: String = events.concat();
    let (send_len, reset) = match reset_after {
        Some(k) if k < events.len() => {
            let head: usize = events[..k].iter().map(String::len).sum();
            (head + events[k].len() / 2, true)
        }
        _ => (full.len(), false),
    };
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri,
        headers: parts.headers.clone(),
        body: body.clone(),
        sent: Bytes::from(full.clone()),
    });

    if let Some(ms) =
        header(&parts.headers, "x-fake-head-delay-ms").and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let (tx, rx) = mpsc::channel(64);
    let streamed = content_type == "text/event-stream" || events.len() > 1;
    let bytes = Bytes::from(full);
    tokio::spawn(async move {
        let to_send = bytes.slice(..send_len);
        if streamed {
            // Pieces at arbitrary offsets: mid-event, mid-line, mid-`\r\n`.
            let mut pos = 0;
            let mut i = 0usize;
            while pos < to_send.len() {
                let step = [23usize, 61, 7, 113, 40][i % 5];
                let end = (pos + step).min(to_send.len());
                if tx.send(Ok(to_send.slice(pos..end))).await.is_err() {
                    return;
                }
                pos = end;
                i += 1;
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        } else if tx.send(Ok(to_send)).await.is_err() {
            return;
        }
        if reset {
            let _ = tx
                .send(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fake reset",
                )))
                .await;
        }
    });

    let mut r = Response::new(ChanBody(rx));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    h.insert("x-request-id", HeaderValue::from_static("req_fake_123"));
    if !streamed && !reset {
        h.insert("content-length", HeaderValue::from(send_len));
    }
    if hop {
        h.insert("connection", HeaderValue::from_static("x-hop-response"));
        h.insert("x-hop-response", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
    }
    r
}

fn error_body(path: &str, status: u16) -> String {
    if path.ends_with("/v1/messages") {
        json!({"type":"error","error":{"type":"rate_limit_error","message":format!("fake {status}")}}).to_string()
    } else if path.contains("models/") {
        json!({"error":{"code":status,"message":"fake","status":"RESOURCE_EXHAUSTED"}}).to_string()
    } else {
        json!({"error":{"message":format!("fake {status}"),"type":"server_error","param":null,"code":null}}).to_string()
    }
}

/// Anthropic messages stream: cumulative `message_delta` usage, pings, cache fields.
pub fn anthropic_events() -> Vec<String> {
    let (input, write, read, output) = usage::ANTHROPIC;
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    vec![
        ev(
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"usage":{"input_tokens":input,"cache_creation_input_tokens":write,"cache_read_input_tokens":read,"output_tokens":1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        ev("ping", json!({"type":"ping"})),
        ev(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}),
        ),
        ev(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":usage::ANTHROPIC_FIRST_DELTA_OUTPUT}}),
        ),
        ": a comment line the client must still receive\n\n".to_owned(),
        ev(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", world. The usage word appears in text."}}),
        ),
        ev(
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        ),
        ev(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":output}}),
        ),
        ev("message_stop", json!({"type":"message_stop"})),
    ]
}

/// Anthropic non-streamed message.
pub fn anthropic_json() -> String {
    let (input, write, read, output) = usage::ANTHROPIC;
    json!({"id":"msg_02","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":input,"cache_creation_input_tokens":write,"cache_read_input_tokens":read,"output_tokens":output}}).to_string()
}

fn chat_usage() -> Value {
    let (prompt, cached, completion) = usage::CHAT;
    json!({"prompt_tokens":prompt,"completion_tokens":completion,"total_tokens":prompt+completion,"prompt_tokens_details":{"cached_tokens":cached,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}})
}

/// OpenAI chat completion chunks; the usage-only chunk when `include_usage` was asked.
pub fn chat_events(include_usage: bool) -> Vec<String> {
    let usage = if include_usage {
        Some(Value::Null)
    } else {
        None
    };
    let chunk = |choices: Value, u: Option<Value>| {
        let mut c = json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","choices":choices});
        if let Some(u) = u {
            c["usage"] = u;
        }
        format!("data: {c}\n\n")
    };
    let mut v = vec![
        chunk(
            json!([{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]),
            usage.clone(),
        ),
        chunk(
            json!([{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]),
            usage.clone(),
        ),
        chunk(
            json!([{"index":0,"delta":{"content":"lo"},"finish_reason":null}]),
            usage.clone(),
        ),
        chunk(
            json!([{"index":0,"delta":{},"finish_reason":"stop"}]),
            usage,
        ),
    ];
    if include_usage {
        v.push(chunk(json!([]), Some(chat_usage())));
    }
    v.push("data: [DONE]\n\n".to_owned());
    v
}

/// OpenAI chat non-streamed.
pub fn chat_json() -> String {
    json!({"id":"chatcmpl-2","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":chat_usage()}).to_string()
}

fn responses_usage() -> Value {
    let (input, cached, output) = usage::RESPONSES;
    json!({"input_tokens":input,"input_tokens_details":{"cached_tokens":cached},"output_tokens":output,"output_tokens_details":{"reasoning_tokens":200},"total_tokens":input+output})
}

/// OpenAI Responses stream.
pub fn responses_events() -> Vec<String> {
    let ev = |name: &str, data: Value| format!("event: {name}\r\ndata: {data}\r\n\r\n");
    vec![
        ev(
            "response.created",
            json!({"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-5-2025-08-07","usage":null}}),
        ),
        ev(
            "response.output_text.delta",
            json!({"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}),
        ),
        ev(
            "response.completed",
            json!({"type":"response.completed","sequence_number":2,"response":{"id":"resp_1","object":"response","status":"completed","model":"gpt-5-2025-08-07","usage":responses_usage()}}),
        ),
    ]
}

/// OpenAI Responses non-streamed.
pub fn responses_json() -> String {
    json!({"id":"resp_2","object":"response","status":"completed","model":"gpt-5-2025-08-07","output":[],"usage":responses_usage()}).to_string()
}

/// Gemini chunks: running totals, the last (a usage-only chunk) wins.
pub fn gemini_chunks() -> Vec<String> {
    let (prompt, cached, cand, thoughts) = usage::GEMINI;
    let c = |text: Option<&str>, cands: u64, th: u64| {
        let mut v = json!({"usageMetadata":{"promptTokenCount":prompt,"cachedContentTokenCount":cached,"candidatesTokenCount":cands,"thoughtsTokenCount":th,"totalTokenCount":prompt+cands+th},"modelVersion":"gemini-2.5-flash","responseId":"r1"});
        if let Some(t) = text {
            v["candidates"] = json!([{"content":{"parts":[{"text":t}],"role":"model"},"index":0}]);
            if t == "lo" {
                v["candidates"][0]["finishReason"] = json!("STOP");
            }
        }
        v.to_string()
    };
    vec![
        c(Some("Hel"), 3, thoughts),
        c(Some("lo"), 20, thoughts),
        c(None, cand, thoughts),
    ]
}
