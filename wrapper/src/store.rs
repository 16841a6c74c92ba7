//! The daemon's SQLite database (`clawgate.db`): approval requests with their grants, and the
//! hash-chained audit log.
//!
//! Every state change of an approval is committed in the same transaction as its audit record,
//! so the two can never disagree after a crash. WAL with `synchronous=NORMAL`: a commit is in
//! the OS before the call returns (it survives the daemon being killed) and fsynced at the next
//! checkpoint; an fsync per tool call would cost more than the whole decision.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    action_hash TEXT NOT NULL,
    tool TEXT NOT NULL,
    class TEXT NOT NULL,
    rule TEXT NOT NULL,
    summary TEXT NOT NULL,
    agent TEXT NOT NULL,
    session_key TEXT,
    tool_call_id TEXT,
    trace_id TEXT,
    policy_version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    grant_kind TEXT CHECK (grant_kind IN ('once', '24h')),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    decided_ms INTEGER,
    decided_by TEXT,
    grant_expires_ms INTEGER,
    uses INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS approvals_by_action ON approvals (action_hash, agent, policy_version, status);
CREATE TABLE IF NOT EXISTS captured_secrets (
    name TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    rule TEXT NOT NULL,
    detector TEXT NOT NULL,
    source TEXT NOT NULL,
    captured_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT;
";

/// Where one captured secret came from (see [`Store::record_captures`]).
#[derive(Debug, Clone, Copy)]
pub struct CaptureRecord<'a> {
    /// Its vault name.
    pub name: &'a str,
    /// The rule that found it.
    pub rule: &'a str,
    /// `rule` or `entropy`.
    pub detector: &'a str,
    /// The agent whose traffic held it.
    pub agent: &'a str,
    /// `tool_result` or `egress`.
    pub source: &'a str,
}

/// A captured secret's provenance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureInfo {
    /// Its vault name.
    pub name: String,
    /// The agent whose traffic held it.
    pub agent: String,
    /// The rule that found it.
    pub rule: String,
    /// `rule` or `entropy`.
    pub detector: String,
    /// `tool_result` or `egress`.
    pub source: String,
    /// When, Unix milliseconds.
    pub captured_ms: i64,
}

/// `prev` of the first audit record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Status of an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for the owner.
    Pending,
    /// Approved (a grant exists while it is unused or unexpired).
    Approved,
    /// Denied.
    Denied,
    /// Expired unanswered, or cleared by a new policy version.
    Expired,
}

impl Status {
    fn parse(s: &str) -> Status {
        match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "denied" => Status::Denied,
            _ => Status::Expired,
        }
    }
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }
}

/// How long an approval's grant lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum GrantKind {
    /// One execution of the approved action.
    #[serde(rename = "once")]
    Once,
    /// The same action (hash, agent, policy version) for 24 hours.
    #[serde(rename = "24h")]
    Day,
}

impl GrantKind {
    fn as_str(self) -> &'static str {
        match self {
            GrantKind::Once => "once",
            GrantKind::Day => "24h",
        }
    }
}

/// One approval request, as listed to the owner. Never holds a secret value: the summary and
/// hash are computed from redacted parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// Id (`ap_` + 16 hex digits).
    pub id: String,
    /// SHA-256 over the canonical tool and redacted parameters.
    pub action_hash: String,
    /// Canonical tool name.
    pub tool: String,
    /// Class.
    pub class: String,
    /// Deciding rule.
    pub rule: String,
    /// One line for the owner, invisible characters escaped, secrets redacted.
    pub summary: String,
    /// Agent id.
    pub agent: String,
    /// OpenClaw session key.
    pub session_key: Option<String>,
    /// OpenClaw tool call id of the call that asked.
    pub tool_call_id: Option<String>,
    /// OpenClaw trace id.
    pub trace_id: Option<String>,
    /// Policy version the request was made under.
    pub policy_version: String,
    /// Status.
    pub status: Status,
    /// Grant given with an approval.
    pub grant: Option<GrantKind>,
    /// Created, Unix ms.
    pub created_ms: i64,
    /// Expires unanswered, Unix ms.
    pub expires_ms: i64,
    /// Decided, Unix ms.
    pub decided_ms: Option<i64>,
    /// Who decided (`admin-socket uid 0`, `approval-page`).
    pub decided_by: Option<String>,
}

