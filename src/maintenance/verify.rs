//! Verification (repair itself is in `repair`).
//!
//! The quick check reads only the index and frame headers: every pack file
//! exists and is as long as recorded, every frame header decodes and agrees
//! with the index, every chunk row matches its frame's table, every layer's
//! recipe decodes and resolves to stored chunks, every image reaches stored
//! documents and layers. `full` also decompresses every frame, checks every
//! chunk's BLAKE3 and rebuilds every layer's sha256. `repair` scans the
//! packs (frames describe themselves) and puts back what the index lost or
//! points at wrongly: chunk locations, pack and frame rows, and layers whose
//! recipe frames survive. What cannot be restored is reported, never
//! dropped silently.

use std::collections::HashSet;

use rayon::prelude::*;
use serde::Serialize;

use super::repair::repair;
use crate::error::Result;
use crate::layer::get;
use crate::store::Store;
use crate::store::blob::BlobDescription;
use crate::store::digest::{ChunkId, Digest};
use crate::store::index::{AliasRow, FrameLocation, Index};
use crate::store::pack::{self, FrameHeader, FrameKind};
use crate::store::packs::{PackFile, PackSet, load_blob_description, load_recipe};
use crate::store::recipe::{Entry, RecipeReader};

/// Options for [`Store::verify`].
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Read every chunk and rebuild every layer.
    pub full: bool,
    /// Rebuild what can be rebuilt from the packs. Implies `full`: repair
    /// must know what is damaged, and its verdict covers every byte.
    pub repair: bool,
}

/// One finding.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// What is affected: `pack NAME`, `chunk blake3:..`, `layer sha256:..`, ...
    pub subject: String,
    /// What is wrong, and where.
    pub detail: String,
}

/// What verify found (and repaired).
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// The full check ran.
    pub full: bool,
    /// Packs checked.
    pub packs: u64,
    /// Frames checked.
    pub frames: u64,
    /// Chunk rows checked.
    pub chunks: u64,
    /// Layers checked.
    pub layers: u64,
    /// Compressed blobs kept exactly that were checked (rebuilt, when full).
    pub blobs: u64,
    /// Bytes read and hashed (full check).
    pub bytes_verified: u64,
    /// Broken invariants. Empty means the store is sound.
    pub problems: Vec<Problem>,
    /// Harmless findings (e.g. leftover files gc will remove).
    pub warnings: Vec<Problem>,
    /// What repair put back.
    pub repaired: Vec<String>,
    /// Layers repair could not restore.
    pub lost: Vec<String>,
}

impl VerifyReport {
    /// No problems found (after repair, if it ran).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, subject: impl Into<String>, detail: impl Into<String>) {
        self.problems.push(Problem {
            subject: subject.into(),
            detail: detail.into(),
        });
    }
}

/// Findings the repair pass uses.
#[derive(Default)]
pub(super) struct Damage {
    pub(super) chunks: HashSet<ChunkId>,
    pub(super) layers: HashSet<Digest>,
}

pub(crate) fn verify(store: &Store, opts: &VerifyOptions) -> Result<VerifyReport> {
    // Repair changes the index: keep gc and writers out. A check only reads.
    let _lock = if opts.repair {
        store.lock(crate::store::LockMode::Exclusive)?
    } else {
        store.lock(crate::store::LockMode::Shared)?
    };
    let mut index = store.index()?;
    // Repair needs to know what is damaged, and its verdict must be true:
    // it always runs the full check, before and after.
    let full = opts.full || opts.repair;
    let (report, damage) = check(store, &index, full)?;
    if !opts.repair {
        return Ok(report);
    }
    let outcome = repair(store, &mut index, &damage)?;
    let (mut after, _) = check(store, &index, full)?;
    after.repaired = outcome.repaired;
    after.warnings.extend(outcome.failed);
    after.lost = after
        .problems
        .iter()
        .filter(|p| p.subject.starts_with("layer "))
        .map(|p| p.subject.trim_start_matches("layer ").to_string())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    after.lost.sort();
    Ok(after)
}

