//! Layer snapshots: each layer unpacked once into the store as an overlay
//! layer directory, shared by every image and container whose stack holds
//! it.
//!
//! ```text
//! STORE/snapshots/<chain id hex>/root    the layer as an overlay layer
//! STORE/snapshots/<chain id hex>/files   its file list, BLAKE3 per file
//! STORE/snapshots/.tmp-<tag>/            being unpacked (claimed by .owner-<tag>)
//! ```
//!
//! A snapshot is named by the OCI chain ID of its layer (the DiffID for a
//! base layer, `sha256(parent chain ID + " " + DiffID)` above it), as
//! containerd's snapshotter does: what a layer's unpack takes from the
//! layers below (parent directories it writes into without naming them,
//! hard links to lower files, paths through lower symlinks) is then exact
//! for that stack, and a layer shared by two images on the same base is
//! unpacked once.
//!
//! Unpacking: a base layer is applied onto an empty directory; any other
//! layer is applied, with the checkout's OCI semantics and its guarantee
//! against hostile layers, onto an overlay mount of the snapshots below
//! with the new snapshot as upper directory, so the kernel itself turns
//! deletions into overlay whiteouts and copies up what the layer changes
//! in lower directories. Copied-up directories get their lower mtimes
//! back. The unpack happens under `.tmp-<tag>`, is synced, and is renamed
//! into place only when complete: a half snapshot is never used, and gc
//! removes it once its owner is gone.
//!
//! Integrity: the file list records type, mode, owner, mtime, size and
//! BLAKE3 (or target, or device) of every entry; `verify --full` walks the
//! snapshot and reports any difference.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::error::{Error, IoContext, Result};
use crate::rootfs::apply::Applier;
use crate::rootfs::entry;
use crate::rootfs::fsops::{path_under, remove_tree, set_mtime_from};
use crate::rootfs::overlay::{OverlaySpec, mount_overlay, unmount_overlay};
use crate::rootfs::stack::{LayerStack, is_opaque};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::util::fs::{Owner, OwnerClaim, owner, random_hex};

/// The first line of every file list; a new layout is a new version.
const FILES_HEADER: &str = "layerstore-snapshot-files 1";

/// The OCI chain IDs of a stack of layers (base first).
pub(crate) fn chain_ids(layers: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(layers.len());
    for layer in layers {
        let id = match out.last() {
            None => *layer,
            Some(parent) => Digest::from_bytes(
                sha2::Sha256::digest(format!("{parent} {layer}").as_bytes()).into(),
            ),
        };
        out.push(id);
    }
    out
}

fn snapshot_dir(store: &Store, chain: &Digest) -> PathBuf {
    store.snapshots_dir().join(chain.hex())
}

/// The overlay layer directory of the snapshot `chain`.
pub(crate) fn snapshot_root(store: &Store, chain: &Digest) -> PathBuf {
    snapshot_dir(store, chain).join("root")
}

/// The snapshots of a stack of layers, made where missing.
pub(crate) struct Snapshots {
    /// Their overlay layer directories, base first.
    pub roots: Vec<PathBuf>,
}

/// Makes sure every layer of `layers` (base first) has its snapshot and
/// returns them. The caller holds the store lock shared until it has
/// recorded what uses them (gc removes unused snapshots).
pub(crate) fn ensure_snapshots(store: &Store, layers: &[Digest]) -> Result<Snapshots> {
    let _lock = store.lock(crate::store::LockMode::Shared)?;
    let chains = chain_ids(layers);
    // Unpacked but not yet in place: later layers of the stack unpack over
    // them where they are, and one sync makes them all durable.
    let mut pending: Vec<Unpacked> = Vec::new();
    let mut lowers: Vec<PathBuf> = Vec::with_capacity(layers.len());
    for (layer, chain) in layers.iter().zip(&chains) {
        if snapshot_dir(store, chain).join("files").is_file() {
            lowers.push(snapshot_root(store, chain));
        } else {
            let unpacked = build(store, layer, chain, &lowers)?;
            lowers.push(unpacked.tmp.join("root"));
            pending.push(unpacked);
        }
    }
    if !pending.is_empty() {
        let dir = store.snapshots_dir();
        rustix::fs::syncfs(File::open(&dir).context(|| format!("opening {}", dir.display()))?)
            .map_err(|e| Error::io(format!("syncing {}", dir.display()), e.into()))?;
        crate::util::fault::point("snapshot-synced");
        for unpacked in &pending {
            // Another process may have put the same snapshot in place first.
            if fs::rename(&unpacked.tmp, &unpacked.target).is_err()
                && !unpacked.target.join("files").is_file()
            {
                return Err(Error::io(
                    format!("moving the snapshot into {}", unpacked.target.display()),
                    io::Error::other("rename failed"),
                ));
            }
        }
        crate::util::fs::sync_dir(&dir)?;
    }
    Ok(Snapshots {
        roots: chains.iter().map(|c| snapshot_root(store, c)).collect(),
    })
}

