//! User namespaces with the full subuid/subgid mapping (newuidmap/newgidmap), a single-id
//! fallback, and nothing at all as root.
//!
//! `enter` must run while the process is single-threaded (before any tokio runtime): the
//! kernel refuses `unshare(CLONE_NEWUSER)` otherwise. Ids are mapped by a child forked
//! *before* the unshare, so it stays in the original namespace where newuidmap's set-uid
//! bit counts (forked, not a helper executed: that cost a millisecond of a rootless start).

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
    #[error(
        "no `containers` range in {subuid} and {subgid}: containers of root get their ids from it (add `containers:2147483647:2147483648` to both, as scripts/setup does), or run with --userns=host"
    )]
    NoContainersRange { subuid: String, subgid: String },
    #[error(
        "the subordinate range containers:{}:{} is exhausted: {held} containers and pods hold all of its {slots} ranges of {SLOT} ids; remove some, or widen the range",
        range.start, range.count
    )]
    Exhausted {
        range: IdRange,
        held: usize,
        slots: u32,
    },
    #[error("--userns {0:?}: expected auto or host")]
    BadMode(String),
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// How a container of root gets its user namespace (`--userns`); rootless containers always
/// run in the user's own (podman's `--userns=host` rootless is the same thing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsernsMode {
    /// A range of its own from the `containers` subordinate ids (podman's `--userns=auto`).
    #[default]
    Auto,
    /// The host's: the container's root is host root.
    Host,
}

impl std::str::FromStr for UsernsMode {
    type Err = UsernsError;
    fn from_str(s: &str) -> Result<Self, UsernsError> {
        match s {
            "auto" => Ok(UsernsMode::Auto),
            "host" => Ok(UsernsMode::Host),
            other => Err(UsernsError::BadMode(other.to_string())),
        }
    }
}

/// Ids per container or pod: the 16-bit range images are built for.
pub const SLOT: u32 = 65536;

/// The ids one container or pod of root runs as: its 0..SLOT are the host's
/// `uid..uid+SLOT` (and gids likewise). Recorded in its plan.json or pod.json, which is what
/// holds it: the range is free again once that file is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allocation {
    pub uid: u32,
    pub gid: u32,
}

impl Allocation {
    /// As a mapping `enter` makes: 0 is the range's first id, 1.. the rest.
    pub fn mapping(&self) -> Mapping {
        Mapping::Full {
            uid: self.uid,
            gid: self.gid,
            subuid: IdRange {
                start: self.uid + 1,
                count: SLOT - 1,
            },
            subgid: IdRange {
                start: self.gid + 1,
                count: SLOT - 1,
            },
        }
    }

    /// `/proc/PID/uid_map` and `gid_map` rows.
    pub fn maps(&self) -> (String, String) {
        (
            format!("0 {} {SLOT}\n", self.uid),
            format!("0 {} {SLOT}\n", self.gid),
        )
    }

    /// A user namespace with this map, held by the returned fd (for idmapped mounts).
    /// Host root, single-threaded callers only.
    pub fn new_namespace(&self) -> Result<std::os::fd::OwnedFd, UsernsError> {
        let (uid_map, gid_map) = self.maps();
        super::sys::new_user_namespace(&uid_map, &gid_map).map_err(|source| UsernsError::Sys {
            what: format!("creating a user namespace for ids {}..", self.uid),
            source,
        })
    }
}

/// The `containers` entries of `/etc/subuid` and `/etc/subgid`: the ids containers of root
/// are given ranges from.
pub fn containers_ranges() -> Result<(IdRange, IdRange), UsernsError> {
    let (subuid, subgid) = ("/etc/subuid", "/etc/subgid");
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    // No user has this uid: the entry is matched by name only.
    match (
        parse_subid(&read(subuid), "containers", u32::MAX),
        parse_subid(&read(subgid), "containers", u32::MAX),
    ) {
        (Some(u), Some(g)) => Ok((u, g)),
        _ => Err(UsernsError::NoContainersRange {
            subuid: subuid.into(),
            subgid: subgid.into(),
        }),
    }
}

