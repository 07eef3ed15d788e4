//! A container's life: checkout of an image into a directory, create
//! (a checkout or reflink clone under `containers/`, recorded in the index
//! with its manifest), list, get, remove, and gc of directories no
//! container row owns.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::overlay;
use super::share::{clone_tree, ensure_base, reflink_supported};
use super::{ContainerInfo, Sharing, check_name, checkouts_dir, containers_dir, info, not_found};
use crate::error::{Error, IoContext, Result};
use crate::image::runnable_manifest;
use crate::rootfs::fsops::{remove_tree, running_as_root};
use crate::rootfs::overlay::overlay_usable;
use crate::rootfs::snapshot::{
    SnapshotEntry, ensure_snapshots, remove_snapshot_entry, snapshot_entries, used_chains,
};
use crate::rootfs::{self, CheckoutReport};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::ContainerRow;
use crate::util::clock::now;
use crate::util::fs::{Owner, OwnerClaim};

pub(super) fn checkout(store: &Store, image: &str, dir: &Path) -> Result<CheckoutReport> {
    let record = runnable_manifest(&store.index()?, image)?;
    let existed = dir.exists();
    rootfs::prepare_empty_dir(dir)?;
    let owners = running_as_root();
    let layers: Vec<Digest> = record.layers.iter().map(|l| l.diff_id).collect();
    let report = |entries, whiteouts, warnings, from_snapshots| CheckoutReport {
        image: image.to_string(),
        manifest: record.digest,
        path: dir.to_path_buf(),
        layers: layers.len() as u64,
        entries,
        whiteouts,
        owners_applied: owners,
        warnings,
        from_snapshots,
    };
    let result = match copy_from_snapshots(store, &layers, dir, owners) {
        Some(copied) => copied.map(|entries| report(entries, 0, Vec::new(), true)),
        None => rootfs::apply_layers(store, &layers, dir, owners)
            .map(|a| report(a.entries, a.whiteouts, a.warnings, false)),
    };
    match result {
        Ok(done) => Ok(done),
        Err(e) => {
            // Leave nothing half-written behind.
            if existed {
                if let Ok(list) = fs::read_dir(dir) {
                    for entry in list.flatten() {
                        let _ = remove_tree(&entry.path());
                    }
                }
            } else {
                let _ = remove_tree(dir);
            }
            Err(e)
        }
    }
}

/// Copies the image's root filesystem from its layer snapshots, when every
/// one exists (overlay containers of it were made) and overlay can mount
/// here: a read-only overlay of them, copied out, instead of decompressing
/// every layer again. None when that cannot be done.
fn copy_from_snapshots(
    store: &Store,
    layers: &[Digest],
    dir: &Path,
    owners: bool,
) -> Option<Result<u64>> {
    use crate::rootfs::overlay::{OverlaySpec, mount_overlay, unmount_overlay};
    use crate::rootfs::snapshot::snapshot_ready;
    let snapshots = store.snapshots_dir();
    if !owners || layers.is_empty() || !snapshots.is_dir() {
        return None;
    }
    // Held while copying: gc must not remove the snapshots meanwhile.
    let lock = store.lock(crate::store::LockMode::Shared).ok()?;
    let roots = snapshot_ready(store, layers)?;
    if roots.len() == 1 {
        return Some(clone_tree(&roots[0], dir, owners));
    }
    if !overlay_usable(&snapshots) {
        return None;
    }
    let tag = crate::util::fs::random_hex(8);
    let tmp = snapshots.join(format!(".tmp-{tag}"));
    let claim = OwnerClaim::take(snapshots.join(format!(".owner-{tag}"))).ok()?;
    let merged = tmp.join("merged");
    fs::create_dir_all(&merged).ok()?;
    let lowers: Vec<PathBuf> = roots.into_iter().rev().collect();
    let spec = OverlaySpec {
        lowers: &lowers,
        upper: None,
    };
    let copied = match mount_overlay(&spec, &merged) {
        Ok(()) => {
            let copied = clone_tree(&merged, dir, owners);
            let unmounted = unmount_overlay(&merged);
            copied.and_then(|n| {
                unmounted
                    .map(|()| n)
                    .map_err(|e| Error::io(format!("unmounting {}", merged.display()), e))
            })
        }
        // Copy nothing: stream from the packs instead.
        Err(_) => {
            let _ = remove_tree(&tmp);
            return None;
        }
    };
    if !crate::rootfs::overlay::is_mount_point(&merged) {
        let _ = remove_tree(&tmp);
    }
    drop(claim);
    drop(lock);
    Some(copied)
}

