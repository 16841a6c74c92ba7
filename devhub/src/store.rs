//! `devhub.db` (SQLite, WAL): everything the dev Hub received or issued, so a restart keeps
//! enrollments, events (and so every appliance's cursor), approvals, usage, audit chains and
//! bundles. Tokens and credentials are stored as SHA-256 hashes only.
//!
//! One connection behind a mutex: every operation is one short transaction, never held across
//! an `.await`. Transactions that write start `IMMEDIATE`, so another process on the same file
//! (`clawgate-devhub token` while the Hub runs) makes them wait (busy timeout) instead of failing
//! a read-then-write upgrade with `SQLITE_BUSY`. Times are passed in (the Hub's clock, skew included) so the rules are testable.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use clawgate_hub::protocol::{
    ApprovalRequest, ApprovalState, ApprovalStatus, AuditAck, AuditRecord, BundleStatusReport,
    CommandResult, Heartbeat, SignedDecision, UsageAck, UsageBucket,
};

use crate::error::{Error, Result};

/// The chain's genesis `prev`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens(hash TEXT PRIMARY KEY, tenant TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER, appliance TEXT);
CREATE TABLE IF NOT EXISTS appliances(id TEXT PRIMARY KEY, tenant TEXT NOT NULL,
  hostname TEXT NOT NULL, version TEXT NOT NULL, cred_hash TEXT NOT NULL UNIQUE,
  next_cred_hash TEXT UNIQUE, enrolled_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT,
  appliance TEXT, kind TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_tenant ON events(tenant, seq);
CREATE TABLE IF NOT EXISTS bundles(tenant TEXT NOT NULL, version INTEGER NOT NULL,
  sha256 TEXT NOT NULL, bytes BLOB NOT NULL, published_at INTEGER NOT NULL,
  PRIMARY KEY(tenant, version));
CREATE TABLE IF NOT EXISTS bundle_status(appliance TEXT NOT NULL, version INTEGER NOT NULL,
  status TEXT NOT NULL, reason TEXT, at INTEGER NOT NULL, PRIMARY KEY(appliance, version));
CREATE TABLE IF NOT EXISTS approvals(appliance TEXT NOT NULL, approval_id TEXT NOT NULL,
  tenant TEXT NOT NULL, request TEXT NOT NULL, expires_at INTEGER NOT NULL,
  received_at INTEGER NOT NULL, decision TEXT, PRIMARY KEY(appliance, approval_id));
CREATE TABLE IF NOT EXISTS usage(tenant TEXT NOT NULL, agent TEXT NOT NULL,
  provider TEXT NOT NULL, model TEXT NOT NULL, hour INTEGER NOT NULL, revision INTEGER NOT NULL,
  appliance TEXT NOT NULL, input INTEGER NOT NULL, output INTEGER NOT NULL,
  cache_read INTEGER NOT NULL, cache_write INTEGER NOT NULL, requests INTEGER NOT NULL,
  incomplete INTEGER NOT NULL, closed INTEGER NOT NULL, received_at INTEGER NOT NULL,
  PRIMARY KEY(tenant, agent, provider, model, hour));
CREATE TABLE IF NOT EXISTS audit(appliance TEXT NOT NULL, seq INTEGER NOT NULL,
  ts INTEGER NOT NULL, kind TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL,
  record TEXT NOT NULL, PRIMARY KEY(appliance, seq));
CREATE TABLE IF NOT EXISTS audit_breaks(id INTEGER PRIMARY KEY AUTOINCREMENT,
  appliance TEXT NOT NULL, seq INTEGER NOT NULL, code TEXT NOT NULL, detail TEXT NOT NULL,
  at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS heartbeats(appliance TEXT PRIMARY KEY, tenant TEXT NOT NULL,
  body TEXT NOT NULL, received_at INTEGER NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commands(command_id TEXT PRIMARY KEY, tenant TEXT NOT NULL,
  appliance TEXT NOT NULL, name TEXT NOT NULL, signed TEXT NOT NULL, issued_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS command_results(appliance TEXT NOT NULL, command_id TEXT NOT NULL,
  status TEXT NOT NULL, detail TEXT NOT NULL, at INTEGER NOT NULL,
  PRIMARY KEY(appliance, command_id));
";

/// A bundle status report: appliance, version, `applied`/`rejected`, reason.
pub type BundleReport = (String, u64, String, Option<String>);

/// An enrolled appliance, as authentication finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appliance {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
}

/// A stored approval request with where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredApproval {
    /// The appliance that asked.
    pub appliance: String,
    /// Its tenant.
    pub tenant: String,
    /// The request as received (summary already redacted by the appliance).
    pub request: ApprovalRequest,
    /// The signed decision, once decided.
    pub decision: Option<SignedDecision>,
}

impl StoredApproval {
    /// Pending, decided or expired at `now`.
    pub fn state(&self, now: i64) -> ApprovalState {
        if self.decision.is_some() {
            ApprovalState::Decided
        } else if now >= self.request.expires_at {
            ApprovalState::Expired
        } else {
            ApprovalState::Pending
        }
    }

    /// The protocol's status object.
    pub fn status(&self, now: i64) -> ApprovalStatus {
        ApprovalStatus {
            approval_id: self.request.approval_id.clone(),
            status: self.state(now),
            decision: self.decision.clone(),
        }
    }
}

/// Usage summed over the buckets the Hub holds (latest revision of each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UsageSums {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cache-read tokens.
    pub cache_read: u64,
    /// Cache-write tokens.
    pub cache_write: u64,
    /// Requests.
    pub requests: u64,
    /// Requests whose usage was incomplete.
    pub incomplete: u64,
    /// Buckets held.
    pub buckets: u64,
}

/// One row of usage totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// Tenant.
    pub tenant: String,
    /// Agent.
    pub agent: String,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Sums over hours.
    pub sums: UsageSums,
}

