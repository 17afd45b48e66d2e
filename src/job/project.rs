//! The project a local job runs on, as GitLab would know it: its path and server from the
//! checkout's `origin` remote, its commit from git, the files a `changes` rule compares.

use crate::gitlab::pipeline::{Environment, ProjectVariable, include};
use std::path::{Path, PathBuf};
use std::process::Command;

/// GitLab's slugs (`CI_PROJECT_PATH_SLUG`, `CI_JOB_NAME_SLUG`...): lower case, every
/// other character than `a-z0-9` a `-`, at most 63 characters, no `-` at either end.
pub fn slug(s: &str) -> String {
    let mapped: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    mapped.trim_matches('-').to_string()
}

/// The host of a git remote URL: `https://host/ns/p.git`, `ssh://git@host:22/ns/p` or
/// scp-like `git@host:ns/p.git`.
fn remote_host(url: &str) -> Option<String> {
    let authority = match url.split_once("://") {
        Some((_, rest)) => rest.split('/').next()?,
        None => url.split_once(':')?.0,
    };
    let host = authority.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_string())
}

/// The predefined variables GitLab gives every job of the project at `dir` that can be
/// known locally: `CI_PROJECT_*` and `CI_SERVER_*` from the `origin` remote (gitlab.com
/// without one), the template registry GitLab's own templates name images with, the
/// commit's ([`commit_variables`]), and `CI_PIPELINE_SOURCE=push` (a `--var` sets another).
pub fn project_variables(dir: &Path) -> Vec<(String, String)> {
    let (namespace, project) = project_path(dir);
    let path = format!("{namespace}/{project}");
    let host = origin_url(dir)
        .and_then(|u| remote_host(&u))
        .unwrap_or_else(|| "gitlab.com".into());
    let server = format!("https://{host}");
    let root_namespace = namespace
        .split('/')
        .next()
        .unwrap_or(&namespace)
        .to_string();
    [
        ("CI_SERVER_HOST", host.clone()),
        ("CI_SERVER_FQDN", host),
        ("CI_SERVER_PROTOCOL", "https".into()),
        ("CI_SERVER_PORT", "443".into()),
        ("CI_SERVER_URL", server.clone()),
        ("CI_TEMPLATE_REGISTRY_HOST", "registry.gitlab.com".into()),
        ("CI_PROJECT_NAME", project),
        ("CI_PROJECT_NAMESPACE", namespace),
        ("CI_PROJECT_ROOT_NAMESPACE", root_namespace),
        ("CI_PROJECT_PATH", path.clone()),
        ("CI_PROJECT_PATH_SLUG", slug(&path)),
        ("CI_PROJECT_URL", format!("{server}/{path}")),
        ("CI_PIPELINE_SOURCE", "push".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .chain(commit_variables(dir))
    .collect()
}

/// A checkout a pipeline is resolved against: its predefined variables, files and changes.
pub struct Project {
    pub dir: PathBuf,
    pub predefined: Vec<(String, String)>,
    /// Its CI/CD settings' variables (`--variables-file`).
    pub variables: Vec<ProjectVariable>,
    /// Asked once per pipeline, whatever the number of jobs asking: git's answer for each
    /// base, and the checkout's files.
    changed: std::cell::RefCell<std::collections::HashMap<Option<String>, Option<Vec<String>>>>,
    files: std::cell::OnceCell<Vec<String>>,
}

impl Project {
    pub fn at(dir: &Path) -> Project {
        Project {
            dir: dir.to_path_buf(),
            predefined: project_variables(dir),
            variables: vec![],
            changed: Default::default(),
            files: Default::default(),
        }
    }

    /// The instance the project lives on, as `--gitlab-url` names it: `CI_SERVER_*` and
    /// `CI_PROJECT_URL` from it rather than from the remote.
    pub fn served_by(mut self, url: &url::Url) -> Project {
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let server = url.as_str().trim_end_matches('/').to_string();
        let path = self
            .predefined
            .iter()
            .find(|(k, _)| k == "CI_PROJECT_PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let fqdn = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        for (k, v) in [
            ("CI_SERVER_HOST", host),
            ("CI_SERVER_FQDN", fqdn),
            ("CI_SERVER_PROTOCOL", url.scheme().to_string()),
            ("CI_SERVER_PORT", port.to_string()),
            ("CI_PROJECT_URL", format!("{server}/{path}")),
            ("CI_SERVER_URL", server),
        ] {
            self.predefined.retain(|(name, _)| name != k);
            self.predefined.push((k.to_string(), v));
        }
        self
    }

    /// [`changed_files`], asked once per base.
    pub fn changed(&self, base: Option<&str>) -> Option<Vec<String>> {
        let key = base.map(str::to_string);
        if let Some(known) = self.changed.borrow().get(&key) {
            return known.clone();
        }
        let default = self
            .predefined
            .iter()
            .find(|(k, _)| k == "CI_DEFAULT_BRANCH")
            .map(|(_, v)| v.as_str());
        let found = changed_files(&self.dir, base.or(default));
        self.changed.borrow_mut().insert(key, found.clone());
        found
    }

    /// The checkout's files (for `exists` and include globs), read once.
    pub fn files(&self) -> Vec<String> {
        self.files
            .get_or_init(|| crate::gitlab::pipeline::rules::project_files(&self.dir))
            .clone()
    }

    /// The project's CI/CD variables from `file` (YAML: `NAME: value`, or
    /// `NAME: {value, masked, type: file|env_var, expand}`).
    pub fn with_variables_file(mut self, file: &Path) -> Result<Project, super::JobError> {
        self.variables = read_variables_file(file)?;
        Ok(self)
    }

    /// Runs `f` with the pipeline environment this project makes.
    pub fn with_environment<R>(&self, f: impl FnOnce(&Environment) -> R) -> R {
        let changed = |base: Option<&str>| self.changed(base);
        let files = || self.files();
        f(&Environment {
            predefined: &self.predefined,
            project: &self.variables,
            changed: &changed,
            files: &files,
        })
    }
}

/// The images a pipeline needs, for a bundle.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PipelineImages {
    /// Job and service images, each once, in job order.
    pub images: Vec<String>,
    /// Names with a variable nothing defines, as `job: name`: left out.
    pub undefined: Vec<String>,
    /// Jobs left out: their rules (or workflow, only, except) say never, with why.
    pub left_out: Vec<String>,
}

/// The images of `pipeline`'s jobs (with their includes), resolved for `project` as
/// `skiff job` resolves them: the jobs its rules run here, or every job with `all_jobs`.
pub fn pipeline_images(
    pipeline: &crate::gitlab::pipeline::Pipeline,
    project: &Project,
    all_jobs: bool,
) -> Result<PipelineImages, crate::gitlab::pipeline::PipelineError> {
    let jobs = project.with_environment(|env| pipeline.resolve_all(&[], env))?;
    let mut found = PipelineImages::default();
    for job in jobs {
        if job.when == "never" && !all_jobs {
            found
                .left_out
                .push(format!("{} ({})", job.name, job.reason));
            continue;
        }
        if !job.undefined_in_images.is_empty() {
            for raw in &job.undefined_in_images {
                found.undefined.push(format!("{}: {raw}", job.name));
            }
            continue;
        }
        let names = job
            .image
            .iter()
            .chain(job.services.iter().map(|s| &s.image))
            .map(|i| i.name.clone());
        for name in names {
            if !found.images.contains(&name) {
                found.images.push(name);
            }
        }
    }
    Ok(found)
}

/// A variables file: what GitLab's Settings > CI/CD > Variables would hold.
pub fn read_variables_file(file: &Path) -> Result<Vec<ProjectVariable>, super::JobError> {
    let bad = |reason: String| super::JobError::VariablesFile {
        file: file.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let read =
        crate::gitlab::yaml::read(&text, &file.display().to_string()).map_err(|e| bad(e.reason))?;
    let scalar = |v: &serde_yaml_ng::Value| match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    read.config
        .iter()
        .map(|(k, v)| {
            let key = k
                .as_str()
                .filter(|k| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
                .ok_or_else(|| bad(format!("{k:?}: a variable name is letters, digits and _")))?
                .to_string();
            let variable = |value: String| ProjectVariable {
                key: key.clone(),
                value,
                masked: false,
                file: false,
                raw: false,
            };
            match v {
                serde_yaml_ng::Value::Mapping(m) => {
                    if let Some(unknown) = m
                        .keys()
                        .filter_map(|k| k.as_str())
                        .find(|k| !["value", "masked", "type", "expand", "description"].contains(k))
                    {
                        return Err(bad(format!("{key}: unknown key {unknown:?}")));
                    }
                    let flag = |name: &str, default: bool| match m.get(name) {
                        None => Ok(default),
                        Some(serde_yaml_ng::Value::Bool(b)) => Ok(*b),
                        Some(_) => Err(bad(format!("{key}: {name}: expected true or false"))),
                    };
                    let file = match m.get("type").and_then(|t| t.as_str()) {
                        None | Some("env_var") => false,
                        Some("file") => true,
                        Some(other) => {
                            return Err(bad(format!(
                                "{key}: type: {other:?}: expected env_var or file"
                            )));
                        }
                    };
                    Ok(ProjectVariable {
                        masked: flag("masked", false)?,
                        raw: !flag("expand", true)?,
                        file,
                        ..variable(
                            m.get("value")
                                .and_then(scalar)
                                .ok_or_else(|| bad(format!("{key}: value: expected a string")))?,
                        )
                    })
                }
                other => scalar(other)
                    .map(variable)
                    .ok_or_else(|| bad(format!("{key}: expected a value or a mapping"))),
            }
        })
        .collect()
}

/// The files a pipeline of `project` includes: its own, and other projects' from local
/// checkouts (`--include-project GROUP/PROJECT=DIR`, `ref:` read through git).
pub struct IncludeFiles<'a> {
    pub project: &'a Project,
    /// `--var`s: what `include:rules` see besides the predefined variables.
    pub vars: &'a [(String, String)],
    pub projects: &'a [(String, PathBuf)],
    pub fetching: Fetching,
}

/// How `remote:` and `template:` includes are had: fetched when a GitLab instance is
/// configured (and kept in the store's cache), else from that cache: offline first.
pub struct Fetching {
    /// `--gitlab-url`: its templates API, and leave to fetch remote files.
    pub gitlab_url: Option<url::Url>,
    /// `STORE/cache/includes`.
    pub cache: PathBuf,
}

impl Fetching {
    /// `url`'s text: fetched (and cached under `key`) when allowed, else the cached copy.
    fn get(&self, url: &str, key: &str, what: &dyn std::fmt::Display) -> Result<String, String> {
        use sha2::Digest;
        let cached = self.cache.join(format!(
            "{}.yml",
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        ));
        if self.gitlab_url.is_none() {
            return std::fs::read_to_string(&cached).map_err(|_| {
                format!(
                    "{what} is not in the cache ({}); give --gitlab-url to fetch it",
                    self.cache.display()
                )
            });
        }
        let text = http_get(url)?;
        std::fs::create_dir_all(&self.cache)
            .and_then(|()| {
                crate::proc::write_atomic(
                    &cached,
                    text.as_bytes(),
                    crate::proc::Durability::Replace,
                )
            })
            .map_err(|e| format!("caching {url} in {}: {e}", cached.display()))?;
        Ok(text)
    }
}

/// A GET of `url`'s text, from a synchronous caller inside or outside a tokio runtime. The
/// token variables are sent to the instance's API (never printed).
fn http_get(url: &str) -> Result<String, String> {
    let fetch = async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = client.get(url);
        for (var, header) in [
            ("GITLAB_TOKEN", "PRIVATE-TOKEN"),
            ("CI_JOB_TOKEN", "JOB-TOKEN"),
        ] {
            if let Ok(token) = std::env::var(var) {
                request = request.header(header, token);
                break;
            }
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}"));
        }
        response.text().await.map_err(|e| format!("{url}: {e}"))
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => tokio::task::block_in_place(|| h.block_on(fetch)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(fetch),
    }
}

impl IncludeFiles<'_> {
    /// The checkout given for `project`.
    fn checkout(&self, project: &str) -> Result<&Path, String> {
        self.projects
            .iter()
            .rev()
            .find(|(name, _)| name == project)
            .map(|(_, dir)| dir.as_path())
            .ok_or_else(|| {
                format!("no checkout of {project}: give it with --include-project {project}=DIR")
            })
    }

    /// `dir/file`, refused when it leads out of `dir`.
    fn read_in(dir: &Path, file: &str) -> Result<String, String> {
        let root = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = root
            .join(file)
            .canonicalize()
            .map_err(|e| format!("{file}: {e}"))?;
        if !path.starts_with(&root) {
            return Err(format!("{file}: outside {}", root.display()));
        }
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl crate::gitlab::pipeline::include::Sources for IncludeFiles<'_> {
    fn read(&self, source: &include::Source) -> Result<String, String> {
        match source {
            include::Source::Local(p) => Self::read_in(&self.project.dir, p),
            include::Source::Project {
                project,
                file,
                reference,
            } => {
                let dir = self.checkout(project)?;
                match reference {
                    // At the ref, when the checkout is a git repository.
                    Some(r) if git(dir, &["rev-parse", "--git-dir"]).is_some() => {
                        git(dir, &["show", &format!("{r}:{file}")])
                            .ok_or_else(|| format!("{file} at {r}: not in {}", dir.display()))
                    }
                    _ => Self::read_in(dir, file),
                }
            }
            include::Source::Component {
                project,
                name,
                version,
            } => {
                let dir = self.checkout(project)?;
                let repository = git(dir, &["rev-parse", "--git-dir"]).is_some();
                let reference = match version.as_str() {
                    // The highest release: tags sorted as versions.
                    // GitLab's components are released as semantic versions.
                    "~latest" if repository => git(dir, &["tag", "--sort=-v:refname"])
                        .and_then(|tags| {
                            tags.lines()
                                .find(|t| {
                                    let parts: Vec<&str> = t.split('.').collect();
                                    parts.len() == 3
                                        && parts.iter().all(|p| {
                                            !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())
                                        })
                                })
                                .map(str::to_string)
                        })
                        .ok_or_else(|| {
                            format!("~latest: {} has no release tag (1.2.3)", dir.display())
                        })?,
                    v => v.to_string(),
                };
                let files = [
                    format!("templates/{name}.yml"),
                    format!("templates/{name}/template.yml"),
                ];
                files
                    .iter()
                    .find_map(|f| match repository {
                        true => git(dir, &["show", &format!("{reference}:{f}")]),
                        false => Self::read_in(dir, f).ok(),
                    })
                    .ok_or_else(|| {
                        format!(
                            "neither {} nor {} at {reference} in {}",
                            files[0],
                            files[1],
                            dir.display()
                        )
                    })
            }
            include::Source::Remote(url) => self.fetching.get(url, url, source),
            include::Source::Template(name) => {
                // GitLab's templates API: `Jobs/SAST.gitlab-ci.yml` is the key `Jobs/SAST`.
                let base = match &self.fetching.gitlab_url {
                    Some(u) => u.as_str().trim_end_matches('/').to_string(),
                    None => "https://gitlab.com".into(),
                };
                let key = name.trim_end_matches(".gitlab-ci.yml");
                let key: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
                let api = format!("{base}/api/v4/templates/gitlab_ci_ymls/{key}");
                // Kept by name: an offline run finds it whichever instance it came from.
                let body = self
                    .fetching
                    .get(&api, &format!("template:{name}"), source)?;
                #[derive(serde::Deserialize)]
                struct Template {
                    content: String,
                }
                serde_json::from_str::<Template>(&body)
                    .map(|t| t.content)
                    .map_err(|e| format!("{api}: not a template: {e}"))
            }
        }
    }
    fn glob(&self, pattern: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .project
            .files()
            .into_iter()
            .filter(|f| include::glob_matches(pattern, f))
            .collect();
        found.sort();
        found
    }
    fn variable(&self, name: &str) -> Option<String> {
        self.project
            .predefined
            .iter()
            .chain(self.vars)
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn changed(&self, base: Option<&str>) -> Option<Vec<String>> {
        self.project.changed(base)
    }
    fn files(&self) -> Vec<String> {
        self.project.files()
    }
}

/// `git -C dir ARGS...`'s output, trimmed, when it succeeds. The checkout may belong to
/// another user (a job as root on someone's project): git's ownership check is not ours.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    git_output(git_spawn(dir, args))
}

