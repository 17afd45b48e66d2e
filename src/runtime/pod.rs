//! Pods: a user and network namespace that several containers share, held open by a small
//! infra process (`skiff __pod DIR`, detached, like a container's shim). Members reach each
//! other on 127.0.0.1, by the names in the pod's shared /etc/hosts; two pods can listen on
//! the same port at once.

use super::network::{self, Helper};
use super::pod_state::{ENDED, MEMBER_LOCK};
pub use super::pod_state::{PodError, PodState, has_ended, lock_for_member, read, running, write};
use super::userns;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The containers whose plan puts them in the pod at `pod_dir` (`<store>/pods/<name>`).
pub fn members(pod_dir: &Path) -> Vec<PathBuf> {
    let Some(store) = pod_dir.parent().and_then(Path::parent) else {
        return Vec::new();
    };
    std::fs::read_dir(store.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
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
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("skiff pod: {what}: {e}");
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
    let mapping = userns::detect();
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
            if let Some(pid) = super::container::container_pid(&member) {
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
pub fn probe_main(args: &[String]) -> i32 {
    let [dir, timeout, ports @ ..] = args else {
        eprintln!("usage: skiff __probe POD_DIR TIMEOUT_MS PORT...");
        return 2;
    };
    let (Ok(timeout), Ok(ports)) = (
        timeout.parse::<u64>(),
        ports
            .iter()
            .map(|p| p.parse::<u16>())
            .collect::<Result<Vec<_>, _>>(),
    ) else {
        eprintln!("skiff __probe: bad timeout or port");
        return 2;
    };
    let pid = match running(Path::new(dir)) {
        Ok((_, pid)) => pid,
        Err(e) => {
            eprintln!("skiff: {e}");
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
            eprintln!("skiff: joining the pod's user namespace: {e}");
            return 2;
        }
    }
    if let Err(e) = network::join(pid) {
        eprintln!("skiff: {e}");
        return 2;
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(timeout);
    loop {
        for port in &ports {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                println!("{port}");
                return 0;
            }
        }
        if std::time::Instant::now() >= deadline {
            return 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
