//! Canonical JSON and the Hub's Ed25519 signatures over decisions, commands and keyset
//! statements.
//!
//! Signed bytes: `DOMAIN "\n" CANONICAL(payload)`, DOMAIN one of [`Domain`]'s prefixes. CANONICAL
//! is RFC 8785 (JCS) restricted to what the payloads contain: object keys sorted by UTF-16 code
//! units, no whitespace, strings escaped as ECMAScript's `JSON.stringify` does (which is what
//! serde_json's compact writer does too), integers only, within ±(2^53 − 1). The receiver
//! canonicalises the *parsed* payload, so however the Hub laid out the JSON on the wire, the
//! bytes verified are the bytes signed.
//!
//! Verification uses `verify_strict` (no non-canonical signatures, no small-order keys) against
//! the key the payload itself names (`kid`), so the key id is covered by the signature.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey as DalekSigningKey, VerifyingKey};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::protocol::{
    CommandPayload, DecisionPayload, KeysetPayload, MAX_SAFE_INTEGER, Signed, SignedKeyset,
    SigningKey,
};

/// Most keys in a keyset, and most TLS pins.
pub const MAX_KEYS: usize = 16;

/// What a signature is for. The prefix keeps a signature made for one role from verifying in
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Approval decisions: `clawgate-decision/1`.
    Decision,
    /// Commands: `clawgate-command/1`.
    Command,
    /// Keyset statements: `clawgate-keyset/1`.
    Keyset,
}

impl Domain {
    /// The domain tag, without the line feed.
    pub fn tag(self) -> &'static str {
        match self {
            Domain::Decision => "clawgate-decision/1",
            Domain::Command => "clawgate-command/1",
            Domain::Keyset => "clawgate-keyset/1",
        }
    }
}

/// A payload type and the domain it is signed in.
pub trait SignedPayload: Serialize {
    /// Its domain.
    const DOMAIN: Domain;
    /// The key id the payload names as its signer.
    fn kid(&self) -> &str;
}

impl SignedPayload for DecisionPayload {
    const DOMAIN: Domain = Domain::Decision;
    fn kid(&self) -> &str {
        &self.kid
    }
}

impl SignedPayload for CommandPayload {
    const DOMAIN: Domain = Domain::Command;
    fn kid(&self) -> &str {
        &self.kid
    }
}

impl SignedPayload for KeysetPayload {
    const DOMAIN: Domain = Domain::Keyset;
    fn kid(&self) -> &str {
        &self.kid
    }
}

/// The canonical JSON text of `value` (see the module docs). Fractions, exponents and integers
/// beyond ±(2^53 − 1) are refused: JavaScript could not reproduce them exactly.
pub fn canonical_json(value: &Value) -> Result<String> {
    let mut out = String::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut String) -> Result<()> {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
        Value::Number(n) => {
            let safe = n.as_u64().is_some_and(|v| v <= MAX_SAFE_INTEGER)
                || n.as_i64()
                    .is_some_and(|v| v.unsigned_abs() <= MAX_SAFE_INTEGER);
            if !safe {
                return Err(Error::Invalid(format!(
                    "canonical JSON allows only integers within ±(2^53 - 1), not {n}"
                )));
            }
            out.push_str(&n.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // RFC 8785: by UTF-16 code units (differs from UTF-8 byte order above U+FFFF).
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// The exact bytes signed for `payload`.
pub fn signed_message<T: SignedPayload>(payload: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(payload)
        .map_err(|e| Error::Invalid(format!("payload does not serialise: {e}")))?;
    let canonical = canonical_json(&value)?;
    let tag = T::DOMAIN.tag();
    let mut msg = Vec::with_capacity(tag.len() + 1 + canonical.len());
    msg.extend_from_slice(tag.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(canonical.as_bytes());
    Ok(msg)
}

/// Signs `payload` with `key` (the Hub's side; the appliance uses it only in tests and in the
/// dev Hub). The payload's `kid` must name `key`.
pub fn sign<T: SignedPayload + Clone>(payload: &T, key: &DalekSigningKey) -> Result<Signed<T>> {
    let sig = key.sign(&signed_message(payload)?);
    Ok(Signed {
        signed: payload.clone(),
        signature: B64.encode(sig.to_bytes()),
    })
}

/// Why a signed object did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The payload names a key that is not pinned.
    #[error("signed by key `{0}`, which is not pinned")]
    UnknownKid(String),
    /// The signature is not 64 bytes of standard base64, or the payload does not canonicalise.
    #[error("malformed signature or payload: {0}")]
    Malformed(String),
    /// The signature does not verify: the payload was changed, or another key signed it.
    #[error("signature by key `{0}` does not verify")]
    BadSignature(String),
}

/// Verifies `signed` against `keyset` (see the module docs).
pub fn verify<'a, T: SignedPayload>(
    signed: &'a Signed<T>,
    keyset: &Keyset,
) -> std::result::Result<&'a T, SignatureError> {
    let kid = signed.signed.kid();
    let key = keyset
        .key(kid)
        .ok_or_else(|| SignatureError::UnknownKid(escape(kid)))?;
    let raw = B64
        .decode(&signed.signature)
        .map_err(|_| SignatureError::Malformed("signature is not standard base64".into()))?;
    let sig = Signature::from_slice(&raw)
        .map_err(|_| SignatureError::Malformed("signature is not 64 bytes".into()))?;
    let message =
        signed_message(&signed.signed).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    key.verify_strict(&message, &sig)
        .map_err(|_| SignatureError::BadSignature(kid.to_owned()))?;
    Ok(&signed.signed)
}

/// The Hub keys and TLS pins an appliance trusts, with the keyset version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    version: u64,
    keys: BTreeMap<String, VerifyingKey>,
    tls_spki_sha256: Vec<[u8; 32]>,
}

