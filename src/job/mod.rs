//! Running one CI job the way GitLab Runner's docker executor does, without a daemon.
//!
//! `run` takes a `JobPlan` (from a `.gitlab-ci.yml` job, see `plan`) and runs it through two
//! seams: `JobRuntime` (pods, containers, exec) and `ImageSource` (images, read once). The
//! real ones act on skiff's runtime and store; fakes let the job's logic (timeouts,
//! after_script, teardown order, masking, service failures) be tested without root. The
//! custom-executor driver (`driver`) runs the runner's stages on the same seams.

pub mod driver;
pub mod local;
pub mod log;
pub mod plan;
pub mod project;
pub mod recovery;
pub mod run;
pub mod script;
pub mod seams;
pub mod services;
pub mod settings;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use log::{JobLog, Masker, Stream, section_end, section_start};
pub use plan::JobPlan;
pub use run::{Cancellations, JobOutcome, run};
pub use seams::{ContainerRequest, ImageSource, JobRuntime, PodRequest, RunExit};

/// A failure of the job machinery (a system failure, in the runner's words), never of the
/// job's own script.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("variables file {}: {reason}", file.display())]
    VariablesFile {
        file: std::path::PathBuf,
        reason: String,
    },
    #[error("service {service}: invalid health check tcp port: {value}")]
    HealthPort { service: String, value: String },
    #[error("service {service:?} has no exposed ports")]
    NoPorts { service: String },
    #[error("no image: give the job (or default:) an image")]
    NoImage,
    #[error("pull policy of {image}: {reason}")]
    PullPolicy { image: String, reason: String },
    #[error("pulling {image}")]
    Pull {
        image: String,
        #[source]
        source: seams::BoxError,
    },
    #[error("creating the job's pod")]
    Pod {
        #[source]
        source: seams::BoxError,
    },
    #[error("starting service {image}")]
    Service {
        image: String,
        #[source]
        source: seams::BoxError,
    },
    #[error("starting {what} from {image}")]
    Container {
        what: String,
        image: String,
        #[source]
        source: seams::BoxError,
    },
    /// The container's process never started (its entrypoint is missing, say).
    #[error("{container} could not start: {why}")]
    NotStarted { container: String, why: String },
    #[error("running {stage} in {container}")]
    Exec {
        stage: String,
        container: String,
        #[source]
        source: seams::BoxError,
    },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("project directory {}", path.display())]
    ProjectDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("job {0}")]
    Interrupted(String),
    #[error(transparent)]
    Executor(#[from] crate::gitlab::executor::ExecutorError),
    #[error(transparent)]
    Config(#[from] crate::gitlab::config::ConfigError),
    #[error(transparent)]
    Seccomp(#[from] crate::runtime::seccomp::SeccompError),
    #[error(transparent)]
    Recovery(#[from] crate::runtime::recovery::RecoveryError),
    #[error(transparent)]
    Payload(#[from] crate::gitlab::payload::PayloadError),
    #[error(
        "{image}: docker platform {asked}: skiff runs images of this host's platform ({host}) only"
    )]
    Platform {
        image: String,
        asked: String,
        host: String,
    },
    #[error(transparent)]
    HelperImage(#[from] crate::helper::HelperError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("removing the job's files")]
    Remove {
        #[source]
        source: seams::BoxError,
    },
}

impl JobError {
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| JobError::Io { what, path, source }
    }
}
