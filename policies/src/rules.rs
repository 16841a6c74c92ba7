//! The policy file format (TOML, plain data) and rule matching.
//!
//! A policy is one or more TOML files. Each may hold any of these tables; files are merged in
//! name order (lists extend, settings override, rule ids must be unique):
//!
//! ```toml
//! [settings]
//! unknown_tool = "red"          # tools with no rule and no class
//! unknown_mcp_tool = "red"      # `<server>__<tool>` names not listed in [tools]
//! unknown_command = "red"       # shell binaries not listed in [commands]
//! max_command_bytes = 65536     # analysis limits; exceeding one is critical
//! max_segments = 256
//! max_depth = 8
//! max_spawn_depth = 1           # sessions_spawn nesting before it is red
//!
//! [tools]                       # baseline class of tools without parameter rules
//! green = ["tool_search", "memory_search"]
//!
//! [commands]                    # baseline class of shell binaries without built-in rules
//! green = ["ls", "cat"]
//!
//! [paths]                       # glob lists per path kind (see `PathKind`)
//! clawgate = ["/etc/clawgate/**"]
//!
//! [egress]                      # CONNECT listener host policy (see `crate::egress`)
//! connect_allow = ["*"]
//!
//! [[rule]]                      # extra rules: strictest finding wins
//! id = "exec.terraform_destroy"
//! tool = "exec"                 # or a list; aliases (bash, cron, apply-patch) are folded
//! class = "critical"
//! reason = "terraform destroy deletes real infrastructure"
//! match = ["terraform destroy -auto-approve"]
//! not_match = ["terraform plan"]
//! [rule.when]                   # every given predicate must hold
//! argv_prefix = ["terraform", "destroy"]
//! ```
//!
//! Predicates: `binary` (a shell segment's resolved binary is one of these), `argv_prefix`
//! (a segment's argv starts with these tokens; `*` matches any token, `a|b` alternatives),
//! `args_any` (a segment has one of these arguments, or one starting with `X=`),
//! `command_regex` (on the whole `exec` command), `params` (per dotted parameter path:
//! `equals`, `one_of`, `regex`, `exists`), `path_kinds` (a path the call touches is of one of
//! these kinds), `url_host` (a URL's IDNA-normalised host equals one of these, or ends with
//! `.suffix` for `*.suffix`), `sender_is_owner` (the turn was started by the owner). Segment
//! predicates must all hold on the same segment. `path_kinds` and `url_host` see the paths and
//! hosts of tool parameters and, for `exec`, those found by the shell analysis.
//!
//! `[[grant]]` tables have the same shape but are narrow pre-approvals: when one fires, the
//! call's `yellow_external` findings become the grant's class, which must be `green` or
//! `yellow`. A grant never changes a `red` or `critical` finding.
//!
//! A `match` example is an `exec` command (a string) or the parameter table of the rule's first
//! tool; every example is classified when the policy loads, and a `match` example the rule does
//! not fire on (or a `not_match` example it fires on) refuses the whole policy.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::class::Class;
use crate::error::{Error, Result};
use crate::paths::{PathGlobs, PathKind};
use crate::shell::Segment;

/// One TOML file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub(crate) settings: RawSettings,
    #[serde(default)]
    pub(crate) tools: BTreeMap<Class, Vec<String>>,
    #[serde(default)]
    pub(crate) commands: BTreeMap<Class, Vec<String>>,
    #[serde(default)]
    pub(crate) paths: PathGlobs,
    #[serde(default)]
    pub(crate) rule: Vec<RawRule>,
    #[serde(default)]
    pub(crate) grant: Vec<RawRule>,
    /// The CONNECT host policy (see [`crate::egress`]).
    #[serde(default)]
    pub(crate) egress: Option<crate::egress::RawEgress>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    pub(crate) unknown_tool: Option<Class>,
    pub(crate) unknown_mcp_tool: Option<Class>,
    pub(crate) unknown_command: Option<Class>,
    pub(crate) max_command_bytes: Option<usize>,
    pub(crate) max_segments: Option<usize>,
    pub(crate) max_depth: Option<usize>,
    pub(crate) max_nesting: Option<usize>,
    pub(crate) max_spawn_depth: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) id: String,
    pub(crate) tool: OneOrMany,
    pub(crate) class: Class,
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) when: RawWhen,
    #[serde(default, rename = "match")]
    pub(crate) matches: Vec<Example>,
    #[serde(default)]
    pub(crate) not_match: Vec<Example>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWhen {
    #[serde(default)]
    binary: Vec<String>,
    #[serde(default)]
    argv_prefix: Vec<String>,
    #[serde(default)]
    args_any: Vec<String>,
    command_regex: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, RawMatcher>,
    #[serde(default)]
    path_kinds: Vec<PathKind>,
    #[serde(default)]
    url_host: Vec<String>,
    /// The turn was started by the owner (`ctx.requester.senderIsOwner`).
    sender_is_owner: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatcher {
    equals: Option<toml::Value>,
    one_of: Option<Vec<toml::Value>>,
    regex: Option<String>,
    exists: Option<bool>,
}

/// A rule example: an `exec` command or a parameter table.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Example {
    /// A shell command (for `exec` rules).
    Command(String),
    /// The parameters of a call to the rule's first tool.
    Params(toml::Table),
}

