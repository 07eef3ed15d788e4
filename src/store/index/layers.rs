//! Index rows for packs, frames, chunks, layers and aliases: what a put
//! commits and what get, ls and rm read.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Index, digest_from_sql};
use crate::error::{Error, Result};
use crate::store::digest::{ChunkId, Digest};
use crate::util::clock::now;

/// Where a frame is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameLocation {
    /// Frame row id.
    pub frame_id: i64,
    /// Pack file name under `packs/`.
    pub pack: String,
    /// Offset of the frame in the pack.
    pub offset: u64,
    /// Header plus payload length.
    pub total_len: u64,
}

impl FrameLocation {
    /// Reads a location from four columns starting at `first`: frame id,
    /// pack name, offset, total length.
    pub(super) fn from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(FrameLocation {
            frame_id: r.get(first)?,
            pack: r.get(first + 1)?,
            offset: r.get(first + 2)?,
            total_len: r.get(first + 3)?,
        })
    }
}

/// Where a chunk is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkLocation {
    /// The frame holding it.
    pub frame: FrameLocation,
    /// Offset within the frame's uncompressed payload.
    pub offset: u64,
    /// Chunk length.
    pub len: u32,
}

/// A layer row.
#[derive(Clone, Debug)]
pub struct LayerRow {
    /// Row id.
    pub id: i64,
    /// DiffID.
    pub digest: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// The recipe frame.
    pub recipe: FrameLocation,
    /// Chunk references in the recipe.
    pub chunk_count: u64,
    /// Put directly and not removed.
    pub pinned: bool,
    /// Unix seconds.
    pub created: i64,
}

/// Listing row for `ls`.
#[derive(Clone, Debug)]
pub struct LayerListing {
    /// The layer.
    pub row: LayerRow,
    /// Bytes of packs attributable to this layer, shared chunks split evenly.
    pub stored_share: f64,
    /// Compressed digests recorded for it.
    pub aliases: Vec<Digest>,
}

/// A frame written by a put, for [`Index::commit_put`].
#[derive(Clone, Debug)]
pub struct NewFrame {
    /// Offset in its pack.
    pub offset: u64,
    /// Header plus payload length.
    pub total_len: u64,
    /// Uncompressed payload length.
    pub raw_len: u64,
    /// Payload bytes on disk.
    pub stored_len: u64,
    /// 1 = chunks, 2 = recipe.
    pub kind: u8,
    /// Chunks: id, offset in payload, length.
    pub chunks: Vec<(ChunkId, u64, u32)>,
}

/// A pack written by a put.
#[derive(Clone, Debug)]
pub struct NewPack {
    /// File name.
    pub name: String,
    /// Size.
    pub size: u64,
    /// Its frames.
    pub frames: Vec<NewFrame>,
}

/// The layer a put adds.
#[derive(Clone, Debug)]
pub struct NewLayer {
    /// DiffID.
    pub digest: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// (pack index, frame index) of the recipe frame in the `NewPack` list;
    /// None when the layer was already stored.
    pub recipe_frame: Option<(usize, usize)>,
    /// Chunk references in the recipe.
    pub chunk_count: u64,
    /// Distinct chunks the layer uses.
    pub distinct_chunks: Vec<ChunkId>,
    /// The compressed blob the layer came as, if it was compressed.
    pub alias: Option<NewAlias>,
}

/// A compressed blob recorded as a layer's alias.
#[derive(Clone, Debug)]
pub struct NewAlias {
    /// sha256 of the blob.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// How it is rebuilt exactly; None when only its tar is kept.
    pub blob: Option<NewBlob>,
}

/// The blob frame a put wrote for an alias.
#[derive(Clone, Debug)]
pub struct NewBlob {
    /// (pack index, frame index) of the blob frame in the `NewPack` list;
    /// None when the alias already has its blob frame.
    pub frame: Option<(usize, usize)>,
    /// Method name (`verbatim`, `zstd`, `preflate`).
    pub method: String,
    /// Bytes of extra data the method keeps.
    pub extra_bytes: u64,
    /// Distinct chunks of the extra data: named in `blob_chunks` so that
    /// they live as long as the alias does.
    pub extra_chunks: Vec<ChunkId>,
    /// Kept verbatim until gc looks for a cheaper method.
    pub pending: bool,
}

