//! The image config (the OCI image-spec's `config.json`; Docker's has the same shape), read
//! through types. Only reading: an image's ID is the digest of its config's bytes, so a config
//! is stored as it came and never written back from these types.
//!
//! Keys skiff does not use are kept in `other`, so that a config, or the container part of
//! one recorded in a container's plan, serializes to the same JSON object it was read from.

use super::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{reference}: invalid image config: {source}")]
    Json {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// What a container of the image runs by default; absent in some minimal images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootFs>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// `rootfs`: the uncompressed digests of the layers, lowest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// `config`: the defaults of a container made from the image (Docker's key names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `"6379/tcp": {}`; a port without a protocol is TCP.
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl ImageConfig {
    /// Parses a config blob; `reference` names the image in the error.
    pub fn parse(bytes: &[u8], reference: &str) -> Result<Self, ConfigError> {
        serde_json::from_slice(bytes).map_err(|source| ConfigError::Json {
            reference: reference.to_string(),
            source,
        })
    }

    /// The layers' diff_ids, lowest first (empty when the config has no `rootfs`).
    pub fn diff_ids(&self) -> &[Digest] {
        self.rootfs.as_ref().map_or(&[], |r| &r.diff_ids)
    }

    /// The container defaults, empty when the image has none.
    pub fn container(&self) -> ContainerConfig {
        self.config.clone().unwrap_or_default()
    }
}

impl ContainerConfig {
    /// The exposed TCP ports, ascending, without repeats.
    pub fn exposed_tcp_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .exposed_ports
            .iter()
            .flatten()
            .filter_map(|(key, _)| {
                let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                (proto == "tcp").then(|| port.parse().ok()).flatten()
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_and_oci_configs() {
        // Docker writes nulls where a value is absent; unknown keys survive a round trip.
        let docker = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Entrypoint":null,"Cmd":["redis-server"],"ExposedPorts":{"6379/tcp":{},"53/udp":{},"80":{}},"Hostname":"x"},"rootfs":{"type":"layers","diff_ids":["sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"]},"created":"2024-01-01T00:00:00Z"}"#;
        let c = ImageConfig::parse(docker, "redis").unwrap();
        assert_eq!(c.diff_ids().len(), 1);
        let cc = c.container();
        assert_eq!(cc.entrypoint, None);
        assert_eq!(cc.cmd.as_deref(), Some(&["redis-server".to_string()][..]));
        assert_eq!(cc.exposed_tcp_ports(), [80, 6379]);
        assert_eq!(cc.other["Hostname"], "x");
        assert_eq!(c.other["created"], "2024-01-01T00:00:00Z");
        let again: serde_json::Value = serde_json::to_value(&cc).unwrap();
        assert_eq!(again["Cmd"][0], "redis-server");
        assert_eq!(again["Hostname"], "x");

        let minimal = ImageConfig::parse(br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#, "m");
        assert_eq!(minimal.unwrap().container(), ContainerConfig::default());
        let err = ImageConfig::parse(b"[]", "img").unwrap_err().to_string();
        assert!(err.starts_with("img: invalid image config"), "{err}");
    }
}