/// What a plan.json or pod.json holds of its ids.
#[derive(serde::Deserialize)]
struct Holder {
    #[serde(default)]
    userns: Option<Allocation>,
}

/// The ranges held in the store at `root`: its containers' plans and its pods.
fn held(root: &Path) -> std::collections::BTreeSet<u32> {
    let mut starts = std::collections::BTreeSet::new();
    for (dir, file) in [("containers", "plan.json"), ("pods", "pod.json")] {
        for entry in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let held = std::fs::read(entry.path().join(file))
                .ok()
                .and_then(|b| serde_json::from_slice::<Holder>(&b).ok())
                .and_then(|h| h.userns);
            if let Some(a) = held {
                starts.insert(a.uid);
            }
        }
    }
    starts
}

/// The first range of `SLOT` ids in `ranges` no container or pod of the store at `root`
/// holds. The returned lock (the store's `locks/userns.lock`) must be held until the plan
/// or pod.json naming the range is written: concurrent starts then never share one.
pub fn allocate(
    root: &Path,
    (uids, gids): (IdRange, IdRange),
) -> Result<(Allocation, crate::store::FileLock), UsernsError> {
    let lock_path = root.join("locks/userns.lock");
    let lock = std::fs::create_dir_all(root.join("locks"))
        .and_then(|()| crate::store::FileLock::exclusive(&lock_path))
        .map_err(|source| UsernsError::Sys {
            what: format!("locking {}", lock_path.display()),
            source,
        })?;
    let held = held(root);
    let slots = uids.count.min(gids.count) / SLOT;
    let free = (0..slots)
        .map(|i| Allocation {
            uid: uids.start + i * SLOT,
            gid: gids.start + i * SLOT,
        })
        .find(|a| !held.contains(&a.uid));
    match free {
        Some(a) => Ok((a, lock)),
        None => Err(UsernsError::Exhausted {
            range: uids,
            held: held.len(),
            slots,
        }),
    }
}

/// runc looks a container's root filesystem up as the container's root, in its user
/// namespace: the store's directories from `root` down to `dir` get search permission for
/// others (docker's root is 0711 for the same reason). Nothing is listed or readable by it.
pub fn make_searchable(root: &Path, dir: &Path) -> Result<(), UsernsError> {
    use std::os::unix::fs::PermissionsExt;
    for path in dir.ancestors().take_while(|p| p.starts_with(root)) {
        let sys = |source| UsernsError::Sys {
            what: format!("letting containers search {}", path.display()),
            source,
        };
        let mode = std::fs::metadata(path).map_err(sys)?.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o001))
                .map_err(sys)?;
        }
    }
    Ok(())
}

/// A directory the container's root cannot search, though the runtime must pass it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub dir: std::path::PathBuf,
    pub mode: u32,
    pub owner: (u32, u32),
    /// The container's root, as the host sees it.
    pub uid: u32,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the container's root (host uid {}) cannot search {} (mode {:04o}, owner {}:{}): \
             give others search permission there (chmod o+x), keep the store and plain -v \
             sources elsewhere, bind them with -v SRC:DST:idmap, or run with --userns=host",
            self.uid,
            self.dir.display(),
            self.mode & 0o7777,
            self.owner.0,
            self.owner.1
        )
    }
}

