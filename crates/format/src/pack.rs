//! Packs: many chunks in one stored object.
//!
//! ```text
//! pack   = "LBPK" version:u8 frame* sealed_header header_len:u32le
//! frame  = seal(Frame, compressed(chunk plaintexts, concatenated))
//! header = entry count, then per chunk: kind id frame_offset frame_len offset length
//! ```
//! Chunks are grouped into frames of about [`FRAME_TARGET`] bytes before compression, so many
//! small files compress together (a dictionary shared by neighbours) while each chunk stays
//! individually addressable through the index. The header repeats the index entries of the
//! pack so an index can be rebuilt from the packs alone.

use crate::codec::{Reader, Writer};
use crate::seal::{self, Compressor, Domain};
use crate::{FORMAT_VERSION, FormatError, Id};

pub const MAGIC: &[u8; 4] = b"LBPK";
const HEADER_START: usize = 5;
/// Uncompressed bytes collected before a frame is sealed.
pub const FRAME_TARGET: usize = 1024 * 1024;
/// No pack lifeboat writes is larger (they are about 4 MiB): a bigger object in `data/` that no
/// index names is not a pack, and is never read.
pub const MAX_PACK_LEN: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChunkKind {
    /// File contents and database dumps.
    Data = 0,
    /// Directory listings and other metadata.
    Tree = 1,
}

impl ChunkKind {
    pub fn from_u8(v: u8, what: &'static str) -> Result<Self, FormatError> {
        match v {
            0 => Ok(ChunkKind::Data),
            1 => Ok(ChunkKind::Tree),
            other => Err(FormatError::corrupt(
                what,
                format!("unknown chunk kind {other}"),
            )),
        }
    }
}

/// Where one chunk lives inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub kind: ChunkKind,
    pub id: Id,
    pub frame_offset: u32,
    pub frame_len: u32,
    /// Offset of the chunk inside the frame's plaintext.
    pub offset: u32,
    pub length: u32,
}

impl PackEntry {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(self.kind as u8)
            .id(&self.id)
            .u32(self.frame_offset)
            .u32(self.frame_len)
            .u32(self.offset)
            .u32(self.length);
    }

    pub(crate) const ENCODED_LEN: usize = 1 + 32 + 16;

    pub(crate) fn decode(r: &mut Reader<'_>, what: &'static str) -> Result<Self, FormatError> {
        Ok(PackEntry {
            kind: ChunkKind::from_u8(r.u8()?, what)?,
            id: r.id()?,
            frame_offset: r.u32()?,
            frame_len: r.u32()?,
            offset: r.u32()?,
            length: r.u32()?,
        })
    }

    /// Checks that the entry lies within a pack of `pack_len` bytes and within its frame.
    pub fn check_bounds(&self, pack_len: u64, what: &'static str) -> Result<(), FormatError> {
        let frame_end = u64::from(self.frame_offset) + u64::from(self.frame_len);
        if (self.frame_offset as usize) < HEADER_START || frame_end > pack_len {
            return Err(FormatError::corrupt(
                what,
                format!(
                    "chunk {} claims bytes {}..{frame_end} of a {pack_len}-byte pack",
                    self.id.short(),
                    self.frame_offset
                ),
            ));
        }
        if (self.frame_len as usize) < seal::OVERHEAD {
            return Err(FormatError::corrupt(what, "frame shorter than its seal"));
        }
        Ok(())
    }
}

/// Builds one pack in memory.
pub struct PackBuilder {
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
    frame: Vec<u8>,
    frame_entries: Vec<(ChunkKind, Id, u32, u32)>,
    payload: Vec<u8>,
}

pub struct FinishedPack {
    pub id: Id,
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    pub fn new() -> Self {
        Self::with_capacity(4 * 1024 * 1024)
    }

