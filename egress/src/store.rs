//! Usage buckets in SQLite (WAL): one row per (agent, provider, model, hour), incremented in one
//! transaction per response.
//!
//! Writes go through one recorder thread, so the request path never waits for SQLite: a
//! response's end (or cancel, or upstream failure) enqueues its record and moves on. The thread
//! commits each record in its own transaction (`synchronous=NORMAL`: in the OS before the next
//! record, fsynced at checkpoints). [`UsageStore::flush`] waits until everything enqueued is
//! committed; a daemon calls it on shutdown. A crash loses at most the records still in the
//! queue (microseconds' worth).
//!
//! Schema (`user_version` 1):
//!
//! ```sql
//! CREATE TABLE usage_buckets (
//!   agent TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
//!   hour INTEGER NOT NULL,            -- unix seconds of the UTC hour's start
//!   input INTEGER NOT NULL, output INTEGER NOT NULL,
//!   cache_read INTEGER NOT NULL, cache_write INTEGER NOT NULL,
//!   requests INTEGER NOT NULL,        -- responses (and failed attempts) counted
//!   incomplete INTEGER NOT NULL,      -- of which usage was not (fully) seen: cancelled, cut, unparsable
//!   updated_at INTEGER NOT NULL,      -- unix seconds of the last change
//!   PRIMARY KEY (agent, provider, model, hour)) WITHOUT ROWID;
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, params};

use crate::error::{Error, Result};
use crate::usage::Usage;

const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS usage_buckets (
    agent TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    hour INTEGER NOT NULL,
    input INTEGER NOT NULL DEFAULT 0,
    output INTEGER NOT NULL DEFAULT 0,
    cache_read INTEGER NOT NULL DEFAULT 0,
    cache_write INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    incomplete INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (agent, provider, model, hour)
) WITHOUT ROWID;";

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Start of the UTC hour holding `at` (unix seconds).
pub fn hour_of(at: i64) -> i64 {
    at - at.rem_euclid(3600)
}

/// Start of the UTC day holding `at` (unix seconds).
pub fn day_of(at: i64) -> i64 {
    at - at.rem_euclid(86_400)
}

/// Seconds until the next UTC midnight (when budgets reset).
pub fn seconds_until_utc_midnight() -> u64 {
    let now = unix_now();
    u64::try_from(day_of(now) + 86_400 - now).unwrap_or(86_400)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// One response's usage, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Agent id.
    pub agent: String,
    /// Provider route (`anthropic`, `openai`, `gemini`, `openrouter`).
    pub provider: String,
    /// Model (from the response if it named one, else the request; `unknown` if neither).
    pub model: String,
    /// When (unix seconds); picks the hour bucket.
    pub at: i64,
    /// Tokens.
    pub usage: Usage,
    /// Usage was not (fully) seen: the client cancelled, the upstream failed, or no usage came.
    pub incomplete: bool,
}

/// One bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Agent id.
    pub agent: String,
    /// Provider route.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Unix seconds of the UTC hour's start.
    pub hour: i64,
    /// Tokens.
    pub usage: Usage,
    /// Requests counted.
    pub requests: u64,
    /// Of which usage was incomplete.
    pub incomplete: u64,
}

/// Which buckets [`UsageStore::buckets`] returns.
#[derive(Debug, Clone, Default)]
pub struct BucketQuery {
    /// Only this agent.
    pub agent: Option<String>,
    /// Only hours at or after this (unix seconds).
    pub since: Option<i64>,
    /// Only hours before this (unix seconds).
    pub until: Option<i64>,
}

type Deferred = Box<dyn FnOnce() -> Option<Record> + Send>;

enum Msg {
    Record(Record),
    /// A record computed on the recorder thread (e.g. parsing a large JSON body off the I/O
    /// path).
    Deferred(Deferred),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Today's tokens per agent, for budgets: loaded at open, updated by every record.
#[derive(Debug, Default)]
struct Ledger(HashMap<String, (i64, u64)>);

impl Ledger {
    fn add(&mut self, agent: &str, at: i64, tokens: u64) {
        let day = day_of(at);
        let e = self.0.entry(agent.to_owned()).or_insert((day, 0));
        if e.0 == day {
            e.1 = e.1.saturating_add(tokens);
        } else if e.0 < day {
            *e = (day, tokens);
        }
    }

    fn today(&self, agent: &str, now: i64) -> u64 {
        match self.0.get(agent) {
            Some(&(day, n)) if day == day_of(now) => n,
            _ => 0,
        }
    }
}

/// The usage database. Cheap to clone (one recorder thread and one reader connection shared).
#[derive(Clone)]
pub struct UsageStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    tx: mpsc::Sender<Msg>,
    read: Mutex<Connection>,
    ledger: Arc<Mutex<Ledger>>,
}

