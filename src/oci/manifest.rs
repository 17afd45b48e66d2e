//! Manifest and index wire formats (OCI and Docker schema 2), media types, size limits and
//! platform selection.

use crate::oci::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A manifest or index that skiff cannot use, named by the reference it was read for.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "{reference}: Docker schema 1 manifests are not supported (deprecated since 2017); ask the publisher to push a schema 2 or OCI image"
    )]
    Schema1 { reference: String },
    #[error("{reference}: unsupported manifest media type {media_type}")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
    },
    #[error("{reference}: invalid manifest: {reason}")]
    Bad { reference: String, reason: String },
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Sent as `Accept`; schema1 is listed so a registry answers with it rather than 404,
/// which lets us say clearly that it is unsupported.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, application/vnd.docker.distribution.manifest.v1+json;q=0.5";

/// As containers/image and CNCF distribution: a manifest is at most 4 MiB.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;
pub const MAX_CONFIG_SIZE: usize = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

pub enum Parsed {
    Image(Box<ImageManifest>),
    Index(ImageIndex),
}

/// Classifies manifest bytes by `Content-Type`, then by the document's own `mediaType`
/// and shape, as containers/image's `GuessMIMEType` does.
pub fn parse(
    bytes: &[u8],
    content_type: Option<&str>,
    reference: &str,
) -> Result<(Parsed, String), ManifestError> {
    let bad = |reason: String| ManifestError::Bad {
        reference: reference.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let declared = value
        .get("mediaType")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1)
        || matches!(content_type, Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED))
    {
        return Err(ManifestError::Schema1 {
            reference: reference.to_string(),
        });
    }
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
        .filter(|c| [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&c.as_str()));
    let media_type = match (ct, declared) {
        (Some(ct), Some(d)) if ct != d => {
            return Err(bad(format!(
                "Content-Type {ct} does not match its mediaType {d}"
            )));
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) if value.get("manifests").is_some() => OCI_INDEX.to_string(),
        (None, None) if value.get("config").is_some() => OCI_MANIFEST.to_string(),
        (None, None) => return Err(bad("neither a manifest nor an index".into())),
    };
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok((
            Parsed::Index(serde_json::from_value(value).map_err(|e| bad(e.to_string()))?),
            media_type,
        )),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok((
            Parsed::Image(Box::new(
                serde_json::from_value(value).map_err(|e| bad(e.to_string()))?,
            )),
            media_type,
        )),
        other => Err(ManifestError::UnsupportedMediaType {
            reference: reference.to_string(),
            media_type: other.to_string(),
        }),
    }
}

/// A wanted platform: `os/arch[/variant]`, normalized as containerd does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let v = variant.map(str::to_ascii_lowercase);
    match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), v.filter(|v| v != "v1")),
        "i386" | "386" => ("386".into(), v),
        "aarch64" | "arm64" => (
            "arm64".into(),
            match v.as_deref() {
                None | Some("8" | "v8" | "v8.0") => None,
                Some("9" | "9.0" | "v9.0") => Some("v9".into()),
                Some(other) => Some(other.to_string()),
            },
        ),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => (
            "arm".into(),
            match v.as_deref() {
                None | Some("7") => Some("v7".into()),
                Some(x) if !x.starts_with('v') => Some(format!("v{x}")),
                Some(x) => Some(x.to_string()),
            },
        ),
        other => (other.to_string(), v),
    }
}

