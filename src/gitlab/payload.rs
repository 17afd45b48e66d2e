//! The job as GitLab Runner hands it to a custom-executor driver: the JSON file named by
//! `JOB_RESPONSE_FILE` (the runner's `spec.Job`, encoded whole by
//! executors/custom/custom.go::createJobResponseFile since runner 14.1), or, for a runner
//! that does not write it, the same data rebuilt from the `CUSTOM_ENV_*` copies.
//!
//! Only what a container driver needs is modelled (common/spec/spec.go, json tags as the
//! runner writes them); unknown fields are ignored. Go writes a nil slice or map as `null`,
//! which reads as empty here.

use super::executor::{ExecutorEnv, ExecutorError};
use super::pipeline::{ImageSpec, ServiceSpec, default_aliases};
use crate::image::pull::Policy;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("reading the job payload {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `reason` is serde_json's message with the offending value cut out (it may be a
    /// secret in the wrong place), so the JSON error itself is not kept as the source.
    #[error("job payload {}: {field}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        /// Where in the document, e.g. `services[1].entrypoint` (`.` for the whole).
        field: String,
        reason: String,
    },
    // The runner's words: executors/docker/internal/pull/manager.go::GetDockerImage.
    #[error(
        "invalid pull policy for image {image:?}: unsupported pull_policy {value:?} \
         (expected always, if-not-present or never)"
    )]
    PullPolicy { image: String, value: String },
    /// The runner's `CUSTOM_ENV_*` (without a `JOB_RESPONSE_FILE`) do not make a job.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
}

/// Where a payload came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PayloadSource {
    /// The runner's `JOB_RESPONSE_FILE`.
    File(PathBuf),
    /// Rebuilt from `CUSTOM_ENV_*` (a runner older than 14.1): no variable flags, the job
    /// image by name only, each service with its first alias only.
    #[default]
    Environment,
}

/// The job: `spec.Job` in common/spec/spec.go.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
pub struct JobPayload {
    #[serde(default, deserialize_with = "nullable")]
    pub id: i64,
    /// The job token: never printed (see the `Debug` impl).
    #[serde(default, deserialize_with = "nullable")]
    pub token: String,
    #[serde(default, deserialize_with = "nullable")]
    pub job_info: JobInfo,
    #[serde(default, deserialize_with = "nullable")]
    pub runner_info: RunnerInfo,
    /// The job's variables as GitLab sent them: not expanded, in precedence order (later wins).
    #[serde(default, deserialize_with = "nullable")]
    pub variables: Vec<Variable>,
    #[serde(default, deserialize_with = "nullable")]
    pub image: JobImage,
    #[serde(default, deserialize_with = "nullable")]
    pub services: Vec<JobImage>,
    #[serde(default, deserialize_with = "nullable")]
    pub credentials: Vec<Credentials>,
    /// External secrets (Vault and the like) by variable name; the runner resolves them
    /// before the driver runs and adds them to the job's variables.
    #[serde(default, deserialize_with = "nullable")]
    pub secrets: BTreeMap<String, SecretRef>,
    #[serde(default, deserialize_with = "nullable")]
    pub features: Features,
    /// What the runner adds to the job's variables and GitLab did not send: its predefined
    /// variables, config.toml `environment`, feature flags (all `internal`), and resolved
    /// `secrets` (masked). Read from `CUSTOM_ENV_*` by [`JobPayload::of`], values as
    /// the runner already expanded them.
    #[serde(skip)]
    pub runner_variables: Vec<Variable>,
    #[serde(skip)]
    pub source: PayloadSource,
}

/// `spec.JobInfo`, the part the driver may show or key on.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct JobInfo {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub stage: String,
    #[serde(default, deserialize_with = "nullable")]
    pub project_id: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub project_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub project_full_path: String,
}

/// `spec.RunnerInfo`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RunnerInfo {
    /// The job timeout in seconds.
    #[serde(default, deserialize_with = "nullable")]
    pub timeout: i64,
}

impl RunnerInfo {
    pub fn timeout(&self) -> Option<Duration> {
        u64::try_from(self.timeout)
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
    }
}

