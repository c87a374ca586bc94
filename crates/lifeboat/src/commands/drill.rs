//! `lifeboat drill`: restore a restore point into an isolated sandbox, verify what came back,
//! measure the achieved RTO and RPO, and always tear down what was created; `--cleanup`
//! finishes the teardown of a drill that was killed, `--history` lists past drills.
//!
//! The drill site is the plan's site with `role = "drill"` (`--site`, else the first one); a
//! resource it does not bind, or every resource when there is none, goes into a sandbox the
//! drill derives: file trees and SQLite files into folders of the sandbox, each database
//! server's databases into a temporary server of the same engine, configuration documents
//! kept as files (there is no system to apply them to). Nothing is ever written to the
//! primary or a standby site: the live site is only read, to count what changed after the
//! restore point.
//!
//! What the drill creates is written down in `drills/<id>/drill.json` *before* it is created,
//! so the teardown (after the last step, after a failed step, on SIGINT/SIGTERM/SIGHUP, or by
//! `--cleanup` after a kill) finds all of it. Step order, record and verdict are
//! `lifeboat-drill`'s; this module performs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use anyhow::{Context as _, Result, anyhow, bail};
use lifeboat_drill::record::{Created, DrillRecord, Engine, Phase};
use lifeboat_drill::report::{self, Changes, DrillReport, Measured, ResourceOutcome, TrendPoint};
use lifeboat_drill::steps::{DrillInput, DrillStep, blocked, plan_drill};
use lifeboat_format::manifest::{ResourcePoint, RestorePoint};
use lifeboat_plan::{DatabaseBinding, PathBinding, Plan, ResourceKind, Role, Secret};
use lifeboat_repository::Repository;
use lifeboat_runbook::journal::{Event, Record};
use lifeboat_runbook::order;
use lifeboat_services::checks::run_check;
use lifeboat_services::{TempEngine, TempServer};

use super::backup::{Server, selects};
use super::restore::{AtSite, restore_at_site, with_globals};
use super::runbook::{
    at_variable, check_spec, choose_point, command_env, deliver, run_commands, verify_entries,
};
use crate::cli::DrillArgs;
use crate::context::Context;
use crate::output::{self, Exit};
use crate::sitestate::StateStore;

/// The derived sandbox's site name, unless the plan already uses it.
const DERIVED_SITE: &str = "drill";

/// Where a drilled resource is restored.
#[derive(Debug, Clone)]
enum Placement {
    /// Into its binding at the declared drill site.
    Declared,
    /// A folder of the sandbox (a file tree).
    Folder(PathBuf),
    /// A file of the sandbox (SQLite).
    File(PathBuf),
    /// A temporary server of the sandbox.
    Server,
    /// A folder of the sandbox holding the documents as files: a command or HTTP document
    /// has nowhere to be applied outside a declared drill site.
    Documents(PathBuf),
}

impl Placement {
    fn describe(&self, sandbox_plan: &Plan, site: &str, resource: &str) -> String {
        match self {
            Placement::Folder(p) | Placement::File(p) | Placement::Documents(p) => {
                p.display().to_string()
            }
            Placement::Server | Placement::Declared => sandbox_plan
                .resource(resource)
                .and_then(|r| r.binding(site))
                .map(super::runbook::binding_text)
                .unwrap_or_default(),
        }
    }
}

