//! The [`Store`]: a directory holding packs and the index, and every
//! operation on it.
//!
//! ```text
//! STORE/
//!   index.db          SQLite index (WAL), format version and settings
//!   packs/*.pack      append-only pack files
//!   lock              flock(2): shared for put/get, exclusive for gc sweeps
//!   containers/       containers' root filesystems (see `container`)
//!   checkouts/        shared image checkouts, reflink sources
//! ```
//!
//! A `Store` value is cheap and thread-safe: each operation opens its own
//! index connection, so threads and processes may share one store.

pub(crate) mod chunker;
pub(crate) mod digest;
pub(crate) mod index;
pub(crate) mod pack;
pub(crate) mod packs;
pub(crate) mod recipe;
pub(crate) mod split;
pub(crate) mod tarscan;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::checkout::CheckoutReport;
use crate::container::{self, Change, CommitReport, ContainerInfo};
use crate::error::{Error, IoContext, Result};
use crate::gc::{self, GcOptions, GcReport};
use crate::get;
use crate::image::{self, ExportFormat, ExportReport, ImageDetails, ImageSummary, ImportReport};
use crate::oci;
use crate::put::{self, LayerInfo, PutContext, PutOptions};
use crate::store::chunker::{Cdc, ChunkParams};
use crate::store::digest::Digest;
use crate::store::index::{Index, LayerListing, LayerRow};
use crate::store::packs::Packs;
use crate::verify::{self, VerifyOptions, VerifyReport};

/// On-disk format version of a store (index schema, pack and recipe formats).
pub const FORMAT_VERSION: u32 = 1;
/// Name of the chunking algorithm recorded in the store.
const CHUNKER: &str = "fastcdc-5.0.0-v2020";

/// Settings fixed when a store is created.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoreConfig {
    /// FastCDC sizes.
    pub chunk: ChunkParams,
    /// zstd level for chunk frames.
    pub zstd_level: i32,
    /// Uncompressed bytes gathered into one frame before compressing.
    pub frame_target: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            chunk: ChunkParams::default(),
            zstd_level: 3,
            frame_target: 1 << 20,
        }
    }
}

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
}

/// A layer store in a directory.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use layerstore::Store;
/// let store = Store::open(dir.path().join("store"))?;
/// let mut tar = tar::Builder::new(Vec::new());
/// let mut header = tar::Header::new_gnu();
/// header.set_size(5);
/// header.set_cksum();
/// tar.append_data(&mut header, "hello.txt", &b"hello"[..])?;
/// let tar = tar.into_inner()?;
///
/// let info = store.put_layer(&tar[..])?;
/// assert_eq!(info.digest, layerstore::Digest::of(&tar));
/// let mut back = Vec::new();
/// store.get_layer(&info.digest, &mut back)?;
/// assert_eq!(back, tar);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    config: StoreConfig,
}

