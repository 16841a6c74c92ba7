//! Known credential formats. Every rule names keywords; one ASCII-case-insensitive pass of the
//! keyword scanner in `scan.rs` finds them all, and a rule's regex runs only in windows around its
//! keywords' hits (one big `RegexSet` measured 0.2 MB/s here: never do that inline).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use base64::Engine;
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input, meta};
use regex_syntax::hir::{Class, Hir, HirKind, literal};

use crate::{Detector, DetectorKind, Error, Finding};

mod prefixed;
mod table;

/// Keywords that, on a table row, start the search for secrets in the table ([`table`]).
const TABLE_KEYWORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "_pass",
    "-pass",
];

/// One credential format.
#[derive(Debug, Clone, Copy)]
pub struct RuleSpec {
    /// Stable id, shown in findings and placeholders.
    pub id: &'static str,
    /// Lower-case keywords; the rule runs only near one of them.
    pub keywords: &'static [&'static str],
    /// Regex (bytes, ASCII classes). The secret is the first group that matched, else the match.
    pub pattern: &'static str,
    /// Bytes before a keyword hit where the secret may start.
    pub back: usize,
    /// Bytes after a keyword hit where the secret may end.
    pub fwd: usize,
    /// Extra check on the candidate secret; `false` drops it. Every candidate of every rule
    /// must also not be a documented example or a placeholder ([`not_example`]), which is
    /// checked before `accept` runs (so the checks below need not repeat it).
    pub accept: Option<fn(&Candidate<'_>) -> bool>,
    /// Literals of which one must occur in a window for the regex to run there (a cheap
    /// filter for rules whose keyword is common and whose context is not: `value:` after a
    /// Kubernetes env name, `</` of an XML element). Empty: always run.
    pub needs: &'static [&'static str],
}

/// A candidate secret, as a rule's `accept` check sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The secret (the first group that matched, else the whole match).
    pub value: &'a [u8],
    /// The whole match (key, operator and value for assignment rules).
    pub matched: &'a [u8],
    /// Whether a quote (`"`, `'`, `` ` ``) stands right before the value.
    pub quoted: bool,
    /// The byte before the whole match, if any.
    pub preceding: Option<u8>,
    /// Up to 8 bytes after the value (`: Type = …` shows a type annotation, not a value).
    pub following: &'a [u8],
}

const fn rule(
    id: &'static str,
    keywords: &'static [&'static str],
    pattern: &'static str,
    back: usize,
    fwd: usize,
) -> RuleSpec {
    RuleSpec {
        id,
        keywords,
        pattern,
        back,
        fwd,
        accept: None,
        needs: &[],
    }
}

/// Bytes that start a needle of [`is_placeholder`], in either case.
static NEEDLE_START: [bool; 256] = {
    let mut table = [false; 256];
    let starts = b"eErRpPyYcC";
    let mut i = 0;
    while i < starts.len() {
        table[starts[i] as usize] = true;
        i += 1;
    }
    table
};

/// Bytes of a value searched for placeholder words and masks.
const PLACEHOLDER_SCAN: usize = 160;

/// Case-insensitive words that make a value a placeholder (`your_password_here`).
const PLACEHOLDER_NEEDLES: &[&[u8]] = &[
    b"example",
    b"redacted",
    b"placeholder",
    b"your_",
    b"your-",
    b"changeme_",
];

/// True for values that are placeholders, references or our own redactions, not secrets.
pub fn is_placeholder(v: &[u8]) -> bool {
    // Placeholders are short: a long value (a PEM block, a JWT) is only checked for the
    // prefixes below, not scanned for needles. The cheap tests come first; every value that is
    // a secret pays for all of them, so the two scans of its bytes come last.
    let scanned = &v[..v.len().min(PLACEHOLDER_SCAN)];
    placeholder_prefix(v)
        || format_placeholder(v)
        || v.iter().all(|b| *b == v[0])
        || star_mask(v)
        || has_needle(v, scanned)
        || masked(scanned)
}

/// A reference, a format string or one of our own redactions at the start of `v`.
fn placeholder_prefix(v: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[
        b"%s",
        b"SECRET_REF(",
        b"[REDACTED:",
        b"${",
        b"{{",
        b"<",
        b"$(",
        b"%(",
    ];
    PREFIXES.iter().any(|p| v.starts_with(p))
}

/// `{name}`: a format placeholder (up to the first `}`, names, dots, colons and spaces only).
fn format_placeholder(v: &[u8]) -> bool {
    v.first() == Some(&b'{') && {
        let inner = &v[1..];
        let end = inner.iter().position(|&b| b == b'}').unwrap_or(inner.len());
        inner[..end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b' '))
    }
}

/// Stars and punctuation only (`*:*:*:*`, `***-***`): a mask or a wildcard, no value.
fn star_mask(v: &[u8]) -> bool {
    // (The first byte first: nearly every value is ruled out there.)
    v.first().is_some_and(u8::is_ascii_punctuation)
        && v.contains(&b'*')
        && v.iter().all(u8::is_ascii_punctuation)
}

/// Whether a needle starts in `scanned` (it may run on into the rest of `v`).
fn has_needle(v: &[u8], scanned: &[u8]) -> bool {
    // Most values hold no needle's first two bytes at all: a branch-free pass over the pairs
    // (which the compiler vectorises) rules them out before the exact search.
    let may_start = match scanned {
        [_, rest @ ..] => scanned
            .iter()
            .zip(rest)
            .fold(false, |any, (&a, &b)| any | starts_needle(a, b)),
        [] => false,
    };
    may_start
        && scanned.windows(2).enumerate().any(|(i, w)| {
            NEEDLE_START[usize::from(w[0])] && {
                let pair = [w[0].to_ascii_lowercase(), w[1].to_ascii_lowercase()];
                PLACEHOLDER_NEEDLES.iter().any(|n| {
                    n[..2] == pair
                        && v.get(i..i + n.len())
                            .is_some_and(|w| w.eq_ignore_ascii_case(n))
                })
            }
        })
}

/// Whether `a b` may be the first two bytes of a needle, in any case. `| 0x20` folds exactly
/// the two cases of a letter onto its lower case, and no other byte onto a lower-case letter.
#[inline(always)]
fn starts_needle(a: u8, b: u8) -> bool {
    // Byte-wise compares (not one 16-bit compare per pair), which vectorise.
    let (a, b) = (a | 0x20, b | 0x20);
    (a == b'e') & (b == b'x')
        | (a == b'r') & (b == b'e')
        | (a == b'p') & (b == b'l')
        | (a == b'y') & (b == b'o')
        | (a == b'c') & (b == b'h')
}

/// A run of `x` or `*` long enough to be a mask (`ghp_xxxxxxxx…`, `********`), not four `X`s
/// that happen to sit in a random token.
fn masked(v: &[u8]) -> bool {
    // A mask is a run of four or more: a branch-free pass for any such run rules out most
    // values before the runs are measured.
    let is_mask = |b: u8| matches!(b, b'x' | b'X' | b'*');
    let any_run_of_four = v.len() >= 4 && {
        let (a, b, c, d) = (&v[..v.len() - 3], &v[1..], &v[2..], &v[3..]);
        a.iter()
            .zip(b)
            .zip(c)
            .zip(d)
            .fold(false, |any, (((&a, &b), &c), &d)| {
                any | (is_mask(a) & is_mask(b) & is_mask(c) & is_mask(d))
            })
    };
    if !any_run_of_four {
        return false;
    }
    let mut run = 0;
    let mut longest = 0;
    for &b in v {
        run = if is_mask(b) { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest >= 4 && (longest >= 8 || longest * 4 >= v.len())
}

/// Documented example keys that must never be redacted (they are in every tutorial).
pub const DOCUMENTED_EXAMPLES: &[&str] = &[
    // AWS documentation.
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AKIAI44QH8DHBEXAMPLE",
    "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    // Stripe's API reference (test mode, published for everyone to try).
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "sk_test_BQokikJOvBiI2HlWgH4olfQ2",
    // The jwt.io debugger's default token.
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
];

/// Not a documented example key and not a placeholder: checked for every rule's candidates.
pub fn not_example(v: &[u8]) -> bool {
    !DOCUMENTED_EXAMPLES.iter().any(|e| e.as_bytes() == v) && !is_placeholder(v)
}

/// `Basic <base64>` is a credential only if it decodes to `user:password`.
fn basic_credential(c: &Candidate<'_>) -> bool {
    let v = c.value;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(v)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(v));
    matches!(decoded, Ok(d) if d.contains(&b':') && d.len() >= 3)
}

/// A bearer token looks random: mixed classes, not a word or a reference.
fn token_like(c: &Candidate<'_>) -> bool {
    let v = c.value;
    let digits = v.iter().any(u8::is_ascii_digit);
    let upper = v.iter().any(u8::is_ascii_uppercase);
    let lower = v.iter().any(u8::is_ascii_lowercase);
    (u8::from(digits) + u8::from(upper) + u8::from(lower)) >= 2
}

/// Words that are never the secret assigned to a password or secret key: types, literals,
/// references to other values.
const NOT_PASSWORDS: &[&str] = &[
    "str",
    "&str",
    "string",
    "int",
    "bool",
    "none",
    "null",
    "nil",
    "true",
    "false",
    "undefined",
    "required",
    "optional",
    "password",
    "passwd",
    "secret",
    "self",
    "this",
    "value",
    "env",
    "input",
    "prompt",
    "getpass",
    "inherit",
    "hidden",
    "enabled",
    "disabled",
    "unsafe",
    "match",
    "async",
    "await",
    "move",
    "function",
    "lambda",
    "yield",
    "option",
    "options",
    "flag",
    "argument",
    "parameter",
    "field",
    "masked",
    "empty",
    "unset",
    "missing",
    "invalid",
];

/// What a key named `…password…` or `…secret…` holds when the rest of its name says it is not
/// the secret itself (`password_min_length`, `passwordField`, `secret_name`, `secretKeyRef`):
/// the name after the keyword (and a plural `s`), lower-cased without `_` and `-`, starts with
/// one of these.
const NOT_SECRET_KEY_SUFFIXES: &[&str] = &[
    "field",
    "length",
    "len",
    "min",
    "max",
    "policy",
    "reset",
    "url",
    "uri",
    "link",
    "hint",
    "label",
    "prompt",
    "placeholder",
    "expir",
    "ttl",
    "age",
    "rule",
    "strength",
    "changed",
    "updated",
    "encrypt",
    "file",
    "path",
    "command",
    "cmd",
    "env",
    "var",
    "input",
    "regex",
    "pattern",
    "validat",
    "hasher",
    "required",
    "enabled",
    "count",
    "attempt",
    "retries",
    "timeout",
    "type",
    "mode",
    "format",
    "manager",
    "store",
    "provider",
    "ref",
    "keyref",
    "name",
    "arn",
    "id",
    "version",
    "rotation",
    "engine",
    "mount",
    "backend",
    "less",
    "kind",
    "selector",
    "volume",
    "dir",
    "location",
    "source",
];

/// `${VAR}`, `$(cmd)`, or `$VAR` alone or followed by what continues a path, a URL or a list
/// (`$HOME/.netrc`, `$DB_USER@db`): a generated password may start with `$` too, and one like
/// `$cqvL*U*ChJ$ZEF8%` goes on with a byte no expansion is followed by.
fn shell_reference(v: &[u8]) -> bool {
    match v {
        [b'$', b'{' | b'(', ..] => true,
        [b'$', first, rest @ ..] if first.is_ascii_alphabetic() || *first == b'_' => {
            let name_len = rest
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            rest.get(name_len).is_none_or(|b| {
                b.is_ascii_whitespace()
                    || matches!(
                        b,
                        b'/' | b'.'
                            | b':'
                            | b'-'
                            | b','
                            | b';'
                            | b'@'
                            | b'}'
                            | b')'
                            | b']'
                            | b'"'
                            | b'\''
                            | b'`'
                            | b'\\'
                            | b'$'
                            | b'?'
                            | b'&'
                            | b'='
                    )
            })
        }
        _ => false,
    }
}

/// The key of an assignment match: the keyword and the name bytes after it (the match starts
/// at the keyword).
fn key_suffix_says_not_secret(matched: &[u8], keyword_len: usize) -> bool {
    let rest: Vec<u8> = matched
        .iter()
        .skip(keyword_len)
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        .filter(|b| b.is_ascii_alphanumeric())
        .map(u8::to_ascii_lowercase)
        .collect();
    if rest.is_empty() {
        return false;
    }
    // A plural keyword first (`secretsmanager` in an AWS ARN, `passwords_file`).
    let singular = rest.strip_prefix(b"s").unwrap_or(&rest);
    rest == b"s"
        || NOT_SECRET_KEY_SUFFIXES
            .iter()
            .any(|s| rest.starts_with(s.as_bytes()) || singular.starts_with(s.as_bytes()))
}

/// A reference to another value, not a value: `$VAR`, `${VAR}`, `%(var)s`, `%VAR%` (Windows),
/// `{{ var }}`.
fn is_reference(v: &[u8]) -> bool {
    shell_reference(v)
        || v.starts_with(b"%(")
        || matches!(v, [b'%', name @ .., b'%'] if !name.is_empty()
            && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'))
        || v.starts_with(b"{{")
        || v.starts_with(b"!vault")
}

/// Code, not a literal: a call, an attribute or index access, a path or generic type
/// (`Class::Red`, `Option<SecretName>`), or (unquoted) a variable or constant name
/// (`hashed_pw`, `newPassword`, `&planted`, `VAULT_QUOTED`).
fn code_like(v: &[u8], quoted: bool) -> bool {
    let identifier = v.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'_' | b'.' | b'(' | b')' | b'[' | b']' | b'\'' | b'"' | b':'
            )
    });
    if identifier && (v.contains(&b'.') || v.ends_with(b")") || v.contains(&b'[')) {
        return true;
    }
    let path_chars = v.iter().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'<' | b'>' | b'&' | b'(' | b')')
    });
    let rust_path = v.windows(2).any(|w| w == b"::");
    let generic = v.ends_with(b">") && v.first().is_some_and(u8::is_ascii_alphabetic);
    if path_chars && (rust_path || generic) {
        return true;
    }
    if quoted {
        return false;
    }
    // A call: `getpass(prompt`, `bytes(memoryview(password`, `new(hash_name`.
    let callee = v
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
        .count();
    let callee = callee + usize::from(v.get(callee) == Some(&b'!')); // a Rust macro: `json!(`
    if callee > 0 && v.get(callee) == Some(&b'(') && (v[0].is_ascii_alphabetic() || v[0] == b'_') {
        return true;
    }
    if let Some(rest) = v.strip_prefix(b"&")
        && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        return true;
    }
    let constant = v.contains(&b'_')
        && v.iter().all(|b| b.is_ascii_uppercase() || *b == b'_')
        && v.first().is_some_and(u8::is_ascii_uppercase);
    if constant {
        return true;
    }
    // Unquoted, a name made of words is a variable: `hashed_pw` (snake_case) or `newPassword`
    // (camelCase: every capital starts a lower-case word), without digits.
    let snake = v.contains(&b'_') && v.iter().all(|b| b.is_ascii_lowercase() || *b == b'_');
    let camel = v.first().is_some_and(u8::is_ascii_lowercase)
        && v.iter().any(u8::is_ascii_uppercase)
        && v.iter().all(u8::is_ascii_alphabetic)
        && v.windows(2)
            .all(|w| !w[0].is_ascii_uppercase() || w[1].is_ascii_lowercase())
        && v.last().is_some_and(u8::is_ascii_lowercase);
    snake || camel
}

