//! Index files: as plain bytes, as sealed bytes, and as the plaintext of a genuine seal
//! (which reaches the decompressor and the decoder behind the authentication).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_format::index::IndexFile;
use lifeboat_format::seal::{self, Domain};

const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = IndexFile::decode(data) {
        let again = IndexFile::decode(&index.encode()).expect("a re-encoded index decodes");
        assert_eq!(again, index);
    }
    let _ = IndexFile::unseal(&KEY, data);
    let _ = IndexFile::unseal(&KEY, &seal::encrypt(&KEY, Domain::Index, data));
    let _ = IndexFile::unseal(&KEY, &seal::seal(&KEY, Domain::Index, data));
});