// ---------------------------------------------------------------- sharing

pub(super) fn create(
    store: &Store,
    image: &str,
    name: Option<&str>,
    wanted: Sharing,
) -> Result<ContainerInfo> {
    let record = runnable_manifest(&store.index()?, image)?;
    let id = crate::util::fs::random_hex(8);
    let name = match name {
        Some(n) => {
            check_name(n)?;
            n.to_string()
        }
        None => id[..12].to_string(),
    };
    if store.index()?.container(&name)?.is_some() {
        return Err(Error::invalid(
            format!("container {name:?}"),
            "a container of that name already exists",
        ));
    }
    let dir = containers_dir(store);
    fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".tmp-{id}"));
    // Held until the container is recorded: gc removes `.tmp-<id>` and an
    // unrecorded `<id>` only when this claim's process is gone.
    let _claim = OwnerClaim::take(dir.join(owner_file(&id)))?;
    let owners = running_as_root();
    let layers: Vec<Digest> = record.layers.iter().map(|l| l.diff_id).collect();
    let result = (|| -> Result<ContainerInfo> {
        fs::create_dir(&tmp).context(|| format!("creating {}", tmp.display()))?;
        let root = tmp.join("rootfs");
        rootfs::prepare_empty_dir(&root)?;
        let scheme = match wanted {
            Sharing::Auto if overlay_usable(&dir) => Sharing::Overlay,
            Sharing::Auto if reflink_supported(&dir) => Sharing::Reflink,
            Sharing::Auto => Sharing::Copy,
            Sharing::Overlay if !overlay_usable(&dir) => {
                return Err(Error::invalid(
                    format!("container {name:?}"),
                    format!(
                        "overlay mounts cannot be made under {} (they need root, overlayfs in \
                         the kernel and a filesystem that can hold an upper layer); use \
                         --sharing auto to fall back to reflinks or copies",
                        dir.display()
                    ),
                ));
            }
            Sharing::Reflink if !reflink_supported(&dir) => {
                return Err(Error::invalid(
                    format!("container {name:?}"),
                    format!(
                        "the filesystem of {} cannot clone files (FICLONE); use --sharing auto",
                        dir.display()
                    ),
                ));
            }
            other => other,
        };
        let mut attempts = 0;
        let (sharing, _lock) = if scheme == Sharing::Overlay {
            // Held until the container is recorded: gc removes snapshots
            // nothing records.
            let lock = store.lock(crate::store::LockMode::Shared)?;
            let snapshots = ensure_snapshots(store, &layers)?;
            overlay::prepare(&tmp, &snapshots)?;
            (overlay::OVERLAY, Some(lock))
        } else if scheme == Sharing::Reflink {
            loop {
                attempts += 1;
                let base = ensure_base(store, &record.digest, &layers, owners)?;
                // gc deletes unused base checkouts under the exclusive lock:
                // hold it shared until the container is recorded.
                let lock = store.lock(crate::store::LockMode::Shared)?;
                if base.is_dir() {
                    clone_tree(&base, &root, owners)?;
                    break ("reflink", Some(lock));
                }
                if attempts >= 3 {
                    return Err(Error::io(
                        format!("cloning {}", base.display()),
                        io::Error::other("the image checkout keeps being removed by gc"),
                    ));
                }
            }
        } else {
            rootfs::apply_layers(store, &layers, &root, owners)?;
            ("copy", None)
        };
        let row = ContainerRow {
            name: name.clone(),
            id: id.clone(),
            image: image.to_string(),
            manifest: record.digest,
            created: now(),
            owners,
            sharing: sharing.to_string(),
        };
        let final_dir = dir.join(&id);
        fs::rename(&tmp, &final_dir).context(|| format!("renaming to {}", final_dir.display()))?;
        if let Err(e) = store.index()?.insert_container(&row) {
            let _ = fs::rename(&final_dir, &tmp);
            return Err(e);
        }
        crate::util::fault::point("container-recorded");
        if row.sharing == overlay::OVERLAY
            && let Err(e) = overlay::mount(store, &row)
        {
            // Not usable: undo the whole create.
            let _ = store
                .index()
                .and_then(|mut i| i.remove_container(&row.name));
            let _ = fs::rename(&final_dir, &tmp);
            return Err(e);
        }
        Ok(info(store, row))
    })();
    if result.is_err() {
        let _ = remove_tree(&tmp);
    }
    result
}