/// A path: absolute with two or more parts (`PWD=/home/agent/project`,
/// `password_file=/run/secrets/db`) or one lower-case directory (`-v "$PWD":/tmp`), or relative
/// to the home or working directory (`~/.pgpass`, `./deploy.sh`).
fn path_like(v: &[u8]) -> bool {
    let relative = v.starts_with(b"~/") || v.starts_with(b"./") || v.starts_with(b"../");
    let slashes = v.iter().filter(|b| **b == b'/').count();
    let top_directory = v.len() >= 3 && v[0] == b'/' && v[1..].iter().all(u8::is_ascii_lowercase);
    (relative || top_directory || v.starts_with(b"/") && slashes >= 2)
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~'))
}

/// The common part of [`password_value`] and [`secret_value`].
fn assigned_value(c: &Candidate<'_>, keyword_len: usize) -> bool {
    let v = c.value;
    // `Secret::new(…)`: the `:` was half of a path separator.
    !v.first()
        .is_some_and(|b| b.is_ascii_whitespace() || matches!(b, b':' | b',' | b';'))
        && !NOT_PASSWORDS
            .iter()
            .any(|w| v.eq_ignore_ascii_case(w.as_bytes()))
        && !is_reference(v)
        && !code_like(v, c.quoted)
        && !path_like(v)
        && !url_without_credentials(v)
        && !key_suffix_says_not_secret(c.matched, keyword_len)
        && !written_not_given(v)
        && (c.quoted || !declared_type(v, c.following, after_colon(c)))
}

/// A URL with no user or password in it (`[RustCrypto/password-hashes]: https://github.com/…`,
/// a Markdown link definition): where a password is documented, not one.
fn url_without_credentials(v: &[u8]) -> bool {
    let Some(scheme_end) = v.windows(3).position(|w| w == b"://") else {
        return false;
    };
    let scheme = &v[..scheme_end];
    !scheme.is_empty()
        && scheme[0].is_ascii_alphabetic()
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
        && !v.contains(&b'@')
}

/// The part of the match before the value (the key and operator of an assignment; the value
/// is a slice of the match).
fn before_value<'a>(c: &Candidate<'a>) -> &'a [u8] {
    let offset = (c.value.as_ptr() as usize).saturating_sub(c.matched.as_ptr() as usize);
    c.matched.get(..offset).unwrap_or_default()
}

/// Whether the value follows a `:` (a field declaration `password: SafeString,` may name a
/// type; after `=`, as in `Password=QmwwoTxQFAohUZHGeG;` of a connection string, it does not).
fn after_colon(c: &Candidate<'_>) -> bool {
    before_value(c)
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b'`'))
        .is_some_and(|b| *b == b':')
}

/// A truncated PEM block holds key material after its header: at least 16 base64 letters or
/// digits (`/// -----BEGIN PRIVATE KEY-----` followed by more comment slashes has none).
fn pem_body(c: &Candidate<'_>) -> bool {
    let header_end = c
        .value
        .windows(5)
        .enumerate()
        .skip(5)
        .find(|(_, w)| *w == b"-----")
        .map_or(c.value.len(), |(i, _)| i + 5);
    let body = &c.value[header_end..];
    let body = body
        .windows(5)
        .position(|w| w == b"-----")
        .map_or(body, |end| &body[..end]);
    // Letters and digits of the body, JSON-escaped line breaks (`\n`) left out; a body of `X`s
    // only is the documentation's stand-in (`-----BEGIN PRIVATE KEY-----\nXXXX\n…`).
    let mut material = 0;
    let mut masked = true;
    let mut escape = false;
    for &b in body {
        if escape {
            escape = false;
            if matches!(b, b'n' | b'r') {
                continue;
            }
        }
        if b == b'\\' {
            escape = true;
        } else if b.is_ascii_alphanumeric() {
            material += 1;
            masked &= b.eq_ignore_ascii_case(&b'x');
        }
    }
    material >= 16 && !masked
}

/// Type names of Rust, C and Go declarations (`pub passwd: CString,`, `pwd: *mut passwd`,
/// `NSS_BUFLEN_PASSWD: usize = 1024`), compared without case.
const TYPE_NAMES: &[&str] = &[
    "usize", "isize", "u8", "u16", "u32", "u64", "u128", "i8", "i16", "i32", "i64", "i128", "f32",
    "f64", "char", "c_char", "c_int", "c_uint", "c_long", "c_ulong", "c_void", "__u8", "__u16",
    "__u32", "__u64", "__s32", "__s64", "cstring", "cstr", "osstring", "pathbuf", "vec", "impl",
    "dyn", "*mut", "*const", "[]byte", "[]string", "int32", "int64", "uint32", "uint64",
];

/// An unquoted value that is a declaration's type, not a value: a type name, a type annotation
/// (`DEVCONF_STABLE_SECRET: _bindgen_ty_3 = …`: an `=` follows), a `PascalCase` name ending a
/// field (`password: SafeString,`), an open generic (`Option<`), or a short hexadecimal
/// constant (`MATCH_PASS = 0x04`).
fn declared_type(v: &[u8], following: &[u8], after_colon: bool) -> bool {
    let after = following.trim_ascii_start();
    let annotation = after.first() == Some(&b'=') && !matches!(after.get(1), Some(b'=' | b'>'));
    let named = TYPE_NAMES
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t.as_bytes()));
    let pascal_field = after_colon
        && v.first().is_some_and(u8::is_ascii_uppercase)
        && v.iter().all(|b| b.is_ascii_alphabetic() || *b == b'_')
        && v[1..].iter().any(u8::is_ascii_uppercase)
        && matches!(
            following.first(),
            Some(b',' | b')' | b';' | b'>' | b'\n' | b'\r') | None
        );
    // `Option<`, `Option<&'key [u8]>` (cut at the quote), `HashMap<String, …`: a name without
    // digits, then `<` and a type (not `Secr3t<2024`).
    let generic_open = v.first().is_some_and(u8::is_ascii_alphabetic)
        && v.iter().position(|b| *b == b'<').is_some_and(|lt| {
            v[..lt]
                .iter()
                .all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b':' | b'.'))
                && v.get(lt + 1).is_none_or(|b| {
                    b.is_ascii_alphabetic() || matches!(b, b'&' | b'\'' | b'(' | b'[' | b'_')
                })
        });
    // A Rust reference type: `&[u8]`, `&'a str`, `&mut T`, `&dyn Error`, `&str`, `&Path`.
    let reference_type = v.strip_prefix(b"&").is_some_and(|t| {
        t.starts_with(b"[")
            || t.starts_with(b"'")
            || t.starts_with(b"mut")
            || t.starts_with(b"dyn")
            || TYPE_NAMES
                .iter()
                .any(|n| t.eq_ignore_ascii_case(n.as_bytes()))
            || (t.first().is_some_and(u8::is_ascii_uppercase)
                && t.iter().all(u8::is_ascii_alphanumeric))
    });
    let hex_constant = v.len() <= 10
        && v.starts_with(b"0x")
        && v.len() > 2
        && v[2..].iter().all(u8::is_ascii_hexdigit);
    annotation || named || pascal_field || generic_open || reference_type || hex_constant
}

/// A value written in place of one, not given: masked (`••••••••`: one character repeated;
/// single bytes are [`is_placeholder`]'s), a YAML tag whose value follows on the next lines
/// (`!!binary |`), a `tracing` field, a format field or a JavaScript arrow function (`()=>kt`).
fn written_not_given(v: &[u8]) -> bool {
    let one_char = std::str::from_utf8(v).is_ok_and(|s| {
        let mut chars = s.chars();
        chars.next().is_some_and(|first| chars.all(|c| c == first))
    });
    one_char
        || v.starts_with(b"!!")
        || tracing_field(v)
        || format_field(v)
        || v.starts_with(b"()=>")
        || code_expression(v)
        || message_about_secrets(v)
}

/// A sentence about the secret, not the secret: `"password is too long"`, `'Enter your
/// secret key'` (three words or more, one of them the key's own word; `top secret` may be
/// the passphrase).
fn message_about_secrets(v: &[u8]) -> bool {
    v.split(|b| *b == b' ').filter(|w| !w.is_empty()).count() >= 3
        && v.split(|b| !b.is_ascii_alphabetic()).any(|w| {
            ["password", "passwd", "passphrase", "secret"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
        })
}

/// Code: a dereferenced variable (`*secret_key`), a borrowed one in parentheses
/// (`(&self.secret_key).into()`), optional chaining (`opts?.secret`).
fn code_expression(v: &[u8]) -> bool {
    let optional_chain = v.windows(2).any(|w| w == b"?.")
        && v.first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
    let deref = matches!(v, [b'*', first, rest @ ..]
        if (first.is_ascii_lowercase() || *first == b'_')
            && rest.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.')));
    deref || optional_chain || v.starts_with(b"(&") || v.starts_with(b"(*")
}

/// `{self.secrets_dir!r}`: a Python f-string or `str.format` field, conversion and format spec
/// included.
fn format_field(v: &[u8]) -> bool {
    let Some(inner) = v.strip_prefix(b"{") else {
        return false;
    };
    // (The value may stop before the closing brace: rules end unquoted values before one.)
    let field = inner
        .iter()
        .position(|b| *b == b'}')
        .map_or(inner, |close| &inner[..close]);
    field
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && field.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'!' | b':' | b'[' | b']')
        })
}

