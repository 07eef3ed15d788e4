//! Containers: an image's root filesystem the user may change freely (its
//! writable layer), recorded in the index with the manifest it came from;
//! listing, diff against the image, removal, and commit of the changes as
//! a new layer and image.
//!
//! ```text
//! STORE/containers/<id>/rootfs   a container's root filesystem
//! STORE/containers/<id>/upper    an overlay container's changes
//! STORE/snapshots/<chain id>     layer snapshots (see rootfs::snapshot)
//! STORE/checkouts/<manifest hex> pristine image checkout, reflink source
//! ```
//!
//! Sharing, chosen per container (`Sharing::Auto` takes the first that
//! works): **overlay** (as root, with overlayfs and a filesystem that can
//! hold an upper layer): the container is one empty upper directory over
//! its image's layer snapshots, each layer unpacked once for every image
//! and container that has it; `rootfs` is the merged mount, made again by
//! [`Store::mount_container`] after a reboot. **reflink** (FICLONE: btrfs,
//! XFS, bcachefs, ...): each image is checked out once under `checkouts/`
//! and every container's files are reflink clones of it, sharing blocks
//! until written. **copy**: a full checkout per container. Whatever the
//! scheme, a write to one container never reaches another or the image.
//!
//! Guarantees: a container's manifest (and so its config and layers) is a
//! gc root while the container exists; removing the container or its image
//! name never touches the other. Creation is all or nothing (a container is
//! built under a temporary name and recorded only once complete); commit
//! records the new layer, config, manifest and name in one transaction.

mod commit;
mod diff;
mod lifecycle;
mod overlay;
mod share;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::rootfs::CheckoutReport;
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::ContainerRow;
use commit::commit;
use diff::diff;
pub(crate) use lifecycle::{
    Leftover, collect_garbage, collect_snapshot_garbage, leftovers, used_snapshots,
};
use lifecycle::{checkout, create, get, list, remove};

/// A container, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerInfo {
    /// Its name.
    pub name: String,
    /// Its directory id under `STORE/containers/`.
    pub id: String,
    /// The image name it was created from.
    pub image: String,
    /// The manifest it was created from (kept alive while it exists).
    pub manifest: Digest,
    /// When it was created, Unix seconds.
    pub created: i64,
    /// Its root filesystem.
    pub path: PathBuf,
    /// How its files share storage with other containers of its image:
    /// `overlay` (an upper layer over shared layer snapshots), `reflink`
    /// (copy-on-write clones) or `copy`.
    pub sharing: String,
    /// An overlay container's root is mounted now (always true for the
    /// other schemes, whose root is a plain directory).
    pub mounted: bool,
    /// Ownership from the layers was applied (created as root).
    pub owners: bool,
}

/// How a new container shares storage (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Overlay where it can be mounted, else reflinks where the filesystem
    /// clones files, else a copy.
    #[default]
    Auto,
    /// An upper layer over shared layer snapshots (root, overlayfs).
    Overlay,
    /// Reflink clones of one checkout of the image (FICLONE).
    Reflink,
    /// A full checkout of its own.
    Copy,
}

impl std::str::FromStr for Sharing {
    type Err = Error;

    fn from_str(s: &str) -> Result<Sharing> {
        match s {
            "auto" => Ok(Sharing::Auto),
            "overlay" => Ok(Sharing::Overlay),
            "reflink" => Ok(Sharing::Reflink),
            "copy" => Ok(Sharing::Copy),
            other => Err(Error::invalid(
                format!("sharing scheme {other:?}"),
                "use auto, overlay, reflink or copy",
            )),
        }
    }
}

/// How a path differs from the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Not in the image.
    Added,
    /// In the image with another type, mode, owner, content or target.
    Changed,
    /// In the image, gone from the container.
    Deleted,
}

/// One changed path of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `/`-rooted path.
    pub path: String,
    /// What changed.
    pub kind: ChangeKind,
}

/// What [`Store::commit_container`] did.
#[derive(Clone, Debug, Serialize)]
pub struct CommitReport {
    /// The container.
    pub container: String,
    /// The new image's name.
    pub image: String,
    /// The new manifest.
    pub manifest: Digest,
    /// The new config.
    pub config: Digest,
    /// The new layer's DiffID (also its blob digest: it is stored and
    /// described uncompressed).
    pub layer: Digest,
    /// The new layer's size.
    pub layer_size: u64,
    /// Paths added, changed and deleted.
    pub added: u64,
    /// Paths changed.
    pub changed: u64,
    /// Paths deleted (whiteouts written, opaque directories included).
    pub deleted: u64,
    /// Bytes the store's packs grew by.
    pub added_bytes: u64,
}

