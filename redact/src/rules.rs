//! Known credential formats. Every rule names keywords; one ASCII-case-insensitive pass of the
//! keyword scanner in `scan.rs` finds them all, and a rule's regex runs only in windows around its
//! keywords' hits (one big `RegexSet` measured 0.2 MB/s here: never do that inline).

use std::collections::HashMap;

use base64::Engine;
use regex::bytes::{Regex, RegexBuilder};

use crate::{Detector, DetectorKind, Error, Finding};

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
    /// Extra check on the candidate secret; `false` drops it.
    pub accept: Option<fn(&[u8]) -> bool>,
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
    }
}

/// Bytes that start a needle of [`is_placeholder`], in either case.
static NEEDLE_START: [bool; 256] = {
    let mut table = [false; 256];
    let starts = b"exXErRpPyYcC*";
    let mut i = 0;
    while i < starts.len() {
        table[starts[i] as usize] = true;
        i += 1;
    }
    table
};

/// True for values that are placeholders, references or our own redactions, not secrets.
pub fn is_placeholder(v: &[u8]) -> bool {
    /// Case-insensitive needles; each is looked for only where its first two bytes occur.
    const NEEDLES: &[&[u8]] = &[
        b"example",
        b"xxxx",
        b"****",
        b"redacted",
        b"placeholder",
        b"your_",
        b"your-",
        b"changeme_",
    ];
    let has_needle = v.windows(2).enumerate().any(|(i, w)| {
        NEEDLE_START[usize::from(w[0])] && {
            let pair = [w[0].to_ascii_lowercase(), w[1].to_ascii_lowercase()];
            NEEDLES.iter().any(|n| {
                n[..2] == pair
                    && v.get(i..i + n.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(n))
            })
        }
    });
    v.starts_with(b"SECRET_REF(")
        || v.starts_with(b"[REDACTED:")
        || v.starts_with(b"${")
        || v.starts_with(b"{{")
        || v.starts_with(b"<")
        || v.starts_with(b"$(")
        || v.starts_with(b"%(")
        || has_needle
        || v.iter().all(|b| *b == v[0])
}

/// Documented example keys that must never be redacted (they are in every tutorial).
pub const DOCUMENTED_EXAMPLES: &[&str] = &[
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AKIAI44QH8DHBEXAMPLE",
    "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
];

fn not_example(v: &[u8]) -> bool {
    !DOCUMENTED_EXAMPLES.iter().any(|e| e.as_bytes() == v) && !is_placeholder(v)
}

/// `Basic <base64>` is a credential only if it decodes to `user:password`.
fn basic_credential(v: &[u8]) -> bool {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(v)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(v));
    matches!(decoded, Ok(d) if d.contains(&b':') && d.len() >= 3) && !is_placeholder(v)
}

/// A bearer token looks random: mixed classes, not a word or a reference.
fn token_like(v: &[u8]) -> bool {
    let digits = v.iter().any(u8::is_ascii_digit);
    let upper = v.iter().any(u8::is_ascii_uppercase);
    let lower = v.iter().any(u8::is_ascii_lowercase);
    not_example(v) && (u8::from(digits) + u8::from(upper) + u8::from(lower)) >= 2
}

/// A value after `password=`: anything but code (`os.getenv(...)`, `config.password`, a type
/// name), a placeholder or an empty-ish word.
fn password_value(v: &[u8]) -> bool {
    const NOT_PASSWORDS: &[&str] = &[
        "str",
        "string",
        "int",
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
    ];
    if !not_example(v) {
        return false;
    }
    if NOT_PASSWORDS
        .iter()
        .any(|w| v.eq_ignore_ascii_case(w.as_bytes()))
    {
        return false;
    }
    let identifier = v.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'.' | b'(' | b')' | b'[' | b']' | b'\'' | b'"')
    });
    let code_like = identifier && (v.contains(&b'.') || v.ends_with(b")") || v.contains(&b'['));
    !code_like
}

