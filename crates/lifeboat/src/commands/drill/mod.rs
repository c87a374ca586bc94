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

mod isolation;
mod teardown;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard, OnceLock};

use anyhow::{Context as _, Result, anyhow, bail};
use lifeboat_drill::record::{Created, DrillRecord, Engine, Phase};
use lifeboat_drill::report::{self, Changes, DrillReport, Measured, ResourceOutcome, TrendPoint};
use lifeboat_drill::steps::{DrillInput, DrillStep, blocked, plan_drill};
use lifeboat_format::manifest::ResourcePoint;
use lifeboat_plan::{DatabaseBinding, PathBinding, Plan, ResourceKind, Role, Secret};
use lifeboat_repository::Repository;
use lifeboat_runbook::journal::{Event, Record};
use lifeboat_runbook::order;
use lifeboat_services::checks::run_check;
use lifeboat_services::{TempEngine, TempServer};

use super::backup::{Server, selects};
use super::restore::{AtSite, is_server, restore_at_site, restore_server_at_site, with_globals};
use super::runbook::{at_variable, check_spec, chosen_resources, deliver, verify_entries};
use crate::cli::DrillArgs;
use crate::context::Context;
use crate::output::{self, Exit};
use crate::sitestate::StateStore;
use teardown::{
    Shared, drill_env, load_record, locked, on_signal, run_site_commands, save_record, tear_down,
};

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
    let waves = drill_waves(plan, &args.only)?;
    if declared {
        isolation::check_drill_site(plan, &site, waves.iter().flatten())?;
    }
    let base = match &args.sandbox {
        Some(dir) => {
            std::path::absolute(dir).with_context(|| format!("--sandbox {}", dir.display()))?
        }
        None => std::env::temp_dir(),
    };
    if !base.is_dir() {
        bail!(
            "--sandbox {}: not a folder; the drill makes its sandbox inside an existing one",
            base.display()
        );
    }
    // Recorded as it really is: a teardown checks that nothing has come to lead it elsewhere.
    let base = isolation::real_path(&base);
    isolation::check_sandbox(plan, &base)?;
    finish_interrupted(ctx, plan, &store, declared.then_some(site.as_str()))?;
    let wanted: Vec<String> = waves.iter().flatten().cloned().collect();
    let choice = crate::choice::choose(&ctx.open_repository()?, args.point.as_deref(), &wanted)?;
    let oldest = choice
        .oldest()
        .cloned()
        .ok_or_else(|| anyhow!("the drill restores no resource"))?;
    let live_site = store.load(plan)?.active;
    let clock = std::time::Instant::now();
    let started = jiff::Timestamp::now();
    let id = format!("{}-drill", started.strftime("%Y%m%dT%H%M%S%.3fZ"));
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(|e| anyhow!("no randomness for the sandbox name: {e}"))?;
    let sandbox = base.join(format!(
        "lifeboat-drill-{}-{}",
        started.strftime("%Y%m%dT%H%M%S"),
        hex(&tag)
    ));
    let drill_site = plan.site(&site).filter(|_| declared);
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
        point: oldest.point.to_string(),
        point_time: oldest.time,
        points: choice
            .chosen
            .iter()
            .map(|c| {
                let at = lifeboat_drill::record::PointAt {
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
        sandbox,
        started,
        created: Vec::new(),
        torn_down: Vec::new(),
        phase: Phase::Running,
    };
    save_record(&store, &record)?;
    let shared = Arc::new(Shared::started_at(plan, record, clock));
    on_signal(shared.clone(), ctx.global.json)?;
    let drill = Drill {
        ctx,
        plan,
        store: &store,
        shared: shared.clone(),
        repo: OnceLock::new(),
        single: choice.single().is_some(),
        choice,
        site,
        declared,
        sandbox_plan: OnceLock::new(),
        placements: OnceLock::new(),
        env: OnceLock::new(),
    };
    if !ctx.global.json {
        println!(
            "drill {id}: {} {} (taken {}) into {} `{}`",
            if drill.single {
                "restore point"
            } else {
                "each resource's newest complete capture, the oldest"
            },
            oldest.point.short(),
            report::time_text(oldest.time),
            if declared {
                "drill site"
            } else {
                "a sandbox derived from the plan, site"
            },
            drill.site
        );
    }
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drill.execute(args.keep)));
    if ran.is_err() {
        // A bug must not leave the sandbox up: tear down, then fail.
        let _teardown = locked(&shared.teardown);
        let left = tear_down(&shared, &store);
        bail!(
            "the drill stopped on an internal error; {}",
            if left.is_empty() {
                "what it created was removed".to_string()
            } else {
                format!("left behind: {}", left.join("; "))
            }
        );
    }
    if shared.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        // The signal's thread tears down, reports and ends the process.
        loop {
            std::thread::park();
        }
    }
    let _teardown = locked(&shared.teardown);
    let record = locked(&shared.record).clone();
    let left = if args.keep {
        Vec::new()
    } else {
        locked(&shared.left).clone()
    };
    let outcomes = locked(&shared.outcomes).clone();
    let report = write_report(plan, &store, &record, &outcomes, left, false)?;
    if let Some(path) = &args.html {
        std::fs::write(path, store.read_drill_file(&record.id, "report.html")?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print_report(ctx, &store, &report, args.keep.then_some(&record));
    if !report.passed {
        alert(ctx, plan, &report);
    }
    Ok(verdict(&report))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
            None => Err(crate::output::usage(format!(
                "the plan has no site `{name}`; it has: {}",
                plan.sites.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
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
    let chosen = chosen_resources(plan, only)?;
    if chosen.is_empty() {
        bail!("the plan has no resources to drill");
    }
    Ok(order::waves(&chosen)?)
}

struct Drill<'a> {
    ctx: &'a Context,
    plan: &'a Plan,
    store: &'a StateStore,
    shared: Arc<Shared>,
    /// Opened by the provision step: a recovery's first work, part of its RTO.
    repo: OnceLock<Repository>,
    /// The restore point of each resource drilled.
    choice: crate::choice::Choice,
    /// They all come from one restore point.
    single: bool,
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

    /// Forgets a recorded thing that turned out not to be the drill's to remove.
    fn disown(&self, index: usize) {
        let mut record = self.record();
        if !record.torn_down.contains(&index) {
            record.torn_down.push(index);
        }
        let _ = save_record(self.store, &record);
    }

    /// Writes `created` down before it is made; refused once teardown began.
    fn register(&self, created: Created) -> Result<usize> {
        let mut record = self.record();
        if record.phase != Phase::Running {
            bail!("the drill is being torn down");
        }
        record.created.push(created);
        if let Err(e) = save_record(self.store, &record) {
            // Not written down, so not to be made (nor undone).
            record.created.pop();
            return Err(e);
        }
        Ok(record.created.len() - 1)
    }

    fn elapsed_ms(&self) -> u64 {
        self.shared.clock.elapsed().as_millis() as u64
    }

    /// Journals `work` as `step`: started, then finished or failed. Refused once the drill is
    /// being stopped.
    fn step(&self, step: &DrillStep, work: impl FnOnce() -> Result<String>) -> Result<String> {
        use std::sync::atomic::Ordering;
        // Counted before the check, so a signal's teardown that sees none running can start.
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        struct Done<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&self.shared.in_flight);
        self.stopped()?;
        let id = step.id();
        let record = |event, detail: Option<String>| Record {
            step: id.clone(),
            event,
            at: jiff::Timestamp::now().to_string(),
            elapsed_ms: self.elapsed_ms(),
            detail,
            confirmed: None,
        };
        let drill_id = self.record().id.clone();
        // The journal times the report; the work (a teardown above all) goes on without it.
        let journal = |r: Record| {
            if let Err(e) = self.store.append_drill(&drill_id, &r) {
                tracing::warn!("drill journal: {}", output::chain(&e));
            }
        };
        journal(record(Event::Started, None));
        let quiet = self.ctx.global.json || self.ctx.global.quiet;
        if !quiet {
            eprintln!("→ {id}");
        }
        let started = std::time::Instant::now();
        let outcome = work();
        let took = output::millis(started.elapsed().as_millis() as u64);
        match &outcome {
            Ok(detail) => {
                journal(record(Event::Finished, Some(detail.clone())));
                if !self.ctx.global.json {
                    println!("✓ {id} ({took}): {detail}");
                }
            }
            Err(e) => {
                let error = output::chain(e);
                journal(record(Event::Failed, Some(error.clone())));
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
            if self.stopped().is_err() {
                // A signal's teardown has the drill now.
                return;
            }
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
                            let what = if self.declared {
                                "the drill site"
                            } else {
                                "the sandbox"
                            };
                            self.outcome(&name, |o| {
                                o.problems
                                    .push(format!("not restored: {what} did not come up"))
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
                                o.problems
                                    .push(format!("restore failed: {}", output::chain(e)))
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
                    let _guard = locked(&self.shared.teardown);
                    if keep {
                        let mut record = self.record();
                        record.phase = Phase::Kept;
                        let _ = save_record(self.store, &record);
                    } else {
                        let _ = self.step(step, || {
                            let left = tear_down(&self.shared, self.store);
                            if left.is_empty() {
                                Ok("everything the drill created is gone".into())
                            } else {
                                Err(anyhow!("left behind: {}", left.join("; ")))
                            }
                        });
                    }
                    // From here a signal only ends the process: nothing is left to undo.
                    self.shared
                        .finished
                        .store(true, std::sync::atomic::Ordering::SeqCst);
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

    /// The sandbox's folder, the drill site's `provision` commands, the temporary servers,
    /// and the plan with every drilled resource bound at the drill site.
    fn provision(&self) -> Result<String> {
        // First, as a recovery's first work is: the changes step needs it too.
        let _ = self.repo.set(self.ctx.open_repository()?);
        let sandbox = self.record().sandbox.clone();
        let index = self.register(Created::Folder {
            path: sandbox.clone(),
        })?;
        // Others may pass through (a temporary server's account must reach its folder) but
        // not list what is inside.
        if let Err(e) = make_dir(&sandbox, 0o711) {
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
            {
                // Not ours (it was there before): never to be removed.
                self.disown(index);
            }
            return Err(e);
        }
        let mut said = Vec::new();
        if let Some(site) = self.plan.site(&self.site).filter(|_| self.declared)
            && !(site.provision.is_empty() && site.decommission.is_empty())
        {
            self.register(Created::Provisioned {
                site: self.site.clone(),
            })?;
            let env = drill_env(self.plan, &self.record());
            said.push(run_site_commands(
                &self.shared,
                &env,
                &site.provision,
                false,
            )?);
            // What provision set up (mounts, links, servers) is checked as it now is.
            let drilled: Vec<String> = self.record().waves.iter().flatten().cloned().collect();
            isolation::check_drill_site(self.plan, &self.site, drilled.iter())?;
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
                    quiesce: vec![],
                    quiesce_checks: vec![],
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
                .ok_or_else(|| anyhow!("the plan has no resource `{name}`"))?;
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
        let mut secrets = BTreeMap::new();
        if !servers.is_empty() {
            let secrets_dir = sandbox.join("secrets");
            make_dir(&secrets_dir, 0o700)?;
            let started: Vec<Result<(String, String, PathBuf)>> = std::thread::scope(|s| {
                let handles: Vec<_> = servers
                    .iter()
                    .map(|(name, engine, dir)| {
                        let secrets_dir = &secrets_dir;
                        s.spawn(move || self.start_server(name, *engine, dir, secrets_dir))
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
                secrets.insert(name.clone(), secret.clone());
                if let Some(ResourceKind::Postgres(db) | ResourceKind::Mysql(db)) =
                    sandbox_plan.resources.get_mut(&name).map(|r| &mut r.kind)
                {
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
        let mut env = drill_env(&sandbox_plan, &self.record());
        for (name, placement) in &placements {
            if let Placement::Documents(dir) = placement {
                env.push((at_variable(name), dir.display().to_string()));
            }
        }
        for (name, placement) in &placements {
            let mut at = placement.describe(&sandbox_plan, &self.site, name);
            if let Some(secret) = secrets.get(name) {
                at.push_str(&format!(" (password in {})", secret.display()));
            }
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

    /// Writes a server's pid down; `false` (stop it) once the teardown began.
    fn server_spawned(&self, index: usize, pid: u32) -> bool {
        let mut record = self.record();
        if record.phase != Phase::Running {
            return false;
        }
        if let Some(Created::Server { pid: slot, .. }) = record.created.get_mut(index) {
            *slot = Some(pid);
        }
        let _ = save_record(self.store, &record);
        true
    }

    fn items(&self, resource: &str) -> Vec<&ResourcePoint> {
        let Some((_, point)) = self.choice.point_of(resource) else {
            return Vec::new();
        };
        let chosen: Vec<&ResourcePoint> = point
            .resources
            .iter()
            .filter(|r| selects(resource, &r.name))
            .collect();
        with_globals(point, chosen)
    }

    fn restore(&self, resource: &str) -> Result<String> {
        let placement = self.placement(resource)?.clone();
        let sandbox_plan = self.sandbox_plan()?;
        let items = self.items(resource);
        // At a declared site, everything is claimed (and refused if there) before anything,
        // a server's accounts included, is written.
        let mut claims = Vec::with_capacity(items.len());
        if matches!(placement, Placement::Declared) {
            for r in &items {
                claims.push(self.claim_declared(sandbox_plan, resource, r)?);
            }
        }
        let mark = self.mark();
        // At a temporary server of the drill's own or at a declared site, a database server's
        // items go in dependency order (accounts, databases, then grants), as `restore
        // --site` does.
        if matches!(placement, Placement::Server | Placement::Declared)
            && is_server(sandbox_plan, resource)
        {
            let renames: Vec<Vec<(String, String)>> = claims
                .iter()
                .map(|claim| claim.rename.iter().cloned().collect())
                .collect();
            let hows: Vec<AtSite> = (0..items.len())
                .map(|i| match claims.get(i) {
                    Some(claim) => AtSite {
                        replace: false,
                        force: false,
                        rename: &renames[i],
                        jobs: 1,
                        staging: claim.staging.as_deref(),
                        mark: Some(&mark),
                        progress: None,
                    },
                    // A temporary server is the drill's own: its `postgres` database may
                    // be replaced by the captured one.
                    None => AtSite {
                        replace: true,
                        force: false,
                        rename: &[],
                        jobs: 1,
                        staging: None,
                        mark: None,
                        progress: None,
                    },
                })
                .collect();
            let outcomes = restore_server_at_site(
                self.repo()?,
                sandbox_plan,
                &self.site,
                &items,
                &|i| &hows[i],
                &mut |_| None,
            );
            self.stopped()?;
            let mut said = Vec::new();
            for (r, outcome) in items.iter().zip(outcomes) {
                let done = outcome.with_context(|| format!("restoring `{}`", r.name))?;
                for warning in &done.warnings {
                    tracing::warn!("{}: {warning}", r.name);
                }
                said.push(format!("{}: {}", r.name, done.text));
            }
            return Ok(said.join("; "));
        }
        let mut said = Vec::new();
        for (i, r) in items.iter().enumerate() {
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
                    let claim = &claims[i];
                    let rename: Vec<(String, String)> = claim.rename.iter().cloned().collect();
                    let how = AtSite {
                        replace: false,
                        force: false,
                        rename: &rename,
                        jobs: 1,
                        staging: claim.staging.as_deref(),
                        mark: Some(&mark),
                        progress: None,
                    };
                    restore_at_site(self.repo()?, sandbox_plan, &self.site, r, &how)?
                }
                Placement::Folder(_) | Placement::File(_) | Placement::Server => {
                    let how = AtSite {
                        // A temporary server is the drill's own: its `postgres` database may
                        // be replaced by the captured one.
                        replace: matches!(placement, Placement::Server),
                        force: false,
                        rename: &[],
                        jobs: 1,
                        staging: None,
                        mark: None,
                        progress: None,
                    };
                    restore_at_site(self.repo()?, sandbox_plan, &self.site, r, &how)?
                }
            };
            self.stopped()?;
            said.push(format!("{}: {what}", r.name));
        }
        Ok(said.join("; "))
    }

    /// What this drill writes on the databases it makes at a drill site: it drops only those.
    fn mark(&self) -> String {
        format!("lifeboat drill {}", self.record().id)
    }

    /// An error once the drill is being stopped (a signal): no new work begins.
    fn stopped(&self) -> Result<()> {
        if self
            .shared
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            bail!("the drill is being stopped");
        }
        Ok(())
    }

    /// Before restoring `r` into a declared binding: refuses what is already there (a drill
    /// never overwrites) or what a live site keeps, and writes down what the restore will
    /// create.
    fn claim_declared(
        &self,
        sandbox_plan: &Plan,
        resource: &str,
        r: &ResourcePoint,
    ) -> Result<Claim> {
        let spec = sandbox_plan
            .resource(resource)
            .ok_or_else(|| anyhow!("the plan has no resource `{resource}`"))?;
        let claim_path = |path: &Path| -> Result<PathBuf> {
            let real = isolation::real_path(path);
            if let Some(live) = isolation::live_folder_at(self.plan, &real) {
                bail!(
                    "{} is where {live} keeps its data: a drill never writes to a live site",
                    real.display()
                );
            }
            Ok(real)
        };
        match (&spec.kind, spec.binding(&self.site)) {
            (ResourceKind::Files(_), Some(lifeboat_plan::Binding::Path(b))) => {
                match std::fs::symlink_metadata(&b.path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let path = claim_path(&highest_missing(&b.path))?;
                        self.register(Created::Folder { path })?;
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
                        let path = claim_path(&b.path)?;
                        self.register(Created::Contents { path })?;
                    }
                    Ok(_) => bail!("{} is not a folder", b.path.display()),
                    Err(e) => {
                        return Err(e).with_context(|| format!("looking at {}", b.path.display()));
                    }
                }
                Ok(Claim::default())
            }
            (ResourceKind::Sqlite(_), Some(lifeboat_plan::Binding::Path(b))) => {
                for suffix in ["", "-wal", "-shm", "-journal", ".lifeboat-restore"] {
                    let mut side = b.path.clone().into_os_string();
                    side.push(suffix);
                    let side = PathBuf::from(side);
                    if std::fs::symlink_metadata(&side).is_ok() {
                        bail!(
                            "{} exists: a drill never writes over what is at the drill site",
                            side.display()
                        );
                    }
                }
                match b
                    .path
                    .parent()
                    .filter(|p| std::fs::symlink_metadata(p).is_err())
                {
                    Some(parent) => {
                        let path = claim_path(&highest_missing(parent))?;
                        self.register(Created::Folder { path })?
                    }
                    None => {
                        let path = claim_path(&b.path)?;
                        self.register(Created::File { path })?
                    }
                };
                Ok(Claim::default())
            }
            (
                ResourceKind::Postgres(_) | ResourceKind::Mysql(_),
                Some(lifeboat_plan::Binding::Database(b)),
            ) => {
                let Some((_, database)) = r.name.split_once('/') else {
                    // The server's accounts: applied, never removed (the site's decommission
                    // owns the server).
                    return Ok(Claim::default());
                };
                let server = Server::of(&spec.kind, b)?;
                let target = declared_name(&spec.kind, database);
                let exists = match &server {
                    Server::Postgres(s) => s.database_exists(&target)?,
                    Server::Mysql(s) => s.database_exists(&target)?,
                };
                if exists {
                    bail!(
                        "database `{target}` exists on {}: a drill never writes over what is at \
                         the drill site",
                        server.describe()
                    );
                }
                let mut tag = [0u8; 6];
                getrandom::fill(&mut tag).map_err(|e| anyhow!("no randomness: {e}"))?;
                let staging = format!("lifeboat_drill_{}", hex(&tag));
                self.register(Created::Database {
                    resource: resource.to_string(),
                    site: self.site.clone(),
                    server: server.describe().to_string(),
                    name: target.clone(),
                    staging: staging.clone(),
                    mark: self.mark(),
                })?;
                Ok(Claim {
                    staging: Some(staging),
                    rename: (target != database).then(|| (database.to_string(), target)),
                })
            }
            // Documents are applied; the site's decommission undoes them.
            _ => Ok(Claim::default()),
        }
    }

    fn start(&self) -> Result<String> {
        let site = self
            .plan
            .site(&self.site)
            .ok_or_else(|| anyhow!("the plan has no site `{}`", self.site))?;
        run_site_commands(
            &self.shared,
            self.env.get().map_or(&[], |e| e),
            &site.start,
            false,
        )
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
                    let captured = r
                        .name
                        .split_once('/')
                        .map_or(facts.name.as_str(), |(_, d)| d);
                    let database = match placement {
                        Placement::Declared => declared_name(&spec.kind, captured),
                        _ => captured.to_string(),
                    };
                    let Server::Postgres(server) = Server::of(&spec.kind, b)? else {
                        unreachable!("a postgres binding");
                    };
                    let differences = server.verify_database(&database, facts)?;
                    if differences.is_empty() {
                        verified.push(format!(
                            "{}{}: row counts of {} and {} match",
                            r.name,
                            if database == captured {
                                String::new()
                            } else {
                                format!(" (restored as `{database}`)")
                            },
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
            // It ran to its end: what it found is what came back.
            o.compared = true;
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
    /// after the restore point (what the backup leaves out does not count).
    fn changes(&self, live: &str) -> Result<String> {
        let drilled: Vec<String> = self.record().waves.iter().flatten().cloned().collect();
        let repo = self.repo()?;
        let mut said = Vec::new();
        for name in &drilled {
            let Some(spec) = self.plan.resource(name) else {
                continue;
            };
            let measured = match (&spec.kind, spec.binding(live)) {
                (ResourceKind::Files(files), Some(lifeboat_plan::Binding::Path(b))) => {
                    let root = self
                        .choice
                        .point_of(name)
                        .and_then(|(_, p)| p.resource(name))
                        .and_then(|r| r.root);
                    Some(
                        match root {
                            _ if !b.path.is_dir() => {
                                Err(format!("{} is not readable", b.path.display()))
                            }
                            None => Err("not in the restore point".into()),
                            Some(root) => file_changes(repo, root, files, &b.path),
                        }
                        .map(|(n, examples)| ("path", n, examples)),
                    )
                }
                (ResourceKind::Postgres(db), Some(lifeboat_plan::Binding::Database(b))) => Some(
                    self.database_changes(spec, db, name, b)
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

    /// Tables new, gone or with other row counts in each captured database, and every table
    /// of a database that is gone or new since the point (read-only sessions).
    fn database_changes(
        &self,
        spec: &lifeboat_plan::Resource,
        selection: &lifeboat_plan::DatabaseServerResource,
        name: &str,
        binding: &DatabaseBinding,
    ) -> Result<(u64, Vec<String>), String> {
        let Server::Postgres(server) =
            Server::of(&spec.kind, binding).map_err(|e| output::chain(&e))?
        else {
            return Err("not a PostgreSQL server".into());
        };
        let now: Vec<String> = server
            .databases()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|d| selection.protects(d))
            .collect();
        let mut count = 0;
        let mut examples = Vec::new();
        let mut note = |database: &str, changes: Vec<String>| {
            count += changes.len() as u64;
            for change in changes {
                if examples.len() < 5 {
                    examples.push(format!("{database}: {change}"));
                }
            }
        };
        let mut captured = Vec::new();
        for r in self.items(name) {
            let Some(facts) = &r.database else { continue };
            let database = r
                .name
                .split_once('/')
                .map_or(facts.name.as_str(), |(_, d)| d);
            captured.push(database.to_string());
            let before: Vec<(String, u64)> = facts
                .tables
                .iter()
                .map(|t| (t.table.clone(), t.rows))
                .collect();
            let after: Vec<(String, u64)> = if now.iter().any(|d| d == database) {
                server
                    .table_rows(database)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|t| (t.table, t.rows))
                    .collect()
            } else {
                Vec::new()
            };
            note(database, report::table_changes(&before, &after));
        }
        for database in now.iter().filter(|d| !captured.contains(d)) {
            let after: Vec<(String, u64)> = server
                .table_rows(database)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|t| (t.table, t.rows))
                .collect();
            note(
                &format!("{database} (new since the point)"),
                report::table_changes(&[], &after),
            );
        }
        Ok((count, examples))
    }
}

/// Paths of a live tree that differ from the restore point, among those the backup captures.
fn file_changes(
    repo: &Repository,
    root: lifeboat_format::Id,
    files: &lifeboat_plan::FilesResource,
    live: &Path,
) -> Result<(u64, Vec<String>), String> {
    let filter = lifeboat_files::PathFilter::new(&lifeboat_files::BackupOptions {
        include: files.include.clone(),
        exclude: files.exclude.clone(),
    })
    .map_err(|e| e.to_string())?;
    let differences: Vec<String> = lifeboat_files::verify(repo, root, None, live)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|d| {
            let rel = Path::new(&d.path);
            // Gone from the live tree: it was captured, so it counts.
            let here = std::fs::symlink_metadata(live.join(rel));
            here.is_err() || filter.captures(rel, here.is_ok_and(|m| m.is_dir()))
        })
        .map(|d| d.path)
        .collect();
    let examples = differences.iter().take(5).cloned().collect();
    Ok((differences.len() as u64, examples))
}

/// What restoring one item into a declared binding needs.
#[derive(Default)]
struct Claim {
    /// The PostgreSQL staging database's name.
    staging: Option<String>,
    /// The database is restored under another name.
    rename: Option<(String, String)>,
}

/// The name a captured database gets at a declared drill site: PostgreSQL's own `postgres`
/// database goes next to the server's, which every server has.
fn declared_name(kind: &ResourceKind, database: &str) -> String {
    match kind {
        ResourceKind::Postgres(_) if database == "postgres" => "postgres_lifeboat_drill".into(),
        _ => database.to_string(),
    }
}

/// The topmost ancestor of `path` (or `path` itself) that does not exist: what creating
/// `path` creates.
fn highest_missing(path: &Path) -> PathBuf {
    let mut top = path.to_path_buf();
    while let Some(parent) = top.parent() {
        // A link (even a dangling one) is something that exists: never claimed.
        if parent.as_os_str().is_empty() || std::fs::symlink_metadata(parent).is_ok() {
            break;
        }
        top = parent.to_path_buf();
    }
    top
}

/// Where a document is kept: the resource's folder, or a folder per discovered item
/// (`workflows/<item>`), the item encoded so that it is always one plain folder name.
fn document_folder(dir: &Path, name: &str) -> PathBuf {
    match name.split_once('/') {
        Some((_, item)) => dir.join(lifeboat_services::item_folder_name(item)),
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
        &serde_json::to_vec_pretty(&report).context("writing the report")?,
    )?;
    let mut trend: Vec<TrendPoint> = past_reports(store, plan)
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

/// Drills whose record says they are not torn down, with their phase; none while a drill of
/// the plan runs (it holds the drill lock, and its own record is unfinished by design).
pub(crate) fn unfinished(store: &StateStore) -> Vec<(String, Phase)> {
    if store.drills().is_empty() {
        return Vec::new();
    }
    let Ok(_lock) = store.lock_drills() else {
        return Vec::new();
    };
    store
        .drills()
        .into_iter()
        .filter_map(|id| {
            let record = load_record(store, &id).ok()?;
            record.unfinished().then_some((id, record.phase))
        })
        .collect()
}

/// Every report of `plan`'s drills, oldest first (a state folder shared by plans holds
/// others'); unreadable ones are skipped.
pub(crate) fn past_reports(store: &StateStore, plan: &Plan) -> Vec<DrillReport> {
    store
        .drills()
        .iter()
        .filter_map(|id| store.read_drill_file(id, "report.json").ok())
        .filter_map(|bytes| serde_json::from_slice::<DrillReport>(&bytes).ok())
        .filter(|r| r.plan == plan.name())
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

/// One alert for a failed drill: the first failed step and the site, what went wrong, and
/// the command that runs the drill again (a drill is not resumed: it starts afresh).
fn alert(ctx: &Context, plan: &Plan, report: &DrillReport) {
    if plan.notify.is_empty() {
        return;
    }
    let step = report
        .steps
        .iter()
        .find(|s| s.status == lifeboat_drill::report::StepStatus::Failed)
        .map(|s| s.step.clone());
    let again = ctx.command_line(&["drill"]);
    let text = format!(
        "lifeboat: drill of `{}` FAILED{}: {}; run it again with: {again}",
        plan.name(),
        step.as_deref()
            .map(|s| format!(" at step `{s}` (site `{}`)", report.site))
            .unwrap_or_default(),
        report.problems.first().map_or("", String::as_str)
    );
    let alert = serde_json::json!({
        "event": "drill_failed", "plan": plan.name(), "drill": report.drill,
        "step": step, "site": report.site, "again": again,
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
            "  kept for inspection in {}; `lifeboat drill --cleanup` removes it",
            record.sandbox.display()
        );
        for r in &report.resources {
            if let Some(at) = &r.restored_to {
                println!("    `{}`: {at}", r.resource);
            }
        }
    }
    println!(
        "  report: {}",
        store.drill_dir(&report.drill).join("report.html").display()
    );
}

/// Tears down drills a kill left half-done, and reports drills killed after their teardown.
/// A kept sandbox stays, unless it holds the declared drill site this drill needs.
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
        let unreported = store.read_drill_file(&id, "report.json").is_err();
        if !record.unfinished() && !unreported {
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
        if !ctx.global.json && record.unfinished() {
            eprintln!("drill {id} was interrupted: finishing its teardown first");
        }
        let left = clean(plan, store, record)?;
        if !left.is_empty() {
            bail!(
                "drill {id} left behind what cannot be removed: {}; fix that, then \
                 `lifeboat drill --cleanup`",
                left.join("; ")
            );
        }
    }
    Ok(())
}

/// Tears one drill down (as far as it is not yet); writes its report when it never got one,
/// or when a kept drill's teardown changes what it says. Returns what is left behind.
fn clean(plan: &Plan, store: &StateStore, record: DrillRecord) -> Result<Vec<String>> {
    let id = record.id.clone();
    let was_kept = record.phase == Phase::Kept;
    let shared = Shared::new(plan, record);
    let left = tear_down(&shared, store);
    let record = locked(&shared.record).clone();
    let earlier: Option<DrillReport> = store
        .read_drill_file(&id, "report.json")
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match earlier {
        None => {
            write_report(plan, store, &record, &BTreeMap::new(), left.clone(), true)?;
        }
        Some(report) if was_kept => {
            let outcomes = report
                .resources
                .into_iter()
                .map(|o| (o.resource.clone(), o))
                .collect();
            write_report(
                plan,
                store,
                &record,
                &outcomes,
                left.clone(),
                report.interrupted,
            )?;
        }
        Some(_) => {}
    }
    Ok(left)
}

fn cleanup(ctx: &Context, plan: &Plan, store: &StateStore) -> Result<Exit> {
    let mut cleaned = Vec::new();
    let mut left_behind = Vec::new();
    for id in store.drills() {
        let record = match load_record(store, &id) {
            Ok(record) => record,
            Err(e) => {
                let problem = format!("drill {id}: {}", output::chain(&e));
                if !ctx.global.json {
                    println!("{problem}");
                }
                left_behind.push(problem);
                continue;
            }
        };
        let unreported = store.read_drill_file(&id, "report.json").is_err();
        if !record.unfinished() && !unreported {
            continue;
        }
        let things = record.teardown_order().len();
        let left = clean(plan, store, record)?;
        if !ctx.global.json {
            if left.is_empty() {
                println!(
                    "drill {id}: torn down ({} it created removed)",
                    report::plural(things as u64, "thing")
                );
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
    } else if cleaned.is_empty() && left_behind.is_empty() {
        println!("no drill needs a teardown");
    }
    Ok(if left_behind.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// One line of `--history`: a report, or a drill that never got one (killed; `--cleanup`).
fn history(ctx: &Context, plan: &Plan, store: &StateStore) -> Result<Exit> {
    let mut rows = Vec::new();
    for id in store.drills() {
        let report: Option<DrillReport> = store
            .read_drill_file(&id, "report.json")
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if report.as_ref().is_some_and(|r| r.plan != plan.name()) {
            continue;
        }
        let record = load_record(store, &id).ok();
        let unfinished = record.as_ref().is_some_and(|r| r.unfinished());
        let verdict = match (&report, &record) {
            (_, Some(r)) if r.phase == Phase::Kept => "kept (--cleanup removes it)",
            (None, _) | (_, Some(_)) if unfinished => "interrupted (--cleanup tears it down)",
            (Some(r), _) if r.interrupted => "interrupted",
            (Some(r), _) if r.passed => "passed",
            (Some(_), _) => "FAILED",
            (None, _) => "no report",
        };
        rows.push(serde_json::json!({
            "drill": id,
            "site": report.as_ref().map(|r| r.site.clone()).or(record.as_ref().map(|r| r.site.clone())),
            "declared_site": report.as_ref().map(|r| r.declared_site).or(record.as_ref().map(|r| r.declared_site)),
            "started": report.as_ref().map(|r| r.started).or(record.as_ref().map(|r| r.started)),
            "only": report.as_ref().map(|r| r.only.clone()).unwrap_or_default(),
            "achieved_rto_ms": report.as_ref().and_then(|r| r.achieved_rto_ms),
            "achieved_rpo_ms": report.as_ref().map(|r| r.achieved_rpo_ms),
            "rto_objective_ms": report.as_ref().map(|r| r.rto_objective_ms),
            "rpo_objective_ms": report.as_ref().map(|r| r.rpo_objective_ms),
            "passed": report.as_ref().is_some_and(|r| r.passed),
            "verdict": verdict,
        }));
    }
    if ctx.global.json {
        output::json(&serde_json::json!({ "plan": plan.name(), "drills": rows }));
        return Ok(Exit::Success);
    }
    if rows.is_empty() {
        println!("no drills of `{}` yet: run `lifeboat drill`", plan.name());
        return Ok(Exit::Success);
    }
    println!(
        "{:<28} {:<12} {:>12} {:>12}  verdict",
        "drill", "site", "RTO", "RPO"
    );
    for row in &rows {
        println!(
            "{:<28} {:<12} {:>12} {:>12}  {}",
            row["drill"].as_str().unwrap_or("?"),
            match (row["site"].as_str(), row["declared_site"].as_bool()) {
                (Some(site), Some(true)) => site.to_string(),
                (Some(_), _) => "(sandbox)".to_string(),
                _ => "?".to_string(),
            },
            match (&row["achieved_rto_ms"], &row["achieved_rpo_ms"]) {
                (serde_json::Value::Number(ms), _) => output::millis(ms.as_u64().unwrap_or(0)),
                (_, serde_json::Value::Null) => "-".into(),
                _ => "not achieved".into(),
            },
            row["achieved_rpo_ms"]
                .as_u64()
                .map_or_else(|| "-".into(), output::millis),
            row["verdict"].as_str().unwrap_or("?"),
        );
        if let Some(only) = row["only"].as_array().filter(|o| !o.is_empty()) {
            let names: Vec<&str> = only.iter().filter_map(|n| n.as_str()).collect();
            println!("{:<28} (only {})", "", names.join(", "));
        }
    }
    Ok(Exit::Success)
}
