//! Container hardening, rootless (as skiff-test) and as root, with every backend: the default
//! seccomp filter (containers-common's profile), `--security-opt seccomp=...`, and bad
//! profiles refused before anything starts.

mod common;

use common::runner::{Cleanup, Runner, for_each_runner};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TOOLS: &[&str] = &["gcc", "crun", "runc", "busybox"];
const BACKENDS: &[&str] = &["libcontainer", "crun", "runc"];

/// `tests/common/NAME.c`, built static once per test binary.
fn static_program(name: &'static str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut built = BUILT.lock().unwrap();
    if !built.contains(&name) {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/common/{name}.c"));
        common::ok(
            std::process::Command::new("gcc")
                .args(["-static", "-O1", "-o"])
                .arg(&out)
                .arg(source),
        );
        built.push(name);
    }
    out
}

/// An image of busybox, the syscall probe, the exe watcher and `/evil`, a script whose
/// interpreter is `/proc/self/exe`; imported into the runner's store as `probe`.
fn probe_image(who: &Runner) -> &'static str {
    let tar = who.scratch.join("probe.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
    let busybox = common::which("busybox").unwrap();
    b.append_path_with_name(&busybox, "bin/busybox").unwrap();
    b.append_path_with_name(static_program("syscall-probe"), "probe")
        .unwrap();
    b.append_path_with_name(static_program("exe-watcher"), "watcher")
        .unwrap();
    let mut h = tar::Header::new_gnu();
    let evil = b"#!/proc/self/exe\n";
    h.set_size(evil.len() as u64);
    h.set_mode(0o755);
    b.append_data(&mut h, "evil", &evil[..]).unwrap();
    for applet in [
        "sh", "sleep", "cat", "ls", "echo", "head", "tail", "wc", "kill",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    for dir in ["tmp", "proc", "dev", "sys", "etc"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o1777);
        b.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    b.finish().unwrap();
    who.give(&tar);
    who.ok(&["import", "-q", tar.to_str().unwrap(), "probe"]);
    "probe"
}

/// What the probe printed: syscall name to errno (0: it succeeded).
fn errnos(out: &str) -> BTreeMap<String, i32> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, errno)| (name.to_string(), errno.parse().unwrap()))
        .collect()
}

const EPERM: i32 = 1;
const EFAULT: i32 = 14;
const EINVAL: i32 = 22;
const ENOSYS: i32 = 38;

/// What the probe calls, with the default profile's answer for podman's capabilities, and
/// the kernel's own where this host's answer differs from the filter's (`None`: the same,
/// or the host decides).
const FILTERED: &[(&str, i32, Option<i32>)] = &[
    // Not in the allow-list: the profile's default, ENOSYS.
    ("add_key", ENOSYS, Some(EFAULT)),
    ("io_uring_setup", ENOSYS, Some(EFAULT)),
    // personality() with a persona other than the five allowed.
    ("personality", ENOSYS, Some(0)),
    // Refused by name with EPERM.
    ("userfaultfd", EPERM, Some(EINVAL)),
    ("kexec_load", EPERM, None),
    // Allowed only with CAP_SYS_ADMIN (the kernel refuses it too without the capability).
    ("bpf", EPERM, None),
];

fn probe_args<'a>(image: &'a str, runtime: &'a str, opts: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--rm", "--runtime", runtime];
    args.extend(opts);
    args.extend([image, "/probe", "keyctl", "getpid"]);
    args.extend(FILTERED.iter().map(|(name, _, _)| *name));
    args
}

#[test]
fn the_default_seccomp_filter_holds_in_every_backend() {
    for_each_runner(TOOLS, |who| {
        let image = probe_image(who);
        let _cleanup = Cleanup(
            who,
            &["filtered-libcontainer", "filtered-crun", "filtered-runc"],
        );
        for runtime in BACKENDS {
            let seen = errnos(&who.ok(&probe_args(image, runtime, &[])));
            for (name, want, _) in FILTERED {
                assert_eq!(seen[*name], *want, "{runtime}: {name}: {seen:?}");
            }
            assert_eq!(seen["getpid"], 0, "{runtime}");
            assert_ne!(seen["keyctl"], ENOSYS, "{runtime}: keyctl is allowed");
            // An exec'd process holds the same filter.
            let name = format!("filtered-{runtime}");
            who.detached(runtime, &name, &[], image, &["sleep", "60"]);
            let seen = errnos(&who.ok(&["exec", &name, "/probe", "add_key", "userfaultfd"]));
            assert_eq!(
                (seen["add_key"], seen["userfaultfd"]),
                (ENOSYS, EPERM),
                "{runtime} exec"
            );
            who.ok(&["rm", "-f", &name]);
            // Unconfined, the calls reach the kernel.
            let opts = ["--security-opt", "seccomp=unconfined"];
            let seen = errnos(&who.ok(&probe_args(image, runtime, &opts)));
            for (name, _, kernel) in FILTERED {
                if let Some(kernel) = kernel {
                    assert_eq!(
                        seen[*name], *kernel,
                        "{runtime} unconfined: {name}: {seen:?}"
                    );
                }
            }
        }
    });
}

