//! Human durations: `500ms`, `2s`, `15m`, `1h`, `7d`, and combinations such as `1h30m`.
//!
//! The grammar is deliberately small: one or more `<digits><unit>` groups, no spaces, no
//! fractions, units `ms`, `s`, `m`, `h`, `d`, `w`. Every unit may appear once, largest first,
//! so that `30m1h` (almost certainly a typo) is rejected instead of silently summed.

use std::fmt;
use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("a duration cannot be empty")]
    Empty,
    #[error("durations are written without spaces, e.g. `15m` or `1h30m`")]
    Spaces,
    #[error("`{0}` needs a unit (ms, s, m, h, d or w), e.g. `{0}s`")]
    MissingUnit(String),
    #[error("unknown duration unit `{0}` (use ms, s, m, h, d or w)")]
    UnknownUnit(String),
    #[error("expected a number before `{0}`")]
    MissingNumber(String),
    #[error("units must go from largest to smallest, each at most once (e.g. `1h30m`)")]
    UnitOrder,
    #[error("the duration is too large")]
    Overflow,
}

const UNITS: [(&str, u64); 6] = [
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a human duration such as `15m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.contains(char::is_whitespace) {
        return Err(DurationError::Spaces);
    }
    let mut total_ms: u64 = 0;
    // Index into UNITS of the last unit seen: the next one must come strictly after it.
    let mut last_unit: Option<usize> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        if digits.is_empty() {
            return Err(DurationError::MissingNumber(unit.to_string()));
        }
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(digits.to_string()));
        }
        let unit_index = UNITS
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(|| DurationError::UnknownUnit(unit.to_string()))?;
        if last_unit.is_some_and(|last| unit_index <= last) {
            return Err(DurationError::UnitOrder);
        }
        last_unit = Some(unit_index);
        let amount: u64 = digits.parse().map_err(|_| DurationError::Overflow)?;
        let millis = amount
            .checked_mul(UNITS[unit_index].1)
            .ok_or(DurationError::Overflow)?;
        total_ms = total_ms
            .checked_add(millis)
            .ok_or(DurationError::Overflow)?;
        rest = next;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration in the same grammar [`parse_duration`] accepts (`1h30m`, `0s`).
///
/// Sub-millisecond precision is dropped: plans cannot express it.
pub fn format_duration(duration: Duration) -> String {
    HumanDuration(duration).to_string()
}

/// Displays a [`Duration`] as a human duration (`1h30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        // Weeks are left out on purpose: `14d` reads better than `2w` in reports.
        for (name, size) in UNITS.iter().skip(1) {
            if ms >= *size {
                write!(f, "{}{}", ms / size, name)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_single_units_and_combinations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1m30s250ms"),
            Ok(Duration::from_millis(90_250))
        );
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("15"),
            Err(DurationError::MissingUnit("15".into()))
        );
        assert_eq!(
            parse_duration("5y"),
            Err(DurationError::UnknownUnit("y".into()))
        );
        assert_eq!(parse_duration("1 h"), Err(DurationError::Spaces));
        assert_eq!(
            parse_duration("5min"),
            Err(DurationError::UnknownUnit("min".into()))
        );
        assert_eq!(
            parse_duration("h"),
            Err(DurationError::MissingNumber("h".into()))
        );
        assert_eq!(parse_duration("30m1h"), Err(DurationError::UnitOrder));
        assert_eq!(parse_duration("1m1m"), Err(DurationError::UnitOrder));
        assert_eq!(
            parse_duration("-1s"),
            Err(DurationError::MissingNumber("-".into()))
        );
        assert_eq!(
            parse_duration("1.5h"),
            Err(DurationError::UnknownUnit(".".into()))
        );
        assert_eq!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration("999999999999999d"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn formats_in_the_parsed_grammar() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::from_secs(8 * 86_400)), "8d");
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0u64..10_000_000_000_000) {
            let duration = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn never_panics(text in "\\PC{0,12}") {
            let _ = parse_duration(&text);
        }
    }
}
