//! The ordered steps of a drill. Each has a stable id (`restore:orders-db`) that the journal
//! and the report use.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum DrillStep {
    /// The sandbox comes up: its folder, the temporary database servers, the drill site's
    /// `provision` commands.
    Provision { site: String },
    /// One resource into the sandbox. Resources of one wave do not depend on each other and
    /// are restored in parallel.
    Restore { resource: String, wave: usize },
    /// The drill site's `start` commands.
    Start { site: String },
    /// The drill site's health checks.
    Checks { site: String },
    /// What came back equals what was captured: file digests, row counts, the resource's
    /// `verify` entries.
    Verify { resource: String },
    /// How much the live site changed after the restore point: the data a failover now would
    /// lose. Measured, but not part of the RTO.
    Changes { site: String },
    /// Everything the drill created is removed. Always runs.
    Teardown,
}

impl DrillStep {
    pub fn id(&self) -> String {
        match self {
            DrillStep::Provision { site } => format!("provision:{site}"),
            DrillStep::Restore { resource, .. } => format!("restore:{resource}"),
            DrillStep::Start { site } => format!("start:{site}"),
            DrillStep::Checks { site } => format!("checks:{site}"),
            DrillStep::Verify { resource } => format!("verify:{resource}"),
            DrillStep::Changes { site } => format!("changes:{site}"),
            DrillStep::Teardown => "teardown".to_string(),
        }
    }

    /// Whether the step is part of a recovery, so of the achieved RTO: bringing the sandbox
    /// up, restoring, starting, checking and verifying are; measuring the live site's changes
    /// and tearing down are not.
    pub fn counts_for_rto(&self) -> bool {
        !matches!(self, DrillStep::Changes { .. } | DrillStep::Teardown)
    }
}

/// What a drill needs to know of the plan.
#[derive(Debug, Clone, Default)]
pub struct DrillInput {
    /// The drill site: declared in the plan, or the derived sandbox's name.
    pub site: String,
    /// The site serving now, whose data is compared with the restore point.
    pub live_site: String,
    /// Resources to restore, in dependency waves.
    pub waves: Vec<Vec<String>>,
    /// The drill site has `start` commands.
    pub start: bool,
    /// The drill site has health checks.
    pub checks: bool,
    /// Measure the live site's changes after the restore point.
    pub changes: bool,
}

/// The steps of a drill, in order.
pub fn plan_drill(input: &DrillInput) -> Vec<DrillStep> {
    let mut steps = vec![DrillStep::Provision {
        site: input.site.clone(),
    }];
    for (wave, resources) in input.waves.iter().enumerate() {
        steps.extend(resources.iter().map(|resource| DrillStep::Restore {
            resource: resource.clone(),
            wave,
        }));
    }
    // Verified before the application starts: once it runs, it changes what it restored.
    steps.extend(
        input
            .waves
            .iter()
            .flatten()
            .map(|resource| DrillStep::Verify {
                resource: resource.clone(),
            }),
    );
    if input.start {
        steps.push(DrillStep::Start {
            site: input.site.clone(),
        });
    }
    if input.checks {
        steps.push(DrillStep::Checks {
            site: input.site.clone(),
        });
    }
    if input.changes {
        steps.push(DrillStep::Changes {
            site: input.live_site.clone(),
        });
    }
    steps.push(DrillStep::Teardown);
    steps
}

/// The resources that cannot be restored because something they depend on (directly or
/// not) failed or was itself blocked. `resources` pairs each name with its `depends_on`.
pub fn blocked(resources: &[(String, Vec<String>)], failed: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    loop {
        let before = out.len();
        for (name, deps) in resources {
            if !failed.contains(name)
                && deps
                    .iter()
                    .any(|d| failed.contains(d) || out.contains(d.as_str()))
            {
                out.insert(name.clone());
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> DrillInput {
        DrillInput {
            site: "drill".into(),
            live_site: "primary".into(),
            waves: vec![vec!["db".into(), "docs".into()], vec!["conf".into()]],
            start: true,
            checks: true,
            changes: true,
        }
    }

    fn ids(steps: &[DrillStep]) -> Vec<String> {
        steps.iter().map(DrillStep::id).collect()
    }

    #[test]
    fn a_drill_provisions_restores_in_waves_verifies_starts_checks_and_always_tears_down() {
        assert_eq!(
            ids(&plan_drill(&input())),
            [
                "provision:drill",
                "restore:db",
                "restore:docs",
                "restore:conf",
                "verify:db",
                "verify:docs",
                "verify:conf",
                "start:drill",
                "checks:drill",
                "changes:primary",
                "teardown"
            ]
        );
    }

    #[test]
    fn a_derived_sandbox_has_nothing_to_start_or_check() {
        let derived = DrillInput {
            start: false,
            checks: false,
            changes: false,
            ..input()
        };
        let steps = plan_drill(&derived);
        assert_eq!(
            steps.first().map(DrillStep::id).as_deref(),
            Some("provision:drill")
        );
        assert_eq!(steps.last(), Some(&DrillStep::Teardown));
        assert!(
            !ids(&steps)
                .iter()
                .any(|s| s.starts_with("start:") || s.starts_with("checks:"))
        );
        let rto: Vec<String> = steps
            .iter()
            .filter(|s| s.counts_for_rto())
            .map(DrillStep::id)
            .collect();
        assert!(!rto.contains(&"teardown".to_string()));
    }

    #[test]
    fn a_failed_restore_blocks_what_depends_on_it_transitively_and_nothing_else() {
        let resources = vec![
            ("db".to_string(), vec![]),
            ("app".to_string(), vec!["db".to_string()]),
            ("web".to_string(), vec!["app".to_string()]),
            ("docs".to_string(), vec![]),
        ];
        let got = blocked(&resources, &["db".to_string()]);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["app", "web"]);
        assert!(blocked(&resources, &[]).is_empty());
    }
}
