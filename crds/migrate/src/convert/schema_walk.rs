//! Keeps what a FerroLB CRD schema knows of a value; collects the rest.

use serde_json::{Map, Value};

/// A field the schema does not know, with a non-empty value.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    /// JSON path, e.g. `spec.nodeSelectors[0].foo`.
    pub path: String,
    /// The value dropped.
    pub value: Value,
}

/// `value` with only the fields `schema` (an OpenAPI v3 schema) describes. Unknown fields
/// with a non-empty value are appended to `dropped`; those with the zero value of their type
/// (`null`, `""`, `0`, `false`, `[]`, `{}`, which MetalLB's Go types write for "unset") are
/// dropped quietly.
pub fn prune(value: &Value, schema: &Value, path: &str, dropped: &mut Vec<Dropped>) -> Value {
    match value {
        Value::Object(object) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return value.clone();
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if properties.is_none() && additional.is_none() {
                return value.clone();
            }
            let mut out = Map::new();
            for (key, child) in object {
                let child_path = join(path, key);
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    out.insert(
                        key.clone(),
                        prune(child, child_schema, &child_path, dropped),
                    );
                } else if let Some(extra) = additional.filter(|a| **a != Value::Bool(false)) {
                    out.insert(key.clone(), prune(child, extra, &child_path, dropped));
                } else if !is_zero(child) {
                    dropped.push(Dropped {
                        path: child_path,
                        value: child.clone(),
                    });
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| prune(item, item_schema, &format!("{path}[{i}]"), dropped))
                    .collect(),
            ),
            None => value.clone(),
        },
        _ => value.clone(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.into()
    } else {
        format!("{path}.{key}")
    }
}

/// The zero value of its JSON type: what a Go struct serializes for a field never set.
pub fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keeps_known_and_map_fields_reports_unknown_non_empty_ones() {
        let schema = json!({"properties": {
            "a": {"type": "string"},
            "list": {"items": {"properties": {"x": {}}}},
            "labels": {"additionalProperties": {"type": "string"}},
        }});
        let value = json!({
            "a": "1", "gone": "v", "quiet": "", "off": false,
            "list": [{"x": 1, "y": 2}], "labels": {"k": "v"},
        });
        let mut dropped = Vec::new();
        let kept = prune(&value, &schema, "spec", &mut dropped);
        assert_eq!(
            kept,
            json!({"a": "1", "list": [{"x": 1}], "labels": {"k": "v"}})
        );
        assert_eq!(
            dropped,
            vec![
                Dropped {
                    path: "spec.gone".into(),
                    value: json!("v")
                },
                Dropped {
                    path: "spec.list[0].y".into(),
                    value: json!(2)
                },
            ]
        );
    }
}
