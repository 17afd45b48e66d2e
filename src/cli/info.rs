//! `skiff info`: what this host offers for rootless containers, and what to do where it falls
//! short.

use super::{Context, Format, print_json};
use anyhow::Result;
use serde_json::json;
use skiff::runtime::userns::{self, Mapping};
use skiff::store::layout;
use std::path::Path;

fn which(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn run(ctx: &Context) -> Result<()> {
    let mut hints: Vec<String> = Vec::new();
    let kernel = rustix::system::uname()
        .release()
        .to_string_lossy()
        .to_string();
    let max_userns = read("/proc/sys/user/max_user_namespaces");
    let userns_ok = max_userns.parse::<u64>().map(|n| n > 0).unwrap_or(false)
        && read("/proc/sys/kernel/unprivileged_userns_clone") != "0";
    if !userns_ok {
        hints.push("user namespaces are disabled: set user.max_user_namespaces > 0 (and kernel.unprivileged_userns_clone=1 where it exists)".into());
    }
    let mapping = userns::detect();
    if let Mapping::Single { why, .. } = &mapping {
        hints.push(format!("only a single-id user namespace: {why}; add a range with `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER` and install uidmap"));
    }
    let cgroup_fs = rustix::fs::statfs("/sys/fs/cgroup").map(|s| s.f_type).ok();
    let cgroup = match cgroup_fs {
        Some(0x63677270) => "v2",
        Some(_) if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() => {
            "hybrid (v1 + v2 at /sys/fs/cgroup/unified)"
        }
        Some(_) => "v1",
        None => "unknown",
    };
    let v2_left = read("/sys/fs/cgroup/unified/cgroup.controllers");
    if cgroup.starts_with("hybrid") && !v2_left.is_empty() {
        hints.push(format!("controllers {v2_left} sit on the v2 side of a hybrid host: crun and podman refuse to run there (skiff does not mind); scripts/setup gives each its own v1 mount"));
    }
    let own_cgroup = read("/proc/self/cgroup");
    let delegated = own_cgroup
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
    if !delegated {
        hints.push("no writable, delegated cgroup v2 subtree: --memory/--cpus/--pids-limit cannot be enforced (systemd: Delegate=yes for the user's service)".into());
    }
    let runtimes: Vec<String> = std::iter::once("libcontainer (embedded, default)".to_string())
        .chain(
            ["crun", "runc"]
                .iter()
                .filter_map(|r| which(r).map(|p| format!("{r} ({p})"))),
        )
        .collect();
    let tun = rustix::fs::access(
        "/dev/net/tun",
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    )
    .is_ok();
    if !tun {
        hints.push("/dev/net/tun is not accessible to you: slirp4netns and pasta cannot work (chmod 0666 /dev/net/tun, the usual mode)".into());
    }
    let network: Vec<String> = ["pasta", "slirp4netns"]
        .iter()
        .filter_map(|r| which(r).map(|_| r.to_string()))
        .collect();
    if network.is_empty() {
        hints.push("neither pasta (package passt) nor slirp4netns is installed: containers with a private network have no outbound access".into());
    }
    let fuse = which("fuse-overlayfs");
    let dev_fuse = rustix::fs::access(
        "/dev/fuse",
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    )
    .is_ok();
    let overlay = if kernel_at_least(&kernel, 5, 11) {
        "native (kernel >= 5.11, userxattr)"
    } else if fuse.is_some() {
        "fuse-overlayfs"
    } else {
        "copy (no overlay available)"
    };
    if !kernel_at_least(&kernel, 5, 11) && fuse.is_none() {
        hints.push("no rootless overlay: install fuse-overlayfs (kernel < 5.11)".into());
    }
    let report = json!({
        "kernel": kernel,
        "user_namespaces": userns_ok,
        "max_user_namespaces": max_userns,
        "id_mapping": mapping,
        "newuidmap": which("newuidmap"),
        "newgidmap": which("newgidmap"),
        "overlay": overlay,
        "fuse_overlayfs": fuse,
        "dev_fuse_accessible": dev_fuse,
        "cgroup": cgroup,
        "cgroup_delegated": delegated,
        "runtimes": runtimes,
        "network_helpers": network,
        "dev_net_tun_accessible": tun,
        "store": ctx.root.display().to_string(),
        "layers": layout::layers_dir(&ctx.root).display().to_string(),
        "containers": layout::containers_dir(&ctx.root).display().to_string(),
        "hints": hints,
    });
    if ctx.format == Format::Json {
        return print_json(&report);
    }
    for (k, v) in report.as_object().expect("object") {
        if k == "hints" {
            continue;
        }
        println!(
            "{k:>22}: {}",
            match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        );
    }
    for h in &hints {
        println!("hint: {h}");
    }
    Ok(())
}

fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
