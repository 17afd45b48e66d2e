//! One job of a `.gitlab-ci.yml`, resolved the way GitLab resolves it before a runner sees
//! it: YAML anchors and `<<` merge keys, `!reference` tags, `extends` (deep merge, hashes
//! merged, everything else replaced), `default:` and the old top-level defaults (unless
//! `inherit` says otherwise), variables (global, job, then `--var`; `$VAR` expanded), scripts
//! as flat lists, services with GitLab's default aliases, and `timeout`. Keywords skiff does
//! not act on are named in warnings, never silently misread.

use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading {}", file.display())]
    Read {
        file: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Parse { file: String, reason: String },
    #[error("{file}: no job {job:?} (jobs: {known})")]
    NoJob {
        file: String,
        job: String,
        known: String,
    },
    #[error("{file}: job {job}: {reason}")]
    Job {
        file: String,
        job: String,
        reason: String,
    },
}

/// Keywords that are not jobs at the top level (also used by gitlab::ci).
pub const GLOBAL_KEYWORDS: &[&str] = &[
    "image",
    "services",
    "stages",
    "variables",
    "workflow",
    "include",
    "default",
    "before_script",
    "after_script",
    "cache",
    "spec",
];

/// Job keywords skiff acts on; any other is reported.
const SUPPORTED: &[&str] = &[
    "image",
    "services",
    "variables",
    "before_script",
    "script",
    "after_script",
    "timeout",
    "extends",
    "stage",
    "inherit",
];

/// Keys `default:` may carry that skiff applies.
const DEFAULTABLE: &[&str] = &[
    "image",
    "services",
    "before_script",
    "after_script",
    "timeout",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: String,
    /// `Some(vec![])` for `entrypoint: [""]`: no entrypoint at all.
    pub entrypoint: Option<Vec<String>>,
    pub pull_policy: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub image: ImageSpec,
    /// GitLab's default aliases, then the user's (duplicates across services dropped).
    pub aliases: Vec<String>,
    pub command: Option<Vec<String>>,
    pub variables: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    pub stage: String,
    pub image: Option<ImageSpec>,
    pub services: Vec<ServiceSpec>,
    /// In precedence order, later wins; values expanded.
    pub variables: Vec<(String, String)>,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    pub timeout: Option<Duration>,
    pub warnings: Vec<String>,
}

