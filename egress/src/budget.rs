//! Daily budgets, checked per request: tokens and cost spent today (before anything is read),
//! and, when a cost budget applies, that the request's model has a price (once the body named
//! it). Every refusal says what Clawgate counted, that Clawgate (not the provider) set the
//! limit, and what to do; the spent ones reset at 00:00 UTC (`Retry-After` says when).

use std::sync::Arc;

use hyper::StatusCode;

use crate::config::{Budgets, Provider};
use crate::error::Refusal;
use crate::metrics::Metrics;
use crate::prices::{Prices, format_usd};
use crate::seams::AgentId;
use crate::store::UsageStore;

/// The budgets and prices in force. The daemon's reload replaces them while the proxy runs
/// ([`crate::Egress::set_limits`]); each request reads one snapshot.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) budgets: Budgets,
    /// Shared with the meters of the requests that started under them.
    pub(crate) prices: Arc<Prices>,
}

/// Model ids echoed in messages are cut to this many characters.
const MODEL_SHOWN: usize = 100;

/// Refuses `agent` if its tokens or its cost today reached a budget, or if its usage today
/// cannot be priced while a cost budget applies.
pub(crate) fn check_spent(
    limits: &Limits,
    store: &UsageStore,
    metrics: &Metrics,
    provider: Provider,
    agent: &AgentId,
) -> Result<(), Refusal> {
    let route = provider.route();
    if let Some(limit) = limits.budgets.limit_for(agent.as_str()) {
        let used = store.tokens_today(agent.as_str());
        if used >= limit {
            metrics.budget_refusal(route, "tokens");
            return Err(spent(format!(
                "Clawgate daily token budget exhausted for agent {agent}: {used} of {limit} tokens used today (UTC). This limit is set by Clawgate on this server, not by {}; it resets at 00:00 UTC.",
                provider.display_name()
            )));
        }
    }
    let Some(limit) = limits.budgets.cost_limit_for(agent.as_str()) else {
        return Ok(());
    };
    let cost = store.cost_today(agent.as_str(), &limits.prices);
    if cost.micros >= limit {
        metrics.budget_refusal(route, "cost");
        return Err(spent(format!(
            "Clawgate daily cost budget exhausted for agent {agent}: ${} of ${} used today (UTC), at Clawgate's model prices. This limit is set by Clawgate on this server, not by {}; it resets at 00:00 UTC.",
            format_usd(cost.micros),
            format_usd(limit),
            provider.display_name()
        )));
    }
    if let Some((used_route, model)) = cost.unpriced {
        // Fail closed: spending that cannot be counted could already be over the budget.
        metrics.budget_refusal(route, "unpriced");
        let model = shown(&model);
        return Err(unpriced(format!(
            "Clawgate has a daily cost budget of ${} for agent {agent}, but its usage today includes {used_route} model {model:?}, which has no price, so today's cost is unknown and requests are refused. {}",
            format_usd(limit),
            how_to_price(&used_route, &model)
        )));
    }
    Ok(())
}

/// Refuses a generation request whose model has no price when `agent` has a cost budget: its
/// cost could not be counted.
pub(crate) fn check_priced(
    limits: &Limits,
    metrics: &Metrics,
    provider: Provider,
    agent: &AgentId,
    model: Option<&str>,
) -> Result<(), Refusal> {
    if limits.budgets.cost_limit_for(agent.as_str()).is_none() {
        return Ok(());
    }
    let route = provider.route();
    let message = match model {
        Some(m) if limits.prices.lookup(provider, m).is_some() => return Ok(()),
        Some(m) => {
            let m = shown(m);
            format!(
                "Clawgate has a daily cost budget for agent {agent} but no price for {route} model {m:?}, so it cannot count this request's cost and did not send it. {}",
                how_to_price(route, &m)
            )
        }
        None => format!(
            "Clawgate has a daily cost budget for agent {agent}, so a generation request must name its model (this one names none); it was not sent."
        ),
    };
    metrics.budget_refusal(route, "unpriced");
    Err(unpriced(message))
}

fn spent(message: String) -> Refusal {
    Refusal::client(StatusCode::TOO_MANY_REQUESTS, "budget_exceeded", message)
}

/// 403, not 429: waiting does not help, and SDKs do not retry it.
fn unpriced(message: String) -> Refusal {
    Refusal::client(StatusCode::FORBIDDEN, "model_unpriced", message)
}

fn how_to_price(route: &str, model: &str) -> String {
    format!(
        "The operator adds a price under [egress.prices] in Clawgate's configuration, e.g. \"{route}/{model}\" = {{ input = 3.0, output = 15.0, cache_read = 0.3, cache_write = 3.75 }} (USD per million tokens), and reloads Clawgate (systemctl reload clawgate)."
    )
}

/// A model id as shown in a message: at most [`MODEL_SHOWN`] characters, no control characters.
fn shown(model: &str) -> String {
    model
        .chars()
        .filter(|c| !c.is_control())
        .take(MODEL_SHOWN)
        .collect()
}
