//! One pass over a request body: checks that it is one JSON value (RFC 8259), finds every
//! string in it, and notes where the top-level fields the proxy reads (`model`, `stream`,
//! `stream_options`) are.
//!
//! serde_json's own validation (deserializing the body's head, skipping everything else) was
//! the largest part of the cost of a resent 64 KB body: about 6.5 instructions per byte, most
//! of them inside strings, and the strings had to be found again afterwards. Here the strings
//! are jumped through quote to quote and checked eight bytes at a time, and found once.
//!
//! Strict: whatever this accepts, serde_json accepts too (a property test checks both ways on
//! generated and mutated documents), so a body the provider would read differently from the
//! proxy is refused, never forwarded.

use super::{JsonString, STRUCTURAL_KEYS, unescape};

/// Containers nested deeper than this are refused, as serde_json refuses them (its limit of
/// 128 counts down to zero).
const MAX_DEPTH: usize = 127;

/// What one pass over a valid body found.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    /// Every string, object keys included, in document order.
    pub(crate) strings: Vec<JsonString>,
    /// The values (as written) of the top-level `model`, `stream` and `stream_options`.
    pub(crate) model: Option<(usize, usize)>,
    pub(crate) stream: Option<(usize, usize)>,
    pub(crate) stream_options: Option<(usize, usize)>,
}

/// Why a body is not one JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) at: usize,
    pub(crate) why: &'static str,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.why, self.at)
    }
}

fn invalid(at: usize, why: &'static str) -> Invalid {
    Invalid { at, why }
}

/// What the parser expects next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (the document's, an array item's or an object member's).
    Value,
    /// The first item of an array, or `]`.
    FirstItem,
    /// The first key of an object, or `}`.
    FirstKey,
    /// A key (after a comma).
    Key,
    /// `:` after a key.
    Colon,
    /// `,` or the container's end, after a value.
    Next,
}

/// A top-level field the proxy reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Model,
    Stream,
    StreamOptions,
}

