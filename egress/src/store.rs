//! Usage buckets in SQLite (WAL): one row per (agent, provider, model, hour), incremented in one
//! transaction per response.
//!
//! Writes go through one recorder thread. Nothing is lost on a crash:
//!
//! * before a request goes upstream, [`UsageStore::begin`] commits an in-flight marker (one row
//!   of `usage_inflight`) and the request waits for that commit (tens of microseconds: WAL,
//!   `synchronous=NORMAL`, so it is in the OS and survives the process dying). The proxy asks
//!   for it as soon as the body is read ([`UsageStore::begin_early`]) and waits only before the
//!   upstream send, so the commit overlaps the redaction; the model is named afterwards (a crash
//!   in between counts that request under `unknown`), and a request refused in between deletes
//!   its marker;
//! * when the response ends (or the client cancels, or the upstream fails), its record is
//!   enqueued without waiting; the recorder adds it to its bucket and deletes the marker in one
//!   transaction;
//! * at open, markers left by a crash are folded into their buckets as requests with incomplete
//!   usage, so a request whose response was cut by the crash is still counted, once.
//!
//! The recorder commits whatever is queued together (group commit), so under load many records
//! share one transaction. [`UsageStore::flush`] waits until everything enqueued is committed.
//!
//! Schema (`user_version` 3; version 1 lacked `usage_inflight`, version 2 `cache_write_1h`;
//! both are upgraded at open, and `clawgate usage show` reads them as they are):
//!
//! ```sql
//! CREATE TABLE usage_buckets (
//!   agent TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
//!   hour INTEGER NOT NULL,            -- unix seconds of the UTC hour's start
//!   input INTEGER NOT NULL, output INTEGER NOT NULL,
//!   cache_read INTEGER NOT NULL, cache_write INTEGER NOT NULL,
//!   cache_write_1h INTEGER NOT NULL,  -- of cache_write, one-hour writes (Anthropic)
//!   requests INTEGER NOT NULL,        -- responses (and failed attempts) counted
//!   incomplete INTEGER NOT NULL,      -- of which usage was not (fully) seen: cancelled, cut, unparsable
//!   updated_at INTEGER NOT NULL,      -- unix seconds of the last change
//!   PRIMARY KEY (agent, provider, model, hour)) WITHOUT ROWID;
//! CREATE TABLE usage_inflight (       -- requests sent upstream whose record is not in yet
//!   id INTEGER PRIMARY KEY, agent TEXT NOT NULL, provider TEXT NOT NULL,
//!   model TEXT NOT NULL, at INTEGER NOT NULL);
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, params};

use crate::config::Provider;
use crate::error::{Error, Result};
use crate::prices::Prices;
use crate::usage::Usage;

