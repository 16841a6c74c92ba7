//! Per-binary rules: what each command does with its flags, which inner command a wrapper runs,
//! and which paths and hosts it touches.

use super::opts::{self, Parsed, Spec};
use super::{Analyzer, Io, SECRET_PLACEHOLDER, Stdin, Word};
use crate::class::Class;
use crate::paths::PathKind;
use crate::url;

mod archives;
mod files;
mod git;
mod interpreters;
mod network;
mod packages;
mod system;
mod wrappers;

/// Directories whose binaries are resolved by basename (`/usr/bin/rm` is `rm`).
const TRUSTED_DIRS: [&str; 6] = [
    "/bin",
    "/usr/bin",
    "/sbin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// Commands whose arguments are not files they read (or whose rules judge paths themselves).
const NO_READ_SCAN: &[&str] = &[
    "echo",
    "printf",
    "ls",
    "stat",
    "test",
    "[",
    "[[",
    "mkdir",
    "touch",
    "which",
    "type",
    "command",
    "basename",
    "dirname",
    "realpath",
    "readlink",
    "du",
    "cd",
    "pushd",
    "popd",
    "ssh",
    "scp",
    "sftp",
    "rsync",
    "chmod",
    "chown",
    "chgrp",
    "rm",
    "rmdir",
    "unlink",
    "shred",
    "cp",
    "mv",
    "install",
    "ln",
    "tee",
    "truncate",
    "dd",
    "find",
    "file",
    "curl",
    "wget",
    "source",
    ".",
    "ssh-keygen",
    "ssh-add",
    "python",
    "python3",
    "node",
    "bash",
    "sh",
    "sudo",
    "env",
    "git",
    "sed",
    "tar",
    "kill",
    "systemctl",
    "docker",
    "podman",
    "crontab",
];

/// System tools whose name a local program must not borrow.
const SHADOWED: &[&str] = &[
    "rm",
    "git",
    "curl",
    "wget",
    "sudo",
    "env",
    "python",
    "python3",
    "node",
    "ssh",
    "scp",
    "rsync",
    "tar",
    "sed",
    "awk",
    "find",
    "cp",
    "mv",
    "chmod",
    "chown",
    "docker",
    "npm",
    "pip",
    "cargo",
    "go",
    "make",
    "kill",
    "systemctl",
    "crontab",
    "openclaw",
    "clawgate",
];

const SHELLS: &[&str] = &[
    "bash", "sh", "zsh", "dash", "ksh", "ash", "mksh", "fish", "csh", "tcsh", "rbash", "yash",
];

/// Names of the guard and what it relies on; "sidecar" is the generic name the design notes use.
const SELF_NAMES: [&str; 4] = ["clawgate", "openclaw", "nftables", "sidecar"];

fn mentions_self(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    SELF_NAMES.iter().any(|n| t.contains(n)) || t.contains("nft ")
}

fn texts(ws: &[Word]) -> Vec<&str> {
    ws.iter().map(|w| w.text.as_str()).collect()
}

fn join(ws: &[Word]) -> String {
    texts(ws).join(" ")
}

fn is_assignment(w: &Word) -> bool {
    match w.text.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

fn p(args: &[Word], short_val: &str, long_val: &[&str]) -> Parsed {
    opts::parse(
        args,
        &Spec {
            short_val,
            long_val,
            stop_at_pos: false,
        },
    )
}

fn p_stop(args: &[Word], short_val: &str, long_val: &[&str]) -> Parsed {
    opts::parse(
        args,
        &Spec {
            short_val,
            long_val,
            stop_at_pos: true,
        },
    )
}

/// The inner command of a wrapper: args from the first positional on.
fn inner<'a>(args: &'a [Word], parsed: &Parsed) -> &'a [Word] {
    match parsed.first_pos {
        Some(i) if i <= args.len() => &args[i..],
        _ => &[],
    }
}

