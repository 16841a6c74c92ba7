//! A vault written by format 1 is committed in `testdata/format-1/`; every build must still open
//! it. Regenerate (only when the format number changes) with
//! `CLAWGATE_REGENERATE_FIXTURES=1 cargo test -p clawgate-vault --test all format`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clawgate_protocol::SecretRef;
use clawgate_vault::{FORMAT, KdfParams, KeySource, ResolveContext, Scope, Vault};

use crate::common::{name, secret};

const FILES: [&str; 3] = ["vault.db", "vault.db.generation", "vault.key"];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/format-1")
}

fn regenerate(dir: &Path) {
    let key = dir.join("vault.key");
    std::fs::write(&key, [0x42u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let vault = Vault::create(
        &dir.join("vault.db"),
        &KeySource::KeyFile(key),
        KdfParams::default(),
    )
    .unwrap();
    let stripe = Scope::new(["web_fetch"], ["api.stripe.com"]).unwrap();
    vault
        .put(&name("stripe"), &secret("sk_test_fixture_v1"), &stripe)
        .unwrap();
    vault
        .put(&name("stripe"), &secret("sk_test_fixture_v2"), &stripe)
        .unwrap();
    vault
        .put(&name("gone"), &secret("removed"), &Scope::default())
        .unwrap();
    vault.remove(&name("gone")).unwrap();
    vault.rotate(1, |_, _| {}).unwrap();
    vault.compact().unwrap();
}

#[test]
fn format_1_fixture_still_opens() {
    assert_eq!(
        FORMAT, 1,
        "a new format needs a new fixture directory next to this one"
    );
    let fixture = fixture_dir();
    if std::env::var_os("CLAWGATE_REGENERATE_FIXTURES").is_some() {
        for f in FILES {
            let _ = std::fs::remove_file(fixture.join(f));
        }
        regenerate(&fixture);
    }
    let dir = tempfile::tempdir().unwrap();
    for f in FILES {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::set_permissions(
        dir.path().join("vault.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let vault = Vault::open(
        &dir.path().join("vault.db"),
        &KeySource::KeyFile(dir.path().join("vault.key")),
    )
    .unwrap();
    let report = vault.verify().unwrap();
    assert_eq!(
        (
            report.secrets,
            report.versions,
            report.live_terms,
            report.pending_reseal
        ),
        (1, 2, 1, 0)
    );
    assert_eq!(
        vault.get(&name("stripe")).unwrap().expose(),
        "sk_test_fixture_v2"
    );
    assert_eq!(
        vault.get_version(&name("stripe"), 1).unwrap().expose(),
        "sk_test_fixture_v1"
    );
    let r = SecretRef::parse("SECRET_REF(stripe)").unwrap();
    let hosts = ["api.stripe.com".to_owned()];
    assert!(
        vault
            .resolve(
                &r,
                &ResolveContext {
                    tool: "web_fetch",
                    hosts: &hosts
                }
            )
            .is_ok()
    );
    assert!(
        vault
            .resolve(
                &r,
                &ResolveContext {
                    tool: "exec",
                    hosts: &[]
                }
            )
            .is_err()
    );
}
