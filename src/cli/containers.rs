//! Containers after `skiff run -d`: `ps`, `logs`, `kill`, `stop`, `rm`. State lives in the
//! store (`containers/<id>/state.json`, written by each container's shim).

use super::{Context, Format, print_json};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use skiff::runtime::container::{State, Status, read_state};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Also show containers that exited
    #[arg(long, short)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub container: String,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    #[arg(long, short, default_value = "KILL")]
    pub signal: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds between SIGTERM and SIGKILL
    #[arg(long, short, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill running containers first
    #[arg(long, short)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn dir(ctx: &Context, id: &str) -> Result<(PathBuf, Option<State>)> {
    let base = ctx.root.join("containers");
    let exact = base.join(id);
    let d = if exact.is_dir() {
        exact
    } else {
        let hits: Vec<PathBuf> = std::fs::read_dir(&base)
            .map(|r| {
                r.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(id))
                    })
                    .collect()
            })
            .unwrap_or_default();
        match hits.as_slice() {
            [one] => one.clone(),
            [] => bail!("no container {id}"),
            _ => bail!("{id} matches several containers"),
        }
    };
    let state = read_state(&d);
    Ok((d, state))
}

pub fn ps(ctx: &Context, a: PsArgs) -> Result<()> {
    let mut rows = Vec::new();
    for e in std::fs::read_dir(ctx.root.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(s) = read_state(&e.path()) else {
            continue;
        };
        if !a.all && s.status != Status::Running {
            continue;
        }
        rows.push(serde_json::json!({"id": e.file_name().to_string_lossy(), "image": s.image, "command": s.command.join(" "), "status": s.status.as_str(), "exit_code": s.exit_code}));
    }
    if ctx.format == Format::Json {
        return print_json(&rows);
    }
    println!(
        "{:<20} {:<45} {:<25} STATUS",
        "CONTAINER ID", "IMAGE", "COMMAND"
    );
    for r in rows {
        let status = match r["exit_code"].as_i64() {
            Some(c) => format!("{} ({c})", r["status"].as_str().unwrap_or_default()),
            None => r["status"].as_str().unwrap_or_default().to_string(),
        };
        let cmd: String = r["command"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(24)
            .collect();
        println!(
            "{:<20} {:<45} {:<25} {status}",
            r["id"].as_str().unwrap_or_default(),
            r["image"].as_str().unwrap_or_default(),
            cmd
        );
    }
    Ok(())
}

pub fn logs(ctx: &Context, a: LogsArgs) -> Result<()> {
    let (d, _) = dir(ctx, &a.container)?;
    let mut f = std::fs::File::open(d.join("log"))
        .with_context(|| format!("{} has no log (it did not run detached)", a.container))?;
    std::io::copy(&mut f, &mut std::io::stdout())?;
    Ok(())
}

fn signal(name: &str) -> Result<nix::sys::signal::Signal> {
    let n = name.trim_start_matches("SIG").to_ascii_uppercase();
    if let Ok(num) = n.parse::<i32>() {
        return Ok(nix::sys::signal::Signal::try_from(num)?);
    }
    Ok(format!("SIG{n}").parse::<nix::sys::signal::Signal>()?)
}

/// Signals the container: through its shim, which relays; SIGKILL (which cannot be relayed)
/// straight to the container's init, whose pid the runtime recorded. From the host's user
/// namespace, its owner may signal every process in it.
fn send(d: &std::path::Path, s: &State, sig: nix::sys::signal::Signal) -> Result<()> {
    if sig == nix::sys::signal::Signal::SIGKILL
        && let Some(pid) = skiff::runtime::container::container_pid(d)
    {
        return nix::sys::signal::kill(pid, sig).context("killing the container's init");
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.shim_pid as i32), sig)
        .context("signalling the container's shim")?;
    Ok(())
}