/// `git`, started: its answer is taken with `git_output`, so that other work (another git)
/// overlaps its start, a few milliseconds each.
fn git_spawn(dir: &Path, args: &[&str]) -> Option<std::process::Child> {
    Command::new("git")
        .arg("-c")
        .arg("safe.directory=*")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
}

fn git_output(started: Option<std::process::Child>) -> Option<String> {
    let out = started?.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// The default branch: `origin/HEAD`'s, else git's `init.defaultBranch`, else `main`.
pub fn default_branch(dir: &Path) -> String {
    origin_head(dir)
        .or_else(|| git(dir, &["config", "init.defaultBranch"]))
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "main".into())
}

/// The branch `origin/HEAD` names. git keeps symbolic refs as files of their own, never
/// packed: in a plain `.git` directory the file answers without a git process; elsewhere (a
/// worktree's `.git` file, the reftable format) git does.
fn origin_head(dir: &Path) -> Option<String> {
    let git_dir = dir.join(".git");
    let plain = git_dir.is_dir() && !git_dir.join("reftable").exists();
    let target = match plain {
        true => std::fs::read_to_string(git_dir.join("refs/remotes/origin/HEAD"))
            .ok()?
            .strip_prefix("ref: ")?
            .trim_end()
            .to_string(),
        false => git(dir, &["symbolic-ref", "-q", "refs/remotes/origin/HEAD"])?,
    };
    target
        .strip_prefix("refs/remotes/origin/")
        .map(str::to_string)
}

