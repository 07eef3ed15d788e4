//! Helpers shared by the integration tests: a generated directory tree, a
//! tiny tar walker, round-trip checks through the library, and CLI
//! wrappers.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use layerstore::{Compression, Digest, LayerInfo, PutOptions, Store};

use crate::support::{
    Form, assert_same_bytes, command_line, gnu_tar, partly_repetitive, random_bytes, run_ok,
    text_bytes, tool,
};

/// The `layerstore` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_layerstore");

// ---------------------------------------------------------------------------
// Round trips through the library
// ---------------------------------------------------------------------------

/// Puts `input` (which decompresses to `tar`) into `store` and checks
/// everything a put and a get promise: the DiffID is the sha256 of the tar,
/// the compressed digest is the sha256 of the input, and a get by either
/// digest gives back exactly the tar.
#[track_caller]
pub fn put_and_check(
    store: &Store,
    input: &[u8],
    tar: &[u8],
    compression: Compression,
    label: &str,
) -> LayerInfo {
    let info = store
        .put_layer_with(
            input,
            &PutOptions {
                source_name: Some(label.to_string()),
                ..PutOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{label}: put failed: {e}"));
    let diff_id = Digest::of(tar);
    assert_eq!(
        info.digest, diff_id,
        "{label}: DiffID is not the sha256 of the tar"
    );
    assert_eq!(info.size, tar.len() as u64, "{label}: size");
    assert_eq!(info.input_size, input.len() as u64, "{label}: input_size");
    assert_eq!(
        info.compression, compression,
        "{label}: detected compression"
    );
    if compression == Compression::None {
        assert_eq!(
            info.compressed_digest, None,
            "{label}: plain tar has no compressed digest"
        );
    } else {
        assert_eq!(
            info.compressed_digest,
            Some(Digest::of(input)),
            "{label}: compressed_digest is not the sha256 of the compressed input"
        );
    }

    let mut back = Vec::new();
    let got = store
        .get_layer(&diff_id, &mut back)
        .unwrap_or_else(|e| panic!("{label}: get by DiffID failed: {e}"));
    assert_same_bytes(&back, tar, &format!("{label}: get by DiffID"));
    assert_eq!(got.digest, diff_id, "{label}: GetInfo.digest");
    assert_eq!(got.size, tar.len() as u64, "{label}: GetInfo.size");
    assert_eq!(
        got.via_alias, None,
        "{label}: GetInfo.via_alias for a DiffID"
    );

    if let Some(compressed) = info.compressed_digest {
        let mut back = Vec::new();
        let got = store
            .get_layer(&compressed, &mut back)
            .unwrap_or_else(|e| panic!("{label}: get by compressed digest failed: {e}"));
        assert_same_bytes(&back, tar, &format!("{label}: get by compressed digest"));
        assert_eq!(got.digest, diff_id, "{label}: GetInfo.digest via alias");
        assert_eq!(
            got.via_alias,
            Some(compressed),
            "{label}: GetInfo.via_alias"
        );
        let summary = store
            .layer(&compressed)
            .expect("layer by compressed digest");
        assert!(
            summary.compressed_digests.contains(&compressed),
            "{label}: layer summary does not list its compressed digest"
        );
    }
    let summary = store.layer(&diff_id).expect("layer summary");
    assert_eq!(summary.size, tar.len() as u64, "{label}: summary size");
    info
}

/// Round-trips `tar` in every [`Form`], each into a fresh store (so every
/// chunk of every form is really written and read back).
#[track_caller]
pub fn roundtrip_all_forms(tar: &[u8], label: &str) {
    for form in Form::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("store")).expect("open store");
        let input = form.encode(tar);
        let label = format!("{label} [{form:?}]");
        let info = put_and_check(&store, &input, tar, form.compression(), &label);
        assert!(
            info.new_layer,
            "{label}: first put into a fresh store must be a new layer"
        );
    }
}

/// Round-trips arbitrary bytes put as a plain "tar" into a fresh store.
#[track_caller]
pub fn roundtrip_plain(data: &[u8], label: &str) -> LayerInfo {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("open store");
    put_and_check(&store, data, data, Compression::None, label)
}

