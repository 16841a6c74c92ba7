//! What the proxy needs to know: where it listens, where each route goes, and its limits.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::uri::{Authority, Scheme};

use crate::error::{Error, Result};
use crate::prices::Prices;

/// An LLM provider, one reverse route each: `/anthropic/*`, `/openai/*`, `/gemini/*`,
/// `/openrouter/*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Provider {
    /// Anthropic Messages API (`x-api-key`, errors `{"type":"error","error":{…}}`).
    Anthropic,
    /// OpenAI: chat completions, Responses, everything else under `/v1` (`Authorization: Bearer`).
    OpenAi,
    /// Google Gemini (Generative Language API; `x-goog-api-key`, errors `{"error":{"code",…}}`).
    Gemini,
    /// OpenRouter (OpenAI-compatible, `Authorization: Bearer`).
    OpenRouter,
}

impl Provider {
    /// Every provider, in route order.
    pub const ALL: [Provider; 4] = [
        Provider::Anthropic,
        Provider::OpenAi,
        Provider::Gemini,
        Provider::OpenRouter,
    ];

    /// The route name: the first path segment (`anthropic`, `openai`, `gemini`, `openrouter`),
    /// also the `provider` column of the usage table and the `route` metric label.
    pub fn route(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::OpenAi => "openai",
            Provider::Gemini => "gemini",
            Provider::OpenRouter => "openrouter",
        }
    }

    /// The provider whose route is `name`.
    pub fn from_route(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.route() == name)
    }

    /// The real provider's base URL.
    pub fn default_upstream(self) -> &'static str {
        match self {
            Provider::Anthropic => "https://api.anthropic.com",
            Provider::OpenAi => "https://api.openai.com",
            Provider::Gemini => "https://generativelanguage.googleapis.com",
            Provider::OpenRouter => "https://openrouter.ai/api",
        }
    }

    /// The name people know it by, for error messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Anthropic => "Anthropic",
            Provider::OpenAi => "OpenAI",
            Provider::Gemini => "Gemini",
            Provider::OpenRouter => "OpenRouter",
        }
    }

    fn index(self) -> usize {
        match self {
            Provider::Anthropic => 0,
            Provider::OpenAi => 1,
            Provider::Gemini => 2,
            Provider::OpenRouter => 3,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.route())
    }
}

/// A parsed upstream base URL: scheme, host and port, and a path prefix (no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
}

impl Upstream {
    /// Parses `url`. `https` anywhere; plain `http` only to a loopback host (a test fake),
    /// because the real provider key travels in a header. No query, fragment or user info.
    pub fn parse(url: &str) -> Result<Upstream> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Error::Config(format!("upstream URL {url:?}: {e}")))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| Error::Config(format!("upstream URL {url:?} has no scheme")))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| Error::Config(format!("upstream URL {url:?} has no host")))?;
        if authority.as_str().contains('@') {
            return Err(Error::Config(format!(
                "upstream URL {url:?} must not carry user info"
            )));
        }
        if uri.query().is_some() {
            return Err(Error::Config(format!(
                "upstream URL {url:?} must not have a query"
            )));
        }
        if scheme == Scheme::HTTP {
            if !is_loopback_host(authority.host()) {
                return Err(Error::Config(format!(
                    "upstream URL {url:?}: plain http is allowed only to a loopback host (the real key would travel in clear)"
                )));
            }
        } else if scheme != Scheme::HTTPS {
            return Err(Error::Config(format!(
                "upstream URL {url:?}: scheme must be https (or http to loopback)"
            )));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Upstream {
            scheme,
            authority,
            base_path,
        })
    }

    /// The full upstream URI for `rest` (the path after the route, starting with `/` or empty)
    /// and an optional query (without `?`).
    pub(crate) fn uri(&self, rest: &str, query: Option<&str>) -> Result<http::Uri> {
        let mut path = String::with_capacity(self.base_path.len() + rest.len() + 32);
        path.push_str(&self.base_path);
        path.push_str(rest);
        if path.is_empty() {
            path.push('/');
        }
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the upstream URI: {e}")))
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &str {
        self.scheme.as_str()
    }

    /// Host and port.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }
}

fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Daily budgets (UTC days), in tokens, in cost, or both (either one refuses). A request is
/// refused with 429 once an agent's tokens today (input + output + cache read + cache write,
/// every provider) or its cost today (those tokens at [`EgressConfig::prices`]) reach its
/// budget. Usage is known only after a response, so the request that crosses a budget
/// completes: the refusal starts with the next one. An agent with a cost budget cannot use a
/// model that has no price (refused, `model_unpriced`): its cost could not be counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budgets {
    /// Token budget of every agent without its own entry; `None`: unlimited.
    pub default_daily_tokens: Option<u64>,
    /// Per-agent token budgets, by agent id; they win over the default.
    pub per_agent: HashMap<String, u64>,
    /// Cost budget, in micro-dollars, of every agent without its own entry; `None`: unlimited.
    pub default_daily_cost_micros: Option<u64>,
    /// Per-agent cost budgets in micro-dollars, by agent id; they win over the default.
    pub per_agent_cost_micros: HashMap<String, u64>,
}

impl Budgets {
    /// The daily token budget of `agent`, if any.
    pub fn limit_for(&self, agent: &str) -> Option<u64> {
        self.per_agent
            .get(agent)
            .copied()
            .or(self.default_daily_tokens)
    }

    /// The daily cost budget of `agent` in micro-dollars, if any.
    pub fn cost_limit_for(&self, agent: &str) -> Option<u64> {
        self.per_agent_cost_micros
            .get(agent)
            .copied()
            .or(self.default_daily_cost_micros)
    }
}

/// The proxy's configuration. [`EgressConfig::default`] gives the real providers and the
/// defaults; [`EgressConfig::with_upstream`] points a route elsewhere (tests: a local fake).
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// Where [`crate::Egress::bind`] listens; must be a loopback address. Default 127.0.0.1:8787.
    pub listen: SocketAddr,
    upstreams: [Upstream; 4],
    /// Largest request body accepted, after decompression too (413 above). Default 8 MiB.
    pub max_body: usize,
    /// Daily budgets.
    pub budgets: Budgets,
    /// Model prices, for cost budgets. Default: empty (every model unpriced); the daemon uses
    /// [`Prices::builtin`] with the operator's overrides.
    pub prices: Prices,
    /// Time allowed to receive a whole request body (408 after). Default 60 s.
    pub body_timeout: Duration,
    /// Time allowed to receive the request head (slow clients are disconnected). Default 30 s.
    pub header_timeout: Duration,
    /// Time allowed to connect (TCP and TLS) to an upstream. Default 10 s.
    pub connect_timeout: Duration,
    /// Idle pooled upstream connections are closed after this. Default 90 s.
    pub pool_idle_timeout: Duration,
    /// After shutdown is signalled, open responses (streams) get this long to finish before
    /// their connections are dropped (and metered). Default 30 s.
    pub shutdown_grace: Duration,
    /// Most client connections served at once; more wait in the listen backlog. Default 512.
    pub max_connections: usize,
    /// Most bytes of one response kept for usage parsing (a JSON body, or one SSE event);
    /// beyond it the response is still forwarded whole, but its usage is marked incomplete.
    /// Default 16 MiB.
    pub max_usage_buffer: usize,
    /// Bytes of remembered redactions of long JSON strings (agents resend their history every
    /// turn; only new content is scanned). Emptied whenever the redactor changes. 0 disables.
    /// Default 8 MiB.
    pub redaction_cache_bytes: usize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        let upstreams = Provider::ALL.map(|p| Upstream {
            scheme: Scheme::HTTPS,
            authority: Authority::from_static(match p {
                Provider::Anthropic => "api.anthropic.com",
                Provider::OpenAi => "api.openai.com",
                Provider::Gemini => "generativelanguage.googleapis.com",
                Provider::OpenRouter => "openrouter.ai",
            }),
            base_path: match p {
                Provider::OpenRouter => "/api".to_owned(),
                _ => String::new(),
            },
        });
        EgressConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8787),
            upstreams,
            max_body: 8 * 1024 * 1024,
            budgets: Budgets::default(),
            prices: Prices::default(),
            body_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            shutdown_grace: Duration::from_secs(30),
            max_connections: 512,
            max_usage_buffer: 16 * 1024 * 1024,
            redaction_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

