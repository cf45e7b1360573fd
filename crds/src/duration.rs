//! Go-style durations (`90s`, `1m30s`, `1.5h`), as in MetalLB's `metav1.Duration` fields.
//!
//! The API server checks these fields with CEL's `duration()`, which is Go's
//! `time.ParseDuration`. This parser accepts the same language, minus the sign: a negative
//! timer is never valid for us, and a leading `+` is so rare that rejecting it keeps the
//! schema's regular expression ([`GO_DURATION_PATTERN`]) and this parser simple and equal.

use std::time::Duration;

/// An RE2 pattern (used in CEL `matches()`) for exactly the strings [`parse_go_duration`]
/// accepts, apart from overflow: `0`, or one or more `<number><unit>` with a decimal number
/// (`1`, `1.5`, `.5`, `5.`) and a unit among `ns us µs μs ms s m h`.
pub const GO_DURATION_PATTERN: &str =
    r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";

/// Go's limit: a `time.Duration` is an `int64` count of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a sequence of numbers each followed by a unit.
    #[error("{0:?} is not a duration: use a number and a unit, e.g. 90s, 1m30s, 1.5h")]
    Syntax(String),
    /// A number followed by a unit Go does not know; holds the input and the unit.
    #[error("{0:?} is not a duration: unknown unit {1:?} (use ns, us, ms, s, m or h)")]
    Unit(String, String),
    /// Starts with `+` or `-`: the API's durations are lengths, never negative.
    #[error("{0:?} must not have a sign")]
    Signed(String),
    /// Longer than Go's `time.Duration` can hold (`i64::MAX` nanoseconds, about 292 years).
    #[error("{0:?} is too long a duration (more than about 292 years)")]
    Overflow(String),
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a non-negative Go duration string.
///
/// Fractions are computed exactly and truncated to whole nanoseconds; Go goes through a
/// `float64` there, so the two may differ by a nanosecond on inputs with many fraction
/// digits, which no rule of ours can observe (they compare whole seconds).
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_string());
    if text.starts_with(['+', '-']) {
        return Err(DurationError::Signed(text.to_string()));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let (whole, after_whole) = split_digits(rest);
        let (fraction, after_number) = match after_whole.strip_prefix('.') {
            Some(after_dot) => {
                let (fraction, after_fraction) = split_digits(after_dot);
                (Some(fraction), after_fraction)
            }
            None => (None, after_whole),
        };
        if whole.is_empty() && fraction.is_none_or(str::is_empty) {
            return Err(syntax());
        }
        let unit_len = after_number
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_number.len());
        if unit_len == 0 {
            return Err(syntax());
        }
        let (unit, after_unit) = after_number.split_at(unit_len);
        let unit_ns = unit_nanos(unit)
            .ok_or_else(|| DurationError::Unit(text.to_string(), unit.to_string()))?;

        let overflow = || DurationError::Overflow(text.to_string());
        let mut value = whole_value(whole)
            .ok_or_else(overflow)?
            .checked_mul(unit_ns)
            .ok_or_else(overflow)?;
        if let Some(fraction) = fraction {
            let (numerator, scale) = fraction_value(fraction);
            value += numerator * unit_ns / scale;
        }
        total = total
            .checked_add(value)
            .filter(|t| *t <= MAX_NANOS)
            .ok_or_else(overflow)?;
        rest = after_unit;
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow(text.to_string()))?;
    Ok(Duration::from_nanos(nanos))
}

fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// The integer part, `None` beyond Go's range (so that huge inputs cannot overflow here).
fn whole_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |acc, d| {
        let next = acc * 10 + u128::from(d - b'0');
        (next <= MAX_NANOS).then_some(next)
    })
}

/// The fraction digits as `numerator / scale`. Like Go, digits beyond what fits in an
/// `int64` numerator are ignored, so `scale` stays below 10^19.
fn fraction_value(digits: &str) -> (u128, u128) {
    let mut numerator: u128 = 0;
    let mut scale: u128 = 1;
    for d in digits.bytes() {
        let next = numerator * 10 + u128::from(d - b'0');
        if next > MAX_NANOS {
            break;
        }
        numerator = next;
        scale *= 10;
    }
    (numerator, scale)
}

/// Formats a duration the way Go's `Duration.String()` would for whole seconds
/// (`1m30s`, `90s` becomes `1m30s`, `0s`), and falls back to fractional seconds otherwise.
/// Used in messages, so that they echo values in the form users write.
pub fn format_go_duration(duration: Duration) -> String {
    if duration.subsec_nanos() != 0 {
        return format!("{}s", duration.as_secs_f64());
    }
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        parse_go_duration(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    #[test]
    fn parses_go_forms() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("5.s"), Duration::from_secs(5));
        assert_eq!(ok("1s1s"), Duration::from_secs(2));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("3us"), Duration::from_micros(3));
        assert_eq!(ok("3\u{b5}s"), Duration::from_micros(3));
        assert_eq!(ok("3\u{3bc}s"), Duration::from_micros(3));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("1.0000000001s"), Duration::from_secs(1));
        assert_eq!(
            ok("2562047h47m16.854775807s"),
            Duration::from_nanos(i64::MAX as u64)
        );
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "s", "90", "00", "1m30", ".s", "1.2.3s", "1sm", "1d", "1 s", " 1s", "1S", "--1s",
        ] {
            assert!(
                parse_go_duration(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(matches!(parse_go_duration("1x"), Err(DurationError::Unit(_, u)) if u == "x"));
        assert!(matches!(
            parse_go_duration("-1s"),
            Err(DurationError::Signed(_))
        ));
        assert!(matches!(
            parse_go_duration("+1s"),
            Err(DurationError::Signed(_))
        ));
        assert!(matches!(
            parse_go_duration("2562047h47m16.854775808s"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_go_duration("99999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(3)), "3s");
        assert_eq!(format_go_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
