//! `clawgate scan` and `clawgate redact` with a real vault.

use std::os::unix::fs::PermissionsExt;

use crate::common::{clawgate, new_state, ok, run, stderr, stdout};

#[test]
fn scan_and_redact_use_the_vault_and_fail_closed() {
    let (dir, state) = new_state();
    let mut c = clawgate(&state);
    c.env("CLAWGATE_LOG", "warn").args(["vault", "init"]);
    ok(c, "");
    let mut c = clawgate(&state);
    c.env("CLAWGATE_LOG", "warn")
        .args(["vault", "put", "dbpw", "--tool", "exec"]);
    ok(c, "S3cr3t-V4lue-123");
    let input = "conn: postgres://u:S3cr3t-V4lue-123@db/x\nhex: 5333637233742d56346c75652d313233\n";

    let mut c = clawgate(&state);
    c.args(["scan", "--json"]);
    let findings: serde_json::Value = serde_json::from_str(&stdout(&ok(c, input))).unwrap();
    let first = &findings[0];
    assert_eq!(
        (first["start"].as_u64(), first["end"].as_u64()),
        (Some(19), Some(35))
    );
    assert_eq!(&input[19..35], "S3cr3t-V4lue-123");
    assert_eq!(first["detector"], "vault");
    assert_eq!(findings[1]["rule"], "vault.hex");

    let mut c = clawgate(&state);
    c.arg("redact");
    let out = stdout(&ok(c, input));
    assert_eq!(
        out,
        "conn: postgres://u:SECRET_REF(dbpw)@db/x\nhex: SECRET_REF(dbpw)\n"
    );

    // A vault that exists but does not open is an error, never silently skipped.
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, [1u8; 32]).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = clawgate(&state);
    c.args(["redact", "--key-file", wrong.to_str().unwrap()]);
    let out = run(c, input);
    assert!(
        !out.status.success() && stdout(&out).is_empty(),
        "{}",
        stderr(&out)
    );

    // Invalid UTF-8 is refused, not passed through.
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, b"token=\xff\xfe").unwrap();
    let mut c = clawgate(&state);
    c.args(["redact", bad.to_str().unwrap()]);
    let out = run(c, "");
    assert!(
        !out.status.success() && stderr(&out).contains("UTF-8"),
        "{}",
        stderr(&out)
    );
}
