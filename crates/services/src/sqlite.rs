//! SQLite databases (`kind = "sqlite"`): a consistent online copy made with SQLite's backup
//! API into a temporary file (in `TMPDIR`, its room checked first), stored as a document;
//! restored next to the target under a staging name, checked with `PRAGMA integrity_check`,
//! given the replaced file's owner, group and mode, then renamed into place, never while
//! another process holds the old file open unless forced.

use std::collections::HashSet;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use lifeboat_repository::{RepoWriter, Repository};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::document::{Document, document_chunks, store};
use crate::staging::{Staged, StagedDir, random_hex, remove_stale_dirs};
use crate::text::{Newlines, escape_untrusted};
use crate::{Result, ServiceError};

fn sqlite_err(path: &Path, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Sqlite {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A capture's temporary folder in `TMPDIR`: `lifeboat-sqlite-<128 random bits in hex>`.
const TEMP_PREFIX: &str = "lifeboat-sqlite-";

/// Pages copied per step of the online backup of a rollback-journal database. The read lock
/// is let go between steps, so a writer waits about one step, not the whole copy.
const STEP_PAGES: i32 = 256;
/// The pause between steps, in which a waiting writer takes its lock.
const STEP_PAUSE: Duration = Duration::from_millis(5);
/// A commit by another connection between steps restarts the copy (so it stays one
/// snapshot). After this many restarts the file is copied under one read lock instead:
/// writers then wait for that copy, less long than for the backup API in one step.
const MAX_RESTARTS: u32 = 3;
/// How long the copy may find the database locked (a writer committing) before giving up.
const LOCKED_PATIENCE: Duration = Duration::from_secs(60);

/// Captures the database at `path`: an online copy with SQLite's backup API into a
/// temporary file in `std::env::temp_dir()` (`TMPDIR`), then stored. A WAL database is
/// copied in one read transaction (its writers are not stalled); a rollback-journal one in
/// steps, writers going on between them (see `online_copy`).
pub fn capture_sqlite(writer: &RepoWriter<'_>, path: &Path) -> Result<Document> {
    let started = SystemTime::now();
    if !path.is_file() {
        return Err(sqlite_err(path, "no such database file"));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_err(path, e))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| sqlite_err(path, e))?;
    let (mode, size): (String, u64) = conn
        .query_row(
            "SELECT journal_mode, page_size * page_count FROM pragma_journal_mode, \
             pragma_page_size, pragma_page_count",
            [],
            |row| Ok((row.get(0)?, row.get::<_, i64>(1)?.max(0) as u64)),
        )
        .map_err(|e| sqlite_err(path, e))?;
    let wal = mode.eq_ignore_ascii_case("wal");
    let base = std::env::temp_dir();
    check_room(&base, size, path)?;
    // Copies a killed capture left here (its folder no longer locked) go first.
    remove_stale_dirs(&base, TEMP_PREFIX, started);
    let dir = StagedDir::create(&base, TEMP_PREFIX).map_err(|e| {
        ServiceError::Io(format!(
            "temporary folder {} (TMPDIR) for the copy of {}: {e}",
            base.display(),
            path.display()
        ))
    })?;
    let copy = dir.path().join("copy.sqlite");
    online_copy(&conn, path, &copy, wal).map_err(|e| {
        ServiceError::Io(format!(
            "copying {} into the temporary folder {} (TMPDIR; about {} needed): {e}",
            path.display(),
            base.display(),
            human(size)
        ))
    })?;
    drop(conn);
    // The copy's pages are the source's, its header included; a WAL database's copy is
    // marked WAL (bytes 18-19) so it comes back in WAL mode, whatever the copy did.
    if wal {
        set_format_versions(&copy, WAL).map_err(|e| sqlite_err(&copy, e))?;
    }
    let mut file = std::fs::File::open(&copy).map_err(|e| sqlite_err(&copy, e))?;
    store(writer, "database.sqlite", &mut file)
}

/// Refuses, naming the folder and the room needed, when `dir` lacks room for a copy of
/// `size` bytes of `source` (and a little more: the copy's own journal and rounding).
fn check_room(dir: &Path, size: u64, source: &Path) -> Result<()> {
    let needed = size + size / 64 + (1 << 20);
    let free = match rustix::fs::statvfs(dir) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(e) => {
            return Err(ServiceError::Io(format!(
                "temporary folder {} (TMPDIR) for the copy of {}: {e}",
                dir.display(),
                source.display()
            )));
        }
    };
    if free < needed {
        return Err(ServiceError::Io(format!(
            "the temporary folder {} (TMPDIR) has {} free; the copy of {} needs about {}: \
             free some room there or set TMPDIR to a folder with room",
            dir.display(),
            human(free),
            source.display(),
            human(needed)
        )));
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Copies the database at `path`, which `source` has open, into a new file `copy`: one
/// snapshot of it, page for page (the header's page size, reserved bytes, auto-vacuum, text
/// encoding, user version and application id come along unchanged).
///
/// A WAL database: the backup API in one step, one read transaction, which never stalls its
/// writers. A rollback-journal one: the backup API in steps, writers committing between
/// them; when their commits keep restarting it, the file itself is copied while a read
/// transaction holds its lock (`locked_file_copy`).
fn online_copy(source: &Connection, path: &Path, copy: &Path, wal: bool) -> Result<Copied> {
    let at_source = |e: rusqlite::Error| sqlite_err(path, e);
    let mut dest = Connection::open(copy).map_err(|e| sqlite_err(copy, e))?;
    // A scratch file: no journal, no syncs.
    dest.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF")
        .map_err(|e| sqlite_err(copy, e))?;
    let backup = Backup::new(source, &mut dest).map_err(at_source)?;
    let pages = if wal { -1 } else { STEP_PAGES };
    let mut restarts = 0;
    let mut copied = 0i64;
    let mut locked_since: Option<Instant> = None;
    loop {
        match backup.step(pages).map_err(at_source)? {
            StepResult::Done => return Ok(Copied::Backup { restarts }),
            StepResult::More => {
                locked_since = None;
                let progress = backup.progress();
                let now = i64::from(progress.pagecount) - i64::from(progress.remaining);
                // Fewer pages copied than before: a commit by another connection restarted
                // the copy from its first page.
                if now <= copied {
                    restarts += 1;
                    if restarts >= MAX_RESTARTS {
                        break;
                    }
                }
                copied = now;
                std::thread::sleep(STEP_PAUSE);
            }
            StepResult::Busy | StepResult::Locked => {
                let since = *locked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > LOCKED_PATIENCE {
                    return Err(sqlite_err(
                        path,
                        format!(
                            "the database stayed locked for {} s",
                            LOCKED_PATIENCE.as_secs()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // A future result: go on stepping.
            _ => std::thread::sleep(STEP_PAUSE),
        }
    }
    drop(backup);
    drop(dest);
    tracing::debug!(path = %path.display(), restarts, "written meanwhile: copied under one read lock");
    locked_file_copy(source, path, copy).map(|()| Copied::UnderOneLock)
}

/// How `online_copy` made its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copied {
    /// With the backup API, after that many restarts.
    Backup { restarts: u32 },
    /// As a file, under one read lock.
    UnderOneLock,
}

/// Copies the file at `path` into `copy` while `source` holds a read transaction, so no
/// writer can commit meanwhile: a consistent copy of a rollback-journal database, as SQLite
/// describes a copy by an external tool. Writers wait for the whole copy, which the kernel
/// makes (`copy_file_range`; blocks shared where the file system can), faster than the backup
/// API's page by page.
fn locked_file_copy(source: &Connection, path: &Path, copy: &Path) -> Result<()> {
    let at_source = |e: rusqlite::Error| sqlite_err(path, e);
    source.execute_batch("BEGIN").map_err(at_source)?;
    // The first read takes the shared lock, kept until the transaction ends.
    let copied = source
        .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(at_source)
        .and_then(|()| {
            let mut from = std::fs::File::open(path).map_err(|e| sqlite_err(path, e))?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(copy)
                .map_err(|e| sqlite_err(copy, e))?;
            std::io::copy(&mut from, &mut to).map_err(|e| sqlite_err(copy, e))?;
            Ok(())
        });
    let ended = source.execute_batch("COMMIT").map_err(at_source);
    copied.and(ended)
}

/// The header's file format write and read versions (bytes 18 and 19): 1 for a rollback
/// journal, 2 for WAL (SQLite's file format, §1.3.3).
const WAL: [u8; 2] = [2, 2];
const ROLLBACK: [u8; 2] = [1, 1];

fn format_versions(path: &Path) -> std::io::Result<[u8; 2]> {
    use std::os::unix::fs::FileExt;
    let mut versions = [0u8; 2];
    std::fs::File::open(path)?.read_exact_at(&mut versions, 18)?;
    Ok(versions)
}

fn set_format_versions(path: &Path, versions: [u8; 2]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all_at(&versions, 18)?;
    file.sync_all()
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// How a SQLite restore treats the file at its target.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteRestore {
    /// Replace an existing file.
    pub replace: bool,
    /// Replace it even while other processes hold it open (they keep the old file, and what
    /// they write into it is lost, until they are restarted).
    pub force: bool,
}

/// What a SQLite restore did.
#[derive(Debug, Clone, Default)]
pub struct SqliteRestored {
    /// Bytes written.
    pub bytes: u64,
    /// Processes that held the replaced file open (only with `force`): they still use the
    /// old file until restarted.
    pub held: Vec<Holder>,
    /// Staging files left beside the target by earlier restores that were killed, removed.
    pub stale: Vec<PathBuf>,
}

/// A process that holds a file open.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`), escaped.
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)
    }
}

/// The processes other than this one that hold the database at `path`, its `-wal` or its
/// `-shm` open, found in `/proc/*/fd` by device and inode (whatever path they opened it by).
/// A process whose descriptors this one may not read (another user's, when not root) is not
/// seen.
pub fn sqlite_holders(path: &Path) -> Vec<Holder> {
    let wanted: HashSet<(u64, u64)> = [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ]
    .iter()
    .filter_map(|p| std::fs::metadata(p).ok())
    .filter(|m| m.is_file())
    .map(|m| (m.dev(), m.ino()))
    .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            // Only descriptors of files are looked at (no socket, pipe or anonymous inode);
            // `stat` through the link gives the open file's own device and inode.
            std::fs::read_link(fd.path()).is_ok_and(|target| target.is_absolute())
                && std::fs::metadata(fd.path())
                    .is_ok_and(|m| m.is_file() && wanted.contains(&(m.dev(), m.ino())))
        });
        if holds {
            let command = std::fs::read(process.path().join("comm"))
                .map(|c| escape_untrusted(c.trim_ascii_end(), Newlines::Escape))
                .unwrap_or_else(|_| "?".to_string());
            out.push(Holder { pid, command });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}

fn holders_text(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(Holder::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `.lifeboat-<128 random bits>-<target's name>.tmp`: unguessable (nothing can be planted
/// there first), and tied to its target, so the next restore of that target recognises a
/// staging file a killed restore left. Long names are cut (a file name has 255 bytes).
fn staging_name(target: &[u8]) -> std::io::Result<std::ffi::OsString> {
    let mut name = format!(".lifeboat-{}-", random_hex()?).into_bytes();
    name.extend_from_slice(staging_stem(target));
    name.extend_from_slice(b".tmp");
    Ok(std::ffi::OsString::from_vec(name))
}

fn staging_stem(target: &[u8]) -> &[u8] {
    &target[..target.len().min(200)]
}

/// Whether `name` is a staging name `staging_name` made for `target`, exactly.
fn is_staging_name(name: &[u8], target: &[u8]) -> bool {
    let stem = staging_stem(target);
    let Some(rest) = name.strip_prefix(b".lifeboat-") else {
        return false;
    };
    rest.len() == 32 + 1 + stem.len() + 4
        && rest[..32]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        && rest[32] == b'-'
        && &rest[33..33 + stem.len()] == stem
        && rest.ends_with(b".tmp")
}

/// Removes the staging files beside `path` that an earlier restore of it left (killed before
/// it could remove them): exactly `staging_name`'s pattern for this target, regular files
/// last changed before `started`, and locked by no one (a restore under way holds a lock
/// on its own). Returns those removed.
fn remove_stale_staging(path: &Path, started: SystemTime) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if !is_staging_name(entry.file_name().as_bytes(), name.as_bytes()) {
            continue;
        }
        let stale = entry.path();
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(NOFOLLOW_NONBLOCK)
            .open(&stale)
        else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(
                meta.ctime().max(0) as u64,
                meta.ctime_nsec().clamp(0, 999_999_999) as u32,
            );
        if !meta.is_file() || changed >= started {
            continue;
        }
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        // Still the file that was checked (same device and inode) when it is removed.
        let same = std::fs::symlink_metadata(&stale)
            .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        if same && std::fs::remove_file(&stale).is_ok() {
            tracing::info!(path = %stale.display(), "removed a staging file an interrupted restore left");
            removed.push(stale);
        }
    }
    removed
}

/// `O_NOFOLLOW | O_NONBLOCK`: never through a link, never waiting on a FIFO.
const NOFOLLOW_NONBLOCK: i32 =
    rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32;

/// Restores to `path`. An existing file is refused unless `how.replace`, and while another
/// process holds it open unless `how.force`. The copy is written beside it under a staging
/// name (removed on a failure, and by a signal's clean-up), checked, given the replaced
/// file's owner, group and mode (a new file: mode 0600, and when root the folder's owner and
/// group, so the application that owns the folder can open it), then renamed into place.
pub fn restore_sqlite(
    repo: &Repository,
    root: &lifeboat_format::Id,
    path: &Path,
    how: SqliteRestore,
) -> Result<SqliteRestored> {
    let started = SystemTime::now();
    let exists = std::fs::symlink_metadata(path).is_ok();
    if exists && !how.replace {
        return Err(ServiceError::Exists {
            path: path.display().to_string(),
        });
    }
    let refuse_held = |held: &[Holder]| {
        sqlite_err(
            path,
            format!(
                "open in {}: they would go on writing into the replaced file and lose what \
                 they write; stop them first, or replace it anyway with --force (then restart \
                 them: the plan's `start`)",
                holders_text(held)
            ),
        )
    };
    let held = if exists {
        sqlite_holders(path)
    } else {
        Vec::new()
    };
    if !held.is_empty() && !how.force {
        return Err(refuse_held(&held));
    }
    let chunks = document_chunks(repo, root)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(|e| sqlite_err(parent, e))?;
    let Some(name) = path.file_name() else {
        return Err(sqlite_err(path, "not a file name"));
    };
    let stale = remove_stale_staging(path, started);
    // Exclusive and unguessable: nothing planted beside the target is written through. The
    // lock tells the next restore's clean-up that this one is under way.
    let staging_path = parent.join(staging_name(name.as_bytes()).map_err(|e| sqlite_err(path, e))?);
    let (staged, mut file) = Staged::create(staging_path, |p| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(NOFOLLOW_NONBLOCK)
            .open(p)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(file)
    })
    .map_err(|e| sqlite_err(path, e))?;
    let staging = staged.path().to_path_buf();
    // The new file takes the owner, group and mode of the one it replaces, so the
    // application can still open it (the staging file is private until then).
    let (mode, owner) = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => (m.mode() & 0o7777, Some((m.uid(), m.gid()))),
        _ => (
            0o600,
            std::fs::metadata(parent).ok().map(|m| (m.uid(), m.gid())),
        ),
    };
    let bytes = lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut file)?;
    if let Some((uid, gid)) = owner
        && rustix::process::geteuid().is_root()
    {
        rustix::fs::fchown(
            &file,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| sqlite_err(&staging, e))?;
    }
    // After chown, which clears setuid/setgid bits.
    rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(mode))
        .map_err(|e| sqlite_err(&staging, e))?;
    file.sync_all().map_err(|e| sqlite_err(&staging, e))?;
    // A WAL copy is checked as a rollback one (a read-only WAL open would leave `-wal` and
    // `-shm` files beside the staging name), then marked WAL again.
    let wal = format_versions(&staging).is_ok_and(|v| v == WAL);
    if wal {
        set_format_versions(&staging, ROLLBACK).map_err(|e| sqlite_err(&staging, e))?;
    }
    let check: String = Connection::open_with_flags(&staging, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |row| row.get(0)))
        .map_err(|e| sqlite_err(&staging, e))?;
    if check != "ok" {
        return Err(sqlite_err(
            path,
            format!("restored copy fails its integrity check: {check}"),
        ));
    }
    if wal {
        set_format_versions(&staging, WAL).map_err(|e| sqlite_err(&staging, e))?;
    }
    // Once more just before the rename: a process may have opened it meanwhile.
    let held = if exists {
        sqlite_holders(path)
    } else {
        Vec::new()
    };
    if !held.is_empty() && !how.force {
        return Err(refuse_held(&held));
    }
    // A journal left by the old database would be replayed onto the new one.
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sidecar(path, suffix));
    }
    staged.rename_to(path).map_err(|e| sqlite_err(path, e))?;
    drop(file);
    Ok(SqliteRestored { bytes, held, stale })
}

