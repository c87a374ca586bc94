//! `lifeboat failover | failback | switchover | resume | status`: runbooks executed step by
//! step with a journal, so a run killed at any point resumes where it stopped.
//!
//! The order of steps, the site state and its epoch, and the journal's meaning live in
//! `lifeboat-runbook`; this module performs the steps (commands, restores, checks, the
//! traffic switch, notifications) and keeps the state on disk (`sitestate`).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use lifeboat_format::manifest::{ResourcePoint, RestorePoint};
use lifeboat_plan::{CheckProbe, Plan, ResourceKind, Traffic, Verify};
use lifeboat_runbook::journal::{Event, Record, Replay};
use lifeboat_runbook::order;
use lifeboat_runbook::standing::{LastRun, StopKind, planned_move_rpo_ms, standing};
use lifeboat_runbook::state::{RunKind, SiteState};
use lifeboat_runbook::steps::{RunInput, Step, plan_run};
use lifeboat_services::checks::{CheckSpec, Probe, SqlTarget, run_check};
use serde::{Deserialize, Serialize};

use super::backup::{Server, selects};
use super::restore::{
    AtSite, AtSiteDone, is_server, mirror_scope, restore_at_site_done, restore_server_at_site,
    scope_of, with_globals,
};
use crate::cli::{FailoverArgs, PlannedArgs, ResumeArgs, RunArgs, SwitchoverArgs};
use crate::context::Context;
use crate::output::{self, Exit};
use crate::sitestate::StateStore;

/// `runs/<id>/run.json`: what a run is, fixed when it begins (the point of a failback once
/// its backup step took it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunFile {
    id: String,
    kind: RunKind,
    from: String,
    to: String,
    epoch: u64,
    /// The restore point restored from (hex id); for a failover, the oldest one chosen.
    #[serde(default)]
    point: Option<String>,
    /// A failover's restore point for each resource, chosen when it began, so a resumed run
    /// restores the same captures. Empty in older run files, and where `point` serves all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    points: BTreeMap<String, PointRef>,
    only: Vec<String>,
    /// Resources restored, in dependency waves.
    waves: Vec<Vec<String>>,
    steps: Vec<Step>,
    /// When the decision was taken: the start of the achieved RTO.
    started: jiff::Timestamp,
    /// `--force`: a planned move goes on when the site left cannot be confirmed quiesced, and
    /// a SQLite file held open at the site is replaced anyway.
    #[serde(default)]
    force: bool,
}

/// One resource's restore point in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PointRef {
    /// Hex id.
    point: String,
    /// When its capture started.
    time: jiff::Timestamp,
    /// The capture skipped entries (a pinned `--point` may supply such a one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
}

pub fn failover(ctx: &Context, args: FailoverArgs) -> Result<Exit> {
    begin(
        ctx,
        RunKind::Failover,
        &args.to,
        args.point.as_deref(),
        &args.run,
        false,
    )
}

pub fn failback(ctx: &Context, args: PlannedArgs) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    let primary = plan.primary_site().0.to_string();
    begin(
        ctx,
        RunKind::Failback,
        &primary,
        None,
        &args.run,
        args.force,
    )
}

pub fn switchover(ctx: &Context, args: SwitchoverArgs) -> Result<Exit> {
    let planned = &args.planned;
    begin(
        ctx,
        RunKind::Switchover,
        &args.to,
        None,
        &planned.run,
        planned.force,
    )
}

fn begin(
    ctx: &Context,
    kind: RunKind,
    to: &str,
    point: Option<&str>,
    args: &RunArgs,
    force: bool,
) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    ctx.require_site(to)?;
    let store = StateStore::of(plan);
    let state = store.load(plan)?;
    let id = format!(
        "{}-{}",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.3fZ"),
        kind.as_str()
    );
    let begun = state.begin(kind, to, &id)?;
    let run_ref = begun.run.clone().expect("a run was begun");
    if matches!(kind, RunKind::Failback | RunKind::Switchover)
        && !force
        && !args.dry_run
        && quiesce_of(plan, &run_ref.from).is_none()
    {
        bail!(
            "a {} stops writes at `{from}` before its final capture, but the plan has no way to: \
             add `quiesce = [[...]]` (and `[[sites.{from}.quiesce_checks]]` to confirm it) to \
             `[sites.{from}]`{fence}; or move with --force, losing what is written at `{from}` \
             after the capture (the achieved RPO is then unknown). Nothing was changed",
            kind.as_str(),
            from = run_ref.from,
            fence = if run_ref.from == plan.primary_site().0 {
                " or declare `[fence]`"
            } else {
                ""
            },
        );
    }
    let waves = resource_waves(plan, &run_ref.to, &args.only)?;
    let choice = match kind {
        RunKind::Failover => Some(choose_point(ctx, point, &waves)?),
        // The site being left is captured by the run's first step.
        RunKind::Failback | RunKind::Switchover => None,
    };
    let steps = plan_run(
        kind,
        &run_input(plan, kind, &run_ref.from, &run_ref.to, &waves),
    );
    let run = RunFile {
        id: id.clone(),
        kind,
        from: run_ref.from.clone(),
        to: run_ref.to.clone(),
        epoch: run_ref.epoch,
        point: choice
            .as_ref()
            .and_then(|c| c.oldest())
            .map(|c| c.point.to_string()),
        points: choice
            .iter()
            .flat_map(|c| &c.chosen)
            .map(|c| {
                let at = PointRef {
                    point: c.point.to_string(),
                    time: c.time,
                    partial: c.partial,
                };
                (c.resource.clone(), at)
            })
            .collect(),
        only: args.only.clone(),
        waves,
        steps,
        started: jiff::Timestamp::now(),
        force,
    };
    if args.dry_run {
        print_dry_run(ctx, plan, &run);
        return Ok(Exit::Success);
    }
    if !args.yes {
        confirm(&run)?;
    }
    let _lock = store.lock()?;
    // Another run may have begun, or ended, while we asked: begin from the state as it is.
    let state = store.load(plan)?;
    let begun = state.begin(kind, &run.to, &id)?;
    let mut run = run;
    let current = begun.run.as_ref().expect("a run was begun");
    if current.from != run.from {
        bail!(
            "the active site changed to `{}` meanwhile; nothing was done, start again",
            current.from
        );
    }
    run.epoch = current.epoch;
    store.write_run_file(&id, "run.json", &serde_json::to_vec_pretty(&run)?)?;
    store.save(&begun)?;
    execute(ctx, plan, &store, run)
}

pub fn resume(ctx: &Context, args: ResumeArgs) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    let store = StateStore::of(plan);
    let _lock = store.lock()?;
    let state = store.load(plan)?;
    let Some(current) = &state.run else {
        bail!(
            "no run is under way: the active site is `{}` (epoch {})",
            state.active,
            state.epoch
        );
    };
    let mut run: RunFile = serde_json::from_slice(&store.read_run_file(&current.id, "run.json")?)
        .with_context(|| format!("run {} is damaged", current.id))?;
    if args.force && !run.force {
        run.force = true;
        store.write_run_file(&run.id, "run.json", &serde_json::to_vec_pretty(&run)?)?;
    }
    if !ctx.global.json {
        println!(
            "resuming {} {} → {} (run {})",
            run.kind.as_str(),
            run.from,
            run.to,
            run.id
        );
    }
    execute(ctx, plan, &store, run)
}

/// Every resource with what it depends on, narrowed by `only` (with what they depend on).
pub(crate) fn chosen_resources(plan: &Plan, only: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    let all: Vec<(String, Vec<String>)> = plan
        .resources
        .iter()
        .map(|(name, r)| (name.clone(), r.depends_on.clone()))
        .collect();
    if only.is_empty() {
        return Ok(all);
    }
    let chosen = order::with_dependencies(&all, only).map_err(|unknown| {
        crate::output::usage(format!("--only {unknown}: the plan has no such resource"))
    })?;
    Ok(all
        .into_iter()
        .filter(|(name, _)| chosen.contains(name))
        .collect())
}

