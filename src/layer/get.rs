//! Getting a layer: follow its recipe, decompress frames in parallel,
//! check every chunk's BLAKE3 and the whole layer's sha256, write in order.
//!
//! A producer thread resolves a batch of recipe entries (up to 16 MiB of
//! output), decompresses the frames the batch needs on rayon workers and
//! verifies each chunk; the calling thread hashes and writes the previous
//! batch meanwhile, straight from the decompressed frames (a batch is a
//! list of slices, never copied into one buffer). Memory stays at a few
//! batches.
//! No byte of a chunk whose hash does not match is ever written; a final
//! sha256 mismatch (which would mean a damaged recipe) is an error.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use crossbeam_channel::bounded;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::store::digest::{ChunkId, Digest};
use crate::store::index::{FrameLocation, Index, LayerRow};
use crate::store::packs::{PackSet, Packs, load_recipe, read_frame};
use crate::store::recipe::{Entry, RecipeReader};

/// Output bytes per batch.
const BATCH_BYTES: usize = 16 << 20;
/// Distinct frames per batch.
const BATCH_FRAMES: usize = 64;

/// A piece of output: inline recipe bytes or a verified chunk inside a
/// decompressed frame.
enum Segment {
    Inline(Vec<u8>),
    Chunk {
        frame: Arc<Vec<u8>>,
        start: usize,
        end: usize,
    },
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Inline(data) => data,
            Segment::Chunk { frame, start, end } => &frame[*start..*end],
        }
    }
}

enum Item {
    Inline(Vec<u8>),
    Chunk {
        id: ChunkId,
        frame: FrameLocation,
        offset: u64,
        len: u32,
    },
}

/// Streams `layer` into `out`. Returns the number of bytes written.
pub(crate) fn write_layer(
    index: Index,
    packs: &Packs,
    layer: &LayerRow,
    out: &mut dyn Write,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<u64> {
    let mut set = packs.reader();
    let recipe = load_recipe(&mut set, layer)?;
    let digest = layer.digest;
    let what = format!("layer {digest}");
    let (written, actual) = write_recipe(index, set, &recipe, &what, out, progress)?;
    if actual != digest || written != layer.size {
        return Err(Error::corrupt(format!(
            "layer {digest}: reconstructed {written} bytes hash to {actual} \
             (expected {} bytes): its recipe is damaged",
            layer.size
        )));
    }
    Ok(written)
}

/// Streams the pieces of an encoded recipe into `out`, checking every
/// chunk against its id; `what` names the data in errors. Returns the bytes
/// written and their sha256.
pub(crate) fn write_recipe(
    index: Index,
    mut packs: PackSet,
    recipe: &[u8],
    what: &str,
    out: &mut dyn Write,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<(u64, Digest)> {
    let (tx, rx) = bounded::<Result<Vec<Segment>>>(2);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let result = produce(&index, &mut packs, recipe, what, &tx);
            if let Err(e) = result {
                let _ = tx.send(Err(e));
            }
        });
        // The sha256 runs on its own thread so hashing and writing overlap.
        let (hash_tx, hash_rx) = bounded::<Arc<Vec<Segment>>>(2);
        let hasher = scope.spawn(move || {
            let mut hasher = Sha256::new();
            for batch in hash_rx.iter() {
                for segment in batch.iter() {
                    hasher.update(segment.bytes());
                }
            }
            hasher.finalize()
        });
        let mut written = 0u64;
        let mut failure = None;
        'batches: for batch in rx.iter() {
            let batch = match batch {
                Ok(b) => Arc::new(b),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            // The hasher only stops when this sender is dropped.
            let _ = hash_tx.send(batch.clone());
            for segment in batch.iter() {
                let bytes = segment.bytes();
                if let Err(e) = out.write_all(bytes) {
                    failure = Some(Error::io(format!("writing {what}"), e));
                    break 'batches;
                }
                written += bytes.len() as u64;
            }
            if let Some(p) = progress {
                p(written);
            }
        }
        drop(rx);
        drop(hash_tx);
        crate::error::join_worker(producer);
        let sha256 = crate::error::join_worker(hasher);
        if let Some(e) = failure {
            return Err(e);
        }
        out.flush()
            .map_err(|e| Error::io(format!("writing {what}"), e))?;
        Ok((written, Digest::from_bytes(sha256.into())))
    })
}