/// The audit chain the Hub holds for one appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditStatus {
    /// Appliance.
    pub appliance: String,
    /// Tenant.
    pub tenant: String,
    /// Last seq held (0: none).
    pub last_seq: i64,
    /// Last hash held (genesis: none).
    pub last_hash: String,
    /// Recorded breaks (422 answers): the appliance's chain was altered.
    pub breaks: Vec<AuditBreak>,
}

/// A refused audit batch: an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditBreak {
    /// The seq that did not check.
    pub seq: i64,
    /// `audit_invalid`.
    pub code: String,
    /// Why.
    pub detail: String,
    /// When (Hub clock).
    pub at: i64,
}

/// The latest heartbeat of one appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeartbeatView {
    /// Appliance.
    pub appliance: String,
    /// Tenant.
    pub tenant: String,
    /// The heartbeat as received.
    pub heartbeat: Heartbeat,
    /// When it arrived (Hub clock).
    pub received_at: i64,
    /// How many heartbeats this appliance sent.
    pub count: u64,
}

/// Why an audit batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditRefusal {
    /// 409 `audit_gap`: resend from `expected_seq`.
    Gap {
        /// The next seq the Hub needs.
        expected_seq: i64,
    },
    /// 422 `audit_invalid`.
    Invalid {
        /// The offending seq.
        seq: i64,
        /// Why.
        detail: String,
    },
}

/// The hash of an audit record, as `wrapper/src/store.rs` `audit_hash` computes it.
pub fn audit_hash(seq: i64, ts_ms: i64, kind: &str, prev: &str, record: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"clawgate-audit/1\0");
    for part in [
        seq.to_string().as_bytes(),
        ts_ms.to_string().as_bytes(),
        kind.as_bytes(),
        prev.as_bytes(),
        record.as_bytes(),
    ] {
        h.update(part);
        h.update(b"\0");
    }
    hex::encode(h.finalize())
}

