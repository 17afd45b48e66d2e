//! The OCI runtime spec for a container, from the image config and `skiff run`'s options,
//! with the knobs that work rootless on this kind of host (no user namespace of its own: the
//! shim already made one; no cgroup resources; podman's capability set).

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder, get_default_maskedpaths, get_default_readonly_paths,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("user {user:?} is not in the image's /etc/passwd")]
    UnknownUser { user: String },
    #[error("group {group:?} is not in the image's /etc/group")]
    UnknownGroup { group: String },
    #[error("the image has no command: give one after the image name")]
    NoCommand,
    #[error("building the runtime spec: {0}")]
    Build(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// The host's network namespace.
    Host,
    /// A new network namespace (loopback only, down).
    None,
    /// A new network namespace made by the shim, loopback up.
    Private,
}

/// Everything the shim needs, written by `skiff run` as `plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPlan {
    pub id: String,
    pub image: String,
    /// The image config's `config` object (Entrypoint, Cmd, Env, WorkingDir, User).
    pub image_config: serde_json::Value,
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
    pub runtime: super::backend::RuntimeChoice,
    /// Remove the container's directory when it exits (run --rm), from inside the namespace.
    #[serde(default)]
    pub remove: bool,
}

/// `user[:group]` (names or numbers) through the image's /etc/passwd and /etc/group:
/// uid, gid and the supplementary groups the user is a member of.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>, String), SpecError> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let (u, g) = spec
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((spec, None));
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && (f[0] == u || f[2] == u));
    let (uid, mut gid, name, home) = match (&entry, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            f[0].to_string(),
            f[5].to_string(),
        ),
        (None, Ok(n)) => (n, n, String::new(), "/".to_string()),
        (None, Err(_)) => {
            return Err(SpecError::UnknownUser {
                user: u.to_string(),
            });
        }
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 3)
        .collect();
    if let Some(g) = g {
        gid = match (groups.iter().find(|f| f[0] == g), g.parse::<u32>()) {
            (Some(f), _) => f[2].parse().unwrap_or(0),
            (None, Ok(n)) => n,
            (None, Err(_)) => {
                return Err(SpecError::UnknownGroup {
                    group: g.to_string(),
                });
            }
        };
    }
    let extra: Vec<u32> = if name.is_empty() {
        vec![]
    } else {
        groups
            .iter()
            .filter(|f| f.get(3).is_some_and(|m| m.split(',').any(|x| x == name)))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect()
    };
    Ok((uid, gid, extra, home))
}

fn strings(v: &serde_json::Value, key: &str) -> Option<Vec<String>> {
    v.get(key)?.as_array().map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    })
}

