//! Blob descriptions: how one compressed layer blob is rebuilt byte for
//! byte from its layer's tar plus a stream of "extra" bytes kept as
//! ordinary content-addressed chunks. Pure bytes, no I/O.
//!
//! Encoding (version 1), the payload of a blob frame:
//!
//! ```text
//! description := version:u8=1 compression:u8 method:u8 params extra_len:u64le recipe
//! compression := 1 gzip | 2 zstd
//! method 1 verbatim: no params; the extra stream is the blob itself
//! method 2 zstd:     libzstd:u32le level:i32le checksum:u8 content_size:u8 workers:u8;
//!                    no extra bytes: libzstd of that exact version recompresses the tar
//! method 3 preflate: version_len:u8 version members:u32le member*
//!                    member := header_len:u32le segments:u32le
//!                              (plain_len:u64le corrections_len:u32le)* trailer:[u8;8]
//!                              tail_len:u64le tail_plain:u64le
//!                    extra stream: per member its gzip header bytes, then each
//!                    segment's preflate corrections, then its tail: the
//!                    member's last `tail_len` deflate bytes verbatim (where
//!                    preflate stopped describing it), which stand for
//!                    `tail_plain` bytes of the tar
//! recipe      := the extra stream as a layer recipe (see `store::recipe`)
//! ```
//!
//! Every count and length is checked against fixed limits when decoding,
//! so a damaged description is an error, never a huge allocation.

use crate::store::digest::ChunkId;
use crate::store::recipe::{Entry, RecipeReader};

/// Description format version written by this build.
pub const BLOB_DESCRIPTION_VERSION: u8 = 1;
/// Upper bound on gzip members and on segments per member when decoding.
const MAX_COUNT: u32 = 1 << 24;

/// How a blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobCompression {
    /// gzip (RFC 1952), one or more members.
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
}

/// One gzip member rebuilt with preflate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GzipMember {
    /// Bytes of the member's header, kept in the extra stream.
    pub header_len: u32,
    /// Per segment: plaintext bytes it covers and bytes of corrections.
    pub segments: Vec<(u64, u32)>,
    /// The member's CRC32 and ISIZE, as written.
    pub trailer: [u8; 8],
    /// The end of the deflate stream kept verbatim, where preflate could
    /// not describe it: its compressed length and the tar bytes it stands
    /// for. (0, 0) when preflate described the whole stream.
    pub tail: (u64, u64),
}

/// How the blob's bytes come back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobMethod {
    /// The blob's own bytes, chunked and deduplicated like any data.
    Verbatim,
    /// Recompression by libzstd with these parameters.
    Zstd {
        /// `ZSTD_versionNumber()` of the library that matched.
        libzstd: u32,
        /// Compression level.
        level: i32,
        /// Content checksum flag.
        checksum: bool,
        /// Whether the content size was pledged (it is in the frame header).
        content_size: bool,
        /// `ZSTD_c_nbWorkers`.
        workers: u8,
    },
    /// gzip members whose deflate streams preflate rebuilds from the tar
    /// and its corrections.
    Preflate {
        /// The preflate-rs version that wrote the corrections (and alone
        /// is known to read them).
        version: String,
        /// The members, in order.
        members: Vec<GzipMember>,
    },
}

impl BlobMethod {
    /// Short name for listings and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            BlobMethod::Verbatim => "verbatim",
            BlobMethod::Zstd { .. } => "zstd",
            BlobMethod::Preflate { .. } => "preflate",
        }
    }
}

/// A decoded blob description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobDescription {
    /// The blob's compression.
    pub compression: BlobCompression,
    /// How it is rebuilt.
    pub method: BlobMethod,
    /// Length of the extra stream.
    pub extra_len: u64,
    /// The extra stream as an encoded recipe.
    pub extra_recipe: Vec<u8>,
}

