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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};
use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::image::oci;
use crate::image::{self, ChildImage, runnable_manifest};
use crate::layer::put::{self, PutOptions, PutSession};
use crate::rootfs::entry::{self, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::rootfs::fsops::{remove_tree, running_as_root};
use crate::rootfs::tree::{Node, NodeKind, Tree, children, parent_of};
use crate::rootfs::{self, CheckoutReport};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::{ContainerRow, NewImport};
use crate::util::clock::now;
use crate::util::pipe::pipe;

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

pub(crate) fn checkout(store: &Store, image: &str, dir: &Path) -> Result<CheckoutReport> {
    let record = runnable_manifest(&store.index()?, image)?;
    let existed = dir.exists();
    rootfs::prepare_empty_dir(dir)?;
    let owners = running_as_root();
    let layers: Vec<Digest> = record.layers.iter().map(|l| l.diff_id).collect();
    match rootfs::apply_layers(store, &layers, dir, owners) {
        Ok(applier) => Ok(CheckoutReport {
            image: image.to_string(),
            manifest: record.digest,
            path: dir.to_path_buf(),
            layers: layers.len() as u64,
            entries: applier.entries,
            whiteouts: applier.whiteouts,
            owners_applied: owners,
            warnings: applier.warnings,
        }),
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

// ---------------------------------------------------------------- sharing

/// Does the filesystem holding `dir` clone files (FICLONE)?
fn reflink_supported(dir: &Path) -> bool {
    let tag = crate::util::fs::random_hex(6);
    let a = dir.join(format!(".reflink-probe-{tag}-a"));
    let b = dir.join(format!(".reflink-probe-{tag}-b"));
    let result = (|| -> io::Result<()> {
        let mut src = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&a)?;
        src.write_all(&[7u8; 4096])?;
        src.sync_all()?;
        let dst = File::options().write(true).create_new(true).open(&b)?;
        rfs::ioctl_ficlone(&dst, &src)?;
        Ok(())
    })();
    let _ = fs::remove_file(&a);
    let _ = fs::remove_file(&b);
    result.is_ok()
}

/// The pristine checkout of a manifest under `checkouts/`, made if needed.
fn ensure_base(
    store: &Store,
    manifest: &Digest,
    layers: &[Digest],
    owners: bool,
) -> Result<PathBuf> {
    let dir = checkouts_dir(store);
    let base = dir.join(manifest.hex());
    if base.is_dir() {
        return Ok(base);
    }
    fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".tmp-{}", crate::util::fs::random_hex(8)));
    let built = rootfs::prepare_empty_dir(&tmp)
        .and_then(|()| rootfs::apply_layers(store, layers, &tmp, owners).map(|_| ()));
    if let Err(e) = built {
        let _ = remove_tree(&tmp);
        return Err(e);
    }
    if fs::rename(&tmp, &base).is_err() {
        // Another process made it meanwhile.
        let _ = remove_tree(&tmp);
    }
    if !base.is_dir() {
        return Err(Error::io(
            format!("creating {}", base.display()),
            io::Error::other("checkout vanished"),
        ));
    }
    Ok(base)
}

fn set_times(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let t = Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec() as _,
    };
    rfs::utimensat(
        rfs::CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

fn copy_xattrs(src: &Path, dst: &Path) {
    let mut names = vec![0u8; 64 << 10];
    let Ok(n) = rfs::llistxattr(src, &mut names[..]) else {
        return;
    };
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let mut value = vec![0u8; 64 << 10];
        if let Ok(len) = rfs::lgetxattr(src, name, &mut value[..]) {
            let _ = rfs::lsetxattr(dst, name, &value[..len], rfs::XattrFlags::empty());
        }
    }
}

use std::os::unix::ffi::OsStrExt;

