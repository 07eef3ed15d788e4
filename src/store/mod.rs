//! The storage core: the [`Store`] handle (open, settings check, layout
//! paths, the store lock) and the modules that own the on-disk formats:
//! digests, chunking, tar scanning, recipes, pack frames, pack files and
//! the SQLite index. Nothing here knows about images, root filesystems,
//! containers or maintenance; those add `impl Store` blocks from above.
//!
//! ```text
//! STORE/
//!   index.db          SQLite index (WAL), format version and settings
//!   packs/*.pack      append-only pack files
//!   lock              flock(2): shared for put/get, exclusive for gc and repair
//!   lock.gate         flock(2): queues new shared lockers behind a waiting gc
//!   containers/       containers' root filesystems (see `container`)
//!   checkouts/        shared image checkouts, reflink sources
//! ```
//!
//! A `Store` value is cheap and thread-safe: each operation opens its own
//! index connection, so threads and processes may share one store.

pub(crate) mod blob;
pub(crate) mod chunker;
pub(crate) mod digest;
pub(crate) mod index;
mod lock;
pub(crate) mod pack;
pub(crate) mod packs;
pub(crate) mod recipe;
pub(crate) mod split;
pub(crate) mod tarscan;
pub(crate) mod uploads;

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::store::chunker::ChunkParams;
use crate::store::index::Index;
use crate::store::index::PackIntent;
pub use crate::store::lock::LockWaitNotice;
pub(crate) use crate::store::lock::{LockMode, StoreLock};
use crate::store::packs::{PackWriter, Packs};

/// On-disk format version of a store (index schema, pack and recipe formats).
pub const FORMAT_VERSION: u32 = 1;
/// The store directory's entries (see the layout above).
const INDEX_FILE: &str = "index.db";
const PACKS_DIR: &str = "packs";
const CONTAINERS_DIR: &str = "containers";
const CHECKOUTS_DIR: &str = "checkouts";
const SNAPSHOTS_DIR: &str = "snapshots";
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

impl StoreConfig {
    /// Checks that packs written with these settings can be read back:
    /// valid chunk sizes, a zstd level libzstd accepts, and frames that
    /// stay within what the frame reader accepts.
    pub fn validate(&self) -> Result<()> {
        self.chunk.validate()?;
        let levels = zstd::compression_level_range();
        if !levels.contains(&self.zstd_level) {
            return Err(Error::invalid(
                "store settings",
                format!(
                    "zstd level {} is outside {}..={}",
                    self.zstd_level,
                    levels.start(),
                    levels.end()
                ),
            ));
        }
        // A frame holds frame_target bytes plus up to one more chunk.
        let largest_frame = u64::from(self.frame_target) + u64::from(self.chunk.max_size);
        if self.frame_target == 0 || largest_frame > pack::MAX_FRAME_RAW {
            return Err(Error::invalid(
                "store settings",
                format!(
                    "frame target {} must be at least 1 and, with the largest chunk ({}), \
                     at most {} bytes",
                    self.frame_target,
                    self.chunk.max_size,
                    pack::MAX_FRAME_RAW
                ),
            ));
        }
        Ok(())
    }
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
    lock_wait_notice: Option<LockWaitNotice>,
    progress: Option<ProgressNotice>,
}

/// Called as a long operation advances: its task (`import`, `export`,
/// `checkout`, `verify`, `gc`), bytes done, and bytes in all (0 when not
/// known in advance).
pub type ProgressNotice = fn(task: &str, done: u64, total: u64);