/// What a new approval request holds.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    /// Hash.
    pub action_hash: &'a str,
    /// Tool.
    pub tool: &'a str,
    /// Class.
    pub class: &'a str,
    /// Rule.
    pub rule: &'a str,
    /// Summary.
    pub summary: &'a str,
    /// Agent.
    pub agent: &'a str,
    /// Session.
    pub session_key: Option<&'a str>,
    /// Tool call.
    pub tool_call_id: Option<&'a str>,
    /// Trace.
    pub trace_id: Option<&'a str>,
    /// Policy version.
    pub policy_version: &'a str,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Sequence number, from 1, without gaps.
    pub seq: i64,
    /// When, Unix ms.
    pub ts_ms: i64,
    /// `decision`, `approval.created`, `approval.approved`, `approval.denied`,
    /// `approval.expired`, `grant.used`, `secret.resolved`, `secret.refused`, `executed`,
    /// `llm_output`, `policy.loaded`, `daemon.started`, `daemon.stopped`,
    /// `egress_lock.verified`, `egress_lock.lost`, `egress_lock.restored`.
    pub kind: String,
    /// The record (JSON), exactly as hashed.
    pub record: String,
    /// Hash of the previous record.
    pub prev: String,
    /// This record's hash.
    pub hash: String,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Records checked.
    pub records: i64,
    /// Hash of the last record (the chain head), for an off-box witness.
    pub head: String,
}

/// The approvals and audit database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The audit hash: SHA-256 over a domain tag and every stored field, NUL-separated.
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

