//! Restore of a tree, or a sub-path of it, into a target directory.
//!
//! Nothing at the target is trusted: folders are reached only through handles opened
//! beneath the target without following links ([`crate::beneath`]), and each file, symlink
//! and FIFO is made under a fresh unpredictable name and renamed over the old one only once
//! it is complete, its content checked chunk by chunk against the repository's hashes and its
//! length against the tree. A file that cannot be restored (a corrupt pack, a full disk) leaves
//! what was under its name as it was, and is named in the error.
//!
//! A mirror ([`RestoreOptions::mirror`]) removes nothing until every entry is in place, so an
//! interrupted or failed one leaves the old entries beside the new (the target at least as
//! useful as before): then a file whose name a folder holds takes its place (the folder
//! cleared within the scope, only if every such folder can go whole), and what the point lacks
//! is removed, before the folders' times are set.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use lifeboat_format::Id;
use lifeboat_format::tree::{Entry, EntryKind, Metadata, Tree};
use lifeboat_repository::{ChunkReader, Repository};
use serde::Serialize;

use crate::beneath::{Dir, set_metadata};
use crate::mirror::{Removed, clear, mirror};
use crate::scan::{BackupOptions, Progress};
use crate::{FilesError, Result, io_err, load_tree, threads};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore only this path inside the tree (a directory's contents, or one file).
    pub subpath: Option<PathBuf>,
    /// Restore owners (only possible as root; default: when running as root).
    pub owners: Option<bool>,
    /// A mirror: once every entry is restored, remove what the restore point lacks at the
    /// target within this scope (the resource's include/exclude, relative to the tree's
    /// root). `None`: an overlay, removing nothing.
    pub mirror: Option<BackupOptions>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// What a mirror restore removed (nothing for an overlay).
    pub removed: Removed,
}

/// Walks `root` down to `subpath`: the entry found, or the root itself.
pub(crate) fn descend(
    reader: &mut ChunkReader<'_>,
    root: Id,
    subpath: Option<&Path>,
) -> Result<(Option<Entry>, Id)> {
    let Some(sub) = subpath else {
        return Ok((None, root));
    };
    let mut tree_id = root;
    let mut found: Option<Entry> = None;
    let parts: Vec<&OsStr> = sub
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let tree = load_tree(reader, &tree_id)?;
        let entry = tree
            .get(part.as_bytes())
            .cloned()
            .ok_or_else(|| FilesError::NoSuchPath(sub.display().to_string()))?;
        match &entry.kind {
            EntryKind::Dir { tree } => tree_id = *tree,
            _ if i + 1 == parts.len() => {}
            _ => return Err(FilesError::NoSuchPath(sub.display().to_string())),
        }
        found = Some(entry);
    }
    Ok((found, tree_id))
}

