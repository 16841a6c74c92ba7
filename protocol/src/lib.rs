//! Shared types for every Clawgate crate: the `SECRET_REF(name)` grammar, the zeroizing
//! [`SecretString`], and the small environment and I/O seams that keep the other crates testable.
//!
//! This crate depends on no sibling crate and does no network I/O.
//!
//! ```
//! use clawgate_protocol::secret_ref::{scan, RefToken};
//!
//! let found: Vec<_> = scan("curl -H 'Authorization: Bearer SECRET_REF(stripe)'").collect();
//! assert!(matches!(&found[0], RefToken::Ref { name, .. } if name.as_str() == "stripe"));
//! ```
#![deny(missing_docs)]

pub mod env;
pub mod io;
pub mod jsonschema;
pub mod secret;
pub mod secret_ref;

pub use secret::SecretString;
pub use secret_ref::{SecretName, SecretRef};
