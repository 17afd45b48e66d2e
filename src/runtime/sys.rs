//! The few raw process operations the shim needs that have no safe wrapper: the one place
//! in skiff with `unsafe`.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// What the guardian is told when the container ended normally: nothing left to kill.
const DONE: u8 = b'd';

/// Forks a guardian: a process in its own session (so killing the shim's process group
/// does not reach it) that waits on a pipe. When the shim exits without saying "done" (it
/// was SIGKILLed), the guardian SIGKILLs the container's init, whose pid the runtime wrote
/// to `pid_file`; as the init of its PID namespace, it takes every container process with
/// it. OCI runtimes put the container in a session of its own, so without this a killed
/// shim would leave the container running.
///
/// Must be called while the process is single-threaded.
pub fn spawn_guardian(pid_file: PathBuf) -> std::io::Result<Guardian> {
    let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let shim_pid = rustix::process::getpid();
    // SAFETY: the shim is single-threaded here (it runs before any thread is started), so
    // the child may allocate and run arbitrary code after fork.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            drop(write_end);
            // The shim's exit is watched through a pidfd, not only the pipe: a container
            // init cloned by libcontainer holds a copy of the pipe until it execs.
            let shim = rustix::process::pidfd_open(shim_pid, rustix::process::PidfdFlags::empty())
                .ok()
                // Already gone (we were reparented): the pipe has closed too.
                .filter(|_| rustix::process::getppid() == Some(shim_pid));
            let _ = nix::unistd::setsid();
            let keep: Vec<&OwnedFd> = std::iter::once(&read_end).chain(shim.as_ref()).collect();
            detach_files(&keep);
            guard(
                read_end,
                shim,
                shim_pid.as_raw_nonzero().get() as u32,
                &pid_file,
            );
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(read_end);
            Ok(Guardian(Some(write_end)))
        }
    }
}

/// Forks this process; the child runs `child` and exits with the status it returns (101
/// if it panics), never returning here. `Ok(None)`, and nothing forked, when the process
/// has other threads: a child of one may find a lock (the allocator's) held for ever.
pub fn fork_to(child: impl FnOnce() -> i32) -> std::io::Result<Option<nix::unistd::Pid>> {
    if !single_threaded() {
        return Ok(None);
    }
    // SAFETY: this process has one thread (checked above; nothing starts one meanwhile, as
    // that thread is us), so the child may allocate and run arbitrary code after fork. It
    // leaves through _exit: no destructor or exit handler of the parent's state runs twice.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
            // SAFETY: _exit only ends the process.
            unsafe { libc::_exit(code.unwrap_or(101)) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child)),
    }
}

/// Whether this process has one thread (`Threads:` in /proc/self/status).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.strip_prefix("Threads:").is_some_and(|n| n.trim() == "1"))
    })
}

