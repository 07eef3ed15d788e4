//! The one store snapshot: everything a failed command (a bad put, a
//! rejected import) must leave exactly as it was.

use std::collections::BTreeSet;
use std::path::Path;

use layerstore::Store;

use super::packs::{dir_names, pack_tree};

/// What must not change when a command fails.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub layers: u64,
    pub chunks: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    pub logical_bytes: u64,
    pub aliases: u64,
    /// Every layer listed, in order, with its pinned flag.
    pub layer_list: Vec<(String, bool)>,
    /// Every image name with its digest.
    pub images: Vec<(String, String)>,
    /// Every file under STORE/packs, with its size.
    pub pack_files: BTreeSet<(String, u64)>,
    /// Names in STORE itself (index.db-wal and -shm come and go with SQLite).
    pub root_names: BTreeSet<String>,
}

/// Snapshots the store at `store` (read through the library).
pub fn snapshot(store: &Path) -> Snapshot {
    let handle = Store::open(store).expect("open store for a snapshot");
    let s = handle.stats().expect("stats");
    let root_names = dir_names(store)
        .into_iter()
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    Snapshot {
        layers: s.layers,
        chunks: s.chunks,
        packs: s.packs,
        pack_bytes: s.pack_bytes,
        logical_bytes: s.logical_bytes,
        aliases: s.aliases,
        layer_list: handle
            .layers()
            .expect("layers")
            .into_iter()
            .map(|l| (l.digest.to_string(), l.pinned))
            .collect(),
        images: handle
            .images()
            .expect("images")
            .into_iter()
            .map(|i| (i.name, i.digest.to_string()))
            .collect(),
        pack_files: pack_tree(store),
        root_names,
    }
}
