//! The Debian package as an administrator meets it: `scripts/package` builds it from a clean
//! commit (lintian checks it) and refuses a dirty or unbuildable tree; it installs on a host
//! with no route (an air-gapped runner host, in a network namespace of the test's own), where
//! the carried bundle and helper tarball are imported, the runner's template is made, and
//! `skiff info`, a rootless `skiff run` and a `skiff job` run from the installed binary; a newer
//! package over it keeps the stores and the driver's settings; purging leaves only what Debian
//! policy keeps. Root only: it installs packages and makes network namespaces.

mod common;

use common::images::{helper_tarballs, images};
use common::user::USER;
use common::{fails, ok, require, require_root, run};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &[&str] = &[
    "git",
    "dpkg-buildpackage",
    "lintian",
    "dpkg",
    "ip",
    "skopeo",
    "runuser",
    "nsenter",
    "man",
    "systemd-analyze",
];
const HELPER_VERSION: &str = "17.9.0";
const IMAGE: &str = "localhost/lab/busybox:1";
const SYSTEM_UNITS: &[&str] = &[
    "/etc/systemd/system/multi-user.target.wants/skiff-cleanup.service",
    "/etc/systemd/system/timers.target.wants/skiff-cleanup.timer",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(cmd: &mut Command) -> (bool, String) {
    let o = run(cmd);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), all)
}

/// A clone of the last commit at a fixed place, so that the package's cargo build of the
/// same commit is reused from one run to the next.
fn clone(name: &str) -> PathBuf {
    let dir = repo().join("target/package-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    ok(Command::new("git")
        .args(["clone", "-q", "--no-hardlinks"])
        .arg(repo())
        .arg(&dir));
    dir
}

fn package(checkout: &Path, out: &Path, version: Option<&str>) -> Command {
    let mut c = Command::new(checkout.join("scripts/package"));
    c.arg("--out").arg(out);
    if let Some(v) = version {
        c.args(["--version", v]);
    }
    // The package's build is kept beside the test's other builds, and optimized only lightly,
    // without link-time optimization: the test is about the package, and a fresh CI machine
    // compiles every crate for it (minutes saved; the installed binary is still fast enough
    // to run its jobs).
    c.env("CARGO_TARGET_DIR", repo().join("target/package-test/cargo"))
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
        .env("CARGO_PROFILE_RELEASE_LTO", "off")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    c
}

/// Runs `script` with sh inside the network namespace `ns`, and nothing else changed: `ip
/// netns exec` would also mount a new /sys, without the host's cgroups.
fn in_ns(ns: &str, script: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .args(["sh", "-euc", script]);
    c
}

/// Removes the namespace and the package, whatever the test's outcome.
struct Teardown {
    ns: String,
    made_store: bool,
    made_config: bool,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let _ = run(Command::new("dpkg").args(["--purge", "skiff"]));
        let _ = run(Command::new("ip").args(["netns", "delete", &self.ns]));
        if self.made_store {
            let _ = std::fs::remove_dir_all("/var/lib/skiff");
        }
        if self.made_config {
            let _ = std::fs::remove_file("/etc/skiff/gitlab.toml");
            let _ = std::fs::remove_dir("/etc/skiff");
        }
    }
}

