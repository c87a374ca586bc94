//! The plan's state on disk: which site is active under which epoch (`state.json`), and one
//! folder per run (`runs/<id>/`: `run.json`, `journal.jsonl`, `report.json`). Writes are
//! atomic (temporary file, fsync, rename) or appended and synced, so a kill at any instant
//! leaves a state a resumed run can read. One run at a time: `state.lock` is held (`flock`)
//! for as long as a run executes.
//!
//! Drills keep their own folders beside the runs (`drills/<id>/`: `drill.json`, the record of
//! what the drill created; `journal.jsonl`; `report.json`, `report.html`), under their own
//! lock (`drills/drill.lock`): a drill never holds up a failover.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use lifeboat_plan::Plan;
use lifeboat_runbook::journal::{self, Record};
use lifeboat_runbook::state::SiteState;

pub struct StateStore {
    dir: PathBuf,
}

/// Held while a run executes; released when dropped (or when the process dies).
pub struct RunLock {
    _file: File,
}

impl StateStore {
    pub fn of(plan: &Plan) -> Self {
        StateStore {
            dir: plan.state_dir(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The saved state, or the plan's first one (the primary serves, epoch 1).
    pub fn load(&self, plan: &Plan) -> Result<SiteState> {
        let path = self.state_file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(SiteState::initial(plan.primary_site().0))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, state: &SiteState) -> Result<()> {
        let json = serde_json::to_vec_pretty(state).expect("state serialises");
        write_atomic(&self.state_file(), &json)
    }

    /// Takes the run lock, or says who holds it.
    pub fn lock(&self) -> Result<RunLock> {
        lock_file(&self.dir, "state.lock", "another lifeboat run")
    }

    /// Takes the drill lock: one drill (or drill clean-up) of the plan at a time.
    pub fn lock_drills(&self) -> Result<RunLock> {
        lock_file(&self.dir.join("drills"), "drill.lock", "another drill")
    }

    pub fn drill_dir(&self, id: &str) -> PathBuf {
        self.dir.join("drills").join(id)
    }

    pub fn write_drill_file(&self, id: &str, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.drill_dir(id).join(name), bytes)
    }

    pub fn read_drill_file(&self, id: &str, name: &str) -> Result<Vec<u8>> {
        let path = self.drill_dir(id).join(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    pub fn append_drill(&self, id: &str, record: &Record) -> Result<()> {
        append_synced(&self.drill_dir(id).join("journal.jsonl"), record)
    }

    pub fn drill_journal(&self, id: &str) -> Result<Vec<Record>> {
        read_journal(&self.drill_dir(id).join("journal.jsonl"))
    }

    /// Drill ids, oldest first.
    pub fn drills(&self) -> Vec<String> {
        sorted_folders(&self.dir.join("drills"))
    }
}

fn lock_file(dir: &Path, name: &str, holder: &str) -> Result<RunLock> {
    private_dir(dir).with_context(|| format!("creating the state folder {}", dir.display()))?;
    let path = dir.join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => bail!(
            "{holder} of this plan is executing (it holds {})",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

impl StateStore {
    /// Writes a file of the state folder atomically (the witness's `watch.json`).
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join(name), bytes)
    }

    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(name)).ok()
    }

    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.dir.join("runs").join(id)
    }

    /// Writes a file of a run atomically.
    pub fn write_run_file(&self, id: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.run_dir(id);
        private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(&dir.join(name), bytes)
    }

    pub fn read_run_file(&self, id: &str, name: &str) -> Result<Vec<u8>> {
        let path = self.run_dir(id).join(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Appends a record to a run's journal and syncs it before the step goes on.
    pub fn append(&self, id: &str, record: &Record) -> Result<()> {
        append_synced(&self.run_dir(id).join("journal.jsonl"), record)
    }

    pub fn journal(&self, id: &str) -> Result<Vec<Record>> {
        read_journal(&self.run_dir(id).join("journal.jsonl"))
    }

    /// Run ids, oldest first (ids sort by time).
    pub fn runs(&self) -> Vec<String> {
        sorted_folders(&self.dir.join("runs"))
    }
}

fn append_synced(path: &Path, record: &Record) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(record.line().as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("writing {}", path.display()))
}

fn read_journal(path: &Path) -> Result<Vec<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    journal::parse(&text).with_context(|| format!("{} is damaged", path.display()))
}

/// Creates `dir` and its missing parents readable by the owner only, whatever the umask.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // A umask may have taken bits the owner needs.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The names of the folders in `dir`, sorted (ids sort by time).
fn sorted_folders(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("{} is not a file path", path.display());
    };
    private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    // Exclusive, never through a link, and private whatever the umask: state files name
    // hosts and runs.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    File::open(dir).and_then(|d| d.sync_all()).ok();
    Ok(())
}