impl BlobDescription {
    /// Encodes the description.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![BLOB_DESCRIPTION_VERSION];
        out.push(match self.compression {
            BlobCompression::Gzip => 1,
            BlobCompression::Zstd => 2,
        });
        match &self.method {
            BlobMethod::Verbatim => out.push(1),
            BlobMethod::Zstd {
                libzstd,
                level,
                checksum,
                content_size,
                workers,
            } => {
                out.push(2);
                out.extend_from_slice(&libzstd.to_le_bytes());
                out.extend_from_slice(&level.to_le_bytes());
                out.extend_from_slice(&[u8::from(*checksum), u8::from(*content_size), *workers]);
            }
            BlobMethod::Preflate { version, members } => {
                out.push(3);
                let version = &version.as_bytes()[..version.len().min(255)];
                out.push(version.len() as u8);
                out.extend_from_slice(version);
                out.extend_from_slice(&(members.len() as u32).to_le_bytes());
                for m in members {
                    out.extend_from_slice(&m.header_len.to_le_bytes());
                    out.extend_from_slice(&(m.segments.len() as u32).to_le_bytes());
                    for (plain, corrections) in &m.segments {
                        out.extend_from_slice(&plain.to_le_bytes());
                        out.extend_from_slice(&corrections.to_le_bytes());
                    }
                    out.extend_from_slice(&m.trailer);
                    out.extend_from_slice(&m.tail.0.to_le_bytes());
                    out.extend_from_slice(&m.tail.1.to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&self.extra_len.to_le_bytes());
        out.extend_from_slice(&self.extra_recipe);
        out
    }

    /// Decodes and checks a description. Errors say what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<BlobDescription, String> {
        let mut r = Cursor { bytes, at: 0 };
        let version = r.u8()?;
        if version != BLOB_DESCRIPTION_VERSION {
            return Err(format!(
                "blob description version {version}; this build reads version {BLOB_DESCRIPTION_VERSION}"
            ));
        }
        let compression = match r.u8()? {
            1 => BlobCompression::Gzip,
            2 => BlobCompression::Zstd,
            c => return Err(format!("unknown blob compression {c}")),
        };
        let method = match r.u8()? {
            1 => BlobMethod::Verbatim,
            2 => BlobMethod::Zstd {
                libzstd: r.u32()?,
                level: r.u32()? as i32,
                checksum: r.flag()?,
                content_size: r.flag()?,
                workers: r.u8()?,
            },
            3 => {
                let len = r.u8()? as usize;
                let version = String::from_utf8(r.take(len)?.to_vec())
                    .map_err(|_| "blob description: preflate version is not UTF-8".to_string())?;
                let count = r.count()?;
                let mut members = Vec::new();
                for _ in 0..count {
                    let header_len = r.u32()?;
                    let segments = (0..r.count()?)
                        .map(|_| Ok((r.u64()?, r.u32()?)))
                        .collect::<Result<Vec<_>, String>>()?;
                    let mut trailer = [0u8; 8];
                    trailer.copy_from_slice(r.take(8)?);
                    let tail = (r.u64()?, r.u64()?);
                    members.push(GzipMember {
                        header_len,
                        segments,
                        trailer,
                        tail,
                    });
                }
                BlobMethod::Preflate { version, members }
            }
            m => return Err(format!("unknown blob method {m}")),
        };
        let extra_len = r.u64()?;
        let extra_recipe = bytes[r.at..].to_vec();
        // The recipe is read through once: it must decode to its end and
        // describe exactly the extra stream's length.
        let mut entries =
            RecipeReader::new(&extra_recipe).map_err(|e| format!("extra stream recipe: {e}"))?;
        let mut recipe_len = 0u64;
        while let Some(entry) = entries
            .next_entry()
            .map_err(|e| format!("extra stream recipe: {e}"))?
        {
            recipe_len += match entry {
                Entry::Inline(data) => data.len() as u64,
                Entry::Chunk(_, len) => u64::from(len),
            };
        }
        if recipe_len != extra_len {
            return Err(format!(
                "the extra stream's recipe holds {recipe_len} bytes, the description says {extra_len}"
            ));
        }
        if let BlobMethod::Preflate { members, .. } = &method {
            let described = members.iter().fold(0u64, |sum, m| {
                m.segments
                    .iter()
                    .fold(sum.saturating_add(u64::from(m.header_len)), |s, seg| {
                        s.saturating_add(u64::from(seg.1))
                    })
                    .saturating_add(m.tail.0)
            });
            if described != extra_len {
                return Err(format!(
                    "members describe {described} extra bytes, the stream holds {extra_len}"
                ));
            }
        }
        Ok(BlobDescription {
            compression,
            method,
            extra_len,
            extra_recipe,
        })
    }
}

impl BlobDescription {
    /// The chunk ids of the extra stream, in stream order (a chunk that
    /// recurs is listed each time).
    pub fn extra_chunks(&self) -> Result<Vec<ChunkId>, String> {
        let entries = RecipeReader::new(&self.extra_recipe)
            .map_err(|e| format!("extra stream recipe: {e}"))?;
        let mut ids = Vec::new();
        for entry in entries {
            if let Entry::Chunk(id, _) = entry.map_err(|e| format!("extra stream recipe: {e}"))? {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("blob description truncated at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    /// A byte that must be 0 or 1.
    fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!(
                "blob description flag at byte {} is {b}, not 0 or 1",
                self.at - 1
            )),
        }
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn count(&mut self) -> Result<u32, String> {
        let n = self.u32()?;
        if n > MAX_COUNT {
            return Err(format!("blob description count {n} out of range"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::recipe::RecipeWriter;

    #[test]
    fn roundtrip_and_truncation() {
        let mut recipe = RecipeWriter::new().unwrap();
        recipe.push_inline(b"0123456789abcdef0123").unwrap();
        let desc = BlobDescription {
            compression: BlobCompression::Gzip,
            method: BlobMethod::Preflate {
                version: "0.7.6".into(),
                members: vec![GzipMember {
                    header_len: 10,
                    segments: vec![(1000, 6), (20, 4)],
                    trailer: [1, 2, 3, 4, 5, 6, 7, 8],
                    tail: (0, 0),
                }],
            },
            extra_len: 20,
            extra_recipe: recipe.finish().unwrap(),
        };
        let bytes = desc.encode();
        assert_eq!(BlobDescription::decode(&bytes).unwrap(), desc);
        for cut in 0..bytes.len() - 1 {
            assert!(BlobDescription::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let zstd = BlobDescription {
            compression: BlobCompression::Zstd,
            method: BlobMethod::Zstd {
                libzstd: 10504,
                level: -3,
                checksum: true,
                content_size: false,
                workers: 1,
            },
            extra_len: 0,
            extra_recipe: RecipeWriter::new().unwrap().finish().unwrap(),
        };
        assert_eq!(BlobDescription::decode(&zstd.encode()).unwrap(), zstd);
    }
}
