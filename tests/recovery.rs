//! Recovery that cannot lose data: a lost or stale index, damaged frames
//! and chunks, and what verify, repair and gc do about them; and
//! concurrent writers whose reports stay true. Through the real binary on
//! real layers (GNU tar).

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::*;

/// Two layer files: GNU tar archives of generated trees of text files.
fn two_layer_files(dir: &Path) -> [LayerFile; 2] {
    [1u64, 2].map(|seed| {
        let tree = dir.join(format!("tree{seed}"));
        let files: Vec<(String, Vec<u8>)> = (0..40)
            .map(|i| {
                let content = text_bytes(seed * 1000 + i, 80_000);
                (format!("d{}/f{i}", i % 4), content)
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        write_tree(&tree, &refs);
        let path = dir.join(format!("layer{seed}.tar"));
        let tar = gnu_tar_layer(&tree, &path);
        LayerFile::write(path, &tar)
    })
}

/// A store with the two layers of [`two_layer_files`] put.
fn store_with_two_layers(dir: &Path) -> (PathBuf, [LayerFile; 2]) {
    let store = dir.join("store");
    let layers = two_layer_files(dir);
    for layer in &layers {
        cli_ok(&store, &["put", path_arg(&layer.path)]);
    }
    (store, layers)
}

/// Makes the index's state durable in index.db itself (no WAL), so that
/// copying that one file copies the index.
fn checkpoint(store: &Path) {
    python_sql(store, "db.execute('PRAGMA wal_checkpoint(TRUNCATE)')");
}

fn remove_index(store: &Path) {
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = fs::remove_file(store.join(name));
    }
}

/// Flips one byte inside the payload of the first chunk frame of `pack`.
fn damage_first_chunk_payload(store: &Path, pack: &str) {
    let path = store.join("packs").join(pack);
    let mut bytes = fs::read(&path).unwrap();
    let frame = pack_frames(&bytes)
        .into_iter()
        .find(|f| f.kind == 1)
        .expect("a chunk frame");
    bytes[frame.payload_start + frame.payload_len / 2] ^= 0x55;
    fs::write(&path, bytes).unwrap();
}

#[test]
fn a_lost_or_emptied_index_is_refused_never_reinitialised() {
    for emptied in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (store, layers) = store_with_two_layers(dir.path());
        let packs_before = pack_tree(&store);
        remove_index(&store);
        if emptied {
            fs::write(store.join("index.db"), b"").unwrap();
        }
        for args in [&["ls"][..], &["verify"], &["gc"], &["stat"]] {
            let err = cli_err(&store, args);
            assert!(
                err.contains("verify --repair") && err.contains("pack file"),
                "{args:?} (emptied {emptied}): {err}"
            );
        }
        assert_eq!(
            pack_tree(&store),
            packs_before,
            "a refused command changed packs/"
        );
        // Repair rebuilds the index from the packs: every layer is back.
        let (ok, report) = verify(&store, false, true);
        assert!(ok, "repair: {report}");
        for layer in &layers {
            assert_get_exact(&store, layer, dir.path(), "after rebuilding the index");
        }
        assert_verify_clean(&store, true, "after rebuilding the index");
    }
}