#[test]
fn package_builds_installs_air_gapped_upgrades_and_purges() {
    if !require(TOOLS) || !require_root("it installs the package") {
        return;
    }
    let installed = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "skiff"]));
    assert!(
        !String::from_utf8_lossy(&installed.stdout).contains("ok installed"),
        "a skiff package is installed on this machine already; the test would replace it"
    );
    let work = tempfile::Builder::new()
        .prefix("skiff-package")
        .tempdir_in("/var/tmp")
        .unwrap();
    let w = work.path();
    let out = w.join("debs");

    // Built from a clean commit, an older and the current version; lintian passes both.
    let checkout = clone("clone");
    let version = ok(Command::new("dpkg-parsechangelog")
        .args(["-S", "Version", "-l"])
        .arg(checkout.join("debian/changelog")))
    .trim()
    .to_string();
    let older = format!("{version}~older1");
    for v in [Some(older.as_str()), None] {
        let (built, log) = text(&mut package(&checkout, &out, v));
        assert!(built, "scripts/package {v:?}:\n{log}");
    }
    let arch = ok(Command::new("dpkg").arg("--print-architecture"));
    let deb = |v: &str| out.join(format!("skiff_{v}_{}.deb", arch.trim()));
    let (old_deb, new_deb) = (deb(&older), deb(&version));
    assert!(old_deb.is_file() && new_deb.is_file());

    // What it declares and carries.
    let fields = ok(Command::new("dpkg-deb").arg("-I").arg(&new_deb));
    for want in [
        "Package: skiff",
        "uidmap",
        "libseccomp2",
        "Recommends: passt | slirp4netns, golang-github-containers-common",
        "Suggests: crun, runc, fuse-overlayfs",
    ] {
        assert!(
            fields.contains(want),
            "{want} not in the control file:\n{fields}"
        );
    }
    let files = ok(Command::new("dpkg-deb").arg("-c").arg(&new_deb));
    for want in [
        "./usr/bin/skiff",
        "./usr/share/man/man1/skiff.1.gz",
        "./usr/share/man/man1/skiff-job.1.gz",
        "./usr/share/man/man1/skiff-system-cleanup.1.gz",
        "./usr/share/bash-completion/completions/skiff",
        "./usr/share/zsh/vendor-completions/_skiff",
        "./usr/share/fish/vendor_completions.d/skiff.fish",
        "./usr/share/doc/skiff/examples/gitlab.toml",
        "./usr/share/doc/skiff/copyright",
        "./lib/systemd/system/skiff-cleanup.service",
        "./lib/systemd/system/skiff-cleanup.timer",
        "./usr/lib/systemd/user/skiff-cleanup.service",
        "./usr/lib/systemd/user/skiff-cleanup.timer",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(want)),
            "{want} not in the package:\n{files}"
        );
    }

    // What the operator carries from a connected machine: a bundle of the pipeline's images
    // with the helper, and the runner's prebuilt helper tarball.
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let source = w.join("connected-store");
    let archive = w.join("busybox.tar");
    ok(Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:busybox", images().layout.display()))
        .arg(format!("docker-archive:{}:{IMAGE}", archive.display())));
    helper_tarballs(&w.join("helper-images"));
    let store = |c: &mut Command| {
        c.arg("--root").arg(&source);
    };
    let mut load = Command::new(skiff);
    store(&mut load);
    ok(load.args(["load", "-i"]).arg(&archive));
    let mut helper = Command::new(skiff);
    store(&mut helper);
    ok(helper
        .args(["helper", "import", "--version", HELPER_VERSION, "--dir"])
        .arg(w.join("helper-images")));
    let bundle = w.join("pipeline.tar");
    let mut create = Command::new(skiff);
    store(&mut create);
    ok(create.args(["bundle", "create", "-o"]).arg(&bundle).args([
        "--helper-version",
        HELPER_VERSION,
        IMAGE,
    ]));
    std::fs::remove_dir_all(&source).unwrap();
    let project = w.join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join(".gitlab-ci.yml"),
        format!(
            "build:\n  image: {IMAGE}\n  script:\n    - echo built offline by $(id -u)\n    - test -f .gitlab-ci.yml\n"
        ),
    )
    .unwrap();
    // The rootless user reads what the operator carried.
    for p in [w, archive.as_path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // The host: a network namespace with nothing but loopback.
    let ns = format!("skiff-package-{}", std::process::id());
    let had_store = Path::new("/var/lib/skiff").exists();
    let had_config = Path::new("/etc/skiff/gitlab.toml").exists();
    let _teardown = Teardown {
        ns: ns.clone(),
        made_store: !had_store,
        made_config: !had_config,
    };
    ok(Command::new("ip").args(["netns", "add", &ns]));
    ok(&mut in_ns(&ns, "ip link set lo up"));
    let (routed, said) = text(&mut in_ns(&ns, "ip route get 192.0.2.1"));
    assert!(!routed, "the namespace has a route: {said}");

    // Install (the older version first), import, register: all without a route.
    let host = format!(
        r#"
        dpkg -i {old_deb}
        skiff --version
        skiff info
        skiff load -i {bundle}
        skiff helper resolve --version {HELPER_VERSION} > {w}/helper
        grep -q store {w}/helper
        test -f /etc/skiff/gitlab.toml || {{ mkdir -p /etc/skiff; cp /usr/share/doc/skiff/examples/gitlab.toml /etc/skiff/gitlab.toml; }}
        skiff gitlab config --check --config /etc/skiff/gitlab.toml
        skiff gitlab register-template --config /etc/skiff/gitlab.toml > {w}/skiff.toml
        cd {project} && skiff job --config /etc/skiff/gitlab.toml build
        "#,
        old_deb = old_deb.display(),
        bundle = bundle.display(),
        w = w.display(),
        project = project.display(),
    );
    let (fine, log) = text(&mut in_ns(&ns, &host));
    assert!(fine, "the air-gapped install:\n{log}");
    assert!(
        log.contains(&format!("skiff {}", version.split('~').next().unwrap())),
        "{log}"
    );
    assert!(log.contains("built offline by 0"), "{log}");
    assert!(log.contains("Job succeeded"), "{log}");
    let template = std::fs::read_to_string(w.join("skiff.toml")).unwrap();
    assert!(
        template.contains(r#"run_exec = "/usr/bin/skiff""#)
            && template.contains(r#""--config", "/etc/skiff/gitlab.toml""#),
        "{template}"
    );
    // A rootless user of the installed binary, still without a route.
    let rootless = format!(
        r#"
        export HOME={w}/rootless XDG_RUNTIME_DIR={w}/rootless/run
        mkdir -p "$XDG_RUNTIME_DIR"
        skiff load -i {archive}
        skiff run --rm {IMAGE} sh -c 'echo rootless as $(id -u)'
        "#,
        w = w.display(),
        archive = archive.display()
    );
    std::fs::create_dir_all(w.join("rootless")).unwrap();
    let user = nix::unistd::User::from_name(USER).unwrap().expect(USER);
    nix::unistd::chown(&w.join("rootless"), Some(user.uid), Some(user.gid)).unwrap();
    let (fine, log) = text(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["runuser", "-u", USER, "--", "sh", "-euc", &rootless]),
    );
    assert!(
        fine && log.contains("rootless as 0"),
        "rootless run:\n{log}"
    );

    // The units: valid, enabled for boot and hourly; the boot unit's command works.
    for unit in [
        "/lib/systemd/system/skiff-cleanup.service",
        "/lib/systemd/system/skiff-cleanup.timer",
    ] {
        let (valid, said) = text(Command::new("systemd-analyze").args(["verify", unit]));
        assert!(valid && said.trim().is_empty(), "{unit}: {said}");
    }
    for link in SYSTEM_UNITS {
        assert!(Path::new(link).exists(), "{link} is not enabled");
    }
    assert!(
        Path::new("/etc/systemd/user/default.target.wants/skiff-cleanup.service").exists(),
        "the user unit is not enabled for every user"
    );
    ok(Command::new("/usr/bin/skiff").args(["--root", "/var/lib/skiff", "system", "cleanup"]));
    ok(Command::new("man").args(["-w", "skiff-job"]));

    // A newer version over it keeps the stores and the driver's settings.
    let images_before = ok(Command::new("/usr/bin/skiff").args(["images"]));
    let config_before = std::fs::read("/etc/skiff/gitlab.toml").unwrap();
    let (fine, log) = text(Command::new("dpkg").arg("-i").arg(&new_deb));
    assert!(fine, "the upgrade:\n{log}");
    let shown = ok(Command::new("dpkg-query").args(["-W", "-f=${Version}", "skiff"]));
    assert_eq!(shown, version);
    assert_eq!(
        ok(Command::new("/usr/bin/skiff").args(["images"])),
        images_before
    );
    assert!(
        images_before.contains("gitlab-runner-helper"),
        "{images_before}"
    );
    assert_eq!(
        std::fs::read("/etc/skiff/gitlab.toml").unwrap(),
        config_before
    );
    for link in SYSTEM_UNITS {
        assert!(
            Path::new(link).exists(),
            "{link} is not enabled after the upgrade"
        );
    }

    // Purged: the package's files and unit links are gone; the stores and the admin's own
    // file stay (data and configuration the package did not ship).
    let listed = ok(Command::new("dpkg").args(["-L", "skiff"]));
    ok(Command::new("dpkg").args(["--purge", "skiff"]));
    let left: Vec<&Path> = listed
        .lines()
        // Not directories (nor /lib, a link to one on merged-/usr systems): they are shared.
        .map(Path::new)
        .filter(|p| (p.is_file() || p.is_symlink()) && !p.is_dir())
        .collect();
    assert!(left.is_empty(), "purge left {left:?}");
    for link in SYSTEM_UNITS
        .iter()
        .chain(&["/etc/systemd/user/default.target.wants/skiff-cleanup.service"])
    {
        assert!(!Path::new(link).exists(), "purge left {link}");
    }
    let state: Vec<PathBuf> = [
        "/var/lib/systemd/deb-systemd-helper-enabled",
        "/var/lib/systemd/deb-systemd-user-helper-enabled",
    ]
    .iter()
    .flat_map(|d| walk(Path::new(d)))
    .filter(|p| p.to_string_lossy().contains("skiff"))
    .collect();
    assert!(state.is_empty(), "purge left {state:?}");
    assert!(Path::new("/var/lib/skiff/index.json").exists());
    assert_eq!(
        std::fs::read("/etc/skiff/gitlab.toml").unwrap(),
        config_before
    );
}

/// Every path under `dir`, depth first.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

/// A package is a commit: uncommitted changes, a version that disagrees with Cargo.toml and a
/// tree that does not build each fail with the reason, and no package is written.
#[test]
fn package_refuses_a_dirty_or_unbuildable_tree() {
    if !require(TOOLS) || !require_root("the package tests run as root") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let checkout = clone("bad");
    let git = |args: &[&str]| ok(Command::new("git").arg("-C").arg(&checkout).args(args));
    git(&["config", "user.email", "test@skiff.invalid"]);
    git(&["config", "user.name", "test"]);

    std::fs::write(checkout.join("notes.txt"), "scratch").unwrap();
    let said = fails(&mut package(&checkout, out.path(), None));
    assert!(
        said.contains("uncommitted changes") && said.contains("notes.txt"),
        "{said}"
    );
    std::fs::remove_file(checkout.join("notes.txt")).unwrap();

    let toml = std::fs::read_to_string(checkout.join("Cargo.toml")).unwrap();
    let bumped = toml.replacen("version = \"", "version = \"9", 1);
    std::fs::write(checkout.join("Cargo.toml"), bumped).unwrap();
    git(&["commit", "-qam", "a version debian/changelog does not have"]);
    let said = fails(&mut package(&checkout, out.path(), None));
    assert!(said.contains("is not Cargo.toml's 9"), "{said}");
    git(&["reset", "-q", "--hard", "HEAD~1"]);

    let lib = checkout.join("src/lib.rs");
    let mut source = std::fs::read_to_string(&lib).unwrap();
    source.push_str("\nfn broken( {\n");
    std::fs::write(&lib, source).unwrap();
    git(&["commit", "-qam", "a tree that does not build"]);
    let said = fails(&mut package(&checkout, out.path(), None));
    assert!(
        said.contains("building the package failed") && said.contains("src/lib.rs"),
        "{said}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&checkout);
}
