//! URL and host classification for `web_fetch`, `browser`, `curl` and friends.
//!
//! The parser follows the WHATWG URL rules where they matter for security: the host is what
//! follows the *last* `@` of the authority, `\` ends the authority like `/`, IPv4 hosts may be
//! written in decimal, hex or octal with one to four parts, and IPv6 may embed IPv4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::class::Class;

/// What a URL's host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// An ordinary public host name.
    Public,
    /// A public IP literal.
    PublicIp,
    /// Cloud metadata endpoints (169.254.169.254 and friends).
    Metadata,
    /// Loopback (`localhost`, 127/8, ::1, 0.0.0.0).
    Loopback,
    /// Link-local addresses.
    LinkLocal,
    /// Private, CGNAT, unique-local and intranet-looking names.
    Private,
}

/// A parsed URL, reduced to what classification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlInfo {
    /// Lower-cased scheme.
    pub scheme: String,
    /// IDNA-normalised (ASCII) host, without brackets or trailing dot.
    pub host: String,
    /// What the host is.
    pub kind: HostKind,
    /// The authority carried `user[:password]@`.
    pub userinfo: bool,
    /// The host has a punycode (`xn--`) label: possible lookalike.
    pub punycode: bool,
    /// Path, query and fragment as written.
    pub rest: String,
}

/// Why a URL could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUrl(pub &'static str);

/// Parses `raw`. URLs without a scheme are read as `http://` (as curl does).
pub fn parse(raw: &str) -> Result<UrlInfo, BadUrl> {
    let raw = raw.trim();
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(BadUrl("control or space characters in URL"));
    }
    let (scheme, after) = match raw.find("://") {
        Some(i)
            if raw[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (raw[..i].to_ascii_lowercase(), &raw[i + 3..])
        }
        _ => match raw.split_once(':') {
            Some((s, _))
                if matches!(
                    s.to_ascii_lowercase().as_str(),
                    "file" | "data" | "javascript" | "about" | "blob" | "view-source"
                ) =>
            {
                return Ok(UrlInfo {
                    scheme: s.to_ascii_lowercase(),
                    host: String::new(),
                    kind: HostKind::Private,
                    userinfo: false,
                    punycode: false,
                    rest: String::new(),
                });
            }
            _ => ("http".to_owned(), raw),
        },
    };
    let end = after.find(['/', '?', '#', '\\']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (true, &authority[i + 1..]),
        None => (false, authority),
    };
    let host_raw = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
    };
    if host_raw.is_empty() {
        if scheme == "file" {
            return Ok(UrlInfo {
                scheme,
                host: String::new(),
                kind: HostKind::Private,
                userinfo,
                punycode: false,
                rest: rest.to_owned(),
            });
        }
        return Err(BadUrl("URL has no host"));
    }
    if host_raw.contains('%') {
        return Err(BadUrl("percent-encoded host"));
    }
    let host = if hostport.starts_with('[') {
        host_raw.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(host_raw).map_err(|_| BadUrl("host is not a valid domain name"))?
    };
    let host = host.trim_end_matches('.').to_owned();
    let punycode = host.split('.').any(|l| l.starts_with("xn--"));
    let kind = host_kind(&host);
    Ok(UrlInfo {
        scheme,
        host,
        kind,
        userinfo,
        punycode,
        rest: rest.to_owned(),
    })
}

