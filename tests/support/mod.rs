//! The one set of helpers the integration test binaries share: each
//! `tests/*.rs` that uses a helper says `mod support;` (and usually
//! `use support::*;`), and compiles its own copy of this module. Each
//! helper is written once, in the submodule that owns its subject:
//!
//! * `rng`: the seeded generator and the generated content (random, text,
//!   partly repetitive bytes).
//! * `bytes`: sha256 digest strings computed independently of layerstore,
//!   and byte comparison that does not dump megabytes into a failure.
//! * `tools`: external programs (GNU tar, gzip, zstd, python3, skopeo,
//!   umoci...): finding them and running them.
//! * `compress`: gzip and zstd through the real tools, and the compressed
//!   forms every tar is tried in.
//! * `tars`: building tars (GNU tar, the tar crate, a generated tree with
//!   every member kind) and a minimal tar walker.
//! * `roundtrip`: put-and-get round trips through the library.
//! * `cli`: the `layerstore` binary: one command builder and thin wrappers.
//! * `snapshot`: what a failed command must leave unchanged in a store.
//! * `images`: image documents, hand-built OCI layouts and docker
//!   archives, skopeo, and image state read through the library.
//! * `trees`: directory trees compared as listings (path, type, mode,
//!   owner, content).
//! * `mounts`: scratch directories that unmount what tests mounted in
//!   them, and the mount points under a directory.
//! * `packs`: the files in STORE/packs and the one pack-frame walker.
//! * `reliability`: the reliability tests' serialisation, soak factor,
//!   layer files on disk, verify reports and independent index reads.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

mod bytes;
mod cli;
mod compress;
mod images;
mod mounts;
mod packs;
mod registry;
mod reliability;
mod rng;
mod roundtrip;
mod snapshot;
mod tars;
mod tools;
mod trees;

// Each binary uses only some of these; the rest is unused there.
#[allow(unused_imports)]
pub use registry::*;
#[allow(unused_imports)]
pub use {
    bytes::*, cli::*, compress::*, images::*, mounts::*, packs::*, reliability::*, rng::*,
    roundtrip::*, snapshot::*, tars::*, tools::*, trees::*,
};
