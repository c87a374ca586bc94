//! Removing what no restore point needs, safely while backups run.
//!
//! There is no repository lock to go stale. Instead, deletion takes two phases separated by a
//! grace period:
//!
//! 1. **Condemn.** Packs no restore point needs (and packs no index names that are older than
//!    the grace period, left by interrupted backups) are listed in a `condemned/` marker.
//!    Packs that are mostly unneeded are first repacked: their needed chunks are copied into
//!    new packs (and indexed) before the old pack is condemned. Nothing is deleted.
//! 2. **Delete.** A later prune (or this one, with a zero grace period) takes markers older
//!    than the grace period, spares any pack that a restore point written since has come to
//!    need, rewrites the index files that name the rest, and only then deletes the packs.
//!
//! Backups never deduplicate against a condemned pack, so only a backup that started before
//! the marker was written can come to need one, and it has the whole grace period to finish
//! and make its need visible. The grace period must therefore exceed the longest backup.
//!
//! Two prunes must not run at once (each could delete the copy of a chunk the other kept), so
//! a prune that changes anything holds the repository's [`lease`](crate::lease) from before it
//! reads the restore points until it is done, and renews it before every deletion.
//!
//! Damage is never a reason to delete: an index file that does not open may name packs that
//! hold needed chunks, so while one exists no unindexed pack is condemned; a manifest that
//! opens but is stored under another name still keeps what it names.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lifeboat_format::Id;
use lifeboat_format::index::{IndexFile, IndexedPack};
use lifeboat_format::pack::{ChunkKind, PackEntry};
use lifeboat_format::tree::{EntryKind, Tree};
use lifeboat_storage::Kind;
use serde::Serialize;

use crate::damage;
use crate::index::{CondemnedPacks, read_condemned, read_index_file};
use crate::lease::{self, Holder, Lease};
use crate::running;
use crate::{PointRead, RepoError, Repository, Result};

/// How a prune runs.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// How old a condemned marker must be before its packs are deleted.
    pub grace: Duration,
    /// Only report what would be done (takes no lease, changes nothing).
    pub dry_run: bool,
    /// Repack a pack when at least this fraction of its bytes is unneeded.
    pub repack_threshold: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            grace: Duration::from_secs(24 * 3600),
            dry_run: false,
            repack_threshold: 0.25,
        }
    }
}

/// What a prune found and did.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub packs: usize,
    pub chunks_needed: usize,
    pub condemned_packs: usize,
    pub condemned_bytes: u64,
    pub repacked_packs: usize,
    pub repacked_bytes: u64,
    pub deleted_packs: usize,
    pub deleted_bytes: u64,
    pub spared_packs: usize,
    pub index_files_rewritten: usize,
    /// Markers still inside their grace period, with the time they become deletable.
    pub waiting: Vec<jiff::Timestamp>,
    pub dry_run: bool,
    /// Packs kept although no readable index names them, because some index file is damaged.
    pub kept_unindexed: usize,
    /// Manifests that could not be read: while there are any, prune deletes nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held_back_by: Vec<String>,
    /// Due markers whose packs wait because a backup that started before them is under way.
    pub waiting_for_backups: usize,
    /// Temporary files of interrupted writes removed (older than the grace period).
    pub temporaries_removed: usize,
    /// Markers of backups that never ended (killed), removed once no longer honoured.
    pub stale_backup_markers_removed: usize,
    /// Index files removed because other index files name all their packs.
    pub redundant_index_files_removed: usize,
}

