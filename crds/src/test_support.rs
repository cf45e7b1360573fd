//! Builders and readers shared by the unit tests of every kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::labels::Labels;
use crate::validation::FieldError;

/// The errors of a `validate()` as the messages users see; none when it passed.
pub(crate) fn messages(result: Result<(), Vec<FieldError>>) -> Vec<String> {
    result
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// A selector with only `matchLabels`.
pub(crate) fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(pairs)),
        match_expressions: None,
    }
}
