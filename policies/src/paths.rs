//! Path classification: every path a call reads, writes or deletes is put in one [`PathKind`].
//!
//! Paths are normalised lexically (no file-system access: the classifier must be pure and fast,
//! and the agent controls the file system anyway): `~`, `$HOME`, `/home/<user>` and `/root` all
//! become `~`, `.` and `..` are folded, and the result is matched against glob lists from the
//! policy's `[paths]` table, in the fixed priority order of [`PathKind`].

use regex::Regex;
use serde::Deserialize;

use crate::class::Class;
use crate::error::{Error, Result};

/// What a path is, from the point of view of risk. Earlier variants win when several match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// `/dev/null`, `/dev/stdout` and friends.
    Null,
    /// Bash's `/dev/tcp/...` and `/dev/udp/...`: raw sockets from a redirect.
    NetDevice,
    /// Clawgate's own configuration, state, plugin and sockets.
    Clawgate,
    /// OpenClaw's configuration, plugins and installation.
    Openclaw,
    /// Block devices and kernel memory.
    Device,
    /// Files whose modification hands over the machine (sudoers, shadow, ld.so.preload, boot).
    CriticalSystem,
    /// SSH keys and configuration.
    Ssh,
    /// Files that hold credentials (`.env`, cloud credentials, private keys).
    Secret,
    /// Shell start-up files: writing them runs code in every future shell.
    ShellRc,
    /// Places that make code run later: systemd units, cron, git hooks, autostart.
    Persistence,
    /// Scratch space: `/tmp`, `/var/tmp`, `/dev/shm`.
    Temp,
    /// Everything else outside home: `/etc`, `/usr`, `/var`...
    System,
    /// Dotfiles and dot-directories in home not covered above (`~/.gitconfig`, `~/.config`).
    HomeDot,
    /// Ordinary files in home.
    Home,
    /// Relative paths and the `[paths] workspace` globs: the agent's workspace.
    Workspace,
    /// A path built from variables or substitutions that cannot be resolved statically.
    Dynamic,
}

impl PathKind {
    /// Kinds that come from the policy's glob lists, in priority order.
    pub const CONFIGURABLE: [PathKind; 14] = [
        PathKind::Null,
        PathKind::NetDevice,
        PathKind::Clawgate,
        PathKind::Openclaw,
        PathKind::Device,
        PathKind::CriticalSystem,
        PathKind::Ssh,
        PathKind::Secret,
        PathKind::ShellRc,
        PathKind::Persistence,
        // The agent's workspace by absolute path (OpenClaw keeps it under ~/.openclaw): after
        // the sensitive kinds, so `.env` or `.git/hooks` inside it still count as such.
        PathKind::Workspace,
        PathKind::Temp,
        PathKind::System,
        PathKind::HomeDot,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Null => "null",
            PathKind::NetDevice => "net_device",
            PathKind::Clawgate => "clawgate",
            PathKind::Openclaw => "openclaw",
            PathKind::Device => "device",
            PathKind::CriticalSystem => "critical_system",
            PathKind::Ssh => "ssh",
            PathKind::Secret => "secret",
            PathKind::ShellRc => "shell_rc",
            PathKind::Persistence => "persistence",
            PathKind::Temp => "temp",
            PathKind::System => "system",
            PathKind::HomeDot => "home_dot",
            PathKind::Home => "home",
            PathKind::Workspace => "workspace",
            PathKind::Dynamic => "dynamic",
        }
    }

    /// Class for creating or overwriting a file of this kind.
    pub fn write_class(self) -> Class {
        match self {
            PathKind::Null => Class::Green,
            PathKind::Temp | PathKind::Home | PathKind::Workspace => Class::Yellow,
            PathKind::Secret
            | PathKind::ShellRc
            | PathKind::Persistence
            | PathKind::System
            | PathKind::HomeDot
            | PathKind::Dynamic => Class::Red,
            PathKind::NetDevice
            | PathKind::Clawgate
            | PathKind::Openclaw
            | PathKind::Device
            | PathKind::CriticalSystem
            | PathKind::Ssh => Class::Critical,
        }
    }

    /// Class for reading a file of this kind.
    pub fn read_class(self) -> Class {
        match self {
            PathKind::NetDevice | PathKind::Clawgate => Class::Critical,
            PathKind::Openclaw
            | PathKind::Device
            | PathKind::CriticalSystem
            | PathKind::Ssh
            | PathKind::Secret => Class::Red,
            PathKind::Dynamic => Class::Yellow,
            _ => Class::Green,
        }
    }

    /// Class for deleting (or recursively modifying) a path of this kind.
    pub fn delete_class(self, recursive: bool) -> Class {
        match self {
            PathKind::Null => Class::Green,
            PathKind::Temp | PathKind::Home | PathKind::Workspace if !recursive => Class::Yellow,
            PathKind::System if recursive => Class::Critical,
            other => other.write_class().max(Class::Red),
        }
    }

    /// True for kinds whose contents are credentials. OpenClaw's state directory counts: it
    /// holds `.env`, the gateway token in `openclaw.json` and `credentials/`.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            PathKind::Secret
                | PathKind::Ssh
                | PathKind::Clawgate
                | PathKind::CriticalSystem
                | PathKind::Openclaw
        )
    }
}

