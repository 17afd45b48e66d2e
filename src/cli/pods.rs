//! `skiff pod create|rm|ls`: namespaces shared by several containers, held by an infra
//! process; and `skiff system cleanup`, which removes what a killed shim left behind.

use super::{Context, Format, print_json};
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use skiff::proc::process_alive;
use skiff::runtime::container::{Status, container_pid, read_state};
use skiff::runtime::network::Network;
use skiff::runtime::plan::RunPlan;
use skiff::runtime::pod::{self, PodState};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Subcommand, Debug)]
pub enum PodCommand {
    /// Create a pod: a network namespace (and user namespace) for several containers
    Create(CreateArgs),
    /// Remove pods and their containers (-f: also running ones)
    Rm(RmArgs),
    /// List pods
    Ls,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[arg(long)]
    pub name: Option<String>,
    /// private (loopback only), slirp4netns[:allow_host_loopback=true] or pasta[:ARGS]
    #[arg(long, default_value = "private")]
    pub network: String,
    /// NAME:IP lines for every member's /etc/hosts
    #[arg(long)]
    pub add_host: Vec<String>,
    #[arg(long)]
    pub dns: Vec<String>,
    /// The pod's name (instead of --name)
    pub pod: Option<String>,
    /// End the pod (kill its containers) when the process PID ends
    #[arg(long, value_name = "PID", hide = true)]
    pub owner: Option<u32>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(long, short)]
    pub force: bool,
    #[arg(required = true)]
    pub pods: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Remove what killed shims left behind: container processes, --rm containers' files,
    /// pods whose infra process is gone
    Cleanup,
}

pub async fn run(ctx: &Context, c: PodCommand) -> Result<()> {
    match c {
        PodCommand::Create(a) => create(ctx, a),
        PodCommand::Rm(a) => rm(ctx, a).await,
        PodCommand::Ls => ls(ctx),
    }
}

fn create(ctx: &Context, a: CreateArgs) -> Result<()> {
    let network = Network::parse(&a.network)?;
    if !network.is_private() {
        bail!(
            "--network {}: a pod has a network of its own (private, slirp4netns or pasta)",
            a.network
        );
    }
    let name = a
        .name
        .or(a.pod)
        .unwrap_or_else(|| format!("pod-{:012x}", skiff::time::now_nanos() & 0xffff_ffff_ffff));
    let hosts = a
        .add_host
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, ip)| (n.to_string(), ip.to_string()))
                .with_context(|| format!("--add-host {h:?}: expected NAME:IP"))
        })
        .collect::<Result<Vec<_>>>()?;
    let dir = ctx.root.join("pods").join(&name);
    if dir.exists() {
        bail!("a pod named {name} exists; remove it or pick another name");
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    pod::write(
        &dir,
        &PodState {
            name: name.clone(),
            network,
            hosts,
            dns: a.dns,
            infra_pid: None,
            owner: a.owner,
        },
    )?;
    let mut infra = std::process::Command::new(std::env::current_exe()?);
    infra.arg("__pod").arg(&dir);
    if let Err(log) = super::spawn_detached(&mut infra, &dir.join("log"))? {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("pod {name} did not start: {log}");
    }
    println!("{name}");
    Ok(())
}

