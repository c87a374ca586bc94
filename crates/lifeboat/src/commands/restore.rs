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
    if !args.verify {
        crate::interrupt::remove_staging_on_signal()?;
    }
    let sources = sources(ctx, &repo, &args.point, &args.resource)?;
    let mut chosen: Vec<(Id, &ResourcePoint)> = Vec::new();
    for (id, point, names) in &sources {
        for name in names {
            if !point.resources.iter().any(|r| selects(name, &r.name)) {
                return Err(output::usage(format!(
                    "restore point {} has no resource `{name}`; it has: {}",
                    id.short(),
                    point
                        .resources
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let mine: Vec<&ResourcePoint> = point
            .resources
            .iter()
            .filter(|r| names.is_empty() || names.iter().any(|n| selects(n, &r.name)))
            .collect();
        // A database item brings its server's accounts from its own point (not to a
        // comparison, which applies nothing).
        let mine = if args.site.is_some() && !args.verify {
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
            // A comparison needs no accounts applied first, and compares none: a server's
            // accounts are left out when its databases are compared.
            let chosen = if args.verify {
                type Chosen<'a> = Vec<(Id, &'a ResourcePoint)>;
                let (accounts, databases): (Chosen, Chosen) =
                    chosen.into_iter().partition(|(_, r)| {
                        matches!(r.kind.as_str(), "postgres" | "mysql") && r.database.is_none()
                    });
                if databases.is_empty() && !accounts.is_empty() {
                    bail!(
                        "--verify compares databases, not a server's accounts; name a database \
                         (`{}/<database>`)",
                        accounts[0].1.name
                    );
                }
                for (_, a) in &accounts {
                    if !ctx.global.json {
                        eprintln!("note: `{}`: a server's accounts are not compared", a.name);
                    }
                }
                databases
            } else {
                chosen
            };
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

/// What a mirror restore of `r` may remove: the scope its capture recorded, and only for a
/// complete capture. A capture that skipped entries lacks them, and an older point does not
/// say what it left out: removing what they lack could delete data no point holds, so those
/// are restored as an overlay (removing nothing), with a note.
pub(crate) fn mirror_scope(r: &ResourcePoint) -> Option<lifeboat_files::BackupOptions> {
    let scope = r.scope.as_ref()?;
    if r.status != lifeboat_format::manifest::ResourceStatus::Complete {
        return None;
    }
    Some(lifeboat_files::BackupOptions {
        include: scope.include.clone(),
        exclude: scope.exclude.clone(),
    })
}

/// Why `r` is restored without removing anything, when it is.
fn overlay_note(r: &ResourcePoint) -> Option<&'static str> {
    if mirror_scope(r).is_some() {
        None
    } else if r.status != lifeboat_format::manifest::ResourceStatus::Complete {
        Some("its capture skipped entries, so nothing at the target was removed (an overlay)")
    } else {
        Some(
            "its restore point predates recorded capture scopes, so nothing at the target was removed (an overlay)",
        )
    }
}

/// The include/exclude a plan's file tree resource captures with, relative to its root:
/// what a mirror restore may remove and a comparison counts. Everything for any other.
pub(crate) fn scope_of(plan: Option<&Plan>, resource: &str) -> lifeboat_files::BackupOptions {
    let base = resource.split_once('/').map_or(resource, |(b, _)| b);
    match plan.and_then(|p| p.resource(base)).map(|r| &r.kind) {
        Some(ResourceKind::Files(files)) => lifeboat_files::BackupOptions {
            include: files.include.clone(),
            exclude: files.exclude.clone(),
        },
        _ => lifeboat_files::BackupOptions::default(),
    }
}

/// At most this many conflicting paths are named when a non-empty target is refused.
const NAMED_CONFLICTS: usize = 5;

/// Why restoring into `target` without `--replace` or `--merge` is refused, when it is not
/// empty: the first paths there that the restore would overwrite or that the point lacks.
fn refusal(
    repo: &Repository,
    root: Id,
    subpath: Option<&Path>,
    target: &Path,
) -> Result<Option<String>> {
    let mut entries = match std::fs::read_dir(target) {
        Ok(d) => d.filter_map(|e| e.ok()).map(|e| e.file_name()).peekable(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} is not a folder", lifeboat_files::display_path(target))
        }
        Err(e) => bail!("cannot read {}: {e}", lifeboat_files::display_path(target)),
    };
    if entries.peek().is_none() {
        return Ok(None);
    }
    let mut first: Vec<String> = entries
        .map(|n| lifeboat_files::display_path(Path::new(&n)))
        .collect();
    first.sort();
    // What is there and differs comes first: what the restore would overwrite or leave.
    let mut conflicts: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for d in lifeboat_files::verify(repo, root, subpath, target)? {
        // One per path (its first problem), and only what is there.
        if std::fs::symlink_metadata(target.join(&d.path)).is_ok() && seen.insert(d.path.clone()) {
            conflicts.push(format!("{} ({})", d.path, d.problem));
        }
    }
    if conflicts.is_empty() {
        conflicts = first;
    }
    let more = conflicts.len().saturating_sub(NAMED_CONFLICTS);
    conflicts.truncate(NAMED_CONFLICTS);
    Ok(Some(format!(
        "{} is not empty: {}{}; restore with --replace to make it equal to the restore point \
         (removing what the point lacks), or --merge to write over it and remove nothing",
        lifeboat_files::display_path(target),
        conflicts.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )))
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
    let mut jobs = Vec::new();
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
        jobs.push((id, r, root, target));
    }
    // Every target is checked before anything is written: a refusal changes nothing.
    if !args.verify && !args.replace && !args.merge {
        for (_, _, root, target) in &jobs {
            if let Some(why) = refusal(repo, *root, args.path.as_deref(), target)? {
                bail!(why);
            }
        }
    }
    let mut report = Vec::new();
    let mut differences = 0usize;
    for (id, r, root, target) in jobs {
        let scope = scope_of(ctx.plan(), &r.name);
        if args.verify {
            let diffs =
                lifeboat_files::verify_within(repo, root, args.path.as_deref(), &target, &scope)?;
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
                // --merge overlays; otherwise the target becomes the point (it was empty,
                // or --replace said so) within the scope it was captured in.
                mirror: if args.merge { None } else { mirror_scope(r) },
            };
            if !args.merge
                && let Some(note) = overlay_note(r)
            {
                eprintln!("note: `{}`: {note}", r.name);
            }
            let started = std::time::Instant::now();
            let stats = lifeboat_files::restore(repo, root, &target, &options, Some(&progress))?;
            drop(bar);
            if !ctx.global.json {
                println!(
                    "{}: restored {} files, {} dirs, {} to {} in {}{}",
                    r.name,
                    stats.files,
                    stats.dirs,
                    output::bytes(stats.bytes),
                    lifeboat_files::display_path(&target),
                    output::millis(started.elapsed().as_millis() as u64),
                    removed_text(&stats.removed)
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

/// "; 2 removed: a, b" after a restore's line, or nothing when nothing was removed.
pub(crate) fn removed_text(removed: &lifeboat_files::Removed) -> String {
    if removed.count == 0 {
        String::new()
    } else {
        format!("; {} (not in the restore point)", removed.summary())
    }
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
    ctx.require_site(site)?;
    let mut report = Vec::new();
    let mut failed = 0;
    let mut differences = 0usize;
    let how = |progress: Option<Arc<Progress>>| AtSite {
        replace: args.replace,
        force: args.force,
        rename: &args.rename,
        jobs: args.jobs,
        staging: None,
        mark: None,
        progress,
    };
    if !args.verify {
        // Every database is checked before anything is applied: a refused restore changes
        // nothing, not even a server's accounts.
        let refused: Vec<String> = chosen
            .iter()
            .filter_map(|(_, r)| {
                refused_at_site(plan, site, r, &how(None)).map(|why| format!("{}: {why}", r.name))
            })
            .collect();
        if !refused.is_empty() {
            bail!("nothing was restored: {}", refused.join("; "));
        }
    }
    // The resources in order, a database server's items together (accounts, databases,
    // grants: see `restore_server_at_site`).
    let mut jobs: Vec<Vec<usize>> = Vec::new();
    for (i, (_, r)) in chosen.iter().enumerate() {
        match server_base(plan, r).filter(|_| !args.verify) {
            Some(base) => {
                let together = jobs
                    .iter_mut()
                    .find(|job| server_base(plan, chosen[job[0]].1) == Some(base));
                match together {
                    Some(job) => job.push(i),
                    None => jobs.push(vec![i]),
                }
            }
            None => jobs.push(vec![i]),
        }
    }
    for job in jobs {
        let started = std::time::Instant::now();
        // Each resource's summary, and for JSON its differences, what its mirror removed, or
        // its warnings.
        let outcomes: Vec<Result<(String, serde_json::Value, Vec<String>)>> = if args.verify {
            let r = chosen[job[0]].1;
            vec![
                verify_at_site(repo, plan, site, r, &args.rename).map(|diffs| {
                    differences += diffs.len();
                    let what = if diffs.is_empty() {
                        "matches".to_string()
                    } else {
                        format!("{} difference(s): {}", diffs.len(), diffs.join("; "))
                    };
                    (
                        what,
                        serde_json::json!({ "differences": diffs }),
                        Vec::new(),
                    )
                }),
            ]
        } else {
            let done = if server_base(plan, chosen[job[0]].1).is_some() {
                let items: Vec<&ResourcePoint> = job.iter().map(|&i| chosen[i].1).collect();
                let mut bars = Vec::new();
                let mut progress = |r: &ResourcePoint| {
                    let progress = Arc::new(Progress::default());
                    // One bar at a time: the previous load is over when the next starts.
                    bars.clear();
                    bars.push(Bar::start(&ctx.global, &r.name, progress.clone()));
                    Some(progress)
                };
                let all = how(None);
                let done =
                    restore_server_at_site(repo, plan, site, &items, &|_| &all, &mut progress);
                drop(bars);
                done
            } else {
                let r = chosen[job[0]].1;
                let progress = Arc::new(Progress::default());
                let bar = Bar::start(&ctx.global, &r.name, progress.clone());
                let done = restore_at_site_done(repo, plan, site, r, &how(Some(progress)));
                drop(bar);
                vec![done]
            };
            done.into_iter()
                .map(|done| {
                    done.map(|done| {
                        let mut extra = match &done.removed {
                            Some(removed) => serde_json::json!({ "removed": removed }),
                            None => serde_json::json!({}),
                        };
                        if !done.warnings.is_empty() {
                            extra["warnings"] = serde_json::json!(done.warnings);
                        }
                        if let Some(sqlite) = &done.sqlite {
                            extra["held_open"] = serde_json::json!(sqlite.held);
                            extra["stale_staging_removed"] = serde_json::json!(
                                sqlite
                                    .stale
                                    .iter()
                                    .map(|p| p.display().to_string())
                                    .collect::<Vec<_>>()
                            );
                        }
                        (done.text, extra, done.warnings)
                    })
                })
                .collect()
        };
        let ms = started.elapsed().as_millis() as u64;
        for (&i, outcome) in job.iter().zip(outcomes) {
            let (id, r) = chosen[i];
            match &outcome {
                Ok((what, _, warnings)) if !ctx.global.json => {
                    for warning in warnings {
                        eprintln!("warning: {}: {warning}", r.name);
                    }
                    println!("{}: {what} in {}", r.name, output::millis(ms))
                }
                Err(e) if !ctx.global.json => println!("{}: FAILED: {e:#}", r.name),
                _ => {}
            }
            if outcome.is_err() {
                failed += 1;
            }
            report.push(match outcome {
                Ok((what, mut extra, _)) => {
                    extra["resource"] = serde_json::json!(r.name);
                    extra["point"] = serde_json::json!(id);
                    extra["ok"] = serde_json::json!(true);
                    extra["done"] = serde_json::json!(what);
                    extra["duration_ms"] = serde_json::json!(ms);
                    extra
                }
                Err(e) => serde_json::json!({ "resource": r.name, "point": id, "ok": false, "error": format!("{e:#}"), "duration_ms": ms }),
            });
        }
    }
    if ctx.global.json {
        output::json(
            &serde_json::json!({ "point": single(chosen), "site": site, "verify": args.verify, "resources": report }),
        );
    } else if args.verify {
        let which = match single(chosen) {
            Some(id) => format!("restore point {}", id.short()),
            None => "each resource's restore point".to_string(),
        };
        println!(
            "{}",
            match (differences, failed) {
                (0, 0) => format!("`{site}` matches {which}"),
                (0, _) => format!("{failed} resource(s) could not be compared"),
                _ => format!("{differences} differences from {which}"),
            }
        );
    }
    Ok(if failed > 0 {
        Exit::Failure
    } else if differences > 0 {
        Exit::Problems
    } else {
        Exit::Success
    })
}

/// How `restore_at_site` treats what is already there.
pub(crate) struct AtSite<'a> {
    pub replace: bool,
    /// Replace a SQLite file even while processes hold it open (`restore --force`).
    pub force: bool,
    pub rename: &'a [(String, String)],
    pub jobs: u32,
    /// The PostgreSQL staging database's name (a drill's, so its clean-up can find it).
    pub staging: Option<&'a str>,
    /// A comment set on each database restored (a drill's mark: it drops only those).
    pub mark: Option<&'a str>,
    /// Where a database restore counts what it loads (`restore --site` draws it as a bar).
    pub progress: Option<Arc<Progress>>,
}

/// What a restore into a site's binding did: its summary, and what a file tree's mirror
/// removed.
pub(crate) struct AtSiteDone {
    pub text: String,
    pub removed: Option<lifeboat_files::Removed>,
    /// What was applied only in part: account statements skipped or refused, one each.
    pub warnings: Vec<String>,
    /// A SQLite restore's details: who still holds the old file (forced), stale staging
    /// files removed.
    pub sqlite: Option<lifeboat_services::SqliteRestored>,
}

/// What applying a server's accounts did, as a restore's line and its warnings.
fn accounts_done(accounts: &lifeboat_services::Accounts, server: &str) -> AtSiteDone {
    AtSiteDone {
        text: format!(
            "applied accounts ({}) to {server}: {}",
            output::bytes(accounts.bytes),
            accounts.summary()
        ),
        removed: None,
        warnings: accounts.warnings.clone(),
        sqlite: None,
    }
}

/// The server-wide item (accounts) of a database resource, or one of its databases: the
/// resource's name when so.
fn server_base<'a>(plan: &Plan, r: &'a ResourcePoint) -> Option<&'a str> {
    let base = r.name.split_once('/').map_or(r.name.as_str(), |(b, _)| b);
    match plan.resource(base).map(|p| &p.kind) {
        Some(ResourceKind::Postgres(_) | ResourceKind::Mysql(_)) => Some(base),
        _ => None,
    }
}

/// Whether `resource` is a database server (its items restore together, in dependency
/// order: [`restore_server_at_site`]).
pub(crate) fn is_server(plan: &Plan, resource: &str) -> bool {
    matches!(
        plan.resource(resource).map(|p| &p.kind),
        Some(ResourceKind::Postgres(_) | ResourceKind::Mysql(_))
    )
}

/// Why restoring database item `r` at `site` will be refused (it exists and `--replace` was
/// not given), when it will: asked of every database before anything is applied. Other
/// problems (no binding, a server that does not answer) are left to the restore itself,
/// which fails only that resource.
fn refused_at_site(
    plan: &Plan,
    site: &str,
    r: &ResourcePoint,
    args: &AtSite<'_>,
) -> Option<String> {
    let (base, database) = (server_base(plan, r)?, database_of(r)?);
    let resource = plan.resource(base)?;
    let (ResourceKind::Postgres(db) | ResourceKind::Mysql(db)) = &resource.kind else {
        return None;
    };
    let target = renamed(args.rename, database);
    let checked = match Server::of(&resource.kind, db.at.get(site)?).ok()? {
        Server::Postgres(s) => s.check_restore(target, args.replace, args.mark),
        Server::Mysql(s) => s.check_restore(target, args.replace),
    };
    match checked {
        Err(e @ lifeboat_services::ServiceError::Exists { .. }) => Some(e.to_string()),
        _ => None,
    }
}

/// Restores a database server's items at `site` in dependency order: its accounts and roles,
/// then its databases (MariaDB: every database's tables, then their triggers, routines and
/// views, so a view may read another database), then grants, memberships and default roles,
/// which refer to the databases' objects. `items` are the server-wide item (first, when
/// restored) and databases of one resource, each restored as `how(index)` says; the outcome
/// of each, in the same order. A database that fails does not stop the others; the grants
/// still follow.
pub(crate) fn restore_server_at_site<'a>(
    repo: &Repository,
    plan: &Plan,
    site: &str,
    items: &[&ResourcePoint],
    how: &dyn Fn(usize) -> &'a AtSite<'a>,
    progress: &mut dyn FnMut(&ResourcePoint) -> Option<Arc<Progress>>,
) -> Vec<Result<AtSiteDone>> {
    let mut outcomes: Vec<Option<Result<AtSiteDone>>> = items.iter().map(|_| None).collect();
    let server = items
        .first()
        .ok_or_else(|| anyhow!("nothing to restore"))
        .and_then(|first| {
            let base = server_base(plan, first)
                .ok_or_else(|| anyhow!("`{}` is not a database server's", first.name))?;
            let resource = plan
                .resource(base)
                .ok_or_else(|| anyhow!("the plan has no resource `{base}` (any more)"))?;
            let (ResourceKind::Postgres(db) | ResourceKind::Mysql(db)) = &resource.kind else {
                bail!("`{base}` is not a database server");
            };
            let binding = db
                .at
                .get(site)
                .ok_or_else(|| anyhow!("the resource has no binding at site `{site}`"))?;
            Server::of(&resource.kind, binding)
        });
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            let message = format!("{e:#}");
            return items.iter().map(|_| Err(anyhow!("{message}"))).collect();
        }
    };
    // Accounts and roles first: a database's owner and its definers must exist.
    let mut accounts = Vec::new();
    for (i, r) in items.iter().enumerate() {
        if r.database.is_some() {
            continue;
        }
        let Some(root) = r.root else {
            outcomes[i] = Some(Err(anyhow!(
                "not captured in this restore point: {}",
                failure(r)
            )));
            continue;
        };
        let applied = match &server {
            Server::Postgres(s) => s.restore_accounts(repo, &root),
            Server::Mysql(s) => s.restore_accounts(repo, &root),
        };
        match applied {
            Ok(a) => accounts.push((i, a)),
            Err(e) => outcomes[i] = Some(Err(e.into())),
        }
    }
    // The databases: PostgreSQL's each complete (none reads another); MariaDB's tables
    // first, their definitions once all are loaded.
    let mut loads: Vec<(usize, lifeboat_services::MyLoad)> = Vec::new();
    for (i, r) in items.iter().enumerate() {
        let Some(database) = database_of(r) else {
            continue;
        };
        let Some(root) = r.root else {
            outcomes[i] = Some(Err(anyhow!(
                "not captured in this restore point: {}",
                failure(r)
            )));
            continue;
        };
        let args = how(i);
        let target = renamed(args.rename, database);
        let facts = r.database.as_ref();
        let bar = progress(r);
        match &server {
            Server::Postgres(s) => {
                let how = lifeboat_services::PgRestore {
                    target,
                    replace: args.replace,
                    jobs: args.jobs,
                    staging: args.staging,
                    mark: args.mark,
                };
                let s = match bar {
                    Some(p) => s.clone().with_progress(p),
                    None => s.clone(),
                };
                outcomes[i] = Some(
                    s.restore_database(repo, &root, facts, &how)
                        .map(|n| database_done(target, n, server.describe()))
                        .map_err(Into::into),
                );
            }
            Server::Mysql(s) => {
                let s = match bar {
                    Some(p) => s.clone().with_progress(p),
                    None => s.clone(),
                };
                match s.load_database(repo, &root, facts, target, args.replace, args.mark) {
                    Ok(load) => loads.push((i, load)),
                    Err(e) => outcomes[i] = Some(Err(e.into())),
                }
            }
        }
    }
    if let Server::Mysql(s) = &server
        && !loads.is_empty()
    {
        let (indexes, loads): (Vec<usize>, Vec<_>) = loads.into_iter().unzip();
        for (i, (target, done)) in indexes.into_iter().zip(s.finish_databases(loads)) {
            outcomes[i] = Some(
                done.map(|n| database_done(&target, n, server.describe()))
                    .map_err(Into::into),
            );
        }
    }
    // Then what refers to the databases' objects.
    for (i, mut a) in accounts {
        let granted = match &server {
            Server::Postgres(s) => s.restore_grants(&mut a),
            Server::Mysql(s) => {
                s.restore_grants(&mut a);
                Ok(())
            }
        };
        outcomes[i] = Some(match granted {
            Ok(()) => Ok(accounts_done(&a, server.describe())),
            Err(e) => Err(e.into()),
        });
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(anyhow!("not restored"))))
        .collect()
}