/// Compressed blobs kept one way, summed.
#[derive(Clone, Debug)]
pub struct BlobMethodRow {
    /// Method, or `tar-only`.
    pub method: String,
    /// Blobs.
    pub count: u64,
    /// Their total size.
    pub blob_bytes: u64,
    /// Their extra bytes.
    pub extra_bytes: u64,
    /// Those waiting for gc's cheaper method.
    pub pending: u64,
}

/// An alias row: a compressed blob recorded for a layer.
#[derive(Clone, Debug)]
pub struct AliasRow {
    /// sha256 of the blob.
    pub digest: Digest,
    /// The layer's DiffID.
    pub layer: Digest,
    /// Its size.
    pub size: u64,
    /// The blob frame, when the blob can be rebuilt exactly.
    pub blob_frame: Option<FrameLocation>,
    /// Method name, when it can.
    pub method: Option<String>,
    /// Bytes of extra data kept for it.
    pub extra_bytes: u64,
    /// Kept verbatim until gc looks for a cheaper method.
    pub pending: bool,
}

impl Index {
    /// Where a chunk is stored, if it is.
    pub fn chunk_location(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.id, p.name, f.offset, f.total_len, c.offset, c.len
             FROM chunks c JOIN frames f ON f.id = c.frame JOIN packs p ON p.id = f.pack
             WHERE c.hash = ?1",
        )?;
        Ok(stmt
            .query_row([&id.0[..]], |r| {
                Ok(ChunkLocation {
                    frame: FrameLocation::from_row(r, 0)?,
                    offset: r.get(4)?,
                    len: r.get(5)?,
                })
            })
            .optional()?)
    }

    /// Is the chunk stored?
    pub fn has_chunk(&self, id: &ChunkId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM chunks WHERE hash = ?1)")?;
        Ok(stmt.query_row([&id.0[..]], |r| r.get(0))?)
    }

    const LAYER_SELECT: &'static str = "l.id, l.digest, l.size, l.chunk_count, l.pinned, l.created,
         f.id, p.name, f.offset, f.total_len";
    const LAYER_FROM: &'static str =
        "FROM layers l JOIN frames f ON f.id = l.recipe_frame JOIN packs p ON p.id = f.pack";

    fn layer_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LayerRow> {
        Ok(LayerRow {
            id: r.get(0)?,
            digest: digest_from_sql(r.get(1)?)?,
            size: r.get(2)?,
            chunk_count: r.get(3)?,
            pinned: r.get(4)?,
            created: r.get(5)?,
            recipe: FrameLocation::from_row(r, 6)?,
        })
    }

    /// A layer by DiffID.
    pub fn layer(&self, digest: &Digest) -> Result<Option<LayerRow>> {
        self.one_layer("WHERE l.digest = ?1", digest)
    }

    /// A layer by the digest of a compressed blob recorded as its alias.
    pub fn layer_by_alias(&self, digest: &Digest) -> Result<Option<LayerRow>> {
        self.one_layer(
            "JOIN aliases a ON a.layer = l.id WHERE a.digest = ?1",
            digest,
        )
    }

    /// The layer `filter` (joins and a WHERE on `?1`) selects for `digest`.
    fn one_layer(&self, filter: &str, digest: &Digest) -> Result<Option<LayerRow>> {
        let sql = format!(
            "SELECT {} {} {filter}",
            Self::LAYER_SELECT,
            Self::LAYER_FROM
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        Ok(stmt
            .query_row([digest.to_string()], Self::layer_from_row)
            .optional()?)
    }

    /// The alias row of compressed blob `digest`, if one is recorded.
    pub fn alias(&self, digest: &Digest) -> Result<Option<AliasRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT a.digest, l.digest, a.size, a.method, a.extra_bytes,
                    f.id, p.name, f.offset, f.total_len, a.pending
             FROM aliases a JOIN layers l ON l.id = a.layer
             LEFT JOIN frames f ON f.id = a.blob_frame LEFT JOIN packs p ON p.id = f.pack
             WHERE a.digest = ?1",
        )?;
        Ok(stmt
            .query_row([digest.to_string()], |r| {
                let frame: Option<i64> = r.get(5)?;
                Ok(AliasRow {
                    digest: digest_from_sql(r.get(0)?)?,
                    layer: digest_from_sql(r.get(1)?)?,
                    size: r.get(2)?,
                    method: r.get(3)?,
                    extra_bytes: r.get(4)?,
                    pending: r.get(9)?,
                    blob_frame: match frame {
                        Some(_) => Some(FrameLocation::from_row(r, 5)?),
                        None => None,
                    },
                })
            })
            .optional()?)
    }

    /// Compressed blobs by how they are kept: method (`tar-only` for
    /// those without a blob frame), count, blob bytes, extra bytes, and how
    /// many wait for gc's cheaper method.
    pub fn blob_methods(&self) -> Result<Vec<BlobMethodRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT COALESCE(method, 'tar-only'), COUNT(*), COALESCE(SUM(size), 0),
                    COALESCE(SUM(extra_bytes), 0), COALESCE(SUM(pending), 0)
             FROM aliases GROUP BY 1 ORDER BY 1",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(BlobMethodRow {
                method: r.get(0)?,
                count: r.get(1)?,
                blob_bytes: r.get(2)?,
                extra_bytes: r.get(3)?,
                pending: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Blobs kept verbatim until gc looks for a cheaper method.
    pub fn pending_blobs(&self) -> Result<Vec<Digest>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT digest FROM aliases WHERE pending = 1 AND blob_frame IS NOT NULL ORDER BY digest",
        )?;
        let rows = stmt.query_map([], |r| digest_from_sql(r.get(0)?))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records what a conversion of a pending blob wrote, in one
    /// transaction: its packs, frames and chunks, and the alias with its
    /// new blob frame (its old extra chunks are no longer named by it).
    pub fn commit_blob_conversion(
        &mut self,
        packs: &[NewPack],
        layer: &Digest,
        alias: &NewAlias,
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let layer_id =
            layer_id(&tx, layer)?.ok_or_else(|| Error::not_found(format!("layer {layer}")))?;
        // Removed while it was converted (the conversion runs beside puts
        // and rm): nothing to record.
        let still_there: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM aliases WHERE digest = ?1)",
            [alias.digest.to_string()],
            |r| r.get(0),
        )?;
        if !still_there {
            return Err(Error::not_found(format!("blob {}", alias.digest)));
        }
        let frame_ids = insert_pack_chunks(&tx, packs, now())?.0;
        let blob = alias
            .blob
            .as_ref()
            .ok_or_else(|| Error::bug("conversion without a blob"))?;
        let (p, f) = blob
            .frame
            .ok_or_else(|| Error::bug("conversion without a blob frame"))?;
        let frame = frame_ids
            .get(p)
            .and_then(|ids| ids.get(f))
            .copied()
            .ok_or_else(|| Error::bug("blob frame missing from conversion"))?;
        let exact = ExactAlias {
            digest: alias.digest,
            media_type: alias.media_type.clone(),
            size: alias.size,
            frame,
            method: blob.method.clone(),
            extra_bytes: blob.extra_bytes,
            extra_chunks: blob.extra_chunks.clone(),
            pending: false,
        };
        insert_exact_alias(&tx, layer_id, &exact)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks a pending blob as settled (no cheaper method was found).
    pub fn settle_blob(&self, digest: &Digest) -> Result<()> {
        self.conn.execute(
            "UPDATE aliases SET pending = 0 WHERE digest = ?1",
            [digest.to_string()],
        )?;
        Ok(())
    }

    /// Every alias that can be rebuilt exactly, by digest.
    pub fn exact_aliases(&self) -> Result<Vec<Digest>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT digest FROM aliases WHERE blob_frame IS NOT NULL ORDER BY digest",
        )?;
        let rows = stmt.query_map([], |r| digest_from_sql(r.get(0)?))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Layers with their stored share, oldest first: all of them, or only
    /// the one with DiffID `only`.
    pub fn list_layers(&self, only: Option<&Digest>) -> Result<Vec<LayerListing>> {
        let sql = format!(
            "SELECT {},
               f.total_len + COALESCE((
                 SELECT SUM(CAST(cf.stored_len AS REAL) * c.len / cf.raw_len
                            / (SELECT COUNT(*) FROM layer_chunks x WHERE x.chunk = c.id))
                 FROM layer_chunks lc JOIN chunks c ON c.id = lc.chunk
                      JOIN frames cf ON cf.id = c.frame
                 WHERE lc.layer = l.id), 0)
             {} WHERE ?1 IS NULL OR l.digest = ?1
             ORDER BY l.created, l.id",
            Self::LAYER_SELECT,
            Self::LAYER_FROM
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([only.map(|d| d.to_string())], |r| {
            Ok((Self::layer_from_row(r)?, r.get::<_, f64>(10)?))
        })?;
        let mut alias_stmt = self
            .conn
            .prepare_cached("SELECT digest FROM aliases WHERE layer = ?1 ORDER BY digest")?;
        let mut out = Vec::new();
        for row in rows {
            let (row, stored_share) = row?;
            let aliases = alias_stmt
                .query_map([row.id], |r| digest_from_sql(r.get(0)?))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.push(LayerListing {
                row,
                stored_share,
                aliases,
            });
        }
        Ok(out)
    }

    /// Records a put in one transaction: packs, frames, chunks, the layer
    /// (pinned) and its alias. Returns whether the layer is new and how many
    /// chunks the index did not have before. A layer that already exists is
    /// pinned again; `recipe_frame` may then be None.
    pub fn commit_put(&mut self, packs: &[NewPack], layer: &NewLayer) -> Result<PutCommit> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (commit, _) = commit_put_in(&tx, packs, layer, true)?;
        tx.commit()?;
        Ok(commit)
    }

    /// Unpins layers, all in one transaction. A layer no image uses is
    /// forgotten with its aliases (its chunks stay until gc); one that
    /// images use stays for them. If any digest names no layer, nothing
    /// changes and that digest is returned.
    pub fn remove_layers(&mut self, digests: &[Digest]) -> Result<Option<Digest>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for digest in digests {
            let id: Option<i64> = layer_id(&tx, digest)?;
            let Some(id) = id else {
                return Ok(Some(*digest));
            };
            let in_image: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM manifest_layers WHERE layer = ?1)
                     OR EXISTS(SELECT 1 FROM registry_blobs WHERE layer = ?1)",
                [id],
                |r| r.get(0),
            )?;
            if in_image {
                // Images (or registry blobs) still use it: it only stops being a root of its own.
                tx.execute("UPDATE layers SET pinned = 0 WHERE id = ?1", [id])?;
                continue;
            }
            tx.execute(
                "DELETE FROM blob_chunks WHERE alias IN (SELECT digest FROM aliases WHERE layer = ?1)",
                [id],
            )?;
            tx.execute("DELETE FROM aliases WHERE layer = ?1", [id])?;
            tx.execute("DELETE FROM layer_chunks WHERE layer = ?1", [id])?;
            tx.execute("DELETE FROM layers WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(None)
    }
}

