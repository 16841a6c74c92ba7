//! `hub.db`: everything the appliance owes the Hub, and the little state the Hub channel needs,
//! persisted in SQLite (WAL, `synchronous=FULL`: these writes are rare, and each must survive
//! power loss).
//!
//! * **Queues** (approval requests, bundle status reports, command results): bounded, ordered by
//!   insertion, idempotent by key (approval id, bundle version, command id). Sent oldest first,
//!   removed only when acknowledged ([`Outbox::ack`]) or explicitly discarded after a fatal
//!   answer ([`Outbox::discard`], which returns the entry so the caller audits it). A full queue
//!   refuses the new entry with [`Error::QueueFull`]; nothing is ever dropped silently.
//! * **Usage**: the latest totals per bucket with a revision, coalesced (a bucket is one row
//!   however often it changes, so the table is bounded by the number of buckets). A bucket is
//!   shipped while its revision is above the revision the Hub acknowledged.
//! * **Audit**: only a cursor (the last seq and hash the Hub acknowledged); the chain itself stays
//!   in `clawgate.db`.
//! * **Event cursor**, **consumed decisions** (single use) and the **command ledger** (each
//!   command id runs at most once).
//!
//! ```sql
//! CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, key TEXT, body TEXT,
//!   created_at INTEGER, attempts INTEGER, last_error TEXT, UNIQUE (kind, key));
//! CREATE TABLE usage (agent, provider, model, hour, revision, acked_revision, input, output,
//!   cache_read, cache_write, requests, incomplete, closed, updated_at,
//!   PRIMARY KEY (agent, provider, model, hour)) WITHOUT ROWID;
//! CREATE TABLE state (name TEXT PRIMARY KEY, value TEXT);
//! CREATE TABLE consumed_decisions (approval_id TEXT PRIMARY KEY, decision TEXT,
//!   expires_at INTEGER, consumed_at INTEGER);
//! CREATE TABLE commands (command_id TEXT PRIMARY KEY, name TEXT, status TEXT, detail TEXT,
//!   started_at INTEGER, finished_at INTEGER);
//! ```

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::protocol::{
    ApprovalRequest, BundleStatusReport, CommandResult, CommandStatus, DecisionKind,
    MAX_SAFE_INTEGER, UsageAck, UsageBucket,
};

const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('approval', 'bundle_status', 'command_result')),
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (kind, key)
) STRICT;
CREATE TABLE IF NOT EXISTS usage (
    agent TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    hour INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    acked_revision INTEGER NOT NULL DEFAULT 0,
    input INTEGER NOT NULL,
    output INTEGER NOT NULL,
    cache_read INTEGER NOT NULL,
    cache_write INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    incomplete INTEGER NOT NULL,
    closed INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (agent, provider, model, hour)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS consumed_decisions (
    approval_id TEXT PRIMARY KEY,
    decision TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    consumed_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'refused')),
    detail TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;
";

/// `prev` of the first audit record (`wrapper/src/store.rs` `GENESIS`).
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Capacities. The defaults hold days of a busy appliance's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Approval requests waiting.
    pub approvals: u64,
    /// Bundle status reports waiting.
    pub bundle_status: u64,
    /// Command results waiting.
    pub command_results: u64,
    /// Usage buckets held (shipped or not; acknowledged closed buckets are pruned).
    pub usage_buckets: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            approvals: 10_000,
            bundle_status: 1_000,
            command_results: 1_000,
            usage_buckets: 100_000,
        }
    }
}

/// The queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// `POST /v1/approvals`.
    Approval,
    /// `POST /v1/bundles/{version}/status`.
    BundleStatus,
    /// `POST /v1/commands/{id}/result`.
    CommandResult,
}

impl QueueKind {
    /// The name stored and shown in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Approval => "approval",
            QueueKind::BundleStatus => "bundle_status",
            QueueKind::CommandResult => "command_result",
        }
    }

    fn capacity(self, limits: &Limits) -> u64 {
        match self {
            QueueKind::Approval => limits.approvals,
            QueueKind::BundleStatus => limits.bundle_status,
            QueueKind::CommandResult => limits.command_results,
        }
    }
}

