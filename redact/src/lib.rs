//! `clawgate-redact`: finds secrets in text and replaces them, for every LLM request the egress
//! proxy forwards and every tool result the hook server returns.
//!
//! Three detectors run behind one [`Detector`] trait:
//!
//! * [`vault::VaultDetector`]: every vault value, and the forms it takes on the way (JSON-escaped,
//!   URL-encoded, hex, base64 at every byte alignment, so `user:value` inside HTTP Basic auth is
//!   found without knowing the user), in one sampled pass of a hashed literal set. Replaced by
//!   `SECRET_REF(name)`.
//! * [`rules::RuleDetector`]: known credential formats, each gated by keywords found in one
//!   case-insensitive pass that probes every second byte, and run only in a window around the
//!   hits.
//! * [`entropy::EntropyDetector`]: unnamed high-entropy tokens, only in secret-like context and
//!   never for what is known not to be a secret (UUIDs, lockfile hashes, images, public keys,
//!   documented example keys).
//!
//! Throughput with 1,000 vault values, every rule and entropy is measured by `benches/redact.rs`
//! (about 3.8x the previous scanners on realistic prompt text). Agents resend their whole history
//! every turn: [`Redactor::redact_cached`] answers a string seen before from a bounded cache of
//! results (keyed by a keyed hash, never holding the text).
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

mod cache;
pub mod entropy;
mod merge;
pub mod rules;
mod scan;
pub mod vault;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use clawgate_protocol::{SecretName, SecretString};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

pub use cache::CacheStats;

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
pub struct Redactor {
    detectors: Vec<Box<dyn Detector>>,
    placeholder_key: Zeroizing<[u8; 32]>,
    cache: cache::ResultCache,
}

/// Never the vault values the detectors hold, nor the placeholder key: only their shape.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("detectors", &self.detectors.len())
            .field("placeholder_key", &"**REDACTED**")
            .finish_non_exhaustive()
    }
}

/// Bytes the result cache behind [`Redactor::redact_cached`] may hold unless
/// [`RedactorBuilder::cache_bytes`] says otherwise: about 40,000 strings with nothing to redact.
pub const DEFAULT_CACHE_BYTES: usize = 4 << 20;

/// Builds a [`Redactor`].
#[derive(Default)]
pub struct RedactorBuilder {
    vault: Vec<(SecretName, SecretString)>,
    placeholder_key: Option<Zeroizing<[u8; 32]>>,
    no_rules: bool,
    no_entropy: bool,
    cache_bytes: Option<usize>,
}

/// Names and counts only: never a value or the placeholder key.
impl std::fmt::Debug for RedactorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedactorBuilder")
            .field("vault_values", &self.vault.len())
            .field("no_rules", &self.no_rules)
            .field("no_entropy", &self.no_entropy)
            .finish_non_exhaustive()
    }
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

    /// Memory budget of the result cache of [`Redactor::redact_cached`] (default
    /// [`DEFAULT_CACHE_BYTES`]; 0 turns the cache off). An entry holds a text's findings and
    /// replacements, never the text: about 100 bytes for a text with nothing to redact.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = Some(bytes);
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
            cache: cache::ResultCache::new(self.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES)),
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
        let replacements = self.replacements(text, &findings);
        Cow::Owned(splice(text, &findings, &replacements))
    }

    /// Like [`Redactor::redact`], but a text this redactor has already seen (the same string in
    /// an earlier turn of a conversation) is answered from a bounded cache of results, at the
    /// cost of hashing it. The cache holds findings and replacements under a keyed hash of the
    /// text, never the text itself. Short texts are always scanned.
    pub fn redact_cached<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let Some(cached) = self.cached(text) else {
            return self.redact(text);
        };
        if cached.findings.is_empty() {
            return Cow::Borrowed(text);
        }
        Cow::Owned(splice(text, &cached.findings, &cached.replacements))
    }

    /// Like [`Redactor::scan`], answered from the cache of [`Redactor::redact_cached`] when
    /// `text` was seen before.
    pub fn scan_cached(&self, text: &str) -> Vec<Finding> {
        match self.cached(text) {
            Some(cached) => cached.findings.clone(),
            None => self.scan(text),
        }
    }

    /// Hits, misses and size of the result cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Empties the result cache.
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// The cached result for `text`, computing and storing it on a miss; `None` when `text` is
    /// too short to be worth caching or the cache is off.
    fn cached(&self, text: &str) -> Option<Arc<cache::Cached>> {
        if text.len() < cache::MIN_CACHED_LEN || !self.cache.enabled() {
            return None;
        }
        let key = self.cache.key(text);
        if let Some(hit) = self.cache.get(&key) {
            return Some(hit);
        }
        let findings = self.scan(text);
        let replacements = self.replacements(text, &findings);
        let entry = Arc::new(cache::Cached {
            findings,
            replacements,
        });
        self.cache.put(key, Arc::clone(&entry));
        Some(entry)
    }

    /// The replacement of each finding. Placeholders are computed once per distinct value (a
    /// secret repeated through a prompt costs one HMAC), with the key schedule done once.
    fn replacements(&self, text: &str, findings: &[Finding]) -> Vec<Box<str>> {
        let mut keyed: Option<Hmac<Sha256>> = None;
        let mut memo: HashMap<(&str, &str), Box<str>> = HashMap::new();
        findings
            .iter()
            .map(|f| match &f.secret {
                Some(name) => format!("SECRET_REF({})", name.as_str()).into_boxed_str(),
                None => {
                    let value = &text[f.start..f.end];
                    memo.entry((&f.rule, value))
                        .or_insert_with(|| {
                            let mac = keyed.get_or_insert_with(|| self.keyed_mac()).clone();
                            placeholder_with(mac, &f.rule, value).into_boxed_str()
                        })
                        .clone()
                }
            })
            .collect()
    }

    fn keyed_mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(self.placeholder_key.as_ref())
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()))
    }

    /// The stable placeholder for an unknown secret `value` found by `rule`.
    pub fn placeholder(&self, rule: &str, value: &str) -> String {
        placeholder_with(self.keyed_mac(), rule, value)
    }
}

fn placeholder_with(mut mac: Hmac<Sha256>, rule: &str, value: &str) -> String {
    mac.update(value.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("[REDACTED:{rule}:{}]", hex::encode(&tag[..5]))
}

/// `text` with each finding's span replaced by its replacement.
fn splice(text: &str, findings: &[Finding], replacements: &[Box<str>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (f, r) in findings.iter().zip(replacements) {
        out.push_str(&text[last..f.start]);
        out.push_str(r);
        last = f.end;
    }
    out.push_str(&text[last..]);
    out
}

/// Characters that never start or continue a token we would redact; used to trim spans.
#[inline(always)]
pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// [`is_token_byte`] as a table (one load instead of a chain of range checks).
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-' | b'.');
        b += 1;
    }
    table
};
