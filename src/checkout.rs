//! Checkout: applying an image's layer tar streams, in order, onto a
//! directory with OCI semantics, straight from the store's get pipeline
//! (through an in-process pipe, never a temporary tar).
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

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::digest::Digest;

/// Prefix of a whiteout entry's file name.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// File name of an opaque-directory marker.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Symlinks followed while resolving one path.
const MAX_SYMLINK_HOPS: usize = 40;
/// Deepest path accepted (components); deeper entries are refused.
pub(crate) const MAX_DEPTH: usize = 1024;

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
}

/// Metadata of one tar entry, PAX records applied.
pub(crate) struct EntryMeta {
    pub path: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: (i64, u32),
    pub link: Option<Vec<u8>>,
    pub device: (u32, u32),
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Reads an entry's metadata (header, GNU long names, PAX records).
/// The error for a layer stream that is not a readable tar.
pub(crate) fn bad_tar(layer: &Digest) -> impl Fn(io::Error) -> Error + '_ {
    move |e| {
        Error::invalid(
            format!("layer {layer}"),
            format!("cannot read it as a tar archive: {e}"),
        )
    }
}

/// Hands every entry of the layer tar in `reader` to `apply`, then reads
/// the stream to its end, so the store checks the whole layer's DiffID
/// even when the tar stops before its last bytes.
pub(crate) fn for_each_entry(
    reader: &mut dyn Read,
    layer: &Digest,
    mut apply: impl FnMut(&mut tar::Entry<'_, &mut dyn Read>, &EntryMeta) -> Result<()>,
) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(bad_tar(layer))? {
        let mut entry = entry.map_err(bad_tar(layer))?;
        let meta = entry_meta(&mut entry).map_err(bad_tar(layer))?;
        apply(&mut entry, &meta)?;
    }
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(bad_tar(layer))?;
    Ok(())
}

pub(crate) fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<EntryMeta> {
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let mut uid = header.uid().unwrap_or(0);
    let mut gid = header.gid().unwrap_or(0);
    let mut mtime = (
        header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64,
        0u32,
    );
    let device = (
        header.device_major().ok().flatten().unwrap_or(0),
        header.device_minor().ok().flatten().unwrap_or(0),
    );
    let path = entry.path_bytes().into_owned();
    let link = entry.link_name_bytes().map(|l| l.into_owned());
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let text = std::str::from_utf8(value).unwrap_or("");
            match key {
                "uid" => uid = text.parse().unwrap_or(uid),
                "gid" => gid = text.parse().unwrap_or(gid),
                "mtime" => mtime = parse_pax_time(text).unwrap_or(mtime),
                k => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.to_string(), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(EntryMeta {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        link,
        device,
        xattrs,
    })
}

/// `123` or `123.456789` -> (seconds, nanoseconds); None if malformed.
fn parse_pax_time(text: &str) -> Option<(i64, u32)> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += c.to_digit(10)? * 10u32.pow(8 - i as u32);
    }
    Some((secs, nanos))
}

/// Splits a tar path into components lexically: empty and `.` parts are
/// dropped (so a leading `/` means the root), `..` removes the previous
/// component. Err when `..` would climb above the root, a component holds
/// a NUL byte, or the path is deeper than [`MAX_DEPTH`].
pub(crate) fn entry_components(raw: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("its path climbs above the root with \"..\"".into());
                }
            }
            p if p.contains(&0) => return Err("its path contains a NUL byte".into()),
            p => out.push(p.to_vec()),
        }
        if out.len() > MAX_DEPTH {
            return Err(format!("its path is more than {MAX_DEPTH} levels deep"));
        }
    }
    Ok(out)
}

/// `a/b` from components (the root is the empty string).
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
        out.extend_from_slice(parent);
        out.push(b'/');
        out.extend_from_slice(name);
        out
    }
}