/// The resources restored at `to`, narrowed by `only` (with what they depend on), in waves.
fn resource_waves(plan: &Plan, to: &str, only: &[String]) -> Result<Vec<Vec<String>>> {
    let mut narrowed = chosen_resources(plan, only)?;
    let unbound: Vec<String> = narrowed
        .iter()
        .filter(|(name, _)| plan.resource(name).is_some_and(|r| r.binding(to).is_none()))
        .map(|(n, _)| n.clone())
        .collect();
    if !unbound.is_empty() {
        tracing::warn!(
            "not bound at site `{to}`, so not restored there: {}",
            unbound.join(", ")
        );
        narrowed.retain(|(n, _)| !unbound.contains(n));
        for (_, deps) in &mut narrowed {
            deps.retain(|d| !unbound.contains(d));
        }
    }
    Ok(order::waves(&narrowed)?)
}

/// `--point` for every resource the run restores, or each one's own newest complete capture.
fn choose_point(
    ctx: &Context,
    spec: Option<&str>,
    waves: &[Vec<String>],
) -> Result<crate::choice::Choice> {
    let repo = ctx.open_repository()?;
    let wanted: Vec<String> = waves.iter().flatten().cloned().collect();
    crate::choice::choose(&repo, spec, &wanted)
}

fn run_input(plan: &Plan, kind: RunKind, from: &str, to: &str, waves: &[Vec<String>]) -> RunInput {
    let target = plan.site(to).expect("checked");
    let leaving = plan.site(from);
    RunInput {
        from: from.to_string(),
        to: to.to_string(),
        waves: waves.to_vec(),
        fence: kind == RunKind::Failover && plan.fence.is_some(),
        provision: !target.provision.is_empty(),
        start: !target.start.is_empty(),
        checks: !target.checks.is_empty(),
        traffic: plan.traffic.is_some(),
        decommission_from: leaving.is_some_and(|s| s.on_demand && !s.decommission.is_empty()),
    }
}

