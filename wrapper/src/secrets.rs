//! `SECRET_REF(name)` in tool-call parameters: where a secret may go, and how its value reaches
//! the tool without entering the command line, the logs or the transcript.
//!
//! Two steps. [`precheck`] runs before any approval is asked: a reference that could never be
//! resolved into this call (no such secret, tool or host outside the secret's scope, an `exec`
//! whose destinations or programs cannot be judged) is refused at once as exfiltration, so the
//! owner is never asked to approve something that would fail anyway. [`apply`] runs only for an
//! allowed call: the vault checks the scope again, logs the resolution (names, never values) and
//! returns the value, which goes into the call's `env` for `exec` (the command text references
//! the variable) and in place for other tools.

use clawgate_policies::{Assessment, Class};
use clawgate_protocol::secret_ref::{self, RefToken, SecretName, SecretRef};
use clawgate_vault::{ResolveContext, Vault};
use serde_json::{Map, Value};

/// Environment variables holding resolved secrets are named with this prefix.
pub const ENV_PREFIX: &str = "CLAWGATE_SECRET_";
/// Tool names Clawgate resolves secrets for itself (the egress proxy is `clawgate:egress`); a
/// tool call may never claim one, or a scope written for the proxy would hand it the key.
pub const RESERVED_TOOL_PREFIX: &str = "clawgate:";

/// Rules meaning "the call runs code whose behaviour was not checked": a secret handed to such a
/// call through the environment could be sent anywhere.
const UNCHECKED_CODE: [&str; 4] = [
    "shell.local_program",
    "shell.script",
    "shell.unknown_command",
    "tool.unknown",
];

/// Every well-formed reference in the parameters' strings, deduplicated, in order of first use.
pub fn refs_in(params: &Value) -> Vec<SecretName> {
    let mut names: Vec<SecretName> = Vec::new();
    visit_strings(params, &mut |s| {
        for token in secret_ref::scan(s) {
            if let RefToken::Ref { name, .. } = token
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    });
    names
}

fn visit_strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| visit_strings(v, f)),
        Value::Object(o) => o.values().for_each(|v| visit_strings(v, f)),
        _ => {}
    }
}

/// Checks, without resolving anything, that every reference may go into this call. The error is
/// the reason the model reads.
pub fn precheck(
    tool: &str,
    assessment: &Assessment,
    refs: &[SecretName],
    vault: Option<&Vault>,
) -> Result<(), String> {
    if refs.is_empty() {
        return Ok(());
    }
    let Some(vault) = vault else {
        return Err("this Clawgate has no vault, so SECRET_REF cannot be resolved".into());
    };
    if tool.starts_with(RESERVED_TOOL_PREFIX) {
        return Err(format!(
            "tool names starting with `{RESERVED_TOOL_PREFIX}` are Clawgate's own; no tool call receives their secrets"
        ));
    }
    if tool == "exec" {
        if assessment.opaque_network {
            return Err(
                "the command reaches the network somewhere Clawgate cannot name, so the secret's \
                 host scope cannot be checked; use a plain https URL with curl"
                    .into(),
            );
        }
        let verdict = &assessment.verdict;
        if let Some(f) = verdict
            .findings
            .iter()
            .find(|f| f.class >= Class::Red || UNCHECKED_CODE.contains(&f.rule.as_str()))
        {
            return Err(format!(
                "a secret is only given to commands Clawgate fully understands, and this one does \
                 not qualify ({}: {})",
                f.rule, f.reason
            ));
        }
    }
    let records = vault.list().map_err(|e| format!("the vault failed: {e}"))?;
    let ctx = ResolveContext {
        tool,
        hosts: &assessment.hosts,
    };
    for name in refs {
        let Some(record) = records.iter().find(|r| r.name == name.as_str()) else {
            return Err(format!("there is no secret named `{name}` in the vault"));
        };
        record.scope.check(&ctx).map_err(|why| {
            format!("SECRET_REF({name}) may not be used here: {why}; this looks like exfiltration")
        })?;
    }
    Ok(())
}

/// A call's parameters with its references resolved.
#[derive(Debug)]
pub struct Applied {
    /// The parameters to execute.
    pub params: Value,
    /// `(secret name, environment variable)` for `exec`; the name alone for other tools.
    pub resolved: Vec<(String, Option<String>)>,
}

