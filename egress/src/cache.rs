//! Remembers the redaction of long JSON strings, because agents resend their whole history
//! every turn: only new content is scanned.
//!
//! An entry is keyed by the string exactly as it appears in the request body, escapes and all
//! (so a hit needs no unescaping); it holds that raw string (compared in full on every hit, so a
//! hash collision is a miss, never a wrong answer), the JSON-encoded replacement (or
//! "unchanged") and what was redacted (for metrics). Entries belong to one redactor instance: when the vault changes and the
//! daemon swaps the redactor, the cache empties. Memory is bounded by two generations: entries
//! go into the current map; when it holds half the byte budget it becomes the previous map (the
//! older previous one is dropped), and a hit in the previous map is moved back to the current.
//! A cache nothing used for a minute is emptied ([`RedactionCache::release_if_idle`]): under
//! load it fills to its budget, and an idle daemon should not keep that.
//!
//! An entry also remembers which entries followed it as the next text string of a request with
//! no vault value split across the two ([`Entry::seam_known_clean`]): the seam between two
//! resent messages is not scanned again. It holds them by `Weak` pointer, so "the same next
//! entry" is pointer identity (an entry is immutable, and a `Weak` keeps its address from being
//! reused), never a hash.

use std::collections::HashMap;
use std::hash::BuildHasher;

use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::time::{Duration, Instant};

use clawgate_redact::Redactor;

use crate::request::Redaction;

/// How many different successors an entry remembers clean seams with (a message is usually
/// followed by the same one; edited or branched conversations give a few).
const CLEAN_SEAMS: usize = 4;

/// Strings shorter than this are redacted every time (cheaper than hashing and locking).
pub(crate) const MIN_CACHED_LEN: usize = 256;

/// One remembered redaction.
#[derive(Debug)]
pub(crate) struct Entry {
    original: Box<str>,
    /// `None`: the redactor left the string unchanged.
    pub(crate) redacted: Option<Box<str>>,
    pub(crate) redactions: Vec<Redaction>,
    /// Entries that followed this one with a clean seam between them, newest last.
    clean_before: Mutex<Vec<Weak<Entry>>>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.original.len()
            + self.redacted.as_ref().map_or(0, |r| r.len())
            + 64
            + CLEAN_SEAMS * std::mem::size_of::<Weak<Entry>>()
    }

    /// Whether no vault value was found crossing from this text into `next` (see
    /// `clawgate_redact::Seams::clean`), when they met before under this entry's redactor.
    pub(crate) fn seam_known_clean(&self, next: &Arc<Entry>) -> bool {
        self.clean_before
            .lock()
            .is_ok_and(|seen| holds(&seen, next))
    }

    /// Remembers that the seam into `next` is clean (the oldest of [`CLEAN_SEAMS`] is forgotten).
    pub(crate) fn remember_clean_seam(&self, next: &Arc<Entry>) {
        let Ok(mut seen) = self.clean_before.lock() else {
            return;
        };
        if holds(&seen, next) {
            return;
        }
        if seen.len() == CLEAN_SEAMS {
            seen.remove(0);
        }
        seen.push(Arc::downgrade(next));
    }
}

/// Whether `seen` points at `entry` (the same allocation: a `Weak` keeps its address).
fn holds(seen: &[Weak<Entry>], entry: &Arc<Entry>) -> bool {
    seen.iter()
        .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(entry)))
}

#[derive(Debug, Default)]
struct State {
    /// The redactor the entries were computed with. A `Weak` keeps its allocation, so the
    /// address cannot be reused by a newer redactor while it is held here.
    owner: Weak<Redactor>,
    current: HashMap<u64, Arc<Entry>>,
    previous: HashMap<u64, Arc<Entry>>,
    current_bytes: usize,
    /// The last lookup or insertion.
    last_used: Option<Instant>,
}

