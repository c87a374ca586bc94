//! Where repository objects are kept.
//!
//! The repository speaks to storage only through [`Backend`]: put, get, ranged get, list and
//! delete of immutable objects named by `(Kind, name)`. There is no rename, no append and no
//! lock, so every object store can serve, and the repository's safety never depends on the
//! storage being clever.
//!
//! [`ObjectStoreBackend`] serves every location (local directory, S3-compatible, Azure Blob,
//! Google Cloud Storage) through the `object_store` crate: a local directory goes through
//! exactly the code path a bucket does, with `fsync` turned on so that an acknowledged write
//! survives a crash. The trait is synchronous; the backend owns a small tokio runtime for the
//! object store's async API, which keeps the repository and backup pipeline plain threads. (A
//! caller inside an async context must therefore use `spawn_blocking`.)

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The kinds of objects a repository holds, each in its own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The single `config` object saying this is a repository and of which format.
    Config,
    Keys,
    /// Packs, fanned out over 256 sub-folders by the first two hex digits of their name.
    Data,
    Index,
    /// Restore-point manifests.
    Points,
    /// Prune's first phase: packs marked for deletion after a grace period.
    Condemned,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Config,
        Kind::Keys,
        Kind::Data,
        Kind::Index,
        Kind::Points,
        Kind::Condemned,
    ];

    pub fn folder(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Keys => "keys",
            Kind::Data => "data",
            Kind::Index => "index",
            Kind::Points => "points",
            Kind::Condemned => "condemned",
        }
    }

    /// The path of an object relative to the repository root, as shown in messages.
    pub fn path_of(self, name: &str) -> String {
        match self {
            Kind::Config => name.to_string(),
            Kind::Data if name.len() > 2 => format!("data/{}/{name}", &name[..2]),
            _ => format!("{}/{name}", self.folder()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    pub modified: jiff::Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{location}: {path} does not exist")]
    NotFound { location: String, path: String },
    #[error("{location}: {path}: {message}")]
    Failed {
        location: String,
        path: String,
        message: String,
    },
    #[error("cannot open repository location `{location}`: {message}")]
    Open { location: String, message: String },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

pub trait Backend: Send + Sync + fmt::Debug {
    /// Where this backend stores, for messages (never with credentials).
    fn location(&self) -> &str;
    /// Stores an object; when this returns the object is durable.
    fn put(&self, kind: Kind, name: &str, bytes: Vec<u8>) -> Result<()>;
    fn get(&self, kind: Kind, name: &str) -> Result<Vec<u8>>;
    fn get_range(&self, kind: Kind, name: &str, range: Range<u64>) -> Result<Vec<u8>>;
    fn head(&self, kind: Kind, name: &str) -> Result<ObjectInfo>;
    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>>;
    fn delete(&self, kind: Kind, name: &str) -> Result<()>;
}

/// Options for opening a location: object-store settings (`endpoint`, `region`,
/// `access_key_id`, `secret_access_key`, `allow_http`, Azure and GCS keys, ...) passed to the
/// `object_store` builder for the URL's scheme.
pub type Options = Vec<(String, String)>;

pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    location: String,
    runtime: tokio::runtime::Runtime,
}

impl fmt::Debug for ObjectStoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreBackend")
            .field("location", &self.location)
            .finish()
    }
}

/// What a repository location string names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(url::Url),
}

impl Location {
    /// A plain path, `file://` URL, `s3://`, `azblob://` (also `az://`), `gs://`.
    pub fn parse(s: &str) -> Result<Location> {
        let open_err = |message: String| StorageError::Open {
            location: s.to_string(),
            message,
        };
        if !s.contains("://") {
            return Ok(Location::Local(PathBuf::from(s)));
        }
        let url = url::Url::parse(s).map_err(|e| open_err(e.to_string()))?;
        match url.scheme() {
            "file" => url
                .to_file_path()
                .map(Location::Local)
                .map_err(|_| open_err("not a local file path".into())),
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => Ok(Location::Remote(url)),
            "azblob" => {
                let rest = &s["azblob://".len()..];
                let url = url::Url::parse(&format!("az://{rest}"))
                    .map_err(|e| open_err(e.to_string()))?;
                Ok(Location::Remote(url))
            }
            other => Err(open_err(format!(
                "unsupported scheme `{other}`: use a path, file://, s3://, azblob:// or gs://"
            ))),
        }
    }
}

