//! Verification: finds and names every missing, truncated or corrupted object.
//!
//! Without `read_data`, it checks structure: nothing lies where no object belongs (a stray
//! file in the root, in a sub-folder, in the wrong fan-out folder), every object's name is
//! what its folder's objects are named, every key file, index file, condemned marker and
//! lease opens and matches its name, every pack an index names exists with the size the index
//! records, every restore point opens, and every tree and chunk a restore point reaches is
//! indexed. With `read_data`, it also reads every pack, checks it against its name, opens its
//! header and every frame, and checks every chunk against its keyed hash and against the
//! index. A pack is read only when its listed size is the one the index records (or, for a
//! pack no index names, no larger than any pack lifeboat writes), and never by more than
//! that many bytes, so a huge object in `data/` is a finding rather than an allocation.

use std::collections::{HashMap, HashSet};

use lifeboat_format::Id;
use lifeboat_format::keys::KeyFile;
use lifeboat_format::pack::{self, PackEntry};
use lifeboat_format::tree::{EntryKind, Tree};
use lifeboat_storage::Kind;
use serde::Serialize;

use crate::index::read_index_file;
use crate::{PointRead, RepoError, Repository, Result, damage};

/// One finding.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The object at fault, as a path in the repository (or a restore point and a path in it).
    pub object: String,
    pub message: String,
}

/// Everything a check found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub problems: Vec<Problem>,
    /// Not errors: packs no index names (left by an interrupted backup; `prune` removes them).
    pub notes: Vec<String>,
    /// Not errors, but worth knowing: leftovers of interrupted writes (temporary files) and
    /// markers of backups under way or killed, which `prune` reclaims.
    pub warnings: Vec<Problem>,
    pub packs: usize,
    pub index_files: usize,
    pub points: usize,
    pub trees: usize,
    pub packs_read: usize,
    pub bytes_read: u64,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn warning(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }

    fn problem(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }
}