/// The cache. `capacity` 0 disables it.
#[derive(Debug)]
pub(crate) struct RedactionCache {
    state: Mutex<State>,
    /// Randomly seeded per process. Quality matters only for spreading entries: a hit is
    /// confirmed by comparing the whole string.
    hasher: foldhash::quality::RandomState,
    capacity: usize,
}

impl RedactionCache {
    pub(crate) fn new(capacity: usize) -> Self {
        RedactionCache {
            state: Mutex::new(State::default()),
            hasher: foldhash::quality::RandomState::default(),
            capacity,
        }
    }

    /// Whether `text` is worth caching.
    pub(crate) fn wants(&self, text: &str) -> bool {
        self.capacity > 0 && text.len() >= MIN_CACHED_LEN && text.len() <= self.capacity / 4
    }

    pub(crate) fn hash(&self, text: &str) -> u64 {
        self.hasher.hash_one(text)
    }

    /// Empties `state` if its entries belong to another redactor; the old entries are returned
    /// so the caller frees them after releasing the lock.
    fn owned_by(state: &mut State, redactor: &Arc<Redactor>) -> Option<State> {
        if std::ptr::eq(state.owner.as_ptr(), Arc::as_ptr(redactor)) {
            return None;
        }
        let fresh = State {
            owner: Arc::downgrade(redactor),
            ..State::default()
        };
        Some(std::mem::replace(state, fresh))
    }

    /// The remembered redaction of `text` (hash `h`) by `redactor`.
    pub(crate) fn get(&self, redactor: &Arc<Redactor>, text: &str, h: u64) -> Option<Arc<Entry>> {
        let mut st = self.state.lock().ok()?;
        let stale = Self::owned_by(&mut st, redactor);
        st.last_used = Some(Instant::now());
        let found = Self::lookup(&mut st, text, h);
        drop(st);
        drop(stale);
        found
    }

    fn lookup(st: &mut State, text: &str, h: u64) -> Option<Arc<Entry>> {
        if let Some(e) = st.current.get(&h) {
            return (*e.original == *text).then(|| e.clone());
        }
        let e = st.previous.remove(&h)?;
        if *e.original != *text {
            return None;
        }
        st.current_bytes += e.bytes();
        st.current.insert(h, e.clone());
        Some(e)
    }

    /// Remembers the redaction of `text`; returns the entry (also when the cache could not
    /// take it: a poisoned lock).
    pub(crate) fn put(
        &self,
        redactor: &Arc<Redactor>,
        text: &str,
        h: u64,
        redacted: Option<&str>,
        redactions: Vec<Redaction>,
    ) -> Arc<Entry> {
        let e = Arc::new(Entry {
            original: text.into(),
            redacted: redacted.map(Into::into),
            redactions,
            clean_before: Mutex::new(Vec::new()),
        });
        let Ok(mut st) = self.state.lock() else {
            return e;
        };
        let stale = Self::owned_by(&mut st, redactor);
        st.last_used = Some(Instant::now());
        st.current_bytes += e.bytes();
        let replaced = st.current.insert(h, e.clone());
        if let Some(old) = &replaced {
            st.current_bytes = st.current_bytes.saturating_sub(old.bytes());
        }
        let retired = (st.current_bytes > self.capacity / 2).then(|| {
            st.current_bytes = 0;
            let current = std::mem::take(&mut st.current);
            std::mem::replace(&mut st.previous, current)
        });
        drop(st);
        drop(replaced);
        // A retired generation is megabytes of strings in thousands of allocations (4 MiB of
        // 1-4 KB messages: 2,000-4,000 entries, three frees each), which the request that
        // tipped the generation over used to free on its own path, once every 4 MiB of new
        // text. It is freed on the reaper thread instead, after the lock is released, so
        // requests looking up the cache meanwhile do not wait either.
        if stale.is_some() || retired.is_some() {
            free_elsewhere(Box::new((stale, retired)));
        }
        e
    }

