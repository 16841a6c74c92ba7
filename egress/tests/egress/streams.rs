//! Happy paths per provider: bytes the client gets equal what the upstream sent, the real key
//! is injected, the agent token never forwarded, and usage metered exactly.

use clawgate_egress::Usage;
use serde_json::json;

use crate::fake::{self, usage};
use crate::harness::*;

fn anthropic_usage() -> Usage {
    let (input, write, read, output) = usage::ANTHROPIC;
    Usage {
        input,
        output,
        cache_read: read,
        cache_write: write,
        cache_write_1h: 0,
    }
}

/// No header value and no part of the URI the upstream got holds the agent's token.
fn assert_token_not_forwarded(seen: &fake::Seen) {
    for (name, v) in &seen.headers {
        let v = String::from_utf8_lossy(v.as_bytes());
        assert!(
            !v.contains(TOKEN_A) && !v.contains(TOKEN_B),
            "agent token forwarded in {name}"
        );
    }
    assert!(!seen.uri.contains(TOKEN_A) && !seen.uri.contains(TOKEN_B));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stream_passes_bytes_through_and_meters_cumulative_usage() {
    let h = start().await;
    let body = json!({"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}).to_string();
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[
                ("x-api-key", TOKEN_A),
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", "prompt-caching-2024-07-31"),
                ("content-type", "application/json"),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/event-stream");
    assert_eq!(r.headers["x-request-id"], "req_fake_123");
    let seen = h.fake.last();
    assert_eq!(r.body, seen.sent, "client bytes differ from upstream bytes");
    assert_eq!(seen.uri, "/v1/messages");
    assert_eq!(
        seen.body,
        body.as_bytes(),
        "a clean body is forwarded byte for byte"
    );
    assert_eq!(seen.headers["x-api-key"], REAL_ANTHROPIC);
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert_eq!(seen.headers["anthropic-beta"], "prompt-caching-2024-07-31");
    assert_token_not_forwarded(&seen);

    let all = h.buckets().await;
    let b = bucket(&all, "alpha", "anthropic");
    assert_eq!(b.usage, anthropic_usage());
    assert_eq!(
        b.model, "claude-sonnet-4-5-20250929",
        "the response's model wins"
    );
    assert_eq!((b.requests, b.incomplete), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_bearer_token_non_streamed() {
    let h = start().await;
    let bearer = format!("Bearer {TOKEN_B}");
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[
                ("authorization", &bearer),
                ("anthropic-version", "2026-10-21"),
            ],
            r#"{"model":"claude-haiku","max_tokens":5,"messages":[]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.fake.last();
    assert_eq!(r.body, seen.sent);
    assert_eq!(r.headers["content-length"], seen.sent.len().to_string());
    assert_eq!(seen.headers["x-api-key"], REAL_ANTHROPIC);
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.headers["anthropic-version"], "2026-10-21");
    assert_token_not_forwarded(&seen);
    let all = h.buckets().await;
    assert_eq!(bucket(&all, "beta", "anthropic").usage, anthropic_usage());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_chat_stream_injects_include_usage_and_strips_the_extra_chunk() {
    let h = start().await;
    let bearer = format!("Bearer {TOKEN_A}");
    let r = h
        .call(
            "POST",
            "/openai/v1/chat/completions",
            &[("authorization", &bearer), ("openai-organization", "org-1")],
            r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.fake.last();
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {REAL_OPENAI}")
    );
    assert_eq!(seen.headers["openai-organization"], "org-1");
    assert_token_not_forwarded(&seen);
    // What the client gets: exactly the upstream's bytes minus the usage-only chunk.
    let events = fake::chat_events(true);
    let want: String = events
        .iter()
        .filter(|e| !e.contains("\"choices\":[]"))
        .cloned()
        .collect();
    assert_eq!(seen.sent, events.concat().as_bytes());
    assert_eq!(String::from_utf8_lossy(&r.body), want);
    assert!(r.headers.get("content-length").is_none());

    let (prompt, cached, completion) = usage::CHAT;
    let all = h.buckets().await;
    let b = bucket(&all, "alpha", "openai");
    assert_eq!(
        b.usage,
        Usage {
            input: prompt - cached,
            output: completion,
            cache_read: cached,
            cache_write: 0,
            cache_write_1h: 0
        }
    );
    assert_eq!(b.model, "gpt-4o-2024-08-06");
    assert_eq!(b.incomplete, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_chat_stream_that_asked_for_usage_gets_it_unchanged() {
    let h = start().await;
    let bearer = format!("Bearer {TOKEN_A}");
    let body =
        r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let r = h
        .call(
            "POST",
            "/openai/v1/chat/completions",
            &[("authorization", &bearer)],
            body,
        )
        .await;
    let seen = h.fake.last();
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(r.body, seen.sent);
    assert!(String::from_utf8_lossy(&r.body).contains("\"choices\":[]"));
    let all = h.buckets().await;
    assert_eq!(bucket(&all, "alpha", "openai").usage.output, usage::CHAT.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_responses_stream_and_json_are_metered() {
    let h = start().await;
    let bearer = format!("Bearer {TOKEN_A}");
    let r = h
        .call(
            "POST",
            "/openai/v1/responses",
            &[("authorization", &bearer)],
            r#"{"model":"gpt-5","stream":true,"input":"hi"}"#,
        )
        .await;
    assert_eq!(r.body, h.fake.last().sent);
    let r2 = h
        .call(
            "POST",
            "/openai/v1/responses",
            &[("authorization", &bearer)],
            r#"{"model":"gpt-5","input":"hi"}"#,
        )
        .await;
    assert_eq!(r2.body, h.fake.last().sent);
    let (input, cached, output) = usage::RESPONSES;
    let all = h.buckets().await;
    let b = bucket(&all, "alpha", "openai");
    assert_eq!(
        b.usage,
        Usage {
            input: 2 * (input - cached),
            output: 2 * output,
            cache_read: 2 * cached,
            cache_write: 0,
            cache_write_1h: 0
        }
    );
    assert_eq!((b.requests, b.incomplete), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_sse_json_array_and_plain_json_are_metered_with_key_param() {
    let h = start().await;
    let (prompt, cached, cand, thoughts) = usage::GEMINI;
    let per = Usage {
        input: prompt - cached,
        output: cand + thoughts,
        cache_read: cached,
        cache_write: 0,
        cache_write_1h: 0,
    };
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    // alt=sse, token in ?key=
    let r = h
        .call(
            "POST",
            &format!(
                "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={TOKEN_A}"
            ),
            &[],
            body,
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.fake.last();
    assert_eq!(r.body, seen.sent);
    assert_eq!(
        seen.uri,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(seen.headers["x-goog-api-key"], REAL_GEMINI);
    assert_token_not_forwarded(&seen);
    // The JSON-array stream, token in x-goog-api-key.
    let r = h
        .call(
            "POST",
            "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            &[("x-goog-api-key", TOKEN_A)],
            body,
        )
        .await;
    assert_eq!(r.body, h.fake.last().sent);
    assert!(r.body.starts_with(b"["));
    // Non-streamed.
    let r = h
        .call(
            "POST",
            "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
            &[("x-goog-api-key", TOKEN_A)],
            body,
        )
        .await;
    assert_eq!(r.body, h.fake.last().sent);
    let all = h.buckets().await;
    let b = bucket(&all, "alpha", "gemini");
    assert_eq!(
        b.usage,
        Usage {
            input: 3 * per.input,
            output: 3 * per.output,
            cache_read: 3 * per.cache_read,
            cache_write: 0,
            cache_write_1h: 0
        }
    );
    assert_eq!(b.model, "gemini-2.5-flash");
    assert_eq!((b.requests, b.incomplete), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openrouter_keeps_its_base_path_and_usage_chunk() {
    let h = start().await;
    let bearer = format!("Bearer {TOKEN_A}");
    let r = h
        .call(
            "POST",
            "/openrouter/v1/chat/completions",
            &[
                ("authorization", &bearer),
                ("http-referer", "https://example.test"),
            ],
            r#"{"model":"anthropic/claude-3.5","stream":true,"messages":[]}"#,
        )
        .await;
    let seen = h.fake.last();
    assert_eq!(seen.uri, "/api/v1/chat/completions");
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {REAL_OPENROUTER}")
    );
    assert_eq!(seen.headers["http-referer"], "https://example.test");
    // OpenRouter always sends usage; the client keeps the chunk.
    assert_eq!(r.body, seen.sent);
    let r = h
        .call(
            "POST",
            "/openrouter/v1/chat/completions",
            &[("authorization", &bearer)],
            r#"{"model":"anthropic/claude-3.5","messages":[]}"#,
        )
        .await;
    assert_eq!(r.body, h.fake.last().sent);
    let all = h.buckets().await;
    let b = bucket(&all, "alpha", "openrouter");
    assert_eq!(b.usage.cache_read, 2 * usage::CHAT.1);
    assert_eq!(b.requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_requests_and_queries_pass_through() {
    let h = start().await;
    let bearer = format!("Bearer {TOKEN_A}");
    let r = h
        .call(
            "GET",
            "/openai/v1/models?limit=5&order=desc",
            &[("authorization", &bearer)],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = h.fake.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/v1/models?limit=5&order=desc");
    assert!(seen.body.is_empty());
    let all = h.buckets().await;
    let b = bucket(&all, "alpha", "openai");
    assert_eq!((b.requests, b.incomplete, b.usage.total()), (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    let h = start().await;
    let req = format!(
        "POST /anthropic/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {TOKEN_A}\r\n\
         Connection: close, x-hop-request\r\nx-hop-request: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
         Proxy-Authorization: Basic eDp5\r\nUpgrade: websocket\r\nx-fake-hop: 1\r\nx-end-to-end: kept\r\n\
         Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{{\"model\":\"x\"}}"
    );
    let out = h.raw(req.as_bytes()).await;
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    let head = text.split("\r\n\r\n").next().unwrap();
    for gone in ["x-hop-response", "keep-alive", "proxy-authenticate"] {
        assert!(!head.contains(gone), "{gone} reached the client: {head}");
    }
    assert!(head.contains("x-request-id: req_fake_123"));
    let seen = h.fake.last();
    for gone in [
        "x-hop-request",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
        "connection",
    ] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(seen.headers["x-end-to-end"], "kept");
    assert_eq!(seen.headers["content-length"], "13");
    assert_eq!(seen.headers["host"], h.fake.addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_tokens_and_latency() {
    let h = start().await;
    h.call(
        "POST",
        "/anthropic/v1/messages",
        &[("x-api-key", TOKEN_A)],
        r#"{"model":"m"}"#,
    )
    .await;
    h.call(
        "POST",
        "/anthropic/v1/messages",
        &[("x-api-key", "wrong")],
        r#"{"model":"m"}"#,
    )
    .await;
    h.store.flush().await.unwrap();
    let m = h.egress.metrics().encode();
    assert!(
        m.contains(r#"clawgate_egress_requests_total{route="anthropic",status="200"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"clawgate_egress_requests_total{route="anthropic",status="401"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"clawgate_egress_tokens_total{route="anthropic",kind="cache_read"} 3000"#),
        "{m}"
    );
    assert!(
        m.contains("clawgate_egress_added_latency_seconds_count{route=\"anthropic\"} 1"),
        "{m}"
    );
    assert!(!m.contains(TOKEN_A) && !m.contains(REAL_ANTHROPIC));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_proxied_answers_are_identical() {
    let h = start().await;
    let body = r#"{"model":"claude","stream":true,"messages":[]}"#;
    let direct = h.direct("/v1/messages", &[], body).await;
    let proxied = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            body,
        )
        .await;
    assert_eq!(direct.status, proxied.status);
    assert_eq!(direct.body, proxied.body);
}
