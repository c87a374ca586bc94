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
    // `VACUUM INTO` writes a rollback-journal file: a WAL database is marked WAL again in the
    // copy's header, so it comes back as it was.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .map_err(|e| sqlite_err(path, e))?;
    drop(conn);
    if mode.eq_ignore_ascii_case("wal") {
        set_format_versions(&copy, WAL).map_err(|e| sqlite_err(&copy, e))?;
    }
    let mut file = std::fs::File::open(&copy).map_err(|e| sqlite_err(&copy, e))?;
    store(writer, "database.sqlite", &mut file)
}

/// The header's file format write and read versions (bytes 18 and 19): 1 for a rollback
/// journal, 2 for WAL (SQLite's file format, §1.3.3).
const WAL: [u8; 2] = [2, 2];
const ROLLBACK: [u8; 2] = [1, 1];

fn format_versions(path: &Path) -> std::io::Result<[u8; 2]> {
    use std::os::unix::fs::FileExt;
    let mut versions = [0u8; 2];
    std::fs::File::open(path)?.read_exact_at(&mut versions, 18)?;
    Ok(versions)
}

fn set_format_versions(path: &Path, versions: [u8; 2]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write_all_at(&versions, 18)?;
    file.sync_all()
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
    // A WAL copy is checked as a rollback one (a read-only WAL open would leave `-wal` and
    // `-shm` files beside the staging name), then marked WAL again.
    let wal = format_versions(&staging).is_ok_and(|v| v == WAL);
    if wal && let Err(e) = set_format_versions(&staging, ROLLBACK) {
        let _ = std::fs::remove_file(&staging);
        return Err(sqlite_err(&staging, e));
    }
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
    if wal && let Err(e) = set_format_versions(&staging, WAL) {
        let _ = std::fs::remove_file(&staging);
        return Err(sqlite_err(&staging, e));
    }
    // A journal left by the old database would be replayed onto the new one.
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sidecar(path, suffix));
    }
    std::fs::rename(&staging, path).map_err(|e| sqlite_err(path, e))?;
    Ok(written)
}

/// Compares the database file at `path` with the copy stored under `root`, writing nothing
/// there: the stored copy is read into a temporary folder, both are opened read-only, and
/// their schemas, each table's row count and its rows (as a set: `VACUUM INTO` may renumber
/// rowids) are compared. Returns the differences.
pub fn compare_sqlite(
    repo: &Repository,
    root: &lifeboat_format::Id,
    path: &Path,
) -> Result<Vec<String>> {
    if !path.is_file() {
        return Ok(vec![format!("{}: no such database file", path.display())]);
    }
    let chunks = document_chunks(repo, root)?;
    let dir =
        tempfile::tempdir().map_err(|e| ServiceError::Io(format!("temporary directory: {e}")))?;
    let copy = dir.path().join("captured.sqlite");
    let mut file = std::fs::File::create(&copy).map_err(|e| sqlite_err(&copy, e))?;
    lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut file)?;
    drop(file);
    // Read as a rollback-journal file: the copy's WAL mark only says how it is restored.
    if format_versions(&copy).is_ok_and(|v| v == WAL) {
        set_format_versions(&copy, ROLLBACK).map_err(|e| sqlite_err(&copy, e))?;
    }
    let open = |p: &Path| {
        let conn = Connection::open_with_flags(
            p,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite_err(p, e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| sqlite_err(p, e))?;
        Ok::<_, ServiceError>(conn)
    };
    let captured = open(&copy)?;
    // Opening a WAL database makes its `-wal` and `-shm` files when they are missing: a
    // database no one has open is read from a copy instead, so nothing appears at the site.
    let quiet = quiet_copy(path, &dir.path().join("live.sqlite"))?;
    let live = open(quiet.as_deref().unwrap_or(path))?;
    let was = summary(&captured).map_err(|e| sqlite_err(&copy, e))?;
    // One read transaction, so the figures are of one moment while writers carry on.
    live.execute_batch("BEGIN")
        .map_err(|e| sqlite_err(path, e))?;
    let now = summary(&live).map_err(|e| sqlite_err(path, e));
    let _ = live.execute_batch("COMMIT");
    let now = now?;
    let mut differences = Vec::new();
    for (name, (sql, rows, digest)) in &was {
        match now.get(name) {
            None => differences.push(format!("{name}: missing")),
            Some((now_sql, now_rows, now_digest)) => {
                if now_sql != sql {
                    differences.push(format!("{name}: its definition differs"));
                } else if now_rows != rows {
                    differences.push(format!(
                        "{name}: {now_rows} rows, the restore point has {rows}"
                    ));
                } else if now_digest != digest {
                    differences.push(format!("{name}: its rows differ"));
                }
            }
        }
    }
    for name in now.keys().filter(|n| !was.contains_key(*n)) {
        differences.push(format!("{name}: not in the restore point"));
    }
    Ok(differences)
}