impl Example {
    /// The example as `(tool, params)` for a rule whose first tool is `tool`.
    pub(crate) fn to_call(&self, tool: &str) -> (String, Value) {
        match self {
            Example::Command(c) => ("exec".to_owned(), serde_json::json!({ "command": c })),
            Example::Params(t) => (
                tool.to_owned(),
                toml_to_json(&toml::Value::Table(t.clone())),
            ),
        }
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: String,
    pub(crate) tools: Vec<String>,
    pub(crate) class: Class,
    pub(crate) reason: String,
    when: When,
    pub(crate) matches: Vec<Example>,
    pub(crate) not_match: Vec<Example>,
    /// `sender_is_owner` used when running this rule's examples.
    pub(crate) example_owner: Option<bool>,
}

#[derive(Debug, Clone, Default)]
struct When {
    binary: Vec<String>,
    argv_prefix: Vec<Vec<String>>,
    args_any: Vec<String>,
    command_regex: Option<Regex>,
    params: Vec<(Vec<String>, Matcher)>,
    path_kinds: Vec<PathKind>,
    url_host: Vec<String>,
    sender_is_owner: Option<bool>,
}

#[derive(Debug, Clone, Default)]
struct Matcher {
    equals: Option<Value>,
    one_of: Vec<Value>,
    regex: Option<Regex>,
    exists: Option<bool>,
}

/// What a rule can look at for one call.
#[derive(Debug, Default)]
pub(crate) struct Facts<'a> {
    pub(crate) params: Option<&'a Value>,
    pub(crate) command: Option<String>,
    pub(crate) segments: Vec<Segment>,
    pub(crate) path_kinds: Vec<PathKind>,
    pub(crate) hosts: Vec<String>,
    /// Network use whose destination could not be named (see `ShellAnalysis::opaque_network`).
    pub(crate) opaque_network: bool,
    pub(crate) sender_is_owner: Option<bool>,
}

/// Folds OpenClaw's tool aliases into canonical names.
pub fn canonical_tool(name: &str) -> &str {
    match name {
        "bash" | "exec_command" => "exec",
        "cron" => "automations",
        "apply-patch" => "apply_patch",
        other => other,
    }
}

fn invalid(rule: &str, message: impl Into<String>) -> Error {
    Error::InvalidRule {
        rule: rule.to_owned(),
        message: message.into(),
    }
}

fn compile_regex(rule: &str, re: &str) -> Result<Regex> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| invalid(rule, format!("bad regex {re:?}: {e}")))
}