/// [`Index::commit_put`] inside a caller's transaction, pinning the layer
/// or not; also returns the layer's row id.
pub(super) fn commit_put_in(
    tx: &rusqlite::Transaction<'_>,
    packs: &[NewPack],
    layer: &NewLayer,
    pin: bool,
) -> Result<(PutCommit, i64)> {
    // Another writer committed the same layer, with every chunk, while
    // this put was writing: its packs are pure duplicates. Record only
    // the pin (and alias); the caller deletes the packs.
    let duplicate = !packs.is_empty()
        && layer_id(tx, &layer.digest)?.is_some()
        && all_chunks_stored(tx, packs)?
        && match &layer.alias {
            Some(NewAlias {
                blob: Some(NewBlob { frame: Some(_), .. }),
                digest,
                ..
            }) => alias_is_exact(tx, digest)?,
            _ => true,
        };
    let inserted = insert_put(tx, if duplicate { &[] } else { packs }, layer, pin)?;
    let id = layer_id(tx, &layer.digest)?
        .ok_or_else(|| Error::bug("layer row missing right after its insert"))?;
    Ok((
        PutCommit {
            new_layer: inserted.new_layer,
            new_chunks: inserted.new_chunks,
            packs_dropped: duplicate,
        },
        id,
    ))
}

