//! Small builders for the hand-written parts of the CRD schemas: CEL rules and bounded lists.
//!
//! Field types derive their schema with `schemars`; these functions are used through
//! `#[schemars(schema_with = ...)]` and `#[schemars(extend(...))]` where a field needs CEL
//! rules on its items, or bounds that keep the API server's CEL cost estimate within budget.

use schemars::{Schema, json_schema};
use serde_json::{Value, json};

/// One `x-kubernetes-validations` entry.
pub(crate) fn rule(rule: &str, message: &str) -> Value {
    json!({ "rule": rule, "message": message })
}

/// A rule declared on a parent object but reported against one of its fields
/// (`field_path` is relative, e.g. `.keepaliveTime`), so that the error names that field.
pub(crate) fn rule_at(rule: &str, message: &str, field_path: &str) -> Value {
    json!({ "rule": rule, "message": message, "fieldPath": field_path })
}

/// A schema from a JSON object built with `json!` (where `json_schema!` cannot take the
/// value of an expression).
pub(crate) fn object_schema(value: Value) -> Schema {
    match value {
        Value::Object(map) => Schema::from(map),
        _ => Schema::default(),
    }
}

/// A list of strings that the API server treats as a set (so it rejects duplicates and
/// server-side apply merges by value), each item checked by `item`.
pub(crate) fn string_set(max_items: usize, item: Value) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": max_items,
        "x-kubernetes-list-type": "set",
        "items": item,
    })
}

/// A string checked by an RE2 `pattern` (the API server echoes the pattern in its message,
/// so prefer [`cel_string`] where a plain-language message matters).
pub(crate) fn pattern_string(max_length: usize, pattern: &str) -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": max_length, "pattern": pattern })
}

/// A string checked by CEL rules.
pub(crate) fn cel_string(max_length: usize, rules: Vec<Value>) -> Value {
    json!({ "type": "string", "maxLength": max_length, "x-kubernetes-validations": rules })
}

/// CEL that is true when `text` (a CEL expression of type string) is a Go duration, without
/// calling `duration()`, so that other rules can guard on it and never hit a runtime error.
pub(crate) fn cel_is_duration(text: &str) -> String {
    format!(
        "{text}.matches(r'{}')",
        crate::duration::GO_DURATION_PATTERN
    )
}

/// Most names in a list of references to other objects (`ipAddressPools`, `peers`).
pub(crate) const MAX_OBJECT_REFS: usize = 64;

/// A list of names of other objects (DNS-1123 subdomains).
pub(crate) fn object_names_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    use crate::validation::{DNS1123_SUBDOMAIN_PATTERN, MAX_OBJECT_NAME_LEN};
    string_set(
        MAX_OBJECT_REFS,
        pattern_string(MAX_OBJECT_NAME_LEN, DNS1123_SUBDOMAIN_PATTERN),
    )
}

/// Most entries in `interfaces`.
pub(crate) const MAX_INTERFACES: usize = 64;

/// CEL rule for one Linux interface name (the Rust twin is
/// [`crate::validation::check_interface_name`]).
pub(crate) fn interface_name_schema() -> Value {
    use crate::validation::{INTERFACE_NAME_PATTERN, MAX_INTERFACE_NAME_LEN};
    let mut schema = cel_string(
        MAX_INTERFACE_NAME_LEN,
        vec![rule(
            &format!("self.matches(r'{INTERFACE_NAME_PATTERN}') && self != '.' && self != '..'"),
            "must be a Linux interface name: 1 to 15 printable ASCII characters without '/', ':' or spaces, not '.' or '..'",
        )],
    );
    schema["minLength"] = 1.into();
    schema
}

/// A list of Linux interface names.
pub(crate) fn interfaces_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    string_set(MAX_INTERFACES, interface_name_schema())
}