    /// Empties the cache when nothing used it for `idle` (as of `now`): an idle daemon should
    /// not hold megabytes of conversations nobody is resending. Whether anything was dropped.
    pub(crate) fn release_if_idle(&self, now: Instant, idle: Duration) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        let unused = st
            .last_used
            .is_some_and(|t| now.saturating_duration_since(t) >= idle);
        if !unused || st.current.is_empty() && st.previous.is_empty() {
            return false;
        }
        st.current_bytes = 0;
        let dropped = (
            std::mem::take(&mut st.current),
            std::mem::take(&mut st.previous),
        );
        drop(st);
        drop(dropped);
        true
    }
}

/// Drops `garbage` on a thread of its own (started on first use), off the request path; in
/// place if that thread cannot be started or has gone.
fn free_elsewhere(garbage: Box<dyn Send>) {
    static REAPER: OnceLock<Option<mpsc::Sender<Box<dyn Send>>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Box<dyn Send>>();
        std::thread::Builder::new()
            .name("clawgate-reaper".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    match reaper {
        // A send fails only when the thread has gone; the garbage comes back and is dropped here.
        Some(tx) => drop(tx.send(garbage)),
        None => drop(garbage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_cache_is_emptied_and_a_used_one_kept() {
        let (c, red) = (RedactionCache::new(1 << 20), r());
        let text = "x".repeat(MIN_CACHED_LEN);
        let h = c.hash(&text);
        let now = Instant::now();
        assert!(
            !c.release_if_idle(now, Duration::ZERO),
            "nothing to release yet"
        );
        c.put(&red, &text, h, None, Vec::new());
        assert!(
            !c.release_if_idle(now, Duration::from_secs(60)),
            "used just now"
        );
        assert!(c.get(&red, &text, h).is_some());
        let later = Instant::now() + Duration::from_secs(61);
        assert!(c.release_if_idle(later, Duration::from_secs(60)));
        assert!(c.get(&red, &text, h).is_none(), "the entry is gone");
        assert!(
            !c.release_if_idle(later, Duration::from_secs(60)),
            "already empty"
        );
    }

    fn r() -> Arc<Redactor> {
        Arc::new(Redactor::builder().build().unwrap())
    }

    #[test]
    fn hits_need_the_same_text_and_the_same_redactor() {
        let c = RedactionCache::new(1 << 20);
        let (a, b) = (r(), r());
        let text = "x".repeat(300);
        let h = c.hash(&text);
        assert!(c.get(&a, &text, h).is_none());
        c.put(&a, &text, h, Some("y"), Vec::new());
        assert_eq!(c.get(&a, &text, h).unwrap().redacted.as_deref(), Some("y"));
        // A collision (same hash, other text) is a miss.
        assert!(c.get(&a, &"z".repeat(300), h).is_none());
        // Another redactor: the cache empties.
        assert!(c.get(&b, &text, h).is_none());
        assert!(c.get(&a, &text, h).is_none());
    }

    #[test]
    fn retired_generations_are_freed() {
        let c = RedactionCache::new(64 * 1024);
        let a = r();
        let first = {
            let t = format!("{:0>1000}", 0);
            Arc::downgrade(&c.put(&a, &t, c.hash(&t), None, Vec::new()))
        };
        // Two generations later the first entry is retired; the reaper thread frees it.
        for i in 1..200 {
            let t = format!("{i:0>1000}");
            c.put(&a, &t, c.hash(&t), None, Vec::new());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while first.strong_count() > 0 {
            assert!(Instant::now() < deadline, "a retired entry was never freed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let c = RedactionCache::new(64 * 1024);
        let a = r();
        for i in 0..1000 {
            let t = format!("{i:0>1000}");
            c.put(&a, &t, c.hash(&t), None, Vec::new());
        }
        let st = c.state.lock().unwrap();
        let total: usize = st
            .current
            .values()
            .chain(st.previous.values())
            .map(|e| e.bytes())
            .sum();
        assert!(total <= 64 * 1024 + 2048, "{total}");
        // The newest survive.
        drop(st);
        let t = format!("{:0>1000}", 999);
        assert!(c.get(&a, &t, c.hash(&t)).is_some());
        assert!(!c.wants("short"));
    }
}
