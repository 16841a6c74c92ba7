//! Capturing unknown secrets into the vault (opt-in, issue #5): the seam between the redactor,
//! which decides the text, and whoever stores the value ([`Capture`]).
//!
//! The name a captured value is stored under is derived from the same keyed HMAC as its
//! placeholder (`captured_<rule>_<10 hex>`), so it is known before anything is written: the text
//! says `SECRET_REF(captured_…)` at once, and once the vault holds the value the vault detector
//! finds it and writes the very same reference, so provider prompt caching sees no change.

use clawgate_protocol::SecretName;

use crate::DetectorKind;

/// Prefix of every captured secret's name.
pub const CAPTURED_PREFIX: &str = "captured_";

/// Captured values shorter than this stay placeholders: the vault detector searches for every
/// copy of a vault value, and a short value would then be redacted wherever it occurs by chance
/// (the redactor chases other copies of unknown secrets only from 8 bytes on, for the same
/// reason). Also at least the vault detector's own minimum, or the capture would not be found.
pub const MIN_CAPTURED_LEN: usize = 8;

/// Longest rule id kept in a captured name (`captured_` + rule + `_` + 10 hex ≤ 64, the
/// `SECRET_REF` name grammar's limit).
const MAX_RULE_IN_NAME: usize = 64 - CAPTURED_PREFIX.len() - 1 - 10;

/// One unknown secret the redactor offers for capture. The value is borrowed from the text
/// being redacted; an implementation that keeps it must wrap it in a `SecretString` at once.
#[derive(Clone, Copy)]
pub struct Offer<'a> {
    /// The name it would be stored under ([`captured_name`]).
    pub name: &'a SecretName,
    /// The 10 hex characters of its keyed HMAC (the same as in its placeholder): the value's
    /// identity whatever rule found it.
    pub tag: &'a str,
    /// The rule that found it.
    pub rule: &'a str,
    /// [`DetectorKind::Rule`] or [`DetectorKind::Entropy`].
    pub detector: DetectorKind,
    /// The value.
    pub value: &'a str,
}

/// Never the value.
impl std::fmt::Debug for Offer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offer")
            .field("name", &self.name.as_str())
            .field("rule", &self.rule)
            .field("detector", &self.detector)
            .finish_non_exhaustive()
    }
}

/// Takes unknown secrets into the vault. Called synchronously while a text is redacted, so it
/// must be quick (queue the write, never perform it inline).
pub trait Capture: Send + Sync {
    /// The name the text should reference for `offer`: usually `offer.name`, or the name the
    /// same value (same tag) was already captured under. `None` keeps the placeholder (capture
    /// off for this detector, the cap reached, the queue full, the vault failing).
    fn offer(&self, offer: &Offer<'_>) -> Option<SecretName>;
}

/// `captured_<rule>_<tag>`: the rule with anything outside the name grammar replaced by `-`,
/// cut so the whole name fits 64 characters.
pub fn captured_name(rule: &str, tag: &str) -> Option<SecretName> {
    let rule: String = rule
        .chars()
        .take(MAX_RULE_IN_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    SecretName::new(&format!("{CAPTURED_PREFIX}{rule}_{tag}")).ok()
}

/// The tag of a captured name (its last 10 characters), if `name` has the captured shape.
pub fn captured_tag(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(CAPTURED_PREFIX)?;
    let (_, tag) = rest.rsplit_once('_')?;
    (tag.len() == 10 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(tag)
}

/// Whether a found value may be captured: long enough, and not a plain lower-case word (found
/// after `password=` it is redacted there, but as a vault value every `postgres` in every prompt
/// would become a reference).
pub(crate) fn capturable(value: &str) -> bool {
    value.len() >= MIN_CAPTURED_LEN.max(crate::vault::MIN_VALUE_LEN)
        && !value.bytes().all(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_grammar_and_give_back_their_tag() {
        let n = captured_name("github-pat", "0123456789").unwrap();
        assert_eq!(n.as_str(), "captured_github-pat_0123456789");
        assert_eq!(captured_tag(n.as_str()), Some("0123456789"));
        let long = captured_name(&"x".repeat(100), "abcdefabcd").unwrap();
        assert_eq!(long.as_str().len(), 64);
        assert_eq!(captured_tag(long.as_str()), Some("abcdefabcd"));
        assert_eq!(
            captured_name("a b/c", "0000000000").unwrap().as_str(),
            "captured_a-b-c_0000000000"
        );
        assert_eq!(captured_tag("captured_x_12"), None);
        assert_eq!(captured_tag("stripe"), None);
    }

    #[test]
    fn short_values_and_plain_words_are_not_captured() {
        assert!(!capturable("hunter2"));
        assert!(!capturable("postgresql"));
        assert!(capturable("hunter22"));
        assert!(capturable("ghp_0123456789abcdefghijklmnopqrstuvwxyz"));
    }
}
