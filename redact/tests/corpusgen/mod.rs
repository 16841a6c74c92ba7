//! A deterministic generator of labelled prompt text for the redaction corpus test
//! (`tests/recall.rs`) and `examples/redact_corpus.rs` (which writes it to disk for
//! `scripts/redact-report` and `clawgate scan --json`).
//!
//! Documents come in genres an agent sends upstream: source code (Python, JS, Go, Rust, YAML,
//! Terraform, Dockerfile, shell), application logs, config files (.env, .npmrc, .pypirc, docker
//! config.json, kubeconfig, nginx, INI, connection strings), chat transcripts, JSON API payloads,
//! stack traces and diffs; some are wrapped whole into a JSON chat request (so their content is
//! JSON-escaped). Every planted secret is labelled with its byte span, its format and the rule
//! expected to find it; hard negatives (values that look like secrets and are not) are labelled
//! too. Formats are planted round-robin, so every format gets about the same number of plants,
//! in contexts chosen at random from the genre's styles (quoted, unquoted, JSON-escaped, in URLs,
//! at line end, next to punctuation, repeated later in the document).
//!
//! Nothing here is a real credential: every value is drawn from a seeded PRNG.
#![allow(dead_code, unreachable_pub)]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// splitmix64: tiny, seedable, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub fn word_in(&mut self, alphabet: &[u8], lo: usize, hi: usize) -> String {
        let len = self.range(lo, hi);
        self.word(alphabet, len)
    }
    pub fn word(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const UPPER_NUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
pub const HEX: &[u8] = b"0123456789abcdef";
pub const DIGITS: &[u8] = b"0123456789";
pub const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
pub const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// What a labelled span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A credential a rule (or the entropy detector) must find.
    Secret,
    /// A vault value in some encoding: must be found, always.
    Vault,
    /// Looks like a secret and is not: must not be found.
    Negative,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Vault => "vault",
            Kind::Negative => "negative",
        }
    }
}

/// One labelled span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plant {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
    /// The format planted (`github-pat`, `vault.base64`, `git-sha`, ...).
    pub format: &'static str,
    /// The rule expected to find it (`any` when any detector will do), `-` for negatives.
    pub rule: &'static str,
}

/// A generated document.
#[derive(Debug, Clone)]
pub struct Doc {
    pub name: String,
    pub genre: &'static str,
    pub text: String,
    pub plants: Vec<Plant>,
}

/// A piece of a value: plain text, or a labelled span.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    label: Option<(Kind, &'static str, &'static str)>,
}

type Val = Vec<Piece>;

fn plain(s: impl Into<String>) -> Piece {
    Piece {
        text: s.into(),
        label: None,
    }
}

fn secret(s: impl Into<String>, format: &'static str, rule: &'static str) -> Piece {
    Piece {
        text: s.into(),
        label: Some((Kind::Secret, format, rule)),
    }
}

fn negative(s: impl Into<String>, format: &'static str) -> Piece {
    Piece {
        text: s.into(),
        label: Some((Kind::Negative, format, "-")),
    }
}

fn vpiece(s: impl Into<String>, format: &'static str) -> Piece {
    Piece {
        text: s.into(),
        label: Some((Kind::Vault, format, "vault")),
    }
}

