//! The applier: writes layer entries onto a real directory with OCI
//! semantics (see the `rootfs` module documentation for the rules and the
//! guarantee against hostile layers).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::rootfs::entry::{
    EntryMeta, Whiteout, display, entry_components, for_each_entry, join, whiteout, with_ancestors,
};
use crate::rootfs::fsops::{gid, is_gone, list_dir, open_dir_nofollow, os, remove_at, ts, uid};
use crate::rootfs::resolve::{self, Found, RootDirs};
use crate::store::digest::Digest;

struct DirMeta {
    mode: u32,
    mtime: Option<(i64, u32)>,
}

pub(crate) struct Resolved {
    fd: OwnedFd,
    pub path: Vec<u8>,
}

/// The entry being applied and its layer, for error messages.
struct EntryContext<'a> {
    meta: &'a EntryMeta,
    layer: &'a Digest,
}

impl EntryContext<'_> {
    /// The layer is refused: this entry breaks a rule.
    fn refuse(&self, why: String) -> Error {
        Error::invalid(
            format!("layer {}", self.layer),
            format!(
                "entry {:?}: {why}; refusing to check it out",
                String::from_utf8_lossy(&self.meta.path)
            ),
        )
    }

    /// Writing this entry failed.
    fn failed(&self, what: &str, e: io::Error) -> Error {
        Error::io(
            format!(
                "layer {}: entry {:?}: {what}",
                self.layer,
                String::from_utf8_lossy(&self.meta.path)
            ),
            e,
        )
    }
}

