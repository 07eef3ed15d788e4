#![no_main]
//! Fuzz target: see `layerstore::testing::decompress` for the property checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    layerstore::testing::decompress(data);
});
