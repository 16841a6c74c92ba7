//! `Redactor::redact_capturing`: unknown secrets offered for capture become
//! `SECRET_REF(captured_<rule>_<tag>)`, and once the vault holds them the vault detector writes
//! exactly the same text (prompt caching sees no change).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod corpusgen;

use std::sync::Mutex;

use clawgate_protocol::{SecretName, SecretString};
use clawgate_redact::capture::{captured_name, captured_tag};
use clawgate_redact::{Capture, DetectorKind, Offer, Redactor};

const KEY: [u8; 32] = [0x42; 32];
const GH: &str = "ghp_N7ITxKLUkX0vyOYx6tzSnWQ36xgB0Oz12345";

/// Takes everything it is offered (or nothing), remembering names, rules and values.
#[derive(Default)]
struct Recorder {
    refuse: bool,
    taken: Mutex<Vec<(String, String, DetectorKind, String)>>,
}

impl Capture for Recorder {
    fn offer(&self, o: &Offer<'_>) -> Option<SecretName> {
        if self.refuse {
            return None;
        }
        self.taken.lock().unwrap().push((
            o.name.as_str().to_owned(),
            o.rule.to_owned(),
            o.detector,
            o.value.to_owned(),
        ));
        Some(o.name.clone())
    }
}

fn redactor() -> Redactor {
    Redactor::builder().placeholder_key(KEY).build().unwrap()
}

#[test]
fn a_captured_secret_gets_the_name_of_its_placeholder_and_the_vault_later_agrees() {
    let r = redactor();
    let text = format!("$ gh auth token\n{GH}\nand again: GITHUB_TOKEN={GH}\n");
    let placeholder = r.placeholder("github-pat", GH);
    let tag = &placeholder[placeholder.len() - 11..placeholder.len() - 1];
    let rec = Recorder::default();
    let captured = r.redact_capturing(&text, &rec).into_owned();
    let name = format!("captured_github-pat_{tag}");
    assert_eq!(
        captured,
        format!(
            "$ gh auth token\nSECRET_REF({name})\nand again: GITHUB_TOKEN=SECRET_REF({name})\n"
        )
    );
    let taken = rec.taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 1, "one offer per distinct value: {taken:?}");
    assert_eq!(taken[0].0, name);
    assert_eq!(taken[0].2, DetectorKind::Rule);
    assert_eq!(taken[0].3, GH);
    assert_eq!(captured_tag(&name), Some(tag));

    // The vault now holds the value under that name: the rebuilt redactor, capture or not,
    // writes the identical text.
    let rebuilt = Redactor::builder()
        .placeholder_key(KEY)
        .vault_value(name.parse().unwrap(), SecretString::new(GH.into()))
        .build()
        .unwrap();
    assert_eq!(rebuilt.redact(&text), captured);
    assert_eq!(rebuilt.redact_cached(&text.repeat(20)), captured.repeat(20));
    assert_eq!(rebuilt.redact_capturing(&text, &rec), captured);
    assert_eq!(
        rec.taken.lock().unwrap().len(),
        1,
        "a vault value is not offered"
    );
}

#[test]
fn a_refused_offer_keeps_the_placeholder_and_plain_redact_never_offers() {
    let r = redactor();
    let text = format!("token {GH}");
    let refusing = Recorder {
        refuse: true,
        ..Recorder::default()
    };
    let placeholder = r.placeholder("github-pat", GH);
    assert_eq!(
        r.redact_capturing(&text, &refusing),
        format!("token {placeholder}")
    );
    assert_eq!(r.redact(&text), format!("token {placeholder}"));
}

#[test]
fn short_values_and_plain_words_are_never_offered() {
    let r = redactor();
    let rec = Recorder::default();
    let text = "DB_PASSWORD=postgres\npassword=\"hunter2\"\n";
    let out = r.redact_capturing(text, &rec);
    assert_eq!(out, r.redact(text), "placeholders as without capture");
    assert!(out.contains("[REDACTED:"), "{out}");
    assert!(rec.taken.lock().unwrap().is_empty());
}

