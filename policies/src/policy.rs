//! Loading a policy and classifying tool calls with it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::class::{Class, Findings, Verdict};
use crate::decision::{Decision, Tier, decide};
use crate::egress::{ConnectPolicy, EgressSources};
use crate::error::{Error, Result};
use crate::paths::{PathGlobs, PathRules};
use crate::rules::{Facts, RawFile, Rule, canonical_tool};
use crate::shell::{self, Limits, ShellAnalysis, ShellConfig};

/// Largest policy file accepted, in bytes.
const MAX_POLICY_FILE: u64 = 4 * 1024 * 1024;

/// The default policy shipped in `policies/default/`, embedded at build time.
const DEFAULT_FILES: [(&str, &str); 5] = [
    (
        "default/commands.toml",
        include_str!("../default/commands.toml"),
    ),
    (
        "default/egress.toml",
        include_str!("../default/egress.toml"),
    ),
    ("default/paths.toml", include_str!("../default/paths.toml")),
    (
        "default/shell_rules.toml",
        include_str!("../default/shell_rules.toml"),
    ),
    ("default/tools.toml", include_str!("../default/tools.toml")),
];

/// One tool call as OpenClaw's `before_tool_call` hook reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Tool name as sent (aliases are folded during classification).
    pub tool: String,
    /// The model-supplied parameters.
    pub params: Value,
    /// `code_mode_exec` for Code Mode's outer `exec`.
    pub tool_kind: Option<String>,
    /// Target paths OpenClaw derived for `apply_patch`.
    pub derived_paths: Vec<String>,
    /// The session key from the hook context (sub-agent nesting is read from it).
    pub session_key: Option<String>,
    /// `ctx.requester.senderIsOwner`: the turn was started by the owner.
    pub sender_is_owner: Option<bool>,
}

impl ToolCall {
    /// A call with just a tool name and parameters.
    pub fn new(tool: impl Into<String>, params: Value) -> ToolCall {
        ToolCall {
            tool: tool.into(),
            params,
            tool_kind: None,
            derived_paths: Vec::new(),
            session_key: None,
            sender_is_owner: None,
        }
    }

    /// An `exec` call of `command`.
    pub fn exec(command: &str) -> ToolCall {
        ToolCall::new("exec", serde_json::json!({ "command": command }))
    }

    /// Reads a `before_tool_call` event, either bare or wrapped as `{"event":…, "ctx":…}`.
    pub fn from_hook_event(v: &Value) -> Result<ToolCall> {
        let (event, ctx) = match v.get("event") {
            Some(e) if e.is_object() => (e, v.get("ctx")),
            _ => (v, None),
        };
        let tool = event
            .get("toolName")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::InvalidEvent("missing string field toolName".into()))?;
        let params = event
            .get("params")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        if !params.is_object() {
            return Err(Error::InvalidEvent("params is not an object".into()));
        }
        let str_of = |v: Option<&Value>, k: &str| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(ToolCall {
            tool: tool.to_owned(),
            params,
            tool_kind: str_of(Some(event), "toolKind").or_else(|| str_of(ctx, "toolKind")),
            derived_paths: event
                .get("derivedPaths")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            session_key: str_of(ctx, "sessionKey"),
            sender_is_owner: ctx
                .and_then(|c| c.get("requester"))
                .and_then(|r| r.get("senderIsOwner"))
                .and_then(Value::as_bool),
        })
    }
}

/// A classified call and where it reaches on the network.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// The class and findings.
    pub verdict: Verdict,
    /// Every host the call's URLs name (IDNA-normalised, sorted, deduplicated).
    pub hosts: Vec<String>,
    /// The call also reaches the network somewhere no host could be named for.
    pub opaque_network: bool,
}

/// Network reach gathered while classifying (nested calls included).
#[derive(Debug, Default)]
pub(crate) struct Reach {
    pub(crate) hosts: Vec<String>,
    pub(crate) opaque_network: bool,
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) shell: ShellConfig,
    pub(crate) paths: PathRules,
    pub(crate) tool_classes: HashMap<String, Class>,
    pub(crate) unknown_tool: Class,
    pub(crate) unknown_mcp_tool: Class,
    pub(crate) max_spawn_depth: usize,
    pub(crate) rules: Vec<Rule>,
    pub(crate) grants: Vec<Rule>,
    pub(crate) connect: Arc<ConnectPolicy>,
}

