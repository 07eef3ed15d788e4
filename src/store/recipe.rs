//! Layer recipes: the ordered list of pieces whose concatenation is a
//! layer's uncompressed tar.
//!
//! Encoding (version 1), inside one zstd stream with a content checksum:
//! the version byte `1`, then entries, each a LEB128 varint `len << 1 | kind`
//! followed by `len` verbatim bytes (kind 0, inline) or a 32-byte BLAKE3
//! chunk id (kind 1, a chunk of `len` bytes). Adjacent inline pieces are
//! merged. The decoder checks every length against fixed limits, so a
//! damaged recipe is an error, never a huge allocation.

use std::io::{self, Read, Write};

use crate::error::{Error, Result};
use crate::store::digest::ChunkId;

/// Recipe encoding version written by this build.
pub const RECIPE_VERSION: u8 = 1;

/// Largest inline run the decoder accepts.
pub const MAX_INLINE_ENTRY: u64 = 64 << 20;
/// Largest chunk length the decoder accepts (FastCDC's own maximum).
pub const MAX_CHUNK_LEN: u64 = 16 << 20;

/// Inline runs are flushed to the stream once they reach this size.
const INLINE_FLUSH: usize = 1 << 20;

/// One decoded recipe entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Verbatim bytes.
    Inline(Vec<u8>),
    /// A chunk reference: id and length.
    Chunk(ChunkId, u32),
}

/// Streams a recipe into compressed bytes held in memory (a few percent of
/// the layer's header bytes, not of its payload).
pub struct RecipeWriter {
    encoder: zstd::stream::write::Encoder<'static, Vec<u8>>,
    inline: Vec<u8>,
    entries: u64,
    total: u64,
}

impl RecipeWriter {
    /// A new, empty recipe.
    pub fn new() -> Result<Self> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3)
            .map_err(|e| Error::io("starting recipe encoder", e))?;
        encoder
            .include_checksum(true)
            .map_err(|e| Error::io("configuring recipe encoder", e))?;
        encoder
            .write_all(&[RECIPE_VERSION])
            .map_err(|e| Error::io("writing recipe", e))?;
        Ok(RecipeWriter {
            encoder,
            inline: Vec::new(),
            entries: 0,
            total: 0,
        })
    }

    /// Appends verbatim bytes.
    pub fn push_inline(&mut self, bytes: &[u8]) -> Result<()> {
        self.inline.extend_from_slice(bytes);
        self.total += bytes.len() as u64;
        if self.inline.len() >= INLINE_FLUSH {
            self.flush_inline()?;
        }
        Ok(())
    }

    /// Appends a chunk reference.
    pub fn push_chunk(&mut self, id: &ChunkId, len: u32) -> Result<()> {
        self.flush_inline()?;
        let mut head = [0u8; 10];
        let n = put_varint(&mut head, (u64::from(len) << 1) | 1);
        self.write(&head[..n])?;
        self.write(&id.0)?;
        self.entries += 1;
        self.total += u64::from(len);
        Ok(())
    }

    /// Number of bytes the recipe describes.
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// Finishes the stream and returns the compressed recipe.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.flush_inline()?;
        self.encoder
            .finish()
            .map_err(|e| Error::io("finishing recipe", e))
    }

    fn flush_inline(&mut self) -> Result<()> {
        if self.inline.is_empty() {
            return Ok(());
        }
        let inline = std::mem::take(&mut self.inline);
        let mut head = [0u8; 10];
        let n = put_varint(&mut head, (inline.len() as u64) << 1);
        self.write(&head[..n])?;
        self.write(&inline)?;
        self.entries += 1;
        self.inline = inline;
        self.inline.clear();
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.encoder
            .write_all(bytes)
            .map_err(|e| Error::io("writing recipe", e))
    }
}

/// Decodes a compressed recipe entry by entry.
pub struct RecipeReader<'a> {
    decoder: zstd::stream::read::Decoder<'static, io::BufReader<&'a [u8]>>,
    done: bool,
}

