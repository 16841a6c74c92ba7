//! Model prices, for daily cost budgets: USD per million tokens of each metered kind (input,
//! output, cache read, cache write), held as integer micro-dollars so no float ever enters the
//! accounting.
//!
//! The built-in table is `egress/prices.toml` ([`Prices::builtin`]); the operator adds or
//! replaces entries ([`Prices::with_overrides`], `[egress.prices]` in clawgate.toml). Keys are
//! `"<route>/<model>"`, e.g. `"anthropic/claude-sonnet-4-5"`; every entry needs all four
//! prices (a fifth, `cache_write_1h`, is optional: see [`PriceUsd::cache_write_1h`]), and a negative, non-finite or absurd price, an unknown field or a key that names no
//! provider route is refused (the daemon does not start on it).
//!
//! Matching a model ([`Prices::lookup`]), case-insensitively:
//!
//! 1. the exact id (`gemini/models/x` is read as `gemini/x`);
//! 2. the id without one trailing date or version suffix: `-YYYYMMDD`, `-YYYY-MM-DD`, `-MMDD`
//!    or `-NNN` (`claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`, `gpt-4o-2024-08-06` →
//!    `gpt-4o`, `gemini-2.0-flash-001` → `gemini-2.0-flash`). Nothing looser: a prefix match
//!    would price `gpt-5-pro` as `gpt-5`, at an eighth of its cost;
//! 3. OpenRouter ids are `vendor/model`: an `openrouter/vendor/model` entry (rules 1–2) wins;
//!    else vendors `anthropic`, `openai` and `google` are priced as that provider's own model
//!    (OpenRouter passes list prices through), with Anthropic's dotted versions read as dashes
//!    (`anthropic/claude-sonnet-4.5` → `anthropic/claude-sonnet-4-5`).
//!
//! A model that matches nothing is unpriced: its cost is unknown, and an agent with a cost
//! budget cannot use it (the proxy refuses rather than spend without counting). A response
//! that names an unpriced model for a priced request is filed under the request's model, so
//! its cost stays known.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Deserialize;

use crate::config::Provider;
use crate::error::{Error, Result};
use crate::usage::Usage;

/// The built-in price table.
const BUILTIN: &str = include_str!("../prices.toml");

/// Micro-dollars in a dollar.
pub const MICROS_PER_USD: u64 = 1_000_000;

/// Highest price accepted, in USD per million tokens: far above any real model, low enough that
/// a typo (a price per token written as per thousand, say) is caught.
const MAX_USD_PER_MTOK: f64 = 10_000.0;

/// One model's price as written: USD per million tokens (`input = 3.0` …). Every field but
/// `cache_write_1h` is required, and no other is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceUsd {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens (reasoning included).
    pub output: f64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read: f64,
    /// Input tokens written to the provider's prompt cache (with the five-minute lifetime, where
    /// the provider offers two).
    pub cache_write: f64,
    /// Input tokens written to the prompt cache with a one-hour lifetime (only Anthropic
    /// reports these). Default: twice `input`, Anthropic's published rule.
    #[serde(default)]
    pub cache_write_1h: Option<f64>,
}

/// One model's price in micro-dollars per million tokens, per token kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// Uncached input.
    pub input: u64,
    /// Output.
    pub output: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Cache writes (five-minute lifetime).
    pub cache_write: u64,
    /// Cache writes with a one-hour lifetime.
    pub cache_write_1h: u64,
}

impl Price {
    /// Converts and checks a written price (`what` names it in errors).
    pub fn from_usd(p: &PriceUsd, what: &str) -> Result<Price> {
        Ok(Price {
            input: micros_per_mtok(p.input, what, "input")?,
            output: micros_per_mtok(p.output, what, "output")?,
            cache_read: micros_per_mtok(p.cache_read, what, "cache_read")?,
            cache_write: micros_per_mtok(p.cache_write, what, "cache_write")?,
            cache_write_1h: micros_per_mtok(
                p.cache_write_1h.unwrap_or(2.0 * p.input),
                what,
                "cache_write_1h",
            )?,
        })
    }

    /// What `usage` costs, in micro-dollars, rounded up (a budget never undercounts), saturating.
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let term = |tokens: u64, rate: u64| u128::from(tokens).saturating_mul(u128::from(rate));
        // One-hour writes are part of `cache_write`; a report claiming more of them than writes
        // in all is priced as all one-hour (the dearer reading).
        let written_1h = usage.cache_write_1h.min(usage.cache_write);
        let sum = term(usage.input, self.input)
            .saturating_add(term(usage.output, self.output))
            .saturating_add(term(usage.cache_read, self.cache_read))
            .saturating_add(term(usage.cache_write - written_1h, self.cache_write))
            .saturating_add(term(written_1h, self.cache_write_1h));
        u64::try_from(sum.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// USD per million tokens → micro-dollars per million tokens, refusing what cannot be a price.
fn micros_per_mtok(usd: f64, what: &str, field: &str) -> Result<u64> {
    if !usd.is_finite() || usd < 0.0 {
        return Err(Error::Config(format!(
            "price {what}: {field} must be a non-negative number of USD per million tokens"
        )));
    }
    if usd > MAX_USD_PER_MTOK {
        return Err(Error::Config(format!(
            "price {what}: {field} = {usd} USD per million tokens is more than {MAX_USD_PER_MTOK}; prices are per million tokens"
        )));
    }
    // Bounded and non-negative: the cast is exact after rounding.
    Ok((usd * MICROS_PER_USD as f64).round() as u64)
}

/// A price table: `(provider, lower-cased model id)` → [`Price`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prices {
    table: HashMap<(Provider, String), Price>,
}

impl Prices {
    /// The built-in table (`egress/prices.toml`). An error here is a bug in the shipped file (a
    /// test parses it); the daemon refuses to start rather than run budgets without prices.
    pub fn builtin() -> Result<Prices> {
        Prices::parse_toml(BUILTIN, "the built-in price table")
    }

