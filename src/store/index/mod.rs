//! The SQLite index: every SQL statement of layerstore lives here.
//!
//! Tables: `meta` (format version, chunker and compression settings),
//! `packs`, `frames` (where each frame sits in which pack), `chunks`
//! (BLAKE3 id -> frame and offset), `layers` (DiffID -> size, recipe frame,
//! pin), `layer_chunks` (which chunks each layer uses, for gc and sharing
//! figures), `aliases` (compressed blob digest -> layer), the image tables
//! (`blobs`, `manifests`, `manifest_layers`, `index_children`, `images`)
//! and, since schema version 2, `containers` (name -> directory id and the
//! manifest it was created from; a root for gc). The database
//! runs in WAL mode with `synchronous=FULL`: a put is durable once its
//! transaction commits, and pack data is always fsynced before that.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Result};
use crate::store::digest::{ChunkId, Digest};
use crate::util::clock::now;

/// Index schema version written by this build.
pub const SCHEMA_VERSION: u32 = 2;

/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(600);

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
CREATE TABLE blobs(
    digest TEXT PRIMARY KEY,
    media_type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE manifests(
    digest TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    platform TEXT
);
CREATE TABLE manifest_layers(
    manifest TEXT NOT NULL,
    position INTEGER NOT NULL,
    layer INTEGER NOT NULL REFERENCES layers(id),
    media_type TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    PRIMARY KEY(manifest, position)
) WITHOUT ROWID;
CREATE INDEX manifest_layers_by_layer ON manifest_layers(layer);
CREATE TABLE index_children(
    parent TEXT NOT NULL,
    position INTEGER NOT NULL,
    child TEXT NOT NULL,
    PRIMARY KEY(parent, position)
) WITHOUT ROWID;
CREATE TABLE images(
    name TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    created INTEGER NOT NULL
);
";

/// Schema version 2: containers. Applied to new databases after `SCHEMA`,
/// and to version-1 databases by the migration in [`Index::open`], inside
/// the transaction that sets `user_version`.
const MIGRATE_V2: &str = "
CREATE TABLE containers(
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    manifest TEXT NOT NULL,
    created INTEGER NOT NULL,
    owners INTEGER NOT NULL,
    sharing TEXT NOT NULL
);
CREATE INDEX containers_by_manifest ON containers(manifest);
";

/// Deletes what no image name or container reaches any more: manifests, index entries,
/// verbatim blobs, and layers that are neither pinned nor in a manifest.
/// Chunks stay (gc reclaims them).
const CLEANUP_UNREFERENCED: &str = "
WITH RECURSIVE live(d) AS (
    SELECT target FROM images UNION SELECT manifest FROM containers
    UNION SELECT c.child FROM index_children c JOIN live ON c.parent = live.d)
DELETE FROM manifests WHERE digest NOT IN (SELECT d FROM live);
DELETE FROM manifest_layers WHERE manifest NOT IN (SELECT digest FROM manifests);
WITH RECURSIVE live(d) AS (
    SELECT target FROM images UNION SELECT manifest FROM containers
    UNION SELECT c.child FROM index_children c JOIN live ON c.parent = live.d)
DELETE FROM index_children WHERE parent NOT IN (SELECT d FROM live);
WITH RECURSIVE live(d) AS (
    SELECT target FROM images UNION SELECT manifest FROM containers
    UNION SELECT c.child FROM index_children c JOIN live ON c.parent = live.d)
DELETE FROM blobs WHERE digest NOT IN (SELECT d FROM live)
    AND digest NOT IN (SELECT config FROM manifests);
CREATE TEMP TABLE IF NOT EXISTS dead_layers(id INTEGER PRIMARY KEY);
DELETE FROM temp.dead_layers;
INSERT INTO temp.dead_layers SELECT id FROM layers
    WHERE pinned = 0 AND id NOT IN (SELECT layer FROM manifest_layers);
DELETE FROM aliases WHERE layer IN (SELECT id FROM temp.dead_layers);
DELETE FROM layer_chunks WHERE layer IN (SELECT id FROM temp.dead_layers);
DELETE FROM layers WHERE id IN (SELECT id FROM temp.dead_layers);
DELETE FROM temp.dead_layers;
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

/// A stored manifest.
#[derive(Clone, Debug)]
pub struct ManifestRecord {
    /// Its digest.
    pub digest: Digest,
    /// Its config blob.
    pub config: Digest,
    /// `os/arch[/variant]`, when an index named it.
    pub platform: Option<String>,
    /// Its layers, base first.
    pub layers: Vec<ManifestLayer>,
}

/// One layer of a manifest.
#[derive(Clone, Debug)]
pub struct ManifestLayer {
    /// DiffID.
    pub diff_id: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Media type as the manifest lists it.
    pub media_type: String,
    /// Blob digest as the manifest lists it.
    pub blob_digest: Digest,
    /// Blob size as the manifest lists it.
    pub blob_size: u64,
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
}

/// What gc's first phase found.
#[derive(Clone, Debug)]
pub struct GcCollect {
    /// Layers nothing kept.
    pub layers_removed: u64,
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
    /// 1 chunks, 2 recipe.
    pub kind: u8,
}

/// Everything one image import adds, committed at once.
#[derive(Default)]
pub struct NewImport<'a> {
    /// Layer puts (packs, layer).
    pub puts: Vec<(&'a [NewPack], &'a NewLayer)>,
    /// Verbatim blobs: digest, media type, bytes.
    pub blobs: Vec<(Digest, String, Vec<u8>)>,
    /// Manifests.
    pub manifests: Vec<ManifestRecord>,
    /// Index digest -> entries imported, in order.
    pub index_children: Vec<(Digest, Vec<Digest>)>,
    /// Image names -> target digest.
    pub names: Vec<(String, Digest)>,
}

