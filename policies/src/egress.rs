//! The CONNECT host policy: which hosts and ports the agent's non-LLM traffic may reach through
//! the egress proxy's CONNECT listener, and which hosts are LLM providers (whose traffic must go
//! through the redacting reverse routes instead).
//!
//! A policy file may carry one `[egress]` table:
//!
//! ```toml
//! [egress]
//! connect_allow = ["*"]                 # host patterns a tunnel may reach (default ["*"])
//! connect_deny  = ["pastebin.com"]      # refused even when allowed; deny wins
//! connect_ports = [443]                 # destination ports (default [443])
//! llm_hosts     = ["api.example-llm.com"] # CONNECT refused and audited as a bypass attempt
//! ```
//!
//! Patterns are matched case-insensitively against the host with its trailing dot removed:
//!
//! * `*` alone: any public host *name* (never an IP literal);
//! * `api.github.com`: exactly that host;
//! * `*.github.com`: any host *below* `github.com` (one or more labels; not `github.com` itself);
//! * a `*` label elsewhere matches exactly one label (`bedrock-runtime.*.amazonaws.com`), and a
//!   label `*suffix` matches one label ending in `suffix` (`*-aiplatform.googleapis.com`);
//! * an IP literal (`203.0.113.7`, `2001:db8::1` or `[2001:db8::1]`): exactly that address.
//!
//! Merging across files (name order) can only add restrictions that are security-relevant:
//! `connect_deny` and `llm_hosts` are unions of every file *and* of the built-in lists
//! ([`BUILTIN_DENY`], [`BUILTIN_LLM_HOSTS`]), which no file can remove. `connect_allow` and
//! `connect_ports` are unions of every file that sets them; only when no file sets one does its
//! default (`["*"]`, `[443]`) apply. An empty list in every file that sets it allows nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::url::{HostKind, host_kind};

/// LLM provider API hosts that are always refused on the CONNECT listener (their traffic must
/// go through the reverse routes, which redact and meter it). Policy files may add more.
pub const BUILTIN_LLM_HOSTS: &[&str] = &[
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
    "openrouter.ai",
    "*.openrouter.ai",
    "api.mistral.ai",
    "api.groq.com",
    "api.together.xyz",
    "api.together.ai",
    "api.x.ai",
    "api.deepseek.com",
    "api.cohere.ai",
    "api.cohere.com",
    "api.fireworks.ai",
    "api.perplexity.ai",
    "api.cerebras.ai",
    "api.deepinfra.com",
    "api.moonshot.ai",
    "api.moonshot.cn",
    "dashscope.aliyuncs.com",
    "dashscope-intl.aliyuncs.com",
    "api.replicate.com",
    "api-inference.huggingface.co",
    "router.huggingface.co",
    "models.github.ai",
    "models.inference.ai.azure.com",
    "*.openai.azure.com",
    "*.services.ai.azure.com",
    "aiplatform.googleapis.com",
    "*-aiplatform.googleapis.com",
    "bedrock-runtime.*.amazonaws.com",
    "bedrock-runtime-fips.*.amazonaws.com",
];

/// Hosts always refused on the CONNECT listener: the paste, file-drop, request-catcher and
/// tunnel hosts of the default `net.paste_sites` rule. Policy files may add more.
pub const BUILTIN_DENY: &[&str] = &[
    "pastebin.com",
    "*.pastebin.com",
    "transfer.sh",
    "0x0.st",
    "termbin.com",
    "ix.io",
    "webhook.site",
    "*.ngrok.io",
    "*.ngrok-free.app",
    "requestbin.net",
    "*.requestcatcher.com",
    "*.burpcollaborator.net",
    "*.oast.fun",
    "*.interact.sh",
];

/// Destination ports allowed when no policy file sets `connect_ports`.
pub const DEFAULT_PORTS: &[u16] = &[443];

/// The `[egress]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEgress {
    connect_allow: Option<Vec<String>>,
    connect_deny: Option<Vec<String>>,
    connect_ports: Option<Vec<u16>>,
    llm_hosts: Option<Vec<String>>,
}

/// Accumulates the `[egress]` tables of a policy's files.
#[derive(Debug, Default)]
pub(crate) struct EgressSources {
    allow: Option<Vec<HostPattern>>,
    deny: Vec<HostPattern>,
    ports: Option<BTreeSet<u16>>,
    llm: Vec<HostPattern>,
}

