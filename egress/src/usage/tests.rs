use super::*;

fn sse_outcome(provider: Provider, stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut t = Tap::new(provider, true, 1 << 20, false);
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        t.feed(&stream[last..c]);
        last = c;
    }
    t.finish()
}

fn json_outcome(provider: Provider, body: &[u8]) -> Outcome {
    let mut t = Tap::new(provider, false, 1 << 20, false);
    t.feed(body);
    t.finish()
}

const ANTHROPIC: &[u8] = b"event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":4000,\"output_tokens\":1}}}\r\n\r\n\
event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":20}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":57}}\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

#[test]
fn anthropic_stream_overwrites_cumulative_usage_at_any_split() {
    let want = Usage {
        input: 12,
        output: 57,
        cache_read: 4000,
        cache_write: 300,
        cache_write_1h: 0,
    };
    for cut in (0..ANTHROPIC.len()).step_by(7) {
        let o = sse_outcome(
            Provider::Anthropic,
            ANTHROPIC,
            &[cut, (cut + 3).min(ANTHROPIC.len())],
        );
        assert_eq!(o.usage, want, "cut {cut}");
        assert_eq!(o.model.as_deref(), Some("claude-sonnet-4-5"));
        assert!(o.usage_seen);
    }
}

#[test]
fn anthropic_delta_may_restate_input_fields() {
    let s = b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":7,\"cache_read_input_tokens\":9,\"output_tokens\":3}}\n\n";
    let o = sse_outcome(Provider::Anthropic, s, &[]);
    assert_eq!(
        o.usage,
        Usage {
            input: 7,
            output: 3,
            cache_read: 9,
            cache_write: 0,
            cache_write_1h: 0
        }
    );
}

#[test]
fn anthropic_non_streamed() {
    let o = json_outcome(
        Provider::Anthropic,
        br#"{"id":"msg","type":"message","model":"claude-x","usage":{"input_tokens":3,"output_tokens":4,"cache_creation_input_tokens":5,"cache_read_input_tokens":6}}"#,
    );
    assert_eq!(
        o.usage,
        Usage {
            input: 3,
            output: 4,
            cache_read: 6,
            cache_write: 5,
            cache_write_1h: 0
        }
    );
    assert_eq!(o.model.as_deref(), Some("claude-x"));
}

/// The TTL breakdown Anthropic adds to `cache_creation_input_tokens`: the one-hour part is kept
/// (cumulatively, like every field), non-streamed and streamed.
#[test]
fn anthropic_one_hour_cache_writes() {
    let o = json_outcome(
        Provider::Anthropic,
        br#"{"type":"message","model":"claude-x","usage":{"input_tokens":3,"output_tokens":4,"cache_creation_input_tokens":500,"cache_read_input_tokens":6,"cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":300}}}"#,
    );
    assert_eq!((o.usage.cache_write, o.usage.cache_write_1h), (500, 300));
    let stream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":500,\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":400},\"output_tokens\":1}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let o = sse_outcome(Provider::Anthropic, stream, &[40, 200]);
    assert_eq!(
        o.usage,
        Usage {
            input: 3,
            output: 9,
            cache_read: 0,
            cache_write: 500,
            cache_write_1h: 400
        }
    );
}

#[test]
fn openai_chat_final_chunk_cached_is_a_subset() {
    let s = b"data: {\"id\":\"c\",\"model\":\"gpt-4o-2024\",\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"model\":\"gpt-4o-2024\",\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":50,\"total_tokens\":1050,\"prompt_tokens_details\":{\"cached_tokens\":800}}}\n\n\
data: [DONE]\n\n";
    let o = sse_outcome(Provider::OpenAi, s, &[10]);
    assert_eq!(
        o.usage,
        Usage {
            input: 200,
            output: 50,
            cache_read: 800,
            cache_write: 0,
            cache_write_1h: 0
        }
    );
    assert_eq!(o.model.as_deref(), Some("gpt-4o-2024"));
}

#[test]
fn openai_responses_completed_event() {
    let s = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-5\",\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-5\",\"usage\":{\"input_tokens\":900,\"input_tokens_details\":{\"cached_tokens\":100},\"output_tokens\":40,\"output_tokens_details\":{\"reasoning_tokens\":10},\"total_tokens\":940}}}\n\n";
    let o = sse_outcome(Provider::OpenAi, s, &[]);
    assert_eq!(
        o.usage,
        Usage {
            input: 800,
            output: 40,
            cache_read: 100,
            cache_write: 0,
            cache_write_1h: 0
        }
    );
    assert_eq!(o.model.as_deref(), Some("gpt-5"));
}

