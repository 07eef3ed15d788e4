#![no_main]
//! Fuzz target: see `layerstore::fuzzing::oci_documents` for the property checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    layerstore::fuzzing::oci_documents(data);
});
