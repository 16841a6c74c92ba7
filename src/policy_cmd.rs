//! `clawgate keygen` and `clawgate policy sign|verify`: signed policy bundles from the command
//! line (the Hub signs in production; these serve self-managed installs, tests and debugging).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use clawgate_policies::bundle::{self, BundleSigner, Expectations, ManifestTemplate, TrustStore};
use clawgate_policies::{Class, Policy, Tier, ToolCall};

use crate::cli::{ClassifyArgs, KeygenArgs, PolicyCommand, UsageError};

/// Largest bundle or trust file read.
const MAX_READ: u64 = bundle::MAX_BUNDLE_BYTES as u64;

pub(crate) fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let signer = BundleSigner::generate(&args.key_id).map_err(|e| UsageError(e.to_string()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.secret_key)
        .with_context(|| format!("creating {}", args.secret_key.display()))?;
    let seed = zeroize::Zeroizing::new(format!("{}\n", hex_encode(signer.seed().as_ref())));
    file.write_all(seed.as_bytes())
        .and_then(|()| file.sync_all())?;
    print!("{}", signer.trust_entry());
    eprintln!(
        "wrote the secret key to {} (mode 0600); the lines above pin its public key in a trust file",
        args.secret_key.display()
    );
    Ok(())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Sign {
            dir,
            secret_key,
            key_id,
            tenant,
            version,
            tier,
            expires_in_days,
            issued_at,
            out,
        } => {
            let seed = clawgate_vault::read_key_file(&secret_key)?;
            let seed: [u8; 32] = seed
                .as_slice()
                .try_into()
                .context("secret key must be 32 bytes")?;
            let signer =
                BundleSigner::from_seed(&key_id, &seed).map_err(|e| UsageError(e.to_string()))?;
            let files = bundle::read_policy_dir(&dir)?;
            let issued_at = issued_at.unwrap_or_else(now_secs);
            let template = ManifestTemplate {
                tenant_id: &tenant,
                version,
                issued_at,
                expires_at: issued_at
                    .saturating_add(i64::from(expires_in_days).saturating_mul(86_400)),
                autonomy_tier: tier,
            };
            let signed = signer.sign(&template, &files)?;
            write_new(&out, &signed)?;
            eprintln!(
                "signed {} file(s) from {} as version {version} for {tenant}: {}",
                files.len(),
                dir.display(),
                out.display()
            );
            Ok(())
        }
        PolicyCommand::Test { dir, corpus } => policy_test(&dir, &corpus),
        PolicyCommand::Verify {
            bundle: path,
            trust,
            tenant,
            high_water,
            allow_current,
            now,
            json,
        } => {
            let trust = TrustStore::from_toml(&read_text(&trust)?)?;
            let raw = clawgate_protocol::io::read_capped(&path, MAX_READ)
                .with_context(|| format!("reading {}", path.display()))?;
            let expect = Expectations {
                tenant_id: &tenant,
                high_water,
                allow_current,
                now: now.unwrap_or_else(now_secs),
            };
            let ok = bundle::verify(&raw, &trust, &expect)
                .with_context(|| format!("{} refused", path.display()))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "manifest": ok.manifest, "manifest_sha256": ok.manifest_sha256 })
                );
            } else {
                let m = &ok.manifest;
                println!(
                    "ok: tenant {} version {} tier {} key {} expires {} ({} files, manifest sha256 {})",
                    m.tenant_id,
                    m.version,
                    m.autonomy_tier,
                    m.key_id,
                    m.expires_at,
                    m.files.len(),
                    ok.manifest_sha256
                );
            }
            Ok(())
        }
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = clawgate_protocol::io::read_capped(path, MAX_READ)
        .with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Loads the policy for `classify`: built-in default, a directory, or a verified bundle (with the
/// bundle's autonomy tier).
fn load_policy(args: &ClassifyArgs) -> anyhow::Result<(Policy, Option<Tier>)> {
    let Some(path) = &args.policy else {
        return Ok((Policy::default_policy()?, None));
    };
    if path.is_dir() {
        return Ok((Policy::load_dir(path)?, None));
    }
    let (Some(trust), Some(tenant)) = (&args.trust, &args.tenant) else {
        anyhow::bail!(UsageError(
            "a bundle given with --policy needs --trust and --tenant to verify it".into()
        ));
    };
    let trust = TrustStore::from_toml(&read_text(trust)?)?;
    let raw = clawgate_protocol::io::read_capped(path, MAX_READ)
        .with_context(|| format!("reading {}", path.display()))?;
    let expect = Expectations {
        tenant_id: tenant,
        high_water: 0,
        allow_current: true,
        now: now_secs(),
    };
    let verified = bundle::verify(&raw, &trust, &expect)
        .with_context(|| format!("{} refused", path.display()))?;
    let (policy, tier) = verified.policy()?;
    Ok((policy, Some(tier)))
}

pub(crate) fn classify(args: &ClassifyArgs) -> anyhow::Result<()> {
    let (policy, bundle_tier) = load_policy(args)?;
    let tier = match args.tier {
        Some(n) => {
            Tier::from_number(n).ok_or_else(|| UsageError(format!("tier {n} is not 1, 2 or 3")))?
        }
        None => bundle_tier.unwrap_or(Tier::Supervised),
    };
    if let Some(command) = &args.shell {
        println!(
            "{}",
            serde_json::to_string(&policy.decide(&ToolCall::exec(command), tier))?
        );
        return Ok(());
    }
    let mut failures = 0usize;
    for (index, line) in std::io::stdin().lines().enumerate() {
        let line = line.context("reading standard input")?;
        if line.trim().is_empty() {
            continue;
        }
        match classify_line(&policy, tier, &line) {
            Ok(Some(decision)) => println!("{decision}"),
            Ok(None) => {}
            Err(e) => {
                failures += 1;
                println!(
                    "{}",
                    serde_json::json!({ "error": format!("line {}: {e}", index + 1) })
                );
            }
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} line(s) could not be classified");
    }
    Ok(())
}

/// One input line to one output line. Lines recorded for other hooks (`"hook": "after_tool_call"`
/// in a captured event log) are skipped, so such logs can be piped in whole.
fn classify_line(policy: &Policy, tier: Tier, line: &str) -> anyhow::Result<Option<String>> {
    if line.len() > MAX_READ as usize {
        anyhow::bail!("line longer than {MAX_READ} bytes");
    }
    let value: serde_json::Value = serde_json::from_str(line).context("not JSON")?;
    if let Some(hook) = value.get("hook").and_then(serde_json::Value::as_str)
        && hook != "before_tool_call"
    {
        return Ok(None);
    }
    let call = ToolCall::from_hook_event(&value)?;
    Ok(Some(serde_json::to_string(&policy.decide(&call, tier))?))
}

#[derive(serde::Deserialize)]
struct CorpusEntry {
    command: String,
    expected_class: String,
}

fn policy_test(dir: &Path, corpora: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let policy = Policy::load_dir(dir).with_context(|| format!("loading {}", dir.display()))?;
    println!(
        "{}: loaded; every rule's match and not_match examples passed",
        dir.display()
    );
    let mut failed = 0usize;
    for file in corpora {
        let entries: Vec<CorpusEntry> = serde_json::from_str(&read_text(file)?)
            .with_context(|| format!("parsing {}", file.display()))?;
        let mut passed = 0usize;
        for entry in &entries {
            let expected = Class::parse(&entry.expected_class).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: unknown class `{}`",
                    file.display(),
                    entry.expected_class
                )
            })?;
            let verdict = policy.classify_shell(&entry.command);
            if verdict.class >= expected {
                passed += 1;
            } else {
                failed += 1;
                println!(
                    "FAIL {}: {:?} classified {} ({}), expected at least {}",
                    file.display(),
                    entry.command,
                    verdict.class,
                    verdict.rule(),
                    expected
                );
            }
        }
        println!(
            "{}: {passed}/{} at least as strict as expected",
            file.display(),
            entries.len()
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} corpus case(s) classified less strictly than expected");
    }
    Ok(())
}