/// The commit's predefined variables, from git: `CI_COMMIT_SHA`, `_SHORT_SHA`,
/// `_REF_NAME`, `_REF_SLUG`, `_BRANCH` (on a branch) or `_TAG` (a detached HEAD at a tag),
/// `_MESSAGE`, `_TITLE`, `_DESCRIPTION`, `_TIMESTAMP`, `_AUTHOR`, and `CI_DEFAULT_BRANCH`.
/// Outside a checkout, a push to the default branch.
pub fn commit_variables(dir: &Path) -> Vec<(String, String)> {
    // One git for the commit: its hash, the refs at it, timestamp, author and message;
    // started first, to run beside the default branch's.
    let commit = git_spawn(
        dir,
        &[
            "log",
            "-1",
            "--format=%H%x00%D%x00%cI%x00%an <%ae>%x00%B",
            "HEAD",
        ],
    );
    let default = default_branch(dir);
    let mut vars = vec![("CI_DEFAULT_BRANCH".to_string(), default.clone())];
    let Some(entry) = git_output(commit) else {
        // Not a checkout (or no commit yet): a push to the default branch, so that a
        // directory of files runs as it would there.
        for k in ["CI_COMMIT_BRANCH", "CI_COMMIT_REF_NAME"] {
            vars.push((k.to_string(), default.clone()));
        }
        vars.push(("CI_COMMIT_REF_SLUG".to_string(), slug(&default)));
        return vars;
    };
    let mut fields = entry.splitn(5, '\0').map(str::to_string);
    let mut next = || fields.next().unwrap_or_default();
    let (sha, refs, timestamp, author, message) = (next(), next(), next(), next(), next());
    // `HEAD -> main, tag: v1, origin/main`: on a branch; `HEAD, tag: v1`: detached at a tag.
    let refs: Vec<&str> = refs.split(", ").collect();
    let branch = refs
        .iter()
        .find_map(|r| r.strip_prefix("HEAD -> "))
        .map(str::to_string);
    let tag = match branch {
        Some(_) => None,
        None => refs
            .iter()
            .find_map(|r| r.strip_prefix("tag: "))
            .map(str::to_string),
    };
    let ref_name = branch
        .clone()
        .or_else(|| tag.clone())
        .unwrap_or_else(|| sha.clone());
    let title = message.lines().next().unwrap_or_default().to_string();
    let description = message
        .split_once('\n')
        .map(|(_, rest)| rest.trim_start_matches('\n').to_string())
        .unwrap_or_default();
    let mut add = |k: &str, v: String| vars.push((k.to_string(), v));
    add("CI_COMMIT_SHORT_SHA", sha.chars().take(8).collect());
    add("CI_COMMIT_SHA", sha);
    add("CI_COMMIT_BEFORE_SHA", "0".repeat(40));
    add("CI_COMMIT_REF_SLUG", slug(&ref_name));
    add("CI_COMMIT_REF_NAME", ref_name);
    if let Some(b) = branch {
        add("CI_COMMIT_BRANCH", b);
    }
    if let Some(t) = tag {
        add("CI_COMMIT_TAG", t);
    }
    add("CI_COMMIT_MESSAGE", message);
    add("CI_COMMIT_TITLE", title);
    add("CI_COMMIT_DESCRIPTION", description);
    add("CI_COMMIT_TIMESTAMP", timestamp);
    add("CI_COMMIT_AUTHOR", author);
    vars
}