/// Every chunk (tree and content) some restore point reaches, counting manifests stored under
/// another name too, and the objects in `points/` that could not be opened (what they need is
/// unknown). Fails rather than guesses when a tree cannot be read: deleting on a partial view
/// would lose data.
///
/// The manifests are listed first and the index read after: a manifest is saved only once
/// the index files naming its chunks are, so every tree of a listed manifest is found, even
/// one a backup saved a moment ago. Returns the repository with that index.
pub fn needed_chunks(repo: &Repository) -> Result<(HashSet<Id>, Vec<String>, Repository)> {
    let mut needed = HashSet::new();
    let mut unreadable = Vec::new();
    let reads = repo.scan_points()?;
    let fresh = repo.reopen()?;
    let mut reader = fresh.reader();
    for read in reads {
        let point = match read {
            PointRead::Sound(_, point) => point,
            PointRead::Misnamed { name, point } => {
                damage::skip(
                    &Kind::Points.path_of(&name),
                    "restore point manifest",
                    "content does not match its name (what it names is kept)",
                );
                point
            }
            PointRead::Damaged { name, problem } => {
                damage::skip(
                    &Kind::Points.path_of(&name),
                    "restore point manifest",
                    &problem,
                );
                unreadable.push(Kind::Points.path_of(&name));
                continue;
            }
        };
        let mut stack: Vec<Id> = point.roots().collect();
        while let Some(tree_id) = stack.pop() {
            if !needed.insert(tree_id) {
                continue;
            }
            let bytes = reader.read(&tree_id)?;
            let tree = Tree::decode(&bytes).map_err(|e| RepoError::Corrupt {
                object: format!("tree {}", tree_id.short()),
                source: e,
            })?;
            for entry in tree.entries {
                match entry.kind {
                    EntryKind::Dir { tree } => stack.push(tree),
                    EntryKind::File { chunks, .. } => needed.extend(chunks),
                    _ => {}
                }
            }
        }
    }
    drop(reader);
    Ok((needed, unreadable, fresh))
}

/// Logs the step a prune begins (at debug level), so it can be followed, and interrupted at
/// each step by tests that watch for these lines.
fn step(name: &str) {
    tracing::debug!("prune step: {name}");
}

/// What both phases of one prune run share.
#[derive(Clone, Copy)]
struct Pass<'a> {
    repo: &'a Repository,
    options: &'a PruneOptions,
    now: jiff::Timestamp,
    grace: jiff::SignedDuration,
    needed: &'a HashSet<Id>,
    lease: Option<&'a RefCell<Lease>>,
}

impl Pass<'_> {
    /// Before each deletion: the lease must still be ours, with time left.
    fn keep_lease(&self) -> Result<()> {
        match self.lease {
            Some(lease) => lease.borrow_mut().keep(jiff::Timestamp::now()),
            None => Ok(()),
        }
    }
}

struct Inventory {
    index_files: Vec<(Id, IndexFile)>,
    /// Index files that could not be read: the packs they name are unknown.
    unreadable_index_files: Vec<String>,
    packs: HashMap<Id, (u64, Vec<PackEntry>)>,
    stored: HashMap<Id, (u64, jiff::Timestamp)>,
}

fn inventory(repo: &Repository) -> Result<Inventory> {
    let backend = repo.backend();
    let mut index_files = Vec::new();
    let mut unreadable_index_files = Vec::new();
    for info in backend.list(Kind::Index)? {
        let path = Kind::Index.path_of(&info.name);
        let Ok(id) = info.name.parse::<Id>() else {
            // Not an index file's name: nothing lifeboat wrote, so it names no pack.
            damage::skip(&path, "index file", "its name is not a 64-digit hex id");
            continue;
        };
        match read_index_file(backend.as_ref(), repo.key(), &id, Some(info.size)) {
            Ok(file) => index_files.push((id, file)),
            Err(RepoError::Corrupt { source, .. }) => {
                damage::skip(&path, "index file", &source.to_string());
                unreadable_index_files.push(path);
            }
            // Gone since the listing: what it named is unknown, so it counts as unreadable.
            Err(RepoError::Storage(e)) if e.is_not_found() => unreadable_index_files.push(path),
            Err(e) => return Err(e),
        }
    }
    let mut packs = HashMap::new();
    for (_, file) in &index_files {
        for p in &file.packs {
            packs
                .entry(p.id)
                .or_insert_with(|| (p.len, p.entries.clone()));
        }
    }
    let mut stored = HashMap::new();
    for info in backend.list(Kind::Data)? {
        if let Ok(id) = info.name.parse::<Id>() {
            stored.insert(id, (info.size, info.modified));
        }
    }
    Ok(Inventory {
        index_files,
        unreadable_index_files,
        packs,
        stored,
    })
}