pub fn restore(
    repo: &Repository,
    root: Id,
    target: &Path,
    options: &RestoreOptions,
    progress: Option<&Progress>,
) -> Result<RestoreStats> {
    let owners = options
        .owners
        .unwrap_or_else(|| rustix::process::geteuid().is_root());
    let mut reader = repo.reader();
    let (tree, whole) = match descend(&mut reader, root, options.subpath.as_deref())? {
        // A single file: restored into the target as itself.
        (Some(entry), _) if !matches!(entry.kind, EntryKind::Dir { .. }) => (
            Tree {
                entries: vec![entry],
            },
            false,
        ),
        (_, tree_id) => (load_tree(&mut reader, &tree_id)?, true),
    };
    let top = Dir::open_target(target).map_err(io_err(target))?;
    let mut layout = Layout {
        reader,
        owners,
        files: Vec::new(),
        // The target itself: its own metadata is not the restore point's to set.
        dirs: vec![DirJob {
            rel: PathBuf::new(),
            meta: Metadata::default(),
        }],
        failed: Vec::new(),
        stats: RestoreStats::default(),
    };
    layout.lay_out(&tree, &top, 0)?;
    let Layout {
        mut reader,
        files,
        dirs,
        mut failed,
        mut stats,
        ..
    } = layout;
    if let Some(p) = progress {
        let total: u64 = files.iter().map(|f| f.size).sum();
        p.bytes_total.store(total, Ordering::Relaxed);
        p.files_total.store(files.len() as u64, Ordering::Relaxed);
    }
    let mirroring = options.mirror.as_ref().filter(|_| whole);
    let (bytes, unwritten, waiting) = write_files(
        repo,
        &top,
        &dirs,
        &files,
        owners,
        progress,
        mirroring.is_some(),
    )?;
    stats.bytes = bytes;
    stats.files -= unwritten.len() as u64;
    failed.extend(unwritten);
    let mut cleared = Removed::default();
    let base = options.subpath.clone().unwrap_or_default();
    // Only when every folder in the way can go entirely: else none is touched.
    let clearable = |scope: &BackupOptions| {
        waiting.iter().all(|w| {
            let rel = dirs[w.dir].rel.join(&w.name);
            top.open_beneath(&dirs[w.dir].rel).is_ok_and(|dir| {
                clear(
                    &dir,
                    &w.name,
                    &rel,
                    &base,
                    scope,
                    false,
                    &mut Removed::default(),
                )
                .unwrap_or(false)
            })
        })
    };
    if let Some(scope) = mirroring
        && failed.is_empty()
        && clearable(scope)
    {
        // Everything else is in place: a folder the point has a file for goes (its contents
        // within the scope), and the waiting file takes its name.
        for w in &waiting {
            let rel = dirs[w.dir].rel.join(&w.name);
            let done = top
                .open_beneath(&dirs[w.dir].rel)
                .map_err(|e| e.to_string())
                .and_then(|dir| {
                    let gone = clear(&dir, &w.name, &rel, &base, scope, true, &mut cleared)
                        .map_err(|e| e.to_string())?;
                    let done = if gone {
                        dir.commit_staging(&w.staged, &w.name)
                            .map_err(|e| e.to_string())
                    } else {
                        Err(
                            "a folder with contents outside the resource's scope is in the way"
                                .to_string(),
                        )
                    };
                    if done.is_err() {
                        dir.remove_staging(&w.staged);
                    }
                    done
                });
            if let Err(e) = done {
                stats.files -= 1;
                failed.push(format!("{}: {e}", crate::display_path(&rel)));
            }
        }
    } else {
        give_up(&top, &dirs, &waiting);
        stats.files -= waiting.len() as u64;
        let why = if mirroring.is_some() && failed.is_empty() {
            " (with entries outside the resource's scope, or that cannot be removed)"
        } else {
            ""
        };
        failed.extend(waiting.iter().map(|w| {
            format!(
                "{}: a folder with contents is in the way{why}",
                shown(&dirs, w.dir, Some(&w.name)),
            )
        }));
    }
    // Only once everything is in place: a failed or interrupted restore leaves the old
    // entries beside the new ones and loses nothing. Before the folders' times are set, as
    // removing from a folder changes its mtime.
    if let Some(scope) = &options.mirror
        && whole
        && failed.is_empty()
    {
        let base = options.subpath.clone().unwrap_or_default();
        stats.removed = mirror(&mut reader, &tree, &top, &base, scope)?;
        stats.removed.absorb(cleared);
        failed.extend(
            stats
                .removed
                .failed
                .iter()
                .map(|f| format!("{f} (not in the restore point, yet not removed)")),
        );
    }
    // Children before parents, so writing into a folder does not disturb its mtime.
    for (i, dir) in dirs.iter().enumerate().rev().filter(|(i, _)| *i > 0) {
        let applied = top
            .open_beneath(&dir.rel)
            .and_then(|fd| set_metadata(&fd, &dir.meta, owners));
        if let Err(e) = applied {
            failed.push(format!("{}: {e}", shown(&dirs, i, None)));
        }
    }
    if !failed.is_empty() {
        return Err(FilesError::Incomplete {
            target: target.to_path_buf(),
            failed,
        });
    }
    Ok(stats)
}

/// A folder of the restore: where it is below the target, and its metadata.
struct DirJob {
    rel: PathBuf,
    meta: Metadata,
}

struct FileJob {
    /// Its folder's index in the list of folders (0 is the target).
    dir: usize,
    name: OsString,
    chunks: Vec<Id>,
    size: u64,
    meta: Metadata,
}

/// A path relative to the target, for messages, kept lossless (see [`crate::display_path`]).
fn shown(dirs: &[DirJob], dir: usize, name: Option<&OsStr>) -> String {
    let path = match name {
        Some(n) => dirs[dir].rel.join(n),
        None => dirs[dir].rel.clone(),
    };
    crate::display_path(&path)
}

struct Layout<'r> {
    reader: ChunkReader<'r>,
    owners: bool,
    files: Vec<FileJob>,
    dirs: Vec<DirJob>,
    /// Entries that could not be made, with why.
    failed: Vec<String>,
    stats: RestoreStats,
}

