//! An external OCI runtime binary (crun, runc or any runtime with their command line), run
//! by the shim in the namespaces it prepared.

use super::{Backend, BackendError, ExecProcess, Paths, wait_for};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub(super) struct External {
    pub(super) path: PathBuf,
    /// Whether the spec asks for cgroup limits (then skiff found a cgroup crun may use);
    /// None: read from the bundle's spec.
    pub(super) limits: Option<bool>,
    /// What watched for the pid file, kept until the shim is done: closing the last inotify
    /// instance waits for an SRCU grace period (the kernel frees its marks then), some 5 ms
    /// that must not come before the exit status.
    pub(super) pid_file_watch: Option<OwnedFd>,
}

/// Whether the runtime at `path` is a crun that loads a compiled program from the annotation
/// `run.oci.seccomp_bpf_data`: 0.18 and later, the releases that know it, load it also
/// when the spec has no filter. Asked once per binary (`crun --version`); the answer is
/// kept in `cache` under the binary's path, inode, size and change time.
pub(super) fn loads_bpf_annotation(path: &Path, cache: &Path) -> bool {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    if real.file_name().is_none_or(|n| n != "crun") {
        return false;
    }
    let Ok(meta) = std::fs::metadata(&real) else {
        return false;
    };
    let mut key = Sha256::new();
    key.update(b"crun annotation\0");
    key.update(real.as_os_str().as_encoded_bytes());
    let identity = [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.ctime() as u64,
        meta.ctime_nsec() as u64,
    ];
    for n in identity {
        key.update(n.to_le_bytes());
    }
    let mark = cache.join(format!("{}.runtime", hex::encode(key.finalize())));
    if let Ok(answer) = std::fs::read(&mark) {
        return answer == b"yes";
    }
    let output = std::process::Command::new(&real)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Some(output) = output.ok().filter(|o| o.status.success()) else {
        return false;
    };
    let loads =
        crun_version(&String::from_utf8_lossy(&output.stdout)).is_some_and(|v| v >= (0, 18));
    let kept = std::fs::create_dir_all(cache).and_then(|()| {
        let answer: &[u8] = if loads { b"yes" } else { b"no" };
        crate::proc::write_atomic(&mark, answer, crate::proc::Durability::Replace)
    });
    if let Err(e) = kept {
        tracing::debug!("keeping what crun knows: {e}");
    }
    loads
}

/// Major and minor of `crun --version`'s first line, `crun version 1.8.1`.
fn crun_version(output: &str) -> Option<(u32, u32)> {
    let version = output.lines().next()?.strip_prefix("crun version ")?;
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((major, minor))
}

impl External {
    /// A command of the runtime, and the mount its program runs from, to be dropped once the
    /// command is spawned. crun guards against CVE-2019-5736 by executing itself again from
    /// a copy no container can write (a sealed memfd or a detached read-only mount) unless it
    /// already runs from one: some 1.3 ms of every call. skiff gives it that copy at once, a
    /// detached read-only mount, as crun's own. Where this mount namespace allows no mount,
    /// crun makes its copy itself.
    ///
    /// runc is run as is: it trusts nothing but a sealed memfd (1.2 and later), or a read-only
    /// mount together with an environment variable its `runc init` never receives (1.1); and
    /// from skiff's detached mount, 1.1 cannot bind its binary as it does from its own path,
    /// and copies all of it into a memfd instead (4 ms more per start than run as is).
    fn command(&self, state: &Path, limits: bool) -> (std::process::Command, Option<OwnedFd>) {
        use std::os::unix::process::CommandExt;
        // The binary's directory is mounted, so that the process keeps the binary's name.
        // Only crun, a binary that copies itself: a script run through a descriptor could not
        // be read by its interpreter.
        let program = std::fs::canonicalize(&self.path).and_then(|real| {
            let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
                return Err(std::io::ErrorKind::InvalidInput.into());
            };
            if name != "crun" {
                return Err(std::io::Error::other("not crun"));
            }
            let tree = crate::runtime::sys::read_only_tree(dir)?;
            use std::os::fd::AsRawFd;
            let path = Path::new("/proc/self/fd")
                .join(tree.as_raw_fd().to_string())
                .join(name);
            Ok((path, tree))
        });
        let (mut cmd, tree) = match program {
            Ok((path, tree)) => {
                let mut cmd = std::process::Command::new(path);
                cmd.arg0(&self.path);
                (cmd, Some(tree))
            }
            Err(e) => {
                tracing::debug!("a read-only mount of {}: {e}", self.path.display());
                (std::process::Command::new(&self.path), None)
            }
        };
        cmd.arg("--root").arg(state);
        // crun must not try cgroups it cannot use (rootless, no delegation), unless the
        // spec asks for limits (then skiff found a delegated cgroup). runc skips them by
        // itself and rejects the flag.
        if self.path.file_name().is_some_and(|n| n == "crun") {
            cmd.arg(if limits {
                "--cgroup-manager=cgroupfs"
            } else {
                "--cgroup-manager=disabled"
            });
        }
        (cmd, tree)
    }

    fn limits(&self, spec: Option<&oci_spec::runtime::Spec>) -> bool {
        self.limits
            .unwrap_or_else(|| spec.is_some_and(asks_for_limits))
    }

    /// The bundle's spec, where it is needed to know the limits.
    fn spec_for_limits(&self, paths: &Paths) -> Option<oci_spec::runtime::Spec> {
        self.limits
            .is_none()
            .then(|| load_spec(paths.bundle))
            .flatten()
    }

    fn spawn_error(&self, source: std::io::Error) -> BackendError {
        BackendError::Spawn {
            runtime: self.path.clone(),
            source,
        }
    }
}

