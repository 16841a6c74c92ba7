//! Unnamed high-entropy tokens, only as the value assigned to a key that names a secret
//! (`client_secret: …`, `"apiToken": "…"`, `SESSION_KEY=…`), and never for what is known not to
//! be a secret. Entropy alone redacted 45%
//! of the hard negatives in our measurements (every git SHA, lockfile hash, image and public
//! key), so context gates it and the exclusions below trim it.
//!
//! The scan starts from the assignment operators (`:` and `=`, found eight bytes at a time), not
//! from the keywords: an operator followed by fewer than 20 token bytes is dropped after a few
//! loads, and only then is the key before it checked for a context keyword. This finds exactly
//! the values a keyword-first scan finds (the same key and value grammar, read backwards).

use crate::rules::{DOCUMENTED_EXAMPLES, is_placeholder};
use crate::{Detector, DetectorKind, Error, Finding};

/// Rule id of entropy findings.
pub const RULE: &str = "high-entropy-token";
/// Words that make a key name a secret (letters only: they are looked for inside the key).
const CONTEXT: &[&str] = &[
    "secret",
    "token",
    "key",
    "passw",
    "auth",
    "credential",
    "api",
    "access",
    "private",
    "bearer",
    "signature",
    "session",
    "cookie",
];
const MIN_LEN: usize = 20;
const MAX_LEN: usize = 512;

/// The entropy detector.
pub struct EntropyDetector {
    context: crate::scan::KeywordSet,
    not_secret_before: crate::scan::KeywordSet,
}

impl std::fmt::Debug for EntropyDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntropyDetector")
    }
}