/// What the drill and its signal handler share.
struct Shared {
    plan: Plan,
    record: Mutex<DrillRecord>,
    /// Temporary servers this process started (so it can reap them).
    servers: Mutex<Vec<TempServer>>,
    outcomes: Mutex<BTreeMap<String, ResourceOutcome>>,
    /// Held by whoever tears down.
    teardown: Mutex<()>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn drill(ctx: &Context, args: DrillArgs) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    let store = StateStore::of(plan);
    if args.history {
        return history(ctx, plan, &store);
    }
    let _lock = store.lock_drills()?;
    if args.cleanup {
        return cleanup(ctx, plan, &store);
    }
    let (site, declared) = drill_site(plan, args.site.as_deref())?;
    finish_interrupted(ctx, plan, &store, declared.then_some(site.as_str()))?;
    let waves = drill_waves(plan, &args.only)?;
    if declared {
        check_isolated(plan, &site, waves.iter().flatten())?;
    }
    let (point_id, point) = choose_point(ctx, args.point.as_deref(), &waves)?;
    let live_site = store.load(plan)?.active;
    let started = jiff::Timestamp::now();
    let id = format!("{}-drill", started.strftime("%Y%m%dT%H%M%S%.3fZ"));
    let base = match &args.sandbox {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    let sandbox = base.join(format!(
        "lifeboat-drill-{}",
        started.strftime("%Y%m%dT%H%M%S%.3f")
    ));
    let drill_site = plan.site(&site);
    let steps = plan_drill(&DrillInput {
        site: site.clone(),
        live_site: live_site.clone(),
        waves: waves.clone(),
        start: drill_site.is_some_and(|s| !s.start.is_empty()),
        checks: drill_site.is_some_and(|s| !s.checks.is_empty()),
        changes: !args.skip_changes,
    });
    let record = DrillRecord {
        id: id.clone(),
        site: site.clone(),
        declared_site: declared,
        live_site,
        point: point_id.to_string(),
        point_time: point.time,
        only: args.only.clone(),
        waves,
        steps,
        sandbox,
        started,
        created: Vec::new(),
        torn_down: Vec::new(),
        phase: Phase::Running,
    };
    save_record(&store, &record)?;
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        record: Mutex::new(record),
        servers: Mutex::new(Vec::new()),
        outcomes: Mutex::new(BTreeMap::new()),
        teardown: Mutex::new(()),
    });
    let signals = on_signal(shared.clone(), ctx.global.json)?;
    let drill = Drill {
        ctx,
        plan,
        store: &store,
        shared: shared.clone(),
        repo: OnceLock::new(),
        point,
        site,
        declared,
        sandbox_plan: OnceLock::new(),
        placements: OnceLock::new(),
        env: OnceLock::new(),
    };
    if !ctx.global.json {
        println!(
            "drill {id}: restore point {} (taken {}) into {} `{}`",
            point_id.short(),
            report::time_text(drill.point.time),
            if declared {
                "drill site"
            } else {
                "a sandbox derived from the plan, site"
            },
            drill.site
        );
    }
    drill.execute(args.keep);
    signals.close();
    let _teardown = locked(&shared.teardown);
    let record = locked(&shared.record).clone();
    let left = if args.keep {
        Vec::new()
    } else {
        record_left_behind(&record)
    };
    let report = write_report(plan, &store, &record, &outcomes_of(&shared), left, false)?;
    if let Some(path) = &args.html {
        std::fs::write(path, store.read_drill_file(&record.id, "report.html")?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print_report(ctx, &store, &report, args.keep.then_some(&record));
    if !report.passed && !args.keep {
        alert(plan, &report);
    }
    Ok(verdict(&report))
}

/// The drill site: `--site` (it must have `role = "drill"`), else the plan's first drill site,
/// else the derived sandbox. Says whether it is declared.
fn drill_site(plan: &Plan, requested: Option<&str>) -> Result<(String, bool)> {
    if let Some(name) = requested {
        return match plan.site(name) {
            Some(site) if site.role == Role::Drill => Ok((name.to_string(), true)),
            Some(site) => bail!(
                "site `{name}` has role \"{}\": a drill restores only into a site with role \
                 \"drill\", or into a sandbox it derives itself (leave out --site)",
                site.role.as_str()
            ),
            None => bail!(
                "the plan has no site `{name}`; it has: {}",
                plan.sites.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
    }
    if let Some((name, _)) = plan.sites_with_role(Role::Drill).next() {
        return Ok((name.to_string(), true));
    }
    let name = if plan.site(DERIVED_SITE).is_some() {
        "drill-sandbox"
    } else {
        DERIVED_SITE
    };
    Ok((name.to_string(), false))
}

/// Every resource (or `--only` with what it depends on), in `depends_on` waves.
fn drill_waves(plan: &Plan, only: &[String]) -> Result<Vec<Vec<String>>> {
    let all: Vec<(String, Vec<String>)> = plan
        .resources
        .iter()
        .map(|(name, r)| (name.clone(), r.depends_on.clone()))
        .collect();
    let chosen = if only.is_empty() {
        all.iter().map(|(n, _)| n.clone()).collect()
    } else {
        order::with_dependencies(&all, only)
            .map_err(|unknown| anyhow!("--only {unknown}: the plan has no such resource"))?
    };
    let narrowed: Vec<(String, Vec<String>)> = all
        .into_iter()
        .filter(|(name, _)| chosen.contains(name))
        .collect();
    if narrowed.is_empty() {
        bail!("the plan has no resources to drill");
    }
    Ok(order::waves(&narrowed)?)
}

/// A declared drill site must not share a folder or a database server with a live site: a
/// drill never writes where the primary or a standby keeps its data.
fn check_isolated<'a>(
    plan: &Plan,
    site: &str,
    resources: impl Iterator<Item = &'a String>,
) -> Result<()> {
    for name in resources {
        let Some(resource) = plan.resource(name) else {
            continue;
        };
        for live in plan
            .sites
            .iter()
            .filter(|(_, s)| s.role != Role::Drill)
            .map(|(n, _)| n.as_str())
        {
            let clash = match (
                &resource.kind,
                resource.binding(site),
                resource.binding(live),
            ) {
                (
                    ResourceKind::Files(_) | ResourceKind::Sqlite(_),
                    Some(lifeboat_plan::Binding::Path(drill)),
                    Some(lifeboat_plan::Binding::Path(other)),
                ) => (drill.path.starts_with(&other.path) || other.path.starts_with(&drill.path))
                    .then(|| format!("{} overlaps {}", drill.path.display(), other.path.display())),
                (
                    ResourceKind::Postgres(_) | ResourceKind::Mysql(_),
                    Some(lifeboat_plan::Binding::Database(drill)),
                    Some(lifeboat_plan::Binding::Database(other)),
                ) => {
                    let describe = |b: &DatabaseBinding| {
                        Server::of(
                            &resource.kind,
                            &DatabaseBinding {
                                url: b.url.clone(),
                                password: None,
                            },
                        )
                        // host:port, whoever connects.
                        .map(|s| {
                            let d = s.describe();
                            d.rsplit_once('@').map_or(d, |(_, host)| host).to_string()
                        })
                    };
                    match (describe(drill), describe(other)) {
                        (Ok(a), Ok(b)) if a == b => Some(format!("both are the server {a}")),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(clash) = clash {
                bail!(
                    "resource `{name}` at drill site `{site}` is where site `{live}` keeps it \
                     ({clash}): a drill never writes to a live site; bind it elsewhere at \
                     `{site}`, or leave `at.{site}` out to restore it into a sandbox"
                );
            }
        }
    }
    Ok(())
}

struct Drill<'a> {
    ctx: &'a Context,
    plan: &'a Plan,
    store: &'a StateStore,
    shared: Arc<Shared>,
    /// Opened by the provision step: a recovery's first work, part of its RTO.
    repo: OnceLock<Repository>,
    point: RestorePoint,
    site: String,
    declared: bool,
    /// The plan with every drilled resource bound at `site`: the declared bindings, and the
    /// sandbox's for the others. Set by the provision step.
    sandbox_plan: OnceLock<Plan>,
    placements: OnceLock<BTreeMap<String, Placement>>,
    /// What the drill site's commands see.
    env: OnceLock<Vec<(String, String)>>,
}

impl Drill<'_> {
    fn record(&self) -> MutexGuard<'_, DrillRecord> {
        locked(&self.shared.record)
    }

    fn outcome(&self, resource: &str, update: impl FnOnce(&mut ResourceOutcome)) {
        let mut outcomes = locked(&self.shared.outcomes);
        let entry = outcomes.entry(resource.to_string()).or_insert_with(|| {
            let r = self.plan.resource(resource);
            ResourceOutcome::new(
                resource,
                r.map_or("?", |r| r.kind_name()),
                self.plan.rpo_of(resource).unwrap_or_default().as_millis() as u64,
            )
        });
        update(entry);
    }

    /// Writes `created` down before it is made; refused once teardown began.
    fn register(&self, created: Created) -> Result<usize> {
        let mut record = self.record();
        if record.phase != Phase::Running {
            bail!("the drill is being torn down");
        }
        record.created.push(created);
        save_record(self.store, &record)?;
        Ok(record.created.len() - 1)
    }

    fn elapsed_ms(&self) -> u64 {
        let started = self.record().started;
        jiff::Timestamp::now()
            .duration_since(started)
            .as_millis()
            .max(0) as u64
    }

    /// Journals `work` as `step`: started, then finished or failed.
    fn step(&self, step: &DrillStep, work: impl FnOnce() -> Result<String>) -> Result<String> {
        let id = step.id();
        let record = |event, detail: Option<String>| Record {
            step: id.clone(),
            event,
            at: jiff::Timestamp::now().to_string(),
            elapsed_ms: self.elapsed_ms(),
            detail,
        };
        let drill_id = self.record().id.clone();
        self.store
            .append_drill(&drill_id, &record(Event::Started, None))?;
        let quiet = self.ctx.global.json || self.ctx.global.quiet;
        if !quiet {
            eprintln!("→ {id}");
        }
        let started = std::time::Instant::now();
        let outcome = work();
        let took = output::millis(started.elapsed().as_millis() as u64);
        match &outcome {
            Ok(detail) => {
                self.store
                    .append_drill(&drill_id, &record(Event::Finished, Some(detail.clone())))?;
                if !self.ctx.global.json {
                    println!("✓ {id} ({took}): {detail}");
                }
            }
            Err(e) => {
                let error = format!("{e:#}");
                self.store
                    .append_drill(&drill_id, &record(Event::Failed, Some(error.clone())))?;
                if !self.ctx.global.json {
                    println!("✗ {id} ({took}): {error}");
                }
            }
        }
        outcome
    }

    /// Runs every step; a failure stops what depends on it, never the verification of what
    /// was restored, the live site's comparison or the teardown.
    fn execute(&self, keep: bool) {
        let steps = self.record().steps.clone();
        let deps: Vec<(String, Vec<String>)> = self
            .plan
            .resources
            .iter()
            .map(|(n, r)| (n.clone(), r.depends_on.clone()))
            .collect();
        let mut up = true;
        let mut not_restored: Vec<String> = Vec::new();
        let mut i = 0;
        while i < steps.len() {
            match &steps[i] {
                step @ DrillStep::Provision { .. } => {
                    up = self.step(step, || self.provision()).is_ok();
                    i += 1;
                }
                DrillStep::Restore { wave, .. } => {
                    let batch: Vec<&DrillStep> = steps[i..]
                        .iter()
                        .take_while(
                            |s| matches!(s, DrillStep::Restore { wave: w, .. } if w == wave),
                        )
                        .collect();
                    i += batch.len();
                    let names = batch.iter().filter_map(|s| match s {
                        DrillStep::Restore { resource, .. } => Some(resource.clone()),
                        _ => None,
                    });
                    let mut runnable = Vec::new();
                    let stuck = blocked(&deps, &not_restored);
                    for name in names {
                        if !up {
                            self.outcome(&name, |o| {
                                o.problems
                                    .push("not restored: the sandbox did not come up".into())
                            });
                            not_restored.push(name);
                        } else if stuck.contains(&name) {
                            self.outcome(&name, |o| {
                                o.problems.push(
                                    "not restored: something it depends on was not restored".into(),
                                )
                            });
                            not_restored.push(name);
                        } else {
                            runnable.push(name);
                        }
                    }
                    let failed = self.in_parallel(&runnable, |name| {
                        let step = DrillStep::Restore {
                            resource: name.to_string(),
                            wave: *wave,
                        };
                        self.step(&step, || self.restore(name)).inspect_err(|e| {
                            self.outcome(name, |o| {
                                o.problems.push(format!("restore failed: {e:#}"))
                            })
                        })
                    });
                    not_restored.extend(failed);
                }
                step @ (DrillStep::Start { .. } | DrillStep::Checks { .. }) => {
                    i += 1;
                    if up && not_restored.is_empty() {
                        let work = || match step {
                            DrillStep::Start { .. } => self.start(),
                            _ => self.checks(),
                        };
                        up = self.step(step, work).is_ok();
                    }
                }
                DrillStep::Verify { .. } => {
                    let batch: Vec<String> = steps[i..]
                        .iter()
                        .map_while(|s| match s {
                            DrillStep::Verify { resource } => Some(resource.clone()),
                            _ => None,
                        })
                        .collect();
                    i += batch.len();
                    let restored: Vec<String> = batch
                        .into_iter()
                        .filter(|n| !not_restored.contains(n))
                        .collect();
                    self.in_parallel(&restored, |name| {
                        let step = DrillStep::Verify {
                            resource: name.to_string(),
                        };
                        self.step(&step, || self.verify(name))
                    });
                }
                step @ DrillStep::Changes { site } => {
                    i += 1;
                    let _ = self.step(step, || self.changes(site));
                }
                step @ DrillStep::Teardown => {
                    i += 1;
                    if keep {
                        let mut record = self.record();
                        record.phase = Phase::Kept;
                        let _ = save_record(self.store, &record);
                        continue;
                    }
                    let _guard = locked(&self.shared.teardown);
                    let _ = self.step(step, || {
                        let left = tear_down(&self.shared, self.store);
                        if left.is_empty() {
                            Ok("everything the drill created is gone".into())
                        } else {
                            Err(anyhow!("left behind: {}", left.join("; ")))
                        }
                    });
                }
            }
        }
    }

    /// Runs `work` for each name at once; returns the names it failed for.
    fn in_parallel(
        &self,
        names: &[String],
        work: impl Fn(&str) -> Result<String> + Sync,
    ) -> Vec<String> {
        std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| {
                    let work = &work;
                    (name, s.spawn(move || work(name)))
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|(name, h)| match h.join() {
                    Ok(Ok(_)) => None,
                    _ => Some(name.clone()),
                })
                .collect()
        })
    }

    fn repo(&self) -> Result<&Repository> {
        self.repo
            .get()
            .ok_or_else(|| anyhow!("the repository was not opened"))
    }

    fn sandbox_plan(&self) -> Result<&Plan> {
        self.sandbox_plan
            .get()
            .ok_or_else(|| anyhow!("the sandbox did not come up"))
    }

    fn placement(&self, resource: &str) -> Result<&Placement> {
        self.placements
            .get()
            .and_then(|p| p.get(resource))
            .ok_or_else(|| anyhow!("`{resource}` has no place in the sandbox"))
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let record = self.record();
        vec![
            ("LIFEBOAT_RUN", record.id.clone()),
            ("LIFEBOAT_KIND", "drill".to_string()),
            ("LIFEBOAT_POINT", record.point.clone()),
            ("LIFEBOAT_SANDBOX", record.sandbox.display().to_string()),
        ]
    }

    /// The sandbox's folder, the drill site's `provision` commands, the temporary servers,
    /// and the plan with every drilled resource bound at the drill site.
    fn provision(&self) -> Result<String> {
        let sandbox = self.record().sandbox.clone();
        if sandbox.exists() {
            bail!(
                "{} exists already; a drill uses a new folder",
                sandbox.display()
            );
        }
        self.register(Created::Folder {
            path: sandbox.clone(),
        })?;
        // Others may pass through (a temporary server's account must reach its folder) but
        // not list what is inside.
        make_dir(&sandbox, 0o711)?;
        let mut said = Vec::new();
        let _ = self.repo.set(self.ctx.open_repository()?);
        if let Some(site) = self.plan.site(&self.site).filter(|_| self.declared)
            && !site.provision.is_empty()
        {
            self.register(Created::Provisioned {
                site: self.site.clone(),
            })?;
            let env = command_env(self.plan, &self.site, &self.facts());
            said.push(run_commands(self.plan, &env, &site.provision)?);
        }
        let mut sandbox_plan = self.plan.clone();
        if !self.declared {
            sandbox_plan.sites.insert(
                self.site.clone(),
                lifeboat_plan::Site {
                    role: Role::Drill,
                    on_demand: true,
                    provision: vec![],
                    decommission: vec![],
                    start: vec![],
                    env: Default::default(),
                    checks: vec![],
                },
            );
        }
        let drilled: Vec<String> = self.record().waves.iter().flatten().cloned().collect();
        let mut placements = BTreeMap::new();
        let mut servers = Vec::new();
        for name in &drilled {
            let resource = self
                .plan
                .resource(name)
                .ok_or_else(|| anyhow!("the plan has no resource `{name}`"))?;
            if self.declared && resource.binding(&self.site).is_some() {
                placements.insert(name.clone(), Placement::Declared);
                continue;
            }
            let sub = |folder: &str| -> Result<PathBuf> {
                let dir = sandbox.join(folder);
                if !dir.exists() {
                    make_dir(&dir, if folder == "servers" { 0o711 } else { 0o700 })?;
                }
                Ok(dir.join(name))
            };
            let spec = sandbox_plan
                .resources
                .get_mut(name)
                .expect("cloned from the plan");
            let placement = match &mut spec.kind {
                ResourceKind::Files(files) => {
                    let path = sub("files")?;
                    files
                        .at
                        .insert(self.site.clone(), PathBinding { path: path.clone() });
                    Placement::Folder(path)
                }
                ResourceKind::Sqlite(sqlite) => {
                    let dir = sub("sqlite")?;
                    make_dir(&dir, 0o700)?;
                    let file = sqlite
                        .at
                        .values()
                        .next()
                        .and_then(|b| b.path.file_name())
                        .map_or_else(|| format!("{name}.db").into(), |f| f.to_os_string());
                    let path = dir.join(file);
                    sqlite
                        .at
                        .insert(self.site.clone(), PathBinding { path: path.clone() });
                    Placement::File(path)
                }
                ResourceKind::Postgres(_) | ResourceKind::Mysql(_) => {
                    let engine = match spec.kind {
                        ResourceKind::Mysql(_) => TempEngine::Mariadb,
                        _ => TempEngine::Postgres,
                    };
                    servers.push((name.clone(), engine, sub("servers")?));
                    Placement::Server
                }
                ResourceKind::Command(_) | ResourceKind::Http(_) => {
                    let dir = sub("documents")?;
                    make_dir(&dir, 0o700)?;
                    Placement::Documents(dir)
                }
            };
            placements.insert(name.clone(), placement);
        }
        if !servers.is_empty() {
            let secrets = sandbox.join("secrets");
            make_dir(&secrets, 0o700)?;
            let started: Vec<Result<(String, String, PathBuf)>> = std::thread::scope(|s| {
                let handles: Vec<_> = servers
                    .iter()
                    .map(|(name, engine, dir)| {
                        let secrets = &secrets;
                        s.spawn(move || self.start_server(name, *engine, dir, secrets))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow!("starting a server panicked")))
                    })
                    .collect()
            });
            for outcome in started {
                let (name, url, secret) = outcome?;
                said.push(format!("`{name}`: a temporary server at {url}"));
                let spec = sandbox_plan.resources.get_mut(&name).expect("drilled");
                if let ResourceKind::Postgres(db) | ResourceKind::Mysql(db) = &mut spec.kind {
                    db.at.insert(
                        self.site.clone(),
                        DatabaseBinding {
                            url,
                            password: Some(Secret::File(secret)),
                        },
                    );
                }
            }
        }
        let mut env = command_env(&sandbox_plan, &self.site, &self.facts());
        for (name, placement) in &placements {
            if let Placement::Documents(dir) = placement {
                env.push((at_variable(name), dir.display().to_string()));
            }
        }
        for (name, placement) in &placements {
            let at = placement.describe(&sandbox_plan, &self.site, name);
            self.outcome(name, |o| o.restored_to = Some(at));
        }
        let _ = self.env.set(env);
        let _ = self.sandbox_plan.set(sandbox_plan);
        let _ = self.placements.set(placements);
        said.push(format!("sandbox {}", sandbox.display()));
        Ok(said.join("; "))
    }

    /// A temporary server for `resource`: (name, URL, password file).
    fn start_server(
        &self,
        resource: &str,
        engine: TempEngine,
        dir: &Path,
        secrets: &Path,
    ) -> Result<(String, String, PathBuf)> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a password: {e}"))?;
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let secret = secrets.join(resource);
        write_private(&secret, password.as_bytes())?;
        let index = self.register(Created::Server {
            resource: resource.to_string(),
            engine: match engine {
                TempEngine::Postgres => Engine::Postgres,
                TempEngine::Mariadb => Engine::Mariadb,
            },
            dir: dir.to_path_buf(),
            pid: None,
        })?;
        let mut spawned = |pid: u32| self.server_spawned(index, pid);
        let server = match engine {
            TempEngine::Postgres => TempServer::postgres(dir, &password, &mut spawned),
            TempEngine::Mariadb => TempServer::mariadb(dir, &password, &mut spawned),
        }
        .with_context(|| format!("a temporary server for `{resource}`"))?;
        let url = server.url();
        locked(&self.shared.servers).push(server);
        Ok((resource.to_string(), url, secret))
    }

    /// Writes a server's pid down; kills it at once when the teardown already began.
    fn server_spawned(&self, index: usize, pid: u32) {
        let mut record = self.record();
        if record.phase != Phase::Running {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return;
        }
        if let Some(Created::Server { pid: slot, .. }) = record.created.get_mut(index) {
            *slot = Some(pid);
        }
        let _ = save_record(self.store, &record);
    }

    fn items(&self, resource: &str) -> Vec<&ResourcePoint> {
        let chosen: Vec<&ResourcePoint> = self
            .point
            .resources
            .iter()
            .filter(|r| selects(resource, &r.name))
            .collect();
        with_globals(&self.point, chosen)
    }

    fn restore(&self, resource: &str) -> Result<String> {
        let placement = self.placement(resource)?.clone();
        let sandbox_plan = self.sandbox_plan()?;
        let mut said = Vec::new();
        for r in self.items(resource) {
            let root = r
                .root
                .ok_or_else(|| anyhow!("`{}` was not captured in this restore point", r.name))?;
            let what = match &placement {
                Placement::Documents(dir) => {
                    let target = document_folder(dir, &r.name);
                    let stats = lifeboat_files::restore(
                        self.repo()?,
                        root,
                        &target,
                        &Default::default(),
                        None,
                    )?;
                    format!(
                        "kept {} as a file in {}",
                        output::bytes(stats.bytes),
                        target.display()
                    )
                }
                Placement::Declared => {
                    let staging = self.claim_declared(sandbox_plan, resource, r)?;
                    let how = AtSite {
                        replace: false,
                        rename: &[],
                        jobs: 1,
                        staging: staging.as_deref(),
                    };
                    restore_at_site(self.repo()?, sandbox_plan, &self.site, r, &how)?
                }
                Placement::Folder(_) | Placement::File(_) | Placement::Server => {
                    let how = AtSite {
                        // A temporary server is the drill's own: its `postgres` database may
                        // be replaced by the captured one.
                        replace: matches!(placement, Placement::Server),
                        rename: &[],
                        jobs: 1,
                        staging: None,
                    };
                    restore_at_site(self.repo()?, sandbox_plan, &self.site, r, &how)?
                }
            };
            said.push(format!("{}: {what}", r.name));
        }
        Ok(said.join("; "))
    }

    /// Before restoring `r` into a declared binding: refuses what is already there (a drill
    /// never overwrites) and writes down what the restore will create. Returns the staging
    /// database's name for a database.
    fn claim_declared(
        &self,
        sandbox_plan: &Plan,
        resource: &str,
        r: &ResourcePoint,
    ) -> Result<Option<String>> {
        let spec = sandbox_plan
            .resource(resource)
            .ok_or_else(|| anyhow!("the plan has no resource `{resource}`"))?;
        match (&spec.kind, spec.binding(&self.site)) {
            (ResourceKind::Files(_), Some(lifeboat_plan::Binding::Path(b))) => {
                match std::fs::symlink_metadata(&b.path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.register(Created::Folder {
                            path: b.path.clone(),
                        })?;
                    }
                    Ok(meta) if meta.is_dir() => {
                        let empty = std::fs::read_dir(&b.path)
                            .with_context(|| format!("reading {}", b.path.display()))?
                            .next()
                            .is_none();
                        if !empty {
                            bail!(
                                "{} is not empty: a drill never writes over what is at the \
                                 drill site",
                                b.path.display()
                            );
                        }
                        self.register(Created::Contents {
                            path: b.path.clone(),
                        })?;
                    }
                    Ok(_) => bail!("{} is not a folder", b.path.display()),
                    Err(e) => {
                        return Err(e).with_context(|| format!("looking at {}", b.path.display()));
                    }
                }
                Ok(None)
            }
            (ResourceKind::Sqlite(_), Some(lifeboat_plan::Binding::Path(b))) => {
                if b.path.exists() {
                    bail!(
                        "{} exists: a drill never writes over what is at the drill site",
                        b.path.display()
                    );
                }
                self.register(Created::File {
                    path: b.path.clone(),
                })?;
                Ok(None)
            }
            (
                ResourceKind::Postgres(_) | ResourceKind::Mysql(_),
                Some(lifeboat_plan::Binding::Database(b)),
            ) => {
                let Some((_, database)) = r.name.split_once('/').filter(|_| r.database.is_some())
                else {
                    // The server's accounts: applied, never removed (the site's decommission
                    // owns the server).
                    return Ok(None);
                };
                let server = Server::of(&spec.kind, b)?;
                if server.databases()?.iter().any(|d| d == database) {
                    bail!(
                        "database `{database}` exists on {}: a drill never writes over what is \
                         at the drill site{}",
                        server.describe(),
                        if database == "postgres" {
                            " (every PostgreSQL server has a `postgres` database: \
                             `exclude = [\"postgres\"]` in the resource leaves it out)"
                        } else {
                            ""
                        }
                    );
                }
                let index = self.record().created.len();
                let staging = format!("lifeboat_drill_{}_{index}", std::process::id());
                self.register(Created::Database {
                    resource: resource.to_string(),
                    site: self.site.clone(),
                    name: database.to_string(),
                    staging: staging.clone(),
                })?;
                Ok(Some(staging))
            }
            // Documents are applied; the site's decommission undoes them.
            _ => Ok(None),
        }
    }

    fn start(&self) -> Result<String> {
        let site = self
            .plan
            .site(&self.site)
            .ok_or_else(|| anyhow!("the plan has no site `{}`", self.site))?;
        run_commands(self.plan, self.env.get().map_or(&[], |e| e), &site.start)
    }

    fn checks(&self) -> Result<String> {
        let sandbox_plan = self.sandbox_plan()?;
        let site = self
            .plan
            .site(&self.site)
            .ok_or_else(|| anyhow!("the plan has no site `{}`", self.site))?;
        let env = self.env.get().map_or(&[][..], |e| e.as_slice());
        let mut passed = Vec::new();
        let mut failed = Vec::new();
        for check in &site.checks {
            let outcome = run_check(&check_spec(sandbox_plan, &self.site, check, env)?);
            if outcome.ok {
                passed.push(format!("{} ({})", outcome.name, outcome.detail));
            } else {
                failed.push(format!(
                    "check `{}` failed after {} attempt(s): {}",
                    outcome.name, outcome.attempts, outcome.detail
                ));
            }
        }
        if !failed.is_empty() {
            bail!("{}", failed.join("; "));
        }
        Ok(format!("all green: {}", passed.join("; ")))
    }

    /// What came back equals what was captured: file digests, a database's row counts and
    /// recorded checks, the resource's `verify` entries.
    fn verify(&self, resource: &str) -> Result<String> {
        let sandbox_plan = self.sandbox_plan()?;
        let placement = self.placement(resource)?;
        let spec = sandbox_plan
            .resource(resource)
            .ok_or_else(|| anyhow!("the plan has no resource `{resource}`"))?;
        let mut verified = Vec::new();
        let mut problems = Vec::new();
        for r in self.items(resource) {
            let Some(root) = r.root else { continue };
            let folder = match (placement, spec.binding(&self.site)) {
                (Placement::Documents(dir), _) => Some(document_folder(dir, &r.name)),
                (_, Some(lifeboat_plan::Binding::Path(b)))
                    if matches!(spec.kind, ResourceKind::Files(_)) =>
                {
                    Some(b.path.clone())
                }
                _ => None,
            };
            if let Some(folder) = folder {
                let differences = lifeboat_files::verify(self.repo()?, root, None, &folder)?;
                if differences.is_empty() {
                    verified.push(format!(
                        "{}: every file matches the restore point's digests ({}, {})",
                        r.name,
                        report::plural(r.stats.files, "file"),
                        output::bytes(r.stats.bytes)
                    ));
                } else {
                    problems.extend(
                        differences
                            .iter()
                            .take(10)
                            .map(|d| format!("{}: {}: {}", r.name, d.path, d.problem)),
                    );
                    if differences.len() > 10 {
                        problems.push(format!(
                            "{}: … and {} more differences",
                            r.name,
                            differences.len() - 10
                        ));
                    }
                }
                continue;
            }
            match (&spec.kind, &r.database, spec.binding(&self.site)) {
                (ResourceKind::Sqlite(_), _, _) => verified.push(format!(
                    "{}: SQLite's integrity check passed on the restored file",
                    r.name
                )),
                (
                    ResourceKind::Postgres(_),
                    Some(facts),
                    Some(lifeboat_plan::Binding::Database(b)),
                ) => {
                    let database = r
                        .name
                        .split_once('/')
                        .map_or(facts.name.as_str(), |(_, d)| d);
                    let Server::Postgres(server) = Server::of(&spec.kind, b)? else {
                        unreachable!("a postgres binding");
                    };
                    let differences = server.verify_database(database, facts)?;
                    if differences.is_empty() {
                        verified.push(format!(
                            "{}: row counts of {} and {} match",
                            r.name,
                            report::plural(facts.tables.len() as u64, "table"),
                            report::plural(
                                facts.checks.iter().filter(|c| c.error.is_none()).count() as u64,
                                "recorded check"
                            )
                        ));
                    } else {
                        problems
                            .extend(differences.into_iter().map(|d| format!("{}: {d}", r.name)));
                    }
                }
                (ResourceKind::Mysql(_), Some(_), _) => verified.push(format!(
                    "{}: restored (MariaDB captures record no row counts to compare)",
                    r.name
                )),
                _ => {}
            }
        }
        let env = self.env.get().map_or(&[][..], |e| e.as_slice());
        for outcome in verify_entries(sandbox_plan, resource, &spec.verify, &self.site, env)? {
            if outcome.ok {
                verified.push(format!("{}: {}", outcome.name, outcome.detail));
            } else {
                problems.push(format!("{} failed: {}", outcome.name, outcome.detail));
            }
        }
        let failed = !problems.is_empty();
        let summary = if failed {
            problems.join("; ")
        } else {
            verified.join("; ")
        };
        self.outcome(resource, |o| {
            o.verified.extend(verified);
            o.problems.extend(problems);
        });
        if failed {
            bail!("{summary}");
        }
        Ok(if summary.is_empty() {
            "nothing to compare".into()
        } else {
            summary
        })
    }

    /// Where the live site is readable: how many of each resource's paths or tables changed
    /// after the restore point.
    fn changes(&self, live: &str) -> Result<String> {
        let drilled: Vec<String> = self.record().waves.iter().flatten().cloned().collect();
        let repo = self.repo()?;
        let mut said = Vec::new();
        for name in &drilled {
            let Some(spec) = self.plan.resource(name) else {
                continue;
            };
            let measured = match (&spec.kind, spec.binding(live)) {
                (ResourceKind::Files(_), Some(lifeboat_plan::Binding::Path(b))) => {
                    let root = self.point.resource(name).and_then(|r| r.root);
                    Some(
                        match root {
                            _ if !b.path.is_dir() => {
                                Err(format!("{} is not readable", b.path.display()))
                            }
                            None => Err("not in the restore point".into()),
                            Some(root) => lifeboat_files::verify(repo, root, None, &b.path)
                                .map(|d| {
                                    let examples =
                                        d.iter().take(5).map(|d| d.path.clone()).collect();
                                    (d.len() as u64, examples)
                                })
                                .map_err(|e| e.to_string()),
                        }
                        .map(|(n, examples)| ("path", n, examples)),
                    )
                }
                (ResourceKind::Postgres(_), Some(lifeboat_plan::Binding::Database(b))) => Some(
                    self.database_changes(spec, name, b)
                        .map(|(n, e)| ("table", n, e)),
                ),
                _ => None,
            };
            let Some(measured) = measured else { continue };
            let changes = match measured {
                Ok((unit, count, examples)) => {
                    said.push(format!("`{name}`: {} changed", report::plural(count, unit)));
                    Changes {
                        site: live.to_string(),
                        count: Some(count),
                        unit: unit.to_string(),
                        examples,
                        unreadable: None,
                    }
                }
                Err(why) => {
                    said.push(format!("`{name}`: unreadable ({why})"));
                    Changes {
                        site: live.to_string(),
                        count: None,
                        unit: String::new(),
                        examples: vec![],
                        unreadable: Some(why),
                    }
                }
            };
            self.outcome(name, |o| o.changes = Some(changes));
        }
        Ok(if said.is_empty() {
            format!("nothing at `{live}` to compare")
        } else {
            said.join("; ")
        })
    }

    fn database_changes(
        &self,
        spec: &lifeboat_plan::Resource,
        name: &str,
        binding: &DatabaseBinding,
    ) -> Result<(u64, Vec<String>), String> {
        let Server::Postgres(server) =
            Server::of(&spec.kind, binding).map_err(|e| format!("{e:#}"))?
        else {
            return Err("not a PostgreSQL server".into());
        };
        let mut count = 0;
        let mut examples = Vec::new();
        for r in self.items(name) {
            let Some(facts) = &r.database else { continue };
            let database = r
                .name
                .split_once('/')
                .map_or(facts.name.as_str(), |(_, d)| d);
            let differences = server
                .verify_database(database, facts)
                .map_err(|e| e.to_string())?;
            count += differences
                .iter()
                .filter(|d| d.starts_with("table "))
                .count() as u64;
            examples.extend(
                differences
                    .into_iter()
                    .take(5usize.saturating_sub(examples.len()))
                    .map(|d| format!("{database}: {d}")),
            );
        }
        Ok((count, examples))
    }
}

