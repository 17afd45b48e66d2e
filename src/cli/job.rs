//! `skiff job [-f .gitlab-ci.yml] [--var K=V]... JOB`: one job of a pipeline, with its
//! services, the way GitLab Runner's docker executor runs it, rootless and without a daemon.
//!
//! The job gets a pod (one user and network namespace): services start in it first, each
//! reachable on 127.0.0.1 by its aliases (GitLab's Kubernetes executor does the same), then a
//! build container in which each stage runs through `skiff exec`. Everything is removed at
//! the end, also after a failure, a timeout or Ctrl-C.

use super::progress::ProgressMode;
use super::{Context, RegistryArgs};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use skiff::auth::sources::{AuthEnv, CredentialResolver};
use skiff::gitlab::pipeline::{Job, Pipeline, ServiceSpec};
use skiff::image::parse_policies;
use skiff::job::{self as jobs, Masker};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

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
    /// Seconds to wait for each service's ports (GitLab's wait_for_services_timeout; -1: no wait)
    #[arg(long, default_value_t = 30, allow_negative_numbers = true)]
    pub wait_for_services_timeout: i64,
    #[command(flatten)]
    pub registry: RegistryArgs,
    pub job: String,
}

fn pair(kv: &str) -> Result<(String, String)> {
    kv.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .with_context(|| format!("{kv:?}: expected KEY=VALUE"))
}

/// What the job made, removed by `teardown` whatever happened.
struct Resources {
    root: PathBuf,
    pod: String,
    dir: PathBuf,
}

impl Resources {
    async fn teardown(&self) {
        let _ = tokio::process::Command::new(std::env::current_exe().unwrap_or_default())
            .arg("--root")
            .arg(&self.root)
            .args(["pod", "rm", "-f", &self.pod])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        // The owner file goes last: killed midway, this leaves a directory that still names
        // its (dead) owner for `system cleanup`.
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.file_name() != JOB_OWNER {
                let path = e.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prints the job log: each line masked.
pub(super) struct Log {
    pub(super) masker: Masker,
}

impl Log {
    pub(super) fn line(&self, text: &str) {
        println!("{}", self.masker.mask(text));
    }
    pub(super) fn warn(&self, text: &str) {
        println!("\x1b[0;33mWARNING: {}\x1b[0;m", self.masker.mask(text));
    }
}

/// `skiff ARGS` against the same store.
pub(super) fn skiff(ctx: &Context) -> Result<tokio::process::Command> {
    let mut c = tokio::process::Command::new(std::env::current_exe()?);
    c.arg("--root").arg(&ctx.root);
    Ok(c)
}

pub async fn run(ctx: &Context, a: JobArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let pipeline = Pipeline::parse(&text, &a.file.display().to_string())?;
    let mut cli_vars = a.vars.iter().map(|v| pair(v)).collect::<Result<Vec<_>>>()?;
    let masked = a
        .masked_vars
        .iter()
        .map(|v| pair(v))
        .collect::<Result<Vec<_>>>()?;
    cli_vars.extend(masked.iter().cloned());
    let job = pipeline.job(&a.job, &cli_vars)?;
    let mut masker = Masker::default();
    for (k, v) in &job.variables {
        if masked.iter().any(|(m, _)| m == k) || k == "DOCKER_AUTH_CONFIG" {
            masker.add(v);
        }
    }
    let log = Log { masker };
    let id = format!("{:012x}", skiff::time::now_nanos() & 0xffff_ffff_ffff);
    let dir = ctx.root.join("jobs").join(&id);
    // Made under a name carrying our pid, given its owner file, then renamed: a job
    // directory without an owner file is one whose removal was cut short, never a new one.
    let staging = ctx
        .root
        .join("jobs")
        .join(format!(".{id}.{}", std::process::id()));
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    private_dir(&staging)?;
    std::fs::write(staging.join(JOB_OWNER), std::process::id().to_string())?;
    std::fs::rename(&staging, &dir).with_context(|| format!("creating {}", dir.display()))?;
    let res = Resources {
        root: ctx.root.clone(),
        pod: format!("job-{id}"),
        dir: dir.clone(),
    };
    // Ctrl-C and SIGTERM end the job, and the cleanup below still runs.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        r = run_job(ctx, &a, &job, &id, &dir, &log) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("job interrupted (SIGINT)")),
        _ = term.recv() => Err(anyhow::anyhow!("job terminated (SIGTERM)")),
    };
    let cleanup = Instant::now();
    res.teardown().await;
    tracing::debug!("cleanup took {:?}", cleanup.elapsed());
    match outcome {
        Ok(0) => {
            log.line("\x1b[32;1mJob succeeded\x1b[0;m");
            Ok(())
        }
        Ok(code) => {
            log.line(&format!(
                "\x1b[31;1mERROR: Job failed: exit code {code}\x1b[0;m"
            ));
            Err(super::run::ExitStatus(code).into())
        }
        Err(e) => {
            log.line(&format!(
                "\x1b[31;1mERROR: Job failed (system failure): {e:#}\x1b[0;m"
            ));
            Err(super::run::ExitStatus(125).into())
        }
    }
}

async fn run_job(
    ctx: &Context,
    a: &JobArgs,
    job: &Job,
    id: &str,
    dir: &Path,
    log: &Log,
) -> Result<i32> {
    log.line(&format!(
        "Running with skiff {} (job {id})",
        env!("CARGO_PKG_VERSION")
    ));
    for w in &job.warnings {
        log.warn(w);
    }
    let image = job
        .image
        .as_ref()
        .context("no image: give the job (or default:) an image")?;
    // Prepare: images, with the job's DOCKER_AUTH_CONFIG first among the credentials.
    log.line(&jobs::section_start(
        "prepare_executor",
        "Preparing the \"skiff\" executor",
    ));
    log.line(&format!(
        "Using skiff executor with image {} ...",
        image.name
    ));
    let store = ctx.store()?;
    let mut puller = a
        .registry
        .puller(store.clone(), ProgressMode::Quiet, true)?;
    if let Some((_, auth)) = job
        .variables
        .iter()
        .find(|(k, _)| k == "DOCKER_AUTH_CONFIG")
    {
        let mut env = AuthEnv::from_process(a.registry.authfile.clone());
        env.docker_auth_config = Some(auth.clone());
        puller.credentials = CredentialResolver::new(&env, None);
    }
    let mut configs = vec![];
    for (name, policy) in std::iter::once((&image.name, &image.pull_policy)).chain(
        job.services
            .iter()
            .map(|s| (&s.image.name, &s.image.pull_policy)),
    ) {
        // Without a pull_policy: if-not-present (the runner's default is always; a local run
        // on a warm store should not need the network).
        let policies = parse_policies(&if policy.is_empty() {
            "if-not-present".to_string()
        } else {
            policy.join(",")
        })
        .map_err(anyhow::Error::msg)?;
        log.line(&format!("Pulling image {name} ..."));
        let report = puller
            .ensure(name, &policies)
            .await
            .with_context(|| format!("pulling {name}"))?;
        log.line(&format!("Using image {name} with ID {}", report.id));
        let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&report.id)?)?;
        configs.push(config);
    }
    log.line(&jobs::section_end("prepare_executor"));

