//! The redaction corpus test (issue #5): a generated corpus of realistic prompt text (code, logs,
//! configs, chat, JSON, stack traces, diffs; `tests/corpusgen`) with planted secrets of every
//! rule format, vault values in every encoding, and hard negatives, all labelled with byte spans.
//! The same [`Redactor`] the proxy uses (vault values, rules, entropy) scans every document;
//! the test prints recall per format and precision, and asserts the targets:
//!
//! * every vault encoding: 100% of the planted spans fully covered by a finding;
//! * every rule format: ≥ 97%;
//! * precision (findings overlapping a planted secret / all findings) ≥ 99%.
//!
//! `REDACT_CORPUS_DOCS` sets the number of documents (default 2,400 in debug builds, 4,000
//! optimised), `REDACT_CORPUS_SEED` the seed. Run with `--nocapture` to see the table.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod corpusgen;

use std::collections::BTreeMap;

use clawgate_protocol::SecretString;
use clawgate_redact::{Finding, Redactor};
use corpusgen::{Doc, Kind};

const RULE_TARGET: f64 = 0.97;
const PRECISION_TARGET: f64 = 0.99;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn doc_count() -> usize {
    env_usize("REDACT_CORPUS_DOCS").unwrap_or(if cfg!(debug_assertions) { 2400 } else { 4000 })
}

fn misses_shown() -> usize {
    env_usize("REDACT_CORPUS_MISSES").unwrap_or(3)
}

fn seed() -> u64 {
    env_usize("REDACT_CORPUS_SEED").map_or(20_260_501, |s| s as u64)
}

fn redactor(vault: &corpusgen::Vault) -> Redactor {
    Redactor::builder()
        .vault_values(vault.entries.iter().map(|(n, v)| {
            (
                n.parse().unwrap(),
                SecretString::new(v.clone().into_boxed_str().into()),
            )
        }))
        .placeholder_key([9; 32])
        .build()
        .unwrap()
}

#[derive(Default)]
struct FormatStats {
    plants: usize,
    covered: usize,
    by_rule: usize,
    misses: Vec<String>,
}

#[derive(Default)]
struct Report {
    formats: BTreeMap<(u8, &'static str), FormatStats>,
    findings: usize,
    true_positives: usize,
    false_positives: BTreeMap<String, Vec<String>>,
}

/// `s` cut to `n` characters around its middle, for examples.
fn trim(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        return format!("{s:?}");
    }
    let head: String = chars[..n / 2].iter().collect();
    let tail: String = chars[chars.len() - n / 2..].iter().collect();
    format!("{head:?}…{tail:?}")
}

fn context(text: &str, start: usize, end: usize, mask: bool) -> String {
    let mut a = start.saturating_sub(40);
    while !text.is_char_boundary(a) {
        a -= 1;
    }
    let mut b = (end + 40).min(text.len());
    while !text.is_char_boundary(b) {
        b += 1;
    }
    let middle = if mask {
        format!("<{} bytes>", end - start)
    } else {
        trim(&text[start..end], 60)
    };
    format!("{:?} [{middle}] {:?}", &text[a..start], &text[end..b])
}

fn evaluate(docs: &[Doc], redactor: &Redactor) -> Report {
    let mut report = Report::default();
    for doc in docs {
        let findings = redactor.scan(&doc.text);
        tally(&mut report, doc, &findings);
    }
    report
}

fn tally(report: &mut Report, doc: &Doc, findings: &[Finding]) {
    for p in &doc.plants {
        if p.kind == Kind::Negative {
            continue;
        }
        let order = u8::from(p.kind == Kind::Vault);
        let stats = report.formats.entry((order, p.format)).or_default();
        stats.plants += 1;
        let cover = findings
            .iter()
            .find(|f| f.start <= p.start && f.end >= p.end);
        match cover {
            Some(f) => {
                stats.covered += 1;
                if p.rule == "any"
                    || p.rule == "vault" && f.rule.starts_with("vault.")
                    || f.rule == p.rule
                {
                    stats.by_rule += 1;
                }
            }
            None => {
                let partial: Vec<String> = findings
                    .iter()
                    .filter(|f| f.start < p.end && f.end > p.start)
                    .map(|f| format!("{}@{}..{}", f.rule, f.start, f.end))
                    .collect();
                stats.misses.push(format!(
                    "{} {}..{} partial={partial:?}: {}",
                    doc.name,
                    p.start,
                    p.end,
                    context(&doc.text, p.start, p.end, p.kind == Kind::Vault)
                ));
            }
        }
    }
    for f in findings {
        report.findings += 1;
        let overlapping: Vec<_> = doc
            .plants
            .iter()
            .filter(|p| p.start < f.end && p.end > f.start)
            .collect();
        if overlapping.iter().any(|p| p.kind != Kind::Negative) {
            report.true_positives += 1;
        } else {
            let what = overlapping
                .first()
                .map_or("filler".to_owned(), |p| format!("negative {}", p.format));
            report
                .false_positives
                .entry(f.rule.to_string())
                .or_default()
                .push(format!(
                    "{} ({what}): {}",
                    doc.name,
                    context(&doc.text, f.start, f.end, false)
                ));
        }
    }
}

