//! Container escape basics, rootless (as skiff-test) and as root: a container sees only its
//! own processes, cannot change the image layers, gains nothing from set-uid binaries
//! (no-new-privileges), and holds exactly podman's default capabilities (none as a user).

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use common::user::{USER, setup};
use common::{Env, require, require_root, run};
use std::process::Output;

const TOOLS: &[&str] = &["docker-registry", "skopeo"];

/// podman's default set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, SYS_CHROOT, SETFCAP.
const DEFAULT_CAPS: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 10)
    | (1 << 18)
    | (1 << 31);

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn caps(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

fn checks(skiff: &dyn Fn(&[&str]) -> Output, image: &str, store: &std::path::Path) {
    let ok = |args: &[&str]| {
        let o = skiff(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        text(&o)
    };
    // Its own PID namespace: the container's command is pid 1, and nothing of the host shows.
    let pids = ok(&[
        "run",
        "--rm",
        image,
        "sh",
        "-c",
        "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '",
    ]);
    let pids: Vec<u32> = pids
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    // The shell, the pipeline's commands; host pids here run into the thousands.
    assert!(
        pids[0] == 1 && pids.len() <= 8 && pids.iter().all(|p| *p < 50),
        "only the container's processes: {pids:?}"
    );
    // The image layers never change, whatever the container deletes or writes.
    let layers = store.join("layers");
    let before = common::count_files(&layers);
    ok(&[
        "run",
        "--rm",
        image,
        "sh",
        "-c",
        "rm -rf /bin/ls /etc; echo x > /new; true",
    ]);
    assert_eq!(common::count_files(&layers), before, "layers untouched");
    assert_eq!(
        ok(&[
            "run",
            "--rm",
            image,
            "sh",
            "-c",
            "test -e /bin/ls && echo intact"
        ]),
        "intact"
    );
    // Capabilities: podman's default set for root, none for a user; no-new-privileges.
    let status = ok(&["run", "--rm", image, "cat", "/proc/self/status"]);
    assert_eq!(caps(&status, "CapEff:"), DEFAULT_CAPS, "{status}");
    assert_eq!(caps(&status, "CapBnd:"), DEFAULT_CAPS, "{status}");
    assert_eq!(caps(&status, "CapInh:"), 0);
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let status = ok(&[
        "run",
        "--rm",
        "-u",
        "user",
        image,
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(
        caps(&status, "CapEff:"),
        0,
        "a user holds nothing: {status}"
    );
    assert_eq!(caps(&status, "CapPrm:"), 0);
    // A set-uid-root binary made by the container's root gives a user nothing.
    ok(&["run", "-d", "--name", "suid", image, "sleep", "60"]);
    let made = ok(&[
        "exec",
        "suid",
        "sh",
        "-c",
        "mkdir -p /tmp/s && cp /bin/busybox /tmp/s/id && chmod 4755 /tmp/s/id && stat -c '%a %u' /tmp/s/id",
    ]);
    assert_eq!(made, "4755 0");
    let euid = ok(&["exec", "-u", "user", "suid", "/tmp/s/id", "-u"]);
    assert_eq!(
        euid, "1000",
        "the set-uid bit is ignored (no-new-privileges)"
    );
    ok(&["rm", "-f", "suid"]);
}

#[test]
fn no_way_out_of_a_container() {
    if !require(TOOLS) || !require_root("root mode, and switching to the test user") {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    let image = format!("{}/test/busybox:1", reg.addr());
    push(&images().layout, "busybox", &image, &[]);
    let env = Env::new();
    let root = |args: &[&str]| run(env.skiff().args(args));
    assert!(
        root(&["pull", "-q", "--tls-verify=false", &image])
            .status
            .success()
    );
    checks(&root, &image, &env.store());
    let Some(user) = setup(USER) else { return };
    assert!(
        user.run(&["pull", "-q", "--tls-verify=false", &image])
            .status
            .success()
    );
    checks(&|args: &[&str]| user.run(args), &image, &user.store());
    println!(
        "reliability: escape basics (host processes, image layers, setuid, capabilities), root and rootless | 2 modes | pass"
    );
}
