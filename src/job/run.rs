//! One job, start to end: images, the pod and its services, the build container, the script
//! and after_script stages, and the teardown that always runs (after a failure, a timeout or
//! a cancellation too).

use super::log::{JobLog, Masker, Stream, section_end, section_start};
use super::plan::{AFTER_SCRIPT_TIMEOUT, JobPlan};
use super::seams::{ContainerRequest, ImageSource, JobRuntime, PodRequest, RunExit};
use super::{JobError, script, services};
use crate::error_chain;
use crate::gitlab::pipeline::ServiceSpec;
use crate::image::ResolvedImage;
use crate::image::pull::parse_policies;
use crate::runtime::plan::Volume;
use std::time::Duration;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    /// The script failed (or ran out of time: the runner's code 1).
    Failed {
        exit_code: i32,
    },
    /// The job machinery failed: images, pod, services, containers, or a cancellation.
    SystemFailure {
        reason: String,
    },
}

impl JobOutcome {
    /// skiff job's exit status: the script's, or 125 for a system failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            JobOutcome::Succeeded => 0,
            JobOutcome::Failed { exit_code } => *exit_code,
            JobOutcome::SystemFailure { .. } => 125,
        }
    }
}

/// Masks every line before it reaches the log.
pub(super) struct MaskedLog<'a> {
    log: &'a dyn JobLog,
    masker: Masker,
}

impl<'a> MaskedLog<'a> {
    pub(super) fn new(log: &'a dyn JobLog, secrets: &[String]) -> Self {
        let mut masker = Masker::default();
        for secret in secrets {
            masker.add(secret);
        }
        MaskedLog { log, masker }
    }
    pub(super) fn line(&self, text: &str) {
        self.log.line(&self.masker.mask(text));
    }
    pub(super) fn warn(&self, text: &str) {
        self.line(&format!("\x1b[0;33mWARNING: {text}\x1b[0;m"));
    }
    fn output(&self, stream: Stream, bytes: &[u8]) {
        self.log
            .output(stream, &self.masker.mask(&String::from_utf8_lossy(bytes)));
    }
}

/// Each cancellation of the job, said as text (`proc::terminations`: Ctrl-C, SIGTERM). As
/// when GitLab cancels a job, the first ends the script and after_script still runs, told
/// `CI_JOB_STATUS=canceled`; the next ends after_script too. Before the script, the first
/// ends the job. A closed channel never cancels.
pub type Cancellations = tokio::sync::mpsc::UnboundedReceiver<String>;

async fn next_cancellation(cancel: &mut Cancellations) -> String {
    match cancel.recv().await {
        Some(why) => why,
        None => std::future::pending().await,
    }
}

/// Runs the job, then removes everything it made. A cancellation ends it early, with its
/// text as the reason (see `Cancellations`); the teardown still runs.
pub async fn run(
    plan: &JobPlan,
    runtime: &dyn JobRuntime,
    images: &dyn ImageSource,
    log: &dyn JobLog,
    mut cancel: Cancellations,
) -> JobOutcome {
    let log = MaskedLog::new(log, &plan.masked);
    let result = execute(plan, runtime, images, &log, &mut cancel).await;
    let started = std::time::Instant::now();
    runtime.remove_pod(&plan.pod()).await;
    super::recovery::remove(&plan.dir);
    tracing::debug!("cleanup took {:?}", started.elapsed());
    let outcome = match result {
        Ok(0) => JobOutcome::Succeeded,
        Ok(exit_code) => JobOutcome::Failed { exit_code },
        Err(e) => JobOutcome::SystemFailure {
            reason: error_chain(&e),
        },
    };
    match &outcome {
        JobOutcome::Succeeded => log.line("\x1b[32;1mJob succeeded\x1b[0;m"),
        JobOutcome::Failed { exit_code } => log.line(&format!(
            "\x1b[31;1mERROR: Job failed: exit code {exit_code}\x1b[0;m"
        )),
        JobOutcome::SystemFailure { reason } => log.line(&format!(
            "\x1b[31;1mERROR: Job failed (system failure): {reason}\x1b[0;m"
        )),
    }
    outcome
}

/// The build container made, and what its stages need.
struct Prepared {
    build: String,
    project_dir: String,
    variables: Vec<(String, String)>,
}

