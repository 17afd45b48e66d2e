//! An unprivileged user (created by scripts/setup) running its own copy of skiff.

use std::path::PathBuf;
use std::process::{Command, Output};

pub const USER: &str = "skiff-test";
pub const NOSUBID: &str = "skiff-nosubid";

pub struct User {
    pub name: &'static str,
    pub dir: tempfile::TempDir,
    pub uid: u32,
    pub subuid: u32,
    pub skiff: PathBuf,
}

pub fn setup(name: &'static str) -> Option<User> {
    if !super::require(&["docker-registry", "skopeo", "runuser", "newuidmap"]) {
        return None;
    }
    let Some(pw) = nix::unistd::User::from_name(name).ok().flatten() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and user {name} is missing (scripts/setup creates it)");
        }
        eprintln!("SKIPPED: no user {name}; run scripts/setup as root");
        return None;
    };
    if !super::require_root(&format!("the rootless tests switch to {name}")) {
        return None;
    }
    let subuid = std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:"))?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert_eq!(
        subuid == 0,
        name == NOSUBID,
        "/etc/subuid is not as scripts/setup makes it"
    );
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
    for d in ["", "home", "run", "store", "bin", "bin/skiff"] {
        nix::unistd::chown(&dir.path().join(d), Some(pw.uid), Some(pw.gid)).unwrap();
    }
    Some(User {
        name,
        dir,
        uid: pw.uid.as_raw(),
        subuid,
        skiff,
    })
}

impl User {
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    pub fn run_env(&self, env: &[&str], args: &[&str]) -> Output {
        self.command(env).args(args).output().unwrap()
    }
    /// `skiff` as this user, with its private environment plus `env`.
    pub fn command(&self, env: &[&str]) -> Command {
        self.command_of(&self.skiff, env)
    }
    /// As `command`, running the skiff binary at `binary`.
    pub fn command_of(&self, binary: &std::path::Path, env: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("runuser");
        c.args(["-u", self.name, "--", "env", "-i"])
            .args(env)
            .arg(format!("HOME={}", d.join("home").display()))
            .arg(format!("XDG_RUNTIME_DIR={}", d.join("run").display()))
            .arg(format!("SKIFF_ROOT={}", self.store().display()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg("CONTAINERS_REGISTRIES_CONF=/dev/null")
            .arg(binary);
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(&[], args)
    }
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "skiff {args:?} as {}: {}\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}
