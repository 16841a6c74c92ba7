//! Token usage, read from a side copy of each response.
//!
//! Normalised buckets (`gateway-anchors-usage.md` §2.6):
//!
//! | bucket | Anthropic | OpenAI chat / OpenRouter | OpenAI Responses | Gemini |
//! |---|---|---|---|---|
//! | input (uncached) | `input_tokens` | `prompt_tokens − cached_tokens − cache_write_tokens` | `input_tokens − cached_tokens − cache_write_tokens` | `promptTokenCount − cachedContentTokenCount + toolUsePromptTokenCount` |
//! | cache_read | `cache_read_input_tokens` | `prompt_tokens_details.cached_tokens` | `input_tokens_details.cached_tokens` | `cachedContentTokenCount` |
//! | cache_write | `cache_creation_input_tokens` | `prompt_tokens_details.cache_write_tokens` | `input_tokens_details.cache_write_tokens` | — |
//! | of which 1-hour | `cache_creation.ephemeral_1h_input_tokens` | — | — | — |
//! | output | `output_tokens` | `completion_tokens` | `output_tokens` | `candidatesTokenCount + thoughtsTokenCount` |
//!
//! Where usage appears: Anthropic `message_start.message.usage`, then every `message_delta.usage`
//! (cumulative: each present field overwrites, a missing one keeps its value); OpenAI chat the
//! chunk carrying `usage` (with `stream_options.include_usage`); OpenAI Responses the terminal
//! `response.completed` / `.incomplete` / `.failed` event's `response.usage`; Gemini every
//! `usageMetadata` (running totals: the last wins), in `alt=sse` events or the elements of the
//! JSON-array stream; and the top-level `usage` / `usageMetadata` of non-streamed JSON.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::Value;

use crate::config::Provider;
use crate::sse::{EventSplitter, Pushed, parse_event};

/// Tokens of one response (or a bucket), normalised across providers (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens (reasoning included).
    pub output: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write: u64,
    /// Of `cache_write`, the tokens written with a one-hour lifetime (Anthropic's
    /// `cache_creation.ephemeral_1h_input_tokens`), which cost more than five-minute writes.
    /// Already counted in `cache_write`: never added to totals a second time.
    pub cache_write_1h: u64,
}

impl Usage {
    /// Every kind added up (what budgets count).
    pub fn total(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    /// Adds `other` kind by kind (saturating): buckets and day totals.
    pub fn accumulate(&mut self, other: &Usage) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        self.cache_write_1h = self.cache_write_1h.saturating_add(other.cache_write_1h);
    }
}

/// What a response's side copy told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The usage (the last seen; zero if none).
    pub usage: Usage,
    /// The model the response named, if any.
    pub model: Option<String>,
    /// Whether any usage object was seen.
    pub usage_seen: bool,
    /// Whether the side copy was abandoned (an event or body larger than the buffer cap).
    pub overflow: bool,
    /// The response was a stream (SSE).
    pub streamed: bool,
    /// The response reached its logical end: a stream's terminal event (`message_stop`,
    /// `[DONE]`, `response.completed`/`.incomplete`/`.failed`, a Gemini candidate with a
    /// `finishReason`), or a JSON body that parsed whole. A client may close right after it,
    /// before the upstream's end of body: the usage is still complete. A stream that ends
    /// cleanly without it was cut short.
    pub finished: bool,
}

