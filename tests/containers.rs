//! Containers beyond `skiff run`'s basics, as root and rootless (as skiff-test): every
//! backend with exec, pods talking over loopback by name, outbound networks through
//! slirp4netns and pasta, podman's run flags, and what a killed shim leaves behind.

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use common::runner::{Cleanup, Runner};
use common::{Env, require, require_root};
use std::path::Path;
use std::time::{Duration, Instant};

const TOOLS: &[&str] = &["docker-registry", "skopeo", "crun", "runc"];

/// The busybox test image, pulled into the runner's store; its name.
fn pulled(who: &Runner, reg: &Registry) -> String {
    let name = format!("{}/test/busybox:1", reg.addr());
    push(&images().layout, "busybox", &name, &[]);
    who.ok(&["pull", "-q", "--tls-verify=false", &name]);
    name
}

/// Both setups, each with its own store, against one registry.
fn for_each_runner(test: impl Fn(&Runner, &str)) {
    let mut reg = None;
    common::runner::for_each_runner(TOOLS, |who| {
        let reg = reg.get_or_insert_with(|| Registry::start(Auth::Anonymous));
        test(who, &pulled(who, reg));
    });
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

fn wait_until(what: &str, secs: u64, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn every_backend_runs_and_execs() {
    for_each_runner(|who, image| {
        let _cleanup = Cleanup(
            who,
            &[
                "libcontainer",
                "crun",
                "runc",
                "libcontainer-user",
                "crun-user",
                "runc-user",
                "libcontainer-kept",
                "crun-kept",
                "runc-kept",
            ],
        );
        for runtime in ["libcontainer", "crun", "runc"] {
            let o = who.run(&[
                "run",
                "--rm",
                "--runtime",
                runtime,
                image,
                "sh",
                "-c",
                "exit 7",
            ]);
            assert_eq!(o.status.code(), Some(7), "{runtime}: {o:?}");
            let id = who.ok(&[
                "run",
                "-d",
                "--runtime",
                runtime,
                "--name",
                runtime,
                image,
                "sleep",
                "60",
            ]);
            assert_eq!(id, runtime);
            let o = who.run(&["exec", runtime, "sh", "-c", "exit 5"]);
            assert_eq!(o.status.code(), Some(5), "{runtime} exec: {o:?}");
            assert_eq!(
                who.ok(&[
                    "exec",
                    "-u",
                    "user",
                    "-e",
                    "X=y",
                    runtime,
                    "sh",
                    "-c",
                    "echo $(id -u) $(id -G) $X"
                ]),
                "1000 1000 y",
                "{runtime}: exec as a user, no groups of the runtime's own"
            );
            assert_eq!(
                who.ok(&["exec", runtime, "cat", "/proc/1/cmdline"])
                    .replace('\0', " "),
                "sleep 60 "
            );
            transient_files_are_off_disk(&who.store.join("containers").join(runtime), runtime);
            // The runtime's mount points come from the init layer: the image's /etc as it
            // is, nothing copied up for a container that writes nothing.
            let kept = format!("{runtime}-kept");
            let etc = who.ok(&[
                "run",
                "--runtime",
                runtime,
                "--name",
                &kept,
                image,
                "ls",
                "-ldn",
                "/etc",
            ]);
            let fields: Vec<&str> = etc.split_whitespace().collect();
            assert_eq!(
                [fields[0], fields[2], fields[3]],
                ["drwxr-xr-x", "0", "0"],
                "{runtime}: busybox's /etc: {etc}"
            );
            let upper = who.store.join("containers").join(&kept).join("upper");
            let copied: Vec<_> = std::fs::read_dir(&upper)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(
                copied.is_empty(),
                "{runtime}: {copied:?} in {}",
                upper.display()
            );
            who.ok(&["rm", &kept]);
            // As docker and podman: exec runs as the container's own user by default.
            let as_user = format!("{runtime}-user");
            who.ok(&[
                "run",
                "-d",
                "--runtime",
                runtime,
                "--name",
                &as_user,
                "--user",
                "user",
                image,
                "sleep",
                "60",
            ]);
            assert_eq!(
                who.ok(&["exec", &as_user, "id", "-u"]),
                "1000",
                "{runtime}: exec as the container's user"
            );
            who.ok(&["rm", "-f", &as_user]);
            // A command that is not there: 127, as in a shell.
            let o = who.run(&[
                "run",
                "--rm",
                "--runtime",
                runtime,
                image,
                "no-such-command",
            ]);
            assert_eq!(o.status.code(), Some(127), "{runtime}: {o:?}");
            who.ok(&["rm", "-f", runtime]);
        }
        let o = who.run(&["run", "--rm", "--runtime", "no-such-runtime", image, "true"]);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("no-such-runtime"),
            "{o:?}"
        );
    });
}

/// A running container's transient files (its bundle, the runtime's state, the hosts files,
/// the root's mount point) are on a tmpfs in its shim's mount namespace: none is on the
/// store's disk, where the host sees an empty `run` directory.
fn transient_files_are_off_disk(dir: &Path, what: &str) {
    let run = dir.join("run");
    assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0, "{what}");
    for name in [
        "bundle",
        "runtime",
        "merged",
        "hosts",
        "hostname",
        "resolv.conf",
    ] {
        assert!(!dir.join(name).exists(), "{what}: {name} on disk");
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let shim = state["shim_pid"].as_i64().unwrap();
    let seen = Path::new(&format!("/proc/{shim}/root")).join(run.strip_prefix("/").unwrap());
    let fs = nix::sys::statfs::statfs(&seen).unwrap();
    assert_eq!(
        fs.filesystem_type(),
        nix::sys::statfs::TMPFS_MAGIC,
        "{what}"
    );
    for file in ["bundle/config.json", "hostname", "resolv.conf"] {
        assert!(
            seen.join(file).is_file(),
            "{what}: {file} in the shim's run/"
        );
    }
}

#[test]
fn pods_share_loopback_and_names() {
    for_each_runner(|who, image| {
        who.ok(&[
            "pod",
            "create",
            "--add-host",
            "extra.example:127.0.0.9",
            "pa",
        ]);
        who.ok(&["pod", "create", "pb"]);
        // One port in two pods at once, each reached by its member's name.
        for (pod, name) in [("pa", "db-a"), ("pb", "db-b")] {
            who.ok(&[
                "run", "-d", "--pod", pod, "--name", name, image, "nc", "-ll", "-p", "5432", "-e",
                "echo", name,
            ]);
        }
        for (pod, name) in [("pa", "db-a"), ("pb", "db-b")] {
            let script = format!(
                "for i in 1 2 3 4 5 6 7 8 9 10; do out=$(nc {name} 5432 </dev/null) && break; sleep 0.2; done; echo $out"
            );
            assert_eq!(
                who.ok(&["run", "--rm", "--pod", pod, image, "sh", "-c", &script]),
                name
            );
        }
        // exec joins the member's network namespace too (it is not in the runtime's spec).
        assert_eq!(
            who.ok(&["exec", "db-a", "sh", "-c", "nc 127.0.0.1 5432 </dev/null"]),
            "db-a"
        );
        let hosts = who.ok(&["run", "--rm", "--pod", "pa", image, "cat", "/etc/hosts"]);
        assert!(
            hosts.contains("127.0.0.9\textra.example") && hosts.contains("127.0.0.1\tdb-a"),
            "{hosts}"
        );
        // The host's loopback is not the pod's.
        let o = who.run(&[
            "run",
            "--rm",
            "--network",
            "host",
            image,
            "sh",
            "-c",
            "nc 127.0.0.1 5432 </dev/null",
        ]);
        assert!(
            !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("refused"),
            "port 5432 is the pods' only: {o:?}"
        );
        let o = who.run(&["pod", "rm", "pa"]);
        assert!(
            !o.status.success(),
            "a pod with a running member needs --force"
        );
        who.ok(&["pod", "rm", "-f", "pa", "pb"]);
        assert!(
            who.ok(&["ps", "-a"]).lines().count() == 1,
            "members went with their pods"
        );
        assert_eq!(who.ok(&["pod", "ls"]).lines().count(), 1);
        let o = who.run(&["run", "--rm", "--pod", "pa", image, "true"]);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("no pod pa"),
            "{o:?}"
        );
    });
}