impl Store {
    /// Opens the store at `path`, creating it with default settings if it
    /// does not exist. Refuses stores of another format version.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(path, &StoreConfig::default())
    }

    /// Opens the store at `path`; creates it with `config` if it is new.
    /// An existing store keeps the settings it was created with.
    pub fn open_with(path: impl AsRef<Path>, config: &StoreConfig) -> Result<Store> {
        config.chunk.validate()?;
        let root = path.as_ref().to_path_buf();
        if root.exists() && !root.is_dir() {
            return Err(Error::invalid(
                root.display().to_string(),
                "store path exists and is not a directory",
            ));
        }
        fs::create_dir_all(root.join("packs"))
            .context(|| format!("creating store directory {}", root.display()))?;
        let initial = [
            ("format_version", FORMAT_VERSION.to_string()),
            ("chunker", CHUNKER.to_string()),
            ("chunk_min", config.chunk.min_size.to_string()),
            ("chunk_avg", config.chunk.avg_size.to_string()),
            ("chunk_max", config.chunk.max_size.to_string()),
            ("zstd_level", config.zstd_level.to_string()),
            ("frame_target", config.frame_target.to_string()),
        ];
        let index = Index::open(&root.join("index.db"), &initial)?;
        let unsupported = |found: String| Error::UnsupportedFormat {
            path: root.clone(),
            found,
            supported: FORMAT_VERSION,
        };
        let format = index.meta("format_version")?.unwrap_or_default();
        if format != FORMAT_VERSION.to_string() {
            return Err(unsupported(format));
        }
        let chunker = index.meta("chunker")?.unwrap_or_default();
        if chunker != CHUNKER {
            return Err(unsupported(format!("{format} with chunker {chunker:?}")));
        }
        let number = |key: &str| -> Result<i64> {
            index
                .meta(key)?
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::corrupt(format!("store setting {key} is missing or invalid")))
        };
        let stored = StoreConfig {
            chunk: ChunkParams {
                min_size: number("chunk_min")? as u32,
                avg_size: number("chunk_avg")? as u32,
                max_size: number("chunk_max")? as u32,
            },
            zstd_level: number("zstd_level")? as i32,
            frame_target: number("frame_target")? as u32,
        };
        stored.chunk.validate()?;
        Ok(Store {
            root,
            config: stored,
        })
    }

    /// The default store directory: `$LAYERSTORE_DIR`, else
    /// `$XDG_DATA_HOME/layerstore`, else `~/.local/share/layerstore`.
    pub fn default_path() -> Option<PathBuf> {
        let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(dir) = non_empty("LAYERSTORE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(data) = non_empty("XDG_DATA_HOME") {
            return Some(PathBuf::from(data).join("layerstore"));
        }
        non_empty("HOME").map(|home| PathBuf::from(home).join(".local/share/layerstore"))
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The settings the store was created with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn index(&self) -> Result<Index> {
        Index::open(&self.root.join("index.db"), &[])
    }

    /// The store's pack files.
    pub(crate) fn packs(&self) -> Packs {
        Packs::new(self.root.join("packs"))
    }

    /// Takes the store lock shared (puts and gets) until the file is dropped.
    pub(crate) fn lock_shared(&self) -> Result<File> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context(|| format!("opening lock file {}", path.display()))?;
        file.lock_shared()
            .context(|| format!("locking {}", path.display()))?;
        Ok(file)
    }

    /// Takes the store lock exclusively (gc) until the file is dropped.
    pub(crate) fn lock_exclusive(&self) -> Result<File> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context(|| format!("opening lock file {}", path.display()))?;
        file.lock()
            .context(|| format!("locking {}", path.display()))?;
        Ok(file)
    }

    /// Reclaims space: forgets layers that are neither pinned nor used by
    /// an image, then chunks no layer uses, then rewrites packs whose live
    /// share is below `opts.rewrite_below`. Waits for running puts, imports
    /// and gets (they hold the store lock shared) and makes new ones wait.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let mut b = tar::Builder::new(Vec::new());
    /// # let mut h = tar::Header::new_gnu();
    /// # h.set_size(3);
    /// # h.set_cksum();
    /// # b.append_data(&mut h, "a.txt", &b"abc"[..])?;
    /// # let layer_tar: Vec<u8> = b.into_inner()?;
    /// let digest = store.put_layer(&layer_tar[..])?.digest;
    /// store.remove_layer(&digest)?;
    /// let report = store.gc(&layerstore::GcOptions::default())?;
    /// assert_eq!(report.chunks_removed, 1);
    /// assert_eq!(store.stats()?.pack_bytes, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        gc::collect_garbage(self, opts)
    }

    /// Checks the store's invariants (see [`VerifyOptions`]); with
    /// `repair`, first restores what the packs still hold.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let mut b = tar::Builder::new(Vec::new());
    /// # let mut h = tar::Header::new_gnu();
    /// # h.set_size(3);
    /// # h.set_cksum();
    /// # b.append_data(&mut h, "a.txt", &b"abc"[..])?;
    /// # let layer_tar: Vec<u8> = b.into_inner()?;
    /// store.put_layer(&layer_tar[..])?;
    /// let report = store.verify(&layerstore::VerifyOptions { full: true, repair: false })?;
    /// assert!(report.is_clean(), "{:?}", report.problems);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, opts: &VerifyOptions) -> Result<VerifyReport> {
        verify::verify(self, opts)
    }

    /// Stores one layer (plain tar, gzip or zstd, detected from its first
    /// bytes) and pins it. See [`Store::put_layer_with`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let mut b = tar::Builder::new(Vec::new());
    /// # let mut h = tar::Header::new_gnu();
    /// # h.set_size(3);
    /// # h.set_cksum();
    /// # b.append_data(&mut h, "a.txt", &b"abc"[..])?;
    /// # let layer_tar: Vec<u8> = b.into_inner()?;
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
        let _lock = self.lock_shared()?;
        let mut index = self.index()?;
        put::put_layer(self.put_context(&mut index), input, opts)
    }

    pub(crate) fn put_context<'a>(&self, index: &'a mut Index) -> PutContext<'a> {
        PutContext {
            packs: self.packs(),
            cdc: Cdc::new(self.config.chunk),
            zstd_level: self.config.zstd_level,
            frame_target: self.config.frame_target as usize,
            index,
        }
    }

    /// Imports an OCI image layout (directory or tar) or a `docker save`
    /// archive, detected from its content. Every blob is verified; the
    /// import is all-or-nothing. `name` overrides the names it carries
    /// (only for a single image).
    ///
    /// ```no_run
    /// # let store = layerstore::Store::open("/tmp/store")?;
    /// let report = store.import_image("alpine.tar", Some("alpine:3.20"))?;
    /// println!("{}", report.images[0].digest);
    /// # Ok::<(), layerstore::Error>(())
    /// ```
    pub fn import_image(&self, path: impl AsRef<Path>, name: Option<&str>) -> Result<ImportReport> {
        image::import(self, path.as_ref(), name)
    }

    /// Writes images as an OCI layout directory or a docker archive at
    /// `out` (which must not exist, or be an empty directory). Layers are
    /// written exactly; a manifest whose layers were compressed is
    /// rewritten to describe them uncompressed, and the report says so.
    pub fn export_images(
        &self,
        names: &[String],
        format: ExportFormat,
        out: impl AsRef<Path>,
    ) -> Result<ExportReport> {
        image::export(self, names, format, out.as_ref())
    }

    /// All images, by name.
    pub fn images(&self) -> Result<Vec<ImageSummary>> {
        image::list(self)
    }

    /// One image in detail: manifests, config, layers and sharing.
    pub fn image(&self, name: &str) -> Result<ImageDetails> {
        image::details(self, name)
    }

    /// Gives the image `src` a second name `dst` (moving `dst` if it exists).
    pub fn tag_image(&self, src: &str, dst: &str) -> Result<()> {
        oci::check_image_name(dst)?;
        if self.index()?.tag_image(src, dst)? {
            Ok(())
        } else {
            Err(Error::not_found(format!("image {src:?}")))
        }
    }

    /// Removes an image name. Layers it alone used go (unless put
    /// directly, or used by a container, which keeps its manifest alive);
    /// their chunks come back at the next gc.
    pub fn remove_image(&self, name: &str) -> Result<()> {
        if self.index()?.remove_image(name)? {
            Ok(())
        } else {
            Err(Error::not_found(format!("image {name:?}")))
        }
    }

    /// Writes the root filesystem of image `name` into `dir` (absent or
    /// empty): its layers applied in order with OCI semantics, streamed
    /// from the store. Hostile layers cannot write outside `dir`. On error
    /// `dir` is left empty (or absent, if it was).
    pub fn checkout(&self, name: &str, dir: impl AsRef<Path>) -> Result<CheckoutReport> {
        container::checkout(self, name, dir.as_ref())
    }

    /// Creates a container of image `image` (named `name`, else a random
    /// id): a directory holding the image's root filesystem, for the user
    /// to change. Its manifest stays alive while it exists.
    pub fn create_container(&self, image: &str, name: Option<&str>) -> Result<ContainerInfo> {
        container::create(self, image, name)
    }

    /// All containers, oldest first.
    pub fn containers(&self) -> Result<Vec<ContainerInfo>> {
        container::list(self)
    }

    /// One container (its root filesystem is `path`).
    pub fn container(&self, name: &str) -> Result<ContainerInfo> {
        container::get(self, name)
    }

    /// Paths added, changed and deleted in a container against its image.
    pub fn container_diff(&self, name: &str) -> Result<Vec<Change>> {
        container::diff(self, name)
    }

    /// Removes a container and its directory; its image stays.
    pub fn remove_container(&self, name: &str) -> Result<()> {
        container::remove(self, name)
    }

    /// Writes a container's changes as a new layer (whiteouts for
    /// deletions) through the put path, and records `new_image` as its
    /// image's layers plus that one, with a new config and manifest.
    pub fn commit_container(&self, name: &str, new_image: &str) -> Result<CommitReport> {
        container::commit(self, name, new_image)
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
    /// # let mut b = tar::Builder::new(Vec::new());
    /// # let mut h = tar::Header::new_gnu();
    /// # h.set_size(3);
    /// # h.set_cksum();
    /// # b.append_data(&mut h, "a.txt", &b"abc"[..])?;
    /// # let layer_tar: Vec<u8> = b.into_inner()?;
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
        let _lock = self.lock_shared()?;
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
        let path = path.as_ref();
        let tmp = crate::util::fs::temp_sibling(path);
        let result = (|| {
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .context(|| format!("creating {}", tmp.display()))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let info = self.get_layer_with(digest, &mut out, progress)?;
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
    /// # let mut b = tar::Builder::new(Vec::new());
    /// # let mut h = tar::Header::new_gnu();
    /// # h.set_size(3);
    /// # h.set_cksum();
    /// # b.append_data(&mut h, "a.txt", &b"abc"[..])?;
    /// # let layer_tar: Vec<u8> = b.into_inner()?;
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
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let mut b = tar::Builder::new(Vec::new());
    /// # let mut h = tar::Header::new_gnu();
    /// # h.set_size(3);
    /// # h.set_cksum();
    /// # b.append_data(&mut h, "a.txt", &b"abc"[..])?;
    /// # let layer_tar: Vec<u8> = b.into_inner()?;
    /// let digest = store.put_layer(&layer_tar[..])?.digest;
    /// store.remove_layer(&digest)?;
    /// assert!(store.layers()?.is_empty());
    /// assert!(store.get_layer(&digest, std::io::sink()).unwrap_err().is_not_found());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_layer(&self, digest: &Digest) -> Result<Digest> {
        let mut index = self.index()?;
        let (row, _) = self.resolve(&index, digest)?;
        if !index.remove_layer(&row.digest)? {
            return Err(Error::not_found(format!("layer {digest}")));
        }
        Ok(row.digest)
    }

    /// Figures for the whole store.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let mut b = tar::Builder::new(Vec::new());
    /// # let mut h = tar::Header::new_gnu();
    /// # h.set_size(3);
    /// # h.set_cksum();
    /// # b.append_data(&mut h, "a.txt", &b"abc"[..])?;
    /// # let layer_tar: Vec<u8> = b.into_inner()?;
    /// store.put_layer(&layer_tar[..])?;
    /// let stats = store.stats()?;
    /// assert_eq!((stats.layers, stats.logical_bytes), (1, layer_tar.len() as u64));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Result<StoreStats> {
        let s = self.index()?.stats()?;
        let pack_bytes = self.packs().size()?;
        // Container root filesystems are the user's files, not stored data.
        let stored_bytes = pack_bytes
            + crate::util::fs::dir_size(&self.root, &["packs", "containers", "checkouts"])?;
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
        })
    }
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
