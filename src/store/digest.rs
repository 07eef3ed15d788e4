//! Content identities: layer digests (`sha256:<hex>`, the OCI DiffID or a
//! compressed blob's digest) and chunk ids (BLAKE3 of a chunk's bytes).
//!
//! Parsing is strict: only `sha256` digests with exactly 64 lowercase hex
//! digits are accepted, so two spellings never name the same object.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::util::hex;

/// A sha256 content digest, printed as `sha256:<64 lowercase hex>`.
///
/// ```
/// use layerstore::Digest;
/// let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
/// assert_eq!(d, Digest::of(b""));
/// assert!("sha256:xyz".parse::<Digest>().is_err());
/// # Ok::<(), layerstore::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Wraps raw sha256 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// sha256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest(sha2::Sha256::digest(data).into())
    }

    /// The 64 hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses `sha256:<hex>`; a bare 64-digit hex string is also accepted.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidDigest {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let hex_part = match s.split_once(':') {
            Some(("sha256", rest)) => rest,
            Some((algo, _)) => {
                return Err(bad(&format!(
                    "unsupported digest algorithm {algo:?}, only sha256 is supported"
                )));
            }
            None => s,
        };
        if hex_part.len() != 64 {
            return Err(bad(&format!(
                "expected 64 hex digits after \"sha256:\", found {}",
                hex_part.len()
            )));
        }
        let bytes = parse_hex32(hex_part)
            .ok_or_else(|| bad("digest must be lowercase hexadecimal (0-9, a-f)"))?;
        Ok(Digest(bytes))
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Identity of a chunk: BLAKE3 of its uncompressed bytes. Internal to the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// BLAKE3 of `data`.
    pub fn of(data: &[u8]) -> Self {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    /// Lowercase hex, for messages.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let raw = s.as_bytes();
    if raw.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_roundtrip_and_rejects() {
        let d = Digest::of(b"hello");
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert_eq!(Digest::parse(&d.hex()).unwrap(), d);
        assert!(Digest::parse("sha512:00").is_err());
        assert!(Digest::parse(&d.to_string().to_uppercase()).is_err());
        assert!(Digest::parse(&format!("sha256:{}", &d.hex()[1..])).is_err());
        assert!(Digest::parse("").is_err());
        let msg = Digest::parse("sha256:zz").unwrap_err().to_string();
        assert!(msg.contains("64 hex digits"), "{msg}");
    }
}
