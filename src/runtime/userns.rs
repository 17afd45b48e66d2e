//! User namespaces with the full subuid/subgid mapping (newuidmap/newgidmap), a single-id
//! fallback, and nothing at all as root.
//!
//! `enter` must run while the process is single-threaded (before any tokio runtime): the
//! kernel refuses `unshare(CLONE_NEWUSER)` otherwise. Ids are mapped by a helper spawned
//! *before* the unshare, so it stays in the original namespace where newuidmap's set-uid
//! bit counts.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error(
        "cannot create a user namespace: {0} (check kernel.unprivileged_userns_clone and user.max_user_namespaces)"
    )]
    Unshare(nix::Error),
    #[error("mapping ids for pid {pid} failed: {reason}")]
    Map { pid: u32, reason: String },
    #[error("unshare(CLONE_NEWNS)")]
    MountNamespace(#[source] nix::Error),
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Mapping {
    /// Already root: no namespace needed, real ownership.
    Root,
    /// Container uid 0 = the user, 1.. = the subordinate range.
    Full {
        uid: u32,
        gid: u32,
        subuid: IdRange,
        subgid: IdRange,
    },
    /// Only the user's own id: ownership from images is squashed.
    Single { uid: u32, gid: u32, why: String },
}

impl Mapping {
    /// Whether files can be given the owners an image asks for.
    pub fn can_chown(&self) -> bool {
        !matches!(self, Mapping::Single { .. })
    }
    pub fn is_root(&self) -> bool {
        matches!(self, Mapping::Root)
    }
}

/// `/etc/subuid` format: `name-or-uid:start:count`, first match wins.
pub fn parse_subid(text: &str, user: &str, uid: u32) -> Option<IdRange> {
    text.lines().find_map(|line| {
        let mut f = line.trim().splitn(3, ':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != user && who.parse::<u32>().ok() != Some(uid) {
            return None;
        }
        Some(IdRange {
            start: start.trim().parse().ok()?,
            count: count.trim().parse().ok()?,
        })
        .filter(|r| r.count > 0)
    })
}

/// What this process would get: root, the full subordinate map, or a single id (and why).
pub fn detect() -> Mapping {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    if uid == 0 {
        return Mapping::Root;
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let single = |why: String| Mapping::Single { uid, gid, why };
    let (Some(subuid), Some(subgid)) = (
        parse_subid(&read("/etc/subuid"), &user, uid),
        parse_subid(&read("/etc/subgid"), &user, uid),
    ) else {
        return single(format!(
            "no range for {user} ({uid}) in /etc/subuid and /etc/subgid"
        ));
    };
    if crate::proc::which("newuidmap").is_none() || crate::proc::which("newgidmap").is_none() {
        return single("newuidmap/newgidmap are not installed (Debian package uidmap)".into());
    }
    Mapping::Full {
        uid,
        gid,
        subuid,
        subgid,
    }
}

/// Enters a new user and mount namespace as its root. Single-threaded callers only.
pub fn enter(m: &Mapping) -> Result<(), UsernsError> {
    use nix::sched::{CloneFlags, unshare};
    let pid = std::process::id();
    match m {
        Mapping::Root => return Ok(()),
        Mapping::Full {
            uid,
            gid,
            subuid,
            subgid,
        } => {
            let helper = crate::proc::HelperCmd::MapIds {
                pid,
                ids: [
                    *uid,
                    subuid.start,
                    subuid.count,
                    *gid,
                    subgid.start,
                    subgid.count,
                ],
            };
            let mut helper = helper
                .command()
                .map_err(|e| UsernsError::Map {
                    pid,
                    reason: format!("starting the id-mapping helper: {e}"),
                })?
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| UsernsError::Map {
                    pid,
                    reason: format!("starting the id-mapping helper: {e}"),
                })?;
            unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
                .map_err(UsernsError::Unshare)?;
            let _ = helper.stdin.take().expect("piped").write_all(b"go");
            let out = helper.wait_with_output().map_err(|e| UsernsError::Map {
                pid,
                reason: e.to_string(),
            })?;
            if !out.status.success() {
                return Err(UsernsError::Map {
                    pid,
                    reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        Mapping::Single { uid, gid, why } => {
            tracing::warn!(
                "user namespace with a single id ({why}): file owners from images are squashed to you"
            );
            unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
                .map_err(UsernsError::Unshare)?;
            let w = |p: &str, s: String| {
                std::fs::write(p, s).map_err(|e| UsernsError::Map {
                    pid,
                    reason: format!("{p}: {e}"),
                })
            };
            w("/proc/self/setgroups", "deny".into())?;
            w("/proc/self/uid_map", format!("0 {uid} 1"))?;
            w("/proc/self/gid_map", format!("0 {gid} 1"))?;
        }
    }
    let root = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root, root, root).map_err(|e| UsernsError::Sys {
        what: "setresgid(0)".into(),
        source: e.into(),
    })?;
    let root = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(root, root, root).map_err(|e| UsernsError::Sys {
        what: "setresuid(0)".into(),
        source: e.into(),
    })?;
    make_mounts_private()
}

/// As root `enter` makes no namespace at all: a mount namespace of our own (private) keeps
/// our mounts off the host. Rootless, `enter` has made one already.
pub fn own_mount_namespace(m: &Mapping) -> Result<(), UsernsError> {
    if m.is_root() {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(UsernsError::MountNamespace)?;
        make_mounts_private()?;
    }
    Ok(())
}

/// This process's mapping, entered, with a private mount namespace (also as root): for
/// `skiff unshare`, `mount` and `unpack`. Single-threaded callers only.
pub fn enter_with_mounts() -> Result<Mapping, UsernsError> {
    let mapping = detect();
    enter(&mapping)?;
    own_mount_namespace(&mapping)?;
    Ok(mapping)
}

/// The id map of the user namespace this process is in, from `/proc/self/uid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentMap {
    /// The host's own namespace (`0 0 4294967295`): real devices can be made.
    pub initial: bool,
    /// More than one id is mapped: owners from images can be kept.
    pub many: bool,
}

impl CurrentMap {
    /// Reads this process's map; unreadable reads as an empty map.
    pub fn current() -> CurrentMap {
        CurrentMap::parse(&std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default())
    }

    /// `uid_map` rows: `inside outside count`.
    pub fn parse(text: &str) -> CurrentMap {
        let rows: Vec<Vec<u64>> = text
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|f| f.parse().ok())
                    .collect()
            })
            .collect();
        let initial = rows.len() == 1 && rows[0] == [0, 0, 4294967295];
        let many = rows
            .iter()
            .map(|r| r.get(2).copied().unwrap_or(0))
            .sum::<u64>()
            > 1;
        CurrentMap { initial, many }
    }
}

