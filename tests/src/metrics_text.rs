//! Reading one sample out of a Prometheus text page (`/metrics`).

/// The value of `sample` (a metric name with its labels exactly as printed,
/// e.g. `ferrolb_speaker_members_alive` or `x_total{reason="bad_key"}`) in
/// `page`; `None` when the page has no such sample.
pub fn sample_value(page: &str, sample: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::sample_value;

    #[test]
    fn finds_the_exact_sample_only() {
        let page = "# HELP a_total A.\na_total_more 7\na_total{reason=\"x\"} 2\na_total 3\n";
        assert_eq!(sample_value(page, "a_total"), Some(3.0));
        assert_eq!(sample_value(page, "a_total{reason=\"x\"}"), Some(2.0));
        assert_eq!(sample_value(page, "a_total{reason=\"y\"}"), None);
    }
}
