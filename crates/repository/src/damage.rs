//! Damage that must not block recovery: an object that is skipped rather than trusted.
//!
//! A listed object that is not what its folder promises is skipped wherever the repository is
//! used, with one warning per object per command (not one per lookup), and `check` lists it
//! as a finding. Objects are read with a bound on their size, so a huge stray file is damage
//! to report, not a reason to exhaust memory.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use lifeboat_format::FormatError;
use lifeboat_storage::{Backend, Kind};

use crate::{RepoError, Result};

/// The largest manifest, key file, condemned marker or lease lifeboat reads; no sound one
/// comes near it.
pub const MAX_SMALL_OBJECT: u64 = 64 * 1024 * 1024;
/// The largest index file lifeboat reads (an index file names at most a few packs).
pub const MAX_INDEX_FILE: u64 = 1024 * 1024 * 1024;

fn warned() -> &'static Mutex<HashSet<String>> {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    WARNED.get_or_init(Mutex::default)
}

/// Warns, once per object in this process, that a damaged object is being skipped.
pub fn skip(object: &str, what: &str, problem: &str) {
    let first = warned()
        .lock()
        .map(|mut set| set.insert(object.to_string()))
        .unwrap_or(true);
    if first {
        tracing::warn!(
            "skipping {object} (not a sound {what}): {problem}; `lifeboat check` lists it"
        );
    }
}

/// Reads a whole object whose size must not exceed `limit`: the size comes from the listing
/// (or a `head`), and exactly that many bytes are asked for, so the storage cannot make the
/// reader allocate more. A larger object is [`RepoError::Corrupt`].
pub fn get_bounded(
    backend: &dyn Backend,
    kind: Kind,
    name: &str,
    listed_size: Option<u64>,
    limit: u64,
) -> Result<Vec<u8>> {
    let size = match listed_size {
        Some(size) => size,
        None => backend.head(kind, name)?.size,
    };
    if size > limit {
        return Err(RepoError::corrupt(
            kind,
            name,
            FormatError::Corrupt {
                what: "object",
                detail: format!("{size} bytes, larger than any such object lifeboat writes"),
            },
        ));
    }
    if size == 0 {
        return Err(RepoError::corrupt(
            kind,
            name,
            FormatError::Corrupt {
                what: "object",
                detail: "empty".into(),
            },
        ));
    }
    Ok(backend.get_range(kind, name, 0..size)?)
}