/// Checks `text` and finds its strings ([`Scanned`]).
pub(crate) fn scan(text: &str) -> Result<Scanned, Invalid> {
    let bytes = text.as_bytes();
    let mut out = Scanned::default();
    // Open containers: `true` for an object.
    let mut stack: Vec<bool> = Vec::new();
    let mut expect = Expect::Value;
    // The last key of each open object decides whether its string values are text.
    let mut keys: Vec<&str> = Vec::new();
    // The top-level field whose value comes next, and where that value starts.
    let mut field: Option<Field> = None;
    let mut field_start = 0;
    let mut done = false;
    let mut i = skip_space(bytes, 0);
    while i < bytes.len() {
        if done {
            return Err(invalid(i, "trailing characters after the JSON value"));
        }
        let b = bytes[i];
        match expect {
            Expect::Value | Expect::FirstItem => {
                if expect == Expect::FirstItem && b == b']' {
                    stack.pop();
                    i += 1;
                    expect = Expect::Next;
                } else {
                    if stack.len() == 1 && stack[0] {
                        field_start = i;
                    }
                    match b {
                        b'{' | b'[' => {
                            if stack.len() == MAX_DEPTH {
                                return Err(invalid(i, "nested too deeply"));
                            }
                            stack.push(b == b'{');
                            if b == b'{' {
                                keys.push("");
                            }
                            i += 1;
                            expect = if b == b'{' {
                                Expect::FirstKey
                            } else {
                                Expect::FirstItem
                            };
                            i = skip_space(bytes, i);
                            continue;
                        }
                        b'"' => {
                            let s = string_at(text, i)?;
                            // The key of the innermost open object: this member's, or (in an
                            // array) the array's.
                            let key = keys.last().copied().unwrap_or("");
                            out.strings.push(JsonString {
                                text: !STRUCTURAL_KEYS.contains(&key),
                                ..s
                            });
                            i = s.close + 1;
                        }
                        b't' => i = literal(bytes, i, b"true")?,
                        b'f' => i = literal(bytes, i, b"false")?,
                        b'n' => i = literal(bytes, i, b"null")?,
                        b'-' | b'0'..=b'9' => i = number(bytes, i)?,
                        _ => return Err(invalid(i, "expected a value")),
                    }
                    expect = Expect::Next;
                }
            }
            Expect::FirstKey | Expect::Key => {
                if expect == Expect::FirstKey && b == b'}' {
                    stack.pop();
                    keys.pop();
                    i += 1;
                    expect = Expect::Next;
                } else if b == b'"' {
                    let s = string_at(text, i)?;
                    let raw = &text[s.open + 1..s.close];
                    out.strings.push(JsonString { text: false, ..s });
                    if stack.len() == 1 {
                        field = top_level_field(raw, s.escaped, i)?;
                    }
                    if let Some(k) = keys.last_mut() {
                        *k = raw;
                    }
                    i = s.close + 1;
                    expect = Expect::Colon;
                } else {
                    return Err(invalid(i, "expected a key"));
                }
            }
            Expect::Colon => {
                if b != b':' {
                    return Err(invalid(i, "expected `:` after a key"));
                }
                i += 1;
                expect = Expect::Value;
            }
            Expect::Next => {
                let in_object = match stack.last() {
                    Some(o) => *o,
                    None => return Err(invalid(i, "trailing characters after the JSON value")),
                };
                match (b, in_object) {
                    (b',', true) => expect = Expect::Key,
                    (b',', false) => expect = Expect::Value,
                    (b'}', true) | (b']', false) => {
                        stack.pop();
                        if in_object {
                            keys.pop();
                        }
                        expect = Expect::Next;
                    }
                    _ => return Err(invalid(i, "expected `,` or the end of the container")),
                }
                i += 1;
            }
        }
        // A top-level member's value just ended.
        if expect == Expect::Next
            && stack.len() == 1
            && stack[0]
            && let Some(f) = field.take()
        {
            let slot = match f {
                Field::Model => &mut out.model,
                Field::Stream => &mut out.stream,
                Field::StreamOptions => &mut out.stream_options,
            };
            if slot.is_some() {
                return Err(invalid(field_start, "a duplicate top-level field"));
            }
            *slot = Some((field_start, i));
        }
        if stack.is_empty() && expect == Expect::Next {
            done = true;
        }
        i = skip_space(bytes, i);
    }
    if !done {
        return Err(invalid(bytes.len(), "the JSON value is incomplete"));
    }
    Ok(out)
}

/// The top-level field a key names (escapes decoded: `"mod\u0065l"` is `model`).
fn top_level_field(raw: &str, escaped: bool, at: usize) -> Result<Option<Field>, Invalid> {
    let decoded;
    let key = if escaped {
        decoded = unescape(raw).map_err(|_| invalid(at, "an invalid escape"))?;
        decoded.as_str()
    } else {
        raw
    };
    Ok(match key {
        "model" => Some(Field::Model),
        "stream" => Some(Field::Stream),
        "stream_options" => Some(Field::StreamOptions),
        _ => None,
    })
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The string opening at `open`, read as a JSON parser reads it: every escape checked (one
/// JSON defines, surrogates paired) and stepped over, no raw control character, up to the
/// quote that closes it.
fn string_at(text: &str, open: usize) -> Result<JsonString, Invalid> {
    let bytes = text.as_bytes();
    let mut escaped = false;
    let mut i = open + 1;
    loop {
        let Some(at) = next_special(bytes, i) else {
            return Err(invalid(open, "an unterminated string"));
        };
        match bytes[at] {
            b'"' => {
                return Ok(JsonString {
                    open,
                    close: at,
                    escaped,
                    text: false,
                });
            }
            b'\\' => {
                let (_, len) =
                    unescape::escape_at(bytes, at).map_err(|_| invalid(at, "an invalid escape"))?;
                escaped = true;
                i = at + len;
            }
            _ => return Err(invalid(at, "a control character in a string")),
        }
    }
}

/// The first byte from `from` on that is a quote, a backslash or below 0x20 (what ends a run
/// of plain string content), eight bytes at a time.
fn next_special(bytes: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // The high bit of every zero byte of `x`, exactly.
    let zero = |x: u64| !(((x & !HI).wrapping_add(!HI)) | x | !HI);
    let rest = bytes.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    for (n, chunk) in (&mut chunks).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Bytes below 0x20: their high bit is set after subtracting 0x20 (a borrow can only
        // spill from a byte that is one, so the first flagged byte is exact).
        let control = x.wrapping_sub(LO * 0x20) & !x & HI;
        let m = zero(x ^ (LO * u64::from(b'"'))) | zero(x ^ (LO * u64::from(b'\\'))) | control;
        if m != 0 {
            return Some(from + n * 8 + (m.trailing_zeros() / 8) as usize);
        }
    }
    let base = from + rest.len() - chunks.remainder().len();
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|at| base + at)
}

fn literal(bytes: &[u8], i: usize, word: &[u8]) -> Result<usize, Invalid> {
    if bytes.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        Err(invalid(i, "expected a value"))
    }
}

