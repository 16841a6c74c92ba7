//! `clawgate keygen`, `policy sign`, `policy verify` as an operator uses them.

use std::os::unix::fs::PermissionsExt;

use crate::common::{BIN, ok, run, stderr, stdout};

fn clawgate(a: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.env_clear().env("CLAWGATE_LOG", "warn").args(a);
    c
}

#[test]
fn keygen_sign_verify_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let policy = dir.path().join("policy");
    std::fs::create_dir_all(policy.join("default")).unwrap();
    std::fs::write(policy.join("default/exec.toml"), "# rules\n").unwrap();

    let out = ok(
        clawgate(&["keygen", "--key-id", "hub-1", "--secret-key", &p("hub.key")]),
        "",
    );
    assert_eq!(
        std::fs::metadata(p("hub.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    std::fs::write(p("trust.toml"), stdout(&out)).unwrap();
    assert!(
        !run(
            clawgate(&["keygen", "--key-id", "hub-1", "--secret-key", &p("hub.key")]),
            ""
        )
        .status
        .success(),
        "never overwrites"
    );

    let sign = |version: &str, out: &str| {
        clawgate(&[
            "policy",
            "sign",
            policy.to_str().unwrap(),
            "--secret-key",
            &p("hub.key"),
            "--key-id",
            "hub-1",
            "--tenant",
            "t1",
            "--version",
            version,
            "--tier",
            "2",
            "--out",
            &p(out),
        ])
    };
    ok(sign("7", "b7.json"), "");
    let verified = ok(
        clawgate(&[
            "policy",
            "verify",
            &p("b7.json"),
            "--trust",
            &p("trust.toml"),
            "--tenant",
            "t1",
            "--high-water",
            "6",
            "--json",
        ]),
        "",
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&verified)).unwrap();
    assert_eq!(v["manifest"]["version"], 7);
    assert_eq!(v["manifest"]["autonomy_tier"], 2);
    assert!(v["manifest"]["files"]["default/exec.toml"].is_string());

    let (b7, trust) = (p("b7.json"), p("trust.toml"));
    for (args, want) in [
        (vec!["--tenant", "t2"], "tenant"),
        (vec!["--tenant", "t1", "--high-water", "7"], "not newer"),
        (vec!["--tenant", "t1", "--now", "4102444800"], "expired"),
    ] {
        let mut a = vec!["policy", "verify", b7.as_str(), "--trust", trust.as_str()];
        a.extend(args);
        let out = run(clawgate(&a), "");
        assert_eq!(out.status.code(), Some(1), "{a:?}");
        assert!(stderr(&out).contains(want), "{a:?}: {}", stderr(&out));
    }
    let tampered =
        std::fs::read_to_string(p("b7.json"))
            .unwrap()
            .replacen("IyBydWxlcwo=", "IyBydWxlcyEK", 1);
    std::fs::write(p("tampered.json"), tampered).unwrap();
    let out = run(
        clawgate(&[
            "policy",
            "verify",
            &p("tampered.json"),
            "--trust",
            &p("trust.toml"),
            "--tenant",
            "t1",
        ]),
        "",
    );
    assert!(
        stderr(&out).contains("does not match its SHA-256"),
        "{}",
        stderr(&out)
    );
}
