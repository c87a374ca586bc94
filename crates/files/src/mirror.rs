//! Making a restored tree equal to its restore point: what the point lacks at the target is
//! removed, within the resource's scope (its include/exclude), and what lies outside the scope
//! is left alone.
//!
//! Removal reaches everything through the same handles as the restore ([`crate::beneath`]):
//! folders are opened below their parent without following links, a symlink is removed and
//! never followed, and nothing outside the target is touched. A folder the point lacks loses
//! its contents within the scope, and goes itself only once empty.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use lifeboat_format::Id;
use lifeboat_format::tree::{EntryKind, Tree};
use lifeboat_repository::{ChunkReader, Repository};
use rustix::fs::{AtFlags, FileType};
use serde::{Deserialize, Serialize};

use crate::beneath::Dir;
use crate::restore::descend;
use crate::scan::{BackupOptions, PathFilter};
use crate::{Result, io_err, load_tree};

/// At most this many removed paths are named; all are counted.
pub const LISTED_REMOVALS: usize = 20;

/// What a mirror restore removed (or, in a dry run, would remove) from its target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// Every entry removed (files, links and folders, folders' contents included).
    pub count: u64,
    /// The first of them, relative to the target (folders end in `/`), at most
    /// [`LISTED_REMOVALS`].
    pub paths: Vec<String>,
    /// Entries that should have gone but could not be removed, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl Removed {
    /// The removal as one line for people: "2 removed: a.csv, old/".
    pub fn summary(&self) -> String {
        if self.paths.is_empty() {
            format!("{} removed", self.count)
        } else {
            format!("{} removed: {}", self.count, self.listing())
        }
    }

    /// The paths named, and how many more: "a.csv, old/ and 3 more".
    pub fn listing(&self) -> String {
        let mut text = self.paths.join(", ");
        if self.count > self.paths.len() as u64 {
            text.push_str(&format!(
                " and {} more",
                self.count - self.paths.len() as u64
            ));
        }
        text
    }
}

/// What `target` holds that a restore of `root` (or `subpath` in it) would remove, within
/// `scope`: a dry run of [`crate::restore`] with [`crate::RestoreOptions::mirror`]. Writes
/// nothing; a target that does not exist yet has nothing to remove.
pub fn removals(
    repo: &Repository,
    root: Id,
    subpath: Option<&Path>,
    target: &Path,
    scope: &BackupOptions,
) -> Result<Removed> {
    let mut reader = repo.reader();
    let tree = match descend(&mut reader, root, subpath)? {
        // A single file restored into the target: nothing beside it is the point's to judge.
        (Some(entry), _) if !matches!(entry.kind, EntryKind::Dir { .. }) => {
            return Ok(Removed::default());
        }
        (_, tree_id) => load_tree(&mut reader, &tree_id)?,
    };
    let top = match Dir::open_source(target) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Removed::default()),
        Err(e) => return Err(io_err(target)(e)),
    };
    let filter = PathFilter::new(scope)?;
    let mut sweep = Sweep {
        filter: &filter,
        base: subpath.map(Path::to_path_buf).unwrap_or_default(),
        act: false,
        out: Removed::default(),
    };
    sweep.tree(&mut reader, &tree, &top, Path::new(""))?;
    Ok(sweep.out)
}

/// Removes from `top` what `tree` lacks, within `scope` (`base`: where the tree sits in the
/// resource's tree, for the scope's patterns).
pub(crate) fn mirror(
    reader: &mut ChunkReader<'_>,
    tree: &Tree,
    top: &Dir,
    base: &Path,
    scope: &BackupOptions,
) -> Result<Removed> {
    let filter = PathFilter::new(scope)?;
    let mut sweep = Sweep {
        filter: &filter,
        base: base.to_path_buf(),
        act: true,
        out: Removed::default(),
    };
    sweep.tree(reader, tree, top, Path::new(""))?;
    Ok(sweep.out)
}

/// Removes `name` from `dir` (at `rel` below the target), a folder with its contents, within
/// `scope`, adding to `removed`; says whether it is gone (without `act`, whether it would
/// be, removing nothing). For a folder where the point has a file, once everything else is
/// restored.
pub(crate) fn clear(
    dir: &Dir,
    name: &OsStr,
    rel: &Path,
    base: &Path,
    scope: &BackupOptions,
    act: bool,
    removed: &mut Removed,
) -> Result<bool> {
    let filter = PathFilter::new(scope)?;
    let mut sweep = Sweep {
        filter: &filter,
        base: base.to_path_buf(),
        act,
        out: std::mem::take(removed),
    };
    let gone = sweep.remove(dir, name, rel);
    *removed = sweep.out;
    Ok(gone)
}

impl Removed {
    /// Adds what another removal removed.
    pub(crate) fn absorb(&mut self, other: Removed) {
        self.count += other.count;
        let room = LISTED_REMOVALS.saturating_sub(self.paths.len());
        self.paths.extend(other.paths.into_iter().take(room));
        self.failed.extend(other.failed);
    }
}

struct Sweep<'a> {
    filter: &'a PathFilter,
    base: PathBuf,
    /// False for a dry run: count, never remove.
    act: bool,
    out: Removed,
}

