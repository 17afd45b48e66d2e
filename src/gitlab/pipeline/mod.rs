//! One job of a `.gitlab-ci.yml`, resolved the way GitLab resolves it before a runner sees
//! it: YAML anchors and `<<` merge keys, `!reference` tags, `extends` (deep merge, hashes
//! merged, everything else replaced), `default:` and the old top-level defaults (unless
//! `inherit` says otherwise), variables (global, job, then `--var`; `$VAR` expanded), scripts
//! as flat lists, services with GitLab's default aliases, and `timeout`. Keywords skiff does
//! not act on are named in warnings, never silently misread.

#[cfg(test)]
mod corpus;
pub mod expression;
pub mod include;
mod inputs;
pub mod listing;
mod only;
mod parallel;
pub mod rules;

pub use parallel::Node;
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
    /// Names the including file and the entry itself.
    #[error("{0}")]
    Include(String),
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

/// Keywords that are not jobs at the top level.
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
    "parallel",
    "rules",
    "only",
    "except",
    "when",
    "allow_failure",
    "needs",
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
    /// In precedence order, later wins; values with other variables of the file expanded
    /// as GitLab does before a runner sees them (see [`Job::runner_variables`]).
    pub variables: Vec<(String, String)>,
    /// The variables declared `expand: false`: the runner takes their values as written.
    pub raw_variables: Vec<String>,
    /// File variables (of the project's): the job sees a path to a file holding the value.
    pub file_variables: Vec<String>,
    /// Variables whose values never show in the log.
    pub masked_variables: Vec<String>,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    pub timeout: Option<Duration>,
    pub warnings: Vec<String>,
    /// Which of a parallel job's jobs this is.
    pub node: Option<Node>,
    /// `on_success`, `on_failure`, `always`, `manual`, `delayed`, or `never`: not in the
    /// pipeline.
    pub when: String,
    pub allow_failure: bool,
    /// The jobs it waits for (`needs:`, by name).
    pub needs: Vec<String>,
    /// Why it is in the pipeline or not: the rule that matched, or `only:`/`except:`.
    pub reason: String,
    /// Image and service names that use a variable nothing defines (`image: $NOPE/x`):
    /// the runner would expand it to nothing.
    pub undefined_in_images: Vec<String>,
}

/// A CI/CD variable of the project's settings (GitLab's Settings > CI/CD > Variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectVariable {
    pub key: String,
    pub value: String,
    /// Shown as `[MASKED]` in the job log.
    pub masked: bool,
    /// A file variable: the job sees a path to a file holding the value.
    pub file: bool,
    /// Not expanded (`expand: false`).
    pub raw: bool,
}

/// What a pipeline is resolved against besides its file.
pub struct Environment<'a> {
    /// The predefined variables known before a job runs, lowest precedence first.
    pub predefined: &'a [(String, String)],
    /// The project's own CI/CD variables (its settings): above the file's, below `--var`.
    pub project: &'a [ProjectVariable],
    /// See [`rules::Facts::changed`].
    pub changed: &'a dyn Fn(Option<&str>) -> Option<Vec<String>>,
    /// See [`rules::Facts::files`].
    pub files: &'a dyn Fn() -> Vec<String>,
}

fn nothing_to_compare(_: Option<&str>) -> Option<Vec<String>> {
    None
}

fn no_files() -> Vec<String> {
    vec![]
}

impl Environment<'_> {
    /// Runs `f` with what rules see: the predefined variables, then `vars` (later wins), and
    /// this environment's files and changes.
    fn with_facts<R>(&self, vars: &[(String, String)], f: impl FnOnce(&rules::Facts) -> R) -> R {
        let visible: Vec<(String, String)> = self.predefined.iter().chain(vars).cloned().collect();
        let lookup = |n: &str| {
            visible
                .iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        f(&rules::Facts {
            variable: &lookup,
            changed: self.changed,
            files: self.files,
        })
    }
}

/// Variables given as pairs (`--var`, a matrix, rules), as the file's kind: expanded.
fn given(list: &[(String, String)]) -> Vec<YamlVariable> {
    list.iter()
        .map(|(key, value)| YamlVariable {
            key: key.clone(),
            value: value.clone(),
            raw: false,
        })
        .collect()
}

impl Environment<'static> {
    /// No predefined variables, no project: `changes` holds, `exists` does not.
    pub const NONE: Environment<'static> = Environment {
        predefined: &[],
        project: &[],
        changed: &nothing_to_compare,
        files: &no_files,
    };
}

