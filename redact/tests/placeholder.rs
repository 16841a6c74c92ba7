//! `is_placeholder` decides which candidates are not secrets for every rule and for entropy; its
//! fast form (cheap tests first, branch-free pre-passes before the needle and mask scans) must
//! answer exactly as the plain form below, which it replaced, on every value of the generated
//! corpus (and every suffix of it) and on random mixes of needles, masks and token bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod corpusgen;

use clawgate_redact::rules::is_placeholder;
use proptest::prelude::*;

/// The plain form: every test evaluated, the needle and mask scans byte by byte.
fn reference(v: &[u8]) -> bool {
    const NEEDLES: &[&[u8]] = &[
        b"example",
        b"redacted",
        b"placeholder",
        b"your_",
        b"your-",
        b"changeme_",
    ];
    let scanned = &v[..v.len().min(160)];
    let has_needle = scanned.windows(2).enumerate().any(|(i, w)| {
        b"eErRpPyYcC".contains(&w[0]) && {
            let pair = [w[0].to_ascii_lowercase(), w[1].to_ascii_lowercase()];
            NEEDLES.iter().any(|n| {
                n[..2] == pair
                    && v.get(i..i + n.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(n))
            })
        }
    });
    let format_placeholder = v.first() == Some(&b'{') && {
        let inner = &v[1..];
        let end = inner.iter().position(|&b| b == b'}').unwrap_or(inner.len());
        inner[..end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b' '))
    };
    let masked = {
        let (mut run, mut longest) = (0, 0);
        for b in scanned {
            run = if matches!(b, b'x' | b'X' | b'*') {
                run + 1
            } else {
                0
            };
            longest = longest.max(run);
        }
        longest >= 4 && (longest >= 8 || longest * 4 >= scanned.len())
    };
    format_placeholder
        || v.starts_with(b"%s")
        || v.starts_with(b"SECRET_REF(")
        || v.starts_with(b"[REDACTED:")
        || v.starts_with(b"${")
        || v.starts_with(b"{{")
        || v.starts_with(b"<")
        || v.starts_with(b"$(")
        || v.starts_with(b"%(")
        || has_needle
        || masked
        || v.iter().all(|b| *b == v[0])
        || (v.contains(&b'*') && v.iter().all(u8::is_ascii_punctuation))
}

#[test]
fn fast_form_answers_as_the_plain_form_on_the_corpus() {
    let vault = corpusgen::vault(7, 50);
    let docs = corpusgen::corpus(7, 150, &vault);
    let mut checked = 0;
    let mut placeholders = 0;
    for doc in &docs {
        let bytes = doc.text.as_bytes();
        // Every whitespace-separated token, and each of its suffixes (values start anywhere).
        for token in bytes.split(u8::is_ascii_whitespace) {
            for start in 0..token.len() {
                let v = &token[start..];
                let expected = reference(v);
                assert_eq!(is_placeholder(v), expected, "{}", doc.name);
                checked += 1;
                placeholders += usize::from(expected);
            }
        }
    }
    assert!(
        checked > 100_000 && placeholders > 1_000,
        "{checked} {placeholders}"
    );
}

/// Pieces of placeholders and of values that are not: needles in every case, masks, prefixes,
/// near misses, token bytes.
const PIECES: &[&str] = &[
    "example",
    "EXAMPLE",
    "Example",
    "exampl",
    "redacted",
    "REDACTED",
    "placeholder",
    "your_",
    "YOUR-",
    "your",
    "changeme_",
    "changeme",
    "x",
    "X",
    "*",
    "xxxx",
    "XXXXXXXX",
    "****",
    "{",
    "}",
    "{{",
    "${",
    "$(",
    "%(",
    "%s",
    "<",
    "[REDACTED:",
    "SECRET_REF(",
    "e",
    "E",
    "r",
    "p",
    "y",
    "c",
    "h",
    "l",
    "o",
    "a",
    "7",
    "_",
    "-",
    ".",
    ":",
    " ",
    "aB3dE6gH9jK2mN5p",
    "\u{e9}",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn fast_form_answers_as_the_plain_form_on_random_values(
        picks in proptest::collection::vec(0..PIECES.len(), 0..60),
    ) {
        let v: String = picks.iter().map(|&i| PIECES[i]).collect();
        prop_assert_eq!(is_placeholder(v.as_bytes()), reference(v.as_bytes()), "{:?}", v);
    }

    #[test]
    fn fast_form_answers_as_the_plain_form_on_random_bytes(
        v in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        prop_assert_eq!(is_placeholder(&v), reference(&v));
    }
}
