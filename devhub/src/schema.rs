//! Validation against `hub/openapi.json` itself (compiled in): every request body is checked
//! against its schema before it is deserialised, and the tests check every answer the same way,
//! so the dev Hub cannot drift from the document. A small JSON Schema subset, exactly what the
//! document uses: `$ref`, `type` (one or a list), `required`, `properties`,
//! `additionalProperties` (false or a schema), `items`, `minItems`/`maxItems`, `enum`, `const`,
//! `pattern`, `minLength`/`maxLength` (code points), `minimum`/`maximum`, `allOf`, `oneOf`.
//! A keyword it does not know is an error when the document is loaded (fail closed). The
//! validator itself is `clawgate_protocol::jsonschema` (the hook server uses it too).

use std::sync::OnceLock;

pub use clawgate_protocol::jsonschema::Schemas;

/// The protocol document, as in the repository.
pub const OPENAPI: &str = include_str!("../../hub/openapi.json");

static SCHEMAS: OnceLock<Result<Schemas, String>> = OnceLock::new();

/// The compiled document (loaded once).
pub fn schemas() -> Result<&'static Schemas, String> {
    SCHEMAS
        .get_or_init(|| Schemas::load(OPENAPI))
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Every media object (a `schema` with `examples`) anywhere in the document.
    fn media<'a>(v: &'a Value, out: &mut Vec<(&'a Value, &'a Value)>) {
        match v {
            Value::Object(map) => {
                if let (Some(schema), Some(Value::Object(examples))) =
                    (map.get("schema"), map.get("examples"))
                {
                    for ex in examples.values() {
                        out.push((schema, &ex["value"]));
                    }
                }
                map.values().for_each(|c| media(c, out));
            }
            Value::Array(items) => items.iter().for_each(|c| media(c, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_loads_and_its_own_examples_validate() {
        let s = schemas().unwrap();
        let mut all = Vec::new();
        media(s.document(), &mut all);
        assert!(all.len() >= 28, "only {} examples found", all.len());
        for (schema, value) in all {
            s.check(schema, value)
                .unwrap_or_else(|e| panic!("example {value}: {e}"));
        }
        let token_file = &s.component("EnrollmentTokenFile").unwrap()["examples"][0];
        s.validate("EnrollmentTokenFile", token_file).unwrap();
    }

    #[test]
    fn violations_are_refused_with_where_and_why() {
        let s = schemas().unwrap();
        let ok = json!({"status": "applied", "reason": null});
        s.validate("BundleStatusReport", &ok).unwrap();
        let cases = [
            (json!({"status": "applied"}), "missing field `reason`"),
            (
                json!({"status": "applied", "reason": null, "x": 1}),
                "unknown field",
            ),
            (json!({"status": "done", "reason": null}), "not one of"),
            (
                json!({"status": "applied", "reason": "x".repeat(1025)}),
                "longer than",
            ),
        ];
        for (value, why) in cases {
            let e = s.validate("BundleStatusReport", &value).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let e = s.validate("Credential", &json!("cga_short")).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let e = s
            .validate("UnixSeconds", &json!(9_007_199_254_740_992u64))
            .unwrap_err();
        assert!(e.contains("maximum"), "{e}");
        let e = s.validate("UnixSeconds", &json!(-1)).unwrap_err();
        assert!(e.contains("minimum"), "{e}");
        let e = s.validate("UnixSeconds", &json!(1.5)).unwrap_err();
        assert!(e.contains("expected integer"), "{e}");
    }
}