/// JSON string escaping (without the quotes), as serde_json writes it.
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encoding of everything but unreserved characters (`encodeURIComponent`).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Doc {
    fn new(name: String, genre: &'static str) -> Self {
        Self {
            name,
            genre,
            text: String::new(),
            plants: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn line(&mut self, s: &str) {
        self.text.push_str(s);
        self.text.push('\n');
    }

    /// Writes the pieces, labelling spans; `escape` JSON-escapes every piece.
    fn put(&mut self, pieces: &[Piece], escape: bool) {
        for p in pieces {
            let text = if escape {
                json_escape(&p.text)
            } else {
                p.text.clone()
            };
            let start = self.text.len();
            self.text.push_str(&text);
            if let Some((kind, format, rule)) = p.label {
                let format =
                    if escape && kind == Kind::Vault && format == "vault.raw" && text != p.text {
                        "vault.json"
                    } else {
                        format
                    };
                self.plants.push(Plant {
                    start,
                    end: self.text.len(),
                    kind,
                    format,
                    rule,
                });
            }
        }
    }

    /// The whole document as the content of a JSON chat request: every span moves to where its
    /// escaped form lands.
    fn wrap_json(self, rng: &mut Rng) -> Doc {
        let (prefix, suffix) = match rng.below(3) {
            0 => (
                "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":4096,\"messages\":[{\"role\":\"user\",\"content\":\"".to_owned(),
                "\"}]}\n".to_owned(),
            ),
            1 => (
                "{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a coding agent.\"},{\"role\":\"tool\",\"tool_call_id\":\"call_8\",\"content\":\"".to_owned(),
                "\"}],\"stream\":true}\n".to_owned(),
            ),
            _ => (
                "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_01\",\"content\":[{\"type\":\"text\",\"text\":\"".to_owned(),
                "\"}]}\n".to_owned(),
            ),
        };
        let mut map = vec![0usize; self.text.len() + 1];
        let mut out = prefix;
        for (i, c) in self.text.char_indices() {
            map[i] = out.len();
            out.push_str(&json_escape(c.encode_utf8(&mut [0; 4])));
        }
        map[self.text.len()] = out.len();
        out.push_str(&suffix);
        let plants = self
            .plants
            .iter()
            .map(|p| {
                let (start, end) = (map[p.start], map[p.end]);
                let changed = end - start != p.end - p.start;
                let format = if changed && p.format == "vault.raw" {
                    "vault.json"
                } else {
                    p.format
                };
                Plant {
                    start,
                    end,
                    format,
                    ..p.clone()
                }
            })
            .collect();
        Doc {
            name: self.name,
            genre: self.genre,
            text: out,
            plants,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Styles: how a key/value assignment is written.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Env,
    Yaml,
    Json,
    Python,
    Js,
    Go,
    Rust,
    Terraform,
    Docker,
    Shell,
    Ini,
    Log,
    Chat,
    Diff,
}

const ALL_STYLES: &[Style] = &[
    Style::Env,
    Style::Yaml,
    Style::Json,
    Style::Python,
    Style::Js,
    Style::Go,
    Style::Rust,
    Style::Terraform,
    Style::Docker,
    Style::Shell,
    Style::Ini,
    Style::Log,
    Style::Chat,
    Style::Diff,
];

fn snake(key: &str) -> String {
    key.to_ascii_lowercase()
}

fn camel(key: &str) -> String {
    let mut out = String::new();
    for (i, part) in key.split('_').enumerate() {
        let lower = part.to_ascii_lowercase();
        if i == 0 {
            out.push_str(&lower);
        } else {
            let mut cs = lower.chars();
            if let Some(f) = cs.next() {
                out.push(f.to_ascii_uppercase());
                out.extend(cs);
            }
        }
    }
    out
}

fn timestamp(rng: &mut Rng) -> String {
    format!(
        "2026-0{}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        rng.range(1, 9),
        rng.range(1, 28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000)
    )
}

/// Writes `key = value` in `style`. `human` is what a person would call the value in prose.
fn assign(doc: &mut Doc, rng: &mut Rng, style: Style, key: &str, human: &str, val: &Val) {
    let k = key;
    let s = snake(key);
    let c = camel(key);
    match style {
        Style::Env => match rng.below(5) {
            0 => {
                doc.push(&format!("{k}="));
                doc.put(val, false);
                doc.push("\n");
            }
            1 => {
                doc.push(&format!("export {k}=\""));
                doc.put(val, false);
                doc.push("\"\n");
            }
            2 => {
                doc.push(&format!("{k}='"));
                doc.put(val, false);
                doc.push("'  # rotated last week\n");
            }
            3 => {
                doc.push(&format!("export {k}="));
                doc.put(val, false);
                doc.push("\n");
            }
            _ => {
                doc.push(&format!("{k}=\""));
                doc.put(val, false);
                doc.push("\"\n");
            }
        },
        Style::Yaml => match rng.below(4) {
            0 => {
                doc.push(&format!("  {s}: "));
                doc.put(val, false);
                doc.push("\n");
            }
            1 => {
                doc.push(&format!("    {s}: \""));
                doc.put(val, false);
                doc.push("\"\n");
            }
            2 => {
                doc.push(&format!("        - name: {k}\n          value: \""));
                doc.put(val, false);
                doc.push("\"\n");
            }
            _ => {
                doc.push(&format!("  {c}: '"));
                doc.put(val, false);
                doc.push("'\n");
            }
        },
        Style::Json => match rng.below(3) {
            0 => {
                doc.push(&format!("  \"{c}\": \""));
                doc.put(val, true);
                doc.push("\",\n");
            }
            1 => {
                doc.push(&format!("{{\"{s}\":\""));
                doc.put(val, true);
                doc.push("\",\"expires_in\":3600}\n");
            }
            _ => {
                doc.push(&format!("    \"{k}\": \""));
                doc.put(val, true);
                doc.push("\"\n");
            }
        },
        Style::Python => match rng.below(5) {
            0 => {
                doc.push(&format!("{s} = \""));
                doc.put(val, false);
                doc.push("\"\n");
            }
            1 => {
                doc.push(&format!("os.environ[\"{k}\"] = '"));
                doc.put(val, false);
                doc.push("'\n");
            }
            2 => {
                doc.push(&format!("client = Client({s}=\""));
                doc.put(val, false);
                doc.push("\", timeout=30)\n");
            }
            3 => {
                doc.push(&format!("    {k} = '"));
                doc.put(val, false);
                doc.push("'  # TODO: move to vault\n");
            }
            _ => {
                doc.push(&format!("settings = {{\"{s}\": \""));
                doc.put(val, false);
                doc.push("\", \"debug\": False}\n");
            }
        },
        Style::Js => match rng.below(4) {
            0 => {
                doc.push(&format!("const {c} = '"));
                doc.put(val, false);
                doc.push("';\n");
            }
            1 => {
                doc.push(&format!("process.env.{k} = \""));
                doc.put(val, false);
                doc.push("\";\n");
            }
            2 => {
                doc.push(&format!("const client = new Client({{ {c}: \""));
                doc.put(val, false);
                doc.push("\", retries: 3 });\n");
            }
            _ => {
                doc.push(&format!("  {c}: `"));
                doc.put(val, false);
                doc.push("`,\n");
            }
        },
        Style::Go => match rng.below(3) {
            0 => {
                doc.push(&format!("\t{c} := \""));
                doc.put(val, false);
                doc.push("\"\n");
            }
            1 => {
                doc.push(&format!("\tos.Setenv(\"{k}\", \""));
                doc.put(val, false);
                doc.push("\")\n");
            }
            _ => {
                doc.push(&format!("const {c} = \""));
                doc.put(val, false);
                doc.push("\"\n");
            }
        },
        Style::Rust => match rng.below(3) {
            0 => {
                doc.push(&format!("    let {s} = \""));
                doc.put(val, false);
                doc.push("\";\n");
            }
            1 => {
                doc.push(&format!("const {k}: &str = \""));
                doc.put(val, false);
                doc.push("\";\n");
            }
            _ => {
                doc.push(&format!("    cfg.{s} = String::from(\""));
                doc.put(val, false);
                doc.push("\");\n");
            }
        },
        Style::Terraform => {
            doc.push(&format!("  {s} = \""));
            doc.put(val, false);
            doc.push("\"\n");
        }
        Style::Docker => match rng.below(3) {
            0 => {
                doc.push(&format!("ENV {k}="));
                doc.put(val, false);
                doc.push("\n");
            }
            1 => {
                doc.push(&format!("ARG {k}=\""));
                doc.put(val, false);
                doc.push("\"\n");
            }
            _ => {
                doc.push(&format!("RUN {k}="));
                doc.put(val, false);
                doc.push(" ./scripts/setup.sh && rm -rf /var/lib/apt/lists/*\n");
            }
        },
        Style::Shell => match rng.below(4) {
            0 => {
                doc.push(&format!("$ export {k}="));
                doc.put(val, false);
                doc.push("\n");
            }
            1 => {
                doc.push(&format!("docker run --rm -e {k}="));
                doc.put(val, false);
                doc.push(" ghcr.io/acme/worker:1.4.2\n");
            }
            2 => {
                doc.push(&format!("$ {k}='"));
                doc.put(val, false);
                doc.push("' ./deploy.sh --env prod\n");
            }
            _ => {
                doc.push(&format!(
                    "kubectl create secret generic app --from-literal={s}="
                ));
                doc.put(val, false);
                doc.push("\n");
            }
        },
        Style::Ini => {
            doc.push(&format!("{s} = "));
            doc.put(val, false);
            doc.push("\n");
        }
        Style::Log => {
            let ts = timestamp(rng);
            match rng.below(4) {
                0 => {
                    doc.push(&format!("{ts} DEBUG config loaded {s}="));
                    doc.put(val, false);
                    doc.push(" region=eu-west-1\n");
                }
                1 => {
                    doc.push(&format!("{ts} INFO  [worker-3] env {k}="));
                    doc.put(val, false);
                    doc.push("\n");
                }
                2 => {
                    doc.push(&format!("[{ts}] WARN settings: {{'{s}': '"));
                    doc.put(val, false);
                    doc.push("', 'retries': 3}\n");
                }
                _ => {
                    doc.push(&format!("{ts} level=debug msg=\"init\" {c}="));
                    doc.put(val, false);
                    doc.push("\n");
                }
            }
        }
        Style::Chat => match rng.below(8) {
            0 => {
                doc.push(&format!("User: my {human} is "));
                doc.put(val, false);
                doc.push(" but every call fails with 401, any idea?\n");
            }
            1 => {
                doc.push(&format!("User: I set {k} to \""));
                doc.put(val, false);
                doc.push("\" and it still doesn't work.\n");
            }
            2 => {
                doc.push(&format!("here's the {human} ("));
                doc.put(val, false);
                doc.push("), can you check why it's rejected?\n");
            }
            3 => {
                doc.push(&format!("> {human}: `"));
                doc.put(val, false);
                doc.push("`\n");
            }
            4 => {
                doc.push(&format!("Use this {human}: "));
                doc.put(val, false);
                doc.push(".\n");
            }
            // A table of settings, as assistants format them.
            5 => {
                doc.push(&format!(
                    "| Setting | Value |\n|---|---|\n| REGION | eu-west-1 |\n| {k} | "
                ));
                doc.put(val, false);
                doc.push(" |\n");
            }
            // The setting in an XML configuration file.
            6 => {
                doc.push(&format!("<settings>\n  <{c}>"));
                doc.put(val, false);
                doc.push(&format!("</{c}>\n</settings>\n"));
            }
            _ => {
                doc.push(&format!(
                    "ok so the {human} i got from the dashboard is\n\n"
                ));
                doc.put(val, false);
                doc.push("\n\nthanks!\n");
            }
        },
        Style::Diff => {
            let inner = *rng.pick(&[Style::Env, Style::Yaml, Style::Python, Style::Js]);
            let mut sub = Doc::new(String::new(), "");
            assign(&mut sub, rng, inner, key, human, val);
            let base = doc.text.len();
            // Prefix every line of the snippet with `+`.
            let mut shift = 0;
            let mut offsets = Vec::new();
            let mut text = String::new();
            for (i, c) in sub.text.char_indices() {
                if i == 0 || sub.text.as_bytes()[i - 1] == b'\n' {
                    text.push('+');
                    shift += 1;
                }
                offsets.push((i, i + shift));
                text.push(c);
            }
            let map = |o: usize| {
                offsets
                    .iter()
                    .find(|(i, _)| *i == o)
                    .map_or(text.len(), |(_, j)| *j)
            };
            for p in &sub.plants {
                doc.plants.push(Plant {
                    start: base + map(p.start),
                    end: base + map(p.end),
                    ..p.clone()
                });
            }
            doc.push(&text);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Secret formats.

/// Every format planted, in round-robin order; `tests/recall.rs` reports recall per format.
pub const SECRET_FORMATS: &[&str] = &[
    "aws-access-key-id",
    "aws-secret-access-key",
    "github-pat",
    "github-fine-grained-pat",
    "github-oauth",
    "github-app-token",
    "gitlab-token",
    "slack-token",
    "slack-webhook",
    "stripe-secret-key",
    "openai-api-key",
    "anthropic-api-key",
    "google-api-key",
    "azure-storage-key",
    "sendgrid-api-key",
    "twilio-api-key",
    "twilio-auth-token",
    "mailgun-api-key",
    "npm-token",
    "pypi-token",
    "huggingface-token",
    "telegram-bot-token",
    "datadog-api-key",
    "jwt",
    "private-key",
    "url-credentials",
    "connection-string",
    "password-assignment",
    "secret-assignment",
    "http-basic-auth",
    "cli-password",
    "generic-api-key",
];

/// Vault encodings planted; each must reach 100%.
pub const VAULT_FORMATS: &[&str] = &[
    "vault.raw",
    "vault.json",
    "vault.base64",
    "vault.base64-user",
    "vault.url",
    "vault.hex",
];

/// Hard negatives planted.
pub const NEGATIVE_FORMATS: &[&str] = &[
    "uuid",
    "git-sha",
    "npm-integrity",
    "cargo-checksum",
    "go-sum",
    "pip-hash",
    "docker-digest",
    "image-data-uri",
    "ssh-public-key",
    "pem-public",
    "documented-example",
    "identifier",
    "base64-blob",
    "minified-js",
    "hex-color",
    "version-string",
    "placeholder",
    "public-id",
    "request-id",
    "url-no-password",
    "cli-no-password",
];

fn aws_key_id(rng: &mut Rng) -> String {
    let prefix = *rng.pick(&["AKIA", "AKIA", "AKIA", "ASIA"]);
    format!(
        "{prefix}{}",
        rng.word(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    )
}

fn aws_secret(rng: &mut Rng) -> String {
    loop {
        let s = rng.word(B64, 40);
        // Real keys mix classes; an all-letter draw would not look like one.
        if s.bytes().any(|b| b.is_ascii_digit()) {
            return s;
        }
    }
}

fn jwt(rng: &mut Rng) -> String {
    let alg = *rng.pick(&["HS256", "RS256", "ES256"]);
    let header = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}"));
    let payload = URL_SAFE_NO_PAD.encode(format!(
        "{{\"sub\":\"{}\",\"name\":\"{}\",\"iat\":{},\"exp\":{},\"scope\":\"read write\"}}",
        rng.range(1000, 99_999_999),
        rng.pick(&["Ada", "Linus", "Grace", "svc-deploy"]),
        1_700_000_000 + rng.below(50_000_000),
        1_760_000_000 + rng.below(50_000_000)
    ));
    let sig_len = if alg == "RS256" { 342 } else { 43 };
    format!("{header}.{payload}.{}", rng.word(B64URL, sig_len))
}

fn password(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => rng.word_in(
            b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!@#$%^&*-_+=?~",
            12,
            24,
        ),
        1 => format!(
            "{}{}{}",
            rng.pick(&[
                "Summer",
                "Winter",
                "Dragon",
                "Monkey",
                "Tr0ub4dor",
                "Letmein"
            ]),
            rng.range(1990, 2031),
            rng.pick(&["!", "#", "$", "?", "!!", ""])
        ),
        2 => (*rng.pick(&[
            "changeme",
            "hunter2",
            "admin123",
            "postgres",
            "P@ssw0rd",
            "s3cr3t",
            "letmein",
            "qwerty123",
            "rootroot",
            "welcome1",
        ]))
        .to_owned(),
        3 => rng.word_in(ALNUM, 16, 32),
        4 => format!(
            "{}-{}-{}-{}",
            rng.pick(&["correct", "purple", "tiger", "ocean", "silent"]),
            rng.pick(&["horse", "battery", "lamp", "river", "monkey"]),
            rng.pick(&["staple", "cloud", "seven", "piano", "rocket"]),
            rng.range(10, 99)
        ),
        _ => format!(
            "{}#{}@{}",
            rng.word(LETTERS, 5),
            rng.range(100, 999),
            rng.word(ALNUM, 6)
        ),
    }
}

fn pem_body(rng: &mut Rng, bytes: usize) -> Vec<String> {
    let b64 = rng.word(B64, bytes.div_ceil(3) * 4);
    b64.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// Writes one planted secret of `format` into `doc`; returns the value(s) planted (for repeats).
fn plant_secret(doc: &mut Doc, rng: &mut Rng, style: Style, format: &'static str) -> Vec<Piece> {
    let token = |doc: &mut Doc, rng: &mut Rng, key: &str, human: &str, value: String| {
        let piece = secret(value, format, format);
        assign(doc, rng, style, key, human, &vec![piece.clone()]);
        vec![piece]
    };
    match format {
        "aws-access-key-id" | "aws-secret-access-key" => {
            let id = aws_key_id(rng);
            let sk = aws_secret(rng);
            let pid = secret(id.clone(), "aws-access-key-id", "aws-access-key-id");
            let psk = secret(sk.clone(), "aws-secret-access-key", "aws-secret-access-key");
            match (style, rng.below(3)) {
                (
                    Style::Ini
                    | Style::Env
                    | Style::Docker
                    | Style::Shell
                    | Style::Yaml
                    | Style::Diff,
                    0,
                )
                | (Style::Ini, _) => {
                    doc.line("[default]");
                    doc.push("aws_access_key_id = ");
                    doc.put(std::slice::from_ref(&pid), false);
                    doc.push("\naws_secret_access_key = ");
                    doc.put(std::slice::from_ref(&psk), false);
                    doc.push("\nregion = us-east-1\n");
                }
                (Style::Json | Style::Log, _) => {
                    doc.push("{\n    \"Credentials\": {\n        \"AccessKeyId\": \"");
                    doc.put(std::slice::from_ref(&pid), false);
                    doc.push("\",\n        \"SecretAccessKey\": \"");
                    doc.put(std::slice::from_ref(&psk), false);
                    doc.push("\",\n        \"SessionToken\": \"");
                    let st = format!("IQoJb3JpZ2luX2VjE{}", rng.word(B64, 280));
                    doc.put(&[secret(st, "aws-session-token", "any")], false);
                    doc.push("\",\n        \"Expiration\": \"2026-05-01T12:00:00Z\"\n    }\n}\n");
                }
                (Style::Go, _) => {
                    doc.push("\tcreds := credentials.NewStaticCredentials(\"");
                    doc.put(std::slice::from_ref(&pid), false);
                    doc.push("\", \"");
                    doc.put(std::slice::from_ref(&psk), false);
                    doc.push("\", \"\")\n");
                }
                (Style::Python, _) => {
                    doc.push("s3 = boto3.client(\n    \"s3\",\n    aws_access_key_id=\"");
                    doc.put(std::slice::from_ref(&pid), false);
                    doc.push("\",\n    aws_secret_access_key=\"");
                    doc.put(std::slice::from_ref(&psk), false);
                    doc.push("\",\n)\n");
                }
                (Style::Js, _) => {
                    doc.push("const s3 = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: '");
                    doc.put(std::slice::from_ref(&pid), false);
                    doc.push("', secretAccessKey: '");
                    doc.put(std::slice::from_ref(&psk), false);
                    doc.push("' } });\n");
                }
                (Style::Chat, _) => {
                    doc.push("User: these are the keys from IAM: ");
                    doc.put(std::slice::from_ref(&pid), false);
                    doc.push(" / ");
                    doc.put(std::slice::from_ref(&psk), false);
                    doc.push(" -- why does `aws s3 ls` say InvalidClientTokenId?\n");
                }
                (Style::Terraform, _) => {
                    doc.push("provider \"aws\" {\n  region     = \"us-east-1\"\n  access_key = \"");
                    doc.put(std::slice::from_ref(&pid), false);
                    doc.push("\"\n  secret_key = \"");
                    doc.put(std::slice::from_ref(&psk), false);
                    doc.push("\"\n}\n");
                }
                _ => {
                    assign(
                        doc,
                        rng,
                        style,
                        "AWS_ACCESS_KEY_ID",
                        "AWS access key",
                        &vec![pid.clone()],
                    );
                    assign(
                        doc,
                        rng,
                        style,
                        "AWS_SECRET_ACCESS_KEY",
                        "AWS secret key",
                        &vec![psk.clone()],
                    );
                }
            }
            vec![pid, psk]
        }
        "github-pat" => {
            let v = format!("ghp_{}", rng.word(ALNUM, 36));
            match rng.below(4) {
                0 => {
                    let p = secret(v, format, format);
                    doc.push("git remote set-url origin https://x-access-token:");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("@github.com/acme/infra.git\n");
                    vec![p]
                }
                _ => token(doc, rng, "GITHUB_TOKEN", "GitHub token", v),
            }
        }
        "github-fine-grained-pat" => {
            let v = format!(
                "github_pat_11{}_{}",
                rng.word(UPPER_NUM, 20),
                rng.word(ALNUM, 59)
            );
            token(doc, rng, "GH_PAT", "fine-grained token", v)
        }
        "github-oauth" => {
            let v = format!("gho_{}", rng.word(ALNUM, 36));
            token(doc, rng, "GITHUB_OAUTH_TOKEN", "oauth token", v)
        }
        "github-app-token" => {
            let v = format!(
                "{}_{}",
                rng.pick(&["ghs", "ghs", "ghu"]),
                rng.word(ALNUM, 36)
            );
            token(doc, rng, "INSTALLATION_TOKEN", "installation token", v)
        }
        "gitlab-token" => {
            let v = format!(
                "glpat-{}",
                rng.word(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                    20
                )
            );
            if rng.pct(30) {
                let p = secret(v, format, format);
                doc.push("curl --header \"PRIVATE-TOKEN: ");
                doc.put(std::slice::from_ref(&p), false);
                doc.push("\" \"https://gitlab.example.com/api/v4/projects\"\n");
                return vec![p];
            }
            token(doc, rng, "GITLAB_TOKEN", "GitLab token", v)
        }
        "slack-token" => {
            let v = if rng.pct(60) {
                format!(
                    "xoxb-{}-{}-{}",
                    rng.word(DIGITS, 11),
                    rng.word(DIGITS, 13),
                    rng.word(ALNUM, 24)
                )
            } else {
                format!(
                    "xoxp-{}-{}-{}-{}",
                    rng.word(DIGITS, 11),
                    rng.word(DIGITS, 11),
                    rng.word(DIGITS, 13),
                    rng.word(HEX, 32)
                )
            };
            token(doc, rng, "SLACK_BOT_TOKEN", "Slack token", v)
        }
        "slack-webhook" => {
            let v = format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                rng.word(UPPER_NUM, 8),
                rng.word(UPPER_NUM, 10),
                rng.word(ALNUM, 24)
            );
            if rng.pct(25) {
                let p = secret(v, format, format);
                doc.push("curl -X POST -H 'Content-type: application/json' --data '{\"text\":\"deploy done\"}' ");
                doc.put(std::slice::from_ref(&p), false);
                doc.push("\n");
                return vec![p];
            }
            token(doc, rng, "SLACK_WEBHOOK_URL", "webhook URL", v)
        }
        "stripe-secret-key" => {
            let v = format!(
                "{}_{}_51{}",
                rng.pick(&["sk", "sk", "rk"]),
                rng.pick(&["live", "live", "test"]),
                rng.word_in(ALNUM, 60, 97)
            );
            token(doc, rng, "STRIPE_SECRET_KEY", "Stripe key", v)
        }
        "openai-api-key" => {
            let v = match rng.below(4) {
                0 => format!("sk-{}T3BlbkFJ{}", rng.word(ALNUM, 20), rng.word(ALNUM, 20)),
                1 => format!(
                    "sk-svcacct-{}T3BlbkFJ{}",
                    rng.word(B64URL, 74),
                    rng.word(B64URL, 74)
                ),
                _ => format!(
                    "sk-proj-{}T3BlbkFJ{}",
                    rng.word(B64URL, 74),
                    rng.word(B64URL, 74)
                ),
            };
            token(doc, rng, "OPENAI_API_KEY", "OpenAI key", v)
        }
        "anthropic-api-key" => {
            let v = format!(
                "sk-ant-{}-{}AA",
                rng.pick(&["api03", "api03", "admin01"]),
                rng.word(B64URL, 93)
            );
            if rng.pct(20) {
                let p = secret(v, format, format);
                doc.push("curl https://api.anthropic.com/v1/messages -H \"x-api-key: ");
                doc.put(std::slice::from_ref(&p), false);
                doc.push("\" -H \"anthropic-version: 2023-06-01\"\n");
                return vec![p];
            }
            token(doc, rng, "ANTHROPIC_API_KEY", "Anthropic key", v)
        }
        "google-api-key" => {
            let v = format!("AIza{}", rng.word(B64URL, 35));
            if rng.pct(30) {
                let p = secret(v, format, format);
                doc.push(
                    "GET https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=",
                );
                doc.put(std::slice::from_ref(&p), false);
                doc.push(" HTTP/1.1\n");
                return vec![p];
            }
            token(doc, rng, "GOOGLE_API_KEY", "Google API key", v)
        }
        "azure-storage-key" => {
            let k = format!("{}==", rng.word(B64, 86));
            let p = secret(k, format, format);
            let val = vec![
                plain(format!(
                    "DefaultEndpointsProtocol=https;AccountName={};AccountKey=",
                    rng.word(LOWER, 10)
                )),
                p.clone(),
                plain(";EndpointSuffix=core.windows.net"),
            ];
            assign(
                doc,
                rng,
                style,
                "AZURE_STORAGE_CONNECTION_STRING",
                "connection string",
                &val,
            );
            vec![p]
        }
        "sendgrid-api-key" => {
            let v = format!("SG.{}.{}", rng.word(B64URL, 22), rng.word(B64URL, 43));
            token(doc, rng, "SENDGRID_API_KEY", "SendGrid key", v)
        }
        "twilio-api-key" => {
            let v = format!("SK{}", rng.word(HEX, 32));
            token(doc, rng, "TWILIO_API_KEY", "Twilio API key", v)
        }
        "twilio-auth-token" => {
            let v = rng.word(HEX, 32);
            let p = secret(v, format, format);
            match (style, rng.below(2)) {
                (Style::Python, 0) => {
                    doc.push(&format!(
                        "from twilio.rest import Client\n\naccount_sid = \"AC{}\"\nauth_token = \"",
                        rng.word(HEX, 32)
                    ));
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\"\nclient = Client(account_sid, auth_token)\n");
                }
                (Style::Yaml, _) => {
                    doc.push("twilio:\n  account_sid: AC");
                    doc.push(&rng.word(HEX, 32));
                    doc.push("\n  auth_token: ");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\n");
                }
                _ => assign(
                    doc,
                    rng,
                    style,
                    "TWILIO_AUTH_TOKEN",
                    "Twilio auth token",
                    &vec![p.clone()],
                ),
            }
            vec![p]
        }
        "mailgun-api-key" => {
            let v = format!("key-{}", rng.word(HEX, 32));
            if rng.pct(30) {
                let p = secret(v, format, format);
                doc.push("curl -s --user 'api:");
                doc.put(std::slice::from_ref(&p), false);
                doc.push(
                    "' https://api.mailgun.net/v3/mg.example.com/messages -F to=ops@example.com\n",
                );
                return vec![p];
            }
            token(doc, rng, "MAILGUN_API_KEY", "Mailgun key", v)
        }
        "npm-token" => {
            let v = format!("npm_{}", rng.word(ALNUM, 36));
            if rng.pct(40) {
                let p = secret(v, format, format);
                doc.push("//registry.npmjs.org/:_authToken=");
                doc.put(std::slice::from_ref(&p), false);
                doc.push("\nalways-auth=true\n");
                return vec![p];
            }
            token(doc, rng, "NPM_TOKEN", "npm token", v)
        }
        "pypi-token" => {
            let v = format!("pypi-AgEIcHlwaS5vcmc{}", rng.word_in(B64URL, 60, 160));
            if rng.pct(40) {
                let p = secret(v, format, format);
                doc.push("[distutils]\nindex-servers = pypi\n\n[pypi]\nusername = __token__\npassword = ");
                doc.put(std::slice::from_ref(&p), false);
                doc.push("\n");
                return vec![p];
            }
            token(doc, rng, "TWINE_PASSWORD", "PyPI token", v)
        }
        "huggingface-token" => {
            let v = format!("hf_{}", rng.word(LETTERS, 34));
            if rng.pct(25) {
                let p = secret(v, format, format);
                doc.push("$ huggingface-cli login --token ");
                doc.put(std::slice::from_ref(&p), false);
                doc.push(" --add-to-git-credential\n");
                return vec![p];
            }
            token(doc, rng, "HF_TOKEN", "Hugging Face token", v)
        }
        "telegram-bot-token" => {
            let v = format!(
                "{}:AA{}",
                rng.range(100_000_000, 7_999_999_999),
                rng.word(B64URL, 33)
            );
            if rng.pct(30) {
                let p = secret(v, format, format);
                doc.push("requests.get(f\"https://api.telegram.org/bot");
                doc.put(std::slice::from_ref(&p), false);
                doc.push("/sendMessage\", params={\"chat_id\": chat_id, \"text\": msg})\n");
                return vec![p];
            }
            token(doc, rng, "TELEGRAM_BOT_TOKEN", "Telegram bot token", v)
        }
        "datadog-api-key" => {
            let (key, v) = if rng.pct(60) {
                ("DD_API_KEY", rng.word(HEX, 32))
            } else {
                ("DD_APP_KEY", rng.word(HEX, 40))
            };
            if rng.pct(20) {
                let p = secret(v, format, format);
                doc.push(
                    "curl -X POST \"https://api.datadoghq.com/api/v1/series\" -H \"DD-API-KEY: ",
                );
                doc.put(std::slice::from_ref(&p), false);
                doc.push("\" -d @metrics.json\n");
                return vec![p];
            }
            token(doc, rng, key, "Datadog key", v)
        }
        "jwt" => {
            let v = jwt(rng);
            let p = secret(v, format, format);
            match rng.below(4) {
                0 => {
                    doc.push("curl -H \"Authorization: Bearer ");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\" https://api.internal.example.com/v2/users/me\n");
                }
                1 => {
                    doc.push("Set-Cookie: session=");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("; Path=/; HttpOnly; Secure\n");
                }
                _ => assign(doc, rng, style, "ID_TOKEN", "token", &vec![p.clone()]),
            }
            vec![p]
        }
        "private-key" => {
            let kind = *rng.pick(&[
                "RSA PRIVATE KEY",
                "PRIVATE KEY",
                "EC PRIVATE KEY",
                "OPENSSH PRIVATE KEY",
                "ENCRYPTED PRIVATE KEY",
            ]);
            let size = if kind.starts_with("EC") {
                121
            } else {
                rng.range(300, 1200)
            };
            let lines = pem_body(rng, size);
            let pem = format!(
                "-----BEGIN {kind}-----\n{}\n-----END {kind}-----",
                lines.join("\n")
            );
            match rng.below(5) {
                0 => {
                    // A service-account JSON: the key JSON-escaped.
                    doc.push(&format!(
                        "{{\n  \"type\": \"service_account\",\n  \"project_id\": \"acme-{}\",\n  \"private_key_id\": \"{}\",\n  \"private_key\": \"",
                        rng.word(LOWER, 6),
                        rng.word(HEX, 40)
                    ));
                    let p = secret(pem, format, format);
                    doc.put(&[p.clone(), plain("\n")], true);
                    doc.push(&format!(
                        "\",\n  \"client_email\": \"deploy@acme-{}.iam.gserviceaccount.com\"\n}}\n",
                        rng.word(LOWER, 6)
                    ));
                    vec![p]
                }
                1 => {
                    // A YAML block scalar, indented.
                    let indented = pem.replace('\n', "\n    ");
                    let p = secret(indented, format, format);
                    doc.push("tls:\n  key: |\n    ");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\n  cert_file: /etc/ssl/certs/server.pem\n");
                    vec![p]
                }
                2 => {
                    let p = secret(pem, format, format);
                    doc.push("$ cat ~/.ssh/id_deploy\n");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\n$ chmod 600 ~/.ssh/id_deploy\n");
                    vec![p]
                }
                3 => {
                    let p = secret(pem, format, format);
                    doc.push(
                        "resource \"tls_private_key\" \"x\" {}\nlocals {\n  deploy_key = <<EOT\n",
                    );
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\nEOT\n}\n");
                    vec![p]
                }
                _ => {
                    let p = secret(pem, format, format);
                    doc.push("User: I pasted the key below but ssh says invalid format:\n```\n");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\n```\n");
                    vec![p]
                }
            }
        }
        "url-credentials" => {
            let pw = match rng.below(4) {
                0 => url_encode(&password(rng)),
                1 => rng.word_in(ALNUM, 12, 28),
                2 => format!("{}{}", rng.word(LOWER, 6), rng.range(10, 9999)),
                _ => url_encode(&rng.word(b"abcdefghijkmnopqrstuvwxyzABCDEFGH23456789!*@#", 18)),
            };
            let p = secret(pw, format, format);
            let (scheme, user, host) = *rng.pick(&[
                ("postgres", "app", "db.internal:5432/app"),
                (
                    "postgresql",
                    "analytics_ro",
                    "pg-replica.prod.svc:5432/warehouse?sslmode=require",
                ),
                ("mysql", "root", "127.0.0.1:3306/shop"),
                (
                    "mongodb+srv",
                    "admin",
                    "cluster0.ab1cd.mongodb.net/test?retryWrites=true&w=majority",
                ),
                ("redis", "", "redis-master.cache:6379/0"),
                (
                    "redis",
                    "default",
                    "redis-12345.c1.us-east-1-2.ec2.cloud.redislabs.com:12345",
                ),
                ("amqp", "guest", "rabbitmq:5672/%2F"),
                ("https", "deploy", "git.example.com/acme/app.git"),
                ("ftp", "backup", "files.example.org/incoming"),
                ("smtp", "mailer", "smtp.example.com:587"),
            ]);
            let val = vec![
                plain(format!("{scheme}://{user}:")),
                p.clone(),
                plain(format!("@{host}")),
            ];
            match rng.below(3) {
                0 => {
                    let ts = timestamp(rng);
                    doc.push(&format!("{ts} INFO connecting to "));
                    doc.put(&val, false);
                    doc.push(" (attempt 2/5)\n");
                }
                _ => assign(doc, rng, style, "DATABASE_URL", "database URL", &val),
            }
            vec![p]
        }
        "connection-string" => {
            let pw = password(rng);
            let p = secret(pw, format, "password-assignment");
            let val = match rng.below(4) {
                0 => vec![
                    plain(format!(
                        "Server=tcp:{}.database.windows.net,1433;Initial Catalog=app;User ID=sqladmin;Password=",
                        rng.word(LOWER, 8)
                    )),
                    p.clone(),
                    plain(";Encrypt=True;Connection Timeout=30;"),
                ],
                1 => vec![
                    plain(format!(
                        "host=db-{}.internal port=5432 dbname=orders user=svc_orders password=",
                        rng.below(9)
                    )),
                    p.clone(),
                    plain(" sslmode=verify-full"),
                ],
                2 => vec![
                    plain("jdbc:postgresql://db.internal:5432/app?user=app&password="),
                    p.clone(),
                    plain("&ssl=true"),
                ],
                _ => vec![
                    plain(
                        "Driver={ODBC Driver 18 for SQL Server};Server=sql01;Database=crm;Uid=crm_app;Pwd=",
                    ),
                    p.clone(),
                    plain(";"),
                ],
            };
            // Connection strings with `;`, `=` and spaces are quoted in code and configs.
            let style = match style {
                Style::Env | Style::Ini | Style::Docker | Style::Shell | Style::Log => {
                    Style::Python
                }
                s => s,
            };
            assign(
                doc,
                rng,
                style,
                "CONNECTION_STRING",
                "connection string",
                &val,
            );
            vec![p]
        }
        "password-assignment" => {
            let pw = password(rng);
            let p = secret(pw, format, format);
            match (style, rng.below(4)) {
                (Style::Shell, 0) => {
                    doc.push("$ mysqldump --user=backup --password=");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push(" --all-databases > dump.sql\n");
                }
                (Style::Shell, 1) => {
                    doc.push("$ docker login registry.example.com --username ci --password '");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("'\n");
                }
                (Style::Yaml, 0) => {
                    doc.push("services:\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: ");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\n");
                }
                (Style::Python, 0) => {
                    doc.push("conn = psycopg2.connect(host=\"db\", user=\"app\", password=\"");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\", dbname=\"app\")\n");
                }
                (Style::Log | Style::Chat, 0) => {
                    doc.push("<settings>\n  <servers>\n    <server>\n      <id>nexus</id>\n      <username>deployer</username>\n      <password>");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("</password>\n    </server>\n  </servers>\n</settings>\n");
                }
                _ => {
                    let key = *rng.pick(&[
                        "DB_PASSWORD",
                        "PASSWORD",
                        "ADMIN_PASSWORD",
                        "SMTP_PASSWORD",
                        "REDIS_PASSWORD",
                        "MYSQL_ROOT_PASSWORD",
                        "PASSWD",
                        "KEYSTORE_PASSPHRASE",
                        "DB_PASS",
                        "MAIL_PASS",
                    ]);
                    assign(doc, rng, style, key, "password", &vec![p.clone()]);
                }
            }
            vec![p]
        }
        "secret-assignment" => {
            let v = match rng.below(5) {
                0 => format!(
                    "django-insecure-{}",
                    rng.word(b"abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)", 50)
                ),
                1 => rng.word(HEX, 64),
                2 => format!(
                    "{}-{}-{}{}",
                    rng.pick(&["my", "super", "prod"]),
                    rng.pick(&["jwt", "session", "signing"]),
                    rng.word(LOWER, 5),
                    rng.range(1000, 9999)
                ),
                3 => rng.word_in(ALNUM, 24, 48),
                _ => rng.word_in(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#%&*+-=?@^_~",
                    20,
                    40,
                ),
            };
            let key = *rng.pick(&[
                "SECRET_KEY",
                "JWT_SECRET",
                "CLIENT_SECRET",
                "SESSION_SECRET",
                "APP_SECRET",
                "WEBHOOK_SECRET",
                "OAUTH_CLIENT_SECRET",
            ]);
            token(doc, rng, key, "secret", v)
        }
        "http-basic-auth" => {
            let user = *rng.pick(&["admin", "deploy", "ci-bot", "api", "grafana"]);
            let pw = password(rng);
            match rng.below(5) {
                0 | 1 => {
                    let b = STANDARD.encode(format!("{user}:{pw}"));
                    let p = secret(b, format, format);
                    match rng.below(3) {
                        0 => {
                            doc.push("GET /api/health HTTP/1.1\nHost: grafana.internal\nAuthorization: Basic ");
                            doc.put(std::slice::from_ref(&p), false);
                            doc.push("\nAccept: */*\n");
                        }
                        1 => {
                            doc.push("curl -H 'Authorization: Basic ");
                            doc.put(std::slice::from_ref(&p), false);
                            doc.push("' https://registry.internal/v2/_catalog\n");
                        }
                        _ => {
                            doc.push("  \"headers\": {\"Authorization\": \"Basic ");
                            doc.put(std::slice::from_ref(&p), false);
                            doc.push("\", \"Content-Type\": \"application/json\"},\n");
                        }
                    }
                    vec![p]
                }
                2 => {
                    let p = secret(pw, format, format);
                    doc.push(&format!("$ curl -u '{user}:"));
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("' https://jenkins.internal/api/json\n");
                    vec![p]
                }
                3 => {
                    let p = secret(pw, format, format);
                    doc.push(&format!("resp = requests.get(url, auth=(\"{user}\", \""));
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\"), timeout=10)\n");
                    vec![p]
                }
                _ => {
                    let p = secret(pw, format, format);
                    doc.push(&format!(
                        "r = httpx.get(url, auth=httpx.BasicAuth(\"{user}\", \""
                    ));
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\"))\n");
                    vec![p]
                }
            }
        }
        "cli-password" => plant_cli_password(doc, rng, style),
        "generic-api-key" => {
            let v = match rng.below(3) {
                0 => rng.word_in(ALNUM, 32, 48),
                1 => rng.word(HEX, 40),
                _ => format!("{}_{}", rng.word(LOWER, 4), rng.word(ALNUM, 32)),
            };
            if rng.pct(25) {
                let p = secret(v, format, "any");
                doc.push("curl -H \"X-Api-Key: ");
                doc.put(std::slice::from_ref(&p), false);
                doc.push("\" https://api.vendor.io/v1/reports\n");
                return vec![p];
            }
            let key = *rng.pick(&[
                "API_KEY",
                "ACCESS_TOKEN",
                "AUTH_TOKEN",
                "PRIVATE_TOKEN",
                "SERVICE_API_KEY",
                "ACCESS_KEY",
            ]);
            let piece = secret(v, format, "any");
            assign(doc, rng, style, key, "API key", &vec![piece.clone()]);
            vec![piece]
        }
        _ => Vec::new(),
    }
}

/// A password given on a command line, the way people type it (quoted when the shell would
/// otherwise eat it), in a shell session, a CI step, a Dockerfile or a JSON tool call.
fn plant_cli_password(doc: &mut Doc, rng: &mut Rng, style: Style) -> Vec<Piece> {
    let pw = password(rng);
    let p = secret(pw.clone(), "cli-password", "cli-password");
    let special = pw.starts_with('-') || pw.bytes().any(|b| b"!$&*?;|<>()#~^%@=+ ".contains(&b));
    let mut arg = vec![p.clone()];
    if special {
        arg.insert(0, plain("'"));
        arg.push(plain("'"));
    }
    let host = *rng.pick(&["db.internal", "10.0.3.12", "mysql-primary", "cache-01"]);
    let (before, after) = match rng.below(12) {
        0 => (
            format!("mysql -h {host} -u root -p"),
            " app < migrations/0042.sql",
        ),
        1 => (
            "mysqldump --single-transaction -uroot -p".to_owned(),
            " shop | gzip > /backup/shop.sql.gz",
        ),
        2 => ("docker login -u ci -p ".to_owned(), " registry.example.com"),
        3 => (
            "sshpass -p ".to_owned(),
            " ssh -o StrictHostKeyChecking=no deploy@10.0.0.7 uptime",
        ),
        4 => (
            format!("redis-cli -h {host} -p 6379 -a "),
            " --no-auth-warning INFO memory",
        ),
        5 => (
            "sqlcmd -S tcp:sql01,1433 -U sa -P ".to_owned(),
            " -Q \"SELECT @@VERSION\"",
        ),
        6 => (
            "ldapsearch -x -H ldap://ldap.internal -D cn=admin,dc=example,dc=org -w ".to_owned(),
            " -b dc=example,dc=org uid=alice",
        ),
        7 => (
            "mongosh --host mongo.internal -u admin -p ".to_owned(),
            " --authenticationDatabase admin",
        ),
        8 => ("htpasswd -bc /etc/nginx/.htpasswd admin ".to_owned(), ""),
        9 => (
            "keytool -genkeypair -alias app -keystore app.jks -storepass ".to_owned(),
            " -dname CN=app",
        ),
        10 => (
            "openssl pkcs12 -export -in cert.pem -inkey key.pem -out app.p12 -passout pass:"
                .to_owned(),
            "",
        ),
        _ => (
            "./scripts/deploy.sh --env prod --db-password ".to_owned(),
            " --yes",
        ),
    };
    let mut line = vec![plain(before)];
    line.extend(arg);
    line.push(plain(after));
    match style {
        Style::Json => {
            doc.push("{\"tool\": \"exec\", \"command\": \"");
            doc.put(&line, true);
            doc.push("\", \"exit_code\": 0}\n");
        }
        Style::Docker => {
            doc.push("RUN ");
            doc.put(&line, false);
            doc.push("\n");
        }
        Style::Yaml => {
            doc.push("    steps:\n      - run: ");
            doc.put(&line, false);
            doc.push("\n");
        }
        _ => {
            doc.push("$ ");
            doc.put(&line, false);
            doc.push("\n");
        }
    }
    vec![p]
}

// ---------------------------------------------------------------------------------------------
// The vault.

/// A generated vault: names and values (fake, generated).
#[derive(Debug, Clone)]
pub struct Vault {
    pub entries: Vec<(String, String)>,
}

pub fn vault(seed: u64, count: usize) -> Vault {
    let mut rng = Rng::new(seed ^ 0xABCD);
    let mut entries = Vec::new();
    for i in 0..count {
        let value = match i % 6 {
            0 => rng.word_in(
                b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!@#$%^&*-_+=?~\"\\/ ",
                10,
                28,
            ),
            1 => rng.word(ALNUM, 32),
            2 => format!(
                "{}-{}-{}-{}",
                rng.word(LOWER, 5),
                rng.word(LOWER, 6),
                rng.word(LOWER, 4),
                rng.range(10, 99)
            ),
            3 => format!(
                "p\"{}\\{}/{}",
                rng.word(ALNUM, 6),
                rng.word(ALNUM, 5),
                rng.word(ALNUM, 4)
            ),
            4 => format!("Pässwörd-{}-Ω{}", rng.word(ALNUM, 6), rng.range(10, 99)),
            _ => format!(
                "{}:{}@{}",
                rng.word(LOWER, 4),
                rng.word(ALNUM, 10),
                rng.word(DIGITS, 4)
            ),
        };
        entries.push((format!("vault_secret_{i}"), value));
    }
    Vault { entries }
}

fn plant_vault(doc: &mut Doc, rng: &mut Rng, v: &Vault, format: &'static str) -> Vec<Piece> {
    // JSON plants want a value that escaping changes.
    let value = loop {
        let (_, value) = rng.pick(&v.entries);
        if format != "vault.json" || json_escape(value) != *value {
            break value.clone();
        }
    };
    let ts = timestamp(rng);
    match format {
        "vault.raw" => {
            let p = vpiece(value, format);
            match rng.below(4) {
                0 => {
                    doc.push(&format!(
                        "{ts} ERROR auth failed for user deploy with password "
                    ));
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\n");
                }
                1 => {
                    doc.push("User: the admin password is ");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push(" -- please log in and check the dashboard\n");
                }
                2 => {
                    doc.push("note: ");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\n");
                }
                _ => {
                    doc.push("| prod | ");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push(" | owner: ops |\n");
                }
            }
            vec![p]
        }
        "vault.json" => {
            let p = vpiece(json_escape(&value), format);
            doc.push("{\"role\":\"tool\",\"content\":\"db password: ");
            doc.put(std::slice::from_ref(&p), false);
            doc.push("\"}\n");
            vec![p]
        }
        "vault.base64" => {
            let p = vpiece(STANDARD.encode(&value), format);
            match rng.below(3) {
                0 => {
                    doc.push(
                        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ndata:\n  password: ",
                    );
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\n");
                }
                1 => {
                    doc.push("$ echo ");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push(" | base64 -d\n");
                }
                _ => {
                    doc.push("{\"blob\":\"");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("\"}\n");
                }
            }
            vec![p]
        }
        "vault.base64-user" => {
            let user = rng.word_in(LOWER, 1, 9);
            let p = vpiece(STANDARD.encode(format!("{user}:{value}")), format);
            doc.push("Authorization: Basic ");
            doc.put(std::slice::from_ref(&p), false);
            doc.push("\n");
            vec![p]
        }
        "vault.url" => {
            let p = vpiece(url_encode(&value), format);
            match rng.below(2) {
                0 => {
                    doc.push(&format!("{ts} GET /login?user=ops&pass="));
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("&next=%2F 302\n");
                }
                _ => {
                    doc.push("curl 'https://api.example.com/v1/auth?secret=");
                    doc.put(std::slice::from_ref(&p), false);
                    doc.push("'\n");
                }
            }
            vec![p]
        }
        "vault.hex" => {
            let hex = if rng.pct(50) {
                hex::encode(value.as_bytes())
            } else {
                hex::encode_upper(value.as_bytes())
            };
            let p = vpiece(hex, format);
            doc.push("key material (hex): ");
            doc.put(std::slice::from_ref(&p), false);
            doc.push("\n");
            vec![p]
        }
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Hard negatives.

fn plant_negative(doc: &mut Doc, rng: &mut Rng, format: &'static str) {
    let n = |s: String| negative(s, format);
    match format {
        "uuid" => {
            let u = format!(
                "{}-{}-4{}-a{}-{}",
                rng.word(HEX, 8),
                rng.word(HEX, 4),
                rng.word(HEX, 3),
                rng.word(HEX, 3),
                rng.word(HEX, 12)
            );
            match rng.below(3) {
                0 => {
                    doc.push("  \"id\": \"");
                    doc.put(&[n(u)], false);
                    doc.push("\",\n");
                }
                1 => {
                    doc.push(&format!("{} INFO request_id=", timestamp(rng)));
                    doc.put(&[n(u)], false);
                    doc.push(" status=200\n");
                }
                _ => {
                    doc.push("api_key_id: ");
                    doc.put(&[n(u)], false);
                    doc.push("\n");
                }
            }
        }
        "git-sha" => {
            let sha = rng.word(HEX, 40);
            match rng.below(4) {
                0 => {
                    doc.push("commit ");
                    doc.put(&[n(sha)], false);
                    doc.push(
                        "\nAuthor: Dev <dev@example.com>\nDate:   Mon Mar 3 10:00:00 2026 +0100\n",
                    );
                }
                1 => {
                    doc.push("    \"sha\": \"");
                    doc.put(&[n(sha)], false);
                    doc.push("\",\n");
                }
                2 => {
                    doc.push("https://github.com/acme/app/commit/");
                    doc.put(&[n(sha)], false);
                    doc.push("\n");
                }
                _ => {
                    doc.push("HEAD is now at ");
                    doc.put(&[n(sha[..7].to_owned())], false);
                    doc.push(" fix: refresh token before expiry\n");
                }
            }
        }
        "npm-integrity" => {
            doc.push("      \"integrity\": \"");
            doc.put(&[n(format!("sha512-{}==", rng.word(B64, 86)))], false);
            doc.push("\",\n");
        }
        "cargo-checksum" => {
            doc.push("checksum = \"");
            doc.put(&[n(rng.word(HEX, 64))], false);
            doc.push("\"\n");
        }
        "go-sum" => {
            doc.push(&format!(
                "golang.org/x/{} v0.{}.0 h1:",
                rng.word(LOWER, 5),
                rng.below(30)
            ));
            doc.put(&[n(format!("{}=", rng.word(B64, 43)))], false);
            doc.push("\n");
        }
        "pip-hash" => {
            doc.push("requests==2.32.3 \\\n    --hash=sha256:");
            doc.put(&[n(rng.word(HEX, 64))], false);
            doc.push("\n");
        }
        "docker-digest" => {
            doc.push("    image: nginx@sha256:");
            doc.put(&[n(rng.word(HEX, 64))], false);
            doc.push("\n");
        }
        "image-data-uri" => {
            let b = format!("iVBORw0KGgo{}", rng.word_in(B64, 200, 1200));
            match rng.below(2) {
                0 => {
                    doc.push(
                        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,",
                    );
                    doc.put(&[n(b)], false);
                    doc.push("\"}}\n");
                }
                _ => {
                    doc.push("![chart](data:image/png;base64,");
                    doc.put(&[n(b)], false);
                    doc.push(")\n");
                }
            }
        }
        "ssh-public-key" => {
            let k = if rng.pct(50) {
                format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{}", rng.word(B64, 43))
            } else {
                format!(
                    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ{}",
                    rng.word(B64, 500)
                )
            };
            match rng.below(2) {
                0 => {
                    doc.put(&[n(k)], false);
                    doc.push(" deploy@build-01\n");
                }
                _ => {
                    doc.push("  public_key = \"");
                    doc.put(&[n(k)], false);
                    doc.push("\"\n");
                }
            }
        }
        "pem-public" => {
            let kind = *rng.pick(&["PUBLIC KEY", "CERTIFICATE"]);
            let lines = {
                let n = rng.range(200, 900);
                pem_body(rng, n)
            };
            let pem = format!(
                "-----BEGIN {kind}-----\n{}\n-----END {kind}-----",
                lines.join("\n")
            );
            doc.put(&[n(pem)], false);
            doc.push("\n");
        }
        "documented-example" => match rng.below(5) {
            0 => {
                doc.push("aws_access_key_id = ");
                doc.put(&[n("AKIAIOSFODNN7EXAMPLE".into())], false);
                doc.push("\naws_secret_access_key = ");
                doc.put(
                    &[n("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into())],
                    false,
                );
                doc.push("\n");
            }
            1 => {
                doc.push("stripe.api_key = \"");
                doc.put(&[n("sk_test_4eC39HqLyjWDarjtT1zdp7dc".into())], false);
                doc.push("\"  # from the Stripe docs\n");
            }
            2 => {
                doc.push("Authorization: Bearer ");
                doc.put(&[n("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c".into())], false);
                doc.push("\n");
            }
            3 => {
                doc.push("export GITHUB_TOKEN=");
                doc.put(
                    &[n("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".into())],
                    false,
                );
                doc.push("\n");
            }
            _ => {
                doc.push("  \"AccessKeyId\": \"");
                doc.put(&[n("AKIAI44QH8DHBEXAMPLE".into())], false);
                doc.push("\",\n");
            }
        },
        "identifier" => {
            let (k, v) = *rng.pick(&[
                (
                    "tokenizer",
                    "AutoTokenizer.from_pretrained(\"bert-base-uncased\")",
                ),
                ("api_key_header_name", "\"X-Api-Key\""),
                ("secret_name", "prod-db-credentials"),
                ("token_type", "\"bearer\""),
                ("access_log", "/var/log/nginx/access.log"),
                ("auth_provider", "google-oauth2"),
                (
                    "session_backend",
                    "\"django.contrib.sessions.backends.cache\"",
                ),
                ("password_reset_timeout", "259200"),
                ("PASSWORD_MIN_LENGTH", "12"),
                ("passwordField", "\"#password-input\""),
                ("secretKeyRef", "{name: db-credentials, key: password}"),
                ("private_key_path", "\"/etc/ssl/private/server.key\""),
                ("token_url", "\"https://oauth2.googleapis.com/token\""),
                ("apiVersion", "networking.k8s.io/v1"),
                ("password", "request.form[\"password\"]"),
                (
                    "hashed_password",
                    "bcrypt.hashpw(password.encode(), bcrypt.gensalt())",
                ),
                ("user.password", "hashed_pw"),
                ("PWD", "/home/agent/projects/clawgate"),
                ("credentialsProvider", "DefaultCredentialsProvider.create()"),
                (
                    "SessionManagerFactoryBeanPostProcessorRegistry",
                    "new SessionManagerFactoryBeanPostProcessorRegistry()",
                ),
            ]);
            let style = rng.below(3);
            let sep = if style == 0 {
                " = "
            } else if style == 1 {
                ": "
            } else {
                "="
            };
            doc.push(&format!("{k}{sep}"));
            doc.put(&[n(v.to_owned())], false);
            doc.push("\n");
        }
        "base64-blob" => {
            let text = format!(
                "# {}\n\nThis module parses configuration files and exposes a typed API. Version {}.{}\n",
                rng.word(LOWER, 8),
                rng.below(9),
                rng.below(20)
            );
            doc.push("  \"encoding\": \"base64\",\n  \"content\": \"");
            doc.put(&[n(STANDARD.encode(text))], false);
            doc.push("\",\n");
        }
        "minified-js" => {
            let a = rng.word(LETTERS, 1);
            let js = format!(
                "!function(e,t){{\"object\"==typeof exports&&\"undefined\"!=typeof module?module.exports=t():\"function\"==typeof define&&define.amd?define(t):(e=e||self).{a}x=t()}}(this,function(){{\"use strict\";var e={{key:\"{}\",token:function(t){{return t.access_token||null}}}};return e}});",
                rng.word(LOWER, 6)
            );
            doc.put(&[n(js)], false);
            doc.push("\n");
        }
        "hex-color" => {
            doc.push("  --primary: ");
            doc.put(&[n(format!("#{}", rng.word(HEX, 6)))], false);
            doc.push(";\n  --accent-key-color: ");
            doc.put(&[n(format!("#{}", rng.word(HEX, 6)))], false);
            doc.push(";\n");
        }
        "version-string" => {
            doc.push("  \"version\": \"");
            doc.put(
                &[n(format!(
                    "{}.{}.{}-rc.{}+build.{}",
                    rng.below(9),
                    rng.below(30),
                    rng.below(99),
                    rng.below(9),
                    rng.word(HEX, 12)
                ))],
                false,
            );
            doc.push("\",\n");
        }
        "placeholder" => {
            let (k, v) = *rng.pick(&[
                ("password", "${DB_PASSWORD}"),
                ("password", "<your-password>"),
                ("DB_PASSWORD", "$DB_PASSWORD"),
                ("OPENAI_API_KEY", "sk-..."),
                ("api_key", "YOUR_API_KEY"),
                ("token", "{{ .Values.token }}"),
                ("password", "os.environ[\"DB_PASSWORD\"]"),
                ("password", "getpass.getpass()"),
                ("password", "********"),
                ("api_key", "process.env.NEXT_PUBLIC_API_KEY"),
                ("client_secret", "<client-secret>"),
                ("password", "%(db_password)s"),
                ("secret", "!vault |"),
                ("GITHUB_TOKEN", "$(gh auth token)"),
                ("Authorization", "Bearer $TOKEN"),
                ("password", "None"),
                ("SECRET_KEY", "os.getenv(\"SECRET_KEY\")"),
                ("password", "your_password_here"),
                ("auth_token", "[REDACTED]"),
                ("ANTHROPIC_API_KEY", "${{ secrets.ANTHROPIC_API_KEY }}"),
            ]);
            match rng.below(3) {
                0 => {
                    doc.push(&format!("{k}="));
                    doc.put(&[n(v.to_owned())], false);
                    doc.push("\n");
                }
                1 => {
                    doc.push(&format!("  {k}: "));
                    doc.put(&[n(v.to_owned())], false);
                    doc.push("\n");
                }
                _ => {
                    doc.push(&format!("{k} = "));
                    doc.put(&[n(v.to_owned())], false);
                    doc.push("\n");
                }
            }
            if rng.pct(20) {
                doc.push("password: ''\n");
            }
        }
        "public-id" => match rng.below(5) {
            0 => {
                doc.push("STRIPE_PUBLISHABLE_KEY=");
                doc.put(&[n(format!("pk_live_51{}", rng.word(ALNUM, 90)))], false);
                doc.push("\n");
            }
            1 => {
                doc.push("TWILIO_ACCOUNT_SID=");
                doc.put(&[n(format!("AC{}", rng.word(HEX, 32)))], false);
                doc.push("\n");
            }
            2 => {
                doc.push("  \"client_id\": \"");
                doc.put(
                    &[n(format!(
                        "{}-{}.apps.googleusercontent.com",
                        rng.word(DIGITS, 12),
                        rng.word(b"abcdefghijklmnopqrstuvwxyz0123456789", 32)
                    ))],
                    false,
                );
                doc.push("\",\n");
            }
            3 => {
                doc.push("role_arn = \"");
                doc.put(
                    &[n(format!(
                        "arn:aws:iam::{}:role/deploy",
                        rng.word(DIGITS, 12)
                    ))],
                    false,
                );
                doc.push("\"\n");
            }
            _ => {
                doc.push("SENTRY_DSN=");
                doc.put(
                    &[n(format!(
                        "https://{}@o{}.ingest.sentry.io/{}",
                        rng.word(HEX, 32),
                        rng.word(DIGITS, 6),
                        rng.word(DIGITS, 7)
                    ))],
                    false,
                );
                doc.push("\n");
            }
        },
        "request-id" => {
            let ts = timestamp(rng);
            let (k, v) = match rng.below(4) {
                0 => ("request_id", rng.word(HEX, 32)),
                1 => ("trace_id", rng.word(HEX, 32)),
                2 => ("x-amz-request-id", rng.word(UPPER_NUM, 16)),
                _ => ("etag", rng.word(HEX, 32)),
            };
            doc.push(&format!("{ts} INFO {k}="));
            doc.put(&[n(v)], false);
            doc.push(" path=/v1/messages status=200\n");
        }
        "cli-no-password" => {
            let line = match rng.below(10) {
                0 => "mysql -u root -p appdb".to_owned(),
                1 => format!("mysql -h db -P {} -u app -p", rng.range(3306, 3400)),
                2 => "find /var/lib/mysql -name '*.ibd' -print".to_owned(),
                3 => format!(
                    "docker run --name mysql -p {0}:{0} -p 443:443 mysql:8",
                    rng.range(3306, 3400)
                ),
                4 => format!("redis-cli -h cache -p {} ping", rng.range(6379, 6400)),
                5 => format!("sshpass -e ssh -p {} deploy@host", rng.range(2200, 2300)),
                6 => "docker login -u ci -p $CI_REGISTRY_PASSWORD $CI_REGISTRY".to_owned(),
                7 => "docker login -u ci --password-stdin < token.txt".to_owned(),
                8 => "mongosh -u admin -p --authenticationDatabase admin".to_owned(),
                _ => "pg_dump --no-password appdb > dump.sql".to_owned(),
            };
            doc.push("$ ");
            doc.put(&[n(line)], false);
            doc.push("\n");
        }
        "url-no-password" => {
            let u = match rng.below(5) {
                0 => "https://user@github.com/acme/app.git".to_owned(),
                1 => "git@github.com:acme/infra.git".to_owned(),
                2 => format!("postgres://localhost:{}/app_dev", rng.range(5000, 6000)),
                3 => format!("http://[::1]:{}/metrics", rng.range(8000, 9999)),
                _ => format!(
                    "https://example.com:8443/path?key=value&page={}",
                    rng.below(50)
                ),
            };
            doc.push("see ");
            doc.put(&[n(u)], false);
            doc.push(" for details\n");
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Filler (no secrets).

const GENRES: &[&str] = &["code", "logs", "config", "chat", "json", "trace", "diff"];

fn filler_line(rng: &mut Rng, genre: &str) -> String {
    match genre {
        "code" => {
            let f = rng.word_in(LOWER, 4, 10);
            match rng.below(10) {
                0 => format!("def {f}(self, request, *args, **kwargs):"),
                1 => format!("    result = self.{f}_client.fetch(item_id={}, retries=3)", rng.below(999)),
                2 => format!("func (s *Server) {}{f}(ctx context.Context) error {{", f[..1].to_ascii_uppercase()),
                3 => format!("    if err != nil {{ return fmt.Errorf(\"{f}: %w\", err) }}"),
                4 => format!("const {f} = await fetch(`${{BASE_URL}}/api/{f}`, {{ method: 'POST' }});"),
                5 => format!("pub fn {f}(&self, key: &str) -> Option<&Entry> {{ self.map.get(key) }}"),
                6 => format!("    let token_count = tokens.len(); // {f}"),
                7 => "    # The API key is read from the environment; never hard-code it.".to_owned(),
                8 => format!("import {{ {f} }} from './{f}.js';"),
                _ => format!("    return {{\"status\": \"ok\", \"count\": {}}}", rng.below(100)),
            }
        }
        "logs" => {
            let ts = timestamp(rng);
            match rng.below(6) {
                0 => format!("{ts} INFO  http GET /api/v1/items/{} 200 {}ms", rng.below(9999), rng.below(500)),
                1 => format!("{ts} DEBUG cache hit key=user:{} ttl=300", rng.below(99999)),
                2 => format!("{ts} WARN  retrying upstream (attempt {}/5) after connection reset", rng.range(1, 5)),
                3 => format!("{ts} INFO  token refreshed for session, expires_in=3600 user_id={}", rng.below(9999)),
                4 => format!("{ts} ERROR failed to parse config: unexpected key 'timeout' at line {}", rng.below(90)),
                _ => format!("{} - - [{ts}] \"GET /static/app.{}.js HTTP/1.1\" 200 {}", rng.pick(&["10.0.0.4", "172.16.3.9", "192.168.1.20"]), rng.word(HEX, 8), rng.below(90000)),
            }
        }
        "config" => match rng.below(8) {
            0 => format!("LOG_LEVEL={}", rng.pick(&["info", "debug", "warn"])),
            1 => format!("  replicas: {}", rng.range(1, 6)),
            2 => format!("server_name {}.example.com;", rng.word(LOWER, 6)),
            3 => "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;".to_owned(),
            4 => format!("timeout = {}", rng.range(5, 120)),
            5 => format!("  - name: {}\n    image: ghcr.io/acme/{}:1.{}.{}", rng.word(LOWER, 6), rng.word(LOWER, 6), rng.below(20), rng.below(10)),
            6 => "[server]\nhost = 0.0.0.0\nport = 8080".to_owned(),
            _ => format!("\"registry-mirrors\": [\"https://mirror.gcr.io\"], \"max-concurrent-downloads\": {}", rng.range(1, 9)),
        },
        "chat" => match rng.below(7) {
            0 => "User: can you look at why the deploy fails? I think it's the credentials.".to_owned(),
            1 => "Assistant: Sure. The error says the token has expired; let's rotate the key and redeploy.".to_owned(),
            2 => "User: here's the output of the last run, I trimmed the boring parts".to_owned(),
            3 => "Assistant: I'll check the config file and the environment variables first.".to_owned(),
            4 => format!("User: it worked on my machine with node {}.{}.{} but not in CI", rng.range(16, 22), rng.below(20), rng.below(10)),
            5 => "Assistant: The password policy requires 12 characters; the secret is stored in the vault.".to_owned(),
            _ => "User: thanks, that fixed it! one more thing about the basic setup though".to_owned(),
        },
        "json" => match rng.below(5) {
            0 => format!("{{\"id\": {}, \"name\": \"{}\", \"active\": true}}", rng.below(99999), rng.word(LOWER, 8)),
            1 => format!("  \"usage\": {{\"input_tokens\": {}, \"output_tokens\": {}}},", rng.below(9999), rng.below(999)),
            2 => format!("  \"created_at\": \"{}\",", timestamp(rng)),
            3 => "  \"tags\": [\"prod\", \"eu-west-1\", \"billing\"],".to_owned(),
            _ => format!("  \"message\": \"processed {} records\",", rng.below(100000)),
        },
        "trace" => match rng.below(5) {
            0 => format!("  File \"/app/{}.py\", line {}, in {}", rng.word(LOWER, 6), rng.below(400), rng.word(LOWER, 7)),
            1 => format!("    at {}.{}({}.java:{})", rng.word(LOWER, 8), rng.word(LOWER, 6), rng.word(LETTERS, 8), rng.below(300)),
            2 => format!("goroutine {} [running]:", rng.below(99)),
            3 => "KeyError: 'token'".to_owned(),
            _ => format!("requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://api.example.com/v{}/auth", rng.range(1, 3)),
        },
        _ => match rng.below(5) {
            0 => format!("diff --git a/src/{0}.py b/src/{0}.py", rng.word(LOWER, 6)),
            1 => format!("index {}..{} 100644", rng.word(HEX, 7), rng.word(HEX, 7)),
            2 => format!("@@ -{},{} +{},{} @@ def handler(event):", rng.below(90), rng.range(3, 9), rng.below(90), rng.range(3, 9)),
            3 => format!("-    timeout = {}", rng.range(5, 60)),
            _ => format!("+    timeout = {}", rng.range(5, 60)),
        },
    }
}

fn styles_for(genre: &str) -> &'static [Style] {
    match genre {
        "code" => &[
            Style::Python,
            Style::Js,
            Style::Go,
            Style::Rust,
            Style::Yaml,
            Style::Terraform,
            Style::Docker,
            Style::Shell,
        ],
        "logs" => &[Style::Log, Style::Log, Style::Shell],
        "config" => &[
            Style::Env,
            Style::Yaml,
            Style::Ini,
            Style::Json,
            Style::Docker,
            Style::Terraform,
        ],
        "chat" => ALL_STYLES,
        "json" => &[Style::Json],
        "trace" => &[Style::Log, Style::Python],
        _ => &[Style::Diff],
    }
}

/// The corpus: `docs` documents; `vault` values are planted in their encodings.
pub fn corpus(seed: u64, docs: usize, v: &Vault) -> Vec<Doc> {
    let mut rng = Rng::new(seed);
    let mut next_secret = 0usize;
    let mut next_vault = 0usize;
    let mut next_negative = 0usize;
    let mut out = Vec::with_capacity(docs);
    for i in 0..docs {
        let genre = *rng.pick(GENRES);
        let mut doc = Doc::new(format!("doc-{i:05}-{genre}"), genre);
        let secrets = rng.range(2, 5);
        let vaults = rng.range(0, 2);
        let negatives = rng.range(2, 5);
        let mut events: Vec<u8> = std::iter::repeat_n(0u8, secrets)
            .chain(std::iter::repeat_n(1u8, vaults))
            .chain(std::iter::repeat_n(2u8, negatives))
            .collect();
        // Shuffle.
        for j in (1..events.len()).rev() {
            let k = rng.below(j + 1);
            events.swap(j, k);
        }
        let mut planted: Vec<Piece> = Vec::new();
        for e in events {
            for _ in 0..rng.range(1, 6) {
                let line = filler_line(&mut rng, genre);
                doc.line(&line);
            }
            match e {
                0 => {
                    let format = SECRET_FORMATS[next_secret % SECRET_FORMATS.len()];
                    next_secret += 1;
                    let style = *rng.pick(styles_for(genre));
                    planted.extend(plant_secret(&mut doc, &mut rng, style, format));
                }
                1 => {
                    let format = VAULT_FORMATS[next_vault % VAULT_FORMATS.len()];
                    next_vault += 1;
                    planted.extend(plant_vault(&mut doc, &mut rng, v, format));
                }
                _ => {
                    let format = NEGATIVE_FORMATS[next_negative % NEGATIVE_FORMATS.len()];
                    next_negative += 1;
                    plant_negative(&mut doc, &mut rng, format);
                }
            }
        }
        // Resent later in the same document (agents paste things twice), bare, next to
        // punctuation: every copy must go.
        if !planted.is_empty() && rng.pct(25) {
            let p = rng.pick(&planted).clone();
            // A plain lower-case word (`postgres`) repeated with no context is just the word:
            // the redactor does not chase copies of those (see `merge.rs`).
            if !p.text.contains('\n') && !p.text.bytes().all(|b| b.is_ascii_lowercase()) {
                let (before, after) = *rng.pick(&[
                    ("(", ")"),
                    ("\"", "\","),
                    ("`", "`."),
                    ("[", "]"),
                    ("again: ", "\n"),
                    ("<", ">"),
                ]);
                doc.push("\nAssistant: I see you used ");
                doc.push(before);
                doc.put(&[p], false);
                doc.push(after);
                doc.push(" -- rotate it after this session.\n");
            }
        }
        for _ in 0..rng.range(1, 4) {
            let line = filler_line(&mut rng, genre);
            doc.line(&line);
        }
        if rng.pct(12) {
            doc = doc.wrap_json(&mut rng);
        }
        out.push(doc);
    }
    out
}

/// The labels of a corpus as JSON (the format `scripts/redact-report` reads).
pub fn labels_json(docs: &[Doc], seed: u64) -> serde_json::Value {
    let documents: Vec<serde_json::Value> = docs
        .iter()
        .map(|d| {
            serde_json::json!({
                "file": format!("docs/{}.txt", d.name),
                "genre": d.genre,
                "plants": d.plants.iter().map(|p| serde_json::json!({
                    "start": p.start,
                    "end": p.end,
                    "kind": p.kind.as_str(),
                    "format": p.format,
                    "rule": p.rule,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "version": 1, "seed": seed, "documents": documents })
}
