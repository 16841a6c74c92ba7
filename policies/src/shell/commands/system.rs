//! Firewall, containers, cloud CLIs, editors and terminal multiplexers.

use super::*;

impl Analyzer<'_> {
    pub(super) fn firewall(&mut self, name: &str, args: &[Word]) {
        let listing = args.iter().any(|w| {
            matches!(
                w.text.as_str(),
                "list"
                    | "-L"
                    | "-S"
                    | "--list"
                    | "status"
                    | "--list-rules"
                    | "-nL"
                    | "-nvL"
                    | "--state"
            )
        });
        if listing {
            self.add(
                Class::Red,
                "shell.firewall.read",
                format!("`{name}` reads firewall rules (needs root)"),
            );
        } else {
            self.add(
                Class::Critical,
                "shell.firewall.change",
                "the agent may not change the firewall: it enforces that traffic goes through Clawgate",
            );
        }
    }

    pub(super) fn docker(&mut self, name: &str, args: &[Word]) {
        let parsed = p_stop(
            args,
            "Hcl",
            &["--host", "--context", "--config", "--log-level"],
        );
        if parsed.has(&["-H", "--host"]) {
            self.network_unnamed();
            self.add(
                Class::Red,
                "shell.docker.remote",
                "talks to a remote container daemon",
            );
        }
        let rest = inner(args, &parsed);
        let sub = rest.first().map(|w| w.text.as_str()).unwrap_or("");
        let sub2 = rest.get(1).map(|w| w.text.as_str()).unwrap_or("");
        let escape = rest.iter().enumerate().any(|(i, w)| {
            let t = w.text.as_str();
            let next = rest.get(i + 1).map(|w| w.text.as_str()).unwrap_or("");
            t == "--privileged"
                || [
                    "--pid=host",
                    "--net=host",
                    "--network=host",
                    "--ipc=host",
                    "--uts=host",
                    "--userns=host",
                    "--cap-add=ALL",
                    "--cap-add=SYS_ADMIN",
                ]
                .contains(&t)
                || (matches!(t, "--pid" | "--net" | "--network" | "--ipc" | "--userns")
                    && next == "host")
                || t.starts_with("--device")
                || ((t == "-v" || t == "--volume" || t == "--mount") && mount_is_sensitive(next))
                || ((t.starts_with("-v")
                    || t.starts_with("--volume=")
                    || t.starts_with("--mount="))
                    && mount_is_sensitive(
                        t.trim_start_matches("-v")
                            .trim_start_matches("--volume=")
                            .trim_start_matches("--mount="),
                    ))
        });
        if escape {
            self.add(
                Class::Critical,
                "shell.docker.host_escape",
                "the container would get the host's privileges, devices or root file system",
            );
        }
        match (sub, sub2) {
            ("ps" | "images" | "logs" | "inspect" | "version" | "info" | "stats" | "top" | "events" | "history" | "port" | "diff" | "search" | "", _)
            | ("image" | "container" | "network" | "volume" | "context", "ls" | "list" | "inspect")
            | ("compose", "ps" | "logs" | "config" | "ls" | "images" | "version") => {}
            ("build" | "pull" | "push", _) | ("image", "pull" | "push" | "build") | ("buildx", _) => {
                self.network_unnamed();
                self.add(Class::YellowExternal, "shell.docker.registry", format!("`{name} {sub}` exchanges images with a registry"))
            }
            ("tag" | "save" | "load" | "commit" | "export" | "import", _) => {
                self.add(Class::Yellow, "shell.docker.local", format!("`{name} {sub}` changes local images"))
            }
            _ => self.add(
                Class::Red,
                "shell.docker.run",
                format!("`{name} {sub}` runs or changes containers, which can act as root on the host; ask the owner"),
            ),
        }
    }

    pub(super) fn gh(&mut self, name: &str, args: &[Word]) {
        self.network_unnamed();
        let t = texts(args);
        let pair = (
            t.first().copied().unwrap_or(""),
            t.get(1).copied().unwrap_or(""),
        );
        let sensitive = matches!(
            pair,
            ("auth", "token")
                | ("secret", _)
                | ("repo", "delete")
                | ("release", "delete")
                | ("ssh-key", _)
                | ("gpg-key", _)
                | ("extension", "install")
                | ("variable", "set")
                | ("auth", "refresh")
                | ("auth", "setup-git")
        ) || (pair.0 == "auth"
            && t.iter().any(|a| *a == "--show-token" || *a == "-t"))
            || (pair.0 == "api" && t.iter().any(|a| a.eq_ignore_ascii_case("delete")));
        if sensitive {
            self.add(
                Class::Red,
                "shell.gh.sensitive",
                format!(
                    "`{name} {} {}` reveals credentials or deletes remote data",
                    pair.0, pair.1
                ),
            );
        }
        self.add(
            Class::YellowExternal,
            "shell.gh",
            format!("`{name}` talks to the code-hosting service"),
        );
    }

    pub(super) fn cloud(&mut self, name: &str, args: &[Word]) {
        self.network_unnamed();
        const DESTRUCTIVE: [&str; 20] = [
            "delete",
            "destroy",
            "apply",
            "rm",
            "uninstall",
            "scale",
            "drain",
            "cordon",
            "exec",
            "run",
            "deploy",
            "ssh",
            "rollout",
            "patch",
            "replace",
            "terminate-instances",
            "import",
            "taint",
            "up",
            "create",
        ];
        if args
            .iter()
            .any(|w| DESTRUCTIVE.contains(&w.text.as_str()) || w.text == "--raw")
            || name.starts_with("ansible")
        {
            self.add(
                Class::Red,
                "shell.cloud.change",
                format!("`{name}` would change or reach into remote infrastructure; ask the owner"),
            );
        }
        self.add(
            Class::YellowExternal,
            "shell.cloud",
            format!("`{name}` talks to remote infrastructure"),
        );
    }

    pub(super) fn editor(&mut self, name: &str, args: &[Word]) {
        let runs = args.iter().any(|w| {
            let t = w.text.as_str();
            t == "-c"
                || t == "--cmd"
                || t == "-S"
                || (t.starts_with('+')
                    && t.len() > 1
                    && !t[1..].chars().all(|c| c.is_ascii_digit()))
                || t == "--eval"
                || t == "-l"
                || t == "--load"
                || t == "-f"
                || t == "--funcall"
                || t == "-batch"
                || t == "--batch"
        }) || name == "ex";
        if runs {
            self.add(
                Class::Red,
                "shell.editor.command",
                format!("`{name}` is told to run editor commands, which can run shell commands"),
            );
        } else {
            self.add(
                Class::Yellow,
                "shell.editor",
                format!("`{name}` is interactive and edits files"),
            );
        }
    }

    pub(super) fn multiplexer(&mut self, name: &str, args: &[Word]) {
        let first = args.first().map(|w| w.text.as_str()).unwrap_or("");
        if matches!(
            first,
            "ls" | "list-sessions"
                | "-ls"
                | "-list"
                | "list-windows"
                | "has-session"
                | "capture-pane"
        ) {
            return;
        }
        self.add(
            Class::Red,
            "shell.multiplexer",
            format!("`{name}` runs commands in a detached terminal where they cannot be checked"),
        );
    }

    pub(super) fn script_cmd(&mut self, args: &[Word]) {
        let parsed = p(
            args,
            "cEIOBT",
            &[
                "--command",
                "--log-in",
                "--log-out",
                "--log-io",
                "--log-timing",
                "--echo",
            ],
        );
        if let Some(cmd) = parsed.values(&["-c", "--command"]).first() {
            let t = cmd.text.clone();
            self.payload(&t);
        } else {
            self.add(
                Class::Red,
                "shell.interactive",
                "`script` starts an interactive shell",
            );
        }
        for w in &parsed.pos {
            self.path_write(w, "`script`");
        }
    }
}
