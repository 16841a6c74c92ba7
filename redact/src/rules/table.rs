//! Secrets in tables, where no operator assigns them: a column headed `Password` (or
//! `Client secret`) in a Markdown or ASCII table, and a row that names its value's key,
//! `| DB_PASSWORD | … |`. Assistants list credentials this way in chat, and database clients
//! print query results as ASCII tables.
//!
//! Started from the rule detector's keyword hits (`password`, `secret`, …) that have a `|`
//! shortly before them on their line; other hits cost one short backward search. Rows may
//! also be separated by JSON-escaped line breaks (`\n`), as in a tool result quoted into a
//! JSON document. Lines longer than [`MAX_LINE`] are no table rows, which also keeps the work
//! per hit bounded and the whole pass linear in the text.

use std::ops::Range;

use super::{NOT_PASSWORDS, is_placeholder, is_reference};
use crate::{DetectorKind, Finding};

/// At most this many rows are read on each side of the hit (a table is rarely longer; the
/// bound keeps a pathological text linear).
const MAX_ROWS: usize = 200;

/// Lines longer than this are no table rows.
const MAX_LINE: usize = 4096;

/// What a column or key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Password,
    Secret,
}

impl Kind {
    fn rule(self) -> &'static str {
        match self {
            Kind::Password => "password-assignment",
            Kind::Secret => "secret-assignment",
        }
    }
}

/// Words of a column name that make it describe a password rather than hold one.
const ABOUT_PASSWORDS: &[&str] = &[
    "length",
    "policy",
    "expires",
    "expiry",
    "expiration",
    "expired",
    "changed",
    "last",
    "age",
    "hint",
    "reset",
    "required",
    "strength",
    "min",
    "max",
    "rotation",
    "set",
    "type",
    "field",
    "name",
    "id",
    "count",
    "manager",
];

/// What the key or column name `name` (a cell's text) holds, if a secret.
fn kind_of(name: &[u8]) -> Option<Kind> {
    let lower = name.to_ascii_lowercase();
    let has = |w: &str| lower.windows(w.len()).any(|x| x == w.as_bytes());
    let about = || {
        lower
            .split(|b| !b.is_ascii_alphanumeric())
            .any(|word| ABOUT_PASSWORDS.iter().any(|a| word == a.as_bytes()))
    };
    // Where a password comes from, not the password: `passwordFile`, `secret_path`.
    let source = ["file", "path", "command", "cmd", "env", "source", "url"]
        .iter()
        .any(|s| lower.ends_with(s.as_bytes()));
    if lower.len() > 48 || about() || source {
        return None;
    }
    let pass_word = lower == b"pass" || lower.ends_with(b"_pass") || lower.ends_with(b"-pass");
    if has("password") || has("passwd") || has("passphrase") || pass_word {
        Some(Kind::Password)
    } else if has("secret") {
        Some(Kind::Secret)
    } else {
        None
    }
}

/// Whether `value`, a cell under (or beside) a `kind` key, is a secret: one word, not a
/// placeholder, reference or type; a secret column's value must also look random.
fn accepts(kind: Kind, value: &[u8]) -> bool {
    let word = (4..=256).contains(&value.len())
        && !value.iter().any(u8::is_ascii_whitespace)
        && value.iter().any(u8::is_ascii_alphanumeric)
        && value.iter().any(|b| *b != value[0])
        && !is_placeholder(value)
        && !is_reference(value)
        && !NOT_PASSWORDS
            .iter()
            .any(|w| value.eq_ignore_ascii_case(w.as_bytes()));
    word && match kind {
        Kind::Password => value.len() <= 128,
        Kind::Secret => value.len() >= 20 && crate::entropy::random_enough(value),
    }
}

/// The line holding `pos`: its bytes' range (without the line break). A line longer than
/// [`MAX_LINE`] is `Err(where its scan stopped)`: nothing before that is in a table row.
fn line_at(bytes: &[u8], pos: usize) -> Result<Range<usize>, usize> {
    let ceiling = (pos + MAX_LINE).min(bytes.len());
    let mut end = pos;
    while end < ceiling && break_len(bytes, end) == 0 {
        end += 1;
    }
    if end == ceiling && ceiling < bytes.len() {
        return Err(ceiling);
    }
    let floor = pos.saturating_sub(MAX_LINE);
    let mut start = pos;
    while start > floor && !breaks_before(bytes, start) {
        start -= 1;
    }
    if start == floor && start > 0 && !breaks_before(bytes, start) {
        return Err(end);
    }
    Ok(start..end)
}

