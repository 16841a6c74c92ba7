use super::*;
use clawgate_protocol::SecretString;

use crate::cache::RedactionCache;

fn redactor() -> Arc<Redactor> {
    redactor_knowing("db", "hunter2-Very-Secret-Pw")
}

/// A redactor whose vault holds one value.
fn redactor_knowing(name: &str, value: &str) -> Arc<Redactor> {
    Arc::new(
        Redactor::builder()
            .vault_value(name.parse().unwrap(), SecretString::new(value.into()))
            .build()
            .unwrap(),
    )
}

#[test]
fn routes() {
    assert_eq!(
        route("/openai/v1/chat"),
        Some((Provider::OpenAi, "/v1/chat"))
    );
    assert_eq!(route("/anthropic"), Some((Provider::Anthropic, "")));
    assert_eq!(route("/gemini/"), Some((Provider::Gemini, "/")));
    assert_eq!(route("/openaix/v1"), None);
    assert_eq!(route("/"), None);
    assert!(check_path("/v1/../x").is_err());
    assert!(check_path("/v1/%2E%2e/x").is_err());
    assert!(check_path("/v1/chat/completions").is_ok());
}

#[test]
fn redacts_strings_and_keeps_every_other_byte() {
    let r = redactor();
    let body = "{ \"z\": 1.50e3, \"a\" :[\"x hunter2-Very-Secret-Pw y\", \"\\u0068unter2-Very-Secret-Pw\"], \"k\\\"\": \"plain\\n\" }";
    let mut red = Vec::new();
    let out = redact_strings(body, &r, None, &mut red).unwrap().unwrap();
    assert_eq!(
        out,
        "{ \"z\": 1.50e3, \"a\" :[\"x SECRET_REF(db) y\", \"SECRET_REF(db)\"], \"k\\\"\": \"plain\\n\" }"
    );
    assert_eq!(red.len(), 2);
    assert_eq!(red[0].detector, "vault");
    let clean = "{\"a\":\"nothing here\"}";
    assert_eq!(redact_strings(clean, &r, None, &mut red).unwrap(), None);
}

