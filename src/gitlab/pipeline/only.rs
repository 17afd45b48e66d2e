//! `only:` and `except:`, the keywords before `rules:`: a list of refs, or
//! `{refs, variables, changes}` where every given key must have a match.

use super::expression::Expression;
use super::rules::Facts;
use serde_yaml_ng::Value;

/// The ref keywords and the pipeline source each stands for.
const SOURCES: &[(&str, &str)] = &[
    ("api", "api"),
    ("chat", "chat"),
    ("external", "external"),
    ("external_pull_requests", "external_pull_request_event"),
    ("merge_requests", "merge_request_event"),
    ("pipelines", "pipeline"),
    ("pushes", "push"),
    ("schedules", "schedule"),
    ("triggers", "trigger"),
    ("web", "web"),
];

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Sequence(list) => list
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what}: expected strings"))
            })
            .collect(),
        _ => Err(format!("{what}: expected a list")),
    }
}

fn ref_matches(r: &str, facts: &Facts) -> Result<bool, String> {
    let var = |n: &str| (facts.variable)(n);
    if r == "branches" {
        return Ok(var("CI_COMMIT_BRANCH").is_some());
    }
    if r == "tags" {
        return Ok(var("CI_COMMIT_TAG").is_some());
    }
    if let Some((_, source)) = SOURCES.iter().find(|(k, _)| *k == r) {
        return Ok(var("CI_PIPELINE_SOURCE").as_deref() == Some(*source));
    }
    let name = var("CI_COMMIT_REF_NAME").unwrap_or_default();
    if r.starts_with('/') && r.len() > 1 {
        // A pattern, matched as an expression's.
        let e = Expression::parse(&format!("$CI_COMMIT_REF_NAME =~ {r}"))?;
        return e.holds(&|n| (n == "CI_COMMIT_REF_NAME").then(|| name.clone()));
    }
    Ok(r == name)
}

/// Whether `spec` (an `only:` or `except:` value) matches.
pub fn matches(spec: &Value, facts: &Facts) -> Result<bool, String> {
    let refs = |v: &Value| -> Result<bool, String> {
        for r in strings(v, "refs")? {
            if ref_matches(&r, facts)? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let Value::Mapping(m) = spec else {
        return refs(spec);
    };
    for (k, v) in m {
        let held = match k.as_str() {
            Some("refs") => refs(v)?,
            Some("variables") => {
                let mut any = false;
                for text in strings(v, "variables")? {
                    let e = Expression::parse(&text).map_err(|e| format!("{text}: {e}"))?;
                    any |= e.holds(facts.variable)?;
                }
                any
            }
            Some("changes") => {
                let patterns = strings(v, "changes")?;
                match (facts.changed)(None) {
                    None => true,
                    Some(changed) => patterns.iter().any(|p| {
                        changed
                            .iter()
                            .any(|f| crate::gitlab::config::glob::matches(p, f))
                    }),
                }
            }
            Some("kubernetes") => true,
            other => return Err(format!("unknown key {other:?}")),
        };
        if !held {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `spec` in one line, in YAML's flow style, for the reason a job is in or out.
pub fn describe(spec: &Value) -> String {
    match spec {
        Value::Sequence(items) => format!(
            "[{}]",
            items.iter().map(describe).collect::<Vec<_>>().join(", ")
        ),
        Value::Mapping(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", describe(k), describe(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => super::text(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_variables_and_changes() {
        let variable = |n: &str| match n {
            "CI_COMMIT_BRANCH" | "CI_COMMIT_REF_NAME" => Some("release-1".to_string()),
            "CI_PIPELINE_SOURCE" => Some("push".to_string()),
            "DEPLOY" => Some("yes".to_string()),
            _ => None,
        };
        let changed = |_: Option<&str>| Some(vec!["src/a.rs".to_string()]);
        let files = Vec::new;
        let facts = Facts {
            variable: &variable,
            changed: &changed,
            files: &files,
        };
        let cases: &[(&str, bool)] = &[
            ("[branches]", true),
            ("[tags]", false),
            ("[main, /^release-/]", true),
            ("[main]", false),
            ("release-1", true),
            ("[pushes]", true),
            ("[merge_requests]", false),
            (
                "{refs: [branches], variables: ['$DEPLOY == \"yes\"']}",
                true,
            ),
            (
                "{refs: [branches], variables: ['$DEPLOY == \"no\"']}",
                false,
            ),
            ("{variables: ['$NOPE', '$DEPLOY']}", true),
            ("{changes: ['src/**/*']}", true),
            ("{refs: [branches], changes: ['docs/*']}", false),
        ];
        for (yaml, want) in cases {
            let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(matches(&v, &facts).unwrap(), *want, "{yaml}");
        }
        let v: Value = serde_yaml_ng::from_str("{refz: [a]}").unwrap();
        assert!(matches(&v, &facts).unwrap_err().contains("unknown key"));
    }
}