pub struct Pipeline {
    file: String,
    top: Mapping,
    /// The jobs, as GitLab makes them: (name, the job in the file, its node when parallel).
    made: Vec<(String, String, Option<Node>)>,
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

/// One entry of a `variables:` mapping: `KEY: value`, or
/// `KEY: {value, description, expand, options}`.
#[derive(Clone)]
struct YamlVariable {
    key: String,
    value: String,
    /// `expand: false`.
    raw: bool,
}

fn variables(v: Option<&Value>) -> Vec<YamlVariable> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let (value, raw) = match v {
                        Value::Mapping(m) => (
                            m.get("value").and_then(text).unwrap_or_default(),
                            m.get("expand") == Some(&Value::Bool(false)),
                        ),
                        other => (text(other)?, false),
                    };
                    Some(YamlVariable {
                        key: text(k)?,
                        value,
                        raw,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The names a value refers to as GitLab's own expansion sees them (`$NAME`, `${NAME}`),
/// with `$$` as an escape: (start, end, name) of each reference.
fn references(value: &str) -> Vec<(usize, usize, &str)> {
    let b = value.as_bytes();
    let name_len = |from: usize| {
        b[from..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count()
    };
    let (mut out, mut i) = (vec![], 0);
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => match value[i + 2..].find('}') {
                Some(n) if n > 0 && name_len(i + 2) == n => {
                    out.push((i, i + 3 + n, &value[i + 2..i + 2 + n]));
                    i += 3 + n;
                }
                _ => i += 2,
            },
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let n = name_len(i + 1);
                out.push((i, i + 1 + n, &value[i + 1..i + 1 + n]));
                i += 1 + n;
            }
            _ => i += 1,
        }
    }
    out
}

/// Variables in variables, as GitLab expands them before a runner sees them: a reference to
/// another defined variable (not `expand: false`) is replaced by its expanded value, in
/// dependency order; undefined names, references to `expand: false` variables and to
/// `kept_refs` (file variables, whose paths only the runner knows) and `$$` stay for the
/// runner. A circle is an error naming it.
fn expand_nested(
    vars: &[(String, String)],
    raw: &BTreeSet<String>,
    kept_refs: &BTreeSet<String>,
) -> Result<Vec<(String, String)>, String> {
    let defined: std::collections::HashMap<&str, &str> =
        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    fn resolve(
        key: &str,
        defined: &std::collections::HashMap<&str, &str>,
        raw: &BTreeSet<String>,
        kept_refs: &BTreeSet<String>,
        done: &mut std::collections::HashMap<String, String>,
        chain: &mut Vec<String>,
    ) -> Result<String, String> {
        if let Some(v) = done.get(key) {
            return Ok(v.clone());
        }
        if chain.iter().any(|c| c == key) {
            chain.push(key.into());
            return Err(format!(
                "circular variable reference: {}",
                chain.join(" -> ")
            ));
        }
        let value = defined[key];
        if raw.contains(key) {
            return Ok(value.into());
        }
        chain.push(key.into());
        let mut out = String::new();
        let mut copied = 0;
        for (start, end, name) in references(value) {
            if !defined.contains_key(name) || raw.contains(name) || kept_refs.contains(name) {
                continue;
            }
            out.push_str(&value[copied..start]);
            out.push_str(&resolve(name, defined, raw, kept_refs, done, chain)?);
            copied = end;
        }
        out.push_str(&value[copied..]);
        chain.pop();
        done.insert(key.into(), out.clone());
        Ok(out)
    }
    let mut done = std::collections::HashMap::new();
    vars.iter()
        .map(|(k, _)| {
            Ok((
                k.clone(),
                resolve(k, &defined, raw, kept_refs, &mut done, &mut vec![])?,
            ))
        })
        .collect()
}

/// The job names of a `needs:` list (`- job`, `- job: name`).
fn needs_of(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_sequence)
        .map(|list| {
            list.iter()
                .filter_map(|n| match n {
                    Value::Mapping(m) => m.get("job").and_then(text),
                    other => text(other),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Variables, one per name with nested references expanded, and the raw ones' names.
type Settled = (Vec<(String, String)>, BTreeSet<String>);

/// Variables in precedence order (later wins) as GitLab has them: one per name, nested
/// references expanded; and the names declared `expand: false`.
/// References to `kept` variables stay for the runner.
fn settle(vars: Vec<YamlVariable>, kept: &BTreeSet<String>) -> Result<Settled, String> {
    let mut seen = BTreeSet::new();
    let mut winners: Vec<YamlVariable> = vars
        .into_iter()
        .rev()
        .filter(|v| seen.insert(v.key.clone()))
        .collect();
    winners.reverse();
    let raw: BTreeSet<String> = winners
        .iter()
        .filter(|v| v.raw)
        .map(|v| v.key.clone())
        .collect();
    let declared: Vec<(String, String)> = winners.into_iter().map(|v| (v.key, v.value)).collect();
    Ok((expand_nested(&declared, &raw, kept)?, raw))
}

/// Whether and how job `m` runs: by its `rules:`, else by `only:`/`except:` (by default
/// `only: [branches, tags]`), then its own `when:`.
///
/// With `workflow:rules`, a job without `only:` has no default (GitLab drops the default
/// then): it runs in every pipeline the workflow makes, merge request pipelines included.
fn decide(
    m: &Mapping,
    facts: &rules::Facts,
    workflow_rules: bool,
) -> Result<rules::Decision, String> {
    let when = rules::when_of(m.get("when"), "on_success")?;
    if let Some(r) = m.get("rules") {
        if m.contains_key("only") || m.contains_key("except") {
            return Err("rules: cannot be used with only: or except:".into());
        }
        return rules::decide(r, &when, facts);
    }
    // Without workflow:rules a job lacking `only:` has GitLab's default.
    let default_only = Value::Sequence(vec!["branches".into(), "tags".into()]);
    let everything = Value::Mapping(Mapping::new());
    let only = match (m.get("only"), workflow_rules) {
        (Some(only), _) => only,
        (None, false) => &default_only,
        (None, true) => &everything,
    };
    let default = match (m.contains_key("only"), workflow_rules) {
        (true, _) => "",
        (false, false) => " (the default)",
        (false, true) => " (none: workflow:rules)",
    };
    let (included, reason) = match only::matches(only, facts).map_err(|e| format!("only: {e}"))? {
        false => (
            false,
            format!("only: {} does not match", only::describe(only)),
        ),
        true => match m.get("except") {
            Some(except) if only::matches(except, facts).map_err(|e| format!("except: {e}"))? => {
                (false, format!("except: {} matches", only::describe(except)))
            }
            _ => (true, format!("only: {}{default}", only::describe(only))),
        },
    };
    Ok(rules::Decision {
        when: if included { when } else { "never".into() },
        allow_failure: None,
        start_in: m
            .get("start_in")
            .and_then(Value::as_str)
            .map(str::to_string),
        variables: vec![],
        needs: None,
        reason,
    })
}

/// The deepest nesting of lists in a script (`script: [a]` is 1), or an error for anything
/// that is not a string or a list.
fn script_depth(v: &Value) -> Option<usize> {
    match v {
        Value::Sequence(s) => s
            .iter()
            .map(script_depth)
            .try_fold(0, |deepest, d| Some(deepest.max(d?)))
            .map(|d| d + 1),
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Some(0),
        _ => None,
    }
}

fn image_spec(v: &Value, vars: &[(String, String)]) -> Option<ImageSpec> {
    let (name, m) = match v {
        Value::Mapping(m) => (m.get("name").and_then(text)?, Some(m)),
        other => (text(other)?, None),
    };
    Some(ImageSpec {
        name: super::payload::expand_value(&name, vars),
        entrypoint: m.and_then(|m| strings(m.get("entrypoint"))).map(|e| {
            // `[""]`: no entrypoint.
            e.into_iter().filter(|s| !s.is_empty()).collect()
        }),
        pull_policy: m
            .and_then(|m| strings(m.get("pull_policy")))
            .unwrap_or_default(),
    })
}

/// Variables as the runner finally has them (common/spec/variables.go `Expand`): each one
/// not `expand: false` expanded once against all of them, `$$` as `$`, undefined names empty.
fn runner_expanded(vars: &[(String, String)], raw: &BTreeSet<String>) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| match raw.contains(k) {
            true => (k.clone(), v.clone()),
            false => (k.clone(), super::payload::expand_value(v, vars)),
        })
        .collect()
}

impl Job {
    /// The job's variables after `predefined` (the runner's own, lowest first), expanded as
    /// the runner expands them: what its scripts and services see.
    ///
    /// A reference to a file variable gives its file's path, in `RUNNER_TEMP_PROJECT_DIR`
    /// as the runner writes it; the file variable's own value stays its content.
    pub fn runner_variables(&self, predefined: &[(String, String)]) -> Vec<(String, String)> {
        let all: Vec<(String, String)> =
            predefined.iter().chain(&self.variables).cloned().collect();
        let tmp = all
            .iter()
            .rev()
            .find(|(k, _)| k == "RUNNER_TEMP_PROJECT_DIR")
            .map_or(String::new(), |(_, v)| v.clone());
        let source: Vec<(String, String)> = all
            .iter()
            .map(|(k, v)| match self.file_variables.contains(k) {
                true => (k.clone(), format!("{tmp}/{k}")),
                false => (k.clone(), v.clone()),
            })
            .collect();
        all.iter()
            .map(|(k, v)| match self.raw_variables.contains(k) {
                true => (k.clone(), v.clone()),
                false => (k.clone(), super::payload::expand_value(v, &source)),
            })
            .collect()
    }
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
        Pipeline::load_with(file, &include::NoSources)
    }

    /// Reads and parses the pipeline file `file`, with `include:` read from `sources`.
    pub fn load_with(
        file: &std::path::Path,
        sources: &dyn include::Sources,
    ) -> Result<Pipeline, PipelineError> {
        let text = std::fs::read_to_string(file).map_err(|source| PipelineError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Pipeline::parse_with(&text, &file.display().to_string(), sources)
    }

    /// Parses a pipeline in GitLab's order: the YAML (anchors, `<<`, repeated keys), then
    /// `extends` for every job and template, then `!reference` against the extended jobs.
    /// An invalid job makes the whole file invalid, as in GitLab.
    pub fn parse(yaml: &str, file: &str) -> Result<Pipeline, PipelineError> {
        Pipeline::parse_with(yaml, file, &include::NoSources)
    }

    /// As [`Pipeline::parse`], with `include:` read from `sources` (merged first).
    pub fn parse_with(
        yaml: &str,
        file: &str,
        sources: &dyn include::Sources,
    ) -> Result<Pipeline, PipelineError> {
        let read = super::yaml::read(yaml, file).map_err(|e| PipelineError::Parse {
            file: e.file,
            reason: e.reason,
        })?;
        // A main file with a `spec:` header takes its inputs' defaults (no pipeline inputs
        // are given locally).
        let variable = |n: &str| sources.variable(n);
        let config =
            inputs::apply(read.config, read.spec.as_ref(), None, &variable).map_err(|reason| {
                PipelineError::Parse {
                    file: file.into(),
                    reason,
                }
            })?;
        let config =
            include::merge(config, file, sources, &mut 0, 0).map_err(PipelineError::Include)?;
        let raw = Pipeline {
            file: file.into(),
            top: config,
            made: vec![],
        };
        let mut extended = Mapping::new();
        for (k, v) in &raw.top {
            let value = match (k.as_str(), v) {
                (Some(name), Value::Mapping(_)) if !GLOBAL_KEYWORDS.contains(&name) => {
                    Value::Mapping(raw.extended(name, &mut vec![])?)
                }
                _ => v.clone(),
            };
            extended.insert(k.clone(), value);
        }
        let top = match resolve_references(&Value::Mapping(extended.clone()), &extended, 0) {
            Ok(Value::Mapping(m)) => m,
            Ok(_) => unreachable!("a mapping resolves to a mapping"),
            Err(e) => {
                return Err(PipelineError::Parse {
                    file: file.into(),
                    reason: e,
                });
            }
        };
        let mut pipeline = Pipeline {
            file: file.into(),
            top,
            made: vec![],
        };
        for (name, job) in pipeline
            .top
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?, v.as_mapping()?)))
            .filter(|(k, _)| !GLOBAL_KEYWORDS.contains(k) && !k.starts_with('.'))
        {
            let made = parallel::expand(name, job.get("parallel"))
                .map_err(|e| pipeline.job_error(name, e))?;
            pipeline.made.extend(
                made.into_iter()
                    .map(|(made, node)| (made, name.to_string(), node)),
            );
        }
        Ok(pipeline)
    }

