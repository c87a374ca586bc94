//! Pack headers: a whole pack as stored, a genuinely sealed header of any content, the
//! header length in a pack's tail, and frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_format::pack;
use lifeboat_format::seal::{self, Domain};

const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let _ = pack::read_header(&KEY, data);
    if let Some((head, rest)) = data.split_first_chunk::<8>() {
        let frames_end = u64::from_le_bytes(*head);
        let sealed = seal::encrypt(&KEY, Domain::PackHeader, rest);
        if let Ok(entries) = pack::decode_header(&KEY, &sealed, frames_end) {
            for entry in &entries {
                assert!(entry.check_bounds(frames_end, "fuzz").is_ok());
                let _ = pack::chunk_in_frame(rest, entry);
            }
        }
    }
    if let Some((tail, rest)) = data.split_first_chunk::<4>() {
        let _ = pack::header_len(rest.len() as u64, tail);
    }
    let _ = pack::open_frame(&KEY, data);
    let _ = pack::open_frame(&KEY, &seal::encrypt(&KEY, Domain::Frame, data));
});
