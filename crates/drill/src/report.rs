//! A drill measured: each step's start, duration and outcome from the journal, each
//! resource's verification, the achieved RTO and RPO against the objectives, what teardown
//! left, and the verdict. `drills/<id>/report.json` is this, serialised.

use lifeboat_runbook::journal::{Event, Record};
use serde::{Deserialize, Serialize};

use crate::record::DrillRecord;
use crate::steps::DrillStep;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Failed,
    /// Never began: an earlier failure made it pointless, or the drill was interrupted.
    NotRun,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: String,
    pub status: StepStatus,
    /// Since the drill began.
    pub started_ms: u64,
    pub duration_ms: u64,
    /// The step's summary, or its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How much the live site changed after the restore point, for one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub site: String,
    /// Paths (file trees) or tables (databases) that differ; `None` when unreadable.
    pub count: Option<u64>,
    /// What is counted: `path` (file trees) or `table` (databases).
    pub unit: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Why the live data could not be compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// One resource of the drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceOutcome {
    pub resource: String,
    pub kind: String,
    /// Where it was restored in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_to: Option<String>,
    /// What was verified and held.
    #[serde(default)]
    pub verified: Vec<String>,
    /// What did not hold: a failed restore, a digest or row count that differs, a check.
    #[serde(default)]
    pub problems: Vec<String>,
    /// The verification ran to its end (whatever it found): the data came back and could be
    /// compared. An error that stopped it (a server gone) leaves this false.
    #[serde(default)]
    pub compared: bool,
    pub rpo_objective_ms: u64,
    /// Set by [`assess`]: the restore point's age is within this resource's rpo.
    #[serde(default)]
    pub rpo_met: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

