//! Writing chunks: deduplicated against the index, grouped into packs, packs uploaded, and
//! index files written for them every few packs and at the end.
//!
//! One [`RepoWriter`] serves a whole backup and is shared by its worker threads; each worker
//! owns a [`Packer`] (its pack under construction and its compressor), so compression and
//! encryption run in parallel without locks on the hot path.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lifeboat_format::Id;
use lifeboat_format::index::{IndexFile, IndexedPack};
use lifeboat_format::pack::{ChunkKind, PackBuilder};
use lifeboat_format::seal::Compressor;
use lifeboat_storage::Kind;

use crate::{Repository, Result};

/// Packs are uploaded when they reach this size.
pub const PACK_TARGET: usize = 4 * 1024 * 1024;
/// What a pack under construction may reach: the target, plus a frame sealed after the
/// target was crossed (at most a frame of the largest chunk), plus the header.
const PACK_CAPACITY: usize =
    PACK_TARGET + 2 * lifeboat_format::pack::FRAME_TARGET + 5 * 1024 * 1024;
/// An index file is written after this many packs, so an interrupted backup leaves its
/// uploaded packs findable by the next one.
const PACKS_PER_INDEX: usize = 8;
pub const COMPRESSION_LEVEL: i32 = 3;

pub struct Packer {
    kind: ChunkKind,
    builder: PackBuilder,
    compressor: Compressor,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct WriteStats {
    pub chunks_new: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
    pub packs: u64,
    pub index_files: u64,
}

pub struct RepoWriter<'r> {
    repo: &'r Repository,
    /// Chunks stored (or being stored) by this writer, so two workers never store one twice.
    pending: Mutex<HashSet<Id>>,
    unindexed: Mutex<Vec<IndexedPack>>,
    chunks_new: AtomicU64,
    bytes_new: AtomicU64,
    bytes_stored: AtomicU64,
    packs: AtomicU64,
    index_files: AtomicU64,
}

impl<'r> RepoWriter<'r> {
    pub(crate) fn new(repo: &'r Repository) -> Self {
        RepoWriter {
            repo,
            pending: Mutex::default(),
            unindexed: Mutex::default(),
            chunks_new: AtomicU64::new(0),
            bytes_new: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
            packs: AtomicU64::new(0),
            index_files: AtomicU64::new(0),
        }
    }

    pub fn repository(&self) -> &'r Repository {
        self.repo
    }

    pub fn packer(&self, kind: ChunkKind) -> Packer {
        Packer {
            kind,
            builder: PackBuilder::with_capacity(PACK_CAPACITY),
            compressor: Compressor::new(COMPRESSION_LEVEL),
        }
    }

    /// Whether the repository (or this writer) already has the chunk.
    pub fn has(&self, id: &Id) -> bool {
        self.repo.index().has_live(id) || self.pending.lock().expect("poisoned").contains(id)
    }

    /// Stores the chunk unless the repository already has it; returns whether it was new.
    pub fn add(&self, packer: &mut Packer, id: Id, data: &[u8]) -> Result<bool> {
        if self.repo.index().has_live(&id) || !self.pending.lock().expect("poisoned").insert(id) {
            return Ok(false);
        }
        packer.builder.add(
            self.repo.key().encryption_key(),
            &mut packer.compressor,
            packer.kind,
            id,
            data,
        );
        self.chunks_new.fetch_add(1, Ordering::Relaxed);
        self.bytes_new
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if packer.builder.approximate_size() >= PACK_TARGET {
            self.flush(packer)?;
        }
        Ok(true)
    }

    /// Stores the chunk even though the index has it: prune copies needed chunks out of a pack
    /// it is about to condemn.
    pub fn add_ignoring_index(&self, packer: &mut Packer, id: Id, data: &[u8]) -> Result<bool> {
        if !self.pending.lock().expect("poisoned").insert(id) {
            return Ok(false);
        }
        packer.builder.add(
            self.repo.key().encryption_key(),
            &mut packer.compressor,
            packer.kind,
            id,
            data,
        );
        if packer.builder.approximate_size() >= PACK_TARGET {
            self.flush(packer)?;
        }
        Ok(true)
    }

    /// Uploads the packer's pack if it holds anything.
    pub fn flush(&self, packer: &mut Packer) -> Result<()> {
        if packer.builder.is_empty() {
            return Ok(());
        }
        let builder = std::mem::replace(
            &mut packer.builder,
            PackBuilder::with_capacity(PACK_CAPACITY),
        );
        let pack = builder.finish(self.repo.key().encryption_key(), &mut packer.compressor);
        let len = pack.bytes.len() as u64;
        self.repo
            .backend()
            .put(Kind::Data, &pack.id.to_hex(), pack.bytes)?;
        self.bytes_stored.fetch_add(len, Ordering::Relaxed);
        self.packs.fetch_add(1, Ordering::Relaxed);
        let ready = {
            let mut unindexed = self.unindexed.lock().expect("poisoned");
            unindexed.push(IndexedPack {
                id: pack.id,
                len,
                entries: pack.entries,
            });
            if unindexed.len() >= PACKS_PER_INDEX {
                std::mem::take(&mut *unindexed)
            } else {
                Vec::new()
            }
        };
        self.write_index(ready)
    }

    fn write_index(&self, packs: Vec<IndexedPack>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let sealed = IndexFile { packs }.seal(self.repo.key().encryption_key());
        let id = Id::of_stored(&sealed);
        self.bytes_stored
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        self.repo.backend().put(Kind::Index, &id.to_hex(), sealed)?;
        self.index_files.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes the index for every pack uploaded so far. Every packer must have been flushed.
    pub fn finish(self) -> Result<WriteStats> {
        let rest = std::mem::take(&mut *self.unindexed.lock().expect("poisoned"));
        self.write_index(rest)?;
        Ok(self.stats())
    }

    pub fn stats(&self) -> WriteStats {
        WriteStats {
            chunks_new: self.chunks_new.load(Ordering::Relaxed),
            bytes_new: self.bytes_new.load(Ordering::Relaxed),
            bytes_stored: self.bytes_stored.load(Ordering::Relaxed),
            packs: self.packs.load(Ordering::Relaxed),
            index_files: self.index_files.load(Ordering::Relaxed),
        }
    }
}