/// Answers every connection on 127.0.0.1 with a fixed HTTP reply; its port.
fn host_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            use std::io::Write;
            let mut conn = conn;
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello-from-host\n");
        }
    });
    port
}

#[test]
fn outbound_through_slirp4netns_and_pasta() {
    if !require(&["slirp4netns", "pasta"]) {
        return;
    }
    let port = host_server();
    for_each_runner(|who, image| {
        // The gateway leads to the host's loopback only when asked for (podman's default).
        let fetch = format!(
            "gw=$(ip route | awk '/default/ {{print $3}}'); timeout 5 nc $gw {port} </dev/null | tail -1"
        );
        let mut nets = vec!["slirp4netns:allow_host_loopback=true"];
        if who.rootless {
            nets.push("pasta:--map-gw");
        }
        for net in nets {
            let o = who.run(&["run", "--rm", "--network", net, image, "sh", "-c", &fetch]);
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim(),
                "hello-from-host",
                "{net}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let o = who.run(&[
            "run",
            "--rm",
            "--network",
            "slirp4netns",
            image,
            "sh",
            "-c",
            &fetch,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "",
            "host loopback is closed by default"
        );
        assert_eq!(
            who.ok(&[
                "run",
                "--rm",
                "--network",
                "slirp4netns",
                image,
                "cat",
                "/etc/resolv.conf"
            ]),
            "nameserver 10.0.2.3"
        );
        if !who.rootless {
            let o = who.run(&["run", "--rm", "--network", "pasta", image, "true"]);
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("rootless"),
                "{o:?}"
            );
        }
        // A pod gets the same: its members share the way out.
        who.ok(&[
            "pod",
            "create",
            "--network",
            "slirp4netns:allow_host_loopback=true",
            "out",
        ]);
        let o = who.run(&["run", "--rm", "--pod", "out", image, "sh", "-c", &fetch]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "hello-from-host",
            "{o:?}"
        );
        let infra = serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(who.store.join("pods/out/pod.json")).unwrap(),
        )
        .unwrap()["infra_pid"]
            .as_u64()
            .unwrap();
        who.ok(&["pod", "rm", "-f", "out"]);
        // Its slirp4netns ends with it (as root the pod, in ids of its own, cannot signal
        // it: it goes when its exit fd closes).
        let target = format!(" {infra} tap0");
        wait_until("the pod's slirp4netns outlived it", 5, || {
            !std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .trim_end()
                        .ends_with(target.trim_end())
                        && String::from_utf8_lossy(&c).contains("slirp4netns")
                })
            })
        });
    });
}

