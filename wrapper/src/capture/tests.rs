#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};

use clawgate_redact::Redactor;
use clawgate_vault::{KdfParams, KeySource};

use super::*;
use crate::metrics::KindLabels;

const GH: &str = "ghp_N7ITxKLUkX0vyOYx6tzSnWQ36xgB0Oz12345";
const GH2: &str = "ghp_Q8ZTxKLUkX0vyOYx6tzSnWQ36xgB0Oz99999";
const KEY: [u8; 32] = [0x42; 32];

/// Records batches (names only); fails while `fail` is set.
#[derive(Default)]
struct FakeSink {
    fail: AtomicBool,
    batches: Mutex<Vec<Vec<String>>>,
}

impl CaptureSink for FakeSink {
    fn write(&self, batch: &[Captured]) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(crate::error::Error::Redact("the vault is on fire".into()));
        }
        self.batches
            .lock()
            .unwrap()
            .push(batch.iter().map(|c| c.name.to_string()).collect());
        Ok(())
    }
}

fn settings(mode: CaptureMode, max: usize) -> CaptureSettings {
    CaptureSettings {
        mode,
        max,
        ..CaptureSettings::default()
    }
}

fn redactor() -> Redactor {
    Redactor::builder().placeholder_key(KEY).build().unwrap()
}

