//! Label selector matching (`matchLabels` and `matchExpressions`), as the
//! apiserver defines it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// An object's labels: key to value, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// Whether `labels` satisfy `selector`. An empty selector matches everything;
/// an unknown operator matches nothing (the CRD schema rejects those anyway).
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_ok = selector
        .match_expressions
        .iter()
        .flatten()
        .all(|requirement| {
            let actual = labels.get(&requirement.key);
            let values = requirement.values.as_deref().unwrap_or_default();
            match requirement.operator.as_str() {
                "In" => actual.is_some_and(|v| values.contains(v)),
                "NotIn" => actual.is_none_or(|v| !values.contains(v)),
                "Exists" => actual.is_some(),
                "DoesNotExist" => actual.is_none(),
                _ => false,
            }
        });
    labels_ok && expressions_ok
}

/// Whether any selector of a non-empty list matches; an empty list matches all.
pub fn any_selector_matches(selectors: &[LabelSelector], labels: &Labels) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| selector_matches(s, labels))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;
    use crate::test_support::labels;

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let mut s = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        assert!(selector_matches(&s, &l));
        s.match_expressions = Some(vec![expr("tier", "In", &["front", "edge"])]);
        assert!(selector_matches(&s, &l));
        s.match_expressions = Some(vec![expr("tier", "NotIn", &["front"])]);
        assert!(!selector_matches(&s, &l));
        s.match_expressions = Some(vec![
            expr("zone", "NotIn", &["a"]),
            expr("zone", "DoesNotExist", &[]),
        ]);
        assert!(selector_matches(&s, &l));
        s.match_expressions = Some(vec![expr("zone", "Exists", &[])]);
        assert!(!selector_matches(&s, &l));
        s.match_expressions = Some(vec![expr("app", "Bogus", &[])]);
        assert!(!selector_matches(&s, &l));
        assert!(selector_matches(&LabelSelector::default(), &Labels::new()));
        assert!(any_selector_matches(&[], &l));
    }
}
