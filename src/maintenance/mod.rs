//! Maintenance: gc (reclaiming what nothing reaches), verify (checking
//! every invariant, quickly or in full) and repair (restoring the index
//! from self-describing packs), as `impl Store`. These are the only
//! operations that take the store lock exclusively: puts, imports and gets
//! wait while they delete or rewrite packs.

mod gc;
mod repair;
mod verify;

pub use gc::{GcOptions, GcReport};
pub use verify::{Problem, VerifyOptions, VerifyReport};
