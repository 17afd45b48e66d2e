//! GitLab Runner's custom executor, driven by skiff: `prepare` makes the job's pod with its
//! services and two containers, the helper (for the runner's predefined stages: sources,
//! caches, artifacts) and the build container (for the scripts), sharing /builds and /cache;
//! `run_stage` starts the right one with one of the runner's scripts on its stdin, as the
//! runner's docker executor does; `cleanup` removes it all,
//! also after a failed or crashed prepare. The state lives in the store, keyed by the runner's
//! job identifiers, since each step is a separate process.

use super::run::{MaskedLog, Services, start_services};
use super::seams::{ContainerRequest, ImageSource, JobRuntime, PodRequest, RunExit};
use super::settings::{admin_volumes, build_settings, helper_settings, service_settings};
use super::{JobError, JobLog, Stream, script};
use crate::archive::helper::import_prebuilt;
use crate::auth::Credential;
use crate::gitlab::config::AdminConfig;
use crate::gitlab::executor::{ExecutorEnv, ExecutorError, runs_in_helper};
use crate::gitlab::payload::{JobImage, JobPayload, PayloadSource, Variable};
use crate::gitlab::pipeline::ImageSpec;
use crate::helper::{HelperSpec, runner_arch};
use crate::image::pull::Policy;
use crate::image::settings::RegistrySettings;
use crate::oci::manifest::PlatformSpec;
use crate::runtime::plan::Volume;
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
pub fn config() -> serde_json::Value {
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_string())
        .unwrap_or_default();
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
    /// The project's cache directory: its /cache (`cache/`) and the admin's anonymous
    /// volumes, kept between its jobs.
    pub cache_dir: PathBuf,
    /// The admin's file (`[runners.docker]` keys), already checked.
    pub admin: AdminConfig,
}

/// What `prepare`'s command line may set over the admin file.
#[derive(Debug, Clone, Default)]
pub struct PrepareFlags {
    pub network: Option<String>,
    pub wait_for_services_timeout: Option<i64>,
    /// An image instead of the runner's helper (empty: none).
    pub helper_image: Option<String>,
    /// Directories of prebuilt helper tarballs, before the runner's own.
    pub helper_dirs: Vec<PathBuf>,
}

impl PrepareOptions {
    /// Flags over the admin file over the defaults, and the helper image found: imported
    /// from a prebuilt tarball when the store lacks it.
    pub async fn resolve(
        store: Store,
        env: &ExecutorEnv,
        payload: &JobPayload,
        admin: AdminConfig,
        flags: PrepareFlags,
    ) -> Result<PrepareOptions, JobError> {
        let variables: Vec<(String, String)> = payload
            .all_variables()
            .into_iter()
            .map(|v| (v.key, v.value))
            .collect();
        // An empty variable names nothing (the runner's environment may set it so).
        let configured = flags.helper_image.filter(|h| !h.is_empty());
        let configured = configured.or_else(|| admin.helper_image_for(&variables));
        let dirs = flags
            .helper_dirs
            .into_iter()
            .filter(|d| !d.as_os_str().is_empty());
        let root = store.root().to_path_buf();
        let flavor = admin.helper_image_flavor.clone();
        let helper_image = helper_image(store, env, configured, dirs.collect(), flavor).await?;
        let network = flags.network.as_deref().or(admin.network_mode.as_deref());
        Ok(PrepareOptions {
            network: crate::runtime::network::job_default(network),
            wait_for_services_timeout: flags
                .wait_for_services_timeout
                .unwrap_or_else(|| admin.services_wait_secs()),
            helper_image,
            cache_dir: cache_dir(&root, env, &admin),
            admin,
        })
    }
}

