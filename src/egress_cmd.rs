//! `clawgate egress token` and `clawgate usage show`: agents' proxy tokens and metered usage.

use std::io::Write;

use clawgate_egress::prices::format_usd;
use clawgate_egress::{Bucket, BucketQuery, Prices, Provider, read_buckets};
use clawgate_protocol::env::Env;
use serde_json::json;

use crate::cli::{EgressCommand, GlobalArgs, UsageCommand, UsageError};
use crate::daemon_cmd::settings;

pub(crate) fn egress(global: &GlobalArgs, env: &dyn Env, cmd: EgressCommand) -> anyhow::Result<()> {
    let EgressCommand::Token { agent, config } = cmd;
    clawgate_wrapper::tokens::check_agent_id(&agent).map_err(|e| UsageError(e.to_string()))?;
    let s = settings(global, env, config.config.as_deref())?;
    clawgate_wrapper::daemon::ensure_private_dir(&s.state_dir)?;
    let token = clawgate_wrapper::tokens::mint(&s.egress.tokens_file, &agent)?;
    println!("{}", token.expose());
    Ok(())
}

pub(crate) fn usage(global: &GlobalArgs, env: &dyn Env, cmd: UsageCommand) -> anyhow::Result<()> {
    let UsageCommand::Show {
        agent,
        hours,
        json,
        config,
    } = cmd;
    let s = settings(global, env, config.config.as_deref())?;
    let q = BucketQuery {
        agent,
        since: hours.map(|h| {
            let now = clawgate_egress::store::unix_now();
            clawgate_egress::store::hour_of(now) - i64::from(h.saturating_sub(1)) * 3600
        }),
        until: None,
    };
    let buckets = if s.egress.usage_db.exists() {
        read_buckets(&s.egress.usage_db, &q)?
    } else {
        Vec::new()
    };
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<_> = buckets
            .iter()
            .map(|b| row_json(b, cost_micros(&s.egress.prices, b)))
            .collect();
        writeln!(out, "{}", serde_json::to_string(&rows)?)?;
        return Ok(());
    }
    if buckets.is_empty() {
        writeln!(out, "no usage recorded")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<17} {:<12} {:<10} {:<28} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "hour (UTC)",
        "agent",
        "provider",
        "model",
        "input",
        "output",
        "cache_rd",
        "cache_wr",
        "requests",
        "cost (USD)"
    )?;
    for b in &buckets {
        let line = format!(
            "{:<17} {:<12} {:<10} {:<28} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}{}",
            utc_hour(b.hour),
            b.agent,
            b.provider,
            b.model,
            b.usage.input,
            b.usage.output,
            b.usage.cache_read,
            b.usage.cache_write,
            b.requests,
            cost_micros(&s.egress.prices, b).map_or_else(|| "?".to_owned(), format_usd),
            if b.incomplete > 0 {
                format!(" ({} incomplete)", b.incomplete)
            } else {
                String::new()
            }
        );
        match writeln!(out, "{line}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What a bucket cost at the configured prices (the ones cost budgets use); `None` when its
/// model has no price (and it used tokens).
fn cost_micros(prices: &Prices, b: &Bucket) -> Option<u64> {
    let provider = Provider::from_route(&b.provider)?;
    prices.cost_micros(provider, &b.model, &b.usage)
}

/// One bucket for `usage show --json`; `cost_micros` is null when the model has no price.
fn row_json(b: &Bucket, cost: Option<u64>) -> serde_json::Value {
    json!({ "agent": b.agent, "provider": b.provider, "model": b.model, "hour": b.hour,
            "input": b.usage.input, "output": b.usage.output,
            "cache_read": b.usage.cache_read, "cache_write": b.usage.cache_write,
            "cache_write_1h": b.usage.cache_write_1h,
            "requests": b.requests, "incomplete": b.incomplete, "cost_micros": cost })
}

/// `YYYY-MM-DDTHH:00Z` for unix seconds (proleptic Gregorian, Howard Hinnant's civil_from_days).
fn utc_hour(at: i64) -> String {
    let days = at.div_euclid(86_400);
    let hour = at.rem_euclid(86_400) / 3600;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:00Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawgate_egress::Usage;

    fn bucket(provider: &str, model: &str, input: u64, output: u64) -> Bucket {
        Bucket {
            agent: "main".into(),
            provider: provider.into(),
            model: model.into(),
            hour: 0,
            usage: Usage {
                input,
                output,
                cache_read: 1000,
                cache_write: 0,
                cache_write_1h: 0,
            },
            requests: 1,
            incomplete: 0,
        }
    }

    /// (bucket, its cost in micro-dollars at the built-in prices, or None: unpriced).
    #[test]
    fn rows_carry_their_cost() {
        let prices = Prices::builtin().unwrap();
        let cases = [
            // 1000 in × 3 + 100 out × 15 + 1000 read × 0.3
            (
                bucket("anthropic", "claude-sonnet-4-5-20250929", 1000, 100),
                Some(4_800),
            ),
            (bucket("openrouter", "openai/gpt-4o", 0, 0), Some(1_250)),
            (bucket("openai", "claude-test-1", 1, 0), None),
            (bucket("nowhere", "gpt-4o", 1, 0), None),
        ];
        for (b, want) in cases {
            assert_eq!(cost_micros(&prices, &b), want, "{b:?}");
            assert_eq!(row_json(&b, want)["cost_micros"], json!(want), "{b:?}");
        }
        assert!(row_json(&bucket("openai", "mystery", 1, 1), None)["cost_micros"].is_null());
    }

    #[test]
    fn hours_print_as_utc_dates() {
        assert_eq!(utc_hour(0), "1970-01-01T00:00Z");
        assert_eq!(utc_hour(1_764_000_000), "2025-11-24T16:00Z");
        assert_eq!(utc_hour(951_782_400), "2000-02-29T00:00Z");
    }
}
