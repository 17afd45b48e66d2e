//! GitLab Runner's helper image: its name and tag (arch mapping, flavor prefix, version or
//! revision tag, `-pwsh`), where the runner's packages put prebuilt tarballs, and resolution
//! in the runner's order: configured `helper_image` → the store → a prebuilt tarball → the
//! registry (when the pull policy allows).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelperError {
    #[error("runner {0} predates version tags (16.8): give --revision")]
    NeedsRevision(String),
    #[error("give --version (or --revision for runners before 16.8)")]
    NoVersion,
}

pub const HELPER_REPOSITORY: &str =
    "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper";
/// Re-added on import: `docker export` tarballs lose the image's entrypoint.
pub const HELPER_ENTRYPOINT: &str = r#"ENTRYPOINT ["/usr/bin/dumb-init", "/entrypoint"]"#;

/// The runner's architecture names: amd64→x86_64, aarch64→arm64, armv6l/armv7l→arm.
pub fn runner_arch(machine: &str) -> String {
    match machine {
        "" => runner_arch(std::env::consts::ARCH),
        "amd64" | "x86_64" => "x86_64".into(),
        "aarch64" => "arm64".into(),
        "armv6l" | "armv7l" => "arm".into(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperSpec {
    pub flavor: String,
    pub arch: String,
    pub pwsh: bool,
    /// The runner version (`17.9.0`); tags use `v<X.Y.Z>` from 16.8 on.
    pub version: Option<String>,
    /// The runner revision (8 hex characters), for runners before 16.8.
    pub revision: Option<String>,
}

fn version_triplet(v: &str) -> Option<(u32, u32, u32)> {
    let v = v.trim_start_matches('v');
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let (a, b, c) = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    Some((a, b, c))
}

impl HelperSpec {
    /// The tag: `[<flavor>-]<arch>-<v<X.Y.Z> | revision>[-pwsh]`; alpine is never written.
    pub fn tag(&self) -> Result<String, HelperError> {
        let version_tag = match (&self.version, &self.revision) {
            (Some(v), rev) => match version_triplet(v) {
                Some((a, b, c)) if (a, b) >= (16, 8) => format!("v{a}.{b}.{c}"),
                Some(_) => match rev {
                    Some(r) if r.len() >= 8 => r[..8].to_string(),
                    _ => return Err(HelperError::NeedsRevision(v.clone())),
                },
                None => "latest".into(),
            },
            (None, Some(r)) if r.len() >= 8 => r[..8].to_string(),
            _ => return Err(HelperError::NoVersion),
        };
        let mut tag = String::new();
        if !self.flavor.is_empty() && self.flavor != "alpine" {
            tag.push_str(&self.flavor);
            tag.push('-');
        }
        tag.push_str(&format!("{}-{version_tag}", self.arch));
        if self.pwsh {
            tag.push_str("-pwsh");
        }
        Ok(tag)
    }

    pub fn reference(&self) -> Result<String, HelperError> {
        Ok(format!("{HELPER_REPOSITORY}:{}", self.tag()?))
    }

    /// `prebuilt-<flavor>-<arch>[-pwsh]`: the flavor here includes alpine.
    pub fn prebuilt_base(&self) -> String {
        let flavor = if self.flavor.is_empty() {
            "alpine"
        } else {
            &self.flavor
        };
        format!(
            "prebuilt-{flavor}-{}{}",
            self.arch,
            if self.pwsh { "-pwsh" } else { "" }
        )
    }
}

/// The directories GitLab Runner searches (relative to a /usr/bin or /usr/local/bin binary,
/// and the deb/rpm package's), after any given with --dir.
pub fn search_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = extra.to_vec();
    for d in [
        "/usr/lib/gitlab-runner/helper-images",
        "/usr/local/bin/out/helper-images",
        "/usr/bin/out/helper-images",
        "/usr/helper-images",
        "/usr/local/helper-images",
    ] {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join("out/helper-images"));
    }
    dirs
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrebuiltKind {
    /// A `docker export` root filesystem: imported, with the entrypoint re-added.
    RootfsXz,
    /// A docker-archive (`docker save`), loaded and tagged.
    DockerArchiveZst,
}

/// The runner's file order per directory: `.docker.tar.zst`, `.tar.xz`, then the same with
/// `amd64` for `x86_64`.
pub fn find_prebuilt(dirs: &[PathBuf], spec: &HelperSpec) -> Option<(PathBuf, PrebuiltKind)> {
    let base = spec.prebuilt_base();
    let mut bases = vec![base.clone()];
    if base.contains("x86_64") {
        bases.push(base.replace("x86_64", "amd64"));
    }
    for dir in dirs {
        for b in &bases {
            for (ext, kind) in [
                (".docker.tar.zst", PrebuiltKind::DockerArchiveZst),
                (".tar.xz", PrebuiltKind::RootfsXz),
            ] {
                let p = dir.join(format!("{b}{ext}"));
                if p.is_file() {
                    return Some((p, kind));
                }
            }
        }
    }
    None
}

/// Every `prebuilt-*.docker.tar.zst` and `prebuilt-*.tar.xz` in the directories, with the
/// spec its name stands for; per flavor and arch the first found wins (the zst first).
pub fn list_prebuilt(
    dirs: &[PathBuf],
    version: Option<&str>,
    revision: Option<&str>,
) -> Vec<(PathBuf, HelperSpec)> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        // The runner prefers .docker.tar.zst over .tar.xz of the same name.
        names.sort_by_key(|p| (p.to_string_lossy().ends_with(".tar.xz"), p.clone()));
        for p in names {
            let Some(spec) = parse_prebuilt_name(&p, version, revision) else {
                continue;
            };
            // The first directory wins, as in the runner; amd64 files stand for x86_64.
            if seen.insert((spec.flavor.clone(), spec.arch.clone(), spec.pwsh)) {
                out.push((p, spec));
            }
        }
    }
    out
}