/// Classifies a host (already lower-case ASCII).
pub fn host_kind(host: &str) -> HostKind {
    if let Some(ip) = parse_ip(host) {
        return ip_kind(ip);
    }
    const METADATA: [&str; 5] = [
        "metadata.google.internal",
        "metadata",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    ];
    if METADATA.contains(&host) {
        return HostKind::Metadata;
    }
    if host == "localhost" || host.ends_with(".localhost") || host == "ip6-localhost" {
        return HostKind::Loopback;
    }
    // Wildcard DNS services resolve names that embed an address to that address: treat them
    // as the intranet, not the internet.
    const REBIND: [&str; 6] = [
        ".nip.io",
        ".sslip.io",
        ".xip.io",
        ".localtest.me",
        ".lvh.me",
        ".traefik.me",
    ];
    if !host.contains('.')
        || [
            ".internal",
            ".local",
            ".lan",
            ".home.arpa",
            ".corp",
            ".intranet",
        ]
        .iter()
        .chain(REBIND.iter())
        .any(|s| host.ends_with(s))
    {
        return HostKind::Private;
    }
    HostKind::Public
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    if host.contains(':') {
        let v6: Ipv6Addr = host.split('%').next()?.parse().ok()?;
        // IPv4-mapped and IPv4-compatible forms reach the IPv4 address.
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Some(IpAddr::V4(v4));
        }
        let seg = v6.segments();
        if seg[..6].iter().all(|s| *s == 0) && !v6.is_loopback() && !v6.is_unspecified() {
            return v6.to_ipv4().map(IpAddr::V4);
        }
        return Some(IpAddr::V6(v6));
    }
    parse_ipv4_whatwg(host).map(IpAddr::V4)
}

/// WHATWG IPv4 parsing: 1-4 dot-separated numbers, each decimal, `0x` hex or `0` octal; the
/// last number fills the remaining bytes (`2130706433`, `0x7f.1`, `0177.0.0.1`).
pub fn parse_ipv4_whatwg(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        nums.push(parse_ipv4_number(p)?);
    }
    let (last, init) = nums.split_last()?;
    if init.iter().any(|n| *n > 255) {
        return None;
    }
    let last_bytes = 5 - nums.len();
    if *last >= 256u64.pow(last_bytes as u32) {
        return None;
    }
    let mut value: u64 = 0;
    for (i, n) in init.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    value += last;
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn parse_ipv4_number(p: &str) -> Option<u64> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn ip_kind(ip: IpAddr) -> HostKind {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if o == [169, 254, 169, 254] || o == [169, 254, 170, 2] || o == [100, 100, 100, 200] {
                HostKind::Metadata
            } else if v4.is_loopback() || v4.is_unspecified() {
                HostKind::Loopback
            } else if v4.is_link_local() {
                HostKind::LinkLocal
            } else if v4.is_private()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
            {
                HostKind::Private
            } else {
                HostKind::PublicIp
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
                HostKind::Metadata
            } else if v6.is_loopback() || v6.is_unspecified() {
                HostKind::Loopback
            } else if s[0] & 0xffc0 == 0xfe80 {
                HostKind::LinkLocal
            } else if s[0] & 0xfe00 == 0xfc00 || v6.is_multicast() {
                HostKind::Private
            } else {
                HostKind::PublicIp
            }
        }
    }
}

/// Findings for a URL, as `(class, rule, reason)`, for a tool that only reads (`web_fetch`,
/// browser navigation). Public hosts are `yellow`: reading documentation must stay quiet.
/// True for loopback URLs that reach OpenClaw's gateway control plane (ports 18789/18790 by
/// default) or anything that looks like Clawgate's admin, approval or hook API: the agent may
/// never call these, whichever tool it uses.
pub(crate) fn is_self_endpoint(raw: &str, u: &UrlInfo) -> bool {
    if u.kind != HostKind::Loopback {
        return false;
    }
    let rest = u.rest.to_ascii_lowercase();
    raw.contains(":18789")
        || raw.contains(":18790")
        || ["approv", "admin", "clawgate", "/hook"]
            .iter()
            .any(|k| rest.contains(k))
}

/// The finding for [`is_self_endpoint`].
pub(crate) const SELF_ENDPOINT: (Class, &str, &str) = (
    Class::Critical,
    "url.self_endpoint",
    "the agent may not call Clawgate's or OpenClaw's local admin or approval endpoints",
);

