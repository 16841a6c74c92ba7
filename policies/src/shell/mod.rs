//! Shell analysis for `exec` commands.
//!
//! The command is parsed with tree-sitter-bash and every command in it is visited: segments of
//! chains and pipelines, subshells and groups, command and process substitutions, heredocs fed to
//! a shell, and the payloads of `bash -c`, `eval`, `find -exec`, `xargs`, `sudo` and the other
//! dispatch wrappers (recursively, to a bounded depth). Each command is judged by per-binary
//! rules in the `commands` module; redirect targets and path arguments are judged by [`crate::paths`].
//!
//! Anything the analyzer cannot resolve statically (a parse error, a variable in command
//! position, a limit exceeded) is at least `red`: the shell that finally runs the text might read
//! it differently, and the policy fails closed.

mod commands;
mod opts;
mod words;

use std::collections::HashMap;

use clawgate_protocol::secret_ref::{self, RefToken};
use tree_sitter::{Node, Parser};

use crate::class::{Class, Finding, Findings};
use crate::paths::{PathKind, PathRules, normalize};

pub(crate) use words::Word;

/// What every non-ASCII character becomes before parsing (see [`Analyzer::source`]).
pub(crate) const NON_ASCII_STANDIN: char = '\x7f';

/// Word that stands in for `SECRET_REF(name)` while parsing: shell-neutral, so the parser sees one
/// plain word where the reference was.
pub(crate) const SECRET_PLACEHOLDER: &str = "__CLAWGATE_SECRET_REF__";

/// Analysis limits. Exceeding any of them is `critical`: an attacker who can make the analyzer
/// give up must not gain anything by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command accepted, in bytes.
    pub max_command_bytes: usize,
    /// Most commands (segments) analysed in one call, including nested ones.
    pub max_segments: usize,
    /// Deepest payload nesting (`bash -c "eval '...'"` is two levels).
    pub max_depth: usize,
    /// Deepest syntax nesting (subshells in substitutions in groups...).
    pub max_nesting: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_command_bytes: 64 * 1024,
            max_segments: 256,
            max_depth: 8,
            max_nesting: 64,
        }
    }
}

/// Shell settings from the policy.
#[derive(Debug, Clone)]
pub(crate) struct ShellConfig {
    /// Baseline class of binaries without special rules.
    pub(crate) commands: HashMap<String, Class>,
    /// Class of binaries the policy does not know.
    pub(crate) unknown_command: Class,
    pub(crate) limits: Limits,
}

/// One command found in the script, after unwrapping wrappers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The resolved binary name (basename for trusted absolute paths).
    pub binary: String,
    /// The normalised argument vector, `argv[0]` included as written.
    pub argv: Vec<String>,
}

/// Result of analysing one shell command.
#[derive(Debug, Clone, Default)]
pub struct ShellAnalysis {
    /// Findings, unordered.
    pub findings: Vec<Finding>,
    /// Every command seen, in visiting order.
    pub segments: Vec<Segment>,
    /// Hosts of URLs the command contacts (IDNA-normalised), for `url_host` rule predicates.
    pub hosts: Vec<String>,
    /// Kinds of the paths it reads, writes or deletes, for `path_kinds` rule predicates.
    pub path_kinds: Vec<PathKind>,
    /// The command reaches the network somewhere no host could be named for (`ssh`, `nc`,
    /// `git push`, a URL computed at run time). Secrets are never resolved into such a call:
    /// their host scope cannot be checked.
    pub opaque_network: bool,
}

/// Where a command's standard input comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Stdin {
    /// The terminal or whatever the caller gave: not attacker-shaped text.
    #[default]
    Inherited,
    /// An earlier pipeline stage.
    Pipe,
    /// A heredoc or here-string with this text.
    Text(String),
    /// A file redirect (`< path`).
    File(String),
}

/// I/O context of one command.
#[derive(Debug, Clone, Default)]
pub(crate) struct Io {
    pub(crate) stdin: Stdin,
    /// Output goes to a file (a write redirect is attached).
    pub(crate) writes_file: bool,
    /// Extra arguments will be appended at run time (`xargs`, `find -exec {}`).
    pub(crate) dynamic_args: bool,
}

