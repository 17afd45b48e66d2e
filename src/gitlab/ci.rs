//! The images a `.gitlab-ci.yml` needs: `image` and `services` at the top level, in
//! `default:` and in every job (hidden templates included, since jobs may `extends` them),
//! read as GitLab reads it (anchors, `<<` merge keys, repeated keys) and `$VAR`/`${VAR}` expanded from the
//! top-level `variables`. Names that still hold a variable are reported, not guessed.

use super::pipeline::{GLOBAL_KEYWORDS, expand};
use serde_yaml_ng::Value;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct CiError {
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PipelineImages {
    pub images: Vec<String>,
    /// Names that could not be resolved (an undefined variable), with where they were.
    pub unresolved: Vec<String>,
}

fn name_of(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Mapping(m) => m.get("name").and_then(Value::as_str),
        _ => None,
    }
}

pub fn pipeline_images(text: &str, file: &str) -> Result<PipelineImages, CiError> {
    let err = |reason: String| CiError {
        file: file.to_string(),
        reason,
    };
    let read = super::yaml::read(text, file).map_err(|e| err(e.reason))?;
    let top = &read.config;
    let vars: Vec<(String, String)> = top
        .get("variables")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Mapping(m) => m.get("value")?.as_str()?.to_string(),
                        _ => return None,
                    };
                    Some((k.as_str()?.to_string(), value))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = PipelineImages::default();
    let mut add = |where_: &str, raw: &str| {
        let name = expand(raw, &vars);
        if name.contains('$') {
            found.unresolved.push(format!("{where_}: {raw}"));
        } else if !found.images.contains(&name) {
            found.images.push(name);
        }
    };
    let mut scan = |where_: &str, m: &serde_yaml_ng::Mapping| {
        if let Some(n) = m.get("image").and_then(name_of) {
            add(where_, n);
        }
        if let Some(Value::Sequence(svcs)) = m.get("services") {
            for s in svcs {
                if let Some(n) = name_of(s) {
                    add(where_, n);
                }
            }
        }
    };
    scan("top level", top);
    if let Some(Value::Mapping(d)) = top.get("default") {
        scan("default", d);
    }
    for (k, v) in top {
        let Some(key) = k.as_str() else { continue };
        if GLOBAL_KEYWORDS.contains(&key) {
            continue;
        }
        if let Value::Mapping(job) = v {
            scan(key, job);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_of_a_pipeline() {
        let yaml = r#"
variables:
  PG: "15"
  REG: registry.example
image: alpine:3.20
default:
  services: [redis:7]
.db: &db
  services:
    - name: postgres:${PG}
      alias: db
    - tutum/wordpress
build:
  image: { name: "$REG/build:1", entrypoint: [""] }
  <<: *db
  script: [make]
test:
  extends: .db
  image: $UNDEFINED/x:1
  script: make test
stages: [build, test]
"#;
        let p = pipeline_images(yaml, ".gitlab-ci.yml").unwrap();
        assert_eq!(
            p.images,
            [
                "alpine:3.20",
                "redis:7",
                "postgres:15",
                "tutum/wordpress",
                "registry.example/build:1"
            ]
        );
        assert_eq!(p.unresolved, ["test: $UNDEFINED/x:1"]);
        assert!(pipeline_images("- just a list", "f").is_err());
        assert!(pipeline_images("a: [", "f").is_err());
    }
}
