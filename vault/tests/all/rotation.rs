//! Rotation is online and resumable.

use clawgate_vault::Vault;

use crate::common::{Fixture, any_scope, name, secret};

#[test]
fn rotation_reseals_everything_and_reads_continue_between_batches() {
    let (fx, vault) = Fixture::new();
    for i in 0..30 {
        vault
            .put(
                &name(&format!("k{i}")),
                &secret(&format!("v{i}")),
                &any_scope(),
            )
            .unwrap();
        vault
            .put(
                &name(&format!("k{i}")),
                &secret(&format!("v{i}-2")),
                &any_scope(),
            )
            .unwrap();
    }
    let (term, resumed) = vault.begin_rotation().unwrap();
    assert_eq!((term, resumed), (2, false));
    let (done, remaining) = vault.reseal_batch(7).unwrap();
    assert_eq!((done, remaining), (7, 53));
    // Mid-rotation: old and new terms both readable, writes use the new term.
    assert_eq!(vault.get(&name("k29")).unwrap().expose(), "v29-2");
    vault
        .put(&name("new"), &secret("fresh"), &any_scope())
        .unwrap();
    assert_eq!(
        vault
            .list()
            .unwrap()
            .iter()
            .find(|r| r.name == "new")
            .unwrap()
            .term,
        2
    );
    drop(vault);

    // "Crash": reopen and rotate again; it finishes the interrupted rotation, no new term.
    let vault = fx.reopen().unwrap();
    let report = vault.rotate(10, |_, _| {}).unwrap();
    assert!(report.resumed);
    assert_eq!(report.term, 2);
    assert_eq!(report.resealed, 53);
    assert_eq!(report.retired, 1);
    let v = vault.verify().unwrap();
    assert_eq!(
        (v.secrets, v.versions, v.live_terms, v.pending_reseal),
        (31, 61, 1, 0)
    );
    assert_eq!(vault.get_version(&name("k3"), 1).unwrap().expose(), "v3");

    // A fresh rotation starts term 3.
    assert_eq!(vault.rotate(100, |_, _| {}).unwrap().term, 3);
    drop(vault);
    let vault: Vault = fx.reopen().unwrap();
    assert!(
        vault
            .changes(0, 10_000)
            .unwrap()
            .iter()
            .any(|c| c.action == "rotate-finish")
    );
}
