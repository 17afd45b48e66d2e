//! Command line: clap definitions, settings resolution, one file per command group.

/// `println!` for a command's output: a reader that went away (`| head -1`) ends the output
/// quietly instead of with a panic (the command itself goes on to its end).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

mod archive;
mod bundle;
mod containers;
mod gitlab;
mod images;
mod info;
pub mod internal;
mod job;
mod login;
mod manual;
mod pipeline;
mod pods;
mod progress;
mod pull;
mod push;
mod rootless;
pub mod run;
mod settings;

pub use settings::{Context, RegistryArgs};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "skiff",
    version,
    about = "Daemonless, rootless OCI executor for CI jobs"
)]
pub struct Cli {
    /// Store location [default: $XDG_DATA_HOME/skiff rootless, /var/lib/skiff as root]
    #[arg(long, global = true, env = "SKIFF_ROOT")]
    pub root: Option<PathBuf>,
    /// error, warn, info, debug or trace
    #[arg(long, global = true, default_value = "warn", env = "SKIFF_LOG_LEVEL")]
    pub log_level: String,
    /// Output format
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub format: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// skiff save only: docker save's layout (the default for save)
    DockerArchive,
    /// skiff save only: an OCI layout in a tar
    OciArchive,
}

#[derive(Subcommand, Debug)]
// Each command's options are defined only when it is the one given: clap would otherwise
// build every command's at each start.
#[command(defer = true)]
pub enum Command {
    /// Pull an image from a registry into the store
    Pull(pull::PullArgs),
    /// Push an image to a registry (same credentials and TLS rules as pull)
    Push(push::PushArgs),
    /// One archive with every image a pipeline needs, for an air-gapped network
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Run a command in a running container
    Exec(containers::ExecArgs),
    /// List containers (running; -a: all)
    Ps(containers::PsArgs),
    /// Print a detached container's output
    Logs(containers::LogsArgs),
    /// Send a signal to a container
    Kill(containers::KillArgs),
    /// SIGTERM, then SIGKILL after the timeout
    Stop(containers::StopArgs),
    /// Remove containers (-f: kill running ones first)
    Rm(containers::RmArgs),
    /// What this host offers for rootless containers, and what to fix
    Info,
    /// Pods: several containers in one network namespace
    #[command(subcommand)]
    Pod(pods::PodCommand),
    /// Maintenance: `system cleanup` after crashes
    #[command(subcommand)]
    System(pods::SystemCommand),
    /// Run a container from an image, rootless, without a daemon
    Run(Box<run::RunArgs>),
    /// Run one job of a .gitlab-ci.yml with its services, as GitLab Runner would
    Job(Box<job::JobArgs>),
    /// A whole .gitlab-ci.yml as GitLab resolves it: its jobs and why (--list), merged (--preview)
    Pipeline(pipeline::PipelineArgs),
    /// GitLab Runner custom-executor driver: config, prepare, run SCRIPT STAGE, cleanup
    Gitlab(Box<gitlab::GitlabArgs>),
    /// List images in the store
    Images(images::ImagesArgs),
    /// Show an image's manifest, config and origin
    Inspect(images::InspectArgs),
    /// Add names to an image
    Tag(images::TagArgs),
    /// Remove image names, and the blobs no other name needs
    Rmi(images::RmiArgs),
    /// Remove blobs that no image needs and leftovers of interrupted writes
    Prune,
    /// Verify every blob's digest and every image's completeness
    Fsck,
    /// Make an image from a root filesystem tarball, named exactly as given
    Import(archive::ImportArgs),
    /// Load images from a docker-archive or oci-archive, with their names
    Load(archive::LoadArgs),
    /// Write images to a docker-archive or oci-archive
    Save(archive::SaveArgs),
    /// GitLab Runner helper image: resolve its name and source, import prebuilt tarballs
    #[command(subcommand)]
    Helper(archive::HelperCommand),
    /// Flatten an image's layers into a plain directory (like umoci unpack)
    Unpack(rootless::UnpackArgs),
    /// Run a shell or command as root of the store's user namespace (like podman unshare)
    Unshare(rootless::UnshareArgs),
    /// Inside `skiff unshare`: mount an image's layers as overlay and print the path
    Mount(rootless::MountArgs),
    /// Log in to a registry (verified against it; stored with mode 0600)
    Login(login::LoginArgs),
    /// Remove stored credentials for a registry
    Logout(login::LogoutArgs),
    /// Print the shell completion script for bash, zsh or fish
    #[command(after_help = manual::COMPLETION_PLACES)]
    Completion(manual::CompletionArgs),
}

/// `text` on stdout; a reader that went away (`| head`) ends the output quietly.
pub fn print_text(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// One line on stdout, as `println!`, except that a closed reader is not an error.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            panic!("failed printing to stdout: {e}")
        }
        _ => {}
    }
}

