//! What the proxy refuses, in each provider's error format, and that nothing refused reaches
//! the upstream.

use clawgate_egress::store::unix_now;
use clawgate_egress::{Provider, Record, Usage};
use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_401_in_each_provider_format() {
    let h = start().await;
    let a = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", "sk-ant-guess")],
            "{}",
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["type"], "error");
    assert_eq!(a.json()["error"]["type"], "authentication_error");
    assert_eq!(a.headers["x-clawgate-error"], "invalid_token");
    let o = h
        .call(
            "POST",
            "/openai/v1/chat/completions",
            &[("authorization", "Bearer nope")],
            "{}",
        )
        .await;
    assert_eq!(o.status, 401);
    assert_eq!(o.json()["error"]["code"], "invalid_api_key");
    let g = h
        .call(
            "POST",
            "/gemini/v1beta/models/g:generateContent?key=nope",
            &[],
            "{}",
        )
        .await;
    assert_eq!(g.status, 401);
    assert_eq!(g.json()["error"]["status"], "UNAUTHENTICATED");
    let missing = h
        .call("POST", "/openrouter/v1/chat/completions", &[], "{}")
        .await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.headers["x-clawgate-error"], "missing_token");
    // Two different tokens: refused even if one is valid.
    let bearer = format!("Bearer {TOKEN_B}");
    let two = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A), ("authorization", &bearer)],
            "{}",
        )
        .await;
    assert_eq!(two.status, 401);
    for r in [&a, &o, &g, &missing, &two] {
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains(TOKEN_A) && !text.contains("sk-ant-guess"));
    }
    assert!(h.fake.seen().is_empty());
    assert!(
        h.buckets().await.is_empty(),
        "refused requests are not metered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_climbing_paths() {
    let h = start().await;
    let r = h
        .call("POST", "/mistral/v1/chat", &[("x-api-key", TOKEN_A)], "{}")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-clawgate-error"], "unknown_route");
    let r = h.call("GET", "/", &[], "").await;
    assert_eq!(r.status, 404);
    let r = h
        .call(
            "POST",
            "/openai/v1/%2e%2e/admin",
            &[("authorization", &format!("Bearer {TOKEN_A}"))],
            "{}",
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(h.fake.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_too_large_are_413_declared_or_not() {
    let h = start_with(|c| c.max_body = 1024).await;
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2000));
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            big.clone(),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["type"], "request_too_large");
    // Chunked (no content-length): the cap still holds.
    let req = format!(
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let out = String::from_utf8_lossy(&h.raw(req.as_bytes()).await).into_owned();
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    // A small gzip that inflates past the cap.
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let r = h
        .call(
            "POST",
            "/gemini/v1beta/models/g:generateContent",
            &[("x-goog-api-key", TOKEN_A), ("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], 413);
    assert!(h.fake.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_cannot_be_checked_are_400_or_415() {
    let h = start().await;
    let bearer = format!("Bearer {TOKEN_A}");
    for (body, what) in [
        (&b"model=gpt&prompt=hi"[..], "form body"),
        (b"{\"messages\":[", "truncated JSON"),
        (b"{\"text\":\"\xc3\x28\"}", "invalid UTF-8"),
        (b"{\"text\":\"\\udc00\"}", "lone surrogate"),
    ] {
        let r = h
            .call(
                "POST",
                "/openai/v1/chat/completions",
                &[("authorization", &bearer)],
                body,
            )
            .await;
        assert_eq!(r.status, 400, "{what}");
        let j: Value = r.json();
        assert_eq!(j["error"]["type"], "invalid_request_error", "{what}");
        assert!(
            j["error"]["message"].as_str().unwrap().contains("Clawgate"),
            "{what}"
        );
        assert_eq!(r.headers["x-clawgate-error"], "invalid_json");
    }
    // Each refusal came after the request's usage marker was started: none is left behind
    // (one would be counted as a request at the next start).
    h.store.flush().await.unwrap();
    assert_eq!(h.store.in_flight().unwrap(), 0);
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A), ("content-encoding", "br")],
            "{}",
        )
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A), ("content-encoding", "gzip")],
            "{\"not\":\"gzip\"}",
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(h.fake.seen().is_empty(), "an unchecked body was forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_budgets_are_429_in_each_provider_format() {
    let h = start_with(|c| c.budgets.default_daily_tokens = Some(1000)).await;
    h.store
        .record(Record {
            agent: "alpha".into(),
            provider: "openai".into(),
            model: "gpt".into(),
            at: unix_now(),
            usage: Usage {
                input: 600,
                output: 400,
                ..Usage::default()
            },
            incomplete: false,
            inflight: None,
        })
        .unwrap();
    h.store.flush().await.unwrap();
    let bearer = format!("Bearer {TOKEN_A}");
    let a = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            "{}",
        )
        .await;
    assert_eq!(a.status, 429);
    assert_eq!(a.json()["type"], "error");
    assert_eq!(a.json()["error"]["type"], "rate_limit_error");
    let msg = a.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("Clawgate") && msg.contains("budget"), "{msg}");
    assert!(a.headers.contains_key("retry-after"));
    let o = h
        .call(
            "POST",
            "/openai/v1/chat/completions",
            &[("authorization", &bearer)],
            "{}",
        )
        .await;
    assert_eq!(o.status, 429);
    assert_eq!(o.json()["error"]["type"], "insufficient_quota");
    assert!(
        o.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Clawgate")
    );
    let g = h
        .call(
            "POST",
            "/gemini/v1beta/models/g:generateContent",
            &[("x-goog-api-key", TOKEN_A)],
            "{}",
        )
        .await;
    assert_eq!(g.status, 429);
    assert_eq!(g.json()["error"]["code"], 429);
    assert_eq!(g.json()["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(h.fake.seen().is_empty());
    // Another agent still gets through; then its own response crosses the budget.
    let ok = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_B)],
            r#"{"model":"m"}"#,
        )
        .await;
    assert_eq!(ok.status, 200);
    h.store.flush().await.unwrap();
    let next = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_B)],
            r#"{"model":"m"}"#,
        )
        .await;
    assert_eq!(next.status, 429, "4,067 tokens used of 1,000");
    let m = h.egress.metrics().encode();
    assert!(
        m.contains("clawgate_egress_budget_refusals_total{route=\"anthropic\"} 2"),
        "{m}"
    );
    let _ = Provider::ALL;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_provider_key_is_503_and_not_forwarded() {
    let h = start().await;
    // Rebuild an egress with no OpenAI key over the same fake.
    let store = h.store.clone();
    let mut config = h.egress.config().clone();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let e = clawgate_egress::Egress::builder(config)
        .tokens(std::sync::Arc::new(
            clawgate_egress::TokenTable::new().with(
                "alpha",
                &clawgate_protocol::SecretString::new(TOKEN_A.into()),
            ),
        ))
        .provider_keys(std::sync::Arc::new(clawgate_egress::StaticKeys::new()))
        .redactor(std::sync::Arc::new(std::sync::Arc::new(redactor())))
        .usage_store(store)
        .build()
        .unwrap();
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/openai/v1/chat/completions")
        .header("authorization", format!("Bearer {TOKEN_A}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let r = e.handle(req).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-clawgate-error"], "no_provider_key");
    assert!(h.fake.seen().is_empty());
}
