//! `clawgate provision secrets|import-env|openclaw|all` and `clawgate doctor`, driven as the
//! real binary: a secrets file left readable, a run killed mid-step and re-run, a re-run on a
//! provisioned host, and planted secrets that must never show. Steps that change ownership or
//! load nftables need root; `all` runs in a network namespace it creates (unshare --net), so the
//! host's ruleset is never touched.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{clawgate, random_value, run, stderr, stdout};
use crate::serve::Daemon;

/// A host in a temporary directory: the daemon configuration, its state, OpenClaw's config.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let h = Host { dir };
        std::fs::write(
            h.config(),
            format!(
                "# the operator's comment\nstate_dir = \"{}\"\n[hook]\nsocket = \"{}/hook.sock\"\n[admin]\nlisten = \"off\"\n[egress]\nlisten = \"127.0.0.1:18787\"\nconnect_listen = \"127.0.0.1:18788\"\n",
                h.state().display(),
                h.dir.path().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(h.config(), std::fs::Permissions::from_mode(0o640)).unwrap();
        h
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn config(&self) -> PathBuf {
        self.path("clawgate.toml")
    }
    fn state(&self) -> PathBuf {
        self.path("state")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = clawgate(&self.state());
        cmd.args(args);
        cmd
    }
    fn step(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd(args);
        cmd.arg("--config").arg(self.config());
        run(cmd, "")
    }
    fn vault_list(&self) -> Value {
        let out = run(self.cmd(&["vault", "list", "--json"]), "");
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
    fn secrets_file(&self, name: &str, body: &str, mode: u32) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

fn both(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

fn secrets_body(anthropic: &str, stripe: &str) -> String {
    format!(
        r#"{{"format":"clawgate-secrets/1","secrets":[
            {{"name":"provider.anthropic","value":"{anthropic}"}},
            {{"name":"stripe","value":"{stripe}","tools":["web_fetch"],"hosts":["api.stripe.com"]}}]}}"#
    )
}

/// Whether the tests run as root (the effective uid, from /proc).
fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap()
}

#[test]
fn a_secrets_file_left_readable_is_refused_and_left_alone() {
    let h = Host::new();
    let planted = random_value();
    let body = secrets_body(&planted, &random_value());
    let file = h.secrets_file("secrets.json", &body, 0o644);
    let out = h.step(&["provision", "secrets", "--from", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stdout(&out).contains("secrets: FAILED") && both(&out).contains("mode 0644"),
        "{}",
        both(&out)
    );
    assert!(both(&out).contains("rotate"), "{}", both(&out));
    assert!(!both(&out).contains(&planted));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), body, "left alone");
    assert!(
        !h.state().exists(),
        "nothing imported, not even a state directory"
    );
}

#[test]
fn secrets_import_once_then_rerun_is_already_done() {
    let h = Host::new();
    let (a, s) = (random_value(), random_value());
    let file = h.secrets_file("secrets.json", &secrets_body(&a, &s), 0o600);
    let arg = file.to_str().unwrap();
    let first = h.step(&["provision", "secrets", "--from", arg]);
    assert!(first.status.success(), "{}", both(&first));
    assert!(
        stdout(&first).contains("secrets: done: 2 secret(s) written"),
        "{}",
        both(&first)
    );
    assert!(!file.exists(), "destroyed");
    let list = h.vault_list();
    let text = list.to_string();
    assert!(
        text.contains("provider.anthropic") && text.contains("stripe"),
        "{text}"
    );
    // The provider key without a scope gets the proxy's.
    let anthropic = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "provider.anthropic")
        .unwrap();
    assert_eq!(
        anthropic["scope"]["tools"][0], "clawgate:egress",
        "{anthropic}"
    );
    assert_eq!(
        anthropic["scope"]["hosts"][0], "api.anthropic.com",
        "{anthropic}"
    );

    // Re-run: the file is gone and the journal says it was consumed.
    let again = h.step(&["provision", "secrets", "--from", arg]);
    assert!(again.status.success(), "{}", both(&again));
    assert!(
        stdout(&again).contains("secrets: already done:") && stdout(&again).contains("earlier run"),
        "{}",
        both(&again)
    );
    // The platform writes the same values again: nothing new in the vault.
    let versions = |l: &Value| l.to_string();
    let before = versions(&h.vault_list());
    h.secrets_file("secrets.json", &secrets_body(&a, &s), 0o600);
    let same = h.step(&["provision", "secrets", "--from", arg]);
    assert!(same.status.success(), "{}", both(&same));
    assert!(
        stdout(&same).contains("0 secret(s) written, 2 already in the vault unchanged"),
        "{}",
        both(&same)
    );
    assert_eq!(versions(&h.vault_list()), before, "no new version");
    // A file that never existed here is an error, not "done".
    let never = h.step(&[
        "provision",
        "secrets",
        "--from",
        "/nonexistent/secrets.json",
    ]);
    assert_eq!(never.status.code(), Some(1));
    assert!(
        stdout(&never).contains("no record of importing it"),
        "{}",
        both(&never)
    );
    for out in [&first, &again, &same, &never] {
        assert!(
            !both(out).contains(&a) && !both(out).contains(&s),
            "{}",
            both(out)
        );
    }
}

