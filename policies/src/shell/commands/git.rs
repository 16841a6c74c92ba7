//! git: global options, subcommands, configuration overrides and pushes.

use super::*;

impl Analyzer<'_> {
    pub(super) fn git(&mut self, args: &[Word]) {
        let parsed = p_stop(
            args,
            "Cc",
            &[
                "--config-env",
                "--exec-path",
                "--git-dir",
                "--work-tree",
                "--namespace",
                "--super-prefix",
                "--list-cmds",
                "--attr-source",
            ],
        );
        for kv in parsed.values(&["-c"]) {
            let kv = kv.text.clone();
            let (key, value) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            self.git_config_key(key, Some(value), "git -c");
        }
        if parsed.has(&["--config-env", "--exec-path"]) {
            self.add(
                Class::Red,
                "shell.git.config_override",
                "overriding git configuration or its exec path can make git run arbitrary programs",
            );
        }
        if parsed.has(&["--version", "--help", "-h"]) {
            return;
        }
        let rest = inner(args, &parsed);
        let Some((sub, sub_args)) = rest.split_first() else {
            return;
        };
        if sub.dynamic {
            self.add(
                Class::Red,
                "shell.git.dynamic_subcommand",
                "the git subcommand is computed at run time",
            );
            return;
        }
        self.git_common_flags(sub_args);
        let sub_parsed = p(sub_args, "", &[]);
        let has = |names: &[&str]| sub_parsed.has(names);
        let sub = sub.text.as_str();
        match sub {
            "status" | "log" | "diff" | "show" | "rev-parse" | "describe" | "blame" | "shortlog"
            | "ls-files" | "ls-tree" | "cat-file" | "grep" | "show-ref" | "for-each-ref"
            | "merge-base" | "name-rev" | "whatchanged" | "check-ignore" | "check-attr"
            | "count-objects" | "help" | "version" | "var" | "rev-list" | "range-diff"
            | "annotate" | "cherry" | "show-branch" | "verify-commit" | "verify-tag" | "fsck"
            | "diff-tree" | "diff-index" | "diff-files" | "request-pull" | "check-ref-format"
            | "hash-object" | "get-tar-commit-id" | "column" => {}
            "branch" => {
                if has(&["-D", "--force", "-f", "-M", "-C"]) || (has(&["--delete", "-d"]) && has(&["--force", "-f"])) {
                    self.add(Class::Red, "shell.git.branch_force", "force-deletes or overwrites a branch, losing unmerged commits");
                } else if !sub_parsed.pos.is_empty() || has(&["-d", "--delete", "-m", "-c", "--set-upstream-to", "-u"]) {
                    self.add(Class::Yellow, "shell.git.local_write", "changes branches in the local repository");
                }
            }
            "tag" | "remote" | "notes" => {
                let read_only = sub_parsed.pos.is_empty()
                    || matches!(sub_parsed.pos[0].text.as_str(), "-v" | "show" | "get-url" | "list" | "-l");
                if !read_only {
                    self.add(Class::Yellow, "shell.git.local_write", format!("`git {sub}` changes local repository metadata"));
                }
            }
            "stash" => match sub_parsed.pos.first().map(|w| w.text.as_str()) {
                Some("list" | "show") => {}
                Some("clear") => self.add(Class::Red, "shell.git.stash_clear", "drops every stashed change permanently"),
                _ => self.add(Class::Yellow, "shell.git.local_write", "stashes or restores local changes"),
            },
            "worktree" => match sub_parsed.pos.first().map(|w| w.text.as_str()) {
                Some("list") => {}
                Some("remove") if has(&["--force", "-f"]) => self.add(Class::Red, "shell.git.worktree_force", "force-removes a worktree with its changes"),
                _ => self.add(Class::Yellow, "shell.git.local_write", "changes git worktrees"),
            },
            "config" => self.git_config(sub_args),
            "reset" => {
                if has(&["--hard", "--merge", "--keep"]) {
                    self.add(Class::Red, "shell.git.reset_hard", "`git reset --hard` discards uncommitted work irrecoverably; commit or stash first");
                } else {
                    self.add(Class::Yellow, "shell.git.local_write", "moves the current branch");
                }
            }
            "clean" => {
                if has(&["-n", "--dry-run"]) {
                } else if has(&["-f", "--force"]) {
                    self.add(Class::Red, "shell.git.clean", "`git clean -f` deletes untracked files irrecoverably; use -n to preview");
                } else {
                    self.add(Class::Yellow, "shell.git.local_write", "git clean without -f");
                }
            }
            "checkout" | "switch" | "restore" => {
                if has(&["-f", "--force"]) {
                    self.add(Class::Red, "shell.git.checkout_force", "forced checkout discards local changes");
                } else {
                    self.add(Class::Yellow, "shell.git.local_write", format!("`git {sub}` changes the working tree"));
                }
            }
            "rebase" => {
                let execs: Vec<String> = p(sub_args, "x", &["--exec"]).values(&["-x", "--exec"]).iter().map(|w| w.text.clone()).collect();
                for cmd in execs {
                    self.payload(&cmd);
                }
                self.add(Class::Yellow, "shell.git.local_write", "rewrites local commits");
            }
            "bisect" => {
                if sub_parsed.pos.first().is_some_and(|w| w.text == "run") {
                    let run: Vec<Word> = sub_args.iter().skip_while(|w| w.text != "run").skip(1).cloned().collect();
                    self.argv(&run, &Io::default());
                }
                self.add(Class::Yellow, "shell.git.local_write", "git bisect moves HEAD");
            }
            "submodule" => {
                if sub_parsed.pos.first().is_some_and(|w| w.text == "foreach") {
                    let cmd: Vec<Word> = sub_args.iter().skip_while(|w| w.text != "foreach").skip(1).cloned().collect();
                    let text = join(&cmd);
                    self.payload(&text);
                }
                self.network_unnamed();
                self.add(Class::YellowExternal, "shell.git.network", "git submodule commands fetch from remotes");
            }
            "update-ref" if has(&["-d"]) => self.add(Class::Red, "shell.git.update_ref_delete", "deletes a ref directly"),
            "reflog" => {
                if sub_parsed.pos.first().is_some_and(|w| matches!(w.text.as_str(), "expire" | "delete")) {
                    self.add(Class::Red, "shell.git.reflog_expire", "expiring the reflog removes the safety net for lost commits");
                }
            }
            "add" | "commit" | "merge" | "cherry-pick" | "revert" | "init" | "mv" | "rm" | "apply"
            | "am" | "gc" | "prune" | "mktag" | "format-patch" | "archive" | "bundle"
            | "sparse-checkout" | "update-index" | "read-tree" | "commit-tree" | "write-tree"
            | "symbolic-ref" | "update-ref" | "rerere" | "repack" | "pack-refs" | "maintenance"
            | "mergetool-lib" | "replace" | "lfs" => {
                self.add(Class::Yellow, "shell.git.local_write", format!("`git {sub}` changes the local repository"));
            }
            "push" => self.git_push(sub_args),
            "fetch" | "pull" | "clone" | "ls-remote" | "send-email" => {
                self.network_unnamed();
                if has(&["--upload-pack", "--receive-pack", "--exec", "--config", "--template"])
                    || (sub != "fetch" && sub != "pull" && has(&["-u", "-c"]))
                {
                    self.add(Class::Red, "shell.git.remote_exec", "this option makes git run another program or configuration; remove it");
                }
                self.add(
                    Class::YellowExternal,
                    "shell.git.network",
                    format!("`git {sub}` talks to a remote repository"),
                );
            }
            "filter-branch" | "filter-repo" => self.add(Class::Red, "shell.git.rewrite_history", "rewrites the whole repository history"),
            "daemon" | "instaweb" | "http-backend" | "shell" | "upload-pack" | "receive-pack" => {
                self.add(Class::Red, "shell.git.server", format!("`git {sub}` serves the repository to the network"));
            }
            "credential" | "credential-store" | "credential-cache" => {
                self.add(Class::Red, "shell.git.credential", "git credential commands print or store passwords");
            }
            "difftool" | "mergetool" => self.add(Class::Red, "shell.git.external_tool", "runs an external diff or merge program"),
            _ => self.add(
                Class::Red,
                "shell.git.unknown_subcommand",
                format!("`git {sub}` is not a known git command and may be an alias that runs arbitrary commands"),
            ),
        }
    }

    pub(super) fn git_common_flags(&mut self, sub_args: &[Word]) {
        let parsed = p(sub_args, "", &["--output"]);
        for w in parsed.values(&["--output"]) {
            self.path_write(w, "`git --output`");
        }
        if parsed.has(&["--ext-diff", "--textconv", "--open-files-in-pager"])
            || parsed.has(&["-O"]) && sub_args.iter().any(|w| w.text == "-O")
        {
            self.add(
                Class::Red,
                "shell.git.external_program",
                "this option makes git run an external program configured in the repository",
            );
        }
        if sub_args.iter().any(|w| w.text.starts_with("ext::")) {
            self.add(
                Class::Critical,
                "shell.git.ext_transport",
                "the ext:: transport runs an arbitrary command",
            );
        }
    }

    pub(super) fn git_config_key(&mut self, key: &str, value: Option<&str>, how: &str) {
        let key = key.to_ascii_lowercase();
        // `alias.x = !cmd` runs cmd through the shell whenever `git x` runs: judge it now.
        if key.starts_with("alias.")
            && let Some(cmd) = value.and_then(|v| v.strip_prefix('!'))
        {
            let cmd = cmd.to_owned();
            self.payload(&cmd);
        }
        // Keys whose value git runs as a shell command: judge the command now.
        let runs_command = matches!(
            key.as_str(),
            "core.pager"
                | "core.editor"
                | "core.sshcommand"
                | "core.fsmonitor"
                | "core.askpass"
                | "sequence.editor"
                | "diff.external"
                | "gpg.program"
                | "credential.helper"
        ) || key.starts_with("pager.")
            || (key.starts_with("diff.") && key.ends_with(".textconv"))
            || (key.starts_with("filter.")
                && (key.ends_with(".clean")
                    || key.ends_with(".smudge")
                    || key.ends_with(".process")));
        if runs_command && let Some(cmd) = value {
            let cmd = cmd.trim_start_matches('!').to_owned();
            if !cmd.trim().is_empty() {
                self.payload(&cmd);
            }
        }
        const SAFE_PREFIXES: [&str; 6] = [
            "user.",
            "color.",
            "advice.",
            "log.",
            "format.pretty",
            "init.defaultbranch",
        ];
        const SAFE_KEYS: [&str; 5] = [
            "core.quotepath",
            "core.autocrlf",
            "commit.gpgsign",
            "pull.rebase",
            "push.default",
        ];
        let plain_alias = key.starts_with("alias.")
            && value.is_some_and(|v| !v.trim_start().starts_with('!') && !v.is_empty());
        if plain_alias
            || SAFE_PREFIXES.iter().any(|p| key.starts_with(p))
            || SAFE_KEYS.contains(&key.as_str())
        {
            self.add(
                Class::Yellow,
                "shell.git.config_safe",
                format!("{how} sets {key}"),
            );
        } else {
            self.add(
                Class::Red,
                "shell.git.config_override",
                format!("{how} sets {key}, which can make git run programs (pager, alias, hooks, ssh command); remove it"),
            );
        }
    }

    pub(super) fn git_config(&mut self, sub_args: &[Word]) {
        let parsed = p(
            sub_args,
            "f",
            &["--file", "--blob", "--type", "--default", "--comment"],
        );
        if parsed.has(&[
            "--get",
            "--get-all",
            "--get-regexp",
            "--list",
            "-l",
            "--show-origin",
            "--get-urlmatch",
            "--name-only",
        ]) || parsed.pos.len() <= 1
            && !parsed.has(&[
                "--unset",
                "--unset-all",
                "--add",
                "--replace-all",
                "--edit",
                "-e",
                "--remove-section",
                "--rename-section",
            ])
        {
            return;
        }
        if parsed.has(&["--system", "--edit", "-e", "--file", "-f"]) {
            self.add(
                Class::Red,
                "shell.git.config_global",
                "edits git configuration outside the repository",
            );
        }
        let key = parsed
            .pos
            .first()
            .map(|w| w.text.clone())
            .unwrap_or_default();
        let key = if key == "set" || key == "unset" {
            parsed
                .pos
                .get(1)
                .map(|w| w.text.clone())
                .unwrap_or_default()
        } else {
            key
        };
        let value = parsed
            .pos
            .iter()
            .skip_while(|w| w.text != key)
            .nth(1)
            .map(|w| w.text.clone());
        self.git_config_key(&key, value.as_deref(), "git config");
    }

    pub(super) fn git_push(&mut self, sub_args: &[Word]) {
        self.network_unnamed();
        let parsed = p(
            sub_args,
            "o",
            &["--receive-pack", "--exec", "--repo", "--push-option"],
        );
        if parsed.has(&["--receive-pack", "--exec"]) {
            self.add(
                Class::Red,
                "shell.git.remote_exec",
                "this option makes git run another program on the remote side",
            );
        }
        let destructive = parsed.has(&[
            "-f",
            "--force",
            "--force-with-lease",
            "--force-if-includes",
            "--mirror",
            "--delete",
            "-d",
            "--prune",
        ]) || parsed
            .pos
            .iter()
            .skip(1)
            .any(|w| w.text.starts_with('+') || w.text.starts_with(':'));
        if destructive {
            self.add(
                Class::Red,
                "shell.git.push_force",
                "force-pushing or deleting remote refs can destroy published history; push normally or ask the owner",
            );
        }
        self.add(
            Class::YellowExternal,
            "shell.git.push",
            "`git push` publishes commits to a remote",
        );
    }
}
