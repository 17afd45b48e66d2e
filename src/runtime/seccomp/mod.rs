//! Seccomp: the container's syscall filter, podman's way. A profile in containers-common's
//! format (`seccomp.json`: an allow-list with argument rules, rules that apply with or
//! without a capability or on some architectures only) becomes the runtime spec's
//! `linux.seccomp` for the container's capabilities and this host's architecture. Every
//! backend then applies the same filter.

pub mod bpf;
mod builtin;
#[cfg(test)]
mod tests;

use nix::errno::Errno;
use oci_spec::runtime::{Capability, LinuxSeccomp};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Where podman reads the default profile: the administrator's override, then the package's.
pub const SYSTEM_PROFILES: &[&str] = &[
    "/etc/containers/seccomp.json",
    "/usr/share/containers/seccomp.json",
];

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile {}: cannot read it", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {source_name}: not a seccomp profile")]
    Json {
        source_name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("seccomp profile {source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
    #[error("compiled seccomp filter {}: cannot write it", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp filter: {what}")]
    Compile {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp filter: exporting the compiled program")]
    Export(#[source] std::io::Error),
    #[error(
        "security option {0:?}: expected seccomp=unconfined, seccomp=builtin, seccomp=FILE, seccomp=JSON, no-new-privileges, label=disable or apparmor=unconfined"
    )]
    Option(String),
}

/// Which filter a container gets (`--security-opt seccomp=...`, the runner's `security_opt`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompPolicy {
    /// containers-common's profile where the system has it, else the built-in copy of it.
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile file, read when the container is created and when it starts.
    File(PathBuf),
    /// A profile given inline, as the runner passes a file's contents to docker.
    Inline(String),
}

impl SeccompPolicy {
    /// The policy that a list of security options sets: `seccomp=VALUE` (or docker's older
    /// `seccomp:VALUE`), the last one winning. Options that ask for what skiff always does
    /// (`no-new-privileges`, no SELinux label, no AppArmor profile) are accepted; others are
    /// refused by name.
    pub fn from_security_opts(opts: &[String]) -> Result<Self, SeccompError> {
        let mut policy = SeccompPolicy::Default;
        for opt in opts {
            let (key, value) = match opt.split_once(['=', ':']) {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            match (key, value) {
                ("seccomp", Some("unconfined")) => policy = SeccompPolicy::Unconfined,
                ("seccomp", Some("builtin" | "default")) => policy = SeccompPolicy::Default,
                ("seccomp", Some(json)) if json.trim_start().starts_with('{') => {
                    policy = SeccompPolicy::Inline(json.to_string())
                }
                ("seccomp", Some(file)) if !file.is_empty() => {
                    policy = SeccompPolicy::File(PathBuf::from(file))
                }
                ("no-new-privileges", None | Some("true")) => {}
                ("label", Some("disable")) | ("apparmor", Some("unconfined")) => {}
                _ => return Err(SeccompError::Option(opt.clone())),
            }
        }
        Ok(policy)
    }

    /// The profile, read but not checked: for the shim, which converts it for its container
    /// right away (a profile changed since it was checked fails there, named).
    pub fn load_unchecked(&self) -> Result<Option<Profile>, SeccompError> {
        self.read(Profile::parse_unchecked)
    }

    fn read(
        &self,
        parse: fn(&[u8], &str) -> Result<Profile, SeccompError>,
    ) -> Result<Option<Profile>, SeccompError> {
        self.source()?
            .map(|source| match source {
                Source::Builtin => Ok(builtin::profile()),
                Source::Bytes { bytes, name } => parse(&bytes, &name),
            })
            .transpose()
    }

    /// What this policy's profile is made from, before any parsing (`None`: unconfined).
    pub fn source(&self) -> Result<Option<Source>, SeccompError> {
        let file = |path: &Path| match std::fs::read(path) {
            Ok(bytes) => Ok(Some(Source::Bytes {
                bytes,
                name: path.display().to_string(),
            })),
            Err(source) => Err(SeccompError::Read {
                path: path.to_path_buf(),
                source,
            }),
        };
        match self {
            SeccompPolicy::Unconfined => Ok(None),
            SeccompPolicy::Default => {
                match SYSTEM_PROFILES.iter().map(Path::new).find(|p| p.exists()) {
                    Some(path) => file(path),
                    None => Ok(Some(Source::Builtin)),
                }
            }
            SeccompPolicy::File(path) => file(path),
            SeccompPolicy::Inline(json) => Ok(Some(Source::Bytes {
                bytes: json.as_bytes().to_vec(),
                name: "(inline)".into(),
            })),
        }
    }

    /// Checks the profile as `load` does, unless this skiff on this kernel already checked
    /// the same bytes: a mark in `cache` (the store's) says so, so that a start neither
    /// parses nor converts the system's profile again only to learn that it is good.
    pub fn check(&self, cache: &Path) -> Result<(), SeccompError> {
        let Some(Source::Bytes { bytes, name }) = self.source()? else {
            // Unconfined, or the built-in profile, which the tests check.
            return Ok(());
        };
        let mark = bpf::checked_mark(cache, &bytes);
        if mark.exists() {
            return Ok(());
        }
        Profile::parse(&bytes, &name)?;
        let marked = std::fs::create_dir_all(cache).and_then(|()| std::fs::write(&mark, b""));
        if let Err(e) = marked {
            tracing::debug!("marking the seccomp profile checked: {e}");
        }
        Ok(())
    }
}

/// What a policy's profile is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in copy of containers-common's profile.
    Builtin,
    /// A profile file's bytes (`name`: its path), or the inline text's.
    Bytes { bytes: Vec<u8>, name: String },
}