/// Progress callback: (phase, done, total).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// The error without the object's path, which the problem already names.
fn what_is_wrong(e: RepoError) -> String {
    match e {
        RepoError::Corrupt { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// Checks the repository (see the module doc); fails only when the storage does.
pub fn check(repo: &Repository, read_data: bool, progress: Progress<'_>) -> Result<CheckReport> {
    let backend = repo.backend();
    let mut report = CheckReport::default();

    for stray in backend.strays()? {
        let size = stray
            .size
            .map(|s| format!(" ({s} bytes)"))
            .unwrap_or_default();
        report.problem(stray.path, format!("stray: {}{size}", stray.reason));
    }
    for temp in backend.temporaries()? {
        report.warning(
            temp.path,
            format!(
                "the temporary file of a write that never finished ({} bytes, written {}); `lifeboat prune` removes it once older than its grace period",
                temp.size,
                temp.modified.strftime("%Y-%m-%d %H:%M:%S UTC")
            ),
        );
    }
    check_keys(repo, &mut report)?;

    let mut pack_sizes: HashMap<String, u64> = HashMap::new();
    for info in backend.list(Kind::Data)? {
        if info.name.parse::<Id>().is_err() {
            report.problem(
                Kind::Data.path_of(&info.name),
                format!(
                    "not a pack: its name is not a 64-digit hex id ({} bytes)",
                    info.size
                ),
            );
            continue;
        }
        pack_sizes.insert(info.name, info.size);
    }
    report.packs = pack_sizes.len();

    // Index files: each must open; each pack it names must exist, whole.
    let mut indexed: HashMap<Id, (u64, Vec<PackEntry>)> = HashMap::new();
    let mut chunks: HashSet<Id> = HashSet::new();
    let index_names = backend.list(Kind::Index)?;
    report.index_files = index_names.len();
    for (n, info) in index_names.iter().enumerate() {
        progress("index", n as u64, index_names.len() as u64);
        let path = Kind::Index.path_of(&info.name);
        let Ok(id) = info.name.parse::<Id>() else {
            report.problem(path, "not an index file: its name is not a 64-digit hex id");
            continue;
        };
        let file = match read_index_file(backend.as_ref(), repo.key(), &id, Some(info.size)) {
            Ok(f) => f,
            Err(e) => {
                report.problem(path, what_is_wrong(e));
                continue;
            }
        };
        for p in file.packs {
            let name = p.id.to_hex();
            match pack_sizes.get(&name) {
                None => report.problem(
                    Kind::Data.path_of(&name),
                    format!(
                        "missing (named by {path}, holding {} chunks)",
                        p.entries.len()
                    ),
                ),
                Some(&size) if size != p.len => report.problem(
                    Kind::Data.path_of(&name),
                    format!(
                        "is {size} bytes, the index says {} (truncated or damaged)",
                        p.len
                    ),
                ),
                Some(_) => {}
            }
            chunks.extend(p.entries.iter().map(|e| e.id));
            indexed.entry(p.id).or_insert((p.len, p.entries));
        }
    }
    for (name, &size) in &pack_sizes {
        let indexed_here = name.parse::<Id>().is_ok_and(|id| indexed.contains_key(&id));
        if indexed_here {
            continue;
        }
        if size > pack::MAX_PACK_LEN {
            report.problem(
                Kind::Data.path_of(name),
                format!("not a pack: {size} bytes, larger than any pack lifeboat writes, and no index names it"),
            );
        } else {
            report.notes.push(format!(
                "{} is not indexed (left by an interrupted backup?)",
                Kind::Data.path_of(name)
            ));
        }
    }

    for info in backend.list(Kind::Condemned)? {
        if let Err(e) = crate::index::read_marker(backend.as_ref(), &info.name, Some(info.size)) {
            report.problem(Kind::Condemned.path_of(&info.name), what_is_wrong(e));
        }
    }
    for info in backend.list(Kind::Leases)? {
        let path = Kind::Leases.path_of(&info.name);
        if crate::running::is_marker_name(&info.name) {
            match crate::running::read_record(backend.as_ref(), &info.name, Some(info.size)) {
                Ok(record) => report.warning(
                    path,
                    format!(
                        "a backup under way since {} ({}), or one that was killed (`lifeboat prune` removes its marker after {} h)",
                        info.modified.strftime("%Y-%m-%d %H:%M:%S UTC"),
                        record.holder,
                        crate::running::HONOURED_FOR.as_secs() / 3600
                    ),
                ),
                Err(RepoError::Storage(e)) if e.is_not_found() => {}
                Err(e) => report.problem(path, what_is_wrong(e)),
            }
            continue;
        }
        if let Err(e) = crate::lease::read_record(backend.as_ref(), &info.name, Some(info.size)) {
            report.problem(path, what_is_wrong(e));
        }
    }

    // Restore points and everything they reach.
    let mut reader = repo.reader();
    let mut seen_trees: HashSet<Id> = HashSet::new();
    let point_reads = repo.scan_points()?;
    report.points = point_reads.len();
    for (n, read) in point_reads.into_iter().enumerate() {
        progress("restore points", n as u64, report.points as u64);
        let (name, point) = match read {
            PointRead::Sound(id, point) => (id.to_hex(), point),
            PointRead::Misnamed { name, .. } => {
                report.problem(
                    Kind::Points.path_of(&name),
                    "a manifest whose content does not match its name (copied or renamed?)",
                );
                continue;
            }
            PointRead::Damaged { name, problem } => {
                report.problem(Kind::Points.path_of(&name), problem);
                continue;
            }
        };
        let info_name = name;
        for resource in &point.resources {
            let Some(root) = resource.root else { continue };
            let mut stack = vec![(root, format!("{}:{}", &info_name[..8], resource.name))];
            while let Some((tree_id, where_)) = stack.pop() {
                if !seen_trees.insert(tree_id) {
                    continue;
                }
                if !chunks.contains(&tree_id) {
                    report.problem(
                        where_,
                        format!("tree {} is not in any index", tree_id.short()),
                    );
                    continue;
                }
                let tree = match reader.read(&tree_id).and_then(|bytes| {
                    Tree::decode(&bytes).map_err(|e| RepoError::Corrupt {
                        object: format!("tree {}", tree_id.short()),
                        source: e,
                    })
                }) {
                    Ok(t) => t,
                    Err(e) => {
                        report.problem(where_, format!("tree {}: {e}", tree_id.short()));
                        continue;
                    }
                };
                report.trees += 1;
                for entry in &tree.entries {
                    let child = format!("{where_}/{}", String::from_utf8_lossy(&entry.name));
                    match &entry.kind {
                        EntryKind::Dir { tree } => stack.push((*tree, child)),
                        EntryKind::File { chunks: ids, .. } => {
                            for c in ids {
                                if !chunks.contains(c) {
                                    report.problem(
                                        &child,
                                        format!("content chunk {} is not in any index", c.short()),
                                    );
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    if read_data {
        read_all_packs(repo, &indexed, &pack_sizes, &mut report, progress)?;
    }
    Ok(report)
}

fn read_all_packs(
    repo: &Repository,
    indexed: &HashMap<Id, (u64, Vec<PackEntry>)>,
    pack_sizes: &HashMap<String, u64>,
    report: &mut CheckReport,
    progress: Progress<'_>,
) -> Result<()> {
    let key = repo.key().encryption_key();
    let total: u64 = pack_sizes
        .values()
        .map(|&size| size.min(pack::MAX_PACK_LEN))
        .sum();
    let mut done = 0u64;
    let mut names: Vec<&String> = pack_sizes.keys().collect();
    names.sort();
    for name in names {
        progress("packs", done, total);
        let path = Kind::Data.path_of(name);
        let Ok(id) = name.parse::<Id>() else { continue };
        let listed = pack_sizes[name];
        // Read no more than the index (or, unindexed, the largest pack) allows; a mismatch
        // was reported with the structure.
        let expected = match indexed.get(&id) {
            Some((len, _)) => *len,
            None => listed.min(pack::MAX_PACK_LEN),
        };
        if listed != expected {
            continue;
        }
        if expected == 0 {
            report.problem(path, "empty (not a pack)");
            continue;
        }
        let bytes = match repo.backend().get_range(Kind::Data, name, 0..expected) {
            Ok(b) => b,
            Err(e) => {
                report.problem(path, e.to_string());
                continue;
            }
        };
        done += bytes.len() as u64;
        report.packs_read += 1;
        report.bytes_read += bytes.len() as u64;
        if Id::of_stored(&bytes) != id {
            report.problem(&path, "content does not match its name (damaged)");
        }
        let header = match pack::read_header(key, &bytes) {
            Ok(h) => h,
            Err(e) => {
                report.problem(&path, format!("header: {e}"));
                continue;
            }
        };
        if let Some((_, entries)) = indexed.get(&id) {
            let in_header: HashSet<(Id, u32)> =
                header.iter().map(|e| (e.id, e.frame_offset)).collect();
            for e in entries {
                if !in_header.contains(&(e.id, e.frame_offset)) {
                    report.problem(
                        &path,
                        format!(
                            "chunk {} is in the index but not in the pack's header",
                            e.id.short()
                        ),
                    );
                }
            }
        }
        // Open each frame once and check every chunk in it.
        let mut by_frame: Vec<&PackEntry> = header.iter().collect();
        by_frame.sort_by_key(|e| e.frame_offset);
        let mut current: Option<(u32, Result<Vec<u8>, String>)> = None;
        for e in by_frame {
            if current.as_ref().map(|c| c.0) != Some(e.frame_offset) {
                let start = e.frame_offset as usize;
                let end = start + e.frame_len as usize;
                let opened = bytes
                    .get(start..end)
                    .ok_or_else(|| "frame outside the pack".to_string())
                    .and_then(|f| pack::open_frame(key, f).map_err(|err| err.to_string()));
                if let Err(msg) = &opened {
                    report.problem(&path, format!("frame at offset {start}: {msg}"));
                }
                current = Some((e.frame_offset, opened));
            }
            if let Some((_, Ok(plain))) = &current {
                match pack::chunk_in_frame(plain, e) {
                    Ok(data) if repo.key().chunk_id(data) == e.id => {}
                    Ok(_) => report.problem(
                        &path,
                        format!("chunk {} does not match its id", e.id.short()),
                    ),
                    Err(err) => report.problem(&path, err.to_string()),
                }
            }
        }
    }
    progress("packs", total, total);
    Ok(())
}

/// Every key file must be one: named by the hash of its bytes, and a key file's JSON.
fn check_keys(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    let backend = repo.backend();
    for info in backend.list(Kind::Keys)? {
        let path = Kind::Keys.path_of(&info.name);
        let Ok(id) = info.name.parse::<Id>() else {
            report.problem(path, "not a key file: its name is not a 64-digit hex id");
            continue;
        };
        let bytes = match damage::get_bounded(
            backend.as_ref(),
            Kind::Keys,
            &info.name,
            Some(info.size),
            damage::MAX_SMALL_OBJECT,
        ) {
            Ok(bytes) => bytes,
            Err(RepoError::Storage(e)) if e.is_not_found() => continue,
            Err(e @ RepoError::Corrupt { .. }) => {
                report.problem(path, what_is_wrong(e));
                continue;
            }
            Err(e) => return Err(e),
        };
        if Id::of_stored(&bytes) != id {
            report.problem(&path, "content does not match its name");
        } else if let Err(e) = KeyFile::from_json(&bytes) {
            report.problem(&path, format!("not a key file: {e}"));
        }
    }
    Ok(())
}
