//! `skiff gitlab config|prepare|run|cleanup`: a GitLab Runner custom-executor driver.
//!
//! The runner calls these with `CUSTOM_ENV_*` variables for the job. `prepare` pulls (or
//! imports the helper image from prebuilt tarballs), makes the job's pod, starts the
//! services and two containers: the helper (for the runner's predefined stages: sources,
//! caches, artifacts) and the build container (for the scripts), sharing /builds and /cache.
//! `run SCRIPT STAGE` runs each stage in the right one. `cleanup` removes everything, also
//! after a failed or crashed prepare. The job's state lives in the store, keyed by the
//! runner's job identifiers.

use super::job::{Log, skiff, start_services};
use super::progress::ProgressMode;
use super::{Context, RegistryArgs};
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use skiff::auth::sources::{AuthEnv, CredentialResolver};
use skiff::gitlab::pipeline::{ImageSpec, ServiceSpec, default_aliases};
use skiff::image::parse_policies;
use skiff::job::{self as jobs, Masker};
use std::path::{Path, PathBuf};
use std::process::Stdio;

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
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct RunStageArgs {
    pub script: PathBuf,
    pub stage: String,
}

/// The runner's predefined stages run in the helper container; the rest in the build one.
const HELPER_STAGES: &[&str] = &[
    "prepare_script",
    "get_sources",
    "clear_worktree",
    "restore_cache",
    "download_artifacts",
    "archive_cache",
    "archive_cache_on_failure",
    "upload_artifacts_on_success",
    "upload_artifacts_on_failure",
    "cleanup_file_variables",
];

/// Whether the runner's stage belongs in the helper container (sources, caches, artifacts)
/// rather than the build container (build_script, step_*, after_script).
pub fn runs_in_helper(stage: &str) -> bool {
    HELPER_STAGES.contains(&stage)
}

fn env(key: &str) -> Option<String> {
    std::env::var(format!("CUSTOM_ENV_{key}"))
        .ok()
        .filter(|v| !v.is_empty())
}

fn exit_code(var: &str, default: i32) -> i32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `r<runner>-p<project>-c<concurrent>-j<job>`: the store key of this job's state.
fn job_key() -> Result<String> {
    let part = |k: &str| env(k).unwrap_or_else(|| "0".into());
    let job = env("CI_JOB_ID")
        .context("CUSTOM_ENV_CI_JOB_ID is not set: run by GitLab Runner's custom executor")?;
    let key = format!(
        "r{}-p{}-c{}-j{job}",
        part("CI_RUNNER_ID"),
        part("CI_PROJECT_ID"),
        part("CI_CONCURRENT_PROJECT_ID")
    );
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        bail!("job identifiers {key:?} are not plain numbers");
    }
    Ok(key)
}

struct JobState {
    dir: PathBuf,
    pod: String,
    build: String,
    helper: String,
}

fn state(ctx: &Context) -> Result<JobState> {
    let key = job_key()?;
    Ok(JobState {
        dir: ctx.root.join("gitlab").join(&key),
        pod: format!("gitlab-{key}"),
        build: format!("gitlab-{key}-build"),
        helper: format!("gitlab-{key}-helper"),
    })
}

pub async fn run(ctx: &Context, c: GitlabCommand) -> Result<()> {
    match c {
        GitlabCommand::Config => config(),
        GitlabCommand::Prepare(a) => {
            let system = exit_code("SYSTEM_FAILURE_EXIT_CODE", 2);
            if let Err(e) = prepare(ctx, &a).await {
                // Pull and start failures are system failures (the runner may retry them).
                eprintln!("ERROR: skiff prepare: {e:#}");
                return Err(super::run::ExitStatus(system).into());
            }
            Ok(())
        }
        GitlabCommand::Run(a) => run_stage(ctx, &a).await,
        GitlabCommand::Cleanup => cleanup(ctx).await,
    }
}

fn config() -> Result<()> {
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_string())
        .unwrap_or_default();
    super::print_json(&serde_json::json!({
        "builds_dir": "/builds",
        "cache_dir": "/cache",
        "builds_dir_is_shared": false,
        "hostname": hostname,
        "driver": {"name": "skiff", "version": env!("CARGO_PKG_VERSION")},
        "shell": "bash",
    }))
}