/// One thing owed to the Hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutboxItem {
    /// An approval request.
    Approval {
        /// The request body.
        request: ApprovalRequest,
    },
    /// A bundle status report.
    BundleStatus {
        /// Bundle version (the path parameter).
        version: u64,
        /// The body.
        report: BundleStatusReport,
    },
    /// A command result.
    CommandResult {
        /// Command id (the path parameter).
        command_id: String,
        /// The body.
        result: CommandResult,
    },
}

impl OutboxItem {
    /// Its queue.
    pub fn kind(&self) -> QueueKind {
        match self {
            OutboxItem::Approval { .. } => QueueKind::Approval,
            OutboxItem::BundleStatus { .. } => QueueKind::BundleStatus,
            OutboxItem::CommandResult { .. } => QueueKind::CommandResult,
        }
    }

    /// Its idempotency key within the queue.
    pub fn key(&self) -> String {
        match self {
            OutboxItem::Approval { request } => request.approval_id.clone(),
            OutboxItem::BundleStatus { version, .. } => version.to_string(),
            OutboxItem::CommandResult { command_id, .. } => command_id.clone(),
        }
    }
}

/// A queued entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Position (increasing in insertion order, never reused).
    pub id: i64,
    /// The entry.
    pub item: OutboxItem,
    /// Queued at, Unix seconds.
    pub created_at: i64,
    /// Failed sends so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued at this position.
    Added(i64),
    /// The same key was already queued there; nothing changed.
    AlreadyQueued(i64),
}

/// One bucket's absolute totals, as the usage store has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotals {
    /// Agent.
    pub agent: String,
    /// Provider route.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Start of the UTC hour, Unix seconds.
    pub hour: i64,
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
    /// Of which incomplete.
    pub incomplete: u64,
}

/// What [`Outbox::stage_usage`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    /// A new bucket, at revision 1.
    New,
    /// Changed totals (or just closed): a new revision to ship.
    Revised(u64),
    /// Same totals and closedness as the latest revision: nothing to ship.
    Unchanged,
}

/// The Hub's audit chain head, as last acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    /// Last seq the Hub holds (0: none).
    pub seq: i64,
    /// Its hash ([`AUDIT_GENESIS`] for none).
    pub hash: String,
}

/// A command in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEntry {
    /// Command id.
    pub command_id: String,
    /// Its name.
    pub name: String,
    /// `None` while running (or interrupted by a crash), else its outcome.
    pub result: Option<CommandResult>,
}

/// `hub.db`.
#[derive(Debug)]
pub struct Outbox {
    conn: Mutex<Connection>,
    limits: Limits,
}

