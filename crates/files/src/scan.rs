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

/// What became of a name found when a folder was listed again.
enum Late {
    /// Captured (a file or folder with its identity).
    Entry(Entry, Option<Ident>),
    /// Nothing to capture (left out by the options, or a file already captured).
    Nothing,
    /// Gone again before it could be captured.
    Gone,
    /// It could not be captured, with why.
    Failed(String),
}

/// Writes the trees bottom-up from the scan and the read results, listing again the folders
/// that changed since they were scanned.
struct TreeWriter<'a, 'r> {
    writer: &'a RepoWriter<'r>,
    source: &'a Path,
    top: &'a Dir,
    filter: &'a Filter,
    jobs: &'a [Job],
    results: Vec<Option<ReadResult>>,
    stats: &'a mut CaptureStats,
    skipped: Vec<String>,
    changed: Vec<String>,
    /// The identity of every file and folder captured so far, anywhere in the tree.
    captured: HashSet<Ident>,
    /// Files and folders the scan saw that were no longer under their name when read or
    /// written, with that name: each must be captured under some name, or is skipped.
    vanished: Vec<(Ident, PathBuf)>,
    trees: lifeboat_repository::Packer,
    /// For files captured when a folder is listed again.
    data: lifeboat_repository::Packer,
    buf: Vec<u8>,
}

impl TreeWriter<'_, '_> {
    fn skip(&mut self, rel: &Path, e: &dyn std::fmt::Display) {
        let path = display_path(&self.source.join(rel));
        tracing::warn!("skipping {path}: {e}");
        self.stats.files_skipped += 1;
        self.skipped.push(format!("{path}: {e}"));
    }

    fn note_changed(&mut self, rel: &Path) {
        let path = display_path(&self.source.join(rel));
        tracing::warn!("{path} changed while it was read; captured as it was");
        self.changed.push(path);
    }

    /// Writes a folder's tree; says whether it is whole (false: something in it vanished and
    /// the folder itself can no longer be reached under its name, so its parent drops it and
    /// captures it again under the name it has now).
    fn write_dir(&mut self, nodes: Vec<Node>, rel: &Path, seen: DirSeen) -> Result<(Id, bool)> {
        let mut entries: Vec<Entry> = Vec::with_capacity(nodes.len());
        // Where each captured file and folder is in `entries`, by identity.
        let mut ids: HashMap<Ident, usize> = HashMap::new();
        // Reported as skipped already: never tried again when the folder is listed again.
        let mut given_up: HashSet<Vec<u8>> = seen.skipped.iter().cloned().collect();
        let mut vanished = seen.vanished;
        for node in nodes {
            let inode = node.meta.inode;
            let (kind, meta, id) = match node.kind {
                NodeKind::File {
                    size,
                    job: None,
                    reused,
                    dev,
                } => (
                    EntryKind::File {
                        size,
                        chunks: reused,
                    },
                    node.meta,
                    Some((dev, inode)),
                ),
                NodeKind::File { job: Some(i), .. } => match self.results[i].take() {
                    Some(Ok(read)) => {
                        if read.changed {
                            self.note_changed(&self.jobs[i].rel.clone());
                        }
                        // The size actually read: the file may have changed since the scan.
                        (
                            EntryKind::File {
                                size: read.size,
                                chunks: read.chunks,
                            },
                            read.meta,
                            Some((self.jobs[i].dev, self.jobs[i].inode)),
                        )
                    }
                    // Renamed, replaced or deleted: listing the folder again finds what is
                    // there now; if it is not found under any name, it is skipped.
                    Some(Err(ReadFail::Vanished)) => {
                        vanished = true;
                        self.stats.files -= 1;
                        self.stats.bytes = self.stats.bytes.saturating_sub(self.jobs[i].size);
                        let job = &self.jobs[i];
                        self.vanished.push(((job.dev, job.inode), job.rel.clone()));
                        continue;
                    }
                    other => {
                        let e = match other {
                            Some(Err(ReadFail::Failed(e))) => e,
                            _ => "not read".to_string(),
                        };
                        self.stats.files -= 1;
                        self.skip(&self.jobs[i].rel.clone(), &e);
                        given_up.insert(node.name);
                        continue;
                    }
                },
                NodeKind::Dir {
                    children,
                    rel: child_rel,
                    seen: child_seen,
                } => {
                    let id = (child_seen.dev, child_seen.inode);
                    let (tree, whole) = self.write_dir(children, &child_rel, child_seen)?;
                    if !whole {
                        vanished = true;
                        self.stats.dirs -= 1;
                        self.vanished.push((id, child_rel));
                        continue;
                    }
                    (EntryKind::Dir { tree }, node.meta, Some(id))
                }
                NodeKind::Other(kind) => (kind, node.meta, None),
            };
            if let Some(id) = id {
                self.captured.insert(id);
                ids.insert(id, entries.len());
            }
            entries.push(Entry {
                name: node.name,
                kind,
                meta,
            });
        }
        let whole = self.settle(rel, seen, vanished, &mut entries, &mut ids, given_up)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((self.store_tree(Tree { entries })?, whole))
    }