/// Prunes: condemns what no restore point needs and deletes what was condemned a grace period
/// ago. Unless it is a dry run, it holds the repository's prune lease throughout (taken for
/// `holder`) and refuses when another prune holds it.
pub fn prune(
    repo: &Repository,
    options: PruneOptions,
    now: jiff::Timestamp,
    holder: Holder,
) -> Result<PruneReport> {
    if options.dry_run {
        return prune_holding(repo, options, now, None);
    }
    let lease = RefCell::new(Lease::take(
        repo.backend().clone(),
        holder,
        jiff::Timestamp::now(),
        lease::DURATION,
    )?);
    tracing::info!(
        "prune: holding the prune lease (generation {})",
        lease.borrow().record().generation
    );
    let result = prune_holding(repo, options, now, Some(&lease));
    step("releasing the lease");
    if let Err(e) = lease.into_inner().release() {
        tracing::warn!("could not release the prune lease (it expires by itself): {e}");
    }
    result
}

fn prune_holding<'a>(
    repo: &'a Repository,
    options: PruneOptions,
    now: jiff::Timestamp,
    lease: Option<&'a RefCell<Lease>>,
) -> Result<PruneReport> {
    let mut report = PruneReport {
        dry_run: options.dry_run,
        ..PruneReport::default()
    };
    step("reading restore points");
    // From here on, the repository with the index read after the manifests were listed.
    let (needed, unreadable_points, fresh) = needed_chunks(repo)?;
    let repo = &fresh;
    report.chunks_needed = needed.len();
    if !unreadable_points.is_empty() {
        // A manifest that does not open (damaged, or written by a newer lifeboat) may need
        // any pack: deleting on this view could lose a restore point.
        tracing::warn!(
            "prune: deleting nothing, since {} cannot be read and may need any pack; remove what `lifeboat check` names as damaged, then prune again",
            unreadable_points.join(", ")
        );
        report.packs = repo.backend().list(Kind::Data)?.len();
        report.held_back_by = unreadable_points;
        return Ok(report);
    }
    tracing::info!(
        "prune: {} chunks are needed by restore points",
        needed.len()
    );
    let inv = inventory(repo)?;
    report.packs = inv.stored.len();
    let grace = jiff::SignedDuration::try_from(options.grace).unwrap_or(jiff::SignedDuration::MAX);

    let pass = Pass {
        repo,
        options: &options,
        now,
        grace,
        needed: &needed,
        lease,
    };
    condemn(&pass, &inv, &mut report)?;
    if report.kept_unindexed > 0 {
        tracing::warn!(
            "prune: kept {} packs that no readable index file names, since {} cannot be read and may name them",
            report.kept_unindexed,
            inv.unreadable_index_files.join(", ")
        );
    }
    drop(inv);
    delete_condemned(&pass, &mut report)?;
    if !options.dry_run && report.held_back_by.is_empty() {
        reclaim_leftovers(&pass, &mut report)?;
    }
    Ok(report)
}

/// The backup markers still honoured (see [`running`]), oldest first.
fn live_backups(pass: &Pass<'_>) -> Result<Vec<running::ListedMarker>> {
    let honour = honoured_for(pass);
    let mut live: Vec<_> = running::list(pass.repo.backend().as_ref())?
        .into_iter()
        .filter(|m| pass.now.duration_since(m.stored) < honour)
        .collect();
    live.sort_by_key(|m| m.registered);
    Ok(live)
}

/// How long a backup marker holds deletions back: a day, or the grace period if longer.
fn honoured_for(pass: &Pass<'_>) -> jiff::SignedDuration {
    pass.grace.max(
        jiff::SignedDuration::try_from(running::HONOURED_FOR).unwrap_or(jiff::SignedDuration::MAX),
    )
}

/// Whether something stored at `time` may belong to (or be needed by) a live backup: one
/// that registered before it, within the clock margin.
fn predates(backups: &[running::ListedMarker], time: jiff::Timestamp) -> bool {
    backups.iter().any(|b| {
        b.registered
            <= time
                .checked_add(running::CLOCK_MARGIN)
                .unwrap_or(jiff::Timestamp::MAX)
    })
}

