//! Properties of redaction (issue #5), on generated prompt text with planted secrets
//! (`tests/corpusgen`):
//!
//! * redaction is idempotent: `redact(redact(x)) == redact(x)`;
//! * the output never contains a vault value, raw or in any searched encoding;
//! * splitting a string differently across JSON messages does not hide a vault value
//!   ([`Redactor::redact_parts`] over the message strings in order).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod corpusgen;

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clawgate_protocol::SecretString;
use clawgate_redact::Redactor;
use proptest::prelude::*;

fn vault() -> &'static corpusgen::Vault {
    static VAULT: OnceLock<corpusgen::Vault> = OnceLock::new();
    VAULT.get_or_init(|| corpusgen::vault(42, 60))
}

fn redactor() -> &'static Redactor {
    static REDACTOR: OnceLock<Redactor> = OnceLock::new();
    REDACTOR.get_or_init(|| {
        Redactor::builder()
            .vault_values(vault().entries.iter().map(|(n, v)| {
                (
                    n.parse().unwrap(),
                    SecretString::new(v.clone().into_boxed_str().into()),
                )
            }))
            .placeholder_key([5; 32])
            .cache_bytes(0)
            .build()
            .unwrap()
    })
}

/// Every form of `value` the output must not contain.
fn forms(value: &str) -> Vec<String> {
    vec![
        value.to_owned(),
        corpusgen::json_escape(value),
        corpusgen::url_encode(value),
        hex::encode(value),
        hex::encode_upper(value),
        STANDARD.encode(value),
    ]
}

/// The vault value (by index) whose form `out` contains, if any.
fn leaked(out: &str) -> Option<(usize, usize)> {
    vault().entries.iter().enumerate().find_map(|(i, (_, v))| {
        forms(v)
            .iter()
            .position(|f| out.contains(f.as_str()))
            .map(|form| (i, form))
    })
}

/// One generated document (every genre, planted rule secrets, vault values, negatives).
fn document(seed: u64) -> String {
    let docs = corpusgen::corpus(seed, 1, vault());
    docs.into_iter().next().unwrap().text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn redaction_is_idempotent(seed in any::<u64>(), noise in "\\PC{0,40}") {
        let text = format!("{noise}{}{noise}", document(seed));
        let r = redactor();
        let once = r.redact(&text).into_owned();
        prop_assert_eq!(r.redact(&once).into_owned(), once);
    }

    #[test]
    fn output_never_contains_a_vault_value(seed in any::<u64>(), pick in 0usize..60, before in "\\PC{0,24}", after in "\\PC{0,24}") {
        // A generated document (with its own vault plants), plus one value in every form.
        let value = &vault().entries[pick].1;
        let mut text = document(seed);
        for f in forms(value) {
            text.push_str(&format!("\n{before}{f}{after}\n"));
        }
        let out = redactor().redact(&text).into_owned();
        prop_assert_eq!(leaked(&out), None);
    }

    /// A vault value (raw, or base64 as in a Basic header) split at arbitrary points over
    /// consecutive messages of a chat request, with arbitrary text around it: no message
    /// holds it whole, and after `redact_parts` no form of it survives in the request.
    #[test]
    fn a_vault_value_split_across_messages_is_found(
        pick in 0usize..60,
        encode in any::<bool>(),
        cuts in proptest::collection::vec(0.0f64..1.0, 1..4),
        before in "\\PC{0,30}",
        after in "\\PC{0,30}",
    ) {
        let (_, value) = &vault().entries[pick];
        let secret = if encode { STANDARD.encode(format!("deploy:{value}")) } else { value.clone() };
        let whole = format!("{before}{secret}{after}");
        // Cut positions inside the secret (at character boundaries), in order, distinct.
        let mut at: Vec<usize> = cuts
            .iter()
            .map(|c| before.len() + ((secret.len() as f64 * c) as usize).clamp(1, secret.len() - 1))
            .filter(|&i| whole.is_char_boundary(i))
            .collect();
        at.sort_unstable();
        at.dedup();
        prop_assume!(!at.is_empty());
        let mut pieces = Vec::new();
        let mut last = 0;
        for &i in &at {
            pieces.push(&whole[last..i]);
            last = i;
        }
        pieces.push(&whole[last..]);
        // The request as an agent sends it, and the message strings as the proxy walks them.
        let request = serde_json::json!({
            "model": "claude-sonnet-4-5",
            "messages": pieces.iter().map(|p| serde_json::json!({"role": "user", "content": p})).collect::<Vec<_>>(),
        });
        let contents: Vec<String> = request["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect();
        let parts: Vec<&str> = contents.iter().map(String::as_str).collect();
        // Each message alone does not hold the value: only the join finds it.
        let out = redactor().redact_parts(&parts);
        let joined: String = out.iter().map(|c| c.as_ref()).collect();
        prop_assert!(!joined.contains(value.as_str()), "value survived");
        prop_assert!(!joined.contains(secret.as_str()), "encoded value survived");
        prop_assert!(joined.contains("SECRET_REF("));
        // Every part that carries a piece of the secret was changed.
        for (i, o) in out.iter().enumerate() {
            let piece_start = at.get(i.wrapping_sub(1)).copied().unwrap_or(0);
            let piece_end = at.get(i).copied().unwrap_or(whole.len());
            let touches = piece_start < before.len() + secret.len() && piece_end > before.len();
            if touches {
                prop_assert_ne!(o.as_ref(), parts[i]);
            }
        }
    }

    /// Parts with no value across their boundaries redact exactly as each alone.
    #[test]
    fn parts_without_a_split_value_redact_as_alone(seed in any::<u64>(), split in 0.0f64..1.0) {
        let text = document(seed);
        let mut cut = (text.len() as f64 * split) as usize;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let parts = [&text[..cut], "\n---\n", &text[cut..]];
        let r = redactor();
        let across = r.scan_across(&parts);
        if across.iter().all(Vec::is_empty) {
            let out = r.redact_parts(&parts);
            for (o, p) in out.iter().zip(parts) {
                let alone = r.redact(p);
                prop_assert_eq!(o.as_ref(), alone.as_ref());
            }
        }
    }
}

/// `text` cut at the given fractions of its length (character boundaries, in order).
fn cut_at<'t>(text: &'t str, fractions: &[f64]) -> Vec<&'t str> {
    let mut at: Vec<usize> = fractions
        .iter()
        .map(|f| {
            let mut i = (text.len() as f64 * f) as usize;
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            i
        })
        .collect();
    at.sort_unstable();
    let mut parts = Vec::new();
    let mut last = 0;
    for i in at {
        parts.push(&text[last..i]);
        last = i;
    }
    parts.push(&text[last..]);
    parts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Skipping the seams a scan found clean loses nothing, also when the parts meet new
    /// neighbours (what the proxy relies on when it remembers clean seams between resent
    /// messages): the parts are a document with a vault value somewhere, cut anywhere (parts
    /// short and long, the value sometimes split).
    #[test]
    fn skipping_clean_seams_finds_the_same_pieces(
        seed in any::<u64>(),
        pick in 0usize..60,
        at in 0.0f64..1.0,
        cuts in proptest::collection::vec(0.0f64..1.0, 1..12),
        extra in "\\PC{0,400}",
    ) {
        let doc = document(seed);
        let mut i = (doc.len() as f64 * at) as usize;
        while !doc.is_char_boundary(i) {
            i -= 1;
        }
        let text = format!("{}{}{}", &doc[..i], vault().entries[pick].1, &doc[i..]);
        let parts = cut_at(&text, &cuts);
        let r = redactor();
        let first = r.scan_seams(&parts, |_| false);
        prop_assert_eq!(&first.pieces, &r.scan_across(&parts));
        let again = r.scan_seams(&parts, |k| first.clean[k]);
        prop_assert_eq!(&again.pieces, &first.pieces);
        // The same parts after a new first part (which may end with a value's beginning): the
        // remembered seams (shifted by one) still hold.
        let mut moved = vec![extra.as_str()];
        moved.extend(&parts);
        let fresh = r.scan_seams(&moved, |_| false);
        let skipped = r.scan_seams(&moved, |k| k >= 1 && first.clean[k - 1]);
        prop_assert_eq!(&skipped.pieces, &fresh.pieces);
    }
}