/// Where a document is kept: the resource's folder, or a folder per discovered item
/// (`workflows/<item>`; a `/` in the item would nest folders).
fn document_folder(dir: &Path, name: &str) -> PathBuf {
    match name.split_once('/') {
        Some((_, item)) => dir.join(item.replace('/', "%2F")),
        None => dir.to_path_buf(),
    }
}

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // The umask may have taken bits away.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn save_record(store: &StateStore, record: &DrillRecord) -> Result<()> {
    store.write_drill_file(
        &record.id,
        "drill.json",
        &serde_json::to_vec_pretty(record).expect("a record serialises"),
    )
}

fn load_record(store: &StateStore, id: &str) -> Result<DrillRecord> {
    let bytes = store.read_drill_file(id, "drill.json")?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is damaged",
            store.drill_dir(id).join("drill.json").display()
        )
    })
}

/// Undoes everything the record names that is not undone yet, newest first; keeps going past
/// a failure. Returns what is left behind.
fn tear_down(shared: &Shared, store: &StateStore) -> Vec<String> {
    let order: Vec<(usize, Created)> = {
        let mut record = locked(&shared.record);
        record.phase = Phase::TearingDown;
        let _ = save_record(store, &record);
        record
            .teardown_order()
            .into_iter()
            .map(|(i, c)| (i, c.clone()))
            .collect()
    };
    let mut left = Vec::new();
    for (index, created) in order {
        match undo(shared, &created) {
            Ok(()) => {
                let mut record = locked(&shared.record);
                record.torn_down.push(index);
                let _ = save_record(store, &record);
            }
            Err(e) => left.push(format!("{}: {e:#}", created.describe())),
        }
    }
    // A restore still running while a signal tore down may have made a folder again.
    for (index, created) in locked(&shared.record).created.iter().enumerate() {
        if let Created::Folder { path } = created
            && path.exists()
            && remove_tree(path).is_err()
        {
            left.push(format!("{} (entry {index})", created.describe()));
        }
    }
    let mut record = locked(&shared.record);
    if left.is_empty() {
        record.phase = Phase::Done;
    }
    let _ = save_record(store, &record);
    left
}

