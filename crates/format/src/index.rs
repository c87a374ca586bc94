//! Index files: which chunks live in which pack, and where.
//!
//! ```text
//! index = seal(Index, "LBIX" version:u32 pack_count { pack_id pack_len:u64 entry_count entry* })
//! ```
//! A backup writes an index file for the packs it uploaded every few packs and at the end, so
//! an interrupted backup leaves its uploaded work findable. Several index files may name the
//! same chunk (in different packs); any of them may be used.

use crate::codec::{Reader, Writer};
use crate::pack::PackEntry;
use crate::seal::{self, Domain};
use crate::{FORMAT_VERSION, FormatError, Id};

const MAGIC: &[u8; 4] = b"LBIX";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    pub id: Id,
    pub len: u64,
    pub entries: Vec<PackEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFile {
    pub packs: Vec<IndexedPack>,
}

impl IndexFile {
    pub fn encode(&self) -> Vec<u8> {
        let entries: usize = self.packs.iter().map(|p| p.entries.len()).sum();
        let mut w =
            Writer::with_capacity(16 + self.packs.len() * 48 + entries * PackEntry::ENCODED_LEN);
        w.raw(MAGIC)
            .u32(FORMAT_VERSION)
            .varint(self.packs.len() as u64);
        for p in &self.packs {
            w.id(&p.id).u64(p.len).varint(p.entries.len() as u64);
            for e in &p.entries {
                e.encode(&mut w);
            }
        }
        w.into_bytes()
    }

    pub fn decode(plain: &[u8]) -> Result<Self, FormatError> {
        const WHAT: &str = "index file";
        let mut r = Reader::new(WHAT, plain);
        if r.take(4)? != MAGIC {
            return Err(FormatError::corrupt(WHAT, "bad magic"));
        }
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let n = r.count(32 + 8 + 1)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.id()?;
            let len = r.u64()?;
            let m = r.count(PackEntry::ENCODED_LEN)?;
            let mut entries = Vec::with_capacity(m);
            for _ in 0..m {
                let e = PackEntry::decode(&mut r, WHAT)?;
                e.check_bounds(len, WHAT)?;
                entries.push(e);
            }
            packs.push(IndexedPack { id, len, entries });
        }
        r.expect_end()?;
        Ok(IndexFile { packs })
    }

    pub fn seal(&self, key: &[u8; 32]) -> Vec<u8> {
        seal::seal(key, Domain::Index, &self.encode())
    }

    pub fn unseal(key: &[u8; 32], sealed: &[u8]) -> Result<Self, FormatError> {
        Self::decode(&seal::unseal(key, Domain::Index, sealed)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::ChunkKind;
    use proptest::prelude::*;

    fn sample() -> IndexFile {
        IndexFile {
            packs: vec![IndexedPack {
                id: Id::of_stored(b"p"),
                len: 1000,
                entries: vec![PackEntry {
                    kind: ChunkKind::Data,
                    id: Id::of_stored(b"c"),
                    frame_offset: 5,
                    frame_len: 100,
                    offset: 0,
                    length: 300,
                }],
            }],
        }
    }

    #[test]
    fn round_trip() {
        let key = [1u8; 32];
        let idx = sample();
        assert_eq!(IndexFile::unseal(&key, &idx.seal(&key)).unwrap(), idx);
    }

    #[test]
    fn out_of_bounds_entries_are_rejected() {
        let mut idx = sample();
        idx.packs[0].len = 50;
        assert!(IndexFile::decode(&idx.encode()).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data: Vec<u8>) {
            let _ = IndexFile::decode(&data);
        }

        #[test]
        fn truncation_is_always_an_error(cut in 0usize..200) {
            let bytes = sample().encode();
            let cut = cut % bytes.len();
            prop_assert!(IndexFile::decode(&bytes[..cut]).is_err());
        }
    }
}