#[test]
fn prepare_refuses_what_it_cannot_check() {
    let r = redactor();
    for bad in [
        &b"not json"[..],
        b"{\"a\":1",
        b"{\"a\":\"\xff\"}",
        b"{\"a\":\"\\ud800\"}",
        b"{\"a\":1} trailing",
        b"{\"model\":\"a\",\"model\":\"b\"}",
    ] {
        let e = prepare(
            Provider::OpenAi,
            "/v1/chat/completions",
            true,
            Bytes::copy_from_slice(bad),
            &r,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn include_usage_is_added_when_missing() {
    let r = redactor();
    let p = prepare(
        Provider::OpenAi,
        "/v1/chat/completions",
        true,
        Bytes::from_static(b"{\"model\":\"gpt\",\"stream\":true,\"messages\":[]}\n"),
        &r,
        None,
    )
    .unwrap();
    assert_eq!(
        &p.body[..],
        b"{\"model\":\"gpt\",\"stream\":true,\"messages\":[],\"stream_options\":{\"include_usage\":true}}"
    );
    assert!(p.strip_usage_chunk);
    assert_eq!(p.model.as_deref(), Some("gpt"));

    let p = prepare(
        Provider::OpenAi,
        "/v1/chat/completions",
        true,
        Bytes::from_static(
            b"{\"stream\":true,\"stream_options\":{\"x\":1,\"include_usage\":false},\"z\":0}",
        ),
        &r,
        None,
    )
    .unwrap();
    assert_eq!(
        &p.body[..],
        b"{\"stream\":true,\"stream_options\":{\"x\":1,\"include_usage\":true},\"z\":0}"
    );

    let null = prepare(
        Provider::OpenAi,
        "/v1/chat/completions",
        true,
        Bytes::from_static(b"{\"stream\":true,\"stream_options\":null}"),
        &r,
        None,
    )
    .unwrap();
    assert_eq!(
        &null.body[..],
        b"{\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
    );

    let asked = b"{\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    let p = prepare(
        Provider::OpenAi,
        "/v1/chat/completions",
        true,
        Bytes::from_static(asked),
        &r,
        None,
    )
    .unwrap();
    assert_eq!(&p.body[..], asked);
    assert!(!p.strip_usage_chunk);

    let p = prepare(
        Provider::OpenRouter,
        "/v1/chat/completions",
        true,
        Bytes::from_static(b"{\"stream\":true}"),
        &r,
        None,
    )
    .unwrap();
    assert!(!p.strip_usage_chunk, "OpenRouter sends usage anyway");
    assert!(p.body.ends_with(b"\"include_usage\":true}}"));
}

#[test]
fn gemini_model_from_path() {
    let r = redactor();
    let p = prepare(
        Provider::Gemini,
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        true,
        Bytes::from_static(b"{\"contents\":[]}"),
        &r,
        None,
    )
    .unwrap();
    assert_eq!(p.model.as_deref(), Some("gemini-2.5-pro"));
}

#[test]
fn tokens_from_any_header_or_the_query() {
    let mut h = HeaderMap::new();
    assert_eq!(presented_token(&h, None).unwrap_err().kind, "missing_token");
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer tok"),
    );
    assert_eq!(presented_token(&h, None).unwrap(), "tok");
    h.insert(X_API_KEY, HeaderValue::from_static("tok"));
    assert_eq!(presented_token(&h, Some("tok")).unwrap(), "tok");
    assert_eq!(
        presented_token(&h, Some("other")).unwrap_err().kind,
        "invalid_token"
    );
    let mut basic = HeaderMap::new();
    basic.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic eA=="),
    );
    assert!(presented_token(&basic, None).is_err());
}

#[test]
fn key_param_is_removed_from_the_query() {
    assert_eq!(
        split_key_param(Some("alt=sse&key=ab%2Dc&x=1")),
        (Some("alt=sse&x=1".into()), Some("ab-c".into()))
    );
    assert_eq!(split_key_param(Some("key=k")), (None, Some("k".into())));
    assert_eq!(
        split_key_param(Some("keyx=1")),
        (Some("keyx=1".into()), None)
    );
}

#[test]
fn hop_by_hop_and_credentials_never_go_upstream() {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("keep-alive, x-custom-hop"),
    );
    h.insert("x-custom-hop", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer agent"),
    );
    h.insert(X_API_KEY, HeaderValue::from_static("agent"));
    h.insert(header::HOST, HeaderValue::from_static("127.0.0.1"));
    h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
    let mut up = upstream_headers(&h, 12);
    inject_key(&mut up, Provider::Anthropic, "real").unwrap();
    let names: Vec<_> = up.keys().map(|k| k.as_str().to_owned()).collect();
    assert_eq!(
        names,
        [
            "anthropic-version",
            "content-length",
            "accept-encoding",
            "x-api-key"
        ],
    );
    assert_eq!(up["content-length"], "12");
    assert_eq!(up["x-api-key"], "real");
    assert!(up["x-api-key"].is_sensitive());
}

