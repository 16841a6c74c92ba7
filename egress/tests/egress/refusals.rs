//! What the proxy refuses, in each provider's error format, and that nothing refused reaches
//! the upstream.

use clawgate_egress::store::unix_now;
use clawgate_egress::{PriceUsd, Prices, Provider, Record, Usage};
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
        m.contains("clawgate_egress_budget_refusals_total{route=\"anthropic\",kind=\"tokens\"} 2"),
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

/// The built-in prices, plus OpenRouter's answer model as the fake names it (`gpt-4o-…`, no
/// vendor): an operator entry.
fn prices() -> Prices {
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(
        "openrouter/gpt-4o".to_owned(),
        PriceUsd {
            input: 2.5,
            output: 10.0,
            cache_read: 1.25,
            cache_write: 2.5,
            cache_write_1h: None,
        },
    );
    Prices::builtin().unwrap().with_overrides(&extra).unwrap()
}

/// One provider's generation call and how its own error format looks.
struct Case {
    path: &'static str,
    auth: (&'static str, String),
    body: &'static str,
    /// What the fake's answer costs at the built-in prices, in micro-dollars.
    costs: u64,
    format: fn(&Value) -> bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            path: "/anthropic/v1/messages",
            auth: ("x-api-key", TOKEN_A.to_owned()),
            body: r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[]}"#,
            // claude-sonnet-4-5-20250929: 25 in × 3, 42 out × 15, 3000 read × 0.3, 1000 written × 3.75.
            costs: 75 + 630 + 900 + 3750,
            format: |j| j["type"] == "error" && j["error"]["type"] == "rate_limit_error",
        },
        Case {
            path: "/openai/v1/chat/completions",
            auth: ("authorization", format!("Bearer {TOKEN_A}")),
            body: r#"{"model":"gpt-4o","messages":[]}"#,
            // gpt-4o-2024-08-06: 464 uncached × 2.5, 77 out × 10, 1536 cached × 1.25.
            costs: 1160 + 770 + 1920,
            format: |j| {
                j["error"]["type"] == "insufficient_quota"
                    && j["error"]["code"] == "insufficient_quota"
            },
        },
        Case {
            path: "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
            auth: ("x-goog-api-key", TOKEN_A.to_owned()),
            body: r#"{"contents":[]}"#,
            // 244 uncached × 0.3, 50 out (40 + 10 thinking) × 2.5, 256 cached × 0.03: 205.88.
            costs: 206,
            format: |j| j["error"]["code"] == 429 && j["error"]["status"] == "RESOURCE_EXHAUSTED",
        },
        Case {
            path: "/openrouter/v1/chat/completions",
            auth: ("authorization", format!("Bearer {TOKEN_A}")),
            body: r#"{"model":"openai/gpt-4o","messages":[]}"#,
            costs: 1160 + 770 + 1920,
            format: |j| j["error"]["type"] == "insufficient_quota",
        },
    ]
}

/// A daily cost budget, per provider: the request that crosses it completes (cost is known
/// only after the response), the next is 429 in that provider's format, saying used and limit
/// in USD, that Clawgate set it and when it resets; nothing more reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_budgets_refuse_after_the_crossing_request_in_each_format() {
    for case in cases() {
        let h = start_with(|c| {
            c.prices = prices();
            c.budgets.default_daily_cost_micros = Some(100);
        })
        .await;
        let auth = [(case.auth.0, case.auth.1.as_str())];
        let first = h.call("POST", case.path, &auth, case.body).await;
        assert_eq!(
            first.status, 200,
            "{}: the crossing request completes",
            case.path
        );
        h.store.flush().await.unwrap();
        let cost = h.store.cost_today("alpha", &h.egress.config().prices);
        assert_eq!(cost.micros, case.costs, "{}", case.path);
        assert_eq!(cost.unpriced, None, "{}", case.path);

        let next = h.call("POST", case.path, &auth, case.body).await;
        assert_eq!(next.status, 429, "{}", case.path);
        assert_eq!(next.headers["x-clawgate-error"], "budget_exceeded");
        assert!(next.headers.contains_key("retry-after"));
        let j = next.json();
        assert!((case.format)(&j), "{}: {j}", case.path);
        let msg = j.to_string();
        let used = clawgate_egress::prices::format_usd(case.costs);
        for want in [
            "Clawgate daily cost budget exhausted for agent alpha",
            &format!("${used} of $0.0001 used today"),
            "set by Clawgate",
            "00:00 UTC",
        ] {
            assert!(msg.contains(want), "{}: {want:?} not in {msg}", case.path);
        }
        assert_eq!(h.fake.seen().len(), 1, "{}", case.path);
        // Another agent (the same default budget, nothing spent) still gets through.
        let b = h
            .call(
                "POST",
                case.path,
                &[(case.auth.0, &case.auth.1.replace(TOKEN_A, TOKEN_B))],
                case.body,
            )
            .await;
        assert_eq!(b.status, 200, "{}", case.path);
        let route = case.path.split('/').nth(1).unwrap();
        let m = h.egress.metrics().encode();
        assert!(
            m.contains(&format!(
                "clawgate_egress_budget_refusals_total{{route=\"{route}\",kind=\"cost\"}} 1"
            )),
            "{m}"
        );
    }
}

/// Token and cost budgets side by side: either one refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_budget_still_refuses_under_a_generous_cost_budget() {
    let h = start_with(|c| {
        c.prices = prices();
        c.budgets.default_daily_cost_micros = Some(1_000_000_000);
        c.budgets.default_daily_tokens = Some(100);
    })
    .await;
    let case = &cases()[0];
    let auth = [(case.auth.0, case.auth.1.as_str())];
    assert_eq!(
        h.call("POST", case.path, &auth, case.body).await.status,
        200
    );
    h.store.flush().await.unwrap();
    let next = h.call("POST", case.path, &auth, case.body).await;
    assert_eq!(next.status, 429);
    assert!(
        next.json().to_string().contains("token budget"),
        "{}",
        next.json()
    );
}

