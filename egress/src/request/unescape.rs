//! Decoding the contents of a JSON string, as written between its quotes.
//!
//! serde_json's own string decoding (`from_str::<String>`) was a quarter of the cost of
//! redacting a 64 KB request made of fresh text: prompt text has an escape (`\n`, `\"`) every
//! few dozen bytes, and serde_json handles each run between them with per-byte checks and a
//! growing buffer. Here the runs are found with `memchr` and copied whole into a buffer sized
//! once. The caller has already validated the whole body (`json.rs`, which checks every escape
//! with [`escape_at`]), so the input is valid JSON string content; every malformed escape is still an error rather than a guess, so this
//! function can never produce text the upstream would read differently.

/// Why string content could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadEscape {
    /// A backslash at the very end.
    Unfinished,
    /// `\` followed by something JSON does not define.
    Unknown,
    /// `\u` without four hex digits.
    ShortUnicode,
    /// A UTF-16 surrogate without its other half.
    LoneSurrogate,
}

impl std::fmt::Display for BadEscape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadEscape::Unfinished => "a string ends inside an escape",
            BadEscape::Unknown => "a string holds an unknown escape",
            BadEscape::ShortUnicode => "a string holds a \\u escape without four hex digits",
            BadEscape::LoneSurrogate => "a string holds a lone UTF-16 surrogate escape",
        })
    }
}

/// The text that JSON string content `raw` (between the quotes, escapes as written) stands for.
pub(crate) fn unescape(raw: &str) -> Result<String, BadEscape> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut copied = 0;
    while let Some(off) = memchr::memchr(b'\\', &bytes[copied..]) {
        let at = copied + off;
        out.push_str(&raw[copied..at]);
        let (c, len) = escape_at(bytes, at)?;
        out.push(c);
        copied = at + len;
    }
    out.push_str(&raw[copied..]);
    Ok(out)
}

/// The character the escape starting at `bytes[at]` (a backslash) stands for, and its length.
pub(crate) fn escape_at(bytes: &[u8], at: usize) -> Result<(char, usize), BadEscape> {
    let c = match bytes.get(at + 1).ok_or(BadEscape::Unfinished)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => return unicode_escape(bytes, at),
        _ => return Err(BadEscape::Unknown),
    };
    Ok((c, 2))
}

/// `\uXXXX`, or a surrogate pair `\uD8xx\uDCxx`, starting at `bytes[at]`.
fn unicode_escape(bytes: &[u8], at: usize) -> Result<(char, usize), BadEscape> {
    let first = hex4(bytes, at + 2)?;
    match first {
        0xD800..=0xDBFF => {
            if bytes.get(at + 6..at + 8) != Some(b"\\u") {
                return Err(BadEscape::LoneSurrogate);
            }
            let second = hex4(bytes, at + 8)?;
            if !(0xDC00..=0xDFFF).contains(&second) {
                return Err(BadEscape::LoneSurrogate);
            }
            let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            char::from_u32(code)
                .map(|c| (c, 12))
                .ok_or(BadEscape::LoneSurrogate)
        }
        0xDC00..=0xDFFF => Err(BadEscape::LoneSurrogate),
        _ => char::from_u32(first)
            .map(|c| (c, 6))
            .ok_or(BadEscape::LoneSurrogate),
    }
}

/// Four hex digits at `bytes[at..at + 4]`.
fn hex4(bytes: &[u8], at: usize) -> Result<u32, BadEscape> {
    let digits = bytes.get(at..at + 4).ok_or(BadEscape::ShortUnicode)?;
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16).ok_or(BadEscape::ShortUnicode)?;
        Ok(acc * 16 + v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `s` as JSON string content, each character written in one of the ways JSON allows
    /// (chosen by `ways`): as itself where legal, by its short escape, or as `\uXXXX` (a
    /// surrogate pair above the BMP).
    fn encode_variously(s: &str, ways: &[u8]) -> String {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            let way = ways.get(i % ways.len().max(1)).copied().unwrap_or(0) % 3;
            let short = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '/' => Some("\\/"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                _ => None,
            };
            let plain_ok = !matches!(c, '"' | '\\') && c >= ' ';
            match (way, short) {
                (0, _) if plain_ok => out.push(c),
                (1, Some(e)) => out.push_str(e),
                _ => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Agrees with serde_json on every way of writing every string.
        #[test]
        fn decodes_like_serde_json(s in "\\PC*|[\\x00-\\x7f]*|.*", ways in prop::collection::vec(any::<u8>(), 1..8)) {
            let raw = encode_variously(&s, &ways);
            let reference: String = serde_json::from_str(&format!("\"{raw}\"")).unwrap();
            prop_assert_eq!(&reference, &s);
            prop_assert_eq!(unescape(&raw), Ok(s));
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for (raw, why) in [
            ("abc\\", BadEscape::Unfinished),
            ("\\x41", BadEscape::Unknown),
            ("\\U0041", BadEscape::Unknown),
            ("\\u12", BadEscape::ShortUnicode),
            ("\\u12g4", BadEscape::ShortUnicode),
            ("\\ud800", BadEscape::LoneSurrogate),
            ("\\ud800x", BadEscape::LoneSurrogate),
            ("\\ud800\\u0041", BadEscape::LoneSurrogate),
            ("\\udc00", BadEscape::LoneSurrogate),
            ("\\udbff\\udbff", BadEscape::LoneSurrogate),
        ] {
            assert_eq!(unescape(raw), Err(why), "{raw}");
            assert!(
                serde_json::from_str::<String>(&format!("\"{raw}\"")).is_err(),
                "serde_json accepts {raw}"
            );
        }
        assert_eq!(unescape("\\ud83d\\ude00 ok"), Ok("\u{1F600} ok".into()));
        assert_eq!(unescape("\\u00e9\\n"), Ok("é\n".into()));
    }
}
