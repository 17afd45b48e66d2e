//! Pods: a user and network namespace that several containers share, held open by a small
//! infra process (`skiff __pod DIR`, detached, like a container's shim). Members reach each
//! other on 127.0.0.1, by the names in the pod's shared /etc/hosts; two pods can listen on
//! the same port at once.

use super::container::{Status, container_pid, read_state};
use super::network::{self, Helper, Network};
use super::pod_state::{CREATING, ENDED, MEMBER_LOCK};
pub use super::pod_state::{PodError, PodState, has_ended, lock_for_member, read, running, write};
use super::userns;
use crate::proc::{HelperCmd, ProcError, process_alive};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a pod is made with (`skiff pod create`'s options).
#[derive(Debug, Clone)]
pub struct PodOptions {
    pub name: String,
    /// Private, slirp4netns or pasta: a pod has a network namespace of its own.
    pub network: Network,
    /// `--add-host` entries for every member's /etc/hosts.
    pub hosts: Vec<(String, String)>,
    pub dns: Vec<String>,
    /// A process whose end ends the pod (its members are killed).
    pub owner: Option<u32>,
    /// `--userns`: as root, ids of its own (auto) or the host's.
    pub userns: userns::UsernsMode,
}

/// One line of `pod ls`.
#[derive(Debug, Clone)]
pub struct PodSummary {
    pub name: String,
    /// Its infra process is alive.
    pub running: bool,
    pub network: Network,
    pub containers: usize,
}

/// `<root>/pods/<name>`.
pub fn dir(root: &Path, name: &str) -> PathBuf {
    root.join("pods").join(name)
}

/// Makes the pod and starts its infra process (detached, outliving this process); returns
/// once the pod's namespaces exist.
pub fn create(root: &Path, opts: &PodOptions) -> Result<(), PodError> {
    if !opts.network.is_private() {
        return Err(PodError::SharedNetwork {
            network: opts.network.name(),
        });
    }
    let name = &opts.name;
    if !super::is_valid_name(name) {
        return Err(PodError::BadName(name.clone()));
    }
    let dir = dir(root, name);
    if dir.exists() {
        return Err(PodError::Exists { name: name.clone() });
    }
    // As root, ids of its own, held from pod.json's writing on.
    let (allocation, _allocating) =
        if opts.userns == userns::UsernsMode::Auto && rustix::process::geteuid().is_root() {
            let (a, lock) = userns::allocate(root, userns::containers_ranges()?)?;
            (Some(a), Some(lock))
        } else {
            (None, None)
        };
    // Made under a name of its own, then renamed into place whole: a creator killed
    // halfway leaves `pods/.creating-NAME-PID`, which `system cleanup` removes, never a
    // pod directory without its pod.json.
    let making = dir.with_file_name(format!("{CREATING}{name}-{}", std::process::id()));
    let result = fill(&making, opts, allocation).and_then(|()| {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &making,
            rustix::fs::CWD,
            &dir,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| match e {
            rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY => {
                PodError::Exists { name: name.clone() }
            }
            e => PodError::Io {
                what: "creating",
                path: dir.clone(),
                source: e.into(),
            },
        })
    });
    if let Err(e) = result {
        let _ = crate::unpack::remove_tree(&making);
        return Err(e);
    }
    match (HelperCmd::Pod { dir: dir.clone() }).spawn_detached(&dir.join("log")) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(match e {
                ProcError::NotReady { log } => PodError::DidNotStart {
                    name: name.clone(),
                    log,
                },
                e => e.into(),
            })
        }
    }
}