#[test]
fn gzip_and_deflate_bodies_are_decoded_with_a_cap() {
    use std::io::Write;
    let plain = b"{\"a\":\"b\"}".repeat(100);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = Bytes::from(gz.finish().unwrap());
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    assert_eq!(
        &decode_body(gz.clone(), &h, 1 << 20).unwrap()[..],
        &plain[..]
    );
    assert_eq!(
        decode_body(gz, &h, 100).unwrap_err().status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&plain).unwrap();
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("deflate"),
    );
    assert_eq!(
        &decode_body(Bytes::from(z.finish().unwrap()), &h, 1 << 20).unwrap()[..],
        &plain[..]
    );
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
    assert_eq!(
        decode_body(Bytes::from_static(b"x"), &h, 10)
            .unwrap_err()
            .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    assert_eq!(
        decode_body(Bytes::from_static(b"not gzip"), &h, 10)
            .unwrap_err()
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn cached_redactions_are_the_same_as_fresh_ones() {
    let r = redactor();
    let cache = RedactionCache::new(1 << 20);
    let long = format!("{} and hunter2-Very-Secret-Pw again", "context ".repeat(50));
    let body = serde_json::json!({"messages":[{"content": long}, {"content": "x".repeat(400)}]})
        .to_string();
    let mut fresh = Vec::new();
    let want = redact_strings(&body, &r, None, &mut fresh)
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        let mut red = Vec::new();
        let got = redact_strings(&body, &r, Some(&cache), &mut red)
            .unwrap()
            .unwrap();
        assert_eq!(got, want);
        assert_eq!(red, fresh);
        assert!(!got.contains("hunter2-Very-Secret-Pw"));
    }
}

#[test]
fn vault_values_split_across_messages_are_redacted_in_each_piece() {
    let r = redactor();
    let cases = [
        // Anthropic content blocks: "type" values between the pieces.
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"pw: hunter2-Very"},{"type":"text","text":"-Secret-Pw ok"}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"pw: SECRET_REF(db)"},{"type":"text","text":"SECRET_REF(db) ok"}]}]}"#,
        ),
        // OpenAI chat messages: "role" values between the pieces; three pieces.
        (
            r#"{"messages":[{"role":"user","content":"a hunter2-"},{"role":"user","content":"Very-Secret"},{"role":"user","content":"-Pw b"}]}"#,
            r#"{"messages":[{"role":"user","content":"a SECRET_REF(db)"},{"role":"user","content":"SECRET_REF(db)"},{"role":"user","content":"SECRET_REF(db) b"}]}"#,
        ),
    ];
    for (body, want) in cases {
        let p = prepare(
            Provider::Anthropic,
            "/v1/messages",
            true,
            Bytes::from(body),
            &r,
            None,
        )
        .unwrap();
        assert_eq!(std::str::from_utf8(&p.body).unwrap(), want);
        serde_json::from_slice::<Value>(&p.body).unwrap();
        assert!(p.redactions.iter().any(|x| x.detector == "vault"));
    }
    // Escapes before a piece are kept intact (the piece starts after `\n`).
    let escaped = r#"{"messages":[{"content":"x\nhunter2-Very"},{"content":"-Secret-Pw"}]}"#;
    let p = prepare(
        Provider::OpenAi,
        "/v1/x",
        true,
        Bytes::from(escaped),
        &r,
        None,
    )
    .unwrap();
    assert_eq!(
        std::str::from_utf8(&p.body).unwrap(),
        r#"{"messages":[{"content":"x\nSECRET_REF(db)"},{"content":"SECRET_REF(db)"}]}"#
    );
}

/// A chat body of `messages`, each as one user message.
fn chat(messages: &[&str]) -> Bytes {
    let m: Vec<Value> = messages
        .iter()
        .map(|c| serde_json::json!({"role": "user", "content": c}))
        .collect();
    Bytes::from(serde_json::json!({"model": "m", "messages": m}).to_string())
}

fn prepared_text(body: &Bytes, r: &Arc<Redactor>, cache: &RedactionCache) -> String {
    let p = prepare(
        Provider::Anthropic,
        "/v1/messages",
        true,
        body.clone(),
        r,
        Some(cache),
    )
    .unwrap();
    String::from_utf8(p.body.to_vec()).unwrap()
}

