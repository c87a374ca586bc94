//! `lifeboat restore`: write a restore point's resources into a directory, or compare them
//! with one (`--verify`).

use std::sync::Arc;

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use lifeboat_files::{Progress, RestoreOptions};
use lifeboat_format::Id;
use lifeboat_format::manifest::{ResourcePoint, RestorePoint};
use lifeboat_plan::{Plan, ResourceKind};
use lifeboat_repository::Repository;

use super::backup::{Server, selects};
use crate::cli::{RestoreArgs, VerifyArgs};
use crate::context::Context;
use crate::output::{self, Bar, Exit};

/// The restore points a restore reads: an id for everything, or with `latest` each
/// resource's own newest complete capture (every item it discovered included). A resource
/// with none is taken as the newest point holding anything of it has it (a failed or partial
/// capture, reported as such), with a warning. Without `--resource`, `latest` restores every
/// resource of the plan that was ever captured (without a plan, or when none was, the
/// resources of the newest point holding a capture).
fn sources(
    ctx: &Context,
    repo: &Repository,
    spec: &str,
    resources: &[String],
) -> Result<Vec<(Id, RestorePoint, Vec<String>)>> {
    if spec.is_empty() {
        bail!("give a restore point: `latest` or an id (see `lifeboat points`)");
    }
    if spec != "latest" {
        let (id, point) = repo.find_point(spec)?;
        return Ok(vec![(id, point, resources.to_vec())]);
    }
    let points = repo.points()?;
    let anything_of = |name: &str| {
        points
            .iter()
            .rev()
            .find(|(_, p)| p.entries(name).next().is_some())
    };
    let names: Vec<String> = if !resources.is_empty() {
        resources.to_vec()
    } else {
        let planned: Vec<String> = ctx
            .plan()
            .map(|plan| plan.resources.keys().cloned().collect())
            .unwrap_or_default();
        let (captured, never): (Vec<String>, Vec<String>) =
            planned.into_iter().partition(|n| anything_of(n).is_some());
        if captured.is_empty() {
            newest_resources(&points)?
        } else {
            if !never.is_empty() {
                eprintln!(
                    "warning: not restored, never captured: {}",
                    never.join(", ")
                );
            }
            captured
        }
    };
    let mut out: Vec<(Id, RestorePoint, Vec<String>)> = Vec::new();
    for name in names {
        let found = match lifeboat_repository::choice::newest_complete(&points, &name) {
            Some(found) => found,
            None => {
                let found = anything_of(&name).ok_or_else(|| {
                    crate::choice::explain(lifeboat_repository::choice::Unchosen::Never(vec![
                        name.clone(),
                    ]))
                })?;
                eprintln!(
                    "warning: no restore point holds a complete capture of `{name}`; taking \
                     what restore point {} holds of it",
                    found.0.short()
                );
                found
            }
        };
        match out.iter_mut().find(|(id, _, _)| *id == found.0) {
            Some((_, _, names)) => names.push(name),
            None => out.push((found.0, found.1.clone(), vec![name])),
        }
    }
    Ok(out)
}

/// The resources (not their items) of the newest point holding a capture: what `latest`
/// restores when no plan resource names them (`backup --path`).
fn newest_resources(points: &[(Id, RestorePoint)]) -> Result<Vec<String>> {
    let (_, newest) = points
        .iter()
        .rev()
        .find(|(_, p)| p.resources.iter().any(|r| r.root.is_some()))
        .ok_or_else(|| anyhow!("no restore point holds a complete capture"))?;
    Ok(newest
        .resources
        .iter()
        .filter(|r| r.root.is_some())
        .filter(|r| {
            !newest
                .resources
                .iter()
                .any(|o| o.name != r.name && selects(&o.name, &r.name))
        })
        .map(|r| r.name.clone())
        .collect())
}