/// Joins the user namespace of `pid` (a pod's) as its root, then makes a mount namespace of
/// our own there. As root there is no user namespace to join. Single-threaded callers only.
pub fn join(pid: u32, m: &Mapping) -> Result<(), UsernsError> {
    use nix::sched::{CloneFlags, setns, unshare};
    let sys = |what: &str, e: std::io::Error| UsernsError::Sys {
        what: format!("{what} of pid {pid}"),
        source: e,
    };
    if !m.is_root() {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map_err(|e| sys("opening the user namespace", e))?;
        setns(ns, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| sys("joining the user namespace", e.into()))?;
        let root = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root)
            .map_err(|e| sys("setresgid(0) in the namespace", e.into()))?;
        let root = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root)
            .map_err(|e| sys("setresuid(0) in the namespace", e.into()))?;
    }
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| sys("creating a mount namespace beside", e.into()))?;
    make_mounts_private()
}

/// Our mounts stay ours: nothing propagates back to the host's namespace.
pub fn make_mounts_private() -> Result<(), UsernsError> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| UsernsError::Sys {
        what: "making / private in the new mount namespace".into(),
        source: e.into(),
    })?;
    Ok(())
}

/// `skiff __map-ids PID UID SUBUID COUNT GID SUBGID COUNT`: waits for the go byte on stdin,
/// then writes the maps with newuidmap/newgidmap, checking their exit status.
pub fn map_ids_main(pid: u32, ids: [u32; 6]) -> i32 {
    let [uid, us, uc, gid, gs, gc] = ids.map(|i| i.to_string());
    let pid = pid.to_string();
    let mut go = [0u8; 2];
    if std::io::stdin().read_exact(&mut go).is_err() {
        return 1; // the parent went away before unsharing
    }
    for (prog, id, start, count) in [("newuidmap", &uid, &us, &uc), ("newgidmap", &gid, &gs, &gc)] {
        let path = crate::proc::which(prog).unwrap_or_else(|| Path::new(prog).to_path_buf());
        match Command::new(&path)
            .args([pid.as_str(), "0", id, "1", "1", start, count])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                crate::proc::tell_parent(format_args!(
                    "{prog} {pid} 0 {id} 1 1 {start} {count}: {} {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                return 1;
            }
            Err(e) => {
                crate::proc::tell_parent(format_args!("{}: {e}", path.display()));
                return 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_table() {
        let text =
            "tuser:100000:65536\n1003:231072:65536\nbad line\nzero:1:0\nskiff-test:165536:65536\n";
        let cases = [
            ("tuser", 1000, Some((100000, 65536))),
            ("other", 1003, Some((231072, 65536))),
            ("skiff-test", 1004, Some((165536, 65536))),
            ("zero", 1005, None),
            ("nobody", 65534, None),
        ];
        for (user, uid, want) in cases {
            assert_eq!(
                parse_subid(text, user, uid).map(|r| (r.start, r.count)),
                want,
                "{user}"
            );
        }
    }

    #[test]
    fn current_map_table() {
        let cases = [
            ("         0          0 4294967295\n", true, true),
            ("         0       1000          1\n", false, false),
            ("0 1000 1\n1 100000 65536\n", false, true),
            ("0 0 1\n", false, false),
            ("", false, false),
        ];
        for (text, initial, many) in cases {
            assert_eq!(
                CurrentMap::parse(text),
                CurrentMap { initial, many },
                "{text:?}"
            );
        }
    }
}