/// SHA-256 hex of a secret (tokens, credentials): only this is stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Invalid(format!("encoding: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Invalid(format!("stored row: {e}")))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The dev Hub's database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating) `path`.
    pub fn open(path: &Path) -> Result<Store> {
        // Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the main
        // file's mode, so nothing of the database is readable by group or other.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().map_err(|_| Error::Poisoned)?;
        f(&mut conn)
    }

    // ---- tokens, enrollment, credentials ----

    /// Registers an enrollment token (by hash) for `tenant`, valid until `expires_at`.
    pub fn add_token(
        &self,
        token_hash: &str,
        tenant: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens(hash, tenant, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash, tenant, now, expires_at],
            )?;
            Ok(())
        })
    }

    /// Spends a token and creates the appliance, in one transaction. `None`: the token is
    /// unknown, expired or used.
    #[allow(clippy::too_many_arguments)]
    pub fn enroll(
        &self,
        token_hash: &str,
        appliance_id: &str,
        cred_hash: &str,
        hostname: &str,
        version: &str,
        now: i64,
    ) -> Result<Option<Appliance>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<(String, i64, Option<i64>)> = tx
                .query_row(
                    "SELECT tenant, expires_at, used_at FROM tokens WHERE hash = ?1",
                    params![token_hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((tenant, expires_at, used_at)) = row else {
                return Ok(None);
            };
            if used_at.is_some() || now >= expires_at {
                return Ok(None);
            }
            tx.execute(
                "UPDATE tokens SET used_at = ?2, appliance = ?3 WHERE hash = ?1",
                params![token_hash, now, appliance_id],
            )?;
            tx.execute(
                "INSERT INTO appliances(id, tenant, hostname, version, cred_hash, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![appliance_id, tenant, hostname, version, cred_hash, now],
            )?;
            tx.commit()?;
            Ok(Some(Appliance {
                id: appliance_id.to_owned(),
                tenant,
            }))
        })
    }

    /// The appliance a credential (by hash) authenticates. The first use of a rotated
    /// credential revokes the old one.
    pub fn authenticate(&self, cred_hash: &str) -> Result<Option<Appliance>> {
        self.with(|c| {
            if let Some(a) = c
                .query_row(
                    "SELECT id, tenant FROM appliances WHERE cred_hash = ?1",
                    params![cred_hash],
                    |r| Ok(Appliance { id: r.get(0)?, tenant: r.get(1)? }),
                )
                .optional()?
            {
                return Ok(Some(a));
            }
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found = tx
                .query_row(
                    "SELECT id, tenant FROM appliances WHERE next_cred_hash = ?1",
                    params![cred_hash],
                    |r| Ok(Appliance { id: r.get(0)?, tenant: r.get(1)? }),
                )
                .optional()?;
            if let Some(a) = &found {
                tx.execute(
                    "UPDATE appliances SET cred_hash = next_cred_hash, next_cred_hash = NULL WHERE id = ?1",
                    params![a.id],
                )?;
            }
            tx.commit()?;
            Ok(found)
        })
    }

    /// Sets the appliance's unconfirmed next credential (replacing an unused one).
    pub fn set_next_credential(&self, appliance: &str, cred_hash: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE appliances SET next_cred_hash = ?2 WHERE id = ?1",
                params![appliance, cred_hash],
            )?;
            Ok(())
        })
    }

    /// Every appliance.
    pub fn appliances(&self) -> Result<Vec<Appliance>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT id, tenant FROM appliances ORDER BY enrolled_at, id")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Appliance {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// The appliance with id `id`.
    pub fn appliance(&self, id: &str) -> Result<Option<Appliance>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT id, tenant FROM appliances WHERE id = ?1",
                params![id],
                |r| {
                    Ok(Appliance {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
    }

    // ---- events ----

    /// Appends an event (`appliance` `None`: every appliance of `tenant`; `tenant` `None`:
    /// everyone). Returns its seq.
    pub fn push_event(
        &self,
        tenant: Option<&str>,
        appliance: Option<&str>,
        kind: &str,
        body: &serde_json::Value,
        now: i64,
    ) -> Result<i64> {
        let text = to_json(body)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO events(tenant, appliance, kind, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![tenant, appliance, kind, text, now],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// The newest event seq (0: none).
    pub fn head(&self) -> Result<i64> {
        self.with(
            |c| Ok(c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?),
        )
    }

    /// Up to `limit` events for `a` after `after`, with their seqs.
    pub fn events_after(
        &self,
        a: &Appliance,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, serde_json::Value)>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, body FROM events WHERE seq > ?1
                   AND (tenant IS NULL OR tenant = ?2) AND (appliance IS NULL OR appliance = ?3)
                 ORDER BY seq LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(params![after, a.tenant, a.id, to_i64(limit as u64)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(seq, body)| Ok((seq, from_json(&body)?)))
                .collect()
        })
    }

    /// The current state for a poll without a cursor: the newest `bundle_available` of the
    /// tenant, the newest `keyset`, every decided-but-unexpired decision of the appliance; and
    /// the head seq, read in the same transaction.
    pub fn snapshot(&self, a: &Appliance, now: i64) -> Result<(Vec<serde_json::Value>, i64)> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let head: i64 =
                tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
            let mut out = Vec::new();
            for kind in ["bundle_available", "keyset"] {
                let body: Option<String> = tx
                    .query_row(
                        "SELECT body FROM events WHERE kind = ?1
                           AND (tenant IS NULL OR tenant = ?2) AND (appliance IS NULL OR appliance = ?3)
                         ORDER BY seq DESC LIMIT 1",
                        params![kind, a.tenant, a.id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(body) = body {
                    out.push(from_json(&body)?);
                }
            }
            {
                let mut stmt = tx.prepare(
                    "SELECT decision FROM approvals WHERE appliance = ?1 AND decision IS NOT NULL
                       AND expires_at > ?2 ORDER BY received_at, approval_id",
                )?;
                let rows = stmt
                    .query_map(params![a.id, now], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for d in rows {
                    let decision: SignedDecision = from_json(&d)?;
                    out.push(serde_json::json!({"type": "approval_decision", "decision": decision}));
                }
            }
            tx.commit()?;
            Ok((out, head))
        })
    }

    // ---- bundles ----

    /// The newest published version for `tenant`.
    pub fn newest_bundle(&self, tenant: &str) -> Result<Option<u64>> {
        self.with(|c| {
            let v: Option<i64> = c.query_row(
                "SELECT MAX(version) FROM bundles WHERE tenant = ?1",
                params![tenant],
                |r| r.get(0),
            )?;
            Ok(v.map(to_u64))
        })
    }

    /// Stores a bundle; refuses a version already held.
    pub fn add_bundle(
        &self,
        tenant: &str,
        version: u64,
        sha256: &str,
        bytes: &[u8],
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO bundles(tenant, version, sha256, bytes, published_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![tenant, to_i64(version), sha256, bytes, now],
            )?;
            if n == 0 {
                return Err(Error::Conflict(format!(
                    "tenant `{tenant}` already has a bundle version {version}"
                )));
            }
            Ok(())
        })
    }

    /// A bundle's bytes and hash.
    pub fn bundle(&self, tenant: &str, version: u64) -> Result<Option<(Vec<u8>, String)>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT bytes, sha256 FROM bundles WHERE tenant = ?1 AND version = ?2",
                params![tenant, to_i64(version)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
    }

    /// Records a bundle status report (the latest per appliance and version wins).
    pub fn bundle_status(
        &self,
        a: &Appliance,
        version: u64,
        report: &BundleStatusReport,
        now: i64,
    ) -> Result<()> {
        let status = to_json(&report.status)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO bundle_status(appliance, version, status, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(appliance, version) DO UPDATE SET status = excluded.status,
                   reason = excluded.reason, at = excluded.at",
                params![a.id, to_i64(version), status.trim_matches('"'), report.reason, now],
            )?;
            Ok(())
        })
    }

    /// Every bundle status report: (appliance, version, status, reason).
    pub fn bundle_reports(&self) -> Result<Vec<BundleReport>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT appliance, version, status, reason FROM bundle_status ORDER BY appliance, version",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get(0)?, to_u64(r.get(1)?), r.get(2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Every published bundle: (tenant, version, sha256, published_at).
    pub fn bundles(&self) -> Result<Vec<(String, u64, String, i64)>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT tenant, version, sha256, published_at FROM bundles ORDER BY tenant, version",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, to_u64(r.get(1)?), r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    // ---- approvals ----

    /// Creates an approval request, idempotent by (appliance, approval id). `Ok(true)`: new;
    /// `Ok(false)`: the same request was already held; `Err(Conflict)`: same id, other fields.
    pub fn create_approval(
        &self,
        a: &Appliance,
        request: &ApprovalRequest,
        now: i64,
    ) -> Result<(bool, StoredApproval)> {
        let text = to_json(request)?;
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let held: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT request, decision FROM approvals WHERE appliance = ?1 AND approval_id = ?2",
                    params![a.id, request.approval_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((held, decision)) = held {
                let held: ApprovalRequest = from_json(&held)?;
                if &held != request {
                    return Err(Error::Conflict(format!(
                        "approval `{}` is already held with different fields",
                        request.approval_id
                    )));
                }
                let decision = decision.map(|d| from_json(&d)).transpose()?;
                return Ok((
                    false,
                    StoredApproval {
                        appliance: a.id.clone(),
                        tenant: a.tenant.clone(),
                        request: held,
                        decision,
                    },
                ));
            }
            tx.execute(
                "INSERT INTO approvals(appliance, approval_id, tenant, request, expires_at, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![a.id, request.approval_id, a.tenant, text, request.expires_at, now],
            )?;
            tx.commit()?;
            Ok((
                true,
                StoredApproval {
                    appliance: a.id.clone(),
                    tenant: a.tenant.clone(),
                    request: request.clone(),
                    decision: None,
                },
            ))
        })
    }

    /// The approval `approval_id` of appliance `appliance`.
    pub fn approval(&self, appliance: &str, approval_id: &str) -> Result<Option<StoredApproval>> {
        self.with(|c| {
            let row: Option<(String, String, Option<String>)> = c
                .query_row(
                    "SELECT tenant, request, decision FROM approvals WHERE appliance = ?1 AND approval_id = ?2",
                    params![appliance, approval_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            row.map(|(tenant, request, decision)| {
                Ok(StoredApproval {
                    appliance: appliance.to_owned(),
                    tenant,
                    request: from_json(&request)?,
                    decision: decision.map(|d| from_json(&d)).transpose()?,
                })
            })
            .transpose()
        })
    }

    /// Every approval with id `approval_id` (normally one).
    pub fn approvals_with_id(&self, approval_id: &str) -> Result<Vec<StoredApproval>> {
        self.approvals_where("approval_id = ?1", approval_id)
    }

    /// Every approval, oldest first.
    pub fn approvals(&self) -> Result<Vec<StoredApproval>> {
        self.approvals_where("?1 = ?1", "")
    }

    fn approvals_where(&self, cond: &str, arg: &str) -> Result<Vec<StoredApproval>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT appliance, tenant, request, decision FROM approvals WHERE {cond} ORDER BY received_at, approval_id"
            ))?;
            let rows = stmt
                .query_map(params![arg], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(appliance, tenant, request, decision)| {
                    Ok(StoredApproval {
                        appliance,
                        tenant,
                        request: from_json(&request)?,
                        decision: decision.map(|d| from_json(&d)).transpose()?,
                    })
                })
                .collect()
        })
    }

    /// Stores the decision of a pending approval and queues its event, in one transaction.
    /// Refused if the approval is already decided.
    pub fn record_decision(
        &self,
        appliance: &str,
        approval_id: &str,
        decision: &SignedDecision,
        now: i64,
    ) -> Result<i64> {
        let text = to_json(decision)?;
        let event =
            to_json(&serde_json::json!({"type": "approval_decision", "decision": decision}))?;
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let tenant: String = tx
                .query_row(
                    "SELECT tenant FROM approvals WHERE appliance = ?1 AND approval_id = ?2",
                    params![appliance, approval_id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("approval `{approval_id}`")))?;
            let n = tx.execute(
                "UPDATE approvals SET decision = ?3 WHERE appliance = ?1 AND approval_id = ?2 AND decision IS NULL",
                params![appliance, approval_id, text],
            )?;
            if n == 0 {
                return Err(Error::Conflict(format!("approval `{approval_id}` is already decided")));
            }
            tx.execute(
                "INSERT INTO events(tenant, appliance, kind, body, created_at) VALUES (?1, ?2, 'approval_decision', ?3, ?4)",
                params![tenant, appliance, event, now],
            )?;
            let seq = tx.last_insert_rowid();
            tx.commit()?;
            Ok(seq)
        })
    }

    // ---- usage ----

    /// Ingests a batch: for each bucket, the highest revision wins. Returns one ack per bucket
    /// (the revision now held).
    pub fn ingest_usage(
        &self,
        a: &Appliance,
        buckets: &[UsageBucket],
        now: i64,
    ) -> Result<Vec<UsageAck>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut acks = Vec::with_capacity(buckets.len());
            for b in buckets {
                tx.execute(
                    "INSERT INTO usage(tenant, agent, provider, model, hour, revision, appliance, input, output,
                       cache_read, cache_write, requests, incomplete, closed, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                     ON CONFLICT(tenant, agent, provider, model, hour) DO UPDATE SET
                       revision = excluded.revision, appliance = excluded.appliance,
                       input = excluded.input, output = excluded.output,
                       cache_read = excluded.cache_read, cache_write = excluded.cache_write,
                       requests = excluded.requests, incomplete = excluded.incomplete,
                       closed = excluded.closed, received_at = excluded.received_at
                     WHERE excluded.revision > usage.revision",
                    params![
                        a.tenant, b.agent, b.provider, b.model, b.hour, to_i64(b.revision), a.id,
                        to_i64(b.input), to_i64(b.output), to_i64(b.cache_read), to_i64(b.cache_write),
                        to_i64(b.requests), to_i64(b.incomplete), b.closed, now
                    ],
                )?;
                let held: i64 = tx.query_row(
                    "SELECT revision FROM usage WHERE tenant = ?1 AND agent = ?2 AND provider = ?3 AND model = ?4 AND hour = ?5",
                    params![a.tenant, b.agent, b.provider, b.model, b.hour],
                    |r| r.get(0),
                )?;
                acks.push(UsageAck {
                    agent: b.agent.clone(),
                    provider: b.provider.clone(),
                    model: b.model.clone(),
                    hour: b.hour,
                    revision: to_u64(held),
                });
            }
            tx.commit()?;
            Ok(acks)
        })
    }

    /// Totals per (tenant, agent, provider, model), summed over hours.
    pub fn usage_rows(&self) -> Result<Vec<UsageRow>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT tenant, agent, provider, model, SUM(input), SUM(output), SUM(cache_read),
                   SUM(cache_write), SUM(requests), SUM(incomplete), COUNT(*)
                 FROM usage GROUP BY tenant, agent, provider, model ORDER BY tenant, agent, provider, model",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(UsageRow {
                        tenant: r.get(0)?,
                        agent: r.get(1)?,
                        provider: r.get(2)?,
                        model: r.get(3)?,
                        sums: UsageSums {
                            input: to_u64(r.get(4)?),
                            output: to_u64(r.get(5)?),
                            cache_read: to_u64(r.get(6)?),
                            cache_write: to_u64(r.get(7)?),
                            requests: to_u64(r.get(8)?),
                            incomplete: to_u64(r.get(9)?),
                            buckets: to_u64(r.get(10)?),
                        },
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// Every bucket held for `tenant`.
    pub fn usage_buckets(&self, tenant: &str) -> Result<Vec<UsageBucket>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT agent, provider, model, hour, revision, input, output, cache_read, cache_write,
                   requests, incomplete, closed FROM usage WHERE tenant = ?1
                 ORDER BY agent, provider, model, hour",
            )?;
            let rows = stmt
                .query_map(params![tenant], |r| {
                    Ok(UsageBucket {
                        agent: r.get(0)?,
                        provider: r.get(1)?,
                        model: r.get(2)?,
                        hour: r.get(3)?,
                        revision: to_u64(r.get(4)?),
                        input: to_u64(r.get(5)?),
                        output: to_u64(r.get(6)?),
                        cache_read: to_u64(r.get(7)?),
                        cache_write: to_u64(r.get(8)?),
                        requests: to_u64(r.get(9)?),
                        incomplete: to_u64(r.get(10)?),
                        closed: r.get(11)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    // ---- audit ----

    /// Ingests an audit batch (see `POST /v1/audit`): whole or not at all. A refusal for an
    /// invalid record is itself recorded as a break.
    pub fn ingest_audit(
        &self,
        a: &Appliance,
        records: &[AuditRecord],
        now: i64,
    ) -> Result<std::result::Result<AuditAck, AuditRefusal>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (mut last_seq, mut last_hash): (i64, String) = tx
                .query_row(
                    "SELECT seq, hash FROM audit WHERE appliance = ?1 ORDER BY seq DESC LIMIT 1",
                    params![a.id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .unwrap_or((0, GENESIS.to_owned()));
            let mut refusal = None;
            let mut to_insert = Vec::new();
            for r in records {
                if r.seq <= last_seq {
                    let held: Option<String> = tx
                        .query_row(
                            "SELECT hash FROM audit WHERE appliance = ?1 AND seq = ?2",
                            params![a.id, r.seq],
                            |row| row.get(0),
                        )
                        .optional()?;
                    let held_matches = held.as_deref() == Some(r.hash.as_str())
                        || to_insert.iter().any(|x: &&AuditRecord| x.seq == r.seq && x.hash == r.hash);
                    if held_matches {
                        continue;
                    }
                    refusal = Some(AuditRefusal::Invalid {
                        seq: r.seq,
                        detail: format!("seq {} is already held with a different hash", r.seq),
                    });
                    break;
                }
                if r.seq > last_seq + 1 {
                    if to_insert.is_empty() {
                        refusal = Some(AuditRefusal::Gap { expected_seq: last_seq + 1 });
                    } else {
                        refusal = Some(AuditRefusal::Invalid {
                            seq: r.seq,
                            detail: format!("seq {} does not follow {} within the batch", r.seq, last_seq),
                        });
                    }
                    break;
                }
                if r.prev != last_hash {
                    refusal = Some(AuditRefusal::Invalid {
                        seq: r.seq,
                        detail: format!("seq {}: prev does not link to the hash of seq {}", r.seq, last_seq),
                    });
                    break;
                }
                if audit_hash(r.seq, r.ts, &r.kind, &r.prev, &r.record) != r.hash {
                    refusal = Some(AuditRefusal::Invalid {
                        seq: r.seq,
                        detail: format!("seq {}: hash does not recompute", r.seq),
                    });
                    break;
                }
                last_seq = r.seq;
                last_hash = r.hash.clone();
                to_insert.push(r);
            }
            if let Some(refusal) = refusal {
                if let AuditRefusal::Invalid { seq, detail } = &refusal {
                    tx.execute(
                        "INSERT INTO audit_breaks(appliance, seq, code, detail, at) VALUES (?1, ?2, 'audit_invalid', ?3, ?4)",
                        params![a.id, seq, detail, now],
                    )?;
                    tx.commit()?;
                }
                return Ok(Err(refusal));
            }
            for r in to_insert {
                tx.execute(
                    "INSERT INTO audit(appliance, seq, ts, kind, prev, hash, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![a.id, r.seq, r.ts, r.kind, r.prev, r.hash, r.record],
                )?;
            }
            tx.commit()?;
            if last_seq == 0 {
                // Only possible if every record was skipped against an empty chain, which the
                // checks above make impossible; refuse rather than answer seq 0.
                return Ok(Err(AuditRefusal::Gap { expected_seq: 1 }));
            }
            Ok(Ok(AuditAck { last_seq, last_hash }))
        })
    }

    /// The chain status of every appliance that sent audit records or has breaks.
    pub fn audit_status(&self) -> Result<Vec<AuditStatus>> {
        let appliances = self.appliances()?;
        self.with(|c| {
            let mut out = Vec::new();
            for a in appliances {
                let (last_seq, last_hash): (i64, String) = c
                    .query_row(
                        "SELECT seq, hash FROM audit WHERE appliance = ?1 ORDER BY seq DESC LIMIT 1",
                        params![a.id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?
                    .unwrap_or((0, GENESIS.to_owned()));
                let mut stmt = c.prepare_cached(
                    "SELECT seq, code, detail, at FROM audit_breaks WHERE appliance = ?1 ORDER BY id",
                )?;
                let breaks = stmt
                    .query_map(params![a.id], |r| {
                        Ok(AuditBreak { seq: r.get(0)?, code: r.get(1)?, detail: r.get(2)?, at: r.get(3)? })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                if last_seq > 0 || !breaks.is_empty() {
                    out.push(AuditStatus { appliance: a.id, tenant: a.tenant, last_seq, last_hash, breaks });
                }
            }
            Ok(out)
        })
    }

    /// The audit records held for `appliance`, in order.
    pub fn audit_records(&self, appliance: &str) -> Result<Vec<AuditRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT seq, ts, kind, prev, hash, record FROM audit WHERE appliance = ?1 ORDER BY seq",
            )?;
            let rows = stmt
                .query_map(params![appliance], |r| {
                    Ok(AuditRecord {
                        seq: r.get(0)?,
                        ts: r.get(1)?,
                        kind: r.get(2)?,
                        prev: r.get(3)?,
                        hash: r.get(4)?,
                        record: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    // ---- heartbeats ----

    /// Records a heartbeat (the latest is kept, with a count).
    pub fn heartbeat(&self, a: &Appliance, hb: &Heartbeat, now: i64) -> Result<()> {
        let body = to_json(hb)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO heartbeats(appliance, tenant, body, received_at, count) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT(appliance) DO UPDATE SET body = excluded.body,
                   received_at = excluded.received_at, count = heartbeats.count + 1",
                params![a.id, a.tenant, body, now],
            )?;
            Ok(())
        })
    }

    /// The latest heartbeat of every appliance.
    pub fn heartbeats(&self) -> Result<Vec<HeartbeatView>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT appliance, tenant, body, received_at, count FROM heartbeats ORDER BY appliance",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(appliance, tenant, body, received_at, count)| {
                    Ok(HeartbeatView {
                        appliance,
                        tenant,
                        heartbeat: from_json(&body)?,
                        received_at,
                        count: to_u64(count),
                    })
                })
                .collect()
        })
    }

    // ---- commands ----

    /// Stores an issued command and queues its event, in one transaction.
    pub fn add_command(
        &self,
        a: &Appliance,
        command_id: &str,
        name: &str,
        signed: &serde_json::Value,
        issued_at: i64,
        now: i64,
    ) -> Result<i64> {
        let text = to_json(signed)?;
        let event = to_json(&serde_json::json!({"type": "command", "command": signed}))?;
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO commands(command_id, tenant, appliance, name, signed, issued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![command_id, a.tenant, a.id, name, text, issued_at],
            )?;
            tx.execute(
                "INSERT INTO events(tenant, appliance, kind, body, created_at) VALUES (?1, ?2, 'command', ?3, ?4)",
                params![a.tenant, a.id, event, now],
            )?;
            let seq = tx.last_insert_rowid();
            tx.commit()?;
            Ok(seq)
        })
    }

    /// True if `command_id` was issued to `appliance`.
    pub fn command_issued_to(&self, appliance: &str, command_id: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT 1 FROM commands WHERE appliance = ?1 AND command_id = ?2",
                params![appliance, command_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
    }

    /// Records a command result; the first per (appliance, command id) is kept.
    pub fn command_result(
        &self,
        a: &Appliance,
        command_id: &str,
        result: &CommandResult,
        now: i64,
    ) -> Result<()> {
        let status = to_json(&result.status)?;
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO command_results(appliance, command_id, status, detail, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.id, command_id, status.trim_matches('"'), result.detail, now],
            )?;
            Ok(())
        })
    }

    /// Every command result: (appliance, command id, status, detail).
    pub fn command_results(&self) -> Result<Vec<(String, String, String, String)>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT appliance, command_id, status, detail FROM command_results ORDER BY at, command_id",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}
