//! Processes and files, the few ways skiff does them: whether a process is alive, where a
//! program is, and how a file is replaced atomically. (The typed helper commands and their
//! spawner join these.)

use std::io::Write;
use std::path::{Path, PathBuf};

/// Whether `pid` exists and is not a zombie waiting to be reaped.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

/// A program's path: through `$PATH`, then the system directories (a minimal `$PATH`, as
/// under `runuser` or a CI runner, often lacks the sbin ones).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/bin",
                "/usr/bin",
                "/bin",
                "/usr/local/sbin",
                "/usr/sbin",
                "/sbin",
            ]
            .map(PathBuf::from),
        )
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A detached helper's end of the ready pipe its spawner waits on (`SKIFF_READY_FD`); one
/// byte written to it means "ready", its closing without one "failed". Reopened
/// close-on-exec so that nothing the helper starts inherits it.
pub fn take_ready_pipe() -> Option<std::fs::File> {
    let fd: i32 = std::env::var("SKIFF_READY_FD").ok()?.parse().ok()?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .ok();
    let _ = nix::unistd::close(fd);
    file
}

/// How far an atomic write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers see the old or the new file, never a part; a crash of the machine may lose
    /// the new one (state files rewritten as a container runs).
    Replace,
    /// Also on disk before this returns: file and directory fsynced (the store's records).
    Fsync,
}

/// Replaces `path` with `bytes` through a temporary file beside it and a rename. On error the
/// temporary file is removed and `path` is as it was.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durability == Durability::Fsync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durability == Durability::Fsync {
            std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_and_lookup() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
        assert!(which("sh").is_some());
        assert!(which("no-such-program-skiff").is_none());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        for (body, durability) in [
            (&b"one"[..], Durability::Replace),
            (b"two", Durability::Fsync),
        ] {
            write_atomic(&p, body, durability).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), body);
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let missing = d.path().join("no/such/dir/file");
        assert!(write_atomic(&missing, b"x", Durability::Replace).is_err());
    }
}