impl Backend for External {
    fn start(
        &mut self,
        id: &str,
        paths: &Paths,
        terminal: Option<&OwnedFd>,
    ) -> Result<Pid, BackendError> {
        // `run` keeps the runtime in the foreground: it relays signals and exits with the
        // container's status.
        let limits = self.limits(self.spec_for_limits(paths).as_ref());
        let (mut cmd, program) = self.command(paths.state, limits);
        if let Some(t) = terminal {
            let dup = || t.try_clone().map_err(|e| self.spawn_error(e));
            cmd.stdin(dup()?).stdout(dup()?).stderr(dup()?);
        }
        let mut child = cmd
            .arg("run")
            .arg("--bundle")
            .arg(paths.bundle)
            .arg("--pid-file")
            .arg(paths.pid_file)
            .arg(id)
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        release(program);
        // Started means the runtime has recorded the container (an `exec` right after
        // `run -d` must find it): wait for its pid file, or for the runtime to give up.
        self.pid_file_watch =
            wait_for_pid_file(&child, paths.pid_file, std::time::Duration::from_secs(30));
        // Ended without a pid file: the runtime failed before the container existed (it has
        // said why on stderr); its status is not the container's.
        if !pid_file_written(paths.pid_file)
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(BackendError::RuntimeFailed {
                runtime: self.path.clone(),
                id: id.to_string(),
                status,
            });
        }
        Ok(Pid::from_raw(child.id() as i32))
    }

    /// `run` removes the container's state when the container ends (crun and runc keep it
    /// only with `--keep`); a runtime that left its state (it was killed) has it deleted.
    fn delete(&mut self, id: &str, paths: &Paths) {
        if !paths.state.join(id).exists() {
            return;
        }
        let limits = self.limits(self.spec_for_limits(paths).as_ref());
        let (mut cmd, program) = self.command(paths.state, limits);
        let deleting = cmd
            .args(["delete", "--force", id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        release(program);
        if let Ok(mut child) = deleting {
            let _ = child.wait();
        }
    }

    fn exec(&self, id: &str, paths: &Paths, request: &ExecProcess) -> Result<i32, BackendError> {
        let spec = load_spec(paths.bundle);
        let (mut cmd, program) = self.command(paths.state, self.limits(spec.as_ref()));
        cmd.arg("exec");
        // The runtimes start from an empty environment once --env is given: the container's
        // own first (PATH and all), then the overrides.
        let base: Vec<String> = spec
            .and_then(|c| c.process().as_ref().and_then(|p| p.env().clone()))
            .unwrap_or_default();
        for e in base.iter().chain(&request.env) {
            cmd.arg("--env").arg(e);
        }
        if let Some(w) = &request.cwd {
            cmd.arg("--cwd").arg(w);
        }
        if let Some((uid, gid)) = request.user {
            cmd.arg("--user").arg(format!("{uid}:{gid}"));
            // runc keeps the container's supplementary groups otherwise (crun drops them).
            if self.path.file_name().is_some_and(|n| n == "runc") {
                cmd.arg("--additional-gids").arg(gid.to_string());
            }
        }
        cmd.arg(id).args(&request.args);
        let child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        release(program);
        Ok(wait_for(Pid::from_raw(child.id() as i32)))
    }
}

/// Closes the mount a runtime was started from, once it runs from it: the mount then leaves
/// its (anonymous) namespace, for which the kernel waits out an RCU grace period. Closed
/// right after the spawn, that wait overlaps the runtime's run rather than following it.
fn release(program: Option<OwnedFd>) {
    drop(program);
}

pub(super) fn asks_for_limits(spec: &oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .is_some_and(|l| l.resources().is_some())
}

fn load_spec(bundle: &Path) -> Option<oci_spec::runtime::Spec> {
    oci_spec::runtime::Spec::load(bundle.join("config.json")).ok()
}

fn pid_file_written(pid_file: &Path) -> bool {
    std::fs::read_to_string(pid_file).is_ok_and(|p| !p.trim().is_empty())
}

/// Waits until `runtime` has written the container's pid file, or has ended, at most
/// `timeout`: woken by the file's writing (inotify) or the runtime's end (its pidfd), never
/// by a poll interval. Returns the inotify instance, for the caller to close when a wait
/// does not matter.
fn wait_for_pid_file(
    runtime: &std::process::Child,
    pid_file: &std::path::Path,
    timeout: std::time::Duration,
) -> Option<OwnedFd> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::fs::inotify;
    let written = || pid_file_written(pid_file);
    let dir = pid_file.parent().unwrap_or(std::path::Path::new("."));
    let changes = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .and_then(|fd| {
            let watched = inotify::WatchFlags::CLOSE_WRITE | inotify::WatchFlags::MOVED_TO;
            inotify::add_watch(&fd, dir, watched).map(|_| fd)
        });
    let ended = rustix::process::Pid::from_child(runtime);
    let ended = rustix::process::pidfd_open(ended, rustix::process::PidfdFlags::empty());
    let (Ok(changes), Ok(ended)) = (changes, ended) else {
        // Only kernels older than skiff needs (pidfds came with 5.3): the caller waits for
        // the runtime's end instead.
        return None;
    };
    let deadline = std::time::Instant::now() + timeout;
    while !written() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(left) = Timespec::try_from(left) else {
            break;
        };
        if left == Timespec::default() {
            break;
        }
        let mut fds = [
            PollFd::new(&changes, PollFlags::IN),
            PollFd::new(&ended, PollFlags::IN),
        ];
        match poll(&mut fds, Some(&left)) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
            Ok(_) if !fds[1].revents().is_empty() => break,
            Ok(_) => {}
        }
        // The events only wake us: the file is read again.
        let mut events = [0u8; 1024];
        while rustix::io::read(&changes, &mut events).is_ok_and(|n| n > 0) {}
    }
    Some(changes)
}

