//! `clawgate vault …`: thin wrappers over `clawgate_vault::Vault` that add the state directory,
//! the key choice, stdin/terminal handling and human or JSON output.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use clawgate_protocol::env::Env;
use clawgate_protocol::{SecretName, SecretString};
use clawgate_vault::envfile::{self, MAX_ENV_FILE};
use clawgate_vault::{KdfParams, KeySource, MAX_VALUE_LEN, RecordInfo, Scope, Vault};

use crate::cli::{GlobalArgs, KdfArgs, KeyArgs, NewKeyArgs, ScopeArgs, UsageError, VaultCommand};
use crate::state::{self, VAULT_DB};

pub(crate) fn run(global: &GlobalArgs, env: &dyn Env, cmd: VaultCommand) -> anyhow::Result<()> {
    let dir = state::state_dir(global.state_dir.as_deref(), env)?;
    let db = dir.join(VAULT_DB);
    let open = |key: &KeyArgs| -> anyhow::Result<Vault> {
        let source = state::key_source(key, &dir, env)?;
        Vault::open(&db, &source).with_context(|| format!("opening vault {}", db.display()))
    };
    match cmd {
        VaultCommand::Init { key, kdf } => init(&dir, &db, &key, &kdf, env),
        VaultCommand::Put { name, scope, key } => put(&open(&key)?, &parse_name(&name)?, &scope),
        VaultCommand::Get {
            name,
            version,
            reveal,
            key,
        } => get(&open(&key)?, &parse_name(&name)?, version, reveal),
        VaultCommand::List { json, key } => list(&open(&key)?, &dir, json),
        VaultCommand::Rm { name, key } => {
            let name = parse_name(&name)?;
            open(&key)?.remove(&name)?;
            eprintln!("removed {name}");
            Ok(())
        }
        VaultCommand::Rotate { batch_size, key } => rotate(&open(&key)?, batch_size),
        VaultCommand::Rekey { key, new, kdf } => rekey(&open(&key)?, &new, &kdf),
        VaultCommand::ImportEnv { file, scope, key } => import_env(&file, &scope, || open(&key)),
        VaultCommand::Verify { json, key } => {
            let report = open(&key)?.verify()?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "ok: generation {}, {} secrets, {} stored versions, {} live key term(s), {} record(s) awaiting re-seal",
                    report.generation,
                    report.secrets,
                    report.versions,
                    report.live_terms,
                    report.pending_reseal
                );
            }
            Ok(())
        }
        VaultCommand::AcceptRestore { key } => {
            let source = state::key_source(&key, &dir, env)?;
            let vault = Vault::open_accepting_restore(&db, &source)?;
            eprintln!(
                "accepted the vault as it is now (generation {}); recorded in the change log",
                vault.generation()?
            );
            Ok(())
        }
        VaultCommand::Log {
            after,
            limit,
            json,
            key,
        } => log(&open(&key)?, after, limit, json),
    }
}

fn parse_name(name: &str) -> anyhow::Result<SecretName> {
    SecretName::new(name).map_err(|e| UsageError(e.to_string()).into())
}

fn kdf_params(args: &KdfArgs) -> anyhow::Result<KdfParams> {
    let params = KdfParams {
        memory_kib: args.kdf_memory_mib.saturating_mul(1024),
        iterations: args.kdf_iterations,
        parallelism: args.kdf_parallelism,
    };
    params.validate().map_err(|e| UsageError(e.to_string()))?;
    Ok(params)
}

fn init(dir: &Path, db: &Path, key: &KeyArgs, kdf: &KdfArgs, env: &dyn Env) -> anyhow::Result<()> {
    let kdf = kdf_params(kdf)?;
    state::ensure_state_dir(dir)?;
    if db.exists() {
        bail!(clawgate_vault::Error::AlreadyExists(db.to_owned()));
    }
    let source = state::key_source(key, dir, env)?;
    // The embedded default: a fresh key file next to the vault, created only for a new vault.
    let generated = match &source {
        KeySource::KeyFile(path) if state::is_default_key(key) && !path.exists() => {
            clawgate_vault::generate_key_file(path)?;
            Some(path.clone())
        }
        _ => None,
    };
    Vault::create(db, &source, kdf).with_context(|| format!("creating vault {}", db.display()))?;
    eprintln!("created vault {}", db.display());
    if let Some(path) = generated {
        eprintln!(
            "generated its key file {} (mode 0600): back it up; without it the vault cannot be opened",
            path.display()
        );
    }
    Ok(())
}

