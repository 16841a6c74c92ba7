//! The `SECRET_REF(name)` grammar: the only form in which a secret appears to the agent or model.
//!
//! ```text
//! secret_ref = "SECRET_REF(" name ")"
//! name       = 1*64( ALPHA / DIGIT / "_" / "." / "-" )
//! ```
//!
//! Matching is case-sensitive and allows no whitespace. Text that starts like a reference
//! (`SECRET_REF(`) but does not complete one is reported as [`RefToken::Malformed`], so callers
//! can refuse it rather than guess: a half-formed reference is either a bug or an attempt to
//! confuse a parser.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The literal that opens a reference.
pub const OPEN: &str = "SECRET_REF(";
/// Longest valid name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A validated secret name: `[A-Za-z0-9_.-]{1,64}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

/// Why a string is not a valid [`SecretName`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    reason: &'static str,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid secret name: {} (names are 1-64 characters of A-Z a-z 0-9 _ . -)",
            self.reason
        )
    }
}

impl std::error::Error for InvalidName {}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

impl SecretName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, InvalidName> {
        if name.is_empty() {
            return Err(InvalidName { reason: "empty" });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(InvalidName {
                reason: "longer than 64 characters",
            });
        }
        if !name.bytes().all(is_name_byte) {
            return Err(InvalidName {
                reason: "contains a character outside A-Z a-z 0-9 _ . -",
            });
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl FromStr for SecretName {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for SecretName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for SecretName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::new(&raw).map_err(serde::de::Error::custom)
    }
}

/// A whole reference, `SECRET_REF(name)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretRef {
    /// The secret it names.
    pub name: SecretName,
}

impl SecretRef {
    /// Parses exactly one reference spanning all of `text`.
    pub fn parse(text: &str) -> Result<Self, InvalidName> {
        let mut tokens = scan(text);
        match (tokens.next(), tokens.next()) {
            (Some(RefToken::Ref { range, name }), None) if range == (0..text.len()) => {
                Ok(Self { name })
            }
            _ => Err(InvalidName {
                reason: "not of the form SECRET_REF(name)",
            }),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{OPEN}{})", self.name)
    }
}

/// One occurrence found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefToken {
    /// A well-formed reference at `range` (byte offsets into the scanned text).
    Ref {
        /// Byte range of the whole `SECRET_REF(name)`.
        range: Range<usize>,
        /// The secret named.
        name: SecretName,
    },
    /// `SECRET_REF(` that does not complete a valid reference.
    Malformed {
        /// Byte range from `SECRET_REF(` to where parsing stopped.
        range: Range<usize>,
    },
}

/// Finds every `SECRET_REF(` in `text`, in order, without allocation beyond the names.
pub fn scan(text: &str) -> impl Iterator<Item = RefToken> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let start = pos + text.get(pos..)?.find(OPEN)?;
        let name_start = start + OPEN.len();
        let bytes = text.as_bytes();
        let name_len = bytes[name_start..]
            .iter()
            .take(MAX_NAME_LEN + 1)
            .take_while(|b| is_name_byte(**b))
            .count();
        let close = name_start + name_len;
        if (1..=MAX_NAME_LEN).contains(&name_len) && bytes.get(close) == Some(&b')') {
            pos = close + 1;
            let name = SecretName(text[name_start..close].to_owned());
            return Some(RefToken::Ref {
                range: start..pos,
                name,
            });
        }
        // Resume right after the opener so a well-formed reference nested inside is still seen.
        pos = name_start;
        Some(RefToken::Malformed {
            range: start..close,
        })
    })
}

/// True when `text` contains `SECRET_REF(` in any form, well-formed or not.
pub fn mentions_ref(text: &str) -> bool {
    text.contains(OPEN)
}

/// Returns `text` with every well-formed reference replaced by `replace(name)`. Malformed
/// occurrences are left as they are; callers that must refuse them check [`scan`] first.
pub fn replace_refs(text: &str, mut replace: impl FnMut(&SecretName) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for token in scan(text) {
        if let RefToken::Ref { range, name } = token {
            out.push_str(&text[last..range.start]);
            out.push_str(&replace(&name));
            last = range.end;
        }
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Found = Vec<Result<String, Range<usize>>>;

    fn names(text: &str) -> Found {
        scan(text)
            .map(|t| match t {
                RefToken::Ref { name, .. } => Ok(name.to_string()),
                RefToken::Malformed { range } => Err(range),
            })
            .collect()
    }

    #[test]
    fn scan_table() {
        let max = "a".repeat(64);
        let too_long = "a".repeat(65);
        let cases: Vec<(String, Found)> = vec![
            ("no refs here".into(), vec![]),
            ("SECRET_REF(stripe)".into(), vec![Ok("stripe".into())]),
            (
                "x=SECRET_REF(a.b-c_D9) y=SECRET_REF(z)".into(),
                vec![Ok("a.b-c_D9".into()), Ok("z".into())],
            ),
            (
                "SECRET_REF(SECRET_REF(a))".into(),
                vec![Err(0..21), Ok("a".into())],
            ),
            (format!("SECRET_REF({max})"), vec![Ok(max.clone())]),
            (format!("SECRET_REF({too_long})"), vec![Err(0..76)]),
            ("SECRET_REF()".into(), vec![Err(0..11)]),
            ("SECRET_REF(bad name)".into(), vec![Err(0..14)]),
            ("SECRET_REF(unterminated".into(), vec![Err(0..23)]),
            ("secret_ref(lower)".into(), vec![]),
            ("SECRET_REF (space)".into(), vec![]),
            ("SECRET_REF(é)".into(), vec![Err(0..11)]),
        ];
        for (text, want) in cases {
            assert_eq!(names(&text), want, "{text}");
        }
    }

    #[test]
    fn parse_requires_the_whole_string() {
        assert_eq!(
            SecretRef::parse("SECRET_REF(x)").unwrap().name.as_str(),
            "x"
        );
        assert!(SecretRef::parse(" SECRET_REF(x)").is_err());
        assert!(SecretRef::parse("SECRET_REF(x)y").is_err());
        assert!(SecretRef::parse("SECRET_REF(x").is_err());
        assert_eq!(
            SecretRef::parse("SECRET_REF(x)").unwrap().to_string(),
            "SECRET_REF(x)"
        );
    }

    #[test]
    fn names_validate() {
        assert!(SecretName::new("OPENAI_API_KEY").is_ok());
        assert!(SecretName::new("").is_err());
        assert!(SecretName::new("a/b").is_err());
        assert!(SecretName::new(&"x".repeat(65)).is_err());
    }

    #[test]
    fn replace_keeps_everything_else() {
        let out = replace_refs("a SECRET_REF(x) b SECRET_REF(bad name) c", |n| {
            format!("<{n}>")
        });
        assert_eq!(out, "a <x> b SECRET_REF(bad name) c");
    }

    proptest::proptest! {
        #[test]
        fn scan_never_panics_and_ranges_are_in_bounds(text in "\\PC{0,80}(SECRET_REF\\(\\PC{0,70}\\)?)?\\PC{0,20}") {
            for token in scan(&text) {
                let range = match token { RefToken::Ref { range, .. } | RefToken::Malformed { range } => range };
                proptest::prop_assert!(range.end <= text.len() && text.is_char_boundary(range.start) && text.is_char_boundary(range.end));
            }
        }
    }
}
