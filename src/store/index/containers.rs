//! Index rows for containers: name, directory id and the manifest each was
//! created from (a gc root while the container exists).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::schema::*;
use super::{Index, digest_from_sql};
use crate::error::{Error, Result};
use crate::store::digest::Digest;

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

impl Index {
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
}
