//! The root filesystem an image's layers describe, built in memory (paths,
//! types, modes, owners, symlink targets, BLAKE3 of file contents) by
//! streaming the layers once, with exactly the OCI semantics of
//! the applier (`rootfs::apply`): same path normalisation, same in-root symlink
//! resolution, same whiteout, opaque and hard-link rules. Container diff
//! and commit compare a container's directory against it, so they never
//! need a second copy of the image on disk.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};

use crate::error::{Error, Result};
use crate::rootfs::entry::{
    Whiteout, bad_tar, entry_components, for_each_entry, join, whiteout, with_ancestors,
};
use crate::rootfs::resolve::{self, Found, RootDirs};
use crate::store::Store;
use crate::store::digest::Digest;
/// What is at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Dir,
    File { size: u64, hash: [u8; 32] },
    Symlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// One path of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

impl Node {
    /// A directory made on the way to an entry (mode 0755, owned by root).
    fn dir() -> Node {
        Node {
            kind: NodeKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }
}

/// An image's root filesystem: path (`a/b`, the root is ``) -> node.
pub(crate) struct Tree {
    pub nodes: BTreeMap<Vec<u8>, Node>,
    owners: bool,
}

/// The entries strictly below `path` in a map ordered by bytes (every
/// entry but the root when `path` is the root).
pub(crate) fn below<'a, V>(
    map: &'a BTreeMap<Vec<u8>, V>,
    path: &[u8],
) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a V)> + 'a> {
    if path.is_empty() {
        return Box::new(map.iter().filter(|(k, _)| !k.is_empty()));
    }
    let mut lo = path.to_vec();
    lo.push(b'/');
    let mut hi = path.to_vec();
    hi.push(b'/' + 1);
    Box::new(map.range(lo..hi))
}

/// Direct children of `path`.
pub(crate) fn children<'a, V>(
    map: &'a BTreeMap<Vec<u8>, V>,
    path: &'a [u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a V)> {
    let depth = if path.is_empty() { 0 } else { path.len() + 1 };
    below(map, path).filter(move |(k, _)| !k[depth..].contains(&b'/'))
}

/// The parent path of `path` (the root for a top-level name).
pub(crate) fn parent_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

impl Tree {
    /// A tree of the given nodes (a part of an image's tree).
    pub(crate) fn from_nodes(nodes: BTreeMap<Vec<u8>, Node>, owners: bool) -> Tree {
        Tree { nodes, owners }
    }

