//! Registry upload sessions on disk (here in the core because gc, below
//! the registry, removes stale ones): `STORE/uploads/<id>.data` holds the bytes
//! received so far (fsynced after every request, so the length a client
//! is told survives a crash), `<id>.repo` the repository it belongs to.
//! A session outlives a server restart; gc removes sessions untouched for
//! longer than their maximum age. Ids are 128 random bits in hex, checked
//! before they become file names.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::store::Store;

/// Directory of upload sessions under the store root.
pub const UPLOADS_DIR: &str = "uploads";

/// Sessions untouched for this long are removed by gc.
pub const UPLOAD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A pushed blob no manifest refers to is kept this long (clients push
/// blobs first, then the manifest that uses them).
pub const REGISTRY_BLOB_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The upload sessions of one store.
#[derive(Clone, Debug)]
pub struct Uploads {
    dir: PathBuf,
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Uploads {
    /// The sessions of the store at `root` (the directory is created).
    pub fn open(root: &Path) -> Result<Uploads> {
        let dir = root.join(UPLOADS_DIR);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(Uploads { dir })
    }

    /// Sessions open now.
    pub fn count(&self) -> usize {
        fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".data"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Starts a session for `repo`; returns its id.
    pub fn create(&self, repo: &str) -> Result<String> {
        let id = crate::util::fs::random_hex(16);
        let meta = self.dir.join(format!("{id}.repo"));
        fs::write(&meta, repo).map_err(|e| Error::io(format!("writing {}", meta.display()), e))?;
        let data = self.dir.join(format!("{id}.data"));
        fs::File::create(&data)
            .map_err(|e| Error::io(format!("creating {}", data.display()), e))?;
        Ok(id)
    }

    /// The data file of session `id` when it exists and belongs to `repo`.
    pub fn data(&self, id: &str, repo: &str) -> Option<PathBuf> {
        if !valid_id(id) {
            return None;
        }
        let owner = fs::read_to_string(self.dir.join(format!("{id}.repo"))).ok()?;
        let data = self.dir.join(format!("{id}.data"));
        (owner == repo && data.is_file()).then_some(data)
    }

    /// Ends session `id` (after its blob was stored, or on cancel).
    pub fn remove(&self, id: &str) {
        if valid_id(id) {
            let _ = fs::remove_file(self.dir.join(format!("{id}.data")));
            let _ = fs::remove_file(self.dir.join(format!("{id}.repo")));
        }
    }
}

impl Store {
    /// Removes upload sessions untouched for longer than `max_age` (and
    /// stray files in the uploads directory as old). Returns how many
    /// sessions went.
    pub(crate) fn sweep_uploads(&self, max_age: Duration) -> Result<u64> {
        let dir = self.path().join(UPLOADS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((id, ext)) = name.split_once('.') else {
                continue;
            };
            if !valid_id(id) || !matches!(ext, "data" | "repo") {
                continue;
            }
            // A session's age is its data's: the `.repo` file is as old as
            // the session, its data is touched by every request.
            let data = dir.join(format!("{id}.data"));
            let age_of = |p: &Path| {
                fs::metadata(p)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
            };
            let stale = match age_of(&data) {
                Some(age) => age > max_age,
                None => age_of(&entry.path()).is_some_and(|age| age > max_age),
            };
            if stale && fs::remove_file(entry.path()).is_ok() && ext == "data" {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