impl Sweep<'_> {
    /// Walks the point's folder `tree` alongside the target's folder `dir` (at `rel`).
    fn tree(
        &mut self,
        reader: &mut ChunkReader<'_>,
        tree: &Tree,
        dir: &Dir,
        rel: &Path,
    ) -> Result<()> {
        let names = match dir.names() {
            Ok(names) => names,
            Err(e) => {
                self.fail(rel, None, &e);
                return Ok(());
            }
        };
        for name in names {
            let path = rel.join(&name);
            match tree.get(name.as_bytes()).map(|e| &e.kind) {
                Some(EntryKind::Dir { tree: sub }) => {
                    // Not a folder here (yet, in a dry run): the restore replaces it whole.
                    let Ok(child) = dir.open_child(&name) else {
                        continue;
                    };
                    let sub = load_tree(reader, sub)?;
                    self.tree(reader, &sub, &child, &path)?;
                }
                // A folder where the point has a file: the restore clears what of it is in
                // scope before the file takes its place; a dry run counts that too.
                Some(_) if !self.act => {
                    if dir
                        .stat(&name)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                    {
                        self.remove(dir, &name, &path);
                    }
                }
                Some(_) => {}
                None => {
                    self.remove(dir, &name, &path);
                }
            }
        }
        Ok(())
    }

    /// Removes `name` (at `rel`) from `dir` when in scope, a folder with its contents in
    /// scope; says whether it is gone.
    fn remove(&mut self, dir: &Dir, name: &OsStr, rel: &Path) -> bool {
        let st = match dir.stat(name) {
            Ok(st) => st,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(e) => {
                self.fail(rel, None, &e);
                return false;
            }
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if !self.filter.captures(&self.base.join(rel), is_dir) {
            return false;
        }
        if is_dir {
            let child = match dir.open_child(name) {
                Ok(child) => child,
                Err(e) => {
                    self.fail(rel, Some('/'), &e);
                    return false;
                }
            };
            let names: Vec<OsString> = match child.names() {
                Ok(names) => names,
                Err(e) => {
                    self.fail(rel, Some('/'), &e);
                    return false;
                }
            };
            let mut emptied = true;
            for n in names {
                emptied &= self.remove(&child, &n, &rel.join(&n));
            }
            if !emptied {
                // What is left lies outside the scope (or could not go): the folder stays.
                return false;
            }
        }
        if self.act {
            let flags = if is_dir {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            match dir.unlink(name, flags) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.fail(rel, is_dir.then_some('/'), &e);
                    return false;
                }
            }
        }
        self.out.count += 1;
        if self.out.paths.len() < LISTED_REMOVALS {
            self.out.paths.push(shown(rel, is_dir.then_some('/')));
        }
        true
    }

    fn fail(&mut self, rel: &Path, suffix: Option<char>, e: &std::io::Error) {
        self.out.failed.push(format!("{}: {e}", shown(rel, suffix)));
    }
}

fn shown(rel: &Path, suffix: Option<char>) -> String {
    let mut text = if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        crate::display_path(rel)
    };
    if let Some(c) = suffix {
        text.push(c);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sweeps every name of `root` as if the point held nothing there.
    fn sweep_all(root: &Path, scope: &BackupOptions, act: bool) -> Removed {
        let filter = PathFilter::new(scope).unwrap();
        let top = Dir::open_source(root).unwrap();
        let mut sweep = Sweep {
            filter: &filter,
            base: PathBuf::new(),
            act,
            out: Removed::default(),
        };
        for name in top.names().unwrap() {
            sweep.remove(&top, &name, Path::new(&name));
        }
        sweep.out
    }

    #[test]
    fn removal_stays_in_scope_and_never_follows_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious.csv"), b"keep").unwrap();
        let target = tmp.path().join("target");
        std::fs::create_dir_all(target.join("mixed")).unwrap();
        std::fs::create_dir_all(target.join("gone/deeper")).unwrap();
        std::fs::create_dir_all(target.join("tmp")).unwrap();
        std::fs::write(target.join("mixed/x.csv"), b"x").unwrap();
        std::fs::write(target.join("mixed/notes.txt"), b"out of scope").unwrap();
        std::fs::write(target.join("gone/deeper/z.csv"), b"z").unwrap();
        std::fs::write(target.join("tmp/excluded.csv"), b"excluded").unwrap();
        std::fs::write(target.join("keep.txt"), b"out of scope").unwrap();
        std::os::unix::fs::symlink(&outside, target.join("link.csv")).unwrap();
        let scope = BackupOptions {
            include: vec!["**/*.csv".into()],
            exclude: vec!["tmp/**".into()],
        };

        let dry = sweep_all(&target, &scope, false);
        assert_eq!(
            std::fs::read_dir(target.join("gone/deeper"))
                .unwrap()
                .count(),
            1
        );
        let done = sweep_all(&target, &scope, true);
        assert_eq!(dry, done, "a dry run names what the removal removes");
        let mut paths = done.paths.clone();
        paths.sort();
        assert_eq!(
            paths,
            [
                "gone/",
                "gone/deeper/",
                "gone/deeper/z.csv",
                "link.csv",
                "mixed/x.csv"
            ]
        );
        assert_eq!(done.count, 5);
        assert!(done.failed.is_empty());
        // Out of scope: kept, and the folder holding it with it.
        assert!(target.join("mixed/notes.txt").exists());
        assert!(target.join("keep.txt").exists());
        assert!(target.join("tmp/excluded.csv").exists());
        assert!(!target.join("gone").exists());
        // The link went, never what it pointed to.
        assert!(std::fs::symlink_metadata(target.join("link.csv")).is_err());
        assert_eq!(
            std::fs::read(outside.join("precious.csv")).unwrap(),
            b"keep"
        );
    }

    #[test]
    fn the_summary_is_bounded_and_counts_all() {
        let removed = Removed {
            count: 25,
            paths: (0..LISTED_REMOVALS).map(|i| format!("f{i}")).collect(),
            failed: Vec::new(),
        };
        let text = removed.summary();
        assert!(text.starts_with("25 removed: f0, f1"), "{text}");
        assert!(text.ends_with("and 5 more"), "{text}");
    }
}
