//! `clawgate-vault`: the encrypted SQLite secret store behind `SECRET_REF(name)`.
//!
//! Envelope encryption (a master key wraps numbered data keys, which seal each record with
//! XChaCha20-Poly1305 and a fresh random nonce), per-record associated data binding vault id,
//! name, version, key term and scope, an HMAC over the whole record index, a rollback counter
//! outside the database, online key rotation and rekey. Values only ever leave as
//! [`SecretString`](clawgate_protocol::SecretString), whose `Debug` and `Display` print
//! `**REDACTED**`. See `ARCHITECTURE.md` for the design and why.
//!
//! ```
//! use clawgate_protocol::{SecretRef, SecretString};
//! use clawgate_vault::{KdfParams, KeySource, ResolveContext, Scope, Vault, generate_key_file};
//!
//! let dir = tempfile::tempdir()?;
//! let key = dir.path().join("vault.key");
//! generate_key_file(&key)?;
//! let source = KeySource::KeyFile(key);
//! let vault = Vault::create(&dir.path().join("vault.db"), &source, KdfParams::default())?;
//!
//! let name = "stripe".parse()?;
//! let scope = Scope::new(["web_fetch"], ["api.stripe.com"])?;
//! vault.put(&name, &SecretString::new("sk_live_example".into()), &scope)?;
//!
//! let r = SecretRef::parse("SECRET_REF(stripe)")?;
//! let ok = ["api.stripe.com".to_owned()];
//! let value = vault.resolve(&r, &ResolveContext { tool: "web_fetch", hosts: &ok })?;
//! assert_eq!(value.expose(), "sk_live_example");
//! assert_eq!(format!("{value}"), "**REDACTED**");
//!
//! let evil = ["evil.example".to_owned()];
//! assert!(vault.resolve(&r, &ResolveContext { tool: "web_fetch", hosts: &evil }).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod counter;
mod crypto;
pub mod envfile;
mod error;
mod fsutil;
pub mod hardening;
mod keys;
mod scope;
mod store;

pub use error::{Error, Result};
pub use keys::{KdfParams, KeySource, generate_key_file, read_key_file};
pub use scope::{ANY, ResolveContext, Scope};
pub use store::{
    APPLICATION_ID, ChangeEntry, FORMAT, MAX_VALUE_LEN, RecordInfo, RotationReport, Vault,
    VerifyReport,
};