impl EgressConfig {
    /// Points `provider`'s route at `url` (see [`Upstream::parse`] for what is accepted).
    pub fn with_upstream(mut self, provider: Provider, url: &str) -> Result<Self> {
        self.set_upstream(provider, url)?;
        Ok(self)
    }

    /// Points `provider`'s route at `url`.
    pub fn set_upstream(&mut self, provider: Provider, url: &str) -> Result<()> {
        self.upstreams[provider.index()] = Upstream::parse(url)?;
        Ok(())
    }

    /// Where `provider`'s route goes.
    pub fn upstream(&self, provider: Provider) -> &Upstream {
        &self.upstreams[provider.index()]
    }

    /// Checks the values that have a meaning beyond their type.
    pub fn validate(&self) -> Result<()> {
        if !self.listen.ip().is_loopback() {
            return Err(Error::Config(format!(
                "the egress proxy must listen on a loopback address, not {}",
                self.listen
            )));
        }
        if self.max_body == 0 || self.max_usage_buffer == 0 || self.max_connections == 0 {
            return Err(Error::Config(
                "max_body, max_usage_buffer and max_connections must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_the_real_providers() {
        let c = EgressConfig::default();
        for p in Provider::ALL {
            let u = c.upstream(p);
            let want = Upstream::parse(p.default_upstream()).unwrap();
            assert_eq!(u, &want, "{p}");
        }
        assert_eq!(
            c.upstream(Provider::OpenRouter)
                .uri("/v1/chat/completions", None)
                .unwrap()
                .to_string(),
            "https://openrouter.ai/api/v1/chat/completions"
        );
        c.validate().unwrap();
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:9000",
            "http://localhost:1/x/",
            "http://[::1]:80",
            "https://example.com/base",
        ] {
            Upstream::parse(ok).unwrap();
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1:80",
            "ftp://127.0.0.1",
            "https://u:p@example.com",
            "https://example.com/?a=b",
            "/relative",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uri_joins_base_rest_and_query() {
        let u = Upstream::parse("http://127.0.0.1:9/base/").unwrap();
        assert_eq!(
            u.uri("/v1/x", Some("alt=sse")).unwrap().to_string(),
            "http://127.0.0.1:9/base/v1/x?alt=sse"
        );
        let root = Upstream::parse("http://127.0.0.1:9").unwrap();
        assert_eq!(
            root.uri("", None).unwrap().to_string(),
            "http://127.0.0.1:9/"
        );
    }

    #[test]
    fn budgets_per_agent_win() {
        let mut b = Budgets {
            default_daily_tokens: Some(10),
            ..Budgets::default()
        };
        b.per_agent.insert("big".into(), 1000);
        assert_eq!(b.limit_for("big"), Some(1000));
        assert_eq!(b.limit_for("other"), Some(10));
        assert_eq!(Budgets::default().limit_for("x"), None);
        assert_eq!(
            b.cost_limit_for("big"),
            None,
            "token and cost budgets are apart"
        );
        b.default_daily_cost_micros = Some(5_000_000);
        b.per_agent_cost_micros.insert("big".into(), 20_000_000);
        assert_eq!(b.cost_limit_for("big"), Some(20_000_000));
        assert_eq!(b.cost_limit_for("other"), Some(5_000_000));
        assert_eq!(b.limit_for("other"), Some(10));
    }

    #[test]
    fn listen_must_be_loopback() {
        let c = EgressConfig {
            listen: "0.0.0.0:8787".parse().unwrap(),
            ..EgressConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