fn undo(shared: &Shared, created: &Created) -> Result<()> {
    let plan = &shared.plan;
    match created {
        Created::Folder { path } => remove_tree(path),
        Created::Contents { path } => match std::fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let p = entry.path();
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove_tree(&p)?;
                    } else {
                        std::fs::remove_file(&p)
                            .with_context(|| format!("removing {}", p.display()))?;
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("emptying {}", path.display())),
        },
        Created::Server {
            engine, dir, pid, ..
        } => {
            let own = {
                let mut servers = locked(&shared.servers);
                servers
                    .iter()
                    .position(|s| s.dir == *dir)
                    .map(|i| servers.remove(i))
            };
            match own {
                Some(server) => server.stop()?,
                None => {
                    let engine = match engine {
                        Engine::Postgres => TempEngine::Postgres,
                        Engine::Mariadb => TempEngine::Mariadb,
                    };
                    lifeboat_services::stop_leftover(engine, dir, *pid)?;
                }
            }
            Ok(())
        }
        Created::Database {
            resource,
            site,
            name,
            staging,
        } => {
            let spec = plan
                .resource(resource)
                .ok_or_else(|| anyhow!("the plan has no resource `{resource}` any more"))?;
            let binding = match spec.binding(site) {
                Some(lifeboat_plan::Binding::Database(b)) => b,
                _ => bail!("`{resource}` has no database binding at `{site}` any more"),
            };
            match Server::of(&spec.kind, binding)? {
                Server::Postgres(s) => {
                    s.drop_database(staging)?;
                    s.drop_database(name)?;
                }
                Server::Mysql(s) => {
                    s.drop_database(name)?;
                }
            }
            Ok(())
        }
        Created::File { path } => {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("removing {}", p.display()));
                    }
                }
            }
            Ok(())
        }
        Created::Provisioned { site } => {
            let Some(spec) = plan.site(site) else {
                bail!("the plan has no site `{site}` any more: decommission it by hand");
            };
            let record = locked(&shared.record).clone();
            let env = command_env(
                plan,
                site,
                &[
                    ("LIFEBOAT_RUN", record.id.clone()),
                    ("LIFEBOAT_KIND", "drill".to_string()),
                    ("LIFEBOAT_POINT", record.point.clone()),
                    ("LIFEBOAT_SANDBOX", record.sandbox.display().to_string()),
                ],
            );
            run_commands(plan, &env, &spec.decommission).map(|_| ())
        }
    }
}

