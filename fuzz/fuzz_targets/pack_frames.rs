#![no_main]
//! Fuzz target: see `layerstore::fuzzing::pack_frames` for the property checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    layerstore::fuzzing::pack_frames(data);
});