/// Shannon entropy in bits per byte.
pub fn shannon(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    // Which bytes occur: the sum below visits only those, in ascending byte order (the same
    // terms in the same order as a walk over all 256 counts, so the same result to the bit).
    let mut present = [0u64; 4];
    for &b in bytes {
        counts[usize::from(b)] += 1;
        present[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    let n = bytes.len() as f64;
    // The term of each small count, computed once: in a random token most bytes occur once or
    // twice, and the logarithm was most of the cost. (The same count gives the same term.)
    let mut small_terms = [None::<f64>; SMALL_COUNTS];
    let mut sum = -0.0; // as `Iterator::sum` starts
    for (w, mut bits) in present.into_iter().enumerate() {
        while bits != 0 {
            let b = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let count = counts[b];
            let term = |count: u32| {
                let p = f64::from(count) / n;
                -p * p.log2()
            };
            sum += match small_terms.get_mut(count as usize) {
                Some(memo) => *memo.get_or_insert_with(|| term(count)),
                None => term(count),
            };
        }
    }
    sum
}

/// Counts below this have their entropy term remembered within one [`shannon`] call.
const SMALL_COUNTS: usize = 16;

fn is_uuid(t: &[u8]) -> bool {
    t.len() == 36
        && t.iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// Prefixes of digests and checksums.
const DIGEST_PREFIXES: &[&[u8]] = &[
    b"sha1-", b"sha256-", b"sha384-", b"sha512-", b"sha256:", b"sha512:", b"h1:", b"md5-",
];

/// Prefixes of keys that are public by design (Stripe publishable keys, Mapbox public tokens:
/// both are meant for browsers).
const PUBLIC_PREFIXES: &[&[u8]] = &[b"pk_live_", b"pk_test_", b"pk.eyJ"];

/// Words in the 48 bytes before a value that say it is public or a digest (case-insensitive).
const NOT_SECRET_BEFORE: &[&str] = &[
    "base64,",
    "ssh-rsa ",
    "ssh-ed25519 ",
    "ssh-dss ",
    "ecdsa-sha2-",
    "PUBLIC KEY-----",
    "CERTIFICATE-----",
    "integrity",
    "\"resolved\"",
    "checksum",
    "digest",
    "commit",
    "sha",
    "hash",
    "gpg key",
    "recv-keys",
    "pgp key",
    "fingerprint",
];

/// Random enough to be a credential: hex tokens need ≥ 3.0 bits/byte and 32+ characters,
/// others ≥ 3.7 with letters and digits mixed (long identifiers rarely carry digits in the
/// middle of mixed case).
pub(crate) fn random_enough(token: &[u8]) -> bool {
    // The character-class tests are cheap and reject most tokens: the entropy comes last.
    if token.iter().all(u8::is_ascii_hexdigit) {
        return token.len() >= 32 && shannon(token) >= 3.0;
    }
    let digits = token.iter().filter(|b| b.is_ascii_digit()).count();
    let upper = token.iter().any(u8::is_ascii_uppercase);
    let lower = token.iter().any(u8::is_ascii_lowercase);
    // A long token of both cases with one digit or none: random if its letters are
    // (identifiers made of words have long lower-case runs and a lower entropy).
    let few_digits_random = digits <= 1
        && upper
        && lower
        && token.len() >= 24
        && longest_lower_run(token) <= 5
        && shannon(token) >= 4.2;
    (digits >= 2 || few_digits_random)
        && (upper || lower)
        && (upper && lower || digits * 4 >= token.len())
        && shannon(token) >= 3.7
}

/// A name in code, not a value: unquoted, made of words (`X509SubjectKeyIDExtension`, see
/// [`made_of_words`]), and a member path (`constants_1.Socks5Auth.NoAuth`,
/// `util_1.encoding.base64Encode`) or followed by what follows an expression in code (`(`, `;`,
/// `,`, `)`, `]`). A random base62 token passes the words test once in 140 (20 bytes) to once in
/// 3,000 (40), and a token in a `.env` file or a quoted literal is in neither form.
fn code_reference(bytes: &[u8], from: usize, token: &[u8]) -> bool {
    // (Cheapest first: most values are quoted, or end a line and hold no dot.)
    let quoted = from
        .checked_sub(1)
        .is_some_and(|i| matches!(bytes[i], b'"' | b'\'' | b'`'));
    if quoted {
        return false;
    }
    let expression_ends = matches!(
        bytes.get(from + token.len()),
        Some(b'(' | b';' | b',' | b')' | b']')
    );
    let member_path = || {
        memchr::memchr(b'.', token).is_some()
            && token.split(|b| *b == b'.').all(|part| {
                part.first()
                    .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'$'))
                    && part
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$'))
            })
    };
    (expression_ends || member_path()) && made_of_words(token)
}

/// Two thirds or more of the pairs of adjacent letters are common in text (at least ten
/// pairs): words, not random letters.
fn made_of_words(token: &[u8]) -> bool {
    let (mut pairs, mut common) = (0usize, 0usize);
    for w in token.windows(2) {
        if w[0].is_ascii_alphabetic() && w[1].is_ascii_alphabetic() {
            pairs += 1;
            common += usize::from(crate::scan::common_letter_pair(w[0], w[1]));
        }
    }
    pairs >= 10 && common * 3 >= pairs * 2
}

/// The longest run of lower-case letters.
fn longest_lower_run(token: &[u8]) -> usize {
    let (mut best, mut run) = (0, 0);
    for b in token {
        run = if b.is_ascii_lowercase() { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

impl EntropyDetector {
    /// Builds the detector.
    pub fn new() -> Result<Self, Error> {
        let context = crate::scan::KeywordSet::new(CONTEXT.iter().copied());
        let not_secret_before = crate::scan::KeywordSet::new(NOT_SECRET_BEFORE.iter().copied());
        Ok(Self {
            context,
            not_secret_before,
        })
    }

    /// Tokens that look random but are not secrets.
    fn known_not_secret(&self, text: &[u8], start: usize, token: &[u8]) -> bool {
        if is_uuid(token)
            || DIGEST_PREFIXES.iter().any(|p| token.starts_with(p))
            || PUBLIC_PREFIXES.iter().any(|p| token.starts_with(p))
            || is_placeholder(token)
            || DOCUMENTED_EXAMPLES.iter().any(|e| e.as_bytes() == token)
        {
            return true;
        }
        // The same line, up to 48 bytes back; words must stand alone (`sha` in `"sha": …`,
        // not in the `…sHAGKv` of a previous value).
        let mut from = start.saturating_sub(48);
        if let Some(nl) = text[from..start].iter().rposition(|&b| b == b'\n') {
            from += nl + 1;
        }
        let before = &text[from..start];
        let mut found = false;
        self.not_secret_before.find_all(before, |s, e, _| {
            let alone = |i: Option<usize>| {
                i.and_then(|i| before.get(i))
                    .is_none_or(|b| !b.is_ascii_alphabetic())
            };
            let first_alpha = before[s].is_ascii_alphabetic();
            let last_alpha = before[e - 1].is_ascii_alphabetic();
            found |= (!first_alpha || alone(s.checked_sub(1))) && (!last_alpha || alone(Some(e)));
        });
        found
    }

    /// Whether the key before the assignment operator at `op` names a secret: a context keyword
    /// ends at most [`KEY_REST`] key bytes before the key's end (`client_secret_value: …`), the
    /// key may be closed by one quote, and only spaces stand between it and the operator.
    fn key_names_secret(&self, bytes: &[u8], op: usize) -> bool {
        let mut k = op;
        while k > 0 && bytes[k - 1] == b' ' {
            k -= 1;
        }
        // One closing quote (JSON-escaped `\"` too) or backtick, then an index's `]`.
        if k > 0 && bytes[k - 1] == b']' {
            k -= 1;
        }
        if k > 0 && matches!(bytes[k - 1], b'"' | b'\'' | b'`') {
            k -= 1;
            if k > 0 && bytes[k - 1] == b'\\' {
                k -= 1;
            }
        }
        if let Some(key_end) = before_type_annotation(bytes, k) {
            k = key_end;
        }
        let floor = k.saturating_sub(KEY_REST + self.context.max_len());
        let mut r = k;
        while r > floor && is_key_byte(bytes[r - 1]) {
            r -= 1;
        }
        if r == k || names_an_identifier(&bytes[r..k]) || names_public(&bytes[r..k]) {
            return false;
        }
        if !operator_form(bytes, op, r) {
            return false;
        }
        // Kubernetes `- name: API_TOKEN` / `value: …`: the name is on the line before; XML
        // `<add key="API_TOKEN" value="…"/>`: the name is an attribute before, in the same tag.
        if bytes[r..k].eq_ignore_ascii_case(b"value")
            && let Some(name) = k8s_env_name(bytes, r).or_else(|| xml_attribute_name(bytes, r))
        {
            return !names_an_identifier(name)
                && !names_public(name)
                && self.context.any_ending_from(name, 0);
        }
        self.context
            .any_ending_from(&bytes[r..k], (k - r).saturating_sub(KEY_REST))
    }
}

/// `>`, `|`, a tab and a space assign only in their own forms: an XML element (`<apiKey>…`: the
/// key opens the tag), a table row (`| API_KEY | … |`: the key fills the cell before), a
/// tab-separated row (`API_TOKEN<TAB>…`: the key starts the line) and a long flag (`--api-key
/// …`: the key is the whole flag, [`flag_name_end`]). Elsewhere they are arrows, comparisons,
/// redirections, pipes, indentation and words.
fn operator_form(bytes: &[u8], op: usize, key_start: usize) -> bool {
    match bytes[op] {
        b' ' => bytes[key_start..].starts_with(b"--") && flag_name_end(bytes, key_start).is_some(),
        b'>' => key_start > 0 && bytes[key_start - 1] == b'<',
        b'\t' => key_start == 0 || bytes[key_start - 1] == b'\n',
        // Spaced like a table (`| KEY | …`), unlike a closure's parameters (`|secret| …`).
        b'|' => {
            let mut i = key_start;
            while i > 0 && bytes[i - 1] == b' ' {
                i -= 1;
            }
            i < key_start && i > 0 && bytes[i - 1] == b'|' && bytes[op - 1] == b' '
        }
        _ => true,
    }
}

/// Whether a whole name (`SENTRY_AUTH_TOKEN`, `client.secret`) names a secret: a context word
/// in it, and it names neither an identifier of one nor something public.
pub(crate) fn names_secret(name: &[u8]) -> bool {
    !names_an_identifier(name)
        && !names_public(name)
        && CONTEXT
            .iter()
            .any(|w| crate::contains_ignore_ascii_case(name, w.as_bytes()))
}

/// Key bytes after the context keyword: `secret` in `secret_key_id` may end 32 bytes before the
/// key does.
const KEY_REST: usize = 32;

/// A key naming an identifier of a secret, not the secret (`private_key_id`, `clientId`,
/// `KEY_ID`); session ids are bearer credentials and stay secrets.
fn names_an_identifier(key: &[u8]) -> bool {
    let n = key.len();
    let id_suffix = n >= 3
        && key[n - 2..].eq_ignore_ascii_case(b"id")
        && (matches!(key[n - 3], b'_' | b'-' | b'.')
            || key[n - 2] == b'I' && key[n - 3].is_ascii_lowercase());
    id_suffix && !crate::contains_ignore_ascii_case(key, b"session")
}

/// A key naming something public (`STRIPE_PUBLISHABLE_KEY`, `public_key`, `NEXT_PUBLIC_…`,
/// `pubkey256`).
fn names_public(key: &[u8]) -> bool {
    [&b"public"[..], b"pubkey", b"gpg", b"fingerprint"]
        .iter()
        .any(|w| crate::contains_ignore_ascii_case(key, w))
}

/// The `X` of `name: X` on the line before the key starting at `key_start` (a Kubernetes env
/// entry `- name: X` / `  value: …`; lines may carry a diff's `+`, or be JSON-escaped).
fn k8s_env_name(bytes: &[u8], key_start: usize) -> Option<&[u8]> {
    let mut i = key_start;
    while i > 0 && matches!(bytes[i - 1], b' ' | b'\t' | b'+' | b'-') {
        i -= 1;
    }
    let line_end = if i > 0 && bytes[i - 1] == b'\n' {
        i - 1
    } else if i > 1 && bytes[i - 2..i] == *b"\\n" {
        i - 2
    } else {
        return None;
    };
    let from = line_end.saturating_sub(160);
    let line = &bytes[from..line_end];
    let at = line.windows(5).rposition(|w| w == b"name:")?;
    let name = line[at + 5..].trim_ascii();
    let name = name.strip_prefix(b"\\").unwrap_or(name);
    let name = name.strip_prefix(b"\"").unwrap_or(name);
    let name = name.strip_suffix(b"\"").unwrap_or(name);
    let name = name.strip_suffix(b"\\").unwrap_or(name);
    (!name.is_empty() && name.iter().all(|&b| is_key_byte(b))).then_some(name)
}

/// The `X` of `key="X"` or `name="X"` before the `value` attribute starting at `value_start`,
/// in the same XML tag (`<add key="API_TOKEN" value="…"/>`, `<property name="client.secret"
/// value="…"/>`; JSON-escaped quotes too).
fn xml_attribute_name(bytes: &[u8], value_start: usize) -> Option<&[u8]> {
    let from = value_start.saturating_sub(160);
    let tag = &bytes[from..value_start];
    let open = tag.iter().rposition(|&b| b == b'<')?;
    if tag[open..].iter().any(|&b| matches!(b, b'>' | b'\n')) {
        return None;
    }
    let attrs = &tag[open..];
    // The attribute's name starts after a space: ` key=` or ` name=` (not `username=`).
    let at = attrs.windows(6).rposition(|w| {
        (w[0] == b' ' && w[1..].eq_ignore_ascii_case(b"name="))
            || (w[1] == b' ' && w[2..].eq_ignore_ascii_case(b"key="))
    })?;
    let rest = &attrs[at + 6..];
    let rest = rest.strip_prefix(b"\\").unwrap_or(rest);
    let rest = rest
        .strip_prefix(b"\"")
        .or_else(|| rest.strip_prefix(b"'"))?;
    let len = rest.iter().take_while(|&&b| is_key_byte(b)).count();
    let name = &rest[..len];
    let closed = matches!(rest.get(len), Some(b'"' | b'\'' | b'\\'));
    (closed && !name.is_empty()).then_some(name)
}

/// Skips a type annotation between a key and its `=` (`API_KEY: &str = …`, `token: string = …`):
/// where the key ends if the bytes before `k` are one.
fn before_type_annotation(bytes: &[u8], k: usize) -> Option<usize> {
    const TYPES: &[&[u8]] = &[b"&'static str", b"&str", b"String", b"string", b"str"];
    let t = TYPES.iter().find(|t| bytes[..k].ends_with(t))?;
    let mut i = k - t.len();
    while i > 0 && bytes[i - 1] == b' ' {
        i -= 1;
    }
    (i > 0 && bytes[i - 1] == b':').then(|| {
        let mut j = i - 1;
        while j > 0 && bytes[j - 1] == b' ' {
            j -= 1;
        }
        j
    })
}

/// A byte of a key's name (`client_secret`, `api-key`, `smtp.password`).
pub(crate) fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

impl Detector for EntropyDetector {
    /// Every `:`, `=`, `>` and `|` (found eight bytes at a time) and every tab after a key is a
    /// possible assignment; the cheap test (a value of at least `MIN_LEN` token bytes starting
    /// with a letter or digit) runs first, then the key before it must name a secret (`>`, `|`
    /// and tab only in their forms, `operator_form`). This finds exactly the values a scan for
    /// the context keywords followed by an assignment would, without a pass over every byte.
    fn find(&self, text: &str, out: &mut Vec<Finding>) {
        let bytes = text.as_bytes();
        crate::scan::for_each_byte_in(bytes, [b':', b'=', b'>', b'|'], |op| {
            self.operator(bytes, op, out);
        });
        // A tab-separated row, `API_TOKEN<TAB>…` (a pass of its own: most texts have few tabs,
        // and a fifth byte in the search above cost more than this pass). A tab assigns only
        // after a key: indentation, most tabs, starts a line or follows another tab.
        for op in memchr::memchr_iter(b'\t', bytes) {
            if op
                .checked_sub(1)
                .is_some_and(|k| !matches!(bytes[k], b'\t' | b'\n'))
            {
                self.operator(bytes, op, out);
            }
        }
        // A command-line flag and its value: `--client-secret …` (the space assigns).
        for dashes in DASHES.find_iter(bytes) {
            if let Some(space) = flag_name_end(bytes, dashes) {
                let from = value_start(bytes, space);
                // (A `-` there starts the next flag, not a value.)
                if long_value_at(bytes, from) && bytes[from] != b'-' {
                    self.candidate(bytes, space, from, out);
                }
            }
        }
    }
}

/// The searcher for `--`, built once: building it took about 700 instructions, as much as
/// searching a 2 KB message for it (one detector call per message in the proxy).
static DASHES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"--"));

/// Where the name of the long flag whose dashes are at `dashes` ends, when a space follows it:
/// `--name` starts a word (line start, space, tab, quote, `(`), and its name starts with a letter.
fn flag_name_end(bytes: &[u8], dashes: usize) -> Option<usize> {
    let starts_word = dashes
        .checked_sub(1)
        .is_none_or(|i| matches!(bytes[i], b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'('));
    if !starts_word || !bytes.get(dashes + 2)?.is_ascii_alphabetic() {
        return None;
    }
    let mut i = dashes + 2;
    while i < bytes.len() && is_key_byte(bytes[i]) {
        i += 1;
    }
    (bytes.get(i) == Some(&b' ')).then_some(i)
}

/// Whether at least [`MIN_LEN`] token bytes start at `from`, the first a letter, a digit, `_`
/// or `-` (a base64url token may start with either).
#[inline(always)]
fn long_value_at(bytes: &[u8], from: usize) -> bool {
    bytes
        .get(from)
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        && bytes
            .get(from..from + MIN_LEN)
            .is_some_and(|v| v.iter().all(|&b| crate::is_token_byte(b)))
}

impl EntropyDetector {
    /// The possible assignment at `op`: the cheap test of the value's length first.
    #[inline(always)]
    fn operator(&self, bytes: &[u8], op: usize, out: &mut Vec<Finding>) {
        let from = value_start(bytes, op);
        if long_value_at(bytes, from) {
            self.candidate(bytes, op, from, out);
        }
    }

    /// The value at `from`, assigned by the operator at `op`, is long enough: check the key, then
    /// the value.
    #[inline(never)]
    fn candidate(&self, bytes: &[u8], op: usize, from: usize, out: &mut Vec<Finding>) {
        if !self.key_names_secret(bytes, op) {
            return;
        }
        let mut to = from + MIN_LEN;
        while to < bytes.len() && to - from < MAX_LEN && crate::is_token_byte(bytes[to]) {
            to += 1;
        }
        let token = trim_punctuation(&bytes[from..to]);
        if token.len() >= MIN_LEN
            && random_enough(token)
            && !self.known_not_secret(bytes, from, token)
            && !code_reference(bytes, from, token)
        {
            out.push(Finding {
                start: from,
                end: from + token.len(),
                rule: RULE.into(),
                detector: DetectorKind::Entropy,
                secret: None,
            });
        }
    }
}

/// Where the value assigned by the operator at `op` starts: after `:`, `=`, `:=` or `=>`, then
/// spaces, tabs and opening quotes. The value runs to the end of its token (at most
/// [`MAX_LEN`] bytes).
#[inline(always)]
fn value_start(bytes: &[u8], op: usize) -> usize {
    let mut i = match bytes.get(op..op + 2) {
        Some(b":=") | Some(b"=>") => op + 2,
        _ => op + 1,
    };
    let after_op = i;
    i = past_quotes_and_spaces(bytes, i);
    // (Checked only where the value would start with `|` or `>`: this runs at every `:`.)
    if matches!(bytes.get(i), Some(b'|' | b'>')) && bytes[op] == b':' && after_op == op + 1 {
        let block = past_block_scalar_header(bytes, after_op);
        if block != after_op {
            i = past_quotes_and_spaces(bytes, block);
        }
    }
    // Rust's `String::from("…")`.
    if bytes.get(i) == Some(&b'S') && bytes[i..].starts_with(b"String::from(") {
        i += b"String::from(".len();
        while i < bytes.len() && matches!(bytes[i], b'"' | b'\\') {
            i += 1;
        }
    }
    i
}

/// Past the spaces, tabs, quotes and backticks (JSON-escaped ones too) before a value.
#[inline(always)]
fn past_quotes_and_spaces(bytes: &[u8], mut i: usize) -> usize {
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'"' | b'\'' | b'\t' | b'`') {
            i += 1;
        }
        if bytes.get(i) != Some(&b'\\') {
            return i;
        }
        i = past_backslashes(bytes, i);
    }
}

