#![no_main]
//! Fuzz target: put then get on one scratch store shared by all runs of
//! this process; see `layerstore::testing::put_get`.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static STORE: OnceLock<(tempfile::TempDir, layerstore::Store)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = layerstore::Store::open(dir.path().join("store")).expect("scratch store");
        (dir, store)
    });
    layerstore::testing::put_get(store, data);
});