/// Analyzes `command` (with `cwd` as the exec `workdir`, when known).
pub(crate) fn analyze(
    cfg: &ShellConfig,
    paths: &PathRules,
    command: &str,
    cwd: Option<&str>,
) -> ShellAnalysis {
    let mut a = Analyzer::new(cfg, paths, cwd);
    a.top(command);
    ShellAnalysis {
        findings: a.out.list,
        segments: a.segments,
        hosts: a.hosts,
        path_kinds: a.path_kinds,
        opaque_network: a.opaque_network,
    }
}

pub(crate) struct Analyzer<'c> {
    cfg: &'c ShellConfig,
    paths: &'c PathRules,
    parser: Option<Parser>,
    out: Findings,
    segments: Vec<Segment>,
    depth: usize,
    cwd: Option<String>,
    reads_secret: bool,
    network: bool,
    /// See [`ShellAnalysis::opaque_network`].
    opaque_network: bool,
    aborted: bool,
    /// How many dispatch wrappers (`sudo nice timeout ...`) enclose the current command.
    wrap_depth: usize,
    hosts: Vec<String>,
    path_kinds: Vec<PathKind>,
    /// The call runs code computed at run time (`bash -c "$X"`, `eval "$(…)"`).
    runs_dynamic: bool,
    /// Files this call downloads (normalised), to catch download-then-run in one call.
    downloads: Vec<String>,
    /// Files this call writes (normalised) with their content when it is known statically
    /// (heredoc, here-string, echo/printf), to judge write-then-run in one call.
    written: Vec<(String, Option<String>)>,
    /// Write targets of the statement being processed, not yet paired with content.
    pending_writes: Vec<String>,
}

/// Most dispatch wrappers around one command; more is critical (and keeps recursion shallow).
const MAX_WRAPPERS: usize = 32;

impl<'c> Analyzer<'c> {
    fn new(cfg: &'c ShellConfig, paths: &'c PathRules, cwd: Option<&str>) -> Self {
        let mut parser = Parser::new();
        let parser = parser
            .set_language(&tree_sitter_bash::LANGUAGE.into())
            .ok()
            .map(|()| parser);
        Analyzer {
            cfg,
            paths,
            parser,
            out: Findings::default(),
            segments: Vec::new(),
            depth: 0,
            cwd: cwd.map(str::to_owned),
            reads_secret: false,
            network: false,
            opaque_network: false,
            aborted: false,
            wrap_depth: 0,
            hosts: Vec::new(),
            path_kinds: Vec::new(),
            runs_dynamic: false,
            downloads: Vec::new(),
            written: Vec::new(),
            pending_writes: Vec::new(),
        }
    }

    fn add(&mut self, class: Class, rule: &str, reason: impl Into<String>) {
        self.out.add(class, rule, reason);
    }

    /// Code computed at run time is red on its own; [`Analyzer::top`] makes it critical when the
    /// same call also reaches the network.
    pub(crate) fn dynamic_code(&mut self, rule: &str, reason: impl Into<String>) {
        self.runs_dynamic = true;
        self.add(Class::Red, rule, reason);
    }

    /// Entry point: checks that apply to the raw text, then the parse.
    fn top(&mut self, command: &str) {
        let limits = self.cfg.limits;
        if command.len() > limits.max_command_bytes {
            self.add(
                Class::Critical,
                "shell.limit.length",
                format!(
                    "the command is {} bytes, over the {}-byte analysis limit; split it into smaller commands",
                    command.len(),
                    limits.max_command_bytes
                ),
            );
            return;
        }
        self.check_characters(command);
        let text = self.replace_secret_refs(command);
        self.source(&text);
        if self.runs_dynamic && self.network {
            self.add(
                Class::Critical,
                "shell.remote_code",
                "the command runs code computed at run time in a call that also reaches the network \
                 (like `bash -c \"$(curl …)\"`): that is remote code execution; download the code, \
                 let the owner review it, then run it",
            );
        }
        if self.reads_secret && self.network {
            self.add(
                Class::Critical,
                "shell.exfiltration",
                "the command reads a secret-bearing file and uses the network in the same call; \
                 secrets may only leave through SECRET_REF in scoped tools",
            );
        }
    }