fn scope_from(args: &ScopeArgs) -> anyhow::Result<Scope> {
    Scope::new(&args.tools, &args.hosts).map_err(|e| UsageError(e.to_string()).into())
}

fn put(vault: &Vault, name: &SecretName, args: &ScopeArgs) -> anyhow::Result<()> {
    let scope = if args.tools.is_empty() && args.hosts.is_empty() {
        // No scope given: an update keeps the scope the secret already has.
        match vault.list()?.into_iter().find(|r| r.name == name.as_str()) {
            Some(existing) => existing.scope,
            None => {
                eprintln!(
                    "note: {name} has an empty scope, so no tool may receive it; add --tool/--host to allow use"
                );
                Scope::default()
            }
        }
    } else {
        scope_from(args)?
    };
    let value = read_value(name)?;
    let version = vault.put(name, &value, &scope)?;
    eprintln!("stored {name} version {version}");
    Ok(())
}

/// Reads a secret value: prompted without echo on a terminal, else all of stdin with one
/// trailing newline removed.
fn read_value(name: &SecretName) -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    let text = if stdin.is_terminal() {
        rpassword::prompt_password(format!("value for {name}: "))
            .context("reading the value from the terminal")?
    } else {
        let bytes = zeroize::Zeroizing::new(
            clawgate_protocol::io::read_to_end_capped(stdin.lock(), MAX_VALUE_LEN as u64 + 2)
                .context("reading the value from standard input")?,
        );
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("the value is not UTF-8 text"))?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        text.strip_suffix('\r').unwrap_or(text).to_owned()
    };
    Ok(SecretString::new(text))
}

fn get(vault: &Vault, name: &SecretName, version: Option<i64>, reveal: bool) -> anyhow::Result<()> {
    if !reveal && !std::io::stdout().is_terminal() {
        bail!(UsageError(
            "refusing to print a secret to a pipe or file; pass --reveal if that is what you want"
                .into()
        ));
    }
    let value = match version {
        Some(v) => vault.get_version(name, v)?,
        None => vault.get(name)?,
    };
    println!("{}", value.expose());
    Ok(())
}

fn list(vault: &Vault, dir: &Path, json: bool) -> anyhow::Result<()> {
    let records = vault.list()?;
    let captures = captures(dir);
    let captured = |name: &str| {
        captures.get(name).map_or_else(
            // Captured shape but no provenance (clawgate.db missing or unreadable).
            || clawgate_redact::capture::captured_tag(name).map(|_| serde_json::json!({})),
            |c| Some(serde_json::to_value(c).unwrap_or_default()),
        )
    };
    if json {
        let rows: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["captured"] = captured(&r.name).unwrap_or(serde_json::Value::Null);
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<32} {:>7} {:<20} {:<24} {:<24} CAPTURED",
        "NAME", "VERSION", "UPDATED (UTC)", "TOOLS", "HOSTS"
    );
    for RecordInfo {
        name,
        version,
        scope,
        updated_at_ms,
        ..
    } in records
    {
        let tools = if scope.tools.is_empty() {
            "-".to_owned()
        } else {
            scope.tools.join(",")
        };
        let hosts = if scope.hosts.is_empty() {
            "-".to_owned()
        } else {
            scope.hosts.join(",")
        };
        let marker = match (captures.get(&name), captured(&name)) {
            (Some(c), _) => format!("captured ({}, agent {})", c.rule, c.agent),
            (None, Some(_)) => "captured".to_owned(),
            (None, None) => "-".to_owned(),
        };
        println!(
            "{name:<32} {version:>7} {:<20} {tools:<24} {hosts:<24} {marker}",
            fmt_utc(updated_at_ms)
        );
    }
    Ok(())
}

/// Provenance of captured secrets from the daemon's database, by name; empty when there is
/// none (no daemon has run here, or an older database without the table).
fn captures(dir: &Path) -> std::collections::HashMap<String, clawgate_wrapper::store::CaptureInfo> {
    let db = dir.join(clawgate_wrapper::config::DAEMON_DB);
    if !db.exists() {
        return std::collections::HashMap::new();
    }
    clawgate_wrapper::store::Store::open_read_only(&db)
        .and_then(|s| s.captures())
        .map(|all| all.into_iter().map(|c| (c.name.clone(), c)).collect())
        .unwrap_or_default()
}