impl Rule {
    pub(crate) fn compile(raw: RawRule) -> Result<Rule> {
        let id = raw.id;
        if id.is_empty() || raw.reason.trim().is_empty() {
            return Err(invalid(&id, "a rule needs an id and a reason"));
        }
        let tools: Vec<String> = match raw.tool {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(ts) => ts,
        }
        .into_iter()
        .map(|t| canonical_tool(&t).to_owned())
        .collect();
        if tools.is_empty() {
            return Err(invalid(&id, "`tool` is empty"));
        }
        let w = raw.when;
        let mut params = Vec::new();
        for (path, m) in w.params {
            let regex = m
                .regex
                .as_deref()
                .map(|r| compile_regex(&id, r))
                .transpose()?;
            params.push((
                path.split('.').map(str::to_owned).collect(),
                Matcher {
                    equals: m.equals.as_ref().map(toml_to_json),
                    one_of: m
                        .one_of
                        .unwrap_or_default()
                        .iter()
                        .map(toml_to_json)
                        .collect(),
                    regex,
                    exists: m.exists,
                },
            ));
        }
        let when = When {
            binary: w.binary,
            argv_prefix: if w.argv_prefix.is_empty() {
                Vec::new()
            } else {
                w.argv_prefix
                    .iter()
                    .map(|t| t.split('|').map(str::to_owned).collect())
                    .collect()
            },
            args_any: w.args_any,
            command_regex: w
                .command_regex
                .as_deref()
                .map(|r| compile_regex(&id, r))
                .transpose()?,
            params,
            path_kinds: w.path_kinds,
            url_host: w.url_host.iter().map(|h| h.to_ascii_lowercase()).collect(),
            sender_is_owner: w.sender_is_owner,
        };
        let example_owner = when.sender_is_owner;
        let rule = Rule {
            id,
            tools,
            class: raw.class,
            reason: raw.reason,
            when,
            matches: raw.matches,
            not_match: raw.not_match,
            example_owner,
        };
        if rule.matches.is_empty() {
            return Err(invalid(
                &rule.id,
                "every rule needs at least one `match` example",
            ));
        }
        // A rule with no negative example cannot show it is not over-broad.
        if rule.not_match.is_empty() {
            return Err(invalid(
                &rule.id,
                "every rule needs at least one `not_match` example",
            ));
        }
        Ok(rule)
    }

    pub(crate) fn applies_to(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| {
            t == tool || t == "*" || (t.ends_with('*') && tool.starts_with(&t[..t.len() - 1]))
        })
    }

    /// True when every predicate holds.
    pub(crate) fn fires(&self, facts: &Facts<'_>) -> bool {
        let w = &self.when;
        let seg_preds = !w.binary.is_empty() || !w.argv_prefix.is_empty() || !w.args_any.is_empty();
        if seg_preds && !facts.segments.iter().any(|s| self.segment_matches(s)) {
            return false;
        }
        if let Some(re) = &w.command_regex
            && !facts.command.as_deref().is_some_and(|c| re.is_match(c))
        {
            return false;
        }
        for (path, m) in &w.params {
            let v = facts.params.and_then(|p| lookup(p, path));
            if !m.matches(v) {
                return false;
            }
        }
        if let Some(want) = w.sender_is_owner
            && facts.sender_is_owner != Some(want)
        {
            return false;
        }
        if !w.path_kinds.is_empty() && !facts.path_kinds.iter().any(|k| w.path_kinds.contains(k)) {
            return false;
        }
        if !w.url_host.is_empty()
            && !facts.hosts.iter().any(|h| {
                w.url_host.iter().any(|p| match p.strip_prefix("*.") {
                    Some(suffix) => h == suffix || h.ends_with(&format!(".{suffix}")),
                    None => h == p,
                })
            })
        {
            return false;
        }
        true
    }

    fn segment_matches(&self, s: &Segment) -> bool {
        let w = &self.when;
        if !w.binary.is_empty() && !w.binary.contains(&s.binary) {
            return false;
        }
        if !w.argv_prefix.is_empty() {
            if s.argv.len() < w.argv_prefix.len() {
                return false;
            }
            for (i, alts) in w.argv_prefix.iter().enumerate() {
                let tok = if i == 0 {
                    s.binary.as_str()
                } else {
                    s.argv[i].as_str()
                };
                if !alts.iter().any(|a| a == "*" || a == tok) {
                    return false;
                }
            }
        }
        if !w.args_any.is_empty()
            && !s.argv.iter().skip(1).any(|a| {
                w.args_any.iter().any(|x| {
                    a == x
                        || a.strip_prefix(x.as_str())
                            .is_some_and(|r| r.starts_with('='))
                })
            })
        {
            return false;
        }
        true
    }
}

impl Matcher {
    fn matches(&self, v: Option<&Value>) -> bool {
        if let Some(want) = self.exists
            && want != v.is_some_and(|v| !v.is_null())
        {
            return false;
        }
        if let Some(eq) = &self.equals
            && v != Some(eq)
        {
            return false;
        }
        if !self.one_of.is_empty() && !v.is_some_and(|v| self.one_of.contains(v)) {
            return false;
        }
        if let Some(re) = &self.regex {
            let text = match v {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return false,
            };
            if !re.is_match(&text) {
                return false;
            }
        }
        true
    }
}

fn lookup<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key.as_str())?;
    }
    Some(cur)
}

/// Converts a TOML value to JSON (dates become strings).
pub(crate) fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}
