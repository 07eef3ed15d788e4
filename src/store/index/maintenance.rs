//! Index queries and updates for gc, verify and repair: what is live,
//! which frames a pack holds, pack replacement, and rows rebuilt from
//! self-describing packs.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::Index;
use super::layers::{
    ExactAlias, FrameLocation, NewPack, insert_exact_alias, insert_pack, layer_id,
};
use super::schema::*;
use crate::error::{Error, Result};
use crate::store::digest::{ChunkId, Digest};
use crate::util::clock::now;

/// Why a pack file may exist that the index does not list (see
/// `MIGRATE_V3`): the only proof gc accepts that such a file is garbage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackIntent {
    /// A writer was about to create it; its commit would have cleared this.
    Writing,
    /// gc dropped it from the index and was about to unlink it.
    Retired,
}

impl PackIntent {
    fn as_str(self) -> &'static str {
        match self {
            PackIntent::Writing => "writing",
            PackIntent::Retired => "retired",
        }
    }
}

/// A pack's size and the bytes of it still in use.
#[derive(Clone, Debug)]
pub struct PackUsage {
    /// Row id.
    pub id: i64,
    /// File name.
    pub name: String,
    /// Size.
    pub size: u64,
    /// Bytes of live frames (partly live chunk frames pro rata).
    pub live_bytes: f64,
    /// Repair could read it only in part: gc keeps it whole.
    pub damaged: bool,
}

/// What gc's first phase found.
#[derive(Clone, Debug)]
pub struct GcCollect {
    /// Layers nothing kept.
    pub layers_removed: u64,
    /// Pushed registry blobs past their grace period that no manifest
    /// refers to.
    pub registry_blobs_removed: u64,
    /// Chunks no layer used.
    pub chunks_removed: u64,
    /// Their uncompressed bytes.
    pub chunk_bytes_removed: u64,
    /// Every pack with its live bytes.
    pub packs: Vec<PackUsage>,
}

/// A frame row.
#[derive(Clone, Debug)]
pub struct FrameRow {
    /// Where it is.
    pub location: FrameLocation,
    /// 1 chunks, 2 recipe, 3 blob.
    pub kind: u8,
}