pub(crate) fn fetch_findings(raw: &str) -> Vec<(Class, &'static str, String)> {
    let mut out = Vec::new();
    match parse(raw) {
        Err(BadUrl(why)) => out.push((
            Class::Red,
            "url.unparseable",
            format!("the URL could not be understood ({why}); use a plain https:// URL"),
        )),
        Ok(u) => {
            if !matches!(u.scheme.as_str(), "http" | "https") {
                out.push((
                    Class::Red,
                    "url.scheme",
                    format!("the {}: scheme is not web browsing; only http(s) URLs are allowed without approval", u.scheme),
                ));
            }
            if u.userinfo {
                out.push((
                    Class::Red,
                    "url.userinfo",
                    format!(
                        "the URL hides its real host {} behind user@ info; write the host plainly",
                        u.host
                    ),
                ));
            }
            if u.punycode {
                out.push((
                    Class::Red,
                    "url.punycode",
                    format!("host {} uses internationalised (punycode) labels that can imitate another site", u.host),
                ));
            }
            if is_self_endpoint(raw, &u) {
                let (class, rule, reason) = SELF_ENDPOINT;
                out.push((class, rule, reason.to_owned()));
            }
            if let Some(f) = host_finding(&u) {
                out.push(f);
            }
            if out.is_empty() {
                out.push((
                    Class::Yellow,
                    "url.public",
                    format!("reads from public host {}", u.host),
                ));
            }
        }
    }
    out
}

/// Class for the host alone (metadata, loopback, private...), `None` for public names.
pub(crate) fn host_finding(u: &UrlInfo) -> Option<(Class, &'static str, String)> {
    match u.kind {
        HostKind::Metadata => Some((
            Class::Critical,
            "url.metadata",
            format!(
                "{} is a cloud metadata endpoint that hands out machine credentials",
                u.host
            ),
        )),
        HostKind::LinkLocal => Some((
            Class::Red,
            "url.link_local",
            format!("{} is a link-local address, not a public site", u.host),
        )),
        HostKind::Private => Some((
            Class::Red,
            "url.private",
            format!(
                "{} is a private or intranet address; only public hosts are allowed without approval",
                u.host
            ),
        )),
        HostKind::Loopback => Some((
            Class::Red,
            "url.loopback",
            format!(
                "{} is this machine itself; local services are not reachable without approval",
                u.host
            ),
        )),
        HostKind::PublicIp | HostKind::Public => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_kinds() {
        let cases = [
            ("http://169.254.169.254/latest", HostKind::Metadata),
            ("http://2852039166/", HostKind::Metadata),
            ("http://0xa9fea9fe/", HostKind::Metadata),
            ("http://0251.0376.0251.0376/", HostKind::Metadata),
            ("http://169.254.43518/", HostKind::Metadata),
            ("http://[::ffff:169.254.169.254]/", HostKind::Metadata),
            ("http://[::ffff:a9fe:a9fe]/", HostKind::Metadata),
            ("http://[fd00:ec2::254]/", HostKind::Metadata),
            ("http://metadata.google.internal/x", HostKind::Metadata),
            ("http://127.1/", HostKind::Loopback),
            ("http://0/", HostKind::Loopback),
            ("http://[::1]:8080/", HostKind::Loopback),
            ("http://localhost:3000", HostKind::Loopback),
            ("http://10.0.0.5/", HostKind::Private),
            ("http://192.168.1.1/", HostKind::Private),
            ("http://172.16.0.1/", HostKind::Private),
            ("http://printer/", HostKind::Private),
            ("http://10.0.0.1.nip.io/", HostKind::Private),
            ("https://docs.rs/regex", HostKind::Public),
            ("https://8.8.8.8/", HostKind::PublicIp),
            ("example.com/x", HostKind::Public),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw).map(|u| u.kind), Ok(want), "{raw}");
        }
    }

    #[test]
    fn userinfo_and_idna() {
        let u = parse("https://api.github.com@evil.example/x").unwrap();
        assert!(u.userinfo);
        assert_eq!(u.host, "evil.example");
        let u = parse("https://evil.example\\@api.github.com/").unwrap();
        assert_eq!(u.host, "evil.example");
        let u = parse("https://gіthub.com/").unwrap();
        assert!(u.punycode, "{}", u.host);
        let u = parse("HTTPS://Docs.RS./x").unwrap();
        assert_eq!((u.scheme.as_str(), u.host.as_str()), ("https", "docs.rs"));
        assert!(parse("http://%31%32%37.0.0.1/").is_err());
        assert_eq!(parse("file:///etc/passwd").unwrap().scheme, "file");
    }
}
