//! The OCI runtime spec for a container, from the image config and `skiff run`'s options,
//! with the knobs that work rootless on this kind of host (no user namespace of its own: the
//! shim already made one; no cgroup resources; podman's capability set).

use super::caps::{ALL_CAPS, DEFAULT_CAPS};
use super::network::Network;
use super::plan::RunPlan;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder, get_default_maskedpaths, get_default_readonly_paths,
};
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
    #[error(transparent)]
    Seccomp(#[from] super::seccomp::SeccompError),
    /// Also an image's `WorkingDir`: the CVE-2024-21626 attack came in images.
    #[error(transparent)]
    Workdir(#[from] super::plan::PlanError),
    #[error("building the runtime spec: {0}")]
    Build(String),
    #[error("{option} {value:?}: expected {expected}")]
    BadOption {
        option: String,
        value: String,
        expected: &'static str,
    },
}

/// `--tmpfs DST[:OPTIONS]`, podman's defaults when no options are given.
pub fn tmpfs_mount(text: &str) -> Result<Mount, SpecError> {
    let (dest, opts) = text.split_once(':').unwrap_or((text, "rw,nosuid,nodev"));
    if !dest.starts_with('/') {
        return Err(SpecError::BadOption {
            option: "--tmpfs".into(),
            value: text.into(),
            expected: "an absolute path, then :OPTIONS",
        });
    }
    let opts: Vec<&str> = opts.split(',').filter(|o| !o.is_empty()).collect();
    mount(dest, "tmpfs", "tmpfs", &opts)
}

/// `--cap-add`/`--cap-drop` names: `NET_ADMIN`, `cap_net_admin` or `ALL`.
pub fn parse_caps(names: &[String]) -> Result<Vec<Capability>, SpecError> {
    let mut caps = vec![];
    for name in names {
        let upper = name.to_ascii_uppercase();
        if upper == "ALL" {
            caps.extend(ALL_CAPS.iter().copied());
            continue;
        }
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let cap: Capability =
            serde_json::from_value(serde_json::Value::String(full)).map_err(|_| {
                SpecError::BadOption {
                    option: "capability".into(),
                    value: name.clone(),
                    expected: "a capability name such as NET_ADMIN, or ALL",
                }
            })?;
        caps.push(cap);
    }
    Ok(caps)
}

/// Whether this process may set cgroup v2 limits: a cgroup2 hierarchy with the memory, cpu
/// and pids controllers, and our own cgroup writable (delegated). The reason when not.
pub fn cgroup_delegation() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
        })
        .ok_or("no cgroup v2 hierarchy (cgroup v1 only)")?;
    let mount = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(Path::new)
        .find(|m| m.join("cgroup.controllers").exists())
        .ok_or("no cgroup2 file system mounted")?;
    let dir = mount.join(own.trim_start_matches('/'));
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let missing: Vec<&str> = ["memory", "cpu", "pids"]
        .into_iter()
        .filter(|c| !controllers.split_whitespace().any(|x| x == *c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "cgroup v2 at {} lacks the {} controller(s) (on this host they are on cgroup v1)",
            dir.display(),
            missing.join(", ")
        ));
    }
    if rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK).is_err() {
        return Err(format!(
            "{} is not delegated to you (not writable)",
            dir.display()
        ));
    }
    Ok(dir)
}

/// Where a container's `--memory`, `--cpus` and `--pids-limit` can be enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLimits {
    /// Under our own delegated cgroup v2 (rootless or root).
    V2 { own: PathBuf },
    /// As root on a host whose memory, cpu and pids controllers are on cgroup v1 (legacy or
    /// hybrid): the runtime makes the container's cgroup in each hierarchy.
    V1,
}