/// `%job.name`, `?err`: a `tracing` field's value (`secret = %job.name`) is code.
fn tracing_field(v: &[u8]) -> bool {
    matches!(v, [b'%' | b'?', first, rest @ ..]
        if (first.is_ascii_alphabetic() || *first == b'_')
            && rest.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.')))
}

/// Where the keyword of an assignment match ends (the assignment rules' keywords).
fn keyword_len(matched: &[u8]) -> usize {
    const KEYWORDS: &[&str] = &["passphrase", "password", "passwd", "secret", "pwd", "pass"];
    (0..matched.len())
        .find_map(|i| {
            KEYWORDS.iter().find_map(|k| {
                matched
                    .get(i..i + k.len())
                    .filter(|m| m.eq_ignore_ascii_case(k.as_bytes()))
                    .map(|_| i + k.len())
            })
        })
        .unwrap_or(0)
}

/// A value after `password=`: anything but code (`os.getenv(...)`, `config.password`, a type
/// name, a variable), a reference or placeholder, a path, or a key that only mentions passwords
/// (`password_min_length`). Weak literals (`changeme`, `hunter2`) are redacted: they may well
/// be the real password.
fn password_value(c: &Candidate<'_>) -> bool {
    // `pwd` only as a word of its own (`DB_PWD=`, not the `…Pwdwy8…` of a random token).
    let pwd_in_word = c.matched.len() >= 3
        && c.matched[..3].eq_ignore_ascii_case(b"pwd")
        && c.preceding.is_some_and(|b| b.is_ascii_alphanumeric());
    // `pwd` is also the shell command and the working directory: a plain word after it
    // (`"pwd: expected bytes"`) is prose; `Pwd=rootroot` in a connection string is not.
    let pwd_word = c.matched.len() >= 3
        && c.matched[..3].eq_ignore_ascii_case(b"pwd")
        && c.value.iter().all(u8::is_ascii_lowercase)
        && !c.matched.contains(&b'=');
    // `self.password = user`: an attribute set from a variable, in code (the key right after
    // the dot: a flag after a sentence's full stop, `done. --db-password …`, is no attribute).
    let attribute_from_variable = c.preceding == Some(b'.')
        && c.matched
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && !c.quoted
        && variable_like(c.value);
    !pwd_in_word
        && !pwd_word
        && !attribute_from_variable
        && assigned_value(c, keyword_len(c.matched))
}

/// A variable's name: `new_password1`, `userPassword`, `pw` (snake case, or letters only), not
/// a password written after a property key (`db.password=vt0M_aMRTvet`: case and digits mixed).
fn variable_like(v: &[u8]) -> bool {
    let ident = v
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && v.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let snake = v
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    let letters = v.iter().all(|b| b.is_ascii_alphabetic() || *b == b'_');
    ident && (snake || letters)
}

/// A value after `secret=` or `client_secret:`: as [`password_value`], and not a name made of
/// words (`secret_name: prod-db-credentials`): at least eight bytes, with a digit or a symbol.
fn secret_value(c: &Candidate<'_>) -> bool {
    let v = c.value;
    let has_digit_or_symbol = v.iter().any(|b| {
        b.is_ascii_digit() || (b.is_ascii_punctuation() && !matches!(b, b'-' | b'_' | b'.'))
    });
    v.len() >= 8 && has_digit_or_symbol && assigned_value(c, keyword_len(c.matched))
}

/// A password named in prose (`my password is hunter22`): a digit or symbol and a letter,
/// so that `the password is stored in the vault` stays.
fn prose_password(c: &Candidate<'_>) -> bool {
    // (A full stop or comma after the word ends the sentence, it is no symbol of a password;
    // nor is a backslash that starts an escape of the string around it, `printed:\n`.)
    let mut v = c.value;
    while let [
        rest @ ..,
        b'.' | b',' | b'!' | b'?' | b';' | b':' | b')' | b'\\',
    ] = v
    {
        v = rest;
    }
    let letter = v.iter().any(u8::is_ascii_alphabetic);
    let other = v
        .iter()
        .any(|b| b.is_ascii_digit() || b.is_ascii_punctuation());
    letter && other && password_value(c)
}

/// The value of a bare `pass` or `pw` key, which are also words (`the content pass: everything
/// moved`) and counts (`pass=2` of a compiler or a test run): as a password named in prose, a
/// letter and a digit or symbol.
fn bare_pass_value(c: &Candidate<'_>) -> bool {
    prose_password(c)
}

/// A token or key named in prose (the pattern leaves a sentence's full stop out): random enough
/// to be one, as the entropy detector's values.
fn prose_token(c: &Candidate<'_>) -> bool {
    crate::entropy::random_enough(c.value)
}

/// A secret named in prose: as [`prose_password`], eight bytes or more.
fn prose_secret(c: &Candidate<'_>) -> bool {
    c.value.len() >= 8 && prose_password(c)
}

/// Between a key and its value: a closing quote or bracket, a type (`: &str`, Go's `string`),
/// then the operator (`=`, `:`, `:=`, `=>`).
macro_rules! key_operator {
    () => {
        r#"(?:\\?["'`])?\]?(?:[ \t]*:[ \t]*&?(?:'static[ \t]+)?(?:str|string)|[ \t]+string)?[ \t]*(?::=|=>|[:=])"#
    };
}

/// The value assigned to a password key (the assignment rules' groups, 4 bytes or more):
/// JSON-escaped, double, single or back quoted, or unquoted up to a separator, where JSON
/// escapes other than `\n`, `\r`, `\t`, `\"` and `\\` may stand inside.
macro_rules! password_value_pattern {
    () => {
        r#"(?:\\"([^"\\\r\n]{4,})\\"|"([^"\r\n]{4,})"|'([^'\r\n]{4,})'|`([^`\r\n]{4,})`|((?:[^\s"'`,;)}\]\\]|\\[^nrt"\\])(?:[^\s"'`,;\\]|\\[^nrt"\\]){2,}(?:[^\s"'`,;)}\]\\]|\\[^nrt"\\])))"#
    };
}

/// The value of a command-line password flag (the rules' last groups): quoted, or a word
/// that does not start with `-` (another flag) and stops at a shell separator.
macro_rules! cli_value {
    () => {
        r#"(?:'([^'\r\n]{4,128})'|"([^"\r\n]{4,128})"|([^\s'"`;|&\\\-][^\s'"`;|&\\]{3,127}))"#
    };
}

/// The `value` attribute after the one naming a password or secret, its value of at least `$min`
/// bytes the rule's group (quoted as XML quotes it, JSON-escaped quotes too).
macro_rules! xml_value_attribute {
    ($min:literal) => {
        concat!(
            r#"[ \t]+value[ \t]*=[ \t]*(?:\\"([^"\\\r\n]{"#,
            $min,
            r#",})\\"|"([^"\r\n]{"#,
            $min,
            r#",})"|'([^'\r\n]{"#,
            $min,
            r#",})')"#
        )
    };
}

/// Where a command name may start: the start of a line, after a space, a quote, `(`, a shell
/// separator or a JSON-escaped line break (not inside a word, a path or a base64 run).
macro_rules! cli_start {
    () => {
        r#"(?:^|[\s"'`(;|&]|\\[nrt])"#
    };
}

/// The rest of a command up to its password flag: the same line (a JSON-escaped `\n` ends it
/// too) and the same command (no `;`, `|` or `&`).
macro_rules! cli_gap {
    () => {
        r#"(?:[^\n;|&\\]|\\[^nrt]){0,200}?"#
    };
}

/// `find`'s predicates that start with `-p`: `find /var/lib/mysql -print` is not a password.
const FIND_PREDICATES: &[&str] = &["rint", "rint0", "rintf", "rune", "erm", "ath"];

/// A `cli-password` rule: its value is checked by [`cli_password`].
const fn cli_rule(
    keywords: &'static [&'static str],
    pattern: &'static str,
    back: usize,
    fwd: usize,
) -> RuleSpec {
    RuleSpec {
        accept: Some(cli_password),
        ..rule("cli-password", keywords, pattern, back, fwd)
    }
}

/// A command-line password: as [`basic_password`], not a `find` predicate read as `-p…`, not a
/// port mapping (`docker run --name mysql -p3306:3306`) and not an ellipsis (`mysql -p…` in
/// documentation).
fn cli_password(c: &Candidate<'_>) -> bool {
    let port_mapping =
        c.value.contains(&b':') && c.value.iter().all(|b| b.is_ascii_digit() || *b == b':');
    let ellipsis = c.value.starts_with("…".as_bytes()) || c.value.starts_with(b"...");
    basic_password(c)
        && !port_mapping
        && !ellipsis
        && !FIND_PREDICATES.iter().any(|w| c.value == w.as_bytes())
}

/// Words of a `--…-password` flag that make it a switch or a question, not a password given
/// on the line (`pg_dump --no-password app`, `--ask-password`, `--reset-password user`).
const SWITCH_WORDS: &[&str] = &[
    "no", "ask", "prompt", "read", "reset", "change", "show", "hide", "use", "with", "without",
    "skip", "require", "generate", "random", "empty", "forgot", "disable", "enable",
];

/// The value after `--db-password`: as [`password_value`], unless a word of the flag says it
/// takes none.
fn named_password_flag(c: &Candidate<'_>) -> bool {
    let flag = c
        .matched
        .split(|b| b.is_ascii_whitespace())
        .find(|w| w.starts_with(b"--"))
        .unwrap_or_default();
    let switch = flag[2.min(flag.len())..].split(|b| *b == b'-').any(|w| {
        SWITCH_WORDS
            .iter()
            .any(|s| w.eq_ignore_ascii_case(s.as_bytes()))
    });
    !switch && password_value(c)
}

/// The commands of [`SET_BY_COMMAND`].
const COMMAND_KEYWORDS: &[&str] = &[
    "setx",
    "env ",
    "configure set",
    "config set",
    "secret set",
    "secrets set",
];

/// A command, the name it sets and, after a space, the value (the rules' groups).
const SET_BY_COMMAND: &str = concat!(
    r#"(?:(?m:^)[ \t]*ENV|"#,
    cli_start!(),
    r#"(?:(?i:setx)|aws[ \t]+configure[ \t]+set|gh[ \t]+secret[ \t]+set|(?:npm|yarn|pnpm|wp)[ \t]+config[ \t]+set|dotnet[ \t]+user-secrets[ \t]+set))"#,
    // (npm's names are registry paths: `//registry.npmjs.org/:_authToken`; .NET's may be
    // quoted, `"Jwt:Secret"`.)
    r#"[ \t]+["']?[A-Za-z_/][A-Za-z0-9_.:/@\-]{0,127}["']?[ \t]+(?:(?:--body|-b)[ \t]+)?"#,
    cli_value!()
);

/// What reads a named value and prints it on the next line: `echo $NAME`, `printenv NAME`,
/// `ENV["NAME"]` (Ruby), `getenv("NAME")`, `cat …/name`. Each keyword starts the pattern, so
/// the pattern is tried anchored at each hit. (Not Python's `os.environ[…]`: the word is in
/// most Python files, and the tries at each cost 2.5 % of the time on clean text.)
const PRINT_KEYWORDS: &[&str] = &[
    "echo ",
    "echo\t",
    "printenv ",
    "printenv\t",
    "env[",
    "getenv(",
    "cat ",
    "cat\t",
];

/// A command or expression reading a name, the end of its line, then the value printed alone
/// on the next line (a REPL's `=> ` and quotes around it allowed): the rules' group.
const PRINTED: &str = concat!(
    r#"(?:\becho[ \t]+["']?\$\{?|\bprintenv[ \t]+|\b(?i:env)\[[ \t]*\\?["']|\bgetenv\([ \t]*\\?["']|\bcat[ \t]+[^\s;|&<>]{0,120}/)"#,
    r#"[A-Za-z_][A-Za-z0-9_.\-]{0,63}(?:\\?["'])?[\])}]?[ \t]*(?:\r?\n|\\n)"#,
    r#"(?:=>[ \t]*)?(?:\\?["'])?([^\s"'`\\]{8,256})(?:\\?["'])?[ \t]*(?:\r?\n|\\[nr]|$)"#,
);

/// The name read by a command ([`PRINTED`]): the last word of its line (`SECRET_KEY_BASE` of
/// `ENV["SECRET_KEY_BASE"]`, `token` of `cat ~/.secrets/token`).
fn printed_name<'a>(c: &Candidate<'a>) -> &'a [u8] {
    let before = before_value(c);
    let line_end = before
        .iter()
        .position(|b| *b == b'\n' || *b == b'\\')
        .unwrap_or(before.len());
    before[..line_end]
        .split(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
        .rfind(|w| !w.is_empty())
        .unwrap_or_default()
}

/// A password printed by the command before it (`$ echo $DB_PASSWORD`): as after `password=`.
fn password_printed(c: &Candidate<'_>) -> bool {
    names_password(printed_name(c)) && prose_password(c)
}

/// Another secret printed by the command before it: random enough, 16 bytes or more.
fn secret_printed(c: &Candidate<'_>) -> bool {
    let name = printed_name(c);
    !names_password(name) && secret_value_named(c, name)
}

/// The name a command sets ([`SET_BY_COMMAND`]): the word before the value.
fn name_set_by_command<'a>(c: &Candidate<'a>) -> &'a [u8] {
    let mut words = before_value(c).split(|b| b.is_ascii_whitespace() || matches!(b, b'"' | b'\''));
    words
        .rfind(|w| !w.is_empty() && !w.starts_with(b"-"))
        .unwrap_or_default()
}

/// A name with a password word (`DB_PASSWORD`, `smtp_passwd`).
fn names_password(name: &[u8]) -> bool {
    ["passw", "pwd", "passphrase"]
        .iter()
        .any(|w| crate::contains_ignore_ascii_case(name, w.as_bytes()))
}

/// A command sets a password (`setx DB_PASSWORD …`): any password, as after `password=` (not a
/// path, a reference or a key that only mentions passwords, `ENV DB_PASSWORD_FILE …`).
fn password_named_by_command(c: &Candidate<'_>) -> bool {
    names_password(name_set_by_command(c)) && password_value(c)
}

/// A command sets another secret (`setx API_TOKEN …`): a value random enough to be one, as the
/// entropy detector's, 16 bytes or more.
fn secret_named_by_command(c: &Candidate<'_>) -> bool {
    let name = name_set_by_command(c);
    !names_password(name) && secret_value_named(c, name)
}

/// The candidate's value is the secret `name` names: the name names a secret, the value is 16
/// token bytes or more, random enough to be one; under a name with `secret` in it, any value
/// `secret=` would take ([`secret_value`]: not a path, code or reference, nor under a name
/// such as `SECRET_PATH`).
fn secret_value_named(c: &Candidate<'_>, name: &[u8]) -> bool {
    let value = c.value;
    let random = value.len() >= 16
        && value.iter().all(|&b| crate::is_token_byte(b))
        && crate::entropy::random_enough(value);
    let as_after_secret =
        crate::contains_ignore_ascii_case(name, b"secret") && secret_value(&from_name(c, name));
    crate::entropy::names_secret(name) && (random || as_after_secret)
}

/// The candidate as if its match started at `name` (a slice of the match): what comes before
/// the name, a command such as `dotnet user-secrets set`, is no part of the key `secret_value`
/// reads.
fn from_name<'a>(c: &Candidate<'a>, name: &'a [u8]) -> Candidate<'a> {
    let offset = (name.as_ptr() as usize).wrapping_sub(c.matched.as_ptr() as usize);
    match c.matched.get(offset..) {
        Some(matched) => Candidate { matched, ..*c },
        None => *c,
    }
}

/// A setter's value (`os.Setenv("API_TOKEN", "…")`): its first argument names a secret (not
/// an id of one, nor something public) and the value is random enough to be one.
fn token_argument(c: &Candidate<'_>) -> bool {
    // The name: the first quoted word (the setter's name ends in `(`, so it is no such word).
    let name = c
        .matched
        .split(|b| matches!(b, b'"' | b'\'' | b'\\'))
        .find(|w| {
            !w.is_empty()
                && w.iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        })
        .unwrap_or_default();
    crate::entropy::names_secret(name)
        && c.value.iter().all(|&b| crate::is_token_byte(b))
        && crate::entropy::random_enough(c.value)
}

/// The password of a URL: as [`basic_password`]; one with a `/` must not start with a port
/// (`host:8080/path@…` is an address whose path holds an `@`).
fn url_password(c: &Candidate<'_>) -> bool {
    let port_then_path = c
        .value
        .iter()
        .position(|b| *b == b'/')
        .is_some_and(|slash| c.value[..slash].iter().all(u8::is_ascii_digit));
    !port_then_path && basic_password(c)
}

/// A password given with its user (`login admin / …`): as [`basic_password`], with both cases
/// and a digit or symbol, and no file name (`creds: gcp:Service.json`).
fn paired_password(c: &Candidate<'_>) -> bool {
    let v = c.value;
    let upper = v.iter().any(u8::is_ascii_uppercase);
    let lower = v.iter().any(u8::is_ascii_lowercase);
    let other = v
        .iter()
        .any(|b| b.is_ascii_digit() || b.is_ascii_punctuation());
    let file_name = v.iter().rposition(|b| *b == b'.').is_some_and(|dot| {
        (2..=4).contains(&(v.len() - dot - 1)) && v[dot + 1..].iter().all(u8::is_ascii_lowercase)
    });
    upper && lower && other && !file_name && basic_password(c)
}

