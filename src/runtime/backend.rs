//! The OCI runtime that turns a bundle into a running container, behind one trait: the
//! embedded libcontainer (default) or an external binary (crun, runc or any runtime with
//! their command line). Both run inside the shim, single-threaded, in the user and mount
//! namespace it prepared, on the same bundle.

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("libcontainer: {what} container {id}: {error}")]
    Libcontainer {
        what: &'static str,
        id: String,
        error: String,
    },
    #[error("running OCI runtime {runtime}: {error}")]
    Spawn { runtime: PathBuf, error: String },
    #[error("OCI runtime {name:?} not found in $PATH (Debian package {name})")]
    NotFound { name: String },
}

/// Which runtime a container uses; recorded in its plan so that `exec` uses the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RuntimeChoice {
    Libcontainer,
    External { path: PathBuf },
}

impl RuntimeChoice {
    /// `--runtime`: `libcontainer`, a name looked up in $PATH (crun, runc), or a path.
    pub fn parse(name: &str) -> Result<Self, BackendError> {
        if name == "libcontainer" {
            return Ok(Self::Libcontainer);
        }
        if name.contains('/') {
            return Ok(Self::External { path: name.into() });
        }
        crate::proc::which(name)
            .map(|path| Self::External { path })
            .ok_or_else(|| BackendError::NotFound { name: name.into() })
    }

    pub fn name(&self) -> String {
        match self {
            Self::Libcontainer => "libcontainer".into(),
            Self::External { path } => path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        }
    }

    pub fn backend(&self) -> Box<dyn Backend> {
        match self {
            Self::Libcontainer => Box::new(Libcontainer { container: None }),
            Self::External { path } => Box::new(External { path: path.clone() }),
        }
    }
}

/// A process to run in a running container (`skiff exec`).
#[derive(Debug, Clone, Default)]
pub struct ExecProcess {
    pub args: Vec<String>,
    /// Added to (and overriding) the container's own environment.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<(u32, u32)>,
}

/// Where a runtime keeps its state for one container, and what the shim hands it.
pub struct Paths<'a> {
    pub bundle: &'a Path,
    /// The runtime's `--root`.
    pub state: &'a Path,
    /// The container init's pid, as this (the host's) PID namespace sees it.
    pub pid_file: &'a Path,
}

pub trait Backend {
    /// Creates and starts the container. The returned process is a child of the caller:
    /// its exit status is the container's, and signals sent to it reach the container.
    /// `terminal`: with `run -t`, the slave side of the terminal, to become the container's
    /// stdin, stdout and stderr.
    fn start(
        &mut self,
        id: &str,
        paths: &Paths,
        terminal: Option<&OwnedFd>,
    ) -> Result<Pid, BackendError>;
    /// Forgets the container once the process from `start` has been reaped.
    fn delete(&mut self, id: &str, paths: &Paths);
    /// Runs a process in the running container and returns its exit code. Called from a
    /// single-threaded process that has joined the container's user namespace.
    fn exec(&self, id: &str, paths: &Paths, request: &ExecProcess) -> Result<i32, BackendError>;
}

/// The exit code a shell would report for a wait status.
pub fn wait_for(pid: Pid) -> i32 {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 125,
        }
    }
}

struct Libcontainer {
    container: Option<libcontainer::container::Container>,
}

impl Libcontainer {
    fn builder(
        id: &str,
        state: &Path,
    ) -> Result<libcontainer::container::builder::ContainerBuilder, BackendError> {
        libcontainer::container::builder::ContainerBuilder::new(
            id.to_string(),
            libcontainer::syscall::syscall::SyscallType::Linux,
        )
        .with_root_path(state)
        .map_err(|e| BackendError::Libcontainer {
            what: "preparing",
            id: id.into(),
            error: e.to_string(),
        })
    }
}

