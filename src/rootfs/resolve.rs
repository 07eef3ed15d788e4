//! In-root path resolution, written once for both backends (a real
//! directory through file descriptors, and the in-memory tree).
//!
//! Rules: empty and `.` components are skipped; `..` goes up one level
//! but never above the root; a symlink met on the way is followed as if
//! the root were `/` (an absolute target restarts at the root), at most
//! [`MAX_SYMLINK_HOPS`] times; a path deeper than [`MAX_DEPTH`] is
//! refused. With `create`, missing directories are made and a
//! non-directory on the way is an error; without, the answer is None.
//! The last component of an entry's path is never resolved here: callers
//! resolve the parent and act on the name themselves, so the final
//! component is never followed.

use std::collections::VecDeque;

use crate::rootfs::entry::{MAX_DEPTH, display};

/// Symlinks followed while resolving one path.
pub(crate) const MAX_SYMLINK_HOPS: usize = 40;

/// What a directory holds under one name.
pub(crate) enum Found {
    /// Nothing.
    Missing,
    /// A directory.
    Dir,
    /// A symlink with this target.
    Symlink(Vec<u8>),
    /// Anything else (file, device, ...).
    Other,
}

/// The directory operations resolution needs. `Dir` is a handle on a
/// directory already reached (a file descriptor, or nothing for the tree,
/// whose paths are keys).
pub(crate) trait RootDirs {
    /// A reached directory.
    type Dir;
    /// The root.
    fn root_dir(&mut self) -> Result<Self::Dir, String>;
    /// The real directory at `path` (components from the root, no
    /// symlinks in it), after `..`.
    fn reopen(&mut self, path: &[Vec<u8>]) -> Result<Self::Dir, String>;
    /// What `dir` (at root-relative path `dir_path`) holds under `name`.
    fn lookup(&mut self, dir: &Self::Dir, full: &[u8], name: &[u8]) -> Result<Found, String>;
    /// Makes directory `name` in `dir`; `full` is its root-relative path.
    fn make_dir(&mut self, dir: &Self::Dir, full: &[u8], name: &[u8]) -> Result<(), String>;
    /// Enters directory `name` of `dir` (known to be a real directory).
    fn enter(&mut self, dir: &Self::Dir, name: &[u8]) -> Result<Self::Dir, String>;
}

/// A directory reached by [`resolve`].
pub(crate) struct Reached<D> {
    /// Its handle.
    pub dir: D,
    /// Its root-relative path (`a/b`; the root is empty).
    pub path: Vec<u8>,
}

/// Resolves the directory `comps` under the root (see the module rules).
pub(crate) fn resolve<R: RootDirs>(
    fs: &mut R,
    comps: &[Vec<u8>],
    create: bool,
) -> Result<Option<Reached<R::Dir>>, String> {
    let mut pending: VecDeque<Vec<u8>> = comps.iter().cloned().collect();
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut cur = fs.root_dir()?;
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." {
            stack.pop();
            cur = fs.reopen(&stack)?;
            continue;
        }
        if stack.len() >= MAX_DEPTH {
            return Err(format!("path is more than {MAX_DEPTH} levels deep"));
        }
        let mut path = stack.clone();
        path.push(c.clone());
        let full = path.join(&b'/');
        match fs.lookup(&cur, &full, &c)? {
            Found::Missing => {
                if !create {
                    return Ok(None);
                }
                fs.make_dir(&cur, &full, &c)?;
            }
            Found::Dir => {}
            Found::Symlink(target) => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err("too many levels of symbolic links".into());
                }
                if target.starts_with(b"/") {
                    stack.clear();
                    cur = fs.root_dir()?;
                }
                for part in target.split(|&b| b == b'/').rev() {
                    if !part.is_empty() {
                        pending.push_front(part.to_vec());
                    }
                }
                continue;
            }
            Found::Other => {
                if !create {
                    return Ok(None);
                }
                return Err(format!("{} is not a directory", display(&full)));
            }
        }
        cur = fs.enter(&cur, &c)?;
        stack.push(c);
    }
    Ok(Some(Reached {
        dir: cur,
        path: stack.join(&b'/'),
    }))
}

#[cfg(test)]
mod tests {
    //! One table of resolution cases, run against both backends: a real
    //! directory written by the applier and the in-memory tree, each built
    //! from the same layer tar.

    use crate::rootfs::apply::Applier;
    use crate::rootfs::tree::Tree;
    use crate::store::digest::Digest;

    /// The root filesystem every case resolves in.
    fn layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_size(0);
            if let Some(link) = link {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            b.append_data(&mut h, path, &[][..]).unwrap();
        };
        use tar::EntryType as T;
        add("usr/", T::Directory, None);
        add("usr/lib/", T::Directory, None);
        add("usr/lib/file", T::Regular, None);
        add("lib", T::Symlink, Some("usr/lib"));
        add("abs", T::Symlink, Some("/usr"));
        add("up", T::Symlink, Some("../../../usr"));
        add("loop", T::Symlink, Some("loop"));
        add("dangling", T::Symlink, Some("nowhere/deeper"));
        b.into_inner().unwrap()
    }

    /// (path, create, expected: Ok(Some(resolved)), Ok(None) as "-", or
    /// an error containing the text after "!").
    const CASES: &[(&str, bool, &str)] = &[
        ("", false, ""),
        ("usr/lib", false, "usr/lib"),
        ("./usr//lib/.", false, "usr/lib"),
        ("lib", false, "usr/lib"),
        ("abs/lib", false, "usr/lib"),
        ("up/lib", false, "usr/lib"),
        ("usr/../../..", false, ""),
        ("missing", false, "-"),
        ("missing/x", true, "missing/x"),
        ("usr/lib/file", false, "-"),
        ("usr/lib/file/x", true, "!usr/lib/file is not a directory"),
        ("loop", false, "!too many levels of symbolic links"),
        ("dangling", false, "-"),
        ("dangling", true, "nowhere/deeper"),
    ];

    fn comps(path: &str) -> Vec<Vec<u8>> {
        path.split('/').map(|c| c.as_bytes().to_vec()).collect()
    }

    fn check(backend: &str, got: Result<Option<Vec<u8>>, String>, case: &(&str, bool, &str)) {
        let (path, create, want) = case;
        let shown = match &got {
            Ok(Some(p)) => String::from_utf8_lossy(p).into_owned(),
            Ok(None) => "-".into(),
            Err(e) => format!("!{e}"),
        };
        if let Some(err) = want.strip_prefix('!') {
            assert!(
                shown.starts_with('!') && shown.contains(err),
                "{backend}: {path:?} (create {create}): got {shown:?}, want an error with {err:?}"
            );
        } else {
            assert_eq!(&shown, want, "{backend}: {path:?} (create {create})");
        }
    }

    #[test]
    fn one_table_for_both_backends() {
        let digest = Digest::of(b"test layer");
        let tar = layer();
        for case in CASES {
            let dir = tempfile::tempdir().unwrap();
            let mut applier = Applier::new(dir.path(), false).unwrap();
            applier.apply_layer(&mut &tar[..], &digest).unwrap();
            let got = applier
                .resolve(&comps(case.0), case.1)
                .map(|r| r.map(|r| r.path));
            check("directory", got, case);

            let mut tree = Tree::empty(false);
            tree.apply_layer(&mut &tar[..], &digest).unwrap();
            check("tree", tree.resolve(&comps(case.0), case.1), case);
        }
    }
}
