//! `clawgate-redact`: finds secrets in text and replaces them, for every LLM request the egress
//! proxy forwards and every tool result the hook server returns.
//!
//! Three detectors run behind one [`Detector`] trait:
//!
//! * [`vault::VaultDetector`]: every vault value, and the forms it takes on the way (JSON-escaped,
//!   URL-encoded, hex, base64 at every byte alignment, so `user:value` inside HTTP Basic auth is
//!   found without knowing the user), in one Aho-Corasick DFA pass. Replaced by `SECRET_REF(name)`.
//! * [`rules::RuleDetector`]: known credential formats, each gated by keywords found in one
//!   case-insensitive automaton pass and run only in a window around the hits.
//! * [`entropy::EntropyDetector`]: unnamed high-entropy tokens, only in secret-like context and
//!   never for what is known not to be a secret (UUIDs, lockfile hashes, images, public keys,
//!   documented example keys).
//!
//! Overlapping findings merge into one span (nothing is left half-redacted), and every other copy
//! of a detected value in the same text is redacted too. Unknown secrets become a stable
//! placeholder keyed by a per-tenant secret, so the same value gives the same placeholder in every
//! turn and provider prompt caching keeps working.
//!
//! ```
//! use clawgate_protocol::SecretString;
//! use clawgate_redact::Redactor;
//!
//! let redactor = Redactor::builder()
//!     .vault_value("stripe".parse()?, SecretString::new("sk_live_51Habcdefghijklmnop".into()))
//!     .placeholder_key([7; 32])
//!     .build()?;
//! let out = redactor.redact("key=sk_live_51Habcdefghijklmnop and ghp_0123456789abcdefghijklmnopqrstuvwxyz");
//! assert!(out.starts_with("key=SECRET_REF(stripe) and [REDACTED:github-pat:"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod entropy;
mod merge;
pub mod rules;
mod scan;
pub mod vault;

use std::borrow::Cow;

use clawgate_protocol::{SecretName, SecretString};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Which detector produced a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// A vault value (in some encoding).
    Vault,
    /// A credential-format rule.
    Rule,
    /// A high-entropy token in secret-like context.
    Entropy,
}

/// One secret found in a text: byte offsets, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Start byte offset (inclusive).
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
    /// Rule id: `vault.<encoding>` for vault values, the rule's id otherwise.
    pub rule: Cow<'static, str>,
    /// Detector.
    pub detector: DetectorKind,
    /// The vault secret's name, for vault findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretName>,
}

/// A source of findings. Implementations must be fast on text with no secret in it: they are
/// run on every byte of every prompt.
pub trait Detector: Send + Sync + std::fmt::Debug {
    /// Appends every finding in `text` to `out` (any order, overlaps allowed).
    fn find(&self, text: &str, out: &mut Vec<Finding>);
}

/// Errors building a redactor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A detector could not be built (an automaton or regex failed to compile).
    #[error("cannot build the {what}: {reason}")]
    Build {
        /// Which part.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// The combined redactor.
#[derive(Debug)]
pub struct Redactor {
    detectors: Vec<Box<dyn Detector>>,
    placeholder_key: Zeroizing<[u8; 32]>,
}

/// Builds a [`Redactor`].
#[derive(Debug, Default)]
pub struct RedactorBuilder {
    vault: Vec<(SecretName, SecretString)>,
    placeholder_key: Option<Zeroizing<[u8; 32]>>,
    no_rules: bool,
    no_entropy: bool,
}

impl RedactorBuilder {
    /// Adds a vault value.
    pub fn vault_value(mut self, name: SecretName, value: SecretString) -> Self {
        self.vault.push((name, value));
        self
    }

    /// Adds many vault values.
    pub fn vault_values(
        mut self,
        values: impl IntoIterator<Item = (SecretName, SecretString)>,
    ) -> Self {
        self.vault.extend(values);
        self
    }

    /// The per-tenant key that makes placeholders stable and unguessable.
    pub fn placeholder_key(mut self, key: [u8; 32]) -> Self {
        self.placeholder_key = Some(Zeroizing::new(key));
        self
    }

    /// Turns the credential-format rules off (vault values only).
    pub fn without_rules(mut self) -> Self {
        self.no_rules = true;
        self
    }

    /// Turns the entropy detector off.
    pub fn without_entropy(mut self) -> Self {
        self.no_entropy = true;
        self
    }

    /// Compiles the detectors.
    pub fn build(self) -> Result<Redactor, Error> {
        let mut detectors: Vec<Box<dyn Detector>> = Vec::new();
        if !self.vault.is_empty() {
            detectors.push(Box::new(vault::VaultDetector::new(&self.vault)?));
        }
        if !self.no_rules {
            detectors.push(Box::new(rules::RuleDetector::new()?));
        }
        if !self.no_entropy {
            detectors.push(Box::new(entropy::EntropyDetector::new()?));
        }
        let placeholder_key = self
            .placeholder_key
            .unwrap_or_else(|| Zeroizing::new([0; 32]));
        Ok(Redactor {
            detectors,
            placeholder_key,
        })
    }
}

impl Redactor {
    /// A builder.
    pub fn builder() -> RedactorBuilder {
        RedactorBuilder::default()
    }

    /// Every secret in `text`, sorted, non-overlapping (overlaps merged into one span), every copy
    /// of each detected value included.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut raw = Vec::new();
        for d in &self.detectors {
            d.find(text, &mut raw);
        }
        merge::every_copy(text, &mut raw);
        merge::merge(text, raw)
    }

    /// `text` with every finding replaced: vault values by `SECRET_REF(name)`, anything else by a
    /// stable placeholder `[REDACTED:<rule>:<10 hex>]`. Borrowed when nothing was found.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let findings = self.scan(text);
        if findings.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for f in &findings {
            out.push_str(&text[last..f.start]);
            match &f.secret {
                Some(name) => {
                    out.push_str("SECRET_REF(");
                    out.push_str(name.as_str());
                    out.push(')');
                }
                None => out.push_str(&self.placeholder(&f.rule, &text[f.start..f.end])),
            }
            last = f.end;
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }

    /// The stable placeholder for an unknown secret `value` found by `rule`.
    pub fn placeholder(&self, rule: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.placeholder_key.as_ref())
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
        mac.update(value.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("[REDACTED:{rule}:{}]", hex::encode(&tag[..5]))
    }
}

/// Characters that never start or continue a token we would redact; used to trim spans.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-' | b'.')
}
