//! Key files: any JSON; one that parses is opened when its Argon2 cost is small enough to
//! fuzz (the decoder itself refuses costs beyond 4 GiB).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_format::keys::KeyFile;

fuzz_target!(|data: &[u8]| {
    let Ok(key_file) = KeyFile::from_json(data) else {
        return;
    };
    let _ = key_file.to_json();
    let params = key_file.params;
    let cheap = u64::from(params.memory_kib) * u64::from(params.iterations) <= 64 * 1024
        && params.parallelism <= 4;
    if cheap {
        let _ = key_file.open(b"fuzz");
    }
});
