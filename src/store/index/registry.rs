//! Index rows for the registry (`layerstore serve`): which blobs were
//! pushed, other names (sha512) for the same bytes, which repository holds
//! which manifest, what each manifest refers to, and tags (image names
//! `REPO:TAG` in `images`). Every change is one transaction, so a push
//! that fails halfway leaves no row behind, and gc and pushes never see
//! each other's half-done work.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::images::{insert_index_children, insert_manifest};
use super::layers::{NewLayer, NewPack, PutCommit, commit_put_in};
use super::schema::CLEANUP_UNREFERENCED;
use super::{Index, ManifestRecord, digest_from_sql};
use crate::error::{Error, Result};
use crate::store::digest::Digest;
use crate::util::clock::now;

/// Where the bytes of a registry blob live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobPlace {
    /// A verbatim document (manifest, index or config) in `blobs`.
    Document,
    /// A layer's tar (or a blob kept as it is): the digest is a DiffID.
    Layer,
    /// A compressed blob rebuilt exactly from its layer.
    Alias,
}

/// A manifest a push records.
pub struct RegistryManifest<'a> {
    /// Repository.
    pub repo: &'a str,
    /// sha256 of the bytes.
    pub digest: Digest,
    /// Another name for it (`sha512:...`), when pushed by one.
    pub other_name: Option<&'a str>,
    /// Media type, as pushed.
    pub media_type: &'a str,
    /// The bytes, verbatim.
    pub bytes: &'a [u8],
    /// Tag to point at it.
    pub tag: Option<&'a str>,
    /// The `subject` field's digest.
    pub subject: Option<&'a str>,
    /// `artifactType`, or the config's media type for an artifact.
    pub artifact_type: Option<&'a str>,
    /// Blobs and child manifests it refers to (sha256), each must exist.
    pub refs: &'a [Digest],
    /// When it is a runnable image: its record and its config's bytes and
    /// media type.
    pub image: Option<(ManifestRecord, &'a [u8], &'a str)>,
    /// When it is an index: its children, in order.
    pub children: Option<&'a [Digest]>,
}

