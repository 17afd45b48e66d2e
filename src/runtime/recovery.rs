//! `skiff system cleanup`: what killed shims and infra processes left behind. (The files of
//! killed `skiff job` processes are the job layer's, cleaned by its caller.)

use super::container::{self, ContainerError, Status, container_pid, read_state};
use super::plan::RunPlan;
use super::pod;
use crate::proc::process_alive;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Remove(#[from] ContainerError),
}

/// Containers whose shim is gone: their processes are killed (the guardian normally did
/// that already), --rm ones are removed, the others are kept as exited. Pods whose infra
/// process is gone are removed with their members. Mounts need nothing: they lived in the
/// dead shims' namespaces. Returns what was done, one line each.
pub fn cleanup(root: &Path) -> Result<Vec<String>, RecoveryError> {
    let mut remove: Vec<PathBuf> = vec![];
    let mut report = vec![];
    for e in std::fs::read_dir(root.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let d = e.path();
        let id = e.file_name().to_string_lossy().to_string();
        let plan = RunPlan::read(&d).ok();
        let remove_on_exit = plan.as_ref().is_none_or(|p| p.remove);
        let dead = match read_state(&d) {
            Some(s) => {
                s.status == Status::ShimDied
                    // An --rm container whose shim died while removing it.
                    || (s.status == Status::Exited && remove_on_exit && !process_alive(s.shim_pid))
            }
            // No state: no shim has started. Abandoned once the process that wrote the plan
            // is gone (plans of older versions: after a minute).
            None => match plan.as_ref().and_then(|p| p.creator) {
                Some(creator) => !process_alive(creator),
                None => std::fs::metadata(d.join("plan.json"))
                    .and_then(|m| m.modified())
                    .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(60))
                    .unwrap_or(true),
            },
        };
        if !dead {
            continue;
        }
        if let Some(pid) = container_pid(&d) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            // The init of the container's pid namespace ends after all its processes: once
            // it has, nothing of the container runs when cleanup returns.
            crate::proc::wait_gone(pid.as_raw() as u32, Duration::from_secs(5));
            report.push(format!("killed the processes of container {id}"));
        }
        if container::kill_shim_processes(&d, &[std::process::id()]) > 0 {
            report.push(format!("killed the unstarted init of container {id}"));
        }
        // A set-aside directory (`.removing-ID-PID`) is named apart from its cgroup.
        remove_cgroup(plan.as_ref().map_or(id.as_str(), |p| p.id.as_str()));
        if remove_on_exit {
            remove.push(d);
            report.push(format!("removed container {id}"));
        } else if let Some(mut s) = read_state(&d) {
            s.status = Status::Exited;
            container::write_state(&d, &s);
            report.push(format!("marked container {id} exited (its shim died)"));
        }
    }
    for e in std::fs::read_dir(root.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(creator) = name
            .strip_prefix(super::pod_state::CREATING)
            .and_then(|rest| rest.rsplit('-').next())
            .and_then(|pid| pid.parse().ok())
        {
            if !process_alive(creator) {
                remove.push(e.path());
                report.push(format!("removed {name} (its creator was gone)"));
            }
            continue;
        }
        let Ok(state) = pod::read(&e.path()) else {
            continue;
        };
        let ended = pod::has_ended(&e.path());
        if ended || !state.infra_pid.is_some_and(process_alive) {
            if let Some(pid) = state.infra_pid.filter(|_| ended) {
                // Its owner is gone and the infra is killing the members: it exits once it
                // has seen every member start, which takes a moment at most.
                let start = Instant::now();
                while process_alive(pid) && start.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Its members cannot run without it. A member's shim may still be finishing
            // (writing its state, deleting the runtime's): it is gone before its directory
            // is removed, or it would write into one being emptied.
            for d in pod::members(&e.path()) {
                if let Some(pid) = container_pid(&d) {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
                container::kill_shim_processes(&d, &[std::process::id()]);
                if let Some(id) = d.file_name() {
                    remove_cgroup(&id.to_string_lossy());
                }
                remove.push(d);
            }
            remove.push(e.path());
            report.push(format!(
                "removed pod {} (its infra process was gone)",
                state.name
            ));
        }
    }
    remove.sort();
    remove.dedup();
    container::remove_paths(&remove)?;
    Ok(report)
}

/// The empty cgroup a root container's runtime made (it could not delete it after a crash).
pub(super) fn remove_cgroup(id: &str) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let path = container::cgroup_path(id);
    let relative = path.strip_prefix("/").unwrap_or(&path);
    let v2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(|mount| Path::new(mount).join(relative));
    // With limits on a v1 host, the runtime made one at the top of each hierarchy.
    let v1 = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|hierarchy| hierarchy.path().join(format!("skiff-{id}")));
    for dir in v2.chain(v1) {
        if dir.join("cgroup.procs").exists() {
            // Processes may take a moment to leave after SIGKILL.
            let start = Instant::now();
            while std::fs::remove_dir(&dir).is_err() && start.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