/// The files that differ between the working tree (untracked files included) and `base`
/// (the default branch when `None`; tried as given, then as `origin/BASE`), for
/// `rules:changes`. `None` outside a checkout or when `base` is unknown: GitLab takes
/// `changes` as true where it has nothing to compare with.
pub fn changed_files(dir: &Path, base: Option<&str>) -> Option<Vec<String>> {
    // Started first, to run beside the diff.
    let untracked = git_spawn(dir, &["ls-files", "--others", "--exclude-standard"]);
    let base = base.map_or_else(|| default_branch(dir), str::to_string);
    let origin = format!("origin/{base}");
    let diff = [base.as_str(), origin.as_str()].into_iter().find_map(|r| {
        // `REF^{commit}` never reads as a path, so an unknown ref is an error, not a file.
        git(
            dir,
            &["diff", "--name-only", &format!("{r}^{{commit}}"), "--"],
        )
    });
    let untracked = git_output(untracked);
    let mut files: Vec<String> = diff?.lines().map(str::to_string).collect();
    files.extend(untracked.unwrap_or_default().lines().map(str::to_string));
    Some(files)
}

/// The `origin` remote's URL of the git checkout at `dir`.
fn origin_url(dir: &Path) -> Option<String> {
    let config = std::fs::read_to_string(dir.join(".git/config")).ok()?;
    config
        .split("[remote \"origin\"]")
        .nth(1)
        .and_then(|section| {
            section
                .lines()
                .take_while(|l| !l.trim_start().starts_with('['))
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("url")
                        .map(|r| r.trim_start_matches([' ', '=']).trim().to_string())
                })
        })
}