#[test]
fn packs_an_older_index_does_not_know_are_kept_and_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let layers = two_layer_files(dir.path());
    let store = dir.path().join("store");
    cli_ok(&store, &["put", path_arg(&layers[0].path)]);
    checkpoint(&store);
    let old_index = fs::read(store.join("index.db")).unwrap();
    cli_ok(&store, &["put", path_arg(&layers[1].path)]);
    // The index is restored from the copy taken before the second put.
    remove_index(&store);
    fs::write(store.join("index.db"), old_index).unwrap();
    fs::write(store.join("packs/notes.txt"), b"not a pack").unwrap();
    let files = pack_files(&store);

    // verify fails and names the pack the index does not know.
    let (ok, report) = verify(&store, false, false);
    let problems = findings(&report, "problems");
    assert!(!ok, "verify passed a store with an unknown pack: {report}");
    assert!(
        problems
            .iter()
            .any(|(s, d)| s.starts_with("file packs/") && d.contains("verify --repair")),
        "{problems:#?}"
    );
    // gc deletes neither the unknown pack nor the unrelated file.
    let gc = cli_json(&store, &["gc"]);
    assert_eq!(
        gc["unknown_packs_kept"].as_array().map(Vec::len),
        Some(1),
        "{gc}"
    );
    assert_eq!(
        pack_files(&store),
        files,
        "gc deleted a file it cannot prove is garbage"
    );
    // Repair adopts the pack: the second layer comes back exactly.
    let (ok, report) = verify(&store, false, true);
    assert!(ok, "repair: {report}");
    for layer in &layers {
        assert_get_exact(&store, layer, dir.path(), "after adopting the unknown pack");
    }
    assert_eq!(
        fs::read(store.join("packs/notes.txt")).unwrap(),
        b"not a pack"
    );
}

#[test]
fn leftovers_of_a_crashed_put_are_still_collected() {
    let dir = tempfile::tempdir().unwrap();
    let (store, layers) = store_with_two_layers(dir.path());
    let before = pack_files(&store);
    // A third, new layer whose put dies after its pack is durable.
    let tree = dir.path().join("tree3");
    write_tree(&tree, &[("x", &random_bytes(3, 300_000))]);
    let path = dir.path().join("layer3.tar");
    gnu_tar_layer(&tree, &path);
    let out = cli(&store)
        .env("LAYERSTORE_CRASH_AT", "put-before-commit")
        .args(["put", path_arg(&path)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(pack_files(&store).len(), before.len() + 1);
    // The index recorded the pack as an uncommitted write: a warning, and
    // gc removes it.
    assert_verify_clean(&store, false, "after a crashed put");
    cli_ok(&store, &["gc"]);
    assert_eq!(pack_files(&store), before);
    assert_get_exact(&store, &layers[0], dir.path(), "after gc");
}

#[test]
fn repair_always_checks_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_two_layers(dir.path());
    let pack = pack_files(&store).into_iter().next().unwrap();
    damage_first_chunk_payload(&store, &pack);
    let (full_ok, _) = verify(&store, true, false);
    assert!(!full_ok, "verify --full missed a damaged chunk");
    // Without --full, repair must not call the damaged store ok.
    let (ok, report) = verify(&store, false, true);
    assert!(!ok, "verify --repair called a damaged store ok: {report}");
    assert_eq!(report["full"], true, "{report}");
    // Nothing it failed to do is listed as repaired.
    for line in strings(&report, "repaired") {
        assert!(
            !line.contains("unreadable") && !line.contains("stopped") && !line.contains("skipped"),
            "a failure listed under repaired: {line}"
        );
    }
}

#[test]
fn repair_of_a_healthy_store_claims_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_two_layers(dir.path());
    for round in 0..2 {
        let (ok, report) = verify(&store, false, true);
        assert!(ok, "round {round}: {report}");
        assert!(
            strings(&report, "repaired").is_empty(),
            "round {round}: a no-op repair claims work: {report}"
        );
    }
}

