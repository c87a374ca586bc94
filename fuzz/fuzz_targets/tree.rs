//! Tree listings: any bytes decode or fail with an error; what decodes re-encodes to the
//! same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_format::tree::Tree;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        let again = Tree::decode(&tree.encode()).expect("a re-encoded tree decodes");
        assert_eq!(again, tree);
    }
});
