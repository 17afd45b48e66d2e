//! What a job needs of the world: a runtime for pods and containers, and a source of images.
//! The real implementations act on skiff's runtime and store; the fakes in tests record.

use crate::image::ResolvedImage;
use crate::image::pull::Policy;
use crate::runtime::plan::Volume;
use futures_util::future::LocalBoxFuture as BoxFuture;
use std::path::PathBuf;
use std::time::Duration;

// The futures are not `Send`: a job runs on the thread that awaits it (the pull's future is
// not `Send` either), with its concurrency inside one task.

/// The cause of a failed runtime or image operation, kept whole for the job log.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Receives a container's output, a whole line at a time (the last one may lack its newline).
pub type OutputSink<'a> = &'a (dyn Fn(super::Stream, &[u8]) + Send + Sync);

/// A pod for the job: one network (and user) namespace for its services and containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRequest {
    pub name: String,
    /// `private`, `slirp4netns` or `pasta` (podman's syntax).
    pub network: String,
    /// The pod ends, members killed, when this process ends (`skiff job`'s own pid).
    pub owner: Option<u32>,
    /// NAME, IP entries in every member's /etc/hosts (`extra_hosts`).
    pub hosts: Vec<(String, String)>,
    /// DNS servers for every member's /etc/resolv.conf.
    pub dns: Vec<String>,
    /// As root: ids of the job's own (auto, the default) or the host's (the admin's
    /// `userns_mode = "host"`).
    pub userns: crate::runtime::userns::UsernsMode,
}

/// A container started in the job's pod, running until the pod is removed.
#[derive(Debug, Clone)]
pub struct ContainerRequest {
    pub name: String,
    pub pod: String,
    pub image: ResolvedImage,
    /// `None`: the image's; `Some(vec![])`: none at all.
    pub entrypoint: Option<Vec<String>>,
    /// Empty: the image's Cmd.
    pub command: Vec<String>,
    /// KEY, VALUE pairs; values may hold secrets, so they never go on a command line.
    pub env: Vec<(String, String)>,
    /// NAME, IP entries every member of the pod sees in /etc/hosts.
    pub hosts: Vec<(String, String)>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    pub workdir: Option<String>,
    pub settings: ContainerSettings,
}

/// What an admin may set for a job's containers (the runner's `[runners.docker]` keys).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSettings {
    /// USER[:GROUP] inside the container.
    pub user: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `DST[:OPTIONS]` tmpfs mounts.
    pub tmpfs: Vec<String>,
    pub limits: crate::runtime::plan::Limits,
    pub seccomp: crate::runtime::seccomp::SeccompPolicy,
}

/// How one start of a created container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunExit {
    /// Its process ran and exited with this status.
    Exited(i32),
    /// Its process never started (the entrypoint is missing, say): skiff's words why.
    NotStarted(String),
}

pub trait JobRuntime: Send + Sync {
    fn create_pod<'a>(&'a self, pod: &'a PodRequest) -> BoxFuture<'a, Result<(), BoxError>>;
    /// Starts a container detached, in its pod; returns once it runs.
    fn start<'a>(&'a self, container: &'a ContainerRequest) -> BoxFuture<'a, Result<(), BoxError>>;
    /// Makes a container in its pod without starting it: `run` starts it, as often as a job
    /// needs, and its filesystem persists from one start to the next.
    fn create<'a>(&'a self, container: &'a ContainerRequest)
    -> BoxFuture<'a, Result<(), BoxError>>;
    /// Starts a created (or exited) container with `input` on its stdin (then closed),
    /// relaying its output, until it exits. Dropping the future kills it.
    fn run<'a>(
        &'a self,
        container: &'a str,
        input: &'a [u8],
        output: OutputSink<'a>,
    ) -> BoxFuture<'a, Result<RunExit, BoxError>>;
    /// Kills every process of a container started by `run` (its `run` then returns).
    fn kill<'a>(&'a self, container: &'a str) -> BoxFuture<'a, ()>;
    /// Whether one of `ports` on the pod's 127.0.0.1 accepts a connection within `timeout`.
    fn wait_for_ports<'a>(
        &'a self,
        pod: &'a str,
        ports: &'a [u16],
        timeout: Duration,
    ) -> BoxFuture<'a, bool>;
    /// What a detached container has printed so far.
    fn logs(&self, container: &str) -> String;
    /// Removes the pod and every container in it, running or not. Never fails: what is left
    /// is for `system cleanup`.
    fn remove_pod<'a>(&'a self, pod: &'a str) -> BoxFuture<'a, ()>;
    /// Removes directories whose files may belong to the containers' ids (a build directory
    /// the job wrote in): from inside the user namespace when rootless.
    fn remove_files<'a>(&'a self, paths: &'a [PathBuf]) -> BoxFuture<'a, Result<(), BoxError>>;
}

pub trait ImageSource: Send + Sync {
    /// The image, pulled or imported as `policies` allow (a fallback chain), read once.
    fn ensure<'a>(
        &'a self,
        name: &'a str,
        policies: &'a [Policy],
    ) -> BoxFuture<'a, Result<ResolvedImage, BoxError>>;
}
