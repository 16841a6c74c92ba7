//! The rule detector's shortcuts (anchored search at keyword hits, windows cut at whitespace,
//! match-only search for token formats) change how rules are searched, never what they find:
//! on the generated corpus and on random mixes of keywords, secrets and separators, findings
//! equal those of the plain search.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod corpusgen;

use clawgate_redact::rules::{RuleDetector, default_rules};
use clawgate_redact::{Detector, Finding};
use proptest::prelude::*;

fn findings(detector: &RuleDetector, text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    detector.find(text, &mut out);
    out.sort_by(|a, b| (a.start, a.end, &a.rule).cmp(&(b.start, b.end, &b.rule)));
    out
}

fn detectors() -> (RuleDetector, RuleDetector) {
    (
        RuleDetector::with_rules(default_rules()).unwrap(),
        RuleDetector::without_shortcuts(default_rules()).unwrap(),
    )
}

#[test]
fn shortcuts_find_what_the_plain_search_finds_on_the_generated_corpus() {
    let (fast, plain) = detectors();
    let vault = corpusgen::vault(7, 50);
    let docs = corpusgen::corpus(7, 400, &vault);
    let mut total = 0;
    for doc in &docs {
        let expected = findings(&plain, &doc.text);
        total += expected.len();
        assert_eq!(findings(&fast, &doc.text), expected, "{}", doc.name);
    }
    assert!(
        total > 400,
        "the corpus exercises the rules ({total} findings)"
    );
}

/// Pieces that start, end and break matches: keywords in both cases, values, separators.
const PIECES: &[&str] = &[
    "password",
    "PASSWORD",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "Secret_Key",
    "://",
    "https://",
    "postgres://app:",
    "@db.internal",
    "ghp_",
    "github_pat_",
    "AKIA",
    "akia",
    "sk_live_",
    "sk-proj-",
    "xoxb-",
    "eyJ",
    "eyJhbGciOiJIUzI1NiJ9.",
    "Bearer ",
    "bearer\t",
    "Basic ",
    "SK",
    "npm_",
    "hf_",
    "AIza",
    "AccountKey=",
    "SG.",
    "key-",
    " = ",
    "=",
    ": ",
    ":",
    "\"",
    "'",
    "`",
    "\\\"",
    " is ",
    "\n",
    " ",
    "\t",
    "(",
    ")",
    ",",
    "value: ",
    "--password ",
    "curl -u ",
    "0123456789abcdef0123456789abcdef",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
    "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF",
    "x",
    "_",
    "-",
    ".",
    "/",
    "+",
    "&ssl=true",
    "[REDACTED:",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn shortcuts_find_what_the_plain_search_finds_on_random_text(
        picks in proptest::collection::vec(0..PIECES.len(), 1..40),
    ) {
        thread_local! {
            static DETECTORS: (RuleDetector, RuleDetector) = detectors();
        }
        let text: String = picks.iter().map(|&i| PIECES[i]).collect();
        DETECTORS.with(|(fast, plain)| {
            prop_assert_eq!(findings(fast, &text), findings(plain, &text), "{:?}", text);
            Ok(())
        })?;
    }
}