fn rotate(vault: &Vault, batch: usize) -> anyhow::Result<()> {
    if batch == 0 {
        bail!(UsageError("--batch-size must be at least 1".into()));
    }
    let report = vault.rotate(batch, |done, remaining| {
        eprintln!("resealed {done}, remaining {remaining}")
    })?;
    eprintln!(
        "{} rotation to key term {}: {} record(s) re-sealed, {} old term(s) retired and erased",
        if report.resumed {
            "finished interrupted"
        } else {
            "completed"
        },
        report.term,
        report.resealed,
        report.retired
    );
    Ok(())
}

fn rekey(vault: &Vault, new: &NewKeyArgs, kdf: &KdfArgs) -> anyhow::Result<()> {
    let source = match (&new.new_passphrase_file, &new.new_key_file) {
        (Some(file), _) => KeySource::Passphrase(state::read_passphrase(file)?),
        (None, Some(file)) => KeySource::KeyFile(file.clone()),
        (None, None) => bail!(UsageError(
            "give --new-passphrase-file or --new-key-file".into()
        )),
    };
    vault.rekey(&source, kdf_params(kdf)?)?;
    eprintln!("rekeyed: the old key or passphrase no longer opens the vault");
    Ok(())
}

fn import_env(
    file: &Path,
    args: &ScopeArgs,
    open: impl FnOnce() -> anyhow::Result<Vault>,
) -> anyhow::Result<()> {
    let meta =
        std::fs::symlink_metadata(file).with_context(|| format!("reading {}", file.display()))?;
    if !meta.file_type().is_file() {
        bail!(
            "{} is not a regular file (symlinks are refused, so the overwrite cannot hit another file)",
            file.display()
        );
    }
    let scope = scope_from(args)?;
    let bytes = zeroize::Zeroizing::new(
        clawgate_protocol::io::read_capped(file, MAX_ENV_FILE)
            .with_context(|| format!("reading {}", file.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", file.display()))?;
    let entries = envfile::parse(file, text)?;
    let (empty, entries): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.value.is_empty());
    let items: Vec<_> = entries
        .into_iter()
        .map(|e| (e.name, e.value, scope.clone()))
        .collect();
    let vault = open()?;
    if !items.is_empty() {
        vault.put_many(&items)?;
    }
    // Only now, with the vault transaction committed, destroy the plaintext.
    envfile::destroy_plaintext(file)?;
    let names: Vec<&str> = items.iter().map(|(n, _, _)| n.as_str()).collect();
    eprintln!(
        "imported {} secret(s) from {}: {}",
        names.len(),
        file.display(),
        names.join(", ")
    );
    if !empty.is_empty() {
        let skipped: Vec<&str> = empty.iter().map(|e| e.name.as_str()).collect();
        eprintln!(
            "skipped {} empty value(s): {}",
            skipped.len(),
            skipped.join(", ")
        );
    }
    if scope.tools.is_empty() {
        eprintln!(
            "note: the imported secrets have an empty scope; no tool may receive them until you `vault put` them with --tool/--host"
        );
    }
    eprintln!("{} was overwritten and removed", file.display());
    Ok(())
}

fn log(vault: &Vault, after: i64, limit: usize, json: bool) -> anyhow::Result<()> {
    for c in vault.changes(after, limit)? {
        if json {
            println!("{}", serde_json::to_string(&c)?);
            continue;
        }
        let mut line = format!(
            "{:>6} {} {:<14} {}",
            c.seq,
            fmt_utc(c.at_ms),
            c.action,
            c.outcome
        );
        if let Some(name) = &c.name {
            line.push_str(&format!(" {name}"));
        }
        if let Some(v) = c.version {
            line.push_str(&format!(" v{v}"));
        }
        if let Some(tool) = &c.tool {
            line.push_str(&format!(" tool={tool}"));
        }
        if !c.hosts.is_empty() {
            line.push_str(&format!(" hosts={}", c.hosts.join(",")));
        }
        if let Some(d) = &c.detail {
            line.push_str(&format!(" ({d})"));
        }
        println!("{line}");
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, from Unix milliseconds (Howard Hinnant's civil-from-days).
fn fmt_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formatting() {
        assert_eq!(super::fmt_utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::fmt_utc(1_795_405_303_000), "2026-11-23 03:41:43");
        assert_eq!(super::fmt_utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
