//! Small filesystem helpers shared by every layer of the crate: durable
//! directory entries, unique temporary names beside a target, random hex
//! and directory sizes. Nothing here knows what a store is.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// fsyncs a directory so a rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("syncing directory {}", dir.display()))
}

/// `n` random bytes as hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to time and pid, still unique enough
        // for file names that are created with create_new.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = blake3::hash(format!("{nanos}-{}", std::process::id()).as_bytes());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed.as_bytes()[i % 32];
        }
    }
    crate::util::hex(&bytes)
}

/// A fresh hidden name beside `path` (`.NAME.<random>.tmp` in the same
/// directory), so that writing there and renaming onto `path` is atomic.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{}.tmp", random_hex(6)))
}

/// Bytes of the files under `dir`, leaving out its entries named in `skip`.
pub(crate) fn dir_size(dir: &Path, skip: &[&str]) -> Result<u64> {
    let mut total = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Absent (not created yet) or removed while we walk: holds nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        if skip.iter().any(|name| entry.file_name() == **name) {
            continue;
        }
        // Other processes create and remove files (the index's WAL and
        // shared-memory files, temporary packs) while we sum.
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading {}", entry.path().display()), e)),
        };
        if meta.is_dir() {
            total += dir_size(&entry.path(), &[])?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// A claim on work in progress (a directory being built): an exclusively
/// `flock`ed file beside it. The lock dies with the process, so another
/// process can tell a live writer from the leftovers of a crashed one.
/// Dropping the claim removes the file.
pub(crate) struct OwnerClaim {
    path: PathBuf,
    _file: File,
}

impl OwnerClaim {
    /// Creates and locks the owner file `path`.
    pub(crate) fn take(path: PathBuf) -> Result<OwnerClaim> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        file.lock()
            .context(|| format!("locking {}", path.display()))?;
        Ok(OwnerClaim { path, _file: file })
    }
}

impl Drop for OwnerClaim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Who owns the work an owner file at `path` claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// No owner file: the work was not claimed (or is finished).
    None,
    /// A live process holds the claim.
    Alive,
    /// The claim's process is gone: what it was building is garbage.
    Dead,
}

/// Checks the owner file at `path` without disturbing a live owner.
pub(crate) fn owner(path: &Path) -> Owner {
    let Ok(file) = File::open(path) else {
        return Owner::None;
    };
    match file.try_lock() {
        Ok(()) => Owner::Dead,
        Err(_) => Owner::Alive,
    }
}

/// The spool files in `dir`, with their sizes.
pub(crate) fn spool_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(".spool-") && name.ends_with(".tmp")
        })
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect()
}

/// A temporary file, removed when dropped: the tar of an image archive
/// that arrived compressed or on a pipe, where import needs to seek, or
/// the compressed blob a put analyses for its exact rebuild.
pub(crate) struct Spool {
    path: PathBuf,
}

impl Spool {
    /// Creates a new, empty hidden file in `dir`, open for writing.
    pub(crate) fn create(dir: &Path) -> Result<(Spool, fs::File)> {
        let path = dir.join(format!(".spool-{}.tmp", random_hex(8)));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        Ok((Spool { path }, file))
    }

    /// Writes everything `input` yields to a new hidden file in `dir`;
    /// `bad_input` turns a read error into the caller's error.
    pub(crate) fn fill(
        dir: &Path,
        input: &mut dyn std::io::Read,
        bad_input: impl Fn(std::io::Error) -> Error,
    ) -> Result<Spool> {
        use std::io::Write as _;
        let path = dir.join(format!(".spool-{}.tmp", random_hex(8)));
        let spool = Spool { path };
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&spool.path)
            .context(|| format!("creating {}", spool.path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(bad_input(e)),
            };
            out.write_all(&buf[..n])
                .context(|| format!("writing {}", spool.path.display()))?;
        }
        out.into_inner()
            .map_err(|e| Error::io(format!("writing {}", spool.path.display()), e.into_error()))?;
        Ok(spool)
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
