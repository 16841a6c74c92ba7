//! Plant secrets, drive every vault command with tracing at `trace`, and grep everything the
//! process printed: no value may appear except where the user explicitly asked (`get --reveal`).

use std::os::unix::fs::PermissionsExt;

use crate::common::{clawgate, new_state, random_value, run};

#[test]
fn no_command_prints_a_secret_value_unless_asked() {
    let (dir, state) = new_state();
    let planted = format!("PLANTED-{}", random_value());
    let planted_env = format!("ENVPLANT-{}", random_value());
    let env_file = dir.path().join(".env");
    std::fs::write(&env_file, format!("IMPORTED={planted_env}\nBROKEN\n")).unwrap();
    let env_path = env_file.to_str().unwrap().to_owned();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, format!("{planted}-as-passphrase\n")).unwrap();
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, [9u8; 32]).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();

    let steps: Vec<(Vec<&str>, String)> = vec![
        (vec!["vault", "init"], String::new()),
        (
            vec![
                "vault",
                "put",
                "planted",
                "--tool",
                "web_fetch",
                "--host",
                "api.example.com",
            ],
            planted.clone(),
        ),
        (vec!["vault", "put", "planted"], format!("{planted}\n")),
        (vec!["vault", "list"], String::new()),
        (vec!["vault", "list", "--json"], String::new()),
        (vec!["vault", "get", "planted"], String::new()),
        (vec!["vault", "get", "missing", "--reveal"], String::new()),
        (vec!["vault", "import-env", &env_path], String::new()), // fails on line 2, names no value
        (vec!["vault", "verify"], String::new()),
        (vec!["vault", "rotate", "--batch-size", "1"], String::new()),
        (
            vec!["vault", "list", "--key-file", wrong.to_str().unwrap()],
            String::new(),
        ),
        (
            vec!["vault", "list", "--passphrase-file", pass.to_str().unwrap()],
            String::new(),
        ),
        (vec!["vault", "log"], String::new()),
        (vec!["vault", "log", "--json"], String::new()),
        (
            vec!["scan"],
            format!("leaked: {planted} and {planted_env}\n"),
        ),
        (vec!["scan", "--json"], format!("{{\"k\": \"{planted}\"}}")),
        (
            vec!["redact"],
            format!("password={planted}\nurl=https://x:{planted}@h/\n"),
        ),
        (vec!["vault", "rm", "planted"], String::new()),
        (vec!["vault", "accept-restore"], String::new()),
    ];
    let mut printed = Vec::new();
    for (args, input) in &steps {
        let mut c = clawgate(&state);
        c.args(args);
        let out = run(c, input);
        printed.extend_from_slice(&out.stdout);
        printed.extend_from_slice(&out.stderr);
    }
    let text = String::from_utf8_lossy(&printed);
    assert!(
        text.contains("planted"),
        "the commands ran (names are fine to print)"
    );
    for secret in [&planted, &planted_env] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret value was printed:\n{text}"
        );
    }

    // Positive control: the grep does catch a value when one is printed on purpose.
    let mut c = clawgate(&state);
    c.args(["vault", "put", "control", "--tool", "exec"]);
    run(c, &planted);
    let mut c = clawgate(&state);
    c.args(["vault", "get", "control", "--reveal"]);
    assert!(String::from_utf8_lossy(&run(c, "").stdout).contains(&planted));
}