/// The length of the line break at `i`: a newline, or a JSON-escaped `\n` (`\r` before
/// either is part of the line and trimmed with the cells).
fn break_len(bytes: &[u8], i: usize) -> usize {
    match bytes[i] {
        b'\n' => 1,
        b'\\'
            if bytes.get(i + 1) == Some(&b'n')
                && escaped_backslash_count(bytes, i).is_multiple_of(2) =>
        {
            2
        }
        _ => 0,
    }
}

/// Backslashes right before `i` (an even count leaves the one at `i` opening an escape),
/// counted up to [`MAX_LINE`].
fn escaped_backslash_count(bytes: &[u8], i: usize) -> usize {
    bytes[i.saturating_sub(MAX_LINE)..i]
        .iter()
        .rev()
        .take_while(|b| **b == b'\\')
        .count()
}

/// Whether a line starts at `i` (a line break ends right before it).
fn breaks_before(bytes: &[u8], i: usize) -> bool {
    bytes[i - 1] == b'\n' || (i >= 2 && break_len(bytes, i - 2) == 2)
}

/// The line before the one starting at `start`, if any.
fn previous_line(bytes: &[u8], start: usize) -> Option<Range<usize>> {
    let end = match start {
        0 => return None,
        s if bytes[s - 1] == b'\n' => s - 1,
        s => s - 2,
    };
    line_at(bytes, end).ok()
}

/// The line after the one ending at `end`, if any.
fn next_line(bytes: &[u8], end: usize) -> Option<Range<usize>> {
    if end >= bytes.len() {
        return None;
    }
    let start = end + break_len(bytes, end);
    (start < bytes.len())
        .then(|| line_at(bytes, start).ok())
        .flatten()
}

/// Where a table starts that opens a JSON string on this line (`"content": "| host | …`): just
/// after the string's quote.
fn opening_json_string(bytes: &[u8], line: &Range<usize>) -> Option<usize> {
    let bar = line.start + bytes[line.clone()].iter().position(|b| *b == b'|')?;
    let mut i = bar;
    while i > line.start && bytes[i - 1] == b' ' {
        i -= 1;
    }
    let quote = i
        .checked_sub(1)
        .filter(|&q| q >= line.start && bytes[q] == b'"')?;
    // The quote opens a string value (after `:`, `[` or `,`), not closes one (`"ca" | "key"`).
    let mut j = quote;
    while j > line.start && bytes[j - 1] == b' ' {
        j -= 1;
    }
    let opens = j > line.start && matches!(bytes[j - 1], b':' | b'[' | b',');
    (opens && escaped_backslash_count(bytes, quote).is_multiple_of(2)).then_some(quote + 1)
}

/// A table line: a row (`| … |`) or a border (`+---+`), possibly indented.
fn is_table_line(bytes: &[u8], line: &Range<usize>) -> bool {
    let t = bytes[line.clone()].trim_ascii_start();
    t.first().is_some_and(|b| *b == b'|' || *b == b'+') && t.len() >= 3
}

/// The cells of a row, as trimmed byte ranges (the text before the first `|` and after the
/// last is not a cell). `None` for a border or separator (`+---+`, `|---|:--:|`).
fn cells(bytes: &[u8], line: &Range<usize>) -> Option<Vec<Range<usize>>> {
    let text = &bytes[line.clone()];
    let rule_line = text
        .iter()
        .all(|b| matches!(b, b'-' | b'=' | b':' | b'+' | b'|' | b' ' | b'\t' | b'\r'));
    if rule_line {
        return None;
    }
    let bars: Vec<usize> = (0..text.len()).filter(|&i| text[i] == b'|').collect();
    Some(
        bars.windows(2)
            .map(|w| {
                let (mut a, mut z) = (line.start + w[0] + 1, line.start + w[1]);
                while a < z && bytes[a].is_ascii_whitespace() {
                    a += 1;
                }
                while z > a && bytes[z - 1].is_ascii_whitespace() {
                    z -= 1;
                }
                // `` `value` `` and quoted values: the value is inside.
                if z - a >= 2 && matches!(bytes[a], b'`' | b'"' | b'\'') && bytes[z - 1] == bytes[a]
                {
                    a += 1;
                    z -= 1;
                }
                a..z
            })
            .collect(),
    )
}

