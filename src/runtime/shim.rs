//! The per-container shim: `skiff __shim DIR`, single-threaded, no tokio. It enters the
//! store's user namespace (with its own mount namespace), shows the runtime a pure cgroup2
//! hierarchy on hybrid hosts, mounts the overlay root, writes the bundle, then execs the OCI
//! runtime, so the mounts live exactly as long as the container does.

use super::backend::{Backend, Paths, RuntimeChoice};
use super::container::{State, Status, cgroup_path, write_state};
use super::network;
use super::plan::RunPlan;
use super::rootfs::{self, OverlayDirs};
use super::seccomp::bpf;
use super::spec;
use super::userns;
use std::path::Path;

fn fail(what: &str, e: &dyn std::error::Error) -> i32 {
    crate::proc::tell_parent(format_args!(
        "skiff shim: {what}: {}",
        crate::error_chain(e)
    ));
    125
}

/// Starts the container; when it cannot be, reports why and returns the exit status: the
/// shells' and docker's 127 (command not found) and 126 (not executable), else 125.
fn start(
    backend: &mut dyn Backend,
    id: &str,
    paths: &Paths,
    terminal: Option<&std::os::fd::OwnedFd>,
) -> Result<nix::unistd::Pid, i32> {
    backend.start(id, paths, terminal).map_err(|e| {
        fail("starting the container", &e);
        // The runtimes' own words ("failed to prepare rootfs", "permission denied") name
        // no directory: say which one stopped the container's root, if one did.
        if let Some(unreachable) = userns::unreachable_by_container_root(paths.bundle) {
            crate::proc::tell_parent(format_args!("skiff shim: {unreachable}"));
        }
        e.kind().exit_code()
    })
}

