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
    #[error(
        "working directory {0:?}: not under /proc, whose descriptor links could lead out of the container"
    )]
    ProcWorkdir(String),
    #[error("--env-file {}", path.display())]
    EnvFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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

/// A bind mount from `-v SRC:DST[:OPTIONS]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// `idmap` (podman's option): in a container of root with ids of its own, the files'
    /// owners are shown through the container's map, so that its root owns what host root
    /// owns there (and what it writes is owned by host root). Without it the container's
    /// ids are what the host sees.
    #[serde(default)]
    pub idmap: bool,
}

impl Volume {
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let bad = || PlanError::BadOption {
            option: "-v".into(),
            value: text.into(),
            expected: "SRC:DST[:OPTIONS], both absolute; OPTIONS: ro, rw, idmap, comma-separated",
        };
        let mut parts = text.split(':');
        let (source, destination) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let (mut read_only, mut idmap) = (false, false);
        for option in parts.next().into_iter().flat_map(|o| o.split(',')) {
            match option {
                "rw" => read_only = false,
                "ro" => read_only = true,
                "idmap" => idmap = true,
                _ => return Err(bad()),
            }
        }
        if parts.next().is_some() || !source.starts_with('/') || !destination.starts_with('/') {
            return Err(bad());
        }
        Ok(Self {
            source: source.into(),
            destination: destination.into(),
            read_only,
            idmap,
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
    /// The syscall filter; plans written before it existed had none.
    #[serde(default = "unconfined")]
    pub seccomp: super::seccomp::SeccompPolicy,
    /// As root: the ids the container runs as (none: host ids, `--userns=host`). A pod's
    /// members hold their pod's.
    #[serde(default)]
    pub userns: Option<super::userns::Allocation>,
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

/// `512m`, `1g`, `1048576`: podman's units (b, k, m, g), binary multiples.
pub fn parse_bytes(text: &str) -> Result<i64, PlanError> {
    let t = text.trim().to_ascii_lowercase();
    let (num, mult) = match t.strip_suffix('b').unwrap_or(&t) {
        s if s.ends_with('k') => (&s[..s.len() - 1], 1i64 << 10),
        s if s.ends_with('m') => (&s[..s.len() - 1], 1 << 20),
        s if s.ends_with('g') => (&s[..s.len() - 1], 1 << 30),
        s => (s, 1),
    };
    let n: f64 = num.parse().map_err(|_| PlanError::BadOption {
        option: "--memory".into(),
        value: text.into(),
        expected: "a size like 512m or 1g",
    })?;
    Ok((n * mult as f64) as i64)
}

/// `--add-host NAME:IP` entries.
pub fn parse_hosts(entries: &[String]) -> Result<Vec<(String, String)>, PlanError> {
    entries
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, ip)| (n.to_string(), ip.to_string()))
                .ok_or_else(|| PlanError::BadOption {
                    option: "--add-host".into(),
                    value: h.clone(),
                    expected: "NAME:IP",
                })
        })
        .collect()
}

/// `--entrypoint`: a JSON array gives several words (`""` none), anything else one word.
pub fn parse_entrypoint(text: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(text).unwrap_or_else(|_| vec![text.to_string()])
}

/// `--env-file` lines, then `-e`; a bare KEY takes its value from this process's environment.
pub fn resolve_env(files: &[PathBuf], env: &[String]) -> Result<Vec<String>, PlanError> {
    let mut from_files = vec![];
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|source| PlanError::EnvFile {
            path: f.clone(),
            source,
        })?;
        from_files.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    Ok(from_files
        .iter()
        .chain(env)
        .map(|e| match e.contains('=') {
            true => e.clone(),
            false => format!("{e}={}", std::env::var(e).unwrap_or_default()),
        })
        .collect())
}

