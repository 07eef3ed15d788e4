//! Overlay mounts: mounting a stack of read-only layer directories (top
//! first) with an optional upper and work directory, unmounting, and
//! telling whether a path is a mount point.
//!
//! Guarantees: a mount carries any number of layers the kernel's overlay
//! accepts (up to 500): the new mount API adds one `lowerdir+` per layer
//! (Linux 6.8), so no option string can overflow a page; older kernels get
//! the classic `mount(2)` option string, refused with a clear error when it
//! would not fit. Container mounts are made with `redirect_dir=off` and
//! `metacopy=off`, so everything a container changed is whole in its upper
//! directory (a renamed directory is copied, never a redirect into a lower
//! layer) and diff and commit can read the upper directory alone.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, mount, move_mount, unmount,
};

/// The largest option string `mount(2)` takes (one page, with its NUL).
const OPTIONS_MAX: usize = 4095;

/// The directories of an overlay mount.
pub(crate) struct OverlaySpec<'a> {
    /// Read-only layers, top first (at least one).
    pub lowers: &'a [PathBuf],
    /// The writable upper and work directories (same filesystem), or none
    /// for a read-only mount.
    pub upper: Option<(&'a Path, &'a Path)>,
}

/// Mounts the overlay `spec` on `target` (an existing directory).
pub(crate) fn mount_overlay(spec: &OverlaySpec<'_>, target: &Path) -> io::Result<()> {
    if spec.lowers.is_empty() {
        return Err(io::Error::other(
            "an overlay needs at least one lower layer",
        ));
    }
    match mount_with_fs_api(spec, target)? {
        Ok(()) => Ok(()),
        // No new mount API, or no `lowerdir+` (before Linux 6.8).
        Err(Errno::NOSYS | Errno::INVAL | Errno::NOPKG) => mount_classic(spec, target),
        Err(e) => Err(e.into()),
    }
}

/// Paths as the kernel is given them: the real path where it is short
/// enough, else `/proc/self/fd/N` of an open handle on the directory (the
/// kernel follows that link to the same directory), so neither a long
/// store path nor many layers overflow a mount option.
struct ShortPaths {
    handles: Vec<std::os::fd::OwnedFd>,
}

impl ShortPaths {
    fn new() -> ShortPaths {
        ShortPaths {
            handles: Vec::new(),
        }
    }

    fn get(&mut self, path: &Path, limit: usize) -> io::Result<String> {
        use std::os::fd::AsRawFd;
        if let Some(s) = path.to_str()
            && s.len() <= limit
        {
            return Ok(s.to_string());
        }
        let fd = rustix::fs::open(
            path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let short = format!("/proc/self/fd/{}", fd.as_raw_fd());
        self.handles.push(fd);
        Ok(short)
    }
}

/// The most the new mount API takes in one string value.
const FS_VALUE_MAX: usize = 255;

fn mount_with_fs_api(spec: &OverlaySpec<'_>, target: &Path) -> io::Result<Result<(), Errno>> {
    let mut paths = ShortPaths::new();
    let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fs) => fs,
        Err(e) => return Ok(Err(e)),
    };
    for lower in spec.lowers {
        let value = paths.get(lower, FS_VALUE_MAX)?;
        if let Err(e) = fsconfig_set_string(&fs, "lowerdir+", value.as_str()) {
            return Ok(Err(e));
        }
    }
    if let Some((upper, work)) = spec.upper {
        for (key, dir) in [("upperdir", upper), ("workdir", work)] {
            let value = paths.get(dir, FS_VALUE_MAX)?;
            if let Err(e) = fsconfig_set_string(&fs, key, value.as_str()) {
                return Ok(Err(e));
            }
        }
    }
    for (key, value) in [
        ("redirect_dir", "off"),
        ("metacopy", "off"),
        ("index", "off"),
    ] {
        // Older kernels may not know every option; their default is off.
        let _ = fsconfig_set_string(&fs, key, value);
    }
    if let Err(e) = fsconfig_create(&fs) {
        return Ok(Err(e));
    }
    let attrs = if spec.upper.is_none() {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = match fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    Ok(move_mount(
        &mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    ))
}