/// `CUSTOM_ENV_CI_JOB_SERVICES`: `[{"name","alias","entrypoint","command","variables"}]`.
fn services_from_env() -> Result<Vec<ServiceSpec>> {
    let Some(json) = env("CI_JOB_SERVICES") else {
        return Ok(vec![]);
    };
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&json).context("CUSTOM_ENV_CI_JOB_SERVICES is not a JSON list")?;
    let strings = |v: Option<&serde_json::Value>| {
        v.and_then(|v| v.as_array()).map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
    };
    let mut taken = std::collections::BTreeSet::new();
    list.iter()
        .map(|s| {
            let name = s["name"]
                .as_str()
                .context("a service in CUSTOM_ENV_CI_JOB_SERVICES has no name")?
                .to_string();
            let mut aliases = default_aliases(&name);
            if let Some(a) = s["alias"].as_str() {
                aliases.extend(a.replace(',', " ").split_whitespace().map(str::to_string));
            }
            aliases.retain(|a| taken.insert(a.clone()));
            Ok(ServiceSpec {
                image: ImageSpec {
                    entrypoint: strings(s.get("entrypoint"))
                        .map(|e| e.into_iter().filter(|x| !x.is_empty()).collect()),
                    pull_policy: vec![],
                    name,
                },
                aliases,
                command: strings(s.get("command")),
                variables: s["variables"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The job's variables, from the runner's `CUSTOM_ENV_` copies.
fn job_variables() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(k, v)| Some((k.strip_prefix("CUSTOM_ENV_")?.to_string(), v)))
        .filter(|(k, _)| k != "CI_JOB_SERVICES")
        .collect()
}

async fn prepare(ctx: &Context, a: &PrepareArgs) -> Result<()> {
    let st = state(ctx)?;
    std::fs::create_dir_all(st.dir.join("scripts"))?;
    super::job::private_dir(&st.dir)?;
    std::fs::create_dir_all(st.dir.join("builds"))?;
    let mut masker = Masker::default();
    let variables = job_variables();
    for (k, v) in &variables {
        if ["DOCKER_AUTH_CONFIG", "CI_JOB_TOKEN", "CI_REGISTRY_PASSWORD"].contains(&k.as_str()) {
            masker.add(v);
        }
    }
    let log = Log { masker };
    let image =
        env("CI_JOB_IMAGE").context("CUSTOM_ENV_CI_JOB_IMAGE is not set: the job has no image")?;
    let services = services_from_env()?;
    // The helper image, by the runner's version: imported from prebuilt tarballs if the
    // store lacks it, pulled otherwise.
    let spec = skiff::helper::HelperSpec {
        flavor: String::new(),
        arch: skiff::helper::runner_arch(std::env::consts::ARCH),
        pwsh: false,
        version: env("CI_RUNNER_VERSION"),
        revision: env("CI_RUNNER_REVISION"),
    };
    let helper = std::env::var("SKIFF_HELPER_IMAGE")
        .ok()
        .filter(|h| !h.is_empty())
        .map(Ok)
        .unwrap_or_else(|| spec.reference().map_err(anyhow::Error::msg))?;
    let store = ctx.store()?;
    if store.find(&helper)?.is_none() && std::env::var_os("SKIFF_HELPER_IMAGE").is_none() {
        let mut cmd = skiff(ctx)?;
        cmd.args(["helper", "import"]);
        if let Some(v) = &spec.version {
            cmd.args(["--version", v]);
        }
        if let Some(r) = &spec.revision {
            cmd.args(["--revision", r]);
        }
        // Where prebuilt tarballs are, besides the runner's own directories.
        for d in std::env::var("SKIFF_HELPER_DIRS")
            .unwrap_or_default()
            .split(':')
        {
            if !d.is_empty() {
                cmd.args(["--dir", d]);
            }
        }
        let _ = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let mut puller = a
        .registry
        .puller(store.clone(), ProgressMode::Quiet, true)?;
    if let Some(auth) = env("DOCKER_AUTH_CONFIG") {
        let mut auth_env = AuthEnv::from_process(a.registry.authfile.clone());
        auth_env.docker_auth_config = Some(auth);
        puller.credentials = CredentialResolver::new(&auth_env, None);
    }
    let policies = parse_policies("if-not-present").map_err(anyhow::Error::msg)?;
    let mut configs = vec![];
    for name in [&helper, &image]
        .into_iter()
        .chain(services.iter().map(|s| &s.image.name))
    {
        log.line(&format!("Pulling image {name} ..."));
        let report = puller
            .ensure(name, &policies)
            .await
            .with_context(|| format!("pulling {name}"))?;
        configs.push(serde_json::from_slice::<serde_json::Value>(
            &store.read_blob(&report.id)?,
        )?);
    }
    let network = a.network.clone().unwrap_or_else(|| {
        if skiff::runtime::network::available("slirp4netns") {
            "slirp4netns".into()
        } else {
            "private".into()
        }
    });
    let out = skiff(ctx)?
        .args(["pod", "create", "--network", &network, &st.pod])
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "creating the job's pod: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let key = job_key()?;
    start_services(
        ctx,
        &st.pod,
        &format!("gitlab-{key}"),
        &st.dir,
        &services,
        &configs[2..],
        &variables,
        a.wait_for_services_timeout,
        &log,
    )
    .await?;
    let cache = ctx
        .root
        .join("gitlab-cache")
        .join(env("CI_PROJECT_ID").unwrap_or_else(|| "0".into()));
    std::fs::create_dir_all(&cache)?;
    for (name, image, entrypoint) in [
        (&st.helper, &helper, Some(Vec::<String>::new())),
        (&st.build, &image, None),
    ] {
        let mut cmd = skiff(ctx)?;
        cmd.args([
            "run", "-d", "--pull", "never", "--pod", &st.pod, "--name", name,
        ])
        .arg("-v")
        .arg(format!("{}:/builds", st.dir.join("builds").display()))
        .arg("-v")
        .arg(format!("{}:/cache", cache.display()))
        .arg("-v")
        .arg(format!(
            "{}:/skiff-job:ro",
            st.dir.join("scripts").display()
        ));
        super::job::start_idle(cmd, image, entrypoint.as_deref(), name).await?;
    }
    log.line(&format!(
        "Job containers ready: {} (helper), {} (build), pod {}",
        st.helper, st.build, st.pod
    ));
    Ok(())
}

async fn run_stage(ctx: &Context, a: &RunStageArgs) -> Result<()> {
    let build_failure = exit_code("BUILD_FAILURE_EXIT_CODE", 1);
    let system_failure = exit_code("SYSTEM_FAILURE_EXIT_CODE", 2);
    let st = state(ctx)?;
    let container = if runs_in_helper(&a.stage) {
        &st.helper
    } else {
        &st.build
    };
    let name: String = a
        .stage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let target = st.dir.join("scripts").join(&name);
    if let Err(e) = std::fs::copy(&a.script, &target) {
        eprintln!("ERROR: skiff run: copying {}: {e}", a.script.display());
        return Err(super::run::ExitStatus(system_failure).into());
    }
    let status = skiff(ctx)?
        .args(["exec", container, "sh", "-c"])
        .arg(jobs::detect_shell(&format!("/skiff-job/{name}")))
        .stdin(Stdio::null())
        .status()
        .await?;
    let _ = std::fs::remove_file(&target);
    match status.code() {
        Some(0) => Ok(()),
        // skiff's own errors (the container is gone, say) are system failures.
        Some(125) | None => {
            eprintln!(
                "ERROR: skiff run: stage {} could not run in {container}",
                a.stage
            );
            Err(super::run::ExitStatus(system_failure).into())
        }
        Some(code) => {
            if let Ok(file) = std::env::var("BUILD_EXIT_CODE_FILE") {
                let _ = std::fs::write(file, format!("{code}\n"));
            }
            Err(super::run::ExitStatus(build_failure).into())
        }
    }
}

async fn cleanup(ctx: &Context) -> Result<()> {
    let st = state(ctx)?;
    let _ = skiff(ctx)?
        .args(["pod", "rm", "-f", &st.pod])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    // Files the job wrote in /builds belong to the container's ids: removed from inside
    // the user namespace.
    if st.dir.exists() {
        skiff::unpack::child::remove_paths(std::slice::from_ref(&st.dir)).await?;
    }
    remove_empty(&ctx.root.join("gitlab"));
    Ok(())
}

fn remove_empty(dir: &Path) {
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    #[test]
    fn stages_split_as_the_runner_splits_them() {
        for (stage, helper) in [
            ("prepare_script", true),
            ("get_sources", true),
            ("restore_cache", true),
            ("download_artifacts", true),
            ("build_script", false),
            ("step_release", false),
            ("after_script", false),
            ("archive_cache", true),
            ("archive_cache_on_failure", true),
            ("upload_artifacts_on_success", true),
            ("upload_artifacts_on_failure", true),
            ("cleanup_file_variables", true),
        ] {
            assert_eq!(super::runs_in_helper(stage), helper, "{stage}");
        }
    }
}