fn confirm(run: &RunFile) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to start a {} without --yes: not on a terminal to confirm",
            run.kind.as_str()
        );
    }
    eprint!(
        "{} from `{}` to `{}`{}: {} steps. Type `{}` to go on: ",
        run.kind.as_str(),
        run.from,
        run.to,
        point_text(run),
        run.steps.len(),
        run.to
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != run.to {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

/// What each step would touch, for `--dry-run`.
fn describe_step(plan: &Plan, run: &RunFile, step: &Step) -> String {
    let commands = |cmds: &[lifeboat_plan::Command]| {
        if cmds.is_empty() {
            "nothing".to_string()
        } else {
            cmds.iter()
                .map(|c| format!("`{}`", c.argv().join(" ")))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match step {
        Step::Fence { site } => format!(
            "fence `{site}` with {}",
            plan.fence
                .as_ref()
                .map_or("nothing".into(), |f| commands(&f.run))
        ),
        Step::Provision { site } => format!(
            "provision `{site}` with {}",
            plan.site(site)
                .map_or("nothing".into(), |s| commands(&s.provision))
        ),
        Step::Quiesce { site } => match quiesce_of(plan, site) {
            Some(q) => format!(
                "stop writes at `{site}` with its {} {}{}, before its final capture",
                q.source,
                commands(q.commands),
                if q.checks.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", confirmed by {}",
                        q.checks
                            .iter()
                            .map(|c| format!("`{}`", c.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
            None => format!(
                "stop writes at `{site}`: the plan declares no `quiesce` for it (refused \
                 without --force)"
            ),
        },
        Step::Backup { site } => format!("capture a new restore point at `{site}`"),
        Step::Restore {
            resource,
            site,
            wave,
        } => format!(
            "restore `{resource}` (wave {wave}) from {} into its binding at `{site}`{}{}",
            point_of(run, resource).map_or("the new restore point".into(), |p| format!(
                "restore point {}",
                &p[..8.min(p.len())]
            )),
            plan.resource(resource)
                .and_then(|r| r.binding(site))
                .map(|b| format!(": {}", binding_text(b)))
                .unwrap_or_default(),
            match plan.resource(resource).map(|r| &r.kind) {
                Some(ResourceKind::Files(_)) =>
                    " (mirrored: what the point lacks there is removed, within include/exclude)",
                _ => "",
            }
        ),
        Step::Start { site } => format!(
            "start `{site}` with {}",
            plan.site(site)
                .map_or("nothing".into(), |s| commands(&s.start))
        ),
        Step::Checks { site } => format!(
            "health checks of `{site}`: {}",
            plan.site(site)
                .map(|s| s
                    .checks
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        Step::SwitchTraffic { to } => match &plan.traffic {
            Some(Traffic::Command(c)) => format!(
                "switch traffic to `{to}` with {}",
                commands(c.at.get(to).map(Vec::as_slice).unwrap_or_default())
            ),
            Some(Traffic::Dns(d)) => format!(
                "update {} {} at {} to {}",
                d.name,
                d.record_type.as_str(),
                d.server,
                d.at.get(to)
                    .map(|t| t.addresses.join(", "))
                    .unwrap_or_default()
            ),
            None => "no traffic switch".into(),
        },
        Step::ConfirmTraffic { to } => format!("confirm traffic reaches `{to}`"),
        Step::Decommission { site } => format!(
            "decommission `{site}` with {}",
            plan.site(site)
                .map_or("nothing".into(), |s| commands(&s.decommission))
        ),
        Step::Notify => format!("notify {} destination(s)", plan.notify.len()),
    }
}

pub(crate) fn binding_text(binding: lifeboat_plan::Binding<'_>) -> String {
    match binding {
        lifeboat_plan::Binding::Path(p) => p.path.display().to_string(),
        lifeboat_plan::Binding::Database(d) => d.url.clone(),
        lifeboat_plan::Binding::Command(c) => {
            c.apply_command().map_or("no apply command".into(), |a| {
                format!("`{}`", a.argv().join(" "))
            })
        }
        // Without the query string: it may carry a token.
        lifeboat_plan::Binding::Http(h) => h
            .url
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// The restore point `resource` is restored from: its own, else the run's.
fn point_of<'a>(run: &'a RunFile, resource: &str) -> Option<&'a str> {
    run.points
        .get(resource)
        .map(|p| p.point.as_str())
        .or(run.point.as_deref())
}

/// For the confirmation: which restore point(s) the run restores from.
fn point_text(run: &RunFile) -> String {
    let mut ids: Vec<&str> = run.points.values().map(|p| p.point.as_str()).collect();
    ids.sort();
    ids.dedup();
    match (ids.as_slice(), run.point.as_deref()) {
        ([], None) => String::new(),
        ([], Some(p)) | (&[p], _) => format!(" from restore point {}", &p[..8.min(p.len())]),
        (many, _) => format!(
            " from {} restore points (each resource's newest complete capture)",
            many.len()
        ),
    }
}

fn print_dry_run(ctx: &Context, plan: &Plan, run: &RunFile) {
    let removals = dry_removals(ctx, plan, run);
    let removes = |step: &Step| match step {
        Step::Restore { resource, .. } => removals
            .iter()
            .find(|(name, _)| name == resource)
            .map(|(_, gone)| gone),
        _ => None,
    };
    let now = jiff::Timestamp::now();
    let age = |t: jiff::Timestamp| now.duration_since(t).as_millis().max(0) as u64;
    if ctx.global.json {
        let steps: Vec<_> = run
            .steps
            .iter()
            .map(|s| {
                let mut step = serde_json::json!({ "id": s.id(), "step": s, "touches": describe_step(plan, run, s) });
                if let Some(gone) = removes(s) {
                    step["removes"] = serde_json::json!(gone);
                }
                step
            })
            .collect();
        output::json(&serde_json::json!({
            "dry_run": true, "kind": run.kind, "from": run.from, "to": run.to,
            "point": run.point, "waves": run.waves, "steps": steps,
            "points": run.points.iter().map(|(resource, p)| serde_json::json!({
                "resource": resource, "point": p.point, "time": p.time, "age_ms": age(p.time),
            })).collect::<Vec<_>>(),
        }));
        return;
    }
    println!(
        "{} {} → {} (dry run: nothing is changed)",
        run.kind.as_str(),
        run.from,
        run.to
    );
    if !run.points.is_empty() {
        println!("restore points (each resource's newest complete capture, or --point):");
        let width = run.points.keys().map(|k| k.len()).max().unwrap_or(0);
        for (resource, p) in &run.points {
            println!(
                "  {resource:<width$}  {}  taken {}  ({} old){}",
                &p.point[..8.min(p.point.len())],
                output::zoned_time(p.time),
                output::millis(age(p.time)),
                if p.partial {
                    "  PARTIAL: the entries its capture skipped are not restored"
                } else {
                    ""
                }
            );
        }
    }
    for (i, step) in run.steps.iter().enumerate() {
        println!(
            "{:>3}. {:<28} {}",
            i + 1,
            step.id(),
            describe_step(plan, run, step)
        );
        if let Some(gone) = removes(step).filter(|g| g.count > 0) {
            println!(
                "     {:<28} would remove {} path(s) the point lacks there: {}",
                "",
                gone.count,
                gone.listing()
            );
        }
    }
}

/// Runs every step the journal does not show finished, then completes the run. A failed
/// step stops the run (it stays under way, resumable) and sends one alert.
fn execute(ctx: &Context, plan: &Plan, store: &StateStore, mut run: RunFile) -> Result<Exit> {
    let replay = Replay::of(&store.journal(&run.id)?);
    let journal = Mutex::new(());
    let remaining: Vec<Step> = replay.remaining(&run.steps).into_iter().cloned().collect();
    let mut i = 0;
    while i < remaining.len() {
        // Restores of one wave depend on nothing in it: run them together.
        let batch: Vec<&Step> = match &remaining[i] {
            Step::Restore { wave, .. } => remaining[i..]
                .iter()
                .take_while(|s| matches!(s, Step::Restore { wave: w, .. } if w == wave))
                .collect(),
            step => vec![step],
        };
        i += batch.len();
        admit(plan, store, &run)?;
        let failed: Vec<(Step, anyhow::Error)> = match batch.as_slice() {
            [step @ Step::Backup { site }] => {
                // The point it takes is what the rest of the run restores.
                let before = run.clone();
                let taken = step_done(ctx, store, &before, &journal, step, || {
                    let (id, point) = super::backup::capture_at(
                        ctx,
                        site,
                        &run.waves.iter().flatten().cloned().collect::<Vec<_>>(),
                        vec![format!("{}:{}", run.kind.as_str(), run.id)],
                    )?;
                    if !point.is_complete() {
                        bail!(
                            "restore point {} at `{site}` is incomplete: {}",
                            id.short(),
                            point
                                .resources
                                .iter()
                                .filter(|r| r.root.is_none())
                                .map(|r| r.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                    run.point = Some(id.to_string());
                    store.write_run_file(&run.id, "run.json", &serde_json::to_vec_pretty(&run)?)?;
                    Ok(format!("restore point {}", id.short()))
                });
                taken
                    .err()
                    .map(|e| ((*step).clone(), e))
                    .into_iter()
                    .collect()
            }
            [step @ (Step::Fence { .. } | Step::Quiesce { .. })] => {
                stop_site(ctx, plan, store, &run, &journal, step)
                    .err()
                    .map(|e| ((*step).clone(), e))
                    .into_iter()
                    .collect()
            }
            _ => std::thread::scope(|s| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|step| {
                        let run = &run;
                        let journal = &journal;
                        let handle = s.spawn(move || {
                            step_done(ctx, store, run, journal, step, || {
                                perform(ctx, plan, run, step)
                            })
                        });
                        (*step, handle)
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|(step, h)| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow!("the step panicked")))
                            .err()
                            .map(|e| (step.clone(), e))
                    })
                    .collect()
            }),
        };
        if !failed.is_empty() {
            alert_stopped(ctx, plan, &run, &failed);
        }
        if let Some((_, first)) = failed.into_iter().next() {
            return Err(first);
        }
    }
    let state = store.load(plan)?.complete(&run.id)?;
    store.save(&state)?;
    let report = build_report(ctx, plan, store, &run)?;
    store.write_run_file(&run.id, "report.json", &serde_json::to_vec_pretty(&report)?)?;
    print_report(ctx, &report);
    Ok(Exit::Success)
}

/// How a planned move stops writes at a site: its `quiesce`, else the plan's `[fence]` when
/// the site is the primary; confirmed by the site's `quiesce_checks`.
struct Quiesce<'a> {
    commands: &'a [lifeboat_plan::Command],
    /// `quiesce` or `[fence]`, for messages.
    source: &'static str,
    checks: &'a [lifeboat_plan::Check],
}

/// The site's way to quiesce, `None` when the plan declares none.
fn quiesce_of<'a>(plan: &'a Plan, site: &str) -> Option<Quiesce<'a>> {
    let declared = plan.site(site)?;
    let (commands, source) = if !declared.quiesce.is_empty() {
        (declared.quiesce.as_slice(), "quiesce")
    } else if site == plan.primary_site().0
        && let Some(fence) = &plan.fence
    {
        (fence.run.as_slice(), "[fence]")
    } else {
        (&[][..], "quiesce")
    };
    if commands.is_empty() && declared.quiesce_checks.is_empty() {
        return None;
    }
    Some(Quiesce {
        commands,
        source,
        checks: &declared.quiesce_checks,
    })
}

/// Stops writes at `site` and confirms it: every command succeeds, then every
/// `quiesce_checks` entry passes (each with its retries). `Err` says why it is not confirmed.
fn quiesce(plan: &Plan, run: &RunFile, site: &str) -> std::result::Result<String, String> {
    let Some(q) = quiesce_of(plan, site) else {
        return Err(format!(
            "the plan declares no `quiesce` for `{site}` (nor `[fence]` for the primary)"
        ));
    };
    let env = site_env(plan, run, site);
    let mut said = Vec::new();
    if !q.commands.is_empty() {
        let ran = run_commands(plan, &env, q.commands)
            .map_err(|e| format!("its {} failed: {}", q.source, output::chain(&e)))?;
        said.push(format!("{}: {ran}", q.source));
    }
    for check in q.checks {
        let spec = check_spec(plan, site, check, &env).map_err(|e| output::chain(&e))?;
        let outcome = run_check(&spec);
        if !outcome.ok {
            return Err(format!(
                "quiesce check `{}` failed after {} attempt(s): {}",
                outcome.name, outcome.attempts, outcome.detail
            ));
        }
        said.push(format!("{} ({})", outcome.name, outcome.detail));
    }
    Ok(said.join("; "))
}

/// The fence of a failover (best effort: finished either way, confirmed or not) or the
/// quiesce of a planned move (not confirmed: the run stops, unless `--force`). The journal
/// records whether the site was confirmed stopped.
fn stop_site(
    ctx: &Context,
    plan: &Plan,
    store: &StateStore,
    run: &RunFile,
    journal: &Mutex<()>,
    step: &Step,
) -> Result<String> {
    step_journaled(ctx, store, run, journal, step, || match step {
        Step::Fence { site } => {
            let fence = plan
                .fence
                .as_ref()
                .map(|f| f.run.as_slice())
                .unwrap_or_default();
            // The old primary may be gone for good; what happened is recorded.
            Ok(match run_all(plan, run, site, fence) {
                Ok(said) => (format!("fenced (confirmed): {said}"), Some(true)),
                Err(e) => (format!("NOT confirmed: {e:#}"), Some(false)),
            })
        }
        Step::Quiesce { site } => match quiesce(plan, run, site) {
            Ok(said) => Ok((format!("quiesced (confirmed): {said}"), Some(true))),
            Err(why) if run.force => Ok((
                format!(
                    "NOT confirmed, going on (--force; writes after the capture are lost, the \
                     achieved RPO is unknown): {why}"
                ),
                Some(false),
            )),
            Err(why) => bail!(
                "`{site}` could not be confirmed quiesced: {why}. Nothing was captured or \
                 restored and traffic did not move (what the quiesce did at `{site}` is not \
                 undone); fix the cause and resume, or resume with --force to move without \
                 (what is written at `{site}` after the capture is lost)"
            ),
        },
        other => bail!("`{}` is not a fence or quiesce", other.id()),
    })
}

/// One alert for a run that stopped: which step failed at which site, why, and the command
/// that resumes it. Delivery is reported, never fatal.
fn alert_stopped(ctx: &Context, plan: &Plan, run: &RunFile, failed: &[(Step, anyhow::Error)]) {
    if plan.notify.is_empty() {
        return;
    }
    let Some((step, error)) = failed.first() else {
        return;
    };
    let site = step.site().unwrap_or(&run.to);
    let resume = ctx.command_line(&["resume"]);
    let quiesce = matches!(step, Step::Quiesce { .. });
    let text = format!(
        "lifeboat: {} from `{}` to `{}` STOPPED: step `{}` failed at site `{site}` (run {}){}; \
         resume with: {resume}{}",
        run.kind.as_str(),
        run.from,
        run.to,
        step.id(),
        run.id,
        if failed.len() > 1 {
            format!(" (and {} more step(s))", failed.len() - 1)
        } else {
            String::new()
        },
        if quiesce {
            " (or add --force to move without a confirmed quiesce)"
        } else {
            ""
        }
    );
    let steps: Vec<serde_json::Value> = failed
        .iter()
        .map(|(step, e)| {
            serde_json::json!({
                "step": step.id(), "site": step.site(), "error": step_error(e),
            })
        })
        .collect();
    let alert = serde_json::json!({
        "event": "run_stopped", "kind": run.kind, "from": run.from, "to": run.to,
        "run": run.id, "epoch": run.epoch, "step": step.id(), "site": site,
        "error": step_error(error), "failed": steps, "resume": resume, "text": text,
    });
    let said = deliver(plan, &alert, &text);
    if !ctx.global.json {
        eprintln!("alert: {said}");
    } else {
        tracing::info!("alert: {said}");
    }
}

/// What a failed step said (its error without the run's advice around it).
fn step_error(e: &anyhow::Error) -> String {
    match e.downcast_ref::<StepFailed>() {
        Some(failed) => failed.error.clone(),
        None => output::chain(e),
    }
}

/// Refuses to act for a run that is no longer the one under way, or under a stale epoch.
fn admit(plan: &Plan, store: &StateStore, run: &RunFile) -> Result<()> {
    let state = store.load(plan)?;
    match &state.run {
        Some(current) if current.id == run.id => Ok(state.admit(run.epoch)?),
        _ => bail!(
            "run {} is no longer under way ({}, epoch {}): refusing to act under epoch {}",
            run.id,
            state.describe(),
            state.epoch,
            run.epoch
        ),
    }
}

/// A step that failed: its error, and the run's advice on resuming.
#[derive(Debug)]
struct StepFailed {
    step: String,
    run: String,
    error: String,
    resume: String,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step `{}` of run {} failed: {}\nthe run is kept: fix the cause, then `lifeboat \
             resume` (`{}`)",
            self.step, self.run, self.error, self.resume
        )
    }
}

impl std::error::Error for StepFailed {}

/// Journals a step around `work`: started, then finished with its summary or failed with
/// its error (the run stays resumable).
fn step_done(
    ctx: &Context,
    store: &StateStore,
    run: &RunFile,
    journal: &Mutex<()>,
    step: &Step,
    work: impl FnOnce() -> Result<String>,
) -> Result<String> {
    step_journaled(ctx, store, run, journal, step, || {
        work().map(|detail| (detail, None))
    })
}

/// [`step_done`] for a step whose work also says whether it confirmed a site stopped.
fn step_journaled(
    ctx: &Context,
    store: &StateStore,
    run: &RunFile,
    journal: &Mutex<()>,
    step: &Step,
    work: impl FnOnce() -> Result<(String, Option<bool>)>,
) -> Result<String> {
    let id = step.id();
    let record = |event, detail: Option<String>, confirmed| Record {
        step: id.clone(),
        event,
        at: jiff::Timestamp::now().to_string(),
        elapsed_ms: elapsed_ms(run),
        detail,
        confirmed,
    };
    {
        let _guard = journal.lock().unwrap_or_else(|p| p.into_inner());
        store.append(&run.id, &record(Event::Started, None, None))?;
    }
    if !ctx.global.json && !ctx.global.quiet {
        eprintln!("→ {id}");
    }
    let started = Instant::now();
    let outcome = work();
    let _guard = journal.lock().unwrap_or_else(|p| p.into_inner());
    match outcome {
        Ok((detail, confirmed)) => {
            store.append(
                &run.id,
                &record(Event::Finished, Some(detail.clone()), confirmed),
            )?;
            if !ctx.global.json {
                println!(
                    "✓ {id} ({}): {detail}",
                    output::millis(started.elapsed().as_millis() as u64)
                );
            }
            Ok(detail)
        }
        Err(e) => {
            let error = output::chain(&e);
            store.append(&run.id, &record(Event::Failed, Some(error.clone()), None))?;
            if !ctx.global.json {
                println!("✗ {id}: {error}");
            }
            Err(StepFailed {
                step: id,
                run: run.id.clone(),
                error,
                resume: ctx.command_line(&["resume"]),
            }
            .into())
        }
    }
}

fn elapsed_ms(run: &RunFile) -> u64 {
    jiff::Timestamp::now()
        .duration_since(run.started)
        .as_millis()
        .max(0) as u64
}

/// The environment a site's commands see.
fn site_env(plan: &Plan, run: &RunFile, site: &str) -> Vec<(String, String)> {
    command_env(
        plan,
        site,
        &[
            ("LIFEBOAT_RUN", run.id.clone()),
            ("LIFEBOAT_KIND", run.kind.as_str().to_string()),
            ("LIFEBOAT_FROM", run.from.clone()),
            ("LIFEBOAT_TO", run.to.clone()),
            ("LIFEBOAT_EPOCH", run.epoch.to_string()),
        ],
    )
}

/// `LIFEBOAT_SITE`, the run's `facts`, `LIFEBOAT_AT_<RESOURCE>` (where each resource bound at
/// the site lives: a path, a server URL without its password, an apply command) and the
/// site's own `env`.
pub(crate) fn command_env(
    plan: &Plan,
    site: &str,
    facts: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut env = vec![("LIFEBOAT_SITE".to_string(), site.to_string())];
    env.extend(facts.iter().map(|(k, v)| (k.to_string(), v.clone())));
    for (name, resource) in &plan.resources {
        if let Some(binding) = resource.binding(site) {
            env.push((at_variable(name), binding_text(binding)));
        }
    }
    if let Some(s) = plan.site(site) {
        env.extend(s.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    env
}

/// `LIFEBOAT_AT_ORDERS_DB` for resource `orders-db`.
pub(crate) fn at_variable(resource: &str) -> String {
    let name: String = resource
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("LIFEBOAT_AT_{name}")
}

fn run_all(
    plan: &Plan,
    run: &RunFile,
    site: &str,
    commands: &[lifeboat_plan::Command],
) -> Result<String> {
    run_commands(plan, &site_env(plan, run, site), commands)
}

/// Runs `commands` one after the other in the plan's folder; says what each printed.
pub(crate) fn run_commands(
    plan: &Plan,
    env: &[(String, String)],
    commands: &[lifeboat_plan::Command],
) -> Result<String> {
    if commands.is_empty() {
        return Ok("nothing to run".into());
    }
    let mut said = Vec::new();
    for command in commands {
        let out = lifeboat_services::run_command(command.argv(), plan.plan_dir(), env)?;
        said.push(if out.is_empty() {
            format!("`{}` ok", command.argv().join(" "))
        } else {
            format!("`{}`: {out}", command.argv().join(" "))
        });
    }
    Ok(said.join("; "))
}

fn perform(ctx: &Context, plan: &Plan, run: &RunFile, step: &Step) -> Result<String> {
    match step {
        Step::Fence { .. } | Step::Quiesce { .. } => unreachable!("performed by execute"),
        Step::Provision { site } => run_all(plan, run, site, &site_of(plan, site)?.provision),
        Step::Start { site } => run_all(plan, run, site, &site_of(plan, site)?.start),
        Step::Decommission { site } => run_all(plan, run, site, &site_of(plan, site)?.decommission),
        Step::Backup { .. } => unreachable!("performed by execute"),
        Step::Restore { resource, site, .. } => restore_resource(ctx, plan, run, resource, site),
        Step::Checks { site } => {
            let checks = &site_of(plan, site)?.checks;
            let env = site_env(plan, run, site);
            let mut passed = Vec::new();
            for check in checks {
                let spec = check_spec(plan, site, check, &env)?;
                let outcome = run_check(&spec);
                if !outcome.ok {
                    bail!(
                        "check `{}` failed after {} attempt(s): {}",
                        outcome.name,
                        outcome.attempts,
                        outcome.detail
                    );
                }
                passed.push(format!("{} ({})", outcome.name, outcome.detail));
            }
            Ok(format!("all green: {}", passed.join("; ")))
        }
        Step::SwitchTraffic { to } => match &plan.traffic {
            Some(Traffic::Command(c)) => run_all(
                plan,
                run,
                to,
                c.at.get(to).map(Vec::as_slice).unwrap_or_default(),
            ),
            Some(Traffic::Dns(dns)) => switch_dns(plan, dns, run, to),
            None => Ok("no traffic switch in the plan".into()),
        },
        Step::ConfirmTraffic { to } => match &plan.traffic {
            Some(Traffic::Dns(dns)) => {
                let expected = dns_values(dns, to)?;
                let answer = lifeboat_traffic::confirm(
                    dns_server(dns)?,
                    &dns.name,
                    record_type(dns),
                    &expected,
                    DNS_TIMEOUT,
                    std::time::Duration::from_secs(120),
                )?;
                Ok(format!(
                    "{} answers {} {}",
                    dns.server,
                    dns.name,
                    answer.values.join(", ")
                ))
            }
            _ => Ok("the traffic command succeeded; nothing further to confirm".into()),
        },
        Step::Notify => Ok(notify(plan, run)),
    }
}

const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn dns_server(dns: &lifeboat_plan::DnsTraffic) -> Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    dns.server
        .to_socket_addrs()
        .with_context(|| format!("the DNS server `{}`", dns.server))?
        .next()
        .ok_or_else(|| anyhow!("the DNS server `{}` has no address", dns.server))
}

fn record_type(dns: &lifeboat_plan::DnsTraffic) -> lifeboat_traffic::RecordType {
    match dns.record_type {
        lifeboat_plan::RecordType::A => lifeboat_traffic::RecordType::A,
        lifeboat_plan::RecordType::Aaaa => lifeboat_traffic::RecordType::Aaaa,
        lifeboat_plan::RecordType::Cname => lifeboat_traffic::RecordType::Cname,
        lifeboat_plan::RecordType::Ns => lifeboat_traffic::RecordType::Ns,
    }
}

fn dns_values(dns: &lifeboat_plan::DnsTraffic, site: &str) -> Result<Vec<String>> {
    dns.at
        .get(site)
        .map(|t| t.addresses.clone())
        .ok_or_else(|| anyhow!("[traffic] has no record for site `{site}`"))
}

/// One atomic, TSIG-signed update from the old site's records to the new one's.
fn switch_dns(
    plan: &Plan,
    dns: &lifeboat_plan::DnsTraffic,
    run: &RunFile,
    to: &str,
) -> Result<String> {
    let tsig = match &dns.tsig {
        Some(tsig) => Some(lifeboat_traffic::TsigKey {
            name: tsig.name.clone(),
            algorithm: match tsig.algorithm {
                lifeboat_plan::TsigAlgorithm::HmacSha256 => {
                    lifeboat_traffic::TsigAlgorithm::HmacSha256
                }
                lifeboat_plan::TsigAlgorithm::HmacSha512 => {
                    lifeboat_traffic::TsigAlgorithm::HmacSha512
                }
            },
            secret_base64: tsig
                .secret
                .resolve()
                .context("resolving the TSIG secret")?
                .expose()
                .trim()
                .to_string(),
        }),
        None => None,
    };
    let switch = lifeboat_traffic::DnsSwitch {
        server: dns_server(dns)?,
        zone: dns.zone.clone(),
        name: dns.name.clone(),
        record_type: record_type(dns),
        ttl: dns.ttl,
        tsig,
        old: dns_values(dns, &run.from)?,
        new: dns_values(dns, to)?,
        timeout: DNS_TIMEOUT,
    };
    let outcome = lifeboat_traffic::switch_dns(&switch)?;
    let rto = plan.objectives.rto.as_secs();
    let (said, ttl) = match &outcome {
        lifeboat_traffic::SwitchOutcome::Switched { before, after } => (
            format!(
                "{} {} switched from {} to {}",
                dns.name,
                dns.record_type.as_str(),
                before.values.join(", "),
                after.values.join(", ")
            ),
            before.ttl,
        ),
        lifeboat_traffic::SwitchOutcome::AlreadySwitched { current } => (
            format!(
                "{} {} already answers {}",
                dns.name,
                dns.record_type.as_str(),
                current.values.join(", ")
            ),
            current.ttl,
        ),
    };
    match ttl.and_then(|ttl| lifeboat_traffic::ttl_warning(ttl, rto)) {
        Some(warning) => {
            tracing::warn!("{warning}");
            Ok(format!("{said}; warning: {warning}"))
        }
        None => Ok(said),
    }
}

fn site_of<'a>(plan: &'a Plan, site: &str) -> Result<&'a lifeboat_plan::Site> {
    plan.site(site)
        .ok_or_else(|| anyhow!("the plan has no site `{site}` (any more)"))
}

/// Restores every captured part of `resource` (a server's accounts first) into its binding
/// at `site`, replacing what is there (a resumed step may find its own half-done work), then
/// runs the resource's `verify` entries.
fn restore_resource(
    ctx: &Context,
    plan: &Plan,
    run: &RunFile,
    resource: &str,
    site: &str,
) -> Result<String> {
    let point_id =
        point_of(run, resource).ok_or_else(|| anyhow!("the run has no restore point yet"))?;
    let repo = ctx.open_repository()?;
    let (_, point) = repo.find_point(point_id)?;
    let chosen: Vec<&ResourcePoint> = point
        .resources
        .iter()
        .filter(|r| selects(resource, &r.name))
        .collect();
    if chosen.is_empty() {
        bail!(
            "restore point {} has no `{resource}`",
            &point_id[..8.min(point_id.len())]
        );
    }
    let how = AtSite {
        replace: true,
        // `--force` also replaces a SQLite file that processes at the site hold open.
        force: run.force,
        rename: &[],
        jobs: 1,
        staging: None,
        mark: None,
        // Restores of a wave run side by side: no bar each.
        progress: None,
    };
    let mut done = Vec::new();
    let mut removed = Vec::new();
    let items = with_globals(&point, chosen);
    // A database server's accounts, databases and grants go in dependency order, together.
    let outcomes: Vec<Result<AtSiteDone>> = if is_server(plan, resource) {
        restore_server_at_site(&repo, plan, site, &items, &|_| &how, &mut |_| None)
    } else {
        items
            .iter()
            .map(|r| restore_at_site_done(&repo, plan, site, r, &how))
            .collect()
    };
    for (r, outcome) in items.iter().zip(outcomes) {
        let what = outcome.with_context(|| format!("restoring `{}`", r.name))?;
        for warning in &what.warnings {
            tracing::warn!("{}: {warning}", r.name);
        }
        done.push(format!("{}: {}", r.name, what.text));
        if let Some(gone) = what.removed.filter(|g| g.count > 0) {
            removed.push(RemovedAt {
                resource: r.name.clone(),
                site: site.to_string(),
                removed: gone,
            });
        }
    }
    // For the run's report: what the mirror removed, kept beside the journal.
    if !removed.is_empty() {
        StateStore::of(plan).write_run_file(
            &run.id,
            &removed_file(resource),
            &serde_json::to_vec_pretty(&removed)?,
        )?;
    }
    // The run was planned from an earlier plan file: the resource may be gone since.
    let spec = plan
        .resource(resource)
        .ok_or_else(|| anyhow!("the plan has no resource `{resource}` any more"))?;
    for outcome in verify_entries(
        plan,
        resource,
        &spec.verify,
        site,
        &site_env(plan, run, site),
    )? {
        if !outcome.ok {
            bail!(
                "`{resource}` restored, but {} failed: {}",
                outcome.name,
                outcome.detail
            );
        }
        done.push(format!("{}: {}", outcome.name, outcome.detail));
    }
    Ok(done.join("; "))
}

/// What a restore step's mirror removed from a file tree's binding.
#[derive(Debug, Serialize, serde::Deserialize)]
struct RemovedAt {
    resource: String,
    site: String,
    removed: lifeboat_files::Removed,
}

/// The run file where a restore step of `resource` records what it removed.
fn removed_file(resource: &str) -> String {
    format!(
        "removed-{}.json",
        lifeboat_services::item_folder_name(resource)
    )
}

/// What the mirror of each file tree a run restores would remove now, from the point the run
/// restores (for its dry run); `None` when that point is not taken yet.
fn dry_removals(
    ctx: &Context,
    plan: &Plan,
    run: &RunFile,
) -> Vec<(String, lifeboat_files::Removed)> {
    let Ok(repo) = ctx.open_repository() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for step in &run.steps {
        let Step::Restore { resource, site, .. } = step else {
            continue;
        };
        let Some(ResourceKind::Files(files)) = plan.resource(resource).map(|r| &r.kind) else {
            continue;
        };
        // Each resource from its own point (a failback's is not taken yet: nothing to say).
        let Some(Ok((_, point))) = point_of(run, resource).map(|id| repo.find_point(id)) else {
            continue;
        };
        let Some(captured) = point.resource(resource) else {
            continue;
        };
        // Restored as an overlay (a capture that skipped entries, an older point): nothing
        // is removed.
        let (Some(binding), Some(root), Some(scope)) =
            (files.at.get(site), captured.root, mirror_scope(captured))
        else {
            continue;
        };
        if let Ok(gone) = lifeboat_files::removals(&repo, root, None, &binding.path, &scope) {
            out.push((resource.clone(), gone));
        }
    }
    out
}

/// Runs a resource's `verify` entries against its binding at `site`, each once (a restore is
/// done: nothing to wait for), commands with `env`.
pub(crate) fn verify_entries(
    plan: &Plan,
    resource: &str,
    entries: &[Verify],
    site: &str,
    env: &[(String, String)],
) -> Result<Vec<lifeboat_services::checks::CheckOutcome>> {
    let mut outcomes = Vec::new();
    for (i, verify) in entries.iter().enumerate() {
        let probe = match verify {
            Verify::Command { command, expect } => Probe::Command {
                argv: command.argv().to_vec(),
                cwd: plan.plan_dir().to_path_buf(),
                env: env.to_vec(),
                expect: expect.clone(),
            },
            Verify::Sql {
                sql,
                database,
                expect,
            } => Probe::Sql {
                target: Box::new(sql_target(plan, resource, site)?),
                database: database.clone(),
                query: sql.clone(),
                expect: expect.clone(),
            },
        };
        outcomes.push(run_check(&CheckSpec {
            name: format!("verify #{}", i + 1),
            probe,
            timeout: std::time::Duration::from_secs(30),
            retries: 0,
            retry_interval: std::time::Duration::from_secs(1),
        }));
    }
    Ok(outcomes)
}

pub(crate) fn sql_target(plan: &Plan, resource: &str, site: &str) -> Result<SqlTarget> {
    let r = plan
        .resource(resource)
        .ok_or_else(|| anyhow!("the plan has no resource `{resource}`"))?;
    let unbound = || anyhow!("`{resource}` has no binding at site `{site}`");
    Ok(match &r.kind {
        ResourceKind::Postgres(db) | ResourceKind::Mysql(db) => {
            match Server::of(&r.kind, db.at.get(site).ok_or_else(unbound)?)? {
                Server::Postgres(s) => SqlTarget::Postgres(s),
                Server::Mysql(s) => SqlTarget::Mysql(s),
            }
        }
        ResourceKind::Sqlite(sqlite) => {
            SqlTarget::Sqlite(sqlite.at.get(site).ok_or_else(unbound)?.path.clone())
        }
        other => bail!(
            "an SQL check needs a postgres, mysql or sqlite resource; `{resource}` is {}",
            other.name()
        ),
    })
}

pub(crate) fn check_spec(
    plan: &Plan,
    site: &str,
    check: &lifeboat_plan::Check,
    env: &[(String, String)],
) -> Result<CheckSpec> {
    let probe = match &check.probe {
        CheckProbe::Http(url) => Probe::Http {
            url: url.clone(),
            status: check.expect_status,
            body: check.body_contains.clone(),
        },
        CheckProbe::Tcp(address) => Probe::Tcp(address.clone()),
        CheckProbe::Sql {
            query,
            resource,
            database,
            expect,
        } => Probe::Sql {
            target: Box::new(sql_target(plan, resource, site)?),
            database: database.clone(),
            query: query.clone(),
            expect: expect.clone(),
        },
        CheckProbe::Command(command) => Probe::Command {
            argv: command.argv().to_vec(),
            cwd: plan.plan_dir().to_path_buf(),
            env: env.to_vec(),
            expect: None,
        },
    };
    Ok(CheckSpec {
        name: check.name.clone(),
        probe,
        timeout: check.timeout,
        retries: check.retries,
        retry_interval: check.retry_interval,
    })
}

/// Sends the run's summary to every `[[notify]]` destination; a destination that fails is
/// reported, never fatal (traffic has moved by now).
fn notify(plan: &Plan, run: &RunFile) -> String {
    if plan.notify.is_empty() {
        return "no destinations in the plan".into();
    }
    let text = format!(
        "lifeboat: {} from `{}` to `{}` done (run {})",
        run.kind.as_str(),
        run.from,
        run.to,
        run.id
    );
    let alert = serde_json::json!({
        "event": run.kind, "from": run.from, "to": run.to, "run": run.id,
        "point": run.point, "epoch": run.epoch, "text": text,
    });
    deliver(plan, &alert, &text)
}

/// Sends `alert` (JSON; `text` for chat formats) to every `[[notify]]` destination once;
/// says what happened to each.
pub(crate) fn deliver(plan: &Plan, alert: &serde_json::Value, text: &str) -> String {
    let mut said = Vec::new();
    for notifier in &plan.notify {
        let outcome = match notifier {
            lifeboat_plan::Notifier::Command(command) => lifeboat_services::run_with_input(
                command.argv(),
                plan.plan_dir(),
                alert.to_string().as_bytes(),
            )
            .map(|()| format!("`{}`", command.program()))
            .map_err(|e| e.to_string()),
            lifeboat_plan::Notifier::Webhook { url, format } => {
                let body = match format {
                    lifeboat_plan::WebhookFormat::Json => alert.clone(),
                    _ => serde_json::json!({ "text": text }),
                };
                url.resolve()
                    .map_err(|e| e.to_string())
                    .and_then(|url| {
                        lifeboat_services::post_json(url.expose(), body.to_string().as_bytes())
                            .map_err(|e| e.to_string())
                    })
                    .map(|()| "webhook".to_string())
            }
            lifeboat_plan::Notifier::Smtp(smtp) => send_mail(smtp, alert, text),
        };
        said.push(match outcome {
            Ok(to) => format!("sent to {to}"),
            Err(e) => format!("NOT sent: {e}"),
        });
    }
    said.join("; ")
}

fn send_mail(
    smtp: &lifeboat_plan::Smtp,
    alert: &serde_json::Value,
    text: &str,
) -> Result<String, String> {
    let password = match &smtp.password {
        Some(secret) => Some(secret.resolve().map_err(|e| e.to_string())?),
        None => None,
    };
    let body = format!(
        "{text}\n\n{}\n",
        serde_json::to_string_pretty(alert).unwrap_or_default()
    );
    lifeboat_services::send_mail(&lifeboat_services::Mail {
        server: &smtp.server,
        starttls: smtp.starttls,
        from: &smtp.from,
        to: &smtp.to,
        username: smtp.username.as_deref(),
        password: password.as_ref().map(|p| p.expose()),
        subject: text,
        body: &body,
    })
    .map(|()| format!("mail to {}", smtp.to.join(", ")))
    .map_err(|e| e.to_string())
}

/// The run measured: each step's start and duration, and the achieved RTO and RPO against
/// the plan's objectives.
#[derive(Debug, Serialize)]
struct Report {
    run: String,
    kind: RunKind,
    from: String,
    to: String,
    point: Option<String>,
    point_time: Option<jiff::Timestamp>,
    started: jiff::Timestamp,
    finished: jiff::Timestamp,
    steps: Vec<StepTiming>,
    /// From the decision to traffic switched and health checks green.
    achieved_rto_ms: u64,
    /// Failover: the age of the restore point when the run began. Switchover, failback: how
    /// long before the site left was confirmed quiesced its final capture began (0 when it
    /// began after); `None` (unknown) when the quiesce was not confirmed.
    achieved_rpo_ms: Option<u64>,
    /// How the achieved RPO was measured, or why it is unknown.
    rpo_basis: String,
    /// Switchover, failback: how the site left was quiesced.
    #[serde(skip_serializing_if = "Option::is_none")]
    quiesce: Option<QuiesceReport>,
    rto_objective_ms: u64,
    rpo_objective_ms: u64,
    rto_met: bool,
    rpo_met: Option<bool>,
    /// Failover: where the old primary's file trees are still readable, how many paths
    /// changed after the restore point (what the DR site does not have).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changed_after_point: Vec<ChangedAfter>,
    /// What the restores removed from file trees' bindings because the point lacks it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed: Vec<RemovedAt>,
    /// Resources restored from a capture that skipped entries (a pinned `--point`): what it
    /// skipped did not come back, so the RPO is not called met.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    partial: Vec<String>,
}

#[derive(Debug, Serialize)]
struct QuiesceReport {
    site: String,
    confirmed: bool,
    /// When the quiesce step ended.
    at: Option<jiff::Timestamp>,
    detail: Option<String>,
}

#[derive(Debug, Serialize)]
struct ChangedAfter {
    resource: String,
    paths: usize,
    examples: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StepTiming {
    step: String,
    started_ms: u64,
    duration_ms: u64,
    detail: Option<String>,
}

fn build_report(ctx: &Context, plan: &Plan, store: &StateStore, run: &RunFile) -> Result<Report> {
    let records = store.journal(&run.id)?;
    let mut steps = Vec::new();
    for step in &run.steps {
        let id = step.id();
        let start = records
            .iter()
            .rfind(|r| r.step == id && r.event == Event::Started);
        let end = records
            .iter()
            .rfind(|r| r.step == id && r.event == Event::Finished);
        if let (Some(start), Some(end)) = (start, end) {
            steps.push(StepTiming {
                step: id,
                started_ms: start.elapsed_ms,
                duration_ms: end.elapsed_ms.saturating_sub(start.elapsed_ms),
                detail: end.detail.clone(),
            });
        }
    }
    // Serving again: traffic confirmed and checks green, whichever came last.
    let serving = steps
        .iter()
        .filter(|s| {
            s.step.starts_with("checks:")
                || s.step.starts_with("confirm-traffic:")
                || s.step.starts_with("switch-traffic:")
                || s.step.starts_with("start:")
                || s.step.starts_with("restore:")
        })
        .map(|s| s.started_ms + s.duration_ms)
        .max()
        .unwrap_or_else(|| elapsed_ms(run));
    let point = match &run.point {
        Some(id) => Some(ctx.open_repository()?.find_point(id)?.1),
        None => None,
    };
    let point_time = point.as_ref().map(|p| p.time);
    let changed_after_point = match (&point, run.kind) {
        (Some(point), RunKind::Failover) => changed_after(ctx, plan, run, point),
        _ => Vec::new(),
    };
    let quiesce = run.steps.iter().find_map(|step| match step {
        Step::Quiesce { site } => {
            let record = records
                .iter()
                .rfind(|r| r.step == step.id() && r.event == Event::Finished);
            Some(QuiesceReport {
                site: site.clone(),
                confirmed: record.is_some_and(|r| r.confirmed == Some(true)),
                at: record.and_then(|r| r.at.parse().ok()),
                detail: record.and_then(|r| r.detail.clone()),
            })
        }
        _ => None,
    });
    let (rpo_ms, rpo_basis) = match (&quiesce, point_time) {
        (_, None) => (None, "no restore point".to_string()),
        (None, Some(t)) => (
            Some(run.started.duration_since(t).as_millis().max(0) as u64),
            "the age of the restore point when the run began".to_string(),
        ),
        (Some(q), Some(t)) => {
            let stopped = q.at.filter(|_| q.confirmed);
            let rpo =
                planned_move_rpo_ms(stopped.map(|at| at.as_millisecond()), t.as_millisecond());
            let basis = match (stopped, rpo) {
                (Some(at), Some(0)) => format!(
                    "writes at `{}` stopped (quiesce confirmed at {at}) before the final capture \
                     began at {t}: the restored data holds every write",
                    q.site
                ),
                (Some(at), _) => format!(
                    "the final capture began at {t}, before writes at `{}` were confirmed stopped \
                     at {at}",
                    q.site
                ),
                (None, _) => format!(
                    "unknown: the quiesce of `{}` was not confirmed, so writes may have gone on \
                     after the final capture began at {t}",
                    q.site
                ),
            };
            (rpo, basis)
        }
    };
    let partial: Vec<String> = run
        .points
        .iter()
        .filter(|(_, at)| at.partial)
        .map(|(resource, _)| resource.clone())
        .collect();
    let rpo_basis = if partial.is_empty() {
        rpo_basis
    } else {
        format!(
            "{rpo_basis}; not called met: {} came from a capture that skipped entries, which \
             did not come back",
            partial
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let rto_objective_ms = plan.objectives.rto.as_millis() as u64;
    let rpo_objective_ms = plan.objectives.rpo.as_millis() as u64;
    Ok(Report {
        run: run.id.clone(),
        kind: run.kind,
        from: run.from.clone(),
        to: run.to.clone(),
        point: run.point.clone(),
        point_time,
        started: run.started,
        finished: jiff::Timestamp::now(),
        steps,
        achieved_rto_ms: serving,
        achieved_rpo_ms: rpo_ms,
        rpo_basis,
        quiesce,
        rto_objective_ms,
        rpo_objective_ms,
        rto_met: serving <= rto_objective_ms,
        rpo_met: rpo_ms
            .filter(|_| partial.is_empty())
            .map(|ms| ms <= rpo_objective_ms),
        changed_after_point,
        removed: run
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Restore { resource, .. } => store
                    .read_run_file(&run.id, &removed_file(resource))
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<Vec<RemovedAt>>(&bytes).ok()),
                _ => None,
            })
            .flatten()
            .collect(),
        partial,
    })
}

/// Compares the old primary's file trees, where still readable, with the restore point.
fn changed_after(
    ctx: &Context,
    plan: &Plan,
    run: &RunFile,
    point: &RestorePoint,
) -> Vec<ChangedAfter> {
    let Ok(repo) = ctx.open_repository() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in run.waves.iter().flatten() {
        let Some(ResourceKind::Files(files)) = plan.resource(name).map(|r| &r.kind) else {
            continue;
        };
        // Each resource against the capture it was restored from.
        let own;
        let point = match run.points.get(name) {
            Some(at) => match repo.find_point(&at.point) {
                Ok((_, found)) => {
                    own = found;
                    &own
                }
                Err(_) => continue,
            },
            None => point,
        };
        let (Some(binding), Some(root)) = (
            files.at.get(&run.from),
            point.resource(name).and_then(|r| r.root),
        ) else {
            continue;
        };
        if !binding.path.is_dir() {
            continue;
        }
        // What the backup leaves out never reached the point: not a change.
        let scope = scope_of(Some(plan), name);
        if let Ok(differences) =
            lifeboat_files::verify_within(&repo, root, None, &binding.path, &scope)
        {
            out.push(ChangedAfter {
                resource: name.clone(),
                paths: differences.len(),
                examples: differences.iter().take(5).map(|d| d.path.clone()).collect(),
            });
        }
    }
    out
}

fn print_report(ctx: &Context, report: &Report) {
    if ctx.global.json {
        output::json(&serde_json::to_value(report).expect("a report serialises"));
        return;
    }
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "{} {} → {} complete: `{}` is active",
        report.kind.as_str(),
        report.from,
        report.to,
        report.to
    );
    println!(
        "  RTO achieved {} (objective {}): {}",
        output::millis(report.achieved_rto_ms),
        output::millis(report.rto_objective_ms),
        verdict(report.rto_met)
    );
    match (report.achieved_rpo_ms, report.rpo_met) {
        (Some(ms), Some(met)) => println!(
            "  RPO achieved {} (restore point {}: {}; objective {}): {}",
            output::millis(ms),
            report.point.as_deref().map_or("", |p| &p[..8.min(p.len())]),
            report.rpo_basis,
            output::millis(report.rpo_objective_ms),
            verdict(met)
        ),
        (Some(ms), None) => println!(
            "  RPO achieved {} (objective {}), NOT CALLED MET: {}",
            output::millis(ms),
            output::millis(report.rpo_objective_ms),
            report.rpo_basis
        ),
        _ => println!(
            "  RPO UNKNOWN (objective {}): {}",
            output::millis(report.rpo_objective_ms),
            report.rpo_basis
        ),
    }
    for gone in &report.removed {
        println!(
            "  `{}` at `{}`: {} (not in the restore point)",
            gone.resource,
            gone.site,
            gone.removed.summary()
        );
    }
    for changed in &report.changed_after_point {
        if changed.paths > 0 {
            println!(
                "  `{}` at `{}` changed after the restore point in {} path(s), e.g. {}",
                changed.resource,
                report.from,
                changed.paths,
                changed.examples.join(", ")
            );
        }
    }
}

pub fn status(ctx: &Context) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    let store = StateStore::of(plan);
    let state: SiteState = store.load(plan)?;
    let last = store.runs().pop();
    let last_run = match &last {
        Some(id) => {
            let run: Option<RunFile> = store
                .read_run_file(id, "run.json")
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let report: Option<serde_json::Value> = store
                .read_run_file(id, "report.json")
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let journal = store.journal(id).unwrap_or_default();
            Some((id.clone(), run, report, journal))
        }
        None => None,
    };
    // Who serves, read from the journal too: a fenced site is never called active.
    let standing = standing(
        &state,
        last_run.as_ref().and_then(|(id, run, _, journal)| {
            run.as_ref().map(|r| LastRun {
                id,
                from: &r.from,
                to: &r.to,
                steps: &r.steps,
                records: journal,
            })
        }),
    );
    if ctx.global.json {
        let last = last_run.as_ref().map(|(id, run, report, journal)| {
            let remaining: Vec<String> = run
                .as_ref()
                .map(|r| {
                    Replay::of(journal)
                        .remaining(&r.steps)
                        .iter()
                        .map(|s| s.id())
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({ "id": id, "run": run.as_ref().map(|r| serde_json::json!({"kind": r.kind, "from": r.from, "to": r.to, "point": r.point})), "report": report, "remaining": remaining, "journal": journal })
        });
        let watch: Option<serde_json::Value> = store
            .read_file("watch.json")
            .and_then(|b| serde_json::from_slice(&b).ok());
        let last_drill = super::drill::past_reports(&store, plan)
            .last()
            .map(lifeboat_drill::report::TrendPoint::from);
        output::json(&serde_json::json!({
            "state": state.describe(), "active": state.active, "primary": state.primary,
            "serving": standing.serving, "stopped": standing.stopped, "epoch": state.epoch, "run": state.run, "last_run": last, "watch": watch,
            "last_drill": last_drill,
        }));
        return Ok(Exit::Success);
    }
    println!(
        "{}: {} (epoch {}; state in {})",
        state.describe(),
        match &standing.serving {
            Some(site) => format!("`{site}` serves"),
            None => "no site serves".to_string(),
        },
        state.epoch,
        store.dir().display()
    );
    for stopped in &standing.stopped {
        let how = match stopped.how {
            StopKind::Fenced => "fence",
            StopKind::Quiesced => "quiesce",
        };
        println!(
            "  `{}`: {} at {} (run {}), {}",
            stopped.site,
            how,
            stopped.at,
            stopped.run,
            if stopped.failed {
                "FAILED or cut short: it may be partly stopped"
            } else if stopped.confirmed {
                "confirmed: it takes no traffic or writes"
            } else {
                "NOT confirmed: it may still take writes"
            }
        );
    }
    if let (Some(current), Some((_, Some(run), _, journal))) = (&state.run, &last_run)
        && current.id == run.id
        && standing.serving.as_deref() != Some(run.to.as_str())
    {
        let next = Replay::of(journal)
            .remaining(&run.steps)
            .first()
            .map(|s| s.id())
            .unwrap_or_default();
        println!(
            "  `{}` does not serve yet: the run is at `{next}`; `lifeboat resume` finishes it",
            run.to
        );
    }
    if let Some(watch) = store
        .read_file("watch.json")
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    {
        println!(
            "witness (as of {}): {}",
            watch["updated"].as_str().unwrap_or("?"),
            watch["decision"]["health"]["state"].as_str().unwrap_or("?")
        );
        for probe in watch["probes"]
            .as_array()
            .into_iter()
            .chain(watch["control"].as_array())
            .flatten()
        {
            println!(
                "  {} {}{}: {} passes, {} failures; {}",
                match probe["ok"].as_bool() {
                    Some(true) => "✓",
                    Some(false) => "✗",
                    None => " ",
                },
                probe["name"].as_str().unwrap_or("?"),
                if probe["control"] == true {
                    " (control)"
                } else {
                    ""
                },
                probe["passes"],
                probe["failures"],
                probe["detail"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(drill) = super::drill::past_reports(&store, plan).last() {
        println!(
            "last drill: {} {}{} (RTO {}, RPO {})",
            drill.drill,
            if drill.passed {
                "passed"
            } else if drill.interrupted {
                "interrupted"
            } else {
                "FAILED"
            },
            if drill.only.is_empty() {
                String::new()
            } else {
                format!(" (only {})", drill.only.join(", "))
            },
            drill
                .achieved_rto_ms
                .map_or_else(|| "not achieved".into(), output::millis),
            output::millis(drill.achieved_rpo_ms)
        );
    }
    if let Some((id, run, report, journal)) = last_run {
        println!("last run: {id}");
        if let Some(run) = &run {
            let replay = Replay::of(&journal);
            for step in &run.steps {
                let id = step.id();
                let timing = journal.iter().filter(|r| r.step == id).collect::<Vec<_>>();
                let mark = match replay.last.get(&id) {
                    Some(Event::Finished) => "✓",
                    Some(Event::Failed) => "✗",
                    Some(Event::Started) => "…",
                    None => " ",
                };
                let took = match (timing.first(), timing.last()) {
                    (Some(a), Some(b)) if timing.len() > 1 => {
                        output::millis(b.elapsed_ms.saturating_sub(a.elapsed_ms))
                    }
                    _ => String::new(),
                };
                println!("  {mark} {id:<28} {took}");
            }
        }
        if let Some(report) = report {
            println!(
                "  achieved RTO {} ms, RPO {}",
                report["achieved_rto_ms"],
                report["achieved_rpo_ms"]
                    .as_u64()
                    .map_or_else(|| "unknown".to_string(), |ms| format!("{ms} ms"))
            );
        }
    }
    Ok(Exit::Success)
}
