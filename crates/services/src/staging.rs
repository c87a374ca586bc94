//! Staging files under way in this process, so that a process stopped by a signal removes
//! them (`remove_staged`) rather than leaving a half-written copy of a database beside its
//! target. A staging file is made, renamed into place and removed only through here.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

static STAGED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// A signal came: no staging file is made or renamed any more.
static STOPPED: AtomicBool = AtomicBool::new(false);

fn staged() -> MutexGuard<'static, Vec<PathBuf>> {
    STAGED.lock().unwrap_or_else(|p| p.into_inner())
}

fn interrupted() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Interrupted,
        "stopped by a signal: the staging file was removed",
    )
}

/// A staging file this process made: removed when dropped unless it was renamed into place.
#[derive(Debug)]
pub(crate) struct Staged {
    path: PathBuf,
}

impl Staged {
    /// Makes the file with `create` and registers it, both under the registry's lock, so a
    /// signal's clean-up never misses one.
    pub fn create(
        path: PathBuf,
        create: impl FnOnce(&Path) -> std::io::Result<File>,
    ) -> std::io::Result<(Staged, File)> {
        let mut list = staged();
        if STOPPED.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        let file = create(&path)?;
        list.push(path.clone());
        Ok((Staged { path }, file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the staging file over `to`, unless a signal's clean-up removed it.
    pub fn rename_to(self, to: &Path) -> std::io::Result<()> {
        let mut list = staged();
        if STOPPED.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        std::fs::rename(&self.path, to)?;
        list.retain(|p| p != &self.path);
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let mut list = staged();
        if let Some(i) = list.iter().position(|p| p == &self.path) {
            list.swap_remove(i);
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes every staging file this process has under way and stops any more being made or
/// renamed into place (for a process stopping on a signal); returns those removed.
pub fn remove_staged() -> Vec<PathBuf> {
    let mut list = staged();
    STOPPED.store(true, Ordering::SeqCst);
    list.drain(..)
        .filter(|p| std::fs::remove_file(p).is_ok())
        .collect()
}