impl Policy {
    /// The default policy from `policies/default/`.
    pub fn default_policy() -> Result<Policy> {
        Policy::from_sources(&DEFAULT_FILES)
    }

    /// The default policy's files as `(name, text)`, for hashing it into a policy version.
    pub fn default_sources() -> &'static [(&'static str, &'static str)] {
        &DEFAULT_FILES
    }

    /// Loads every `*.toml` file of `dir` (in name order).
    pub fn load_dir(dir: &Path) -> Result<Policy> {
        let io_err = |source| Error::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::EmptyPolicy(dir.to_path_buf()));
        }
        let mut sources = Vec::with_capacity(files.len());
        for path in &files {
            let bytes =
                clawgate_protocol::io::read_capped(path, MAX_POLICY_FILE).map_err(|source| {
                    Error::Io {
                        path: path.clone(),
                        source,
                    }
                })?;
            let text = String::from_utf8(bytes).map_err(|_| Error::Parse {
                file: path.display().to_string(),
                message: "not UTF-8".into(),
            })?;
            sources.push((path.display().to_string(), text));
        }
        let refs: Vec<(&str, &str)> = sources
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        Policy::from_sources(&refs)
    }

    /// Builds a policy from `(name, toml text)` pairs and checks every rule example.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<Policy> {
        let mut policy = Policy {
            shell: ShellConfig {
                commands: HashMap::new(),
                unknown_command: Class::Red,
                limits: Limits::default(),
            },
            paths: PathRules::default(),
            tool_classes: HashMap::new(),
            unknown_tool: Class::Red,
            unknown_mcp_tool: Class::Red,
            max_spawn_depth: 1,
            rules: Vec::new(),
            grants: Vec::new(),
            connect: Arc::new(ConnectPolicy::builtin()),
        };
        let mut globs = PathGlobs::new();
        let mut egress = EgressSources::default();
        for (name, text) in sources {
            let mut raw: RawFile = toml::from_str(text).map_err(|e| Error::Parse {
                file: (*name).to_owned(),
                message: e.to_string(),
            })?;
            egress.add(name, raw.egress.take())?;
            policy.merge(raw, &mut globs)?;
        }
        policy.paths = PathRules::compile(&globs)?;
        policy.connect = Arc::new(egress.build());
        policy.check_examples()?;
        Ok(policy)
    }

    fn merge(&mut self, raw: RawFile, globs: &mut PathGlobs) -> Result<()> {
        let s = raw.settings;
        // Settings may only make the policy stricter than red for unknowns: fail closed.
        if let Some(c) = s.unknown_tool {
            self.unknown_tool = c.max(Class::Red);
        }
        if let Some(c) = s.unknown_mcp_tool {
            self.unknown_mcp_tool = c.max(Class::Red);
        }
        if let Some(c) = s.unknown_command {
            self.shell.unknown_command = c.max(Class::Red);
        }
        let l = &mut self.shell.limits;
        l.max_command_bytes = s.max_command_bytes.unwrap_or(l.max_command_bytes);
        l.max_segments = s.max_segments.unwrap_or(l.max_segments);
        l.max_depth = s.max_depth.unwrap_or(l.max_depth).min(32);
        l.max_nesting = s.max_nesting.unwrap_or(l.max_nesting).min(256);
        self.max_spawn_depth = s.max_spawn_depth.unwrap_or(self.max_spawn_depth);
        for (class, names) in raw.tools {
            for n in names {
                self.tool_classes
                    .insert(canonical_tool(&n).to_owned(), class);
            }
        }
        for (class, names) in raw.commands {
            for n in names {
                self.shell.commands.insert(n, class);
            }
        }
        for (kind, list) in raw.paths {
            globs.entry(kind).or_default().extend(list);
        }
        for g in raw.grant {
            let grant = Rule::compile(g)?;
            if grant.class > Class::Yellow {
                return Err(Error::InvalidRule {
                    rule: grant.id,
                    message: "a grant may only lower yellow_external to yellow or green".into(),
                });
            }
            if self
                .grants
                .iter()
                .chain(&self.rules)
                .any(|x| x.id == grant.id)
            {
                return Err(Error::InvalidRule {
                    rule: grant.id,
                    message: "duplicate rule id".into(),
                });
            }
            self.grants.push(grant);
        }
        for r in raw.rule {
            let rule = Rule::compile(r)?;
            if self
                .rules
                .iter()
                .chain(&self.grants)
                .any(|x| x.id == rule.id)
            {
                return Err(Error::InvalidRule {
                    rule: rule.id,
                    message: "duplicate rule id".into(),
                });
            }
            self.rules.push(rule);
        }
        Ok(())
    }

    /// Runs every `match` / `not_match` example; the first failure refuses the policy.
    fn check_examples(&self) -> Result<()> {
        for rule in self.rules.iter().chain(&self.grants) {
            let tool = rule.tools.first().map(String::as_str).unwrap_or("exec");
            for (examples, want) in [(&rule.matches, true), (&rule.not_match, false)] {
                for ex in examples.iter() {
                    let (t, params) = ex.to_call(tool);
                    let mut call = ToolCall::new(t, params.clone());
                    call.sender_is_owner = rule.example_owner;
                    let verdict = self.classify(&call);
                    if verdict.has_rule(&rule.id) != want {
                        return Err(Error::ExampleFailed {
                            rule: rule.id.clone(),
                            example: params.to_string(),
                            expectation: if want { "match" } else { "not match" },
                            actual: format!(
                                "the verdict was {} by {} with rules [{}]",
                                verdict.class,
                                verdict.rule(),
                                verdict
                                    .findings
                                    .iter()
                                    .map(|f| f.rule.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The CONNECT host policy (the `[egress]` tables merged with the built-in lists), for the
    /// egress proxy's CONNECT listener.
    pub fn connect_policy(&self) -> Arc<ConnectPolicy> {
        Arc::clone(&self.connect)
    }

    /// Classifies one tool call.
    pub fn classify(&self, call: &ToolCall) -> Verdict {
        self.assess(call).verdict
    }

    /// Classifies one tool call and reports where it reaches on the network, which the hook
    /// server needs to check a secret's host scope before resolving `SECRET_REF` into the call.
    pub fn assess(&self, call: &ToolCall) -> Assessment {
        let mut findings = Findings::default();
        let reach = self.classify_into(call, &mut findings, 0);
        Assessment {
            verdict: Verdict::from_findings(findings.list),
            hosts: reach.hosts,
            opaque_network: reach.opaque_network,
        }
    }

    /// Classifies one shell command as an `exec` call.
    pub fn classify_shell(&self, command: &str) -> Verdict {
        self.classify(&ToolCall::exec(command))
    }

    /// Classifies and decides for an autonomy tier.
    pub fn decide(&self, call: &ToolCall, tier: Tier) -> Decision {
        decide(&self.classify(call), tier)
    }

    /// Runs the shell analysis alone (segments included), for tools and tests.
    pub fn analyze_shell(&self, command: &str, cwd: Option<&str>) -> ShellAnalysis {
        shell::analyze(&self.shell, &self.paths, command, cwd)
    }

    pub(crate) fn classify_into(&self, call: &ToolCall, out: &mut Findings, depth: usize) -> Reach {
        let tool = canonical_tool(&call.tool);
        let mut facts = Facts {
            params: Some(&call.params),
            ..Facts::default()
        };
        facts.sender_is_owner = call.sender_is_owner;
        self.builtin(tool, call, out, &mut facts, depth);
        for rule in &self.rules {
            if rule.applies_to(tool) && rule.fires(&facts) {
                out.add(rule.class, &rule.id, rule.reason.clone());
            }
        }
        self.apply_grants(tool, &facts, out);
        let mut hosts = facts.hosts;
        hosts.sort();
        hosts.dedup();
        Reach {
            hosts,
            opaque_network: facts.opaque_network,
        }
    }

    /// Grants are narrow pre-approvals: when one fires, the call's `yellow_external` findings
    /// become the grant's class. They never touch `red` or `critical` findings, and a grant can
    /// only name `green` or `yellow` (checked at load).
    fn apply_grants(&self, tool: &str, facts: &Facts<'_>, out: &mut Findings) {
        let Some(grant) = self
            .grants
            .iter()
            .find(|g| g.applies_to(tool) && g.fires(facts))
        else {
            return;
        };
        let mut granted = false;
        for f in out
            .list
            .iter_mut()
            .filter(|f| f.class == Class::YellowExternal)
        {
            f.class = grant.class;
            f.reason = format!("{} (pre-approved by {})", f.reason, grant.id);
            granted = true;
        }
        if granted {
            out.add(grant.class, &grant.id, grant.reason.clone());
        }
    }
}
