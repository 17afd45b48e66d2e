//! What this host offers for rootless containers (`skiff info`), and what to do where it
//! falls short: probed facts first, then the report and its hints made from them, so the
//! judgement can be tested without the host.

use super::userns::{self, Mapping};
use crate::proc::which;
use crate::store::layout;
use std::path::Path;

/// The report `skiff info` prints. Field names are its JSON keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostReport {
    pub kernel: String,
    pub user_namespaces: bool,
    /// As the kernel says it (empty when unreadable).
    pub max_user_namespaces: String,
    pub id_mapping: Mapping,
    /// As root: the `containers` subordinate ids containers and pods get ranges from.
    pub containers_ids: String,
    pub newuidmap: Option<String>,
    pub newgidmap: Option<String>,
    pub overlay: String,
    pub fuse_overlayfs: Option<String>,
    pub dev_fuse_accessible: bool,
    pub cgroup: String,
    pub cgroup_delegated: bool,
    /// Where limits are enforced, or why they are not.
    pub limits: String,
    pub runtimes: Vec<String>,
    /// The default seccomp profile's file, or the built-in copy.
    pub seccomp_profile: String,
    pub network_helpers: Vec<String>,
    pub dev_net_tun_accessible: bool,
    pub store: String,
    pub layers: String,
    pub containers: String,
    pub hints: Vec<String>,
}

/// What was found on the host, before any judgement.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub kernel: String,
    pub max_user_namespaces: String,
    /// `kernel.unprivileged_userns_clone` (empty where the sysctl does not exist).
    pub unprivileged_userns_clone: String,
    pub mapping: Mapping,
    /// The `containers` entries of /etc/subuid and /etc/subgid, or why there are none.
    pub containers_ids: Result<(userns::IdRange, userns::IdRange), String>,
    pub newuidmap: Option<String>,
    pub newgidmap: Option<String>,
    pub cgroup: &'static str,
    /// Controllers enabled on the v2 side of a hybrid host.
    pub v2_controllers: String,
    pub cgroup_delegated: bool,
    /// Why `--memory`, `--pids-limit`... cannot be enforced (`None`: they can).
    pub limits_unenforced: Option<String>,
    /// (name, path) of the OCI runtimes found besides the embedded one.
    pub runtimes: Vec<(String, String)>,
    pub dev_net_tun: bool,
    pub network_helpers: Vec<String>,
    pub fuse_overlayfs: Option<String>,
    pub dev_fuse: bool,
    /// The first of podman's default seccomp profile files that exists.
    pub seccomp_profile: Option<String>,
}

const CGROUP2_MAGIC: u64 = 0x63677270;

fn read(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn found(name: &str) -> Option<String> {
    which(name).map(|p| p.display().to_string())
}

fn accessible(path: &str) -> bool {
    rustix::fs::access(
        path,
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    )
    .is_ok()
}

impl HostFacts {
    /// Looks at this host and this process.
    pub fn probe() -> HostFacts {
        let kernel = rustix::system::uname()
            .release()
            .to_string_lossy()
            .to_string();
        let cgroup_fs = rustix::fs::statfs("/sys/fs/cgroup")
            .map(|s| s.f_type as u64)
            .ok();
        let cgroup = match cgroup_fs {
            Some(CGROUP2_MAGIC) => "v2",
            Some(_) if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() => {
                "hybrid (v1 + v2 at /sys/fs/cgroup/unified)"
            }
            Some(_) => "v1",
            None => "unknown",
        };
        let cgroup_delegated = read("/proc/self/cgroup")
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| {
                let base = if cgroup == "v2" {
                    "/sys/fs/cgroup"
                } else {
                    "/sys/fs/cgroup/unified"
                };
                let dir = format!("{base}{p}");
                !read(&format!("{dir}/cgroup.controllers")).is_empty()
                    && rustix::fs::access(dir.as_str(), rustix::fs::Access::WRITE_OK).is_ok()
            })
            .unwrap_or(false);
        let limits_unenforced = super::spec::cgroup_limits().err();
        HostFacts {
            kernel,
            max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
            mapping: userns::detect(),
            containers_ids: userns::containers_ranges().map_err(|e| e.to_string()),
            newuidmap: found("newuidmap"),
            newgidmap: found("newgidmap"),
            cgroup,
            v2_controllers: read("/sys/fs/cgroup/unified/cgroup.controllers"),
            cgroup_delegated,
            limits_unenforced,
            runtimes: ["crun", "runc"]
                .iter()
                .filter_map(|r| found(r).map(|p| (r.to_string(), p)))
                .collect(),
            dev_net_tun: accessible("/dev/net/tun"),
            network_helpers: ["pasta", "slirp4netns"]
                .iter()
                .filter(|r| which(r).is_some())
                .map(|r| r.to_string())
                .collect(),
            fuse_overlayfs: found("fuse-overlayfs"),
            dev_fuse: accessible("/dev/fuse"),
            seccomp_profile: super::seccomp::SYSTEM_PROFILES
                .iter()
                .find(|p| Path::new(p).is_file())
                .map(|p| p.to_string()),
        }
    }
}