/// Compares the database file at `path` with the copy stored under `root`, writing nothing
/// there: the stored copy is read into a temporary folder, both are opened read-only, and
/// their schemas, each table's row count and its rows (as a set: `VACUUM INTO` may renumber
/// rowids) are compared. Returns the differences.
pub fn compare_sqlite(
    repo: &Repository,
    root: &lifeboat_format::Id,
    path: &Path,
) -> Result<Vec<String>> {
    if !path.is_file() {
        return Ok(vec![format!("{}: no such database file", path.display())]);
    }
    let chunks = document_chunks(repo, root)?;
    let dir =
        tempfile::tempdir().map_err(|e| ServiceError::Io(format!("temporary directory: {e}")))?;
    let copy = dir.path().join("captured.sqlite");
    let mut file = std::fs::File::create(&copy).map_err(|e| sqlite_err(&copy, e))?;
    lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut file)?;
    drop(file);
    // Read as a rollback-journal file: the copy's WAL mark only says how it is restored.
    if format_versions(&copy).is_ok_and(|v| v == WAL) {
        set_format_versions(&copy, ROLLBACK).map_err(|e| sqlite_err(&copy, e))?;
    }
    let open = |p: &Path| {
        let conn = Connection::open_with_flags(
            p,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite_err(p, e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| sqlite_err(p, e))?;
        Ok::<_, ServiceError>(conn)
    };
    let captured = open(&copy)?;
    // Opening a WAL database makes its `-wal` and `-shm` files when they are missing: a
    // database no one has open is read from a copy instead, so nothing appears at the site.
    let quiet = quiet_copy(path, &dir.path().join("live.sqlite"))?;
    let live = open(quiet.as_deref().unwrap_or(path))?;
    let was = summary(&captured).map_err(|e| sqlite_err(&copy, e))?;
    // One read transaction, so the figures are of one moment while writers carry on.
    live.execute_batch("BEGIN")
        .map_err(|e| sqlite_err(path, e))?;
    let now = summary(&live).map_err(|e| sqlite_err(path, e));
    let _ = live.execute_batch("COMMIT");
    let now = now?;
    let mut differences = Vec::new();
    for (name, (sql, rows, digest)) in &was {
        match now.get(name) {
            None => differences.push(format!("{name}: missing")),
            Some((now_sql, now_rows, now_digest)) => {
                if now_sql != sql {
                    differences.push(format!("{name}: its definition differs"));
                } else if now_rows != rows {
                    differences.push(format!(
                        "{name}: {now_rows} rows, the restore point has {rows}"
                    ));
                } else if now_digest != digest {
                    differences.push(format!("{name}: its rows differ"));
                }
            }
        }
    }
    for name in now.keys().filter(|n| !was.contains_key(*n)) {
        differences.push(format!("{name}: not in the restore point"));
    }
    Ok(differences)
}

