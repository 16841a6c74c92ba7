//! The scanners behind the detectors, tuned for "many patterns, almost never present" on text
//! where the common case is that nothing matches:
//!
//! * [`LiteralSet`]: exact byte strings (vault values and their encodings, ≥ 6 bytes). The text
//!   is *sampled*: only every `step`-th position is looked at, where an 8-byte window (4 bytes for
//!   literals under 16 bytes) is hashed into a blocked Bloom filter (two bits in one word). Each
//!   literal is indexed by its windows at offsets `0..step`, so every occurrence covers exactly
//!   one sampled position; filter hits look up 32-bit fingerprints and compare whole literals.
//!   The step is as large as the shortest literal allows (up to 24): a vault whose values are 24
//!   bytes or more costs one probe per 17 bytes of text (the per-byte rolling hash before cost one
//!   per byte). Memory stays proportional to the literals (an Aho-Corasick DFA over the 15,000
//!   encoded forms of a 1,000-secret vault measured 253 MB and 26 MB/s here).
//! * [`KeywordSet`]: ASCII-case-insensitive keywords. Only every second position is probed, in an
//!   8 KiB bitmap of anchor bigrams; a keyword is anchored on its two least common consecutive
//!   bigrams (by bigram frequencies measured on code, docs and logs: `password` waits for `sw`
//!   and `wo`, not `pa`), one of which starts at an even position wherever it occurs. A probe that
//!   finds an anchor bigram first tests the byte after it (before it, for keywords that end with
//!   it) against the bytes the keywords anchored there have in that place: 85% of the probes on
//!   the benchmark's text end there (about 6% of the whole redaction's instructions saved). Hits
//!   compare keywords of up to 8 bytes with one masked 64-bit compare.
//! * [`for_each_byte_in`]: every position of one of a few bytes, eight bytes per step (SWAR).
//!
//! Measured alternatives that lost (realistic prompt text, this machine): a rolling hash at every
//! byte (vault pass 7x slower), a bigram probe at every byte (keyword pass 1.4x slower), hashed
//! trigram probes (fewer hits, slower loop), a branch-free first/second-bigram role table.

/// Bytes in the smallest hashed window; every literal must be at least this long.
pub(crate) const WINDOW: usize = 6;
/// Literals at least this long are sampled with 8-byte windows, every 9 bytes or more.
const LONG: usize = 16;
/// The largest sampling step (each literal is indexed `step` times).
const MAX_STEP: usize = 24;
/// Filter size bounds: about 16 bits per indexed window, at least 1 Kbit, at most 4 Mbit.
const MIN_BITS: u32 = 10;
const MAX_BITS: u32 = 22;