/// SIGKILLs a container's init and waits for its shim to record the exit.
fn kill_container(d: &Path) -> bool {
    if let Some(pid) = container_pid(d) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if read_state(d).is_none_or(|s| s.status != Status::Running) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn stop_infra(state: &PodState) {
    if let Some(pid) = state.infra_pid.filter(|p| process_alive(*p)) {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while process_alive(pid.as_raw() as u32) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

async fn rm(ctx: &Context, a: RmArgs) -> Result<()> {
    for name in &a.pods {
        let dir = ctx.root.join("pods").join(name);
        if !dir.join("pod.json").exists() {
            bail!("no pod {name}");
        }
        let state = pod::read(&dir)?;
        let containers = pod::members(&dir);
        let running: Vec<&PathBuf> = containers
            .iter()
            .filter(|d| read_state(d).is_some_and(|s| s.status == Status::Running))
            .collect();
        if !running.is_empty() && !a.force {
            bail!(
                "pod {name} has {} running container(s): stop them first or use --force",
                running.len()
            );
        }
        for d in running {
            if !kill_container(d) {
                bail!("a container of pod {name} ({}) did not stop", d.display());
            }
        }
        skiff::unpack::child::remove_paths(&containers).await?;
        stop_infra(&state);
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        println!("{name}");
    }
    Ok(())
}

fn ls(ctx: &Context) -> Result<()> {
    let mut rows = vec![];
    for e in std::fs::read_dir(ctx.root.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(state) = pod::read(&e.path()) else {
            continue;
        };
        let status = if state.infra_pid.is_some_and(process_alive) {
            "running"
        } else {
            "dead"
        };
        let containers = pod::members(&e.path()).len();
        rows.push(serde_json::json!({"name": state.name, "status": status, "network": state.network, "containers": containers}));
    }
    if ctx.format == Format::Json {
        return print_json(&rows);
    }
    println!(
        "{:<24} {:<10} {:<12} CONTAINERS",
        "POD", "STATUS", "NETWORK"
    );
    for r in rows {
        let net = match &r["network"] {
            serde_json::Value::String(s) => s.clone(),
            v => v
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_default(),
        };
        println!(
            "{:<24} {:<10} {:<12} {}",
            r["name"].as_str().unwrap_or_default(),
            r["status"].as_str().unwrap_or_default(),
            net,
            r["containers"]
        );
    }
    Ok(())
}

/// Containers whose shim is gone: their processes are killed (the guardian normally did
/// that already), --rm ones are removed, the others are kept as exited. Pods whose infra
/// process is gone are removed, and the files of jobs whose `skiff job` process is gone. Mounts need nothing: they lived in the dead shims'
/// namespaces.
pub async fn cleanup(ctx: &Context) -> Result<()> {
    let mut remove = vec![];
    let mut report = vec![];
    for e in std::fs::read_dir(ctx.root.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let d = e.path();
        let id = e.file_name().to_string_lossy().to_string();
        let plan: Option<RunPlan> = std::fs::read(d.join("plan.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
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
            report.push(format!("killed the processes of container {id}"));
        }
        if skiff::runtime::container::kill_unstarted_clones(&d, &[std::process::id()]) > 0 {
            report.push(format!("killed the unstarted init of container {id}"));
        }
        remove_cgroup(&id);
        if remove_on_exit {
            remove.push(d);
            report.push(format!("removed container {id}"));
        } else if let Some(mut s) = read_state(&d) {
            s.status = Status::Exited;
            skiff::runtime::container::write_state(&d, &s);
            report.push(format!("marked container {id} exited (its shim died)"));
        }
    }
    for e in std::fs::read_dir(ctx.root.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
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
            // Its members cannot run without it.
            for d in pod::members(&e.path()) {
                if let Some(pid) = container_pid(&d) {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
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
    // Directories of `skiff job` processes killed before their own cleanup (their stage
    // scripts hold the job's variables).
    for e in std::fs::read_dir(ctx.root.join("jobs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        let owner = std::fs::read_to_string(e.path().join(super::job::JOB_OWNER))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            // `.<id>.<pid>`: still being made.
            .or_else(|| name.strip_prefix('.')?.rsplit('.').next()?.parse().ok());
        // No owner at all: its own removal was cut short.
        let abandoned = owner.is_none_or(|pid| !process_alive(pid));
        if abandoned {
            remove.push(e.path());
            report.push(format!(
                "removed the files of job {}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    remove.sort();
    remove.dedup();
    skiff::unpack::child::remove_paths(&remove).await?;
    for line in &report {
        println!("{line}");
    }
    if report.is_empty() {
        println!("nothing to clean up");
    }
    Ok(())
}

/// The empty cgroup a root container's runtime made (it could not delete it after a crash).
fn remove_cgroup(id: &str) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let path = skiff::runtime::container::cgroup_path(id);
    let relative = path.strip_prefix("/").unwrap_or(&path);
    for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let dir = Path::new(mount).join(relative);
        if dir.join("cgroup.procs").exists() {
            // Processes may take a moment to leave after SIGKILL.
            let start = Instant::now();
            while std::fs::remove_dir(&dir).is_err() && start.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
