//! `lifeboat backup`: capture resources into one new restore point.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use lifeboat_files::{BackupOptions, Progress};
use lifeboat_format::manifest::{
    CaptureScope, CaptureStats, ResourcePoint, ResourceStatus, RestorePoint,
};
use lifeboat_format::{FORMAT_VERSION, Id};
use lifeboat_plan::{DatabaseSelection, ResourceKind, Verify};
use lifeboat_services::{MyServer, PgServer};

use crate::cli::BackupArgs;
use crate::context::Context;
use crate::output::{self, Bar, Exit};

/// How one resource is captured.
enum Capture {
    Files(PathBuf, BackupOptions),
    Command(Vec<String>),
    Sqlite(PathBuf),
    Http(lifeboat_services::HttpRequest),
    /// A database server's accounts: roles and tablespaces, users and grants.
    ServerGlobals(Server),
    /// One database of a server, with the plan's checks for it.
    Database(Server, String, Vec<String>),
    /// Cannot be captured; the reason is recorded in the restore point.
    Fails(String),
}

/// Resources whose items were discovered, with every item found (recorded in the point).
type Discovered = std::collections::BTreeMap<String, Vec<String>>;

/// One thing to capture.
struct Target {
    name: String,
    kind: &'static str,
    capture: Capture,
}

