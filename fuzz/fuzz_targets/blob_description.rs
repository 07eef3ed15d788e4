#![no_main]
//! Fuzz target: see `layerstore::testing::blob_description` for the property checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    layerstore::testing::blob_description(data);
});