pub fn shim_main(dir: &Path, mut pipes: crate::proc::ShimPipes) -> i32 {
    // Before anything else: if this process is SIGKILLed from here on, the guardian takes
    // the container down with it. (Forked before the wait below, off the container's path.)
    let guardian = match super::sys::spawn_guardian(dir.join("container.pid")) {
        Ok(g) => g,
        Err(e) => return fail("starting the guardian", &e),
    };
    // Started before its container was made: nothing is ours to touch until the plan is
    // written. Given up on, `skiff run` reports why itself.
    if !pipes.wait_for_go() {
        return 125;
    }
    let plan = match RunPlan::read(dir) {
        Ok(p) => p,
        Err(e) => return fail("reading plan.json", &e),
    };
    // First of all: from here on a dead shim is seen as one (`system cleanup`).
    let (image, command) = (
        plan.image.clone(),
        spec::command_line(&plan).unwrap_or_default(),
    );
    let record = |status, exit_code| {
        let state = State {
            status,
            shim_pid: std::process::id(),
            exit_code,
            image: image.clone(),
            command: command.clone(),
        };
        write_state(dir, &state);
    };
    record(Status::Created, None);
    let mut ready = pipes.take_ready();
    let exit_pipe = pipes.take_exit();
    let mapping = userns::detect();
    // In a pod: its user and network namespaces, a mount namespace of our own. Otherwise
    // our own namespaces, with a user-mode network helper spawned while we are still in
    // the host's and attached once the network namespace exists.
    let mut _net_helper = None;
    let mut member_lock = None;
    let mut pod_pid = None;
    if let Some(pod_dir) = &plan.pod {
        match super::pod_state::lock_for_member(pod_dir) {
            Ok(l) => member_lock = Some(l),
            Err(e) => return fail("joining the pod", &e),
        }
        let pid = match super::pod_state::running(pod_dir) {
            Ok((_, pid)) => pid,
            Err(e) => return fail("joining the pod", &e),
        };
        pod_pid = Some(pid);
        if let Err(e) = userns::join(pid, &mapping) {
            return fail("joining the pod's user namespace", &e);
        }
        if let Err(e) = network::join(pid) {
            return fail("joining the pod's network", &e);
        }
    } else {
        let pending = match network::prepare_helper(
            &plan.network,
            std::process::id(),
            !mapping.is_root(),
            &dir.join("network.log"),
        ) {
            Ok(p) => p,
            Err(e) => return fail("network", &e),
        };
        if let Err(e) = userns::enter(&mapping) {
            return fail("entering the user namespace", &e);
        }
        match userns::own_mount_namespace(&mapping) {
            Ok(()) => {}
            // The system's error alone: the step is named by our own words.
            Err(userns::UsernsError::MountNamespace(e)) => {
                return fail("creating a mount namespace", &e);
            }
            Err(e) => return fail("creating a mount namespace", &e),
        }
        // The container inherits the shim's network namespace.
        if plan.network.is_private() {
            if let Err(e) = network::enter_private() {
                return fail("network", &e);
            }
        }
        if let Some(p) = pending {
            match p.attach(std::time::Duration::from_secs(10)) {
                Ok(h) => _net_helper = Some(h),
                Err(e) => return fail("network", &e),
            }
        }
    }
    // Hybrid hosts: the runtime must see cgroup v2 only (crun refuses hybrid mode), unless
    // limits are to be enforced as root through the v1 controllers.
    let unified = Path::new("/sys/fs/cgroup/unified");
    let v1_limits = !plan.limits.is_empty() && spec::cgroup_limits() == Ok(spec::CgroupLimits::V1);
    if unified.join("cgroup.controllers").exists() && !v1_limits {
        if let Err(e) = nix::mount::mount(
            Some(unified),
            "/sys/fs/cgroup",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        ) {
            return fail("binding cgroup2 over /sys/fs/cgroup", &e);
        }
    }
    let transient = super::container::transient(dir);
    if let Err(e) = rootfs::mount_transient(&transient) {
        return fail("mounting the container's transient files", &e);
    }
    let dirs = match OverlayDirs::create(dir, &transient) {
        Ok(d) => d,
        Err(e) => return fail("creating overlay directories", &e),
    };
    // As root with ids of its own, the container's runtime makes its user namespace; the
    // layers (owned by host ids) and the idmap volumes are shown through its map.
    let mut plan = plan;
    let mut lowers = plan.lowers.clone();
    let own_ids = plan.userns.filter(|_| mapping.is_root());
    if let Some(ids) = own_ids {
        match idmapped(&mut plan, ids, pod_pid, &dirs) {
            Ok(l) => lowers = l,
            Err(e) => return fail("mapping the container's ids", &e),
        }
    }
    let owner_base = own_ids.map(|ids| (ids.uid, ids.gid)).unwrap_or((0, 0));
    match rootfs::init_layer(&transient.join("init"), &plan.lowers, owner_base) {
        Ok(init) => lowers.insert(0, init),
        Err(e) => return fail("making the init layer", &e),
    }
    let upper = match plan.remove {
        true => rootfs::Upper::Volatile,
        false => rootfs::Upper::Kept,
    };
    if let Err(e) = rootfs::mount_overlay(
        &lowers,
        &dirs,
        upper,
        std::env::var("SKIFF_OVERLAY").ok().as_deref(),
    ) {
        return fail("mounting the root filesystem", &e);
    }
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    // A pod's members share its hosts file (and its resolv.conf unless --dns is given).
    let mut files = vec![("hostname", format!("{}\n", plan.hostname))];
    if plan.pod.is_none() {
        files.push(("hosts", network::hosts_file(&plan.hostname, &plan.hosts)));
    }
    if plan.pod.is_none() || !plan.dns.is_empty() {
        files.push((
            "resolv.conf",
            network::resolv_conf(&plan.network, &plan.dns, &host_resolv),
        ));
    }
    for (name, body) in files {
        if let Err(e) = std::fs::write(transient.join(name), body) {
            return fail(name, &e);
        }
    }
    if let Some(ids) = own_ids
        && plan.pod.is_none()
    {
        // Its root may write them, as docker's may.
        for name in rootfs::BIND_TARGETS {
            let _ = std::os::unix::fs::chown(transient.join(name), Some(ids.uid), Some(ids.gid));
        }
    }
    // The store's cache: beside `containers/`, which holds this container's directory.
    let cache = plan
        .dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join("cache/seccomp");
    let seccomp = match seccomp_filter(&plan, &cache) {
        Ok(s) => s,
        Err(e) => return fail("building the runtime spec", &e),
    };
    let mut spec = match spec::build_with(&plan, &dirs.merged, seccomp.profile.as_ref()) {
        Ok(s) => s,
        Err(e) => return fail("building the runtime spec", &e),
    };
    if let Some(ids) = own_ids {
        let joined = pod_pid.map(|pid| format!("/proc/{pid}/ns/user").into());
        if let Err(e) = spec::in_user_namespace(&mut spec, ids, joined) {
            return fail("building the runtime spec", &e);
        }
    }
    // As root, runtimes that make cgroups (libcontainer, runc) put the container under our
    // own cgroup, not at the hierarchy's root: a CI job's limits keep covering it.
    if mapping.is_root()
        && let Some(linux) = spec.linux_mut()
        && linux.cgroups_path().is_none()
    {
        linux.set_cgroups_path(Some(cgroup_path(&plan.id)));
    }
    // The working directory is created if the image lacks it (in the upper layer), owned
    // by the container's root: in ids of its own, a directory of host root's would be
    // nobody's inside, and the job could not write beside its project (`/builds/g/p.tmp`).
    let cwd = spec
        .process()
        .as_ref()
        .map(|p| p.cwd().clone())
        .unwrap_or_else(|| "/".into());
    let mut made = dirs.merged.clone();
    for part in cwd.components().skip(1) {
        made.push(part);
        if std::fs::create_dir(&made).is_ok()
            && let Some(ids) = own_ids
        {
            let _ = std::os::unix::fs::chown(&made, Some(ids.uid), Some(ids.gid));
        }
    }
    let bundle = transient.join("bundle");
    if let Err(e) = std::fs::create_dir_all(&bundle) {
        return fail("writing config.json", &e);
    }
    let program = plan
        .runtime
        .adapt_spec(&mut spec, &bundle, &cache, seccomp.compiled.as_ref());
    match (seccomp.compiled, program, seccomp.kept_at) {
        // The spec has no filter then: without its program the container would have none.
        // crun has it in its annotation.
        (Some(_), _, _) if plan.runtime != RuntimeChoice::Libcontainer => {}
        (Some(compiled), _, _) => {
            if let Err(e) = compiled.write(&bundle.join(bpf::IN_BUNDLE)) {
                return fail("writing the seccomp program", &e);
            }
        }
        (None, Some(program), Some(path)) => {
            if let Err(e) = program.write(&path) {
                tracing::debug!("keeping the compiled seccomp filter: {e}");
            }
        }
        _ => {}
    }
    if let Err(e) = spec.save(bundle.join("config.json")) {
        return fail("writing config.json", &e);
    }
    // The container runs as our child (or its runtime does), so that after it exits we can
    // still clean up from inside the namespace; signals are relayed through a signalfd.
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::SignalFd;
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGWINCH,
    ] {
        mask.add(s);
    }
    if let Err(e) = mask.thread_block() {
        return fail("blocking signals", &e);
    }
    let signals = match SignalFd::with_flags(&mask, nix::sys::signalfd::SfdFlags::SFD_NONBLOCK) {
        Ok(fd) => fd,
        Err(e) => return fail("signalfd", &e),
    };
    let state_dir = transient.join("runtime");
    let pid_file = dir.join("container.pid");
    let (pty_master, pty_slave) = if plan.tty {
        match super::tty::open() {
            Ok(p) => (Some(p.master), Some(p.slave)),
            Err(e) => return fail("run -t", &e),
        }
    } else {
        (None, None)
    };
    let paths = Paths {
        bundle: &bundle,
        state: &state_dir,
        pid_file: &pid_file,
    };
    // The same answer from every runtime for a command that is not there (runtimes differ:
    // crun exits 1): 127 as in a shell, before anything starts.
    if let Some(process) = spec.process()
        && let Err((code, why)) = check_executable(&dirs.merged, process)
    {
        crate::proc::tell_parent(format_args!("skiff: {why}"));
        return code;
    }
    let mut discard = match pipe_instead_of_dev_null() {
        Ok(d) => d,
        Err(e) => return fail("replacing /dev/null output", &e),
    };
    let mut backend = plan.runtime.backend(Some(&spec));
    // std resets the signal mask in children, so the runtime sees signals normally.
    let pid = match start(backend.as_mut(), &plan.id, &paths, pty_slave.as_ref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if own_ids.is_some() && plan.runtime == super::backend::RuntimeChoice::Libcontainer {
        // libcontainer's exec reads the spec from here again. It never joins a user namespace
        // (0.7), so the exec helper joins the container's; the entry would only make it judge
        // that process as one about to make a namespace (and refuse supplementary groups).
        spec::without_user_namespace(&mut spec);
        if let Err(e) = spec.save(bundle.join("config.json")) {
            tracing::warn!("rewriting config.json for exec: {e}");
        }
    }
    if let Some(d) = discard.as_mut() {
        d.give_up_writing();
    }
    drop(member_lock.take());
    record(Status::Running, None);
    if let Some(mut r) = ready.take() {
        use std::io::Write;
        let _ = r.write_all(b"r");
    }
    // Only the container holds the terminal's slave side now: its end is our EOF.
    drop(pty_slave);
    let _raw = pty_master
        .as_ref()
        .filter(|_| std::io::IsTerminal::is_terminal(&std::io::stdin()))
        .map(|_| super::tty::RawMode::enter());
    let code = wait_and_relay(pid, &signals, pty_master, discard);
    let late_delete = plan.remove && plan.runtime == super::backend::RuntimeChoice::Libcontainer;
    if !late_delete {
        backend.delete(&plan.id, &paths);
    }
    guardian.dismiss();
    // An --rm container's name is free from here on: its files move aside, to be removed
    // after the status is reported (or by `system cleanup`, should we die first). Set aside,
    // it needs no record of its exit (one file replaced on disk fewer before the status).
    let leftover = match plan.remove {
        true => Some(set_aside(dir)),
        false => None,
    };
    if leftover.as_deref().is_none_or(|d| d == dir) {
        record(Status::Exited, Some(code));
    }
    // What is left (unmounting, removing, the end of our mount namespace) is not the
    // caller's to wait for.
    if let Some(pipe) = exit_pipe {
        crate::proc::report_exit(pipe, code);
    }
    if let Some(dir) = leftover {
        let transient = super::container::transient(&dir);
        if late_delete {
            let (bundle, state, pid_file) = (
                transient.join("bundle"),
                transient.join("runtime"),
                dir.join("container.pid"),
            );
            backend.delete(
                &plan.id,
                &Paths {
                    bundle: &bundle,
                    state: &state,
                    pid_file: &pid_file,
                },
            );
        }
        // The root, idmapped layers and volumes are mounted inside: all go at once.
        let _ = nix::mount::umount2(&transient, nix::mount::MntFlags::MNT_DETACH);
        if let Err(e) = crate::unpack::remove_tree(&dir) {
            crate::proc::tell_parent(format_args!("skiff shim: removing {}: {e}", dir.display()));
        }
    }
    code
}

