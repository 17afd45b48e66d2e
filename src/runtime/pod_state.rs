//! A pod's directory in the store (`pods/<name>/`): `pod.json`, whether the pod runs, and the
//! lock its members hold while they join.

use super::network::Network;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("no pod {name}")]
    NotFound { name: String },
    #[error("pod {name} is not running (its infra process is gone): remove it with `skiff pod rm`")]
    NotRunning { name: String },
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid pod.json", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "invalid pod name {0:?}: letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    BadName(String),
    #[error("a pod named {name} exists; remove it or pick another name")]
    Exists { name: String },
    #[error("--network {network}: a pod has a network of its own (private, slirp4netns or pasta)")]
    SharedNetwork { network: &'static str },
    #[error("pod {name} did not start: {log}")]
    DidNotStart { name: String, log: String },
    #[error("pod {name} has {count} running container(s): stop them first or use --force")]
    HasRunning { name: String, count: usize },
    #[error("a container of pod {name} ({}) did not stop", dir.display())]
    MemberDidNotStop { name: String, dir: PathBuf },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing {}: {stderr}", path.display())]
    Remove { path: PathBuf, stderr: String },
    #[error(transparent)]
    Helper(#[from] crate::proc::ProcError),
    #[error(transparent)]
    Userns(#[from] super::userns::UsernsError),
}

/// `pods/<name>/pod.json`: written by `pod create`, completed by the infra process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    pub network: Network,
    /// `--add-host` entries given at creation.
    #[serde(default)]
    pub hosts: Vec<(String, String)>,
    #[serde(default)]
    pub dns: Vec<String>,
    /// The infra process, once it holds the namespaces.
    #[serde(default)]
    pub infra_pid: Option<u32>,
    /// A process whose end ends the pod: the infra kills the members and exits (`skiff job`
    /// passes its own pid, so a job killed with SIGKILL leaves no service running).
    #[serde(default)]
    pub owner: Option<u32>,
    /// As root: the ids the pod and its members run as (none: the host's).
    #[serde(default)]
    pub userns: Option<super::userns::Allocation>,
}

pub(super) const ENDED: &str = "ended";
/// A pod being made: `pods/.creating-NAME-PID`, renamed to `pods/NAME` once whole.
pub(super) const CREATING: &str = ".creating-";
pub(super) const MEMBER_LOCK: &str = "member.lock";

/// The pod's owner has ended: its members are being killed, or were.
pub fn has_ended(dir: &Path) -> bool {
    dir.join(ENDED).exists()
}

/// Held (shared) by a member's shim from joining the pod until its container's pid is on
/// disk, so that a pod ending with its owner kills every member, even one starting then.
pub fn lock_for_member(dir: &Path) -> Result<crate::store::FileLock, PodError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let lock = crate::store::FileLock::shared(&dir.join(MEMBER_LOCK)).map_err(|source| {
        PodError::Read {
            path: dir.join(MEMBER_LOCK),
            source,
        }
    })?;
    if has_ended(dir) {
        return Err(PodError::NotRunning { name });
    }
    Ok(lock)
}

pub fn read(dir: &Path) -> Result<PodState, PodError> {
    let path = dir.join("pod.json");
    let bytes = std::fs::read(&path).map_err(|source| PodError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| PodError::Parse { path, source })
}

pub fn write(dir: &Path, state: &PodState) -> std::io::Result<()> {
    crate::proc::write_atomic(
        &dir.join("pod.json"),
        &serde_json::to_vec_pretty(state)?,
        crate::proc::Durability::Replace,
    )
}

/// The running pod in `dir`: its state with a live infra pid.
pub fn running(dir: &Path) -> Result<(PodState, u32), PodError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if !dir.join("pod.json").exists() {
        return Err(PodError::NotFound { name });
    }
    let state = read(dir)?;
    match state.infra_pid.filter(|p| crate::proc::process_alive(*p)) {
        Some(pid) => Ok((state, pid)),
        None => Err(PodError::NotRunning { name }),
    }
}