/// The guardian holds nothing of the shim's: no log, no terminal, no readiness pipe, so
/// that readers of those see their end when the shim's side closes.
fn detach_files(keep: &[&OwnedFd]) {
    use std::os::fd::AsRawFd;
    crate::proc::stdio_to_dev_null();
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.iter().any(|k| k.as_raw_fd() == fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// Waits until the shim says "done" (nothing to do) or exits without saying it (its pidfd
/// turns readable, or the pipe closes), then kills the container's init.
fn guard(read_end: OwnedFd, shim: Option<OwnedFd>, shim_pid: u32, pid_file: &std::path::Path) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut pipe = std::fs::File::from(read_end);
    loop {
        let mut fds = vec![PollFd::new(&pipe, PollFlags::IN)];
        if let Some(p) = &shim {
            fds.push(PollFd::new(p, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
            Ok(_) => {}
        }
        let pipe_ready = !fds[0].revents().is_empty();
        let shim_gone = fds.get(1).is_some_and(|f| !f.revents().is_empty());
        if pipe_ready {
            let mut byte = [0u8; 1];
            match pipe.read(&mut byte) {
                Ok(1) if byte[0] == DONE => return,
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if shim_gone {
            break;
        }
    }
    // The pipe also closes when the shim returns early on an error: what it started is
    // judged once it has exited (and can no longer be taken for one of its own copies).
    if let Some(p) = &shim {
        let mut fds = [PollFd::new(p, PollFlags::IN)];
        while let Err(rustix::io::Errno::INTR) = poll(&mut fds, None) {}
    }
    if let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // An init not started yet has no pid on disk. Scanned until none is left: one being
    // cloned right now appears after the first scan.
    if let Some(dir) = pid_file.parent() {
        for _ in 0..50 {
            let shim = crate::proc::HelperCmd::Shim {
                dir: dir.to_path_buf(),
            };
            // What container::kill_shim_processes does; sys sits below container.
            if crate::proc::kill_helpers(&shim, &[std::process::id(), shim_pid]) == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The shim's end of the guardian's pipe.
pub struct Guardian(Option<OwnedFd>);

impl Guardian {
    /// The container has exited and been reaped: the guardian goes away quietly.
    pub fn dismiss(mut self) {
        if let Some(fd) = self.0.take() {
            let _ = std::fs::File::from(fd).write_all(&[DONE]);
        }
    }
}

/// Runs `f` (which clones the container's processes) with the signal state a freshly exec'd
/// program expects: nothing blocked, SIGPIPE at its default. Children inherit both, and
/// libcontainer clones without resetting them (std's spawn does reset them), so without this
/// the container would start with SIGTERM blocked and SIGPIPE ignored. Restored afterwards.
pub fn with_default_signals<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, signal};
    let mut blocked = SigSet::empty();
    let _ = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        Some(&mut blocked),
    );
    // SAFETY: installs no handler (SIG_DFL), so no code of ours runs in signal context.
    let pipe = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let result = f();
    if let Ok(previous) = pipe {
        // SAFETY: puts back the disposition read above, SIG_IGN as std set it.
        let _ = unsafe { signal(Signal::SIGPIPE, previous) };
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&blocked), None);
    result
}

/// The pid of the skiff process that started this one (from its environment), after putting
/// our own pid there for our children. A helper compares it with getppid() once its
/// parent-death signal is armed: getppid() read only then would already name the reaper if
/// the parent died in between, and the helper would outlive it.
///
/// Must be called first thing in main, while the process is single-threaded.
pub fn take_parent_pid() -> Option<u32> {
    let inherited = std::env::var(crate::proc::PARENT_PID)
        .ok()
        .and_then(|p| p.parse().ok());
    // SAFETY: main calls this before any thread exists, so nothing reads the environment
    // concurrently.
    unsafe { std::env::set_var(crate::proc::PARENT_PID, std::process::id().to_string()) };
    inherited
}

/// A new user namespace with `uid_map` and `gid_map` (`/proc/PID/uid_map` rows), as an fd
/// that keeps it alive: a forked child unshares it and waits while we, host root in the
/// parent namespace, write its maps; then it exits. For idmapped mounts, which name a
/// namespace by fd. Must be called while the process is single-threaded.
pub fn new_user_namespace(uid_map: &str, gid_map: &str) -> std::io::Result<OwnedFd> {
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (done_r, done_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: the caller is single-threaded; the child only makes system calls (unshare,
    // write, read) and leaves with _exit, running no destructors of the parent's state.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let unshared = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER);
            let _ = rustix::io::write(&ready_w, if unshared.is_ok() { b"u" } else { b"e" });
            let mut byte = [0u8; 1];
            let _ = rustix::io::read(&done_r, &mut byte);
            // SAFETY: _exit ends the forked child without running the parent's atexit
            // handlers or flushing its buffers twice.
            unsafe { nix::libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_w);
            drop(done_r);
            let finish = |result: std::io::Result<OwnedFd>| {
                drop(done_w);
                let _ = nix::sys::wait::waitpid(child, None);
                result
            };
            let mut byte = [0u8; 1];
            match rustix::io::read(&ready_r, &mut byte) {
                Ok(1) if byte[0] == b'u' => {}
                Ok(_) => {
                    return finish(Err(std::io::Error::other(
                        "the child could not create a user namespace",
                    )));
                }
                Err(e) => return finish(Err(e.into())),
            }
            let proc = format!("/proc/{child}");
            let result = std::fs::write(format!("{proc}/uid_map"), uid_map)
                .and_then(|()| std::fs::write(format!("{proc}/gid_map"), gid_map))
                .and_then(|()| std::fs::File::open(format!("{proc}/ns/user")))
                .map(OwnedFd::from);
            finish(result)
        }
    }
}

/// A forked child waiting to run its task (see [`fork_until_go`]).
pub struct WaitingChild {
    pid: nix::unistd::Pid,
    go: OwnedFd,
    report: OwnedFd,
}

/// Forks a child that waits until told to go, then runs `task` and ends, reporting the error
/// it returns: for work that must be done from outside a namespace this process is about to
/// enter (its id maps), without executing a helper. Told nothing (this process died first),
/// the child ends. Must be called while the process is single-threaded.
pub fn fork_until_go(task: impl FnOnce() -> Result<(), String>) -> std::io::Result<WaitingChild> {
    let (go_r, go_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (report_r, report_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: the caller is single-threaded, so no lock (malloc's, stdio's) is held by a
    // thread that does not exist in the child: it may allocate and start programs. It leaves
    // with _exit, running no destructors of the parent's state.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            drop(go_w);
            drop(report_r);
            let mut byte = [0u8; 1];
            let told = rustix::io::read(&go_r, &mut byte).is_ok_and(|n| n == 1);
            let code = match told.then(task) {
                Some(Ok(())) => 0,
                Some(Err(why)) => {
                    let _ = rustix::io::write(&report_w, why.as_bytes());
                    1
                }
                None => 1,
            };
            // SAFETY: as above; the pipe's end closes with the process.
            unsafe { nix::libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok(WaitingChild {
            pid: child,
            go: go_w,
            report: report_r,
        }),
    }
}

impl WaitingChild {
    /// Tells the child to go and waits for its end: the error it reported, if any.
    pub fn go(self) -> Result<(), String> {
        let told = rustix::io::write(&self.go, b"g");
        drop(self.go);
        let mut report = String::new();
        let _ = std::fs::File::from(self.report).read_to_string(&mut report);
        let status = nix::sys::wait::waitpid(self.pid, None);
        match (told, status) {
            (_, Ok(nix::sys::wait::WaitStatus::Exited(_, 0))) => Ok(()),
            _ if !report.is_empty() => Err(report),
            (Err(e), _) => Err(format!("telling the child to go: {e}")),
            (Ok(_), status) => Err(format!("the child ended: {status:?}")),
        }
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY` and `MOUNT_ATTR_IDMAP` (linux/mount.h).
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A detached copy of the mount at `path`, its files' owners shown through `userns`'s map
/// (an idmapped mount): on-disk 0 is the namespace's 0. Needs root over the filesystem.
pub fn idmapped_tree(path: &std::path::Path, userns: &OwnedFd) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    detached_tree(
        path,
        &MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        },
    )
}

/// A detached, read-only bind mount of the file (or tree) at `path`: no process can open
/// it for writing through this mount, whatever its privileges over the file. Once the
/// descriptor is closed the mount is in no namespace, so nothing can make it writable again.
/// Needs the right to mount in this mount namespace.
pub fn read_only_tree(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    detached_tree(
        path,
        &MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        },
    )
}

/// `open_tree(path, OPEN_TREE_CLONE)` with `attr` set on the copy.
fn detached_tree(path: &std::path::Path, attr: &MountAttr) -> std::io::Result<OwnedFd> {
    use rustix::mount::{OpenTreeFlags, open_tree};
    use std::os::fd::AsRawFd;
    let tree = open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    // SAFETY: mount_setattr reads `size` bytes of `attr`, a live repr(C) struct of exactly
    // that size, and the empty path string is a valid NUL-terminated C string.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_EMPTY_PATH,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tree)
}

/// Loads a compiled seccomp program (the kernel's `sock_filter` instructions, as bytes in
/// native order) into the calling thread. No-new-privileges must be set, as it is for every
/// container and exec.
pub fn load_seccomp_program(program: &[u8]) -> std::io::Result<()> {
    const INSTRUCTION: usize = std::mem::size_of::<libc::sock_filter>();
    if program.is_empty() || program.len() % INSTRUCTION != 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // Copied into properly aligned instructions: the bytes come from a file.
    let instructions: Vec<libc::sock_filter> = program
        .chunks_exact(INSTRUCTION)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect();
    let len = u16::try_from(instructions.len())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        filter: instructions.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `len` initialised instructions that live until the call
    // returns; the kernel only reads them (it copies the program).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