fn to_i64(v: u64) -> Result<i64> {
    if v > MAX_SAFE_INTEGER {
        return Err(Error::Invalid(format!(
            "{v} is above the protocol's integer range"
        )));
    }
    i64::try_from(v).map_err(|_| Error::Invalid(format!("{v} out of range")))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Outbox {
    /// Opens (creating if needed) `hub.db` at `path`, mode 0600.
    pub fn open(path: &Path, limits: Limits) -> Result<Outbox> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Invalid(format!(
                "{} has schema version {version}, newer than this Clawgate's {SCHEMA_VERSION}: refusing to touch it",
                path.display()
            )));
        }
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| Error::io(format!("chmod 600 {}", path.display()), e))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Outbox {
            conn: Mutex::new(conn),
            limits,
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

    // ------------------------------------------------------------------ queues

    /// Queues `item` at `now` (Unix seconds). The same key again changes nothing.
    pub fn push(&self, item: &OutboxItem, now: i64) -> Result<Pushed> {
        self.write(|tx| push_in(tx, item, now, &self.limits))
    }

    /// Up to `limit` entries, oldest first; of one queue, or of all.
    pub fn peek(&self, kind: Option<QueueKind>, limit: usize) -> Result<Vec<Queued>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT id, body, created_at, attempts, last_error FROM queue \
             WHERE ?1 IS NULL OR kind = ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![
                kind.map(QueueKind::as_str),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            raw_queued,
        )?;
        rows.map(|row| parse_queued(row?)).collect()
    }
    /// Entries waiting in `kind`.
    pub fn depth(&self, kind: QueueKind) -> Result<u64> {
        let n: i64 = self.lock()?.query_row(
            "SELECT count(*) FROM queue WHERE kind = ?1",
            [kind.as_str()],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    /// The Hub acknowledged entry `id`: remove it. Unknown ids are not an error (a retry after
    /// a crash may acknowledge twice).
    pub fn ack(&self, id: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM queue WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    /// A send of entry `id` failed (retryably): count it and keep the reason (no secrets: the
    /// client's errors carry none).
    pub fn record_failure(&self, id: i64, error: &str) -> Result<()> {
        let error: String = error.chars().take(1024).collect();
        self.write(|tx| {
            tx.execute(
                "UPDATE queue SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                params![id, error],
            )?;
            Ok(())
        })
    }

    /// The Hub refused entry `id` for good: remove it and return it, so the caller can audit
    /// what was not delivered and why.
    pub fn discard(&self, id: i64) -> Result<Option<Queued>> {
        let raw = self.write(|tx| {
            let raw = tx
                .query_row(
                    "SELECT id, body, created_at, attempts, last_error FROM queue WHERE id = ?1",
                    [id],
                    raw_queued,
                )
                .optional()?;
            tx.execute("DELETE FROM queue WHERE id = ?1", [id])?;
            Ok(raw)
        })?;
        raw.map(parse_queued).transpose()
    }

    // ------------------------------------------------------------------ usage

    /// Records `totals` (absolute) for its bucket. A new bucket starts at revision 1; changed
    /// totals, or closing it, make a new revision; the same totals change nothing. Closing is
    /// sticky (a late change to a closed bucket ships as a new closed revision).
    pub fn stage_usage(&self, totals: &UsageTotals, closed: bool, now: i64) -> Result<Staged> {
        let nums = [
            to_i64(totals.input)?,
            to_i64(totals.output)?,
            to_i64(totals.cache_read)?,
            to_i64(totals.cache_write)?,
            to_i64(totals.requests)?,
            to_i64(totals.incomplete)?,
        ];
        if totals.hour.rem_euclid(3600) != 0 {
            return Err(Error::Invalid(format!(
                "usage hour {} is not the start of an hour",
                totals.hour
            )));
        }
        self.write(|tx| {
            let key = params![totals.agent, totals.provider, totals.model, totals.hour];
            let existing = tx
                .query_row(
                    "SELECT revision, input, output, cache_read, cache_write, requests, incomplete, closed \
                     FROM usage WHERE agent = ?1 AND provider = ?2 AND model = ?3 AND hour = ?4",
                    key,
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            [r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                            r.get::<_, i64>(7)? != 0,
                        ))
                    },
                )
                .optional()?;
            match existing {
                None => {
                    let n: i64 = tx.query_row("SELECT count(*) FROM usage", [], |r| r.get(0))?;
                    if to_u64(n) >= self.limits.usage_buckets {
                        return Err(Error::QueueFull {
                            queue: "usage",
                            capacity: self.limits.usage_buckets,
                        });
                    }
                    tx.execute(
                        "INSERT INTO usage (agent, provider, model, hour, revision, acked_revision, \
                         input, output, cache_read, cache_write, requests, incomplete, closed, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, 1, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                        params![
                            totals.agent, totals.provider, totals.model, totals.hour,
                            nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], closed, now
                        ],
                    )?;
                    Ok(Staged::New)
                }
                Some((_, old, was_closed)) if old == nums && (was_closed || !closed) => {
                    Ok(Staged::Unchanged)
                }
                Some((revision, _, was_closed)) => {
                    let next = revision + 1;
                    tx.execute(
                        "UPDATE usage SET revision = ?5, input = ?6, output = ?7, cache_read = ?8, \
                         cache_write = ?9, requests = ?10, incomplete = ?11, closed = ?12, updated_at = ?13 \
                         WHERE agent = ?1 AND provider = ?2 AND model = ?3 AND hour = ?4",
                        params![
                            totals.agent, totals.provider, totals.model, totals.hour, next,
                            nums[0], nums[1], nums[2], nums[3], nums[4], nums[5],
                            was_closed || closed, now
                        ],
                    )?;
                    Ok(Staged::Revised(to_u64(next)))
                }
            }
        })
    }

    /// Up to `limit` buckets whose latest revision the Hub has not acknowledged, oldest hour
    /// first.
    pub fn usage_to_ship(&self, limit: usize) -> Result<Vec<UsageBucket>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT agent, provider, model, hour, revision, input, output, cache_read, cache_write, \
             requests, incomplete, closed FROM usage WHERE revision > acked_revision \
             ORDER BY hour, agent, provider, model LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
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
                closed: r.get::<_, i64>(11)? != 0,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Applies the Hub's acknowledgements. An ack at or below the latest revision marks that
    /// revision shipped. An ack *above* it means the Hub holds a revision this outbox never
    /// made (it was lost or restored): the bucket is bumped above the Hub's revision so that the
    /// appliance's totals, which are the truth, are shipped again and win.
    pub fn ack_usage(&self, acks: &[UsageAck]) -> Result<()> {
        self.write(|tx| {
            for a in acks {
                let acked = to_i64(a.revision)?;
                let key = params![a.agent, a.provider, a.model, a.hour];
                let revision: Option<i64> = tx
                    .query_row(
                        "SELECT revision FROM usage WHERE agent = ?1 AND provider = ?2 \
                         AND model = ?3 AND hour = ?4",
                        key,
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(revision) = revision else { continue };
                if acked > revision {
                    tx.execute(
                        "UPDATE usage SET revision = ?5 + 1, acked_revision = ?5 \
                         WHERE agent = ?1 AND provider = ?2 AND model = ?3 AND hour = ?4",
                        params![a.agent, a.provider, a.model, a.hour, acked],
                    )?;
                } else {
                    tx.execute(
                        "UPDATE usage SET acked_revision = max(acked_revision, ?5) \
                         WHERE agent = ?1 AND provider = ?2 AND model = ?3 AND hour = ?4",
                        params![a.agent, a.provider, a.model, a.hour, acked],
                    )?;
                }
            }
            Ok(())
        })
    }

    /// Forgets closed, fully acknowledged buckets of hours before `before_hour`. Keep them at
    /// least as long as a late change could still arrive (a day is plenty).
    pub fn prune_usage(&self, before_hour: i64) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM usage WHERE closed = 1 AND acked_revision >= revision AND hour < ?1",
                [before_hour],
            )?)
        })
    }

    /// Buckets with an unshipped revision.
    pub fn usage_pending(&self) -> Result<u64> {
        let n: i64 = self.lock()?.query_row(
            "SELECT count(*) FROM usage WHERE revision > acked_revision",
            [],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    /// When the oldest thing still owed to the Hub was queued or changed (Unix seconds), for
    /// the health score.
    pub fn oldest_unsent_at(&self) -> Result<Option<i64>> {
        Ok(self.lock()?.query_row(
            "SELECT min(t) FROM (SELECT min(created_at) AS t FROM queue \
             UNION ALL SELECT min(updated_at) FROM usage WHERE revision > acked_revision)",
            [],
            |r| r.get(0),
        )?)
    }

    // ------------------------------------------------------------------ cursors

    fn get_state(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .lock()?
            .query_row("SELECT value FROM state WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn set_state(tx: &Transaction<'_>, name: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => tx.execute(
                "INSERT INTO state (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, v],
            )?,
            None => tx.execute("DELETE FROM state WHERE name = ?1", [name])?,
        };
        Ok(())
    }

    /// When the bearer credential was last rotated (Unix seconds; `None`: never since this
    /// `hub.db` was created, so the enrollment's credential).
    pub fn credential_rotated_at(&self) -> Result<Option<i64>> {
        Ok(self
            .get_state("credential_rotated_at")?
            .and_then(|s| s.parse().ok()))
    }

    /// Records a rotation at `at` (after the new credential was stored).
    pub fn set_credential_rotated_at(&self, at: i64) -> Result<()> {
        self.write(|tx| Self::set_state(tx, "credential_rotated_at", Some(&at.to_string())))
    }

    /// The event stream cursor (`None`: start from the Hub's current state).
    pub fn event_cursor(&self) -> Result<Option<String>> {
        self.get_state("event_cursor")
    }

    /// Persists the event cursor after a batch was handled (`None` after `cursor_expired`).
    pub fn set_event_cursor(&self, cursor: Option<&str>) -> Result<()> {
        self.write(|tx| Self::set_state(tx, "event_cursor", cursor))
    }

    /// The Hub's audit head as last acknowledged.
    pub fn audit_cursor(&self) -> Result<AuditCursor> {
        let seq = self
            .get_state("audit_seq")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let hash = self
            .get_state("audit_hash")?
            .unwrap_or_else(|| AUDIT_GENESIS.to_owned());
        Ok(AuditCursor { seq, hash })
    }

    /// Moves the audit cursor forward to the Hub's acknowledged head. A lower seq is refused
    /// (an old acknowledgement arriving late must not send the chain again); use
    /// [`Outbox::rewind_audit_cursor`] when the Hub says so.
    pub fn advance_audit_cursor(&self, seq: i64, hash: &str) -> Result<()> {
        self.write(|tx| {
            let current: i64 = tx
                .query_row(
                    "SELECT value FROM state WHERE name = 'audit_seq'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if seq < current {
                return Err(Error::Invalid(format!(
                    "audit cursor would move back from {current} to {seq}"
                )));
            }
            Self::set_state(tx, "audit_seq", Some(&seq.to_string()))?;
            Self::set_state(tx, "audit_hash", Some(hash))
        })
    }

    /// Sets the audit cursor to `seq`/`hash` in either direction: after a 409 `audit_gap`, the
    /// Hub's `expected_seq` − 1 and the hash of that record in `clawgate.db`.
    pub fn rewind_audit_cursor(&self, seq: i64, hash: &str) -> Result<()> {
        self.write(|tx| {
            Self::set_state(tx, "audit_seq", Some(&seq.to_string()))?;
            Self::set_state(tx, "audit_hash", Some(hash))
        })
    }

    // ------------------------------------------------------------------ decisions

    /// True if `approval_id` consumed a decision.
    pub fn is_consumed(&self, approval_id: &str) -> Result<bool> {
        Ok(self
            .lock()?
            .query_row(
                "SELECT 1 FROM consumed_decisions WHERE approval_id = ?1",
                [approval_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The consumed set as far as `approval_id` is concerned, for [`crate::decision::check`].
    pub fn consumed_set_for(&self, approval_id: &str) -> Result<BTreeSet<String>> {
        let mut set = BTreeSet::new();
        if self.is_consumed(approval_id)? {
            set.insert(approval_id.to_owned());
        }
        Ok(set)
    }

    /// Marks `approval_id` consumed by an accepted decision. Returns false (and changes
    /// nothing) if it already was.
    pub fn consume_decision(
        &self,
        approval_id: &str,
        decision: DecisionKind,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        let kind = match decision {
            DecisionKind::AllowOnce => "allow_once",
            DecisionKind::Allow24h => "allow_24h",
            DecisionKind::Deny => "deny",
        };
        self.write(|tx| {
            Ok(tx.execute(
                "INSERT INTO consumed_decisions (approval_id, decision, expires_at, consumed_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (approval_id) DO NOTHING",
                params![approval_id, kind, expires_at, now],
            )? == 1)
        })
    }

    /// Forgets consumed ids whose decisions expired more than `margin_secs` before `now`: such a
    /// decision is refused as expired anyway, so the id is no longer needed against replay.
    pub fn prune_consumed(&self, now: i64, margin_secs: i64) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM consumed_decisions WHERE expires_at < ?1",
                [now.saturating_sub(margin_secs)],
            )?)
        })
    }

    // ------------------------------------------------------------------ commands

    /// Starts command `command_id` unless it was started before: returns true if the caller
    /// should run it now. Commit-before-run makes each command run at most once, even across a
    /// crash (a `restart` is recorded before the daemon restarts itself).
    pub fn begin_command(&self, command_id: &str, name: &str, now: i64) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "INSERT INTO commands (command_id, name, status, detail, started_at) \
                 VALUES (?1, ?2, 'running', '', ?3) ON CONFLICT (command_id) DO NOTHING",
                params![command_id, name, now],
            )? == 1)
        })
    }

    /// Records a command's outcome and queues its result for the Hub, in one transaction. A
    /// refused command that was never begun is recorded here directly.
    pub fn finish_command(
        &self,
        command_id: &str,
        name: &str,
        result: &CommandResult,
        now: i64,
    ) -> Result<Pushed> {
        let status = match result.status {
            CommandStatus::Succeeded => "succeeded",
            CommandStatus::Failed => "failed",
            CommandStatus::Refused => "refused",
        };
        self.write(|tx| {
            tx.execute(
                "INSERT INTO commands (command_id, name, status, detail, started_at, finished_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (command_id) DO UPDATE SET \
                 status = excluded.status, detail = excluded.detail, finished_at = excluded.finished_at",
                params![command_id, name, status, result.detail, now],
            )?;
            push_in(
                tx,
                &OutboxItem::CommandResult {
                    command_id: command_id.to_owned(),
                    result: result.clone(),
                },
                now,
                &self.limits,
            )
        })
    }

    /// A command from the ledger.
    pub fn command(&self, command_id: &str) -> Result<Option<CommandEntry>> {
        let conn = self.lock()?;
        let row = conn
            .query_row(
                "SELECT name, status, detail FROM commands WHERE command_id = ?1",
                [command_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.map(|(name, status, detail)| CommandEntry {
            command_id: command_id.to_owned(),
            name,
            result: command_status(&status).map(|status| CommandResult { status, detail }),
        }))
    }

    /// Commands begun but never finished (the daemon died while running them, or restarted
    /// for a `restart`), for the caller to finish after a start.
    pub fn unfinished_commands(&self) -> Result<Vec<CommandEntry>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT command_id, name FROM commands WHERE status = 'running' ORDER BY started_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(CommandEntry {
                command_id: r.get(0)?,
                name: r.get(1)?,
                result: None,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

type RawQueued = (i64, String, i64, i64, Option<String>);

fn raw_queued(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawQueued> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn parse_queued((id, body, created_at, attempts, last_error): RawQueued) -> Result<Queued> {
    let item = serde_json::from_str(&body)
        .map_err(|e| Error::Invalid(format!("hub outbox entry {id} does not parse: {e}")))?;
    Ok(Queued {
        id,
        item,
        created_at,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error,
    })
}

fn command_status(s: &str) -> Option<CommandStatus> {
    match s {
        "succeeded" => Some(CommandStatus::Succeeded),
        "failed" => Some(CommandStatus::Failed),
        "refused" => Some(CommandStatus::Refused),
        _ => None,
    }
}

fn push_in(tx: &Transaction<'_>, item: &OutboxItem, now: i64, limits: &Limits) -> Result<Pushed> {
    let kind = item.kind();
    let key = item.key();
    let existing: Option<i64> = tx
        .query_row(
            "SELECT id FROM queue WHERE kind = ?1 AND key = ?2",
            params![kind.as_str(), key],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(Pushed::AlreadyQueued(id));
    }
    let depth: i64 = tx.query_row(
        "SELECT count(*) FROM queue WHERE kind = ?1",
        [kind.as_str()],
        |r| r.get(0),
    )?;
    let capacity = kind.capacity(limits);
    if to_u64(depth) >= capacity {
        return Err(Error::QueueFull {
            queue: kind.as_str(),
            capacity,
        });
    }
    let body = serde_json::to_string(item)
        .map_err(|e| Error::Invalid(format!("outbox entry does not serialise: {e}")))?;
    tx.execute(
        "INSERT INTO queue (kind, key, body, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![kind.as_str(), key, body, now],
    )?;
    Ok(Pushed::Added(tx.last_insert_rowid()))
}

#[cfg(test)]
mod tests;
