//! Validation of five-field cron expressions (`minute hour day-of-month month day-of-week`).
//!
//! The plan only stores the expression; the daemon evaluates it. Checking it here means a
//! typo is reported when the plan is loaded, not at 3 a.m. when the drill fails to start.

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names accepted for values, the first meaning `min`.
    names: &'static [&'static str],
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldSpec {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    // 7 is Sunday too, as in most crons.
    FieldSpec {
        name: "day of week",
        min: 0,
        max: 7,
        names: &DAYS,
    },
];

/// Checks a cron expression; the error says which field is wrong and why.
pub fn validate_cron(expression: &str) -> Result<(), String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Err(format!(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    for (text, spec) in fields.iter().zip(FIELDS.iter()) {
        validate_field(text, spec).map_err(|why| format!("{} field `{text}`: {why}", spec.name))?;
    }
    Ok(())
}

fn validate_field(text: &str, spec: &FieldSpec) -> Result<(), String> {
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(step) if step > 0 => {}
                _ => return Err(format!("step `{step}` must be a positive number")),
            }
        }
        if range == "*" {
            continue;
        }
        let (low, high) = match range.split_once('-') {
            Some((low, high)) => (value(low, spec)?, value(high, spec)?),
            None => {
                let single = value(range, spec)?;
                (single, single)
            }
        };
        if low > high {
            return Err(format!("range `{range}` goes backwards"));
        }
    }
    Ok(())
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(position) = spec.names.iter().position(|name| *name == upper) {
        return u32::try_from(position)
            .map(|position| position + spec.min)
            .map_err(|_| format!("`{text}` is out of range"));
    }
    match text.parse::<u32>() {
        Ok(number) if (spec.min..=spec.max).contains(&number) => Ok(number),
        Ok(_) => Err(format!("`{text}` is outside {}-{}", spec.min, spec.max)),
        Err(_) if text.is_empty() => Err("empty value".to_string()),
        Err(_) => Err(format!("`{text}` is not a number{}", names_hint(spec))),
    }
}

fn names_hint(spec: &FieldSpec) -> String {
    if spec.names.is_empty() {
        String::new()
    } else {
        format!(" or one of {}", spec.names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_expressions() {
        for expression in [
            "0 3 * * SUN",
            "0 * * * *",
            "*/15 * * * *",
            "0 4 1-7 * mon-fri",
            "5,35 2 * JAN,JUL 0",
        ] {
            assert_eq!(validate_cron(expression), Ok(()), "{expression}");
        }
    }

    #[test]
    fn rejects_bad_expressions() {
        assert!(validate_cron("0 3 * *").is_err());
        assert!(validate_cron("60 * * * *").unwrap_err().contains("minute"));
        assert!(validate_cron("0 24 * * *").unwrap_err().contains("hour"));
        assert!(
            validate_cron("0 3 * * FUNDAY")
                .unwrap_err()
                .contains("day of week")
        );
        assert!(validate_cron("*/0 * * * *").is_err());
        assert!(validate_cron("5-1 * * * *").is_err());
        assert!(validate_cron("0 3 ,, * *").is_err());
    }
}
