//! Backup of a directory tree: scan, read changed files in parallel, write trees.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};
use lifeboat_format::Id;
use lifeboat_format::manifest::CaptureStats;
use lifeboat_format::pack::ChunkKind;
use lifeboat_format::tree::{Entry, EntryKind, Metadata, Time, Tree};
use lifeboat_repository::{ChunkReader, RepoWriter};

use rustix::fs::FileType;

use crate::beneath::Dir;
use crate::stream::{StreamError, store_stream};
use crate::{FilesError, Result, display_path, io_err, load_tree, threads};

#[cfg(test)]
mod tests;
mod trees;

use trees::TreeWriter;

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Globs (relative to the tree's root) a file must match to be captured; empty = all.
    pub include: Vec<String>,
    /// Globs of paths left out (a matching directory is left out whole).
    pub exclude: Vec<String>,
}

/// Counters a caller may poll to show progress.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
}

#[derive(Debug)]
pub struct FilesCapture {
    pub root: Id,
    pub stats: CaptureStats,
    /// Files left out because they could not be read, with why.
    pub skipped: Vec<String>,
    /// Files that kept changing while they were read: captured as they were, maybe torn.
    pub changed: Vec<String>,
}

/// How often a file that changed while it was read is read again before it is captured as
/// it is (and reported as changed).
const REREADS: usize = 3;
/// How often a folder that changed during the backup is listed again to capture what is
/// there now (a file renamed or replaced since the scan).
const SETTLE_ROUNDS: usize = 8;

/// A child name no real file has: a directory all of whose children an exclude pattern
/// matches is left out whole.
const EXCLUDE_PROBE: &str = "\u{1}lifeboat-probe";

/// What a file or folder is, whatever its name: its device and inode.
type Ident = (u64, u64);

/// Points in a backup where a unit test may act on the tree (or fail a listing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// A folder is about to be listed by the scan.
    ScanList,
    /// The scan is done; the files have not been read yet.
    Scanned,
    /// A folder is about to be listed again (round `n` of its settling).
    SettleList,
    /// A folder was just listed again; its names have not been looked at yet.
    SettleListed,
    /// A folder found while settling is about to be listed.
    LateList,
}

#[cfg(test)]
type Hook = Box<dyn FnMut(Event, &Path, usize) -> Option<std::io::Error>>;

#[cfg(test)]
thread_local! {
    static HOOK: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
}

/// Lets a unit test change the tree at `event`, or fail the listing that follows it.
#[cfg(test)]
fn hook(event: Event, rel: &Path, round: usize) -> Option<std::io::Error> {
    HOOK.with(|h| h.borrow_mut().as_mut().and_then(|f| f(event, rel, round)))
}

#[cfg(not(test))]
#[inline(always)]
fn hook(_: Event, _: &Path, _: usize) -> Option<std::io::Error> {
    None
}

/// Lists a folder (see [`hook`]).
fn list(dir: &Dir, rel: &Path, event: Event, round: usize) -> std::io::Result<Vec<OsString>> {
    if let Some(e) = hook(event, rel, round) {
        return Err(e);
    }
    let names = dir.names()?;
    if event == Event::SettleList
        && let Some(e) = hook(Event::SettleListed, rel, round)
    {
        return Err(e);
    }
    Ok(names)
}

struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

fn globset(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p.trim_start_matches("./")).map_err(|e| FilesError::Pattern {
            pattern: p.clone(),
            message: e.kind().to_string(),
        })?;
        b.add(glob);
    }
    b.build().map_err(|e| FilesError::Pattern {
        pattern: patterns.join(", "),
        message: e.to_string(),
    })
}

impl Filter {
    fn new(opts: &BackupOptions) -> Result<Self> {
        let include = match opts.include.as_slice() {
            [] => None,
            [one] if one == "**" => None,
            many => Some(globset(many)?),
        };
        Ok(Filter {
            include,
            exclude: globset(&opts.exclude)?,
        })
    }
}

/// Which paths of a tree a backup with these options captures: for comparing a live tree
/// with a capture without counting what the backup leaves out.
pub struct PathFilter(Filter);

impl PathFilter {
    /// The filter of `opts`' include/exclude globs; a bad glob is an error naming it.
    pub fn new(opts: &BackupOptions) -> Result<Self> {
        Ok(PathFilter(Filter::new(opts)?))
    }