/// An interrupted prune's or backup's leftovers that no object names: temporary files of
/// writes that never finished (older than the grace period and than every backup under way)
/// and markers of backups killed long ago.
fn reclaim_leftovers(pass: &Pass<'_>, report: &mut PruneReport) -> Result<()> {
    step("reclaiming leftovers");
    let backend = pass.repo.backend();
    let honour = honoured_for(pass);
    let (live, stale): (Vec<_>, Vec<_>) = running::list(backend.as_ref())?
        .into_iter()
        .partition(|m| pass.now.duration_since(m.stored) < honour);
    for temp in backend.temporaries()? {
        let old_enough = pass.now.duration_since(temp.modified) >= pass.grace;
        // A backup under way may still be writing it: only one older than all of them goes.
        let owned = live.iter().any(|b| {
            temp.modified
                .checked_add(running::CLOCK_MARGIN)
                .unwrap_or(jiff::Timestamp::MAX)
                >= b.registered
        });
        if old_enough && !owned {
            pass.keep_lease()?;
            backend.delete_temporary(&temp.path)?;
            tracing::info!("prune: removed {} (an interrupted write)", temp.path);
            report.temporaries_removed += 1;
        }
    }
    // Index files every pack of which another index file names too (a prune killed between
    // writing a replacement and deleting the original leaves such a pair).
    let inv = inventory(pass.repo)?;
    if inv.unreadable_index_files.is_empty() {
        let mut naming: HashMap<Id, usize> = HashMap::new();
        let distinct =
            |file: &IndexFile| -> HashSet<Id> { file.packs.iter().map(|p| p.id).collect() };
        for (_, file) in &inv.index_files {
            for p in distinct(file) {
                *naming.entry(p).or_default() += 1;
            }
        }
        let mut files: Vec<&(Id, IndexFile)> = inv.index_files.iter().collect();
        files.sort_by_key(|(id, file)| (file.packs.len(), *id));
        for (id, file) in files {
            let packs = distinct(file);
            if packs.iter().all(|p| naming[p] >= 2) {
                pass.keep_lease()?;
                backend.delete(Kind::Index, &id.to_hex())?;
                for p in &packs {
                    if let Some(n) = naming.get_mut(p) {
                        *n -= 1;
                    }
                }
                report.redundant_index_files_removed += 1;
            }
        }
    }
    for marker in stale {
        pass.keep_lease()?;
        backend.delete(Kind::Leases, &marker.name)?;
        tracing::info!(
            "prune: removed {} (a backup that never ended)",
            Kind::Leases.path_of(&marker.name)
        );
        report.stale_backup_markers_removed += 1;
    }
    Ok(())
}