const SCHEMA_VERSION: i64 = 3;
const INFLIGHT_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS usage_inflight (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    at INTEGER NOT NULL
);";
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS usage_buckets (
    agent TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    hour INTEGER NOT NULL,
    input INTEGER NOT NULL DEFAULT 0,
    output INTEGER NOT NULL DEFAULT 0,
    cache_read INTEGER NOT NULL DEFAULT 0,
    cache_write INTEGER NOT NULL DEFAULT 0,
    cache_write_1h INTEGER NOT NULL DEFAULT 0,
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
    /// The in-flight marker [`UsageStore::begin`] made for this request, deleted with the
    /// record's commit.
    pub inflight: Option<i64>,
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

/// A request about to go upstream (see [`UsageStore::begin`]).
struct Begin {
    agent: String,
    provider: String,
    model: String,
    at: i64,
    done: tokio::sync::oneshot::Sender<Result<i64>>,
}

enum Msg {
    Begin(Begin),
    /// The model of a marker made before the request body was parsed.
    Name(i64, String),
    /// A marker whose request was refused before it went upstream.
    Abandon(i64),
    Record(Record),
    /// A record computed on the recorder thread (e.g. parsing a large JSON body off the I/O
    /// path).
    Deferred(Deferred),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Today's usage per agent, for budgets: loaded at open, updated by every record.
#[derive(Debug, Default)]
struct Ledger(HashMap<String, AgentDay>);

/// One agent's usage on one UTC day.
#[derive(Debug, Default)]
struct AgentDay {
    day: i64,
    tokens: u64,
    /// Tokens per (provider, model): cost is computed from these at the current prices, the
    /// same way after a restart (from the buckets) as before it.
    by_model: HashMap<(String, String), Usage>,
}

impl Ledger {
    fn add(&mut self, agent: &str, provider: &str, model: &str, at: i64, usage: &Usage) {
        let day = day_of(at);
        let e = match self.0.get_mut(agent) {
            Some(e) => e,
            None => self.0.entry(agent.to_owned()).or_default(),
        };
        if e.day < day {
            *e = AgentDay {
                day,
                ..AgentDay::default()
            };
        }
        if e.day != day {
            return; // an older day never lowers or inflates today
        }
        e.tokens = e.tokens.saturating_add(usage.total());
        let key = (provider.to_owned(), model.to_owned());
        e.by_model.entry(key).or_default().accumulate(usage);
    }

    fn today(&self, agent: &str, now: i64) -> Option<&AgentDay> {
        self.0.get(agent).filter(|d| d.day == day_of(now))
    }
}

impl AgentDay {
    fn cost(&self, prices: &Prices) -> CostToday {
        let mut out = CostToday::default();
        for ((provider, model), usage) in &self.by_model {
            let cost =
                Provider::from_route(provider).and_then(|p| prices.cost_micros(p, model, usage));
            match cost {
                Some(c) => out.micros = out.micros.saturating_add(c),
                None => out.unpriced = Some((provider.clone(), model.clone())),
            }
        }
        out
    }
}

/// An agent's spending today (UTC), at some price table ([`UsageStore::cost_today`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostToday {
    /// Micro-dollars of the priced usage; `u64::MAX` when the ledger is unreadable (fail
    /// closed: over any budget).
    pub micros: u64,
    /// A provider route and model used today (tokens > 0) that has no price, if any: the true
    /// cost is then unknown.
    pub unpriced: Option<(String, String)>,
}

/// The model recorded when neither the request nor the response named one.
pub const UNKNOWN_MODEL: &str = "unknown";

/// An in-flight marker being committed (see [`UsageStore::begin_early`]).
#[derive(Debug)]
pub struct PendingMarker {
    rx: Option<tokio::sync::oneshot::Receiver<Result<i64>>>,
    store: UsageStore,
}

impl PendingMarker {
    /// Names the request's model and waits until the marker is committed; returns its id.
    pub async fn confirm(mut self, model: &str) -> Result<i64> {
        let rx = self.rx.take().ok_or(Error::RecorderGone)?;
        let id = rx.await.map_err(|_| Error::RecorderGone)??;
        if model != UNKNOWN_MODEL {
            self.store
                .inner
                .tx
                .send(Msg::Name(id, model.to_owned()))
                .map_err(|_| Error::RecorderGone)?;
        }
        Ok(id)
    }
}

impl Drop for PendingMarker {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        // Closed first, so the recorder either delivered the id already (delete it here) or
        // will find the receiver gone (and delete it there); never neither.
        rx.close();
        if let Ok(Ok(id)) = rx.try_recv() {
            let _ = self.store.inner.tx.send(Msg::Abandon(id));
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

/// Brings a new or older database to [`SCHEMA_VERSION`], in one transaction.
fn upgrade(write: &Connection) -> Result<()> {
    let tx = write.unchecked_transaction()?;
    // Version 1 had the buckets only; every older format gets the in-flight table.
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(INFLIGHT_SCHEMA)?;
    // Versions 1 and 2 lack the one-hour column (`CREATE … IF NOT EXISTS` kept their table).
    let has_1h: bool = tx.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('usage_buckets') WHERE name = 'cache_write_1h'",
        [],
        |r| r.get(0),
    )?;
    if !has_1h {
        tx.execute_batch(
            "ALTER TABLE usage_buckets ADD COLUMN cache_write_1h INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
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
            0..SCHEMA_VERSION => upgrade(&write)?,
            SCHEMA_VERSION => {}
            v => {
                return Err(Error::Config(format!(
                    "usage database {} has format {v}, newer than this clawgate understands ({SCHEMA_VERSION})",
                    path.display()
                )));
            }
        }
        let recovered = recover_inflight(&write)?;
        if recovered > 0 {
            tracing::warn!(
                requests = recovered,
                "Requests cut off by a crash or kill were counted with incomplete usage."
            );
        }
        let read = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&read)?;
        let ledger = load_ledger(&read)?;
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

    /// Commits an in-flight marker for a request about to go upstream and returns its id (for
    /// [`Record::inflight`]). Waits for the commit: a request is only sent once a crash can no
    /// longer make it vanish from the usage table.
    pub async fn begin(&self, agent: &str, provider: &str, model: &str, at: i64) -> Result<i64> {
        self.begin_early(agent, provider, at)?.confirm(model).await
    }

    /// Starts committing an in-flight marker whose model is not known yet, without waiting:
    /// [`PendingMarker::confirm`] names the model and waits for the commit, and dropping the
    /// marker unconfirmed deletes it (the request was refused and never went upstream).
    pub fn begin_early(&self, agent: &str, provider: &str, at: i64) -> Result<PendingMarker> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .tx
            .send(Msg::Begin(Begin {
                agent: agent.to_owned(),
                provider: provider.to_owned(),
                model: UNKNOWN_MODEL.to_owned(),
                at,
                done: tx,
            }))
            .map_err(|_| Error::RecorderGone)?;
        Ok(PendingMarker {
            rx: Some(rx),
            store: self.clone(),
        })
    }

    /// Enqueues `record` (committed on the recorder thread).
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
            .map(|l| l.today(agent, unix_now()).map_or(0, |d| d.tokens))
            .unwrap_or(u64::MAX) // poisoned: treat as over any budget (fail closed)
    }

    /// What `agent`'s usage today (UTC) costs at `prices`, including records not yet committed.
    pub fn cost_today(&self, agent: &str, prices: &Prices) -> CostToday {
        match self.inner.ledger.lock() {
            Ok(l) => l
                .today(agent, unix_now())
                .map(|d| d.cost(prices))
                .unwrap_or_default(),
            // Poisoned: over any budget (fail closed).
            Err(_) => CostToday {
                micros: u64::MAX,
                unpriced: None,
            },
        }
    }

    /// Buckets matching `q`, ordered by hour, agent, provider, model.
    pub fn buckets(&self, q: &BucketQuery) -> Result<Vec<Bucket>> {
        let conn = self.inner.read.lock().map_err(|_| Error::Poisoned)?;
        query(&conn, q, "cache_write_1h")
    }

    /// Committed in-flight markers: requests sent upstream whose record is not in yet.
    pub fn in_flight(&self) -> Result<u64> {
        let conn = self.inner.read.lock().map_err(|_| Error::Poisoned)?;
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM usage_inflight", [], |r| r.get(0))?;
        Ok(to_u64(n))
    }
}

