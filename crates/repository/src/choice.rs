//! Which restore point each resource is restored from. Pure: the points in, a choice out.
//!
//! Every resource is restored from its own newest complete capture (so a backup of one
//! resource is used at once), or all from one pinned point. Failover, `restore latest`,
//! drills and the audit's freshness all choose through here.

use lifeboat_format::Id;
use lifeboat_format::manifest::RestorePoint;
use serde::Serialize;

/// The capture one resource is restored from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chosen {
    /// The resource (or one item, `name/item`) as asked for.
    pub resource: String,
    /// The restore point holding its capture.
    pub point: Id,
    /// When that capture started: what the restored data is as of.
    pub time: jiff::Timestamp,
    /// The capture left entries out (only a pinned point is taken so): what it skipped is
    /// not restored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// Why no choice could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unchosen {
    /// No point holds a complete capture of these.
    Never(Vec<String>),
    /// The pinned point holds no usable capture of these.
    Lacking {
        /// The pinned point.
        point: Id,
        /// The resources it lacks.
        missing: Vec<String>,
    },
}

/// The newest point holding a complete capture of `name` (every item it discovered included).
/// `points` must be oldest first, as `Repository::points` returns them.
pub fn newest_complete<'a>(
    points: &'a [(Id, RestorePoint)],
    name: &str,
) -> Option<&'a (Id, RestorePoint)> {
    points.iter().rev().find(|(_, p)| p.captured_whole(name))
}

/// For each of `names`, its own newest complete capture, in the order of `names`.
pub fn choose(points: &[(Id, RestorePoint)], names: &[String]) -> Result<Vec<Chosen>, Unchosen> {
    let mut out = Vec::with_capacity(names.len());
    let mut never = Vec::new();
    for name in names {
        match newest_complete(points, name) {
            Some((id, p)) => out.push(Chosen {
                resource: name.clone(),
                point: *id,
                time: p.time,
                partial: false,
            }),
            None => never.push(name.clone()),
        }
    }
    if never.is_empty() {
        Ok(out)
    } else {
        Err(Unchosen::Never(never))
    }
}

/// Every one of `names` from the one point `pinned`, which must hold a capture of each: a
/// complete one, or one that left some entries out (marked `partial`: the operator pinned
/// it, which is the way to recover when no complete capture exists).
pub fn pin(id: Id, pinned: &RestorePoint, names: &[String]) -> Result<Vec<Chosen>, Unchosen> {
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !pinned.captured_in_part(n))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Unchosen::Lacking { point: id, missing });
    }
    Ok(names
        .iter()
        .map(|name| Chosen {
            resource: name.clone(),
            point: id,
            time: pinned.time,
            partial: !pinned.captured_whole(name),
        })
        .collect())
}

