//! curl, wget, httpie, ssh, scp, rsync and raw sockets.

use super::*;

impl Analyzer<'_> {
    pub(super) fn url_arg(&mut self, raw: &str, tool: &str) {
        self.network = true;
        if raw.contains(SECRET_PLACEHOLDER) {
            self.add(
                Class::Red,
                "shell.secret_in_url",
                format!("{tool}: a SECRET_REF inside a URL ends up in logs and history; send it in a header"),
            );
        }
        // A URL with run-time parts: judge the static prefix, which must include the host.
        let raw = match raw.find(['$', '`']) {
            Some(cut) => {
                let prefix = &raw[..cut];
                let after_scheme = prefix.find("://").map_or(prefix, |i| &prefix[i + 3..]);
                if !after_scheme.contains(['/', '?', '#']) {
                    self.opaque_network = true;
                    self.add(
                        Class::Red,
                        "url.dynamic_host",
                        format!(
                            "{tool}: the host of {raw} is computed at run time; write it literally"
                        ),
                    );
                    return;
                }
                prefix
            }
            None => raw,
        };
        match url::parse(raw) {
            Err(url::BadUrl(why)) => {
                self.opaque_network = true;
                self.add(
                    Class::Red,
                    "url.unparseable",
                    format!("{tool}: the URL {raw} could not be understood ({why})"),
                );
            }
            Ok(u) => {
                self.note_host(&u.host);
                if u.userinfo {
                    self.add(
                        Class::Red,
                        "url.userinfo",
                        format!(
                            "{tool}: the URL hides its real host {} behind user@ info",
                            u.host
                        ),
                    );
                }
                if u.punycode {
                    self.add(
                        Class::Red,
                        "url.punycode",
                        format!(
                            "{tool}: host {} uses punycode labels that can imitate another site",
                            u.host
                        ),
                    );
                }
                if !matches!(
                    u.scheme.as_str(),
                    "http" | "https" | "ftp" | "ftps" | "sftp" | "scp" | "ws" | "wss"
                ) {
                    self.add(
                        Class::Red,
                        "url.scheme",
                        format!("{tool}: the {}: scheme is not plain web traffic", u.scheme),
                    );
                }
                match u.kind {
                    url::HostKind::Loopback => {
                        if url::is_self_endpoint(raw, &u) {
                            self.add(
                                Class::Critical,
                                "shell.network.self_approval",
                                "the agent may not call Clawgate's or OpenClaw's local admin or approval endpoints",
                            );
                        } else {
                            self.add(
                                Class::Yellow,
                                "shell.network.loopback",
                                format!("{tool} talks to a local service on {}", u.host),
                            );
                        }
                    }
                    url::HostKind::Public | url::HostKind::PublicIp => self.add(
                        Class::YellowExternal,
                        "shell.network.fetch",
                        format!("{tool} contacts {} over the network", u.host),
                    ),
                    _ => {
                        if let Some((class, rule, reason)) = url::host_finding(&u) {
                            self.add(class, rule, reason);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn upload_value(&mut self, tool: &str, opt: &str, value: &Word, io_pipe: bool) {
        let text = value.text.as_str();
        let file = if opt == "-T" || opt == "--upload-file" {
            Some(text)
        } else if let Some(f) = text.strip_prefix('@') {
            Some(f)
        } else if opt == "-F" || opt.starts_with("--form") {
            text.split_once("=@")
                .or_else(|| text.split_once("=<"))
                .map(|(_, f)| f.split(';').next().unwrap_or(f))
        } else {
            None
        };
        match file {
            Some("-") | Some("") => {
                let class = if io_pipe {
                    Class::Red
                } else {
                    Class::YellowExternal
                };
                self.add(
                    class,
                    "shell.network.upload_stdin",
                    format!("{tool} uploads data piped into it"),
                );
            }
            Some(f) => {
                let w = Word {
                    text: f.to_owned(),
                    ..value.clone()
                };
                self.path_read(&w, &format!("{tool} {opt}"));
                self.add(
                    Class::Red,
                    "shell.network.upload_file",
                    format!("{tool} uploads the local file {f}; send only the data that is needed, or ask the owner"),
                );
            }
            None => self.add(
                Class::YellowExternal,
                "shell.network.send",
                format!("{tool} sends data to a remote host"),
            ),
        }
    }

    pub(super) fn curl(&mut self, args: &[Word], io: &Io) {
        let parsed = p(
            args,
            "dFTohKHuXerAbcxUwDEyYzmCtQPq",
            &[
                "--data",
                "--data-ascii",
                "--data-binary",
                "--data-raw",
                "--data-urlencode",
                "--json",
                "--form",
                "--form-string",
                "--upload-file",
                "--output",
                "--config",
                "--header",
                "--user",
                "--request",
                "--referer",
                "--user-agent",
                "--cookie",
                "--cookie-jar",
                "--proxy",
                "--proxy-user",
                "--url",
                "--write-out",
                "--dump-header",
                "--unix-socket",
                "--abstract-unix-socket",
                "--range",
                "--max-time",
                "--connect-timeout",
                "--retry",
                "--retry-delay",
                "--retry-max-time",
                "--continue-at",
                "--cert",
                "--key",
                "--cacert",
                "--capath",
                "--resolve",
                "--connect-to",
                "--interface",
                "--limit-rate",
                "--time-cond",
                "--trace",
                "--trace-ascii",
                "--stderr",
                "--output-dir",
                "--quote",
                "--mail-from",
                "--mail-rcpt",
                "--telnet-option",
                "--proto",
                "--proto-redir",
                "--variable",
                "--url-query",
                "--ftp-port",
                "--oauth2-bearer",
                "--aws-sigv4",
                "--preproxy",
                "--proxy-header",
                "--doh-url",
                "--dns-servers",
                "--max-filesize",
                "--expect100-timeout",
                "--happy-eyeballs-timeout-ms",
                "--keepalive-time",
                "--local-port",
                "--netrc-file",
                "--pinnedpubkey",
                "--socks4",
                "--socks4a",
                "--socks5",
                "--socks5-hostname",
                "--tls-max",
                "--ciphers",
                "--engine",
                "--krb",
                "--login-options",
                "--sasl-authzid",
                "--service-name",
                "--parallel-max",
                "--rate",
                "--etag-save",
                "--etag-compare",
                "--hsts",
                "--alt-svc",
            ],
        );
        let pipe = io.stdin == Stdin::Pipe;
        for (opt, value) in parsed.opts.clone() {
            let Some(value) = value else { continue };
            match opt.as_str() {
                "-d" | "-F" | "-T" => self.upload_value("curl", &opt, &value, pipe),
                o if o.starts_with("--data")
                    || o.starts_with("--form")
                    || o == "--json"
                    || o == "--upload-file" =>
                {
                    self.upload_value("curl", o, &value, pipe)
                }
                "-o" | "--output" | "-D" | "--dump-header" | "-c" | "--cookie-jar" | "--trace"
                | "--trace-ascii" | "--stderr" | "--output-dir" | "--etag-save"
                    if value.text != "-" =>
                {
                    if opt == "-o" || opt == "--output" {
                        self.note_download(&value.text);
                    }
                    self.path_write(&value, &format!("curl {opt}"));
                }
                "-K" | "--config" | "--netrc-file" => {
                    self.path_read(&value, &format!("curl {opt}"));
                    self.add(Class::Red, "shell.curl.config", "curl reads options from a file, which can hide uploads; pass options directly");
                }
                "--unix-socket" | "--abstract-unix-socket" => {
                    if matches!(
                        self.kind_of(&value),
                        PathKind::Clawgate | PathKind::Openclaw
                    ) {
                        self.add(
                            Class::Critical,
                            "shell.network.self_socket",
                            "the agent may not talk to Clawgate's or OpenClaw's sockets directly",
                        );
                    } else {
                        self.add(
                            Class::Red,
                            "shell.curl.unix_socket",
                            "curl talks to a local Unix socket",
                        );
                    }
                }
                "--resolve" | "--connect-to" | "-x" | "--proxy" | "--preproxy" | "--doh-url"
                | "--dns-servers" => {
                    self.add(
                        Class::Red,
                        "shell.curl.redirect_host",
                        "this option sends the request somewhere other than the URL says",
                    );
                }
                "--url" => {
                    let t = value.text.clone();
                    self.url_arg(&t, "curl");
                }
                _ => {}
            }
        }
        let urls: Vec<String> = parsed.pos.iter().map(|w| w.text.clone()).collect();
        for u in &urls {
            self.url_arg(u, "curl");
        }
        self.network = true;
        if urls.is_empty() {
            self.opaque_network = true;
        }
        if urls.is_empty() && parsed.values(&["--url"]).is_empty() {
            self.add(
                Class::YellowExternal,
                "shell.network.fetch",
                "curl contacts a remote host",
            );
        }
    }

    pub(super) fn wget(&mut self, args: &[Word]) {
        let parsed = p(
            args,
            "OoaPiUTtwQlBeA",
            &[
                "--output-document",
                "--output-file",
                "--append-output",
                "--directory-prefix",
                "--input-file",
                "--post-data",
                "--post-file",
                "--body-data",
                "--body-file",
                "--method",
                "--header",
                "--execute",
                "--user",
                "--password",
                "--user-agent",
                "--load-cookies",
                "--save-cookies",
                "--timeout",
                "--tries",
                "--wait",
                "--quota",
                "--level",
                "--config",
                "--base",
                "--bind-address",
                "--use-askpass",
                "--accept",
                "--reject",
                "--referer",
            ],
        );
        for (opt, value) in parsed.opts.clone() {
            let Some(value) = value else { continue };
            match opt.as_str() {
                "--post-file" | "--body-file" => {
                    self.path_read(&value, &format!("wget {opt}"));
                    self.add(
                        Class::Red,
                        "shell.network.upload_file",
                        format!("wget uploads the local file {}", value.text),
                    );
                }
                "--post-data" | "--body-data" => self.add(
                    Class::YellowExternal,
                    "shell.network.send",
                    "wget sends data to a remote host",
                ),
                "-O" | "--output-document" | "-o" | "--output-file" | "-a" | "--append-output"
                | "-P" | "--directory-prefix" | "--save-cookies"
                    if value.text != "-" =>
                {
                    if opt == "-O" || opt == "--output-document" {
                        self.note_download(&value.text);
                    }
                    self.path_write(&value, &format!("wget {opt}"));
                }
                "-e" | "--execute" | "--use-askpass" | "--config" => {
                    self.add(
                        Class::Red,
                        "shell.wget.execute",
                        "this wget option runs configuration commands or programs",
                    );
                }
                "-i" | "--input-file" => self.path_read(&value, "wget -i"),
                _ => {}
            }
        }
        let urls: Vec<String> = parsed.pos.iter().map(|w| w.text.clone()).collect();
        for u in &urls {
            self.url_arg(u, "wget");
        }
        self.network = true;
        if urls.is_empty() {
            self.opaque_network = true;
        }
        if urls.is_empty() {
            self.add(
                Class::YellowExternal,
                "shell.network.fetch",
                "wget contacts a remote host",
            );
        }
    }

    pub(super) fn httpie(&mut self, name: &str, args: &[Word]) {
        let parsed = p(
            args,
            "aA",
            &["--auth", "--auth-type", "--session", "--output", "--proxy"],
        );
        let mut url_done = false;
        for w in parsed.pos.clone() {
            let t = w.text.as_str();
            let is_method = t.chars().all(|c| c.is_ascii_uppercase());
            if is_method {
                continue;
            }
            if !url_done {
                let t = if t.starts_with(':') {
                    format!("localhost{t}")
                } else {
                    t.to_owned()
                };
                self.url_arg(&t, name);
                url_done = true;
                continue;
            }
            if let Some((_, f)) = t.split_once("=@").or_else(|| t.split_once("@")) {
                let file = Word {
                    text: f.to_owned(),
                    ..w.clone()
                };
                self.path_read(&file, name);
                self.add(
                    Class::Red,
                    "shell.network.upload_file",
                    format!("{name} uploads the local file {f}"),
                );
            }
        }
        for v in parsed.values(&["--output"]) {
            self.path_write(v, name);
        }
        self.network_unnamed();
        self.add(
            Class::YellowExternal,
            "shell.network.fetch",
            format!("{name} contacts a remote host"),
        );
    }

    pub(super) fn ssh_options(&mut self, values: Vec<&Word>) {
        for o in values {
            let key = o
                .text
                .split(['=', ' '])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if matches!(
                key.as_str(),
                "proxycommand"
                    | "localcommand"
                    | "permitlocalcommand"
                    | "knownhostscommand"
                    | "remotecommand"
                    | "proxyusefdpass"
                    | "sendenv"
                    | "setenv"
            ) {
                self.add(
                    Class::Red,
                    "shell.ssh.command_option",
                    format!("the ssh option {key} runs a local command or leaks the environment; remove it"),
                );
                // The command it runs is judged like any other command.
                if matches!(
                    key.as_str(),
                    "proxycommand" | "localcommand" | "knownhostscommand" | "remotecommand"
                ) {
                    let command = o
                        .text
                        .split_once(['=', ' '])
                        .map(|(_, v)| v.trim().to_owned())
                        .unwrap_or_default();
                    if o.dynamic {
                        self.dynamic_code(
                            "shell.dynamic_payload",
                            format!("the ssh option {key} runs a command computed at run time"),
                        );
                    } else if !command.is_empty() {
                        self.payload(&command);
                    }
                }
            }
        }
    }

    pub(super) fn ssh(&mut self, args: &[Word]) {
        self.network_unnamed();
        let parsed = p(args, "bcDEeFIiJLlmOopQRSWwB", &[]);
        self.ssh_options(parsed.values(&["-o"]));
        if parsed.has(&["-F"]) {
            self.add(
                Class::Red,
                "shell.ssh.config",
                "ssh uses a custom config file, which can run commands",
            );
        }
        if parsed.has(&["-L", "-R", "-D", "-W", "-w"]) {
            self.add(
                Class::Red,
                "shell.ssh.tunnel",
                "opens a port forward or tunnel that bypasses the egress proxy",
            );
        }
        let host = parsed
            .pos
            .first()
            .map(|w| w.text.clone())
            .unwrap_or_default();
        self.add(
            Class::YellowExternal,
            "shell.ssh",
            format!("runs a session on the remote host {host}"),
        );
    }

    pub(super) fn scp(&mut self, name: &str, args: &[Word]) {
        self.network_unnamed();
        let parsed = p(args, "cFiloPSJDbX", &[]);
        self.ssh_options(parsed.values(&["-o"]));
        if parsed.has(&["-S", "-F"]) {
            self.add(
                Class::Red,
                "shell.ssh.program",
                format!("{name} uses a custom ssh program or config"),
            );
        }
        let pos = parsed.pos.clone();
        for (i, w) in pos.iter().enumerate() {
            if is_remote_spec(&w.text) {
                continue;
            }
            if i + 1 == pos.len() && pos.len() > 1 {
                self.path_write(w, &format!("`{name}`"));
            } else {
                self.path_read(w, &format!("`{name}`"));
            }
        }
        self.add(
            Class::YellowExternal,
            "shell.network.copy",
            format!("`{name}` copies files to or from another host"),
        );
    }

    pub(super) fn rsync(&mut self, args: &[Word]) {
        let parsed = p(
            args,
            "eTfM",
            &[
                "--rsh",
                "--rsync-path",
                "--exclude",
                "--include",
                "--filter",
                "--exclude-from",
                "--include-from",
                "--files-from",
                "--password-file",
                "--log-file",
                "--temp-dir",
                "--partial-dir",
                "--backup-dir",
                "--compare-dest",
                "--link-dest",
                "--copy-dest",
                "--chmod",
                "--chown",
                "--usermap",
                "--groupmap",
                "--timeout",
                "--contimeout",
                "--port",
                "--bwlimit",
                "--max-size",
                "--min-size",
                "--remote-option",
                "--out-format",
                "--info",
                "--debug",
                "--suffix",
                "--sockopts",
                "--outbuf",
                "--iconv",
                "--checksum-choice",
                "--compress-choice",
                "--compress-level",
                "--address",
                "--protocol",
                "--max-delete",
            ],
        );
        for rsh in parsed.values(&["-e", "--rsh"]) {
            let words: Vec<Word> = rsh.text.split_whitespace().map(Word::lit).collect();
            let is_ssh = words
                .first()
                .is_some_and(|w| w.text.rsplit('/').next() == Some("ssh"));
            if is_ssh && !rsh.dynamic {
                let sp = p(&words[1..], "bcDEeFIiJLlmOopQRSWwB", &[]);
                self.ssh_options(sp.values(&["-o"]));
                if sp.has(&["-F"]) {
                    self.add(
                        Class::Red,
                        "shell.ssh.config",
                        "the rsync ssh command uses a custom config file",
                    );
                }
            } else {
                self.add(
                    Class::Red,
                    "shell.rsync.rsh",
                    "rsync -e runs a custom remote shell program; use plain ssh",
                );
            }
        }
        if parsed.has(&["--rsync-path", "-M", "--remote-option"]) {
            self.add(
                Class::Red,
                "shell.rsync.remote_command",
                "this option runs a custom command on the remote side",
            );
        }
        let pos = parsed.pos.clone();
        let remote = pos.iter().any(|w| is_remote_spec(&w.text));
        for (i, w) in pos.iter().enumerate() {
            if is_remote_spec(&w.text) {
                continue;
            }
            if i + 1 == pos.len() && pos.len() > 1 {
                self.path_write(w, "`rsync`");
            } else {
                self.path_read(w, "`rsync`");
            }
        }
        if parsed
            .names()
            .any(|n| n.starts_with("--delete") || n == "--remove-source-files")
        {
            self.add(
                Class::Red,
                "shell.rsync.delete",
                "rsync --delete removes files at the destination",
            );
        }
        if remote {
            self.network_unnamed();
            self.add(
                Class::YellowExternal,
                "shell.network.copy",
                "rsync copies files to or from another host",
            );
        } else {
            self.add(
                Class::Yellow,
                "shell.rsync.local",
                "rsync copies files locally",
            );
        }
    }

    pub(super) fn raw_net(&mut self, name: &str, args: &[Word]) {
        self.network_unnamed();
        let joined = join(args).to_ascii_lowercase();
        let exec_flag = args.iter().any(|w| {
            matches!(
                w.text.as_str(),
                "-e" | "-c" | "--exec" | "--sh-exec" | "--lua-exec"
            ) || (w.text.starts_with("-e") && name != "socat")
        });
        if exec_flag || joined.contains("exec:") || joined.contains("system:") {
            self.add(
                Class::Critical,
                "shell.network.remote_shell",
                format!("`{name}` wires a program to a network connection (a remote shell)"),
            );
        }
        if joined.contains("clawgate") || joined.contains("openclaw") {
            self.add(
                Class::Critical,
                "shell.network.self_socket",
                "the agent may not talk to Clawgate's or OpenClaw's sockets directly",
            );
        }
        self.add(
            Class::Red,
            "shell.network.raw",
            format!("`{name}` opens raw network connections that bypass protocol checks; use curl for HTTP"),
        );
    }
}
