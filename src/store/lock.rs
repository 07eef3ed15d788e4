//! The store lock: `flock(2)` on `STORE/lock`, shared by puts, imports and
//! gets, exclusive for gc and repair. A second file, `STORE/lock.gate`,
//! queues new shared lockers behind a waiting exclusive one: gc takes the
//! gate exclusively before it waits for the lock, and a shared locker
//! passes the gate (shared, for a moment) before it takes the lock, so a
//! steady stream of puts cannot starve gc. A process that already holds
//! the lock shared on a store skips the gate for further shared locks (a
//! get inside a checkout), which would otherwise wait for a gc that waits
//! for it.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{IoContext, Result};

/// How a command holds the store lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Puts, imports, gets and commits: any number at once.
    Shared,
    /// gc and repair, which delete and rewrite packs: alone.
    Exclusive,
}

/// Called once when a lock is not free at once, before waiting for it.
pub type LockWaitNotice = fn(&str);

/// The store lock, held until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub(crate) struct StoreLock {
    _lock: File,
    /// Held (exclusively) until the end by exclusive lockers only.
    _gate: Option<File>,
    /// The store whose shared count this guard holds.
    shared: Option<PathBuf>,
}

/// Shared locks this process holds, per store directory.
static SHARED_HELD: Mutex<Vec<(PathBuf, usize)>> = Mutex::new(Vec::new());

fn shared_held(root: &Path) -> bool {
    let held = SHARED_HELD.lock().unwrap_or_else(|p| p.into_inner());
    held.iter().any(|(r, n)| r == root && *n > 0)
}

fn count_shared(root: &Path, delta: isize) {
    let mut held = SHARED_HELD.lock().unwrap_or_else(|p| p.into_inner());
    match held.iter_mut().find(|(r, _)| r == root) {
        Some((_, n)) => *n = n.saturating_add_signed(delta),
        None if delta > 0 => held.push((root.to_path_buf(), delta as usize)),
        None => {}
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if let Some(root) = &self.shared {
            count_shared(root, -1);
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .context(|| format!("opening lock file {}", path.display()))
}

/// Locks `file`, telling `notice` first if that means waiting.
fn take(file: &File, path: &Path, mode: LockMode, notice: Option<LockWaitNotice>) -> Result<()> {
    let tried = match mode {
        LockMode::Shared => file.try_lock_shared(),
        LockMode::Exclusive => file.try_lock(),
    };
    match tried {
        Ok(()) => return Ok(()),
        Err(TryLockError::WouldBlock) => {
            if let Some(notice) = notice {
                notice(match mode {
                    LockMode::Shared => {
                        "waiting for the store lock: gc or repair holds it, or is waiting for it"
                    }
                    LockMode::Exclusive => {
                        "waiting for the store lock: puts, imports or gets are running \
                         (new ones wait behind this command)"
                    }
                });
            }
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).context(|| format!("locking {}", path.display()));
        }
    }
    match mode {
        LockMode::Shared => file.lock_shared(),
        LockMode::Exclusive => file.lock(),
    }
    .context(|| format!("locking {}", path.display()))
}

/// Takes the lock of the store at `root` (see the module documentation).
pub(crate) fn acquire(
    root: &Path,
    mode: LockMode,
    notice: Option<LockWaitNotice>,
) -> Result<StoreLock> {
    let lock_path = root.join("lock");
    let lock = open_lock_file(&lock_path)?;
    // One key per store, however its path was spelled.
    let key = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let root = key.as_path();
    let gate = if mode == LockMode::Shared && shared_held(root) {
        None
    } else {
        let gate_path = root.join("lock.gate");
        let gate = open_lock_file(&gate_path)?;
        take(&gate, &gate_path, mode, notice)?;
        Some(gate)
    };
    take(&lock, &lock_path, mode, notice)?;
    Ok(match mode {
        LockMode::Shared => {
            count_shared(root, 1);
            // Dropping the gate lets the next locker through.
            drop(gate);
            StoreLock {
                _lock: lock,
                _gate: None,
                shared: Some(root.to_path_buf()),
            }
        }
        LockMode::Exclusive => StoreLock {
            _lock: lock,
            _gate: gate,
            shared: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A second shared lock of a process that already holds one passes a
    /// gc waiting at the gate (else: deadlock), and the gc gets the lock
    /// once both are released.
    #[test]
    fn nested_shared_locks_do_not_wait_for_a_waiting_gc() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let first = acquire(&root, LockMode::Shared, None).unwrap();
        let (gc_tx, gc_rx) = mpsc::channel();
        let gc_root = root.clone();
        let gc = std::thread::spawn(move || {
            let lock = acquire(&gc_root, LockMode::Exclusive, None).unwrap();
            gc_tx.send(()).unwrap();
            drop(lock);
        });
        // Let the gc take the gate and wait for the lock.
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            gc_rx.try_recv().is_err(),
            "gc ran while a shared lock was held"
        );
        let (tx, rx) = mpsc::channel();
        let nested_root = root.join(".").join(""); // another spelling
        std::thread::spawn(move || {
            let nested = acquire(&nested_root, LockMode::Shared, None);
            tx.send(nested.is_ok()).unwrap();
            drop(nested);
        });
        // The nested lock is in another thread of this process: it must
        // not queue behind the gc.
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
        drop(first);
        gc_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("gc never got the lock");
        gc.join().unwrap();
    }
}
