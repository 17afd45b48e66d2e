//! Containers: their directory in the store (`containers/<id>/`: the plan, the state the
//! shim keeps, the pid the runtime records) and what `skiff run`, `ps`, `kill`, `stop` and
//! `rm` do with them.

use super::backend::RuntimeChoice;
use super::network::Network;
use super::plan::{Limits, PlanError, RunPlan, Volume};
use super::pod_state::PodError;
use super::seccomp::{SeccompError, SeccompPolicy};
use super::userns::{self, UsernsError, UsernsMode};
use crate::image::ResolvedImage;
use crate::proc::{HelperCmd, ProcError};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no container {0}")]
    NotFound(String),
    #[error("{0} matches several containers")]
    Ambiguous(String),
    #[error("{0} is not running")]
    NotRunning(String),
    #[error("{0} is starting: wait for it or use --force")]
    Starting(String),
    #[error("{0} is running: stop it first or use --force")]
    Running(String),
    #[error("invalid signal {0:?}: a name (TERM, SIGTERM) or a number")]
    BadSignal(String),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("{0} did not stop")]
    DidNotStop(String),
    #[error("a container named {0} exists; remove it or pick another --name")]
    Exists(String),
    #[error(
        "invalid container name {0:?}: letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    BadName(String),
    #[error("-v {}: no such file or directory", .0.display())]
    NoVolumeSource(PathBuf),
    #[error("{what}")]
    Signal {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("container {id} did not start: {log}")]
    DidNotStart { id: String, log: String },
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
    Plan(#[from] PlanError),
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    Userns(#[from] UsernsError),
    #[error(transparent)]
    Helper(#[from] ProcError),
}

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
    /// The OCI bundle, seen from the shim's mount namespace (see [`transient`]).
    pub fn bundle(&self) -> PathBuf {
        transient(&self.path).join("bundle")
    }
    /// The OCI runtime's `--root`, seen from the shim's mount namespace.
    pub fn runtime_state(&self) -> PathBuf {
        transient(&self.path).join("runtime")
    }

    pub fn read_state(&self) -> Option<State> {
        read_state(&self.path)
    }

    pub fn container_pid(&self) -> Option<nix::unistd::Pid> {
        container_pid(&self.path)
    }
}

/// Where a container's transient files live: its bundle, the OCI runtime's state, its
/// hostname, hosts and resolv.conf, the mount point of its root and of idmapped layers. The
/// shim mounts a tmpfs here in its own mount namespace, so none of them is written to the
/// store's disk, and they end with the shim; from outside, the directory is empty (`exec`
/// joins the shim's mount namespace first). What must outlive the shim (plan, state, pid
/// file, log) and the overlay's upper and work directories stay on disk beside it.
pub fn transient(dir: &Path) -> PathBuf {
    dir.join("run")
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
            &ContainerDir::new(dir).state(),
            &bytes,
            crate::proc::Durability::Replace,
        );
    }
}

/// A container's state, reconciled: "running" with a dead shim means the shim crashed.
pub fn read_state(dir: &Path) -> Option<State> {
    let path = ContainerDir::new(dir).state();
    let mut s: State = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if matches!(s.status, Status::Running | Status::Created)
        && !crate::proc::process_alive(s.shim_pid)
    {
        s.status = Status::ShimDied;
    }
    Some(s)
}

/// The container init's pid as the runtime recorded it, if that process still exists.
pub fn container_pid(dir: &Path) -> Option<nix::unistd::Pid> {
    let pid: i32 = std::fs::read_to_string(ContainerDir::new(dir).pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (pid > 1 && Path::new(&format!("/proc/{pid}")).exists())
        .then(|| nix::unistd::Pid::from_raw(pid))
}
/// `/<our cgroup>/skiff-<id>`, the cgroup a root container gets.
pub fn cgroup_path(id: &str) -> std::path::PathBuf {
    own_cgroup().join(format!("skiff-{id}"))
}

/// This process's cgroup on the v2 hierarchy, `/` where it has none.
fn own_cgroup() -> PathBuf {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().into()))
        })
        .unwrap_or_else(|| "/".into())
}

