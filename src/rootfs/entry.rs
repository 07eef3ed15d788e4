//! What a layer tar entry means, independent of where it is applied: its
//! metadata with PAX records applied, lexical path rules (no climbing above
//! the root, bounded depth, no NUL), and whiteouts (`.wh.NAME` deletes a
//! lower NAME, `.wh..wh..opq` hides a directory's lower contents).

use std::io::{self, Read};

use crate::error::{Error, Result};
use crate::store::digest::Digest;

/// Prefix of a whiteout entry's file name.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// File name of an opaque-directory marker.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Deepest path accepted (components); deeper entries are refused.
pub(crate) const MAX_DEPTH: usize = 1024;

/// Metadata of one tar entry, PAX records applied.
pub(crate) struct EntryMeta {
    pub path: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: (i64, u32),
    pub link: Option<Vec<u8>>,
    pub device: (u32, u32),
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// The error for a layer stream that is not a readable tar.
pub(crate) fn bad_tar(layer: &Digest) -> impl Fn(io::Error) -> Error + '_ {
    move |e| {
        Error::invalid(
            format!("layer {layer}"),
            format!("cannot read it as a tar archive: {e}"),
        )
    }
}

/// Hands every entry of the layer tar in `reader` to `apply`, then reads
/// the stream to its end, so the store checks the whole layer's DiffID
/// even when the tar stops before its last bytes.
pub(crate) fn for_each_entry(
    reader: &mut dyn Read,
    layer: &Digest,
    mut apply: impl FnMut(&mut tar::Entry<'_, &mut dyn Read>, &EntryMeta) -> Result<()>,
) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(bad_tar(layer))? {
        let mut entry = entry.map_err(bad_tar(layer))?;
        let meta = entry_meta(&mut entry).map_err(bad_tar(layer))?;
        apply(&mut entry, &meta)?;
    }
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(bad_tar(layer))?;
    Ok(())
}

/// Reads an entry's metadata (header, GNU long names, PAX records).
pub(crate) fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<EntryMeta> {
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let mut uid = header.uid().unwrap_or(0);
    let mut gid = header.gid().unwrap_or(0);
    let mut mtime = (
        header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64,
        0u32,
    );
    let device = (
        header.device_major().ok().flatten().unwrap_or(0),
        header.device_minor().ok().flatten().unwrap_or(0),
    );
    let path = entry.path_bytes().into_owned();
    let link = entry.link_name_bytes().map(|l| l.into_owned());
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let text = std::str::from_utf8(value).unwrap_or("");
            match key {
                "uid" => uid = text.parse().unwrap_or(uid),
                "gid" => gid = text.parse().unwrap_or(gid),
                "mtime" => mtime = parse_pax_time(text).unwrap_or(mtime),
                k => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.to_string(), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(EntryMeta {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        link,
        device,
        xattrs,
    })
}

/// `123` or `123.456789` -> (seconds, nanoseconds); None if malformed.
fn parse_pax_time(text: &str) -> Option<(i64, u32)> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += c.to_digit(10)? * 10u32.pow(8 - i as u32);
    }
    Some((secs, nanos))
}

/// Splits a tar path into components lexically: empty and `.` parts are
/// dropped (so a leading `/` means the root), `..` removes the previous
/// component. Err when `..` would climb above the root, a component holds
/// a NUL byte, or the path is deeper than [`MAX_DEPTH`].
pub(crate) fn entry_components(raw: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("its path climbs above the root with \"..\"".into());
                }
            }
            p if p.contains(&0) => return Err("its path contains a NUL byte".into()),
            p => out.push(p.to_vec()),
        }
        if out.len() > MAX_DEPTH {
            return Err(format!("its path is more than {MAX_DEPTH} levels deep"));
        }
    }
    Ok(out)
}

/// `a/b` from components (the root is the empty string).
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
        out.extend_from_slice(parent);
        out.push(b'/');
        out.extend_from_slice(name);
        out
    }
}

/// The path and all its ancestors (not the root), for "touched" sets.
pub(crate) fn with_ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let cuts = path
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| i)
        .chain(std::iter::once(path.len()));
    cuts.map(move |i| &path[..i])
}

/// A whiteout entry's meaning.
pub(crate) enum Whiteout<'a> {
    /// Hide all lower content of the directory.
    Opaque,
    /// Delete this name from the directory.
    Remove(&'a [u8]),
}

/// If `name` is a whiteout, what it does; Err for a malformed one.
pub(crate) fn whiteout(name: &[u8]) -> std::result::Result<Option<Whiteout<'_>>, String> {
    if name == OPAQUE_MARKER {
        return Ok(Some(Whiteout::Opaque));
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(None),
        Some(b"" | b"." | b"..") => Err("malformed whiteout name".into()),
        Some(target) => Ok(Some(Whiteout::Remove(target))),
    }
}

/// A root-relative path for messages (`/` for the root).
pub(crate) fn display(path: &[u8]) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_lexical_and_bounded() {
        assert_eq!(
            entry_components(b"./a//b/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            entry_components(b"/abs/x").unwrap(),
            vec![b"abs".to_vec(), b"x".to_vec()]
        );
        assert_eq!(entry_components(b"a/../b").unwrap(), vec![b"b".to_vec()]);
        assert!(entry_components(b"../x").is_err());
        assert!(entry_components(b"a/../../x").is_err());
        assert!(entry_components(b"./").unwrap().is_empty());
        let deep = "a/".repeat(MAX_DEPTH + 1);
        assert!(entry_components(deep.as_bytes()).is_err());
    }

    #[test]
    fn whiteout_names() {
        assert!(matches!(
            whiteout(b".wh..wh..opq"),
            Ok(Some(Whiteout::Opaque))
        ));
        assert!(matches!(
            whiteout(b".wh.foo"),
            Ok(Some(Whiteout::Remove(b"foo")))
        ));
        assert!(whiteout(b".wh.").is_err());
        assert!(whiteout(b".wh...").is_err());
        assert!(matches!(whiteout(b"foo"), Ok(None)));
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn ancestors() {
        let got: Vec<&[u8]> = with_ancestors(b"a/b/c").collect();
        assert_eq!(got, vec![&b"a"[..], b"a/b", b"a/b/c"]);
    }
}
