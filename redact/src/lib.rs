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
//! of a detected value in the same text is redacted too (except copies of a plain lower-case
//! word such as `postgres` found after `password=`: elsewhere it is just the word).
//!
//! A vault value split over several strings (two messages, two content blocks) is in none of
//! them whole: [`Redactor::redact_parts`] takes the strings of a request in order and also
//! redacts the pieces of vault values that cross the boundaries between consecutive strings
//! ([`Redactor::scan_across`]), scanning only around the boundaries.
//!
//! What counts as a secret after `password=` / `secret:` (see `rules.rs`): any literal,
//! weak ones included (`changeme`, `hunter2`, `postgres` may well be the real password); not
//! references (`${DB_PASSWORD}`, `$DB_PASSWORD`, `%(pw)s`, `{{ .Values.pw }}`), placeholders
//! (`<your-password>`, `your_password_here`, `********`, `xxxx…`), empty values (`''`), code
//! (`os.getenv(…)`, `config.password`, an unquoted variable name such as `hashed_pw`), paths,
//! or keys that only mention passwords (`password_min_length`, `passwordField`,
//! `secret_name`). Documented example keys (AWS's `…EXAMPLE`, Stripe's published test key,
//! the jwt.io token) are never redacted. Vault values shorter than
//! [`vault::MIN_VALUE_LEN`] (6 bytes) are not searched for. Unknown secrets become a stable
//! placeholder keyed by a per-tenant secret, so the same value gives the same placeholder in every
//! turn and provider prompt caching keeps working. With [`Redactor::redact_capturing`] they may
//! instead be captured into the vault ([`capture`]): the text then references
//! `SECRET_REF(captured_<rule>_<10 hex>)`, the name derived from the same keyed HMAC.
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
pub mod capture;
pub mod entropy;
mod merge;
pub mod rules;
mod scan;
pub mod vault;

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, OnceLock};

use clawgate_protocol::{SecretName, SecretString};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

pub use cache::CacheStats;
pub use capture::{Capture, Offer};

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

    /// Drops what it keeps between calls to go faster (buffers, search caches); called when
    /// the process is idle. Default: nothing kept.
    fn release_memory(&self) {}
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
    /// Vault values, kept apart from the other detectors: [`Redactor::redact_parts`] also runs
    /// it across the boundaries between strings.
    vault: Option<vault::VaultDetector>,
    detectors: Vec<Arc<dyn Detector>>,
    placeholder_key: Zeroizing<[u8; 32]>,
    cache: cache::ResultCache,
}

/// Never the vault values the detectors hold, nor the placeholder key: only their shape.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field(
                "detectors",
                &(self.detectors.len() + usize::from(self.vault.is_some())),
            )
            .field("placeholder_key", &"**REDACTED**")
            .finish_non_exhaustive()
    }
}

/// Bytes scanned past the longest vault literal on each side of a boundary between strings
/// ([`Redactor::scan_across`]): room for a base64 or hex match to widen to its whole token.
const SEAM_MARGIN: usize = 64;

/// What [`Redactor::scan_seams`] found around the boundaries between consecutive parts.
#[derive(Debug, Clone, Default)]
pub struct Seams {
    /// `pieces[i]`: part `i`'s pieces of vault values split across parts, in its own byte
    /// offsets, sorted (what [`Redactor::scan_across`] returns).
    pub pieces: Vec<Vec<Finding>>,
    /// `clean[k]` for the boundary between parts `k` and `k + 1`: no vault value crosses it,
    /// and that follows from those two parts alone (each reaches past the scanned seam), so it
    /// holds wherever the same two texts meet again under this redactor. `false` says only
    /// that this is not known.
    pub clean: Vec<bool>,
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
        let mut detectors: Vec<Arc<dyn Detector>> = Vec::new();
        let vault = if self.vault.is_empty() {
            None
        } else {
            Some(vault::VaultDetector::new(&self.vault)?)
        };
        if !self.no_rules {
            detectors.push(default_rule_detector()?);
        }
        if !self.no_entropy {
            detectors.push(Arc::new(entropy::EntropyDetector::new()?));
        }
        let placeholder_key = self
            .placeholder_key
            .unwrap_or_else(|| Zeroizing::new([0; 32]));
        Ok(Redactor {
            vault,
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
        if let Some(v) = &self.vault {
            v.find(text, &mut raw);
        }
        for d in &self.detectors {
            d.find(text, &mut raw);
        }
        merge::every_copy(text, &mut raw);
        merge::merge(text, raw)
    }

    /// `text` with every finding replaced: vault values by `SECRET_REF(name)`, anything else by a
    /// stable placeholder `[REDACTED:<rule>:<10 hex>]`. Borrowed when nothing was found.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.redact_with_findings(text).0
    }

