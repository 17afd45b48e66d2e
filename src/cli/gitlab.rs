//! `skiff gitlab config|prepare|run|cleanup`: a GitLab Runner custom-executor driver.
//!
//! The driver itself is `skiff::job::driver`; this reads the runner's environment, finds the
//! helper image, and turns outcomes into the runner's exit codes.

use super::job::{ConsoleLog, job_puller};
use super::{Context, RegistryArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use skiff::error_chain;
use skiff::gitlab::executor::ExecutorEnv;
use skiff::job::driver::{self, PrepareOptions, StageOutcome};
use skiff::job::local::{LocalRuntime, StoreImages};
use skiff::runtime::network;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum GitlabCommand {
    /// config_exec: the driver's JSON for the runner
    Config,
    /// prepare_exec: images, pod, services, helper and build containers
    Prepare(PrepareArgs),
    /// run_exec SCRIPT STAGE: one stage script in the right container
    Run(RunStageArgs),
    /// cleanup_exec: removes everything the job made
    Cleanup,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Network of the job's pod: slirp4netns (default when installed), pasta or private
    #[arg(long)]
    pub network: Option<String>,
    /// Seconds to wait for each service's ports (-1: no wait)
    #[arg(long, default_value_t = 30, allow_negative_numbers = true)]
    pub wait_for_services_timeout: i64,
    /// Helper image to use instead of the runner's own for its version
    #[arg(long, env = "SKIFF_HELPER_IMAGE")]
    pub helper_image: Option<String>,
    /// Directories of prebuilt helper tarballs, searched before the runner's own (`:` separated)
    #[arg(long = "helper-dir", env = "SKIFF_HELPER_DIRS", value_delimiter = ':')]
    pub helper_dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct RunStageArgs {
    pub script: PathBuf,
    pub stage: String,
}

pub async fn run(ctx: &Context, c: GitlabCommand) -> Result<()> {
    let env = ExecutorEnv::from_process();
    match c {
        GitlabCommand::Config => {
            let hostname = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().to_string())
                .unwrap_or_default();
            super::print_json(&driver::config(&hostname))
        }
        GitlabCommand::Prepare(a) => {
            if let Err(e) = prepare(ctx, &env, &a).await {
                // Pull and start failures are system failures (the runner may retry them).
                eprintln!("ERROR: skiff prepare: {e:#}");
                return Err(super::run::ExitStatus(env.system_failure_code()).into());
            }
            Ok(())
        }
        GitlabCommand::Run(a) => run_stage(ctx, &env, &a).await,
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

async fn prepare(ctx: &Context, env: &ExecutorEnv, a: &PrepareArgs) -> Result<()> {
    // An empty variable names nothing (the runner's environment may set it so).
    let configured = a.helper_image.clone().filter(|h| !h.is_empty());
    let dirs = a.helper_dirs.iter().filter(|d| !d.as_os_str().is_empty());
    let helper_image =
        driver::helper_image(ctx.store()?, env, configured, dirs.cloned().collect()).await?;
    let images = StoreImages {
        puller: job_puller(
            ctx,
            &a.registry,
            env.job_var("DOCKER_AUTH_CONFIG").as_deref(),
        )?,
    };
    let opts = PrepareOptions {
        network: network::job_default(a.network.as_deref()),
        wait_for_services_timeout: a.wait_for_services_timeout,
        helper_image,
        cache_dir: driver::cache_dir(&ctx.root, env),
    };
    let runtime = runtime(ctx);
    driver::prepare(&ctx.root, env, &opts, &runtime, &images, &ConsoleLog)
        .await
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))
}

async fn run_stage(ctx: &Context, env: &ExecutorEnv, a: &RunStageArgs) -> Result<()> {
    let runtime = runtime(ctx);
    let outcome = driver::run_stage(&ctx.root, env, &a.script, &a.stage, &runtime, &ConsoleLog)
        .await
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    match outcome {
        StageOutcome::Succeeded => Ok(()),
        StageOutcome::SystemFailure { reason } => {
            eprintln!("ERROR: skiff run: {reason}");
            Err(super::run::ExitStatus(env.system_failure_code()).into())
        }
        StageOutcome::BuildFailure { exit_code } => {
            if let Some(file) = env.runner_var("BUILD_EXIT_CODE_FILE") {
                let _ = std::fs::write(file, format!("{exit_code}\n"));
            }
            Err(super::run::ExitStatus(env.build_failure_code()).into())
        }
    }
}
