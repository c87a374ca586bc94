//! A document: one byte stream stored as a tree with one file entry.

use std::io::Read;
use std::time::Instant;

use lifeboat_files::Progress;
use lifeboat_format::Id;
use lifeboat_format::manifest::CaptureStats;
use lifeboat_format::pack::ChunkKind;
use lifeboat_format::tree::{Entry, EntryKind, Metadata, Tree};
use lifeboat_repository::{RepoError, RepoWriter, Repository};

use crate::{Result, ServiceError};

#[derive(Debug)]
pub struct Document {
    pub root: Id,
    pub stats: CaptureStats,
}

/// Stores `source` as the single entry `name` of a new tree.
pub(crate) fn store(
    writer: &RepoWriter<'_>,
    name: &str,
    source: &mut dyn Read,
) -> Result<Document> {
    store_counted(writer, name, source, None)
}

/// The same, counting the bytes read into `progress` (for long dumps).
pub(crate) fn store_counted(
    writer: &RepoWriter<'_>,
    name: &str,
    source: &mut dyn Read,
    progress: Option<&Progress>,
) -> Result<Document> {
    let started = Instant::now();
    let before = writer.stats();
    let mut data = writer.packer(ChunkKind::Data);
    let mut buf = Vec::new();
    let stored = lifeboat_files::store_stream(writer, &mut data, source, &mut buf, progress);
    writer.flush(&mut data)?;
    let (chunks, size) = stored?;
    let tree = Tree {
        entries: vec![Entry {
            name: name.as_bytes().to_vec(),
            kind: EntryKind::File { size, chunks },
            meta: Metadata {
                mode: 0o600,
                // A document restored to a folder carries when it was captured.
                mtime: captured_at(),
                ..Metadata::default()
            },
        }],
    };
    let bytes = tree.encode();
    let root = writer.repository().key().chunk_id(&bytes);
    let mut trees = writer.packer(ChunkKind::Tree);
    writer.add(&mut trees, root, &bytes)?;
    writer.flush(&mut trees)?;
    let after = writer.stats();
    Ok(Document {
        root,
        stats: CaptureStats {
            files: 1,
            bytes: size,
            files_read: 1,
            chunks_new: after.chunks_new - before.chunks_new,
            bytes_new: after.bytes_new - before.bytes_new,
            bytes_stored: after.bytes_stored - before.bytes_stored,
            duration_ms: started.elapsed().as_millis() as u64,
            ..CaptureStats::default()
        },
    })
}

fn captured_at() -> lifeboat_format::tree::Time {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    lifeboat_format::tree::Time {
        secs: now.as_secs() as i64,
        nanos: now.subsec_nanos(),
    }
}

/// The chunks of a document's single entry.
pub fn document_chunks(repo: &Repository, root: &Id) -> Result<Vec<Id>> {
    document_content(repo, root).map(|(chunks, _)| chunks)
}

/// The chunks of a document's single entry and its length in bytes.
pub fn document_content(repo: &Repository, root: &Id) -> Result<(Vec<Id>, u64)> {
    let bytes = repo.reader().read(root)?;
    let tree = Tree::decode(&bytes).map_err(|e| {
        ServiceError::Repo(RepoError::Corrupt {
            object: format!("tree {}", root.short()),
            source: e,
        })
    })?;
    match tree.entries.as_slice() {
        [
            Entry {
                kind: EntryKind::File { chunks, size },
                ..
            },
        ] => Ok((chunks.clone(), *size)),
        _ => Err(ServiceError::Io(format!(
            "tree {} is not a document",
            root.short()
        ))),
    }
}

/// A whole document in memory: for small ones (a server's roles), which are filtered first.
pub(crate) fn read_document(repo: &Repository, root: &Id) -> Result<Vec<u8>> {
    let chunks = document_chunks(repo, root)?;
    let mut out = Vec::new();
    lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut out)?;
    Ok(out)
}

