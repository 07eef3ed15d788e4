//! Directory trees compared as listings: relative path -> type, mode
//! (optionally owner) and content hash or symlink target.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::bytes::sha;

/// What a tree holds, with owners (`uid:gid`) when `owners`.
pub fn listing_of(root: &Path, owners: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let mut head = format!("{:o}", meta.mode() & 0o7777);
        if owners {
            head += &format!(" {}:{}", meta.uid(), meta.gid());
        }
        let what = if ft.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
            format!("dir {head}")
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs::read_link(&path).unwrap().display())
        } else if ft.is_file() {
            format!("file {head} {}", sha(&fs::read(&path).unwrap()))
        } else {
            format!("other {head}")
        };
        out.insert(format!("/{}", rel.display()), what);
    }
    out
}

/// What a tree holds: type, mode, content or symlink target per path.
pub fn listing(root: &Path) -> BTreeMap<String, String> {
    listing_of(root, false)
}

fn assert_same_listing(a: &Path, b: &Path, what: &str, owners: bool) {
    let (la, lb) = (listing_of(a, owners), listing_of(b, owners));
    if la == lb {
        return;
    }
    let mut report = String::new();
    for (k, v) in &la {
        match lb.get(k) {
            None => report += &format!("  only in {}: {k} {v}\n", a.display()),
            Some(w) if w != v => report += &format!("  {k}: {v} vs {w}\n"),
            _ => {}
        }
    }
    for (k, v) in &lb {
        if !la.contains_key(k) {
            report += &format!("  only in {}: {k} {v}\n", b.display());
        }
    }
    panic!("{what}: trees differ:\n{report}");
}

/// Trees `a` and `b` hold the same paths, types, modes and contents.
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path, what: &str) {
    assert_same_listing(a, b, what, false);
}

/// [`assert_same_tree`], owners included.
#[track_caller]
pub fn assert_same_tree_with_owners(a: &Path, b: &Path, what: &str) {
    assert_same_listing(a, b, what, true);
}
