//! A job ready to run: the resolved `.gitlab-ci.yml` job with everything `skiff job` adds
//! (its id, the project directory, masked values, the pod's network).

use crate::gitlab::pipeline::Job;
use std::path::PathBuf;
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
    /// The job's own directory (stage scripts, which hold its variables): see `recovery`.
    pub dir: PathBuf,
    /// The pod's network: `slirp4netns`, `pasta` or `private`.
    pub network: String,
    /// Seconds to wait for each service's ports; negative: no wait.
    pub wait_for_services_timeout: i64,
    /// Ends the pod when this process ends (the `skiff job` process).
    pub owner: Option<u32>,
}

impl JobPlan {
    pub fn pod(&self) -> String {
        format!("job-{}", self.id)
    }

    pub fn timeout(&self) -> Duration {
        self.job.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The `CI_*` variables that make sense for a local run.
    pub fn predefined(
        &self,
        namespace: &str,
        project: &str,
        project_dir: &str,
    ) -> Vec<(String, String)> {
        let id = &self.id;
        let id_number = u64::from_str_radix(&id[id.len().saturating_sub(8)..], 16).unwrap_or(1);
        let job = &self.job;
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
            ("CI_JOB_TIMEOUT", self.timeout().as_secs().to_string()),
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
}
