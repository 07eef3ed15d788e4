//! The index's SQL schema, its version and the migrations between
//! versions. Bumping `SCHEMA_VERSION` obliges a migration here (or a clear
//! refusal in `Index::open`) and an entry in docs/FORMAT.md.

/// Index schema version written by this build.
pub const SCHEMA_VERSION: u32 = 5;

pub(super) const SCHEMA: &str = "
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
/// and to version-1 databases by the migration in [`super::Index::open`], inside
/// the transaction that sets `user_version`.
pub(super) const MIGRATE_V2: &str = "
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

/// Schema version 3: pack intents. A writer records the name of a pack it
/// is about to create (`writing`) before the file can appear, and the
/// commit that adds the pack to the index deletes the record in the same
/// transaction; gc records a pack it drops from the index (`retired`) in
/// the transaction that drops it. A pack file the index does not know is
/// then garbage only if an intent names it: anything else (an index lost or
/// restored from an older copy) is kept for `verify --repair`.
///
/// Also `packs.damaged`: set by repair on a pack it could read only in
/// part, so that gc never deletes or rewrites it (the unread bytes may
/// still be recoverable by other means).
pub(super) const MIGRATE_V3: &str = "
CREATE TABLE pack_intents(
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('writing', 'retired')),
    created INTEGER NOT NULL
);
ALTER TABLE packs ADD COLUMN damaged INTEGER NOT NULL DEFAULT 0;
";

/// Schema version 4: exact compressed blobs. An alias may name the blob
/// frame that rebuilds the compressed blob byte for byte (`blob_frame`),
/// with the method used and the bytes of extra data it keeps; `pending`
/// marks a blob kept verbatim until gc finds the cheaper method. Aliases
/// from older versions have none: their blob was never kept, only its tar.
/// The extra data's chunks are named (by hash, so that a chunk stored anew
/// after repair still counts) in `blob_chunks`, which keeps them alive
/// exactly as long as the alias.
pub(super) const MIGRATE_V4: &str = "
ALTER TABLE aliases ADD COLUMN blob_frame INTEGER REFERENCES frames(id);
ALTER TABLE aliases ADD COLUMN method TEXT;
ALTER TABLE aliases ADD COLUMN extra_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE aliases ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX aliases_by_blob_frame ON aliases(blob_frame);
CREATE TABLE blob_chunks(
    alias TEXT NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY(alias, hash)
) WITHOUT ROWID;
CREATE INDEX blob_chunks_by_hash ON blob_chunks(hash);
";

/// Schema version 5: the registry (`layerstore serve`). `registry_blobs`
/// lists every blob pushed, by the sha256 digest `get_blob` answers with
/// its bytes (a DiffID, or a compressed blob's alias), and the layer row
/// holding them; a row keeps its layer alive until the blob is deleted or
/// gc finds it older than the grace period and unreferenced.
/// `registry_digests` names the same bytes by another algorithm (sha512).
/// `registry_manifests` says which repository holds which manifest (a
/// root for gc, like an image name), with the manifest's `subject` and
/// artifact type for the referrers API; `registry_refs` lists the blobs
/// and child manifests each one refers to.
pub(super) const MIGRATE_V5: &str = "
CREATE TABLE registry_blobs(
    digest TEXT PRIMARY KEY,
    layer INTEGER NOT NULL REFERENCES layers(id),
    size INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX registry_blobs_by_layer ON registry_blobs(layer);
CREATE TABLE registry_digests(
    digest TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL
);
CREATE TABLE registry_manifests(
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    created INTEGER NOT NULL,
    PRIMARY KEY(repo, digest)
) WITHOUT ROWID;
CREATE INDEX registry_manifests_by_digest ON registry_manifests(digest);
CREATE INDEX registry_manifests_by_subject ON registry_manifests(subject);
CREATE TABLE registry_refs(
    manifest TEXT NOT NULL,
    blob TEXT NOT NULL,
    PRIMARY KEY(manifest, blob)
) WITHOUT ROWID;
CREATE INDEX registry_refs_by_blob ON registry_refs(blob);
";

/// Deletes what no image name or container reaches any more: manifests, index entries,
/// verbatim blobs, and layers that are neither pinned nor in a manifest.
/// Chunks stay (gc reclaims them).
pub(super) const CLEANUP_UNREFERENCED: &str = "
WITH RECURSIVE live(d) AS (
    SELECT target FROM images UNION SELECT manifest FROM containers
    UNION SELECT digest FROM registry_manifests
    UNION SELECT c.child FROM index_children c JOIN live ON c.parent = live.d)
DELETE FROM manifests WHERE digest NOT IN (SELECT d FROM live);
DELETE FROM manifest_layers WHERE manifest NOT IN (SELECT digest FROM manifests);
WITH RECURSIVE live(d) AS (
    SELECT target FROM images UNION SELECT manifest FROM containers
    UNION SELECT digest FROM registry_manifests
    UNION SELECT c.child FROM index_children c JOIN live ON c.parent = live.d)
DELETE FROM index_children WHERE parent NOT IN (SELECT d FROM live);
WITH RECURSIVE live(d) AS (
    SELECT target FROM images UNION SELECT manifest FROM containers
    UNION SELECT digest FROM registry_manifests
    UNION SELECT c.child FROM index_children c JOIN live ON c.parent = live.d)
DELETE FROM blobs WHERE digest NOT IN (SELECT d FROM live)
    AND digest NOT IN (SELECT config FROM manifests);
CREATE TEMP TABLE IF NOT EXISTS dead_layers(id INTEGER PRIMARY KEY);
DELETE FROM temp.dead_layers;
INSERT INTO temp.dead_layers SELECT id FROM layers
    WHERE pinned = 0 AND id NOT IN (SELECT layer FROM manifest_layers)
        AND id NOT IN (SELECT layer FROM registry_blobs);
DELETE FROM aliases WHERE layer IN (SELECT id FROM temp.dead_layers);
DELETE FROM blob_chunks WHERE alias NOT IN (SELECT digest FROM aliases);
DELETE FROM layer_chunks WHERE layer IN (SELECT id FROM temp.dead_layers);
DELETE FROM layers WHERE id IN (SELECT id FROM temp.dead_layers);
DELETE FROM temp.dead_layers;
";
