//! Who runs skiff in a test: root with its own store, then the unprivileged test user with
//! its own copy of skiff and its own store.

use super::user::{USER, setup};
use super::{Env, require, require_root, run};
use std::path::PathBuf;
use std::process::{Command, Output};

/// Its commands, a directory it can read and write, and its store.
#[derive(Clone)]
pub struct Runner<'a> {
    pub skiff: &'a dyn Fn() -> Command,
    pub scratch: PathBuf,
    pub store: PathBuf,
    pub rootless: bool,
    /// The skiff binary it runs.
    pub binary: PathBuf,
}

impl Runner<'_> {
    pub fn run(&self, args: &[&str]) -> Output {
        run((self.skiff)().args(args))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "skiff {args:?}: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `skiff run -d --runtime RUNTIME --name NAME OPTS... IMAGE COMMAND...`, which must start.
    pub fn detached(
        &self,
        runtime: &str,
        name: &str,
        opts: &[&str],
        image: &str,
        command: &[&str],
    ) {
        let mut args = vec!["run", "-d", "--runtime", runtime, "--name", name];
        args.extend(opts);
        args.push(image);
        args.extend(command);
        assert_eq!(self.ok(&args), name);
    }

    /// Runs skiff, which must fail (with 125, skiff's own failure) and say `why`.
    pub fn refused(&self, args: &[&str], why: &str) -> String {
        let o = self.run(args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(125), "skiff {args:?}: {err}");
        assert!(
            err.contains(why),
            "skiff {args:?} does not say {why:?}: {err}"
        );
        err
    }

    /// Makes `path` (under `scratch`) the runner's own.
    pub fn give(&self, path: &std::path::Path) {
        if self.rootless {
            let user = nix::unistd::User::from_name(USER).unwrap().unwrap();
            nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
        }
    }
}

/// Root, then the test user; `tools` are required (and root).
pub fn for_each_runner(tools: &[&str], mut test: impl FnMut(&Runner)) {
    if !require(tools) || !require_root("root mode, and switching to the test user") {
        return;
    }
    let env = Env::new();
    let root_skiff = || env.skiff();
    test(&Runner {
        skiff: &root_skiff,
        scratch: env.path(""),
        store: env.store(),
        rootless: false,
        binary: PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
    });
    let Some(user) = setup(USER) else { return };
    let user_skiff = || user.command(&[]);
    test(&Runner {
        skiff: &user_skiff,
        scratch: user.dir.path().join("home"),
        store: user.store(),
        rootless: true,
        binary: user.skiff.clone(),
    });
}

/// The test user running a skiff binary that root owns, as a packaged one is: it needs no
/// sealed copy, so an external runtime's shim is a fork of `run`, which the user's own copy
/// in `for_each_runner` never shows.
pub fn rootless_with_a_root_owned_binary(tools: &[&str], test: impl FnOnce(&Runner)) {
    if !require(tools) || !require_root("switching to the test user") {
        return;
    }
    let Some(user) = setup(USER) else { return };
    let binary = user.dir.path().join("bin/skiff-of-root");
    std::fs::copy(env!("CARGO_BIN_EXE_skiff"), &binary).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(&binary, Some(0.into()), Some(0.into())).unwrap();
    let skiff = || user.command_of(&binary, &[]);
    test(&Runner {
        skiff: &skiff,
        scratch: user.dir.path().join("home"),
        store: user.store(),
        rootless: true,
        binary: binary.clone(),
    });
}

/// Removes a test's containers even when an assertion fails first.
pub struct Cleanup<'a>(pub &'a Runner<'a>, pub &'a [&'a str]);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let mut args = vec!["rm", "-f"];
        args.extend(self.1);
        let _ = self.0.run(&args);
    }
}
