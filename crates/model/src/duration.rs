//! Go-style durations (`90s`, `1m30s`, `1.5h`, `300ms`), as Calico writes `metav1.Duration`
//! fields and duration environment variables.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration ({reason}; expected e.g. 90s, 1m30s, 500ms)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a non-negative Go duration. `0` alone is allowed without a unit, as in Go.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let error = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let mut rest = input.trim();
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest.starts_with('-') {
        return Err(error("negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(error("empty"));
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..digits_end];
        rest = &rest[digits_end..];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(error("missing number"));
        }
        if fraction.contains('.') {
            return Err(error("malformed number"));
        }
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| {
                error(if unit.is_empty() {
                    "missing unit"
                } else {
                    "unknown unit"
                })
            })?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| error("number too large"))?
        };
        let mut fraction_nanos: u128 = 0;
        let mut divisor: u128 = 1;
        for digit in fraction.bytes().take(18) {
            fraction_nanos = fraction_nanos * 10 + u128::from(digit - b'0');
            divisor *= 10;
        }
        total_nanos = whole
            .checked_mul(scale)
            .and_then(|nanos| nanos.checked_add(fraction_nanos * scale / divisor))
            .and_then(|nanos| total_nanos.checked_add(nanos))
            .filter(|nanos| *nanos <= i64::MAX as u128)
            .ok_or_else(|| error("too large"))?;
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| error("too large"))?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        let ok = |text: &str| parse_go_duration(text).unwrap();
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("1h2m3s4ms5us6ns"), Duration::new(3723, 4_005_006));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("2\u{b5}s"), Duration::from_micros(2));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "90",
            "1x",
            "-1s",
            "s",
            "1..5s",
            "1.2.3s",
            "999999999999h",
            "1 s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
