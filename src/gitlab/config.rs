//! The driver's admin configuration: a TOML file whose keys are GitLab Runner's
//! `[runners.docker]` keys, by name, so that a docker executor's settings carry over.
//!
//! Two forms are read: the keys at the top level with services as `[[services]]`, or the
//! runner's section pasted unchanged (`[runners.docker]` and `[[runners.docker.services]]`).
//! Every key is checked before any job runs: an unknown key, a wrong type or a value skiff
//! cannot honour is an error naming the file, the line, the key and the value. A key skiff
//! does not support is accepted only when it asks for nothing (its default: `false`, `0`,
//! `""`, `[]`), as `gitlab-runner register` writes them, or when ignoring it changes nothing
//! for a job (the list is `KEYS`).
//!
//! The job-time rules of the docker executor live here too: the effective pull policies
//! (`effective_pull_policies`), `allowed_images`/`allowed_services` (`verify_allowed_image`),
//! `allowed_users`, `services_limit`, and the `${VAR}` expansion of `helper_image`.

pub mod glob;

use crate::image::pull::Policy;
use serde::Serialize;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml_edit::{ImDocument, Item, TableLike, Value};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid TOML", path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: toml_edit::TomlError,
    },
    #[error("{}:{}", path.display(), list_problems(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    /// The runner's `GetPullPolicies` text.
    #[error("unsupported pull_policy config: {value:?}")]
    UnsupportedPullPolicy { value: String },
    /// The runner's `GetAllowedPullPolicies` text.
    #[error("unsupported allowed_pull_policies config: {value:?}")]
    UnsupportedAllowedPullPolicy { value: String },
    /// The runner's `ComputeEffectivePullPolicies` text, wrapped as its pull manager does.
    #[error(
        "invalid pull policy for image {image:?}: pull_policy ({}) defined in {defined_in} is not one of the allowed_pull_policies ({})",
        go_list(requested),
        go_list(allowed)
    )]
    PullPolicyNotAllowed {
        image: String,
        requested: Vec<String>,
        /// `GitLab pipeline config`, `Runner config` or `Runner config (default)`.
        defined_in: &'static str,
        allowed: Vec<String>,
    },
    /// What the runner logs before failing with `disallowed image` (`VerifyAllowedImage`).
    #[error(
        "The {image:?} image is not present on list of allowed {option}:\n{}\nPlease check runner's allowed_images configuration: https://docs.gitlab.com/runner/configuration/advanced-configuration/",
        allowed.iter().map(|a| format!("- {a}\n")).collect::<String>()
    )]
    DisallowedImage {
        image: String,
        /// `images` or `services`.
        option: &'static str,
        allowed: Vec<String>,
    },
    /// The docker executor's `tooManyServicesRequestedError`.
    #[error("too many services requested: {requested}, only {allowed} allowed")]
    TooManyServices { requested: usize, allowed: usize },
    /// The docker executor's `getBuildContainerUser`.
    #[error("user {user:?} is not an allowed user: {}", go_list(allowed))]
    UserNotAllowed { user: String, allowed: Vec<String> },
}

/// Go's `%v` of a string slice: `[a b]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

fn list_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => format!(" {one}"),
        many => many.iter().map(|p| format!("\n  {p}")).collect::<String>(),
    }
}

/// One thing wrong in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based.
    pub line: Option<usize>,
    /// As the file spells it: `privileged`, `runners.docker.memory`, `services[1].alias`.
    pub key: String,
    /// The value as written, when one is shown.
    pub value: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        match &self.value {
            Some(v) => write!(f, "{} = {v}: {}", self.key, self.reason),
            None => write!(f, "{}: {}", self.key, self.reason),
        }
    }
}

/// A key that is accepted and has no effect, and why that is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredKey {
    pub key: String,
    pub reason: String,
}

/// A `volumes` entry (docker's `-v`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VolumeSpec {
    /// `/host/dir:/dest[:ro|rw]`: a host directory, bound into the build and helper containers
    /// and the services, as the docker executor binds it.
    Bind {
        source: PathBuf,
        destination: String,
        read_only: bool,
    },
    /// `/dest[:ro|rw]`: the docker executor makes a cache volume here, kept between the jobs
    /// of the same project (`disable_cache`: one per job, removed after it). skiff gives it
    /// a directory of the same lifetime: under the project's cache directory, named by
    /// `anonymous_volume_name`, or, with `disable_cache`, under the job's own directory.
    /// `/cache` is always mounted by skiff already; listing it changes nothing.
    Anonymous {
        destination: String,
        read_only: bool,
    },
}

impl VolumeSpec {
    pub fn destination(&self) -> &str {
        match self {
            Self::Bind { destination, .. } | Self::Anonymous { destination, .. } => destination,
        }
    }
}

/// The directory name for a container-only volume: its destination hashed, so that two
/// destinations never share one and a name is the same for every job.
pub fn anonymous_volume_name(destination: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(destination.as_bytes())[..16])
}

/// A `[[services]]` entry: started for every job, before the job's own services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceConfig {
    /// The image. The runner expands job variables in it (`GetExpandedServices`).
    pub name: String,
    /// As written: aliases separated by spaces or commas (`aliases()`); variables expanded
    /// by the runner as in `name`.
    pub alias: Option<String>,
    /// None: the image's own.
    pub entrypoint: Option<Vec<String>>,
    /// None: the image's own.
    pub command: Option<Vec<String>>,
    /// `environment = ["K=V"]`, for this service only, in order. Shown by name only.
    #[serde(serialize_with = "names_only")]
    pub environment: Vec<(String, String)>,
}