/// The roots of the snapshots of `layers` (base first) if every one is
/// complete; the caller holds the store lock shared while it uses them.
pub(crate) fn snapshot_ready(store: &Store, layers: &[Digest]) -> Option<Vec<PathBuf>> {
    chain_ids(layers)
        .iter()
        .map(|chain| {
            snapshot_dir(store, chain)
                .join("files")
                .is_file()
                .then(|| snapshot_root(store, chain))
        })
        .collect()
}

/// A snapshot unpacked and listed under `.tmp-<tag>`, waiting to be synced
/// and renamed to `target`; removed if dropped before.
struct Unpacked {
    tmp: PathBuf,
    target: PathBuf,
    _claim: OwnerClaim,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = unmount_overlay(&self.tmp.join("merged"));
            let _ = remove_tree(&self.tmp);
        }
    }
}

/// Unmounts the unpack's overlay however the unpack ends.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = unmount_overlay(self.0);
    }
}

fn build(store: &Store, layer: &Digest, chain: &Digest, below: &[PathBuf]) -> Result<Unpacked> {
    let dir = store.snapshots_dir();
    fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let tag = random_hex(8);
    let tmp = dir.join(format!(".tmp-{tag}"));
    let unpacked = Unpacked {
        tmp: tmp.clone(),
        target: snapshot_dir(store, chain),
        _claim: OwnerClaim::take(dir.join(format!(".owner-{tag}")))?,
    };
    let result = (|| -> Result<()> {
        fs::create_dir(&tmp).context(|| format!("creating {}", tmp.display()))?;
        let root = tmp.join("root");
        crate::rootfs::prepare_empty_dir(&root)?;
        let owners = crate::rootfs::fsops::running_as_root();
        match below.last() {
            None => {
                let mut applier = Applier::new(&root, owners)?;
                store.stream_layer(layer, |r| applier.apply_layer(r, layer))?;
                applier.finish()?;
            }
            Some(top) => {
                copy_dir_meta(top, &root)?;
                let work = tmp.join("work");
                let merged = tmp.join("merged");
                for d in [&work, &merged] {
                    fs::create_dir(d).context(|| format!("creating {}", d.display()))?;
                }
                let lowers: Vec<PathBuf> = below.iter().rev().cloned().collect();
                let spec = OverlaySpec {
                    lowers: &lowers,
                    upper: Some((&root, &work)),
                };
                mount_overlay(&spec, &merged).map_err(|e| {
                    Error::io(format!("mounting an overlay to unpack layer {layer}"), e)
                })?;
                let mounted = Mounted(&merged);
                crate::util::fault::point("snapshot-mounted");
                let mut applier = Applier::new(&merged, owners)?;
                store.stream_layer(layer, |r| applier.apply_layer(r, layer))?;
                let dated = applier.dated_dirs();
                applier.finish()?;
                let opaque = std::mem::take(&mut applier.opaque_dirs);
                drop(applier);
                drop(mounted);
                if crate::rootfs::overlay::is_mount_point(&merged) {
                    return Err(Error::io(
                        format!("unmounting {}", merged.display()),
                        io::Error::other("the overlay is still mounted"),
                    ));
                }
                for rel in &opaque {
                    make_opaque(&root, rel)?;
                }
                restore_copied_up_times(&root, &dated, &LayerStack::new(lowers))?;
                remove_tree(&work)?;
                remove_tree(&merged)?;
            }
        }
        write_file_list(&root, &tmp.join("files"), layer, chain)
    })();
    // On error, dropping `unpacked` removes what was made.
    result.map(|()| unpacked)
}