/// A manifest that refers to a given subject.
#[derive(Clone, Debug)]
pub struct Referrer {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

fn place_in(conn: &rusqlite::Connection, digest: &Digest) -> Result<Option<(u64, BlobPlace)>> {
    let d = digest.to_string();
    let found = conn
        .query_row(
            "SELECT length(data), 0 FROM blobs WHERE digest = ?1
             UNION ALL SELECT size, 1 FROM layers WHERE digest = ?1
             UNION ALL SELECT size, 2 FROM aliases WHERE digest = ?1
             LIMIT 1",
            [&d],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .optional()?;
    Ok(found.map(|(size, place)| {
        let place = match place {
            0 => BlobPlace::Document,
            1 => BlobPlace::Layer,
            _ => BlobPlace::Alias,
        };
        (size.max(0) as u64, place)
    }))
}

impl Index {
    /// The sha256 digest the store knows the bytes named `name` by: the
    /// digest itself for `sha256:`, a recorded other name otherwise.
    pub fn registry_sha256(&self, name: &str) -> Result<Option<Digest>> {
        if name.starts_with("sha256:") {
            return Ok(Some(Digest::parse(name)?));
        }
        let row: Option<String> = self
            .conn
            .query_row(
                "SELECT sha256 FROM registry_digests WHERE digest = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        row.map(digest_from_sql).transpose().map_err(Error::from)
    }

    /// Size and place of the bytes named `digest`, if the store has them.
    pub fn registry_blob(&self, digest: &Digest) -> Result<Option<(u64, BlobPlace)>> {
        place_in(&self.conn, digest)
    }

    /// Commits a pushed blob: its put (unpinned: the registry row keeps
    /// it), the registry row, and its other name.
    pub fn commit_registry_blob(
        &mut self,
        packs: &[NewPack],
        layer: &NewLayer,
        digest: &Digest,
        size: u64,
        other_name: Option<&str>,
    ) -> Result<PutCommit> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (commit, layer_id) = commit_put_in(&tx, packs, layer, false)?;
        tx.execute(
            "INSERT OR REPLACE INTO registry_blobs(digest, layer, size, created)
             VALUES (?1, ?2, ?3, ?4)",
            params![digest.to_string(), layer_id, size, now()],
        )?;
        if let Some(name) = other_name {
            tx.execute(
                "INSERT OR REPLACE INTO registry_digests(digest, sha256) VALUES (?1, ?2)",
                params![name, digest.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(commit)
    }

    /// Deletes a pushed blob's registry row and other names; a layer that
    /// nothing else keeps is forgotten (its chunks stay until gc). False
    /// when the registry never had the blob.
    pub fn delete_registry_blob(&mut self, digest: &Digest) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let d = digest.to_string();
        let rows = tx.execute("DELETE FROM registry_blobs WHERE digest = ?1", [&d])?;
        tx.execute("DELETE FROM registry_digests WHERE sha256 = ?1", [&d])?;
        tx.execute_batch(CLEANUP_UNREFERENCED)?;
        tx.commit()?;
        Ok(rows > 0)
    }

    /// Records a pushed manifest: its bytes, the repository's row, what it
    /// refers to, its image record or index entries, and its tag; all or
    /// nothing. A reference the store does not have is returned as
    /// `Ok(Some(digest))` and nothing changes.
    pub fn commit_registry_manifest(&mut self, m: &RegistryManifest<'_>) -> Result<Option<Digest>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for r in m.refs {
            let known = place_in(&tx, r)?.is_some();
            if !known {
                return Ok(Some(*r));
            }
        }
        let d = m.digest.to_string();
        tx.execute(
            "INSERT OR IGNORE INTO blobs(digest, media_type, data) VALUES (?1, ?2, ?3)",
            params![&d, m.media_type, m.bytes],
        )?;
        if let Some((record, config, config_type)) = &m.image {
            tx.execute(
                "INSERT OR IGNORE INTO blobs(digest, media_type, data) VALUES (?1, ?2, ?3)",
                params![record.config.to_string(), config_type, config],
            )?;
            insert_manifest(&tx, record)?;
        }
        if let Some(children) = m.children {
            insert_index_children(&tx, &m.digest, children)?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO registry_manifests(repo, digest, subject, artifact_type, created)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![m.repo, &d, m.subject, m.artifact_type, now()],
        )?;
        tx.execute("DELETE FROM registry_refs WHERE manifest = ?1", [&d])?;
        for r in m.refs {
            tx.execute(
                "INSERT OR IGNORE INTO registry_refs(manifest, blob) VALUES (?1, ?2)",
                params![&d, r.to_string()],
            )?;
        }
        if let Some(name) = m.other_name {
            tx.execute(
                "INSERT OR REPLACE INTO registry_digests(digest, sha256) VALUES (?1, ?2)",
                params![name, &d],
            )?;
        }
        if let Some(tag) = m.tag {
            tx.execute(
                "INSERT OR REPLACE INTO images(name, target, created) VALUES (?1, ?2, ?3)",
                params![format!("{}:{tag}", m.repo), &d, now()],
            )?;
        }
        tx.commit()?;
        Ok(None)
    }

    /// The tags of repository `repo`, sorted.
    pub fn registry_tags(&self, repo: &str) -> Result<Vec<(String, Digest)>> {
        let prefix = format!("{repo}:");
        let mut stmt = self.conn.prepare_cached(
            "SELECT substr(name, ?2), target FROM images
             WHERE substr(name, 1, ?1) = ?3 ORDER BY name",
        )?;
        let rows = stmt.query_map(
            params![prefix.len() as i64, prefix.len() as i64 + 1, &prefix],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?;
        let mut tags = Vec::new();
        for row in rows {
            let (tag, target) = row?;
            if !tag.contains('/') && !tag.contains(':') {
                tags.push((tag, digest_from_sql(target)?));
            }
        }
        tags.sort();
        Ok(tags)
    }

    /// Whether repository `repo` holds any manifest or tag.
    pub fn registry_repo_exists(&self, repo: &str) -> Result<bool> {
        let held: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM registry_manifests WHERE repo = ?1)",
            [repo],
            |r| r.get(0),
        )?;
        Ok(held || !self.registry_tags(repo)?.is_empty())
    }

    /// Whether repository `repo` holds manifest `digest`: pushed there, or
    /// reached from one of its tags (an imported image, an index's child).
    pub fn registry_repo_has_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let prefix = format!("{repo}:");
        Ok(self.conn.query_row(
            "WITH RECURSIVE reach(d) AS (
                 SELECT target FROM images WHERE substr(name, 1, ?2) = ?3
                 UNION SELECT digest FROM registry_manifests WHERE repo = ?1
                 UNION SELECT c.child FROM index_children c JOIN reach ON c.parent = reach.d)
             SELECT EXISTS(SELECT 1 FROM reach WHERE d = ?4)",
            params![repo, prefix.len() as i64, &prefix, digest.to_string()],
            |r| r.get(0),
        )?)
    }

