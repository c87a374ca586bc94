//! Which site serves and which a run stopped (fenced or quiesced), read from the site state
//! and the last run's journal, so `status` never calls a fenced site active. Also the
//! achieved RPO of a planned move, from when the site being left stopped taking writes.

use serde::Serialize;

use crate::journal::{Event, Record};
use crate::state::SiteState;
use crate::steps::Step;

/// The last run, as `status` reads it back.
#[derive(Debug, Clone, Copy)]
pub struct LastRun<'a> {
    /// The run's id (its folder under `runs/`).
    pub id: &'a str,
    /// The site it moved away from.
    pub from: &'a str,
    /// The site it moved to.
    pub to: &'a str,
    /// Its steps, in order.
    pub steps: &'a [Step],
    /// Its journal.
    pub records: &'a [Record],
}

/// How a run stopped a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// `[fence]` in a failover.
    Fenced,
    /// A planned move's quiesce (the site's `quiesce`, or the fence).
    Quiesced,
}

/// A site a run stopped, or tried to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stopped {
    /// The site stopped.
    pub site: String,
    /// By a fence or a quiesce.
    pub how: StopKind,
    /// The stop was confirmed (commands succeeded, confirmation checks passed).
    pub confirmed: bool,
    /// The step failed: the site may be partly stopped.
    pub failed: bool,
    /// When the step ended (RFC 3339).
    pub at: String,
    /// The run that stopped it.
    pub run: String,
}

/// Who serves, who is stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// The site taking traffic and writes; `None` while none does for sure (a run stopped
    /// the old site and has not switched traffic yet, or a stop was not confirmed).
    pub serving: Option<String>,
    /// Sites the last run stopped or tried to stop (and that do not serve).
    pub stopped: Vec<Stopped>,
}

/// Reads who serves from `state` and the `last` run's journal (the run under way, or the
/// last one finished).
pub fn standing(state: &SiteState, last: Option<LastRun<'_>>) -> Standing {
    let mut stopped = Vec::new();
    let mut switched = false;
    if let Some(run) = last {
        for step in run.steps {
            let id = step.id();
            let Some(record) = run.records.iter().rfind(|r| r.step == id) else {
                continue;
            };
            match step {
                // A stop under way, killed or failed counts as tried, unconfirmed.
                Step::Fence { site } | Step::Quiesce { site } => {
                    stopped.push(Stopped {
                        site: site.clone(),
                        how: if matches!(step, Step::Fence { .. }) {
                            StopKind::Fenced
                        } else {
                            StopKind::Quiesced
                        },
                        confirmed: record.event == Event::Finished
                            && record.confirmed == Some(true),
                        failed: record.event != Event::Finished,
                        at: record.at.clone(),
                        run: run.id.to_string(),
                    });
                }
                Step::SwitchTraffic { .. } => switched = record.event == Event::Finished,
                _ => {}
            }
        }
    }
    let under_way = last.filter(|run| state.run.as_ref().is_some_and(|r| r.id == run.id));
    let is_stopped = |site: &str| stopped.iter().any(|s| s.site == site);
    let serving = match under_way {
        // Traffic moved: the new site takes it, though the run has not completed.
        Some(run) if switched => Some(run.to.to_string()),
        Some(run) if is_stopped(run.from) => None,
        Some(run) => Some(run.from.to_string()),
        None if is_stopped(&state.active) => None,
        None => Some(state.active.clone()),
    };
    stopped.retain(|s| serving.as_deref() != Some(s.site.as_str()));
    Standing { serving, stopped }
}

/// The achieved RPO of a planned move, in milliseconds: how long before the site being
/// left stopped taking writes its final capture began (what was written in between is not
/// in the restored data). `stopped_ms` is when the quiesce was confirmed (writes had stopped
/// by then), `capture_ms` when the capture began, both in ms since the epoch. `None` (unknown)
/// when the quiesce was not confirmed: writes may have gone on after the capture.
pub fn planned_move_rpo_ms(confirmed_stop_ms: Option<i64>, capture_ms: i64) -> Option<u64> {
    let stopped = confirmed_stop_ms?;
    Some(stopped.saturating_sub(capture_ms).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RunKind;

    fn rec(step: &str, event: Event, confirmed: Option<bool>) -> Record {
        Record {
            step: step.into(),
            event,
            at: "2026-12-02T10:00:00Z".into(),
            elapsed_ms: 0,
            detail: None,
            confirmed,
        }
    }

    fn failover_steps() -> Vec<Step> {
        vec![
            Step::Fence {
                site: "primary".into(),
            },
            Step::Restore {
                resource: "db".into(),
                site: "dr".into(),
                wave: 0,
            },
            Step::SwitchTraffic { to: "dr".into() },
            Step::Notify,
        ]
    }

    #[test]
    fn a_failover_stopped_after_the_fence_leaves_no_site_serving() {
        let state = SiteState::initial("primary")
            .begin(RunKind::Failover, "dr", "r1")
            .unwrap();
        let steps = failover_steps();
        let records = [
            rec("fence:primary", Event::Started, None),
            rec("fence:primary", Event::Finished, Some(true)),
            rec("restore:db", Event::Started, None),
            rec("restore:db", Event::Failed, None),
        ];
        let last = LastRun {
            id: "r1",
            from: "primary",
            to: "dr",
            steps: &steps,
            records: &records,
        };
        let s = standing(&state, Some(last));
        assert_eq!(s.serving, None);
        assert_eq!(s.stopped.len(), 1);
        assert_eq!(
            (
                s.stopped[0].site.as_str(),
                s.stopped[0].how,
                s.stopped[0].confirmed
            ),
            ("primary", StopKind::Fenced, true)
        );

        // Before the fence ran, the primary still serves.
        let last = LastRun {
            records: &[],
            ..last
        };
        assert_eq!(
            standing(&state, Some(last)).serving.as_deref(),
            Some("primary")
        );
    }

    #[test]
    fn after_the_run_the_new_site_serves_and_the_old_stays_fenced() {
        let steps = failover_steps();
        let records: Vec<Record> = steps
            .iter()
            .flat_map(|s| {
                let confirmed = matches!(s, Step::Fence { .. }).then_some(false);
                [
                    rec(&s.id(), Event::Started, None),
                    rec(&s.id(), Event::Finished, confirmed),
                ]
            })
            .collect();
        let last = LastRun {
            id: "r1",
            from: "primary",
            to: "dr",
            steps: &steps,
            records: &records,
        };
        let under_way = SiteState::initial("primary")
            .begin(RunKind::Failover, "dr", "r1")
            .unwrap();
        assert_eq!(
            standing(&under_way, Some(last)).serving.as_deref(),
            Some("dr"),
            "traffic switched"
        );
        let done = under_way.complete("r1").unwrap();
        let s = standing(&done, Some(last));
        assert_eq!(s.serving.as_deref(), Some("dr"));
        assert_eq!(s.stopped[0].site, "primary");
        assert!(
            !s.stopped[0].confirmed,
            "a fence that was not confirmed says so"
        );
        assert_eq!(
            standing(&SiteState::initial("primary"), None)
                .serving
                .as_deref(),
            Some("primary")
        );
    }

    #[test]
    fn a_planned_move_has_an_rpo_only_when_its_quiesce_was_confirmed() {
        assert_eq!(planned_move_rpo_ms(Some(1_000), 2_000), Some(0));
        assert_eq!(planned_move_rpo_ms(Some(5_000), 2_000), Some(3_000));
        assert_eq!(planned_move_rpo_ms(None, 2_000), None);
    }
}