/// A user's password in `curl -u user:password`, `auth=("user", "password")`, `BasicAuth(…)`.
fn basic_password(c: &Candidate<'_>) -> bool {
    c.value.len() >= 4
        && !is_reference(c.value)
        && !NOT_PASSWORDS
            .iter()
            .any(|w| c.value.eq_ignore_ascii_case(w.as_bytes()))
}

/// The 40-character secret key near an AWS access key id: random-looking (letters of both
/// cases and a digit, or a `/` or `+`), not a hex digest.
fn aws_secret_near_id(c: &Candidate<'_>) -> bool {
    let v = c.value;
    let upper = v.iter().any(u8::is_ascii_uppercase);
    let lower = v.iter().any(u8::is_ascii_lowercase);
    let digit = v.iter().any(u8::is_ascii_digit);
    let symbol = v.iter().any(|b| matches!(b, b'/' | b'+'));
    upper && lower && (digit || symbol) && crate::entropy::shannon(v) >= 4.0
}

/// Where a closing bracket that `v` did not open, followed by punctuation, a space or the end,
/// stands in `v` (the value ran into the code around it: `None):`), else `v.len()`.
fn unopened_closer(v: &[u8]) -> usize {
    let mut depth = 0usize;
    for (i, &b) in v.iter().enumerate() {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth > 0 => depth -= 1,
            b')' | b']' | b'}' => {
                let next = v.get(i + 1);
                if next.is_none_or(|n| {
                    n.is_ascii_whitespace()
                        || matches!(n, b':' | b';' | b',' | b')' | b']' | b'}' | b'.')
                }) {
                    return i;
                }
            }
            _ => {}
        }
    }
    v.len()
}

/// Whether the key of the match at `start` is a URL query's or a form's parameter: the byte
/// before the key (`db_password`, whose match may start at `password`) is `?` or `&`.
fn in_query(bytes: &[u8], start: usize) -> bool {
    let mut i = start;
    while i > 0
        && (bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'_' | b'-' | b'.'))
    {
        i -= 1;
    }
    i > 0 && matches!(bytes[i - 1], b'?' | b'&')
}

