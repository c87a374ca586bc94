//! Undoing what a drill created, from its record: after the last step, on a signal, or in a
//! later process (`--cleanup`, or the next drill) after a kill. Every undo is safe to repeat
//! and acts only on what the record names; one that cannot act (a binding that now names
//! another server, a site that is no longer a drill site) leaves the thing and says so.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use lifeboat_drill::record::{Created, DrillRecord, Engine, Phase};
use lifeboat_drill::report::ResourceOutcome;
use lifeboat_plan::{Plan, Role};
use lifeboat_runbook::journal::{Event, Record};
use lifeboat_services::{TempEngine, TempServer};

use super::isolation::{live_folder_at, real_path};
use crate::commands::backup::Server;
use crate::commands::runbook::command_env;
use crate::output;
use crate::sitestate::StateStore;

/// What the drill and its signal handler share.
pub(super) struct Shared {
    pub plan: Plan,
    pub record: Mutex<DrillRecord>,
    /// Temporary servers this process started (so it can reap them).
    pub servers: Mutex<Vec<TempServer>>,
    pub outcomes: Mutex<BTreeMap<String, ResourceOutcome>>,
    /// Process groups of the drill site's commands started by this process (a `start` may
    /// leave daemons in its group): stopped when the drill is torn down.
    pub groups: Mutex<Vec<u32>>,
    /// A signal came: no step, command or restore begins any more.
    pub stopping: AtomicBool,
    /// Steps running now; a signal's teardown waits for them (they stop early).
    pub in_flight: AtomicUsize,
    /// What the last teardown could not remove.
    pub left: Mutex<Vec<String>>,
    /// Held by whoever tears down.
    pub teardown: Mutex<()>,
    /// The drill's own teardown is over: a signal now only ends the process.
    pub finished: AtomicBool,
    /// The drill's start on a clock that never steps back: step timings.
    pub clock: std::time::Instant,
}

impl Shared {
    pub fn new(plan: &Plan, record: DrillRecord) -> Self {
        Shared {
            plan: plan.clone(),
            record: Mutex::new(record),
            servers: Mutex::new(Vec::new()),
            outcomes: Mutex::new(BTreeMap::new()),
            groups: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            left: Mutex::new(Vec::new()),
            teardown: Mutex::new(()),
            finished: AtomicBool::new(false),
            clock: std::time::Instant::now(),
        }
    }

    /// The same, for a drill that began at `clock`.
    pub fn started_at(plan: &Plan, record: DrillRecord, clock: std::time::Instant) -> Self {
        Shared {
            clock,
            ..Shared::new(plan, record)
        }
    }
}

pub(super) fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn save_record(store: &StateStore, record: &DrillRecord) -> Result<()> {
    store.write_drill_file(
        &record.id,
        "drill.json",
        &serde_json::to_vec_pretty(record).context("writing the drill's record")?,
    )
}

pub(super) fn load_record(store: &StateStore, id: &str) -> Result<DrillRecord> {
    let bytes = store.read_drill_file(id, "drill.json")?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is damaged",
            store.drill_dir(id).join("drill.json").display()
        )
    })
}

/// The environment of the drill site's commands.
pub(super) fn drill_env(plan: &Plan, record: &DrillRecord) -> Vec<(String, String)> {
    command_env(
        plan,
        &record.site,
        &[
            ("LIFEBOAT_RUN", record.id.clone()),
            ("LIFEBOAT_KIND", "drill".to_string()),
            ("LIFEBOAT_POINT", record.point.clone()),
            ("LIFEBOAT_SANDBOX", record.sandbox.display().to_string()),
        ],
    )
}

/// How long a command's process group has to end after SIGTERM before it is killed.
const COMMAND_GRACE: Duration = Duration::from_secs(5);

