//! Deduplication: a file shared by two layers is stored once; a layer
//! rebuilt with new mtimes costs almost nothing; a repeated put costs
//! nothing at all.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use layerstore::testing::Cdc;
use layerstore::{ChunkParams, Compression, Digest, Store};
use support::*;

/// Number of chunks FastCDC (with the store's default parameters) cuts a
/// file payload into. Payloads are cut on their own, from their first byte.
fn payload_chunks(data: &[u8]) -> u64 {
    let cdc = Cdc::new(ChunkParams::default());
    let mut pos = 0;
    let mut n = 0;
    while pos < data.len() {
        let end = (pos + cdc.max_size()).min(data.len());
        pos += cdc.first_chunk_len(&data[pos..end]);
        n += 1;
    }
    n
}

/// (a) A file present in two layers, at different paths with different
/// metadata, is stored once: the second put stores only what is new to it.
#[test]
fn file_shared_by_two_layers_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let shared = random_bytes(1, 4 << 20);
    let only1 = random_bytes(2, 300_000);
    let only2 = random_bytes(3, 250_000);
    let notes2 = text_bytes(4, 3_000);

    let l1 = dir.path().join("l1");
    write_tree(
        &l1,
        &[
            ("opt/app/shared.bin", &shared),
            ("opt/app/only1.bin", &only1),
            ("etc/readme", &text_bytes(5, 2_000)),
        ],
    );
    let l2 = dir.path().join("l2");
    write_tree(
        &l2,
        &[
            ("srv/elsewhere/renamed_shared.bin", &shared),
            ("srv/only2.bin", &only2),
            ("srv/notes.txt", &notes2),
        ],
    );
    run_ok(
        tool("touch")
            .args(["-d", "2001-01-01"])
            .arg(l2.join("srv/elsewhere/renamed_shared.bin")),
    );
    run_ok(
        tool("chmod")
            .arg("600")
            .arg(l2.join("srv/elsewhere/renamed_shared.bin")),
    );

    let tar1 = gnu_tar_create(&l1, &dir.path().join("l1.tar"), &[]);
    let tar2 = gnu_tar_create(&l2, &dir.path().join("l2.tar"), &["--format=posix"]);

    let store = Store::open(dir.path().join("store")).unwrap();
    let first = put_and_check(&store, &tar1, &tar1, Compression::None, "layer 1");
    assert!(
        first.added_bytes > shared.len() as u64,
        "layer 1 must store the shared file: added only {} bytes",
        first.added_bytes
    );
    let second = put_and_check(&store, &tar2, &tar2, Compression::None, "layer 2");

    let shared_chunks = payload_chunks(&shared);
    let distinct_chunks = payload_chunks(&only2) + payload_chunks(&notes2);
    assert!(
        shared_chunks >= 16,
        "shared file cut into only {shared_chunks} chunks"
    );
    assert_eq!(
        second.chunks,
        shared_chunks + distinct_chunks,
        "layer 2 recipe: chunk references"
    );
    assert_eq!(
        second.new_chunks, distinct_chunks,
        "layer 2 must store only the chunks of its own files"
    );
    let distinct_bytes = (only2.len() + notes2.len()) as u64;
    let bound = distinct_bytes + shared.len() as u64 / 50 + 8 * 1024;
    assert!(
        second.added_bytes <= bound,
        "layer 2 added {} bytes; its own files are {distinct_bytes} bytes, so at most {bound} \
         were expected (the shared file is {} bytes)",
        second.added_bytes,
        shared.len()
    );

    // Both layers still come back exact, and the store knows them both.
    for tar in [&tar1, &tar2] {
        let mut back = Vec::new();
        store.get_layer(&Digest::of(tar), &mut back).unwrap();
        assert_same_bytes(&back, tar, "layer after dedup");
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.layers, 2);
    assert_eq!(stats.logical_bytes, (tar1.len() + tar2.len()) as u64);
    assert!(stats.dedup_ratio > 1.3, "dedup ratio {}", stats.dedup_ratio);
}

