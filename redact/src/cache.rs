//! The result cache behind [`crate::Redactor::redact_cached`]: agents resend their whole history
//! every turn, so most strings of a request were already redacted in an earlier one.
//!
//! * **Key:** 128 bits of a keyed hash of the text (two SipHash-1-3 outputs under a per-process
//!   random key, for two domain-separated inputs) and the text's length. The raw text is never
//!   stored. SipHash is a PRF: without the key nobody can construct two texts with the same
//!   key, and an accidental collision has probability about 2⁻¹²⁸ per pair. (A collision would
//!   hand one text another's redaction, which is why a fast unkeyed hash is not acceptable.)
//! * **Value:** the findings and their replacement strings (`SECRET_REF(name)` or the stable
//!   placeholder): what is sent upstream anyway, never a secret.
//! * **Bound:** a byte budget (entries are weighed: about 100 bytes for a text with nothing to
//!   redact), split over shards and two generations per shard: inserts go to the young one; when
//!   it is full it becomes the old one and the previous old one is dropped; a hit in the old
//!   generation moves the entry back to the young one. Memory stays bounded, recently used
//!   entries survive, every operation is O(1). Texts with very many findings are not cached.
//! * **Scope:** the cache belongs to one [`crate::Redactor`], so a new vault (a new redactor)
//!   never sees results computed with the old one.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::Finding;

/// Shards (each behind its own lock), so concurrent requests rarely wait for each other.
const SHARDS: usize = 8;
/// Texts shorter than this are scanned every time: hashing and a lookup cost about as much.
pub(crate) const MIN_CACHED_LEN: usize = 256;
/// Texts with more findings than this are not cached (bounds the memory of one entry).
const MAX_CACHED_FINDINGS: usize = 256;

/// What a cached text redacts to.
#[derive(Debug)]
pub(crate) struct Cached {
    /// Sorted, disjoint findings.
    pub(crate) findings: Vec<Finding>,
    /// The replacement of each finding.
    pub(crate) replacements: Vec<Box<str>>,
}

type Key = (u64, u64, usize);

#[derive(Default)]
struct Shard {
    young: HashMap<Key, Arc<Cached>>,
    old: HashMap<Key, Arc<Cached>>,
    young_bytes: usize,
    old_bytes: usize,
}

impl Cached {
    /// Approximate memory held by the entry (with its key and map slot).
    fn weight(&self) -> usize {
        let finding = std::mem::size_of::<Finding>() + std::mem::size_of::<Box<str>>();
        96 + self
            .findings
            .iter()
            .zip(&self.replacements)
            .map(|(f, r)| finding + r.len() + f.secret.as_ref().map_or(0, |s| s.as_str().len()))
            .sum::<usize>()
    }
}

/// Cache counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that scanned the text.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
    /// Approximate bytes they hold.
    pub bytes: usize,
}

pub(crate) struct ResultCache {
    hasher: RandomState,
    /// Byte budget of one generation of one shard.
    per_generation: usize,
    shards: Vec<Mutex<Shard>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("budget", &(self.per_generation * SHARDS * 2))
            .field("stats", &self.stats())
            .finish()
    }
}

impl ResultCache {
    /// A cache holding at most about `budget` bytes.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            per_generation: budget / (2 * SHARDS),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.per_generation > 0
    }

    /// Whether an entry is worth keeping (not too many findings, fits a generation).
    fn admits(&self, entry: &Cached) -> bool {
        entry.findings.len() <= MAX_CACHED_FINDINGS && entry.weight() <= self.per_generation
    }

    pub(crate) fn key(&self, text: &str) -> Key {
        let half = |domain: u8| {
            let mut h = self.hasher.build_hasher();
            h.write_u8(domain);
            h.write(text.as_bytes());
            h.finish()
        };
        (half(1), half(2), text.len())
    }

    fn shard(&self, key: &Key) -> Option<std::sync::MutexGuard<'_, Shard>> {
        // A poisoned lock only means another thread panicked mid-update: skip the cache.
        self.shards[(key.0 as usize) % SHARDS].lock().ok()
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Arc<Cached>> {
        let found = self.shard(key).and_then(|mut shard| {
            if let Some(hit) = shard.young.get(key) {
                return Some(Arc::clone(hit));
            }
            let hit = shard.old.remove(key)?;
            shard.old_bytes = shard.old_bytes.saturating_sub(hit.weight());
            Self::insert_young(&mut shard, self.per_generation, *key, Arc::clone(&hit));
            Some(hit)
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn put(&self, key: Key, value: Arc<Cached>) {
        if !self.admits(&value) {
            return;
        }
        if let Some(mut shard) = self.shard(&key) {
            Self::insert_young(&mut shard, self.per_generation, key, value);
        }
    }

    fn insert_young(shard: &mut Shard, budget: usize, key: Key, value: Arc<Cached>) {
        if shard.young.contains_key(&key) {
            return;
        }
        let weight = value.weight();
        if shard.young_bytes + weight > budget {
            shard.old = std::mem::take(&mut shard.young);
            shard.old_bytes = std::mem::replace(&mut shard.young_bytes, 0);
        }
        shard.young_bytes += weight;
        shard.young.insert(key, value);
    }

    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                *s = Shard::default();
            }
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            ..CacheStats::default()
        };
        for shard in &self.shards {
            if let Ok(s) = shard.lock() {
                stats.entries += s.young.len() + s.old.len();
                stats.bytes += s.young_bytes + s.old_bytes;
            }
        }
        stats
    }
}