/// Moves an ended `--rm` container's directory aside (`containers/.removing-ID-PID`, which
/// `ps` and `find` skip and `system cleanup` removes like any ended `--rm` container) and
/// returns where it is now; where it cannot be moved, it stays.
fn set_aside(dir: &Path) -> std::path::PathBuf {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return dir.to_path_buf();
    };
    let aside = parent.join(format!(
        "{}{}-{}",
        super::container::SET_ASIDE,
        name.to_string_lossy(),
        std::process::id()
    ));
    match std::fs::rename(dir, &aside) {
        Ok(()) => aside,
        Err(_) => dir.to_path_buf(),
    }
}

/// Where the shim attaches idmapped layers and volumes, among the transient files.
const IDMAPPED_LAYERS: &str = "idmapped-layers";
const IDMAPPED_VOLUMES: &str = "idmapped-volumes";

/// For a container of root with ids of its own: the upper layer given to its root, the
/// layers and `idmap` volumes attached idmapped through its map (a pod's members: the
/// pod's namespace), the plan's volume sources pointed at them. Returns the layers.
fn idmapped(
    plan: &mut RunPlan,
    ids: userns::Allocation,
    pod_pid: Option<u32>,
    dirs: &OverlayDirs,
) -> Result<Vec<std::path::PathBuf>, rootfs::RootfsError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| rootfs::RootfsError::Io { op, path, source }
    };
    let namespace = match pod_pid {
        Some(pid) => {
            let path = format!("/proc/{pid}/ns/user");
            std::fs::File::open(&path)
                .map(std::os::fd::OwnedFd::from)
                .map_err(io("opening", Path::new(&path)))?
        }
        None => ids.new_namespace()?,
    };
    for d in [&dirs.upper, &dirs.work] {
        std::os::unix::fs::chown(d, Some(ids.uid), Some(ids.gid)).map_err(io("chown", d))?;
    }
    let transient = super::container::transient(&plan.dir);
    let lowers =
        rootfs::attach_idmapped(&plan.lowers, &transient.join(IDMAPPED_LAYERS), &namespace)?;
    let sources: Vec<_> = plan
        .volumes
        .iter()
        .filter(|v| v.idmap)
        .map(|v| v.source.clone())
        .collect();
    let attached =
        rootfs::attach_idmapped(&sources, &transient.join(IDMAPPED_VOLUMES), &namespace)?;
    let mut attached = attached.into_iter();
    for v in plan.volumes.iter_mut().filter(|v| v.idmap) {
        if let Some(at) = attached.next() {
            v.source = at;
        }
    }
    Ok(lowers)
}

