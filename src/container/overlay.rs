//! Overlay containers: a container is an upper and a work directory over
//! its image's layer snapshots, mounted at its `rootfs`.
//!
//! ```text
//! STORE/containers/<id>/upper    everything the container changed
//! STORE/containers/<id>/work     overlay's work directory
//! STORE/containers/<id>/rootfs   the merged root (a mount point)
//! ```
//!
//! Diff and commit read the upper directory against the snapshots below
//! it (see `rootfs::stack`): their cost follows the change, not the image,
//! and their results are those of a full comparison, because every path
//! the container touched is in the upper directory and overlay whiteouts
//! and opaque directories say exactly what it deleted.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::diff::{Comparison, FsEntry, differs, fs_entry, node_of};
use crate::error::{Error, IoContext, Result};
use crate::rootfs::entry;
use crate::rootfs::fsops::path_under;
use crate::rootfs::overlay::{OverlaySpec, is_mount_point, mount_overlay, unmount_overlay};
use crate::rootfs::snapshot::{Snapshots, copy_dir_meta, ensure_snapshots};
use crate::rootfs::stack::{LayerStack, Shown, is_opaque, is_whiteout};
use crate::rootfs::tree::{Node, NodeKind, Tree};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::ContainerRow;

/// The scheme name recorded for overlay containers.
pub(super) const OVERLAY: &str = "overlay";

pub(super) fn upper_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("upper")
}

fn work_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("work")
}

/// Lays out a new overlay container in `dir` (its temporary directory):
/// an upper directory with the image root's metadata (overlay shows the
/// upper root's), a work directory, and the mount point.
pub(super) fn prepare(dir: &Path, snapshots: &Snapshots) -> Result<()> {
    let upper = upper_dir(dir);
    let work = work_dir(dir);
    for d in [&upper, &work] {
        fs::create_dir(d).context(|| format!("creating {}", d.display()))?;
    }
    if let Some(top) = snapshots.roots.last() {
        copy_dir_meta(top, &upper)?;
    }
    crate::rootfs::prepare_empty_dir(&dir.join("rootfs"))
}

fn layers_of(store: &Store, row: &ContainerRow) -> Result<Vec<Digest>> {
    let record = store.index()?.manifest(&row.manifest)?.ok_or_else(|| {
        Error::corrupt(format!(
            "manifest {} of container {:?} is not stored",
            row.manifest, row.name
        ))
    })?;
    Ok(record.layers.iter().map(|l| l.diff_id).collect())
}

/// Mounts the container's root if it is not mounted (after a reboot or an
/// unmount), unpacking any snapshot that went missing. Returns the root.
pub(super) fn mount(store: &Store, row: &ContainerRow) -> Result<PathBuf> {
    let dir = store.containers_dir().join(&row.id);
    let root = dir.join("rootfs");
    if is_mount_point(&root) {
        return Ok(root);
    }
    let layers = layers_of(store, row)?;
    // Held until mounted: gc must not remove a snapshot in between.
    let _lock = store.lock(crate::store::LockMode::Shared)?;
    let snapshots = ensure_snapshots(store, &layers)?;
    let lowers: Vec<PathBuf> = snapshots.roots.iter().rev().cloned().collect();
    let (upper, work) = (upper_dir(&dir), work_dir(&dir));
    for d in [&upper, &work, &root] {
        if !fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()) {
            return Err(Error::invalid(
                d.display().to_string(),
                format!("container {:?} is missing this directory", row.name),
            ));
        }
    }
    let spec = OverlaySpec {
        lowers: &lowers,
        upper: Some((&upper, &work)),
    };
    mount_overlay(&spec, &root).map_err(|e| {
        Error::io(
            format!(
                "mounting container {:?} ({} layers) on {}",
                row.name,
                lowers.len(),
                root.display()
            ),
            e,
        )
    })?;
    Ok(root)
}

/// Unmounts the container's root (a busy mount is detached).
pub(super) fn unmount(store: &Store, row: &ContainerRow) -> Result<()> {
    let root = store.containers_dir().join(&row.id).join("rootfs");
    unmount_overlay(&root).context(|| format!("unmounting {}", root.display()))
}

/// The image's node at a path, with the BLAKE3 of a file's content when
/// the container has a file of the same size there (the only case the
/// comparison reads it).
fn image_node(shown: &Shown, hash_for: Option<u64>) -> Result<Option<Node>> {
    let Some(mut node) = node_of(&shown.path, &shown.meta)? else {
        return Ok(None);
    };
    if let NodeKind::File { size, hash } = &mut node.kind
        && hash_for == Some(*size)
    {
        let mut file = super::diff::open_nofollow(&shown.path)
            .context(|| format!("opening {}", shown.path.display()))?;
        let mut hasher = blake3::Hasher::new();
        io::copy(&mut file, &mut hasher).context(|| format!("reading {}", shown.path.display()))?;
        *hash = *hasher.finalize().as_bytes();
    }
    Ok(Some(node))
}