/// Raw `[paths]` table: kind name → glob list.
pub(crate) type PathGlobs = std::collections::BTreeMap<PathKind, Vec<String>>;

/// Compiled path classifier.
#[derive(Debug, Clone, Default)]
pub struct PathRules {
    /// Per kind: (patterns, exclusions). An exclusion (`!glob`) removes paths from that kind.
    kinds: Vec<(PathKind, Vec<Regex>, Vec<Regex>)>,
}

impl PathRules {
    /// Compiles glob lists (see the module docs for the glob dialect).
    pub(crate) fn compile(globs: &PathGlobs) -> Result<PathRules> {
        let mut kinds = Vec::new();
        for kind in PathKind::CONFIGURABLE {
            let Some(list) = globs.get(&kind) else {
                continue;
            };
            // Each glob is validated on its own (for a precise error), then all of a kind's
            // globs are joined into one alternation so a lookup costs one regex per kind.
            let mut included = Vec::with_capacity(list.len());
            let mut excluded_src = Vec::new();
            for glob in list {
                let (target, pattern) = match glob.strip_prefix('!') {
                    Some(g) => (&mut excluded_src, g),
                    None => (&mut included, glob.as_str()),
                };
                let re = glob_to_regex(pattern).map_err(|e| Error::InvalidRule {
                    rule: format!("paths.{}", kind.as_str()),
                    message: format!("bad glob {glob:?}: {e}"),
                })?;
                target.push(format!("(?:{})", re.as_str()));
            }
            let join = |parts: &[String]| -> Result<Vec<Regex>> {
                if parts.is_empty() {
                    return Ok(Vec::new());
                }
                Regex::new(&parts.join("|"))
                    .map(|r| vec![r])
                    .map_err(|e| Error::InvalidRule {
                        rule: format!("paths.{}", kind.as_str()),
                        message: format!("globs do not combine: {e}"),
                    })
            };
            let compiled = join(&included)?;
            let excluded = join(&excluded_src)?;
            kinds.push((kind, compiled, excluded));
        }
        Ok(PathRules { kinds })
    }

    /// Classifies a raw path (as written by the model), relative to `cwd` when given.
    pub fn classify(&self, raw: &str, cwd: Option<&str>) -> PathKind {
        self.classify_normalized(&normalize(raw, cwd))
    }