/// The path and all its ancestors (not the root), for "touched" sets.
pub(crate) fn with_ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let cuts = path
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| i)
        .chain(std::iter::once(path.len()));
    cuts.map(move |i| &path[..i])
}

/// A whiteout entry's meaning.
pub(crate) enum Whiteout<'a> {
    /// Hide all lower content of the directory.
    Opaque,
    /// Delete this name from the directory.
    Remove(&'a [u8]),
}

/// If `name` is a whiteout, what it does; Err for a malformed one.
pub(crate) fn whiteout(name: &[u8]) -> std::result::Result<Option<Whiteout<'_>>, String> {
    if name == OPAQUE_MARKER {
        return Ok(Some(Whiteout::Opaque));
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(None),
        Some(b"" | b"." | b"..") => Err("malformed whiteout name".into()),
        Some(target) => Ok(Some(Whiteout::Remove(target))),
    }
}

pub(crate) fn display(path: &[u8]) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn ts(t: (i64, u32)) -> Timestamps {
    let spec = Timespec {
        tv_sec: t.0,
        tv_nsec: t.1.min(999_999_999) as _,
    };
    Timestamps {
        last_access: spec,
        last_modification: spec,
    }
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

fn open_dir_nofollow(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
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

struct DirMeta {
    mode: u32,
    mtime: Option<(i64, u32)>,
}

struct Resolved {
    fd: OwnedFd,
    path: Vec<u8>,
}

/// Applies layers onto a directory (see the module documentation).
pub(crate) struct Applier {
    root: OwnedFd,
    owners: bool,
    deferred: BTreeMap<Vec<u8>, DirMeta>,
    /// Entries applied.
    pub entries: u64,
    /// Whiteouts applied.
    pub whiteouts: u64,
    /// Things skipped.
    pub warnings: Vec<String>,
}

impl Applier {
    /// An applier onto the directory `dir`; `owners` applies uid/gid.
    pub(crate) fn new(dir: &Path, owners: bool) -> Result<Applier> {
        let root = rfs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("opening {}", dir.display()), e.into()))?;
        Ok(Applier {
            root,
            owners,
            deferred: BTreeMap::new(),
            entries: 0,
            whiteouts: 0,
            warnings: Vec::new(),
        })
    }

    fn root(&self) -> io::Result<OwnedFd> {
        self.root.try_clone()
    }

    /// Opens the real directories `comps` (no symlinks followed); None if
    /// any is missing or not a directory.
    fn open_plain(&self, comps: &[Vec<u8>]) -> io::Result<Option<OwnedFd>> {
        let mut cur = self.root()?;
        for c in comps {
            match rfs::openat(
                &cur,
                os(c),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => cur = fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(cur))
    }

    /// Resolves a directory path under the root, following symlinks as if
    /// the root were `/`. With `create`, missing directories are made (and
    /// a non-directory on the way is an error); without, None is returned.
    fn resolve(
        &mut self,
        comps: &[Vec<u8>],
        create: bool,
    ) -> std::result::Result<Option<Resolved>, String> {
        let io_err = |e: io::Error| e.to_string();
        let mut pending: VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut stack: Vec<Vec<u8>> = Vec::new();
        let mut cur = self.root().map_err(io_err)?;
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                stack.pop();
                cur = match self.open_plain(&stack).map_err(io_err)? {
                    Some(fd) => fd,
                    None => return Err("a directory vanished during resolution".into()),
                };
                continue;
            }
            if stack.len() >= MAX_DEPTH {
                return Err(format!("path is more than {MAX_DEPTH} levels deep"));
            }
            match rfs::statat(&cur, os(&c), AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {
                    if !create {
                        return Ok(None);
                    }
                    rfs::mkdirat(&cur, os(&c), Mode::from_raw_mode(0o700))
                        .map_err(|e| io_err(e.into()))?;
                    let mut path = stack.clone();
                    path.push(c.clone());
                    self.deferred.entry(path.join(&b'/')).or_insert(DirMeta {
                        mode: 0o755,
                        mtime: None,
                    });
                }
                Err(e) => return Err(io_err(e.into())),
                Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {}
                    FileType::Symlink => {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err("too many levels of symbolic links".into());
                        }
                        let target = rfs::readlinkat(&cur, os(&c), Vec::new())
                            .map_err(|e| io_err(e.into()))?;
                        let target = target.as_bytes();
                        if target.starts_with(b"/") {
                            stack.clear();
                            cur = self.root().map_err(io_err)?;
                        }
                        for part in target.split(|&b| b == b'/').rev() {
                            if !part.is_empty() {
                                pending.push_front(part.to_vec());
                            }
                        }
                        continue;
                    }
                    _ => {
                        if !create {
                            return Ok(None);
                        }
                        let mut path = stack.clone();
                        path.push(c);
                        return Err(format!("{} is not a directory", display(&path.join(&b'/'))));
                    }
                },
            }
            cur = rfs::openat(
                &cur,
                os(&c),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(e.into()))?;
            stack.push(c);
        }
        Ok(Some(Resolved {
            fd: cur,
            path: stack.join(&b'/'),
        }))
    }

    fn forget_deferred(&mut self, path: &[u8]) {
        self.deferred.remove(path);
        let mut lo = path.to_vec();
        lo.push(b'/');
        let mut hi = path.to_vec();
        hi.push(b'/' + 1);
        let doomed: Vec<Vec<u8>> = self
            .deferred
            .range(lo..hi)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.deferred.remove(&k);
        }
    }

    fn remove(&mut self, parent: BorrowedFd<'_>, name: &[u8], full: &[u8]) -> io::Result<()> {
        remove_at(parent, os(name))?;
        self.forget_deferred(full);
        Ok(())
    }

    /// Removes from the directory everything not touched by this layer.
    fn clear_untouched(&mut self, dir: &Resolved, touched: &HashSet<Vec<u8>>) -> io::Result<()> {
        let mut stack = vec![(dir.fd.try_clone()?, dir.path.clone())];
        while let Some((fd, path)) = stack.pop() {
            let listing = open_dir_nofollow(fd.as_fd(), os(b"."))?;
            for name in list_dir(listing.as_fd())? {
                let name = name.to_bytes();
                let full = join(&path, name);
                if !touched.contains(&full) {
                    self.remove(fd.as_fd(), name, &full)?;
                    continue;
                }
                let st = rfs::statat(&fd, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    let sub = rfs::openat(
                        &fd,
                        os(name),
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    stack.push((sub, full));
                }
            }
        }
        Ok(())
    }

    /// Applies one layer read from `reader`; `layer` names it in errors.
    /// Reads the stream to its end (so the store can check the DiffID).
    pub(crate) fn apply_layer(&mut self, reader: &mut dyn Read, layer: &Digest) -> Result<()> {
        let mut touched: HashSet<Vec<u8>> = HashSet::new();
        for_each_entry(reader, layer, |entry, meta| {
            self.apply_entry(entry, meta, layer, &mut touched)
        })
    }

    fn apply_entry(
        &mut self,
        data: &mut dyn Read,
        meta: &EntryMeta,
        layer: &Digest,
        touched: &mut HashSet<Vec<u8>>,
    ) -> Result<()> {
        let refuse = |why: String| {
            Error::invalid(
                format!("layer {layer}"),
                format!(
                    "entry {:?}: {why}; refusing to check it out",
                    String::from_utf8_lossy(&meta.path)
                ),
            )
        };
        let failed = |what: &str, e: io::Error| {
            Error::io(
                format!(
                    "layer {layer}: entry {:?}: {what}",
                    String::from_utf8_lossy(&meta.path)
                ),
                e,
            )
        };
        let comps = entry_components(&meta.path).map_err(&refuse)?;
        let Some((name, parent_comps)) = comps.split_last() else {
            // The root directory itself: only its metadata.
            if meta.kind.is_dir() {
                if self.owners {
                    let fd = open_dir_nofollow(self.root.as_fd(), os(b"."))
                        .map_err(|e| failed("opening the root", e))?;
                    rfs::fchown(&fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                        .map_err(|e| failed("setting owner", e.into()))?;
                }
                self.deferred.insert(
                    Vec::new(),
                    DirMeta {
                        mode: meta.mode,
                        mtime: Some(meta.mtime),
                    },
                );
            }
            return Ok(());
        };
        if let Some(wh) = whiteout(name).map_err(&refuse)? {
            self.whiteouts += 1;
            let Some(parent) = self.resolve(parent_comps, false).map_err(&refuse)? else {
                return Ok(());
            };
            match wh {
                Whiteout::Opaque => self
                    .clear_untouched(&parent, touched)
                    .map_err(|e| failed("applying opaque whiteout", e))?,
                Whiteout::Remove(target) => {
                    let full = join(&parent.path, target);
                    // Whiteouts hide lower layers, never this layer's entries.
                    if !touched.contains(&full) {
                        self.remove(parent.fd.as_fd(), target, &full)
                            .map_err(|e| failed("applying whiteout", e))?;
                    }
                }
            }
            return Ok(());
        }
        let parent = self
            .resolve(parent_comps, true)
            .map_err(&refuse)?
            .ok_or_else(|| refuse("its directory cannot be created".into()))?;
        let full = join(&parent.path, name);
        for p in with_ancestors(&full) {
            if !touched.contains(p) {
                touched.insert(p.to_vec());
            }
        }
        self.entries += 1;
        let pfd = parent.fd.as_fd();
        let existing = match rfs::statat(pfd, os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(failed("inspecting", e.into())),
        };
        let existing_type = existing.map(|st| FileType::from_raw_mode(st.st_mode));
        use tar::EntryType as T;
        match meta.kind {
            T::Directory => {
                if existing_type != Some(FileType::Directory) {
                    if existing.is_some() {
                        self.remove(pfd, name, &full)
                            .map_err(|e| failed("replacing", e))?;
                    }
                    rfs::mkdirat(pfd, os(name), Mode::from_raw_mode(0o700))
                        .map_err(|e| failed("creating directory", e.into()))?;
                }
                self.set_owner(pfd, name, meta)
                    .map_err(|e| failed("setting owner", e))?;
                if !meta.xattrs.is_empty() {
                    let fd = open_dir_nofollow(pfd, os(name))
                        .map_err(|e| failed("opening directory", e))?;
                    self.set_xattrs(fd.as_fd(), meta);
                }
                self.deferred.insert(
                    full,
                    DirMeta {
                        mode: meta.mode,
                        mtime: Some(meta.mtime),
                    },
                );
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                if existing.is_some() {
                    self.remove(pfd, name, &full)
                        .map_err(|e| failed("replacing", e))?;
                }
                let fd = rfs::openat(
                    pfd,
                    os(name),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| failed("creating file", e.into()))?;
                let mut file = std::fs::File::from(fd);
                io::copy(data, &mut file).map_err(|e| failed("writing file", e))?;
                if self.owners {
                    rfs::fchown(&file, Some(uid(meta.uid)), Some(gid(meta.gid)))
                        .map_err(|e| failed("setting owner", e.into()))?;
                }
                rfs::fchmod(&file, Mode::from_raw_mode(meta.mode))
                    .map_err(|e| failed("setting mode", e.into()))?;
                self.set_xattrs(file.as_fd(), meta);
                rfs::futimens(&file, &ts(meta.mtime))
                    .map_err(|e| failed("setting mtime", e.into()))?;
            }
            T::Symlink => {
                let target = meta.link.as_deref().unwrap_or_default();
                if target.is_empty() || target.contains(&0) {
                    return Err(refuse("symlink with an empty or invalid target".into()));
                }
                if existing.is_some() {
                    self.remove(pfd, name, &full)
                        .map_err(|e| failed("replacing", e))?;
                }
                rfs::symlinkat(os(target), pfd, os(name))
                    .map_err(|e| failed("creating symlink", e.into()))?;
                self.finish_special(pfd, name, meta)
                    .map_err(|e| failed("setting metadata", e))?;
            }
            T::Link => {
                let target = meta.link.as_deref().unwrap_or_default();
                let tcomps = entry_components(target)
                    .map_err(|why| refuse(format!("hard link target: {why}")))?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(refuse("hard link to the root directory".into()));
                };
                let missing = || {
                    refuse(format!(
                        "hard link target {:?} does not exist in the root filesystem",
                        String::from_utf8_lossy(target)
                    ))
                };
                let tdir = self
                    .resolve(tparent, false)
                    .map_err(&refuse)?
                    .ok_or_else(missing)?;
                let tst = match rfs::statat(&tdir.fd, os(tname), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(Errno::NOENT) => return Err(missing()),
                    Err(e) => return Err(failed("inspecting hard link target", e.into())),
                };
                if FileType::from_raw_mode(tst.st_mode) == FileType::Directory {
                    return Err(refuse("hard link to a directory".into()));
                }
                if let Some(st) = existing {
                    if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino {
                        return Ok(());
                    }
                    self.remove(pfd, name, &full)
                        .map_err(|e| failed("replacing", e))?;
                }
                rfs::linkat(&tdir.fd, os(tname), pfd, os(name), AtFlags::empty())
                    .map_err(|e| failed("creating hard link", e.into()))?;
            }
            T::Char | T::Block | T::Fifo => {
                if meta.kind != T::Fifo && !self.owners {
                    self.entries -= 1;
                    self.warnings.push(format!(
                        "layer {layer}: device node {} skipped (creating devices needs root)",
                        display(&full)
                    ));
                    return Ok(());
                }
                if existing.is_some() {
                    self.remove(pfd, name, &full)
                        .map_err(|e| failed("replacing", e))?;
                }
                let file_type = match meta.kind {
                    T::Char => FileType::CharacterDevice,
                    T::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                rfs::mknodat(
                    pfd,
                    os(name),
                    file_type,
                    Mode::from_raw_mode(0o600),
                    rfs::makedev(meta.device.0, meta.device.1),
                )
                .map_err(|e| failed("creating device node", e.into()))?;
                self.set_owner(pfd, name, meta)
                    .map_err(|e| failed("setting owner", e))?;
                rfs::chmodat(
                    pfd,
                    os(name),
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
                .map_err(|e| failed("setting mode", e.into()))?;
                rfs::utimensat(pfd, os(name), &ts(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| failed("setting mtime", e.into()))?;
            }
            other => {
                self.entries -= 1;
                self.warnings.push(format!(
                    "layer {layer}: entry {} of type {other:?} skipped",
                    display(&full)
                ));
            }
        }
        Ok(())
    }

    /// Gives `name` the entry's uid and gid, when ownership is applied at
    /// all (as root); never follows a symlink.
    fn set_owner(&self, pfd: BorrowedFd<'_>, name: &[u8], meta: &EntryMeta) -> io::Result<()> {
        if self.owners {
            rfs::chownat(
                pfd,
                os(name),
                Some(uid(meta.uid)),
                Some(gid(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }

    fn finish_special(&self, pfd: BorrowedFd<'_>, name: &[u8], meta: &EntryMeta) -> io::Result<()> {
        self.set_owner(pfd, name, meta)?;
        rfs::utimensat(pfd, os(name), &ts(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    fn set_xattrs(&mut self, fd: BorrowedFd<'_>, meta: &EntryMeta) {
        for (key, value) in &meta.xattrs {
            if let Err(e) = rfs::fsetxattr(fd, key.as_str(), value, rfs::XattrFlags::empty()) {
                self.warnings.push(format!(
                    "{}: xattr {key} not set: {}",
                    String::from_utf8_lossy(&meta.path),
                    io::Error::from(e)
                ));
            }
        }
    }

    /// Applies the deferred directory modes and mtimes, deepest first.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let mut dirs: Vec<(Vec<u8>, DirMeta)> =
            std::mem::take(&mut self.deferred).into_iter().collect();
        dirs.sort_by_key(|(p, _)| {
            std::cmp::Reverse(p.iter().filter(|&&b| b == b'/').count() + usize::from(!p.is_empty()))
        });
        for (path, meta) in dirs {
            let comps: Vec<Vec<u8>> = if path.is_empty() {
                Vec::new()
            } else {
                path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect()
            };
            let failed = |e: io::Error| {
                Error::io(
                    format!("setting mode and mtime of directory {}", display(&path)),
                    e,
                )
            };
            let fd = match comps.split_last() {
                None => open_dir_nofollow(self.root.as_fd(), os(b".")).map_err(failed)?,
                Some((name, parent)) => {
                    let Some(pfd) = self.open_plain(parent).map_err(failed)? else {
                        continue;
                    };
                    match open_dir_nofollow(pfd.as_fd(), os(name)) {
                        Ok(fd) => fd,
                        Err(e) if is_gone(&e) => continue,
                        Err(e) => return Err(failed(e)),
                    }
                }
            };
            rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(|e| failed(e.into()))?;
            if let Some(t) = meta.mtime {
                rfs::futimens(&fd, &ts(t)).map_err(|e| failed(e.into()))?;
            }
        }
        Ok(())
    }
}

/// A path that is missing, or no longer a real directory.
fn is_gone(e: &io::Error) -> bool {
    [Errno::NOENT, Errno::NOTDIR, Errno::LOOP]
        .iter()
        .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
}

fn uid(id: u64) -> rfs::Uid {
    rfs::Uid::from_raw(u32::try_from(id).unwrap_or(u32::MAX - 1))
}

fn gid(id: u64) -> rfs::Gid {
    rfs::Gid::from_raw(u32::try_from(id).unwrap_or(u32::MAX - 1))
}

/// True when this process can apply ownership (it is root).
pub(crate) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
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
    let mut applier = Applier::new(dir, owners)?;
    for layer in layers {
        store.stream_layer(layer, |reader| applier.apply_layer(reader, layer))?;
    }
    applier.finish()?;
    Ok(applier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_lexical_and_bounded() {
        assert_eq!(
            entry_components(b"./a//b/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            entry_components(b"/abs/x").unwrap(),
            vec![b"abs".to_vec(), b"x".to_vec()]
        );
        assert_eq!(entry_components(b"a/../b").unwrap(), vec![b"b".to_vec()]);
        assert!(entry_components(b"../x").is_err());
        assert!(entry_components(b"a/../../x").is_err());
        assert!(entry_components(b"./").unwrap().is_empty());
        let deep = "a/".repeat(MAX_DEPTH + 1);
        assert!(entry_components(deep.as_bytes()).is_err());
    }

    #[test]
    fn whiteout_names() {
        assert!(matches!(
            whiteout(b".wh..wh..opq"),
            Ok(Some(Whiteout::Opaque))
        ));
        assert!(matches!(
            whiteout(b".wh.foo"),
            Ok(Some(Whiteout::Remove(b"foo")))
        ));
        assert!(whiteout(b".wh.").is_err());
        assert!(whiteout(b".wh...").is_err());
        assert!(matches!(whiteout(b"foo"), Ok(None)));
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn ancestors() {
        let got: Vec<&[u8]> = with_ancestors(b"a/b/c").collect();
        assert_eq!(got, vec![&b"a"[..], b"a/b", b"a/b/c"]);
    }
}