impl PlatformSpec {
    pub fn parse(s: &str) -> Result<PlatformSpec, String> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "invalid platform {s:?}: expected OS/ARCH[/VARIANT]"
            ));
        }
        let os = match parts[0].to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            o => o.to_string(),
        };
        let (arch, variant) = normalize_arch(parts[1], parts.get(2).copied());
        Ok(PlatformSpec { os, arch, variant })
    }

    /// `--platform`, or this host's platform when none is given.
    pub fn parse_or_host(s: Option<&str>) -> Result<PlatformSpec, String> {
        s.map_or_else(|| Ok(Self::host()), Self::parse)
    }

    pub fn host() -> PlatformSpec {
        let (arch, variant) = normalize_arch(std::env::consts::ARCH, None);
        PlatformSpec {
            os: std::env::consts::OS.to_string(),
            arch,
            variant,
        }
    }

    /// Variants acceptable for this platform, best first (containers/image's table:
    /// arm falls back v8→v7→v6→v5; arm64 treats "" and "v8" alike).
    fn variant_candidates(&self) -> Vec<Option<String>> {
        let s = |x: &str| Some(x.to_string());
        match (self.arch.as_str(), self.variant.as_deref()) {
            ("arm64", None) => vec![None, s("v8")],
            ("arm", Some(v)) => {
                let order = ["v8", "v7", "v6", "v5"];
                let start = order.iter().position(|o| *o == v).unwrap_or(0);
                let mut out: Vec<_> = order[start..].iter().map(|o| s(o)).collect();
                out.push(None);
                out
            }
            (_, Some(v)) => vec![s(v), None],
            (_, None) => vec![None],
        }
    }

    /// Picks the index entry for this platform; the first of the best-ranked wins.
    pub fn select<'a>(&self, manifests: &'a [Descriptor]) -> Option<&'a Descriptor> {
        let candidates = self.variant_candidates();
        let mut best: Option<(usize, &Descriptor)> = None;
        for d in manifests {
            let rank = match &d.platform {
                None => candidates.len(),
                Some(p) => {
                    let (arch, variant) = normalize_arch(&p.architecture, p.variant.as_deref());
                    let variant = if arch == "arm64" && variant.as_deref() == Some("v8") {
                        None
                    } else {
                        variant
                    };
                    if !p.os.eq_ignore_ascii_case(&self.os) || arch != self.arch {
                        continue;
                    }
                    match candidates.iter().position(|c| *c == variant) {
                        Some(i) => i,
                        None if self.variant.is_none() => candidates.len() - 1,
                        None => continue,
                    }
                }
            };
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, d));
            }
        }
        best.map(|(_, d)| d)
    }
}

pub fn describe_platforms(manifests: &[Descriptor]) -> String {
    let list: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(n: u8, platform: Option<(&str, &str, Option<&str>)>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32))
                .parse()
                .unwrap(),
            size: 1,
            urls: None,
            annotations: None,
            platform: platform.map(|(os, a, v)| Platform {
                architecture: a.into(),
                os: os.into(),
                variant: v.map(str::to_string),
                os_version: None,
            }),
        }
    }

    #[test]
    fn platform_parse_table() {
        for (input, want) in [
            ("linux/amd64", "linux/amd64"),
            ("LINUX/x86_64", "linux/amd64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/8", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm", "linux/arm/v7"),
            ("macos/x86_64", "darwin/amd64"),
        ] {
            assert_eq!(
                PlatformSpec::parse(input).unwrap().to_string(),
                want,
                "{input}"
            );
        }
        assert!(PlatformSpec::parse("linux").is_err());
        assert!(PlatformSpec::parse("linux//").is_err());
    }

    #[test]
    fn selection_table() {
        let index = vec![
            desc(1, Some(("linux", "amd64", None))),
            desc(2, Some(("linux", "arm64", Some("v8")))),
            desc(3, Some(("linux", "arm", Some("v6")))),
            desc(4, Some(("linux", "arm", Some("v7")))),
            desc(5, Some(("windows", "amd64", None))),
            desc(6, None),
        ];
        let pick = |p: &str| {
            PlatformSpec::parse(p)
                .unwrap()
                .select(&index)
                .map(|d| d.digest.hex()[..2].to_string())
        };
        assert_eq!(pick("linux/amd64").as_deref(), Some("01"));
        assert_eq!(
            pick("linux/arm64").as_deref(),
            Some("02"),
            "arm64 matches variant v8"
        );
        assert_eq!(pick("linux/arm64/v8").as_deref(), Some("02"));
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("04"));
        assert_eq!(pick("linux/arm/v6").as_deref(), Some("03"));
        assert_eq!(
            pick("linux/arm/v8").as_deref(),
            Some("04"),
            "v8 falls back to v7"
        );
        assert_eq!(pick("windows/amd64").as_deref(), Some("05"));
        assert_eq!(
            pick("linux/s390x").as_deref(),
            Some("06"),
            "entries without platform are last resort"
        );
        let no_fallback = vec![desc(1, Some(("linux", "amd64", None)))];
        assert!(
            PlatformSpec::parse("linux/arm64")
                .unwrap()
                .select(&no_fallback)
                .is_none()
        );
    }

    #[test]
    fn parse_rejects_schema1_and_mismatch() {
        let s1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            parse(s1, None, "r"),
            Err(ManifestError::Schema1 { .. })
        ));
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","size":2},"layers":[]}"#;
        assert!(parse(m, Some(OCI_MANIFEST), "r").is_ok());
        assert!(parse(m, Some(DOCKER_MANIFEST), "r").is_err());
        let (_, mt) = parse(m, Some("application/octet-stream"), "r").unwrap();
        assert_eq!(mt, OCI_MANIFEST);
        let art = br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json","config":{"mediaType":"x","digest":"sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","size":2},"layers":[]}"#;
        assert!(matches!(
            parse(art, None, "r"),
            Err(ManifestError::UnsupportedMediaType { .. })
        ));
    }
}
