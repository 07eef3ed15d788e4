//! Pack files: append-only files of self-describing frames.
//!
//! ```text
//! pack   := "LSPACK\0\0" version:u32le reserved:u32le frame*
//! frame  := "LSFR" kind:u8 codec:u8 reserved:u16 entries:u32le raw_len:u64le
//!           stored_len:u64le table check:[u8;16] payload:[u8; stored_len]
//! table  := chunks frame: entries x (blake3 id:[u8;32] len:u32le)
//!           recipe frame: 1 x (diffid sha256:[u8;32] size:u64le)
//!           blob frame:   1 x (diffid sha256:[u8;32] size:u64le
//!                              blob sha256:[u8;32] blob_size:u64le)
//! check  := first 16 bytes of BLAKE3 over everything from "LSFR" to the table's end
//! ```
//!
//! A chunks frame's payload is its chunks' bytes, concatenated and
//! zstd-compressed together (codec 1), or stored as is (codec 0) when that
//! is smaller. A recipe frame's payload is a layer recipe (already
//! compressed). A blob frame's payload says how to rebuild one compressed
//! blob of a layer byte for byte (see `store::blob`; pack version 2).
//! Frames describe themselves, so the index can be rebuilt by
//! scanning packs. Packs are written under a temporary name, fsynced, and
//! renamed into place; they are never modified afterwards, only replaced.

use crate::error::{Error, Result};
use crate::store::digest::{ChunkId, Digest};

/// Pack file magic.
pub const PACK_MAGIC: &[u8; 8] = b"LSPACK\0\0";
/// Pack format version written by this build. Version 2 added blob
/// frames; version-1 packs are read as they are.
pub const PACK_VERSION: u32 = 2;
/// Oldest pack format version this build reads.
pub const PACK_VERSION_MIN: u32 = 1;
/// Bytes before the first frame.
pub const PACK_HEADER_LEN: u64 = 16;

const FRAME_MAGIC: &[u8; 4] = b"LSFR";
const FIXED_LEN: usize = 28;
const CHECK_LEN: usize = 16;
const CHUNK_ENTRY_LEN: usize = 36;
const RECIPE_ENTRY_LEN: usize = 40;
const BLOB_ENTRY_LEN: usize = 80;
/// Upper bound on entries in a frame the reader accepts.
pub const MAX_FRAME_ENTRIES: u32 = 1 << 16;
/// Upper bound on a frame's uncompressed payload the reader accepts.
pub const MAX_FRAME_RAW: u64 = 256 << 20;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A run of chunks.
    Chunks = 1,
    /// One layer recipe.
    Recipe = 2,
    /// How to rebuild one compressed blob of a layer.
    Blob = 3,
}

/// How a frame's payload is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    None = 0,
    /// One zstd frame.
    Zstd = 1,
}

/// The self-description of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Chunks or recipe.
    pub kind: FrameKind,
    /// Payload encoding.
    pub codec: Codec,
    /// Uncompressed payload length.
    pub raw_len: u64,
    /// Payload bytes on disk.
    pub stored_len: u64,
    /// For chunk frames: each chunk's id and length, in payload order.
    pub chunks: Vec<(ChunkId, u32)>,
    /// For recipe and blob frames: the layer's DiffID and uncompressed size.
    pub recipe_of: Option<(Digest, u64)>,
    /// For blob frames: the compressed blob's sha256 and size.
    pub blob_of: Option<(Digest, u64)>,
}

impl FrameHeader {
    /// Bytes of header (fixed part, table and check) before the payload.
    pub fn header_len(&self) -> u64 {
        let table = match self.kind {
            FrameKind::Chunks => self.chunks.len() * CHUNK_ENTRY_LEN,
            FrameKind::Recipe => RECIPE_ENTRY_LEN,
            FrameKind::Blob => BLOB_ENTRY_LEN,
        };
        (FIXED_LEN + table + CHECK_LEN) as u64
    }

