//! Images: importing OCI image layouts and `docker save` archives, keeping
//! their manifests, indexes and configs verbatim, and exporting them back
//! as layouts or archives that docker, podman, skopeo and umoci accept.
//!
//! Import is all-or-nothing: every blob is checked against its descriptor
//! (digest and size) and every layer's DiffID against the config, layers
//! go through the normal put path (so they deduplicate with everything
//! stored) but into packs the index does not know yet, and one transaction
//! commits layers, documents and names together. On any error the packs
//! written so far are deleted and the index is untouched.

mod build;
mod export;
mod import;
pub(crate) mod oci;
mod query;
mod source;

pub(crate) use build::{ChildImage, child_image};
use export::{export, export_docker_to};
use import::import;
pub(crate) use query::runnable_manifest;
use query::{details, list};

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::{NameChange, name_taken};

/// Indexes may nest at most this deep.
const MAX_INDEX_DEPTH: usize = 8;

/// Output format of [`Store::export_images`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    /// An OCI image layout directory.
    Oci,
    /// A `docker save` / `docker load` tar archive.
    DockerArchive,
}

/// One image an import added or updated.
#[derive(Clone, Debug, Serialize)]
pub struct ImportedImage {
    /// Its name.
    pub name: String,
    /// The manifest (or index) digest it points at.
    pub digest: Digest,
    /// Manifests it covers (one, or one per platform).
    pub manifests: Vec<Digest>,
}

/// What an import did.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    /// `oci` or `docker-archive`.
    pub format: String,
    /// Names added or moved.
    pub images: Vec<ImportedImage>,
    /// Layer blobs read.
    pub layers: u64,
    /// Layers that were not stored before.
    pub new_layers: u64,
    /// Bytes the store's packs grew by.
    pub added_bytes: u64,
    /// Names that pointed at another image before (only with `force`).
    pub moved: Vec<MovedName>,
}

/// A name an import or tag moved from one image to another. The image it
/// left stays in the store until gc (unless other names or containers keep
/// it).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MovedName {
    /// The name.
    pub name: String,
    /// The manifest or index digest it pointed at before.
    pub previous: Digest,
}

/// An image, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    /// Name.
    pub name: String,
    /// Manifest or index digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Platforms (one per manifest).
    pub platforms: Vec<String>,
    /// Layers over all its manifests.
    pub layers: u64,
    /// Uncompressed bytes of those layers.
    pub size: u64,
    /// When the name was set, Unix seconds.
    pub created: i64,
}

/// One layer of an inspected image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageLayer {
    /// DiffID.
    pub diff_id: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Media type in the manifest.
    pub media_type: String,
    /// Blob digest in the manifest.
    pub blob_digest: Digest,
    /// Blob size in the manifest.
    pub blob_size: u64,
    /// How many other image names also use this layer.
    pub shared_with: u64,
}

/// One manifest of an inspected image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageManifestDetails {
    /// Manifest digest.
    pub digest: Digest,
    /// Platform, if known.
    pub platform: Option<String>,
    /// Config digest.
    pub config: Digest,
    /// Layers, base first.
    pub layers: Vec<ImageLayer>,
}

/// An image in detail.
#[derive(Clone, Debug, Serialize)]
pub struct ImageDetails {
    /// Name.
    pub name: String,
    /// Manifest or index digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its manifests.
    pub manifests: Vec<ImageManifestDetails>,
}

/// One image written by an export.
#[derive(Clone, Debug, Serialize)]
pub struct ExportedImage {
    /// Name.
    pub name: String,
    /// Digest as stored.
    pub stored_digest: Digest,
    /// Digest as written: the manifest's or index's in an OCI layout
    /// (differs when layers had to be rewritten); in a docker archive,
    /// which carries no manifest, the manifest whose config and layers were
    /// written.
    pub exported_digest: Digest,
    /// True when what was written no longer carries the stored manifest
    /// (or index) digest: always for a docker archive.
    pub digest_changed: bool,
    /// Why it changed, if it did.
    pub note: Option<String>,
}

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    /// Where.
    pub path: PathBuf,
    /// Format.
    pub format: ExportFormat,
    /// Images.
    pub images: Vec<ExportedImage>,
}

// ---------------------------------------------------------------- sources

impl Store {
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
        import(self, path.as_ref(), name, false)
    }

    /// [`Store::import_image`]; with `force`, names that point at another
    /// image are moved to the imported one (listed in
    /// [`ImportReport::moved`]) instead of refusing the import.
    pub fn import_image_with(
        &self,
        path: impl AsRef<Path>,
        name: Option<&str>,
        force: bool,
    ) -> Result<ImportReport> {
        import(self, path.as_ref(), name, force)
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
        export(self, names, format, out.as_ref())
    }

    /// Writes images as a docker archive to `out` (standard output, a
    /// pipe): the same archive [`Store::export_images`] writes to a file.
    pub fn export_docker_archive_to(
        &self,
        names: &[String],
        out: &mut dyn std::io::Write,
    ) -> Result<ExportReport> {
        export_docker_to(self, names, out)
    }

    /// All images, by name.
    pub fn images(&self) -> Result<Vec<ImageSummary>> {
        list(self)
    }

    /// One image in detail: manifests, config, layers and sharing.
    pub fn image(&self, name: &str) -> Result<ImageDetails> {
        details(self, name)
    }

    /// Gives the image `src` a second name `dst`. Refuses if `dst` names
    /// another image: see [`Store::tag_image_with`].
    pub fn tag_image(&self, src: &str, dst: &str) -> Result<()> {
        self.tag_image_with(src, dst, false).map(|_| ())
    }

    /// Gives the image `src` a second name `dst`; with `force`, a `dst`
    /// that names another image is moved, and the digest it pointed at is
    /// returned. Nothing is deleted: what only the old `dst` kept stays
    /// until gc.
    pub fn tag_image_with(&self, src: &str, dst: &str, force: bool) -> Result<Option<Digest>> {
        oci::check_image_name(dst)?;
        match self.index()?.tag_image(src, dst, force)? {
            NameChange::Named { previous } => Ok(previous),
            NameChange::NoSuchImage => Err(Error::not_found(format!("image {src:?}"))),
            NameChange::Taken(previous) => Err(name_taken(dst, &previous)),
        }
    }

    /// Removes an image name. Layers it alone used go (unless put
    /// directly, or used by a container, which keeps its manifest alive);
    /// their chunks come back at the next gc.
    pub fn remove_image(&self, name: &str) -> Result<()> {
        self.remove_images(&[name.to_string()])
    }

    /// Removes several image names, all or none: a name that does not
    /// exist removes nothing (the error names it). One transaction, however
    /// many names.
    pub fn remove_images(&self, names: &[String]) -> Result<()> {
        match self.index()?.remove_images(names)? {
            None => Ok(()),
            Some(missing) => Err(Error::not_found(format!("image {missing:?}"))),
        }
    }
}