/// `spec.Variable`. `internal` is `json:"-"` in the runner: never in the file, set only on
/// [`JobPayload::runner_variables`].
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Variable {
    #[serde(default, deserialize_with = "nullable")]
    pub key: String,
    #[serde(default, deserialize_with = "nullable")]
    pub value: String,
    #[serde(default, deserialize_with = "nullable")]
    pub public: bool,
    #[serde(skip)]
    pub internal: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub file: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub masked: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub raw: bool,
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only what GitLab calls public (the pipeline's own and predefined values) is shown.
        let shown = self.public && !self.masked;
        let mut d = f.debug_struct("Variable");
        d.field("key", &self.key);
        if shown {
            d.field("value", &self.value);
        } else {
            d.field("value", &Redacted);
        }
        d.field("public", &self.public)
            .field("internal", &self.internal)
            .field("file", &self.file)
            .field("masked", &self.masked)
            .field("raw", &self.raw)
            .finish()
    }
}

/// `spec.Image`: the job's image and each service.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct JobImage {
    /// Already expanded by the runner (common/build.go::expandContainerOptions).
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// One or more aliases, separated by commas or spaces; see [`JobImage::aliases`].
    #[serde(default, deserialize_with = "nullable")]
    pub alias: String,
    #[serde(default, deserialize_with = "nullable")]
    pub command: Vec<String>,
    /// `[""]` means "no entrypoint"; empty means "the image's".
    #[serde(default, deserialize_with = "nullable")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<Port>,
    /// A service's own variables (`services:variables`), not expanded.
    #[serde(default, deserialize_with = "nullable")]
    pub variables: Vec<Variable>,
    /// A list in the payload (`[]PullPolicy`, no custom unmarshalling: a plain string would
    /// not have got past the runner). Checked by [`JobImage::pull_policies`].
    #[serde(default, deserialize_with = "nullable")]
    pub pull_policy: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub executor_opts: ExecutorOptions,
}

/// `spec.Port`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Port {
    #[serde(default, deserialize_with = "nullable")]
    pub number: u16,
    #[serde(default, deserialize_with = "nullable")]
    pub protocol: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
}

/// `spec.ImageExecutorOptions` (`image:docker:` in the pipeline lands under `executor_opts`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ExecutorOptions {
    #[serde(default, deserialize_with = "nullable")]
    pub docker: DockerOptions,
}

/// `spec.ImageDockerOptions`. Both are expanded against the job's variables where the
/// docker executor uses them (`ImageDockerOptions.Expand`): use [`JobPayload::expand`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct DockerOptions {
    #[serde(default, deserialize_with = "nullable")]
    pub platform: String,
    /// `StringOrInt64`: GitLab may send a number; the runner writes it back as a string.
    #[serde(default, deserialize_with = "string_or_integer")]
    pub user: String,
}

/// `spec.Credentials`. The password is the job token for GitLab's own registries.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub url: String,
    #[serde(default, deserialize_with = "nullable")]
    pub username: String,
    #[serde(default, deserialize_with = "nullable")]
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("type", &self.kind)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &Redacted)
            .finish()
    }
}

/// A `secrets:` entry: only whether it becomes a file (`Secret.IsFile`, true unless said).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SecretRef {
    #[serde(default)]
    pub file: Option<bool>,
}

/// `spec.GitlabFeatures`, the part about masking.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Features {
    /// Token prefixes (`glpat-`, ...) the runner masks in the job log with what follows.
    #[serde(default, deserialize_with = "nullable")]
    pub token_mask_prefixes: Vec<String>,
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for JobPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JobPayload");
        d.field("id", &self.id);
        if self.token.is_empty() {
            d.field("token", &"");
        } else {
            d.field("token", &Redacted);
        }
        d.field("job_info", &self.job_info)
            .field("runner_info", &self.runner_info)
            .field("variables", &self.variables)
            .field("image", &self.image)
            .field("services", &self.services)
            .field("credentials", &self.credentials)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("features", &self.features)
            .field("runner_variables", &self.runner_variables)
            .field("source", &self.source)
            .finish()
    }
}

/// Go reads `null` into any field as its zero value; so does this.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// common/spec/spec.go::StringOrInt64.UnmarshalJSON: a string, or an integer as its digits.
fn string_or_integer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or an integer")
        }
        fn visit_str<E>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            i64::try_from(v)
                .map(|v| v.to_string())
                .map_err(|_| E::custom("integer out of range for a user id"))
        }
        fn visit_unit<E>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    d.deserialize_any(Visitor)
}

