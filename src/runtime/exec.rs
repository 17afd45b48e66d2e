//! A process in a running container (`skiff exec`): joins the container's user, network and
//! mount namespaces (its shim's), then has the container's runtime start the process.
//! Single-threaded only (setns(CLONE_NEWUSER) and libcontainer both need it): async callers
//! run it as the `__exec` helper through `command`.

use super::backend::{ExecProcess, Paths};
use super::container::{self, ContainerDir, ContainerError, Status};
use super::plan::{PlanError, RunPlan};
use super::spec::SpecError;
use crate::proc::{HelperCmd, ProcError};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("{0} is not running")]
    NotRunning(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    User(#[from] SpecError),
    #[error("{what}")]
    Namespace {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Backend(#[from] super::backend::BackendError),
    #[error("the exec request")]
    Request(#[source] serde_json::Error),
    #[error(transparent)]
    Helper(#[from] ProcError),
}

/// What to run, as `skiff exec` takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// KEY=VALUE, added to (and overriding) the container's own environment.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// UID[:GID], numbers or names from the image's /etc/passwd and /etc/group; none: the
    /// container's own user.
    #[serde(default)]
    pub user: Option<String>,
}

/// Runs `request` in the container and returns its exit code. Single-threaded callers only:
/// the calling process joins the container's namespaces.
pub fn exec(dir: &ContainerDir, request: &ExecRequest) -> Result<i32, ExecError> {
    let state = dir
        .read_state()
        .filter(|s| s.status == Status::Running)
        .ok_or_else(|| ExecError::NotRunning(dir.id()))?;
    let plan = RunPlan::read(dir.path())?;
    super::plan::check_workdir(request.workdir.as_deref())?;
    // As docker and podman exec: the container's own user unless another is asked for
    // (libcontainer's tenant would run as root otherwise; runc takes config.json's).
    let asked = request.user.clone().or_else(|| {
        plan.user
            .clone()
            .or_else(|| plan.image_config.user.clone())
            .filter(|u| !u.is_empty())
    });
    let user = match &asked {
        None => None,
        Some(u) => {
            // Names go through the image's files (the top-most layer that has them).
            let rootfs = plan
                .lowers
                .iter()
                .find(|l| l.join("etc/passwd").exists())
                .cloned()
                .unwrap_or_default();
            let (uid, gid, _, _) = super::spec::resolve_user(&rootfs, u)?;
            Some((uid, gid))
        }
    };
    let ns = |kind: &str| std::fs::File::open(format!("/proc/{}/ns/{kind}", state.shim_pid));
    let sys = |what: &'static str| {
        move |e: nix::Error| ExecError::Namespace {
            what,
            source: e.into(),
        }
    };
    let io =
        |what: &'static str| move |source: std::io::Error| ExecError::Namespace { what, source };
    if !nix::unistd::geteuid().is_root() {
        let user_ns = ns("user").map_err(io("opening the container's user namespace"))?;
        nix::sched::setns(user_ns, nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(sys("joining the container's user namespace"))?;
        let root = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root).map_err(sys("setresgid(0)"))?;
        let root = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root).map_err(sys("setresuid(0)"))?;
    }
    // The network namespace the container inherited from its shim (private, a pod's): it
    // is not in the spec, so the runtime would not join it.
    // (With the host's network there is nothing to join, and a rootless process could not.)
    let net = ns("net").map_err(io("opening the container's network namespace"))?;
    let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    };
    let theirs = net
        .metadata()
        .map_err(io("opening the container's network namespace"))?;
    let ours =
        std::fs::metadata("/proc/self/ns/net").map_err(io("opening our own network namespace"))?;
    if !same(&theirs, &ours) {
        nix::sched::setns(net, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(sys("joining the container's network namespace"))?;
    }
    // The shim's mount namespace: the runtime must see what the shim showed it (cgroup2
    // only on hybrid hosts, the mounted root), or it would try the host's v1 cgroups.
    let mnt = ns("mnt").map_err(io("opening the container's mount namespace"))?;
    nix::sched::setns(mnt, nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(sys("joining the container's mount namespace"))?;
    // As root with ids of its own, the external runtimes join the container's user
    // namespace themselves; libcontainer's exec does not, so we do, last (the namespaces
    // above are the host root's to join).
    if nix::unistd::geteuid().is_root()
        && plan.userns.is_some()
        && plan.runtime == super::backend::RuntimeChoice::Libcontainer
    {
        let pid = dir
            .container_pid()
            .ok_or_else(|| ExecError::NotRunning(dir.id()))?;
        wait_for_init_exec(pid.as_raw() as u32, state.shim_pid);
        if let Some(ids) = plan.userns {
            // Its exec cannot move us into the container's cgroups from in there, but
            // insists on writing their process lists: we join them first and let the
            // container's root write those lists (of its own cgroups only).
            join_cgroups_of(pid.as_raw() as u32, (ids.uid, ids.gid));
            // Where its exec puts its socket: its state directory, the container's root's.
            let state = dir.runtime_state().join(dir.id());
            std::os::unix::fs::chown(&state, Some(ids.uid), Some(ids.gid))
                .map_err(io("giving the container's root its runtime state"))?;
        }
        let user_ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map_err(io("opening the container's user namespace"))?;
        nix::sched::setns(user_ns, nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(sys("joining the container's user namespace"))?;
        let root = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root).map_err(sys("setresgid(0)"))?;
        nix::unistd::setgroups(&[]).map_err(sys("setgroups"))?;
        let root = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root).map_err(sys("setresuid(0)"))?;
    }
    let process = ExecProcess {
        args: request.args.clone(),
        env: request.env.clone(),
        cwd: request.workdir.clone(),
        user,
    };
    let (bundle, state_dir, pid_file) = (dir.bundle(), dir.runtime_state(), dir.pid_file());
    let paths = Paths {
        bundle: &bundle,
        state: &state_dir,
        pid_file: &pid_file,
    };
    Ok(plan
        .runtime
        .backend(None)
        .exec(&dir.id(), &paths, &process)?)
}

/// libcontainer's init is a clone of the shim until it executes the container's command, and
/// until then nothing in the container's user namespace may open its `/proc/PID/ns` (its
/// memory still belongs to the host's namespace, and having changed ids it is not dumpable),
/// as libcontainer's exec does from there. `run -d` reports a started container, which may
/// not have got that far: an exec right after it waits for the init's own, a moment at most.
/// (The kernel tells of no exec; a few 1 ms looks, only in that window.)
fn wait_for_init_exec(init: u32, shim: u32) {
    let exe = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let Some(shims) = exe(shim) else {
        return;
    };
    let start = std::time::Instant::now();
    while exe(init).is_some_and(|e| e == shims) && start.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Moves this process into the cgroups of `pid` (as listed in its /proc/PID/cgroup), in
/// whichever hierarchies this mount namespace shows: cgroup2 at /sys/fs/cgroup (the
/// shim's view on hybrid hosts) or /sys/fs/cgroup/unified, v1 controllers under their
/// names, and gives `owner` their process lists. A hierarchy that cannot be joined is
/// left: limits there are best effort.
fn join_cgroups_of(pid: u32, (uid, gid): (u32, u32)) {
    let Ok(listing) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return;
    };
    let me = std::process::id().to_string();
    for line in listing.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if path == "/" {
            continue;
        }
        let relative = path.trim_start_matches('/');
        let candidates: Vec<std::path::PathBuf> = if controllers.is_empty() {
            ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
                .iter()
                .map(|m| Path::new(m).join(relative))
                .collect()
        } else {
            let name = controllers.trim_start_matches("name=");
            vec![Path::new("/sys/fs/cgroup").join(name).join(relative)]
        };
        if let Some(procs) = candidates
            .iter()
            .map(|c| c.join("cgroup.procs"))
            .find(|p| p.exists())
            && let Err(e) = std::fs::write(&procs, &me)
                .and_then(|()| std::os::unix::fs::chown(&procs, Some(uid), Some(gid)))
        {
            tracing::debug!("joining {}: {e}", procs.display());
        }
    }
}

/// Where `command` puts the request for the helper.
const REQUEST_ENV: &str = "SKIFF_EXEC_REQUEST";

/// `skiff __exec DIR` (the request in `SKIFF_EXEC_REQUEST`): `exec` as a helper process; its
/// exit status is the process's, 125 when skiff fails.
pub fn exec_main(dir: &Path) -> i32 {
    let request = std::env::var(REQUEST_ENV).unwrap_or_default();
    let result = serde_json::from_str::<ExecRequest>(&request)
        .map_err(ExecError::Request)
        .and_then(|r| exec(&ContainerDir::new(dir), &r));
    match result {
        Ok(code) => code,
        Err(e) => {
            crate::proc::tell_parent(format_args!("Error: {}", crate::error_chain(&e)));
            125
        }
    }
}

/// `skiff exec`: runs `request` in `container` (a name or an unambiguous prefix), in this
/// single-threaded process when a container could not write the skiff binary, else through
/// an `__exec` helper started from its sealed copy (see `proc::exposed_program`): the process
/// that joins the container must not expose a writable binary. Stdio is this process's.
pub fn run(root: &Path, container: &str, request: &ExecRequest) -> Result<i32, ExecError> {
    let c = container::find(root, container)?;
    let program = crate::proc::exposed_program(c.dir().path())?;
    if program == Path::new(crate::proc::SELF_EXE) {
        return exec(c.dir(), request);
    }
    let status = command(root, container, request)?
        .status()
        .map_err(|source| ExecError::Namespace {
            what: "starting the exec helper",
            source,
        })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(125))
}

