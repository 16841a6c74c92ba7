//! Built-in rules for OpenClaw's tools (names and parameters from its tool schemas).

use clawgate_protocol::secret_ref::{self, RefToken};
use serde_json::Value;

use crate::class::{Class, Findings};
use crate::paths::PathKind;
use crate::policy::{Policy, ToolCall};
use crate::rules::Facts;
use crate::url;

/// Deepest `tool_call` → inner call nesting accepted.
const MAX_TOOL_NESTING: usize = 4;

fn s<'v>(params: &'v Value, key: &str) -> Option<&'v str> {
    params.get(key).and_then(Value::as_str)
}

fn action(params: &Value) -> &str {
    s(params, "action").unwrap_or("")
}

fn mentions_self(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "clawgate",
        "sidecar",
        "before_tool_call",
        "trustedtoolpolicy",
        "exec.security",
        "tools.exec",
        "exec-approvals",
        "nftables",
        "firewall",
    ]
    .iter()
    .any(|k| t.contains(k))
}

/// Every string anywhere in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

impl Policy {
    pub(crate) fn builtin<'a>(
        &self,
        tool: &'a str,
        call: &'a ToolCall,
        out: &mut Findings,
        facts: &mut Facts<'a>,
        depth: usize,
    ) {
        let p = &call.params;
        self.generic_params(p, out);
        match tool {
            "exec" => self.exec(call, out, facts),
            "process" => self.process(p, out, facts),
            "terminal" => match action(p) {
                "read" | "list" => {}
                "resize" | "close" => out.add(
                    Class::Yellow,
                    "tool.terminal.manage",
                    "manages an operator terminal",
                ),
                _ => {
                    out.add(
                        Class::Red,
                        "tool.terminal.input",
                        "types into the operator's own terminal; ask the owner",
                    );
                    if let Some(data) = s(p, "data") {
                        self.shell_into(data, None, out, facts);
                    }
                }
            },
            "write" | "edit" => self.path_param(p, "path", Access::Write, tool, out, facts),
            "apply_patch" => self.apply_patch(call, out, facts),
            "read" => self.path_param(p, "path", Access::Read, tool, out, facts),
            "ls" => {
                if let Some(path) = s(p, "path") {
                    let kind = self.paths.classify(path, None);
                    facts.path_kinds.push(kind);
                    if kind == PathKind::Clawgate {
                        out.add(
                            Class::Critical,
                            "tool.ls.clawgate",
                            "the agent may not inspect Clawgate's configuration or state",
                        );
                    }
                }
            }
            "file_write" => {
                out.add(
                    Class::Red,
                    "tool.node_file.write",
                    "writes a file on a paired device; ask the owner",
                );
                self.path_param(p, "path", Access::Write, tool, out, facts);
            }
            "file_fetch" | "dir_list" | "dir_fetch" => {
                out.add(
                    Class::Yellow,
                    "tool.node_file.read",
                    "reads files from a paired device",
                );
                self.path_param(p, "path", Access::Read, tool, out, facts);
            }
            "web_fetch" => self.url_param(p, "url", out, facts),
            "web_search" | "x_search" => out.add(
                Class::Yellow,
                "tool.web_search",
                "sends a search query to the search provider",
            ),
            "browser" => self.browser(p, out, facts),
            "message" => self.message(p, out, facts),
            "conversations_send" | "conversations_turn" => out.add(
                Class::YellowExternal,
                "tool.conversations_send",
                "sends a message outside this machine; the owner approves external communication",
            ),
            "sessions_send" => out.add(
                Class::Yellow,
                "tool.sessions_send",
                "sends a message to another local agent session",
            ),
            "automations" => self.automations(p, out, facts),
            "gateway" if s(p, "gatewayUrl").is_some() => {
                // The tool authenticates to whatever gateway it is pointed at: another host would
                // receive this gateway's token, and a local one is the control plane itself.
                let raw = s(p, "gatewayUrl").unwrap_or_default();
                out.add(
                    Class::Critical,
                    "tool.gateway.remote_url",
                    format!("the gateway tool may only talk to its own gateway, not {raw}; drop gatewayUrl"),
                );
            }
            "gateway" => match action(p) {
                "config.schema.lookup" => {}
                "config.get" => out.add(
                    Class::Yellow,
                    "tool.gateway.config_get",
                    "reads the gateway configuration",
                ),
                "update.run" => out.add(
                    Class::Red,
                    "tool.gateway.update",
                    "updates and restarts the OpenClaw gateway; the owner must approve",
                ),
                other => out.add(
                    Class::Red,
                    "tool.gateway.unknown_action",
                    format!("gateway action {other:?} is not known"),
                ),
            },
            "plugins" => self.plugins(p, out),
            "openclaw" => {
                let msg = s(p, "message").unwrap_or("");
                if mentions_self(msg) {
                    out.add(Class::Critical, "tool.openclaw.self_tamper", "the agent may not reconfigure Clawgate, exec security, approvals or the firewall");
                }
                out.add(
                    Class::Red,
                    "tool.openclaw",
                    "delegates system configuration to OpenClaw; the owner must approve",
                );
            }
            "sessions_spawn" => self.sessions_spawn(call, out),
            "secrets" => match action(p) {
                "list" => {}
                "request" => out.add(
                    Class::Yellow,
                    "tool.secrets.request",
                    "asks the owner to enter a secret",
                ),
                "delete" => out.add(
                    Class::Red,
                    "tool.secrets.delete",
                    "deletes a stored secret; the owner must approve",
                ),
                other => out.add(
                    Class::Red,
                    "tool.secrets.unknown_action",
                    format!("secrets action {other:?} is not known"),
                ),
            },
            "nodes" => self.nodes(p, out),
            "canvas" => match action(p) {
                "present" | "hide" => {}
                "navigate" => self.url_param(p, "url", out, facts),
                other => out.add(
                    Class::Red,
                    "tool.canvas.unknown_action",
                    format!("canvas action {other:?} is not known"),
                ),
            },
            "tool_call" => self.tool_call(call, out, facts, depth),
            _ => self.baseline(tool, out),
        }
    }

    fn baseline(&self, tool: &str, out: &mut Findings) {
        if let Some(class) = self.tool_classes.get(tool) {
            out.add(
                *class,
                &format!("tool.class.{}", class.as_str()),
                format!("`{tool}` is classed {class} by the policy"),
            );
        } else if tool.contains("__") {
            out.add(
                self.unknown_mcp_tool,
                "tool.mcp.unknown",
                format!("the MCP tool `{tool}` is not allowed by the policy; ask the owner to classify it"),
            );
        } else {
            out.add(
                self.unknown_tool,
                "tool.unknown",
                format!(
                    "the tool `{tool}` is not known to the policy, so its effects cannot be judged"
                ),
            );
        }
    }

    /// Checks that apply to every tool's parameters.
    fn generic_params(&self, p: &Value, out: &mut Findings) {
        if !p.is_object() {
            out.add(
                Class::Red,
                "tool.params_not_object",
                "tool parameters are not a JSON object",
            );
            return;
        }
        if p.get("gatewayUrl").is_some_and(|v| !v.is_null())
            || p.get("gatewayToken").is_some_and(|v| !v.is_null())
        {
            out.add(
                Class::Red,
                "tool.gateway_override",
                "the call redirects itself to another gateway (gatewayUrl/gatewayToken); drop those parameters",
            );
        }
        let mut all = Vec::new();
        strings(p, &mut all);
        if all
            .iter()
            .any(|t| secret_ref::scan(t).any(|r| matches!(r, RefToken::Malformed { .. })))
        {
            out.add(
                Class::Red,
                "tool.secret_ref_malformed",
                "a parameter contains a malformed SECRET_REF( reference",
            );
        }
    }

    fn shell_into<'a>(
        &self,
        command: &str,
        cwd: Option<&str>,
        out: &mut Findings,
        facts: &mut Facts<'a>,
    ) {
        let analysis = self.analyze_shell(command, cwd);
        for f in analysis.findings {
            out.add(f.class, &f.rule, f.reason);
        }
        facts.segments.extend(analysis.segments);
        facts.hosts.extend(analysis.hosts);
        facts.opaque_network |= analysis.opaque_network;
        facts.path_kinds.extend(analysis.path_kinds);
        facts.command = Some(match facts.command.take() {
            Some(prev) => format!("{prev}\n{command}"),
            None => command.to_owned(),
        });
    }

    fn exec<'a>(&self, call: &'a ToolCall, out: &mut Findings, facts: &mut Facts<'a>) {
        let p = &call.params;
        let Some(command) = s(p, "command") else {
            out.add(
                Class::Red,
                "tool.exec.no_command",
                "exec without a string `command` cannot be judged",
            );
            return;
        };
        if call.tool_kind.as_deref() == Some("code_mode_exec") {
            self.code_mode(command, out);
            facts.command = Some(command.to_owned());
            return;
        }
        let cwd = s(p, "workdir");
        if let Some(dir) = cwd {
            let kind = self.paths.classify(dir, None);
            facts.path_kinds.push(kind);
            if matches!(
                kind,
                PathKind::Clawgate | PathKind::Openclaw | PathKind::Ssh
            ) {
                out.add(
                    Class::Critical,
                    "tool.exec.protected_workdir",
                    format!("commands may not run inside {dir} ({} path)", kind.as_str()),
                );
            }
        }
        if s(p, "ask").is_some_and(|a| a.eq_ignore_ascii_case("off")) {
            out.add(
                Class::Red,
                "tool.exec.ask_off",
                "the call tries to switch off OpenClaw's own exec approval prompt; leave `ask` unset",
            );
        }
        if p.get("elevated").and_then(Value::as_bool) == Some(true) {
            out.add(
                Class::Red,
                "tool.exec.elevated",
                "elevated exec runs with raised privileges; ask the owner",
            );
        }
        if s(p, "host") == Some("node") || s(p, "node").is_some() {
            out.add(
                Class::Red,
                "tool.exec.node",
                "runs the command on a paired device; ask the owner",
            );
        }
        if let Some(env) = p.get("env").and_then(Value::as_object) {
            for key in env.keys() {
                let probe = format!("{key}=x true");
                let a = self.analyze_shell(&probe, None);
                for f in a
                    .findings
                    .into_iter()
                    .filter(|f| f.rule == "shell.env.dangerous")
                {
                    out.add(f.class, &f.rule, f.reason);
                }
            }
        }
        self.shell_into(command, cwd, out, facts);
    }

    /// Code Mode's outer exec carries JavaScript; nested tool calls are gated one by one, so the
    /// outer call is yellow unless the source reaches for the host directly.
    fn code_mode(&self, source: &str, out: &mut Findings) {
        const ESCAPES: [&str; 9] = [
            "child_process",
            "require(",
            "import(",
            "process.",
            "eval(",
            "Function(",
            "Deno.",
            "Bun.",
            "fs.",
        ];
        if let Some(hit) = ESCAPES.iter().find(|e| source.contains(*e)) {
            out.add(
                Class::Red,
                "tool.code_mode.host_access",
                format!("the Code Mode program uses {hit}, which reaches the host outside the gated tools"),
            );
        } else {
            out.add(
                Class::Yellow,
                "tool.code_mode",
                "runs a Code Mode program; its tool calls are checked one by one",
            );
        }
    }

    fn process<'a>(&self, p: &Value, out: &mut Findings, facts: &mut Facts<'a>) {
        match action(p) {
            "list" | "poll" | "log" => {}
            "kill" | "clear" | "remove" => out.add(
                Class::Yellow,
                "tool.process.manage",
                "stops or clears a background process",
            ),
            "write" | "send-keys" | "submit" | "paste" => {
                out.add(
                    Class::Yellow,
                    "tool.process.input",
                    "sends input to a running process",
                );
                // The process was gated when it started; its input is judged for critical
                // commands only (answering "y" to a prompt is not an unknown command).
                let mut inputs: Vec<String> = ["data", "text", "literal"]
                    .iter()
                    .filter_map(|k| s(p, k).map(str::to_owned))
                    .collect();
                let typed: String = p
                    .get("keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|k| k.chars().count() == 1)
                    .collect();
                if typed.chars().count() > 1 {
                    inputs.push(typed);
                }
                for text in inputs {
                    let mut inner = Findings::default();
                    self.shell_into(&text, None, &mut inner, facts);
                    for f in inner
                        .list
                        .into_iter()
                        .filter(|f| f.class == Class::Critical)
                    {
                        out.add(f.class, &f.rule, f.reason);
                    }
                }
                if p.get("hex")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
                {
                    out.add(
                        Class::Red,
                        "tool.process.hex",
                        "sends raw bytes whose meaning cannot be checked",
                    );
                }
            }
            other => out.add(
                Class::Red,
                "tool.process.unknown_action",
                format!("process action {other:?} is not known"),
            ),
        }
    }

    fn path_param<'a>(
        &self,
        p: &Value,
        key: &str,
        access: Access,
        tool: &str,
        out: &mut Findings,
        facts: &mut Facts<'a>,
    ) {
        let Some(path) = s(p, key) else {
            out.add(
                Class::Red,
                "tool.path_missing",
                format!("`{tool}` without a string `{key}` cannot be judged"),
            );
            return;
        };
        self.judge_path(path, access, tool, out, facts);
    }

    fn judge_path<'a>(
        &self,
        path: &str,
        access: Access,
        tool: &str,
        out: &mut Findings,
        facts: &mut Facts<'a>,
    ) {
        let kind = self.paths.classify(path, None);
        facts.path_kinds.push(kind);
        let (class, verb) = match access {
            Access::Read => (kind.read_class(), "read"),
            Access::Write => (kind.write_class(), "write"),
            Access::Delete => (kind.delete_class(false), "delete"),
        };
        let advice = match (access, class) {
            (_, Class::Critical) => "; the agent may never do this",
            (Access::Read, Class::Red) => "; use SECRET_REF instead of reading credentials",
            (_, Class::Red) => "; ask the owner or work inside the workspace",
            _ => "",
        };
        out.add(
            class,
            &format!("tool.{verb}.{}", kind.as_str()),
            format!(
                "`{tool}` would {verb} {path} ({} path){advice}",
                kind.as_str()
            ),
        );
    }

    fn apply_patch<'a>(&self, call: &'a ToolCall, out: &mut Findings, facts: &mut Facts<'a>) {
        let input = s(&call.params, "input").unwrap_or("");
        let mut targets: Vec<(String, Access)> = call
            .derived_paths
            .iter()
            .map(|p| (p.clone(), Access::Write))
            .collect();
        for line in input.lines() {
            let line = line.trim_end();
            for (prefix, access) in [
                ("*** Add File: ", Access::Write),
                ("*** Update File: ", Access::Write),
                ("*** Delete File: ", Access::Delete),
                ("*** Move to: ", Access::Write),
            ] {
                if let Some(path) = line.strip_prefix(prefix) {
                    targets.push((path.trim().to_owned(), access));
                }
            }
        }
        if targets.is_empty() {
            out.add(
                Class::Red,
                "tool.apply_patch.no_paths",
                "the patch names no file, so its targets cannot be checked",
            );
            return;
        }
        for (path, access) in targets {
            self.judge_path(&path, access, "apply_patch", out, facts);
        }
    }

    fn url_param<'a>(&self, p: &Value, key: &str, out: &mut Findings, facts: &mut Facts<'a>) {
        let Some(raw) = s(p, key) else {
            out.add(
                Class::Red,
                "tool.url_missing",
                format!("a string `{key}` is required"),
            );
            return;
        };
        self.judge_url(raw, out, facts);
    }

    fn judge_url<'a>(&self, raw: &str, out: &mut Findings, facts: &mut Facts<'a>) {
        if let Ok(u) = url::parse(raw) {
            facts.hosts.push(u.host.clone());
        }
        for (class, rule, reason) in url::fetch_findings(raw) {
            out.add(class, rule, reason);
        }
        if secret_ref::mentions_ref(raw) {
            out.add(
                Class::YellowExternal,
                "tool.url.secret_ref",
                "the URL carries a SECRET_REF, so a secret would leave the machine; the owner must approve",
            );
        }
    }

    fn browser<'a>(&self, p: &Value, out: &mut Findings, facts: &mut Facts<'a>) {
        let act = action(p);
        match act {
            "doctor" | "status" | "profiles" | "tabs" | "snapshot" | "console" | "requests"
            | "errors" | "text" => {}
            "start" | "stop" | "focus" | "close" | "emulate" | "dialog" => out.add(
                Class::Yellow,
                "tool.browser.manage",
                format!("browser {act}"),
            ),
            "open" | "navigate" => match s(p, "url").or_else(|| s(p, "targetUrl")) {
                Some(u) => self.judge_url(u, out, facts),
                None => out.add(
                    Class::Yellow,
                    "tool.browser.manage",
                    "browser navigation without a URL",
                ),
            },
            "screenshot" | "pdf" | "download" | "waitfordownload" => {
                out.add(
                    Class::Yellow,
                    "tool.browser.save",
                    format!("browser {act} saves a file"),
                );
                if let Some(path) = s(p, "path") {
                    self.judge_path(path, Access::Write, "browser", out, facts);
                }
            }
            "upload" => {
                out.add(
                    Class::Red,
                    "tool.browser.upload",
                    "uploads local files to a web page; the owner must approve",
                );
                for path in p
                    .get("paths")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    let kind = self.paths.classify(path, None);
                    facts.path_kinds.push(kind);
                    if kind.is_secret() || kind.read_class() >= Class::Red {
                        out.add(
                            Class::Critical,
                            "tool.browser.upload_secret",
                            format!("would upload {path} ({} path) to a web page", kind.as_str()),
                        );
                    }
                }
            }
            "importprofile" => out.add(
                Class::Red,
                "tool.browser.import_profile",
                "imports browser cookies and sessions",
            ),
            "act" => {
                let kind = s(p, "kind")
                    .or_else(|| p.get("request").and_then(|r| s(r, "kind")))
                    .unwrap_or("");
                let batch_eval = p
                    .get("actions")
                    .or_else(|| p.get("request").and_then(|r| r.get("actions")))
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| s(x, "kind") == Some("evaluate")));
                match kind {
                    "evaluate" => out.add(
                        Class::Red,
                        "tool.browser.evaluate",
                        "runs JavaScript in the page, which can read cookies and send data",
                    ),
                    "type" | "fill" | "select" | "press" => out.add(
                        Class::YellowExternal,
                        "tool.browser.input",
                        "enters data into a web page, which can submit it to a remote site",
                    ),
                    "batch" if batch_eval => out.add(
                        Class::Red,
                        "tool.browser.evaluate",
                        "a batched action runs JavaScript in the page",
                    ),
                    "batch" => out.add(
                        Class::YellowExternal,
                        "tool.browser.input",
                        "runs a batch of page actions that may submit data",
                    ),
                    _ => out.add(
                        Class::Yellow,
                        "tool.browser.interact",
                        "interacts with a web page",
                    ),
                }
            }
            other => out.add(
                Class::Red,
                "tool.browser.unknown_action",
                format!("browser action {other:?} is not known"),
            ),
        }
    }

    fn message<'a>(&self, p: &Value, out: &mut Findings, facts: &mut Facts<'a>) {
        let act = action(p);
        const READ: [&str; 14] = [
            "read",
            "search",
            "member-info",
            "channel-info",
            "list",
            "list-channels",
            "thread-list",
            "pins",
            "reactions",
            "role-info",
            "emoji-list",
            "sticker-search",
            "permissions",
            "event-list",
        ];
        const MODERATION: [&str; 14] = [
            "delete",
            "kick",
            "ban",
            "timeout",
            "role-add",
            "role-remove",
            "channel-create",
            "channel-edit",
            "channel-delete",
            "set-profile",
            "unban",
            "channel-move",
            "category-delete",
            "set-presence",
        ];
        if p.get("dryRun").and_then(Value::as_bool) == Some(true) || READ.contains(&act) {
            return;
        }
        if MODERATION.contains(&act) {
            out.add(Class::Red, "tool.message.moderation", format!("message action {act} changes or deletes content for other people; the owner must approve"));
        } else {
            out.add(
                Class::YellowExternal,
                "tool.message.send",
                format!("message action {act:?} communicates outside this machine; the owner approves external communication"),
            );
        }
        let mut files: Vec<&str> = ["media", "filename", "path", "filePath"]
            .iter()
            .filter_map(|k| s(p, k))
            .collect();
        for a in p
            .get("attachments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            files.extend(s(a, "media"));
        }
        for f in files {
            if f.contains("://") || f.starts_with("data:") {
                continue;
            }
            let kind = self.paths.classify(f, None);
            facts.path_kinds.push(kind);
            if kind.read_class() >= Class::Red {
                out.add(
                    Class::Critical,
                    "tool.message.secret_attachment",
                    format!("would send {f} ({} path) as an attachment", kind.as_str()),
                );
            }
        }
    }

    fn automations<'a>(&self, p: &Value, out: &mut Findings, facts: &mut Facts<'a>) {
        let act = action(p);
        match act {
            "status" | "list" | "get" | "runs" | "next_check" => {}
            "remove" | "run" | "wake" => out.add(
                Class::Yellow,
                "tool.automations.manage",
                format!("automations {act}"),
            ),
            "add" | "update" => {
                out.add(
                    Class::Yellow,
                    "tool.automations.schedule",
                    "schedules work for later",
                );
                let job = p.get("job").unwrap_or(&Value::Null);
                let payload = job.get("payload").unwrap_or(&Value::Null);
                if let Some(script) = s(payload, "script") {
                    out.add(Class::Red, "tool.automations.script", "schedules a script that will run later without supervision; the owner must approve");
                    self.shell_into(script, None, out, facts);
                }
                if let Some(cmd) = job
                    .get("schedule")
                    .and_then(|s| s.get("command"))
                    .and_then(Value::as_array)
                {
                    let words: Vec<String> = cmd
                        .iter()
                        .filter_map(Value::as_str)
                        .map(shell_quote)
                        .collect();
                    out.add(
                        Class::Red,
                        "tool.automations.command",
                        "schedules a command that will run later without supervision",
                    );
                    self.shell_into(
                        &words.join(" "),
                        s(job.get("schedule").unwrap_or(&Value::Null), "cwd"),
                        out,
                        facts,
                    );
                }
                if payload
                    .get("allowUnsafeExternalContent")
                    .and_then(Value::as_bool)
                    == Some(true)
                {
                    out.add(
                        Class::Red,
                        "tool.automations.unsafe_content",
                        "lets a scheduled run treat external content as trusted",
                    );
                }
                match job.get("delivery").and_then(|d| s(d, "mode")) {
                    Some("webhook") | Some("announce") => out.add(
                        Class::YellowExternal,
                        "tool.automations.delivery",
                        "the scheduled job sends its result outside this machine",
                    ),
                    _ => {}
                }
            }
            other => out.add(
                Class::Red,
                "tool.automations.unknown_action",
                format!("automations action {other:?} is not known"),
            ),
        }
    }

    fn plugins(&self, p: &Value, out: &mut Findings) {
        let act = action(p);
        let target = format!(
            "{} {}",
            s(p, "pluginId").unwrap_or(""),
            s(p, "packageName").unwrap_or("")
        );
        match act {
            "list" | "inspect" | "search" => {}
            "install" | "enable" | "disable" | "uninstall" | "reload" => {
                if target.to_ascii_lowercase().contains("clawgate") {
                    out.add(
                        Class::Critical,
                        "tool.plugins.self_tamper",
                        "the agent may not change the Clawgate plugin",
                    );
                }
                out.add(Class::Red, "tool.plugins.change", format!("plugins {act} changes code running inside the gateway; the owner must approve"));
            }
            other => out.add(
                Class::Red,
                "tool.plugins.unknown_action",
                format!("plugins action {other:?} is not known"),
            ),
        }
    }

    fn sessions_spawn(&self, call: &ToolCall, out: &mut Findings) {
        let p = &call.params;
        out.add(Class::Yellow, "tool.sessions_spawn", "starts a sub-agent");
        let depth = call
            .session_key
            .as_deref()
            .map_or(0, |k| k.to_ascii_lowercase().matches("subagent").count());
        if depth >= self.max_spawn_depth {
            out.add(
                Class::Red,
                "tool.sessions_spawn.depth",
                format!("sub-agents are already nested {depth} deep (limit {}); finish the task in this session", self.max_spawn_depth),
            );
        }
        if p.get("runTimeoutSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|t| t > 3600)
        {
            out.add(
                Class::Red,
                "tool.sessions_spawn.budget",
                "the sub-agent would run for more than an hour; ask the owner",
            );
        }
        if s(p, "projectGitUrl").is_some() {
            out.add(
                Class::YellowExternal,
                "tool.sessions_spawn.clone",
                "the sub-agent clones a remote repository",
            );
        }
    }

    fn nodes(&self, p: &Value, out: &mut Findings) {
        let act = action(p);
        match act {
            "status" | "describe" | "pending" | "which" | "device_status" | "device_info"
            | "device_permissions" | "device_health" | "camera_list" => {}
            "notify" | "camera_ptz" => out.add(Class::Yellow, "tool.nodes.notify", format!("nodes {act} acts on a paired device")),
            "notifications_action" => out.add(Class::YellowExternal, "tool.nodes.reply", "acts on the owner's notifications, possibly replying to someone"),
            "approve" | "reject" => out.add(Class::Critical, "tool.nodes.pairing", "the agent may not approve or reject device pairing itself"),
            "camera_snap" | "camera_clip" | "screen_record" | "screen_snapshot" | "photos_latest"
            | "location_get" | "notifications_list" => out.add(
                Class::Red,
                "tool.nodes.privacy",
                format!("nodes {act} captures private data from the owner's device; the owner must approve"),
            ),
            "invoke" => out.add(Class::Red, "tool.nodes.invoke", "runs a command on a paired device; the owner must approve"),
            other => out.add(Class::Red, "tool.nodes.unknown_action", format!("nodes action {other:?} is not known")),
        }
    }

    fn tool_call(&self, call: &ToolCall, out: &mut Findings, facts: &mut Facts<'_>, depth: usize) {
        let p = &call.params;
        let (Some(id), args) = (
            s(p, "id"),
            p.get("args")
                .cloned()
                .unwrap_or(Value::Object(Default::default())),
        ) else {
            out.add(
                Class::Red,
                "tool.tool_call.malformed",
                "tool_call needs a string `id` naming the real tool",
            );
            return;
        };
        if depth >= MAX_TOOL_NESTING {
            out.add(
                Class::Critical,
                "tool.tool_call.nesting",
                "tool_call is nested too deep",
            );
            return;
        }
        // Judge the wrapped call exactly as if it were made directly: a wrapper never launders.
        let inner = ToolCall {
            session_key: call.session_key.clone(),
            sender_is_owner: call.sender_is_owner,
            ..ToolCall::new(id, args)
        };
        let reach = self.classify_into(&inner, out, depth + 1);
        facts.hosts.extend(reach.hosts);
        facts.opaque_network |= reach.opaque_network;
    }
}

#[derive(Debug, Clone, Copy)]
enum Access {
    Read,
    Write,
    Delete,
}

/// Quotes one argv element for re-parsing as shell.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
