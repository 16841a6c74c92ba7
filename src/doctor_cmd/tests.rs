use std::path::Path;

use serde_json::json;

use super::*;

fn settings_in(dir: &Path, extra: &str) -> Settings {
    let text = format!(
        "state_dir = \"{}\"\n[hook]\nsocket = \"{}/hook.sock\"\n[egress]\nlisten = \"127.0.0.1:8787\"\n{extra}",
        dir.join("state").display(),
        dir.display()
    );
    clawgate_wrapper::config::parse(&text, Path::new("t.toml"))
        .unwrap()
        .validate(dir, &clawgate_wrapper::SystemAccounts)
        .unwrap()
}

fn passes(v: &Verdict) -> bool {
    v.is_ok()
}

#[test]
fn service_and_health() {
    let up = Ok(
        json!({"status": "ok", "egressLock": "held", "policyVersion": "abc", "pendingApprovals": 0}),
    );
    let down: Result<Value, String> = Err("no answer".into());
    assert!(passes(&service_verdict(false, &up)));
    assert!(!passes(&service_verdict(false, &down)));
    assert!(passes(&health_verdict(&up)));
    let lost = Ok(json!({"status": "critical", "egressLock": "lost"}));
    let (detail, fix) = health_verdict(&lost).unwrap_err();
    assert!(
        detail.contains("egress lock lost") && fix.contains("clawgate-egress-lock"),
        "{detail} / {fix}"
    );
    assert!(!passes(&health_verdict(&down)));
}

/// A config as `clawgate openclaw configure` writes it.
fn configured(dir: &Path, s: &Settings) -> Value {
    let plugin = dir.join("plugin");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::write(plugin.join("openclaw.plugin.json"), "{}").unwrap();
    std::fs::create_dir_all(&s.state_dir).unwrap();
    let setup = clawgate_wrapper::openclaw::PluginSetup {
        plugin_dir: plugin,
        socket: s.hook.path.clone(),
        approval_wait: s.approval_wait,
        proxy: Some(clawgate_wrapper::openclaw::ProxySetup {
            base: "http://127.0.0.1:8787".into(),
            agent: "main".into(),
            tokens_file: s.egress.tokens_file.clone(),
            routes: Vec::new(),
        }),
    };
    let mut doc = json!({});
    clawgate_wrapper::openclaw::apply(&mut doc, &setup).unwrap();
    doc
}

#[test]
fn plugin_present_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings_in(dir.path(), "");
    let doc = configured(dir.path(), &s);
    assert!(
        passes(&plugin_verdict(&doc, &s)),
        "{:?}",
        plugin_verdict(&doc, &s)
    );
    let mut missing = doc.clone();
    missing["plugins"]["entries"]
        .as_object_mut()
        .unwrap()
        .remove("clawgate");
    assert!(
        plugin_verdict(&missing, &s)
            .unwrap_err()
            .0
            .contains("missing")
    );
    let mut denied = doc.clone();
    denied["plugins"]["deny"] = json!(["clawgate"]);
    assert!(plugin_verdict(&denied, &s).unwrap_err().0.contains("deny"));
    let mut socket = doc.clone();
    socket["plugins"]["entries"]["clawgate"]["config"]["socketPath"] = json!("/tmp/other.sock");
    assert!(
        plugin_verdict(&socket, &s)
            .unwrap_err()
            .0
            .contains("socketPath")
    );
    let mut short = doc.clone();
    short["plugins"]["entries"]["clawgate"]["hooks"]["timeouts"]["before_tool_call"] = json!(1000);
    assert!(
        plugin_verdict(&short, &s)
            .unwrap_err()
            .0
            .contains("timeout")
    );
    let mut unloaded = doc;
    unloaded["plugins"]["load"]["paths"] = json!(["/nonexistent"]);
    assert!(
        plugin_verdict(&unloaded, &s)
            .unwrap_err()
            .0
            .contains("load.paths")
    );
}