fn parse_list(file: &str, key: &str, list: &[String]) -> Result<Vec<HostPattern>> {
    list.iter()
        .map(|p| {
            HostPattern::parse(p).map_err(|why| Error::Parse {
                file: file.to_owned(),
                message: format!("[egress] {key}: pattern {p:?}: {why}"),
            })
        })
        .collect()
}

impl EgressSources {
    /// Merges one file's `[egress]` table.
    pub(crate) fn add(&mut self, file: &str, raw: Option<RawEgress>) -> Result<()> {
        let Some(raw) = raw else {
            return Ok(());
        };
        if let Some(list) = raw.connect_allow {
            let parsed = parse_list(file, "connect_allow", &list)?;
            self.allow.get_or_insert_with(Vec::new).extend(parsed);
        }
        if let Some(list) = raw.connect_deny {
            self.deny.extend(parse_list(file, "connect_deny", &list)?);
        }
        if let Some(list) = raw.llm_hosts {
            self.llm.extend(parse_list(file, "llm_hosts", &list)?);
        }
        if let Some(ports) = raw.connect_ports {
            if ports.contains(&0) {
                return Err(Error::Parse {
                    file: file.to_owned(),
                    message: "[egress] connect_ports: port 0 is not a port".into(),
                });
            }
            self.ports.get_or_insert_with(BTreeSet::new).extend(ports);
        }
        Ok(())
    }

    /// The merged policy (built-in lists included).
    pub(crate) fn build(self) -> ConnectPolicy {
        let builtin = |list: &[&str]| -> Vec<HostPattern> {
            list.iter()
                .filter_map(|p| HostPattern::parse(p).ok())
                .collect()
        };
        let mut deny = builtin(BUILTIN_DENY);
        deny.extend(self.deny);
        let mut llm = builtin(BUILTIN_LLM_HOSTS);
        llm.extend(self.llm);
        let allow = self.allow.unwrap_or_else(|| vec![HostPattern::any()]);
        let ports = self
            .ports
            .map(|p| p.into_iter().collect())
            .unwrap_or_else(|| DEFAULT_PORTS.to_vec());
        ConnectPolicy {
            allow: dedup(allow),
            deny: dedup(deny),
            ports,
            llm: dedup(llm),
        }
    }
}

fn dedup(mut v: Vec<HostPattern>) -> Vec<HostPattern> {
    let mut seen = BTreeSet::new();
    v.retain(|p| seen.insert(p.to_string()));
    v
}

/// One label of a name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    /// Exactly this label.
    Literal(String),
    /// Any one label.
    Any,
    /// One label ending in this (non-empty) suffix, with at least one character before it.
    EndsWith(String),
}

impl Label {
    fn matches(&self, label: &str) -> bool {
        match self {
            Label::Literal(l) => l == label,
            Label::Any => true,
            Label::EndsWith(s) => label.len() > s.len() && label.ends_with(s.as_str()),
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Literal(l) => f.write_str(l),
            Label::Any => f.write_str("*"),
            Label::EndsWith(s) => write!(f, "*{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pat {
    /// `*`: any public host name.
    Any,
    /// A name pattern: a leading `*.` (`subdomains`: one or more labels before `labels`).
    Name {
        subdomains: bool,
        labels: Vec<Label>,
    },
    /// Exactly this address.
    Ip(IpAddr),
}

/// A host pattern of `connect_allow`, `connect_deny` or `llm_hosts` (syntax in the module
/// documentation). Displays in its normalised form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(Pat);

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Pat::Any => f.write_str("*"),
            Pat::Name { subdomains, labels } => {
                if *subdomains {
                    f.write_str("*.")?;
                }
                for (i, l) in labels.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "{l}")?;
                }
                Ok(())
            }
            Pat::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

fn label_pattern(l: &str) -> Label {
    if l == "*" {
        Label::Any
    } else if let Some(s) = l.strip_prefix('*') {
        Label::EndsWith(s.to_owned())
    } else {
        Label::Literal(l.to_owned())
    }
}

/// True when `l` is made of DNS-name characters only (letters, digits, `-`, `_`).
fn is_name_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// True for a name whose last label is numeric (`127.1`, `0x7f.1`, `2130706433`): resolvers
/// read those as addresses, so they are never names.
fn numeric_tail(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || (last.starts_with("0x") && last.bytes().skip(2).all(|b| b.is_ascii_hexdigit())))
}