// ---------------------------------------------------------------------------
// A minimal tar walker for well-formed archives (to find members, padding
// and format features; the store itself is what is under test)
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct RawMember {
    /// Offset of the member's (last) header block.
    pub header_offset: usize,
    pub typeflag: u8,
    /// The size field.
    pub size: u64,
    /// Where the payload starts (after any old-GNU sparse extension blocks).
    pub data_offset: usize,
}

impl RawMember {
    pub fn data_end(&self) -> usize {
        self.data_offset + self.size as usize
    }
    pub fn padded_end(&self) -> usize {
        self.data_offset + (self.size as usize).div_ceil(512) * 512
    }
}

fn numeric_field(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x3f), |v, &b| (v << 8) | u64::from(b));
    }
    let text: String = field
        .iter()
        .map(|&b| b as char)
        .filter(|c| c.is_ascii_digit())
        .collect();
    u64::from_str_radix(if text.is_empty() { "0" } else { &text }, 8).expect("octal field")
}

/// Every header block of a well-formed archive, including PAX and GNU
/// long-name headers, up to the end-of-archive marker.
pub fn walk_tar(bytes: &[u8]) -> Vec<RawMember> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 512 <= bytes.len() {
        let h = &bytes[off..off + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let typeflag = h[156];
        let size = numeric_field(&h[124..136]);
        let mut data = off + 512;
        if typeflag == b'S' && h[482] != 0 {
            loop {
                let ext = &bytes[data..data + 512];
                data += 512;
                if ext[504] == 0 {
                    break;
                }
            }
        }
        let member = RawMember {
            header_offset: off,
            typeflag,
            size,
            data_offset: data,
        };
        off = member.padded_end();
        out.push(member);
    }
    out
}

