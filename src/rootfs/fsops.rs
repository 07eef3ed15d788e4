//! Filesystem operations relative to directory handles that never follow
//! a symlink where one could lead outside the root being written:
//! `openat(O_NOFOLLOW)`, `*at` calls with `AT_SYMLINK_NOFOLLOW`, and an
//! iterative tree removal that cannot overflow the stack.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::error::{Error, Result};

pub(crate) fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

pub(crate) fn ts(t: (i64, u32)) -> Timestamps {
    let spec = Timespec {
        tv_sec: t.0,
        tv_nsec: t.1.min(999_999_999) as _,
    };
    Timestamps {
        last_access: spec,
        last_modification: spec,
    }
}

/// The path of `rel` (`a/b`, the root is empty) under `root`: `root` itself
/// for the root, never `root/` (a trailing slash would follow a symlink put
/// in the root's place).
pub(crate) fn path_under(root: &Path, rel: &[u8]) -> std::path::PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(os(rel))
    }
}

/// Sets the access and modification times of `path` (never following a
/// symlink) to the mtime in `meta`.
pub(crate) fn set_mtime_from(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    rfs::utimensat(
        rfs::CWD,
        path,
        &ts((meta.mtime(), meta.mtime_nsec() as u32)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Lists a directory's entries (without `.` and `..`).
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let mut out = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

pub(crate) fn open_dir_nofollow(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes `name` in `parent` (a whole tree for a directory) without ever
/// following a symlink; directories are made writable first. Iterative, so
/// a very deep tree cannot overflow the stack. Missing is fine.
pub(crate) fn remove_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rfs::unlinkat(parent, name, AtFlags::empty())?);
    }
    let top = open_dir_nofollow(parent, name)?;
    // Never remove through a mount point (an overlay container's root):
    // what is below it belongs to another filesystem.
    let device = rfs::fstat(&top)?.st_dev;
    if device != rfs::fstat(parent)?.st_dev {
        return Err(mount_point_refused(name));
    }
    let _ = rfs::fchmod(&top, Mode::from_raw_mode(0o700));
    let names = list_dir(top.as_fd())?;
    // Frames: (directory, names left, its name in the frame below).
    let mut stack: Vec<(OwnedFd, Vec<CString>, Option<CString>)> = vec![(top, names, None)];
    while let Some((dir, names, _)) = stack.last_mut() {
        if let Some(child) = names.pop() {
            let st = match rfs::statat(dir.as_fd(), &child, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                if st.st_dev != device {
                    return Err(mount_point_refused(os(child.to_bytes())));
                }
                let sub = open_dir_nofollow(dir.as_fd(), os(child.to_bytes()))?;
                let _ = rfs::fchmod(&sub, Mode::from_raw_mode(0o700));
                let sub_names = list_dir(sub.as_fd())?;
                stack.push((sub, sub_names, Some(child)));
            } else {
                rfs::unlinkat(dir.as_fd(), &child, AtFlags::empty())?;
            }
        } else if let Some((_, _, Some(own_name))) = stack.pop()
            && let Some((below, _, _)) = stack.last()
        {
            rfs::unlinkat(below.as_fd(), &own_name, AtFlags::REMOVEDIR)?;
        }
    }
    Ok(rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}

fn mount_point_refused(name: &(impl AsRef<OsStr> + ?Sized)) -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!(
            "{} is a mount point; refusing to remove what is mounted there",
            Path::new(name.as_ref()).display()
        ),
    )
}

/// Removes a directory tree at a path (the path itself is not followed if
/// it is a symlink). Missing is fine.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            },
            n,
        ),
        _ => {
            return Err(Error::invalid(
                path.display().to_string(),
                "refusing to remove this path",
            ));
        }
    };
    let dir = match rfs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => d,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::io(format!("opening {}", parent.display()), e.into())),
    };
    remove_at(dir.as_fd(), name).map_err(|e| Error::io(format!("removing {}", path.display()), e))
}

/// A path that is missing, or no longer a real directory.
pub(crate) fn is_gone(e: &io::Error) -> bool {
    [Errno::NOENT, Errno::NOTDIR, Errno::LOOP]
        .iter()
        .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
}

pub(crate) fn uid(id: u64) -> rfs::Uid {
    rfs::Uid::from_raw(u32::try_from(id).unwrap_or(u32::MAX - 1))
}

pub(crate) fn gid(id: u64) -> rfs::Gid {
    rfs::Gid::from_raw(u32::try_from(id).unwrap_or(u32::MAX - 1))
}

/// True when this process can apply ownership (it is root).
pub(crate) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}