async fn execute(
    plan: &JobPlan,
    runtime: &dyn JobRuntime,
    images: &dyn ImageSource,
    log: &MaskedLog<'_>,
    cancel: &mut Cancellations,
) -> Result<i32, JobError> {
    let Prepared {
        build,
        project_dir,
        variables,
    } = tokio::select! {
        prepared = prepare(plan, runtime, images, log) => prepared?,
        why = next_cancellation(cancel) => return Err(JobError::Interrupted(why)),
    };
    let job = &plan.job;
    let timeout = plan.timeout();
    let step: Vec<String> = job
        .before_script
        .iter()
        .chain(&job.script)
        .cloned()
        .collect();
    let stage_in = |name: &'static str,
                    header: &'static str,
                    variables: &[(String, String)],
                    commands: &[String]| Stage {
        container: build.clone(),
        name,
        header,
        script: script::stdin_script(&script::stage_script(
            variables,
            &job.file_variables,
            &project_dir,
            commands,
        )),
    };
    let mut status = "success";
    let script_stage = stage_in(
        "step_script",
        "Executing \"step_script\" stage of the job script",
        &variables,
        &step,
    );
    let (ran, canceled) = cancellable_stage(runtime, &script_stage, timeout, log, cancel).await;
    let code = match ran? {
        Some(c) => c,
        None if canceled.is_some() => {
            status = "canceled";
            1
        }
        None => {
            log.line(&format!(
                "\x1b[31;1mERROR: Job failed: execution took longer than {} seconds\x1b[0;m",
                timeout.as_secs()
            ));
            // The runner's code for a timed-out job's script is not the script's own.
            status = "timedout";
            1
        }
    };
    if let Some(why) = &canceled {
        log.warn(&format!("script canceled: {why}"));
    }
    if !job.after_script.is_empty() {
        // after_script runs whatever happened, with its own 5 minutes, and never changes
        // the job's status; CI_JOB_STATUS tells it how the job ended, as the runner does.
        if code != 0 && status == "success" {
            status = "failed";
        }
        let mut after = variables.clone();
        after.push(("CI_JOB_STATUS".into(), status.into()));
        let after_stage = stage_in(
            "after_script",
            "Running after_script",
            &after,
            &job.after_script,
        );
        let (ran, canceled_too) =
            cancellable_stage(runtime, &after_stage, AFTER_SCRIPT_TIMEOUT, log, cancel).await;
        ran?;
        if let Some(why) = canceled_too {
            return Err(JobError::Interrupted(why));
        }
    }
    match canceled {
        Some(why) => Err(JobError::Interrupted(why)),
        None => Ok(code),
    }
}

/// `run_stage`, ended early by a cancellation: the container's processes are killed and the
/// stage's start waited out, as on a timeout. Returns the stage's result (None when it was
/// ended) and the cancellation, if one came.
async fn cancellable_stage(
    runtime: &dyn JobRuntime,
    stage: &Stage,
    timeout: Duration,
    log: &MaskedLog<'_>,
    cancel: &mut Cancellations,
) -> (Result<Option<i32>, JobError>, Option<String>) {
    let ran = run_stage(runtime, stage, timeout, log);
    tokio::pin!(ran);
    tokio::select! {
        result = &mut ran => (result, None),
        why = next_cancellation(cancel) => {
            runtime.kill(&stage.container).await;
            let result = ran.await.map(|_| None);
            (result, Some(why))
        }
    }
}