/// Starts, as root and in a thread of its own, the wait that the runtime's move of the
/// container's init into its cgroup would otherwise make on the path to the container's
/// start: the kernel takes its lock of every cgroup migration (`cgroup_threadgroup_rwsem`)
/// for writing only after an RCU grace period, 8–15 ms on an idle machine, unless another
/// writer passed it a moment ago. The move made here, of this process into the cgroup it is
/// already in, changes nothing; it lets that grace period run while the image is read and
/// the shim prepares the container. One such thread at a time (`None` when another runs, or
/// not as root). Where the move cannot be made (a read-only cgroup filesystem), the runtime
/// waits as before. Hosts that mount cgroup2 with `favordynmods` have no such wait.
pub fn begin_cgroup_grace_period() -> Option<std::thread::JoinHandle<()>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static MOVING: AtomicBool = AtomicBool::new(false);
    if !rustix::process::geteuid().is_root() || MOVING.swap(true, Ordering::AcqRel) {
        return None;
    }
    let unified = Path::new("/sys/fs/cgroup/unified");
    let hierarchy = match unified.join("cgroup.controllers").exists() {
        true => unified,
        false => Path::new("/sys/fs/cgroup"),
    };
    let procs = hierarchy
        .join(own_cgroup().strip_prefix("/").unwrap_or(Path::new("")))
        .join("cgroup.procs");
    let moving = std::thread::Builder::new()
        .name("cgroup-join".into())
        .spawn(move || {
            let _ = move_into(&procs);
            MOVING.store(false, Ordering::Release);
        });
    if moving.is_err() {
        MOVING.store(false, Ordering::Release);
    }
    moving.ok()
}

/// Writes this process into `procs` (a `cgroup.procs`), never creating the file: on a host
/// with cgroup v1 only, the path is on a tmpfs.
fn move_into(procs: &Path) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(procs)?;
    // "0": the writer's own process.
    std::io::Write::write_all(&mut file, b"0")
}

/// Kills every process still running as `skiff __shim DIR`, and returns once they are
/// gone: the shim itself when its container is removed under it, and copies of the shim
/// that never became a container: libcontainer clones the shim to make the container's
/// init, which waits (as `skiff __shim DIR`, before its exec) for the start signal; if the
/// shim dies then, before the init's pid is on disk, nothing else would ever end it.
/// `except`: the caller, and the shim itself when it is the caller's to keep.
pub fn kill_shim_processes(dir: &Path, except: &[u32]) -> usize {
    crate::proc::kill_helpers(
        &HelperCmd::Shim {
            dir: dir.to_path_buf(),
        },
        except,
    )
}

/// What a container is made with: `skiff run`'s options, typed (the pull and registry flags,
/// `-d` and `-i` are not the container's).
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// `--name`; a random id when absent.
    pub name: Option<String>,
    /// Arguments replacing the image's Cmd.
    pub command: Vec<String>,
    /// `--entrypoint`, already split into words (docker's rule: it drops the image's Cmd).
    pub entrypoint: Option<Vec<String>>,
    /// KEY=VALUE, resolved.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// Ignored in a pod: the pod's network is the container's.
    pub network: Network,
    /// The name of a pod made by `pod::create`, whose namespaces the container joins.
    pub pod: Option<String>,
    /// `--add-host` entries (in a pod: for every member).
    pub hosts: Vec<(String, String)>,
    pub dns: Vec<String>,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub tty: bool,
    pub limits: Limits,
    pub runtime: RuntimeChoice,
    /// `--rm`: the shim removes the container's files when it exits.
    pub remove: bool,
    /// `--security-opt seccomp=...`: the syscall filter.
    pub seccomp: SeccompPolicy,
    /// `--userns`: as root, ids of its own (auto) or the host's.
    pub userns: UsernsMode,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            name: None,
            command: vec![],
            entrypoint: None,
            env: vec![],
            workdir: None,
            user: None,
            hostname: None,
            network: Network::Host,
            pod: None,
            hosts: vec![],
            dns: vec![],
            volumes: vec![],
            tmpfs: vec![],
            read_only: false,
            cap_add: vec![],
            cap_drop: vec![],
            tty: false,
            limits: Limits::default(),
            runtime: RuntimeChoice::Libcontainer,
            remove: false,
            seccomp: SeccompPolicy::Default,
            userns: UsernsMode::Auto,
        }
    }
}

/// `<root>/pods/<name>`.
fn pod_dir(root: &Path, name: &str) -> PathBuf {
    root.join("pods").join(name)
}

