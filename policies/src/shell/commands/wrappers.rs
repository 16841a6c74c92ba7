//! Dispatch wrappers and payload carriers (`sudo`, `env`, `nice`, `timeout`, `xargs`, `eval`,
//! `flock`, `parallel`, ...) and the commands they run; also `ip netns exec` and database shells.

use super::*;

impl Analyzer<'_> {
    pub(super) fn sudo(&mut self, name: &str, args: &[Word], io: &Io) {
        self.add(
            Class::Red,
            "shell.sudo",
            format!("`{name}` runs the command with root privileges; do it without root or ask the owner"),
        );
        let parsed = p_stop(
            args,
            "ugpChrtUDTR",
            &[
                "--user",
                "--group",
                "--host",
                "--prompt",
                "--close-from",
                "--role",
                "--type",
                "--other-user",
                "--chdir",
                "--chroot",
                "--command-timeout",
            ],
        );
        if parsed.has(&["-e", "--edit"]) {
            for w in &parsed.pos {
                self.path_write(w, "sudoedit");
            }
            return;
        }
        let mut rest = inner(args, &parsed);
        while let Some(w) = rest.first().filter(|w| is_assignment(w)) {
            let name = w.text.split_once('=').map_or("", |(n, _)| n);
            self.check_env_name(name);
            rest = &rest[1..];
        }
        if rest.is_empty() && parsed.has(&["-i", "-s", "--login", "--shell"]) {
            self.add(
                Class::Red,
                "shell.sudo.shell",
                "opens a root shell; run specific commands instead",
            );
        }
        self.argv(rest, io);
    }

    pub(super) fn su(&mut self, args: &[Word]) {
        self.add(
            Class::Red,
            "shell.su",
            "`su` switches user, usually to root; ask the owner",
        );
        let parsed = p(
            args,
            "cgsGw",
            &["--command", "--group", "--shell", "--session-command"],
        );
        match parsed
            .values(&["-c", "--command", "--session-command"])
            .first()
        {
            Some(cmd) if !cmd.dynamic => {
                let text = cmd.text.clone();
                self.payload(&text);
            }
            Some(_) => self.dynamic_code(
                "shell.dynamic_payload",
                "the command passed to su is computed at run time",
            ),
            None => {}
        }
    }

    pub(super) fn env(&mut self, args: &[Word], io: &Io) {
        let parsed = p_stop(
            args,
            "uCSP",
            &[
                "--unset",
                "--chdir",
                "--split-string",
                "--block-signal",
                "--default-signal",
                "--ignore-signal",
            ],
        );
        let mut rest = inner(args, &parsed);
        while let Some(w) = rest.first().filter(|w| is_assignment(w)) {
            let name = w.text.split_once('=').map_or("", |(n, _)| n);
            self.check_env_name(name);
            rest = &rest[1..];
        }
        if let Some(split) = parsed.values(&["-S", "--split-string"]).first() {
            let text = format!("{} {}", split.text, join(rest));
            self.payload(&text);
            return;
        }
        if rest.is_empty() {
            self.add(
                Class::Red,
                "shell.env.dump",
                "`env` without a command prints the environment, which may hold injected secrets",
            );
            return;
        }
        self.argv(rest, io);
    }

    /// Generic dispatch wrapper: skip options (`short_val`/`long_val` take values) and `skip`
    /// positionals (a duration, a CPU mask...), then judge the rest as a command.
    pub(super) fn wrapper(
        &mut self,
        args: &[Word],
        short_val: &str,
        long_val: &[&str],
        skip: usize,
        io: &Io,
    ) {
        let parsed = p_stop(args, short_val, long_val);
        let rest = inner(args, &parsed);
        let rest = rest.get(skip..).unwrap_or(&[]);
        self.argv(rest, io);
    }

    pub(super) fn ip(&mut self, args: &[Word], io: &Io) {
        let t = texts(args);
        if let Some(i) = t.iter().position(|a| *a == "exec")
            && t.contains(&"netns")
        {
            self.add(
                Class::Red,
                "shell.privileged_wrapper",
                "`ip netns exec` runs a command in another network namespace",
            );
            self.argv(args.get(i + 2..).unwrap_or(&[]), io);
            return;
        }
        const CHANGE: [&str; 8] = [
            "add", "del", "delete", "set", "flush", "change", "replace", "append",
        ];
        if t.iter().any(|a| CHANGE.contains(a)) {
            self.add(
                Class::Red,
                "shell.network.config",
                "`ip` changes interfaces, routes or rules",
            );
        }
    }

    /// Database shells: `\!`, `.shell` and `.system` run operating-system commands.
    pub(super) fn db_client(&mut self, name: &str, args: &[Word], io: &Io) {
        let mut texts: Vec<String> = args.iter().map(|w| w.text.clone()).collect();
        if let Stdin::Text(body) = &io.stdin {
            texts.push(body.clone());
        }
        let escapes = texts.iter().any(|t| {
            t.contains("\\!")
                || t.contains(".shell")
                || t.contains(".system")
                || t.contains("\\system")
                || t.to_ascii_lowercase().contains("copy")
                    && t.to_ascii_lowercase().contains("program")
        });
        if escapes {
            self.add(
                Class::Red,
                "shell.db.shell_escape",
                format!("the `{name}` input runs operating-system commands (\\!, .shell, COPY ... PROGRAM)"),
            );
        }
        if io.stdin == Stdin::Pipe {
            self.add(
                Class::Yellow,
                "shell.db.piped",
                format!("`{name}` runs statements piped into it"),
            );
        }
        self.add(
            Class::Yellow,
            "shell.db",
            format!("`{name}` runs database statements"),
        );
    }

    pub(super) fn flock(&mut self, args: &[Word], io: &Io) {
        let parsed = p_stop(
            args,
            "cwE",
            &["--command", "--timeout", "--wait", "--conflict-exit-code"],
        );
        if let Some(cmd) = parsed.values(&["-c", "--command"]).first() {
            let text = cmd.text.clone();
            self.payload(&text);
            return;
        }
        // `flock FILE CMD...`: the first positional is the lock file.
        let rest = inner(args, &parsed);
        self.argv(rest.get(1..).unwrap_or(&[]), io);
    }

    /// Wrappers that change identity, namespaces or tracing: red themselves, and the inner
    /// command is still judged.
    pub(super) fn privileged_wrapper(&mut self, name: &str, args: &[Word], io: &Io) {
        self.add(
            Class::Red,
            "shell.privileged_wrapper",
            format!("`{name}` runs a command with changed privileges, namespaces, tracing or routing; ask the owner"),
        );
        let (short_val, long_val, skip): (&str, &[&str], usize) = match name {
            "chroot" => ("", &["--userspec", "--groups"], 1),
            "runuser" | "sg" => ("ugc", &["--user", "--group", "--command", "--shell"], 0),
            "systemd-run" => (
                "upEM",
                &[
                    "--unit",
                    "--property",
                    "--setenv",
                    "--description",
                    "--slice",
                    "--on-calendar",
                    "--uid",
                    "--gid",
                    "--working-directory",
                    "--machine",
                ],
                0,
            ),
            "strace" | "ltrace" => ("oepsuEIabPXASn", &[], 0),
            "nsenter" => ("tSGTmuinpUCr", &["--target", "--setuid", "--setgid"], 0),
            _ => ("", &[], 0),
        };
        let parsed = p_stop(args, short_val, long_val);
        if let Some(cmd) = parsed.values(&["-c", "--command"]).first() {
            let text = cmd.text.clone();
            self.payload(&text);
            return;
        }
        let rest = inner(args, &parsed);
        let skip = if name == "sg" { 1 } else { skip };
        self.argv(rest.get(skip..).unwrap_or(&[]), io);
    }

    pub(super) fn parallel(&mut self, args: &[Word]) {
        self.add(
            Class::Yellow,
            "shell.parallel",
            "runs a command for many inputs",
        );
        let end = args
            .iter()
            .position(|w| w.text.starts_with(":::"))
            .unwrap_or(args.len());
        let parsed = p_stop(
            &args[..end],
            "jSP",
            &["--jobs", "--sshlogin", "--joblog", "--results"],
        );
        if parsed.has(&["-S", "--sshlogin"]) {
            self.network_unnamed();
            self.add(
                Class::Red,
                "shell.parallel.remote",
                "runs commands on remote hosts",
            );
        }
        let cmd = placeholders_dynamic(inner(&args[..end], &parsed), &["{}"]);
        let io = Io {
            dynamic_args: true,
            ..Io::default()
        };
        if cmd.len() == 1 && cmd[0].text.contains(' ') && !cmd[0].dynamic {
            let text = cmd[0].text.clone();
            self.payload(&text);
        } else {
            self.argv(&cmd, &io);
        }
    }

    pub(super) fn hyperfine(&mut self, args: &[Word]) {
        let parsed = p(
            args,
            "wrmMpcsnSu",
            &[
                "--warmup",
                "--runs",
                "--prepare",
                "--cleanup",
                "--setup",
                "--shell",
                "--export-json",
                "--export-markdown",
                "--command-name",
                "--parameter-list",
                "--parameter-scan",
            ],
        );
        self.add(
            Class::Yellow,
            "shell.hyperfine",
            "benchmarks commands by running them",
        );
        let mut payloads: Vec<String> = parsed.pos.iter().map(|w| w.text.clone()).collect();
        payloads.extend(
            parsed
                .values(&["-p", "--prepare", "-c", "--cleanup", "-s", "--setup"])
                .iter()
                .map(|w| w.text.clone()),
        );
        for text in payloads {
            self.payload(&text);
        }
    }

    pub(super) fn time(&mut self, args: &[Word], io: &Io) {
        let parsed = p_stop(args, "fo", &["--format", "--output"]);
        for w in parsed.values(&["-o", "--output"]) {
            self.path_write(w, "`time -o`");
        }
        self.argv(inner(args, &parsed), io);
    }

    pub(super) fn watch(&mut self, args: &[Word]) {
        let parsed = p_stop(args, "nqs", &["--interval", "--equexit", "--shell"]);
        let rest = inner(args, &parsed);
        if rest.iter().any(|w| w.dynamic) {
            self.dynamic_code(
                "shell.dynamic_payload",
                "`watch` runs a command computed at run time",
            );
        }
        let text = join(rest);
        self.payload(&text);
    }

    pub(super) fn command_builtin(&mut self, args: &[Word], io: &Io) {
        let parsed = p_stop(args, "", &[]);
        if parsed.has(&["-v", "-V"]) {
            return; // lookup only
        }
        self.argv(inner(args, &parsed), io);
    }

    pub(super) fn xargs(&mut self, args: &[Word]) {
        let parsed = p_stop(
            args,
            "adEILnPs",
            &[
                "--arg-file",
                "--delimiter",
                "--eof",
                "--replace",
                "--max-lines",
                "--max-args",
                "--max-procs",
                "--max-chars",
                "--process-slot-var",
            ],
        );
        for w in parsed.values(&["-a", "--arg-file"]) {
            self.path_read(w, "`xargs -a`");
        }
        // With -I/-i, every argument holding the replace string becomes input text at run time:
        // `xargs -I{} sh -c '{}'` runs arbitrary lines, so those arguments are dynamic.
        let mut replace: Vec<String> = parsed
            .values(&["-I", "--replace"])
            .iter()
            .map(|w| w.text.clone())
            .collect();
        if replace.is_empty() && parsed.has(&["-i"]) {
            replace.push("{}".to_owned());
        }
        let replace: Vec<&str> = replace.iter().map(String::as_str).collect();
        let rest = placeholders_dynamic(inner(args, &parsed), &replace);
        let io = Io {
            dynamic_args: true,
            ..Io::default()
        };
        if rest.is_empty() {
            self.argv(&[Word::lit("echo")], &io);
        } else {
            self.argv(&rest, &io);
        }
    }

    pub(super) fn eval(&mut self, args: &[Word]) {
        if args.iter().any(|w| w.dynamic) {
            self.dynamic_code("shell.eval_dynamic",
                "`eval` runs text computed at run time, which cannot be checked; run the command directly",
            );
            self.opaque_args(args);
            return;
        }
        let text = join(args);
        self.payload(&text);
    }

    pub(super) fn source_file(&mut self, args: &[Word]) {
        let Some(file) = args.first() else { return };
        self.path_read(file, "`source`");
        if !file.dynamic && file.text.ends_with("/bin/activate") {
            self.add(
                Class::Yellow,
                "shell.source.venv",
                "activates a Python virtual environment",
            );
            return;
        }
        if file.dynamic {
            // `source <(curl …)`: code computed at run time (critical with network, see `top`).
            self.dynamic_code(
                "shell.source",
                format!("`source {}` runs code computed at run time", file.text),
            );
            return;
        }
        self.add(
            Class::Red,
            "shell.source",
            format!("`source {}` runs a script file inside the shell, and its contents cannot be checked; ask the owner", file.text),
        );
    }

    pub(super) fn cd(&mut self, args: &[Word]) {
        let target = args.iter().find(|w| !w.text.starts_with('-'));
        self.cwd = match target {
            None => Some("~".to_owned()),
            Some(w) if w.dynamic => Some("$DYNAMIC".to_owned()),
            Some(w) => Some(crate::paths::normalize(&w.text, self.cwd.as_deref()).text),
        };
    }
}
