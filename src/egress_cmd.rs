//! `clawgate egress token` and `clawgate usage show`: agents' proxy tokens and metered usage.

use std::io::Write;

use clawgate_egress::{BucketQuery, read_buckets};
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
            .map(|b| {
                json!({ "agent": b.agent, "provider": b.provider, "model": b.model, "hour": b.hour,
                        "input": b.usage.input, "output": b.usage.output,
                        "cache_read": b.usage.cache_read, "cache_write": b.usage.cache_write,
                        "requests": b.requests, "incomplete": b.incomplete })
            })
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
        "{:<17} {:<12} {:<10} {:<28} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "hour (UTC)",
        "agent",
        "provider",
        "model",
        "input",
        "output",
        "cache_rd",
        "cache_wr",
        "requests"
    )?;
    for b in &buckets {
        let line = format!(
            "{:<17} {:<12} {:<10} {:<28} {:>10} {:>10} {:>10} {:>10} {:>8}{}",
            utc_hour(b.hour),
            b.agent,
            b.provider,
            b.model,
            b.usage.input,
            b.usage.output,
            b.usage.cache_read,
            b.usage.cache_write,
            b.requests,
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
    use super::utc_hour;

    #[test]
    fn hours_print_as_utc_dates() {
        assert_eq!(utc_hour(0), "1970-01-01T00:00Z");
        assert_eq!(utc_hour(1_764_000_000), "2025-11-24T16:00Z");
        assert_eq!(utc_hour(951_782_400), "2000-02-29T00:00Z");
    }
}
