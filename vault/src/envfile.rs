//! Parsing `KEY=value` files (`~/.openclaw/.env`, one-time secret files) and destroying the
//! plaintext afterwards.
//!
//! Accepted syntax: blank lines and `#` comments; an optional `export ` prefix; unquoted values
//! (trimmed, ending at ` #`); single-quoted values taken literally; double-quoted values with
//! `\n \r \t \" \\ \$` escapes, which may span lines (PEM keys). Duplicate keys are an error:
//! which one the user meant is not ours to guess. Errors carry line numbers, never values.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use clawgate_protocol::{SecretName, SecretString};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Largest file accepted.
pub const MAX_ENV_FILE: u64 = 1024 * 1024;

/// One parsed entry.
#[derive(Debug)]
pub struct EnvEntry {
    /// The key, which becomes the secret's name.
    pub name: SecretName,
    /// The value.
    pub value: SecretString,
    /// 1-based line where the entry starts.
    pub line: usize,
}

/// Parses `text` from `path` (the path is only used in error messages).
pub fn parse(path: &Path, text: &str) -> Result<Vec<EnvEntry>> {
    let err = |line: usize, reason: &str| Error::EnvFile {
        path: path.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let mut entries = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let start = i + 1;
        let line = lines[i].trim_end_matches('\r').trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            return Err(err(start, "expected KEY=value"));
        };
        let key = key.trim_end();
        let name = SecretName::new(key).map_err(|e| err(start, &e.to_string()))?;
        if let Some(first) = seen.insert(key.to_owned(), start) {
            return Err(err(
                start,
                &format!("duplicate key {key} (first on line {first})"),
            ));
        }
        let rest = rest.trim_start();
        let mut value = match rest.chars().next() {
            Some('\'') => {
                single_quoted(&rest[1..]).ok_or_else(|| err(start, "unterminated single quote"))?
            }
            Some('"') => {
                let (value, used) = double_quoted(&rest[1..], &lines[i..])
                    .ok_or_else(|| err(start, "unterminated double quote"))?;
                i += used;
                value
            }
            _ => Zeroizing::new(unquoted(rest).to_owned()),
        };
        // Move the String out; the emptied Zeroizing wrapper has nothing left to wipe.
        entries.push(EnvEntry {
            name,
            value: SecretString::new(std::mem::take(&mut *value)),
            line: start,
        });
    }
    Ok(entries)
}

fn unquoted(rest: &str) -> &str {
    let rest = rest.trim_end_matches('\r');
    let end = rest.find(" #").unwrap_or(rest.len());
    rest[..end].trim_end()
}

fn single_quoted(rest: &str) -> Option<Zeroizing<String>> {
    let end = rest.find('\'')?;
    Some(Zeroizing::new(rest[..end].to_owned()))
}

/// Parses a double-quoted value starting after the opening quote; may continue over the
/// following `more` lines. Returns the value and how many extra lines it used.
fn double_quoted(first: &str, more: &[&str]) -> Option<(Zeroizing<String>, usize)> {
    let mut out = Zeroizing::new(String::new());
    let mut used = 0;
    let mut current = first.trim_end_matches('\r');
    loop {
        let mut chars = current.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some((out, used)),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some(other) => {
                        if !matches!(other, '"' | '\\' | '$') {
                            out.push('\\');
                        }
                        out.push(other);
                    }
                    None => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        current = more.get(used)?.trim_end_matches('\r');
        used += 1;
        out.push('\n');
    }
}

/// Overwrites the file's bytes with zeros, fsyncs, and unlinks it. Refuses symlinks (which
/// could aim the overwrite at another file). On copy-on-write or journaling file systems the old
/// blocks may survive on the device; the overwrite still removes them from the file.
pub fn destroy_plaintext(path: &Path) -> Result<()> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(ctx("inspecting"), e))?;
    if !meta.file_type().is_file() {
        return Err(Error::io(
            ctx("refusing to overwrite non-regular file"),
            std::io::ErrorKind::InvalidInput.into(),
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(ctx("opening"), e))?;
    let zeros = vec![0u8; 64 * 1024];
    let mut left = meta.size();
    file.rewind()
        .map_err(|e| Error::io(ctx("overwriting"), e))?;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])
            .map_err(|e| Error::io(ctx("overwriting"), e))?;
        left -= n as u64;
    }
    file.sync_all().map_err(|e| Error::io(ctx("syncing"), e))?;
    drop(file);
    std::fs::remove_file(path).map_err(|e| Error::io(ctx("removing"), e))?;
    crate::fsutil::sync_parent_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(String, String)> {
        parse(Path::new("t.env"), text)
            .unwrap()
            .into_iter()
            .map(|e| (e.name.to_string(), e.value.expose().to_owned()))
            .collect()
    }

    #[test]
    fn syntax_table() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("A=1", &[("A", "1")]),
            ("  export B = two words  # comment\n", &[("B", "two words")]),
            ("# c\n\nC='lit $x \\n'\r\n", &[("C", "lit $x \\n")]),
            ("D=\"a\\nb\\\"c\\$\"", &[("D", "a\nb\"c$")]),
            (
                "E=\"-----BEGIN KEY-----\nabc\n-----END KEY-----\"\nF=x",
                &[
                    ("E", "-----BEGIN KEY-----\nabc\n-----END KEY-----"),
                    ("F", "x"),
                ],
            ),
            ("G=a#b", &[("G", "a#b")]),
            ("H=", &[("H", "")]),
        ];
        for (text, want) in cases {
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(parsed(text), want, "{text:?}");
        }
    }

    #[test]
    fn errors_name_the_line_not_the_value() {
        let e = parse(Path::new("t.env"), "A=1\nnot a pair hunter2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && !e.contains("hunter2"), "{e}");
        let e = parse(Path::new("t.env"), "A=1\nA=hunter2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("duplicate key A") && !e.contains("hunter2"),
            "{e}"
        );
        let e = parse(Path::new("t.env"), "A=\"hunter2\nno end")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unterminated") && !e.contains("hunter2"), "{e}");
        assert!(parse(Path::new("t.env"), "BAD/NAME=x").is_err());
    }

    #[test]
    fn destroy_overwrites_then_unlinks_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".env");
        std::fs::write(&f, "A=secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(destroy_plaintext(&link).is_err());
        assert!(f.exists());
        destroy_plaintext(&f).unwrap();
        assert!(!f.exists());
    }
}
