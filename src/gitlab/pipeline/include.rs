//! `include:` as GitLab merges it: each included file (with its own includes first) deep
//! merged in order, then the including file on top, so the main file wins. Where the files
//! come from is the caller's ([`Sources`]): the project's own files, other projects'
//! checkouts, fetched templates. A missing file is an error naming the including file and
//! the entry.

use super::rules::{self, Facts, expand_path as expand};
use serde_yaml_ng::{Mapping, Value};

/// GitLab's limits: included files per pipeline, and how deep includes nest.
const MAX_FILES: usize = 150;
const MAX_DEPTH: usize = 100;

/// One file to include.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path from the project's root.
    Local(String),
    Project {
        project: String,
        file: String,
        reference: Option<String>,
    },
    Remote(String),
    Template(String),
    /// `HOST/GROUP/PROJECT/NAME@VERSION`: `templates/NAME.yml` or `templates/NAME/template.yml`
    /// of that project at that version (`~latest`: its highest release tag).
    Component {
        project: String,
        name: String,
        version: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local(p) => write!(f, "local: {p}"),
            Source::Project {
                project,
                file,
                reference,
            } => match reference {
                Some(r) => write!(f, "project: {project}, file: {file}, ref: {r}"),
                None => write!(f, "project: {project}, file: {file}"),
            },
            Source::Remote(u) => write!(f, "remote: {u}"),
            Source::Template(t) => write!(f, "template: {t}"),
            Source::Component {
                project,
                name,
                version,
            } => write!(f, "component: {project}/{name}@{version}"),
        }
    }
}

/// Where included files come from.
pub trait Sources {
    /// The text of `source`.
    fn read(&self, source: &Source) -> Result<String, String>;
    /// The project's files matching a local path that holds `*` (relative, sorted).
    fn glob(&self, pattern: &str) -> Vec<String>;
    /// A variable `include:rules` and `$VAR`s in include entries see.
    fn variable(&self, name: &str) -> Option<String>;
    /// See [`Facts::changed`].
    fn changed(&self, base: Option<&str>) -> Option<Vec<String>>;
    /// See [`Facts::files`].
    fn files(&self) -> Vec<String>;
}

/// No file can be included: a pipeline with `include:` fails, naming the entry.
pub struct NoSources;

impl Sources for NoSources {
    fn read(&self, source: &Source) -> Result<String, String> {
        Err(format!("{source}: no files can be included here"))
    }
    fn glob(&self, _: &str) -> Vec<String> {
        vec![]
    }
    fn variable(&self, _: &str) -> Option<String> {
        None
    }
    fn changed(&self, _: Option<&str>) -> Option<Vec<String>> {
        None
    }
    fn files(&self) -> Vec<String> {
        vec![]
    }
}

/// `*` within a path segment, `**` across segments (GitLab's `include:local` wildcards).
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    let mut re = String::from("^");
    let mut chars = pattern.trim_start_matches('/').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(path))
}

