//! Signed bundles: round trip, the published test vector, every rejection, and tampering of each
//! byte of the manifest, each file and the signature.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clawgate_policies::bundle::{
    self as b, BundleError, BundleSigner, Expectations, ManifestTemplate, TrustStore,
};
use ed25519_dalek::Signer;

const NOW: i64 = 1_795_400_000;
const SEED: [u8; 32] = [7; 32];

fn signer() -> BundleSigner {
    BundleSigner::from_seed("hub-test-1", &SEED).unwrap()
}

fn trust() -> TrustStore {
    TrustStore::from_toml(&signer().trust_entry()).unwrap()
}

fn files() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        (
            "default/exec.toml".to_owned(),
            b"[[rule]]\nid = \"x\"\n".to_vec(),
        ),
        ("default/web.toml".to_owned(), b"# web rules\n".to_vec()),
    ])
}

fn template(version: u64) -> ManifestTemplate<'static> {
    ManifestTemplate {
        tenant_id: "tenant-a",
        version,
        issued_at: NOW - 60,
        expires_at: NOW + 7 * 86_400,
        autonomy_tier: 2,
    }
}

fn expect(high_water: u64) -> Expectations<'static> {
    Expectations {
        tenant_id: "tenant-a",
        high_water,
        allow_current: false,
        now: NOW,
    }
}

fn sign(version: u64) -> Vec<u8> {
    signer().sign(&template(version), &files()).unwrap()
}

