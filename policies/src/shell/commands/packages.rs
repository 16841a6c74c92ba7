//! Package managers and build tools.

use super::*;

impl Analyzer<'_> {
    pub(super) fn js_pkg(&mut self, name: &str, args: &[Word], io: &Io) {
        let parsed = p_stop(
            args,
            "C",
            &[
                "--prefix",
                "--cwd",
                "--dir",
                "--filter",
                "--workspace",
                "-w",
            ],
        );
        let rest = inner(args, &parsed);
        if args
            .iter()
            .any(|w| w.text == "--registry" || w.text.starts_with("--registry="))
        {
            self.add(
                Class::Red,
                "shell.pkg.custom_index",
                "installs from a registry other than the default; ask the owner",
            );
        }
        let global = args
            .iter()
            .any(|w| matches!(w.text.as_str(), "-g" | "--global" | "--location=global"));
        let sub =
            rest.first()
                .map(|w| w.text.as_str())
                .unwrap_or(if name == "yarn" || name == "bun" {
                    "install"
                } else {
                    ""
                });
        match sub {
            "install" | "i" | "add" | "ci" | "update" | "up" | "upgrade" | "dedupe" | "rebuild"
            | "link" | "create" | "init" | "dlx" | "x" | "exec" | "import" => {
                if global || sub == "link" {
                    self.add(
                        Class::Red,
                        "shell.pkg.global",
                        format!("`{name} {sub}` changes packages outside the workspace"),
                    );
                }
                if name == "bun" && sub == "x" || sub == "exec" && name == "npm" || sub == "dlx" {
                    self.add(
                        Class::YellowExternal,
                        "shell.pkg.fetch_and_run",
                        format!("`{name} {sub}` downloads and runs a package"),
                    );
                } else if !(sub == "init" && rest.len() == 1) {
                    self.add(
                        Class::YellowExternal,
                        "shell.pkg.install",
                        format!("`{name} {sub}` downloads packages from the internet and runs their install scripts"),
                    );
                }
                if sub == "exec" && name != "npm" {
                    self.argv(&rest[1..], io);
                }
            }
            "publish" | "unpublish" | "deprecate" | "dist-tag" | "owner" | "access" | "token"
            | "login" | "adduser" | "logout" | "team" | "hook" => {
                let class = if sub == "publish" {
                    Class::YellowExternal
                } else {
                    Class::Red
                };
                self.network_unnamed();
                self.add(
                    class,
                    "shell.pkg.publish",
                    format!(
                        "`{name} {sub}` changes what the registry publishes or its credentials"
                    ),
                );
            }
            "config" | "set" => {
                if rest
                    .get(1)
                    .is_some_and(|w| matches!(w.text.as_str(), "set" | "delete" | "edit"))
                    || sub == "set"
                {
                    self.add(
                        Class::Red,
                        "shell.pkg.config",
                        format!("`{name} config set` changes registry or script settings"),
                    );
                }
            }
            "ls" | "list" | "outdated" | "view" | "info" | "show" | "why" | "explain" | "-v"
            | "--version" | "version" | "help" | "audit" | "doctor" | "prefix" | "root" | "bin"
            | "search" | "licenses" | "pm" | "whoami" | "fund" | "query" => {
                if sub == "version" && rest.len() > 1 {
                    self.add(
                        Class::Yellow,
                        "shell.pkg.script",
                        format!("`{name} version` bumps the package version"),
                    );
                }
                if sub == "audit" && rest.get(1).is_some_and(|w| w.text == "fix") {
                    self.add(
                        Class::YellowExternal,
                        "shell.pkg.install",
                        "`audit fix` installs packages",
                    );
                }
            }
            "" => {}
            _ => self.add(
                Class::Yellow,
                "shell.pkg.script",
                format!("`{name} {sub}` runs a project script from package.json"),
            ),
        }
    }

    pub(super) fn pip(&mut self, args: &[Word]) {
        let parsed = p_stop(args, "", &["--python", "--log", "--cache-dir"]);
        let rest = inner(args, &parsed);
        let sub = rest.first().map(|w| w.text.as_str()).unwrap_or("");
        match sub {
            "install" | "download" | "wheel" | "run" | "inject" | "upgrade" | "reinstall" => {
                let sub_parsed = p(
                    &rest[1..],
                    "rcei",
                    &[
                        "--requirement",
                        "--constraint",
                        "--editable",
                        "--index-url",
                        "--extra-index-url",
                        "--target",
                        "--prefix",
                        "--root",
                    ],
                );
                if sub_parsed.has(&["--target", "--prefix", "--root"]) {
                    for v in sub_parsed.values(&["--target", "--prefix", "--root"]) {
                        self.path_write(v, "pip install");
                    }
                }
                if sub_parsed.has(&["-i", "--index-url", "--extra-index-url", "--trusted-host"]) {
                    self.add(
                        Class::Red,
                        "shell.pkg.custom_index",
                        "installs from a package index other than the default; ask the owner",
                    );
                }
                self.add(
                    Class::YellowExternal,
                    "shell.pkg.install",
                    format!(
                        "`pip {sub}` downloads packages from the internet and runs their build code"
                    ),
                );
            }
            "uninstall" => self.add(
                Class::Yellow,
                "shell.pkg.uninstall",
                "removes Python packages",
            ),
            "config"
                if rest
                    .get(1)
                    .is_some_and(|w| matches!(w.text.as_str(), "set" | "unset" | "edit")) =>
            {
                self.add(
                    Class::Red,
                    "shell.pkg.config",
                    "changes pip configuration (index URLs)",
                );
            }
            _ => {}
        }
    }

    pub(super) fn py_like_pkg(&mut self, name: &str, args: &[Word], io: &Io) {
        let parsed = p_stop(
            args,
            "",
            &[
                "--directory",
                "--project",
                "--python",
                "-p",
                "--with",
                "--from",
                "--env",
                "-n",
                "--name",
            ],
        );
        let rest = inner(args, &parsed);
        let sub = rest.first().map(|w| w.text.as_str()).unwrap_or("");
        match sub {
            "run" | "exec" => {
                self.add(
                    Class::Yellow,
                    "shell.pkg.run",
                    format!("`{name} {sub}` runs a command in the project environment"),
                );
                let inner_parsed = p_stop(
                    &rest[1..],
                    "",
                    &[
                        "--with",
                        "--from",
                        "--python",
                        "-p",
                        "--env",
                        "-n",
                        "--name",
                        "--directory",
                        "--package",
                    ],
                );
                let cmd = inner(&rest[1..], &inner_parsed);
                self.argv(cmd, io);
            }
            "install" | "add" | "sync" | "lock" | "update" | "upgrade" | "create" | "tool"
            | "pip" | "self" | "remove" => {
                let class = if sub == "remove" {
                    Class::Yellow
                } else {
                    Class::YellowExternal
                };
                self.add(
                    class,
                    "shell.pkg.install",
                    format!("`{name} {sub}` downloads packages from the internet"),
                );
            }
            "publish" | "push" | "login" | "owner" | "yank" => {
                self.network_unnamed();
                self.add(
                    Class::YellowExternal,
                    "shell.pkg.publish",
                    format!("`{name} {sub}` publishes to a registry"),
                );
            }
            "venv" | "init" | "new" | "build" | "check" | "format" | "fmt" => self.add(
                Class::Yellow,
                "shell.pkg.local",
                format!("`{name} {sub}` changes the project locally"),
            ),
            _ => {}
        }
    }

    pub(super) fn cargo(&mut self, args: &[Word]) {
        let parsed = p_stop(
            args,
            "Z",
            &[
                "--config",
                "--manifest-path",
                "--color",
                "--target-dir",
                "--locked",
            ],
        );
        if !parsed.values(&["--config"]).is_empty() {
            self.add(
                Class::Red,
                "shell.cargo.config",
                "overriding cargo configuration can run other programs",
            );
        }
        let rest = inner(args, &parsed);
        let rest = if rest.first().is_some_and(|w| w.text.starts_with('+')) {
            &rest[1..]
        } else {
            rest
        };
        let sub = rest.first().map(|w| w.text.as_str()).unwrap_or("");
        match sub {
            "" | "tree" | "metadata" | "version" | "help" | "locate-project" | "pkgid"
            | "verify-project" | "read-manifest" | "search" | "info" => {}
            "install" | "add" | "update" | "fetch" | "generate-lockfile" | "vendor"
            | "binstall" => self.add(
                Class::YellowExternal,
                "shell.pkg.install",
                format!("`cargo {sub}` downloads crates from the internet"),
            ),
            "publish" => {
                self.network_unnamed();
                self.add(
                    Class::YellowExternal,
                    "shell.pkg.publish",
                    "`cargo publish` uploads a crate to a registry",
                )
            }
            "login" | "logout" | "owner" | "yank" => self.add(
                Class::Red,
                "shell.pkg.publish",
                format!("`cargo {sub}` changes registry credentials or published crates"),
            ),
            _ => self.add(
                Class::Yellow,
                "shell.cargo.build",
                format!("`cargo {sub}` builds or runs project code"),
            ),
        }
    }

    pub(super) fn go(&mut self, args: &[Word]) {
        let sub = args.first().map(|w| w.text.as_str()).unwrap_or("");
        let sub2 = args.get(1).map(|w| w.text.as_str()).unwrap_or("");
        match (sub, sub2) {
            ("version" | "help" | "doc" | "list" | "" | "env", _) => {
                if sub == "env" && args.iter().any(|w| w.text == "-w" || w.text == "-u") {
                    self.add(
                        Class::Yellow,
                        "shell.go.env",
                        "changes Go environment settings",
                    );
                }
            }
            ("get" | "install", _) | ("mod", "download" | "tidy" | "vendor") | ("work", "sync") => {
                self.add(
                    Class::YellowExternal,
                    "shell.pkg.install",
                    format!("`go {sub}` downloads modules from the internet"),
                )
            }
            _ => self.add(
                Class::Yellow,
                "shell.go.build",
                format!("`go {sub}` builds or runs project code"),
            ),
        }
    }

    pub(super) fn system_pkg(&mut self, name: &str, args: &[Word]) {
        const READ: [&str; 22] = [
            "list", "search", "show", "policy", "info", "depends", "rdepends", "madison", "-Q",
            "-Qi", "-Ql", "-Ss", "-Si", "-l", "-L", "-s", "-S", "--list", "--status", "--search",
            "-qa", "-qi",
        ];
        let sub = args.iter().find(|w| {
            !w.text.starts_with('-')
                || READ.contains(&w.text.as_str())
                || name == "pacman"
                || name == "dpkg"
                || name == "rpm"
        });
        match sub.map(|w| w.text.as_str()) {
            Some(s)
                if READ.contains(&s)
                    || s.starts_with("-Q")
                    || (name == "pacman" && s.starts_with("-S") && s.contains('s')) => {}
            None => {}
            Some(s) if name == "dpkg" && s.starts_with("--get") => {}
            Some(s) => self.add(
                Class::Red,
                "shell.pkg.system",
                format!("`{name} {s}` changes system packages (as root); ask the owner"),
            ),
        }
    }

    pub(super) fn brew(&mut self, args: &[Word]) {
        match args.first().map(|w| w.text.as_str()) {
            Some("install" | "upgrade" | "update" | "tap" | "reinstall" | "fetch" | "bundle") => {
                self.add(
                    Class::YellowExternal,
                    "shell.pkg.install",
                    "brew downloads packages from the internet",
                )
            }
            Some(
                "uninstall" | "remove" | "rm" | "cleanup" | "untap" | "link" | "unlink"
                | "services",
            ) => self.add(
                Class::Yellow,
                "shell.pkg.local",
                "brew changes installed packages",
            ),
            _ => {}
        }
    }
}