impl ServiceConfig {
    /// The runner's `Service.Aliases`: split on spaces and commas.
    pub fn aliases(&self) -> Vec<String> {
        self.alias
            .as_deref()
            .unwrap_or_default()
            .replace(',', " ")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

fn names_only<S: serde::Serializer>(vars: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(vars.iter().map(|(k, _)| k))
}

/// The file, read and checked. Every field is a `[runners.docker]` key of the same name;
/// empty or None means the key is absent (or set to its default) and skiff's default holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AdminConfig {
    /// The file read; None: there was none at the default place.
    pub source: Option<PathBuf>,
    /// The image for jobs that name none; always allowed, whatever `allowed_images` says.
    pub image: Option<String>,
    /// Services for every job, before the job's own; their images are always allowed.
    pub services: Vec<ServiceConfig>,
    /// Empty: the runner's default, `always`. A job's own list replaces it
    /// (`effective_pull_policies`); the helper image uses this one.
    pub pull_policy: Vec<Policy>,
    /// Empty: whatever `pull_policy` gives.
    pub allowed_pull_policies: Vec<Policy>,
    /// doublestar patterns (`glob`); empty: any image.
    pub allowed_images: Vec<String>,
    /// doublestar patterns; empty: any service.
    pub allowed_services: Vec<String>,
    /// Users a job may run its build container as (`image:docker:user`); see `build_user`.
    pub allowed_users: Vec<String>,
    /// The build container's user (docker's `--user`), over the job's.
    pub user: Option<String>,
    /// Instead of the runner's helper image; may hold `${CI_RUNNER_VERSION}` and other job
    /// variables (`helper_image_for`). Pulled with `pull_policy`.
    pub helper_image: Option<String>,
    /// The helper image's flavor (`alpine`, `ubuntu`, `ubi-fips`, ...): `HelperSpec::flavor`.
    pub helper_image_flavor: Option<String>,
    /// In order; destinations are absolute and unique.
    pub volumes: Vec<VolumeSpec>,
    /// Where the per-project directories (`/cache` and container-only volumes) live, instead
    /// of the store's `gitlab-cache`. Absolute.
    pub cache_dir: Option<PathBuf>,
    /// Container-only volumes (and `/cache`) last one job, as docker's non-reusable volumes.
    pub disable_cache: bool,
    /// Capabilities added to and dropped from the build and helper containers (names as
    /// `runtime::spec::parse_caps` takes them, checked).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Security options of the build and helper containers, and of the services: docker's
    /// forms (`seccomp=unconfined`, `seccomp=FILE`, `seccomp=builtin`, `no-new-privileges`...).
    pub security_opt: Vec<String>,
    pub services_security_opt: Vec<String>,
    /// Name servers (IP addresses) for every container of the job.
    pub dns: Vec<String>,
    /// `(name, ip)` lines for every container's /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    /// Bytes; the build and helper containers' memory limit.
    pub memory: Option<i64>,
    /// CPUs (1.5 = one and a half); the build and helper containers'.
    pub cpus: Option<f64>,
    /// Bytes; each service's memory limit.
    pub service_memory: Option<i64>,
    /// Each service's CPUs.
    pub service_cpus: Option<f64>,
    /// Bytes; /dev/shm of every container of the job.
    pub shm_size: Option<i64>,
    /// `DST[:OPTIONS]` tmpfs mounts of the build and helper containers (as `RunPlan::tmpfs`).
    pub tmpfs: Vec<String>,
    /// The same for each service.
    pub services_tmpfs: Vec<String>,
    /// skiff's network for the job's pod (`private`, `slirp4netns[:..]`, `pasta[:..]`);
    /// None: skiff's default. Docker's `bridge` is the default, `none` is `private`.
    pub network_mode: Option<String>,
    /// As root: the job's pod in ids of its own (docker's "" and podman's `auto`, skiff's
    /// default) or the host's (`host`).
    pub userns_mode: Option<String>,
    /// Seconds, as written: 0 means the runner's 30, negative no wait
    /// (`services_wait_secs`). None: not in the file.
    pub wait_for_services_timeout: Option<i64>,
    /// The most services a job may have, the configured ones included; None: no limit.
    pub services_limit: Option<usize>,
    /// A job's `entrypoint` for its image is ignored (with a warning, as the runner logs
    /// `Entrypoint override disabled`).
    pub disable_entrypoint_overwrite: bool,
    /// Keys accepted without effect, with why.
    pub ignored: Vec<IgnoredKey>,
}

/// What skiff does with a `[runners.docker]` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Supported,
    /// Accepted whatever its value: ignoring it changes nothing for a job.
    Ignored(&'static str),
    /// An error unless it holds its default (asks for nothing).
    Rejected(&'static str),
}

const NO_DAEMON: &str =
    "skiff runs the job's containers itself, on this machine: there is no Docker daemon";
const ONLY_MEMORY: &str = "skiff sets a hard memory limit only (memory, service_memory)";
const ONLY_CPUS: &str = "skiff limits CPU by cpus and service_cpus only";
const OWN_CGROUP: &str = "skiff places containers in the cgroup delegated to the user running it";
const NO_DEVICES: &str =
    "a rootless container cannot be given the host's devices; skiff passes none";
const NO_PRIVILEGED: &str = "skiff has no privileged containers: a rootless user namespace cannot grant the host's devices and capabilities";
const NO_NETWORKS: &str = "skiff makes no docker networks: each job's pod has a network namespace of its own (network_mode)";

/// Every key of the runner's `DockerConfig` (`common/config.go`, with its embedded
/// `docker.Credentials`), and what skiff does with it.
pub const KEYS: &[(&str, Rule)] = &[
    ("image", Rule::Supported),
    ("services", Rule::Supported),
    ("pull_policy", Rule::Supported),
    ("allowed_pull_policies", Rule::Supported),
    ("allowed_images", Rule::Supported),
    ("allowed_services", Rule::Supported),
    ("allowed_users", Rule::Supported),
    ("user", Rule::Supported),
    ("helper_image", Rule::Supported),
    ("helper_image_flavor", Rule::Supported),
    ("volumes", Rule::Supported),
    ("cache_dir", Rule::Supported),
    ("disable_cache", Rule::Supported),
    ("cap_add", Rule::Supported),
    ("cap_drop", Rule::Supported),
    ("dns", Rule::Supported),
    ("extra_hosts", Rule::Supported),
    ("memory", Rule::Supported),
    ("cpus", Rule::Supported),
    ("service_memory", Rule::Supported),
    ("service_cpus", Rule::Supported),
    ("shm_size", Rule::Supported),
    ("tmpfs", Rule::Supported),
    ("services_tmpfs", Rule::Supported),
    ("network_mode", Rule::Supported),
    ("wait_for_services_timeout", Rule::Supported),
    ("services_limit", Rule::Supported),
    ("disable_entrypoint_overwrite", Rule::Supported),
    (
        "tls_verify",
        Rule::Ignored("it configures the connection to a Docker daemon, which skiff does not use"),
    ),
    (
        "tls_cert_path",
        Rule::Ignored("it configures the connection to a Docker daemon, which skiff does not use"),
    ),
    (
        "allowed_privileged_images",
        Rule::Ignored("it applies only with privileged = true, which skiff rejects"),
    ),
    (
        "allowed_privileged_services",
        Rule::Ignored("it applies only with privileged = true, which skiff rejects"),
    ),
    (
        "log_options",
        Rule::Ignored(
            "it configures docker's json-file log driver; the job's log reaches the runner either way",
        ),
    ),
    ("host", Rule::Rejected(NO_DAEMON)),
    (
        "hostname",
        Rule::Rejected("skiff does not set a custom hostname for job containers"),
    ),
    (
        "runtime",
        Rule::Rejected("skiff is the container runtime: there is no other to choose"),
    ),
    ("memory_swap", Rule::Rejected(ONLY_MEMORY)),
    ("memory_reservation", Rule::Rejected(ONLY_MEMORY)),
    ("service_memory_swap", Rule::Rejected(ONLY_MEMORY)),
    ("service_memory_reservation", Rule::Rejected(ONLY_MEMORY)),
    ("cgroup_parent", Rule::Rejected(OWN_CGROUP)),
    ("service_cgroup_parent", Rule::Rejected(OWN_CGROUP)),
    ("service_slot_cgroup_template", Rule::Rejected(OWN_CGROUP)),
    ("cpuset_cpus", Rule::Rejected(ONLY_CPUS)),
    ("cpuset_mems", Rule::Rejected(ONLY_CPUS)),
    ("cpu_shares", Rule::Rejected(ONLY_CPUS)),
    ("service_cpuset_cpus", Rule::Rejected(ONLY_CPUS)),
    ("service_cpu_shares", Rule::Rejected(ONLY_CPUS)),
    (
        "dns_search",
        Rule::Rejected("skiff writes name servers (dns) only, no search domains"),
    ),
    ("privileged", Rule::Rejected(NO_PRIVILEGED)),
    ("services_privileged", Rule::Rejected(NO_PRIVILEGED)),
    (
        "group_add",
        Rule::Rejected("skiff adds no supplementary groups to the container's user"),
    ),
    ("userns_mode", Rule::Supported),
    (
        "oom_kill_disable",
        Rule::Rejected("skiff leaves out-of-memory handling to the kernel's defaults"),
    ),
    (
        "oom_score_adjust",
        Rule::Rejected("skiff leaves out-of-memory handling to the kernel's defaults"),
    ),
    ("security_opt", Rule::Supported),
    ("services_security_opt", Rule::Supported),
    ("devices", Rule::Rejected(NO_DEVICES)),
    ("device_cgroup_rules", Rule::Rejected(NO_DEVICES)),
    ("services_devices", Rule::Rejected(NO_DEVICES)),
    ("gpus", Rule::Rejected(NO_DEVICES)),
    ("service_gpus", Rule::Rejected(NO_DEVICES)),
    (
        "volume_driver",
        Rule::Rejected("skiff's volumes are directories: it has no volume drivers"),
    ),
    (
        "volume_driver_ops",
        Rule::Rejected("skiff's volumes are directories: it has no volume drivers"),
    ),
    (
        "volume_keep",
        Rule::Rejected("skiff removes a job's own directories when the job is cleaned up"),
    ),
    (
        "volumes_from",
        Rule::Rejected("a skiff job takes no volumes from other containers"),
    ),
    (
        "pid_mode",
        Rule::Rejected("each container of a skiff job has a PID namespace of its own"),
    ),
    (
        "ipcmode",
        Rule::Rejected("each container of a skiff job has an IPC namespace of its own"),
    ),
    (
        "mac_address",
        Rule::Rejected("the pod's user-mode network (slirp4netns, pasta) chooses the address"),
    ),
    (
        "links",
        Rule::Rejected(
            "services are reached by their aliases on the pod's 127.0.0.1; skiff has no container links",
        ),
    ),
    ("isolation", Rule::Rejected("Windows containers only")),
    ("sysctls", Rule::Rejected("skiff sets no sysctls")),
    (
        "container_labels",
        Rule::Rejected("skiff's containers carry no labels"),
    ),
    ("enable_ipv6", Rule::Rejected(NO_NETWORKS)),
    ("network_mtu", Rule::Rejected(NO_NETWORKS)),
    (
        "ulimit",
        Rule::Rejected("skiff keeps the open-files limit it has and sets no other ulimit"),
    ),
];

/// The keys of a `[[services]]` entry (the runner's `Service`).
const SERVICE_KEYS: &[&str] = &["name", "alias", "entrypoint", "command", "environment"];

impl AdminConfig {
    /// `$XDG_CONFIG_HOME/skiff/gitlab.toml` (else `~/.config/skiff/gitlab.toml`) rootless,
    /// `/etc/skiff/gitlab.toml` as root.
    pub fn default_path() -> PathBuf {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        default_path_for(
            rustix::process::geteuid().is_root(),
            var("XDG_CONFIG_HOME"),
            var("HOME"),
        )
    }

    /// The file given, or else the one at `default_path` if there is one (none: defaults).
    /// A given file that does not exist is an error.
    pub fn load(explicit: Option<&Path>) -> Result<AdminConfig, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => Self::default_path(),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AdminConfig::default());
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::parse(&text, &path)
    }