impl Index {
    /// gc, first phase, in one transaction: forgets layers nothing keeps,
    /// chunks no layer uses and frames nothing points to, then measures
    /// each pack's live bytes. With `dry_run` the transaction is rolled back.
    ///
    /// Registry blobs pushed before `registry_cutoff` (seconds since the
    /// epoch) that no manifest refers to are forgotten first.
    pub fn gc_collect(&mut self, dry_run: bool, registry_cutoff: i64) -> Result<GcCollect> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let registry_blobs_removed = super::registry::sweep_registry_blobs(&tx, registry_cutoff)?;
        let layers_before: u64 = tx.query_row("SELECT COUNT(*) FROM layers", [], |r| r.get(0))?;
        tx.execute_batch(CLEANUP_UNREFERENCED)?;
        let layers_after: u64 = tx.query_row("SELECT COUNT(*) FROM layers", [], |r| r.get(0))?;
        let (chunks_removed, chunk_bytes_removed): (u64, u64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(len), 0) FROM chunks
             WHERE id NOT IN (SELECT chunk FROM layer_chunks)
               AND hash NOT IN (SELECT hash FROM blob_chunks)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.execute(
            "DELETE FROM chunks WHERE id NOT IN (SELECT chunk FROM layer_chunks)
               AND hash NOT IN (SELECT hash FROM blob_chunks)",
            [],
        )?;
        tx.execute(
            "DELETE FROM frames WHERE (kind = 1 AND id NOT IN (SELECT frame FROM chunks))
                OR (kind = 2 AND id NOT IN (SELECT recipe_frame FROM layers))
                OR (kind = 3 AND id NOT IN
                    (SELECT blob_frame FROM aliases WHERE blob_frame IS NOT NULL))",
            [],
        )?;
        let packs = {
            let mut stmt = tx.prepare(
                "SELECT p.id, p.name, p.size, COALESCE((
                    SELECT SUM(CASE WHEN f.kind IN (2, 3) THEN f.total_len
                        ELSE f.total_len * (SELECT COALESCE(SUM(c.len), 0) FROM chunks c WHERE c.frame = f.id)
                             / MAX(f.raw_len, 1) END)
                    FROM frames f WHERE f.pack = p.id), 0), p.damaged
                 FROM packs p ORDER BY p.id",
            )?;
            stmt.query_map([], |r| {
                Ok(PackUsage {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    size: r.get(2)?,
                    live_bytes: r.get(3)?,
                    damaged: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
        };
        if dry_run {
            tx.rollback()?;
        } else {
            tx.commit()?;
        }
        Ok(GcCollect {
            layers_removed: layers_before - layers_after,
            registry_blobs_removed,
            chunks_removed,
            chunk_bytes_removed,
            packs,
        })
    }

    /// A pack's frames in file order.
    pub fn pack_frames(&self, pack_id: i64) -> Result<Vec<FrameRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.id, p.name, f.offset, f.total_len, f.kind
             FROM frames f JOIN packs p ON p.id = f.pack WHERE f.pack = ?1 ORDER BY f.offset",
        )?;
        let rows = stmt.query_map([pack_id], |r| {
            Ok(FrameRow {
                location: FrameLocation::from_row(r, 0)?,
                kind: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Chunks the index places in a frame, by offset.
    pub fn frame_chunks(&self, frame_id: i64) -> Result<Vec<(ChunkId, u64, u32)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hash, offset, len FROM chunks WHERE frame = ?1 ORDER BY offset",
        )?;
        let rows = stmt.query_map([frame_id], |r| {
            let hash: Vec<u8> = r.get(0)?;
            let mut id = [0u8; 32];
            if hash.len() == 32 {
                id.copy_from_slice(&hash);
            }
            Ok((ChunkId(id), r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Points everything in `old_pack` at its copy in `new_pack` and
    /// forgets `old_pack`. `moved[i]` is the old frame id of new frame i.
    pub fn replace_pack(
        &mut self,
        old_pack: i64,
        new_pack: Option<&NewPack>,
        moved: &[i64],
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The old file becomes provable garbage in the same transaction
        // that stops the index from using it.
        tx.execute(
            "INSERT OR REPLACE INTO pack_intents(name, kind, created)
             SELECT name, 'retired', ?2 FROM packs WHERE id = ?1",
            params![old_pack, now()],
        )?;
        if let Some(pack) = new_pack {
            let ids = insert_pack(&tx, pack, now())?;
            for ((frame, old_id), frame_id) in pack.frames.iter().zip(moved).zip(ids) {
                if frame.kind == 2 {
                    tx.execute(
                        "UPDATE layers SET recipe_frame = ?1 WHERE recipe_frame = ?2",
                        params![frame_id, old_id],
                    )?;
                }
                if frame.kind == 3 {
                    tx.execute(
                        "UPDATE aliases SET blob_frame = ?1 WHERE blob_frame = ?2",
                        params![frame_id, old_id],
                    )?;
                }
                let mut update = tx.prepare_cached(
                    "UPDATE chunks SET frame = ?1, offset = ?2 WHERE hash = ?3 AND frame = ?4",
                )?;
                for (id, offset, _) in &frame.chunks {
                    update.execute(params![frame_id, offset, &id.0[..], old_id])?;
                }
            }
        }
        let still_used: u64 = tx.query_row(
            "SELECT (SELECT COUNT(*) FROM chunks c JOIN frames f ON f.id = c.frame WHERE f.pack = ?1)
                  + (SELECT COUNT(*) FROM layers l JOIN frames f ON f.id = l.recipe_frame WHERE f.pack = ?1)
                  + (SELECT COUNT(*) FROM aliases a JOIN frames f ON f.id = a.blob_frame WHERE f.pack = ?1)",
            [old_pack],
            |r| r.get(0),
        )?;
        if still_used != 0 {
            return Err(Error::corrupt(format!(
                "pack rewrite left {still_used} references to the old pack; nothing was changed"
            )));
        }
        tx.execute("DELETE FROM frames WHERE pack = ?1", [old_pack])?;
        tx.execute("DELETE FROM packs WHERE id = ?1", [old_pack])?;
        tx.commit()?;
        Ok(())
    }

    /// Records that pack file `name` is about to be written (or has been
    /// retired), before the file can exist (or be unlinked).
    pub fn record_pack_intent(&self, name: &str, intent: PackIntent) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO pack_intents(name, kind, created) VALUES (?1, ?2, ?3)",
            params![name, intent.as_str(), now()],
        )?;
        Ok(())
    }

    /// Every recorded intent, by pack file name.
    pub fn pack_intents(&self) -> Result<HashMap<String, PackIntent>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, kind FROM pack_intents")?;
        let rows = stmt.query_map([], |r| {
            let kind: String = r.get(1)?;
            Ok((
                r.get::<_, String>(0)?,
                if kind == "retired" {
                    PackIntent::Retired
                } else {
                    PackIntent::Writing
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets the intents of `names` (their files are gone).
    pub fn forget_pack_intents(&mut self, names: &[String]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM pack_intents WHERE name = ?1")?;
            for name in names {
                delete.execute([name])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Names of all packs the index knows.
    pub fn pack_names(&self) -> Result<Vec<(i64, String, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, size FROM packs ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Chunk rows whose frame row is gone.
    pub fn chunks_without_frame(&self) -> Result<Vec<ChunkId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash FROM chunks WHERE frame NOT IN (SELECT id FROM frames)")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows
            .filter_map(|h| h.ok())
            .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok().map(ChunkId))
            .collect())
    }

    /// Frame rows whose pack row is gone.
    pub fn frames_without_pack(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM frames WHERE pack NOT IN (SELECT id FROM packs)")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Problems in the image tables, described.
    pub fn image_problems(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut stmt = self.conn.prepare(
            "SELECT name, target FROM images WHERE target NOT IN (SELECT digest FROM blobs)",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (name, target) = row?;
            out.push((
                format!("image {name:?}"),
                format!("its manifest {target} is not stored"),
            ));
        }
        let mut stmt = self.conn.prepare(
            "SELECT digest, config FROM manifests WHERE config NOT IN (SELECT digest FROM blobs)",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (digest, config) = row?;
            out.push((
                format!("manifest {digest}"),
                format!("its config {config} is not stored"),
            ));
        }
        let mut stmt = self.conn.prepare(
            "SELECT manifest, position FROM manifest_layers WHERE layer NOT IN (SELECT id FROM layers)",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (manifest, position) = row?;
            out.push((
                format!("manifest {manifest}"),
                format!("layer {position} is not stored"),
            ));
        }
        Ok(out)
    }

    /// Repair: the row id of a pack, adding a row for a file the index lost.
    pub fn repair_pack(&mut self, name: &str, size: u64) -> Result<i64> {
        self.conn.execute(
            "INSERT OR IGNORE INTO packs(name, size, created) VALUES (?1, ?2, ?3)",
            params![name, size, now()],
        )?;
        Ok(self
            .conn
            .query_row("SELECT id FROM packs WHERE name = ?1", [name], |r| r.get(0))?)
    }

    /// Marks pack `id` as only partly readable (see `MIGRATE_V3`).
    pub fn mark_pack_damaged(&mut self, id: i64) -> Result<()> {
        self.conn
            .execute("UPDATE packs SET damaged = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Names of the packs marked damaged.
    pub fn damaged_packs(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM packs WHERE damaged = 1 ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The row id of the frame at `offset` of a pack, if the index has one.
    pub fn frame_at(&self, pack: i64, offset: u64) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM frames WHERE pack = ?1 AND offset = ?2",
                params![pack, offset],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Repair: the row id of the frame at `offset` of a pack, adding it if missing.
    pub fn repair_frame(
        &mut self,
        pack: i64,
        offset: u64,
        total_len: u64,
        raw_len: u64,
        stored_len: u64,
        kind: u8,
    ) -> Result<i64> {
        let existing: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM frames WHERE pack = ?1 AND offset = ?2 AND total_len = ?3",
                params![pack, offset, total_len],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(id);
        }
        self.conn.execute(
            "INSERT INTO frames(pack, offset, total_len, raw_len, stored_len, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![pack, offset, total_len, raw_len, stored_len, kind],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Repair: records a verified chunk location; replaces an existing row
    /// only when `replace` (its old location was found broken). True if
    /// anything changed.
    pub fn repair_chunk(
        &mut self,
        id: &ChunkId,
        frame: i64,
        offset: u64,
        len: u32,
        replace: bool,
    ) -> Result<bool> {
        let sql = if replace {
            "INSERT INTO chunks(hash, frame, offset, len) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(hash) DO UPDATE SET frame = excluded.frame, offset = excluded.offset, len = excluded.len"
        } else {
            "INSERT OR IGNORE INTO chunks(hash, frame, offset, len) VALUES (?1, ?2, ?3, ?4)"
        };
        Ok(self
            .conn
            .execute(sql, params![&id.0[..], frame, offset, len])?
            > 0)
    }

    /// Repair: forgets chunks proven damaged or missing, so that the next
    /// put of their data writes them again. Returns how many rows went.
    pub fn forget_chunks(&mut self, ids: &[ChunkId]) -> Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut removed = 0;
        {
            let mut delete = tx.prepare_cached("DELETE FROM chunks WHERE hash = ?1")?;
            for id in ids {
                removed += delete.execute([&id.0[..]])? as u64;
            }
        }
        // Chunk frames left with no chunk (the damaged ones among them)
        // describe nothing any more.
        tx.execute(
            "DELETE FROM frames WHERE kind = 1 AND id NOT IN (SELECT frame FROM chunks)",
            [],
        )?;
        tx.commit()?;
        Ok(removed)
    }

    /// Repair: points a layer at a recipe frame, or re-creates a lost layer
    /// (pinned, since nothing else is known to keep it). Returns true if the
    /// layer was re-created.
    pub fn repair_layer(
        &mut self,
        digest: &Digest,
        size: u64,
        recipe_frame: i64,
        chunk_count: u64,
        chunks: &[ChunkId],
    ) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<i64> = layer_id(&tx, digest)?;
        let created = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE layers SET recipe_frame = ?1 WHERE id = ?2",
                    params![recipe_frame, id],
                )?;
                false
            }
            None => {
                tx.execute(
                    "INSERT INTO layers(digest, size, recipe_frame, chunk_count, pinned, created)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5)",
                    params![digest.to_string(), size, recipe_frame, chunk_count, now()],
                )?;
                let id = tx.last_insert_rowid();
                let mut link = tx.prepare_cached(
                    "INSERT OR IGNORE INTO layer_chunks(layer, chunk) SELECT ?1, id FROM chunks WHERE hash = ?2",
                )?;
                for chunk in chunks {
                    link.execute(params![id, &chunk.0[..]])?;
                }
                true
            }
        };
        tx.commit()?;
        Ok(created)
    }

    /// Repair: records compressed blob `alias` of layer `layer` with the
    /// blob frame that rebuilds it and links its extra chunks to the layer.
    /// False when the layer is not in the index (nothing is recorded).
    pub fn repair_alias(&mut self, layer: &Digest, alias: &ExactAlias) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(layer_id) = layer_id(&tx, layer)? else {
            return Ok(false);
        };
        insert_exact_alias(&tx, layer_id, alias)?;
        tx.commit()?;
        Ok(true)
    }
}
