//! Layers: put, get, list, remove and store figures, as `impl Store`.
//!
//! `put` streams a layer through decompression, splitting, dedup and
//! compression into new packs and commits it in one index transaction;
//! `get` streams it back, checking every chunk and the DiffID. On error a
//! put adds nothing and a get has written only a verified prefix.

pub(crate) mod exact;
pub(crate) mod get;
pub(crate) mod input;
pub(crate) mod put;
pub(crate) mod stream;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::layer::put::{LayerInfo, PutContext, PutOptions};
use crate::store::chunker::Cdc;
use crate::store::digest::Digest;
use crate::store::index::{Index, LayerListing, LayerRow};
use crate::store::{LockMode, Store};

/// What `get` wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GetInfo {
    /// The layer's DiffID.
    pub digest: Digest,
    /// Bytes written.
    pub size: u64,
    /// The compressed-blob digest that was asked for, when it was one.
    pub via_alias: Option<Digest>,
}

/// A stored layer, as listed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerSummary {
    /// DiffID.
    pub digest: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Pack bytes attributable to this layer (chunks it shares with other
    /// layers are split evenly between them), including its recipe.
    pub stored_share: u64,
    /// When it was first stored, Unix seconds.
    pub created: i64,
    /// Put directly and not removed.
    pub pinned: bool,
    /// Chunk references in its recipe.
    pub chunks: u64,
    /// Digests of compressed blobs recorded as this layer.
    pub compressed_digests: Vec<Digest>,
}

/// Figures for the whole store.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoreStats {
    /// Layers stored.
    pub layers: u64,
    /// Sum of the layers' uncompressed sizes.
    pub logical_bytes: u64,
    /// Bytes on disk: packs, index and everything else in the directory.
    pub stored_bytes: u64,
    /// Bytes of pack files.
    pub pack_bytes: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Uncompressed bytes of distinct chunks.
    pub unique_chunk_bytes: u64,
    /// Pack files.
    pub packs: u64,
    /// Compressed-blob aliases.
    pub aliases: u64,
    /// Image names.
    pub images: u64,
    /// `logical_bytes / stored_bytes` (0 for an empty store).
    pub dedup_ratio: f64,
    /// Compressed blobs by how they come back exactly.
    pub blobs: Vec<BlobMethodStats>,
}

/// Compressed blobs kept one way, for `stat`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BlobMethodStats {
    /// `preflate`, `zstd`, `verbatim`, or `tar-only` (only the tar is kept).
    pub method: String,
    /// Blobs.
    pub count: u64,
    /// Their total size.
    pub blob_bytes: u64,
    /// Extra data kept to rebuild them, before deduplication and
    /// compression.
    pub extra_bytes: u64,
    /// Of them, blobs kept verbatim until gc looks for a cheaper method.
    pub pending: u64,
}

