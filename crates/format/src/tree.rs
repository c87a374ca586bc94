//! Trees: one directory's listing, stored as a chunk of kind [`Tree`](crate::pack::ChunkKind).
//!
//! A tree names its entries in byte order of their names, each with its metadata and, for a
//! file, the ids of its content chunks; for a directory, the id of its own tree. The encoding
//! is deterministic, so an unchanged directory encodes to the same bytes and keeps its id.
//!
//! ```text
//! tree  = version:u8 count entry*
//! entry = name:bytes kind:u8 mode uid gid mtime_s mtime_ns ctime_s ctime_ns inode body
//! body  = file: size count chunk_id* | dir: tree_id | symlink: target:bytes
//!       | char/block device: rdev | fifo, socket: nothing
//! ```

use crate::codec::{Reader, Writer};
use crate::{FormatError, Id};

const VERSION: u8 = 1;
const WHAT: &str = "tree";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File { size: u64, chunks: Vec<Id> },
    Dir { tree: Id },
    Symlink { target: Vec<u8> },
    Fifo,
    Socket,
    CharDevice { rdev: u64 },
    BlockDevice { rdev: u64 },
}

impl EntryKind {
    fn tag(&self) -> u8 {
        match self {
            EntryKind::File { .. } => 0,
            EntryKind::Dir { .. } => 1,
            EntryKind::Symlink { .. } => 2,
            EntryKind::Fifo => 3,
            EntryKind::Socket => 4,
            EntryKind::CharDevice { .. } => 5,
            EntryKind::BlockDevice { .. } => 6,
        }
    }
}

/// A point in time as seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Time,
    /// Change time and inode are kept so a later backup can tell an unchanged file without
    /// reading it; restore does not set them (it cannot).
    pub ctime: Time,
    pub inode: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: EntryKind,
    pub meta: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    pub entries: Vec<Entry>,
}

fn write_time(w: &mut Writer, t: Time) {
    w.varint_signed(t.secs).varint(u64::from(t.nanos));
}

fn read_time(r: &mut Reader<'_>) -> Result<Time, FormatError> {
    let secs = r.varint_signed()?;
    let nanos = r.varint()?;
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| FormatError::corrupt(WHAT, format!("nanoseconds {nanos} out of range")))?;
    Ok(Time { secs, nanos })
}

fn small(v: u64, field: &str) -> Result<u32, FormatError> {
    u32::try_from(v).map_err(|_| FormatError::corrupt(WHAT, format!("{field} {v} out of range")))
}

impl Tree {
    /// Entries must already be sorted by name; see [`Tree::sort`].
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.entries.len() * 96);
        w.u8(VERSION).varint(self.entries.len() as u64);
        for e in &self.entries {
            w.bytes(&e.name).u8(e.kind.tag());
            let m = &e.meta;
            w.varint(u64::from(m.mode))
                .varint(u64::from(m.uid))
                .varint(u64::from(m.gid));
            write_time(&mut w, m.mtime);
            write_time(&mut w, m.ctime);
            w.varint(m.inode);
            match &e.kind {
                EntryKind::File { size, chunks } => {
                    w.varint(*size).varint(chunks.len() as u64);
                    for c in chunks {
                        w.id(c);
                    }
                }
                EntryKind::Dir { tree } => {
                    w.id(tree);
                }
                EntryKind::Symlink { target } => {
                    w.bytes(target);
                }
                EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } => {
                    w.varint(*rdev);
                }
                EntryKind::Fifo | EntryKind::Socket => {}
            }
        }
        w.into_bytes()
    }

    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn decode(bytes: &[u8]) -> Result<Tree, FormatError> {
        let mut r = Reader::new(WHAT, bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                found: u32::from(version),
                supported: u32::from(VERSION),
            });
        }
        let n = r.count(8)?;
        let mut entries: Vec<Entry> = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.bytes()?.to_vec();
            if name.is_empty()
                || name == b"."
                || name == b".."
                || name.contains(&b'/')
                || name.contains(&0)
            {
                return Err(FormatError::corrupt(
                    WHAT,
                    format!("invalid entry name {:?}", String::from_utf8_lossy(&name)),
                ));
            }
            if let Some(prev) = entries.last()
                && prev.name >= name
            {
                return Err(FormatError::corrupt(
                    WHAT,
                    "entries out of order or duplicated",
                ));
            }
            let tag = r.u8()?;
            let meta = Metadata {
                mode: small(r.varint()?, "mode")?,
                uid: small(r.varint()?, "uid")?,
                gid: small(r.varint()?, "gid")?,
                mtime: read_time(&mut r)?,
                ctime: read_time(&mut r)?,
                inode: r.varint()?,
            };
            let kind = match tag {
                0 => {
                    let size = r.varint()?;
                    let count = r.count(32)?;
                    let mut chunks = Vec::with_capacity(count);
                    for _ in 0..count {
                        chunks.push(r.id()?);
                    }
                    EntryKind::File { size, chunks }
                }
                1 => EntryKind::Dir { tree: r.id()? },
                2 => EntryKind::Symlink {
                    target: r.bytes()?.to_vec(),
                },
                3 => EntryKind::Fifo,
                4 => EntryKind::Socket,
                5 => EntryKind::CharDevice { rdev: r.varint()? },
                6 => EntryKind::BlockDevice { rdev: r.varint()? },
                other => {
                    return Err(FormatError::corrupt(
                        WHAT,
                        format!("unknown entry kind {other}"),
                    ));
                }
            };
            entries.push(Entry { name, kind, meta });
        }
        r.expect_end()?;
        Ok(Tree { entries })
    }

    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_entry() -> impl Strategy<Value = Entry> {
        let name = proptest::collection::vec(1u8..=255, 1..20).prop_filter("valid names", |n| {
            n != b"." && n != b".." && !n.contains(&b'/')
        });
        let kind = prop_oneof![
            (
                any::<u64>(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..4)
            )
                .prop_map(|(size, c)| EntryKind::File {
                    size,
                    chunks: c.into_iter().map(Id::from_bytes).collect()
                }),
            any::<[u8; 32]>().prop_map(|t| EntryKind::Dir {
                tree: Id::from_bytes(t)
            }),
            proptest::collection::vec(any::<u8>(), 0..50)
                .prop_map(|target| EntryKind::Symlink { target }),
            Just(EntryKind::Fifo),
            any::<u64>().prop_map(|rdev| EntryKind::CharDevice { rdev }),
        ];
        let time =
            (any::<i64>(), 0u32..1_000_000_000).prop_map(|(secs, nanos)| Time { secs, nanos });
        (
            name,
            kind,
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            time.clone(),
            time,
            any::<u64>(),
        )
            .prop_map(|(name, kind, mode, uid, gid, mtime, ctime, inode)| Entry {
                name,
                kind,
                meta: Metadata {
                    mode,
                    uid,
                    gid,
                    mtime,
                    ctime,
                    inode,
                },
            })
    }

    proptest! {
        #[test]
        fn trees_round_trip(entries in proptest::collection::vec(arb_entry(), 0..20)) {
            let mut tree = Tree { entries };
            tree.sort();
            tree.entries.dedup_by(|a, b| a.name == b.name);
            let bytes = tree.encode();
            prop_assert_eq!(Tree::decode(&bytes).unwrap(), tree.clone());
            for cut in (0..bytes.len()).step_by(1 + bytes.len() / 64) {
                prop_assert!(Tree::decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(data: Vec<u8>) {
            let _ = Tree::decode(&data);
        }
    }
}
