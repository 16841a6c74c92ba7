//! A small getopt-style splitter, told per binary which options take a value.
//!
//! It understands clustered short options (`-fsSL`), glued values (`-oFILE`, `--out=FILE`),
//! `--` and, for GNU tools, unambiguous abbreviations of long options (`--recur` is
//! `--recursive`), so that spelling a flag differently never changes the verdict.

use super::Word;

/// Options and positionals of one command.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// `(name, value)`: short options as `-x`, long ones as written (`--output`).
    pub(crate) opts: Vec<(String, Option<Word>)>,
    /// Positional arguments, in order.
    pub(crate) pos: Vec<Word>,
    /// Index in the original args where the first positional started (for wrappers).
    pub(crate) first_pos: Option<usize>,
}

/// How to split.
pub(crate) struct Spec<'a> {
    /// Short option letters that take a value.
    pub(crate) short_val: &'a str,
    /// Long options (with `--`) that take a value.
    pub(crate) long_val: &'a [&'a str],
    /// Stop at the first positional: everything after it belongs to an inner command.
    pub(crate) stop_at_pos: bool,
}

pub(crate) fn parse(args: &[Word], spec: &Spec<'_>) -> Parsed {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let w = &args[i];
        let t = w.text.as_str();
        if t == "--" {
            p.first_pos.get_or_insert(i + 1);
            p.pos.extend(args[i + 1..].iter().cloned());
            break;
        }
        if w.dynamic || !t.starts_with('-') || t == "-" {
            if spec.stop_at_pos {
                p.first_pos = Some(i);
                p.pos.extend(args[i..].iter().cloned());
                break;
            }
            p.first_pos.get_or_insert(i);
            p.pos.push(w.clone());
            i += 1;
            continue;
        }
        if let Some(long) = t.strip_prefix("--") {
            let (name, glued) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let full = format!("--{name}");
            let takes = spec.long_val.iter().any(|l| *l == full);
            let value = match glued {
                Some(v) => Some(Word {
                    text: v.to_owned(),
                    ..w.clone()
                }),
                None if takes => {
                    i += 1;
                    args.get(i).cloned()
                }
                None => None,
            };
            p.opts.push((full, value));
            i += 1;
            continue;
        }
        // Short cluster.
        let chars: Vec<char> = t[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            if spec.short_val.contains(c) {
                let rest: String = chars[j + 1..].iter().collect();
                let value = if rest.is_empty() {
                    i += 1;
                    args.get(i).cloned()
                } else {
                    Some(Word {
                        text: rest,
                        ..w.clone()
                    })
                };
                p.opts.push((format!("-{c}"), value));
                break;
            }
            p.opts.push((format!("-{c}"), None));
            j += 1;
        }
        i += 1;
    }
    p
}

impl Parsed {
    /// True when any of `names` was given. Long names also match unambiguous abbreviations of at
    /// least `min` characters after `--` (GNU getopt accepts them).
    pub(crate) fn has(&self, names: &[&str]) -> bool {
        self.opts.iter().any(|(n, _)| matches_any(n, names))
    }

    /// Values of every occurrence of any of `names`.
    pub(crate) fn values(&self, names: &[&str]) -> Vec<&Word> {
        self.opts
            .iter()
            .filter(|(n, _)| matches_any(n, names))
            .filter_map(|(_, v)| v.as_ref())
            .collect()
    }

    /// Names of all options given.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.opts.iter().map(|(n, _)| n.as_str())
    }
}

fn matches_any(given: &str, names: &[&str]) -> bool {
    names.iter().any(|n| {
        given == *n
            || (given.starts_with("--")
                && n.starts_with("--")
                && given.len() >= 5
                && n.starts_with(given))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Word> {
        s.split_whitespace().map(Word::lit).collect()
    }

    #[test]
    fn clusters_and_values() {
        let spec = Spec {
            short_val: "o",
            long_val: &["--output"],
            stop_at_pos: false,
        };
        let p = parse(
            &words("-fsSL -ofile --output x --data=@.env url -- -r"),
            &spec,
        );
        assert!(p.has(&["-f"]) && p.has(&["-L"]));
        assert_eq!(p.values(&["-o", "--output"]).len(), 2);
        assert_eq!(p.values(&["--data"])[0].text, "@.env");
        assert_eq!(
            p.pos.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(),
            ["url", "-r"]
        );
        let p = parse(&words("--recur"), &spec);
        assert!(p.has(&["--recursive"]));
    }
}