/// `a,b:c\d` as overlay's option parser reads it back.
fn escaped(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn classic_options(
    spec: &OverlaySpec<'_>,
    paths: &mut ShortPaths,
    limit: usize,
) -> io::Result<String> {
    let mut lowers = Vec::with_capacity(spec.lowers.len());
    for lower in spec.lowers {
        lowers.push(escaped(&paths.get(lower, limit)?));
    }
    let mut options = format!("lowerdir={}", lowers.join(":"));
    if let Some((upper, work)) = spec.upper {
        let upper = escaped(&paths.get(upper, limit)?);
        let work = escaped(&paths.get(work, limit)?);
        options.push_str(&format!(",upperdir={upper},workdir={work}"));
    }
    options.push_str(",redirect_dir=off,metacopy=off,index=off");
    Ok(options)
}

fn mount_classic(spec: &OverlaySpec<'_>, target: &Path) -> io::Result<()> {
    let mut paths = ShortPaths::new();
    let mut options = classic_options(spec, &mut paths, usize::MAX)?;
    if options.len() > OPTIONS_MAX {
        options = classic_options(spec, &mut paths, 0)?;
    }
    if options.len() > OPTIONS_MAX {
        return Err(io::Error::other(format!(
            "{} layers do not fit in one overlay option string ({} bytes, at most {OPTIONS_MAX}) \
             and this kernel has no `lowerdir+` (Linux 6.8)",
            spec.lowers.len(),
            options.len()
        )));
    }
    let flags = if spec.upper.is_none() {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    let options =
        std::ffi::CString::new(options).map_err(|_| io::Error::other("a path holds a NUL byte"))?;
    mount(
        "overlay",
        target,
        "overlay",
        flags,
        Some(options.as_c_str()),
    )?;
    Ok(())
}

/// Unmounts `target`; a mount still in use is detached (it goes once its
/// last user leaves), so no stale mount stays behind. Not mounted is fine.
pub(crate) fn unmount_overlay(target: &Path) -> io::Result<()> {
    if !is_mount_point(target) {
        return Ok(());
    }
    match unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::BUSY) => Ok(unmount(target, UnmountFlags::DETACH)?),
        Err(Errno::INVAL) if !is_mount_point(target) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Is `path` the root of a mount (never following a symlink)?
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let Ok(st) = statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) else {
        return false;
    };
    if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
        return st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
    }
    let Some(parent) = path.parent() else {
        return true;
    };
    match statx(CWD, parent, AtFlags::empty(), StatxFlags::BASIC_STATS) {
        Ok(p) => (p.stx_dev_major, p.stx_dev_minor) != (st.stx_dev_major, st.stx_dev_minor),
        Err(_) => false,
    }
}

/// Unmounts every mount at or below `dir`, deepest first, so that what is
/// there can be removed without reaching into another filesystem.
pub(crate) fn unmount_below(dir: &Path) -> crate::error::Result<()> {
    for mount in mounts_below(dir) {
        unmount_overlay(&mount)
            .map_err(|e| crate::error::Error::io(format!("unmounting {}", mount.display()), e))?;
    }
    Ok(())
}

/// Mount points at or below `dir`, deepest first (from `/proc/self/mountinfo`).
pub(crate) fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(field))))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(oct) = field.get(i + 1..i + 4)
            && oct.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                oct.iter()
                    .fold(0u8, |acc, b| acc.wrapping_mul(8) + (b - b'0')),
            );
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// Can overlays with an upper directory be mounted under `dir` (running as
/// root, overlay in the kernel, a filesystem that can be an upper layer)?
/// Probed once per directory and process with a throwaway mount.
pub(crate) fn overlay_usable(dir: &Path) -> bool {
    static PROBED: Mutex<Option<HashMap<PathBuf, bool>>> = Mutex::new(None);
    let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    let map = probed.get_or_insert_with(HashMap::new);
    if let Some(&ok) = map.get(dir) {
        return ok;
    }
    let ok = probe(dir).is_ok();
    map.insert(dir.to_path_buf(), ok);
    ok
}

fn probe(dir: &Path) -> io::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Err(io::Error::other("not root"));
    }
    let base = dir.join(format!(".overlay-probe-{}", crate::util::fs::random_hex(6)));
    let made = (|| -> io::Result<()> {
        for sub in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir_all(base.join(sub))?;
        }
        std::fs::write(base.join("lower/f"), b"x")?;
        let lowers = [base.join("lower")];
        let (upper, work) = (base.join("upper"), base.join("work"));
        let spec = OverlaySpec {
            lowers: &lowers,
            upper: Some((&upper, &work)),
        };
        let merged = base.join("merged");
        mount_overlay(&spec, &merged)?;
        // A whiteout proves the upper filesystem can take part.
        let removed = std::fs::remove_file(merged.join("f"));
        unmount_overlay(&merged)?;
        removed
    })();
    let merged = base.join("merged");
    let _ = unmount_overlay(&merged);
    if !is_mount_point(&merged) {
        let _ = std::fs::remove_dir_all(&base);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_mountinfo() {
        assert_eq!(escaped("/a,b:c\\d"), "/a\\,b\\:c\\\\d");
        assert_eq!(unescape_mountinfo(b"/a\\040b\\134"), b"/a b\\");
        assert_eq!(unescape_mountinfo(b"/x\\04"), b"/x\\04");
    }
}
