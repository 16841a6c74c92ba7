//! No value, removed ciphertext or retired key survives on disk: the raw bytes of the database
//! and its WAL are grepped.

use clawgate_protocol::{SecretName, SecretString};
use clawgate_vault::Scope;
use rand_like::random_value;

use crate::common::{Fixture, any_scope, contains, disk_bytes, found_needles, name};

mod rand_like {
    /// 32 random printable characters from the OS RNG (no extra crate needed).
    pub(crate) fn random_value() -> String {
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw).unwrap();
        raw.iter().map(|b| char::from(b'!' + b % 94)).collect()
    }
}

fn assert_absent(fx: &Fixture, values: &[String], stage: &str) {
    let leaked = found_needles(&disk_bytes(&fx.db), values);
    assert!(
        leaked.is_empty(),
        "{stage}: {} value(s) found on disk, e.g. index {:?}",
        leaked.len(),
        leaked.first()
    );
}

#[test]
fn a_thousand_secrets_never_reach_the_disk_in_plaintext() {
    let (fx, vault) = Fixture::new();
    let values: Vec<String> = (0..1000).map(|_| random_value()).collect();
    let items: Vec<(SecretName, SecretString, Scope)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                name(&format!("s{i:04}")),
                SecretString::new(v.clone()),
                any_scope(),
            )
        })
        .collect();
    for chunk in items.chunks(100) {
        vault.put_many(chunk).unwrap();
    }
    // Some single puts too, so the WAL holds many small transactions.
    for (i, value) in values.iter().enumerate().take(20) {
        vault
            .put(
                &name(&format!("s{i:04}")),
                &SecretString::new(value.clone()),
                &any_scope(),
            )
            .unwrap();
    }
    let wal = fx.dir.path().join("vault.db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0,
        "the WAL is populated while checked"
    );
    assert_absent(&fx, &values, "after put");

    let wrapped_before: Vec<u8> = fx
        .raw()
        .query_row("SELECT wrapped FROM keyring WHERE term = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(contains(&disk_bytes(&fx.db), &wrapped_before));
    let report = vault.rotate(100, |_, _| {}).unwrap();
    assert_eq!(report.retired, 1);
    assert_absent(&fx, &values, "after rotation");
    assert!(
        !contains(&disk_bytes(&fx.db), &wrapped_before),
        "retired data key still on disk"
    );

    let removed_sealed: Vec<Vec<u8>> = fx
        .raw()
        .prepare("SELECT sealed FROM records WHERE name < 's0500'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for i in 0..500 {
        vault.remove(&name(&format!("s{i:04}"))).unwrap();
    }
    assert_absent(&fx, &values, "after remove");
    let lingering = found_needles(&disk_bytes(&fx.db), &removed_sealed);
    assert_eq!(
        lingering.len(),
        0,
        "ciphertexts of removed secrets still on disk"
    );
    assert_eq!(vault.list().unwrap().len(), 500);
}
