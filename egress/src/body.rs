//! The response body the client gets: either a body the proxy made (a refusal), or the
//! upstream's body streamed frame by frame through a [`Tap`] that meters it. Metering fires
//! exactly once: at the end of the stream, when the upstream fails mid-stream, or when the
//! client goes away (the body is dropped).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::config::Provider;
use crate::metrics::{Metrics, RouteLabels};
use crate::prices::Prices;
use crate::seams::AgentId;
use crate::store::{Record, UNKNOWN_MODEL, UsageStore};
use crate::usage::{Outcome, Tap};

/// How a response ended, for metering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The upstream finished the body.
    Complete,
    /// The upstream connection failed mid-body (reset, truncated chunking).
    UpstreamError,
    /// The client went away before the end.
    Cancelled,
    /// No response at all (connect failure).
    NoResponse,
}

/// What metering needs to know about one request.
#[derive(Debug)]
pub(crate) struct MeterData {
    pub(crate) store: UsageStore,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) agent: AgentId,
    pub(crate) provider: Provider,
    pub(crate) request_model: Option<String>,
    /// The price table, to file usage under a model it can price ([`record_model`]).
    pub(crate) prices: Arc<Prices>,
    /// A generation request with a 2xx answer: no usage in it means usage is missing.
    pub(crate) expects_usage: bool,
    pub(crate) at: i64,
    /// The request's in-flight marker in the usage store.
    pub(crate) inflight: i64,
}

/// Records one request exactly once: through [`Meter::finish`], or when dropped unfinished (the
/// client went away while the upstream was still thinking, before any response head), which
/// counts as cancelled.
#[derive(Debug)]
pub(crate) struct Meter(Option<MeterData>);

impl Meter {
    /// Starts metering a request that is about to be sent upstream.
    pub(crate) fn new(data: MeterData) -> Meter {
        Meter(Some(data))
    }

    /// Whether the response is one that should carry usage.
    pub(crate) fn expect_usage(&mut self, yes: bool) {
        if let Some(d) = &mut self.0 {
            d.expects_usage = yes;
        }
    }

    /// Records the request (on the recorder thread, which also parses a JSON body).
    pub(crate) fn finish(mut self, tap: Option<Tap>, end: End) {
        if let Some(d) = self.0.take() {
            record(d, tap, end);
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            record(d, None, End::Cancelled);
        }
    }
}

fn record(d: MeterData, tap: Option<Tap>, end: End) {
    let route = d.provider.route();
    if matches!(end, End::UpstreamError) {
        d.metrics.upstream_error(route, "stream");
    }
    let store = d.store.clone();
    let queued = store.record_with(move || {
        let out: Outcome = tap.map(Tap::finish).unwrap_or_default();
        // A stream is whole when its terminal event came (the client may hang up right after
        // it, before the upstream's end of body); a JSON body when it ended or parsed whole.
        // Gemini has no terminal event (only a `finishReason`, absent when a prompt is
        // blocked): its clean end counts.
        let whole = if out.streamed {
            out.finished || (end == End::Complete && d.provider == Provider::Gemini)
        } else {
            end == End::Complete || out.finished
        };
        let incomplete = !whole || out.overflow || (d.expects_usage && !out.usage_seen);
        d.metrics.tokens(route, &out.usage);
        if incomplete {
            d.metrics
                .incomplete_usage
                .get_or_create(&RouteLabels { route })
                .inc();
        }
        Some(Record {
            agent: d.agent.as_str().to_owned(),
            provider: route.to_owned(),
            model: record_model(d.provider, out.model, d.request_model, &d.prices),
            at: d.at,
            usage: out.usage,
            incomplete,
            inflight: Some(d.inflight),
        })
    });
    if let Err(e) = queued {
        tracing::error!(error = %e, route, "Usage not recorded.");
    }
}

/// The model a record is filed under: the one the response named (the model that ran), else
/// the request's, else `unknown`. One exception keeps cost budgets countable: when the response
/// names a model the price table does not know but the request's is priced (an alias resolved
/// to an id the table lacks, an OpenRouter answer without its vendor), the request's model is
/// kept; otherwise today's cost would become unknown and the agent's cost budget would refuse
/// everything until a price is added.
fn record_model(
    provider: Provider,
    response: Option<String>,
    request: Option<String>,
    prices: &Prices,
) -> String {
    match (response, request) {
        (Some(resp), Some(req))
            if prices.lookup(provider, &resp).is_none()
                && prices.lookup(provider, &req).is_some() =>
        {
            req
        }
        (Some(resp), _) => resp,
        (None, Some(req)) => req,
        (None, None) => UNKNOWN_MODEL.to_owned(),
    }
}