fn negatives_hit(docs: &[Doc], redactor: &Redactor) -> BTreeMap<&'static str, (usize, usize)> {
    let mut out: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    for doc in docs {
        let findings = redactor.scan(&doc.text);
        for p in doc.plants.iter().filter(|p| p.kind == Kind::Negative) {
            let e = out.entry(p.format).or_default();
            e.0 += 1;
            if findings.iter().any(|f| f.start < p.end && f.end > p.start) {
                e.1 += 1;
            }
        }
    }
    out
}

fn print_report(
    report: &Report,
    negatives: &BTreeMap<&'static str, (usize, usize)>,
    bytes: usize,
    docs: usize,
) {
    println!(
        "\nredaction corpus: {docs} documents, {bytes} bytes, seed {}",
        seed()
    );
    println!(
        "{:<28} {:>7} {:>8} {:>8} {:>7}",
        "format", "plants", "recall", "by-rule", "misses"
    );
    for ((_, format), s) in &report.formats {
        println!(
            "{:<28} {:>7} {:>7.2}% {:>7.2}% {:>7}",
            format,
            s.plants,
            100.0 * s.covered as f64 / s.plants as f64,
            100.0 * s.by_rule as f64 / s.plants as f64,
            s.plants - s.covered
        );
    }
    let fp: usize = report.false_positives.values().map(Vec::len).sum();
    println!(
        "precision: {:.3}% ({} of {} findings overlap a planted secret; {fp} false positives)",
        100.0 * report.true_positives as f64 / report.findings.max(1) as f64,
        report.true_positives,
        report.findings
    );
    for (rule, examples) in &report.false_positives {
        println!("  false positives by {rule}: {}", examples.len());
        for e in examples.iter().take(3) {
            println!("    {e}");
        }
    }
    println!("hard negatives touched by a finding:");
    for (format, (n, hit)) in negatives {
        println!("  {format:<22} {hit:>4} / {n}");
    }
    for ((_, format), s) in &report.formats {
        for m in s.misses.iter().take(misses_shown()) {
            println!("  miss {format}: {m}");
        }
    }
}

/// `REDACT_CORPUS_SHOW=doc-name`: prints a document and its findings (debugging aid).
#[test]
fn show_document() {
    let Ok(name) = std::env::var("REDACT_CORPUS_SHOW") else {
        return;
    };
    let vault = corpusgen::vault(seed(), 240);
    let docs = corpusgen::corpus(seed(), doc_count(), &vault);
    let redactor = redactor(&vault);
    for d in docs.iter().filter(|d| d.name == name) {
        println!("{}", d.text);
        for f in redactor.scan(&d.text) {
            println!(
                "{} {}..{} {:?}",
                f.rule,
                f.start,
                f.end,
                &d.text[f.start..f.end]
            );
        }
    }
}

#[test]
fn recall_per_format_and_precision_meet_the_targets() {
    let vault = corpusgen::vault(seed(), 240);
    let docs = corpusgen::corpus(seed(), doc_count(), &vault);
    let redactor = redactor(&vault);
    let report = evaluate(&docs, &redactor);
    let negatives = negatives_hit(&docs, &redactor);
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    print_report(&report, &negatives, bytes, docs.len());

    let mut failures = Vec::new();
    for format in corpusgen::SECRET_FORMATS
        .iter()
        .chain(corpusgen::VAULT_FORMATS)
    {
        let vaulted = format.starts_with("vault.");
        let Some(s) = report.formats.get(&(u8::from(vaulted), *format)) else {
            failures.push(format!("{format}: never planted"));
            continue;
        };
        let recall = s.covered as f64 / s.plants as f64;
        let target = if vaulted { 1.0 } else { RULE_TARGET };
        if recall < target {
            failures.push(format!(
                "{format}: recall {:.2}% < {:.0}% ({} of {} missed)",
                100.0 * recall,
                100.0 * target,
                s.plants - s.covered,
                s.plants
            ));
        }
        if docs.len() >= 1000 && s.plants < 100 {
            failures.push(format!("{format}: only {} plants", s.plants));
        }
    }
    let precision = report.true_positives as f64 / report.findings.max(1) as f64;
    if precision < PRECISION_TARGET {
        failures.push(format!(
            "precision {:.3}% < {:.0}%",
            100.0 * precision,
            100.0 * PRECISION_TARGET
        ));
    }
    assert!(
        failures.is_empty(),
        "targets missed:\n{}",
        failures.join("\n")
    );
}

/// The corpus is a pure function of its seed, and its labels point at what was planted.
#[test]
fn the_generator_is_deterministic_and_labels_are_sound() {
    let vault = corpusgen::vault(7, 24);
    let a = corpusgen::corpus(7, 200, &vault);
    let b = corpusgen::corpus(7, 200, &vault);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.text, y.text);
        assert_eq!(x.plants, y.plants);
    }
    for d in &a {
        for p in &d.plants {
            assert!(
                p.start < p.end && p.end <= d.text.len(),
                "{}: {p:?}",
                d.name
            );
            assert!(d.text.is_char_boundary(p.start) && d.text.is_char_boundary(p.end));
        }
    }
}
