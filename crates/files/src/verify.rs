//! Comparing a restore point with a directory, without writing anything. Content is compared
//! chunk by chunk: the file is read in the lengths the index records and each piece is hashed
//! with the repository's key, so no data needs to be fetched from the repository.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use lifeboat_format::Id;
use lifeboat_format::tree::{EntryKind, Tree};
use lifeboat_repository::{ChunkReader, Repository};
use serde::Serialize;

use crate::restore::descend;
use crate::scan::{BackupOptions, PathFilter};
use crate::{Result, load_tree};

/// One way a directory differs from a restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The path relative to the compared directory.
    pub path: String,
    pub problem: String,
}

/// Every difference between `dir` and the restore point's tree `root` (or `subpath` in it).
pub fn verify(
    repo: &Repository,
    root: Id,
    subpath: Option<&Path>,
    dir: &Path,
) -> Result<Vec<Difference>> {
    compare(repo, root, subpath, dir, None)
}

/// The same, within a resource's scope (its include/exclude, relative to the tree's root): a
/// path the backup leaves out is no difference.
pub fn verify_within(
    repo: &Repository,
    root: Id,
    subpath: Option<&Path>,
    dir: &Path,
    scope: &BackupOptions,
) -> Result<Vec<Difference>> {
    let filter = PathFilter::new(scope)?;
    let base = subpath.map(Path::to_path_buf).unwrap_or_default();
    compare(repo, root, subpath, dir, Some((&filter, &base)))
}

/// A scope's filter and where the folder being compared sits in the resource's tree.
type Scope<'a> = Option<(&'a PathFilter, &'a Path)>;

fn compare(
    repo: &Repository,
    root: Id,
    subpath: Option<&Path>,
    dir: &Path,
    scope: Scope<'_>,
) -> Result<Vec<Difference>> {
    let mut reader = repo.reader();
    let mut out = Vec::new();
    let (entry, tree_id) = descend(&mut reader, root, subpath)?;
    let tree = match entry {
        Some(e) if !matches!(e.kind, EntryKind::Dir { .. }) => Tree { entries: vec![e] },
        _ => load_tree(&mut reader, &tree_id)?,
    };
    compare_dir(repo, &mut reader, &tree, dir, "", scope, &mut out)?;
    Ok(out)
}

fn compare_dir(
    repo: &Repository,
    reader: &mut ChunkReader<'_>,
    tree: &Tree,
    dir: &Path,
    rel: &str,
    scope: Scope<'_>,
    out: &mut Vec<Difference>,
) -> Result<()> {
    let mut diff = |path: String, problem: String| out.push(Difference { path, problem });
    let mut present: Vec<Vec<u8>> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().as_bytes().to_vec())
            .collect(),
        Err(e) => {
            diff(display(rel), format!("cannot read directory: {e}"));
            return Ok(());
        }
    };
    present.sort();
    for name in &present {
        if tree.get(name).is_none() {
            if let Some((filter, base)) = scope {
                let path = base.join(OsStr::from_bytes(name));
                let is_dir = std::fs::symlink_metadata(dir.join(OsStr::from_bytes(name)))
                    .is_ok_and(|m| m.is_dir());
                if !filter.captures(&path, is_dir) {
                    continue;
                }
            }
            diff(join(rel, name), "not in the restore point".into());
        }
    }
    let mut subdirs = Vec::new();
    for entry in &tree.entries {
        let rel_path = join(rel, &entry.name);
        let path = dir.join(OsStr::from_bytes(&entry.name));
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                diff(rel_path, "missing".into());
                continue;
            }
        };
        let ft = meta.file_type();
        match &entry.kind {
            EntryKind::Dir { tree } => {
                if ft.is_dir() {
                    subdirs.push((*tree, path, rel_path));
                } else {
                    diff(rel_path, "should be a directory".into());
                }
            }
            EntryKind::File { size, chunks } => {
                if !ft.is_file() {
                    diff(rel_path, "should be a regular file".into());
                    continue;
                }
                if meta.len() != *size {
                    diff(
                        rel_path,
                        format!("size is {}, the restore point has {size}", meta.len()),
                    );
                    continue;
                }
                if let Some(problem) = compare_content(repo, &path, chunks) {
                    diff(rel_path.clone(), problem);
                }
                if meta.mode() & 0o7777 != entry.meta.mode {
                    diff(
                        rel_path.clone(),
                        format!(
                            "mode is {:o}, the restore point has {:o}",
                            meta.mode() & 0o7777,
                            entry.meta.mode
                        ),
                    );
                }
                if meta.mtime() != entry.meta.mtime.secs {
                    diff(rel_path, "modification time differs".into());
                }
            }
            EntryKind::Symlink { target } => match std::fs::read_link(&path) {
                Ok(t) if ft.is_symlink() && t.as_os_str().as_bytes() == target.as_slice() => {}
                _ => diff(
                    rel_path,
                    format!("should be a symlink to {}", String::from_utf8_lossy(target)),
                ),
            },
            _ => {}
        }
    }
    for (tree_id, path, rel_path) in subdirs {
        let sub = load_tree(reader, &tree_id)?;
        let below =
            scope.map(|(filter, base)| (filter, base.join(path.file_name().unwrap_or_default())));
        let scope = below
            .as_ref()
            .map(|(filter, base)| (*filter, base.as_path()));
        compare_dir(repo, reader, &sub, &path, &rel_path, scope, out)?;
    }
    Ok(())
}

fn compare_content(repo: &Repository, path: &Path, chunks: &[Id]) -> Option<String> {
    // Read-only, yet never through a link or into a FIFO swapped in since the listing.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot read: {e}")),
    };
    let mut buf = Vec::new();
    for (n, c) in chunks.iter().enumerate() {
        let Some(loc) = repo.index().locate(c) else {
            return Some(format!(
                "chunk {} of the restore point is missing from the repository",
                c.short()
            ));
        };
        buf.resize(loc.entry.length as usize, 0);
        if let Err(e) = file.read_exact(&mut buf) {
            return Some(format!("cannot read: {e}"));
        }
        if repo.key().chunk_id(&buf) != *c {
            return Some(format!(
                "content differs (chunk {} of {})",
                n + 1,
                chunks.len()
            ));
        }
    }
    None
}

fn join(rel: &str, name: &[u8]) -> String {
    let name = crate::escape_bytes(name);
    if rel.is_empty() {
        name
    } else {
        format!("{rel}/{name}")
    }
}

fn display(rel: &str) -> String {
    if rel.is_empty() {
        ".".into()
    } else {
        rel.into()
    }
}
