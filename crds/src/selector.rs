//! Label selectors (`nodeSelectors`, `serviceSelectors`, …): their schema with bounds and CEL
//! rules, and the same checks in Rust.
//!
//! The upstream `LabelSelector` schema accepts any operator and any key; a bad selector would
//! then only fail later, in the controller. Checking here moves the error to `kubectl apply`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::schema::rule;
use crate::validation::{Errors, Problem, check_len, is_label_key, is_label_name, item};

/// Most selectors in one list field.
pub const MAX_SELECTORS: usize = 16;
/// Most `matchLabels` entries in one selector.
pub const MAX_MATCH_LABELS: usize = 64;
/// Most `matchExpressions` in one selector.
pub const MAX_MATCH_EXPRESSIONS: usize = 32;
/// Most `values` in one expression.
pub const MAX_VALUES: usize = 64;
/// A label key: a 253-character prefix, '/', and a 63-character name.
const MAX_LABEL_KEY_LEN: usize = 317;
const MAX_LABEL_VALUE_LEN: usize = 63;

const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";

const KEY_MESSAGE: &str = "must be a label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

fn cel_is_label_key(key: &str) -> String {
    format!("{key}.matches(r'{LABEL_KEY_PATTERN}') && {key}.indexOf('/') <= 253")
}

/// Schema of a `Vec<LabelSelector>` field: the upstream selector schema, bounded and with
/// rules on operators, keys and values.
pub(crate) fn selectors_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut selector = generator.subschema_for::<LabelSelector>();
    if let Some(properties) = selector
        .get_mut("properties")
        .and_then(Value::as_object_mut)
    {
        if let Some(expressions) = properties
            .get_mut("matchExpressions")
            .and_then(Value::as_object_mut)
        {
            expressions.insert("maxItems".into(), json!(MAX_MATCH_EXPRESSIONS));
            if let Some(requirement) = expressions.get_mut("items").and_then(Value::as_object_mut) {
                constrain_requirement(requirement);
            }
        }
        if let Some(labels) = properties
            .get_mut("matchLabels")
            .and_then(Value::as_object_mut)
        {
            labels.insert("maxProperties".into(), json!(MAX_MATCH_LABELS));
            labels.insert(
                "x-kubernetes-validations".into(),
                json!([rule(
                    &format!("self.all(k, {})", cel_is_label_key("k")),
                    &format!("every key {KEY_MESSAGE}")
                )]),
            );
            labels.insert("additionalProperties".into(), label_value_schema());
        }
    }
    json_schema!({
        "type": "array",
        "maxItems": MAX_SELECTORS,
        "items": selector,
    })
}

/// A `pattern` rather than CEL: values are many (selectors × expressions × values) and CEL
/// would blow the API server's cost budget, while patterns cost nothing there.
fn label_value_schema() -> Value {
    json!({ "type": "string", "maxLength": MAX_LABEL_VALUE_LEN, "pattern": LABEL_VALUE_PATTERN })
}

fn constrain_requirement(requirement: &mut serde_json::Map<String, Value>) {
    let Some(properties) = requirement
        .get_mut("properties")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(key) = properties.get_mut("key").and_then(Value::as_object_mut) {
        key.insert("maxLength".into(), json!(MAX_LABEL_KEY_LEN));
        key.insert("pattern".into(), json!(LABEL_KEY_PATTERN));
        key.insert(
            "x-kubernetes-validations".into(),
            json!([rule(
                "self.indexOf('/') <= 253",
                "the prefix of a label key (before '/') must be at most 253 characters"
            )]),
        );
    }
    if let Some(operator) = properties
        .get_mut("operator")
        .and_then(Value::as_object_mut)
    {
        operator.insert("enum".into(), json!(OPERATORS));
    }
    if let Some(values) = properties.get_mut("values").and_then(Value::as_object_mut) {
        values.insert("maxItems".into(), json!(MAX_VALUES));
        values.insert("items".into(), label_value_schema());
    }
    requirement.insert(
        "x-kubernetes-validations".into(),
        json!([{
            "rule": "!(self.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist']) || (self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
            "message": "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
            "fieldPath": ".values",
        }]),
    );
}

