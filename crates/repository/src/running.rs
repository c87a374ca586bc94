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
//!
//! A backup longer than that renews its marker every [`RENEW_EVERY`]: it writes a successor
//! (a new name, created if absent) that records when the first marker was stored, then deletes
//! the one before. A prune counts a backup as registered at that first time, so renewing never
//! makes a backup look younger than the packs it may deduplicate against; a marker whose record
//! cannot be read counts as registered before everything (it only holds deletions back).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
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

/// How often a backup under way writes a successor to its marker.
pub const RENEW_EVERY: Duration = Duration::from_secs(3 * 3600);

const PREFIX: &str = "backup-";

/// What a backup marker says (plain JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Who runs the backup.
    pub holder: Holder,
    /// When it started, by its host's clock (for messages only).
    pub started: jiff::Timestamp,
    /// On a renewed marker: when the storage stored the backup's first marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<jiff::Timestamp>,
}

/// Whether an object name in `leases/` is a backup marker's.
pub fn is_marker_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A backup marker this process wrote, renewed while it lives; dropping it removes it (best
/// effort).
#[derive(Debug)]
pub struct BackupMarker {
    current: Arc<Current>,
    renewer: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
    removed: bool,
}

/// The marker's state shared with its renewing thread.
#[derive(Debug)]
struct Current {
    backend: Arc<dyn Backend>,
    record: BackupRecord,
    name: Mutex<String>,
}

impl BackupMarker {
    /// Writes a new marker for `holder` and renews it every [`RENEW_EVERY`].
    pub fn write(backend: Arc<dyn Backend>, holder: Holder) -> Result<Self> {
        Self::write_renewing_every(backend, holder, RENEW_EVERY)
    }

    /// The same, renewing every `every` (tests use short periods).
    pub fn write_renewing_every(
        backend: Arc<dyn Backend>,
        holder: Holder,
        every: Duration,
    ) -> Result<Self> {
        let mut record = BackupRecord {
            holder,
            started: jiff::Timestamp::now(),
            registered: None,
        };
        let name = new_name();
        backend.create(Kind::Leases, &name, serialise(&record))?;
        tracing::debug!("backup marker {} written", Kind::Leases.path_of(&name));
        // Successors carry the first marker's storage time; without it there is no renewing
        // (the backup then fails safely at its end if it outlives the marker).
        match backend.head(Kind::Leases, &name) {
            Ok(info) => record.registered = Some(info.modified),
            Err(e) => tracing::warn!(
                "the backup marker {} will not be renewed (its storage time is unknown: {e})",
                Kind::Leases.path_of(&name)
            ),
        }
        let current = Arc::new(Current {
            backend,
            record,
            name: Mutex::new(name),
        });
        let renewer = current.record.registered.is_some().then(|| {
            let (stop, stopped) = mpsc::channel::<()>();
            let shared = current.clone();
            let thread = std::thread::spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if let Err(e) = shared.renew() {
                        tracing::warn!(
                            "could not renew the backup marker (tried again later): {e}"
                        );
                    }
                }
            });
            (stop, thread)
        });
        Ok(BackupMarker {
            current,
            renewer,
            removed: false,
        })
    }

    /// The marker's name in `leases/` now (it changes when renewed).
    pub fn name(&self) -> String {
        self.current.name()
    }

    /// Writes a successor now (the renewing thread does this every period).
    pub fn renew(&self) -> Result<()> {
        self.current.renew()
    }

    /// Removes the marker: call only once the backup's manifest is saved (or abandoned).
    pub fn remove(mut self) -> Result<()> {
        self.stop_renewing();
        self.removed = true;
        Ok(self
            .current
            .backend
            .delete(Kind::Leases, &self.current.name())?)
    }

    fn stop_renewing(&mut self) {
        if let Some((stop, thread)) = self.renewer.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl Current {
    fn name(&self) -> String {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn renew(&self) -> Result<()> {
        let mut name = self.name.lock().unwrap_or_else(|e| e.into_inner());
        let successor = new_name();
        self.backend
            .create(Kind::Leases, &successor, serialise(&self.record))?;
        let old = std::mem::replace(&mut *name, successor);
        tracing::debug!(
            "backup marker {} renewed as {}",
            Kind::Leases.path_of(&old),
            Kind::Leases.path_of(&name)
        );
        if let Err(e) = self.backend.delete(Kind::Leases, &old) {
            tracing::warn!(
                "could not remove the renewed backup marker {} (a prune removes it after {} h): {e}",
                Kind::Leases.path_of(&old),
                HONOURED_FOR.as_secs() / 3600
            );
        }
        Ok(())
    }
}

fn new_name() -> String {
    format!("{PREFIX}{}", &Id::random().to_hex()[..32])
}

fn serialise(record: &BackupRecord) -> Vec<u8> {
    serde_json::to_vec_pretty(record).expect("a backup marker serialises")
}

impl Drop for BackupMarker {
    fn drop(&mut self) {
        self.stop_renewing();
        if self.removed {
            return;
        }
        let name = self.current.name();
        if let Err(e) = self.current.backend.delete(Kind::Leases, &name) {
            tracing::warn!(
                "could not remove the backup marker {} (a prune removes it after {} h): {e}",
                Kind::Leases.path_of(&name),
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
    /// When the storage says it was stored (a renewed marker: when it was renewed).
    pub stored: jiff::Timestamp,
    /// When its backup registered: the storage time of its first marker, as a renewed
    /// marker records it; the earliest time there is when its record cannot be read.
    pub registered: jiff::Timestamp,
}

/// Every backup marker in the repository, with the storage's times.
pub fn list(backend: &dyn Backend) -> Result<Vec<ListedMarker>> {
    Ok(backend
        .list(Kind::Leases)?
        .into_iter()
        .filter(|info| is_marker_name(&info.name))
        .map(|info| {
            let registered = match read_record(backend, &info.name, Some(info.size)) {
                Ok(record) => record
                    .registered
                    .map_or(info.modified, |r| r.min(info.modified)),
                // Gone since the listing (ended, or renewed under a name this listing missed)
                // or unreadable: it holds back everything while it is honoured.
                Err(_) => jiff::Timestamp::MIN,
            };
            ListedMarker {
                name: info.name,
                stored: info.modified,
                registered,
            }
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

    fn local() -> (tempfile::TempDir, Arc<dyn Backend>) {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> =
            Arc::new(lifeboat_storage::ObjectStoreBackend::local(dir.path(), true).unwrap());
        (dir, backend)
    }

    #[test]
    fn a_renewed_marker_keeps_its_backups_registration() {
        let (_dir, backend) = local();
        let marker =
            BackupMarker::write_renewing_every(backend.clone(), Holder::current(), Duration::MAX)
                .unwrap();
        let first = list(backend.as_ref()).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].registered, first[0].stored);
        std::thread::sleep(Duration::from_millis(20));
        marker.renew().unwrap();
        let renewed = list(backend.as_ref()).unwrap();
        assert_eq!(renewed.len(), 1, "the marker before is deleted");
        assert_ne!(renewed[0].name, first[0].name);
        assert_eq!(renewed[0].name, marker.name());
        assert!(renewed[0].stored > first[0].stored, "{renewed:?}");
        assert_eq!(renewed[0].registered, first[0].stored);
        marker.remove().unwrap();
        assert!(list(backend.as_ref()).unwrap().is_empty());
    }

    #[test]
    fn the_renewing_thread_renews_until_the_marker_is_dropped() {
        let (_dir, backend) = local();
        let marker = BackupMarker::write_renewing_every(
            backend.clone(),
            Holder::current(),
            Duration::from_millis(10),
        )
        .unwrap();
        let first = marker.name();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while marker.name() == first {
            assert!(std::time::Instant::now() < deadline, "never renewed");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(marker);
        assert!(
            list(backend.as_ref()).unwrap().is_empty(),
            "nothing left after drop"
        );
    }

    #[test]
    fn an_unreadable_marker_counts_as_registered_before_everything() {
        let (_dir, backend) = local();
        let name = "backup-0123456789abcdef0123456789abcdef";
        backend
            .create(Kind::Leases, name, b"not json".to_vec())
            .unwrap();
        let listed = list(backend.as_ref()).unwrap();
        assert_eq!(listed[0].registered, jiff::Timestamp::MIN);
    }
}
