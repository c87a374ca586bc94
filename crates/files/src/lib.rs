//! File trees as resources.
//!
//! [`backup`] captures a directory tree into a repository in three passes: a scan that reads
//! metadata only and compares each file with the parent restore point (an unchanged file —
//! same size, mtime, ctime and inode — reuses its chunks without being read); a parallel pass
//! that reads, chunks (content-defined, FastCDC with a keyed gear table), hashes and stores
//! the changed files; and a pass that writes the trees bottom-up. Trees encode
//! deterministically, so an unchanged directory keeps its tree id.
//!
//! [`restore`] recreates a tree (or a sub-path) in a target directory with its metadata (and,
//! as a mirror, removes what the point lacks within the resource's scope; [`removals`] lists
//! that without writing), and [`verify`] compares a restore point with a directory without
//! writing anything.

mod beneath;
mod chunker;
mod mirror;
mod restore;
mod scan;
mod stream;
mod verify;

pub use beneath::staging_file_beside;
pub use chunker::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
pub use mirror::{LISTED_REMOVALS, Removed, removals};
pub use restore::{RestoreOptions, RestoreStats, restore};
pub use scan::{BackupOptions, FilesCapture, PathFilter, Progress, backup};
pub use stream::{StreamError, read_stream, store_stream};
pub use verify::{Difference, verify, verify_within};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{}: {source}", display_path(path))]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid pattern `{pattern}`: {message}")]
    Pattern { pattern: String, message: String },
    #[error("{0}")]
    TooLarge(String),
    /// A file's stored content disagrees with its tree entry (the repository is damaged).
    #[error("{0}")]
    Inconsistent(String),
    #[error("`{0}` is not in the restore point")]
    NoSuchPath(String),
    #[error(transparent)]
    Repo(#[from] lifeboat_repository::RepoError),
    #[error("{}", incomplete_message(target, failed))]
    Incomplete {
        target: std::path::PathBuf,
        /// Each entry that could not be restored, with why (paths relative to the target).
        failed: Vec<String>,
    },
}

/// At most this many failed entries are named in the message (all are in the error).
const NAMED_FAILURES: usize = 10;

fn incomplete_message(target: &std::path::Path, failed: &[String]) -> String {
    let mut text = format!(
        "{} entries could not be restored in {} (what was there under their names is unchanged): {}",
        failed.len(),
        display_path(target),
        failed[..failed.len().min(NAMED_FAILURES)].join("; ")
    );
    if failed.len() > NAMED_FAILURES {
        text.push_str(&format!("; and {} more", failed.len() - NAMED_FAILURES));
    }
    text
}

/// A path as text that loses nothing: bytes that are not UTF-8 and control characters are
/// escaped as `\xNN`, and a backslash as `\\`, so any path prints and fits in JSON.
pub fn display_path(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    escape_bytes(path.as_os_str().as_bytes())
}

/// Bytes as text that loses nothing (see [`display_path`]).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

pub type Result<T, E = FilesError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

/// Loads and decodes a tree.
pub(crate) fn load_tree(
    reader: &mut lifeboat_repository::ChunkReader<'_>,
    id: &lifeboat_format::Id,
) -> Result<lifeboat_format::tree::Tree> {
    let bytes = reader.read(id)?;
    lifeboat_format::tree::Tree::decode(&bytes).map_err(|e| {
        FilesError::Repo(lifeboat_repository::RepoError::Corrupt {
            object: format!("tree {}", id.short()),
            source: e,
        })
    })
}
