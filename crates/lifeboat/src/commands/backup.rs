//! `lifeboat backup`: capture resources into one new restore point.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use lifeboat_files::{BackupOptions, Progress};
use lifeboat_format::manifest::{CaptureStats, ResourcePoint, ResourceStatus, RestorePoint};
use lifeboat_format::{FORMAT_VERSION, Id};
use lifeboat_plan::ResourceKind;

use crate::cli::BackupArgs;
use crate::context::Context;
use crate::output::{self, Bar, Exit};

/// One thing to capture.
struct Target {
    name: String,
    kind: &'static str,
    /// For file trees: the directory and its filters.
    files: Option<(PathBuf, BackupOptions)>,
}

fn targets(ctx: &Context, args: &BackupArgs) -> Result<(Vec<Target>, Option<String>)> {
    if let Some(path) = &args.path {
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("cannot back up {}", path.display()))?;
        let options = BackupOptions {
            include: args.include.clone(),
            exclude: args.exclude.clone(),
        };
        let target = Target {
            name: path.display().to_string(),
            kind: "files",
            files: Some((path, options)),
        };
        return Ok((vec![target], None));
    }
    let plan = ctx.require_plan()?;
    for name in &args.resources {
        if plan.resource(name).is_none() {
            bail!(
                "the plan has no resource `{name}`; it has: {}",
                plan.resources
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let (site, _) = plan.primary_site();
    let mut out = Vec::new();
    for (name, resource) in &plan.resources {
        if !args.resources.is_empty() && !args.resources.contains(name) {
            continue;
        }
        let files = match &resource.kind {
            ResourceKind::Files(files) => files.at.get(site).map(|b| {
                (
                    b.path.clone(),
                    BackupOptions {
                        include: files.include.clone(),
                        exclude: files.exclude.clone(),
                    },
                )
            }),
            _ => None,
        };
        out.push(Target {
            name: name.clone(),
            kind: resource.kind.name(),
            files,
        });
    }
    Ok((out, Some(site.to_string())))
}

pub fn run(ctx: &Context, args: BackupArgs) -> Result<Exit> {
    let (targets, site) = targets(ctx, &args)?;
    let repo = ctx.open_repository()?;
    let started = jiff::Timestamp::now();
    let earlier = repo.points()?;
    let writer = repo.writer();
    let mut resources = Vec::new();
    let mut skipped_files = Vec::new();
    for target in targets {
        let (source, status, root, parent, stats) = match &target.files {
            Some((path, options)) => {
                let source = path.display().to_string();
                let parent = parent_of(&earlier, &target.name, &source);
                let progress = Arc::new(Progress::default());
                let bar = Bar::start(&ctx.global, &target.name, progress.clone());
                let outcome =
                    lifeboat_files::backup(&writer, path, parent, options, Some(&progress));
                drop(bar);
                match outcome {
                    Ok(capture) => {
                        skipped_files.extend(capture.skipped);
                        (
                            source,
                            ResourceStatus::Complete,
                            Some(capture.root),
                            parent,
                            capture.stats,
                        )
                    }
                    Err(e) => {
                        tracing::error!("{}: {e}", target.name);
                        (
                            source,
                            ResourceStatus::Failed {
                                error: e.to_string(),
                            },
                            None,
                            parent,
                            CaptureStats::default(),
                        )
                    }
                }
            }
            None => {
                let error = if target.kind == "files" {
                    "the resource has no binding at this site".to_string()
                } else {
                    format!("lifeboat cannot capture `{}` resources yet", target.kind)
                };
                tracing::error!("{}: {error}", target.name);
                (
                    String::new(),
                    ResourceStatus::Failed { error },
                    None,
                    None,
                    CaptureStats::default(),
                )
            }
        };
        resources.push(ResourcePoint {
            name: target.name,
            kind: target.kind.to_string(),
            source,
            status,
            root,
            parent,
            stats,
        });
    }
    // Data and index first; the manifest only once everything it names is stored.
    writer.finish()?;
    let point = RestorePoint {
        version: FORMAT_VERSION,
        time: started,
        finished: jiff::Timestamp::now(),
        hostname: hostname(),
        plan: ctx.plan().map(|p| p.name()),
        site,
        tags: args.tag,
        resources,
    };
    let id = repo.save_point(&point)?;
    let exit = if point.is_complete() {
        Exit::Success
    } else {
        Exit::Incomplete
    };
    if ctx.global.json {
        output::json(
            &serde_json::json!({ "id": id, "complete": point.is_complete(), "point": point, "skipped": skipped_files }),
        );
        return Ok(exit);
    }
    for r in &point.resources {
        let s = &r.stats;
        match &r.status {
            ResourceStatus::Complete => println!(
                "  {}: {} files, {} ({} files read, {} new, {} stored) in {}",
                r.name,
                s.files,
                output::bytes(s.bytes),
                s.files_read,
                output::bytes(s.bytes_new),
                output::bytes(s.bytes_stored),
                output::millis(s.duration_ms)
            ),
            ResourceStatus::Failed { error } => println!("  {}: FAILED: {error}", r.name),
        }
    }
    for s in &skipped_files {
        eprintln!("warning: skipped {s}");
    }
    println!(
        "restore point {id} saved{}",
        if point.is_complete() {
            ""
        } else {
            " (incomplete)"
        }
    );
    Ok(exit)
}

/// The newest complete capture of the same resource from the same place.
fn parent_of(points: &[(Id, RestorePoint)], name: &str, source: &str) -> Option<Id> {
    points.iter().rev().find_map(|(_, p)| {
        p.resources
            .iter()
            .find(|r| r.name == name && r.source == source && r.status == ResourceStatus::Complete)
            .and_then(|r| r.root)
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
