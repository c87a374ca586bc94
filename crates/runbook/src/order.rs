//! Dependency order: resources in waves.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("`{resource}` depends on `{missing}`, which is not in the plan")]
    Unknown { resource: String, missing: String },
    #[error("dependency cycle among: {}", .0.join(", "))]
    Cycle(Vec<String>),
}

/// Groups `resources` (name, what it depends on) into waves: every resource comes after all
/// it depends on, and a wave's members depend on nothing in their own or a later wave. Within
/// a wave, the input order is kept.
pub fn waves(resources: &[(String, Vec<String>)]) -> Result<Vec<Vec<String>>, OrderError> {
    let names: BTreeSet<&str> = resources.iter().map(|(n, _)| n.as_str()).collect();
    for (name, deps) in resources {
        if let Some(missing) = deps.iter().find(|d| !names.contains(d.as_str())) {
            return Err(OrderError::Unknown {
                resource: name.clone(),
                missing: missing.clone(),
            });
        }
    }
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while placed.len() < resources.len() {
        let wave: Vec<String> = resources
            .iter()
            .filter(|(n, deps)| {
                !placed.contains(n.as_str()) && deps.iter().all(|d| placed.contains(d.as_str()))
            })
            .map(|(n, _)| n.clone())
            .collect();
        if wave.is_empty() {
            let stuck = resources
                .iter()
                .filter(|(n, _)| !placed.contains(n.as_str()))
                .map(|(n, _)| n.clone())
                .collect();
            return Err(OrderError::Cycle(stuck));
        }
        for name in &wave {
            let (name, _) = resources
                .iter()
                .find(|(n, _)| n == name)
                .expect("from the input");
            placed.insert(name.as_str());
        }
        out.push(wave);
    }
    Ok(out)
}

/// `only` and everything it depends on, transitively: restoring a component needs what it
/// stands on. Unknown names are returned as the error.
pub fn with_dependencies(
    resources: &[(String, Vec<String>)],
    only: &[String],
) -> Result<BTreeSet<String>, String> {
    let mut wanted = BTreeSet::new();
    let mut stack: Vec<String> = only.to_vec();
    while let Some(name) = stack.pop() {
        let Some((_, deps)) = resources.iter().find(|(n, _)| *n == name) else {
            return Err(name);
        };
        if wanted.insert(name.clone()) {
            stack.extend(deps.iter().cloned());
        }
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(name: &str, deps: &[&str]) -> (String, Vec<String>) {
        (
            name.to_string(),
            deps.iter().map(|d| d.to_string()).collect(),
        )
    }

    #[test]
    fn independent_resources_share_a_wave() {
        let plan = [
            r("app", &["db", "config"]),
            r("db", &[]),
            r("config", &[]),
            r("cache", &["app"]),
        ];
        assert_eq!(
            waves(&plan).unwrap(),
            vec![vec!["db", "config"], vec!["app"], vec!["cache"]]
        );
    }

    #[test]
    fn cycles_and_unknown_names_are_errors() {
        let cycle = [r("a", &["b"]), r("b", &["a"]), r("c", &[])];
        assert_eq!(
            waves(&cycle).unwrap_err(),
            OrderError::Cycle(vec!["a".into(), "b".into()])
        );
        let unknown = [r("a", &["ghost"])];
        assert!(matches!(
            waves(&unknown).unwrap_err(),
            OrderError::Unknown { .. }
        ));
    }

    #[test]
    fn only_brings_its_dependencies() {
        let plan = [
            r("app", &["db"]),
            r("db", &["net"]),
            r("net", &[]),
            r("docs", &[]),
        ];
        let got = with_dependencies(&plan, &["app".into()]).unwrap();
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["app", "db", "net"]);
        assert_eq!(
            with_dependencies(&plan, &["nope".into()]).unwrap_err(),
            "nope"
        );
    }

    proptest! {
        /// Any acyclic plan (dependencies only on earlier resources): every resource appears
        /// once, after everything it depends on.
        #[test]
        fn waves_respect_every_dependency(edges in proptest::collection::vec(
            proptest::collection::vec(any::<proptest::sample::Index>(), 0..4), 1..12)) {
            let plan: Vec<(String, Vec<String>)> = edges
                .iter()
                .enumerate()
                .map(|(i, deps)| {
                    let deps = if i == 0 {
                        vec![]
                    } else {
                        deps.iter().map(|d| format!("r{}", d.index(i))).collect()
                    };
                    (format!("r{i}"), deps)
                })
                .collect();
            let waves = waves(&plan).unwrap();
            let position = |name: &str| waves.iter().position(|w| w.iter().any(|n| n == name)).unwrap();
            let total: usize = waves.iter().map(Vec::len).sum();
            prop_assert_eq!(total, plan.len());
            for (name, deps) in &plan {
                for d in deps {
                    prop_assert!(position(d) < position(name));
                }
            }
        }
    }
}
