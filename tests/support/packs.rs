//! Pack files: what STORE/packs holds (names, sizes, temporary leftovers)
//! and the one walker of a pack's frames, written from the documented
//! format (src/pack.rs), not from layerstore's own reader.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The names in directory `dir` (none if it does not exist).
pub fn dir_names(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
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

/// File names in STORE/packs (temporary files included).
pub fn pack_files(store: &Path) -> BTreeSet<String> {
    dir_names(&store.join("packs"))
}

/// Every file and directory under STORE/packs, recursively, as (path
/// relative to STORE, size).
pub fn pack_tree(store: &Path) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![store.join("packs")];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read packs directory") {
            let path = e.expect("dir entry").path();
            let meta = fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let rel = path.strip_prefix(store).expect("under the store");
            out.insert((rel.display().to_string(), meta.len()));
        }
    }
    out
}

/// Files under `dir` (recursively) whose names end with `.tmp`.
pub fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(tmp_files(&p));
            } else if p.to_string_lossy().ends_with(".tmp") {
                out.push(p);
            }
        }
    }
    out
}

/// One frame of a pack.
#[derive(Clone, Debug)]
pub struct PackFrame {
    pub offset: usize,
    /// 1: chunk frame; 2: recipe frame; 3: blob frame.
    pub kind: u8,
    /// 0: stored as is; 1: zstd.
    pub codec: u8,
    pub entries: usize,
    pub payload_start: usize,
    pub payload_len: usize,
}

/// Walks a pack image: a 16-byte pack header, then frames of
/// `"LSFR" kind:u8 codec:u8 reserved:u16 entries:u32 raw_len:u64
/// stored_len:u64`, a table of `entries` x 36 bytes (chunk frames), one
/// 40-byte entry (recipe frames) or one 80-byte entry (blob frames), a
/// 16-byte check, and the payload. Asserts
/// the magics and that the frames end exactly at the end of the pack.
pub fn pack_frames(pack: &[u8]) -> Vec<PackFrame> {
    assert_eq!(&pack[..8], b"LSPACK\0\0", "pack magic");
    let u32_at = |o: usize| u32::from_le_bytes(pack[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(pack[o..o + 8].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let mut off = 16;
    while off < pack.len() {
        assert_eq!(&pack[off..off + 4], b"LSFR", "frame magic at {off}");
        let kind = pack[off + 4];
        let codec = pack[off + 5];
        let entries = u32_at(off + 8);
        let stored = u64_at(off + 20);
        let table = match kind {
            1 => entries * 36,
            2 => 40,
            3 => 80,
            k => panic!("unknown frame kind {k} at {off}"),
        };
        let payload_start = off + 28 + table + 16;
        out.push(PackFrame {
            offset: off,
            kind,
            codec,
            entries,
            payload_start,
            payload_len: stored,
        });
        off = payload_start + stored;
    }
    assert_eq!(off, pack.len(), "frames end at the end of the pack");
    out
}
