//! Faults: the client goes away mid-stream, the upstream resets or errors or is not there, slow
//! clients, shutdown with a stream open. Usage is metered in every case; nothing panics.

use std::time::{Duration, Instant};

use clawgate_egress::Provider;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fake::usage;
use crate::harness::*;

/// Waits until `agent` has a bucket for `provider` (metering happens on the recorder thread).
async fn wait_bucket(h: &Harness, agent: &str, provider: &str) -> clawgate_egress::Bucket {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = h.buckets().await;
        if let Some(b) = all
            .iter()
            .find(|b| b.agent == agent && b.provider == provider)
        {
            return b.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no bucket for {agent}/{provider}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cancel_mid_stream_still_meters() {
    let h = start().await;
    let body = r#"{"model":"claude","stream":true,"messages":[]}"#;
    let req = format!(
        "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {TOKEN_A}\r\nx-fake-delay-ms: 40\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"output_tokens\":10") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    drop(s); // the agent goes away mid-stream
    let b = wait_bucket(&h, "alpha", "anthropic").await;
    let (input, write, read, output) = usage::ANTHROPIC;
    assert_eq!(
        (b.usage.input, b.usage.cache_write, b.usage.cache_read),
        (input, write, read)
    );
    assert!(
        (usage::ANTHROPIC_FIRST_DELTA_OUTPUT..=output).contains(&b.usage.output),
        "{b:?}"
    );
    assert_eq!((b.requests, b.incomplete), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_before_the_response_head_still_counts_the_request() {
    let h = start().await;
    let body = r#"{"model":"claude-opus","stream":true}"#;
    let req = format!(
        "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {TOKEN_A}\r\nx-fake-head-delay-ms: 3000\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    // The upstream got it (and may bill it); the agent gives up before any answer.
    let deadline = Instant::now() + Duration::from_secs(3);
    while h.fake.seen().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(s);
    let b = wait_bucket(&h, "alpha", "anthropic").await;
    assert_eq!(
        (b.requests, b.incomplete, b.model.as_str()),
        (1, 1, "claude-opus")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_mid_stream_meters_what_was_seen_and_cuts_the_client() {
    let h = start().await;
    let r = h
        .send(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A), ("x-fake-reset-after-event", "6")],
            r#"{"model":"claude","stream":true,"messages":[]}"#,
        )
        .await;
    assert_eq!(r.status(), 200);
    let result = r.into_body().collect().await;
    assert!(
        result.is_err(),
        "the client must see the stream break, not a clean end"
    );
    let b = wait_bucket(&h, "alpha", "anthropic").await;
    let (input, write, read, _) = usage::ANTHROPIC;
    assert_eq!(b.usage.input, input);
    assert_eq!(b.usage.cache_write, write);
    assert_eq!(b.usage.cache_read, read);
    assert_eq!(b.usage.output, usage::ANTHROPIC_FIRST_DELTA_OUTPUT);
    assert_eq!((b.requests, b.incomplete), (1, 1));
    let m = h.egress.metrics().encode();
    assert!(
        m.contains("clawgate_egress_upstream_errors_total{route=\"anthropic\",kind=\"stream\"} 1"),
        "{m}"
    );

    // The same on the filtered (injected include_usage) path.
    let bearer = format!("Bearer {TOKEN_A}");
    let r = h
        .send(
            "POST",
            "/openai/v1/chat/completions",
            &[
                ("authorization", &bearer),
                ("x-fake-reset-after-event", "2"),
            ],
            r#"{"model":"gpt-4o","stream":true,"messages":[]}"#,
        )
        .await;
    assert!(r.into_body().collect().await.is_err());
    let b = wait_bucket(&h, "alpha", "openai").await;
    assert_eq!((b.requests, b.incomplete, b.usage.total()), (1, 1, 0));
    assert_eq!(b.model, "gpt-4o-2024-08-06");

    // The proxy is still serving.
    let ok = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            r#"{"model":"m"}"#,
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_429_and_5xx_pass_through_and_count() {
    let h = start().await;
    for status in ["429", "500", "529"] {
        let r = h
            .call(
                "POST",
                "/anthropic/v1/messages",
                &[("x-api-key", TOKEN_A), ("x-fake-status", status)],
                r#"{"model":"m","stream":true}"#,
            )
            .await;
        assert_eq!(r.status.as_str(), status);
        assert_eq!(r.body, h.fake.last().sent, "the provider's own error body");
        assert!(r.headers.get("x-clawgate-error").is_none());
    }
    let g = h
        .call(
            "POST",
            "/gemini/v1beta/models/g:generateContent",
            &[("x-goog-api-key", TOKEN_A), ("x-fake-status", "503")],
            "{}",
        )
        .await;
    assert_eq!(g.status, 503);
    let all = h.buckets().await;
    let b = bucket(&all, "alpha", "anthropic");
    assert_eq!((b.requests, b.incomplete, b.usage.total()), (3, 0, 0));
    let m = h.egress.metrics().encode();
    assert!(
        m.contains("clawgate_egress_requests_total{route=\"anthropic\",status=\"529\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_502_in_the_provider_format() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let h = start_with(|c| {
        c.set_upstream(Provider::Anthropic, &format!("http://{closed}"))
            .unwrap();
        c.connect_timeout = Duration::from_secs(1);
    })
    .await;
    let r = h
        .call(
            "POST",
            "/anthropic/v1/messages",
            &[("x-api-key", TOKEN_A)],
            r#"{"model":"m"}"#,
        )
        .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.headers["x-clawgate-error"], "upstream_unreachable");
    let b = wait_bucket(&h, "alpha", "anthropic").await;
    assert_eq!((b.requests, b.incomplete, b.model.as_str()), (1, 1, "m"));
    let m = h.egress.metrics().encode();
    assert!(m.contains("kind=\"connect\"} 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_disconnected() {
    let h = start_with(|c| {
        c.header_timeout = Duration::from_millis(200);
        c.body_timeout = Duration::from_millis(300);
    })
    .await;
    // Headers that never finish.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .expect("a slow header was not cut off")
        .ok();
    assert!(started.elapsed() < Duration::from_secs(2));
    // A body that never finishes: 408 in the provider's format.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {TOKEN_A}\r\nContent-Length: 100\r\n\r\n{{\"a\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("a slow body was not cut off")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(h.fake.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_open_streams_finish_and_flushes_usage() {
    let h = start().await;
    let client = {
        let addr = h.addr;
        tokio::spawn(async move {
            let body = r#"{"model":"claude","stream":true}"#;
            let req = format!(
                "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {TOKEN_A}\r\nx-fake-delay-ms: 4\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            out
        })
    };
    tokio::time::sleep(Duration::from_millis(40)).await;
    h.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), h.server)
        .await
        .unwrap()
        .unwrap();
    let out = client.await.unwrap();
    assert!(
        String::from_utf8_lossy(&out).contains("message_stop"),
        "the open stream was cut"
    );
    // serve() flushed: the bucket is there without another flush.
    let all = h
        .store
        .buckets(&clawgate_egress::BucketQuery::default())
        .unwrap();
    let b = bucket(&all, "alpha", "anthropic");
    assert_eq!((b.requests, b.incomplete), (1, 0));
    assert_eq!(b.usage.output, usage::ANTHROPIC.3);
    // And it no longer accepts.
    assert!(TcpStream::connect(h.addr).await.is_err());
}
