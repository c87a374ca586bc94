//! Restore-point repositories.
//!
//! A [`Repository`] is storage (any [`Backend`]) plus the master key, opened with a password.
//! It writes chunks into packs ([`RepoWriter`]), finds them again through the index
//! ([`index::Index`], a sorted on-disk table in the local cache, so memory does not grow with
//! the repository), reads them back ([`ChunkReader`]), and keeps restore points.
//!
//! The repository is valid at every instant because objects are only ever added in this
//! order: packs, then the index files naming them, then the manifest naming the trees. A
//! crash between any two writes leaves extra objects nobody refers to, never a reference to
//! something missing. Backups take no lock: concurrent backups write disjoint objects, and
//! [`prune`] deletes in two phases separated by a grace period (see its module doc). Only
//! prunes exclude each other, through a [`lease`].
//!
//! Damage never blocks recovery: a listed object whose name is not an id, whose content does
//! not match its name or that does not open is skipped with one warning per command (see
//! [`damage`]) and named by [`check`]; everything sound stays usable.

pub mod check;
pub mod choice;
pub mod damage;
pub mod index;
pub mod lease;
pub mod prune;
mod reader;
pub mod retention;
pub mod running;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_format::keys::{KdfParams, KeyError, KeyFile};
use lifeboat_format::manifest::RestorePoint;
use lifeboat_format::{FORMAT_VERSION, FormatError, Id, MasterKey};
use lifeboat_storage::{Backend, Kind, StorageError};
use serde::{Deserialize, Serialize};

pub use reader::ChunkReader;
pub use writer::{Packer, RepoWriter, WriteStats};

/// What can go wrong with a repository, naming the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(
        "{location} is not a lifeboat repository (no `config` object); create one with `lifeboat repo init`"
    )]
    NotARepository { location: String },
    #[error("{location} already holds a repository")]
    AlreadyExists { location: String },
    #[error("wrong password for the repository at {location}")]
    WrongPassword { location: String },
    #[error("the repository at {location} has no key files (keys/ is empty or unreadable)")]
    NoKeys { location: String },
    #[error("{object}: {source}")]
    Corrupt {
        object: String,
        #[source]
        source: FormatError,
    },
    #[error(
        "chunk {id} is not in the index (the repository is missing data; run `lifeboat check`)"
    )]
    MissingChunk { id: Id },
    #[error("no restore point matches `{spec}`")]
    PointNotFound { spec: String },
    #[error("`{spec}` matches several restore points; give more digits")]
    AmbiguousPoint { spec: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("local cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another prune holds the repository's prune lease: {holder}, started {started}, until {expires} (a killed prune's lease expires then)"
    )]
    LeaseHeld {
        holder: String,
        started: jiff::Timestamp,
        expires: jiff::Timestamp,
    },
    #[error(
        "this backup's marker {marker} is gone (a prune took it for a killed backup's after {hours} h): data the backup wrote may have been deleted, so no restore point was saved; run the backup again"
    )]
    BackupMarkerLost { marker: String, hours: u64 },
    #[error(
        "this prune lost its lease to {holder} (it ran past {expires} without renewing); stopped before deleting more"
    )]
    LeaseLost {
        holder: String,
        expires: jiff::Timestamp,
    },
}

impl RepoError {
    pub(crate) fn corrupt(kind: Kind, name: &str, source: FormatError) -> Self {
        RepoError::Corrupt {
            object: kind.path_of(name),
            source,
        }
    }
}

/// Results of repository operations.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;

/// The plaintext `config` object: what this is and which format it speaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Always `lifeboat-repository`.
    pub format: String,
    /// The format version.
    pub version: u32,
    /// This repository's id (names its local cache).
    pub id: Id,
    /// When it was created.
    pub created: jiff::Timestamp,
}

const FORMAT_NAME: &str = "lifeboat-repository";

/// An open repository: storage, master key, index.
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    config: Config,
    index: index::Index,
    /// Where the index cache lives (`None`: a temporary one).
    cache_dir: Option<PathBuf>,
    /// The marker of the backup this repository was opened for, removed when it is dropped.
    backup: Option<running::BackupMarker>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.backend.location())
            .field("id", &self.config.id)
            .finish()
    }
}

/// Where the local cache of a repository lives: `$LIFEBOAT_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/lifeboat`, else `~/.cache/lifeboat`.
pub fn default_cache_root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LIFEBOAT_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("lifeboat"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("lifeboat"))
}