/// Regular files from /usr/bin (binaries) and /usr/share (text and data):
/// mostly files of 16 KiB to 4 MiB, at most `per_dir` bytes from each top
/// directory of /usr/share so the mix is varied, `budget` bytes in all.
fn collect_real_files(budget: u64) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            let Ok(meta) = fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                walk(&p, out);
            } else if meta.is_file() {
                out.push(p);
            }
        }
    }
    let readable = |p: &Path| fs::File::open(p).is_ok();
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut picked = Vec::new();
    let mut total = 0u64;
    let mut small = 0;

    let mut take = |p: PathBuf, rel: String, cap: &mut u64, limit: u64| {
        let n = size(&p);
        let big = (16 << 10..=4 << 20).contains(&n);
        let ok_small = n > 0 && n < 16 << 10 && small < 40;
        if (big || ok_small) && *cap + n <= limit && total + n <= budget && readable(&p) {
            if !big {
                small += 1;
            }
            *cap += n;
            total += n;
            picked.push((p, rel));
        }
    };

    let mut bins = Vec::new();
    walk(Path::new("/usr/bin"), &mut bins);
    let mut cap = 0;
    for p in bins {
        let rel = format!("usr/bin/{}", p.file_name().unwrap().to_string_lossy());
        take(p, rel, &mut cap, budget / 2);
    }
    let mut tops: Vec<PathBuf> = fs::read_dir("/usr/share")
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    tops.sort();
    for top in tops {
        let mut files = Vec::new();
        walk(&top, &mut files);
        let mut cap = 0;
        for p in files {
            let rel = p.strip_prefix("/").unwrap().to_string_lossy().into_owned();
            take(p, rel, &mut cap, 2 << 20);
        }
    }
    picked
}

fn copy_into(files: &[(PathBuf, String)], root: &Path) -> u64 {
    let mut total = 0;
    for (src, rel) in files {
        let dst = root.join(rel);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        total += fs::copy(src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
    }
    total
}

/// (b) A layer of real files rebuilt with every mtime changed stores
/// almost nothing new: less than 2% of its gzip size, and no new chunk.
#[test]
fn rebuilt_layer_with_new_mtimes_adds_almost_nothing() {
    let files = collect_real_files(30 << 20);
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let total = copy_into(&files, &tree);
    let big_files = files
        .iter()
        .filter(|(p, _)| fs::metadata(p).unwrap().len() >= 16 << 10)
        .count();
    assert!(
        total >= 20 << 20 && big_files * 10 >= files.len() * 8,
        "this machine's /usr/bin and /usr/share gave only {total} bytes in {} files \
         ({big_files} of at least 16 KiB); the test needs 20 MiB or more",
        files.len()
    );

    for format in ["gnu", "posix"] {
        let touch_all = |when: &str| {
            run_ok(
                tool("find")
                    .arg(&tree)
                    .args(["-exec", "touch", "-h", "-d", when, "{}", "+"]),
            );
        };
        touch_all("2020-01-01 00:00:00");
        let fmt = format!("--format={format}");
        let tar1 = gnu_tar_create(&tree, &dir.path().join("v1.tar"), &[&fmt]);
        touch_all("2024-06-30 12:34:56");
        let tar2 = gnu_tar_create(&tree, &dir.path().join("v2.tar"), &[&fmt]);
        assert_ne!(
            Digest::of(&tar1),
            Digest::of(&tar2),
            "{format}: rebuild changed nothing"
        );
        assert_eq!(
            tar1.len(),
            tar2.len(),
            "{format}: only metadata should differ"
        );
        let gz1 = gzip(&tar1);
        let gz2 = gzip(&tar2);

        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path().join("store")).unwrap();
        let first = put_and_check(&store, &gz1, &tar1, Compression::Gzip, "original layer");
        let second = put_and_check(&store, &gz2, &tar2, Compression::Gzip, "rebuilt layer");
        assert!(second.new_layer);
        let limit = gz2.len() as u64 / 50;
        assert!(
            second.added_bytes < limit,
            "{format}: rebuilt layer added {} bytes, limit is 2% of its {} gzip bytes = {limit} \
             (the original added {})",
            second.added_bytes,
            gz2.len(),
            first.added_bytes
        );
        assert!(
            first.added_bytes > 20 * second.added_bytes.max(1),
            "{format}: the original stored only {} bytes",
            first.added_bytes
        );
        assert_eq!(
            second.new_chunks, 0,
            "{format}: every file payload of the rebuilt layer was already stored"
        );
        assert_eq!(
            second.chunks, first.chunks,
            "{format}: same payloads, same chunks"
        );
    }
}