impl Source {
    /// What names it among compiled programs.
    pub fn key(&self) -> &[u8] {
        match self {
            Source::Builtin => b"(built-in)",
            Source::Bytes { bytes, .. } => bytes,
        }
    }

    /// The profile, parsed but not checked (the shim converts it right away).
    pub fn profile_unchecked(&self) -> Result<Profile, SeccompError> {
        match self {
            Source::Builtin => Ok(builtin::profile()),
            Source::Bytes { bytes, name } => Profile::parse_unchecked(bytes, name),
        }
    }
}

/// containers-common's profile format (also docker's, with `architectures` for `archMap`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    /// The errno's name: it wins over the number, whose value differs between architectures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub architectures: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub syscalls: Vec<Rule>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub sub_architectures: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub names: Vec<String>,
    /// Docker's older single-name form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub includes: Filter,
    #[serde(default)]
    pub excludes: Filter,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// When a rule applies: capabilities in the bounding set, this host's architecture (Go's
/// names: amd64, arm64...), and docker's `minKernel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// This host, as a profile's conditions name it.
#[derive(Debug, Clone)]
pub struct Host {
    /// Go's name of the architecture (`amd64`).
    pub arch: &'static str,
    /// libseccomp's name of it (`SCMP_ARCH_X86_64`), as `archMap` keys it.
    pub seccomp_arch: &'static str,
    /// The kernel's release, major and minor.
    pub kernel: (u32, u32),
}

impl Host {
    pub fn this() -> Host {
        let (arch, seccomp_arch) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
            "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
            "x86" => ("386", "SCMP_ARCH_X86"),
            "arm" => ("arm", "SCMP_ARCH_ARM"),
            "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
            "s390x" => ("s390x", "SCMP_ARCH_S390X"),
            "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
            other => (other, ""),
        };
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .to_string();
        Host {
            arch,
            seccomp_arch,
            kernel: parse_kernel(&release).unwrap_or((0, 0)),
        }
    }
}

fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl Profile {
    pub fn read(path: &Path) -> Result<Profile, SeccompError> {
        let bytes = std::fs::read(path).map_err(|source| SeccompError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Profile::parse(&bytes, &path.display().to_string())
    }

    fn parse_unchecked(bytes: &[u8], source_name: &str) -> Result<Profile, SeccompError> {
        serde_json::from_slice(bytes).map_err(|source| SeccompError::Json {
            source_name: source_name.to_string(),
            source,
        })
    }

    /// Parses and checks a profile: it must convert for a container with every capability,
    /// so that a broken rule is named now, not when some container starts.
    pub fn parse(bytes: &[u8], source_name: &str) -> Result<Profile, SeccompError> {
        let profile = Profile::parse_unchecked(bytes, source_name)?;
        let all: HashSet<Capability> = super::caps::ALL_CAPS.iter().copied().collect();
        profile.to_spec(&all, &Host::this(), source_name)?;
        Ok(profile)
    }

    /// The runtime spec's filter for a container whose bounding set is `bounding`, on `host`:
    /// containers-common's conversion (its `setupSeccomp`), rule order kept.
    pub fn to_spec(
        &self,
        bounding: &HashSet<Capability>,
        host: &Host,
        source_name: &str,
    ) -> Result<LinuxSeccomp, SeccompError> {
        let invalid = |reason: String| SeccompError::Invalid {
            source_name: source_name.to_string(),
            reason,
        };
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(invalid("both architectures and archMap are set".into()));
        }
        let held: HashSet<String> = bounding.iter().map(cap_name).collect();
        let mut architectures = self.architectures.clone();
        if let Some(native) = self
            .arch_map
            .iter()
            .find(|a| a.architecture == host.seccomp_arch)
        {
            architectures.push(native.architecture.clone());
            architectures.extend(native.sub_architectures.iter().cloned());
        }
        let mut syscalls = vec![];
        for (i, rule) in self.syscalls.iter().enumerate() {
            if !rule.applies(&held, host) {
                continue;
            }
            let names = match (&rule.name, rule.names.is_empty()) {
                (Some(_), false) => {
                    return Err(invalid(format!(
                        "syscalls[{i}]: both name and names are set"
                    )));
                }
                (Some(name), true) => vec![name.clone()],
                (None, _) => rule.names.clone(),
            };
            let errno = errno_number(rule.errno.as_deref(), rule.errno_ret)
                .map_err(|e| invalid(format!("syscalls[{i}]: {e}")))?;
            syscalls.push(serde_json::json!({
                "names": names,
                "action": rule.action,
                "errnoRet": errno,
                "args": (!rule.args.is_empty()).then_some(&rule.args),
            }));
        }
        let default_errno = errno_number(self.default_errno.as_deref(), self.default_errno_ret)
            .map_err(|e| invalid(format!("defaultErrno: {e}")))?;
        let mut spec = serde_json::json!({
            "defaultAction": self.default_action,
            "defaultErrnoRet": default_errno,
            "architectures": architectures,
            "flags": self.flags,
            "syscalls": syscalls,
        });
        if let Some(path) = &self.listener_path {
            spec["listenerPath"] = path.clone().into();
        }
        if let Some(meta) = &self.listener_metadata {
            spec["listenerMetadata"] = meta.clone().into();
        }
        strip_nulls(&mut spec);
        serde_json::from_value(spec).map_err(|e| invalid(e.to_string()))
    }
}

impl Rule {
    /// containers-common's conditions, and docker's `minKernel`: an excluded architecture or
    /// capability drops the rule, and so does a missing included one.
    fn applies(&self, held: &HashSet<String>, host: &Host) -> bool {
        let (inc, exc) = (&self.includes, &self.excludes);
        let kernel_at_least = |min: &Option<String>| {
            min.as_deref()
                .and_then(parse_kernel)
                .is_none_or(|min| host.kernel >= min)
        };
        !exc.arches.iter().any(|a| a == host.arch)
            && !exc.caps.iter().any(|c| held.contains(c))
            && (exc.min_kernel.is_none() || !kernel_at_least(&exc.min_kernel))
            && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == host.arch))
            && inc.caps.iter().all(|c| held.contains(c))
            && kernel_at_least(&inc.min_kernel)
    }
}

pub(crate) fn cap_name(cap: &Capability) -> String {
    serde_json::to_value(cap)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The errno a rule returns: its name when given (or a number written as one), else its number.
fn errno_number(name: Option<&str>, number: Option<u32>) -> Result<Option<u32>, String> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(number);
    };
    if let Ok(n) = name.parse::<u32>() {
        return Ok(Some(n));
    }
    ERRNOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, errno)| Some(*errno as i32 as u32))
        .ok_or_else(|| format!("unknown errno {name:?}"))
}

/// The errno names a profile may use; the numbers are this architecture's.
const ERRNOS: &[(&str, Errno)] = &[
    ("EPERM", Errno::EPERM),
    ("ENOENT", Errno::ENOENT),
    ("ESRCH", Errno::ESRCH),
    ("EINTR", Errno::EINTR),
    ("EIO", Errno::EIO),
    ("ENXIO", Errno::ENXIO),
    ("E2BIG", Errno::E2BIG),
    ("EBADF", Errno::EBADF),
    ("EAGAIN", Errno::EAGAIN),
    ("ENOMEM", Errno::ENOMEM),
    ("EACCES", Errno::EACCES),
    ("EFAULT", Errno::EFAULT),
    ("EBUSY", Errno::EBUSY),
    ("EEXIST", Errno::EEXIST),
    ("ENODEV", Errno::ENODEV),
    ("EINVAL", Errno::EINVAL),
    ("ENOSPC", Errno::ENOSPC),
    ("EROFS", Errno::EROFS),
    ("ENOSYS", Errno::ENOSYS),
    ("EOPNOTSUPP", Errno::EOPNOTSUPP),
    ("EAFNOSUPPORT", Errno::EAFNOSUPPORT),
    ("EPROTONOSUPPORT", Errno::EPROTONOSUPPORT),
    ("ENOTSUP", Errno::EOPNOTSUPP),
];

/// `null` fields become absent: the spec's types take absence, not null, for "none".
fn strip_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}