/// One restore point for `lifeboat verify`: `latest` is the newest holding a complete
/// capture of the resource when one is named, else of anything.
fn find(repo: &Repository, spec: &str, resource: Option<&str>) -> Result<(Id, RestorePoint)> {
    if spec != "latest" {
        return Ok(repo.find_point(spec)?);
    }
    let points = repo.points()?;
    let found = match resource {
        Some(name) => lifeboat_repository::choice::newest_complete(&points, name),
        None => points
            .iter()
            .rev()
            .find(|(_, p)| p.resources.iter().any(|r| r.root.is_some())),
    };
    found.cloned().ok_or_else(|| match resource {
        Some(name) => anyhow!("no restore point holds a complete capture of `{name}`"),
        None => anyhow!("no restore point holds a complete capture"),
    })
}

pub fn run(ctx: &Context, args: RestoreArgs) -> Result<Exit> {
    let repo = ctx.open_repository()?;
    let sources = sources(ctx, &repo, &args.point, &args.resource)?;
    let mut chosen: Vec<(Id, &ResourcePoint)> = Vec::new();
    for (id, point, names) in &sources {
        for name in names {
            if !point.resources.iter().any(|r| selects(name, &r.name)) {
                bail!(
                    "restore point {} has no resource `{name}`; it has: {}",
                    id.short(),
                    point
                        .resources
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let mine: Vec<&ResourcePoint> = point
            .resources
            .iter()
            .filter(|r| names.is_empty() || names.iter().any(|n| selects(n, &r.name)))
            .collect();
        // A database item brings its server's accounts from its own point.
        let mine = if args.site.is_some() {
            with_globals(point, mine)
        } else {
            mine
        };
        chosen.extend(mine.into_iter().map(|r| (*id, r)));
    }
    match (&args.target, &args.site) {
        (Some(target), _) => to_directory(ctx, &repo, &args, target, &chosen),
        (None, Some(site)) => {
            let resources: Vec<&ResourcePoint> = chosen.iter().map(|(_, r)| *r).collect();
            check_renames(&args.rename, &resources)?;
            to_site(ctx, &repo, &args, site, &chosen)
        }
        (None, None) => {
            bail!("give --target DIR, or --site SITE to restore into the plan's bindings there")
        }
    }
}

/// The one restore point everything comes from, when it is one (`null` in JSON otherwise:
/// each resource names its own).
fn single(chosen: &[(Id, &ResourcePoint)]) -> Option<Id> {
    let first = chosen.first()?.0;
    chosen.iter().all(|(id, _)| *id == first).then_some(first)
}

/// Restoring a database needs its server's roles first: a database item brings the
/// server-wide item of its resource along, ahead of it.
pub(crate) fn with_globals<'a>(
    point: &'a RestorePoint,
    chosen: Vec<&'a ResourcePoint>,
) -> Vec<&'a ResourcePoint> {
    let mut out: Vec<&ResourcePoint> = Vec::with_capacity(chosen.len() + 1);
    for r in chosen {
        if let (Some(_), Some((base, _))) = (&r.database, r.name.split_once('/'))
            && !out.iter().any(|o| o.name == base)
            && let Some(globals) = point.resource(base)
        {
            out.push(globals);
        }
        if !out.iter().any(|o| o.name == r.name) {
            out.push(r);
        }
    }
    out
}

/// The database a captured item is, when it is one: the part after `resource/`.
fn database_of(r: &ResourcePoint) -> Option<&str> {
    r.database.as_ref()?;
    r.name.split_once('/').map(|(_, db)| db)
}

/// Every `--rename OLD=NEW` must name a database being restored: a typo must not restore
/// over the original.
fn check_renames(renames: &[(String, String)], chosen: &[&ResourcePoint]) -> Result<()> {
    for (old, _) in renames {
        if !chosen.iter().any(|r| database_of(r) == Some(old.as_str())) {
            let databases: Vec<&str> = chosen.iter().filter_map(|r| database_of(r)).collect();
            bail!(
                "--rename {old}=...: no database `{old}` is being restored{}",
                if databases.is_empty() {
                    String::new()
                } else {
                    format!(" (databases: {})", databases.join(", "))
                }
            );
        }
    }
    Ok(())
}

fn renamed<'a>(renames: &'a [(String, String)], database: &'a str) -> &'a str {
    renames
        .iter()
        .find(|(old, _)| old == database)
        .map_or(database, |(_, new)| new.as_str())
}

fn to_directory(
    ctx: &Context,
    repo: &Repository,
    args: &RestoreArgs,
    target_dir: &Path,
    chosen: &[(Id, &ResourcePoint)],
) -> Result<Exit> {
    // One resource: the target receives its contents. Several: one folder each.
    let nested = chosen.len() > 1;
    let mut report = Vec::new();
    let mut differences = 0usize;
    for &(id, r) in chosen {
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
        if let lifeboat_format::manifest::ResourceStatus::Partial { skipped } = &r.status {
            eprintln!(
                "warning: `{}` was captured incomplete in restore point {}: {} entries were skipped (first: {})",
                r.name,
                id.short(),
                r.stats.files_skipped,
                skipped.first().map_or("?", String::as_str)
            );
        }
        // A discovered item's name came from outside the plan: one plain folder, always.
        let target = match (nested, r.name.split_once('/')) {
            (false, _) => target_dir.to_path_buf(),
            (true, Some((base, item))) => target_dir
                .join(base)
                .join(lifeboat_services::item_folder_name(item)),
            (true, None) => target_dir.join(&r.name),
        };
        if args.verify {
            let diffs = lifeboat_files::verify(repo, root, args.path.as_deref(), &target)?;
            differences += diffs.len();
            if !ctx.global.json {
                for d in &diffs {
                    println!("{}: {}: {}", r.name, d.path, d.problem);
                }
            }
            report.push(serde_json::json!({
                "resource": r.name,
                "point": id,
                "target": lifeboat_files::display_path(&target),
                "differences": diffs
            }));
        } else {
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(&ctx.global, &r.name, progress.clone());
            let options = RestoreOptions {
                subpath: args.path.clone(),
                owners: None,
            };
            let started = std::time::Instant::now();
            let stats = lifeboat_files::restore(repo, root, &target, &options, Some(&progress))?;
            drop(bar);
            if !ctx.global.json {
                println!(
                    "{}: restored {} files, {} dirs, {} to {} in {}",
                    r.name,
                    stats.files,
                    stats.dirs,
                    output::bytes(stats.bytes),
                    lifeboat_files::display_path(&target),
                    output::millis(started.elapsed().as_millis() as u64)
                );
            }
            report.push(serde_json::json!({
                "resource": r.name,
                "point": id,
                "target": lifeboat_files::display_path(&target),
                "stats": stats
            }));
        }
    }
    let which = match single(chosen) {
        Some(id) => format!("restore point {}", id.short()),
        None => "each resource's restore point".to_string(),
    };
    if ctx.global.json {
        output::json(&serde_json::json!({ "point": single(chosen), "resources": report }));
    } else if args.verify {
        if differences == 0 {
            println!(
                "{} matches {which}",
                lifeboat_files::display_path(target_dir),
            );
        } else {
            println!("{differences} differences from {which}");
        }
    }
    Ok(if differences > 0 {
        Exit::Problems
    } else {
        Exit::Success
    })
}

/// Restores each resource into its binding at `site`. A resource that fails does not stop the
/// others; the exit code says whether all succeeded.
fn to_site(
    ctx: &Context,
    repo: &Repository,
    args: &RestoreArgs,
    site: &str,
    chosen: &[(Id, &ResourcePoint)],
) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    if plan.site(site).is_none() {
        bail!(
            "the plan has no site `{site}`; it has: {}",
            plan.sites.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let mut report = Vec::new();
    let mut failed = 0;
    for &(id, r) in chosen {
        let started = std::time::Instant::now();
        let how = AtSite {
            replace: args.replace,
            rename: &args.rename,
            jobs: args.jobs,
            staging: None,
            mark: None,
        };
        let outcome = restore_at_site(repo, plan, site, r, &how);
        let ms = started.elapsed().as_millis() as u64;
        match &outcome {
            Ok(what) if !ctx.global.json => {
                println!("{}: {what} in {}", r.name, output::millis(ms))
            }
            Err(e) if !ctx.global.json => println!("{}: FAILED: {e:#}", r.name),
            _ => {}
        }
        if outcome.is_err() {
            failed += 1;
        }
        report.push(match outcome {
            Ok(what) => serde_json::json!({ "resource": r.name, "point": id, "ok": true, "done": what, "duration_ms": ms }),
            Err(e) => serde_json::json!({ "resource": r.name, "point": id, "ok": false, "error": format!("{e:#}"), "duration_ms": ms }),
        });
    }
    if ctx.global.json {
        output::json(
            &serde_json::json!({ "point": single(chosen), "site": site, "resources": report }),
        );
    }
    Ok(if failed > 0 {
        Exit::Failure
    } else {
        Exit::Success
    })
}

/// How `restore_at_site` treats what is already there.
pub(crate) struct AtSite<'a> {
    pub replace: bool,
    pub rename: &'a [(String, String)],
    pub jobs: u32,
    /// The PostgreSQL staging database's name (a drill's, so its clean-up can find it).
    pub staging: Option<&'a str>,
    /// A comment set on each database restored (a drill's mark: it drops only those).
    pub mark: Option<&'a str>,
}

pub(crate) fn restore_at_site(
    repo: &Repository,
    plan: &Plan,
    site: &str,
    r: &ResourcePoint,
    args: &AtSite<'_>,
) -> Result<String> {
    let replace = args.replace;
    let Some(root) = r.root else {
        bail!("not captured in this restore point: {}", failure(r));
    };
    let (base, item) = match r.name.split_once('/') {
        Some((base, item)) => (base, Some(item)),
        None => (r.name.as_str(), None),
    };
    let Some(resource) = plan.resource(base) else {
        bail!("the plan has no resource `{base}` (any more)");
    };
    let unbound = || anyhow!("the resource has no binding at site `{site}`");
    match &resource.kind {
        ResourceKind::Files(files) => {
            let path = &files.at.get(site).ok_or_else(unbound)?.path;
            let occupied = std::fs::read_dir(path)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if occupied && !replace {
                bail!(
                    "{} is not empty; restore with --replace to write into it",
                    path.display()
                );
            }
            let stats =
                lifeboat_files::restore(repo, root, path, &RestoreOptions::default(), None)?;
            Ok(format!(
                "restored {} files ({}) to {}",
                stats.files,
                output::bytes(stats.bytes),
                path.display()
            ))
        }
        ResourceKind::Sqlite(sqlite) => {
            let path = &sqlite.at.get(site).ok_or_else(unbound)?.path;
            let n = lifeboat_services::restore_sqlite(repo, &root, path, replace)?;
            Ok(format!(
                "restored {} to {}",
                output::bytes(n),
                path.display()
            ))
        }
        ResourceKind::Command(command) => {
            let apply = command
                .at
                .get(site)
                .and_then(|b| b.apply_command())
                .ok_or_else(|| anyhow!("no `apply` command at site `{site}`"))?;
            let argv = match item {
                Some(item) => apply.with_item(item).argv().to_vec(),
                None => apply.argv().to_vec(),
            };
            let n = lifeboat_services::apply_command(repo, &root, &argv, plan.plan_dir())?;
            Ok(format!(
                "applied {} with `{}`",
                output::bytes(n),
                argv.join(" ")
            ))
        }
        ResourceKind::Http(http) => {
            let binding = http.at.get(site).ok_or_else(unbound)?;
            let req = super::backup::http_request(binding, binding.apply_method())?;
            let n = lifeboat_services::apply_http(repo, &root, &req)?;
            Ok(format!(
                "sent {} with {} {}",
                output::bytes(n),
                req.method,
                req.url
            ))
        }
        ResourceKind::Postgres(db) | ResourceKind::Mysql(db) => {
            let server = Server::of(&resource.kind, db.at.get(site).ok_or_else(unbound)?)?;
            let Some(database) = item else {
                let n = match &server {
                    Server::Postgres(s) => s.restore_globals(repo, &root)?,
                    Server::Mysql(s) => s.restore_globals(repo, &root)?,
                };
                return Ok(format!(
                    "applied accounts ({}) to {}",
                    output::bytes(n),
                    server.describe()
                ));
            };
            let target = renamed(args.rename, database);
            let facts = r.database.as_ref();
            let n = match &server {
                Server::Postgres(s) => {
                    let how = lifeboat_services::PgRestore {
                        target,
                        replace,
                        jobs: args.jobs,
                        staging: args.staging,
                        mark: args.mark,
                    };
                    s.restore_database(repo, &root, facts, &how)?
                }
                Server::Mysql(s) => {
                    s.restore_database(repo, &root, facts, target, replace, args.mark)?
                }
            };
            Ok(format!(
                "restored database `{target}` ({}) on {}",
                output::bytes(n),
                server.describe()
            ))
        }
    }
}

fn failure(r: &ResourcePoint) -> String {
    match &r.status {
        lifeboat_format::manifest::ResourceStatus::Failed { error } => error.clone(),
        lifeboat_format::manifest::ResourceStatus::Complete
        | lifeboat_format::manifest::ResourceStatus::Partial { .. } => "no data".into(),
    }
}

/// `lifeboat verify`: compares the databases at a site with what a restore point captured.
pub fn verify(ctx: &Context, args: VerifyArgs) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    if plan.site(&args.site).is_none() {
        bail!(
            "the plan has no site `{}`; it has: {}",
            args.site,
            plan.sites.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let repo = ctx.open_repository()?;
    let single = match args.resource.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let (id, point) = find(&repo, &args.point, single)?;
    let chosen: Vec<&ResourcePoint> = point
        .resources
        .iter()
        .filter(|r| r.database.is_some() && r.kind == "postgres")
        .filter(|r| args.resource.is_empty() || args.resource.iter().any(|n| selects(n, &r.name)))
        .collect();
    if chosen.is_empty() {
        bail!(
            "restore point {} holds no captured database{}",
            id.short(),
            match args.resource.as_slice() {
                [] => String::new(),
                names => format!(" of {}", names.join(", ")),
            }
        );
    }
    check_renames(&args.rename, &chosen)?;
    let mut report = Vec::new();
    let mut problems = 0usize;
    for r in chosen {
        let facts = r.database.as_ref().expect("chosen for its facts");
        let database = database_of(r).unwrap_or(&facts.name);
        let target = renamed(&args.rename, database);
        let outcome = verify_one(plan, &args.site, r, target);
        let differences = match outcome {
            Ok(d) => d,
            Err(e) => vec![format!("{e:#}")],
        };
        problems += differences.len();
        if !ctx.global.json {
            if differences.is_empty() {
                println!(
                    "{}: `{target}` at {} matches ({} tables, {} checks)",
                    r.name,
                    args.site,
                    facts.tables.len(),
                    facts.checks.iter().filter(|c| c.error.is_none()).count()
                );
            } else {
                for d in &differences {
                    println!("{}: `{target}` at {}: {d}", r.name, args.site);
                }
            }
        }
        report.push(serde_json::json!({
            "resource": r.name,
            "database": target,
            "tables": facts.tables.len(),
            "checks": facts.checks.len(),
            "differences": differences,
        }));
    }
    if ctx.global.json {
        output::json(&serde_json::json!({ "point": id, "site": args.site, "databases": report }));
    } else if problems > 0 {
        println!("{problems} differences from restore point {}", id.short());
    }
    Ok(if problems > 0 {
        Exit::Problems
    } else {
        Exit::Success
    })
}

fn verify_one(plan: &Plan, site: &str, r: &ResourcePoint, target: &str) -> Result<Vec<String>> {
    let facts = r.database.as_ref().expect("a database capture");
    let base = r.name.split_once('/').map_or(r.name.as_str(), |(b, _)| b);
    let resource = plan
        .resource(base)
        .ok_or_else(|| anyhow!("the plan has no resource `{base}` (any more)"))?;
    match &resource.kind {
        ResourceKind::Postgres(pg) => {
            let binding = pg
                .at
                .get(site)
                .ok_or_else(|| anyhow!("the resource has no binding at site `{site}`"))?;
            match Server::of(&resource.kind, binding)? {
                Server::Postgres(server) => Ok(server.verify_database(target, facts)?),
                Server::Mysql(_) => unreachable!("a postgres binding"),
            }
        }
        other => bail!(
            "lifeboat verify compares PostgreSQL databases; `{}` captures record no row counts",
            other.name()
        ),
    }
}
