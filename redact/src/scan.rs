//! Two literal scanners tuned for "many patterns, almost never present":
//!
//! * [`LiteralSet`]: exact byte strings (vault values and their encodings, ≥ 6 bytes). A rolling
//!   6-byte window is hashed into a 2 Mbit bitmap; only bitmap hits look up the window in a hash
//!   table and compare whole patterns. Memory stays proportional to the patterns (an Aho-Corasick
//!   DFA over 15,000 such patterns measured 253 MB and 26 MB/s here).
//! * [`KeywordSet`]: ASCII-case-insensitive keywords (≥ 2 bytes). A 64 Ki-entry table indexed by
//!   the case-folded bigram at each position names the keywords that start with it.

use std::collections::HashMap;

/// Bytes in the hashed window; every literal must be at least this long.
pub(crate) const WINDOW: usize = 6;
/// Bitmap size bounds: about 128 bits per literal (under 1% false hits), at most 2 Mbit.
const MIN_BITS: u32 = 10;
const MAX_BITS: u32 = 21;

fn hash(key: u64, bits: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

fn window_key(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(WINDOW)
        .enumerate()
        .fold(0, |k, (i, b)| k | (u64::from(*b) << (8 * i)))
}

/// Exact literals, found everywhere they occur (overlaps included).
pub(crate) struct LiteralSet {
    bits: u32,
    bitmap: Vec<u64>,
    by_key: HashMap<u64, Vec<u32>>,
    patterns: Vec<Box<[u8]>>,
}

impl LiteralSet {
    /// Builds the set; literals shorter than [`WINDOW`] are ignored (callers filter them).
    pub(crate) fn new<'a>(literals: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let literals: Vec<&[u8]> = literals.into_iter().collect();
        // A small set (every copy of a handful of detected values) must not pay for a 2 Mbit
        // bitmap on every call.
        let wanted = (literals.len().max(1) * 128)
            .next_power_of_two()
            .trailing_zeros();
        let bits = wanted.clamp(MIN_BITS, MAX_BITS);
        let mut set = Self {
            bits,
            bitmap: vec![0; (1usize << bits) / 64],
            by_key: HashMap::new(),
            patterns: Vec::new(),
        };
        for literal in literals {
            let id = set.patterns.len() as u32;
            set.patterns.push(literal.into());
            if literal.len() < WINDOW {
                continue;
            }
            let key = window_key(literal);
            let h = hash(key, set.bits);
            set.bitmap[h >> 6] |= 1 << (h & 63);
            set.by_key.entry(key).or_default().push(id);
        }
        set
    }

    /// Number of literals.
    pub(crate) fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Calls `hit(start, end, literal_id)` for every occurrence.
    pub(crate) fn find_all(&self, hay: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        if self.by_key.is_empty() {
            return;
        }
        let mut key: u64 = 0;
        for (i, &b) in hay.iter().enumerate() {
            key = (key >> 8) | (u64::from(b) << (8 * (WINDOW - 1)));
            if i + 1 < WINDOW {
                continue;
            }
            let h = hash(key, self.bits);
            if self.bitmap[h >> 6] & (1 << (h & 63)) == 0 {
                continue;
            }
            let start = i + 1 - WINDOW;
            if let Some(ids) = self.by_key.get(&key) {
                for &id in ids {
                    let p = &self.patterns[id as usize];
                    if hay[start..].starts_with(p) {
                        hit(start, start + p.len(), id as usize);
                    }
                }
            }
        }
    }
}

impl Drop for LiteralSet {
    fn drop(&mut self) {
        // The literals are vault values: wipe them.
        for p in &mut self.patterns {
            zeroize::Zeroize::zeroize(&mut **p);
        }
    }
}

const NONE: u16 = u16::MAX;

/// ASCII-case-insensitive keywords.
pub(crate) struct KeywordSet {
    /// Folded bigram → index into `buckets`, or `NONE`.
    table: Vec<u16>,
    buckets: Vec<Vec<u32>>,
    keywords: Vec<Box<[u8]>>,
}

impl KeywordSet {
    /// Keywords must be at least two bytes; they are matched case-insensitively (ASCII).
    pub(crate) fn new<'a>(keywords: impl IntoIterator<Item = &'a str>) -> Self {
        let mut set = Self {
            table: vec![NONE; 1 << 16],
            buckets: Vec::new(),
            keywords: Vec::new(),
        };
        for kw in keywords {
            let folded: Box<[u8]> = kw.as_bytes().to_ascii_lowercase().into();
            let id = set.keywords.len() as u32;
            if folded.len() >= 2 {
                let slot = usize::from(folded[0]) | (usize::from(folded[1]) << 8);
                if set.table[slot] == NONE {
                    set.table[slot] = set.buckets.len() as u16;
                    set.buckets.push(Vec::new());
                }
                set.buckets[usize::from(set.table[slot])].push(id);
            }
            set.keywords.push(folded);
        }
        set
    }

    /// Calls `hit(start, end, keyword_id)` for every occurrence (overlaps included).
    pub(crate) fn find_all(&self, hay: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        if hay.len() < 2 {
            return;
        }
        let mut prev = hay[0].to_ascii_lowercase();
        for i in 1..hay.len() {
            let cur = hay[i].to_ascii_lowercase();
            let bucket = self.table[usize::from(prev) | (usize::from(cur) << 8)];
            prev = cur;
            if bucket == NONE {
                continue;
            }
            let start = i - 1;
            for &id in &self.buckets[usize::from(bucket)] {
                let kw = &self.keywords[id as usize];
                let end = start + kw.len();
                if end <= hay.len() && hay[start + 2..end].eq_ignore_ascii_case(&kw[2..]) {
                    hit(start, end, id as usize);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_found_everywhere_including_overlaps_and_edges() {
        let set = LiteralSet::new([&b"abcdefgh"[..], b"defghijk", b"short", b"zzzzzz"]);
        let mut hits = Vec::new();
        set.find_all(b"abcdefghijk abcdefgh zzzzzzz", |s, e, id| {
            hits.push((s, e, id))
        });
        assert_eq!(
            hits,
            vec![(0, 8, 0), (3, 11, 1), (12, 20, 0), (21, 27, 3), (22, 28, 3)]
        );
        let mut none = Vec::new();
        set.find_all(b"abcde", |s, e, id| none.push((s, e, id)));
        assert!(none.is_empty());
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let set = KeywordSet::new(["ghp_", "sk", "password"]);
        let mut hits = Vec::new();
        set.find_all(b"GHP_x Sk PassWord ask", |s, e, id| hits.push((s, e, id)));
        assert_eq!(hits, vec![(0, 4, 0), (6, 8, 1), (9, 17, 2), (19, 21, 1)]);
    }
}