/// The v1 controllers limits need, each mounted at `/sys/fs/cgroup/<name>`.
const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// Where limits can be enforced, or why they cannot.
pub fn cgroup_limits() -> Result<CgroupLimits, String> {
    let why_not_v2 = match cgroup_delegation() {
        Ok(own) => return Ok(CgroupLimits::V2 { own }),
        Err(why) => why,
    };
    let v1_writable = V1_CONTROLLERS.iter().all(|c| {
        rustix::fs::access(
            format!("/sys/fs/cgroup/{c}/cgroup.procs").as_str(),
            rustix::fs::Access::WRITE_OK,
        )
        .is_ok()
    });
    if rustix::process::geteuid().is_root() && v1_writable {
        return Ok(CgroupLimits::V1);
    }
    Err(why_not_v2)
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

/// Entrypoint + Cmd with docker's override rules.
pub fn command_line(plan: &RunPlan) -> Result<Vec<String>, SpecError> {
    let entrypoint = match &plan.entrypoint {
        Some(e) => e.clone(),
        None => plan.image_config.entrypoint.clone().unwrap_or_default(),
    };
    // An explicit --entrypoint drops the image's Cmd, as docker does.
    let cmd = if !plan.command.is_empty() {
        plan.command.clone()
    } else if plan.entrypoint.is_some() {
        vec![]
    } else {
        plan.image_config.cmd.clone().unwrap_or_default()
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

pub fn build(plan: &RunPlan, rootfs: &Path) -> Result<Spec, SpecError> {
    build_with(plan, rootfs, plan.seccomp.load_unchecked()?.as_ref())
}

/// The capabilities a container of `plan` holds: podman's default set, with `--cap-add` and
/// without `--cap-drop`.
pub fn bounding_set(plan: &RunPlan) -> Result<HashSet<Capability>, SpecError> {
    let mut caps: HashSet<Capability> = DEFAULT_CAPS.iter().copied().collect();
    // A private network needs CAP_NET_ADMIN in no case: the shim configures it.
    caps.extend(parse_caps(&plan.cap_add)?);
    for c in parse_caps(&plan.cap_drop)? {
        caps.remove(&c);
    }
    Ok(caps)
}

/// `build` with the seccomp profile given: `None` leaves the spec without a filter (the
/// policy is unconfined, or its program is compiled already).
pub fn build_with(
    plan: &RunPlan,
    rootfs: &Path,
    seccomp: Option<&super::seccomp::Profile>,
) -> Result<Spec, SpecError> {
    let build_err = |e: oci_spec::OciSpecError| SpecError::Build(e.to_string());
    let user = plan
        .user
        .clone()
        .or_else(|| plan.image_config.user.clone().filter(|u| !u.is_empty()));
    let (uid, gid, extra_gids, home) = match &user {
        Some(u) => resolve_user(rootfs, u)?,
        None => (0, 0, vec![], "/root".into()),
    };
    let mut env: Vec<String> = plan.image_config.env.clone().unwrap_or_default();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    if !plan
        .image_config
        .env
        .iter()
        .flatten()
        .any(|e| e.starts_with("PATH="))
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
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "/".into());
    super::plan::check_workdir(Some(&cwd))?;
    let caps = bounding_set(plan)?;
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
                // Users get their primary group listed too, as with docker and podman: an
                // empty list would leave the runtime's own groups in place.
                .additional_gids(if uid == 0 && extra_gids.is_empty() {
                    vec![]
                } else {
                    std::iter::once(gid).chain(extra_gids).collect::<Vec<_>>()
                })
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
    if plan.network == Network::None && plan.pod.is_none() {
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
    if let Some(profile) = seccomp {
        let name = match &plan.seccomp {
            super::seccomp::SeccompPolicy::File(path) => path.display().to_string(),
            _ => "default".to_string(),
        };
        let host = super::seccomp::Host::this();
        linux.set_seccomp(Some(profile.to_spec(&caps, &host, &name)?));
    }
    // Rootless without delegation, resources must be None (writing devices.allow fails).
    linux.set_resources(None);
    if !plan.limits.is_empty()
        && let Ok(place) = cgroup_limits()
    {
        use oci_spec::runtime::{
            LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
        };
        let mut r = LinuxResourcesBuilder::default();
        if let Some(m) = plan.limits.memory {
            r = r.memory(
                LinuxMemoryBuilder::default()
                    .limit(m)
                    .build()
                    .map_err(build_err)?,
            );
        }
        if let Some(c) = plan.limits.cpus {
            let period = 100_000u64;
            r = r.cpu(
                LinuxCpuBuilder::default()
                    .quota((c * period as f64) as i64)
                    .period(period)
                    .build()
                    .map_err(build_err)?,
            );
        }
        if let Some(p) = plan.limits.pids {
            r = r.pids(
                LinuxPidsBuilder::default()
                    .limit(p)
                    .build()
                    .map_err(build_err)?,
            );
        }
        linux.set_resources(Some(r.build().map_err(build_err)?));
        let container = format!("skiff-{}", plan.id);
        linux.set_cgroups_path(Some(match place {
            // Absolute, under our own delegated cgroup.
            CgroupLimits::V2 { own } => {
                let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
                    .into_iter()
                    .find(|m| own.starts_with(m))
                    .unwrap_or("/sys/fs/cgroup");
                let relative = own.strip_prefix(mount).unwrap_or(&own);
                Path::new("/").join(relative).join(container)
            }
            // At the top of each v1 hierarchy (the shim leaves them in view).
            CgroupLimits::V1 => Path::new("/").join(container),
        }));
    }
    // sysfs can be mounted only by the owner of the network namespace: as root with ids of
    // its own, the container's user namespace owns it only when the runtime makes it or it
    // is a pod's; otherwise the host's /sys is bound.
    let owns_network = match plan.userns.is_some() && rustix::process::geteuid().is_root() {
        true => plan.pod.is_some() || plan.network == Network::None,
        false => plan.network != Network::Host || plan.pod.is_some(),
    };
    let sys = if owns_network {
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
    let dir = super::container::transient(&plan.dir).display().to_string();
    // A pod's members share its hosts file, and its resolv.conf unless --dns is given.
    let (hosts, resolv) = match &plan.pod {
        Some(pod) => (
            pod.join("hosts").display().to_string(),
            if plan.dns.is_empty() {
                pod.join("resolv.conf").display().to_string()
            } else {
                format!("{dir}/resolv.conf")
            },
        ),
        None => (format!("{dir}/hosts"), format!("{dir}/resolv.conf")),
    };
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
        mount("/etc/hosts", "none", &hosts, &["rbind", "rw"])?,
        mount("/etc/resolv.conf", "none", &resolv, &["rbind", "rw"])?,
        mount(
            "/etc/hostname",
            "none",
            &format!("{dir}/hostname"),
            &["rbind", "rw"],
        )?,
    ];
    let mut mounts = mounts;
    for v in &plan.volumes {
        let mut opts = vec!["rbind"];
        opts.push(if v.read_only { "ro" } else { "rw" });
        mounts.push(mount(
            &v.destination,
            "none",
            &v.source.display().to_string(),
            &opts,
        )?);
    }
    // podman's --read-only: the root is read-only, with scratch space where programs expect it.
    if plan.read_only {
        for dest in ["/tmp", "/var/tmp", "/run"] {
            if !plan.tmpfs.iter().any(|t| t.split(':').next() == Some(dest)) {
                mounts.push(mount(
                    dest,
                    "tmpfs",
                    "tmpfs",
                    &["rw", "nosuid", "nodev", "mode=1777"],
                )?);
            }
        }
    }
    for t in &plan.tmpfs {
        mounts.push(tmpfs_mount(t)?);
    }
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(plan.read_only)
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

/// A container of root in ids of its own: a user namespace with `ids`' map, made by the
/// runtime, or `joined` (a pod's, whose map it is).
pub fn in_user_namespace(
    spec: &mut Spec,
    ids: super::userns::Allocation,
    joined: Option<PathBuf>,
) -> Result<(), SpecError> {
    use oci_spec::runtime::LinuxIdMappingBuilder;
    let build_err = |e: oci_spec::OciSpecError| SpecError::Build(e.to_string());
    let map = |host: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(super::userns::SLOT)
            .build()
            .map_err(build_err)
    };
    let (uid, gid) = (map(ids.uid)?, map(ids.gid)?);
    let mut namespace = LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::User)
        .build()
        .map_err(build_err)?;
    namespace.set_path(joined);
    let linux = spec
        .linux_mut()
        .as_mut()
        .ok_or_else(|| SpecError::Build("the spec has no linux section".into()))?;
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.insert(0, namespace);
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(Some(vec![uid]));
    linux.set_gid_mappings(Some(vec![gid]));
    Ok(())
}

/// The spec without what `in_user_namespace` added.
pub fn without_user_namespace(spec: &mut Spec) {
    if let Some(linux) = spec.linux_mut() {
        let namespaces = linux.namespaces().clone().map(|n| {
            n.into_iter()
                .filter(|ns| ns.typ() != LinuxNamespaceType::User)
                .collect()
        });
        linux.set_namespaces(namespaces);
        linux.set_uid_mappings(None);
        linux.set_gid_mappings(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::plan::{Limits, Volume};

    fn plan(config: serde_json::Value) -> RunPlan {
        RunPlan {
            id: "t".into(),
            image: "i".into(),
            image_config: serde_json::from_value(config).unwrap(),
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
            volumes: vec![],
            tmpfs: vec![],
            read_only: false,
            cap_add: vec![],
            cap_drop: vec![],
            dns: vec![],
            hosts: vec![],
            pod: None,
            limits: Limits::default(),
            seccomp: crate::runtime::seccomp::SeccompPolicy::Default,
            creator: None,
            userns: None,
            tty: false,
        }
    }

    #[test]
    fn every_container_gets_the_default_filter_unless_unconfined() {
        use crate::runtime::seccomp::SeccompPolicy;
        let dir = tempfile::tempdir().unwrap();
        let mut p = plan(serde_json::json!({"Cmd": ["sh"]}));
        let spec = build(&p, dir.path()).unwrap();
        let filter = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
        assert_eq!(
            filter.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );
        p.cap_add = vec!["SYS_ADMIN".into()];
        let with_admin = build(&p, dir.path()).unwrap();
        assert_ne!(
            with_admin.linux().as_ref().unwrap().seccomp(),
            spec.linux().as_ref().unwrap().seccomp(),
            "the rules follow the capabilities"
        );
        p.seccomp = SeccompPolicy::Unconfined;
        let spec = build(&p, dir.path()).unwrap();
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
        p.seccomp = SeccompPolicy::File(dir.path().join("missing.json"));
        let err = build(&p, dir.path()).unwrap_err();
        assert!(crate::error_chain(&err).contains("missing.json"), "{err}");
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
    fn option_tables() {
        let nets: &[(&str, Option<Network>)] = &[
            ("host", Some(Network::Host)),
            ("private", Some(Network::Private)),
            (
                "slirp4netns",
                Some(Network::Slirp4netns {
                    allow_host_loopback: false,
                }),
            ),
            (
                "slirp4netns:allow_host_loopback=true",
                Some(Network::Slirp4netns {
                    allow_host_loopback: true,
                }),
            ),
            (
                "pasta:--map-gw,-4",
                Some(Network::Pasta {
                    args: vec!["--map-gw".into(), "-4".into()],
                }),
            ),
            ("bridge", None),
            ("host:x", None),
            ("slirp4netns:nonsense", None),
        ];
        for (text, want) in nets {
            assert_eq!(Network::parse(text).ok(), *want, "{text}");
        }
        type VolumeCase<'a> = (&'a str, Option<(&'a str, &'a str, bool, bool)>);
        let vols: &[VolumeCase] = &[
            ("/a:/b", Some(("/a", "/b", false, false))),
            ("/a:/b:ro", Some(("/a", "/b", true, false))),
            ("/a:/b:rw", Some(("/a", "/b", false, false))),
            ("/a:/b:idmap", Some(("/a", "/b", false, true))),
            ("/a:/b:ro,idmap", Some(("/a", "/b", true, true))),
            ("/a:/b:idmap,rw", Some(("/a", "/b", false, true))),
            ("a:/b", None),
            ("/a", None),
            ("/a:/b:xx", None),
            ("/a:/b:ro,xx", None),
            ("/a:/b:ro:x", None),
        ];
        for (text, want) in vols {
            let got = Volume::parse(text).ok();
            let want = want.map(|(s, d, ro, idmap)| Volume {
                source: s.into(),
                destination: d.into(),
                read_only: ro,
                idmap,
            });
            assert_eq!(got, want, "{text}");
        }
        let caps =
            |names: &[&str]| parse_caps(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            caps(&["NET_ADMIN", "cap_sys_time"]).unwrap(),
            [Capability::NetAdmin, Capability::SysTime]
        );
        assert_eq!(caps(&["ALL"]).unwrap().len(), ALL_CAPS.len());
        assert!(caps(&["NOT_A_CAP"]).is_err());
        assert!(tmpfs_mount("relative").is_err());
        assert_eq!(
            tmpfs_mount("/t:size=1m")
                .unwrap()
                .options()
                .clone()
                .unwrap(),
            ["size=1m"]
        );
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