/// Parses an IP literal written plainly: dotted-quad IPv4 (strict) or IPv6, with or without
/// brackets. IPv4-mapped IPv6 becomes the IPv4 address.
fn parse_ip_literal(s: &str) -> Option<IpAddr> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if inner.contains(':') {
        let v6: Ipv6Addr = inner.parse().ok()?;
        return Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        });
    }
    if s.starts_with('[') {
        return None;
    }
    inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

impl HostPattern {
    /// Parses one pattern (lower-cased; one trailing dot ignored).
    pub fn parse(raw: &str) -> std::result::Result<HostPattern, String> {
        let p = raw.trim().to_ascii_lowercase();
        let p = p.strip_suffix('.').unwrap_or(&p);
        if p == "*" {
            return Ok(HostPattern(Pat::Any));
        }
        if let Some(ip) = parse_ip_literal(p) {
            return Ok(HostPattern(Pat::Ip(ip)));
        }
        if p.is_empty() {
            return Err("empty pattern".into());
        }
        if !p.is_ascii() {
            return Err("write internationalised names in their ASCII (xn--) form".into());
        }
        if p.len() > 253 {
            return Err("longer than a host name can be".into());
        }
        let (subdomains, rest) = match p.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        let mut labels = Vec::new();
        for l in rest.split('.') {
            let body = l.strip_prefix('*').unwrap_or(l);
            if l != "*" && !is_name_label(body) {
                return Err(format!(
                    "label {l:?} is not a host-name label (letters, digits, '-', '_'; '*' only as a whole label or at its start)"
                ));
            }
            labels.push(label_pattern(l));
        }
        if !rest.contains('*') && numeric_tail(rest) {
            return Err(
                "a numeric last label is an IP address, not a name; write a dotted-quad address"
                    .into(),
            );
        }
        Ok(HostPattern(Pat::Name { subdomains, labels }))
    }

    /// `*`: any public host name.
    pub fn any() -> HostPattern {
        HostPattern(Pat::Any)
    }

    /// True when this pattern names `host` (a normalised [`ConnectHost`]).
    fn matches(&self, host: &ConnectHost) -> bool {
        match (&self.0, host) {
            (Pat::Any, ConnectHost::Name(_)) => true,
            (Pat::Ip(a), ConnectHost::Ip(b)) => a == b,
            (Pat::Name { subdomains, labels }, ConnectHost::Name(name)) => {
                let host_labels: Vec<&str> = name.split('.').collect();
                let n = labels.len();
                if *subdomains {
                    if host_labels.len() <= n {
                        return false;
                    }
                } else if host_labels.len() != n {
                    return false;
                }
                let tail = host_labels.get(host_labels.len() - n..).unwrap_or_default();
                labels.iter().zip(tail).all(|(p, h)| p.matches(h))
            }
            _ => false,
        }
    }
}

/// A CONNECT host after normalisation: an IP literal or a lower-case name without trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectHost {
    /// An IP literal (IPv4-mapped IPv6 folded to IPv4).
    Ip(IpAddr),
    /// A host name (lower-case ASCII, no trailing dot, DNS characters only).
    Name(String),
}

impl ConnectHost {
    /// Normalises `host` as it appeared in `CONNECT host:port` (IPv6 with or without brackets).
    /// `None` for anything that is neither a strict IP literal nor a syntactically valid name
    /// (numeric forms such as `127.1` or `2130706433` included).
    pub fn parse(host: &str) -> Option<ConnectHost> {
        let lower = host.to_ascii_lowercase();
        if let Some(ip) = parse_ip_literal(&lower) {
            return Some(ConnectHost::Ip(ip));
        }
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name.is_empty()
            || name.len() > 253
            || !name.split('.').all(is_name_label)
            || numeric_tail(name)
        {
            return None;
        }
        Some(ConnectHost::Name(name.to_owned()))
    }
}

impl fmt::Display for ConnectHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectHost::Ip(ip) => write!(f, "{ip}"),
            ConnectHost::Name(n) => f.write_str(n),
        }
    }
}

