//! Staging files and temporary folders under way in this process, so that a process stopped
//! by a signal removes them (`remove_staged`) rather than leaving a half-written copy of a
//! database beside its target, or a capture's copy in `TMPDIR`. They are made, renamed into
//! place and removed only through here.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

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
        let renamed = if STOPPED.load(Ordering::SeqCst) {
            Err(interrupted())
        } else {
            std::fs::rename(&self.path, to).map(|()| list.retain(|p| p != &self.path))
        };
        // Released before `self` is dropped, which removes the file unless it was renamed.
        drop(list);
        renamed
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

/// A private folder (mode 0700) this process made for a temporary copy: removed with what
/// is in it when dropped, and by a signal's clean-up. The folder stays locked (`flock`)
/// meanwhile, so another process's `remove_stale_dirs` leaves it alone.
#[derive(Debug)]
pub(crate) struct StagedDir {
    path: PathBuf,
    _lock: File,
}

impl StagedDir {
    /// A new folder `<prefix><128 random bits in hex>` in `base`.
    pub fn create(base: &Path, prefix: &str) -> std::io::Result<StagedDir> {
        let mut list = staged();
        if STOPPED.load(Ordering::SeqCst) {
            return Err(interrupted());
        }
        loop {
            let path = base.join(format!("{prefix}{}", random_hex()?));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            let lock = File::open(&path).and_then(|lock| {
                rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
                Ok(lock)
            });
            return match lock {
                Ok(lock) => {
                    list.push(path.clone());
                    Ok(StagedDir { path, _lock: lock })
                }
                Err(e) => {
                    let _ = std::fs::remove_dir(&path);
                    Err(e)
                }
            };
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        let mut list = staged();
        if let Some(i) = list.iter().position(|p| p == &self.path) {
            list.swap_remove(i);
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// 128 random bits in hex: a name no one can guess to plant something there first.
pub(crate) fn random_hex() -> std::io::Result<String> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}

/// Removes the folders in `base` named exactly `<prefix><32 hex digits>` that a killed
/// process left: this user's, last changed before `before`, and locked by no one (a process
/// using its folder holds the lock). Returns those removed.
pub(crate) fn remove_stale_dirs(base: &Path, prefix: &str, before: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let me = rustix::process::geteuid().as_raw();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(hex) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(
                meta.ctime().max(0) as u64,
                meta.ctime_nsec().clamp(0, 999_999_999) as u32,
            );
        if !meta.is_dir() || meta.uid() != me || changed >= before {
            continue;
        }
        let Ok(dir) = File::open(&path) else { continue };
        if rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let same = std::fs::symlink_metadata(&path)
            .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        if same && std::fs::remove_dir_all(&path).is_ok() {
            tracing::info!(path = %path.display(), "removed a temporary folder a killed process left");
            removed.push(path);
        }
    }
    removed
}

/// Removes every staging file and temporary folder this process has under way and stops any
/// more being made or renamed into place (for a process stopping on a signal); returns those
/// removed.
pub fn remove_staged() -> Vec<PathBuf> {
    let mut list = staged();
    STOPPED.store(true, Ordering::SeqCst);
    list.drain(..)
        .filter(|p| match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).is_ok(),
            Ok(_) => std::fs::remove_file(p).is_ok(),
            Err(_) => false,
        })
        .collect()
}