/// A copy of the database at `path` when no connection has it open in WAL mode and no write
/// is under way (no `-wal` or `-journal` file) and it did not change while copied; `None`
/// otherwise (it is then read where it is).
fn quiet_copy(path: &Path, copy: &Path) -> Result<Option<PathBuf>> {
    let busy = || {
        ["-wal", "-journal"]
            .iter()
            .any(|s| std::fs::symlink_metadata(sidecar(path, s)).is_ok())
    };
    let stamp = |m: std::fs::Metadata| (m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ino());
    if busy() {
        return Ok(None);
    }
    let before = std::fs::metadata(path).map_err(|e| sqlite_err(path, e))?;
    std::fs::copy(path, copy).map_err(|e| sqlite_err(path, e))?;
    let after = std::fs::metadata(path).map_err(|e| sqlite_err(path, e))?;
    if busy() || stamp(before) != stamp(after) {
        return Ok(None);
    }
    Ok(Some(copy.to_path_buf()))
}

/// Each schema object (`type name`): its SQL, and a table's row count and rows' digest.
type Summary = std::collections::BTreeMap<String, (Option<String>, u64, u64)>;

/// Each schema object (`type name`) with its SQL, and for tables their row count and an
/// order-independent digest of their rows.
fn summary(conn: &Connection) -> rusqlite::Result<Summary> {
    use std::hash::{Hash, Hasher};
    let mut out = std::collections::BTreeMap::new();
    let objects: Vec<(String, String, Option<String>)> = conn
        .prepare(
            "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (kind, name, sql) in objects {
        let (mut rows, mut digest) = (0u64, 0u64);
        // A virtual table's rows live in its module (maybe not loadable here); a table with
        // a generated `VIRTUAL` column is an ordinary table and is compared.
        let virtual_table = sql.as_deref().is_some_and(|s| {
            s.trim_start()
                .get(..21)
                .is_some_and(|head| head.eq_ignore_ascii_case("CREATE VIRTUAL TABLE "))
        });
        if kind == "table" && sql.is_some() && !virtual_table {
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            let mut stmt = conn.prepare(&format!("SELECT * FROM {quoted}"))?;
            let columns = stmt.column_count();
            let mut result = stmt.query([])?;
            while let Some(row) = result.next()? {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                for i in 0..columns {
                    match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => 0u8.hash(&mut hasher),
                        rusqlite::types::ValueRef::Integer(v) => (1u8, v).hash(&mut hasher),
                        rusqlite::types::ValueRef::Real(v) => (2u8, v.to_bits()).hash(&mut hasher),
                        rusqlite::types::ValueRef::Text(v) => (3u8, v).hash(&mut hasher),
                        rusqlite::types::ValueRef::Blob(v) => (4u8, v).hash(&mut hasher),
                    }
                }
                rows += 1;
                digest = digest.wrapping_add(hasher.finish());
            }
        }
        out.insert(format!("{kind} {name}"), (sql, rows, digest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_with_a_generated_virtual_column_is_compared_by_its_rows() {
        let summarise = |rows: &[i64]| {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(
                "CREATE TABLE t(a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL)",
            )
            .unwrap();
            for a in rows {
                conn.execute("INSERT INTO t(a) VALUES (?1)", [a]).unwrap();
            }
            summary(&conn).unwrap()
        };
        assert_ne!(summarise(&[1, 2]), summarise(&[1, 3]));
        assert_eq!(summarise(&[1, 2]), summarise(&[2, 1]));
    }
}
