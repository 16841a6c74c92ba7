//! Many vault values of every length (the sampled literal scan picks its window and step from
//! the shortest), each found in every encoding, at every offset, next to the others.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use base64::Engine;
use clawgate_protocol::SecretString;
use clawgate_redact::{DetectorKind, Redactor};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn word(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[(self.next() % alphabet.len() as u64) as usize]))
            .collect()
    }
}

fn encodings(value: &str, rng: &mut Rng) -> Vec<(&'static str, String)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64u = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let user_len = (rng.next() % 6) as usize;
    let user = rng.word(b"abcdefgh", user_len);
    vec![
        ("raw", value.to_owned()),
        ("json", serde_json::to_string(value).unwrap()),
        (
            "url",
            value
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect(),
        ),
        ("hex", hex::encode(value)),
        ("HEX", hex::encode_upper(value)),
        ("base64", b64.encode(value)),
        ("base64url", b64u.encode(value)),
        ("basic", b64.encode(format!("{user}:{value}"))),
        ("base64 in blob", b64.encode(format!("{user}-{value}-tail"))),
    ]
}

#[test]
fn every_value_of_a_mixed_vault_is_found_in_every_encoding_at_every_offset() {
    let mut rng = Rng(0x51_7cc1_b727_220a);
    let alnum = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let symbols =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*()-_=+ :/\"'\\.,;";
    let values: Vec<String> = (0..120)
        .map(|i| {
            let len = 6 + (i % 60);
            rng.word(if i % 3 == 0 { symbols } else { alnum }, len)
        })
        .collect();
    let redactor = Redactor::builder()
        .vault_values(values.iter().enumerate().map(|(i, v)| {
            (
                format!("v{i}").parse().unwrap(),
                SecretString::new(v.clone()),
            )
        }))
        .without_rules()
        .without_entropy()
        .build()
        .unwrap();
    let mut checked = 0;
    for (i, value) in values.iter().enumerate() {
        for (what, encoded) in encodings(value, &mut rng) {
            for pad in [0, 1, 2, 3, 5, 8, 13] {
                let text = format!("{}{encoded} and then some text", "x".repeat(pad));
                let findings = redactor.scan(&text);
                assert!(
                    findings.iter().any(|f| f.detector == DetectorKind::Vault
                        && f.secret
                            .as_ref()
                            .is_some_and(|s| s.as_str() == format!("v{i}"))),
                    "value {i} ({} bytes), {what}, pad {pad}: {findings:?}",
                    value.len()
                );
                let out = redactor.redact(&text);
                assert!(!out.contains(value.as_str()), "{what}: {out}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 120 * 9 * 7);
}