/// Registry settings for the job's pulls: its own `DOCKER_AUTH_CONFIG`, and the payload's
/// `credentials` (GitLab's registry and dependency proxy, the job token), in the runner's order.
pub fn with_job_registry_auth(
    settings: RegistrySettings,
    payload: &JobPayload,
) -> RegistrySettings {
    let docker_auth_config = payload
        .all_variables()
        .into_iter()
        .rev()
        .find(|v| v.key == "DOCKER_AUTH_CONFIG")
        .map(|v| v.value);
    let credentials = payload
        .registry_credentials()
        .into_iter()
        .map(|c| (c.url.clone(), Credential::basic(&c.username, &c.password)))
        .collect();
    settings
        .with_job_auth(docker_auth_config.as_deref())
        .with_job_credentials(credentials)
}

/// The helper image for the runner's version (`CUSTOM_ENV_CI_RUNNER_VERSION`/`_REVISION`),
/// imported from the runner's prebuilt tarballs (and `dirs`) when the store lacks it; the
/// pull tries the registry when none is found. `configured` names another image instead.
pub async fn helper_image(
    store: Store,
    env: &ExecutorEnv,
    configured: Option<String>,
    dirs: Vec<PathBuf>,
    flavor: Option<String>,
) -> Result<String, JobError> {
    if let Some(image) = configured {
        return Ok(image);
    }
    let spec = HelperSpec {
        flavor: flavor.unwrap_or_default(),
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

/// `<cache root>/<project id>`: the project's /cache and anonymous volumes, kept between its
/// jobs. The root is the admin's `cache_dir`, else `<store>/gitlab-cache`.
pub fn cache_dir(root: &Path, env: &ExecutorEnv, admin: &AdminConfig) -> PathBuf {
    let base = admin
        .cache_dir
        .clone()
        .unwrap_or_else(|| root.join("gitlab-cache"));
    base.join(env.job_var("CI_PROJECT_ID").unwrap_or_else(|| "0".into()))
}

/// The helper image's command for the runner's stages (helpers/container/helperimage's
/// `bashCmd`): in the runner's helper images it sets umask 0000 and runs bash.
pub const HELPER_COMMAND: &str = "gitlab-runner-build";

/// The runner-level services of the admin file, before the job's own (the docker
/// executor's `getServicesDefinitions` order), as the payload's services are.
pub fn with_runner_services(mut payload: JobPayload, admin: &AdminConfig) -> JobPayload {
    let runner: Vec<JobImage> = admin
        .services
        .iter()
        .map(|s| JobImage {
            name: payload.expand(&s.name),
            alias: s
                .alias
                .as_deref()
                .map(|a| payload.expand(a))
                .unwrap_or_default(),
            entrypoint: s.entrypoint.clone().unwrap_or_default(),
            command: s.command.clone().unwrap_or_default(),
            variables: s
                .environment
                .iter()
                .map(|(key, value)| Variable {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let job = std::mem::take(&mut payload.services);
    payload.services = runner.into_iter().chain(job).collect();
    payload
}

/// The volumes every job container gets: /builds, /cache, and the admin's `volumes` (an
/// anonymous one in the project's cache directory, or the job's with `disable_cache`).
fn job_volumes(
    st: &DriverState,
    payload: &JobPayload,
    opts: &PrepareOptions,
) -> Result<Vec<Volume>, JobError> {
    let cache = match opts.admin.disable_cache {
        true => st.dir.join("volumes"),
        false => opts.cache_dir.clone(),
    };
    let made = |dir: PathBuf| -> Result<PathBuf, JobError> {
        std::fs::create_dir_all(&dir).map_err(JobError::io("creating", &dir))?;
        Ok(dir)
    };
    // skiff's own directories, kept between jobs that run with different ids: each job's
    // root owns them (idmapped binds).
    let own = |source: PathBuf, destination: &str| Volume {
        source,
        destination: destination.into(),
        read_only: false,
        idmap: true,
    };
    let mut volumes = vec![
        own(st.builds.clone(), "/builds"),
        own(made(cache.join("cache"))?, "/cache"),
    ];
    let variables: Vec<(String, String)> = payload
        .all_variables()
        .into_iter()
        .map(|v| (v.key, v.value))
        .collect();
    volumes.extend(admin_volumes(&opts.admin, &cache, &variables)?);
    // `/cache` listed by the admin is the one skiff mounts already.
    let mut seen = std::collections::BTreeSet::new();
    volumes.retain(|v| seen.insert(v.destination.clone()));
    Ok(volumes)
}

/// `prepare_exec`: images, pod, services, helper and build containers, from the job's
/// payload (`JOB_RESPONSE_FILE`) and the admin's file. An error is a system failure (the
/// runner may retry it); `cleanup` removes whatever was made.
pub async fn prepare(
    root: &Path,
    env: &ExecutorEnv,
    payload: &JobPayload,
    opts: &PrepareOptions,
    runtime: &dyn JobRuntime,
    images: &dyn ImageSource,
    log: &dyn JobLog,
) -> Result<(), JobError> {
    let admin = &opts.admin;
    let st = DriverState::new(root, env)?;
    std::fs::create_dir_all(&st.dir).map_err(JobError::io("creating", &st.dir))?;
    super::recovery::make_private(&st.dir)?;
    std::fs::create_dir_all(&st.builds).map_err(JobError::io("creating", &st.builds))?;
    // Other users of the host never see a project's checkout; the container's users do.
    super::recovery::make_private(st.builds.parent().unwrap_or(&st.builds))?;
    let payload = with_runner_services(payload.clone(), admin);
    let log = MaskedLog::new(log, &payload.masked_values());
    if payload.source == PayloadSource::Environment {
        log.warn("JOB_RESPONSE_FILE is not set (a runner before 14.1): services get only their own variables");
    }
    let image = match payload.image_spec()? {
        Some(image) => {
            admin.verify_job_image(&image.name)?;
            image
        }
        None => match &admin.image {
            Some(name) => ImageSpec {
                name: name.clone(),
                entrypoint: None,
                pull_policy: vec![],
            },
            None if payload.source == PayloadSource::Environment => {
                return Err(ExecutorError::Missing {
                    name: "CI_JOB_IMAGE",
                    why: "the job has no image",
                }
                .into());
            }
            None => return Err(JobError::NoImage),
        },
    };
    // `docker: platform`: skiff runs this host's platform only; another is refused, never
    // silently swapped for the host's.
    for (name, options) in std::iter::once((&image.name, &payload.image.executor_opts))
        .chain(payload.services.iter().map(|s| (&s.name, &s.executor_opts)))
    {
        let asked = payload.expand(&options.docker.platform);
        if asked.is_empty() {
            continue;
        }
        let host = PlatformSpec::host();
        match PlatformSpec::parse(&asked) {
            Ok(p) if p.os == host.os && p.arch == host.arch => {}
            _ => {
                return Err(JobError::Platform {
                    image: name.clone(),
                    asked,
                    host: host.to_string(),
                });
            }
        }
    }
    let services = payload.service_specs()?;
    for svc in &services[admin.services.len()..] {
        admin.verify_job_service(&svc.image.name)?;
    }
    admin.check_services_limit(services.len())?;
    // Each image with its effective policies: the job's replace the admin's, within the
    // allowed ones. The helper comes from the store or a prebuilt tarball first.
    let mut wanted = vec![(opts.helper_image.clone(), vec![Policy::IfNotPresent])];
    wanted.push((
        image.name.clone(),
        admin.pull_policies_for(&image.name, &payload.image.pull_policy)?,
    ));
    for (svc, from) in services.iter().zip(&payload.services) {
        let policies = admin.pull_policies_for(&svc.image.name, &from.pull_policy)?;
        wanted.push((svc.image.name.clone(), policies));
    }
    let mut resolved = vec![];
    for (name, policies) in &wanted {
        let names: Vec<&str> = policies.iter().map(|p| p.name()).collect();
        log.line(&format!(
            "Using effective pull policy of [{}] for container {name}",
            names.join(" ")
        ));
        log.line(&format!("Pulling image {name} ..."));
        let found = images
            .ensure(name, policies)
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
            hosts: admin.extra_hosts.clone(),
            dns: admin.dns.clone(),
            userns: admin.userns(),
        })
        .await
        .map_err(|source| JobError::Pod { source })?;
    let volumes = job_volumes(&st, &payload, opts)?;
    let launch = Services {
        specs: &services,
        images: &service_images,
        envs: (0..services.len())
            .map(|i| payload.service_env(i))
            .collect(),
        // The docker executor binds the job's volumes into services too (a file variable's
        // path is under /builds).
        volumes: volumes.clone(),
        settings: service_settings(admin)?,
    };
    start_services(
        runtime,
        &st.pod,
        &launch,
        opts.wait_for_services_timeout,
        &log,
    )
    .await?;
    let variables: Vec<(String, String)> = payload
        .all_variables()
        .into_iter()
        .map(|v| (v.key, v.value))
        .collect();
    let docker = &payload.image.executor_opts.docker;
    let job_user = Some(payload.expand(&docker.user)).filter(|u| !u.is_empty());
    let build_settings = build_settings(admin, job_user.as_deref())?;
    let helper_settings = helper_settings(admin)?;
    // Made here, started for each stage (as the runner's docker executor does): the helper
    // with its image's entrypoint and command (`gitlab-runner-build`, which sets the umask
    // and runs the shell), the build container with the job image's entrypoint and the
    // runner's shell detection; both read the stage's script on stdin, with the job's
    // variables in their environment.
    for (name, image, entrypoint, command, settings) in [
        (
            &st.helper,
            helper_image,
            None,
            vec![HELPER_COMMAND.to_string()],
            helper_settings,
        ),
        (
            &st.build,
            job_image,
            image.entrypoint.clone(),
            script::shell_command(),
            build_settings,
        ),
    ] {
        let request = ContainerRequest {
            name: name.clone(),
            pod: st.pod.clone(),
            image,
            entrypoint,
            command,
            env: variables.clone(),
            hosts: vec![],
            volumes: volumes.clone(),
            workdir: None,
            settings,
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
    let output = std::sync::Mutex::new(String::new());
    let collect = |_: Stream, bytes: &[u8]| {
        if let Ok(mut o) = output.lock() {
            o.push_str(&String::from_utf8_lossy(bytes));
        }
    };
    // One start of the helper with the link on its stdin: the link stays in its files.
    let exit = runtime
        .run(helper, LINK_RUNNER_COMMAND.as_bytes(), &collect)
        .await
        .map_err(|source| JobError::Exec {
            stage: "linking gitlab-runner to gitlab-runner-helper".into(),
            container: helper.into(),
            source,
        })?;
    let code = match exit {
        RunExit::Exited(code) => code,
        RunExit::NotStarted(why) => {
            return Err(JobError::NotStarted {
                container: helper.into(),
                why,
            });
        }
    };
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
/// the runner masks it. When `cancel` completes first (the runner's SIGTERM on a timeout or
/// a cancellation), every process of the container is killed, as the docker executor stops
/// its container, and the stage is a system failure with `cancel`'s words.
pub async fn run_stage(
    root: &Path,
    env: &ExecutorEnv,
    script_file: &Path,
    stage: &str,
    runtime: &dyn JobRuntime,
    log: &dyn JobLog,
    cancel: impl std::future::Future<Output = String>,
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
    let mut run = runtime.run(container, &script, &relay);
    let exit = tokio::select! {
        exit = &mut run => exit,
        why = cancel => {
            runtime.kill(container).await;
            let _ = run.await;
            return Ok(StageOutcome::SystemFailure {
                reason: format!("stage {stage} {why}: {container} stopped"),
            });
        }
    };
    Ok(match exit {
        Ok(RunExit::Exited(0)) => StageOutcome::Succeeded,
        Ok(RunExit::Exited(exit_code)) => {
            // The script's own status, for the runner's job log.
            if let Some(file) = env.runner_var("BUILD_EXIT_CODE_FILE") {
                let _ = std::fs::write(file, format!("{exit_code}\n"));
            }
            StageOutcome::BuildFailure { exit_code }
        }
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