impl Analyzer<'_> {
    /// Judges one command given as an argument vector.
    pub(crate) fn argv(&mut self, argv: &[Word], io: &Io) {
        if argv.is_empty() || self.aborted {
            return;
        }
        if self.wrap_depth >= super::MAX_WRAPPERS {
            self.abort(
                "shell.limit.wrappers",
                "the command is wrapped in more dispatch wrappers than the analysis limit",
            );
            return;
        }
        self.wrap_depth += 1;
        self.argv_inner(argv, io);
        self.wrap_depth -= 1;
    }

    fn argv_inner(&mut self, argv: &[Word], io: &Io) {
        let Some(first) = argv.first() else { return };
        if first.dynamic || first.glob || first.text.is_empty() {
            self.add(
                Class::Red,
                "shell.opaque_command",
                format!(
                    "the command name `{}` is computed at run time, so what runs cannot be checked; write the program name literally",
                    first.text
                ),
            );
            if self.record("<dynamic>", argv) {
                self.opaque_args(&argv[1..]);
            }
            return;
        }
        if !first.text.is_ascii() || first.text.contains(super::NON_ASCII_STANDIN) {
            self.add(
                Class::Red,
                "shell.non_ascii_command",
                format!(
                    "the command name {:?} contains non-ASCII characters (possible lookalike); type the real name",
                    first.text
                ),
            );
        }
        let Some(name) = self.resolve(first) else {
            self.record(&first.text, argv);
            self.opaque_args(&argv[1..]);
            return;
        };
        if !self.record(&name, argv) {
            return;
        }
        if io.writes_file && argv.iter().any(|w| w.text.contains(SECRET_PLACEHOLDER)) {
            self.add(
                Class::Critical,
                "shell.secret_to_file",
                "a SECRET_REF would be written to a file; secrets may only be passed to commands, never stored",
            );
        }
        let args = &argv[1..];
        if matches!(name.as_str(), "echo" | "printf")
            && args.iter().any(|w| w.text.contains(SECRET_PLACEHOLDER))
        {
            self.add(
                Class::Red,
                "shell.secret_echo",
                "printing a SECRET_REF would put the secret into the tool output; pass it to the program that needs it instead",
            );
        }
        self.dispatch(&name, args, io);
        if !NO_READ_SCAN.contains(&name.as_str()) && !SHELLS.contains(&name.as_str()) {
            self.scan_reads(&name, args);
        }
    }

    /// Resolves the command word to a binary name; `None` when it names a program whose
    /// behaviour is unknown (after recording why).
    fn resolve(&mut self, first: &Word) -> Option<String> {
        let text = first.text.as_str();
        if !text.contains('/') {
            return Some(text.to_owned());
        }
        let (dir, base) = text.rsplit_once('/').unwrap_or(("", text));
        let norm_dir = crate::paths::normalize(dir, None).text;
        if TRUSTED_DIRS.contains(&dir) || TRUSTED_DIRS.contains(&norm_dir.as_str()) {
            return Some(base.to_owned());
        }
        let shadows = SHADOWED.contains(&base)
            || SHELLS.contains(&base)
            || self.cfg.commands.get(base) == Some(&Class::Green);
        match self.kind_of(first) {
            PathKind::Workspace | PathKind::Home | PathKind::Temp if shadows => self.add(
                Class::Red,
                "shell.shadowed_binary",
                format!("{text} is a local program named like the system tool `{base}`; call the real one"),
            ),
            PathKind::Workspace | PathKind::Home | PathKind::Temp => {
                self.check_downloaded(text);
                self.check_written(text, "");
                self.add(
                    Class::Yellow,
                    "shell.local_program",
                    format!("runs the local program {text}; its behaviour is not checked"),
                );
            }
            kind => self.add(
                Class::Red,
                "shell.untrusted_program_path",
                format!(
                    "runs {text} from a {} path outside the trusted system directories",
                    kind.as_str()
                ),
            ),
        }
        // A local program named like a known tool is judged as that tool too (never lower).
        if self.cfg.commands.contains_key(base)
            || SHELLS.contains(&base)
            || SHADOWED.contains(&base)
        {
            return Some(base.to_owned());
        }
        None
    }

    fn dispatch(&mut self, name: &str, args: &[Word], io: &Io) {
        match name {
            "sudo" | "doas" | "run0" | "pkexec" => self.sudo(name, args, io),
            "su" => self.su(args),
            "env" => self.env(args, io),
            "nice" => self.wrapper(args, "n", &["--adjustment"], 0, io),
            "nohup" | "unbuffer" | "setsid" | "catchsegv" => self.wrapper(args, "", &[], 0, io),
            "stdbuf" => self.wrapper(args, "ioe", &["--input", "--output", "--error"], 0, io),
            "ionice" => self.wrapper(args, "cnp", &["--class", "--classdata", "--pid"], 0, io),
            "taskset" => self.wrapper(args, "", &[], 1, io),
            "chrt" => self.wrapper(args, "", &[], 1, io),
            "timeout" => self.wrapper(args, "sk", &["--signal", "--kill-after"], 1, io),
            "time" => self.time(args, io),
            "watch" => self.watch(args),
            "command" => self.command_builtin(args, io),
            "trap" => {
                // `trap 'cmd' EXIT` runs cmd later in this shell: judge it now.
                if let Some(action) = args.iter().find(|w| !w.text.starts_with('-')) {
                    if action.dynamic {
                        self.dynamic_code("shell.dynamic_payload", "`trap` runs a command computed at run time");
                    } else {
                        let text = action.text.clone();
                        self.payload(&text);
                    }
                }
            }
            "flock" => self.flock(args, io),
            "chroot" | "unshare" | "nsenter" | "runuser" | "sg" | "systemd-run" | "strace"
            | "ltrace" | "firejail" | "proxychains" | "proxychains4" | "torsocks" => {
                self.privileged_wrapper(name, args, io)
            }
            "valgrind" | "xvfb-run" | "dbus-launch" | "caffeinate" | "entr" | "catchsegv-x" => {
                self.wrapper(args, "", &[], 0, io)
            }
            "faketime" => self.wrapper(args, "f", &[], 1, io),
            "parallel" => self.parallel(args),
            "hyperfine" => self.hyperfine(args),
            "builtin" | "exec" => self.wrapper(args, "a", &[], 0, io),
            "xargs" => self.xargs(args),
            "busybox" | "toybox" => {
                self.add(
                    Class::Red,
                    "shell.busybox",
                    format!("`{name}` runs applets that bypass the normal binaries; call the tool directly"),
                );
                self.argv(args, io);
            }
            "eval" => self.eval(args),
            "source" | "." => self.source_file(args),
            "alias" => {
                if args.iter().any(|w| w.text.contains('=')) {
                    self.add(
                        Class::Critical,
                        "shell.alias_definition",
                        "the command defines an alias, which can make any later command run something else",
                    );
                }
            }
            "cd" | "pushd" => self.cd(args),
            "printenv" if !args.is_empty() => self.add(
                Class::Yellow,
                "shell.env.print_named",
                "prints named environment variables",
            ),
            "printenv" => self.add(
                Class::Red,
                "shell.env.dump",
                "printing the environment may reveal injected secrets; read specific non-secret variables instead",
            ),
            "set" if args.is_empty() => self.add(
                Class::Red,
                "shell.env.dump",
                "`set` without arguments prints every variable, which may include secrets",
            ),
            "openclaw" | "clawgate" | "clawgate-wrapper" => self.add(
                Class::Critical,
                "shell.self_tamper",
                format!("the agent may not run `{name}`: configuring OpenClaw or Clawgate is the owner's job"),
            ),
            n if SHELLS.contains(&n) => self.shell(n, args, io),
            n if is_python(n) => self.python(args, io),
            "node" | "nodejs" => self.node(args, io),
            "perl" | "ruby" | "php" | "lua" | "luajit" | "osascript" | "Rscript" | "tclsh"
            | "pwsh" | "powershell" => self.other_interpreter(name, args, io),
            "awk" | "gawk" | "mawk" | "nawk" | "busybox-awk" => self.awk(args),
            "sed" | "gsed" => self.sed(args),
            "find" => self.find(args),
            "rm" | "unlink" | "rmdir" | "shred" => self.rm(name, args, io),
            "git" => self.git(args),
            "curl" => self.curl(args, io),
            "wget" => self.wget(args),
            "http" | "https" | "xh" | "xhs" | "aria2c" => self.httpie(name, args),
            "ssh" => self.ssh(args),
            "scp" | "sftp" => self.scp(name, args),
            "rsync" => self.rsync(args),
            "nc" | "ncat" | "netcat" | "socat" | "telnet" | "ftp" | "tftp" | "lftp" => {
                self.raw_net(name, args)
            }
            "dig" | "nslookup" | "host" | "whois" | "ping" | "ping6" | "traceroute"
            | "tracepath" | "mtr" => {
                self.network_unnamed();
                self.add(
                    Class::YellowExternal,
                    "shell.network.probe",
                    format!("`{name}` contacts hosts on the network"),
                );
            }
            "tar" | "bsdtar" => self.tar(args),
            "zip" | "unzip" => self.zip(name, args),
            "dd" => self.dd(args),
            n if n.starts_with("mkfs")
                || matches!(
                    n,
                    "mke2fs" | "mkswap" | "wipefs" | "fdisk" | "sfdisk" | "gdisk" | "sgdisk"
                        | "parted" | "blkdiscard" | "cryptsetup"
                ) =>
            {
                self.add(
                    Class::Critical,
                    "shell.disk.format",
                    format!("`{n}` formats or repartitions disks and destroys their data"),
                )
            }
            "chmod" | "chown" | "chgrp" | "chattr" | "setfacl" => self.chmod(name, args),
            "crontab" => self.crontab(args),
            "at" | "batch" => {
                self.add(
                    Class::Red,
                    "shell.at",
                    "schedules a command to run later outside Clawgate; use the automations tool",
                );
                // The job is read from stdin: judge it now.
                if let Stdin::Text(body) = &io.stdin {
                    let body = body.clone();
                    self.payload(&body);
                } else if io.stdin == Stdin::Pipe {
                    self.add(Class::Critical, "shell.pipe_to_shell", "piping commands into `at` schedules whatever the previous command produced");
                }
            }
            "ip" => self.ip(args, io),
            "ifconfig" if args.len() > 1 => self.add(
                Class::Red,
                "shell.network.config",
                "`ifconfig` with arguments changes network interfaces",
            ),
            "base64" | "base32" => {
                let parsed = p(args, "ow", &["--output", "--wrap"]);
                for w in parsed.values(&["-o", "--output"]) {
                    self.path_write(w, &format!("`{name} -o`"));
                }
            }
            "uniq" => {
                let parsed = p(args, "fsw", &["--skip-fields", "--skip-chars", "--check-chars", "--group", "--all-repeated"]);
                if let Some(out) = parsed.pos.get(1) {
                    self.path_write(out, "`uniq`");
                }
            }
            "less" | "more" | "man" => {
                let pager_cmd = args.iter().any(|w| {
                    (w.text.starts_with('+') && w.text.contains('!'))
                        || matches!(w.text.as_str(), "-P" | "--pager" | "-H" | "--html")
                        || w.text.starts_with("--pager=")
                        || w.text.starts_with("--html=")
                });
                if pager_cmd {
                    self.add(Class::Red, "shell.pager_command", format!("this `{name}` option runs another program"));
                }
            }
            "psql" | "mysql" | "mariadb" | "sqlite3" | "duckdb" => self.db_client(name, args, io),
            "systemctl" => self.systemctl(args),
            "service" => self.service(args),
            "reboot" | "shutdown" | "poweroff" | "halt" | "init" | "telinit" => self.add(
                Class::Red,
                "shell.power",
                format!("`{name}` stops or restarts the machine"),
            ),
            "kill" => self.kill(args),
            "pkill" | "killall" => self.pkill(name, args),
            "npm" | "pnpm" | "yarn" | "bun" => self.js_pkg(name, args, io),
            "npx" | "bunx" | "pnpx" => {
                self.add(
                    Class::YellowExternal,
                    "shell.pkg.fetch_and_run",
                    format!("`{name}` downloads and runs a package from the internet"),
                );
                // npx falls back to binaries on PATH: a critical command stays critical.
                let parsed = p_stop(args, "p", &["--package", "--call", "--node-options"]);
                let rest = inner(args, &parsed).to_vec();
                self.critical_only(|a| a.argv(&rest, io));
            }
            "pip" | "pip3" | "pipx" => self.pip(args),
            "uv" | "poetry" | "pipenv" | "conda" | "mamba" | "bundle" | "gem" | "composer" => {
                self.py_like_pkg(name, args, io)
            }
            "uvx" => self.add(
                Class::YellowExternal,
                "shell.pkg.fetch_and_run",
                "`uvx` downloads and runs a package from the internet",
            ),
            "cargo" => self.cargo(args),
            "go" => self.go(args),
            "apt" | "apt-get" | "aptitude" | "dnf" | "yum" | "apk" | "pacman" | "zypper"
            | "snap" | "flatpak" | "dpkg" | "rpm" => self.system_pkg(name, args),
            "brew" => self.brew(args),
            "cp" | "install" => self.cp(args, false),
            "mv" => self.cp(args, true),
            "ln" => self.ln(args),
            "tee" | "touch" | "mkdir" | "truncate" => self.writes_positionals(name, args),
            "sort" => self.sort(args),
            "jq" | "gojq" | "yq" => self.jq(args),
            "rg" | "grep" | "egrep" | "fgrep" => self.grep(name, args),
            "nft" | "iptables" | "ip6tables" | "iptables-restore" | "ip6tables-restore"
            | "ufw" | "firewall-cmd" | "ebtables" | "arptables" => self.firewall(name, args),
            "docker" | "podman" | "nerdctl" => self.docker(name, args),
            "gh" | "glab" => self.gh(name, args),
            "kubectl" | "helm" | "terraform" | "tofu" | "pulumi" | "aws" | "gcloud" | "az"
            | "doctl" | "flyctl" | "fly" | "vercel" | "netlify" | "heroku" | "wrangler"
            | "ansible" | "ansible-playbook" => self.cloud(name, args),
            "vim" | "vi" | "nvim" | "view" | "vimdiff" | "ex" | "emacs" => self.editor(name, args),
            "tmux" | "screen" => self.multiplexer(name, args),
            "script" => self.script_cmd(args),
            _ => self.table(name),
        }
    }

    /// Baseline class from the policy's `[shell.commands]` table.
    fn table(&mut self, name: &str) {
        match self.cfg.commands.get(name) {
            Some(class) => {
                let class = *class;
                self.add(
                    class,
                    &format!("shell.command.{}", class.as_str()),
                    format!("`{name}` is classed {class} by the policy"),
                );
            }
            None => {
                let class = self.cfg.unknown_command.max(Class::Red);
                self.add(
                    class,
                    "shell.unknown_command",
                    format!("`{name}` is not a command this policy knows, so its effects cannot be judged; ask the owner"),
                );
            }
        }
    }

    fn scan_reads(&mut self, name: &str, args: &[Word]) {
        for w in args {
            if w.text.starts_with('-') && !w.text.contains('=') {
                continue;
            }
            let path = w
                .text
                .split_once('=')
                .filter(|_| w.text.starts_with('-'))
                .map_or(w.text.as_str(), |(_, v)| v);
            let path_word = Word {
                text: path.to_owned(),
                ..w.clone()
            };
            self.path_read(&path_word, &format!("`{name}`"));
        }
    }

    /// Arguments of a command we cannot identify: still notice URLs and secret files.
    pub(crate) fn opaque_args(&mut self, args: &[Word]) {
        for w in args {
            if w.text.contains("://") {
                self.network_unnamed();
                if let Ok(u) = url::parse(&w.text) {
                    self.note_host(&u.host);
                    if let Some((class, rule, reason)) = url::host_finding(&u) {
                        self.add(class, rule, reason);
                    }
                }
            }
            let text = w.text.strip_prefix('@').unwrap_or(&w.text);
            let bare = Word {
                text: text.to_owned(),
                ..w.clone()
            };
            if self.kind_of(&bare).is_secret() {
                self.path_read(&bare, "an opaque command");
            }
        }
    }
}