/// Why a runtime as root could not reach a container's root filesystem or a plain bind
/// source: it looks them up as the container's root, a host uid of the `containers` range,
/// which a 0700 directory above them (a store in root's home) stops. Asked after a failed start,
/// from the spec in `bundle`; None when the container has host ids or skiff runs rootless
/// (the container's root is then the user, who can search their own directories).
pub fn unreachable_by_container_root(bundle: &Path) -> Option<Unreachable> {
    use std::os::unix::fs::MetadataExt;
    let initial = std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    if !initial {
        return None;
    }
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).ok()?;
    let linux = spec.linux().as_ref()?;
    let host = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.as_ref()?
            .iter()
            .find(|m| m.container_id() == 0)
            .map(|m| m.host_id())
    };
    let (uid, gid) = (host(linux.uid_mappings())?, host(linux.gid_mappings())?);
    let root = spec.root().as_ref().map(|r| bundle.join(r.path()));
    let binds = spec.mounts().iter().flatten().filter(|m| {
        let options = m.options().as_deref().unwrap_or_default();
        options.iter().any(|o| o == "bind" || o == "rbind")
            && !options.iter().any(|o| o == "idmap" || o == "ridmap")
    });
    let paths = root
        .into_iter()
        .chain(binds.filter_map(|m| m.source().clone()));
    paths.filter(|p| p.is_absolute()).find_map(|path| {
        first_unsearchable(&path, uid, gid, |dir| {
            let m = std::fs::metadata(dir).ok()?;
            Some((m.mode(), m.uid(), m.gid()))
        })
    })
}

