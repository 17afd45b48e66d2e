//! An external OCI runtime binary (crun, runc or any runtime with their command line), run
//! by the shim in the namespaces it prepared.

use super::{Backend, BackendError, ExecProcess, Paths, wait_for};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub(super) struct External {
    pub(super) path: PathBuf,
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