/// A window's hash: the top bits pick a filter word and a directory bucket.
#[inline(always)]
fn hash(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A second mix of the hash, for the filter bits and the fingerprint.
#[inline(always)]
fn remix(h: u64) -> u64 {
    (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// Two bits of one filter word (a blocked Bloom filter with two probes: one memory access, about
/// 1% false hits at 16 bits per window).
#[inline(always)]
fn filter_bits(mixed: u64) -> u64 {
    (1 << (mixed >> 58)) | (1 << ((mixed >> 52) & 63))
}

/// The fingerprint bits of a window; a match is confirmed by comparing the whole literal.
#[inline(always)]
fn fingerprint(mixed: u64) -> u64 {
    mixed & 0xffff_ffff
}

/// The `width` bytes at `at` as a little-endian integer (`width` ≤ 8; `None` past the end).
#[inline(always)]
fn load(hay: &[u8], at: usize, width: usize) -> Option<u64> {
    if width == 8 {
        let chunk: [u8; 8] = hay.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(chunk))
    } else {
        let chunk: [u8; 4] = hay.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(u32::from_le_bytes(chunk)))
    }
}

/// One window width and sampling step, with the literals long enough for it.
struct Tier {
    /// Window width in bytes: 4 or 8.
    width: usize,
    /// Distance between sampled positions; every literal here has `len ≥ width + step - 1`.
    step: usize,
    /// Filter: word `hash >> word_shift`, bits [`filter_bits`].
    filter: Vec<u64>,
    word_shift: u32,
    /// Directory: entries of bucket `hash >> dir_shift` are `heads[d]..heads[d + 1]`.
    dir_shift: u32,
    heads: Vec<u32>,
    /// Per indexed window: `fingerprint << meta_bits | literal << 5 | offset of the window in
    /// it`, in 32 bits: the fingerprint gets what the literal id leaves (13 bits for 15,000
    /// literals: a false candidate costs one literal compare, behind a 1 % filter).
    entries: Vec<u32>,
    /// Bits of an entry below the fingerprint.
    meta_bits: u32,
}

/// At most this many literals in a [`LiteralSet`]: an id and a window offset share 32 bits.
pub(crate) const MAX_LITERALS: usize = 1 << (32 - OFFSET_BITS);
/// At most this many bytes of literals in a [`LiteralSet`] (spans are 32-bit).
pub(crate) const MAX_LITERAL_BYTES: usize = u32::MAX as usize;

/// Offsets of indexed windows ([`first_indexed_window`] keeps them under 32) take the low 5
/// bits of an entry.
const OFFSET_BITS: u32 = 5;

/// Where the `step` consecutive windows indexed for a literal of `len` bytes start. Any `step`
/// consecutive windows catch every occurrence exactly once (one of them starts at a sampled
/// position), so they are taken as far into the literal as its length and the offset field
/// allow: literals of one format share their first bytes (`ghp_`, `AKIA`, `sk_live_`, a JWT's
/// header), and a probe on a window they all share compared every one of them.
fn first_indexed_window(len: usize, width: usize, step: usize) -> usize {
    // The literal's last `step` windows (every literal of a tier is long enough to have `step`).
    let last_start = (len + 1).saturating_sub(width + step);
    let field_limit = (1 << OFFSET_BITS) - step; // offsets must fit in OFFSET_BITS
    last_start.min(field_limit)
}

impl Tier {
    fn new(width: usize, step: usize, literals: &[(u32, &[u8])]) -> Self {
        let id_bits = literals
            .iter()
            .map(|&(id, _)| u32::BITS - id.leading_zeros())
            .max()
            .unwrap_or(0);
        let meta_bits = id_bits + OFFSET_BITS;
        // Every indexed window as (hash, meta), computed again in each pass rather than stored:
        // a stored copy doubled the peak memory of a build.
        let windows = || {
            literals.iter().flat_map(move |&(literal, bytes)| {
                let first = first_indexed_window(bytes.len(), width, step);
                (first..first + step).filter_map(move |offset| {
                    let key = load(bytes, offset, width)?;
                    Some((hash(key), (literal << OFFSET_BITS) | offset as u32))
                })
            })
        };
        let n = windows().count();
        let bits = ((n.max(1) * 16).next_power_of_two().trailing_zeros()).clamp(MIN_BITS, MAX_BITS);
        let word_shift = 64 - (bits - 6);
        // About four entries per bucket: one cache line.
        let dir_bits = (n / 4).max(2).next_power_of_two().trailing_zeros();
        let dir_shift = 64 - dir_bits;
        let mut filter = vec![0u64; 1usize << (bits - 6)];
        let mut heads = vec![0u32; (1usize << dir_bits) + 1];
        for (h, _) in windows() {
            filter[(h >> word_shift) as usize] |= filter_bits(remix(h));
            heads[(h >> dir_shift) as usize + 1] += 1;
        }
        for d in 1..heads.len() {
            heads[d] += heads[d - 1];
        }
        let mut next = heads.clone();
        let mut entries = vec![0u32; n];
        // Stable counting sort: within a bucket, entries keep literal order.
        for (h, meta) in windows() {
            let d = (h >> dir_shift) as usize;
            entries[next[d] as usize] = Self::entry(fingerprint(remix(h)), meta, meta_bits);
            next[d] += 1;
        }
        Self {
            width,
            step,
            filter,
            word_shift,
            dir_shift,
            heads,
            entries,
            meta_bits,
        }
    }

    /// An entry: as many fingerprint bits as fit above `meta` (none for 2^27 literals).
    #[inline(always)]
    fn entry(fingerprint: u64, meta: u32, meta_bits: u32) -> u32 {
        (((fingerprint << meta_bits) | u64::from(meta)) & 0xffff_ffff) as u32
    }

    /// Calls `candidate(start, literal)` for every position where a literal may start (its
    /// indexed window's fingerprint matched); the caller compares the whole literal.
    #[inline(always)]
    fn probe(&self, hay: &[u8], mut candidate: impl FnMut(usize, usize)) {
        let (width, step) = (self.width, self.step);
        let mut at = 0;
        while at + width <= hay.len() {
            if let Some(key) = load(hay, at, width) {
                let h = hash(key);
                let mixed = remix(h);
                let want = filter_bits(mixed);
                if self.filter[(h >> self.word_shift) as usize] & want == want {
                    self.lookup(at, h, mixed, &mut candidate);
                }
            }
            at += step;
        }
    }

    #[inline(never)]
    fn lookup(&self, at: usize, h: u64, mixed: u64, candidate: &mut impl FnMut(usize, usize)) {
        let d = (h >> self.dir_shift) as usize;
        let (lo, hi) = (self.heads[d] as usize, self.heads[d + 1] as usize);
        let meta_mask = (1u64 << self.meta_bits) - 1;
        let want = u64::from(Self::entry(fingerprint(mixed), 0, self.meta_bits));
        for &entry in &self.entries[lo..hi] {
            let entry = u64::from(entry);
            let offset = (entry & ((1 << OFFSET_BITS) - 1)) as usize;
            if entry & !meta_mask == want && offset <= at {
                candidate(at - offset, ((entry & meta_mask) >> OFFSET_BITS) as usize);
            }
        }
    }
}

/// Exact literals, found everywhere they occur (overlaps included).
pub(crate) struct LiteralSet {
    tiers: Vec<Tier>,
    /// All literals back to back; literal `i` is `bytes[spans[i].0..spans[i].1]`.
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

impl LiteralSet {
    /// Builds the set; literals shorter than [`WINDOW`] are ignored (callers filter them).
    /// Callers keep within [`MAX_LITERALS`] and [`MAX_LITERAL_BYTES`] (ids and offsets are 32-bit).
    pub(crate) fn new<'a>(literals: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let literals: Vec<&[u8]> = literals.into_iter().collect();
        assert!(
            literals.len() <= MAX_LITERALS
                && literals.iter().map(|l| l.len()).sum::<usize>() <= MAX_LITERAL_BYTES,
            "literal set over its limits"
        );
        // One allocation of the final size: growing would leave copies of vault values behind in
        // freed memory.
        let mut bytes = Vec::with_capacity(literals.iter().map(|l| l.len()).sum());
        let mut spans = Vec::with_capacity(literals.len());
        for literal in literals {
            let start = bytes.len() as u32;
            bytes.extend_from_slice(literal);
            spans.push((start, bytes.len() as u32));
        }
        let all: Vec<(u32, &[u8])> = spans
            .iter()
            .enumerate()
            .map(|(i, &(s, e))| (i as u32, &bytes[s as usize..e as usize]))
            .collect();
        let long: Vec<(u32, &[u8])> = all.iter().copied().filter(|l| l.1.len() >= LONG).collect();
        let short: Vec<(u32, &[u8])> = all
            .iter()
            .copied()
            .filter(|l| (WINDOW..LONG).contains(&l.1.len()))
            .collect();
        let mut tiers = Vec::new();
        // The step is as large as the shortest literal allows (more windows indexed per literal,
        // fewer probes), up to MAX_STEP. With short literals present, one tier of 4-byte
        // windows over all literals probes the text once at the short step; a second, 8-byte
        // tier for the long ones only pays when its step is much longer (a vault of long
        // values with a few short ones), since every tier is a pass over the text.
        let min_long = long.iter().map(|l| l.1.len()).min();
        let min_short = short.iter().map(|l| l.1.len()).min();
        match (min_long, min_short) {
            (Some(long_min), Some(short_min))
                if (long_min - 8 + 1).min(MAX_STEP) < 2 * (short_min - 4 + 1) =>
            {
                tiers.push(Tier::new(4, short_min - 4 + 1, &all));
            }
            _ => {
                if let Some(min) = min_long {
                    tiers.push(Tier::new(8, (min - 8 + 1).min(MAX_STEP), &long));
                }
                if let Some(min) = min_short {
                    tiers.push(Tier::new(4, min - 4 + 1, &short));
                }
            }
        }
        Self {
            tiers,
            bytes,
            spans,
        }
    }

    /// Number of literals.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Calls `hit(start, end, literal_id)` for every occurrence, in no particular order.
    pub(crate) fn find_all(&self, hay: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        for tier in &self.tiers {
            tier.probe(hay, |start, id| {
                let Some(&(s, e)) = self.spans.get(id) else {
                    return;
                };
                let literal = &self.bytes[s as usize..e as usize];
                if hay[start..].starts_with(literal) {
                    hit(start, start + literal.len(), id);
                }
            });
        }
    }

    /// Every occurrence as `(start, end, literal_id)`, sorted by start, then literal id (the
    /// order a left-to-right scan would report them in).
    pub(crate) fn find_sorted(&self, hay: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut hits = Vec::new();
        self.find_all(hay, |s, e, id| hits.push((s, e, id)));
        // Each tier reports in nearly sorted order (a hit a few bytes after its start): the
        // stable sort merges such runs in close to linear time. A hit's end follows from its
        // start and literal, so hits with equal keys are equal and every sort gives this order.
        hits.sort_by_key(|&(s, _, id)| (s, id));
        hits
    }
}

impl Drop for LiteralSet {
    fn drop(&mut self) {
        // The literals are vault values: wipe them, and the windows cut from them.
        zeroize::Zeroize::zeroize(&mut self.bytes);
        for tier in &mut self.tiers {
            zeroize::Zeroize::zeroize(&mut tier.entries);
        }
    }
}

/// The 320 most frequent case-folded (`| 0x20`) bigrams of prompt-like text, most frequent
/// first, measured over 3.4 MB of Rust, Python and JavaScript sources, Markdown and text
/// documentation, JSON, configuration files and logs. Keywords are anchored on their least
/// frequent bigrams so that probes rarely hit.
const COMMON_BIGRAMS: &[&[u8]] = &[
    b"  * e in tretheront ats  asestteoren ihe sitcon es,  cledeantiald  \"is**toedme",
    b"ntaret f: ngnd o rior liasroha,*manstrta =amra= riomel p b l wneusvech do geil {",
    b"paeceahipe// nnollfi mf lact--aclosi.* eury s.utnadi u ()*ceiccafo 'un==ouulad}*",
    b"rsgig ;*) tt hmiot{*ifubnc# prodexpo `pul rt }fah octsoplypt -ema eftuimssmpkebe",
    b"ty::rr\":*#wickcr\",doolofs:rnep()so))sulfowagshplhtdabuidmoigrublypapva *eeho v",
    b"aiose\" #ryabrgue/ e*feir',tp> t\x7flte. 0` >* /up gcliani- \" auibtce(ps.cwhba",
    b"spe\x7fb :*##saie. *)um);lse:waldqubieve,frm :/s/luff\x7fs00\"*f.),t.s*c boequi",
    b"scpi\"aooip</' rm->huwe1.nummnfddzew },0.izcu 1\"gsyewppavfle)e-y>iv20*p\"nix",
    b"\x7fct(ay \x7fphcirc*/.1).#{ <",
];

/// Byte frequency estimate for bigrams outside [`COMMON_BIGRAMS`].
fn commonness(b: u8) -> u32 {
    match b.to_ascii_lowercase() {
        b' ' => 150,
        b'e' => 120,
        b't' => 90,
        b'a' => 80,
        b'o' => 75,
        b'i' => 70,
        b'n' => 67,
        b's' => 63,
        b'h' | b'r' => 60,
        b'd' => 43,
        b'l' => 40,
        b'c' | b'u' => 28,
        b'm' | b'w' => 24,
        b'f' => 22,
        b'g' | b'y' => 20,
        b'p' => 19,
        b'b' => 15,
        b'v' => 10,
        b'k' | b'.' | b'/' | b'"' => 8,
        b':' | b'=' => 6,
        b'_' | b'-' | b'0'..=b'9' => 5,
        b'j' | b'x' => 2,
        b'q' | b'z' => 1,
        _ => 3,
    }
}

/// Whether two ASCII letters, case folded, are one of [`COMMON_BIGRAMS`]: identifiers made of
/// words (`X509SubjectKeyIDExtension`) are mostly such pairs, random tokens about 28% of theirs.
#[inline]
pub(crate) fn common_letter_pair(a: u8, b: u8) -> bool {
    a.is_ascii_alphabetic()
        && b.is_ascii_alphabetic()
        && COMMON_LETTER_PAIRS[usize::from(a.to_ascii_lowercase() - b'a')]
            [usize::from(b.to_ascii_lowercase() - b'a')]
}

/// The letter pairs of [`COMMON_BIGRAMS`], built at compile time.
static COMMON_LETTER_PAIRS: [[bool; 26]; 26] = {
    let mut table = [[false; 26]; 26];
    let mut row = 0;
    while row < COMMON_BIGRAMS.len() {
        let bytes = COMMON_BIGRAMS[row];
        let mut i = 0;
        while i + 1 < bytes.len() {
            let (a, b) = (bytes[i], bytes[i + 1]);
            if a.is_ascii_lowercase() && b.is_ascii_lowercase() {
                table[(a - b'a') as usize][(b - b'a') as usize] = true;
            }
            i += 2;
        }
        row += 1;
    }
    table
};

/// How common each folded bigram is (higher: more common).
fn bigram_costs() -> Vec<u32> {
    let listed: Vec<u8> = COMMON_BIGRAMS.concat();
    let mut costs: Vec<u32> = (0..1usize << 16)
        .map(|slot| commonness(slot as u8) * commonness((slot >> 8) as u8) / 32)
        .collect();
    let n = listed.len() / 2;
    for (rank, pair) in listed.chunks_exact(2).enumerate() {
        costs[bigram(pair[0], pair[1])] = 1_000 + 100 * (n - rank) as u32;
    }
    costs
}

/// A bigram as an index (and bit number) in the 64 Ki-entry tables, folded with `| 0x20` (ASCII
/// letters to lower case; other bytes may collide, which only costs a compare).
#[inline(always)]
fn bigram(a: u8, b: u8) -> usize {
    usize::from(a | 0x20) | (usize::from(b | 0x20) << 8)
}

/// The keywords anchored on one bigram.
struct Group {
    /// Their anchors: `anchors[first..first + n]`.
    first: u32,
    n: u32,
    /// The bytes that may follow the bigram, as [`byte_bit`]s, in those that go on after it, and
    /// the bytes that may precede it in those that end with it (all `next` bits for a two-byte
    /// keyword anchored on itself): a probe whose neighbours match neither set has no match.
    next: u64,
    prev: u64,
}

/// A byte's bit in a [`Group`]'s `next` and `prev` sets: its folded value's low six bits
/// (bytes that compare equal ignoring ASCII case get the same bit; others may share one, which
/// only costs a compare). No byte (the text ends): every bit.
#[inline(always)]
fn byte_bit(byte: Option<&u8>) -> u64 {
    byte.map_or(u64::MAX, |b| 1 << ((b | 0x20) & 63))
}

/// The anchor bigram at `offset` in `kw` as a [`Group`]'s (`next`, `prev`) bits: the byte after
/// it where the keyword goes on, else the byte before it. A two-byte keyword anchored on itself
/// has neither and matches whatever is around it; anchored on its last byte and any byte after
/// it, its first byte stands before.
fn neighbour_bits(kw: &[u8], offset: u16) -> (u64, u64) {
    let offset = usize::from(offset);
    match (kw.get(offset + 2), offset.checked_sub(1)) {
        (Some(next), _) => (byte_bit(Some(next)), 0),
        (None, Some(prev)) => (0, byte_bit(Some(&kw[prev]))),
        (None, None) => (u64::MAX, 0),
    }
}

/// One keyword anchored on one bigram: its first (up to) 8 bytes as a masked word, so that one
/// compare decides keywords of up to 8 bytes exactly.
#[derive(Clone, Copy)]
struct Anchor {
    /// The keyword's first bytes, lower case (zero past its end).
    prefix: u64,
    /// `0x20` at letters (text `| 0x20` equals a lower-case letter exactly for both cases).
    fold: u64,
    /// `0xff` at the keyword's first (up to) 8 bytes.
    mask: u64,
    id: u32,
    /// Offset of the anchor bigram in the keyword.
    offset: u16,
    /// The keyword's length.
    len: u16,
}

/// ASCII-case-insensitive keywords.
///
/// Only every second position is probed. A keyword of three bytes or more is indexed under two
/// consecutive bigrams (its least common pair), and one of the two starts at an even position
/// wherever the keyword occurs. A two-byte keyword `ab` is indexed under `ab` (found when it
/// starts at an even position) and under every `b?` (found when `b` is at an even position).
pub(crate) struct KeywordSet {
    /// Anchor bigrams (folded), one bit each: 8 KiB, stays in L1.
    bitmap: Box<[u64; 1024]>,
    /// Open-addressed: (folded bigram + 1, its group in `groups`); 0 is empty.
    index: Vec<(u32, u32)>,
    index_shift: u32,
    /// The keywords anchored on each bigram.
    groups: Vec<Group>,
    anchors: Vec<Anchor>,
    keywords: Vec<Box<[u8]>>,
    max_len: usize,
}

impl KeywordSet {
    /// Keywords must be at least two bytes; they are matched case-insensitively (ASCII).
    pub(crate) fn new<'a>(keywords: impl IntoIterator<Item = &'a str>) -> Self {
        let keywords: Vec<Box<[u8]>> = keywords
            .into_iter()
            .map(|kw| kw.as_bytes().to_ascii_lowercase().into())
            .collect();
        let costs = bigram_costs();
        let mut by_slot: Vec<(usize, Anchor)> = Vec::new();
        let mut max_len = 0;
        for (id, kw) in keywords.iter().enumerate() {
            // (Keywords are short words; lengths must fit an anchor's `u16`.)
            if kw.len() < 2 || kw.len() > usize::from(u16::MAX) {
                continue;
            }
            max_len = max_len.max(kw.len());
            if kw.len() == 2 {
                by_slot.push((bigram(kw[0], kw[1]), Anchor::new(kw, id, 0)));
                // Every folded byte after the second.
                for next in (0..=u8::MAX).filter(|b| b & 0x20 != 0) {
                    by_slot.push((bigram(kw[1], next), Anchor::new(kw, id, 1)));
                }
                continue;
            }
            // The anchor: two consecutive bigrams, the least common pair.
            let cost =
                |o: usize| costs[bigram(kw[o], kw[o + 1])] + costs[bigram(kw[o + 1], kw[o + 2])];
            let Some(first) = (0..kw.len() - 2).min_by_key(|&o| cost(o)) else {
                continue;
            };
            for offset in first..first + 2 {
                by_slot.push((
                    bigram(kw[offset], kw[offset + 1]),
                    Anchor::new(kw, id, offset),
                ));
            }
        }
        // Group anchors by bigram (stable: keyword order within a bigram).
        by_slot.sort_by_key(|(slot, _)| *slot);
        by_slot.dedup_by(|a, b| a.0 == b.0 && a.1.id == b.1.id && a.1.offset == b.1.offset);
        let slots = by_slot.len().max(1);
        let index_bits = (slots * 4).next_power_of_two().trailing_zeros();
        let mut set = Self {
            bitmap: Box::new([0; 1024]),
            index: vec![(0, 0); 1 << index_bits],
            index_shift: 32 - index_bits,
            groups: Vec::new(),
            anchors: Vec::with_capacity(by_slot.len()),
            keywords: Vec::new(),
            max_len,
        };
        let mut rest = by_slot.as_slice();
        while let Some(&(slot, _)) = rest.first() {
            let n = rest.iter().take_while(|(s, _)| *s == slot).count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let first = set.anchors.len() as u32;
            set.anchors.extend(group.iter().map(|(_, a)| *a));
            let (mut next, mut prev) = (0, 0);
            for (_, a) in group {
                let (n, p) = neighbour_bits(&keywords[a.id as usize], a.offset);
                next |= n;
                prev |= p;
            }
            let mut i = set.index_slot(slot);
            while set.index[i].0 != 0 {
                i = (i + 1) & (set.index.len() - 1);
            }
            set.index[i] = (slot as u32 + 1, set.groups.len() as u32);
            set.groups.push(Group {
                first,
                n: n as u32,
                next,
                prev,
            });
            set.bitmap[slot >> 6] |= 1 << (slot & 63);
        }
        set.keywords = keywords;
        set
    }

    fn index_slot(&self, slot: usize) -> usize {
        ((slot as u32).wrapping_mul(0x9E37_79B9) >> self.index_shift) as usize
    }

    /// The longest keyword's length.
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Calls `hit(start, end, keyword_id)` for every occurrence (overlaps included), in no
    /// particular order.
    pub(crate) fn find_all(&self, hay: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        let mut pairs = hay.chunks_exact(2);
        for (i, pair) in (&mut pairs).enumerate() {
            // `bigram(pair[0], pair[1])`, from one 16-bit load.
            let slot = usize::from(u16::from_le_bytes([pair[0], pair[1]]) | 0x2020);
            if self.bitmap[slot >> 6] & (1 << (slot & 63)) != 0 {
                let at = 2 * i;
                // Most probes end here: no keyword on this bigram has the bytes around it.
                let Some(group) = self.group(slot) else {
                    continue;
                };
                if group.next & byte_bit(hay.get(at + 2)) != 0
                    || group.prev & at.checked_sub(1).map_or(0, |p| byte_bit(Some(&hay[p]))) != 0
                {
                    self.confirm(hay, at, group, &mut hit);
                }
            }
        }
        // A last byte at an even position: probe it with a zero after it (a two-byte keyword
        // may end there).
        if let [last] = pairs.remainder() {
            let slot = bigram(*last, 0);
            if self.bitmap[slot >> 6] & (1 << (slot & 63)) != 0
                && let Some(group) = self.group(slot)
            {
                self.confirm(hay, hay.len() - 1, group, &mut hit);
            }
        }
    }

    /// The keywords anchored on the bigram `slot` (every bigram in the bitmap has them).
    #[inline(always)]
    fn group(&self, slot: usize) -> Option<&Group> {
        let mut i = self.index_slot(slot);
        loop {
            let (key, group) = self.index[i];
            if key == slot as u32 + 1 {
                return self.groups.get(group as usize);
            }
            if key == 0 {
                return None;
            }
            i = (i + 1) & (self.index.len() - 1);
        }
    }

    /// Checks the keywords of `group`, whose bigram was found at `at`.
    #[inline(never)]
    fn confirm(
        &self,
        hay: &[u8],
        at: usize,
        group: &Group,
        hit: &mut impl FnMut(usize, usize, usize),
    ) {
        let (first, n) = (group.first as usize, group.n as usize);
        for a in &self.anchors[first..first + n] {
            if let Some(start) = at.checked_sub(usize::from(a.offset)) {
                self.check(hay, start, a, hit);
            }
        }
    }

    /// Reports keyword `a.id` if it occurs at `start`.
    #[inline(always)]
    fn check(
        &self,
        hay: &[u8],
        start: usize,
        a: &Anchor,
        hit: &mut impl FnMut(usize, usize, usize),
    ) {
        let end = start + usize::from(a.len);
        if end > hay.len() {
            return;
        }
        let found = match load(hay, start, 8) {
            // The first 8 bytes decide (and are the whole keyword for most keywords).
            Some(word) => {
                (word | a.fold) & a.mask == a.prefix
                    && (a.len <= 8 || self.rest(hay, start, end, a))
            }
            None => self.rest(hay, start, end, a),
        };
        if found {
            hit(start, end, a.id as usize);
        }
    }

    /// The whole keyword compared (past its 8-byte prefix, or near the end of the text).
    #[cold]
    fn rest(&self, hay: &[u8], start: usize, end: usize, a: &Anchor) -> bool {
        let kw = &self.keywords[a.id as usize];
        hay[start..end].eq_ignore_ascii_case(kw)
    }

    /// Whether some keyword occurrence ends at or after `min_end`.
    pub(crate) fn any_ending_from(&self, hay: &[u8], min_end: usize) -> bool {
        let mut found = false;
        self.find_all(hay, |_, end, _| found |= end >= min_end);
        found
    }
}

