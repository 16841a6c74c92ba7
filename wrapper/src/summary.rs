//! What the owner is shown and what a grant is bound to: a one-line summary and an action hash,
//! both computed from parameters with every secret already redacted.

use std::borrow::Cow;

use clawgate_redact::Redactor;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest summary, in characters.
const MAX_SUMMARY: usize = 240;

/// `params` with every string redacted (vault values become `SECRET_REF(name)`, other secrets
/// stable placeholders). Object keys are kept.
pub fn redact_value(redactor: &Redactor, v: &Value) -> Value {
    redact_value_with(v, &|s| redactor.redact(s))
}

/// `v` with every string passed through `redact` (object keys kept).
pub fn redact_value_with(v: &Value, redact: &dyn Fn(&str) -> Cow<'_, str>) -> Value {
    match v {
        Value::String(s) => Value::String(redact(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(|v| redact_value_with(v, redact)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), redact_value_with(v, redact)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// JSON with object keys sorted at every level: the same call always hashes the same.
pub fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<_> = o.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(v) = o.get(k) {
                        write(v, out);
                    }
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// SHA-256 over the canonical tool name and the canonical redacted parameters.
pub fn action_hash(tool: &str, redacted_params: &Value) -> String {
    let mut h = Sha256::new();
    h.update(b"clawgate-action/1\0");
    h.update(tool.as_bytes());
    h.update(b"\0");
    h.update(canonical_json(redacted_params).as_bytes());
    hex::encode(h.finalize())
}

/// One line for the owner's phone. File contents are never shown (only their size), invisible
/// and control characters are escaped so the line cannot hide what it does, and long lines are
/// cut.
pub fn summarize(tool: &str, p: &Value) -> String {
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    let text = match tool {
        "exec" => format!("exec: {}", s("command").unwrap_or("(no command)")),
        "write" => format!(
            "write {} ({} bytes)",
            s("path").unwrap_or("?"),
            s("content").map_or(0, str::len)
        ),
        "edit" => format!(
            "edit {} ({} replacements)",
            s("path").unwrap_or("?"),
            p.get("edits").and_then(Value::as_array).map_or(0, Vec::len)
        ),
        "apply_patch" => {
            let files: Vec<&str> = s("input")
                .unwrap_or("")
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("*** Update File: ")
                        .or_else(|| l.strip_prefix("*** Add File: "))
                        .or_else(|| l.strip_prefix("*** Delete File: "))
                })
                .collect();
            format!("apply_patch to {}", files.join(", "))
        }
        "web_fetch" => format!("web_fetch {}", s("url").unwrap_or("?")),
        "message" => format!(
            "message {} to {}: {}",
            s("action").unwrap_or("?"),
            s("target").or(s("channel")).unwrap_or("?"),
            s("message").unwrap_or("")
        ),
        _ => format!("{tool} {}", canonical_json(p)),
    };
    escape_invisible(&text, MAX_SUMMARY)
}

/// Escapes control, format (zero-width, bidi) and unusual space characters as `\u{…}` and cuts
/// the result to `max` characters.
pub fn escape_invisible(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        let invisible = c.is_control()
            || matches!(c as u32,
                0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
                | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
                | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0xE0000..=0xE0FFF)
            || (c.is_whitespace() && c != ' ');
        if invisible {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_ignores_key_order_and_sees_values() {
        let a = action_hash("exec", &json!({"command": "ls", "workdir": "/tmp"}));
        let b = action_hash("exec", &json!({"workdir": "/tmp", "command": "ls"}));
        let c = action_hash("exec", &json!({"workdir": "/tmp", "command": "ls -a"}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            a,
            action_hash("read", &json!({"command": "ls", "workdir": "/tmp"}))
        );
    }

    #[test]
    fn summaries_are_short_visible_and_contentless() {
        let cases = [
            (
                "exec",
                json!({"command": "rm -rf /tmp/x"}),
                "exec: rm -rf /tmp/x",
            ),
            (
                "exec",
                json!({"command": "echo a\u{202e}b\u{200b}c\nd"}),
                "exec: echo a\\u{202e}b\\u{200b}c\\u{000a}d",
            ),
            (
                "write",
                json!({"path": "/a", "content": "top secret body"}),
                "write /a (15 bytes)",
            ),
            (
                "web_fetch",
                json!({"url": "https://x.test/"}),
                "web_fetch https://x.test/",
            ),
        ];
        for (tool, p, want) in cases {
            assert_eq!(summarize(tool, &p), want);
        }
        let long = summarize("exec", &json!({"command": "x".repeat(1000)}));
        assert_eq!(long.chars().count(), MAX_SUMMARY + 1);
    }
}