fn num(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// Folds usage objects into a running [`Outcome`].
#[derive(Debug)]
struct Acc {
    provider: Provider,
    out: Outcome,
}

impl Acc {
    fn set_model(&mut self, m: Option<&Value>) {
        if let Some(m) = m.and_then(Value::as_str)
            && !m.is_empty()
            && self.out.model.as_deref() != Some(m)
        {
            self.out.model = Some(m.to_owned());
        }
    }

    /// One JSON object: an SSE event's data, an element of a JSON-array stream, or a whole
    /// non-streamed body.
    fn on_json(&mut self, v: &Value) {
        match self.provider {
            Provider::Anthropic => self.anthropic(v),
            Provider::OpenAi | Provider::OpenRouter => self.openai(v),
            Provider::Gemini => self.gemini(v),
        }
    }

    fn anthropic(&mut self, v: &Value) {
        let (usage, model) = match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = v.get("message");
                (
                    m.and_then(|m| m.get("usage")),
                    m.and_then(|m| m.get("model")),
                )
            }
            _ => (v.get("usage"), v.get("model")),
        };
        self.set_model(model);
        let Some(u) = usage.filter(|u| u.is_object()) else {
            return;
        };
        // Cumulative: overwrite each present field, keep the others (never add).
        let o = &mut self.out.usage;
        if let Some(n) = num(u, "input_tokens") {
            o.input = n;
        }
        if let Some(n) = num(u, "output_tokens") {
            o.output = n;
        }
        if let Some(n) = num(u, "cache_read_input_tokens") {
            o.cache_read = n;
        }
        if let Some(n) = num(u, "cache_creation_input_tokens") {
            o.cache_write = n;
        }
        if let Some(n) = u
            .get("cache_creation")
            .and_then(|c| num(c, "ephemeral_1h_input_tokens"))
        {
            o.cache_write_1h = n;
        }
        self.out.usage_seen = true;
    }

    fn openai(&mut self, v: &Value) {
        let response = v.get("response").filter(|r| r.is_object());
        self.set_model(
            v.get("model")
                .or_else(|| response.and_then(|r| r.get("model"))),
        );
        let usage = v.get("usage").filter(|u| u.is_object()).or_else(|| {
            response
                .and_then(|r| r.get("usage"))
                .filter(|u| u.is_object())
        });
        let Some(u) = usage else {
            return;
        };
        let (prompt, details, output) = if u.get("prompt_tokens").is_some() {
            (
                num(u, "prompt_tokens"),
                u.get("prompt_tokens_details"),
                num(u, "completion_tokens"),
            )
        } else {
            (
                num(u, "input_tokens"),
                u.get("input_tokens_details"),
                num(u, "output_tokens"),
            )
        };
        let cached = details.and_then(|d| num(d, "cached_tokens")).unwrap_or(0);
        let written = details
            .and_then(|d| num(d, "cache_write_tokens"))
            .unwrap_or(0);
        // The last usage wins (it is the final, complete count).
        self.out.usage = Usage {
            input: prompt
                .unwrap_or(0)
                .saturating_sub(cached)
                .saturating_sub(written),
            output: output.unwrap_or(0),
            cache_read: cached,
            cache_write: written,
            cache_write_1h: 0,
        };
        self.out.usage_seen = true;
    }

    fn gemini(&mut self, v: &Value) {
        self.set_model(v.get("modelVersion"));
        let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) else {
            return;
        };
        let cached = num(u, "cachedContentTokenCount").unwrap_or(0);
        self.out.usage = Usage {
            input: num(u, "promptTokenCount")
                .unwrap_or(0)
                .saturating_sub(cached)
                .saturating_add(num(u, "toolUsePromptTokenCount").unwrap_or(0)),
            output: num(u, "candidatesTokenCount")
                .unwrap_or(0)
                .saturating_add(num(u, "thoughtsTokenCount").unwrap_or(0)),
            cache_read: cached,
            cache_write: 0,
            cache_write_1h: 0,
        };
        self.out.usage_seen = true;
    }
}

#[derive(Debug)]
enum Framing {
    Sse(EventSplitter),
    Json(Vec<u8>),
    Off,
}

/// The side parser of one response. In pass-through mode it is [`Tap::feed`] the bytes the
/// client is sent; in filter mode (OpenAI chat with an injected `include_usage`) the bytes go
/// through [`Tap::filter`], which also drops the usage-only chunk the client did not ask for.
#[derive(Debug)]
pub(crate) struct Tap {
    framing: Framing,
    acc: Acc,
    cap: usize,
    strip_usage_chunk: bool,
}

impl Tap {
    /// A tap for a response of `provider`; `sse` from its content type.
    pub(crate) fn new(provider: Provider, sse: bool, cap: usize, strip_usage_chunk: bool) -> Tap {
        Tap {
            framing: if sse {
                Framing::Sse(EventSplitter::new(cap))
            } else {
                Framing::Json(Vec::new())
            },
            acc: Acc {
                provider,
                out: Outcome {
                    streamed: sse,
                    ..Outcome::default()
                },
            },
            cap,
            strip_usage_chunk: strip_usage_chunk && sse,
        }
    }

    /// A tap that cannot read the response (e.g. a compressed one): usage is marked incomplete.
    pub(crate) fn off(provider: Provider) -> Tap {
        let mut t = Tap::new(provider, false, 0, false);
        t.framing = Framing::Off;
        t.acc.out.overflow = true;
        t
    }

    /// Whether bytes must go through [`Tap::filter`] (before the client sees them) rather than
    /// [`Tap::feed`].
    pub(crate) fn filters(&self) -> bool {
        self.strip_usage_chunk
    }