/// Copies the tree `src` into the empty directory `dst` with all metadata,
/// cloning file data (FICLONE; a plain copy if a clone fails) and keeping
/// hard links.
fn clone_tree(src: &Path, dst: &Path, owners: bool) -> Result<()> {
    let mut dirs: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    let io_at = |p: &Path| {
        let p = p.to_path_buf();
        move |e: io::Error| Error::io(format!("cloning {}", p.display()), e)
    };
    while let Some(rel) = stack.pop() {
        let from = src.join(&rel);
        let to = dst.join(&rel);
        let meta = fs::symlink_metadata(&from).map_err(io_at(&from))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            if !rel.as_os_str().is_empty() {
                fs::create_dir(&to).map_err(io_at(&to))?;
                fs::set_permissions(&to, fs::Permissions::from_mode(0o700)).map_err(io_at(&to))?;
            }
            for entry in fs::read_dir(&from).map_err(io_at(&from))? {
                let entry = entry.map_err(io_at(&from))?;
                stack.push(rel.join(entry.file_name()));
            }
        } else if meta.nlink() > 1
            && !ft.is_symlink()
            && let Some(first) = links.get(&(meta.dev(), meta.ino()))
        {
            fs::hard_link(first, &to).map_err(io_at(&to))?;
            continue;
        } else if ft.is_file() {
            let mut input = File::open(&from).map_err(io_at(&from))?;
            let mut output = File::options()
                .write(true)
                .create_new(true)
                .custom_flags(OFlags::NOFOLLOW.bits() as i32)
                .mode(0o600)
                .open(&to)
                .map_err(io_at(&to))?;
            if rfs::ioctl_ficlone(&output, &input).is_err() {
                io::copy(&mut input, &mut output).map_err(io_at(&to))?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(io_at(&from))?;
            std::os::unix::fs::symlink(target, &to).map_err(io_at(&to))?;
        } else {
            let kind = if ft.is_char_device() {
                rfs::FileType::CharacterDevice
            } else if ft.is_block_device() {
                rfs::FileType::BlockDevice
            } else if ft.is_fifo() {
                rfs::FileType::Fifo
            } else {
                continue; // sockets are never checked out
            };
            rfs::mknodat(rfs::CWD, &to, kind, Mode::from_raw_mode(0o600), meta.rdev())
                .map_err(|e| io_at(&to)(e.into()))?;
        }
        if meta.nlink() > 1 && !ft.is_dir() {
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        if ft.is_dir() {
            dirs.push((to, meta));
            continue;
        }
        if owners {
            std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))
                .map_err(io_at(&to))?;
        }
        if !ft.is_symlink() {
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(io_at(&to))?;
        }
        copy_xattrs(&from, &to);
        set_times(&to, &meta).map_err(io_at(&to))?;
    }
    // Directories last, deepest first.
    for (to, meta) in dirs.into_iter().rev() {
        if owners {
            std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))
                .map_err(io_at(&to))?;
        }
        copy_xattrs(&to, &to);
        fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_at(&to))?;
        set_times(&to, &meta).map_err(io_at(&to))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- lifecycle

pub(crate) fn create(store: &Store, image: &str, name: Option<&str>) -> Result<ContainerInfo> {
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
    let owners = running_as_root();
    let layers: Vec<Digest> = record.layers.iter().map(|l| l.diff_id).collect();
    let result = (|| -> Result<ContainerInfo> {
        fs::create_dir(&tmp).context(|| format!("creating {}", tmp.display()))?;
        let root = tmp.join("rootfs");
        rootfs::prepare_empty_dir(&root)?;
        let mut attempts = 0;
        let (sharing, _lock) = if reflink_supported(&dir) {
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
        Ok(info(store, row))
    })();
    if result.is_err() {
        let _ = remove_tree(&tmp);
    }
    result
}

pub(crate) fn list(store: &Store) -> Result<Vec<ContainerInfo>> {
    Ok(store
        .index()?
        .containers()?
        .into_iter()
        .map(|row| info(store, row))
        .collect())
}

pub(crate) fn get(store: &Store, name: &str) -> Result<ContainerInfo> {
    let row = store
        .index()?
        .container(name)?
        .ok_or_else(|| not_found(name))?;
    Ok(info(store, row))
}

pub(crate) fn remove(store: &Store, name: &str) -> Result<()> {
    let mut index = store.index()?;
    let row = index.container(name)?.ok_or_else(|| not_found(name))?;
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

/// gc's part: removes base checkouts no container uses, directories of
/// removed containers, and leftovers of interrupted creates older than a
/// day. Called with the store lock held exclusively. Returns how many
/// directories went (or would go).
pub(crate) fn collect_garbage(store: &Store, dry_run: bool) -> Result<u64> {
    let rows = store.index()?.containers()?;
    let used: HashSet<String> = rows.iter().map(|r| r.manifest.hex().to_string()).collect();
    let ids: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let stale = |path: &Path| {
        fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 24 * 3600)
    };
    let mut doomed = Vec::new();
    if let Ok(list) = fs::read_dir(checkouts_dir(store)) {
        for entry in list.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = if name.starts_with(".tmp-") {
                !stale(&entry.path())
            } else {
                used.contains(&name)
            };
            if !keep {
                doomed.push(entry.path());
            }
        }
    }
    if let Ok(list) = fs::read_dir(containers_dir(store)) {
        for entry in list.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = if name.starts_with(".rm-") {
                false
            } else if name.starts_with(".tmp-") || name.starts_with(".reflink-probe-") {
                !stale(&entry.path())
            } else {
                // A directory whose container is not recorded is a create
                // that was interrupted between rename and commit.
                ids.contains(name.as_str()) || !stale(&entry.path())
            };
            if !keep {
                doomed.push(entry.path());
            }
        }
    }
    if !dry_run {
        for path in &doomed {
            if path.is_dir() {
                remove_tree(path)?;
            } else {
                let _ = fs::remove_file(path);
            }
        }
    }
    Ok(doomed.len() as u64)
}