fn produce(
    index: &Index,
    packs: &mut PackSet,
    recipe: &[u8],
    layer: &str,
    tx: &crossbeam_channel::Sender<Result<Vec<Segment>>>,
) -> Result<()> {
    let mut entries =
        RecipeReader::new(recipe).map_err(|e| Error::corrupt(format!("{layer}: {e}")))?;
    let mut cache: HashMap<i64, Arc<Vec<u8>>> = HashMap::new();
    loop {
        let mut items = Vec::new();
        let mut bytes = 0usize;
        let mut frames: HashMap<i64, FrameLocation> = HashMap::new();
        while bytes < BATCH_BYTES && frames.len() < BATCH_FRAMES {
            let Some(entry) = entries
                .next_entry()
                .map_err(|e| Error::corrupt(format!("{layer}: {e}")))?
            else {
                break;
            };
            match entry {
                Entry::Inline(data) => {
                    bytes += data.len();
                    items.push(Item::Inline(data));
                }
                Entry::Chunk(id, len) => {
                    let loc = index.chunk_location(&id)?.ok_or_else(|| {
                        Error::corrupt(format!("{layer}: chunk {id} is missing from the index"))
                    })?;
                    if loc.len != len {
                        return Err(Error::corrupt(format!(
                            "{layer}: chunk {id} is {} bytes in the index, {len} in the recipe",
                            loc.len
                        )));
                    }
                    bytes += len as usize;
                    frames.insert(loc.frame.frame_id, loc.frame.clone());
                    items.push(Item::Chunk {
                        id,
                        frame: loc.frame,
                        offset: loc.offset,
                        len,
                    });
                }
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        // Decompress the frames this batch needs that the last batch did not.
        let mut wanted = Vec::new();
        for (id, loc) in &frames {
            if !cache.contains_key(id) {
                wanted.push((loc.clone(), packs.map(&loc.pack)?));
            }
        }
        let decoded: Vec<(i64, Arc<Vec<u8>>)> = wanted
            .par_iter()
            .map(|(loc, map)| {
                read_frame(map, loc)
                    .map(|(_, raw)| (loc.frame_id, Arc::new(raw)))
                    .map_err(|e| Error::corrupt(format!("{layer}: {e}")))
            })
            .collect::<Result<_>>()?;
        let mut next_cache: HashMap<i64, Arc<Vec<u8>>> = frames
            .keys()
            .filter_map(|id| cache.remove(id).map(|f| (*id, f)))
            .collect();
        next_cache.extend(decoded);
        cache = next_cache;
        // Check every chunk against its id before any of it is written.
        items.par_iter().try_for_each(|item| -> Result<()> {
            if let Item::Chunk {
                id,
                frame,
                offset,
                len,
            } = item
            {
                let data = chunk_slice(&cache, frame, *offset, *len)
                    .ok_or_else(|| chunk_error(layer, id, frame, "lies outside its frame"))?;
                if ChunkId::of(data) != *id {
                    return Err(chunk_error(
                        layer,
                        id,
                        frame,
                        "content does not match its BLAKE3 id",
                    ));
                }
            }
            Ok(())
        })?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(match item {
                Item::Inline(data) => Segment::Inline(data),
                Item::Chunk {
                    id,
                    frame,
                    offset,
                    len,
                } => {
                    let raw = cache
                        .get(&frame.frame_id)
                        .ok_or_else(|| chunk_error(layer, &id, &frame, "lost its frame"))?;
                    // In range: checked with the chunk's hash above.
                    let start = offset as usize;
                    Segment::Chunk {
                        frame: raw.clone(),
                        start,
                        end: start + len as usize,
                    }
                }
            });
        }
        if tx.send(Ok(out)).is_err() {
            return Ok(()); // the writer stopped; it reports why
        }
    }
}

fn chunk_slice<'a>(
    cache: &'a HashMap<i64, Arc<Vec<u8>>>,
    frame: &FrameLocation,
    offset: u64,
    len: u32,
) -> Option<&'a [u8]> {
    let raw = cache.get(&frame.frame_id)?;
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(len as usize)?;
    raw.get(start..end)
}

fn chunk_error(layer: &str, id: &ChunkId, frame: &FrameLocation, what: &str) -> Error {
    Error::corrupt(format!(
        "{layer}: chunk {id} in pack {} (frame at offset {}) {what}",
        frame.pack, frame.offset
    ))
}