/// This host's report, for the store at `store_root` (only its paths are shown: the store is
/// neither opened nor created).
pub fn report(store_root: &Path) -> HostReport {
    HostReport::from_facts(HostFacts::probe(), store_root)
}

impl HostReport {
    pub fn from_facts(f: HostFacts, store_root: &Path) -> HostReport {
        let mut hints: Vec<String> = Vec::new();
        let user_namespaces = f
            .max_user_namespaces
            .parse::<u64>()
            .map(|n| n > 0)
            .unwrap_or(false)
            && f.unprivileged_userns_clone != "0";
        if !user_namespaces {
            hints.push("user namespaces are disabled: set user.max_user_namespaces > 0 (and kernel.unprivileged_userns_clone=1 where it exists)".into());
        }
        const ADD_RANGE: &str =
            "`usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER`";
        // Root writes its maps itself: only rootless users need the set-uid helpers.
        let id_helpers_missing = f.newuidmap.is_none() || f.newgidmap.is_none();
        match &f.mapping {
            Mapping::Single { .. } if id_helpers_missing => hints.push(format!("newuidmap/newgidmap are not installed (Debian package uidmap): rootless containers get a single id; they also need a range in /etc/subuid and /etc/subgid ({ADD_RANGE})")),
            Mapping::Single { why, .. } => hints.push(format!(
                "only a single-id user namespace: {why}; add a range with {ADD_RANGE}"
            )),
            _ => {}
        }
        let containers_ids = match (&f.containers_ids, f.mapping.is_root()) {
            (_, false) => "rootless: your own user namespace".to_string(),
            (Ok((uids, _)), true) => format!(
                "containers:{}:{} ({} ranges of {})",
                uids.start,
                uids.count,
                uids.count / userns::SLOT,
                userns::SLOT
            ),
            (Err(why), true) => {
                hints.push(format!(
                    "containers of root cannot get ids of their own: {why}"
                ));
                "missing".to_string()
            }
        };
        if f.cgroup.starts_with("hybrid") && !f.v2_controllers.is_empty() {
            hints.push(format!("controllers {} sit on the v2 side of a hybrid host: crun and podman refuse to run there (skiff does not mind); scripts/setup gives each its own v1 mount", f.v2_controllers));
        }
        if let Some(why) = &f.limits_unenforced {
            hints.push(format!("--memory/--cpus/--pids-limit and a job's limits (2048 processes, the admin file's memory and cpus) cannot be enforced: {why} (systemd: Delegate=yes for the user's service; as root, the controllers on cgroup v1 do)"));
        }
        let runtimes = std::iter::once("libcontainer (embedded, default)".to_string())
            .chain(f.runtimes.iter().map(|(r, p)| format!("{r} ({p})")))
            .collect();
        if !f.dev_net_tun {
            hints.push("/dev/net/tun is not accessible to you: slirp4netns and pasta cannot work (chmod 0666 /dev/net/tun, the usual mode)".into());
        }
        let has_helper = |name: &str| f.network_helpers.iter().any(|h| h == name);
        match (has_helper("slirp4netns"), has_helper("pasta")) {
            (false, false) => hints.push("neither slirp4netns (Debian package slirp4netns) nor pasta (Debian package passt) is installed: containers with a private network have no outbound access".into()),
            // A job's network is slirp4netns unless it asks for another.
            (false, true) => hints.push("slirp4netns is not installed (Debian package slirp4netns): jobs have no outbound access unless their network is pasta".into()),
            (true, false) => hints.push("pasta is not installed (Debian package passt): only `--network pasta` needs it".into()),
            (true, true) => {}
        }
        let native = kernel_at_least(&f.kernel, 5, 11);
        let overlay = if native {
            "native (kernel >= 5.11, userxattr)"
        } else if f.fuse_overlayfs.is_some() {
            "fuse-overlayfs"
        } else {
            "copy (no overlay available)"
        };
        if !native && f.fuse_overlayfs.is_none() {
            hints.push(
                "no rootless overlay (kernel < 5.11): install fuse-overlayfs (Debian package fuse-overlayfs)"
                    .into(),
            );
        }
        // Optional: the embedded runtime is the default and needs neither.
        for runtime in ["crun", "runc"] {
            if !f.runtimes.iter().any(|(name, _)| name == runtime) {
                hints.push(format!("{runtime} is not installed (Debian package {runtime}): only `skiff run --runtime {runtime}` needs it"));
            }
        }
        // Optional too: skiff carries a copy of the package's default profile.
        if f.seccomp_profile.is_none() {
            hints.push("no seccomp profile file (Debian package golang-github-containers-common): containers get skiff's built-in copy of its default; install it only to edit the profile in /etc/containers/seccomp.json".into());
        }
        HostReport {
            kernel: f.kernel,
            user_namespaces,
            max_user_namespaces: f.max_user_namespaces,
            id_mapping: f.mapping,
            containers_ids,
            newuidmap: f.newuidmap,
            newgidmap: f.newgidmap,
            overlay: overlay.into(),
            fuse_overlayfs: f.fuse_overlayfs,
            dev_fuse_accessible: f.dev_fuse,
            cgroup: f.cgroup.into(),
            cgroup_delegated: f.cgroup_delegated,
            limits: match &f.limits_unenforced {
                None => "enforced".into(),
                Some(why) => format!("not enforced: {why}"),
            },
            runtimes,
            seccomp_profile: f
                .seccomp_profile
                .unwrap_or_else(|| "built-in (containers-common's default)".into()),
            network_helpers: f.network_helpers,
            dev_net_tun_accessible: f.dev_net_tun,
            store: store_root.display().to_string(),
            layers: layout::layers_dir(store_root).display().to_string(),
            containers: layout::containers_dir(store_root).display().to_string(),
            hints,
        }
    }
}