/// The Rust twin of the schema above, for one selector at `field`.
pub(crate) fn check_label_selector(errors: &mut Errors, field: &str, selector: &LabelSelector) {
    if let Some(labels) = &selector.match_labels {
        let labels_field = format!("{field}.matchLabels");
        if labels.len() > MAX_MATCH_LABELS {
            errors.push(
                &labels_field,
                Problem::TooMany {
                    len: labels.len(),
                    max: MAX_MATCH_LABELS,
                },
            );
        }
        for (key, value) in labels {
            if !is_label_key(key) {
                errors.push(&labels_field, Problem::LabelKey(key.clone()));
            }
            if !is_label_name(value, true) {
                errors.push(
                    format!("{labels_field}.{key}"),
                    Problem::LabelValue(value.clone()),
                );
            }
        }
    }
    let expressions_field = format!("{field}.matchExpressions");
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    check_len(
        errors,
        &expressions_field,
        expressions,
        MAX_MATCH_EXPRESSIONS,
    );
    for (i, requirement) in expressions.iter().enumerate() {
        let at = item(&expressions_field, i);
        if !is_label_key(&requirement.key) {
            errors.push(
                format!("{at}.key"),
                Problem::LabelKey(requirement.key.clone()),
            );
        }
        let values = requirement.values.as_deref().unwrap_or_default();
        check_len(errors, &format!("{at}.values"), values, MAX_VALUES);
        for (j, value) in values.iter().enumerate() {
            if !is_label_name(value, true) {
                errors.push(
                    item(&format!("{at}.values"), j),
                    Problem::LabelValue(value.clone()),
                );
            }
        }
        let operator = requirement.operator.as_str();
        if !OPERATORS.contains(&operator) {
            errors.push(
                format!("{at}.operator"),
                Problem::SelectorOperator(requirement.operator.clone()),
            );
        } else if matches!(operator, "In" | "NotIn") == values.is_empty() {
            errors.push(format!("{at}.values"), Problem::SelectorValues);
        }
    }
}

/// Checks every selector of a list field.
pub(crate) fn check_label_selectors(errors: &mut Errors, field: &str, selectors: &[LabelSelector]) {
    check_len(errors, field, selectors, MAX_SELECTORS);
    for (i, selector) in selectors.iter().enumerate() {
        check_label_selector(errors, &item(field, i), selector);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::messages;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn check(selector: LabelSelector) -> Vec<String> {
        let mut errors = Errors::default();
        check_label_selector(&mut errors, "spec.nodeSelectors[0]", &selector);
        messages(errors.finish())
    }

    #[test]
    fn accepts_valid_selectors() {
        let selector = LabelSelector {
            match_labels: Some(
                [("kubernetes.io/hostname".to_string(), "node-1".to_string())].into(),
            ),
            match_expressions: Some(vec![
                requirement("zone", "In", &["a", "b"]),
                requirement("role", "NotIn", &["edge"]),
                requirement("gpu", "Exists", &[]),
                requirement("spot", "DoesNotExist", &[]),
            ]),
        };
        assert_eq!(check(selector), Vec::<String>::new());
        assert_eq!(check(LabelSelector::default()), Vec::<String>::new());
    }

    #[test]
    fn rejects_bad_operators_values_and_keys() {
        let errors = check(LabelSelector {
            match_labels: Some([("bad key".to_string(), "bad value!".to_string())].into()),
            match_expressions: Some(vec![
                requirement("zone", "Equals", &["a"]),
                requirement("zone", "In", &[]),
                requirement("zone", "Exists", &["a"]),
                requirement("-zone", "Exists", &[]),
            ]),
        });
        assert_eq!(
            errors,
            vec![
                "spec.nodeSelectors[0].matchLabels: invalid label key \"bad key\": an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
                "spec.nodeSelectors[0].matchLabels.bad key: invalid label value \"bad value!\": at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
                "spec.nodeSelectors[0].matchExpressions[0].operator: invalid operator \"Equals\": use In, NotIn, Exists or DoesNotExist",
                "spec.nodeSelectors[0].matchExpressions[1].values: values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                "spec.nodeSelectors[0].matchExpressions[2].values: values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                "spec.nodeSelectors[0].matchExpressions[3].key: invalid label key \"-zone\": an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ]
        );
    }
}
