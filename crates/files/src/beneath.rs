//! Writing inside a target folder that others may write to, without ever leaving it.
//!
//! Every folder below the target is opened relative to the target's handle by the kernel with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so neither a symlink nor `..` planted
//! there (or left by an earlier restore) is followed; where `openat2` is missing, each
//! component is opened with `O_NOFOLLOW` instead. New files are created exclusively under
//! unpredictable names and renamed into place, and metadata is applied to open handles,
//! never to paths.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use lifeboat_format::tree::{Metadata, Time};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

/// An open folder: everything below it is reached through this handle.
#[derive(Debug)]
pub(crate) struct Dir(OwnedFd);

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

impl Dir {
    /// The target folder itself, created when missing. The path is the caller's choice, so
    /// symlinks in it are followed; nothing below it will be.
    pub(crate) fn open_target(path: &Path) -> io::Result<Dir> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir(fd))
    }

    /// A folder to read (a tree to capture). As with the target, the path is the caller's.
    pub(crate) fn open_source(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir(fd))
    }

    /// A file below this folder opened to be read: never through a symlink (the last
    /// component included), and without waiting should it have become a FIFO.
    pub(crate) fn open_file_beneath(&self, rel: &Path) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(&self.0, rel, flags, Mode::empty(), resolve) {
            Ok(fd) => Ok(File::from(fd)),
            // No openat2 here (an old kernel, or a seccomp filter that refuses it): the
            // slower, equally safe walk.
            Err(
                rustix::io::Errno::NOSYS
                | rustix::io::Errno::PERM
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::TOOBIG,
            ) => {
                let (parent, name) = match (rel.parent(), rel.file_name()) {
                    (Some(parent), Some(name)) => (parent, name),
                    _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
                };
                let dir = self.open_by_components(parent)?;
                Ok(File::from(rustix::fs::openat(
                    &dir.0,
                    name,
                    flags,
                    Mode::empty(),
                )?))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The names in this folder, sorted by their bytes (`.` and `..` left out).
    pub(crate) fn names(&self) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.0)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names)
    }

    /// What `name` in this folder is, not following a symlink.
    pub(crate) fn stat(&self, name: &OsStr) -> io::Result<rustix::fs::Stat> {
        Ok(rustix::fs::statat(
            &self.0,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Where the symlink `name` in this folder points.
    pub(crate) fn read_link(&self, name: &OsStr) -> io::Result<Vec<u8>> {
        Ok(rustix::fs::readlinkat(&self.0, name, Vec::new())?.into_bytes())
    }

    /// A folder below this one (`rel` relative to it), refusing any symlink or `..` on the way.
    pub(crate) fn open_beneath(&self, rel: &Path) -> io::Result<Dir> {
        if rel.as_os_str().is_empty() {
            return Ok(Dir(self.0.try_clone()?));
        }
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(&self.0, rel, DIR_FLAGS, Mode::empty(), resolve) {
            Ok(fd) => Ok(Dir(fd)),
            // No openat2 here (an old kernel, or a seccomp filter that refuses it): the
            // slower, equally safe walk.
            Err(
                rustix::io::Errno::NOSYS
                | rustix::io::Errno::PERM
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::TOOBIG,
            ) => self.open_by_components(rel),
            Err(e) => Err(e.into()),
        }
    }

    /// The same for kernels without `openat2`: one `O_NOFOLLOW` open per component.
    fn open_by_components(&self, rel: &Path) -> io::Result<Dir> {
        let mut dir = Dir(self.0.try_clone()?);
        for part in rel.components() {
            let Component::Normal(name) = part else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{}` leaves the target", rel.display()),
                ));
            };
            dir = dir.open_child(name)?;
        }
        Ok(dir)
    }

    /// A folder directly in this one, never through a symlink.
    pub(crate) fn open_child(&self, name: &OsStr) -> io::Result<Dir> {
        check_name(name)?;
        Ok(Dir(rustix::fs::openat(
            &self.0,
            name,
            DIR_FLAGS,
            Mode::empty(),
        )?))
    }

    /// The folder `name` in this one, made when missing (private until its metadata is
    /// applied). Whatever else is in its way (a symlink, a file) is replaced: the restore
    /// point says a folder belongs there.
    pub(crate) fn make_child(&self, name: &OsStr) -> io::Result<Dir> {
        check_name(name)?;
        for _ in 0..3 {
            match rustix::fs::mkdirat(&self.0, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            match rustix::fs::openat(&self.0, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => return Ok(Dir(fd)),
                // A symlink (ELOOP) or something other than a folder (ENOTDIR) is in the way.
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    self.remove_non_dir(name)?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::other(
            "something keeps replacing this folder with a link or a file",
        ))
    }

    /// Removes `name` if it is not a folder (never following it).
    fn remove_non_dir(&self, name: &OsStr) -> io::Result<()> {
        let st = rustix::fs::statat(&self.0, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
            return Ok(());
        }
        match rustix::fs::unlinkat(&self.0, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A new file with an unpredictable name in this folder, created exclusively (never
    /// through anything already there) and readable by no one else until it is complete.
    pub(crate) fn create_staging(&self) -> io::Result<(File, OsString)> {
        loop {
            let name = staging_name()?;
            let flags =
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(&self.0, &name, flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => return Ok((File::from(fd), name)),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A symlink with an unpredictable name in this folder.
    pub(crate) fn create_staging_symlink(&self, target: &OsStr) -> io::Result<OsString> {
        loop {
            let name = staging_name()?;
            match rustix::fs::symlinkat(target, &self.0, &name) {
                Ok(()) => return Ok(name),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A FIFO with an unpredictable name in this folder, and a handle on it (opened without
    /// blocking and checked to be that FIFO) to apply metadata to.
    pub(crate) fn create_staging_fifo(&self) -> io::Result<(OwnedFd, OsString)> {
        loop {
            let name = staging_name()?;
            match rustix::fs::mknodat(
                &self.0,
                &name,
                rustix::fs::FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            ) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
            let opened = rustix::fs::openat(
                &self.0,
                &name,
                OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            let fd = match opened {
                Ok(fd) => fd,
                Err(e) => {
                    self.remove_staging(&name);
                    return Err(e.into());
                }
            };
            let st = rustix::fs::fstat(&fd)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Fifo {
                return Err(io::Error::other(
                    "the new FIFO was replaced while it was made",
                ));
            }
            return Ok((fd, name));
        }
    }

    /// Puts a staged entry in place under `name`, atomically replacing a file, symlink or
    /// FIFO there. An empty folder in the way is removed; a folder with contents is not.
    pub(crate) fn commit_staging(&self, staging: &OsStr, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        match rustix::fs::renameat(&self.0, staging, &self.0, name) {
            Ok(()) => Ok(()),
            Err(
                rustix::io::Errno::ISDIR | rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST,
            ) => match rustix::fs::unlinkat(&self.0, name, AtFlags::REMOVEDIR) {
                Ok(()) => Ok(rustix::fs::renameat(&self.0, staging, &self.0, name)?),
                Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => Err(io::Error::new(
                    io::ErrorKind::DirectoryNotEmpty,
                    "a folder with contents is in the way",
                )),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `name` from this folder: a file, symlink or FIFO, or with `REMOVEDIR` an
    /// empty folder. A symlink is removed itself, never what it points to.
    pub(crate) fn unlink(&self, name: &OsStr, flags: AtFlags) -> io::Result<()> {
        check_name(name)?;
        Ok(rustix::fs::unlinkat(&self.0, name, flags)?)
    }

    /// Removes a staged entry that will not be used.
    pub(crate) fn remove_staging(&self, staging: &OsStr) {
        let _ = rustix::fs::unlinkat(&self.0, staging, AtFlags::empty());
    }

    /// Owner and times of the symlink `name` in this folder, never of what it points to.
    pub(crate) fn set_symlink_metadata(
        &self,
        name: &OsStr,
        meta: &Metadata,
        owners: bool,
    ) -> io::Result<()> {
        if owners {
            rustix::fs::chownat(
                &self.0,
                name,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rustix::fs::utimensat(
            &self.0,
            name,
            &timestamps(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }
}

/// A new file beside `path` (in the same folder, so it can be renamed over `path`), created
/// exclusively under an unpredictable name, never through a link, readable by its owner only.
/// Returns the file and its path.
pub fn staging_file_beside(path: &Path) -> io::Result<(File, std::path::PathBuf)> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = Dir::open_source(parent)?;
    let (file, name) = dir.create_staging()?;
    Ok((file, parent.join(name)))
}

/// Owner, mode and times through an open handle: no second lookup of any path.
pub(crate) fn set_metadata(fd: impl AsFd, meta: &Metadata, owners: bool) -> io::Result<()> {
    if owners {
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        )?;
    }
    // After chown, which clears setuid/setgid bits.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode & 0o7777))?;
    rustix::fs::futimens(&fd, &timestamps(meta.mtime))?;
    Ok(())
}

/// A name from a restore point must be one plain path component.
fn check_name(name: &OsStr) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty()
        || bytes == b"."
        || bytes == b".."
        || bytes.contains(&b'/')
        || bytes.contains(&0)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is not a file name", name.to_string_lossy()),
        ));
    }
    Ok(())
}

/// `.lifeboat-<128 random bits>.tmp`: no one can guess it to plant something there first.
fn staging_name() -> io::Result<OsString> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(OsString::from(format!(".lifeboat-{hex}.tmp")))
}

fn timestamps(t: Time) -> Timestamps {
    let spec = Timespec {
        tv_sec: t.secs,
        tv_nsec: i64::from(t.nanos.min(999_999_999)) as _,
    };
    Timestamps {
        last_access: spec,
        last_modification: spec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_below_the_target_are_never_reached_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(target.join("real")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, target.join("link")).unwrap();
        let dir = Dir::open_target(&target).unwrap();
        assert!(dir.open_beneath(Path::new("real")).is_ok());
        assert!(dir.open_beneath(Path::new("link")).is_err());
        assert!(dir.open_beneath(Path::new("real/../link")).is_err());
        assert!(dir.open_beneath(Path::new("../elsewhere")).is_err());
        assert!(dir.open_by_components(Path::new("link")).is_err());
        assert!(dir.open_by_components(Path::new("../elsewhere")).is_err());
        // make_child replaces the link by a folder of its own, leaving `elsewhere` alone.
        let made = dir.make_child(OsStr::new("link")).unwrap();
        let (mut f, staged) = made.create_staging().unwrap();
        std::io::Write::write_all(&mut f, b"x").unwrap();
        made.commit_staging(&staged, OsStr::new("file")).unwrap();
        assert!(target.join("link").is_dir() && !target.join("link").is_symlink());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(dir.make_child(OsStr::new("..")).is_err());
        assert!(dir.make_child(OsStr::new("a/b")).is_err());
    }

    #[test]
    fn a_staged_file_replaces_a_symlink_and_never_writes_through_it() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("f")).unwrap();
        let dir = Dir::open_target(&target).unwrap();
        let (mut f, staged) = dir.create_staging().unwrap();
        std::io::Write::write_all(&mut f, b"new").unwrap();
        dir.commit_staging(&staged, OsStr::new("f")).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert_eq!(std::fs::read(target.join("f")).unwrap(), b"new");
        assert!(!target.join("f").is_symlink());
    }
}