    fn check_characters(&mut self, text: &str) {
        if text.contains('\0') {
            self.add(
                Class::Critical,
                "shell.nul_byte",
                "the command contains a NUL byte",
            );
        }
        if text.chars().any(is_bidi_control) {
            self.add(
                Class::Critical,
                "shell.bidi_control",
                "the command contains bidirectional-override characters that make it display differently from what runs",
            );
        }
        if let Some(c) = text.chars().find(|c| is_invisible(*c)) {
            self.add(
                Class::Red,
                "shell.invisible_char",
                format!(
                    "the command contains an invisible or non-standard space character (U+{:04X}); retype it in plain ASCII",
                    c as u32
                ),
            );
        }
        if text.contains('\r') {
            self.add(
                Class::Red,
                "shell.carriage_return",
                "the command contains a carriage return, which can hide part of it on display",
            );
        }
    }

    fn replace_secret_refs(&mut self, text: &str) -> String {
        if !secret_ref::mentions_ref(text) {
            return text.to_owned();
        }
        if secret_ref::scan(text).any(|t| matches!(t, RefToken::Malformed { .. })) {
            self.add(
                Class::Red,
                "shell.secret_ref_malformed",
                "the command contains a malformed SECRET_REF( reference; write it as SECRET_REF(name)",
            );
        }
        secret_ref::replace_refs(text, |_| SECRET_PLACEHOLDER.to_owned())
    }

    /// Parses and walks one script (the top-level command or a payload).
    fn source(&mut self, text: &str) {
        if self.aborted {
            return;
        }
        if self.depth > self.cfg.limits.max_depth {
            self.abort(
                "shell.limit.depth",
                "commands are nested (bash -c, eval, ...) deeper than the analysis limit",
            );
            return;
        }
        // tree-sitter-bash 0.25.1's scanner crashes (SIGSEGV) on `{` followed by some code
        // points outside the BMP, so the parser only ever sees ASCII: each other character
        // becomes DEL, a plain word character. Character checks ran on the original text, and
        // command names containing DEL are reported as non-ASCII.
        let ascii;
        let text = if text.is_ascii() {
            text
        } else {
            ascii = text
                .chars()
                .map(|c| if c.is_ascii() { c } else { NON_ASCII_STANDIN })
                .collect::<String>();
            ascii.as_str()
        };
        let Some(tree) = self.parser.as_mut().and_then(|p| p.parse(text, None)) else {
            self.add(
                Class::Red,
                "shell.parser_unavailable",
                "the shell parser failed; the command cannot be analysed",
            );
            return;
        };
        let root = tree.root_node();
        if root.has_error() {
            self.add(
                Class::Red,
                "shell.parse_error",
                "the command is not valid shell syntax, so bash could read it differently than shown; fix the syntax",
            );
        }
        self.walk(root, text, &Io::default(), 0);
    }

    /// Analyses a payload string (`bash -c`, `eval`, `su -c`...) one level deeper.
    pub(crate) fn payload(&mut self, text: &str) {
        let saved_cwd = self.cwd.clone();
        self.depth += 1;
        self.source(text);
        self.depth -= 1;
        self.cwd = saved_cwd;
    }

    /// Runs `f` but keeps only the critical findings it adds (and none of its segments): for
    /// text that is probably not a command (string literals in inline code, npx arguments) but
    /// must not hide a critical one.
    pub(crate) fn critical_only(&mut self, f: impl FnOnce(&mut Self)) {
        let findings_mark = self.out.list.len();
        let segments_mark = self.segments.len();
        f(self);
        let mut i = findings_mark;
        while i < self.out.list.len() {
            if self.out.list[i].class < Class::Critical {
                self.out.list.remove(i);
            } else {
                i += 1;
            }
        }
        self.segments.truncate(segments_mark);
        self.aborted = false;
    }

    fn abort(&mut self, rule: &str, reason: &str) {
        self.add(
            Class::Critical,
            rule,
            format!("{reason}; simplify the command"),
        );
        self.aborted = true;
    }

