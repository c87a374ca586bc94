//! Which restore points a retention policy keeps. Pure: points and a time zone in, decisions
//! out.
//!
//! Each rule keeps the newest point of each of its last N periods (hours, days, ...), walking
//! from the newest point back; `keep_last` keeps the N newest. A point is kept when any rule
//! keeps it.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision<T> {
    pub point: T,
    pub time: Timestamp,
    pub keep: bool,
    /// The rules that keep it (`last`, `hourly`, ...).
    pub reasons: Vec<&'static str>,
}

/// Decides for every point. `points` may be in any order; decisions come newest first.
pub fn apply<T: Clone>(
    points: &[(T, Timestamp)],
    policy: &Policy,
    tz: &TimeZone,
) -> Vec<Decision<T>> {
    let mut sorted: Vec<&(T, Timestamp)> = points.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.1));
    type Bucket = fn(&jiff::Zoned) -> i64;
    let rules: [(&'static str, u32, Bucket); 6] = [
        ("last", policy.keep_last, |_| -1),
        ("hourly", policy.keep_hourly, |z| {
            i64::from(z.year()) * 1_000_000 + i64::from(z.day_of_year()) * 100 + i64::from(z.hour())
        }),
        ("daily", policy.keep_daily, |z| {
            i64::from(z.year()) * 1000 + i64::from(z.day_of_year())
        }),
        ("weekly", policy.keep_weekly, |z| {
            let w = z.date().iso_week_date();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }),
        ("monthly", policy.keep_monthly, |z| {
            i64::from(z.year()) * 100 + i64::from(z.month())
        }),
        ("yearly", policy.keep_yearly, |z| i64::from(z.year())),
    ];
    let mut remaining: Vec<u32> = rules.iter().map(|r| r.1).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; rules.len()];
    let mut out = Vec::with_capacity(sorted.len());
    for (n, (point, time)) in sorted.into_iter().enumerate() {
        let zoned = time.to_zoned(tz.clone());
        let mut reasons = Vec::new();
        for (r, (name, _, bucket)) in rules.iter().enumerate() {
            if remaining[r] == 0 {
                continue;
            }
            // `last` buckets every point apart.
            let b = if *name == "last" {
                n as i64
            } else {
                bucket(&zoned)
            };
            if last_bucket[r] != Some(b) {
                last_bucket[r] = Some(b);
                remaining[r] -= 1;
                reasons.push(*name);
            }
        }
        out.push(Decision {
            point: point.clone(),
            time: *time,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hours(h: &[i64]) -> Vec<(usize, Timestamp)> {
        h.iter()
            .enumerate()
            .map(|(i, h)| (i, Timestamp::from_second(h * 3600).unwrap()))
            .collect()
    }

    #[test]
    fn keep_last_and_daily() {
        // Three days, four points a day.
        let pts = hours(&[0, 6, 12, 18, 24, 30, 36, 42, 48, 54, 60, 66]);
        let policy = Policy {
            keep_last: 2,
            keep_daily: 3,
            ..Policy::default()
        };
        let d = apply(&pts, &policy, &TimeZone::UTC);
        let kept: Vec<usize> = d.iter().filter(|d| d.keep).map(|d| d.point).collect();
        // Newest two (66h, 60h) and the newest of each of the three days (66h, 42h, 18h).
        assert_eq!(kept, vec![11, 10, 7, 3]);
        assert_eq!(d[0].reasons, vec!["last", "daily"]);
    }

    proptest! {
        #[test]
        fn never_keeps_more_than_asked_and_always_keeps_the_newest(
            times in proptest::collection::vec(0i64..10_000_000, 1..60),
            last in 0u32..5, daily in 0u32..5, weekly in 0u32..5,
        ) {
            let pts: Vec<(usize, Timestamp)> = times.iter().enumerate().map(|(i, t)| (i, Timestamp::from_second(*t).unwrap())).collect();
            let policy = Policy { keep_last: last, keep_daily: daily, keep_weekly: weekly, ..Policy::default() };
            let d = apply(&pts, &policy, &TimeZone::UTC);
            let kept = d.iter().filter(|d| d.keep).count() as u32;
            prop_assert!(kept <= last + daily + weekly);
            prop_assert_eq!(d.len(), pts.len());
            if !policy.is_empty() {
                prop_assert!(d[0].keep);
            }
        }
    }
}
