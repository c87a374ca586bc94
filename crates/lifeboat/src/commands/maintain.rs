//! `points`, `check`, `forget` and `prune`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Result, bail};
use lifeboat_format::Id;
use lifeboat_format::manifest::RestorePoint;
use lifeboat_repository::check::CheckReport;
use lifeboat_repository::prune::PruneOptions;
use lifeboat_repository::retention::{self, Policy};

use crate::cli::{CheckArgs, ForgetArgs, PointsArgs, PruneArgs};
use crate::context::Context;
use crate::output::{self, Bar, Exit};
use lifeboat_files::Progress;

pub fn points(ctx: &Context, args: PointsArgs) -> Result<Exit> {
    let repo = ctx.open_repository()?;
    let points: Vec<(Id, RestorePoint)> = repo
        .points()?
        .into_iter()
        .filter(|(_, p)| {
            args.resource
                .as_deref()
                .is_none_or(|r| p.resource(r).is_some())
        })
        .collect();
    if ctx.global.json {
        let list: Vec<_> = points
            .iter()
            .map(|(id, p)| serde_json::json!({ "id": id, "complete": p.is_complete(), "point": p }))
            .collect();
        output::json(&list);
        return Ok(Exit::Success);
    }
    if points.is_empty() {
        println!("no restore points");
        return Ok(Exit::Success);
    }
    println!(
        "{:<10} {:<20} {:>10} {:>10} {:>9}  resources",
        "id", "time", "size", "added", "took"
    );
    for (id, p) in &points {
        let size: u64 = p.resources.iter().map(|r| r.stats.bytes).sum();
        let added: u64 = p.resources.iter().map(|r| r.stats.bytes_stored).sum();
        let took = p.finished.duration_since(p.time).as_millis().max(0) as u64;
        let names: Vec<String> = p
            .resources
            .iter()
            .map(|r| {
                if r.root.is_some() {
                    r.name.clone()
                } else {
                    format!("{} (FAILED)", r.name)
                }
            })
            .collect();
        println!(
            "{:<10} {:<20} {:>10} {:>10} {:>9}  {}",
            id.short(),
            p.time.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            output::bytes(size),
            output::bytes(added),
            output::millis(took),
            names.join(", ")
        );
    }
    Ok(Exit::Success)
}

