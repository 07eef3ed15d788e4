//! A bounded cache of rebuilt compressed blobs, `STORE/cache/blobs/<hex>`,
//! so that a blob pulled again (every image sharing a base layer, every
//! node of a cluster) is read, not rebuilt with preflate or libzstd once
//! more. Only blobs rebuilt completely (their sha256 checked by the
//! rebuild) are kept, under a temporary name until complete; a cached
//! blob's sha256 is checked again as it is served, and a file that no
//! longer matches is dropped. The oldest files go when the cache exceeds
//! its limit. The cache holds nothing the store does not: deleting the
//! directory at any time loses nothing.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::store::digest::Digest;

/// Directory of the cache under the store root.
pub const CACHE_DIR: &str = "cache/blobs";

/// Blobs smaller than this are rebuilt every time (cheap anyway).
const MIN_CACHED: u64 = 1 << 20;

/// The rebuilt-blob cache of one store.
#[derive(Clone, Debug)]
pub struct BlobCache {
    dir: PathBuf,
    limit: u64,
}

/// Copies what a rebuild writes to the client into a cache file too.
pub struct Filling<'a> {
    out: &'a mut dyn Write,
    file: Option<(File, PathBuf)>,
}

impl Write for Filling<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.out.write(data)?;
        if let Some((file, path)) = &mut self.file
            && file.write_all(&data[..n]).is_err()
        {
            // A full disk: serve on, cache nothing.
            let _ = fs::remove_file(&*path);
            self.file = None;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobCache {
    /// The cache of the store at `root`, holding at most `limit` bytes
    /// (0: no cache).
    pub fn new(root: &std::path::Path, limit: u64) -> BlobCache {
        BlobCache {
            dir: root.join(CACHE_DIR),
            limit,
        }
    }

    /// Whether a blob of `size` bytes is worth caching.
    pub fn wants(&self, size: u64) -> bool {
        self.limit > 0 && (MIN_CACHED..=self.limit / 4).contains(&size)
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Serves `digest` from the cache into `out` when it is there.
    /// Ok(false): not cached (nothing written). A cached file whose bytes
    /// no longer hash to `digest` is removed and the copy fails.
    pub fn serve(&self, digest: &Digest, size: u64, out: &mut dyn Write) -> Result<bool> {
        let path = self.path(digest);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(_) => return Ok(false),
        };
        if file.metadata().map(|m| m.len()).ok() != Some(size) {
            let _ = fs::remove_file(&path);
            return Ok(false);
        }
        // Recently used: the eviction goes by modification time.
        let _ = file.set_modified(std::time::SystemTime::now());
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Error::io(format!("sending blob {digest}"), e))?;
        }
        if Digest::from_bytes(hasher.finalize().into()) != *digest {
            let _ = fs::remove_file(&path);
            return Err(Error::corrupt(format!(
                "cached copy of blob {digest} was damaged (removed; the next pull rebuilds it)"
            )));
        }
        Ok(true)
    }

    /// Starts filling the cache with what is written to `out`.
    pub fn fill<'a>(&self, digest: &Digest, out: &'a mut dyn Write) -> Filling<'a> {
        let tmp = self.dir.join(format!(
            "{}.tmp-{}",
            digest.hex(),
            crate::util::fs::random_hex(8)
        ));
        let file = fs::create_dir_all(&self.dir)
            .and_then(|_| File::create(&tmp))
            .ok()
            .map(|f| (f, tmp));
        Filling { out, file }
    }

    /// Keeps a completely rebuilt blob (the rebuild checked its sha256),
    /// or drops the partial file; then trims the cache to its limit.
    pub fn finish(&self, digest: &Digest, filling: Filling<'_>, complete: bool) {
        let Some((file, tmp)) = filling.file else {
            return;
        };
        drop(file);
        if !complete || fs::rename(&tmp, self.path(digest)).is_err() {
            let _ = fs::remove_file(&tmp);
            return;
        }
        self.trim();
    }

    /// Removes the least recently used files until the cache fits.
    fn trim(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                let modified = m.modified().ok()?;
                // Another request's file being filled: not ours to evict,
                // unless a crash left it long ago.
                let stale = modified
                    .elapsed()
                    .is_ok_and(|age| age > std::time::Duration::from_secs(3600));
                let filling = e.file_name().to_string_lossy().contains(".tmp-");
                (!filling || stale).then(|| (modified, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.limit {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}