/// A container row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRow {
    /// Its name (unique).
    pub name: String,
    /// Directory id under `STORE/containers/` (unique).
    pub id: String,
    /// The image name it was created from, as given then.
    pub image: String,
    /// The manifest it was created from (kept alive while it exists).
    pub manifest: Digest,
    /// Unix seconds.
    pub created: i64,
    /// Ownership (uid/gid) from the layers was applied to its files.
    pub owners: bool,
    /// How its files share storage with the image: `reflink` or `copy`.
    pub sharing: String,
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
    /// Compressed-blob aliases.
    pub aliases: u64,
    /// Image names.
    pub images: u64,
}

/// An open index connection.
pub struct Index {
    conn: Connection,
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
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Switching a new database to WAL needs an exclusive lock that
        // SQLite does not wait for with the busy handler, so processes
        // opening a fresh store at the same moment retry here.
        let started = Instant::now();
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other?,
            }
        }
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
                tx.execute_batch(MIGRATE_V2)?;
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
            (1, true) => {
                // Version 1 had no containers: add the table, in the same
                // transaction that records the new version.
                tx.execute_batch(MIGRATE_V2)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
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
        let (_, added) = insert_put(&tx, packs, layer, true)?;
        tx.commit()?;
        Ok(added)
    }

    /// Unpins a layer. A layer no image uses is forgotten with its aliases
    /// (its chunks stay until gc); one that images use stays for them.
    /// Returns false if no such layer.
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
        let in_image: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM manifest_layers WHERE layer = ?1)",
            [id],
            |r| r.get(0),
        )?;
        if in_image {
            // Images still use it: it only stops being a root of its own.
            tx.execute("UPDATE layers SET pinned = 0 WHERE id = ?1", [id])?;
            tx.commit()?;
            return Ok(true);
        }
        tx.execute("DELETE FROM aliases WHERE layer = ?1", [id])?;
        tx.execute("DELETE FROM layer_chunks WHERE layer = ?1", [id])?;
        tx.execute("DELETE FROM layers WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(true)
    }

    /// The digest an image name points at (a manifest or an index).
    pub fn image_target(&self, name: &str) -> Result<Option<Digest>> {
        let target: Option<String> = self
            .conn
            .query_row("SELECT target FROM images WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        target.map(|t| Ok(digest_from_sql(t)?)).transpose()
    }

    /// All image names with their targets and creation times, by name.
    pub fn images(&self) -> Result<Vec<(String, Digest, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, target, created FROM images ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, digest_from_sql(r.get(1)?)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A verbatim blob (manifest, index or config): media type and bytes.
    pub fn blob(&self, digest: &Digest) -> Result<Option<(String, Vec<u8>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT media_type, data FROM blobs WHERE digest = ?1",
                [digest.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// A manifest's config digest, platform and layers, if it is one.
    pub fn manifest(&self, digest: &Digest) -> Result<Option<ManifestRecord>> {
        let head: Option<(String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT config, platform FROM manifests WHERE digest = ?1",
                [digest.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((config, platform)) = head else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT l.digest, l.size, m.media_type, m.blob_digest, m.blob_size
             FROM manifest_layers m JOIN layers l ON l.id = m.layer
             WHERE m.manifest = ?1 ORDER BY m.position",
        )?;
        let layers = stmt
            .query_map([digest.to_string()], |r| {
                Ok(ManifestLayer {
                    diff_id: digest_from_sql(r.get(0)?)?,
                    size: r.get(1)?,
                    media_type: r.get(2)?,
                    blob_digest: digest_from_sql(r.get(3)?)?,
                    blob_size: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(ManifestRecord {
            digest: *digest,
            config: digest_from_sql(config)?,
            platform,
            layers,
        }))
    }

    /// The entries an index lists that were imported, in order.
    pub fn index_children(&self, digest: &Digest) -> Result<Vec<Digest>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT child FROM index_children WHERE parent = ?1 ORDER BY position",
        )?;
        let rows = stmt.query_map([digest.to_string()], |r| digest_from_sql(r.get(0)?))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Points `dst` at what `src` points at. False if `src` does not exist.
    pub fn tag_image(&mut self, src: &str, dst: &str) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "INSERT OR REPLACE INTO images(name, target, created)
             SELECT ?2, target, ?3 FROM images WHERE name = ?1",
            params![src, dst, now()],
        )?;
        tx.execute_batch(CLEANUP_UNREFERENCED)?;
        tx.commit()?;
        Ok(changed == 1)
    }

    /// Removes an image name and whatever only it kept. False if no such name.
    pub fn remove_image(&mut self, name: &str) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed = tx.execute("DELETE FROM images WHERE name = ?1", [name])?;
        tx.execute_batch(CLEANUP_UNREFERENCED)?;
        tx.commit()?;
        Ok(removed == 1)
    }

    /// Commits a whole image import in one transaction: the layers' puts,
    /// the verbatim blobs, manifests, index entries and names.
    pub fn commit_import(&mut self, import: &NewImport<'_>) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (packs, layer) in &import.puts {
            insert_put(&tx, packs, layer, false)?;
        }
        for (digest, media_type, data) in &import.blobs {
            tx.execute(
                "INSERT OR IGNORE INTO blobs(digest, media_type, data) VALUES (?1, ?2, ?3)",
                params![digest.to_string(), media_type, data],
            )?;
        }
        for m in &import.manifests {
            tx.execute(
                "INSERT OR REPLACE INTO manifests(digest, config, platform) VALUES (?1, ?2, ?3)",
                params![m.digest.to_string(), m.config.to_string(), m.platform],
            )?;
            tx.execute(
                "DELETE FROM manifest_layers WHERE manifest = ?1",
                [m.digest.to_string()],
            )?;
            for (position, l) in m.layers.iter().enumerate() {
                let inserted = tx.execute(
                    "INSERT INTO manifest_layers(manifest, position, layer, media_type, blob_digest, blob_size)
                     SELECT ?1, ?2, id, ?3, ?4, ?5 FROM layers WHERE digest = ?6",
                    params![
                        m.digest.to_string(),
                        position as i64,
                        l.media_type,
                        l.blob_digest.to_string(),
                        l.blob_size,
                        l.diff_id.to_string()
                    ],
                )?;
                if inserted != 1 {
                    return Err(Error::not_found(format!(
                        "layer {} of manifest {} (it was removed during the import; import again)",
                        l.diff_id, m.digest
                    )));
                }
            }
        }
        for (parent, children) in &import.index_children {
            tx.execute(
                "DELETE FROM index_children WHERE parent = ?1",
                [parent.to_string()],
            )?;
            for (position, child) in children.iter().enumerate() {
                tx.execute(
                    "INSERT INTO index_children(parent, position, child) VALUES (?1, ?2, ?3)",
                    params![parent.to_string(), position as i64, child.to_string()],
                )?;
            }
        }
        let created = now();
        for (name, target) in &import.names {
            tx.execute(
                "INSERT OR REPLACE INTO images(name, target, created) VALUES (?1, ?2, ?3)",
                params![name, target.to_string(), created],
            )?;
        }
        tx.execute_batch(CLEANUP_UNREFERENCED)?;
        tx.commit()?;
        Ok(())
    }

    /// gc, first phase, in one transaction: forgets layers nothing keeps,
    /// chunks no layer uses and frames nothing points to, then measures
    /// each pack's live bytes. With `dry_run` the transaction is rolled back.
    pub fn gc_collect(&mut self, dry_run: bool) -> Result<GcCollect> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let layers_before: u64 = tx.query_row("SELECT COUNT(*) FROM layers", [], |r| r.get(0))?;
        tx.execute_batch(CLEANUP_UNREFERENCED)?;
        let layers_after: u64 = tx.query_row("SELECT COUNT(*) FROM layers", [], |r| r.get(0))?;
        let (chunks_removed, chunk_bytes_removed): (u64, u64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(len), 0) FROM chunks
             WHERE id NOT IN (SELECT chunk FROM layer_chunks)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.execute(
            "DELETE FROM chunks WHERE id NOT IN (SELECT chunk FROM layer_chunks)",
            [],
        )?;
        tx.execute(
            "DELETE FROM frames WHERE (kind = 1 AND id NOT IN (SELECT frame FROM chunks))
                OR (kind = 2 AND id NOT IN (SELECT recipe_frame FROM layers))",
            [],
        )?;
        let packs = {
            let mut stmt = tx.prepare(
                "SELECT p.id, p.name, p.size, COALESCE((
                    SELECT SUM(CASE WHEN f.kind = 2 THEN f.total_len
                        ELSE f.total_len * (SELECT COALESCE(SUM(c.len), 0) FROM chunks c WHERE c.frame = f.id)
                             / MAX(f.raw_len, 1) END)
                    FROM frames f WHERE f.pack = p.id), 0)
                 FROM packs p ORDER BY p.id",
            )?;
            stmt.query_map([], |r| {
                Ok(PackUsage {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    size: r.get(2)?,
                    live_bytes: r.get(3)?,
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
                location: FrameLocation {
                    frame_id: r.get(0)?,
                    pack: r.get(1)?,
                    offset: r.get(2)?,
                    total_len: r.get(3)?,
                },
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
        if let Some(pack) = new_pack {
            tx.execute(
                "INSERT INTO packs(name, size, created) VALUES (?1, ?2, ?3)",
                params![pack.name, pack.size, now()],
            )?;
            let pack_id = tx.last_insert_rowid();
            for (frame, old_id) in pack.frames.iter().zip(moved) {
                tx.execute(
                    "INSERT INTO frames(pack, offset, total_len, raw_len, stored_len, kind)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        pack_id,
                        frame.offset,
                        frame.total_len,
                        frame.raw_len,
                        frame.stored_len,
                        frame.kind
                    ],
                )?;
                let frame_id = tx.last_insert_rowid();
                if frame.kind == 2 {
                    tx.execute(
                        "UPDATE layers SET recipe_frame = ?1 WHERE recipe_frame = ?2",
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
                  + (SELECT COUNT(*) FROM layers l JOIN frames f ON f.id = l.recipe_frame WHERE f.pack = ?1)",
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
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM layers WHERE digest = ?1",
                [digest.to_string()],
                |r| r.get(0),
            )
            .optional()?;
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

    /// Records a container. Fails if the name or id is taken, or if its
    /// manifest is no longer stored (an image removal and gc raced the
    /// checkout): from this commit on the manifest is a gc root.
    pub fn insert_container(&mut self, row: &ContainerRow) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM containers WHERE name = ?1 OR id = ?2)",
            params![row.name, row.id],
            |r| r.get(0),
        )?;
        if taken {
            return Err(Error::invalid(
                format!("container {:?}", row.name),
                "a container of that name already exists",
            ));
        }
        let inserted = tx.execute(
            "INSERT INTO containers(name, id, image, manifest, created, owners, sharing)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE EXISTS(SELECT 1 FROM manifests WHERE digest = ?4)",
            params![
                row.name,
                row.id,
                row.image,
                row.manifest.to_string(),
                row.created,
                row.owners,
                row.sharing
            ],
        )?;
        if inserted != 1 {
            return Err(Error::not_found(format!(
                "manifest {} of image {:?} (it was removed while the container was created)",
                row.manifest, row.image
            )));
        }
        tx.commit()?;
        Ok(())
    }

    fn container_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRow> {
        Ok(ContainerRow {
            name: r.get(0)?,
            id: r.get(1)?,
            image: r.get(2)?,
            manifest: digest_from_sql(r.get(3)?)?,
            created: r.get(4)?,
            owners: r.get(5)?,
            sharing: r.get(6)?,
        })
    }

    /// All containers, oldest first.
    pub fn containers(&self) -> Result<Vec<ContainerRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, id, image, manifest, created, owners, sharing
             FROM containers ORDER BY created, name",
        )?;
        let rows = stmt.query_map([], Self::container_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A container by name.
    pub fn container(&self, name: &str) -> Result<Option<ContainerRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, id, image, manifest, created, owners, sharing
                 FROM containers WHERE name = ?1",
                [name],
                Self::container_from_row,
            )
            .optional()?)
    }

    /// Forgets a container; what only it kept alive goes with it (layers
    /// that no image and no other container use). False if no such name.
    pub fn remove_container(&mut self, name: &str) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed = tx.execute("DELETE FROM containers WHERE name = ?1", [name])?;
        tx.execute_batch(CLEANUP_UNREFERENCED)?;
        tx.commit()?;
        Ok(removed == 1)
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
               (SELECT COUNT(*) FROM aliases),
               (SELECT COUNT(*) FROM images)",
            [],
            |r| {
                Ok(IndexStats {
                    layers: r.get(0)?,
                    logical_bytes: r.get(1)?,
                    chunks: r.get(2)?,
                    unique_chunk_bytes: r.get(3)?,
                    packs: r.get(4)?,
                    aliases: r.get(5)?,
                    images: r.get(6)?,
                })
            },
        )?)
    }
}

