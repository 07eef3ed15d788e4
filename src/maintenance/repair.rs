//! Repair: scans every pack file (frames describe themselves) and puts
//! back what the index lost or points at wrongly: pack and frame rows,
//! chunk locations, and layers whose recipe frames survive. What cannot be
//! restored is reported, never dropped silently. Runs under the exclusive
//! store lock, before the check that follows it.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::verify::Damage;
use crate::error::Result;
use crate::store::Store;
use crate::store::digest::{ChunkId, Digest};
use crate::store::index::{FrameLocation, Index};
use crate::store::pack::{self, FrameHeader, FrameKind};
use crate::store::packs::read_frame;
use crate::store::recipe::{Entry, RecipeReader};

/// Scans every pack file and restores what the index lost.
pub(super) fn repair(store: &Store, index: &mut Index, damage: &Damage) -> Result<Vec<String>> {
    let packs = store.packs();
    let mut repaired = Vec::new();
    let names: Vec<String> = packs
        .list()?
        .into_iter()
        .map(|f| f.name)
        .filter(|n| n.ends_with(".pack"))
        .collect();
    let mut recipes: Vec<(Digest, u64, i64, Vec<u8>)> = Vec::new();
    let mut restored_chunks = 0u64;
    // gc drops the frame rows of the recipes of layers it removed, but a
    // pack it kept may still hold those frames. In a pack the index knows,
    // a recipe frame without a row is such a removed layer, not a lost one.
    let known_packs: HashSet<String> = index
        .pack_names()?
        .into_iter()
        .map(|(_, name, _)| name)
        .collect();
    for name in names {
        let Ok(map) = packs.map(&name) else {
            continue;
        };
        let mut frames = Vec::new();
        for item in pack::scan_frames(&map) {
            match item {
                Ok(frame) => frames.push(frame),
                Err((offset, why)) => {
                    repaired.push(format!(
                        "pack {name}: stopped reading at offset {offset}: {why}"
                    ));
                    break;
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
                repaired.push(format!(
                    "pack {name}: frame at offset {offset} is unreadable, skipped"
                ));
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
                        if broken || !index.has_chunk(id)? {
                            let frame = get_frame(index)?;
                            if index.repair_chunk(id, frame, here, *len, broken)? {
                                restored_chunks += 1;
                            }
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
    }
    if restored_chunks > 0 {
        repaired.push(format!(
            "{restored_chunks} chunk location(s) restored from packs"
        ));
    }
    let mut seen = HashMap::new();
    for (digest, size, frame, recipe) in recipes {
        if seen.insert(digest, ()).is_some() {
            continue;
        }
        let mut chunks = Vec::new();
        let mut count = 0u64;
        let Ok(reader) = RecipeReader::new(&recipe) else {
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
    Ok(repaired)
}