#[test]
fn podman_run_flags() {
    for_each_runner(|who, image| {
        let vol = who.scratch.join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("in"), "from-host\n").unwrap();
        let env_file = who.scratch.join("env");
        std::fs::write(&env_file, "A=from-file\n# comment\nB=file\n").unwrap();
        for p in [&vol, &vol.join("in"), &env_file] {
            who.give(p);
        }
        // As root the container's root is an unprivileged host uid: writing a root-owned
        // directory takes `idmap` (rootless it changes nothing).
        let rw = format!("{}:/data:idmap", vol.display());
        let ro = format!("{}:/ro:ro", vol.display());
        let script = "cat /data/in; echo out > /data/out && echo rw; \
            (echo x > /ro/x) 2>/dev/null || echo ro; (touch /etc/x) 2>/dev/null || echo rootfs-ro; \
            touch /tmp/t /scratch/s && echo tmpfs; echo $A $B; cat /etc/resolv.conf; \
            grep -E '^Cap(Eff|Bnd)' /proc/self/status";
        let out = who.ok(&[
            "run",
            "--rm",
            "-v",
            &rw,
            "-v",
            &ro,
            "--tmpfs",
            "/scratch",
            "--read-only",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "B=flag",
            "--dns",
            "192.0.2.53",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "chown",
            image,
            "sh",
            "-c",
            script,
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[..7],
            [
                "from-host",
                "rw",
                "ro",
                "rootfs-ro",
                "tmpfs",
                "from-file flag",
                "nameserver 192.0.2.53"
            ],
            "{out}"
        );
        assert_eq!(std::fs::read_to_string(vol.join("out")).unwrap(), "out\n");
        let eff = u64::from_str_radix(lines[7].split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(eff & 1, 0, "CAP_CHOWN dropped: {out}");
        assert_ne!(eff & (1 << 12), 0, "CAP_NET_ADMIN added: {out}");
        assert_eq!(eff & (1 << 21), 0, "no CAP_SYS_ADMIN: {out}");
        // -i passes stdin; without it the container reads nothing.
        let o = who.run(&["run", "--rm", image, "sh", "-c", "cat; echo end"]);
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "end");
        // Limits are enforced where `skiff info` says so (as root here: the controllers are on
        // cgroup v1); elsewhere a warning, never silence.
        let o = who.run(&[
            "run",
            "--rm",
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            image,
            "true",
        ]);
        assert!(o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        let info: serde_json::Value =
            serde_json::from_str(&who.ok(&["--format", "json", "info"])).unwrap();
        if info["limits"] == "enforced" {
            assert!(!err.contains("NOT enforced"), "{err}");
        } else {
            assert!(err.contains("NOT enforced"), "{err}");
        }
        // -t: the container's stdio is a terminal; its output comes through, its status too.
        let o = who.run(&[
            "run",
            "--rm",
            "-t",
            image,
            "sh",
            "-c",
            "test -t 0 && test -t 1 && test -t 2 && echo tty; exit 3",
        ]);
        assert_eq!(o.status.code(), Some(3), "{o:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "tty\r\n",
            "a terminal's line ending"
        );
        let o = who.run(&["run", "--rm", "-v", "/no/such/dir:/x", image, "true"]);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("/no/such/dir"),
            "{o:?}"
        );
    });
}