fn database_done(target: &str, bytes: u64, server: &str) -> AtSiteDone {
    AtSiteDone {
        text: format!(
            "restored database `{target}` ({}) on {server}",
            output::bytes(bytes)
        ),
        removed: None,
        warnings: Vec::new(),
        sqlite: None,
    }
}

/// Restores one captured resource into its binding at `site`; its summary.
pub(crate) fn restore_at_site(
    repo: &Repository,
    plan: &Plan,
    site: &str,
    r: &ResourcePoint,
    args: &AtSite<'_>,
) -> Result<String> {
    restore_at_site_done(repo, plan, site, r, args).map(|done| {
        for warning in &done.warnings {
            tracing::warn!("{}: {warning}", r.name);
        }
        done.text
    })
}

/// The same, with what a file tree's mirror removed. A file tree becomes equal to the point
/// within the resource's include/exclude.
pub(crate) fn restore_at_site_done(
    repo: &Repository,
    plan: &Plan,
    site: &str,
    r: &ResourcePoint,
    args: &AtSite<'_>,
) -> Result<AtSiteDone> {
    let text = |text: String| AtSiteDone {
        text,
        removed: None,
        warnings: Vec::new(),
        sqlite: None,
    };
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
            // The binding becomes the point within the scope it was captured in: what the
            // point lacks there goes, once everything else is restored.
            let options = RestoreOptions {
                mirror: mirror_scope(r),
                ..RestoreOptions::default()
            };
            let stats =
                lifeboat_files::restore(repo, root, path, &options, args.progress.as_deref())?;
            Ok(AtSiteDone {
                text: format!(
                    "restored {} files ({}) to {}{}{}",
                    stats.files,
                    output::bytes(stats.bytes),
                    path.display(),
                    removed_text(&stats.removed),
                    overlay_note(r).map_or(String::new(), |n| format!("; {n}"))
                ),
                removed: Some(stats.removed),
                warnings: Vec::new(),
                sqlite: None,
            })
        }
        ResourceKind::Sqlite(sqlite) => {
            let path = &sqlite.at.get(site).ok_or_else(unbound)?.path;
            let how = lifeboat_services::SqliteRestore {
                replace,
                force: args.force,
            };
            let done = lifeboat_services::restore_sqlite(repo, &root, path, how)?;
            let mut said = format!(
                "restored {} to {}",
                output::bytes(done.bytes),
                path.display()
            );
            if !done.stale.is_empty() {
                said.push_str(&format!(
                    "; removed {} staging file(s) an interrupted restore left",
                    done.stale.len()
                ));
            }
            if !done.held.is_empty() {
                let held: Vec<String> = done.held.iter().map(|h| h.to_string()).collect();
                said.push_str(&format!(
                    "; still open in {} (--force): restart them on the new file",
                    held.join(", ")
                ));
            }
            Ok(AtSiteDone {
                sqlite: Some(done),
                ..text(said)
            })
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
            Ok(text(format!(
                "applied {} with `{}`",
                output::bytes(n),
                argv.join(" ")
            )))
        }
        ResourceKind::Http(http) => {
            let binding = http.at.get(site).ok_or_else(unbound)?;
            let req = super::backup::http_request(binding, binding.apply_method())?;
            let n = lifeboat_services::apply_http(repo, &root, &req)?;
            Ok(text(format!(
                "sent {} with {} {}",
                output::bytes(n),
                req.method,
                req.shown_url()
            )))
        }
        ResourceKind::Postgres(db) | ResourceKind::Mysql(db) => {
            let server = Server::of(&resource.kind, db.at.get(site).ok_or_else(unbound)?)?;
            let Some(database) = item else {
                let accounts = match &server {
                    Server::Postgres(s) => s.restore_globals(repo, &root)?,
                    Server::Mysql(s) => s.restore_globals(repo, &root)?,
                };
                return Ok(accounts_done(&accounts, server.describe()));
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
                    let s = match &args.progress {
                        Some(progress) => s.clone().with_progress(progress.clone()),
                        None => s.clone(),
                    };
                    s.restore_database(repo, &root, facts, &how)?
                }
                Server::Mysql(s) => {
                    let s = match &args.progress {
                        Some(progress) => s.clone().with_progress(progress.clone()),
                        None => s.clone(),
                    };
                    s.restore_database(repo, &root, facts, target, replace, args.mark)?
                }
            };
            Ok(text(format!(
                "restored database `{target}` ({}) on {}",
                output::bytes(n),
                server.describe()
            )))
        }
    }
}