/// What `create` refuses, checked without the image: the pod runs, the volumes' sources
/// exist, the seccomp profile reads and converts. (`skiff run` asks before pulling.)
/// As root, also starts the kernel's wait before the container's cgroup can be joined (see
/// [`begin_cgroup_grace_period`]).
pub fn check(root: &Path, opts: &CreateOptions) -> Result<(), ContainerError> {
    if opts.runtime.makes_cgroup(!opts.limits.is_empty()) {
        // Detached: it ends by itself.
        let _ = begin_cgroup_grace_period();
    }
    if let Some(name) = opts.name.as_ref().filter(|n| !super::is_valid_name(n)) {
        return Err(ContainerError::BadName(name.clone()));
    }
    if let Some(pod) = opts.pod.as_ref().filter(|p| !super::is_valid_name(p)) {
        return Err(PodError::BadName(pod.clone()).into());
    }
    opts.seccomp.check(&root.join("cache/seccomp"))?;
    super::plan::check_workdir(opts.workdir.as_deref())?;
    if let Some(pod) = &opts.pod {
        super::pod_state::running(&pod_dir(root, pod))?;
    }
    if let Some(v) = opts.volumes.iter().find(|v| !v.source.exists()) {
        return Err(ContainerError::NoVolumeSource(v.source.clone()));
    }
    Ok(())
}

/// Makes a container of `image` in the store at `root`: its directory and `plan.json`, and
/// in a pod, its names in the pod's hosts file. Nothing runs yet.
pub fn create(
    root: &Path,
    image: &ResolvedImage,
    opts: &CreateOptions,
) -> Result<Container, ContainerError> {
    check(root, opts)?;
    create_as(root, &new_id(opts)?, image, opts)
}

/// A new container's id: its `--name`, else a random one.
fn new_id(opts: &CreateOptions) -> Result<String, ContainerError> {
    match &opts.name {
        Some(n) if !super::is_valid_name(n) => Err(ContainerError::BadName(n.clone())),
        Some(n) => Ok(n.clone()),
        None => Ok(format!(
            "{:016x}",
            (std::process::id() as u64) << 32 ^ crate::time::now_nanos()
        )),
    }
}

/// `create`, under an id already chosen, of options already checked.
fn create_as(
    root: &Path,
    id: &str,
    image: &ResolvedImage,
    opts: &CreateOptions,
) -> Result<Container, ContainerError> {
    let (network, pod, pod_userns) = match &opts.pod {
        Some(name) => {
            let dir = pod_dir(root, name);
            let (state, _) = super::pod_state::running(&dir)?;
            (state.network, Some(dir), state.userns)
        }
        None => (opts.network.clone(), None, None),
    };
    // As root, ids of its own, held from the plan's writing on (a pod's members: the pod's).
    let (userns, _allocating) =
        if opts.userns == UsernsMode::Host || !rustix::process::geteuid().is_root() {
            (None, None)
        } else if pod.is_some() {
            (pod_userns, None)
        } else {
            let (allocation, lock) = userns::allocate(root, userns::containers_ranges()?)?;
            (Some(allocation), Some(lock))
        };
    let id = id.to_string();
    let dir = ContainerDir::in_store(root, &id);
    if dir.path().exists() {
        return Err(ContainerError::Exists(id));
    }
    std::fs::create_dir_all(dir.path()).map_err(|source| ContainerError::Io {
        what: "creating",
        path: dir.path().to_path_buf(),
        source,
    })?;
    if userns.is_some() {
        userns::make_searchable(root, dir.path())?;
    }
    let plan = RunPlan {
        id: id.clone(),
        image: image.name.clone(),
        image_config: image.config.container(),
        lowers: image.lowers.clone(),
        dir: dir.path().to_path_buf(),
        command: opts.command.clone(),
        entrypoint: opts.entrypoint.clone(),
        env: opts.env.clone(),
        workdir: opts.workdir.clone(),
        user: opts.user.clone(),
        hostname: opts
            .hostname
            .clone()
            .unwrap_or_else(|| id.chars().take(12).collect()),
        network,
        runtime: opts.runtime.clone(),
        remove: opts.remove,
        creator: Some(std::process::id()),
        volumes: opts.volumes.clone(),
        tmpfs: opts.tmpfs.clone(),
        read_only: opts.read_only,
        cap_add: opts.cap_add.clone(),
        cap_drop: opts.cap_drop.clone(),
        dns: opts.dns.clone(),
        hosts: opts.hosts.clone(),
        pod: pod.clone(),
        limits: opts.limits.clone(),
        tty: opts.tty,
        seccomp: opts.seccomp.clone(),
        userns,
    };
    if let Some(pod_dir) = &pod {
        // Every member finds this one by its name, and by the hosts it adds.
        let mut entries = vec![(id.clone(), "127.0.0.1".to_string())];
        entries.extend(opts.hosts.iter().cloned());
        let hosts = pod_dir.join("hosts");
        super::network::append_hosts(&hosts, &entries).map_err(|source| ContainerError::Io {
            what: "adding to the pod's hosts file",
            path: hosts,
            source,
        })?;
    }
    plan.write(dir.path())?;
    // The overlay's directories and the transient files' mount point, made here while the
    // shim (started early) is still loading: each costs the store's filesystem an inode,
    // on the way to the container when the shim makes it. The shim makes any that is
    // missing, and names the failure.
    for made in [
        dir.path().join(super::rootfs::UPPER),
        dir.path().join(super::rootfs::WORK),
        transient(dir.path()),
    ] {
        let _ = std::fs::create_dir(made);
    }
    Ok(Container { dir, name: id })
}