    /// Removes tag `tag` of `repo`; false when there was none. What it
    /// pointed at stays (by digest) until it is deleted.
    pub fn delete_registry_tag(&mut self, repo: &str, tag: &str) -> Result<bool> {
        let n = self.conn.execute(
            "DELETE FROM images WHERE name = ?1",
            [format!("{repo}:{tag}")],
        )?;
        Ok(n > 0)
    }

    /// Removes manifest `digest` from `repo` with every tag of `repo` that
    /// points at it; what nothing else reaches any more is forgotten. False
    /// when `repo` did not have it.
    pub fn delete_registry_manifest(&mut self, repo: &str, digest: &Digest) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let d = digest.to_string();
        let prefix = format!("{repo}:");
        let rows = tx.execute(
            "DELETE FROM registry_manifests WHERE repo = ?1 AND digest = ?2",
            params![repo, &d],
        )?;
        let tags = tx.execute(
            "DELETE FROM images WHERE target = ?1 AND substr(name, 1, ?2) = ?3",
            params![&d, prefix.len() as i64, &prefix],
        )?;
        tx.execute(
            "DELETE FROM registry_refs WHERE manifest = ?1
                 AND NOT EXISTS(SELECT 1 FROM registry_manifests WHERE digest = ?1)",
            [&d],
        )?;
        tx.execute_batch(CLEANUP_UNREFERENCED)?;
        tx.commit()?;
        Ok(rows + tags > 0)
    }

    /// Manifests of `repo` whose `subject` is `subject`, optionally only
    /// those of one artifact type.
    pub fn registry_referrers(
        &self,
        repo: &str,
        subject: &str,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.digest, b.media_type, b.data FROM registry_manifests m
             JOIN blobs b ON b.digest = m.digest
             WHERE m.repo = ?1 AND m.subject = ?2
                 AND (?3 IS NULL OR m.artifact_type = ?3)
             ORDER BY m.created, m.digest",
        )?;
        let rows = stmt.query_map(params![repo, subject, artifact_type], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (digest, media_type, bytes) = row?;
            out.push(Referrer {
                digest: digest_from_sql(digest)?,
                media_type,
                bytes,
            });
        }
        Ok(out)
    }
}

/// Forgets pushed blobs older than `cutoff` (seconds since the epoch)
/// that no manifest refers to, and names of bytes no longer kept; the
/// caller's cleanup then drops what nothing reaches. Returns how many
/// blobs were forgotten.
pub(super) fn sweep_registry_blobs(tx: &rusqlite::Transaction<'_>, cutoff: i64) -> Result<u64> {
    let n = tx.execute(
        "DELETE FROM registry_blobs WHERE created <= ?1
             AND digest NOT IN (SELECT blob FROM registry_refs)",
        [cutoff],
    )?;
    tx.execute(
        "DELETE FROM registry_digests WHERE sha256 NOT IN (SELECT digest FROM registry_blobs)
             AND sha256 NOT IN (SELECT digest FROM blobs)",
        [],
    )?;
    Ok(n as u64)
}