    /// Header plus payload.
    pub fn total_len(&self) -> u64 {
        self.header_len() + self.stored_len
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len() as usize);
        out.extend_from_slice(FRAME_MAGIC);
        out.push(self.kind as u8);
        out.push(self.codec as u8);
        out.extend_from_slice(&[0, 0]);
        let entries = match self.kind {
            FrameKind::Chunks => self.chunks.len() as u32,
            FrameKind::Recipe | FrameKind::Blob => 1,
        };
        out.extend_from_slice(&entries.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        match self.kind {
            FrameKind::Chunks => {
                for (id, len) in &self.chunks {
                    out.extend_from_slice(&id.0);
                    out.extend_from_slice(&len.to_le_bytes());
                }
            }
            FrameKind::Recipe | FrameKind::Blob => {
                let none = (Digest::from_bytes([0; 32]), 0);
                let (digest, size) = self.recipe_of.unwrap_or(none);
                out.extend_from_slice(digest.as_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                if self.kind == FrameKind::Blob {
                    let (blob, blob_size) = self.blob_of.unwrap_or(none);
                    out.extend_from_slice(blob.as_bytes());
                    out.extend_from_slice(&blob_size.to_le_bytes());
                }
            }
        }
        let check = blake3::hash(&out);
        out.extend_from_slice(&check.as_bytes()[..CHECK_LEN]);
        out
    }

    /// Parses and checks the frame header at the start of `bytes`. Errors
    /// say what is wrong; the caller adds where.
    pub fn decode(bytes: &[u8]) -> std::result::Result<FrameHeader, String> {
        if bytes.len() < FIXED_LEN {
            return Err(format!(
                "frame header needs {FIXED_LEN} bytes, only {} remain",
                bytes.len()
            ));
        }
        if &bytes[..4] != FRAME_MAGIC {
            return Err("bad frame magic".into());
        }
        let kind = match bytes[4] {
            1 => FrameKind::Chunks,
            2 => FrameKind::Recipe,
            3 => FrameKind::Blob,
            k => return Err(format!("unknown frame kind {k}")),
        };
        let codec = match bytes[5] {
            0 => Codec::None,
            1 => Codec::Zstd,
            c => return Err(format!("unknown frame codec {c}")),
        };
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let entries = u32_at(8);
        let raw_len = u64_at(12);
        let stored_len = u64_at(20);
        if entries > MAX_FRAME_ENTRIES || raw_len > MAX_FRAME_RAW || stored_len > MAX_FRAME_RAW * 2
        {
            return Err(format!(
                "frame sizes out of range ({entries} entries, {raw_len} raw bytes, {stored_len} stored bytes)"
            ));
        }
        let table_len = match kind {
            FrameKind::Chunks => entries as usize * CHUNK_ENTRY_LEN,
            FrameKind::Recipe if entries == 1 => RECIPE_ENTRY_LEN,
            FrameKind::Blob if entries == 1 => BLOB_ENTRY_LEN,
            FrameKind::Recipe | FrameKind::Blob => {
                return Err(format!("{kind:?} frame with {entries} entries"));
            }
        };
        let check_at = FIXED_LEN + table_len;
        if bytes.len() < check_at + CHECK_LEN {
            return Err("frame table is truncated".into());
        }
        let check = blake3::hash(&bytes[..check_at]);
        if check.as_bytes()[..CHECK_LEN] != bytes[check_at..check_at + CHECK_LEN] {
            return Err("frame header checksum mismatch".into());
        }
        let table = &bytes[FIXED_LEN..check_at];
        let mut header = FrameHeader {
            kind,
            codec,
            raw_len,
            stored_len,
            chunks: Vec::new(),
            recipe_of: None,
            blob_of: None,
        };
        let digest_at = |at: usize| {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&table[at..at + 32]);
            let mut size = [0u8; 8];
            size.copy_from_slice(&table[at + 32..at + 40]);
            (Digest::from_bytes(digest), u64::from_le_bytes(size))
        };
        match kind {
            FrameKind::Chunks => {
                let mut sum = 0u64;
                for entry in table.chunks_exact(CHUNK_ENTRY_LEN) {
                    let mut id = [0u8; 32];
                    id.copy_from_slice(&entry[..32]);
                    let len = u32::from_le_bytes([entry[32], entry[33], entry[34], entry[35]]);
                    sum += u64::from(len);
                    header.chunks.push((ChunkId(id), len));
                }
                if sum != raw_len {
                    return Err(format!(
                        "frame table lists {sum} chunk bytes but the frame holds {raw_len}"
                    ));
                }
            }
            FrameKind::Recipe => header.recipe_of = Some(digest_at(0)),
            FrameKind::Blob => {
                header.recipe_of = Some(digest_at(0));
                header.blob_of = Some(digest_at(40));
            }
        }
        Ok(header)
    }

