//! Deliberate crash points for the kill harness.
//!
//! When the environment variable `LAYERSTORE_CRASH_AT` names a point, the
//! process aborts there (like SIGKILL: no destructors, no cleanup), so tests
//! can check the store at every step of the write path. Unset, a point
//! costs one relaxed atomic load.

use std::sync::OnceLock;

/// Every crash point the kill harness (tests/reliability.rs) schedules, in
/// write-path order. `convert-before-commit` (gc converting a pending
/// blob) is exercised by tests/exact_blobs.rs instead: the harness's
/// layers are plain tars, which leave no blob pending. The overlay
/// container points (`snapshot-mounted`, `snapshot-synced`,
/// `container-recorded`) are exercised by tests/containers.rs.
pub const POINTS: &[&str] = &[
    "pack-written",
    "pack-synced",
    "pack-renamed",
    "put-before-commit",
    "put-after-commit",
    "import-before-commit",
    "gc-after-collect",
    "gc-pack-rewritten",
    "gc-before-unlink",
];

fn target() -> Option<&'static str> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var("LAYERSTORE_CRASH_AT").ok())
        .as_deref()
}

/// Aborts the process if `LAYERSTORE_CRASH_AT` equals `name`.
pub fn point(name: &str) {
    if target() == Some(name) {
        eprintln!("layerstore: crashing at {name} (LAYERSTORE_CRASH_AT)");
        std::process::abort();
    }
}