/// Runs the drill site's `commands` one by one, each in a process group of its own that the
/// teardown stops (with whatever it left running). `teardown`: these are the teardown's own
/// (`decommission`), which run also when the drill is being stopped.
pub(super) fn run_site_commands(
    shared: &Shared,
    env: &[(String, String)],
    commands: &[lifeboat_plan::Command],
    teardown: bool,
) -> Result<String> {
    if commands.is_empty() {
        return Ok("nothing to run".into());
    }
    let plan = &shared.plan;
    let mut said = Vec::new();
    for command in commands {
        if !teardown && shared.stopping.load(Ordering::SeqCst) {
            bail!("the drill is being stopped");
        }
        let mut group = |pid: Option<u32>| {
            if let Some(pid) = pid {
                let mut groups = locked(&shared.groups);
                groups.push(pid);
                // Started just as a signal came: it must not outlive the drill.
                if !teardown && shared.stopping.load(Ordering::SeqCst) {
                    drop(groups);
                    lifeboat_services::stop_group(pid, COMMAND_GRACE);
                }
            }
        };
        let out = lifeboat_services::run_command_in_group(
            command.argv(),
            plan.plan_dir(),
            env,
            &mut group,
        )?;
        said.push(if out.is_empty() {
            format!("`{}` ok", command.argv().join(" "))
        } else {
            format!("`{}`: {out}", command.argv().join(" "))
        });
    }
    Ok(said.join("; "))
}

/// Stops every process group the drill site's commands started, and what is in them.
pub(super) fn stop_groups(shared: &Shared) {
    let groups: Vec<u32> = std::mem::take(&mut *locked(&shared.groups));
    std::thread::scope(|s| {
        for group in groups {
            s.spawn(move || lifeboat_services::stop_group(group, COMMAND_GRACE));
        }
    });
}

/// Undoes, newest first, everything the record names that is not undone yet; keeps going
/// past a failure. Returns what is left behind (also kept in `shared.left`).
pub(super) fn tear_down(shared: &Shared, store: &StateStore) -> Vec<String> {
    // Daemons a `start` left running go first: they use what is removed next.
    stop_groups(shared);
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
    let mut undone = Vec::new();
    for (index, created) in order {
        match undo(shared, &created) {
            Ok(()) => {
                let mut record = locked(&shared.record);
                record.torn_down.push(index);
                let _ = save_record(store, &record);
                undone.push(created);
            }
            Err(e) => left.push(format!("{}: {}", created.describe(), output::chain(&e))),
        }
    }
    // A restore still running while a signal tore down may have written again: once more
    // for what this teardown removed.
    for created in &undone {
        if let Created::Folder { path } | Created::Contents { path } = created
            && path.exists()
        {
            let again = match created {
                Created::Folder { .. } => remove_tree(path),
                _ => empty_folder(path),
            };
            if let Err(e) = again {
                left.push(format!("{}: {}", created.describe(), output::chain(&e)));
            }
        }
    }
    let mut record = locked(&shared.record);
    if left.is_empty() {
        record.phase = Phase::Done;
    }
    let _ = save_record(store, &record);
    *locked(&shared.left) = left.clone();
    left
}

fn undo(shared: &Shared, created: &Created) -> Result<()> {
    let plan = &shared.plan;
    if let Created::Folder { path } | Created::Contents { path } | Created::File { path } = created
    {
        still_ours(plan, path)?;
    }
    match created {
        Created::Folder { path } => remove_tree(path),
        Created::Contents { path } => empty_folder(path),
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
            mark,
            ..
        } => {
            let spec = plan
                .resource(resource)
                .ok_or_else(|| anyhow!("the plan has no resource `{resource}` any more"))?;
            let binding = match spec.binding(site) {
                Some(lifeboat_plan::Binding::Database(b)) => b,
                _ => bail!("`{resource}` has no database binding at `{site}` any more"),
            };
            // Only what carries this drill's mark is dropped, wherever the binding points now.
            match Server::of(&spec.kind, binding)? {
                Server::Postgres(s) => {
                    s.drop_marked(staging, mark)?;
                    s.drop_marked(name, mark)?;
                }
                Server::Mysql(s) => {
                    s.drop_marked(name, mark)?;
                }
            }
            Ok(())
        }
        Created::File { path } => {
            for suffix in ["", "-wal", "-shm", "-journal", ".lifeboat-restore"] {
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
            if spec.role != Role::Drill {
                bail!(
                    "site `{site}` is no longer a drill site (its role is \"{}\"): decommission \
                     it by hand",
                    spec.role.as_str()
                );
            }
            let record = locked(&shared.record).clone();
            run_site_commands(shared, &drill_env(plan, &record), &spec.decommission, true)
                .map(|_| ())
        }
    }
}