/// A tab-separated row whose first field is a key naming a secret (`DB_PASSWORD<TAB>…`, as
/// `printenv | column`, spreadsheets and `aws configure list`-like tools print them), `hit`
/// in that key: its value, the second field, judged as a table cell beside its key. Where the
/// row ends, when it is one.
fn tab_separated(bytes: &[u8], hit: usize, out: &mut Vec<Finding>) -> Option<usize> {
    // The key starts its line (at most 64 bytes before the hit) and runs to a tab.
    let floor = hit.saturating_sub(64);
    let mut start = hit;
    while start > floor && crate::entropy::is_key_byte(bytes[start - 1]) {
        start -= 1;
    }
    if start > 0 && bytes[start - 1] != b'\n' {
        return None;
    }
    let mut key_end = hit;
    while key_end < bytes.len()
        && key_end - start < 64
        && crate::entropy::is_key_byte(bytes[key_end])
    {
        key_end += 1;
    }
    if bytes.get(key_end) != Some(&b'\t') {
        return None;
    }
    // A key of lower-case letters and dashes only is a configuration word with a tab after it
    // (PAM's `password<TAB>requisite`, `/etc/services`' `kpasswd<TAB>464/tcp`), not a variable.
    if bytes[start..key_end]
        .iter()
        .all(|b| b.is_ascii_lowercase() || *b == b'-')
    {
        return None;
    }
    let mut from = key_end;
    while bytes.get(from) == Some(&b'\t') {
        from += 1;
    }
    let mut to = from;
    while to < bytes.len() && to - from <= 256 && !matches!(bytes[to], b'\t' | b'\n' | b'\r') {
        to += 1;
    }
    let kind = kind_of(&bytes[start..key_end])?;
    let (mut a, mut z) = (from, to);
    while z > a && bytes[z - 1] == b' ' {
        z -= 1;
    }
    if z - a >= 2 && matches!(bytes[a], b'"' | b'\'') && bytes[z - 1] == bytes[a] {
        a += 1;
        z -= 1;
    }
    push_if_secret(bytes, kind, &(a..z), out);
    Some(to)
}

/// A finding for the cell or field `r` under (or beside) a `kind` key, if [`accepts`] takes it.
fn push_if_secret(bytes: &[u8], kind: Kind, r: &Range<usize>, out: &mut Vec<Finding>) {
    if accepts(kind, &bytes[r.clone()]) {
        out.push(Finding {
            start: r.start,
            end: r.end,
            rule: kind.rule().into(),
            detector: DetectorKind::Rule,
            secret: None,
        });
    }
}