/// What to capture, and at which site: `at` when given, else the active site (the primary
/// until a failover changes that).
fn targets(
    ctx: &Context,
    args: &BackupArgs,
    at: Option<&str>,
) -> Result<(Vec<Target>, Option<String>, Discovered)> {
    if let Some(path) = &args.path {
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("cannot back up {}", path.display()))?;
        if !path.is_dir() {
            bail!(
                "cannot back up {}: --path takes a directory",
                path.display()
            );
        }
        let options = BackupOptions {
            include: args.include.clone(),
            exclude: args.exclude.clone(),
        };
        let target = Target {
            name: lifeboat_files::display_path(&path),
            kind: "files",
            capture: Capture::Files(path, options),
        };
        return Ok((vec![target], None, Discovered::new()));
    }
    let plan = ctx.require_plan()?;
    // `name/item` selects one discovered item of resource `name`.
    let base = |name: &str| name.split_once('/').map_or(name, |(b, _)| b).to_string();
    let wanted: Vec<String> = args.resources.iter().map(|n| base(n)).collect();
    for name in &wanted {
        if plan.resource(name).is_none() {
            return Err(output::usage(format!(
                "the plan has no resource `{name}`; it has: {}",
                plan.resources
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let active;
    let site = match at {
        Some(site) => site,
        None => {
            active = crate::sitestate::StateStore::of(plan).load(plan)?.active;
            active.as_str()
        }
    };
    let mut out = Vec::new();
    let mut discovered = Discovered::new();
    for (name, resource) in &plan.resources {
        if !wanted.is_empty() && !wanted.contains(name) {
            continue;
        }
        let kind = resource.kind.name();
        let unbound = || Capture::Fails(format!("the resource has no binding at site `{site}`"));
        let capture = match &resource.kind {
            ResourceKind::Files(files) => files.at.get(site).map_or_else(unbound, |b| {
                Capture::Files(
                    b.path.clone(),
                    BackupOptions {
                        include: files.include.clone(),
                        exclude: files.exclude.clone(),
                    },
                )
            }),
            ResourceKind::Sqlite(sqlite) => sqlite
                .at
                .get(site)
                .map_or_else(unbound, |b| Capture::Sqlite(b.path.clone())),
            ResourceKind::Command(command) => {
                let Some(argv) = command.at.get(site).and_then(|b| b.capture_command()) else {
                    out.push(Target {
                        name: name.clone(),
                        kind,
                        capture: Capture::Fails(format!("no `capture` command at site `{site}`")),
                    });
                    continue;
                };
                match &command.discover {
                    None => Capture::Command(argv.argv().to_vec()),
                    // Every discovered item is its own resource, `name/item`.
                    Some(discover) => {
                        match lifeboat_services::discover(discover.argv(), plan.plan_dir()) {
                            Ok(items) => {
                                discovered.insert(name.clone(), items.clone());
                                for item in items {
                                    out.push(Target {
                                        name: format!("{name}/{item}"),
                                        kind,
                                        capture: Capture::Command(
                                            argv.with_item(&item).argv().to_vec(),
                                        ),
                                    });
                                }
                                continue;
                            }
                            Err(e) => Capture::Fails(format!("discovery failed: {e}")),
                        }
                    }
                }
            }
            ResourceKind::Http(http) => match http.at.get(site) {
                None => unbound(),
                Some(b) => match http_request(b, b.capture_method()) {
                    Ok(req) => Capture::Http(req),
                    Err(e) => Capture::Fails(format!("{e:#}")),
                },
            },
            ResourceKind::Postgres(server) | ResourceKind::Mysql(server) => {
                let Some(binding) = server.at.get(site) else {
                    out.push(Target {
                        name: name.clone(),
                        kind,
                        capture: unbound(),
                    });
                    continue;
                };
                let found = Server::of(&resource.kind, binding)
                    .and_then(|s| database_targets(name, kind, s, server, &resource.verify));
                match found {
                    Ok(found) => {
                        let items = found
                            .iter()
                            .filter_map(|t| t.name.strip_prefix(&format!("{name}/")))
                            .map(str::to_string)
                            .collect();
                        discovered.insert(name.clone(), items);
                        out.extend(found);
                        continue;
                    }
                    Err(e) => Capture::Fails(format!("{e:#}")),
                }
            }
        };
        out.push(Target {
            name: name.clone(),
            kind,
            capture,
        });
    }
    if !args.resources.is_empty() {
        let found: Vec<String> = out.iter().map(|t| t.name.clone()).collect();
        // An item comes with its resource's own part (a server's roles, or why discovery
        // failed).
        out.retain(|t| {
            args.resources
                .iter()
                .any(|n| selects(n, &t.name) || base(n) == t.name)
        });
        for name in &args.resources {
            let failed = out
                .iter()
                .any(|t| t.name == base(name) && matches!(t.capture, Capture::Fails(_)));
            if !failed && !out.iter().any(|t| selects(name, &t.name)) {
                bail!(
                    "`{name}` is not there at site `{site}` now; found: {}",
                    found.join(", ")
                );
            }
        }
    }
    Ok((out, Some(site.to_string()), discovered))
}

/// `name` selects a resource of that name, and the items discovered under it; `name/item`
/// selects that item.
pub(crate) fn selects(name: &str, resource: &str) -> bool {
    lifeboat_format::manifest::selects(name, resource)
}

/// A database server, whatever its kind.
#[derive(Clone, Debug)]
pub(crate) enum Server {
    Postgres(PgServer),
    Mysql(MyServer),
}

impl Server {
    /// The server a postgres or mysql binding names, its password secret resolved.
    pub(crate) fn of(
        kind: &ResourceKind,
        binding: &lifeboat_plan::DatabaseBinding,
    ) -> Result<Self> {
        let password = match &binding.password {
            Some(secret) => Some(secret.resolve().context("resolving the password")?),
            None => None,
        };
        let password = password.as_ref().map(|p| p.expose());
        Ok(match kind {
            ResourceKind::Mysql(_) => Server::Mysql(MyServer::new(&binding.url, password)?),
            _ => Server::Postgres(PgServer::new(&binding.url, password)?),
        })
    }

    pub(crate) fn describe(&self) -> &str {
        match self {
            Server::Postgres(s) => s.describe(),
            Server::Mysql(s) => s.describe(),
        }
    }

    /// Who the server says it is: equal for two bindings that reach one server.
    pub(crate) fn identity(&self) -> Result<String, lifeboat_services::ServiceError> {
        match self {
            Server::Postgres(s) => s.identity(),
            Server::Mysql(s) => s.identity(),
        }
    }

    pub(crate) fn databases(&self) -> Result<Vec<String>, lifeboat_services::ServiceError> {
        match self {
            Server::Postgres(s) => s.databases(),
            Server::Mysql(s) => s.databases(),
        }
    }

    fn default_database(&self) -> &str {
        match self {
            Server::Postgres(s) => s.default_database(),
            Server::Mysql(s) => s.default_database(),
        }
    }
}

/// A database server resource as targets: the server's accounts under the resource's own
/// name, then each protected database as `name/database`. With `databases = "*"` the server
/// is asked which databases exist now, so new ones are protected without editing the plan.
fn database_targets(
    name: &str,
    kind: &'static str,
    server: Server,
    resource: &lifeboat_plan::DatabaseServerResource,
    verify: &[Verify],
) -> Result<Vec<Target>> {
    let databases: Vec<String> = match &resource.databases {
        DatabaseSelection::All => server.databases()?,
        DatabaseSelection::Only(names) => names.clone(),
    };
    let mut targets = vec![Target {
        name: name.to_string(),
        kind,
        capture: Capture::ServerGlobals(server.clone()),
    }];
    for database in databases.into_iter().filter(|d| resource.protects(d)) {
        let checks = verify
            .iter()
            .filter_map(|v| match v {
                Verify::Sql {
                    sql, database: on, ..
                } if on.as_deref().unwrap_or(server.default_database()) == database => {
                    Some(sql.clone())
                }
                _ => None,
            })
            .collect();
        targets.push(Target {
            name: format!("{name}/{database}"),
            kind,
            capture: Capture::Database(server.clone(), database, checks),
        });
    }
    Ok(targets)
}

pub fn run(ctx: &Context, args: BackupArgs) -> Result<Exit> {
    // A signal removes a SQLite capture's temporary copy.
    crate::interrupt::remove_staging_on_signal()?;
    let (targets, site, discovered) = targets(ctx, &args, None)?;
    let (id, point, left) = capture(ctx, targets, site, discovered, args.tag)?;
    report(ctx, id, &point, &left)
}

/// A new restore point of `resources` (all when empty) captured at `site`, for runbooks.
pub(crate) fn capture_at(
    ctx: &Context,
    site: &str,
    resources: &[String],
    tags: Vec<String>,
) -> Result<(Id, RestorePoint)> {
    let args = BackupArgs {
        resources: resources.to_vec(),
        path: None,
        include: vec![],
        exclude: vec![],
        tag: tags.clone(),
    };
    let (targets, site, discovered) = targets(ctx, &args, Some(site))?;
    let (id, point, _left) = capture(ctx, targets, site, discovered, tags)?;
    Ok((id, point))
}

/// Captures every target into one new restore point.
fn capture(
    ctx: &Context,
    targets: Vec<Target>,
    site: Option<String>,
    discovered: Discovered,
    tags: Vec<String>,
) -> Result<(Id, RestorePoint, LeftOut)> {
    let mut repo = ctx.open_repository_for_backup()?;
    let started = jiff::Timestamp::now();
    let earlier = repo.points()?;
    let writer = repo.writer();
    let plan_dir = ctx.plan().map_or_else(
        || std::path::PathBuf::from("."),
        |p| p.plan_dir().to_path_buf(),
    );
    let mut resources = Vec::new();
    let mut skipped_files = Vec::new();
    let mut changed_files = Vec::new();
    for target in targets {
        tracing::info!("capturing {} ({})", target.name, target.kind);
        // The whole capture (snapshot, waits, transfer), not only the part that stores bytes.
        let capture_started = std::time::Instant::now();
        let mut database = None;
        // What a mirror restore of a file tree may remove: the scope it was captured in.
        let scope = match &target.capture {
            Capture::Files(_, options) => Some(CaptureScope {
                include: options.include.clone(),
                exclude: options.exclude.clone(),
            }),
            _ => None,
        };
        // Entries a file-tree capture had to leave out.
        let mut left_out: Vec<String> = Vec::new();
        let (source, outcome, parent): (String, Result<(Id, CaptureStats), String>, Option<Id>) =
            match &target.capture {
                Capture::Files(path, options) => {
                    let source = lifeboat_files::display_path(path);
                    let parent = parent_of(&earlier, &target.name, &source);
                    let progress = Arc::new(Progress::default());
                    let bar = Bar::start(&ctx.global, &target.name, progress.clone());
                    let outcome =
                        lifeboat_files::backup(&writer, path, parent, options, Some(&progress));
                    drop(bar);
                    let outcome = outcome.map(|capture| {
                        left_out = capture.skipped;
                        changed_files.extend(capture.changed);
                        (capture.root, capture.stats)
                    });
                    (source, outcome.map_err(|e| e.to_string()), parent)
                }
                Capture::Command(argv) => {
                    let outcome = lifeboat_services::capture_command(&writer, argv, &plan_dir)
                        .map(|d| (d.root, d.stats));
                    (argv.join(" "), outcome.map_err(|e| e.to_string()), None)
                }
                Capture::Sqlite(path) => {
                    let outcome =
                        lifeboat_services::capture_sqlite(&writer, path).map(|d| (d.root, d.stats));
                    (
                        path.display().to_string(),
                        outcome.map_err(|e| e.to_string()),
                        None,
                    )
                }
                Capture::Http(req) => {
                    let outcome =
                        lifeboat_services::capture_http(&writer, req).map(|d| (d.root, d.stats));
                    (req.shown_url(), outcome.map_err(|e| e.to_string()), None)
                }
                Capture::ServerGlobals(server) => {
                    let outcome = match server {
                        Server::Postgres(s) => s.capture_globals(&writer),
                        Server::Mysql(s) => s.capture_globals(&writer),
                    };
                    (
                        server.describe().to_string(),
                        outcome
                            .map(|d| (d.root, d.stats))
                            .map_err(|e| e.to_string()),
                        None,
                    )
                }
                Capture::Database(server, name, checks) => {
                    let progress = Arc::new(Progress::default());
                    let bar = Bar::start(&ctx.global, &target.name, progress.clone());
                    let outcome = match server {
                        Server::Postgres(s) => {
                            s.capture_database(&writer, name, checks, Some(&progress))
                        }
                        Server::Mysql(s) => s.capture_database(&writer, name, Some(&progress)),
                    };
                    drop(bar);
                    let outcome = outcome.map(|(d, facts)| {
                        database = Some(facts);
                        (d.root, d.stats)
                    });
                    (
                        format!("{}/{name}", server.describe()),
                        outcome.map_err(|e| e.to_string()),
                        None,
                    )
                }
                Capture::Fails(reason) => (String::new(), Err(reason.clone()), None),
            };
        let (status, root, stats) = match outcome {
            Ok((root, mut stats)) => {
                stats.duration_ms = capture_started.elapsed().as_millis() as u64;
                tracing::info!(
                    "captured {}: {} bytes, {} new chunks, {} bytes stored in {} ms",
                    target.name,
                    stats.bytes,
                    stats.chunks_new,
                    stats.bytes_stored,
                    stats.duration_ms
                );
                let status = if left_out.is_empty() {
                    ResourceStatus::Complete
                } else {
                    skipped_files.extend(left_out.iter().cloned());
                    ResourceStatus::partial(left_out)
                };
                (status, Some(root), stats)
            }
            Err(error) => {
                tracing::debug!("{}: capture failed: {error}", target.name);
                (
                    ResourceStatus::Failed { error },
                    None,
                    CaptureStats {
                        duration_ms: capture_started.elapsed().as_millis() as u64,
                        ..CaptureStats::default()
                    },
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
            database,
            scope,
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
        tags,
        resources,
        discovered,
    };
    let id = repo.save_point(&point)?;
    // Only now may a prune delete what this backup deduplicated against.
    if let Err(e) = repo.end_backup() {
        tracing::warn!(
            "could not remove this backup's marker (a prune removes it after {} h): {e}",
            lifeboat_repository::running::HONOURED_FOR.as_secs() / 3600
        );
    }
    Ok((
        id,
        point,
        LeftOut {
            skipped: skipped_files,
            changed: changed_files,
        },
    ))
}

/// Files a capture left out, and files it took while they changed.
struct LeftOut {
    skipped: Vec<String>,
    changed: Vec<String>,
}

fn report(ctx: &Context, id: Id, point: &RestorePoint, left: &LeftOut) -> Result<Exit> {
    let skipped_files = &left.skipped;
    let files_skipped: u64 = point.resources.iter().map(|r| r.stats.files_skipped).sum();
    let files_changed: u64 = point.resources.iter().map(|r| r.stats.files_changed).sum();
    let exit = if point.is_complete() {
        Exit::Success
    } else {
        Exit::Incomplete
    };
    if ctx.global.json {
        output::json(&serde_json::json!({
            "id": id,
            "complete": point.is_complete(),
            "point": point,
            "skipped": skipped_files,
            "changed": left.changed,
            "files_skipped": files_skipped,
            "files_changed": files_changed,
        }));
        return Ok(exit);
    }
    for r in &point.resources {
        let s = &r.stats;
        match &r.status {
            ResourceStatus::Complete if r.kind == "files" => println!(
                "  {}: {} files, {} ({} files read, {} new, {} stored) in {}",
                r.name,
                s.files,
                output::bytes(s.bytes),
                s.files_read,
                output::bytes(s.bytes_new),
                output::bytes(s.bytes_stored),
                output::millis(s.duration_ms)
            ),
            ResourceStatus::Complete => println!(
                "  {}: {} ({} new, {} stored) in {}",
                r.name,
                output::bytes(s.bytes),
                output::bytes(s.bytes_new),
                output::bytes(s.bytes_stored),
                output::millis(s.duration_ms)
            ),
            ResourceStatus::Partial { .. } => println!(
                "  {}: INCOMPLETE: {} files captured, {} skipped ({}) in {}",
                r.name,
                s.files,
                s.files_skipped,
                output::bytes(s.bytes),
                output::millis(s.duration_ms)
            ),
            ResourceStatus::Failed { error } => println!("  {}: FAILED: {error}", r.name),
        }
    }
    for s in skipped_files {
        eprintln!("warning: skipped {s}");
    }
    for c in &left.changed {
        eprintln!("warning: {c} changed while it was read; captured as it was");
    }
    let mut counts = Vec::new();
    if files_skipped > 0 {
        counts.push(format!("{files_skipped} files skipped"));
    }
    if files_changed > 0 {
        counts.push(format!("{files_changed} files changed while read"));
    }
    let counts = if counts.is_empty() {
        String::new()
    } else {
        format!("; {}", counts.join(", "))
    };
    println!(
        "restore point {id} saved{}{counts}",
        if point.is_complete() {
            ""
        } else {
            " (incomplete)"
        }
    );
    Ok(exit)
}

/// An HTTP binding as a request, its header values (secrets among them) resolved.
pub(crate) fn http_request(
    binding: &lifeboat_plan::HttpBinding,
    method: lifeboat_plan::HttpMethod,
) -> Result<lifeboat_services::HttpRequest> {
    let mut headers = Vec::new();
    for (name, value) in &binding.headers {
        let value = value
            .resolve()
            .with_context(|| format!("resolving header `{name}`"))?;
        headers.push((name.clone(), value.expose().to_string()));
    }
    Ok(lifeboat_services::HttpRequest {
        url: binding.url.clone(),
        method: method.as_str().to_string(),
        headers,
    })
}

/// The newest complete capture of the same resource from the same place.
fn parent_of(points: &[(Id, RestorePoint)], name: &str, source: &str) -> Option<Id> {
    points.iter().rev().find_map(|(_, p)| {
        p.resources
            .iter()
            .find(|r| {
                // A partial capture's files are as good as a complete one's; what it skipped
                // is simply read next time.
                r.name == name
                    && r.source == source
                    && !matches!(r.status, ResourceStatus::Failed { .. })
            })
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