    /// Reads the file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<AdminConfig, ConfigError> {
        let doc = ImDocument::parse(text).map_err(|source| ConfigError::Syntax {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = Reader {
            text,
            prefix: "",
            problems: vec![],
            ignored: vec![],
        };
        let mut config = AdminConfig {
            source: Some(path.to_path_buf()),
            ..AdminConfig::default()
        };
        if let Some(section) = reader.section(doc.as_table()) {
            reader.read(section, &mut config);
        }
        if !reader.problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: reader.problems,
            });
        }
        config.ignored = reader.ignored;
        Ok(config)
    }

    /// `effective_pull_policies` with this file's `pull_policy` and `allowed_pull_policies`;
    /// `job`: the job's `pull_policy` for this image (empty for the helper image).
    pub fn pull_policies_for(
        &self,
        image: &str,
        job: &[String],
    ) -> Result<Vec<Policy>, ConfigError> {
        let names = |list: &[Policy]| {
            list.iter()
                .map(|p| p.name().to_string())
                .collect::<Vec<_>>()
        };
        effective_pull_policies(
            image,
            job,
            &names(&self.pull_policy),
            &names(&self.allowed_pull_policies),
        )
    }

    /// The job's image checked against `allowed_images` (this file's `image` is always
    /// allowed). An empty name is the default image: nothing to check.
    pub fn verify_job_image(&self, image: &str) -> Result<(), ConfigError> {
        if image.is_empty() {
            return Ok(());
        }
        let internal: Vec<String> = self.image.iter().cloned().collect();
        verify_allowed_image(image, "images", &self.allowed_images, &internal)
    }

    /// A job's service checked against `allowed_services` (the services of this file are
    /// always allowed).
    pub fn verify_job_service(&self, name: &str) -> Result<(), ConfigError> {
        let internal: Vec<String> = self.services.iter().map(|s| s.name.clone()).collect();
        verify_allowed_image(name, "services", &self.allowed_services, &internal)
    }

    /// `services_limit` against all the services of a job (this file's and the job's).
    pub fn check_services_limit(&self, count: usize) -> Result<(), ConfigError> {
        match self.services_limit {
            Some(allowed) if count > allowed => Err(ConfigError::TooManyServices {
                requested: count,
                allowed,
            }),
            _ => Ok(()),
        }
    }

    /// The build container's user, as the runner's `getBuildContainerUser`: this file's
    /// `user` over the job's (`image:docker:user`, variables expanded), then checked against
    /// `allowed_users` (which defaults to `user` alone). None: the image's own user.
    pub fn build_user(&self, job_user: Option<&str>) -> Result<Option<String>, ConfigError> {
        let user = self
            .user
            .clone()
            .or_else(|| job_user.map(str::to_string))
            .unwrap_or_default();
        if user.is_empty() {
            return Ok(None);
        }
        let allowed = match (&self.allowed_users, &self.user) {
            (a, _) if !a.is_empty() => a.clone(),
            (_, Some(u)) => vec![u.clone()],
            (_, None) => return Ok(Some(user)),
        };
        if allowed.contains(&user) {
            Ok(Some(user))
        } else {
            Err(ConfigError::UserNotAllowed { user, allowed })
        }
    }

    /// `helper_image` with the job's variables expanded as the runner expands it
    /// (`CI_RUNNER_VERSION`, `CI_RUNNER_REVISION` and the rest; unknown ones are empty).
    /// None: not configured, or empty once expanded.
    pub fn helper_image_for(&self, vars: &[(String, String)]) -> Option<String> {
        let template = self.helper_image.as_deref()?;
        let expanded = expand_runner_value(template, |name| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        });
        (!expanded.is_empty()).then_some(expanded)
    }

    /// Seconds to wait for each service's ports: the runner's default (30) for 0 or none,
    /// negative for no wait.
    pub fn services_wait_secs(&self) -> i64 {
        match self.wait_for_services_timeout {
            None | Some(0) => 30,
            Some(t) => t,
        }
    }

    /// What is configured, one `(key, value)` per setting in the file, for `config --check`.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = vec![];
        let mut put = |k: &str, v: String| out.push((k.to_string(), v));
        let list = |l: &[String]| l.join(", ");
        let size = |b: i64| format!("{b} bytes");
        if let Some(v) = &self.image {
            put("image", v.clone());
        }
        for s in &self.services {
            let mut text = s.name.clone();
            if !s.aliases().is_empty() {
                text.push_str(&format!(" (alias {})", s.aliases().join(", ")));
            }
            if !s.environment.is_empty() {
                let names: Vec<String> = s.environment.iter().map(|(k, _)| k.clone()).collect();
                text.push_str(&format!(" (environment {})", names.join(", ")));
            }
            put("services", text);
        }
        let policies = |l: &[Policy]| l.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ");
        if !self.pull_policy.is_empty() {
            put("pull_policy", policies(&self.pull_policy));
        }
        if !self.allowed_pull_policies.is_empty() {
            put(
                "allowed_pull_policies",
                policies(&self.allowed_pull_policies),
            );
        }
        for (k, v) in [
            ("allowed_images", &self.allowed_images),
            ("allowed_services", &self.allowed_services),
            ("allowed_users", &self.allowed_users),
            ("cap_add", &self.cap_add),
            ("cap_drop", &self.cap_drop),
            ("security_opt", &self.security_opt),
            ("services_security_opt", &self.services_security_opt),
            ("dns", &self.dns),
            ("tmpfs", &self.tmpfs),
            ("services_tmpfs", &self.services_tmpfs),
        ] {
            if !v.is_empty() {
                put(k, list(v));
            }
        }
        for (k, v) in [
            ("user", &self.user),
            ("helper_image", &self.helper_image),
            ("helper_image_flavor", &self.helper_image_flavor),
            ("network_mode", &self.network_mode),
            ("userns_mode", &self.userns_mode),
        ] {
            if let Some(v) = v {
                put(k, v.clone());
            }
        }
        for v in &self.volumes {
            put(
                "volumes",
                match v {
                    VolumeSpec::Bind {
                        source,
                        destination,
                        read_only,
                    } => format!(
                        "{} at {destination}{}",
                        source.display(),
                        if *read_only { ", read-only" } else { "" }
                    ),
                    VolumeSpec::Anonymous { destination, .. } if destination == "/cache" => {
                        "/cache, which skiff mounts in every job anyway".to_string()
                    }
                    VolumeSpec::Anonymous {
                        destination,
                        read_only,
                    } => format!(
                        "a directory kept {} at {destination}{}",
                        if self.disable_cache {
                            "for the job"
                        } else {
                            "for the project"
                        },
                        if *read_only { ", read-only" } else { "" }
                    ),
                },
            );
        }
        if let Some(d) = &self.cache_dir {
            put("cache_dir", d.display().to_string());
        }
        if self.disable_cache {
            put("disable_cache", "true".into());
        }
        if !self.extra_hosts.is_empty() {
            let hosts: Vec<String> = self
                .extra_hosts
                .iter()
                .map(|(h, ip)| format!("{h}:{ip}"))
                .collect();
            put("extra_hosts", list(&hosts));
        }
        for (k, v) in [
            ("memory", self.memory),
            ("service_memory", self.service_memory),
            ("shm_size", self.shm_size),
        ] {
            if let Some(b) = v {
                put(k, size(b));
            }
        }
        for (k, v) in [("cpus", self.cpus), ("service_cpus", self.service_cpus)] {
            if let Some(c) = v {
                put(k, c.to_string());
            }
        }
        if self.wait_for_services_timeout.is_some() {
            let secs = self.services_wait_secs();
            put(
                "wait_for_services_timeout",
                if secs < 0 {
                    "no wait".into()
                } else {
                    format!("{secs} s")
                },
            );
        }
        if let Some(n) = self.services_limit {
            put("services_limit", n.to_string());
        }
        if self.disable_entrypoint_overwrite {
            put("disable_entrypoint_overwrite", "true".into());
        }
        out
    }
}

