//! Maintenance: gc (reclaiming what nothing reaches), verify (checking
//! every invariant, quickly or in full) and repair (restoring the index
//! from self-describing packs), as `impl Store`. These are the only
//! operations that take the store lock exclusively: puts, imports and gets
//! wait while they delete or rewrite packs.

mod gc;
mod repair;
mod verify;

use std::collections::HashMap;

use crate::store::index::PackIntent;

pub use gc::{GcOptions, GcReport};
pub use verify::{Problem, VerifyOptions, VerifyReport};

/// What a file in `packs/` that the index does not list is. Only the first
/// two are garbage by proof; gc deletes nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stray {
    /// `*.pack.tmp`: a pack still being written when its writer stopped
    /// (never referenced; gc holds the lock exclusively, so no writer is
    /// running).
    Temporary,
    /// A pack whose writer never committed it, or that gc retired.
    Intended(PackIntent),
    /// A complete pack nothing accounts for: the index was lost, or
    /// restored from an older copy. Its data may be the only copy.
    UnknownPack,
    /// Not a pack file at all.
    Foreign,
}

fn classify(name: &str, intents: &HashMap<String, PackIntent>) -> Stray {
    if let Some(intent) = intents.get(name) {
        Stray::Intended(*intent)
    } else if name.ends_with(".pack.tmp") {
        Stray::Temporary
    } else if name.ends_with(".pack") {
        Stray::UnknownPack
    } else {
        Stray::Foreign
    }
}