/// Where a URL query's next parameter (`&name=`) starts in `v`, else `v.len()`.
fn query_param_start(v: &[u8]) -> usize {
    let mut i = 0;
    while let Some(off) = v[i..].iter().position(|&b| b == b'&') {
        let amp = i + off;
        let name = v[amp + 1..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        if name > 0 && v[amp + 1].is_ascii_alphabetic() && v.get(amp + 1 + name) == Some(&b'=') {
            return amp;
        }
        i = amp + 1;
    }
    v.len()
}

/// Whether `at` falls inside one of our own placeholders (`[REDACTED:secret-assignment:…]`
/// names rules after what they found; redacting twice must change nothing).
fn inside_placeholder(bytes: &[u8], at: usize) -> bool {
    const OPEN: &[u8] = b"[REDACTED:";
    let from = at.saturating_sub(48);
    let before = &bytes[from..at];
    match before.windows(OPEN.len()).rposition(|w| w == OPEN) {
        Some(p) => !before[p..].contains(&b']'),
        None => false,
    }
}

/// The default rule set. The tokens whose prefix names their service come first: where another
/// rule finds the same span (`password=dckr_pat_…`), the earlier rule names the finding.
pub fn default_rules() -> Vec<RuleSpec> {
    let mut rules = prefixed::rules();
    rules.extend(format_and_assignment_rules());
    rules
}

/// The credential formats of the issue's list, then assignments, flags and tables.
fn format_and_assignment_rules() -> Vec<RuleSpec> {
    vec![
        rule(
            "aws-access-key-id",
            &["akia", "asia", "abia", "acca", "a3t"],
            // Issued ids use base32 (`[A-Z2-7]`); any upper-case letter or digit is taken, as
            // documentation and generators write them.
            r"\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})\b",
            4,
            24,
        ),
        rule(
            "aws-secret-access-key",
            &[
                "secret_access_key",
                "secretaccesskey",
                "secret-access-key",
                "aws_secret",
                "aws-secret",
                "aws secret",
            ],
            r#"(?i)(?:secret[_\-\s]?access[_\-\s]?key|aws[_\-\s]?secret(?:[_\-\s]?key)?)(?:\\?["'`])?\]?\s*(?:[:=,]|=>)\s*(?:\\?["'`])?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
            8,
            96,
        ),
        // The pair: a 40-character secret within a few lines after the access key id, with no
        // name of its own (`NewStaticCredentials("AKIA…", "…")`, "the keys: AKIA… / …").
        RuleSpec {
            accept: Some(aws_secret_near_id),
            ..rule(
                "aws-secret-access-key",
                &["akia", "asia", "abia", "acca", "a3t"],
                r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b[\s\S]*?[^A-Za-z0-9/+=]([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
                4,
                400,
            )
        },
        rule("github-pat", &["ghp_"], r"\b(ghp_[A-Za-z0-9]{36})\b", 2, 40),
        rule(
            "github-oauth",
            &["gho_"],
            r"\b(gho_[A-Za-z0-9]{36})\b",
            2,
            40,
        ),
        rule(
            "github-app-token",
            &["ghu_", "ghs_"],
            r"\b((?:ghu|ghs)_[A-Za-z0-9]{36})\b",
            2,
            40,
        ),
        rule(
            "github-refresh-token",
            &["ghr_"],
            r"\b(ghr_[A-Za-z0-9]{36,76})\b",
            2,
            80,
        ),
        rule(
            "github-fine-grained-pat",
            &["github_pat_"],
            r"\b(github_pat_[A-Za-z0-9_]{60,})\b",
            2,
            104,
        ),
        rule(
            "gitlab-token",
            &[
                "glpat-",
                "gldt-",
                "glrt-",
                "glptt-",
                "glsoat-",
                "glcbt-",
                "glffct-",
                "glimt-",
                "glagent-",
                "gloas-",
                "gr1348941",
            ],
            // (Newer tokens carry a `.01.` version and a checksum after the random part.)
            r"\b((?:glpat|gldt|glrt|glptt|glsoat|glcbt|glffct|glimt|glagent|gloas)-[A-Za-z0-9_\-]{20,64}(?:\.[0-9a-z]{2}\.[0-9A-Za-z]{6,12}\b)?|GR1348941[A-Za-z0-9_\-]{20,64})",
            2,
            90,
        ),
        rule(
            "slack-token",
            &["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe", "xapp-"],
            r"\b((?:xox[baprs]|xoxe(?:\.xox[bp])?|xapp)-[0-9A-Za-z\-]{10,})",
            2,
            260,
        ),
        rule(
            "slack-webhook",
            &["hooks.slack.com"],
            r"(https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,})",
            12,
            180,
        ),
        rule(
            "stripe-secret-key",
            &["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"],
            r"\b((?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}|whsec_[0-9A-Za-z]{24,})\b",
            2,
            260,
        ),
        rule(
            "openai-api-key",
            &["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-none-"],
            r"\b(sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,})",
            2,
            260,
        ),
        rule(
            "openai-api-key-legacy",
            &["t3blbkfj"],
            r"\b(sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})\b",
            28,
            28,
        ),
        // An `sk-` key of the older or OpenAI-compatible kind without the marker: 48 characters
        // (OpenAI before the marker), 32 hex (DeepSeek), others between. After the marked form,
        // which names the span when both find it.
        RuleSpec {
            accept: Some(prefixed::random_body),
            ..rule(
                "openai-compatible-api-key",
                &["sk-"],
                r"\b(sk-[A-Za-z0-9]{32,64})\b",
                2,
                72,
            )
        },
        rule(
            "anthropic-api-key",
            &["sk-ant-"],
            r"\b(sk-ant-(?:api|admin|sid|oat)\d{2}-[A-Za-z0-9_\-]{20,})",
            2,
            320,
        ),
        rule(
            "google-api-key",
            &["aiza"],
            r"\b(AIza[0-9A-Za-z_\-]{35})(?:[^0-9A-Za-z_\-]|$)",
            2,
            44,
        ),
        rule(
            "azure-storage-key",
            &["accountkey="],
            r"(?i)AccountKey=([A-Za-z0-9+/]{86}==)",
            2,
            100,
        ),
        // An Azure AD (Entra ID) application's client secret: three characters, a digit and
        // `Q~`, then 31 to 34 more.
        RuleSpec {
            accept: Some(prefixed::random_body),
            ..rule(
                "azure-ad-client-secret",
                &[
                    "0q~", "1q~", "2q~", "3q~", "4q~", "5q~", "6q~", "7q~", "8q~", "9q~",
                ],
                r"(?:^|[^A-Za-z0-9_~.\-])([A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34})(?:[^A-Za-z0-9_~.\-]|$)",
                6,
                40,
            )
        },
        rule(
            "sendgrid-api-key",
            &["sg."],
            r"\b(SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})(?:[^A-Za-z0-9_\-]|$)",
            2,
            72,
        ),
        rule("twilio-api-key", &["sk"], r"\b(SK[0-9a-f]{32})\b", 2, 36),
        rule(
            "twilio-auth-token",
            &["twilio"],
            r#"(?i)twilio[A-Za-z0-9_\-\s"'`:=\\,(&]{0,40}?(?:auth|token|secret)[A-Za-z0-9_\-\s"'`:=\\,(&]{0,20}?\b([0-9a-f]{32})\b"#,
            2,
            120,
        ),
        rule(
            "mailgun-api-key",
            &["key-"],
            r"\b(key-[0-9a-f]{32})\b",
            2,
            40,
        ),
        rule("npm-token", &["npm_"], r"\b(npm_[A-Za-z0-9]{36})\b", 2, 40),
        rule(
            "pypi-token",
            // pypi.org and test.pypi.org.
            &["pypi-ageichlwas5vcmc", "pypi-agendgvzdc5wexbplm9yzw"],
            r"\b(pypi-Ag(?:EIcHlwaS5vcmc|ENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_\-]{50,})",
            2,
            320,
        ),
        rule(
            "huggingface-token",
            &["hf_", "api_org_"],
            // Letters only as issued; digits too, as some generators and docs write them.
            r"\b((?:hf_|api_org_)[A-Za-z0-9]{34})\b",
            2,
            44,
        ),
        // A shared access signature: `sig=` in a query that also has the service version.
        RuleSpec {
            needs: &["sv="],
            ..rule(
                "azure-sas-token",
                &["sig="],
                r"[?&]sig=([A-Za-z0-9%+/=]{30,})",
                400,
                200,
            )
        },
        // Heroku API keys are UUIDs: only under a key that names Heroku.
        rule(
            "heroku-api-key",
            &["heroku"],
            r#"(?i)heroku[A-Za-z0-9_\-]{0,20}(?:key|token)[A-Za-z0-9_\-]{0,10}\\?["']?[ \t]*(?::=|=>|[:=])[ \t]*\\?["']?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"#,
            2,
            120,
        ),
        rule(
            "google-oauth-token",
            &["ya29."],
            r"\b(ya29\.[0-9A-Za-z_\-]{20,})",
            2,
            400,
        ),
        // A Google OAuth refresh token (`1//0…`, as `gcloud` and the OAuth playground print
        // them).
        rule(
            "google-oauth-token",
            &["1//0"],
            r"(?:^|[^A-Za-z0-9_/:.\-])(1//0[A-Za-z0-9_\-]{40,})",
            2,
            530,
        ),
        // A Google OAuth client secret.
        rule(
            "google-oauth-client-secret",
            &["gocspx-"],
            r"\b(GOCSPX-[A-Za-z0-9_\-]{28})(?:[^A-Za-z0-9_\-]|$)",
            2,
            40,
        ),
        // Temporary AWS credentials' session token (STS): its first bytes are always the same.
        rule(
            "aws-session-token",
            &["iqojb3jpz2lux2vj", "fwogzxivyxdze"],
            r"((?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdzE)[A-Za-z0-9+/]{100,}={0,2})",
            2,
            4_200,
        ),
        // A Discord webhook URL: anyone holding it can post to the channel.
        rule(
            "discord-webhook",
            &["discord.com/api/webhooks/", "discordapp.com/api/webhooks/"],
            r"(https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_\-]{60,80})",
            40,
            200,
        ),
        rule(
            "telegram-bot-token",
            &[":aa"],
            r"(?:^|[^0-9])(\d{8,10}:AA[A-Za-z0-9_\-]{33})(?:[^A-Za-z0-9_\-]|$)",
            12,
            40,
        ),
        rule(
            "datadog-api-key",
            &["datadog", "dd_api", "dd-api", "dd_app", "dd-app"],
            r#"(?i)(?:datadog|dd[_\-](?:api|app))[A-Za-z0-9_\-\s"'`:=\\,(&]{0,40}?\b([a-f0-9]{40}|[a-f0-9]{32})\b"#,
            2,
            100,
        ),
        rule(
            "jwt",
            &["eyj"],
            r"\b(eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})",
            2,
            16_384,
        ),
        // A whole block, unless its body is the documentation's `XXXX` ([`pem_body`]).
        RuleSpec {
            accept: Some(pem_body),
            ..rule(
                "private-key",
                &["private key"],
                r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,}?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----",
                40,
                33_000,
            )
        },
        // A pasted key cut off before its END line: redact the body we can see (a lone header
        // line in documentation has none).
        RuleSpec {
            accept: Some(pem_body),
            ..rule(
                "private-key",
                &["private key"],
                r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s]|\\[nr]|:[^\n\\]*)+",
                40,
                33_000,
            )
        },
        // A PuTTY key file's private part: the base64 lines after `Private-Lines: N`.
        rule(
            "private-key",
            &["private-lines"],
            r"Private-Lines:[ \t]*\d+\r?\n((?:[A-Za-z0-9+/=]{4,}\r?\n)*[A-Za-z0-9+/=]{4,})(?:\r?\n|$)",
            2,
            4_000,
        ),
        // `scheme://user:password@host`. A password may hold a `/` that was never
        // percent-encoded (`mysql://root:6VVp…/7eys@db`, as SQLAlchemy and libpq read it); a
        // port before a path that holds an `@` (`http://host:8080/users/@me`) is none.
        RuleSpec {
            accept: Some(url_password),
            ..rule(
                "url-credentials",
                &["://"],
                r#"[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/@"'<>]{0,}:([^\s@/"'<>]{1,}(?:/[^\s@/"'<>]+){0,8})@"#,
                24,
                400,
            )
        },
        RuleSpec {
            accept: Some(basic_credential),
            ..rule(
                "http-basic-auth",
                &["basic "],
                r"(?i)\bbasic\s+([A-Za-z0-9+/]{6,}={0,2})",
                2,
                400,
            )
        },
        RuleSpec {
            accept: Some(token_like),
            ..rule(
                "http-bearer-token",
                &["bearer "],
                r"(?i)\bbearer\s+([A-Za-z0-9._~+/\-]{16,}=*)",
                2,
                600,
            )
        },
        // `Authorization: token …` (GitHub's older scheme, and others).
        RuleSpec {
            accept: Some(token_like),
            ..rule(
                "http-bearer-token",
                &["authorization"],
                r#"(?i)\bauthorization\\?["']?[ \t]*[:=][ \t]*\\?["']?token[ \t]+([A-Za-z0-9._~+/\-]{16,}=*)"#,
                2,
                600,
            )
        },
        // `curl -u user:password`, `auth=("user", "password")`, `BasicAuth("user", "password")`.
        RuleSpec {
            accept: Some(basic_password),
            ..rule(
                "http-basic-auth",
                &["curl", "wget", "--user", "auth=(", "basicauth("],
                r#"(?i)(?:(?:^|\s)(?:-u|--user)[ =]+['"]?[^\s:'"`@/]{1,64}:([^\s'"`]{1,})|\bauth\s*=\s*\(\s*\\?["'][^"'\r\n]{0,64}\\?["']\s*,\s*\\?["']([^"'\r\n\\]{1,})\\?["']|basicauth\(\s*\\?["'][^"'\r\n]{0,64}\\?["']\s*,\s*\\?["']([^"'\r\n\\]{1,})\\?["'])"#,
                2,
                400,
            )
        },
        // A password passed by position after a user, both literals: `smtp.login("alerts@…",
        // "…")`, `ftp.login("deploy", "…")`, `DriverManager.getConnection(url, "admin", "…")`,
        // `new PasswordAuthentication("admin", "…".toCharArray())`. No space in it: two strings
        // with spaces are words (`login("Sign in", "Welcome back")`).
        RuleSpec {
            accept: Some(basic_password),
            ..rule(
                "password-assignment",
                &["login(", "getconnection(", "passwordauthentication("],
                r#"(?i)\b(?:login|getConnection|PasswordAuthentication)\(\s*(?:(?:[A-Za-z_][A-Za-z0-9_.]{0,64}|\\?"[^"\r\n]{1,300}\\?")\s*,\s*)?\\?["'][^"'\r\n\\]{1,64}\\?["']\s*,\s*\\?["']([^"'\s\\]{1,})\\?["']"#,
                2,
                520,
            )
        },
        // `password = "…"`, `DB_PASSWORD: …`, `--password=…`, `"password", "…"` (setenv), with
        // an optional type (`: &str =`) and JSON-escaped quotes (`\"password\": \"…\"`).
        RuleSpec {
            accept: Some(password_value),
            ..rule(
                "password-assignment",
                &["password", "passwd", "pwd", "passphrase", "_pass", "-pass"],
                concat!(
                    // `DB_PASS=…`, `smtp-pass: …`: `pass` as the last word of a key (not
                    // `bypass`, `compass` or `_passenger`).
                    r#"(?i)(?:(?:password|passwd|passphrase|pwd)[A-Za-z0-9_\-]{0,24}|[_\-]pass\b)"#,
                    key_operator!(),
                    // A YAML block scalar (`password: >-`): the value on the next line.
                    r#"[ \t]*(?:[|>][-+]?[ \t]*(?:\r?\n|\\n)[ \t]+)?"#,
                    r#"(?:(?:String::from|SecretStr|SecretString::new|SecretString::from|Secret::new|Some)\()?"#,
                    password_value_pattern!(),
                ),
                2,
                340,
            )
        },
        // `dbPass: …`, `"mailPass": "…"`: a camelCase key ending in `Pass` (not `byPass`).
        RuleSpec {
            accept: Some(password_value),
            ..rule(
                "password-assignment",
                &["pass=", "pass =", "pass:", "pass\":", "pass':"],
                concat!(
                    r#"(?-i:[a-xz0-9]Pass)\b"#,
                    r#"(?:\\?["'`])?[ \t]*(?::=|=>|[:=])[ \t]*"#,
                    password_value_pattern!(),
                ),
                2,
                340,
            )
        },
        // SQL: `CREATE USER … IDENTIFIED BY '…'`, `ALTER ROLE … WITH LOGIN PASSWORD '…'`,
        // `CREATE LOGIN … WITH PASSWORD = '…'`, `SET PASSWORD FOR … = '…'`.
        RuleSpec {
            accept: Some(basic_password),
            needs: &["'"],
            ..rule(
                "password-assignment",
                &["password", "identified"],
                r#"(?i)(?:\b(?:create|alter)[ \t]+(?:user|role|login)\b[^;\n]{0,160}?(?:\bpassword[ \t]*=?[ \t]*|\bidentified[ \t]+(?:with[ \t]+\w+[ \t]+)?by[ \t]+(?:password[ \t]+)?)|\bset[ \t]+password\b[^;\n]{0,120}?=[ \t]*(?:password[ \t]*\([ \t]*)?)'([^'\r\n]{1,128})'"#,
                200,
                200,
            )
        },
        // A password or token piped into a login or a secret store: `echo "…" | docker login
        // -u ci --password-stdin`, `echo … | gh auth login --with-token`, `echo "…" | docker
        // secret create db_password -`.
        cli_rule(
            &["--password", "--with-token", "secret create"],
            concat!(
                cli_start!(),
                r#"(?:echo|printf)[ \t]+(?:-n[ \t]+|'%s'[ \t]+|"%s"[ \t]+)?"#,
                cli_value!(),
                r#"[ \t]*\|[^\n|;&]{0,120}?(?:--(?:password-stdin|with-token)\b|\b(?:docker|podman)[ \t]+secret[ \t]+create\b)"#
            ),
            200,
            40,
        ),
        // A command that sets a named value, the name then the value after a space: `setx
        // API_TOKEN …` (Windows), `ENV DB_PASSWORD …` (a Dockerfile), `aws configure set
        // aws_secret_access_key …`, `gh secret set API_KEY --body …`, `npm config set
        // //registry.npmjs.org/:_authToken …`, `wp config set DB_PASSWORD …`, `dotnet
        // user-secrets set "Jwt:Secret" …`. The name decides: one naming a password takes
        // any password, one naming another secret a random value.
        RuleSpec {
            accept: Some(password_named_by_command),
            ..rule(
                "password-assignment",
                COMMAND_KEYWORDS,
                SET_BY_COMMAND,
                // (`dotnet user-` before `secrets set`.)
                16,
                300,
            )
        },
        RuleSpec {
            accept: Some(secret_named_by_command),
            ..rule(
                "secret-assignment",
                COMMAND_KEYWORDS,
                SET_BY_COMMAND,
                // (`dotnet user-` before `secrets set`.)
                16,
                300,
            )
        },
        // `~/.pgpass`: `host:port:database:user:password`, a line of its own (the port
        // PostgreSQL's, or `*` for any).
        RuleSpec {
            accept: Some(basic_password),
            ..rule(
                "password-assignment",
                &[":5432:", ":*:"],
                r#"(?m)(?:^|\\n|[ \t"'])[A-Za-z0-9.*_\-]{1,253}:(?:5432|\*):[^:\s"'\\]{1,63}:[^:\s"'\\]{1,63}:([^:\s"'\\]{4,128})(?:[ \t\r]*$|\\n|["'])"#,
                260,
                260,
            )
        },
        // A user and password given together after `credentials`, `creds` or `login`:
        // `credentials: admin:…`, `login admin / …`. A value of both cases and a digit or
        // symbol only (`creds: aws:us-east-1`, `login user / register` are none).
        RuleSpec {
            accept: Some(paired_password),
            ..rule(
                "password-assignment",
                &["credentials", "creds", "login"],
                r#"(?i)\b(?:credentials|creds|login)\b[ \t]*[:=]?[ \t]*[`"']?[A-Za-z0-9._@\-]{1,64}(?:[ \t]+/[ \t]+|:)([^\s`"':/]{8,128})(?:[\s`"',;)]|$)"#,
                2,
                220,
            )
        },
        // A value printed alone on the line after the command or expression that read it:
        // `$ echo $DB_PASSWORD`, `printenv API_TOKEN`, `irb> ENV["SECRET_KEY_BASE"]`,
        // `$ cat ~/.secrets/token`. The name read decides, as for a command that sets one.
        RuleSpec {
            accept: Some(password_printed),
            ..rule("password-assignment", PRINT_KEYWORDS, PRINTED, 2, 500)
        },
        RuleSpec {
            accept: Some(secret_printed),
            ..rule("secret-assignment", PRINT_KEYWORDS, PRINTED, 2, 500)
        },
        // Redis's `requirepass …` and `masterauth …` (redis.conf, `CONFIG SET requirepass …`).
        RuleSpec {
            accept: Some(basic_password),
            ..rule(
                "password-assignment",
                &["requirepass", "masterauth"],
                r#"(?i)\b(?:requirepass|masterauth)[ \t]+["']?([^\s"']{4,128})"#,
                2,
                150,
            )
        },
        // `.netrc`: `machine host login user password …`, on one line or several.
        RuleSpec {
            accept: Some(basic_password),
            ..rule(
                "password-assignment",
                &["machine"],
                r#"\bmachine[ \t\r\n]+[^\s]+(?:[ \t\r\n]+login[ \t\r\n]+[^\s]+)?[ \t\r\n]+password[ \t]+([^\s]{4,128})"#,
                2,
                400,
            )
        },
        // The first two arguments of a call: `os.Setenv("DB_PASSWORD", "…")`,
        // `config.set('smtp_password', '…')`.
        RuleSpec {
            accept: Some(password_value),
            needs: &[", \"", ", '", ",\"", ",'", ", \\\"", ",\\\""],
            ..rule(
                "password-assignment",
                &["password", "passwd", "passphrase", "pwd", "_pass", "-pass"],
                r#"(?i)\(\s*\\?["'][A-Za-z0-9_.\-]{0,32}?(?:(?:password|passwd|passphrase|pwd)[A-Za-z0-9_\-]{0,24}|[_\-]pass)\\?["']\s*,\s*(?:\\"([^"\\\r\n]{4,})\\"|"([^"\r\n]{4,})"|'([^'\r\n]{4,})')"#,
                40,
                300,
            )
        },
        RuleSpec {
            accept: Some(secret_value),
            needs: &[", \"", ", '", ",\"", ",'", ", \\\"", ",\\\""],
            ..rule(
                "secret-assignment",
                &["secret"],
                r#"(?i)\(\s*\\?["'][A-Za-z0-9_.\-]{0,32}?secret[A-Za-z0-9_\-]{0,24}\\?["']\s*,\s*(?:\\"([^"\\\r\n]{8,})\\"|"([^"\r\n]{8,})"|'([^'\r\n]{8,})')"#,
                40,
                300,
            )
        },
        // A token or key given to a setter by name: `os.Setenv("API_TOKEN", "…")`,
        // `define('AUTH_KEY', '…')`, `System.setProperty("api.key", "…")`,
        // `[Environment]::SetEnvironmentVariable("API_TOKEN", "…", "User")`,
        // `os.environ.setdefault("API_KEY", "…")`, `conf.set("fs.s3a.secret.key", "…")`,
        // `localStorage.setItem("access_token", "…")`. Anchored on the setters (a name's own
        // words, `token` and `key`, are everywhere in code), and only a random value is one.
        RuleSpec {
            accept: Some(token_argument),
            ..rule(
                "secret-assignment",
                &[
                    "setenv(",
                    "setproperty(",
                    "define(",
                    "environmentvariable(",
                    "setdefault(",
                    "set(",
                    "setitem(",
                ],
                r#"(?i)(?:setenv|setproperty|define|environmentvariable|setdefault|set|setitem)\(\s*\\?["'][A-Za-z0-9_.\-]{1,64}\\?["']\s*,\s*(?:\\"([^"\\\r\n]{16,512})\\"|"([^"\r\n]{16,512})"|'([^'\r\n]{16,512})')"#,
                20,
                620,
            )
        },
        // Kubernetes env entries: `- name: DB_PASSWORD` then `value: …` on the next line.
        RuleSpec {
            accept: Some(password_value),
            needs: &["value:"],
            ..rule(
                "password-assignment",
                &["password", "passwd", "passphrase", "_pass", "-pass"],
                concat!(
                    r#"(?i)(?:(?:password|passwd|passphrase)[A-Za-z0-9_\-]{0,24}|[_\-]pass\b)\\?["']?[ \t]*(?:\r?\n|\\n)[ \t+\-]*value:[ \t]*"#,
                    r#"(?:\\"([^"\\\r\n]{4,})\\"|"([^"\r\n]{4,})"|'([^'\r\n]{4,})'|([^\s"'`,;)}\]\\]{4,}))"#,
                ),
                2,
                340,
            )
        },
        RuleSpec {
            accept: Some(secret_value),
            needs: &["value:"],
            ..rule(
                "secret-assignment",
                &["secret"],
                concat!(
                    r#"(?i)secret[A-Za-z0-9_\-]{0,24}\\?["']?[ \t]*(?:\r?\n|\\n)[ \t+\-]*value:[ \t]*"#,
                    r#"(?:\\"([^"\\\r\n]{8,})\\"|"([^"\r\n]{8,})"|'([^'\r\n]{8,})'|([^\s"'`,;)}\]\\]{8,}))"#,
                ),
                2,
                340,
            )
        },
        // `--password …` on a command line.
        RuleSpec {
            accept: Some(password_value),
            needs: &["--"],
            ..rule(
                "password-assignment",
                &["--password", "--passwd"],
                r#"(?:^|\s)--(?:password|passwd)(?:[ \t]+|=)(?:'([^'\r\n]{1,})'|"([^"\r\n]{1,})"|([^\s'"]{1,}))"#,
                4,
                300,
            )
        },
        // `--db-password …`, `--http-password …`: a named password flag with a space (the `=`
        // form is an assignment above).
        RuleSpec {
            accept: Some(named_password_flag),
            needs: &["--"],
            ..rule(
                "cli-password",
                // The assignment rules' keywords: no new anchors for the keyword scan.
                &["password", "passwd"],
                concat!(
                    r#"(?:^|\s)--[a-z0-9]+(?:-[a-z0-9]+)*-(?:password|passwd)[ \t]+"#,
                    cli_value!()
                ),
                40,
                300,
            )
        },
        // The password flags of database, registry and directory clients, where the tool is
        // named on the line: `mysql -uroot -pS3cret` (no space: `-p` alone prompts), `docker
        // login -u ci -p …`, `sshpass -p …`, `redis-cli -a …`, `sqlcmd -P …`, `ldapsearch -w
        // …`, `mongosh -p …`, `smbclient -U user%…`, `htpasswd -b file user …`, `keytool
        // -storepass …`, `openssl … -passin pass:…`. Port flags (`mysql -P`, `redis-cli -p`,
        // `docker run -p`) are other letters or other commands.
        cli_rule(
            &["mysql"],
            concat!(
                cli_start!(),
                r#"(?i:mysql(?:dump|admin|import|check|show|pump|sh)?)\b"#,
                cli_gap!(),
                r#"[ \t]-p"#,
                cli_value!()
            ),
            2,
            400,
        ),
        cli_rule(
            &["login"],
            concat!(
                cli_start!(),
                r#"(?:docker|podman|nerdctl|buildah|skopeo|helm(?:[ \t]+registry)?|oras|crane|az|cf)[ \t]+login\b"#,
                cli_gap!(),
                r#"[ \t]-p[ \t]+"#,
                cli_value!()
            ),
            40,
            400,
        ),
        cli_rule(
            &[
                "sshpass",
                "redis-cli",
                "sqlcmd",
                "ldapsearch",
                "ldapmodify",
                "ldapadd",
                "mongo",
            ],
            concat!(
                // sshpass's own options come before the command it runs (`sshpass -e ssh
                // -p 2222 host`: that `-p` is ssh's port).
                cli_start!(),
                r#"(?:sshpass(?:[ \t]+-[a-zA-Z][^\s;|&\\]*)*?[ \t]+-p[ \t]*"#,
                r#"|redis-cli\b"#,
                cli_gap!(),
                r#"[ \t](?:-a|--pass)[ \t]+"#,
                r#"|sqlcmd\b"#,
                cli_gap!(),
                r#"[ \t]-P[ \t]*"#,
                r#"|ldap(?:search|modify|add)\b"#,
                cli_gap!(),
                r#"[ \t]-w[ \t]+"#,
                r#"|mongo(?:sh|dump|restore)?\b"#,
                cli_gap!(),
                r#"[ \t]-p[ \t]+)"#,
                cli_value!()
            ),
            2,
            400,
        ),
        cli_rule(
            &["smbclient", "rpcclient", "htpasswd"],
            concat!(
                r#"(?:"#,
                cli_start!(),
                r#"(?:smbclient|rpcclient)\b"#,
                cli_gap!(),
                r#"[ \t](?:-U|--user)[ \t=]+['"]?[^\s%'"\\]{1,64}%"#,
                r#"|"#,
                cli_start!(),
                r#"htpasswd[ \t]+-[a-zA-Z]*b[a-zA-Z]*[ \t]+[^\s;|&\\]+[ \t]+[^\s;|&\\]+[ \t]+"#,
                r#")"#,
                cli_value!()
            ),
            2,
            400,
        ),
        // `keytool` and `openssl` take several password flags: every one near the tool's name.
        cli_rule(
            &["keytool", "openssl"],
            concat!(
                r#"[ \t](?:-(?:src|dest)?(?:storepass|keypass)[ \t]+"#,
                r#"|-pass(?:in|out)?[ \t]+pass:|-k[ \t]+)"#,
                cli_value!()
            ),
            2,
            600,
        ),
        // Oracle's `user/password@db`: in a thin JDBC URL and on the command lines of its tools
        // (`sqlplus scott/…@//db:1521/orcl`, `expdp system/… directory=…`).
        cli_rule(
            &[
                "jdbc:oracle:",
                "sqlplus",
                "rman target",
                "expdp",
                "impdp",
                "sqlldr",
            ],
            concat!(
                r#"(?i:jdbc:oracle:(?:thin|oci):|(?:sqlplus|rman[ \t]+target[ \t]*=?|expdp|impdp|sqlldr(?:[ \t]+userid=)?)(?:[ \t]+-[a-zA-Z]+)*[ \t]+)"#,
                r#"["']?[A-Za-z][A-Za-z0-9_$#]{0,29}/([^\s@/"']{1,128})(?:@|\s|["']|$)"#
            ),
            2,
            200,
        ),
        // Archive passwords: `zip -P …` and `unzip -P …` (a space), `7z a -p…` and `rar a -p…`
        // (no space: `-p` alone prompts).
        cli_rule(
            // (Not `7z` alone: random tokens hold it.)
            &[
                "zip -", "7z a ", "7z e ", "7z x ", "7za ", "7zr ", "rar a", "rar e", "rar x",
            ],
            concat!(
                cli_start!(),
                r#"(?:(?:un)?zip\b"#,
                cli_gap!(),
                r#"[ \t]-P[ \t]+|(?:7z[ar]?|(?:un)?rar)\b"#,
                cli_gap!(),
                r#"[ \t]-p)"#,
                cli_value!()
            ),
            4,
            400,
        ),
        // Windows and Linux account passwords: `net user deploy … /add`, `echo "deploy:…" |
        // chpasswd`, PowerShell's `ConvertTo-SecureString "…" -AsPlainText`.
        cli_rule(
            &["net user"],
            concat!(
                cli_start!(),
                r#"net[ \t]+user[ \t]+(?:"[^"\r\n]{1,64}"|[^\s"/*]{1,64})[ \t]+"#,
                r#"(?:"([^"\r\n]{4,128})"|([^\s"'/*;|&][^\s"';|&]{3,127}))"#
            ),
            2,
            300,
        ),
        cli_rule(
            &["chpasswd"],
            concat!(
                cli_start!(),
                r#"(?:echo|printf)[ \t]+(?:-[en][ \t]+)?["']?[A-Za-z0-9_.\-]{1,64}:([^\s"':]{4,128})["']?"#,
                r#"[ \t]*\|[ \t]*(?:sudo[ \t]+)?chpasswd\b"#
            ),
            200,
            20,
        ),
        cli_rule(
            &["securestring"],
            r#"(?i)ConvertTo-SecureString[ \t]+(?:-String[ \t]+)?(?:"([^"\r\n]{4,128})"|'([^'\r\n]{4,128})')[^\r\n]{0,40}?-AsPlainText\b"#,
            16,
            300,
        ),
        // Terraform: `variable "db_password" { default = "…" }`, the name in the block's header
        // (anchored on the block: the password keywords' hits are many, these blocks few).
        RuleSpec {
            accept: Some(password_value),
            needs: &["default"],
            ..rule(
                "password-assignment",
                &["variable \""],
                r#"(?i)\bvariable[ \t]+"[A-Za-z0-9_\-]{0,32}?(?:password|passwd|secret)[A-Za-z0-9_\-]{0,24}"[ \t]*\{[^}]{0,200}?\bdefault[ \t]*=[ \t]*"([^"\r\n]{4,})""#,
                2,
                340,
            )
        },
        // `<password>…</password>` (Maven settings, XML configs).
        RuleSpec {
            accept: Some(password_value),
            needs: &["</"],
            ..rule(
                "password-assignment",
                &["password", "passwd", "passphrase"],
                r#"(?i)<(?:[a-z_\-]{0,20}password|passwd|passphrase)>([^<\r\n]{4,})</"#,
                24,
                300,
            )
        },
        // `<add key="DB_PASSWORD" value="…"/>`, `<property name="smtp.password" value="…"/>`
        // (.NET, Ant, Spring XML configs): the name is an attribute before the value's.
        RuleSpec {
            accept: Some(password_value),
            needs: &["value=", "value =", "VALUE=", "Value="],
            ..rule(
                "password-assignment",
                &["password", "passwd", "passphrase"],
                concat!(
                    r#"(?i)[ \t](?:key|name)[ \t]*=[ \t]*\\?["'][A-Za-z0-9_.:\-]{0,32}?(?:password|passwd|passphrase)[A-Za-z0-9_.\-]{0,24}\\?["']"#,
                    xml_value_attribute!(4)
                ),
                48,
                300,
            )
        },
        RuleSpec {
            accept: Some(secret_value),
            needs: &["value=", "value =", "VALUE=", "Value="],
            ..rule(
                "secret-assignment",
                &["secret"],
                concat!(
                    r#"(?i)[ \t](?:key|name)[ \t]*=[ \t]*\\?["'][A-Za-z0-9_.:\-]{0,32}?secret[A-Za-z0-9_.\-]{0,24}\\?["']"#,
                    xml_value_attribute!(8)
                ),
                48,
                300,
            )
        },
        // `my secret is …` (a credential-looking value only).
        RuleSpec {
            accept: Some(prose_secret),
            needs: &[" is ", " was ", " IS ", " Is "],
            ..rule(
                "secret-assignment",
                &["secret"],
                r#"(?i)\bsecret(?:[ \t]+(?:access[ \t]+)?(?:key|token|value))?[ \t]+(?:is|was)[ \t]+[`"']?([^\s`"']{8,})"#,
                2,
                140,
            )
        },
        // `the token is …`, `your API key was …`: a random value only, and a key only after a
        // word that makes it a credential (`the cache key is <sha256>` is none).
        RuleSpec {
            accept: Some(prose_token),
            ..rule(
                "secret-assignment",
                &["token is", "token was", "key is", "key was"],
                r#"(?i)(?:\btoken|\b(?:access|auth|api|bearer|session|refresh|bot|client|personal|secret|private|signing|encryption|master)[ \t_\-]+(?:[a-z]+[ \t]+)?key)[ \t]+(?:is|was):?[ \t]+[`"']?([A-Za-z0-9+/=_\-.~]{15,}[A-Za-z0-9+/=_\-~])"#,
                40,
                140,
            )
        },
        // `I set API_KEY to "…"`, `rotated the signing key to …`: a key or token a sentence sets
        // to a value, a random one only (as `the token is …`).
        RuleSpec {
            accept: Some(prose_token),
            ..rule(
                "secret-assignment",
                &["key to", "token to", "secret to"],
                r#"(?i)\b(?:set|sets|setting|changed?|changing|reset|updated?|rotated?)[ \t]+(?:(?:the|my|our|its|your)[ \t]+)?(?:[A-Za-z0-9_.\-]*(?:token|key|secret)|(?:[a-z]+[ \t]+)?(?:token|key|secret))[ \t]+to[ \t]+[`"']?([A-Za-z0-9+/=_\-.~]{15,}[A-Za-z0-9+/=_\-~])"#,
                64,
                140,
            )
        },
        // `I changed the password to …`, `set the root password to "…"`.
        RuleSpec {
            accept: Some(prose_password),
            needs: &[" to "],
            ..rule(
                "password-assignment",
                &["password", "passwd", "passphrase"],
                r#"(?i)\b(?:set|sets|setting|changed?|changing|reset|updated?)[ \t]+(?:(?:the|my|our|its|your)[ \t]+)?(?:[A-Za-z0-9_.\-]*(?:password|passwd|passphrase)|(?:[a-z]+[ \t]+)?(?:password|passwd|passphrase))[ \t]+to[ \t]+[`"']?([^\s`"']{6,64})"#,
                48,
                120,
            )
        },
        // `my password is hunter22`, `the passphrase was "…"`, `the admin password for the
        // staging box is …`, `password -> …`.
        RuleSpec {
            accept: Some(prose_password),
            needs: &[" is ", " was ", " IS ", " Is ", " is:", " -> ", " => "],
            ..rule(
                "password-assignment",
                &["password", "passwd", "passphrase"],
                r#"(?i)\b(?:password|passwd|passphrase)(?:[ \t]+(?:for|of|on)(?:[ \t]+[^\s]+){1,5}?)?[ \t]+(?:is|was|->|=>):?[ \t]+[`"']?([^\s`"']{6,64})"#,
                2,
                160,
            )
        },
        // `use password …`, `log in with password …`, `enter the passphrase …`.
        RuleSpec {
            accept: Some(prose_password),
            ..rule(
                "password-assignment",
                &["password", "passwd", "passphrase"],
                r#"(?i)\b(?:use|using|with|enter|try|type)[ \t]+(?:the[ \t]+)?(?:password|passwd|passphrase)[ \t]+[`"']?([^\s`"']{6,64})"#,
                24,
                100,
            )
        },
        // `client_secret: …`, `JWT_SECRET=…`, `"webhookSecret": "…"`: as passwords, but the value
        // must look like a credential (a digit or a symbol, eight bytes or more).
        RuleSpec {
            accept: Some(secret_value),
            ..rule(
                "secret-assignment",
                &["secret"],
                concat!(
                    r#"(?i)secret[A-Za-z0-9_\-]{0,24}"#,
                    key_operator!(),
                    r#"[ \t]*(?:(?:String::from|SecretStr|SecretString::new|SecretString::from|Secret::new|Some)\()?"#,
                    r#"(?:\\"([^"\\\r\n]{8,})\\"|"([^"\r\n]{8,})"|'([^'\r\n]{8,})'|`([^`\r\n]{8,})`|((?:[^\s"'`,;)}\]\\]|\\[^nrt"\\])(?:[^\s"'`,;\\]|\\[^nrt"\\]){6,}(?:[^\s"'`,;)}\]\\]|\\[^nrt"\\])))"#,
                ),
                2,
                340,
            )
        },
        // A key that is just `pass` or `pw`: `user=admin pass=…`, `{ user: "admin", pass: "…" }`
        // (the camelCase rule's keywords, so no new anchor for `pass`). Last, so that a tool's
        // own rule labels a span both find (`openssl … -passin pass:…`).
        RuleSpec {
            accept: Some(bare_pass_value),
            ..rule(
                "password-assignment",
                &[
                    "pass=", "pass =", "pass:", "pass\":", "pass':", "pw=", "pw:", "pw\":",
                ],
                concat!(
                    r#"(?i)(?:^|[\s{,;(\[])\\?["']?(?:pass|pw)\b"#,
                    r#"(?:\\?["'])?[ \t]*(?::=|=>|[:=])[ \t]*"#,
                    password_value_pattern!(),
                ),
                4,
                340,
            )
        },
    ]
}