fn parse_prebuilt_name(
    p: &Path,
    version: Option<&str>,
    revision: Option<&str>,
) -> Option<HelperSpec> {
    let name = p.file_name()?.to_str()?;
    let stem = name.strip_prefix("prebuilt-")?;
    let stem = stem
        .strip_suffix(".docker.tar.zst")
        .or_else(|| stem.strip_suffix(".tar.xz"))?;
    let (stem, pwsh) = match stem.strip_suffix("-pwsh") {
        Some(s) => (s, true),
        None => (stem, false),
    };
    let (flavor, arch) = stem.rsplit_once('-')?;
    Some(HelperSpec {
        flavor: flavor.to_string(),
        arch: runner_arch(arch),
        pwsh,
        version: version.map(str::to_string),
        revision: revision.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        flavor: &str,
        arch: &str,
        pwsh: bool,
        version: Option<&str>,
        revision: Option<&str>,
    ) -> HelperSpec {
        HelperSpec {
            flavor: flavor.into(),
            arch: runner_arch(arch),
            pwsh,
            version: version.map(Into::into),
            revision: revision.map(Into::into),
        }
    }

    #[test]
    fn tag_table() {
        let cases = [
            (
                spec("alpine", "amd64", false, Some("17.9.0"), None),
                "x86_64-v17.9.0",
            ),
            (
                spec("", "x86_64", false, Some("19.4.0~pre.12.g1"), None),
                "x86_64-v19.4.0",
            ),
            (
                spec("ubuntu", "aarch64", false, Some("17.9.0"), None),
                "ubuntu-arm64-v17.9.0",
            ),
            (
                spec("alpine3.21", "amd64", true, Some("17.7.0"), None),
                "alpine3.21-x86_64-v17.7.0-pwsh",
            ),
            (
                spec("alpine", "armv7l", false, Some("16.8.0"), None),
                "arm-v16.8.0",
            ),
            (
                spec("alpine", "s390x", false, Some("18.0.1"), None),
                "s390x-v18.0.1",
            ),
            (
                spec("alpine", "riscv64", false, Some("v18.1.0"), None),
                "riscv64-v18.1.0",
            ),
            (
                spec(
                    "alpine",
                    "amd64",
                    false,
                    Some("15.8.0"),
                    Some("12335144abcdef"),
                ),
                "x86_64-12335144",
            ),
            (
                spec("alpine", "amd64", false, None, Some("12335144")),
                "x86_64-12335144",
            ),
            (
                spec("alpine", "amd64", false, Some("development"), None),
                "x86_64-latest",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(s.tag().unwrap(), want, "{s:?}");
        }
        assert!(
            spec("alpine", "amd64", false, Some("15.8.0"), None)
                .tag()
                .is_err(),
            "old runners need a revision"
        );
        assert_eq!(
            spec("alpine", "amd64", false, Some("17.9.0"), None)
                .reference()
                .unwrap(),
            "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.9.0"
        );
        assert_eq!(
            spec("", "amd64", true, None, None).prebuilt_base(),
            "prebuilt-alpine-x86_64-pwsh"
        );
        assert_eq!(
            spec("ubi-fips", "amd64", false, None, None).prebuilt_base(),
            "prebuilt-ubi-fips-x86_64"
        );
    }

    #[test]
    fn prebuilt_names_and_search_order() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        for f in [
            "prebuilt-alpine-amd64.tar.xz",
            "prebuilt-ubi-fips-x86_64.tar.xz",
            "prebuilt-alpine-x86_64-pwsh.tar.xz",
            "readme.txt",
        ] {
            std::fs::write(a.join(f), "").unwrap();
        }
        std::fs::write(b.join("prebuilt-alpine-x86_64.tar.xz"), "").unwrap();
        let s = spec("alpine", "amd64", false, Some("17.9.0"), None);
        let dirs = vec![a.clone(), b.clone()];
        assert_eq!(
            find_prebuilt(&dirs, &s).unwrap().0,
            a.join("prebuilt-alpine-amd64.tar.xz"),
            "amd64 names count, first dir wins"
        );
        let listed: Vec<String> = list_prebuilt(&dirs, Some("17.9.0"), None)
            .iter()
            .map(|(_, s)| s.tag().unwrap())
            .collect();
        assert_eq!(
            listed,
            [
                "x86_64-v17.9.0",
                "x86_64-v17.9.0-pwsh",
                "ubi-fips-x86_64-v17.9.0"
            ]
        );
    }
}