impl Store {
    /// Stores one layer (plain tar, gzip or zstd, detected from its first
    /// bytes) and pins it. See [`Store::put_layer_with`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let layer_tar = layerstore::testing::tiny_layer();
    /// let info = store.put_layer(&layer_tar[..])?;
    /// assert_eq!(info.size, layer_tar.len() as u64);
    /// // The same layer again adds nothing.
    /// assert_eq!(store.put_layer(&layer_tar[..])?.added_bytes, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_layer(&self, input: impl Read + Send) -> Result<LayerInfo> {
        self.put_layer_with(input, &PutOptions::default())
    }

    /// Stores one layer with options (input name for errors, a size limit,
    /// progress). The DiffID is computed here, never taken from the input.
    /// On error nothing is added to the store.
    pub fn put_layer_with(
        &self,
        input: impl Read + Send,
        opts: &PutOptions<'_>,
    ) -> Result<LayerInfo> {
        let _lock = self.lock(LockMode::Shared)?;
        let mut index = self.index()?;
        put::put_layer(self.put_context(&mut index), input, opts)
    }

    pub(crate) fn put_context<'a>(&self, index: &'a mut Index) -> PutContext<'a> {
        PutContext {
            store: self.clone(),
            cdc: Cdc::new(self.config().chunk),
            zstd_level: self.config().zstd_level,
            frame_target: self.config().frame_target as usize,
            index,
        }
    }

    /// Stores the layer in the file at `path`; errors name the file.
    pub fn put_layer_file(&self, path: impl AsRef<Path>) -> Result<LayerInfo> {
        let path = path.as_ref();
        let file = File::open(path).context(|| format!("opening {}", path.display()))?;
        self.put_layer_with(
            file,
            &PutOptions {
                source_name: Some(path.display().to_string()),
                ..PutOptions::default()
            },
        )
    }

    fn resolve(&self, index: &Index, digest: &Digest) -> Result<(LayerRow, Option<Digest>)> {
        if let Some(row) = index.layer(digest)? {
            return Ok((row, None));
        }
        if let Some(row) = index.layer_by_alias(digest)? {
            return Ok((row, Some(*digest)));
        }
        Err(Error::not_found(format!("layer {digest}")))
    }

    /// Writes the uncompressed tar of the layer named by `digest` (its
    /// DiffID or a recorded compressed digest) to `out`. Every chunk and
    /// the whole layer are checked on the way; on error the bytes written
    /// so far are a correct prefix, never wrong data.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let layer_tar = layerstore::testing::tiny_layer();
    /// let digest = store.put_layer(&layer_tar[..])?.digest;
    /// let mut out = Vec::new();
    /// let got = store.get_layer(&digest, &mut out)?;
    /// assert_eq!((out, got.size), (layer_tar.clone(), layer_tar.len() as u64));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_layer(&self, digest: &Digest, mut out: impl Write) -> Result<GetInfo> {
        self.get_layer_with(digest, &mut out, None)
    }

    /// [`Store::get_layer`] with a progress callback (bytes written so far).
    pub fn get_layer_with(
        &self,
        digest: &Digest,
        out: &mut dyn Write,
        progress: Option<&(dyn Fn(u64) + Sync)>,
    ) -> Result<GetInfo> {
        let _lock = self.lock(LockMode::Shared)?;
        let index = self.index()?;
        let (row, via_alias) = self.resolve(&index, digest)?;
        let size = get::write_layer(index, &self.packs(), &row, out, progress)?;
        Ok(GetInfo {
            digest: row.digest,
            size,
            via_alias,
        })
    }

    /// Writes a layer to the file at `path`, atomically: the file appears
    /// complete and verified, or not at all (a failed or killed get leaves
    /// no partial file). Like `cp` or `zstd -d`, it does not fsync the
    /// output: that is the caller's choice, not the store's durability.
    pub fn get_layer_to_path(
        &self,
        digest: &Digest,
        path: impl AsRef<Path>,
        progress: Option<&(dyn Fn(u64) + Sync)>,
    ) -> Result<GetInfo> {
        write_atomically(path.as_ref(), |out| {
            self.get_layer_with(digest, out, progress)
        })
    }

    /// [`Store::get_blob`] to the file at `path`, atomically, like
    /// [`Store::get_layer_to_path`].
    pub fn get_blob_to_path(
        &self,
        digest: &Digest,
        path: impl AsRef<Path>,
        progress: Option<&(dyn Fn(u64) + Sync)>,
    ) -> Result<GetInfo> {
        write_atomically(path.as_ref(), |out| {
            self.get_blob_with(digest, out, progress)
        })
    }

    /// Looks a layer up by DiffID or compressed digest.
    pub fn layer(&self, digest: &Digest) -> Result<LayerSummary> {
        let index = self.index()?;
        let (row, _) = self.resolve(&index, digest)?;
        summaries(index.list_layers(Some(&row.digest))?)
            .pop()
            .ok_or_else(|| Error::not_found(format!("layer {digest}")))
    }

    /// All layers, oldest first.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let layer_tar = layerstore::testing::tiny_layer();
    /// store.put_layer(&layer_tar[..])?;
    /// let layers = store.layers()?;
    /// assert_eq!(layers.len(), 1);
    /// assert!(layers[0].pinned);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn layers(&self) -> Result<Vec<LayerSummary>> {
        Ok(summaries(self.index()?.list_layers(None)?))
    }

    /// Unpins a layer (named by DiffID or compressed digest) and removes it
    /// from the listing; the space it alone used comes back at the next gc.
    /// Returns its DiffID. See [`Store::remove_layers`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let layer_tar = layerstore::testing::tiny_layer();
    /// let digest = store.put_layer(&layer_tar[..])?.digest;
    /// store.remove_layer(&digest)?;
    /// assert!(store.layers()?.is_empty());
    /// assert!(store.get_layer(&digest, std::io::sink()).unwrap_err().is_not_found());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_layer(&self, digest: &Digest) -> Result<Digest> {
        self.remove_layers(std::slice::from_ref(digest))?
            .pop()
            .ok_or_else(|| Error::not_found(format!("layer {digest}")))
    }

    /// Removes several layers, all or none: every digest is resolved first
    /// and one that names no layer removes nothing (the error names it).
    /// Returns the DiffIDs removed, each once, in the order given.
    pub fn remove_layers(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let mut index = self.index()?;
        let mut diff_ids: Vec<Digest> = Vec::with_capacity(digests.len());
        for digest in digests {
            let (row, _) = self.resolve(&index, digest)?;
            if !diff_ids.contains(&row.digest) {
                diff_ids.push(row.digest);
            }
        }
        // Gone between the lookup and the transaction: another process
        // removed it.
        if let Some(gone) = index.remove_layers(&diff_ids)? {
            return Err(Error::not_found(format!("layer {gone}")));
        }
        Ok(diff_ids)
    }

    /// Figures for the whole store.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let layer_tar = layerstore::testing::tiny_layer();
    /// store.put_layer(&layer_tar[..])?;
    /// let stats = store.stats()?;
    /// assert_eq!((stats.layers, stats.logical_bytes), (1, layer_tar.len() as u64));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Result<StoreStats> {
        let index = self.index()?;
        let s = index.stats()?;
        let blobs = index
            .blob_methods()?
            .into_iter()
            .map(|row| BlobMethodStats {
                method: row.method,
                count: row.count,
                blob_bytes: row.blob_bytes,
                extra_bytes: row.extra_bytes,
                pending: row.pending,
            })
            .collect();
        let pack_bytes = self.packs().size()?;
        let stored_bytes = pack_bytes + self.non_pack_bytes()?;
        Ok(StoreStats {
            layers: s.layers,
            logical_bytes: s.logical_bytes,
            stored_bytes,
            pack_bytes,
            chunks: s.chunks,
            unique_chunk_bytes: s.unique_chunk_bytes,
            packs: s.packs,
            aliases: s.aliases,
            images: s.images,
            dedup_ratio: if stored_bytes == 0 {
                0.0
            } else {
                s.logical_bytes as f64 / stored_bytes as f64
            },
            blobs,
        })
    }
}

