//! Garbage collection: first convert compressed blobs a put kept verbatim
//! to their cheaper exact method (under the shared lock, beside puts and
//! gets, since it is slow and only adds packs); then forget layers nothing
//! keeps (roots: image names, pinned layers, and the manifests of
//! containers), then chunks no layer or blob uses, then rewrite packs whose
//! live share fell below a threshold; last, delete image checkouts no
//! container uses.
//!
//! From the forgetting on, gc holds the store lock exclusively, so it never
//! runs while a put, import or get holds it shared: those wait for gc, and
//! gc waits for them.
//! Packs are replaced, never changed: live frames are copied into a new
//! pack (fsynced and renamed into place), one transaction points the index
//! at the copy and records the old file as retired, and only then is the
//! old file unlinked. A crash at any point leaves either the old or the new
//! pack referenced, plus at most an unreferenced file that the index
//! records as garbage (a writer's or gc's intent), which the next gc
//! removes. A pack file the index has no record of is never deleted. Memory is bounded by one
//! pack's frame list, not by the store's size.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::digest::ChunkId;
use crate::store::index::{Index, NewFrame, NewPack, PackUsage};
use crate::store::pack;
use crate::store::packs::read_frame;

/// Options for [`Store::gc`].
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Report what would be freed; change nothing.
    pub dry_run: bool,
    /// Packs whose live share is below this (0.0-1.0) are rewritten.
    pub rewrite_below: f64,
    /// Registry blobs no manifest refers to are kept this long after
    /// their push (a client pushes blobs before the manifest that uses
    /// them).
    pub registry_grace: std::time::Duration,
    /// Registry upload sessions untouched this long are removed.
    pub upload_max_age: std::time::Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            rewrite_below: 0.5,
            registry_grace: crate::store::uploads::REGISTRY_BLOB_GRACE,
            upload_max_age: crate::store::uploads::UPLOAD_MAX_AGE,
        }
    }
}

/// What gc did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Layers forgotten (neither pinned nor used by an image).
    pub layers_removed: u64,
    /// Registry blobs forgotten: pushed longer ago than the grace period
    /// and used by no manifest.
    pub registry_blobs_removed: u64,
    /// Registry upload sessions removed (untouched too long).
    pub uploads_removed: u64,
    /// Chunks no layer used.
    pub chunks_removed: u64,
    /// Their uncompressed bytes.
    pub chunk_bytes_removed: u64,
    /// Packs deleted because nothing in them was live.
    pub packs_deleted: u64,
    /// Packs rewritten to drop dead frames.
    pub packs_rewritten: u64,
    /// Leftover files of interrupted puts or gcs removed: temporary packs,
    /// and packs the index recorded as uncommitted or retired.
    pub orphan_files_removed: u64,
    /// Complete packs the index does not know and has no record of
    /// (an index lost or restored from an older copy): kept, since they may
    /// hold the only copy of data; `verify --repair` adopts them.
    pub unknown_packs_kept: Vec<String>,
    /// Packs repair could read only in part: never deleted or rewritten.
    pub damaged_packs_kept: Vec<String>,
    /// Files in `packs/` that are not packs: never touched.
    pub foreign_files_kept: Vec<String>,
    /// Pack directory bytes before.
    pub bytes_before: u64,
    /// Pack directory bytes after (estimated for a dry run).
    pub bytes_after: u64,
    /// `bytes_before - bytes_after`.
    pub bytes_freed: u64,
    /// Packs that could not be rewritten (damaged); left as they were.
    pub skipped: Vec<String>,
    /// Image checkouts no container uses and leftovers of removed or
    /// interrupted containers, deleted.
    pub container_dirs_removed: u64,
    /// Layer snapshots no image or container uses, and what interrupted
    /// unpacks left, deleted (a snapshot is unpacked again on demand).
    pub snapshots_removed: u64,
    /// Compressed blobs a put kept verbatim that now have a cheaper exact
    /// method (with `dry_run`: that are waiting for one).
    pub blobs_converted: u64,
    /// Of the pending blobs, those no cheaper method reproduces (they stay
    /// verbatim, and are not tried again).
    pub blobs_settled: u64,
}

