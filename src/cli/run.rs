//! `skiff run`: flags to `container::CreateOptions`, the image pulled if needed, then the
//! container created and started (its shim owns it; in the foreground this process only
//! forwards signals and reports the exit status).

use super::progress::ProgressMode;
use super::{Context, RegistryArgs};
use anyhow::{Context as _, Result};
use clap::Args;
use skiff::image::{Policy, Puller, parse_policies};
use skiff::runtime::backend::RuntimeChoice;
use skiff::runtime::container::{self, CreateOptions};
use skiff::runtime::network::Network;
use skiff::runtime::plan::{self, Limits, Volume};
use skiff::runtime::seccomp::SeccompPolicy;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Remove the container's files when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run in the background: print the ID, log to `skiff logs`
    #[arg(long, short)]
    pub detach: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// KEY=VALUE (or KEY, taken from this environment)
    #[arg(long, short)]
    pub env: Vec<String>,
    #[arg(long, short)]
    pub workdir: Option<String>,
    /// Replace the image's entrypoint (docker's rule: its Cmd is dropped too); a JSON array
    /// (`["/bin/sh","-c"]`) gives several words, `""` none
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// USER[:GROUP], names or numbers, through the image's /etc/passwd and /etc/group
    #[arg(long, short)]
    pub user: Option<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// host, none, private (own namespace, loopback up), slirp4netns[:allow_host_loopback=true]
    /// or pasta[:ARGS] (private, with outbound access)
    #[arg(long, default_value = "host")]
    pub network: String,
    /// Join a pod made by `skiff pod create`: its network, its /etc/hosts
    #[arg(long)]
    pub pod: Option<String>,
    /// NAME:IP lines for /etc/hosts (in a pod: for every member)
    #[arg(long)]
    pub add_host: Vec<String>,
    /// DNS server for /etc/resolv.conf
    #[arg(long)]
    pub dns: Vec<String>,
    /// Read KEY=VALUE lines from a file (before -e)
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Bind mount SRC:DST[:ro]
    #[arg(long, short)]
    pub volume: Vec<String>,
    /// A tmpfs at DST[:OPTIONS]
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Root filesystem read-only (tmpfs on /tmp, /var/tmp and /run, as podman does)
    #[arg(long)]
    pub read_only: bool,
    #[arg(long)]
    pub cap_add: Vec<String>,
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined, seccomp=FILE or seccomp=builtin [default: containers-common's
    /// seccomp.json, else the same profile built in]
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// As root: auto (ids of its own from the `containers` range in /etc/subuid and
    /// /etc/subgid) or host (its root is host root). Rootless: always your own namespace
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub userns: String,
    /// Keep stdin open (attach it to the container)
    #[arg(long, short)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal for the container (with -i: your keys go to it)
    #[arg(long, short)]
    pub tty: bool,
    /// Memory limit (bytes, or with k, m, g)
    #[arg(long, short)]
    pub memory: Option<String>,
    /// CPU limit, in CPUs (1.5)
    #[arg(long)]
    pub cpus: Option<f64>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// libcontainer (embedded), or an OCI runtime binary: crun, runc or a path
    #[arg(long, default_value = "libcontainer")]
    pub runtime: String,
    /// Pull policy for the image
    #[arg(long, default_value = "missing")]
    pub pull: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The container's exit status, to become skiff's own.
#[derive(Debug)]
pub struct ExitStatus(pub i32);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "container exited with {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

/// `skiff run` up to its image: the options, and in the foreground the container's shim,
/// started now, before any runtime or thread exists (its spawn is cheapest from a process
/// of one thread), to wait for the container while the image is read or pulled.
pub struct Prepared {
    args: RunArgs,
    opts: CreateOptions,
    early: Option<container::EarlyShim>,
    puller: Puller,
    policies: Vec<Policy>,
}

impl Prepared {
    /// Whether the image is in the store and its pull policy takes it from there: then no
    /// download runs in parallel, and one thread is all `run` needs.
    pub fn image_is_stored(&self) -> bool {
        self.policies.first() != Some(&Policy::Always)
            && matches!(self.puller.find_local(&self.args.image), Ok(Some(_)))
    }
}

pub fn prepare(ctx: &Context, a: RunArgs) -> Result<Prepared> {
    let opts = CreateOptions {
        name: a.name.clone(),
        command: a.command.clone(),
        entrypoint: a.entrypoint.as_deref().map(plan::parse_entrypoint),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        network: Network::parse(&a.network)?,
        pod: a.pod.clone(),
        hosts: plan::parse_hosts(&a.add_host)?,
        dns: a.dns.clone(),
        volumes: a
            .volume
            .iter()
            .map(|v| Volume::parse(v))
            .collect::<Result<_, _>>()?,
        tmpfs: a.tmpfs.clone(),
        read_only: a.read_only,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        tty: a.tty,
        remove: a.rm,
        limits: Limits {
            memory: a.memory.as_deref().map(plan::parse_bytes).transpose()?,
            cpus: a.cpus,
            pids: a.pids_limit,
        },
        runtime: RuntimeChoice::parse(&a.runtime)?,
        seccomp: SeccompPolicy::from_security_opts(&a.security_opt)?,
        userns: a.userns.parse()?,
        ..Default::default()
    };
    let early = match a.detach {
        true => None,
        false => container::EarlyShim::spawn(&ctx.root, &opts, a.interactive)?,
    };
    let puller = a.registry.puller(ctx.store()?, ProgressMode::Quiet, true)?;
    let policies = parse_policies(&a.pull).map_err(anyhow::Error::msg)?;
    Ok(Prepared {
        args: a,
        opts,
        early,
        puller,
        policies,
    })
}

pub async fn run(ctx: &Context, prepared: Prepared) -> Result<()> {
    let Prepared {
        args: a,
        mut opts,
        early,
        puller,
        policies,
    } = prepared;
    // What can be refused is refused before pulling (an early shim's spawn checked it).
    if early.is_none() {
        container::check(&ctx.root, &opts)?;
    }
    if !opts.limits.is_empty()
        && let Err(why) = skiff::runtime::spec::cgroup_limits()
    {
        eprintln!(
            "WARNING: --memory/--cpus/--pids-limit are NOT enforced: {why}. \
             Limits need cgroup v2 with the memory, cpu and pids controllers delegated to you, or root with them on cgroup v1."
        );
    }
    // The index entry, manifest and config, each read once.
    let image = puller
        .ensure_resolved(&a.image, &policies)
        .await
        .with_context(|| format!("image {}", a.image))?;
    opts.env = plan::resolve_env(&a.env_file, &a.env)?;
    if let Some(shim) = early {
        return match shim.run(&ctx.root, &image, &opts).await? {
            0 => Ok(()),
            code => Err(ExitStatus(code).into()),
        };
    }
    let c = container::create(&ctx.root, &image, &opts)?;
    if a.detach {
        // The shim reports "started", so that `run -d` returns once the container runs (an
        // `exec` right after it finds it) or fails with the shim's error.
        c.start_detached()?;
        outln!("{}", c.id());
        return Ok(());
    }
    match c.run_attached(a.interactive).await? {
        0 => Ok(()),
        code => Err(ExitStatus(code).into()),
    }
}