    // The pod, and the services in it.
    log.line(&jobs::section_start(
        "prepare_services",
        "Starting services",
    ));
    let network = a.network.clone().unwrap_or_else(|| {
        if skiff::runtime::network::available("slirp4netns") {
            "slirp4netns".into()
        } else {
            "private".into()
        }
    });
    let pod = format!("job-{id}");
    // The pod ends with this process, even when it is killed with SIGKILL.
    let owner = std::process::id().to_string();
    let out = skiff(ctx)?
        .args([
            "pod",
            "create",
            "--network",
            &network,
            "--owner",
            &owner,
            &pod,
        ])
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "creating the job's pod: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    start_services(
        ctx,
        &pod,
        &pod,
        dir,
        &job.services,
        &configs[1..],
        &job.variables,
        a.wait_for_services_timeout,
        log,
    )
    .await?;
    log.line(&jobs::section_end("prepare_services"));

    // Sources: the project directory, mounted where the runner would have cloned it.
    let (namespace, project) = jobs::project_path(&a.project_dir);
    let project_dir = format!("/builds/{namespace}/{project}");
    let host_project = a
        .project_dir
        .canonicalize()
        .with_context(|| format!("project directory {}", a.project_dir.display()))?;
    log.line(&jobs::section_start(
        "get_sources",
        "Getting source from the project directory",
    ));
    log.line(&format!(
        "Mounting {} at {project_dir}",
        host_project.display()
    ));
    log.line(&jobs::section_end("get_sources"));

    let timeout = job.timeout.unwrap_or(Duration::from_secs(3600));
    let mut variables = predefined(job, id, &namespace, &project, &project_dir, timeout);
    variables.extend(job.variables.iter().cloned());
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    let build = format!("job-{id}-build");
    let mut cmd = skiff(ctx)?;
    cmd.args([
        "run", "-d", "--pull", "never", "--pod", &pod, "--name", &build,
    ])
    .arg("-v")
    .arg(format!("{}:{project_dir}", host_project.display()))
    .arg("-v")
    .arg(format!("{}:/skiff-job:ro", scripts.display()))
    .args(["-w", &project_dir]);
    start_idle(
        cmd,
        &image.name,
        image.entrypoint.as_deref(),
        "the build container",
    )
    .await?;

    let step: Vec<String> = job
        .before_script
        .iter()
        .chain(&job.script)
        .cloned()
        .collect();
    let started_at = Instant::now();
    let code = stage(
        ctx,
        &build,
        &scripts,
        "step_script",
        "Executing \"step_script\" stage of the job script",
        &variables,
        &project_dir,
        &step,
        timeout,
        log,
    )
    .await?;
    let code = match code {
        Some(c) => c,
        None => {
            log.line(&format!(
                "\x1b[31;1mERROR: Job failed: execution took longer than {} seconds\x1b[0;m",
                timeout.as_secs()
            ));
            // The runner's code for a timed-out job's script is not the script's own.
            1
        }
    };
    tracing::debug!("script took {:?}", started_at.elapsed());
    if !job.after_script.is_empty() {
        // after_script runs whatever happened, with its own 5 minutes, and never changes
        // the job's status.
        let _ = stage(
            ctx,
            &build,
            &scripts,
            "after_script",
            "Running after_script",
            &variables,
            &project_dir,
            &job.after_script,
            Duration::from_secs(300),
            log,
        )
        .await?;
    }
    Ok(code)
}