    /// Parses a table in the format of `egress/prices.toml` (`origin` names it in errors).
    pub fn parse_toml(text: &str, origin: &str) -> Result<Prices> {
        let raw: BTreeMap<String, PriceUsd> =
            toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        Prices::default().with_overrides(&raw)
    }

    /// This table with `entries` (`"<route>/<model>"` → price) added, replacing equal keys.
    pub fn with_overrides(mut self, entries: &BTreeMap<String, PriceUsd>) -> Result<Prices> {
        for (key, p) in entries {
            let (provider, model) = parse_key(key)?;
            let price = Price::from_usd(p, &format!("\"{key}\""))?;
            self.table.insert((provider, model), price);
        }
        Ok(self)
    }

    /// How many models are priced.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// No model is priced.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The price of `model` on `provider`'s route (see the module docs for the rule).
    pub fn lookup(&self, provider: Provider, model: &str) -> Option<Price> {
        let model = model.trim().to_ascii_lowercase();
        let model = match provider {
            Provider::Gemini => model.strip_prefix("models/").unwrap_or(&model).to_owned(),
            _ => model,
        };
        if model.is_empty() {
            return None;
        }
        self.direct(provider, &model).or_else(|| {
            (provider == Provider::OpenRouter)
                .then(|| self.via_vendor(&model))
                .flatten()
        })
    }

    /// Rules 1 and 2: the exact id, then without a date or version suffix.
    fn direct(&self, provider: Provider, model: &str) -> Option<Price> {
        let get = |m: &str| self.table.get(&(provider, m.to_owned())).copied();
        get(model).or_else(|| strip_version_suffix(model).and_then(get))
    }

    /// Rule 3: an OpenRouter `vendor/model` priced as the vendor's own model.
    fn via_vendor(&self, model: &str) -> Option<Price> {
        let (vendor, rest) = model.split_once('/')?;
        match vendor {
            "anthropic" => self.direct(Provider::Anthropic, &rest.replace('.', "-")),
            "openai" => self.direct(Provider::OpenAi, rest),
            "google" => self.direct(Provider::Gemini, rest),
            _ => None,
        }
    }

    /// What `usage` of `model` cost, if the model is priced. No tokens cost nothing, priced or
    /// not (a request that failed before any usage).
    pub fn cost_micros(&self, provider: Provider, model: &str, usage: &Usage) -> Option<u64> {
        if usage.total() == 0 {
            return Some(0);
        }
        self.lookup(provider, model).map(|p| p.cost_micros(usage))
    }
}

/// `"<route>/<model>"` → provider and lower-cased model.
fn parse_key(key: &str) -> Result<(Provider, String)> {
    let bad = |why: &str| {
        Error::Config(format!(
            "price \"{key}\": {why}; keys are \"<provider>/<model>\" with provider anthropic, openai, gemini or openrouter"
        ))
    };
    let (route, model) = key.split_once('/').ok_or_else(|| bad("no provider"))?;
    let provider = Provider::from_route(route).ok_or_else(|| bad("unknown provider"))?;
    if model.is_empty() || model.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the model id is empty or has spaces"));
    }
    Ok((provider, model.to_ascii_lowercase()))
}

/// `model` without one trailing `-YYYYMMDD`, `-YYYY-MM-DD`, `-MMDD` or `-NNN`, if it has one.
fn strip_version_suffix(model: &str) -> Option<&str> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let iso_date = |t: &[u8]| {
        t.len() == 11
            && t.iter().enumerate().all(|(i, b)| match i {
                0 | 5 | 8 => *b == b'-',
                _ => b.is_ascii_digit(),
            })
    };
    let cut = model.len().saturating_sub(11);
    if cut > 0 && model.is_char_boundary(cut) && iso_date(&model.as_bytes()[cut..]) {
        return Some(&model[..cut]);
    }
    let (head, last) = model.rsplit_once('-')?;
    let dated = digits(last, 8) || digits(last, 4) || digits(last, 3);
    (dated && !head.is_empty()).then_some(head)
}

/// Micro-dollars as dollars for people: at least two decimals, more only when they matter
/// (`12.50`, `0.0042`, `0.000001`).
pub fn format_usd(micros: u64) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{}.{:06}",
        micros / MICROS_PER_USD,
        micros % MICROS_PER_USD
    );
    while s.ends_with('0') && s.len() - s.find('.').unwrap_or(0) > 3 {
        s.pop();
    }
    s
}

/// A budget written in USD → micro-dollars (`what` names it in errors): non-negative, finite,
/// at most a million dollars a day.
pub fn usd_to_micros(usd: f64, what: &str) -> Result<u64> {
    if !usd.is_finite() || !(0.0..=1_000_000.0).contains(&usd) {
        return Err(Error::Config(format!(
            "{what} must be a number of USD between 0 and 1000000"
        )));
    }
    Ok((usd * MICROS_PER_USD as f64).round() as u64)
}

#[cfg(test)]
mod tests;