/// Resolves every reference into `params` for an allowed call. Each resolution is checked and
/// logged by the vault. Any failure refuses the whole call.
pub fn apply(
    tool: &str,
    params: &Value,
    hosts: &[String],
    vault: &Vault,
) -> Result<Applied, String> {
    if tool.starts_with(RESERVED_TOOL_PREFIX) {
        return Err(format!(
            "tool names starting with `{RESERVED_TOOL_PREFIX}` are Clawgate's own"
        ));
    }
    let ctx = ResolveContext { tool, hosts };
    let resolve = |name: &SecretName| -> Result<String, String> {
        let reference = SecretRef { name: name.clone() };
        vault
            .resolve(&reference, &ctx)
            .map(|v| v.expose().to_owned())
            .map_err(|e| format!("SECRET_REF({name}) could not be resolved: {e}"))
    };
    if tool != "exec" {
        let mut resolved = Vec::new();
        let params = map_strings(params, &mut |s| {
            substitute(s, &mut |name| {
                if !resolved
                    .iter()
                    .any(|(n, _): &(String, _)| n == name.as_str())
                {
                    resolved.push((name.to_string(), None));
                }
                resolve(name)
            })
        })?;
        return Ok(Applied { params, resolved });
    }
    apply_exec(params, &resolve)
}

fn apply_exec(
    params: &Value,
    resolve: &dyn Fn(&SecretName) -> Result<String, String>,
) -> Result<Applied, String> {
    let Value::Object(obj) = params else {
        return Err("exec parameters are not an object".into());
    };
    let mut out = Map::new();
    let mut vars: Vec<(SecretName, String)> = Vec::new();
    let mut var_for = |name: &SecretName| -> String {
        if let Some((_, v)) = vars.iter().find(|(n, _)| n == name) {
            return v.clone();
        }
        let base = format!(
            "{ENV_PREFIX}{}",
            name.as_str().to_ascii_uppercase().replace(['.', '-'], "_")
        );
        let mut var = base.clone();
        let mut n = 2;
        while vars.iter().any(|(_, v)| *v == var) {
            var = format!("{base}_{n}");
            n += 1;
        }
        vars.push((name.clone(), var.clone()));
        var
    };
    let mut env_in = Map::new();
    for (key, value) in obj {
        match (key.as_str(), value) {
            ("command", Value::String(cmd)) => {
                out.insert(
                    key.clone(),
                    Value::String(rewrite_command(cmd, &mut var_for)?),
                );
            }
            ("env", Value::Object(env)) => env_in = env.clone(),
            ("env", _) => return Err("exec `env` must be an object of strings".into()),
            (_, v) => {
                if !refs_in(v).is_empty() {
                    return Err(format!(
                        "SECRET_REF is only resolved in exec's `command` and `env`, not in `{key}`"
                    ));
                }
                out.insert(key.clone(), v.clone());
            }
        }
    }
    let mut resolved = Vec::new();
    let mut env_out = Map::new();
    for (key, value) in env_in {
        if key.starts_with(ENV_PREFIX) {
            return Err(format!(
                "the environment variable name {key} is reserved for Clawgate"
            ));
        }
        let Value::String(text) = value else {
            return Err(format!("exec env `{key}` is not a string"));
        };
        let value = substitute(&text, &mut |name| {
            if !resolved
                .iter()
                .any(|(n, _): &(String, _)| n == name.as_str())
            {
                resolved.push((name.to_string(), None));
            }
            resolve(name)
        })?;
        env_out.insert(key, Value::String(value));
    }
    for (name, var) in &vars {
        env_out.insert(var.clone(), Value::String(resolve(name)?));
        resolved.retain(|(n, _)| n != name.as_str());
        resolved.push((name.to_string(), Some(var.clone())));
    }
    if !env_out.is_empty() {
        out.insert("env".into(), Value::Object(env_out));
    }
    Ok(Applied {
        params: Value::Object(out),
        resolved,
    })
}

fn substitute(
    text: &str,
    value_of: &mut dyn FnMut(&SecretName) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for token in secret_ref::scan(text) {
        match token {
            RefToken::Ref { range, name } => {
                out.push_str(&text[last..range.start]);
                out.push_str(&value_of(&name)?);
                last = range.end;
            }
            RefToken::Malformed { .. } => {
                return Err("a parameter holds a malformed SECRET_REF( reference".into());
            }
        }
    }
    out.push_str(&text[last..]);
    Ok(out)
}

fn map_strings(
    v: &Value,
    f: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if secret_ref::mentions_ref(s) => Value::String(f(s)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| map_strings(v, f))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), map_strings(v, f)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Shell quoting context at a byte position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
    AnsiC,
}

