//! File trees as resources.
//!
//! [`backup`] captures a directory tree into a repository in three passes: a scan that reads
//! metadata only and compares each file with the parent restore point (an unchanged file —
//! same size, mtime, ctime and inode — reuses its chunks without being read); a parallel pass
//! that reads, chunks (content-defined, FastCDC with a keyed gear table), hashes and stores
//! the changed files; and a pass that writes the trees bottom-up. Trees encode
//! deterministically, so an unchanged directory keeps its tree id.
//!
//! [`restore`] recreates a tree (or a sub-path) in a target directory with its metadata, and
//! [`verify`] compares a restore point with a directory without writing anything.

mod chunker;
mod restore;
mod scan;
mod stream;
mod verify;

pub use chunker::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
pub use restore::{RestoreOptions, RestoreStats, restore};
pub use scan::{BackupOptions, FilesCapture, PathFilter, Progress, backup};
pub use stream::{StreamError, read_stream, store_stream};
pub use verify::{Difference, verify};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid pattern `{pattern}`: {message}")]
    Pattern { pattern: String, message: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("`{0}` is not in the restore point")]
    NoSuchPath(String),
    #[error(transparent)]
    Repo(#[from] lifeboat_repository::RepoError),
    #[error("{count} files could not be restored; first: {first}")]
    Incomplete { count: usize, first: String },
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