    /// Decodes this frame's payload (the bytes after the header).
    pub fn decode_payload(&self, payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
        if payload.len() as u64 != self.stored_len {
            return Err(format!(
                "frame payload is {} bytes, header says {}",
                payload.len(),
                self.stored_len
            ));
        }
        let raw = match self.codec {
            Codec::None => payload.to_vec(),
            Codec::Zstd => zstd::bulk::decompress(payload, self.raw_len as usize)
                .map_err(|e| format!("zstd: {e}"))?,
        };
        if raw.len() as u64 != self.raw_len {
            return Err(format!(
                "frame decompressed to {} bytes, header says {}",
                raw.len(),
                self.raw_len
            ));
        }
        Ok(raw)
    }
}

/// Builds one encoded frame (header and payload) from uncompressed chunk bytes.
pub fn encode_chunk_frame(
    chunks: Vec<(ChunkId, u32)>,
    raw: &[u8],
    compressor: &mut zstd::bulk::Compressor<'_>,
) -> Result<(FrameHeader, Vec<u8>)> {
    let compressed = compressor
        .compress(raw)
        .map_err(|e| Error::io("compressing frame", e))?;
    let (codec, payload) = if compressed.len() < raw.len() {
        (Codec::Zstd, compressed)
    } else {
        (Codec::None, raw.to_vec())
    };
    let header = FrameHeader {
        kind: FrameKind::Chunks,
        codec,
        raw_len: raw.len() as u64,
        stored_len: payload.len() as u64,
        chunks,
        recipe_of: None,
        blob_of: None,
    };
    Ok((header, payload))
}

/// Builds a recipe frame.
pub fn encode_recipe_frame(diff_id: Digest, size: u64, recipe: Vec<u8>) -> (FrameHeader, Vec<u8>) {
    let header = FrameHeader {
        kind: FrameKind::Recipe,
        codec: Codec::None,
        raw_len: recipe.len() as u64,
        stored_len: recipe.len() as u64,
        chunks: Vec::new(),
        recipe_of: Some((diff_id, size)),
        blob_of: None,
    };
    (header, recipe)
}

/// Builds a blob frame: how to rebuild blob `blob` (sha256, size) of
/// layer `diff_id` (DiffID, size) from the layer's tar.
pub fn encode_blob_frame(
    diff_id: Digest,
    size: u64,
    blob: (Digest, u64),
    description: Vec<u8>,
) -> (FrameHeader, Vec<u8>) {
    let header = FrameHeader {
        kind: FrameKind::Blob,
        codec: Codec::None,
        raw_len: description.len() as u64,
        stored_len: description.len() as u64,
        chunks: Vec::new(),
        recipe_of: Some((diff_id, size)),
        blob_of: Some(blob),
    };
    (header, description)
}