/// A YAML block scalar (`key: >-` or `key: |`, the value on the next, indented line): where
/// that line's text starts; else `i`.
fn past_block_scalar_header(bytes: &[u8], i: usize) -> usize {
    let mut j = i;
    while bytes.get(j) == Some(&b' ') {
        j += 1;
    }
    if !matches!(bytes.get(j), Some(b'|' | b'>')) {
        return i;
    }
    j += 1;
    if matches!(bytes.get(j), Some(b'-' | b'+')) {
        j += 1;
    }
    while bytes.get(j) == Some(&b' ') {
        j += 1;
    }
    j += match bytes.get(j..j + 2) {
        Some([b'\n', _]) => 1,
        Some([b'\r', b'\n']) | Some(b"\\n") => 2,
        _ => return i,
    };
    let indent = j;
    while bytes.get(j) == Some(&b' ') {
        j += 1;
    }
    if j == indent { i } else { j }
}

/// Past the backslashes at `i` and, when they end in an escape's backslash (an odd run), past
/// a `\n`, `\r` or `\t` escape's letter too: in `token:\n…` as written in a JSON file the
/// value starts after the escape, not at its `n`.
#[cold]
fn past_backslashes(bytes: &[u8], mut i: usize) -> usize {
    let run = bytes[i..].iter().take_while(|b| **b == b'\\').count();
    i += run;
    if run % 2 == 1 && matches!(bytes.get(i), Some(b'n' | b'r' | b't')) {
        i += 1;
    }
    i
}

