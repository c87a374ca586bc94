//! SQLite databases (`kind = "sqlite"`): a consistent online copy with `VACUUM INTO` (one
//! read transaction, so writers carry on), stored as a document; restored next to the target,
//! checked with `PRAGMA integrity_check`, then renamed into place.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_repository::{RepoWriter, Repository};
use rusqlite::{Connection, OpenFlags};

use crate::document::{Document, document_chunks, store};
use crate::{Result, ServiceError};

fn sqlite_err(path: &Path, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Sqlite {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

pub fn capture_sqlite(writer: &RepoWriter<'_>, path: &Path) -> Result<Document> {
    if !path.is_file() {
        return Err(sqlite_err(path, "no such database file"));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_err(path, e))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| sqlite_err(path, e))?;
    let dir =
        tempfile::tempdir().map_err(|e| ServiceError::Io(format!("temporary directory: {e}")))?;
    let copy = dir.path().join("copy.sqlite");
    conn.execute("VACUUM INTO ?1", [copy.to_string_lossy().as_ref()])
        .map_err(|e| sqlite_err(path, e))?;
    drop(conn);
    let mut file = std::fs::File::open(&copy).map_err(|e| sqlite_err(&copy, e))?;
    store(writer, "database.sqlite", &mut file)
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Restores to `path`; refuses an existing file unless `replace`.
pub fn restore_sqlite(
    repo: &Repository,
    root: &lifeboat_format::Id,
    path: &Path,
    replace: bool,
) -> Result<u64> {
    if path.exists() && !replace {
        return Err(ServiceError::Exists {
            path: path.display().to_string(),
        });
    }
    let chunks = document_chunks(repo, root)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| sqlite_err(parent, e))?;
    }
    // Exclusive and unguessable: nothing planted beside the target is written through.
    let (mut file, staging) =
        lifeboat_files::staging_file_beside(path).map_err(|e| sqlite_err(path, e))?;
    // The new file takes the mode and owner of the one it replaces, so the application can
    // still open it (the staging file is private until then).
    let (mode, owner) = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => (m.mode() & 0o7777, Some((m.uid(), m.gid()))),
        _ => (0o644, None),
    };
    let written = lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut file)
        .map_err(ServiceError::from)
        .and_then(|n| {
            if let Some((uid, gid)) = owner
                && rustix::process::geteuid().is_root()
            {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                    .map_err(|e| sqlite_err(&staging, e))?;
            }
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .and_then(|()| file.sync_all())
                .map_err(|e| sqlite_err(&staging, e))?;
            Ok(n)
        });
    drop(file);
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    let check: String =
        match Connection::open_with_flags(&staging, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("PRAGMA integrity_check", [], |row| row.get(0)))
        {
            Ok(check) => check,
            Err(e) => {
                let _ = std::fs::remove_file(&staging);
                return Err(sqlite_err(&staging, e));
            }
        };
    if check != "ok" {
        let _ = std::fs::remove_file(&staging);
        return Err(sqlite_err(
            path,
            format!("restored copy fails its integrity check: {check}"),
        ));
    }
    // A journal left by the old database would be replayed onto the new one.
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sidecar(path, suffix));
    }
    std::fs::rename(&staging, path).map_err(|e| sqlite_err(path, e))?;
    Ok(written)
}