#[test]
fn long_texts_answer_from_the_cache_but_still_offer() {
    let r = redactor();
    let rec = Recorder::default();
    let text = format!("{}{GH}\n", "filler line of a long tool result\n".repeat(20));
    let first = r.redact_capturing(&text, &rec).into_owned();
    let second = r.redact_capturing(&text, &rec).into_owned();
    assert_eq!(first, second);
    assert!(first.contains("SECRET_REF(captured_github-pat_"));
    assert_eq!(rec.taken.lock().unwrap().len(), 2, "offered on every call");
    // The cache does not remember the capture's answer.
    assert!(r.redact_cached(&text).contains("[REDACTED:github-pat:"));
    assert_eq!(
        captured_name("github-pat", "0123456789").unwrap().as_str(),
        "captured_github-pat_0123456789"
    );
}

#[derive(serde::Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    text: String,
}

/// `text` redacted by `r` capturing every unknown secret, and `text` redacted by a redactor
/// whose vault is `known` plus the captured values (`None` when nothing was captured).
fn capture_then_rebuild(
    r: &Redactor,
    known: &[(SecretName, SecretString)],
    text: &str,
) -> Option<(String, String)> {
    let rec = Recorder::default();
    let captured = r.redact_capturing(text, &rec).into_owned();
    let taken = rec.taken.into_inner().unwrap();
    if taken.is_empty() {
        return None;
    }
    let rebuilt = Redactor::builder()
        .placeholder_key(KEY)
        .vault_values(known.to_vec())
        .vault_values(
            taken
                .iter()
                .map(|(n, _, _, v)| (n.parse().unwrap(), SecretString::new(v.clone()))),
        )
        .build()
        .unwrap();
    let again = rebuilt.redact(text).into_owned();
    Some((captured, again))
}

/// Over the whole labelled corpus: capture every unknown secret, put the captured values in the
/// vault, and the rebuilt redactor must write exactly the same text (prompt caching).
#[test]
fn over_the_corpus_the_vault_detector_writes_what_capture_wrote() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cases.toml");
    let corpus: Corpus = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let r = redactor();
    let mut failures = Vec::new();
    let mut compared = 0;
    for c in &corpus.case {
        let Some((captured, again)) = capture_then_rebuild(&r, &[], &c.text) else {
            continue;
        };
        compared += 1;
        if again != captured {
            failures.push(format!(
                "{}:\n  captured: {captured:?}\n  rebuilt:  {again:?}",
                c.name
            ));
        }
    }
    assert!(compared > 20, "only {compared} cases had captures");
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same over generated prompt documents (code, logs, configs, JSON…) with a vault: every
/// unknown secret captured, the vault grown by the captures, the text unchanged.
#[test]
fn over_generated_documents_the_rebuilt_redactor_writes_what_capture_wrote() {
    let vault = corpusgen::vault(7, 40);
    let known: Vec<(SecretName, SecretString)> = vault
        .entries
        .iter()
        .map(|(n, v)| (n.parse().unwrap(), SecretString::new(v.clone())))
        .collect();
    let r = Redactor::builder()
        .placeholder_key(KEY)
        .vault_values(known.clone())
        .build()
        .unwrap();
    let (mut compared, mut failures) = (0, Vec::new());
    for doc in corpusgen::corpus(11, 120, &vault) {
        let Some((captured, again)) = capture_then_rebuild(&r, &known, &doc.text) else {
            continue;
        };
        compared += 1;
        if again != captured {
            failures.push(doc.name.clone());
        }
    }
    assert!(compared > 30, "only {compared} documents had captures");
    assert!(
        failures.is_empty(),
        "{} of {compared} documents differ: {failures:?}",
        failures.len()
    );
}