/// The first directory on the way to `path` (from `/`, `path`'s own parent included) that
/// `uid` with group `gid` may not search, by its mode bits; `stat` gives mode, owner, group.
fn first_unsearchable(
    path: &Path,
    uid: u32,
    gid: u32,
    stat: impl Fn(&Path) -> Option<(u32, u32, u32)>,
) -> Option<Unreachable> {
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    dirs.into_iter().find_map(|dir| {
        let (mode, owner, group) = stat(dir)?;
        let searchable = mode & 0o001 != 0
            || (owner == uid && mode & 0o100 != 0)
            || (group == gid && mode & 0o010 != 0);
        (!searchable).then(|| Unreachable {
            dir: dir.to_path_buf(),
            mode,
            owner: (owner, group),
            uid,
        })
    })
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
            let ids = [
                *uid,
                subuid.start,
                subuid.count,
                *gid,
                subgid.start,
                subgid.count,
            ];
            let mapper = super::sys::fork_until_go(move || map_ids(pid, ids)).map_err(|e| {
                UsernsError::Map {
                    pid,
                    reason: format!("starting the id-mapping child: {e}"),
                }
            })?;
            unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
                .map_err(UsernsError::Unshare)?;
            mapper
                .go()
                .map_err(|reason| UsernsError::Map { pid, reason })?;
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

/// Writes `pid`'s id maps (`ids`: uid, subuid start and count, gid, subgid start and count)
/// with newuidmap and newgidmap, both at once, from the namespace `pid` left; as root,
/// directly.
fn map_ids(pid: u32, ids: [u32; 6]) -> Result<(), String> {
    let [uid, us, uc, gid, gs, gc] = ids.map(|i| i.to_string());
    // Root writes the maps itself (newuidmap refuses to serve root).
    if nix::unistd::geteuid().is_root() {
        for (file, id, start, count) in [("uid_map", &uid, &us, &uc), ("gid_map", &gid, &gs, &gc)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, format!("0 {id} 1\n1 {start} {count}\n"))
                .map_err(|e| format!("writing {path}: {e}"))?;
        }
        return Ok(());
    }
    let pid = pid.to_string();
    let started: Vec<_> = [("newuidmap", &uid, &us, &uc), ("newgidmap", &gid, &gs, &gc)]
        .into_iter()
        .map(|(prog, id, start, count)| {
            let path = crate::proc::which(prog).unwrap_or_else(|| Path::new(prog).to_path_buf());
            let args = [pid.as_str(), "0", id, "1", "1", start, count];
            let child = Command::new(&path)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("{}: {e}", path.display()));
            (prog, args.join(" "), child)
        })
        .collect();
    let mut failed = Vec::new();
    for (prog, args, child) in started {
        match child.and_then(|c| c.wait_with_output().map_err(|e| format!("{prog}: {e}"))) {
            Ok(o) if o.status.success() => {}
            Ok(o) => failed.push(format!(
                "{prog} {args}: {} {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => failed.push(e),
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(failed.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    /// The first directory the container's root may not search, from `/` down.
    #[test]
    fn the_first_directory_the_container_root_cannot_search() {
        // (directory, mode, owner, group) on the way.
        type Dirs = &'static [(&'static str, u32, u32, u32)];
        let (uid, gid) = (100_000, 100_000);
        let tree = |dirs: Dirs| {
            move |dir: &Path| {
                dirs.iter()
                    .find(|(d, ..)| Path::new(d) == dir)
                    .map(|&(_, mode, owner, group)| (mode, owner, group))
            }
        };
        let cases: [(&str, Dirs, Option<&str>); 6] = [
            (
                "/var/lib/skiff/c/merged",
                &[
                    ("/", 0o755, 0, 0),
                    ("/var", 0o755, 0, 0),
                    ("/var/lib", 0o755, 0, 0),
                    ("/var/lib/skiff", 0o711, 0, 0),
                    ("/var/lib/skiff/c", 0o711, 0, 0),
                ],
                None,
            ),
            (
                "/srv/private/store/c/merged",
                &[
                    ("/", 0o755, 0, 0),
                    ("/srv", 0o755, 0, 0),
                    ("/srv/private", 0o700, 0, 0),
                    ("/srv/private/store", 0o711, 0, 0),
                    ("/srv/private/store/c", 0o711, 0, 0),
                ],
                Some("/srv/private"),
            ),
            (
                "/srv/own/c",
                &[
                    ("/", 0o755, 0, 0),
                    ("/srv", 0o755, 0, 0),
                    ("/srv/own", 0o700, 100_000, 0),
                ],
                None,
            ),
            (
                "/srv/group/c",
                &[
                    ("/", 0o755, 0, 0),
                    ("/srv", 0o755, 0, 0),
                    ("/srv/group", 0o750, 0, 100_000),
                ],
                None,
            ),
            (
                "/srv/other-group/c",
                &[
                    ("/", 0o755, 0, 0),
                    ("/srv", 0o755, 0, 0),
                    ("/srv/other-group", 0o750, 0, 5),
                ],
                Some("/srv/other-group"),
            ),
            (
                "/srv/readable-only/c",
                &[
                    ("/", 0o755, 0, 0),
                    ("/srv", 0o755, 0, 0),
                    ("/srv/readable-only", 0o744, 0, 0),
                ],
                Some("/srv/readable-only"),
            ),
        ];
        for (path, dirs, want) in cases {
            let found = first_unsearchable(Path::new(path), uid, gid, tree(dirs));
            assert_eq!(
                found.as_ref().map(|u| u.dir.as_path()),
                want.map(Path::new),
                "{path}"
            );
        }
        let message = first_unsearchable(
            Path::new("/srv/private/store/c"),
            uid,
            gid,
            tree(&[
                ("/", 0o755, 0, 0),
                ("/srv", 0o755, 0, 0),
                ("/srv/private", 0o40700, 0, 0),
            ]),
        )
        .unwrap()
        .to_string();
        assert!(
            message.contains("/srv/private (mode 0700, owner 0:0)"),
            "{message}"
        );
    }

    use super::*;

    /// The child forked before the unshare reports what its task said, and the mapping
    /// names both programs with their arguments when they fail (here: no such process).
    #[test]
    fn the_id_mapping_child_reports_its_failure() {
        type Task = fn() -> Result<(), String>;
        let cases: &[(Task, Result<(), &str>)] = &[
            (|| Ok(()), Ok(())),
            (|| Err("refused".into()), Err("refused")),
        ];
        for (task, want) in cases {
            let child = crate::runtime::sys::fork_until_go(*task).unwrap();
            assert_eq!(child.go(), want.map_err(String::from));
        }
        let gone = 0x3fff_fff0;
        let why = map_ids(gone, [1000, 100000, 65536, 1000, 100000, 65536]).unwrap_err();
        let parts = match nix::unistd::geteuid().is_root() {
            true => vec![format!("writing /proc/{gone}/uid_map")],
            false => vec![
                format!("newuidmap {gone} 0 1000 1 1 100000 65536"),
                format!("newgidmap {gone} 0 1000 1 1 100000 65536"),
            ],
        };
        for part in parts {
            assert!(why.contains(&part), "{why}");
        }
    }

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

    /// Writes a plan.json or pod.json holding `ids` (none: a plan of the host's ids).
    fn hold(root: &Path, file: &str, name: &str, ids: Option<Allocation>) {
        let dir = match file {
            "plan.json" => root.join("containers").join(name),
            _ => root.join("pods").join(name),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let body = serde_json::json!({ "id": name, "userns": ids });
        std::fs::write(dir.join(file), body.to_string()).unwrap();
    }

    #[test]
    fn ranges_are_first_fit_held_by_plans_and_pods_and_run_out() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let ranges = (
            IdRange {
                start: 1_000_000,
                count: 3 * SLOT + 10,
            },
            IdRange {
                start: 5_000_000,
                count: 3 * SLOT,
            },
        );
        let slot = |i: u32| Allocation {
            uid: 1_000_000 + i * SLOT,
            gid: 5_000_000 + i * SLOT,
        };
        let next = || allocate(root, ranges).map(|(a, _lock)| a);
        // An old plan (no ids of its own) holds nothing.
        hold(root, "plan.json", "old", None);
        let steps: &[(&str, &str, u32)] = &[
            ("plan.json", "a", 0),
            ("pod.json", "p", 1),
            ("plan.json", "b", 2),
        ];
        for (file, name, want) in steps {
            let got = next().unwrap();
            assert_eq!(got, slot(*want), "{name}");
            hold(root, file, name, Some(got));
        }
        // A pod's member holds the pod's range: counted once.
        hold(root, "plan.json", "member", Some(slot(1)));
        let err = next().unwrap_err();
        assert!(
            matches!(
                err,
                UsernsError::Exhausted {
                    held: 3,
                    slots: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the subordinate range containers:1000000:196618 is exhausted: 3 containers and pods hold all of its 3 ranges of 65536 ids; remove some, or widen the range"
        );
        // Removing a container's directory frees its range.
        std::fs::remove_dir_all(root.join("containers/a")).unwrap();
        assert_eq!(next().unwrap(), slot(0));
    }

    #[test]
    fn concurrent_allocations_never_share_a_range() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        let ranges = (
            IdRange {
                start: 100_000,
                count: 64 * SLOT,
            },
            IdRange {
                start: 100_000,
                count: 64 * SLOT,
            },
        );
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let (ids, _lock) = allocate(&root, ranges).unwrap();
                    hold(&root, "plan.json", &format!("c{i}"), Some(ids));
                    ids.uid
                })
            })
            .collect();
        let mut got: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 16, "every start got a range of its own: {got:?}");
    }

    #[test]
    fn modes_and_maps() {
        let cases = [
            ("auto", Some(UsernsMode::Auto)),
            ("host", Some(UsernsMode::Host)),
            ("keep-id", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<UsernsMode>().ok(), want, "{text:?}");
        }
        let ids = Allocation {
            uid: 2147483647,
            gid: 2147549183,
        };
        assert_eq!(
            ids.maps(),
            (
                "0 2147483647 65536\n".to_string(),
                "0 2147549183 65536\n".to_string()
            )
        );
        let Mapping::Full { subuid, subgid, .. } = ids.mapping() else {
            panic!()
        };
        assert_eq!((subuid.start, subuid.count), (2147483648, 65535));
        assert_eq!((subgid.start, subgid.count), (2147549184, 65535));
    }
}
