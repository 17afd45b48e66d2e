//! `skiff pod create|rm|ls`: namespaces shared by several containers, held by an infra
//! process; and `skiff system cleanup`, which removes what a killed shim left behind.

use super::{Context, Format, print_json};
use anyhow::Result;
use clap::{Args, Subcommand};
use skiff::runtime::network::Network;
use skiff::runtime::pod::{self, PodOptions};

#[derive(Subcommand, Debug)]
// Each command's options are defined only when it is the one given: clap would otherwise
// build every command's at each start.
#[command(defer = true)]
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
    /// As root: auto (ids of its own from the `containers` range in /etc/subuid and
    /// /etc/subgid) or host (its root is host root). Rootless: always your own namespace
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub userns: String,
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
// Each command's options are defined only when it is the one given: clap would otherwise
// build every command's at each start.
#[command(defer = true)]
pub enum SystemCommand {
    /// Remove what killed shims left behind: container processes, --rm containers' files,
    /// pods whose infra process is gone
    Cleanup,
}

pub async fn run(ctx: &Context, c: PodCommand) -> Result<()> {
    match c {
        PodCommand::Create(a) => create(ctx, a),
        PodCommand::Rm(a) => rm(ctx, a),
        PodCommand::Ls => ls(ctx),
    }
}

fn create(ctx: &Context, a: CreateArgs) -> Result<()> {
    let network = Network::parse(&a.network)?;
    let name = a
        .name
        .or(a.pod)
        .unwrap_or_else(|| format!("pod-{:012x}", skiff::time::now_nanos() & 0xffff_ffff_ffff));
    pod::create(
        &ctx.root,
        &PodOptions {
            name: name.clone(),
            network,
            hosts: skiff::runtime::plan::parse_hosts(&a.add_host)?,
            dns: a.dns,
            owner: a.owner,
            userns: a.userns.parse()?,
        },
    )?;
    outln!("{name}");
    Ok(())
}

fn rm(ctx: &Context, a: RmArgs) -> Result<()> {
    for name in &a.pods {
        pod::remove(&ctx.root, name, a.force)?;
        outln!("{name}");
    }
    Ok(())
}

fn ls(ctx: &Context) -> Result<()> {
    let pods = pod::list(&ctx.root);
    let status = |p: &pod::PodSummary| if p.running { "running" } else { "dead" };
    if ctx.format == Format::Json {
        let rows: Vec<_> = pods.iter().map(|p| serde_json::json!({"name": p.name, "status": status(p), "network": p.network, "containers": p.containers})).collect();
        return print_json(&rows);
    }
    outln!(
        "{:<24} {:<10} {:<12} CONTAINERS",
        "POD",
        "STATUS",
        "NETWORK"
    );
    for p in &pods {
        outln!(
            "{:<24} {:<10} {:<12} {}",
            p.name,
            status(p),
            p.network.name(),
            p.containers
        );
    }
    Ok(())
}

pub fn cleanup(ctx: &Context) -> Result<()> {
    let report = skiff::job::recovery::system_cleanup(&ctx.root)?;
    for line in &report {
        outln!("{line}");
    }
    if report.is_empty() {
        outln!("nothing to clean up");
    }
    Ok(())
}
