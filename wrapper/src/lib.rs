//! `clawgate-wrapper`: the daemon behind `clawgate serve`.
//!
//! OpenClaw's plugin (`wrapper/openclaw-plugin/`) forwards every tool call to the hook socket;
//! [`engine::Engine`] classifies it with the policy, decides by the tenant's autonomy tier,
//! holds calls that need the owner's approval, resolves `SECRET_REF(name)` inside each secret's
//! scope, redacts secrets from tool output and writes every step to a hash-chained audit log.
//! The owner answers through the admin socket (`clawgate approvals`) or the approval page.
//!
//! The hook API is specified in `wrapper/openapi.json`; a test checks it against the routes.

pub mod admin;
pub mod capture;
pub mod client;
pub mod config;
pub mod daemon;
pub mod egress;
pub mod engine;
pub mod error;
pub mod hublink;
pub mod lock;
pub mod metrics;
pub mod openclaw;
pub mod secrets;
pub mod server;
pub mod store;
pub mod summary;
pub mod tokens;

pub use config::{Accounts, LogTarget, RawConfig, Settings, SystemAccounts};
pub use error::{Error, Result};
