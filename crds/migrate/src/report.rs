//! What does not carry over, one line per field and object.

use std::fmt;

use serde_json::Value;

/// `Kind namespace/name` of an object, as loss lines name it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// The kind, e.g. `BGPPeer`.
    pub kind: String,
    /// The namespace (empty when the input had none).
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// `kind namespace/name`.
    pub fn new(kind: &str, namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Something of the MetalLB configuration that FerroLB does not get, or an action the
/// operator must take for the converted configuration to work.
///
/// Displays as `BGPPeer metallb-system/p1: spec.bfdProfile "fast": BFD is not supported`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The MetalLB object (input side) it concerns.
    pub object: ObjectRef,
    /// JSON path of the field, e.g. `spec.bfdProfile`; empty for the whole object.
    pub field: String,
    /// The value, as compact JSON (`"fast"`, `65000`); empty for the whole object.
    pub value: String,
    /// Why it cannot carry over, or what to do.
    pub reason: String,
}

impl Loss {
    /// A field of `object` with `value` that cannot carry over.
    pub fn field(object: &ObjectRef, field: &str, value: &Value, reason: &str) -> Loss {
        Loss {
            object: object.clone(),
            field: field.into(),
            value: compact(value),
            reason: reason.into(),
        }
    }

    /// The whole `object`.
    pub fn object(object: &ObjectRef, reason: &str) -> Loss {
        Loss {
            object: object.clone(),
            field: String::new(),
            value: String::new(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.object)?;
        if !self.field.is_empty() {
            write!(f, "{} ", self.field)?;
            if !self.value.is_empty() {
                write!(f, "{}: ", self.value)?;
            }
        }
        f.write_str(&self.reason)
    }
}

/// Compact JSON of a value, at most 120 characters (longer ones end in `…`).
fn compact(value: &Value) -> String {
    const MAX: usize = 120;
    let text = value.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let mut short: String = text.chars().take(MAX).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lines_name_object_field_value_and_reason() {
        let peer = ObjectRef::new("BGPPeer", "metallb-system", "p1");
        let loss = Loss::field(
            &peer,
            "spec.bfdProfile",
            &json!("fast"),
            "BFD is not supported",
        );
        assert_eq!(
            loss.to_string(),
            r#"BGPPeer metallb-system/p1: spec.bfdProfile "fast": BFD is not supported"#
        );
        let whole = Loss::object(&ObjectRef::new("BFDProfile", "", "b"), "not converted");
        assert_eq!(whole.to_string(), "BFDProfile b: not converted");
        let long = Loss::field(&peer, "spec.x", &json!("a".repeat(500)), "r");
        assert!(long.to_string().len() < 200, "{long}");
    }
}
