//! The embedded runtime: libcontainer, in the shim's own process (single-threaded: it
//! clones without fork handlers).

use super::{Backend, BackendError, ExecProcess, Paths, wait_for};
use crate::runtime::seccomp::bpf;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
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
        if let Some(program) = compiled_filter(id, paths.bundle)? {
            builder = builder.with_executor(Filtered { program });
        }
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

    fn delete(&mut self, id: &str, paths: &Paths) {
        let Some(mut c) = self.container.take() else {
            return;
        };
        // An --rm container's state is deleted where it was set aside; libcontainer skips a
        // state directory that is not there, so a stale path would leave the cgroup behind.
        c.root = paths.state.join(id);
        if let Err(e) = c.delete(true) {
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
        filter_like_the_container(id, paths.bundle)?;
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

/// The container's filter as the shim compiled it (`seccomp::bpf`), when it did: then the
/// spec has none, and the container's init loads this program right before it execs the
/// command (where libcontainer would load its own, compiled anew).
fn compiled_filter(id: &str, bundle: &Path) -> Result<Option<bpf::Program>, BackendError> {
    let path = bundle.join(bpf::IN_BUNDLE);
    if !path.exists() {
        return Ok(None);
    }
    bpf::Program::read(&path)
        .map(Some)
        .map_err(|source| BackendError::Filter {
            id: id.into(),
            source,
        })
}

/// libcontainer's own way to exec the command, after loading the compiled filter. It runs
/// in the container's init, with no-new-privileges set and capabilities already dropped.
#[derive(Clone)]
struct Filtered {
    program: bpf::Program,
}

impl Executor for Filtered {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        super::super::sys::load_seccomp_program(self.program.as_bytes())
            .map_err(|e| ExecutorError::Other(format!("loading the seccomp filter: {e}")))?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// libcontainer 0.7's exec (its tenant) leaves out the container's seccomp filter: the
/// process that asks for the exec loads it itself, with no-new-privileges, so that the
/// tenant and the exec'd program inherit it. The default profile allows what the tenant
/// does (joining namespaces, capset, setgroups, execve).
fn filter_like_the_container(id: &str, bundle: &Path) -> Result<(), BackendError> {
    let no_new_privileges = || {
        rustix::thread::set_no_new_privs(true).map_err(|e| BackendError::NoNewPrivileges {
            id: id.into(),
            source: e.into(),
        })
    };
    if let Some(program) = compiled_filter(id, bundle)? {
        no_new_privileges()?;
        return super::super::sys::load_seccomp_program(program.as_bytes()).map_err(|source| {
            BackendError::LoadFilter {
                id: id.into(),
                source,
            }
        });
    }
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).map_err(|source| {
        BackendError::ExecSpec {
            id: id.into(),
            source,
        }
    })?;
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(());
    };
    no_new_privileges()?;
    libcontainer::seccomp::initialize_seccomp(seccomp).map_err(|source| {
        BackendError::ExecSeccomp {
            id: id.into(),
            source: Box::new(source),
        }
    })?;
    Ok(())
}

/// libcontainer 0.7 hands `SCMP_CMP_MASKED_EQ`'s operands to libseccomp the wrong way round
/// (`valueTwo` as the mask, `value` as the datum; the OCI spec, runc and crun take `value` as
/// the mask): swapped here, a rule such as docker's `clone` namespace-flags check means
/// what it says.
pub(super) fn swap_masked_eq_operands(spec: &mut oci_spec::runtime::Spec) {
    let Some(seccomp) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.seccomp_mut().as_mut())
    else {
        return;
    };
    // The spec's types have no mutable access to a rule's arguments: through JSON.
    let Ok(mut json) = serde_json::to_value(&*seccomp) else {
        return;
    };
    let args = json["syscalls"].as_array_mut().into_iter().flatten();
    for arg in args.flat_map(|rule| rule["args"].as_array_mut().into_iter().flatten()) {
        if arg["op"] == "SCMP_CMP_MASKED_EQ" {
            let mask = arg["value"].take();
            arg["value"] = std::mem::replace(&mut arg["valueTwo"], mask);
            if arg["value"].is_null() {
                arg["value"] = 0.into();
            }
        }
    }
    if let Ok(swapped) = serde_json::from_value(json) {
        *seccomp = swapped;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masked_eq_operands_are_swapped_for_libcontainer() {
        let mut spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                    {"index": 1, "value": 5, "op": "SCMP_CMP_EQ"}
                ]}
            ]}}
        }))
        .unwrap();
        super::swap_masked_eq_operands(&mut spec);
        let json = serde_json::to_value(&spec).unwrap();
        let args = &json["linux"]["seccomp"]["syscalls"][0]["args"];
        assert_eq!(args[0]["value"], 0);
        assert_eq!(args[0]["valueTwo"], 2114060288u64);
        assert_eq!(args[1]["value"], 5, "other operators are left alone");
    }
}