/// Turns the upper directory `rel` that an opaque marker cleared through
/// the mount (one whiteout per lower entry) into an opaque directory: the
/// `trusted.overlay.opaque` xattr hides everything below it in lower
/// layers, so the whiteouts in its subtree are redundant and go. A path
/// that is no longer a real directory (a later entry of the layer replaced
/// it) is left as it is.
fn make_opaque(root: &Path, rel: &[u8]) -> Result<()> {
    let mut path = root.to_path_buf();
    for comp in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        path.push(std::ffi::OsStr::from_bytes(comp));
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
    }
    if rel.is_empty() {
        // The root of a layer cannot be opaque; its whiteouts stay.
        return Ok(());
    }
    rustix::fs::lsetxattr(
        &path,
        crate::rootfs::stack::OPAQUE_XATTR,
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| Error::io(format!("marking {} opaque", path.display()), e.into()))?;
    let mut stack = vec![path];
    while let Some(dir) = stack.pop() {
        // Removing entries must not change the directory's mtime.
        let before = fs::symlink_metadata(&dir).context(|| format!("reading {}", dir.display()))?;
        let mut removed = false;
        for entry in fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            let meta = fs::symlink_metadata(entry.path())
                .context(|| format!("reading {}", entry.path().display()))?;
            if crate::rootfs::stack::is_whiteout(&meta) {
                fs::remove_file(entry.path())
                    .context(|| format!("removing {}", entry.path().display()))?;
                removed = true;
            } else if meta.is_dir() {
                stack.push(entry.path());
            }
        }
        if removed {
            set_mtime_from(&dir, &before)
                .context(|| format!("setting the mtime of {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Gives `dst` (an empty directory) the mode, owner and times of `src`.
pub(crate) fn copy_dir_meta(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(src).context(|| format!("reading {}", src.display()))?;
    if crate::rootfs::fsops::running_as_root() {
        std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))
            .context(|| format!("setting the owner of {}", dst.display()))?;
    }
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .context(|| format!("setting the mode of {}", dst.display()))?;
    set_mtime_from(dst, &meta).context(|| format!("setting the mtime of {}", dst.display()))
}

/// Directories the unpack copied up without the layer naming them got
/// their mtime changed by the entries written into them: give them back
/// the mtime the layers below show.
fn restore_copied_up_times(
    root: &Path,
    dated: &HashSet<Vec<u8>>,
    below: &LayerStack,
) -> Result<()> {
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    let mut dirs: Vec<Vec<u8>> = Vec::new();
    while let Some(rel) = stack.pop() {
        let path = path_under(root, &rel);
        for entry in fs::read_dir(&path).context(|| format!("listing {}", path.display()))? {
            let entry = entry.context(|| format!("listing {}", path.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry::join(&rel, entry.file_name().as_bytes()));
            }
        }
        dirs.push(rel);
    }
    // Deepest first, so setting a child's time never disturbs a parent's.
    for rel in dirs.into_iter().rev() {
        if dated.contains(&rel) {
            continue;
        }
        let shown = below.lookup(&rel).context(|| {
            format!(
                "reading the layers below {}",
                path_under(root, &rel).display()
            )
        })?;
        if let Some(shown) = shown.filter(|s| s.meta.is_dir()) {
            let path = path_under(root, &rel);
            set_mtime_from(&path, &shown.meta)
                .context(|| format!("setting the mtime of {}", path.display()))?;
        }
    }
    Ok(())
}

fn hex_bytes(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".into();
    }
    crate::util::hex(bytes)
}

/// One line per entry of the tree at `root` (sorted by path).
fn describe(root: &Path) -> Result<BTreeMap<Vec<u8>, String>> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let path = path_under(root, &rel);
        let meta = fs::symlink_metadata(&path).context(|| format!("reading {}", path.display()))?;
        let ft = meta.file_type();
        let (kind, what) = if ft.is_dir() {
            for entry in fs::read_dir(&path).context(|| format!("listing {}", path.display()))? {
                let entry = entry.context(|| format!("listing {}", path.display()))?;
                stack.push(entry::join(&rel, entry.file_name().as_bytes()));
            }
            let opaque = if is_opaque(&path) { "opaque" } else { "-" };
            ('d', opaque.to_string())
        } else if ft.is_file() {
            let mut file = File::open(&path).context(|| format!("opening {}", path.display()))?;
            let mut hasher = blake3::Hasher::new();
            io::copy(&mut file, &mut hasher).context(|| format!("reading {}", path.display()))?;
            ('f', hasher.finalize().to_hex().to_string())
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).context(|| format!("reading {}", path.display()))?;
            ('l', hex_bytes(target.as_os_str().as_bytes()))
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() { 'c' } else { 'b' };
            (kind, meta.rdev().to_string())
        } else if ft.is_fifo() {
            ('p', "-".into())
        } else {
            ('s', "-".into())
        };
        let mut line = String::new();
        let _ = write!(
            line,
            "{}\t{kind}\t{:o}\t{}\t{}\t{}.{:09}\t{}\t{what}",
            hex_bytes(&rel),
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            meta.mtime(),
            meta.mtime_nsec(),
            if ft.is_file() { meta.len() } else { 0 },
        );
        out.insert(rel, line);
    }
    Ok(out)
}

