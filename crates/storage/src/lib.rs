//! Where repository objects are kept.
//!
//! The repository speaks to storage only through [`Backend`]: put, create-if-absent, get,
//! ranged get, list and delete of immutable objects named by `(Kind, name)`. There is no
//! rename, no append, no compare-and-swap and no lock, so every object store can serve, and
//! the repository's safety never depends on the storage being clever. The one conditional
//! write, [`Backend::create`], is what object stores offer as "put if absent".
//!
//! Listings return only objects at their kind's place ([`locate`]); anything else under the
//! location (a stray file in the root, a sub-folder in `keys/`, a pack in the wrong fan-out
//! folder) is reported by [`Backend::strays`], never handed out as an object.
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

use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// The kinds of objects a repository holds, each in its own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The single `config` object saying this is a repository and of which format.
    Config,
    /// Key files, each sealing the master key under a password.
    Keys,
    /// Packs, fanned out over 256 sub-folders by the first two hex digits of their name.
    Data,
    /// Index files naming the chunks of packs.
    Index,
    /// Restore-point manifests.
    Points,
    /// Prune's first phase: packs marked for deletion after a grace period.
    Condemned,
    /// Leases: create-if-absent objects that let one prune at a time delete.
    Leases,
}

impl Kind {
    /// Every kind, in the order their folders are shown.
    pub const ALL: [Kind; 7] = [
        Kind::Config,
        Kind::Keys,
        Kind::Data,
        Kind::Index,
        Kind::Points,
        Kind::Condemned,
        Kind::Leases,
    ];

    /// The folder holding this kind's objects (empty for `config`, which is in the root).
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Keys => "keys",
            Kind::Data => "data",
            Kind::Index => "index",
            Kind::Points => "points",
            Kind::Condemned => "condemned",
            Kind::Leases => "leases",
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

/// Which kind of object, and its name, a path relative to the repository root is; `None` for
/// a path where no object of any kind belongs (a stray).
pub fn locate(path: &str) -> Option<(Kind, &str)> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["config"] => Some((Kind::Config, "config")),
        ["data", fan, name] if fan.len() == 2 && name.len() > 2 && name.starts_with(fan) => {
            Some((Kind::Data, name))
        }
        [folder, name] if !name.is_empty() => Kind::ALL
            .into_iter()
            .find(|k| !matches!(k, Kind::Config | Kind::Data) && k.folder() == *folder)
            .map(|k| (k, *name)),
        _ => None,
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its name within its kind (for packs, without the fan-out folder).
    pub name: String,
    /// Its size as the storage reports it (not to be trusted for allocation).
    pub size: u64,
    /// When the storage says it was written.
    pub modified: jiff::Timestamp,
}

/// Something under the repository location that is not at any kind's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// Its path relative to the repository root (as far as it could be read).
    pub path: String,
    /// Its size, when it could be listed.
    pub size: Option<u64>,
    /// Why it is not an object (or why it could not be listed).
    pub reason: String,
}

/// What went wrong talking to storage, naming the location and the object.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object is not there.
    #[error("{location}: {path} does not exist")]
    NotFound { location: String, path: String },
    /// A create-if-absent found the object already there.
    #[error("{location}: {path} already exists")]
    AlreadyExists { location: String, path: String },
    /// Any other failure of the storage.
    #[error("{location}: {path}: {message}")]
    Failed {
        location: String,
        path: String,
        message: String,
    },
    /// The location cannot be opened.
    #[error("cannot open repository location `{location}`: {message}")]
    Open { location: String, message: String },
}

impl StorageError {
    /// Whether the object was not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// Whether a create-if-absent lost to an object already there.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, StorageError::AlreadyExists { .. })
    }
}

/// Results of storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Immutable objects by `(Kind, name)` at one location.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Where this backend stores, for messages (never with credentials).
    fn location(&self) -> &str;
    /// Stores an object; when this returns the object is durable.
    fn put(&self, kind: Kind, name: &str, bytes: Vec<u8>) -> Result<()>;
    /// Stores an object only if none of that name exists (atomically: of two concurrent
    /// creates, exactly one succeeds); [`StorageError::AlreadyExists`] otherwise.
    fn create(&self, kind: Kind, name: &str, bytes: Vec<u8>) -> Result<()>;
    /// A whole object. Only for objects whose size is known to be small.
    fn get(&self, kind: Kind, name: &str) -> Result<Vec<u8>>;
    /// Exactly the bytes `range` of an object (a shorter answer is an error).
    fn get_range(&self, kind: Kind, name: &str, range: Range<u64>) -> Result<Vec<u8>>;
    /// An object's size and time.
    fn head(&self, kind: Kind, name: &str) -> Result<ObjectInfo>;
    /// The objects at this kind's place (see [`locate`]).
    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>>;
    /// Everything under the location that is not at any kind's place.
    fn strays(&self) -> Result<Vec<Stray>>;
    /// Removes an object; removing one that is not there is no error.
    fn delete(&self, kind: Kind, name: &str) -> Result<()>;
    /// Temporary files of writes that never finished (a local store writes `<object>#<n>` and
    /// renames it into place; a killed writer leaves it). Listings never show them. Stores
    /// without such files have none.
    fn temporaries(&self) -> Result<Vec<Temporary>> {
        Ok(Vec::new())
    }
    /// Removes one temporary file [`Backend::temporaries`] listed; one gone already is no error.
    fn delete_temporary(&self, path: &str) -> Result<()> {
        let _ = path;
        Ok(())
    }
}