    /// A builder whose buffer will not need to grow below `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity);
        bytes.extend_from_slice(MAGIC);
        bytes.push(FORMAT_VERSION as u8);
        PackBuilder {
            bytes,
            entries: Vec::new(),
            frame: Vec::with_capacity(FRAME_TARGET * 2),
            frame_entries: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.frame_entries.is_empty()
    }

    /// Bytes the pack will take, counting the open frame uncompressed.
    pub fn approximate_size(&self) -> usize {
        self.bytes.len() + self.frame.len()
    }

    pub fn chunk_count(&self) -> usize {
        self.entries.len() + self.frame_entries.len()
    }

    pub fn add(
        &mut self,
        key: &[u8; 32],
        compressor: &mut Compressor,
        kind: ChunkKind,
        id: Id,
        data: &[u8],
    ) {
        if !self.frame.is_empty() && self.frame.len() + data.len() > FRAME_TARGET {
            self.seal_frame(key, compressor);
        }
        let offset = self.frame.len() as u32;
        self.frame.extend_from_slice(data);
        self.frame_entries
            .push((kind, id, offset, data.len() as u32));
        if self.frame.len() >= FRAME_TARGET {
            self.seal_frame(key, compressor);
        }
    }

    fn seal_frame(&mut self, key: &[u8; 32], compressor: &mut Compressor) {
        if self.frame_entries.is_empty() {
            return;
        }
        self.payload.clear();
        compressor.encode(&self.frame, &mut self.payload);
        let frame_offset = self.bytes.len() as u32;
        seal::encrypt_into(key, Domain::Frame, &self.payload, &mut self.bytes);
        let frame_len = self.bytes.len() as u32 - frame_offset;
        for (kind, id, offset, length) in self.frame_entries.drain(..) {
            self.entries.push(PackEntry {
                kind,
                id,
                frame_offset,
                frame_len,
                offset,
                length,
            });
        }
        self.frame.clear();
    }

    pub fn finish(mut self, key: &[u8; 32], compressor: &mut Compressor) -> FinishedPack {
        self.seal_frame(key, compressor);
        let mut header = Writer::with_capacity(8 + self.entries.len() * PackEntry::ENCODED_LEN);
        header.varint(self.entries.len() as u64);
        for e in &self.entries {
            e.encode(&mut header);
        }
        let sealed = seal::encrypt(key, Domain::PackHeader, &header.into_bytes());
        self.bytes.extend_from_slice(&sealed);
        self.bytes
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        FinishedPack {
            id: Id::of_stored(&self.bytes),
            bytes: self.bytes,
            entries: self.entries,
        }
    }
}

/// The length of the sealed header, read from a pack's last four bytes.
pub fn header_len(pack_len: u64, tail: &[u8; 4]) -> Result<u32, FormatError> {
    let len = u32::from_le_bytes(*tail);
    if u64::from(len) + 4 + HEADER_START as u64 > pack_len {
        return Err(FormatError::corrupt(
            "pack",
            format!("header length {len} does not fit a {pack_len}-byte pack"),
        ));
    }
    Ok(len)
}

/// Reads a whole pack's header: checks the magic, opens the sealed header and bounds-checks
/// every entry.
pub fn read_header(key: &[u8; 32], pack: &[u8]) -> Result<Vec<PackEntry>, FormatError> {
    if pack.len() < HEADER_START + 4 {
        return Err(FormatError::Truncated {
            what: "pack",
            offset: pack.len(),
            needed: HEADER_START + 4 - pack.len(),
        });
    }
    if &pack[..4] != MAGIC {
        return Err(FormatError::corrupt("pack", "bad magic"));
    }
    if u32::from(pack[4]) != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            what: "pack",
            found: u32::from(pack[4]),
            supported: FORMAT_VERSION,
        });
    }
    let tail: [u8; 4] = pack[pack.len() - 4..].try_into().expect("4 bytes");
    let len = header_len(pack.len() as u64, &tail)? as usize;
    let start = pack.len() - 4 - len;
    decode_header(key, &pack[start..pack.len() - 4], start as u64)
}

