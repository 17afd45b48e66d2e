//! Containers after `skiff run -d`: `ps`, `logs`, `kill`, `stop`, `rm`. State lives in the
//! store (`containers/<id>/state.json`, written by each container's shim).

use super::{Context, Format, print_json};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use skiff::runtime::container;
use skiff::runtime::exec::{ExecError, ExecRequest};
use std::time::Duration;

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

pub fn ps(ctx: &Context, a: PsArgs) -> Result<()> {
    let rows = container::list(&ctx.root, a.all);
    if ctx.format == Format::Json {
        let rows: Vec<_> = rows.iter().map(|(id, s)| serde_json::json!({"id": id, "image": s.image, "command": s.command.join(" "), "status": s.status.as_str(), "exit_code": s.exit_code})).collect();
        return print_json(&rows);
    }
    outln!(
        "{:<20} {:<45} {:<25} STATUS",
        "CONTAINER ID",
        "IMAGE",
        "COMMAND"
    );
    for (id, s) in rows {
        let status = match s.exit_code {
            Some(c) => format!("{} ({c})", s.status.as_str()),
            None => s.status.as_str().to_string(),
        };
        let cmd: String = s.command.join(" ").chars().take(24).collect();
        outln!("{id:<20} {:<45} {cmd:<25} {status}", s.image);
    }
    Ok(())
}

pub fn logs(ctx: &Context, a: LogsArgs) -> Result<()> {
    let c = container::find(&ctx.root, &a.container)?;
    let mut f = std::fs::File::open(c.dir().log())
        .with_context(|| format!("{} has no log (it did not run detached)", a.container))?;
    std::io::copy(&mut f, &mut std::io::stdout())?;
    Ok(())
}

pub fn kill(ctx: &Context, a: KillArgs) -> Result<()> {
    Ok(container::find(&ctx.root, &a.container)?.kill_by_name(&a.signal)?)
}

pub fn stop(ctx: &Context, a: StopArgs) -> Result<()> {
    for name in &a.containers {
        if container::find(&ctx.root, name)?.stop(Duration::from_secs(a.time))? {
            outln!("{name}");
        }
    }
    Ok(())
}

pub fn rm(ctx: &Context, a: RmArgs) -> Result<()> {
    for name in &a.containers {
        container::find(&ctx.root, name)?.remove(a.force)?;
        outln!("{name}");
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

/// Runs in this process, which is single-threaded (the runtime needs it), or in a helper
/// started from a sealed copy of skiff where a container could write the binary.
pub fn exec(ctx: &Context, a: ExecArgs) -> Result<()> {
    let request = ExecRequest {
        args: a.command,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
    };
    let code = match skiff::runtime::exec::run(&ctx.root, &a.container, &request) {
        Err(ExecError::NotRunning(_)) => bail!("{} is not running", a.container),
        other => other?,
    };
    if code != 0 {
        return Err(super::run::ExitStatus(code).into());
    }
    Ok(())
}
