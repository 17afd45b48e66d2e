//! GitLab Runner's custom executor, driven by skiff: `prepare` makes the job's pod with its
//! services and two containers, the helper (for the runner's predefined stages: sources,
//! caches, artifacts) and the build container (for the scripts), sharing /builds and /cache;
//! `run_stage` starts the right one with one of the runner's scripts on its stdin, as the
//! runner's docker executor does; `cleanup` removes it all,
//! also after a failed or crashed prepare. The state lives in the store, keyed by the runner's
//! job identifiers, since each step is a separate process.

use super::run::{MaskedLog, start_services};
use super::seams::{ContainerRequest, ImageSource, JobRuntime, PodRequest, RunExit};
use super::{JobError, JobLog, Stream, script};
use crate::archive::helper::import_prebuilt;
use crate::gitlab::executor::{ExecutorEnv, runs_in_helper};
use crate::helper::{HelperSpec, runner_arch};
use crate::image::pull::Policy;
use crate::store::Store;
use std::path::{Path, PathBuf};

/// What one runner job made, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverState {
    /// `<store>/gitlab/<key>`: the job's own files.
    pub dir: PathBuf,
    /// `<store>/gitlab-builds/<slot>`: /builds, kept for the next job of the same project and
    /// concurrency slot (`GIT_STRATEGY=fetch` fetches into it; the runner's clone script
    /// empties it itself).
    pub builds: PathBuf,
    pub pod: String,
    pub build: String,
    pub helper: String,
}

impl DriverState {
    pub fn new(root: &Path, env: &ExecutorEnv) -> Result<Self, JobError> {
        let key = env.job_key()?;
        Ok(DriverState {
            dir: root.join("gitlab").join(&key),
            builds: root.join("gitlab-builds").join(env.slot_key()?),
            pod: format!("gitlab-{key}"),
            build: format!("gitlab-{key}-build"),
            helper: format!("gitlab-{key}-helper"),
        })
    }
}

/// `config_exec`'s answer to the runner.
pub fn config(hostname: &str) -> serde_json::Value {
    serde_json::json!({
        "builds_dir": "/builds",
        "cache_dir": "/cache",
        // Each project's concurrency slot has a builds directory of its own, reused by its
        // next job: never shared by two jobs at once.
        "builds_dir_is_shared": false,
        "hostname": hostname,
        "driver": {"name": "skiff", "version": env!("CARGO_PKG_VERSION")},
        "shell": "bash",
    })
}

pub struct PrepareOptions {
    /// The pod's network: `slirp4netns`, `pasta` or `private`.
    pub network: String,
    /// Seconds to wait for each service's ports; negative: no wait.
    pub wait_for_services_timeout: i64,
    /// The runner's helper image, already in the store or to be pulled.
    pub helper_image: String,
    /// Mounted at /cache in both containers.
    pub cache_dir: PathBuf,
}

/// The helper image for the runner's version (`CUSTOM_ENV_CI_RUNNER_VERSION`/`_REVISION`),
/// imported from the runner's prebuilt tarballs (and `dirs`) when the store lacks it; the
/// pull tries the registry when none is found. `configured` names another image instead.
pub async fn helper_image(
    store: Store,
    env: &ExecutorEnv,
    configured: Option<String>,
    dirs: Vec<PathBuf>,
) -> Result<String, JobError> {
    if let Some(image) = configured {
        return Ok(image);
    }
    let spec = HelperSpec {
        flavor: String::new(),
        arch: runner_arch(std::env::consts::ARCH),
        pwsh: false,
        version: env.job_var("CI_RUNNER_VERSION"),
        revision: env.job_var("CI_RUNNER_REVISION"),
    };
    let reference = spec.reference()?;
    if store.find(&reference)?.is_none() {
        let imported = tokio::task::spawn_blocking(move || {
            import_prebuilt(
                &store,
                &dirs,
                spec.version.as_deref(),
                spec.revision.as_deref(),
            )
        })
        .await;
        match imported {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!("no prebuilt helper image: {}", crate::error_chain(&e)),
            Err(e) => tracing::debug!("importing the helper image: {e}"),
        }
    }
    Ok(reference)
}

/// `<store>/gitlab-cache/<project id>`: the project's /cache, kept between its jobs.
pub fn cache_dir(root: &Path, env: &ExecutorEnv) -> PathBuf {
    root.join("gitlab-cache")
        .join(env.job_var("CI_PROJECT_ID").unwrap_or_else(|| "0".into()))
}

/// The helper image's command for the runner's stages (helpers/container/helperimage's
/// `bashCmd`): in the runner's helper images it sets umask 0000 and runs bash.
pub const HELPER_COMMAND: &str = "gitlab-runner-build";

/// Variables whose values the driver's own lines never show.
const SECRETS: &[&str] = &["DOCKER_AUTH_CONFIG", "CI_JOB_TOKEN", "CI_REGISTRY_PASSWORD"];