    /// `rel` is relative to the tree's root; `is_dir` says whether it is a folder (include
    /// patterns select files; a folder is kept for what it may hold).
    pub fn captures(&self, rel: &Path, is_dir: bool) -> bool {
        let excluded = rel
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| self.0.exclude.is_match(a) || self.0.exclude.is_match(a.join(EXCLUDE_PROBE)));
        if excluded {
            return false;
        }
        match &self.0.include {
            Some(include) if !is_dir => include.is_match(rel),
            _ => true,
        }
    }
}

enum NodeKind {
    /// A file to read (`job` indexes the job list) or reused from the parent.
    File {
        size: u64,
        job: Option<usize>,
        reused: Vec<Id>,
        /// Its device (the inode is in the node's metadata).
        dev: u64,
    },
    Dir {
        children: Vec<Node>,
        rel: PathBuf,
        seen: DirSeen,
    },
    Other(EntryKind),
}

/// A folder as the scan saw it before listing it: if its times differ later, or a name in it
/// vanished, entries were added, removed or renamed since, and it is listed again.
#[derive(Clone, Default)]
struct DirSeen {
    dev: u64,
    inode: u64,
    times: [(i64, i64); 2],
    /// A listed name was gone by the time it was looked at.
    vanished: bool,
    /// Names the scan skipped (and reported): never tried again when it is listed again.
    skipped: Vec<Vec<u8>>,
}

fn dir_times(st: &rustix::fs::Stat) -> [(i64, i64); 2] {
    [
        (st.st_mtime, st.st_mtime_nsec as i64),
        (st.st_ctime, st.st_ctime_nsec as i64),
    ]
}

struct Node {
    name: Vec<u8>,
    meta: Metadata,
    kind: NodeKind,
}

/// A file as read: its chunks, the bytes actually read, and its metadata.
struct ReadOk {
    chunks: Vec<Id>,
    size: u64,
    meta: Metadata,
    /// It still changed while read on the last attempt.
    changed: bool,
}

/// Why a file was not read.
enum ReadFail {
    /// The name no longer led to the scanned file (renamed, deleted or replaced).
    Vanished,
    /// It could not be read.
    Failed(String),
}

type ReadResult = std::result::Result<ReadOk, ReadFail>;