    fn walk(&mut self, node: Node<'_>, src: &str, io: &Io, nest: usize) {
        if self.aborted {
            return;
        }
        if nest > self.cfg.limits.max_nesting {
            self.abort(
                "shell.limit.nesting",
                "the command nests deeper than the analysis limit",
            );
            return;
        }
        match node.kind() {
            "command" => self.command(node, src, io, nest),
            "pipeline" => {
                let mut stage = 0;
                for i in 0..node.named_child_count() {
                    let Some(c) = node.named_child(i) else {
                        continue;
                    };
                    let io = Io {
                        stdin: if stage == 0 {
                            io.stdin.clone()
                        } else {
                            Stdin::Pipe
                        },
                        ..io.clone()
                    };
                    self.walk(c, src, &io, nest + 1);
                    stage += 1;
                }
            }
            "redirected_statement" => self.redirected(node, src, io, nest),
            "function_definition" => {
                self.add(
                    Class::Critical,
                    "shell.function_definition",
                    "the command defines a shell function, which can shadow any command name; run the commands directly",
                );
                self.children(node, src, io, nest);
            }
            "variable_assignment" => self.assignment(node, src, nest),
            "declaration_command" => self.declaration(node, src, nest),
            "command_substitution" => self.children(node, src, &Io::default(), nest),
            "process_substitution" => {
                // `>(cmd)` feeds cmd whatever is written to it: its stdin is a pipe.
                let text = src.get(node.byte_range()).unwrap_or_default();
                let io = Io {
                    stdin: if text.starts_with(">(") {
                        Stdin::Pipe
                    } else {
                        Stdin::Inherited
                    },
                    ..Io::default()
                };
                self.children(node, src, &io, nest)
            }
            "file_redirect" | "heredoc_redirect" | "herestring_redirect" => {
                let mut stmt_io = Io::default();
                self.redirect(node, src, &mut stmt_io, nest);
            }
            _ => self.children(node, src, io, nest),
        }
    }

    fn children(&mut self, node: Node<'_>, src: &str, io: &Io, nest: usize) {
        for i in 0..node.named_child_count() {
            if let Some(c) = node.named_child(i) {
                self.walk(c, src, io, nest + 1);
            }
        }
    }

    fn redirected(&mut self, node: Node<'_>, src: &str, io: &Io, nest: usize) {
        let mut stmt_io = io.clone();
        let mut body = None;
        for i in 0..node.child_count() {
            let Some(c) = node.child(i) else { continue };
            match node.field_name_for_child(i as u32) {
                Some("body") => body = Some(c),
                Some("redirect") => self.redirect(c, src, &mut stmt_io, nest),
                _ if c.is_named() => self.walk(c, src, io, nest + 1),
                _ => {}
            }
        }
        if let Some(b) = body {
            self.record_writes(&stmt_io, Some(b), src);
            self.walk(b, src, &stmt_io, nest + 1);
        }
    }

    /// Pairs the statement's write targets with the content written, when it is static.
    fn record_writes(&mut self, io: &Io, body: Option<Node<'_>>, src: &str) {
        if self.pending_writes.is_empty() {
            return;
        }
        let content = match &io.stdin {
            Stdin::Text(t) => Some(t.clone()),
            _ => body.filter(|b| b.kind() == "command").and_then(|b| {
                let name = b.child_by_field_name("name").map(|n| words::word(n, src))?;
                if !matches!(name.text.as_str(), "echo" | "printf") {
                    return None;
                }
                let mut out = Vec::new();
                for i in 0..b.child_count() {
                    if b.field_name_for_child(i as u32) == Some("argument")
                        && let Some(c) = b.child(i)
                    {
                        out.push(words::word(c, src).text);
                    }
                }
                Some(out.join(" "))
            }),
        };
        for path in std::mem::take(&mut self.pending_writes) {
            self.written.push((path, content.clone()));
        }
    }

