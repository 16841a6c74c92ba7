//! The published vectors (`hub/testdata/vectors.json`, also checked by Node) and the refusals.

use serde_json::{Value, json};

use super::*;
use crate::protocol::{DecisionKind, SignedCommand, SignedDecision};

pub(crate) fn vectors() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors.json");
    serde_json::from_slice(&clawgate_protocol::io::read_capped(&path, 1 << 20).unwrap()).unwrap()
}

/// The vector's key `kid` as a signing key.
pub(crate) fn vector_key(kid: &str) -> DalekSigningKey {
    let v = vectors();
    let k = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap();
    let seed: [u8; 32] = hex::decode(k["seed_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    DalekSigningKey::from_bytes(&seed)
}

/// The keyset of the vectors' first key only (version 1), with one pin.
pub(crate) fn vector_keyset() -> Keyset {
    let key = vector_key("hub-sign-2026-01");
    Keyset::new(
        1,
        &[SigningKey {
            kid: "hub-sign-2026-01".into(),
            public_key: B64.encode(key.verifying_key().as_bytes()),
        }],
        &["aa".repeat(32)],
    )
    .unwrap()
}

#[test]
fn canonical_json_matches_the_vectors() {
    let v = vectors();
    for case in v["canonical_json"].as_array().unwrap() {
        assert_eq!(
            canonical_json(&case["value"]).unwrap(),
            case["canonical"].as_str().unwrap(),
            "{}",
            case["value"]
        );
    }
}

#[test]
fn canonical_json_refuses_what_javascript_cannot_reproduce() {
    for bad in [
        json!({"a": 1.5}),
        json!([1e3]),
        json!(9_007_199_254_740_992u64),
        json!(-9_007_199_254_740_992i64),
        json!(u64::MAX),
    ] {
        assert!(canonical_json(&bad).is_err(), "{bad}");
    }
    assert_eq!(
        canonical_json(&json!(-9_007_199_254_740_991i64)).unwrap(),
        "-9007199254740991"
    );
}

fn vector_entry(name: &str) -> Value {
    vectors()["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
        .clone()
}

fn check_vector<T>(name: &str)
where
    T: SignedPayload + Clone + serde::de::DeserializeOwned,
{
    let s = vector_entry(name);
    let payload: T = serde_json::from_value(s["payload"].clone()).unwrap();
    let message = signed_message(&payload).unwrap();
    assert_eq!(
        hex::encode(&message),
        s["message_hex"].as_str().unwrap(),
        "{name}"
    );
    assert_eq!(
        &message[T::DOMAIN.tag().len() + 1..],
        s["canonical_utf8"].as_str().unwrap().as_bytes()
    );
    let key = vector_key(s["signer"].as_str().unwrap());
    let signed = sign(&payload, &key).unwrap();
    assert_eq!(
        signed.signature,
        s["signature_base64"].as_str().unwrap(),
        "{name}"
    );
    assert_eq!(
        hex::encode(B64.decode(&signed.signature).unwrap()),
        s["signature_hex"].as_str().unwrap()
    );
    let keyset = Keyset::new(
        1,
        &serde_json::from_value::<Vec<SigningKey>>(
            vectors()["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| json!({"kid": k["kid"], "public_key": k["public_key"]}))
                .collect(),
        )
        .unwrap(),
        &["00".repeat(32)],
    )
    .unwrap();
    verify(&signed, &keyset).unwrap();
}

#[test]
fn decision_command_and_keyset_vectors_are_byte_identical() {
    check_vector::<DecisionPayload>("decision");
    check_vector::<CommandPayload>("command");
    check_vector::<KeysetPayload>("keyset");
}

#[test]
fn the_public_keys_derive_from_the_seeds() {
    for k in vectors()["keys"].as_array().unwrap() {
        let key = vector_key(k["kid"].as_str().unwrap());
        assert_eq!(
            B64.encode(key.verifying_key().as_bytes()),
            k["public_key"].as_str().unwrap()
        );
    }
}

fn signed_vector_decision() -> SignedDecision {
    let s = vector_entry("decision");
    Signed {
        signed: serde_json::from_value(s["payload"].clone()).unwrap(),
        signature: s["signature_base64"].as_str().unwrap().into(),
    }
}

#[test]
fn any_change_breaks_the_signature() {
    let keyset = vector_keyset();
    let good = signed_vector_decision();
    verify(&good, &keyset).unwrap();

    let mut changed = good.clone();
    changed.signed.decision = DecisionKind::Allow24h;
    assert!(matches!(
        verify(&changed, &keyset),
        Err(SignatureError::BadSignature(_))
    ));
    let mut changed = good.clone();
    changed.signed.expires_at += 1;
    assert!(matches!(
        verify(&changed, &keyset),
        Err(SignatureError::BadSignature(_))
    ));
    let mut unknown = good.clone();
    unknown.signed.kid = "hub-sign-2026-07".into();
    assert_eq!(
        verify(&unknown, &keyset),
        Err(SignatureError::UnknownKid("hub-sign-2026-07".into()))
    );
    let mut short = good.clone();
    short.signature = B64.encode([0u8; 63]);
    assert!(matches!(
        verify(&short, &keyset),
        Err(SignatureError::Malformed(_))
    ));
    let mut not_b64 = good;
    not_b64.signature = "!!".into();
    assert!(matches!(
        verify(&not_b64, &keyset),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn a_signature_from_another_domain_does_not_verify() {
    // Sign the decision's canonical bytes under the command prefix: same key, wrong role.
    let keyset = vector_keyset();
    let good = signed_vector_decision();
    let canonical = canonical_json(&serde_json::to_value(&good.signed).unwrap()).unwrap();
    let key = vector_key("hub-sign-2026-01");
    for prefix in ["clawgate-command/1\n", "clawgate-keyset/1\n", ""] {
        let sig = key.sign(format!("{prefix}{canonical}").as_bytes());
        let forged = Signed {
            signed: good.signed.clone(),
            signature: B64.encode(sig.to_bytes()),
        };
        assert!(matches!(
            verify(&forged, &keyset),
            Err(SignatureError::BadSignature(_))
        ));
    }
}

#[test]
fn a_non_canonical_signature_is_refused_by_verify_strict() {
    // s + L (the group order) is the same signature to a lax verifier; verify_strict refuses it.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let keyset = vector_keyset();
    let good = signed_vector_decision();
    let mut raw = B64.decode(&good.signature).unwrap();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(raw[32 + i]) + u16::from(L[i]) + carry;
        raw[32 + i] = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    let mut malleated = good;
    malleated.signature = B64.encode(&raw);
    assert!(verify(&malleated, &keyset).is_err());
}

#[test]
fn weak_and_malformed_keys_are_refused() {
    let identity_point = SigningKey {
        kid: "weak".into(),
        // The identity point (small order): a key that "verifies" forged signatures.
        public_key: B64.encode({
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        }),
    };
    let err = Keyset::new(1, &[identity_point], &["00".repeat(32)]).unwrap_err();
    assert!(err.to_string().contains("weak"), "{err}");
    let good = vector_keyset().signing_keys()[0].clone();
    let bad_cases: Vec<(Vec<SigningKey>, Vec<String>, &str)> = vec![
        (vec![], vec!["00".repeat(32)], "signing keys"),
        (
            vec![good.clone(), good.clone()],
            vec!["00".repeat(32)],
            "twice",
        ),
        (
            vec![SigningKey {
                kid: "bad id".into(),
                ..good.clone()
            }],
            vec!["00".repeat(32)],
            "key id",
        ),
        (
            vec![SigningKey {
                public_key: "AAAA".into(),
                ..good.clone()
            }],
            vec!["00".repeat(32)],
            "32 bytes",
        ),
        (vec![good.clone()], vec![], "pins"),
        (vec![good.clone()], vec!["AA".repeat(32)], "lower-case"),
        (vec![good], vec!["00".repeat(31)], "lower-case"),
    ];
    for (keys, pins, want) in bad_cases {
        let err = Keyset::new(1, &keys, &pins).unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
}

fn keyset_statement(version: u64, signer: &str, keys: &[&str]) -> SignedKeyset {
    let payload = KeysetPayload {
        version,
        keys: keys
            .iter()
            .map(|kid| SigningKey {
                kid: (*kid).into(),
                public_key: B64.encode(vector_key(kid).verifying_key().as_bytes()),
            })
            .collect(),
        tls_spki_sha256: vec!["bb".repeat(32)],
        kid: signer.into(),
    };
    sign(&payload, &vector_key(signer)).unwrap()
}

#[test]
fn keyset_rotation_rules() {
    let v1 = vector_keyset();
    // Rotate to a set with only the new key, signed by the old one.
    let v2 = apply_keyset(
        &v1,
        &keyset_statement(2, "hub-sign-2026-01", &["hub-sign-2026-07"]),
    )
    .unwrap();
    assert_eq!(v2.version(), 2);
    assert!(v2.key("hub-sign-2026-01").is_none());
    assert!(v2.key("hub-sign-2026-07").is_some());
    assert_eq!(v2.tls_pins_hex(), vec!["bb".repeat(32)]);

    // Replays and rollbacks.
    let replay = keyset_statement(2, "hub-sign-2026-07", &["hub-sign-2026-07"]);
    let err = apply_keyset(&v2, &replay).unwrap_err();
    assert_eq!(err.code(), "not_newer");
    // Signed by a key that is no longer trusted.
    let stale = keyset_statement(3, "hub-sign-2026-01", &["hub-sign-2026-01"]);
    assert_eq!(apply_keyset(&v2, &stale).unwrap_err().code(), "unknown_kid");
    // Self-signed by a key the appliance never trusted.
    let intruder = keyset_statement(5, "hub-sign-2026-07", &["hub-sign-2026-07"]);
    assert_eq!(
        apply_keyset(&v1, &intruder).unwrap_err().code(),
        "unknown_kid"
    );
    // Versions may skip.
    let v9 = apply_keyset(
        &v2,
        &keyset_statement(9, "hub-sign-2026-07", &["hub-sign-2026-07"]),
    )
    .unwrap();
    assert_eq!(v9.version(), 9);
    // A tampered statement.
    let mut tampered = keyset_statement(10, "hub-sign-2026-07", &["hub-sign-2026-07"]);
    tampered.signed.tls_spki_sha256 = vec!["cc".repeat(32)];
    assert_eq!(
        apply_keyset(&v9, &tampered).unwrap_err().code(),
        "bad_signature"
    );
    // A validly signed but invalid keyset.
    let mut empty = keyset_statement(10, "hub-sign-2026-07", &["hub-sign-2026-07"]).signed;
    empty.keys.clear();
    let empty = sign(&empty, &vector_key("hub-sign-2026-07")).unwrap();
    assert_eq!(
        apply_keyset(&v9, &empty).unwrap_err().code(),
        "invalid_keyset"
    );
}

#[test]
fn contains_all_compares_ids_and_keys() {
    let both = Keyset::new(
        1,
        &[
            keyset_statement(2, "hub-sign-2026-01", &["hub-sign-2026-01"])
                .signed
                .keys[0]
                .clone(),
            keyset_statement(2, "hub-sign-2026-07", &["hub-sign-2026-07"])
                .signed
                .keys[0]
                .clone(),
        ],
        &["00".repeat(32)],
    )
    .unwrap();
    let anchor = vector_keyset().signing_keys();
    assert!(both.contains_all(&anchor).unwrap());
    // Same id, another key.
    let mut swapped = anchor.clone();
    swapped[0].public_key = both.signing_keys()[1].public_key.clone();
    assert!(!both.contains_all(&swapped).unwrap());
    assert!(!vector_keyset().contains_all(&both.signing_keys()).unwrap());
}

#[test]
fn commands_verify_in_their_own_domain() {
    let s = vector_entry("command");
    let signed: SignedCommand = Signed {
        signed: serde_json::from_value(s["payload"].clone()).unwrap(),
        signature: s["signature_base64"].as_str().unwrap().into(),
    };
    verify(&signed, &vector_keyset()).unwrap();
}