/// Starts the services in the pod, each reachable by its aliases, and waits for their ports
/// (GitLab's rules: HEALTHCHECK_TCP_PORT, else the exposed ports; any one port will do). A
/// service that does not come up gets the runner's warning block; the job carries on.
#[allow(clippy::too_many_arguments)]
pub(super) async fn start_services(
    ctx: &Context,
    pod: &str,
    // Services are named `<id>-svc-<index>`.
    id: &str,
    dir: &Path,
    services: &[ServiceSpec],
    configs: &[serde_json::Value],
    variables: &[(String, String)],
    wait_timeout: i64,
    log: &Log,
) -> Result<()> {
    let service_vars: Vec<(String, String)> = variables.to_vec();
    let mut started = vec![];
    for (i, (svc, config)) in services.iter().zip(configs).enumerate() {
        let name = format!("{id}-svc-{i}");
        let mut vars = service_vars.clone();
        for (k, v) in &svc.variables {
            vars.push((k.clone(), skiff::gitlab::pipeline::expand(v, &vars)));
        }
        let env_file = dir.join(format!("{name}.env"));
        write_private(
            &env_file,
            &vars
                .iter()
                .filter(|(k, v)| !k.is_empty() && !v.contains('\n'))
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect::<String>(),
        )?;
        log.line(&format!("Starting service {} ...", svc.image.name));
        let mut cmd = skiff(ctx)?;
        cmd.args([
            "run", "-d", "--pull", "never", "--pod", pod, "--name", &name,
        ])
        .arg("--env-file")
        .arg(&env_file);
        for alias in &svc.aliases {
            cmd.arg("--add-host").arg(format!("{alias}:127.0.0.1"));
        }
        if let Some(e) = &svc.image.entrypoint {
            cmd.arg("--entrypoint").arg(serde_json::to_string(e)?);
        }
        cmd.arg(&svc.image.name);
        if let Some(c) = &svc.command {
            cmd.args(c);
        }
        let out = cmd.output().await?;
        if !out.status.success() {
            bail!(
                "starting service {}: {}",
                svc.image.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        started.push((name, svc, config, vars));
    }
    if wait_timeout >= 0 && !started.is_empty() {
        let timeout = Duration::from_secs(wait_timeout as u64);
        log.line(&format!(
            "Waiting for services to be up and running (timeout {} seconds)...",
            timeout.as_secs()
        ));
        let pod_dir = ctx.root.join("pods").join(pod);
        let waits = started.iter().map(|(name, svc, config, vars)| {
            let pod_dir = pod_dir.clone();
            async move {
                let ports = match jobs::health_ports(&svc.image.name, vars, config) {
                    Ok(p) => p,
                    Err(e) => return Some((name.clone(), e.to_string())),
                };
                let ok = tokio::process::Command::new(std::env::current_exe().ok()?)
                    .arg("__probe")
                    .arg(&pod_dir)
                    .arg(timeout.as_millis().to_string())
                    .args(ports.iter().map(|p| p.to_string()))
                    .stdout(Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                (!ok).then(|| {
                    (
                        name.clone(),
                        format!("service \"{name}-wait-for-service\" timeout"),
                    )
                })
            }
        });
        for (name, error) in futures_util::future::join_all(waits)
            .await
            .into_iter()
            .flatten()
        {
            let logs = std::fs::read_to_string(ctx.root.join("containers").join(&name).join("log"))
                .unwrap_or_default();
            eprint!(
                "{}",
                log.masker
                    .mask(&jobs::service_warning(&name, &error, &logs))
            );
        }
    }
    Ok(())
}

/// The `CI_*` variables that make sense for a local run.
fn predefined(
    job: &Job,
    id: &str,
    namespace: &str,
    project: &str,
    project_dir: &str,
    timeout: Duration,
) -> Vec<(String, String)> {
    let id_number = u64::from_str_radix(&id[id.len().saturating_sub(8)..], 16).unwrap_or(1);
    [
        ("CI", "true".to_string()),
        ("GITLAB_CI", "true".into()),
        ("CI_SERVER", "yes".into()),
        ("CI_JOB_NAME", job.name.clone()),
        ("CI_JOB_STAGE", job.stage.clone()),
        ("CI_JOB_ID", id_number.to_string()),
        (
            "CI_JOB_IMAGE",
            job.image
                .as_ref()
                .map(|i| i.name.clone())
                .unwrap_or_default(),
        ),
        ("CI_JOB_TIMEOUT", timeout.as_secs().to_string()),
        ("CI_BUILDS_DIR", "/builds".into()),
        ("CI_PROJECT_DIR", project_dir.into()),
        ("CI_PROJECT_NAME", project.into()),
        ("CI_PROJECT_NAMESPACE", namespace.into()),
        ("CI_PROJECT_PATH", format!("{namespace}/{project}")),
        ("CI_PIPELINE_SOURCE", "local".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Only the owner may enter: the stage scripts inside hold the job's variables, secrets
/// included. (Containers reach their bind-mounted subdirectory without passing through it.)
/// Finishes a `skiff run -d` command for a container that idles until stopped: each stage is
/// an exec into it (the runner re-attaches likewise), and runs it.
pub(super) async fn start_idle(
    mut cmd: tokio::process::Command,
    image: &str,
    entrypoint: Option<&[String]>,
    what: &str,
) -> Result<()> {
    if let Some(e) = entrypoint {
        cmd.arg("--entrypoint").arg(serde_json::to_string(e)?);
    }
    cmd.arg(image).args([
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done",
    ]);
    let out = cmd.output().await?;
    if !out.status.success() {
        bail!(
            "starting {what} from {image}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `jobs/<id>/owner`: the pid of the `skiff job` process the directory belongs to.
pub(super) const JOB_OWNER: &str = "owner";

pub(super) fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

pub(super) fn write_private(path: &Path, body: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(body.as_bytes())?;
    Ok(())
}

/// Runs one stage script in the build container, relaying its output (masked). `None` when
/// it ran out of time (it is killed).
#[allow(clippy::too_many_arguments)]
async fn stage(
    ctx: &Context,
    container: &str,
    scripts: &Path,
    name: &str,
    header: &str,
    variables: &[(String, String)],
    project_dir: &str,
    commands: &[String],
    timeout: Duration,
    log: &Log,
) -> Result<Option<i32>> {
    log.line(&jobs::section_start(name, header));
    let file = scripts.join(format!("{name}.sh"));
    // Readable by the container's user whoever it is; the job directory itself is private.
    std::fs::write(&file, jobs::stage_script(variables, project_dir, commands))?;
    let mut child = skiff(ctx)?
        .args(["exec", container, "sh", "-c"])
        .arg(jobs::detect_shell(&format!("/skiff-job/{name}.sh")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let relay = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, to_err: bool| {
        let masker = log.masker.clone();
        async move {
            let Some(stream) = stream else { return };
            let mut lines = tokio::io::BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match lines.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = masker.mask(&String::from_utf8_lossy(&buf));
                        use std::io::Write;
                        if to_err {
                            let _ = std::io::stderr().write_all(text.as_bytes());
                        } else {
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(text.as_bytes());
                            let _ = out.flush();
                        }
                    }
                }
            }
        }
    };
    let out = relay(child.stdout.take().map(|s| Box::new(s) as _), false);
    let err = relay(child.stderr.take().map(|s| Box::new(s) as _), true);
    let wait = async {
        let (status, _, _) = tokio::join!(child.wait(), out, err);
        status
    };
    let result = match tokio::time::timeout(timeout, wait).await {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            let status = status?;
            Some(
                status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            )
        }
        Err(_) => {
            // Time is up: stop whatever the stage left running in the container.
            let _ = skiff(ctx)?
                .args([
                    "exec",
                    container,
                    "sh",
                    "-c",
                    "kill -KILL -1 2>/dev/null; true",
                ])
                .output()
                .await;
            None
        }
    };
    log.line(&jobs::section_end(name));
    Ok(result)
}
