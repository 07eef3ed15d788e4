//! Helpers shared by the CLI tests (bad_input, cli, corruption): CLI
//! wrappers and a store snapshot.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::support::{ls_json, stat_json};

/// File names in STORE/packs (including temporary files).
pub fn pack_dir_listing(store: &Path) -> BTreeSet<String> {
    match fs::read_dir(store.join("packs")) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// What must not change when a command fails.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub layers: u64,
    pub pack_bytes: u64,
    pub chunks: u64,
    pub packs: u64,
    pub aliases: u64,
    pub pack_files: BTreeSet<String>,
    pub listing: Vec<String>,
}

pub fn snapshot(store: &Path) -> Snapshot {
    let s = stat_json(store);
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("stat --json lacks numeric {k}: {s}"))
    };
    Snapshot {
        layers: n("layers"),
        pack_bytes: n("pack_bytes"),
        chunks: n("chunks"),
        packs: n("packs"),
        aliases: n("aliases"),
        pack_files: pack_dir_listing(store),
        listing: ls_json(store)
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_string())
            .collect(),
    }
}