impl ResourceOutcome {
    pub fn new(resource: &str, kind: &str, rpo_objective_ms: u64) -> Self {
        ResourceOutcome {
            resource: resource.to_string(),
            kind: kind.to_string(),
            restored_to: None,
            verified: Vec::new(),
            problems: Vec::new(),
            compared: false,
            rpo_objective_ms,
            rpo_met: false,
            changes: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillReport {
    pub drill: String,
    pub plan: String,
    pub site: String,
    pub declared_site: bool,
    /// The sandbox's folder.
    #[serde(default)]
    pub sandbox: String,
    /// `--only`: the drill covered these resources (and what they depend on), not all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    pub point: String,
    pub point_time: jiff::Timestamp,
    /// Each resource's own restore point, when the drill recorded them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub points: std::collections::BTreeMap<String, crate::record::PointAt>,
    pub started: jiff::Timestamp,
    pub finished: jiff::Timestamp,
    pub steps: Vec<StepTiming>,
    pub resources: Vec<ResourceOutcome>,
    /// From the start to the last recovery step done (sandbox up, restored, started,
    /// checked, verified); `None` when a recovery step failed or never ran.
    pub achieved_rto_ms: Option<u64>,
    pub rto_objective_ms: u64,
    pub rto_met: bool,
    /// The restore point's age when the drill began (of the oldest, with one per resource).
    pub achieved_rpo_ms: u64,
    /// The strictest rpo of the resources drilled.
    pub rpo_objective_ms: u64,
    pub rpo_met: bool,
    pub teardown_complete: bool,
    #[serde(default)]
    pub left_behind: Vec<String>,
    /// The sandbox was kept for inspection (`--keep`): not torn down, by request.
    #[serde(default)]
    pub kept: bool,
    pub interrupted: bool,
    /// Every objective missed, verification failed, step failed and thing left behind.
    pub problems: Vec<String>,
    pub passed: bool,
}

/// What [`assess`] judges.
pub struct Measured<'a> {
    pub record: &'a DrillRecord,
    pub plan: String,
    pub journal: &'a [Record],
    pub resources: Vec<ResourceOutcome>,
    pub rto_objective_ms: u64,
    pub finished: jiff::Timestamp,
    /// What teardown could not remove.
    pub left_behind: Vec<String>,
    /// Teardown was skipped on request.
    pub kept: bool,
    pub interrupted: bool,
}

/// Turns a drill's journal and outcomes into its report and verdict.
pub fn assess(m: Measured<'_>) -> DrillReport {
    let record = m.record;
    let steps: Vec<StepTiming> = record
        .steps
        .iter()
        .map(|step| timing(step, m.journal))
        .collect();
    let recovery: Vec<&StepTiming> = record
        .steps
        .iter()
        .zip(&steps)
        .filter(|(step, _)| step.counts_for_rto())
        .map(|(_, timing)| timing)
        .collect();
    // Recovered when everything came up; a verification that found differences still ran to
    // its end (the data is back, not the same), one that never ran or stopped on an error
    // did not.
    let compared = |name: &str| m.resources.iter().any(|r| r.resource == name && r.compared);
    let recovered = record
        .steps
        .iter()
        .zip(&steps)
        .filter(|(step, _)| step.counts_for_rto())
        .all(|(step, t)| match step {
            DrillStep::Verify { resource } => {
                t.status == StepStatus::Ok || t.status == StepStatus::Failed && compared(resource)
            }
            _ => t.status == StepStatus::Ok,
        });
    let achieved_rto_ms = recovered.then(|| {
        recovery
            .iter()
            .map(|t| t.started_ms + t.duration_ms)
            .max()
            .unwrap_or(0)
    });
    let age_ms = record
        .started
        .duration_since(record.point_time)
        .as_millis()
        .max(0) as u64;
    // Each resource's data is as old as its own restore point.
    let age_of = |resource: &str| {
        record.points.get(resource).map_or(age_ms, |p| {
            record.started.duration_since(p.time).as_millis().max(0) as u64
        })
    };
    // The achieved RPO is the age of the oldest data restored.
    let age_ms = record
        .points
        .keys()
        .map(|r| age_of(r))
        .fold(age_ms, u64::max);
    let mut resources = m.resources;
    for r in &mut resources {
        r.rpo_met = age_of(&r.resource) <= r.rpo_objective_ms;
        // From a capture that skipped entries: nothing proves those come back.
        if record.points.get(&r.resource).is_some_and(|p| p.partial) {
            r.rpo_met = false;
            r.problems.push(
                "restored from a capture that skipped entries: what it skipped did not come \
                 back, so its RPO is not called met"
                    .to_string(),
            );
        }
    }
    let rpo_objective_ms = resources
        .iter()
        .map(|r| r.rpo_objective_ms)
        .min()
        .unwrap_or(0);

    let mut problems = Vec::new();
    if m.interrupted {
        problems.push("the drill was interrupted before it finished".to_string());
    }
    // A resource's own failures are said below, among its problems.
    let said_by_resource = |step: &str| {
        let resource = step
            .strip_prefix("restore:")
            .or_else(|| step.strip_prefix("verify:"));
        resource.is_some_and(|name| {
            resources
                .iter()
                .any(|r| r.resource == name && !r.problems.is_empty())
        })
    };
    for t in &steps {
        if t.status == StepStatus::Failed && !said_by_resource(&t.step) {
            problems.push(format!(
                "step `{}` failed: {}",
                t.step,
                t.detail.as_deref().unwrap_or("no detail")
            ));
        }
    }
    for r in &resources {
        for p in &r.problems {
            problems.push(format!("`{}`: {p}", r.resource));
        }
        if age_of(&r.resource) > r.rpo_objective_ms {
            problems.push(format!(
                "`{}`: RPO missed: the restore point was {} old, past its rpo of {}",
                r.resource,
                duration_text(age_of(&r.resource)),
                duration_text(r.rpo_objective_ms)
            ));
        }
    }
    let rto_met = achieved_rto_ms.is_some_and(|ms| ms <= m.rto_objective_ms);
    match achieved_rto_ms {
        Some(ms) if !rto_met => problems.push(format!(
            "RTO missed: recovery took {}, the objective is {}",
            duration_text(ms),
            duration_text(m.rto_objective_ms)
        )),
        None => problems.push("RTO not achieved: the recovery did not complete".to_string()),
        Some(_) => {}
    }
    for left in &m.left_behind {
        problems.push(format!("left behind: {left}"));
    }
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    DrillReport {
        drill: record.id.clone(),
        plan: m.plan,
        site: record.site.clone(),
        declared_site: record.declared_site,
        sandbox: record.sandbox.display().to_string(),
        only: record.only.clone(),
        point: record.point.clone(),
        point_time: record.point_time,
        points: record.points.clone(),
        started: record.started,
        finished: m.finished,
        steps,
        achieved_rto_ms,
        rto_objective_ms: m.rto_objective_ms,
        rto_met,
        achieved_rpo_ms: age_ms,
        rpo_objective_ms,
        rpo_met: resources.iter().all(|r| r.rpo_met),
        teardown_complete: m.left_behind.is_empty() && !m.kept,
        left_behind: m.left_behind,
        kept: m.kept,
        interrupted: m.interrupted,
        passed: problems.is_empty(),
        problems,
        resources,
    }
}

const INTERRUPTED: &str = "interrupted while it ran";

fn timing(step: &DrillStep, journal: &[Record]) -> StepTiming {
    let id = step.id();
    let start = journal
        .iter()
        .rfind(|r| r.step == id && r.event == Event::Started);
    let end = journal
        .iter()
        .rfind(|r| r.step == id && r.event != Event::Started);
    let started_ms = start.map_or(0, |r| r.elapsed_ms);
    match (start, end) {
        (Some(_), Some(end)) if end.elapsed_ms >= started_ms => StepTiming {
            step: id,
            status: if end.event == Event::Finished {
                StepStatus::Ok
            } else {
                StepStatus::Failed
            },
            started_ms,
            duration_ms: end.elapsed_ms - started_ms,
            detail: end.detail.clone(),
        },
        (Some(_), _) => StepTiming {
            step: id,
            status: StepStatus::Failed,
            started_ms,
            duration_ms: 0,
            detail: Some(INTERRUPTED.into()),
        },
        (None, _) => StepTiming {
            step: id,
            status: StepStatus::NotRun,
            started_ms: 0,
            duration_ms: 0,
            detail: None,
        },
    }
}

/// What differs between the tables a capture counted and the tables as they are now: new
/// tables, dropped ones, other row counts. Each pair is (table, rows).
pub fn table_changes(captured: &[(String, u64)], live: &[(String, u64)]) -> Vec<String> {
    let mut out = Vec::new();
    for (table, rows) in captured {
        match live.iter().find(|(t, _)| t == table) {
            None => out.push(format!(
                "table {table} is gone (it had {})",
                plural(*rows, "row")
            )),
            Some((_, now)) if now != rows => out.push(format!(
                "table {table}: {now} rows, the restore point has {rows}"
            )),
            Some(_) => {}
        }
    }
    for (table, rows) in live {
        if !captured.iter().any(|(t, _)| t == table) {
            out.push(format!("table {table} is new ({})", plural(*rows, "row")));
        }
    }
    out
}

/// One past drill, for the trend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendPoint {
    pub drill: String,
    pub started: jiff::Timestamp,
    #[serde(default)]
    pub interrupted: bool,
    pub achieved_rto_ms: Option<u64>,
    pub achieved_rpo_ms: u64,
    pub rto_objective_ms: u64,
    pub rpo_objective_ms: u64,
    pub passed: bool,
}

impl From<&DrillReport> for TrendPoint {
    fn from(r: &DrillReport) -> Self {
        TrendPoint {
            drill: r.drill.clone(),
            started: r.started,
            interrupted: r.interrupted,
            achieved_rto_ms: r.achieved_rto_ms,
            achieved_rpo_ms: r.achieved_rpo_ms,
            rto_objective_ms: r.rto_objective_ms,
            rpo_objective_ms: r.rpo_objective_ms,
            passed: r.passed,
        }
    }
}

/// `1 file`, `3 files`.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A time for people, to the second: `2026-12-01 03:00:00 UTC`.
pub fn time_text(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration for people: `850 ms`, `2.41 s`, `3m 05s`, `2h 10m`, `3d 4h`.
pub fn duration_text(ms: u64) -> String {
    let secs = ms / 1000;
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.2} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {:02}s", secs / 60, secs % 60),
        3_600_000..86_400_000 => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Phase;
    use crate::steps::{DrillInput, plan_drill};

    fn record() -> DrillRecord {
        let steps = plan_drill(&DrillInput {
            site: "drill".into(),
            live_site: "primary".into(),
            waves: vec![vec!["db".into(), "docs".into()]],
            start: false,
            checks: false,
            changes: true,
        });
        DrillRecord {
            id: "d1".into(),
            site: "drill".into(),
            declared_site: false,
            live_site: "primary".into(),
            point: "ab".repeat(32),
            point_time: "2026-12-01T00:00:00Z".parse().unwrap(),
            points: Default::default(),
            only: vec![],
            waves: vec![vec!["db".into(), "docs".into()]],
            steps,
            sandbox: "/tmp/s".into(),
            started: "2026-12-01T00:10:00Z".parse().unwrap(),
            created: vec![],
            torn_down: vec![],
            phase: Phase::Done,
        }
    }

    fn rec(step: &str, event: Event, ms: u64) -> Record {
        Record {
            step: step.into(),
            event,
            at: "2026-12-01T00:10:00Z".into(),
            elapsed_ms: ms,
            detail: Some(format!("{step} detail")),
            confirmed: None,
        }
    }

    fn all_ok() -> Vec<Record> {
        let mut out = Vec::new();
        let mut t = 0;
        for step in [
            "provision:drill",
            "restore:db",
            "restore:docs",
            "verify:db",
            "verify:docs",
            "changes:primary",
            "teardown",
        ] {
            out.push(rec(step, Event::Started, t));
            t += 1000;
            out.push(rec(step, Event::Finished, t));
        }
        out
    }

    fn measured<'a>(record: &'a DrillRecord, journal: &'a [Record], rto_ms: u64) -> Measured<'a> {
        Measured {
            record,
            plan: "shop".into(),
            journal,
            resources: vec![
                ResourceOutcome::new("db", "postgres", 3_600_000),
                ResourceOutcome::new("docs", "files", 3_600_000),
            ],
            rto_objective_ms: rto_ms,
            finished: "2026-12-01T00:11:00Z".parse().unwrap(),
            left_behind: vec![],
            kept: false,
            interrupted: false,
        }
    }

    #[test]
    fn a_clean_drill_passes_with_the_rto_up_to_its_last_verification() {
        let record = record();
        let journal = all_ok();
        let report = assess(measured(&record, &journal, 60_000));
        assert!(report.passed, "{:?}", report.problems);
        // Five recovery steps of a second each; changes and teardown do not count.
        assert_eq!(report.achieved_rto_ms, Some(5000));
        assert_eq!(report.achieved_rpo_ms, 600_000);
        assert!(report.rto_met && report.rpo_met && report.teardown_complete);
        assert_eq!(report.steps.len(), 7);
    }

    #[test]
    fn each_resource_is_as_old_as_its_own_point_and_the_oldest_is_the_rpo() {
        let mut record = record();
        // `docs` was captured alone two minutes before the drill; `db` ten minutes before.
        record.points.insert(
            "db".into(),
            crate::record::PointAt {
                point: "ab".repeat(32),
                time: "2026-12-01T00:00:00Z".parse().unwrap(),
                partial: false,
            },
        );
        record.points.insert(
            "docs".into(),
            crate::record::PointAt {
                point: "cd".repeat(32),
                time: "2026-12-01T00:08:00Z".parse().unwrap(),
                partial: false,
            },
        );
        let journal = all_ok();
        let mut m = measured(&record, &journal, 60_000);
        m.resources[1].rpo_objective_ms = 180_000;
        let report = assess(m);
        assert_eq!(report.achieved_rpo_ms, 600_000);
        assert!(report.resources[1].rpo_met, "docs is 2 min old");
        assert!(report.rpo_met && report.passed, "{:?}", report.problems);
        assert_eq!(report.points.len(), 2);
        m = measured(&record, &journal, 60_000);
        m.resources[0].rpo_objective_ms = 180_000;
        let report = assess(m);
        assert!(!report.rpo_met);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("`db`: RPO missed") && p.contains("10m")),
            "{:?}",
            report.problems
        );
        // A capture that skipped entries proves nothing about them: not passed.
        record.points.get_mut("docs").unwrap().partial = true;
        let mut m = measured(&record, &journal, 60_000);
        m.resources[1].rpo_objective_ms = 180_000;
        let report = assess(m);
        assert!(!report.resources[1].rpo_met && !report.passed);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("skipped entries")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn missed_objectives_failed_verification_and_leftovers_are_each_a_problem() {
        let record = record();
        let journal = all_ok();
        let mut m = measured(&record, &journal, 2000);
        m.resources[1].rpo_objective_ms = 60_000;
        m.resources[0]
            .problems
            .push("table orders: 2 rows, the restore point has 3".into());
        m.left_behind.push("folder /tmp/s".into());
        let report = assess(m);
        assert!(!report.passed);
        assert!(!report.rto_met && !report.rpo_met && !report.teardown_complete);
        assert_eq!(report.rpo_objective_ms, 60_000);
        let text = report.problems.join("\n");
        assert!(
            text.contains("RTO missed: recovery took 5.00 s, the objective is 2.00 s"),
            "{text}"
        );
        assert!(
            text.contains("`docs`: RPO missed: the restore point was 10m 00s old"),
            "{text}"
        );
        assert!(text.contains("`db`: table orders: 2 rows"), "{text}");
        assert!(text.contains("left behind: folder /tmp/s"), "{text}");
    }

