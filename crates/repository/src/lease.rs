//! The prune lease: one prune at a time may delete, without a lock that can go stale.
//!
//! A lease is a series of immutable objects `leases/prune-<generation>` (the generation as 20
//! decimal digits), each written with create-if-absent and never modified. The object with the
//! highest generation says who holds the lease and until when:
//!
//! - **Take**: read the highest generation `g`. If it is held (not released) and not yet
//!   expired, refuse, naming its holder. Otherwise create generation `g + 1`; of two prunes
//!   racing for it exactly one create succeeds, and the other refuses.
//! - **Renew**: a holder extends its lease by creating the next generation itself, before the
//!   lease runs out. If that generation exists already, someone took the lease over (this
//!   holder ran past its expiry), and the holder stops before deleting anything more.
//! - **Release**: create the next generation marked released.
//!
//! Whoever creates a generation then deletes the older ones; the highest generation is never
//! deleted, so a generation number is never reused. A killed prune leaves its generation
//! behind, and it expires. Expiry compares the holder's recorded time with the reader's
//! clock, so clocks of hosts that prune one repository must agree to well within the
//! lease's duration.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_format::FormatError;
use lifeboat_storage::{Backend, Kind};
use serde::{Deserialize, Serialize};

use crate::damage;
use crate::{RepoError, Result};

/// How long a lease lasts unless renewed; a holder renews once half of it is left.
pub const DURATION: Duration = Duration::from_secs(15 * 60);

const PREFIX: &str = "prune-";

/// Who is taking a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The host name.
    pub host: String,
    /// The process id on that host.
    pub pid: u32,
}

impl Holder {
    /// This process on this host.
    pub fn current() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown host".into());
        Holder {
            host,
            pid: std::process::id(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {} (pid {})", self.host, self.pid)
    }
}

/// One generation of the lease, as stored (plain JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// This object's generation (also in its name).
    pub generation: u64,
    /// Who holds (or held) the lease.
    pub holder: Holder,
    /// When the holder took it (unchanged by renewals).
    pub started: jiff::Timestamp,
    /// When it lapses unless renewed.
    pub expires: jiff::Timestamp,
    /// Whether the holder gave it up.
    pub released: bool,
}

/// The object name of a generation.
pub fn object_name(generation: u64) -> String {
    format!("{PREFIX}{generation:020}")
}

/// Generations stop below this: no planted name can make the next one overflow.
const MAX_GENERATION: u64 = 1 << 60;

/// The generation an object name stands for, if it is a lease's name.
pub fn generation_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|g| *g < MAX_GENERATION)
}

/// Reads one lease object, checking it says the generation its name says.
pub fn read_record(backend: &dyn Backend, name: &str, size: Option<u64>) -> Result<LeaseRecord> {
    let corrupt = |detail: String| {
        RepoError::corrupt(
            Kind::Leases,
            name,
            FormatError::Corrupt {
                what: "prune lease",
                detail,
            },
        )
    };
    let generation = generation_of(name)
        .ok_or_else(|| corrupt("not a lease's name (prune-<20 digits>)".into()))?;
    let bytes = damage::get_bounded(backend, Kind::Leases, name, size, damage::MAX_SMALL_OBJECT)?;
    let record: LeaseRecord = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if record.generation != generation {
        return Err(corrupt(format!(
            "says generation {}, its name {generation}",
            record.generation
        )));
    }
    Ok(record)
}

/// The highest generation there is, with its record (`None` when it does not read: such a
/// generation binds nobody, and the next one may be taken).
fn latest(backend: &dyn Backend) -> Result<Option<(u64, Option<LeaseRecord>)>> {
    let mut best: Option<(u64, String, u64)> = None;
    for info in backend.list(Kind::Leases)? {
        match generation_of(&info.name) {
            Some(g) if best.as_ref().is_none_or(|(b, _, _)| g > *b) => {
                best = Some((g, info.name, info.size))
            }
            Some(_) => {}
            // A backup under way (see `running`), not a lease.
            None if crate::running::is_marker_name(&info.name) => {}
            None => damage::skip(
                &Kind::Leases.path_of(&info.name),
                "prune lease",
                "not a lease's name (prune-<20 digits>)",
            ),
        }
    }
    let Some((generation, name, size)) = best else {
        return Ok(None);
    };
    match read_record(backend, &name, Some(size)) {
        Ok(record) => Ok(Some((generation, Some(record)))),
        Err(RepoError::Corrupt { object, source }) => {
            damage::skip(&object, "prune lease", &source.to_string());
            Ok(Some((generation, None)))
        }
        Err(e) => Err(e),
    }
}