/// The findings of the table around the line holding `hit`, if that line is a table row;
/// returns where the table ends (hits before it are done).
pub(super) fn find(bytes: &[u8], hit: usize, out: &mut Vec<Finding>) -> usize {
    if let Some(end) = tab_separated(bytes, hit, out) {
        return end;
    }
    // Most hits are in code or prose: in a table the keyword is in a cell, a `|` shortly before
    // it on its line (searched back to a newline, at most 64 bytes: a longer cell is prose).
    let from = hit.saturating_sub(64);
    if memchr::memrchr2(b'\n', b'|', &bytes[from..hit]).is_none_or(|i| bytes[from + i] != b'|') {
        return hit + 1;
    }
    let mut line = match line_at(bytes, hit) {
        Ok(line) => line,
        Err(scanned_to) => return scanned_to,
    };
    if let Some(start) = opening_json_string(bytes, &line) {
        line.start = start;
    }
    if !is_table_line(bytes, &line) {
        return line.end;
    }
    // The table's lines, in order: up to MAX_ROWS read upwards, the hit's, MAX_ROWS downwards.
    let mut lines = vec![line.clone()];
    while lines.len() <= MAX_ROWS {
        match previous_line(bytes, lines[lines.len() - 1].start) {
            Some(l) if is_table_line(bytes, &l) => lines.push(l),
            _ => break,
        }
    }
    lines.reverse();
    for _ in 0..MAX_ROWS {
        match next_line(bytes, lines[lines.len() - 1].end) {
            Some(l) if is_table_line(bytes, &l) => lines.push(l),
            _ => break,
        }
    }
    let rows: Vec<Option<Vec<Range<usize>>>> = lines.iter().map(|l| cells(bytes, l)).collect();
    // The header: the first row, when a border or separator follows it.
    let first = rows.iter().position(Option::is_some);
    let header = first.filter(|&i| rows.get(i + 1).is_some_and(Option::is_none));
    let columns: Vec<(usize, Kind)> = header
        .and_then(|i| rows[i].as_ref())
        .map(|cells| {
            cells
                .iter()
                .enumerate()
                .filter_map(|(c, r)| kind_of(&bytes[r.clone()]).map(|k| (c, k)))
                .collect()
        })
        .unwrap_or_default();
    for (i, row) in rows.iter().enumerate() {
        let Some(cells) = row else { continue };
        if Some(i) == header {
            continue;
        }
        // Under a secret column.
        for &(c, kind) in &columns {
            if let Some(r) = cells.get(c) {
                push_if_secret(bytes, kind, r, out);
            }
        }
        // Beside a key naming a secret: `| DB_PASSWORD | … |`.
        for pair in cells.windows(2) {
            if let Some(kind) = kind_of(&bytes[pair[0].clone()]) {
                push_if_secret(bytes, kind, &pair[1], out);
            }
        }
    }
    lines[lines.len() - 1].end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts of the findings for `text`, hit at every `password`/`secret` it holds.
    fn found(text: &str) -> Vec<&str> {
        let bytes = text.as_bytes();
        let lower = text.to_ascii_lowercase();
        let mut out = Vec::new();
        let mut done = 0;
        for (hit, _) in lower
            .match_indices("password")
            .chain(lower.match_indices("secret"))
        {
            if hit >= done {
                done = find(bytes, hit, &mut out);
            }
        }
        let mut texts: Vec<&str> = out.iter().map(|f| &text[f.start..f.end]).collect();
        texts.sort_unstable();
        texts.dedup();
        texts
    }

    #[test]
    fn tables() {
        let cases: &[(&str, &[&str])] = &[
            // A header column, rows below; placeholders and NULL are no passwords.
            (
                "| user | password |\n|---|---|\n| a | pw-One-1 |\n| b | `pw-Two-2` |\n| c | ******** |\n| d | NULL |\n",
                &["pw-One-1", "pw-Two-2"],
            ),
            // CRLF rows, an ASCII table with borders.
            (
                "+---+----------+\r\n| # | Password |\r\n+---+----------+\r\n| 1 | s3cr3t!! |\r\n+---+----------+\r\n",
                &["s3cr3t!!"],
            ),
            // Rows separated by JSON-escaped line breaks, the table opening a JSON string.
            (
                r#"{"text": "| host | password |\n|---|---|\n| db | Zk2-Lm9q |\n"}"#,
                &["Zk2-Lm9q"],
            ),
            // Key and value in one row; a secret's value must look random.
            (
                "| DB_PASSWORD | hunter22 |\n| CLIENT_SECRET | short |\n| API_SECRET | Zx9kQ2mP7vR4tY8wL1nB6c |\n",
                &["Zx9kQ2mP7vR4tY8wL1nB6c", "hunter22"],
            ),
            // Columns and keys about passwords, sentences, a header with nothing below.
            (
                "| PASSWORD_MIN_LENGTH | 12345 |\n| passwordFile | /etc/pw |\n| password | The one you chose |\n",
                &[],
            ),
            ("| Password | Notes |\n|---|---|\n", &[]),
            // Tab-separated rows: the key first on its line, its value the next field.
            (
                "DB_PASSWORD\tPizD#bX1rpXj\nCLIENT_SECRET\t\tJ1mvMGsJ6VewYY2lAbfiCq4SLwkHw8W8\tuser\n",
                &["J1mvMGsJ6VewYY2lAbfiCq4SLwkHw8W8", "PizD#bX1rpXj"],
            ),
            // Not a key at the start of its line, a secret not random, a sentence, a file.
            (
                "x DB_PASSWORD\tPizD#bX1rpXj\nCLIENT_SECRET\tshort-one\npassword\tThe one you chose\nPASSWORD_FILE\t/run/pw\n",
                &[],
            ),
            // Not a table: the keyword in prose, a pipe elsewhere on the line, a union type.
            (r#"  "ca" | "key" | "passphrase" | "servername">"#, &[]),
            (
                "cat x | grep password > out\nthe password is in the vault\n",
                &[],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(found(text), *want, "{text:?}");
        }
    }

    #[test]
    fn lines_longer_than_the_limit_are_no_rows() {
        // 2 MB on one line, a `| password | … |` every 25 bytes (before lines were bounded,
        // every hit walked back to the start of the line).
        let text = "| password | Zk2-Lm9q-x |".repeat(80 * 1024);
        assert!(found(&text).is_empty());
        // A table row just under the limit is still read.
        let row = format!(
            "| user | password |\n|---|---|\n| {} | Zk2-Lm9q |\n",
            "a".repeat(4000)
        );
        assert_eq!(found(&row), vec!["Zk2-Lm9q"]);
    }
}
