//! layerstore: a content-addressed, deduplicating store for container image
//! layers.
//!
//! Layers (tar, or tar compressed with gzip or zstd) are split at tar
//! structure and with FastCDC into chunks that are stored once, zstd
//! compressed, in pack files; a SQLite index maps each layer's DiffID to its
//! recipe. Every `get` returns the exact bytes that were put, checked
//! against the BLAKE3 of each chunk and the sha256 DiffID of the layer.
//!
//! Start with [`Store`].

#![warn(missing_docs)]

pub mod container;
mod error;
pub mod image;
mod layer;
mod maintenance;
mod rootfs;
pub(crate) mod store;
#[doc(hidden)]
pub mod testing;
mod util;

pub use container::{Change, ChangeKind, CommitReport, ContainerInfo};
pub use error::{Error, Result};
pub use image::{ExportFormat, ExportReport, ImageDetails, ImageSummary, ImportReport};
pub use layer::input::Compression;
pub use layer::put::{LayerInfo, PutOptions};
pub use layer::{GetInfo, LayerSummary, StoreStats};
pub use maintenance::{GcOptions, GcReport};
pub use maintenance::{Problem, VerifyOptions, VerifyReport};
pub use rootfs::CheckoutReport;
pub use store::chunker::ChunkParams;
pub use store::digest::{ChunkId, Digest};
pub use store::{FORMAT_VERSION, Store, StoreConfig};
pub use util::clock::rfc3339;