pub(super) fn list(store: &Store) -> Result<Vec<ContainerInfo>> {
    Ok(store
        .index()?
        .containers()?
        .into_iter()
        .map(|row| info(store, row))
        .collect())
}

pub(super) fn get(store: &Store, name: &str) -> Result<ContainerInfo> {
    let row = store
        .index()?
        .container(name)?
        .ok_or_else(|| not_found(name))?;
    Ok(info(store, row))
}

pub(super) fn remove(store: &Store, name: &str) -> Result<()> {
    let mut index = store.index()?;
    let row = index.container(name)?.ok_or_else(|| not_found(name))?;
    if row.sharing == overlay::OVERLAY {
        overlay::unmount(store, &row)?;
    }
    let dir = containers_dir(store).join(&row.id);
    let trash = containers_dir(store).join(format!(".rm-{}", row.id));
    let moved = dir.exists();
    if moved {
        fs::rename(&dir, &trash).context(|| format!("moving {} aside", dir.display()))?;
    }
    match index.remove_container(name) {
        Ok(true) => {}
        Ok(false) => {
            if moved {
                let _ = fs::rename(&trash, &dir);
            }
            return Err(not_found(name));
        }
        Err(e) => {
            if moved {
                let _ = fs::rename(&trash, &dir);
            }
            return Err(e);
        }
    }
    remove_tree(&trash)
}

/// The owner file beside a directory being built (`<tmp or id>`).
pub(super) fn owner_file(id: &str) -> String {
    format!(".owner-{id}")
}

/// What a directory under `containers/` or `checkouts/` that gc found is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// Being built by a live process: left alone.
    InProgress,
    /// Garbage by proof: a removed container, or the work of a process
    /// that died (its owner file is unlocked).
    Garbage,
    /// Not recorded in the index and not provably garbage (a container
    /// whose index row was lost, or a leftover from before owner files):
    /// kept, and reported by verify.
    Unknown,
}

/// Classifies entry `name` of `containers/` (`checkouts` false) or
/// `checkouts/` (true). None for what is in use.
pub(crate) fn classify_leftover(
    dir: &Path,
    name: &str,
    in_use: &HashSet<String>,
    checkouts: bool,
) -> Option<Leftover> {
    if name.starts_with(".owner-") {
        // A claim whose directory is gone: garbage once its owner is.
        return match crate::util::fs::owner(&dir.join(name)) {
            Owner::Alive => None,
            _ => Some(Leftover::Garbage),
        };
    }
    if !checkouts && name.starts_with(".rm-") {
        return Some(Leftover::Garbage);
    }
    let id = name
        .strip_prefix(".tmp-")
        .or_else(|| name.strip_prefix(".reflink-probe-"));
    let claimed = |id: &str| crate::util::fs::owner(&dir.join(owner_file(id)));
    match id {
        Some(id) => Some(match claimed(id.split('-').next().unwrap_or(id)) {
            Owner::Alive => Leftover::InProgress,
            Owner::Dead => Leftover::Garbage,
            // Work that was never claimed: before owner files; a day old
            // means nobody is still building it.
            Owner::None if stale(&dir.join(name)) => Leftover::Garbage,
            Owner::None => Leftover::InProgress,
        }),
        None if in_use.contains(name) => None,
        // A checkout no container uses is rebuilt on demand: garbage.
        None if checkouts => Some(Leftover::Garbage),
        None => Some(match claimed(name) {
            Owner::Alive => Leftover::InProgress,
            // Renamed into place but never recorded: a create that died.
            Owner::Dead => Leftover::Garbage,
            Owner::None => Leftover::Unknown,
        }),
    }
}

