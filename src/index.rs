//! The SQLite index: every SQL statement of layerstore lives here.
//!
//! Tables: `meta` (format version, chunker and compression settings),
//! `packs`, `frames` (where each frame sits in which pack), `chunks`
//! (BLAKE3 id -> frame and offset), `layers` (DiffID -> size, recipe frame,
//! pin), `layer_chunks` (which chunks each layer uses, for gc and sharing
//! figures) and `aliases` (compressed blob digest -> layer). The database
//! runs in WAL mode with `synchronous=FULL`: a put is durable once its
//! transaction commits, and pack data is always fsynced before that.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::digest::{ChunkId, Digest};
use crate::error::{Error, Result};

/// Index schema version written by this build.
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE packs(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE frames(
    id INTEGER PRIMARY KEY,
    pack INTEGER NOT NULL REFERENCES packs(id),
    offset INTEGER NOT NULL,
    total_len INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    kind INTEGER NOT NULL
);
CREATE INDEX frames_by_pack ON frames(pack);
CREATE TABLE chunks(
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    frame INTEGER NOT NULL REFERENCES frames(id),
    offset INTEGER NOT NULL,
    len INTEGER NOT NULL
);
CREATE INDEX chunks_by_frame ON chunks(frame);
CREATE TABLE layers(
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    recipe_frame INTEGER NOT NULL REFERENCES frames(id),
    chunk_count INTEGER NOT NULL,
    pinned INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE layer_chunks(
    layer INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    PRIMARY KEY(layer, chunk)
) WITHOUT ROWID;
CREATE INDEX layer_chunks_by_chunk ON layer_chunks(chunk);
CREATE TABLE aliases(
    digest TEXT PRIMARY KEY,
    layer INTEGER NOT NULL REFERENCES layers(id),
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL
);
";

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
    /// Compressed blob digest, media type and size, if the input was compressed.
    pub alias: Option<(Digest, String, u64)>,
}

/// Counts for `stat`.
#[derive(Clone, Debug, Default)]
pub struct IndexStats {
    /// Layers.
    pub layers: u64,
    /// Sum of layer sizes.
    pub logical_bytes: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Sum of distinct chunk lengths.
    pub unique_chunk_bytes: u64,
    /// Packs.
    pub packs: u64,
    /// Sum of pack sizes as recorded.
    pub pack_bytes: u64,
    /// Compressed-blob aliases.
    pub aliases: u64,
}

/// An open index connection.
pub struct Index {
    conn: Connection,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn digest_from_sql(text: String) -> rusqlite::Result<Digest> {
    Digest::parse(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Index {
    /// Opens (creating if needed) the index at `path`, creating the schema
    /// with `initial_meta` on a new database, and refusing unknown versions.
    pub fn open(path: &Path, initial_meta: &[(&str, String)]) -> Result<Index> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(600))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        let mut index = Index { conn };
        index.init_or_check(path, initial_meta)?;
        Ok(index)
    }

    fn init_or_check(&mut self, path: &Path, initial_meta: &[(&str, String)]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let has_tables: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table')",
            [],
            |r| r.get(0),
        )?;
        match (version, has_tables) {
            (0, false) => {
                tx.execute_batch(SCHEMA)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                for (key, value) in initial_meta {
                    tx.execute(
                        "INSERT INTO meta(key, value) VALUES (?1, ?2)",
                        params![key, value],
                    )?;
                }
                tx.execute(
                    "INSERT INTO meta(key, value) VALUES ('created', ?1)",
                    params![now().to_string()],
                )?;
                tx.commit()?;
                Ok(())
            }
            (SCHEMA_VERSION, true) => {
                tx.commit()?;
                Ok(())
            }
            (found, _) => Err(Error::UnsupportedFormat {
                path: path.parent().unwrap_or(path).to_path_buf(),
                found: if found == 0 {
                    "unknown (database has tables but no layerstore version)".into()
                } else {
                    found.to_string()
                },
                supported: SCHEMA_VERSION,
            }),
        }
    }

    /// A `meta` value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

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
                    frame: FrameLocation {
                        frame_id: r.get(0)?,
                        pack: r.get(1)?,
                        offset: r.get(2)?,
                        total_len: r.get(3)?,
                    },
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
            recipe: FrameLocation {
                frame_id: r.get(6)?,
                pack: r.get(7)?,
                offset: r.get(8)?,
                total_len: r.get(9)?,
            },
        })
    }

    /// A layer by DiffID.
    pub fn layer(&self, digest: &Digest) -> Result<Option<LayerRow>> {
        let sql = format!(
            "SELECT {} {} WHERE l.digest = ?1",
            Self::LAYER_SELECT,
            Self::LAYER_FROM
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        Ok(stmt
            .query_row([digest.to_string()], Self::layer_from_row)
            .optional()?)
    }

    /// A layer by the digest of a compressed blob recorded as its alias.
    pub fn layer_by_alias(&self, digest: &Digest) -> Result<Option<LayerRow>> {
        let sql = format!(
            "SELECT {} {} JOIN aliases a ON a.layer = l.id WHERE a.digest = ?1",
            Self::LAYER_SELECT,
            Self::LAYER_FROM
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        Ok(stmt
            .query_row([digest.to_string()], Self::layer_from_row)
            .optional()?)
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
    /// (pinned) and its alias. Returns true if the layer is new. A layer
    /// that already exists is pinned again; `recipe_frame` may then be None.
    pub fn commit_put(&mut self, packs: &[NewPack], layer: &NewLayer) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let created = now();
        let mut frame_ids: Vec<Vec<i64>> = Vec::with_capacity(packs.len());
        {
            let mut insert_pack =
                tx.prepare_cached("INSERT INTO packs(name, size, created) VALUES (?1, ?2, ?3)")?;
            let mut insert_frame = tx.prepare_cached(
                "INSERT INTO frames(pack, offset, total_len, raw_len, stored_len, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut insert_chunk = tx.prepare_cached(
                "INSERT OR IGNORE INTO chunks(hash, frame, offset, len) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for pack in packs {
                insert_pack.execute(params![pack.name, pack.size, created])?;
                let pack_id = tx.last_insert_rowid();
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
                    let frame_id = tx.last_insert_rowid();
                    ids.push(frame_id);
                    for (id, offset, len) in &frame.chunks {
                        insert_chunk.execute(params![&id.0[..], frame_id, offset, len])?;
                    }
                }
                frame_ids.push(ids);
            }
        }
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM layers WHERE digest = ?1",
                [layer.digest.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let (layer_id, added) = match (existing, layer.recipe_frame) {
            (Some(id), _) => {
                tx.execute("UPDATE layers SET pinned = 1 WHERE id = ?1", [id])?;
                (id, false)
            }
            (None, None) => {
                return Err(Error::NotFound {
                    what: format!(
                        "layer {} (it was removed while being put again; put it once more)",
                        layer.digest
                    ),
                });
            }
            (None, Some((p, f))) => {
                let recipe_frame = frame_ids
                    .get(p)
                    .and_then(|frames| frames.get(f))
                    .copied()
                    .ok_or_else(|| Error::Corrupt("recipe frame missing from put".into()))?;
                tx.execute(
                    "INSERT INTO layers(digest, size, recipe_frame, chunk_count, pinned, created)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5)",
                    params![
                        layer.digest.to_string(),
                        layer.size,
                        recipe_frame,
                        layer.chunk_count,
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
                        return Err(Error::Corrupt(format!(
                            "chunk {chunk} of new layer {} vanished before commit",
                            layer.digest
                        )));
                    }
                }
                (id, true)
            }
        };
        if let Some((digest, media_type, size)) = &layer.alias {
            tx.execute(
                "INSERT OR REPLACE INTO aliases(digest, layer, media_type, size) VALUES (?1, ?2, ?3, ?4)",
                params![digest.to_string(), layer_id, media_type, size],
            )?;
        }
        tx.commit()?;
        Ok(added)
    }

    /// Pins an existing layer (a repeated put). Returns false if it is gone.
    pub fn pin_layer(&mut self, digest: &Digest) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE layers SET pinned = 1 WHERE digest = ?1",
            [digest.to_string()],
        )? == 1)
    }

    /// Unpins a layer and forgets it with its aliases. Its chunks stay until
    /// gc. Returns false if no such layer.
    pub fn remove_layer(&mut self, digest: &Digest) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM layers WHERE digest = ?1",
                [digest.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Ok(false);
        };
        tx.execute("DELETE FROM aliases WHERE layer = ?1", [id])?;
        tx.execute("DELETE FROM layer_chunks WHERE layer = ?1", [id])?;
        tx.execute("DELETE FROM layers WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(true)
    }

    /// Counts for `stat`.
    pub fn stats(&self) -> Result<IndexStats> {
        Ok(self.conn.query_row(
            "SELECT
               (SELECT COUNT(*) FROM layers),
               (SELECT COALESCE(SUM(size), 0) FROM layers),
               (SELECT COUNT(*) FROM chunks),
               (SELECT COALESCE(SUM(len), 0) FROM chunks),
               (SELECT COUNT(*) FROM packs),
               (SELECT COALESCE(SUM(size), 0) FROM packs),
               (SELECT COUNT(*) FROM aliases)",
            [],
            |r| {
                Ok(IndexStats {
                    layers: r.get(0)?,
                    logical_bytes: r.get(1)?,
                    chunks: r.get(2)?,
                    unique_chunk_bytes: r.get(3)?,
                    packs: r.get(4)?,
                    pack_bytes: r.get(5)?,
                    aliases: r.get(6)?,
                })
            },
        )?)
    }
}
