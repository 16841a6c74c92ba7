//! Integration tests: the appliance's own client (`clawgate_hub`: enrollment, `HubClient`, the
//! decision, command and keyset checks) against an in-process dev Hub on 127.0.0.1:0. One test
//! binary (`cargo nextest run -p clawgate-devhub`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: panics are failures

mod faults;
mod http;
mod protocol;
mod secrets;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clawgate_devhub::{Config, DevHub};
use clawgate_hub::client::{HubClient, Timeouts};
use clawgate_hub::enroll::{EnrollOptions, enroll};
use clawgate_hub::identity::Identity;
use clawgate_hub::protocol::{
    ApprovalClass, ApprovalRequest, AuditRecord, Band, EgressLock, Health, HealthComponents,
    Heartbeat, PluginState,
};

/// A started dev Hub with its temporary state directory.
pub(crate) struct TestHub {
    pub(crate) hub: DevHub,
    pub(crate) dir: tempfile::TempDir,
}

impl TestHub {
    pub(crate) async fn start() -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let hub = DevHub::start(Config::new(dir.path().join("hub")))
            .await
            .unwrap();
        TestHub { hub, dir }
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("hub")
    }

    /// Stops the Hub and starts it again on the same state directory and port.
    pub(crate) async fn restart(self) -> TestHub {
        let TestHub { hub, dir } = self;
        let addr = hub.addr();
        hub.shutdown().await;
        let mut config = Config::new(dir.path().join("hub"));
        config.listen = addr;
        // The port was ours a moment ago; retry briefly if the kernel has not released it.
        let mut last = None;
        for _ in 0..50 {
            match DevHub::start(config.clone()).await {
                Ok(hub) => return TestHub { hub, dir },
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("restart failed: {last:?}");
    }

    /// Enrolls a new appliance of `tenant` the way `clawgate enroll` does; returns its state
    /// directory's identity and a client.
    pub(crate) async fn enroll(&self, tenant: &str) -> Appliance {
        let base = self.dir.path().join(format!("appl-{}", rand_suffix()));
        std::fs::create_dir_all(&base).unwrap();
        let token_path = base.join("token.json");
        let file = self.hub.mint_token(tenant).unwrap();
        std::fs::write(&token_path, serde_json::to_vec(&file).unwrap()).unwrap();
        std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let identity = enroll(&token_path, &base, &options()).await.unwrap();
        assert!(
            !token_path.exists(),
            "the token file is destroyed after enrollment"
        );
        let client = identity.client(fast()).unwrap();
        Appliance { identity, client }
    }
}

pub(crate) struct Appliance {
    pub(crate) identity: Identity,
    pub(crate) client: HubClient,
}

pub(crate) fn options() -> EnrollOptions {
    EnrollOptions {
        hostname: "test-vps".into(),
        version: "0.1.0".into(),
        timeouts: fast(),
    }
}

/// Short deadlines: a hang fails the call quickly (the tests assert on the error, never on
/// how long anything took).
pub(crate) fn fast() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(5),
        poll_margin: Duration::from_secs(5),
        bundle: Duration::from_secs(5),
    }
}

pub(crate) fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    hex::encode(b)
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) fn heartbeat() -> Heartbeat {
    Heartbeat {
        version: "0.1.0".into(),
        bundle_version: None,
        bundle_sha256: None,
        config_sha256: "ab".repeat(32),
        openclaw_plugin: PluginState {
            present: true,
            version: Some("1.2.3".into()),
        },
        egress_lock: EgressLock::Active,
        pending_approvals: 0,
        failed_pushes_1h: 0,
        vault_generation: Some(1),
        health: Health {
            score: 100,
            band: Band::Healthy,
            components: HealthComponents {
                connectivity: 20,
                sync_freshness: 20,
                policy_compliance: 20,
                runtime_health: 20,
                stability: 20,
            },
        },
        sent_at: now(),
    }
}

pub(crate) fn approval_request(id: &str, summary: &str) -> ApprovalRequest {
    ApprovalRequest {
        approval_id: id.into(),
        action_hash: "cd".repeat(32),
        class: ApprovalClass::YellowExternal,
        summary: summary.into(),
        agent: "main".into(),
        tool: "exec".into(),
        created_at: now(),
        expires_at: now() + 24 * 3600,
    }
}

/// A valid chain of `n` audit records from seq 1.
pub(crate) fn audit_chain(n: i64) -> Vec<AuditRecord> {
    let mut prev = clawgate_devhub::store::GENESIS.to_owned();
    (1..=n)
        .map(|seq| {
            let ts = 1_795_000_000_000 + seq;
            let kind = "tool.decided".to_owned();
            let record = format!("{{\"seq\":{seq},\"decision\":\"allow\"}}");
            let hash = clawgate_devhub::store::audit_hash(seq, ts, &kind, &prev, &record);
            let r = AuditRecord {
                seq,
                ts,
                kind,
                prev: prev.clone(),
                hash: hash.clone(),
                record,
            };
            prev = hash;
            r
        })
        .collect()
}

/// A bundle for `tenant` at `version`, signed by `signer` (as `clawgate policy sign` makes it).
pub(crate) fn bundle(
    signer: &clawgate_policies::bundle::BundleSigner,
    tenant: &str,
    version: u64,
) -> Vec<u8> {
    let mut files = std::collections::BTreeMap::new();
    files.insert("00-test.toml".to_owned(), b"# test policy file\n".to_vec());
    signer
        .sign(
            &clawgate_policies::bundle::ManifestTemplate {
                tenant_id: tenant,
                version,
                issued_at: now() - 10,
                expires_at: now() + 3600,
                autonomy_tier: 2,
            },
            &files,
        )
        .unwrap()
}

pub(crate) fn exists_nonempty(p: &Path) -> bool {
    std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false)
}