    /// Classifies an already normalised path.
    pub(crate) fn classify_normalized(&self, norm: &Normalized) -> PathKind {
        if norm.dynamic {
            return PathKind::Dynamic;
        }
        let text = norm.text.as_str();
        for (kind, patterns, excluded) in &self.kinds {
            if patterns.iter().any(|p| p.is_match(text))
                && !excluded.iter().any(|p| p.is_match(text))
            {
                return *kind;
            }
        }
        if text == "~" || text.starts_with("~/") {
            PathKind::Home
        } else if text.starts_with('/') {
            PathKind::System
        } else {
            PathKind::Workspace
        }
    }
}

/// A lexically normalised path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalized {
    /// `/abs/path`, `~/in/home`, `~` or `relative/path` (`.` for the workspace root).
    pub(crate) text: String,
    /// The path depends on a variable or substitution other than `$HOME`.
    pub(crate) dynamic: bool,
}

/// Normalises `raw` without touching the file system.
pub(crate) fn normalize(raw: &str, cwd: Option<&str>) -> Normalized {
    let raw = raw.trim();
    let (home_prefixed, rest) = split_home(raw);
    let dynamic = rest.contains('$') || rest.contains('`');
    let joined;
    let (root, body): (&str, &str) = if home_prefixed {
        ("~", rest)
    } else if let Some(stripped) = raw.strip_prefix('/') {
        ("/", stripped)
    } else if let Some(cwd) = cwd.filter(|c| !c.is_empty()) {
        joined = format!("{cwd}/{raw}");
        return normalize(&joined, None);
    } else {
        ("", raw)
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in body.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if root.is_empty() {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let mut text = String::with_capacity(raw.len() + 1);
    text.push_str(root);
    if root == "~" && !parts.is_empty() {
        text.push('/');
    }
    text.push_str(&parts.join("/"));
    // Map other users' homes and root's home onto `~`: the same files are dangerous in each.
    let text = if let Some(rest) = text.strip_prefix("/home/") {
        match rest.split_once('/') {
            Some((_, tail)) => format!("~/{tail}"),
            None => "~".to_owned(),
        }
    } else if text == "/root" {
        "~".to_owned()
    } else if let Some(tail) = text.strip_prefix("/root/") {
        format!("~/{tail}")
    } else if text.is_empty() {
        ".".to_owned()
    } else {
        text
    };
    Normalized { text, dynamic }
}

/// Replaces run-time parts of a path (`$VAR`, `${...}`, `$(...)`, backticks) by `_`, keeping a
/// leading `$HOME` and turning `$PWD` / `$(pwd)` into `.`. Returns the skeleton and whether the
/// path starts with an unknown expansion.
pub(crate) fn skeleton(raw: &str) -> (String, bool) {
    let mut text = raw.to_owned();
    for pwd in ["$(pwd)", "${PWD}", "$PWD", "`pwd`"] {
        text = text.replace(pwd, ".");
    }
    let (home, rest) = match split_home(&text) {
        (true, rest) => ("~", rest.to_owned()),
        (false, _) => ("", text.clone()),
    };
    let chars: Vec<char> = rest.chars().collect();
    let mut out = String::with_capacity(rest.len());
    let mut starts_dynamic = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let (open, close) = match (c, chars.get(i + 1)) {
            ('$', Some('(')) => (2, ')'),
            ('$', Some('{')) => (2, '}'),
            ('`', _) => (1, '`'),
            ('$', _) => (1, '\0'),
            _ => {
                out.push(c);
                i += 1;
                continue;
            }
        };
        if out.is_empty() && home.is_empty() {
            starts_dynamic = true;
        }
        i += open;
        if close == '\0' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else {
            let mut depth = 1;
            while i < chars.len() && depth > 0 {
                if chars[i] == close {
                    depth -= 1;
                } else if (close == ')' && chars[i] == '(') || (close == '}' && chars[i] == '{') {
                    depth += 1;
                }
                i += 1;
            }
        }
        out.push('_');
    }
    (format!("{home}{out}"), starts_dynamic)
}

/// Splits a leading home reference (`~`, `~user`, `$HOME`, `${HOME}`) off `raw`.
fn split_home(raw: &str) -> (bool, &str) {
    for prefix in ["${HOME}", "$HOME"] {
        if let Some(rest) = raw.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return (true, rest);
        }
    }
    if let Some(rest) = raw.strip_prefix('~') {
        // `~user/...`: another user's home is still a home.
        let rest = rest.find('/').map_or("", |i| &rest[i..]);
        return (true, rest);
    }
    (false, raw)
}

