//! File writers (cp, mv, ln, tee, sort -o) and filters (jq, grep).

use super::*;

impl Analyzer<'_> {
    pub(super) fn cp(&mut self, args: &[Word], moving: bool) {
        let parsed = p(
            args,
            "tSmogZ",
            &[
                "--target-directory",
                "--suffix",
                "--mode",
                "--owner",
                "--group",
                "--backup",
                "--context",
            ],
        );
        let tool = if moving { "`mv`" } else { "`cp`" };
        let mut sources = parsed.pos.clone();
        let targets: Vec<Word> = parsed
            .values(&["-t", "--target-directory"])
            .into_iter()
            .cloned()
            .collect();
        let dest = if targets.is_empty() {
            sources.pop()
        } else {
            targets.first().cloned()
        };
        for s in &sources {
            if moving {
                let (norm, _, unknown) = self.locate(s);
                if !unknown && crate::paths::is_root_like(&norm) {
                    self.add(
                        Class::Critical,
                        "path.delete.root",
                        format!(
                            "{tool} moves away {}, a home or top-level directory",
                            s.text
                        ),
                    );
                }
                self.path_delete(s, false, tool);
            } else {
                self.path_read(s, tool);
            }
        }
        if let Some(d) = dest {
            self.path_write(&d, tool);
        }
    }

    pub(super) fn ln(&mut self, args: &[Word]) {
        let parsed = p(args, "tS", &["--target-directory", "--suffix"]);
        let mut pos = parsed.pos.clone();
        let link = if parsed.values(&["-t", "--target-directory"]).is_empty() && pos.len() > 1 {
            pos.pop()
        } else {
            None
        };
        for target in &pos {
            let kind = self.kind_of(target);
            if matches!(
                kind,
                PathKind::Clawgate
                    | PathKind::Openclaw
                    | PathKind::Ssh
                    | PathKind::Secret
                    | PathKind::CriticalSystem
                    | PathKind::ShellRc
            ) {
                // A link to Clawgate's or OpenClaw's files, or to sudoers/shadow, lets a later
                // write land on them under another name: self-tampering.
                let class = if matches!(
                    kind,
                    PathKind::Clawgate | PathKind::Openclaw | PathKind::CriticalSystem
                ) {
                    Class::Critical
                } else {
                    Class::Red
                };
                self.add(
                    class,
                    "shell.ln.protected_target",
                    format!(
                        "links to {} ({} path), which can redirect later reads or writes",
                        target.text,
                        kind.as_str()
                    ),
                );
            }
        }
        if let Some(l) = link {
            self.path_write(&l, "`ln`");
        } else {
            self.add(Class::Yellow, "shell.ln", "creates a link");
        }
    }

    pub(super) fn writes_positionals(&mut self, name: &str, args: &[Word]) {
        let parsed = p(
            args,
            "smrd",
            &["--size", "--mode", "--reference", "--date", "--context"],
        );
        for w in &parsed.pos {
            self.path_write(w, &format!("`{name}`"));
        }
    }

    pub(super) fn sort(&mut self, args: &[Word]) {
        let parsed = p(
            args,
            "otkST",
            &[
                "--output",
                "--key",
                "--field-separator",
                "--buffer-size",
                "--temporary-directory",
                "--compress-program",
                "--files0-from",
                "--parallel",
                "--random-source",
                "--batch-size",
            ],
        );
        for w in parsed.values(&["-o", "--output"]) {
            self.path_write(w, "`sort -o`");
        }
        if parsed.has(&["--compress-program"]) {
            self.add(
                Class::Red,
                "shell.sort.compress_program",
                "sort --compress-program runs another program",
            );
        }
    }

    pub(super) fn jq(&mut self, args: &[Word]) {
        let parsed = p(
            args,
            "fL",
            &[
                "--from-file",
                "--arg",
                "--argjson",
                "--slurpfile",
                "--rawfile",
                "--indent",
                "--tab",
            ],
        );
        if !parsed.values(&["-f", "--from-file"]).is_empty() {
            self.add(
                Class::Yellow,
                "shell.jq.program_file",
                "jq runs a filter from a file",
            );
        }
        let filter = parsed
            .pos
            .first()
            .map(|w| w.text.clone())
            .unwrap_or_default();
        let env_re = filter.contains("$ENV")
            || filter
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '$')
                .any(|t| t == "env");
        if env_re {
            self.add(
                Class::Red,
                "shell.jq.env",
                "the jq filter reads the environment, which may hold injected secrets",
            );
        }
        let mut it = args.iter();
        while let Some(w) = it.next() {
            if matches!(w.text.as_str(), "--slurpfile" | "--rawfile") {
                it.next();
                if let Some(f) = it.next() {
                    self.path_read(f, "jq");
                }
            }
        }
    }

    pub(super) fn grep(&mut self, name: &str, args: &[Word]) {
        if name == "rg" {
            let parsed = p(args, "", &["--pre", "--hostname-bin"]);
            if parsed.has(&["--pre", "--hostname-bin"]) {
                self.add(
                    Class::Red,
                    "shell.rg.exec",
                    "this rg option runs another program on each file; remove it",
                );
            }
            if parsed.has(&["-z", "--search-zip"]) {
                self.add(
                    Class::Red,
                    "shell.rg.exec",
                    "rg -z runs decompression programs",
                );
            }
        }
    }
}