pub fn check(ctx: &Context, args: CheckArgs) -> Result<Exit> {
    let repo = ctx.open_repository()?;
    let progress = Arc::new(Progress::default());
    let bar = Bar::start(&ctx.global, "check", progress.clone());
    let report: CheckReport =
        lifeboat_repository::check::check(&repo, args.read_data, &|phase, done, total| {
            if phase == "packs" {
                progress.bytes_total.store(total, Ordering::Relaxed);
                progress.bytes_done.store(done, Ordering::Relaxed);
            }
        })?;
    drop(bar);
    // Remembered for `audit` (when the repository was last checked, and how).
    if let Some(plan) = ctx.plan() {
        let record = serde_json::json!({
            "time": jiff::Timestamp::now(),
            "read_data": args.read_data,
            "problems": report.problems.len(),
        });
        if let Err(e) = crate::sitestate::StateStore::of(plan)
            .write_file("last-check.json", record.to_string().as_bytes())
        {
            tracing::warn!("could not record the check: {e:#}");
        }
    }
    if ctx.global.json {
        output::json(&report);
    } else {
        for note in &report.notes {
            println!("note: {note}");
        }
        for w in &report.warnings {
            println!("warning: {}: {}", w.object, w.message);
        }
        for p in &report.problems {
            println!("error: {}: {}", p.object, p.message);
        }
        println!(
            "{} packs, {} index files, {} restore points, {} trees checked{}: {}",
            report.packs,
            report.index_files,
            report.points,
            report.trees,
            if args.read_data {
                format!(", {} read", output::bytes(report.bytes_read))
            } else {
                String::new()
            },
            if report.is_ok() {
                "no problems".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
    }
    Ok(if report.is_ok() {
        Exit::Success
    } else {
        Exit::Problems
    })
}

fn policy_of(ctx: &Context, args: &ForgetArgs) -> Result<Policy> {
    let given = [
        args.keep_last,
        args.keep_hourly,
        args.keep_daily,
        args.keep_weekly,
        args.keep_monthly,
        args.keep_yearly,
    ];
    if given.iter().any(Option::is_some) {
        return Ok(Policy {
            keep_last: args.keep_last.unwrap_or(0),
            keep_hourly: args.keep_hourly.unwrap_or(0),
            keep_daily: args.keep_daily.unwrap_or(0),
            keep_weekly: args.keep_weekly.unwrap_or(0),
            keep_monthly: args.keep_monthly.unwrap_or(0),
            keep_yearly: args.keep_yearly.unwrap_or(0),
        });
    }
    if let Some(r) = ctx.plan().and_then(|p| p.schedule.retention.as_ref()) {
        return Ok(Policy {
            keep_last: r.keep_last.unwrap_or(0),
            keep_hourly: r.keep_hourly.unwrap_or(0),
            keep_daily: r.keep_daily.unwrap_or(0),
            keep_weekly: r.keep_weekly.unwrap_or(0),
            keep_monthly: r.keep_monthly.unwrap_or(0),
            keep_yearly: r.keep_yearly.unwrap_or(0),
        });
    }
    bail!(
        "no retention policy: give --keep-last, --keep-daily, ... or set [schedule] retention in the plan"
    )
}

pub fn forget(ctx: &Context, args: ForgetArgs) -> Result<Exit> {
    let policy = policy_of(ctx, &args)?;
    if policy.is_empty() {
        bail!("the retention policy keeps nothing; refusing to forget every restore point");
    }
    let repo = ctx.open_repository()?;
    // Restore points of different sets of resources are kept independently.
    let mut groups: BTreeMap<Vec<String>, Vec<(Id, jiff::Timestamp)>> = BTreeMap::new();
    for (id, p) in repo.points()? {
        let mut names: Vec<String> = p.resources.iter().map(|r| r.name.clone()).collect();
        names.sort();
        groups.entry(names).or_default().push((id, p.time));
    }
    let tz = jiff::tz::TimeZone::system();
    let mut decisions = Vec::new();
    for (names, pts) in &groups {
        for d in retention::apply(pts, &policy, &tz) {
            decisions.push((names.join(","), d));
        }
    }
    let mut removed = 0;
    for (_, d) in &decisions {
        if !d.keep {
            if !args.dry_run {
                repo.delete_point(&d.point)?;
            }
            removed += 1;
        }
    }
    if ctx.global.json {
        let list: Vec<_> = decisions
            .iter()
            .map(|(g, d)| serde_json::json!({ "id": d.point, "time": d.time, "resources": g, "keep": d.keep, "reasons": d.reasons }))
            .collect();
        output::json(
            &serde_json::json!({ "dry_run": args.dry_run, "removed": removed, "points": list }),
        );
    } else {
        for (g, d) in &decisions {
            let verdict = if d.keep {
                format!("keep ({})", d.reasons.join(", "))
            } else {
                "forget".into()
            };
            println!(
                "{} {} {:<30} {}",
                d.point.short(),
                d.time.strftime("%Y-%m-%d %H:%M:%S"),
                g,
                verdict
            );
        }
        println!(
            "{} {removed} of {} restore points; run `lifeboat prune` to free their data",
            if args.dry_run {
                "would forget"
            } else {
                "forgot"
            },
            decisions.len()
        );
    }
    Ok(Exit::Success)
}

pub fn prune(ctx: &Context, args: PruneArgs) -> Result<Exit> {
    let repo = ctx.open_repository()?;
    let options = PruneOptions {
        grace: args.grace,
        dry_run: args.dry_run,
        ..PruneOptions::default()
    };
    let holder = lifeboat_repository::lease::Holder {
        host: hostname(),
        pid: std::process::id(),
    };
    let report = lifeboat_repository::prune::prune(&repo, options, jiff::Timestamp::now(), holder)?;
    if ctx.global.json {
        output::json(&report);
        return Ok(Exit::Success);
    }
    if args.dry_run {
        print!("dry run: ");
    }
    println!(
        "{} packs; {} condemned ({}, {} repacked); {} deleted ({}); {} spared",
        report.packs,
        report.condemned_packs,
        output::bytes(report.condemned_bytes + report.repacked_bytes),
        report.repacked_packs,
        report.deleted_packs,
        output::bytes(report.deleted_bytes),
        report.spared_packs,
    );
    if report.waiting_for_backups > 0 {
        println!(
            "{} condemned markers wait for backups under way that started before them",
            report.waiting_for_backups
        );
    }
    if report.temporaries_removed + report.stale_backup_markers_removed > 0 {
        println!(
            "removed {} temporary files of interrupted writes and {} markers of killed backups",
            report.temporaries_removed, report.stale_backup_markers_removed
        );
    }
    for when in &report.waiting {
        println!(
            "condemned packs wait until {} (grace period) before a prune deletes them",
            when.strftime("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    Ok(Exit::Success)
}

/// This host's name, for the prune lease (so a refused prune can say who holds it).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}
