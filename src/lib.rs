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

pub mod checkout;
pub mod chunker;
pub mod clock;
pub mod container;
pub mod digest;
pub mod error;
pub mod fault;
pub mod fuzzing;
pub mod gc;
mod get;
pub mod image;
pub mod index;
pub mod input;
mod layertree;
pub mod oci;
pub mod pack;
mod pipe;
mod put;
pub mod recipe;
pub mod split;
mod store;
pub mod tarscan;
pub mod verify;

pub use checkout::CheckoutReport;
pub use chunker::ChunkParams;
pub use container::{Change, ChangeKind, CommitReport, ContainerInfo};
pub use digest::{ChunkId, Digest};
pub use error::{Error, Result};
pub use gc::{GcOptions, GcReport};
pub use image::{ExportFormat, ExportReport, ImageDetails, ImageSummary, ImportReport};
pub use input::Compression;
pub use put::{LayerInfo, PutOptions};
pub use store::{FORMAT_VERSION, GetInfo, LayerSummary, Store, StoreConfig, StoreStats};
pub use verify::{Problem, VerifyOptions, VerifyReport};
