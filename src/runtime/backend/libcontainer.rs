//! The embedded runtime: libcontainer, in the shim's own process (single-threaded: it
//! clones without fork handlers).

use super::{Backend, BackendError, ExecProcess, Paths, wait_for};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

pub(super) struct Libcontainer {
    pub(super) container: Option<libcontainer::container::Container>,
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
        .map_err(|source| BackendError::Libcontainer {
            what: "preparing",
            id: id.into(),
            source: Box::new(source),
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
            move |source: libcontainer::error::LibcontainerError| BackendError::Libcontainer {
                what,
                id: id.into(),
                source: Box::new(source),
            }
        };
        let mut builder = Self::builder(id, paths.state)?;
        if let Some(t) = terminal {
            let dup = || {
                t.try_clone().map_err(|source| BackendError::Terminal {
                    id: id.into(),
                    source,
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
            super::super::sys::with_default_signals(|| builder.build()).map_err(err("creating"))?;
        container.start().map_err(err("starting"))?;
        // libcontainer leaves its caller non-dumpable, which makes our /proc/PID/ns files
        // root-owned: `skiff exec` could no longer join the namespace. The container runs in
        // its own PID namespace and cannot reach us anyway.
        let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable);
        let pid = container
            .pid()
            .ok_or_else(|| BackendError::NoPid { id: id.into() })?;
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
        let pid =
            super::super::sys::with_default_signals(|| builder.build()).map_err(|source| {
                BackendError::Libcontainer {
                    what: "exec in",
                    id: id.into(),
                    source: Box::new(source),
                }
            })?;
        Ok(wait_for(pid))
    }
}