pub struct Pipeline {
    file: String,
    top: Mapping,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Follows `!reference [a, b, c]` tags until none is left (GitLab allows 10 levels).
fn resolve_references(v: &Value, top: &Mapping, depth: usize) -> Result<Value, String> {
    if depth > 10 {
        return Err("!reference nested more than 10 levels deep".into());
    }
    Ok(match v {
        Value::Tagged(t) if t.tag == "reference" => {
            let path: Vec<String> = t
                .value
                .as_sequence()
                .map(|s| s.iter().filter_map(text).collect())
                .ok_or("!reference takes a list of keys")?;
            let mut cur = top
                .get(path.first().ok_or("!reference []: empty path")?)
                .ok_or_else(|| format!("!reference {path:?}: no such key"))?;
            for key in &path[1..] {
                cur = cur
                    .as_mapping()
                    .and_then(|m| m.get(key.as_str()))
                    .ok_or_else(|| format!("!reference {path:?}: no such key"))?;
            }
            resolve_references(cur, top, depth + 1)?
        }
        Value::Tagged(t) => return Err(format!("unsupported YAML tag !{}", t.tag)),
        Value::Sequence(s) => Value::Sequence(
            s.iter()
                .map(|x| resolve_references(x, top, depth))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), resolve_references(x, top, depth)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// GitLab's `extends` merge: mappings merge key by key, anything else is replaced.
fn deep_merge(base: &Mapping, over: &Mapping) -> Mapping {
    let mut out = base.clone();
    for (k, v) in over {
        let merged = match (out.get(k), v) {
            (Some(Value::Mapping(a)), Value::Mapping(b)) => Value::Mapping(deep_merge(a, b)),
            _ => v.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

/// A script as a flat list: a string, or a list whose items may be lists (from !reference).
fn script(v: Option<&Value>) -> Vec<String> {
    fn flatten(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Sequence(s) => s.iter().for_each(|x| flatten(x, out)),
            other => out.extend(text(other)),
        }
    }
    let mut out = vec![];
    if let Some(v) = v {
        flatten(v, &mut out);
    }
    out
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Sequence(s) => Some(s.iter().filter_map(text).collect()),
        other => text(other).map(|s| vec![s]),
    }
}

/// `$VAR` and `${VAR}` from `vars`; unknown variables stay as written.
pub fn expand(s: &str, vars: &[(String, String)]) -> String {
    let lookup = |name: &str| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(b) => match b.find('}') {
                Some(e) => (&b[..e], &b[e + 1..]),
                None => ("", after),
            },
            None => {
                let e = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..e], &after[e..])
            }
        };
        match lookup(name) {
            Some(v) if !name.is_empty() => {
                out.push_str(v);
                rest = tail;
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn variables(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let value = match v {
                        Value::Mapping(m) => m.get("value").and_then(text)?,
                        other => text(other)?,
                    };
                    Some((text(k)?, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn image_spec(v: &Value, vars: &[(String, String)]) -> Option<ImageSpec> {
    let (name, m) = match v {
        Value::Mapping(m) => (m.get("name").and_then(text)?, Some(m)),
        other => (text(other)?, None),
    };
    Some(ImageSpec {
        name: expand(&name, vars),
        entrypoint: m.and_then(|m| strings(m.get("entrypoint"))).map(|e| {
            // `[""]`: no entrypoint.
            e.into_iter().filter(|s| !s.is_empty()).collect()
        }),
        pull_policy: m
            .and_then(|m| strings(m.get("pull_policy")))
            .unwrap_or_default(),
    })
}

/// GitLab's default aliases for a service image: the path without tag, digest or registry
/// port, with `/` as `__`, and as `-` when that differs.
pub fn default_aliases(image: &str) -> Vec<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let without_tag = match without_digest[last_slash..].find(':') {
        Some(c) => &without_digest[..last_slash + c],
        None => without_digest,
    };
    let mut parts: Vec<&str> = without_tag.split('/').collect();
    let host_port;
    if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':')) {
        host_port = parts[0].split(':').next().unwrap_or(parts[0]).to_string();
        parts[0] = &host_port;
        return alias_pair(&parts.join("/"));
    }
    alias_pair(&parts.join("/"))
}

fn alias_pair(service: &str) -> Vec<String> {
    let a = service.replace('/', "__");
    let b = service.replace('/', "-");
    if a == b { vec![a] } else { vec![a, b] }
}

/// `1h 30m`, `90 minutes`, `2 hours`, `3600` (seconds): GitLab's human durations.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number: Option<u64> = None;
    let mut seen = false;
    let lower = s.to_ascii_lowercase();
    let mut chars = lower.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_digit() {
            let mut n = 0u64;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n * 10 + d as u64;
                chars.next();
            }
            if let Some(prev) = number.replace(n) {
                total += prev; // a bare number: seconds
            }
        } else if c.is_ascii_alphabetic() {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_alphabetic()) {
                word.push(c);
                chars.next();
            }
            let unit = match word.as_str() {
                "s" | "sec" | "secs" | "second" | "seconds" => 1,
                "m" | "min" | "mins" | "minute" | "minutes" => 60,
                "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
                "d" | "day" | "days" => 86400,
                "w" | "week" | "weeks" => 7 * 86400,
                "and" => continue,
                _ => return None,
            };
            total += number.take()? * unit;
            seen = true;
        } else {
            chars.next();
        }
    }
    if let Some(n) = number {
        total += n;
        seen = true;
    }
    seen.then(|| Duration::from_secs(total))
}

impl Pipeline {
    /// Reads and parses the pipeline file `file`.
    pub fn load(file: &std::path::Path) -> Result<Pipeline, PipelineError> {
        let text = std::fs::read_to_string(file).map_err(|source| PipelineError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Pipeline::parse(&text, &file.display().to_string())
    }

    pub fn parse(yaml: &str, file: &str) -> Result<Pipeline, PipelineError> {
        let err = |reason: String| PipelineError::Parse {
            file: file.into(),
            reason,
        };
        let mut doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| err(e.to_string()))?;
        doc.apply_merge()
            .map_err(|e| err(format!("merge keys: {e}")))?;
        let Value::Mapping(raw) = doc else {
            return Err(err("the top level is not a mapping".into()));
        };
        let top = match resolve_references(&Value::Mapping(raw.clone()), &raw, 0) {
            Ok(Value::Mapping(m)) => m,
            Ok(_) => unreachable!("a mapping resolves to a mapping"),
            Err(e) => return Err(err(e)),
        };
        Ok(Pipeline {
            file: file.into(),
            top,
        })
    }