/// serde's "invalid type: string \"...\", expected ..." quotes the value it did not want;
/// in a payload that value may be a secret, so only its kind is kept.
fn without_values(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        let Some(at) = message.find(marker) else {
            continue;
        };
        let start = at + marker.len();
        let rest = &message[start..];
        let (kind, tail) = if let Some(quoted) = rest.strip_prefix("string \"") {
            // Debug-quoted: skip escaped characters up to the closing quote.
            let mut escaped = false;
            let end = quoted
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map(|(i, _)| i + 1)
                .unwrap_or(quoted.len());
            ("string", &quoted[end..])
        } else if let Some(tick) = rest
            .find(" `")
            .filter(|t| rest.find(", expected").is_none_or(|e| *t < e))
        {
            let after = &rest[tick + 2..];
            let end = after.find('`').map(|i| i + 1).unwrap_or(after.len());
            (&rest[..tick], &after[end..])
        } else {
            return message.to_string();
        };
        return format!("{}{kind}{tail}", &message[..start]);
    }
    message.to_string()
}

impl JobPayload {
    /// The runner's `JOB_RESPONSE_FILE`.
    pub fn read(path: &Path) -> Result<JobPayload, PayloadError> {
        let text = std::fs::read(path).map_err(|source| PayloadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let malformed = |field: String, e: &serde_json::Error| PayloadError::Malformed {
            path: path.to_path_buf(),
            field,
            reason: without_values(&e.to_string()),
        };
        let mut de = serde_json::Deserializer::from_slice(&text);
        let mut payload: JobPayload = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| malformed(e.path().to_string(), e.inner()))?;
        de.end().map_err(|e| malformed(".".into(), &e))?;
        payload.source = PayloadSource::File(path.to_path_buf());
        Ok(payload)
    }

    /// The job as the runner sent it: the `JOB_RESPONSE_FILE` it writes (runner 14.1+; a
    /// runner variable, not a job one), with the variables the runner adds to GitLab's
    /// (`CUSTOM_ENV_*` the file does not hold); without that file, rebuilt from
    /// `CUSTOM_ENV_*` alone (see [`JobPayload::from_env`]).
    pub fn of(env: &ExecutorEnv) -> Result<JobPayload, PayloadError> {
        match env
            .runner_var("JOB_RESPONSE_FILE")
            .filter(|p| !p.is_empty())
        {
            Some(file) => Ok(JobPayload::read(Path::new(file))?.with_runner_variables(env)),
            None => JobPayload::from_env(env),
        }
    }

    /// For a runner that does not write `JOB_RESPONSE_FILE`: the job from its
    /// `CUSTOM_ENV_*` copies. Without flags nothing can be told public, so no job variable
    /// reaches a service (see [`JobPayload::service_env`]); known secret names are masked.
    pub fn from_env(env: &ExecutorEnv) -> Result<JobPayload, PayloadError> {
        let var = |k: &str| env.job_var(k).unwrap_or_default();
        let number = |k: &str| var(k).parse().unwrap_or_default();
        // The runner already expanded these values: `raw` keeps them as they are.
        let variables = env
            .job_variables()
            .into_iter()
            .map(|(key, value)| Variable {
                masked: FALLBACK_SECRETS.contains(&key.as_str()),
                key,
                value,
                raw: true,
                ..Variable::default()
            })
            .collect();
        let mut credentials = vec![];
        for (url, user, password) in [
            ("CI_REGISTRY", "CI_REGISTRY_USER", "CI_REGISTRY_PASSWORD"),
            (
                "CI_DEPENDENCY_PROXY_SERVER",
                "CI_DEPENDENCY_PROXY_USER",
                "CI_DEPENDENCY_PROXY_PASSWORD",
            ),
        ] {
            if let (Some(url), Some(username), Some(password)) =
                (env.job_var(url), env.job_var(user), env.job_var(password))
            {
                credentials.push(Credentials {
                    kind: "registry".into(),
                    url,
                    username,
                    password,
                });
            }
        }
        Ok(JobPayload {
            id: number("CI_JOB_ID"),
            token: var("CI_JOB_TOKEN"),
            job_info: JobInfo {
                name: var("CI_JOB_NAME"),
                stage: var("CI_JOB_STAGE"),
                project_id: number("CI_PROJECT_ID"),
                project_name: var("CI_PROJECT_NAME"),
                project_full_path: var("CI_PROJECT_PATH"),
            },
            runner_info: RunnerInfo {
                timeout: number("CI_JOB_TIMEOUT"),
            },
            variables,
            image: JobImage {
                name: var("CI_JOB_IMAGE"),
                ..JobImage::default()
            },
            services: services_from_env(env)?,
            credentials,
            ..JobPayload::default()
        })
    }