/// `path` (absolute, as the container sees it) on the host under `root`, with symbolic
/// links followed the way the kernel would inside the container (never out of `root`);
/// `None` when it does not exist.
fn resolve_in(root: &Path, path: &Path) -> Option<std::path::PathBuf> {
    use std::ffi::OsString;
    use std::path::{Component, PathBuf};
    let parts = |p: &Path| -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .rev()
            .collect()
    };
    let mut pending = parts(path);
    let mut resolved = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let host = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            // The kernel's limit on links in one lookup.
            links += 1;
            if links > 40 {
                return None;
            }
            let target = std::fs::read_link(&host).ok()?;
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            pending.extend(parts(&target));
        } else {
            resolved = candidate;
        }
    }
    Some(root.join(resolved.strip_prefix("/").unwrap_or(&resolved)))
}

/// A script's interpreter (`#!/bin/sh -e` → `/bin/sh`), if the file is one.
fn interpreter(file: &Path) -> Option<std::path::PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(file).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    text.split_whitespace().next().map(std::path::PathBuf::from)
}

/// How a start gets its seccomp filter.
struct SeccompFilter {
    /// The profile, to convert into the spec's filter.
    profile: Option<super::seccomp::Profile>,
    /// The program an earlier start compiled from the same profile for the same capabilities
    /// (runtimes that load it alone): the spec then has no filter, and the bundle (or crun's
    /// annotation) this program.
    compiled: Option<bpf::Program>,
    /// Where the program this start compiles is kept under its profile's name.
    kept_at: Option<std::path::PathBuf>,
}