impl Backend for Libcontainer {
    fn start(
        &mut self,
        id: &str,
        paths: &Paths,
        terminal: Option<&OwnedFd>,
    ) -> Result<Pid, BackendError> {
        let err = |what: &'static str| {
            move |e: libcontainer::error::LibcontainerError| BackendError::Libcontainer {
                what,
                id: id.into(),
                error: e.to_string(),
            }
        };
        let mut builder = Self::builder(id, paths.state)?;
        if let Some(t) = terminal {
            let dup = || {
                t.try_clone().map_err(|e| BackendError::Libcontainer {
                    what: "preparing the terminal of",
                    id: id.into(),
                    error: e.to_string(),
                })
            };
            builder = builder
                .with_stdin(dup()?)
                .with_stdout(dup()?)
                .with_stderr(dup()?);
        }
        let builder = builder
            .with_pid_file(Some(paths.pid_file))
            .map_err(err("preparing"))?
            .validate_id()
            .map_err(err("naming"))?
            .as_init(paths.bundle)
            .with_systemd(false)
            .with_detach(false);
        let mut container =
            super::sys::with_default_signals(|| builder.build()).map_err(err("creating"))?;
        container.start().map_err(err("starting"))?;
        // libcontainer leaves its caller non-dumpable, which makes our /proc/PID/ns files
        // root-owned: `skiff exec` could no longer join the namespace. The container runs in
        // its own PID namespace and cannot reach us anyway.
        let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable);
        let pid = container.pid().ok_or_else(|| BackendError::Libcontainer {
            what: "starting",
            id: id.into(),
            error: "no init pid recorded".into(),
        })?;
        self.container = Some(container);
        Ok(pid)
    }

    fn delete(&mut self, id: &str, _paths: &Paths) {
        if let Some(mut c) = self.container.take()
            && let Err(e) = c.delete(true)
        {
            tracing::debug!("libcontainer delete {id}: {e}");
        }
    }

    fn exec(&self, id: &str, paths: &Paths, request: &ExecProcess) -> Result<i32, BackendError> {
        let env: HashMap<String, String> = request
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect();
        let builder = Self::builder(id, paths.state)?
            .as_tenant()
            .with_container_args(request.args.clone())
            .with_env(env)
            .with_cwd(request.cwd.as_ref())
            .with_user(request.user.map(|u| u.0))
            .with_group(request.user.map(|u| u.1))
            .with_additional_gids(request.user.map(|u| vec![u.1]).unwrap_or_default())
            .with_detach(false);
        let pid = super::sys::with_default_signals(|| builder.build()).map_err(|e| {
            BackendError::Libcontainer {
                what: "exec in",
                id: id.into(),
                error: e.to_string(),
            }
        })?;
        Ok(wait_for(pid))
    }
}

struct External {
    path: PathBuf,
}

impl External {
    fn command(&self, state: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.path);
        cmd.arg("--root").arg(state);
        // crun must not try cgroups it cannot use (rootless, no delegation), unless the
        // spec asks for limits (then skiff found a delegated cgroup). runc skips them by
        // itself and rejects the flag.
        if self.path.file_name().is_some_and(|n| n == "crun") {
            let limits =
                oci_spec::runtime::Spec::load(state.with_file_name("bundle").join("config.json"))
                    .ok()
                    .is_some_and(|c| c.linux().as_ref().is_some_and(|l| l.resources().is_some()));
            cmd.arg(if limits {
                "--cgroup-manager=cgroupfs"
            } else {
                "--cgroup-manager=disabled"
            });
        }
        cmd
    }

    fn spawn_error(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError::Spawn {
            runtime: self.path.clone(),
            error: e.to_string(),
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
        let mut cmd = self.command(paths.state);
        if let Some(t) = terminal {
            let dup = || t.try_clone().map_err(|e| self.spawn_error(e));
            cmd.stdin(dup()?).stdout(dup()?).stderr(dup()?);
        }
        let child = cmd
            .arg("run")
            .arg("--bundle")
            .arg(paths.bundle)
            .arg("--pid-file")
            .arg(paths.pid_file)
            .arg(id)
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        // Started means the runtime has recorded the container (an `exec` right after
        // `run -d` must find it): wait for its pid file, or for the runtime to give up.
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(30) {
            let written =
                std::fs::read_to_string(paths.pid_file).is_ok_and(|p| !p.trim().is_empty());
            if written || !crate::proc::process_alive(child.id()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(Pid::from_raw(child.id() as i32))
    }

    fn delete(&mut self, id: &str, paths: &Paths) {
        let _ = self
            .command(paths.state)
            .args(["delete", "--force", id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }

    fn exec(&self, id: &str, paths: &Paths, request: &ExecProcess) -> Result<i32, BackendError> {
        let mut cmd = self.command(paths.state);
        cmd.arg("exec");
        // The runtimes start from an empty environment once --env is given: the container's
        // own first (PATH and all), then the overrides.
        let base: Vec<String> = oci_spec::runtime::Spec::load(paths.bundle.join("config.json"))
            .ok()
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
        Ok(wait_for(Pid::from_raw(child.id() as i32)))
    }
}
