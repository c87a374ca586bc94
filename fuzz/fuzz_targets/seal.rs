//! Sealed objects of every domain, and the compression layer's decoder on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_format::seal::{self, Domain};

const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    for domain in [
        Domain::KeyFile,
        Domain::Frame,
        Domain::PackHeader,
        Domain::Index,
        Domain::Manifest,
    ] {
        let _ = seal::unseal(&KEY, domain, data);
        let _ = seal::decrypt(&KEY, domain, data);
    }
    if let Ok(plain) = seal::decode("fuzz", data) {
        // What decodes is at most the bound the decoder promises.
        assert!(plain.len() <= seal::MAX_PAYLOAD);
    }
    let sealed = seal::seal(&KEY, Domain::Index, data);
    assert_eq!(
        seal::unseal(&KEY, Domain::Index, &sealed).expect("opens"),
        data
    );
});