// ---------------------------------------------------------------- diff

/// A path of a container's directory.
struct FsEntry {
    node: Node,
    dev: u64,
    ino: u64,
    nlink: u64,
    mtime: i64,
}

fn os_path(rel: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(rel))
}

/// Walks a container's root (never following symlinks). File nodes carry
/// no hash yet (all zero); see [`file_hash`].
fn scan(root: &Path) -> Result<BTreeMap<Vec<u8>, FsEntry>> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(os_path(&rel));
        let meta = fs::symlink_metadata(&path).context(|| format!("reading {}", path.display()))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            for entry in fs::read_dir(&path).context(|| format!("listing {}", path.display()))? {
                let entry = entry.context(|| format!("listing {}", path.display()))?;
                stack.push(entry::join(&rel, entry.file_name().as_bytes()));
            }
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File {
                size: meta.len(),
                hash: [0; 32],
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).context(|| format!("reading {}", path.display()))?;
            NodeKind::Symlink(target.as_os_str().as_bytes().to_vec())
        } else if ft.is_char_device() {
            NodeKind::Char(rfs::major(meta.rdev()), rfs::minor(meta.rdev()))
        } else if ft.is_block_device() {
            NodeKind::Block(rfs::major(meta.rdev()), rfs::minor(meta.rdev()))
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else {
            continue; // sockets cannot be put in a layer
        };
        out.insert(
            rel,
            FsEntry {
                node: Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: u64::from(meta.uid()),
                    gid: u64::from(meta.gid()),
                },
                dev: meta.dev(),
                ino: meta.ino(),
                nlink: meta.nlink(),
                mtime: meta.mtime(),
            },
        );
    }
    Ok(out)
}