#[test]
fn secrets_killed_after_the_import_is_completed_by_the_rerun() {
    let h = Host::new();
    let a = random_value();
    let file = h.secrets_file("secrets.json", &secrets_body(&a, &random_value()), 0o600);
    let arg = file.to_str().unwrap();
    let mut cmd = h.cmd(&["provision", "secrets", "--from", arg]);
    cmd.arg("--config")
        .arg(h.config())
        .env("CLAWGATE_PROVISION_ABORT_AT", "secrets.imported");
    let killed = run(cmd, "");
    assert!(!killed.status.success(), "{}", both(&killed));
    assert!(file.exists(), "killed before the file was destroyed");
    let rerun = h.step(&["provision", "secrets", "--from", arg]);
    assert!(rerun.status.success(), "{}", both(&rerun));
    assert!(
        stdout(&rerun).contains("an earlier run stopped during this step"),
        "{}",
        both(&rerun)
    );
    assert!(
        stdout(&rerun).contains("0 secret(s) written, 2 already in the vault unchanged"),
        "{}",
        both(&rerun)
    );
    assert!(!file.exists());
    assert!(!both(&killed).contains(&a) && !both(&rerun).contains(&a));
}

#[test]
fn import_env_scopes_provider_keys_and_consumes_the_file() {
    let h = Host::new();
    let (k, other) = (random_value(), random_value());
    let env = h.path(".env");
    std::fs::write(
        &env,
        format!("ANTHROPIC_API_KEY={k}\nMY_TOKEN=\"{other}\"\nEMPTY=\n"),
    )
    .unwrap();
    let arg = env.to_str().unwrap();
    let out = h.step(&["provision", "import-env", arg]);
    assert!(out.status.success(), "{}", both(&out));
    let text = stdout(&out);
    assert!(
        text.contains("import-env: done: 2 secret(s) written")
            && text.contains("skipped empty EMPTY"),
        "{text}"
    );
    assert!(!env.exists());
    let list = h.vault_list().to_string();
    assert!(
        list.contains("\"ANTHROPIC_API_KEY\"") && list.contains("clawgate:egress"),
        "{list}"
    );
    let again = h.step(&["provision", "import-env", arg]);
    assert!(again.status.success(), "{}", both(&again));
    assert!(
        stdout(&again).contains("import-env: already done"),
        "{}",
        both(&again)
    );
    for o in [&out, &again] {
        assert!(!both(o).contains(&k) && !both(o).contains(&other));
    }
    // A symlink is refused.
    let target = h.path("real.env");
    std::fs::write(&target, "A=1\n").unwrap();
    let link = h.path("link.env");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let refused = h.step(&["provision", "import-env", link.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(target.exists());
}

/// OpenClaw's config with a real provider key in it (it must end up nowhere readable).
fn openclaw_config(h: &Host, key: &str) -> PathBuf {
    let p = h.path("openclaw.json");
    std::fs::write(
        &p,
        format!(
            r#"{{"models":{{"providers":{{"anthropic":{{"baseUrl":"https://api.anthropic.com","apiKey":"{key}","models":[]}}}}}}}}"#
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

fn plugin_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/wrapper/openclaw-plugin").to_owned()
}

fn openclaw_args(oc: &Path) -> Vec<String> {
    vec![
        "provision".into(),
        "openclaw".into(),
        "--openclaw-config".into(),
        oc.display().to_string(),
        "--agent-user".into(),
        "nobody".into(),
        // nobody's primary group: already a member, so no usermod on the test host.
        "--hook-group".into(),
        "nogroup".into(),
        "--plugin-dir".into(),
        plugin_dir(),
    ]
}

#[test]
fn openclaw_step_configures_protects_and_reruns_as_already_done() {
    if !root() {
        eprintln!("skipped: needs root (chown of OpenClaw's config)");
        return;
    }
    let h = Host::new();
    let key = random_value();
    let oc = openclaw_config(&h, &key);
    let args = openclaw_args(&oc);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = h.step(&args);
    assert!(first.status.success(), "{}", both(&first));
    assert!(
        stdout(&first).contains("openclaw: done:"),
        "{}",
        both(&first)
    );
    let config = std::fs::read_to_string(h.config()).unwrap();
    assert!(config.contains("allowed_users = [\"nobody\"]"), "{config}");
    assert!(config.contains("# the operator's comment"), "{config}");
    assert_eq!(
        std::fs::metadata(h.config()).unwrap().mode() & 0o7777,
        0o640,
        "the daemon config keeps its mode"
    );
    let meta = std::fs::metadata(&oc).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 65534, 0o640)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&oc).unwrap()).unwrap();
    assert_eq!(doc["plugins"]["entries"]["clawgate"]["enabled"], true);
    assert!(
        doc["models"]["providers"]["anthropic"]["baseUrl"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:18787/anthropic"),
        "{doc}"
    );
    // The backup holds the real key: root's alone.
    let backup = std::fs::read_dir(h.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("clawgate-backup"))
        .unwrap();
    assert_eq!(std::fs::metadata(&backup).unwrap().mode() & 0o7777, 0o600);

    let again = h.step(&args);
    assert!(again.status.success(), "{}", both(&again));
    assert!(
        stdout(&again).contains("openclaw: already done:"),
        "{}",
        both(&again)
    );
    // Refused before any change: root as the agent, an unknown user.
    for (user, why) in [("root", "is root"), ("clawgate-no-such-user", "no user")] {
        let mut bad = args.clone();
        bad[5] = user;
        let out = h.step(&bad);
        assert_eq!(out.status.code(), Some(64), "{}", both(&out));
        assert!(both(&out).contains(why), "{}", both(&out));
    }
    for o in [&first, &again] {
        assert!(!both(o).contains(&key), "{}", both(o));
    }
}

/// The provisioning file for `all`.
fn provisioning_file(h: &Host, secrets: &Path, env: &Path, oc: &Path) -> PathBuf {
    let p = h.path("provision.toml");
    std::fs::write(
        &p,
        format!(
            "clawgate_config = \"{}\"\n[agent]\nuser = \"nobody\"\n[secrets]\nfrom = \"{}\"\n[import_env]\npath = \"{}\"\n[openclaw]\nconfig = \"{}\"\nplugin_dir = \"{}\"\nhook_group = \"nogroup\"\n",
            h.config().display(),
            secrets.display(),
            env.display(),
            oc.display(),
            plugin_dir()
        ),
    )
    .unwrap();
    p
}

/// `clawgate provision all` in a fresh network namespace (the nft table lands there).
fn all_in_netns(h: &Host, file: &Path, abort_at: Option<&str>) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--"])
        .arg(crate::common::BIN)
        .args(["provision", "all", "--config"])
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CLAWGATE_STATE_DIR", h.state());
    if let Some(point) = abort_at {
        cmd.env("CLAWGATE_PROVISION_ABORT_AT", point);
    }
    run(cmd, "")
}

#[test]
fn provision_all_killed_midway_completes_and_reruns_as_already_done() {
    if !root() || !Path::new("/usr/sbin/nft").exists() {
        eprintln!("skipped: needs root and nftables (unshare --net, nft)");
        return;
    }
    let h = Host::new();
    let (a, k) = (random_value(), random_value());
    let secrets = h.secrets_file("secrets.json", &secrets_body(&a, &random_value()), 0o600);
    let env = h.path(".env");
    std::fs::write(&env, format!("OPENAI_API_KEY={k}\n")).unwrap();
    let oc = openclaw_config(&h, &random_value());
    let file = provisioning_file(&h, &secrets, &env, &oc);

    // Killed in the firewall step, after [egress_lock] was written.
    let killed = all_in_netns(&h, &file, Some("firewall.daemon-config"));
    assert!(!killed.status.success(), "{}", both(&killed));
    let text = stdout(&killed);
    for step in ["secrets: done", "import-env: done", "openclaw: done"] {
        assert!(text.contains(step), "{step}: {}", both(&killed));
    }
    let config = std::fs::read_to_string(h.config()).unwrap();
    assert!(
        config.contains("[egress_lock]\nagent_user = \"nobody\"\nprobe = \"status-file\""),
        "{config}"
    );

    // The re-run (another fresh namespace: the table is not there) completes the firewall step.
    let rerun = all_in_netns(&h, &file, None);
    assert!(rerun.status.success(), "{}", both(&rerun));
    let text = stdout(&rerun);
    assert!(text.contains("secrets: already done"), "{}", both(&rerun));
    assert!(
        text.contains("import-env: already done"),
        "{}",
        both(&rerun)
    );
    assert!(text.contains("openclaw: already done"), "{}", both(&rerun));
    assert!(
        text.contains("firewall: note: an earlier run stopped during this step"),
        "{}",
        both(&rerun)
    );
    assert!(
        text.contains("firewall: done:") && text.contains("loaded and verified"),
        "{}",
        both(&rerun)
    );
    assert!(
        text.contains("provision all: 4 step(s) complete"),
        "{}",
        both(&rerun)
    );
    let journal = std::fs::read_to_string(h.state().join("provision-journal.json")).unwrap();
    assert!(!journal.contains("\"started\""), "{journal}");
    // With a [hub] table, enroll runs last as `clawgate enroll` (tested against the dev Hub in
    // hubwire.rs/devhub.rs); a token file that is not one fails the step, after the others
    // report already done, and says why.
    let token = h.secrets_file("hub-token.json", "{}", 0o600);
    let mut body = std::fs::read_to_string(&file).unwrap();
    body.push_str(&format!(
        "[hub]\nurl = \"https://hub.example.invalid\"\ntoken_file = \"{}\"\n",
        token.display()
    ));
    std::fs::write(&file, body).unwrap();
    let hub = all_in_netns(&h, &file, None);
    assert_eq!(hub.status.code(), Some(1), "{}", both(&hub));
    let text = stdout(&hub);
    // A fresh namespace each run: the table is loaded again.
    assert!(
        text.contains("openclaw: already done") && text.contains("firewall: done:"),
        "{text}"
    );
    assert!(
        text.contains("enroll: FAILED: clawgate enroll failed"),
        "{text}"
    );
    assert!(text.contains("stopped at step 5 of 5 (enroll)"), "{text}");
    for o in [&killed, &rerun, &hub] {
        assert!(
            !both(o).contains(&a) && !both(o).contains(&k),
            "{}",
            both(o)
        );
    }
    assert!(!journal.contains(&a) && !journal.contains(&k));
}

#[test]
fn provision_all_refuses_bad_input_before_any_change() {
    let h = Host::new();
    let before = std::fs::read_to_string(h.config()).unwrap();
    let secrets = h.secrets_file("secrets.json", &secrets_body("x", "y"), 0o600);
    let oc = openclaw_config(&h, "k");
    let file = provisioning_file(&h, &secrets, &h.path(".env"), &oc);
    let text = std::fs::read_to_string(&file).unwrap();
    let cases = [
        (
            text.replace("user = \"nobody\"", "user = \"clawgate-no-such-user\""),
            "no user",
        ),
        (
            text.replace("user = \"nobody\"", "user = \"root\""),
            "is root",
        ),
        (format!("{text}bogus = 1\n"), "unknown field"),
        (
            text.replace("[import_env]", "[import_env]\nwhat = 1"),
            "unknown field",
        ),
    ];
    for (body, why) in cases {
        std::fs::write(&file, &body).unwrap();
        let mut cmd = h.cmd(&["provision", "all", "--config"]);
        cmd.arg(&file);
        let out = run(cmd, "");
        assert_eq!(out.status.code(), Some(64), "{why}: {}", both(&out));
        assert!(both(&out).contains(why), "{why}: {}", both(&out));
        assert!(secrets.exists(), "{why}");
        assert_eq!(
            std::fs::read_to_string(h.config()).unwrap(),
            before,
            "{why}"
        );
        assert!(!h.state().join("provision-journal.json").exists(), "{why}");
    }
}

fn doctor_json(config: &Path, state: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let mut cmd = clawgate(state);
    cmd.args(["doctor", "--json", "--config"])
        .arg(config)
        .args(extra);
    let out = run(cmd, "");
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", both(&out)));
    (out.status.code(), v)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {v}"))
}

#[test]
fn doctor_fails_with_fixes_on_an_unprovisioned_host() {
    let h = Host::new();
    let (code, v) = doctor_json(&h.config(), &h.state(), &[]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(check(&v, "configuration")["ok"], true);
    for name in [
        "service",
        "daemon health",
        "openclaw plugin",
        "egress lock",
        "vault",
    ] {
        let c = check(&v, name);
        assert_eq!(c["ok"], false, "{name}: {c}");
        assert!(
            c["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{name}: {c}"
        );
    }
    for name in ["policy", "hub", "clock", "disk space"] {
        assert_eq!(check(&v, name)["ok"], true, "{name}: {v}");
    }
    // A broken configuration is one failed check with its fix.
    let bad = h.path("bad.toml");
    std::fs::write(&bad, "[hook\n").unwrap();
    let (code, v) = doctor_json(&bad, &h.state(), &[]);
    assert_eq!(code, Some(1));
    assert_eq!(check(&v, "configuration")["ok"], false, "{v}");
}

#[test]
fn doctor_passes_what_a_running_daemon_provides() {
    let d = Daemon::start("");
    let (code, v) = doctor_json(&d.config, &d.state(), &[]);
    assert_eq!(
        code,
        Some(1),
        "the lock and OpenClaw are not provisioned: {v}"
    );
    for name in [
        "configuration",
        "service",
        "daemon health",
        "policy",
        "vault",
        "clock",
        "disk space",
        "hub",
    ] {
        assert_eq!(check(&v, name)["ok"], true, "{name}: {v}");
    }
    assert_eq!(check(&v, "egress lock")["ok"], false, "{v}");
    if root() {
        // The hook socket is asked as the agent's user: the daemon (run as root here) lets root
        // in and refuses nobody.
        let (_, v) = doctor_json(&d.config, &d.state(), &["--agent-user", "root"]);
        assert_eq!(check(&v, "hook socket")["ok"], true, "{v}");
        let (_, v) = doctor_json(&d.config, &d.state(), &["--agent-user", "nobody"]);
        let hook = check(&v, "hook socket");
        assert_eq!(hook["ok"], false, "{v}");
        assert!(
            hook["detail"].as_str().unwrap().starts_with("as nobody:"),
            "{hook}"
        );
        assert!(
            hook["fix"].as_str().unwrap().contains("clawgate-hook"),
            "{hook}"
        );
    }
    // Human output: one PASS/FAIL line per check and the fix under each failure.
    let mut cmd = clawgate(&d.state());
    cmd.args(["doctor", "--config"]).arg(&d.config);
    let out = run(cmd, "");
    let text = stdout(&out);
    assert!(
        text.contains("PASS service") && text.contains("FAIL egress lock"),
        "{text}"
    );
    assert!(text.contains("fix: clawgate provision firewall"), "{text}");
}

#[test]
fn a_credential_keyed_vault_is_refused_with_the_way_to_run_the_step() {
    let h = Host::new();
    let mut config = std::fs::read_to_string(h.config()).unwrap();
    config.push_str("[vault]\ncredential = \"clawgate-vault-key\"\n");
    std::fs::write(h.config(), config).unwrap();
    let planted = random_value();
    let file = h.secrets_file("secrets.json", &secrets_body(&planted, "y"), 0o600);
    let out = h.step(&["provision", "secrets", "--from", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        both(&out).contains("systemd-run -P --wait -p LoadCredentialEncrypted=clawgate-vault-key"),
        "{}",
        both(&out)
    );
    assert!(file.exists(), "left in place");
    assert!(
        !h.state().join("provision-journal.json").exists(),
        "nothing journaled"
    );
    assert!(!both(&out).contains(&planted));
}