/// Where a (non-root, non-whiteout) entry goes: its parent directory, its
/// name there, its root-relative path and what is there now.
struct Target<'a> {
    pfd: BorrowedFd<'a>,
    name: &'a [u8],
    full: Vec<u8>,
    existing: Option<rfs::Stat>,
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
    /// Directories an opaque marker cleared (resolved paths), in order.
    pub opaque_dirs: Vec<Vec<u8>>,
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
            opaque_dirs: Vec::new(),
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

    /// Resolves a directory path under the root (see `rootfs::resolve`).
    pub(crate) fn resolve(
        &mut self,
        comps: &[Vec<u8>],
        create: bool,
    ) -> std::result::Result<Option<Resolved>, String> {
        Ok(resolve::resolve(self, comps, create)?.map(|r| Resolved {
            fd: r.dir,
            path: r.path,
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
        let at = EntryContext { meta, layer };
        let comps = entry_components(&meta.path).map_err(|why| at.refuse(why))?;
        let Some((name, parent_comps)) = comps.split_last() else {
            return self.apply_root(&at);
        };
        if let Some(wh) = whiteout(name).map_err(|why| at.refuse(why))? {
            return self.apply_whiteout(&at, wh, parent_comps, touched);
        }
        let parent = self
            .resolve(parent_comps, true)
            .map_err(|why| at.refuse(why))?
            .ok_or_else(|| at.refuse("its directory cannot be created".into()))?;
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
            Err(e) => return Err(at.failed("inspecting", e.into())),
        };
        let target = Target {
            pfd,
            name,
            full,
            existing,
        };
        use tar::EntryType as T;
        match meta.kind {
            T::Directory => self.apply_dir(&at, target),
            T::Regular | T::Continuous | T::GNUSparse => self.apply_file(&at, target, data),
            T::Symlink => self.apply_symlink(&at, target),
            T::Link => self.apply_hard_link(&at, target),
            T::Char | T::Block | T::Fifo => self.apply_special(&at, target),
            other => {
                self.entries -= 1;
                self.warnings.push(format!(
                    "layer {layer}: entry {} of type {other:?} skipped",
                    display(&target.full)
                ));
                Ok(())
            }
        }
    }

    /// An entry for the root directory itself: only its metadata.
    fn apply_root(&mut self, at: &EntryContext<'_>) -> Result<()> {
        let meta = at.meta;
        if meta.kind.is_dir() {
            if self.owners {
                let fd = open_dir_nofollow(self.root.as_fd(), os(b"."))
                    .map_err(|e| at.failed("opening the root", e))?;
                rfs::fchown(&fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                    .map_err(|e| at.failed("setting owner", e.into()))?;
            }
            self.deferred.insert(
                Vec::new(),
                DirMeta {
                    mode: meta.mode,
                    mtime: Some(meta.mtime),
                },
            );
        }
        Ok(())
    }

    fn apply_whiteout(
        &mut self,
        at: &EntryContext<'_>,
        wh: Whiteout<'_>,
        parent_comps: &[Vec<u8>],
        touched: &HashSet<Vec<u8>>,
    ) -> Result<()> {
        self.whiteouts += 1;
        let Some(parent) = self
            .resolve(parent_comps, false)
            .map_err(|why| at.refuse(why))?
        else {
            return Ok(());
        };
        match wh {
            Whiteout::Opaque => {
                self.clear_untouched(&parent, touched)
                    .map_err(|e| at.failed("applying opaque whiteout", e))?;
                self.opaque_dirs.push(parent.path.clone());
            }
            Whiteout::Remove(target) => {
                let full = join(&parent.path, target);
                // Whiteouts hide lower layers, never this layer's entries.
                if !touched.contains(&full) {
                    self.remove(parent.fd.as_fd(), target, &full)
                        .map_err(|e| at.failed("applying whiteout", e))?;
                }
            }
        }
        Ok(())
    }

    /// Removes what is at the target, if anything, so a new node can go
    /// there.
    fn clear_target(&mut self, at: &EntryContext<'_>, t: &Target<'_>) -> Result<()> {
        if t.existing.is_some() {
            self.remove(t.pfd, t.name, &t.full)
                .map_err(|e| at.failed("replacing", e))?;
        }
        Ok(())
    }

    fn apply_dir(&mut self, at: &EntryContext<'_>, t: Target<'_>) -> Result<()> {
        let meta = at.meta;
        let existing_type = t.existing.map(|st| FileType::from_raw_mode(st.st_mode));
        // A directory over a directory only updates its metadata.
        if existing_type != Some(FileType::Directory) {
            self.clear_target(at, &t)?;
            rfs::mkdirat(t.pfd, os(t.name), Mode::from_raw_mode(0o700))
                .map_err(|e| at.failed("creating directory", e.into()))?;
        }
        self.set_owner(t.pfd, t.name, meta)
            .map_err(|e| at.failed("setting owner", e))?;
        if !meta.xattrs.is_empty() {
            let fd = open_dir_nofollow(t.pfd, os(t.name))
                .map_err(|e| at.failed("opening directory", e))?;
            self.set_xattrs(fd.as_fd(), meta);
        }
        self.deferred.insert(
            t.full,
            DirMeta {
                mode: meta.mode,
                mtime: Some(meta.mtime),
            },
        );
        Ok(())
    }

    fn apply_file(
        &mut self,
        at: &EntryContext<'_>,
        t: Target<'_>,
        data: &mut dyn Read,
    ) -> Result<()> {
        let meta = at.meta;
        self.clear_target(at, &t)?;
        let fd = rfs::openat(
            t.pfd,
            os(t.name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| at.failed("creating file", e.into()))?;
        let mut file = std::fs::File::from(fd);
        io::copy(data, &mut file).map_err(|e| at.failed("writing file", e))?;
        if self.owners {
            rfs::fchown(&file, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| at.failed("setting owner", e.into()))?;
        }
        rfs::fchmod(&file, Mode::from_raw_mode(meta.mode))
            .map_err(|e| at.failed("setting mode", e.into()))?;
        self.set_xattrs(file.as_fd(), meta);
        rfs::futimens(&file, &ts(meta.mtime)).map_err(|e| at.failed("setting mtime", e.into()))?;
        Ok(())
    }

    fn apply_symlink(&mut self, at: &EntryContext<'_>, t: Target<'_>) -> Result<()> {
        let target = at.meta.link.as_deref().unwrap_or_default();
        if target.is_empty() || target.contains(&0) {
            return Err(at.refuse("symlink with an empty or invalid target".into()));
        }
        self.clear_target(at, &t)?;
        rfs::symlinkat(os(target), t.pfd, os(t.name))
            .map_err(|e| at.failed("creating symlink", e.into()))?;
        self.finish_special(t.pfd, t.name, at.meta)
            .map_err(|e| at.failed("setting metadata", e))
    }

    /// A hard link can only name a file already inside the root.
    fn apply_hard_link(&mut self, at: &EntryContext<'_>, t: Target<'_>) -> Result<()> {
        let target = at.meta.link.as_deref().unwrap_or_default();
        let tcomps = entry_components(target)
            .map_err(|why| at.refuse(format!("hard link target: {why}")))?;
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(at.refuse("hard link to the root directory".into()));
        };
        let missing = || {
            at.refuse(format!(
                "hard link target {:?} does not exist in the root filesystem",
                String::from_utf8_lossy(target)
            ))
        };
        let tdir = self
            .resolve(tparent, false)
            .map_err(|why| at.refuse(why))?
            .ok_or_else(missing)?;
        let tst = match rfs::statat(&tdir.fd, os(tname), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(at.failed("inspecting hard link target", e.into())),
        };
        if FileType::from_raw_mode(tst.st_mode) == FileType::Directory {
            return Err(at.refuse("hard link to a directory".into()));
        }
        if let Some(st) = t.existing {
            if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino {
                return Ok(());
            }
            self.clear_target(at, &t)?;
        }
        rfs::linkat(&tdir.fd, os(tname), t.pfd, os(t.name), AtFlags::empty())
            .map_err(|e| at.failed("creating hard link", e.into()))
    }

    /// Device nodes (only as root) and fifos.
    fn apply_special(&mut self, at: &EntryContext<'_>, t: Target<'_>) -> Result<()> {
        use tar::EntryType as T;
        let meta = at.meta;
        if meta.kind != T::Fifo && !self.owners {
            self.entries -= 1;
            self.warnings.push(format!(
                "layer {}: device node {} skipped (creating devices needs root)",
                at.layer,
                display(&t.full)
            ));
            return Ok(());
        }
        self.clear_target(at, &t)?;
        let file_type = match meta.kind {
            T::Char => FileType::CharacterDevice,
            T::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        rfs::mknodat(
            t.pfd,
            os(t.name),
            file_type,
            Mode::from_raw_mode(0o600),
            rfs::makedev(meta.device.0, meta.device.1),
        )
        .map_err(|e| at.failed("creating device node", e.into()))?;
        self.set_owner(t.pfd, t.name, meta)
            .map_err(|e| at.failed("setting owner", e))?;
        rfs::chmodat(
            t.pfd,
            os(t.name),
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(|e| at.failed("setting mode", e.into()))?;
        rfs::utimensat(
            t.pfd,
            os(t.name),
            &ts(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| at.failed("setting mtime", e.into()))
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

    /// Directories the layers so far had entries for (their modes and
    /// mtimes come from the layer); call before [`Applier::finish`].
    pub(crate) fn dated_dirs(&self) -> HashSet<Vec<u8>> {
        self.deferred
            .iter()
            .filter(|(_, meta)| meta.mtime.is_some())
            .map(|(path, _)| path.clone())
            .collect()
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

fn io_message(e: impl Into<io::Error>) -> String {
    e.into().to_string()
}

impl RootDirs for Applier {
    type Dir = OwnedFd;

    fn root_dir(&mut self) -> std::result::Result<OwnedFd, String> {
        self.root().map_err(io_message)
    }

    fn reopen(&mut self, path: &[Vec<u8>]) -> std::result::Result<OwnedFd, String> {
        self.open_plain(path)
            .map_err(io_message)?
            .ok_or_else(|| "a directory vanished during resolution".into())
    }

    fn lookup(
        &mut self,
        dir: &OwnedFd,
        _full: &[u8],
        name: &[u8],
    ) -> std::result::Result<Found, String> {
        match rfs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(Found::Missing),
            Err(e) => Err(io_message(e)),
            Ok(st) => Ok(match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => Found::Dir,
                FileType::Symlink => {
                    let target = rfs::readlinkat(dir, os(name), Vec::new()).map_err(io_message)?;
                    Found::Symlink(target.into_bytes())
                }
                _ => Found::Other,
            }),
        }
    }

    fn make_dir(
        &mut self,
        dir: &OwnedFd,
        full: &[u8],
        name: &[u8],
    ) -> std::result::Result<(), String> {
        rfs::mkdirat(dir, os(name), Mode::from_raw_mode(0o700)).map_err(io_message)?;
        // Made on the way to an entry: gets the default mode at the end
        // unless the layer has an entry for it.
        self.deferred.entry(full.to_vec()).or_insert(DirMeta {
            mode: 0o755,
            mtime: None,
        });
        Ok(())
    }

    fn enter(&mut self, dir: &OwnedFd, name: &[u8]) -> std::result::Result<OwnedFd, String> {
        rfs::openat(
            dir,
            os(name),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_message)
    }
}