impl std::fmt::Debug for UsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageStore").finish_non_exhaustive()
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(())
}

impl UsageStore {
    /// Opens (creating if needed) the database at `path` and starts the recorder thread.
    pub fn open(path: &Path) -> Result<UsageStore> {
        let write = Connection::open(path)?;
        configure(&write)?;
        write.pragma_update(None, "journal_mode", "WAL")?;
        write.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = write.pragma_query_value(None, "user_version", |r| r.get(0))?;
        match version {
            0 => {
                write.execute_batch(SCHEMA)?;
                write.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            SCHEMA_VERSION => {}
            v => {
                return Err(Error::Config(format!(
                    "usage database {} has format {v}, newer than this clawgate understands ({SCHEMA_VERSION})",
                    path.display()
                )));
            }
        }
        let read = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&read)?;
        let mut ledger = Ledger::default();
        {
            let today = day_of(unix_now());
            let mut st = read.prepare(
                "SELECT agent, SUM(input + output + cache_read + cache_write) FROM usage_buckets
                 WHERE hour >= ?1 GROUP BY agent",
            )?;
            let rows = st.query_map(params![today], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (agent, n) = row?;
                ledger.add(&agent, today, to_u64(n));
            }
        }
        let ledger = Arc::new(Mutex::new(ledger));
        let (tx, rx) = mpsc::channel();
        let thread_ledger = ledger.clone();
        std::thread::Builder::new()
            .name("clawgate-usage".into())
            .spawn(move || recorder(write, rx, thread_ledger))
            .map_err(|e| Error::io("cannot start the usage recorder thread", e))?;
        Ok(UsageStore {
            inner: Arc::new(StoreInner {
                tx,
                read: Mutex::new(read),
                ledger,
            }),
        })
    }

    /// Enqueues `record` (its own transaction, committed on the recorder thread).
    pub fn record(&self, record: Record) -> Result<()> {
        self.inner
            .tx
            .send(Msg::Record(record))
            .map_err(|_| Error::RecorderGone)
    }

    /// Enqueues a record that `make` computes on the recorder thread.
    pub(crate) fn record_with(
        &self,
        make: impl FnOnce() -> Option<Record> + Send + 'static,
    ) -> Result<()> {
        self.inner
            .tx
            .send(Msg::Deferred(Box::new(make)))
            .map_err(|_| Error::RecorderGone)
    }

    /// Waits until every record enqueued before this call is committed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .tx
            .send(Msg::Flush(tx))
            .map_err(|_| Error::RecorderGone)?;
        rx.await.map_err(|_| Error::RecorderGone)
    }

    /// Tokens (every kind) `agent` used today (UTC), including records not yet committed.
    pub fn tokens_today(&self, agent: &str) -> u64 {
        self.inner
            .ledger
            .lock()
            .map(|l| l.today(agent, unix_now()))
            .unwrap_or(u64::MAX) // poisoned: treat as over any budget (fail closed)
    }

    /// Buckets matching `q`, ordered by hour, agent, provider, model.
    pub fn buckets(&self, q: &BucketQuery) -> Result<Vec<Bucket>> {
        let conn = self.inner.read.lock().map_err(|_| Error::Poisoned)?;
        query(&conn, q)
    }
}

/// Buckets matching `q` from the database at `path`, opened read-only (for `clawgate usage
/// show` while the daemon writes; no recorder thread, nothing created).
pub fn read_buckets(path: &Path, q: &BucketQuery) -> Result<Vec<Bucket>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "usage database {} has format {version}, this clawgate reads {SCHEMA_VERSION}",
            path.display()
        )));
    }
    query(&conn, q)
}

fn query(conn: &Connection, q: &BucketQuery) -> Result<Vec<Bucket>> {
    let mut st = conn.prepare_cached(
        "SELECT agent, provider, model, hour, input, output, cache_read, cache_write,
                requests, incomplete
         FROM usage_buckets
         WHERE (?1 IS NULL OR agent = ?1) AND (?2 IS NULL OR hour >= ?2)
           AND (?3 IS NULL OR hour < ?3)
         ORDER BY hour, agent, provider, model",
    )?;
    let rows = st.query_map(params![q.agent, q.since, q.until], |r| {
        Ok(Bucket {
            agent: r.get(0)?,
            provider: r.get(1)?,
            model: r.get(2)?,
            hour: r.get(3)?,
            usage: Usage {
                input: to_u64(r.get(4)?),
                output: to_u64(r.get(5)?),
                cache_read: to_u64(r.get(6)?),
                cache_write: to_u64(r.get(7)?),
            },
            requests: to_u64(r.get(8)?),
            incomplete: to_u64(r.get(9)?),
        })
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?);
    }
    Ok(out)
}