fn containers_dir(store: &Store) -> PathBuf {
    store.containers_dir()
}

fn checkouts_dir(store: &Store) -> PathBuf {
    store.checkouts_dir()
}

fn rootfs(store: &Store, id: &str) -> PathBuf {
    containers_dir(store).join(id).join("rootfs")
}

fn info(store: &Store, row: ContainerRow) -> ContainerInfo {
    let path = rootfs(store, &row.id);
    ContainerInfo {
        mounted: row.sharing != overlay::OVERLAY || crate::rootfs::overlay::is_mount_point(&path),
        path,
        name: row.name,
        id: row.id,
        image: row.image,
        manifest: row.manifest,
        created: row.created,
        sharing: row.sharing,
        owners: row.owners,
    }
}

/// Container names: 1-128 of `[A-Za-z0-9_.-]`, starting alphanumeric.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("container name {name:?}"),
            "use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ))
    }
}

fn not_found(name: &str) -> Error {
    Error::not_found(format!("container {name:?}"))
}

// ---------------------------------------------------------------- checkout

impl Store {
    /// Writes the root filesystem of image `name` into `dir` (absent or
    /// empty): its layers applied in order with OCI semantics, streamed
    /// from the store. Hostile layers cannot write outside `dir`. On error
    /// `dir` is left empty (or absent, if it was).
    pub fn checkout(&self, name: &str, dir: impl AsRef<Path>) -> Result<CheckoutReport> {
        checkout(self, name, dir.as_ref())
    }

    /// Creates a container of image `image` (named `name`, else a random
    /// id): a directory holding the image's root filesystem, for the user
    /// to change. Its manifest stays alive while it exists.
    pub fn create_container(&self, image: &str, name: Option<&str>) -> Result<ContainerInfo> {
        create(self, image, name, Sharing::Auto)
    }

    /// [`Store::create_container`] with a chosen sharing scheme; asking for
    /// one that cannot be used here is an error that says why.
    pub fn create_container_with(
        &self,
        image: &str,
        name: Option<&str>,
        sharing: Sharing,
    ) -> Result<ContainerInfo> {
        create(self, image, name, sharing)
    }

    /// Mounts an overlay container's root if it is not mounted (mounts do
    /// not survive a reboot) and returns it; for other schemes, just the
    /// root's path.
    pub fn mount_container(&self, name: &str) -> Result<PathBuf> {
        let row = self
            .index()?
            .container(name)?
            .ok_or_else(|| not_found(name))?;
        if row.sharing == overlay::OVERLAY {
            overlay::mount(self, &row)
        } else {
            Ok(rootfs(self, &row.id))
        }
    }

    /// Unmounts an overlay container's root (a busy mount is detached);
    /// its changes stay in its upper directory. Nothing to do for other
    /// schemes.
    pub fn unmount_container(&self, name: &str) -> Result<()> {
        let row = self
            .index()?
            .container(name)?
            .ok_or_else(|| not_found(name))?;
        if row.sharing == overlay::OVERLAY {
            overlay::unmount(self, &row)?;
        }
        Ok(())
    }

    /// All containers, oldest first.
    pub fn containers(&self) -> Result<Vec<ContainerInfo>> {
        list(self)
    }

    /// One container (its root filesystem is `path`).
    pub fn container(&self, name: &str) -> Result<ContainerInfo> {
        get(self, name)
    }

    /// Paths added, changed and deleted in a container against its image.
    pub fn container_diff(&self, name: &str) -> Result<Vec<Change>> {
        diff(self, name)
    }

    /// Removes a container and its directory; its image stays.
    pub fn remove_container(&self, name: &str) -> Result<()> {
        remove(self, name)
    }

    /// Writes a container's changes as a new layer (whiteouts for
    /// deletions) through the put path, and records `new_image` as its
    /// image's layers plus that one, with a new config and manifest.
    pub fn commit_container(&self, name: &str, new_image: &str) -> Result<CommitReport> {
        commit(self, name, new_image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("web-1.a_b").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", "../x", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