    /// A tree holding only the root directory.
    pub(crate) fn empty(owners: bool) -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(Vec::new(), Node::dir());
        Tree { nodes, owners }
    }

    /// The tree of `layers` applied in order, read from the store. `owners`
    /// says whether device nodes are kept (checkout only makes them as root).
    pub(crate) fn of_layers(store: &Store, layers: &[Digest], owners: bool) -> Result<Tree> {
        // gc must not collect the layers while they are read.
        let _lock = store.lock(crate::store::LockMode::Shared)?;
        let mut tree = Tree::empty(owners);
        for layer in layers {
            store.stream_layer(layer, |reader| tree.apply_layer(reader, layer))?;
        }
        Ok(tree)
    }

    /// Resolves a directory path in the tree (see `rootfs::resolve`).
    pub(crate) fn resolve(
        &mut self,
        comps: &[Vec<u8>],
        create: bool,
    ) -> std::result::Result<Option<Vec<u8>>, String> {
        Ok(resolve::resolve(self, comps, create)?.map(|r| r.path))
    }

    fn remove(&mut self, path: &[u8]) {
        let doomed: Vec<Vec<u8>> = below(&self.nodes, path).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
        if !path.is_empty() {
            self.nodes.remove(path);
        }
    }

    pub(crate) fn apply_layer(&mut self, reader: &mut dyn Read, layer: &Digest) -> Result<()> {
        let mut touched: HashSet<Vec<u8>> = HashSet::new();
        for_each_entry(reader, layer, |entry, meta| {
            let refuse = |why: String| {
                Error::invalid(
                    format!("layer {layer}"),
                    format!("entry {:?}: {why}", String::from_utf8_lossy(&meta.path)),
                )
            };
            let comps = entry_components(&meta.path).map_err(refuse)?;
            let Some((name, parent_comps)) = comps.split_last() else {
                if meta.kind.is_dir()
                    && let Some(root) = self.nodes.get_mut(&Vec::new())
                {
                    root.mode = meta.mode;
                    root.uid = meta.uid;
                    root.gid = meta.gid;
                }
                return Ok(());
            };
            if let Some(wh) = whiteout(name).map_err(refuse)? {
                let Some(parent) = self.resolve(parent_comps, false).map_err(refuse)? else {
                    return Ok(());
                };
                match wh {
                    Whiteout::Opaque => {
                        // Lower content goes; what this layer put there stays.
                        let doomed: Vec<Vec<u8>> = below(&self.nodes, &parent)
                            .map(|(k, _)| k.clone())
                            .filter(|k| !touched.contains(k))
                            .collect();
                        for k in doomed {
                            self.remove(&k);
                        }
                    }
                    Whiteout::Remove(target) => {
                        let full = join(&parent, target);
                        if !touched.contains(&full) {
                            self.remove(&full);
                        }
                    }
                }
                return Ok(());
            }
            let parent = self
                .resolve(parent_comps, true)
                .map_err(refuse)?
                .ok_or_else(|| refuse("its directory cannot be created".into()))?;
            let full = join(&parent, name);
            for p in with_ancestors(&full) {
                if !touched.contains(p) {
                    touched.insert(p.to_vec());
                }
            }
            use tar::EntryType as T;
            let kind = match meta.kind {
                T::Directory => NodeKind::Dir,
                T::Regular | T::Continuous | T::GNUSparse => {
                    let mut hasher = blake3::Hasher::new();
                    let size = io::copy(&mut *entry, &mut hasher).map_err(bad_tar(layer))?;
                    NodeKind::File {
                        size,
                        hash: *hasher.finalize().as_bytes(),
                    }
                }
                T::Symlink => NodeKind::Symlink(meta.link.clone().unwrap_or_default()),
                T::Link => {
                    let target = meta.link.as_deref().unwrap_or_default();
                    let tcomps = entry_components(target)
                        .map_err(|why| refuse(format!("hard link target: {why}")))?;
                    let Some((tname, tparent)) = tcomps.split_last() else {
                        return Err(refuse("hard link to the root directory".into()));
                    };
                    let node = self
                        .resolve(tparent, false)
                        .map_err(refuse)?
                        .and_then(|p| self.nodes.get(&join(&p, tname)).cloned())
                        .filter(|n| n.kind != NodeKind::Dir)
                        .ok_or_else(|| refuse("hard link target does not exist".into()))?;
                    self.replace(&full, node);
                    return Ok(());
                }
                T::Char if self.owners => NodeKind::Char(meta.device.0, meta.device.1),
                T::Block if self.owners => NodeKind::Block(meta.device.0, meta.device.1),
                T::Fifo => NodeKind::Fifo,
                _ => return Ok(()),
            };
            let node = Node {
                kind,
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
            };
            self.replace(&full, node);
            Ok(())
        })
    }

    /// Puts `node` at `path`; a directory over a directory keeps the
    /// contents, anything else replaces what was there.
    fn replace(&mut self, path: &[u8], node: Node) {
        let keep_children = node.kind == NodeKind::Dir
            && self.nodes.get(path).map(|n| &n.kind) == Some(&NodeKind::Dir);
        if !keep_children {
            self.remove(path);
        }
        self.nodes.insert(path.to_vec(), node);
    }
}

impl RootDirs for Tree {
    /// Paths are keys: there is no handle to hold.
    type Dir = ();

    fn root_dir(&mut self) -> std::result::Result<(), String> {
        Ok(())
    }

    fn reopen(&mut self, _path: &[Vec<u8>]) -> std::result::Result<(), String> {
        Ok(())
    }

    fn lookup(
        &mut self,
        _dir: &(),
        full: &[u8],
        _name: &[u8],
    ) -> std::result::Result<Found, String> {
        Ok(match self.nodes.get(full).map(|n| &n.kind) {
            None => Found::Missing,
            Some(NodeKind::Dir) => Found::Dir,
            Some(NodeKind::Symlink(target)) => Found::Symlink(target.clone()),
            Some(_) => Found::Other,
        })
    }

    fn make_dir(
        &mut self,
        _dir: &(),
        full: &[u8],
        _name: &[u8],
    ) -> std::result::Result<(), String> {
        self.nodes.insert(full.to_vec(), Node::dir());
        Ok(())
    }

    fn enter(&mut self, _dir: &(), _name: &[u8]) -> std::result::Result<(), String> {
        Ok(())
    }
}
