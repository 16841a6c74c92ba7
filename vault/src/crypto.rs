//! The vault's cryptographic primitives, in one place: XChaCha20-Poly1305 sealing with a fresh
//! random 24-byte nonce per write, the associated-data layouts that bind a ciphertext to its
//! place, HKDF key separation and HMAC-SHA-256.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::hardening::{KEY_LEN, KeyBytes};

/// XChaCha20-Poly1305 nonce length.
pub(crate) const NONCE_LEN: usize = 24;
/// Vault identifier length.
pub(crate) const VAULT_ID_LEN: usize = 16;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Fills `buf` from the OS CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(|e| Error::Random(e.to_string()))
}

/// A fresh random key in locked memory.
pub(crate) fn random_key() -> Result<KeyBytes> {
    let mut raw = [0u8; KEY_LEN];
    fill_random(&mut raw)?;
    Ok(KeyBytes::from_array(&mut raw))
}

/// Seals `plaintext` under `key` with a fresh random nonce. Returns `(nonce, ciphertext‖tag)`.
pub(crate) fn seal(
    key: &KeyBytes,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::InvalidValue("too large to encrypt"))?;
    Ok((nonce, sealed))
}

/// Opens a sealed value; any change to key, nonce, associated data or ciphertext is an error.
pub(crate) fn open(
    key: &KeyBytes,
    nonce: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if nonce.len() != NONCE_LEN {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
        .map(Zeroizing::new)
}

/// Derives a sub-key from `ikm` with HKDF-SHA-256.
pub(crate) fn hkdf(ikm: &[u8], salt: &[u8], info: &[u8]) -> Result<KeyBytes> {
    let mut out = [0u8; KEY_LEN];
    hkdf::Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut out)
        .map_err(|_| Error::InvalidKdf("HKDF output length".into()))?;
    Ok(KeyBytes::from_array(&mut out))
}

/// A keyed HMAC-SHA-256 ready for input.
pub(crate) fn hmac(key: &KeyBytes) -> HmacSha256 {
    // HMAC accepts any key length, so this cannot fail for 32 bytes; fall back to a MAC that
    // can never verify rather than panic.
    <HmacSha256 as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

/// Associated-data builder: every variable-length field is length-prefixed, so two different
/// field lists can never encode to the same bytes.
#[derive(Debug)]
pub(crate) struct Aad(Vec<u8>);

impl Aad {
    pub(crate) fn new(domain: &str) -> Self {
        let mut aad = Self(Vec::with_capacity(128));
        aad.bytes(domain.as_bytes());
        aad
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(v.len() as u32).to_be_bytes());
        self.0.extend_from_slice(v);
        self
    }
    pub(crate) fn int(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

/// AAD for a data-encryption key of `term` wrapped under the master key.
pub(crate) fn dek_aad(vault_id: &[u8], term: i64) -> Aad {
    let mut aad = Aad::new("clawgate-vault/v1/dek");
    aad.bytes(vault_id).int(term);
    aad
}

/// AAD for a secret record: vault id, name, version, key term and scope.
pub(crate) fn record_aad(
    vault_id: &[u8],
    name: &str,
    version: i64,
    term: i64,
    scope_json: &str,
) -> Aad {
    let mut aad = Aad::new("clawgate-vault/v1/record");
    aad.bytes(vault_id)
        .bytes(name.as_bytes())
        .int(version)
        .int(term)
        .bytes(scope_json.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_fields_are_unambiguous() {
        let a = record_aad(b"id", "ab", 1, 1, "c");
        let b = record_aad(b"id", "a", 1, 1, "bc");
        assert_ne!(a.as_slice(), b.as_slice());
    }

    #[test]
    fn seal_open_roundtrip_and_fresh_nonces() {
        let key = random_key().unwrap();
        let (n1, c1) = seal(&key, b"aad", b"value").unwrap();
        let (n2, c2) = seal(&key, b"aad", b"value").unwrap();
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
        assert_eq!(open(&key, &n1, b"aad", &c1).unwrap().as_slice(), b"value");
        assert!(open(&key, &n1, b"other", &c1).is_none());
        assert!(open(&key, &n2, b"aad", &c1).is_none());
    }
}