impl Layout<'_> {
    /// Makes folders, symlinks and FIFOs below `dir` (the folder `index`) and lists the files
    /// to write.
    fn lay_out(&mut self, tree: &Tree, dir: &Dir, index: usize) -> Result<()> {
        for entry in &tree.entries {
            let name = OsStr::from_bytes(&entry.name);
            match &entry.kind {
                EntryKind::Dir { tree } => {
                    let child = match dir.make_child(name) {
                        Ok(child) => child,
                        Err(e) => {
                            let path = shown(&self.dirs, index, Some(name));
                            self.failed.push(format!("{path}/ and all in it: {e}"));
                            continue;
                        }
                    };
                    self.stats.dirs += 1;
                    self.dirs.push(DirJob {
                        rel: self.dirs[index].rel.join(name),
                        meta: entry.meta.clone(),
                    });
                    let sub = load_tree(&mut self.reader, tree)?;
                    self.lay_out(&sub, &child, self.dirs.len() - 1)?;
                }
                EntryKind::File { chunks, size } => {
                    self.stats.files += 1;
                    self.files.push(FileJob {
                        dir: index,
                        name: name.to_os_string(),
                        chunks: chunks.clone(),
                        size: *size,
                        meta: entry.meta.clone(),
                    });
                }
                EntryKind::Symlink { target } => {
                    let made = dir
                        .create_staging_symlink(OsStr::from_bytes(target))
                        .and_then(|staged| {
                            let done = dir
                                .set_symlink_metadata(&staged, &entry.meta, self.owners)
                                .and_then(|()| dir.commit_staging(&staged, name));
                            if done.is_err() {
                                dir.remove_staging(&staged);
                            }
                            done
                        });
                    match made {
                        Ok(()) => self.stats.symlinks += 1,
                        Err(e) => self
                            .failed
                            .push(format!("{}: {e}", shown(&self.dirs, index, Some(name)))),
                    }
                }
                EntryKind::Fifo => {
                    let made = dir.create_staging_fifo().and_then(|(fd, staged)| {
                        let done = set_metadata(&fd, &entry.meta, self.owners)
                            .and_then(|()| dir.commit_staging(&staged, name));
                        if done.is_err() {
                            dir.remove_staging(&staged);
                        }
                        done
                    });
                    if let Err(e) = made {
                        self.failed
                            .push(format!("{}: {e}", shown(&self.dirs, index, Some(name))));
                    }
                }
                // Sockets belong to the process that made them, and device nodes to the
                // system: neither is data to restore.
                EntryKind::Socket
                | EntryKind::CharDevice { .. }
                | EntryKind::BlockDevice { .. } => {}
            }
        }
        Ok(())
    }
}