/// Removes a folder and everything in it, also read-only folders a restore made.
fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// What the record still names after its teardown.
fn record_left_behind(record: &DrillRecord) -> Vec<String> {
    record
        .teardown_order()
        .into_iter()
        .map(|(_, c)| c.describe())
        .collect()
}

fn outcomes_of(shared: &Shared) -> BTreeMap<String, ResourceOutcome> {
    locked(&shared.outcomes).clone()
}

/// SIGINT, SIGTERM or SIGHUP while the drill runs: tear down, write the report, exit 130.
fn on_signal(shared: Arc<Shared>, json: bool) -> Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handler")?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("lifeboat: signal {signal}: stopping the drill and tearing down");
            let store = StateStore::of(&shared.plan);
            let _guard = locked(&shared.teardown);
            let left = tear_down(&shared, &store);
            let record = locked(&shared.record).clone();
            let report = write_report(
                &shared.plan,
                &store,
                &record,
                &outcomes_of(&shared),
                left.clone(),
                true,
            );
            if json && let Ok(report) = &report {
                output::json(report);
            }
            if left.is_empty() {
                eprintln!("lifeboat: the drill was torn down");
            } else {
                eprintln!(
                    "lifeboat: left behind: {}; `lifeboat drill --cleanup` tries again",
                    left.join("; ")
                );
            }
            std::process::exit(130);
        }
    });
    Ok(handle)
}