    /// Lists a folder that changed since its scan again, until it holds still (bounded), and
    /// captures every name not captured yet (a file already captured under another name is
    /// not captured twice, see [`already_captured`]). A name first seen now that is gone
    /// again before it can be read did not exist throughout the backup: it is only logged
    /// (what the scan saw and is not captured under any name is skipped at the end, see
    /// [`TreeWriter::account_for_vanished`]). A folder that can no longer be listed is
    /// skipped, as the scan does. Returns false when something in it vanished and it is no
    /// longer under its name.
    fn settle(
        &mut self,
        rel: &Path,
        seen: DirSeen,
        vanished: bool,
        entries: &mut Vec<Entry>,
        ids: &mut HashMap<Ident, usize>,
        mut given_up: HashSet<Vec<u8>>,
    ) -> Result<bool> {
        // Gone, renamed or replaced itself: its parent's listing decides.
        let Ok(dir) = self.top.open_beneath(rel) else {
            return Ok(!vanished);
        };
        let Ok(st) = rustix::fs::fstat(&dir) else {
            return Ok(!vanished);
        };
        if (st.st_dev, st.st_ino) != (seen.dev, seen.inode) {
            return Ok(!vanished);
        }
        if !vanished && dir_times(&st) == seen.times {
            return Ok(true);
        }
        let mut gone: Vec<PathBuf> = Vec::new();
        for round in 0..SETTLE_ROUNDS {
            if round > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1 << round.min(5)));
            }
            let Ok(before) = rustix::fs::fstat(&dir) else {
                return Ok(true);
            };
            let names = match list(&dir, rel, Event::SettleList, round) {
                Ok(names) => names,
                Err(e) => {
                    // What it held when scanned is kept; what came since is not known.
                    self.skip(rel, &format!("could not be listed again: {e}"));
                    return Ok(true);
                }
            };
            let have: HashSet<Vec<u8>> = entries.iter().map(|e| e.name.clone()).collect();
            gone.clear();
            for name in names {
                let bytes = name.as_bytes().to_vec();
                if have.contains(&bytes) || given_up.contains(&bytes) {
                    continue;
                }
                let rel_path = rel.join(&name);
                if self.filter.exclude.is_match(&rel_path) {
                    continue;
                }
                match self.capture_late(&dir, &name, &rel_path, ids, entries)? {
                    Late::Entry(entry, id) => {
                        if let Some(id) = id {
                            ids.insert(id, entries.len());
                        }
                        entries.push(entry);
                    }
                    Late::Nothing => {}
                    Late::Gone => gone.push(rel_path),
                    Late::Failed(e) => {
                        given_up.insert(bytes);
                        self.skip(&rel_path, &e);
                    }
                }
            }
            let Ok(after) = rustix::fs::fstat(&dir) else {
                return Ok(true);
            };
            if gone.is_empty() && dir_times(&after) == dir_times(&before) {
                return Ok(true);
            }
        }
        for rel_path in gone {
            let path = display_path(&self.source.join(&rel_path));
            tracing::debug!("{path} appeared and was gone again during the backup; not captured");
        }
        Ok(true)
    }

    /// Reports as skipped each file or folder the scan saw that was no longer under its name
    /// when read and was not captured under any name since (renamed or moved past every
    /// listing, or replaced or deleted: which of these cannot be told, so the point is
    /// `partial`).
    fn account_for_vanished(&mut self) {
        let mut reported = HashSet::new();
        for (id, rel) in std::mem::take(&mut self.vanished) {
            if !self.captured.contains(&id) && reported.insert(id) {
                self.skip(
                    &rel,
                    &"renamed, replaced or deleted during the backup and not found again under any name",
                );
            }
        }
    }

    /// Captures a folder found when its parent was listed again (renamed or made during the
    /// backup): everything in it as it is now, read one file at a time.
    fn capture_dir_late(&mut self, dir: &Dir, rel: &Path) -> Result<Id> {
        let names = list(dir, rel, Event::LateList, 0).map_err(io_err(&self.source.join(rel)))?;
        let none = HashMap::new();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let rel_path = rel.join(&name);
            if self.filter.exclude.is_match(&rel_path) {
                continue;
            }
            match self.capture_late(dir, &name, &rel_path, &none, &[])? {
                Late::Entry(entry, _) => entries.push(entry),
                // Made and removed again during the backup.
                Late::Nothing | Late::Gone => {}
                Late::Failed(e) => self.skip(&rel_path, &e),
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        self.store_tree(Tree { entries })
    }

    /// Stores one folder's tree.
    fn store_tree(&mut self, tree: Tree) -> Result<Id> {
        let bytes = tree.encode();
        // Never store what a reader would refuse to open.
        if bytes.len() > lifeboat_format::seal::MAX_PAYLOAD {
            return Err(FilesError::TooLarge(format!(
                "a directory of {} entries encodes to {} bytes, more than a tree may hold ({})",
                tree.entries.len(),
                bytes.len(),
                lifeboat_format::seal::MAX_PAYLOAD
            )));
        }
        let id = self.writer.repository().key().chunk_id(&bytes);
        self.writer.add(&mut self.trees, id, &bytes)?;
        Ok(id)
    }

    /// Captures `name` found in `dir` when it was listed again.
    fn capture_late(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        rel_path: &Path,
        ids: &HashMap<Ident, usize>,
        entries: &[Entry],
    ) -> Result<Late> {
        let st = match dir.stat(name) {
            Ok(st) => st,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Late::Gone),
            Err(e) => return Ok(Late::Failed(e.to_string())),
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Directory {
            // Captured under its old name already (renamed after it was scanned).
            if self.filter.exclude.is_match(rel_path.join(EXCLUDE_PROBE))
                || already_captured(dir, &st, ids, entries)
            {
                return Ok(Late::Nothing);
            }
            let child = match dir.open_child(name) {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Late::Gone),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                    return Ok(Late::Gone);
                }
                Err(e) => return Ok(Late::Failed(e.to_string())),
            };
            match rustix::fs::fstat(&child) {
                Ok(now) if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => {}
                Ok(_) => return Ok(Late::Gone),
                Err(e) => return Ok(Late::Failed(std::io::Error::from(e).to_string())),
            }
            // One that can no longer be listed is skipped, as the scan does.
            let tree = match self.capture_dir_late(&child, rel_path) {
                Ok(tree) => tree,
                Err(FilesError::Io { source, .. }) => return Ok(Late::Failed(source.to_string())),
                Err(e) => return Err(e),
            };
            self.stats.dirs += 1;
            let id = (st.st_dev, st.st_ino);
            self.captured.insert(id);
            return Ok(Late::Entry(
                Entry {
                    name: name.as_bytes().to_vec(),
                    kind: EntryKind::Dir { tree },
                    meta: metadata_of(&st),
                },
                Some(id),
            ));
        }
        if let Some(include) = &self.filter.include
            && !include.is_match(rel_path)
        {
            return Ok(Late::Nothing);
        }
        let mut meta = metadata_of(&st);
        let kind = match ft {
            FileType::RegularFile => {
                if already_captured(dir, &st, ids, entries) {
                    return Ok(Late::Nothing);
                }
                let file = match dir.open_file_beneath(Path::new(name)) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Late::Gone),
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                        return Ok(Late::Gone);
                    }
                    Err(e) => return Ok(Late::Failed(e.to_string())),
                };
                match rustix::fs::fstat(&file) {
                    Ok(now)
                        if FileType::from_raw_mode(now.st_mode) == FileType::RegularFile
                            && (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => {}
                    Ok(_) => return Ok(Late::Gone),
                    Err(e) => return Ok(Late::Failed(std::io::Error::from(e).to_string())),
                }
                let read =
                    match read_steady(self.writer, &mut self.data, &file, &mut self.buf, None) {
                        Ok(read) => read,
                        Err(StreamError::Store(e)) => return Err(e.into()),
                        Err(e) => return Ok(Late::Failed(e.to_string())),
                    };
                if read.changed {
                    self.note_changed(rel_path);
                }
                self.stats.files += 1;
                self.stats.files_read += 1;
                self.stats.bytes += read.size;
                self.captured.insert((st.st_dev, st.st_ino));
                meta = read.meta;
                EntryKind::File {
                    size: read.size,
                    chunks: read.chunks,
                }
            }
            FileType::Symlink => match dir.read_link(name) {
                Ok(target) => EntryKind::Symlink { target },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Late::Gone),
                Err(e) => return Ok(Late::Failed(e.to_string())),
            },
            FileType::Fifo => EntryKind::Fifo,
            FileType::Socket => EntryKind::Socket,
            FileType::CharacterDevice => EntryKind::CharDevice { rdev: st.st_rdev },
            FileType::BlockDevice => EntryKind::BlockDevice { rdev: st.st_rdev },
            _ => return Ok(Late::Nothing),
        };
        let id = matches!(kind, EntryKind::File { .. }).then_some((st.st_dev, st.st_ino));
        Ok(Late::Entry(
            Entry {
                name: name.as_bytes().to_vec(),
                kind,
                meta,
            },
            id,
        ))
    }
}