/// Today's usage per agent, model and provider, summed from the buckets: the ledger a restart
/// starts from (the same rows `clawgate usage show` prices).
fn load_ledger(conn: &Connection) -> Result<Ledger> {
    let today = day_of(unix_now());
    let mut st = conn.prepare(
        "SELECT agent, provider, model, SUM(input), SUM(output), SUM(cache_read),
                SUM(cache_write), SUM(cache_write_1h)
         FROM usage_buckets WHERE hour >= ?1 GROUP BY agent, provider, model",
    )?;
    let rows = st.query_map(params![today], |r| {
        let usage = Usage {
            input: to_u64(r.get(3)?),
            output: to_u64(r.get(4)?),
            cache_read: to_u64(r.get(5)?),
            cache_write: to_u64(r.get(6)?),
            cache_write_1h: to_u64(r.get(7)?),
        };
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            usage,
        ))
    })?;
    let mut ledger = Ledger::default();
    for row in rows {
        let (agent, provider, model, usage) = row?;
        ledger.add(&agent, &provider, &model, today, &usage);
    }
    Ok(ledger)
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
    if !(1..=SCHEMA_VERSION).contains(&version) {
        return Err(Error::Config(format!(
            "usage database {} has format {version}, this clawgate reads 1..={SCHEMA_VERSION}",
            path.display()
        )));
    }
    // A database the daemon has not upgraded yet has no one-hour column: none were counted.
    let written_1h = if version >= 3 { "cache_write_1h" } else { "0" };
    query(&conn, q, written_1h)
}