    /// Sees bytes the client was sent.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        match &mut self.framing {
            Framing::Sse(s) => {
                if let Pushed::Overflow(_) = s.push_checked(data) {
                    self.acc.out.overflow = true;
                    self.framing = Framing::Off;
                    return;
                }
                while let Some(ev) = s.next_event() {
                    on_event(&mut self.acc, &ev, false);
                }
            }
            Framing::Json(buf) => {
                if buf.len() + data.len() > self.cap {
                    self.acc.out.overflow = true;
                    self.framing = Framing::Off;
                } else {
                    buf.extend_from_slice(data);
                }
            }
            Framing::Off => {}
        }
    }

    /// Filter mode: takes upstream bytes, appends what the client should get to `out` (whole
    /// events, exact bytes), drops the usage-only chunk.
    pub(crate) fn filter(&mut self, data: Bytes, out: &mut VecDeque<Bytes>) {
        let Framing::Sse(s) = &mut self.framing else {
            out.push_back(data);
            return;
        };
        if let Pushed::Overflow(held) = s.push_checked(&data) {
            // Give up filtering: forward what was held, untouched.
            self.acc.out.overflow = true;
            self.framing = Framing::Off;
            out.push_back(held);
            return;
        }
        while let Some(ev) = s.next_event() {
            if !on_event(&mut self.acc, &ev, true) {
                out.push_back(ev);
            }
        }
    }

    /// Filter mode, end of stream: what is left (an event without its blank line).
    pub(crate) fn filter_rest(&mut self, out: &mut VecDeque<Bytes>) {
        if let Framing::Sse(s) = &mut self.framing {
            let rest = s.take_rest();
            if !rest.is_empty() {
                on_event(&mut self.acc, &rest, false);
                out.push_back(rest);
            }
        }
    }

    /// Everything seen. A JSON body is parsed here (call it off the I/O path).
    pub(crate) fn finish(mut self) -> Outcome {
        match std::mem::replace(&mut self.framing, Framing::Off) {
            Framing::Sse(mut s) => {
                // An upstream that ends without the last blank line, or a cut stream.
                let rest = s.take_rest();
                if !rest.is_empty() {
                    on_event(&mut self.acc, &rest, false);
                }
            }
            Framing::Json(buf) => json_body(&mut self.acc, &buf),
            Framing::Off => {}
        }
        self.acc.out
    }
}

/// One raw SSE event. Returns true when it is the usage-only chunk to drop (`strip`).
fn on_event(acc: &mut Acc, raw: &[u8], strip: bool) -> bool {
    let ev = parse_event(raw);
    let Some(data) = ev.data else {
        return false;
    };
    if !acc.out.finished && is_terminal(&data) {
        acc.out.finished = true;
    }
    let interesting = memchr::memmem::find(&data, b"usage").is_some()
        || (acc.out.model.is_none() && memchr::memmem::find(&data, b"model").is_some());
    if !interesting {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&data) else {
        return false;
    };
    acc.on_json(&v);
    strip && is_usage_only_chunk(&v)
}

/// The chunk `stream_options.include_usage` adds: `choices: []` and a `usage` object. (A usage
/// riding on a chunk with choices is left alone: it carries content.)
fn is_usage_only_chunk(v: &Value) -> bool {
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.get("usage").is_some_and(Value::is_object)
}

/// A non-streamed body, or Gemini's JSON-array stream (whole or cut short).
/// Whether an SSE event's data is its stream's terminal event.
fn is_terminal(data: &[u8]) -> bool {
    if data.trim_ascii() == b"[DONE]" {
        return true;
    }
    const MARKERS: [&[u8]; 5] = [
        b"message_stop",
        b"response.completed",
        b"response.incomplete",
        b"response.failed",
        b"finishReason",
    ];
    // Parsed only when a marker appears (model text could contain one; the type decides).
    if !MARKERS
        .iter()
        .any(|m| memchr::memmem::find(data, m).is_some())
    {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    match v.get("type").and_then(Value::as_str) {
        Some("message_stop" | "response.completed" | "response.incomplete" | "response.failed") => {
            true
        }
        _ => v
            .get("candidates")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("finishReason").is_some_and(|f| !f.is_null()))
            }),
    }
}

fn json_body(acc: &mut Acc, buf: &[u8]) {
    match serde_json::from_slice::<Value>(buf) {
        Ok(Value::Array(items)) => {
            acc.out.finished = true;
            items.iter().for_each(|v| acc.on_json(v));
        }
        Ok(v) => {
            acc.out.finished = true;
            acc.on_json(&v);
        }
        Err(_) => {
            for item in complete_array_objects(buf) {
                if let Ok(v) = serde_json::from_slice::<Value>(item) {
                    acc.on_json(&v);
                }
            }
        }
    }
}

/// The complete objects at the top level of a JSON array that was cut short.
fn complete_array_objects(buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    let mut start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                if depth == 1 && b == b'{' {
                    start = i;
                }
                depth += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 1 && b == b'}' {
                    out.push(&buf[start..=i]);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
