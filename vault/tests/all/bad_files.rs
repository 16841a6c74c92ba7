//! Garbage, truncated, empty and foreign files get a clear error and are never modified.

use clawgate_vault::{Error, Vault};

use crate::common::{Fixture, any_scope, name, secret};

fn assert_refused_untouched(fx: &Fixture, bytes: &[u8], want: &str) {
    std::fs::write(&fx.db, bytes).unwrap();
    let e = Vault::open(&fx.db, &fx.key).unwrap_err();
    let text = e.to_string();
    assert!(text.contains(want), "expected {want:?} in {text:?} ({e:?})");
    assert_eq!(std::fs::read(&fx.db).unwrap(), bytes, "file was modified");
}

#[test]
fn bad_files_get_clear_errors_and_stay_as_they_are() {
    let (fx, vault) = Fixture::new();
    for i in 0..50 {
        vault
            .put(
                &name(&format!("k{i}")),
                &secret(&"v".repeat(200)),
                &any_scope(),
            )
            .unwrap();
    }
    vault.compact().unwrap();
    drop(vault);
    let good = std::fs::read(&fx.db).unwrap();
    assert!(good.len() > 8192);

    assert_refused_untouched(&fx, b"", "the file is empty");
    assert_refused_untouched(&fx, b"hello, I am not a database at all, just some text that goes on for a while ..............................", "not an SQLite database");
    assert_refused_untouched(&fx, &good[..50], "not an SQLite database");
    for cut in [100, 4096, good.len() / 2, good.len() - 1] {
        std::fs::write(&fx.db, &good[..cut]).unwrap();
        let e = Vault::open(&fx.db, &fx.key).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Corrupt { .. } | Error::Tampered { .. } | Error::NotAVault { .. }
            ),
            "cut {cut}: {e:?}"
        );
        assert_eq!(
            std::fs::read(&fx.db).unwrap(),
            &good[..cut],
            "cut {cut}: file modified"
        );
    }
    let mut garbage_pages = good.clone();
    for b in garbage_pages[4096..].iter_mut() {
        *b = 0xA5;
    }
    std::fs::write(&fx.db, &garbage_pages).unwrap();
    let e = Vault::open(&fx.db, &fx.key).unwrap_err();
    assert!(
        matches!(e, Error::Corrupt { .. } | Error::Tampered { .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("damaged") || e.to_string().contains("integrity"),
        "{e}"
    );

    // Another application's SQLite file.
    std::fs::remove_file(&fx.db).unwrap();
    rusqlite::Connection::open(&fx.db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let before = std::fs::read(&fx.db).unwrap();
    let e = Vault::open(&fx.db, &fx.key).unwrap_err().to_string();
    assert!(e.contains("another application"), "{e}");
    assert_eq!(std::fs::read(&fx.db).unwrap(), before);

    // Missing file.
    std::fs::remove_file(&fx.db).unwrap();
    assert!(matches!(
        Vault::open(&fx.db, &fx.key),
        Err(Error::Missing(_))
    ));

    // The good copy still opens.
    std::fs::write(&fx.db, &good).unwrap();
    assert_eq!(
        Vault::open(&fx.db, &fx.key).unwrap().list().unwrap().len(),
        50
    );
}

#[test]
fn create_refuses_to_overwrite() {
    let (fx, vault) = Fixture::new();
    drop(vault);
    let e = Vault::create(&fx.db, &fx.key, Default::default()).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists(_)), "{e:?}");
    fx.reopen().unwrap();
}