/// Whether a kernel release string (`6.1.0-18-amd64`) is at least `major.minor`.
pub fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_at_least_table() {
        let cases = [
            ("5.11.0", true),
            ("5.10.209-lts", false),
            ("5.15.0-91-generic", true),
            ("6.1.0-18-amd64", true),
            ("4.19.0", false),
            ("10.0", true),
            ("5", false),
            ("", false),
            ("linux", false),
        ];
        for (release, want) in cases {
            assert_eq!(kernel_at_least(release, 5, 11), want, "{release}");
        }
    }

    fn facts() -> HostFacts {
        HostFacts {
            kernel: "6.1.0".into(),
            max_user_namespaces: "63000".into(),
            unprivileged_userns_clone: String::new(),
            mapping: Mapping::Root,
            containers_ids: Ok((
                userns::IdRange {
                    start: 2147483647,
                    count: 2147483648,
                },
                userns::IdRange {
                    start: 2147483647,
                    count: 2147483648,
                },
            )),
            newuidmap: Some("/usr/bin/newuidmap".into()),
            newgidmap: Some("/usr/bin/newgidmap".into()),
            cgroup: "v2",
            v2_controllers: String::new(),
            cgroup_delegated: true,
            limits_unenforced: None,
            runtimes: vec![
                ("crun".into(), "/usr/bin/crun".into()),
                ("runc".into(), "/usr/bin/runc".into()),
            ],
            dev_net_tun: true,
            network_helpers: vec!["pasta".into(), "slirp4netns".into()],
            fuse_overlayfs: None,
            dev_fuse: true,
            seccomp_profile: Some("/usr/share/containers/seccomp.json".into()),
        }
    }

    #[test]
    fn json_keys_are_the_reports() {
        let r = HostReport::from_facts(facts(), Path::new("/s"));
        let v = serde_json::to_value(&r).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        // Sorted, as `skiff info` prints them.
        assert_eq!(
            keys,
            [
                "cgroup",
                "cgroup_delegated",
                "containers",
                "containers_ids",
                "dev_fuse_accessible",
                "dev_net_tun_accessible",
                "fuse_overlayfs",
                "hints",
                "id_mapping",
                "kernel",
                "layers",
                "limits",
                "max_user_namespaces",
                "network_helpers",
                "newgidmap",
                "newuidmap",
                "overlay",
                "runtimes",
                "seccomp_profile",
                "store",
                "user_namespaces",
            ]
        );
        assert_eq!(v["id_mapping"], serde_json::json!({"kind": "root"}));
        assert_eq!(v["fuse_overlayfs"], serde_json::Value::Null);
        assert_eq!(v["layers"], "/s/layers");
        assert_eq!(
            v["containers_ids"],
            "containers:2147483647:2147483648 (32768 ranges of 65536)"
        );
        assert_eq!(
            v["runtimes"],
            serde_json::json!([
                "libcontainer (embedded, default)",
                "crun (/usr/bin/crun)",
                "runc (/usr/bin/runc)"
            ])
        );
    }

    #[test]
    fn a_good_host_has_no_hints() {
        let r = HostReport::from_facts(facts(), Path::new("/s"));
        assert!(r.hints.is_empty(), "{:?}", r.hints);
        assert!(r.user_namespaces);
        assert_eq!(r.overlay, "native (kernel >= 5.11, userxattr)");
    }

    #[test]
    fn each_shortfall_gives_its_hint() {
        type Change = fn(&mut HostFacts);
        fn single(f: &mut HostFacts) {
            f.mapping = Mapping::Single {
                uid: 1000,
                gid: 1000,
                why: "no range".into(),
            }
        }
        // (change, how its hint starts, the Debian packages it names)
        let cases: [(Change, &str, &[&str]); 18] = [
            (
                |f| f.containers_ids = Err("no `containers` range".into()),
                "containers of root cannot get ids of their own: no `containers` range",
                &[],
            ),
            (
                |f| f.max_user_namespaces = "0".into(),
                "user namespaces are disabled",
                &[],
            ),
            (
                |f| f.unprivileged_userns_clone = "0".into(),
                "user namespaces are disabled",
                &[],
            ),
            (single, "only a single-id user namespace: no range;", &[]),
            (
                |f| {
                    single(f);
                    f.newuidmap = None;
                },
                "newuidmap/newgidmap are not installed",
                &["uidmap"],
            ),
            (
                |f| {
                    single(f);
                    f.newgidmap = None;
                },
                "newuidmap/newgidmap are not installed",
                &["uidmap"],
            ),
            (
                |f| {
                    f.cgroup = "hybrid (v1 + v2 at /sys/fs/cgroup/unified)";
                    f.v2_controllers = "memory pids".into();
                },
                "controllers memory pids sit on the v2 side",
                &[],
            ),
            (
                |f| f.limits_unenforced = Some("no cgroup v2 hierarchy".into()),
                "--memory/--cpus/--pids-limit and a job's limits",
                &[],
            ),
            (
                |f| f.dev_net_tun = false,
                "/dev/net/tun is not accessible",
                &[],
            ),
            (
                |f| f.network_helpers.clear(),
                "neither slirp4netns",
                &["slirp4netns", "passt"],
            ),
            (
                |f| f.network_helpers.retain(|h| h != "slirp4netns"),
                "slirp4netns is not installed",
                &["slirp4netns"],
            ),
            (
                |f| f.network_helpers.retain(|h| h != "pasta"),
                "pasta is not installed",
                &["passt"],
            ),
            (
                |f| {
                    f.kernel = "5.10.0".into();
                    f.fuse_overlayfs = None;
                },
                "no rootless overlay",
                &["fuse-overlayfs"],
            ),
            (
                |f| f.runtimes.retain(|(r, _)| r != "crun"),
                "crun is not installed",
                &["crun"],
            ),
            (
                |f| f.runtimes.retain(|(r, _)| r != "runc"),
                "runc is not installed",
                &["runc"],
            ),
            (
                |f| f.seccomp_profile = None,
                "no seccomp profile file",
                &["golang-github-containers-common"],
            ),
            // Root maps ids itself: the set-uid helpers are no shortfall.
            (|f| f.newuidmap = None, "", &[]),
            (|f| f.newgidmap = None, "", &[]),
        ];
        for (change, hint, packages) in cases {
            let mut f = facts();
            change(&mut f);
            let r = HostReport::from_facts(f, Path::new("/s"));
            if hint.is_empty() {
                assert!(r.hints.is_empty(), "{:?}", r.hints);
                continue;
            }
            assert_eq!(r.hints.len(), 1, "{hint}: {:?}", r.hints);
            assert!(r.hints[0].starts_with(hint), "{hint}: {:?}", r.hints);
            for package in packages {
                let named = format!("(Debian package {package})");
                assert!(r.hints[0].contains(&named), "{named}: {:?}", r.hints);
            }
        }
    }

    #[test]
    fn overlay_kind_by_kernel_and_fuse() {
        let mut f = facts();
        f.kernel = "5.4.0".into();
        f.fuse_overlayfs = Some("/usr/bin/fuse-overlayfs".into());
        assert_eq!(
            HostReport::from_facts(f.clone(), Path::new("/s")).overlay,
            "fuse-overlayfs"
        );
        f.fuse_overlayfs = None;
        let r = HostReport::from_facts(f, Path::new("/s"));
        assert_eq!(r.overlay, "copy (no overlay available)");
        assert_eq!(
            r.hints,
            [
                "no rootless overlay (kernel < 5.11): install fuse-overlayfs (Debian package fuse-overlayfs)"
            ]
        );
    }
}
