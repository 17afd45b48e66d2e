//! Advisory file locks (flock) between skiff processes.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::path::Path;

/// Released when dropped (or when the process dies, so a kill -9 never leaves it held).
pub struct FileLock {
    _lock: Flock<File>,
}

impl FileLock {
    pub fn exclusive(path: &Path) -> std::io::Result<FileLock> {
        Self::take(path, FlockArg::LockExclusive)
    }
    /// `None` when another process holds it.
    pub fn try_exclusive(path: &Path) -> std::io::Result<Option<FileLock>> {
        match Self::take(path, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(l)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
    pub fn shared(path: &Path) -> std::io::Result<FileLock> {
        Self::take(path, FlockArg::LockShared)
    }
    fn take(path: &Path, arg: FlockArg) -> std::io::Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let lock = Flock::lock(file, arg).map_err(|(_, e)| std::io::Error::from(e))?;
        Ok(FileLock { _lock: lock })
    }
}