/// A document's bytes as a reader, one chunk in memory at a time (an HTTP body).
pub(crate) struct DocumentReader<'r> {
    reader: lifeboat_repository::ChunkReader<'r>,
    chunks: &'r [Id],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl<'r> DocumentReader<'r> {
    pub(crate) fn new(repo: &'r Repository, chunks: &'r [Id]) -> Self {
        DocumentReader {
            reader: repo.reader(),
            chunks,
            next: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for DocumentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.chunks.get(self.next) else {
                return Ok(0);
            };
            self.buf.clear();
            self.pos = 0;
            self.reader
                .read_into(id, &mut self.buf)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Compares the document stored under `root` with the bytes `source` gives now, without
/// storing or writing anything: `None` when they are equal, else how they differ.
pub(crate) fn compare_document(
    repo: &Repository,
    root: &Id,
    source: &mut dyn Read,
) -> Result<Option<String>> {
    let chunks = document_chunks(repo, root)?;
    let mut compare = Compare {
        source,
        offset: 0,
        differs: None,
        buf: Vec::new(),
    };
    match lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut compare) {
        Ok(_) => {}
        // The comparing writer stops the stream at the first difference.
        Err(_) if compare.differs.is_some() => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(differs) = compare.differs {
        return Ok(Some(differs));
    }
    let mut rest = [0u8; 1];
    match compare.source.read(&mut rest) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(format!(
            "longer than the restore point's {} bytes",
            compare.offset
        ))),
        Err(e) => Err(ServiceError::Io(format!("reading it now: {e}"))),
    }
}

/// A writer that checks each byte written against a source read alongside.
struct Compare<'a> {
    source: &'a mut dyn Read,
    offset: u64,
    differs: Option<String>,
    buf: Vec<u8>,
}

impl std::io::Write for Compare<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.resize(data.len(), 0);
        let mut filled = 0;
        while filled < data.len() {
            match self.source.read(&mut self.buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(at) = data[..filled]
            .iter()
            .zip(&self.buf[..filled])
            .position(|(a, b)| a != b)
        {
            self.differs = Some(format!("differs from byte {}", self.offset + at as u64));
        } else if filled < data.len() {
            self.differs = Some(format!(
                "{} bytes, the restore point has more",
                self.offset + filled as u64
            ));
        }
        if self.differs.is_some() {
            return Err(std::io::Error::other("differs"));
        }
        self.offset += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A suffix that makes a staging name unique on a server for this restore.
/// Whether `name` is a database a restore of lifeboat's stages or discards
/// (`lifeboat_stage_`, `lifeboat_trash_`, `lifeboat_restore_` and a [`staging_suffix`]): one
/// found outside a restore is what an interrupted restore left, never the application's.
pub(crate) fn is_staging_database(name: &str) -> bool {
    let Some(suffix) = ["lifeboat_stage_", "lifeboat_trash_", "lifeboat_restore_"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
    else {
        return false;
    };
    suffix.split_once('_').is_some_and(|(pid, nanos)| {
        !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && nanos.len() >= 8
            && nanos.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Leaves out the databases interrupted restores left, saying so once each.
pub(crate) fn without_staging(server: &str, names: Vec<String>) -> Vec<String> {
    names
        .into_iter()
        .filter(|name| {
            let staging = is_staging_database(name);
            if staging {
                tracing::warn!(
                    "{server}: database `{name}` is what an interrupted restore left: not backed \
                     up; drop it once no restore runs"
                );
            }
            !staging
        })
        .collect()
}

pub(crate) fn staging_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}_{nanos:08x}", std::process::id())
}

#[cfg(test)]
mod staging_tests {
    use super::*;

    #[test]
    fn staging_databases_are_told_apart() {
        let made = format!("lifeboat_stage_{}", staging_suffix());
        assert!(is_staging_database(&made), "{made}");
        assert!(is_staging_database("lifeboat_trash_123_0000abcd"));
        assert!(is_staging_database("lifeboat_restore_9_deadbeef"));
        assert!(!is_staging_database("lifeboat_stage_"));
        assert!(!is_staging_database("lifeboat_stage_x_0000abcd"));
        assert!(!is_staging_database("lifeboat_stage_12_abc"));
        assert!(!is_staging_database("lifeboat"));
        assert!(!is_staging_database("shop"));
    }
}