impl Anchor {
    fn new(kw: &[u8], id: usize, offset: usize) -> Self {
        let (mut prefix, mut fold, mut mask) = (0u64, 0u64, 0u64);
        for (i, &b) in kw.iter().take(8).enumerate() {
            prefix |= u64::from(b) << (8 * i);
            mask |= 0xff << (8 * i);
            if b.is_ascii_lowercase() {
                fold |= 0x20 << (8 * i);
            }
        }
        Self {
            prefix,
            fold,
            mask,
            id: id as u32,
            offset: offset as u16,
            len: kw.len() as u16,
        }
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of every zero byte of `x`, exactly (no false positives from borrows).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    !(((x & !HI).wrapping_add(!HI)) | x | !HI)
}

/// Calls `f(i)` for every `i` where `hay[i]` is one of `wanted`, in order.
pub(crate) fn for_each_byte_in<const N: usize>(
    hay: &[u8],
    wanted: [u8; N],
    mut f: impl FnMut(usize),
) {
    let patterns = wanted.map(|w| LO * u64::from(w));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let mut m = patterns.iter().fold(0, |m, p| m | zero_bytes(x ^ p));
        while m != 0 {
            f(base + (m.trailing_zeros() / 8) as usize);
            m &= m - 1;
        }
        base += 8;
    }
    for (i, c) in chunks.remainder().iter().enumerate() {
        if wanted.contains(c) {
            f(base + i);
        }
    }
}

