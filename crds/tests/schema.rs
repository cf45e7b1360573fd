//! Properties of the generated CRDs that the API server or MetalLB compatibility rely on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn crd(plural: &str) -> CustomResourceDefinition {
    ferrolb_crds::crds()
        .into_iter()
        .find(|c| c.spec.names.plural == plural)
        .unwrap_or_else(|| panic!("no CRD {plural}"))
}

fn schema(plural: &str) -> Value {
    let crd = crd(plural);
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema).expect("the schema serializes")
}

fn walk(value: &Value, visit: &mut impl FnMut(&serde_json::Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            visit(map);
            map.values().for_each(|v| walk(v, visit));
        }
        Value::Array(list) => list.iter().for_each(|v| walk(v, visit)),
        _ => {}
    }
}

const PLURALS: [&str; 5] = [
    "ipaddresspools",
    "l2advertisements",
    "bgpadvertisements",
    "bgppeers",
    "communities",
];

#[test]
fn group_version_scope() {
    for plural in PLURALS {
        let crd = crd(plural);
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{plural}.ferrolb.io").as_str())
        );
        assert_eq!(crd.spec.group, "ferrolb.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.versions.len(), 1);
        assert_eq!(crd.spec.versions[0].name, "v1beta1");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["ferrolb".to_string()][..])
        );
    }
}

#[test]
fn no_nullable_and_only_known_integer_formats() {
    for plural in PLURALS {
        walk(&schema(plural), &mut |map| {
            assert!(
                !map.contains_key("nullable"),
                "{plural}: nullable in {map:?}"
            );
            if map.get("type") == Some(&Value::from("integer")) {
                let format = map.get("format").and_then(Value::as_str);
                assert!(
                    matches!(format, Some("int32" | "int64")),
                    "{plural}: {format:?}"
                );
            }
            if let Some(Value::Array(values)) = map.get("enum") {
                assert!(
                    values.iter().all(|v| !v.is_null()),
                    "{plural}: null in enum"
                );
            }
        });
    }
}

#[test]
fn spec_is_optional_exactly_where_metallb_has_no_required_field() {
    for (plural, spec_required) in [
        ("ipaddresspools", true),
        ("l2advertisements", false),
        ("bgpadvertisements", false),
        ("bgppeers", true),
        ("communities", false),
    ] {
        let schema = schema(plural);
        let required = schema["required"]
            .as_array()
            .is_some_and(|r| r.contains(&Value::from("spec")));
        assert_eq!(required, spec_required, "{plural}");
        if !spec_required {
            assert_eq!(
                schema["properties"]["spec"]["default"],
                serde_json::json!({}),
                "{plural}"
            );
        }
    }
}

#[test]
fn metallb_defaults() {
    let pool = schema("ipaddresspools");
    assert_eq!(
        pool["properties"]["spec"]["properties"]["autoAssign"]["default"],
        true
    );
    assert_eq!(
        pool["properties"]["spec"]["properties"]["avoidBuggyIPs"]["default"],
        false
    );
    let adv = schema("bgpadvertisements");
    assert_eq!(
        adv["properties"]["spec"]["properties"]["aggregationLength"]["default"],
        32
    );
    assert_eq!(
        adv["properties"]["spec"]["properties"]["aggregationLengthV6"]["default"],
        128
    );
    let peer = schema("bgppeers");
    assert_eq!(
        peer["properties"]["spec"]["properties"]["peerPort"]["default"],
        179
    );
    assert_eq!(
        peer["properties"]["spec"]["required"],
        serde_json::json!(["myASN", "peerAddress"])
    );
}

#[test]
fn pool_printer_columns_and_short_name() {
    let crd = crd("ipaddresspools");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["ippool".to_string()][..])
    );
    let columns: Vec<(String, String)> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect();
    let expected = [
        ("Addresses", ".spec.addresses"),
        ("Auto Assign", ".spec.autoAssign"),
        ("Assigned v4", ".status.assignedIPv4"),
        ("Available v4", ".status.availableIPv4"),
        ("Assigned v6", ".status.assignedIPv6"),
        ("Available v6", ".status.availableIPv6"),
        ("In Use", ".status.inUse"),
        ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
        ("Age", ".metadata.creationTimestamp"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, p)| (n.to_string(), p.to_string()))
        .collect();
    assert_eq!(columns, expected);
    assert!(
        crd.spec.versions[0]
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    );
}

#[test]
fn every_string_and_list_under_a_cel_rule_is_bounded() {
    // The API server rejects CRDs whose CEL cost it cannot bound.
    for plural in PLURALS {
        walk(&schema(plural), &mut |map| {
            if !map.contains_key("x-kubernetes-validations") {
                return;
            }
            match map.get("type").and_then(Value::as_str) {
                Some("string") => assert!(map.contains_key("maxLength"), "{plural}: {map:?}"),
                Some("array") => assert!(map.contains_key("maxItems"), "{plural}: {map:?}"),
                _ => {}
            }
        });
    }
}
