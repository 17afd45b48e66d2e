//! Processes and files, the few ways skiff does them: the internal helper commands (typed,
//! one spawner), whether a process is alive, where a program is, and how a file is replaced
//! atomically.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("making a sealed copy of the skiff binary for the helpers a container can see")]
    Seal(#[source] std::io::Error),
    #[error("locating the skiff binary")]
    Exe(#[source] std::io::Error),
    #[error("starting skiff {helper}")]
    Spawn {
        helper: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("creating {}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating a pipe")]
    Pipe(#[source] std::io::Error),
    /// A detached helper exited without reporting ready; its log says why.
    #[error("{log}")]
    NotReady { log: String },
    /// `status`: the exit status the helper has always given for this (1 or 2).
    #[error("usage: skiff {usage}")]
    Usage { usage: &'static str, status: i32 },
    #[error("skiff {helper}: {what}")]
    BadArgument {
        helper: &'static str,
        what: &'static str,
    },
    #[error("unknown internal command {0}")]
    Unknown(String),
    /// A helper run to its end failed; what it wrote on stderr.
    #[error("{stderr}")]
    Failed {
        helper: &'static str,
        stderr: String,
    },
}

impl ProcError {
    /// The exit status of a helper started with arguments it cannot use.
    pub fn usage_status(&self) -> i32 {
        match self {
            Self::Usage { status, .. } => *status,
            Self::BadArgument { .. } => 2,
            _ => 1,
        }
    }
}

/// Every process skiff starts from its own binary (`skiff __NAME ARGS...`). The argument
/// lists are what `ps` shows and what `kill_shim_processes` recognises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperCmd {
    /// `__shim DIR`: a container's shim.
    Shim { dir: PathBuf },
    /// `__pod DIR`: a pod's infra process.
    Pod { dir: PathBuf },
    /// `__unpack-layer STORE DIFF_ID|-`: a layer on stdin, unpacked inside the user
    /// namespace; `None` ("-"): named by what it hashes to.
    UnpackLayer {
        store: PathBuf,
        diff_id: Option<String>,
    },
    /// `__remove PATH...`: trees whose files may belong to subordinate ids.
    Remove { paths: Vec<PathBuf> },
    /// `__remove-in PID PATH...`: the same, from the user namespace of PID (a pod's infra), so
    /// that no new namespace is mapped for it.
    RemoveIn { pid: u32, paths: Vec<PathBuf> },
    /// `__net-helper PROGRAM ARGS...`: waits for the go on stdin, then becomes PROGRAM.
    NetHelper { program: PathBuf, args: Vec<String> },
    /// `__probe POD_DIR TIMEOUT_MS PORT...`: waits until a port in the pod accepts.
    Probe {
        pod_dir: PathBuf,
        timeout_ms: u64,
        ports: Vec<u16>,
    },
    /// `__exec CONTAINER_DIR`: a process in a running container; exits with its status, 125
    /// when skiff fails. The request (JSON) travels in `SKIFF_EXEC_REQUEST`, not in the
    /// arguments: its environment variables are nobody else's to read in /proc.
    Exec { dir: PathBuf },
}

impl HelperCmd {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Shim { .. } => "__shim",
            Self::Pod { .. } => "__pod",
            Self::UnpackLayer { .. } => "__unpack-layer",
            Self::Remove { .. } => "__remove",
            Self::RemoveIn { .. } => "__remove-in",
            Self::NetHelper { .. } => "__net-helper",
            Self::Probe { .. } => "__probe",
            Self::Exec { .. } => "__exec",
        }
    }

    /// The arguments after the binary's name.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![self.name().into()];
        match self {
            Self::Shim { dir } | Self::Pod { dir } => args.push(dir.into()),
            Self::UnpackLayer { store, diff_id } => {
                args.push(store.into());
                args.push(diff_id.as_deref().unwrap_or("-").into());
            }
            Self::Remove { paths } => args.extend(paths.iter().map(OsString::from)),
            Self::RemoveIn { pid, paths } => {
                args.push(pid.to_string().into());
                args.extend(paths.iter().map(OsString::from));
            }
            Self::NetHelper {
                program,
                args: rest,
            } => {
                args.push(program.into());
                args.extend(rest.iter().map(OsString::from));
            }
            Self::Probe {
                pod_dir,
                timeout_ms,
                ports,
            } => {
                args.push(pod_dir.into());
                args.push(timeout_ms.to_string().into());
                args.extend(ports.iter().map(|p| OsString::from(p.to_string())));
            }
            Self::Exec { dir } => args.push(dir.into()),
        }
        args
    }

    /// The inverse of `to_args`: `args[0]` is the `__NAME`.
    pub fn parse(args: &[String]) -> Result<Self, ProcError> {
        let Some((name, rest)) = args.split_first() else {
            return Err(ProcError::Unknown(String::new()));
        };
        // The helpers that parsed their own arguments exited 2 on bad ones, the others 1.
        let usage = |usage| ProcError::Usage { usage, status: 1 };
        let usage2 = |usage| ProcError::Usage { usage, status: 2 };
        Ok(match (name.as_str(), rest) {
            ("__shim", [dir]) => Self::Shim { dir: dir.into() },
            ("__shim", _) => return Err(usage("__shim CONTAINER_DIR")),
            ("__pod", [dir]) => Self::Pod { dir: dir.into() },
            ("__pod", _) => return Err(usage("__pod POD_DIR")),
            ("__unpack-layer", [store, diff_id]) => Self::UnpackLayer {
                store: store.into(),
                diff_id: (diff_id != "-").then(|| diff_id.clone()),
            },
            ("__unpack-layer", _) => return Err(usage("__unpack-layer STORE DIFF_ID|-")),
            ("__remove", paths) => Self::Remove {
                paths: paths.iter().map(PathBuf::from).collect(),
            },
            ("__remove-in", [pid, paths @ ..]) => Self::RemoveIn {
                pid: pid.parse().map_err(|_| usage2("__remove-in PID PATH..."))?,
                paths: paths.iter().map(PathBuf::from).collect(),
            },
            ("__remove-in", _) => return Err(usage2("__remove-in PID PATH...")),
            ("__net-helper", [program, rest @ ..]) => Self::NetHelper {
                program: program.into(),
                args: rest.to_vec(),
            },
            ("__net-helper", _) => return Err(usage2("__net-helper PROGRAM ARGS...")),
            ("__probe", [dir, timeout, ports @ ..]) => {
                let bad = ProcError::BadArgument {
                    helper: "__probe",
                    what: "bad timeout or port",
                };
                Self::Probe {
                    pod_dir: dir.into(),
                    timeout_ms: timeout.parse().map_err(|_| bad)?,
                    ports: ports
                        .iter()
                        .map(|p| p.parse::<u16>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| ProcError::BadArgument {
                            helper: "__probe",
                            what: "bad timeout or port",
                        })?,
                }
            }
            ("__probe", _) => return Err(usage2("__probe POD_DIR TIMEOUT_MS PORT...")),
            ("__exec", [dir]) => Self::Exec { dir: dir.into() },
            ("__exec", _) => return Err(usage("__exec CONTAINER_DIR")),
            (other, _) => return Err(ProcError::Unknown(other.to_string())),
        })
    }

    /// Whether the helper must outlive the process that started it (no parent-death signal).
    /// A shim is detached only when started so (`skiff run -d`), which it learns from its
    /// environment.
    pub fn runs_detached(&self) -> bool {
        match self {
            Self::Pod { .. } => true,
            Self::Shim { .. } => std::env::var_os(DETACHED).is_some(),
            _ => false,
        }
    }

    /// The helper as a child of this process: it dies with us (its parent-death signal is
    /// armed against the pid we put in `SKIFF_PARENT_PID`). Stdio is the caller's to set;
    /// `tokio::process::Command::from` makes it async.
    pub fn command(&self) -> Result<std::process::Command, ProcError> {
        let program = match self {
            Self::Shim { dir } | Self::Exec { dir } => exposed_program(dir)?,
            _ => PathBuf::from(SELF_EXE),
        };
        Ok(self.command_of(program))
    }

    fn command_of(&self, program: PathBuf) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.args(self.to_args())
            .env(PARENT_PID, std::process::id().to_string())
            .env_remove(DETACHED);
        cmd
    }

    /// `command`, with an exit pipe the helper (a foreground shim) reports its container's
    /// exit status on (`SKIFF_EXIT_FD`); call `ExitPipe::spawned` after spawning.
    pub fn command_reporting_exit(&self) -> Result<(std::process::Command, ExitPipe), ProcError> {
        use std::os::fd::AsRawFd;
        let (read, write) =
            rustix::pipe::pipe().map_err(|e| ProcError::Pipe(std::io::Error::from(e)))?;
        rustix::io::fcntl_setfd(&read, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| ProcError::Pipe(std::io::Error::from(e)))?;
        let mut cmd = self.command()?;
        cmd.env(EXIT_FD, write.as_raw_fd().to_string());
        Ok((
            cmd,
            ExitPipe {
                read: std::fs::File::from(read),
                write: Some(write),
            },
        ))
    }

    /// `command_reporting_exit` for a shim started before its container exists: it waits on
    /// a go pipe (`SKIFF_GO_FD`, see [`ShimPipes::wait_for_go`]) before it reads anything of the
    /// container, so that its own start runs while its spawner reads the image and writes
    /// the plan. `host_root`: whether the container's root will be the host's, which the
    /// plan would tell [`exposed_program`]. Call `spawned` on both pipes after spawning.
    pub fn command_waiting_for_go(
        &self,
        host_root: bool,
    ) -> Result<(std::process::Command, ExitPipe, GoPipe), ProcError> {
        use std::os::fd::AsRawFd;
        let pipe = || {
            let (read, write) =
                rustix::pipe::pipe().map_err(|e| ProcError::Pipe(std::io::Error::from(e)))?;
            Ok::<_, ProcError>((read, write))
        };
        let (exit_read, exit_write) = pipe()?;
        let (go_read, go_write) = pipe()?;
        for ours in [&exit_read, &go_write] {
            rustix::io::fcntl_setfd(ours, rustix::io::FdFlags::CLOEXEC)
                .map_err(|e| ProcError::Pipe(std::io::Error::from(e)))?;
        }
        let mut cmd = self.command_of(exposed_program_as(host_root)?);
        cmd.env(EXIT_FD, exit_write.as_raw_fd().to_string())
            .env(GO_FD, go_read.as_raw_fd().to_string());
        let exit = ExitPipe {
            read: std::fs::File::from(exit_read),
            write: Some(exit_write),
        };
        let go = GoPipe {
            write: Some(std::fs::File::from(go_write)),
            read: Some(go_read),
        };
        Ok((cmd, exit, go))
    }

    /// Whether `command` (made by this type) runs this very binary, not a sealed copy of it:
    /// then a fork of this process runs the same program.
    pub fn runs_own_binary(command: &std::process::Command) -> bool {
        command.get_program() == SELF_EXE
    }

    /// Runs the helper to its end (stdin empty, output captured); `ProcError::Failed` with
    /// its stderr when it fails.
    pub fn run(&self) -> Result<(), ProcError> {
        let out = self
            .command()?
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| ProcError::Spawn {
                helper: self.name(),
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ProcError::Failed {
                helper: self.name(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Starts a helper that outlives us (a detached shim, a pod's infra): its own process
    /// group, output to `log`, no parent-death signal. Returns once it reports ready on the
    /// pipe named by `SKIFF_READY_FD`; `ProcError::NotReady` with its log when it exits
    /// without doing so.
    pub fn spawn_detached(&self, log: &Path) -> Result<(), ProcError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let file = std::fs::File::create(log).map_err(|source| ProcError::Log {
            path: log.to_path_buf(),
            source,
        })?;
        let out = file.try_clone().map_err(|source| ProcError::Log {
            path: log.to_path_buf(),
            source,
        })?;
        let (ready_r, ready_w) =
            rustix::pipe::pipe().map_err(|e| ProcError::Pipe(std::io::Error::from(e)))?;
        rustix::io::fcntl_setfd(&ready_r, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| ProcError::Pipe(std::io::Error::from(e)))?;
        self.command()?
            .env(DETACHED, "1")
            .env(READY_FD, ready_w.as_raw_fd().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(file)
            .process_group(0)
            .spawn()
            .map_err(|source| ProcError::Spawn {
                helper: self.name(),
                source,
            })?;
        drop(ready_w);
        let mut byte = [0u8; 1];
        if std::io::Read::read(&mut std::fs::File::from(ready_r), &mut byte).is_ok_and(|n| n == 1) {
            Ok(())
        } else {
            Err(ProcError::NotReady {
                log: std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            })
        }
    }
}

impl HelperCmd {
    /// The helper a `/proc/PID/cmdline` runs, if it is one of skiff's.
    pub fn from_cmdline(cmdline: &[u8]) -> Option<Self> {
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .skip(1)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // The empty string after the final NUL is not an argument.
        let args = match args.split_last() {
            Some((last, init)) if last.is_empty() => init,
            _ => &args[..],
        };
        Self::parse(args).ok()
    }
}

/// SIGKILLs every process whose command line is `helper`'s, except the pids in `except`;
/// returns how many it killed.
pub fn kill_helpers(helper: &HelperCmd, except: &[u32]) -> usize {
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if except.contains(&pid) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if HelperCmd::from_cmdline(&cmdline).as_ref() != Some(helper) {
            continue;
        }
        // Waited for, so that we return only once it is gone: a helper killed in the middle
        // of writing into a directory must be done before it is removed.
        if nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok()
        {
            killed += 1;
            wait_gone(pid, std::time::Duration::from_secs(5));
        }
    }
    killed
}

/// The pid of the skiff process that started a helper (see `runtime::sys::take_parent_pid`).
pub const PARENT_PID: &str = "SKIFF_PARENT_PID";
const DETACHED: &str = "SKIFF_DETACHED";
const READY_FD: &str = "SKIFF_READY_FD";
/// Names the fd of a foreground shim's exit pipe (see `ExitPipe`).
const EXIT_FD: &str = "SKIFF_EXIT_FD";
/// Names the fd of an early shim's go pipe (see `GoPipe`).
const GO_FD: &str = "SKIFF_GO_FD";

/// The parent's end of a foreground shim's exit pipe: the shim writes its container's exit
/// status there as soon as it is known and recorded, before its own cleanup (unmounting,
/// removing an `--rm` container's files, and the end of its mount namespace, where the
/// kernel waits for RCU grace periods), which then runs off the caller's path.
pub struct ExitPipe {
    read: std::fs::File,
    /// The shim's end, until it is spawned.
    write: Option<std::os::fd::OwnedFd>,
}

impl ExitPipe {
    /// Our copy of the shim's end goes once the shim is spawned: its closing without a
    /// status then means the shim ended without one.
    pub fn spawned(&mut self) {
        self.write = None;
    }

    /// `read` in a tokio runtime, woken by its reactor (no thread blocks on the pipe).
    pub async fn report(self) -> Option<i32> {
        use tokio::io::AsyncReadExt;
        let fd = std::os::fd::OwnedFd::from(self.read);
        let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok()?;
        let mut said = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = pipe.read(&mut byte).await {
            if byte[0] == b'\n' {
                return std::str::from_utf8(&said).ok()?.parse().ok();
            }
            said.push(byte[0]);
        }
        None
    }

    /// Blocking: the status the shim reported, `None` when its end closed without one.
    pub fn read(mut self) -> Option<i32> {
        use std::io::Read;
        let mut said = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = self.read.read(&mut byte) {
            if byte[0] == b'\n' {
                return std::str::from_utf8(&said).ok()?.parse().ok();
            }
            said.push(byte[0]);
        }
        None
    }
}

/// The spawner's end of an early shim's go pipe (see `HelperCmd::command_waiting_for_go`):
/// one byte written means "the plan is there, start"; its closing without one means "give
/// up", and the shim ends without touching anything.
pub struct GoPipe {
    /// Ours; `None` only in a shim forked from us (see [`ShimPipes::forked`]).
    write: Option<std::fs::File>,
    /// The shim's end, until it is spawned.
    read: Option<std::os::fd::OwnedFd>,
}

impl GoPipe {
    pub fn spawned(&mut self) {
        self.read = None;
    }

    /// Tells the shim to start its container.
    pub fn go(self) -> Result<(), ProcError> {
        let mut write = self
            .write
            .ok_or_else(|| ProcError::Pipe(std::io::Error::other("the go pipe was given away")))?;
        write.write_all(b"g").map_err(ProcError::Pipe)
    }
}

/// What a shim talks to its spawner over: the go pipe of a shim started before its
/// container exists, the exit pipe of a foreground one, the ready pipe of a detached one.
pub struct ShimPipes {
    /// `Some(None)`: a go pipe was named that cannot be opened.
    go: Option<Option<std::fs::File>>,
    exit: Option<std::fs::File>,
    ready: Option<std::fs::File>,
}

impl ShimPipes {
    /// The pipes a spawner named in an exec'd shim's environment, reopened close-on-exec.
    pub fn inherited() -> Self {
        Self {
            go: std::env::var_os(GO_FD).map(|_| take_inherited(GO_FD, false)),
            exit: take_exit_pipe(),
            ready: take_ready_pipe(),
        }
    }

    /// In a shim forked from its spawner (see `HelperCmd::command_waiting_for_go`): its ends
    /// of both pipes, close-on-exec, and the spawner's end of the go pipe closed, so that
    /// the spawner's death ends the wait.
    pub fn forked(exit: &mut ExitPipe, go: &mut GoPipe) -> Self {
        let ours = |end: Option<std::os::fd::OwnedFd>| {
            let end = end?;
            rustix::io::fcntl_setfd(&end, rustix::io::FdFlags::CLOEXEC).ok()?;
            Some(std::fs::File::from(end))
        };
        drop(go.write.take());
        Self {
            go: Some(ours(go.read.take())),
            exit: ours(exit.write.take()),
            ready: None,
        }
    }

    /// The wait for the go: none for a shim not started early, else until its spawner says
    /// go (true) or gives up and closes the pipe (false).
    pub fn wait_for_go(&mut self) -> bool {
        let Some(pipe) = self.go.take() else {
            return true;
        };
        let mut byte = [0u8; 1];
        pipe.is_some_and(
            |mut p| matches!(std::io::Read::read(&mut p, &mut byte), Ok(1) if byte[0] == b'g'),
        )
    }

    /// A foreground shim's exit pipe (see `ExitPipe`).
    pub fn take_exit(&mut self) -> Option<std::fs::File> {
        self.exit.take()
    }

    /// A detached shim's ready pipe (see `take_ready_pipe`).
    pub fn take_ready(&mut self) -> Option<std::fs::File> {
        self.ready.take()
    }
}

/// Waits until process `pid` has ended, at most `timeout`, through a pidfd: woken by the exit
/// itself, never by a poll interval. True once it is gone (or if it never was).
pub fn wait_gone(pid: u32, timeout: std::time::Duration) -> bool {
    let Some(target) = rustix::process::Pid::from_raw(pid as i32) else {
        return true;
    };
    let fd = match rustix::process::pidfd_open(target, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return true,
        // No pidfd (a kernel before 5.3): look every 10 ms instead.
        Err(_) => {
            let start = std::time::Instant::now();
            while process_alive(pid) && start.elapsed() < timeout {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            return !process_alive(pid);
        }
    };
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let limit = rustix::event::Timespec::try_from(timeout).unwrap_or(rustix::event::Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    loop {
        match rustix::event::poll(&mut fds, Some(&limit)) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(n) => return n > 0 || !process_alive(pid),
            Err(_) => return !process_alive(pid),
        }
    }
}

/// Whether `pid` exists and will run its own code again: not a zombie, and not killed. A
/// SIGKILLed process looks running for as long as the kernel takes to tear it down (its
/// memory, files, namespaces: milliseconds), and `system cleanup` run right after a CI job's
/// timeout must not take its shim for a live one.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat_says_alive(&stat))
        && std::fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|status| !status_says_killed(&status))
}

/// `/proc/PID/status` of a process a SIGKILL was sent to: `kill` queues it in the process's
/// shared pending set, where it stays until the process is reaped (the thread that takes it
/// clears only its own set, before `do_exit` marks the thread exiting: a window `stat` alone
/// would miss).
fn status_says_killed(status: &str) -> bool {
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    status.lines().any(|line| {
        ["ShdPnd:", "SigPnd:"].iter().any(|key| {
            line.strip_prefix(key)
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & SIGKILL_BIT != 0)
        })
    })
}

/// `/proc/PID/stat` of a process that runs on: its state is not a zombie's (or dead), its flags
/// lack `PF_EXITING` (set when `do_exit` starts) and no SIGKILL is pending (queued by `kill`
/// itself, before the process has run to take it).
fn stat_says_alive(stat: &str) -> bool {
    const PF_EXITING: u64 = 0x4;
    const SIGKILL_PENDING: u64 = 1 << (libc::SIGKILL - 1);
    // The fields after the command's closing parenthesis, from the state (field 3) on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let number = |field: usize| fields.get(field - 3).and_then(|f| f.parse::<u64>().ok());
    !matches!(fields.first(), None | Some(&"Z") | Some(&"X"))
        && number(9).is_none_or(|flags| flags & PF_EXITING == 0)
        && number(31).is_none_or(|pending| pending & SIGKILL_PENDING == 0)
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
    take_inherited_pipe(READY_FD)
}

/// The write end of a pipe our spawner named in `variable`, reopened close-on-exec.
fn take_inherited_pipe(variable: &str) -> Option<std::fs::File> {
    take_inherited(variable, true)
}

/// The end (`write` or read) of a pipe our spawner named in `variable`, reopened
/// close-on-exec.
fn take_inherited(variable: &str, write: bool) -> Option<std::fs::File> {
    let fd: i32 = std::env::var(variable).ok()?.parse().ok()?;
    let file = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open(format!("/proc/self/fd/{fd}"))
        .ok();
    let _ = nix::unistd::close(fd);
    file
}

/// A foreground shim's end of its exit pipe (`SKIFF_EXIT_FD`), close-on-exec from here on.
pub fn take_exit_pipe() -> Option<std::fs::File> {
    take_inherited_pipe(EXIT_FD)
}

/// Reports `code` on a shim's exit pipe; from here on the shim finishes on its own: its
/// parent may be gone (no parent-death signal any more) and nobody reads its output (its
/// standard streams go to /dev/null, so that readers of its pipes see their end now).
pub fn report_exit(mut pipe: std::fs::File, code: i32) {
    use std::io::Write;
    let _ = rustix::process::set_parent_process_death_signal(None);
    let _ = writeln!(pipe, "{code}");
    drop(pipe);
    stdio_to_dev_null();
}

/// This process's standard streams become /dev/null: whoever reads its pipes sees their end.
pub fn stdio_to_dev_null() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
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
    write_atomic_mode(path, bytes, None, durability)
}