#[test]
fn clean_seams_are_remembered_per_pair_of_strings_never_beyond() {
    let r = redactor();
    let cache = RedactionCache::new(1 << 20);
    let filler = "plain prompt text. ".repeat(30);
    // A and B are long enough for their seam to depend on them alone; their seam is clean.
    let a = format!("{filler} ends with hunter2-Very");
    let b = format!("ordinary words {filler}");
    let c = format!("-Secret-Pw then {filler}");
    let clean = chat(&[&a, &b]);
    assert_eq!(
        prepared_text(&clean, &r, &cache),
        std::str::from_utf8(&clean).unwrap()
    );
    // (The texts hold nothing JSON escapes: as written in the body, they are themselves.)
    let entry = |t: &str| cache.get(&r, t, cache.hash(t));
    let (ea, eb) = (entry(&a).unwrap(), entry(&b).unwrap());
    assert!(ea.seam_known_clean(&eb), "the clean seam A|B is remembered");
    // A followed by C splits the vault value: the memo of A|B says nothing about A|C.
    let split = prepared_text(&chat(&[&a, &c]), &r, &cache);
    assert!(split.contains("ends with SECRET_REF(db)"), "{split}");
    assert!(split.contains("\"SECRET_REF(db) then"), "{split}");
    // (Its strings were redacted after the pieces were replaced: C as sent is not cached.)
    assert!(entry(&c).is_none());
    // The same pair resent, now after another message: still clean and unchanged.
    let again = chat(&["short", &a, &b]);
    assert_eq!(
        prepared_text(&again, &r, &cache),
        std::str::from_utf8(&again).unwrap()
    );
    // A redactor that knows a value split across A|B: the cache (and its memos) belonged to
    // the old redactor and is not used.
    let r2 = redactor_knowing("other", "hunter2-Veryordinary");
    let out = prepared_text(&clean, &r2, &cache);
    assert!(
        !out.contains("hunter2-Very\"") && out.contains("SECRET_REF(other)"),
        "{out}"
    );
}

#[test]
fn short_strings_are_always_scanned_across() {
    // Below the seam's reach a memo could not be trusted (the scan around a boundary also sees
    // the strings beyond): a split value is found however often the parts were seen before.
    let r = redactor();
    let cache = RedactionCache::new(1 << 20);
    let a = format!("{} hunter2-", "x".repeat(300));
    let body = chat(&[&a, "Very-Secret", "-Pw b"]);
    for _ in 0..3 {
        let out = prepared_text(&body, &r, &cache);
        assert!(!out.contains("Very-Secret\""), "{out}");
        assert_eq!(out.matches("SECRET_REF(db)").count(), 3, "{out}");
    }
}

#[test]
fn escapes_are_recognised() {
    let b = br#"a\nb\\c\u0041d"#;
    assert!(inside_escape(b, 2)); // the `n` of \n
    assert!(!inside_escape(b, 3)); // b
    assert!(inside_escape(b, 5)); // second backslash of \\
    assert!(!inside_escape(b, 6)); // c
    assert!(inside_escape(b, 9)); // a hex digit of \u0041
    assert!(!inside_escape(b, 13)); // d
}

#[test]
fn json_strings_finds_every_string_once_and_marks_the_text_ones() {
    let body = r#"{"model": "m", "messages": [{"role": "user", "content": "a\"b"}, {"type":"text","text":"x"}], "tags": ["t1", "t2"]}"#;
    let all = json_strings(body).unwrap();
    let seen: Vec<(&str, bool, bool)> = all
        .iter()
        .map(|s| (&body[s.open + 1..s.close], s.escaped, s.text))
        .collect();
    assert_eq!(
        seen,
        [
            ("model", false, false),
            ("m", false, false),
            ("messages", false, false),
            ("role", false, false),
            ("user", false, false),
            ("content", false, false),
            (r#"a\"b"#, true, true),
            ("type", false, false),
            ("text", false, false),
            ("text", false, false),
            ("x", false, true),
            ("tags", false, false),
            ("t1", false, true),
            ("t2", false, true),
        ]
    );
    assert!(json_strings(r#"{"a": "open"#).is_err());
}