/// A temporary file left by a write that never finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Temporary {
    /// Its path relative to the repository root (`data/ab/<id>#1`).
    pub path: String,
    /// Its size.
    pub size: u64,
    /// When it was last written.
    pub modified: jiff::Timestamp,
}

/// Whether a path relative to the root is where a write of an object leaves its temporary
/// file: an object's place followed by `#` and digits.
pub fn is_temporary(path: &str) -> bool {
    let Some((object, digits)) = path.rsplit_once('#') else {
        return false;
    };
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        && locate(object).is_some()
}

/// Options for opening a location: object-store settings (`endpoint`, `region`,
/// `access_key_id`, `secret_access_key`, `allow_http`, Azure and GCS keys, ...) passed to the
/// `object_store` builder for the URL's scheme.
pub type Options = Vec<(String, String)>;

/// A [`Backend`] on any `object_store` location.
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    location: String,
    runtime: tokio::runtime::Runtime,
    /// The folder of a local repository, whose key files and config are made owner-only.
    local_root: Option<PathBuf>,
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
    /// A local directory.
    Local(PathBuf),
    /// An object-store URL.
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
        let mut local_root = None;
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
                    local_root = Some(path.clone());
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
            local_root,
        })
    }

    /// A local repository's key files and config readable by the owner only, whatever the
    /// umask (the folder is private too; this also holds should it be opened up).
    fn make_private(&self, kind: Kind, name: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let (Some(root), Kind::Keys | Kind::Config) = (&self.local_root, kind) else {
            return Ok(());
        };
        std::fs::set_permissions(
            root.join(kind.path_of(name)),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| StorageError::Failed {
            location: self.location.clone(),
            path: kind.path_of(name),
            message: format!("making it private: {e}"),
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

    /// Every object under `folder` (the whole location when empty), recursively. An entry the
    /// store cannot name is returned as unreadable rather than failing the whole listing; any
    /// other failure fails it, since a partial listing must never pass for a complete one.
    fn list_under(&self, folder: &str) -> Result<Vec<Listed>> {
        let prefix = if folder.is_empty() {
            self.prefix.clone()
        } else {
            self.prefix.clone().join(folder)
        };
        let items: Vec<object_store::Result<object_store::ObjectMeta>> = self
            .runtime
            .block_on(self.store.list(Some(&prefix)).collect());
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Ok(meta) => {
                    let Some(parts) = meta.location.prefix_match(&self.prefix) else {
                        continue;
                    };
                    let path = parts
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/");
                    out.push(Listed::Object { path, meta });
                }
                Err(e) if is_unnameable(&e) => out.push(Listed::Unreadable {
                    path: if folder.is_empty() {
                        ".".into()
                    } else {
                        format!("{folder}/")
                    },
                    reason: format!("an entry that cannot be listed: {}", error_chain(&e)),
                }),
                Err(e) => {
                    return Err(StorageError::Failed {
                        location: self.location.clone(),
                        path: if folder.is_empty() {
                            "(root)".into()
                        } else {
                            format!("{folder}/")
                        },
                        message: error_chain(&e),
                    });
                }
            }
        }
        Ok(out)
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

/// One entry of a raw listing.
enum Listed {
    /// An object, by its path relative to the repository root.
    Object {
        path: String,
        meta: object_store::ObjectMeta,
    },
    /// An entry whose name the store could not turn into an object path (not UTF-8, say).
    Unreadable { path: String, reason: String },
}

/// Why a path is not an object: said for people running `check`.
fn stray_reason(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [_] => "a file in the repository root, where only `config` belongs".into(),
        ["data", _] => "a file directly in data/, where only fan-out folders belong".into(),
        ["data", fan, _] if fan.len() == 2 => {
            format!("not in its fan-out folder (a pack's name starts with the folder's `{fan}`)")
        }
        [folder, ..]
            if Kind::ALL
                .iter()
                .any(|k| *k != Kind::Config && k.folder() == *folder) =>
        {
            format!("in a sub-folder of {folder}/, which holds no folders")
        }
        _ => "in a folder that is not part of a repository".into(),
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
            .map_err(|e| self.error(kind, name, e))?;
        self.make_private(kind, name)
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

    fn create(&self, kind: Kind, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(kind, name);
        let options = PutOptions::from(PutMode::Create);
        match self
            .runtime
            .block_on(self.store.put_opts(&path, PutPayload::from(bytes), options))
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StorageError::AlreadyExists {
                location: self.location.clone(),
                path: kind.path_of(name),
            }),
            Err(e) => Err(self.error(kind, name, e)),
        }
    }

    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        if kind == Kind::Config {
            return match self.head(kind, "config") {
                Ok(info) => Ok(vec![info]),
                Err(e) if e.is_not_found() => Ok(vec![]),
                Err(e) => Err(e),
            };
        }
        let mut out = Vec::new();
        for listed in self.list_under(kind.folder())? {
            let Listed::Object { path, meta } = listed else {
                continue;
            };
            if let Some((k, name)) = locate(&path)
                && k == kind
            {
                out.push(ObjectInfo {
                    name: name.to_string(),
                    size: meta.size,
                    modified: timestamp(meta.last_modified),
                });
            }
        }
        Ok(out)
    }

    fn strays(&self) -> Result<Vec<Stray>> {
        let mut out = Vec::new();
        for listed in self.list_under("")? {
            match listed {
                Listed::Object { path, meta } => {
                    if locate(&path).is_none() {
                        let reason = stray_reason(&path);
                        out.push(Stray {
                            path,
                            size: Some(meta.size),
                            reason,
                        });
                    }
                }
                Listed::Unreadable { path, reason } => out.push(Stray {
                    path,
                    size: None,
                    reason,
                }),
            }
        }
        Ok(out)
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(kind, name, e)),
        }
    }

    fn temporaries(&self) -> Result<Vec<Temporary>> {
        let Some(root) = &self.local_root else {
            return Ok(Vec::new());
        };
        let failed = |path: &Path, e: std::io::Error| StorageError::Failed {
            location: self.location.clone(),
            path: path.display().to_string(),
            message: format!("looking for temporary files: {e}"),
        };
        let mut out = Vec::new();
        // Temporary files lie where objects do: in a kind's folder or a fan-out folder.
        let mut folders: Vec<PathBuf> = Vec::new();
        for kind in Kind::ALL {
            if kind == Kind::Config {
                folders.push(PathBuf::new());
            } else {
                folders.push(PathBuf::from(kind.folder()));
            }
        }
        if let Ok(fans) = std::fs::read_dir(root.join("data")) {
            for fan in fans.flatten() {
                if fan.file_type().is_ok_and(|t| t.is_dir()) {
                    folders.push(Path::new("data").join(fan.file_name()));
                }
            }
        }
        for folder in folders {
            let entries = match std::fs::read_dir(root.join(&folder)) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(&folder, e)),
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let rel = if folder.as_os_str().is_empty() {
                    name
                } else {
                    format!("{}/{name}", folder.display())
                };
                if !is_temporary(&rel) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                out.push(Temporary {
                    path: rel,
                    size: meta.len(),
                    modified,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn delete_temporary(&self, path: &str) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        if !is_temporary(path) {
            return Err(StorageError::Failed {
                location: self.location.clone(),
                path: path.to_string(),
                message: "not a temporary file's name".into(),
            });
        }
        match std::fs::remove_file(root.join(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::Failed {
                location: self.location.clone(),
                path: path.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

/// Whether a listing error concerns one entry's name (which the store cannot represent as an
/// object path) rather than the listing itself.
fn is_unnameable(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::InvalidPath { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_are_told_from_objects_and_strays() {
        let pack = format!("data/ab/ab{}", "0".repeat(62));
        assert!(is_temporary(&format!("{pack}#1")));
        assert!(is_temporary(&format!("index/{}#12", "1".repeat(64))));
        assert!(is_temporary("config#3"));
        assert!(!is_temporary(&pack));
        assert!(!is_temporary(&format!("{pack}#")));
        assert!(!is_temporary(&format!("{pack}#x1")));
        // Only where an object could be.
        assert!(!is_temporary("elsewhere/thing#1"));
        assert!(!is_temporary("index/../config#1"));
        assert!(!is_temporary("data/cd/ab00#1"));
    }

    #[test]
    fn a_local_store_lists_and_removes_its_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let backend = ObjectStoreBackend::local(dir.path(), true).unwrap();
        backend
            .put(Kind::Index, &"2".repeat(64), b"x".to_vec())
            .unwrap();
        let temp = format!("index/{}#1", "3".repeat(64));
        std::fs::write(dir.path().join(&temp), b"half").unwrap();
        std::fs::write(dir.path().join("index/notes#draft"), b"?").unwrap();
        let found = backend.temporaries().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, temp);
        assert_eq!(found[0].size, 4);
        assert!(backend.delete_temporary("index/notes#draft").is_err());
        backend.delete_temporary(&temp).unwrap();
        assert!(backend.temporaries().unwrap().is_empty());
        let names: Vec<String> = backend
            .list(Kind::Index)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert!(names.contains(&"2".repeat(64)), "{names:?}");
    }
}
