//! `lifeboat restore`: write a restore point's resources into a directory, or compare them
//! with one (`--verify`).

use std::sync::Arc;

use anyhow::{Result, bail};
use lifeboat_files::{Progress, RestoreOptions};
use lifeboat_format::Id;
use lifeboat_format::manifest::{ResourcePoint, RestorePoint};
use lifeboat_repository::Repository;

use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::output::{self, Bar, Exit};

/// Finds the restore point; `latest` with a resource means the newest that holds it.
fn find(repo: &Repository, spec: &str, resource: Option<&str>) -> Result<(Id, RestorePoint)> {
    if spec == "latest"
        && let Some(name) = resource
    {
        let found = repo
            .points()?
            .into_iter()
            .rev()
            .find(|(_, p)| p.resource(name).is_some_and(|r| r.root.is_some()));
        return found.ok_or_else(|| {
            anyhow::anyhow!("no restore point holds a complete capture of `{name}`")
        });
    }
    Ok(repo.find_point(spec)?)
}

pub fn run(ctx: &Context, args: RestoreArgs) -> Result<Exit> {
    let repo = ctx.open_repository()?;
    let (id, point) = find(&repo, &args.point, args.resource.as_deref())?;
    let chosen: Vec<&ResourcePoint> = match &args.resource {
        Some(name) => match point.resource(name) {
            Some(r) => vec![r],
            None => bail!(
                "restore point {} has no resource `{name}`; it has: {}",
                id.short(),
                point
                    .resources
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => point.resources.iter().collect(),
    };
    // One resource: the target receives its contents. Several: one folder each.
    let nested = chosen.len() > 1;
    let mut report = Vec::new();
    let mut differences = 0usize;
    for r in chosen {
        let Some(root) = r.root else {
            if !nested {
                bail!(
                    "`{}` was not captured in restore point {}: {}",
                    r.name,
                    id.short(),
                    failure(r)
                );
            }
            eprintln!(
                "warning: skipping `{}`: not captured ({})",
                r.name,
                failure(r)
            );
            continue;
        };
        if r.kind != "files" {
            bail!("lifeboat cannot restore `{}` resources yet", r.kind);
        }
        let target = if nested {
            args.target.join(&r.name)
        } else {
            args.target.clone()
        };
        if args.verify {
            let diffs = lifeboat_files::verify(&repo, root, args.path.as_deref(), &target)?;
            differences += diffs.len();
            if !ctx.global.json {
                for d in &diffs {
                    println!("{}: {}: {}", r.name, d.path, d.problem);
                }
            }
            report.push(
                serde_json::json!({ "resource": r.name, "target": target, "differences": diffs }),
            );
        } else {
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&ctx.global, &r.name, progress.clone());
            let options = RestoreOptions {
                subpath: args.path.clone(),
                owners: None,
            };
            let started = std::time::Instant::now();
            let stats = lifeboat_files::restore(&repo, root, &target, &options, Some(&progress))?;
            drop(bar);
            if !ctx.global.json {
                println!(
                    "{}: restored {} files, {} dirs, {} to {} in {}",
                    r.name,
                    stats.files,
                    stats.dirs,
                    output::bytes(stats.bytes),
                    target.display(),
                    output::millis(started.elapsed().as_millis() as u64)
                );
            }
            report
                .push(serde_json::json!({ "resource": r.name, "target": target, "stats": stats }));
        }
    }
    if ctx.global.json {
        output::json(&serde_json::json!({ "point": id, "resources": report }));
    } else if args.verify {
        if differences == 0 {
            println!(
                "{} matches restore point {}",
                args.target.display(),
                id.short()
            );
        } else {
            println!(
                "{differences} differences from restore point {}",
                id.short()
            );
        }
    }
    Ok(if differences > 0 {
        Exit::Problems
    } else {
        Exit::Success
    })
}

fn failure(r: &ResourcePoint) -> String {
    match &r.status {
        lifeboat_format::manifest::ResourceStatus::Failed { error } => error.clone(),
        lifeboat_format::manifest::ResourceStatus::Complete => "no data".into(),
    }
}
