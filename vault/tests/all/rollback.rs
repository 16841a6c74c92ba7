//! A whole older copy of the database is self-consistent; the counter outside it catches it.

use clawgate_vault::{Error, Vault};

use crate::common::{Fixture, any_scope, name, secret};

fn counter_path(fx: &Fixture) -> std::path::PathBuf {
    fx.dir.path().join("vault.db.generation")
}

#[test]
fn restoring_an_older_database_file_is_detected() {
    let (fx, vault) = Fixture::new();
    vault
        .put(&name("token"), &secret("old-value"), &any_scope())
        .unwrap();
    vault.compact().unwrap();
    let old = std::fs::read(&fx.db).unwrap();
    vault
        .put(&name("token"), &secret("new-value"), &any_scope())
        .unwrap();
    vault.remove(&name("token")).unwrap();
    drop(vault);

    std::fs::write(&fx.db, &old).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(fx.dir.path().join(format!("vault.db{suffix}")));
    }
    match Vault::open(&fx.db, &fx.key) {
        Err(Error::RolledBack { found, expected }) => assert!(found < expected),
        other => panic!("expected RolledBack, got {other:?}"),
    }
    let msg = Vault::open(&fx.db, &fx.key).unwrap_err().to_string();
    assert!(msg.contains("accept-restore"), "{msg}");

    // A deliberate restore is accepted explicitly, logged, and opens normally afterwards.
    let vault = Vault::open_accepting_restore(&fx.db, &fx.key).unwrap();
    assert_eq!(vault.get(&name("token")).unwrap().expose(), "old-value");
    assert!(
        vault
            .changes(0, 1000)
            .unwrap()
            .iter()
            .any(|c| c.action == "restore-accepted")
    );
    drop(vault);
    fx.reopen().unwrap();
}

#[test]
fn a_missing_or_edited_counter_is_refused() {
    let (fx, vault) = Fixture::new();
    vault.put(&name("a"), &secret("v"), &any_scope()).unwrap();
    drop(vault);
    let counter = counter_path(&fx);
    let text = std::fs::read_to_string(&counter).unwrap();

    std::fs::remove_file(&counter).unwrap();
    let e = fx.reopen().unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");

    let fields: Vec<&str> = text.split_whitespace().collect();
    std::fs::write(
        &counter,
        format!("{} {} 1 {}\n", fields[0], fields[1], fields[3]),
    )
    .unwrap();
    let e = fx.reopen().unwrap_err().to_string();
    assert!(e.contains("not authentic"), "{e}");

    std::fs::write(&counter, &text).unwrap();
    fx.reopen().unwrap();
}

#[test]
fn a_counter_left_behind_by_a_crash_catches_up() {
    let (fx, vault) = Fixture::new();
    let before = std::fs::read(counter_path(&fx)).unwrap();
    vault.put(&name("a"), &secret("v"), &any_scope()).unwrap();
    let generation = vault.generation().unwrap();
    drop(vault);
    // Simulate a crash after the database commit but before the counter update.
    std::fs::write(counter_path(&fx), &before).unwrap();
    let vault = fx.reopen().unwrap();
    assert_eq!(vault.generation().unwrap(), generation);
    let now = std::fs::read_to_string(counter_path(&fx)).unwrap();
    assert!(now.contains(&format!(" {generation} ")), "{now}");
}
