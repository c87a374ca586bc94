//! `lifeboat audit`: what the plan leaves unprotected (inventory against resources), what is
//! stale (restore points older than the rpo), where the sites drift apart (versions), and plan
//! settings that cannot work. Findings as a table, `--json` or Markdown; the exit code gates a
//! pipeline (`--fail-on`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use lifeboat_plan::{InventorySource, Plan, ResourceKind, Traffic, VersionSource};
use serde::Serialize;

use super::backup::Server;
use crate::cli::{AuditArgs, FailOn};
use crate::context::Context;
use crate::output::{self, Exit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Serialize)]
struct Finding {
    severity: Severity,
    /// `coverage`, `freshness`, `drift` or `lint`.
    area: &'static str,
    subject: String,
    message: String,
}

pub fn audit(ctx: &Context, args: AuditArgs) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    let mut findings = Vec::new();
    coverage(plan, &mut findings);
    freshness(ctx, plan, &mut findings);
    last_drill(plan, &mut findings);
    drift(plan, &mut findings);
    lint(plan, &mut findings);
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.area.cmp(b.area)));
    let threshold = match args.fail_on {
        FailOn::Warning => Severity::Warning,
        FailOn::Error => Severity::Error,
    };
    let failed = findings.iter().any(|f| f.severity >= threshold);
    if ctx.global.json {
        output::json(&serde_json::json!({ "findings": findings, "failed": failed }));
    } else if args.markdown {
        println!("# lifeboat audit: {}\n", plan.name());
        if findings.is_empty() {
            println!("No findings: everything in the inventory is protected and fresh.");
        } else {
            println!("| severity | area | subject | finding |\n| --- | --- | --- | --- |");
            for f in &findings {
                println!(
                    "| {:?} | {} | {} | {} |",
                    f.severity,
                    f.area,
                    f.subject.replace('|', "\\|"),
                    f.message.replace('|', "\\|")
                );
            }
        }
    } else if findings.is_empty() {
        println!("no findings: everything in the inventory is protected and fresh");
    } else {
        for f in &findings {
            let severity = match f.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "warning",
            };
            println!("{severity:<8} {:<10} {}: {}", f.area, f.subject, f.message);
        }
    }
    Ok(if failed {
        Exit::Problems
    } else {
        Exit::Success
    })
}

/// Everything the inventory lists must be protected by a resource, or excluded.
fn coverage(plan: &Plan, out: &mut Vec<Finding>) {
    let (primary, _) = plan.primary_site();
    // What command inventories' lines are compared with, gathered at the first of them.
    let mut named = None;
    for entry in &plan.inventory {
        let excluded = |name: &str| entry.exclude.iter().any(|e| e == name);
        match &entry.source {
            InventorySource::Postgres(binding) | InventorySource::Mysql(binding) => {
                let kind = match &entry.source {
                    InventorySource::Mysql(_) => ResourceKind::Mysql(empty_server()),
                    _ => ResourceKind::Postgres(empty_server()),
                };
                let listed = Server::of(&kind, binding)
                    .and_then(|server| Ok((server.describe().to_string(), server.databases()?)));
                let (server, databases) = match listed {
                    Ok(found) => found,
                    Err(e) => {
                        out.push(Finding {
                            severity: Severity::Warning,
                            area: "coverage",
                            subject: entry.name.clone(),
                            message: format!("cannot list it: {e:#}"),
                        });
                        continue;
                    }
                };
                for database in databases.iter().filter(|d| !excluded(d)) {
                    let protected = plan.resources.values().any(|r| match &r.kind {
                        ResourceKind::Postgres(db) | ResourceKind::Mysql(db) => {
                            db.protects(database)
                                && db.at.get(primary).is_some_and(|b| {
                                    Server::of(&r.kind, b).is_ok_and(|s| s.describe() == server)
                                })
                        }
                        _ => false,
                    });
                    if !protected {
                        unprotected(
                            out,
                            format!("{server}/{database}"),
                            format!(
                                "database `{database}` ({}) is not protected by any resource",
                                entry.name
                            ),
                        );
                    }
                }
            }
            InventorySource::Directory(dir) => {
                let entries = match std::fs::read_dir(dir) {
                    Ok(entries) => entries,
                    Err(e) => {
                        out.push(Finding {
                            severity: Severity::Warning,
                            area: "coverage",
                            subject: dir.display().to_string(),
                            message: format!("cannot list it: {e}"),
                        });
                        continue;
                    }
                };
                let protected_paths: Vec<PathBuf> = plan
                    .resources
                    .values()
                    .flat_map(|r| match &r.kind {
                        ResourceKind::Files(f) => {
                            f.at.get(primary)
                                .map(|b| b.path.clone())
                                .into_iter()
                                .collect()
                        }
                        // A SQLite database is its file and the journals SQLite keeps beside it.
                        ResourceKind::Sqlite(s) => {
                            s.at.get(primary)
                                .map(|b| {
                                    let mut paths = vec![b.path.clone()];
                                    for suffix in ["-wal", "-shm", "-journal"] {
                                        let mut sidecar = b.path.clone().into_os_string();
                                        sidecar.push(suffix);
                                        paths.push(PathBuf::from(sidecar));
                                    }
                                    paths
                                })
                                .unwrap_or_default()
                        }
                        _ => Vec::new(),
                    })
                    .collect();
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for name in names.iter().filter(|n| !excluded(n)) {
                    let child = dir.join(name);
                    if protected_paths.iter().any(|p| child.starts_with(p)) {
                        continue;
                    }
                    if protected_paths.iter().any(|p| p.starts_with(&child)) {
                        out.push(Finding {
                            severity: Severity::Warning,
                            area: "coverage",
                            subject: child.display().to_string(),
                            message: format!("only partly protected ({})", entry.name),
                        });
                    } else {
                        unprotected(
                            out,
                            child.display().to_string(),
                            format!("not protected by any resource ({})", entry.name),
                        );
                    }
                }
            }
            InventorySource::Command(command) => {
                match lifeboat_services::discover(command.argv(), plan.plan_dir()) {
                    Ok(items) => {
                        let covered = named.get_or_insert_with(|| covered_names(plan, out));
                        for item in items.iter().filter(|i| !excluded(i)) {
                            if !covered.contains(item.as_str()) {
                                unprotected(
                                    out,
                                    item.clone(),
                                    format!("not protected by any resource ({})", entry.name),
                                );
                            }
                        }
                    }
                    Err(e) => out.push(Finding {
                        severity: Severity::Warning,
                        area: "coverage",
                        subject: entry.name.clone(),
                        message: format!("cannot list it: {e}"),
                    }),
                }
            }
        }
    }
}