/// Everything before the script: images, the pod and its services, the build container.
async fn prepare(
    plan: &JobPlan,
    runtime: &dyn JobRuntime,
    images: &dyn ImageSource,
    log: &MaskedLog<'_>,
) -> Result<Prepared, JobError> {
    let job = &plan.job;
    log.line(&format!(
        "Running with skiff {} (job {})",
        env!("CARGO_PKG_VERSION"),
        plan.id
    ));
    for w in &job.warnings {
        log.warn(w);
    }
    let image = job.image.as_ref().ok_or(JobError::NoImage)?;

    log.line(&section_start(
        "prepare_executor",
        "Preparing the \"skiff\" executor",
    ));
    log.line(&format!(
        "Using skiff executor with image {} ...",
        image.name
    ));
    let mut resolved = vec![];
    for spec in std::iter::once(image).chain(job.services.iter().map(|s| &s.image)) {
        // With the admin's file, the runner's rules (default always, the job's within the
        // allowed ones). Without: the job's, else if-not-present (a local run on a warm
        // store should not need the network).
        let policies = if plan.admin.source.is_some() {
            plan.admin
                .pull_policies_for(&spec.name, &spec.pull_policy)?
        } else {
            let policy = match spec.pull_policy.is_empty() {
                true => "if-not-present".to_string(),
                false => spec.pull_policy.join(","),
            };
            parse_policies(&policy).map_err(|reason| JobError::PullPolicy {
                image: spec.name.clone(),
                reason,
            })?
        };
        log.line(&format!("Pulling image {} ...", spec.name));
        let found = images
            .ensure(&spec.name, &policies)
            .await
            .map_err(|source| JobError::Pull {
                image: spec.name.clone(),
                source,
            })?;
        log.line(&format!("Using image {} with ID {}", spec.name, found.id));
        resolved.push(found);
    }
    let job_image = resolved.remove(0);
    log.line(&section_end("prepare_executor"));

    log.line(&section_start("prepare_services", "Starting services"));
    let pod = plan.pod();
    runtime
        .create_pod(&PodRequest {
            name: pod.clone(),
            network: plan.network.clone(),
            owner: plan.owner,
            hosts: plan.admin.extra_hosts.clone(),
            dns: plan.admin.dns.clone(),
            userns: plan.admin.userns(),
        })
        .await
        .map_err(|source| JobError::Pod { source })?;
    // Where the project is mounted, as the runner would have cloned it; the job's variables
    // as the runner has them, predefined ones first.
    let (namespace, project) = super::project::project_path(&plan.project_dir);
    let project_dir = format!("/builds/{namespace}/{project}");
    let variables = plan.job.runner_variables(&plan.predefined(&project_dir));
    let services = Services {
        specs: &plan.job.services,
        images: &resolved,
        envs: plan
            .job
            .services
            .iter()
            .map(|svc| services::environment(&variables, svc))
            .collect(),
        volumes: vec![],
        settings: super::settings::service_settings(&plan.admin)?,
    };
    start_services(
        runtime,
        &pod,
        &services,
        plan.wait_for_services_timeout,
        log,
    )
    .await?;
    log.line(&section_end("prepare_services"));

    // Sources: the project directory.
    let host_project = plan
        .project_dir
        .canonicalize()
        .map_err(|source| JobError::ProjectDir {
            path: plan.project_dir.clone(),
            source,
        })?;
    log.line(&section_start(
        "get_sources",
        "Getting source from the project directory",
    ));
    log.line(&format!(
        "Mounting {} at {project_dir}",
        host_project.display()
    ));
    log.line(&section_end("get_sources"));

    let build = format!("{pod}-build");
    // Made once; started again for each stage, as the runner's docker executor does: the
    // image's entrypoint runs every time, with the job's variables in its environment, and
    // the detected shell reads the stage's script on stdin.
    let request = ContainerRequest {
        name: build.clone(),
        pod: pod.clone(),
        image: job_image,
        entrypoint: image.entrypoint.clone(),
        command: script::shell_command(),
        env: variables.clone(),
        hosts: vec![],
        // The job's root owns the project as its owner does (an idmapped bind): what the job
        // writes there is the project owner's, as without a user namespace.
        volumes: std::iter::once(Volume {
            source: host_project,
            destination: project_dir.clone(),
            read_only: false,
            idmap: true,
        })
        .chain(super::settings::admin_volumes(
            &plan.admin,
            &plan.dir.join("volumes"),
            &variables,
        )?)
        .collect(),
        workdir: Some(project_dir.clone()),
        settings: super::settings::build_settings(&plan.admin, None)?,
    };
    runtime
        .create(&request)
        .await
        .map_err(|source| JobError::Container {
            what: "the build container".into(),
            image: request.image.name.clone(),
            source,
        })?;

    Ok(Prepared {
        build,
        project_dir,
        variables,
    })
}

/// Starts the services in the pod, each reachable by its aliases, and waits for their ports
/// (GitLab's rules: HEALTHCHECK_TCP_PORT, else the exposed ports; any one port will do). A
/// service that does not come up gets the runner's warning block; the job carries on.
/// A job's services, ready to start: the specs, their images and environments (one each),
/// and what every service container gets.
pub(super) struct Services<'a> {
    pub specs: &'a [ServiceSpec],
    pub images: &'a [ResolvedImage],
    pub envs: Vec<Vec<(String, String)>>,
    pub volumes: Vec<crate::runtime::plan::Volume>,
    pub settings: super::seams::ContainerSettings,
}