/// The files one `include:` entry names, after its `rules:`.
fn sources_of(entry: &Value, sources: &dyn Sources) -> Result<Vec<Source>, String> {
    let variable = |n: &str| sources.variable(n);
    let changed = |base: Option<&str>| sources.changed(base);
    let files = || sources.files();
    let facts = Facts {
        variable: &variable,
        changed: &changed,
        files: &files,
    };
    let local = |p: &str| -> Vec<Source> {
        let p = expand(p, &facts);
        match p.contains('*') {
            true => sources.glob(&p).into_iter().map(Source::Local).collect(),
            false => vec![Source::Local(p.trim_start_matches('/').to_string())],
        }
    };
    let by_form = |s: &str| -> Vec<Source> {
        match s.starts_with("https://") || s.starts_with("http://") {
            true => vec![Source::Remote(expand(s, &facts))],
            false => local(s),
        }
    };
    let Value::Mapping(m) = entry else {
        return match entry.as_str() {
            Some(s) => Ok(by_form(s)),
            None => Err("expected a path or a mapping".into()),
        };
    };
    if let Some(r) = m.get("rules") {
        if rules::decide(r, "always", &facts)?.when == "never" {
            return Ok(vec![]);
        }
    }
    let text = |k: &str| m.get(k).and_then(Value::as_str);
    if let Some(p) = text("local") {
        return Ok(local(p));
    }
    if let Some(project) = text("project") {
        let files = match m.get("file") {
            Some(Value::String(f)) => vec![f.clone()],
            Some(Value::Sequence(list)) => list
                .iter()
                .map(|f| f.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or("file: expected paths")?,
            _ => return Err("project: needs a file:".into()),
        };
        let reference = text("ref").map(|r| expand(r, &facts));
        return Ok(files
            .into_iter()
            .map(|f| Source::Project {
                project: expand(project, &facts),
                file: expand(&f, &facts).trim_start_matches('/').to_string(),
                reference: reference.clone(),
            })
            .collect());
    }
    if let Some(u) = text("remote") {
        return Ok(vec![Source::Remote(expand(u, &facts))]);
    }
    if let Some(t) = text("template") {
        return Ok(vec![Source::Template(expand(t, &facts))]);
    }
    if let Some(c) = text("component") {
        let c = expand(c, &facts);
        let (path, version) = c
            .rsplit_once('@')
            .ok_or_else(|| format!("component: {c}: expected HOST/GROUP/PROJECT/NAME@VERSION"))?;
        // The first segment is the GitLab host; the last, the component's name.
        let mut segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 4 {
            return Err(format!(
                "component: {c}: expected HOST/GROUP/PROJECT/NAME@VERSION"
            ));
        }
        let name = segments.pop().unwrap_or_default().to_string();
        return Ok(vec![Source::Component {
            project: segments[1..].join("/"),
            name,
            version: version.to_string(),
        }]);
    }
    Err("expected local:, project:, remote: or template:".into())
}

/// `config` (from `file`) with everything it includes merged under it.
pub fn merge(
    config: Mapping,
    file: &str,
    sources: &dyn Sources,
    count: &mut usize,
    depth: usize,
) -> Result<Mapping, String> {
    let mut config = config;
    let Some(include) = config.remove("include") else {
        return Ok(config);
    };
    if depth >= MAX_DEPTH {
        return Err(format!("{file}: includes nest more than {MAX_DEPTH} deep"));
    }
    let entries = match include {
        Value::Sequence(list) => list,
        other => vec![other],
    };
    let mut merged = Mapping::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = |e: String| format!("{file}: include[{i}]: {e}");
        for source in sources_of(entry, sources).map_err(at)? {
            *count += 1;
            if *count > MAX_FILES {
                return Err(at(format!("more than {MAX_FILES} included files")));
            }
            let text = sources
                .read(&source)
                .map_err(|e| at(format!("{source}: {e}")))?;
            let name = source.to_string();
            let read = crate::gitlab::yaml::read(&text, &name).map_err(|e| at(e.to_string()))?;
            let given = entry.get("inputs").and_then(Value::as_mapping);
            let variable = |n: &str| sources.variable(n);
            let config = super::inputs::apply(read.config, read.spec.as_ref(), given, &variable)
                .map_err(|e| at(format!("{source}: {e}")))?;
            let included = merge(config, &name, sources, count, depth + 1)?;
            merged = super::deep_merge(&merged, &included);
        }
    }
    Ok(super::deep_merge(&merged, &config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Files(BTreeMap<&'static str, &'static str>);

    impl Sources for Files {
        fn read(&self, source: &Source) -> Result<String, String> {
            let key = match source {
                Source::Local(p) => p.clone(),
                Source::Project { project, file, .. } => format!("{project}:{file}"),
                other => other.to_string(),
            };
            self.0
                .get(key.as_str())
                .map(|t| t.to_string())
                .ok_or_else(|| "no such file".into())
        }
        fn glob(&self, pattern: &str) -> Vec<String> {
            self.0
                .keys()
                .filter(|k| glob_matches(pattern, k))
                .map(|k| k.to_string())
                .collect()
        }
        fn variable(&self, n: &str) -> Option<String> {
            (n == "CI_COMMIT_BRANCH").then(|| "main".to_string())
        }
        fn changed(&self, _: Option<&str>) -> Option<Vec<String>> {
            None
        }
        fn files(&self) -> Vec<String> {
            vec![]
        }
    }

    fn merged(main: &str, files: &[(&'static str, &'static str)]) -> Result<Mapping, String> {
        let sources = Files(files.iter().cloned().collect());
        let config = crate::gitlab::yaml::read(main, ".gitlab-ci.yml")
            .unwrap()
            .config;
        merge(config, ".gitlab-ci.yml", &sources, &mut 0, 0)
    }

    #[test]
    fn includes_merge_in_gitlabs_order() {
        let files = [
            (
                "ci/base.yml",
                "variables: {A: base, B: base}\njob: {script: base, stage: build}\n",
            ),
            (
                "ci/more.yml",
                "include: ci/base.yml\nvariables: {B: more}\nextra: {script: x}\n",
            ),
            ("ci/a/x.yml", "x: {script: x}\n"),
            ("ci/a/b/y.yml", "y: {script: y}\n"),
            ("group/tools:templates/lint.yml", "lint: {script: lint}\n"),
            (
                "component: group/tools/scan@1.2.0",
                "spec:\n  inputs:\n    stage: {default: test}\n    tool: {options: [trivy, grype]}\n---\n\"scan-$[[ inputs.tool ]]\":\n  stage: $[[ inputs.stage ]]\n  script: scan\n",
            ),
            ("ci/plain.yml", "plain: {script: x}\n"),
        ];
        let m = merged(
            "include:\n  - local: /ci/more.yml\n  - {project: group/tools, file: [/templates/lint.yml], ref: v1}\nvariables: {A: main}\njob: {script: main}\n",
            &files,
        )
        .unwrap();
        let vars = m.get("variables").unwrap();
        assert_eq!(
            vars.get("A"),
            Some(&Value::from("main")),
            "the main file wins"
        );
        assert_eq!(
            vars.get("B"),
            Some(&Value::from("more")),
            "later includes win"
        );
        let job = m.get("job").unwrap();
        assert_eq!(job.get("script"), Some(&Value::from("main")));
        assert_eq!(
            job.get("stage"),
            Some(&Value::from("build")),
            "hashes deep-merged"
        );
        assert!(m.contains_key("extra") && m.contains_key("lint"));
        assert!(!m.contains_key("include"));
        // Wildcards: `*` within a directory, `**` across.
        let m = merged("include: 'ci/a/*.yml'\n", &files).unwrap();
        assert!(m.contains_key("x") && !m.contains_key("y"));
        let m = merged("include: 'ci/a/**.yml'\n", &files).unwrap();
        assert!(m.contains_key("x") && m.contains_key("y"));
        // include:rules, and a duplicate include merged again.
        let m = merged(
            "include:\n  - {local: ci/a/x.yml, rules: [{if: '$CI_COMMIT_BRANCH == \"dev\"'}]}\n  - {local: ci/base.yml, rules: [{if: $CI_COMMIT_BRANCH}]}\n  - ci/base.yml\n",
            &files,
        )
        .unwrap();
        assert!(!m.contains_key("x") && m.contains_key("job"));
        let errors: &[(&str, &str)] = &[
            (
                "include: ci/none.yml\n",
                ".gitlab-ci.yml: include[0]: local: ci/none.yml: no such file",
            ),
            (
                "include: [ci/base.yml, {remote: 'https://x/y.yml'}]\n",
                "include[1]: remote: https://x/y.yml: no such file",
            ),
            (
                "include: [{component: x}]\n",
                "expected HOST/GROUP/PROJECT/NAME@VERSION",
            ),
            ("include: [{nope: x}]\n", "expected local:, project:"),
            ("include: [{project: g/p}]\n", "needs a file:"),
        ];
        for (main, want) in errors {
            let e = merged(main, &files).unwrap_err();
            assert!(e.contains(want), "{main}: {e}");
        }
        // A component with inputs, interpolated before it is merged.
        let m = merged(
            "include:\n  - component: gitlab.example.com/group/tools/scan@1.2.0\n    inputs: {tool: grype}\n",
            &files,
        )
        .unwrap();
        let scan = m.get("scan-grype").expect("the job named by its input");
        assert_eq!(scan.get("stage"), Some(&Value::from("test")));
        let errors: &[(&str, &str)] = &[
            (
                "include: [{component: gitlab.example.com/group/tools/scan@1.2.0}]\n",
                "include[0]: component: group/tools/scan@1.2.0: `tool` input: required value has not been provided",
            ),
            (
                "include: [{component: gitlab.example.com/group/tools/scan@1.2.0, inputs: {tool: x}}]\n",
                "not in the list of allowed options",
            ),
            (
                "include: [{local: ci/plain.yml, inputs: {a: 1}}]\n",
                "declares none in `spec:inputs`",
            ),
        ];
        for (main, want) in errors {
            let e = merged(main, &files).unwrap_err();
            assert!(e.contains(want), "{main}: {e}");
        }
        // A cycle ends at the nesting limit, naming the file.
        let looping = [("a.yml", "include: b.yml\n"), ("b.yml", "include: a.yml\n")];
        let e = merged("include: a.yml\n", &looping).unwrap_err();
        assert!(
            e.contains("more than 150 included files") || e.contains("nest more than"),
            "{e}"
        );
    }
}
