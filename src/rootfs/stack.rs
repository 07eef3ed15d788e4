//! A stack of overlay layer directories read the way overlayfs merges them,
//! without mounting: the top-most entry of a path wins, a whiteout (a 0/0
//! character device) hides the path below, a non-directory ends the merge,
//! and an opaque directory (`trusted.overlay.opaque=y`) hides what lower
//! layers hold in it. Used for what an image shows at a path (container
//! diff and commit read a container's upper directory against it) and for
//! what a snapshot inherits from the layers below it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::rootfs::fsops::path_under;

/// The overlay xattr that makes a directory hide lower layers' content.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Is this entry an overlay whiteout?
pub(crate) fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Is the directory at `path` opaque?
pub(crate) fn is_opaque(path: &Path) -> bool {
    let mut value = [0u8; 4];
    matches!(rustix::fs::lgetxattr(path, OPAQUE_XATTR, &mut value[..]), Ok(1) if value[0] == b'y')
}

fn lstat(path: &Path) -> io::Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Layer directories, top first.
pub(crate) struct LayerStack {
    roots: Vec<PathBuf>,
}

/// What the stack shows at a path.
pub(crate) struct Shown {
    /// The real path of the top-most entry.
    pub path: PathBuf,
    /// Its metadata (never following a symlink).
    pub meta: Metadata,
}

impl LayerStack {
    /// A stack of `roots`, top first.
    pub(crate) fn new(roots: Vec<PathBuf>) -> LayerStack {
        LayerStack { roots }
    }

    /// The layers (indices, top first) whose directory `rel` takes part in
    /// the merged directory `rel`; None if `rel` is not a directory there.
    fn merged_dir(&self, rel: &[u8]) -> io::Result<Option<Vec<usize>>> {
        let mut layers: Vec<usize> = (0..self.roots.len()).collect();
        if rel.is_empty() {
            return Ok(Some(layers));
        }
        let mut prefix: Vec<u8> = Vec::new();
        for comp in rel.split(|&b| b == b'/') {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(comp);
            let mut next = Vec::new();
            for &i in &layers {
                let path = path_under(&self.roots[i], &prefix);
                let Some(meta) = lstat(&path)? else {
                    continue;
                };
                if is_whiteout(&meta) || !meta.is_dir() {
                    break;
                }
                next.push(i);
                if is_opaque(&path) {
                    break;
                }
            }
            if next.is_empty() {
                return Ok(None);
            }
            layers = next;
        }
        Ok(Some(layers))
    }

    /// What the stack shows at `rel` (`a/b`, the root is empty), if anything.
    pub(crate) fn lookup(&self, rel: &[u8]) -> io::Result<Option<Shown>> {
        if rel.is_empty() {
            return match self.roots.first() {
                Some(root) => Ok(lstat(root)?.map(|meta| Shown {
                    path: root.clone(),
                    meta,
                })),
                None => Ok(None),
            };
        }
        let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&rel[..0], rel),
        };
        let Some(layers) = self.merged_dir(parent)? else {
            return Ok(None);
        };
        for i in layers {
            let path = path_under(&self.roots[i], parent).join(OsStr::from_bytes(name));
            if let Some(meta) = lstat(&path)? {
                if is_whiteout(&meta) {
                    return Ok(None);
                }
                return Ok(Some(Shown { path, meta }));
            }
        }
        Ok(None)
    }

    /// The names the stack shows in directory `rel`, with what is there.
    pub(crate) fn children(&self, rel: &[u8]) -> io::Result<Vec<(Vec<u8>, Shown)>> {
        let Some(layers) = self.merged_dir(rel)? else {
            return Ok(Vec::new());
        };
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut out = Vec::new();
        for i in layers {
            let dir = path_under(&self.roots[i], rel);
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().as_bytes().to_vec();
                if !seen.insert(name.clone()) {
                    continue;
                }
                let path = entry.path();
                let meta = fs::symlink_metadata(&path)?;
                if !is_whiteout(&meta) {
                    out.push((name, Shown { path, meta }));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
