//! Replays the committed fuzz seed corpus and every past crash input
//! (fuzz/corpus/<target>/ and fuzz/regressions/<target>/) through the same
//! library entry points the fuzz targets call.

use std::fs;
use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let bytes = fs::read(entry.path()).expect("readable corpus file");
            out.push((format!("{dir}/{target}/{name}"), bytes));
        }
    }
    out
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    let cases = inputs(target);
    assert!(!cases.is_empty(), "no seed corpus for fuzz target {target}");
    for (name, bytes) in cases {
        eprintln!("replaying {name}");
        run(&bytes);
    }
}

#[test]
fn split_corpus() {
    replay("split", layerstore::testing::split);
}

#[test]
fn recipe_corpus() {
    replay("recipe", layerstore::testing::recipe);
}

#[test]
fn pack_frames_corpus() {
    replay("pack_frames", layerstore::testing::pack_frames);
}

#[test]
fn decompress_corpus() {
    replay("decompress", layerstore::testing::decompress);
}

#[test]
fn oci_documents_corpus() {
    replay("oci_documents", layerstore::testing::oci_documents);
}

#[test]
fn put_get_corpus() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = layerstore::Store::open(dir.path().join("store")).expect("scratch store");
    replay("put_get", |data| layerstore::testing::put_get(&store, data));
    // The same inputs again: everything is already stored, nothing is added.
    let before = store.stats().expect("stats").pack_bytes;
    replay("put_get", |data| layerstore::testing::put_get(&store, data));
    assert_eq!(store.stats().expect("stats").pack_bytes, before);
}

#[test]
fn blob_description_corpus() {
    replay("blob_description", layerstore::testing::blob_description);
}

#[test]
fn registry_corpus() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = layerstore::Store::open(dir.path().join("store")).expect("scratch store");
    replay("registry", |data| {
        layerstore::testing::registry(&store, data)
    });
}