fn recorder(mut conn: Connection, rx: mpsc::Receiver<Msg>, ledger: Arc<Mutex<Ledger>>) {
    while let Ok(msg) = rx.recv() {
        let record = match msg {
            Msg::Record(r) => r,
            Msg::Deferred(make) => match make() {
                Some(r) => r,
                None => continue,
            },
            Msg::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if let Ok(mut l) = ledger.lock() {
            l.add(&record.agent, record.at, record.usage.total());
        }
        let mut attempt = 0;
        loop {
            match write(&mut conn, &record) {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "Usage write failed; retrying.");
                    std::thread::sleep(Duration::from_millis(50 << attempt));
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        agent = %record.agent,
                        provider = %record.provider,
                        model = %record.model,
                        tokens = record.usage.total(),
                        "Usage record lost: the database refused it."
                    );
                    break;
                }
            }
        }
    }
}

fn write(conn: &mut Connection, r: &Record) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.prepare_cached(
        "INSERT INTO usage_buckets
            (agent, provider, model, hour, input, output, cache_read, cache_write, requests,
             incomplete, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10)
         ON CONFLICT (agent, provider, model, hour) DO UPDATE SET
            input = input + excluded.input,
            output = output + excluded.output,
            cache_read = cache_read + excluded.cache_read,
            cache_write = cache_write + excluded.cache_write,
            requests = requests + 1,
            incomplete = incomplete + excluded.incomplete,
            updated_at = excluded.updated_at",
    )?
    .execute(params![
        r.agent,
        r.provider,
        r.model,
        hour_of(r.at),
        to_i64(r.usage.input),
        to_i64(r.usage.output),
        to_i64(r.usage.cache_read),
        to_i64(r.usage.cache_write),
        i64::from(r.incomplete),
        unix_now(),
    ])?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(agent: &str, model: &str, at: i64, input: u64, incomplete: bool) -> Record {
        Record {
            agent: agent.into(),
            provider: "anthropic".into(),
            model: model.into(),
            at,
            usage: Usage {
                input,
                output: 2,
                cache_read: 3,
                cache_write: 4,
            },
            incomplete,
        }
    }

    #[tokio::test]
    async fn buckets_add_up_per_hour_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let now = unix_now();
        {
            let s = UsageStore::open(&path).unwrap();
            s.record(rec("a", "m1", now, 10, false)).unwrap();
            s.record(rec("a", "m1", now, 5, true)).unwrap();
            s.record(rec("a", "m2", now, 1, false)).unwrap();
            s.record(rec("b", "m1", now - 7200, 100, false)).unwrap();
            s.flush().await.unwrap();
            let all = s.buckets(&BucketQuery::default()).unwrap();
            assert_eq!(all.len(), 3);
            let a1 = all
                .iter()
                .find(|b| b.agent == "a" && b.model == "m1")
                .unwrap();
            assert_eq!(a1.usage.input, 15);
            assert_eq!(a1.usage.output, 4);
            assert_eq!(a1.requests, 2);
            assert_eq!(a1.incomplete, 1);
            assert_eq!(a1.hour, hour_of(now));
            assert_eq!(s.tokens_today("a"), (10 + 9) + (5 + 9) + (1 + 9));
        }
        let s = UsageStore::open(&path).unwrap();
        assert_eq!(s.tokens_today("a"), 43);
        assert_eq!(
            read_buckets(&path, &BucketQuery::default()).unwrap().len(),
            3
        );
        assert!(read_buckets(&dir.path().join("missing.db"), &BucketQuery::default()).is_err());
        let only_b = s
            .buckets(&BucketQuery {
                agent: Some("b".into()),
                ..BucketQuery::default()
            })
            .unwrap();
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].usage.input, 100);
    }

    #[test]
    fn ledger_counts_only_today() {
        let mut l = Ledger::default();
        let now = unix_now();
        l.add("a", now - 86_400, 50);
        assert_eq!(l.today("a", now), 0);
        l.add("a", now, 7);
        l.add("a", now - 86_400, 50); // an older day never lowers or inflates today
        assert_eq!(l.today("a", now), 7);
    }

    #[test]
    fn refuses_a_newer_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 9).unwrap();
        }
        assert!(UsageStore::open(&path).is_err());
    }
}
