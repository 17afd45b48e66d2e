//! GitLab Runner's custom executor, driven by skiff: `prepare` makes the job's pod with its
//! services and two containers, the helper (for the runner's predefined stages: sources,
//! caches, artifacts) and the build container (for the scripts), sharing /builds and /cache;
//! `run_stage` runs one of the runner's scripts in the right one; `cleanup` removes it all,
//! also after a failed or crashed prepare. The state lives in the store, keyed by the runner's
//! job identifiers, since each step is a separate process.

use super::run::{IDLE, MaskedLog, start_idle, start_services};
use super::seams::{ContainerRequest, ImageSource, JobRuntime, PodRequest};
use super::{JobError, JobLog, Stream, script};
use crate::archive::helper::import_prebuilt;
use crate::gitlab::executor::{ExecutorEnv, runs_in_helper};
use crate::helper::{HelperSpec, runner_arch};
use crate::image::pull::Policy;
use crate::store::Store;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What one runner job made, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverState {
    /// `<store>/gitlab/<key>`: stage scripts and the job's /builds.
    pub dir: PathBuf,
    pub pod: String,
    pub build: String,
    pub helper: String,
}

impl DriverState {
    pub fn new(root: &Path, env: &ExecutorEnv) -> Result<Self, JobError> {
        let key = env.job_key()?;
        Ok(DriverState {
            dir: root.join("gitlab").join(&key),
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
    let scripts = st.dir.join("scripts");
    std::fs::create_dir_all(&scripts).map_err(JobError::io("creating", &scripts))?;
    super::recovery::make_private(&st.dir)?;
    let builds = st.dir.join("builds");
    std::fs::create_dir_all(&builds).map_err(JobError::io("creating", &builds))?;
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
    for (name, image, entrypoint) in [
        (&st.helper, helper_image, Some(vec![])),
        (&st.build, job_image, None),
    ] {
        let request = ContainerRequest {
            name: name.clone(),
            pod: st.pod.clone(),
            image,
            entrypoint,
            command: IDLE.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            hosts: vec![],
            volumes: vec![
                (builds.clone(), "/builds".into(), false),
                (opts.cache_dir.clone(), "/cache".into(), false),
                (scripts.clone(), "/skiff-job".into(), true),
            ],
            workdir: None,
        };
        start_idle(runtime, request, name).await?;
    }
    link_runner_command(runtime, &st.helper, &opts.helper_image, &log).await?;
    log.line(&format!(
        "Job containers ready: {} (helper), {} (build), pod {}",
        st.helper, st.build, st.pod
    ));
    Ok(())
}

/// The runner writes the custom executor's scripts for the command `gitlab-runner` (its
/// main.go: `custom.NewProvider("gitlab-runner")`) and guards each cache and artifact step
/// with `gitlab-runner --version`, skipping the step with a warning when that fails
/// (shells/abstract.go::guardRunnerCommand). Helper images ship only `gitlab-runner-helper`
/// (/usr/bin in dockerfiles/runner-helper/Dockerfile), so a `gitlab-runner` link is made next
/// to it, in the helper container's own root: found through the image's own PATH, wherever
/// the image keeps the helper. Exit 3: no helper on the PATH.
pub(super) const LINK_RUNNER_COMMAND: &str = "helper=$(command -v gitlab-runner-helper) || exit 3; \
     command -v gitlab-runner >/dev/null 2>&1 || ln -s \"$helper\" \"${helper%/*}/gitlab-runner\"";

/// Makes `gitlab-runner` callable in the helper container. An image without the helper (one
/// configured for sources only, say) still runs the job, as with the runner: its caches and
/// artifacts are skipped, said here once.
async fn link_runner_command(
    runtime: &dyn JobRuntime,
    helper: &str,
    image: &str,
    log: &MaskedLog<'_>,
) -> Result<(), JobError> {
    let command: Vec<String> = ["sh", "-c", LINK_RUNNER_COMMAND]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let output = std::sync::Mutex::new(String::new());
    let collect = |_: Stream, bytes: &[u8]| {
        if let Ok(mut o) = output.lock() {
            o.push_str(&String::from_utf8_lossy(bytes));
        }
    };
    let code = runtime
        .exec(helper, &command, &collect)
        .await
        .map_err(|source| JobError::Exec {
            stage: "linking gitlab-runner to gitlab-runner-helper".into(),
            container: helper.into(),
            source,
        })?;
    let problem = match code {
        0 => return Ok(()),
        3 => "has no gitlab-runner-helper on its PATH".to_string(),
        _ => format!(
            "could not link gitlab-runner to its gitlab-runner-helper (exit {code}): {}",
            output.into_inner().unwrap_or_default().trim()
        ),
    };
    log.line(&format!(
        "\x1b[0;33mWARNING: the helper image {image} {problem}; the runner skips caches and artifacts\x1b[0;m"
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
    let name: String = stage
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
    // The runner writes it 0700; a build image's own user must read it too.
    let copied = std::fs::copy(script_file, &target)
        .and_then(|_| std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)));
    if let Err(e) = copied {
        return Ok(StageOutcome::SystemFailure {
            reason: format!("copying {}: {e}", script_file.display()),
        });
    }
    let command = stage_command(runs_in_helper(stage), &format!("/skiff-job/{name}"));
    let relay = |stream: Stream, bytes: &[u8]| log.output(stream, &String::from_utf8_lossy(bytes));
    let code = runtime.exec(container, &command, &relay).await;
    let _ = std::fs::remove_file(&target);
    Ok(match code {
        Ok(0) => StageOutcome::Succeeded,
        // skiff's own errors (the container is gone, say) are system failures.
        Ok(125) | Err(_) => StageOutcome::SystemFailure {
            reason: format!("stage {stage} could not run in {container}"),
        },
        Ok(exit_code) => StageOutcome::BuildFailure { exit_code },
    })
}

/// The shell for a stage's script. The helper's stages run with umask 0000, as the docker
/// executor's helper command `gitlab-runner-build` sets it (helpers/container/helperimage/
/// linux_info.go), so that what the helper checks out, restores and downloads stays writable
/// for a build image's user; the build container keeps the image's umask.
pub(super) fn stage_command(in_helper: bool, script: &str) -> Vec<String> {
    let detect = script::detect_shell(script);
    let line = if in_helper {
        format!("umask 0000; {detect}")
    } else {
        detect
    };
    vec!["sh".into(), "-c".into(), line]
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
    // Files the job wrote in /builds belong to the container's ids.
    if st.dir.exists() {
        runtime
            .remove_files(std::slice::from_ref(&st.dir))
            .await
            .map_err(|source| JobError::Remove { source })?;
    }
    let _ = std::fs::remove_dir(root.join("gitlab"));
    Ok(())
}
