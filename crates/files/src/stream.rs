//! Byte streams in and out of the repository: what a file's content is, and also a dump or
//! a configuration document read from a process or a socket.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;

use lifeboat_format::Id;
use lifeboat_repository::{ChunkReader, Packer, RepoError, RepoWriter};

use crate::chunker::chunk_stream;
use crate::scan::Progress;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the source failed.
    #[error("{0}")]
    Read(std::io::Error),
    /// Storing into the repository failed.
    #[error(transparent)]
    Store(#[from] RepoError),
}

/// Chunks `source` and stores every chunk the repository lacks. Returns the chunk ids in
/// order and the bytes read. `buf` is reused between calls.
pub fn store_stream(
    writer: &RepoWriter<'_>,
    packer: &mut Packer,
    source: &mut dyn Read,
    buf: &mut Vec<u8>,
    progress: Option<&Progress>,
) -> Result<(Vec<Id>, u64), StreamError> {
    let key = writer.repository().key();
    let mut chunks = Vec::new();
    let mut store_error = None;
    let outcome = chunk_stream(source, key.chunker_seed(), buf, |data| {
        let id = key.chunk_id(data);
        if let Err(e) = writer.add(packer, id, data) {
            store_error = Some(e);
            return Err(std::io::Error::other("storing failed"));
        }
        chunks.push(id);
        if let Some(p) = progress {
            p.bytes_done.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Some(e) = store_error {
        return Err(StreamError::Store(e));
    }
    let total = outcome.map_err(StreamError::Read)?;
    Ok((chunks, total))
}

/// Writes the chunks, in order, to `sink`. Returns the bytes written.
pub fn read_stream(
    reader: &mut ChunkReader<'_>,
    chunks: &[Id],
    sink: &mut dyn Write,
) -> Result<u64, StreamError> {
    let mut buf = Vec::new();
    let mut total = 0;
    for c in chunks {
        buf.clear();
        reader.read_into(c, &mut buf)?;
        sink.write_all(&buf).map_err(StreamError::Read)?;
        total += buf.len() as u64;
    }
    Ok(total)
}