/// The rule detector.
pub struct RuleDetector {
    keywords: crate::scan::KeywordSet,
    /// Keyword pattern id → rules that use it.
    by_keyword: Vec<Vec<usize>>,
    /// Keyword pattern id → whether it is one of [`TABLE_KEYWORDS`].
    table_keyword: Vec<bool>,
    rules: Vec<CompiledRule>,
    /// Buffers and regex caches of finished calls, for the next ([`Scratch`]).
    scratch: Mutex<Vec<Scratch>>,
}

/// A rule ready to run.
struct CompiledRule {
    spec: RuleSpec,
    regex: meta::Regex,
    /// The literal search for the rule's `needs`, if any.
    needs: Option<meta::Regex>,
    /// What the pattern's shape lets the search skip.
    shortcuts: Shortcuts,
    /// The pattern matches JSON escapes itself (it has a literal backslash: `\\[nr]` in a
    /// JSON-escaped PEM, `\\"` around a value): it searches the text as it is, not the
    /// [`escape_shadow`](crate::scan::escape_shadow).
    reads_escapes: bool,
}

/// Cheaper ways to run a rule that give the same findings, proven from its pattern when it is
/// compiled. A rule whose pattern proves nothing runs the plain way: a window around each
/// keyword hit, searched left to right. ("The same": for every match within `back`/`fwd` of
/// the keyword it holds. Cut windows no longer borrow reach from a neighbouring hit's window
/// across whitespace, which could only matter for a URL userinfo longer than `fwd`.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Shortcuts {
    /// The secret is always the whole match (`\b(ghp_…)\b`, most token formats): only the
    /// match is searched for, without the slower capture engines.
    secret_is_match: bool,
    /// Every match starts with one of the rule's keywords (`ghp_`, `(?i)password`): the regex
    /// is tried anchored at each keyword hit instead of searching a window around it.
    anchored: bool,
    /// Every match contains one of the rule's keywords and no whitespace (URLs with
    /// credentials): a hit's window ends at the whitespace around it.
    no_whitespace: bool,
}