/// Entrypoint + Cmd with docker's override rules.
pub fn command_line(plan: &RunPlan) -> Result<Vec<String>, SpecError> {
    let entrypoint = match &plan.entrypoint {
        Some(e) => e.clone(),
        None => strings(&plan.image_config, "Entrypoint").unwrap_or_default(),
    };
    // An explicit --entrypoint drops the image's Cmd, as docker does.
    let cmd = if !plan.command.is_empty() {
        plan.command.clone()
    } else if plan.entrypoint.is_some() {
        vec![]
    } else {
        strings(&plan.image_config, "Cmd").unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint
        .into_iter()
        .chain(cmd)
        .filter(|s| !s.is_empty())
        .collect();
    if argv.is_empty() {
        Err(SpecError::NoCommand)
    } else {
        Ok(argv)
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| SpecError::Build(e.to_string()))
}

/// podman's default capability set.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::NetBindService,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

pub fn build(plan: &RunPlan, rootfs: &Path) -> Result<Spec, SpecError> {
    let build_err = |e: oci_spec::OciSpecError| SpecError::Build(e.to_string());
    let user = plan.user.clone().or_else(|| {
        plan.image_config
            .get("User")
            .and_then(|u| u.as_str())
            .filter(|u| !u.is_empty())
            .map(str::to_string)
    });
    let (uid, gid, extra_gids, home) = match &user {
        Some(u) => resolve_user(rootfs, u)?,
        None => (0, 0, vec![], "/root".into()),
    };
    let mut env: Vec<String> = strings(&plan.image_config, "Env").unwrap_or_default();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    if !plan
        .image_config
        .get("Env")
        .and_then(|e| e.as_array())
        .is_some_and(|a| {
            a.iter()
                .any(|e| e.as_str().is_some_and(|s| s.starts_with("PATH=")))
        })
    {
        set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    set(format!("HOSTNAME={}", plan.hostname));
    set(format!("HOME={home}"));
    for e in &plan.env {
        set(e.clone());
    }
    let cwd = plan
        .workdir
        .clone()
        .or_else(|| {
            plan.image_config
                .get("WorkingDir")
                .and_then(|w| w.as_str())
                .filter(|w| !w.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/".into());
    let caps: HashSet<Capability> = DEFAULT_CAPS.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(build_err)?;
    // Never raise limits (root may lack CAP_SYS_RESOURCE here): keep the current ones.
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let rlimit = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(nofile.current.unwrap_or(1024))
        .hard(nofile.maximum.unwrap_or(1024))
        .build()
        .map_err(build_err)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(command_line(plan)?)
        .env(env)
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                // The primary group too, as docker and podman do: an empty list would
                // leave the runtime's own groups in place.
                .additional_gids(std::iter::once(gid).chain(extra_gids).collect::<Vec<_>>())
                .build()
                .map_err(build_err)?,
        )
        .no_new_privileges(true)
        .capabilities(capabilities)
        .rlimits(vec![rlimit])
        .build()
        .map_err(build_err)?;
    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if plan.network == Network::None {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(build_err)?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths())
        .build()
        .map_err(build_err)?;
    linux.set_resources(None);
    let sys = if plan.network != Network::Host {
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?
    } else {
        mount(
            "/sys",
            "none",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )?
    };
    let dir = plan.dir.display().to_string();
    let mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        sys,
        mount(
            "/etc/hosts",
            "none",
            &format!("{dir}/hosts"),
            &["rbind", "rw"],
        )?,
        mount(
            "/etc/resolv.conf",
            "none",
            &format!("{dir}/resolv.conf"),
            &["rbind", "rw"],
        )?,
        mount(
            "/etc/hostname",
            "none",
            &format!("{dir}/hostname"),
            &["rbind", "rw"],
        )?,
    ];
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()
                .map_err(build_err)?,
        )
        .hostname(plan.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(build_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(config: serde_json::Value) -> RunPlan {
        RunPlan {
            id: "t".into(),
            image: "i".into(),
            image_config: config,
            lowers: vec![],
            dir: "/tmp/x".into(),
            command: vec![],
            entrypoint: None,
            env: vec![],
            workdir: None,
            user: None,
            hostname: "h".into(),
            network: Network::Host,
            runtime: crate::runtime::backend::RuntimeChoice::Libcontainer,
            remove: false,
        }
    }

    #[test]
    fn command_table() {
        let cfg = serde_json::json!({"Entrypoint": ["/ep"], "Cmd": ["a", "b"]});
        let mut p = plan(cfg.clone());
        assert_eq!(command_line(&p).unwrap(), ["/ep", "a", "b"]);
        p.command = vec!["c".into()];
        assert_eq!(
            command_line(&p).unwrap(),
            ["/ep", "c"],
            "arguments replace Cmd"
        );
        p.entrypoint = Some(vec!["/other".into()]);
        p.command = vec![];
        assert_eq!(
            command_line(&p).unwrap(),
            ["/other"],
            "--entrypoint drops the image Cmd"
        );
        assert!(command_line(&plan(serde_json::json!({}))).is_err());
    }

    #[test]
    fn users_through_passwd_and_group() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nuser:x:1000:\nwheel:x:10:user,other\naudio:x:29:user\n",
        )
        .unwrap();
        let r = |s: &str| resolve_user(d.path(), s);
        assert_eq!(
            r("user").unwrap(),
            (1000, 1000, vec![10, 29], "/home/user".into())
        );
        assert_eq!(r("1000:wheel").unwrap().1, 10);
        assert_eq!(r("4242").unwrap().0, 4242, "unknown numeric ids are fine");
        assert!(r("nobody").is_err());
        assert!(r("user:nogroup").is_err());
    }
}
