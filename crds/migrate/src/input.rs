//! YAML text in, objects out: multi-document streams, `kind: List`, and MetalLB's legacy
//! ConfigMap (whole, or only its `config` data as `configmaptocrs --only-data` reads it).

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::MigrateError;

/// Where an input object comes from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// A file name, `-` for stdin, or `cluster` for the live cluster.
    pub source: String,
    /// The 1-based document in a multi-document YAML file.
    pub document: Option<usize>,
    /// The 0-based item of a `kind: List` document.
    pub item: Option<usize>,
}

impl Origin {
    /// An origin without document numbers (e.g. an object read from the cluster).
    pub fn source(source: impl Into<String>) -> Origin {
        Origin {
            source: source.into(),
            document: None,
            item: None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(document) = self.document {
            write!(f, ", document {document}")?;
        }
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// One input: a Kubernetes object, or a legacy MetalLB configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// Any Kubernetes object (`apiVersion`, `kind`, `metadata`).
    Object(Value),
    /// MetalLB's legacy configuration (the `config` key of its ConfigMap), parsed.
    Legacy {
        /// The ConfigMap's namespace, when known.
        namespace: Option<String>,
        /// The ConfigMap's name (`config` for bare data).
        name: String,
        /// The configuration: `peers`, `address-pools`, `bgp-communities`, `bfd-profiles`.
        config: Value,
    },
}

/// An input and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct InputObject {
    /// Where it came from.
    pub origin: Origin,
    /// What it is.
    pub document: Document,
}

/// The top-level keys of the legacy configuration.
pub const LEGACY_KEYS: [&str; 4] = ["peers", "address-pools", "bgp-communities", "bfd-profiles"];

/// Splits YAML text (one or more documents, `---` separated) into inputs. Empty documents
/// are skipped; `kind: List` documents give their items. `source` names the text in errors.
pub fn parse_yaml(source: &str, text: &str) -> Result<Vec<InputObject>, MigrateError> {
    let mut inputs = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            source: source.into(),
            document: Some(index + 1),
            item: None,
        };
        let value = Value::deserialize(document).map_err(|e| MigrateError::Yaml {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        match value {
            Value::Null => {}
            Value::Object(map) => inputs.extend(document_inputs(origin, map)?),
            _ => {
                return Err(MigrateError::Malformed {
                    origin,
                    message: "a document must be a mapping (a Kubernetes object)".into(),
                });
            }
        }
    }
    Ok(inputs)
}

fn document_inputs(
    origin: Origin,
    map: Map<String, Value>,
) -> Result<Vec<InputObject>, MigrateError> {
    let has_type = map.contains_key("apiVersion") || map.contains_key("kind");
    if !has_type {
        if map.keys().any(|key| LEGACY_KEYS.contains(&key.as_str())) {
            return Ok(vec![InputObject {
                origin,
                document: Document::Legacy {
                    namespace: None,
                    name: "config".into(),
                    config: Value::Object(map),
                },
            }]);
        }
        return Err(MigrateError::Malformed {
            origin,
            message: "neither a Kubernetes object (no apiVersion and kind) nor a legacy MetalLB \
                      configuration (peers, address-pools, bgp-communities, bfd-profiles)"
                .into(),
        });
    }
    let is_list = map
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"))
        && map.get("items").is_some();
    if !is_list {
        return Ok(vec![classify(origin, Value::Object(map))?]);
    }
    let Some(Value::Array(items)) = map.get("items") else {
        return Err(MigrateError::Malformed {
            origin,
            message: "`items` of a List must be a sequence".into(),
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(item, value)| {
            let origin = Origin {
                item: Some(item),
                ..origin.clone()
            };
            if !value.is_object() {
                return Err(MigrateError::Malformed {
                    origin,
                    message: "a List item must be a mapping (a Kubernetes object)".into(),
                });
            }
            classify(origin, value.clone())
        })
        .collect()
}

/// One Kubernetes object as an input: checks `apiVersion`, `kind` and `metadata.name`, and
/// reads MetalLB's legacy ConfigMap (a v1 ConfigMap with a `config` key) as its configuration.
pub fn classify(origin: Origin, value: Value) -> Result<InputObject, MigrateError> {
    let malformed = |message: &str| MigrateError::Malformed {
        origin: origin.clone(),
        message: message.into(),
    };
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return Err(malformed("apiVersion and kind must be strings"));
    };
    let name = value.pointer("/metadata/name").and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        return Err(malformed(&format!("{kind} without metadata.name")));
    }
    if api_version == "v1"
        && kind == "ConfigMap"
        && let Some(config) = value.pointer("/data/config")
    {
        let text = config
            .as_str()
            .ok_or_else(|| malformed("ConfigMap data.config must be a string"))?;
        let config: Value = serde_yaml::from_str(text).map_err(|e| MigrateError::Legacy {
            origin: origin.clone(),
            message: format!("data.config is not valid YAML: {e}"),
        })?;
        let namespace = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(String::from);
        return Ok(InputObject {
            origin: origin.clone(),
            document: Document::Legacy {
                namespace,
                name: name.unwrap_or("config").into(),
                config,
            },
        });
    }
    Ok(InputObject {
        origin,
        document: Document::Object(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_lists_and_empty_documents() {
        let text = "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\n---\n\
                    ---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: metallb.io/v1beta1, kind: L2Advertisement, metadata: {name: b}}\n\
                    - {apiVersion: metallb.io/v1beta1, kind: L2Advertisement, metadata: {name: c}}\n";
        let inputs = parse_yaml("f.yaml", text).unwrap();
        assert_eq!(inputs.len(), 3);
        assert_eq!(inputs[2].origin.to_string(), "f.yaml, document 3, item 1");
    }

    #[test]
    fn legacy_configmap_and_bare_data() {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: mlb}\n\
                  data:\n  config: |\n    address-pools: []\n";
        let inputs = parse_yaml("cm.yaml", cm).unwrap();
        assert!(matches!(
            &inputs[0].document,
            Document::Legacy { namespace: Some(ns), .. } if ns == "mlb"
        ));
        let data = parse_yaml("d.yaml", "peers: []\n").unwrap();
        assert!(matches!(
            &data[0].document,
            Document::Legacy {
                namespace: None,
                ..
            }
        ));
    }

    #[test]
    fn malformed_input_names_file_and_document() {
        let cases = [
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n- x\n",
                "bad.yaml, document 2: a document must be a mapping",
            ),
            ("kind: [\n", "bad.yaml, document 1: not valid YAML"),
            (
                "foo: bar\n",
                "bad.yaml, document 1: neither a Kubernetes object",
            ),
            (
                "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n",
                "IPAddressPool without metadata.name",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {config: \"peers: [\"}\n",
                "legacy MetalLB configuration: data.config is not valid YAML",
            ),
            (
                "apiVersion: v1\nkind: List\nitems: [1]\n",
                "item 0: a List item must be a mapping",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_yaml("bad.yaml", text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
