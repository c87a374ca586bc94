//! Content-defined chunking of a file, streaming with a bounded buffer.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization};

pub const MIN_CHUNK: usize = 256 * 1024;
pub const AVG_CHUNK: usize = 1024 * 1024;
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// Calls `each` with every chunk of `reader`, in order; `buf` is reused between files.
/// Returns the number of bytes read.
pub fn chunk_stream<R: Read + ?Sized>(
    reader: &mut R,
    seed: u64,
    buf: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    buf.clear();
    // Room for one largest chunk plus lookahead; more only costs memory.
    let capacity = MAX_CHUNK + MIN_CHUNK;
    let mut total = 0u64;
    let mut eof = false;
    loop {
        // Fill the buffer as far as it goes.
        while !eof && buf.len() < capacity {
            // `read_to_end` fills spare capacity without zeroing it first: small files cost
            // only their own size.
            let want = (capacity - buf.len()) as u64;
            let n = match (&mut *reader).take(want).read_to_end(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n as u64;
            if (n as u64) < want {
                eof = true;
            }
        }
        if buf.is_empty() {
            return Ok(total);
        }
        if buf.len() <= MIN_CHUNK && eof {
            each(buf)?;
            buf.clear();
            return Ok(total);
        }
        let mut consumed = 0;
        for chunk in FastCDC::with_level_and_seed(
            buf,
            MIN_CHUNK,
            AVG_CHUNK,
            MAX_CHUNK,
            Normalization::Level1,
            seed,
        ) {
            let end = chunk.offset + chunk.length;
            // The last cut of a partial buffer may move once more data arrives.
            if end == buf.len() && !eof {
                break;
            }
            each(&buf[chunk.offset..end])?;
            consumed = end;
        }
        buf.drain(..consumed);
        if eof && buf.is_empty() {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, mut state: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn chunks_of(data: &[u8], read_size: usize) -> Vec<Vec<u8>> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(out.len()).min(self.1);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let total = chunk_stream(&mut Trickle(data, read_size), 42, &mut buf, |c| {
            out.push(c.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(total as usize, data.len());
        out
    }

    #[test]
    fn chunks_cover_the_input_and_do_not_depend_on_read_sizes() {
        let data = pseudo_random(20 * 1024 * 1024 + 12345, 7);
        let a = chunks_of(&data, usize::MAX);
        let b = chunks_of(&data, 100_003);
        assert_eq!(a, b);
        assert_eq!(a.concat(), data);
        assert!(a.iter().all(|c| c.len() <= MAX_CHUNK));
        assert!(a[..a.len() - 1].iter().all(|c| c.len() >= MIN_CHUNK));
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let data = pseudo_random(16 * 1024 * 1024, 9);
        let mut edited = data.clone();
        edited.splice(5_000_000..5_000_000, b"inserted".iter().copied());
        let a = chunks_of(&data, usize::MAX);
        let b = chunks_of(&edited, usize::MAX);
        let shared = a.iter().filter(|c| b.contains(c)).count();
        assert!(
            shared + 3 >= a.len(),
            "{shared} of {} chunks shared",
            a.len()
        );
    }

    #[test]
    fn empty_and_small_inputs() {
        assert!(chunks_of(b"", 10).is_empty());
        assert_eq!(chunks_of(b"hello", 2), vec![b"hello".to_vec()]);
    }
}
