//! The converted objects as YAML: one stream, or one file per object.

use serde_json::Value;

/// First line of every output: what made it.
pub const HEADER: &str = "# Converted from MetalLB by ferrolb migrate.";

/// All objects as one multi-document YAML stream.
pub fn render(objects: &[Value]) -> String {
    let mut text = String::new();
    text.push_str(HEADER);
    text.push('\n');
    for object in objects {
        text.push_str("---\n");
        text.push_str(&yaml(object));
    }
    text
}

/// One `(file name, YAML)` per object, named `<kind>-<name>.yaml` in lower case
/// (`ipaddresspool-first-pool.yaml`, `secret-bgp-password.yaml`).
pub fn files(objects: &[Value]) -> Vec<(String, String)> {
    objects
        .iter()
        .map(|object| {
            let kind = object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("object");
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("unnamed");
            let file = format!("{}-{}.yaml", kind.to_lowercase(), name);
            (file, format!("{HEADER}\n{}", yaml(object)))
        })
        .collect()
}

fn yaml(object: &Value) -> String {
    // A JSON value always serializes to YAML; an empty string would show the bug.
    serde_yaml::to_string(object).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stream_and_file_names() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pw"}}),
            json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "a"}}),
        ];
        let text = render(&objects);
        assert_eq!(text.matches("---\n").count(), 2, "{text}");
        let back: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(back, objects);
        let names: Vec<String> = files(&objects).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["secret-pw.yaml", "ipaddresspool-a.yaml"]);
    }
}