/// A response body: made by the proxy, or the upstream's, metered.
#[derive(Debug)]
pub struct ProxyBody(Kind);

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Stream(Box<Metered>),
}

impl ProxyBody {
    /// A complete body.
    pub(crate) fn full(b: Bytes) -> ProxyBody {
        ProxyBody(Kind::Full(Some(b)))
    }

    /// The upstream's body through `tap`, metered by `meter`.
    pub(crate) fn metered(inner: Incoming, tap: Tap, meter: Meter) -> ProxyBody {
        ProxyBody(Kind::Stream(Box::new(Metered {
            filtering: tap.filters(),
            inner,
            tap: Some(tap),
            pending: None,
            out: VecDeque::new(),
            meter: Some(meter),
            done: false,
        })))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.0 {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(m) => m.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(b) => b.is_none(),
            Kind::Stream(m) => m.done && m.out.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(m) if !m.filtering => m.inner.size_hint(),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

#[derive(Debug)]
struct Metered {
    inner: Incoming,
    filtering: bool,
    tap: Option<Tap>,
    /// The last frame sent, read by the tap at the next poll: parsing never delays a frame.
    pending: Option<Bytes>,
    /// Filter mode: bytes ready for the client.
    out: VecDeque<Bytes>,
    meter: Option<Meter>,
    done: bool,
}

impl Metered {
    fn feed_pending(&mut self) {
        if let (Some(p), Some(t)) = (self.pending.take(), self.tap.as_mut()) {
            t.feed(&p);
        }
    }

    fn end(&mut self, end: End) {
        self.feed_pending();
        self.done = true;
        if let Some(m) = self.meter.take() {
            m.finish(self.tap.take(), end);
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.filtering {
            return self.poll_filtered(cx);
        }
        self.feed_pending();
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    self.pending = Some(d.clone());
                }
                // A body with a known length ends with its last byte: hyper may not poll again
                // (it drops the body), so this is the end, not a cancel.
                if self.inner.is_end_stream() {
                    self.end(End::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                self.end(End::UpstreamError);
                Poll::Ready(Some(Err(e)))
            }
            None => {
                self.end(End::Complete);
                Poll::Ready(None)
            }
        }
    }

    fn poll_filtered(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        loop {
            if let Some(b) = self.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => match self.tap.as_mut() {
                        Some(t) => t.filter(d, &mut self.out),
                        None => self.out.push_back(d),
                    },
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                Some(Err(e)) => {
                    self.end(End::UpstreamError);
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    if let Some(t) = self.tap.as_mut() {
                        t.filter_rest(&mut self.out);
                    }
                    self.end(End::Complete);
                }
            }
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if self.meter.is_some() {
            self.end(End::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (response model, request model, filed under) at the built-in prices.
    #[test]
    fn usage_is_filed_under_a_model_that_can_be_priced() {
        let prices = Prices::builtin().unwrap();
        let some = |s: &str| Some(s.to_owned());
        let cases = [
            (
                Provider::Anthropic,
                some("claude-sonnet-4-5-20250929"),
                some("claude-sonnet-4-5"),
                "claude-sonnet-4-5-20250929",
            ),
            (
                Provider::Anthropic,
                some("claude-x"),
                some("claude-y"),
                "claude-x",
            ),
            (Provider::Anthropic, some("claude-x"), None, "claude-x"),
            (Provider::Anthropic, None, some("claude-y"), "claude-y"),
            (Provider::Anthropic, None, None, "unknown"),
            (
                Provider::OpenRouter,
                some("gpt-4o-2024-08-06"),
                some("openai/gpt-4o"),
                "openai/gpt-4o",
            ),
            (
                Provider::OpenRouter,
                some("anthropic/claude-sonnet-4.5"),
                some("openai/gpt-4o"),
                "anthropic/claude-sonnet-4.5",
            ),
            (
                Provider::OpenAi,
                some("gpt-4o-2024-08-06"),
                some("openrouter/auto"),
                "gpt-4o-2024-08-06",
            ),
        ];
        for (provider, response, request, want) in cases {
            assert_eq!(
                record_model(provider, response.clone(), request.clone(), &prices),
                want,
                "{provider} {response:?} {request:?}"
            );
        }
        // Without prices, the response's model always wins (as before cost budgets).
        assert_eq!(
            record_model(
                Provider::OpenRouter,
                some("a"),
                some("b"),
                &Prices::default()
            ),
            "a"
        );
    }
}