impl ObjectStoreBackend {
    /// Opens a location. A local directory is created when `create` is set, and must exist
    /// otherwise.
    pub fn open(location: &str, options: &Options, create: bool) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lifeboat-storage")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Open {
                location: location.to_string(),
                message: format!("cannot start I/O runtime: {e}"),
            })?;
        let open_err = |message: String| StorageError::Open {
            location: location.to_string(),
            message,
        };
        let (store, prefix, shown): (Arc<dyn ObjectStore>, StorePath, String) =
            match Location::parse(location)? {
                Location::Local(path) => {
                    if create && !path.exists() {
                        // Only the owner may list or read the repository (its key files
                        // among it), whatever the umask.
                        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(&path)
                            .and_then(|()| {
                                std::fs::set_permissions(
                                    &path,
                                    std::fs::Permissions::from_mode(0o700),
                                )
                            })
                            .map_err(|e| open_err(e.to_string()))?;
                    }
                    let meta = std::fs::metadata(&path).map_err(|e| open_err(e.to_string()))?;
                    if !meta.is_dir() {
                        return Err(open_err("not a directory".into()));
                    }
                    let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
                        .map_err(|e| open_err(e.to_string()))?
                        .with_fsync(true)
                        .with_automatic_cleanup(true);
                    (
                        Arc::new(store),
                        StorePath::default(),
                        path.display().to_string(),
                    )
                }
                Location::Remote(url) => {
                    let (store, prefix) = object_store::parse_url_opts(
                        &url,
                        options.iter().map(|(k, v)| (k.as_str(), v.clone())),
                    )
                    .map_err(|e| open_err(e.to_string()))?;
                    let mut shown = url.clone();
                    let _ = shown.set_password(None);
                    (Arc::from(store), prefix, shown.to_string())
                }
            };
        Ok(ObjectStoreBackend {
            store,
            prefix,
            location: shown,
            runtime,
        })
    }

    /// A local directory, as `open` would give for a plain path.
    pub fn local(path: &Path, create: bool) -> Result<Self> {
        Self::open(&path.display().to_string(), &Vec::new(), create)
    }

    fn path(&self, kind: Kind, name: &str) -> StorePath {
        let mut p = self.prefix.clone();
        for part in kind.path_of(name).split('/') {
            p = p.clone().join(part);
        }
        p
    }

    fn error(&self, kind: Kind, name: &str, e: object_store::Error) -> StorageError {
        let path = kind.path_of(name);
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                location: self.location.clone(),
                path,
            },
            other => StorageError::Failed {
                location: self.location.clone(),
                path,
                message: error_chain(&other),
            },
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .checked_add(jiff::SignedDuration::from_nanos(i64::from(
            t.timestamp_subsec_nanos(),
        )))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

impl Backend for ObjectStoreBackend {
    fn location(&self) -> &str {
        &self.location
    }

    fn put(&self, kind: Kind, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(kind, name);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.error(kind, name, e))
    }

    fn get(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        self.runtime
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.error(kind, name, e))
    }

    fn get_range(&self, kind: Kind, name: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        let want = range.end - range.start;
        let bytes = self
            .runtime
            .block_on(self.store.get_range(&path, range))
            .map_err(|e| self.error(kind, name, e))?;
        if bytes.len() as u64 != want {
            return Err(StorageError::Failed {
                location: self.location.clone(),
                path: kind.path_of(name),
                message: format!(
                    "short read: {} of {want} bytes (truncated object?)",
                    bytes.len()
                ),
            });
        }
        Ok(bytes.to_vec())
    }

    fn head(&self, kind: Kind, name: &str) -> Result<ObjectInfo> {
        let path = self.path(kind, name);
        let meta = self
            .runtime
            .block_on(self.store.head(&path))
            .map_err(|e| self.error(kind, name, e))?;
        Ok(ObjectInfo {
            name: name.to_string(),
            size: meta.size,
            modified: timestamp(meta.last_modified),
        })
    }

    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        if kind == Kind::Config {
            return match self.head(kind, "config") {
                Ok(info) => Ok(vec![info]),
                Err(e) if e.is_not_found() => Ok(vec![]),
                Err(e) => Err(e),
            };
        }
        let prefix = self.prefix.clone().join(kind.folder());
        let metas: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&prefix)).try_collect())
            .map_err(|e| self.error(kind, "", e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                // Skip the temporary files of an interrupted local write.
                if name.starts_with('.') || name.contains('#') {
                    return None;
                }
                Some(ObjectInfo {
                    name,
                    size: m.size,
                    modified: timestamp(m.last_modified),
                })
            })
            .collect())
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(kind, name, e)),
        }
    }
}