fn write_file_list(root: &Path, to: &Path, layer: &Digest, chain: &Digest) -> Result<()> {
    let lines = describe(root)?;
    let mut out =
        io::BufWriter::new(File::create(to).context(|| format!("creating {}", to.display()))?);
    let written = (|| -> io::Result<()> {
        writeln!(out, "{FILES_HEADER} {chain} {layer}")?;
        for line in lines.values() {
            writeln!(out, "{line}")?;
        }
        out.flush()
    })();
    written.context(|| format!("writing {}", to.display()))
}

/// What is wrong with one snapshot, if anything: `full` also re-reads
/// every file and compares it with the file list.
pub(crate) fn check_snapshot(dir: &Path, full: bool) -> Result<Option<String>> {
    let list = dir.join("files");
    let Ok(file) = File::open(&list) else {
        return Ok(Some("its file list is missing".into()));
    };
    let mut lines = BufReader::new(file).lines();
    let header = lines.next().transpose().unwrap_or(None).unwrap_or_default();
    if !header.starts_with(FILES_HEADER) {
        return Ok(Some(format!(
            "its file list does not start with {FILES_HEADER:?} (a newer layerstore made it?)"
        )));
    }
    if !fs::symlink_metadata(dir.join("root")).is_ok_and(|m| m.is_dir()) {
        return Ok(Some("its root directory is missing".into()));
    }
    if !full {
        return Ok(None);
    }
    let recorded: Vec<String> = lines.collect::<io::Result<_>>().unwrap_or_default();
    let now = match describe(&dir.join("root")) {
        Ok(now) => now,
        Err(e) => return Ok(Some(format!("its files cannot be read: {e}"))),
    };
    let now: Vec<&String> = now.values().collect();
    for (i, line) in recorded.iter().enumerate() {
        match now.get(i) {
            Some(found) if *found == line => continue,
            _ => {
                return Ok(Some(format!(
                    "its files no longer match the layer: {} differs or is missing",
                    shown_path(line)
                )));
            }
        }
    }
    if let Some(extra) = now.get(recorded.len()) {
        return Ok(Some(format!(
            "its files no longer match the layer: {} was added",
            shown_path(extra)
        )));
    }
    Ok(None)
}

fn shown_path(line: &str) -> String {
    let hex = line.split('\t').next().unwrap_or("");
    if hex == "-" {
        return "/".into();
    }
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    format!("/{}", String::from_utf8_lossy(&bytes))
}

/// What an entry of `snapshots/` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SnapshotEntry {
    /// A complete snapshot some image or container uses.
    InUse,
    /// A complete snapshot nothing uses: gc removes it (it is unpacked
    /// again on demand).
    Unused,
    /// An unpack a live process is doing.
    InProgress,
    /// What an unpack that died left: gc removes it.
    Abandoned,
    /// Something layerstore did not make: left alone.
    Foreign,
}

/// Every entry of `snapshots/` with what it is; `used` holds the chain ids
/// (hex) images and containers use.
pub(crate) fn snapshot_entries(
    store: &Store,
    used: &HashSet<String>,
) -> Vec<(PathBuf, SnapshotEntry)> {
    let dir = store.snapshots_dir();
    let Ok(list) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in list.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = if let Some(tag) = name.strip_prefix(".tmp-") {
            match owner(&dir.join(format!(".owner-{tag}"))) {
                Owner::Alive => SnapshotEntry::InProgress,
                _ => SnapshotEntry::Abandoned,
            }
        } else if name.starts_with(".owner-") {
            match owner(&entry.path()) {
                Owner::Alive => SnapshotEntry::InProgress,
                _ => SnapshotEntry::Abandoned,
            }
        } else if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            if used.contains(&name) {
                SnapshotEntry::InUse
            } else {
                SnapshotEntry::Unused
            }
        } else {
            SnapshotEntry::Foreign
        };
        out.push((entry.path(), kind));
    }
    out
}

/// Chain ids (hex) of every snapshot the images and containers of the
/// store use.
pub(crate) fn used_chains(layer_stacks: impl IntoIterator<Item = Vec<Digest>>) -> HashSet<String> {
    layer_stacks
        .into_iter()
        .flat_map(|layers| chain_ids(&layers))
        .map(|c| c.hex())
        .collect()
}

/// Removes a snapshot or an abandoned unpack: whatever is mounted inside
/// it is unmounted first, and nothing is removed through a mount.
pub(crate) fn remove_snapshot_entry(path: &Path) -> Result<()> {
    crate::rootfs::overlay::unmount_below(path)?;
    if path.is_dir() {
        remove_tree(path)
    } else {
        fs::remove_file(path).context(|| format!("removing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a, b]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert_ne!(chain_ids(&[b, a])[1], ids[1]);
    }

    #[test]
    fn shown_paths() {
        assert_eq!(shown_path("-\td"), "/");
        assert_eq!(shown_path("612f62\tf"), "/a/b");
    }
}