/// Writes the files on all cores; returns the bytes written and the files that could not be
/// restored, with why. Files whose chunks share frames are handed out together so that each
/// frame is fetched and opened once.
fn write_files(
    repo: &Repository,
    top: &Dir,
    dirs: &[DirJob],
    files: &[FileJob],
    owners: bool,
    progress: Option<&Progress>,
    defer: bool,
) -> Result<(u64, Vec<String>, Vec<Waiting>)> {
    let mut batches: Vec<std::ops::Range<usize>> = Vec::new();
    let frame_of = |f: &FileJob| {
        f.chunks
            .first()
            .and_then(|c| repo.index().locate(c))
            .map(|l| (l.pack, l.entry.frame_offset))
    };
    let mut start = 0;
    for i in 1..=files.len() {
        if i == files.len()
            || files[i].chunks.len() > 1
            || frame_of(&files[i]) != frame_of(&files[i - 1])
        {
            batches.push(start..i);
            start = i;
        }
    }
    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let failed: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let waiting: Mutex<Vec<Waiting>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<FilesError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads() {
            scope.spawn(|| {
                let mut reader = repo.reader();
                let mut buf = Vec::new();
                // The folder of the last file written: most files share it with the one before.
                let mut open: Option<(usize, Dir)> = None;
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches.len() || fatal.lock().expect("poisoned").is_some() {
                        break;
                    }
                    for job in &files[batches[b].clone()] {
                        let dir = match &open {
                            Some((i, dir)) if *i == job.dir => Ok(dir),
                            _ => top
                                .open_beneath(&dirs[job.dir].rel)
                                .map(|dir| &open.insert((job.dir, dir)).1),
                        };
                        let outcome = match dir {
                            Ok(dir) => {
                                write_one(&mut reader, dir, job, owners, &mut buf, progress, defer)
                            }
                            Err(e) => Err(FilesError::Io {
                                path: dirs[job.dir].rel.clone(),
                                source: e,
                            }),
                        };
                        match outcome {
                            Ok(Written::InPlace(n)) => {
                                bytes.fetch_add(n, Ordering::Relaxed);
                            }
                            Ok(Written::Waiting(n, staged)) => {
                                bytes.fetch_add(n, Ordering::Relaxed);
                                waiting.lock().expect("poisoned").push(Waiting {
                                    dir: job.dir,
                                    name: job.name.clone(),
                                    staged,
                                });
                            }
                            Err(e) if affects_one_file(&e) => {
                                let path = shown(dirs, job.dir, Some(&job.name));
                                let why = match e {
                                    FilesError::Io { source, .. } => source.to_string(),
                                    other => other.to_string(),
                                };
                                failed
                                    .lock()
                                    .expect("poisoned")
                                    .push(format!("{path}: {why}"));
                            }
                            Err(e) => {
                                fatal.lock().expect("poisoned").get_or_insert(e);
                                break;
                            }
                        }
                        if let Some(p) = progress {
                            p.files_done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let waiting = waiting.into_inner().expect("poisoned");
    if let Some(e) = fatal.into_inner().expect("poisoned") {
        give_up(top, dirs, &waiting);
        return Err(e);
    }
    let mut failed = failed.into_inner().expect("poisoned");
    failed.sort();
    Ok((bytes.into_inner(), failed, waiting))
}

/// Removes the staging files of files left waiting: what is under their names stays.
fn give_up(top: &Dir, dirs: &[DirJob], waiting: &[Waiting]) {
    for w in waiting {
        if let Ok(dir) = top.open_beneath(&dirs[w.dir].rel) {
            dir.remove_staging(&w.staged);
        }
    }
}

/// Whether an error spoils only the file being written (bad or missing data for it, a local
/// write problem) rather than the whole restore (the repository cannot be reached).
fn affects_one_file(e: &FilesError) -> bool {
    use lifeboat_repository::RepoError;
    match e {
        FilesError::Io { .. } | FilesError::Inconsistent(_) => true,
        FilesError::Repo(RepoError::Corrupt { .. } | RepoError::MissingChunk { .. }) => true,
        FilesError::Repo(RepoError::Storage(s)) => s.is_not_found(),
        _ => false,
    }
}

/// A file written: in place, or (a mirror's) complete under its staging name because a
/// folder with contents is in its way.
enum Written {
    InPlace(u64),
    Waiting(u64, OsString),
}

/// A complete file waiting for a folder in its way to be cleared.
struct Waiting {
    /// Its folder's index in the list of folders.
    dir: usize,
    name: OsString,
    staged: OsString,
}

/// Writes one file under a staging name and renames it into place once complete: until
/// then, whatever was under its name stays as it was. With `defer`, a folder with contents
/// under its name leaves it complete under its staging name.
fn write_one(
    reader: &mut ChunkReader<'_>,
    dir: &Dir,
    job: &FileJob,
    owners: bool,
    buf: &mut Vec<u8>,
    progress: Option<&Progress>,
    defer: bool,
) -> Result<Written> {
    let (mut file, staged) = dir.create_staging().map_err(io_err(Path::new(&job.name)))?;
    let outcome = (|| {
        let mut written = 0u64;
        for c in &job.chunks {
            buf.clear();
            // Checked against the chunk's keyed hash as it is read.
            reader.read_into(c, buf)?;
            file.write_all(buf).map_err(io_err(Path::new(&job.name)))?;
            written += buf.len() as u64;
            if let Some(p) = progress {
                p.bytes_done.fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
        }
        if written != job.size {
            return Err(FilesError::Inconsistent(format!(
                "its chunks hold {written} bytes where the tree says {}",
                job.size
            )));
        }
        set_metadata(&file, &job.meta, owners).map_err(io_err(Path::new(&job.name)))?;
        drop(file);
        match dir.commit_staging(&staged, &job.name) {
            Ok(()) => Ok(Written::InPlace(written)),
            // A mirror may clear the folder, once everything else is restored: the complete
            // file waits under its staging name till then.
            Err(e) if defer && e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                Ok(Written::Waiting(written, staged.clone()))
            }
            Err(e) => Err(io_err(Path::new(&job.name))(e)),
        }
    })();
    if outcome.is_err() {
        dir.remove_staging(&staged);
    }
    outcome
}