    /// [`Redactor::redact`] and the findings it replaced ([`Redactor::scan`]'s), from one scan:
    /// for callers that report what was redacted.
    pub fn redact_with_findings<'t>(&self, text: &'t str) -> (Cow<'t, str>, Vec<Finding>) {
        let findings = self.scan(text);
        if findings.is_empty() {
            return (Cow::Borrowed(text), findings);
        }
        let replacements = self.replacements(text, &findings);
        let redacted = splice(text, &findings, &replacements);
        (Cow::Owned(redacted), findings)
    }

    /// Like [`Redactor::redact_cached`], but each unknown secret is first offered to `capture`
    /// ([`capture`] module): accepted ones become `SECRET_REF(captured_<rule>_<10 hex>)`, the
    /// rest keep their placeholder. Findings come from the result cache; replacements are
    /// decided per call (the cache never holds a capture's answer, which may change).
    pub fn redact_capturing<'t>(&self, text: &'t str, capture: &dyn Capture) -> Cow<'t, str> {
        self.redact_capturing_with_findings(text, capture).0
    }

    /// [`Redactor::redact_capturing`] and the findings it replaced, from one scan.
    pub fn redact_capturing_with_findings<'t>(
        &self,
        text: &'t str,
        capture: &dyn Capture,
    ) -> (Cow<'t, str>, Vec<Finding>) {
        let findings = self.scan_cached(text);
        if findings.is_empty() {
            return (Cow::Borrowed(text), findings);
        }
        let replacements = self.replacements_with(text, &findings, Some(capture));
        let redacted = splice(text, &findings, &replacements);
        (Cow::Owned(redacted), findings)
    }

    /// Vault values (in every encoding) that are split across consecutive `parts`: found in
    /// the parts' concatenation, crossing at least one boundary between two of them, and
    /// reported as one piece per part they touch (`out[i]` holds part `i`'s pieces, in its own
    /// byte offsets, sorted). Nothing that lies wholly inside one part is reported here: that
    /// is [`Redactor::scan`]'s job. Only vault values are joined (a known value split in two is
    /// still known; a rule or entropy match of two unrelated strings' ends would be a guess).
    ///
    /// Only the seams are scanned: around each boundary, as far as the longest searched form
    /// of any vault value reaches, so the cost does not grow with the parts' length.
    pub fn scan_across(&self, parts: &[&str]) -> Vec<Vec<Finding>> {
        self.scan_seams(parts, |_| false).pieces
    }

    /// [`Redactor::scan_across`], skipping the boundaries the caller already knows to be clean
    /// (`known_clean(k)` for the boundary between parts `k` and `k + 1`), and telling which
    /// boundaries are clean in a way worth remembering ([`Seams::clean`]). Agents resend their
    /// history every turn: the seams between old messages are the same as last time.
    ///
    /// `known_clean(k)` is believed only for a boundary whose two parts are each at least as
    /// long as the scan reaches around it: only then does its result depend on those two texts
    /// alone (and on this redactor), so it can be remembered for that pair. For any other
    /// boundary it is ignored and the seam is scanned.
    pub fn scan_seams(&self, parts: &[&str], known_clean: impl Fn(usize) -> bool) -> Seams {
        let boundaries = parts.len().saturating_sub(1);
        let mut seams = Seams {
            pieces: vec![Vec::new(); parts.len()],
            clean: vec![true; boundaries],
        };
        let Some(vault) = &self.vault else {
            return seams;
        };
        if boundaries == 0 {
            return seams;
        }
        // Part i spans starts[i]..starts[i + 1] of the concatenation.
        let mut starts = Vec::with_capacity(parts.len() + 1);
        let mut total = 0;
        for p in parts {
            starts.push(total);
            total += p.len();
        }
        starts.push(total);
        // Regions of the concatenation around each boundary, merged when they overlap. The
        // margin covers a match's widening to the whole base64 or hex token around it.
        let reach = vault.max_len() + SEAM_MARGIN;
        let self_contained = |k: usize| parts[k].len() >= reach && parts[k + 1].len() >= reach;
        let mut regions: Vec<(usize, usize)> = Vec::new();
        for k in 0..boundaries {
            if self_contained(k) && known_clean(k) {
                continue;
            }
            let b = starts[k + 1];
            let (lo, hi) = (b.saturating_sub(reach), (b + reach).min(total));
            match regions.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => regions.push((lo, hi)),
            }
        }
        let mut buf = String::new();
        let mut found = Vec::new();
        for (lo, hi) in regions {
            // The region's text, from the parts it overlaps (edges moved outward to character
            // boundaries of their part).
            buf.clear();
            let first = starts.partition_point(|&s| s <= lo).saturating_sub(1);
            let mut region_start = lo;
            for i in first..parts.len() {
                let (ps, pe) = (starts[i], starts[i + 1]);
                if ps >= hi {
                    break;
                }
                let part = parts[i];
                let mut a = lo.max(ps) - ps;
                while !part.is_char_boundary(a) {
                    a -= 1;
                }
                let mut z = hi.min(pe) - ps;
                while !part.is_char_boundary(z) {
                    z += 1;
                }
                if i == first {
                    region_start = ps + a;
                }
                buf.push_str(&part[a..z]);
            }
            found.clear();
            vault.find(&buf, &mut found);
            for f in found.drain(..) {
                let (s, e) = (region_start + f.start, region_start + f.end);
                // The boundaries it crosses strictly inside it.
                let crossed: Vec<usize> = (0..boundaries)
                    .filter(|&k| s < starts[k + 1] && starts[k + 1] < e)
                    .collect();
                if crossed.is_empty() {
                    continue;
                }
                for k in crossed {
                    seams.clean[k] = false;
                }
                for i in 0..parts.len() {
                    let (ps, pe) = (starts[i], starts[i + 1]);
                    let (a, z) = (s.max(ps), e.min(pe));
                    if a < z {
                        seams.pieces[i].push(Finding {
                            start: a - ps,
                            end: z - ps,
                            ..f.clone()
                        });
                    }
                }
            }
        }
        for (k, clean) in seams.clean.iter_mut().enumerate() {
            *clean &= self_contained(k);
        }
        for (part, pieces) in parts.iter().zip(&mut seams.pieces) {
            *pieces = merge::merge(part, std::mem::take(pieces));
        }
        seams
    }

    /// Every part redacted as by [`Redactor::redact_cached`], and also the pieces of vault
    /// values split across consecutive parts ([`Redactor::scan_across`]), each piece replaced
    /// by `SECRET_REF(name)`. For the strings of one request that carry message text, in
    /// order: a secret split over two messages (or two content blocks) is found although
    /// neither string holds it whole. `out[i]` is borrowed when part `i` is unchanged.
    pub fn redact_parts<'t>(&self, parts: &[&'t str]) -> Vec<Cow<'t, str>> {
        let across = self.scan_across(parts);
        parts
            .iter()
            .zip(across)
            .map(|(&part, pieces)| {
                if pieces.is_empty() {
                    return self.redact_cached(part);
                }
                let mut findings = self.scan_cached(part);
                findings.extend(pieces);
                let findings = merge::merge(part, findings);
                let replacements = self.replacements(part, &findings);
                Cow::Owned(splice(part, &findings, &replacements))
            })
            .collect()
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

    /// Drops everything kept between calls only to go faster: the result cache, and the
    /// detectors' buffers and regex search caches (shared by every redactor using the default
    /// rules). For an idle daemon: the next call rebuilds what it needs.
    pub fn release_idle_memory(&self) {
        self.cache.clear();
        for d in &self.detectors {
            d.release_memory();
        }
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
        self.replacements_with(text, findings, None)
    }

    /// [`Redactor::replacements`], offering unknown secrets to `capture` when there is one.
    fn replacements_with(
        &self,
        text: &str,
        findings: &[Finding],
        capture: Option<&dyn Capture>,
    ) -> Vec<Box<str>> {
        let mut keyed: Option<Hmac<Sha256>> = None;
        // Where each (rule, value) was first replaced: a repeat copies that replacement. Sized
        // for every finding up front (a dense prompt has one distinct value per finding).
        let mut first: HashMap<(&str, &str), usize> = HashMap::with_capacity(findings.len());
        let mut out: Vec<Box<str>> = Vec::with_capacity(findings.len());
        for f in findings {
            let replacement = match &f.secret {
                Some(name) => secret_ref(name.as_str()),
                None => {
                    let value = &text[f.start..f.end];
                    match first.entry((&f.rule, value)) {
                        Entry::Occupied(seen) => out[*seen.get()].clone(),
                        Entry::Vacant(slot) => {
                            slot.insert(out.len());
                            let mac = keyed.get_or_insert_with(|| self.keyed_mac()).clone();
                            let tag = tag_with(mac, value);
                            capture.and_then(|c| offer(c, f, &tag, value)).map_or_else(
                                || redacted_placeholder(&f.rule, &tag).into_boxed_str(),
                                |name| secret_ref(name.as_str()),
                            )
                        }
                    }
                }
            };
            out.push(replacement);
        }
        out
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

/// The default rules, compiled once per process and shared by every redactor: they do not
/// depend on the vault, and the daemon builds a new redactor on every vault change (compiling
/// and analysing the rules' regexes was most of a 1,000-value build).
fn default_rule_detector() -> Result<Arc<rules::RuleDetector>, Error> {
    static COMPILED: OnceLock<Arc<rules::RuleDetector>> = OnceLock::new();
    if let Some(rules) = COMPILED.get() {
        return Ok(Arc::clone(rules));
    }
    let rules = Arc::new(rules::RuleDetector::new()?);
    Ok(Arc::clone(COMPILED.get_or_init(|| rules)))
}

fn placeholder_with(mac: Hmac<Sha256>, rule: &str, value: &str) -> String {
    redacted_placeholder(rule, &tag_with(mac, value))
}

/// 10 hex characters of the keyed HMAC of `value`: a placeholder's and a captured name's tail.
fn tag_with(mut mac: Hmac<Sha256>, value: &str) -> String {
    mac.update(value.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..5])
}