    /// Visible jobs (hidden `.templates` are not jobs).
    pub fn jobs(&self) -> Vec<String> {
        self.top
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?, v)))
            .filter(|(k, v)| !GLOBAL_KEYWORDS.contains(k) && !k.starts_with('.') && v.is_mapping())
            .map(|(k, _)| k.to_string())
            .collect()
    }

    fn job_error(&self, job: &str, reason: String) -> PipelineError {
        PipelineError::Job {
            file: self.file.clone(),
            job: job.into(),
            reason,
        }
    }

    /// The job's own mapping with its `extends` chain merged in.
    fn extended(&self, name: &str, chain: &mut Vec<String>) -> Result<Mapping, PipelineError> {
        if chain.iter().any(|c| c == name) {
            return Err(self.job_error(
                &chain[0],
                format!("extends loops: {} -> {name}", chain.join(" -> ")),
            ));
        }
        if chain.len() > 11 {
            return Err(self.job_error(&chain[0], "extends nested more than 11 levels".into()));
        }
        let own = self
            .top
            .get(name)
            .and_then(Value::as_mapping)
            .ok_or_else(|| match chain.first() {
                Some(first) => {
                    self.job_error(first, format!("extends {name:?}, which does not exist"))
                }
                None => PipelineError::NoJob {
                    file: self.file.clone(),
                    job: name.into(),
                    known: self.jobs().join(", "),
                },
            })?;
        chain.push(name.into());
        let mut base = Mapping::new();
        for parent in strings(own.get("extends")).unwrap_or_default() {
            base = deep_merge(&base, &self.extended(&parent, chain)?);
        }
        chain.pop();
        let mut own = own.clone();
        own.remove("extends");
        Ok(deep_merge(&base, &own))
    }

    /// Resolves job `name`; `cli_vars` (`--var K=V`) take precedence over the file's.
    pub fn job(&self, name: &str, cli_vars: &[(String, String)]) -> Result<Job, PipelineError> {
        if name.starts_with('.') || GLOBAL_KEYWORDS.contains(&name) {
            return Err(PipelineError::NoJob {
                file: self.file.clone(),
                job: name.into(),
                known: self.jobs().join(", "),
            });
        }
        let mut m = self.extended(name, &mut vec![])?;
        let mut warnings = vec![];
        // inherit: default / variables (true, false, or a list of names to keep).
        let inherit = m.get("inherit").and_then(Value::as_mapping).cloned();
        let inherits = |what: &str, key: &str| match inherit.as_ref().and_then(|i| i.get(what)) {
            None | Some(Value::Bool(true)) => true,
            Some(Value::Bool(false)) => false,
            Some(Value::Sequence(keep)) => keep.iter().any(|k| k.as_str() == Some(key)),
            Some(_) => true,
        };
        let default = self.top.get("default").and_then(Value::as_mapping);
        for key in DEFAULTABLE {
            if m.contains_key(*key) || !inherits("default", key) {
                continue;
            }
            // `default:` first, then the old top-level keywords.
            let from_default = default.and_then(|d| d.get(*key));
            let from_top = ["image", "services", "before_script", "after_script"]
                .contains(key)
                .then(|| self.top.get(*key))
                .flatten();
            if let Some(v) = from_default.or(from_top) {
                m.insert(Value::from(*key), v.clone());
            }
        }
        if let Some(d) = default {
            let ignored: Vec<&str> = d
                .keys()
                .filter_map(Value::as_str)
                .filter(|k| !DEFAULTABLE.contains(k))
                .collect();
            if !ignored.is_empty() {
                warnings.push(format!(
                    "default: ignored (not supported): {}",
                    ignored.join(", ")
                ));
            }
        }
        if self.top.contains_key("include") {
            warnings.push("include: not supported; included files are not read".into());
        }
        let unsupported: Vec<&str> = m
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| !SUPPORTED.contains(k))
            .collect();
        if !unsupported.is_empty() {
            warnings.push(format!(
                "job {name}: ignored (not supported): {}",
                unsupported.join(", ")
            ));
        }
        // Options of image and services skiff does not act on (docker: platform/user,
        // kubernetes:, ports) are named too.
        let unknown_keys = |v: Option<&Value>, allowed: &[&str]| -> Vec<String> {
            v.and_then(Value::as_mapping)
                .map(|m| {
                    m.keys()
                        .filter_map(Value::as_str)
                        .filter(|k| !allowed.contains(k))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let image_keys = unknown_keys(m.get("image"), &["name", "entrypoint", "pull_policy"]);
        if !image_keys.is_empty() {
            warnings.push(format!(
                "job {name}: image: ignored (not supported): {}",
                image_keys.join(", ")
            ));
        }
        for (i, s) in m
            .get("services")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let keys = unknown_keys(
                Some(s),
                &[
                    "name",
                    "alias",
                    "entrypoint",
                    "command",
                    "variables",
                    "pull_policy",
                ],
            );
            if !keys.is_empty() {
                warnings.push(format!(
                    "job {name}: services[{i}]: ignored (not supported): {}",
                    keys.join(", ")
                ));
            }
        }
        if m.get("script").is_none() {
            return Err(self.job_error(name, "has no script".into()));
        }
        // Variables: global (unless inherit says no), then the job's, then --var.
        let mut vars: Vec<(String, String)> = variables(self.top.get("variables"))
            .into_iter()
            .filter(|(k, _)| inherits("variables", k))
            .collect();
        vars.extend(variables(m.get("variables")));
        vars.extend(cli_vars.iter().cloned());
        let mut seen = BTreeSet::new();
        let mut ordered: Vec<(String, String)> = vars
            .iter()
            .rev()
            .filter(|(k, _)| seen.insert(k.clone()))
            .cloned()
            .collect();
        ordered.reverse();
        // Values may use other variables (a few passes resolve chains).
        for _ in 0..5 {
            let snapshot = ordered.clone();
            for (_, v) in ordered.iter_mut() {
                *v = expand(v, &snapshot);
            }
        }
        let image = m.get("image").and_then(|v| image_spec(v, &ordered));
        let mut taken: BTreeSet<String> = BTreeSet::new();
        let mut services = vec![];
        for (i, s) in m
            .get("services")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(image) = image_spec(s, &ordered) else {
                return Err(self.job_error(name, format!("services[{i}] has no name")));
            };
            let sm = s.as_mapping();
            let own_vars = variables(sm.and_then(|m| m.get("variables")));
            let mut aliases = default_aliases(&image.name);
            let user = sm
                .and_then(|m| m.get("alias"))
                .and_then(text)
                .map(|a| expand(&a, &ordered))
                .unwrap_or_default();
            aliases.extend(
                user.replace(',', " ")
                    .split_whitespace()
                    .map(str::to_string),
            );
            let mut kept = vec![];
            for a in aliases {
                if taken.insert(a.clone()) {
                    kept.push(a);
                } else {
                    warnings.push(format!(
                        "Skipping alias {a:?} for service {:?} (services[{i}]): alias is already in use by another service.",
                        image.name
                    ));
                }
            }
            services.push(ServiceSpec {
                image,
                aliases: kept,
                command: sm.and_then(|m| strings(m.get("command"))),
                variables: own_vars,
            });
        }
        let timeout = match m.get("timeout").and_then(text) {
            None => None,
            Some(t) => Some(parse_duration(&t).ok_or_else(|| {
                self.job_error(
                    name,
                    format!("timeout {t:?}: expected a duration like 1h 30m"),
                )
            })?),
        };
        Ok(Job {
            name: name.into(),
            stage: m
                .get("stage")
                .and_then(text)
                .unwrap_or_else(|| "test".into()),
            image,
            services,
            variables: ordered,
            before_script: script(m.get("before_script")),
            script: script(m.get("script")),
            after_script: script(m.get("after_script")),
            timeout,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
variables:
  PG_VERSION: "15"
  GREETING: hello
  FROM_GLOBAL: g
  CHAIN: "${GREETING} world"
default:
  image: busybox:1
  before_script: [echo default-before]
  retry: 2
.db: &db
  services:
    - name: postgres:${PG_VERSION}
      alias: db, database
      variables: { POSTGRES_PASSWORD: secret }
    - tutum/wordpress:latest
    - registry.example.com:4999/valkey/valkey@sha256:aaaa
.scripts:
  setup:
    - echo one
    - echo two
base:
  stage: build
  variables: { GREETING: hi, JOB_ONLY: j }
  script: [echo base]
  artifacts: { paths: [out] }
test:
  extends: [base]
  <<: *db
  image: { name: "alpine:$PG_VERSION", entrypoint: [""], docker: { platform: arm64 } }
  script:
    - !reference [.scripts, setup]
    - echo three
  after_script: echo after
  timeout: 1h 30m
no-defaults:
  inherit: { default: false, variables: [GREETING] }
  script: echo x
loop-a: { extends: loop-b, script: x }
loop-b: { extends: loop-a, script: x }
missing-parent: { extends: .nope, script: x }
"#;

    fn vars(job: &Job) -> Vec<(&str, &str)> {
        job.variables
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn a_job_resolved() {
        let p = Pipeline::parse(YAML, ".gitlab-ci.yml").unwrap();
        let job = p
            .job(
                "test",
                &[
                    ("FROM_CLI".into(), "c".into()),
                    ("GREETING".into(), "cli".into()),
                ],
            )
            .unwrap();
        assert_eq!(job.stage, "build", "extends brings the parent's keys");
        assert_eq!(
            job.image,
            Some(ImageSpec {
                name: "alpine:15".into(),
                entrypoint: Some(vec![]),
                pull_policy: vec![]
            })
        );
        assert_eq!(job.before_script, ["echo default-before"]);
        assert_eq!(
            job.script,
            ["echo one", "echo two", "echo three"],
            "!reference flattened"
        );
        assert_eq!(job.after_script, ["echo after"]);
        assert_eq!(job.timeout, Some(Duration::from_secs(5400)));
        assert_eq!(
            vars(&job),
            [
                ("PG_VERSION", "15"),
                ("FROM_GLOBAL", "g"),
                ("CHAIN", "cli world"),
                ("JOB_ONLY", "j"),
                ("FROM_CLI", "c"),
                ("GREETING", "cli"),
            ],
            "global < job < --var, values expanded"
        );
        let s = &job.services;
        assert_eq!(s[0].image.name, "postgres:15");
        assert_eq!(s[0].aliases, ["postgres", "db", "database"]);
        assert_eq!(
            s[0].variables,
            [("POSTGRES_PASSWORD".to_string(), "secret".to_string())]
        );
        assert_eq!(s[1].aliases, ["tutum__wordpress", "tutum-wordpress"]);
        assert_eq!(
            s[2].aliases,
            [
                "registry.example.com__valkey__valkey",
                "registry.example.com-valkey-valkey"
            ]
        );
        assert!(
            job.warnings.iter().any(|w| w.contains("artifacts")),
            "{:?}",
            job.warnings
        );
        assert!(
            job.warnings
                .iter()
                .any(|w| w.contains("default: ignored") && w.contains("retry"))
        );
    }

    #[test]
    fn inherit_extends_errors_table() {
        let p = Pipeline::parse(YAML, "f").unwrap();
        let j = p.job("no-defaults", &[]).unwrap();
        assert_eq!(j.image, None);
        assert!(j.before_script.is_empty());
        assert_eq!(vars(&j), [("GREETING", "hello")]);
        let cases: &[(&str, &str)] = &[
            ("loop-a", "extends loops"),
            ("missing-parent", "does not exist"),
            ("nope", "no job"),
            (".db", "no job"),
        ];
        for (job, want) in cases {
            let e = p.job(job, &[]).unwrap_err().to_string();
            assert!(e.contains(want), "{job}: {e}");
        }
        assert!(p.jobs().contains(&"test".to_string()) && !p.jobs().contains(&".db".to_string()));
        assert!(Pipeline::parse("x: !reference [nope]", "f").is_err());
        assert!(Pipeline::parse("- a list", "f").is_err());
    }

    #[test]
    fn aliases_and_durations() {
        let aliases: &[(&str, &[&str])] = &[
            ("mysql:5.7", &["mysql"]),
            ("tutum/wordpress", &["tutum__wordpress", "tutum-wordpress"]),
            (
                "localhost:5000/a/b:1",
                &["localhost__a__b", "localhost-a-b"],
            ),
            ("redis@sha256:abc", &["redis"]),
        ];
        for (image, want) in aliases {
            assert_eq!(default_aliases(image), *want, "{image}");
        }
        let durations: &[(&str, Option<u64>)] = &[
            ("1h 30m", Some(5400)),
            ("90 minutes", Some(5400)),
            ("2 hours and 5 minutes", Some(7500)),
            ("3600", Some(3600)),
            ("10s", Some(10)),
            ("soon", None),
            ("", None),
        ];
        for (text, want) in durations {
            assert_eq!(parse_duration(text).map(|d| d.as_secs()), *want, "{text}");
        }
    }
}
