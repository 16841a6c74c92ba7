//! Risk classes and findings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How risky a tool call is. The order is meaningful: a stricter class compares greater, and the
/// strictest finding of a call decides its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Read-only, local: allowed at every tier.
    Green,
    /// Local side effects that can be undone or audited (edit workspace files, build, test).
    Yellow,
    /// Leaves the box: network, publishing, sending messages. Always asks unless pre-approved.
    YellowExternal,
    /// Destructive, privileged, opaque or secret-touching.
    Red,
    /// Never allowed: self-tampering, exfiltration, wiping, remote code execution.
    Critical,
}

impl Class {
    /// Every class, least strict first.
    pub const ALL: [Class; 5] = [
        Class::Green,
        Class::Yellow,
        Class::YellowExternal,
        Class::Red,
        Class::Critical,
    ];

    /// The snake_case name used in TOML and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Green => "green",
            Class::Yellow => "yellow",
            Class::YellowExternal => "yellow_external",
            Class::Red => "red",
            Class::Critical => "critical",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a call got (at least) a class: which rule fired and why, in one line a model can act
/// on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The class this finding demands.
    pub class: Class,
    /// Stable rule id, e.g. `shell.rm.recursive_root` or a TOML rule's `id`.
    pub rule: String,
    /// One line, written for the model: what was seen and what would be acceptable.
    pub reason: String,
}

/// The result of classifying one call: its class and every finding, strictest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The strictest class among the findings (`green` when nothing was found).
    pub class: Class,
    /// All findings, strictest first; ties keep discovery order.
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// Builds a verdict from unordered findings.
    pub fn from_findings(mut findings: Vec<Finding>) -> Verdict {
        // Stable sort keeps the discovery order among equal classes, so the first reason shown is
        // the outermost one the model wrote.
        findings.sort_by_key(|f| std::cmp::Reverse(f.class));
        let class = findings.first().map_or(Class::Green, |f| f.class);
        Verdict { class, findings }
    }

    /// The finding that decided the class, if any.
    pub fn top(&self) -> Option<&Finding> {
        self.findings.first()
    }

    /// The deciding rule id (`default.green` when nothing fired).
    pub fn rule(&self) -> &str {
        self.top().map_or("default.green", |f| f.rule.as_str())
    }

    /// The deciding reason.
    pub fn reason(&self) -> &str {
        self.top()
            .map_or("no rule matched; read-only or harmless", |f| {
                f.reason.as_str()
            })
    }

    /// True when a finding with this rule id is present.
    pub fn has_rule(&self, rule: &str) -> bool {
        self.findings.iter().any(|f| f.rule == rule)
    }
}

/// Collects findings while a call is analysed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Findings {
    pub(crate) list: Vec<Finding>,
}

impl Findings {
    pub(crate) fn add(&mut self, class: Class, rule: &str, reason: impl Into<String>) {
        // Green findings carry no information for the decision; skip them to keep verdicts short.
        if class == Class::Green {
            return;
        }
        let reason = reason.into();
        if self
            .list
            .iter()
            .any(|f| f.rule == rule && f.class == class && f.reason == reason)
        {
            return;
        }
        self.list.push(Finding {
            class,
            rule: rule.to_owned(),
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_names() {
        assert!(Class::Green < Class::Yellow);
        assert!(Class::Yellow < Class::YellowExternal);
        assert!(Class::YellowExternal < Class::Red);
        assert!(Class::Red < Class::Critical);
        for c in Class::ALL {
            assert_eq!(Class::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
    }

    #[test]
    fn verdict_takes_the_strictest() {
        let mut f = Findings::default();
        f.add(Class::Yellow, "a", "x");
        f.add(Class::Red, "b", "y");
        f.add(Class::Green, "c", "ignored");
        let v = Verdict::from_findings(f.list);
        assert_eq!(v.class, Class::Red);
        assert_eq!(v.rule(), "b");
        assert_eq!(v.findings.len(), 2);
    }
}