/// `[REDACTED:<rule>:<tag>]`, built by hand: dense prompts need one per secret, and `format!`
/// was most of their cost.
fn redacted_placeholder(rule: &str, tag: &str) -> String {
    let mut out = String::with_capacity("[REDACTED::]".len() + rule.len() + tag.len());
    out.push_str("[REDACTED:");
    out.push_str(rule);
    out.push(':');
    out.push_str(tag);
    out.push(']');
    out
}

/// `SECRET_REF(name)`.
fn secret_ref(name: &str) -> Box<str> {
    let mut out = String::with_capacity("SECRET_REF()".len() + name.len());
    out.push_str("SECRET_REF(");
    out.push_str(name);
    out.push(')');
    out.into_boxed_str()
}

/// Offers one unknown secret to `capture`, if it is worth capturing at all.
fn offer(capture: &dyn Capture, f: &Finding, tag: &str, value: &str) -> Option<SecretName> {
    if !capture::capturable(value) {
        return None;
    }
    let name = capture::captured_name(&f.rule, tag)?;
    capture.offer(&Offer {
        name: &name,
        tag,
        rule: &f.rule,
        detector: f.detector,
        value,
    })
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

/// Whether `word` occurs in `hay`, ASCII letters in either case (`DB_Password` holds `passw`).
#[inline]
pub(crate) fn contains_ignore_ascii_case(hay: &[u8], word: &[u8]) -> bool {
    hay.windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word))
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