/// Where a rule's regex matched (offsets into the whole text).
struct RegexMatch {
    /// The secret: the first group that matched, else the whole match.
    secret: Range<usize>,
    /// The whole match.
    whole: Range<usize>,
}

impl std::fmt::Debug for RuleDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleDetector")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl RuleDetector {
    /// Compiles [`default_rules`].
    pub fn new() -> Result<Self, Error> {
        Self::with_rules(default_rules())
    }

    /// Compiles `specs`.
    pub fn with_rules(specs: Vec<RuleSpec>) -> Result<Self, Error> {
        Self::compile_rules(specs, true)
    }

    /// Compiles `specs` to run the plain way, without the shortcuts their patterns prove: the
    /// reference the shortcuts are tested against.
    #[doc(hidden)]
    pub fn without_shortcuts(specs: Vec<RuleSpec>) -> Result<Self, Error> {
        Self::compile_rules(specs, false)
    }

    fn compile_rules(specs: Vec<RuleSpec>, shortcuts: bool) -> Result<Self, Error> {
        let mut keyword_ids: HashMap<&'static str, usize> = HashMap::new();
        let mut keywords: Vec<&'static str> = Vec::new();
        let mut by_keyword: Vec<Vec<usize>> = Vec::new();
        let mut rules = Vec::new();
        for (index, spec) in specs.into_iter().enumerate() {
            for kw in spec.keywords {
                let id = *keyword_ids.entry(kw).or_insert_with(|| {
                    keywords.push(kw);
                    by_keyword.push(Vec::new());
                    keywords.len() - 1
                });
                by_keyword[id].push(index);
            }
            let mut rule = CompiledRule::new(spec)?;
            if !shortcuts {
                rule.shortcuts = Shortcuts::default();
            }
            rules.push(rule);
        }
        let table_keyword = keywords
            .iter()
            .map(|k| TABLE_KEYWORDS.contains(k))
            .collect();
        let keywords = crate::scan::KeywordSet::new(keywords);
        Ok(Self {
            keywords,
            by_keyword,
            table_keyword,
            rules,
            scratch: Mutex::new(Vec::new()),
        })
    }
}

/// A pattern parsed as a byte-oriented regex (ASCII classes, no UTF-8 requirement), as
/// `regex::bytes` parses them.
fn parse(pattern: &str, id: &str) -> Result<Hir, Error> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| build_error(id, &e))
}

/// The regex of a parsed pattern.
fn compile(hir: &Hir, id: &str) -> Result<meta::Regex, Error> {
    let regex = compile_with(hir, id, true)?;
    if regex.memory_usage() > ONEPASS_BUDGET {
        return compile_with(hir, id, false);
    }
    Ok(regex)
}

/// A regex whose one-pass DFA would make it larger than this is built without one (it searches
/// its anchored tries with the bounded backtracker instead). The rules' one-pass DFAs held 1.8 MB,
/// most of it in a few long assignment patterns; resident memory is a target (30 MiB).
const ONEPASS_BUDGET: usize = 48 << 10;

fn compile_with(hir: &Hir, id: &str, onepass: bool) -> Result<meta::Regex, Error> {
    meta::Regex::builder()
        .configure(
            meta::Config::new()
                .utf8_empty(false)
                .nfa_size_limit(Some(8 << 20))
                .onepass(onepass),
        )
        .build_from_hir(hir)
        .map_err(|e| build_error(id, &e))
}

fn build_error(id: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Build {
        what: "credential rules",
        reason: format!("{id}: {e}"),
    }
}

impl CompiledRule {
    fn new(spec: RuleSpec) -> Result<Self, Error> {
        // Parsed once: the regex and the shortcut analysis read the same tree.
        let hir = parse(spec.pattern, spec.id)?;
        let regex = compile(&hir, spec.id)?;
        let needs = if spec.needs.is_empty() {
            None
        } else {
            let alternation: Vec<String> = spec.needs.iter().map(|n| regex::escape(n)).collect();
            Some(compile(&parse(&alternation.join("|"), spec.id)?, spec.id)?)
        };
        Ok(CompiledRule {
            shortcuts: Shortcuts::of(&hir, spec.keywords),
            reads_escapes: spec.pattern.contains(r"\\"),
            spec,
            regex,
            needs,
        })
    }

    /// The text a keyword hit at `start..end` lets this rule's regex search: `back` bytes before
    /// it to `fwd` after, cut at whitespace around the hit for rules whose matches hold none.
    fn window(&self, bytes: &[u8], start: usize, end: usize) -> Range<usize> {
        let (mut ws, mut we) = (
            start.saturating_sub(self.spec.back),
            (end + self.spec.fwd).min(bytes.len()),
        );
        if self.shortcuts.no_whitespace {
            if let Some(space) = bytes[ws..start].iter().rposition(u8::is_ascii_whitespace) {
                ws += space + 1;
            }
            if let Some(space) = bytes[end..we].iter().position(u8::is_ascii_whitespace) {
                we = end + space;
            }
        }
        ws..we
    }

    /// Whether the rule's `needs` (if any) occur in `range` of `bytes`.
    fn needs_met(&self, bytes: &[u8], range: Range<usize>) -> bool {
        self.needs
            .as_ref()
            .is_none_or(|n| n.is_match(Input::new(bytes).range(range)))
    }

    /// The first match in `range` of `bytes` (starting exactly at `range.start` when
    /// `anchored`). Look-arounds (`\b`) see the bytes around the range.
    fn next_match(
        &self,
        bytes: &[u8],
        range: Range<usize>,
        anchored: bool,
        cache: &mut meta::Cache,
        captures: &mut Option<Captures>,
    ) -> Option<RegexMatch> {
        let input = Input::new(bytes).range(range).anchored(if anchored {
            Anchored::Yes
        } else {
            Anchored::No
        });
        if self.shortcuts.secret_is_match {
            let m = self.regex.search_with(cache, &input)?;
            return Some(RegexMatch {
                secret: m.range(),
                whole: m.range(),
            });
        }
        let captures = captures.get_or_insert_with(|| self.regex.create_captures());
        self.regex.search_captures_with(cache, &input, captures);
        let whole = captures.get_match()?.range();
        let secret = (1..captures.group_len())
            .find_map(|i| captures.get_group(i))
            .map_or(whole.clone(), |span| span.range());
        Some(RegexMatch { secret, whole })
    }

    /// Every match in `range` of `bytes`, each turned into a finding unless it is no secret.
    fn find_in(
        &self,
        bytes: &[u8],
        range: Range<usize>,
        cache: &mut meta::Cache,
        captures: &mut Option<Captures>,
        out: &mut Vec<Finding>,
    ) {
        let mut at = range.start;
        while at <= range.end {
            let Some(m) = self.next_match(bytes, at..range.end, false, cache, captures) else {
                break;
            };
            // Past the match (and past an empty one, which no rule should produce).
            at = m.whole.end.max(m.whole.start + 1);
            out.extend(self.finding(bytes, &m));
        }
    }

    /// The finding for a match, unless the value is not a secret (empty, inside a placeholder,
    /// a documented example, refused by `accept`).
    fn finding(&self, bytes: &[u8], m: &RegexMatch) -> Option<Finding> {
        let secret = &bytes[m.secret.clone()];
        let quoted = m.secret.start > 0 && matches!(bytes[m.secret.start - 1], b'"' | b'\'' | b'`');
        // An unquoted value of a URL query or form (`?password=…&ssl=true`) runs up to the next
        // parameter; elsewhere (`Password=…&u6=…;` in a connection string) `&x=` may be in it.
        let value = if !quoted && in_query(bytes, m.whole.start) {
            &secret[..query_param_start(secret)]
        } else {
            secret
        };
        // An unquoted one stops at a bracket it did not open (`pwd=None):`).
        let value = if quoted {
            value
        } else {
            &value[..unopened_closer(value)]
        };
        let candidate = Candidate {
            value,
            matched: &bytes[m.whole.clone()],
            quoted,
            preceding: m.whole.start.checked_sub(1).map(|i| bytes[i]),
            following: {
                let end = m.secret.start + value.len();
                &bytes[end..(end + 8).min(bytes.len())]
            },
        };
        // `not_example` before `accept`: the accept checks rely on it and do not repeat it.
        if value.is_empty()
            || inside_placeholder(bytes, m.secret.start)
            || !not_example(candidate.value)
            || self.spec.accept.is_some_and(|accept| !accept(&candidate))
        {
            return None;
        }
        Some(Finding {
            start: m.secret.start,
            end: m.secret.start + value.len(),
            rule: self.spec.id.into(),
            detector: DetectorKind::Rule,
            secret: None,
        })
    }
}

impl Shortcuts {
    /// The shortcuts a rule's parsed pattern proves, given its keywords.
    fn of(hir: &Hir, keywords: &[&str]) -> Self {
        let keywords: Vec<Vec<u8>> = keywords
            .iter()
            .map(|k| k.as_bytes().to_ascii_lowercase())
            .collect();
        Shortcuts {
            secret_is_match: secret_is_whole_match(hir),
            anchored: starts_with_keyword(hir, &keywords),
            no_whitespace: !can_match_whitespace(hir) && requires_keyword(hir, &keywords),
        }
    }
}

/// Whether the secret is always the whole match: the pattern is one capture group, alone or
/// between zero-width assertions (`\b(…)\b`).
fn secret_is_whole_match(hir: &Hir) -> bool {
    if hir.properties().explicit_captures_len() != 1 {
        return false;
    }
    let is_group = |kind: &HirKind| matches!(kind, HirKind::Capture(_));
    match hir.kind() {
        kind if is_group(kind) => true,
        HirKind::Concat(items) => items
            .iter()
            .all(|h| is_group(h.kind()) || matches!(h.kind(), HirKind::Look(_))),
        _ => false,
    }
}

/// Whether every match starts with one of `keywords` (lower case; ASCII case ignored): the
/// pattern's prefix literals are a finite set and each begins with a keyword.
fn starts_with_keyword(hir: &Hir, keywords: &[Vec<u8>]) -> bool {
    let mut extractor = literal::Extractor::new();
    // Enough for every case variant of `(?i)passphrase` (2^10); a class of more bytes than
    // that ends its literal (`A3T[A-Z0-9]` → `A3T`), which is still a sound prefix.
    extractor
        .kind(literal::ExtractKind::Prefix)
        .limit_total(4096)
        .limit_literal_len(32);
    let prefixes = extractor.extract(hir);
    let Some(literals) = prefixes.literals() else {
        return false;
    };
    !literals.is_empty()
        && literals.iter().all(|literal| {
            let lower = literal.as_bytes().to_ascii_lowercase();
            keywords.iter().any(|k| lower.starts_with(k))
        })
}