/// A working directory must stay inside the container: `/proc/self/fd/N` would reach a
/// descriptor the runtime leaked (the CVE-2024-21626 class). The backends check after
/// `chdir`; this refuses before anything starts, with words.
pub fn check_workdir(workdir: Option<&str>) -> Result<(), PlanError> {
    let Some(dir) = workdir else { return Ok(()) };
    let normal: Vec<&str> = dir
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    match normal.first() {
        Some(&"proc") => Err(PlanError::ProcWorkdir(dir.to_string())),
        _ => Ok(()),
    }
}

fn unconfined() -> super::seccomp::SeccompPolicy {
    super::seccomp::SeccompPolicy::Unconfined
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
        // The environment may hold a job's secrets: readable by the owner only.
        crate::proc::write_atomic_mode(&path, &bytes, Some(0o600), crate::proc::Durability::Replace)
            .map_err(|source| PlanError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_directories_stay_out_of_proc() {
        for (dir, ok) in [
            ("/", true),
            ("/builds/project", true),
            ("/process", true),
            ("/proc/self/fd/7", false),
            ("//proc/1/cwd", false),
            ("/./proc", false),
            ("proc/self/cwd", false),
        ] {
            assert_eq!(check_workdir(Some(dir)).is_ok(), ok, "{dir}");
        }
        assert!(check_workdir(None).is_ok());
    }

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
        // A container made before filters existed starts as it was made: without one.
        assert_eq!(
            p.seccomp,
            crate::runtime::seccomp::SeccompPolicy::Unconfined
        );
        let mut with = old;
        with["image_config"] = serde_json::json!({"Cmd": ["sh"], "Hostname": "x"});
        let p: RunPlan = serde_json::from_value(with).unwrap();
        assert_eq!(p.image_config.cmd.as_deref(), Some(&["sh".to_string()][..]));
        let again = serde_json::to_value(&p).unwrap();
        assert_eq!(again["image_config"]["Hostname"], "x");
        assert_eq!(again["network"], "host");
        // Written for the owner only: the environment may hold a job's secrets.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        p.write(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("plan.json"))
            .unwrap()
            .permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);
        assert_eq!(RunPlan::read(dir.path()).unwrap().hostname, "h");
    }

    #[test]
    fn option_values_parse_as_podman_reads_them() {
        for (text, want) in [
            ("512m", Some(512 << 20)),
            ("1g", Some(1 << 30)),
            ("1.5G", Some(3 << 29)),
            ("64kb", Some(64 << 10)),
            ("1048576", Some(1 << 20)),
            ("lots", None),
            ("", None),
        ] {
            assert_eq!(parse_bytes(text).ok(), want, "{text}");
        }
        let hosts = parse_hosts(&["db:10.0.0.2".into(), "v6:fd00::1".into()]).unwrap();
        assert_eq!(hosts[1], ("v6".into(), "fd00::1".into()));
        let err = parse_hosts(&["db".into()]).unwrap_err().to_string();
        assert_eq!(err, r#"--add-host "db": expected NAME:IP"#);
        for (text, want) in [
            (r#"["/bin/sh","-c"]"#, vec!["/bin/sh", "-c"]),
            (r#"[""]"#, vec![""]),
            ("[]", vec![]),
            ("/entry point", vec!["/entry point"]),
        ] {
            assert_eq!(parse_entrypoint(text), want, "{text}");
        }
    }

    #[test]
    fn env_files_come_before_flags_and_bare_keys_take_this_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, "# comment\nA=file\n\n  B=two words  \n").unwrap();
        let path = std::env::var("PATH").unwrap();
        let env = resolve_env(&[file], &["A=flag".into(), "PATH".into()]).unwrap();
        assert_eq!(
            env,
            ["A=file", "B=two words", "A=flag", &format!("PATH={path}")]
        );
        let missing = dir.path().join("missing");
        let err = resolve_env(std::slice::from_ref(&missing), &[]).unwrap_err();
        assert_eq!(err.to_string(), format!("--env-file {}", missing.display()));
    }
}