#[test]
fn seccomp_profile_files_and_their_errors() {
    for_each_runner(TOOLS, |who| {
        let image = probe_image(who);
        let write = |name: &str, body: &str| {
            let path = who.scratch.join(name);
            std::fs::write(&path, body).unwrap();
            who.give(&path);
            path.display().to_string()
        };
        // A profile of one's own: everything allowed but getpid, refused with EACCES, and
        // two SCMP_CMP_MASKED_EQ rules, where `value` is the mask and `valueTwo` the datum:
        // keyctl's first argument (-1) has its low byte all ones, so EBADF; personality's
        // (0xfffffffe) has not 0x0e as low byte, so the kernel answers (read the other way
        // round, 0xfffffffe & 0x0e == 0x0e would refuse it).
        let own = write(
            "own.json",
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["getpid"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
                {"names":["keyctl"],"action":"SCMP_ACT_ERRNO","errnoRet":9,
                 "args":[{"index":0,"value":255,"valueTwo":255,"op":"SCMP_CMP_MASKED_EQ"}]},
                {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":7,
                 "args":[{"index":0,"value":255,"valueTwo":14,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        );
        for runtime in BACKENDS {
            let opt = format!("seccomp={own}");
            let seen = errnos(&who.ok(&probe_args(image, runtime, &["--security-opt", &opt])));
            assert_eq!(seen["getpid"], 13, "{runtime}: {seen:?}");
            assert_eq!(seen["keyctl"], 9, "{runtime}: {seen:?}");
            assert_eq!(seen["personality"], 0, "{runtime}: {seen:?}");
            assert_eq!(
                seen["add_key"], EFAULT,
                "{runtime}: allowed by this profile"
            );
        }
        // Bad profiles fail before the container exists, naming the file and what is wrong.
        let missing = who.scratch.join("missing.json").display().to_string();
        let not_json = write("broken.json", "{\"defaultAction\":");
        let bad_action = write("action.json", r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#);
        let bad_errno = write(
            "errno.json",
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrno":"ENOTANERRNO"}"#,
        );
        let cases = [
            (missing.as_str(), "cannot read it"),
            (not_json.as_str(), "not a seccomp profile"),
            (bad_action.as_str(), "SCMP_ACT_MAYBE"),
            (bad_errno.as_str(), "unknown errno \"ENOTANERRNO\""),
        ];
        for (file, why) in cases {
            let opt = format!("seccomp={file}");
            let opt = ["--security-opt", &opt];
            let err = who.refused(
                &[
                    "run", "--rm", "--name", "never", opt[0], opt[1], image, "true",
                ],
                why,
            );
            assert!(err.contains(file), "{file}: {err}");
            assert!(
                !who.store.join("containers/never").exists(),
                "{file}: nothing made"
            );
        }
        let opt = ["--security-opt", "label=type:spc_t"];
        who.refused(&["run", "--rm", opt[0], opt[1], image, "true"], opt[1]);
    });
}

/// A filter is compiled once and kept in the store's cache, under its filter's name and,
/// for the embedded runtime, under its profile's (the profile's bytes and the capabilities):
/// libcontainer loads the program kept under the profile's name without reading the profile
/// again, crun the one under the filter's name (through its annotation), and runc compiles
/// the spec's filter itself. Shown by swapping each kept program for another one: the
/// backends that load it answer the other way.
#[test]
fn the_kept_program_is_what_libcontainer_and_crun_load() {
    use skiff::runtime::seccomp::bpf;
    for_each_runner(TOOLS, |who| {
        let image = probe_image(who);
        let profile = |errno: i32| {
            format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {{"names":["getpid"],"action":"SCMP_ACT_ERRNO","errnoRet":{errno}}}]}}"#
            )
        };
        let own = who.scratch.join("kept.json");
        std::fs::write(&own, profile(13)).unwrap();
        who.give(&own);
        let opt = format!("seccomp={}", own.display());
        let getpid = |runtime: &str| {
            let args = [
                "run",
                "--rm",
                "--runtime",
                runtime,
                "--security-opt",
                &opt,
                image,
                "/probe",
                "getpid",
            ];
            errnos(&who.ok(&args))["getpid"]
        };
        let cache = who.store.join("cache/seccomp");
        // What seccomp left there; a `.runtime` file is what skiff learnt of crun.
        let kept = || -> std::collections::BTreeSet<PathBuf> {
            std::fs::read_dir(&cache)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_none_or(|e| e != "runtime"))
                .collect()
        };
        let before = kept();
        assert_eq!(getpid("libcontainer"), 13);
        let made: Vec<_> = kept().difference(&before).cloned().collect();
        let default_caps = skiff::runtime::caps::DEFAULT_CAPS.iter().copied().collect();
        let by_profile = bpf::source_path(&cache, profile(13).as_bytes(), &default_caps);
        let programs: Vec<&PathBuf> = made
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "bpf"))
            .collect();
        assert_eq!(programs.len(), 2, "two names for one program: {made:?}");
        assert!(programs.contains(&&by_profile), "{made:?}");
        let by_filter = programs.into_iter().find(|p| **p != by_profile).unwrap();
        assert_eq!(
            std::fs::read(by_filter).unwrap(),
            std::fs::read(&by_profile).unwrap()
        );
        assert!(
            made.iter()
                .any(|p| p.extension().is_some_and(|e| e == "checked")),
            "the profile not marked checked: {made:?}"
        );
        // The same program, under the same name, for the others: nothing compiled again.
        for runtime in ["crun", "runc"] {
            assert_eq!(getpid(runtime), 13, "{runtime}");
        }
        assert_eq!(kept().difference(&before).count(), made.len());
        let other: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(&profile(9)).unwrap();
        let other = bpf::compile(&other).unwrap();
        other.write(&by_profile).unwrap();
        who.give(&by_profile);
        // crun (which knows the annotation) is given the program found by the profile's
        // name, as libcontainer; runc only compiles the spec's filter.
        for (runtime, want) in [("libcontainer", 9), ("crun", 9), ("runc", 13)] {
            assert_eq!(
                getpid(runtime),
                want,
                "{runtime}, by the profile's name swapped"
            );
        }
        let learnt: Vec<String> = std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|e| e == "runtime"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        assert_eq!(learnt, ["yes"], "what skiff learnt of crun");
        other.write(by_filter).unwrap();
        who.give(by_filter);
        for (runtime, want) in [("libcontainer", 9), ("crun", 9), ("runc", 13)] {
            assert_eq!(getpid(runtime), want, "{runtime}, both swapped");
        }
        for file in &made {
            std::fs::remove_file(file).unwrap();
        }
    });
}