/// A new pod's directory, `dir`: its pod.json, and as root its files given to its root.
fn fill(
    dir: &Path,
    opts: &PodOptions,
    allocation: Option<userns::Allocation>,
) -> Result<(), PodError> {
    std::fs::create_dir_all(dir).map_err(|source| PodError::Io {
        what: "creating",
        path: dir.to_path_buf(),
        source,
    })?;
    let state = PodState {
        name: opts.name.clone(),
        network: opts.network.clone(),
        hosts: opts.hosts.clone(),
        dns: opts.dns.clone(),
        infra_pid: None,
        owner: opts.owner,
        userns: allocation,
    };
    write(dir, &state).map_err(|source| PodError::Io {
        what: "writing",
        path: dir.join("pod.json"),
        source,
    })?;
    if let Some(a) = allocation {
        // The infra process writes here from inside the pod's user namespace.
        let give = |path: PathBuf| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map(drop)
                .and_then(|()| std::os::unix::fs::chown(&path, Some(a.uid), Some(a.gid)))
                .map_err(|source| PodError::Io {
                    what: "giving the pod's root",
                    path,
                    source,
                })
        };
        give(dir.join(MEMBER_LOCK))?;
        give(dir.join("pod.json"))?;
        std::os::unix::fs::chown(dir, Some(a.uid), Some(a.gid)).map_err(|source| PodError::Io {
            what: "giving the pod's root",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// SIGTERM to the infra process, SIGKILL if it lingers.
fn stop_infra(state: &PodState) {
    if let Some(pid) = state.infra_pid.filter(|p| process_alive(*p)) {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if !crate::proc::wait_gone(pid.as_raw() as u32, Duration::from_secs(5)) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Removes the pod and its containers; running members only with `force` (killed first).
/// Blocking: async callers use `spawn_blocking`.
pub fn remove(root: &Path, name: &str, force: bool) -> Result<(), PodError> {
    let dir = dir(root, name);
    if !super::is_valid_name(name) || !dir.join("pod.json").exists() {
        return Err(PodError::NotFound { name: name.into() });
    }
    let state = read(&dir)?;
    let containers = members(&dir);
    let running: Vec<&PathBuf> = containers
        .iter()
        .filter(|d| read_state(d).is_some_and(|s| s.status == Status::Running))
        .collect();
    if !running.is_empty() && !force {
        return Err(PodError::HasRunning {
            name: name.into(),
            count: running.len(),
        });
    }
    // All killed first, then waited for: their shims unmount and end side by side.
    for d in &running {
        if let Some(pid) = container_pid(d) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    for d in running {
        if !super::container::wait_exited(d, Duration::from_secs(10)) {
            return Err(PodError::MemberDidNotStop {
                name: name.into(),
                dir: d.clone(),
            });
        }
    }
    // Rootless, from inside the pod's own user namespace while its infra still holds it.
    let user_ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    let infra = state.infra_pid.filter(|p| {
        !userns::detect().is_root()
            && process_alive(*p)
            && user_ns(&p.to_string()).is_some_and(|ns| Some(ns) != user_ns("self"))
    });
    // A member whose shim was killed (a job's run dropped midway) left its runtime's cgroup.
    for id in containers.iter().filter_map(|d| d.file_name()) {
        super::recovery::remove_cgroup(&id.to_string_lossy());
    }
    remove_paths_in(infra, &containers)?;
    stop_infra(&state);
    std::fs::remove_dir_all(&dir).map_err(|source| PodError::Io {
        what: "removing",
        path: dir.clone(),
        source,
    })
}

/// Removes store paths from inside the user namespace: a new one mapped for it (the
/// `__remove` helper), or that of `pid` when given (`__remove-in`).
fn remove_paths_in(pid: Option<u32>, paths: &[PathBuf]) -> Result<(), PodError> {
    if paths.is_empty() {
        return Ok(());
    }
    let (first, paths) = (paths[0].clone(), paths.to_vec());
    let helper = match pid {
        Some(pid) => HelperCmd::RemoveIn { pid, paths },
        None => HelperCmd::Remove { paths },
    };
    match helper.run() {
        Err(ProcError::Failed { stderr, .. }) => Err(PodError::Remove {
            path: first,
            stderr,
        }),
        other => Ok(other?),
    }
}

/// The pods in the store, in directory order.
pub fn list(root: &Path) -> Vec<PodSummary> {
    std::fs::read_dir(root.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with(CREATING))
        .filter_map(|e| {
            let state = read(&e.path()).ok()?;
            Some(PodSummary {
                running: state.infra_pid.is_some_and(process_alive),
                containers: members(&e.path()).len(),
                name: state.name,
                network: state.network,
            })
        })
        .collect()
}

/// The command that waits, from inside the pod's network namespace, until one of `ports`
/// on 127.0.0.1 accepts a connection (exit 0, the port on stdout) or `timeout` passes
/// (exit 1); 2 when the pod is not running. It dies with the caller.
pub fn probe_command(
    root: &Path,
    pod: &str,
    timeout: Duration,
    ports: &[u16],
) -> Result<std::process::Command, PodError> {
    Ok(HelperCmd::Probe {
        pod_dir: dir(root, pod),
        timeout_ms: timeout.as_millis() as u64,
        ports: ports.to_vec(),
    }
    .command()?)
}

/// The containers whose plan puts them in the pod at `pod_dir` (`<store>/pods/<name>`).
pub fn members(pod_dir: &Path) -> Vec<PathBuf> {
    let Some(store) = pod_dir.parent().and_then(Path::parent) else {
        return Vec::new();
    };
    std::fs::read_dir(store.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        // An ended --rm member set aside is its shim's to remove (or `system cleanup`'s).
        .filter(|e| {
            !e.file_name()
                .to_string_lossy()
                .starts_with(super::container::SET_ASIDE)
        })
        .map(|e| e.path())
        .filter(|d| {
            std::fs::read(d.join("plan.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<super::plan::RunPlan>(&b).ok())
                .is_some_and(|p| p.pod.as_deref() == Some(pod_dir))
        })
        .collect()
}

/// `skiff __pod DIR`: makes the namespaces, reports ready, then waits for SIGTERM or the end
/// of the pod's owner.
pub fn pod_main(dir: &Path) -> i32 {
    let fail = |what: &str, e: &dyn std::error::Error| {
        crate::proc::tell_parent(format_args!("skiff pod: {what}: {}", crate::error_chain(e)));
        125
    };
    let mut state = match read(dir) {
        Ok(s) => s,
        Err(e) => return fail("reading the pod", &e),
    };
    let mut ready = crate::proc::take_ready_pipe();
    use nix::sys::signal::{SigSet, Signal};
    let mut mask = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        mask.add(s);
    }
    if let Err(e) = mask.thread_block() {
        return fail("blocking signals", &e);
    }
    // Opened first: an owner already gone ends the pod before it starts.
    let owner = match state.owner.map(pidfd) {
        None => None,
        Some(Ok(fd)) => Some(fd),
        Some(Err(e)) => return fail("watching the pod's owner", &e),
    };
    let signals = match nix::sys::signalfd::SignalFd::new(&mask) {
        Ok(fd) => fd,
        Err(e) => return fail("signalfd", &e),
    };
    // As root with ids of its own: its range, mapped by us (as root) rather than newuidmap.
    let mapping = match state.userns {
        Some(a) if rustix::process::geteuid().is_root() => a.mapping(),
        _ => userns::detect(),
    };
    let pending = match network::prepare_helper(
        &state.network,
        std::process::id(),
        !mapping.is_root(),
        &dir.join("network.log"),
    ) {
        Ok(p) => p,
        Err(e) => return fail("network", &e),
    };
    if let Err(e) = userns::enter(&mapping) {
        return fail("entering the user namespace", &e);
    }
    if let Err(e) = network::enter_private() {
        return fail("network", &e);
    }
    let _helper: Option<Helper> = match pending.map(|p| p.attach(Duration::from_secs(10))) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => return fail("network", &e),
    };
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for (file, body) in [
        ("hosts", network::hosts_file(&state.name, &state.hosts)),
        (
            "resolv.conf",
            network::resolv_conf(&state.network, &state.dns, &host_resolv),
        ),
    ] {
        if let Err(e) = std::fs::write(dir.join(file), body) {
            return fail(file, &e);
        }
    }
    state.infra_pid = Some(std::process::id());
    if let Err(e) = write(dir, &state) {
        return fail("writing pod.json", &e);
    }
    if let Some(mut r) = ready.take() {
        use std::io::Write;
        let _ = r.write_all(b"r");
    }
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = vec![PollFd::new(&signals, PollFlags::IN)];
    if let Some(o) = &owner {
        fds.push(PollFd::new(o, PollFlags::IN));
    }
    while poll(&mut fds, None).is_err() {}
    if fds.get(1).is_some_and(|f| !f.revents().is_empty()) {
        // No member may start after this: shims joining now see the mark; those already
        // starting hold the member lock until their container's pid is on disk.
        let _ = std::fs::write(dir.join(ENDED), b"");
        let _lock = crate::store::FileLock::exclusive(&dir.join(MEMBER_LOCK));
        for member in members(dir) {
            if let Some(pid) = container_pid(&member) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    0
}

fn pidfd(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// `skiff __probe POD_DIR TIMEOUT_MS PORT...`: from inside the pod's network namespace,
/// waits until one of the TCP ports on 127.0.0.1 accepts a connection (exit 0), or the
/// timeout passes (exit 1). GitLab's docker executor also settles for any one port.
pub fn probe_main(dir: &Path, timeout: u64, ports: &[u16]) -> i32 {
    let pid = match running(dir) {
        Ok((_, pid)) => pid,
        Err(e) => {
            crate::proc::tell_parent(format_args!("skiff: {}", crate::error_chain(&e)));
            return 2;
        }
    };
    let mapping = userns::detect();
    if !mapping.is_root() {
        let joined = std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map_err(|e| e.to_string())
            .and_then(|ns| {
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUSER)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = joined {
            crate::proc::tell_parent(format_args!("skiff: joining the pod's user namespace: {e}"));
            return 2;
        }
    }
    if let Err(e) = network::join(pid) {
        crate::proc::tell_parent(format_args!("skiff: {}", crate::error_chain(&e)));
        return 2;
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(timeout);
    let mut interval = Duration::from_millis(5);
    loop {
        for port in ports {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                println!("{port}");
                return 0;
            }
        }
        if std::time::Instant::now() >= deadline {
            return 1;
        }
        // A refused connection on loopback costs microseconds: look again soon at first (a
        // service is often up within milliseconds), then less often.
        std::thread::sleep(interval);
        interval = (interval * 2).min(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_command_and_missing_pods() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let cmd = probe_command(root, "p1", Duration::from_millis(1500), &[80, 6379]).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let pod_dir = root.join("pods/p1").display().to_string();
        assert_eq!(args, ["__probe", &pod_dir, "1500", "80", "6379"]);
        assert!(matches!(
            remove(root, "p1", true),
            Err(PodError::NotFound { .. })
        ));
        assert!(list(root).is_empty());
        let shared = PodOptions {
            name: "p2".into(),
            network: Network::Host,
            hosts: vec![],
            dns: vec![],
            owner: None,
            userns: userns::UsernsMode::Auto,
        };
        assert!(matches!(
            create(root, &shared),
            Err(PodError::SharedNetwork { .. })
        ));
    }
}