/// A copy of the database at `path` when no connection has it open in WAL mode and no write
/// is under way (no `-wal` or `-journal` file) and it did not change while copied; `None`
/// otherwise (it is then read where it is).
fn quiet_copy(path: &Path, copy: &Path) -> Result<Option<PathBuf>> {
    let busy = || {
        ["-wal", "-journal"]
            .iter()
            .any(|s| std::fs::symlink_metadata(sidecar(path, s)).is_ok())
    };
    let stamp = |m: std::fs::Metadata| (m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ino());
    if busy() {
        return Ok(None);
    }
    let before = std::fs::metadata(path).map_err(|e| sqlite_err(path, e))?;
    std::fs::copy(path, copy).map_err(|e| sqlite_err(path, e))?;
    let after = std::fs::metadata(path).map_err(|e| sqlite_err(path, e))?;
    if busy() || stamp(before) != stamp(after) {
        return Ok(None);
    }
    Ok(Some(copy.to_path_buf()))
}

/// Each schema object (`type name`): its SQL, and a table's row count and rows' digest.
type Summary = std::collections::BTreeMap<String, (Option<String>, u64, u64)>;

/// Each schema object (`type name`) with its SQL, and for tables their row count and an
/// order-independent digest of their rows.
fn summary(conn: &Connection) -> rusqlite::Result<Summary> {
    use std::hash::{Hash, Hasher};
    let mut out = std::collections::BTreeMap::new();
    let objects: Vec<(String, String, Option<String>)> = conn
        .prepare(
            "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (kind, name, sql) in objects {
        let (mut rows, mut digest) = (0u64, 0u64);
        // A virtual table's rows live in its module (maybe not loadable here); a table with
        // a generated `VIRTUAL` column is an ordinary table and is compared.
        let virtual_table = sql.as_deref().is_some_and(|s| {
            s.trim_start()
                .get(..21)
                .is_some_and(|head| head.eq_ignore_ascii_case("CREATE VIRTUAL TABLE "))
        });
        if kind == "table" && sql.is_some() && !virtual_table {
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            let mut stmt = conn.prepare(&format!("SELECT * FROM {quoted}"))?;
            let columns = stmt.column_count();
            let mut result = stmt.query([])?;
            while let Some(row) = result.next()? {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                for i in 0..columns {
                    match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => 0u8.hash(&mut hasher),
                        rusqlite::types::ValueRef::Integer(v) => (1u8, v).hash(&mut hasher),
                        rusqlite::types::ValueRef::Real(v) => (2u8, v.to_bits()).hash(&mut hasher),
                        rusqlite::types::ValueRef::Text(v) => (3u8, v).hash(&mut hasher),
                        rusqlite::types::ValueRef::Blob(v) => (4u8, v).hash(&mut hasher),
                    }
                }
                rows += 1;
                digest = digest.wrapping_add(hasher.finish());
            }
        }
        out.insert(format!("{kind} {name}"), (sql, rows, digest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_are_recognised_exactly_for_their_target() {
        let name = staging_name(b"app.db").unwrap();
        assert!(is_staging_name(name.as_bytes(), b"app.db"));
        assert!(!is_staging_name(name.as_bytes(), b"app"));
        assert!(!is_staging_name(name.as_bytes(), b"other.db"));
        let hex = "0123456789abcdef0123456789abcdef";
        for other in [
            format!(".lifeboat-{hex}.tmp"),
            format!(".lifeboat-{hex}-app.db.tmp~"),
            format!("x.lifeboat-{hex}-app.db.tmp"),
            format!(".lifeboat-{}-app.db.tmp", hex.to_uppercase()),
            format!(".lifeboat-{}-app.db.tmp", &hex[1..]),
        ] {
            assert!(!is_staging_name(other.as_bytes(), b"app.db"), "{other}");
        }
        // A long name is cut, and still fits in a file name.
        let long = vec![b'n'; 255];
        let name = staging_name(&long).unwrap();
        assert!(name.len() <= 255);
        assert!(is_staging_name(name.as_bytes(), &long));
    }

    /// Accounts whose total never changes: any copy that is one snapshot keeps it.
    fn accounts(path: &Path, wal: bool) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(&format!(
            "PRAGMA page_size = 8192; PRAGMA journal_mode = {}; PRAGMA user_version = 7;
             PRAGMA application_id = 99;
             CREATE TABLE a(id INTEGER PRIMARY KEY, balance INTEGER, pad BLOB);",
            if wal { "WAL" } else { "DELETE" }
        ))
        .unwrap();
        c.execute_batch("BEGIN").unwrap();
        for i in 0..4000 {
            c.execute("INSERT INTO a VALUES (?1, 100, randomblob(900))", [i])
                .unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
    }

    /// Copies with `copier` while another connection moves money between accounts.
    fn copy_under_writes(wal: bool, copier: impl Fn(&Connection, &Path, &Path)) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        accounts(&db, wal);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = Connection::open(&db).unwrap();
                c.busy_timeout(Duration::from_secs(30)).unwrap();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (from, to) = (n % 4000, (n * 7 + 1) % 4000);
                    c.execute_batch(&format!(
                        "BEGIN IMMEDIATE; UPDATE a SET balance = balance - 1 WHERE id = {from};
                         UPDATE a SET balance = balance + 1 WHERE id = {to}; COMMIT;"
                    ))
                    .unwrap();
                    n += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                n
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let source = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        source.busy_timeout(Duration::from_secs(30)).unwrap();
        let copy = dir.path().join("copy.sqlite");
        copier(&source, &db, &copy);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(writer.join().unwrap() > 0);
        if wal {
            assert_eq!(format_versions(&copy).unwrap(), WAL);
            set_format_versions(&copy, ROLLBACK).unwrap();
        }
        let c = Connection::open(&copy).unwrap();
        let (check, total, rows, page_size, user_version, application_id): (
            String,
            i64,
            i64,
            i64,
            i64,
            i64,
        ) = c
            .query_row(
                "SELECT (SELECT integrity_check FROM pragma_integrity_check),
                        (SELECT sum(balance) FROM a), (SELECT count(*) FROM a),
                        (SELECT page_size FROM pragma_page_size),
                        (SELECT user_version FROM pragma_user_version),
                        (SELECT application_id FROM pragma_application_id)",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            (
                check.as_str(),
                total,
                rows,
                page_size,
                user_version,
                application_id
            ),
            ("ok", 400_000, 4000, 8192, 7, 99)
        );
    }

    #[test]
    fn a_quiet_rollback_database_is_copied_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        accounts(&db, false);
        let source = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let copy = dir.path().join("copy.sqlite");
        let how = online_copy(&source, &db, &copy, false).unwrap();
        assert_eq!(how, Copied::Backup { restarts: 0 });
        assert_eq!(
            std::fs::metadata(&copy).unwrap().len(),
            std::fs::metadata(&db).unwrap().len()
        );
    }

    #[test]
    fn an_online_copy_of_a_rollback_database_being_written_is_one_snapshot() {
        // In steps, or (restarted by the commits) under one lock: one snapshot either way.
        copy_under_writes(false, |source, db, copy| {
            online_copy(source, db, copy, false).unwrap();
        });
        copy_under_writes(false, |source, db, copy| {
            // As the stepped copy would have made it.
            Connection::open(copy).unwrap();
            locked_file_copy(source, db, copy).unwrap();
        });
    }

    #[test]
    fn an_online_copy_of_a_wal_database_being_written_is_one_snapshot() {
        copy_under_writes(true, |source, db, copy| {
            // One read transaction: never restarted.
            let how = online_copy(source, db, copy, true).unwrap();
            assert_eq!(how, Copied::Backup { restarts: 0 });
        });
    }

    #[test]
    fn a_table_with_a_generated_virtual_column_is_compared_by_its_rows() {
        let summarise = |rows: &[i64]| {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(
                "CREATE TABLE t(a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL)",
            )
            .unwrap();
            for a in rows {
                conn.execute("INSERT INTO t(a) VALUES (?1)", [a]).unwrap();
            }
            summary(&conn).unwrap()
        };
        assert_ne!(summarise(&[1, 2]), summarise(&[1, 3]));
        assert_eq!(summarise(&[1, 2]), summarise(&[2, 1]));
    }
}