    /// The jobs, as GitLab makes them (hidden `.templates` are not jobs; a parallel job is
    /// one per node).
    pub fn jobs(&self) -> Vec<String> {
        self.made.iter().map(|(name, _, _)| name.clone()).collect()
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
        self.job_with(name, cli_vars, &Environment::NONE)
    }

    /// Every job, resolved in `env`: in the pipeline or not, and why.
    pub fn resolve_all(
        &self,
        cli_vars: &[(String, String)],
        env: &Environment,
    ) -> Result<Vec<Job>, PipelineError> {
        self.made
            .iter()
            .map(|(name, _, _)| self.job_with(name, cli_vars, env))
            .collect()
    }

    /// What `skiff pipeline --list` shows.
    pub fn listing(
        &self,
        cli_vars: &[(String, String)],
        env: &Environment,
    ) -> Result<listing::Listing, PipelineError> {
        let workflow = self.workflow(cli_vars, env)?;
        let jobs = self.resolve_all(cli_vars, env)?;
        let mut visible: Vec<(String, String)> = env.predefined.to_vec();
        visible.extend(
            variables(self.top.get("variables"))
                .into_iter()
                .map(|v| (v.key, v.value)),
        );
        visible.extend(workflow.variables.iter().cloned());
        visible.extend(cli_vars.iter().cloned());
        Ok(listing::Listing::new(
            self.name(&visible),
            &workflow,
            &self.stages(),
            &jobs,
        ))
    }

