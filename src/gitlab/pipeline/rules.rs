//! `rules:` (and `workflow:rules:`): the first rule whose clauses all hold decides whether a
//! job runs and how (`when`, `allow_failure`, `start_in`, `variables`, `needs`); with none,
//! the job is not in the pipeline. Clauses: `if` (an [`Expression`]), `changes` (globs, or
//! `{paths, compare_to}`) and `exists` (globs, or `{paths}`), variables expanded in paths.

use super::expression::Expression;
use serde_yaml_ng::Value;

/// What `changes` and `exists` look at, and the variables `if` reads.
pub struct Facts<'a> {
    pub variable: &'a dyn Fn(&str) -> Option<String>,
    /// The files changed against `compare_to` (or the default base, for `None`); `None`
    /// when there is nothing to compare with, where GitLab takes `changes` as true.
    pub changed: &'a dyn Fn(Option<&str>) -> Option<Vec<String>>,
    /// The project's files (paths relative to its root), for `exists`.
    pub files: &'a dyn Fn() -> Vec<String>,
}

/// How a job runs, and which rule said so.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// `on_success`, `on_failure`, `always`, `manual`, `delayed` or `never`.
    pub when: String,
    pub allow_failure: Option<bool>,
    pub start_in: Option<String>,
    pub variables: Vec<(String, String)>,
    pub needs: Option<Value>,
    pub reason: String,
}

const WHEN: &[&str] = &[
    "on_success",
    "on_failure",
    "always",
    "manual",
    "delayed",
    "never",
];

/// A `when:` value, checked.
pub fn when_of(v: Option<&Value>, default: &str) -> Result<String, String> {
    match v {
        None => Ok(default.to_string()),
        Some(Value::String(w)) if WHEN.contains(&w.as_str()) => Ok(w.clone()),
        Some(other) => Err(format!(
            "when: {other:?}: expected one of {}",
            WHEN.join(", ")
        )),
    }
}

fn paths(v: &Value, what: &str) -> Result<(Vec<String>, Option<String>), String> {
    let list = |v: &Value| -> Result<Vec<String>, String> {
        v.as_sequence()
            .ok_or_else(|| format!("{what}: expected a list of paths"))?
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what}: a path must be a string"))
            })
            .collect()
    };
    match v {
        Value::Mapping(m) => Ok((
            list(m.get("paths").unwrap_or(&Value::Sequence(vec![])))?,
            m.get("compare_to")
                .and_then(Value::as_str)
                .map(str::to_string),
        )),
        other => Ok((list(other)?, None)),
    }
}

/// `$VAR` and `${VAR}` in a path or an include entry, from the facts' variables; an
/// undefined one is empty, as the runner expands it.
pub(super) fn expand_path(p: &str, facts: &Facts) -> String {
    let known: Vec<(String, String)> = super::references(p)
        .into_iter()
        .filter_map(|(_, _, name)| Some((name.to_string(), (facts.variable)(name)?)))
        .collect();
    crate::gitlab::payload::expand_value(p, &known)
}

fn any_matches(patterns: &[String], files: &[String], facts: &Facts) -> bool {
    patterns.iter().any(|p| {
        let p = expand_path(p, facts);
        files
            .iter()
            .any(|f| crate::gitlab::config::glob::matches(&p, f))
    })
}

/// Whether rule `rule` holds, and the text saying why.
fn holds(rule: &serde_yaml_ng::Mapping, facts: &Facts) -> Result<bool, String> {
    if let Some(cond) = rule.get("if") {
        let text = cond.as_str().ok_or("if: expected an expression")?;
        let e = Expression::parse(text).map_err(|e| format!("if: {text}: {e}"))?;
        if !e
            .holds(facts.variable)
            .map_err(|e| format!("if: {text}: {e}"))?
        {
            return Ok(false);
        }
    }
    if let Some(v) = rule.get("changes") {
        let (patterns, compare_to) = paths(v, "changes")?;
        let compare_to = compare_to.map(|c| expand_path(&c, facts));
        if let Some(changed) = (facts.changed)(compare_to.as_deref())
            && !any_matches(&patterns, &changed, facts)
        {
            return Ok(false);
        }
    }
    if let Some(v) = rule.get("exists") {
        let (patterns, _) = paths(v, "exists")?;
        if !any_matches(&patterns, &(facts.files)(), facts) {
            return Ok(false);
        }
    }
    Ok(true)
}

const RULE_KEYS: &[&str] = &[
    "if",
    "changes",
    "exists",
    "when",
    "allow_failure",
    "start_in",
    "variables",
    "needs",
    "interruptible",
];

