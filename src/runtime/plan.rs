//! `plan.json`: everything a container's shim needs, written once when the container is
//! created, and the typed options it is made of.

use super::backend::RuntimeChoice;
use super::network::Network;
use crate::oci::config::ContainerConfig;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{option} {value:?}: expected {expected}")]
    BadOption {
        option: String,
        value: String,
        expected: &'static str,
    },
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid plan", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn null_as_default<'de, D: Deserializer<'de>>(d: D) -> Result<ContainerConfig, D::Error> {
    Ok(Option::<ContainerConfig>::deserialize(d)?.unwrap_or_default())
}

/// A bind mount from `-v SRC:DST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

impl Volume {
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let bad = || PlanError::BadOption {
            option: "-v".into(),
            value: text.into(),
            expected: "SRC:DST[:ro|rw], both absolute",
        };
        let mut parts = text.split(':');
        let (source, destination) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let read_only = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() || !source.starts_with('/') || !destination.starts_with('/') {
            return Err(bad());
        }
        Ok(Self {
            source: source.into(),
            destination: destination.into(),
            read_only,
        })
    }
}

/// Everything the shim needs, written by `skiff run` as `plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPlan {
    pub id: String,
    pub image: String,
    /// The image config's `config` object (Entrypoint, Cmd, Env, WorkingDir, User). Plans of
    /// images without one hold `null`.
    #[serde(deserialize_with = "null_as_default")]
    pub image_config: ContainerConfig,
    /// Layer directories, top first.
    pub lowers: Vec<PathBuf>,
    pub dir: PathBuf,
    pub command: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: String,
    pub network: Network,
    pub runtime: RuntimeChoice,
    /// Remove the container's directory when it exits (run --rm), from inside the namespace.
    #[serde(default)]
    pub remove: bool,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub tmpfs: Vec<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--dns` servers; empty: what the network gives.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--add-host NAME:IP` entries and pod aliases, written to /etc/hosts.
    #[serde(default)]
    pub hosts: Vec<(String, String)>,
    /// The pod whose user and network namespaces the container joins.
    #[serde(default)]
    pub pod: Option<PathBuf>,
    #[serde(default)]
    pub limits: Limits,
    /// `-t`: a pseudo-terminal for the container's stdio.
    #[serde(default)]
    pub tty: bool,
    /// The skiff process that wrote the plan: while its shim has recorded nothing yet, the
    /// container is abandoned once this process is gone.
    #[serde(default)]
    pub creator: Option<u32>,
}

/// `--memory`, `--cpus`, `--pids-limit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none() && self.pids.is_none()
    }
}

impl RunPlan {
    /// The plan in a container directory.
    pub fn read(dir: &Path) -> Result<Self, PlanError> {
        let path = dir.join("plan.json");
        let bytes = std::fs::read(&path).map_err(|source| PlanError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| PlanError::Parse { path, source })
    }

    /// Written once, before any shim reads it.
    pub fn write(&self, dir: &Path) -> Result<(), PlanError> {
        let path = dir.join("plan.json");
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| PlanError::Parse {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, bytes).map_err(|source| PlanError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_of_earlier_versions_still_read() {
        // An image without `config` was recorded as null; unknown keys survive a round trip.
        let old = serde_json::json!({
            "id": "c", "image": "i", "image_config": null, "lowers": [], "dir": "/x",
            "command": [], "entrypoint": null, "env": [], "workdir": null, "user": null,
            "hostname": "h", "network": "host", "runtime": {"kind": "libcontainer"}
        });
        let p: RunPlan = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(p.image_config, ContainerConfig::default());
        let mut with = old;
        with["image_config"] = serde_json::json!({"Cmd": ["sh"], "Hostname": "x"});
        let p: RunPlan = serde_json::from_value(with).unwrap();
        assert_eq!(p.image_config.cmd.as_deref(), Some(&["sh".to_string()][..]));
        let again = serde_json::to_value(&p).unwrap();
        assert_eq!(again["image_config"]["Hostname"], "x");
        assert_eq!(again["network"], "host");
    }
}