    /// The configuration as GitLab merges it, after anchors, `extends` and `!reference`,
    /// with each parallel job made into its jobs (the matrix's values in their `variables`):
    /// `skiff pipeline --preview`.
    pub fn merged(&self) -> Mapping {
        let mut out = Mapping::new();
        for (k, v) in &self.top {
            let made: Vec<_> = self
                .made
                .iter()
                .filter(|(_, base, _)| k.as_str() == Some(base.as_str()))
                .collect();
            if made.is_empty() {
                out.insert(k.clone(), v.clone());
                continue;
            }
            for (name, _, node) in made {
                let mut job = v.as_mapping().cloned().unwrap_or_default();
                if let Some(node) = node {
                    job.remove("parallel");
                    if !node.matrix.is_empty() {
                        let mut vars = job
                            .get("variables")
                            .and_then(Value::as_mapping)
                            .cloned()
                            .unwrap_or_default();
                        for (key, value) in &node.matrix {
                            vars.insert(Value::from(key.as_str()), Value::from(value.as_str()));
                        }
                        job.insert("variables".into(), Value::Mapping(vars));
                    }
                }
                out.insert(Value::from(name.as_str()), Value::Mapping(job));
            }
        }
        out
    }

    /// `workflow:rules`: whether GitLab makes this pipeline at all (`always` or `never`),
    /// and the variables it adds; seen with the global variables and `cli_vars`.
    pub fn workflow(
        &self,
        cli_vars: &[(String, String)],
        env: &Environment,
    ) -> Result<rules::Decision, PipelineError> {
        let workflow = self.top.get("workflow").and_then(Value::as_mapping);
        let Some(r) = workflow.and_then(|w| w.get("rules")) else {
            return Ok(rules::Decision {
                when: "always".into(),
                allow_failure: None,
                start_in: None,
                variables: vec![],
                needs: None,
                reason: "no workflow:rules".into(),
            });
        };
        let err = |reason: String| PipelineError::Parse {
            file: self.file.clone(),
            reason: format!("workflow: {reason}"),
        };
        let mut vars = variables(self.top.get("variables"));
        vars.extend(given(cli_vars));
        let (settled, _) = settle(vars, &BTreeSet::new()).map_err(err)?;
        let d = env
            .with_facts(&settled, |facts| rules::decide(r, "always", facts))
            .map_err(err)?;
        // Only `always` and `never` mean anything for a pipeline.
        match d.when.as_str() {
            "always" | "never" => Ok(d),
            other => Err(err(format!("when: {other}: expected always or never"))),
        }
    }