fn edit(bundle: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

/// Re-signs arbitrary manifest bytes with the test key, as a Hub would.
fn with_manifest(bundle: &[u8], manifest: &[u8], key_id: &str) -> Vec<u8> {
    let key = ed25519_dalek::SigningKey::from_bytes(&SEED);
    let msg = [b"clawgate-bundle/1\n".as_slice(), manifest].concat();
    let sig = B64.encode(key.sign(&msg).to_bytes());
    edit(bundle, |v| {
        v["manifest"] = B64.encode(manifest).into();
        v["signatures"] = serde_json::json!([{ "key_id": key_id, "sig": sig }]);
    })
}

fn manifest_of(bundle: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    B64.decode(v["manifest"].as_str().unwrap()).unwrap()
}

#[test]
fn sign_then_verify() {
    let ok = b::verify(&sign(5), &trust(), &expect(4)).unwrap();
    assert_eq!(ok.manifest.version, 5);
    assert_eq!(ok.manifest.autonomy_tier, 2);
    assert_eq!(ok.files, files());
    assert_eq!(ok.manifest_sha256.len(), 64);
}

#[test]
fn rfc8032_test_1() {
    let seed: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert_eq!(
        hex::encode(key.verifying_key().to_bytes()),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    assert_eq!(
        hex::encode(key.sign(b"").to_bytes()),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
}

/// (what, bundle, expectations, the error it must give)
type Case = (
    &'static str,
    Vec<u8>,
    Expectations<'static>,
    fn(&BundleError) -> bool,
);

#[test]
fn every_rejection_case() {
    let other = BundleSigner::from_seed("hub-test-1", &[9; 32]).unwrap();
    let mut t2 = template(5);
    let cases: Vec<Case> = vec![
        (
            "wrong key, same id",
            other.sign(&template(5), &files()).unwrap(),
            expect(4),
            |e| matches!(e, BundleError::BadSignature(_)),
        ),
        (
            "unpinned key",
            BundleSigner::from_seed("stranger", &[9; 32])
                .unwrap()
                .sign(&template(5), &files())
                .unwrap(),
            expect(4),
            |e| matches!(e, BundleError::UntrustedKey(_)),
        ),
        (
            "wrong tenant",
            sign(5),
            Expectations {
                tenant_id: "tenant-b",
                ..expect(4)
            },
            |e| matches!(e, BundleError::WrongTenant { .. }),
        ),
        ("replay of current", sign(5), expect(5), |e| {
            matches!(e, BundleError::NotNewer { .. })
        }),
        ("rollback", sign(3), expect(5), |e| {
            matches!(e, BundleError::NotNewer { .. })
        }),
        (
            "expired",
            sign(5),
            Expectations {
                now: NOW + 8 * 86_400,
                ..expect(4)
            },
            |e| matches!(e, BundleError::Expired { .. }),
        ),
        (
            "issued in the future",
            sign(5),
            Expectations {
                now: NOW - 3600,
                ..expect(4)
            },
            |e| matches!(e, BundleError::BadTimes(_)),
        ),
        (
            "unknown file",
            edit(&sign(5), |v| {
                v["files"]["default/extra.toml"] = B64.encode("x").into()
            }),
            expect(4),
            |e| matches!(e, BundleError::UnknownFile(_)),
        ),
        (
            "missing file",
            edit(&sign(5), |v| {
                v["files"]
                    .as_object_mut()
                    .unwrap()
                    .remove("default/web.toml");
            }),
            expect(4),
            |e| matches!(e, BundleError::MissingFile(_)),
        ),
        (
            "hash mismatch",
            edit(&sign(5), |v| {
                v["files"]["default/web.toml"] = B64.encode("# other\n").into()
            }),
            expect(4),
            |e| matches!(e, BundleError::HashMismatch(_)),
        ),
        (
            "unknown envelope field",
            edit(&sign(5), |v| v["extra"] = 1.into()),
            expect(4),
            |e| matches!(e, BundleError::Malformed(_)),
        ),
        (
            "wrong format",
            edit(&sign(5), |v| v["format"] = "clawgate-bundle/2".into()),
            expect(4),
            |e| matches!(e, BundleError::Malformed(_)),
        ),
        (
            "no signatures",
            edit(&sign(5), |v| v["signatures"] = serde_json::json!([])),
            expect(4),
            |e| matches!(e, BundleError::UntrustedKey(_)),
        ),
        (
            "duplicate signature",
            edit(&sign(5), |v| {
                let s = v["signatures"][0].clone();
                v["signatures"].as_array_mut().unwrap().push(s);
            }),
            expect(4),
            |e| matches!(e, BundleError::Malformed(_)),
        ),
        (
            "signature not base64",
            edit(&sign(5), |v| v["signatures"][0]["sig"] = "!!".into()),
            expect(4),
            |e| matches!(e, BundleError::BadSignature(_)),
        ),
        ("not json", b"{not json".to_vec(), expect(4), |e| {
            matches!(e, BundleError::Malformed(_))
        }),
    ];
    t2.autonomy_tier = 9;
    let mut cases = cases;
    cases.push((
        "tier out of range",
        signer().sign(&t2, &files()).unwrap(),
        expect(4),
        |e| matches!(e, BundleError::Malformed(_)),
    ));
    for (what, bundle, exp, want) in cases {
        match b::verify(&bundle, &trust(), &exp) {
            Err(e) if want(&e) => {}
            other => panic!("{what}: unexpected {other:?}"),
        }
    }
    // The bundle in force is re-verified at start-up with allow_current.
    assert!(
        b::verify(
            &sign(5),
            &trust(),
            &Expectations {
                allow_current: true,
                ..expect(5)
            }
        )
        .is_ok()
    );
}

#[test]
fn manifest_level_rejections_need_a_valid_signature_first() {
    let good = sign(5);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_of(&good)).unwrap();
    let re = |m: serde_json::Value, key_id: &str| {
        with_manifest(&good, &serde_json::to_vec(&m).unwrap(), key_id)
    };
    let mut other_key = manifest.clone();
    other_key["key_id"] = "hub-other".into();
    let mut unknown = manifest.clone();
    unknown["note"] = "x".into();
    let mut traversal = manifest.clone();
    traversal["files"]["../../etc/cron.d/x"] = "00".repeat(32).into();
    let mut backwards = manifest.clone();
    backwards["expires_at"] = (NOW - 120).into();
    for (what, bundle, want) in [
        (
            "manifest key id differs from signer",
            re(other_key, "hub-test-1"),
            "names key",
        ),
        (
            "unknown manifest field",
            re(unknown, "hub-test-1"),
            "unknown field",
        ),
        (
            "path traversal",
            re(traversal, "hub-test-1"),
            "unsafe file path",
        ),
        (
            "expiry before issue",
            re(backwards, "hub-test-1"),
            "inconsistent",
        ),
    ] {
        let e = b::verify(&bundle, &trust(), &expect(4))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{what}: {e}");
    }
}

#[test]
fn tampering_any_byte_of_manifest_files_or_signature_is_rejected() {
    let good = sign(5);
    let manifest = manifest_of(&good);
    for i in 0..manifest.len() {
        let mut m = manifest.clone();
        m[i] ^= 0x01;
        let bundle = edit(&good, |v| v["manifest"] = B64.encode(&m).into());
        assert!(
            matches!(
                b::verify(&bundle, &trust(), &expect(4)),
                Err(BundleError::BadSignature(_))
            ),
            "manifest byte {i}"
        );
    }
    for (path, contents) in files() {
        for i in 0..contents.len() {
            let mut c = contents.clone();
            c[i] ^= 0x01;
            let bundle = edit(&good, |v| v["files"][&path] = B64.encode(&c).into());
            assert!(
                matches!(
                    b::verify(&bundle, &trust(), &expect(4)),
                    Err(BundleError::HashMismatch(_))
                ),
                "{path} byte {i}"
            );
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let sig = B64
        .decode(v["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    for i in 0..sig.len() {
        let mut s = sig.clone();
        s[i] ^= 0x01;
        let bundle = edit(&good, |v| v["signatures"][0]["sig"] = B64.encode(&s).into());
        assert!(
            matches!(
                b::verify(&bundle, &trust(), &expect(4)),
                Err(BundleError::BadSignature(_))
            ),
            "signature byte {i}"
        );
    }
}

#[test]
fn trust_store_refuses_bad_keys() {
    assert!(TrustStore::from_toml("").is_err());
    assert!(TrustStore::from_toml("[[key]]\nid = \"a\"\npublic_key = \"AAAA\"\n").is_err());
    // The identity point is a small-order (weak) key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(
        TrustStore::default()
            .add("weak", &identity)
            .unwrap_err()
            .to_string()
            .contains("weak")
    );
    let entry = signer().trust_entry();
    assert!(
        TrustStore::from_toml(&format!("{entry}{entry}"))
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    assert!(TrustStore::from_toml("[[key]]\nid = \"bad id\"\npublic_key = \"\"\n").is_err());
}

/// The published vector (docs/bundle-format.md): a TypeScript Hub must reproduce these bytes.
#[test]
fn published_test_vector() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bundle/vector-1.json");
    let signer = BundleSigner::from_seed("hub-2026-01", &std::array::from_fn(|i| i as u8)).unwrap();
    let files = BTreeMap::from([(
        "default/rules.toml".to_owned(),
        b"# example policy\n".to_vec(),
    )]);
    let template = ManifestTemplate {
        tenant_id: "tenant-example",
        version: 42,
        issued_at: 1_795_000_000,
        expires_at: 1_795_604_800,
        autonomy_tier: 2,
    };
    let bundle = signer.sign(&template, &files).unwrap();
    let manifest = manifest_of(&bundle);
    let vector = serde_json::json!({
        "seed_hex": hex::encode(*signer.seed()),
        "key_id": signer.id(),
        "public_key_base64": B64.encode(signer.public_key()),
        "signed_message_prefix": "clawgate-bundle/1\n",
        "manifest_utf8": String::from_utf8(manifest.clone()).unwrap(),
        "manifest_sha256_hex": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest)),
        "bundle_utf8": String::from_utf8(bundle.clone()).unwrap(),
        "verify_with": { "tenant_id": "tenant-example", "high_water": 41, "now": 1_795_000_100 },
    });
    if std::env::var_os("CLAWGATE_REGENERATE_FIXTURES").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&vector).unwrap() + "\n").unwrap();
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        stored, vector,
        "signing is deterministic; the stored vector must match"
    );
    let trust = TrustStore::from_toml(&signer.trust_entry()).unwrap();
    let ok = b::verify(
        stored["bundle_utf8"].as_str().unwrap().as_bytes(),
        &trust,
        &Expectations {
            tenant_id: "tenant-example",
            high_water: 41,
            allow_current: false,
            now: 1_795_000_100,
        },
    )
    .unwrap();
    assert_eq!(ok.manifest_sha256, stored["manifest_sha256_hex"]);
}