/// Every name a command inventory's line may be protected under, compared exactly (never as
/// a substring): a resource's name; each item a resource's discovery lists now, and
/// `<resource>/<item>`; and what its primary binding names: an argument of its `capture`,
/// its URL, its path, a database it lists.
fn covered_names(plan: &Plan, out: &mut Vec<Finding>) -> std::collections::BTreeSet<String> {
    use lifeboat_plan::{Binding, DatabaseSelection};
    let (primary, _) = plan.primary_site();
    let mut names = std::collections::BTreeSet::new();
    for (name, resource) in &plan.resources {
        names.insert(name.clone());
        if let ResourceKind::Command(command) = &resource.kind
            && let Some(discover) = &command.discover
            && command.at.contains_key(primary)
        {
            match lifeboat_services::discover(discover.argv(), plan.plan_dir()) {
                Ok(items) => {
                    for item in items {
                        names.insert(format!("{name}/{item}"));
                        names.insert(item);
                    }
                }
                Err(e) => out.push(Finding {
                    severity: Severity::Warning,
                    area: "coverage",
                    subject: name.clone(),
                    message: format!(
                        "its discovery failed, so its items are not counted as protected: {e}"
                    ),
                }),
            }
        }
        match resource.binding(primary) {
            Some(Binding::Path(b)) => {
                let path = b.path.to_string_lossy().into_owned();
                if matches!(resource.kind, ResourceKind::Sqlite(_)) {
                    for side in ["-wal", "-shm", "-journal"] {
                        names.insert(format!("{path}{side}"));
                    }
                }
                names.insert(path);
            }
            Some(Binding::Command(b)) => {
                // What the command finally run names: not the program (`cat` protects
                // nothing), nor the host or container it runs through.
                if let Some(capture) = &b.capture {
                    names.extend(lifeboat_plan::command_operands(capture.argv()));
                }
            }
            Some(Binding::Http(b)) => {
                names.insert(b.url.clone());
            }
            Some(Binding::Database(binding)) => {
                if let ResourceKind::Postgres(db) | ResourceKind::Mysql(db) = &resource.kind {
                    match &db.databases {
                        DatabaseSelection::Only(listed) => {
                            names.extend(listed.iter().filter(|d| db.protects(d)).cloned());
                        }
                        // Every database the server has now, as a backup would take them.
                        DatabaseSelection::All => {
                            match Server::of(&resource.kind, binding).and_then(|s| Ok(s.databases()?))
                            {
                                Ok(all) => names.extend(all.into_iter().filter(|d| db.protects(d))),
                                Err(e) => out.push(Finding {
                                    severity: Severity::Warning,
                                    area: "coverage",
                                    subject: name.clone(),
                                    message: format!(
                                        "cannot list its databases, so none is counted as protected: {e:#}"
                                    ),
                                }),
                            }
                        }
                    }
                }
            }
            None => {}
        }
    }
    names
}