/// A container in the store, found by its name (or a prefix of it).
#[derive(Debug, Clone)]
pub struct Container {
    dir: ContainerDir,
    /// As the caller named it (reported in errors).
    name: String,
}

/// The name prefix of an ended `--rm` container's directory while its shim removes it.
pub const SET_ASIDE: &str = ".removing-";

/// Finds a container by its id or an unambiguous prefix of it.
pub fn find(root: &Path, name_or_prefix: &str) -> Result<Container, ContainerError> {
    // A prefix is a name's start: nothing else can name a container.
    if !super::is_valid_name(name_or_prefix) {
        return Err(ContainerError::NotFound(name_or_prefix.into()));
    }
    let base = root.join("containers");
    let exact = base.join(name_or_prefix);
    let path = if exact.is_dir() {
        exact
    } else {
        let hits: Vec<PathBuf> = std::fs::read_dir(&base)
            .map(|r| {
                r.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name().is_some_and(|n| {
                            let n = n.to_string_lossy();
                            n.starts_with(name_or_prefix) && !n.starts_with(SET_ASIDE)
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        match hits.as_slice() {
            [one] => one.clone(),
            [] => return Err(ContainerError::NotFound(name_or_prefix.into())),
            _ => return Err(ContainerError::Ambiguous(name_or_prefix.into())),
        }
    };
    Ok(Container {
        dir: ContainerDir::new(path),
        name: name_or_prefix.into(),
    })
}

/// The containers in the store with a state (running ones only unless `all`): id and state,
/// in directory order.
pub fn list(root: &Path, all: bool) -> Vec<(String, State)> {
    std::fs::read_dir(root.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with(SET_ASIDE))
        .filter_map(|e| {
            let s = read_state(&e.path())?;
            (all || s.status == Status::Running)
                .then(|| (e.file_name().to_string_lossy().to_string(), s))
        })
        .collect()
}

/// Waits until the container is no longer running, at most `timeout`: until its shim, which
/// records the exit, unmounts and ends, has ended (woken by that end, not by polling), so that
/// nothing writes in the container's directory any more.
pub(crate) fn wait_exited(dir: &Path, timeout: Duration) -> bool {
    match read_state(dir) {
        Some(s) if s.status == Status::Running => {
            crate::proc::wait_gone(s.shim_pid, timeout);
            read_state(dir).is_none_or(|s| s.status != Status::Running)
        }
        _ => true,
    }
}

/// Removes store paths from inside the user namespace that owns their files (blocking; the
/// `__remove` helper).
pub fn remove_paths(paths: &[PathBuf]) -> Result<(), ContainerError> {
    if paths.is_empty() {
        return Ok(());
    }
    let helper = HelperCmd::Remove {
        paths: paths.to_vec(),
    };
    match helper.run() {
        Err(ProcError::Failed { stderr, .. }) => Err(ContainerError::Remove {
            path: paths[0].clone(),
            stderr,
        }),
        other => Ok(other?),
    }
}

impl Container {
    pub fn dir(&self) -> &ContainerDir {
        &self.dir
    }

    pub fn id(&self) -> String {
        self.dir.id()
    }

    pub fn state(&self) -> Option<State> {
        self.dir.read_state()
    }

    fn running_state(&self) -> Result<State, ContainerError> {
        self.state()
            .filter(|s| s.status == Status::Running)
            .ok_or_else(|| ContainerError::NotRunning(self.name.clone()))
    }

    /// Starts the container's shim in the background, outliving this process; returns once
    /// the container runs (an exec right after finds it), or with the shim's log when it
    /// could not start it.
    pub fn start_detached(&self) -> Result<(), ContainerError> {
        let shim = HelperCmd::Shim {
            dir: self.dir.path().to_path_buf(),
        };
        match shim.spawn_detached(&self.dir.log()) {
            Ok(()) => Ok(()),
            Err(ProcError::NotReady { log }) => {
                Err(ContainerError::DidNotStart { id: self.id(), log })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A shim that fails before it records anything must not pass for the last start's exit.
    fn reset_state(&self) -> Result<(), ContainerError> {
        match std::fs::remove_file(self.dir.state()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ContainerError::Io {
                what: "resetting the state of",
                path: self.dir.state(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// The shim that starts this created (or exited) container in the foreground, for the
    /// caller to spawn: its stdin, stdout and stderr are the container's. Its filesystem is
    /// the one the last start left. With it, its exit pipe (`proc::ExitPipe`): the container's
    /// exit status as soon as it is known, before the shim's own cleanup; `last_exit` tells,
    /// once the shim ended without reporting, whether the container's process ran.
    pub fn foreground_command_reporting_exit(
        &self,
    ) -> Result<(std::process::Command, crate::proc::ExitPipe), ContainerError> {
        self.reset_state()?;
        Ok(HelperCmd::Shim {
            dir: self.dir.path().to_path_buf(),
        }
        .command_reporting_exit()?)
    }

    /// The exit status of the container's process, when its last start ran it to the end;
    /// `None` when it never started (or still runs).
    pub fn last_exit(&self) -> Option<i32> {
        self.state()
            .filter(|s| s.status == Status::Exited)
            .and_then(|s| s.exit_code)
    }

    /// Runs the container in the foreground, its output on ours (stdin too with
    /// `stdin_inherit`), relaying SIGTERM and SIGINT to its shim; returns its exit status.
    /// An `--rm` container whose shim died is removed here.
    pub async fn run_attached(&self, stdin_inherit: bool) -> Result<i32, ContainerError> {
        let shim = HelperCmd::Shim {
            dir: self.dir.path().to_path_buf(),
        };
        let (command, mut exit) = shim.command_reporting_exit()?;
        let child = spawn_shim(command, stdin_inherit)?;
        exit.spawned();
        attach(&self.dir, ShimChild::Spawned(child), exit).await
    }

    /// Signals the container: through its shim, which relays; SIGKILL (which cannot be
    /// relayed) straight to the container's init, whose pid the runtime recorded. From the
    /// host's user namespace, its owner may signal every process in it.
    pub fn kill(&self, sig: Signal) -> Result<(), ContainerError> {
        let state = self.running_state()?;
        self.send(&state, sig)
    }

    /// As `kill`, with the signal as `kill -s` takes it: a name with or without `SIG` (any
    /// case) or a number. A container that is not running is refused before it is read.
    pub fn kill_by_name(&self, signal: &str) -> Result<(), ContainerError> {
        let state = self.running_state()?;
        self.send(&state, parse_signal(signal)?)
    }

    fn send(&self, state: &State, sig: Signal) -> Result<(), ContainerError> {
        if sig == Signal::SIGKILL
            && let Some(pid) = self.dir.container_pid()
        {
            return nix::sys::signal::kill(pid, sig).map_err(|source| ContainerError::Signal {
                what: "killing the container's init",
                source,
            });
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(state.shim_pid as i32), sig).map_err(
            |source| ContainerError::Signal {
                what: "signalling the container's shim",
                source,
            },
        )
    }

    /// SIGTERM, then SIGKILL after `timeout`. `Ok(false)`: it was not running.
    pub fn stop(&self, timeout: Duration) -> Result<bool, ContainerError> {
        let Some(state) = self.state().filter(|s| s.status == Status::Running) else {
            return Ok(false);
        };
        self.send(&state, Signal::SIGTERM)?;
        if !wait_exited(self.dir.path(), timeout) {
            self.send(&state, Signal::SIGKILL)?;
            if !wait_exited(self.dir.path(), Duration::from_secs(10)) {
                return Err(ContainerError::DidNotStop(self.name.clone()));
            }
        }
        Ok(true)
    }

    /// Removes the container's files; a running or starting one only with `force` (killed
    /// first).
    pub fn remove(&self, force: bool) -> Result<(), ContainerError> {
        let state = self.state();
        if let Some(s) = state.as_ref().filter(|s| s.status == Status::Created) {
            if !force {
                return Err(ContainerError::Starting(self.name.clone()));
            }
            // Its guardian takes down whatever the shim had started.
            let shim = nix::unistd::Pid::from_raw(s.shim_pid as i32);
            let _ = nix::sys::signal::kill(shim, Signal::SIGKILL);
            crate::proc::wait_gone(s.shim_pid, Duration::from_secs(10));
        }
        if let Some(s) = state.filter(|s| s.status == Status::Running) {
            if !force {
                return Err(ContainerError::Running(self.name.clone()));
            }
            self.send(&s, Signal::SIGKILL)?;
            if !wait_exited(self.dir.path(), Duration::from_secs(10)) {
                return Err(ContainerError::DidNotStop(self.name.clone()));
            }
        }
        // The plan names the cgroup; it is gone with the directory.
        let id = RunPlan::read(self.dir.path()).map_or_else(|_| self.id(), |p| p.id);
        remove_paths(&[self.dir.path().to_path_buf()])?;
        // A shim that died (killed) could not have its runtime delete the container's cgroup;
        // once the directory is gone nothing else would find it.
        super::recovery::remove_cgroup(&id);
        Ok(())
    }
}

/// The shim of a foreground container not made yet: `skiff run` starts it first, and it
/// waits (see `HelperCmd::command_waiting_for_go`) while `run` reads or pulls the image and
/// writes the plan, so that the shim's own start is off the path to the container's.
/// Dropped before `run`, it ends without touching anything.
///
/// For an external runtime the shim is a fork of `run` (see `ShimChild::Forked`): no exec
/// of skiff and no loading of it, which took the spawned shim 0.8 ms, longer than `run`
/// takes to write the plan.
/// Not for libcontainer: it clones the shim to make the container's init, which cleanup
/// finds by its `skiff __shim DIR` command line if the shim dies before the init starts
/// (`kill_shim_processes`); a fork keeps `run`'s. Nor where the shim must run from a sealed
/// copy of skiff (`proc::exposed_program`).
pub struct EarlyShim {
    id: String,
    child: ShimChild,
    exit: crate::proc::ExitPipe,
    go: crate::proc::GoPipe,
}

/// A foreground shim, our child.
enum ShimChild {
    /// `skiff __shim DIR`, spawned.
    Spawned(std::process::Child),
    /// A fork of this process running the shim (`runtime::forked_shim_main`).
    Forked(nix::unistd::Pid),
}

impl ShimChild {
    fn pid(&self) -> nix::unistd::Pid {
        match self {
            Self::Spawned(c) => nix::unistd::Pid::from_raw(c.id() as i32),
            Self::Forked(pid) => *pid,
        }
    }

    /// Blocking: reaps the shim.
    fn wait(self) -> std::io::Result<std::process::ExitStatus> {
        use nix::sys::wait::{WaitStatus, waitpid};
        use std::os::unix::process::ExitStatusExt;
        let pid = match self {
            Self::Spawned(mut c) => return c.wait(),
            Self::Forked(pid) => pid,
        };
        loop {
            // As wait(2) encodes them: the status in the second byte, or the signal.
            return match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => Ok(ExitStatusExt::from_raw((code & 0xff) << 8)),
                Ok(WaitStatus::Signaled(_, sig, _)) => Ok(ExitStatusExt::from_raw(sig as i32)),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }
}

impl EarlyShim {
    /// Starts the shim of the container `create` will make of `opts`, then checks them (as
    /// `check`). `None` in a pod: whether the container's root is the host's is the pod's
    /// to say, and `create` reads it then.
    pub fn spawn(
        root: &Path,
        opts: &CreateOptions,
        stdin_inherit: bool,
    ) -> Result<Option<Self>, ContainerError> {
        if opts.pod.is_some() {
            return Ok(None);
        }
        let id = new_id(opts)?;
        let dir = ContainerDir::in_store(root, &id);
        if dir.path().exists() {
            return Err(ContainerError::Exists(id));
        }
        // As `create` decides it: as root, ids of its own unless --userns=host.
        let host_root = rustix::process::geteuid().is_root() && opts.userns == UsernsMode::Host;
        let shim = HelperCmd::Shim {
            dir: dir.path().to_path_buf(),
        };
        let (command, mut exit, mut go) = shim.command_waiting_for_go(host_root)?;
        let forked = match matches!(opts.runtime, RuntimeChoice::External { .. })
            && HelperCmd::runs_own_binary(&command)
        {
            true => fork_shim(dir.path(), stdin_inherit, &mut exit, &mut go)?,
            false => None,
        };
        let child = match forked {
            Some(pid) => ShimChild::Forked(pid),
            None => ShimChild::Spawned(spawn_shim(command, stdin_inherit)?),
        };
        exit.spawned();
        go.spawned();
        let shim = Self {
            id,
            child,
            exit,
            go,
        };
        // Refused, the shim is dropped: it ends without touching anything.
        check(root, opts)?;
        Ok(Some(shim))
    }

    /// Makes the container (as `create`) and runs it in the foreground (as
    /// `Container::run_attached`): its exit status.
    pub async fn run(
        self,
        root: &Path,
        image: &ResolvedImage,
        opts: &CreateOptions,
    ) -> Result<i32, ContainerError> {
        let c = create_as(root, &self.id, image, opts)?;
        self.go.go()?;
        attach(&c.dir, self.child, self.exit).await
    }
}

/// The shim as a fork of this process (see `EarlyShim`), with `stdin_inherit` (else
/// /dev/null) as its stdin. `None`: not forked, as this process has threads.
fn fork_shim(
    dir: &Path,
    stdin_inherit: bool,
    exit: &mut crate::proc::ExitPipe,
    go: &mut crate::proc::GoPipe,
) -> Result<Option<nix::unistd::Pid>, ContainerError> {
    let parent = std::process::id();
    let forked = super::sys::fork_to(|| {
        let pipes = crate::proc::ShimPipes::forked(exit, go);
        if !stdin_inherit && let Ok(null) = std::fs::File::open("/dev/null") {
            use std::os::fd::AsRawFd;
            let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        }
        super::forked_shim_main(dir, parent, pipes)
    });
    forked.map_err(|source| {
        ProcError::Spawn {
            helper: "__shim",
            source,
        }
        .into()
    })
}

/// A foreground shim, started with `stdin_inherit` (else /dev/null) as its stdin.
fn spawn_shim(
    mut command: std::process::Command,
    stdin_inherit: bool,
) -> Result<std::process::Child, ContainerError> {
    Ok(command
        .stdin(if stdin_inherit {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        .spawn()
        .map_err(|source| ProcError::Spawn {
            helper: "__shim",
            source,
        })?)
}

/// Waits for the container of a foreground shim, relaying SIGTERM and SIGINT to the shim,
/// and returns its exit status as soon as the shim reports it.
async fn attach(
    dir: &ContainerDir,
    child: ShimChild,
    exit: crate::proc::ExitPipe,
) -> Result<i32, ContainerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let spawn_err = |source| ProcError::Spawn {
        helper: "__shim",
        source,
    };
    // The report is awaited on the runtime's reactor: no thread is started or woken on the
    // way to the exit status. The pipe closes without one only once the shim has ended:
    // `run` spawns nothing else while the pipe's write end is still ours (a job does, and
    // watches its shim's end too).
    let reported = exit.report();
    tokio::pin!(reported);
    let pid = Some(child.pid());
    let mut term = signal(SignalKind::terminate()).map_err(spawn_err)?;
    let mut int = signal(SignalKind::interrupt()).map_err(spawn_err)?;
    let relay = |sig| {
        if let Some(p) = pid {
            let _ = nix::sys::signal::kill(p, sig);
        }
    };
    let status = loop {
        tokio::select! {
            r = &mut reported => match r {
                // The shim finishes its cleanup on its own.
                Some(code) => return Ok(code),
                None => break tokio::task::spawn_blocking(move || child.wait())
                    .await
                    .map_err(|e| spawn_err(std::io::Error::other(e)))?
                    .map_err(spawn_err)?,
            },
            _ = term.recv() => relay(Signal::SIGTERM),
            _ = int.recv() => relay(Signal::SIGINT),
        }
    };
    let code = {
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    };
    if let Some(plan) = RunPlan::read(dir.path()).ok().filter(|p| p.remove)
        && dir.path().exists()
    {
        // The shim removes it from inside the namespace; this only catches a shim that
        // died. Its cgroup too (as root): once the directory is gone, nothing else finds it.
        let paths = [dir.path().to_path_buf()];
        tokio::task::spawn_blocking(move || {
            super::recovery::remove_cgroup(&plan.id);
            remove_paths(&paths)
        })
        .await
        .unwrap_or(Ok(()))?;
    }
    Ok(code)
}

fn parse_signal(name: &str) -> Result<Signal, ContainerError> {
    let bad = || ContainerError::BadSignal(name.to_string());
    let upper = name.trim_start_matches("SIG").to_ascii_uppercase();
    match upper.parse::<i32>() {
        Ok(number) => Signal::try_from(number).map_err(|_| bad()),
        Err(_) => format!("SIG{}", upper.trim_start_matches("SIG"))
            .parse()
            .map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_early_cgroup_move_leaves_the_process_where_it_was() {
        let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let moving = begin_cgroup_grace_period();
        assert_eq!(moving.is_some(), rustix::process::geteuid().is_root());
        if let Some(m) = moving {
            m.join().unwrap();
        }
        assert_eq!(
            std::fs::read_to_string("/proc/self/cgroup").unwrap(),
            before
        );
        // A v1-only host: /sys/fs/cgroup is a tmpfs, where nothing may be created.
        let tmp = tempfile::tempdir().unwrap();
        let procs = tmp.path().join("cgroup.procs");
        assert!(move_into(&procs).is_err());
        assert!(!procs.exists());
    }

    #[test]
    fn signals_by_name_or_number() {
        let cases: &[(&str, Option<Signal>)] = &[
            ("KILL", Some(Signal::SIGKILL)),
            ("SIGTERM", Some(Signal::SIGTERM)),
            ("term", Some(Signal::SIGTERM)),
            ("sigint", Some(Signal::SIGINT)),
            ("9", Some(Signal::SIGKILL)),
            ("15", Some(Signal::SIGTERM)),
            ("0", None),
            ("99", None),
            ("SIGNOPE", None),
            ("", None),
        ];
        for (name, want) in cases {
            match (parse_signal(name), want) {
                (Ok(got), Some(want)) => assert_eq!(got, *want, "{name}"),
                (Err(ContainerError::BadSignal(n)), None) => assert_eq!(n, *name),
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }

    fn image() -> ResolvedImage {
        let config = crate::oci::config::ImageConfig::parse(
            br#"{"config":{"Cmd":["sh"],"Env":["A=1"],"Hostname":"kept"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
            "test",
        )
        .unwrap();
        ResolvedImage {
            name: "localhost/test:latest".into(),
            id: crate::oci::digest::Digest::sha256_of(b"config"),
            config,
            lowers: vec!["/layers/top".into(), "/layers/base".into()],
        }
    }

    #[test]
    fn create_writes_the_plan_and_find_resolves_prefixes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let named = |name: &str| CreateOptions {
            name: Some(name.into()),
            command: vec!["echo".into(), "hi".into()],
            ..Default::default()
        };
        let c = create(root, &image(), &named("abcdef0123456789")).unwrap();
        assert_eq!(c.id(), "abcdef0123456789");
        let plan = RunPlan::read(c.dir().path()).unwrap();
        assert_eq!(plan.image, "localhost/test:latest");
        assert_eq!(
            plan.hostname, "abcdef012345",
            "the id's first 12 characters"
        );
        assert_eq!(plan.lowers, image().lowers);
        assert_eq!(plan.creator, Some(std::process::id()));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(c.dir().plan()).unwrap()).unwrap();
        assert_eq!(json["image_config"]["Hostname"], "kept");
        assert_eq!(json["network"], "host");
        assert!(matches!(
            create(root, &image(), &named("abcdef0123456789")),
            Err(ContainerError::Exists(_))
        ));
        create(root, &image(), &named("abd")).unwrap();
        assert_eq!(find(root, "abc").unwrap().id(), "abcdef0123456789");
        assert_eq!(find(root, "abd").unwrap().id(), "abd");
        assert!(matches!(
            find(root, "ab"),
            Err(ContainerError::Ambiguous(_))
        ));
        assert!(matches!(find(root, "zz"), Err(ContainerError::NotFound(_))));
        // No shim has written a state yet: listed by nobody, not running.
        assert!(list(root, true).is_empty());
        assert!(matches!(
            c.kill_by_name("TERM"),
            Err(ContainerError::NotRunning(_))
        ));
        assert!(!c.stop(Duration::from_secs(1)).unwrap());
        write_state(
            c.dir().path(),
            &State {
                status: Status::Exited,
                shim_pid: u32::MAX,
                exit_code: Some(3),
                image: plan.image.clone(),
                command: plan.command.clone(),
            },
        );
        assert_eq!(list(root, true).len(), 1);
        assert!(list(root, false).is_empty());
        // A running state whose shim is gone reads as a dead shim.
        write_state(
            c.dir().path(),
            &State {
                status: Status::Running,
                shim_pid: u32::MAX,
                exit_code: None,
                image: plan.image,
                command: plan.command,
            },
        );
        assert_eq!(c.state().unwrap().status, Status::ShimDied);
    }

    #[test]
    fn create_refuses_what_cannot_run() {
        let d = tempfile::tempdir().unwrap();
        let in_pod = CreateOptions {
            pod: Some("nope".into()),
            ..Default::default()
        };
        assert!(matches!(
            create(d.path(), &image(), &in_pod),
            Err(ContainerError::Pod(PodError::NotFound { .. }))
        ));
        let volume = CreateOptions {
            volumes: vec![Volume::parse("/no/such/source:/x").unwrap()],
            ..Default::default()
        };
        assert!(matches!(
            create(d.path(), &image(), &volume),
            Err(ContainerError::NoVolumeSource(_))
        ));
        assert!(!d.path().join("containers").exists(), "nothing left behind");
    }

    #[test]
    fn status_is_written_as_before() {
        for (status, text) in [
            (Status::Created, "created"),
            (Status::Running, "running"),
            (Status::Exited, "exited"),
            (Status::ShimDied, "exited (shim died)"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), text);
            assert_eq!(status.to_string(), text);
        }
    }
}