pub(crate) fn collect_garbage(store: &Store, opts: &GcOptions) -> Result<GcReport> {
    let mut index = store.index()?;
    // Pending blobs first, so that their verbatim copies go with this gc.
    // Converting is slow (preflate) and writes only new packs, committed
    // like a put's, so it runs under the shared lock: puts and gets go on.
    let converted = {
        let _shared = store.lock(crate::store::LockMode::Shared)?;
        if opts.dry_run {
            crate::layer::exact::convert::Converted {
                converted: index.pending_blobs()?.len() as u64,
                ..Default::default()
            }
        } else {
            crate::layer::exact::convert::convert_pending(store, &mut index)?
        }
    };
    let _lock = store.lock(crate::store::LockMode::Exclusive)?;
    let packs = store.packs();
    let registry_cutoff =
        crate::util::clock::now() - opts.registry_grace.as_secs().min(i64::MAX as u64) as i64;
    let collected = index.gc_collect(opts.dry_run, registry_cutoff)?;
    let report_uploads = if opts.dry_run {
        0
    } else {
        store.sweep_uploads(opts.upload_max_age)?
    };
    if !opts.dry_run {
        crate::util::fault::point("gc-after-collect");
    }
    let known: HashSet<String> = collected.packs.iter().map(|p| p.name.clone()).collect();
    let mut report = GcReport {
        dry_run: opts.dry_run,
        layers_removed: collected.layers_removed,
        registry_blobs_removed: collected.registry_blobs_removed,
        uploads_removed: report_uploads,
        chunks_removed: collected.chunks_removed,
        chunk_bytes_removed: collected.chunk_bytes_removed,
        blobs_converted: converted.converted,
        blobs_settled: converted.settled,
        ..GcReport::default()
    };
    // Files the index does not know. Only those it can prove are garbage
    // go: temporaries (nobody else holds the lock, so no writer is
    // running) and packs with a recorded intent.
    let intents = index.pack_intents()?;
    let mut orphans = Vec::new();
    for file in packs.list()? {
        report.bytes_before += file.size;
        if known.contains(&file.name) {
            continue;
        }
        match super::classify(&file.name, &intents) {
            super::Stray::Temporary | super::Stray::Intended(_) => orphans.push(file),
            super::Stray::UnknownPack => report.unknown_packs_kept.push(file.name),
            super::Stray::Foreign => report.foreign_files_kept.push(file.name),
        }
    }
    let mut freed = 0u64;
    for orphan in &orphans {
        if !opts.dry_run {
            packs.remove(&orphan.name)?;
        }
        report.orphan_files_removed += 1;
        freed += orphan.size;
    }
    let pack_total: u64 = collected.packs.iter().map(|p| p.size).sum();
    let mut packs_done = 0;
    for usage in &collected.packs {
        packs_done += usage.size;
        store.progress("gc", packs_done, pack_total);
        if usage.damaged {
            // Repair read it only in part: what it could not read may
            // still be recovered by other means, so it stays whole.
            report.damaged_packs_kept.push(usage.name.clone());
            continue;
        }
        let body = usage.size.saturating_sub(pack::PACK_HEADER_LEN).max(1) as f64;
        let share = usage.live_bytes / body;
        if usage.live_bytes <= 0.0 {
            if !opts.dry_run {
                index.replace_pack(usage.id, None, &[])?;
                packs.remove(&usage.name)?;
            }
            report.packs_deleted += 1;
            freed += usage.size;
        } else if share < opts.rewrite_below {
            if opts.dry_run {
                freed += usage.size.saturating_sub(usage.live_bytes as u64);
                report.packs_rewritten += 1;
                continue;
            }
            match rewrite_pack(&mut index, store, usage) {
                Ok(new_size) => {
                    report.packs_rewritten += 1;
                    freed += usage.size.saturating_sub(new_size);
                }
                Err(e @ Error::Corrupt(_)) => report.skipped.push(format!("{}: {e}", usage.name)),
                Err(e) => return Err(e),
            }
        }
    }
    if !opts.dry_run {
        packs.sync()?;
        // Intents whose files are gone (removed above, retired and unlinked
        // by this gc, or never created) have served their purpose.
        let present: HashSet<String> = packs.list()?.into_iter().map(|f| f.name).collect();
        let done: Vec<String> = index
            .pack_intents()?
            .into_keys()
            .filter(|name| !present.contains(name))
            .collect();
        index.forget_pack_intents(&done)?;
    }
    // Spools of imports that died (a live import holds the lock shared, so
    // none is running now).
    for (spool, _) in crate::util::fs::spool_files(store.path()) {
        if !opts.dry_run {
            let _ = std::fs::remove_file(&spool);
        }
        report.orphan_files_removed += 1;
    }
    report.container_dirs_removed = crate::container::collect_garbage(store, opts.dry_run)?;
    report.snapshots_removed = crate::container::collect_snapshot_garbage(store, opts.dry_run)?;
    report.bytes_after = report.bytes_before.saturating_sub(freed);
    report.bytes_freed = freed;
    Ok(report)
}

