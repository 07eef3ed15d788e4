//! Root filesystems: applying an image's layer tar streams, in order, onto
//! a directory with OCI semantics, straight from the store's get pipeline
//! (through an in-process pipe, never a temporary tar), and the same
//! semantics on an in-memory tree (`tree`) for container diff and commit.
//!
//! Semantics: `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq`
//! hides everything lower layers put in its directory (entries of the same
//! layer stay, whatever their order), an entry replaces what was at its path
//! (a directory over a directory only updates metadata), hard links,
//! symlinks, devices and fifos are recreated, and modes, mtimes, xattrs
//! (`SCHILY.xattr.*` PAX records) and, when running as root, ownership are
//! applied. Directory modes and mtimes are applied last, deepest first, so
//! read-only directories can still be filled and mtimes are not disturbed.
//!
//! Guarantee against hostile layers: nothing is ever created, changed or
//! removed outside DIR. Every path is resolved one component at a time from
//! a handle on DIR with `openat(O_NOFOLLOW)`; symlinks met on the way are
//! resolved as if DIR were `/` (an absolute target or `..` never climbs
//! above DIR), and the last component is never followed. Entry paths and
//! hard-link targets that climb above the root with `..` are refused with
//! an error naming the layer and the entry; a hard link can only name a
//! file inside DIR.

pub(crate) mod apply;
pub(crate) mod entry;
pub(crate) mod fsops;
pub(crate) mod overlay;
pub(crate) mod resolve;
pub(crate) mod snapshot;
pub(crate) mod stack;
pub(crate) mod tree;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::rootfs::apply::Applier;
use crate::store::Store;
use crate::store::digest::Digest;

/// What [`Store::checkout`] did.
#[derive(Clone, Debug, Serialize)]
pub struct CheckoutReport {
    /// The image name checked out.
    pub image: String,
    /// The manifest whose layers were applied.
    pub manifest: Digest,
    /// The directory written.
    pub path: PathBuf,
    /// Layers applied.
    pub layers: u64,
    /// Tar entries applied (whiteouts not included).
    pub entries: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// File ownership from the layers was applied (only as root).
    pub owners_applied: bool,
    /// Things that could not be applied and were skipped (device nodes
    /// when not root, xattrs the filesystem refused, ...).
    pub warnings: Vec<String>,
    /// The tree was copied from the image's layer snapshots (which overlay
    /// containers made) instead of streamed from the packs; `entries` then
    /// counts the entries copied and `whiteouts` is 0.
    pub from_snapshots: bool,
}

/// Checks `dir` is absent or an empty directory, and creates it (mode 0755).
pub(crate) fn prepare_empty_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let empty = std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(Error::invalid(
                    dir.display().to_string(),
                    "directory is not empty; choose a new or empty directory",
                ));
            }
        }
        Ok(_) => {
            return Err(Error::invalid(
                dir.display().to_string(),
                "exists and is not a directory",
            ));
        }
        Err(_) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(format!("setting mode of {}", dir.display()), e))
}

/// Applies `layers` in order onto the empty directory `dir`.
pub(crate) fn apply_layers(
    store: &Store,
    layers: &[Digest],
    dir: &Path,
    owners: bool,
) -> Result<Applier> {
    // gc must not collect the layers while they are read.
    let _lock = store.lock(crate::store::LockMode::Shared)?;
    let mut applier = Applier::new(dir, owners)?;
    // Sizes for progress only: plain rows, one connection (a layer summary
    // would also sum its share of every chunk).
    let index = store.index()?;
    let sizes: Vec<u64> = layers
        .iter()
        .map(|l| index.layer(l).ok().flatten().map_or(0, |row| row.size))
        .collect();
    drop(index);
    let total = sizes.iter().sum();
    let mut done = 0;
    store.progress("checkout", done, total);
    for (layer, size) in layers.iter().zip(&sizes) {
        store.stream_layer(layer, |reader| applier.apply_layer(reader, layer))?;
        done += size;
        store.progress("checkout", done, total);
    }
    applier.finish()?;
    Ok(applier)
}
