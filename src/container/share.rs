//! Sharing between containers: each image checked out once under
//! `checkouts/` when the filesystem can reflink (FICLONE), and containers'
//! files made as reflink clones of it, so they share data blocks until
//! written and a write to one never reaches another.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};

use super::checkouts_dir;
use super::lifecycle::owner_file;
use crate::error::{Error, IoContext, Result};
use crate::rootfs;
use crate::rootfs::fsops::{remove_tree, set_mtime_from};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::util::fs::OwnerClaim;

/// Does the filesystem holding `dir` clone files (FICLONE)?
pub(super) fn reflink_supported(dir: &Path) -> bool {
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
pub(super) fn ensure_base(
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
    let tag = crate::util::fs::random_hex(8);
    let tmp = dir.join(format!(".tmp-{tag}"));
    let _claim = OwnerClaim::take(dir.join(owner_file(&tag)))?;
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

/// Copies the tree `src` into the empty directory `dst` with all metadata,
/// cloning file data (FICLONE; a plain copy if a clone fails) and keeping
/// hard links. Returns how many entries it made (the root not counted).
pub(super) fn clone_tree(src: &Path, dst: &Path, owners: bool) -> Result<u64> {
    let mut made = 0u64;
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
        if !rel.as_os_str().is_empty() && !ft.is_socket() {
            made += 1;
        }
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
        set_mtime_from(&to, &meta).map_err(io_at(&to))?;
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
        set_mtime_from(&to, &meta).map_err(io_at(&to))?;
    }
    Ok(made)
}

// ---------------------------------------------------------------- lifecycle
