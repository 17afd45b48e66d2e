//! Integration test harness: real CNCF distribution registries on 127.0.0.1 (anonymous,
//! htpasswd, token auth with a real JWT issuer, pull-through proxy), test images built
//! offline from busybox-static and pushed with skopeo, and a hermetic `skiff` command.
#![allow(dead_code)]

pub mod http;
pub mod images;
pub mod issuer;
pub mod proxy;
pub mod registry;
pub mod runner;
pub mod runner_script;
pub mod user;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Tools a test needs. Missing ones skip the test locally but fail it when `CI=true`.
pub fn require(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and required tools are missing: {missing:?} (scripts/setup installs them)");
    }
    eprintln!("SKIPPED: missing tools {missing:?}; run scripts/setup");
    false
}

/// Whether this test runs as root; under `CI=true` (run as root) not being root is a failure.
pub fn require_root(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but not root: {why}");
    }
    eprintln!("SKIPPED: needs root: {why}");
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A private HOME/XDG world so no real credential or registries.conf leaks into a test.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["home", "run", "config", "data", "store"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("registries.conf"), "").unwrap();
        Env { dir }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn store(&self) -> PathBuf {
        self.path("store")
    }
    pub fn write(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        p
    }
    /// `skiff --root <store>` with the private environment.
    pub fn skiff(&self) -> Command {
        self.skiff_at(Path::new(env!("CARGO_BIN_EXE_skiff")))
    }
    /// As `skiff`, with the skiff binary at `binary`.
    pub fn skiff_at(&self, binary: &Path) -> Command {
        let mut c = Command::new(binary);
        c.arg("--root").arg(self.store());
        for k in [
            "DOCKER_AUTH_CONFIG",
            "REGISTRY_AUTH_FILE",
            "DOCKER_CONFIG",
            "SKIFF_ROOT",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "CONTAINERS_REGISTRIES_CONF_DIR",
        ] {
            c.env_remove(k);
        }
        c.env("HOME", self.path("home"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env("SKIFF_LOG_LEVEL", "info");
        c
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs and asserts success, returning stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs and asserts failure, returning stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn json(cmd: &mut Command) -> serde_json::Value {
    let s = ok(cmd);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

pub fn fsck_ok(env: &Env) {
    let report = json(env.skiff().args(["--format", "json", "fsck"]));
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");
}

/// Runs openssl in `dir`, asserting success.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The store's containers once the shims of ended `--rm` containers have removed them (they
/// report the exit status first and remove the files set aside after): at most 10 s.
pub fn settled_containers(store: &Path) -> usize {
    let containers = store.join("containers");
    let set_aside = || {
        std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".removing-"))
    };
    let start = std::time::Instant::now();
    while set_aside() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "--rm containers set aside in {} were never removed",
            containers.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    count_files(&containers)
}

pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

/// Every cgroup directory whose name `wanted` accepts, under this process's cgroup (v2,
/// hybrid or not) or at the top of a v1 hierarchy: where a root container's runtime makes its
/// cgroup.
pub fn cgroups_named(wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let listed = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = listed
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/")
        .trim_start_matches('/');
    let cgroup = Path::new("/sys/fs/cgroup");
    let v2 = [cgroup.join("unified"), cgroup.to_path_buf()]
        .into_iter()
        .map(|base| base.join(own));
    let v1 = std::fs::read_dir(cgroup)
        .unwrap()
        .flatten()
        .map(|h| h.path());
    let mut found: Vec<PathBuf> = v2
        .chain(v1)
        .flat_map(|parent| std::fs::read_dir(parent).into_iter().flatten().flatten())
        .filter(|e| wanted(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .filter(|d| d.join("cgroup.procs").exists())
        .collect();
    // The v2 hierarchy of a hybrid host is also one of /sys/fs/cgroup's directories.
    found.sort();
    found.dedup();
    found
}

/// The processes whose command line holds each of `words` (as part of an argument), once
/// none is left or 5 s have passed: the pids still there.
pub fn processes_with_args(words: &[&str]) -> Vec<u32> {
    let find = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                words
                    .iter()
                    .all(|w| args.iter().any(|a| a.contains(w)))
                    .then_some(pid)
            })
            .collect()
    };
    let start = std::time::Instant::now();
    loop {
        let found = find();
        if found.is_empty() || start.elapsed() > std::time::Duration::from_secs(5) {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