/// Decides a job by its `rules:` (`default_when`: the job's own `when`, else `on_success`).
pub fn decide(rules: &Value, default_when: &str, facts: &Facts) -> Result<Decision, String> {
    let list = rules
        .as_sequence()
        .ok_or("rules: expected a list of rules")?;
    for (i, rule) in list.iter().enumerate() {
        let rule = rule
            .as_mapping()
            .ok_or_else(|| format!("rules[{i}]: expected a mapping"))?;
        if let Some(k) = rule
            .keys()
            .filter_map(Value::as_str)
            .find(|k| !RULE_KEYS.contains(k))
        {
            return Err(format!("rules[{i}]: unknown key {k:?}"));
        }
        if !holds(rule, facts).map_err(|e| format!("rules[{i}]: {e}"))? {
            continue;
        }
        let when =
            when_of(rule.get("when"), default_when).map_err(|e| format!("rules[{i}]: {e}"))?;
        let clauses: Vec<String> = ["if", "changes", "exists"]
            .iter()
            .filter_map(|k| {
                let v = rule.get(*k)?;
                Some(format!("{k}: {}", super::only::describe(v)))
            })
            .collect();
        return Ok(Decision {
            when,
            allow_failure: rule.get("allow_failure").and_then(Value::as_bool),
            start_in: rule
                .get("start_in")
                .and_then(Value::as_str)
                .map(str::to_string),
            variables: rule
                .get("variables")
                .and_then(Value::as_mapping)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), super::text(v)?)))
                        .collect()
                })
                .unwrap_or_default(),
            needs: rule.get("needs").cloned(),
            reason: match clauses.is_empty() {
                true => format!("rules[{i}] (no condition)"),
                false => format!("rules[{i}] {}", clauses.join(", ")),
            },
        });
    }
    Ok(Decision {
        when: "never".into(),
        allow_failure: None,
        start_in: None,
        variables: vec![],
        needs: None,
        reason: "no rule matched".into(),
    })
}

/// The project's files under `root`, relative, `.git` left out; at most GitLab's 10,000.
pub fn project_files(root: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    let mut pending = vec![std::path::PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = rel.join(e.file_name());
            if name == std::path::Path::new(".git") {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => pending.push(name),
                Ok(_) => out.push(name.to_string_lossy().to_string()),
                Err(_) => {}
            }
            if out.len() >= 10_000 {
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rule_that_holds_decides() {
        let variable = |n: &str| match n {
            "CI_COMMIT_BRANCH" => Some("feature".to_string()),
            "DIR" => Some("docs".to_string()),
            _ => None,
        };
        let changed = |base: Option<&str>| match base {
            Some("unknown") => None,
            Some("main") => Some(vec!["src/lib.rs".to_string()]),
            _ => Some(vec!["docs/index.md".to_string()]),
        };
        let files = || vec!["Cargo.toml".to_string(), "docs/index.md".to_string()];
        let facts = Facts {
            variable: &variable,
            changed: &changed,
            files: &files,
        };
        let decide_yaml = |yaml: &str| {
            let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
            decide(&v, "on_success", &facts)
        };
        let cases: &[(&str, &str, &str)] = &[
            (
                "[{if: '$CI_COMMIT_BRANCH == \"main\"'}]",
                "never",
                "no rule matched",
            ),
            (
                "[{if: '$CI_COMMIT_BRANCH == \"main\"'}, {if: $CI_COMMIT_BRANCH, when: manual}]",
                "manual",
                "rules[1] if: $CI_COMMIT_BRANCH",
            ),
            ("[{when: always}]", "always", "rules[0] (no condition)"),
            (
                "[{changes: ['src/**/*'], when: never}, {when: on_success}]",
                "on_success",
                "rules[1]",
            ),
            (
                "[{changes: ['$DIR/*.md']}]",
                "on_success",
                "rules[0] changes",
            ),
            (
                "[{changes: {paths: ['src/*.rs'], compare_to: main}}]",
                "on_success",
                "rules[0]",
            ),
            (
                "[{changes: {paths: ['src/*.rs'], compare_to: unknown}}]",
                "on_success",
                "rules[0]",
            ),
            (
                "[{exists: [Cargo.toml], when: delayed, start_in: 5 minutes}]",
                "delayed",
                "rules[0] exists",
            ),
            ("[{exists: [go.mod]}]", "never", "no rule matched"),
            (
                "[{if: $CI_COMMIT_BRANCH, exists: [go.mod]}]",
                "never",
                "no rule matched",
            ),
        ];
        for (yaml, when, reason) in cases {
            let d = decide_yaml(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_eq!(d.when, *when, "{yaml}");
            assert!(d.reason.starts_with(reason), "{yaml}: {}", d.reason);
        }
        let d = decide_yaml(
            "[{if: $CI_COMMIT_BRANCH, allow_failure: true, variables: {X: y}, needs: [a]}]",
        )
        .unwrap();
        assert_eq!(d.allow_failure, Some(true));
        assert_eq!(d.variables, [("X".to_string(), "y".to_string())]);
        assert!(d.needs.is_some());
        let errors: &[(&str, &str)] = &[
            ("{if: x}", "expected a list"),
            (
                "[{if: '$A == '}]",
                "rules[0]: if: $A == : the expression ends too early",
            ),
            ("[{when: sometimes}]", "rules[0]: when:"),
            ("[{iff: $A}]", "rules[0]: unknown key \"iff\""),
            ("[{changes: src}]", "changes: expected a list of paths"),
        ];
        for (yaml, want) in errors {
            let e = decide_yaml(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