    #[test]
    fn a_failed_or_interrupted_step_means_no_rto_was_achieved() {
        let record = record();
        let mut journal: Vec<Record> = all_ok()
            .into_iter()
            .filter(|r| !(r.step == "restore:docs" && r.event == Event::Finished))
            .collect();
        journal.push(rec("restore:docs", Event::Failed, 2500));
        let report = assess(measured(&record, &journal, 60_000));
        assert_eq!(report.achieved_rto_ms, None);
        assert!(!report.rto_met);
        let failed = report
            .steps
            .iter()
            .find(|s| s.step == "restore:docs")
            .unwrap();
        assert_eq!(failed.status, StepStatus::Failed);
        assert_eq!(failed.duration_ms, 500);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("step `restore:docs` failed"))
        );

        // Killed during a restore: the step began and never ended; later ones never ran.
        let journal: Vec<Record> = all_ok().into_iter().take(3).collect();
        let mut m = measured(&record, &journal, 60_000);
        m.interrupted = true;
        let report = assess(m);
        let status = |id: &str| report.steps.iter().find(|s| s.step == id).unwrap().status;
        assert_eq!(status("restore:db"), StepStatus::Failed);
        assert_eq!(status("verify:db"), StepStatus::NotRun);
        assert!(report.problems[0].contains("interrupted"));
    }

    #[test]
    fn a_verification_that_found_differences_still_recovered() {
        let record = record();
        let mut journal: Vec<Record> = all_ok()
            .into_iter()
            .filter(|r| !(r.step == "verify:db" && r.event == Event::Finished))
            .collect();
        journal.push(rec("verify:db", Event::Failed, 4000));
        let mut m = measured(&record, &journal, 60_000);
        m.resources[0]
            .problems
            .push("table orders: 2 rows, the restore point has 3".into());
        m.resources[0].compared = true;
        let report = assess(m);
        assert_eq!(report.achieved_rto_ms, Some(5000));
        assert!(report.rto_met && !report.passed);
        // Said once, as the resource's problem, not again as its step's failure.
        assert_eq!(
            report.problems,
            ["`db`: table orders: 2 rows, the restore point has 3"]
        );

        // A verification stopped by an error (the server went away) compared nothing.
        let mut m = measured(&record, &journal, 60_000);
        m.resources[0].problems.push("connection refused".into());
        assert_eq!(assess(m).achieved_rto_ms, None);
    }

    #[test]
    fn table_changes_name_new_gone_and_recounted_tables() {
        let captured = vec![("public.a".to_string(), 3), ("public.b".to_string(), 1)];
        let live = vec![("public.a".to_string(), 4), ("public.c".to_string(), 2)];
        assert_eq!(
            table_changes(&captured, &live),
            [
                "table public.a: 4 rows, the restore point has 3",
                "table public.b is gone (it had 1 row)",
                "table public.c is new (2 rows)"
            ]
        );
        assert!(table_changes(&captured, &captured).is_empty());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_text(850), "850 ms");
        assert_eq!(duration_text(2410), "2.41 s");
        assert_eq!(duration_text(185_000), "3m 05s");
        assert_eq!(duration_text(7_800_000), "2h 10m");
        assert_eq!(duration_text(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(2, "path"), "2 paths");
        let t: jiff::Timestamp = "2026-12-01T03:00:00.123456Z".parse().unwrap();
        assert_eq!(time_text(t), "2026-12-01 03:00:00 UTC");
    }
}
