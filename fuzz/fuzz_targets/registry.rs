#![no_main]
//! Fuzz target: the registry's request parsers and manifest push on one
//! scratch store shared by all runs of this process; see
//! `layerstore::testing::registry`.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static STORE: OnceLock<(tempfile::TempDir, layerstore::Store)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = layerstore::Store::open(dir.path().join("store")).expect("scratch store");
        (dir, store)
    });
    layerstore::testing::registry(store, data);
});