/// Opens a sealed header; `frames_end` is where the header starts (frames must end before it).
pub fn decode_header(
    key: &[u8; 32],
    sealed: &[u8],
    frames_end: u64,
) -> Result<Vec<PackEntry>, FormatError> {
    let plain = seal::decrypt(key, Domain::PackHeader, sealed)?;
    let mut r = Reader::new("pack header", &plain);
    let n = r.count(PackEntry::ENCODED_LEN)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let e = PackEntry::decode(&mut r, "pack header")?;
        e.check_bounds(frames_end, "pack header")?;
        entries.push(e);
    }
    r.expect_end()?;
    Ok(entries)
}

/// Opens one frame (the bytes at `frame_offset..frame_offset + frame_len`).
pub fn open_frame(key: &[u8; 32], frame: &[u8]) -> Result<Vec<u8>, FormatError> {
    let payload = seal::decrypt(key, Domain::Frame, frame)?;
    seal::decode("pack frame", &payload)
}

/// The bytes of one chunk inside an opened frame.
pub fn chunk_in_frame<'a>(
    frame_plain: &'a [u8],
    entry: &PackEntry,
) -> Result<&'a [u8], FormatError> {
    let start = entry.offset as usize;
    let end = start + entry.length as usize;
    frame_plain.get(start..end).ok_or_else(|| {
        FormatError::corrupt(
            "pack frame",
            format!(
                "chunk {} claims bytes {start}..{end} of a {}-byte frame",
                entry.id.short(),
                frame_plain.len()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [3; 32];

    fn build(chunks: &[Vec<u8>]) -> FinishedPack {
        let mut c = Compressor::new(3);
        let mut b = PackBuilder::new();
        for (i, data) in chunks.iter().enumerate() {
            let kind = if i % 2 == 0 {
                ChunkKind::Data
            } else {
                ChunkKind::Tree
            };
            b.add(&KEY, &mut c, kind, Id::of_stored(data), data);
        }
        b.finish(&KEY, &mut c)
    }

    proptest! {
        #[test]
        fn packs_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..40)) {
            let pack = build(&chunks);
            prop_assert_eq!(Id::of_stored(&pack.bytes), pack.id);
            let entries = read_header(&KEY, &pack.bytes).unwrap();
            prop_assert_eq!(&entries, &pack.entries);
            for (e, data) in entries.iter().zip(&chunks) {
                let frame = &pack.bytes[e.frame_offset as usize..(e.frame_offset + e.frame_len) as usize];
                let plain = open_frame(&KEY, frame).unwrap();
                prop_assert_eq!(chunk_in_frame(&plain, e).unwrap(), data.as_slice());
            }
        }

        #[test]
        fn damaged_packs_never_panic(cut in 0usize..2000, flip in 0usize..2000) {
            let pack = build(&[b"alpha".repeat(100), b"beta".repeat(50)]);
            let mut bytes = pack.bytes.clone();
            let flip = flip % bytes.len();
            bytes[flip] ^= 1;
            prop_assert!(read_header(&KEY, &bytes).is_err() || flip < pack.entries[1].frame_offset as usize + pack.entries[1].frame_len as usize);
            let cut = cut % pack.bytes.len();
            let _ = read_header(&KEY, &pack.bytes[..cut]);
        }
    }

    #[test]
    fn small_chunks_share_a_frame_and_large_ones_do_not() {
        let small: Vec<Vec<u8>> = (0..10).map(|i| vec![i as u8; 100]).collect();
        let pack = build(&small);
        assert!(
            pack.entries
                .iter()
                .all(|e| e.frame_offset == pack.entries[0].frame_offset)
        );
        let large = vec![vec![1u8; FRAME_TARGET], vec![2u8; FRAME_TARGET]];
        let pack = build(&large);
        assert_ne!(pack.entries[0].frame_offset, pack.entries[1].frame_offset);
    }
}