/// True for the shells whose `-c` and stdin carry shell script.
pub(crate) fn is_shell(name: &str) -> bool {
    SHELLS.contains(&name)
}

fn is_python(name: &str) -> bool {
    name == "python"
        || name == "pypy"
        || name == "pypy3"
        || name
            .strip_prefix("python")
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

fn is_remote_spec(t: &str) -> bool {
    if t.starts_with("rsync://") || t.contains("://") {
        return true;
    }
    match t.find(':') {
        Some(i) => {
            let before = &t[..i];
            !before.is_empty()
                && !before.contains('/')
                && !t.starts_with('.')
                && !t.starts_with('~')
        }
        None => false,
    }
}

fn is_setuid_mode(mode: &str) -> bool {
    if mode.chars().all(|c| c.is_ascii_digit()) && mode.len() == 4 {
        return mode.starts_with(['2', '4', '6', '3', '5', '7']);
    }
    mode.contains('s') && mode.contains('+')
}

fn mount_is_sensitive(spec: &str) -> bool {
    let src = spec
        .split(',')
        .find_map(|kv| {
            kv.strip_prefix("source=")
                .or_else(|| kv.strip_prefix("src="))
        })
        .unwrap_or_else(|| spec.split(':').next().unwrap_or(spec));
    let src = src.trim_end_matches('/');
    src.is_empty()
        || matches!(
            src,
            "/etc"
                | "/root"
                | "/home"
                | "/var"
                | "/usr"
                | "/boot"
                | "/proc"
                | "/sys"
                | "/dev"
                | "/run"
                | "/var/run"
                | "~"
                | "$HOME"
        )
        || src.contains("docker.sock")
        || src.contains("clawgate")
        || src.contains(".openclaw")
        || src.contains(".ssh")
}

/// Does an awk program run commands, write files or read the environment?
fn awk_runs_commands(program: &str) -> bool {
    let bytes = program.as_bytes();
    let pipe = bytes.iter().enumerate().any(|(i, b)| {
        *b == b'|' && bytes.get(i + 1) != Some(&b'|') && (i == 0 || bytes[i - 1] != b'|')
    });
    let print_redirect = program.split(['{', ';', '}']).any(|stmt| {
        let s = stmt.trim_start();
        (s.starts_with("print") || s.starts_with("printf")) && s.contains('>')
    });
    pipe || print_redirect
        || program.contains("system")
        || program.contains("ENVIRON")
        || program.contains("getline <")
        || program.contains("@load")
}

/// String literals in program text ('...', "...", `...`), escapes folded.
fn string_literals(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let q = bytes[i];
        if q == b'\'' || q == b'"' || q == b'`' {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j] != q {
                if bytes[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            if let Some(lit) = code.get(start..j.min(bytes.len()))
                && !lit.is_empty()
            {
                out.push(lit);
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// What a sed script does beyond editing the stream.
#[derive(Debug, PartialEq, Eq)]
enum SedEffect {
    Exec,
    Write(String),
    Read(String),
    Unknown,
}

/// Walks a sed script command by command (GNU syntax).
fn sed_effects(script: &str) -> Vec<SedEffect> {
    let mut out = Vec::new();
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    let n = chars.len();
    let rest_of_line = |i: &mut usize| -> String {
        let start = *i;
        while *i < n && chars[*i] != '\n' {
            *i += 1;
        }
        chars[start..*i]
            .iter()
            .collect::<String>()
            .trim()
            .to_owned()
    };
    while i < n {
        // Separators and blanks.
        while i < n && (chars[i].is_whitespace() || chars[i] == ';' || chars[i] == '}') {
            i += 1;
        }
        if i >= n {
            break;
        }
        // Addresses: numbers, $, /re/, \cREc, ranges, steps, negation.
        loop {
            while i < n
                && (chars[i].is_ascii_digit()
                    || matches!(chars[i], '$' | ',' | '~' | '+' | '!' | ' '))
            {
                i += 1;
            }
            if i < n && (chars[i] == '/' || chars[i] == '\\') {
                let delim = if chars[i] == '\\' {
                    i += 1;
                    chars.get(i).copied().unwrap_or('/')
                } else {
                    '/'
                };
                i += 1;
                while i < n && chars[i] != delim {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                while i < n && matches!(chars[i], 'I' | 'M') {
                    i += 1;
                }
                continue;
            }
            break;
        }
        if i >= n {
            break;
        }
        let cmd = chars[i];
        i += 1;
        match cmd {
            '{' | '=' | 'd' | 'D' | 'g' | 'G' | 'h' | 'H' | 'l' | 'n' | 'N' | 'p' | 'P' | 'x'
            | 'z' | 'F' => {}
            'q' | 'Q' | 'L' => {
                while i < n && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            ':' | 'b' | 't' | 'T' => {
                while i < n && chars[i] != ';' && chars[i] != '\n' {
                    i += 1;
                }
            }
            'a' | 'i' | 'c' => {
                // Text lines continue while a line ends with a backslash.
                let mut line = rest_of_line(&mut i);
                while line.ends_with('\\') && i < n {
                    i += 1;
                    line = rest_of_line(&mut i);
                }
            }
            'e' => {
                out.push(SedEffect::Exec);
                let _ = rest_of_line(&mut i);
            }
            'w' | 'W' => out.push(SedEffect::Write(rest_of_line(&mut i))),
            'r' | 'R' => out.push(SedEffect::Read(rest_of_line(&mut i))),
            's' | 'y' => {
                let Some(&delim) = chars.get(i) else {
                    out.push(SedEffect::Unknown);
                    break;
                };
                i += 1;
                for _ in 0..2 {
                    while i < n && chars[i] != delim {
                        if chars[i] == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    i += 1;
                }
                if i > n {
                    out.push(SedEffect::Unknown);
                    break;
                }
                if cmd == 's' {
                    while i < n && !matches!(chars[i], ';' | '\n' | '}') {
                        match chars[i] {
                            'e' => out.push(SedEffect::Exec),
                            'w' => {
                                i += 1;
                                out.push(SedEffect::Write(rest_of_line(&mut i)));
                                break;
                            }
                            c if c.is_ascii_digit()
                                || matches!(c, 'g' | 'p' | 'i' | 'I' | 'm' | 'M' | ' ') => {}
                            _ => {
                                out.push(SedEffect::Unknown);
                            }
                        }
                        i += 1;
                    }
                }
            }
            '#' => {
                let _ = rest_of_line(&mut i);
            }
            _ => {
                out.push(SedEffect::Unknown);
                break;
            }
        }
    }
    out
}

/// `words` with every word that holds one of `placeholders` (`{}` of `find -exec`, the replace
/// string of `xargs -I`) marked dynamic: the tool substitutes run-time input there.
pub(crate) fn placeholders_dynamic(words: &[Word], placeholders: &[&str]) -> Vec<Word> {
    words
        .iter()
        .map(|w| {
            let replaced = placeholders
                .iter()
                .any(|p| !p.is_empty() && w.text.contains(p));
            Word {
                dynamic: w.dynamic || replaced,
                ..w.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sed_scripts() {
        assert_eq!(sed_effects("1,5p"), vec![]);
        assert_eq!(sed_effects("s/a/b/g"), vec![]);
        assert_eq!(sed_effects("s|a|b|e"), vec![SedEffect::Exec]);
        assert_eq!(sed_effects("1e id"), vec![SedEffect::Exec]);
        assert_eq!(
            sed_effects("w /home/u/.bashrc"),
            vec![SedEffect::Write("/home/u/.bashrc".into())]
        );
        assert_eq!(
            sed_effects("s/x/y/w out.txt"),
            vec![SedEffect::Write("out.txt".into())]
        );
        assert_eq!(sed_effects("/foo/d; $a\\\nend"), vec![]);
        assert_eq!(
            sed_effects("r /etc/shadow"),
            vec![SedEffect::Read("/etc/shadow".into())]
        );
        assert_eq!(sed_effects("s/a/b"), vec![SedEffect::Unknown]);
    }

    #[test]
    fn awk_programs() {
        assert!(!awk_runs_commands("{print $1}"));
        assert!(!awk_runs_commands("$3 > 100 {print $1} NR==1 || NR==2"));
        assert!(awk_runs_commands("BEGIN {system(\"/bin/sh\")}"));
        assert!(awk_runs_commands("{print | \"sh\"}"));
        assert!(awk_runs_commands("{print > \"/tmp/x\"}"));
    }

    proptest::proptest! {
        #[test]
        fn text_parsers_never_panic(s in "\\PC{0,120}") {
            let _ = sed_effects(&s);
            let _ = awk_runs_commands(&s);
            let _ = string_literals(&s);
            let _ = is_remote_spec(&s);
            let _ = is_setuid_mode(&s);
            let _ = mount_is_sensitive(&s);
            let _ = crate::url::parse(&s);
            let _ = crate::paths::normalize(&s, Some("~/x"));
            let _ = crate::paths::skeleton(&s);
            let _ = super::super::words::decode_ansi_c(&s);
        }
    }

    #[test]
    fn remote_specs() {
        assert!(is_remote_spec("host:/x"));
        assert!(is_remote_spec("user@host:x"));
        assert!(!is_remote_spec("./a:b"));
        assert!(!is_remote_spec("/abs/x"));
    }
}
