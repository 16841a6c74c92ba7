//! The wire types of `hub/openapi.json`, one Rust type per schema. Every example in the document
//! deserialises into its type here and re-serialises to the same JSON (tests at the bottom), so
//! the two cannot drift apart silently.
//!
//! Unknown fields are refused everywhere (`deny_unknown_fields`), as the document says
//! (`additionalProperties: false`). Events are the one exception by design: an event of a type
//! this appliance does not know, or that does not parse, becomes [`Event::Unrecognised`] or
//! [`Event::Malformed`] so the rest of its batch is still handled.

use clawgate_protocol::SecretString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// `info.version` of `hub/openapi.json`.
pub const PROTOCOL_VERSION: &str = "1.0.0";
/// Largest integer JavaScript reads exactly (2^53 - 1); every integer in the protocol stays
/// within ± this.
pub const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;

/// A secret on the wire (enrollment token, bearer credential). `Debug` and `Display` print
/// `**REDACTED**` and the value is zeroized on drop, like [`SecretString`]; unlike it, this type
/// is `Serialize`, because the value must reach the wire. Never serialise a type holding one into
/// a log line.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct WireSecret(SecretString);

impl WireSecret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(SecretString::new(value))
    }
    /// The plaintext, for the one place that hands it on.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
    /// As a [`SecretString`].
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl From<SecretString> for WireSecret {
    fn from(value: SecretString) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for WireSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for WireSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

impl<'de> Deserialize<'de> for WireSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::new(String::deserialize(d)?))
    }
}

/// `Error`: the body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The `error` object of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Machine-readable code.
    pub code: String,
    /// For people.
    pub message: String,
    /// With `audit_gap`: the seq the Hub expects next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_seq: Option<u64>,
}

/// `SigningKey`: a pinned Hub signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKey {
    /// Key id.
    pub kid: String,
    /// Standard base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
}

/// `EnrollmentTokenFile`: what the provisioner writes over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenFile {
    /// Hub base URL (https).
    pub hub: String,
    /// The one-time token.
    pub token: WireSecret,
    /// Pinned TLS SPKI SHA-256 (hex).
    pub tls_spki_sha256: Vec<String>,
    /// Pinned signing keys.
    pub signing_keys: Vec<SigningKey>,
}

/// `EnrollRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time token.
    pub token: WireSecret,
    /// This machine's host name.
    pub hostname: String,
    /// Clawgate's version.
    pub version: String,
}

/// `EnrollResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollResponse {
    /// Tenant.
    pub tenant_id: String,
    /// This appliance.
    pub appliance_id: String,
    /// The bearer credential.
    pub credential: WireSecret,
    /// The current keyset.
    pub signing_keys: Vec<SigningKey>,
    /// Its version.
    pub keyset_version: u64,
    /// Heartbeat interval until the first heartbeat answer says otherwise.
    pub heartbeat_seconds: u32,
}

/// `RotateResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateResponse {
    /// The new credential.
    pub credential: WireSecret,
}

/// A signed payload: `{signed, signature}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    /// The payload; its canonical JSON (with the domain prefix) is what was signed.
    pub signed: T,
    /// Standard base64 of the 64-byte Ed25519 signature.
    pub signature: String,
}

/// An approval decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// One execution of exactly this action.
    AllowOnce,
    /// The same action for 24 hours.
    #[serde(rename = "allow_24h")]
    Allow24h,
    /// Blocked.
    Deny,
}

/// `DecisionPayload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionPayload {
    /// Tenant.
    pub tenant_id: String,
    /// Appliance.
    pub appliance_id: String,
    /// The approval request.
    pub approval_id: String,
    /// Its action hash.
    pub action_hash: String,
    /// The decision.
    pub decision: DecisionKind,
    /// When, Unix seconds.
    pub decided_at: i64,
    /// Void after, Unix seconds.
    pub expires_at: i64,
    /// Who decided.
    pub decided_by: String,
    /// Signing key.
    pub kid: String,
}

/// `SignedDecision`.
pub type SignedDecision = Signed<DecisionPayload>;

/// `CommandPayload`. `name` stays a string so that a validly signed command with a name this
/// appliance does not run can still be reported as refused (see `command.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandPayload {
    /// Tenant.
    pub tenant_id: String,
    /// Appliance.
    pub appliance_id: String,
    /// Command id (idempotency).
    pub command_id: String,
    /// `reload`, `reconcile` or `restart`.
    pub name: String,
    /// When, Unix seconds.
    pub issued_at: i64,
    /// Signing key.
    pub kid: String,
}

