//! A secret's scope: which tools may receive it and which hosts it may be sent to.
//!
//! Deny by default: an empty `tools` list means no tool may receive the secret, an empty `hosts`
//! list means it may not be sent to any network destination. `"*"` allows any tool or host.
//! Host patterns are exact lower-case names or IP literals, or `*.example.com` for strict
//! subdomains. Non-ASCII hosts must be given in their punycode (`xn--`) form, so a lookalike
//! cannot hide in a scope.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Wildcard for "any tool" or "any host".
pub const ANY: &str = "*";

/// Where a secret may go. Stored canonical (sorted, deduplicated, lower-case hosts) and bound
/// into each record's associated data, so it cannot be widened without the key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Canonical tool names (`exec`, `web_fetch`, `github__create_issue`) or `*`.
    pub tools: Vec<String>,
    /// Destination host patterns or `*`.
    pub hosts: Vec<String>,
}

/// The call a secret is being resolved into.
#[derive(Debug, Clone, Copy)]
pub struct ResolveContext<'a> {
    /// Canonical name of the tool that will receive the value.
    pub tool: &'a str,
    /// Every network destination the call reaches, as hosts. Empty when the call has none
    /// (the caller must pass every host it can determine).
    pub hosts: &'a [String],
}

impl Scope {
    /// Validates and canonicalises `tools` and `hosts`.
    pub fn new(
        tools: impl IntoIterator<Item = impl AsRef<str>>,
        hosts: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Self> {
        let mut tools = tools
            .into_iter()
            .map(|t| canonical_tool(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let mut hosts = hosts
            .into_iter()
            .map(|h| canonical_host_pattern(h.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        tools.sort();
        tools.dedup();
        hosts.sort();
        hosts.dedup();
        Ok(Self { tools, hosts })
    }

    /// The canonical JSON form stored and authenticated with the record.
    pub(crate) fn to_json(&self) -> String {
        // Serialising two Vec<String> cannot fail; an empty object would fail verification later.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a stored scope and insists it is canonical.
    pub(crate) fn from_json(json: &str) -> Result<Self> {
        let parsed: Self = serde_json::from_str(json)
            .map_err(|e| Error::tampered(format!("a stored scope ({e})")))?;
        let canonical = Self::new(&parsed.tools, &parsed.hosts)?;
        if canonical != parsed {
            return Err(Error::tampered("a stored scope (not canonical)"));
        }
        Ok(parsed)
    }

    /// Checks a resolution against this scope; the error names the rule that refused.
    pub fn check(&self, ctx: &ResolveContext<'_>) -> std::result::Result<(), String> {
        if !self.tools.iter().any(|t| t == ANY || t == ctx.tool) {
            return Err(format!(
                "tool `{}` is not in its scope (allowed tools: {})",
                ctx.tool,
                list(&self.tools)
            ));
        }
        for host in ctx.hosts {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            if !self.hosts.iter().any(|p| host_matches(p, &host)) {
                return Err(format!(
                    "host `{host}` is not in its scope (allowed hosts: {})",
                    list(&self.hosts)
                ));
            }
        }
        Ok(())
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        _ if pattern == ANY => true,
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host[..host.len() - suffix.len()].ends_with('.')
        }
        None => pattern == host,
    }
}

fn canonical_tool(tool: &str) -> Result<String> {
    let ok = tool == ANY
        || (!tool.is_empty()
            && tool.len() <= 128
            && tool
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)));
    if ok {
        Ok(tool.to_owned())
    } else {
        Err(Error::InvalidScope(format!("`{tool}` is not a tool name")))
    }
}

fn canonical_host_pattern(pattern: &str) -> Result<String> {
    if pattern == ANY {
        return Ok(ANY.to_owned());
    }
    let bad = |why: &str| {
        Err(Error::InvalidScope(format!(
            "`{pattern}` is not a host pattern: {why}"
        )))
    };
    if !pattern.is_ascii() {
        return bad("use the punycode (xn--) form of international names");
    }
    let lower = pattern.trim_end_matches('.').to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    if name.parse::<std::net::IpAddr>().is_ok() || (name.starts_with('[') && name.ends_with(']')) {
        return if wild {
            bad("an IP address cannot have a wildcard")
        } else {
            Ok(lower)
        };
    }
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !labels_ok {
        return bad("expected a DNS name such as api.stripe.com or *.stripe.com");
    }
    if wild && !name.contains('.') {
        return bad("a wildcard needs at least two labels after `*.`");
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(tool: &'a str, hosts: &'a [String]) -> ResolveContext<'a> {
        ResolveContext { tool, hosts }
    }

    #[test]
    fn scope_checks_table() {
        let stripe = Scope::new(["web_fetch", "exec"], ["api.stripe.com", "*.stripe.net"]).unwrap();
        let h = |s: &str| vec![s.to_owned()];
        let cases: &[(&Scope, &str, Vec<String>, bool)] = &[
            (&stripe, "web_fetch", h("api.stripe.com"), true),
            (&stripe, "web_fetch", h("API.Stripe.COM."), true),
            (&stripe, "web_fetch", h("a.b.stripe.net"), true),
            (&stripe, "web_fetch", h("stripe.net"), false),
            (&stripe, "web_fetch", h("evilstripe.net"), false),
            (
                &stripe,
                "web_fetch",
                h("api.stripe.com.evil.example"),
                false,
            ),
            (&stripe, "web_fetch", h("evil.example"), false),
            (&stripe, "exec", vec![], true),
            (&stripe, "message", vec![], false),
            (
                &stripe,
                "web_fetch",
                vec!["api.stripe.com".into(), "evil.example".into()],
                false,
            ),
        ];
        for (scope, tool, hosts, want) in cases {
            assert_eq!(
                scope.check(&ctx(tool, hosts)).is_ok(),
                *want,
                "{tool} {hosts:?}"
            );
        }
        let empty = Scope::default();
        assert!(
            empty.check(&ctx("exec", &[])).is_err(),
            "empty scope allows nothing"
        );
        let any = Scope::new([ANY], [ANY]).unwrap();
        assert!(any.check(&ctx("exec", &h("x.example"))).is_ok());
    }

    #[test]
    fn patterns_are_validated_and_canonical() {
        let s = Scope::new(["exec", "exec"], ["B.example.", "a.example"]).unwrap();
        assert_eq!(s.tools, ["exec"]);
        assert_eq!(s.hosts, ["a.example", "b.example"]);
        for bad in [
            "",
            "exa mple.com",
            "*.com",
            "*.1.2.3.4",
            "bücher.example",
            "-a.example",
            "a..b",
        ] {
            assert!(Scope::new(Vec::<String>::new(), [bad]).is_err(), "{bad}");
        }
        assert!(Scope::new(["rm -rf"], Vec::<String>::new()).is_err());
        assert!(Scope::new(Vec::<String>::new(), ["10.0.0.1", "[::1]"]).is_ok());
        assert_eq!(Scope::from_json(&s.to_json()).unwrap(), s);
        assert!(
            Scope::from_json(r#"{"tools":["exec","a"],"hosts":[]}"#).is_err(),
            "non-canonical order refused"
        );
    }
}