fn condemn(pass: &Pass<'_>, inv: &Inventory, report: &mut PruneReport) -> Result<()> {
    let Pass {
        repo,
        options,
        now,
        grace,
        needed,
        ..
    } = *pass;
    let already: HashSet<Id> = read_condemned(repo.backend().as_ref())?
        .into_iter()
        .flat_map(|(_, m)| m.packs)
        .collect();
    let live = live_backups(pass)?;
    let mut condemned = Vec::new();
    let mut to_repack: Vec<(Id, Vec<PackEntry>)> = Vec::new();
    // Indexed packs in the order they get to keep their needed chunks: the least wasteful
    // first, so a copy made by an interrupted repack is kept and the pack it superseded,
    // whose needed chunks are then all held elsewhere, is condemned.
    let mut indexed: Vec<(Id, &Vec<PackEntry>, u64, u64)> = Vec::new();
    let mut ids: Vec<&Id> = inv.stored.keys().collect();
    ids.sort();
    for id in ids {
        if already.contains(id) {
            continue;
        }
        let (size, modified) = inv.stored[id];
        match inv.packs.get(id) {
            // A damaged index file may name it: never condemn on a partial view.
            None if !inv.unreadable_index_files.is_empty() => report.kept_unindexed += 1,
            // A backup under way may have written it and not indexed it yet.
            None if predates(&live, modified) => {}
            None => {
                if now.duration_since(modified) >= grace {
                    condemned.push(*id);
                    report.condemned_bytes += size;
                }
            }
            Some((_, entries)) => {
                let needed_bytes: u64 = entries
                    .iter()
                    .filter(|e| needed.contains(&e.id))
                    .map(|e| u64::from(e.length))
                    .sum();
                let all_bytes: u64 = entries.iter().map(|e| u64::from(e.length)).sum();
                indexed.push((*id, entries, needed_bytes, all_bytes));
            }
        }
    }
    // Waste as a fraction a/b compared exactly: needed/all descending, then more needed bytes.
    indexed.sort_by(|a, b| {
        let (an, aa) = (u128::from(a.2), u128::from(a.3.max(1)));
        let (bn, ba) = (u128::from(b.2), u128::from(b.3.max(1)));
        (bn * aa)
            .cmp(&(an * ba))
            .then(b.2.cmp(&a.2))
            .then(a.0.cmp(&b.0))
    });
    let mut covered: HashSet<Id> = HashSet::new();
    for (id, entries, _, all_bytes) in indexed {
        let mut useful: Vec<PackEntry> = Vec::new();
        for e in entries {
            if needed.contains(&e.id) && covered.insert(e.id) {
                useful.push(*e);
            }
        }
        let useful_bytes: u64 = useful.iter().map(|e| u64::from(e.length)).sum();
        if useful.is_empty() {
            condemned.push(id);
            report.condemned_bytes += inv.stored[&id].0;
        } else if all_bytes > 0
            && (all_bytes - useful_bytes) as f64 / all_bytes as f64 >= options.repack_threshold
        {
            to_repack.push((id, useful));
        }
    }
    if options.dry_run {
        report.condemned_packs = condemned.len() + to_repack.len();
        report.repacked_packs = to_repack.len();
        return Ok(());
    }
    if !to_repack.is_empty() {
        step("repacking");
        let writer = repo.writer();
        let mut data = writer.packer(ChunkKind::Data);
        let mut trees = writer.packer(ChunkKind::Tree);
        let mut reader = repo.reader();
        for (pack, entries) in &to_repack {
            for e in entries {
                let bytes = reader.read(&e.id)?;
                let packer = if e.kind == ChunkKind::Tree {
                    &mut trees
                } else {
                    &mut data
                };
                writer.add_ignoring_index(packer, e.id, &bytes)?;
            }
            condemned.push(*pack);
            report.repacked_packs += 1;
            report.repacked_bytes += inv.stored[pack].0;
        }
        writer.flush(&mut data)?;
        writer.flush(&mut trees)?;
        writer.finish()?;
        step("repacked and indexed");
    }
    report.condemned_packs = condemned.len();
    if !condemned.is_empty() {
        step("writing the condemned marker");
        let marker = CondemnedPacks {
            time: now,
            packs: condemned,
        };
        let json = serde_json::to_vec_pretty(&marker).expect("marker serialises");
        let name = Id::of_stored(&json).to_hex();
        repo.backend().put(Kind::Condemned, &name, json)?;
    }
    Ok(())
}