/// Drops the full stop a sentence puts after the token (`key: abc…xyz.`); a trailing `-` or
/// `~` is part of a base64url or similar token.
fn trim_punctuation(t: &[u8]) -> &[u8] {
    let mut end = t.len();
    while end > 0 && t[end - 1] == b'.' {
        end -= 1;
    }
    &t[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keyword-first formulation (find each context keyword, read the key, operator and value
    /// after it, match the token regex), as this detector worked before it started from the
    /// operators. Kept as the reference the operator-first scan must agree with.
    fn keyword_first(
        detector: &EntropyDetector,
        token: &regex::bytes::Regex,
        text: &str,
    ) -> Vec<(usize, usize)> {
        fn assigned_value(
            bytes: &[u8],
            key_end: usize,
            floor_len: usize,
        ) -> Option<(usize, usize)> {
            let mut i = key_end;
            let key_limit = (key_end + 32).min(bytes.len());
            while i < key_limit && is_key_byte(bytes[i]) {
                i += 1;
            }
            let floor = i.saturating_sub(floor_len);
            let mut r = i;
            while r > floor && is_key_byte(bytes[r - 1]) {
                r -= 1;
            }
            if names_an_identifier(&bytes[r..i]) {
                return None;
            }
            let in_tag = r > 0 && bytes[r - 1] == b'<';
            let mut cell = r;
            while cell > 0 && bytes[cell - 1] == b' ' {
                cell -= 1;
            }
            let in_cell = cell < r && cell > 0 && bytes[cell - 1] == b'|';
            let flag = bytes[r..i].starts_with(b"--")
                && bytes.get(r + 2).is_some_and(u8::is_ascii_alphabetic)
                && r.checked_sub(1)
                    .is_none_or(|p| matches!(bytes[p], b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'('));
            if flag && bytes.get(i) == Some(&b' ') {
                // The flag's value, when one follows (else `--token = …` is an assignment).
                let mut v = i;
                while v < bytes.len()
                    && matches!(bytes[v], b' ' | b'"' | b'\'' | b'\t' | b'`' | b'\\')
                {
                    v += 1;
                }
                if bytes
                    .get(v)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    let start = v;
                    while v < bytes.len() && v - start < 512 && crate::is_token_byte(bytes[v]) {
                        v += 1;
                    }
                    return Some((start, v));
                }
            }
            if i < bytes.len() && matches!(bytes[i], b'"' | b'\'') {
                i += 1;
            }
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            match bytes.get(i..i + 2) {
                Some(b":=") | Some(b"=>") => i += 2,
                _ if bytes.get(i) == Some(&b':') => {
                    i += 1;
                    // A YAML block scalar: the value on the next, indented line.
                    static BLOCK: std::sync::OnceLock<regex::bytes::Regex> =
                        std::sync::OnceLock::new();
                    let block = BLOCK.get_or_init(|| {
                        regex::bytes::Regex::new(r"^ *[|>][-+]? *(?:\r?\n|\\n) +").unwrap()
                    });
                    if let Some(m) = block.find(&bytes[i..]) {
                        i += m.end();
                    }
                }
                _ if bytes.get(i) == Some(&b'=') => i += 1,
                _ if bytes.get(i) == Some(&b'>') && in_tag => i += 1,
                _ if bytes.get(i) == Some(&b'|') && in_cell && bytes[i - 1] == b' ' => i += 1,
                _ if bytes.get(i) == Some(&b'\t') && (r == 0 || bytes[r - 1] == b'\n') => i += 1,
                _ => return None,
            }
            while i < bytes.len() && matches!(bytes[i], b' ' | b'"' | b'\'' | b'\t' | b'`' | b'\\')
            {
                i += 1;
            }
            let start = i;
            while i < bytes.len() && i - start < 512 && crate::is_token_byte(bytes[i]) {
                i += 1;
            }
            (i > start).then_some((start, i))
        }
        let bytes = text.as_bytes();
        let mut hits = Vec::new();
        detector
            .context
            .find_all(bytes, |start, end, _| hits.push((start, end)));
        hits.sort_unstable();
        let mut values: Vec<(usize, usize)> = hits
            .into_iter()
            .filter_map(|(_, end)| {
                assigned_value(bytes, end, KEY_REST + detector.context.max_len())
            })
            .collect();
        values.dedup();
        let mut out = Vec::new();
        for (from, to) in values {
            let Some(m) = token.find(&bytes[from..to]) else {
                continue;
            };
            if m.start() != 0 {
                continue;
            }
            let t = trim_punctuation(m.as_bytes());
            if t.len() >= MIN_LEN
                && !detector.known_not_secret(bytes, from, t)
                && random_enough(t)
                && !code_reference(bytes, from, t)
            {
                out.push((from, from + t.len()));
            }
        }
        out
    }

    #[test]
    fn operator_first_scan_equals_keyword_first_scan() {
        let detector = EntropyDetector::new().unwrap();
        let token = regex::bytes::RegexBuilder::new(r"[A-Za-z0-9_\-][A-Za-z0-9+/=_\-.~]{19,511}")
            .unicode(false)
            .build()
            .unwrap();
        let mut found = 0;
        let pieces = [
            "api_key",
            "apiKey",
            "client_secret",
            "x",
            "SESSION_TOKEN",
            "private_key_id",
            "my_token_with_a_very_long_suffix_abcdefghijklm",
            "auth",
            "name",
            "sha",
            "commit",
            "\"",
            "'",
            " ",
            "  ",
            ":",
            "=",
            ":=",
            "=>",
            "==",
            "<",
            ">",
            "|",
            " | ",
            " --api_key ",
            "--client-secret",
            "(--token",
            ": >-\n  ",
            ": |\n    ",
            "|\n",
            "\t",
            "\n",
            ".",
            "-",
            "~",
            "Zx9kQ2mP7vR4tY8wL1nB6cH3jF5sD0aG",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
            "short",
            "ThisIsALongCamelCaseIdentifier",
            "abc123XYZ789def456GHI",
            "123e4567-e89b-12d3-a456-426614174000",
            "sha256-",
            "é",
        ];
        let mut state = 0x0123_4567_89ab_cdefu64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..next(24) {
                text.push_str(pieces[next(pieces.len())]);
            }
            let mut got = Vec::new();
            detector.find(&text, &mut got);
            // (Flags are found in a pass of their own: the order differs, which `find` allows.)
            let mut got: Vec<(usize, usize)> = got.iter().map(|f| (f.start, f.end)).collect();
            got.sort_unstable();
            assert_eq!(got, keyword_first(&detector, &token, &text), "{text:?}");
            found += got.len();
        }
        assert!(
            found > 100,
            "only {found} findings: the texts test too little"
        );
    }

    /// The walk over present bytes gives the same bits as the plain walk over all 256 counts.
    #[test]
    fn shannon_matches_the_plain_definition() {
        fn plain(bytes: &[u8]) -> f64 {
            let mut counts = [0u32; 256];
            for b in bytes {
                counts[usize::from(*b)] += 1;
            }
            let n = bytes.len() as f64;
            counts
                .iter()
                .filter(|c| **c > 0)
                .map(|c| f64::from(*c) / n)
                .map(|p| -p * p.log2())
                .sum()
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let alphabet = [256, 40, 5][len % 3];
                    (state % alphabet) as u8
                })
                .collect();
            assert_eq!(
                shannon(&bytes).to_bits(),
                plain(&bytes).to_bits(),
                "{bytes:?}"
            );
        }
        assert_eq!(shannon(b"aaaa").to_bits(), plain(b"aaaa").to_bits());
    }

    #[test]
    fn randomness_table() {
        for (token, want) in [
            ("Zx9kQ2mP7vR4tY8wL1nB6cH3jF5sD0aG", true),
            (
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                true,
            ),
            ("this_is_a_long_variable_name", false),
            ("ThisIsALongCamelCaseIdentifier", false),
            ("/usr/local/lib/python3.11/site-packages", false),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ] {
            assert_eq!(random_enough(token.as_bytes()), want, "{token}");
        }
        assert!(is_uuid(b"123e4567-e89b-12d3-a456-426614174000"));
    }
}
