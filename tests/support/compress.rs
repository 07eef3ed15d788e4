//! Compression through the real tools (gzip and zstd, not the crate's own
//! encoders), and the compressed forms every tar is tried in.

use layerstore::Compression;

use super::tools::{run_with_input, tool};

/// Runs the tool `name` with `args` as a filter over `data`; returns its
/// stdout, asserting success.
fn filter(name: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
    let out = run_with_input(tool(name).args(args), data);
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `gzip -c -n -6` of `data` (no name, MTIME 0).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    filter("gzip", &["-c", "-n", "-6"], data)
}

/// Two gzip members (first half, second half) concatenated: still one
/// valid gzip file whose content is `data`.
pub fn gzip_two_members(data: &[u8]) -> Vec<u8> {
    let mid = data.len() / 2;
    let mut out = gzip(&data[..mid]);
    out.extend_from_slice(&gzip(&data[mid..]));
    out
}

/// `zstd -c -3` of `data` (the CLI adds a content checksum).
pub fn zstd(data: &[u8]) -> Vec<u8> {
    filter("zstd", &["-q", "-c", "-3"], data)
}

/// The compressed forms every tar is tried in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Plain,
    Gzip,
    GzipTwoMembers,
    Zstd,
}

impl Form {
    pub const ALL: [Form; 4] = [Form::Plain, Form::Gzip, Form::GzipTwoMembers, Form::Zstd];

    pub fn encode(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Form::Plain => tar.to_vec(),
            Form::Gzip => gzip(tar),
            Form::GzipTwoMembers => gzip_two_members(tar),
            Form::Zstd => zstd(tar),
        }
    }

    pub fn compression(self) -> Compression {
        match self {
            Form::Plain => Compression::None,
            Form::Gzip | Form::GzipTwoMembers => Compression::Gzip,
            Form::Zstd => Compression::Zstd,
        }
    }
}
