//! The vault commands as a user meets them.

use std::os::unix::fs::PermissionsExt;

use crate::common::{clawgate, new_state, ok, run, stderr, stdout};

fn cmd(state: &std::path::Path, a: &[&str]) -> std::process::Command {
    let mut c = clawgate(state);
    c.env("CLAWGATE_LOG", "warn").args(a);
    c
}

#[test]
fn put_get_list_rm_on_the_embedded_default() {
    let (_dir, state) = new_state();
    let out = ok(cmd(&state, &["vault", "init"]), "");
    assert!(stderr(&out).contains("generated its key file"));
    let key_mode = std::fs::metadata(state.join("vault.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let dir_mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!((key_mode, dir_mode), (0o600, 0o700));

    ok(
        cmd(
            &state,
            &[
                "vault",
                "put",
                "stripe",
                "--tool",
                "web_fetch",
                "--host",
                "api.stripe.com",
            ],
        ),
        "sk_live_1\n",
    );
    ok(cmd(&state, &["vault", "put", "stripe"]), "sk_live_2\n"); // keeps the scope
    let out = ok(cmd(&state, &["vault", "get", "stripe", "--reveal"]), "");
    assert_eq!(stdout(&out), "sk_live_2\n");
    let out = ok(
        cmd(
            &state,
            &["vault", "get", "stripe", "--version", "1", "--reveal"],
        ),
        "",
    );
    assert_eq!(stdout(&out), "sk_live_1\n");

    // Not a terminal and no --reveal: refused with EX_USAGE, nothing printed.
    let out = run(cmd(&state, &["vault", "get", "stripe"]), "");
    assert_eq!(out.status.code(), Some(64));
    assert!(stdout(&out).is_empty());

    let list: serde_json::Value =
        serde_json::from_str(&stdout(&ok(cmd(&state, &["vault", "list", "--json"]), ""))).unwrap();
    assert_eq!(list[0]["name"], "stripe");
    assert_eq!(list[0]["version"], 2);
    assert_eq!(list[0]["scope"]["hosts"][0], "api.stripe.com");

    ok(cmd(&state, &["vault", "rm", "stripe"]), "");
    let out = run(cmd(&state, &["vault", "get", "stripe", "--reveal"]), "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no secret named stripe"));

    let out = run(cmd(&state, &["vault", "init"]), "");
    assert!(!out.status.success() && stderr(&out).contains("already exists"));
    let log = stdout(&ok(cmd(&state, &["vault", "log"]), ""));
    for action in ["init", "put", "reveal", "remove"] {
        assert!(log.contains(action), "{action} missing from\n{log}");
    }
}

#[test]
fn bad_input_is_a_usage_error_and_changes_nothing() {
    let (_dir, state) = new_state();
    ok(cmd(&state, &["vault", "init"]), "");
    for (a, input) in [
        (vec!["vault", "put", "bad name"], "v"),
        (vec!["vault", "put", "ok", "--host", "bücher.example"], "v"),
        (vec!["vault", "put", "ok", "--tool", "rm -rf"], "v"),
        (vec!["vault", "rotate", "--batch-size", "0"], ""),
        (vec!["vault", "nonsense"], ""),
    ] {
        let out = run(cmd(&state, &a), input);
        assert_eq!(out.status.code(), Some(64), "{a:?}: {}", stderr(&out));
    }
    let out = run(cmd(&state, &["vault", "put", "empty"]), "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("empty"));
    assert_eq!(
        stdout(&ok(cmd(&state, &["vault", "list", "--json"]), "")).trim(),
        "[]"
    );
}

#[test]
fn import_env_moves_secrets_and_destroys_the_file_only_after_commit() {
    let (dir, state) = new_state();
    ok(cmd(&state, &["vault", "init"]), "");
    let env = dir.path().join(".env");

    // A bad file: error with the line number, file untouched, vault unchanged.
    std::fs::write(&env, "OPENAI_API_KEY=sk-1\nOPENAI_API_KEY=sk-2\n").unwrap();
    let out = run(
        cmd(&state, &["vault", "import-env", env.to_str().unwrap()]),
        "",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "OPENAI_API_KEY=sk-1\nOPENAI_API_KEY=sk-2\n"
    );

    // Vault cannot be opened (wrong key): file untouched.
    std::fs::write(&env, "OPENAI_API_KEY=sk-1\nexport GH_TOKEN='ghp_x'\n").unwrap();
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, [7u8; 32]).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(
        cmd(
            &state,
            &[
                "vault",
                "import-env",
                env.to_str().unwrap(),
                "--key-file",
                wrong.to_str().unwrap(),
            ],
        ),
        "",
    );
    assert!(
        !out.status.success() && stderr(&out).contains("wrong vault key"),
        "{}",
        stderr(&out)
    );
    assert!(env.exists());

    // Symlinks are refused.
    let link = dir.path().join("link.env");
    std::os::unix::fs::symlink(&env, &link).unwrap();
    assert!(
        !run(
            cmd(&state, &["vault", "import-env", link.to_str().unwrap()]),
            ""
        )
        .status
        .success()
    );
    assert!(env.exists());

    let out = ok(
        cmd(
            &state,
            &[
                "vault",
                "import-env",
                env.to_str().unwrap(),
                "--tool",
                "exec",
            ],
        ),
        "",
    );
    assert!(
        stderr(&out).contains("imported 2 secret(s)"),
        "{}",
        stderr(&out)
    );
    assert!(!env.exists(), "plaintext file removed");
    assert_eq!(
        stdout(&ok(
            cmd(&state, &["vault", "get", "GH_TOKEN", "--reveal"]),
            ""
        )),
        "ghp_x\n"
    );
}

#[test]
fn passphrase_vaults_and_rekey() {
    let (dir, state) = new_state();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let p = pass.to_str().unwrap();
    let weak = [
        "--kdf-memory-mib",
        "19",
        "--kdf-iterations",
        "2",
        "--kdf-parallelism",
        "1",
    ];
    let out = run(
        cmd(
            &state,
            &[&[
                "vault",
                "init",
                "--passphrase-file",
                p,
                "--kdf-memory-mib",
                "8",
            ][..]]
            .concat(),
        ),
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(64),
        "below the Argon2id floor: {}",
        stderr(&out)
    );
    ok(
        cmd(
            &state,
            &[&["vault", "init", "--passphrase-file", p][..], &weak].concat(),
        ),
        "",
    );
    ok(
        cmd(
            &state,
            &[
                "vault",
                "put",
                "a",
                "--tool",
                "exec",
                "--passphrase-file",
                p,
            ],
        ),
        "va",
    );
    let out = run(cmd(&state, &["vault", "list"]), "");
    assert!(
        stderr(&out).contains("unlocked by a passphrase"),
        "{}",
        stderr(&out)
    );

    let newkey = dir.path().join("new.key");
    std::fs::write(&newkey, "ab".repeat(32)).unwrap();
    std::fs::set_permissions(&newkey, std::fs::Permissions::from_mode(0o600)).unwrap();
    let nk = newkey.to_str().unwrap();
    ok(
        cmd(
            &state,
            &[
                "vault",
                "rekey",
                "--passphrase-file",
                p,
                "--new-key-file",
                nk,
            ],
        ),
        "",
    );
    assert!(
        !run(cmd(&state, &["vault", "list", "--passphrase-file", p]), "")
            .status
            .success()
    );
    assert_eq!(
        stdout(&ok(
            cmd(&state, &["vault", "get", "a", "--reveal", "--key-file", nk]),
            ""
        )),
        "va\n"
    );

    // The same key as a systemd credential.
    let mut c = cmd(
        &state,
        &["vault", "verify", "--json", "--credential", "new.key"],
    );
    c.env("CREDENTIALS_DIRECTORY", dir.path());
    let report: serde_json::Value = serde_json::from_str(&stdout(&ok(c, ""))).unwrap();
    assert_eq!(report["secrets"], 1);
}

#[test]
fn state_dir_defaults_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(crate::common::BIN);
    c.env_clear()
        .env("HOME", dir.path())
        .args(["vault", "init"]);
    assert!(run(c, "").status.success());
    assert!(dir.path().join(".local/state/clawgate/vault.db").exists());

    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(cmd(&open, &["vault", "init"]), "");
    assert!(
        !out.status.success() && stderr(&out).contains("chmod 700"),
        "{}",
        stderr(&out)
    );
}
