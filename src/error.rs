//! The library's one error type.
//!
//! Every fallible call in layerstore returns [`Error`]. Variants say what kind
//! of thing went wrong (not found, corrupt data, invalid input, I/O, ...) and
//! carry enough context (which input, which layer, which chunk or pack, which
//! byte offset) for a person to act on the message alone.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in layerstore.
///
/// Build values with the constructors ([`Error::invalid`],
/// [`Error::corrupt`], [`Error::not_found`], [`Error::io`]); match on the
/// variants. New variants may be added, so matches need a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A layer, alias, chunk or other named object does not exist in the store.
    #[error("{what} not found in the store")]
    NotFound {
        /// What was looked for, e.g. `layer sha256:ab..`.
        what: String,
    },

    /// A digest string is not of the form `sha256:<64 lowercase hex>`.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Input given to the store is malformed (bad compression stream, size
    /// limit exceeded, ...). Nothing was written to the store.
    #[error("{source_name}: {reason}{}", offset.map(|o| format!(" (at byte offset {o})")).unwrap_or_default())]
    InvalidInput {
        /// Name of the input (a file name, `stdin`, ...).
        source_name: String,
        /// Byte offset in the input where the problem was seen, if known.
        offset: Option<u64>,
        /// What is wrong.
        reason: String,
    },

    /// Stored data does not match what the index says it should be.
    #[error("corrupt store data: {0}")]
    Corrupt(String),

    /// The store at `path` was written by an incompatible version.
    #[error(
        "store at {path} has format version {found}, this layerstore supports version {supported}; \
         refusing to open it"
    )]
    UnsupportedFormat {
        /// Store directory.
        path: PathBuf,
        /// Version found on disk.
        found: String,
        /// Version this build understands.
        supported: u32,
    },

    /// layerstore broke one of its own invariants: a bug, not a property
    /// of the store or the input (never reported as corruption, so nobody
    /// is sent to repair a store that is fine).
    #[error("internal error in layerstore (a bug, please report it): {0}")]
    Bug(String),

    /// There is no store at `path` (a command that only reads or changes a
    /// store does not create one).
    #[error("no store at {path} (`layerstore put` or `layerstore image import` creates one)")]
    NoStore {
        /// The directory given.
        path: PathBuf,
    },

    /// The store cannot be used as it is without risking its data: its
    /// index is missing or empty while packs hold data, or packs exist that
    /// the index does not know. `layerstore verify --repair` rebuilds what
    /// the packs describe.
    #[error(
        "store at {path}: {reason}; run `layerstore verify --repair` to rebuild the index \
         from the packs"
    )]
    NeedsRepair {
        /// Store directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An operating-system I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What layerstore was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The SQLite index reported an error.
    #[error("index database error: {0}")]
    Index(#[from] rusqlite::Error),
}

impl Error {
    /// Builds an [`Error::InvalidInput`] for input `source_name` (a file
    /// name, `stdin`, an entry inside an archive) without a byte offset.
    pub fn invalid(source_name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            source_name: source_name.into(),
            offset: None,
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::InvalidInput`] that names the byte offset in the
    /// input where the problem was seen.
    pub fn invalid_at(
        source_name: impl Into<String>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidInput {
            source_name: source_name.into(),
            offset: Some(offset),
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Corrupt`]: stored data disagrees with the index.
    /// Never for a bug in layerstore itself: a panicking worker thread is
    /// re-raised as a panic.
    pub fn corrupt(what: impl Into<String>) -> Self {
        Error::Corrupt(what.into())
    }

    /// Builds an [`Error::Bug`]: an invariant of layerstore's own code broke.
    pub(crate) fn bug(what: impl Into<String>) -> Self {
        Error::Bug(what.into())
    }

    /// Builds an [`Error::NotFound`] for `what` (e.g. `layer sha256:..`).
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// Builds an [`Error::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// Adds context to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

/// Joins a worker thread, re-raising its panic in the caller. A panic is a
/// bug in layerstore, never a property of the store, so it must not turn
/// into an error that tells users their data is corrupt.
pub(crate) fn join_worker<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match handle.join() {
        Ok(value) => value,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bug never tells the user the store is corrupt.
    #[test]
    fn bugs_are_not_corruption() {
        let bug = Error::bug("no pack writer");
        assert!(!matches!(bug, Error::Corrupt(_)));
        let text = bug.to_string();
        assert!(text.contains("bug") && !text.contains("corrupt"), "{text}");
    }
}