/// `write_atomic` with the file's mode set exactly (0600 for credentials) before any byte is
/// written to it.
pub fn write_atomic_mode(
    path: &Path,
    bytes: &[u8],
    mode: Option<u32>,
    durability: Durability,
) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let result = (|| {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        if let Some(m) = mode {
            open.mode(m);
        }
        let mut f = open.open(&tmp)?;
        if let Some(m) = mode {
            // The umask may have taken bits; the mode asked for is the mode.
            f.set_permissions(std::fs::Permissions::from_mode(m))?;
        }
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

/// The skiff binary this process runs from (what helpers and the runner's steps execute).
/// This process's binary, as the kernel holds it (a sealed copy stays one).
pub const SELF_EXE: &str = "/proc/self/exe";

/// The program of a helper that a container can see: the shim (whose clone becomes the
/// container's init, the skiff binary until its exec) and exec (which joins the container's
/// namespaces). A process in the container could reopen its `/proc/PID/exe` and, once no
/// skiff process runs the binary, write it: the CVE-2019-5736 class. Where a container's
/// root could write the binary, these run from a sealed in-memory copy, made once per
/// process; where it could not (owned by another user, or on a read-only mount), from the
/// binary itself, and the copy's cost (the binary's size, in time and memory) is not paid.
/// `container`: the container's directory, whose plan says whose ids it runs as.
pub fn exposed_program(container: &std::path::Path) -> Result<PathBuf, ProcError> {
    exposed_program_as(runs_as_host_root(container))
}

/// `exposed_program` for a container whose root is the host's (`host_root`) or not.
fn exposed_program_as(host_root: bool) -> Result<PathBuf, ProcError> {
    use std::os::fd::AsRawFd;
    static SEALED: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();
    let exe = std::fs::File::open(SELF_EXE).map_err(ProcError::Exe)?;
    if is_sealed(&exe) || !containers_could_write(&exe, host_root) {
        return Ok(PathBuf::from(SELF_EXE));
    }
    let fd = match SEALED.get() {
        Some(fd) => fd,
        None => {
            let sealed = sealed_copy(exe).map_err(ProcError::Seal)?;
            SEALED.get_or_init(|| sealed)
        }
    };
    Ok(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

/// Every seal that makes a memfd's contents final.
fn final_seals() -> rustix::fs::SealFlags {
    use rustix::fs::SealFlags;
    SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE
}

fn is_sealed(file: &std::fs::File) -> bool {
    rustix::fs::fcntl_get_seals(file).is_ok_and(|s| s.contains(final_seals()))
}

/// Whether the container's root is the host's: as root, unless its plan gives it ids of its
/// own (`userns`). An unreadable plan counts as the host's.
fn runs_as_host_root(container: &std::path::Path) -> bool {
    if !rustix::process::geteuid().is_root() {
        return false;
    }
    let plan = std::fs::read(container.join("plan.json")).unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&plan)
        .map_or(true, |p| p.get("userns").is_none_or(|ids| ids.is_null()))
}

/// Whether a container's root could open the binary for writing: host root (`host_root`)
/// can; ids of its own (as root) only a binary the mode opens to others; rootless it is
/// this user, who may write a binary it owns, or one the mode opens to others.
fn containers_could_write(exe: &std::fs::File, host_root: bool) -> bool {
    let read_only = rustix::fs::fstatvfs(exe)
        .is_ok_and(|v| v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
    if read_only {
        return false;
    }
    let Ok(st) = rustix::fs::fstat(exe) else {
        return true;
    };
    let euid = rustix::process::geteuid();
    match (host_root, euid.is_root()) {
        (true, _) => true,
        (false, true) => st.st_mode & 0o002 != 0,
        (false, false) => st.st_uid == euid.as_raw() || st.st_mode & 0o022 != 0,
    }
}

/// A copy of `exe` in memory, sealed: no process can change it, whatever its privileges.
fn sealed_copy(exe: std::fs::File) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{MemfdFlags, fcntl_add_seals, memfd_create};
    let memfd = memfd_create("skiff", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut copy = std::fs::File::from(memfd);
    std::io::copy(&mut &exe, &mut copy)?;
    fcntl_add_seals(&copy, final_seals())?;
    Ok(copy.into())
}

pub fn own_binary() -> Result<PathBuf, ProcError> {
    std::env::current_exe().map_err(ProcError::Exe)
}

/// Completes on SIGINT or SIGTERM, saying which: from the call on they no longer end this
/// process, so that a job's teardown still runs. Inside a tokio runtime only.
pub fn terminated() -> std::io::Result<impl std::future::Future<Output = String>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted (SIGINT)".to_string(),
            _ = term.recv() => "terminated (SIGTERM)".to_string(),
        }
    })
}