fn open_nofollow(path: &Path) -> io::Result<File> {
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
fn differs(root: &Path, rel: &[u8], image: &Node, fs_node: &Node, owners: bool) -> Result<bool> {
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
struct Comparison {
    root: PathBuf,
    owners: bool,
    image: Tree,
    fs: BTreeMap<Vec<u8>, FsEntry>,
    /// Paths of the container that differ from (or are not in) the image.
    differ: HashSet<Vec<u8>>,
}

fn compare(store: &Store, name: &str) -> Result<(ContainerRow, Comparison)> {
    let index = store.index()?;
    let row = index.container(name)?.ok_or_else(|| not_found(name))?;
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

fn slash(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

impl Comparison {
    /// Image paths gone from the container whose parent directory is still
    /// there as a directory (deeper ones go with their parent).
    fn deleted(&self) -> Vec<Vec<u8>> {
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

    fn changes(&self) -> Vec<Change> {
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
    fn wholly_replaced(&self, rel: &[u8]) -> bool {
        let mut lower = children(&self.image.nodes, rel).peekable();
        lower.peek().is_some()
            && lower.all(|(k, _)| !self.fs.contains_key(k))
            && children(&self.fs, rel).next().is_some()
    }
}

pub(crate) fn diff(store: &Store, name: &str) -> Result<Vec<Change>> {
    Ok(compare(store, name)?.1.changes())
}

// ---------------------------------------------------------------- commit

/// Reads exactly `left` bytes, or fails (a file that changed size while
/// being written into a layer must not produce a wrong tar).
struct Exact<R> {
    inner: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} shrank while being committed",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

struct Counts {
    added: u64,
    changed: u64,
    deleted: u64,
}

fn header(kind: tar::EntryType, node: &Node, mtime: i64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(node.mode);
    h.set_uid(node.uid);
    h.set_gid(node.gid);
    h.set_mtime(mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Writes the container's change set as a layer tar.
fn write_layer<W: Write>(cmp: &Comparison, out: W) -> Result<(W, Counts)> {
    let mut tar = tar::Builder::new(out);
    let failed = |what: &str, rel: &[u8], e: io::Error| {
        Error::io(format!("writing layer: {what} {}", slash(rel)), e)
    };
    let mut counts = Counts {
        added: 0,
        changed: 0,
        deleted: 0,
    };
    let mut opaque: Vec<Vec<u8>> = Vec::new();
    let under_opaque = |rel: &[u8], opaque: &[Vec<u8>]| {
        opaque.iter().any(|o| {
            o.is_empty() || (rel.len() > o.len() && rel.starts_with(o) && rel[o.len()] == b'/')
        })
    };
    // Deletions.
    let deleted = cmp.deleted();
    // Additions and changes, parents before children.
    let mut emitted_inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for (rel, entry) in &cmp.fs {
        if rel.is_empty() {
            continue;
        }
        let forced = under_opaque(rel, &opaque);
        let in_image = cmp.image.nodes.get(rel);
        let replaced_dir = entry.node.kind == NodeKind::Dir
            && in_image.is_some_and(|n| n.kind == NodeKind::Dir)
            && !forced
            && cmp.wholly_replaced(rel);
        if !forced && !replaced_dir && !cmp.differ.contains(rel) {
            continue;
        }
        match in_image {
            Some(_) => counts.changed += 1,
            None => counts.added += 1,
        }
        let mut node = entry.node.clone();
        if !cmp.owners {
            let (uid, gid) = in_image.map(|n| (n.uid, n.gid)).unwrap_or((0, 0));
            node.uid = uid;
            node.gid = gid;
        }
        let path = os_path(rel);
        let full = cmp.root.join(path);
        match &node.kind {
            NodeKind::Dir => {
                let mut h = header(tar::EntryType::Directory, &node, entry.mtime);
                tar.append_data(&mut h, path, io::empty())
                    .map_err(|e| failed("directory", rel, e))?;
                let lower_non_dir = in_image.is_some_and(|n| n.kind != NodeKind::Dir);
                if replaced_dir || lower_non_dir {
                    let marker = entry::join(rel, OPAQUE_MARKER);
                    let mut h = header(tar::EntryType::Regular, &node, entry.mtime);
                    h.set_mode(0o644);
                    tar.append_data(&mut h, os_path(&marker), io::empty())
                        .map_err(|e| failed("opaque marker", rel, e))?;
                    if replaced_dir {
                        counts.deleted += 1;
                    }
                    opaque.push(rel.clone());
                }
            }
            NodeKind::File { size, .. } => {
                let key = (entry.dev, entry.ino);
                if entry.nlink > 1
                    && let Some(first) = emitted_inodes.get(&key)
                {
                    let mut h = header(tar::EntryType::Link, &node, entry.mtime);
                    tar.append_link(&mut h, path, os_path(first))
                        .map_err(|e| failed("hard link", rel, e))?;
                    continue;
                }
                let file = open_nofollow(&full).map_err(|e| failed("file", rel, e))?;
                let size_now = file.metadata().map_err(|e| failed("file", rel, e))?.len();
                if size_now != *size {
                    return Err(failed(
                        "file",
                        rel,
                        io::Error::other("it changed size while being committed"),
                    ));
                }
                let mut h = header(tar::EntryType::Regular, &node, entry.mtime);
                h.set_size(size_now);
                let data = Exact {
                    inner: file,
                    left: size_now,
                    path: full.clone(),
                };
                tar.append_data(&mut h, path, data)
                    .map_err(|e| failed("file", rel, e))?;
                if entry.nlink > 1 {
                    emitted_inodes.insert(key, rel.clone());
                }
            }
            NodeKind::Symlink(target) => {
                let mut h = header(tar::EntryType::Symlink, &node, entry.mtime);
                tar.append_link(&mut h, path, os_path(target))
                    .map_err(|e| failed("symlink", rel, e))?;
            }
            NodeKind::Char(major, minor) | NodeKind::Block(major, minor) => {
                let kind = if matches!(node.kind, NodeKind::Char(..)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = header(kind, &node, entry.mtime);
                h.set_device_major(*major)
                    .map_err(|e| failed("device", rel, e))?;
                h.set_device_minor(*minor)
                    .map_err(|e| failed("device", rel, e))?;
                tar.append_data(&mut h, path, io::empty())
                    .map_err(|e| failed("device", rel, e))?;
            }
            NodeKind::Fifo => {
                let mut h = header(tar::EntryType::Fifo, &node, entry.mtime);
                tar.append_data(&mut h, path, io::empty())
                    .map_err(|e| failed("fifo", rel, e))?;
            }
        }
    }
    for rel in deleted {
        if under_opaque(&rel, &opaque) {
            continue;
        }
        let parent = parent_of(&rel);
        let name = &rel[parent.len() + usize::from(!parent.is_empty())..];
        let mut wh_name = WHITEOUT_PREFIX.to_vec();
        wh_name.extend_from_slice(name);
        let wh = entry::join(parent, &wh_name);
        let node = Node {
            kind: NodeKind::File {
                size: 0,
                hash: [0; 32],
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        let mut h = header(tar::EntryType::Regular, &node, 0);
        tar.append_data(&mut h, os_path(&wh), io::empty())
            .map_err(|e| failed("whiteout", &rel, e))?;
        counts.deleted += 1;
    }
    let out = tar
        .into_inner()
        .map_err(|e| Error::io("writing layer: end of archive", e))?;
    Ok((out, counts))
}

pub(crate) fn commit(store: &Store, name: &str, new_image: &str) -> Result<CommitReport> {
    oci::check_image_name(new_image)?;
    let (row, cmp) = compare(store, name)?;
    let index = store.index()?;
    let record = index
        .manifest(&row.manifest)?
        .ok_or_else(|| Error::corrupt(format!("manifest {} is not stored", row.manifest)))?;
    let (_, old_config) = index
        .blob(&record.config)?
        .ok_or_else(|| Error::corrupt(format!("config {} is not stored", record.config)))?;
    drop(index);

    let _lock = store.lock(crate::store::LockMode::Shared)?;
    let mut index = store.index()?;
    let (writer, reader) = pipe();
    let mut session = PutSession::default();
    let (prepared, counts) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| match write_layer(&cmp, writer) {
            Ok((writer, counts)) => writer
                .finish()
                .map(|()| counts)
                .map_err(|e| Error::io("writing layer", e)),
            Err(e) => Err(e),
        });
        let ctx = store.put_context(&mut index);
        let prepared = put::prepare_put(
            &ctx,
            reader,
            &PutOptions {
                source_name: Some(format!("container {name:?}")),
                ..PutOptions::default()
            },
            &mut session,
        );
        let produced = crate::error::join_worker(producer);
        // The writer's own error explains a broken stream best.
        let counts = produced?;
        Ok::<_, Error>((prepared?, counts))
    })?;
    let mut prepared = prepared;
    let diff_id = prepared.info.digest;
    let size = prepared.info.size;
    let child = image::child_image(
        &record,
        &old_config,
        &row.image,
        &row.manifest,
        (diff_id, size),
        &format!("layerstore container commit {name}"),
        now(),
    )?;
    let ChildImage {
        config,
        config_digest,
        manifest,
        manifest_digest,
        record: new_record,
    } = child;
    let added_bytes = prepared.info.added_bytes;
    let import = NewImport {
        puts: vec![(prepared.packs.as_slice(), &prepared.layer)],
        blobs: vec![
            (config_digest, oci::MT_OCI_CONFIG.to_string(), config),
            (manifest_digest, oci::MT_OCI_MANIFEST.to_string(), manifest),
        ],
        manifests: vec![new_record],
        index_children: Vec::new(),
        names: vec![(new_image.to_string(), manifest_digest)],
    };
    index.commit_import(&import)?;
    drop(import);
    prepared.committed();
    Ok(CommitReport {
        container: name.to_string(),
        image: new_image.to_string(),
        manifest: manifest_digest,
        config: config_digest,
        layer: diff_id,
        layer_size: size,
        added: counts.added,
        changed: counts.changed,
        deleted: counts.deleted,
        added_bytes,
    })
}

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
