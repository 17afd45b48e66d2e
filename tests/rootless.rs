//! Rootless, as the unprivileged `skiff-test` user (created by scripts/setup with a subuid
//! range): pulls unpack inside a user namespace with the full mapping, so image uid 1000 is
//! a subordinate id on the host and 1000 inside `skiff unshare`; overlay mounts show
//! whiteouts and opaque directories applied; rmi removes files owned by subordinate ids.

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const USER: &str = "skiff-test";

struct User {
    dir: tempfile::TempDir,
    uid: u32,
    subuid: u32,
    skiff: PathBuf,
}

fn setup() -> Option<User> {
    if !common::require(&["docker-registry", "skopeo", "runuser", "newuidmap"]) {
        return None;
    }
    let Some(pw) = nix::unistd::User::from_name(USER).ok().flatten() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and user {USER} is missing (scripts/setup creates it)");
        }
        eprintln!("SKIPPED: no user {USER}; run scripts/setup as root");
        return None;
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: the rootless tests switch to {USER} and need root to do so");
        return None;
    }
    let subuid = std::fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{USER}:"))?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .expect("a subuid range for skiff-test");
    let dir = tempfile::Builder::new()
        .prefix("skiff-rootless")
        .tempdir()
        .unwrap();
    for d in ["home", "run", "store", "bin"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    // The user runs its own copy: the build tree may not be readable for it.
    let skiff = dir.path().join("bin/skiff");
    std::fs::copy(env!("CARGO_BIN_EXE_skiff"), &skiff).unwrap();
    let uid = pw.uid.as_raw();
    for p in [
        dir.path().to_path_buf(),
        dir.path().join("home"),
        dir.path().join("run"),
        dir.path().join("store"),
        dir.path().join("bin"),
        skiff.clone(),
    ] {
        nix::unistd::chown(&p, Some(pw.uid), Some(pw.gid)).unwrap();
    }
    Some(User {
        dir,
        uid,
        subuid,
        skiff,
    })
}

impl User {
    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    fn run(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        Command::new("runuser")
            .args(["-u", USER, "--", "env", "-i"])
            .arg(format!("HOME={}", d.join("home").display()))
            .arg(format!("XDG_RUNTIME_DIR={}", d.join("run").display()))
            .arg(format!("SKIFF_ROOT={}", self.store().display()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg("CONTAINERS_REGISTRIES_CONF=/dev/null")
            .arg(&self.skiff)
            .args(args)
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "skiff {args:?} as {USER}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

fn layer_dirs(store: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(store.join("layers"))
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn rootless_pull_ownership_overlay_and_cleanup() {
    let Some(user) = setup() else { return };
    let reg = Registry::start(Auth::Anonymous);
    push(
        &images().layout,
        "multi",
        &format!("{}/test/multi:1", reg.addr()),
        &[],
    );
    let name = format!("{}/test/multi:1", reg.addr());
    let report: serde_json::Value =
        serde_json::from_str(&user.ok(&["--format", "json", "pull", "--tls-verify=false", &name]))
            .unwrap();
    let base = report["layers"][0]["diff_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let owned = user
        .store()
        .join("layers")
        .join(&base)
        .join("home/user/owned");

    // On the host the file belongs to the subordinate id for 1000; the layer dir to the user.
    let md = std::fs::metadata(&owned).unwrap();
    assert_eq!(
        md.uid(),
        user.subuid + 999,
        "image uid 1000 is subuid start + 999 on the host"
    );
    assert_eq!(
        std::fs::metadata(user.store().join("layers").join(&base).join("bin/busybox"))
            .unwrap()
            .uid(),
        user.uid
    );
    assert_eq!(md.mode() & 0o7777, 0o600);

    // Inside the namespace it is 1000 again.
    let inside = user.ok(&["unshare", "stat", "-c", "%u:%g", owned.to_str().unwrap()]);
    assert_eq!(inside.trim(), "1000:1000");
    let map = user.ok(&["unshare", "cat", "/proc/self/uid_map"]);
    assert!(
        map.contains(&format!("{}", user.subuid)),
        "full subordinate mapping: {map}"
    );

    // An overlay of the three layers: the whiteout hides etc/motd, the opaque dir keeps only c.txt.
    let script = format!(
        "m=$({} mount {name}) && test -f $m/bin/busybox && test ! -e $m/etc/motd && ls $m/data && stat -c %u $m/home/user/owned && grep -c ' overlay ' /proc/self/mountinfo",
        user.skiff.display()
    );
    let out = user.ok(&["unshare", "sh", "-c", &script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "c.txt", "{out}");
    assert_eq!(lines[1], "1000");
    assert_ne!(lines[2], "0", "an overlay mount exists inside the session");

    // Writes inside a mount go to its upper dir only; the layers never change.
    let script = format!(
        "m=$({} mount {name}) && echo new > $m/data/c.txt && rm $m/bin/sh && echo $m",
        user.skiff.display()
    );
    let merged = PathBuf::from(user.ok(&["unshare", "sh", "-c", &script]).trim());
    let upper = merged.parent().unwrap().join("upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("data/c.txt")).unwrap(),
        "new\n"
    );
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(
            &std::fs::symlink_metadata(upper.join("bin/sh"))
                .unwrap()
                .file_type()
        ),
        "a deletion is a whiteout in the upper dir"
    );
    assert!(
        layer_dirs(&user.store())
            .iter()
            .any(|l| l.join("bin/sh").is_symlink()),
        "lower layer untouched"
    );

    // A flattened copy keeps owners through the namespace too.
    let flat = user.dir.path().join("flat");
    user.ok(&["unpack", &name, flat.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(flat.join("home/user/owned"))
            .unwrap()
            .uid(),
        user.subuid + 999
    );
    assert!(!flat.join("etc/motd").exists());

    // rmi and prune remove subordinate-owned files from inside the namespace.
    user.ok(&["rmi", &name]);
    user.ok(&["prune"]);
    assert!(
        layer_dirs(&user.store()).is_empty(),
        "{:?}",
        layer_dirs(&user.store())
    );
    assert_eq!(
        common::count_files(&user.store().join("mounts")),
        0,
        "upper dirs of ended sessions are gone"
    );
    user.ok(&["unshare", "rm", "-rf", flat.to_str().unwrap()]);
    assert!(!flat.exists());
}
