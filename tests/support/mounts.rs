//! Overlay mounts in tests: a scratch directory that unmounts whatever a
//! test left mounted inside it before it is removed (a removal must never
//! walk into a container's merged root), and a probe of whether overlay
//! containers can be made here at all.

use std::ffi::OsStr;
use std::ops::Deref;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| {
            // mountinfo writes a space as \040 and so on.
            let mut out = Vec::new();
            let mut i = 0;
            while i < field.len() {
                match field.get(i..i + 4) {
                    Some([b'\\', a, b, c]) if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
                        out.push((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0'));
                        i += 4;
                    }
                    _ => {
                        out.push(field[i]);
                        i += 1;
                    }
                }
            }
            PathBuf::from(OsStr::from_bytes(&out))
        })
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// A temporary directory; mounts left inside it are detached on drop.
pub struct Scratch(pub TempDir);

impl Scratch {
    /// A new scratch directory named `prefix...` (under
    /// `$LAYERSTORE_TEST_DIR` when set).
    pub fn new(prefix: &str) -> Scratch {
        let mut b = tempfile::Builder::new();
        b.prefix(prefix);
        Scratch(match std::env::var_os("LAYERSTORE_TEST_DIR") {
            Some(dir) => b.tempdir_in(dir).unwrap(),
            None => b.tempdir().unwrap(),
        })
    }
}

impl Deref for Scratch {
    type Target = TempDir;
    fn deref(&self) -> &TempDir {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for mount in mounts_under(self.0.path()) {
            let _ = rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::DETACH);
        }
    }
}