fn seccomp_filter(plan: &RunPlan, cache: &Path) -> Result<SeccompFilter, spec::SpecError> {
    let Some(source) = plan.seccomp.source()? else {
        return Ok(SeccompFilter {
            profile: None,
            compiled: None,
            kept_at: None,
        });
    };
    let kept_at = if plan.runtime.loads_program_alone(cache) {
        Some(bpf::source_path(
            cache,
            source.key(),
            &spec::bounding_set(plan)?,
        ))
    } else {
        None
    };
    let compiled = kept_at.as_deref().and_then(bpf::find);
    let profile = match compiled {
        Some(_) => None,
        None => Some(source.profile_unchecked()?),
    };
    Ok(SeccompFilter {
        profile,
        compiled,
        kept_at,
    })
}

/// Finds the command in the container's root the way execvp would (through the process's
/// PATH, relative to its working directory, links followed inside the root, a script's
/// interpreter too): 127 when missing, 126 when not executable. libcontainer tells these
/// apart only in text, and the external runtimes not at all (crun exits 1), so this check
/// is what gives every runtime the shell's answer.
fn check_executable(
    root: &Path,
    process: &oci_spec::runtime::Process,
) -> Result<(), (i32, String)> {
    use std::os::unix::fs::PermissionsExt;
    let Some(name) = process.args().as_ref().and_then(|a| a.first()) else {
        return Ok(());
    };
    let candidates: Vec<std::path::PathBuf> = if name.contains('/') {
        vec![process.cwd().join(name)]
    } else {
        let path = process
            .env()
            .as_ref()
            .and_then(|e| e.iter().find_map(|kv| kv.strip_prefix("PATH=")))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .to_string();
        path.split(':').map(|d| Path::new(d).join(name)).collect()
    };
    for c in &candidates {
        let Some(found) = resolve_in(root, c) else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(&found) else {
            continue;
        };
        if meta.is_dir() {
            continue;
        }
        if meta.is_file() && meta.permissions().mode() & 0o111 == 0 {
            return Err((126, format!("{name}: permission denied (not executable)")));
        }
        // Only a regular file is read (opening a FIFO would block).
        if meta.is_file()
            && let Some(interp) = interpreter(&found)
        {
            let interp = process.cwd().join(interp);
            if resolve_in(root, &interp).is_none() {
                return Err((
                    127,
                    format!("{name}: bad interpreter {}: no such file", interp.display()),
                ));
            }
        }
        return Ok(());
    }
    Err((
        127,
        format!("{name}: executable file not found in $PATH in the container"),
    ))
}

