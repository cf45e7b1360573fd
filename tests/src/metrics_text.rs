//! Reading one sample out of a Prometheus text page (`/metrics`).

/// The value of `sample` (a metric name with its labels exactly as printed,
/// e.g. `ferrolb_speaker_members_alive` or `x_total{reason="bad_key"}`) in
/// `page`; `None` when the page has no such sample.
pub fn sample_value(page: &str, sample: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The sum of every sample in `page` whose line starts with `prefix` (a
/// metric name, maybe with some of its labels, e.g. `x_total{family="ipv4"`):
/// all of a counter's label combinations at once; 0 when there is none.
pub fn sum_of(page: &str, prefix: &str) -> f64 {
    page.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{sample_value, sum_of};

    #[test]
    fn sums_every_label_combination_and_skips_comments() {
        let page = "# HELP c_total C.\nc_total{o=\"a\"} 2\nc_total{o=\"b\"} 3\nd_total 9\n";
        assert_eq!(sum_of(page, "c_total"), 5.0);
        assert_eq!(sum_of(page, "c_total{o=\"b\""), 3.0);
        assert_eq!(sum_of(page, "e_total"), 0.0);
    }

    #[test]
    fn finds_the_exact_sample_only() {
        let page = "# HELP a_total A.\na_total_more 7\na_total{reason=\"x\"} 2\na_total 3\n";
        assert_eq!(sample_value(page, "a_total"), Some(3.0));
        assert_eq!(sample_value(page, "a_total{reason=\"x\"}"), Some(2.0));
        assert_eq!(sample_value(page, "a_total{reason=\"y\"}"), None);
    }
}