/// `bytes` with the letter of every JSON escape `\n`, `\r`, `\t` replaced by a space (same
/// length, so offsets hold), or `None` when there is none. Text scanned as it is written in a
/// JSON file or a JSON tool result has a token right after an escaped line break
/// (`"…is:\nghp_…"`): there the `n` before it is a word byte, and a rule that starts at a word
/// boundary (`\bghp_`) would not match. Its shadow has the space the decoded text has.
pub(crate) fn escape_shadow(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut shadow: Option<Vec<u8>> = None;
    let mut from = 0;
    while let Some(off) = memchr::memchr(b'\\', &bytes[from..]) {
        let start = from + off;
        let run = bytes[start..].iter().take_while(|b| **b == b'\\').count();
        let letter = start + run;
        // An odd run ends in an escape's backslash (`\\` pairs are literal backslashes). An
        // escape that ends a string or meets another (`\n"`, `\n\n`, code's usual) changes no
        // match: only one before a token's first byte needs its space.
        let starts_token = bytes
            .get(letter + 1)
            .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b'\\'));
        if run % 2 == 1 && starts_token && matches!(bytes.get(letter), Some(b'n' | b'r' | b't')) {
            shadow.get_or_insert_with(|| bytes.to_vec())[letter] = b' ';
        }
        from = letter;
    }
    shadow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escape_shadow_blanks_the_letters_of_line_break_and_tab_escapes_before_tokens() {
        let shadow = |s: &str| escape_shadow(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        for (text, want) in [
            (r"is:\nghp_x", Some(r"is:\ ghp_x")),
            (r"a\tb\rc\nd", Some(r"a\ b\ c\ d")),
            // An escaped backslash before `n` is a literal backslash and the letter `n`.
            (r"C:\\new", None),
            (r"a\\\nb", Some(r"a\\\ b")),
            (r#"\u0041 \" \\ \/"#, None),
            ("ends with \\", None),
            ("no escapes at all", None),
            // Escapes before a quote, a space or another escape start no token.
            (r#"print("done\n") \n \t\n\n"#, None),
            (r"\n\n--password x", Some(r"\n\ --password x")),
        ] {
            assert_eq!(shadow(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn literals_found_everywhere_including_overlaps_and_edges() {
        let set = LiteralSet::new([&b"abcdefgh"[..], b"defghijk", b"short", b"zzzzzz"]);
        let hits = set.find_sorted(b"abcdefghijk abcdefgh zzzzzzz");
        assert_eq!(
            hits,
            vec![(0, 8, 0), (3, 11, 1), (12, 20, 0), (21, 27, 3), (22, 28, 3)]
        );
        assert!(set.find_sorted(b"abcde").is_empty());
    }

    /// Every occurrence of every literal in `hay`, found the slow way: what `find_sorted` must
    /// return, in its order.
    fn every_occurrence(literals: &[Vec<u8>], hay: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut want = Vec::new();
        for (id, l) in literals.iter().enumerate() {
            for s in 0..hay.len() {
                if hay[s..].starts_with(l) {
                    want.push((s, s + l.len(), id));
                }
            }
        }
        want.sort_unstable_by_key(|&(s, _, id)| (s, id));
        want
    }

    /// Every literal at every offset of a text, for long and short literals and both tiers at
    /// once: the sampled scan misses nothing and reports nothing twice.
    #[test]
    fn sampled_scan_finds_every_occurrence_at_every_alignment() {
        let literals: Vec<Vec<u8>> = [
            "abcdef",
            "abcdefg",
            "0123456789",
            "0123456789abcdef",
            "0123456789abcdefXYZ",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "aaaaaa",
            "The quick brown fox jumps over the lazy dog",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let set = LiteralSet::new(literals.iter().map(Vec::as_slice));
        for lit in &literals {
            for pad in 0..20 {
                for tail in [0, 1, 7] {
                    let mut hay = vec![b'-'; pad];
                    hay.extend_from_slice(lit);
                    hay.extend(std::iter::repeat_n(b'+', tail));
                    assert_eq!(
                        set.find_sorted(&hay),
                        every_occurrence(&literals, &hay),
                        "{:?} at {pad}",
                        String::from_utf8_lossy(lit)
                    );
                }
            }
        }
    }

    /// Literals of one format share their first bytes and are indexed by later windows, up to
    /// the offset field's limit: each is still found once at every alignment, with steps of 3,
    /// 9 and `MAX_STEP` and lengths from the shortest to far past 32 bytes.
    #[test]
    fn literals_indexed_by_later_windows_are_found_at_every_alignment() {
        let tokens = |prefix: &str, lens: &[usize]| -> Vec<Vec<u8>> {
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            lens.iter()
                .map(|&len| {
                    let mut t = prefix.as_bytes().to_vec();
                    while t.len() < len {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        t.push(
                            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                                [(state % 62) as usize],
                        );
                    }
                    t
                })
                .collect()
        };
        for literals in [
            tokens("ghp_", &[6, 12, 13, 20, 40, 40, 41, 70, 200]),
            tokens("eyJhbGciOiJIUzI1NiJ9.eyJ", &[40, 40, 47, 64, 120]),
            tokens("sk_live_", &[16, 17, 31, 32, 33, 48]),
        ] {
            let set = LiteralSet::new(literals.iter().map(Vec::as_slice));
            for lit in &literals {
                for pad in 0..30 {
                    let mut hay = vec![b'-'; pad];
                    hay.extend_from_slice(lit);
                    hay.extend_from_slice(b" and ");
                    hay.extend_from_slice(lit);
                    assert_eq!(
                        set.find_sorted(&hay),
                        every_occurrence(&literals, &hay),
                        "{:?} at {pad}",
                        String::from_utf8_lossy(lit)
                    );
                }
            }
        }
    }

    /// 200,000 literals leave 9 fingerprint bits per entry: every one is still found, at its
    /// place and with its own id, and a text made of other values finds none.
    #[test]
    fn large_sets_with_short_fingerprints_find_every_literal() {
        let literal = |i: usize| format!("value-{i:08}-{:08x}", i.wrapping_mul(0x9e37_79b9));
        let literals: Vec<String> = (0..200_000).map(literal).collect();
        let set = LiteralSet::new(literals.iter().map(String::as_bytes));
        assert_eq!(set.tiers[0].meta_bits, 18 + OFFSET_BITS);
        for i in (0..literals.len()).step_by(997) {
            let hay = format!("x {} y", literals[i]);
            assert_eq!(
                set.find_sorted(hay.as_bytes()),
                vec![(2, 2 + literals[i].len(), i)]
            );
        }
        let others: String = (200_000..201_000).map(literal).collect();
        assert!(set.find_sorted(others.as_bytes()).is_empty());
    }

    #[test]
    fn entries_pack_what_fits_and_never_spill_into_the_id() {
        // No fingerprint bits left: the entry is the meta alone.
        assert_eq!(Tier::entry(u64::MAX, u32::MAX, 32), u32::MAX);
        assert_eq!(
            Tier::entry(0xffff_ffff, 0b1_00011, 6) & 0b11_1111,
            0b1_00011
        );
        assert_eq!(Tier::entry(0b101, 7, 29) >> 29, 0b101);
    }

    /// Random literal sets (lengths 6 to 60: both tiers, every step) over a small alphabet, so
    /// that windows collide often, against a naive search.
    #[test]
    fn literal_sets_match_a_naive_search() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let alphabet = b"abcab";
        for round in 0..60 {
            let count = 1 + next(30);
            let min = [6, 7, 9, 12, 16, 20, 31][round % 7];
            let literals: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let len = min + next(30);
                    (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
                })
                .collect();
            let set = LiteralSet::new(literals.iter().map(Vec::as_slice));
            for _ in 0..5 {
                let mut hay: Vec<u8> = (0..next(400)).map(|_| alphabet[next(5)]).collect();
                for _ in 0..3 {
                    let lit = &literals[next(literals.len())];
                    let at = next(hay.len() + 1);
                    hay.splice(at..at, lit.iter().copied());
                }
                assert_eq!(
                    set.find_sorted(&hay),
                    every_occurrence(&literals, &hay),
                    "round {round}"
                );
            }
        }
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let set = KeywordSet::new(["ghp_", "sk", "password"]);
        let mut hits = Vec::new();
        set.find_all(b"GHP_x Sk PassWord ask", |s, e, id| hits.push((s, e, id)));
        hits.sort_unstable();
        assert_eq!(hits, vec![(0, 4, 0), (6, 8, 1), (9, 17, 2), (19, 21, 1)]);
        let mut edge = Vec::new();
        set.find_all(b"password", |s, e, id| edge.push((s, e, id)));
        assert_eq!(edge, vec![(0, 8, 2)]);
        assert!(set.any_ending_from(b"my_password", 11));
        assert!(!set.any_ending_from(b"my_password", 12));
    }

    /// Random texts over a small alphabet with keywords planted in random case, at every length
    /// and parity: the sampled scan agrees with a naive search.
    #[test]
    fn keywords_match_a_naive_search() {
        let keywords = [
            "sk",
            "zq",
            "aaa",
            "password",
            "://",
            "secret_access_key",
            "a3t",
            "key-",
            "basic ",
            "pypi-ageichlwas5vcmc",
        ];
        let set = KeywordSet::new(keywords);
        let alphabet = b"aAsSkKzZqQpw3:/-_ e.y\x00\xff";
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in 0..200 {
            for _ in 0..10 {
                let mut hay: Vec<u8> = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                if len > 0 && next() % 2 == 0 {
                    let kw = keywords[(next() % keywords.len() as u64) as usize].as_bytes();
                    let at = (next() % len as u64) as usize;
                    for (i, &b) in kw.iter().enumerate() {
                        if let Some(slot) = hay.get_mut(at + i) {
                            *slot = if next() % 2 == 0 {
                                b.to_ascii_uppercase()
                            } else {
                                b
                            };
                        }
                    }
                }
                let mut got = Vec::new();
                set.find_all(&hay, |s, e, id| got.push((s, e, id)));
                got.sort_unstable();
                let mut want = Vec::new();
                for s in 0..hay.len() {
                    for (id, kw) in keywords.iter().enumerate() {
                        let e = s + kw.len();
                        if e <= hay.len() && hay[s..e].eq_ignore_ascii_case(kw.as_bytes()) {
                            want.push((s, e, id));
                        }
                    }
                }
                assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&hay));
            }
        }
    }

    #[test]
    fn swar_finds_every_byte() {
        let hay = b"a:b=c::==x-----------------=:-------------------=";
        let mut got = Vec::new();
        for_each_byte_in(hay, [b':', b'='], |i| got.push(i));
        let want: Vec<usize> = (0..hay.len())
            .filter(|&i| matches!(hay[i], b':' | b'='))
            .collect();
        assert_eq!(got, want);
        // Bytes that differ from the targets only in the high bit or by one are not hits.
        let tricky = [
            b':' | 0x80,
            b'=' ^ 1,
            b':' + 1,
            0,
            0xff,
            b'=',
            0x3a ^ 0x80,
            b':',
        ];
        let mut got = Vec::new();
        for_each_byte_in(&tricky, [b':', b'='], |i| got.push(i));
        assert_eq!(got, vec![5, 7]);
    }
}