/// `prepare_exec`: images, pod, services, helper and build containers. An error is a system
/// failure (the runner may retry it); `cleanup` removes whatever was made.
pub async fn prepare(
    root: &Path,
    env: &ExecutorEnv,
    opts: &PrepareOptions,
    runtime: &dyn JobRuntime,
    images: &dyn ImageSource,
    log: &dyn JobLog,
) -> Result<(), JobError> {
    let st = DriverState::new(root, env)?;
    std::fs::create_dir_all(&st.dir).map_err(JobError::io("creating", &st.dir))?;
    super::recovery::make_private(&st.dir)?;
    let builds = st.builds.clone();
    std::fs::create_dir_all(&builds).map_err(JobError::io("creating", &builds))?;
    // Other users of the host never see a project's checkout; the container's users do.
    super::recovery::make_private(builds.parent().unwrap_or(&builds))?;
    let variables = env.job_variables();
    let secrets: Vec<String> = variables
        .iter()
        .filter(|(k, _)| SECRETS.contains(&k.as_str()))
        .map(|(_, v)| v.clone())
        .collect();
    let log = MaskedLog::new(log, &secrets);
    let image = env.image()?;
    let services = env.services()?;
    let mut resolved = vec![];
    for name in [&opts.helper_image, &image]
        .into_iter()
        .chain(services.iter().map(|s| &s.image.name))
    {
        log.line(&format!("Pulling image {name} ..."));
        let found = images
            .ensure(name, &[Policy::IfNotPresent])
            .await
            .map_err(|source| JobError::Pull {
                image: name.clone(),
                source,
            })?;
        resolved.push(found);
    }
    let service_images = resolved.split_off(2);
    let (helper_image, job_image) = (resolved.remove(0), resolved.remove(0));
    runtime
        .create_pod(&PodRequest {
            name: st.pod.clone(),
            network: opts.network.clone(),
            owner: None,
        })
        .await
        .map_err(|source| JobError::Pod { source })?;
    start_services(
        runtime,
        &st.pod,
        &services,
        &service_images,
        &variables,
        opts.wait_for_services_timeout,
        &log,
    )
    .await?;
    std::fs::create_dir_all(&opts.cache_dir).map_err(JobError::io("creating", &opts.cache_dir))?;
    // Made here, started for each stage (as the runner's docker executor does): the helper
    // with its image's entrypoint and command (`gitlab-runner-build`, which sets the umask
    // and runs the shell), the build container with the job image's entrypoint and the
    // runner's shell detection; both read the stage's script on stdin, with the job's
    // variables in their environment.
    for (name, image, entrypoint, command) in [
        (
            &st.helper,
            helper_image,
            None,
            vec![HELPER_COMMAND.to_string()],
        ),
        (&st.build, job_image, None, script::shell_command()),
    ] {
        let request = ContainerRequest {
            name: name.clone(),
            pod: st.pod.clone(),
            image,
            entrypoint,
            command,
            env: variables.clone(),
            hosts: vec![],
            volumes: vec![
                (builds.clone(), "/builds".into(), false),
                (opts.cache_dir.clone(), "/cache".into(), false),
            ],
            workdir: None,
        };
        runtime
            .create(&request)
            .await
            .map_err(|source| JobError::Container {
                what: name.clone(),
                image: request.image.name.clone(),
                source,
            })?;
    }
    log.line(&format!(
        "Job containers ready: {} (helper), {} (build), pod {}",
        st.helper, st.build, st.pod
    ));
    Ok(())
}

/// How a stage ended, in the runner's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutcome {
    Succeeded,
    /// The script failed with this code (for `BUILD_EXIT_CODE_FILE`).
    BuildFailure {
        exit_code: i32,
    },
    /// skiff could not run it (the container is gone, say).
    SystemFailure {
        reason: String,
    },
}

/// `run_exec SCRIPT STAGE`: the runner's script for one stage, in the helper container for
/// its predefined stages, else in the build container. Output goes to the log as it comes;
/// the runner masks it.
pub async fn run_stage(
    root: &Path,
    env: &ExecutorEnv,
    script_file: &Path,
    stage: &str,
    runtime: &dyn JobRuntime,
    log: &dyn JobLog,
) -> Result<StageOutcome, JobError> {
    let st = DriverState::new(root, env)?;
    let container = if runs_in_helper(stage) {
        &st.helper
    } else {
        &st.build
    };
    let script = match std::fs::read(script_file) {
        Ok(s) => s,
        Err(e) => {
            return Ok(StageOutcome::SystemFailure {
                reason: format!("reading {}: {e}", script_file.display()),
            });
        }
    };
    let relay = |stream: Stream, bytes: &[u8]| log.output(stream, &String::from_utf8_lossy(bytes));
    Ok(match runtime.run(container, &script, &relay).await {
        Ok(RunExit::Exited(0)) => StageOutcome::Succeeded,
        Ok(RunExit::Exited(exit_code)) => StageOutcome::BuildFailure { exit_code },
        Ok(RunExit::NotStarted(why)) => StageOutcome::SystemFailure {
            reason: format!("{container} could not start for stage {stage}: {why}"),
        },
        // skiff's own errors (the container is gone, say) are system failures.
        Err(e) => StageOutcome::SystemFailure {
            reason: format!(
                "stage {stage} could not run in {container}: {}",
                crate::error_chain(&*e)
            ),
        },
    })
}

/// `cleanup_exec`: the pod with every container, the job's files. Safe to run after a failed
/// prepare, or twice.
pub async fn cleanup(
    root: &Path,
    env: &ExecutorEnv,
    runtime: &dyn JobRuntime,
) -> Result<(), JobError> {
    let st = DriverState::new(root, env)?;
    runtime.remove_pod(&st.pod).await;
    // The job's own files; /builds stays for the slot's next job. Files a job wrote may
    // belong to the container's ids.
    if st.dir.exists() {
        runtime
            .remove_files(std::slice::from_ref(&st.dir))
            .await
            .map_err(|source| JobError::Remove { source })?;
    }
    let _ = std::fs::remove_dir(root.join("gitlab"));
    Ok(())
}
