//! Vault values in every form they take on the way to a prompt.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use clawgate_protocol::{SecretName, SecretString};

use crate::{Detector, DetectorKind, Error, Finding};

/// Values shorter than this are not searched for: a four-digit PIN would redact every year in
/// every prompt. They are reported by [`VaultDetector::skipped`].
pub const MIN_VALUE_LEN: usize = crate::scan::WINDOW;

/// How a value was encoded where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Raw,
    Json,
    Url,
    HexLower,
    HexUpper,
    Base64,
    Base64Url,
}

impl Encoding {
    fn rule(self) -> &'static str {
        match self {
            Self::Raw => "vault.raw",
            Self::Json => "vault.json",
            Self::Url => "vault.url",
            Self::HexLower | Self::HexUpper => "vault.hex",
            Self::Base64 => "vault.base64",
            Self::Base64Url => "vault.base64url",
        }
    }

    /// Encoded matches are widened to the whole encoded token around them: the characters at the
    /// edges of a base64 run also carry bits of the secret.
    fn widen(self) -> Option<fn(u8) -> bool> {
        match self {
            Self::Base64 => Some(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')),
            Self::Base64Url => {
                Some(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
            }
            Self::HexLower | Self::HexUpper => Some(|b| b.is_ascii_hexdigit()),
            _ => None,
        }
    }
}

/// Finds vault values (and their encodings) in one pass of the hashed literal set in `scan.rs`.
pub struct VaultDetector {
    literals: crate::scan::LiteralSet,
    /// Pattern id → (index into `names`, encoding).
    patterns: Vec<(usize, Encoding)>,
    names: Vec<SecretName>,
    skipped: Vec<SecretName>,
    /// The longest literal (value or encoding), in bytes.
    max_len: usize,
}

impl std::fmt::Debug for VaultDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultDetector")
            .field("secrets", &self.names.len())
            .field("patterns", &self.literals.len())
            .finish()
    }
}

/// The middle of `bytes`' base64 encoding when it starts `offset` (0, 1 or 2) bytes into a
/// 3-byte group: the characters that depend on `bytes` alone, whatever surrounds them.
fn base64_core(engine: &impl Engine, bytes: &[u8], offset: usize) -> String {
    let mut buf = vec![0u8; offset];
    buf.extend_from_slice(bytes);
    let encoded = engine.encode(&buf);
    let first = (offset * 8).div_ceil(6);
    let last = (buf.len() * 8) / 6; // chars wholly inside the value end here
    encoded.get(first..last).unwrap_or_default().to_owned()
}