/// A lease this process holds. Dropping it without [`Lease::release`] leaves it to expire.
#[derive(Debug)]
pub struct Lease {
    backend: Arc<dyn Backend>,
    record: LeaseRecord,
    duration: jiff::SignedDuration,
    /// Taken over by another prune: nothing of ours is left to renew or release.
    lost: bool,
}

fn span(duration: Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX)
}

impl Lease {
    /// Takes the repository's prune lease for `duration`, or says who holds it.
    pub fn take(
        backend: Arc<dyn Backend>,
        holder: Holder,
        now: jiff::Timestamp,
        duration: Duration,
    ) -> Result<Lease> {
        let duration = span(duration);
        let next = match latest(backend.as_ref())? {
            None => 1,
            Some((g, Some(record))) => {
                if !record.released && record.expires > now {
                    return Err(held_by(&record));
                }
                if !record.released {
                    tracing::warn!(
                        "taking over the prune lease of {} (started {}), which expired at {}",
                        record.holder,
                        record.started,
                        record.expires
                    );
                }
                g + 1
            }
            Some((g, None)) => g + 1,
        };
        let record = LeaseRecord {
            generation: next,
            holder,
            started: now,
            expires: now.checked_add(duration).unwrap_or(now),
            released: false,
        };
        let lease = Lease {
            backend,
            record,
            duration,
            lost: false,
        };
        match lease.write(next) {
            Ok(()) => {}
            Err(RepoError::Storage(e)) if e.is_already_exists() => {
                // Another prune took this generation between our look and our create.
                let name = object_name(next);
                return Err(match read_record(lease.backend.as_ref(), &name, None) {
                    Ok(record) => held_by(&record),
                    Err(_) => RepoError::LeaseHeld {
                        holder: format!("whoever wrote {}", Kind::Leases.path_of(&name)),
                        started: now,
                        expires: now,
                    },
                });
            }
            Err(e) => return Err(e),
        }
        lease.forget_older();
        Ok(lease)
    }

    /// What this lease says now.
    pub fn record(&self) -> &LeaseRecord {
        &self.record
    }

    /// Makes sure the lease is still this process's and has at least half its duration left,
    /// renewing it when it has less. Call before every deletion.
    pub fn keep(&mut self, now: jiff::Timestamp) -> Result<()> {
        if self.lost {
            return Err(RepoError::LeaseLost {
                holder: "another prune".into(),
                expires: self.record.expires,
            });
        }
        let half = self.duration / 2;
        if self.record.expires.duration_since(now) >= half {
            return Ok(());
        }
        let next = self.record.generation + 1;
        let lost = |record: Option<LeaseRecord>, mine: &LeaseRecord| RepoError::LeaseLost {
            holder: record.map_or_else(|| "another prune".to_string(), |r| r.holder.to_string()),
            expires: mine.expires,
        };
        // A newer generation than ours (even one whose successor was since deleted) means
        // someone took over.
        if let Some((g, record)) = latest(self.backend.as_ref())?
            && g > self.record.generation
        {
            self.lost = true;
            return Err(lost(record, &self.record));
        }
        let previous = self.record.clone();
        self.record.generation = next;
        self.record.expires = now.checked_add(self.duration).unwrap_or(now);
        match self.write(next) {
            Ok(()) => {
                self.forget_older();
                Ok(())
            }
            Err(RepoError::Storage(e)) if e.is_already_exists() => {
                let record = read_record(self.backend.as_ref(), &object_name(next), None).ok();
                self.record = previous;
                self.lost = true;
                Err(lost(record, &self.record))
            }
            Err(e) => {
                self.record = previous;
                Err(e)
            }
        }
    }

    /// Gives the lease up, so the next prune need not wait for it to expire.
    pub fn release(mut self) -> Result<()> {
        if self.lost {
            return Ok(());
        }
        let next = self.record.generation + 1;
        self.record.generation = next;
        self.record.released = true;
        match self.write(next) {
            Ok(()) => {
                self.forget_older();
                Ok(())
            }
            // Taken over already: there is nothing of ours left to release.
            Err(RepoError::Storage(e)) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn write(&self, generation: u64) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.record).expect("a lease serialises");
        Ok(self
            .backend
            .create(Kind::Leases, &object_name(generation), json)?)
    }