fn unprotected(out: &mut Vec<Finding>, subject: String, message: String) {
    out.push(Finding {
        severity: Severity::Error,
        area: "coverage",
        subject,
        message,
    });
}

fn empty_server() -> lifeboat_plan::DatabaseServerResource {
    lifeboat_plan::DatabaseServerResource {
        databases: lifeboat_plan::DatabaseSelection::All,
        exclude: vec![],
        at: Default::default(),
    }
}

/// Each resource's newest complete restore point against its rpo.
fn freshness(ctx: &Context, plan: &Plan, out: &mut Vec<Finding>) {
    let points = match ctx.open_repository().and_then(|r| Ok(r.points()?)) {
        Ok(points) => points,
        Err(e) => {
            out.push(Finding {
                severity: Severity::Error,
                area: "freshness",
                subject: "repository".into(),
                message: format!("cannot read restore points: {e:#}"),
            });
            return;
        }
    };
    let now = jiff::Timestamp::now();
    let last_check: Option<serde_json::Value> = crate::sitestate::StateStore::of(plan)
        .read_file("last-check.json")
        .and_then(|b| serde_json::from_slice(&b).ok());
    let checked = last_check.as_ref().and_then(|c| {
        Some((
            c["time"].as_str()?.parse::<jiff::Timestamp>().ok()?,
            c["problems"].as_u64().unwrap_or(0),
        ))
    });
    match checked {
        None => out.push(Finding {
            severity: Severity::Warning,
            area: "freshness",
            subject: "repository".into(),
            message: "never verified from this plan: run `lifeboat check --read-data`".into(),
        }),
        Some((_, problems)) if problems > 0 => out.push(Finding {
            severity: Severity::Error,
            area: "freshness",
            subject: "repository".into(),
            message: format!("the last `lifeboat check` found {problems} problem(s)"),
        }),
        Some((time, _)) if now.duration_since(time).as_secs() > 7 * 24 * 3600 => {
            out.push(Finding {
                severity: Severity::Warning,
                area: "freshness",
                subject: "repository".into(),
                message: format!("last verified {time}, more than a week ago"),
            })
        }
        Some(_) => {}
    }
    for (name, resource) in &plan.resources {
        let rpo = resource.rpo_or(&plan.objectives);
        // Complete: every entry, and every item discovered (one item never stands in).
        let newest = lifeboat_repository::choice::newest_complete(&points, name);
        match newest {
            None => out.push(Finding {
                severity: Severity::Error,
                area: "freshness",
                subject: name.clone(),
                message: "no restore point holds a complete capture (every item discovered \
                          included)"
                    .into(),
            }),
            Some((id, point)) => {
                let age = now.duration_since(point.time).as_millis().max(0) as u64;
                if age > rpo.as_millis() as u64 {
                    out.push(Finding {
                        severity: Severity::Error,
                        area: "freshness",
                        subject: name.clone(),
                        message: format!(
                            "the newest complete capture (restore point {}, taken {}) is {} \
                             old, past the rpo of {}",
                            id.short(),
                            output::zoned_time(point.time),
                            output::millis(age),
                            output::millis(rpo.as_millis() as u64)
                        ),
                    });
                }
            }
        }
    }
}