    /// `workflow:name`, with the pipeline's variables expanded the runner's way.
    pub fn name(&self, variables: &[(String, String)]) -> Option<String> {
        let name = self.top.get("workflow")?.get("name").and_then(text)?;
        Some(super::payload::expand_value(&name, variables))
    }

    /// The stages: `stages:` (else build, test, deploy) between `.pre` and `.post`.
    pub fn stages(&self) -> Vec<String> {
        let listed = strings(self.top.get("stages"))
            .unwrap_or_else(|| ["build", "test", "deploy"].map(String::from).to_vec());
        std::iter::once(".pre".to_string())
            .chain(listed.into_iter().filter(|s| s != ".pre" && s != ".post"))
            .chain(std::iter::once(".post".to_string()))
            .collect()
    }

    /// As [`Pipeline::job`], in an [`Environment`]: the predefined variables (image and
    /// service names and rules may use them) and the project's files and changes.
    pub fn job_with(
        &self,
        name: &str,
        cli_vars: &[(String, String)],
        env: &Environment,
    ) -> Result<Job, PipelineError> {
        let predefined = env.predefined;
        if name.starts_with('.') || GLOBAL_KEYWORDS.contains(&name) {
            return Err(PipelineError::NoJob {
                file: self.file.clone(),
                job: name.into(),
                known: self.jobs().join(", "),
            });
        }
        let (base, node) = self
            .made
            .iter()
            .find(|(made, _, _)| made == name)
            .map(|(_, base, node)| (base.as_str(), node.clone()))
            .ok_or_else(|| PipelineError::NoJob {
                file: self.file.clone(),
                job: name.into(),
                known: self.jobs().join(", "),
            })?;
        let mut m = self
            .top
            .get(base)
            .and_then(Value::as_mapping)
            .cloned()
            .ok_or_else(|| PipelineError::NoJob {
                file: self.file.clone(),
                job: name.into(),
                known: self.jobs().join(", "),
            })?;
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
        // What GitLab refuses in a job's scripts.
        match m.get("script") {
            None => return Err(self.job_error(name, "has no script".into())),
            Some(Value::Sequence(s)) if s.is_empty() => {
                return Err(self.job_error(name, "script can't be blank".into()));
            }
            _ => {}
        }
        for key in ["before_script", "script", "after_script"] {
            if m.get(key)
                .is_some_and(|v| script_depth(v).is_none_or(|d| d > 10))
            {
                return Err(self.job_error(
                    name,
                    format!(
                        "{key} config should be a string or a nested array of strings up to 10 levels deep"
                    ),
                ));
            }
        }
        let stage = m
            .get("stage")
            .and_then(text)
            .unwrap_or_else(|| "test".into());
        let stages = self.stages();
        if !stages.contains(&stage) {
            return Err(self.job_error(
                name,
                format!(
                    "chosen stage {stage:?} does not exist; available stages are {}",
                    stages.join(", ")
                ),
            ));
        }
        // Variables: global (unless inherit says no), then the job's, then --var.
        let mut vars: Vec<YamlVariable> = variables(self.top.get("variables"))
            .into_iter()
            .filter(|v| inherits("variables", &v.key))
            .collect();
        // workflow:rules decides for the whole pipeline; its variables are above the global
        // ones.
        let workflow = self.workflow(cli_vars, env)?;
        vars.extend(given(&workflow.variables));
        vars.extend(variables(m.get("variables")));
        // A matrix's values are the job's own variables, above those in `variables:`.
        if let Some(node) = &node {
            vars.extend(given(&node.matrix));
        }
        // Rules see the variables before their own; a rule's variables come above the job's
        // and below --var.
        let project: Vec<YamlVariable> = env
            .project
            .iter()
            .map(|v| YamlVariable {
                key: v.key.clone(),
                value: v.value.clone(),
                raw: v.raw,
            })
            .collect();
        // GitLab leaves references to file variables for the runner (their paths).
        let file_keys: BTreeSet<String> = env
            .project
            .iter()
            .filter(|v| v.file && !cli_vars.iter().any(|(k, _)| *k == v.key))
            .map(|v| v.key.clone())
            .collect();
        let before_rules = settle(
            vars.iter()
                .cloned()
                .chain(project.iter().cloned())
                .chain(given(cli_vars))
                .collect(),
            &file_keys,
        )
        .map_err(|e| self.job_error(name, e))?;
        let decision = match workflow.when.as_str() {
            "never" => rules::Decision {
                reason: format!("workflow: {}", workflow.reason),
                ..workflow.clone()
            },
            _ => {
                let workflow_rules = self
                    .top
                    .get("workflow")
                    .and_then(|w| w.get("rules"))
                    .is_some();
                env.with_facts(&before_rules.0, |facts| decide(&m, facts, workflow_rules))
                    .map_err(|e| self.job_error(name, e))?
            }
        };
        vars.extend(given(&decision.variables));
        vars.extend(project.iter().cloned());
        vars.extend(given(cli_vars));
        let (ordered, raw) = settle(vars, &file_keys).map_err(|e| self.job_error(name, e))?;
        // The project's file and masked variables, unless a --var replaces them.
        let project_kind = |kind: fn(&ProjectVariable) -> bool| -> Vec<String> {
            env.project
                .iter()
                .filter(|v| kind(v) && !cli_vars.iter().any(|(k, _)| *k == v.key))
                .map(|v| v.key.clone())
                .collect()
        };
        // Image and service names: as the runner expands them, against every variable
        // (an undefined one is empty).
        let all: Vec<(String, String)> = predefined.iter().chain(&ordered).cloned().collect();
        let naming = runner_expanded(&all, &raw);
        let image = m.get("image").and_then(|v| image_spec(v, &naming));
        let raw_names = m
            .get("image")
            .into_iter()
            .chain(
                m.get("services")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten(),
            )
            .filter_map(|v| match v {
                Value::Mapping(m) => m.get("name").and_then(text),
                other => text(other),
            });
        let undefined_in_images = raw_names
            .filter(|raw| {
                references(raw)
                    .iter()
                    .any(|(_, _, n)| !naming.iter().any(|(k, _)| k == n))
            })
            .collect();
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
            let Some(image) = image_spec(s, &naming) else {
                return Err(self.job_error(name, format!("services[{i}] has no name")));
            };
            let sm = s.as_mapping();
            let own_vars: Vec<(String, String)> = variables(sm.and_then(|m| m.get("variables")))
                .into_iter()
                .map(|v| (v.key, v.value))
                .collect();
            let mut aliases = default_aliases(&image.name);
            let user = sm
                .and_then(|m| m.get("alias"))
                .and_then(text)
                .map(|a| super::payload::expand_value(&a, &naming))
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
            stage,
            image,
            services,
            variables: ordered,
            raw_variables: raw.into_iter().collect(),
            file_variables: project_kind(|v| v.file),
            masked_variables: project_kind(|v| v.masked),
            before_script: script(m.get("before_script")),
            script: script(m.get("script")),
            after_script: script(m.get("after_script")),
            timeout,
            warnings,
            node,
            allow_failure: decision
                .allow_failure
                .unwrap_or(match m.get("allow_failure") {
                    Some(Value::Bool(b)) => *b,
                    // `{exit_codes: [...]}`: allowed to fail with those codes.
                    Some(Value::Mapping(_)) => true,
                    // A manual job outside rules may fail, as in GitLab.
                    _ => decision.when == "manual" && !m.contains_key("rules"),
                }),
            needs: needs_of(decision.needs.as_ref().or(m.get("needs"))),
            when: decision.when,
            reason: decision.reason,
            undefined_in_images,
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
        for (job, want) in [("nope", "no job"), (".db", "no job")] {
            let e = p.job(job, &[]).unwrap_err().to_string();
            assert!(e.contains(want), "{job}: {e}");
        }
        assert!(p.jobs().contains(&"test".to_string()) && !p.jobs().contains(&".db".to_string()));
        // What GitLab refuses: the whole file when a job's extends or a reference is wrong,
        // the job when its script or stage is.
        let deep = format!("{}x{}", "[".repeat(11), "]".repeat(11));
        let table: &[(&str, &str, &str)] = &[
            (
                "a: {extends: b, script: x}\nb: {extends: a, script: x}\n",
                "",
                "extends loops",
            ),
            ("a: {extends: .nope, script: x}\n", "", "does not exist"),
            ("x: !reference [nope]\n", "", "no such key"),
            ("- a list", "", "not a mapping"),
            ("a:\n  script: x\n  script: [y\n", "", "line 3 column"),
            ("j: {script: []}\n", "j", "script can't be blank"),
            (
                &format!("j: {{script: {deep}}}\n"),
                "j",
                "up to 10 levels deep",
            ),
            (
                "j: {before_script: [{a: b}], script: x}\n",
                "j",
                "before_script config should be",
            ),
            (
                "j: {stage: lint, script: x}\n",
                "j",
                "chosen stage \"lint\" does not exist; available stages are .pre, build, test, deploy, .post",
            ),
            (
                "stages: [a]\nj: {script: x}\n",
                "j",
                "chosen stage \"test\" does not exist",
            ),
            (
                "variables: {A: $B, B: \"${A}\"}\nj: {script: x}\n",
                "j",
                "circular variable reference: A -> B -> A",
            ),
        ];
        for (yaml, job, want) in table {
            let e = Pipeline::parse(yaml, "f")
                .and_then(|p| p.job(job, &[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{yaml:?}: {e}");
        }
        let deepest_allowed = format!("{}x{}", "[".repeat(10), "]".repeat(10));
        let p = Pipeline::parse(
            &format!("stages: [lint]\nj: {{stage: .post, script: {deepest_allowed}}}\n"),
            "f",
        )
        .unwrap();
        assert_eq!(p.job("j", &[]).unwrap().script, ["x"]);
        assert_eq!(p.stages(), [".pre", "lint", ".post"]);
    }

    #[test]
    fn parallel_jobs_by_their_gitlab_names() {
        let yaml = r#"
test: {parallel: 2, script: x}
deploy:
  variables: {STACK: from-job, KEEP: k}
  parallel: {matrix: [{PROVIDER: [aws, gcp], STACK: [app]}]}
  script: x
.hidden: {parallel: 3, script: x}
"#;
        let p = Pipeline::parse(yaml, "f").unwrap();
        assert_eq!(
            p.jobs(),
            [
                "test 1/2",
                "test 2/2",
                "deploy: [aws, app]",
                "deploy: [gcp, app]"
            ]
        );
        let j = p.job("test 2/2", &[]).unwrap();
        assert_eq!(j.name, "test 2/2");
        assert_eq!(j.node.as_ref().map(|n| (n.index, n.total)), Some((2, 2)));
        let j = p
            .job("deploy: [gcp, app]", &[("PROVIDER".into(), "cli".into())])
            .unwrap();
        assert_eq!(
            vars(&j),
            [("KEEP", "k"), ("STACK", "app"), ("PROVIDER", "cli")],
            "job < matrix < --var"
        );
        assert!(j.warnings.iter().all(|w| !w.contains("parallel")));
        let e = p.job("test", &[]).unwrap_err().to_string();
        assert!(e.contains("test 1/2, test 2/2"), "{e}");
        let e = Pipeline::parse("j: {parallel: 0, script: x}", "f")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("job j: parallel: 0"), "{e}");
    }

    #[test]
    fn rules_workflow_and_only_decide_each_job() {
        let yaml = r#"
variables: {DEPLOY_TO: staging}
workflow:
  rules:
    - if: $CI_COMMIT_TAG
      variables: {DEPLOY_TO: production}
    - if: $CI_COMMIT_BRANCH
build:
  stage: build
  script: x
test:
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
      when: manual
      allow_failure: true
      variables: {FROM_RULE: "for $DEPLOY_TO"}
  needs: [build]
  script: x
docs:
  only: {refs: [branches], changes: ["docs/**/*"]}
  script: x
old:
  except: [main]
  script: x
"#;
        let p = Pipeline::parse(yaml, "f").unwrap();
        let on = |branch: Option<&str>, tag: Option<&str>| -> Vec<(String, String)> {
            let mut v = vec![
                ("CI_DEFAULT_BRANCH".to_string(), "main".to_string()),
                ("CI_PIPELINE_SOURCE".to_string(), "push".to_string()),
            ];
            if let Some(b) = branch {
                v.push(("CI_COMMIT_BRANCH".into(), b.into()));
                v.push(("CI_COMMIT_REF_NAME".into(), b.into()));
            }
            if let Some(t) = tag {
                v.push(("CI_COMMIT_TAG".into(), t.into()));
                v.push(("CI_COMMIT_REF_NAME".into(), t.into()));
            }
            v
        };
        let changed = |_: Option<&str>| Some(vec!["src/lib.rs".to_string()]);
        let main = on(Some("main"), None);
        let env = Environment {
            predefined: &main,
            changed: &changed,
            ..Environment::NONE
        };
        let test = p.job_with("test", &[], &env).unwrap();
        assert_eq!(test.when, "manual");
        assert!(test.allow_failure);
        assert_eq!(test.needs, ["build"]);
        assert!(test.reason.starts_with("rules[1] if:"), "{}", test.reason);
        assert!(vars(&test).contains(&("FROM_RULE", "for staging")));
        let docs = p.job_with("docs", &[], &env).unwrap();
        assert_eq!(docs.when, "never", "no docs changed: {}", docs.reason);
        let old = p.job_with("old", &[], &env).unwrap();
        assert_eq!(old.when, "never");
        assert_eq!(old.reason, "except: [main] matches");
        // A feature branch: test's rules leave it out.
        let feature = on(Some("feature"), None);
        let env = Environment {
            predefined: &feature,
            ..Environment::NONE
        };
        let test = p.job_with("test", &[], &env).unwrap();
        assert_eq!(
            (test.when.as_str(), test.reason.as_str()),
            ("never", "no rule matched")
        );
        assert_eq!(p.job_with("build", &[], &env).unwrap().when, "on_success");
        assert_eq!(p.job_with("old", &[], &env).unwrap().when, "on_success");
        // A merge request pipeline, by --var.
        let mr = [(
            "CI_PIPELINE_SOURCE".to_string(),
            "merge_request_event".to_string(),
        )];
        let test = p.job_with("test", &mr, &env).unwrap();
        assert_eq!(
            (test.when.as_str(), test.allow_failure),
            ("on_success", false)
        );
        // A tag: workflow's variables above the global ones.
        let tag = on(None, Some("v1"));
        let env = Environment {
            predefined: &tag,
            ..Environment::NONE
        };
        let build = p.job_with("build", &[], &env).unwrap();
        assert!(vars(&build).contains(&("DEPLOY_TO", "production")));
        // Neither: workflow makes no pipeline, and says so for every job.
        let detached = on(None, None);
        let env = Environment {
            predefined: &detached,
            ..Environment::NONE
        };
        let build = p.job_with("build", &[], &env).unwrap();
        assert_eq!(build.when, "never");
        assert_eq!(build.reason, "workflow: no rule matched");
        let e = Pipeline::parse("j: {rules: [{if: x}], only: [main], script: x}", "f")
            .unwrap()
            .job("j", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("rules: cannot be used with only"), "{e}");
    }

    #[test]
    fn project_variables_sit_between_the_file_and_var() {
        let p = Pipeline::parse(
            "variables: {A: file, B: file}\nj: {variables: {C: job}, script: x}\n",
            "f",
        )
        .unwrap();
        let project = [
            ProjectVariable {
                key: "B".into(),
                value: "project".into(),
                masked: true,
                file: false,
                raw: false,
            },
            ProjectVariable {
                key: "CERT".into(),
                value: "pem for $B".into(),
                masked: false,
                file: true,
                raw: false,
            },
            ProjectVariable {
                key: "C".into(),
                value: "project".into(),
                masked: true,
                file: false,
                raw: false,
            },
        ];
        let env = Environment {
            project: &project,
            ..Environment::NONE
        };
        let j = p
            .job_with("j", &[("C".into(), "cli".into())], &env)
            .unwrap();
        assert_eq!(
            vars(&j),
            [
                ("A", "file"),
                ("B", "project"),
                ("CERT", "pem for project"),
                ("C", "cli")
            ]
        );
        assert_eq!(j.file_variables, ["CERT"]);
        assert_eq!(j.masked_variables, ["B"], "C is --var's now");
        // A reference to a file variable is its path, as from the runner.
        let predefined = [(
            "RUNNER_TEMP_PROJECT_DIR".to_string(),
            "/builds/p.tmp".to_string(),
        )];
        let mut j = j;
        j.variables.push(("WHERE".into(), "$CERT".into()));
        let runner = j.runner_variables(&predefined);
        assert!(runner.contains(&("WHERE".into(), "/builds/p.tmp/CERT".into())));
        assert!(runner.contains(&("CERT".into(), "pem for project".into())));
    }

    #[test]
    fn references_resolve_after_extends() {
        // GitLab: includes, then extends, then !reference; a reference sees inherited keys.
        let yaml = r#"
.base: {script: [echo base], variables: {V: base}}
build: {extends: .base, stage: build}
test:
  script:
    - !reference [build, script]
    - echo test
  variables: !reference [build, variables]
"#;
        let p = Pipeline::parse(yaml, "f").unwrap();
        let j = p.job("test", &[]).unwrap();
        assert_eq!(j.script, ["echo base", "echo test"]);
        assert_eq!(vars(&j), [("V", "base")]);
    }

    #[test]
    fn variables_as_gitlab_and_the_runner_expand_them() {
        let yaml = r#"
variables:
  PRICE: "$$5"
  RAW: {value: "keep $HOME and $PRICE", expand: false, description: not expanded}
  OPTS: {value: fast, options: [fast, slow], description: mode}
  HOST: $CI_TEMPLATE_REGISTRY_HOST
  NESTED: "$TOP/x"
  TOP: "$HOST/y"
  USES_RAW: "[$RAW]"
j:
  image: ${HOST}/img:${UNDEFINED}latest
  services: [{name: "postgres:${MISSING}15", alias: "db$MISSING"}]
  script: x
"#;
        let p = Pipeline::parse(yaml, "f").unwrap();
        let predefined = [(
            "CI_TEMPLATE_REGISTRY_HOST".to_string(),
            "registry.gitlab.com".to_string(),
        )];
        let env = Environment {
            predefined: &predefined,
            ..Environment::NONE
        };
        let j = p.job_with("j", &[], &env).unwrap();
        assert_eq!(
            j.image.as_ref().unwrap().name,
            "registry.gitlab.com/img:latest",
            "undefined is empty"
        );
        assert_eq!(j.services[0].image.name, "postgres:15");
        assert_eq!(
            j.services[0].aliases,
            ["postgres", "db"],
            "the user's alias expanded"
        );
        assert_eq!(j.raw_variables, ["RAW"]);
        // GitLab's own step: nested references resolved, undefined ones and `$$` kept.
        assert_eq!(
            vars(&j),
            [
                ("PRICE", "$$5"),
                ("RAW", "keep $HOME and $PRICE"),
                ("OPTS", "fast"),
                ("HOST", "$CI_TEMPLATE_REGISTRY_HOST"),
                ("NESTED", "$CI_TEMPLATE_REGISTRY_HOST/y/x"),
                ("TOP", "$CI_TEMPLATE_REGISTRY_HOST/y"),
                ("USES_RAW", "[$RAW]"),
            ]
        );
        // The runner's: once more against everything, predefined first.
        let runner = j.runner_variables(&predefined);
        let got = |k: &str| runner.iter().rev().find(|(n, _)| n == k).unwrap().1.clone();
        let want: &[(&str, &str)] = &[
            ("PRICE", "$5"),
            ("RAW", "keep $HOME and $PRICE"),
            ("HOST", "registry.gitlab.com"),
            ("NESTED", "registry.gitlab.com/y/x"),
            ("USES_RAW", "[keep $HOME and $PRICE]"),
        ];
        for (k, v) in want {
            assert_eq!(got(k), *v, "{k}");
        }
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
