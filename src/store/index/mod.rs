//! The SQLite index: every SQL statement of layerstore lives in this folder.
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
use crate::store::digest::Digest;
use crate::util::clock::now;

mod containers;
mod images;
mod layers;
mod maintenance;
mod registry;
mod schema;

pub use containers::*;
pub use images::*;
pub use layers::*;
pub use maintenance::*;
pub use registry::*;
pub(crate) use schema::SCHEMA_VERSION;
use schema::*;

/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// Opens the existing index at `path`, migrating older schema versions
    /// and refusing unknown ones. A missing or empty database is refused
    /// with [`Error::NeedsRepair`]: silently starting a new index would
    /// make every pack look like garbage.
    pub fn open(path: &Path) -> Result<Index> {
        Self::open_inner(path, None)
    }

    /// Opens the index at `path`, creating the database and its schema
    /// with `initial_meta` when it is missing or empty.
    pub fn open_or_create(path: &Path, initial_meta: &[(&str, String)]) -> Result<Index> {
        Self::open_inner(path, Some(initial_meta))
    }

    fn open_inner(path: &Path, create: Option<&[(&str, String)]>) -> Result<Index> {
        let store_dir = || path.parent().unwrap_or(path).to_path_buf();
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create.is_some() {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        } else {
            match std::fs::metadata(path) {
                Err(_) => {
                    return Err(Error::NeedsRepair {
                        path: store_dir(),
                        reason: "its index (index.db) is missing".into(),
                    });
                }
                // Checked before SQLite writes a header into it.
                Ok(meta) if meta.len() == 0 => {
                    return Err(Error::NeedsRepair {
                        path: store_dir(),
                        reason: "its index (index.db) is empty".into(),
                    });
                }
                Ok(_) => {}
            }
        }
        let conn = Connection::open_with_flags(path, flags)?;
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
        index.init_or_check(path, create)?;
        Ok(index)
    }

    fn init_or_check(&mut self, path: &Path, create: Option<&[(&str, String)]>) -> Result<()> {
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
                let Some(initial_meta) = create else {
                    return Err(Error::NeedsRepair {
                        path: path.parent().unwrap_or(path).to_path_buf(),
                        reason: "its index (index.db) is empty".into(),
                    });
                };
                tx.execute_batch(SCHEMA)?;
                tx.execute_batch(MIGRATE_V2)?;
                tx.execute_batch(MIGRATE_V3)?;
                tx.execute_batch(MIGRATE_V4)?;
                tx.execute_batch(MIGRATE_V5)?;
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
            (old @ (1..=4), true) => {
                // Apply the missing migrations in the same transaction that
                // records the new version: version 1 had no containers,
                // version 2 no pack intents, version 3 no exact blobs,
                // version 4 no registry.
                if old < 2 {
                    tx.execute_batch(MIGRATE_V2)?;
                }
                if old < 3 {
                    tx.execute_batch(MIGRATE_V3)?;
                }
                if old < 4 {
                    tx.execute_batch(MIGRATE_V4)?;
                }
                tx.execute_batch(MIGRATE_V5)?;
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
        let index = Index::open(&path).unwrap();
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
        let index = Index::open(&path).unwrap();
        assert_eq!(index.meta("format_version").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn version_2_gains_pack_intents_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        v1_database(&path);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATE_V2).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        drop(conn);
        let index = Index::open(&path).unwrap();
        let version: u32 = index
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        index
            .record_pack_intent("x.pack", PackIntent::Writing)
            .unwrap();
        assert_eq!(index.pack_intents().unwrap().len(), 1);
        assert!(index.damaged_packs().unwrap().is_empty());
        assert_eq!(index.images().unwrap().len(), 1);
    }

    #[test]
    fn a_missing_or_empty_index_is_never_created_by_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        assert!(matches!(Index::open(&path), Err(Error::NeedsRepair { .. })));
        assert!(!path.exists());
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(Index::open(&path), Err(Error::NeedsRepair { .. })));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn new_and_migrated_schemas_are_identical() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        v1_database(&old);
        drop(Index::open(&old).unwrap());
        let new = dir.path().join("new.db");
        drop(Index::open_or_create(&new, &[]).unwrap());
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
        let err = Index::open(&path)
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
        let mut index = Index::open_or_create(&dir.path().join("index.db"), &[]).unwrap();
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