    /// Deletes generations older than ours: they bind nobody any more. Failing to is harmless.
    fn forget_older(&self) {
        let Ok(listed) = self.backend.list(Kind::Leases) else {
            return;
        };
        for info in listed {
            if generation_of(&info.name).is_some_and(|g| g < self.record.generation)
                && let Err(e) = self.backend.delete(Kind::Leases, &info.name)
            {
                tracing::debug!("could not delete an old lease generation: {e}");
            }
        }
    }
}

fn held_by(record: &LeaseRecord) -> RepoError {
    RepoError::LeaseHeld {
        holder: record.holder.to_string(),
        started: record.started,
        expires: record.expires,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_storage::ObjectStoreBackend;

    fn backend() -> (tempfile::TempDir, Arc<dyn Backend>) {
        let dir = tempfile::tempdir().unwrap();
        let backend = ObjectStoreBackend::local(dir.path(), false).unwrap();
        (dir, Arc::new(backend))
    }

    fn holder(host: &str) -> Holder {
        Holder {
            host: host.into(),
            pid: 1,
        }
    }

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    fn names(backend: &Arc<dyn Backend>) -> Vec<String> {
        let mut names: Vec<String> = backend
            .list(Kind::Leases)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_held_lease_is_refused_naming_its_holder_until_released() {
        let (_dir, b) = backend();
        let lease = Lease::take(b.clone(), holder("a"), at(0), TEN_MINUTES).unwrap();
        let err = Lease::take(b.clone(), holder("b"), at(60), TEN_MINUTES).unwrap_err();
        let RepoError::LeaseHeld {
            holder: by,
            started,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(by, "host a (pid 1)");
        assert_eq!(*started, at(0));
        lease.release().unwrap();
        assert_eq!(names(&b), [object_name(2)]);
        let next = Lease::take(b.clone(), holder("b"), at(61), TEN_MINUTES).unwrap();
        assert_eq!(next.record().generation, 3);
        assert_eq!(names(&b), [object_name(3)]);
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_its_holder_cannot_renew() {
        let (_dir, b) = backend();
        let mut stale = Lease::take(b.clone(), holder("a"), at(0), TEN_MINUTES).unwrap();
        let mut fresh = Lease::take(b.clone(), holder("b"), at(601), TEN_MINUTES).unwrap();
        assert_eq!(fresh.record().generation, 2);
        let err = stale.keep(at(602)).unwrap_err();
        assert!(
            matches!(&err, RepoError::LeaseLost { holder, .. } if holder == "host b (pid 1)"),
            "{err}"
        );
        // Losing wrote nothing, and releasing a lost lease leaves the new holder's alone.
        stale.release().unwrap();
        assert_eq!(names(&b), [object_name(2)]);
        // The new holder renews by creating the next generation.
        fresh.keep(at(601 + 400)).unwrap();
        assert_eq!(fresh.record().generation, 3);
        assert_eq!(names(&b), [object_name(3)]);
        // Still held: nobody else gets it.
        assert!(Lease::take(b.clone(), holder("c"), at(1300), TEN_MINUTES).is_err());
    }

    #[test]
    fn a_race_for_the_next_generation_has_one_winner() {
        let (_dir, b) = backend();
        // Someone created generation 1 between our look and our create.
        let record = LeaseRecord {
            generation: 1,
            holder: holder("winner"),
            started: at(0),
            expires: at(600),
            released: false,
        };
        b.create(
            Kind::Leases,
            &object_name(1),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        assert!(
            b.create(Kind::Leases, &object_name(1), b"{}".to_vec())
                .unwrap_err()
                .is_already_exists()
        );
        let err = Lease::take(b.clone(), holder("loser"), at(1), TEN_MINUTES).unwrap_err();
        assert!(err.to_string().contains("winner"), "{err}");
    }

    #[test]
    fn an_unreadable_lease_binds_nobody() {
        let (_dir, b) = backend();
        b.put(Kind::Leases, &object_name(4), b"garbage".to_vec())
            .unwrap();
        b.put(Kind::Leases, "notes", b"stray".to_vec()).unwrap();
        let lease = Lease::take(b.clone(), holder("a"), at(0), TEN_MINUTES).unwrap();
        assert_eq!(lease.record().generation, 5);
        assert_eq!(generation_of(&object_name(5)), Some(5));
        assert_eq!(generation_of("prune-5"), None);
        assert_eq!(
            generation_of(&object_name(u64::MAX)),
            None,
            "no next generation overflows"
        );
    }
}
