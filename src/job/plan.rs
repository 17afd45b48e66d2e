//! A job ready to run: the resolved `.gitlab-ci.yml` job with everything `skiff job` adds
//! (its id, the project directory, masked values, the pod's network).

use super::JobError;
use crate::gitlab::config::AdminConfig;
use crate::gitlab::pipeline::{ImageSpec, Job, ServiceSpec, default_aliases};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The runner's default job timeout when the job sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// after_script's own limit, whatever the job's.
pub const AFTER_SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct JobPlan {
    /// 12 hex digits; names the pod (`job-<id>`) and its containers.
    pub id: String,
    pub job: Job,
    /// Values shown as `[MASKED]` in the log (GitLab masks those of 8 characters or more).
    pub masked: Vec<String>,
    /// The project on the host, mounted where the runner would have cloned it.
    pub project_dir: PathBuf,
    /// The job's own directory (the admin's container-only volumes): see `recovery`.
    pub dir: PathBuf,
    /// The pod's network: `slirp4netns`, `pasta` or `private`.
    pub network: String,
    /// Seconds to wait for each service's ports; negative: no wait.
    pub wait_for_services_timeout: i64,
    /// Ends the pod when this process ends (the `skiff job` process).
    pub owner: Option<u32>,
    /// The admin file the GitLab driver reads (`[runners.docker]` keys), when one was given.
    pub admin: AdminConfig,
}

/// How `skiff job` runs a pipeline's job: the rest of a `JobPlan`.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Variables given as masked (`--masked-var`): their values never show in the log.
    pub masked_keys: Vec<String>,
    pub project_dir: PathBuf,
    pub network: String,
    pub wait_for_services_timeout: i64,
    /// The GitLab driver's admin file: a default image, runner-level services, allowed
    /// images and pull policies, volumes, limits...
    pub admin: AdminConfig,
}

impl JobPlan {
    /// A plan for a local run of `job`: a new id, and the job's directory in the store at
    /// `root`, owned by this process (which also owns the pod: killed, it takes the pod down).
    pub fn local(root: &Path, mut job: Job, opts: LocalOptions) -> Result<JobPlan, JobError> {
        let admin = &opts.admin;
        // As the runner: the admin's image for a job without one (always allowed), the
        // admin's services before the job's (always allowed), the job's checked.
        match &job.image {
            Some(image) => admin.verify_job_image(&image.name)?,
            None => {
                job.image = admin.image.as_ref().map(|name| ImageSpec {
                    name: name.clone(),
                    entrypoint: None,
                    pull_policy: vec![],
                })
            }
        }
        for svc in &job.services {
            admin.verify_job_service(&svc.image.name)?;
        }
        let mut services: Vec<ServiceSpec> = admin
            .services
            .iter()
            .map(|s| ServiceSpec {
                aliases: default_aliases(&s.name)
                    .into_iter()
                    .chain(s.aliases())
                    .collect(),
                image: ImageSpec {
                    name: s.name.clone(),
                    entrypoint: s.entrypoint.clone(),
                    pull_policy: vec![],
                },
                command: s.command.clone(),
                variables: s.environment.clone(),
            })
            .collect();
        services.append(&mut job.services);
        admin.check_services_limit(services.len())?;
        job.services = services;
        let id = format!("{:012x}", crate::time::now_nanos() & 0xffff_ffff_ffff);
        let dir = super::recovery::create(root, &id)?;
        let masked = job
            .variables
            .iter()
            .filter(|(k, _)| {
                opts.masked_keys.contains(k)
                    || job.masked_variables.contains(k)
                    || k == "DOCKER_AUTH_CONFIG"
            })
            .map(|(_, v)| v.clone())
            .collect();
        Ok(JobPlan {
            id,
            job,
            masked,
            project_dir: opts.project_dir,
            dir,
            network: opts.network,
            wait_for_services_timeout: opts.wait_for_services_timeout,
            owner: Some(std::process::id()),
            admin: opts.admin,
        })
    }

    /// The job's own `DOCKER_AUTH_CONFIG`, for its pulls.
    pub fn docker_auth_config(&self) -> Option<&str> {
        self.job
            .variables
            .iter()
            .find(|(k, _)| k == "DOCKER_AUTH_CONFIG")
            .map(|(_, v)| v.as_str())
    }

    pub fn pod(&self) -> String {
        format!("job-{}", self.id)
    }

    pub fn timeout(&self) -> Duration {
        self.job.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The `CI_*` variables that make sense for a local run, the project's
    /// ([`super::project::project_variables`]) among them; `project_dir` is where the job
    /// sees the project.
    pub fn predefined(&self, project_dir: &str) -> Vec<(String, String)> {
        let id = &self.id;
        let id_number = u64::from_str_radix(&id[id.len().saturating_sub(8)..], 16).unwrap_or(1);
        let job = &self.job;
        let mut vars: Vec<(String, String)> = [
            ("CI", "true".to_string()),
            ("GITLAB_CI", "true".into()),
            ("CI_SERVER", "yes".into()),
            ("CI_JOB_NAME", job.name.clone()),
            ("CI_JOB_NAME_SLUG", super::project::slug(&job.name)),
            ("CI_JOB_STAGE", job.stage.clone()),
            ("CI_JOB_ID", id_number.to_string()),
            (
                "CI_JOB_IMAGE",
                job.image
                    .as_ref()
                    .map(|i| i.name.clone())
                    .unwrap_or_default(),
            ),
            // The runner's: `running` until after_script, which sees how the job ended.
            ("CI_JOB_STATUS", "running".into()),
            ("CI_JOB_TIMEOUT", self.timeout().as_secs().to_string()),
            (
                "CI_NODE_TOTAL",
                job.node.as_ref().map_or(1, |n| n.total).to_string(),
            ),
            ("CI_BUILDS_DIR", "/builds".into()),
            ("CI_PROJECT_DIR", project_dir.into()),
            // Where the runner writes file variables.
            ("RUNNER_TEMP_PROJECT_DIR", format!("{project_dir}.tmp")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(node) = &job.node {
            vars.push(("CI_NODE_INDEX".into(), node.index.to_string()));
        }
        vars.extend(super::project::project_variables(&self.project_dir));
        vars
    }
}
