//! The `layerstore` binary: one command builder, [`cli`], and thin wrappers
//! around it with one convention:
//!
//! * `cli_run` returns the `Output`, whatever the exit status;
//! * `cli_ok` asserts exit 0 and returns the `Output`;
//! * `cli_text` and `cli_json` assert exit 0 and return stdout as text, or
//!   parsed (`cli_json` adds `--json`); `cli_json_status` returns the exit
//!   status's success with the parsed JSON, for commands that report JSON
//!   when they fail too (verify);
//! * `cli_err` asserts the documented failure (exit 1, stderr starting
//!   `layerstore: error: `) and returns stderr; `expect_cli_error` checks
//!   the same of an `Output` already at hand.
//!
//! Also: the DiffID on put's first line, and `stat`, `ls`, `put` and `get`
//! through the CLI.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use layerstore::Digest;
use serde_json::Value;

use super::tools::describe;

/// The `layerstore` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_layerstore");

/// A path as a command-line argument (the tests use UTF-8 paths only).
pub fn path_arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `layerstore --store STORE`, stdin closed, with no store chosen and no
/// crash point inherited through the environment.
pub fn cli(store: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--store")
        .arg(store)
        .env_remove("LAYERSTORE_DIR")
        .env_remove("XDG_DATA_HOME")
        .env_remove("LAYERSTORE_CRASH_AT")
        .stdin(Stdio::null());
    cmd
}

/// Runs the CLI with `args`; returns its output whatever the status.
pub fn cli_run(store: &Path, args: &[&str]) -> Output {
    cli(store)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawning layerstore {args:?}: {e}"))
}

/// Runs the CLI and asserts success; returns its output.
#[track_caller]
pub fn cli_ok(store: &Path, args: &[&str]) -> Output {
    let out = cli_run(store, args);
    assert!(
        out.status.success(),
        "layerstore {args:?} failed: {}",
        describe(&out)
    );
    out
}

/// Runs the CLI and asserts success; returns stdout as text.
#[track_caller]
pub fn cli_text(store: &Path, args: &[&str]) -> String {
    let out = cli_ok(store, args);
    String::from_utf8(out.stdout)
        .unwrap_or_else(|e| panic!("layerstore {args:?} printed no UTF-8: {e}"))
}

#[track_caller]
fn parse_json(out: &Output, args: &[&str]) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "layerstore {args:?} did not print JSON ({e}): {}",
            describe(out)
        )
    })
}

fn with_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.push("--json");
    all
}

/// Runs the CLI with `args` and `--json`, asserts success, parses stdout.
#[track_caller]
pub fn cli_json(store: &Path, args: &[&str]) -> Value {
    let args = with_json(args);
    parse_json(&cli_ok(store, &args), &args)
}

/// Runs the CLI with `args` and `--json` whatever the exit status; returns
/// (exit success, parsed stdout).
#[track_caller]
pub fn cli_json_status(store: &Path, args: &[&str]) -> (bool, Value) {
    let args = with_json(args);
    let out = cli_run(store, &args);
    (out.status.success(), parse_json(&out, &args))
}

/// Asserts a CLI failure the documented way: exit code 1 and a message on
/// stderr starting `layerstore: error: `. Returns stderr and stdout.
#[track_caller]
pub fn expect_cli_error(out: &Output, what: &str) -> (String, Vec<u8>) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit code 1: {}",
        describe(out)
    );
    assert!(
        stderr.starts_with("layerstore: error: "),
        "{what}: stderr does not start with `layerstore: error: `: {stderr:?}"
    );
    (stderr, out.stdout.clone())
}

/// Runs the CLI, asserts it fails the documented way (see
/// [`expect_cli_error`]); returns stderr.
#[track_caller]
pub fn cli_err(store: &Path, args: &[&str]) -> String {
    expect_cli_error(&cli_run(store, args), &format!("layerstore {args:?}")).0
}

/// The first line of `stdout` (put prints its DiffID there).
pub fn first_line(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The DiffID printed on the first line of `put`'s text output.
#[track_caller]
pub fn first_line_digest(stdout: &[u8]) -> Digest {
    let first = first_line(stdout);
    assert!(
        first.len() == 71 && first.starts_with("sha256:"),
        "put's first line is not a sha256 digest: {first:?}"
    );
    Digest::parse(&first).expect("digest on put's first line")
}

/// `stat --json`, parsed.
#[track_caller]
pub fn stat_json(store: &Path) -> Value {
    cli_json(store, &["stat"])
}

/// `ls --json`, parsed.
#[track_caller]
pub fn ls_json(store: &Path) -> Vec<Value> {
    match cli_json(store, &["ls"]) {
        Value::Array(layers) => layers,
        other => panic!("ls --json is not a JSON array: {other}"),
    }
}

/// Puts `file` with `put --json` and returns the parsed object.
#[track_caller]
pub fn cli_put_json(store: &Path, file: &Path) -> Value {
    cli_json(store, &["put", path_arg(file)])
}

/// `get DIGEST` to stdout, asserting success; returns the bytes.
#[track_caller]
pub fn cli_get(store: &Path, digest: &str) -> Vec<u8> {
    cli_ok(store, &["get", digest]).stdout
}