impl Repository {
    /// Creates a repository: key file first, `config` last, so a half-initialised location is
    /// never mistaken for a repository.
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], kdf: KdfParams) -> Result<Config> {
        let location = backend.location().to_string();
        // Key files without a config are an interrupted init: refuse rather than add a second
        // master key the password might also open.
        if !backend.list(Kind::Config)?.is_empty() || !backend.list(Kind::Keys)?.is_empty() {
            return Err(RepoError::AlreadyExists { location });
        }
        let now = jiff::Timestamp::now();
        let key = MasterKey::generate();
        let key_file = KeyFile::create(&key, password, kdf, now)
            .map_err(|e| RepoError::corrupt(Kind::Keys, "new", e))?;
        let bytes = key_file.to_json();
        backend.put(Kind::Keys, &Id::of_stored(&bytes).to_hex(), bytes)?;
        let config = Config {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: Id::random(),
            created: now,
        };
        let json = serde_json::to_vec_pretty(&config).expect("config serialises");
        backend.put(Kind::Config, "config", json)?;
        Ok(config)
    }

    /// Opens a repository with a password. `cache_root` holds the local index cache (a
    /// temporary directory is used when it is `None`, or when it cannot be written).
    pub fn open(
        backend: Arc<dyn Backend>,
        password: &[u8],
        cache_root: Option<&Path>,
    ) -> Result<Self> {
        Self::open_inner(backend, password, cache_root, None)
    }

    /// Opens a repository to back up into: a backup marker (see [`running`]) is written
    /// before the index is read, and removed when the repository is dropped, so a prune never
    /// deletes a pack this backup may deduplicate against. Drop it only after the manifest
    /// is saved.
    pub fn open_for_backup(
        backend: Arc<dyn Backend>,
        password: &[u8],
        cache_root: Option<&Path>,
        holder: lease::Holder,
    ) -> Result<Self> {
        Self::open_inner(backend, password, cache_root, Some(holder))
    }

    fn open_inner(
        backend: Arc<dyn Backend>,
        password: &[u8],
        cache_root: Option<&Path>,
        backup: Option<lease::Holder>,
    ) -> Result<Self> {
        let config = read_config(backend.as_ref())?;
        let key = unlock(backend.as_ref(), password)?;
        let backup = match backup {
            Some(holder) => Some(running::BackupMarker::write(backend.clone(), holder)?),
            None => None,
        };
        let cache_dir = cache_root.map(|root| root.join(config.id.to_hex()));
        let index = index::Index::load(backend.as_ref(), &key, cache_dir.as_deref())?;
        tracing::info!(
            "opened repository {} at {}: {} index files, {} packs, {} chunks",
            config.id.short(),
            backend.location(),
            index.files().len(),
            index.packs().len(),
            index.len()
        );
        Ok(Repository {
            backend,
            key,
            config,
            index,
            cache_dir,
            backup,
        })
    }

    /// The same repository with its index read again (what was written since it was opened
    /// included): a prune re-checks needs at deletion time with it.
    pub fn reopen(&self) -> Result<Repository> {
        let index =
            index::Index::load(self.backend.as_ref(), &self.key, self.cache_dir.as_deref())?;
        Ok(Repository {
            backend: self.backend.clone(),
            key: self.key.clone(),
            config: self.config.clone(),
            index,
            cache_dir: self.cache_dir.clone(),
            backup: None,
        })
    }

    /// Ends the backup this repository was opened for: removes its marker. Call after the
    /// manifest is saved (dropping the repository does the same, logging a failure).
    pub fn end_backup(&mut self) -> Result<()> {
        match self.backup.take() {
            Some(marker) => marker.remove(),
            None => Ok(()),
        }
    }

    /// The storage.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> &str {
        self.backend.location()
    }

    /// The master key.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The `config` object.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The chunk index.
    pub fn index(&self) -> &index::Index {
        &self.index
    }

    /// A writer for one backup (or repack).
    pub fn writer(&self) -> RepoWriter<'_> {
        RepoWriter::new(self)
    }

    /// A reader of chunks.
    pub fn reader(&self) -> ChunkReader<'_> {
        ChunkReader::new(self)
    }

    /// Every sound restore point, oldest first. An object in `points/` that is not a sound
    /// manifest (a name that is not an id, content that does not match its name, a manifest
    /// that does not open) is skipped with a warning; `check` names it.
    pub fn points(&self) -> Result<Vec<(Id, RestorePoint)>> {
        let mut points = Vec::new();
        for read in self.scan_points()? {
            match read {
                PointRead::Sound(id, point) => points.push((id, *point)),
                PointRead::Misnamed { name, .. } => damage::skip(
                    &Kind::Points.path_of(&name),
                    "restore point manifest",
                    "content does not match its name",
                ),
                PointRead::Damaged { name, problem } => damage::skip(
                    &Kind::Points.path_of(&name),
                    "restore point manifest",
                    &problem,
                ),
            }
        }
        points.sort_by_key(|(id, p)| (p.time, *id));
        Ok(points)
    }

    /// Reads every object in `points/`, telling sound manifests from damaged ones. Fails only
    /// when the storage does (a manifest removed since the listing is simply gone).
    pub fn scan_points(&self) -> Result<Vec<PointRead>> {
        let mut out = Vec::new();
        for info in self.backend.list(Kind::Points)? {
            match self.read_point_object(&info.name, Some(info.size)) {
                Ok(read) => out.push(read),
                Err(RepoError::Storage(e)) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn read_point_object(&self, name: &str, listed_size: Option<u64>) -> Result<PointRead> {
        let damaged = |problem: String| PointRead::Damaged {
            name: name.to_string(),
            problem,
        };
        let Ok(id) = name.parse::<Id>() else {
            return Ok(damaged(
                "not a manifest: its name is not a 64-digit hex id".into(),
            ));
        };
        let sealed = match damage::get_bounded(
            self.backend.as_ref(),
            Kind::Points,
            name,
            listed_size,
            damage::MAX_SMALL_OBJECT,
        ) {
            Ok(bytes) => bytes,
            Err(RepoError::Corrupt { source, .. }) => return Ok(damaged(source.to_string())),
            Err(e) => return Err(e),
        };
        let point = match RestorePoint::unseal(self.key.encryption_key(), &sealed) {
            Ok(point) => point,
            Err(e) => return Ok(damaged(e.to_string())),
        };
        Ok(if Id::of_stored(&sealed) == id {
            PointRead::Sound(id, Box::new(point))
        } else {
            PointRead::Misnamed {
                name: name.to_string(),
                point: Box::new(point),
            }
        })
    }

    /// One restore point by id; damage is an error naming the manifest.
    pub fn load_point(&self, id: &Id) -> Result<RestorePoint> {
        let name = id.to_hex();
        match self.read_point_object(&name, None)? {
            PointRead::Sound(_, point) => Ok(*point),
            PointRead::Misnamed { .. } => Err(RepoError::corrupt(
                Kind::Points,
                &name,
                FormatError::Corrupt {
                    what: "restore point manifest",
                    detail: "content does not match its name".into(),
                },
            )),
            PointRead::Damaged { problem, .. } => Err(RepoError::corrupt(
                Kind::Points,
                &name,
                FormatError::Corrupt {
                    what: "restore point manifest",
                    detail: problem,
                },
            )),
        }
    }

    /// Finds a restore point by `latest`, a full id or a unique prefix of one. Only names
    /// that are ids count, so a stray file cannot make a prefix ambiguous.
    pub fn find_point(&self, spec: &str) -> Result<(Id, RestorePoint)> {
        if spec == "latest" {
            return self
                .points()?
                .pop()
                .ok_or_else(|| RepoError::PointNotFound { spec: spec.into() });
        }
        let names = self.backend.list(Kind::Points)?;
        let matches: Vec<Id> = names
            .iter()
            .filter(|o| o.name.starts_with(spec))
            .filter_map(|o| o.name.parse::<Id>().ok())
            .collect();
        match matches.as_slice() {
            [id] => Ok((*id, self.load_point(id)?)),
            [] => Err(RepoError::PointNotFound { spec: spec.into() }),
            _ => Err(RepoError::AmbiguousPoint { spec: spec.into() }),
        }
    }

    /// Stores a restore point. Call only after every chunk it names is in packs and index
    /// files ([`RepoWriter::finish`]).
    pub fn save_point(&self, point: &RestorePoint) -> Result<Id> {
        // A backup that outlived its marker's protection may have lost packs to a prune: its
        // manifest would name missing data. Checked last, so nothing can go between.
        if let Some(marker) = &self.backup {
            let name = marker.name();
            match self.backend.head(Kind::Leases, &name) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    return Err(RepoError::BackupMarkerLost {
                        marker: Kind::Leases.path_of(&name),
                        hours: running::HONOURED_FOR.as_secs() / 3600,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        let sealed = point.seal(self.key.encryption_key());
        let id = Id::of_stored(&sealed);
        self.backend.put(Kind::Points, &id.to_hex(), sealed)?;
        Ok(id)
    }

    /// Removes a restore point's manifest (`forget`).
    pub fn delete_point(&self, id: &Id) -> Result<()> {
        Ok(self.backend.delete(Kind::Points, &id.to_hex())?)
    }
}

/// What an object in `points/` turned out to be.
#[derive(Debug)]
pub enum PointRead {
    /// A manifest that opens and matches its name.
    Sound(Id, Box<RestorePoint>),
    /// A manifest of this repository that opens but is stored under another name (copied or
    /// renamed): not a restore point, but prune still keeps what it names.
    Misnamed {
        name: String,
        point: Box<RestorePoint>,
    },
    /// Not a manifest of this repository, or a damaged one.
    Damaged { name: String, problem: String },
}

/// Reads and checks the plaintext `config` object.
pub fn read_config(backend: &dyn Backend) -> Result<Config> {
    let bytes = match damage::get_bounded(
        backend,
        Kind::Config,
        "config",
        None,
        damage::MAX_SMALL_OBJECT,
    ) {
        Ok(b) => b,
        Err(RepoError::Storage(e)) if e.is_not_found() => {
            return Err(RepoError::NotARepository {
                location: backend.location().into(),
            });
        }
        Err(e) => return Err(e),
    };
    let config: Config = serde_json::from_slice(&bytes).map_err(|e| {
        RepoError::corrupt(
            Kind::Config,
            "config",
            FormatError::Corrupt {
                what: "config",
                detail: e.to_string(),
            },
        )
    })?;
    if config.format != FORMAT_NAME {
        return Err(RepoError::NotARepository {
            location: backend.location().into(),
        });
    }
    if config.version != FORMAT_VERSION {
        return Err(RepoError::corrupt(
            Kind::Config,
            "config",
            FormatError::UnsupportedVersion {
                what: "repository",
                found: config.version,
                supported: FORMAT_VERSION,
            },
        ));
    }
    Ok(config)
}

fn unlock(backend: &dyn Backend, password: &[u8]) -> Result<MasterKey> {
    let location = backend.location().to_string();
    let keys = backend.list(Kind::Keys)?;
    if keys.is_empty() {
        return Err(RepoError::NoKeys { location });
    }
    let mut last_corruption = None;
    for info in keys {
        let bytes = match damage::get_bounded(
            backend,
            Kind::Keys,
            &info.name,
            Some(info.size),
            damage::MAX_SMALL_OBJECT,
        ) {
            Ok(bytes) => bytes,
            Err(RepoError::Corrupt { object, source }) => {
                last_corruption = Some(RepoError::Corrupt { object, source });
                continue;
            }
            Err(RepoError::Storage(e)) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let opened = KeyFile::from_json(&bytes)
            .map_err(KeyError::from)
            .and_then(|kf| kf.open(password));
        match opened {
            Ok(key) => return Ok(key),
            Err(KeyError::WrongPassword) => {}
            Err(KeyError::Format(e)) => {
                last_corruption = Some(RepoError::corrupt(Kind::Keys, &info.name, e))
            }
        }
    }
    Err(last_corruption.unwrap_or(RepoError::WrongPassword { location }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_storage::ObjectStoreBackend;

    #[test]
    fn a_backup_whose_marker_is_gone_saves_no_point() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> =
            Arc::new(ObjectStoreBackend::local(dir.path(), true).unwrap());
        Repository::init(backend.clone(), b"pw", KdfParams::OWASP_MINIMUM).unwrap();
        let repo =
            Repository::open_for_backup(backend.clone(), b"pw", None, lease::Holder::current())
                .unwrap();
        let point = RestorePoint {
            version: FORMAT_VERSION,
            time: jiff::Timestamp::now(),
            finished: jiff::Timestamp::now(),
            hostname: "h".into(),
            plan: None,
            site: None,
            tags: vec![],
            resources: vec![],
            discovered: Default::default(),
        };
        // A prune took the marker for a killed backup's.
        for marker in running::list(backend.as_ref()).unwrap() {
            backend.delete(Kind::Leases, &marker.name).unwrap();
        }
        assert!(matches!(
            repo.save_point(&point),
            Err(RepoError::BackupMarkerLost { .. })
        ));
        assert!(backend.list(Kind::Points).unwrap().is_empty());
    }
}