/// Percent-encodings as common encoders write them: RFC 3986 (`encodeURIComponent`), Python's
/// `quote` (keeps `/`), HTML forms (space as `+`), everything-but-alphanumerics, and lower-case
/// hex digits.
fn url_encodings(value: &str) -> Vec<String> {
    let encode = |keep: &dyn Fn(u8) -> bool, space_plus: bool, lower: bool| {
        let mut out = String::with_capacity(value.len() * 3);
        for b in value.bytes() {
            if keep(b) {
                out.push(char::from(b));
            } else if space_plus && b == b' ' {
                out.push('+');
            } else if lower {
                out.push_str(&format!("%{b:02x}"));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    vec![
        encode(&unreserved, false, false),
        encode(&|b| unreserved(b) || b == b'/', false, false),
        encode(&unreserved, true, false),
        encode(&|b: u8| b.is_ascii_alphanumeric(), false, false),
        encode(&unreserved, false, true),
    ]
}

fn json_escape(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

/// `value` with every character written as a JSON `\uXXXX` escape (UTF-16 code units).
fn unicode_escape(value: &str, upper: bool) -> String {
    // Written digit by digit: `format!` per unit cost a third of a 1,000-value build, and left
    // each unit of the value behind in a freed temporary.
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = String::with_capacity(value.len() * 6);
    for unit in value.encode_utf16() {
        out.push_str("\\u");
        for shift in [12, 8, 4, 0] {
            out.push(char::from(digits[usize::from((unit >> shift) & 0xf)]));
        }
    }
    out
}

/// Every searchable form of one value.
fn variants(value: &str) -> Vec<(String, Encoding)> {
    let bytes = value.as_bytes();
    let mut out = vec![(value.to_owned(), Encoding::Raw)];
    let mut add = |s: String, e: Encoding| {
        if s.len() >= MIN_VALUE_LEN && !out.iter().any(|(have, _)| *have == s) {
            out.push((s, e));
        }
    };
    let json = json_escape(value);
    // JSON inside JSON (a tool's JSON output quoted into a message): escaped twice.
    add(json_escape(&json), Encoding::Json);
    add(json, Encoding::Json);
    // Every character as a JSON `\uXXXX` escape (what `ensure_ascii`-style encoders and
    // obfuscating agents write), lower- and upper-case hex.
    add(unicode_escape(value, false), Encoding::Json);
    add(unicode_escape(value, true), Encoding::Json);
    for encoded in url_encodings(value) {
        add(encoded, Encoding::Url);
    }
    add(hex::encode(bytes), Encoding::HexLower);
    add(hex::encode_upper(bytes), Encoding::HexUpper);
    for offset in 0..3 {
        add(
            base64_core(&STANDARD_NO_PAD, bytes, offset),
            Encoding::Base64,
        );
        add(
            base64_core(&URL_SAFE_NO_PAD, bytes, offset),
            Encoding::Base64Url,
        );
    }
    out
}

impl VaultDetector {
    /// Builds the literal set over every value of `vault` and its encodings.
    pub fn new(vault: &[(SecretName, SecretString)]) -> Result<Self, Error> {
        let mut names = Vec::new();
        let mut skipped = Vec::new();
        let mut literals: Vec<String> = Vec::new();
        let mut patterns = Vec::new();
        for (name, value) in vault {
            if value.len() < MIN_VALUE_LEN {
                skipped.push(name.clone());
                continue;
            }
            let index = names.len();
            names.push(name.clone());
            for (literal, encoding) in variants(value.expose()) {
                literals.push(literal);
                patterns.push((index, encoding));
            }
        }
        let max_len = literals.iter().map(String::len).max().unwrap_or(0);
        if literals.len() > crate::scan::MAX_LITERALS
            || literals.iter().map(String::len).sum::<usize>() > crate::scan::MAX_LITERAL_BYTES
        {
            for l in &mut literals {
                zeroize::Zeroize::zeroize(l);
            }
            return Err(Error::Build {
                what: "vault literal set",
                reason: format!("{} values and their encodings are too many", names.len()),
            });
        }
        let set = crate::scan::LiteralSet::new(literals.iter().map(String::as_bytes));
        // The literals are secret: wipe our copies now that the set holds them.
        for l in &mut literals {
            zeroize::Zeroize::zeroize(l);
        }
        Ok(Self {
            literals: set,
            patterns,
            names,
            skipped,
            max_len,
        })
    }

    /// The longest searched form of any value, in bytes (a match crossing a boundary between
    /// two strings lies within this distance of it).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Names of values too short to search for.
    pub fn skipped(&self) -> &[SecretName] {
        &self.skipped
    }
}

impl Detector for VaultDetector {
    fn find(&self, text: &str, out: &mut Vec<Finding>) {
        let bytes = text.as_bytes();
        // Sorted by position, then pattern: the order findings are merged in decides which of two
        // identical spans (two secrets' base64 cores widened to the same token) labels the span.
        for (start, end, id) in self.literals.find_sorted(bytes) {
            let Some(&(index, encoding)) = self.patterns.get(id) else {
                continue;
            };
            let (mut start, mut end) = (start, end);
            if let Some(part_of_token) = encoding.widen() {
                while start > 0 && part_of_token(bytes[start - 1]) {
                    start -= 1;
                }
                while end < bytes.len() && part_of_token(bytes[end]) {
                    end += 1;
                }
            }
            out.push(Finding {
                start,
                end,
                rule: encoding.rule().into(),
                detector: DetectorKind::Vault,
                secret: self.names.get(index).cloned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_cores_appear_in_every_alignment() {
        let value = b"hunter2-secret";
        for prefix in ["", "a", "ab", "abc", "user:", "u:"] {
            let mut whole = prefix.as_bytes().to_vec();
            whole.extend_from_slice(value);
            whole.extend_from_slice(b"!tail");
            let encoded = STANDARD_NO_PAD.encode(&whole);
            let found = (0..3).any(|o| encoded.contains(&base64_core(&STANDARD_NO_PAD, value, o)));
            assert!(found, "prefix {prefix:?}");
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(
            unicode_escape("pg-é", false),
            "\\u0070\\u0067\\u002d\\u00e9"
        );
        assert_eq!(unicode_escape("pg-é", true), "\\u0070\\u0067\\u002D\\u00E9");
        assert_eq!(url_encodings("a b/c")[0], "a%20b%2Fc");
        assert_eq!(url_encodings("a b/c")[1], "a%20b/c");
        assert_eq!(url_encodings("a b/c")[2], "a+b%2Fc");
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
        let v = variants("p@ss w\"rd");
        assert!(
            v.iter()
                .any(|(s, e)| *e == Encoding::Json && s == "p@ss w\\\"rd")
        );
        assert!(
            v.iter()
                .any(|(s, e)| *e == Encoding::Url && s == "p%40ss%20w%22rd")
        );
    }
}