fn default_path_for(
    root: bool,
    xdg_config_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> PathBuf {
    if root {
        return PathBuf::from("/etc/skiff/gitlab.toml");
    }
    xdg_config_home
        .or_else(|| home.map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"))
        .join("skiff/gitlab.toml")
}

/// A policy as the runner spells it (no `missing`, no spaces).
fn runner_policy(name: &str) -> Option<Policy> {
    match name {
        "always" => Some(Policy::Always),
        "if-not-present" => Some(Policy::IfNotPresent),
        "never" => Some(Policy::Never),
        _ => None,
    }
}

/// The pull policies for one image, as the docker executor's pull manager computes them
/// (`GetDockerImage`: `getPullPolicies`, `GetAllowedPullPolicies`,
/// `helpers/pull_policies/pull_policies.go::ComputeEffectivePullPolicies`):
/// the job's list, else the config's, else `always`; kept in order (duplicates too) where
/// `allowed` (else the config's list) has them. None kept is an error naming where the list
/// came from. A job's value the runner does not know is never allowed, so it drops out.
pub fn effective_pull_policies(
    image: &str,
    job: &[String],
    config: &[String],
    allowed: &[String],
) -> Result<Vec<Policy>, ConfigError> {
    let config_policies: Vec<Policy> = if config.is_empty() {
        vec![Policy::Always]
    } else {
        config
            .iter()
            .map(|p| {
                runner_policy(p)
                    .ok_or_else(|| ConfigError::UnsupportedPullPolicy { value: p.clone() })
            })
            .collect::<Result<_, _>>()?
    };
    let allowed_policies: Vec<Policy> = if allowed.is_empty() {
        config_policies.clone()
    } else {
        allowed
            .iter()
            .map(|p| {
                runner_policy(p)
                    .ok_or_else(|| ConfigError::UnsupportedAllowedPullPolicy { value: p.clone() })
            })
            .collect::<Result<_, _>>()?
    };
    let requested: Vec<String> = if job.is_empty() {
        config_policies
            .iter()
            .map(|p| p.name().to_string())
            .collect()
    } else {
        job.to_vec()
    };
    let effective: Vec<Policy> = requested
        .iter()
        .filter_map(|p| runner_policy(p))
        .filter(|p| allowed_policies.contains(p))
        .collect();
    if effective.is_empty() {
        return Err(ConfigError::PullPolicyNotAllowed {
            image: image.to_string(),
            requested,
            defined_in: match (job.is_empty(), config.is_empty()) {
                (false, _) => "GitLab pipeline config",
                (true, false) => "Runner config",
                (true, true) => "Runner config (default)",
            },
            allowed: allowed_policies
                .iter()
                .map(|p| p.name().to_string())
                .collect(),
        });
    }
    Ok(effective)
}

/// The runner's `VerifyAllowedImage`: allowed if a pattern matches, if it is one of
/// `internal` (the configured image or services), or if there are no patterns.
/// `option`: `images` or `services`, as the message says.
pub fn verify_allowed_image(
    image: &str,
    option: &'static str,
    allowed: &[String],
    internal: &[String],
) -> Result<(), ConfigError> {
    if allowed.is_empty()
        || allowed.iter().any(|pattern| glob::matches(pattern, image))
        || internal.iter().any(|i| i == image)
    {
        return Ok(());
    }
    Err(ConfigError::DisallowedImage {
        image: image.to_string(),
        option,
        allowed: allowed.to_vec(),
    })
}

/// Go's `os.Expand` with the runner's variable lookup (`Variables.ExpandValue`): `$NAME`,
/// `${NAME}`, `$$` is `$`, `$1`..`$9` and the other special names are empty, unknown names
/// are empty, a bad `${` is dropped, and a `$` followed by nothing usable stays.
pub fn expand_runner_value(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    const SPECIAL: &[u8] = b"*#$@!?-0123456789";
    let value = |name: &str| match name {
        "$" => "$".to_string(),
        n if n.len() == 1 && SPECIAL.contains(&n.as_bytes()[0]) => String::new(),
        n => lookup(n).unwrap_or_default(),
    };
    let b = text.as_bytes();
    let mut out = String::new();
    let mut from = 0;
    let mut j = 0;
    while j < b.len() {
        if b[j] != b'$' || j + 1 >= b.len() {
            j += 1;
            continue;
        }
        out.push_str(&text[from..j]);
        let rest = &text[j + 1..];
        let r = rest.as_bytes();
        // (name, bytes taken after the `$`); an empty name with bytes taken is bad syntax.
        let (name, taken) = if r[0] == b'{' {
            if r.len() > 2 && SPECIAL.contains(&r[1]) && r[2] == b'}' {
                (&rest[1..2], 3)
            } else {
                match rest[1..].find('}') {
                    Some(0) => ("", 2),
                    Some(i) => (&rest[1..=i], i + 2),
                    None => ("", 1),
                }
            }
        } else if SPECIAL.contains(&r[0]) {
            (&rest[..1], 1)
        } else {
            let n = r
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            (&rest[..n], n)
        };
        match (name.is_empty(), taken) {
            (true, 0) => out.push('$'),
            (true, _) => {}
            (false, _) => out.push_str(&value(name)),
        }
        j += 1 + taken;
        from = j;
    }
    out.push_str(&text[from..]);
    out
}

/// docker's `units.RAMInBytes`, which the runner uses for `memory`: a number (fractions
/// allowed), an optional space, then `b`, or `k`/`m`/`g`/`t`/`p` (powers of 1024) with an
/// optional `b` or `ib`, any case.
pub fn docker_size(text: &str) -> Option<i64> {
    let digits_end = text.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')?;
    let (number, suffix) = text.split_at(digits_end + 1);
    let number = number.strip_suffix(' ').unwrap_or(number);
    if !number.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let n: f64 = number.parse().ok().filter(|n: &f64| n.is_finite())?;
    let suffix = suffix.to_ascii_lowercase();
    let multiplier: f64 = match suffix.as_str() {
        "" | "b" => 1.0,
        s => {
            let power = match s.as_bytes()[0] {
                b'k' => 1,
                b'm' => 2,
                b'g' => 3,
                b't' => 4,
                b'p' => 5,
                _ => return None,
            };
            if !matches!(&s[1..], "" | "b" | "ib") {
                return None;
            }
            1024f64.powi(power)
        }
    };
    Some((n * multiplier) as i64)
}

/// `cpus` as the runner reads it (`big.Rat.SetString`): a decimal (`1.5`) or a fraction
/// (`3/2`).
fn parse_cpus(text: &str) -> Option<f64> {
    let value = match text.split_once('/') {
        Some((a, b)) => a.trim().parse::<f64>().ok()? / b.trim().parse::<f64>().ok()?,
        None => text.trim().parse().ok()?,
    };
    value.is_finite().then_some(value)
}

impl AdminConfig {
    /// `userns_mode`: `host` keeps the host's ids; anything else (checked when read) is auto.
    pub fn userns(&self) -> crate::runtime::userns::UsernsMode {
        match self.userns_mode.as_deref() {
            Some("host") => crate::runtime::userns::UsernsMode::Host,
            _ => crate::runtime::userns::UsernsMode::Auto,
        }
    }
}

/// A docker `network_mode` as skiff's network for the job's pod. None: skiff's default.
fn pod_network(mode: &str) -> Result<Option<String>, String> {
    use crate::runtime::network::Network;
    match mode {
        "" | "bridge" | "default" => Ok(None),
        "none" => Ok(Some("private".into())),
        "host" => Err("a job's pod needs a network namespace of its own: its services and build container meet on its 127.0.0.1, and two jobs' services would take the same host ports; slirp4netns or pasta give outbound access".into()),
        m if m.starts_with("container:") => Err("a skiff job joins no other container's network".into()),
        m => match Network::parse(m) {
            Ok(n) if n.is_private() => Ok(Some(m.to_string())),
            Ok(_) => Err(NO_NETWORKS.to_string()),
            Err(e) if m.starts_with("slirp4netns") || m.starts_with("pasta") => Err(e.to_string()),
            Err(_) => Err(format!(
                "{NO_NETWORKS}: use bridge (skiff's default), none, private, slirp4netns or pasta"
            )),
        },
    }
}

/// Where a key is: its name as the file spells it, and the bytes its line is found from.
#[derive(Clone)]
struct At {
    key: String,
    span: Option<Range<usize>>,
}

impl At {
    fn child(&self, name: &str, span: Option<Range<usize>>) -> At {
        At {
            key: format!("{}.{name}", self.key),
            span: span.or_else(|| self.span.clone()),
        }
    }
    fn index(&self, i: usize, span: Option<Range<usize>>) -> At {
        At {
            key: format!("{}[{i}]", self.key),
            span: span.or_else(|| self.span.clone()),
        }
    }
}

struct Reader<'a> {
    text: &'a str,
    /// `runners.docker.` for the pasted section, else empty.
    prefix: &'static str,
    problems: Vec<Problem>,
    ignored: Vec<IgnoredKey>,
}

/// A value as written (trimmed of its surrounding spaces and comments).
fn shown(item: &Item) -> Option<String> {
    match item {
        Item::Value(v) => Some(v.clone().decorated("", "").to_string()),
        _ => None,
    }
}

/// Whether a key holds its default: `false`, `0`, `""`, or a list or table of such.
fn asks_nothing(item: &Item) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::Boolean(b) => !*b.value(),
            Value::Integer(i) => *i.value() == 0,
            Value::Float(f) => *f.value() == 0.0,
            Value::String(s) => s.value().is_empty(),
            Value::Array(a) => a.iter().all(value),
            Value::InlineTable(t) => t.is_empty(),
            Value::Datetime(_) => false,
        }
    }
    match item {
        Item::None => true,
        Item::Value(v) => value(v),
        Item::Table(t) => t.is_empty(),
        Item::ArrayOfTables(a) => a.is_empty(),
    }
}