/// Checks a pack's file header.
pub fn check_pack_header(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < PACK_HEADER_LEN as usize || &bytes[..8] != PACK_MAGIC {
        return Err("not a layerstore pack (bad magic)".into());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(PACK_VERSION_MIN..=PACK_VERSION).contains(&version) {
        return Err(format!(
            "pack format version {version}; this build reads versions {PACK_VERSION_MIN} to {PACK_VERSION}"
        ));
    }
    Ok(())
}

/// Walks the frames of a whole pack image. Yields `(offset, header)` for
/// each frame that decodes (its header checksum holds and its payload lies
/// inside the pack). A damaged region yields one error with its offset,
/// then the walk resynchronises on the next offset where a valid frame
/// header starts, so frames after damage are still found. A pack whose own
/// header is bad (another format, or not a pack) yields one error and
/// nothing else.
pub fn scan_frames(
    bytes: &[u8],
) -> impl Iterator<Item = std::result::Result<(u64, FrameHeader), (u64, String)>> + '_ {
    let len = bytes.len() as u64;
    let mut offset = PACK_HEADER_LEN;
    let mut failed = check_pack_header(bytes).err().map(|e| (0u64, e));
    // A frame that decodes at `at` and fits in the pack.
    let frame_at = move |at: u64| -> std::result::Result<FrameHeader, String> {
        let header = FrameHeader::decode(&bytes[at as usize..])?;
        if at.saturating_add(header.total_len()) > len {
            return Err("frame payload runs past the end of the pack".into());
        }
        Ok(header)
    };
    std::iter::from_fn(move || {
        if let Some(err) = failed.take() {
            offset = u64::MAX;
            return Some(Err(err));
        }
        if offset >= len {
            return None;
        }
        let at = offset;
        match frame_at(at) {
            Ok(header) => {
                offset = at + header.total_len();
                Some(Ok((at, header)))
            }
            Err(e) => {
                // Resynchronise: the next frame magic from which a whole,
                // checksummed header decodes.
                offset = (at + 1..len)
                    .filter(|&i| bytes[i as usize..].starts_with(FRAME_MAGIC))
                    .find(|&i| frame_at(i).is_ok())
                    .unwrap_or(u64::MAX);
                Some(Err((at, e)))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_and_damage() {
        let data = b"hello hello hello hello".repeat(100);
        let id = ChunkId::of(&data);
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        let (header, payload) =
            encode_chunk_frame(vec![(id, data.len() as u32)], &data, &mut c).unwrap();
        assert_eq!(header.codec, Codec::Zstd);
        let mut bytes = header.encode();
        bytes.extend_from_slice(&payload);
        let back = FrameHeader::decode(&bytes).unwrap();
        assert_eq!(back, header);
        let raw = back
            .decode_payload(&bytes[back.header_len() as usize..])
            .unwrap();
        assert_eq!(raw, data);
        for i in 0..back.header_len() as usize {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(FrameHeader::decode(&bad).is_err(), "flip at {i} undetected");
        }
    }

    #[test]
    fn scan_resynchronises_after_a_damaged_frame() {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        let mut pack = Vec::new();
        pack.extend_from_slice(PACK_MAGIC);
        pack.extend_from_slice(&PACK_VERSION.to_le_bytes());
        pack.extend_from_slice(&0u32.to_le_bytes());
        let mut offsets = Vec::new();
        for i in 0..3u8 {
            let data = vec![i; 1000];
            let (header, payload) =
                encode_chunk_frame(vec![(ChunkId::of(&data), 1000)], &data, &mut c).unwrap();
            offsets.push(pack.len() as u64);
            pack.extend_from_slice(&header.encode());
            pack.extend_from_slice(&payload);
        }
        // A flipped byte in the second frame's header fails its check.
        pack[offsets[1] as usize + 9] ^= 0xff;
        let items: Vec<_> = scan_frames(&pack).collect();
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(items[0].as_ref().map(|(at, _)| *at), Ok(offsets[0]));
        assert_eq!(items[1].as_ref().map_err(|(at, _)| *at), Err(offsets[1]));
        assert_eq!(items[2].as_ref().map(|(at, _)| *at), Ok(offsets[2]));
    }
}
