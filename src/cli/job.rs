//! `skiff job [-f .gitlab-ci.yml] [--var K=V]... JOB`: one job of a pipeline, with its
//! services, the way GitLab Runner's docker executor runs it, rootless and without a daemon.
//!
//! The job itself is `skiff::job::run`; this adapts the flags and the store to it.

use super::progress::ProgressMode::Quiet;
use super::{Context, RegistryArgs};
use anyhow::{Context as _, Result};
use clap::Args;
use skiff::gitlab::config::AdminConfig;
use skiff::gitlab::pipeline::Pipeline;
use skiff::job::local::{LocalRuntime, StoreImages};
use skiff::job::plan::LocalOptions;
use skiff::job::project::{Fetching, IncludeFiles, Project};
use skiff::job::{self as jobs, JobLog, JobPlan, Stream};
use skiff::oci::manifest::PlatformSpec;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct JobArgs {
    /// The pipeline file
    #[arg(long, short, default_value = ".gitlab-ci.yml")]
    pub file: PathBuf,
    /// KEY=VALUE, above the file's variables (as a pipeline variable would be)
    #[arg(long = "var")]
    pub vars: Vec<String>,
    /// KEY=VALUE like --var, and masked in the job log
    #[arg(long = "masked-var")]
    pub masked_vars: Vec<String>,
    /// The project directory mounted at /builds/<namespace>/<project>
    #[arg(long, default_value = ".")]
    pub project_dir: PathBuf,
    /// Network of the job's pod: slirp4netns (default when installed), pasta or private
    #[arg(long)]
    pub network: Option<String>,
    /// Seconds to wait for each service's ports (GitLab's wait_for_services_timeout; -1: no
    /// wait) [default: the admin file's, else 30]
    #[arg(long, allow_negative_numbers = true)]
    pub wait_for_services_timeout: Option<i64>,
    /// The GitLab driver's admin file ([runners.docker] keys): default image, services,
    /// pull policies, volumes, limits... (read only when given)
    #[arg(long, value_name = "FILE", env = "SKIFF_GITLAB_CONFIG")]
    pub config: Option<PathBuf>,
    /// The project's CI/CD variables (YAML: NAME: value, or NAME: {value, masked, type: file, expand}),
    /// above the file's and below --var
    #[arg(long, value_name = "FILE")]
    pub variables_file: Option<PathBuf>,
    #[command(flatten)]
    pub includes: IncludeArgs,
    /// Run the job even when its rules (or workflow:rules, only, except) leave it out
    #[arg(long)]
    pub force: bool,
    /// The image of jobs that name none (the runner's `image`; above the admin file's)
    #[arg(long, value_name = "IMAGE")]
    pub default_image: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    pub job: String,
}

pub(super) fn pair(kv: &str) -> Result<(String, String)> {
    kv.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .with_context(|| format!("{kv:?}: expected KEY=VALUE"))
}

// Where a pipeline's included files come from (a comment: see `RegistryArgs`).
#[derive(Args, Debug, Default)]
pub struct IncludeArgs {
    /// GROUP/PROJECT=DIR: a checkout `include: project:` and `component:` read from (their
    /// version through git)
    #[arg(long = "include-project", value_name = "GROUP/PROJECT=DIR")]
    pub include_projects: Vec<String>,
    /// A GitLab instance: `remote:` and `template:` includes are fetched (and kept in the
    /// store); without it they come from what the store kept
    #[arg(long, value_name = "URL")]
    pub gitlab_url: Option<url::Url>,
}

/// The project at `dir` as `skiff job`, `pipeline` and `bundle create` see it: its
/// variables file, and the instance `--gitlab-url` names.
pub(super) fn project(
    dir: &std::path::Path,
    variables_file: Option<&std::path::Path>,
    includes: &IncludeArgs,
) -> Result<Project> {
    let mut project = Project::at(dir);
    if let Some(file) = variables_file {
        project = project.with_variables_file(file)?;
    }
    if let Some(url) = &includes.gitlab_url {
        project = project.served_by(url);
    }
    Ok(project)
}

