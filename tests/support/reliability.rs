//! The reliability tests' harness bits: one test at a time (`serial`), the
//! soak factor, layer files on disk with their expected DiffIDs, verify
//! reports and exact gets through the CLI, and reads and damage of the
//! index through python3's sqlite3 module (an independent reader).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use super::bytes::{assert_same_bytes, sha};
use super::cli::{cli_json, cli_json_status, cli_run, ls_json, path_arg};
use super::tools::{describe, run_ok, tool};

/// The reliability tests run one at a time: they spawn many processes and
/// measure timing-sensitive things (kills), so they must not compete with
/// each other for the two cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `LAYERSTORE_SOAK=N` multiplies the amount of work (default 1).
pub fn soak() -> u64 {
    std::env::var("LAYERSTORE_SOAK")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// A layer file on disk with its expected DiffID.
#[derive(Clone, Debug)]
pub struct LayerFile {
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
}

impl LayerFile {
    pub fn write(path: PathBuf, tar: &[u8]) -> LayerFile {
        fs::write(&path, tar).expect("writing layer file");
        LayerFile {
            digest: sha(tar),
            size: tar.len() as u64,
            path,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).expect("reading layer file")
    }
}

/// `verify [--full] [--repair] --json`: (exit success, report).
#[track_caller]
pub fn verify(store: &Path, full: bool, repair: bool) -> (bool, Value) {
    let mut args = vec!["verify"];
    if full {
        args.push("--full");
    }
    if repair {
        args.push("--repair");
    }
    cli_json_status(store, &args)
}

/// The `problems` (or `warnings`) of a verify report as (subject, detail).
pub fn findings(report: &Value, key: &str) -> Vec<(String, String)> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("verify report has no {key} array: {report}"))
        .iter()
        .map(|p| {
            (
                p["subject"].as_str().unwrap_or_default().to_string(),
                p["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The strings of a report's `key` array.
pub fn strings(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("report has no {key} array: {report}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Asserts a quick (or full) verify is clean: exit 0, no problems.
#[track_caller]
pub fn assert_verify_clean(store: &Path, full: bool, context: &str) -> Value {
    let (ok, report) = verify(store, full, false);
    let problems = findings(&report, "problems");
    assert!(
        ok && problems.is_empty(),
        "{context}: verify{} is not clean: exit ok={ok}, problems {problems:#?}",
        if full { " --full" } else { "" }
    );
    report
}

/// Digests listed by `ls --json`, with their pinned flag.
#[track_caller]
pub fn listed_layers(store: &Path) -> Vec<(String, bool)> {
    ls_json(store)
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap_or_default().to_string(),
                l["pinned"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Image names listed by `image ls --json`.
#[track_caller]
pub fn listed_images(store: &Path) -> BTreeSet<String> {
    cli_json(store, &["image", "ls"])
        .as_array()
        .expect("image ls --json prints an array")
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `get DIGEST -o FILE`; returns the output (for the status) and the file
/// bytes if the file exists.
pub fn get_to_file(store: &Path, digest: &str, out: &Path) -> (Output, Option<Vec<u8>>) {
    let _ = fs::remove_file(out);
    let o = cli_run(store, &["get", digest, "-o", path_arg(out)]);
    let bytes = fs::read(out).ok();
    (o, bytes)
}

/// Asserts `get` of `layer` writes exactly its bytes.
#[track_caller]
pub fn assert_get_exact(store: &Path, layer: &LayerFile, scratch: &Path, context: &str) {
    let out_path = scratch.join("get.out");
    let (o, bytes) = get_to_file(store, &layer.digest, &out_path);
    assert!(
        o.status.success(),
        "{context}: get {} failed: {}",
        layer.digest,
        describe(&o)
    );
    let bytes = bytes.unwrap_or_else(|| panic!("{context}: get -o wrote no file"));
    assert_same_bytes(
        &bytes,
        &layer.bytes(),
        &format!("{context}: get {}", layer.digest),
    );
    let _ = fs::remove_file(&out_path);
}

/// Pack names the index records, read with python3's sqlite3 module.
pub fn indexed_packs(store: &Path) -> BTreeSet<String> {
    let out = python_sql(
        store,
        "for (n,) in db.execute('SELECT name FROM packs ORDER BY name'): print(n)",
    );
    out.lines().map(str::to_string).collect()
}

/// Runs python3 with `db` bound to a sqlite3 connection on STORE/index.db,
/// committing at the end; returns stdout. Panics on failure.
#[track_caller]
pub fn python_sql(store: &Path, body: &str) -> String {
    let script = format!(
        "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1])\n{body}\ndb.commit()\ndb.close()\n"
    );
    let out = run_ok(
        tool("python3")
            .arg("-c")
            .arg(&script)
            .arg(store.join("index.db")),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
