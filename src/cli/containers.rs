//! Containers after `skiff run -d`: `ps`, `logs`, `kill`, `stop`, `rm`. State lives in the
//! store (`containers/<id>/state.json`, written by each container's shim).

use super::{Context, Format, print_json};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use skiff::runtime::shim::{State, read_state};
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
        if !a.all && s.status != "running" {
            continue;
        }
        rows.push(serde_json::json!({"id": e.file_name().to_string_lossy(), "image": s.image, "command": s.command.join(" "), "status": s.status, "exit_code": s.exit_code}));
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

/// Signals the container: through its shim (which relays), or for KILL through the runtime.
fn send(d: &std::path::Path, s: &State, sig: nix::sys::signal::Signal) -> Result<()> {
    if sig == nix::sys::signal::Signal::SIGKILL {
        // SIGKILL cannot be relayed: ask the runtime to deliver it to the container.
        let id = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let out = std::process::Command::new("crun")
            .arg("--root")
            .arg(d.join("runtime"))
            .args(["kill", &id, "KILL"])
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        tracing::debug!("crun kill: {}", String::from_utf8_lossy(&out.stderr));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.shim_pid as i32), sig)
        .context("signalling the container's shim")?;
    Ok(())
}

fn wait_exited(d: &std::path::Path, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if read_state(d).is_none_or(|s| s.status != "running") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn kill(ctx: &Context, a: KillArgs) -> Result<()> {
    let (d, s) = dir(ctx, &a.container)?;
    let s = s
        .filter(|s| s.status == "running")
        .with_context(|| format!("{} is not running", a.container))?;
    send(&d, &s, signal(&a.signal)?)
}

pub fn stop(ctx: &Context, a: StopArgs) -> Result<()> {
    for c in &a.containers {
        let (d, s) = dir(ctx, c)?;
        let Some(s) = s.filter(|s| s.status == "running") else {
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
        if let Some(s) = s.filter(|s| s.status == "running") {
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
