//! `[redact] capture_unknown`: unknown secrets in tool results captured into the vault, used
//! by reference, kept to their agent, capped; off by default.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{clawgate, ok, random_value, stdout};
use crate::egress::{
    FakeAnthropic, free_port, mint_token, post_messages, put_loopback_anthropic_key,
};
use crate::serve::{Daemon, audit_text, blocked, event, verify_audit};

/// A GitHub token in the `github-pat` rule's format, random each run.
fn github_token() -> String {
    let raw: String = random_value()
        .chars()
        .chain(random_value().chars())
        .filter(char::is_ascii_alphanumeric)
        .take(36)
        .collect();
    assert_eq!(raw.len(), 36);
    format!("ghp_{raw}")
}

/// What the model is shown of a tool result whose text is `text`, for `agent`.
fn tool_result(d: &Daemon, agent: &str, text: &str) -> String {
    let (status, r) = d.hook(
        "/v1/tool_result",
        &json!({"event": {"toolName": "exec", "toolCallId": "r1",
                          "result": {"content": [{"type": "text", "text": text}],
                                     "details": {"status": "completed"}}},
                "ctx": {"agentId": agent}}),
    );
    assert_eq!(status, 200, "{r}");
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `clawgate vault ARGS` on the daemon's state directory.
fn vault(d: &Daemon, args: &[&str]) -> std::process::Output {
    let mut cmd = clawgate(&d.state());
    cmd.arg("vault").args(args);
    cmd.output().unwrap()
}

fn vault_list(d: &Daemon) -> Vec<Value> {
    let out = vault(d, &["list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn wait_for_secret(d: &Daemon, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !vault_list(d).iter().any(|r| r["name"] == name) {
        assert!(
            Instant::now() < deadline,
            "{name} never reached the vault:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one `SECRET_REF(captured_…)` name in `text`.
fn captured_ref(text: &str) -> String {
    let start = text
        .find("SECRET_REF(captured_")
        .unwrap_or_else(|| panic!("no capture in {text}"));
    let rest = &text[start + "SECRET_REF(".len()..];
    rest[..rest.find(')').unwrap()].to_owned()
}

fn decide_as(d: &Daemon, agent: &str, params: Value, call_id: &str) -> Value {
    let mut body = event("exec", params, call_id);
    body["ctx"]["agentId"] = json!(agent);
    let (status, r) = d.hook("/v1/before_tool_call", &body);
    assert_eq!(status, 200, "{r}");
    r
}

#[test]
fn capture_is_off_by_default() {
    let d = Daemon::start("");
    let token = github_token();
    let shown = tool_result(&d, "main", &format!("GITHUB_TOKEN={token}\n"));
    assert!(
        shown.starts_with("GITHUB_TOKEN=[REDACTED:github-pat:"),
        "{shown}"
    );
    assert!(vault_list(&d).is_empty());
}

#[test]
fn a_captured_secret_is_stored_once_used_by_reference_and_kept_to_its_agent() {
    let d = Daemon::start(
        "[policy]\ntier = 3\n[redact]\ncapture_unknown = \"rules\"\ncapture_tools = [\"exec\"]\n",
    );
    let token = github_token();
    let text = format!("$ gh auth token\n{token}\n");
    let shown = tool_result(&d, "main", &text);
    let name = captured_ref(&shown);
    assert!(name.starts_with("captured_github-pat_"), "{name}");
    assert_eq!(shown, format!("$ gh auth token\nSECRET_REF({name})\n"));
    wait_for_secret(&d, &name);

    // The same value again: the same reference (now from the vault detector), one entry.
    assert_eq!(tool_result(&d, "main", &text), shown);
    let listed = vault_list(&d);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["scope"]["tools"], json!(["exec"]));
    assert_eq!(listed[0]["captured"]["agent"], "main");
    assert_eq!(listed[0]["captured"]["rule"], "github-pat");
    let table = stdout(&vault(&d, &["list"]));
    assert!(table.contains("captured"), "{table}");

    // Used by reference: resolved into exec's environment for the agent it came from.
    let run = decide_as(
        &d,
        "main",
        json!({"command": format!("grep -c SECRET_REF({name}) README.md")}),
        "c1",
    );
    let env = run["params"]["env"]
        .as_object()
        .unwrap_or_else(|| panic!("{run}"));
    assert!(env.values().any(|v| v == token.as_str()), "{run}");
    // Another agent never saw the value, and does not get it.
    let other = decide_as(
        &d,
        "other",
        json!({"command": format!("grep -c SECRET_REF({name}) README.md")}),
        "c2",
    );
    assert!(blocked(&other).contains("another agent"), "{other}");
    // A reference whose write was lost names no secret: refused, never run with the literal.
    let lost = decide_as(
        &d,
        "main",
        json!({"command": "grep -c SECRET_REF(captured_github-pat_0000000000) README.md"}),
        "c3",
    );
    assert!(blocked(&lost).contains("no secret named"), "{lost}");

    // Audited (name, rule, agent; no value).
    let audit = audit_text(&d);
    assert!(
        audit.contains("secret.captured") && audit.contains(&name),
        "{audit}"
    );
    verify_audit(&d);

    // `vault rm` works on it; seen again, it is captured again under the same name.
    let mut rm = clawgate(&d.state());
    rm.args(["vault", "rm", &name]);
    ok(rm, "");
    assert!(vault_list(&d).is_empty());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // The first sighting after the removal may still be answered from the old state.
        assert_eq!(tool_result(&d, "main", &text), shown);
        if vault_list(&d).iter().any(|r| r["name"] == name.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not captured again:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The value is nowhere but the vault: audit, log, listings, the daemon's database.
    let everything = [
        audit_text(&d),
        d.log(),
        stdout(&vault(&d, &["list", "--json"])),
        stdout(&vault(&d, &["log", "--json"])),
        other.to_string(),
        lost.to_string(),
    ];
    for (i, text) in everything.iter().enumerate() {
        assert!(!text.contains(&token), "the value leaked into output {i}");
    }
    for entry in std::fs::read_dir(d.state()).unwrap() {
        let path = entry.unwrap().path();
        // The vault holds it (encrypted; the vault's own tests grep its bytes); sockets and
        // directories hold nothing.
        let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        if path.to_string_lossy().contains("vault.db") || !regular {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the value is in {}",
            path.display()
        );
    }
}

#[test]
fn beyond_the_cap_unknown_secrets_keep_their_placeholder() {
    let d = Daemon::start("[redact]\ncapture_unknown = \"rules\"\ncapture_max = 1\n");
    let first = tool_result(&d, "main", &format!("a={}\n", github_token()));
    wait_for_secret(&d, &captured_ref(&first));
    for _ in 0..3 {
        let shown = tool_result(&d, "main", &format!("b={}\n", github_token()));
        assert!(shown.starts_with("b=[REDACTED:github-pat:"), "{shown}");
    }
    assert_eq!(vault_list(&d).len(), 1);
    assert_eq!(d.log().matches("cap reached").count(), 1, "{}", d.log());
}

#[test]
fn an_unknown_secret_in_an_llm_request_is_captured_by_the_proxy() {
    let fake = FakeAnthropic::start();
    let port = free_port();
    let d = Daemon::start(&format!(
        "[egress]\nlisten = \"127.0.0.1:{port}\"\nconnect_listen = \"off\"\n[egress.upstreams]\nanthropic = \"http://127.0.0.1:{}\"\n[redact]\ncapture_unknown = \"rules\"\n",
        fake.port
    ));
    put_loopback_anthropic_key(&d);
    let agent_token = mint_token(&d, "main");
    let gh = github_token();
    let body = json!({"model": "claude-test-1", "max_tokens": 16,
                      "messages": [{"role": "user", "content": format!("use my token {gh} please")}]})
    .to_string();
    let send = || {
        let (status, head, _) = post_messages(port, &agent_token, &body);
        assert_eq!(status, 200, "{head}\n{}", d.log());
        String::from_utf8(fake.seen().last().unwrap().body.clone()).unwrap()
    };
    let first = send();
    assert!(!first.contains(&gh), "{first}");
    let name = captured_ref(&first);
    assert!(name.starts_with("captured_github-pat_"), "{first}");
    wait_for_secret(&d, &name);
    let listed = vault_list(&d);
    let row = listed.iter().find(|r| r["name"] == name.as_str()).unwrap();
    assert_eq!(row["captured"]["source"], "egress");
    assert_eq!(row["captured"]["agent"], "main");
    // After the vault has it (a rebuilt redactor), the provider sees the same bytes: the
    // prompt cache holds. The hook server agrees on the reference.
    assert_eq!(send(), first);
    let shown = tool_result(&d, "main", &format!("{gh}\n"));
    assert_eq!(shown, format!("SECRET_REF({name})\n"));
    assert_eq!(vault_list(&d).len(), 2, "the key and one capture");
    for text in [audit_text(&d), d.log()] {
        assert!(!text.contains(&gh), "the value leaked");
    }
}

#[test]
fn a_failed_vault_write_leaves_placeholders_and_an_unresolvable_reference() {
    let d = Daemon::start("[policy]\ntier = 3\n[redact]\ncapture_unknown = \"rules\"\n");
    // Rekey the vault behind the daemon's back: the daemon, still holding the old master key,
    // has its next vault write refused.
    let new_key = d.dir.path().join("new.key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut raw = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut raw)
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&new_key)
            .unwrap();
        f.write_all(&raw).unwrap();
    }
    let mut rekey = clawgate(&d.state());
    rekey
        .args(["vault", "rekey", "--new-key-file"])
        .arg(&new_key);
    ok(rekey, "");

    let (a, b) = (github_token(), github_token());
    let first = tool_result(&d, "main", &format!("{a}\n"));
    // Decided before the write: a reference, which the failed write leaves unresolvable.
    let name = captured_ref(&first);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !audit_text(&d).contains("secret.capture_failed") {
        assert!(
            Instant::now() < deadline,
            "no failure audited:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Now every unknown secret keeps its placeholder, the same value included; never raw.
    for v in [&a, &b] {
        let shown = tool_result(&d, "main", &format!("{v}\n"));
        assert!(shown.starts_with("[REDACTED:github-pat:"), "{shown}");
    }
    let lost = decide_as(
        &d,
        "main",
        json!({"command": format!("grep -c SECRET_REF({name}) README.md")}),
        "f1",
    );
    assert!(blocked(&lost).contains("no secret named"), "{lost}");
    assert!(
        d.log().contains("Capturing secrets into the vault failed"),
        "{}",
        d.log()
    );
    for text in [audit_text(&d), d.log(), lost.to_string()] {
        assert!(!text.contains(&a) && !text.contains(&b), "a value leaked");
    }
}
