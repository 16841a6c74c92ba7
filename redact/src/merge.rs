//! Combining findings: every copy of a detected value, then overlapping spans merged into one.

use std::collections::HashSet;

use crate::{DetectorKind, Finding};

/// Copies shorter than this are not chased through the rest of the text.
const MIN_COPY_LEN: usize = 8;

/// A value made of lower-case letters only (`postgres`, `changeme`): found after `password=` it
/// is redacted there, but its other copies are the word itself (`postgres://`, "the postgres
/// database") and are left alone.
fn plain_word(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_lowercase())
}

/// Adds a finding for every other occurrence of each value found by a rule or the entropy
/// detector (vault values are already found everywhere by their literal set). Scanners that report
/// only the first copy leave the rest of the prompt leaking.
pub(crate) fn every_copy(text: &str, findings: &mut Vec<Finding>) {
    // Each distinct value once, labelled by its first finding.
    let mut values: Vec<(&str, usize)> = Vec::with_capacity(findings.len());
    let mut seen: HashSet<&str> = HashSet::with_capacity(findings.len());
    for (i, f) in findings.iter().enumerate() {
        if f.detector == DetectorKind::Vault {
            continue;
        }
        let Some(value) = text.get(f.start..f.end) else {
            continue;
        };
        if value.len() >= MIN_COPY_LEN && !plain_word(value) && seen.insert(value) {
            values.push((value, i));
        }
    }
    if values.is_empty() {
        return;
    }
    let copies = occurrences(text.as_bytes(), &values);
    // Spans sorted by start with a running maximum of their ends: a hit is already covered when
    // some span starting at or before it reaches its end (O(log n) per hit, not O(n)).
    let mut spans: Vec<(usize, usize)> = findings.iter().map(|f| (f.start, f.end)).collect();
    // Each detector's findings come mostly in text order: the stable sort merges those runs.
    spans.sort();
    let mut reach = Vec::with_capacity(spans.len());
    let mut max_end = 0;
    for (_, end) in &spans {
        max_end = max_end.max(*end);
        reach.push(max_end);
    }
    let covered = |start: usize, end: usize| {
        let before = spans.partition_point(|(s, _)| *s <= start);
        before > 0 && reach[before - 1] >= end
    };
    let mut extra = Vec::new();
    for (start, end, id) in copies {
        if !covered(start, end) {
            extra.push(Finding {
                start,
                end,
                ..findings[values[id].1].clone()
            });
        }
    }
    findings.extend(extra);
}

/// Up to this many values are searched for one by one; more, with one `LiteralSet`. A message
/// holds one or two secrets, and building the set for them cost more than the search (dense
/// text in 2 KB strings: 4.7 M of 7.0 M instructions per MiB here were the sets' construction).
const ONE_BY_ONE: usize = 8;

/// Every occurrence of each value (overlapping ones too) as `(start, end, index into values)`,
/// sorted by start, then index: what `LiteralSet::find_sorted` reports, whichever way it is
/// found.
fn occurrences(hay: &[u8], values: &[(&str, usize)]) -> Vec<(usize, usize, usize)> {
    if values.len() > ONE_BY_ONE {
        return crate::scan::LiteralSet::new(values.iter().map(|(v, _)| v.as_bytes()))
            .find_sorted(hay);
    }
    let mut hits = Vec::new();
    for (id, (value, _)) in values.iter().enumerate() {
        let finder = memchr::memmem::Finder::new(value.as_bytes());
        let mut from = 0;
        while let Some(at) = hay.get(from..).and_then(|rest| finder.find(rest)) {
            let start = from + at;
            hits.push((start, start + value.len(), id));
            from = start + 1;
        }
    }
    hits.sort_unstable_by_key(|&(s, _, id)| (s, id));
    hits
}

/// Sorts findings and merges overlapping ones into a single span, so no part of any secret is
/// left out. The merged span is labelled by its highest-priority finding (vault, then rule, then
/// entropy; then the earliest and longest). Spans are snapped outward to UTF-8 boundaries.
pub(crate) fn merge(text: &str, mut findings: Vec<Finding>) -> Vec<Finding> {
    for f in &mut findings {
        while f.start > 0 && !text.is_char_boundary(f.start) {
            f.start -= 1;
        }
        while f.end < text.len() && !text.is_char_boundary(f.end) {
            f.end += 1;
        }
    }
    findings.retain(|f| f.start < f.end && f.end <= text.len());
    findings.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.detector.cmp(&b.detector))
    });
    let mut out: Vec<Finding> = Vec::with_capacity(findings.len());
    for f in findings {
        match out.last_mut() {
            Some(cur) if f.start < cur.end => {
                cur.end = cur.end.max(f.end);
                if f.detector < cur.detector {
                    let (start, end) = (cur.start, cur.end);
                    *cur = Finding { start, end, ..f };
                }
            }
            _ => out.push(f),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator (xorshift), so the test needs no seed file.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// The one-by-one search reports exactly what the literal set does (overlapping copies,
    /// values inside other values, the same order), on texts made of few letters so that
    /// copies and overlaps are everywhere.
    #[test]
    fn one_by_one_search_equals_the_literal_set() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let text: String = (0..rng.below(300))
                .map(|_| char::from(b"ab7"[rng.below(3)]))
                .collect();
            let owned: Vec<String> = (0..1 + rng.below(ONE_BY_ONE))
                .map(|_| {
                    (0..MIN_COPY_LEN + rng.below(4))
                        .map(|_| char::from(b"ab7"[rng.below(3)]))
                        .collect()
                })
                .collect();
            let mut values: Vec<(&str, usize)> = Vec::new();
            for (i, v) in owned.iter().enumerate() {
                if !values.iter().any(|(w, _)| w == v) {
                    values.push((v, i));
                }
            }
            let set = crate::scan::LiteralSet::new(values.iter().map(|(v, _)| v.as_bytes()));
            assert_eq!(
                occurrences(text.as_bytes(), &values),
                set.find_sorted(text.as_bytes()),
                "{text:?} {values:?}"
            );
        }
    }
}
