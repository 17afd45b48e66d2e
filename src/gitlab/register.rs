//! The `--template-config` for `gitlab-runner register --executor custom`: the
//! `[runners.custom]` block (the runner's `common/config.go` `CustomConfig` keys) that points
//! each of the custom executor's steps at this skiff binary, and at the driver's admin
//! configuration when one is named.

use super::config::{AdminConfig, ConfigError};
use std::path::Path;

/// The template for this skiff binary. The admin file is checked now, not when the first
/// job fails on it, and named by its absolute path: the runner starts each step in a
/// directory of its own.
pub fn template_for_admin_file(
    skiff: &Path,
    admin_file: Option<&Path>,
) -> Result<String, ConfigError> {
    let file = match admin_file {
        Some(f) => {
            AdminConfig::load(Some(f))?;
            Some(
                std::fs::canonicalize(f).map_err(|source| ConfigError::Read {
                    path: f.to_path_buf(),
                    source,
                })?,
            )
        }
        None => None,
    };
    Ok(template(skiff, file.as_deref()))
}

/// The template's TOML: one `[[runners]]` entry, as `register --template-config` takes it.
pub fn template(skiff: &Path, config: Option<&Path>) -> String {
    let exe = skiff.to_string_lossy().to_string();
    let args = |verb: &str| {
        let mut a = vec!["gitlab".to_string(), verb.to_string()];
        if let Some(c) = config {
            a.extend(["--config".to_string(), c.to_string_lossy().to_string()]);
        }
        toml::Value::Array(a.into_iter().map(toml::Value::String).collect())
    };
    let mut custom = toml::Table::new();
    for step in ["config", "prepare", "run", "cleanup"] {
        custom.insert(format!("{step}_exec"), toml::Value::String(exe.clone()));
        custom.insert(format!("{step}_args"), args(step));
    }
    let mut runner = toml::Table::new();
    runner.insert("executor".into(), toml::Value::String("custom".into()));
    runner.insert("custom".into(), toml::Value::Table(custom));
    let mut top = toml::Table::new();
    top.insert(
        "runners".into(),
        toml::Value::Array(vec![toml::Value::Table(runner)]),
    );
    format!(
        "# GitLab Runner custom executor driven by skiff, for\n\
         # gitlab-runner register --non-interactive --executor custom --template-config FILE ...\n{}",
        toml::to_string(&top).expect("a table of strings serialises")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_runs_this_binary_with_its_verb_and_the_config() {
        for config in [None, Some(Path::new("/etc/skiff/gitlab \"admin\".toml"))] {
            let text = template(Path::new("/usr/bin/skiff"), config);
            let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
            let runner = &parsed["runners"].as_array().unwrap()[0];
            assert_eq!(runner["executor"].as_str(), Some("custom"));
            let custom = runner["custom"].as_table().unwrap();
            for step in ["config", "prepare", "run", "cleanup"] {
                assert_eq!(
                    custom[&format!("{step}_exec")].as_str(),
                    Some("/usr/bin/skiff")
                );
                let args: Vec<&str> = custom[&format!("{step}_args")]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                let mut want = vec!["gitlab", step];
                if config.is_some() {
                    want.extend(["--config", "/etc/skiff/gitlab \"admin\".toml"]);
                }
                assert_eq!(args, want, "{step}");
            }
        }
    }
}