/// Why a CONNECT was refused by the host policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyKind {
    /// The host is not a valid host name or IP literal.
    InvalidHost,
    /// The host matches `connect_deny`.
    DenyList,
    /// The port is not in `connect_ports`.
    Port,
    /// The name is loopback, private, link-local, metadata or intranet-looking.
    NonPublic,
    /// An IP literal that `connect_allow` does not name exactly.
    IpLiteral,
    /// No `connect_allow` pattern matches.
    NotAllowed,
}

impl DenyKind {
    /// A stable snake_case name (metric label, audit field).
    pub fn as_str(self) -> &'static str {
        match self {
            DenyKind::InvalidHost => "invalid_host",
            DenyKind::DenyList => "deny_list",
            DenyKind::Port => "port",
            DenyKind::NonPublic => "non_public_host",
            DenyKind::IpLiteral => "ip_literal",
            DenyKind::NotAllowed => "not_allowed",
        }
    }
}

/// The host policy's answer for one `CONNECT host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDecision {
    /// The tunnel may be opened (the proxy still checks the resolved addresses and the SNI).
    Allow,
    /// Refused.
    Deny {
        /// Which check refused it.
        kind: DenyKind,
        /// A sentence for the client (names the host and the list, never anything secret).
        reason: String,
    },
    /// The host is an LLM provider: its traffic must use the redacting reverse routes, so the
    /// CONNECT is refused and audited as a bypass attempt.
    LlmProvider,
}

/// The merged CONNECT host policy of a [`crate::Policy`]. Immutable; cheap to share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPolicy {
    allow: Vec<HostPattern>,
    deny: Vec<HostPattern>,
    ports: Vec<u16>,
    llm: Vec<HostPattern>,
}

impl Default for ConnectPolicy {
    fn default() -> Self {
        ConnectPolicy::builtin()
    }
}

impl ConnectPolicy {
    /// What a policy without any `[egress]` table gets: any public host name on port 443,
    /// except [`BUILTIN_DENY`] and [`BUILTIN_LLM_HOSTS`].
    pub fn builtin() -> ConnectPolicy {
        EgressSources::default().build()
    }

    /// Builds a policy from `[egress]` TOML tables (each the body of one file's table, as
    /// `(file name, toml text of the whole file)`), for tests and tools. Other tables in the
    /// text are ignored.
    pub fn from_tables(sources: &[(&str, &str)]) -> Result<ConnectPolicy> {
        #[derive(Deserialize)]
        struct Only {
            egress: Option<RawEgress>,
        }
        let mut acc = EgressSources::default();
        for (name, text) in sources {
            let only: Only = toml::from_str(text).map_err(|e| Error::Parse {
                file: (*name).to_owned(),
                message: e.to_string(),
            })?;
            acc.add(name, only.egress)?;
        }
        Ok(acc.build())
    }

    /// The allowed host patterns.
    pub fn allow(&self) -> &[HostPattern] {
        &self.allow
    }

    /// The denied host patterns (built-ins included).
    pub fn deny(&self) -> &[HostPattern] {
        &self.deny
    }

    /// The allowed destination ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The LLM provider host patterns (built-ins included).
    pub fn llm_hosts(&self) -> &[HostPattern] {
        &self.llm
    }

    /// True when `host` is an LLM provider host.
    pub fn is_llm_host(&self, host: &str) -> bool {
        ConnectHost::parse(host).is_some_and(|h| self.llm.iter().any(|p| p.matches(&h)))
    }