/// The command that runs `request` in `container` (a name or an unambiguous prefix) from any
/// process, a multi-threaded one included: a single-threaded `__exec` helper that dies with
/// the caller. Stdio is the caller's to set; its exit status is the process's, 125 when skiff
/// fails.
pub fn command(
    root: &Path,
    container: &str,
    request: &ExecRequest,
) -> Result<std::process::Command, ExecError> {
    let c = container::find(root, container)?;
    let request = serde_json::to_string(request).map_err(ExecError::Request)?;
    let mut cmd = HelperCmd::Exec {
        dir: c.dir().path().to_path_buf(),
    }
    .command()?;
    cmd.env(REQUEST_ENV, request);
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_the_container_and_carries_the_request() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("containers/c0ffee");
        std::fs::create_dir_all(&dir).unwrap();
        let request = ExecRequest {
            args: vec!["sh".into(), "-c".into(), "echo $X".into()],
            env: vec!["X=1".into()],
            workdir: Some("/tmp".into()),
            user: Some("1000:1000".into()),
        };
        let cmd = command(d.path(), "c0f", &request).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["__exec".to_string(), dir.display().to_string()]);
        let env = cmd
            .get_envs()
            .find(|(k, _)| *k == REQUEST_ENV)
            .and_then(|(_, v)| v)
            .unwrap();
        let back: ExecRequest = serde_json::from_str(&env.to_string_lossy()).unwrap();
        assert_eq!(back, request);
        assert!(matches!(
            command(d.path(), "nothing", &request),
            Err(ExecError::Container(ContainerError::NotFound(_)))
        ));
        // Not running: the in-process exec refuses before touching any namespace.
        assert!(matches!(
            exec(&ContainerDir::new(&dir), &request),
            Err(ExecError::NotRunning(_))
        ));
    }
}