/// The row id of layer `digest`, if stored.
pub(super) fn layer_id(conn: &rusqlite::Connection, digest: &Digest) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT id FROM layers WHERE digest = ?1",
            [digest.to_string()],
            |r| r.get(0),
        )
        .optional()?)
}

/// What [`Index::commit_put`] recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutCommit {
    /// The layer was not stored before.
    pub new_layer: bool,
    /// Chunks the index did not have.
    pub new_chunks: u64,
    /// The put's packs duplicated what another writer had just committed
    /// and were not recorded: the caller must delete them.
    pub packs_dropped: bool,
}

/// A compressed blob recorded with the blob frame that rebuilds it.
#[derive(Clone, Debug)]
pub struct ExactAlias {
    /// sha256 of the blob.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// The blob frame's row id.
    pub frame: i64,
    /// Method name.
    pub method: String,
    /// Extra bytes kept.
    pub extra_bytes: u64,
    /// Distinct chunks of the extra data.
    pub extra_chunks: Vec<ChunkId>,
    /// Kept verbatim until gc looks for a cheaper method.
    pub pending: bool,
}

/// Records `alias` for layer row `layer_id` (replacing what it had) and
/// names its extra chunks in `blob_chunks`; each must have a row.
pub(super) fn insert_exact_alias(
    tx: &rusqlite::Connection,
    layer_id: i64,
    alias: &ExactAlias,
) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO aliases(digest, layer, media_type, size, blob_frame, method, extra_bytes, pending)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            alias.digest.to_string(),
            layer_id,
            alias.media_type,
            alias.size,
            alias.frame,
            alias.method,
            alias.extra_bytes,
            alias.pending
        ],
    )?;
    let digest = alias.digest.to_string();
    tx.execute("DELETE FROM blob_chunks WHERE alias = ?1", [&digest])?;
    let mut link =
        tx.prepare_cached("INSERT OR IGNORE INTO blob_chunks(alias, hash) VALUES (?1, ?2)")?;
    for chunk in &alias.extra_chunks {
        link.execute(params![digest, &chunk.0[..]])?;
        if !chunk_exists(tx, chunk)? {
            return Err(Error::corrupt(format!(
                "chunk {chunk} of blob {} is not in the index",
                alias.digest
            )));
        }
    }
    Ok(())
}

