//! Containers: an image's root filesystem checked out into a directory the
//! user may change freely (its writable layer), recorded in the index with
//! the manifest it came from; listing, diff against the image, removal, and
//! commit of the changes as a new layer and image.
//!
//! ```text
//! STORE/containers/<id>/rootfs   a container's root filesystem
//! STORE/checkouts/<manifest hex> pristine image checkout, reflink source
//! ```
//!
//! Sharing: when the store's filesystem supports reflinks (FICLONE: btrfs,
//! XFS, bcachefs, ...), each image is checked out once, read-only by
//! convention, under `checkouts/`, and every container's files are reflink
//! clones of it: they share data blocks until written, and a write to one
//! container never reaches another (the filesystem copies on write).
//! Elsewhere each container is a full checkout from the store (a plain
//! copy): hard links into a shared tree would let one container's writes
//! show up in every other, and copy-up needs an overlay mount. Either way a
//! container is an ordinary directory that outlives reboots.
//!
//! Guarantees: a container's manifest (and so its config and layers) is a
//! gc root while the container exists; removing the container or its image
//! name never touches the other. Creation is all or nothing (a container is
//! built under a temporary name and recorded only once complete); commit
//! records the new layer, config, manifest and name in one transaction.

mod commit;
mod diff;
mod lifecycle;
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
pub(crate) use lifecycle::{Leftover, collect_garbage, leftovers};
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
    /// `reflink` (copy-on-write clones) or `copy`.
    pub sharing: String,
    /// Ownership from the layers was applied (created as root).
    pub owners: bool,
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
    ContainerInfo {
        path: rootfs(store, &row.id),
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
        create(self, image, name)
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
