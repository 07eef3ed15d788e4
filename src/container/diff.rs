//! Diff: a container's directory compared with the in-memory tree of its
//! image (type, mode, owner, symlink target, BLAKE3 of contents), so no
//! second copy of the image is needed on disk.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, OFlags};

use super::{Change, ChangeKind, not_found, rootfs};
use crate::error::{Error, IoContext, Result};
use crate::rootfs::entry;
use crate::rootfs::fsops::path_under;
use crate::rootfs::tree::{Node, NodeKind, Tree, children, parent_of};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::ContainerRow;

/// A path of a container's directory.
pub(super) struct FsEntry {
    pub(super) node: Node,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) nlink: u64,
    pub(super) mtime: i64,
}

pub(super) fn os_path(rel: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(rel))
}

/// Walks a container's root (never following symlinks). File nodes carry
/// no hash yet (all zero); see [`file_hash`].
fn scan(root: &Path) -> Result<BTreeMap<Vec<u8>, FsEntry>> {
    // The root itself must be a real directory: `root.join("")` would end
    // in a slash, and a trailing slash follows a symlink put in its place.
    let root_meta = fs::symlink_metadata(root).context(|| format!("reading {}", root.display()))?;
    if !root_meta.is_dir() {
        return Err(Error::invalid(
            root.display().to_string(),
            "the container's root filesystem is not a directory (replaced by a symlink?); \
             refusing to read through it",
        ));
    }
    let mut out = BTreeMap::new();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let path = path_under(root, &rel);
        let meta = fs::symlink_metadata(&path).context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            for entry in fs::read_dir(&path).context(|| format!("listing {}", path.display()))? {
                let entry = entry.context(|| format!("listing {}", path.display()))?;
                stack.push(entry::join(&rel, entry.file_name().as_bytes()));
            }
        }
        // Sockets cannot be put in a layer.
        if let Some(node) = node_of(&path, &meta)? {
            out.insert(rel, fs_entry(node, &meta));
        }
    }
    Ok(out)
}

