//! Reading chunks back: locate through the index, fetch the frame, open it, check the
//! chunk against its keyed hash. Recently opened frames are kept, since neighbouring chunks
//! (small files of one directory) share frames.

use std::sync::Arc;

use lifeboat_format::pack::{self, PackEntry};
use lifeboat_format::{FormatError, Id};
use lifeboat_storage::Kind;

use crate::{RepoError, Repository, Result};

const FRAMES_KEPT: usize = 8;

/// A frame by pack and offset, opened.
type OpenFrame = ((Id, u32), Arc<Vec<u8>>);

pub struct ChunkReader<'r> {
    repo: &'r Repository,
    frames: Vec<OpenFrame>,
}

impl<'r> ChunkReader<'r> {
    pub(crate) fn new(repo: &'r Repository) -> Self {
        ChunkReader {
            repo,
            frames: Vec::with_capacity(FRAMES_KEPT),
        }
    }

    /// The chunk's plaintext, verified.
    pub fn read(&mut self, id: &Id) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_into(id, &mut out)?;
        Ok(out)
    }

    /// Appends the chunk's plaintext to `out`, verified.
    pub fn read_into(&mut self, id: &Id, out: &mut Vec<u8>) -> Result<()> {
        let loc = self
            .repo
            .index()
            .locate(id)
            .ok_or(RepoError::MissingChunk { id: *id })?;
        let frame = self.frame(&loc.pack, &loc.entry)?;
        let name = loc.pack.to_hex();
        let data = pack::chunk_in_frame(&frame, &loc.entry)
            .map_err(|e| RepoError::corrupt(Kind::Data, &name, e))?;
        if self.repo.key().chunk_id(data) != *id {
            return Err(RepoError::corrupt(
                Kind::Data,
                &name,
                FormatError::Corrupt {
                    what: "chunk",
                    detail: format!("chunk {} does not match its id", id.short()),
                },
            ));
        }
        out.extend_from_slice(data);
        Ok(())
    }

    fn frame(&mut self, pack_id: &Id, entry: &PackEntry) -> Result<Arc<Vec<u8>>> {
        let key = (*pack_id, entry.frame_offset);
        if let Some(pos) = self.frames.iter().position(|(k, _)| *k == key) {
            let hit = self.frames.remove(pos);
            let frame = hit.1.clone();
            self.frames.push(hit);
            return Ok(frame);
        }
        let name = pack_id.to_hex();
        let start = u64::from(entry.frame_offset);
        let sealed = self.repo.backend().get_range(
            Kind::Data,
            &name,
            start..start + u64::from(entry.frame_len),
        )?;
        let plain = pack::open_frame(self.repo.key().encryption_key(), &sealed)
            .map_err(|e| RepoError::corrupt(Kind::Data, &name, e))?;
        let frame = Arc::new(plain);
        if self.frames.len() == FRAMES_KEPT {
            self.frames.remove(0);
        }
        self.frames.push((key, frame.clone()));
        Ok(frame)
    }
}