/// The namespace and project name for `/builds/<namespace>/<project>`: from the `origin`
/// remote's URL when the directory is a git checkout, else `local/<directory name>`.
pub fn project_path(dir: &Path) -> (String, String) {
    if let Some(url) = origin_url(dir) {
        // https://host/ns/p.git, ssh://git@host:22/ns/p, or scp-like git@host:ns/p.git
        let path = if url.contains("://") {
            url_path(&url)
        } else {
            let p = url.split_once(':').map(|(_, p)| p).unwrap_or(&url);
            p.trim_end_matches('/').trim_end_matches(".git").to_string()
        };
        if let Some((ns, project)) = path.trim_matches('/').rsplit_once('/') {
            return (ns.to_string(), project.to_string());
        }
    }
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| "project".into());
    ("local".into(), name)
}

fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
    path.trim_end_matches('/')
        .trim_end_matches(".git")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default branch as git itself answers it: origin/HEAD (a loose file in `.git`,
    /// asked of git in a worktree), else `init.defaultBranch`, else main; and the commit's
    /// variables beside it.
    #[test]
    fn the_default_branch_as_git_answers() {
        let tmp = tempfile::tempdir().unwrap();
        let sh = |dir: &Path, script: &str| {
            let o = Command::new("sh")
                .args(["-euc", script])
                .current_dir(dir)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .unwrap();
            assert!(o.status.success(), "{script}: {o:?}");
        };
        let commit = "git -c user.email=a@b -c user.name=a commit -q --allow-empty -m first";
        let origin = tmp.path().join("origin");
        std::fs::create_dir(&origin).unwrap();
        sh(&origin, &format!("git init -q -b trunk && {commit}"));
        let cases = [
            (
                "clone",
                format!("git clone -q {} .", origin.display()),
                "trunk",
            ),
            (
                "clone, origin/HEAD moved",
                format!(
                    "git clone -q {} . && git branch -q other && \
                     git update-ref refs/remotes/origin/other HEAD && \
                     git remote set-head origin other",
                    origin.display()
                ),
                "other",
            ),
            (
                "worktree of a clone",
                format!(
                    "git clone -q {} ../wt-base && git -C ../wt-base worktree add -q \
                     -b side $(pwd)/tree && mv tree/.git . && rmdir tree 2>/dev/null || true",
                    origin.display()
                ),
                "trunk",
            ),
            (
                "no remote, init.defaultBranch",
                format!("git init -q -b x && git config init.defaultBranch dev && {commit}"),
                "dev",
            ),
            // This machine's own git settings may name one.
            ("no remote", format!("git init -q -b x && {commit}"), ""),
            ("not a checkout", "true".to_string(), ""),
        ];
        let configured = git(tmp.path(), &["config", "init.defaultBranch"])
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "main".into());
        for (i, (what, setup, want)) in cases.iter().enumerate() {
            let want = match *want {
                "" => configured.as_str(),
                named => named,
            };
            let dir = tmp.path().join(format!("case{i}"));
            std::fs::create_dir(&dir).unwrap();
            sh(&dir, setup);
            assert_eq!(default_branch(&dir), want, "{what}");
            let vars = commit_variables(&dir);
            let default = vars.iter().find(|(k, _)| k == "CI_DEFAULT_BRANCH");
            assert_eq!(default.map(|(_, v)| v.as_str()), Some(want), "{what}");
        }
    }

    #[test]
    fn images_a_pipeline_needs() {
        let d = tempfile::tempdir().unwrap();
        let yaml = r#"
variables: {PG: "15"}
image: alpine:3.20
default:
  services: [redis:7]
build:
  services: ["postgres:${PG}", redis:7]
  script: make
deploy:
  image: deployer:1
  rules: [{if: $CI_COMMIT_TAG}]
  script: deploy
broken:
  image: $UNDEFINED/x:1
  script: x
"#;
        let pipeline = crate::gitlab::pipeline::Pipeline::parse(yaml, "f").unwrap();
        let project = Project::at(d.path());
        let found = pipeline_images(&pipeline, &project, false).unwrap();
        assert_eq!(found.images, ["alpine:3.20", "postgres:15", "redis:7"]);
        assert_eq!(found.undefined, ["broken: $UNDEFINED/x:1"]);
        assert_eq!(found.left_out, ["deploy (no rule matched)"]);
        let all = pipeline_images(&pipeline, &project, true).unwrap();
        assert!(all.images.contains(&"deployer:1".to_string()));
        // Included jobs' images too.
        std::fs::create_dir_all(d.path().join("ci")).unwrap();
        std::fs::write(
            d.path().join("ci/db.yml"),
            "migrate: {image: flyway:10, services: [\"postgres:${PG}\"], script: migrate}\n",
        )
        .unwrap();
        let main = d.path().join(".gitlab-ci.yml");
        std::fs::write(&main, format!("include: ci/db.yml\n{yaml}")).unwrap();
        let sources = IncludeFiles {
            project: &project,
            vars: &[],
            projects: &[],
            fetching: Fetching {
                gitlab_url: None,
                cache: d.path().join("cache"),
            },
        };
        let pipeline = crate::gitlab::pipeline::Pipeline::load_with(&main, &sources).unwrap();
        let found = pipeline_images(&pipeline, &project, false).unwrap();
        assert_eq!(
            found.images,
            ["flyway:10", "postgres:15", "alpine:3.20", "redis:7"],
            "an included job's image and services, included jobs first"
        );
    }

    #[test]
    fn an_instance_names_the_server() {
        let d = tempfile::tempdir().unwrap();
        let url = url::Url::parse("http://gitlab.internal:8080/").unwrap();
        let p = Project::at(d.path()).served_by(&url);
        let get = |k: &str| {
            p.predefined
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(get("CI_SERVER_URL"), "http://gitlab.internal:8080");
        assert_eq!(get("CI_SERVER_HOST"), "gitlab.internal");
        assert_eq!(get("CI_SERVER_FQDN"), "gitlab.internal:8080");
        assert_eq!(get("CI_SERVER_PORT"), "8080");
        assert_eq!(get("CI_SERVER_PROTOCOL"), "http");
        assert!(get("CI_PROJECT_URL").starts_with("http://gitlab.internal:8080/local/"));
    }

    #[test]
    fn variables_files_table() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("vars.yml");
        std::fs::write(
            &file,
            "PLAIN: text\nNUMBER: 5\nKEY: {value: \"-----BEGIN\", type: file, masked: true}\nRAW: {value: $KEEP, expand: false, description: kept}\n",
        )
        .unwrap();
        let vars = read_variables_file(&file).unwrap();
        let get = |k: &str| vars.iter().find(|v| v.key == k).unwrap().clone();
        assert_eq!(get("PLAIN").value, "text");
        assert_eq!(get("NUMBER").value, "5");
        let key = get("KEY");
        assert!(key.file && key.masked && !key.raw && key.value == "-----BEGIN");
        assert!(get("RAW").raw);
        let errors: &[(&str, &str)] = &[
            (
                "A: {value: x, type: secret}\n",
                "A: type: \"secret\": expected env_var or file",
            ),
            (
                "A: {value: x, masked: yes-please}\n",
                "A: masked: expected true or false",
            ),
            ("A: {valeu: x}\n", "A: unknown key \"valeu\""),
            ("A: {masked: true}\n", "A: value: expected a string"),
            ("A: [x]\n", "A: expected a value or a mapping"),
            ("a-b: x\n", "a variable name is letters"),
            ("A: [\n", "line 2"),
        ];
        for (text, want) in errors {
            std::fs::write(&file, text).unwrap();
            let e = read_variables_file(&file).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("variables file {}: ", file.display())),
                "{e}"
            );
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(read_variables_file(&d.path().join("none.yml")).is_err());
    }

    #[test]
    fn slugs_hosts_and_project_variables() {
        let slugs: &[(&str, &str)] = &[
            ("group/My Project", "group-my-project"),
            ("rspec 1/3", "rspec-1-3"),
            ("--x--", "x"),
            (&"a".repeat(70), &"a".repeat(63)),
        ];
        for (text, want) in slugs {
            assert_eq!(slug(text), *want, "{text}");
        }
        let hosts: &[(&str, Option<&str>)] = &[
            (
                "https://gitlab.example.com/g/p.git",
                Some("gitlab.example.com"),
            ),
            (
                "ssh://git@gitlab.example.com:2222/g/p",
                Some("gitlab.example.com"),
            ),
            ("git@gitlab.com:g/sub/p.git", Some("gitlab.com")),
            ("https://user:pw@host:8443/g/p", Some("host")),
            ("no-remote", None),
        ];
        for (url, want) in hosts {
            assert_eq!(remote_host(url).as_deref(), *want, "{url}");
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(".git")).unwrap();
        std::fs::write(
            d.path().join(".git/config"),
            "[remote \"origin\"]\n\turl = git@gitlab.example.com:Group/Sub/My.Project.git\n",
        )
        .unwrap();
        let vars = project_variables(d.path());
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).unwrap().1.as_str();
        assert_eq!(get("CI_PROJECT_PATH"), "Group/Sub/My.Project");
        assert_eq!(get("CI_PROJECT_PATH_SLUG"), "group-sub-my-project");
        assert_eq!(get("CI_PROJECT_ROOT_NAMESPACE"), "Group");
        assert_eq!(get("CI_SERVER_URL"), "https://gitlab.example.com");
        assert_eq!(
            get("CI_PROJECT_URL"),
            "https://gitlab.example.com/Group/Sub/My.Project"
        );
        assert_eq!(get("CI_TEMPLATE_REGISTRY_HOST"), "registry.gitlab.com");
    }

    #[test]
    fn project_paths_table() {
        let cases: &[(&str, (&str, &str))] = &[
            (
                "https://gitlab.example.com/group/sub/proj.git",
                ("group/sub", "proj"),
            ),
            ("git@gitlab.example.com:group/proj.git", ("group", "proj")),
            ("ssh://git@host:2222/ns/p", ("ns", "p")),
        ];
        for (url, (ns, p)) in cases {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir(d.path().join(".git")).unwrap();
            std::fs::write(
                d.path().join(".git/config"),
                format!(
                    "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = {url}\n\tfetch = x\n"
                ),
            )
            .unwrap();
            assert_eq!(
                project_path(d.path()),
                (ns.to_string(), p.to_string()),
                "{url}"
            );
        }
        let d = tempfile::tempdir().unwrap();
        assert_eq!(project_path(d.path()).0, "local");
    }
}