impl<'a> RecipeReader<'a> {
    /// Starts decoding `compressed`; checks the version byte.
    pub fn new(compressed: &'a [u8]) -> Result<Self> {
        let mut decoder = zstd::stream::read::Decoder::new(compressed)
            .map_err(|e| Error::corrupt(format!("recipe: {e}")))?;
        let mut version = [0u8; 1];
        decoder
            .read_exact(&mut version)
            .map_err(|e| Error::corrupt(format!("recipe: cannot read version: {e}")))?;
        if version[0] != RECIPE_VERSION {
            return Err(Error::corrupt(format!(
                "recipe has version {}, expected {RECIPE_VERSION}",
                version[0]
            )));
        }
        Ok(RecipeReader {
            decoder,
            done: false,
        })
    }

    /// The next entry, `Ok(None)` at the end.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        let Some(head) = read_varint(&mut self.decoder)? else {
            self.done = true;
            return Ok(None);
        };
        let len = head >> 1;
        let corrupt = |what: &str| Error::corrupt(format!("recipe: {what}"));
        if head & 1 == 0 {
            if len == 0 || len > MAX_INLINE_ENTRY {
                return Err(corrupt(&format!(
                    "inline entry of {len} bytes is out of range"
                )));
            }
            let mut bytes = vec![0u8; len as usize];
            self.decoder
                .read_exact(&mut bytes)
                .map_err(|e| corrupt(&format!("truncated inline entry: {e}")))?;
            Ok(Some(Entry::Inline(bytes)))
        } else {
            if len == 0 || len > MAX_CHUNK_LEN {
                return Err(corrupt(&format!(
                    "chunk entry of {len} bytes is out of range"
                )));
            }
            let mut id = [0u8; 32];
            self.decoder
                .read_exact(&mut id)
                .map_err(|e| corrupt(&format!("truncated chunk entry: {e}")))?;
            Ok(Some(Entry::Chunk(ChunkId(id), len as u32)))
        }
    }
}

impl Iterator for RecipeReader<'_> {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn put_varint(out: &mut [u8; 10], mut value: u64) -> usize {
    let mut i = 0;
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out[i] = byte;
            return i + 1;
        }
        out[i] = byte | 0x80;
        i += 1;
    }
}

/// Reads a varint; `Ok(None)` on a clean end of stream before its first byte.
fn read_varint(r: &mut impl Read) -> Result<Option<u64>> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        match r.read(&mut byte) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(Error::corrupt("recipe: truncated entry header")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::corrupt(format!("recipe: {e}"))),
        }
        value |= u64::from(byte[0] & 0x7f)
            .checked_shl(7 * i)
            .filter(|_| i < 9 || byte[0] <= 1)
            .ok_or_else(|| Error::corrupt("recipe: entry header overflows"))?;
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(Error::corrupt("recipe: entry header too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_merges_inline() {
        let mut w = RecipeWriter::new().unwrap();
        w.push_inline(b"abc").unwrap();
        w.push_inline(b"def").unwrap();
        let id = ChunkId::of(b"x");
        w.push_chunk(&id, 300).unwrap();
        w.push_inline(b"z").unwrap();
        assert_eq!(w.total_len(), 307);
        let bytes = w.finish().unwrap();
        let entries: Vec<Entry> = RecipeReader::new(&bytes)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            entries,
            vec![
                Entry::Inline(b"abcdef".to_vec()),
                Entry::Chunk(id, 300),
                Entry::Inline(b"z".to_vec())
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(RecipeReader::new(b"not zstd").is_err());
        let bytes = zstd::encode_all(&[1u8, 0xff, 0xff, 0xff, 0xff, 0x7f][..], 1).unwrap();
        let mut r = RecipeReader::new(&bytes).unwrap();
        assert!(r.next_entry().is_err());
        let bytes = zstd::encode_all(&[2u8][..], 1).unwrap();
        assert!(RecipeReader::new(&bytes).is_err());
    }
}
