//! Markers of backups under way: what lets a prune, whatever its grace period, spare what a
//! backup may come to need.
//!
//! A backup writes `leases/backup-<32 hex digits>` (create-if-absent, never modified) before
//! it reads the index, and deletes it only after its manifest is saved. A prune deletes the
//! packs of a condemned marker only when no live backup marker was stored before that
//! condemned marker (with a margin for coarse storage clocks): a backup that registered later
//! read the condemned marker before it read the index, so it never deduplicates against those
//! packs, and one that has finished has its manifest where the prune reads it again. A killed
//! backup's marker is honoured for [`HONOURED_FOR`] (or the grace period, when that is
//! longer), then a prune removes it. Times compared are the storage's own (its listing's
//! modification times), never a host's clock against another's.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_format::{FormatError, Id};
use lifeboat_storage::{Backend, Kind};
use serde::{Deserialize, Serialize};

use crate::damage;
use crate::lease::Holder;
use crate::{RepoError, Result};

/// How long a backup marker holds deletions back when its backup never removes it (killed).
pub const HONOURED_FOR: Duration = Duration::from_secs(24 * 3600);

/// A condemned marker stored less than this after a backup marker counts as stored before it:
/// storage clocks may be as coarse as a second.
pub const CLOCK_MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_secs(2);

const PREFIX: &str = "backup-";

/// What a backup marker says (plain JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Who runs the backup.
    pub holder: Holder,
    /// When it started, by its host's clock (for messages only).
    pub started: jiff::Timestamp,
}

/// Whether an object name in `leases/` is a backup marker's.
pub fn is_marker_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A backup marker this process wrote; dropping it removes it (best effort).
#[derive(Debug)]
pub struct BackupMarker {
    backend: Arc<dyn Backend>,
    name: String,
    removed: bool,
}

impl BackupMarker {
    /// Writes a new marker for `holder`.
    pub fn write(backend: Arc<dyn Backend>, holder: Holder) -> Result<Self> {
        let record = BackupRecord {
            holder,
            started: jiff::Timestamp::now(),
        };
        let json = serde_json::to_vec_pretty(&record).expect("a backup marker serialises");
        let name = format!("{PREFIX}{}", &Id::random().to_hex()[..32]);
        backend.create(Kind::Leases, &name, json)?;
        tracing::debug!("backup marker {} written", Kind::Leases.path_of(&name));
        Ok(BackupMarker {
            backend,
            name,
            removed: false,
        })
    }

    /// The marker's name in `leases/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the marker: call only once the backup's manifest is saved (or abandoned).
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        Ok(self.backend.delete(Kind::Leases, &self.name)?)
    }
}

impl Drop for BackupMarker {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = self.backend.delete(Kind::Leases, &self.name)
        {
            tracing::warn!(
                "could not remove the backup marker {} (a prune removes it after {} h): {e}",
                Kind::Leases.path_of(&self.name),
                HONOURED_FOR.as_secs() / 3600
            );
        }
    }
}

/// A backup marker as listed.
#[derive(Debug, Clone)]
pub struct ListedMarker {
    /// Its name in `leases/`.
    pub name: String,
    /// When the storage says it was stored.
    pub stored: jiff::Timestamp,
}

/// Every backup marker in the repository, with the storage's times.
pub fn list(backend: &dyn Backend) -> Result<Vec<ListedMarker>> {
    Ok(backend
        .list(Kind::Leases)?
        .into_iter()
        .filter(|info| is_marker_name(&info.name))
        .map(|info| ListedMarker {
            name: info.name,
            stored: info.modified,
        })
        .collect())
}

/// Reads one backup marker (for `check`).
pub fn read_record(backend: &dyn Backend, name: &str, size: Option<u64>) -> Result<BackupRecord> {
    let bytes = damage::get_bounded(backend, Kind::Leases, name, size, damage::MAX_SMALL_OBJECT)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        RepoError::corrupt(
            Kind::Leases,
            name,
            FormatError::Corrupt {
                what: "backup marker",
                detail: e.to_string(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_are_told_apart_from_leases() {
        assert!(is_marker_name("backup-0123456789abcdef0123456789abcdef"));
        assert!(!is_marker_name("backup-0123"));
        assert!(!is_marker_name("prune-00000000000000000001"));
        assert!(!is_marker_name("backup-0123456789abcdef0123456789abcdeg"));
    }
}
