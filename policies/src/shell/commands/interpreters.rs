//! Shells, inline interpreters, awk, sed, find and rm.

use super::*;

impl Analyzer<'_> {
    pub(super) fn shell(&mut self, name: &str, args: &[Word], io: &Io) {
        let parsed = p_stop(args, "oO", &["--rcfile", "--init-file"]);
        let flags: String = parsed
            .names()
            .filter(|n| !n.starts_with("--"))
            .map(|n| n.trim_start_matches('-'))
            .collect();
        if parsed.has(&["--rcfile", "--init-file"]) {
            self.add(
                Class::Red,
                "shell.rcfile",
                "starts a shell with a custom start-up file",
            );
        }
        let pos = inner(args, &parsed);
        if flags.contains('c') {
            match pos.first() {
                Some(cmd) if cmd.dynamic => {
                    self.dynamic_code("shell.dynamic_payload",
                        format!("`{name} -c` runs a command computed at run time, which cannot be checked"),
                    );
                    self.opaque_args(pos);
                }
                Some(cmd) => {
                    let text = cmd.text.clone();
                    self.payload(&text);
                }
                None => self.dynamic_code(
                    "shell.dynamic_payload",
                    format!("`{name} -c` without a command"),
                ),
            }
            return;
        }
        match pos.first() {
            Some(script) if !flags.contains('s') && script.text != "-" => self.script(name, script),
            _ => self.program_from_stdin(name, io),
        }
    }

    pub(super) fn script(&mut self, name: &str, script: &Word) {
        self.check_downloaded(&script.text);
        self.check_written(&script.text, name);
        if script.dynamic {
            let class = if self.network {
                Class::Critical
            } else {
                Class::Red
            };
            self.add(
                class,
                "shell.dynamic_script",
                format!("`{name}` runs a script produced at run time (possibly downloaded); save it and ask the owner"),
            );
            return;
        }
        self.path_read(script, &format!("`{name}`"));
        match self.kind_of(script) {
            PathKind::Workspace | PathKind::Temp | PathKind::Home => self.add(
                Class::Yellow,
                "shell.script",
                format!(
                    "runs the workspace script {}; its contents are not checked",
                    script.text
                ),
            ),
            kind => self.add(
                Class::Red,
                "shell.script_outside_workspace",
                format!(
                    "runs the script {} from a {} path",
                    script.text,
                    kind.as_str()
                ),
            ),
        }
    }

    /// A shell or interpreter that reads its program from standard input.
    pub(super) fn program_from_stdin(&mut self, name: &str, io: &Io) {
        match &io.stdin {
            Stdin::Pipe => self.add(
                Class::Critical,
                "shell.pipe_to_shell",
                format!("piping data into `{name}` executes whatever the previous command produced; download or decode to a file and review it first"),
            ),
            Stdin::Text(body) => {
                let body = body.clone();
                if SHELLS.contains(&name) {
                    self.payload(&body);
                } else {
                    self.inline_code(name, &body);
                }
            }
            Stdin::File(path) => {
                let w = Word::lit(path);
                self.script(name, &w);
            }
            Stdin::Inherited => self.add(
                Class::Red,
                "shell.interactive",
                format!("starts an interactive `{name}` whose input cannot be checked"),
            ),
        }
    }

    /// Inline program text: opaque (red), but shell commands and paths inside its string
    /// literals are still looked at, and critical findings there stand.
    pub(crate) fn inline_code(&mut self, lang: &str, code: &str) {
        self.add(
            Class::Red,
            "shell.inline_code",
            format!("runs inline {lang} code that the policy cannot inspect; put it in a workspace file or ask the owner"),
        );
        self.scan_code_literals(lang, code);
    }

    /// Looks into the string literals of program text: URLs, secret paths and critical shell
    /// commands count; ordinary words in literals are not commands.
    pub(crate) fn scan_code_literals(&mut self, lang: &str, code: &str) {
        for lit in string_literals(code) {
            if lit.contains("://") {
                self.network_unnamed();
                if let Ok(u) = url::parse(lit)
                    && let Some((class, rule, reason)) = url::host_finding(&u)
                {
                    self.add(class, rule, reason);
                }
            }
            let w = Word::lit(lit);
            if self.kind_of(&w).is_secret() {
                self.path_read(&w, &format!("inline {lang} code"));
            }
            // Ordinary words in a program's literals are not commands: keep only what is
            // critical when a literal is read as shell.
            if lit.contains(' ') {
                self.critical_only(|a| a.payload(lit));
            }
        }
    }

    pub(super) fn python(&mut self, args: &[Word], io: &Io) {
        let parsed = p_stop(args, "cmWXQ", &["--check-hash-based-pycs"]);
        if parsed.has(&["-V", "--version", "-h", "--help"]) {
            return;
        }
        if let Some(code) = parsed.values(&["-c"]).first() {
            self.runs_dynamic |= code.dynamic;
            let code = code.text.clone();
            self.inline_code("python", &code);
            return;
        }
        if let Some(module) = parsed.values(&["-m"]).first() {
            let module = module.text.clone();
            let rest = inner(args, &parsed);
            self.python_module(&module, rest);
            return;
        }
        match inner(args, &parsed).first() {
            Some(s) if s.text != "-" => self.script("python", s),
            _ => self.program_from_stdin("python", io),
        }
    }

    pub(super) fn python_module(&mut self, module: &str, rest: &[Word]) {
        match module {
            "pip" => self.pip(rest),
            "http.server" | "smtpd" | "pydoc" | "SimpleHTTPServer" | "ftplib" => self.add(
                Class::Red,
                "shell.python.server",
                format!("`python -m {module}` opens a network server on this machine"),
            ),
            "json.tool" | "this" | "site" | "platform" | "sysconfig" | "tokenize"
            | "py_compile" | "compileall" | "timeit" | "doctest" | "tabnanny" => {}
            _ => self.add(
                Class::Yellow,
                "shell.python.module",
                format!("runs the Python module {module}"),
            ),
        }
    }

    pub(super) fn node(&mut self, args: &[Word], io: &Io) {
        let parsed = p_stop(
            args,
            "epr",
            &[
                "--eval",
                "--print",
                "--require",
                "--import",
                "--loader",
                "--experimental-loader",
                "--input-type",
            ],
        );
        if parsed.has(&["-v", "--version", "-h", "--help"]) {
            return;
        }
        if let Some(code) = parsed.values(&["-e", "--eval", "-p", "--print"]).first() {
            self.runs_dynamic |= code.dynamic;
            let code = code.text.clone();
            self.inline_code("JavaScript", &code);
            return;
        }
        if parsed.has(&[
            "-r",
            "--require",
            "--import",
            "--loader",
            "--experimental-loader",
        ]) {
            self.add(
                Class::Red,
                "shell.node.preload",
                "preloads a module into node before the program",
            );
        }
        match inner(args, &parsed).first() {
            Some(s) if s.text != "-" => self.script("node", s),
            _ => self.program_from_stdin("node", io),
        }
    }

    pub(super) fn other_interpreter(&mut self, name: &str, args: &[Word], io: &Io) {
        let code_flags: &[&str] = match name {
            "php" => &["-r"],
            "osascript" | "perl" | "ruby" | "lua" | "luajit" | "Rscript" => &["-e", "-E"],
            "pwsh" | "powershell" => &["-c", "-Command", "-EncodedCommand", "-e"],
            _ => &["-e"],
        };
        let parsed = p_stop(args, "eErIlCFdSxMm", &[]);
        if parsed.has(&["-v", "--version", "-V"]) && args.len() == 1 {
            return;
        }
        let code_words = parsed.values(code_flags);
        self.runs_dynamic |= code_words.iter().any(|w| w.dynamic);
        let codes: Vec<String> = code_words.iter().map(|w| w.text.clone()).collect();
        if !codes.is_empty() {
            for code in codes {
                self.inline_code(name, &code);
            }
            return;
        }
        if name == "php" && parsed.has(&["-S"]) {
            self.add(
                Class::Red,
                "shell.php.server",
                "`php -S` opens a web server on this machine",
            );
        }
        if name == "perl" && parsed.has(&["-i"]) {
            self.add(
                Class::Yellow,
                "shell.perl.in_place",
                "perl -i edits files in place",
            );
        }
        match inner(args, &parsed).first() {
            Some(s) if s.text != "-" => self.script(name, s),
            _ => self.program_from_stdin(name, io),
        }
    }

    pub(super) fn awk(&mut self, args: &[Word]) {
        let parsed = p(
            args,
            "Fvfil",
            &[
                "--field-separator",
                "--assign",
                "--file",
                "--include",
                "--load",
                "--source",
            ],
        );
        if !parsed
            .values(&["-f", "--file", "-i", "--include", "-l", "--load"])
            .is_empty()
        {
            self.add(
                Class::Red,
                "shell.awk.program_file",
                "awk runs a program from a file, which cannot be checked",
            );
            return;
        }
        let program = parsed
            .values(&["--source"])
            .first()
            .map(|w| w.text.clone())
            .or_else(|| parsed.pos.first().map(|w| w.text.clone()))
            .unwrap_or_default();
        if awk_runs_commands(&program) {
            self.add(
                Class::Red,
                "shell.awk.exec",
                "the awk program runs commands, writes files or reads the environment (system(), pipes, >, ENVIRON); use a plain awk filter",
            );
            for lit in string_literals(&program) {
                if lit.contains(' ') {
                    self.critical_only(|a| a.payload(lit));
                }
            }
        }
        for w in parsed.pos.iter().skip(1) {
            self.path_read(w, "`awk`");
        }
    }

    pub(super) fn sed(&mut self, args: &[Word]) {
        let parsed = p(args, "efl", &["--expression", "--file", "--line-length"]);
        if !parsed.values(&["-f", "--file"]).is_empty() {
            self.add(
                Class::Red,
                "shell.sed.script_file",
                "sed runs a script from a file, which cannot be checked",
            );
        }
        let in_place = parsed
            .names()
            .any(|n| n == "-i" || n.starts_with("--in-place"))
            || parsed.opts.iter().any(|(n, _)| n == "-i");
        let mut scripts: Vec<String> = parsed
            .values(&["-e", "--expression"])
            .iter()
            .map(|w| w.text.clone())
            .collect();
        let mut files: &[Word] = &parsed.pos;
        if scripts.is_empty()
            && let Some((first, rest)) = parsed.pos.split_first()
        {
            scripts.push(first.text.clone());
            files = rest;
        }
        for script in &scripts {
            for effect in sed_effects(script) {
                match effect {
                    SedEffect::Exec => self.add(
                        Class::Red,
                        "shell.sed.exec",
                        "the sed script executes commands (the `e` command or `s///e`); use a plain substitution",
                    ),
                    SedEffect::Write(path) => self.path_write(&Word::lit(&path), "the sed `w` command"),
                    SedEffect::Read(path) => self.path_read(&Word::lit(&path), "the sed `r` command"),
                    SedEffect::Unknown => self.add(
                        Class::Red,
                        "shell.sed.unparsed",
                        "the sed script could not be understood; simplify it",
                    ),
                }
            }
        }
        for f in files {
            if in_place {
                self.path_write(f, "`sed -i`");
            } else {
                self.path_read(f, "`sed`");
            }
        }
    }

    pub(super) fn find(&mut self, args: &[Word]) {
        let mut i = 0;
        let mut starts = Vec::new();
        while i < args.len()
            && !args[i].text.starts_with('-')
            && args[i].text != "("
            && args[i].text != "!"
        {
            starts.push(args[i].clone());
            i += 1;
        }
        while i < args.len() {
            let t = args[i].text.as_str();
            match t {
                "-exec" | "-execdir" | "-ok" | "-okdir" => {
                    let begin = i + 1;
                    let mut end = begin;
                    while end < args.len() && args[end].text != ";" && args[end].text != "+" {
                        end += 1;
                    }
                    self.add(
                        Class::Yellow,
                        "shell.find.exec",
                        "find runs a command for every match",
                    );
                    let io = Io {
                        dynamic_args: true,
                        ..Io::default()
                    };
                    let inner = placeholders_dynamic(&args[begin..end], &["{}"]);
                    self.argv(&inner, &io);
                    i = end + 1;
                }
                "-delete" => {
                    self.add(
                        Class::Red,
                        "shell.find.delete",
                        "`find -delete` removes every match",
                    );
                    for s in starts.clone() {
                        self.path_delete(&s, true, "`find -delete`");
                    }
                    i += 1;
                }
                "-fprint" | "-fprint0" | "-fls" | "-fprintf" => {
                    if let Some(w) = args.get(i + 1) {
                        self.path_write(w, &format!("`find {t}`"));
                    }
                    i += if t == "-fprintf" { 3 } else { 2 };
                }
                _ => i += 1,
            }
        }
        for s in &starts {
            self.path_read(s, "`find`");
        }
    }

    pub(super) fn rm(&mut self, name: &str, args: &[Word], io: &Io) {
        let parsed = p(args, "", &[]);
        let recursive = name == "rm" && parsed.has(&["-r", "-R", "--recursive"]);
        if parsed.has(&["--no-preserve-root"]) {
            self.add(
                Class::Critical,
                "shell.rm.no_preserve_root",
                "`--no-preserve-root` exists only to delete the whole file system",
            );
        }
        if io.dynamic_args {
            self.add(
                Class::Red,
                "shell.rm.dynamic",
                format!("`{name}` deletes files chosen at run time; list the exact files instead"),
            );
        }
        if name == "shred" {
            self.add(
                Class::Red,
                "shell.shred",
                "`shred` destroys file contents irrecoverably",
            );
        }
        for w in &parsed.pos {
            if !recursive && w.glob && matches!(w.text.as_str(), "*" | ".*" | "~/*" | "/*" | "./*")
            {
                self.add(
                    Class::Red,
                    "shell.rm.everything",
                    format!(
                        "`{name} {}` deletes every file in a directory; name the files",
                        w.text
                    ),
                );
            }
            self.path_delete(w, recursive, &format!("`{name}`"));
        }
    }
}