/// Assesses the drill, writes `report.json` and `report.html` (with the trend of every past
/// drill), and returns the report.
fn write_report(
    plan: &Plan,
    store: &StateStore,
    record: &DrillRecord,
    outcomes: &BTreeMap<String, ResourceOutcome>,
    left_behind: Vec<String>,
    interrupted: bool,
) -> Result<DrillReport> {
    let journal = store.drill_journal(&record.id)?;
    let resources: Vec<ResourceOutcome> = record
        .waves
        .iter()
        .flatten()
        .map(|name| {
            outcomes.get(name).cloned().unwrap_or_else(|| {
                let mut o = ResourceOutcome::new(
                    name,
                    plan.resource(name).map_or("?", |r| r.kind_name()),
                    plan.rpo_of(name).unwrap_or_default().as_millis() as u64,
                );
                if interrupted {
                    o.problems
                        .push("not verified: the drill was interrupted".into());
                }
                o
            })
        })
        .collect();
    let report = report::assess(Measured {
        record,
        plan: plan.name().to_string(),
        journal: &journal,
        resources,
        rto_objective_ms: plan.objectives.rto.as_millis() as u64,
        finished: jiff::Timestamp::now(),
        left_behind,
        kept: record.phase == Phase::Kept,
        interrupted,
    });
    store.write_drill_file(
        &record.id,
        "report.json",
        &serde_json::to_vec_pretty(&report).expect("a report serialises"),
    )?;
    let mut trend: Vec<TrendPoint> = past_reports(store)
        .iter()
        .filter(|r| r.drill != report.drill)
        .map(TrendPoint::from)
        .collect();
    trend.push(TrendPoint::from(&report));
    trend.sort_by_key(|p| p.started);
    store.write_drill_file(
        &record.id,
        "report.html",
        lifeboat_drill::html::render(&report, &trend).as_bytes(),
    )?;
    Ok(report)
}

