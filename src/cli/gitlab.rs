//! `skiff gitlab config|prepare|run|cleanup`: a GitLab Runner custom-executor driver.
//!
//! The driver itself is `skiff::job::driver`; this reads the runner's environment, finds the
//! helper image, and turns outcomes into the runner's exit codes.

use super::job::ConsoleLog;
use super::progress::ProgressMode;
use super::{Context, RegistryArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use skiff::error_chain;
use skiff::gitlab::config::AdminConfig;
use skiff::gitlab::executor::ExecutorEnv;
use skiff::gitlab::payload::JobPayload;
use skiff::gitlab::register;
use skiff::job::driver::{self, PrepareFlags, PrepareOptions, StageOutcome};
use skiff::job::local::{LocalRuntime, StoreImages};
use skiff::oci::manifest::PlatformSpec;
use std::path::{Path, PathBuf};

// The driver's admin file, on every verb (the runner passes the same arguments to each). A
// comment: see `RegistryArgs`.
#[derive(Args, Debug)]
pub struct GitlabArgs {
    /// The driver's settings, GitLab Runner's [runners.docker] keys [default:
    /// $XDG_CONFIG_HOME/skiff/gitlab.toml rootless, /etc/skiff/gitlab.toml as root]
    #[arg(long, global = true, value_name = "FILE", env = "SKIFF_GITLAB_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: GitlabCommand,
}

#[derive(Subcommand, Debug)]
// Each command's options are defined only when it is the one given: clap would otherwise
// build every command's at each start.
#[command(defer = true)]
pub enum GitlabCommand {
    /// config_exec: the driver's JSON for the runner (--check: the admin file instead)
    Config {
        /// Check the admin file and print what it sets (exit 1 on an error)
        #[arg(long)]
        check: bool,
    },
    /// prepare_exec: images, pod, services, helper and build containers
    Prepare(PrepareArgs),
    /// run_exec SCRIPT STAGE: one stage script in the right container
    Run { script: PathBuf, stage: String },
    /// cleanup_exec: removes everything the job made
    Cleanup,
    /// Print the --template-config for `gitlab-runner register --executor custom`
    RegisterTemplate,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Network of the job's pod: slirp4netns (default when installed), pasta or private
    #[arg(long)]
    pub network: Option<String>,
    /// Seconds to wait for each service's ports (-1: no wait) [default: the admin file's, else 30]
    #[arg(long, allow_negative_numbers = true)]
    pub wait_for_services_timeout: Option<i64>,
    /// Helper image to use instead of the runner's own for its version
    #[arg(long, env = "SKIFF_HELPER_IMAGE")]
    pub helper_image: Option<String>,
    /// Directories of prebuilt helper tarballs, searched before the runner's own (`:` separated)
    #[arg(long = "helper-dir", env = "SKIFF_HELPER_DIRS", value_delimiter = ':')]
    pub helper_dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(ctx: &Context, a: GitlabArgs) -> Result<()> {
    let env = ExecutorEnv::from_process();
    let admin_file = a.config.filter(|p| !p.as_os_str().is_empty());
    match a.command {
        GitlabCommand::Config { check: true } => check_config(ctx, admin_file.as_deref()),
        GitlabCommand::RegisterTemplate => {
            let binary = skiff::proc::own_binary()?;
            print!(
                "{}",
                register::template_for_admin_file(&binary, admin_file.as_deref())?
            );
            Ok(())
        }
        GitlabCommand::Config { check: false } => super::print_json(&driver::config()),
        GitlabCommand::Prepare(a) => {
            if let Err(e) = prepare(ctx, &env, &a, admin_file.as_deref()).await {
                // Pull and start failures are system failures (the runner may retry them).
                eprintln!("ERROR: skiff prepare: {e:#}");
                return Err(super::run::ExitStatus(env.system_failure_code()).into());
            }
            Ok(())
        }
        GitlabCommand::Run { script, stage } => run_stage(ctx, &env, &script, &stage).await,
        GitlabCommand::Cleanup => {
            driver::cleanup(&ctx.root, &env, &runtime(ctx)).await?;
            Ok(())
        }
    }
}

fn runtime(ctx: &Context) -> LocalRuntime {
    LocalRuntime {
        root: ctx.root.clone(),
    }
}

async fn prepare(
    ctx: &Context,
    env: &ExecutorEnv,
    a: &PrepareArgs,
    admin_file: Option<&Path>,
) -> Result<()> {
    // Checked before anything runs. Flags over the file, the file over the defaults.
    let admin = AdminConfig::load(admin_file)?;
    let payload = JobPayload::of(env)?;
    let settings = driver::with_job_registry_auth(a.registry.resolve()?, &payload);
    let images = StoreImages {
        puller: settings.puller(
            ctx.store()?,
            PlatformSpec::host(),
            ProgressMode::JobLog.observer(),
            true,
        ),
    };
    let flags = PrepareFlags {
        network: a.network.clone(),
        wait_for_services_timeout: a.wait_for_services_timeout,
        helper_image: a.helper_image.clone(),
        helper_dirs: a.helper_dirs.clone(),
    };
    let opts = PrepareOptions::resolve(ctx.store()?, env, &payload, admin, flags).await?;
    let runtime = runtime(ctx);
    driver::prepare(
        &ctx.root,
        env,
        &payload,
        &opts,
        &runtime,
        &images,
        &ConsoleLog,
    )
    .await
    .map_err(|e| anyhow::anyhow!(error_chain(&e)))
}

/// `config --check`: what the admin file sets, or every problem in it (exit 1).
fn check_config(ctx: &Context, file: Option<&Path>) -> Result<()> {
    let shown = file
        .map(Path::to_path_buf)
        .unwrap_or_else(AdminConfig::default_path);
    let config = match AdminConfig::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {}", error_chain(&e));
            return Err(super::run::ExitStatus(1).into());
        }
    };
    if ctx.format == super::Format::Json {
        return super::print_json(&config);
    }
    if config.source.is_none() {
        outln!("{}: no such file; the defaults apply", shown.display());
        return Ok(());
    }
    outln!("{}: valid", shown.display());
    for (key, value) in config.settings() {
        outln!("  {key} = {value}");
    }
    for ignored in &config.ignored {
        outln!("  {} ignored: {}", ignored.key, ignored.reason);
    }
    Ok(())
}

async fn run_stage(ctx: &Context, env: &ExecutorEnv, script: &Path, stage: &str) -> Result<()> {
    let runtime = runtime(ctx);
    let cancel = skiff::proc::terminated()?;
    let outcome = driver::run_stage(&ctx.root, env, script, stage, &runtime, &ConsoleLog, cancel)
        .await
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    match outcome {
        StageOutcome::Succeeded => Ok(()),
        StageOutcome::SystemFailure { reason } => {
            eprintln!("ERROR: skiff run: {reason}");
            Err(super::run::ExitStatus(env.system_failure_code()).into())
        }
        StageOutcome::BuildFailure { .. } => {
            Err(super::run::ExitStatus(env.build_failure_code()).into())
        }
    }
}