/// Every SIGINT and SIGTERM from the call on, in order, said as `terminated` says them: they
/// no longer end this process. Inside a tokio runtime only.
pub fn terminations() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<String>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let why = tokio::select! {
                Some(()) = interrupt.recv() => "interrupted (SIGINT)",
                Some(()) = term.recv() => "terminated (SIGTERM)",
                else => break,
            };
            if tx.send(why.to_string()).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// A helper process tells its parent why it failed: one line on its stderr, which the parent
/// reads into its own error (`ProcError::Failed`). Helpers report this way only.
pub fn tell_parent(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_commands_round_trip() {
        let cmds = [
            HelperCmd::Shim {
                dir: "/s/containers/c".into(),
            },
            HelperCmd::Pod {
                dir: "/s/pods/p".into(),
            },
            HelperCmd::UnpackLayer {
                store: "/s".into(),
                diff_id: Some("sha256:ab".into()),
            },
            HelperCmd::UnpackLayer {
                store: "/s".into(),
                diff_id: None,
            },
            HelperCmd::Remove {
                paths: vec!["/a".into(), "/b".into()],
            },
            HelperCmd::Remove { paths: vec![] },
            HelperCmd::RemoveIn {
                pid: 9,
                paths: vec!["/a".into()],
            },
            HelperCmd::NetHelper {
                program: "/usr/bin/pasta".into(),
                args: vec!["--quiet".into()],
            },
            HelperCmd::Probe {
                pod_dir: "/s/pods/p".into(),
                timeout_ms: 500,
                ports: vec![80, 6379],
            },
            HelperCmd::Exec {
                dir: "/s/containers/c".into(),
            },
        ];
        for cmd in cmds {
            let args: Vec<String> = cmd
                .to_args()
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect();
            assert_eq!(HelperCmd::parse(&args).unwrap(), cmd, "{args:?}");
        }
        // The argv other tools see stays as it was.
        let shim = HelperCmd::Shim { dir: "/d".into() }.to_args();
        assert_eq!(shim, ["__shim", "/d"]);
        let bad: &[(&[&str], i32)] = &[
            (&["__shim"], 1),
            (&["__probe", "/p", "x", "80"], 2),
            (&["__net-helper"], 2),
            (&["__nothing"], 1),
        ];
        for (args, status) in bad {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                HelperCmd::parse(&args).unwrap_err().usage_status(),
                *status,
                "{args:?}"
            );
        }
    }

    #[test]
    fn shims_are_recognised_by_their_command_line() {
        let dir = Path::new("/s/containers/c1");
        let cases: &[(&[u8], bool)] = &[
            (b"/usr/bin/skiff\0__shim\0/s/containers/c1\0", true),
            (b"skiff\0__shim\0/s/containers/c1/\0", true),
            (b"skiff\0__shim\0/s/containers/c1", true),
            (b"skiff\0__shim\0/s/containers/c2\0", false),
            (b"skiff\0__pod\0/s/containers/c1\0", false),
            (b"skiff\0run\0/s/containers/c1\0", false),
            (b"", false),
        ];
        for (cmdline, want) in cases {
            assert_eq!(
                HelperCmd::from_cmdline(cmdline) == Some(HelperCmd::Shim { dir: dir.into() }),
                *want,
                "{}",
                String::from_utf8_lossy(cmdline)
            );
        }
    }

    #[test]
    fn what_stat_says_of_a_process() {
        // Fields 3.. of a real line; flags (field 9) and pending signals (field 31) vary.
        let stat = |state: &str, flags: u64, pending: u64| {
            format!(
                "4242 (a (b) c) {state} 1 4242 4242 0 -1 {flags} 118 0 0 0 0 0 0 0 20 0 1 0 \
                 100 2000000 100 18446744073709551615 1 1 0 0 0 {pending} 0 0 0 0 0 0 17 1 \
                 0 0 0 0 0 0 0 0 0 0 0 0 0"
            )
        };
        let cases = [
            ("running", stat("R", 0x400100, 0), true),
            (
                "sleeping, other signals pending",
                stat("S", 0x400100, 1 << 14),
                true,
            ),
            ("zombie", stat("Z", 0x400100, 0), false),
            ("dead", stat("X", 0x400100, 0), false),
            ("exiting", stat("R", 0x400104, 0), false),
            ("killed, not yet run", stat("S", 0x400100, 1 << 8), false),
            ("unparsable", "4242 (gone".to_string(), false),
        ];
        for (what, line, alive) in cases {
            assert_eq!(stat_says_alive(&line), alive, "{what}: {line}");
        }
        // The pending sets of /proc/PID/status, in hex.
        let status = |private: &str, shared: &str| {
            format!(
                "Name:\tdd\nState:\tR (running)\nSigQ:\t1/94000\nSigPnd:\t{private}\nShdPnd:\t{shared}\nSigBlk:\t0000000000000000\n"
            )
        };
        let cases = [
            (
                "nothing pending",
                status("0000000000000000", "0000000000000000"),
                false,
            ),
            (
                "SIGTERM pending",
                status("0000000000004000", "0000000000004000"),
                false,
            ),
            (
                "killed, taken by a thread",
                status("0000000000000000", "0000000000000100"),
                true,
            ),
            (
                "killed, not yet taken",
                status("0000000000000100", "0000000000000100"),
                true,
            ),
            ("no pending lines", "Name:\tdd\n".to_string(), false),
        ];
        for (what, text, killed) in cases {
            assert_eq!(status_says_killed(&text), killed, "{what}");
        }
    }

    /// A killed process whose teardown takes a while (freeing 256 MiB) is not alive any more,
    /// though its state still reads "R".
    #[test]
    fn a_killed_process_is_not_alive_while_it_is_torn_down() {
        let mut dd = std::process::Command::new("dd")
            .args(["if=/dev/zero", "of=/dev/null", "bs=256M", "count=1000000"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = dd.id();
        let rss_kib = || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        let start = std::time::Instant::now();
        while rss_kib() < 200 * 1024 && start.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(process_alive(pid));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let alive = process_alive(pid);
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let _ = dd.wait();
        assert!(!alive, "killed, still alive: {state}");
    }

    #[test]
    fn liveness_and_lookup() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
        assert!(!process_alive(0));
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
        use std::os::unix::fs::PermissionsExt;
        write_atomic_mode(&p, b"secret", Some(0o600), Durability::Fsync).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let missing = d.path().join("no/such/dir/file");
        assert!(write_atomic(&missing, b"x", Durability::Replace).is_err());
    }
}
