//! Which restore points a retention policy keeps. Pure: points and a time zone in, decisions
//! out.
//!
//! Each rule keeps the newest point of each of its last N periods (hours, days, ...), walking
//! from the newest point back; `keep_last` keeps the N newest. A point is kept when any rule
//! keeps it.
//!
//! [`by_group`] applies the policy to each resource, and to each item of one (a database, a
//! discovered item), separately, counting only complete captures: a point is forgotten only
//! when no group keeps it. An item its resource no longer has (a dropped database) has no
//! group of its own: its captures go when its resource's group lets them go.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use lifeboat_format::manifest::{ResourceStatus, RestorePoint, selects};
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

/// One point's part in one retention group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The resource (`pg`) or item (`pg/app`).
    pub group: String,
    /// The point holds a complete capture of it (only those count towards `keep_*`).
    pub complete: bool,
    /// An item its resource no longer has: it has no group of its own.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
    /// The rules by which this group keeps the point (`last`, `daily`, ...; `newest partial`
    /// for a partial capture newer than any complete one); empty when it does not.
    pub rules: Vec<&'static str>,
}

/// What the policy decided for one point, over every group it is part of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PointDecision<T> {
    /// The point decided on.
    pub point: T,
    /// When its capture started.
    pub time: Timestamp,
    /// Whether some group keeps it.
    pub keep: bool,
    /// The groups it belongs to, and what each decided.
    pub groups: Vec<Membership>,
}