/// The error `open_scanned` gives when the name now leads to something else.
#[derive(Debug)]
struct Replaced(&'static str);

impl std::fmt::Display for Replaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Replaced {}

fn replaced(what: &'static str) -> std::io::Error {
    std::io::Error::other(Replaced(what))
}

/// Whether an open failed because the scanned file is no longer under its name.
fn is_vanished(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.get_ref().is_some_and(|i| i.is::<Replaced>())
}

/// Whether two looks at a file saw the same content.
fn same_file(a: &rustix::fs::Stat, b: &rustix::fs::Stat) -> bool {
    a.st_size == b.st_size
        && (a.st_mtime, a.st_mtime_nsec) == (b.st_mtime, b.st_mtime_nsec)
        && (a.st_ctime, a.st_ctime_nsec) == (b.st_ctime, b.st_ctime_nsec)
}

/// Reads and stores an open file. A file whose size, mtime or ctime differ after the read
/// from before it is read again, up to [`REREADS`] times, then taken as it is (`changed`,
/// with the metadata from before the read, so the next backup reads it again).
fn read_steady(
    writer: &RepoWriter<'_>,
    packer: &mut lifeboat_repository::Packer,
    file: &File,
    buf: &mut Vec<u8>,
    progress: Option<&Progress>,
) -> std::result::Result<ReadOk, StreamError> {
    let mut attempt = 0;
    loop {
        let before = rustix::fs::fstat(file).map_err(|e| StreamError::Read(e.into()))?;
        let mut reading = file;
        reading
            .seek(SeekFrom::Start(0))
            .map_err(StreamError::Read)?;
        let (chunks, size) = store_stream(writer, packer, &mut reading, buf, progress)?;
        let after = rustix::fs::fstat(file).map_err(|e| StreamError::Read(e.into()))?;
        if same_file(&before, &after) && size == after.st_size.max(0) as u64 {
            return Ok(ReadOk {
                chunks,
                size,
                meta: metadata_of(&after),
                changed: false,
            });
        }
        if attempt == REREADS {
            return Ok(ReadOk {
                chunks,
                size,
                meta: metadata_of(&before),
                changed: true,
            });
        }
        attempt += 1;
    }
}

struct Job {
    /// Relative to the tree's root, where it is opened again (beneath the root's handle).
    rel: PathBuf,
    size: u64,
    /// What the scan saw there: a file opened later must be this one.
    dev: u64,
    inode: u64,
}

fn metadata_of(st: &rustix::fs::Stat) -> Metadata {
    Metadata {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: Time {
            secs: st.st_mtime,
            nanos: (st.st_mtime_nsec as i64).clamp(0, 999_999_999) as u32,
        },
        ctime: Time {
            secs: st.st_ctime,
            nanos: (st.st_ctime_nsec as i64).clamp(0, 999_999_999) as u32,
        },
        inode: st.st_ino,
    }
}

struct Scanner<'a, 'r> {
    writer: &'a RepoWriter<'r>,
    reader: ChunkReader<'r>,
    /// The tree's root, as given (for messages).
    source: &'a Path,
    filter: Filter,
    jobs: Vec<Job>,
    stats: CaptureStats,
    skipped: Vec<String>,
    progress: Option<&'a Progress>,
}

impl Scanner<'_, '_> {
    /// Scans the folder `dir` (at `rel` below the root); returns None when a non-default
    /// include leaves it with nothing. Folders are opened through their parent's handle and
    /// never through a symlink, so a folder swapped for a link mid-scan is not followed.
    fn scan_dir(
        &mut self,
        dir: &Dir,
        rel: &Path,
        parent: Option<&Tree>,
    ) -> Result<Option<(Vec<Node>, DirSeen)>> {
        let shown = self.source.join(rel);
        let st = rustix::fs::fstat(dir)
            .map_err(std::io::Error::from)
            .map_err(io_err(&shown))?;
        let mut seen = DirSeen {
            dev: st.st_dev,
            inode: st.st_ino,
            times: dir_times(&st),
            vanished: false,
            skipped: Vec::new(),
        };
        let listing = list(dir, rel, Event::ScanList, 0).map_err(io_err(&shown))?;
        let mut nodes = Vec::with_capacity(listing.len());
        for name in listing {
            let rel_path = rel.join(&name);
            if self.filter.exclude.is_match(&rel_path) {
                continue;
            }
            let st = match dir.stat(&name) {
                Ok(st) => st,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    seen.vanished = true;
                    continue;
                }
                Err(e) => {
                    self.skip(&rel_path, &e);
                    seen.skipped.push(name.as_bytes().to_vec());
                    continue;
                }
            };
            let name_bytes = name.as_bytes().to_vec();
            let ft = FileType::from_raw_mode(st.st_mode);
            // `dir/**` excludes the directory itself, not just what is in it.
            if ft == FileType::Directory
                && self.filter.exclude.is_match(rel_path.join(EXCLUDE_PROBE))
            {
                continue;
            }
            let md = metadata_of(&st);
            let size = st.st_size.max(0) as u64;
            let parent_entry = parent.and_then(|t| t.get(&name_bytes));
            let kind = if ft == FileType::Directory {
                let parent_tree = match parent_entry.map(|e| &e.kind) {
                    Some(EntryKind::Dir { tree }) => load_tree(&mut self.reader, tree).ok(),
                    _ => None,
                };
                let child = match dir.open_child(&name) {
                    Ok(child) => child,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        seen.vanished = true;
                        continue;
                    }
                    Err(e) => {
                        self.skip(&rel_path, &e);
                        seen.skipped.push(name_bytes);
                        continue;
                    }
                };
                match self.scan_dir(&child, &rel_path, parent_tree.as_ref()) {
                    Ok(Some((children, child_seen))) => {
                        self.stats.dirs += 1;
                        NodeKind::Dir {
                            children,
                            rel: rel_path.clone(),
                            seen: child_seen,
                        }
                    }
                    Ok(None) => continue,
                    Err(FilesError::Io { source, .. }) => {
                        self.skip(&rel_path, &source);
                        seen.skipped.push(name_bytes);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                if let Some(include) = &self.filter.include
                    && !include.is_match(&rel_path)
                {
                    continue;
                }
                match ft {
                    FileType::RegularFile => {
                        self.stats.files += 1;
                        self.stats.bytes += size;
                        match self.unchanged(parent_entry, &md, size) {
                            Some(chunks) => NodeKind::File {
                                size,
                                job: None,
                                reused: chunks,
                                dev: st.st_dev,
                            },
                            None => {
                                self.jobs.push(Job {
                                    rel: rel_path.clone(),
                                    size,
                                    dev: st.st_dev,
                                    inode: st.st_ino,
                                });
                                NodeKind::File {
                                    size,
                                    job: Some(self.jobs.len() - 1),
                                    reused: Vec::new(),
                                    dev: st.st_dev,
                                }
                            }
                        }
                    }
                    FileType::Symlink => match dir.read_link(&name) {
                        Ok(target) => NodeKind::Other(EntryKind::Symlink { target }),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            seen.vanished = true;
                            continue;
                        }
                        Err(e) => {
                            self.skip(&rel_path, &e);
                            seen.skipped.push(name_bytes);
                            continue;
                        }
                    },
                    FileType::Fifo => NodeKind::Other(EntryKind::Fifo),
                    FileType::Socket => NodeKind::Other(EntryKind::Socket),
                    FileType::CharacterDevice => {
                        NodeKind::Other(EntryKind::CharDevice { rdev: st.st_rdev })
                    }
                    FileType::BlockDevice => {
                        NodeKind::Other(EntryKind::BlockDevice { rdev: st.st_rdev })
                    }
                    _ => continue,
                }
            };
            nodes.push(Node {
                name: name_bytes,
                meta: md,
                kind,
            });
        }
        if nodes.is_empty() && self.filter.include.is_some() && !rel.as_os_str().is_empty() {
            return Ok(None);
        }
        Ok(Some((nodes, seen)))
    }

    /// The parent's chunks for a file that has not changed since, if they are all still stored.
    fn unchanged(&self, parent: Option<&Entry>, now: &Metadata, size: u64) -> Option<Vec<Id>> {
        let parent = parent?;
        let EntryKind::File {
            size: old_size,
            chunks,
        } = &parent.kind
        else {
            return None;
        };
        let same = *old_size == size
            && parent.meta.mtime == now.mtime
            && parent.meta.ctime == now.ctime
            && parent.meta.inode == now.inode;
        (same && chunks.iter().all(|c| self.writer.has(c))).then(|| chunks.clone())
    }

    fn skip(&mut self, rel: &Path, e: &dyn std::fmt::Display) {
        let path = display_path(&self.source.join(rel));
        tracing::warn!("skipping {path}: {e}");
        self.stats.files_skipped += 1;
        self.skipped.push(format!("{path}: {e}"));
    }
}

