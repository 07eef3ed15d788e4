//! Repair: scans every pack file (frames describe themselves) and puts
//! back what the index lost or points at wrongly: pack and frame rows,
//! chunk locations, and layers whose recipe frames survive. What cannot be
//! restored is reported, never dropped silently. Runs under the exclusive
//! store lock, before the check that follows it.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::verify::{Damage, Problem};
use crate::error::Result;
use crate::layer::input::Compression;
use crate::store::Store;
use crate::store::blob::{BlobCompression, BlobDescription, BlobMethod};
use crate::store::digest::{ChunkId, Digest};
use crate::store::index::{ExactAlias, FrameLocation, Index};
use crate::store::pack::{self, FrameHeader, FrameKind};
use crate::store::packs::read_frame;
use crate::store::recipe::{Entry, RecipeReader};

/// What a repair pass did and what it could not read.
pub(super) struct RepairOutcome {
    /// What was restored.
    pub repaired: Vec<String>,
    /// What could not be read or used (never listed as repaired).
    pub failed: Vec<Problem>,
}

/// Scans every pack file and restores what the index lost.
pub(super) fn repair(store: &Store, index: &mut Index, damage: &Damage) -> Result<RepairOutcome> {
    let packs = store.packs();
    let mut repaired = Vec::new();
    let mut failed = Vec::new();
    let mut fail = |subject: String, detail: String| failed.push(Problem { subject, detail });
    // A pack the index records as an uncommitted write or as retired by gc
    // is garbage by proof: adopting it would bring back what a failed put
    // never stored or what gc had just forgotten.
    let intents = index.pack_intents()?;
    let names: Vec<String> = packs
        .finished()?
        .into_iter()
        .map(|f| f.name)
        .filter(|n| !intents.contains_key(n))
        .collect();
    let mut recipes: Vec<(Digest, u64, i64, Vec<u8>)> = Vec::new();
    let mut blobs: Vec<FoundBlob> = Vec::new();
    let mut restored_chunks = 0u64;
    // Damaged chunks for which an intact copy was found.
    let mut healed: HashSet<ChunkId> = HashSet::new();
    // gc drops the frame rows of the recipes of layers it removed, but a
    // pack it kept may still hold those frames. In a pack the index knows,
    // a recipe frame without a row is such a removed layer, not a lost one.
    let known_packs: HashSet<String> = index
        .pack_names()?
        .into_iter()
        .map(|(_, name, _)| name)
        .collect();
    for name in names {
        let map = match packs.map(&name) {
            Ok(map) => map,
            Err(e) => {
                fail(format!("pack {name}"), format!("cannot be read: {e}"));
                continue;
            }
        };
        if let Err(why) = pack::check_pack_header(&map) {
            fail(format!("pack {name}"), format!("not read: {why}"));
            continue;
        }
        let mut frames = Vec::new();
        let mut partly_read = false;
        for item in pack::scan_frames(&map) {
            match item {
                Ok(frame) => frames.push(frame),
                Err((offset, why)) => {
                    partly_read = true;
                    fail(
                        format!("pack {name}"),
                        format!(
                            "bytes from offset {offset} are not a readable frame ({why}); \
                             reading resumed at the next valid frame header"
                        ),
                    );
                }
            }
        }
        if frames.is_empty() {
            continue;
        }
        let pack_was_known = known_packs.contains(&name);
        let pack_id = index.repair_pack(&name, map.len() as u64)?;
        // Decode and verify frames in parallel; record them in order.
        let decoded: Vec<(u64, FrameHeader, Option<Vec<u8>>)> = frames
            .into_par_iter()
            .map(|(offset, header)| {
                let loc = FrameLocation {
                    frame_id: 0,
                    pack: name.clone(),
                    offset,
                    total_len: header.total_len(),
                };
                let raw = read_frame(&map, &loc).ok().map(|(_, raw)| raw);
                (offset, header, raw)
            })
            .collect();
        for (offset, header, raw) in decoded {
            let Some(raw) = raw else {
                partly_read = true;
                fail(
                    format!("pack {name}"),
                    format!("the frame at offset {offset} does not decode; skipped"),
                );
                continue;
            };
            let kind = header.kind as u8;
            let mut frame_id = None;
            let mut get_frame = |index: &mut Index| -> Result<i64> {
                if let Some(id) = frame_id {
                    return Ok(id);
                }
                let id = index.repair_frame(
                    pack_id,
                    offset,
                    header.total_len(),
                    header.raw_len,
                    header.stored_len,
                    kind,
                )?;
                frame_id = Some(id);
                Ok(id)
            };
            match header.kind {
                FrameKind::Chunks => {
                    let mut at = 0u64;
                    for (id, len) in &header.chunks {
                        let here = at;
                        at += u64::from(*len);
                        let data = raw.get(here as usize..at as usize);
                        if data.map(ChunkId::of) != Some(*id) {
                            continue;
                        }
                        let broken = damage.chunks.contains(id);
                        if (broken && !healed.contains(id)) || !index.has_chunk(id)? {
                            let frame = get_frame(index)?;
                            if index.repair_chunk(id, frame, here, *len, broken)? {
                                restored_chunks += 1;
                                if broken {
                                    healed.insert(*id);
                                }
                            }
                        }
                    }
                }
                FrameKind::Blob => {
                    if let (Some(layer), Some(blob)) = (header.recipe_of, header.blob_of) {
                        let known = index
                            .alias(&blob.0)?
                            .is_some_and(|a| a.blob_frame.is_some());
                        if !known && (!pack_was_known || index.frame_at(pack_id, offset)?.is_some())
                        {
                            let frame = get_frame(index)?;
                            blobs.push(FoundBlob {
                                layer: layer.0,
                                blob,
                                frame,
                                description: raw,
                            });
                        }
                    }
                }
                FrameKind::Recipe => {
                    if let Some((digest, size)) = header.recipe_of {
                        let needed = damage.layers.contains(&digest)
                            || (index.layer(&digest)?.is_none()
                                && (!pack_was_known || index.frame_at(pack_id, offset)?.is_some()));
                        if needed {
                            let frame = get_frame(index)?;
                            recipes.push((digest, size, frame, raw));
                        }
                    }
                }
            }
        }
        if partly_read {
            // gc must not delete or rewrite what repair could not read.
            index.mark_pack_damaged(pack_id)?;
        }
    }
    if restored_chunks > 0 {
        repaired.push(format!(
            "{restored_chunks} chunk location(s) restored from packs"
        ));
    }
    // Chunks proven damaged or missing with no intact copy anywhere: their
    // rows go, so that putting or importing the same data again stores
    // them anew (dedup would otherwise trust the broken copy) and heals
    // the layers that use them.
    let unhealed: Vec<ChunkId> = damage
        .chunks
        .iter()
        .filter(|id| !healed.contains(*id))
        .copied()
        .collect();
    if !unhealed.is_empty() {
        let forgotten = index.forget_chunks(&unhealed)?;
        fail(
            format!("{forgotten} chunk(s)"),
            "damaged or missing with no intact copy in any pack; forgotten, so that \
             putting or importing the same data again stores them anew"
                .into(),
        );
    }
    let mut seen = HashMap::new();
    for (digest, size, frame, recipe) in recipes {
        if seen.insert(digest, ()).is_some() {
            continue;
        }
        let mut chunks = Vec::new();
        let mut count = 0u64;
        let Ok(reader) = RecipeReader::new(&recipe) else {
            fail(
                format!("layer {digest}"),
                "its recipe frame does not decode".into(),
            );
            continue;
        };
        let mut ok = true;
        for entry in reader {
            match entry {
                Ok(Entry::Chunk(id, _)) => {
                    count += 1;
                    chunks.push(id);
                }
                Ok(Entry::Inline(_)) => {}
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            fail(
                format!("layer {digest}"),
                "its recipe frame does not decode".into(),
            );
            continue;
        }
        chunks.sort();
        chunks.dedup();
        if index.repair_layer(&digest, size, frame, count, &chunks)? {
            repaired.push(format!(
                "layer {digest} re-created from its recipe (pinned)"
            ));
        } else {
            repaired.push(format!("layer {digest}: recipe location restored"));
        }
    }
    for found in blobs {
        let (layer, (digest, size)) = (found.layer, found.blob);
        match restore_alias(index, &layer, digest, size, found.frame, &found.description)? {
            Ok(true) => repaired.push(format!(
                "blob {digest}: its exact rebuild restored (layer {layer})"
            )),
            Ok(false) => {}
            Err(why) => fail(format!("blob {digest}"), why),
        }
    }
    Ok(RepairOutcome { repaired, failed })
}

/// A blob frame the index does not know.
struct FoundBlob {
    /// The layer's DiffID.
    layer: Digest,
    /// The blob's sha256 and size.
    blob: (Digest, u64),
    /// Its frame row.
    frame: i64,
    /// The frame's payload.
    description: Vec<u8>,
}

/// Records a compressed blob from its blob frame, if its layer and every
/// chunk of its extra data are in the index. Ok(false): its layer is not
/// (it was removed, or is lost and listed as such).
fn restore_alias(
    index: &mut Index,
    layer: &Digest,
    digest: Digest,
    size: u64,
    frame: i64,
    raw: &[u8],
) -> Result<std::result::Result<bool, String>> {
    let description = match BlobDescription::decode(raw) {
        Ok(d) => d,
        Err(e) => return Ok(Err(format!("its blob frame does not decode: {e}"))),
    };
    let mut chunks = match description.extra_chunks() {
        Ok(ids) => ids,
        Err(e) => return Ok(Err(format!("its extra data's recipe does not decode: {e}"))),
    };
    chunks.sort();
    chunks.dedup();
    for id in &chunks {
        if !index.has_chunk(id)? {
            return Ok(Err(format!(
                "chunk {id} of its extra data is in no pack; only its tar can be read (get --tar)"
            )));
        }
    }
    let media_type = match description.compression {
        BlobCompression::Gzip => Compression::Gzip.media_type(),
        BlobCompression::Zstd => Compression::Zstd.media_type(),
    };
    let alias = ExactAlias {
        digest,
        media_type: media_type.to_string(),
        size,
        frame,
        method: description.method.name().to_string(),
        extra_bytes: description.extra_len,
        extra_chunks: chunks,
        // A verbatim blob may have been waiting for gc's cheaper method.
        pending: description.method == BlobMethod::Verbatim,
    };
    Ok(Ok(index.repair_alias(layer, &alias)?))
}
