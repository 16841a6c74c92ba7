//! The dev Hub's operations, shared by the HTTP API, the operator page and the library API:
//! enrollment tokens, signed decisions and commands, bundles, keyset rotation, and the views of
//! what the appliances sent. Signing uses `clawgate_hub::signing` (the very code appliances
//! verify with), so what the dev Hub signs is what the protocol says.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use ed25519_dalek::SigningKey as DalekKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use clawgate_hub::command::CommandName;
use clawgate_hub::protocol::{
    CommandPayload, DecisionKind, DecisionPayload, EnrollmentTokenFile, KeysetPayload,
    SignedDecision, SigningKey, WireSecret,
};
use clawgate_hub::signing::{self, Keyset};
use clawgate_protocol::SecretString;

use crate::error::{Error, Result};
use crate::faults::Faults;
use crate::keys::{self, KeyMaterial, SigningKeys, TlsMaterial};
use crate::store::{
    Appliance, AuditStatus, HeartbeatView, Store, StoredApproval, UsageRow, UsageSums,
};

/// Who the dev Hub's decisions name as the decider.
pub const DECIDED_BY: &str = "user:devhub-operator";
/// Largest bundle accepted for publishing (as the appliance reads at most).
pub const MAX_BUNDLE_BYTES: usize = clawgate_policies::bundle::MAX_BUNDLE_BYTES;

/// Settings that are not key material.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `heartbeat_seconds` told at enrollment; `next_in_seconds` is jittered ±10 % around it.
    pub heartbeat_seconds: u32,
    /// How long a minted enrollment token stays valid, seconds.
    pub token_ttl_secs: i64,
    /// Longest long-poll actually held, seconds (the document allows `wait` up to 60; a lower
    /// cap keeps API fuzzers fast). Answers are the same, only sooner.
    pub max_wait_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat_seconds: 60,
            token_ttl_secs: 24 * 3600,
            max_wait_secs: 60,
        }
    }
}

/// How a fault-injected decision is made (see [`Hub::decide_with`]). The default is an honest
/// decision.
#[derive(Debug, Clone, Default)]
pub struct DecisionFault {
    /// Sign with a fresh key no appliance pins (the payload still names the current kid).
    pub unpinned_key: bool,
    /// Name this tenant instead of the appliance's.
    pub tenant: Option<String>,
    /// Name this appliance instead.
    pub appliance: Option<String>,
    /// Name this action hash instead of the request's.
    pub action_hash: Option<String>,
    /// Name this `decided_at` instead of now.
    pub decided_at: Option<i64>,
    /// Name this `expires_at` instead of the request's.
    pub expires_at: Option<i64>,
}

/// A summary of the received state, for the page and for tests.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// Hub time (skew included).
    pub now: i64,
    /// Approvals still pending.
    pub pending: Vec<PendingView>,
    /// Decided or expired approvals, newest last.
    pub decided: Vec<PendingView>,
    /// Usage totals per (tenant, agent, provider, model).
    pub usage: Vec<UsageRow>,
    /// Audit chains.
    pub audit: Vec<AuditStatus>,
    /// Latest heartbeats.
    pub heartbeats: Vec<HeartbeatView>,
    /// Published bundles: tenant, version, sha256, published_at.
    pub bundles: Vec<(String, u64, String, i64)>,
    /// Bundle status reports: appliance, version, status, reason.
    pub bundle_reports: Vec<crate::store::BundleReport>,
    /// Command results: appliance, command id, status, detail.
    pub command_results: Vec<(String, String, String, String)>,
}

/// An approval as the page shows it (the summary is text, never HTML).
#[derive(Debug, Clone, Serialize)]
pub struct PendingView {
    /// Approval id.
    pub approval_id: String,
    /// Appliance.
    pub appliance: String,
    /// Tenant.
    pub tenant: String,
    /// Class.
    pub class: String,
    /// Agent.
    pub agent: String,
    /// Tool.
    pub tool: String,
    /// The redacted one-line summary.
    pub summary: String,
    /// Request expiry.
    pub expires_at: i64,
    /// `pending`, `decided` or `expired`.
    pub status: String,
    /// The decision, once decided.
    pub decision: Option<String>,
}

