//! Table-driven corpus tests: adversarial commands must be at least as strict as expected, and
//! the benign corpus must not be over-blocked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)] // test code

use std::path::PathBuf;

use clawgate_policies::{Class, Policy, ToolCall};
use serde::Deserialize;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn read(name: &str) -> String {
    let own = testdata(name);
    let path = if own.exists() {
        own
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata")
            .join(name)
    };
    String::from_utf8(std::fs::read(&path).unwrap()).unwrap()
}

#[derive(Deserialize)]
struct PublicEntry {
    command: String,
    expected_class: Class,
    #[serde(default)]
    why: String,
}

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    /// `exec` command (shorthand for tool = "exec").
    command: Option<String>,
    tool: Option<String>,
    params: Option<toml::Table>,
    expected: Class,
    #[serde(default)]
    family: String,
    #[serde(default)]
    note: String,
}

impl Case {
    fn call(&self) -> ToolCall {
        match (&self.command, &self.tool) {
            (Some(c), _) => ToolCall::exec(c),
            (None, Some(t)) => ToolCall::new(
                t.clone(),
                serde_json::to_value(self.params.clone().unwrap_or_default()).unwrap(),
            ),
            _ => panic!("a case needs `command` or `tool`"),
        }
    }

    fn label(&self) -> String {
        self.command.clone().unwrap_or_else(|| {
            format!(
                "{} {}",
                self.tool.as_deref().unwrap_or("?"),
                serde_json::to_string(&self.params).unwrap()
            )
        })
    }
}

fn policy() -> Policy {
    Policy::default_policy().unwrap()
}

#[test]
fn public_adversarial_corpus_is_at_least_as_strict_as_expected() {
    let entries: Vec<PublicEntry> =
        serde_json::from_str(&read("adversarial_commands.public.json")).unwrap();
    let policy = policy();
    let mut failures = Vec::new();
    for e in &entries {
        let v = policy.classify_shell(&e.command);
        if v.class < e.expected_class {
            failures.push(format!(
                "{:?}: got {} ({}), want >= {} ({})",
                e.command,
                v.class,
                v.rule(),
                e.expected_class,
                e.why
            ));
        }
    }
    println!(
        "public adversarial corpus: {}/{} at least as strict as expected",
        entries.len() - failures.len(),
        entries.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn own_adversarial_corpus_is_at_least_as_strict_as_expected() {
    let corpus: Corpus = toml::from_str(&read("adversarial.toml")).unwrap();
    let policy = policy();
    let mut failures = Vec::new();
    for c in &corpus.case {
        let v = policy.classify(&c.call());
        if v.class < c.expected {
            failures.push(format!(
                "[{}] {}: got {} ({}: {}), want >= {} {}",
                c.family,
                c.label(),
                v.class,
                v.rule(),
                v.reason(),
                c.expected,
                c.note
            ));
        }
    }
    println!(
        "own adversarial corpus: {}/{} at least as strict as expected",
        corpus.case.len() - failures.len(),
        corpus.case.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn benign_corpus_is_not_over_blocked() {
    let corpus: Corpus = toml::from_str(&read("benign.toml")).unwrap();
    assert!(
        corpus.case.len() >= 150,
        "benign corpus has {} cases",
        corpus.case.len()
    );
    let policy = policy();
    let mut over_blocked = Vec::new();
    let mut mismatches = Vec::new();
    for c in &corpus.case {
        let v = policy.classify(&c.call());
        if v.class >= Class::Red {
            over_blocked.push(format!(
                "{} -> {} ({}: {})",
                c.label(),
                v.class,
                v.rule(),
                v.reason()
            ));
        }
        if v.class != c.expected {
            mismatches.push(format!(
                "{} -> {} ({}), expected {}",
                c.label(),
                v.class,
                v.rule(),
                c.expected
            ));
        }
    }
    let rate = over_blocked.len() as f64 / corpus.case.len() as f64;
    println!(
        "benign corpus: {} cases, {} red or above, over-blocking rate {:.2}%",
        corpus.case.len(),
        over_blocked.len(),
        rate * 100.0
    );
    for o in &over_blocked {
        println!("  over-blocked: {o}");
    }
    assert!(
        mismatches.is_empty(),
        "benign class mismatches:\n{}",
        mismatches.join("\n")
    );
    assert!(rate <= 0.03, "over-blocking rate {:.2}% > 3%", rate * 100.0);
}