/// Whether the file or folder `st` describes, found in `dir` under a name not captured yet,
/// is one captured there already under another name. Its identity (device and inode) must
/// be that of a captured entry, and either that entry's name still leads to it (a second
/// hard link) or it still has the size and mtime captured (a rename changes neither; its
/// ctime, which a rename changes, is not compared). An inode number freed during the backup
/// and reused by a new file or folder passes neither, so the new one is captured.
fn already_captured(
    dir: &Dir,
    st: &rustix::fs::Stat,
    ids: &HashMap<Ident, usize>,
    entries: &[Entry],
) -> bool {
    let id = (st.st_dev, st.st_ino);
    let Some(entry) = ids.get(&id).and_then(|&i| entries.get(i)) else {
        return false;
    };
    if dir
        .stat(OsStr::from_bytes(&entry.name))
        .is_ok_and(|now| (now.st_dev, now.st_ino) == id)
    {
        return true;
    }
    let same_mtime = entry.meta.mtime == metadata_of(st).mtime;
    match entry.kind {
        EntryKind::File { size, .. } => same_mtime && size == st.st_size.max(0) as u64,
        EntryKind::Dir { .. } => same_mtime,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &[u8] = b"settle";

    fn repository(tmp: &Path) -> lifeboat_repository::Repository {
        use lifeboat_repository::Repository;
        let backend: std::sync::Arc<dyn lifeboat_storage::Backend> = std::sync::Arc::new(
            lifeboat_storage::ObjectStoreBackend::local(&tmp.join("repo"), true).unwrap(),
        );
        if !tmp.join("repo/config").exists() {
            Repository::init(
                backend.clone(),
                PASSWORD,
                lifeboat_format::keys::KdfParams::OWASP_MINIMUM,
            )
            .unwrap();
        }
        Repository::open(backend, PASSWORD, Some(&tmp.join("cache"))).unwrap()
    }

    fn paths_in(reader: &mut ChunkReader<'_>, id: &Id, below: &str, out: &mut Vec<String>) {
        for entry in load_tree(reader, id).unwrap().entries {
            let path = format!("{below}{}", String::from_utf8(entry.name).unwrap());
            if let EntryKind::Dir { tree } = entry.kind {
                paths_in(reader, &tree, &format!("{path}/"), out);
            }
            out.push(path);
        }
    }

    /// Backs up `src` with `hook` acting on the tree at its events; returns the capture and
    /// every path in it.
    fn capture_with(
        tmp: &Path,
        src: &Path,
        hook: impl FnMut(Event, &Path, usize) -> Option<std::io::Error> + 'static,
    ) -> (FilesCapture, Vec<String>) {
        let repo = repository(tmp);
        let writer = repo.writer();
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
        let capture = backup(&writer, src, None, &BackupOptions::default(), None);
        HOOK.with(|h| *h.borrow_mut() = None);
        let capture = capture.unwrap();
        writer.finish().unwrap();
        drop(repo);
        let repo = repository(tmp);
        let mut paths = Vec::new();
        paths_in(&mut repo.reader(), &capture.root, "", &mut paths);
        paths.sort();
        (capture, paths)
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn denied() -> Option<std::io::Error> {
        Some(std::io::Error::from_raw_os_error(libc_eacces()))
    }

    fn libc_eacces() -> i32 {
        rustix::io::Errno::ACCESS.raw_os_error()
    }

    #[test]
    fn a_name_first_seen_while_settling_that_vanishes_makes_no_point_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("a"), b"a");
        write(&src.join("x"), b"x, as scanned");
        // An application writes `tN.tmp` and renames it over `x`, again and again: every
        // listing while settling sees a temporary name that is gone before it is read.
        let root = src.clone();
        let (capture, paths) = capture_with(tmp.path(), &src, move |event, rel, round| {
            let tmp_name = |n: usize| root.join(format!("t{n}.tmp"));
            match event {
                Event::Scanned => std::fs::write(tmp_name(0), b"x, rewritten").unwrap(),
                Event::SettleListed if rel == Path::new("") => {
                    std::fs::rename(tmp_name(round), root.join("x")).unwrap();
                    std::fs::write(tmp_name(round + 1), b"x, rewritten").unwrap();
                }
                _ => {}
            }
            None
        });
        assert!(capture.skipped.is_empty(), "{:?}", capture.skipped);
        assert_eq!(capture.stats.files_skipped, 0);
        assert!(
            paths.contains(&"a".into()) && paths.contains(&"x".into()),
            "{paths:?}"
        );
    }

    #[test]
    fn a_scanned_file_is_captured_under_its_new_name_or_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        // Renamed once after the scan: captured under its new name, nothing skipped.
        let src = tmp.path().join("once");
        write(&src.join("a"), b"a");
        write(&src.join("e"), b"e");
        let root = src.clone();
        let (capture, paths) = capture_with(tmp.path(), &src, move |event, _, _| {
            if event == Event::Scanned {
                std::fs::rename(root.join("e"), root.join("e0")).unwrap();
            }
            None
        });
        assert!(capture.skipped.is_empty(), "{:?}", capture.skipped);
        assert_eq!(paths, ["a", "e0"]);

        // Moved to another folder after the scan: captured there.
        let src = tmp.path().join("moved");
        write(&src.join("d1/e"), b"e");
        write(&src.join("d2/f"), b"f");
        let root = src.clone();
        let (capture, paths) = capture_with(tmp.path(), &src, move |event, _, _| {
            if event == Event::Scanned {
                std::fs::rename(root.join("d1/e"), root.join("d2/e")).unwrap();
            }
            None
        });
        assert!(capture.skipped.is_empty(), "{:?}", capture.skipped);
        assert_eq!(paths, ["d1", "d2", "d2/e", "d2/f"]);

        // Renamed again after every listing: never captured, so skipped (once).
        let src = tmp.path().join("restless");
        write(&src.join("a"), b"a");
        write(&src.join("e"), b"e");
        let root = src.clone();
        let (capture, paths) = capture_with(tmp.path(), &src, move |event, _, round| {
            match event {
                Event::Scanned => std::fs::rename(root.join("e"), root.join("e0")).unwrap(),
                Event::SettleListed => std::fs::rename(
                    root.join(format!("e{round}")),
                    root.join(format!("e{}", round + 1)),
                )
                .unwrap(),
                _ => {}
            }
            None
        });
        assert_eq!(capture.skipped.len(), 1, "{:?}", capture.skipped);
        assert!(
            capture.skipped[0].contains("restless/e: renamed"),
            "{:?}",
            capture.skipped
        );
        assert_eq!(capture.stats.files_skipped, 1);
        assert_eq!(paths, ["a"]);
    }

    #[test]
    fn a_name_the_scan_skipped_is_not_tried_again_when_its_folder_settles() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("d/a"), b"a");
        write(&src.join("d/sub/x"), b"x");
        let root = src.clone();
        let (capture, paths) = capture_with(tmp.path(), &src, move |event, rel, _| {
            match event {
                Event::ScanList | Event::LateList if rel == Path::new("d/sub") => return denied(),
                Event::Scanned => std::fs::write(root.join("d/new"), b"new").unwrap(),
                _ => {}
            }
            None
        });
        assert_eq!(capture.skipped.len(), 1, "{:?}", capture.skipped);
        assert!(
            capture.skipped[0].contains("d/sub"),
            "{:?}",
            capture.skipped
        );
        assert_eq!(capture.stats.files_skipped, 1);
        assert_eq!(paths, ["d", "d/a", "d/new"]);
    }

    #[test]
    fn a_folder_that_can_no_longer_be_listed_is_skipped_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("d/a"), b"a");
        write(&src.join("e/b"), b"b");
        let root = src.clone();
        let (capture, paths) = capture_with(tmp.path(), &src, move |event, rel, _| {
            match event {
                Event::Scanned => {
                    std::fs::write(root.join("d/new"), b"new").unwrap();
                    std::fs::write(root.join("e/c"), b"c").unwrap();
                }
                // `d` as chmod 000 during the backup.
                Event::SettleList if rel == Path::new("d") => return denied(),
                _ => {}
            }
            None
        });
        assert_eq!(capture.skipped.len(), 1, "{:?}", capture.skipped);
        assert!(
            capture.skipped[0].contains("d: could not be listed again"),
            "{:?}",
            capture.skipped
        );
        assert_eq!(capture.stats.files_skipped, 1);
        assert_eq!(paths, ["d", "d/a", "e", "e/b", "e/c"]);
    }

    #[test]
    fn an_identity_counts_as_captured_only_for_the_same_file() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("b"), b"new file").unwrap();
        std::fs::hard_link(root.join("b"), root.join("link")).unwrap();
        let dir = Dir::open_source(root).unwrap();
        let st = dir.stat(OsStr::new("b")).unwrap();
        let m = std::fs::metadata(root.join("b")).unwrap();
        let entry = |name: &str, size: u64, mtime: Time| Entry {
            name: name.as_bytes().to_vec(),
            kind: EntryKind::File {
                size,
                chunks: Vec::new(),
            },
            meta: Metadata {
                mtime,
                ..metadata_of(&st)
            },
        };
        let now = metadata_of(&st).mtime;
        let old = Time { secs: 1, nanos: 0 };
        let ids = HashMap::from([((m.dev(), m.ino()), 0)]);
        let check = |e: Entry, ids: &HashMap<Ident, usize>| {
            already_captured(&dir, &st, ids, std::slice::from_ref(&e))
        };
        // A file captured as `a`, deleted; its inode number now `b`'s, a new file: captured.
        assert!(!check(entry("a", 3, old), &ids));
        assert!(!check(entry("a", 3, now), &ids));
        // `a` renamed to `b`: size and mtime unchanged, not captured twice.
        assert!(check(entry("a", m.len(), now), &ids));
        // Captured as `link`, which still leads to it: a second hard link.
        assert!(check(entry("link", 3, old), &ids));
        // The same inode number on another device is another file.
        let other = HashMap::from([((m.dev() + 1, m.ino()), 0)]);
        assert!(!check(entry("link", m.len(), now), &other));
    }

    #[test]
    fn a_path_filter_keeps_what_a_backup_captures() {
        let filter = PathFilter::new(&BackupOptions {
            include: vec!["**/*.csv".into()],
            exclude: vec!["tmp/**".into(), "*.bak".into()],
        })
        .unwrap();
        assert!(filter.captures(Path::new("2026/jan.csv"), false));
        assert!(filter.captures(Path::new("2026"), true));
        assert!(!filter.captures(Path::new("notes.txt"), false));
        assert!(!filter.captures(Path::new("tmp"), true));
        assert!(!filter.captures(Path::new("tmp/jan.csv"), false));
        assert!(!filter.captures(Path::new("old.bak"), false));
        let everything = PathFilter::new(&BackupOptions::default()).unwrap();
        assert!(everything.captures(Path::new("any/thing"), false));
    }

    #[test]
    fn a_file_swapped_after_the_scan_is_never_read_or_waited_on() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("outside"), b"secret").unwrap();
        let job_for = |name: &str| {
            let m = std::fs::symlink_metadata(root.join(name)).unwrap();
            Job {
                rel: PathBuf::from(name),
                size: m.len(),
                dev: m.dev(),
                inode: m.ino(),
            }
        };
        let top = Dir::open_source(root).unwrap();
        for (name, swap) in [("to-link", 0), ("to-fifo", 1), ("to-other", 2)] {
            std::fs::write(root.join(name), b"scanned").unwrap();
            let job = job_for(name);
            assert!(open_scanned(&top, &job).is_ok());
            if swap < 2 {
                std::fs::remove_file(root.join(name)).unwrap();
            }
            match swap {
                0 => std::os::unix::fs::symlink(root.join("outside"), root.join(name)).unwrap(),
                1 => rustix::fs::mknodat(
                    rustix::fs::CWD,
                    root.join(name),
                    FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    0,
                )
                .unwrap(),
                _ => {
                    // Another file under the same name, made while the old one still exists.
                    std::fs::write(root.join(format!("{name}.new")), b"other").unwrap();
                    std::fs::rename(root.join(format!("{name}.new")), root.join(name)).unwrap();
                }
            }
            // Returns at once (a FIFO without a writer would block a plain open).
            let err = open_scanned(&top, &job).unwrap_err().to_string();
            assert!(err.contains("since it was scanned"), "{name}: {err}");
        }
    }
}
