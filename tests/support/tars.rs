//! Tar archives: written files and generated trees (with every kind of
//! member tar can hold), archives made by GNU tar and by the tar crate, and
//! a minimal walker for well-formed archives (to find members, padding and
//! format features; the store itself is what is under test).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::rng::{partly_repetitive, random_bytes, text_bytes};
use super::tools::{command_line, gnu_tar, run_ok, tool};

// ---------------------------------------------------------------------------
// Files and generated trees
// ---------------------------------------------------------------------------

/// Writes `files` (path, content) under `root`, creating directories.
pub fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, content) in files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&path, content).expect("write file");
    }
}

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
    let w = |rel: &str, data: &[u8]| write_tree(root, &[(rel, data)]);
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

// ---------------------------------------------------------------------------
// GNU tar
// ---------------------------------------------------------------------------

/// `tar ARGS --sort=name -cf ARCHIVE -C TREE .`
fn gnu_tar_cf(tree: &Path, archive: &Path, args: &[&str]) -> Command {
    let mut cmd = gnu_tar();
    cmd.args(args)
        .args(["--sort=name", "-cf"])
        .arg(archive)
        .arg("-C")
        .arg(tree)
        .arg(".");
    cmd
}

/// Runs GNU tar with `args` on `tree` into `archive`. Exit status 0 is
/// success; 1 (files changed) and 2 with only "member skipped" complaints
/// (names too long for the format, file types it cannot hold) are accepted,
/// because GNU tar still writes every other member. Anything else fails.
#[track_caller]
pub fn gnu_tar_create(tree: &Path, archive: &Path, args: &[&str]) -> Vec<u8> {
    let mut cmd = gnu_tar_cf(tree, archive, args);
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

/// A layer tar of `dir` made by GNU tar with deterministic headers (owner
/// and group 0, one mtime), written to `out`; exit status 0 is required.
/// Returns its bytes.
#[track_caller]
pub fn gnu_tar_layer(dir: &Path, out: &Path) -> Vec<u8> {
    run_ok(&mut gnu_tar_cf(
        dir,
        out,
        &[
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@1700000000",
        ],
    ));
    fs::read(out).unwrap_or_else(|e| panic!("reading {}: {e}", out.display()))
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
// Tars built with the tar crate
// ---------------------------------------------------------------------------

/// One entry of a tar archive built by [`tar_bytes`].
pub enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

/// A tar of `entries` in order, with fixed metadata (GNU headers, mode
/// 0644, owner 0, one mtime), so the same entries always make the same
/// bytes.
pub fn tar_bytes(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::File(path, content) => {
                header.set_size(content.len() as u64);
                header.set_entry_type(tar::EntryType::Regular);
                builder
                    .append_data(&mut header, path, *content)
                    .expect("tar append");
            }
            Entry::Symlink(path, target) => {
                header.set_size(0);
                header.set_entry_type(tar::EntryType::Symlink);
                builder
                    .append_link(&mut header, path, target)
                    .expect("tar append link");
            }
        }
    }
    builder.into_inner().expect("tar finish")
}

/// Writes [`tar_bytes`] of `entries` to `out`.
pub fn write_tar(out: &Path, entries: &[Entry<'_>]) {
    fs::write(out, tar_bytes(entries)).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// A layer tar of regular files (name, content), in order, built in memory.
pub fn tar_layer<N: AsRef<str>, D: AsRef<[u8]>>(files: &[(N, D)]) -> Vec<u8> {
    let entries: Vec<Entry<'_>> = files
        .iter()
        .map(|(name, data)| Entry::File(name.as_ref(), data.as_ref()))
        .collect();
    tar_bytes(&entries)
}

/// Sets the checksum field of a 512-byte tar header block from its bytes.
pub fn set_header_checksum(block: &mut [u8]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block[..512].iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

// ---------------------------------------------------------------------------
// A minimal tar walker for well-formed archives
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