    /// Decides `CONNECT host:port`. Order: invalid host → deny; LLM provider (any port) →
    /// [`HostDecision::LlmProvider`]; `connect_deny` → deny; port → deny; non-public name →
    /// deny; IP literal not named exactly in `connect_allow` → deny; `connect_allow` → allow;
    /// otherwise deny.
    pub fn decide_host(&self, host: &str, port: u16) -> HostDecision {
        let deny = |kind: DenyKind, reason: String| HostDecision::Deny { kind, reason };
        let Some(h) = ConnectHost::parse(host) else {
            return deny(
                DenyKind::InvalidHost,
                "the CONNECT host is not a valid host name or IP address".into(),
            );
        };
        if self.llm.iter().any(|p| p.matches(&h)) {
            return HostDecision::LlmProvider;
        }
        if let Some(p) = self.deny.iter().find(|p| p.matches(&h)) {
            return deny(
                DenyKind::DenyList,
                format!("{h} is on the egress deny list ({p})"),
            );
        }
        if !self.ports.contains(&port) {
            return deny(
                DenyKind::Port,
                format!(
                    "port {port} is not an allowed egress port (allowed: {})",
                    self.ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        match &h {
            ConnectHost::Name(name) => {
                if host_kind(name) != HostKind::Public {
                    return deny(
                        DenyKind::NonPublic,
                        format!("{h} is a local, private or metadata host, not a public site"),
                    );
                }
            }
            ConnectHost::Ip(ip) => {
                if host_kind(&ip.to_string()) != HostKind::PublicIp {
                    return deny(
                        DenyKind::NonPublic,
                        format!("{h} is a local, private or metadata address, not a public one"),
                    );
                }
                if !self.allow.iter().any(|p| p.0 == Pat::Ip(*ip)) {
                    return deny(
                        DenyKind::IpLiteral,
                        format!(
                            "{h} is an IP address; tunnels go to host names unless the egress allow list names the address"
                        ),
                    );
                }
                return HostDecision::Allow;
            }
        }
        if self.allow.iter().any(|p| p.matches(&h)) {
            HostDecision::Allow
        } else {
            deny(
                DenyKind::NotAllowed,
                format!("{h} is not on the egress allow list"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml: &str) -> ConnectPolicy {
        ConnectPolicy::from_tables(&[("t.toml", toml)]).unwrap()
    }

    fn kind(d: &HostDecision) -> &'static str {
        match d {
            HostDecision::Allow => "allow",
            HostDecision::LlmProvider => "llm",
            HostDecision::Deny { kind, .. } => kind.as_str(),
        }
    }

    #[test]
    fn builtins_parse() {
        for p in BUILTIN_DENY.iter().chain(BUILTIN_LLM_HOSTS) {
            assert!(HostPattern::parse(p).is_ok(), "{p}");
        }
        let b = ConnectPolicy::builtin();
        assert_eq!(b.deny().len(), BUILTIN_DENY.len());
        assert_eq!(b.llm_hosts().len(), BUILTIN_LLM_HOSTS.len());
        assert_eq!(b.ports(), &[443]);
        assert_eq!(b.allow(), &[HostPattern::any()]);
    }

    #[test]
    fn builtin_decisions() {
        let p = ConnectPolicy::builtin();
        let cases: &[(&str, u16, &str)] = &[
            ("api.github.com", 443, "allow"),
            ("API.GitHub.com.", 443, "allow"),
            ("api.github.com", 80, "port"),
            ("api.anthropic.com", 443, "llm"),
            ("API.ANTHROPIC.COM.", 443, "llm"),
            ("api.anthropic.com", 80, "llm"),
            ("api.openai.com", 443, "llm"),
            ("generativelanguage.googleapis.com", 443, "llm"),
            ("openrouter.ai", 443, "llm"),
            ("eu.openrouter.ai", 443, "llm"),
            ("my-res.openai.azure.com", 443, "llm"),
            ("bedrock-runtime.us-east-1.amazonaws.com", 443, "llm"),
            ("bedrock-runtime.amazonaws.com", 443, "allow"),
            ("s3.us-east-1.amazonaws.com", 443, "allow"),
            ("us-central1-aiplatform.googleapis.com", 443, "llm"),
            ("-aiplatform.googleapis.com", 443, "allow"),
            ("storage.googleapis.com", 443, "allow"),
            ("anthropic.com", 443, "allow"),
            ("docs.anthropic.com", 443, "allow"),
            ("pastebin.com", 443, "deny_list"),
            ("raw.pastebin.com", 443, "deny_list"),
            ("x.y.ngrok.io", 443, "deny_list"),
            ("ngrok.io", 443, "allow"),
            ("localhost", 443, "non_public_host"),
            ("metadata.google.internal", 443, "non_public_host"),
            ("printer", 443, "non_public_host"),
            ("10.0.0.1.nip.io", 443, "non_public_host"),
            ("127.0.0.1", 443, "non_public_host"),
            ("169.254.169.254", 443, "non_public_host"),
            ("[::1]", 443, "non_public_host"),
            ("[::ffff:10.0.0.1]", 443, "non_public_host"),
            ("[fd00:ec2::254]", 443, "non_public_host"),
            ("8.8.8.8", 443, "ip_literal"),
            ("[2606:4700::1111]", 443, "ip_literal"),
            ("127.1", 443, "invalid_host"),
            ("2130706433", 443, "invalid_host"),
            ("0x7f.1", 443, "invalid_host"),
            ("", 443, "invalid_host"),
            ("a..b", 443, "invalid_host"),
            ("evil.com/x", 443, "invalid_host"),
            ("user@evil.com", 443, "invalid_host"),
            ("gіthub.com", 443, "invalid_host"),
            ("xn--gthub-n4a.com", 443, "allow"),
        ];
        for (host, port, want) in cases {
            assert_eq!(kind(&p.decide_host(host, *port)), *want, "{host}:{port}");
        }
    }

    #[test]
    fn patterns() {
        let ok = [
            ("*", "*"),
            ("API.GitHub.com.", "api.github.com"),
            ("*.github.com", "*.github.com"),
            (
                "bedrock-runtime.*.amazonaws.com",
                "bedrock-runtime.*.amazonaws.com",
            ),
            ("*-aiplatform.googleapis.com", "*-aiplatform.googleapis.com"),
            ("203.0.113.7", "203.0.113.7"),
            ("[2001:DB8::1]", "2001:db8::1"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
        ];
        for (raw, shown) in ok {
            assert_eq!(HostPattern::parse(raw).unwrap().to_string(), shown, "{raw}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "a b.com",
            "ex*ample.com",
            "*x*.com",
            "127.1",
            "0x7f.1",
            "10",
            "gіthub.com",
            "a/b",
            "host:443",
            "[1.2.3.4]",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allow_lists_and_ip_literals() {
        let p = policy(
            r#"[egress]
connect_allow = ["api.github.com", "*.githubusercontent.com", "203.0.113.7", "2001:db8::7", "10.0.0.1"]
connect_ports = [443, 8443]"#,
        );
        let cases: &[(&str, u16, &str)] = &[
            ("api.github.com", 443, "allow"),
            ("api.github.com", 8443, "allow"),
            ("api.github.com", 22, "port"),
            ("github.com", 443, "not_allowed"),
            ("raw.githubusercontent.com", 443, "allow"),
            ("githubusercontent.com", 443, "not_allowed"),
            // Named explicitly; the proxy's address filter still refuses documentation ranges.
            ("203.0.113.7", 443, "allow"),
            ("10.0.0.1", 443, "non_public_host"),
            ("pastebin.com", 443, "deny_list"),
            ("api.openai.com", 443, "llm"),
        ];
        for (host, port, want) in cases {
            assert_eq!(kind(&p.decide_host(host, *port)), *want, "{host}:{port}");
        }
        let p = policy(
            r#"[egress]
connect_allow = ["8.8.8.8", "2606:4700::1111"]"#,
        );
        assert_eq!(p.decide_host("8.8.8.8", 443), HostDecision::Allow);
        assert_eq!(p.decide_host("[2606:4700::1111]", 443), HostDecision::Allow);
        assert_eq!(p.decide_host("[::ffff:8.8.8.8]", 443), HostDecision::Allow);
        assert_eq!(kind(&p.decide_host("8.8.4.4", 443)), "ip_literal");
        assert_eq!(kind(&p.decide_host("dns.google", 443)), "not_allowed");
    }

    #[test]
    fn merging_never_drops_denials() {
        let p = ConnectPolicy::from_tables(&[
            (
                "a.toml",
                "[egress]\nconnect_allow = [\"*.example.com\"]\nconnect_deny = [\"bad.example.com\"]\nllm_hosts = [\"llm.example.com\"]\nconnect_ports = [8443]",
            ),
            (
                "b.toml",
                "[egress]\nconnect_allow = [\"*\"]\nconnect_deny = []\nllm_hosts = []\nconnect_ports = [443]",
            ),
            ("c.toml", "[settings]\n"),
        ])
        .unwrap();
        let cases: &[(&str, u16, &str)] = &[
            ("bad.example.com", 443, "deny_list"),
            ("llm.example.com", 443, "llm"),
            ("api.anthropic.com", 443, "llm"),
            ("pastebin.com", 443, "deny_list"),
            ("ok.example.com", 8443, "allow"),
            ("docs.rs", 443, "allow"),
            ("docs.rs", 80, "port"),
        ];
        for (host, port, want) in cases {
            assert_eq!(kind(&p.decide_host(host, *port)), *want, "{host}:{port}");
        }
    }

    #[test]
    fn empty_lists_allow_nothing() {
        let p = policy("[egress]\nconnect_allow = []");
        assert_eq!(kind(&p.decide_host("docs.rs", 443)), "not_allowed");
        let p = policy("[egress]\nconnect_ports = []");
        assert_eq!(kind(&p.decide_host("docs.rs", 443)), "port");
        let p = policy("[egress]\nconnect_deny = [\"*\"]");
        assert_eq!(kind(&p.decide_host("docs.rs", 443)), "deny_list");
        assert_eq!(kind(&p.decide_host("api.openai.com", 443)), "llm");
    }

    #[test]
    fn bad_tables_are_refused() {
        for bad in [
            "[egress]\nconnect_allow = [\"a b\"]",
            "[egress]\nconnect_ports = [0]",
            "[egress]\nconnect_ports = [70000]",
            "[egress]\nconnect_port = [443]",
            "[egress]\nconnect_allow = \"*\"",
        ] {
            let e = ConnectPolicy::from_tables(&[("x.toml", bad)]).unwrap_err();
            assert!(e.to_string().contains("x.toml"), "{bad}: {e}");
        }
    }

    #[test]
    fn deny_reason_names_host_and_list() {
        let HostDecision::Deny { reason, .. } =
            ConnectPolicy::builtin().decide_host("raw.pastebin.com", 443)
        else {
            panic!("not denied");
        };
        assert!(reason.contains("raw.pastebin.com") && reason.contains("*.pastebin.com"));
    }

    #[test]
    fn the_default_policy_has_llm_hosts_and_deny_lists() {
        let policy = crate::Policy::default_policy().unwrap();
        let c = policy.connect_policy();
        for host in [
            "api.anthropic.com",
            "api.openai.com",
            "generativelanguage.googleapis.com",
            "openrouter.ai",
            "api.mistral.ai",
            "api.groq.com",
            "api.together.xyz",
            "api.x.ai",
            "api.deepseek.com",
            "api.cohere.ai",
            "api.cohere.com",
            "contoso.openai.azure.com",
            "bedrock-runtime.eu-west-1.amazonaws.com",
        ] {
            assert_eq!(
                c.decide_host(host, 443),
                HostDecision::LlmProvider,
                "{host}"
            );
            assert!(c.is_llm_host(host), "{host}");
        }
        for host in [
            "pastebin.com",
            "webhook.site",
            "abc.ngrok-free.app",
            "x.trycloudflare.com",
            "file.io",
            "abc.oastify.com",
        ] {
            assert_eq!(kind(&c.decide_host(host, 443)), "deny_list", "{host}");
        }
        for host in [
            "api.github.com",
            "pypi.org",
            "registry.npmjs.org",
            "docs.rs",
        ] {
            assert_eq!(c.decide_host(host, 443), HostDecision::Allow, "{host}");
        }
        assert_eq!(c.ports(), &[443]);
    }

    #[test]
    fn a_policy_without_an_egress_table_gets_the_builtins() {
        let policy = crate::Policy::from_sources(&[("a.toml", "[settings]\n")]).unwrap();
        assert_eq!(*policy.connect_policy(), ConnectPolicy::builtin());
        let c = policy.connect_policy();
        assert_eq!(
            c.decide_host("api.anthropic.com", 443),
            HostDecision::LlmProvider
        );
        assert_eq!(kind(&c.decide_host("pastebin.com", 443)), "deny_list");
        assert_eq!(c.decide_host("docs.rs", 443), HostDecision::Allow);
    }

    #[test]
    fn a_bad_egress_table_refuses_the_whole_policy() {
        let e = crate::Policy::from_sources(&[(
            "net.toml",
            "[egress]\nconnect_allow = [\"bad host\"]\n",
        )])
        .unwrap_err();
        assert!(
            matches!(e, Error::Parse { ref file, .. } if file == "net.toml"),
            "{e}"
        );
        let e = crate::Policy::from_sources(&[("net.toml", "[egress]\nallow = []\n")]).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