    /// Running a file written earlier in the same call: judge what was written.
    pub(crate) fn check_written(&mut self, path: &str, runner: &str) {
        let norm = normalize(path, self.cwd.as_deref()).text;
        let Some((_, content)) = self.written.iter().find(|(p, _)| *p == norm).cloned() else {
            return;
        };
        match content {
            Some(body) if runner.is_empty() || commands::is_shell(runner) => self.payload(&body),
            Some(body) => {
                // Same as running a workspace script written by an earlier call (yellow), but
                // the literals of the program are still looked at.
                self.add(
                    Class::Yellow,
                    "shell.script",
                    format!("runs {path}, written in the same command; its {runner} code is not checked"),
                );
                self.scan_code_literals(runner, &body);
            }
            None => self.add(
                Class::Red,
                "shell.write_then_run",
                format!("{path} is written and executed in the same command, so what runs cannot be checked"),
            ),
        }
    }

    /// Judges one redirect and records its effect on the statement's I/O.
    fn redirect(&mut self, node: Node<'_>, src: &str, io: &mut Io, nest: usize) {
        match node.kind() {
            "file_redirect" => self.file_redirect(node, src, io, nest),
            "herestring_redirect" => {
                let mut text = String::new();
                for i in 0..node.named_child_count() {
                    if let Some(c) = node.named_child(i) {
                        text.push_str(&words::word(c, src).text);
                        self.walk(c, src, &Io::default(), nest + 1);
                    }
                }
                io.stdin = Stdin::Text(text);
            }
            "heredoc_redirect" => {
                let mut text = String::new();
                for i in 0..node.named_child_count() {
                    let Some(c) = node.named_child(i) else {
                        continue;
                    };
                    match c.kind() {
                        "heredoc_body" => {
                            text.push_str(src.get(c.byte_range()).unwrap_or_default());
                            self.children(c, src, &Io::default(), nest);
                        }
                        "heredoc_start" | "heredoc_end" => {}
                        "file_redirect" => self.file_redirect(c, src, io, nest),
                        // `cat <<EOF | sh`: the rest of the line is a pipeline fed by the body.
                        _ => {
                            let downstream = Io {
                                stdin: Stdin::Pipe,
                                ..Io::default()
                            };
                            self.walk(c, src, &downstream, nest + 1);
                        }
                    }
                }
                io.stdin = Stdin::Text(text);
            }
            _ => self.walk(node, src, io, nest + 1),
        }
    }

    fn file_redirect(&mut self, node: Node<'_>, src: &str, io: &mut Io, nest: usize) {
        let mut op = "";
        let mut dests = Vec::new();
        for i in 0..node.child_count() {
            let Some(c) = node.child(i) else { continue };
            match node.field_name_for_child(i as u32) {
                Some("destination") => dests.push(c),
                Some("descriptor") => {}
                _ if !c.is_named() => op = src.get(c.byte_range()).unwrap_or_default(),
                _ => {}
            }
        }
        for d in dests {
            self.walk(d, src, &Io::default(), nest + 1);
            let w = words::word(d, src);
            if d.kind() == "number" || w.text == "-" {
                continue; // fd duplication or close, not a file
            }
            if op.starts_with('<') && op != "<>" {
                self.path_read(&w, "redirect");
                io.stdin = Stdin::File(w.text.clone());
            } else {
                self.path_write(&w, "redirect");
                let norm = normalize(&w.text, self.cwd.as_deref()).text;
                self.pending_writes.push(norm);
                io.writes_file = true;
            }
        }
    }

    fn assignment(&mut self, node: Node<'_>, src: &str, nest: usize) {
        if let Some(name) = node.child_by_field_name("name") {
            let name = src.get(name.byte_range()).unwrap_or_default();
            self.check_env_name(name);
        }
        self.children(node, src, &Io::default(), nest);
    }