/// `SignedCommand`.
pub type SignedCommand = Signed<CommandPayload>;

/// `KeysetPayload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysetPayload {
    /// Strictly above the current version.
    pub version: u64,
    /// The new signing keys.
    pub keys: Vec<SigningKey>,
    /// The new TLS pins.
    pub tls_spki_sha256: Vec<String>,
    /// Signing key (of the current keyset).
    pub kid: String,
}

/// `SignedKeyset`.
pub type SignedKeyset = Signed<KeysetPayload>;

/// The event types this appliance knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KnownEvent {
    /// `BundleAvailableEvent`.
    BundleAvailable {
        /// Bundle version.
        version: u64,
        /// SHA-256 of the bundle document bytes.
        sha256: String,
    },
    /// `ApprovalDecisionEvent`.
    ApprovalDecision {
        /// The signed decision.
        decision: SignedDecision,
    },
    /// `CommandEvent`.
    Command {
        /// The signed command.
        command: SignedCommand,
    },
    /// `KeysetEvent`.
    Keyset {
        /// The signed statement.
        keyset: SignedKeyset,
    },
}

/// Type names of [`KnownEvent`].
pub const KNOWN_EVENT_TYPES: [&str; 4] =
    ["bundle_available", "approval_decision", "command", "keyset"];

/// One event of a batch, as received.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A known, well-formed event.
    Known(KnownEvent),
    /// A type this appliance does not know: skipped and recorded, never executed.
    Unrecognised {
        /// Its `type` (escaped for logs, cut at 64 characters), or `(none)`.
        kind: String,
        /// The event as received.
        raw: Value,
    },
    /// A known type whose body does not parse: skipped and recorded.
    Malformed {
        /// Its `type`.
        kind: String,
        /// Why it does not parse.
        error: String,
        /// The event as received.
        raw: Value,
    },
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Event::from_value(Value::deserialize(d)?))
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Known(e) => e.serialize(s),
            Event::Unrecognised { raw, .. } | Event::Malformed { raw, .. } => raw.serialize(s),
        }
    }
}

impl Event {
    /// Sorts one received event into known, unrecognised or malformed. Never fails: one bad
    /// event must not stop the others of its batch.
    pub fn from_value(raw: Value) -> Event {
        let kind = raw.get("type").and_then(Value::as_str).map(str::to_owned);
        match kind {
            Some(kind) if KNOWN_EVENT_TYPES.contains(&kind.as_str()) => {
                match KnownEvent::deserialize(&raw) {
                    Ok(event) => Event::Known(event),
                    Err(e) => Event::Malformed {
                        kind,
                        error: e.to_string(),
                        raw,
                    },
                }
            }
            Some(kind) => Event::Unrecognised {
                kind: kind.escape_debug().take(64).collect(),
                raw,
            },
            None => Event::Unrecognised {
                kind: "(none)".into(),
                raw,
            },
        }
    }
}

/// `EventsResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsResponse {
    /// The events, in order.
    pub events: Vec<Event>,
    /// The cursor to persist after handling them.
    pub cursor: String,
}

/// Outcome of a bundle on the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleStatus {
    /// Verified and in force.
    Applied,
    /// Refused; the last good bundle stays in force.
    Rejected,
}

/// `BundleStatusReport`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleStatusReport {
    /// Applied or rejected.
    pub status: BundleStatus,
    /// Why it was rejected; `None` (JSON null) when applied.
    pub reason: Option<String>,
}

/// Class of an action that needs approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalClass {
    /// Yellow (asked at tier 1).
    Yellow,
    /// Yellow + external (asked at every tier).
    YellowExternal,
    /// Red (asked at tiers 1 and 2).
    Red,
}

/// `ApprovalRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// `ap_` + 16 hex digits, chosen by the appliance.
    pub approval_id: String,
    /// SHA-256 of the canonical tool and redacted parameters.
    pub action_hash: String,
    /// Class.
    pub class: ApprovalClass,
    /// The redacted one-line summary.
    pub summary: String,
    /// Agent.
    pub agent: String,
    /// Tool.
    pub tool: String,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Expires unanswered, Unix seconds.
    pub expires_at: i64,
}

/// Where an approval request stands on the Hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Not answered yet.
    Pending,
    /// Answered; the signed decision is attached.
    Decided,
    /// Expired unanswered.
    Expired,
}

