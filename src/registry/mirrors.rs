//! `registries.conf` (version 2): `[[registry]]` prefix/location/insecure/blocked,
//! `[[registry.mirror]]` with `pull-from-mirror`, `mirror-by-digest-only`,
//! `unqualified-search-registries`. Endpoints are tried mirrors first, primary last.

use crate::oci::reference::ImageRef;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("invalid registries configuration {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistriesConf {
    #[serde(default)]
    pub unqualified_search_registries: Vec<String>,
    #[serde(default)]
    pub short_name_mode: Option<String>,
    #[serde(default)]
    pub registry: Vec<RegistryEntry>,
    #[serde(default)]
    pub credential_helpers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror_by_digest_only: bool,
    #[serde(default)]
    pub mirror: Vec<MirrorEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MirrorEntry {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub pull_from_mirror: Option<String>,
}

/// One place to pull a reference from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSource {
    /// The reference rewritten to this endpoint's location.
    pub reference: ImageRef,
    pub insecure: bool,
    pub mirror: bool,
}

impl RegistriesConf {
    pub fn parse(text: &str, path: &Path) -> Result<RegistriesConf, ConfigError> {
        let conf: RegistriesConf = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
        for r in &conf.registry {
            let invalid = |reason: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                reason,
            };
            if r.prefix.is_none() && r.location.is_empty() {
                return Err(invalid(
                    "a [[registry]] needs a prefix or a location".into(),
                ));
            }
            for m in &r.mirror {
                match m.pull_from_mirror.as_deref() {
                    None | Some("all" | "digest-only" | "tag-only") => {}
                    Some(o) => {
                        return Err(invalid(format!(
                            "pull-from-mirror = {o:?} is not all, digest-only or tag-only"
                        )));
                    }
                }
                if r.mirror_by_digest_only
                    && m.pull_from_mirror.as_deref().is_some_and(|p| p != "all")
                {
                    return Err(invalid(format!(
                        "{}: mirror-by-digest-only cannot be combined with pull-from-mirror",
                        r.prefix.as_deref().unwrap_or(&r.location)
                    )));
                }
            }
        }
        Ok(conf)
    }

    /// The main file (`$CONTAINERS_REGISTRIES_CONF`, else the user's file, else
    /// `/etc/containers/registries.conf`) plus `registries.conf.d` drop-ins, later ones
    /// replacing entries with the same prefix.
    pub fn load(explicit: Option<&Path>) -> Result<RegistriesConf, ConfigError> {
        let home_cfg = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        let mut files = Vec::new();
        let mut dropin_dirs = Vec::new();
        if let Some(p) = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CONTAINERS_REGISTRIES_CONF").map(PathBuf::from))
        {
            files.push(p);
            if let Some(d) = std::env::var_os("CONTAINERS_REGISTRIES_CONF_DIR") {
                dropin_dirs.push(PathBuf::from(d));
            }
        } else {
            let user = home_cfg
                .as_ref()
                .map(|h| h.join("containers/registries.conf"));
            match user.filter(|u| u.exists()) {
                Some(u) => files.push(u),
                None => files.push(PathBuf::from("/etc/containers/registries.conf")),
            }
            dropin_dirs.push(PathBuf::from("/etc/containers/registries.conf.d"));
            if let Some(h) = &home_cfg {
                dropin_dirs.push(h.join("containers/registries.conf.d"));
            }
        }
        for dir in dropin_dirs {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                let mut names: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                    .collect();
                names.sort();
                files.extend(names);
            }
        }
        let mut merged = RegistriesConf::default();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(ConfigError::Read { path, error }),
            };
            if text.contains("[registries.search]") || text.contains("[registries.insecure]") {
                tracing::warn!(
                    "{}: version 1 registries.conf is not supported; ignoring it",
                    path.display()
                );
                continue;
            }
            let conf = Self::parse(&text, &path)?;
            if !conf.unqualified_search_registries.is_empty() {
                merged.unqualified_search_registries = conf.unqualified_search_registries;
            }
            if conf.short_name_mode.is_some() {
                merged.short_name_mode = conf.short_name_mode;
            }
            for r in conf.registry {
                let key = r.prefix.clone().unwrap_or_else(|| r.location.clone());
                merged
                    .registry
                    .retain(|o| o.prefix.clone().unwrap_or_else(|| o.location.clone()) != key);
                merged.registry.push(r);
            }
        }
        Ok(merged)
    }

    /// The entry with the longest matching prefix (`*.domain` matches any subdomain).
    pub fn find(&self, name: &str) -> Option<(&RegistryEntry, usize)> {
        let mut best: Option<(&RegistryEntry, usize)> = None;
        for r in &self.registry {
            let prefix = r.prefix.as_deref().unwrap_or(&r.location);
            let matched = if let Some(suffix) = prefix.strip_prefix("*.") {
                let host = name.split('/').next().unwrap_or(name);
                let host_no_port = host.split(':').next().unwrap_or(host);
                host_no_port
                    .ends_with(&format!(".{suffix}"))
                    .then_some(host.len())
            } else if name == prefix
                || (name.starts_with(prefix)
                    && matches!(name.as_bytes().get(prefix.len()), Some(b'/' | b':' | b'@')))
            {
                Some(prefix.len())
            } else {
                None
            };
            if let Some(len) = matched {
                if best.is_none_or(|(_, l)| len > l) {
                    best = Some((r, len));
                }
            }
        }
        best
    }

    /// Where to pull `reference` from, in order. `Err` names the file rule that blocks it.
    pub fn pull_sources(
        &self,
        reference: &ImageRef,
        insecure_override: bool,
    ) -> Result<Vec<PullSource>, String> {
        let name = reference.name();
        let Some((entry, matched)) = self.find(&name) else {
            return Ok(vec![PullSource {
                reference: reference.clone(),
                insecure: insecure_override,
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(format!(
                "registry {} is blocked in registries.conf",
                entry.prefix.as_deref().unwrap_or(&entry.location)
            ));
        }
        let is_wildcard = entry.prefix.as_deref().is_some_and(|p| p.starts_with("*."));
        let rewrite = |location: &str| -> Option<ImageRef> {
            if location.is_empty() {
                return Some(reference.clone());
            }
            let rest = &name[matched..];
            let full = format!("{location}{rest}");
            let (registry, repository) = full.split_once('/')?;
            Some(reference.with_registry(registry, repository))
        };
        let mut out = Vec::new();
        let by_digest = reference.digest.is_some();
        for m in &entry.mirror {
            let policy = if entry.mirror_by_digest_only {
                "digest-only"
            } else {
                m.pull_from_mirror.as_deref().unwrap_or("all")
            };
            let allowed = match policy {
                "digest-only" => by_digest,
                "tag-only" => !by_digest,
                _ => true,
            };
            if !allowed {
                continue;
            }
            if let Some(r) = rewrite(&m.location) {
                out.push(PullSource {
                    reference: r,
                    insecure: m.insecure || insecure_override,
                    mirror: true,
                });
            }
        }
        let primary = if is_wildcard {
            Some(reference.clone())
        } else {
            rewrite(&entry.location)
        };
        if let Some(r) = primary {
            out.push(PullSource {
                reference: r,
                insecure: entry.insecure || insecure_override,
                mirror: false,
            });
        }
        Ok(out)
    }

    /// Whether the registry of `host` is marked insecure (for push/login and friends).
    pub fn is_insecure(&self, host: &str) -> bool {
        self.find(host).is_some_and(|(e, _)| e.insecure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["quay.io", "docker.io"]

[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"
[[registry.mirror]]
location = "mirror.example:5000/hub"
insecure = true
[[registry.mirror]]
location = "digest-mirror.example"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tag-mirror.example"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "docker.io/library/special"
location = "special.example/x"

[[registry]]
prefix = "blocked.example"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true
[[registry.mirror]]
location = "cache.corp.example"
"#;

    fn sources(conf: &RegistriesConf, r: &str) -> Vec<String> {
        conf.pull_sources(&ImageRef::parse(r).unwrap(), false)
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}{}",
                    s.reference,
                    if s.insecure { " (insecure)" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn endpoints_table() {
        let conf = RegistriesConf::parse(CONF, Path::new("t.conf")).unwrap();
        assert_eq!(conf.unqualified_search_registries, ["quay.io", "docker.io"]);
        assert_eq!(
            sources(&conf, "busybox:1"),
            [
                "mirror.example:5000/hub/library/busybox:1 (insecure)",
                "tag-mirror.example/library/busybox:1",
                "registry-1.docker.io/library/busybox:1",
            ]
        );
        let d = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
        assert_eq!(
            sources(&conf, &format!("busybox@{d}")),
            [
                format!("mirror.example:5000/hub/library/busybox@{d} (insecure)"),
                format!("digest-mirror.example/library/busybox@{d}"),
                format!("registry-1.docker.io/library/busybox@{d}"),
            ]
        );
        assert_eq!(
            sources(&conf, "special:2"),
            ["special.example/x:2"],
            "longest prefix wins"
        );
        assert_eq!(
            sources(&conf, "specialist"),
            [
                "mirror.example:5000/hub/library/specialist:latest (insecure)",
                "tag-mirror.example/library/specialist:latest",
                "registry-1.docker.io/library/specialist:latest",
            ],
            "a prefix ends at a separator"
        );
        assert_eq!(
            sources(&conf, "a.b.corp.example/team/app:1"),
            [
                "cache.corp.example/team/app:1",
                "a.b.corp.example/team/app:1 (insecure)"
            ]
        );
        assert_eq!(sources(&conf, "quay.io/x/y:1"), ["quay.io/x/y:1"]);
        let e = conf
            .pull_sources(&ImageRef::parse("blocked.example/x").unwrap(), false)
            .unwrap_err();
        assert!(e.contains("blocked"), "{e}");
    }

    #[test]
    fn invalid_configs() {
        let bad = "[[registry]]\nprefix='a'\nlocation='b'\nmirror-by-digest-only=true\n[[registry.mirror]]\nlocation='m'\npull-from-mirror='tag-only'\n";
        assert!(RegistriesConf::parse(bad, Path::new("x")).is_err());
        let bad = "[[registry]]\nlocation='b'\n[[registry.mirror]]\nlocation='m'\npull-from-mirror='sometimes'\n";
        assert!(
            RegistriesConf::parse(bad, Path::new("x"))
                .unwrap_err()
                .to_string()
                .contains("sometimes")
        );
        assert!(
            RegistriesConf::parse("unqualified-search-registries = 3", Path::new("x")).is_err()
        );
    }
}
