//! Helpers shared by the CLI tests (bad_input, cli, corruption): CLI
//! wrappers and a store snapshot.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use layerstore::Digest;

/// The `layerstore` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_layerstore");

// ---------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------

/// `layerstore --store STORE` with no store chosen through the environment.
pub fn cli(store: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--store")
        .arg(store)
        .env_remove("LAYERSTORE_DIR")
        .env_remove("XDG_DATA_HOME");
    cmd
}

/// Runs the CLI with `args`, stdin closed.
pub fn cli_run(store: &Path, args: &[&str]) -> Output {
    cli(store)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running layerstore")
}

/// Runs the CLI and asserts success; returns stdout.
#[track_caller]
pub fn cli_ok(store: &Path, args: &[&str]) -> Vec<u8> {
    let out = cli_run(store, args);
    assert!(
        out.status.success(),
        "layerstore {args:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Asserts a CLI failure the documented way: exit code 1 and a message on
/// stderr starting `layerstore: error:`. Returns stderr and stdout.
#[track_caller]
pub fn expect_cli_error(out: &Output, what: &str) -> (String, Vec<u8>) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit code 1, got {} (stderr: {stderr})",
        out.status
    );
    assert!(
        stderr.starts_with("layerstore: error:"),
        "{what}: stderr does not start with `layerstore: error:`: {stderr:?}"
    );
    (stderr, out.stdout.clone())
}

/// The DiffID printed on the first line of `put`'s text output.
#[track_caller]
pub fn first_line_digest(stdout: &[u8]) -> Digest {
    let text = String::from_utf8_lossy(stdout);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.len() == 71 && first.starts_with("sha256:"),
        "put's first line is not a sha256 digest: {first:?}"
    );
    Digest::parse(first).expect("digest on put's first line")
}

/// `stat --json`, parsed.
pub fn stat_json(store: &Path) -> serde_json::Value {
    serde_json::from_slice(&cli_ok(store, &["stat", "--json"])).expect("stat --json is JSON")
}

/// `ls --json`, parsed.
pub fn ls_json(store: &Path) -> Vec<serde_json::Value> {
    serde_json::from_slice(&cli_ok(store, &["ls", "--json"])).expect("ls --json is a JSON array")
}

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

/// Puts `file` with `put --json` and returns the parsed object.
#[track_caller]
pub fn cli_put_json(store: &Path, file: &Path) -> serde_json::Value {
    let out = cli_ok(
        store,
        &["put", file.to_str().expect("utf-8 path"), "--json"],
    );
    serde_json::from_slice(&out).expect("put --json output is one JSON object")
}

/// `get DIGEST` to stdout, asserting success; returns the bytes.
#[track_caller]
pub fn cli_get(store: &Path, digest: &str) -> Vec<u8> {
    cli_ok(store, &["get", digest])
}