/// Names listed by `tar -tf` (GNU tar understands every format).
pub fn tar_list(archive: &Path) -> Vec<String> {
    let out = run_ok(gnu_tar().arg("-tf").arg(archive));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// A directory tree with every kind of member tar can hold
// ---------------------------------------------------------------------------

/// Paths in the generated tree, relative to its root.
pub struct Tree {
    pub root: PathBuf,
    /// Longer than 100 bytes but splittable into ustar prefix + name.
    pub long_ustar_path: String,
    /// Longer than 255 bytes: only GNU and PAX can store it.
    pub very_long_path: String,
    pub sparse_files: Vec<String>,
    /// Every regular, non-sparse file (hard links included), relative.
    pub regular_files: Vec<String>,
}

fn write_sparse(path: &Path, size: u64, regions: &[(u64, Vec<u8>)]) {
    run_ok(tool("truncate").arg("-s").arg(size.to_string()).arg(path));
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open sparse file");
    for (offset, data) in regions {
        f.write_all_at(data, *offset)
            .expect("write into sparse file");
    }
    assert_eq!(f.metadata().expect("stat").len(), size, "sparse file size");
}

/// Builds the tree under `root`: regular files of many sizes (empty, tiny,
/// block-boundary sizes, a few hundred KB, 3 MB partly repetitive), long
/// names, hard links (also with long names), symlinks (also dangling and
/// with long targets), a FIFO, nested and empty directories, non-ASCII
/// names, and sparse files (many regions, ending in data or in a hole,
/// all hole).
pub fn make_tree(root: &Path, seed: u64) -> Tree {
    fs::create_dir_all(root).expect("mkdir tree");
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&p, data).expect("write file");
    };
    w("empty", b"");
    w("tiny.txt", b"hello, layer\n");
    for (i, n) in [1usize, 100, 511, 512, 513, 1023, 1024, 10_240, 65_543]
        .into_iter()
        .enumerate()
    {
        w(
            &format!("sizes/file_{n}"),
            &random_bytes(seed + i as u64, n),
        );
    }
    w("medium.bin", &random_bytes(seed + 100, 300_000));
    w("medium.txt", &text_bytes(seed + 101, 420_000));
    w("copy_of_medium.bin", &random_bytes(seed + 100, 300_000));
    w("big.bin", &partly_repetitive(seed + 102, 3 << 20));
    w("a/b/c/d/e/f/deep.txt", &text_bytes(seed + 103, 5_000));
    fs::create_dir_all(root.join("empty_dir")).expect("mkdir");
    w(
        "with space & ünïcødé 名前.txt",
        &text_bytes(seed + 104, 2_000),
    );
    let exe = root.join("script.sh");
    fs::write(&exe, b"#!/bin/sh\necho hi\n").expect("write");
    run_ok(tool("chmod").arg("755").arg(&exe));

    let long_ustar_path = format!(
        "long_dir_{}/long_file_{}.txt",
        "p".repeat(80),
        "q".repeat(70)
    );
    w(&long_ustar_path, &text_bytes(seed + 105, 3_000));
    let very_long_path = format!(
        "d{}/e{}/f{}.bin",
        "a".repeat(119),
        "b".repeat(119),
        "c".repeat(119)
    );
    assert!(very_long_path.len() > 255);
    w(&very_long_path, &random_bytes(seed + 106, 40_000));

    let link = |target: &str, name: &str| {
        fs::hard_link(root.join(target), root.join(name)).expect("hard link");
    };
    link("medium.bin", "hardlink_to_medium.bin");
    link(&very_long_path, &format!("hardlink_{}", "h".repeat(110)));
    let sym = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, root.join(name)).expect("symlink");
    };
    sym("tiny.txt", "symlink_to_tiny");
    sym("does/not/exist", "dangling_symlink");
    sym(&very_long_path, "symlink_with_long_target");
    sym("a/b/c", "symlink_to_dir");

    run_ok(tool("mkfifo").arg(root.join("fifo")));

    // Sparse files: 40 data regions (more than the 4 + 21 of one old-GNU
    // header and extension block), regions that end in data, one that ends
    // in a hole, and one that is all hole.
    let many: Vec<(u64, Vec<u8>)> = (0..40u64)
        .map(|i| {
            (
                i * 300_000 + 4096,
                random_bytes(seed + 200 + i, 2_000 + 97 * i as usize),
            )
        })
        .collect();
    write_sparse(&root.join("sparse_many"), 12_000_000, &many);
    write_sparse(
        &root.join("sparse_data_end"),
        6 << 20,
        &[
            (0, random_bytes(seed + 300, 200_000)),
            (2 << 20, text_bytes(seed + 301, 200_000)),
            ((6 << 20) - 200_000, random_bytes(seed + 302, 200_000)),
        ],
    );
    write_sparse(
        &root.join("sparse_hole_end"),
        4 << 20,
        &[(1 << 20, random_bytes(seed + 303, 70_000))],
    );
    write_sparse(&root.join("sparse_all_hole"), 2 << 20, &[]);
    let mut regular_files = Vec::new();
    collect_regular(root, root, &mut regular_files);
    regular_files.retain(|f| !f.starts_with("sparse_"));
    regular_files.sort();
    Tree {
        root: root.to_path_buf(),
        long_ustar_path,
        very_long_path,
        sparse_files: vec![
            "sparse_many".into(),
            "sparse_data_end".into(),
            "sparse_hole_end".into(),
            "sparse_all_hole".into(),
        ],
        regular_files,
    }
}

fn collect_regular(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("read tree") {
        let path = entry.expect("dir entry").path();
        let meta = fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            collect_regular(root, &path, out);
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(rel.to_str().expect("utf-8 name").to_string());
        }
    }
}