/// Copies a pack's live frames into a new pack (re-encoding frames that
/// are only partly live) and swaps it in. Returns the new pack's size.
fn rewrite_pack(index: &mut Index, store: &Store, usage: &PackUsage) -> Result<u64> {
    let packs = store.packs();
    let map = packs.map(&usage.name)?;
    let mut writer = store.new_pack()?;
    let mut compressor = zstd::bulk::Compressor::new(store.config().zstd_level)
        .map_err(|e| Error::io("creating zstd compressor", e))?;
    let mut frames = Vec::new();
    let mut moved = Vec::new();
    for row in index.pack_frames(usage.id)? {
        let (header, raw) = read_frame(&map, &row.location)?;
        // Recipe and blob frames are stored as is (codec none): their
        // decoded bytes are their payload.
        let (new_header, payload) = if row.kind == 2 || row.kind == 3 {
            (header, raw)
        } else {
            let live = index.frame_chunks(row.location.frame_id)?;
            let mut chunks = Vec::with_capacity(live.len());
            let mut data = Vec::with_capacity(raw.len());
            for (id, offset, len) in &live {
                let bytes = usize::try_from(*offset)
                    .ok()
                    .and_then(|start| raw.get(start..start + *len as usize))
                    .ok_or_else(|| Error::corrupt(format!("chunk {id} lies outside its frame")))?;
                if ChunkId::of(bytes) != *id {
                    return Err(Error::corrupt(format!(
                        "chunk {id} in pack {} (frame at offset {}) does not match its id",
                        usage.name, row.location.offset
                    )));
                }
                chunks.push((*id, *len));
                data.extend_from_slice(bytes);
            }
            pack::encode_chunk_frame(chunks, &data, &mut compressor)?
        };
        let offset = writer.append(&new_header, &payload)?;
        let mut at = 0u64;
        frames.push(NewFrame {
            offset,
            total_len: new_header.total_len(),
            raw_len: new_header.raw_len,
            stored_len: new_header.stored_len,
            kind: row.kind,
            chunks: new_header
                .chunks
                .iter()
                .map(|(id, len)| {
                    let here = at;
                    at += u64::from(*len);
                    (*id, here, *len)
                })
                .collect(),
        });
        moved.push(row.location.frame_id);
    }
    let finished = writer.finish()?;
    crate::util::fault::point("gc-pack-rewritten");
    let new_pack = NewPack {
        name: finished.name.clone(),
        size: finished.size,
        frames,
    };
    if let Err(e) = index.replace_pack(usage.id, Some(&new_pack), &moved) {
        packs.discard(&finished.name);
        return Err(e);
    }
    drop(map);
    crate::util::fault::point("gc-before-unlink");
    packs.remove(&usage.name)?;
    Ok(finished.size)
}

impl Store {
    /// Reclaims space: forgets layers that are neither pinned nor used by
    /// an image, then chunks no layer uses, then rewrites packs whose live
    /// share is below `opts.rewrite_below`. Waits for running puts, imports
    /// and gets (they hold the store lock shared) and makes new ones wait.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let layer_tar = layerstore::testing::tiny_layer();
    /// let digest = store.put_layer(&layer_tar[..])?.digest;
    /// store.remove_layer(&digest)?;
    /// let report = store.gc(&layerstore::GcOptions::default())?;
    /// assert_eq!(report.chunks_removed, 1);
    /// assert_eq!(store.stats()?.pack_bytes, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        collect_garbage(self, opts)
    }
}