/// Runs `write` into a temporary sibling of `path` and renames it into
/// place only if it succeeds; otherwise removes it.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<GetInfo>,
) -> Result<GetInfo> {
    let tmp = crate::util::fs::temp_sibling(path);
    let result = (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .context(|| format!("creating {}", tmp.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let info = write(&mut out)?;
        out.into_inner()
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e.into_error()))?;
        fs::rename(&tmp, path).context(|| format!("renaming to {}", path.display()))?;
        Ok(info)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn summaries(listing: Vec<LayerListing>) -> Vec<LayerSummary> {
    listing
        .into_iter()
        .map(|l| LayerSummary {
            digest: l.row.digest,
            size: l.row.size,
            stored_share: l.stored_share.round() as u64,
            created: l.row.created,
            pinned: l.row.pinned,
            chunks: l.row.chunk_count,
            compressed_digests: l.aliases,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::store::pack::MAX_FRAME_ENTRIES;

    /// More distinct tiny files than a frame may hold chunks: the put must
    /// split them over several frames, or the committed layer could never
    /// be read back.
    #[test]
    fn more_tiny_chunks_than_one_frame_holds() {
        let files = MAX_FRAME_ENTRIES as usize + 100;
        let mut builder = tar::Builder::new(Vec::new());
        for i in 0..files {
            let data = format!("{i:07}\n");
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("f/{i}"), data.as_bytes())
                .unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let info = store.put_layer(&tar[..]).unwrap();
        assert!(info.new_chunks as usize >= files, "{info:?}");
        let mut back = Vec::new();
        store.get_layer(&info.digest, &mut back).unwrap();
        assert!(back == tar, "layer did not come back byte for byte");
    }
}