/// Captures the tree at `source` into the writer's repository. `parent` is the root tree of
/// an earlier capture of the same tree, used to skip reading unchanged files.
///
/// A file renamed or replaced during the backup is captured under one of its names: a folder
/// that changed since it was scanned (its times differ, or a name in it vanished) is listed
/// again, and what is there now and not captured yet is captured. A file that changes while
/// it is read is read again (see [`REREADS`]), then captured as it is and reported in
/// `changed`.
pub fn backup(
    writer: &RepoWriter<'_>,
    source: &Path,
    parent: Option<Id>,
    options: &BackupOptions,
    progress: Option<&Progress>,
) -> Result<FilesCapture> {
    let started = Instant::now();
    let before = writer.stats();
    let repo = writer.repository();
    let top = Dir::open_source(source).map_err(io_err(source))?;
    let mut reader = repo.reader();
    let parent_tree = match parent {
        Some(id) => load_tree(&mut reader, &id).ok(),
        None => None,
    };
    let mut scanner = Scanner {
        writer,
        reader,
        source,
        filter: Filter::new(options)?,
        jobs: Vec::new(),
        stats: CaptureStats::default(),
        skipped: Vec::new(),
        progress,
    };
    // The root is never left out; were it, an empty tree is what the options select.
    let (nodes, seen) = scanner
        .scan_dir(&top, Path::new(""), parent_tree.as_ref())?
        .unwrap_or_default();
    hook(Event::Scanned, Path::new(""), 0);
    if let Some(p) = scanner.progress {
        p.bytes_total
            .store(scanner.jobs.iter().map(|j| j.size).sum(), Ordering::Relaxed);
        p.files_total
            .store(scanner.jobs.len() as u64, Ordering::Relaxed);
    }

    let results = read_files(writer, &top, &scanner.jobs, progress)?;
    let mut stats = scanner.stats;
    stats.files_read = scanner.jobs.len() as u64;

    let mut tw = TreeWriter {
        writer,
        source,
        top: &top,
        filter: &scanner.filter,
        jobs: &scanner.jobs,
        results: results.into_iter().map(Some).collect(),
        stats: &mut stats,
        skipped: scanner.skipped,
        changed: Vec::new(),
        captured: HashSet::new(),
        vanished: Vec::new(),
        trees: writer.packer(ChunkKind::Tree),
        data: writer.packer(ChunkKind::Data),
        buf: Vec::new(),
    };
    let (root, _) = tw.write_dir(nodes, Path::new(""), seen)?;
    tw.account_for_vanished();
    writer.flush(&mut tw.trees)?;
    writer.flush(&mut tw.data)?;
    let skipped = std::mem::take(&mut tw.skipped);
    let changed = std::mem::take(&mut tw.changed);
    drop(tw);
    stats.files_changed = changed.len() as u64;

    let after = writer.stats();
    stats.chunks_new = after.chunks_new - before.chunks_new;
    stats.bytes_new = after.bytes_new - before.bytes_new;
    stats.bytes_stored = after.bytes_stored - before.bytes_stored;
    stats.duration_ms = started.elapsed().as_millis() as u64;
    Ok(FilesCapture {
        root,
        stats,
        skipped,
        changed,
    })
}