/// Replaces each `SECRET_REF(name)` in a shell command by a reference to an environment
/// variable, quoted for where it stands, so the value is never part of the command text:
/// unquoted → `"${VAR}"`, inside double quotes → `${VAR}`, inside single quotes →
/// `'"${VAR}"'` (close, expand, reopen). `$'…'` strings and heredocs are refused: a variable
/// cannot be expanded there safely.
pub fn rewrite_command(
    command: &str,
    var_for: &mut dyn FnMut(&SecretName) -> String,
) -> Result<String, String> {
    let refs: Vec<_> = secret_ref::scan(command).collect();
    if refs.is_empty() {
        return Ok(command.to_owned());
    }
    if refs.iter().any(|r| matches!(r, RefToken::Malformed { .. })) {
        return Err("the command holds a malformed SECRET_REF( reference".into());
    }
    if command.contains("<<") {
        return Err(
            "SECRET_REF cannot be used in a command with a heredoc or here-string; pass it as an \
             argument or through env"
                .into(),
        );
    }
    let bytes = command.as_bytes();
    let mut out = String::with_capacity(command.len() + 32);
    let mut quote = Quote::None;
    let mut i = 0;
    let mut refs = refs.into_iter().peekable();
    while i < bytes.len() {
        if let Some(RefToken::Ref { range, name }) = refs.peek()
            && range.start == i
        {
            let var = var_for(name);
            match quote {
                Quote::None => out.push_str(&format!("\"${{{var}}}\"")),
                Quote::Double => out.push_str(&format!("${{{var}}}")),
                Quote::Single => out.push_str(&format!("'\"${{{var}}}\"'")),
                Quote::AnsiC => {
                    return Err("SECRET_REF cannot be used inside a $'…' string".into());
                }
            }
            i = range.end;
            refs.next();
            continue;
        }
        let b = bytes[i];
        let mut step = 1;
        match (quote, b) {
            (Quote::None, b'\\') | (Quote::Double, b'\\') | (Quote::AnsiC, b'\\') => step = 2,
            (Quote::None, b'\'') => quote = Quote::Single,
            (Quote::None, b'"') => quote = Quote::Double,
            (Quote::None, b'$') if bytes.get(i + 1) == Some(&b'\'') => {
                quote = Quote::AnsiC;
                step = 2;
            }
            (Quote::Single, b'\'') | (Quote::AnsiC, b'\'') | (Quote::Double, b'"') => {
                quote = Quote::None
            }
            _ => {}
        }
        let end = (i + step).min(bytes.len());
        // Never split a multi-byte character: copy whole characters.
        let end = (end..=bytes.len())
            .find(|e| command.is_char_boundary(*e))
            .unwrap_or(bytes.len());
        out.push_str(&command[i..end]);
        i = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(cmd: &str) -> Result<String, String> {
        rewrite_command(cmd, &mut |n| {
            format!("V_{}", n.as_str().to_ascii_uppercase())
        })
    }

    #[test]
    fn references_become_quoted_variables() {
        let cases = [
            ("echo SECRET_REF(a)", Ok("echo \"${V_A}\"")),
            (
                "echo \"Bearer SECRET_REF(a)\"",
                Ok("echo \"Bearer ${V_A}\""),
            ),
            (
                "echo 'Bearer SECRET_REF(a)'",
                Ok("echo 'Bearer '\"${V_A}\"''"),
            ),
            (
                "curl -H 'x: SECRET_REF(a)' -d \"SECRET_REF(b)\" u",
                Ok("curl -H 'x: '\"${V_A}\"'' -d \"${V_B}\" u"),
            ),
            ("echo \\'SECRET_REF(a)", Ok("echo \\'\"${V_A}\"")),
            ("echo \"it's SECRET_REF(a)\"", Ok("echo \"it's ${V_A}\"")),
            ("echo é SECRET_REF(a)", Ok("echo é \"${V_A}\"")),
            ("echo plain", Ok("echo plain")),
            ("echo $'SECRET_REF(a)'", Err("$'")),
            ("cat <<EOF\nSECRET_REF(a)\nEOF", Err("heredoc")),
            ("cat <<< SECRET_REF(a)", Err("heredoc")),
            ("echo SECRET_REF(a", Err("malformed")),
        ];
        for (cmd, want) in cases {
            match (rewrite(cmd), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{cmd}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{cmd}: {got}"),
                (got, want) => panic!("{cmd}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_rewritten_command_expands_to_the_value_in_a_real_shell() {
        let value = "p@ss 'w\"rd $HOME `x`";
        for cmd in [
            "printf %s SECRET_REF(a)",
            "printf %s \"SECRET_REF(a)\"",
            "printf %s 'SECRET_REF(a)'",
        ] {
            let rewritten = rewrite(cmd).unwrap();
            assert!(!rewritten.contains(value));
            let out = std::process::Command::new("sh")
                .args(["-c", &rewritten])
                .env("V_A", value)
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), value, "{cmd}");
        }
    }

    #[test]
    fn refs_are_found_anywhere_once() {
        let p = serde_json::json!({"a": "SECRET_REF(x) SECRET_REF(y)", "b": ["SECRET_REF(x)"], "c": {"d": 1}});
        let names: Vec<_> = refs_in(&p).iter().map(ToString::to_string).collect();
        assert_eq!(names, ["x", "y"]);
    }
}