impl Keyset {
    /// Builds a keyset from its wire form. Refused: no key, more than [`MAX_KEYS`] keys or pins,
    /// a bad key id, a key that is not 32 bytes of standard base64, not a curve point or weak
    /// (small order), a key id twice, no pin or a pin that is not 64 lower-case hex digits.
    pub fn new(version: u64, keys: &[SigningKey], tls_spki_sha256: &[String]) -> Result<Keyset> {
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(Error::Invalid(format!(
                "a keyset needs 1 to {MAX_KEYS} signing keys, not {}",
                keys.len()
            )));
        }
        if version == 0 || version > MAX_SAFE_INTEGER {
            return Err(Error::Invalid(format!(
                "keyset version {version} out of range"
            )));
        }
        let mut map = BTreeMap::new();
        for k in keys {
            let key = parse_public_key(k)?;
            if map.insert(k.kid.clone(), key).is_some() {
                return Err(Error::Invalid(format!(
                    "key id `{}` appears twice in the keyset",
                    escape(&k.kid)
                )));
            }
        }
        Ok(Keyset {
            version,
            keys: map,
            tls_spki_sha256: parse_pins(tls_spki_sha256)?,
        })
    }

    /// Keyset version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The key pinned under `kid`.
    pub fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// The TLS pins.
    pub fn tls_pins(&self) -> &[[u8; 32]] {
        &self.tls_spki_sha256
    }

    /// The wire form of the keys, ordered by key id.
    pub fn signing_keys(&self) -> Vec<SigningKey> {
        self.keys
            .iter()
            .map(|(kid, key)| SigningKey {
                kid: kid.clone(),
                public_key: B64.encode(key.as_bytes()),
            })
            .collect()
    }

    /// The wire form of the pins.
    pub fn tls_pins_hex(&self) -> Vec<String> {
        self.tls_spki_sha256.iter().map(hex::encode).collect()
    }

    /// True when every key of `anchor` is pinned here under the same id with the same public key
    /// (the enrollment answer must extend the token file's keys, never replace them).
    pub fn contains_all(&self, anchor: &[SigningKey]) -> Result<bool> {
        for k in anchor {
            let key = parse_public_key(k)?;
            if self.keys.get(&k.kid) != Some(&key) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// `[A-Za-z0-9._:-]{1,64}`, the id grammar of keys, tenants, appliances and commands.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

fn parse_public_key(k: &SigningKey) -> Result<VerifyingKey> {
    if !valid_id(&k.kid) {
        return Err(Error::Invalid(format!(
            "`{}` is not a valid key id ([A-Za-z0-9._:-]{{1,64}})",
            escape(&k.kid)
        )));
    }
    let bytes: [u8; 32] = B64
        .decode(&k.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "key `{}`: public_key must be standard base64 of 32 bytes",
                k.kid
            ))
        })?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| Error::Invalid(format!("key `{}` is not a valid Ed25519 point", k.kid)))?;
    if key.is_weak() {
        return Err(Error::Invalid(format!(
            "key `{}` is a weak (small-order) key",
            k.kid
        )));
    }
    Ok(key)
}

/// Parses SPKI pins: 1 to [`MAX_KEYS`] lower-case hex SHA-256 values.
pub fn parse_pins(pins: &[String]) -> Result<Vec<[u8; 32]>> {
    if pins.is_empty() || pins.len() > MAX_KEYS {
        return Err(Error::Invalid(format!(
            "1 to {MAX_KEYS} TLS SPKI pins are needed, not {}",
            pins.len()
        )));
    }
    pins.iter()
        .map(|p| {
            let lower_hex =
                p.len() == 64 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            hex::decode(p)
                .ok()
                .filter(|_| lower_hex)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "TLS pin `{}` is not 64 lower-case hex digits",
                        escape(p)
                    ))
                })
        })
        .collect()
}

/// Why a keyset statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysetRejection {
    /// The signature did not verify against the current keyset.
    #[error("keyset statement: {0}")]
    Signature(#[from] SignatureError),
    /// Not above the current version: a replay or a rollback.
    #[error(
        "keyset version {found} is not above the current version {current} (replay or rollback)"
    )]
    NotNewer {
        /// In the statement.
        found: u64,
        /// In force.
        current: u64,
    },
    /// The new keyset itself is invalid.
    #[error("keyset statement is invalid: {0}")]
    Invalid(String),
}

impl KeysetRejection {
    /// A stable code for the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            KeysetRejection::Signature(SignatureError::UnknownKid(_)) => "unknown_kid",
            KeysetRejection::Signature(SignatureError::BadSignature(_)) => "bad_signature",
            KeysetRejection::Signature(_) => "malformed",
            KeysetRejection::NotNewer { .. } => "not_newer",
            KeysetRejection::Invalid(_) => "invalid_keyset",
        }
    }
}

/// Checks a keyset statement against the keyset in force and returns the new one. The caller
/// persists it (atomically) before trusting it.
pub fn apply_keyset(
    current: &Keyset,
    statement: &SignedKeyset,
) -> std::result::Result<Keyset, KeysetRejection> {
    let payload = verify(statement, current)?;
    if payload.version <= current.version {
        return Err(KeysetRejection::NotNewer {
            found: payload.version,
            current: current.version,
        });
    }
    Keyset::new(payload.version, &payload.keys, &payload.tls_spki_sha256)
        .map_err(|e| KeysetRejection::Invalid(e.to_string()))
}

/// Escapes a value from the wire for an error message and cuts it at 64 characters.
pub fn escape(s: &str) -> String {
    s.escape_debug().take(64).collect()
}

#[cfg(test)]
pub(crate) mod tests;