/// The last drill of the whole plan that ran to its end: whether it passed, its achieved RTO
/// against the rto, and whether it is older than twice the drill schedule's period (a month
/// without a schedule). Also drills whose sandbox is still up.
fn last_drill(plan: &Plan, out: &mut Vec<Finding>) {
    let store = crate::sitestate::StateStore::of(plan);
    let mut finding = |severity, message: String| {
        out.push(Finding {
            severity,
            area: "drill",
            subject: "drill".into(),
            message,
        })
    };
    for (id, phase) in super::drill::unfinished(&store) {
        finding(
            Severity::Warning,
            match phase {
                lifeboat_drill::record::Phase::Kept => {
                    format!("drill {id} kept its sandbox up: `lifeboat drill --cleanup` removes it")
                }
                _ => format!(
                    "drill {id} was interrupted and may have left things behind: `lifeboat \
                     drill --cleanup`"
                ),
            },
        );
    }
    let reports = super::drill::past_reports(&store, plan);
    let Some(last) = reports
        .iter()
        .rev()
        .find(|r| r.only.is_empty() && !r.interrupted && !r.kept)
    else {
        finding(
            Severity::Warning,
            "never drilled (the whole plan, to the end): `lifeboat drill` proves recovery works \
             and measures the RTO"
                .into(),
        );
        return;
    };
    let when = lifeboat_drill::report::time_text(last.started);
    let rto = output::millis(last.rto_objective_ms);
    match last.achieved_rto_ms {
        Some(ms) if !last.rto_met => finding(
            Severity::Error,
            format!(
                "the last drill ({when}) achieved an RTO of {}, past the rto of {rto}",
                output::millis(ms)
            ),
        ),
        None => finding(
            Severity::Error,
            format!(
                "the last drill ({when}) did not complete a recovery, so achieved no RTO \
                 (rto {rto})"
            ),
        ),
        Some(_) => {}
    }
    let other: Vec<&str> = last
        .problems
        .iter()
        .filter(|p| !p.starts_with("RTO "))
        .map(String::as_str)
        .collect();
    if !other.is_empty() {
        let shown: Vec<String> = other
            .iter()
            .take(3)
            .map(|p| match p.char_indices().nth(200) {
                Some((cut, _)) => format!("{}…", &p[..cut]),
                None => p.to_string(),
            })
            .collect();
        finding(
            Severity::Error,
            format!(
                "the last drill ({when}) failed: {}{}",
                shown.join("; "),
                match other.len() {
                    0..=3 => String::new(),
                    n => format!("; and {} more (`lifeboat drill --history`)", n - 3),
                }
            ),
        );
    }
    let age = jiff::Timestamp::now()
        .duration_since(last.started)
        .as_millis()
        .max(0) as u64;
    if age > drill_period_ms(plan) * 2 {
        finding(
            Severity::Warning,
            format!(
                "the last drill was {} ago, more than twice the drill schedule's period",
                output::millis(age)
            ),
        );
    }
}

/// How often drills are meant to run: the schedule's period (a cron expression's by which
/// fields it fixes), else a month.
fn drill_period_ms(plan: &Plan) -> u64 {
    const DAY: u64 = 24 * 3600 * 1000;
    match &plan.schedule.drill {
        Some(lifeboat_plan::Timing::Every(d)) => d.as_millis() as u64,
        Some(lifeboat_plan::Timing::Cron(expr)) => {
            let fields: Vec<&str> = expr.split_whitespace().collect();
            match fields.as_slice() {
                [_, _, "*", "*", "*"] => DAY,
                [_, _, "*", "*", _] => 7 * DAY,
                _ => 31 * DAY,
            }
        }
        _ => 15 * DAY,
    }
}

/// The version each site reports, where the plan says how to ask.
fn drift(plan: &Plan, out: &mut Vec<Finding>) {
    let Some(versions) = &plan.versions else {
        return;
    };
    let mut seen: Vec<(String, String)> = Vec::new();
    for (site, source) in &versions.at {
        let got = match source {
            VersionSource::Http(url) => {
                lifeboat_services::get_text(url, Duration::from_secs(10)).map_err(|e| e.to_string())
            }
            VersionSource::Command(command) => {
                lifeboat_services::run_command(command.argv(), plan.plan_dir(), &[])
                    .map_err(|e| e.to_string())
            }
        };
        match got {
            Ok(version) => seen.push((site.clone(), version)),
            Err(e) => out.push(Finding {
                severity: Severity::Warning,
                area: "drift",
                subject: site.clone(),
                message: format!("cannot read the version: {e}"),
            }),
        }
    }
    if seen.windows(2).any(|w| w[0].1 != w[1].1) {
        out.push(Finding {
            severity: Severity::Error,
            area: "drift",
            subject: "versions".into(),
            message: format!(
                "the sites run different versions: {}",
                seen.iter()
                    .map(|(site, v)| format!("{site} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
}

/// Plan settings that cannot work: the plan check's warnings, a DNS TTL beyond the RTO,
/// secrets that cannot be resolved.
fn lint(plan: &Plan, out: &mut Vec<Finding>) {
    for warning in plan.warnings() {
        out.push(Finding {
            severity: Severity::Warning,
            area: "lint",
            subject: warning.path.clone(),
            message: warning.message.clone(),
        });
    }
    if let Some(Traffic::Dns(dns)) = &plan.traffic
        && u64::from(dns.ttl) > plan.objectives.rto.as_secs()
    {
        out.push(Finding {
            severity: Severity::Warning,
            area: "lint",
            subject: "traffic.ttl".into(),
            message: format!(
                "resolvers may keep the old address for {} s, longer than the rto",
                dns.ttl
            ),
        });
    }
    for problem in lifeboat_plan::check_secrets(plan) {
        out.push(Finding {
            severity: Severity::Error,
            area: "lint",
            subject: problem.path.clone(),
            message: problem.message.clone(),
        });
    }
}