/// A path recorded (as its real path) is still the drill's to remove: no symlink has come
/// to lead it elsewhere, and no live site keeps data there now.
fn still_ours(plan: &Plan, path: &Path) -> Result<()> {
    let real = real_path(path);
    if real != path {
        bail!(
            "{} now leads to {}: not removed; remove it by hand if it is the drill's",
            path.display(),
            real.display()
        );
    }
    if let Some(live) = live_folder_at(plan, path) {
        bail!("{live} is there now: not removed");
    }
    Ok(())
}

/// Removes what is in a folder, keeping the folder.
fn empty_folder(path: &Path) -> Result<()> {
    match std::fs::read_dir(path) {
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
    }
}

/// Removes a folder and everything in it, also read-only folders a restore made; tries a few
/// times, as a set-up program (initdb) cut short may still be writing into it.
pub(super) fn remove_tree(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut attempt = 0;
    loop {
        let last = match std::fs::remove_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => e,
        };
        attempt += 1;
        if attempt == 10 {
            return Err(last).with_context(|| format!("removing {}", path.display()));
        }
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        if attempt > 1 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Journals the teardown done by a signal, so the report shows it.
fn journal_teardown(
    store: &StateStore,
    record: &DrillRecord,
    event: Event,
    detail: Option<String>,
) {
    let elapsed_ms = jiff::Timestamp::now()
        .duration_since(record.started)
        .as_millis()
        .max(0) as u64;
    let _ = store.append_drill(
        &record.id,
        &Record {
            step: "teardown".into(),
            event,
            at: jiff::Timestamp::now().to_string(),
            elapsed_ms,
            detail,
            confirmed: None,
        },
    );
}

/// How long a signal's teardown waits for the steps under way to stop.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(60);

/// SIGINT, SIGTERM or SIGHUP while the drill runs: stop the site's commands, tear down, write
/// the report, exit 130. After the drill's own teardown, a signal just ends the process.
pub(super) fn on_signal(shared: std::sync::Arc<Shared>, json: bool) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handler")?;
    std::thread::spawn(move || {
        let Some(signal) = signals.forever().next() else {
            return;
        };
        if shared.finished.load(Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("lifeboat: signal {signal}: stopping the drill and tearing it down");
        // Nothing new begins; what runs is cut short (its children stopped) and waited for,
        // so that nothing is made after the teardown.
        shared.stopping.store(true, Ordering::SeqCst);
        lifeboat_services::stop_children();
        // A SQLite file being restored into a declared drill site is not in the record.
        lifeboat_services::remove_staged();
        stop_groups(&shared);
        let deadline = std::time::Instant::now() + IN_FLIGHT_GRACE;
        while shared.in_flight.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            lifeboat_services::stop_children();
            std::thread::sleep(Duration::from_millis(50));
        }
        let store = StateStore::of(&shared.plan);
        let _guard = locked(&shared.teardown);
        let record = locked(&shared.record).clone();
        journal_teardown(&store, &record, Event::Started, None);
        let left = tear_down(&shared, &store);
        journal_teardown(
            &store,
            &record,
            if left.is_empty() {
                Event::Finished
            } else {
                Event::Failed
            },
            Some(if left.is_empty() {
                "torn down after a signal".into()
            } else {
                format!("left behind: {}", left.join("; "))
            }),
        );
        let record = locked(&shared.record).clone();
        let outcomes = locked(&shared.outcomes).clone();
        let report =
            super::write_report(&shared.plan, &store, &record, &outcomes, left.clone(), true);
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
    });
    Ok(())
}
