//! The ruleset generator against golden files, and the judge against listings that real nft
//! 1.0.6 printed (captured in `testdata/firewall/`, see its README).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/firewall")
        .join(name)
}

fn read(name: &str) -> String {
    let bytes = clawgate_protocol::io::read_capped(&testdata(name), 1024 * 1024).unwrap();
    String::from_utf8(bytes).unwrap()
}

fn read_path(path: &Path) -> String {
    String::from_utf8(clawgate_protocol::io::read_capped(path, 1024 * 1024).unwrap()).unwrap()
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn spec(name: &str, uid: u32, proxy: &[&str]) -> Spec {
    Spec::new(Agent::new(name, uid).unwrap(), &addrs(proxy)).unwrap()
}

/// The spec every captured listing was made from (the file `nobody-default.nft`, loaded).
fn captured_spec() -> Spec {
    spec("nobody", 65534, &["127.0.0.1:8787", "127.0.0.1:8788"])
}

#[test]
fn generated_files_match_the_golden_files() {
    let cases: [(&str, u32, &[&str], &str); 4] = [
        (
            "openclaw",
            1001,
            &["127.0.0.1:8787", "127.0.0.1:8788"],
            "openclaw-default.nft",
        ),
        (
            "nobody",
            65534,
            &["127.0.0.1:8787", "127.0.0.1:8788"],
            "nobody-default.nft",
        ),
        (
            "agent",
            2000,
            &["[::1]:9000", "127.0.0.2:9001", "[::1]:9000"],
            "v6-and-v4.nft",
        ),
        ("weird name\nx", 1234, &[], "no-listeners.nft"),
    ];
    for (name, uid, proxy, golden) in cases {
        let got = spec(name, uid, proxy).ruleset();
        // `CLAWGATE_BLESS=1 cargo test -p clawgate-provisioner` rewrites the golden files; review
        // the diff before committing it.
        if std::env::var_os("CLAWGATE_BLESS").is_some() {
            std::fs::write(testdata(golden), &got).unwrap();
            continue;
        }
        assert_eq!(got, read(golden), "{golden} differs; generated:\n{got}");
    }
}

#[test]
fn the_file_replaces_only_its_own_table() {
    let text = captured_spec().ruleset();
    let statements: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(statements[0], "table inet clawgate_egress {}");
    assert_eq!(statements[1], "delete table inet clawgate_egress");
    assert_eq!(statements[2], "table inet clawgate_egress {");
    assert!(!statements.iter().any(|s| s.contains("flush")), "{text}");
    // Exactly one table is touched.
    let tables: Vec<&&str> = statements.iter().filter(|s| s.contains("table ")).collect();
    assert_eq!(tables.len(), 3, "{text}");
}

#[test]
fn root_missing_users_and_remote_listeners_are_refused() {
    assert!(matches!(Agent::new("root", 0), Err(Error::RootAgent(_))));
    assert!(matches!(Agent::resolve("root"), Err(Error::RootAgent(_))));
    assert!(matches!(Agent::resolve("0"), Err(Error::RootAgent(_))));
    assert!(matches!(
        Agent::resolve("clawgate-no-such-user"),
        Err(Error::NoSuchUser(_))
    ));
    // A numeric uid must exist too (4000000000 is not in any passwd database here).
    assert!(matches!(
        Agent::resolve("4000000000"),
        Err(Error::NoSuchUser(_))
    ));
    let nobody = Agent::resolve("nobody").unwrap();
    assert_eq!((nobody.name(), nobody.uid()), ("nobody", 65534));
    assert_eq!(Agent::resolve("65534").unwrap(), nobody);
    for remote in ["0.0.0.0:8787", "10.0.0.1:8787", "[::]:8787"] {
        assert!(matches!(
            Spec::new(nobody.clone(), &addrs(&[remote])),
            Err(Error::NotLoopback(_))
        ));
    }
}

#[test]
fn the_loaded_table_is_judged_in_force_with_its_counters() {
    let state = captured_spec()
        .judge(&read("listing-in-force.json"))
        .unwrap();
    let LockState::InForce(counters) = state else {
        panic!("{state:?}");
    };
    assert_eq!(
        counters.into_iter().collect::<Vec<_>>(),
        [
            ("agent_allowed_proxy".to_owned(), 0),
            ("agent_rejected_other".to_owned(), 0),
            ("agent_rejected_tcp".to_owned(), 0),
        ]
    );
    // After traffic: the counters read back as nft printed them.
    let LockState::InForce(counters) = captured_spec()
        .judge(&read("listing-after-traffic.json"))
        .unwrap()
    else {
        panic!("not in force");
    };
    assert_eq!(counters["agent_allowed_proxy"], 2);
    assert_eq!(counters["agent_rejected_tcp"], 3);
    assert_eq!(counters["agent_rejected_other"], 1);
}

#[test]
fn the_same_table_for_another_user_or_other_ports_is_altered() {
    let listing = read("listing-in-force.json");
    let other_user = spec("agent", 1001, &["127.0.0.1:8787", "127.0.0.1:8788"]);
    let differences = altered(other_user.judge(&listing).unwrap());
    assert_eq!(
        differences,
        [
            "chain output rule 1: `meta skuid 65534 jump agent_out`, expected `meta skuid 1001 jump agent_out`"
        ]
    );
    let other_port = spec("nobody", 65534, &["127.0.0.1:8787", "127.0.0.1:9999"]);
    let differences = altered(other_port.judge(&listing).unwrap());
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(
        differences[0].starts_with("chain agent_out rule 4: `ct state established")
            && differences[0].contains("tcp dport 8788 accept`, expected")
            && differences[0].ends_with("tcp dport 9999 accept`"),
        "{differences:?}"
    );
}

fn altered(state: LockState) -> Vec<String> {
    match state {
        LockState::Altered(d) => d,
        other => panic!("expected Altered, got {other:?}"),
    }
}

/// Listings real nft printed after an administrator changed the table (see the README for the
/// command behind each), with what the judge must say.
#[test]
fn tables_changed_by_hand_are_altered() {
    let cases = [
        ("listing-dormant.json", "the table has flags"),
        (
            "listing-accept-inserted.json",
            "chain agent_out rule 1: `accept`, expected `ct state established,related ct direction reply oifname \"lo\" accept`",
        ),
        (
            "listing-agent-chain-flushed.json",
            "chain agent_out has 0 rules, expected 8",
        ),
        ("listing-extra-set.json", "unexpected set leak"),
        (
            "listing-counter-replaced.json",
            "counter name \"agent_rejected_tcp\" reject",
        ),
        (
            "listing-policy-drop.json",
            "chain output: hook is type filter hook output priority 0 policy drop",
        ),
        (
            "listing-jump-deleted.json",
            "chain output has 0 rules, expected 1",
        ),
    ];
    for (file, want) in cases {
        let differences = altered(captured_spec().judge(&read(file)).unwrap());
        assert!(
            differences.iter().any(|d| d.contains(want)),
            "{file}: {differences:#?}"
        );
    }
}

/// Edits the in-force listing the way a newer nft or a hand edit could, one change each.
#[test]
fn every_statement_we_do_not_generate_is_a_difference() {
    let base: Value = serde_json::from_str(&read("listing-in-force.json")).unwrap();
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit, &str); 9] = [
        (
            "anonymous counter",
            |v| {
                set_expr(
                    v,
                    "agent_out",
                    2,
                    4,
                    serde_json::json!({"counter": {"packets": 0, "bytes": 0}}),
                )
            },
            "<not generated by clawgate: {\"counter\"",
        ),
        (
            "other reject code",
            |v| {
                set_expr(
                    v,
                    "agent_out",
                    7,
                    1,
                    serde_json::json!({"reject": {"type": "icmpx", "expr": "port-unreachable"}}),
                )
            },
            "reject with icmpx port-unreachable",
        ),
        (
            "negated uid",
            |v| {
                set_expr(
                    v,
                    "output",
                    0,
                    0,
                    serde_json::json!({"match": {"op": "!=", "left": {"meta": {"key": "skuid"}}, "right": 65534}}),
                )
            },
            "\"op\":\"!=\"",
        ),
        (
            "drop instead of reject",
            |v| set_expr(v, "agent_out", 7, 1, serde_json::json!({"drop": null})),
            "{\"drop\":null}",
        ),
        (
            "other address",
            |v| {
                set_expr(
                    v,
                    "agent_out",
                    2,
                    2,
                    serde_json::json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.0.0.1"}}),
                )
            },
            "ip daddr 10.0.0.1",
        ),
        (
            "address set",
            |v| {
                set_expr(
                    v,
                    "agent_out",
                    2,
                    2,
                    serde_json::json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"set": ["127.0.0.1", "10.0.0.1"]}}}),
                )
            },
            "not generated by clawgate",
        ),
        (
            "a rule comment",
            |v| {
                let items = v["nftables"].as_array_mut().unwrap();
                let rule = items
                    .iter_mut()
                    .rev()
                    .find(|i| i.get("rule").is_some())
                    .unwrap();
                rule["rule"]["comment"] = Value::String("harmless?".into());
            },
            "comment",
        ),
        (
            "log at another level",
            |v| {
                set_expr(
                    v,
                    "agent_out",
                    5,
                    1,
                    serde_json::json!({"log": {"prefix": LOG_PREFIX, "level": "emerg"}}),
                )
            },
            "level emerg",
        ),
        (
            "a rule in a chain that is not listed",
            |v| {
                let items = v["nftables"].as_array_mut().unwrap();
                items.push(serde_json::json!({"rule": {"family": "inet", "table": "clawgate_egress", "chain": "ghost", "handle": 99, "expr": [{"accept": null}]}}));
            },
            "rule in unknown chain ghost",
        ),
    ];
    for (what, edit, want) in edits {
        let mut listing = base.clone();
        edit(&mut listing);
        let differences = altered(captured_spec().judge(&listing.to_string()).unwrap());
        assert!(
            differences.iter().any(|d| d.contains(want)),
            "{what}: {differences:#?}"
        );
    }
}