/// Whether every match contains one of `keywords`: the pattern is a sequence one of whose
/// items is a literal holding a keyword (`…://…` for `://`).
fn requires_keyword(hir: &Hir, keywords: &[Vec<u8>]) -> bool {
    let HirKind::Concat(items) = hir.kind() else {
        return false;
    };
    items.iter().any(|item| match item.kind() {
        HirKind::Literal(literal) => {
            let lower = literal.0.to_ascii_lowercase();
            keywords
                .iter()
                .any(|k| lower.windows(k.len()).any(|w| w == k.as_slice()))
        }
        _ => false,
    })
}

/// Whether some match may contain an ASCII whitespace byte ([`u8::is_ascii_whitespace`]).
fn can_match_whitespace(hir: &Hir) -> bool {
    const SPACES: &[u8] = b" \t\n\x0c\r";
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(literal) => literal.0.iter().any(u8::is_ascii_whitespace),
        HirKind::Class(Class::Bytes(class)) => class
            .ranges()
            .iter()
            .any(|r| SPACES.iter().any(|b| (r.start()..=r.end()).contains(b))),
        HirKind::Class(Class::Unicode(class)) => class.ranges().iter().any(|r| {
            SPACES
                .iter()
                .any(|&b| (r.start()..=r.end()).contains(&char::from(b)))
        }),
        HirKind::Repetition(repetition) => can_match_whitespace(&repetition.sub),
        HirKind::Capture(capture) => can_match_whitespace(&capture.sub),
        HirKind::Concat(items) | HirKind::Alternation(items) => {
            items.iter().any(can_match_whitespace)
        }
    }
}

impl Detector for RuleDetector {
    fn find(&self, text: &str, out: &mut Vec<Finding>) {
        let mut scratch = self.take_scratch();
        self.find_with(text.as_bytes(), &mut scratch, out);
        self.put_back(scratch);
    }

    /// Drops the pooled buffers and regex caches (an idle daemon returns them; the next call
    /// makes new ones).
    fn release_memory(&self) {
        let pooled = self
            .scratch
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        drop(pooled);
    }
}

/// The buffers of one [`RuleDetector::find`] and each rule's regex search cache, kept in the
/// detector's pool between calls (one per call running at once). Made anew for each call, the
/// buffers were about 70 allocations and two zeroed tables of one entry per rule for a 2 KB
/// string: 10,000 instructions a call, 14% of the cost of clean text redacted in 2 KB strings
/// (the proxy's case: one call per message). The caches were in each regex's own pool, which
/// nothing could empty: the caches made by the blocking threads that redact large bodies
/// stayed for good, megabytes allocated under load and scattered through the heap, holding its
/// freed pages resident. This pool is emptied when the daemon is idle
/// ([`crate::Redactor::release_idle_memory`]).
#[derive(Default)]
struct Scratch {
    /// Every keyword hit (start, end, keyword id).
    hits: Vec<(usize, usize, usize)>,
    /// The rules that have windows, each once (a text has hits for a few of the ~200 rules;
    /// only these are run and emptied).
    touched: Vec<usize>,
    /// One entry per rule.
    rules: Vec<RuleScratch>,
}

/// What one rule's search keeps in a [`Scratch`].
#[derive(Default)]
struct RuleScratch {
    /// Its windows (merged as they come).
    windows: Vec<Range<usize>>,
    /// An anchored rule's hits' starts.
    starts: Vec<usize>,
    /// Its regex's search cache (lazy DFA states and the like), made on the rule's first search
    /// with this scratch.
    cache: Option<meta::Cache>,
    /// Room for its capture groups, made on the first search that needs them (token formats
    /// never do).
    captures: Option<Captures>,
}

/// Buffers larger than this (in entries) are not kept: one huge text must not leave megabytes
/// held between calls (resident memory is a target).
const SCRATCH_KEEP: usize = 4096;

impl RuleDetector {
    /// A pooled scratch (or a new one), empty, with a table entry for each rule.
    fn take_scratch(&self) -> Scratch {
        let mut s = self
            .scratch
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        if s.rules.len() < self.rules.len() {
            s.rules.resize_with(self.rules.len(), RuleScratch::default);
        }
        s
    }

    /// Empties `s` (dropping buffers that grew past [`SCRATCH_KEEP`]) and pools it for the
    /// next call.
    fn put_back(&self, mut s: Scratch) {
        fn reset<T>(v: &mut Vec<T>) {
            if v.capacity() > SCRATCH_KEEP {
                *v = Vec::new();
            } else {
                v.clear();
            }
        }
        reset(&mut s.hits);
        for &r in &s.touched {
            reset(&mut s.rules[r].windows);
            reset(&mut s.rules[r].starts);
        }
        s.touched.clear();
        if let Ok(mut pool) = self.scratch.lock() {
            pool.push(s);
        }
    }

    fn find_with(&self, bytes: &[u8], scratch: &mut Scratch, out: &mut Vec<Finding>) {
        let Scratch {
            hits,
            touched,
            rules: per_rule,
        } = scratch;
        // Every keyword hit, in text order. An anchored rule tries its regex at each hit; the
        // others search windows around their hits, merged as they come (their starts only grow
        // for a fixed rule, so no sort is needed).
        self.keywords
            .find_all(bytes, |start, end, id| hits.push((start, end, id)));
        if hits.is_empty() {
            return;
        }
        // Nearly sorted already (the scan reports each hit a few bytes after its start): the
        // stable sort merges such runs in close to linear time. Whole tuples are compared, so
        // every sort gives this same order.
        hits.sort();
        // Per rule, its windows (merged as they come: a rule's hits come in text order) and,
        // for an anchored rule, its hits' starts.
        for &(start, end, id) in hits.iter() {
            for &r in &self.by_keyword[id] {
                let rule = &self.rules[r];
                let window = rule.window(bytes, start, end);
                let RuleScratch {
                    windows, starts, ..
                } = &mut per_rule[r];
                if rule.shortcuts.anchored {
                    starts.push(start);
                }
                match windows.last_mut() {
                    Some(last) if window.start <= last.end => last.end = last.end.max(window.end),
                    Some(_) => windows.push(window),
                    None => {
                        windows.push(window);
                        touched.push(r);
                    }
                }
            }
        }
        // Made when the first rule that needs it runs.
        let mut shadow: Option<Option<Vec<u8>>> = None;
        // Rule by rule, in rule order (merging breaks ties between equal spans by that order).
        touched.sort_unstable();
        for &r in touched.iter() {
            let rule = &self.rules[r];
            let bytes = if rule.reads_escapes {
                bytes
            } else {
                shadow
                    .get_or_insert_with(|| crate::scan::escape_shadow(bytes))
                    .as_deref()
                    .unwrap_or(bytes)
            };
            let RuleScratch {
                windows,
                starts,
                cache,
                captures,
            } = &mut per_rule[r];
            let cache = cache.get_or_insert_with(|| rule.regex.create_cache());
            let mut starts = starts.iter().copied().peekable();
            for window in windows.iter() {
                if !rule.needs_met(bytes, window.clone()) {
                    continue;
                }
                if !rule.shortcuts.anchored {
                    rule.find_in(bytes, window.clone(), cache, captures, out);
                    continue;
                }
                // The plain search's matches, found by trying only where one can start: the
                // hits of this window, skipping those inside the last match (the plain search
                // resumes after it).
                let mut resume = window.start;
                while let Some(start) = starts.next_if(|&s| s < window.end) {
                    if start < resume {
                        continue;
                    }
                    if let Some(m) =
                        rule.next_match(bytes, start..window.end, true, cache, captures)
                    {
                        resume = m.whole.end.max(m.whole.start + 1);
                        out.extend(rule.finding(bytes, &m));
                    }
                }
            }
        }
        self.tables(bytes, hits, out);
    }

    /// A password or secret keyword on a table row: the table's secret cells. (Kept out of
    /// `find`, whose loops it would otherwise slow: inlined, it cost 3% on text with no table.)
    #[inline(never)]
    fn tables(&self, bytes: &[u8], hits: &[(usize, usize, usize)], out: &mut Vec<Finding>) {
        let mut done = 0;
        for &(start, _, id) in hits {
            if start >= done && self.table_keyword[id] {
                done = table::find(bytes, start, out);
            }
        }
    }
}

#[cfg(test)]
mod scratch_tests {
    use super::*;

    /// Texts with findings of several rules each (token formats, assignments with groups).
    fn texts() -> Vec<String> {
        (0..16)
            .map(|i| {
                format!(
                    "line {i}\nexport GITHUB_TOKEN=ghp_{i:02}aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z\n\
                     DB_PASSWORD=\"Hunter{i}-Correct-Horse\"\n\
                     postgres://app:S3cr3t-{i}-pass@db.internal:5432/app\n\
                     AKIAQ{i:02}ZTR7L4XK2NV9M and nothing else"
                )
            })
            .collect()
    }

    fn findings(d: &RuleDetector, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        d.find(text, &mut out);
        out
    }

    #[test]
    fn released_scratch_is_rebuilt_with_the_same_findings() {
        let d = RuleDetector::new().unwrap();
        let texts = texts();
        let before: Vec<_> = texts.iter().map(|t| findings(&d, t)).collect();
        assert!(before.iter().all(|f| f.len() >= 3), "{before:?}");
        assert_eq!(d.scratch.lock().unwrap().len(), 1);
        d.release_memory();
        assert!(d.scratch.lock().unwrap().is_empty());
        let after: Vec<_> = texts.iter().map(|t| findings(&d, t)).collect();
        assert_eq!(before, after);
    }

    /// Calls running at once each get a scratch of their own: the findings are those of calls
    /// made one at a time, and the pool holds no more scratches than calls ran at once.
    #[test]
    fn concurrent_calls_find_what_sequential_calls_find() {
        let d = RuleDetector::new().unwrap();
        let texts = texts();
        let want: Vec<_> = texts.iter().map(|t| findings(&d, t)).collect();
        std::thread::scope(|s| {
            for k in 0..8 {
                let (d, texts, want) = (&d, &texts, &want);
                s.spawn(move || {
                    for round in 0..50 {
                        let i = (k + round) % texts.len();
                        assert_eq!(findings(d, &texts[i]), want[i]);
                    }
                });
            }
        });
        assert!(d.scratch.lock().unwrap().len() <= 8);
    }
}

#[cfg(test)]
mod shortcut_tests {
    use super::*;

    fn shortcuts(spec: &RuleSpec) -> Shortcuts {
        Shortcuts::of(&parse(spec.pattern, spec.id).unwrap(), spec.keywords)
    }

    /// Rule ids with a shortcut, each variant once (`password-assignment` has several).
    fn with(shortcut: impl Fn(&Shortcuts) -> bool) -> Vec<&'static str> {
        let mut ids: Vec<&str> = default_rules()
            .iter()
            .filter(|r| shortcut(&shortcuts(r)))
            .map(|r| r.id)
            .collect();
        ids.dedup();
        ids
    }

    #[test]
    fn token_formats_skip_the_capture_engines_and_assignments_do_not() {
        let whole = with(|s| s.secret_is_match);
        for id in [
            "github-pat",
            "aws-access-key-id",
            "stripe-secret-key",
            "jwt",
        ] {
            assert!(whole.contains(&id), "{id}: {whole:?}");
        }
        for id in [
            "password-assignment",
            "url-credentials",
            "http-bearer-token",
        ] {
            assert!(!whole.contains(&id), "{id}: {whole:?}");
        }
    }

    #[test]
    fn rules_starting_with_their_keyword_are_anchored_and_others_are_not() {
        let anchored = with(|s| s.anchored);
        for id in [
            "github-pat",
            "aws-access-key-id",
            "jwt",
            "datadog-api-key",
            "password-assignment",
            "twilio-api-key",
        ] {
            assert!(anchored.contains(&id), "{id}: {anchored:?}");
        }
        // The scheme comes before `://`, `-----BEGIN` before `private key`, digits before `:aa`;
        // `bearer\t…` matches but the keyword is `bearer `.
        for id in ["url-credentials", "telegram-bot-token", "http-bearer-token"] {
            assert!(!anchored.contains(&id), "{id}: {anchored:?}");
        }
        // Every rule whose pattern starts with `prefix` (at least one).
        let starting = |prefix: &str| {
            let rules: Vec<RuleSpec> = default_rules()
                .into_iter()
                .filter(|r| r.pattern.starts_with(prefix))
                .collect();
            assert!(!rules.is_empty(), "no rule starts with {prefix}");
            rules
        };
        // Both PEM rules (whole and cut off); the PuTTY key rule, also `private-key`, starts
        // with its keyword.
        assert!(
            starting("-----BEGIN")
                .iter()
                .all(|r| !shortcuts(r).anchored)
        );
        assert!(
            starting("Private-Lines:")
                .iter()
                .all(|r| shortcuts(r).anchored)
        );
        assert!(
            starting(r"(?i)\(\s*")
                .iter()
                .all(|r| !shortcuts(r).anchored)
        );
    }

    #[test]
    fn only_patterns_without_whitespace_that_contain_their_keyword_are_cut_at_whitespace() {
        assert!(with(|s| s.no_whitespace).contains(&"url-credentials"));
        let spec = |pattern, keywords| RuleSpec {
            pattern,
            keywords,
            ..rule("t", &[], "", 0, 0)
        };
        let cut = |s: RuleSpec| shortcuts(&s).no_whitespace;
        assert!(cut(spec("a+://b+", &["://"])));
        assert!(!cut(spec("a+:// b+", &["://"])), "a space in a literal");
        assert!(!cut(spec(r"a+://\s*b+", &["://"])), "a class with spaces");
        assert!(
            !cut(spec("a+://[^x]+", &["://"])),
            "a negated class holds spaces"
        );
        assert!(
            !cut(spec("a+:/b+", &["://"])),
            "the keyword is not required"
        );
        assert!(
            !cut(spec("a+(?:://)?b+", &["://"])),
            "the keyword is optional"
        );
    }
}