/// The pipeline at `file` with its includes, for the project at `project`.
pub(super) fn load(
    ctx: &Context,
    file: &std::path::Path,
    project: &Project,
    vars: &[(String, String)],
    includes: &IncludeArgs,
) -> Result<Pipeline> {
    let projects = includes
        .include_projects
        .iter()
        .map(|p| pair(p).map(|(name, dir)| (name, PathBuf::from(dir))))
        .collect::<Result<Vec<_>>>()?;
    let sources = IncludeFiles {
        project,
        vars,
        projects: &projects,
        fetching: Fetching {
            gitlab_url: includes.gitlab_url.clone(),
            cache: ctx.root.join("cache/includes"),
        },
    };
    Ok(Pipeline::load_with(file, &sources)?)
}

pub async fn run(ctx: &Context, a: JobArgs) -> Result<()> {
    let mut cli_vars = a.vars.iter().map(|v| pair(v)).collect::<Result<Vec<_>>>()?;
    let masked_vars = a
        .masked_vars
        .iter()
        .map(|v| pair(v))
        .collect::<Result<Vec<_>>>()?;
    cli_vars.extend(masked_vars.iter().cloned());
    let project = project(&a.project_dir, a.variables_file.as_deref(), &a.includes)?;
    let pipeline = load(ctx, &a.file, &project, &cli_vars, &a.includes)?;
    // The whole pipeline resolves before anything is pulled or run, as in GitLab: an error
    // in any job stops this one too.
    let jobs = project.with_environment(|env| pipeline.resolve_all(&cli_vars, env))?;
    let job = match jobs.into_iter().find(|j| j.name == a.job) {
        Some(job) => job,
        None => project.with_environment(|env| pipeline.job_with(&a.job, &cli_vars, env))?,
    };
    if job.when == "never" && !a.force {
        anyhow::bail!(
            "job {:?} is not in this pipeline ({}); --force runs it anyway",
            job.name,
            job.reason
        );
    }
    let mut admin = match a.config.as_deref().filter(|f| !f.as_os_str().is_empty()) {
        Some(file) => AdminConfig::load(Some(file))?,
        None => AdminConfig::default(),
    };
    if let Some(image) = a.default_image {
        admin.image = Some(image);
    }
    let network = a.network.as_deref().or(admin.network_mode.as_deref());
    let wait = admin.services_wait_secs();
    let plan = JobPlan::local(
        &ctx.root,
        job,
        LocalOptions {
            masked_keys: masked_vars.into_iter().map(|(k, _)| k).collect(),
            project_dir: a.project_dir.clone(),
            network: skiff::runtime::network::job_default(network),
            wait_for_services_timeout: a.wait_for_services_timeout.unwrap_or(wait),
            admin,
        },
    )?;
    // The job's own DOCKER_AUTH_CONFIG comes first among the credentials.
    let settings = a
        .registry
        .resolve()?
        .with_job_auth(plan.docker_auth_config());
    let images = StoreImages {
        puller: settings.puller(ctx.store()?, PlatformSpec::host(), Quiet.observer(), true),
    };
    let runtime = LocalRuntime {
        root: ctx.root.clone(),
    };
    // Ctrl-C and SIGTERM cancel the job (after_script still runs; a second one ends it),
    // and its teardown still runs.
    let cancel = skiff::proc::terminations()?;
    let outcome = jobs::run(&plan, &runtime, &images, &ConsoleLog, cancel).await;
    match outcome.exit_code() {
        0 => Ok(()),
        code => Err(super::run::ExitStatus(code).into()),
    }
}

/// The job log on this process's stdout and stderr.
pub(super) struct ConsoleLog;

impl JobLog for ConsoleLog {
    // A reader that went away (`skiff job x | head`) ends nothing: the job runs on to its end
    // and teardown, as the runner's job goes on when nobody follows its trace.
    fn line(&self, text: &str) {
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
    fn output(&self, stream: Stream, text: &str) {
        use std::io::Write;
        match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Stream::Stderr => {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
        }
    }
}
