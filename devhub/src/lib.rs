//! The dev Hub: a protocol-faithful Hub (`hub/openapi.json`) that a person starts with one
//! command and tests run in-process. It is the reference implementation of the Hub side for
//! whoever builds the real (TypeScript) Hub.
//!
//! - Every `/v1/` endpoint, each request body checked against the document's own schema
//!   ([`schema`]) before use; appliances authenticated by their bearer credential (stored
//!   hashed), crash-safe credential rotation, one-time enrollment tokens.
//! - Decisions, commands and keyset statements signed with `clawgate_hub::signing`, exactly
//!   what appliances verify.
//! - State in a directory (`devhub.db`, keys, TLS certificate) that survives restarts.
//! - A phone-sized operator page at `/ui` and an admin API at `/admin/` (operator token).
//! - Fault knobs ([`faults`], [`hub::DecisionFault`]) for the appliance's fault tests.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use clawgate_devhub::{Config, DevHub};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let state = dir.path().join("hub");
//! let hub = DevHub::start(Config::new(&state)).await.unwrap();
//! assert!(hub.url().starts_with("https://127.0.0.1:"));
//!
//! // What `clawgate enroll --token-file` reads: URL, one-time token, TLS pin, signing keys.
//! let token_file = hub.mint_token("tenant-a").unwrap();
//! assert_eq!(token_file.tls_spki_sha256, vec![hub.spki_pin_hex()]);
//! assert_eq!(token_file.signing_keys, hub.signing_keys().unwrap());
//! # }
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod error;
pub mod faults;
pub mod hub;
pub mod keys;
pub mod schema;
pub mod server;
pub mod store;

pub use error::{Error, Result};
pub use faults::{Fault, FaultAction};
pub use hub::{DecisionFault, Hub, Settings};
pub use server::{Config, DevHub};