/// `ApprovalStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStatus {
    /// The request.
    pub approval_id: String,
    /// Its state.
    pub status: ApprovalState,
    /// The signed decision when decided (JSON null otherwise).
    pub decision: Option<SignedDecision>,
}

/// `UsageBucket`: absolute totals at a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageBucket {
    /// Agent.
    pub agent: String,
    /// Provider route.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Start of the UTC hour, Unix seconds.
    pub hour: i64,
    /// Per-bucket revision, strictly increasing.
    pub revision: u64,
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cache-read tokens.
    pub cache_read: u64,
    /// Cache-write tokens.
    pub cache_write: u64,
    /// Requests counted.
    pub requests: u64,
    /// Of which usage was incomplete.
    pub incomplete: u64,
    /// The hour is over; this is the final revision.
    pub closed: bool,
}

/// `UsageBatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    /// Buckets (1 to 500).
    pub buckets: Vec<UsageBucket>,
}

/// `UsageAck`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageAck {
    /// Agent.
    pub agent: String,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Hour.
    pub hour: i64,
    /// Highest revision the Hub holds.
    pub revision: u64,
}

/// `UsageAckResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageAckResponse {
    /// One per bucket sent.
    pub acks: Vec<UsageAck>,
}

/// `AuditRecord`: one record of the hash chain, exactly as stored in `clawgate.db`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Sequence number from 1.
    pub seq: i64,
    /// Unix milliseconds.
    pub ts: i64,
    /// Kind.
    pub kind: String,
    /// Hash of the record before.
    pub prev: String,
    /// This record's hash.
    pub hash: String,
    /// The record's JSON text, as hashed.
    pub record: String,
}

/// `AuditBatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditBatch {
    /// Records in sequence order (1 to 1,000).
    pub records: Vec<AuditRecord>,
}

/// `AuditAck`: the Hub's chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditAck {
    /// Last seq the Hub holds.
    pub last_seq: i64,
    /// Its hash.
    pub last_hash: String,
}

/// Health band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Below 40.
    Critical,
    /// 40 to 59.
    Degraded,
    /// 60 to 79.
    Warning,
    /// 80 and above.
    Healthy,
}

/// `HealthComponents`: 0 to 20 each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthComponents {
    /// Reaching the Hub.
    pub connectivity: u8,
    /// Events and outbox up to date.
    pub sync_freshness: u8,
    /// Bundle in force, egress lock, plugin.
    pub policy_compliance: u8,
    /// Vault, hook and proxy errors.
    pub runtime_health: u8,
    /// Restarts and failed pushes.
    pub stability: u8,
}

/// `Health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// 0 to 100, the sum of the components.
    pub score: u8,
    /// Band of the score.
    pub band: Band,
    /// The components.
    pub components: HealthComponents,
}

/// The OpenClaw plugin as found on the box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginState {
    /// Installed and enabled in OpenClaw's configuration.
    pub present: bool,
    /// Its version, if known.
    pub version: Option<String>,
}

/// State of the nftables egress lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressLock {
    /// The table is loaded.
    Active,
    /// It is not.
    Inactive,
    /// Could not be checked.
    Unknown,
}

/// `Heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Clawgate's version.
    pub version: String,
    /// Bundle in force (null: built-in policy only).
    pub bundle_version: Option<u64>,
    /// Its manifest's SHA-256.
    pub bundle_sha256: Option<String>,
    /// SHA-256 of the configuration file.
    pub config_sha256: String,
    /// The OpenClaw plugin.
    pub openclaw_plugin: PluginState,
    /// The egress lock.
    pub egress_lock: EgressLock,
    /// Pending approval requests.
    pub pending_approvals: u64,
    /// Failed Hub requests in the last hour.
    pub failed_pushes_1h: u64,
    /// The vault's generation (off-box rollback witness).
    pub vault_generation: Option<u64>,
    /// Health.
    pub health: Health,
    /// Sent, Unix seconds.
    pub sent_at: i64,
}

/// `HeartbeatResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatResponse {
    /// The Hub's clock, Unix seconds.
    pub server_time: i64,
    /// When to send the next heartbeat.
    pub next_in_seconds: u32,
}

/// Outcome of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Ran and succeeded.
    Succeeded,
    /// Ran and failed.
    Failed,
    /// Not run: did not verify, or not one of the three commands.
    Refused,
}

/// `CommandResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    /// Outcome.
    pub status: CommandStatus,
    /// Details for the operator (no secrets).
    pub detail: String,
}

#[cfg(test)]
mod tests;