fn delete_condemned(pass: &Pass<'_>, report: &mut PruneReport) -> Result<()> {
    let Pass {
        repo,
        options,
        now,
        grace,
        ..
    } = *pass;
    let backend = repo.backend();
    // First the backups under way, then everything else read again: a backup not listed here
    // either has ended (its index files and manifest are then read below) or registers later,
    // after every marker read here was stored, so it never uses a pack they condemn.
    let live = live_backups(pass)?;
    let stored_at: HashMap<String, jiff::Timestamp> = backend
        .list(Kind::Condemned)?
        .into_iter()
        .map(|info| (info.name, info.modified))
        .collect();
    let markers = read_condemned(backend.as_ref())?;
    let (due, waiting): (Vec<_>, Vec<_>) = markers
        .into_iter()
        .partition(|(_, m)| now.duration_since(m.time) >= grace);
    report.waiting = waiting
        .iter()
        .map(|(_, m)| m.time.checked_add(grace).unwrap_or(m.time))
        .collect();
    // A backup that registered before a marker was stored may deduplicate against its packs.
    let (due, held): (Vec<_>, Vec<_>) = due
        .into_iter()
        .partition(|(name, m)| !predates(&live, stored_at.get(name).copied().unwrap_or(m.time)));
    report.waiting_for_backups = held.len();
    if !held.is_empty() {
        tracing::info!(
            "prune: {} condemned markers wait for {} backups under way that started before them",
            held.len(),
            live.len()
        );
    }
    if due.is_empty() {
        return Ok(());
    }
    // Needs at deletion time: restore points written since this prune began count too.
    step("reading restore points again");
    let (needed_now, unreadable_points, fresh) = needed_chunks(repo)?;
    if !unreadable_points.is_empty() {
        tracing::warn!(
            "prune: deleting nothing, since {} cannot be read and may need any pack",
            unreadable_points.join(", ")
        );
        report.held_back_by = unreadable_points;
        return Ok(());
    }
    let mut needed: HashSet<Id> = needed_now;
    needed.extend(pass.needed.iter().copied());
    let needed = &needed;
    let inv = inventory(&fresh)?;
    let inv = &inv;
    let mut doomed: HashSet<Id> = due
        .iter()
        .flat_map(|(_, m)| m.packs.iter().copied())
        .collect();

    // Spare a pack holding a needed chunk that no surviving pack holds.
    let mut holders: HashMap<Id, Vec<Id>> = HashMap::new();
    for (pack, (_, entries)) in &inv.packs {
        for e in entries.iter().filter(|e| needed.contains(&e.id)) {
            holders.entry(e.id).or_default().push(*pack);
        }
    }
    let mut candidates: Vec<Id> = doomed.iter().copied().collect();
    candidates.sort();
    for pack in candidates {
        let Some((_, entries)) = inv.packs.get(&pack) else {
            // Its chunks are unknown; a damaged index file may name it.
            if !inv.unreadable_index_files.is_empty() {
                doomed.remove(&pack);
                report.spared_packs += 1;
            }
            continue;
        };
        let needs_it = entries.iter().filter(|e| needed.contains(&e.id)).any(|e| {
            holders[&e.id]
                .iter()
                .all(|h| doomed.contains(h) || !inv.stored.contains_key(h))
        });
        if needs_it {
            doomed.remove(&pack);
            report.spared_packs += 1;
        }
    }
    if options.dry_run {
        for pack in &doomed {
            if let Some((size, _)) = inv.stored.get(pack) {
                report.deleted_packs += 1;
                report.deleted_bytes += size;
            }
        }
        return Ok(());
    }

    // Index first: new files without the doomed packs, then the old files go.
    step("rewriting index files");
    for (file_id, file) in &inv.index_files {
        if !file.packs.iter().any(|p| doomed.contains(&p.id)) {
            continue;
        }
        let keep: Vec<IndexedPack> = file
            .packs
            .iter()
            .filter(|p| !doomed.contains(&p.id))
            .cloned()
            .collect();
        if !keep.is_empty() {
            let sealed = IndexFile { packs: keep }.seal(repo.key().encryption_key());
            backend.put(Kind::Index, &Id::of_stored(&sealed).to_hex(), sealed)?;
        }
        pass.keep_lease()?;
        backend.delete(Kind::Index, &file_id.to_hex())?;
        report.index_files_rewritten += 1;
    }
    step("deleting packs");
    for pack in &doomed {
        if let Some((size, _)) = inv.stored.get(pack) {
            pass.keep_lease()?;
            backend.delete(Kind::Data, &pack.to_hex())?;
            report.deleted_packs += 1;
            report.deleted_bytes += size;
        }
    }
    step("deleting due markers");
    for (name, _) in due {
        pass.keep_lease()?;
        backend.delete(Kind::Condemned, &name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewed_backup_counts_from_when_it_registered() {
        let at = |s: i64| jiff::Timestamp::from_second(1_700_000_000 + s).unwrap();
        // Registered at 0, a pack condemned at 100, the marker renewed at 200.
        let renewed = running::ListedMarker {
            name: "backup-x".into(),
            stored: at(200),
            registered: at(0),
        };
        assert!(predates(std::slice::from_ref(&renewed), at(100)));
        let later = running::ListedMarker {
            registered: at(150),
            ..renewed
        };
        assert!(!predates(&[later], at(100)));
    }
}