impl Store {
    /// Opens (creating if needed) the database read-write.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        // Private like the rest of the state directory (SQLite gives its -wal and -shm files the
        // database's mode).
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| Error::io(format!("chmod 600 {}", path.display()), e))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    /// Opens an existing database read-only (for `audit show|verify`).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| Error::Poisoned)
    }

    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Appends one audit record in its own transaction and returns its sequence number.
    pub fn audit(&self, kind: &str, record: &Value) -> Result<i64> {
        self.write(|tx| append(tx, kind, record))
    }

    /// Records where captured secrets came from (provenance, never a value) and audits each
    /// as `secret.captured`, in one transaction. Written before the vault write, so a captured
    /// secret in the vault always has its provenance (a later failure is audited separately).
    pub fn record_captures(&self, captures: &[CaptureRecord<'_>]) -> Result<()> {
        self.write(|tx| {
            let now = now_ms();
            for c in captures {
                tx.execute(
                    "INSERT OR REPLACE INTO captured_secrets (name, agent, rule, detector, source, captured_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![c.name, c.agent, c.rule, c.detector, c.source, now],
                )?;
                append(
                    tx,
                    "secret.captured",
                    &serde_json::json!({ "secret": c.name, "rule": c.rule, "detector": c.detector,
                                         "source": c.source, "agent": c.agent }),
                )?;
            }
            Ok(())
        })
    }

    /// The agent a captured secret came from, if `name` was captured.
    pub fn captured_by(&self, name: &str) -> Result<Option<String>> {
        let conn = self.lock()?;
        Ok(conn
            .prepare_cached("SELECT agent FROM captured_secrets WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    /// Provenance of every captured secret recorded (for `clawgate vault list`).
    pub fn captures(&self) -> Result<Vec<CaptureInfo>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT name, agent, rule, detector, source, captured_ms FROM captured_secrets ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(CaptureInfo {
                name: r.get(0)?,
                agent: r.get(1)?,
                rule: r.get(2)?,
                detector: r.get(3)?,
                source: r.get(4)?,
                captured_ms: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The last `limit` audit records, oldest first.
    pub fn audit_tail(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT seq, ts_ms, kind, record, prev, hash FROM \
             (SELECT * FROM audit ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], audit_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Up to `limit` audit records after `seq`, in order (for shipping to the Hub).
    pub fn audit_after(&self, seq: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, ts_ms, kind, record, prev, hash FROM audit WHERE seq > ?1 \
             ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![seq, i64::try_from(limit).unwrap_or(i64::MAX)],
            audit_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The hash of record `seq` ([`GENESIS`] for 0), if it exists.
    pub fn audit_hash_at(&self, seq: i64) -> Result<Option<String>> {
        if seq == 0 {
            return Ok(Some(GENESIS.to_owned()));
        }
        Ok(self
            .lock()?
            .query_row("SELECT hash FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
            .optional()?)
    }

    /// Audit records of `kind` written at or after `since_ms` (Unix ms).
    pub fn audit_count_since(&self, kind: &str, since_ms: i64) -> Result<u64> {
        let n: i64 = self.lock()?.query_row(
            "SELECT count(*) FROM audit WHERE kind = ?1 AND ts_ms >= ?2",
            params![kind, since_ms],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every pending, unexpired request, oldest first.
    pub fn pending(&self) -> Result<Vec<Approval>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE status = 'pending' AND expires_ms > ?1 \
             ORDER BY created_ms"
        ))?;
        let rows = stmt.query_map([now_ms()], approval_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Checks the whole chain: sequence without gaps from 1, each `prev` the hash before it,
    /// each hash recomputed. Any edited, removed, inserted or reordered record breaks it.
    pub fn verify_audit(&self) -> Result<AuditReport> {
        let conn = self.lock()?;
        let tx = conn.unchecked_transaction()?; // one read snapshot
        let mut stmt =
            tx.prepare("SELECT seq, ts_ms, kind, record, prev, hash FROM audit ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut expect_seq = 1i64;
        let mut prev = GENESIS.to_owned();
        while let Some(row) = rows.next()? {
            let r = audit_row(row)?;
            let broken = |reason: String| Error::AuditBroken { seq: r.seq, reason };
            if r.seq != expect_seq {
                return Err(broken(format!(
                    "expected record {expect_seq} next (a record was removed or inserted)"
                )));
            }
            if r.prev != prev {
                return Err(broken(
                    "its link does not match the record before it (removed or reordered)".into(),
                ));
            }
            if audit_hash(r.seq, r.ts_ms, &r.kind, &r.prev, &r.record) != r.hash {
                return Err(broken(
                    "its content does not match its hash (edited)".into(),
                ));
            }
            prev = r.hash;
            expect_seq += 1;
        }
        Ok(AuditReport {
            records: expect_seq - 1,
            head: prev,
        })
    }

    /// Creates a pending approval request (and its audit record).
    pub fn create_approval(&self, new: &NewApproval<'_>, expiry: Duration) -> Result<Approval> {
        self.create_approval_then(new, expiry, &|_| Ok(()))
    }

    /// Creates a pending approval request and runs `then` on it before committing: if `then`
    /// fails (the Hub outbox refused the request), nothing is created, so no request exists
    /// locally that the approver was never told about.
    pub fn create_approval_then(
        &self,
        new: &NewApproval<'_>,
        expiry: Duration,
        then: &dyn Fn(&Approval) -> Result<()>,
    ) -> Result<Approval> {
        let id = new_id()?;
        let now = now_ms();
        let expires = now.saturating_add(i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX));
        self.write(|tx| {
            tx.execute(
                "INSERT INTO approvals (id, action_hash, tool, class, rule, summary, agent, \
                 session_key, tool_call_id, trace_id, policy_version, status, created_ms, expires_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', ?12, ?13)",
                params![
                    id,
                    new.action_hash,
                    new.tool,
                    new.class,
                    new.rule,
                    new.summary,
                    new.agent,
                    new.session_key,
                    new.tool_call_id,
                    new.trace_id,
                    new.policy_version,
                    now,
                    expires
                ],
            )?;
            let approval = get(tx, &id)?.ok_or_else(|| Error::NoSuchApproval(id.clone()))?;
            append(tx, "approval.created", &approval_record(&approval))?;
            then(&approval)?;
            Ok(approval)
        })
    }

    /// The pending request for the same action, agent and policy version, if one is open (a
    /// retry while the owner has not answered reuses it rather than asking twice).
    pub fn find_pending(
        &self,
        action_hash: &str,
        agent: &str,
        policy_version: &str,
    ) -> Result<Option<Approval>> {
        let conn = self.lock()?;
        let id: Option<String> = conn
            .query_row(
                "SELECT id FROM approvals WHERE action_hash = ?1 AND agent = ?2 \
                 AND policy_version = ?3 AND status = 'pending' AND expires_ms > ?4 \
                 ORDER BY created_ms DESC LIMIT 1",
                params![action_hash, agent, policy_version, now_ms()],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| get(&conn, &id))
            .transpose()
            .map(Option::flatten)
    }

    /// The owner's denial of this action within `window`, if any: a denied action stays denied
    /// (the model's retry is not put to the owner again) until the window passes or the policy
    /// changes.
    pub fn find_denial(
        &self,
        action_hash: &str,
        agent: &str,
        policy_version: &str,
        window: Duration,
    ) -> Result<Option<Approval>> {
        let since = now_ms().saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        let conn = self.lock()?;
        let id: Option<String> = conn
            .query_row(
                "SELECT id FROM approvals WHERE action_hash = ?1 AND agent = ?2 \
                 AND policy_version = ?3 AND status = 'denied' AND decided_ms > ?4 \
                 ORDER BY decided_ms DESC LIMIT 1",
                params![action_hash, agent, policy_version, since],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| get(&conn, &id))
            .transpose()
            .map(Option::flatten)
    }

    /// Takes a grant for this action if one is valid: an unused allow-once (consumed here) or an
    /// unexpired allow-for-24h. Records `grant.used` in the same transaction.
    pub fn take_grant(
        &self,
        action_hash: &str,
        agent: &str,
        policy_version: &str,
        tool_call_id: Option<&str>,
    ) -> Result<Option<Approval>> {
        let now = now_ms();
        self.write(|tx| {
            let id: Option<String> = tx
                .query_row(
                    "SELECT id FROM approvals WHERE action_hash = ?1 AND agent = ?2 \
                     AND policy_version = ?3 AND status = 'approved' AND ( \
                       (grant_kind = 'once' AND uses = 0) OR \
                       (grant_kind = '24h' AND grant_expires_ms > ?4)) \
                     ORDER BY grant_kind = 'once' DESC, decided_ms LIMIT 1",
                    params![action_hash, agent, policy_version, now],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else { return Ok(None) };
            tx.execute("UPDATE approvals SET uses = uses + 1 WHERE id = ?1", [&id])?;
            append(
                tx,
                "grant.used",
                &serde_json::json!({"approval": id, "action_hash": action_hash, "agent": agent,
                                    "tool_call_id": tool_call_id}),
            )?;
            get(tx, &id)
        })
    }

    /// Approves or denies a pending request. A decision on anything but a pending, unexpired
    /// request is refused and changes nothing.
    pub fn decide(
        &self,
        id: &str,
        approve: bool,
        grant: GrantKind,
        by: &str,
        grant_ttl: Duration,
    ) -> Result<Approval> {
        let now = now_ms();
        self.write(|tx| {
            let a = get(tx, id)?.ok_or_else(|| Error::NoSuchApproval(id.to_owned()))?;
            if a.status != Status::Pending || a.expires_ms <= now {
                return Err(Error::NotPending {
                    id: id.to_owned(),
                    status: if a.status == Status::Pending {
                        "expired".into()
                    } else {
                        a.status.as_str().into()
                    },
                });
            }
            let (status, grant_kind, grant_expires) = if approve {
                let ttl = i64::try_from(grant_ttl.as_millis()).unwrap_or(i64::MAX);
                (
                    "approved",
                    Some(grant.as_str()),
                    Some(now.saturating_add(ttl)),
                )
            } else {
                ("denied", None, None)
            };
            tx.execute(
                "UPDATE approvals SET status = ?2, grant_kind = ?3, grant_expires_ms = ?4, \
                 decided_ms = ?5, decided_by = ?6 WHERE id = ?1",
                params![id, status, grant_kind, grant_expires, now, by],
            )?;
            let a = get(tx, id)?.ok_or_else(|| Error::NoSuchApproval(id.to_owned()))?;
            let kind = if approve {
                "approval.approved"
            } else {
                "approval.denied"
            };
            append(tx, kind, &approval_record(&a))?;
            Ok(a)
        })
    }

    /// One approval.
    pub fn get(&self, id: &str) -> Result<Option<Approval>> {
        get(&*self.lock()?, id)
    }

    /// Approvals, newest first, optionally only one status.
    pub fn list(&self, status: Option<Status>, limit: usize) -> Result<Vec<Approval>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE (?1 IS NULL OR status = ?1) \
             ORDER BY created_ms DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(
            params![
                status.map(Status::as_str),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            approval_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Number of pending, unexpired requests.
    pub fn pending_count(&self) -> Result<i64> {
        Ok(self.lock()?.query_row(
            "SELECT count(*) FROM approvals WHERE status = 'pending' AND expires_ms > ?1",
            [now_ms()],
            |r| r.get(0),
        )?)
    }

    /// Expires pending requests past their time, and every pending request or grant made under
    /// another policy version (a new policy clears the grant cache). Each is audited.
    pub fn expire(&self, current_policy_version: &str) -> Result<usize> {
        let now = now_ms();
        self.write(|tx| {
            let ids: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM approvals WHERE (status = 'pending' AND expires_ms <= ?1) \
                     OR (status IN ('pending', 'approved') AND policy_version != ?2)",
                )?;
                let rows = stmt.query_map(params![now, current_policy_version], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for id in &ids {
                tx.execute(
                    "UPDATE approvals SET status = 'expired' WHERE id = ?1",
                    [id],
                )?;
                if let Some(a) = get(tx, id)? {
                    append(tx, "approval.expired", &approval_record(&a))?;
                }
            }
            Ok(ids.len())
        })
    }
}

const COLUMNS: &str = "id, action_hash, tool, class, rule, summary, agent, session_key, \
    tool_call_id, trace_id, policy_version, status, grant_kind, created_ms, expires_ms, \
    decided_ms, decided_by";

fn get(conn: &Connection, id: &str) -> Result<Option<Approval>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
            [id],
            approval_row,
        )
        .optional()?)
}

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
    let status: String = r.get(11)?;
    let grant: Option<String> = r.get(12)?;
    Ok(Approval {
        id: r.get(0)?,
        action_hash: r.get(1)?,
        tool: r.get(2)?,
        class: r.get(3)?,
        rule: r.get(4)?,
        summary: r.get(5)?,
        agent: r.get(6)?,
        session_key: r.get(7)?,
        tool_call_id: r.get(8)?,
        trace_id: r.get(9)?,
        policy_version: r.get(10)?,
        status: Status::parse(&status),
        grant: grant.map(|g| {
            if g == "24h" {
                GrantKind::Day
            } else {
                GrantKind::Once
            }
        }),
        created_ms: r.get(13)?,
        expires_ms: r.get(14)?,
        decided_ms: r.get(15)?,
        decided_by: r.get(16)?,
    })
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        ts_ms: r.get(1)?,
        kind: r.get(2)?,
        record: r.get(3)?,
        prev: r.get(4)?,
        hash: r.get(5)?,
    })
}

fn approval_record(a: &Approval) -> Value {
    serde_json::json!({
        "approval": a.id, "status": a.status, "grant": a.grant, "action_hash": a.action_hash,
        "tool": a.tool, "class": a.class, "rule": a.rule, "summary": a.summary, "agent": a.agent,
        "session_key": a.session_key, "tool_call_id": a.tool_call_id, "trace_id": a.trace_id,
        "policy_version": a.policy_version, "decided_by": a.decided_by,
    })
}

/// Appends inside an open write transaction: reads the head, links and hashes the record.
fn append(tx: &Transaction<'_>, kind: &str, record: &Value) -> Result<i64> {
    let (seq, prev) = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?
        .map_or((1, GENESIS.to_owned()), |(s, h)| (s + 1, h));
    let ts = now_ms();
    let text = record.to_string();
    let hash = audit_hash(seq, ts, kind, &prev, &text);
    tx.execute(
        "INSERT INTO audit (seq, ts_ms, kind, record, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![seq, ts, kind, text, prev, hash],
    )?;
    Ok(seq)
}

fn new_id() -> Result<String> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b)
        .map_err(|e| Error::io("random approval id", std::io::Error::other(e.to_string())))?;
    Ok(format!("ap_{}", hex::encode(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("c.db")).unwrap();
        (dir, s)
    }

    fn new<'a>(hash: &'a str) -> NewApproval<'a> {
        NewApproval {
            action_hash: hash,
            tool: "exec",
            class: "red",
            rule: "r",
            summary: "exec: x",
            agent: "main",
            session_key: None,
            tool_call_id: Some("call_1"),
            trace_id: None,
            policy_version: "v1",
        }
    }

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn allow_once_is_single_use_and_24h_repeats() {
        let (_d, s) = store();
        let a = s.create_approval(&new("h1"), DAY).unwrap();
        assert_eq!(
            s.find_pending("h1", "main", "v1").unwrap().unwrap().id,
            a.id
        );
        assert!(s.take_grant("h1", "main", "v1", None).unwrap().is_none());
        s.decide(&a.id, true, GrantKind::Once, "test", DAY).unwrap();
        assert!(
            s.take_grant("h1", "other-agent", "v1", None)
                .unwrap()
                .is_none()
        );
        assert!(s.take_grant("h1", "main", "v2", None).unwrap().is_none());
        assert!(s.take_grant("h1", "main", "v1", None).unwrap().is_some());
        assert!(s.take_grant("h1", "main", "v1", None).unwrap().is_none());

        let b = s.create_approval(&new("h2"), DAY).unwrap();
        s.decide(&b.id, true, GrantKind::Day, "test", DAY).unwrap();
        for _ in 0..3 {
            assert!(s.take_grant("h2", "main", "v1", None).unwrap().is_some());
        }
        // A decided request cannot be decided again.
        let err = s
            .decide(&b.id, false, GrantKind::Once, "t", DAY)
            .unwrap_err();
        assert!(err.to_string().contains("approved, not pending"), "{err}");
        // A new policy version clears grants and pending requests.
        let c = s.create_approval(&new("h3"), DAY).unwrap();
        assert_eq!(s.expire("v2").unwrap(), 3);
        assert!(s.take_grant("h2", "main", "v1", None).unwrap().is_none());
        assert_eq!(s.get(&c.id).unwrap().unwrap().status, Status::Expired);
        s.verify_audit().unwrap();
    }

    #[test]
    fn expired_requests_cannot_be_approved() {
        let (_d, s) = store();
        let a = s.create_approval(&new("h"), Duration::ZERO).unwrap();
        let err = s
            .decide(&a.id, true, GrantKind::Once, "t", DAY)
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(matches!(
            s.decide("ap_nope", true, GrantKind::Once, "t", DAY),
            Err(Error::NoSuchApproval(_))
        ));
    }

    /// The Hub recomputes these hashes (`hub/openapi.json`, `POST /v1/audit`): the published
    /// vector must be this function's output.
    #[test]
    fn audit_hash_matches_the_hub_protocol_vector() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hub/testdata/vectors.json");
        let bytes = clawgate_protocol::io::read_capped(&path, 1 << 20).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let chain = &v["audit_chain"];
        assert_eq!(chain["genesis"], GENESIS);
        let records = chain["records"].as_array().unwrap();
        assert!(!records.is_empty());
        for r in records {
            let hash = audit_hash(
                r["seq"].as_i64().unwrap(),
                r["ts"].as_i64().unwrap(),
                r["kind"].as_str().unwrap(),
                r["prev"].as_str().unwrap(),
                r["record"].as_str().unwrap(),
            );
            assert_eq!(hash, r["hash"].as_str().unwrap(), "seq {}", r["seq"]);
        }
    }

    #[test]
    fn audit_verify_catches_edit_removal_and_reorder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let s = Store::open(&path).unwrap();
        for i in 0..5 {
            s.audit("decision", &serde_json::json!({"n": i})).unwrap();
        }
        assert_eq!(s.verify_audit().unwrap().records, 5);
        drop(s);
        type Tamper = fn(&Connection);
        let tampers: [(&str, Tamper, &str); 4] = [
            (
                "edit",
                |c| {
                    c.execute("UPDATE audit SET record = '{\"n\":9}' WHERE seq = 3", [])
                        .unwrap();
                },
                "edited",
            ),
            (
                "remove",
                |c| {
                    c.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
                },
                "removed",
            ),
            (
                "reorder",
                |c| {
                    c.execute_batch(
                    "UPDATE audit SET seq = 100 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; \
                     UPDATE audit SET seq = 3 WHERE seq = 100;",
                )
                .unwrap();
                },
                "does not match",
            ),
            (
                "kind",
                |c| {
                    c.execute("UPDATE audit SET kind = 'x' WHERE seq = 1", [])
                        .unwrap();
                },
                "edited",
            ),
        ];
        for (what, tamper, want) in tampers {
            let copy = dir.path().join(format!("{what}.db"));
            std::fs::copy(&path, &copy).unwrap();
            tamper(&Connection::open(&copy).unwrap());
            let err = Store::open(&copy).unwrap().verify_audit().unwrap_err();
            assert!(err.to_string().contains(want), "{what}: {err}");
        }
    }
}