/// Replaces expression `expr` of the `nth` rule of `chain`.
fn set_expr(listing: &mut Value, chain: &str, nth: usize, expr: usize, new: Value) {
    let items = listing["nftables"].as_array_mut().unwrap();
    let rule = items
        .iter_mut()
        .filter(|i| i.get("rule").is_some_and(|r| r["chain"] == chain))
        .nth(nth)
        .unwrap();
    rule["rule"]["expr"][expr] = new;
}

#[test]
fn listings_that_are_not_ours_are_errors_not_verdicts() {
    for bad in [
        "",
        "not json",
        "{}",
        r#"{"nftables": 3}"#,
        r#"{"nftables": [{"metainfo": {}}]}"#,
        r#"{"nftables": [{"table": {"family": "inet", "name": "clawgate_egress"}}, {"counter": {"family": "inet", "table": "clawgate_egress", "name": "x"}}]}"#,
    ] {
        assert!(captured_spec().judge(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn written_files_are_atomic_0644_and_rewritten_only_when_different() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/clawgate/egress-lock.nft");
    let text = captured_spec().ruleset();
    assert!(write_file(&path, &text).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
    assert_eq!(read_path(&path), text);
    assert!(
        !write_file(&path, &text).unwrap(),
        "unchanged: not rewritten"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        write_file(&path, &text).unwrap(),
        "a wrong mode is repaired"
    );
    let other = spec("agent", 1001, &["127.0.0.1:8787"]).ruleset();
    assert!(write_file(&path, &other).unwrap());
    assert_eq!(read_path(&path), other);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("egress-lock.nft")]);
}

/// `nft` stand-ins: what a missing table, a failure and a hang look like to the caller.
#[test]
fn nft_outcomes_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = |name: &str, script: &str| -> Nft {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Nft::at(path).with_timeout(std::time::Duration::from_secs(2))
    };
    let missing = fake(
        "missing",
        "echo 'Error: No such file or directory' >&2; exit 1",
    );
    assert_eq!(
        inspect(&missing, &captured_spec()).unwrap(),
        LockState::Missing
    );
    let denied = fake(
        "denied",
        "echo 'Operation not permitted (you must be root)' >&2; exit 1",
    );
    let err = inspect(&denied, &captured_spec()).unwrap_err().to_string();
    assert!(err.contains("needs root"), "{err}");
    let hung = fake("hung", "exec sleep 30");
    let started = std::time::Instant::now();
    let err = inspect(&hung, &captured_spec()).unwrap_err();
    assert!(matches!(err, Error::NftTimeout { .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let listing = testdata("listing-in-force.json");
    let good = fake("good", &format!("cat '{}'", listing.display()));
    assert!(matches!(
        inspect(&good, &captured_spec()).unwrap(),
        LockState::InForce(_)
    ));
    // apply: the stand-in echoes stdin into a file, so the loaded text can be checked.
    let loaded = dir.path().join("loaded.nft");
    let applier = fake(
        "applier",
        &format!(
            "if [ \"$1\" = -f ]; then cat > '{}'; else cat '{}'; fi",
            loaded.display(),
            listing.display()
        ),
    );
    assert_eq!(
        apply(&applier, &captured_spec()).unwrap(),
        Applied::AlreadyInForce
    );
    assert!(!loaded.exists(), "an identical table is not reloaded");
}

#[test]
fn protocol_numbers_read_as_their_names_without_etc_protocols() {
    // A root without netbase (debootstrap minbase) has no /etc/protocols: nft 1.0.6 lists
    // `meta l4proto tcp` as the number 6. Found by tests/deb under systemd-nspawn.
    let mut listing: Value = serde_json::from_str(&read("listing-in-force.json")).unwrap();
    let numeric = |n: u64| serde_json::json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": n}});
    set_expr(&mut listing, "agent_out", 6, 0, numeric(6));
    let state = captured_spec().judge(&listing.to_string()).unwrap();
    assert!(matches!(state, LockState::InForce(_)), "{state:?}");
    set_expr(&mut listing, "agent_out", 6, 0, numeric(17));
    let differences = altered(captured_spec().judge(&listing.to_string()).unwrap());
    assert!(
        differences.iter().any(|d| d.contains("meta l4proto udp")),
        "{differences:#?}"
    );
}
