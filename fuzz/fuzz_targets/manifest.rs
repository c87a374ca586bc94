//! Restore-point manifests: sealed bytes as stored, and any plaintext behind a genuine
//! seal (the JSON decoder and version check).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_format::manifest::RestorePoint;
use lifeboat_format::seal::{self, Domain};

const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let _ = RestorePoint::unseal(&KEY, data);
    if let Ok(point) = RestorePoint::unseal(&KEY, &seal::seal(&KEY, Domain::Manifest, data)) {
        let _ = point.is_complete();
        let _ = point.roots().count();
        let again = RestorePoint::unseal(&KEY, &point.seal(&KEY)).expect("a resealed point opens");
        assert_eq!(again.roots().count(), point.roots().count());
    }
});