    fn declaration(&mut self, node: Node<'_>, src: &str, nest: usize) {
        let mut keyword = "";
        let mut printed = true;
        for i in 0..node.child_count() {
            let Some(c) = node.child(i) else { continue };
            if !c.is_named() {
                keyword = src.get(c.byte_range()).unwrap_or_default();
                continue;
            }
            match c.kind() {
                "variable_assignment" => {
                    printed = false;
                    self.assignment(c, src, nest + 1);
                }
                "variable_name" => printed = false,
                _ => {
                    let w = words::word(c, src);
                    if w.text.starts_with('-') && w.text.contains('f') {
                        self.add(
                            Class::Red,
                            "shell.declare.function",
                            format!("`{keyword} -f` manipulates shell functions, which can shadow commands"),
                        );
                    } else if !w.text.starts_with('-') || w.text.contains('p') {
                        printed = printed || w.text.contains('p');
                    }
                    self.walk(c, src, &Io::default(), nest + 1);
                }
            }
        }
        if printed && matches!(keyword, "export" | "declare" | "typeset" | "readonly") {
            self.add(
                Class::Red,
                "shell.env.dump",
                format!("`{keyword}` without assignments prints the environment, which may hold injected secrets"),
            );
        }
    }

    fn check_env_name(&mut self, name: &str) {
        if is_dangerous_env(name) {
            self.add(
                Class::Red,
                "shell.env.dangerous",
                format!(
                    "setting {name} changes which programs or code a command runs; run the command without it"
                ),
            );
        }
    }

    fn command(&mut self, node: Node<'_>, src: &str, io: &Io, nest: usize) {
        let mut io = io.clone();
        let mut argv: Vec<Word> = Vec::new();
        for i in 0..node.child_count() {
            let Some(c) = node.child(i) else { continue };
            match node.field_name_for_child(i as u32) {
                Some("name") | Some("argument") => {
                    self.walk(c, src, &Io::default(), nest + 1);
                    argv.push(words::word(c, src));
                }
                Some("redirect") => self.redirect(c, src, &mut io, nest),
                _ if c.kind() == "variable_assignment" => self.assignment(c, src, nest + 1),
                _ if c.is_named() => self.walk(c, src, &Io::default(), nest + 1),
                _ => {}
            }
        }
        if argv.is_empty() {
            return;
        }
        self.record_writes(&io, Some(node), src);
        self.argv(&argv, &io);
    }

    /// Records a segment, enforcing the segment limit. Returns false when analysis must stop.
    pub(crate) fn record(&mut self, binary: &str, argv: &[Word]) -> bool {
        if self.segments.len() >= self.cfg.limits.max_segments {
            self.abort(
                "shell.limit.segments",
                "the command has more parts than the analysis limit",
            );
            return false;
        }
        self.segments.push(Segment {
            binary: binary.to_owned(),
            argv: argv.iter().map(|w| w.text.clone()).collect(),
        });
        true
    }

    fn note_path(&mut self, kind: PathKind) {
        if !self.path_kinds.contains(&kind) {
            self.path_kinds.push(kind);
        }
    }

    /// Remembers that this call downloads into `path`.
    pub(crate) fn note_download(&mut self, path: &str) {
        let norm = normalize(path, self.cwd.as_deref());
        self.downloads.push(norm.text);
    }

    /// Critical when `path` was downloaded earlier in the same call: remote code, unreviewed.
    pub(crate) fn check_downloaded(&mut self, path: &str) {
        let norm = normalize(path, self.cwd.as_deref());
        if self.downloads.contains(&norm.text) {
            self.add(
                Class::Critical,
                "shell.download_and_run",
                format!(
                    "{path} is downloaded and executed in the same command; download it, let the owner review it, then run it"
                ),
            );
        }
    }

    /// The call reaches the network at a destination that could not be named.
    pub(crate) fn network_unnamed(&mut self) {
        self.network = true;
        self.opaque_network = true;
    }

    pub(crate) fn note_host(&mut self, host: &str) {
        if !self.hosts.iter().any(|h| h == host) {
            self.hosts.push(host.to_owned());
        }
    }

    /// Judges reading `w` as a path.
    pub(crate) fn path_read(&mut self, w: &Word, what: &str) {
        let kind = self.kind_of(w);
        self.note_path(kind);
        if kind.is_secret() {
            self.reads_secret = true;
        }
        let class = kind.read_class();
        if class > Class::Green && kind != PathKind::Dynamic {
            self.add(
                class,
                &format!("path.read.{}", kind.as_str()),
                format!(
                    "{what} reads {} ({} path); secrets must be used through SECRET_REF, not read",
                    w.text,
                    kind.as_str()
                ),
            );
        }
    }