    /// Adds what the runner put into the job's variables beside GitLab's (its
    /// `CUSTOM_ENV_*` that the payload does not hold). Their values are final: the runner
    /// expanded them, and a file variable's value is its content.
    pub(super) fn with_runner_variables(mut self, env: &ExecutorEnv) -> JobPayload {
        let from_gitlab: BTreeSet<&str> = self.variables.iter().map(|v| v.key.as_str()).collect();
        let mut internal = vec![];
        let mut secrets = vec![];
        for (key, value) in env.job_variables() {
            if let Some(secret) = self.secrets.get(&key) {
                // common/secrets.go: a resolved secret is masked and raw, a file by default.
                secrets.push(Variable {
                    file: secret.file.unwrap_or(true),
                    masked: true,
                    raw: true,
                    key,
                    value,
                    ..Variable::default()
                });
            } else if !from_gitlab.contains(key.as_str()) {
                internal.push(Variable {
                    file: RUNNER_FILE_VARIABLES.contains(&key.as_str()),
                    internal: true,
                    raw: true,
                    key,
                    value,
                    ..Variable::default()
                });
            }
        }
        internal.extend(secrets);
        self.runner_variables = internal;
        self
    }

    /// The job's variables as the runner resolves them (common/build.go::GetAllVariables):
    /// its own before GitLab's, resolved secrets last, each value expanded once against
    /// all of them unless `raw` (common/spec/variables.go::Expand).
    pub fn all_variables(&self) -> Vec<Variable> {
        let (internal, secrets): (Vec<&Variable>, Vec<&Variable>) =
            self.runner_variables.iter().partition(|v| v.internal);
        let unexpanded: Vec<Variable> = internal
            .into_iter()
            .chain(&self.variables)
            .chain(secrets)
            .cloned()
            .collect();
        expand_with(&unexpanded, &unexpanded)
    }

    /// A value expanded as the runner expands `image:docker:user`, `platform` and the like
    /// (`GetAllVariables().ExpandValue`): undefined variables become empty.
    pub fn expand(&self, value: &str) -> String {
        let all = self.all_variables();
        go_expand(value, |name| lookup(&all, name))
    }

    /// The environment of service `index` exactly as the docker executor builds it
    /// (common/build.go::GetServiceVariables, then `StringList` for `Env`): the job's
    /// public or internal variables as the build container sees them, then the service's
    /// own, expanded against all of the job's variables (19.3+: a service may opt into a
    /// non-public value by naming it). Masked project variables, `CI_JOB_TOKEN` and a
    /// project `DOCKER_AUTH_CONFIG` are not public and stay out; a config.toml
    /// `environment` entry is internal and gets in. A file variable's value is its path,
    /// `$RUNNER_TEMP_PROJECT_DIR/<KEY>`. In the runner's order, duplicates kept (docker
    /// passes them all; the later entry is the override).
    ///
    /// # Panics
    /// When `index` is not a service of this job.
    pub fn service_env(&self, index: usize) -> Vec<(String, String)> {
        let own = &self.services[index].variables;
        let all = self.all_variables();
        let source: Vec<Variable> = all.iter().chain(own).cloned().collect();
        let env: Vec<Variable> = all
            .into_iter()
            .filter(|v| v.public || v.internal)
            .chain(expand_with(own, &source))
            .collect();
        // common/spec/variables.go::StringList: a file variable by its path.
        env.iter()
            .map(|v| {
                let value = if v.file {
                    lookup(&env, &v.key)
                } else {
                    v.value.clone()
                };
                (v.key.clone(), value)
            })
            .collect()
    }

    /// What the job log must not show: masked variables (as resolved, like the runner's
    /// `GetAllVariables().Masked()`), resolved secrets and the job token; each once.
    pub fn masked_values(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.all_variables()
            .into_iter()
            .filter(|v| v.masked)
            .map(|v| v.value)
            .chain(std::iter::once(self.token.clone()))
            .filter(|v| !v.is_empty() && seen.insert(v.clone()))
            .collect()
    }

    /// `credentials` of type `registry`: GitLab's registry and dependency proxy, with the
    /// job token (helpers/docker/auth/auth.go, source "job payload (GitLab Registry)").
    pub fn registry_credentials(&self) -> Vec<&Credentials> {
        self.credentials
            .iter()
            .filter(|c| c.kind == "registry")
            .collect()
    }