/// The node of what is at `path` (`meta`: its `lstat`); None for a socket.
/// File nodes carry no hash (all zero).
pub(super) fn node_of(path: &Path, meta: &fs::Metadata) -> Result<Option<Node>> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() {
        NodeKind::File {
            size: meta.len(),
            hash: [0; 32],
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(path).context(|| format!("reading {}", path.display()))?;
        NodeKind::Symlink(target.as_os_str().as_bytes().to_vec())
    } else if ft.is_char_device() {
        NodeKind::Char(rfs::major(meta.rdev()), rfs::minor(meta.rdev()))
    } else if ft.is_block_device() {
        NodeKind::Block(rfs::major(meta.rdev()), rfs::minor(meta.rdev()))
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else {
        return Ok(None);
    };
    Ok(Some(Node {
        kind,
        mode: meta.mode() & 0o7777,
        uid: u64::from(meta.uid()),
        gid: u64::from(meta.gid()),
    }))
}

/// A container's entry from its node and `lstat`.
pub(super) fn fs_entry(node: Node, meta: &fs::Metadata) -> FsEntry {
    FsEntry {
        node,
        dev: meta.dev(),
        ino: meta.ino(),
        nlink: meta.nlink(),
        mtime: meta.mtime(),
    }
}

pub(super) fn open_nofollow(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn file_hash(path: &Path) -> Result<[u8; 32]> {
    let mut file = open_nofollow(path).context(|| format!("opening {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    io::copy(&mut file, &mut hasher).context(|| format!("reading {}", path.display()))?;
    Ok(*hasher.finalize().as_bytes())
}

/// Does the container's entry differ from the image's?
pub(super) fn differs(
    root: &Path,
    rel: &[u8],
    image: &Node,
    fs_node: &Node,
    owners: bool,
) -> Result<bool> {
    if image.mode != fs_node.mode
        || (owners && (image.uid, image.gid) != (fs_node.uid, fs_node.gid))
    {
        return Ok(true);
    }
    Ok(match (&image.kind, &fs_node.kind) {
        (NodeKind::File { size: a, hash }, NodeKind::File { size: b, .. }) => {
            a != b || file_hash(&root.join(os_path(rel)))? != *hash
        }
        (a, b) => a != b,
    })
}

/// The comparison of a container with its image.
pub(super) struct Comparison {
    pub(super) root: PathBuf,
    pub(super) owners: bool,
    pub(super) image: Tree,
    pub(super) fs: BTreeMap<Vec<u8>, FsEntry>,
    /// Paths of the container that differ from (or are not in) the image.
    pub(super) differ: HashSet<Vec<u8>>,
}

pub(super) fn compare(store: &Store, name: &str) -> Result<(ContainerRow, Comparison)> {
    let index = store.index()?;
    let row = index.container(name)?.ok_or_else(|| not_found(name))?;
    if row.sharing == super::overlay::OVERLAY {
        drop(index);
        let cmp = super::overlay::compare_upper(store, &row)?;
        return Ok((row, cmp));
    }
    let record = index.manifest(&row.manifest)?.ok_or_else(|| {
        Error::corrupt(format!(
            "manifest {} of container {name:?} is not stored",
            row.manifest
        ))
    })?;
    drop(index);
    let layers: Vec<Digest> = record.layers.iter().map(|l| l.diff_id).collect();
    let image = Tree::of_layers(store, &layers, row.owners)?;
    let root = rootfs(store, &row.id);
    let fs_map = scan(&root)?;
    let mut differ = HashSet::new();
    for (rel, entry) in &fs_map {
        if rel.is_empty() {
            continue;
        }
        let changed = match image.nodes.get(rel) {
            None => true,
            Some(node) => differs(&root, rel, node, &entry.node, row.owners)?,
        };
        if changed {
            differ.insert(rel.clone());
        }
    }
    Ok((
        row.clone(),
        Comparison {
            root,
            owners: row.owners,
            image,
            fs: fs_map,
            differ,
        },
    ))
}

pub(super) fn slash(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

impl Comparison {
    /// Image paths gone from the container whose parent directory is still
    /// there as a directory (deeper ones go with their parent).
    pub(super) fn deleted(&self) -> Vec<Vec<u8>> {
        self.image
            .nodes
            .keys()
            .filter(|rel| !rel.is_empty() && !self.fs.contains_key(*rel))
            .filter(|rel| {
                let parent = parent_of(rel);
                matches!(self.fs.get(parent), Some(e) if e.node.kind == NodeKind::Dir)
                    && matches!(self.image.nodes.get(parent), Some(n) if n.kind == NodeKind::Dir)
            })
            .cloned()
            .collect()
    }

    pub(super) fn changes(&self) -> Vec<Change> {
        let mut out: Vec<(Vec<u8>, ChangeKind)> = self
            .differ
            .iter()
            .map(|rel| {
                let kind = if self.image.nodes.contains_key(rel) {
                    ChangeKind::Changed
                } else {
                    ChangeKind::Added
                };
                (rel.clone(), kind)
            })
            .collect();
        out.extend(
            self.deleted()
                .into_iter()
                .map(|rel| (rel, ChangeKind::Deleted)),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter()
            .map(|(rel, kind)| Change {
                path: slash(&rel),
                kind,
            })
            .collect()
    }

    /// A directory in both whose image content is entirely gone and which
    /// holds new content: one opaque marker then says it all (an emptied
    /// directory gets plain whiteouts).
    pub(super) fn wholly_replaced(&self, rel: &[u8]) -> bool {
        let mut lower = children(&self.image.nodes, rel).peekable();
        lower.peek().is_some()
            && lower.all(|(k, _)| !self.fs.contains_key(k))
            && children(&self.fs, rel).next().is_some()
    }
}

pub(super) fn diff(store: &Store, name: &str) -> Result<Vec<Change>> {
    Ok(compare(store, name)?.1.changes())
}

// ---------------------------------------------------------------- commit