/// Every drill's report, oldest first; unreadable ones are skipped.
pub(crate) fn past_reports(store: &StateStore) -> Vec<DrillReport> {
    store
        .drills()
        .iter()
        .filter_map(|id| store.read_drill_file(id, "report.json").ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect()
}

fn verdict(report: &DrillReport) -> Exit {
    if !report.teardown_complete && !report.kept {
        Exit::Failure
    } else if report.passed {
        Exit::Success
    } else {
        Exit::Problems
    }
}

fn alert(plan: &Plan, report: &DrillReport) {
    if plan.notify.is_empty() {
        return;
    }
    let text = format!(
        "lifeboat: drill of `{}` FAILED: {}",
        plan.name(),
        report.problems.first().map_or("", String::as_str)
    );
    let alert = serde_json::json!({
        "event": "drill_failed", "plan": plan.name(), "drill": report.drill,
        "problems": report.problems, "achieved_rto_ms": report.achieved_rto_ms,
        "achieved_rpo_ms": report.achieved_rpo_ms, "text": text,
    });
    let said = deliver(plan, &alert, &text);
    tracing::info!("drill alert: {said}");
}

fn print_report(
    ctx: &Context,
    store: &StateStore,
    report: &DrillReport,
    kept: Option<&DrillRecord>,
) {
    if ctx.global.json {
        output::json(report);
        return;
    }
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "drill {}: {}",
        report.drill,
        if report.passed { "PASSED" } else { "FAILED" }
    );
    match report.achieved_rto_ms {
        Some(ms) => println!(
            "  RTO achieved {} (objective {}): {}",
            output::millis(ms),
            output::millis(report.rto_objective_ms),
            verdict(report.rto_met)
        ),
        None => println!(
            "  RTO not achieved: the recovery did not complete (objective {})",
            output::millis(report.rto_objective_ms)
        ),
    }
    println!(
        "  RPO achieved {} (age of restore point {}; objective {}): {}",
        output::millis(report.achieved_rpo_ms),
        &report.point[..8.min(report.point.len())],
        output::millis(report.rpo_objective_ms),
        verdict(report.rpo_met)
    );
    for r in &report.resources {
        if let Some(Changes {
            count: Some(n),
            unit,
            site,
            ..
        }) = &r.changes
            && *n > 0
        {
            println!(
                "  `{}`: {} changed at `{site}` since the restore point",
                r.resource,
                report::plural(*n, unit)
            );
        }
    }
    for problem in &report.problems {
        println!("  problem: {problem}");
    }
    if let Some(record) = kept {
        println!(
            "  the sandbox is kept at {}: inspect it, then `lifeboat drill --cleanup`",
            record.sandbox.display()
        );
    }
    println!(
        "  report: {}",
        store.drill_dir(&report.drill).join("report.html").display()
    );
}