/// Whether this host has memory, cpu and pids on a writable cgroup v2 (then limits apply).
#[test]
fn stdin_with_interactive() {
    if !require(TOOLS) || !require_root("root mode") {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    let env = Env::new();
    let root_skiff = || env.skiff();
    let who = Runner {
        skiff: &root_skiff,
        scratch: env.path(""),
        store: env.store(),
        rootless: false,
        binary: env!("CARGO_BIN_EXE_skiff").into(),
    };
    let image = pulled(&who, &reg);
    let mut child = env
        .skiff()
        .args([
            "run",
            "--rm",
            "-i",
            &image,
            "sh",
            "-c",
            "read line; echo got $line",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "got hello");
    let _ = &who.store;
}

#[test]
fn killed_shims_leave_nothing_running_and_cleanup_tidies() {
    for_each_runner(|who, image| {
        let _cleanup = Cleanup(
            who,
            &[
                "crash", "crash-rm", "fg", "atonce", "window", "rmcg", "rmdead",
            ],
        );
        let containers = who.store.join("containers");
        // A detached container whose shim is SIGKILLed: its guardian kills the container.
        for (name, extra) in [("crash", None), ("crash-rm", Some("--rm"))] {
            let mut args = vec!["run", "-d", "--name", name];
            args.extend(extra);
            args.extend([image, "sleep", "300"]);
            who.ok(&args);
            let dir = containers.join(name);
            let state: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
            let shim = state["shim_pid"].as_i64().unwrap() as i32;
            let init = read_pid(&dir.join("container.pid")).expect("the runtime wrote the pid");
            assert!(alive(init));
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(shim),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            wait_until("the container outlived its shim", 5, || !alive(init));
            let ps: serde_json::Value =
                serde_json::from_str(&who.ok(&["--format", "json", "ps", "-a"])).unwrap();
            let me = ps
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == name)
                .unwrap();
            assert_eq!(me["status"], "exited (shim died)");
        }
        // A foreground run whose whole process group is SIGKILLed (a CI job's timeout).
        let (mut child, init) = killed_in_group(who, "fg", image);
        let _ = child.wait();
        wait_until("the container outlived its killed process group", 5, || {
            !alive(init)
        });
        // cleanup: --rm containers go, the others are kept as exited.
        let report = who.ok(&["system", "cleanup"]);
        assert!(report.contains("removed container crash-rm"), "{report}");
        assert!(!containers.join("crash-rm").exists());
        assert!(report.contains("marked container crash exited"), "{report}");
        let ps = who.ok(&["ps", "-a"]);
        assert!(!ps.contains("shim died"), "{ps}");
        assert_eq!(who.ok(&["system", "cleanup"]), "nothing to clean up");
        who.ok(&["rm", "-f", "crash", "fg"]);
        // The same, with `system cleanup` at once, as a runner's cleanup after a timeout: the
        // killed shim, still being torn down (its mount namespace), is not taken for a live
        // one, and the container's processes have ended when cleanup returns.
        let (mut child, init) = killed_in_group(who, "atonce", image);
        let report = who.ok(&["system", "cleanup"]);
        let _ = child.wait();
        assert!(
            report.contains("marked container atonce exited"),
            "{report}"
        );
        assert!(!alive(init), "cleanup returned before the container ended");
        who.ok(&["rm", "atonce"]);
        // A container removed as soon as its shim is gone, before any cleanup: its runtime's
        // cgroup (as root) goes with it.
        if !who.rootless {
            who.ok(&["run", "-d", "--name", "rmdead", image, "sleep", "300"]);
            let dir = containers.join("rmdead");
            let state: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
            let shim = state["shim_pid"].as_i64().unwrap() as i32;
            let init = read_pid(&dir.join("container.pid")).unwrap();
            let cgroups = container_cgroups(init, "skiff-rmdead");
            assert!(
                !cgroups.is_empty(),
                "the runtime made no cgroup skiff-rmdead"
            );
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(shim),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            wait_until("the shim outlived its kill", 5, || !alive(shim));
            who.ok(&["rm", "rmdead"]);
            let left: Vec<_> = cgroups.iter().filter(|c| c.exists()).collect();
            assert!(left.is_empty(), "rm left the cgroups {left:?}");
        }
        // A finished --rm container leaves no cgroup. Its state is deleted after the report,
        // by the shim, before it removes the directory it set aside.
        who.ok(&["run", "--rm", "--name", "rmcg", image, "true"]);
        common::settled_containers(&who.store);
        let left = common::cgroups_named(|n| n == "skiff-rmcg");
        assert!(left.is_empty(), "run --rm left the cgroups {left:?}");
        // An --rm container's shim killed after its report, while removing the container: the
        // directory is set aside (`.removing-ID-PID`) with the runtime's cgroup still there,
        // named after the id. Cleanup removes both.
        if !who.rootless {
            who.ok(&[
                "run", "-d", "--rm", "--name", "window", image, "sleep", "300",
            ]);
            let dir = containers.join("window");
            let mut state: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
            let init = read_pid(&dir.join("container.pid")).unwrap();
            let cgroups = container_cgroups(init, "skiff-window");
            assert!(
                !cgroups.is_empty(),
                "the runtime made no cgroup skiff-window"
            );
            let shim = state["shim_pid"].as_i64().unwrap() as i32;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(shim),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            wait_until("the container outlived its shim", 5, || !alive(init));
            state["status"] = "exited".into();
            std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
            let aside = containers.join(format!(".removing-window-{shim}"));
            std::fs::rename(&dir, &aside).unwrap();
            assert!(cgroups.iter().all(|c| c.exists()));
            let report = who.ok(&["system", "cleanup"]);
            assert!(
                report.contains("removed container .removing-window"),
                "{report}"
            );
            assert!(!aside.exists());
            let left: Vec<_> = cgroups.iter().filter(|c| c.exists()).collect();
            assert!(left.is_empty(), "cleanup left the cgroups {left:?}");
        }
        // A pod whose infra process died is removed with its members.
        who.ok(&["pod", "create", "gone"]);
        let pod: serde_json::Value =
            serde_json::from_slice(&std::fs::read(who.store.join("pods/gone/pod.json")).unwrap())
                .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pod["infra_pid"].as_i64().unwrap() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_until("the infra process died", 5, || {
            !alive(pod["infra_pid"].as_i64().unwrap() as i32)
        });
        assert!(who.ok(&["system", "cleanup"]).contains("removed pod gone"));
        assert!(!who.store.join("pods/gone").exists());
        // A pod whose creator was killed halfway is no pod; cleanup removes it once its
        // creator is gone, and leaves one still being made.
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(&who.store).unwrap();
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let dead = exited.id();
        exited.wait().unwrap();
        let half = |pid: u32| who.store.join(format!("pods/.creating-half-{pid}"));
        for pid in [dead, std::process::id()] {
            std::fs::create_dir_all(half(pid)).unwrap();
            std::os::unix::fs::chown(half(pid), Some(owner.uid()), Some(owner.gid())).unwrap();
        }
        assert_eq!(who.ok(&["pod", "ls"]).lines().count(), 1, "only the header");
        let report = who.ok(&["system", "cleanup"]);
        assert!(
            report.contains(&format!("removed .creating-half-{dead}")),
            "{report}"
        );
        assert!(!half(dead).exists() && half(std::process::id()).exists());
        std::fs::remove_dir(half(std::process::id())).unwrap();
    });
}

/// A foreground `run` SIGKILLed alone takes its shim and container with it, whichever way
/// the shim was started: forked from `run` for an external runtime, `skiff __shim DIR` for
/// libcontainer (whose unstarted init cleanup finds by that command line).
#[test]
fn a_killed_run_takes_its_shim_and_container() {
    let mut reg = None;
    let test = |who: &Runner, image: &str| {
        // A binary the container's user could write runs as a sealed copy, never forked: the
        // rootless runner's own copy.
        use std::os::unix::fs::MetadataExt;
        let sealed = who.rootless && std::fs::metadata(&who.binary).unwrap().uid() != 0;
        let cases = [
            ("libcontainer", "lc-killed", false),
            ("crun", "crun-killed", !sealed),
        ];
        let _cleanup = Cleanup(who, &["lc-killed", "crun-killed"]);
        let cmdline = |pid: i32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        for (runtime, name, forked) in cases {
            let args = [
                "run",
                "--runtime",
                runtime,
                "--name",
                name,
                image,
                "sleep",
                "300",
            ];
            let mut child = spawn_in_group(who, &args);
            let dir = who.store.join("containers").join(name);
            wait_until("the container started", 10, || {
                read_pid(&dir.join("container.pid")).is_some_and(alive)
            });
            let init = read_pid(&dir.join("container.pid")).unwrap();
            let state: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
            let shim = state["shim_pid"].as_i64().unwrap() as i32;
            let stat = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap();
            let run: i32 = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let shim_args = cmdline(shim);
            assert!(
                cmdline(run).windows(3).any(|w| w == b"run"),
                "{run} is not skiff run"
            );
            assert_eq!(
                shim_args == cmdline(run),
                forked,
                "{runtime}: {}",
                String::from_utf8_lossy(&shim_args)
            );
            assert_eq!(shim_args.windows(6).any(|w| w == b"__shim"), !forked);
            assert_eq!(shim_args.starts_with(b"/proc/self/fd/"), sealed);
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(run),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            wait_until("the shim outlived its run", 5, || !alive(shim));
            wait_until("the container outlived its run", 5, || !alive(init));
            let _ = child.wait();
            let report = who.ok(&["system", "cleanup"]);
            assert!(
                report.contains(&format!("marked container {name} exited")),
                "{report}"
            );
        }
    };
    common::runner::for_each_runner(TOOLS, |who| {
        let reg = reg.get_or_insert_with(|| Registry::start(Auth::Anonymous));
        test(who, &pulled(who, reg));
    });
    // Rootless with a binary root owns, as installed from the package: crun's shim forks.
    common::runner::rootless_with_a_root_owned_binary(TOOLS, |who| {
        let reg = reg.get_or_insert_with(|| Registry::start(Auth::Anonymous));
        test(who, &pulled(who, reg));
    });
}

/// A foreground `run` of `name`, started in a process group of its own and, once its
/// container runs, SIGKILLed with the whole group (a CI job's timeout). Returns the killed
/// `run` and the container's init.
fn killed_in_group(who: &Runner, name: &str, image: &str) -> (std::process::Child, i32) {
    let child = spawn_in_group(who, &["run", "--name", name, image, "sleep", "300"]);
    let pid_file = who
        .store
        .join("containers")
        .join(name)
        .join("container.pid");
    wait_until("the foreground container started", 10, || {
        read_pid(&pid_file).is_some_and(alive)
    });
    let init = read_pid(&pid_file).unwrap();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    (child, init)
}

/// The directories of the cgroups of process `pid` named `name`, in every hierarchy.
fn container_cgroups(pid: i32, name: &str) -> Vec<std::path::PathBuf> {
    let listed = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut dirs = vec![];
    for line in listed.lines() {
        let mut fields = line.splitn(3, ':').skip(1);
        let (controllers, path) = (fields.next().unwrap(), fields.next().unwrap());
        if !path.contains(name) {
            continue;
        }
        let path = path.trim_start_matches('/');
        let mounts = match controllers {
            "" => vec!["unified".to_string(), String::new()],
            c => vec![c.trim_start_matches("name=").to_string()],
        };
        dirs.extend(
            mounts
                .iter()
                .map(|m| std::path::Path::new("/sys/fs/cgroup").join(m).join(path))
                .filter(|d| d.join("cgroup.procs").exists()),
        );
    }
    dirs
}

/// `skiff ARGS` in a process group of its own, as the runner (root, or the test user).
fn spawn_in_group(who: &Runner, args: &[&str]) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    (who.skiff)()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}
