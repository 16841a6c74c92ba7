//! Archives, disks, permissions, cron, services and signals.

use super::*;

impl Analyzer<'_> {
    pub(super) fn tar(&mut self, args: &[Word]) {
        let mut args = args.to_vec();
        // `tar xzf a.tgz`: a first word without a dash is a bundle of short options.
        if let Some(first) = args.first_mut()
            && !first.text.starts_with('-')
            && !first.text.is_empty()
            && first.text.chars().all(|c| c.is_ascii_alphabetic())
        {
            first.text.insert(0, '-');
        }
        let parsed = p(
            &args,
            "fCIFbLNgTVKX",
            &[
                "--file",
                "--directory",
                "--use-compress-program",
                "--to-command",
                "--checkpoint-action",
                "--rsh-command",
                "--info-script",
                "--new-volume-script",
                "--index-file",
                "--exclude",
                "--files-from",
                "--transform",
                "--xform",
                "--owner",
                "--group",
                "--mode",
                "--mtime",
                "--newer",
                "--after-date",
                "--label",
                "--volno-file",
                "--exclude-from",
                "--format",
                "--blocking-factor",
                "--record-size",
                "--tape-length",
                "--starting-file",
                "--strip-components",
            ],
        );
        let dangerous = parsed.names().any(|n| {
            [
                "--to-command",
                "--checkpoint-action",
                "--rsh-command",
                "--info-script",
                "--new-volume-script",
            ]
            .iter()
            .any(|d| n.len() >= 6 && d.starts_with(n))
        }) || parsed.has(&["-F"]);
        if dangerous {
            self.add(
                Class::Red,
                "shell.tar.exec",
                "this tar option runs commands (checkpoint action, to-command, scripts); remove it",
            );
        }
        for prog in parsed.values(&["-I", "--use-compress-program"]) {
            let base = prog.text.split_whitespace().next().unwrap_or_default();
            if !matches!(
                base,
                "gzip" | "pigz" | "bzip2" | "pbzip2" | "xz" | "zstd" | "lz4" | "lzip" | "brotli"
            ) {
                self.add(
                    Class::Red,
                    "shell.tar.exec",
                    format!("tar runs {} as its compression program", prog.text),
                );
            }
        }
        let extract = parsed.has(&["-x", "--extract", "--get"]);
        let create = parsed.has(&["-c", "--create", "-r", "--append", "-u", "--update"]);
        for f in parsed.values(&["-f", "--file"]) {
            if create {
                self.path_write(f, "`tar`");
            } else {
                self.path_read(f, "`tar`");
            }
        }
        if extract {
            self.add(Class::Yellow, "shell.tar.extract", "extracts an archive");
            for d in parsed.values(&["-C", "--directory"]) {
                self.path_write(d, "`tar -x -C`");
            }
            if parsed.has(&["-P", "--absolute-names"]) {
                self.add(
                    Class::Red,
                    "shell.tar.absolute",
                    "extracting with absolute names can overwrite any file",
                );
            }
        }
        if create {
            for w in &parsed.pos {
                self.path_read(w, "`tar`");
            }
        }
    }

    pub(super) fn zip(&mut self, name: &str, args: &[Word]) {
        let parsed = p(args, "dTxi", &["--unzip-command"]);
        if parsed.has(&["-TT", "--unzip-command"])
            || args
                .iter()
                .any(|w| w.text == "-TT" || w.text.starts_with("--unzip-command"))
        {
            self.add(
                Class::Red,
                "shell.zip.exec",
                "zip -TT runs a command to test the archive",
            );
        }
        if name == "unzip" {
            for d in parsed.values(&["-d"]) {
                self.path_write(d, "`unzip -d`");
            }
            self.add(Class::Yellow, "shell.archive", "extracts an archive");
        } else {
            if let Some(out) = parsed.pos.first() {
                self.path_write(out, "`zip`");
            }
            for w in parsed.pos.iter().skip(1) {
                self.path_read(w, "`zip`");
            }
        }
    }

    pub(super) fn dd(&mut self, args: &[Word]) {
        self.add(Class::Yellow, "shell.dd", "dd copies raw data");
        for w in args {
            if let Some(v) = w.text.strip_prefix("of=") {
                self.path_write(
                    &Word {
                        text: v.to_owned(),
                        ..w.clone()
                    },
                    "`dd of=`",
                );
            } else if let Some(v) = w.text.strip_prefix("if=") {
                self.path_read(
                    &Word {
                        text: v.to_owned(),
                        ..w.clone()
                    },
                    "`dd if=`",
                );
            }
        }
    }

    pub(super) fn chmod(&mut self, name: &str, args: &[Word]) {
        let parsed = p(args, "", &["--reference", "--from"]);
        let recursive = parsed.has(&["-R", "--recursive"]);
        let mut pos = parsed.pos.clone();
        if name != "chattr"
            && name != "setfacl"
            && parsed.values(&["--reference"]).is_empty()
            && !pos.is_empty()
        {
            let spec = pos.remove(0);
            if name == "chmod" && is_setuid_mode(&spec.text) {
                self.add(
                    Class::Red,
                    "shell.chmod.setuid",
                    "sets the setuid/setgid bit, which can grant root",
                );
            }
        }
        if name != "chmod" {
            self.add(
                Class::Red,
                "shell.chown",
                format!("`{name}` changes ownership or attributes; this normally needs root"),
            );
        }
        for w in &pos {
            let (norm, kind, unknown) = self.locate(w);
            let class = if recursive && !unknown && crate::paths::is_root_like(&norm) {
                Class::Critical
            } else if kind == PathKind::Ssh {
                Class::Red
            } else if recursive && kind == PathKind::System {
                Class::Critical
            } else {
                kind.write_class()
            };
            self.add(
                class,
                &format!("path.modify.{}", kind.as_str()),
                format!(
                    "`{name}` {}changes permissions of {} ({} path)",
                    if recursive { "recursively " } else { "" },
                    w.text,
                    kind.as_str()
                ),
            );
        }
    }

    pub(super) fn crontab(&mut self, args: &[Word]) {
        let parsed = p(args, "u", &[]);
        if parsed.has(&["-u"]) {
            self.add(
                Class::Red,
                "shell.crontab.user",
                "edits another user's crontab",
            );
        }
        if parsed.has(&["-l"]) && parsed.pos.is_empty() {
            return;
        }
        if parsed.has(&["-r"]) && parsed.pos.is_empty() {
            self.add(
                Class::Red,
                "shell.crontab.remove",
                "removes all scheduled jobs",
            );
            return;
        }
        self.add(
            Class::Critical,
            "shell.crontab.install",
            "installing cron jobs runs commands later, outside Clawgate; use the automations tool",
        );
    }

    pub(super) fn systemctl(&mut self, args: &[Word]) {
        let parsed = p(
            args,
            "tspHMn",
            &[
                "--type",
                "--state",
                "--signal",
                "--property",
                "--host",
                "--machine",
                "--lines",
                "--output",
                "--root",
                "--kill-whom",
                "--job-mode",
            ],
        );
        if parsed.has(&["-H", "--host"]) {
            self.network_unnamed();
            self.add(
                Class::Red,
                "shell.systemctl.remote",
                "controls services on another host",
            );
        }
        let Some((sub, units)) = parsed.pos.split_first() else {
            return;
        };
        let sub = sub.text.as_str();
        const READ: [&str; 17] = [
            "status",
            "show",
            "cat",
            "is-active",
            "is-enabled",
            "is-failed",
            "list-units",
            "list-unit-files",
            "list-timers",
            "list-sockets",
            "list-dependencies",
            "list-jobs",
            "list-machines",
            "help",
            "get-default",
            "list-paths",
            "is-system-running",
        ];
        if READ.contains(&sub) {
            return;
        }
        if units.iter().any(|u| mentions_self(&u.text)) || units.iter().any(|u| u.dynamic) {
            self.add(
                Class::Critical,
                "shell.systemctl.self",
                "the agent may not stop, restart or change Clawgate, OpenClaw or the firewall",
            );
        }
        let persists = matches!(
            sub,
            "enable"
                | "reenable"
                | "link"
                | "preset"
                | "preset-all"
                | "edit"
                | "set-property"
                | "mask"
                | "unmask"
                | "set-environment"
                | "import-environment"
                | "add-wants"
                | "add-requires"
        );
        if parsed.has(&["--user"])
            && !persists
            && !matches!(sub, "poweroff" | "reboot" | "halt" | "kexec")
        {
            self.add(
                Class::Yellow,
                "shell.systemctl.user",
                format!("`systemctl --user {sub}` changes the agent user's own services"),
            );
            return;
        }
        match sub {
            "poweroff" | "reboot" | "halt" | "kexec" | "suspend" | "hibernate" | "rescue"
            | "emergency" | "isolate" | "default" | "soft-reboot" => self.add(
                Class::Red,
                "shell.power",
                format!("`systemctl {sub}` stops or restarts the machine"),
            ),
            _ => self.add(
                Class::Red,
                "shell.systemctl.change",
                format!("`systemctl {sub}` changes system services; ask the owner"),
            ),
        }
    }

    pub(super) fn service(&mut self, args: &[Word]) {
        let pos: Vec<&str> = texts(args);
        if pos.get(1).is_some_and(|a| *a == "status")
            || pos.first().is_some_and(|a| *a == "--status-all")
        {
            return;
        }
        if pos.first().is_some_and(|u| mentions_self(u)) {
            self.add(
                Class::Critical,
                "shell.systemctl.self",
                "the agent may not stop or change Clawgate, OpenClaw or the firewall",
            );
        }
        self.add(
            Class::Red,
            "shell.systemctl.change",
            "`service` changes system services; ask the owner",
        );
    }

    pub(super) fn kill(&mut self, args: &[Word]) {
        let parsed = p(args, "sn", &["--signal"]);
        if parsed.has(&["-l", "-L", "--list", "--table"]) {
            return;
        }
        // Signal given as `-9`/`-KILL` shows up as option letters; targets are the positionals
        // plus negative numbers after the first option.
        let mut targets: Vec<&Word> = parsed.pos.iter().collect();
        let signal_given_as_opt = args.first().is_some_and(|w| w.text.starts_with('-'));
        for (i, w) in args.iter().enumerate() {
            if i > 0
                && signal_given_as_opt
                && w.text.starts_with('-')
                && w.text[1..].chars().all(|c| c.is_ascii_digit())
            {
                targets.push(w);
            }
        }
        for t in targets {
            if matches!(t.text.as_str(), "-1" | "1" | "0" | "-0") {
                self.add(
                    Class::Critical,
                    "shell.kill.all",
                    "signals every process or init; name the process to stop",
                );
            } else if mentions_self(&t.text)
                || (t.dynamic && (t.text.contains("pidof") || t.text.contains("pgrep")))
                    && mentions_self(&t.text)
            {
                self.add(
                    Class::Critical,
                    "shell.kill.self",
                    "the agent may not stop Clawgate, OpenClaw or the firewall",
                );
            } else if t.dynamic {
                self.add(
                    Class::Red,
                    "shell.kill.dynamic",
                    "signals processes chosen at run time",
                );
            }
        }
        self.add(Class::Yellow, "shell.kill", "sends a signal to a process");
    }

    pub(super) fn pkill(&mut self, name: &str, args: &[Word]) {
        if args
            .iter()
            .any(|w| mentions_self(&w.text) || w.text == "node")
        {
            self.add(
                Class::Critical,
                "shell.kill.self",
                "the agent may not stop Clawgate, OpenClaw or the gateway's node process",
            );
        }
        self.add(Class::Red, "shell.pkill", format!("`{name}` kills processes by name, which can hit unrelated programs; use kill with a PID"));
    }
}