/// Tears down drills a kill left half-done (a kept sandbox stays, unless it holds the declared
/// drill site this drill needs).
fn finish_interrupted(
    ctx: &Context,
    plan: &Plan,
    store: &StateStore,
    declared_site: Option<&str>,
) -> Result<()> {
    for id in store.drills() {
        let Ok(record) = load_record(store, &id) else {
            continue;
        };
        if !record.unfinished() {
            continue;
        }
        if record.phase == Phase::Kept {
            if record.declared_site && declared_site == Some(record.site.as_str()) {
                bail!(
                    "drill {id} kept its sandbox at site `{}`: run `lifeboat drill --cleanup` \
                     first",
                    record.site
                );
            }
            continue;
        }
        if !ctx.global.json {
            eprintln!("drill {id} was interrupted: finishing its teardown first");
        }
        let left = clean(plan, store, record)?;
        if !left.is_empty() {
            bail!(
                "drill {id} left behind what cannot be removed: {}",
                left.join("; ")
            );
        }
    }
    Ok(())
}

/// Tears one unfinished drill down; writes its report when it never got one. Returns what is
/// left behind.
fn clean(plan: &Plan, store: &StateStore, record: DrillRecord) -> Result<Vec<String>> {
    let id = record.id.clone();
    let was_kept = record.phase == Phase::Kept;
    let shared = Shared {
        plan: plan.clone(),
        record: Mutex::new(record),
        servers: Mutex::new(Vec::new()),
        outcomes: Mutex::new(BTreeMap::new()),
        teardown: Mutex::new(()),
    };
    let left = tear_down(&shared, store);
    let record = locked(&shared.record).clone();
    let reported = store.read_drill_file(&id, "report.json").is_ok();
    if !reported || !was_kept {
        let outcomes = if reported {
            past_reports(store)
                .into_iter()
                .find(|r| r.drill == id)
                .map(|r| {
                    r.resources
                        .into_iter()
                        .map(|o| (o.resource.clone(), o))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        write_report(plan, store, &record, &outcomes, left.clone(), !reported)?;
    }
    Ok(left)
}

fn cleanup(ctx: &Context, plan: &Plan, store: &StateStore) -> Result<Exit> {
    let mut cleaned = Vec::new();
    let mut left_behind = Vec::new();
    for id in store.drills() {
        let record = load_record(store, &id)?;
        if !record.unfinished() {
            continue;
        }
        let things = record.teardown_order().len();
        let left = clean(plan, store, record)?;
        if !ctx.global.json {
            if left.is_empty() {
                println!("drill {id}: torn down ({things} thing(s) it created removed)");
            } else {
                println!("drill {id}: left behind: {}", left.join("; "));
            }
        }
        cleaned.push(serde_json::json!({ "drill": id, "left_behind": left }));
        left_behind.extend(left);
    }
    if ctx.global.json {
        output::json(
            &serde_json::json!({ "cleaned": cleaned, "complete": left_behind.is_empty() }),
        );
    } else if cleaned.is_empty() {
        println!("no drill needs a teardown");
    }
    Ok(if left_behind.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn history(ctx: &Context, plan: &Plan, store: &StateStore) -> Result<Exit> {
    let reports = past_reports(store);
    if ctx.global.json {
        let trend: Vec<TrendPoint> = reports.iter().map(TrendPoint::from).collect();
        output::json(&serde_json::json!({ "plan": plan.name(), "drills": trend }));
        return Ok(Exit::Success);
    }
    if reports.is_empty() {
        println!("no drills of `{}` yet: run `lifeboat drill`", plan.name());
        return Ok(Exit::Success);
    }
    println!(
        "{:<28} {:<10} {:>12} {:>12}  verdict",
        "drill", "site", "RTO", "RPO"
    );
    for r in &reports {
        println!(
            "{:<28} {:<10} {:>12} {:>12}  {}",
            r.drill,
            r.site,
            r.achieved_rto_ms
                .map_or_else(|| "not achieved".into(), output::millis),
            output::millis(r.achieved_rpo_ms),
            if r.passed { "passed" } else { "FAILED" }
        );
    }
    Ok(Exit::Success)
}