fn wait_exited(d: &std::path::Path, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if read_state(d).is_none_or(|s| s.status != Status::Running) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn kill(ctx: &Context, a: KillArgs) -> Result<()> {
    let (d, s) = dir(ctx, &a.container)?;
    let s = s
        .filter(|s| s.status == Status::Running)
        .with_context(|| format!("{} is not running", a.container))?;
    send(&d, &s, signal(&a.signal)?)
}

pub fn stop(ctx: &Context, a: StopArgs) -> Result<()> {
    for c in &a.containers {
        let (d, s) = dir(ctx, c)?;
        let Some(s) = s.filter(|s| s.status == Status::Running) else {
            continue;
        };
        send(&d, &s, nix::sys::signal::Signal::SIGTERM)?;
        if !wait_exited(&d, Duration::from_secs(a.time)) {
            send(&d, &s, nix::sys::signal::Signal::SIGKILL)?;
            if !wait_exited(&d, Duration::from_secs(10)) {
                bail!("{c} did not stop");
            }
        }
        println!("{c}");
    }
    Ok(())
}

pub async fn rm(ctx: &Context, a: RmArgs) -> Result<()> {
    for c in &a.containers {
        let (d, s) = dir(ctx, c)?;
        if let Some(s) = s.as_ref().filter(|s| s.status == Status::Created) {
            if !a.force {
                bail!("{c} is starting: wait for it or use --force");
            }
            // Its guardian takes down whatever the shim had started.
            let shim = nix::unistd::Pid::from_raw(s.shim_pid as i32);
            let _ = nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGKILL);
            let start = std::time::Instant::now();
            while skiff::proc::process_alive(s.shim_pid)
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(s) = s.filter(|s| s.status == Status::Running) {
            if !a.force {
                bail!("{c} is running: stop it first or use --force");
            }
            send(&d, &s, nix::sys::signal::Signal::SIGKILL)?;
            if !wait_exited(&d, Duration::from_secs(10)) {
                bail!("{c} did not stop");
            }
        }
        skiff::unpack::child::remove_paths(std::slice::from_ref(&d)).await?;
        println!("{c}");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// KEY=VALUE
    #[arg(long, short)]
    pub env: Vec<String>,
    #[arg(long, short)]
    pub workdir: Option<String>,
    /// UID[:GID] (numbers, or names from the image's /etc/passwd)
    #[arg(long, short)]
    pub user: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// Joins the container's user namespace (the shim's: the container has none of its own),
/// becomes root there, and has the container's runtime start the process. Single-threaded:
/// setns(CLONE_NEWUSER) and libcontainer both need it.
pub fn exec(ctx: &Context, a: ExecArgs) -> Result<()> {
    let (d, s) = dir(ctx, &a.container)?;
    let s = s
        .filter(|s| s.status == Status::Running)
        .with_context(|| format!("{} is not running", a.container))?;
    let plan: skiff::runtime::plan::RunPlan =
        serde_json::from_slice(&std::fs::read(d.join("plan.json"))?)?;
    let user = match &a.user {
        None => None,
        Some(u) => {
            // Names go through the image's files (the top-most layer that has them).
            let rootfs = plan
                .lowers
                .iter()
                .find(|l| l.join("etc/passwd").exists())
                .cloned()
                .unwrap_or_default();
            let (uid, gid, _, _) = skiff::runtime::spec::resolve_user(&rootfs, u)?;
            Some((uid, gid))
        }
    };
    if !nix::unistd::geteuid().is_root() {
        let ns = std::fs::File::open(format!("/proc/{}/ns/user", s.shim_pid))
            .context("opening the container's user namespace")?;
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUSER)
            .context("joining the container's user namespace")?;
        let root = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root)?;
        let root = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root)?;
    }
    // The network namespace the container inherited from its shim (private, a pod's): it
    // is not in the spec, so the runtime would not join it.
    // (With the host's network there is nothing to join, and a rootless process could not.)
    let net = std::fs::File::open(format!("/proc/{}/ns/net", s.shim_pid))
        .context("opening the container's network namespace")?;
    let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    };
    if !same(&net.metadata()?, &std::fs::metadata("/proc/self/ns/net")?) {
        nix::sched::setns(net, nix::sched::CloneFlags::CLONE_NEWNET)
            .context("joining the container's network namespace")?;
    }
    // The shim's mount namespace: the runtime must see what the shim showed it (cgroup2
    // only on hybrid hosts, the mounted root), or it would try the host's v1 cgroups.
    let ns = std::fs::File::open(format!("/proc/{}/ns/mnt", s.shim_pid))
        .context("opening the container's mount namespace")?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS)
        .context("joining the container's mount namespace")?;
    let id = d
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let request = skiff::runtime::backend::ExecRequest {
        args: a.command.clone(),
        env: a.env.clone(),
        cwd: a.workdir.clone(),
        user,
    };
    let (bundle, state, pid_file) = (d.join("bundle"), d.join("runtime"), d.join("container.pid"));
    let paths = skiff::runtime::backend::Paths {
        bundle: &bundle,
        state: &state,
        pid_file: &pid_file,
    };
    let code = plan.runtime.backend().exec(&id, &paths, &request)?;
    if code != 0 {
        return Err(super::run::ExitStatus(code).into());
    }
    Ok(())
}