/// Reads, chunks and stores every job's file on all cores.
fn read_files(
    writer: &RepoWriter<'_>,
    top: &Dir,
    jobs: &[Job],
    progress: Option<&Progress>,
) -> Result<Vec<ReadResult>> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<ReadResult>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let failure: Mutex<Option<FilesError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads().min(jobs.len().max(1)) {
            scope.spawn(|| {
                let mut packer = writer.packer(ChunkKind::Data);
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() || failure.lock().expect("poisoned").is_some() {
                        break;
                    }
                    let job = &jobs[i];
                    let outcome = match open_scanned(top, job) {
                        Err(e) if is_vanished(&e) => Err(ReadFail::Vanished),
                        Err(e) => Err(ReadFail::Failed(e.to_string())),
                        Ok(file) => {
                            match read_steady(writer, &mut packer, &file, &mut buf, progress) {
                                Err(StreamError::Store(e)) => {
                                    *failure.lock().expect("poisoned") = Some(e.into());
                                    break;
                                }
                                Err(e) => Err(ReadFail::Failed(e.to_string())),
                                Ok(read) => Ok(read),
                            }
                        }
                    };
                    *results[i].lock().expect("poisoned") = Some(outcome);
                    if let Some(p) = progress {
                        p.files_done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Err(e) = writer.flush(&mut packer) {
                    failure.lock().expect("poisoned").get_or_insert(e.into());
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("poisoned") {
        return Err(e);
    }
    Ok(results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .expect("poisoned")
                .unwrap_or_else(|| Err(ReadFail::Failed("not read".into())))
        })
        .collect())
}

/// Opens a file the scan listed, refusing anything but that same regular file: a symlink or
/// FIFO swapped in since is never read from or waited on.
fn open_scanned(top: &Dir, job: &Job) -> std::io::Result<File> {
    let file = top.open_file_beneath(&job.rel).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            replaced("replaced by a symlink since it was scanned")
        } else {
            e
        }
    })?;
    let st = rustix::fs::fstat(&file)?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(replaced(match ft {
            FileType::Directory => "replaced by a folder since it was scanned",
            FileType::Symlink => "replaced by a symlink since it was scanned",
            FileType::Fifo => "replaced by a FIFO since it was scanned",
            FileType::Socket => "replaced by a socket since it was scanned",
            FileType::CharacterDevice | FileType::BlockDevice => {
                "replaced by a device since it was scanned"
            }
            _ => "replaced by a file of another kind since it was scanned",
        }));
    }
    if (st.st_dev, st.st_ino) != (job.dev, job.inode) {
        return Err(replaced("replaced by another file since it was scanned"));
    }
    Ok(file)
}
