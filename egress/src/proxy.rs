//! The proxy's phases for one request (pingora's shape): select the upstream and the agent →
//! check the budgets (`budget.rs`) → read, decode and redact the body → check the model has a
//! price if a cost budget applies → call the upstream with the real key → stream the response
//! back through the metering tap.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use clawgate_protocol::SecretString;
use http::request::Parts;
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Version};

use crate::body::{End, Meter, MeterData, ProxyBody};
use crate::budget::{self, Limits};
use crate::cache::RedactionCache;
use crate::client;
use crate::config::{Budgets, EgressConfig, Provider};
use crate::error::{Error, Refusal, Result, Side};
use crate::metrics::{Metrics, RedactionLabels, RequestLabels, RouteLabels};
use crate::prices::Prices;
use crate::reply::refusal_response;
use crate::request::{self, Prepared};
use crate::seams::{ProviderKeys, RedactorSource, Tokens};
use crate::store::{UNKNOWN_MODEL, UsageStore, unix_now};
use crate::usage::Tap;

/// Bodies larger than this are redacted on the blocking pool rather than on a runtime worker.
const BLOCKING_REDACTION: usize = 256 * 1024;

/// The egress proxy. Cheap to clone; every clone shares the upstream pool, the usage store and
/// the metrics.
#[derive(Clone, Debug)]
pub struct Egress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: EgressConfig,
    tokens: Arc<dyn Tokens>,
    keys: Arc<dyn ProviderKeys>,
    redactor: Arc<dyn RedactorSource>,
    store: UsageStore,
    metrics: Arc<Metrics>,
    client: client::Upstream,
    cache: Arc<RedactionCache>,
    /// Budgets and prices: `config`'s at first, replaced by [`Egress::set_limits`].
    limits: RwLock<Arc<Limits>>,
}

/// Builds an [`Egress`]: every seam is required except the metrics.
#[derive(Debug)]
pub struct EgressBuilder {
    config: EgressConfig,
    tokens: Option<Arc<dyn Tokens>>,
    keys: Option<Arc<dyn ProviderKeys>>,
    redactor: Option<Arc<dyn RedactorSource>>,
    store: Option<UsageStore>,
    metrics: Option<Arc<Metrics>>,
}

impl EgressBuilder {
    /// Who the agent tokens belong to.
    pub fn tokens(mut self, t: Arc<dyn Tokens>) -> Self {
        self.tokens = Some(t);
        self
    }

    /// Where the real provider keys come from.
    pub fn provider_keys(mut self, k: Arc<dyn ProviderKeys>) -> Self {
        self.keys = Some(k);
        self
    }

    /// Where the current redactor comes from.
    pub fn redactor(mut self, r: Arc<dyn RedactorSource>) -> Self {
        self.redactor = Some(r);
        self
    }

    /// Where usage is recorded.
    pub fn usage_store(mut self, s: UsageStore) -> Self {
        self.store = Some(s);
        self
    }

    /// Metrics to update (default: a fresh [`Metrics::new`]).
    pub fn metrics(mut self, m: Arc<Metrics>) -> Self {
        self.metrics = Some(m);
        self
    }

    /// Validates the configuration and builds the upstream client.
    pub fn build(self) -> Result<Egress> {
        self.config.validate()?;
        let missing = |what: &str| Error::Config(format!("the egress proxy needs {what}"));
        let client = client::build(&self.config)?;
        Ok(Egress {
            inner: Arc::new(Inner {
                tokens: self.tokens.ok_or_else(|| missing("agent tokens"))?,
                keys: self.keys.ok_or_else(|| missing("provider keys"))?,
                redactor: self.redactor.ok_or_else(|| missing("a redactor source"))?,
                store: self.store.ok_or_else(|| missing("a usage store"))?,
                metrics: self.metrics.unwrap_or_default(),
                cache: Arc::new(RedactionCache::new(self.config.redaction_cache_bytes)),
                limits: RwLock::new(Arc::new(Limits {
                    budgets: self.config.budgets.clone(),
                    prices: Arc::new(self.config.prices.clone()),
                })),
                config: self.config,
                client,
            }),
        })
    }
}

fn expects_usage(provider: Provider, rest: &str, post: bool) -> bool {
    post && match provider {
        Provider::Anthropic => rest.ends_with("/messages"),
        Provider::OpenAi | Provider::OpenRouter => {
            rest.ends_with("/completions")
                || rest.ends_with("/responses")
                || rest.ends_with("/embeddings")
        }
        Provider::Gemini => {
            rest.contains(":generateContent") || rest.contains(":streamGenerateContent")
        }
    }
}

