//! The OCI runtime that turns a bundle into a running container, behind one trait: the
//! embedded libcontainer (default) or an external binary (crun, runc or any runtime with
//! their command line). Both run inside the shim, single-threaded, in the user and mount
//! namespace it prepared, on the same bundle.

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

#[cfg(test)]
pub mod fake;
mod libcontainer;
mod oci_cli;

use self::libcontainer::Libcontainer;
use self::oci_cli::External;
use crate::runtime::seccomp::bpf;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("libcontainer: {what} container {id}")]
    Libcontainer {
        what: &'static str,
        id: String,
        #[source]
        source: Box<::libcontainer::error::LibcontainerError>,
    },
    #[error("libcontainer: preparing the terminal of container {id}")]
    Terminal {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("libcontainer: exec in container {id}: reading its spec")]
    ExecSpec {
        id: String,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("libcontainer: exec in container {id}: loading its seccomp filter")]
    ExecSeccomp {
        id: String,
        #[source]
        source: Box<::libcontainer::seccomp::SeccompError>,
    },
    #[error("libcontainer: container {id}: reading its compiled seccomp filter")]
    Filter {
        id: String,
        #[source]
        source: crate::runtime::seccomp::SeccompError,
    },
    #[error("libcontainer: exec in container {id}: loading its compiled seccomp filter")]
    LoadFilter {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("libcontainer: exec in container {id}: setting no-new-privileges")]
    NoNewPrivileges {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("libcontainer: starting container {id}: no init pid recorded")]
    NoPid { id: String },
    #[error("running OCI runtime {}", runtime.display())]
    Spawn {
        runtime: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("OCI runtime {} could not start container {id} ({status})", runtime.display())]
    RuntimeFailed {
        runtime: PathBuf,
        id: String,
        status: std::process::ExitStatus,
    },
    #[error("OCI runtime {name:?} not found in $PATH (Debian package {name})")]
    NotFound { name: String },
    /// Only from the fake backend of the tests.
    #[cfg(test)]
    #[error("fake backend: {0:?}")]
    Fake(StartErrorKind),
}

/// Why a container could not be started, as far as the exit status goes: the shells' and
/// docker's 127 (command not found), 126 (not executable), else skiff's own 125.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartErrorKind {
    NotFound,
    NotExecutable,
    Other,
}

impl StartErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            Self::NotFound => 127,
            Self::NotExecutable => 126,
            Self::Other => 125,
        }
    }
}

impl BackendError {
    /// libcontainer reports a missing or non-executable command only as text from the
    /// container's init (its validation runs there), so for it the shim's own check before
    /// starting is what tells; libcontainer's failures are `Other`. An OCI runtime binary
    /// that cannot be run is classified by the errno of its spawn.
    pub fn kind(&self) -> StartErrorKind {
        match self {
            Self::Spawn { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => StartErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => StartErrorKind::NotExecutable,
                _ => StartErrorKind::Other,
            },
            #[cfg(test)]
            Self::Fake(kind) => *kind,
            _ => StartErrorKind::Other,
        }
    }
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

    /// Whether a container this runtime starts as root gets a cgroup of its own: crun is told
    /// to make none unless there are limits to enforce; libcontainer and runc always make one.
    pub fn makes_cgroup(&self, limits: bool) -> bool {
        match self {
            Self::Libcontainer => true,
            Self::External { path } => limits || path.file_name().is_none_or(|n| n != "crun"),
        }
    }

    /// Whether this runtime loads a compiled seccomp program from a spec without a filter:
    /// libcontainer from the bundle, crun from its annotation (see `adapt_spec`). runc only
    /// applies the spec's filter. `cache`: the store's seccomp cache.
    pub fn loads_program_alone(&self, cache: &Path) -> bool {
        match self {
            Self::Libcontainer => true,
            Self::External { path } => oci_cli::loads_bpf_annotation(path, cache),
        }
    }

    /// The spec as this runtime must read it to apply what the OCI spec means. A filter
    /// that can be is compiled once (or found compiled in `cache`), so that no start
    /// compiles it again: libseccomp spends some 20 ms on the default profile. For the
    /// embedded runtime the program is written beside the spec, which then has none: the
    /// container's init loads it. An external runtime is given it in crun's annotation
    /// (`run.oci.seccomp_bpf_data`, base64), with the filter kept in the spec, so that a
    /// runtime that does not know the annotation (runc) still applies the filter itself,
    /// unless the program is `known` already (the spec then has no filter: see
    /// `loads_program_alone`). Returns the compiled program, if this call compiled or found
    /// one.
    pub fn adapt_spec(
        &self,
        spec: &mut oci_spec::runtime::Spec,
        bundle: &Path,
        cache: &Path,
        known: Option<&bpf::Program>,
    ) -> Option<bpf::Program> {
        // Only this start's filter may be found there.
        let _ = std::fs::remove_file(bundle.join(bpf::IN_BUNDLE));
        let compiled = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .filter(|f| bpf::loadable(f))
            .map(|filter| bpf::cached(cache, filter));
        let program = match compiled {
            Some(Ok(p)) => Some(p),
            // The runtime compiles it itself, as it would anyway.
            Some(Err(e)) => {
                tracing::debug!("compiling the seccomp filter: {e}");
                None
            }
            None => None,
        };
        match self {
            Self::Libcontainer => {
                let written = program
                    .as_ref()
                    .map(|p| p.write(&bundle.join(bpf::IN_BUNDLE)));
                match written {
                    Some(Ok(())) => {
                        if let Some(linux) = spec.linux_mut() {
                            linux.set_seccomp(None);
                        }
                    }
                    Some(Err(e)) => tracing::debug!("writing the seccomp program: {e}"),
                    None => {}
                }
                libcontainer::swap_masked_eq_operands(spec);
            }
            Self::External { .. } => {
                if let Some(p) = program.as_ref().or(known) {
                    use base64::Engine;
                    let mut annotations = spec.annotations().clone().unwrap_or_default();
                    annotations.insert(
                        bpf::CRUN_ANNOTATION.into(),
                        base64::engine::general_purpose::STANDARD.encode(p.as_bytes()),
                    );
                    spec.set_annotations(Some(annotations));
                }
            }
        }
        program
    }

    /// The runtime for a container whose spec is `spec` (None: the runtime reads it from
    /// the bundle where it needs it).
    pub fn backend(&self, spec: Option<&oci_spec::runtime::Spec>) -> Box<dyn Backend> {
        match self {
            Self::Libcontainer => Box::new(Libcontainer { container: None }),
            Self::External { path } => Box::new(External {
                path: path.clone(),
                limits: spec.map(oci_cli::asks_for_limits),
                pid_file_watch: None,
            }),
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