/// The default rule set.
pub fn default_rules() -> Vec<RuleSpec> {
    vec![
        RuleSpec {
            accept: Some(not_example),
            ..rule(
                "aws-access-key-id",
                &["akia", "asia", "abia", "acca", "a3t"],
                r"\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b",
                4,
                24,
            )
        },
        RuleSpec {
            accept: Some(not_example),
            ..rule(
                "aws-secret-access-key",
                &[
                    "secret_access_key",
                    "secretaccesskey",
                    "secret-access-key",
                    "aws_secret",
                    "aws-secret",
                    "aws secret",
                ],
                r#"(?i)(?:secret[_\-\s]?access[_\-\s]?key|aws[_\-\s]?secret(?:[_\-\s]?key)?)["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
                8,
                96,
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
            r"\b(github_pat_[A-Za-z0-9_]{60,100})\b",
            2,
            104,
        ),
        rule(
            "gitlab-token",
            &["glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "glcbt-"],
            r"\b((?:glpat|gldt|glrt|glptt|glsoat|glcbt)-[A-Za-z0-9_\-]{20,64})",
            2,
            72,
        ),
        rule(
            "slack-token",
            &["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe", "xapp-"],
            r"\b((?:xox[baprs]|xoxe(?:\.xox[bp])?|xapp)-[0-9A-Za-z\-]{10,250})",
            2,
            260,
        ),
        rule(
            "slack-webhook",
            &["hooks.slack.com"],
            r"(https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,160})",
            12,
            180,
        ),
        rule(
            "stripe-secret-key",
            &["sk_live_", "sk_test_", "rk_live_", "rk_test_"],
            r"\b((?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,250})\b",
            2,
            260,
        ),
        rule(
            "openai-api-key",
            &["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-none-"],
            r"\b(sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,250})",
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
        rule(
            "anthropic-api-key",
            &["sk-ant-"],
            r"\b(sk-ant-(?:api|admin|sid|oat)\d{2}-[A-Za-z0-9_\-]{20,300})",
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
            r#"(?i)twilio[A-Za-z0-9_\-\s"':=]{0,40}?(?:auth|token|secret)[A-Za-z0-9_\-\s"':=]{0,20}?\b([0-9a-f]{32})\b"#,
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
            &["pypi-ageichlwas5vcmc"],
            r"\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,300})",
            2,
            320,
        ),
        rule(
            "huggingface-token",
            &["hf_", "api_org_"],
            r"\b((?:hf_|api_org_)[A-Za-z]{34})\b",
            2,
            44,
        ),
        rule(
            "telegram-bot-token",
            &[":aa"],
            r"\b(\d{8,10}:AA[A-Za-z0-9_\-]{33})(?:[^A-Za-z0-9_\-]|$)",
            12,
            40,
        ),
        rule(
            "datadog-api-key",
            &["datadog", "dd_api", "dd-api", "dd_app", "dd-app"],
            r#"(?i)(?:datadog|dd[_\-](?:api|app))[A-Za-z0-9_\-\s"':=]{0,40}?\b([a-f0-9]{40}|[a-f0-9]{32})\b"#,
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
        rule(
            "private-key",
            &["private key"],
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,32768}?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----",
            40,
            33_000,
        ),
        // A pasted key cut off before its END line: redact the body we can see.
        rule(
            "private-key",
            &["private key"],
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s]|\\[nr]|:[^\n\\]*)+",
            40,
            33_000,
        ),
        RuleSpec {
            accept: Some(not_example),
            ..rule(
                "url-credentials",
                &["://"],
                r#"[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/@"'<>]{1,128}:([^\s@/"'<>]{1,256})@"#,
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
        RuleSpec {
            accept: Some(password_value),
            ..rule(
                "password-assignment",
                &["password", "passwd", "pwd", "passphrase"],
                r#"(?i)(?:password|passwd|pwd|passphrase)[A-Za-z0-9_\-]{0,20}["']?\s*(?::=|=>|[:=])\s*(?:"([^"\r\n]{4,256})"|'([^'\r\n]{4,256})'|([^\s"',;)}\]]{4,256}))"#,
                2,
                320,
            )
        },
    ]
}

/// The rule detector.
pub struct RuleDetector {
    keywords: crate::scan::KeywordSet,
    /// Keyword pattern id → rules that use it.
    by_keyword: Vec<Vec<usize>>,
    rules: Vec<(RuleSpec, Regex)>,
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
        let mut keyword_ids: HashMap<&'static str, usize> = HashMap::new();
        let mut keywords: Vec<&'static str> = Vec::new();
        let mut by_keyword: Vec<Vec<usize>> = Vec::new();
        let mut rules = Vec::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let regex = RegexBuilder::new(spec.pattern)
                .unicode(false)
                .size_limit(8 << 20)
                .build()
                .map_err(|e| Error::Build {
                    what: "credential rules",
                    reason: format!("{}: {e}", spec.id),
                })?;
            for kw in spec.keywords {
                let id = *keyword_ids.entry(kw).or_insert_with(|| {
                    keywords.push(kw);
                    by_keyword.push(Vec::new());
                    keywords.len() - 1
                });
                by_keyword[id].push(index);
            }
            rules.push((spec, regex));
        }
        let keywords = crate::scan::KeywordSet::new(keywords);
        Ok(Self {
            keywords,
            by_keyword,
            rules,
        })
    }
}

impl Detector for RuleDetector {
    fn find(&self, text: &str, out: &mut Vec<Finding>) {
        let bytes = text.as_bytes();
        // (rule, window start, window end) for every keyword hit of every rule.
        let mut windows: Vec<(usize, usize, usize)> = Vec::new();
        self.keywords.find_all(bytes, |start, end, id| {
            for &r in &self.by_keyword[id] {
                let spec = &self.rules[r].0;
                windows.push((
                    r,
                    start.saturating_sub(spec.back),
                    (end + spec.fwd).min(bytes.len()),
                ));
            }
        });
        if windows.is_empty() {
            return;
        }
        windows.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        let mut rest = windows.as_slice();
        while let Some(&(r, _, _)) = rest.first() {
            let n = rest.iter().take_while(|w| w.0 == r).count();
            let (ws, tail) = rest.split_at(n);
            rest = tail;
            merged.clear();
            for &(_, s, e) in ws {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            let (spec, regex) = &self.rules[r];
            for &(ws, we) in &merged {
                for caps in regex.captures_iter(&bytes[ws..we]) {
                    let Some(m) = caps.iter().skip(1).flatten().next().or_else(|| caps.get(0))
                    else {
                        continue;
                    };
                    if m.is_empty() || spec.accept.is_some_and(|accept| !accept(m.as_bytes())) {
                        continue;
                    }
                    out.push(Finding {
                        start: ws + m.start(),
                        end: ws + m.end(),
                        rule: spec.id.into(),
                        detector: DetectorKind::Rule,
                        secret: None,
                    });
                }
            }
        }
    }
}
