//! Finding chunks: the repository's index files, merged into one sorted table in the local
//! cache and memory-mapped.
//!
//! Memory does not grow with the repository: lookups binary-search the mapped table, and the
//! operating system pages in only what is touched. The table records which index files it
//! covers; opening a repository reads only the index files it does not cover yet and merges
//! them in (a full rebuild happens only when index files were removed, i.e. after a prune).
//! The table is a local cache, not part of the repository format: deleting it is always safe.
//!
//! ```text
//! table  = "LBIC" version:u32 n_files:u32 file_id* n_packs:u32 (pack_id pack_len:u64)*
//!          n_entries:u64 entry*            (entries sorted by chunk id)
//! entry  = chunk_id pack_no:u32 kind:u8 pad:3 frame_offset:u32 frame_len:u32 offset:u32 length:u32
//! ```

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use lifeboat_format::index::{IndexFile, IndexedPack};
use lifeboat_format::pack::{ChunkKind, PackEntry};
use lifeboat_format::{Id, MasterKey};
use lifeboat_storage::{Backend, Kind};
use serde::{Deserialize, Serialize};

use crate::damage;
use crate::{RepoError, Result};

const MAGIC: &[u8; 4] = b"LBIC";
const VERSION: u32 = 1;
const ENTRY_LEN: usize = 56;

/// Where a chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: Id,
    pub entry: PackEntry,
}

/// A prune's first phase: packs to delete once the grace period has passed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CondemnedPacks {
    pub time: jiff::Timestamp,
    pub packs: Vec<Id>,
}

pub struct Index {
    table: Option<memmap2::Mmap>,
    entries_start: usize,
    entry_count: usize,
    packs: Vec<(Id, u64)>,
    /// Packs a prune has marked for deletion: never deduplicated against.
    condemned: HashSet<Id>,
    /// Index files covered by the table.
    files: Vec<Id>,
}

struct Table<'a> {
    files: Vec<Id>,
    packs: Vec<(Id, u64)>,
    entries: &'a [u8],
}

fn parse_table(bytes: &[u8]) -> Option<Table<'_>> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = bytes.get(pos..pos.checked_add(n)?)?;
        pos += n;
        Some(s)
    };
    if take(4)? != MAGIC || u32::from_le_bytes(take(4)?.try_into().ok()?) != VERSION {
        return None;
    }
    let n_files = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut files = Vec::with_capacity(n_files.min(1 << 20));
    for _ in 0..n_files {
        files.push(Id::from_bytes(take(32)?.try_into().ok()?));
    }
    let n_packs = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut packs = Vec::with_capacity(n_packs.min(1 << 20));
    for _ in 0..n_packs {
        let id = Id::from_bytes(take(32)?.try_into().ok()?);
        let len = u64::from_le_bytes(take(8)?.try_into().ok()?);
        packs.push((id, len));
    }
    let n_entries = u64::from_le_bytes(take(8)?.try_into().ok()?) as usize;
    let entries = take(n_entries.checked_mul(ENTRY_LEN)?)?;
    if pos != bytes.len() {
        return None;
    }
    Some(Table {
        files,
        packs,
        entries,
    })
}

fn entry_id(entries: &[u8], i: usize) -> &[u8] {
    &entries[i * ENTRY_LEN..i * ENTRY_LEN + 32]
}

fn decode_entry(entries: &[u8], i: usize, packs: &[(Id, u64)]) -> Option<Location> {
    let e = &entries[i * ENTRY_LEN..(i + 1) * ENTRY_LEN];
    let u32_at = |o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
    let pack = packs.get(u32_at(32) as usize)?.0;
    let kind = ChunkKind::from_u8(e[36], "index cache").ok()?;
    Some(Location {
        pack,
        entry: PackEntry {
            kind,
            id: Id::from_bytes(e[..32].try_into().ok()?),
            frame_offset: u32_at(40),
            frame_len: u32_at(44),
            offset: u32_at(48),
            length: u32_at(52),
        },
    })
}

fn encode_entry(out: &mut impl Write, pack_no: u32, e: &PackEntry) -> std::io::Result<()> {
    let mut buf = [0u8; ENTRY_LEN];
    buf[..32].copy_from_slice(e.id.as_bytes());
    buf[32..36].copy_from_slice(&pack_no.to_le_bytes());
    buf[36] = e.kind as u8;
    buf[40..44].copy_from_slice(&e.frame_offset.to_le_bytes());
    buf[44..48].copy_from_slice(&e.frame_len.to_le_bytes());
    buf[48..52].copy_from_slice(&e.offset.to_le_bytes());
    buf[52..56].copy_from_slice(&e.length.to_le_bytes());
    out.write_all(&buf)
}