/// Compares one captured resource with its binding at `site`, writing nothing there: the
/// differences (none: it matches).
pub(crate) fn verify_at_site(
    repo: &Repository,
    plan: &Plan,
    site: &str,
    r: &ResourcePoint,
    rename: &[(String, String)],
) -> Result<Vec<String>> {
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
    let one = |d: Option<String>| d.into_iter().collect::<Vec<_>>();
    match &resource.kind {
        ResourceKind::Files(files) => {
            let path = &files.at.get(site).ok_or_else(unbound)?.path;
            let scope = scope_of(Some(plan), base);
            Ok(
                lifeboat_files::verify_within(repo, root, None, path, &scope)?
                    .into_iter()
                    .map(|d| format!("{}: {}", d.path, d.problem))
                    .collect(),
            )
        }
        ResourceKind::Sqlite(sqlite) => {
            let path = &sqlite.at.get(site).ok_or_else(unbound)?.path;
            Ok(lifeboat_services::compare_sqlite(repo, &root, path)?)
        }
        ResourceKind::Command(command) => {
            let capture = command
                .at
                .get(site)
                .and_then(|b| b.capture_command())
                .ok_or_else(|| anyhow!("no `capture` command at site `{site}` to compare with"))?;
            let argv = match item {
                Some(item) => capture.with_item(item).argv().to_vec(),
                None => capture.argv().to_vec(),
            };
            let how = lifeboat_services::compare_command(repo, &root, &argv, plan.plan_dir())?;
            Ok(one(how.map(|h| {
                format!("the output of `{}` {h}", argv.join(" "))
            })))
        }
        ResourceKind::Http(http) => {
            let binding = http.at.get(site).ok_or_else(unbound)?;
            let req = super::backup::http_request(binding, binding.capture_method())?;
            let how = lifeboat_services::compare_http(repo, &root, &req)?;
            Ok(one(
                how.map(|h| format!("the answer of {} {h}", req.shown_url()))
            ))
        }
        ResourceKind::Postgres(db) | ResourceKind::Mysql(db) => {
            let server = Server::of(&resource.kind, db.at.get(site).ok_or_else(unbound)?)?;
            let Some(database) = item else {
                bail!(
                    "a server's accounts are not compared; name its databases (`{base}/<database>`)"
                );
            };
            let target = renamed(rename, database);
            match &server {
                Server::Postgres(s) => {
                    let facts = r
                        .database
                        .as_ref()
                        .ok_or_else(|| anyhow!("the restore point has no facts of `{database}`"))?;
                    Ok(s.verify_database(target, facts)?)
                }
                Server::Mysql(s) => Ok(one(s.compare_database(repo, &root, target)?)),
            }
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
    ctx.require_site(&args.site)?;
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
