//! layerstore: a content-addressed, deduplicating store for container image
//! layers.
//!
//! Layers (tar, or tar compressed with gzip or zstd) are split at tar
//! structure and with FastCDC into chunks that are stored once, zstd
//! compressed, in pack files; a SQLite index maps each layer's DiffID to its
//! recipe. Every `get` returns the exact bytes that were put, checked
//! against the BLAKE3 of each chunk and the sha256 DiffID of the layer.
//!
//! Start with [`Store`]: every operation is a method on it, each added by
//! the module that owns it (layers, images, root filesystems, containers,
//! maintenance) above the storage core. The source layout and its rules
//! are in `docs/DESIGN.md`; the on-disk format in `docs/FORMAT.md`.

#![warn(missing_docs, unnameable_types)]

mod container;
mod error;
mod image;
mod layer;
mod maintenance;
mod rootfs;
mod serve;
mod store;
#[doc(hidden)]
pub mod testing;
mod util;

pub use container::{Change, ChangeKind, CommitReport, ContainerInfo, Sharing};
pub use error::{Error, Result};
pub use image::{
    ExportFormat, ExportReport, ExportedImage, ImageDetails, ImageLayer, ImageManifestDetails,
    ImageSummary, ImportReport, ImportedImage, MovedName,
};
pub use layer::input::Compression;
pub use layer::put::{LayerInfo, PutOptions};
pub use layer::{BlobMethodStats, GetInfo, LayerSummary, StoreStats};
pub use maintenance::{GcOptions, GcReport, Problem, VerifyOptions, VerifyReport};
pub use rootfs::CheckoutReport;
pub use serve::{BlobPut, FoundBlob, ManifestPut, ServeOptions, valid_digest};
pub use store::chunker::ChunkParams;
pub use store::digest::{ChunkId, Digest};
pub use store::uploads::{REGISTRY_BLOB_GRACE, UPLOAD_MAX_AGE};
pub use store::{FORMAT_VERSION, LockWaitNotice, ProgressNotice, Store, StoreConfig};
pub use util::clock::rfc3339;