/// Buckets matching `q`; `written_1h` is the column (or constant) holding one-hour writes.
fn query(conn: &Connection, q: &BucketQuery, written_1h: &str) -> Result<Vec<Bucket>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT agent, provider, model, hour, input, output, cache_read, cache_write,
                requests, incomplete, {written_1h}
         FROM usage_buckets
         WHERE (?1 IS NULL OR agent = ?1) AND (?2 IS NULL OR hour >= ?2)
           AND (?3 IS NULL OR hour < ?3)
         ORDER BY hour, agent, provider, model"
    ))?;
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
                cache_write_1h: to_u64(r.get(10)?),
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

/// Folds markers a previous process left (it died with those requests in flight) into their
/// buckets: each one request with incomplete usage.
fn recover_inflight(conn: &Connection) -> Result<u64> {
    let tx = conn.unchecked_transaction()?;
    let n: i64 = tx.query_row("SELECT COUNT(*) FROM usage_inflight", [], |r| r.get(0))?;
    if n > 0 {
        tx.execute(
            "INSERT INTO usage_buckets
                (agent, provider, model, hour, requests, incomplete, updated_at)
             SELECT agent, provider, model, at - (at % 3600), COUNT(*), COUNT(*), ?1
             FROM usage_inflight WHERE true GROUP BY agent, provider, model, at - (at % 3600)
             ON CONFLICT (agent, provider, model, hour) DO UPDATE SET
                requests = requests + excluded.requests,
                incomplete = incomplete + excluded.incomplete,
                updated_at = excluded.updated_at",
            params![unix_now()],
        )?;
        tx.execute("DELETE FROM usage_inflight", [])?;
    }
    tx.commit()?;
    Ok(to_u64(n))
}

/// Most messages committed in one transaction.
const GROUP_MAX: usize = 256;

fn recorder(mut conn: Connection, rx: mpsc::Receiver<Msg>, ledger: Arc<Mutex<Ledger>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut items = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for msg in batch {
            match msg {
                Msg::Begin(b) => items.push(Item::Begin(b)),
                Msg::Name(id, model) => items.push(Item::Name(id, model)),
                Msg::Abandon(id) => items.push(Item::Abandon(id)),
                Msg::Record(r) => items.push(Item::Record(r)),
                Msg::Deferred(make) => {
                    if let Some(r) = make() {
                        items.push(Item::Record(r));
                    }
                }
                Msg::Flush(done) => flushes.push(done),
            }
        }
        if let Ok(mut l) = ledger.lock() {
            for item in &items {
                if let Item::Record(r) = item {
                    l.add(&r.agent, &r.provider, &r.model, r.at, &r.usage);
                }
            }
        }
        commit_batch(&mut conn, items);
        for done in flushes {
            let _ = done.send(());
        }
    }
}

enum Item {
    Begin(Begin),
    Name(i64, String),
    Abandon(i64),
    Record(Record),
}

