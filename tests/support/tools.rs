//! External programs: finding them (the tests fail, they never skip, when
//! one is missing), GNU tar checked to be GNU tar, and running commands
//! with or without input.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The path of `name` on PATH (or in /usr/bin); panics with a clear message
/// when it is missing. CI installs every tool the tests use.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        let candidate = dir.join(name);
        if let Ok(meta) = fs::metadata(&candidate)
            && meta.is_file()
        {
            return candidate;
        }
    }
    panic!(
        "required external tool `{name}` was not found on PATH or in /usr/bin; these tests need \
         GNU tar, gzip, zstd, python3, mkfifo, truncate, skopeo and umoci installed \
         (apt-get install skopeo umoci zstd)"
    );
}

/// A command for an external tool, checked to exist.
pub fn tool(name: &str) -> Command {
    Command::new(require_tool(name))
}

/// GNU tar, checked to be GNU tar.
pub fn gnu_tar() -> Command {
    let out = tool("tar")
        .arg("--version")
        .output()
        .expect("running tar --version");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains("GNU tar"),
        "`tar` on PATH is not GNU tar (these tests need GNU tar): {version}"
    );
    tool("tar")
}

/// `program arg arg ...`, for messages.
pub fn command_line(cmd: &Command) -> String {
    format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// A finished process for a message: its status, stderr and (the start of)
/// stdout.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}; stderr: {}; stdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        truncate_text(&String::from_utf8_lossy(&out.stdout), 2000)
    )
}

fn truncate_text(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.trim().to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], s.len())
    }
}

/// Runs `cmd` with `input` on stdin (written from another thread so large
/// inputs cannot deadlock) and returns its output, whatever the status.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let what = command_line(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut stdin = child.stdin.take().expect("child stdin");
    std::thread::scope(|s| {
        s.spawn(move || {
            // A child that exits early closes the pipe; that is its business.
            let _ = stdin.write_all(input);
        });
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
    })
}

/// Runs `cmd` with stdin closed, asserting exit status 0; returns its
/// output.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> Output {
    let what = command_line(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