/// The oldest capture chosen: the achieved RPO is its age.
pub fn oldest(chosen: &[Chosen]) -> Option<&Chosen> {
    chosen.iter().min_by_key(|c| (c.time, c.point))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_format::FORMAT_VERSION;
    use lifeboat_format::manifest::{CaptureStats, ResourcePoint, ResourceStatus};
    use proptest::prelude::*;

    fn entry(name: &str, ok: bool) -> ResourcePoint {
        ResourcePoint {
            name: name.into(),
            kind: "files".into(),
            source: String::new(),
            status: if ok {
                ResourceStatus::Complete
            } else {
                ResourceStatus::Failed { error: "x".into() }
            },
            root: ok.then(|| Id::of_stored(name.as_bytes())),
            parent: None,
            stats: CaptureStats::default(),
            database: None,
            scope: None,
        }
    }

    fn point(
        second: i64,
        entries: &[(&str, bool)],
        discovered: &[(&str, &[&str])],
    ) -> (Id, RestorePoint) {
        let p = RestorePoint {
            version: FORMAT_VERSION,
            time: jiff::Timestamp::from_second(second).unwrap(),
            finished: jiff::Timestamp::from_second(second).unwrap(),
            hostname: "h".into(),
            plan: None,
            site: None,
            tags: vec![],
            resources: entries.iter().map(|(n, ok)| entry(n, *ok)).collect(),
            discovered: discovered
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        };
        (Id::of_stored(&second.to_le_bytes()), p)
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_resource_from_its_own_newest_complete_capture() {
        let points = vec![
            point(
                10,
                &[("pg", true), ("pg/a", true), ("docs", true)],
                &[("pg", &["a"])],
            ),
            // `backup pg` alone, with a new database.
            point(
                20,
                &[("pg", true), ("pg/a", true), ("pg/b", true)],
                &[("pg", &["a", "b"])],
            ),
            // `backup docs`, failed.
            point(30, &[("docs", false)], &[]),
        ];
        let chosen = choose(&points, &names(&["pg", "docs"])).unwrap();
        assert_eq!(chosen[0].point, points[1].0);
        assert_eq!(chosen[1].point, points[0].0);
        assert_eq!(oldest(&chosen).unwrap().resource, "docs");
    }

    #[test]
    fn one_item_backup_counts_for_the_item_only() {
        let points = vec![
            point(
                10,
                &[("flows/a", true), ("flows/b", true)],
                &[("flows", &["a", "b"])],
            ),
            point(20, &[("flows/a", true)], &[("flows", &["a", "b"])]),
        ];
        let chosen = choose(&points, &names(&["flows", "flows/a"])).unwrap();
        assert_eq!(chosen[0].point, points[0].0);
        assert_eq!(chosen[1].point, points[1].0);
        assert_eq!(
            choose(&points, &names(&["flows/c"])),
            Err(Unchosen::Never(names(&["flows/c"])))
        );
        assert_eq!(
            pin(points[1].0, &points[1].1, &names(&["flows"])),
            Err(Unchosen::Lacking {
                point: points[1].0,
                missing: names(&["flows"])
            })
        );
        assert!(pin(points[0].0, &points[0].1, &names(&["flows"])).is_ok());
    }

    #[test]
    fn a_partial_capture_is_taken_only_when_pinned_and_then_marked() {
        let mut busy = point(10, &[("logs", true)], &[]);
        busy.1.resources[0].status = ResourceStatus::partial(vec!["app.log: vanished".into()]);
        let points = vec![busy];
        assert_eq!(
            choose(&points, &names(&["logs"])),
            Err(Unchosen::Never(names(&["logs"])))
        );
        let pinned = pin(points[0].0, &points[0].1, &names(&["logs"])).unwrap();
        assert!(pinned[0].partial);
        // A failed capture is never taken, pinned or not.
        let failed = point(20, &[("logs", false)], &[]);
        assert!(pin(failed.0, &failed.1, &names(&["logs"])).is_err());
    }

    proptest! {
        /// Whatever the history, the choice for a resource is a point holding it complete,
        /// and no newer point does.
        #[test]
        fn chosen_is_complete_and_newest(
            history in proptest::collection::vec(
                (proptest::collection::vec(any::<bool>(), 3), proptest::collection::vec(any::<bool>(), 3)),
                1..12,
            ),
        ) {
            let items = ["a", "b", "c"];
            let points: Vec<(Id, RestorePoint)> = history
                .iter()
                .enumerate()
                .map(|(i, (present, ok))| {
                    let entries: Vec<(String, bool)> = items
                        .iter()
                        .zip(present.iter().zip(ok))
                        .filter(|(_, (present, _))| **present)
                        .map(|(item, (_, ok))| (format!("r/{item}"), *ok))
                        .collect();
                    let entries: Vec<(&str, bool)> = entries.iter().map(|(n, ok)| (n.as_str(), *ok)).collect();
                    point(i as i64 * 10, &entries, &[("r", &items)])
                })
                .collect();
            let wanted = names(&["r", "r/a"]);
            match choose(&points, &wanted) {
                Ok(chosen) => {
                    for c in &chosen {
                        let at = points.iter().position(|(id, _)| *id == c.point).unwrap();
                        prop_assert!(points[at].1.captured_whole(&c.resource));
                        prop_assert!(points[at + 1..].iter().all(|(_, p)| !p.captured_whole(&c.resource)));
                        // The whole resource is every item, each complete.
                        if c.resource == "r" {
                            for item in items {
                                let name = format!("r/{item}");
                                prop_assert!(points[at].1.resource(&name).is_some_and(|e| e.status == ResourceStatus::Complete));
                            }
                        }
                    }
                }
                Err(Unchosen::Never(never)) => {
                    for n in &never {
                        prop_assert!(points.iter().all(|(_, p)| !p.captured_whole(n)));
                    }
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
