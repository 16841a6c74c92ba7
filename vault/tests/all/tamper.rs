//! Every change made to the database behind the vault's back is refused: by the record AEAD while
//! the vault is open, and by the index MAC when it is opened again.

use clawgate_vault::{Error, KdfParams, KeySource, Vault};
use rusqlite::params;

use crate::common::{Fixture, any_scope, name, secret};

fn assert_tampered<T: std::fmt::Debug>(r: clawgate_vault::Result<T>, what: &str) {
    match r {
        Err(Error::Tampered { .. }) => {}
        other => panic!("{what}: expected Tampered, got {other:?}"),
    }
}

#[test]
fn every_single_bit_flip_of_a_stored_record_is_rejected() {
    let (fx, vault) = Fixture::new();
    vault
        .put(
            &name("api"),
            &secret("sk-test-0123456789abcdef"),
            &any_scope(),
        )
        .unwrap();
    let raw = fx.raw();
    let (nonce, sealed, scope): (Vec<u8>, Vec<u8>, String) = raw
        .query_row(
            "SELECT nonce, sealed, scope FROM records WHERE name = 'api'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let mut flips = 0;
    for (column, original) in [
        ("nonce", &nonce),
        ("sealed", &sealed),
        ("scope", &scope.clone().into_bytes()),
    ] {
        for bit in 0..original.len() * 8 {
            let mut changed = original.clone();
            changed[bit / 8] ^= 1 << (bit % 8);
            let value: rusqlite::types::Value = if column == "scope" {
                match String::from_utf8(changed) {
                    Ok(s) => s.into(),
                    Err(_) => continue, // not storable as TEXT; the STRICT table refuses it anyway
                }
            } else {
                changed.into()
            };
            raw.execute(
                &format!("UPDATE records SET {column} = ?1 WHERE name = 'api'"),
                [&value],
            )
            .unwrap();
            assert!(
                vault.get(&name("api")).is_err(),
                "{column} bit {bit} accepted"
            );
            flips += 1;
        }
        raw.execute(
            &format!("UPDATE records SET {column} = ?1 WHERE name = 'api'"),
            [&match column {
                "scope" => rusqlite::types::Value::from(scope.clone()),
                _ => rusqlite::types::Value::from(original.clone()),
            }],
        )
        .unwrap();
    }
    assert!(flips > 500, "{flips}");
    // Restored exactly: the vault works again, and reopening passes the index MAC.
    assert_eq!(
        vault.get(&name("api")).unwrap().expose(),
        "sk-test-0123456789abcdef"
    );
    drop(vault);
    fx.reopen().unwrap();

    // One flip left in place is caught at open by the index MAC.
    let mut changed = sealed.clone();
    changed[3] ^= 0x10;
    raw.execute(
        "UPDATE records SET sealed = ?1 WHERE name = 'api'",
        [changed],
    )
    .unwrap();
    assert_tampered(fx.reopen(), "flip at reopen");
}

#[test]
fn swapping_ciphertexts_between_names_or_versions_is_rejected() {
    let (fx, vault) = Fixture::new();
    vault
        .put(&name("a"), &secret("value-a"), &any_scope())
        .unwrap();
    vault
        .put(&name("b"), &secret("value-b"), &any_scope())
        .unwrap();
    vault
        .put(&name("a"), &secret("value-a2"), &any_scope())
        .unwrap();
    let raw = fx.raw();
    let row = |n: &str, v: i64| -> (Vec<u8>, Vec<u8>) {
        raw.query_row(
            "SELECT nonce, sealed FROM records WHERE name = ?1 AND version = ?2",
            params![n, v],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let set = |n: &str, v: i64, (nonce, sealed): &(Vec<u8>, Vec<u8>)| {
        raw.execute(
            "UPDATE records SET nonce = ?1, sealed = ?2 WHERE name = ?3 AND version = ?4",
            params![nonce, sealed, n, v],
        )
        .unwrap();
    };
    let (a1, a2, b1) = (row("a", 1), row("a", 2), row("b", 1));

    set("b", 1, &a2); // another name's ciphertext
    assert_tampered(vault.get(&name("b")), "name swap");
    set("b", 1, &b1);

    set("a", 2, &a1); // an old version replayed as current
    assert_tampered(vault.get(&name("a")), "version replay");
    set("a", 2, &a2);
    assert_eq!(vault.get(&name("a")).unwrap().expose(), "value-a2");

    // Rolling the head back to version 1 (deleting the newest version) is caught at open.
    raw.execute("DELETE FROM records WHERE name = 'a' AND version = 2", [])
        .unwrap();
    raw.execute("UPDATE heads SET version = 1 WHERE name = 'a'", [])
        .unwrap();
    drop(vault);
    assert_tampered(fx.reopen(), "head rollback");
}

#[test]
fn widening_a_scope_or_forging_rows_is_rejected() {
    let (fx, vault) = Fixture::new();
    let narrow = clawgate_vault::Scope::new(["web_fetch"], ["api.stripe.com"]).unwrap();
    vault
        .put(&name("stripe"), &secret("sk_live_x"), &narrow)
        .unwrap();
    let raw = fx.raw();
    raw.execute(
        r#"UPDATE records SET scope = '{"tools":["*"],"hosts":["*"]}' WHERE name = 'stripe'"#,
        [],
    )
    .unwrap();
    let r = clawgate_protocol::SecretRef::parse("SECRET_REF(stripe)").unwrap();
    let hosts = ["evil.example".to_owned()];
    let res = vault.resolve(
        &r,
        &clawgate_vault::ResolveContext {
            tool: "exec",
            hosts: &hosts,
        },
    );
    assert_tampered(res, "widened scope");
    drop(vault);
    assert_tampered(fx.reopen(), "widened scope at open");

    // A row inserted by hand (no key) is caught by the index MAC.
    let (fx, vault) = Fixture::new();
    drop(vault);
    fx.raw()
        .execute("INSERT INTO heads (name, version, deleted, created_at, updated_at) VALUES ('x', 1, 0, 0, 0)", [])
        .unwrap();
    assert_tampered(fx.reopen(), "forged head");
}

#[test]
fn a_write_never_launders_tampering() {
    let (fx, vault) = Fixture::new();
    vault.put(&name("a"), &secret("one"), &any_scope()).unwrap();
    vault.put(&name("a"), &secret("two"), &any_scope()).unwrap();
    let raw = fx.raw();
    raw.execute("DELETE FROM records WHERE name = 'a' AND version = 2", [])
        .unwrap();
    raw.execute("UPDATE heads SET version = 1 WHERE name = 'a'", [])
        .unwrap();
    // The open vault would happily serve version 1 as current if the write re-MACed the rows.
    assert_tampered(
        vault.put(&name("b"), &secret("x"), &any_scope()),
        "write after tamper",
    );
}

#[test]
fn wrong_key_wrong_passphrase_and_wrong_kind_are_refused_before_any_record() {
    let (fx, vault) = Fixture::new();
    vault.put(&name("a"), &secret("v"), &any_scope()).unwrap();
    drop(vault);
    let other = fx.other_key("other.key");
    assert!(matches!(Vault::open(&fx.db, &other), Err(Error::WrongKey)));
    let pass = KeySource::Passphrase(secret("hunter2"));
    let e = Vault::open(&fx.db, &pass).unwrap_err();
    assert!(matches!(e, Error::KeyKindMismatch { .. }), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let good = KeySource::Passphrase(secret("correct horse battery staple"));
    Vault::create(&db, &good, KdfParams::MINIMUM)
        .unwrap()
        .put(&name("a"), &secret("v"), &any_scope())
        .unwrap();
    assert!(matches!(
        Vault::open(&db, &KeySource::Passphrase(secret("wrong"))),
        Err(Error::WrongKey)
    ));
    let e = Vault::open(&db, &KeySource::Passphrase(secret("wrong")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("wrong vault key or passphrase"), "{e}");
    assert_eq!(
        Vault::open(&db, &good)
            .unwrap()
            .get(&name("a"))
            .unwrap()
            .expose(),
        "v"
    );
}

#[test]
fn rekey_rewraps_keys_only_and_old_key_stops_working() {
    let (fx, vault) = Fixture::new();
    vault.put(&name("a"), &secret("v"), &any_scope()).unwrap();
    let before: Vec<u8> = fx
        .raw()
        .query_row("SELECT sealed FROM records WHERE name = 'a'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let pass = KeySource::Passphrase(secret("a long new passphrase"));
    vault.rekey(&pass, KdfParams::MINIMUM).unwrap();
    let after: Vec<u8> = fx
        .raw()
        .query_row("SELECT sealed FROM records WHERE name = 'a'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(before, after, "records untouched by rekey");
    assert_eq!(vault.get(&name("a")).unwrap().expose(), "v");
    drop(vault);
    assert!(Vault::open(&fx.db, &fx.key).is_err());
    let vault = Vault::open(&fx.db, &pass).unwrap();
    assert_eq!(vault.get(&name("a")).unwrap().expose(), "v");
}

#[test]
fn a_second_handle_sees_rotation_and_refuses_writes_after_rekey() {
    let (fx, a) = Fixture::new();
    a.put(&name("x"), &secret("vx"), &any_scope()).unwrap();
    let b = fx.reopen().unwrap();
    a.rotate(10, |_, _| {}).unwrap();
    assert_eq!(
        b.get(&name("x")).unwrap().expose(),
        "vx",
        "b reloads the keyring"
    );
    b.put(&name("y"), &secret("vy"), &any_scope()).unwrap();
    assert_eq!(a.get(&name("y")).unwrap().expose(), "vy");
    let new_key = fx.other_key("new.key");
    a.rekey(&new_key, KdfParams::default()).unwrap();
    let e = b
        .put(&name("z"), &secret("vz"), &any_scope())
        .unwrap_err()
        .to_string();
    assert!(e.contains("rekeyed by another process"), "{e}");
}

#[test]
fn resolutions_never_fail_while_another_handle_writes() {
    let (fx, reader) = Fixture::new();
    reader
        .put(&name("r"), &secret("value-r"), &any_scope())
        .unwrap();
    let writer = fx.reopen().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer
                    .put(
                        &name(&format!("w{}", i % 20)),
                        &secret("value-w"),
                        &any_scope(),
                    )
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    let r = clawgate_protocol::SecretRef::parse("SECRET_REF(r)").unwrap();
    for _ in 0..400 {
        let got = reader.resolve(
            &r,
            &clawgate_vault::ResolveContext {
                tool: "exec",
                hosts: &[],
            },
        );
        assert_eq!(got.unwrap().expose(), "value-r");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writing.join().unwrap() > 0, "the writer made progress");
}

#[test]
fn opening_and_verifying_never_false_alarm_while_another_handle_writes() {
    let (fx, writer) = Fixture::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer
                    .put(
                        &name(&format!("w{}", i % 50)),
                        &secret("value-w"),
                        &any_scope(),
                    )
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    for _ in 0..60 {
        let vault = fx.reopen().unwrap();
        vault.verify().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writing.join().unwrap() > 0);
}