/// How long the redaction cache is kept without a request using it. An agent resumed later
/// pays one full scan of its history (about a millisecond per 64 KB), nothing else.
const CACHE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl Egress {
    /// Drops the redaction cache when no request used it for a minute, so an idle daemon holds
    /// no old conversations, and with it what the redactor keeps to go faster (its regex search
    /// caches, built up under load); whether anything was dropped (the caller may then return
    /// the freed memory to the kernel).
    pub fn release_idle_memory(&self) -> bool {
        let released = self
            .inner
            .cache
            .release_if_idle(std::time::Instant::now(), CACHE_IDLE);
        if released && let Some(r) = self.inner.redactor.current() {
            r.release_idle_memory();
        }
        released
    }

    /// A builder for `config`.
    pub fn builder(config: EgressConfig) -> EgressBuilder {
        EgressBuilder {
            config,
            tokens: None,
            keys: None,
            redactor: None,
            store: None,
            metrics: None,
        }
    }

    /// The configuration it was built with (budgets and prices as they were then: see
    /// [`Egress::set_limits`]).
    pub fn config(&self) -> &EgressConfig {
        &self.inner.config
    }

    /// Replaces the budgets and prices for every request from now on (the daemon's reload);
    /// requests already past their budget check finish under the old ones.
    pub fn set_limits(&self, budgets: Budgets, prices: Prices) {
        let limits = Arc::new(Limits {
            budgets,
            prices: Arc::new(prices),
        });
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value is whole.
        *self
            .inner
            .limits
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
    }

    fn limits(&self) -> Arc<Limits> {
        self.inner
            .limits
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The usage store.
    pub fn usage_store(&self) -> &UsageStore {
        &self.inner.store
    }

    /// Answers one request (what [`Egress::serve`] does for every request on a connection;
    /// callable directly without a socket).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let Some((provider, rest)) = request::route(parts.uri.path()) else {
            self.count("unknown", StatusCode::NOT_FOUND);
            self.inner.metrics.answered(false);
            return refusal_response(
                None,
                &Refusal::client(
                    StatusCode::NOT_FOUND,
                    "unknown_route",
                    "no such route: Clawgate proxies /anthropic/…, /openai/…, /gemini/… and /openrouter/…",
                ),
            );
        };
        let rest = rest.to_owned();
        let mut failed_here = false;
        let response = match self.forward(provider, rest, parts, body).await {
            Ok(r) => r,
            Err(refusal) => {
                failed_here = refusal.side == Side::Internal;
                if refusal.side != Side::Downstream {
                    tracing::warn!(
                        route = provider.route(),
                        kind = refusal.kind,
                        status = refusal.status.as_u16(),
                        "Request refused."
                    );
                }
                refusal_response(Some(provider), &refusal)
            }
        };
        self.count(provider.route(), response.status());
        self.inner.metrics.answered(failed_here);
        response
    }

    fn count(&self, route: &'static str, status: StatusCode) {
        self.inner
            .metrics
            .requests
            .get_or_create(&RequestLabels {
                route,
                status: status.as_u16(),
            })
            .inc();
    }

    async fn forward<B>(
        &self,
        provider: Provider,
        rest: String,
        parts: Parts,
        body: B,
    ) -> Result<Response<ProxyBody>, Refusal>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &*self.inner;
        let route = provider.route();
        request::check_path(&rest)?;

        // Who is asking.
        let (query, query_key) = request::split_key_param(parts.uri.query());
        let token = SecretString::new(request::presented_token(
            &parts.headers,
            query_key.as_deref(),
        )?);
        drop(query_key);
        let agent = inner
            .tokens
            .verify(token.expose())
            .ok_or_else(request::unauthorized)?;
        drop(token);

        // Budgets: spent today?
        let limits = self.limits();
        budget::check_spent(&limits, &inner.store, &inner.metrics, provider, &agent)?;

        let key = inner.keys.key(provider).ok_or_else(|| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_provider_key",
                Side::Internal,
                format!(
                    "Clawgate has no {} API key configured (store one in the vault)",
                    provider.display_name()
                ),
            )
        })?;
        let redactor = inner.redactor.current().ok_or_else(|| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "redactor_unavailable",
                Side::Internal,
                "Clawgate cannot check this request for secrets right now, so it is not forwarded",
            )
        })?;

        // The body: capped, decoded, redacted.
        let max = inner.config.max_body;
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(request::too_large(max));
        }
        let raw = match tokio::time::timeout(
            inner.config.body_timeout,
            Limited::new(body, max).collect(),
        )
        .await
        {
            Err(_) => {
                return Err(Refusal::client(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body did not arrive in time",
                ));
            }
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(request::too_large(max));
            }
            Ok(Err(_)) => {
                return Err(Refusal::client(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    "could not read the request body",
                ));
            }
            Ok(Ok(c)) => c.to_bytes(),
        };
        let started = Instant::now();
        // Counted durably before anything is sent: a crash from here on still leaves the
        // request in the usage table (with incomplete usage). The marker's commit runs while the
        // body is redacted; it is awaited before the upstream send, and a refusal on the way
        // deletes it.
        let at = unix_now();
        let marker = inner
            .store
            .begin_early(agent.as_str(), route, at)
            .map_err(usage_unavailable)?;
        let post = parts.method == Method::POST;
        let capture = inner.redactor.capture(&agent);
        let decoded = request::decode_body(raw, &parts.headers, max)?;
        let prepared: Prepared = if decoded.len() > BLOCKING_REDACTION {
            let rest2 = rest.clone();
            let redactor2 = redactor.clone();
            let cache = inner.cache.clone();
            tokio::task::spawn_blocking(move || {
                request::prepare_capturing(
                    provider,
                    &rest2,
                    post,
                    decoded,
                    &redactor2,
                    Some(&cache),
                    capture.as_deref(),
                )
            })
            .await
            .map_err(|_| {
                Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "redaction_failed",
                    Side::Internal,
                    "Clawgate failed while checking this request for secrets, so it is not forwarded",
                )
            })??
        } else {
            request::prepare_capturing(
                provider,
                &rest,
                post,
                decoded,
                &redactor,
                Some(&inner.cache),
                capture.as_deref(),
            )?
        };
        drop(redactor);
        let expects_usage = expects_usage(provider, &rest, post);
        if expects_usage {
            budget::check_priced(
                &limits,
                &inner.metrics,
                provider,
                &agent,
                prepared.model.as_deref(),
            )?;
        }
        for r in &prepared.redactions {
            inner
                .metrics
                .redactions
                .get_or_create(&RedactionLabels {
                    route,
                    detector: r.detector,
                    rule: r.rule.clone(),
                })
                .inc();
        }

        // The upstream request.
        let uri = inner
            .config
            .upstream(provider)
            .uri(&rest, query.as_deref())
            .map_err(|_| {
                Refusal::client(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    "the request path cannot be forwarded",
                )
            })?;
        let mut headers = request::upstream_headers(&parts.headers, prepared.body.len());
        request::inject_key(&mut headers, provider, key.expose())?;
        drop(key);
        let mut up = Request::new(Full::new(prepared.body));
        *up.method_mut() = parts.method;
        *up.uri_mut() = uri;
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = headers;

        let inflight = marker
            .confirm(prepared.model.as_deref().unwrap_or(UNKNOWN_MODEL))
            .await
            .map_err(usage_unavailable)?;
        let mut meter = Meter::new(MeterData {
            store: inner.store.clone(),
            metrics: inner.metrics.clone(),
            agent,
            provider,
            request_model: prepared.model,
            prices: limits.prices.clone(),
            expects_usage,
            at,
            inflight,
        });
        let before_upstream = started.elapsed();
        let response = match inner.client.request(up).await {
            Ok(r) => r,
            Err(e) => {
                inner.metrics.upstream_error(route, "connect");
                tracing::warn!(route, error = %e, "Upstream request failed.");
                meter.finish(None, End::NoResponse);
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unreachable",
                    Side::Upstream,
                    format!(
                        "Clawgate could not get a response from {}",
                        provider.display_name()
                    ),
                ));
            }
        };
        let head_at = Instant::now();

        // The response: status and headers as they came (minus hop-by-hop), body streamed.
        let (rparts, rbody) = response.into_parts();
        let sse = rparts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        let encoded = rparts
            .headers
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
        let strip = prepared.strip_usage_chunk && sse && !encoded && rparts.status.is_success();
        if !rparts.status.is_success() {
            meter.expect_usage(false);
        }
        let tap = if encoded {
            Tap::off(provider)
        } else {
            Tap::new(provider, sse, inner.config.max_usage_buffer, strip)
        };
        let drop_headers: &[http::HeaderName] = if strip { &[CONTENT_LENGTH] } else { &[] };
        let headers = request::copy_headers(&rparts.headers, drop_headers);
        let mut out = Response::new(ProxyBody::metered(rbody, tap, meter));
        *out.status_mut() = rparts.status;
        *out.headers_mut() = headers;
        inner
            .metrics
            .added_latency
            .get_or_create(&RouteLabels { route })
            .observe((before_upstream + head_at.elapsed()).as_secs_f64());
        Ok(out)
    }
}

/// The usage store failed: nothing goes upstream that could not be counted.
fn usage_unavailable(e: crate::error::Error) -> Refusal {
    tracing::error!(error = %e, "Usage store unavailable; refusing the request.");
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "usage_unavailable",
        Side::Internal,
        "Clawgate cannot record usage right now, so the request was not sent",
    )
}