fn chunk_exists(conn: &rusqlite::Connection, id: &ChunkId) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM chunks WHERE hash = ?1)")?
        .query_row([&id.0[..]], |r| r.get(0))?)
}

/// Whether blob `digest` is recorded with a blob frame.
fn alias_is_exact(conn: &rusqlite::Connection, digest: &Digest) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT blob_frame IS NOT NULL FROM aliases WHERE digest = ?1")?
        .query_row([digest.to_string()], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

/// Every chunk the frames of `packs` hold already has a row.
fn all_chunks_stored(conn: &rusqlite::Connection, packs: &[NewPack]) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT EXISTS(SELECT 1 FROM chunks WHERE hash = ?1)")?;
    for pack in packs {
        for frame in &pack.frames {
            for (id, _, _) in &frame.chunks {
                if !stmt.query_row([&id.0[..]], |r| r.get::<_, bool>(0))? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

/// What [`insert_put`] added.
pub(super) struct Inserted {
    /// The layer was not stored before.
    pub new_layer: bool,
    /// Chunk rows added (chunks another writer stored meanwhile, or that
    /// were already there, are not counted).
    pub new_chunks: u64,
}

/// Inserts the row of a new pack and of its frames (not their chunks),
/// and clears the writer's intent for it: the pack is the index's now.
/// Returns the frames' row ids, in order.
pub(super) fn insert_pack(
    tx: &rusqlite::Connection,
    pack: &NewPack,
    created: i64,
) -> Result<Vec<i64>> {
    tx.prepare_cached("INSERT INTO packs(name, size, created) VALUES (?1, ?2, ?3)")?
        .execute(params![pack.name, pack.size, created])?;
    let pack_id = tx.last_insert_rowid();
    tx.prepare_cached("DELETE FROM pack_intents WHERE name = ?1")?
        .execute([&pack.name])?;
    let mut insert_frame = tx.prepare_cached(
        "INSERT INTO frames(pack, offset, total_len, raw_len, stored_len, kind)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut ids = Vec::with_capacity(pack.frames.len());
    for frame in &pack.frames {
        insert_frame.execute(params![
            pack_id,
            frame.offset,
            frame.total_len,
            frame.raw_len,
            frame.stored_len,
            frame.kind
        ])?;
        ids.push(tx.last_insert_rowid());
    }
    Ok(ids)
}

/// Inserts packs, their frames and their chunks (`INSERT OR IGNORE`: a
/// chunk another writer stored meanwhile keeps its row). Returns each
/// pack's frame row ids and the number of chunk rows added.
fn insert_pack_chunks(
    tx: &rusqlite::Connection,
    packs: &[NewPack],
    created: i64,
) -> Result<(Vec<Vec<i64>>, u64)> {
    let mut new_chunks = 0u64;
    let mut frame_ids: Vec<Vec<i64>> = Vec::with_capacity(packs.len());
    let mut insert_chunk = tx.prepare_cached(
        "INSERT OR IGNORE INTO chunks(hash, frame, offset, len) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for pack in packs {
        let ids = insert_pack(tx, pack, created)?;
        for (frame, frame_id) in pack.frames.iter().zip(&ids) {
            for (id, offset, len) in &frame.chunks {
                new_chunks +=
                    insert_chunk.execute(params![&id.0[..], frame_id, offset, len])? as u64;
            }
        }
        frame_ids.push(ids);
    }
    Ok((frame_ids, new_chunks))
}

/// Inserts one put's packs, frames, chunks, layer and alias inside `tx`.
/// `pin` marks the layer as put directly (a root for gc).
pub(super) fn insert_put(
    tx: &rusqlite::Transaction<'_>,
    packs: &[NewPack],
    layer: &NewLayer,
    pin: bool,
) -> Result<Inserted> {
    let created = now();
    let (frame_ids, new_chunks) = insert_pack_chunks(tx, packs, created)?;
    let existing: Option<i64> = tx
        .query_row(
            "SELECT id FROM layers WHERE digest = ?1",
            [layer.digest.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    let (layer_id, added) = match (existing, layer.recipe_frame) {
        (Some(id), _) => {
            if pin {
                tx.execute("UPDATE layers SET pinned = 1 WHERE id = ?1", [id])?;
            }
            // A chunk repair forgot and this put stored anew has a new row:
            // link it, or gc would collect it as unused.
            if new_chunks > 0 {
                let mut link = tx.prepare_cached(
                    "INSERT OR IGNORE INTO layer_chunks(layer, chunk)
                     SELECT ?1, id FROM chunks WHERE hash = ?2",
                )?;
                for chunk in &layer.distinct_chunks {
                    link.execute(params![id, &chunk.0[..]])?;
                }
            }
            (id, false)
        }
        (None, None) => {
            return Err(Error::not_found(format!(
                "layer {} (it was removed while being put again; put it once more)",
                layer.digest
            )));
        }
        (None, Some((p, f))) => {
            let recipe_frame = frame_ids
                .get(p)
                .and_then(|frames| frames.get(f))
                .copied()
                .ok_or_else(|| Error::bug("recipe frame missing from put"))?;
            tx.execute(
                "INSERT INTO layers(digest, size, recipe_frame, chunk_count, pinned, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    layer.digest.to_string(),
                    layer.size,
                    recipe_frame,
                    layer.chunk_count,
                    pin,
                    created
                ],
            )?;
            let id = tx.last_insert_rowid();
            let mut link = tx.prepare_cached(
                "INSERT OR IGNORE INTO layer_chunks(layer, chunk)
                 SELECT ?1, id FROM chunks WHERE hash = ?2",
            )?;
            for chunk in &layer.distinct_chunks {
                if link.execute(params![id, &chunk.0[..]])? != 1 {
                    return Err(Error::corrupt(format!(
                        "chunk {chunk} of new layer {} vanished before commit",
                        layer.digest
                    )));
                }
            }
            (id, true)
        }
    };
    if let Some(alias) = &layer.alias {
        // A blob frame among this put's packs; without packs (a duplicate
        // put) the alias already has one and keeps it.
        let blob = alias.blob.as_ref().and_then(|b| {
            let (p, f) = b.frame?;
            frame_ids
                .get(p)
                .and_then(|ids| ids.get(f))
                .map(|id| (b, *id))
        });
        match blob {
            Some((blob, frame_id)) => {
                let exact = ExactAlias {
                    digest: alias.digest,
                    media_type: alias.media_type.clone(),
                    size: alias.size,
                    frame: frame_id,
                    method: blob.method.clone(),
                    extra_bytes: blob.extra_bytes,
                    extra_chunks: blob.extra_chunks.clone(),
                    pending: blob.pending,
                };
                insert_exact_alias(tx, layer_id, &exact)?;
            }
            None => {
                // Never downgrade an exact alias to a tar-only one.
                tx.execute(
                    "INSERT INTO aliases(digest, layer, media_type, size) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(digest) DO UPDATE SET layer = excluded.layer",
                    params![
                        alias.digest.to_string(),
                        layer_id,
                        alias.media_type,
                        alias.size
                    ],
                )?;
            }
        }
    }
    Ok(Inserted {
        new_layer: added,
        new_chunks,
    })
}
