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
//! something missing. Nothing is locked: concurrent backups write disjoint objects, and
//! [`prune`] deletes in two phases separated by a grace period (see its module doc).

pub mod check;
pub mod index;
pub mod prune;
mod reader;
pub mod retention;
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
}

impl RepoError {
    pub(crate) fn corrupt(kind: Kind, name: &str, source: FormatError) -> Self {
        RepoError::Corrupt {
            object: kind.path_of(name),
            source,
        }
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

/// The plaintext `config` object: what this is and which format it speaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub format: String,
    pub version: u32,
    pub id: Id,
    pub created: jiff::Timestamp,
}

const FORMAT_NAME: &str = "lifeboat-repository";

pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    config: Config,
    index: index::Index,
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
    /// temporary directory is used when it is `None`).
    pub fn open(
        backend: Arc<dyn Backend>,
        password: &[u8],
        cache_root: Option<&Path>,
    ) -> Result<Self> {
        let config = read_config(backend.as_ref())?;
        let key = unlock(backend.as_ref(), password)?;
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
        })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn location(&self) -> &str {
        self.backend.location()
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn index(&self) -> &index::Index {
        &self.index
    }

    pub fn writer(&self) -> RepoWriter<'_> {
        RepoWriter::new(self)
    }

    pub fn reader(&self) -> ChunkReader<'_> {
        ChunkReader::new(self)
    }

    /// Every restore point, oldest first. A manifest that cannot be read is an error naming it.
    pub fn points(&self) -> Result<Vec<(Id, RestorePoint)>> {
        let mut points = Vec::new();
        for info in self.backend.list(Kind::Points)? {
            let id = parse_name(Kind::Points, &info.name)?;
            points.push((id, self.load_point(&id)?));
        }
        points.sort_by_key(|(id, p)| (p.time, *id));
        Ok(points)
    }

    pub fn load_point(&self, id: &Id) -> Result<RestorePoint> {
        let name = id.to_hex();
        let sealed = self.backend.get(Kind::Points, &name)?;
        if Id::of_stored(&sealed) != *id {
            return Err(RepoError::corrupt(
                Kind::Points,
                &name,
                FormatError::Corrupt {
                    what: "restore point manifest",
                    detail: "content does not match its name".into(),
                },
            ));
        }
        RestorePoint::unseal(self.key.encryption_key(), &sealed)
            .map_err(|e| RepoError::corrupt(Kind::Points, &name, e))
    }

    /// Finds a restore point by `latest`, a full id or a unique prefix of one.
    pub fn find_point(&self, spec: &str) -> Result<(Id, RestorePoint)> {
        if spec == "latest" {
            return self
                .points()?
                .pop()
                .ok_or_else(|| RepoError::PointNotFound { spec: spec.into() });
        }
        let names = self.backend.list(Kind::Points)?;
        let matches: Vec<_> = names.iter().filter(|o| o.name.starts_with(spec)).collect();
        match matches.as_slice() {
            [one] => {
                let id = parse_name(Kind::Points, &one.name)?;
                Ok((id, self.load_point(&id)?))
            }
            [] => Err(RepoError::PointNotFound { spec: spec.into() }),
            _ => Err(RepoError::AmbiguousPoint { spec: spec.into() }),
        }
    }

    /// Stores a restore point. Call only after every chunk it names is in packs and index
    /// files ([`RepoWriter::finish`]).
    pub fn save_point(&self, point: &RestorePoint) -> Result<Id> {
        let sealed = point.seal(self.key.encryption_key());
        let id = Id::of_stored(&sealed);
        self.backend.put(Kind::Points, &id.to_hex(), sealed)?;
        Ok(id)
    }

    pub fn delete_point(&self, id: &Id) -> Result<()> {
        Ok(self.backend.delete(Kind::Points, &id.to_hex())?)
    }
}

pub(crate) fn parse_name(kind: Kind, name: &str) -> Result<Id> {
    name.parse().map_err(|_| {
        RepoError::corrupt(
            kind,
            name,
            FormatError::Corrupt {
                what: "object name",
                detail: "not a 64-digit hex id".into(),
            },
        )
    })
}

pub fn read_config(backend: &dyn Backend) -> Result<Config> {
    let bytes = match backend.get(Kind::Config, "config") {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            return Err(RepoError::NotARepository {
                location: backend.location().into(),
            });
        }
        Err(e) => return Err(e.into()),
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
        let bytes = backend.get(Kind::Keys, &info.name)?;
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
