//! `skiff run` through the shim and crun, as root and rootless (as skiff-test): exit codes,
//! env, working directory, entrypoint, user by name, image ownership, writes landing in the
//! container's upper directory only, two containers isolated, --rm cleanup.

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use common::user::{USER, setup};
use common::{Env, require, require_root, run};
use std::process::Output;

const TOOLS: &[&str] = &["docker-registry", "skopeo", "crun"];

/// A registry on loopback holding the busybox test image; the name to pull it by.
fn busybox_registry() -> (Registry, String) {
    let reg = Registry::start(Auth::Anonymous);
    let name = format!("{}/test/busybox:1", reg.addr());
    push(&images().layout, "busybox", &name, &[]);
    (reg, name)
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The same checks, whoever runs skiff.
fn check(skiff: &dyn Fn(&[&str]) -> Output, name: &str, store: &std::path::Path) {
    let r = |args: &[&str]| skiff(args);
    let sh = |script: &str| {
        let mut a = vec!["run", "--rm", "--tls-verify=false", name, "sh", "-c"];
        a.push(script);
        r(&a)
    };
    let o = sh("exit 42");
    assert_eq!(
        o.status.code(),
        Some(42),
        "exit status: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = r(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-e",
        "B=two words",
        "-w",
        "/made/here",
        name,
        "sh",
        "-c",
        "echo $A/$B/$(pwd)/$HOME",
    ]);
    assert_eq!(
        text(&o),
        "1/two words//made/here//root",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = r(&[
        "run",
        "--rm",
        "-u",
        "user",
        name,
        "sh",
        "-c",
        "id -u; id -g; echo $HOME; cat /home/user/owned; stat -c %u /home/user/owned",
    ]);
    assert_eq!(
        text(&o).lines().collect::<Vec<_>>(),
        ["1000", "1000", "/home/user", "mine", "1000"],
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = r(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/echo",
        name,
        "via",
        "entrypoint",
    ]);
    assert_eq!(text(&o), "via entrypoint");
    let o = r(&[
        "run",
        "--rm",
        "--network",
        "none",
        name,
        "sh",
        "-c",
        "cat /etc/hostname; ls /sys/class/net",
    ]);
    assert!(
        text(&o).lines().any(|l| l == "lo"),
        "a network namespace of its own: {}",
        text(&o)
    );

    // The root of an --rm container is volatile (no sync reaches its upper layer, not even
    // at unmount); a container that stays keeps the upper filesystem's syncs.
    let root_options = "grep ' / / ' /proc/self/mountinfo | grep -o 'volatile' || echo synced";
    assert_eq!(text(&sh(root_options)), "volatile");
    let o = r(&["run", "--name", "kept", name, "sh", "-c", root_options]);
    assert_eq!(text(&o), "synced", "{}", String::from_utf8_lossy(&o.stderr));
    r(&["rm", "kept"]);

    // Writes go to the upper dir; a second container does not see them; the layers never change.
    let o = r(&[
        "run",
        "--name",
        "first",
        name,
        "sh",
        "-c",
        "echo one > /tmp/mine && rm /bin/ls && echo done",
    ]);
    assert_eq!(text(&o), "done", "{}", String::from_utf8_lossy(&o.stderr));
    let upper = store.join("containers/first/upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp/mine")).unwrap(),
        "one\n"
    );
    let o = sh("test -e /tmp/mine && echo leaked; test -e /bin/ls && echo intact");
    assert_eq!(text(&o), "intact");
    let o = r(&["run", "--name", "first", name, "true"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("exists"),
        "names are unique"
    );
    // A name is a directory of the store: none reaches outside it.
    for args in [
        &["run", "--name", "../escape", name, "true"][..],
        &["run", "--name", ".hidden", name, "true"],
        &["run", "--pod", "../containers/first", name, "true"],
        &["pod", "create", "../escape"],
    ] {
        let o = r(args);
        assert!(
            !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("invalid"),
            "{args:?}: {o:?}"
        );
    }
    assert!(!store.join("escape").exists() && !store.join("containers/.hidden").exists());
    for args in [
        &["rm", "-f", "../containers/first"][..],
        &["pod", "rm", "../containers/first"],
    ] {
        let o = r(args);
        assert!(
            !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no "),
            "{args:?}: {o:?}"
        );
    }
    assert!(store.join("containers/first/plan.json").exists());
    // An --rm container's name is free as soon as `run` returns (its files are removed after
    // the exit status is reported), and --rm leaves nothing once its shim is done.
    for _ in 0..3 {
        let o = r(&["run", "--rm", "--name", "again", name, "true"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(
        common::settled_containers(store),
        1,
        "only the named container remains"
    );
    // The shim starts while the image is read; an image that cannot be had ends it before
    // it touched anything. A name in use is refused before any pull.
    let missing = format!("{}/none:1", name.split('/').next().unwrap());
    let o = r(&["run", "--rm", "--pull", "never", &missing, "true"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains(&missing),
        "{o:?}"
    );
    let o = r(&[
        "run", "--name", "first", "--pull", "never", &missing, "true",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("a container named first exists"),
        "{o:?}"
    );
    assert_eq!(
        common::settled_containers(store),
        1,
        "no container was made"
    );
    let shims = common::processes_with_args(&["__shim", &store.to_string_lossy()]);
    assert!(shims.is_empty(), "shims left waiting: {shims:?}");
}

#[test]
fn run_as_root() {
    if !require(TOOLS) {
        return;
    }
    if !require_root("root mode; the rootless path is run_rootless") {
        return;
    }
    let (_reg, name) = busybox_registry();
    let env = Env::new();
    let skiff = |args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        if a[0] == "run" && !a.contains(&"--tls-verify=false") {
            a.insert(1, "--tls-verify=false");
        }
        run(env.skiff().args(&a))
    };
    check(&skiff, &name, &env.store());
    // A relative --root names the same store, wherever the shim and runtime look from.
    let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .current_dir(env.dir.path())
        .env("CONTAINERS_REGISTRIES_CONF", env.path("registries.conf"))
        .args([
            "--root",
            "store",
            "run",
            "--rm",
            &name,
            "cat",
            "/etc/hostname",
        ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn run_rootless() {
    if !require(TOOLS) {
        return;
    }
    let Some(user) = setup(USER) else { return };
    let (_reg, name) = busybox_registry();
    let skiff = |args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        if a[0] == "run" && !a.contains(&"--tls-verify=false") {
            a.insert(1, "--tls-verify=false");
        }
        user.run(&a)
    };
    check(&skiff, &name, &user.store());
    // Inside the container the full subordinate map is in force.
    let o = skiff(&["run", "--rm", &name, "cat", "/proc/self/uid_map"]);
    assert!(text(&o).contains(&user.subuid.to_string()), "{}", text(&o));
}

#[test]
fn sigterm_reaches_the_container_and_rm_still_cleans_up() {
    if !require(TOOLS) || !require_root("root mode") {
        return;
    }
    let (_reg, name) = busybox_registry();
    let env = Env::new();
    assert!(
        run(env
            .skiff()
            .args(["run", "--rm", "--tls-verify=false", &name, "true"]))
        .status
        .success()
    );
    let mut child = spawn_ready(env.skiff().args([
        "run",
        "--rm",
        &name,
        "sh",
        "-c",
        "trap 'exit 9' TERM; echo ready; while true; do sleep 0.1; done",
    ]));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(9),
        "the container's trap decided the exit status"
    );
    assert_eq!(
        common::settled_containers(&env.store()),
        0,
        "--rm cleaned up after the signal"
    );
}

/// Removes the test's detached containers even when an assertion fails first.
struct Cleanup<'a>(&'a dyn Fn(&[&str]) -> Output);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for c in ["svc", "stubborn", "busy", "l1", "l2"] {
            let _ = (self.0)(&["rm", "-f", c]);
        }
    }
}

fn detached(skiff: &dyn Fn(&[&str]) -> Output, name: &str) {
    let _cleanup = Cleanup(skiff);
    let ok = |args: &[&str]| {
        let o = skiff(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        text(&o)
    };
    let id = ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        name,
        "sh",
        "-c",
        "trap 'echo stopping; exit 3' TERM; echo started; while true; do sleep 0.1; done",
    ]);
    assert_eq!(id, "svc");
    let start = std::time::Instant::now();
    while !ok(&["logs", "svc"]).contains("started") {
        assert!(
            start.elapsed().as_secs() < 10,
            "the detached container never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Private networks: loopback works inside, and two containers listen on one port at once.
    let o = skiff(&[
        "run",
        "--rm",
        "--network",
        "private",
        name,
        "sh",
        "-c",
        "(nc -l -p 8080 -e echo pong &); sleep 0.3; echo ping | nc 127.0.0.1 8080",
    ]);
    assert_eq!(text(&o), "pong", "{}", String::from_utf8_lossy(&o.stderr));
    for n in ["l1", "l2"] {
        ok(&[
            "run",
            "-d",
            "--name",
            n,
            "--network",
            "private",
            name,
            "nc",
            "-ll",
            "-p",
            "8080",
            "-e",
            "echo",
            "hi",
        ]);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let ps: serde_json::Value = serde_json::from_str(&ok(&["--format", "json", "ps"])).unwrap();
    let listening: Vec<&str> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "l1" || c["id"] == "l2")
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        listening,
        ["running", "running"],
        "both listen on port 8080 in their own namespaces: {ps} {} {}",
        ok(&["logs", "l1"]),
        ok(&["logs", "l2"])
    );
    ok(&["rm", "-f", "l1", "l2"]);
    // exec: into the same namespaces, with the exit status, env, workdir and user asked for.
    let o = skiff(&["exec", "svc", "sh", "-c", "exit 4"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "svc",
            "sh",
            "-c",
            "echo $X $(pwd)"
        ]),
        "1 /tmp"
    );
    assert_eq!(ok(&["exec", "-u", "user", "svc", "id", "-u"]), "1000");
    assert!(
        ok(&["exec", "svc", "cat", "/proc/1/cmdline"]).starts_with("sh"),
        "pid 1 is the container's process"
    );
    let ps: serde_json::Value = serde_json::from_str(&ok(&["--format", "json", "ps"])).unwrap();
    assert_eq!(ps[0]["id"], "svc");
    assert_eq!(ps[0]["status"], "running");
    ok(&["stop", "-t", "5", "svc"]);
    assert!(
        ok(&["logs", "svc"]).contains("stopping"),
        "SIGTERM reached the container's trap"
    );
    let ps: serde_json::Value =
        serde_json::from_str(&ok(&["--format", "json", "ps", "-a"])).unwrap();
    assert_eq!(ps[0]["exit_code"], 3);
    assert!(
        serde_json::from_str::<serde_json::Value>(&ok(&["--format", "json", "ps"]))
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    );
    // One that ignores SIGTERM is killed after the timeout; rm -f kills a running one.
    ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        name,
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(&["stop", "-t", "1", "stubborn"]);
    ok(&["run", "-d", "--name", "busy", name, "sleep", "60"]);
    let o = skiff(&["rm", "busy"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("running"));
    ok(&["rm", "-f", "busy", "svc", "stubborn"]);
    assert_eq!(
        ok(&["ps", "-a"]).lines().count(),
        1,
        "only the header is left"
    );
}

#[test]
fn detached_ps_logs_stop_rm_as_root() {
    if !require(TOOLS) || !require_root("root mode") {
        return;
    }
    let (_reg, name) = busybox_registry();
    let env = Env::new();
    assert!(
        run(env
            .skiff()
            .args(["pull", "-q", "--tls-verify=false", &name]))
        .status
        .success()
    );
    detached(&|args: &[&str]| run(env.skiff().args(args)), &name);
}

#[test]
fn detached_ps_logs_stop_rm_rootless() {
    if !require(TOOLS) {
        return;
    }
    let Some(user) = setup(USER) else { return };
    let (_reg, name) = busybox_registry();
    assert!(
        user.run(&["pull", "-q", "--tls-verify=false", &name])
            .status
            .success()
    );
    detached(&|args: &[&str]| user.run(args), &name);
}

/// Output sent to /dev/null stays writable in the container: libcontainer reopens it as the
/// container's /dev/null read-only, and every `echo` then failed with EBADF.
#[test]
fn output_to_dev_null_stays_writable() {
    if !require(TOOLS) {
        return;
    }
    let (_reg, name) = busybox_registry();
    let script = "echo out && echo err >&2 && exit 7";
    let args = [
        "run",
        "--rm",
        "--tls-verify=false",
        &name,
        "sh",
        "-c",
        script,
    ];
    let null = std::process::Stdio::null;
    let mut commands = vec![];
    let env = Env::new();
    if nix::unistd::geteuid().is_root() {
        let mut c = env.skiff();
        c.args(args);
        commands.push(("root", c));
    }
    let user = setup(USER);
    if let Some(user) = &user {
        let mut c = user.command(&[]);
        c.args(args);
        commands.push(("rootless", c));
    }
    for (mode, mut c) in commands {
        let status = c.stdout(null()).stderr(null()).status().unwrap();
        assert_eq!(status.code(), Some(7), "{mode}: {status}");
    }
}

/// A shim killed under `run --rm` (as root): `run` exits 137, and neither the container's
/// directory nor its cgroup is left behind.
#[test]
fn a_killed_shim_under_run_rm_leaves_nothing() {
    if !require(TOOLS) || !require_root("root mode: the container's cgroup") {
        return;
    }
    let (_reg, name) = busybox_registry();
    let env = Env::new();
    let id = format!("killed-{}", std::process::id());
    let mut child = spawn_ready(
        env.skiff()
            .args(["run", "--rm", "--tls-verify=false", "--name", &id, &name])
            .args(["sh", "-c", "echo ready; sleep 30"]),
    );
    let state = env.store().join("containers").join(&id).join("state.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let shim = state["shim_pid"].as_i64().unwrap() as i32;
    assert!(!common::cgroups_named(|n| n == format!("skiff-{id}")).is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert_eq!(common::settled_containers(&env.store()), 0);
    let left = common::cgroups_named(|n| n == format!("skiff-{id}"));
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

/// Spawns `cmd` (a `skiff run` whose container prints "ready" first) and returns once the
/// container said it.
fn spawn_ready(cmd: &mut std::process::Command) -> std::process::Child {
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    child
}
