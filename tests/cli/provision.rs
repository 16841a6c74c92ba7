//! `clawgate provision firewall` without root: what it prints, writes and refuses. Loading the
//! table for real (root, network namespaces) is `tests/egresslock/run.sh`.

use crate::common::{clawgate, new_state, ok, run, stderr, stdout};

#[test]
fn the_ruleset_follows_the_config_and_names_the_uid() {
    let (dir, state) = new_state();
    let config = dir.path().join("clawgate.toml");
    std::fs::write(
        &config,
        "[egress]\nlisten = \"127.0.0.1:9100\"\nconnect_listen = \"[::1]:9101\"\n",
    )
    .unwrap();
    let mut cmd = clawgate(&state);
    cmd.args([
        "provision",
        "firewall",
        "--agent-user",
        "nobody",
        "--print",
        "--config",
    ])
    .arg(&config);
    let text = stdout(&ok(cmd, ""));
    assert!(text.contains("meta skuid 65534 jump agent_out"), "{text}");
    assert!(
        text.contains("ct state new oifname \"lo\" ip daddr 127.0.0.1 tcp dport 9100 counter name \"agent_allowed_proxy\" accept"),
        "{text}"
    );
    assert!(
        text.contains("ct state new oifname \"lo\" ip6 daddr ::1 tcp dport 9101 counter name \"agent_allowed_proxy\" accept"),
        "{text}"
    );
    assert!(!text.contains("8787"), "{text}");
    // --print writes nothing and loads nothing.
    assert!(!state.exists());
}

#[test]
fn written_files_are_idempotent_and_refusals_are_usage_errors() {
    let (dir, state) = new_state();
    let file = dir.path().join("lock/egress-lock.nft");
    let write = |user: &str| {
        let mut cmd = clawgate(&state);
        cmd.args(["provision", "firewall", "--agent-user", user, "--write"])
            .arg(&file);
        run(cmd, "")
    };
    let first = write("nobody");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("egress-lock.nft: written"),
        "{}",
        stdout(&first)
    );
    // No [egress_lock] table in the (default) configuration: the operator is told.
    assert!(
        stdout(&first).contains("agent_user = \"nobody\""),
        "{}",
        stdout(&first)
    );
    let second = write("65534");
    assert!(
        stdout(&second).contains("egress-lock.nft: unchanged"),
        "{}",
        stdout(&second)
    );
    let before = std::fs::read_to_string(&file).unwrap();
    for (user, why) in [
        ("root", "refusing to lock the egress of `root`"),
        ("0", "refusing"),
        ("clawgate-no-such-user", "no user `clawgate-no-such-user`"),
    ] {
        let out = write(user);
        assert_eq!(out.status.code(), Some(64), "{user}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{user}: {}", stderr(&out));
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "refusals change nothing"
    );
}

#[test]
fn an_agent_user_other_than_the_configured_one_is_refused() {
    let (dir, state) = new_state();
    let config = dir.path().join("clawgate.toml");
    std::fs::write(&config, "[egress_lock]\nagent_user = \"nobody\"\n").unwrap();
    let mut cmd = clawgate(&state);
    cmd.args([
        "provision",
        "firewall",
        "--agent-user",
        "daemon",
        "--print",
        "--config",
    ])
    .arg(&config);
    let out = run(cmd, "");
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("egress_lock.agent_user `nobody` is uid 65534"),
        "{}",
        stderr(&out)
    );
}