#[cfg(test)]
mod tests {

    /// Whether crun loads the annotation alone is asked once per binary, then read back.
    #[test]
    fn what_crun_knows_is_asked_once() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let cases = [
            ("old/crun", "echo 'crun version 0.17'", false, true),
            ("new/crun", "echo 'crun version 1.8.1'", true, true),
            ("other/runc", "echo 'crun version 1.8.1'", false, false),
            ("broken/crun", "exit 1", false, false),
        ];
        for (name, body, loads, kept) in cases {
            let path = tmp.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            let marks = || std::fs::read_dir(&cache).map_or(0, |d| d.count());
            let before = marks();
            assert_eq!(loads_bpf_annotation(&path, &cache), loads, "{name}");
            assert_eq!(marks(), before + usize::from(kept), "{name}");
        }
        // The answer kept is the answer given: the binary is not run again.
        for mark in std::fs::read_dir(&cache).unwrap().flatten() {
            std::fs::write(mark.path(), "yes").unwrap();
        }
        assert!(loads_bpf_annotation(&tmp.path().join("old/crun"), &cache));
    }

    #[test]
    fn crun_versions() {
        let cases = [
            ("crun version 1.8.1\ncommit: f8a096b\n", Some((1, 8))),
            ("crun version 0.18\n", Some((0, 18))),
            ("crun version 0.17+dfsg\n", Some((0, 17))),
            ("crun version 1.21.0.0.52-b8e3\n", Some((1, 21))),
            ("runc version 1.1.5\n", None),
            ("crun version one.two\n", None),
            ("", None),
        ];
        for (output, want) in cases {
            assert_eq!(super::crun_version(output), want, "{output:?}");
        }
    }
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The watch on the pid file outlives the start: closing it would wait for the kernel.
    #[test]
    fn a_started_runtime_s_pid_file_watch_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = tmp.path().join("runtime");
        std::fs::write(
            &runtime,
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --pid-file ] && echo $$ > \"$2\"; shift; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (bundle, state) = (tmp.path().join("bundle"), tmp.path().join("runtime-state"));
        let pid_file = tmp.path().join("container.pid");
        let mut backend = External {
            path: runtime,
            limits: Some(false),
            pid_file_watch: None,
        };
        let paths = Paths {
            bundle: &bundle,
            state: &state,
            pid_file: &pid_file,
        };
        let pid = backend.start("c", &paths, None).unwrap();
        assert_eq!(wait_for(pid), 0);
        assert!(
            std::fs::read_to_string(&pid_file)
                .unwrap()
                .trim()
                .parse::<i32>()
                .is_ok()
        );
        assert!(backend.pid_file_watch.is_some());
    }
}