/// Reads and opens one index file, checking it against its name. `listed_size` is the size
/// a listing gave (asked for with `head` when `None`); the read never exceeds it.
pub fn read_index_file(
    backend: &dyn Backend,
    key: &MasterKey,
    id: &Id,
    listed_size: Option<u64>,
) -> Result<IndexFile> {
    let name = id.to_hex();
    let sealed = damage::get_bounded(
        backend,
        Kind::Index,
        &name,
        listed_size,
        damage::MAX_INDEX_FILE,
    )?;
    if Id::of_stored(&sealed) != *id {
        return Err(RepoError::corrupt(
            Kind::Index,
            &name,
            lifeboat_format::FormatError::Corrupt {
                what: "index file",
                detail: "content does not match its name".into(),
            },
        ));
    }
    IndexFile::unseal(key.encryption_key(), &sealed)
        .map_err(|e| RepoError::corrupt(Kind::Index, &name, e))
}

/// The readable condemned-packs markers. An unreadable one is skipped with a warning: its
/// packs are then neither avoided nor deleted, which loses nothing (`check` names it).
pub fn read_condemned(backend: &dyn Backend) -> Result<Vec<(String, CondemnedPacks)>> {
    let mut out = Vec::new();
    for info in backend.list(Kind::Condemned)? {
        match read_marker(backend, &info.name, Some(info.size)) {
            Ok(marker) => out.push((info.name, marker)),
            Err(RepoError::Corrupt { object, source }) => {
                damage::skip(&object, "condemned-packs marker", &source.to_string())
            }
            Err(RepoError::Storage(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Reads one condemned-packs marker, checking it against its name (the hash of its bytes).
pub fn read_marker(
    backend: &dyn Backend,
    name: &str,
    listed_size: Option<u64>,
) -> Result<CondemnedPacks> {
    let corrupt = |detail: String| {
        RepoError::corrupt(
            Kind::Condemned,
            name,
            lifeboat_format::FormatError::Corrupt {
                what: "condemned-packs marker",
                detail,
            },
        )
    };
    let Ok(id) = name.parse::<Id>() else {
        return Err(corrupt("its name is not a 64-digit hex id".into()));
    };
    let bytes = damage::get_bounded(
        backend,
        Kind::Condemned,
        name,
        listed_size,
        damage::MAX_SMALL_OBJECT,
    )?;
    if Id::of_stored(&bytes) != id {
        return Err(corrupt("content does not match its name".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        RepoError::corrupt(
            Kind::Condemned,
            name,
            lifeboat_format::FormatError::Corrupt {
                what: "condemned-packs marker",
                detail: e.to_string(),
            },
        )
    })
}

impl Index {
    /// Brings the cached table up to date with the repository's index files and maps it.
    /// A cache folder that cannot be created or written (a read-only home) is no reason to
    /// fail: a temporary one is used instead, with a warning.
    pub fn load(backend: &dyn Backend, key: &MasterKey, cache_dir: Option<&Path>) -> Result<Index> {
        if let Some(dir) = cache_dir {
            match Self::load_in(backend, key, Some(dir)) {
                Err(RepoError::Cache { path, source }) => tracing::warn!(
                    "cannot use the local cache {} ({source}); using a temporary one for this command",
                    path.display()
                ),
                other => return other,
            }
        }
        Self::load_in(backend, key, None)
    }

    fn load_in(backend: &dyn Backend, key: &MasterKey, cache_dir: Option<&Path>) -> Result<Index> {
        let mut sizes: HashMap<Id, u64> = HashMap::new();
        for info in backend.list(Kind::Index)? {
            match info.name.parse::<Id>() {
                Ok(id) => {
                    sizes.insert(id, info.size);
                }
                Err(_) => damage::skip(
                    &Kind::Index.path_of(&info.name),
                    "index file",
                    "its name is not a 64-digit hex id",
                ),
            }
        }
        let mut current: Vec<Id> = sizes.keys().copied().collect();
        current.sort();
        let condemned = read_condemned(backend)?
            .into_iter()
            .flat_map(|(_, m)| m.packs)
            .collect();

        let cache_err = |path: &Path, source| RepoError::Cache {
            path: path.to_path_buf(),
            source,
        };
        let (dir, _temp) = match cache_dir {
            Some(dir) => (dir.to_path_buf(), None),
            None => {
                let t = tempfile::tempdir()
                    .map_err(|e| cache_err(Path::new("temporary directory"), e))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| cache_err(&dir, e))?;
        let table_path = dir.join("index.table");

        let existing = File::open(&table_path)
            .ok()
            .and_then(|f| unsafe { memmap2::Mmap::map(&f) }.ok());
        let usable = existing.as_ref().and_then(|m| parse_table(m)).filter(|t| {
            let have: HashSet<&Id> = current.iter().collect();
            t.files.iter().all(|f| have.contains(f))
        });
        let covered: HashSet<Id> = usable
            .as_ref()
            .map(|t| t.files.iter().copied().collect())
            .unwrap_or_default();
        let missing: Vec<Id> = current
            .iter()
            .filter(|f| !covered.contains(f))
            .copied()
            .collect();

        if !(missing.is_empty() && usable.is_some()) {
            let mut new_packs: Vec<IndexedPack> = Vec::new();
            let mut readable = current.clone();
            for id in &missing {
                match read_index_file(backend, key, id, sizes.get(id).copied()) {
                    Ok(file) => new_packs.extend(file.packs),
                    // A damaged index file must not make the whole repository unusable: its
                    // packs are just not found (and `check` names it).
                    Err(RepoError::Corrupt { object, source }) => {
                        damage::skip(&object, "index file", &source.to_string());
                        readable.retain(|f| f != id);
                    }
                    // Rewritten by a prune since the listing.
                    Err(RepoError::Storage(e)) if e.is_not_found() => {
                        readable.retain(|f| f != id);
                    }
                    Err(e) => return Err(e),
                }
            }
            let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| cache_err(&dir, e))?;
            write_merged(tmp.as_file(), usable.as_ref(), &readable, new_packs)
                .map_err(|e| cache_err(&table_path, e))?;
            tmp.persist(&table_path)
                .map_err(|e| cache_err(&table_path, e.error))?;
        }
        drop(usable);
        drop(existing);

        let file = File::open(&table_path).map_err(|e| cache_err(&table_path, e))?;
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| cache_err(&table_path, e))?;
        let table = parse_table(&map).ok_or_else(|| {
            cache_err(
                &table_path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "index cache is damaged"),
            )
        })?;
        let entries_start = map.len() - table.entries.len();
        let entry_count = table.entries.len() / ENTRY_LEN;
        let packs = table.packs;
        let files = table.files;
        Ok(Index {
            table: Some(map),
            entries_start,
            entry_count,
            packs,
            condemned,
            files,
        })
    }

    fn entries(&self) -> &[u8] {
        match &self.table {
            Some(map) => &map[self.entries_start..],
            None => &[],
        }
    }

    /// The first position whose id is not less than `id`.
    fn lower_bound(&self, id: &Id) -> usize {
        let entries = self.entries();
        let (mut lo, mut hi) = (0, self.entry_count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if entry_id(entries, mid) < id.as_bytes().as_slice() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Every place the chunk is stored.
    pub fn locate_all(&self, id: &Id) -> impl Iterator<Item = Location> + '_ {
        let entries = self.entries();
        let start = self.lower_bound(id);
        let wanted = *id.as_bytes();
        (start..self.entry_count)
            .take_while(move |&i| entry_id(entries, i) == wanted.as_slice())
            .filter_map(move |i| decode_entry(entries, i, &self.packs))
    }

    /// A place the chunk is stored, preferring packs no prune has condemned.
    pub fn locate(&self, id: &Id) -> Option<Location> {
        let mut fallback = None;
        for loc in self.locate_all(id) {
            if !self.condemned.contains(&loc.pack) {
                return Some(loc);
            }
            fallback = Some(loc);
        }
        fallback
    }

    /// Whether a backup may reuse the stored chunk instead of storing it again.
    pub fn has_live(&self, id: &Id) -> bool {
        self.locate_all(id)
            .any(|l| !self.condemned.contains(&l.pack))
    }

    pub fn len(&self) -> usize {
        self.entry_count
    }

    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    pub fn packs(&self) -> &[(Id, u64)] {
        &self.packs
    }

    pub fn files(&self) -> &[Id] {
        &self.files
    }

    pub fn is_condemned(&self, pack: &Id) -> bool {
        self.condemned.contains(pack)
    }
}

/// Writes a new table: the usable old one (filtered to index files that still exist) merged
/// with the entries of newly read index files.
fn write_merged(
    file: &File,
    old: Option<&Table<'_>>,
    files: &[Id],
    new_packs: Vec<IndexedPack>,
) -> std::io::Result<()> {
    let mut packs: Vec<(Id, u64)> = old.map(|t| t.packs.clone()).unwrap_or_default();
    let mut pack_no: HashMap<Id, u32> = packs
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i as u32))
        .collect();
    let mut fresh: Vec<(u32, PackEntry)> = Vec::new();
    for p in new_packs {
        let no = *pack_no.entry(p.id).or_insert_with(|| {
            packs.push((p.id, p.len));
            (packs.len() - 1) as u32
        });
        fresh.extend(p.entries.into_iter().map(|e| (no, e)));
    }
    fresh.sort_by_key(|(_, e)| e.id);
    let old_entries = old.map(|t| t.entries).unwrap_or(&[]);
    let old_count = old_entries.len() / ENTRY_LEN;

    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&(files.len() as u32).to_le_bytes())?;
    for f in files {
        w.write_all(f.as_bytes())?;
    }
    w.write_all(&(packs.len() as u32).to_le_bytes())?;
    for (id, len) in &packs {
        w.write_all(id.as_bytes())?;
        w.write_all(&len.to_le_bytes())?;
    }
    w.write_all(&((old_count + fresh.len()) as u64).to_le_bytes())?;
    // Merge two sorted runs.
    let (mut i, mut j) = (0, 0);
    while i < old_count || j < fresh.len() {
        let take_old = j == fresh.len()
            || (i < old_count && entry_id(old_entries, i) <= fresh[j].1.id.as_bytes().as_slice());
        if take_old {
            w.write_all(&old_entries[i * ENTRY_LEN..(i + 1) * ENTRY_LEN])?;
            i += 1;
        } else {
            encode_entry(&mut w, fresh[j].0, &fresh[j].1)?;
            j += 1;
        }
    }
    w.flush()?;
    Ok(())
}
