//! The result cache behind `Redactor::redact_cached`: same answers as `redact`, bounded, scoped
//! to its redactor.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use clawgate_protocol::SecretString;
use clawgate_redact::{CacheStats, Redactor};

const VAULT_VALUE: &str = "Vv9-cache-secret-0123456789";

fn redactor(budget: usize) -> Redactor {
    Redactor::builder()
        .vault_value(
            "cache_test".parse().unwrap(),
            SecretString::new(VAULT_VALUE.into()),
        )
        .placeholder_key([5; 32])
        .cache_bytes(budget)
        .build()
        .unwrap()
}

/// Texts long enough to be cached, with and without secrets of every kind.
fn texts() -> Vec<String> {
    let filler = "The build passed; the deploy step reads its settings from the environment. ";
    let mut out = Vec::new();
    for i in 0..40 {
        let secret = match i % 5 {
            0 => String::new(),
            1 => format!("GITHUB_TOKEN=ghp_N7ITxKLUkX0vyOYx6tzSnWQ36xgB0Oz{i:05}\n"),
            2 => format!("db password: {VAULT_VALUE} (copy {i}), again {VAULT_VALUE}\n"),
            3 => format!("client_secret = \"Zx9kQ2mP7vR4tY8wL1nB6cH3jF5s{i:04}\"\n"),
            _ => format!("Authorization: Bearer sk_live_4eC39HqLyjWDarjtT1zdp7{i:03}\n"),
        };
        out.push(format!(
            "#{i} {}{secret}{}",
            filler.repeat(3 + i % 4),
            filler
        ));
    }
    out
}

#[test]
fn cached_answers_equal_uncached_ones_on_every_call() {
    let r = redactor(1 << 20);
    let texts = texts();
    for round in 0..3 {
        for t in &texts {
            assert_eq!(r.redact_cached(t), r.redact(t), "round {round}: {t}");
            assert_eq!(r.scan_cached(t), r.scan(t), "round {round}: {t}");
        }
    }
    let stats = r.cache_stats();
    // Each text missed once (its first `redact_cached`), everything after hit.
    assert_eq!(stats.misses, texts.len() as u64);
    assert_eq!(stats.hits, 5 * texts.len() as u64);
    assert_eq!(stats.entries, texts.len());
    // Secrets really are redacted on the cached path.
    let with_vault = &texts[2];
    let out = r.redact_cached(with_vault);
    assert!(!out.contains(VAULT_VALUE), "{out}");
    assert_eq!(out.matches("SECRET_REF(cache_test)").count(), 2, "{out}");
}

#[test]
fn short_texts_are_not_cached() {
    let r = redactor(1 << 20);
    let short = "token: ghp_N7ITxKLUkX0vyOYx6tzSnWQ36xgB0Oz5eGSQ";
    for _ in 0..3 {
        assert_eq!(r.redact_cached(short), r.redact(short));
    }
    assert_eq!(r.cache_stats(), CacheStats::default());
}

#[test]
fn the_cache_stays_bounded() {
    let budget = 16 * 1024;
    let r = redactor(budget);
    let filler = "log line without anything secret in it, repeated to pass the size floor. ";
    for i in 0..5000 {
        let text = format!("{i}: {}", filler.repeat(4));
        assert_eq!(r.redact_cached(&text), text.as_str());
        // Entries with findings weigh more.
        let secret = format!("{text} GITHUB_TOKEN=ghp_N7ITxKLUkX0vyOYx6tzSnWQ36xgB0Oz{i:05}");
        assert_eq!(r.redact_cached(&secret), r.redact(&secret));
    }
    let stats = r.cache_stats();
    assert!(stats.bytes <= budget, "{stats:?} for a budget of {budget}");
    assert!(stats.entries > 20, "{stats:?}");
    // Recent texts are still there.
    let recent = format!("{}: {}", 4999, filler.repeat(4));
    let before = r.cache_stats().hits;
    r.redact_cached(&recent);
    assert_eq!(r.cache_stats().hits, before + 1);
    r.clear_cache();
    assert_eq!(r.cache_stats().entries, 0);
}

#[test]
fn a_zero_capacity_turns_the_cache_off() {
    let r = redactor(0);
    for t in texts() {
        assert_eq!(r.redact_cached(&t), r.redact(&t));
        assert_eq!(r.redact_cached(&t), r.redact(&t));
    }
    assert_eq!(r.cache_stats(), CacheStats::default());
}

/// A new vault means a new redactor, and a new redactor starts with an empty cache: a text
/// that was clean for the old vault is redacted under the new one.
#[test]
fn results_never_cross_redactors() {
    let text = format!(
        "{} the new value {VAULT_VALUE} appears here",
        "padding for the cache size floor. ".repeat(10)
    );
    let without = Redactor::builder().build().unwrap();
    assert_eq!(without.redact_cached(&text), text.as_str());
    let with = redactor(1024);
    let out = with.redact_cached(&text);
    assert!(out.contains("SECRET_REF(cache_test)"), "{out}");
}

#[test]
fn concurrent_callers_get_the_same_answers() {
    let r = std::sync::Arc::new(redactor(64 * 1024));
    let texts = std::sync::Arc::new(texts());
    let threads: Vec<_> = (0..4)
        .map(|k| {
            let (r, texts) = (r.clone(), texts.clone());
            std::thread::spawn(move || {
                for i in 0..200 {
                    let t = &texts[(i * 7 + k) % texts.len()];
                    assert_eq!(r.redact_cached(t), r.redact(t));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = r.cache_stats();
    assert_eq!(stats.hits + stats.misses, 800);
}

#[test]
fn debug_output_never_shows_a_value_or_the_key() {
    let value = "sk_live_debug_must_not_show_this_0123456789";
    let builder = clawgate_redact::Redactor::builder()
        .vault_value(
            "stripe".parse().unwrap(),
            clawgate_protocol::SecretString::new(value.into()),
        )
        .placeholder_key([0xAB; 32]);
    let shown = format!("{builder:?}");
    assert!(!shown.contains(value) && !shown.contains("171"), "{shown}");
    let redactor = builder.build().unwrap();
    let shown = format!("{redactor:?}");
    assert!(!shown.contains(value) && !shown.contains("171"), "{shown}");
}
