//! The side-by-side table of `cargo xtask bench compare`: medians over the runs, the
//! ratio of the two projects, which one is better, and the assignment check. Pure.

use std::collections::{BTreeMap, BTreeSet};

/// One figure of both projects, over every run.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub ferrolb: Vec<f64>,
    pub metallb: Vec<f64>,
}

/// The median of `values` (the mean of the middle two for an even count), NaN when empty
/// or when any value is NaN (a figure that could not be read).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match (sorted.get(mid.wrapping_sub(1)), sorted.get(mid)) {
        (Some(a), Some(b)) if sorted.len().is_multiple_of(2) => (a + b) / 2.0,
        (_, Some(b)) => *b,
        _ => f64::NAN,
    }
}

/// MetalLB's median over FerroLB's, and which project is better for a figure where lower
/// is better: "3.20× (FerroLB better)", "0.50× (MetalLB better)", "1.00× (equal)" within 5 %.
/// Both zero (no duplicates on either side) is "equal"; a zero on one side has no ratio.
pub fn ratio(ferrolb: f64, metallb: f64) -> String {
    if ferrolb.is_nan() || metallb.is_nan() {
        return "–".into();
    }
    if ferrolb == 0.0 && metallb == 0.0 {
        return "equal".into();
    }
    let better = if metallb > ferrolb * 1.05 {
        "FerroLB better"
    } else if ferrolb > metallb * 1.05 {
        "MetalLB better"
    } else {
        "equal"
    };
    if ferrolb == 0.0 {
        return better.into();
    }
    format!("{:.2}× ({better})", metallb / ferrolb)
}

fn value(v: f64, unit: &str) -> String {
    if v.is_nan() {
        "–".into()
    } else if unit.is_empty() {
        format!("{v:.0}")
    } else {
        format!("{v:.2} {unit}")
    }
}

/// Values listed one by one in the last column; more are summarised as their range.
const MAX_LISTED: usize = 5;

/// A markdown table: figure, FerroLB's median, MetalLB's median, the ratio, and every run
/// (or, beyond [`MAX_LISTED`], their count and range).
pub fn render(figures: &[Figure]) -> String {
    let mut out = String::from(
        "| figure | FerroLB (median) | MetalLB (median) | MetalLB / FerroLB | runs: FerroLB; MetalLB |\n|---|---|---|---|---|\n",
    );
    for f in figures {
        let (a, b) = (median(&f.ferrolb), median(&f.metallb));
        let runs = |v: &[f64]| {
            if v.len() > MAX_LISTED {
                let (min, max) = v
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                        (lo.min(*x), hi.max(*x))
                    });
                return format!(
                    "{} values, {} to {}",
                    v.len(),
                    value(min, f.unit),
                    value(max, f.unit)
                );
            }
            v.iter()
                .map(|x| value(*x, f.unit))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {}; {} |\n",
            f.name,
            value(a, f.unit),
            value(b, f.unit),
            ratio(a, b),
            runs(&f.ferrolb),
            runs(&f.metallb),
        ));
    }
    out
}

/// Faults of an assignment, by Service: IPs shown by more than one Service, and Services
/// showing no IP or more than one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub duplicates: BTreeSet<String>,
    pub missing: BTreeSet<String>,
}

/// Checks that every Service shows exactly one IP, and no two the same.
pub fn faults(ips: &BTreeMap<String, Vec<String>>) -> Faults {
    let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Faults::default();
    for (service, shown) in ips {
        if shown.len() != 1 {
            out.missing.insert(service.clone());
        }
        for ip in shown {
            *owners.entry(ip).or_default() += 1;
        }
    }
    out.duplicates = owners
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(ip, _)| ip.to_string())
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
        assert!(median(&[1.0, f64::NAN]).is_nan());
    }

    #[test]
    fn ratio_names_the_better_project() {
        assert_eq!(ratio(2.0, 6.4), "3.20× (FerroLB better)");
        assert_eq!(ratio(4.0, 2.0), "0.50× (MetalLB better)");
        assert_eq!(ratio(1.0, 1.02), "1.02× (equal)");
        assert_eq!(ratio(0.0, 0.0), "equal");
        assert_eq!(ratio(0.0, 3.0), "FerroLB better");
        assert_eq!(ratio(f64::NAN, 1.0), "–");
    }

    #[test]
    fn render_shows_medians_ratio_and_runs() {
        let table = render(&[Figure {
            name: "time".into(),
            unit: "s",
            ferrolb: vec![1.0, 3.0, 2.0],
            metallb: vec![4.0, 4.0, 5.0],
        }]);
        assert!(
            table.contains("| time | 2.00 s | 4.00 s | 2.00× (FerroLB better) | 1.00 s, 3.00 s, 2.00 s; 4.00 s, 4.00 s, 5.00 s |"),
            "{table}"
        );
        let many = render(&[Figure {
            name: "kill".into(),
            unit: "ms",
            ferrolb: vec![5.0, 1.0, 2.0, 3.0, 4.0, 6.0],
            metallb: vec![7.0],
        }]);
        assert!(
            many.contains("| 6 values, 1.00 ms to 6.00 ms; 7.00 ms |"),
            "{many}"
        );
    }

    #[test]
    fn faults_finds_shared_and_missing_ips() {
        let ips: BTreeMap<String, Vec<String>> = [
            ("a", vec!["2001:db8::1"]),
            ("b", vec!["2001:db8::2"]),
            ("c", vec!["2001:db8::1"]),
            ("d", vec![]),
            ("e", vec!["2001:db8::3", "2001:db8::4"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        let f = faults(&ips);
        assert_eq!(f.duplicates, BTreeSet::from(["2001:db8::1".to_string()]));
        assert_eq!(
            f.missing,
            BTreeSet::from(["d".to_string(), "e".to_string()])
        );
        let clean: BTreeMap<String, Vec<String>> =
            [("a".to_string(), vec!["2001:db8::1".to_string()])].into();
        assert_eq!(faults(&clean), Faults::default());
    }
}