/// Runs GNU tar with `args` on `tree` into `archive`. Exit status 0 is
/// success; 1 (files changed) and 2 with only "member skipped" complaints
/// (names too long for the format, file types it cannot hold) are accepted,
/// because GNU tar still writes every other member. Anything else fails.
#[track_caller]
pub fn gnu_tar_create(tree: &Path, archive: &Path, args: &[&str]) -> Vec<u8> {
    let mut cmd = gnu_tar();
    cmd.args(args)
        .args(["--sort=name", "-cf"])
        .arg(archive)
        .arg("-C")
        .arg(tree)
        .arg(".");
    let what = command_line(&cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    let only_skips = stderr.lines().all(|l| {
        l.contains("not dumped")
            || l.contains("file ignored")
            || l.contains("Exiting with failure status due to previous errors")
    });
    assert!(
        matches!(code, Some(0) | Some(1)) || (code == Some(2) && only_skips),
        "{what} failed ({}) with unexpected complaints:\n{stderr}",
        out.status
    );
    fs::read(archive).unwrap_or_else(|e| panic!("{what} wrote no archive: {e}"))
}

// ---------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------

/// `layerstore --store STORE` with no store chosen through the environment.
pub fn cli(store: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--store")
        .arg(store)
        .env_remove("LAYERSTORE_DIR")
        .env_remove("XDG_DATA_HOME");
    cmd
}

/// Runs the CLI with `args`, stdin closed.
pub fn cli_run(store: &Path, args: &[&str]) -> Output {
    cli(store)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running layerstore")
}

/// Runs the CLI and asserts success; returns stdout.
#[track_caller]
pub fn cli_ok(store: &Path, args: &[&str]) -> Vec<u8> {
    let out = cli_run(store, args);
    assert!(
        out.status.success(),
        "layerstore {args:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Asserts a CLI failure the documented way: exit code 1 and a message on
/// stderr starting `layerstore: error:`. Returns stderr and stdout.
#[track_caller]
pub fn expect_cli_error(out: &Output, what: &str) -> (String, Vec<u8>) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit code 1, got {} (stderr: {stderr})",
        out.status
    );
    assert!(
        stderr.starts_with("layerstore: error:"),
        "{what}: stderr does not start with `layerstore: error:`: {stderr:?}"
    );
    (stderr, out.stdout.clone())
}

/// The DiffID printed on the first line of `put`'s text output.
#[track_caller]
pub fn first_line_digest(stdout: &[u8]) -> Digest {
    let text = String::from_utf8_lossy(stdout);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.len() == 71 && first.starts_with("sha256:"),
        "put's first line is not a sha256 digest: {first:?}"
    );
    Digest::parse(first).expect("digest on put's first line")
}

/// `stat --json`, parsed.
pub fn stat_json(store: &Path) -> serde_json::Value {
    serde_json::from_slice(&cli_ok(store, &["stat", "--json"])).expect("stat --json is JSON")
}

/// `ls --json`, parsed.
pub fn ls_json(store: &Path) -> Vec<serde_json::Value> {
    serde_json::from_slice(&cli_ok(store, &["ls", "--json"])).expect("ls --json is a JSON array")
}

/// File names in STORE/packs (including temporary files).
pub fn pack_dir_listing(store: &Path) -> BTreeSet<String> {
    match fs::read_dir(store.join("packs")) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// What must not change when a command fails.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub layers: u64,
    pub pack_bytes: u64,
    pub chunks: u64,
    pub packs: u64,
    pub aliases: u64,
    pub pack_files: BTreeSet<String>,
    pub listing: Vec<String>,
}

pub fn snapshot(store: &Path) -> Snapshot {
    let s = stat_json(store);
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("stat --json lacks numeric {k}: {s}"))
    };
    Snapshot {
        layers: n("layers"),
        pack_bytes: n("pack_bytes"),
        chunks: n("chunks"),
        packs: n("packs"),
        aliases: n("aliases"),
        pack_files: pack_dir_listing(store),
        listing: ls_json(store)
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_string())
            .collect(),
    }
}

/// Puts `file` with `put --json` and returns the parsed object.
#[track_caller]
pub fn cli_put_json(store: &Path, file: &Path) -> serde_json::Value {
    let out = cli_ok(
        store,
        &["put", file.to_str().expect("utf-8 path"), "--json"],
    );
    serde_json::from_slice(&out).expect("put --json output is one JSON object")
}

/// `get DIGEST` to stdout, asserting success; returns the bytes.
#[track_caller]
pub fn cli_get(store: &Path, digest: &str) -> Vec<u8> {
    cli_ok(store, &["get", digest])
}