/// An output of the container that is a pipe instead of /dev/null: the shim reads and drops
/// what comes through it, until every writer (the container's processes) is gone.
struct Discard {
    read: std::fs::File,
    /// The shim's own outputs as they were (/dev/null), to take back once the container has
    /// its copies: then the end of the container is the pipe's end.
    saved: Vec<(std::os::fd::RawFd, std::os::fd::OwnedFd)>,
}

impl Discard {
    /// Points the shim's own outputs back at /dev/null, once the container holds the pipe.
    fn give_up_writing(&mut self) {
        use std::os::fd::AsRawFd;
        for (fd, original) in self.saved.drain(..) {
            let _ = nix::unistd::dup2(original.as_raw_fd(), fd);
        }
    }
}

/// libcontainer reopens a stdout or stderr that is the host's /dev/null as the container's
/// /dev/null, but read-only (runc fixed the same bug in 2015), so the container's writes fail
/// with EBADF. Such outputs become a pipe whose contents the shim reads and drops.
fn pipe_instead_of_dev_null() -> std::io::Result<Option<Discard>> {
    use std::os::fd::{AsFd, AsRawFd};
    let is_dev_null = |fd: std::os::fd::BorrowedFd<'_>| {
        rustix::fs::fstat(fd).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice
                && st.st_rdev == rustix::fs::makedev(1, 3)
        })
    };
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let mut saved = Vec::new();
    for fd in [stdout.as_fd(), stderr.as_fd()] {
        if is_dev_null(fd) {
            saved.push((fd.as_raw_fd(), rustix::io::fcntl_dupfd_cloexec(fd, 3)?));
        }
    }
    if saved.is_empty() {
        return Ok(None);
    }
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    for (fd, _) in &saved {
        nix::unistd::dup2(write.as_raw_fd(), *fd)?;
    }
    Ok(Some(Discard {
        read: std::fs::File::from(read),
        saved,
    }))
}

