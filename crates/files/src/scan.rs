//! Backup of a directory tree: scan, read changed files in parallel, write trees.

use std::fs::File;
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
}

/// A child name no real file has: a directory all of whose children an exclude pattern
/// matches is left out whole.
const EXCLUDE_PROBE: &str = "\u{1}lifeboat-probe";

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
    },
    Dir(Vec<Node>),
    Other(EntryKind),
}

struct Node {
    name: Vec<u8>,
    meta: Metadata,
    kind: NodeKind,
}

/// A file's chunks and the bytes actually read, or why it could not be read.
type ReadResult = std::result::Result<(Vec<Id>, u64), String>;

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
    ) -> Result<Option<Vec<Node>>> {
        let shown = self.source.join(rel);
        let listing = dir.names().map_err(io_err(&shown))?;
        let mut nodes = Vec::with_capacity(listing.len());
        for name in listing {
            let rel_path = rel.join(&name);
            if self.filter.exclude.is_match(&rel_path) {
                continue;
            }
            let st = match dir.stat(&name) {
                Ok(st) => st,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.skip(&rel_path, &e);
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
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        self.skip(&rel_path, &e);
                        continue;
                    }
                };
                match self.scan_dir(&child, &rel_path, parent_tree.as_ref()) {
                    Ok(Some(children)) => {
                        self.stats.dirs += 1;
                        NodeKind::Dir(children)
                    }
                    Ok(None) => continue,
                    Err(FilesError::Io { source, .. }) => {
                        self.skip(&rel_path, &source);
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
                                }
                            }
                        }
                    }
                    FileType::Symlink => match dir.read_link(&name) {
                        Ok(target) => NodeKind::Other(EntryKind::Symlink { target }),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            self.skip(&rel_path, &e);
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
        Ok(Some(nodes))
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
    let nodes = scanner
        .scan_dir(&top, Path::new(""), parent_tree.as_ref())?
        .unwrap_or_default();
    if let Some(p) = scanner.progress {
        p.bytes_total
            .store(scanner.jobs.iter().map(|j| j.size).sum(), Ordering::Relaxed);
        p.files_total
            .store(scanner.jobs.len() as u64, Ordering::Relaxed);
    }

    let results = read_files(writer, &top, &scanner.jobs, progress)?;
    let mut stats = scanner.stats;
    let mut skipped = scanner.skipped;
    stats.files_read = scanner.jobs.len() as u64;

    let mut trees = writer.packer(ChunkKind::Tree);
    let mut results: Vec<Option<ReadResult>> = results.into_iter().map(Some).collect();
    let root = write_tree(
        writer,
        source,
        &mut trees,
        nodes,
        &mut results,
        &scanner.jobs,
        &mut stats,
        &mut skipped,
    )?;
    writer.flush(&mut trees)?;

    let after = writer.stats();
    stats.chunks_new = after.chunks_new - before.chunks_new;
    stats.bytes_new = after.bytes_new - before.bytes_new;
    stats.bytes_stored = after.bytes_stored - before.bytes_stored;
    stats.duration_ms = started.elapsed().as_millis() as u64;
    Ok(FilesCapture {
        root,
        stats,
        skipped,
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
                    let outcome =
                        open_scanned(top, job)
                            .map_err(StreamError::Read)
                            .and_then(|mut f| {
                                store_stream(writer, &mut packer, &mut f, &mut buf, progress)
                            });
                    let outcome = match outcome {
                        Err(StreamError::Store(e)) => {
                            *failure.lock().expect("poisoned") = Some(e.into());
                            break;
                        }
                        other => other,
                    };
                    *results[i].lock().expect("poisoned") =
                        Some(outcome.map_err(|e| e.to_string()));
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
                .unwrap_or_else(|| Err("not read".into()))
        })
        .collect())
}

/// Opens a file the scan listed, refusing anything but that same regular file: a symlink or
/// FIFO swapped in since is never read from or waited on.
fn open_scanned(top: &Dir, job: &Job) -> std::io::Result<File> {
    let file = top.open_file_beneath(&job.rel).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            std::io::Error::other("replaced by a symlink since it was scanned")
        } else {
            e
        }
    })?;
    let st = rustix::fs::fstat(&file)?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(std::io::Error::other(format!(
            "replaced by a {} since it was scanned",
            kind_name(ft)
        )));
    }
    if (st.st_dev, st.st_ino) != (job.dev, job.inode) {
        return Err(std::io::Error::other(
            "replaced by another file since it was scanned",
        ));
    }
    Ok(file)
}

fn kind_name(ft: FileType) -> &'static str {
    match ft {
        FileType::Directory => "folder",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice | FileType::BlockDevice => "device",
        _ => "file of another kind",
    }
}

#[allow(clippy::too_many_arguments)]
fn write_tree(
    writer: &RepoWriter<'_>,
    source: &Path,
    packer: &mut lifeboat_repository::Packer,
    nodes: Vec<Node>,
    results: &mut [Option<ReadResult>],
    jobs: &[Job],
    stats: &mut CaptureStats,
    skipped: &mut Vec<String>,
) -> Result<Id> {
    let mut tree = Tree {
        entries: Vec::with_capacity(nodes.len()),
    };
    for node in nodes {
        let kind = match node.kind {
            NodeKind::File {
                size,
                job: None,
                reused,
            } => EntryKind::File {
                size,
                chunks: reused,
            },
            NodeKind::File { job: Some(i), .. } => match results[i].take() {
                // The size actually read: the file may have changed since the scan.
                Some(Ok((chunks, size))) => EntryKind::File { size, chunks },
                other => {
                    let e = match other {
                        Some(Err(e)) => e,
                        _ => "not read".to_string(),
                    };
                    let path = display_path(&source.join(&jobs[i].rel));
                    tracing::warn!("skipping {path}: {e}");
                    stats.files_skipped += 1;
                    stats.files -= 1;
                    skipped.push(format!("{path}: {e}"));
                    continue;
                }
            },
            NodeKind::Dir(children) => EntryKind::Dir {
                tree: write_tree(
                    writer, source, packer, children, results, jobs, stats, skipped,
                )?,
            },
            NodeKind::Other(kind) => kind,
        };
        tree.entries.push(Entry {
            name: node.name,
            kind,
            meta: node.meta,
        });
    }
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
    let id = writer.repository().key().chunk_id(&bytes);
    writer.add(packer, id, &bytes)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