/// `v` as JSON on stdout; like `print_text`, a reader that went away ends it quietly.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    print_text(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// skiff's exit status for a failed command: a container's own status (`run`, `exec`)
/// passes through; every failure of skiff itself is 125, as with podman and docker.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<run::ExitStatus>() {
        Some(status) => status.0 as u8,
        None => 125,
    }
}

/// Logs on stderr at `level`. libcontainer logs every failure at ERROR on its way up; skiff
/// reports the error itself once, with context, so its logs show with debug and trace only.
pub fn init_tracing(level: &str, ansi: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let runtime = match level {
        "debug" | "trace" => "",
        _ => "libcontainer=off,libcgroups=off",
    };
    // Targets, not EnvFilter: the same directives, without the regular expressions EnvFilter
    // compiles in every process, each shim's included (a tenth of a millisecond).
    let directives = [
        format!("skiff={level}"),
        level.to_string(),
        runtime.to_string(),
    ];
    let filter = directives
        .iter()
        .filter(|d| !d.is_empty())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
        .parse::<tracing_subscriber::filter::Targets>()
        .unwrap_or_else(|_| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
        });
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(ansi)
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(filter)
        .try_init();
}

pub fn run(cli: Cli) -> Result<()> {
    init_tracing(
        &cli.log_level,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let ctx = Context {
        // Absolute: the store's paths go into plans that shims and runtimes read elsewhere.
        root: std::path::absolute(cli.root.clone().unwrap_or_else(skiff::store::default_root))
            .context("--root: the current directory")?,
        format: cli.format,
    };
    if matches!(ctx.format, Format::DockerArchive | Format::OciArchive)
        && !matches!(cli.command, Command::Save(_))
    {
        anyhow::bail!("--format docker-archive and oci-archive apply to skiff save only");
    }
    // Commands that enter a user namespace need a process with a single thread: only the
    // others start a runtime, and only for themselves.
    match cli.command {
        Command::Unpack(a) => rootless::unpack(&ctx, a),
        Command::Info => info::run(&ctx),
        Command::Ps(a) => containers::ps(&ctx, a),
        Command::Exec(a) => containers::exec(&ctx, a),
        Command::Logs(a) => containers::logs(&ctx, a),
        Command::Kill(a) => containers::kill(&ctx, a),
        Command::Stop(a) => containers::stop(&ctx, a),
        Command::Rm(a) => containers::rm(&ctx, a),
        Command::Unshare(a) => rootless::unshare(&ctx, a),
        Command::Mount(a) => rootless::mount(&ctx, a),
        Command::Import(a) => archive::import_cmd(&ctx, a),
        Command::Load(a) => archive::load_cmd(&ctx, a),
        Command::Save(a) => archive::save_cmd(&ctx, a),
        Command::Helper(c) => archive::helper_cmd(&ctx, c),
        Command::System(pods::SystemCommand::Cleanup) => pods::cleanup(&ctx),
        Command::Images(a) => images::list(&ctx, a),
        Command::Inspect(a) => images::inspect(&ctx, a),
        Command::Tag(a) => images::tag(&ctx, a),
        Command::Fsck => images::fsck(&ctx),
        Command::Logout(a) => login::logout(&ctx, a),
        Command::Completion(a) => manual::completion(a),
        Command::Pull(a) => block_on(pull::run(&ctx, a)),
        Command::Push(a) => block_on(push::run(&ctx, a)),
        Command::Run(a) => {
            let prepared = run::prepare(&ctx, *a)?;
            // A container's start is quicker from a runtime of one thread (no workers to
            // start, wake and end); a pull gets the threads it downloads in parallel on.
            match prepared.image_is_stored() {
                true => block_on_one_thread(run::run(&ctx, prepared)),
                false => block_on(run::run(&ctx, prepared)),
            }
        }
        Command::Job(a) => block_on(job::run(&ctx, *a)),
        Command::Pipeline(a) => pipeline::run(&ctx, a),
        Command::Gitlab(c) => block_on(gitlab::run(&ctx, *c)),
        Command::Pod(c) => block_on(pods::run(&ctx, c)),
        Command::Bundle(c) => block_on(bundle::run(&ctx, c)),
        Command::Rmi(a) => block_on(images::rmi(&ctx, a)),
        Command::Prune => block_on(images::prune(&ctx)),
        Command::Login(a) => block_on(login::login(&ctx, a)),
    }
}

fn block_on(command: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    finish_on(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        command,
    )
}

fn block_on_one_thread(command: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    finish_on(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        command,
    )
}

fn finish_on(
    runtime: tokio::runtime::Runtime,
    command: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let done = runtime.block_on(command);
    // The process ends next: a dropped runtime would first wait for its threads to stop
    // (most of a millisecond after a container's status came back). Every command has
    // awaited its blocking work by now; what an early error left running ends as under a
    // kill, which the store is made to survive.
    runtime.shutdown_background();
    done
}