fn stale(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > 24 * 3600)
}

/// Every entry of `containers/` and `checkouts/` that no container uses,
/// with what it is.
pub(crate) fn leftovers(store: &Store) -> Result<Vec<(PathBuf, Leftover)>> {
    let rows = store.index()?.containers()?;
    let used: HashSet<String> = rows.iter().map(|r| r.manifest.hex().to_string()).collect();
    let ids: HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut found = Vec::new();
    for (dir, in_use, checkouts) in [
        (checkouts_dir(store), &used, true),
        (containers_dir(store), &ids, false),
    ] {
        let Ok(list) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in list.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(kind) = classify_leftover(&dir, &name, in_use, checkouts) {
                found.push((entry.path(), kind));
            }
        }
    }
    Ok(found)
}

/// gc's part: removes base checkouts no container uses, directories of
/// removed containers, and what interrupted creates left (proved by their
/// unlocked owner files). Directories it cannot prove are garbage (a
/// container whose index row was lost) stay. Called with the store lock
/// held exclusively. Returns how many entries went (or would go).
pub(crate) fn collect_garbage(store: &Store, dry_run: bool) -> Result<u64> {
    let doomed: Vec<PathBuf> = leftovers(store)?
        .into_iter()
        .filter(|(_, kind)| *kind == Leftover::Garbage)
        .map(|(path, _)| path)
        .collect();
    if !dry_run {
        for path in &doomed {
            crate::rootfs::overlay::unmount_below(path)?;
            if path.is_dir() {
                remove_tree(path)?;
            } else {
                let _ = fs::remove_file(path);
            }
        }
    }
    Ok(doomed.len() as u64)
}

// ---------------------------------------------------------------- snapshots

/// Chain ids (hex) of the snapshots images and containers use.
pub(crate) fn used_snapshots(store: &Store) -> Result<HashSet<String>> {
    let index = store.index()?;
    let mut stacks: Vec<Vec<Digest>> = Vec::new();
    for (name, _, _) in index.images()? {
        // Images that cannot run here (another platform only) have none.
        if let Ok(record) = runnable_manifest(&index, &name) {
            stacks.push(record.layers.iter().map(|l| l.diff_id).collect());
        }
    }
    for row in index.containers()? {
        if let Some(record) = index.manifest(&row.manifest)? {
            stacks.push(record.layers.iter().map(|l| l.diff_id).collect());
        }
    }
    Ok(used_chains(stacks))
}

/// gc's part for `snapshots/`: removes snapshots no image or container
/// uses and what interrupted unpacks left. Called with the store lock held
/// exclusively (every unpack holds it shared). Returns how many went.
pub(crate) fn collect_snapshot_garbage(store: &Store, dry_run: bool) -> Result<u64> {
    let used = used_snapshots(store)?;
    let mut removed = 0;
    for (path, kind) in snapshot_entries(store, &used) {
        if matches!(kind, SnapshotEntry::Unused | SnapshotEntry::Abandoned) {
            if !dry_run {
                remove_snapshot_entry(&path)?;
            }
            removed += 1;
        }
    }
    Ok(removed)
}