/// The comparison of an overlay container with its image, from its upper
/// directory: the container's side holds what the upper directory has
/// (plus, in directories where something was deleted, what the image
/// still shows there), the image's side what the snapshots show at those
/// paths.
pub(super) fn compare_upper(store: &Store, row: &ContainerRow) -> Result<Comparison> {
    let layers = layers_of(store, row)?;
    let _lock = store.lock(crate::store::LockMode::Shared)?;
    let snapshots = ensure_snapshots(store, &layers)?;
    let below = LayerStack::new(snapshots.roots.iter().rev().cloned().collect());
    let upper = upper_dir(&store.containers_dir().join(&row.id));
    let root_meta =
        fs::symlink_metadata(&upper).context(|| format!("reading {}", upper.display()))?;
    if !root_meta.is_dir() {
        return Err(Error::invalid(
            upper.display().to_string(),
            "the container's upper directory is not a directory; refusing to read through it",
        ));
    }
    let lower_err = |rel: &[u8]| {
        let rel = rel.to_vec();
        move |e: io::Error| {
            Error::io(
                format!(
                    "reading the image's snapshots at {}",
                    super::diff::slash(&rel)
                ),
                e,
            )
        }
    };
    let mut fs_map: BTreeMap<Vec<u8>, FsEntry> = BTreeMap::new();
    let mut image: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
    let mut from_upper: Vec<Vec<u8>> = Vec::new();
    if let Some(node) = node_of(&upper, &root_meta)? {
        fs_map.insert(Vec::new(), fs_entry(node, &root_meta));
    }
    if let Some(shown) = below.lookup(b"").map_err(lower_err(b""))?
        && let Some(node) = image_node(&shown, None)?
    {
        image.insert(Vec::new(), node);
    }
    from_upper.push(Vec::new());
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let dir = path_under(&upper, &rel);
        let mut names: HashSet<Vec<u8>> = HashSet::new();
        let mut whiteouts = false;
        for item in fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
            let item = item.context(|| format!("listing {}", dir.display()))?;
            let name = item.file_name().as_bytes().to_vec();
            let path = item.path();
            let full = entry::join(&rel, &name);
            let meta =
                fs::symlink_metadata(&path).context(|| format!("reading {}", path.display()))?;
            let shown = below.lookup(&full).map_err(lower_err(&full))?;
            names.insert(name);
            if is_whiteout(&meta) {
                whiteouts = true;
                if let Some(shown) = shown
                    && let Some(node) = image_node(&shown, None)?
                {
                    image.insert(full, node);
                }
                continue;
            }
            let Some(node) = node_of(&path, &meta)? else {
                continue;
            };
            let same_size_file = match node.kind {
                NodeKind::File { size, .. } => Some(size),
                _ => None,
            };
            if let Some(shown) = shown
                && let Some(lower) = image_node(&shown, same_size_file)?
            {
                image.insert(full.clone(), lower);
            }
            if meta.is_dir() {
                stack.push(full.clone());
            }
            fs_map.insert(full.clone(), fs_entry(node, &meta));
            from_upper.push(full);
        }
        let opaque = !rel.is_empty() && is_opaque(&dir);
        if !(opaque || whiteouts) {
            continue;
        }
        // Something here was deleted: the comparison must know everything
        // the image holds in this directory and what the container still
        // shows of it.
        for (name, shown) in below.children(&rel).map_err(lower_err(&rel))? {
            let full = entry::join(&rel, &name);
            let Some(node) = image_node(&shown, None)? else {
                continue;
            };
            if !opaque && !names.contains(&name) {
                fs_map.insert(full.clone(), fs_entry(node.clone(), &shown.meta));
            }
            image.entry(full).or_insert(node);
        }
    }
    let mut differ = HashSet::new();
    for rel in from_upper {
        if rel.is_empty() {
            continue;
        }
        let Some(entry) = fs_map.get(&rel) else {
            continue;
        };
        let changed = match image.get(&rel) {
            None => true,
            Some(node) => differs(&upper, &rel, node, &entry.node, row.owners)?,
        };
        if changed {
            differ.insert(rel);
        }
    }
    Ok(Comparison {
        root: upper,
        owners: row.owners,
        image: Tree::from_nodes(image, row.owners),
        fs: fs_map,
        differ,
    })
}