fn settle(c: &Capturer) {
    for _ in 0..500 {
        if c.pending() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the writer did not finish");
}

#[test]
fn the_same_value_twice_is_one_write_and_one_name() {
    let sink = Arc::new(FakeSink::default());
    let family = prometheus_client::metrics::family::Family::default();
    let c = Capturer::start(
        &settings(CaptureMode::Rules, 10),
        sink.clone(),
        [],
        Outcomes::new(family.clone()),
    )
    .unwrap();
    let r = redactor();
    let cap = c.for_agent("main", "tool_result");
    let first = r.redact_capturing(&format!("a {GH}"), &cap).into_owned();
    let again = r.redact_capturing(&format!("a {GH}"), &cap).into_owned();
    settle(&c);
    let after = r.redact_capturing(&format!("a {GH}"), &cap).into_owned();
    assert!(
        first.starts_with("a SECRET_REF(captured_github-pat_"),
        "{first}"
    );
    assert_eq!(first, again);
    assert_eq!(first, after);
    let batches = sink.batches.lock().unwrap().clone();
    assert_eq!(batches.concat().len(), 1, "{batches:?}");
    let count = |kind| family.get_or_create(&KindLabels { kind }).get();
    assert_eq!(
        (count("queued"), count("stored"), count("failed")),
        (1, 1, 0)
    );
}

#[test]
fn beyond_the_cap_the_placeholder_stays() {
    let sink = Arc::new(FakeSink::default());
    let existing = [
        "captured_github-pat_0123456789".parse().unwrap(),
        "stripe".parse().unwrap(),
    ];
    let c = Capturer::start(
        &settings(CaptureMode::Rules, 2),
        sink.clone(),
        existing,
        Outcomes::default(),
    )
    .unwrap();
    let r = redactor();
    let cap = c.for_agent("main", "egress");
    assert!(
        r.redact_capturing(GH, &cap)
            .starts_with("SECRET_REF(captured_")
    );
    settle(&c);
    // Two captured now (one existing, one new): the third value keeps its placeholder.
    let third = r.redact_capturing(GH2, &cap);
    assert_eq!(third, r.redact(GH2));
    assert!(third.starts_with("[REDACTED:github-pat:"));
    // Removing captured secrets from the vault frees room.
    c.sync_known(Vec::<SecretName>::new());
    assert!(
        r.redact_capturing(GH2, &cap)
            .starts_with("SECRET_REF(captured_")
    );
}

#[test]
fn after_a_failed_write_new_secrets_keep_their_placeholder() {
    let sink = Arc::new(FakeSink::default());
    sink.fail.store(true, Ordering::SeqCst);
    let c = Capturer::start(
        &settings(CaptureMode::Rules, 10),
        sink.clone(),
        [],
        Outcomes::default(),
    )
    .unwrap();
    let r = redactor();
    let cap = c.for_agent("main", "tool_result");
    // Decided before the write: a reference (which will not resolve: refused as unknown).
    assert!(
        r.redact_capturing(GH, &cap)
            .starts_with("SECRET_REF(captured_")
    );
    settle(&c);
    // The write failed: neither that value nor a new one is referenced; never the raw value.
    for v in [GH, GH2] {
        let out = r.redact_capturing(v, &cap);
        assert_eq!(out, r.redact(v));
        assert!(out.starts_with("[REDACTED:github-pat:"), "{out}");
    }
    assert!(sink.batches.lock().unwrap().is_empty());
}

#[test]
fn entropy_findings_only_when_asked() {
    let text = "client_secret = \"Zx9kQ2mP7vR4tY8wL1nB6cH3jF5s0042\"\n";
    let r = redactor();
    let found: Vec<_> = r.scan(text).into_iter().map(|f| f.detector).collect();
    let rules_only = Capturer::start(
        &settings(CaptureMode::Rules, 10),
        Arc::new(FakeSink::default()),
        [],
        Outcomes::default(),
    )
    .unwrap();
    let both = Capturer::start(
        &settings(CaptureMode::RulesAndEntropy, 10),
        Arc::new(FakeSink::default()),
        [],
        Outcomes::default(),
    )
    .unwrap();
    let a = r.redact_capturing(text, &rules_only.for_agent("main", "egress"));
    let b = r.redact_capturing(text, &both.for_agent("main", "egress"));
    if found.contains(&DetectorKind::Entropy) {
        assert_eq!(a, r.redact(text));
        assert!(b.contains("SECRET_REF(captured_"), "{b}");
    } else {
        // Found by a rule: both capture it.
        assert!(a.contains("SECRET_REF(captured_"), "{a}");
    }
}

#[test]
fn vault_sink_stores_value_provenance_and_audit_and_the_vault_detector_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vault.key");
    clawgate_vault::generate_key_file(&key).unwrap();
    let vault = Arc::new(
        Vault::create(
            &dir.path().join("vault.db"),
            &KeySource::KeyFile(key),
            KdfParams::default(),
        )
        .unwrap(),
    );
    let store = Arc::new(Store::open(&dir.path().join("clawgate.db")).unwrap());
    let scope = Scope::new(["exec"], ["api.github.com"]).unwrap();
    let sink = Arc::new(VaultSink {
        vault: vault.clone(),
        store: store.clone(),
        scope: scope.clone(),
    });
    let c = Capturer::start(
        &CaptureSettings {
            mode: CaptureMode::Rules,
            max: 10,
            scope,
        },
        sink,
        [],
        Outcomes::default(),
    )
    .unwrap();
    let r = redactor();
    let text = format!("token: {GH}\n");
    let captured = r
        .redact_capturing(&text, &c.for_agent("agent-7", "tool_result"))
        .into_owned();
    settle(&c);
    let name = captured
        .strip_prefix("token: SECRET_REF(")
        .and_then(|s| s.strip_suffix(")\n"))
        .unwrap()
        .to_owned();
    let records = vault.list().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, name);
    assert_eq!(records[0].scope.hosts, ["api.github.com"]);
    assert_eq!(vault.get(&name.parse().unwrap()).unwrap().expose(), GH);
    assert_eq!(
        store.captured_by(&name).unwrap().as_deref(),
        Some("agent-7")
    );
    let audit = store.audit_tail(10).unwrap();
    let rec = audit.iter().find(|a| a.kind == "secret.captured").unwrap();
    assert!(rec.record.contains(&name) && rec.record.contains("agent-7"));
    assert!(audit.iter().all(|a| !a.record.contains(GH)));
    // The rebuilt redactor (vault values) writes the identical text.
    let rebuilt = Redactor::builder()
        .placeholder_key(KEY)
        .vault_values(vault.values_for_redaction().unwrap())
        .build()
        .unwrap();
    assert_eq!(rebuilt.redact(&text), captured);
}