/// Commits `items` in one transaction, retrying a few times; if the database keeps refusing,
/// every waiting `begin` gets the error (its request is refused) and lost records are logged.
fn commit_batch(conn: &mut Connection, items: Vec<Item>) {
    if items.is_empty() {
        return;
    }
    let mut attempt = 0;
    let outcome = loop {
        match write_batch(conn, &items) {
            Ok(ids) => break Ok(ids),
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "Usage write failed; retrying.");
                std::thread::sleep(Duration::from_millis(50 << attempt));
            }
            Err(e) => break Err(e),
        }
    };
    match outcome {
        Ok(ids) => {
            let mut ids = ids.into_iter();
            let mut unwanted = Vec::new();
            for item in items {
                if let Item::Begin(b) = item {
                    let id = ids.next();
                    // A closed receiver: the request was refused before it learnt its marker.
                    if let (Err(_), Some(id)) = (b.done.send(id.ok_or(Error::RecorderGone)), id) {
                        unwanted.push(Item::Abandon(id));
                    }
                }
            }
            commit_batch(conn, unwanted);
        }
        Err(e) => {
            for item in items {
                match item {
                    Item::Begin(b) => {
                        let _ = b.done.send(Err(Error::Db(clone_error(&e))));
                    }
                    // A marker left behind is counted at the next open as a request with
                    // incomplete usage: over-counted, never lost.
                    Item::Name(..) | Item::Abandon(_) => {}
                    Item::Record(r) => tracing::error!(
                        error = %e,
                        agent = %r.agent,
                        provider = %r.provider,
                        model = %r.model,
                        tokens = r.usage.total(),
                        "Usage record lost: the database refused it."
                    ),
                }
            }
        }
    }
}

fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}

