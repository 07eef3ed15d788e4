//! Damaged packs: a get of a layer whose stored bytes were altered fails
//! loudly (naming the layer and the pack or chunk), writes no wrong byte,
//! leaves no output file behind, and other layers are unaffected.
//!
//! Each layer is put on its own into a fresh store, so it gets a pack of its
//! own; the byte flipped is found with the documented pack format (see
//! src/pack.rs, walked by `pack_frames` in tests/support/packs.rs): a
//! 16-byte pack header, then frames of `"LSFR" kind:u8 codec:u8
//! reserved:u16 entries:u32 raw_len:u64 stored_len:u64`, a table of
//! `entries` x 36 bytes (chunk frames) or one 40-byte entry (recipe
//! frames), a 16-byte check, and the payload.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use layerstore::{Digest, Store};
use support::*;

struct Setup {
    dir: tempfile::TempDir,
    store: PathBuf,
    a: Vec<u8>,
    a_pack: PathBuf,
    b: Vec<u8>,
}

/// Puts layer A (a tar of `a_content`) and then layer B, each in a separate
/// put, and returns the pack that A's put created.
fn setup(a_content: &[u8]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ta = dir.path().join("a");
    fs::create_dir_all(&ta).unwrap();
    fs::write(ta.join("payload"), a_content).unwrap();
    fs::write(ta.join("small.txt"), b"a small file").unwrap();
    let a = gnu_tar_create(&ta, &dir.path().join("a.tar"), &[]);
    let tb = dir.path().join("b");
    fs::create_dir_all(&tb).unwrap();
    fs::write(tb.join("b1"), partly_repetitive(500, 1_200_000)).unwrap();
    fs::write(tb.join("b2"), text_bytes(501, 300_000)).unwrap();
    let b = gnu_tar_create(&tb, &dir.path().join("b.tar"), &[]);

    let packs0 = pack_files(&store);
    cli_ok(&store, &["put", dir.path().join("a.tar").to_str().unwrap()]);
    let packs1 = pack_files(&store);
    let new: Vec<&String> = packs1.difference(&packs0).collect();
    assert_eq!(new.len(), 1, "put of A created packs {new:?}");
    let a_pack = store.join("packs").join(new[0]);
    cli_ok(&store, &["put", dir.path().join("b.tar").to_str().unwrap()]);
    assert_eq!(pack_files(&store).len(), 2, "B got a pack of its own");
    Setup {
        dir,
        store,
        a,
        a_pack,
        b,
    }
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

/// Checks every promise about a get of the damaged layer A.
fn assert_get_fails(s: &Setup) {
    let digest = Digest::of(&s.a).to_string();
    let pack_name = s.a_pack.file_name().unwrap().to_string_lossy().into_owned();

    // To stdout: an error naming the layer and the damaged pack or chunk;
    // what was written before the damage is a correct prefix.
    let out = cli_run(&s.store, &["get", &digest]);
    let (stderr, stdout) = expect_cli_error(&out, "get of damaged layer");
    assert!(
        stderr.contains(&digest),
        "stderr does not name the layer: {stderr}"
    );
    assert!(
        stderr.contains(&pack_name) || stderr.contains("chunk blake3:"),
        "stderr names neither the pack {pack_name} nor a chunk: {stderr}"
    );
    assert!(
        stdout.len() < s.a.len() && s.a.starts_with(&stdout),
        "get wrote {} bytes that are not a proper prefix of the layer",
        stdout.len()
    );

    // To a file: nothing is left behind, not even a temporary file.
    let out_dir = s.dir.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let target = out_dir.join("a.tar");
    let out = cli_run(&s.store, &["get", &digest, "-o", target.to_str().unwrap()]);
    let (stderr, _) = expect_cli_error(&out, "get -o of damaged layer");
    assert!(stderr.contains(&digest), "{stderr}");
    let left: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "get -o left {left:?} behind");

    // The library says the same: an error, and not "not found".
    let store = Store::open(&s.store).unwrap();
    let err = store
        .get_layer(&Digest::of(&s.a), std::io::sink())
        .expect_err("library get of a damaged layer must fail");
    assert!(!err.is_not_found(), "damage reported as not found: {err}");
    assert!(err.to_string().contains(&digest), "{err}");

    // The other layer, and the store's listing and figures, are fine.
    assert_same_bytes(
        &cli_get(&s.store, &Digest::of(&s.b).to_string()),
        &s.b,
        "layer B",
    );
    assert_eq!(ls_json(&s.store).len(), 2);
    assert_eq!(stat_json(&s.store)["layers"], 2);
}

/// A flipped byte inside a zstd-compressed chunk frame.
#[test]
fn flipped_byte_in_compressed_frame() {
    let s = setup(&text_bytes(400, 1_500_000));
    let pack = fs::read(&s.a_pack).unwrap();
    let f = pack_frames(&pack);
    let frame = f
        .iter()
        .find(|f| f.kind == 1 && f.codec == 1)
        .expect("A's text compresses: a zstd chunk frame");
    let at = frame.payload_start + frame.payload_len / 2;
    assert!(at > 200);
    flip(&s.a_pack, at);
    assert_get_fails(&s);
}

/// A flipped byte inside a chunk frame stored uncompressed (random data):
/// only the chunk's BLAKE3 id can catch it.
#[test]
fn flipped_byte_in_stored_frame() {
    let s = setup(&random_bytes(410, 700_000));
    let pack = fs::read(&s.a_pack).unwrap();
    let f = pack_frames(&pack);
    let frame = f
        .iter()
        .find(|f| f.kind == 1 && f.codec == 0)
        .expect("A's random data does not compress: a stored chunk frame");
    let at = frame.payload_start + frame.payload_len / 2;
    assert!(at > 200);
    flip(&s.a_pack, at);
    let out = cli_run(&s.store, &["get", &Digest::of(&s.a).to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chunk blake3:"),
        "a stored frame's damage names the chunk: {stderr}"
    );
    assert_get_fails(&s);
}

/// A flipped byte in the layer's recipe.
#[test]
fn flipped_byte_in_recipe() {
    let s = setup(&text_bytes(420, 400_000));
    let pack = fs::read(&s.a_pack).unwrap();
    let f = pack_frames(&pack);
    let recipe = f
        .iter()
        .find(|f| f.kind == 2)
        .expect("A's pack holds its recipe");
    assert!(
        recipe.payload_len > 8,
        "recipe of {} bytes",
        recipe.payload_len
    );
    flip(&s.a_pack, recipe.payload_start + recipe.payload_len / 2);
    assert_get_fails(&s);
}

/// A pack cut short.
#[test]
fn truncated_pack() {
    let s = setup(&text_bytes(430, 900_000));
    let bytes = fs::read(&s.a_pack).unwrap();
    fs::write(&s.a_pack, &bytes[..bytes.len() / 2]).unwrap();
    assert_get_fails(&s);
}