#[test]
fn routes_through_the_proxy_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings_in(dir.path(), "");
    let doc = configured(dir.path(), &s);
    let tokens = s.egress.tokens_file.clone();
    let current =
        |k: &str| clawgate_wrapper::tokens::is_current(&tokens, "main", k).unwrap_or(false);
    assert!(
        passes(&routes_verdict(&doc, &s, &current)),
        "{:?}",
        routes_verdict(&doc, &s, &current)
    );
    let mut direct = doc.clone();
    direct["models"]["providers"]["openai"]["baseUrl"] = json!("https://api.openai.com/v1");
    let (detail, _) = routes_verdict(&direct, &s, &current).unwrap_err();
    assert!(
        detail.contains("openai (https://api.openai.com/v1)"),
        "{detail}"
    );
    // A token minted since (the config's is revoked).
    clawgate_wrapper::tokens::mint(&tokens, "main").unwrap();
    assert!(
        routes_verdict(&doc, &s, &current)
            .unwrap_err()
            .0
            .contains("refuse the token")
    );
    assert!(routes_verdict(&json!({}), &s, &current).is_err());
}

#[test]
fn ownership() {
    let p = Path::new("/x/openclaw.json");
    assert!(passes(&ownership_verdict(p, 0, 0o100640)));
    assert!(!passes(&ownership_verdict(p, 1000, 0o100640)));
    assert!(!passes(&ownership_verdict(p, 0, 0o100664)));
}

#[test]
fn hub_states() {
    let h = |v: Value| -> Result<Value, String> { Ok(v) };
    assert!(passes(&hub_verdict(false, &Err("down".into()))));
    assert!(!passes(&hub_verdict(true, &h(json!({"status": "ok"})))));
    assert!(passes(&hub_verdict(
        true,
        &h(
            json!({"hub": {"enrolled": true, "reachable": true, "hub": "https://hub.example", "circuit": "closed"}})
        )
    )));
    assert!(!passes(&hub_verdict(
        true,
        &h(json!({"hub": {"enrolled": true, "reachable": false, "lastError": "dns"}}))
    )));
    assert!(!passes(&hub_verdict(true, &Err("down".into()))));
}

#[test]
fn clock_and_disk() {
    let now = 1_800_000_000;
    assert!(passes(&clock_verdict(now, None)));
    assert!(passes(&clock_verdict(now, Some(("f".into(), now + 10)))));
    assert!(
        clock_verdict(1_000_000, None)
            .unwrap_err()
            .0
            .contains("before 2026")
    );
    assert!(
        clock_verdict(now, Some(("f".into(), now + 3600)))
            .unwrap_err()
            .0
            .contains("backwards")
    );
    let d = Path::new("/var/lib/clawgate");
    assert!(passes(&disk_verdict(d, 10 << 30, 20 << 30)));
    assert!(!passes(&disk_verdict(d, 10 << 20, 20 << 30)));
    let here = disk_check(Path::new("/nonexistent/dir"));
    assert!(
        here.as_ref()
            .is_ok_and(|d| d.contains("free of") && d.ends_with("on /")),
        "{here:?}"
    );
}

#[test]
fn policy_loads_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let up: Result<Value, String> = Ok(json!({"status": "ok"}));
    let s = settings_in(dir.path(), "");
    assert!(passes(&policy_check(&s, &up)));
    let stale = Ok(json!({"bundle": {"version": 7, "expired": true}}));
    assert!(
        policy_check(&s, &stale)
            .unwrap_err()
            .0
            .contains("not fresh")
    );
    let bad = dir.path().join("policy");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("broken.toml"), "[[rule]]\nnot valid").unwrap();
    let s = settings_in(
        dir.path(),
        &format!("[policy]\ndir = \"{}\"\n", bad.display()),
    );
    assert!(
        policy_check(&s, &up)
            .unwrap_err()
            .0
            .contains("does not load")
    );
}

#[test]
fn vault_opens_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings_in(dir.path(), "");
    let down: Result<Value, String> = Err("down".into());
    assert!(vault_check(&s, &down).unwrap_err().0.contains("no vault"));
    std::fs::create_dir_all(&s.state_dir).unwrap();
    clawgate_wrapper::daemon::open_vault(&s).unwrap();
    assert!(
        passes(&vault_check(&s, &down)),
        "{:?}",
        vault_check(&s, &down)
    );
    // Another key: refused.
    let VaultKey::DefaultKeyFile(key) = &s.vault_key else {
        panic!()
    };
    std::fs::remove_file(key).unwrap();
    clawgate_vault::generate_key_file(key).unwrap();
    assert!(!passes(&vault_check(&s, &down)));
}

#[test]
fn no_lock_configured_fails() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings_in(dir.path(), "");
    assert!(lock_check(&s).unwrap_err().0.contains("no [egress_lock]"));
}