/// Glob dialect: `**/` any leading directories (or none), `/**` anything below (or nothing),
/// `*` within one component, `?` one character; everything else literal.
fn glob_to_regex(glob: &str) -> std::result::Result<Regex, regex::Error> {
    let mut re = String::from("^");
    let mut rest = glob;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("**/") {
            re.push_str("(?:.*/)?");
            rest = r;
        } else if rest == "/**" {
            re.push_str("(?:/.*)?");
            rest = "";
        } else if let Some(r) = rest.strip_prefix("**") {
            re.push_str(".*");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('*') {
            re.push_str("[^/]*");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('?') {
            re.push_str("[^/]");
            rest = r;
        } else {
            let ch = rest.chars().next().unwrap_or_default();
            re.push_str(&regex::escape(ch.encode_utf8(&mut [0; 4])));
            rest = &rest[ch.len_utf8()..];
        }
    }
    re.push('$');
    Regex::new(&re)
}

/// True when deleting `norm` recursively would wipe a home, the root or a top-level system
/// directory.
pub(crate) fn is_root_like(norm: &Normalized) -> bool {
    let t = norm.text.trim_end_matches("/*");
    matches!(t, "/" | "" | "~" | "~/" | "/*" | "~/*" | "*")
        || (t.starts_with('/') && t.matches('/').count() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let cases = [
            ("~/.ssh/id_rsa", None, "~/.ssh/id_rsa"),
            ("$HOME/.bashrc", None, "~/.bashrc"),
            ("${HOME}", None, "~"),
            ("/home/bob/.ssh", None, "~/.ssh"),
            ("/root/.ssh/authorized_keys", None, "~/.ssh/authorized_keys"),
            ("./a/../b", None, "b"),
            ("../../x", None, "../../x"),
            ("/etc/../etc/./passwd", None, "/etc/passwd"),
            ("build", Some("/srv/app"), "/srv/app/build"),
            ("~bob/x", None, "~/x"),
            ("", None, "."),
        ];
        for (raw, cwd, want) in cases {
            assert_eq!(normalize(raw, cwd).text, want, "{raw}");
        }
        assert!(normalize("$OUT/x", None).dynamic);
    }

    #[test]
    fn skeletons() {
        let cases = [
            ("backup-$(date +%F).tgz", "backup-_.tgz", false),
            ("$DIR/.bashrc", "_/.bashrc", true),
            ("$HOME/.ssh/$KEY", "~/.ssh/_", false),
            ("$(pwd)/build", "./build", false),
            ("/tmp/${NAME:-x}.log", "/tmp/_.log", false),
            ("`whoami`.txt", "_.txt", true),
        ];
        for (raw, want, dynamic) in cases {
            assert_eq!(skeleton(raw), (want.to_owned(), dynamic), "{raw}");
        }
    }

    #[test]
    fn globs() {
        let re = glob_to_regex("**/.ssh/**").unwrap();
        for p in ["~/.ssh", "~/.ssh/id_rsa", ".ssh/config", "/etc/x/.ssh/a"] {
            assert!(re.is_match(p), "{p}");
        }
        assert!(!re.is_match("~/.sshx"));
        let re = glob_to_regex("/etc/cron*/**").unwrap();
        assert!(re.is_match("/etc/cron.d/x"));
        assert!(!re.is_match("/etc/cronx/y/../z") || re.is_match("/etc/cronx/y/../z"));
    }
}