impl Store {
    /// Opens the store at `path`, creating it with default settings if it
    /// does not exist. Refuses stores of another format version.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(path, &StoreConfig::default())
    }

    /// Opens the store at `path`; creates it with `config` if it is new.
    /// An existing store keeps the settings it was created with. A store
    /// whose index is missing or empty while `packs/` holds packs is
    /// refused with [`Error::NeedsRepair`], never re-initialised: see
    /// [`Store::open_for_repair`].
    pub fn open_with(path: impl AsRef<Path>, config: &StoreConfig) -> Result<Store> {
        Self::open_inner(path.as_ref(), config, false)
    }

    /// Opens the existing store at `path`; refuses with [`Error::NoStore`]
    /// when there is none, instead of creating one (for commands that only
    /// read or change a store).
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Store> {
        let root = path.as_ref();
        require_store(root)?;
        Self::open_inner(root, &StoreConfig::default(), false)
    }

    /// Opens the store at `path` to rebuild it: like [`Store::open`], but
    /// when the index is missing or empty and packs exist, starts a new
    /// index (with default settings: the old ones lived only in the lost
    /// index) so that `verify` with `repair` can fill it from the packs.
    pub fn open_for_repair(path: impl AsRef<Path>) -> Result<Store> {
        let root = path.as_ref();
        require_store(root)?;
        Self::open_inner(root, &StoreConfig::default(), true)
    }

    fn open_inner(path: &Path, config: &StoreConfig, rebuild: bool) -> Result<Store> {
        config.validate()?;
        let root = path.to_path_buf();
        if root.exists() && !root.is_dir() {
            return Err(Error::invalid(
                root.display().to_string(),
                "store path exists and is not a directory",
            ));
        }
        if !root.join(INDEX_FILE).exists() && !only_store_files(&root)? {
            return Err(Error::invalid(
                root.display().to_string(),
                "is not a layerstore store and not empty; refusing to create a store in it \
                 (choose a new or empty directory)",
            ));
        }
        fs::create_dir_all(root.join(PACKS_DIR))
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
        let index_path = root.join(INDEX_FILE);
        let index_present = fs::metadata(&index_path).is_ok_and(|m| m.len() > 0);
        if !index_present && !rebuild {
            let pack_count = Packs::new(root.join(PACKS_DIR)).finished()?.len();
            if pack_count > 0 {
                return Err(Error::NeedsRepair {
                    path: root.clone(),
                    reason: format!(
                        "its index (index.db) is missing or empty but packs/ holds {pack_count} \
                         pack file(s); refusing to start a new index over them"
                    ),
                });
            }
        }
        let index = Index::open_or_create(&index_path, &initial)?;
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
            lock_wait_notice: None,
            progress: None,
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
        Index::open(&self.root.join(INDEX_FILE))
    }

    /// Where containers' directories live (`STORE/containers/<id>`).
    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join(CONTAINERS_DIR)
    }

    /// Where shared image checkouts live (`STORE/checkouts/<manifest hex>`).
    pub(crate) fn checkouts_dir(&self) -> PathBuf {
        self.root.join(CHECKOUTS_DIR)
    }

    /// Where layer snapshots live (`STORE/snapshots/<chain id hex>`).
    pub(crate) fn snapshots_dir(&self) -> PathBuf {
        self.root.join(SNAPSHOTS_DIR)
    }

    /// Bytes of the store's own files outside the pack directory (index,
    /// WAL, lock). Container, checkout and snapshot directories hold the user's
    /// files or data derived from the packs, and are not counted.
    pub(crate) fn non_pack_bytes(&self) -> Result<u64> {
        crate::util::fs::dir_size(
            &self.root,
            &[PACKS_DIR, CONTAINERS_DIR, CHECKOUTS_DIR, SNAPSHOTS_DIR],
        )
    }

    /// Starts a new pack file, first recording its name as a `writing`
    /// intent in the index: if the writer never commits the pack (an error
    /// or a crash), gc can prove the file is garbage. The commit that adds
    /// the pack to the index clears the intent.
    pub(crate) fn new_pack(&self) -> Result<PackWriter> {
        let packs = self.packs();
        let name = packs.fresh_name();
        self.index()?
            .record_pack_intent(&name, PackIntent::Writing)?;
        packs.create(name)
    }

    /// The store's pack files.
    pub(crate) fn packs(&self) -> Packs {
        Packs::new(self.root.join(PACKS_DIR))
    }

    /// Takes the store lock (see [`LockMode`]) until the guard is dropped.
    pub(crate) fn lock(&self, mode: LockMode) -> Result<StoreLock> {
        lock::acquire(&self.root, mode, self.lock_wait_notice)
    }

    /// Has `notice` called as long operations (image import and export,
    /// checkout and container create, a full verify, gc) advance, e.g. to
    /// draw a progress bar.
    pub fn with_progress(mut self, notice: ProgressNotice) -> Store {
        self.progress = Some(notice);
        self
    }

    /// Reports progress of `task` (see [`Store::with_progress`]).
    pub(crate) fn progress(&self, task: &str, done: u64, total: u64) {
        if let Some(notice) = self.progress {
            notice(task, done, total);
        }
    }

    /// Has `notice` called (once per lock) when an operation must wait for
    /// the store lock, e.g. to tell a person why nothing happens yet.
    pub fn with_lock_wait_notice(mut self, notice: LockWaitNotice) -> Store {
        self.lock_wait_notice = Some(notice);
        self
    }
}

/// [`Error::NoStore`] unless `root` has an index or pack files.
fn require_store(root: &Path) -> Result<()> {
    let has_index = root.join(INDEX_FILE).is_file();
    let has_packs = Packs::new(root.join(PACKS_DIR))
        .finished()
        .is_ok_and(|files| !files.is_empty());
    if has_index || has_packs {
        Ok(())
    } else {
        Err(Error::NoStore {
            path: root.to_path_buf(),
        })
    }
}

/// True when `root` is absent or holds nothing but a store's own entries:
/// `packs/`, the index files and the lock (another process may be creating
/// the store right now; packs without an index are refused later, with a
/// pointer to repair).
fn only_store_files(root: &Path) -> Result<bool> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(format!("listing {}", root.display()), e)),
    };
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", root.display()))?;
        let name = entry.file_name();
        // The index with SQLite's companions (-wal, -shm, -journal).
        let ok = match name.to_str() {
            Some(PACKS_DIR | "lock" | "lock.gate") => true,
            Some(n) => n.starts_with(INDEX_FILE),
            None => false,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_would_write_unreadable_frames_are_refused() {
        assert!(StoreConfig::default().validate().is_ok());
        let bad = [
            StoreConfig {
                zstd_level: 1000,
                ..StoreConfig::default()
            },
            StoreConfig {
                frame_target: 0,
                ..StoreConfig::default()
            },
            StoreConfig {
                frame_target: 256 << 20,
                ..StoreConfig::default()
            },
        ];
        for config in bad {
            let dir = tempfile::tempdir().unwrap();
            let err = Store::open_with(dir.path().join("s"), &config).unwrap_err();
            assert!(
                matches!(err, Error::InvalidInput { .. }),
                "{config:?}: {err}"
            );
            assert!(!dir.path().join("s").exists(), "{config:?}: store created");
        }
    }
}
