//! Crash safety for real: a `clawgate vault rotate` child process is SIGKILLed in the middle of
//! a rotation, repeatedly, and every time the vault opens and holds every record.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use clawgate_protocol::SecretName;
use clawgate_vault::{KeySource, Vault};

use crate::common::{clawgate, new_state, ok, random_value};

const RECORDS: usize = 1000;

#[test]
fn sigkill_in_the_middle_of_rotation_loses_nothing() {
    let (dir, state) = new_state();
    ok(args(&state, &["vault", "init"]), "");
    let values: Vec<String> = (0..RECORDS).map(|_| random_value()).collect();
    let env_file = dir.path().join("secrets.env");
    let text: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("S{i:04}={v}\n"))
        .collect();
    std::fs::write(&env_file, text).unwrap();
    ok(
        args(
            &state,
            &[
                "vault",
                "import-env",
                env_file.to_str().unwrap(),
                "--tool",
                "exec",
            ],
        ),
        "",
    );

    let db = state.join("vault.db");
    let key = KeySource::KeyFile(state.join("vault.key"));
    let mut mid_rotation_kills = 0;
    // Kill after this many progress lines (one per committed batch of one record), or, for
    // `None`, after a short sleep without reading (may land in the retire/VACUUM phase).
    let plan = [Some(1), Some(37), Some(300), None, Some(200), None, Some(3)];
    for (round, kill_after) in plan.into_iter().enumerate() {
        let mut cmd = args(&state, &["vault", "rotate", "--batch-size", "1"]);
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        match kill_after {
            Some(n) => {
                let mut lines = BufReader::new(stderr).lines();
                let mut seen = 0;
                while seen < n {
                    match lines.next() {
                        Some(Ok(line)) if line.starts_with("resealed") => seen += 1,
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
                if round == 0 {
                    assert_no_core_dumps(child.id());
                }
                child.kill().unwrap(); // SIGKILL on Unix
            }
            None => {
                std::thread::sleep(Duration::from_millis(5 + 40 * round as u64));
                child.kill().unwrap();
                drop(stderr);
            }
        }
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child finished before it was killed"
        );

        let vault = Vault::open(&db, &key)
            .unwrap_or_else(|e| panic!("round {round}: vault does not open: {e}"));
        let report = vault.verify().unwrap();
        assert_eq!(report.secrets, RECORDS, "round {round}");
        eprintln!(
            "round {round}: killed with {} of {RECORDS} records awaiting re-seal",
            report.pending_reseal
        );
        if report.pending_reseal > 0 && report.pending_reseal < RECORDS {
            mid_rotation_kills += 1;
        }
        for (i, v) in values.iter().enumerate() {
            let name: SecretName = format!("S{i:04}").parse().unwrap();
            assert_eq!(
                vault.get(&name).unwrap().expose(),
                v,
                "round {round}: record {i}"
            );
        }
    }
    assert!(
        mid_rotation_kills >= 3,
        "only {mid_rotation_kills} kills landed mid-rotation"
    );

    // Finishing afterwards leaves one live key term and nothing pending.
    ok(
        args(&state, &["vault", "rotate", "--batch-size", "500"]),
        "",
    );
    let report = Vault::open(&db, &key).unwrap().verify().unwrap();
    assert_eq!(
        (report.secrets, report.live_terms, report.pending_reseal),
        (RECORDS, 1, 0)
    );
}

fn args(state: &std::path::Path, a: &[&str]) -> std::process::Command {
    let mut cmd = clawgate(state);
    cmd.env("CLAWGATE_LOG", "warn").args(a);
    cmd
}

/// The live process runs with core dumps off (main() hardens itself before anything else).
fn assert_no_core_dumps(pid: u32) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}