/// Waits for the container's process, relaying signals to it and, with a terminal, its
/// output and our input; returns its exit code once it has exited and its output is drained.
fn wait_and_relay(
    pid: nix::unistd::Pid,
    signals: &nix::sys::signalfd::SignalFd,
    mut master: Option<std::fs::File>,
    mut discard: Option<Discard>,
) -> i32 {
    use super::tty::{self, Relay};
    use nix::sys::signal::Signal;
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use rustix::event::{PollFd, PollFlags, poll};
    let mut stdin_open = master.is_some();
    let mut code = None;
    loop {
        if code.is_none() {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => code = Some(c),
                Ok(WaitStatus::Signaled(_, sig, _)) => code = Some(128 + sig as i32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => code = Some(fail("waiting for the container", &e)),
            }
        }
        if let Some(c) = code
            && master.is_none()
            && discard.is_none()
        {
            return c;
        }
        let stdin = std::io::stdin();
        let (mut sig_ready, mut out_ready, mut in_ready) = (false, false, false);
        let mut discard_ready = false;
        {
            let mut fds = vec![PollFd::new(signals, PollFlags::IN)];
            if let Some(m) = &master {
                fds.push(PollFd::new(m, PollFlags::IN));
            }
            if stdin_open {
                fds.push(PollFd::new(&stdin, PollFlags::IN));
            }
            if let Some(d) = &discard {
                fds.push(PollFd::new(&d.read, PollFlags::IN));
            }
            // Once the container has exited, only drain what it wrote: its end closes the
            // pipe and the terminal at once, this is only a bound for what else might hold
            // them.
            let drain = rustix::event::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            match poll(&mut fds, code.map(|_| &drain)) {
                Ok(0) if code.is_some() => {
                    master = None;
                    discard = None;
                }
                Ok(_) => {
                    sig_ready = !fds[0].revents().is_empty();
                    out_ready = fds.get(1).is_some_and(|f| !f.revents().is_empty());
                    in_ready = stdin_open && fds.get(2).is_some_and(|f| !f.revents().is_empty());
                    discard_ready =
                        discard.is_some() && fds.last().is_some_and(|f| !f.revents().is_empty());
                }
                Err(_) => {}
            }
        }
        if sig_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => {
                        if let Some(m) = &master {
                            tty::resize(m);
                        }
                    }
                    Ok(sig) => {
                        let _ = nix::sys::signal::kill(pid, sig);
                    }
                    Err(_) => {}
                }
            }
        }
        if out_ready
            && let Some(m) = master.as_mut()
            && matches!(tty::pump_output(m), Relay::Closed)
        {
            master = None;
        }
        if discard_ready && let Some(d) = discard.as_mut() {
            use std::io::Read;
            let mut buf = [0u8; 16384];
            if matches!(d.read.read(&mut buf), Ok(0)) {
                discard = None;
            }
        }
        if in_ready
            && let Some(m) = master.as_mut()
            && matches!(tty::pump_input(m), Relay::Closed)
        {
            stdin_open = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::backend::StartErrorKind;
    use crate::runtime::backend::fake::{Call, Fake};
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn start_errors_become_the_shells_codes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let paths = Paths {
            bundle: p,
            state: p,
            pid_file: p,
        };
        let cases = [
            (None, Ok(4242)),
            (Some(StartErrorKind::NotFound), Err(127)),
            (Some(StartErrorKind::NotExecutable), Err(126)),
            (Some(StartErrorKind::Other), Err(125)),
        ];
        for (error, want) in cases {
            let mut fake = Fake {
                start_error: error,
                ..Default::default()
            };
            let got = start(&mut fake, "c1", &paths, None).map(|p| p.as_raw());
            assert_eq!(got, want, "{error:?}");
            assert_eq!(
                fake.calls,
                [Call::Start {
                    id: "c1".into(),
                    terminal: false
                }]
            );
        }
    }

    #[test]
    fn commands_are_found_as_execvp_would() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let write = |path: &str, body: &str, mode: u32| {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("bin/sh", "", 0o755);
        write("bin/data", "", 0o644);
        write("bin/script", "#!/bin/sh -e\n", 0o755);
        write("bin/orphan", "#!/no/such/shell\n", 0o755);
        std::fs::create_dir_all(root.join("usr/bin/dir")).unwrap();
        symlink("/bin/sh", root.join("usr/bin/abs-link")).unwrap();
        symlink("../../bin/sh", root.join("usr/bin/rel-link")).unwrap();
        symlink("/bin/missing", root.join("usr/bin/dangling")).unwrap();
        // A link climbing out of the root stays inside it.
        symlink("../../../../../../bin/sh", root.join("usr/bin/escape")).unwrap();
        let cases: &[(&str, Result<(), i32>)] = &[
            ("sh", Ok(())),
            ("/bin/sh", Ok(())),
            ("abs-link", Ok(())),
            ("rel-link", Ok(())),
            ("escape", Ok(())),
            ("script", Ok(())),
            ("orphan", Err(127)),
            ("dangling", Err(127)),
            ("missing", Err(127)),
            ("dir", Err(127)),
            ("data", Err(126)),
            ("./bin/sh", Ok(())),
        ];
        for (name, want) in cases {
            let process = oci_spec::runtime::ProcessBuilder::default()
                .args(vec![name.to_string()])
                .env(vec!["PATH=/usr/bin:/bin".to_string()])
                .cwd("/")
                .build()
                .unwrap();
            let got = check_executable(root, &process).map_err(|(code, _)| code);
            assert_eq!(got, *want, "{name}");
        }
    }
}