    /// The job's image as the job runner takes it; `None` when the job names none.
    pub fn image_spec(&self) -> Result<Option<ImageSpec>, PayloadError> {
        if self.image.name.is_empty() {
            return Ok(None);
        }
        self.image.to_image_spec().map(Some)
    }

    /// The services, with GitLab's default aliases before each one's own (all of them),
    /// an alias taken by an earlier service skipped (executors/docker/services.go::
    /// createFromServiceDefinition), and their own variables expanded as
    /// [`JobPayload::service_env`] expands them. Use `service_env` for a container's
    /// environment: it adds the job's variables the service may see.
    pub fn service_specs(&self) -> Result<Vec<ServiceSpec>, PayloadError> {
        let all = self.all_variables();
        let mut taken = BTreeSet::new();
        self.services
            .iter()
            .map(|s| {
                let mut aliases = default_aliases(&s.name);
                aliases.extend(s.aliases());
                aliases.retain(|a| taken.insert(a.clone()));
                let source: Vec<Variable> = all.iter().chain(&s.variables).cloned().collect();
                Ok(ServiceSpec {
                    image: s.to_image_spec()?,
                    aliases,
                    command: (!s.command.is_empty()).then(|| s.command.clone()),
                    variables: expand_with(&s.variables, &source)
                        .into_iter()
                        .map(|v| (v.key, v.value))
                        .collect(),
                })
            })
            .collect()
    }
}

/// Variable names that hold secrets whatever their flags; the fallback masks them since it
/// cannot see the flags.
const FALLBACK_SECRETS: &[&str] = &[
    "CI_JOB_TOKEN",
    "CI_BUILD_TOKEN",
    "CI_REGISTRY_PASSWORD",
    "CI_DEPENDENCY_PROXY_PASSWORD",
    "CI_JOB_JWT",
    "CI_JOB_JWT_V1",
    "CI_JOB_JWT_V2",
    "DOCKER_AUTH_CONFIG",
];

/// The runner's own file variables (common/build.go::GetCITLSVariables).
const RUNNER_FILE_VARIABLES: &[&str] = &[
    "CI_SERVER_TLS_CA_FILE",
    "CI_SERVER_TLS_CERT_FILE",
    "CI_SERVER_TLS_KEY_FILE",
];

fn services_from_env(env: &ExecutorEnv) -> Result<Vec<JobImage>, ExecutorError> {
    // executors/custom/custom.go::jsonService; `alias` is the first alias only, and
    // `variables` (19.0+) are already expanded.
    #[derive(Deserialize)]
    struct EnvService {
        #[serde(default, deserialize_with = "nullable")]
        name: String,
        #[serde(default, deserialize_with = "nullable")]
        alias: String,
        #[serde(default, deserialize_with = "nullable")]
        entrypoint: Vec<String>,
        #[serde(default, deserialize_with = "nullable")]
        command: Vec<String>,
        #[serde(default, deserialize_with = "nullable")]
        variables: BTreeMap<String, String>,
    }
    let Some(json) = env.job_var("CI_JOB_SERVICES") else {
        return Ok(vec![]);
    };
    let list: Vec<EnvService> =
        serde_json::from_str(&json).map_err(|source| ExecutorError::ServicesJson { source })?;
    list.into_iter()
        .map(|s| {
            if s.name.is_empty() {
                return Err(ExecutorError::ServiceName);
            }
            Ok(JobImage {
                name: s.name,
                alias: s.alias,
                entrypoint: s.entrypoint,
                command: s.command,
                variables: s
                    .variables
                    .into_iter()
                    .map(|(key, value)| Variable {
                        key,
                        value,
                        raw: true,
                        ..Variable::default()
                    })
                    .collect(),
                ..JobImage::default()
            })
        })
        .collect()
}

