//! The store snapshot of the CLI tests (bad_input).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{ls_json, pack_files, stat_json};

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
        pack_files: pack_files(store),
        listing: ls_json(store)
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_string())
            .collect(),
    }
}
