//! Restore of a tree, or a sub-path of it, into a target directory.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use lifeboat_format::Id;
use lifeboat_format::tree::{Entry, EntryKind, Metadata, Tree};
use lifeboat_repository::{ChunkReader, Repository};
use serde::Serialize;

use crate::scan::Progress;
use crate::{FilesError, Result, io_err, load_tree, threads};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore only this path inside the tree (a directory's contents, or one file).
    pub subpath: Option<PathBuf>,
    /// Restore owners (only possible as root; default: when running as root).
    pub owners: Option<bool>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

struct FileJob {
    path: PathBuf,
    chunks: Vec<Id>,
    meta: Metadata,
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
    std::fs::create_dir_all(target).map_err(io_err(target))?;
    let mut stats = RestoreStats::default();
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let tree = match descend(&mut reader, root, options.subpath.as_deref())? {
        // A single file: restored into the target as itself.
        (Some(entry), _) if !matches!(entry.kind, EntryKind::Dir { .. }) => Tree {
            entries: vec![entry],
        },
        (_, tree_id) => load_tree(&mut reader, &tree_id)?,
    };
    lay_out(
        &mut reader,
        &tree,
        target,
        owners,
        &mut files,
        &mut dirs,
        &mut stats,
    )?;
    if let Some(p) = progress {
        let total: u64 = files
            .iter()
            .flat_map(|f: &FileJob| f.chunks.iter())
            .filter_map(|c| repo.index().locate(c).map(|l| u64::from(l.entry.length)))
            .sum();
        p.bytes_total.store(total, Ordering::Relaxed);
        p.files_total.store(files.len() as u64, Ordering::Relaxed);
    }
    stats.bytes = write_files(repo, &files, owners, progress)?;
    // Children before parents, so writing into a directory does not disturb its mtime.
    for (path, meta) in dirs.iter().rev() {
        apply_metadata(path, meta, owners, false).map_err(io_err(path))?;
    }
    Ok(stats)
}

/// Creates directories and symlinks and lists the files to write.
fn lay_out(
    reader: &mut ChunkReader<'_>,
    tree: &Tree,
    dir: &Path,
    owners: bool,
    files: &mut Vec<FileJob>,
    dirs: &mut Vec<(PathBuf, Metadata)>,
    stats: &mut RestoreStats,
) -> Result<()> {
    for entry in &tree.entries {
        let path = dir.join(OsStr::from_bytes(&entry.name));
        match &entry.kind {
            EntryKind::Dir { tree } => {
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
                stats.dirs += 1;
                dirs.push((path.clone(), entry.meta.clone()));
                let sub = load_tree(reader, tree)?;
                lay_out(reader, &sub, &path, owners, files, dirs, stats)?;
            }
            EntryKind::File { chunks, .. } => {
                stats.files += 1;
                files.push(FileJob {
                    path,
                    chunks: chunks.clone(),
                    meta: entry.meta.clone(),
                });
            }
            EntryKind::Symlink { target } => {
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &path)
                    .map_err(io_err(&path))?;
                apply_metadata(&path, &entry.meta, owners, true).map_err(io_err(&path))?;
                stats.symlinks += 1;
            }
            EntryKind::Fifo => {
                let _ = std::fs::remove_file(&path);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &path,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(entry.meta.mode),
                    0,
                )
                .map_err(|e| io_err(&path)(e.into()))?;
                apply_metadata(&path, &entry.meta, owners, false).map_err(io_err(&path))?;
            }
            // Sockets belong to the process that made them, and device nodes to the system:
            // neither is data to restore.
            EntryKind::Socket | EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } => {}
        }
    }
    Ok(())
}

/// Writes the files on all cores. Files whose chunks share frames are handed out together so
/// that each frame is fetched and opened once.
fn write_files(
    repo: &Repository,
    files: &[FileJob],
    owners: bool,
    progress: Option<&Progress>,
) -> Result<u64> {
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
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<FilesError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads() {
            scope.spawn(|| {
                let mut reader = repo.reader();
                let mut buf = Vec::new();
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches.len() || fatal.lock().expect("poisoned").is_some() {
                        break;
                    }
                    for job in &files[batches[b].clone()] {
                        match write_one(&mut reader, job, owners, &mut buf, progress) {
                            Ok(n) => {
                                bytes.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(FilesError::Io { path, source }) => {
                                errors
                                    .lock()
                                    .expect("poisoned")
                                    .push(format!("{}: {source}", path.display()));
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
    if let Some(e) = fatal.into_inner().expect("poisoned") {
        return Err(e);
    }
    let errors = errors.into_inner().expect("poisoned");
    if let Some(first) = errors.first() {
        return Err(FilesError::Incomplete {
            count: errors.len(),
            first: first.clone(),
        });
    }
    Ok(bytes.into_inner())
}

fn write_one(
    reader: &mut ChunkReader<'_>,
    job: &FileJob,
    owners: bool,
    buf: &mut Vec<u8>,
    progress: Option<&Progress>,
) -> Result<u64> {
    // Replace rather than write through whatever is there (it may be a symlink).
    if let Ok(m) = std::fs::symlink_metadata(&job.path)
        && !m.is_dir()
    {
        std::fs::remove_file(&job.path).map_err(io_err(&job.path))?;
    }
    let mut file = File::create(&job.path).map_err(io_err(&job.path))?;
    let mut written = 0u64;
    for c in &job.chunks {
        buf.clear();
        reader.read_into(c, buf)?;
        file.write_all(buf).map_err(io_err(&job.path))?;
        written += buf.len() as u64;
        if let Some(p) = progress {
            p.bytes_done.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
    }
    apply_file_metadata(&file, &job.meta, owners).map_err(io_err(&job.path))?;
    Ok(written)
}

/// Metadata through the open descriptor: no second lookup or open of the path.
fn apply_file_metadata(file: &File, meta: &Metadata, owners: bool) -> std::io::Result<()> {
    if owners {
        rustix::fs::fchown(
            file,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        )?;
    }
    // After chown, which clears setuid/setgid bits.
    file.set_permissions(std::fs::Permissions::from_mode(meta.mode))?;
    let mtime = system_time(meta.mtime);
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(mtime)
            .set_accessed(mtime),
    )
}

fn apply_metadata(
    path: &Path,
    meta: &Metadata,
    owners: bool,
    is_symlink: bool,
) -> std::io::Result<()> {
    if owners {
        let flags = if is_symlink {
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW
        } else {
            rustix::fs::AtFlags::empty()
        };
        rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
            flags,
        )?;
    }
    let mtime = filetime::FileTime::from_unix_time(meta.mtime.secs, meta.mtime.nanos);
    if is_symlink {
        filetime::set_symlink_file_times(path, mtime, mtime)?;
    } else {
        // After chown, which clears setuid/setgid bits.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))?;
        filetime::set_file_times(path, mtime, mtime)?;
    }
    Ok(())
}

/// A stored time as a `SystemTime` (before the epoch too); out of range is the epoch.
fn system_time(t: lifeboat_format::tree::Time) -> std::time::SystemTime {
    let epoch = std::time::UNIX_EPOCH;
    let whole = if t.secs >= 0 {
        epoch.checked_add(std::time::Duration::from_secs(t.secs as u64))
    } else {
        epoch.checked_sub(std::time::Duration::from_secs(t.secs.unsigned_abs()))
    };
    whole
        .and_then(|w| w.checked_add(std::time::Duration::from_nanos(u64::from(t.nanos))))
        .unwrap_or(epoch)
}