impl JobImage {
    /// common/spec/spec.go::Image.Aliases: `alias` split at commas and white space.
    pub fn aliases(&self) -> Vec<String> {
        self.alias
            .replace(',', " ")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// The entrypoint to set: `None` keeps the image's (executors/docker/docker.go::
    /// overwriteEntrypoint overrides only a non-empty list); `[""]` is `Some([])`, none.
    pub fn entrypoint_override(&self) -> Option<Vec<String>> {
        (!self.entrypoint.is_empty()).then(|| {
            self.entrypoint
                .iter()
                .filter(|e| !e.is_empty())
                .cloned()
                .collect()
        })
    }

    /// `pull_policy` as a fallback chain; empty when the job sets none (the runner then
    /// takes config.toml's). GitLab sends only the runner's three names.
    pub fn pull_policies(&self) -> Result<Vec<Policy>, PayloadError> {
        self.pull_policy
            .iter()
            .map(|p| match p.as_str() {
                "always" | "if-not-present" | "never" => {
                    Policy::from_str(p).map_err(|_| self.bad_policy(p))
                }
                _ => Err(self.bad_policy(p)),
            })
            .collect()
    }

    fn bad_policy(&self, value: &str) -> PayloadError {
        PayloadError::PullPolicy {
            image: self.name.clone(),
            value: value.to_string(),
        }
    }

    fn to_image_spec(&self) -> Result<ImageSpec, PayloadError> {
        self.pull_policies()?;
        Ok(ImageSpec {
            name: self.name.clone(),
            entrypoint: self.entrypoint_override(),
            pull_policy: self.pull_policy.clone(),
        })
    }
}

/// common/spec/variables.go::ExpandWith: each variable not `raw` expanded against `source`.
fn expand_with(variables: &[Variable], source: &[Variable]) -> Vec<Variable> {
    variables
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if !v.raw {
                v.value = go_expand(&v.value, |name| lookup(source, name));
            }
            v
        })
        .collect()
}

/// common/spec/variables.go::Variables.Get: `$$` is `$`, the shell's special parameters
/// are empty, otherwise the last variable of that name, a file variable as its path.
fn lookup(variables: &[Variable], name: &str) -> String {
    if let Some(v) = special(name) {
        return v;
    }
    let last = |key: &str| variables.iter().rev().find(|v| v.key == key);
    match last(name) {
        Some(v) if v.file => {
            let dir = last("RUNNER_TEMP_PROJECT_DIR").map_or("", |d| d.value.as_str());
            join_path(dir, name)
        }
        Some(v) => v.value.clone(),
        None => String::new(),
    }
}

/// Go's `path.Join(dir, name)`: slash paths, cleaned.
fn join_path(dir: &str, name: &str) -> String {
    let joined = if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    };
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = vec![];
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            p => parts.push(p),
        }
    }
    match (rooted, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".into(),
        (false, false) => parts.join("/"),
    }
}

/// `value` expanded as the runner expands a value against its variables (later ones win,
/// `$$` is `$`, an undefined name is empty): for names and variables not from a payload.
pub fn expand_value(value: &str, variables: &[(String, String)]) -> String {
    if !value.contains('$') {
        return value.to_string();
    }
    go_expand(value, |name| match special(name) {
        Some(v) => v,
        None => variables
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map_or(String::new(), |(_, v)| v.clone()),
    })
}

/// The shell's special parameters as the runner answers them: `$$` is `$`, the others
/// empty; `None` for a name.
fn special(name: &str) -> Option<String> {
    match name {
        "$" => Some("$".into()),
        "*" | "#" | "@" | "!" | "?" => Some(String::new()),
        n if n.len() == 1 && n.as_bytes()[0].is_ascii_digit() => Some(String::new()),
        _ => None,
    }
}

/// Go's `os.Expand`: `$NAME`, `${NAME}` and the special `$$`, `$1`, `${*}`...; an
/// undefined name is empty, `${}` and an unclosed `${` are dropped, a lone `$` stays.
fn go_expand(s: &str, lookup: impl Fn(&str) -> String) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut copied, mut j) = (0, 0);
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&s[copied..j]);
            let (name, width) = shell_name(&s[j + 1..]);
            match (name.is_empty(), width) {
                (true, 0) => out.push('$'),
                (true, _) => {}
                (false, _) => out.push_str(&lookup(name)),
            }
            j += width;
            copied = j + 1;
        }
        j += 1;
    }
    out.push_str(&s[copied..]);
    out
}

/// Go's `os.getShellName`: the name after a `$` and how many bytes it takes.
fn shell_name(s: &str) -> (&str, usize) {
    let special = |c: u8| b"*#$@!?-0123456789".contains(&c);
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        return match b.iter().skip(1).position(|&c| c == b'}') {
            Some(0) => ("", 2),
            Some(i) => (&s[1..i + 1], i + 2),
            None => ("", 1),
        };
    }
    if special(b[0]) {
        return (&s[..1], 1);
    }
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    (&s[..n], n)
}

#[cfg(test)]
mod tests;