#[test]
fn repair_reads_past_a_damaged_frame_header() {
    let dir = tempfile::tempdir().unwrap();
    let (store, layers) = store_with_two_layers(dir.path());
    // The first layer's pack: chunk frames, then its recipe frame last.
    let digest = layers[0].digest.clone();
    let diff_id = hex_bytes(hex(&digest));
    // A recipe frame's table holds the layer's DiffID, raw.
    let pack = pack_files(&store)
        .into_iter()
        .find(|p| {
            let bytes = fs::read(store.join("packs").join(p)).unwrap();
            let frames = pack_frames(&bytes);
            let recipe = frames.last().unwrap();
            frames.len() >= 3
                && recipe.kind == 2
                && bytes[recipe.offset + 28..recipe.offset + 60] == diff_id[..]
        })
        .expect("the first layer's pack, with several frames");
    let path = store.join("packs").join(&pack);
    let mut bytes = fs::read(&path).unwrap();
    let frames = pack_frames(&bytes);
    // Break the first frame's header checksum: a walk that stops there
    // never reaches the later chunk frames or the recipe.
    bytes[frames[0].offset + 9] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    remove_index(&store);
    let (ok, report) = verify(&store, false, true);
    assert!(!ok, "{report}");
    // The layer is found (its recipe sat behind the damage) and, missing
    // the first frame's chunks, listed as lost rather than vanishing.
    assert!(
        strings(&report, "lost").contains(&digest),
        "layer behind the damage not listed as lost: {report}"
    );
    let warnings = findings(&report, "warnings");
    assert!(
        warnings
            .iter()
            .any(|(s, d)| s == &format!("pack {pack}") && d.contains("resumed")),
        "{warnings:#?}"
    );
    // The other layer is whole.
    assert_get_exact(&store, &layers[1], dir.path(), "the undamaged layer");
    // gc keeps the pack repair read only in part, whatever the threshold.
    cli_ok(&store, &["gc", "--rewrite-below", "100"]);
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "gc changed a partly read pack"
    );
}

#[test]
fn damaged_chunks_are_stored_again_by_the_next_put() {
    let dir = tempfile::tempdir().unwrap();
    let (store, layers) = store_with_two_layers(dir.path());
    let digest = layers[0].digest.clone();
    // Damage every pack's first chunk frame: some of both layers' chunks.
    for pack in pack_files(&store) {
        damage_first_chunk_payload(&store, &pack);
    }
    let (ok, report) = verify(&store, false, true);
    assert!(!ok, "{report}");
    assert!(strings(&report, "lost").contains(&digest), "{report}");
    // Putting the same layer again writes the damaged chunks anew.
    let put = cli_put_json(&store, &layers[0].path);
    assert!(
        put["new_chunks"].as_u64().unwrap() > 0,
        "a put of the same data healed nothing: {put}"
    );
    assert_get_exact(&store, &layers[0], dir.path(), "after putting it again");
    cli_ok(&store, &["put", path_arg(&layers[1].path)]);
    assert_verify_clean(&store, true, "after putting both layers again");
}

/// 32 raw bytes from 64 hex digits.
fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Three puts of the same new layer that all write their packs before any
/// commits: the store ends with one copy, and each put's report is true
/// (issue: three copies until gc, "0 new chunks ... grew by 83.7 MiB").
#[test]
fn concurrent_puts_of_one_new_layer_store_it_once() {
    use std::io::Write as _;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write_tree(&tree, &[("big", &random_bytes(9, 12 << 20))]);
    let path = dir.path().join("big.tar");
    let tar = gnu_tar_layer(&tree, &path);
    // One put alone, for the size of one copy.
    let alone = dir.path().join("alone");
    cli_ok(&alone, &["put", path_arg(&path)]);
    let one_copy = stat_json(&alone)["pack_bytes"].as_u64().unwrap();

    let store = dir.path().join("store");
    layerstore::Store::open(&store).unwrap();
    let mut children: Vec<_> = (0..3)
        .map(|_| {
            cli(&store)
                .args(["put", "-", "--json"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every put reads the whole layer before any sees its end: all of them
    // write their packs before the first commits.
    let mut stdins: Vec<_> = children
        .iter_mut()
        .map(|c| c.stdin.take().unwrap())
        .collect();
    std::thread::scope(|s| {
        for stdin in stdins.iter_mut() {
            let tar = &tar;
            s.spawn(move || stdin.write_all(tar).unwrap());
        }
    });
    drop(stdins);
    let mut added = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        added += report["added_bytes"].as_u64().unwrap();
    }
    let stored = stat_json(&store)["pack_bytes"].as_u64().unwrap();
    assert!(
        stored < one_copy + one_copy / 2,
        "three concurrent puts stored {stored} bytes for a layer of {one_copy}"
    );
    assert_eq!(
        added, stored,
        "the puts' reports do not add up to what was stored"
    );
    assert_verify_clean(&store, true, "after concurrent puts");
}
