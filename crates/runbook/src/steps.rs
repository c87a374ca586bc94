//! The ordered steps of a run. Each has a stable id (`restore:orders-db`) that the journal
//! records, so a resumed run knows which are done.

use serde::{Deserialize, Serialize};

use crate::state::RunKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Stop the old site from serving (best effort; whether it was confirmed is recorded).
    Fence { site: String },
    /// Bring the target site's infrastructure up (its `provision` commands).
    Provision { site: String },
    /// Stop writes at the site being left (its `quiesce`, or the fence) and confirm it,
    /// before its final capture (failback, switchover).
    Quiesce { site: String },
    /// A fresh restore point at the site being left (failback, switchover).
    Backup { site: String },
    /// One resource into its binding at the target site. Resources of the same wave do not
    /// depend on each other and may be restored in parallel.
    Restore {
        resource: String,
        site: String,
        wave: usize,
    },
    /// The target site's `start` commands.
    Start { site: String },
    /// The target site's health checks, all green.
    Checks { site: String },
    /// Point traffic at the target site.
    SwitchTraffic { to: String },
    /// Traffic answers with the target site (the authoritative DNS server says so).
    ConfirmTraffic { to: String },
    /// Tear down an on-demand site that was left.
    Decommission { site: String },
    /// Tell people.
    Notify,
}

impl Step {
    /// The stable id the journal records (`restore:orders-db`).
    pub fn id(&self) -> String {
        match self {
            Step::Fence { site } => format!("fence:{site}"),
            Step::Provision { site } => format!("provision:{site}"),
            Step::Quiesce { site } => format!("quiesce:{site}"),
            Step::Backup { site } => format!("backup:{site}"),
            Step::Restore { resource, .. } => format!("restore:{resource}"),
            Step::Start { site } => format!("start:{site}"),
            Step::Checks { site } => format!("checks:{site}"),
            Step::SwitchTraffic { to } => format!("switch-traffic:{to}"),
            Step::ConfirmTraffic { to } => format!("confirm-traffic:{to}"),
            Step::Decommission { site } => format!("decommission:{site}"),
            Step::Notify => "notify".to_string(),
        }
    }

    /// The site the step acts at (`None` for notifying).
    pub fn site(&self) -> Option<&str> {
        match self {
            Step::Fence { site }
            | Step::Provision { site }
            | Step::Quiesce { site }
            | Step::Backup { site }
            | Step::Restore { site, .. }
            | Step::Start { site }
            | Step::Checks { site }
            | Step::Decommission { site } => Some(site),
            Step::SwitchTraffic { to } | Step::ConfirmTraffic { to } => Some(to),
            Step::Notify => None,
        }
    }
}

/// What a run needs to know of the plan.
#[derive(Debug, Clone, Default)]
pub struct RunInput {
    pub from: String,
    pub to: String,
    /// Resources to restore, in dependency waves (already narrowed by `--only`).
    pub waves: Vec<Vec<String>>,
    /// The plan has `[fence]`.
    pub fence: bool,
    /// The target site has `provision` commands.
    pub provision: bool,
    /// The target site has `start` commands.
    pub start: bool,
    /// The target site or its resources have health checks.
    pub checks: bool,
    /// The plan has `[traffic]`.
    pub traffic: bool,
    /// The site being left is on demand and has `decommission` commands.
    pub decommission_from: bool,
}

/// The steps of a run of `kind`, in order.
pub fn plan_run(kind: RunKind, input: &RunInput) -> Vec<Step> {
    let mut steps = Vec::new();
    if kind == RunKind::Failover && input.fence {
        steps.push(Step::Fence {
            site: input.from.clone(),
        });
    }
    // A planned move provisions first, while the site being left still serves, so that
    // writes stop only for the capture, the restores and the switch.
    if input.provision {
        steps.push(Step::Provision {
            site: input.to.clone(),
        });
    }
    if matches!(kind, RunKind::Failback | RunKind::Switchover) {
        // The site being left still runs: its writes stop, then its latest state is what
        // moves, so nothing written there is lost.
        steps.push(Step::Quiesce {
            site: input.from.clone(),
        });
        steps.push(Step::Backup {
            site: input.from.clone(),
        });
    }
    for (wave, resources) in input.waves.iter().enumerate() {
        for resource in resources {
            steps.push(Step::Restore {
                resource: resource.clone(),
                site: input.to.clone(),
                wave,
            });
        }
    }
    if input.start {
        steps.push(Step::Start {
            site: input.to.clone(),
        });
    }
    if input.checks {
        steps.push(Step::Checks {
            site: input.to.clone(),
        });
    }
    if input.traffic {
        steps.push(Step::SwitchTraffic {
            to: input.to.clone(),
        });
        steps.push(Step::ConfirmTraffic {
            to: input.to.clone(),
        });
    }
    if kind == RunKind::Failback && input.decommission_from {
        steps.push(Step::Decommission {
            site: input.from.clone(),
        });
    }
    steps.push(Step::Notify);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> RunInput {
        RunInput {
            from: "primary".into(),
            to: "dr".into(),
            waves: vec![vec!["db".into(), "config".into()], vec!["app".into()]],
            fence: true,
            provision: true,
            start: true,
            checks: true,
            traffic: true,
            decommission_from: false,
        }
    }

    fn ids(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::id).collect()
    }

    #[test]
    fn a_failover_fences_provisions_restores_in_waves_checks_and_switches() {
        assert_eq!(
            ids(&plan_run(RunKind::Failover, &input())),
            [
                "fence:primary",
                "provision:dr",
                "restore:db",
                "restore:config",
                "restore:app",
                "start:dr",
                "checks:dr",
                "switch-traffic:dr",
                "confirm-traffic:dr",
                "notify"
            ]
        );
    }

    #[test]
    fn a_failback_captures_the_dr_site_first_and_may_tear_it_down() {
        let back = RunInput {
            from: "dr".into(),
            to: "primary".into(),
            fence: false,
            provision: false,
            decommission_from: true,
            ..input()
        };
        assert_eq!(
            ids(&plan_run(RunKind::Failback, &back)),
            [
                "quiesce:dr",
                "backup:dr",
                "restore:db",
                "restore:config",
                "restore:app",
                "start:primary",
                "checks:primary",
                "switch-traffic:primary",
                "confirm-traffic:primary",
                "decommission:dr",
                "notify"
            ]
        );
    }

    #[test]
    fn a_switchover_provisions_then_quiesces_the_site_it_leaves_before_capturing_it() {
        let ids = ids(&plan_run(RunKind::Switchover, &input()));
        assert_eq!(
            ids[..4],
            [
                "provision:dr",
                "quiesce:primary",
                "backup:primary",
                "restore:db"
            ]
        );
        assert!(!ids.contains(&"fence:primary".to_string()));
    }

    #[test]
    fn step_ids_are_unique_within_a_run() {
        let steps = plan_run(RunKind::Failover, &input());
        let mut ids = ids(&steps);
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