/// (c) Putting the same layer again adds nothing: no pack bytes, no chunk,
/// no layer; and the same content as another compressed blob only adds an
/// alias.
#[test]
fn same_layer_twice_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(&dir.path().join("tree"), 99);
    let tar = gnu_tar_create(&tree.root, &dir.path().join("l.tar"), &["--sparse"]);
    let gz = gzip(&tar);
    let store = Store::open(dir.path().join("store")).unwrap();

    let first = put_and_check(&store, &gz, &tar, Compression::Gzip, "first put");
    assert!(first.new_layer && first.added_bytes > 0 && first.new_chunks > 0);
    let before = store.stats().unwrap();

    let mut before = before;
    for (label, input, compression) in [
        ("same gzip blob again", gz.clone(), Compression::Gzip),
        ("same layer as plain tar", tar.clone(), Compression::None),
        ("same layer as zstd", zstd(&tar), Compression::Zstd),
    ] {
        let again = put_and_check(&store, &input, &tar, compression, label);
        assert!(!again.new_layer, "{label}: new_layer");
        assert_eq!(again.new_chunks, 0, "{label}: new_chunks");
        assert_eq!(again.chunks, first.chunks, "{label}: chunks");
        let after = store.stats().unwrap();
        // A compressed blob the store has not seen costs only what
        // rebuilds it exactly: for a zstd blob, one small blob frame.
        let new_blob = label == "same layer as zstd";
        let allowed = if new_blob { 1024 } else { 0 };
        assert!(
            again.added_bytes <= allowed,
            "{label}: added {} bytes, allowed {allowed}",
            again.added_bytes
        );
        assert_eq!(
            after.pack_bytes - before.pack_bytes,
            again.added_bytes,
            "{label}: pack_bytes"
        );
        assert_eq!(
            after.packs,
            before.packs + u64::from(new_blob),
            "{label}: packs"
        );
        assert_eq!(after.chunks, before.chunks, "{label}: chunks in store");
        assert_eq!(after.layers, 1, "{label}: layers");
        assert_eq!(
            after.logical_bytes, before.logical_bytes,
            "{label}: logical_bytes"
        );
        assert!(
            after.stored_bytes.abs_diff(before.stored_bytes) <= 64 * 1024,
            "{label}: stored_bytes went from {} to {} (only index noise is allowed)",
            before.stored_bytes,
            after.stored_bytes
        );
        before = after;
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.aliases, 2, "gzip and zstd blobs are both recorded");
    assert_eq!(store.layers().unwrap().len(), 1);
}

/// A layer whose chunks all come from 80 earlier layers (80 packs and
/// frames), referenced forwards, backwards and twice: it stores only its
/// recipe, and reads back exact across many frames.
#[test]
fn layer_assembled_from_many_earlier_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let files: Vec<Vec<u8>> = (0..80)
        .map(|i| random_bytes(700 + i, 20_000 + 997 * i as usize))
        .collect();
    for (i, data) in files.iter().enumerate() {
        let tar = tar_layer(&[(format!("f{i}"), data)]);
        put_and_check(
            &store,
            &tar,
            &tar,
            Compression::None,
            &format!("small layer {i}"),
        );
    }
    assert!(store.stats().unwrap().packs >= 80);

    let mut b = tar::Builder::new(Vec::new());
    let order: Vec<usize> = (0..80)
        .chain((0..80).rev())
        .chain((0..80).step_by(7))
        .collect();
    for (n, &i) in order.iter().enumerate() {
        let mut h = tar::Header::new_ustar();
        h.set_size(files[i].len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, format!("all/{n}_{i}"), &files[i][..])
            .unwrap();
    }
    let big = b.into_inner().unwrap();
    let expected_chunks: u64 = order.iter().map(|&i| payload_chunks(&files[i])).sum();
    let pack_bytes = store.stats().unwrap().pack_bytes;
    let info = put_and_check(
        &store,
        &gzip(&big),
        &big,
        Compression::Gzip,
        "assembled layer",
    );
    assert_eq!(info.chunks, expected_chunks);
    assert_eq!(
        info.new_chunks, 0,
        "every chunk was stored by an earlier layer"
    );
    let grown = store.stats().unwrap().pack_bytes - pack_bytes;
    assert_eq!(grown, info.added_bytes);
    assert!(
        grown < 16 * 1024,
        "assembled layer added {grown} bytes (only its recipe is new)"
    );
}