/// The resources of a point with their items: what `discovered` records, else (older
/// manifests) each entry with the entries below it (`pg` with `pg/app`).
fn resources_of(p: &RestorePoint) -> BTreeMap<String, Option<Vec<String>>> {
    let mut out: BTreeMap<String, Option<Vec<String>>> = p
        .discovered
        .iter()
        .map(|(name, items)| (name.clone(), Some(items.clone())))
        .collect();
    for r in &p.resources {
        let under_another = p
            .resources
            .iter()
            .any(|o| o.name != r.name && selects(&o.name, &r.name));
        if under_another || out.keys().any(|name| selects(name, &r.name)) {
            continue;
        }
        let children: Vec<String> = p
            .resources
            .iter()
            .filter_map(|c| {
                c.name
                    .strip_prefix(r.name.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(str::to_string)
            })
            .collect();
        out.insert(r.name.clone(), (!children.is_empty()).then_some(children));
    }
    // Entries under no resource of the point (`flows/a` from an older manifest).
    for r in &p.resources {
        if !out.keys().any(|name| selects(name, &r.name)) {
            out.insert(r.name.clone(), None);
        }
    }
    out
}

/// Decides for every point, grouping captures per resource and per item. `points` may be in
/// any order; decisions come newest first.
pub fn by_group<T: Clone>(
    points: &[(T, &RestorePoint)],
    policy: &Policy,
    tz: &TimeZone,
) -> Vec<PointDecision<T>> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(points[i].1.time));
    let resources: Vec<BTreeMap<String, Option<Vec<String>>>> =
        points.iter().map(|(_, p)| resources_of(p)).collect();
    // Each resource's items as its newest point that knows them has them.
    let mut current: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for &i in &order {
        for (name, items) in &resources[i] {
            if let Some(items) = items {
                current
                    .entry(name.clone())
                    .or_insert_with(|| items.iter().cloned().collect());
            }
        }
    }
    // Group name → the points in it (index, complete, has data), newest first.
    let mut groups: BTreeMap<String, Vec<(usize, bool, bool)>> = BTreeMap::new();
    let mut memberships: Vec<Vec<Membership>> = vec![Vec::new(); points.len()];
    for &i in &order {
        let p = points[i].1;
        for name in resources[i].keys() {
            let complete = p.captured_whole(name);
            let data = p.entries(name).any(|r| r.root.is_some());
            groups
                .entry(name.clone())
                .or_default()
                .push((i, complete, data));
            memberships[i].push(Membership {
                group: name.clone(),
                complete,
                dropped: false,
                rules: Vec::new(),
            });
            for r in p.entries(name).filter(|r| r.name != *name) {
                let item = &r.name[name.len() + 1..];
                let dropped = !current.get(name).is_some_and(|items| items.contains(item));
                let complete = r.status == ResourceStatus::Complete && r.root.is_some();
                if !dropped {
                    groups
                        .entry(r.name.clone())
                        .or_default()
                        .push((i, complete, r.root.is_some()));
                }
                memberships[i].push(Membership {
                    group: r.name.clone(),
                    complete,
                    dropped,
                    rules: Vec::new(),
                });
            }
        }
    }
    for (name, members) in &groups {
        let complete: Vec<(usize, Timestamp)> = members
            .iter()
            .filter(|m| m.1)
            .map(|m| (m.0, points[m.0].1.time))
            .collect();
        let mut kept: Vec<(usize, Vec<&'static str>)> = apply(&complete, policy, tz)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| (d.point, d.reasons))
            .collect();
        // A partial capture newer than every complete one holds the newest data there is.
        if let Some(&(i, _, _)) = members.iter().take_while(|m| !m.1).find(|m| m.2) {
            kept.push((i, vec!["newest partial"]));
        }
        // Captures that skipped entries keep their own history by the same policy (they never
        // count towards the complete ones' N): a resource that is never captured whole (one
        // unreadable file) must not be left with a single point.
        let partial: Vec<(usize, Timestamp)> = members
            .iter()
            .filter(|m| !m.1 && m.2)
            .map(|m| (m.0, points[m.0].1.time))
            .collect();
        kept.extend(
            apply(&partial, policy, tz)
                .into_iter()
                .filter(|d| d.keep)
                .map(|d| (d.point, vec!["partial history"])),
        );
        for (i, rules) in kept {
            if let Some(m) = memberships[i].iter_mut().find(|m| m.group == *name) {
                m.rules = rules;
            }
        }
    }
    order
        .into_iter()
        .map(|i| PointDecision {
            point: points[i].0.clone(),
            time: points[i].1.time,
            keep: memberships[i].iter().any(|m| !m.rules.is_empty()),
            groups: std::mem::take(&mut memberships[i]),
        })
        .collect()
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

    mod grouped {
        use super::*;
        use lifeboat_format::manifest::{CaptureStats, ResourcePoint};
        use lifeboat_format::{FORMAT_VERSION, Id};

        fn entry(name: &str, status: ResourceStatus) -> ResourcePoint {
            ResourcePoint {
                name: name.into(),
                kind: "postgres".into(),
                source: String::new(),
                root: (!matches!(status, ResourceStatus::Failed { .. }))
                    .then(|| Id::of_stored(name.as_bytes())),
                status,
                parent: None,
                stats: CaptureStats::default(),
                database: None,
                scope: None,
            }
        }

        /// A capture of server `pg` at hour `h` with these databases discovered, `captured`
        /// of them captured (all when `None`).
        fn pg(h: i64, databases: &[&str], captured: Option<&[&str]>) -> RestorePoint {
            let mut resources = vec![entry("pg", ResourceStatus::Complete)];
            for d in captured.unwrap_or(databases) {
                resources.push(entry(&format!("pg/{d}"), ResourceStatus::Complete));
            }
            RestorePoint {
                version: FORMAT_VERSION,
                time: Timestamp::from_second(h * 3600).unwrap(),
                finished: Timestamp::from_second(h * 3600).unwrap(),
                hostname: "h".into(),
                plan: None,
                site: None,
                tags: vec![],
                resources,
                discovered: [(
                    "pg".to_string(),
                    databases.iter().map(|d| d.to_string()).collect(),
                )]
                .into(),
            }
        }

        fn kept(points: &[RestorePoint], policy: &Policy) -> Vec<usize> {
            let refs: Vec<(usize, &RestorePoint)> = points.iter().enumerate().collect();
            let mut kept: Vec<usize> = by_group(&refs, policy, &TimeZone::UTC)
                .into_iter()
                .filter(|d| d.keep)
                .map(|d| d.point)
                .collect();
            kept.sort();
            kept
        }

        #[test]
        fn databases_created_and_dropped_keep_three_per_group() {
            let last3 = Policy {
                keep_last: 3,
                ..Policy::default()
            };
            let mut points = Vec::new();
            for h in 0..4 {
                points.push(pg(h, &["app"], None));
            }
            for h in 4..8 {
                points.push(pg(h, &["app", "tmp"], None));
            }
            for h in 8..10 {
                points.push(pg(h, &["app"], None));
            }
            for h in 10..12 {
                points.push(pg(h, &["app", "new"], None));
            }
            // The dropped `tmp` keeps nothing of its own; `new` has only two captures, and
            // its groups' three newest are the same points as everyone's.
            assert_eq!(kept(&points, &last3), vec![9, 10, 11]);
            // Incomplete points (one database alone, a failed capture) do not count.
            points.push(pg(12, &["app", "new"], Some(&["app"])));
            let mut failed = pg(13, &["app", "new"], None);
            failed.resources[2].status = ResourceStatus::Failed { error: "x".into() };
            failed.resources[2].root = None;
            points.push(failed);
            // pg: 9, 10, 11 complete, and 13, a partial capture newer than them; pg/app:
            // 11, 12, 13; pg/new: 10, 11 (13's failed, 12 lacks it).
            assert_eq!(kept(&points, &last3), vec![9, 10, 11, 12, 13]);
            let refs: Vec<(usize, &RestorePoint)> = points.iter().enumerate().collect();
            let decisions = by_group(&refs, &last3, &TimeZone::UTC);
            let twelve = decisions.iter().find(|d| d.point == 12).unwrap();
            let pg_group = twelve.groups.iter().find(|m| m.group == "pg").unwrap();
            assert!(!pg_group.complete);
            let app = twelve.groups.iter().find(|m| m.group == "pg/app").unwrap();
            assert_eq!(app.rules, vec!["last"]);
            let five = decisions.iter().find(|d| d.point == 5).unwrap();
            assert!(!five.keep);
            assert!(five.groups.iter().any(|m| m.group == "pg/tmp" && m.dropped));
        }

        #[test]
        fn a_resource_never_captured_whole_keeps_its_history() {
            let last3 = Policy {
                keep_last: 3,
                ..Policy::default()
            };
            // One unreadable file: every capture of the tree is partial.
            let points: Vec<RestorePoint> = (0..6)
                .map(|h| {
                    let mut p = pg(h, &[], Some(&[]));
                    p.discovered.clear();
                    p.resources = vec![entry(
                        "files",
                        ResourceStatus::partial(vec!["locked.db: permission denied".into()]),
                    )];
                    p
                })
                .collect();
            assert_eq!(kept(&points, &last3), vec![3, 4, 5]);
        }

        #[test]
        fn a_dropped_database_ages_out_with_its_resource() {
            let daily = Policy {
                keep_daily: 2,
                ..Policy::default()
            };
            // `old` existed on day 0 only; later days do not have it.
            let points = vec![
                pg(0, &["app", "old"], None),
                pg(24, &["app"], None),
                pg(48, &["app"], None),
            ];
            assert_eq!(kept(&points, &daily), vec![1, 2]);
        }

        proptest! {
            /// Every group that has one keeps its newest complete capture; each keeps at most
            /// N complete ones by `keep_last`; a point is kept exactly when a group keeps it.
            #[test]
            fn per_group_bounds(
                history in proptest::collection::vec(
                    (proptest::collection::vec(any::<bool>(), 3), proptest::collection::vec(any::<bool>(), 3)),
                    1..20,
                ),
                last in 1u32..4,
            ) {
                let dbs = ["a", "b", "c"];
                let points: Vec<RestorePoint> = history
                    .iter()
                    .enumerate()
                    .map(|(h, (present, captured))| {
                        let discovered: Vec<&str> = dbs.iter().zip(present).filter(|(_, p)| **p).map(|(d, _)| *d).collect();
                        let captured: Vec<&str> = discovered.iter().zip(captured).filter(|(_, c)| **c).map(|(d, _)| *d).collect();
                        pg(h as i64, &discovered, Some(&captured))
                    })
                    .collect();
                let policy = Policy { keep_last: last, ..Policy::default() };
                let refs: Vec<(usize, &RestorePoint)> = points.iter().enumerate().collect();
                let decisions = by_group(&refs, &policy, &TimeZone::UTC);
                prop_assert_eq!(decisions.len(), points.len());
                let mut per_group: BTreeMap<String, u32> = BTreeMap::new();
                for d in &decisions {
                    prop_assert_eq!(d.keep, d.groups.iter().any(|m| !m.rules.is_empty()));
                    for m in &d.groups {
                        if m.rules.contains(&"last") {
                            prop_assert!(m.complete && !m.dropped);
                            *per_group.entry(m.group.clone()).or_default() += 1;
                        }
                    }
                }
                prop_assert!(per_group.values().all(|n| *n <= last));
                // The newest whole capture of the server is kept.
                if let Some(newest) = decisions.iter().find(|d| points[d.point].captured_whole("pg")) {
                    prop_assert!(newest.keep);
                }
            }
        }
    }
}