fn check(store: &Store, index: &Index, full: bool) -> Result<(VerifyReport, Damage)> {
    let mut report = VerifyReport {
        full,
        ..VerifyReport::default()
    };
    let mut damage = Damage::default();
    let pack_files = store.packs();
    let packs = index.pack_names()?;
    let known: HashSet<&str> = packs.iter().map(|(_, n, _)| n.as_str()).collect();
    let intents = index.pack_intents()?;
    if let Ok(files) = pack_files.list() {
        for PackFile { name, size } in files {
            if known.contains(name.as_str()) {
                continue;
            }
            let subject = format!("file packs/{name}");
            match super::classify(&name, &intents) {
                super::Stray::Temporary | super::Stray::Intended(_) => {
                    report.warnings.push(Problem {
                        subject,
                        detail: "left by an interrupted put or gc, recorded as such in the \
                                 index; gc removes it"
                            .into(),
                    })
                }
                super::Stray::UnknownPack => report.problem(
                    subject,
                    format!(
                        "a pack of {size} bytes the index does not know and has no record of \
                         (the index was lost or restored from an older copy?); \
                         `verify --repair` adopts what it holds, gc keeps it"
                    ),
                ),
                super::Stray::Foreign => report.warnings.push(Problem {
                    subject,
                    detail: "not a pack file; layerstore leaves it alone".into(),
                }),
            }
        }
    }
    for (path, kind) in crate::container::leftovers(store)? {
        let subject = path
            .strip_prefix(store.path())
            .unwrap_or(&path)
            .display()
            .to_string();
        let detail = match kind {
            crate::container::Leftover::InProgress => continue,
            crate::container::Leftover::Garbage => {
                "left by an interrupted or removed container, or an unused image checkout; \
                 gc removes it"
            }
            crate::container::Leftover::Unknown => {
                "a container directory the index does not record (its row was lost?); \
                 gc keeps it"
            }
        };
        report.warnings.push(Problem {
            subject,
            detail: detail.into(),
        });
    }
    // Layer snapshots: derived data, so a bad one is reported (it is
    // unpacked again once removed), never counted as a lost byte.
    let used = crate::container::used_snapshots(store)?;
    for (path, kind) in crate::rootfs::snapshot::snapshot_entries(store, &used) {
        use crate::rootfs::snapshot::SnapshotEntry as S;
        let subject = path
            .strip_prefix(store.path())
            .unwrap_or(&path)
            .display()
            .to_string();
        match kind {
            S::InUse | S::Unused => {
                if let Some(why) = crate::rootfs::snapshot::check_snapshot(&path, full)? {
                    report.problem(
                        subject,
                        format!(
                            "layer snapshot: {why}; the containers on it see the change. \
                             Remove their containers, then this directory: it is unpacked \
                             again from the store when next needed"
                        ),
                    );
                }
            }
            S::Abandoned => report.warnings.push(Problem {
                subject,
                detail: "left by an interrupted snapshot unpack; gc removes it".into(),
            }),
            S::InProgress | S::Foreign => {}
        }
    }
    for name in index.damaged_packs()? {
        report.warnings.push(Problem {
            subject: format!("pack {name}"),
            detail: "repair could read it only in part; gc keeps it whole".into(),
        });
    }
    let mut broken_frames: HashSet<i64> = HashSet::new();
    let pack_total: u64 = packs.iter().map(|(_, _, size)| size).sum();
    for (pack_id, name, size) in &packs {
        report.packs += 1;
        let map = match pack_files.map(name) {
            Ok(m) => m,
            Err(e) => {
                report.problem(format!("pack {name}"), format!("cannot be read: {e}"));
                for row in index.pack_frames(*pack_id)? {
                    broken_frames.insert(row.location.frame_id);
                    note_frame_chunks(index, row.location.frame_id, &mut damage)?;
                }
                continue;
            }
        };
        if (map.len() as u64) < *size {
            report.problem(
                format!("pack {name}"),
                format!(
                    "is {} bytes on disk, the index recorded {size}: truncated",
                    map.len()
                ),
            );
        }
        if let Err(e) = pack::check_pack_header(&map) {
            report.problem(format!("pack {name}"), e);
        }
        let frames = index.pack_frames(*pack_id)?;
        // Only the chunks the index places in a frame are checked: others
        // are dead bytes (forgotten by repair, say) that gc drops.
        let live: Vec<HashSet<ChunkId>> = frames
            .iter()
            .map(|row| {
                Ok(index
                    .frame_chunks(row.location.frame_id)?
                    .into_iter()
                    .map(|(id, _, _)| id)
                    .collect())
            })
            .collect::<Result<_>>()?;
        let results: Vec<Result<Vec<Problem>>> = frames
            .par_iter()
            .zip(&live)
            .map(|(row, live)| check_frame(&map, &row.location, row.kind, live, full))
            .collect();
        for (row, result) in frames.iter().zip(results) {
            report.frames += 1;
            let found = result?;
            if !found.is_empty() {
                broken_frames.insert(row.location.frame_id);
                note_frame_chunks(index, row.location.frame_id, &mut damage)?;
            }
            report.problems.extend(found);
        }
        if full {
            report.bytes_verified += map.len() as u64;
            store.progress("verify", report.bytes_verified, pack_total);
        }
    }
    for id in index.chunks_without_frame()? {
        damage.chunks.insert(id);
        report.problem(format!("chunk {id}"), "its frame is not in the index");
    }
    for frame in index.frames_without_pack()? {
        report.problem(format!("frame {frame}"), "its pack is not in the index");
    }
    report.chunks = index.stats()?.chunks;
    // Layers: recipes decode and resolve; full rebuilds each one.
    let mut packs_set = pack_files.reader();
    for listing in index.list_layers(None)? {
        let layer = listing.row;
        report.layers += 1;
        let subject = format!("layer {}", layer.digest);
        if broken_frames.contains(&layer.recipe.frame_id) {
            damage.layers.insert(layer.digest);
            report.problem(
                &subject,
                format!("its recipe frame in pack {} is damaged", layer.recipe.pack),
            );
            continue;
        }
        let recipe = match load_recipe(&mut packs_set, &layer) {
            Ok(r) => r,
            Err(e) => {
                damage.layers.insert(layer.digest);
                report.problem(&subject, e.to_string());
                continue;
            }
        };
        let mut total = 0u64;
        let mut missing = 0u64;
        let mut reader = match RecipeReader::new(&recipe) {
            Ok(r) => r,
            Err(e) => {
                damage.layers.insert(layer.digest);
                report.problem(&subject, e.to_string());
                continue;
            }
        };
        let mut bad_recipe = None;
        loop {
            match reader.next_entry() {
                Ok(Some(Entry::Inline(b))) => total += b.len() as u64,
                Ok(Some(Entry::Chunk(id, len))) => {
                    total += u64::from(len);
                    if damage.chunks.contains(&id) || !index.has_chunk(&id)? {
                        damage.chunks.insert(id);
                        missing += 1;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    bad_recipe = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(e) = bad_recipe {
            damage.layers.insert(layer.digest);
            report.problem(&subject, e);
            continue;
        }
        if missing > 0 {
            report.problem(
                &subject,
                format!("{missing} of its chunks are missing or damaged"),
            );
            continue;
        }
        if total != layer.size {
            report.problem(
                &subject,
                format!(
                    "recipe describes {total} bytes, the layer has {}",
                    layer.size
                ),
            );
            continue;
        }
        if full {
            let conn = store.index()?;
            match get::write_layer(conn, &pack_files, &layer, &mut std::io::sink(), None) {
                Ok(n) => report.bytes_verified += n,
                Err(e) => report.problem(&subject, e.to_string()),
            }
        }
    }
    // Compressed blobs kept exactly: descriptions decode and their extra
    // data is stored; full rebuilds each one and checks its sha256.
    for digest in index.exact_aliases()? {
        let Some(alias) = index.alias(&digest)? else {
            continue;
        };
        report.blobs += 1;
        let subject = format!("blob {digest}");
        if let Err(e) = check_blob(index, &mut packs_set, &alias, &damage) {
            report.problem(&subject, e);
            continue;
        }
        if full {
            match store.rebuild_blob(&alias, &mut std::io::sink(), None) {
                Ok(n) => report.bytes_verified += n,
                Err(e) => report.problem(&subject, e.to_string()),
            }
        }
    }
    for (subject, detail) in index.image_problems()? {
        report.problem(subject, detail);
    }
    Ok((report, damage))
}

/// Checks that a blob's description decodes and its extra data's chunks
/// are stored and not known to be damaged.
fn check_blob(
    index: &Index,
    packs: &mut PackSet,
    alias: &AliasRow,
    damage: &Damage,
) -> std::result::Result<(), String> {
    let frame = alias
        .blob_frame
        .as_ref()
        .ok_or_else(|| "no blob frame".to_string())?;
    let layer = index
        .layer(&alias.layer)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("its layer {} is not in the index", alias.layer))?;
    let raw = load_blob_description(
        packs,
        frame,
        (layer.digest, layer.size),
        (alias.digest, alias.size),
    )
    .map_err(|e| e.to_string())?;
    let description = BlobDescription::decode(&raw).map_err(|e| format!("description: {e}"))?;
    let mut missing = 0u64;
    for id in description.extra_chunks()? {
        if damage.chunks.contains(&id) || !index.has_chunk(&id).map_err(|e| e.to_string())? {
            missing += 1;
        }
    }
    if missing > 0 {
        return Err(format!(
            "{missing} chunks of its extra data are missing or damaged; its tar may still be intact (get --tar)"
        ));
    }
    Ok(())
}

fn note_frame_chunks(index: &Index, frame_id: i64, damage: &mut Damage) -> Result<()> {
    for (id, _, _) in index.frame_chunks(frame_id)? {
        damage.chunks.insert(id);
    }
    Ok(())
}

/// Checks one frame against its header (and, when `full`, its data).
fn check_frame(
    map: &[u8],
    loc: &FrameLocation,
    kind: u8,
    live: &HashSet<ChunkId>,
    full: bool,
) -> Result<Vec<Problem>> {
    let subject = format!("pack {} frame at offset {}", loc.pack, loc.offset);
    let start = loc.offset as usize;
    let Some(bytes) = start
        .checked_add(loc.total_len as usize)
        .and_then(|end| map.get(start..end))
    else {
        return Ok(vec![Problem {
            subject,
            detail: format!(
                "{} bytes lie beyond the end of the pack ({} bytes)",
                loc.total_len,
                map.len()
            ),
        }]);
    };
    let header = match FrameHeader::decode(bytes) {
        Ok(h) => h,
        Err(e) => return Ok(vec![Problem { subject, detail: e }]),
    };
    let expected_kind = match kind {
        2 => FrameKind::Recipe,
        3 => FrameKind::Blob,
        _ => FrameKind::Chunks,
    };
    if header.kind != expected_kind || header.total_len() != loc.total_len {
        return Ok(vec![Problem {
            subject,
            detail: "frame header does not match the index".into(),
        }]);
    }
    if !full {
        return Ok(Vec::new());
    }
    let raw = match header.decode_payload(&bytes[header.header_len() as usize..]) {
        Ok(r) => r,
        Err(e) => return Ok(vec![Problem { subject, detail: e }]),
    };
    let mut problems = Vec::new();
    let mut at = 0usize;
    for (id, len) in &header.chunks {
        let end = at + *len as usize;
        match raw.get(at..end) {
            _ if !live.contains(id) => {}
            Some(data) if ChunkId::of(data) == *id => {}
            _ => problems.push(Problem {
                subject: format!("chunk {id}"),
                detail: format!(
                    "in pack {} (frame at offset {}, chunk offset {at}): content does not match its BLAKE3 id",
                    loc.pack, loc.offset
                ),
            }),
        }
        at = end;
    }
    Ok(problems)
}

impl Store {
    /// Checks the store's invariants (see [`VerifyOptions`]); with
    /// `repair`, first restores what the packs still hold.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let layer_tar = layerstore::testing::tiny_layer();
    /// store.put_layer(&layer_tar[..])?;
    /// let report = store.verify(&layerstore::VerifyOptions { full: true, repair: false })?;
    /// assert!(report.is_clean(), "{:?}", report.problems);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, opts: &VerifyOptions) -> Result<VerifyReport> {
        verify(self, opts)
    }
}
