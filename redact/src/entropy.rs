//! Unnamed high-entropy tokens, only as the value assigned to a key that names a secret
//! (`client_secret: …`, `"apiToken": "…"`, `SESSION_KEY=…`), and never for what is known not to
//! be a secret. Entropy alone redacted 45%
//! of the hard negatives in our measurements (every git SHA, lockfile hash, image and public
//! key), so context gates it and the exclusions below trim it.

use regex::bytes::{Regex, RegexBuilder};

use crate::rules::{DOCUMENTED_EXAMPLES, is_placeholder};
use crate::{Detector, DetectorKind, Error, Finding};

/// Rule id of entropy findings.
pub const RULE: &str = "high-entropy-token";
const CONTEXT: &[&str] = &[
    "secret",
    "token",
    "key",
    "passw",
    "auth",
    "credential",
    "api",
    "access",
    "private",
    "bearer",
    "signature",
    "session",
    "cookie",
];
const MIN_LEN: usize = 20;

/// The entropy detector.
pub struct EntropyDetector {
    context: crate::scan::KeywordSet,
    token: Regex,
}

impl std::fmt::Debug for EntropyDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntropyDetector")
    }
}

/// Shannon entropy in bits per byte.
pub fn shannon(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for b in bytes {
        counts[usize::from(*b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| f64::from(*c) / n)
        .map(|p| -p * p.log2())
        .sum()
}

fn is_uuid(t: &[u8]) -> bool {
    t.len() == 36
        && t.iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// Tokens that look random but are not secrets.
fn known_not_secret(text: &[u8], start: usize, token: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[
        b"sha1-", b"sha256-", b"sha384-", b"sha512-", b"sha256:", b"sha512:", b"h1:", b"md5-",
    ];
    const BEFORE: &[&[u8]] = &[
        b"base64,",
        b"ssh-rsa ",
        b"ssh-ed25519 ",
        b"ssh-dss ",
        b"ecdsa-sha2-",
        b"PUBLIC KEY-----",
        b"CERTIFICATE-----",
        b"integrity",
        b"\"resolved\"",
        b"checksum",
        b"digest",
        b"commit",
        b"sha",
        b"hash",
    ];
    if is_uuid(token) || PREFIXES.iter().any(|p| token.starts_with(p)) || is_placeholder(token) {
        return true;
    }
    if DOCUMENTED_EXAMPLES.iter().any(|e| e.as_bytes() == token) {
        return true;
    }
    let before = &text[start.saturating_sub(48)..start];
    BEFORE
        .iter()
        .any(|p| before.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p)))
}

/// Random enough to be a credential: hex tokens need ≥ 3.0 bits/byte and 32+ characters,
/// others ≥ 3.7 with letters and digits mixed (long identifiers rarely carry digits in the
/// middle of mixed case).
fn random_enough(token: &[u8]) -> bool {
    let entropy = shannon(token);
    if token.iter().all(u8::is_ascii_hexdigit) {
        return token.len() >= 32 && entropy >= 3.0;
    }
    let digits = token.iter().filter(|b| b.is_ascii_digit()).count();
    let upper = token.iter().any(u8::is_ascii_uppercase);
    let lower = token.iter().any(u8::is_ascii_lowercase);
    entropy >= 3.7
        && digits >= 2
        && (upper || lower)
        && (upper && lower || digits * 4 >= token.len())
}

impl EntropyDetector {
    /// Builds the detector.
    pub fn new() -> Result<Self, Error> {
        let context = crate::scan::KeywordSet::new(CONTEXT.iter().copied());
        let token = RegexBuilder::new(r"[A-Za-z0-9][A-Za-z0-9+/=_\-.~]{19,511}")
            .unicode(false)
            .build()
            .map_err(|e| Error::Build {
                what: "entropy token regex",
                reason: e.to_string(),
            })?;
        Ok(Self { context, token })
    }
}

impl Detector for EntropyDetector {
    fn find(&self, text: &str, out: &mut Vec<Finding>) {
        let bytes = text.as_bytes();
        let mut values = Vec::new();
        self.context.find_all(bytes, |_, end, _| {
            if let Some(v) = assigned_value(bytes, end) {
                values.push(v);
            }
        });
        values.dedup();
        for (from, to) in values {
            let Some(m) = self.token.find(&bytes[from..to]) else {
                continue;
            };
            if m.start() != 0 {
                continue;
            }
            let token = trim_punctuation(m.as_bytes());
            if token.len() >= MIN_LEN
                && !known_not_secret(bytes, from, token)
                && random_enough(token)
            {
                out.push(Finding {
                    start: from,
                    end: from + token.len(),
                    rule: RULE.into(),
                    detector: DetectorKind::Entropy,
                    secret: None,
                });
            }
        }
    }
}

/// The value assigned to a key that contains a context keyword ending at `key_end`: the rest of
/// the key (letters, digits, `_-.`), optional closing quote, `:`, `=`, `:=` or `=>`, optional
/// spaces and opening quote, then the value up to the end of its token. Same line only.
fn assigned_value(bytes: &[u8], key_end: usize) -> Option<(usize, usize)> {
    let mut i = key_end;
    let key_limit = (key_end + 32).min(bytes.len());
    while i < key_limit
        && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'-' | b'.'))
    {
        i += 1;
    }
    if i < bytes.len() && matches!(bytes[i], b'"' | b'\'') {
        i += 1;
    }
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    match bytes.get(i..i + 2) {
        Some(b":=") | Some(b"=>") => i += 2,
        _ if matches!(bytes.get(i), Some(b':' | b'=')) => i += 1,
        _ => return None,
    }
    while i < bytes.len() && matches!(bytes[i], b' ' | b'"' | b'\'' | b'\t') {
        i += 1;
    }
    let start = i;
    while i < bytes.len() && i - start < 512 && crate::is_token_byte(bytes[i]) {
        i += 1;
    }
    (i > start).then_some((start, i))
}

/// Drops sentence punctuation a token regex swallows at its end (`key: abc…xyz.`).
fn trim_punctuation(t: &[u8]) -> &[u8] {
    let mut end = t.len();
    while end > 0 && matches!(t[end - 1], b'.' | b'-' | b'~') {
        end -= 1;
    }
    &t[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomness_table() {
        for (token, want) in [
            ("Zx9kQ2mP7vR4tY8wL1nB6cH3jF5sD0aG", true),
            (
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                true,
            ),
            ("this_is_a_long_variable_name", false),
            ("ThisIsALongCamelCaseIdentifier", false),
            ("/usr/local/lib/python3.11/site-packages", false),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ] {
            assert_eq!(random_enough(token.as_bytes()), want, "{token}");
        }
        assert!(is_uuid(b"123e4567-e89b-12d3-a456-426614174000"));
    }
}
