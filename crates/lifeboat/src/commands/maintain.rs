//! `points`, `check`, `forget` and `prune`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Result, bail};
use lifeboat_format::Id;
use lifeboat_format::manifest::{ResourceStatus, RestorePoint};
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
                .is_none_or(|r| p.entries(r).next().is_some())
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
    let sites: Vec<&str> = points
        .iter()
        .map(|(_, p)| p.site.as_deref().unwrap_or("-"))
        .collect();
    let site_width = sites.iter().map(|s| s.len()).max().unwrap_or(0).max(4);
    println!(
        "{:<10} {:<24} {:<site_width$} {:>10} {:>10} {:>9}  resources",
        "id", "time", "site", "size", "added", "took"
    );
    for ((id, p), site) in points.iter().zip(&sites) {
        let size: u64 = p.resources.iter().map(|r| r.stats.bytes).sum();
        let added: u64 = p.resources.iter().map(|r| r.stats.bytes_stored).sum();
        let took = p.finished.duration_since(p.time).as_millis().max(0) as u64;
        let names: Vec<String> = p
            .resources
            .iter()
            .map(|r| match (&r.status, r.root) {
                (_, None) => format!("{} (FAILED)", r.name),
                (ResourceStatus::Partial { .. }, _) => format!("{} (PARTIAL)", r.name),
                _ => r.name.clone(),
            })
            .collect();
        // Items discovered but not captured here: this point is not the whole resource.
        let mut names = names;
        for (resource, items) in &p.discovered {
            let missing = items
                .iter()
                .filter(|i| p.resource(&format!("{resource}/{i}")).is_none())
                .count();
            if missing > 0 {
                names.push(format!(
                    "({resource}: {missing} of {} items not captured)",
                    items.len()
                ));
            }
        }
        println!(
            "{:<10} {:<24} {:<site_width$} {:>10} {:>10} {:>9}  {}",
            id.short(),
            output::zoned_time(p.time),
            site,
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
    // Each resource, and each item of one, is a group of its own; only complete captures
    // count, and a point goes only when no group keeps it.
    let points = repo.points()?;
    let refs: Vec<(Id, &RestorePoint)> = points.iter().map(|(id, p)| (*id, p)).collect();
    let tz = jiff::tz::TimeZone::system();
    let decisions = retention::by_group(&refs, &policy, &tz);
    let mut removed = 0;
    for d in &decisions {
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
            .map(|d| {
                serde_json::json!({
                    "id": d.point, "time": d.time, "keep": d.keep, "why": why(d),
                    "groups": d.groups,
                })
            })
            .collect();
        output::json(
            &serde_json::json!({ "dry_run": args.dry_run, "removed": removed, "points": list }),
        );
    } else {
        for d in &decisions {
            println!(
                "{} {} {:<6} {}",
                d.point.short(),
                output::zoned_time(d.time),
                if d.keep { "keep" } else { "forget" },
                why(d)
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

/// Why a point is kept (the groups that keep it, by which rules) or forgotten (what each of
/// its groups says).
fn why(d: &retention::PointDecision<Id>) -> String {
    if d.groups.is_empty() {
        return "holds no resource".into();
    }
    let keeping: Vec<String> = d
        .groups
        .iter()
        .filter(|m| !m.rules.is_empty())
        .map(|m| format!("{}: {}", m.group, m.rules.join(", ")))
        .collect();
    if !keeping.is_empty() {
        return keeping.join("; ");
    }
    d.groups
        .iter()
        .map(|m| {
            let state = if m.dropped {
                "no longer discovered"
            } else if !m.complete {
                "incomplete"
            } else {
                "beyond the policy"
            };
            format!("{}: {state}", m.group)
        })
        .collect::<Vec<_>>()
        .join("; ")
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
