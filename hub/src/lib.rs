//! The appliance's side of the Hub protocol (`hub/openapi.json`, version
//! [`protocol::PROTOCOL_VERSION`]): wire types, canonical JSON and Ed25519 signatures, the checks
//! on signed decisions, commands and keysets, retry timing, the persisted outbox, the health
//! score, the pinned HTTPS client and enrollment.
//!
//! Everything the appliance acts on is signed by a pinned Hub key and checked by a pure function
//! here; the code that wires this into `clawgate serve` owns persistence order and time.
//!
//! ```
//! use clawgate_hub::decision::{self, LocalApproval, LocalStatus, Me};
//! use clawgate_hub::protocol::{DecisionKind, DecisionPayload, SigningKey};
//! use clawgate_hub::signing::{self, Keyset};
//! use std::collections::HashSet;
//!
//! // The Hub's side: sign a decision with its key.
//! let hub_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
//! let payload = DecisionPayload {
//!     tenant_id: "tenant-example".into(),
//!     appliance_id: "appl-0001".into(),
//!     approval_id: "ap_0123456789abcdef".into(),
//!     action_hash: "ab".repeat(32),
//!     decision: DecisionKind::AllowOnce,
//!     decided_at: 1_795_000_300,
//!     expires_at: 1_795_086_000,
//!     decided_by: "user:owner".into(),
//!     kid: "hub-1".into(),
//! };
//! let signed = signing::sign(&payload, &hub_key).unwrap();
//!
//! // The appliance's side: pinned key, its own identity, the pending request, now.
//! use base64::Engine;
//! let public_key = base64::engine::general_purpose::STANDARD.encode(hub_key.verifying_key().as_bytes());
//! let keyset = Keyset::new(1, &[SigningKey { kid: "hub-1".into(), public_key }], &["00".repeat(32)]).unwrap();
//! let me = Me { tenant_id: "tenant-example", appliance_id: "appl-0001" };
//! let pending = LocalApproval {
//!     approval_id: "ap_0123456789abcdef",
//!     action_hash: &"ab".repeat(32),
//!     status: LocalStatus::Pending,
//!     expires_at: 1_795_086_000,
//! };
//! let consumed = HashSet::new();
//! let accepted = decision::check(&signed, &keyset, me, Some(pending), 1_795_000_310, &consumed).unwrap();
//! assert_eq!(accepted.decision, DecisionKind::AllowOnce);
//!
//! // The same decision once consumed is a replay.
//! let consumed: HashSet<String> = ["ap_0123456789abcdef".to_owned()].into();
//! let err = decision::check(&signed, &keyset, me, Some(pending), 1_795_000_310, &consumed).unwrap_err();
//! assert_eq!(err.code(), "replayed");
//! ```
#![deny(missing_docs)]

pub mod backoff;
pub mod client;
pub mod command;
pub mod decision;
pub mod enroll;
pub mod error;
pub mod health;
pub mod identity;
pub mod outbox;
pub mod protocol;
pub mod signing;
pub mod tls;

pub use error::{Error, ErrorClass, Result, TransportKind};
