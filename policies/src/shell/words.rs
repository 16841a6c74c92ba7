//! Turning tree-sitter word nodes into the text bash would pass as one argument.
//!
//! Quotes are removed, backslash escapes and ANSI-C strings (`$'\x72\x6d'`) are decoded and
//! concatenations (`r''m`) folded, so per-binary rules see `rm` however it was spelled. Anything
//! that only bash can resolve at run time (variables, substitutions, arithmetic, brace
//! expansion) marks the word as dynamic.

use tree_sitter::Node;

/// One shell word after static normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Word {
    /// The text bash would produce, with unresolvable parts kept as written (`$HOME`).
    pub(crate) text: String,
    /// Contains a variable, substitution, arithmetic or brace expansion.
    pub(crate) dynamic: bool,
    /// Contains an unquoted glob character.
    pub(crate) glob: bool,
}

impl Word {
    /// A static word (used for synthetic argv such as `xargs`' default `echo`).
    pub(crate) fn lit(text: &str) -> Word {
        Word {
            text: text.to_owned(),
            dynamic: false,
            glob: false,
        }
    }
}

/// Reads the word under `node`.
pub(crate) fn word(node: Node<'_>, src: &str) -> Word {
    let mut w = Word::default();
    append(node, src, &mut w);
    w
}

fn raw<'s>(node: Node<'_>, src: &'s str) -> &'s str {
    src.get(node.byte_range()).unwrap_or_default()
}

fn append(node: Node<'_>, src: &str, w: &mut Word) {
    match node.kind() {
        "word" => unescape_unquoted(raw(node, src), w),
        "number" | "variable_name" | "heredoc_start" => w.text.push_str(raw(node, src)),
        "raw_string" => {
            let r = raw(node, src);
            w.text.push_str(
                r.strip_prefix('\'')
                    .and_then(|r| r.strip_suffix('\''))
                    .unwrap_or(r),
            );
        }
        "string" => append_string(node, src, w),
        "translated_string" | "command_name" => {
            for i in 0..node.named_child_count() {
                if let Some(c) = node.named_child(i) {
                    append(c, src, w);
                }
            }
        }
        "ansi_c_string" => {
            let r = raw(node, src);
            let inner = r
                .strip_prefix("$'")
                .and_then(|r| r.strip_suffix('\''))
                .unwrap_or(r);
            w.text.push_str(&decode_ansi_c(inner));
        }
        "concatenation" => {
            for i in 0..node.child_count() {
                if let Some(c) = node.child(i) {
                    if c.is_named() {
                        append(c, src, w);
                    } else {
                        unescape_unquoted(raw(c, src), w);
                    }
                }
            }
        }
        _ => {
            // Expansions, substitutions, arithmetic, brace expressions and anything this module
            // does not know: keep the text so paths like `$HOME/.ssh` stay recognisable, but
            // never treat it as a known static value.
            w.text.push_str(raw(node, src));
            w.dynamic = true;
        }
    }
}

fn append_string(node: Node<'_>, src: &str, w: &mut Word) {
    let r = node.byte_range();
    let mut pos = r.start + 1;
    let end = r.end.saturating_sub(1).max(pos);
    for i in 0..node.named_child_count() {
        let Some(c) = node.named_child(i) else {
            continue;
        };
        if c.start_byte() > pos {
            unescape_double(src.get(pos..c.start_byte()).unwrap_or_default(), w);
        }
        if c.kind() == "string_content" {
            unescape_double(raw(c, src), w);
        } else {
            append(c, src, w);
        }
        pos = c.end_byte();
    }
    if end > pos {
        unescape_double(src.get(pos..end).unwrap_or_default(), w);
    }
}

fn unescape_unquoted(s: &str, w: &mut Word) {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => w.text.push(n),
            },
            '*' | '?' | '[' => {
                w.glob = true;
                w.text.push(c);
            }
            '$' | '`' => {
                w.dynamic = true;
                w.text.push(c);
            }
            _ => w.text.push(c),
        }
    }
}

fn unescape_double(s: &str, w: &mut Word) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('"' | '\\' | '$' | '`') => {
                    if let Some(n) = chars.next() {
                        w.text.push(n);
                    }
                }
                Some('\n') => {
                    chars.next();
                }
                _ => w.text.push('\\'),
            }
        } else {
            if c == '$' || c == '`' {
                w.dynamic = true;
            }
            w.text.push(c);
        }
    }
}

/// Decodes the body of a `$'...'` string the way bash does.
pub(crate) fn decode_ansi_c(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'e' | 'E' => out.push('\x1b'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' | '\'' | '"' | '?' => out.push(e),
            'x' => push_code(&mut out, take_digits(&mut chars, 16, 2), '\\'),
            'u' => push_code(&mut out, take_digits(&mut chars, 16, 4), '\\'),
            'U' => push_code(&mut out, take_digits(&mut chars, 16, 8), '\\'),
            'c' => {
                if let Some(n) = chars.next() {
                    out.push(char::from((n as u32 & 0x1f) as u8));
                }
            }
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                push_code(&mut out, Some(v & 0xff), '\\');
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

fn take_digits(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    radix: u32,
    max: usize,
) -> Option<u32> {
    let mut v: Option<u32> = None;
    for _ in 0..max {
        match chars.peek().and_then(|d| d.to_digit(radix)) {
            Some(d) => {
                v = Some(v.unwrap_or(0).saturating_mul(radix).saturating_add(d));
                chars.next();
            }
            None => break,
        }
    }
    v
}

fn push_code(out: &mut String, code: Option<u32>, fallback: char) {
    match code.and_then(char::from_u32) {
        Some(c) => out.push(c),
        None => out.push(fallback),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_c() {
        assert_eq!(decode_ansi_c(r"\x72\x6d"), "rm");
        assert_eq!(decode_ansi_c(r"\162\155"), "rm");
        assert_eq!(decode_ansi_c(r"\u0072m"), "rm");
        assert_eq!(decode_ansi_c(r"a\tb\'"), "a\tb'");
    }
}
