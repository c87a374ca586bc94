//! Backup of a directory tree: scan, read changed files in parallel, write trees.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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

use crate::stream::{StreamError, store_stream};
use crate::{FilesError, Result, io_err, load_tree, threads};

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
    path: PathBuf,
    size: u64,
}

fn metadata_of(m: &std::fs::Metadata) -> Metadata {
    Metadata {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: Time {
            secs: m.mtime(),
            nanos: m.mtime_nsec().clamp(0, 999_999_999) as u32,
        },
        ctime: Time {
            secs: m.ctime(),
            nanos: m.ctime_nsec().clamp(0, 999_999_999) as u32,
        },
        inode: m.ino(),
    }
}

struct Scanner<'a, 'r> {
    writer: &'a RepoWriter<'r>,
    reader: ChunkReader<'r>,
    filter: Filter,
    jobs: Vec<Job>,
    stats: CaptureStats,
    skipped: Vec<String>,
    progress: Option<&'a Progress>,
}

impl Scanner<'_, '_> {
    /// Scans `dir`; returns None when a non-default include leaves it with nothing.
    fn scan_dir(
        &mut self,
        dir: &Path,
        rel: &Path,
        parent: Option<&Tree>,
    ) -> Result<Option<Vec<Node>>> {
        let mut listing: Vec<_> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io_err(dir))?;
        listing.sort_by_cached_key(|e| e.file_name());
        let mut nodes = Vec::with_capacity(listing.len());
        for dirent in listing {
            let name = dirent.file_name();
            let path = dirent.path();
            let rel_path = rel.join(&name);
            if self.filter.exclude.is_match(&rel_path) {
                continue;
            }
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.skip(&path, &e);
                    continue;
                }
            };
            let name_bytes = name.as_bytes().to_vec();
            let ft = meta.file_type();
            // `dir/**` excludes the directory itself, not just what is in it.
            if ft.is_dir() && self.filter.exclude.is_match(rel_path.join(EXCLUDE_PROBE)) {
                continue;
            }
            let md = metadata_of(&meta);
            let parent_entry = parent.and_then(|t| t.get(&name_bytes));
            let kind = if ft.is_dir() {
                let parent_tree = match parent_entry.map(|e| &e.kind) {
                    Some(EntryKind::Dir { tree }) => load_tree(&mut self.reader, tree).ok(),
                    _ => None,
                };
                match self.scan_dir(&path, &rel_path, parent_tree.as_ref()) {
                    Ok(Some(children)) => {
                        self.stats.dirs += 1;
                        NodeKind::Dir(children)
                    }
                    Ok(None) => continue,
                    Err(FilesError::Io { path, source }) => {
                        self.skip(&path, &source);
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
                if ft.is_file() {
                    self.stats.files += 1;
                    self.stats.bytes += meta.len();
                    match self.unchanged(parent_entry, &md, meta.len()) {
                        Some(chunks) => NodeKind::File {
                            size: meta.len(),
                            job: None,
                            reused: chunks,
                        },
                        None => {
                            self.jobs.push(Job {
                                path: path.clone(),
                                size: meta.len(),
                            });
                            NodeKind::File {
                                size: meta.len(),
                                job: Some(self.jobs.len() - 1),
                                reused: Vec::new(),
                            }
                        }
                    }
                } else if ft.is_symlink() {
                    match std::fs::read_link(&path) {
                        Ok(target) => NodeKind::Other(EntryKind::Symlink {
                            target: target.as_os_str().as_bytes().to_vec(),
                        }),
                        Err(e) => {
                            self.skip(&path, &e);
                            continue;
                        }
                    }
                } else if ft.is_fifo() {
                    NodeKind::Other(EntryKind::Fifo)
                } else if ft.is_socket() {
                    NodeKind::Other(EntryKind::Socket)
                } else if ft.is_char_device() {
                    NodeKind::Other(EntryKind::CharDevice { rdev: meta.rdev() })
                } else if ft.is_block_device() {
                    NodeKind::Other(EntryKind::BlockDevice { rdev: meta.rdev() })
                } else {
                    continue;
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

    fn skip(&mut self, path: &Path, e: &dyn std::fmt::Display) {
        tracing::warn!("skipping {}: {e}", path.display());
        self.stats.files_skipped += 1;
        self.skipped.push(format!("{}: {e}", path.display()));
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
    let meta = std::fs::metadata(source).map_err(io_err(source))?;
    if !meta.is_dir() {
        return Err(FilesError::Io {
            path: source.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let mut reader = repo.reader();
    let parent_tree = match parent {
        Some(id) => load_tree(&mut reader, &id).ok(),
        None => None,
    };
    let mut scanner = Scanner {
        writer,
        reader,
        filter: Filter::new(options)?,
        jobs: Vec::new(),
        stats: CaptureStats::default(),
        skipped: Vec::new(),
        progress,
    };
    let nodes = scanner
        .scan_dir(source, Path::new(""), parent_tree.as_ref())?
        .unwrap_or_default();
    if let Some(p) = scanner.progress {
        p.bytes_total
            .store(scanner.jobs.iter().map(|j| j.size).sum(), Ordering::Relaxed);
        p.files_total
            .store(scanner.jobs.len() as u64, Ordering::Relaxed);
    }

    let results = read_files(writer, &scanner.jobs, progress)?;
    let mut stats = scanner.stats;
    let mut skipped = scanner.skipped;
    stats.files_read = scanner.jobs.len() as u64;

    let mut trees = writer.packer(ChunkKind::Tree);
    let mut results: Vec<Option<ReadResult>> = results.into_iter().map(Some).collect();
    let root = write_tree(
        writer,
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
                        File::open(&job.path)
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

fn write_tree(
    writer: &RepoWriter<'_>,
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
                    tracing::warn!("skipping {}: {e}", jobs[i].path.display());
                    stats.files_skipped += 1;
                    stats.files -= 1;
                    skipped.push(format!("{}: {e}", jobs[i].path.display()));
                    continue;
                }
            },
            NodeKind::Dir(children) => EntryKind::Dir {
                tree: write_tree(writer, packer, children, results, jobs, stats, skipped)?,
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
}