/// Past the number at `i`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn number(bytes: &[u8], mut i: usize) -> Result<usize, Invalid> {
    let start = i;
    let digits = |bytes: &[u8], mut i: usize| {
        let from = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        (i > from).then_some(i)
    };
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(bytes, i).unwrap_or(i),
        _ => return Err(invalid(start, "an invalid number")),
    }
    if bytes.get(i) == Some(&b'.') {
        i = digits(bytes, i + 1).ok_or(invalid(start, "an invalid number"))?;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(bytes, i).ok_or(invalid(start, "an invalid number"))?;
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The head as serde_json read it before this pass existed (duplicates refused).
    #[derive(serde::Deserialize)]
    struct SerdeHead {
        model: Option<Value>,
        stream: Option<Value>,
        #[serde(default, deserialize_with = "present")]
        stream_options: Option<Value>,
    }

    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        <Value as serde::Deserialize>::deserialize(d).map(Some)
    }

    /// The fields of the head, as a tuple.
    type HeadFields = (Option<Value>, Option<Value>, Option<Value>);

    /// serde_json's verdict and, for an object, its head.
    fn serde_reads(text: &str) -> Result<Option<HeadFields>, ()> {
        if text.trim_start().starts_with('{') {
            let h: SerdeHead = serde_json::from_str(text).map_err(|_| ())?;
            Ok(Some((h.model, h.stream, h.stream_options)))
        } else {
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|_| ())?;
            Ok(None)
        }
    }

    /// What the proxy reads: this pass, then the head's fields parsed from their bytes (which
    /// refuses a number out of range there, as serde_json did).
    fn proxy_reads(text: &str) -> Result<(Scanned, HeadFields), String> {
        let s = scan(text).map_err(|e| e.to_string())?;
        let h = crate::request::Head::of(text, &s).map_err(|_| "head".to_owned())?;
        Ok((s, (h.model, h.stream, h.stream_options)))
    }

    /// Every string serde_json sees (keys and values, document order), decoded.
    fn serde_strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| serde_strings(i, out)),
            Value::Object(map) => {
                for (k, v) in map {
                    out.push(k.clone());
                    serde_strings(v, out);
                }
            }
            _ => {}
        }
    }

    /// Both read `text` the same way: the same verdict (a lone surrogate escape may be refused
    /// here only, stricter), and for a valid body the same head and the same strings.
    fn agree(text: &str) {
        let ours = proxy_reads(text);
        let theirs = serde_reads(text);
        match (&ours, &theirs) {
            (Ok((s, ours)), Ok(head)) => {
                if let Some(head) = head {
                    assert_eq!(ours, head, "{text:?}");
                }
                let decoded: Vec<String> = s
                    .strings
                    .iter()
                    .map(|j| unescape(&text[j.open + 1..j.close]).unwrap())
                    .collect();
                // (A map drops duplicate keys' earlier members: compare only without them.)
                if let Ok(v) = serde_json::from_str::<Value>(text) {
                    let mut want = Vec::new();
                    serde_strings(&v, &mut want);
                    if want.len() == decoded.len() {
                        assert_eq!(decoded, want, "{text:?}");
                    }
                }
            }
            (Err(_), Err(())) => {}
            (Ok(_), Err(())) => panic!("accepted what serde_json refuses: {text:?}"),
            (Err(e), Ok(_)) => assert!(
                e.starts_with("an invalid escape") && text.contains("\\u"),
                "refused ({e}) what serde_json accepts: {text:?}"
            ),
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z\"\\\\\u{1}\u{e9}\u{1F600} \n/]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("model".to_owned()),
                            Just("stream".to_owned()),
                            Just("stream_options".to_owned()),
                            Just("role".to_owned()),
                            "[a-z]{1,6}"
                        ],
                        inner
                    ),
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Bytes that make or break JSON.
    const NOISE: &[&str] = &[
        "\"",
        "\\",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "0",
        "-",
        ".",
        "e",
        "+",
        "t",
        "n",
        "u",
        "\u{1}",
        " ",
        "\t",
        "\n",
        "\\u",
        "\\ud800",
        "\\udc00",
        "01",
        "1.",
        "tru",
        "nul",
        "\"model\":1,",
        "\u{7f}",
        "\\x",
        "\\/",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn scan_agrees_with_serde_json(
            v in json_value(),
            pretty in any::<bool>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0..NOISE.len(), 0u8..3), 0..3),
        ) {
            let mut text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
            agree(&text);
            for (at, noise, op) in edits {
                let chars: Vec<(usize, char)> = text.char_indices().collect();
                let i = if chars.is_empty() { 0 } else { chars[at.index(chars.len())].0 };
                match op {
                    0 => text.insert_str(i, NOISE[noise]),
                    1 if !text.is_empty() => { text.remove(i); }
                    _ => text.replace_range(i..i + text[i..].chars().next().map_or(0, char::len_utf8), NOISE[noise]),
                }
                agree(&text);
            }
        }
    }

    #[test]
    fn edge_cases_agree_with_serde_json() {
        for text in [
            "",
            " ",
            "{}",
            "[]",
            "{ }",
            "[ ]",
            "0",
            "-0",
            "-",
            "01",
            "1.5e-3",
            "1E+2",
            "1e",
            "\"\"",
            "\"a\" \"b\"",
            "{\"a\":1,}",
            "[1,]",
            "[,1]",
            "{\"a\" 1}",
            "{1:2}",
            "nulll",
            "[true false]",
            "{\"model\":\"a\",\"model\":\"b\"}",
            "{\"mod\\u0065l\":\"a\",\"model\":\"b\"}",
            "{\"stream_options\":null}",
            "{\"x\":{\"model\":\"inner\"}}",
            "\"\\ud83d\\ude00\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\u12\"",
            "\"a\u{1}\"",
            "\"\\a\"",
            "[1]x",
            "{\"a\":[}]",
            "\u{feff}{}",
            "{\"a\":\"b\"}\n",
            "\t[\r\n1\r\n]\t",
        ] {
            agree(text);
        }
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(scan(&deep(MAX_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&deep(MAX_DEPTH)).is_ok());
        assert!(scan(&deep(MAX_DEPTH + 1)).is_err());
        assert!(serde_json::from_str::<Value>(&deep(MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn finds_the_head_and_the_text_strings() {
        let text = r#"{"model":"gpt","messages":[{"role":"user","content":["a",{"type":"text"},"b"]}],"stream":true}"#;
        let s = scan(text).unwrap();
        assert_eq!(s.model.map(|(a, b)| &text[a..b]), Some("\"gpt\""));
        assert_eq!(s.stream.map(|(a, b)| &text[a..b]), Some("true"));
        assert_eq!(s.stream_options, None);
        let texts: Vec<&str> = s
            .strings
            .iter()
            .filter(|j| j.text)
            .map(|j| &text[j.open + 1..j.close])
            .collect();
        // `b` follows a `type` member but belongs to `content`'s array.
        assert_eq!(texts, ["a", "b"]);
    }
}