/// The dev Hub's state.
#[derive(Debug)]
pub struct Hub {
    pub(crate) store: Store,
    pub(crate) faults: Faults,
    state_dir: PathBuf,
    signing: RwLock<SigningKeys>,
    tls: TlsMaterial,
    operator_hash: [u8; 32],
    operator_token: SecretString,
    pub(crate) settings: Settings,
    head: watch::Sender<i64>,
    url: RwLock<String>,
}

fn sys_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Hub {
    /// Opens the state directory (creating keys and database on first start).
    pub fn open(state_dir: &Path, settings: Settings) -> Result<Hub> {
        let KeyMaterial {
            signing,
            tls,
            operator_token,
        } = keys::load_or_create(state_dir)?;
        let store = Store::open(&state_dir.join("devhub.db"))?;
        let (head, _) = watch::channel(store.head()?);
        Ok(Hub {
            store,
            faults: Faults::default(),
            state_dir: state_dir.to_owned(),
            signing: RwLock::new(signing),
            operator_hash: Sha256::digest(operator_token.expose().as_bytes()).into(),
            operator_token,
            tls,
            settings,
            head,
            url: RwLock::new(String::new()),
        })
    }

    pub(crate) fn set_url(&self, url: String) {
        if let Ok(mut u) = self.url.write() {
            *u = url;
        }
    }

    /// The Hub's base URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.url.read().map(|u| u.clone()).unwrap_or_default()
    }

    /// The Hub's clock (fault skew included), Unix seconds.
    pub fn now(&self) -> i64 {
        sys_now().saturating_add(self.faults.skew())
    }

    /// The fault knobs (transport faults, clock skew, cursor expiry).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The database (read access for tests: every view is also a method here).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The TLS material (pin, certificate).
    pub fn tls(&self) -> &TlsMaterial {
        &self.tls
    }

    /// SHA-256 of the TLS leaf's SPKI, the appliances' pin.
    pub fn spki_pin(&self) -> [u8; 32] {
        self.tls.pin
    }

    /// The pin as lower-case hex.
    pub fn spki_pin_hex(&self) -> String {
        self.tls.pin_hex()
    }

    /// The operator token (page and admin API). The caller must not log it.
    pub fn operator_token(&self) -> &SecretString {
        &self.operator_token
    }

    pub(crate) fn operator_ok(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Comparing hashes: the time taken reveals nothing about the token.
        h == self.operator_hash
    }

    /// The signing keys' public halves, as enrollment answers them.
    pub fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        Ok(self.signing.read().map_err(|_| Error::Poisoned)?.public())
    }

    /// The keyset version told at enrollment.
    pub fn keyset_version(&self) -> Result<u64> {
        Ok(self
            .signing
            .read()
            .map_err(|_| Error::Poisoned)?
            .keyset_version)
    }

    /// The keyset an appliance enrolled now would trust (for tests calling the hub crate's
    /// checks directly).
    pub fn keyset(&self) -> Result<Keyset> {
        let s = self.signing.read().map_err(|_| Error::Poisoned)?;
        Keyset::new(s.keyset_version, &s.public(), &[self.tls.pin_hex()])
            .map_err(|e| Error::Keys(e.to_string()))
    }

    pub(crate) fn notify(&self, seq: i64) {
        self.head.send_if_modified(|h| {
            if seq > *h {
                *h = seq;
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    // ---- enrollment tokens ----

    /// Mints a one-time enrollment token for `tenant` and returns the token file's contents
    /// (hub URL, token, TLS pin, signing keys). The token is stored only as a hash.
    pub fn mint_token(&self, tenant: &str) -> Result<EnrollmentTokenFile> {
        let url = self.url();
        if url.is_empty() {
            return Err(Error::Invalid(
                "the dev Hub has no URL yet: start it before minting tokens".into(),
            ));
        }
        self.mint_token_for(tenant, &url)
    }

    /// As [`Hub::mint_token`], naming `hub_url` in the file (a Hub started elsewhere).
    pub fn mint_token_for(&self, tenant: &str, hub_url: &str) -> Result<EnrollmentTokenFile> {
        if !signing::valid_id(tenant) {
            return Err(Error::Invalid(format!(
                "tenant `{}` is not [A-Za-z0-9._:-]{{1,64}}",
                tenant.escape_debug()
            )));
        }
        if !hub_url.starts_with("https://") {
            return Err(Error::Invalid("the Hub URL must be https://…".into()));
        }
        let token = format!("cgt_{}", B64URL.encode(keys::random32()?.as_slice()));
        let now = self.now();
        self.store.add_token(
            &crate::store::secret_hash(&token),
            tenant,
            now,
            now.saturating_add(self.settings.token_ttl_secs),
        )?;
        Ok(EnrollmentTokenFile {
            hub: hub_url.to_owned(),
            token: WireSecret::new(token),
            tls_spki_sha256: vec![self.tls.pin_hex()],
            signing_keys: self.signing_keys()?,
        })
    }

    /// Mints a token and writes its file to `path` (mode 0600, refusing to overwrite).
    pub fn write_token_file(&self, tenant: &str, hub_url: &str, path: &Path) -> Result<()> {
        let file = self.mint_token_for(tenant, hub_url)?;
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(&file)
                .map_err(|e| Error::Invalid(format!("encoding: {e}")))?,
        );
        write_new_private(path, &bytes)
    }

    // ---- approvals ----

    /// Every approval with its state.
    pub fn approvals(&self) -> Result<Vec<StoredApproval>> {
        self.store.approvals()
    }

    /// The pending approvals.
    pub fn pending_approvals(&self) -> Result<Vec<StoredApproval>> {
        let now = self.now();
        Ok(self
            .store
            .approvals()?
            .into_iter()
            .filter(|a| a.state(now) == clawgate_hub::protocol::ApprovalState::Pending)
            .collect())
    }

    fn only_approval(&self, approval_id: &str) -> Result<StoredApproval> {
        let mut found = self.store.approvals_with_id(approval_id)?;
        match found.len() {
            0 => Err(Error::NotFound(format!(
                "approval `{}`",
                approval_id.escape_debug()
            ))),
            1 => Ok(found.remove(0)),
            n => Err(Error::Conflict(format!(
                "{n} appliances sent approval `{approval_id}`: decide by appliance"
            ))),
        }
    }

    /// Decides the pending approval `approval_id`: signs the decision with the current key,
    /// bound to the request's tenant, appliance, approval id and action hash, valid until the
    /// request's expiry; stores it and queues the `approval_decision` event. Refused if the
    /// approval is unknown, already decided or expired.
    pub fn decide(&self, approval_id: &str, decision: DecisionKind) -> Result<SignedDecision> {
        let approval = self.only_approval(approval_id)?;
        let now = self.now();
        match approval.state(now) {
            clawgate_hub::protocol::ApprovalState::Pending => {}
            clawgate_hub::protocol::ApprovalState::Decided => {
                return Err(Error::Conflict(format!(
                    "approval `{approval_id}` is already decided"
                )));
            }
            clawgate_hub::protocol::ApprovalState::Expired => {
                return Err(Error::Conflict(format!(
                    "approval `{approval_id}` has expired"
                )));
            }
        }
        let signed = self.sign_decision(&approval, decision, &DecisionFault::default(), now)?;
        let seq = self
            .store
            .record_decision(&approval.appliance, approval_id, &signed, now)?;
        self.notify(seq);
        tracing::info!(approval = %approval_id, appliance = %approval.appliance, decision = ?decision, "Approval decided.");
        Ok(signed)
    }

    /// Fault injection: signs a decision for `approval_id` altered as `fault` says and
    /// delivers it to the approval's appliance as an event, without recording it as the
    /// approval's decision (the approval stays pending).
    pub fn decide_with(
        &self,
        approval_id: &str,
        decision: DecisionKind,
        fault: &DecisionFault,
    ) -> Result<SignedDecision> {
        let approval = self.only_approval(approval_id)?;
        let now = self.now();
        let signed = self.sign_decision(&approval, decision, fault, now)?;
        let event = serde_json::json!({"type": "approval_decision", "decision": signed});
        let seq = self.store.push_event(
            Some(&approval.tenant),
            Some(&approval.appliance),
            "approval_decision",
            &event,
            now,
        )?;
        self.notify(seq);
        Ok(signed)
    }

    /// Fault injection: delivers the stored decision of `approval_id` again (a replay).
    pub fn replay_decision(&self, approval_id: &str) -> Result<SignedDecision> {
        let approval = self.only_approval(approval_id)?;
        let signed = approval.decision.ok_or_else(|| {
            Error::Conflict(format!(
                "approval `{approval_id}` has no decision to replay"
            ))
        })?;
        let event = serde_json::json!({"type": "approval_decision", "decision": signed});
        let seq = self.store.push_event(
            Some(&approval.tenant),
            Some(&approval.appliance),
            "approval_decision",
            &event,
            self.now(),
        )?;
        self.notify(seq);
        Ok(signed)
    }

    fn sign_decision(
        &self,
        approval: &StoredApproval,
        decision: DecisionKind,
        fault: &DecisionFault,
        now: i64,
    ) -> Result<SignedDecision> {
        let keys = self.signing.read().map_err(|_| Error::Poisoned)?;
        let (kid, key) = keys.current_key()?;
        let payload = DecisionPayload {
            tenant_id: fault
                .tenant
                .clone()
                .unwrap_or_else(|| approval.tenant.clone()),
            appliance_id: fault
                .appliance
                .clone()
                .unwrap_or_else(|| approval.appliance.clone()),
            approval_id: approval.request.approval_id.clone(),
            action_hash: fault
                .action_hash
                .clone()
                .unwrap_or_else(|| approval.request.action_hash.clone()),
            decision,
            decided_at: fault.decided_at.unwrap_or(now),
            expires_at: fault.expires_at.unwrap_or(approval.request.expires_at),
            decided_by: DECIDED_BY.into(),
            kid: kid.to_owned(),
        };
        let unpinned;
        let key: &DalekKey = if fault.unpinned_key {
            unpinned = keys::unpinned_key()?;
            &unpinned
        } else {
            key
        };
        signing::sign(&payload, key).map_err(|e| Error::Keys(e.to_string()))
    }

    // ---- commands ----

    /// Sends `name` to `appliance`: a signed command event. Only the three commands exist.
    pub fn send_command(&self, appliance: &str, name: CommandName) -> Result<String> {
        self.send_command_named(appliance, name.as_str())
    }

    /// Fault injection: a signed command with any name (the appliance must refuse unknown
    /// ones).
    pub fn send_raw_command(&self, appliance: &str, name: &str) -> Result<String> {
        self.send_command_named(appliance, name)
    }

    fn send_command_named(&self, appliance: &str, name: &str) -> Result<String> {
        let a = self
            .store
            .appliance(appliance)?
            .ok_or_else(|| Error::NotFound(format!("appliance `{}`", appliance.escape_debug())))?;
        let command_id = format!("cmd_{}", hex::encode(&keys::random32()?[..8]));
        let now = self.now();
        let signed = {
            let keys = self.signing.read().map_err(|_| Error::Poisoned)?;
            let (kid, key) = keys.current_key()?;
            let payload = CommandPayload {
                tenant_id: a.tenant.clone(),
                appliance_id: a.id.clone(),
                command_id: command_id.clone(),
                name: name.to_owned(),
                issued_at: now,
                kid: kid.to_owned(),
            };
            signing::sign(&payload, key).map_err(|e| Error::Keys(e.to_string()))?
        };
        let value = serde_json::to_value(&signed).map_err(|e| Error::Invalid(e.to_string()))?;
        let seq = self
            .store
            .add_command(&a, &command_id, name, &value, now, now)?;
        self.notify(seq);
        Ok(command_id)
    }

    // ---- keyset ----

    /// Rotates the signing key: a new key becomes current, and a `keyset` statement (the next
    /// version, every key, the TLS pin) signed by the previous key goes to every appliance.
    /// Returns the new key id.
    pub fn rotate_signing_key(&self) -> Result<String> {
        let mut keys = self.signing.write().map_err(|_| Error::Poisoned)?;
        let mut next = keys.clone();
        let old_kid = keys.current.clone();
        let new_kid = next.rotate()?;
        let payload = KeysetPayload {
            version: next.keyset_version,
            keys: next.public(),
            tls_spki_sha256: vec![self.tls.pin_hex()],
            kid: old_kid.clone(),
        };
        let old = keys
            .key(&old_kid)
            .ok_or_else(|| Error::Keys("current key missing".into()))?;
        let statement = signing::sign(&payload, old).map_err(|e| Error::Keys(e.to_string()))?;
        keys::store_signing(&self.state_dir, &next)?;
        *keys = next;
        drop(keys);
        let event = serde_json::json!({"type": "keyset", "keyset": statement});
        let seq = self
            .store
            .push_event(None, None, "keyset", &event, self.now())?;
        self.notify(seq);
        Ok(new_kid)
    }

    // ---- bundles ----

    /// Publishes a signed bundle (the bytes of `clawgate policy sign`): reads tenant and
    /// version from its manifest (the signature is the appliance's to check, against its own
    /// pinned bundle keys), refuses a version not above the tenant's newest, stores the bytes
    /// unchanged and announces `bundle_available`. Returns (tenant, version, sha256).
    pub fn publish_bundle(&self, bytes: &[u8]) -> Result<(String, u64, String)> {
        self.publish(bytes, false)
    }

    /// Fault injection: publishes a bundle whose version is not above the newest (a rollback)
    /// and announces it as the newest.
    pub fn publish_rolled_back_bundle(&self, bytes: &[u8]) -> Result<(String, u64, String)> {
        self.publish(bytes, true)
    }

    /// Fault injection: announces an already published, older version again as the newest.
    pub fn announce_bundle(&self, tenant: &str, version: u64) -> Result<String> {
        let (_, sha) = self
            .store
            .bundle(tenant, version)?
            .ok_or_else(|| Error::NotFound(format!("bundle {version} of `{tenant}`")))?;
        let event =
            serde_json::json!({"type": "bundle_available", "version": version, "sha256": sha});
        let seq =
            self.store
                .push_event(Some(tenant), None, "bundle_available", &event, self.now())?;
        self.notify(seq);
        Ok(sha)
    }

    fn publish(&self, bytes: &[u8], allow_rollback: bool) -> Result<(String, u64, String)> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(Error::Invalid(format!(
                "bundle is {} bytes, above the {MAX_BUNDLE_BYTES} appliances read",
                bytes.len()
            )));
        }
        let manifest = read_manifest(bytes)?;
        if !signing::valid_id(&manifest.tenant_id) {
            return Err(Error::Invalid(
                "the manifest's tenant_id is not a valid id".into(),
            ));
        }
        if manifest.version > clawgate_hub::protocol::MAX_SAFE_INTEGER {
            return Err(Error::Invalid(
                "the manifest's version is above 2^53 - 1".into(),
            ));
        }
        if !allow_rollback
            && let Some(newest) = self.store.newest_bundle(&manifest.tenant_id)?
            && manifest.version <= newest
        {
            return Err(Error::Conflict(format!(
                "tenant `{}` already has bundle version {newest}; a new bundle needs a higher version (got {})",
                manifest.tenant_id, manifest.version
            )));
        }
        let sha = hex::encode(Sha256::digest(bytes));
        let now = self.now();
        self.store
            .add_bundle(&manifest.tenant_id, manifest.version, &sha, bytes, now)?;
        let event = serde_json::json!({"type": "bundle_available", "version": manifest.version, "sha256": sha});
        let seq = self.store.push_event(
            Some(&manifest.tenant_id),
            None,
            "bundle_available",
            &event,
            now,
        )?;
        self.notify(seq);
        tracing::info!(tenant = %manifest.tenant_id, version = manifest.version, "Bundle published.");
        Ok((manifest.tenant_id, manifest.version, sha))
    }

    // ---- views ----

    /// Usage totals per (tenant, agent, provider, model).
    pub fn usage_totals(&self) -> Result<Vec<UsageRow>> {
        self.store.usage_rows()
    }

    /// Usage summed over everything of `tenant`.
    pub fn usage_sum(&self, tenant: &str) -> Result<UsageSums> {
        let mut sum = UsageSums::default();
        for r in self
            .store
            .usage_rows()?
            .into_iter()
            .filter(|r| r.tenant == tenant)
        {
            sum.input += r.sums.input;
            sum.output += r.sums.output;
            sum.cache_read += r.sums.cache_read;
            sum.cache_write += r.sums.cache_write;
            sum.requests += r.sums.requests;
            sum.incomplete += r.sums.incomplete;
            sum.buckets += r.sums.buckets;
        }
        Ok(sum)
    }

    /// The audit chain status of every appliance.
    pub fn audit_status(&self) -> Result<Vec<AuditStatus>> {
        self.store.audit_status()
    }

    /// The audit records held for `appliance`.
    pub fn audit_records(
        &self,
        appliance: &str,
    ) -> Result<Vec<clawgate_hub::protocol::AuditRecord>> {
        self.store.audit_records(appliance)
    }

    /// The latest heartbeat of every appliance.
    pub fn heartbeats(&self) -> Result<Vec<HeartbeatView>> {
        self.store.heartbeats()
    }

    /// Every enrolled appliance.
    pub fn appliances(&self) -> Result<Vec<Appliance>> {
        self.store.appliances()
    }

    /// Everything the page shows.
    pub fn overview(&self) -> Result<Overview> {
        let now = self.now();
        let mut pending = Vec::new();
        let mut decided = Vec::new();
        for a in self.store.approvals()? {
            let state = a.state(now);
            let view = PendingView {
                approval_id: a.request.approval_id.clone(),
                appliance: a.appliance.clone(),
                tenant: a.tenant.clone(),
                class: enum_text(&a.request.class),
                agent: a.request.agent.clone(),
                tool: a.request.tool.clone(),
                summary: a.request.summary.clone(),
                expires_at: a.request.expires_at,
                status: enum_text(&state),
                decision: a.decision.as_ref().map(|d| enum_text(&d.signed.decision)),
            };
            if state == clawgate_hub::protocol::ApprovalState::Pending {
                pending.push(view);
            } else {
                decided.push(view);
            }
        }
        Ok(Overview {
            now,
            pending,
            decided,
            usage: self.store.usage_rows()?,
            audit: self.store.audit_status()?,
            heartbeats: self.store.heartbeats()?,
            bundles: self.store.bundles()?,
            bundle_reports: self.store.bundle_reports()?,
            command_results: self.store.command_results()?,
        })
    }
}

fn enum_text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The manifest of a bundle document, unverified (the dev Hub only routes bundles; appliances
/// verify them).
pub fn read_manifest(bytes: &[u8]) -> Result<clawgate_policies::bundle::Manifest> {
    let doc: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Invalid(format!("bundle is not JSON: {e}")))?;
    crate::schema::schemas()
        .map_err(Error::Invalid)?
        .validate("BundleDocument", &doc)
        .map_err(|e| Error::Invalid(format!("not a clawgate-bundle/1 document: {e}")))?;
    let manifest_b64 = doc
        .get("manifest")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| Error::Invalid("bundle has no manifest".into()))?;
    let manifest = B64
        .decode(manifest_b64)
        .map_err(|_| Error::Invalid("bundle manifest is not standard base64".into()))?;
    serde_json::from_slice(&manifest)
        .map_err(|e| Error::Invalid(format!("bundle manifest does not parse: {e}")))
}

fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let context = || format!("writing {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(context(), e))?;
    f.write_all(bytes).map_err(|e| Error::io(context(), e))?;
    f.sync_all().map_err(|e| Error::io(context(), e))
}