pub(super) async fn start_services(
    runtime: &dyn JobRuntime,
    // Services are named `<pod>-svc-<index>`.
    pod: &str,
    services: &Services<'_>,
    wait_for_services_timeout: i64,
    log: &MaskedLog<'_>,
) -> Result<(), JobError> {
    let mut started = vec![];
    let launches = services
        .specs
        .iter()
        .zip(services.images)
        .zip(&services.envs);
    for (i, ((svc, image), env)) in launches.enumerate() {
        let name = format!("{pod}-svc-{i}");
        log.line(&format!("Starting service {} ...", svc.image.name));
        let request = ContainerRequest {
            name: name.clone(),
            pod: pod.to_string(),
            image: image.clone(),
            entrypoint: svc.image.entrypoint.clone(),
            command: svc.command.clone().unwrap_or_default(),
            env: env.clone(),
            hosts: svc
                .aliases
                .iter()
                .map(|a| (a.clone(), "127.0.0.1".to_string()))
                .collect(),
            volumes: services.volumes.clone(),
            workdir: None,
            settings: services.settings.clone(),
        };
        runtime
            .start(&request)
            .await
            .map_err(|source| JobError::Service {
                image: svc.image.name.clone(),
                source,
            })?;
        started.push((name, svc, image, env));
    }
    if wait_for_services_timeout < 0 || started.is_empty() {
        return Ok(());
    }
    let timeout = Duration::from_secs(wait_for_services_timeout as u64);
    log.line(&format!(
        "Waiting for services to be up and running (timeout {} seconds)...",
        timeout.as_secs()
    ));
    let waits = started.iter().map(|(name, svc, image, env)| async move {
        let config = image.config.container();
        let ports = match services::health_ports(&svc.image.name, env, &config) {
            Ok(p) => p,
            Err(e) => return Some((name, e.to_string())),
        };
        let up = runtime.wait_for_ports(pod, &ports, timeout).await;
        (!up).then(|| (name, format!("service \"{name}-wait-for-service\" timeout")))
    });
    for (name, error) in futures_util::future::join_all(waits)
        .await
        .into_iter()
        .flatten()
    {
        let logs = runtime.logs(name);
        log.output(
            Stream::Stderr,
            services::service_warning(name, &error, &logs).as_bytes(),
        );
    }
    Ok(())
}

struct Stage {
    container: String,
    name: &'static str,
    header: &'static str,
    /// What the container's shell reads on stdin.
    script: String,
}

/// Runs one stage in its container, relaying its output (masked). `None` when it ran out of
/// time (its processes are killed).
async fn run_stage(
    runtime: &dyn JobRuntime,
    stage: &Stage,
    timeout: Duration,
    log: &MaskedLog<'_>,
) -> Result<Option<i32>, JobError> {
    log.line(&section_start(stage.name, stage.header));
    let exit = start_stage(
        runtime,
        &stage.container,
        stage.script.as_bytes(),
        timeout,
        log,
    )
    .await
    .map_err(|source| JobError::Exec {
        stage: stage.name.into(),
        container: stage.container.clone(),
        source,
    })?;
    let code = match exit {
        None => None,
        Some(RunExit::Exited(code)) => Some(code),
        Some(RunExit::NotStarted(why)) => {
            return Err(JobError::NotStarted {
                container: stage.container.clone(),
                why,
            });
        }
    };
    log.line(&section_end(stage.name));
    Ok(code)
}

/// One start of a created container with `input` on its stdin, its output relayed (masked).
/// `None` when `timeout` passed first: its processes are killed, and the start waited out.
pub(super) async fn start_stage(
    runtime: &dyn JobRuntime,
    container: &str,
    input: &[u8],
    timeout: Duration,
    log: &MaskedLog<'_>,
) -> Result<Option<RunExit>, super::seams::BoxError> {
    let relay = |stream: Stream, bytes: &[u8]| log.output(stream, bytes);
    let mut run = runtime.run(container, input, &relay);
    tokio::select! {
        exit = &mut run => exit.map(Some),
        _ = tokio::time::sleep(timeout) => {
            runtime.kill(container).await;
            let _ = run.await;
            Ok(None)
        }
    }
}