impl Reader<'_> {
    fn line(&self, span: &Option<Range<usize>>) -> Option<usize> {
        let start = span.as_ref()?.start.min(self.text.len());
        Some(self.text[..start].matches('\n').count() + 1)
    }

    fn problem(&mut self, at: &At, value: Option<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            line: self.line(&at.span),
            key: at.key.clone(),
            value,
            reason: reason.into(),
        });
    }

    fn at(&self, table: &dyn TableLike, key: &str) -> At {
        At {
            key: format!("{}{key}", self.prefix),
            span: table.key(key).and_then(|k| k.span()),
        }
    }

    /// The table the docker keys are in: the top level, or `[runners.docker]`.
    fn section<'t>(&mut self, root: &'t toml_edit::Table) -> Option<&'t dyn TableLike> {
        let Some(runners) = root.get("runners") else {
            return Some(root);
        };
        let runners_at = self.at(root, "runners");
        let Some(runners) = runners.as_table_like() else {
            self.problem(
                &runners_at,
                None,
                "[[runners]] is a whole runner: copy only its [runners.docker] section, with its [[runners.docker.services]]",
            );
            return None;
        };
        for (key, _) in root.iter().filter(|(k, _)| *k != "runners") {
            let at = self.at(root, key);
            self.problem(&at, None, "a top-level key cannot be mixed with [runners.docker]: put it in that section, or write every key at the top level");
        }
        for (key, _) in runners.iter().filter(|(k, _)| *k != "docker") {
            let at = runners_at.child(key, runners.key(key).and_then(|k| k.span()));
            self.problem(&at, None, "only [runners.docker] is read from this file");
        }
        match runners.get("docker").map(|d| d.as_table_like()) {
            Some(Some(docker)) => {
                self.prefix = "runners.docker.";
                Some(docker)
            }
            Some(None) => {
                self.problem(&runners_at.child("docker", None), None, "expected a table");
                None
            }
            None => {
                self.problem(&runners_at, None, "has no [runners.docker] section");
                None
            }
        }
    }

    fn read(&mut self, section: &dyn TableLike, config: &mut AdminConfig) {
        for (key, item) in section.iter() {
            let at = self.at(section, key);
            match KEYS.iter().find(|(k, _)| *k == key).map(|(_, r)| *r) {
                None => self.problem(
                    &at,
                    None,
                    "unknown key: not one of GitLab Runner's [runners.docker] keys",
                ),
                Some(Rule::Ignored(why)) => self.ignored.push(IgnoredKey {
                    key: at.key.clone(),
                    reason: why.to_string(),
                }),
                Some(Rule::Rejected(why)) if asks_nothing(item) => self.ignored.push(IgnoredKey {
                    key: at.key.clone(),
                    reason: format!("it holds its default, which asks for nothing ({why})"),
                }),
                Some(Rule::Rejected(why)) => {
                    self.problem(&at, shown(item), format!("not supported: {why}"))
                }
                Some(Rule::Supported) => self.supported(key, &at, item, config),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &config.volumes {
            if !seen.insert(v.destination().to_string()) {
                let at = self.at(section, "volumes");
                self.problem(
                    &at,
                    Some(format!("{:?}", v.destination())),
                    "two volumes at the same destination",
                );
            }
        }
    }

    fn supported(&mut self, key: &str, at: &At, item: &Item, c: &mut AdminConfig) {
        match key {
            "image" => c.image = self.string(at, item).filter(|s| !s.is_empty()),
            "services" => c.services = self.services(at, item),
            "pull_policy" => c.pull_policy = self.policies(at, item),
            "allowed_pull_policies" => c.allowed_pull_policies = self.policies(at, item),
            "allowed_images" => c.allowed_images = self.patterns(at, item),
            "allowed_services" => c.allowed_services = self.patterns(at, item),
            "allowed_users" => c.allowed_users = self.strings(at, item).unwrap_or_default(),
            "user" => c.user = self.string(at, item).filter(|s| !s.is_empty()),
            "helper_image" => {
                c.helper_image = self.string(at, item).filter(|s| !s.trim().is_empty())
            }
            "helper_image_flavor" => c.helper_image_flavor = self.flavor(at, item),
            "volumes" => c.volumes = self.volumes(at, item),
            "cache_dir" => c.cache_dir = self.absolute_dir(at, item),
            "disable_cache" => c.disable_cache = self.boolean(at, item).unwrap_or_default(),
            "disable_entrypoint_overwrite" => {
                c.disable_entrypoint_overwrite = self.boolean(at, item).unwrap_or_default()
            }
            "cap_add" => c.cap_add = self.capabilities(at, item),
            "cap_drop" => c.cap_drop = self.capabilities(at, item),
            "security_opt" => c.security_opt = self.security_options(at, item),
            "services_security_opt" => c.services_security_opt = self.security_options(at, item),
            "dns" => c.dns = self.name_servers(at, item),
            "extra_hosts" => c.extra_hosts = self.hosts(at, item),
            "memory" => c.memory = self.size(at, item),
            "service_memory" => c.service_memory = self.size(at, item),
            "shm_size" => c.shm_size = self.size(at, item),
            "cpus" => c.cpus = self.cpus(at, item),
            "service_cpus" => c.service_cpus = self.cpus(at, item),
            "tmpfs" => c.tmpfs = self.tmpfs(at, item),
            "services_tmpfs" => c.services_tmpfs = self.tmpfs(at, item),
            "network_mode" => {
                if let Some(mode) = self.string(at, item) {
                    match pod_network(&mode) {
                        Ok(net) => c.network_mode = net,
                        Err(why) => self.problem(at, shown(item), format!("not supported: {why}")),
                    }
                }
            }
            "userns_mode" => {
                if let Some(mode) = self.string(at, item) {
                    match mode.as_str() {
                        "" | "auto" | "host" => c.userns_mode = Some(mode),
                        _ => self.problem(
                            at,
                            shown(item),
                            "not supported: skiff takes auto (\"\", the default: ids of the job's own from the containers subordinate range) or host".to_string(),
                        ),
                    }
                }
            }
            "wait_for_services_timeout" => c.wait_for_services_timeout = self.integer(at, item),
            "services_limit" => {
                // The runner: any negative value is no limit (`GetServicesLimit` is -1 unset).
                c.services_limit = self.integer(at, item).and_then(|n| usize::try_from(n).ok())
            }
            _ => unreachable!("every supported key is read: {key}"),
        }
    }

    fn wrong_type(&mut self, at: &At, item: &Item, expected: &str) {
        self.problem(
            at,
            shown(item),
            format!("expected {expected}, not {}", item.type_name()),
        );
    }

    fn string(&mut self, at: &At, item: &Item) -> Option<String> {
        match item.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.wrong_type(at, item, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, at: &At, item: &Item) -> Option<bool> {
        let b = item.as_bool();
        if b.is_none() {
            self.wrong_type(at, item, "true or false");
        }
        b
    }

    fn integer(&mut self, at: &At, item: &Item) -> Option<i64> {
        let i = item.as_integer();
        if i.is_none() {
            self.wrong_type(at, item, "an integer");
        }
        i
    }

    /// Each string of an array, with where it is; None after a problem.
    fn strings_at(&mut self, at: &At, item: &Item) -> Option<Vec<(String, At)>> {
        let Some(array) = item.as_array() else {
            self.wrong_type(at, item, "an array of strings");
            return None;
        };
        let mut out = vec![];
        let mut ok = true;
        for (i, v) in array.iter().enumerate() {
            let here = at.index(i, v.span());
            match v.as_str() {
                Some(s) => out.push((s.to_string(), here)),
                None => {
                    let shown = v.clone().decorated("", "").to_string();
                    self.problem(
                        &here,
                        Some(shown),
                        format!("expected a string, not {}", v.type_name()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn strings(&mut self, at: &At, item: &Item) -> Option<Vec<String>> {
        Some(
            self.strings_at(at, item)?
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
        )
    }

    /// Each checked by `check`, whose error is the reason.
    fn checked_strings<T>(
        &mut self,
        at: &At,
        item: &Item,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let mut out = vec![];
        for (s, here) in self.strings_at(at, item).unwrap_or_default() {
            match check(&s) {
                Ok(t) => out.push(t),
                Err(why) => self.problem(&here, Some(format!("{s:?}")), why),
            }
        }
        out
    }

    /// A string or an array of strings (the runner's `StringOrArray` for `pull_policy`).
    fn policies(&mut self, at: &At, item: &Item) -> Vec<Policy> {
        if let Some(s) = item.as_str() {
            return match runner_policy(s) {
                Some(p) => vec![p],
                None => {
                    self.problem(at, shown(item), "expected always, if-not-present or never");
                    vec![]
                }
            };
        }
        self.checked_strings(at, item, |s| {
            runner_policy(s).ok_or_else(|| "expected always, if-not-present or never".to_string())
        })
    }

    fn patterns(&mut self, at: &At, item: &Item) -> Vec<String> {
        self.checked_strings(at, item, |s| match glob::syntax_problem(s) {
            None => Ok(s.to_string()),
            Some(why) => Err(format!(
                "not a valid pattern ({why}): it would match no image"
            )),
        })
    }

    fn flavor(&mut self, at: &At, item: &Item) -> Option<String> {
        let flavor = self.string(at, item)?;
        let tag_safe = flavor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !tag_safe {
            self.problem(
                at,
                shown(item),
                "a flavor is part of an image tag: letters, digits, '.', '-' and '_' only",
            );
            return None;
        }
        (!flavor.is_empty()).then_some(flavor)
    }

    fn absolute_dir(&mut self, at: &At, item: &Item) -> Option<PathBuf> {
        let dir = self.string(at, item)?;
        if dir.is_empty() {
            return None;
        }
        if !dir.starts_with('/') {
            self.problem(
                at,
                shown(item),
                "expected an absolute path (the driver runs in the runner's working directory)",
            );
            return None;
        }
        Some(PathBuf::from(dir))
    }

    fn capabilities(&mut self, at: &At, item: &Item) -> Vec<String> {
        self.checked_strings(at, item, |s| {
            crate::runtime::spec::parse_caps(&[s.to_string()])
                .map(|_| s.to_string())
                .map_err(|_| {
                    "not a capability: expected a name such as NET_ADMIN, or ALL".to_string()
                })
        })
    }

    /// Checked as docker takes them; a profile file is read when a job's container is made,
    /// as the runner reads it then.
    fn security_options(&mut self, at: &At, item: &Item) -> Vec<String> {
        self.checked_strings(at, item, |s| {
            crate::runtime::seccomp::SeccompPolicy::from_security_opts(&[s.to_string()])
                .map(|_| s.to_string())
                .map_err(|e| e.to_string())
        })
    }

    fn name_servers(&mut self, at: &At, item: &Item) -> Vec<String> {
        // The runner (19.2) checks them as IP addresses, as netip.ParseAddr.
        self.checked_strings(at, item, |s| {
            s.parse::<IpAddr>()
                .map(|_| s.to_string())
                .map_err(|_| "not an IP address".to_string())
        })
    }

    fn hosts(&mut self, at: &At, item: &Item) -> Vec<(String, String)> {
        self.checked_strings(at, item, |s| match s.split_once(':') {
            Some((host, ip)) if !host.is_empty() && ip.parse::<IpAddr>().is_ok() => {
                Ok((host.to_string(), ip.to_string()))
            }
            _ => Err("expected HOST:IP, with an IP address".to_string()),
        })
    }

    /// Bytes: docker's units in a string (`512m`), or an integer (as the runner's
    /// `shm_size`). Zero or empty: no setting.
    fn size(&mut self, at: &At, item: &Item) -> Option<i64> {
        let bytes = match item {
            Item::Value(Value::Integer(i)) => Some(*i.value()).filter(|b| *b >= 0),
            Item::Value(Value::String(s)) if s.value().is_empty() => return None,
            Item::Value(Value::String(s)) => docker_size(s.value()),
            _ => {
                self.wrong_type(at, item, "a size such as \"512m\" or \"1g\", or bytes");
                return None;
            }
        };
        match bytes {
            Some(0) => None,
            Some(b) => Some(b),
            None => {
                self.problem(
                    at,
                    shown(item),
                    "expected a size such as \"512m\" or \"1g\" (b, k, m, g, t, p), or bytes",
                );
                None
            }
        }
    }

    /// A string as the runner takes it (`"1.5"`, `"3/2"`), or a number. Zero or empty: no
    /// limit.
    fn cpus(&mut self, at: &At, item: &Item) -> Option<f64> {
        let cpus = match item {
            Item::Value(Value::String(s)) if s.value().trim().is_empty() => return None,
            Item::Value(Value::String(s)) => parse_cpus(s.value()),
            Item::Value(Value::Float(f)) => Some(*f.value()),
            Item::Value(Value::Integer(i)) => Some(*i.value() as f64),
            _ => {
                self.wrong_type(at, item, "a number of CPUs such as \"1.5\"");
                return None;
            }
        };
        match cpus {
            Some(0.0) => None,
            Some(c) if c > 0.0 => Some(c),
            _ => {
                self.problem(
                    at,
                    shown(item),
                    "expected a positive number of CPUs such as \"1.5\"",
                );
                None
            }
        }
    }

    /// A table of `path = "options"` (docker's `--tmpfs`), as skiff's `DST[:OPTIONS]`.
    fn tmpfs(&mut self, at: &At, item: &Item) -> Vec<String> {
        let Some(table) = item.as_table_like() else {
            self.wrong_type(at, item, "a table of path = \"options\"");
            return vec![];
        };
        let mut out = vec![];
        for (path, options) in table.iter() {
            let here = at.child(&format!("{path:?}"), table.key(path).and_then(|k| k.span()));
            let Some(options) = self.string(&here, options) else {
                continue;
            };
            if !path.starts_with('/') || path == "/" {
                self.problem(
                    &here,
                    Some(format!("{options:?}")),
                    "the path must be absolute, and not /",
                );
                continue;
            }
            out.push(match options.as_str() {
                "" => path.to_string(),
                o => format!("{path}:{o}"),
            });
        }
        out
    }

    /// docker's `-v`: `SRC:DST[:MODE]` or `DST[:MODE]`, the runner's
    /// `executors/docker/internal/volumes/parser/linux_parser.go` grammar; SRC a host path.
    fn volumes(&mut self, at: &At, item: &Item) -> Vec<VolumeSpec> {
        self.checked_strings(at, item, |s| {
            let parts: Vec<&str> = s.split(':').collect();
            let mode = |m: &str| match m {
                "ro" => Ok(true),
                "rw" => Ok(false),
                other => Err(format!(
                    "mode {other:?} is not supported: skiff takes ro or rw (no O overlays, z/Z relabelling or propagation)"
                )),
            };
            let (source, destination, read_only) = match parts.as_slice() {
                [d] => (None, *d, false),
                [d, m] if d.starts_with('/') && !m.starts_with('/') => (None, *d, mode(m)?),
                [s, d] => (Some(*s), *d, false),
                [s, d, m] => (Some(*s), *d, mode(m)?),
                _ => return Err("expected SRC:DST[:ro|rw] or DST[:ro|rw]".to_string()),
            };
            if !destination.starts_with('/') || destination.trim_end_matches('/').is_empty() {
                return Err("the destination must be an absolute path, and not /".to_string());
            }
            Ok(match source {
                None => VolumeSpec::Anonymous {
                    destination: destination.to_string(),
                    read_only,
                },
                Some(src) if src.starts_with('/') => VolumeSpec::Bind {
                    source: src.into(),
                    destination: destination.to_string(),
                    read_only,
                },
                Some(_) => {
                    return Err("named volumes are not supported: skiff has no docker volumes; give a host directory (an absolute path) or only the container path".to_string());
                }
            })
        })
    }

    fn services(&mut self, at: &At, item: &Item) -> Vec<ServiceConfig> {
        let tables: Vec<(&dyn TableLike, Option<Range<usize>>)> = match item {
            Item::ArrayOfTables(a) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
            Item::Value(Value::Array(a)) => {
                let mut out = vec![];
                for (i, v) in a.iter().enumerate() {
                    match v.as_inline_table() {
                        Some(t) => out.push((t as &dyn TableLike, v.span())),
                        None => self.problem(
                            &at.index(i, v.span()),
                            None,
                            format!("expected a table, not {}", v.type_name()),
                        ),
                    }
                }
                out
            }
            _ => {
                self.wrong_type(at, item, "[[services]] tables");
                return vec![];
            }
        };
        let mut out = vec![];
        for (i, (table, span)) in tables.into_iter().enumerate() {
            let entry = at.index(i, span);
            let mut service = ServiceConfig {
                name: String::new(),
                alias: None,
                entrypoint: None,
                command: None,
                environment: vec![],
            };
            for (key, value) in table.iter() {
                let here = entry.child(key, table.key(key).and_then(|k| k.span()));
                match key {
                    "name" => service.name = self.string(&here, value).unwrap_or_default(),
                    "alias" => {
                        service.alias = self.string(&here, value).filter(|a| !a.trim().is_empty())
                    }
                    "entrypoint" => service.entrypoint = self.strings(&here, value),
                    "command" => service.command = self.strings(&here, value),
                    // Never shown: values may be passwords.
                    "environment" if value.as_array().is_none() => self.problem(
                        &here,
                        None,
                        format!(
                            "expected an array of \"KEY=VALUE\", not {}",
                            value.type_name()
                        ),
                    ),
                    "environment" => {
                        for (s, at_entry) in self.strings_at(&here, value).unwrap_or_default() {
                            match s.split_once('=') {
                                Some((k, v)) if !k.is_empty() => {
                                    service.environment.push((k.into(), v.into()))
                                }
                                _ => self.problem(&at_entry, None, "expected KEY=VALUE"),
                            }
                        }
                    }
                    "suspend_data_path" => self.ignored.push(IgnoredKey {
                        key: here.key.clone(),
                        reason: "it is for suspended Kubernetes jobs only".into(),
                    }),
                    _ => self.problem(
                        &here,
                        None,
                        format!("unknown key: a service has {}", SERVICE_KEYS.join(", ")),
                    ),
                }
            }
            if service.name.trim().is_empty() {
                self.problem(&entry, None, "a service needs a name (its image)");
                continue;
            }
            out.push(service);
        }
        out
    }
}

#[cfg(test)]
mod tests;