/// A seam is remembered only where it depends on its two parts alone. Here a value is split
/// over three parts with a short middle one; each of its two seams was clean where it was seen
/// before (with other neighbours), and believing both would miss the value.
#[test]
fn seams_around_a_short_part_are_always_scanned() {
    let r = redactor();
    let value = vault().entries[3].1.as_str();
    let (one, two) = (
        value.char_indices().nth(5).unwrap().0,
        value.char_indices().nth(10).unwrap().0,
    );
    let filler = "plain words. ".repeat(40);
    let a = format!("{filler}{}", &value[..one]);
    let b = &value[one..two];
    let c = format!("{}{filler}", &value[two..]);
    let before = r.scan_seams(&[&a, b, "zzz"], |_| false);
    let after = r.scan_seams(&["yyy", b, &c], |_| false);
    assert!(before.pieces.iter().chain(&after.pieces).all(Vec::is_empty));
    assert!(
        !before.clean[0] && !after.clean[1],
        "a short part's seams are not claimed"
    );
    let together = r.scan_seams(&[&a, b, &c], |_| true);
    assert!(together.pieces.iter().all(|p| !p.is_empty()));
    let out = r.redact_parts(&[&a, b, &c]);
    assert!(!out.concat().contains(value));
}

/// Every split point of a value over two strings, and three strings with a one-byte middle.
#[test]
fn every_split_point_is_found() {
    let r = redactor();
    for (_, value) in vault().entries.iter().take(12) {
        for cut in 1..value.len() {
            if !value.is_char_boundary(cut) {
                continue;
            }
            let a = format!("see: {}", &value[..cut]);
            let b = format!("{} -- end", &value[cut..]);
            let out = r.redact_parts(&[&a, &b]);
            let joined = format!("{}{}", out[0], out[1]);
            assert!(!joined.contains(value.as_str()), "cut at {cut}");
            assert!(
                out[0].ends_with(')') && out[0].contains("SECRET_REF("),
                "{}",
                out[0]
            );
            assert!(out[1].starts_with("SECRET_REF("), "{}", out[1]);
            assert!(out[0].starts_with("see: "));
            assert!(out[1].ends_with(" -- end"));
        }
        let mid = value.char_indices().nth(3).unwrap().0;
        let next = value.char_indices().nth(4).unwrap().0;
        let parts = [&value[..mid], &value[mid..next], &value[next..]];
        let out = r.redact_parts(&parts);
        assert!(
            out.iter()
                .all(|o| o.starts_with("SECRET_REF(") && o.ends_with(')')),
            "{} pieces not redacted",
            out.iter().filter(|o| !o.starts_with("SECRET_REF(")).count()
        );
    }
    // Strings that only look alike are left alone.
    let out = r.redact_parts(&["hello wor", "ld and more"]);
    assert_eq!(out, vec!["hello wor", "ld and more"]);
}