#[test]
fn openai_usage_with_cache_write_and_non_streamed() {
    let o = json_outcome(
        Provider::OpenRouter,
        br#"{"model":"m","choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":30,"cache_write_tokens":20},"cost":0.1}}"#,
    );
    assert_eq!(
        o.usage,
        Usage {
            input: 50,
            output: 5,
            cache_read: 30,
            cache_write: 20,
            cache_write_1h: 0
        }
    );
}

#[test]
fn gemini_last_usage_wins_in_sse_and_json_arrays() {
    let chunk = |p: u64, c: u64| {
        format!(
            "{{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"x\"}}]}}}}],\"usageMetadata\":{{\"promptTokenCount\":{p},\"cachedContentTokenCount\":64,\"candidatesTokenCount\":{c},\"thoughtsTokenCount\":3,\"totalTokenCount\":1}},\"modelVersion\":\"gemini-2.5-flash\"}}"
        )
    };
    let sse = format!(
        "data: {}\r\n\r\ndata: {}\r\n\r\n",
        chunk(100, 1),
        chunk(100, 9)
    );
    let want = Usage {
        input: 36,
        output: 12,
        cache_read: 64,
        cache_write: 0,
        cache_write_1h: 0,
    };
    let o = sse_outcome(Provider::Gemini, sse.as_bytes(), &[5]);
    assert_eq!(o.usage, want);
    assert_eq!(o.model.as_deref(), Some("gemini-2.5-flash"));
    let arr = format!("[{},\n{}]", chunk(100, 1), chunk(100, 9));
    assert_eq!(json_outcome(Provider::Gemini, arr.as_bytes()).usage, want);
    // Cut short: the complete elements still count.
    let cut = format!(
        "[{},\n{},\n{{\"candidates\":[{{\"content",
        chunk(100, 1),
        chunk(100, 9)
    );
    assert_eq!(json_outcome(Provider::Gemini, cut.as_bytes()).usage, want);
}

#[test]
fn filter_drops_only_the_usage_only_chunk() {
    let s: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
: keepalive\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2}}\n\n\
data: [DONE]\n\n";
    let kept: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
: keepalive\n\n\
data: [DONE]\n\n";
    for cut in 0..s.len() {
        let mut t = Tap::new(Provider::OpenAi, true, 1 << 20, true);
        assert!(t.filters());
        let mut out = VecDeque::new();
        t.filter(Bytes::copy_from_slice(&s[..cut]), &mut out);
        t.filter(Bytes::copy_from_slice(&s[cut..]), &mut out);
        t.filter_rest(&mut out);
        let got: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(got, kept, "cut {cut}");
        let o = t.finish();
        assert_eq!(o.usage.input, 10);
        assert_eq!(o.usage.output, 2);
    }
}

#[test]
fn oversized_json_is_marked_overflow() {
    let mut t = Tap::new(Provider::OpenAi, false, 8, false);
    t.feed(b"{\"usage\":{\"prompt_tokens\":1}}");
    let o = t.finish();
    assert!(o.overflow);
    assert!(!o.usage_seen);
}

#[test]
fn streams_are_finished_only_by_their_terminal_event() {
    let whole = sse_outcome(Provider::Anthropic, ANTHROPIC, &[]);
    assert!(whole.streamed && whole.finished);
    // Cut cleanly after message_start (or anywhere before message_stop): not finished.
    let stop = memchr::memmem::find(ANTHROPIC, b"event: message_stop").unwrap();
    for cut in [200, stop] {
        let o = sse_outcome(Provider::Anthropic, &ANTHROPIC[..cut], &[]);
        assert!(!o.finished, "cut at {cut}");
    }
    // Model text that merely mentions a terminal name is not the terminal.
    let fake = b"data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"message_stop [DONE] response.completed\"}}\n\n";
    assert!(!sse_outcome(Provider::Anthropic, fake, &[]).finished);
    for (provider, terminal) in [
        (Provider::OpenAi, &b"data: [DONE]\n\n"[..]),
        (
            Provider::OpenAi,
            b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n",
        ),
        (
            Provider::Gemini,
            b"data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n",
        ),
    ] {
        assert!(sse_outcome(provider, terminal, &[]).finished, "{provider}");
    }
    assert!(json_outcome(Provider::OpenAi, b"{\"id\":\"x\"}").finished);
    assert!(!json_outcome(Provider::OpenAi, b"{\"id\":").finished);
}