/// With a cost budget, a generation request whose model has no price (or names none) is
/// refused before it goes upstream, 403 in the provider's format, telling the operator what to
/// add; without one, the same request passes (its cost is unknown). Usage already recorded
/// today under a model without a price refuses too: today's cost is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpriced_models_are_refused_only_under_a_cost_budget() {
    let h = start_with(|c| {
        c.prices = prices();
        c.budgets
            .per_agent_cost_micros
            .insert("alpha".into(), 1_000_000);
    })
    .await;
    let bearer_a = format!("Bearer {TOKEN_A}");
    // Path, headers, body, and the provider's own error format.
    #[allow(clippy::type_complexity)]
    let unpriced: [(&str, &[(&str, &str)], &str, fn(&Value) -> bool); 5] = [
        (
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            r#"{"model":"claude-next-9","messages":[]}"#,
            |j| j["type"] == "error" && j["error"]["type"] == "permission_error",
        ),
        (
            "/openai/v1/chat/completions",
            &[("authorization", &bearer_a)],
            r#"{"model":"my-finetune","messages":[]}"#,
            |j| {
                j["error"]["type"] == "invalid_request_error"
                    && j["error"]["code"] == "model_unpriced"
            },
        ),
        (
            "/openai/v1/responses",
            &[("authorization", &bearer_a)],
            r#"{"input":"no model named"}"#,
            |j| j["error"]["code"] == "model_unpriced",
        ),
        (
            "/gemini/v1beta/models/gemini-9-ultra:streamGenerateContent?alt=sse",
            &[("x-goog-api-key", TOKEN_A)],
            r#"{"contents":[]}"#,
            |j| j["error"]["code"] == 403 && j["error"]["status"] == "PERMISSION_DENIED",
        ),
        (
            "/openrouter/v1/chat/completions",
            &[("authorization", &bearer_a)],
            r#"{"model":"openrouter/auto","messages":[]}"#,
            |j| j["error"]["code"] == "model_unpriced",
        ),
    ];
    for (path, headers, body, format) in unpriced {
        let r = h.call("POST", path, headers, body).await;
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.headers["x-clawgate-error"], "model_unpriced", "{path}");
        let j = r.json();
        assert!(format(&j), "{path}: {j}");
        let msg = j.to_string();
        assert!(msg.contains("daily cost budget for agent alpha"), "{msg}");
        if !path.contains("responses") {
            assert!(msg.contains("[egress.prices]"), "{msg}");
        }
    }
    let msg = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            r#"{"model":"claude-next-9"}"#,
        )
        .await
        .json()
        .to_string();
    assert!(
        msg.contains(r#"\"anthropic/claude-next-9\" = { input = "#),
        "{msg}"
    );
    assert!(h.fake.seen().is_empty(), "an unpriced request was sent");
    // Requests that generate nothing are not priced.
    let list = h
        .call(
            "GET",
            "/openai/v1/models",
            &[("authorization", &bearer_a)],
            "",
        )
        .await;
    assert_eq!(list.status, 200);
    // No cost budget: the same model passes.
    let b = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_B)],
            r#"{"model":"claude-next-9","messages":[]}"#,
        )
        .await;
    assert_eq!(b.status, 200);
    h.store.flush().await.unwrap();
    let m = h.egress.metrics().encode();
    assert!(
        m.contains(
            "clawgate_egress_budget_refusals_total{route=\"anthropic\",kind=\"unpriced\"} 2"
        ),
        "{m}"
    );

    // Alpha's usage today under a model that has no price (the provider answered with another
    // id than it was asked for, say): its cost is unknown, so even a priced model is refused.
    h.store
        .record(Record {
            agent: "alpha".into(),
            provider: "openai".into(),
            model: "gpt-4o-experimental".into(),
            at: unix_now(),
            usage: Usage {
                input: 10,
                ..Usage::default()
            },
            incomplete: false,
            inflight: None,
        })
        .unwrap();
    h.store.flush().await.unwrap();
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            r#"{"model":"claude-sonnet-4-5","messages":[]}"#,
        )
        .await;
    assert_eq!(r.status, 403);
    let msg = r.json().to_string();
    assert!(
        msg.contains(r#"openai model \"gpt-4o-experimental\", which has no price"#),
        "{msg}"
    );
    assert_eq!(h.fake.seen().len(), 2, "the list and beta's call only");
}

/// An answer naming a model the table does not know (OpenRouter's fake answers `gpt-4o-…`
/// without its vendor) is filed under the request's priced model: the cost stays countable and
/// the agent is not locked out for the day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_under_an_unpriced_id_is_counted_at_the_request_models_price() {
    let h = start_with(|c| {
        c.prices = Prices::builtin().unwrap();
        c.budgets.default_daily_cost_micros = Some(1_000_000);
    })
    .await;
    let bearer = format!("Bearer {TOKEN_A}");
    for _ in 0..2 {
        let r = h
            .call(
                "POST",
                "/openrouter/v1/chat/completions",
                &[("authorization", &bearer)],
                r#"{"model":"openai/gpt-4o","messages":[]}"#,
            )
            .await;
        assert_eq!(r.status, 200);
        h.store.flush().await.unwrap();
    }
    let rows = h.store.buckets(&Default::default()).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].model, "openai/gpt-4o");
    let cost = h.store.cost_today("alpha", &h.egress.config().prices);
    assert_eq!(cost.unpriced, None);
    assert_eq!(cost.micros, 2 * (1160 + 770 + 1920));
}