/// What a process holds open, as the host sees it: descriptor to target.
fn descriptors(pid: &str) -> BTreeMap<u32, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().parse().unwrap(),
                target.display().to_string(),
            )
        })
        .collect()
}

#[test]
fn no_descriptor_leads_out_of_a_container() {
    for_each_runner(TOOLS, |who| {
        let image = probe_image(who);
        // A directory only the host has, with a busybox in it: reaching it from a container
        // through a leaked descriptor would run it.
        let outside = tempfile::Builder::new()
            .prefix("skiff-outside")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::copy(
            common::which("busybox").unwrap(),
            outside.path().join("busybox"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let through = |fd: u32| {
            format!(
                "/proc/self/fd/{fd}/{}{}/busybox",
                "../".repeat(16),
                outside.path().display().to_string().trim_start_matches('/')
            )
        };
        // The path works wherever descriptor 3 is a host directory: so a leak would show.
        let control = common::ok(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("exec 3</etc; {} echo escaped", through(3))),
        );
        assert_eq!(control.trim(), "escaped");
        // Every descriptor a shim or runtime has been seen to hold, and then some.
        let fds: Vec<u32> = (3..=12).chain(250..=255).collect();
        let names: Vec<String> = BACKENDS.iter().map(|b| format!("fds-{b}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let _cleanup = Cleanup(who, &names);
        for (runtime, name) in BACKENDS.iter().zip(&names) {
            for fd in &fds {
                let o = who.run(&[
                    "run",
                    "--rm",
                    "--runtime",
                    runtime,
                    image,
                    &through(*fd),
                    "echo",
                    "escaped",
                ]);
                assert!(
                    !String::from_utf8_lossy(&o.stdout).contains("escaped"),
                    "{runtime} run through fd {fd}"
                );
            }
            // A working directory under /proc is refused before anything starts: given, or
            // from the image.
            let proc_dir = ["-w", "/proc/self/fd/5"];
            let args = [
                "run",
                "--rm",
                "--runtime",
                runtime,
                proc_dir[0],
                proc_dir[1],
                image,
                "pwd",
            ];
            who.refused(&args, "not under /proc");
            who.detached(runtime, name, &[], image, &["sleep", "60"]);
            for fd in &fds {
                let o = who.run(&["exec", name, &through(*fd), "echo", "escaped"]);
                assert!(
                    !String::from_utf8_lossy(&o.stdout).contains("escaped"),
                    "{runtime} exec through fd {fd}"
                );
            }
            who.refused(
                &["exec", "-w", "/proc/self/fd/3", name, "pwd"],
                "not under /proc",
            ); // The container's processes hold their standard streams and nothing of the host:
            // its init, and a process exec'd into it.
            let dir = who.store.join("containers").join(name);
            let init = std::fs::read_to_string(dir.join("container.pid")).unwrap();
            let held = descriptors(init.trim());
            assert_eq!(
                held.keys().copied().collect::<Vec<_>>(),
                [0, 1, 2],
                "{runtime} init: {held:?}"
            );
            let listed = who.ok(&["exec", name, "ls", "/proc/self/fd/"]);
            let exec_fds: Vec<&str> = listed.split_whitespace().collect();
            assert_eq!(
                exec_fds,
                ["0", "1", "2", "3"],
                "{runtime} exec (3: ls's own listing)"
            );
            who.ok(&["rm", "-f", name]);
        }
        // An image whose WorkingDir goes through /proc (the attack came in images).
        let tar = who.scratch.join("probe.tar");
        who.ok(&[
            "import",
            "-q",
            "-c",
            "WORKDIR /proc/self/fd/7",
            tar.to_str().unwrap(),
            "procdir",
        ]);
        who.refused(
            &["run", "--rm", "procdir", "/probe", "getpid"],
            "not under /proc",
        );
    });
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// The CVE-2019-5736 shape: a container whose `/evil` is `#!/proc/self/exe`, so that running
/// it inside the container runs whatever binary started it, and a watcher in the container
/// that holds every foreign `/proc/PID/exe` and keeps trying to append to it. The skiff binary
/// the runner uses (its own copy, owned by the test user rootless, by root as root) must come
/// out unchanged. `userns`: root's `--userns` mode. Where the container's root could write the
/// binary (rootless, the user's own; as root, `--userns=host`) skiff runs from a sealed copy;
/// as root with ids of its own the kernel refuses the write, and the binary is used as is.
fn the_binary_stays_whole(who: &Runner, userns: &str) {
    let sealed = who.rootless || userns == "host";
    let image = probe_image(who);
    let before = sha256(&who.binary);
    let names: Vec<String> = BACKENDS.iter().map(|b| format!("victim-{b}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let _cleanup = Cleanup(who, &names);
    for (runtime, name) in BACKENDS.iter().zip(&names) {
        // run: the container's own command resolves /proc/self/exe in the runtime's init.
        let o = who.run(&[
            "run",
            "--rm",
            "--userns",
            userns,
            "--runtime",
            runtime,
            image,
            "/evil",
        ]);
        assert_ne!(
            o.status.code(),
            Some(0),
            "{runtime}: /evil ran skiff's CLI: {o:?}"
        );
        // The shim (whose clone is the container's init until its exec) runs from a sealed
        // copy, not from the binary. SYS_PTRACE lets the watcher hold processes that are not
        // dumpable (the runtime's): what stops it then is the seal alone.
        who.detached(
            runtime,
            name,
            &["--cap-add", "SYS_PTRACE", "--userns", userns],
            image,
            &["/watcher", "6"],
        );
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(who.store.join("containers").join(name).join("state.json")).unwrap(),
        )
        .unwrap();
        let shim_exe = std::fs::read_link(format!("/proc/{}/exe", state["shim_pid"])).unwrap();
        assert_eq!(
            shim_exe.to_string_lossy().starts_with("/memfd:skiff"),
            sealed,
            "{runtime}: the shim runs from {}",
            shim_exe.display()
        );
        let shim = state["shim_pid"].as_u64().unwrap();
        let held = match *runtime {
            "crun" => Some(the_runtime_runs_read_only(runtime, shim)),
            "runc" => {
                the_runtime_runs_as_is(runtime, shim);
                None
            }
            _ => None,
        };
        // exec: the runtime's process joins the container, where the watcher waits for it.
        for _ in 0..10 {
            let _ = who.run(&["exec", name, "/evil"]);
            let _ = who.run(&["exec", name, "sleep", "0.1"]);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while who
            .ok(&["ps", "-a"])
            .lines()
            .any(|l| l.starts_with(name) && l.contains("running"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{runtime}: the watcher did not end"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = who.ok(&["logs", name]);
        assert!(
            !log.contains("wrote"),
            "{runtime}: the watcher wrote to a binary:\n{log}"
        );
        if *runtime == "libcontainer" && !who.rootless && userns == "host" {
            // Not a vacuous pass: the watcher held skiff's exec process, and its binary was
            // the sealed copy. (Rootless, the kernel does not even let it hold the process:
            // it is not dumpable, and the watcher's capabilities end at its user namespace.)
            assert!(
                log.contains("seen"),
                "{runtime}: the watcher saw nothing:\n{log}"
            );
            assert!(
                log.lines()
                    .filter(|l| l.starts_with("seen"))
                    .all(|l| !l.contains(&*who.binary.to_string_lossy())),
                "{runtime}: a process in the container ran skiff's binary itself:\n{log}"
            );
        }
        who.ok(&["rm", "-f", name]);
        if let Some(held) = held {
            the_held_runtime_stays_read_only(runtime, &held);
        }
    }
    assert_eq!(sha256(&who.binary), before, "the skiff binary changed");
}

/// The pid and binary of the shim's child that runs `runtime` (its `run`).
fn the_runtime_process(runtime: &str, shim: u64) -> (String, PathBuf) {
    let children = std::fs::read_to_string(format!("/proc/{shim}/task/{shim}/children")).unwrap();
    let exes: Vec<(&str, PathBuf)> = children
        .split_whitespace()
        .filter_map(|pid| Some((pid, std::fs::read_link(format!("/proc/{pid}/exe")).ok()?)))
        .collect();
    let Some((pid, exe)) = exes.iter().find(|(_, exe)| exe.ends_with(runtime)) else {
        panic!("{runtime}: no child of the shim runs it: {exes:?}");
    };
    (pid.to_string(), exe.clone())
}

/// runc runs from its own binary: it makes its guarded copy itself (a read-only bind of the
/// file, which it cannot make from skiff's detached mount, or a sealed memfd), and the
/// watcher's attack on the container's `runc init` is what shows that copy holds.
fn the_runtime_runs_as_is(runtime: &str, shim: u64) {
    let (_, exe) = the_runtime_process(runtime, shim);
    let real = std::fs::canonicalize(common::which(runtime).unwrap()).unwrap();
    assert_eq!(exe, real, "{runtime}: runs from {exe:?}");
}

/// crun runs from the read-only mount of its directory that skiff made, not from a copy it
/// made itself (a memfd or a mount of the file alone, at the cost of one more execution):
/// its `/proc/PID/exe` is `/crun` on a read-only mount. `shim`: the pid of the shim whose
/// child the runtime's `run` is. Returns the binary, held as the attack holds it, to be
/// tried for writing once the runtime is gone.
fn the_runtime_runs_read_only(runtime: &str, shim: u64) -> std::fs::File {
    let (pid, exe) = the_runtime_process(runtime, shim);
    let exe = &exe;
    assert_eq!(
        exe,
        &Path::new("/").join(runtime),
        "{runtime}: runs from {exe:?}"
    );
    let held = std::fs::File::open(format!("/proc/{pid}/exe")).unwrap();
    let mount = rustix::fs::fstatvfs(&held).unwrap();
    assert!(
        mount.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
        "{runtime}: its binary's mount is writable"
    );
    held
}

/// Nobody, not even root, may write `held`: the runtime that ran it is gone. (access(2), not
/// open: another test's crun running the same file would make the open fail with ETXTBSY.)
fn the_held_runtime_stays_read_only(runtime: &str, held: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let writable = rustix::fs::access(
        format!("/proc/self/fd/{}", held.as_raw_fd()),
        rustix::fs::Access::WRITE_OK,
    );
    assert_eq!(
        writable,
        Err(rustix::io::Errno::ROFS),
        "{runtime}: its binary may be written"
    );
}

#[test]
fn a_container_cannot_overwrite_the_skiff_binary() {
    if !common::require(TOOLS) || !common::require_root("root mode, and switching to the test user")
    {
        return;
    }
    // As root: a copy of skiff, so that a failure cannot spoil the build's binary.
    let env = common::Env::new();
    let binary = env.path("skiff");
    std::fs::copy(env!("CARGO_BIN_EXE_skiff"), &binary).unwrap();
    let root_skiff = || env.skiff_at(&binary);
    for userns in ["host", "auto"] {
        the_binary_stays_whole(
            &Runner {
                skiff: &root_skiff,
                scratch: env.path(""),
                store: env.store(),
                rootless: false,
                binary: binary.clone(),
            },
            userns,
        );
    }
    // Rootless: the test user runs its own copy, which it owns.
    for_each_runner(TOOLS, |who| {
        if who.rootless {
            the_binary_stays_whole(who, "auto");
        }
    });
}

/// A job's fork bomb and memory hog stop at the job's limits where the host's cgroups let skiff
/// enforce them (as root here: the controllers are on cgroup v1), and `skiff info` says so where
/// they do not (rootless without a delegated cgroup v2).
#[test]
fn a_job_cannot_take_the_host_down() {
    for_each_runner(TOOLS, |who| {
        probe_image(who);
        let write = |name: &str, body: &str| {
            let path = who.scratch.join(name);
            std::fs::write(&path, body).unwrap();
            who.give(&path);
            path
        };
        let pipeline = write(
            "limits.yml",
            r#"
default:
  image: localhost/probe:latest
bomb:
  script:
    - (n=0; while sleep 60 & do n=$((n+1)); echo $n > /tmp/forks; [ $n -ge 5000 ] && break; done) 2>/dev/null || true; read n < /tmp/forks; echo "forked $n"
hog:
  script:
    - kept=$(head -c 400000000 /dev/zero | tail | wc -c); echo "kept $kept"
"#,
        );
        let admin = write(
            "admin.toml",
            "memory = \"256m\"\npull_policy = [\"if-not-present\"]\n",
        );
        let job = |name: &str| {
            let args = ["job", "-f", pipeline.to_str().unwrap(), "--project-dir"];
            let mut args: Vec<&str> = args.to_vec();
            args.extend([who.scratch.to_str().unwrap(), "--network", "private"]);
            args.extend(["--config", admin.to_str().unwrap(), name]);
            who.run(&args)
        };
        let info = who.ok(&["info"]);
        let report: serde_json::Value =
            serde_json::from_str(&who.ok(&["--format", "json", "info"])).unwrap();
        let enforced = report["limits"] == "enforced";
        let bomb = job("bomb");
        let said = String::from_utf8_lossy(&bomb.stdout).to_string();
        let forked: u32 = said
            .lines()
            .find_map(|l| l.strip_prefix("forked ")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("the bomb said nothing: {bomb:?}"));
        let hog = job("hog");
        let kept = String::from_utf8_lossy(&hog.stdout).to_string();
        if enforced {
            assert!(forked < 2048, "the bomb forked {forked} times");
            assert!(kept.contains("kept 0"), "the hog was not stopped: {kept}");
        } else {
            // Rootless without delegation: nothing stops them here, and skiff says so.
            assert!(info.contains("cannot be enforced"), "{info}");
            assert_eq!(forked, 5000);
            assert!(kept.contains("kept 400000000"), "{kept}");
        }
        assert!(
            who.ok(&["ps", "-a"]).lines().count() <= 1,
            "nothing left running"
        );
    });
}

/// The first id of the `containers` range in /etc/subuid.
fn containers_start() -> u32 {
    let text = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("containers:")?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .expect("a containers range in /etc/subuid (scripts/setup adds it)")
}

/// The host uid of a process, from /proc/PID/status.
fn host_uid(pid: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap()
}

/// `0 HOST COUNT` rows of a uid_map as printed inside: the host id container 0 is.
fn mapped_root(uid_map: &str) -> u32 {
    uid_map
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"0")).then(|| f[1].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no row for 0 in {uid_map:?}"))
}

/// Runs each of `commands` (skiff arguments) at once; every one must succeed.
fn all_at_once(who: &Runner, commands: &[Vec<&str>]) {
    let started: Vec<_> = commands
        .iter()
        .map(|args| {
            (who.skiff)()
                .args(args)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut s in started {
        assert!(s.wait().unwrap().success());
    }
}

/// Root's own runner: containers of root get ids of their own.
fn as_root(test: impl FnOnce(&Runner)) {
    if !common::require(TOOLS) || !common::require_root("containers of root") {
        return;
    }
    let env = common::Env::new();
    let skiff = || env.skiff();
    test(&Runner {
        skiff: &skiff,
        scratch: env.path(""),
        store: env.store(),
        rootless: false,
        binary: PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
    });
}

/// As root with ids of its own, the runtime looks the store and plain `-v` sources up as the
/// container's root: under a directory that root may not search (0700), the start fails with
/// 125, naming that directory, with every backend; `--userns=host` and `:idmap` reach it.
#[test]
fn a_directory_the_container_root_cannot_search_is_named() {
    as_root(|who| {
        use std::os::unix::fs::PermissionsExt;
        let image = probe_image(who);
        let private = who.scratch.join("private");
        std::fs::create_dir_all(private.join("volume")).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let fails = |args: &[&str], what: &str| {
            let o = who.run(args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(125), "{what}: {args:?}\n{err}");
            assert!(
                err.contains(&format!("cannot search {} (mode 0700", private.display())),
                "{what}: the directory is not named:\n{err}"
            );
        };
        // A store under it: its own, loaded with the image.
        let store = private.join("store");
        let in_store = |args: &[&str]| {
            let mut cmd = std::process::Command::new(&who.binary);
            for (k, v) in (who.skiff)().get_envs() {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
            common::run(cmd.arg("--root").arg(&store).args(args))
        };
        let archive = who.scratch.join("probe-saved.tar");
        who.ok(&["save", "-o", archive.to_str().unwrap(), image]);
        let loaded = in_store(&["load", "-q", "-i", archive.to_str().unwrap()]);
        assert!(loaded.status.success(), "{loaded:?}");
        for runtime in ["libcontainer", "crun", "runc"] {
            let o = in_store(&["run", "--rm", "--runtime", runtime, image, "echo"]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(125), "{runtime}: {err}");
            assert!(
                err.contains(&format!("cannot search {} (mode 0700", private.display())),
                "{runtime}: the directory is not named:\n{err}"
            );
        }
        let host = in_store(&["run", "--rm", "--userns", "host", image, "echo"]);
        assert!(host.status.success(), "--userns=host: {host:?}");
        // A plain -v source under it, the store elsewhere: libcontainer binds it as the
        // container's root; crun and runc open it as the host's root, and reach it.
        let volume = format!("{}:/v", private.join("volume").display());
        let with_volume = |runtime| {
            [
                "run",
                "--rm",
                "--runtime",
                runtime,
                "-v",
                &volume,
                image,
                "ls",
                "/v",
            ]
        };
        fails(&with_volume("libcontainer"), "libcontainer");
        who.ok(&with_volume("crun"));
        who.ok(&with_volume("runc"));
        who.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{volume}:idmap"),
            image,
            "ls",
            "/v",
        ]);
    });
}

#[test]
fn containers_of_root_never_run_as_host_root() {
    as_root(|who| {
        let image = probe_image(who);
        let base = containers_start();
        let names = ["ids-libcontainer", "ids-crun", "ids-runc", "ids-host"];
        let _cleanup = Cleanup(who, &names);
        // Started at once: each gets a range of its own.
        let starts: Vec<Vec<&str>> = names
            .iter()
            .map(|name| {
                let mut args = vec!["run", "-d", "--name", name];
                match name.strip_prefix("ids-").unwrap() {
                    "host" => args.push("--userns=host"),
                    r => args.extend(["--runtime", r]),
                }
                args.extend([image, "sleep", "60"]);
                args
            })
            .collect();
        all_at_once(who, &starts);
        let mut outside = vec![];
        for name in names {
            let inside = who.ok(&[
                "exec",
                name,
                "sh",
                "-c",
                "busybox id -u; cat /proc/self/uid_map",
            ]);
            let (uid, map) = inside.split_once('\n').unwrap();
            assert_eq!(uid, "0", "{name}: root inside");
            let pid = std::fs::read_to_string(
                who.store
                    .join("containers")
                    .join(name)
                    .join("container.pid"),
            )
            .unwrap();
            let host = host_uid(pid.trim());
            if name == "ids-host" {
                assert_eq!(host, 0, "--userns=host keeps host root");
                assert_eq!(mapped_root(map), 0);
                continue;
            }
            assert!(
                host >= base,
                "{name}: runs as host uid {host}, outside containers:{base}"
            );
            assert_eq!(
                mapped_root(map),
                host,
                "{name}: exec joins the container's ids"
            );
            outside.push(host);
        }
        outside.sort();
        outside.dedup();
        assert_eq!(outside.len(), 3, "disjoint ranges: {outside:?}");
        for o in outside.windows(2) {
            assert!(o[1] - o[0] >= 65536, "ranges overlap: {outside:?}");
        }
    });
}

#[test]
fn pods_of_root_get_disjoint_ranges() {
    as_root(|who| {
        let image = probe_image(who);
        let pods = ["range-a", "range-b"];
        let creating: Vec<Vec<&str>> = pods
            .iter()
            .map(|p| vec!["pod", "create", "--name", p])
            .collect();
        all_at_once(who, &creating);
        let mut roots = vec![];
        for pod in pods {
            let map = who.ok(&[
                "run",
                "--rm",
                "--pod",
                pod,
                image,
                "cat",
                "/proc/self/uid_map",
            ]);
            let held: serde_json::Value = serde_json::from_slice(
                &std::fs::read(who.store.join("pods").join(pod).join("pod.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(
                Some(mapped_root(&map) as u64),
                held["userns"]["uid"].as_u64(),
                "{pod}: members run in the pod's range"
            );
            roots.push(mapped_root(&map));
        }
        assert!(roots[0].abs_diff(roots[1]) >= 65536, "{roots:?}");
        who.ok(&["pod", "rm", "-f", pods[0], pods[1]]);
        // Freed with the pods: the next takes the first range again.
        who.ok(&["pod", "create", "--name", "range-c"]);
        let map = who.ok(&[
            "run",
            "--rm",
            "--pod",
            "range-c",
            image,
            "cat",
            "/proc/self/uid_map",
        ]);
        assert_eq!(mapped_root(&map), *roots.iter().min().unwrap());
        who.ok(&["pod", "rm", "-f", "range-c"]);
    });
}

#[test]
fn a_job_of_root_is_root_inside_only() {
    as_root(|who| {
        probe_image(who);
        let base = containers_start();
        let shared = who.scratch.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let project = who.scratch.join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(
            project.join(".gitlab-ci.yml"),
            "ids:\n  image: localhost/probe:latest\n  script:\n    - busybox id -u\n    - cat /proc/self/uid_map\n    - echo job > made-in-project\n    - echo job > /shared/made-in-volume\n",
        )
        .unwrap();
        let pipeline = project.join(".gitlab-ci.yml");
        let admin = who.scratch.join("ids.toml");
        std::fs::write(
            &admin,
            format!(
                "volumes = [\"{}:/shared\"]\npull_policy = [\"if-not-present\"]\n",
                shared.display()
            ),
        )
        .unwrap();
        let job = || {
            who.ok(&[
                "job",
                "-f",
                pipeline.to_str().unwrap(),
                "--project-dir",
                project.to_str().unwrap(),
                "--network",
                "private",
                "--config",
                admin.to_str().unwrap(),
                "ids",
            ])
        };
        let out = job();
        assert!(out.lines().any(|l| l.trim() == "0"), "root inside: {out}");
        let row = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some("0") && l.split_whitespace().count() == 3)
            .unwrap_or_else(|| panic!("no uid_map in {out}"));
        let outside = mapped_root(row);
        assert!(outside >= base, "the job's root is host uid {outside}");
        let made = std::fs::metadata(shared.join("made-in-volume")).unwrap();
        assert_eq!(
            made.uid(),
            outside,
            "a bind-mounted directory gets the mapped owner"
        );
        // The project is bound idmapped: what the job writes there is the project's owner's.
        let owner = std::fs::metadata(&project).unwrap().uid();
        assert_eq!(
            std::fs::metadata(project.join("made-in-project"))
                .unwrap()
                .uid(),
            owner
        );
        // The admin's userns_mode = "host" keeps the old way.
        std::fs::write(
            &admin,
            "userns_mode = \"host\"\npull_policy = [\"if-not-present\"]\n",
        )
        .unwrap();
        std::fs::write(
            project.join(".gitlab-ci.yml"),
            "ids:\n  image: localhost/probe:latest\n  script:\n    - cat /proc/self/uid_map\n",
        )
        .unwrap();
        let out = job();
        assert!(
            out.contains("4294967295"),
            "host ids with userns_mode = host: {out}"
        );
    });
}

/// `skiff` as `who` runs it, in a mount namespace of its own where `/etc/subuid` and
/// `/etc/subgid` read `subids`: the host's files stay untouched.
fn with_subids(who: &Runner, subids: &Path) -> std::process::Command {
    let inner = (who.skiff)();
    let mut c = std::process::Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid && shift && exec "$@""#)
        .arg("sh")
        .arg(subids)
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

#[test]
fn without_a_free_range_containers_of_root_fail_before_starting() {
    as_root(|who| {
        let image = probe_image(who);
        let two_slots = who.scratch.join("two-slots");
        std::fs::write(&two_slots, "containers:3000000000:131072\n").unwrap();
        let none = who.scratch.join("no-containers");
        std::fs::write(&none, "skiff-test:100000:65536\n").unwrap();
        let narrow = || with_subids(who, &two_slots);
        let narrow = Runner {
            skiff: &narrow,
            ..who.clone()
        };
        let _cleanup = Cleanup(who, &["slot-a", "slot-c"]);
        narrow.ok(&["run", "-d", "--name", "slot-a", image, "sleep", "60"]);
        narrow.ok(&["pod", "create", "--name", "slot-p"]);
        let exhausted = "the subordinate range containers:3000000000:131072 is exhausted";
        narrow.refused(
            &["run", "--name", "slot-c", image, "busybox", "true"],
            exhausted,
        );
        narrow.refused(&["pod", "create", "--name", "slot-q"], exhausted);
        assert!(!who.store.join("containers/slot-c").exists());
        assert!(!who.store.join("pods/slot-q").exists());
        let listed = who.ok(&["ps", "-a"]);
        assert_eq!(listed.lines().count(), 2, "only slot-a is left: {listed}");
        // Host ids need no range.
        narrow.ok(&["run", "--rm", "--userns=host", image, "busybox", "true"]);
        // Removal frees a range.
        who.ok(&["pod", "rm", "-f", "slot-p"]);
        narrow.ok(&["run", "--rm", image, "busybox", "true"]);
        let unset = || with_subids(who, &none);
        let unset = Runner {
            skiff: &unset,
            ..who.clone()
        };
        unset.refused(
            &["run", "--name", "slot-c", image, "busybox", "true"],
            "no `containers` range in /etc/subuid and /etc/subgid",
        );
        assert!(!who.store.join("containers/slot-c").exists());
    });
}