/// Writes every item in one transaction; returns the marker ids of the `Begin`s, in order.
fn write_batch(conn: &mut Connection, items: &[Item]) -> rusqlite::Result<Vec<i64>> {
    let tx = conn.transaction()?;
    let mut ids = Vec::new();
    for item in items {
        match item {
            Item::Begin(b) => {
                tx.prepare_cached(
                    "INSERT INTO usage_inflight (agent, provider, model, at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![b.agent, b.provider, b.model, b.at])?;
                ids.push(tx.last_insert_rowid());
            }
            Item::Name(id, model) => {
                tx.prepare_cached("UPDATE usage_inflight SET model = ?2 WHERE id = ?1")?
                    .execute(params![id, model])?;
            }
            Item::Abandon(id) => {
                tx.prepare_cached("DELETE FROM usage_inflight WHERE id = ?1")?
                    .execute(params![id])?;
            }
            Item::Record(r) => write_record(&tx, r)?,
        }
    }
    tx.commit()?;
    Ok(ids)
}

fn write_record(tx: &rusqlite::Transaction<'_>, r: &Record) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO usage_buckets
            (agent, provider, model, hour, input, output, cache_read, cache_write, requests,
             incomplete, updated_at, cache_write_1h)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?11)
         ON CONFLICT (agent, provider, model, hour) DO UPDATE SET
            input = input + excluded.input,
            output = output + excluded.output,
            cache_read = cache_read + excluded.cache_read,
            cache_write = cache_write + excluded.cache_write,
            cache_write_1h = cache_write_1h + excluded.cache_write_1h,
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
        to_i64(r.usage.cache_write_1h),
    ])?;
    if let Some(id) = r.inflight {
        tx.prepare_cached("DELETE FROM usage_inflight WHERE id = ?1")?
            .execute(params![id])?;
    }
    Ok(())
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
                cache_write_1h: 0,
            },
            incomplete,
            inflight: None,
        }
    }

    #[tokio::test]
    async fn markers_of_a_crashed_process_are_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let now = unix_now();
        {
            let s = UsageStore::open(&path).unwrap();
            let done = s.begin("a", "anthropic", "m1", now).await.unwrap();
            let _cut = s.begin("a", "anthropic", "m1", now).await.unwrap();
            let _cut2 = s.begin("b", "openai", "m2", now).await.unwrap();
            s.record(Record {
                inflight: Some(done),
                ..rec("a", "m1", now, 10, false)
            })
            .unwrap();
            s.flush().await.unwrap();
            let all = s.buckets(&BucketQuery::default()).unwrap();
            assert_eq!(all.len(), 1, "markers are not buckets until recovered");
            // The process "dies" here: two requests were still in flight.
        }
        let s = UsageStore::open(&path).unwrap();
        let all = s.buckets(&BucketQuery::default()).unwrap();
        let a = all.iter().find(|b| b.agent == "a").unwrap();
        assert_eq!((a.requests, a.incomplete, a.usage.input), (2, 1, 10));
        let b = all.iter().find(|b| b.agent == "b").unwrap();
        assert_eq!((b.requests, b.incomplete, b.model.as_str()), (1, 1, "m2"));
        drop(s);
        // Recovery happened once: a second open adds nothing.
        let again = UsageStore::open(&path).unwrap();
        assert_eq!(again.buckets(&BucketQuery::default()).unwrap(), all);
    }

    /// Early markers: refused requests leave nothing, whether the refusal came before or after
    /// the marker's commit; a confirmed one carries its model through a crash.
    #[tokio::test]
    async fn early_markers_are_named_or_abandoned_never_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let now = unix_now();
        {
            let s = UsageStore::open(&path).unwrap();
            for _ in 0..50 {
                drop(s.begin_early("refused", "openai", now).unwrap());
            }
            let committed = s.begin_early("refused", "openai", now).unwrap();
            s.flush().await.unwrap();
            drop(committed);
            let sent = s.begin_early("sent", "openai", now).unwrap();
            let _id = sent.confirm("m3").await.unwrap();
            s.flush().await.unwrap();
            // The process "dies" with the confirmed request still in flight.
        }
        let s = UsageStore::open(&path).unwrap();
        let all = s.buckets(&BucketQuery::default()).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(
            (
                all[0].agent.as_str(),
                all[0].model.as_str(),
                all[0].requests,
                all[0].incomplete
            ),
            ("sent", "m3", 1, 1)
        );
    }

    /// The buckets table of formats 1 and 2 (no one-hour column).
    const BUCKETS_V2: &str = "CREATE TABLE usage_buckets (
        agent TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, hour INTEGER NOT NULL,
        input INTEGER NOT NULL DEFAULT 0, output INTEGER NOT NULL DEFAULT 0,
        cache_read INTEGER NOT NULL DEFAULT 0, cache_write INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0, incomplete INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL, PRIMARY KEY (agent, provider, model, hour)) WITHOUT ROWID;";

    #[tokio::test]
    async fn version_1_and_2_databases_are_read_and_upgraded() {
        for version in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("usage.db");
            {
                let c = Connection::open(&path).unwrap();
                c.execute_batch(BUCKETS_V2).unwrap();
                if version == 2 {
                    c.execute_batch(INFLIGHT_SCHEMA).unwrap();
                }
                c.execute(
                    "INSERT INTO usage_buckets (agent, provider, model, hour, input, cache_write,
                        requests, updated_at)
                     VALUES ('a', 'openai', 'm', 3600, 5, 7, 1, 0)",
                    [],
                )
                .unwrap();
                c.pragma_update(None, "user_version", version).unwrap();
            }
            // `usage show` reads the old format as it is.
            let old = read_buckets(&path, &BucketQuery::default()).unwrap();
            assert_eq!((old.len(), old[0].usage.cache_write_1h), (1, 0));
            let s = UsageStore::open(&path).unwrap();
            let id = s.begin("a", "openai", "m", 3600).await.unwrap();
            assert!(id > 0);
            let mut r = rec("a", "m", 3600, 1, false);
            r.provider = "openai".into();
            r.usage.cache_write = 10;
            r.usage.cache_write_1h = 6;
            s.record(r).unwrap();
            s.flush().await.unwrap();
            let b = &s.buckets(&BucketQuery::default()).unwrap()[0];
            assert_eq!(
                (b.usage.input, b.usage.cache_write, b.usage.cache_write_1h),
                (6, 17, 6),
                "version {version}"
            );
            drop(s);
            let again = read_buckets(&path, &BucketQuery::default()).unwrap();
            assert_eq!(again[0].usage.cache_write_1h, 6);
            let c = Connection::open(&path).unwrap();
            let v: i64 = c
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(v, SCHEMA_VERSION);
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
        let u = |input| Usage {
            input,
            ..Usage::default()
        };
        l.add("a", "openai", "gpt-4o", now - 86_400, &u(50));
        assert!(l.today("a", now).is_none());
        l.add("a", "openai", "gpt-4o", now, &u(7));
        l.add("a", "openai", "gpt-4o", now - 86_400, &u(50)); // never lowers or inflates today
        l.add("a", "openai", "gpt-4o-2024-08-06", now, &u(3));
        let day = l.today("a", now).unwrap();
        assert_eq!(day.tokens, 10);
        assert_eq!(day.by_model.len(), 2);
    }

    /// Cost is the tokens of each (provider, model) today at the given prices; a model without
    /// a price makes today's cost unknown, unless it used no tokens.
    #[test]
    fn cost_today_prices_each_model() {
        let prices = Prices::builtin().unwrap();
        let mut l = Ledger::default();
        let now = unix_now();
        let u = |input, output| Usage {
            input,
            output,
            ..Usage::default()
        };
        l.add("a", "openai", "gpt-4o", now, &u(1000, 100)); // 2500 + 1000
        l.add("a", "openai", "gpt-4o-2024-08-06", now, &u(1000, 0)); // 2500
        l.add("a", "anthropic", "claude-haiku-4-5", now, &u(0, 1000)); // 5000
        l.add("a", "openai", "unknown", now, &u(0, 0)); // nothing used: no price needed
        assert_eq!(
            l.today("a", now).unwrap().cost(&prices),
            CostToday {
                micros: 11_000,
                unpriced: None
            }
        );
        l.add("a", "gemini", "gemini-9-ultra", now, &u(1, 0));
        let c = l.today("a", now).unwrap().cost(&prices);
        assert_eq!(c.micros, 11_000);
        assert_eq!(
            c.unpriced,
            Some(("gemini".to_owned(), "gemini-9-ultra".to_owned()))
        );
        // The same tokens, another table: cost follows the prices, not a stored number.
        assert_eq!(
            l.today("a", now).unwrap().cost(&Prices::default()).micros,
            0
        );
    }

    /// A restart computes today's cost from the buckets: the same figure as the running
    /// total, and yesterday's usage does not count.
    #[tokio::test]
    async fn cost_today_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let prices = Prices::builtin().unwrap();
        let now = unix_now();
        let before = {
            let s = UsageStore::open(&path).unwrap();
            s.record(rec("a", "claude-sonnet-4-5-20250929", now, 25, false))
                .unwrap();
            s.record(rec("a", "claude-sonnet-4-5", now, 1000, false))
                .unwrap();
            s.record(rec("a", "claude-haiku-4-5", now - 86_400, 1_000_000, false))
                .unwrap();
            s.flush().await.unwrap();
            s.cost_today("a", &prices)
        };
        // Per model: input × 3 + 2 × 15 + 3 × 0.3 + 4 × 3.75 (µ$), each rounded up.
        assert_eq!(before.micros, (75 + 30 + 1 + 15) + (3000 + 30 + 1 + 15));
        let s = UsageStore::open(&path).unwrap();
        assert_eq!(s.cost_today("a", &prices), before);
        assert_eq!(s.cost_today("b", &prices), CostToday::default());
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
