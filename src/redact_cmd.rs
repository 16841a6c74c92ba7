//! `clawgate scan` and `clawgate redact`: the redactor from the command line, with the vault's
//! values when a vault exists in the state directory.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clawgate_protocol::env::Env;
use clawgate_redact::Redactor;
use clawgate_vault::Vault;

use crate::cli::{GlobalArgs, RedactInput, ScanArgs};
use crate::state::{self, VAULT_DB};

/// Largest input read.
const MAX_INPUT: u64 = 64 * 1024 * 1024;

fn read_input(file: Option<&Path>) -> anyhow::Result<String> {
    let bytes = match file {
        None => clawgate_protocol::io::read_to_end_capped(std::io::stdin().lock(), MAX_INPUT)?,
        Some(p) if p == Path::new("-") => {
            clawgate_protocol::io::read_to_end_capped(std::io::stdin().lock(), MAX_INPUT)?
        }
        Some(p) => clawgate_protocol::io::read_capped(p, MAX_INPUT)
            .with_context(|| format!("reading {}", p.display()))?,
    };
    // Redaction works on text; invalid UTF-8 is refused rather than guessed at.
    String::from_utf8(bytes).context("the input is not valid UTF-8")
}

/// The redactor: vault values when a vault exists (a vault that exists but does not open is an
/// error, never silently skipped), plus rules and entropy.
fn build(global: &GlobalArgs, env: &dyn Env, input: &RedactInput) -> anyhow::Result<Redactor> {
    let dir = state::state_dir(global.state_dir.as_deref(), env)?;
    let db = dir.join(VAULT_DB);
    let mut builder = Redactor::builder();
    if !input.no_vault && db.exists() {
        let source = state::key_source(&input.key, &dir, env)?;
        let vault = Vault::open(&db, &source).with_context(|| {
            format!(
                "opening vault {} (use --no-vault to scan without it)",
                db.display()
            )
        })?;
        builder = builder.vault_values(vault.values_for_redaction()?);
    }
    Ok(builder.placeholder_key(placeholder_key(&dir)?).build()?)
}

/// The per-tenant placeholder key from the state directory (the daemon's, so the CLI and the
/// proxy give the same placeholders). Without a state directory, an all-zero key still gives
/// stable placeholders, just not tenant-specific ones.
fn placeholder_key(dir: &Path) -> anyhow::Result<[u8; 32]> {
    if !dir.exists() {
        return Ok([0; 32]);
    }
    Ok(clawgate_wrapper::daemon::placeholder_key(dir)?)
}

pub(crate) fn scan(global: &GlobalArgs, env: &dyn Env, args: &ScanArgs) -> anyhow::Result<()> {
    let redactor = build(global, env, &args.input)?;
    let text = read_input(args.input.file.as_deref())?;
    let findings = redactor.scan(&text);
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| serde_json::json!({ "start": f.start, "end": f.end, "rule": f.rule, "detector": f.detector }))
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    } else {
        for f in &findings {
            let detector = serde_json::to_value(f.detector)?;
            writeln!(
                out,
                "{}..{} {} {}",
                f.start,
                f.end,
                f.rule,
                detector.as_str().unwrap_or("?")
            )?;
        }
    }
    Ok(())
}

pub(crate) fn redact(
    global: &GlobalArgs,
    env: &dyn Env,
    args: &crate::cli::RedactArgs,
) -> anyhow::Result<()> {
    let redactor = build(global, env, &args.input)?;
    let text = read_input(args.input.file.as_deref())?;
    let mut out = std::io::stdout().lock();
    out.write_all(redactor.redact(&text).as_bytes())?;
    Ok(())
}