/// Puts running at the same time, sharing a file: all succeed, each layer
/// comes back exact, and the store holds each distinct chunk once.
#[test]
fn concurrent_puts_of_overlapping_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let shared = random_bytes(800, 2 << 20);
    let tars: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            tar_layer(&[
                (format!("layer{i}/own"), random_bytes(810 + i, 300_000)),
                (format!("layer{i}/shared"), shared.clone()),
            ])
        })
        .collect();
    std::thread::scope(|s| {
        for (i, tar) in tars.iter().enumerate() {
            let store = store.clone();
            s.spawn(move || {
                let input = if i % 2 == 0 { tar.clone() } else { zstd(tar) };
                let c = if i % 2 == 0 {
                    Compression::None
                } else {
                    Compression::Zstd
                };
                put_and_check(&store, &input, tar, c, &format!("concurrent put {i}"));
            });
        }
    });
    for tar in &tars {
        let mut back = Vec::new();
        store.get_layer(&Digest::of(tar), &mut back).unwrap();
        assert_same_bytes(&back, tar, "layer put concurrently");
    }
    let own_chunks: u64 = (0..4)
        .map(|i| payload_chunks(&random_bytes(810 + i, 300_000)))
        .sum();
    let stats = store.stats().unwrap();
    assert_eq!(stats.layers, 4);
    assert_eq!(
        stats.chunks,
        payload_chunks(&shared) + own_chunks,
        "distinct chunks"
    );
}

/// The splitter follows a PAX `size` record that overrides the header's
/// size, and a hard link header with a size field but no data: payloads
/// after them are chunked on their own and deduplicate.
#[test]
fn pax_size_record_and_sized_hardlink_are_followed() {
    let d1 = random_bytes(900, 70_000);
    let d2 = random_bytes(901, 150_000);
    let header = |name: &str, size: u64, kind: tar::EntryType, link: Option<&str>| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(kind);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        h.as_bytes().to_vec()
    };
    let pad = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(512) * 512, 0);

    let mut x = Vec::new();
    let record = b"14 size=70000\n";
    x.extend_from_slice(&header(
        "PaxHeaders/d1",
        record.len() as u64,
        tar::EntryType::XHeader,
        None,
    ));
    x.extend_from_slice(record);
    pad(&mut x);
    x.extend_from_slice(&header("d1", 0, tar::EntryType::Regular, None));
    x.extend_from_slice(&d1);
    pad(&mut x);
    x.extend_from_slice(&header("link", 5_000, tar::EntryType::Link, Some("d1")));
    x.extend_from_slice(&header(
        "d2",
        d2.len() as u64,
        tar::EntryType::Regular,
        None,
    ));
    x.extend_from_slice(&d2);
    pad(&mut x);
    x.extend_from_slice(&[0; 1024]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.tar");
    fs::write(&path, &x).unwrap();
    assert_eq!(
        tar_list(&path),
        vec!["d1", "link", "d2"],
        "GNU tar reads the crafted archive"
    );

    let store = Store::open(dir.path().join("store")).unwrap();
    put_and_check(&store, &x, &x, Compression::None, "crafted archive");
    let y = tar_layer(&[("y/d2", &d2), ("y/d1", &d1)]);
    let info = put_and_check(
        &store,
        &y,
        &y,
        Compression::None,
        "same files, plain headers",
    );
    assert_eq!(info.chunks, payload_chunks(&d1) + payload_chunks(&d2));
    assert_eq!(
        info.new_chunks, 0,
        "payloads after PAX size / sized link were mis-split"
    );
}
