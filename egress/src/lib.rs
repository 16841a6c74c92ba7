//! `clawgate-egress`: the local LLM egress proxy. Every request an agent sends to a provider
//! comes through here, on 127.0.0.1:
//!
//! * reverse routes `/anthropic/*`, `/openai/*`, `/gemini/*`, `/openrouter/*` to the configured
//!   upstream base URL plus the rest of the path and the query (404 for anything else; `.`/`..`
//!   segments refused);
//! * the agent authenticates with its local token in `x-api-key`, `Authorization: Bearer`,
//!   `x-goog-api-key` or `?key=` (any route accepts any of them; several different tokens are
//!   refused). Every one of those is stripped and the real key goes in the provider's own header:
//!   `x-api-key` (Anthropic), `Authorization: Bearer` (OpenAI, OpenRouter), `x-goog-api-key`
//!   (Gemini). Other headers (`anthropic-version`, `anthropic-beta`, `openai-*`, …) pass
//!   through; hop-by-hop headers (and those named in `Connection`) are dropped both ways;
//!   `content-length` is recomputed; `accept-encoding: identity` is sent upstream so the usage
//!   parser can read the response;
//! * the request body is capped (413), decoded if `gzip`/`deflate` (capped again; other
//!   encodings 415), validated as UTF-8 JSON (else 400, never forwarded), and every JSON string,
//!   object keys included, goes through the current [`clawgate_redact::Redactor`]. Strings the
//!   redactor leaves alone keep their exact bytes, so key order, numbers and whitespace survive
//!   and a clean body is forwarded byte for byte. Long strings' redactions are remembered per
//!   redactor instance (agents resend their history every turn). Unknown secrets are offered to
//!   [`RedactorSource::capture`] for the request's agent, when the source captures them;
//! * streamed OpenAI chat completions without `stream_options.include_usage` get it added, and the
//!   extra usage-only chunk (`choices: []`) is dropped from what that client receives (OpenRouter
//!   sends usage regardless, so its clients keep the chunk);
//! * the response streams back frame by frame (TCP_NODELAY, no buffering) while a side parser
//!   reads its usage ([`usage`] has the field paths), recorded per agent × provider × model ×
//!   hour in SQLite ([`UsageStore`]) when the stream ends, breaks or is cancelled;
//! * daily budgets, in tokens and in cost ([`Budgets`]; cost is today's tokens per model at
//!   [`Prices`], integer micro-dollars), answer 429 in the provider's own error format
//!   ([`reply`]); with a cost budget, a model without a price is refused (403).
//!
//! Responses made by the proxy itself carry `x-clawgate-error: <kind>` ([`Refusal::kind`]):
//! `unknown_route` 404, `invalid_path` 400, `missing_token`/`invalid_token` 401,
//! `budget_exceeded` 429, `model_unpriced` 403, `body_too_large` 413, `unsupported_encoding` 415,
//! `bad_encoding` 400, `invalid_json` 400, `body_timeout` 408, `body_unreadable` 400, `no_provider_key` 503,
//! `invalid_provider_key` 503, `redactor_unavailable` 503, `redaction_failed` 500,
//! `upstream_unreachable` 502. Upstream statuses (429, 5xx, …) pass through untouched.
//!
//! ```no_run
//! use std::sync::Arc;
//! use clawgate_egress::{Egress, EgressConfig, Provider, SharedRedactor, StaticKeys, TokenTable, UsageStore};
//! use clawgate_protocol::SecretString;
//! use clawgate_redact::Redactor;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let egress = Egress::builder(EgressConfig::default())
//!     .tokens(Arc::new(TokenTable::new().with("main", &SecretString::new("cg-agent-token".into()))))
//!     .provider_keys(Arc::new(StaticKeys::new().with(Provider::Anthropic, SecretString::new("sk-ant-…".into()))))
//!     .redactor(Arc::new(SharedRedactor::new(Arc::new(Redactor::builder().build()?))))
//!     .usage_store(UsageStore::open("/var/lib/clawgate/usage.db".as_ref())?)
//!     .build()?;
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let listener = egress.bind().await?;
//! let server = tokio::spawn({ let e = egress.clone(); async move { e.serve(listener, stopped).await } });
//! // … on SIGTERM:
//! stop.send(true)?;
//! server.await?; // open streams finished or were cut (and metered); usage flushed
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod body;
mod budget;
mod cache;
mod client;
pub mod config;
pub mod connect;
pub mod error;
pub mod metrics;
pub mod prices;
mod proxy;
pub mod reply;
mod request;
pub mod seams;
mod server;
mod sse;
pub mod store;
pub mod usage;

pub use body::ProxyBody;
pub use config::{Budgets, EgressConfig, Provider, Upstream};
pub use error::{Error, Refusal, Result, Side};
pub use metrics::Metrics;
pub use prices::{Price, PriceUsd, Prices};
pub use proxy::{Egress, EgressBuilder};
pub use reply::CLAWGATE_ERROR_HEADER;
pub use seams::{
    AgentId, ProviderKeys, RedactorSource, SharedRedactor, StaticKeys, TokenTable, Tokens,
    token_hash,
};
pub use store::{Bucket, BucketQuery, Record, UsageStore, read_buckets};
pub use usage::Usage;
