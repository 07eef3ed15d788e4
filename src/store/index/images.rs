//! Index rows for images: verbatim manifests, indexes and configs, the
//! layers each manifest lists, and image names.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::layers::{NewLayer, NewPack, insert_put};
use super::schema::*;
use super::{Index, digest_from_sql};
use crate::error::{Error, Result};
use crate::store::digest::Digest;
use crate::util::clock::now;

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
    /// Move names that already point at another image.
    pub force: bool,
}

/// What [`Index::tag_image`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameChange {
    /// The source name does not exist.
    NoSuchImage,
    /// The new name points at another image (no `force`); nothing changed.
    Taken(Digest),
    /// Done; `previous` is what the name pointed at before, if another image.
    Named {
        /// The image the name pointed at before.
        previous: Option<Digest>,
    },
}

/// The error for a name that already points at another image (moving it
/// takes `force`).
pub(crate) fn name_taken(name: &str, previous: &Digest) -> Error {
    Error::invalid(
        format!("image name {name:?}"),
        format!(
            "already names another image ({previous}); pass --force to move it \
             (the old image is kept until gc)"
        ),
    )
}

/// The digest `name` points at, read inside a transaction.
fn image_target_in(conn: &rusqlite::Connection, name: &str) -> Result<Option<Digest>> {
    let target: Option<String> = conn
        .query_row("SELECT target FROM images WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    target.map(|t| Digest::parse(&t)).transpose()
}

impl Index {
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

    /// Points name `dst` at what `src` points at. A `dst` that names
    /// another image is moved only with `force`. Nothing is deleted here:
    /// what only the old `dst` kept stays until gc.
    pub fn tag_image(&mut self, src: &str, dst: &str, force: bool) -> Result<NameChange> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(target) = image_target_in(&tx, src)? else {
            return Ok(NameChange::NoSuchImage);
        };
        let previous = image_target_in(&tx, dst)?.filter(|p| *p != target);
        if let (Some(previous), false) = (previous, force) {
            return Ok(NameChange::Taken(previous));
        }
        tx.execute(
            "INSERT OR REPLACE INTO images(name, target, created) VALUES (?1, ?2, ?3)",
            params![dst, target.to_string(), now()],
        )?;
        tx.commit()?;
        Ok(NameChange::Named { previous })
    }

    /// Removes image names and whatever only they kept, in one
    /// transaction (one cleanup, however many names). If any name does not
    /// exist nothing changes and that name is returned.
    pub fn remove_images(&mut self, names: &[String]) -> Result<Option<String>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM images WHERE name = ?1")?;
            let mut seen = std::collections::HashSet::new();
            for name in names {
                if seen.insert(name) && delete.execute([name])? == 0 {
                    return Ok(Some(name.clone()));
                }
            }
        }
        tx.execute_batch(CLEANUP_UNREFERENCED)?;
        tx.commit()?;
        Ok(None)
    }

    /// Commits a whole image import in one transaction: the layers' puts,
    /// the verbatim blobs, manifests, index entries and names.
    /// Names that pointed at another image are moved only with
    /// `import.force`; returns them with what they pointed at.
    pub fn commit_import(&mut self, import: &NewImport<'_>) -> Result<Vec<(String, Digest)>> {
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
            insert_manifest(&tx, m)?;
        }
        for (parent, children) in &import.index_children {
            insert_index_children(&tx, parent, children)?;
        }
        let created = now();
        let mut moved = Vec::new();
        for (name, target) in &import.names {
            if let Some(previous) = image_target_in(&tx, name)?.filter(|p| p != target) {
                if !import.force {
                    // Dropping the transaction rolls the whole import back.
                    return Err(name_taken(name, &previous));
                }
                moved.push((name.clone(), previous));
            }
            tx.execute(
                "INSERT OR REPLACE INTO images(name, target, created) VALUES (?1, ?2, ?3)",
                params![name, target.to_string(), created],
            )?;
        }
        // No cleanup: an import only adds, and what a moved name kept stays
        // until gc.
        tx.commit()?;
        Ok(moved)
    }
}

/// Records one manifest and its layers (replacing an earlier record).
pub(super) fn insert_manifest(tx: &rusqlite::Transaction<'_>, m: &ManifestRecord) -> Result<()> {
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
    Ok(())
}

/// Records the entries of one index, in order (replacing earlier ones).
pub(super) fn insert_index_children(
    tx: &rusqlite::Transaction<'_>,
    parent: &Digest,
    children: &[Digest],
) -> Result<()> {
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
    Ok(())
}