/// Inserts one put's packs, frames, chunks, layer and alias inside `tx`.
/// `pin` marks the layer as put directly (a root for gc). Returns the
/// layer's row id and whether it is new.
pub(crate) fn insert_put(
    tx: &rusqlite::Transaction<'_>,
    packs: &[NewPack],
    layer: &NewLayer,
    pin: bool,
) -> Result<(i64, bool)> {
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
            if pin {
                tx.execute("UPDATE layers SET pinned = 1 WHERE id = ?1", [id])?;
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
                .ok_or_else(|| Error::corrupt("recipe frame missing from put"))?;
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
    if let Some((digest, media_type, size)) = &layer.alias {
        tx.execute(
            "INSERT OR REPLACE INTO aliases(digest, layer, media_type, size) VALUES (?1, ?2, ?3, ?4)",
            params![digest.to_string(), layer_id, media_type, size],
        )?;
    }
    Ok((layer_id, added))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// A database exactly as version 1 wrote it.
    fn v1_database(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('format_version', '1')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO images(name, target, created) VALUES ('old:1', ?1, 0)",
            [Digest::of(b"m").to_string()],
        )
        .unwrap();
    }

    #[test]
    fn version_1_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        v1_database(&path);
        let index = Index::open(&path, &[]).unwrap();
        let version: u32 = index
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert!(tables(&index.conn).contains(&"containers".to_string()));
        // Data kept, and the new table works.
        assert_eq!(index.images().unwrap().len(), 1);
        assert!(index.containers().unwrap().is_empty());
        drop(index);
        // Opening again is a no-op.
        let index = Index::open(&path, &[]).unwrap();
        assert_eq!(index.meta("format_version").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn new_and_migrated_schemas_are_identical() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        v1_database(&old);
        drop(Index::open(&old, &[]).unwrap());
        let new = dir.path().join("new.db");
        drop(Index::open(&new, &[]).unwrap());
        let schema = |p: &Path| -> Vec<String> {
            let conn = Connection::open(p).unwrap();
            let mut stmt = conn
                .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(schema(&old), schema(&new));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        v1_database(&path);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Index::open(&path, &[])
            .err()
            .expect("version 99 must be refused");
        assert!(
            matches!(err, Error::UnsupportedFormat { ref found, .. } if found == "99"),
            "{err}"
        );
    }

    #[test]
    fn containers_keep_their_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::open(&dir.path().join("index.db"), &[]).unwrap();
        let manifest = Digest::of(b"manifest");
        let row = ContainerRow {
            name: "c".into(),
            id: "0123".into(),
            image: "img".into(),
            manifest,
            created: 1,
            owners: false,
            sharing: "copy".into(),
        };
        // No such manifest: refused.
        assert!(index.insert_container(&row).unwrap_err().is_not_found());
        index
            .conn
            .execute(
                "INSERT INTO manifests(digest, config, platform) VALUES (?1, ?2, NULL)",
                [manifest.to_string(), Digest::of(b"config").to_string()],
            )
            .unwrap();
        index.insert_container(&row).unwrap();
        assert!(index.insert_container(&row).is_err(), "duplicate name");
        // Cleanup keeps the manifest while the container exists.
        index.conn.execute_batch(CLEANUP_UNREFERENCED).unwrap();
        assert!(index.manifest(&manifest).unwrap().is_some());
        assert!(index.remove_container("c").unwrap());
        assert!(index.manifest(&manifest).unwrap().is_none());
        assert!(!index.remove_container("c").unwrap());
    }
}