    /// Judges creating or overwriting `w`.
    pub(crate) fn path_write(&mut self, w: &Word, what: &str) {
        let kind = self.kind_of(w);
        self.note_path(kind);
        let class = kind.write_class();
        self.add(
            class,
            &format!("path.write.{}", kind.as_str()),
            format!("{what} writes {} ({} path)", w.text, kind.as_str()),
        );
    }

    /// Judges deleting (or recursively changing) `w`.
    pub(crate) fn path_delete(&mut self, w: &Word, recursive: bool, what: &str) {
        let (norm, kind, unknown) = self.locate(w);
        self.note_path(kind);
        if recursive && !unknown && crate::paths::is_root_like(&norm) {
            self.add(
                Class::Critical,
                "path.delete.root",
                format!(
                    "{what} recursively destroys {}, a home or top-level directory",
                    w.text
                ),
            );
            return;
        }
        let class = if w.glob && recursive {
            kind.delete_class(true).max(Class::Red)
        } else {
            kind.delete_class(recursive)
        };
        self.add(
            class,
            &format!("path.delete.{}", kind.as_str()),
            format!(
                "{what} {}removes {} ({} path)",
                if recursive { "recursively " } else { "" },
                w.text,
                kind.as_str()
            ),
        );
    }

    pub(crate) fn kind_of(&self, w: &Word) -> PathKind {
        self.locate(w).1
    }

    /// Normalises and classifies a path word. Run-time parts are replaced by a placeholder
    /// component so the static skeleton still counts (`backup-$(date).tgz` is a workspace
    /// file, `$DIR/.bashrc` a shell start-up file); a path that *starts* with an unknown
    /// expansion is `Dynamic` unless its tail alone is already sensitive. The flag is true
    /// when the location itself is unknown.
    pub(crate) fn locate(&self, w: &Word) -> (crate::paths::Normalized, PathKind, bool) {
        let text = w.text.strip_prefix('@').unwrap_or(&w.text);
        if !text.contains('$') && !text.contains('`') {
            let norm = normalize(text, self.cwd.as_deref());
            let kind = self.paths.classify_normalized(&norm);
            return (norm, kind, false);
        }
        let (skel, starts_dynamic) = crate::paths::skeleton(text);
        let norm = normalize(&skel, self.cwd.as_deref());
        let kind = self.paths.classify_normalized(&norm);
        if starts_dynamic && kind >= PathKind::Temp {
            return (norm, PathKind::Dynamic, true);
        }
        (norm, kind, starts_dynamic)
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}'
            | '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{1680}'
            | '\u{180E}'
            | '\u{2000}'..='\u{200D}'
            | '\u{2028}'..='\u{202F}'
            | '\u{205F}'..='\u{2064}'
            | '\u{3000}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
    ) || ('\u{FE00}'..='\u{FE0F}').contains(&c)
}

/// Environment variables that change which program or code runs.
fn is_dangerous_env(name: &str) -> bool {
    const EXACT: [&str; 33] = [
        "PATH",
        "IFS",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "BASH_ENV",
        "ENV",
        "PROMPT_COMMAND",
        "PS4",
        "SHELLOPTS",
        "BASHOPTS",
        "PAGER",
        "GIT_PAGER",
        "MANPAGER",
        "EDITOR",
        "VISUAL",
        "GIT_EDITOR",
        "SYSTEMD_PAGER",
        "BROWSER",
        "PSQL_PAGER",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_EXTERNAL_DIFF",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "LESSOPEN",
        "LESSCLOSE",
        "NODE_OPTIONS",
        "PYTHONSTARTUP",
        "PERL5OPT",
        "RUBYOPT",
        "GIT_EXEC_PATH",
        "GIT_TEMPLATE_DIR",
    ];
    EXACT.contains(&name)
        || name.starts_with("GIT_CONFIG")
        || name.starts_with("BASH_FUNC_")
        || name.starts_with("DYLD_")
}
