//! The custom executor's protocol as data: what GitLab Runner hands its driver in the
//! environment (`CUSTOM_ENV_<job variable>`, the failure exit codes, `BUILD_EXIT_CODE_FILE`),
//! read from an injected set of variables so that it can be tested without a runner.

use super::pipeline::{ImageSpec, ServiceSpec, default_aliases};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("CUSTOM_ENV_{name} is not set: {why}")]
    Missing {
        name: &'static str,
        why: &'static str,
    },
    #[error("job identifiers {key:?} are not plain numbers")]
    BadIds { key: String },
    #[error("CUSTOM_ENV_CI_JOB_SERVICES is not a JSON list")]
    ServicesJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("a service in CUSTOM_ENV_CI_JOB_SERVICES has no name")]
    ServiceName,
}

/// The driver's environment as the runner sets it.
#[derive(Debug, Clone, Default)]
pub struct ExecutorEnv {
    vars: BTreeMap<String, String>,
}

impl ExecutorEnv {
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: vars.into_iter().collect(),
        }
    }

    /// A job variable (`CUSTOM_ENV_<key>`), when set and not empty.
    pub fn job_var(&self, key: &str) -> Option<String> {
        self.vars
            .get(&format!("CUSTOM_ENV_{key}"))
            .filter(|v| !v.is_empty())
            .cloned()
    }

    /// A variable of the runner's own (`SYSTEM_FAILURE_EXIT_CODE`, `BUILD_EXIT_CODE_FILE`).
    pub fn runner_var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// `BUILD_FAILURE_EXIT_CODE` or `SYSTEM_FAILURE_EXIT_CODE`, with the runner's defaults
    /// for a runner that does not set them.
    pub fn exit_code(&self, var: &str, default: i32) -> i32 {
        self.runner_var(var)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    pub fn build_failure_code(&self) -> i32 {
        self.exit_code("BUILD_FAILURE_EXIT_CODE", 1)
    }

    pub fn system_failure_code(&self) -> i32 {
        self.exit_code("SYSTEM_FAILURE_EXIT_CODE", 2)
    }

    /// `r<runner>-p<project>-c<concurrent>-j<job>`: the store key of this job's state.
    pub fn job_key(&self) -> Result<String, ExecutorError> {
        let job = self.job_var("CI_JOB_ID").ok_or(ExecutorError::Missing {
            name: "CI_JOB_ID",
            why: "run by GitLab Runner's custom executor",
        })?;
        checked_key(format!("{}-j{job}", self.slot_key_unchecked()))
    }

    /// `r<runner>-p<project>-c<concurrent>`: the project's concurrency slot on this runner,
    /// whose builds directory the slot's jobs reuse (as the docker executor's build volume
    /// `runner-<token>-project-<id>-concurrent-<n>` is).
    pub fn slot_key(&self) -> Result<String, ExecutorError> {
        checked_key(self.slot_key_unchecked())
    }

    fn slot_key_unchecked(&self) -> String {
        let part = |k: &str| self.job_var(k).unwrap_or_else(|| "0".into());
        format!(
            "r{}-p{}-c{}",
            part("CI_RUNNER_ID"),
            part("CI_PROJECT_ID"),
            part("CI_CONCURRENT_PROJECT_ID")
        )
    }

    /// The job's image (`CUSTOM_ENV_CI_JOB_IMAGE`).
    pub fn image(&self) -> Result<String, ExecutorError> {
        self.job_var("CI_JOB_IMAGE").ok_or(ExecutorError::Missing {
            name: "CI_JOB_IMAGE",
            why: "the job has no image",
        })
    }

    /// The job's variables, from the runner's `CUSTOM_ENV_` copies.
    pub fn job_variables(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("CUSTOM_ENV_")?.to_string(), v.clone())))
            .filter(|(k, _)| k != "CI_JOB_SERVICES")
            .collect()
    }

    /// `CUSTOM_ENV_CI_JOB_SERVICES`: `[{"name","alias","entrypoint","command","variables"}]`,
    /// with GitLab's default aliases before the given ones (each alias once across services).
    pub fn services(&self) -> Result<Vec<ServiceSpec>, ExecutorError> {
        let Some(json) = self.job_var("CI_JOB_SERVICES") else {
            return Ok(vec![]);
        };
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&json).map_err(|source| ExecutorError::ServicesJson { source })?;
        let strings = |v: Option<&serde_json::Value>| {
            v.and_then(|v| v.as_array()).map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
        };
        let mut taken = std::collections::BTreeSet::new();
        list.iter()
            .map(|s| {
                let name = s["name"]
                    .as_str()
                    .ok_or(ExecutorError::ServiceName)?
                    .to_string();
                let mut aliases = default_aliases(&name);
                if let Some(a) = s["alias"].as_str() {
                    aliases.extend(a.replace(',', " ").split_whitespace().map(str::to_string));
                }
                aliases.retain(|a| taken.insert(a.clone()));
                Ok(ServiceSpec {
                    image: ImageSpec {
                        entrypoint: strings(s.get("entrypoint"))
                            .map(|e| e.into_iter().filter(|x| !x.is_empty()).collect()),
                        pull_policy: vec![],
                        name,
                    },
                    aliases,
                    command: strings(s.get("command")),
                    variables: s["variables"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// A key made of the runner's ids names a directory: nothing but letters, digits and `-`.
fn checked_key(key: String) -> Result<String, ExecutorError> {
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ExecutorError::BadIds { key });
    }
    Ok(key)
}

/// The runner's predefined stages run in the helper container (sources, caches, artifacts);
/// the rest (build_script, step_*, after_script) in the build container.
pub const HELPER_STAGES: &[&str] = &[
    "prepare_script",
    "get_sources",
    "clear_worktree",
    "restore_cache",
    "download_artifacts",
    "archive_cache",
    "archive_cache_on_failure",
    "upload_artifacts_on_success",
    "upload_artifacts_on_failure",
    "cleanup_file_variables",
];

pub fn runs_in_helper(stage: &str) -> bool {
    HELPER_STAGES.contains(&stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> ExecutorEnv {
        ExecutorEnv::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn stages_split_as_the_runner_splits_them() {
        for (stage, helper) in [
            ("prepare_script", true),
            ("get_sources", true),
            ("restore_cache", true),
            ("download_artifacts", true),
            ("build_script", false),
            ("step_release", false),
            ("after_script", false),
            ("archive_cache", true),
            ("archive_cache_on_failure", true),
            ("upload_artifacts_on_success", true),
            ("upload_artifacts_on_failure", true),
            ("cleanup_file_variables", true),
        ] {
            assert_eq!(runs_in_helper(stage), helper, "{stage}");
        }
    }

    #[test]
    fn job_keys_table() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Vars, Result<&str, &str>)] = &[
            (
                &[
                    ("CUSTOM_ENV_CI_JOB_ID", "7"),
                    ("CUSTOM_ENV_CI_RUNNER_ID", "3"),
                    ("CUSTOM_ENV_CI_PROJECT_ID", "42"),
                    ("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "1"),
                ],
                Ok("r3-p42-c1-j7"),
            ),
            (&[("CUSTOM_ENV_CI_JOB_ID", "7")], Ok("r0-p0-c0-j7")),
            (&[], Err("CUSTOM_ENV_CI_JOB_ID is not set")),
            (
                &[("CUSTOM_ENV_CI_JOB_ID", "../x")],
                Err("are not plain numbers"),
            ),
        ];
        for (vars, want) in cases {
            match (env(vars).job_key(), want) {
                (Ok(k), Ok(w)) => assert_eq!(&k, w),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (got, want) => panic!("{vars:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn services_and_variables_from_the_environment() {
        let e = env(&[
            (
                "CUSTOM_ENV_CI_JOB_SERVICES",
                r#"[{"name":"redis:7","alias":"cache,kv","entrypoint":[""],"command":["redis-server"]},{"name":"redis:7","alias":"cache"}]"#,
            ),
            ("CUSTOM_ENV_FOO", "bar"),
            ("SYSTEM_FAILURE_EXIT_CODE", "42"),
        ]);
        let s = e.services().unwrap();
        assert_eq!(s[0].aliases, ["redis", "cache", "kv"]);
        assert_eq!(s[0].image.entrypoint, Some(vec![]));
        assert_eq!(
            s[0].command.as_deref(),
            Some(&["redis-server".to_string()][..])
        );
        assert!(s[1].aliases.is_empty(), "aliases are taken once");
        assert_eq!(e.job_variables(), [("FOO".to_string(), "bar".to_string())]);
        assert_eq!((e.system_failure_code(), e.build_failure_code()), (42, 1));
        assert!(
            env(&[("CUSTOM_ENV_CI_JOB_SERVICES", "{")])
                .services()
                .is_err()
        );
    }
}
