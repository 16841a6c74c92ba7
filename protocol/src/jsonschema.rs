//! A small JSON Schema subset for OpenAPI documents: exactly the keywords this repository's
//! documents use (`hub/openapi.json`, `wrapper/openapi.json`): `$ref`, `type` (one or a list),
//! `required`, `properties`, `additionalProperties` (false or a schema), `items`,
//! `minItems`/`maxItems`, `enum`, `const`, `pattern`, `minLength`/`maxLength` (code points),
//! `minimum`/`maximum`, `allOf`, `oneOf`. A keyword it does not know is an error when the document
//! is loaded (fail closed). The dev Hub checks every request against `hub/openapi.json` with it;
//! the hook server checks every hook body against `wrapper/openapi.json`.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

const KNOWN: [&str; 23] = [
    "$ref",
    "type",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "allOf",
    "oneOf",
    "description",
    "examples",
    "example",
    "discriminator",
    "default",
    "format",
];

/// The document's schemas with their compiled patterns.
#[derive(Debug)]
pub struct Schemas {
    doc: Value,
    patterns: HashMap<String, Regex>,
}

impl Schemas {
    /// Parses the document and compiles every pattern; refuses unknown schema keywords.
    pub fn load(text: &str) -> Result<Schemas, String> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("openapi.json does not parse: {e}"))?;
        let mut patterns = HashMap::new();
        let schemas = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .ok_or("openapi.json has no components.schemas")?;
        for (name, schema) in schemas {
            collect(schema, &mut patterns, name)?;
        }
        Ok(Schemas { doc, patterns })
    }

    /// The component schema `name`.
    pub fn component(&self, name: &str) -> Option<&Value> {
        self.doc.pointer(&format!("/components/schemas/{name}"))
    }

    /// Validates `value` against component `name`.
    pub fn validate(&self, name: &str, value: &Value) -> Result<(), String> {
        let schema = self
            .component(name)
            .ok_or_else(|| format!("no schema `{name}`"))?;
        self.check_at(schema, value, "")
    }

    fn resolve<'a>(&'a self, reference: &str) -> Result<&'a Value, String> {
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| format!("unsupported $ref `{reference}`"))?;
        self.doc
            .pointer(pointer)
            .ok_or_else(|| format!("dangling $ref `{reference}`"))
    }

    /// The whole document.
    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// Validates `value` against `schema` (a schema object of this document).
    pub fn check(&self, schema: &Value, value: &Value) -> Result<(), String> {
        self.check_at(schema, value, "")
    }

    fn check_at(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let Some(s) = schema.as_object() else {
            return Err(format!("{}: schema is not an object", here(at)));
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            self.check_at(self.resolve(r)?, value, at)?;
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => return Err(format!("{}: bad `type` in schema", here(at))),
            };
            if !types.iter().any(|t| is_type(t, value)) {
                return Err(format!(
                    "{}: expected {}, found {}",
                    here(at),
                    types.join(" or "),
                    type_name(value)
                ));
            }
        }
        if let Some(c) = s.get("const")
            && c != value
        {
            return Err(format!("{}: must be {c}", here(at)));
        }
        if let Some(Value::Array(options)) = s.get("enum")
            && !options.contains(value)
        {
            return Err(format!("{}: not one of the allowed values", here(at)));
        }
        if let Value::String(text) = value {
            let len = text.chars().count() as u64;
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                return Err(format!("{}: shorter than {min} characters", here(at)));
            }
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                return Err(format!("{}: longer than {max} characters", here(at)));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                let re = self
                    .patterns
                    .get(p)
                    .ok_or_else(|| format!("pattern `{p}` not compiled"))?;
                if !re.is_match(text) {
                    return Err(format!("{}: does not match {p}", here(at)));
                }
            }
        }
        if let Value::Number(n) = value {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && (v.is_nan() || v < min)
            {
                return Err(format!("{}: below the minimum {min}", here(at)));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && (v.is_nan() || v > max)
            {
                return Err(format!("{}: above the maximum {max}", here(at)));
            }
            // f64 cannot tell 2^53 from 2^53 + 1: compare the exact integer too.
            if let (Some(max), Some(i)) = (s.get("maximum").and_then(Value::as_u64), n.as_u64())
                && i > max
            {
                return Err(format!("{}: above the maximum {max}", here(at)));
            }
        }
        if let Value::Array(items) = value {
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                return Err(format!("{}: fewer than {min} items", here(at)));
            }
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                return Err(format!("{}: more than {max} items", here(at)));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.check_at(item_schema, item, &format!("{at}/{i}"))?;
                }
            }
        }
        if let Value::Object(map) = value {
            if let Some(Value::Array(required)) = s.get("required") {
                for r in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        return Err(format!("{}: missing field `{r}`", here(at)));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, v) in map {
                let child = format!("{at}/{}", k.escape_debug());
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => self.check_at(ps, v, &child)?,
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            return Err(format!("{}: unknown field", here(&child)));
                        }
                        Some(extra @ Value::Object(_)) => self.check_at(extra, v, &child)?,
                        _ => {}
                    },
                }
            }
        }
        if let Some(Value::Array(all)) = s.get("allOf") {
            for sub in all {
                self.check_at(sub, value, at)?;
            }
        }
        if let Some(Value::Array(one)) = s.get("oneOf") {
            let matching = one
                .iter()
                .filter(|sub| self.check_at(sub, value, at).is_ok())
                .count();
            if matching != 1 {
                return Err(format!(
                    "{}: matches {matching} of the oneOf alternatives, not exactly one",
                    here(at)
                ));
            }
        }
        Ok(())
    }
}

fn here(at: &str) -> &str {
    if at.is_empty() { "body" } else { at }
}

fn collect(schema: &Value, patterns: &mut HashMap<String, Regex>, at: &str) -> Result<(), String> {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                if !KNOWN.contains(&k.as_str()) {
                    return Err(format!("schema keyword `{k}` at {at} is not supported"));
                }
                match k.as_str() {
                    "pattern" => {
                        let p = v.as_str().ok_or("pattern is not a string")?;
                        let re = Regex::new(p).map_err(|e| format!("pattern {p}: {e}"))?;
                        patterns.insert(p.to_owned(), re);
                    }
                    "properties" => {
                        for (name, sub) in v.as_object().ok_or("properties is not an object")? {
                            collect(sub, patterns, &format!("{at}.{name}"))?;
                        }
                    }
                    "items" | "additionalProperties" if v.is_object() => {
                        collect(v, patterns, at)?;
                    }
                    "allOf" | "oneOf" => {
                        for sub in v.as_array().ok_or("allOf/oneOf is not an array")? {
                            collect(sub, patterns, at)?;
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Err(format!("schema at {at} is not an object")),
    }
}

fn is_type(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
