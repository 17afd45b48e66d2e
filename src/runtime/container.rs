//! A container's directory in the store (`containers/<id>/`): its plan, the state its shim
//! keeps, the pid its runtime records, and what reads them.

use serde::{Deserialize, Serialize};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The files of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDir {
    path: PathBuf,
}

impl ContainerDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `<root>/containers/<id>`.
    pub fn in_store(root: &Path, id: &str) -> Self {
        Self::new(root.join("containers").join(id))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container's id: its directory's name.
    pub fn id(&self) -> String {
        self.path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string()
    }

    pub fn plan(&self) -> PathBuf {
        self.path.join("plan.json")
    }
    pub fn state(&self) -> PathBuf {
        self.path.join("state.json")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.path.join("container.pid")
    }
    /// A detached container's output.
    pub fn log(&self) -> PathBuf {
        self.path.join("log")
    }
    pub fn bundle(&self) -> PathBuf {
        self.path.join("bundle")
    }
    /// The OCI runtime's `--root`.
    pub fn runtime_state(&self) -> PathBuf {
        self.path.join("runtime")
    }

    pub fn read_state(&self) -> Option<State> {
        read_state(&self.path)
    }

    pub fn container_pid(&self) -> Option<nix::unistd::Pid> {
        container_pid(&self.path)
    }
}

/// Where a container is in its life, as `state.json` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The shim runs and prepares the container.
    #[serde(rename = "created")]
    Created,
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "exited")]
    Exited,
    /// Read as running or created, but the shim is gone.
    #[serde(rename = "exited (shim died)")]
    ShimDied,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Exited => "exited",
            Self::ShimDied => "exited (shim died)",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `containers/<id>/state.json`, replaced atomically by the shim as the container runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub shim_pid: u32,
    pub exit_code: Option<i32>,
    pub image: String,
    pub command: Vec<String>,
}

/// Best effort: a state that cannot be written leaves the previous one, which `read_state`
/// reconciles with the shim's liveness.
pub fn write_state(dir: &Path, state: &State) {
    if let Ok(bytes) = serde_json::to_vec(state) {
        let _ = crate::proc::write_atomic(
            &dir.join("state.json"),
            &bytes,
            crate::proc::Durability::Replace,
        );
    }
}

/// A container's state, reconciled: "running" with a dead shim means the shim crashed.
pub fn read_state(dir: &Path) -> Option<State> {
    let mut s: State = serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()?;
    if matches!(s.status, Status::Running | Status::Created)
        && !crate::proc::process_alive(s.shim_pid)
    {
        s.status = Status::ShimDied;
    }
    Some(s)
}

/// The container init's pid as the runtime recorded it, if that process still exists.
pub fn container_pid(dir: &Path) -> Option<nix::unistd::Pid> {
    let pid: i32 = std::fs::read_to_string(dir.join("container.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (pid > 1 && Path::new(&format!("/proc/{pid}")).exists())
        .then(|| nix::unistd::Pid::from_raw(pid))
}
/// `/<our cgroup>/skiff-<id>`, the cgroup a root container gets.
pub fn cgroup_path(id: &str) -> std::path::PathBuf {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
        })
        .unwrap_or_else(|| "/".into());
    Path::new(&own).join(format!("skiff-{id}"))
}

/// Kills copies of the shim that never became a container: libcontainer clones the shim
/// to make the container's init, which waits (as `skiff __shim DIR`, before its exec) for
/// the start signal; if the shim dies then, before the init's pid is on disk, nothing else
/// would ever end it. `except`: the shim itself and the caller when it is such a copy too
/// (the guardian).
pub fn kill_unstarted_clones(dir: &Path, except: &[u32]) -> usize {
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
        let mut args = cmdline.split(|b| *b == 0);
        let (_exe, sub, arg) = (args.next(), args.next(), args.next());
        if sub == Some(b"__shim".as_slice())
            && arg.is_some_and(|a| Path::new(std::ffi::OsStr::from_bytes(a)) == dir)
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        {
            killed += 1;
        }
    }
    killed
}
