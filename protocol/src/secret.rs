//! [`SecretString`]: a secret value that never prints and is wiped from memory on drop.

use std::fmt;

use zeroize::Zeroizing;

/// What `Debug` and `Display` print instead of a secret value.
pub const REDACTED: &str = "**REDACTED**";

/// A secret value (an API key, a password). Its `Debug` and `Display` print [`REDACTED`], it is
/// not `Serialize`, and its heap buffer is zeroized when dropped. Read it with
/// [`SecretString::expose`], at the one place that must hand it on.
#[derive(Clone, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `value`; the `String` is moved, not copied, so no unzeroized copy is left behind.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The plaintext. Every call site is a place where the secret leaves this type: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (not secret: the vault and the redactor need it).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Compares two byte strings in time that depends only on their lengths, so comparing a token or
/// a MAC leaks no matching prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl PartialEq for SecretString {
    /// Constant-time (see [`constant_time_eq`]).
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for SecretString {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = SecretString::new("sk-live-hunter2".to_owned());
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&s)), format!("Some({REDACTED})"));
        assert_eq!(s.expose(), "sk-live-hunter2");
    }

    #[test]
    fn equality_compares_values() {
        let a = SecretString::new("abc".into());
        assert_eq!(a, SecretString::new("abc".into()));
        assert_ne!(a, SecretString::new("abd".into()));
        assert_ne!(a, SecretString::new("ab".into()));
    }
}
