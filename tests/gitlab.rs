//! `skiff gitlab config|prepare|run|cleanup`, called exactly as GitLab Runner's custom
//! executor calls them: the same arguments, `CUSTOM_ENV_*` environment, stage names, script
//! files shaped like the runner's, and exit codes (build failure 1 with the script's code in
//! BUILD_EXIT_CODE_FILE, system failure 2 for a failed pull). The helper image comes from a
//! prebuilt tarball, as on an air-gapped runner. Rootless (as skiff-test) and as root.

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use common::user::{USER, setup};
use common::{Env, require, require_root, run};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

const TOOLS: &[&str] = &["docker-registry", "skopeo", "zstd"];

struct Runner<'a> {
    skiff: &'a dyn Fn(&[String]) -> std::process::Command,
    tmp: PathBuf,
    store: PathBuf,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
}

/// The runner's environment for every call of one job.
fn runner_env(tmp: &Path, image: &str, service: &str, helper_dir: &Path) -> Vec<String> {
    let services = serde_json::json!([{
        "name": service, "alias": "db", "entrypoint": null,
        "command": ["nc", "-ll", "-p", "5432", "-e", "echo", "pong"],
        "variables": {"HEALTHCHECK_TCP_PORT": "5432"}
    }]);
    [
        ("TMPDIR", tmp.display().to_string()),
        ("BUILD_FAILURE_EXIT_CODE", "1".into()),
        ("SYSTEM_FAILURE_EXIT_CODE", "2".into()),
        (
            "BUILD_EXIT_CODE_FILE",
            tmp.join("build_exit_code").display().to_string(),
        ),
        (
            "JOB_RESPONSE_FILE",
            tmp.join("response.json").display().to_string(),
        ),
        ("CUSTOM_ENV_CI_JOB_ID", "4242".into()),
        ("CUSTOM_ENV_CI_PROJECT_ID", "7".into()),
        ("CUSTOM_ENV_CI_RUNNER_ID", "3".into()),
        ("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0".into()),
        ("CUSTOM_ENV_CI_RUNNER_VERSION", "17.9.0".into()),
        ("CUSTOM_ENV_CI_RUNNER_REVISION", "abcdef12".into()),
        ("CUSTOM_ENV_CI_BUILDS_DIR", "/builds".into()),
        ("CUSTOM_ENV_CI_JOB_IMAGE", image.into()),
        ("CUSTOM_ENV_CI_JOB_SERVICES", services.to_string()),
        ("SKIFF_HELPER_DIRS", helper_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect()
}

impl Runner<'_> {
    fn call(&self, env: &[String], args: &[&str]) -> Output {
        let mut c = (self.skiff)(env);
        c.current_dir(&self.tmp).args(args);
        run(&mut c)
    }
    /// A stage script as the runner writes it: `<tmp>/script<rand>/script.`, mode 0700.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let dir = self.tmp.join(format!("script{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("script.");
        std::fs::write(
            &p,
            format!("#!/usr/bin/env bash\n\nset -eo pipefail 2>/dev/null || set -e\n{body}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        for q in [&dir, &p] {
            if let Some((u, g)) = self.owner {
                nix::unistd::chown(q, Some(u), Some(g)).unwrap();
            }
        }
        p
    }
    fn leftovers(&self) -> Vec<String> {
        ["containers", "pods", "gitlab"]
            .iter()
            .flat_map(|d| {
                std::fs::read_dir(self.store.join(d))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(move |e| format!("{d}/{}", e.file_name().to_string_lossy()))
            })
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `gitlab cleanup` even when an assertion fails first, so no pod outlives the test.
struct Cleanup<'a>(&'a Runner<'a>, Vec<String>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.call(&self.1, &["gitlab", "cleanup"]);
    }
}

fn the_protocol(who: &Runner, image: &str, missing: &str, helper_dir: &Path) {
    let env = runner_env(&who.tmp, image, image, helper_dir);
    let _cleanup = Cleanup(who, env.clone());
    let o = who.call(&env, &["gitlab", "config"]);
    assert!(o.status.success(), "{}", text(&o));
    let config: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(config["builds_dir"], "/builds");
    assert_eq!(config["cache_dir"], "/cache");
    assert_eq!(config["builds_dir_is_shared"], false);
    assert_eq!(config["driver"]["name"], "skiff");

    let o = who.call(&env, &["gitlab", "prepare", "--tls-verify=false"]);
    assert!(o.status.success(), "prepare: {}", text(&o));
    // The helper stage runs through the helper image's `gitlab-runner-build` (umask 0000).
    let s = who.script(
        "1",
        "mkdir -p /builds/g/p && echo from-sources > /builds/g/p/file && umask",
    );
    let o = who.call(&env, &["gitlab", "run", s.to_str().unwrap(), "get_sources"]);
    assert!(o.status.success(), "get_sources: {}", text(&o));
    assert!(
        text(&o).contains("0000"),
        "the helper's umask: {}",
        text(&o)
    );
    let ps = text(&who.call(&env, &["ps", "-a"]));
    assert!(
        ps.contains("gitlab-runner-helper:x86_64-v17.9.0"),
        "the helper came from the prebuilt tarball, under the runner's tag: {ps}"
    );
    let s = who.script("2", "cat /builds/g/p/file\nnc db 5432 </dev/null\nexit 4");
    let o = who.call(
        &env,
        &["gitlab", "run", s.to_str().unwrap(), "build_script"],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failing script is a build failure: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("from-sources") && text(&o).contains("pong"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(who.tmp.join("build_exit_code"))
            .unwrap()
            .trim(),
        "4",
        "the script's own code for the runner"
    );
    let s = who.script("3", "echo after");
    let o = who.call(
        &env,
        &["gitlab", "run", s.to_str().unwrap(), "after_script"],
    );
    assert!(
        o.status.success() && text(&o).contains("after"),
        "{}",
        text(&o)
    );
    let o = who.call(&env, &["gitlab", "cleanup"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(who.leftovers(), Vec::<String>::new());
    // The slot's next job finds the checkout (GIT_STRATEGY=fetch fetches into it); another
    // concurrency slot of the project starts from an empty /builds.
    for (slot, want) in [("0", "from-sources"), ("1", "empty")] {
        let next: Vec<String> = env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some(("CUSTOM_ENV_CI_JOB_ID", _)) => "CUSTOM_ENV_CI_JOB_ID=4243".into(),
                Some(("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", _)) => {
                    format!("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID={slot}")
                }
                _ => kv.clone(),
            })
            .collect();
        let _cleanup = Cleanup(who, next.clone());
        let o = who.call(&next, &["gitlab", "prepare", "--tls-verify=false"]);
        assert!(o.status.success(), "prepare: {}", text(&o));
        let s = who.script("5", "cat /builds/g/p/file 2>/dev/null || echo empty");
        let o = who.call(
            &next,
            &["gitlab", "run", s.to_str().unwrap(), "get_sources"],
        );
        assert!(text(&o).contains(want), "slot {slot}: {}", text(&o));
        let o = who.call(&next, &["gitlab", "cleanup"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    assert_eq!(who.leftovers(), Vec::<String>::new());
    // A stage after cleanup: the container is gone, a system failure.
    let s = who.script("4", "true");
    let o = who.call(
        &env,
        &["gitlab", "run", s.to_str().unwrap(), "build_script"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // A failed pull: prepare is a system failure; cleanup still succeeds.
    let env = runner_env(&who.tmp, missing, image, helper_dir);
    let o = who.call(&env, &["gitlab", "prepare", "--tls-verify=false"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("pulling"),
        "names what failed: {}",
        text(&o)
    );
    let o = who.call(&env, &["gitlab", "cleanup"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(who.leftovers(), Vec::<String>::new());
}

#[test]
fn custom_executor_calls_as_the_runner_makes_them() {
    if !require(TOOLS) || !require_root("root mode, and switching to the test user") {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    let image = format!("{}/test/busybox:1", reg.addr());
    push(&images().layout, "busybox", &image, &[]);
    let missing = format!("{}/test/nothing-here:1", reg.addr());
    let env = Env::new();
    let helper_dir = env.path("helper-images");
    common::images::helper_tarballs(&helper_dir);
    std::fs::create_dir_all(env.path("tmp")).unwrap();
    let root_skiff = |vars: &[String]| {
        let mut c = env.skiff();
        for v in vars {
            let (k, val) = v.split_once('=').unwrap();
            c.env(k, val);
        }
        c
    };
    the_protocol(
        &Runner {
            skiff: &root_skiff,
            tmp: env.path("tmp"),
            store: env.store(),
            owner: None,
        },
        &image,
        &missing,
        &helper_dir,
    );
    let Some(user) = setup(USER) else { return };
    let pw = nix::unistd::User::from_name(USER).unwrap().unwrap();
    let tmp = user.dir.path().join("home/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    nix::unistd::chown(&tmp, Some(pw.uid), Some(pw.gid)).unwrap();
    // The helper tarballs must be readable by the user.
    let user_helper = user.dir.path().join("home/helper-images");
    common::images::helper_tarballs(&user_helper);
    for p in [
        &user_helper,
        &user_helper.join("prebuilt-alpine-x86_64.docker.tar.zst"),
    ] {
        nix::unistd::chown(p, Some(pw.uid), Some(pw.gid)).unwrap();
    }
    let user_skiff = |vars: &[String]| {
        let refs: Vec<&str> = vars.iter().map(String::as_str).collect();
        user.command(&refs)
    };
    the_protocol(
        &Runner {
            skiff: &user_skiff,
            tmp,
            store: user.store(),
            owner: Some((pw.uid, pw.gid)),
        },
        &image,
        &missing,
        &user_helper,
    );
}

/// `skiff gitlab config --check`: the admin file, needing only the binary.
#[test]
fn config_check_reports_the_admin_file() {
    let env = Env::new();
    let check = |file: Option<&Path>| {
        let mut c = env.skiff();
        c.env_remove("SKIFF_GITLAB_CONFIG")
            .args(["gitlab", "config", "--check"]);
        if let Some(f) = file {
            c.arg("--config").arg(f);
        }
        c
    };
    let good = env.write(
        "pasted.toml",
        "[runners.docker]\n  image = \"alpine:3\"\n  privileged = false\n  memory = \"512m\"\n\
         [[runners.docker.services]]\n  name = \"postgres:16\"\n  alias = \"db\"\n",
    );
    let out = common::ok(&mut check(Some(&good)));
    assert!(out.contains(&format!("{}: valid", good.display())), "{out}");
    assert!(out.contains("  image = alpine:3"), "{out}");
    assert!(out.contains("  services = postgres:16 (alias db)"), "{out}");
    assert!(out.contains("  memory = 536870912 bytes"), "{out}");
    assert!(
        out.contains("  runners.docker.privileged ignored: it holds its default"),
        "{out}"
    );
    let json = common::json(check(Some(&good)).args(["--format", "json"]));
    assert_eq!(json["memory"], 536870912);
    assert_eq!(json["services"][0]["name"], "postgres:16");

    let bad = env.write(
        "bad.toml",
        "image = \"alpine:3\"\nprivileged = true\ndevice = [\"/dev/kvm\"]\n",
    );
    let out = run(&mut check(Some(&bad)));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = common::stderr(&out);
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(
        err.contains(
            "line 2: privileged = true: not supported: skiff has no privileged containers"
        ),
        "{err}"
    );
    assert!(err.contains("line 3: device: unknown key"), "{err}");

    // A file named but absent is an error; none at the default place means the defaults.
    let out = run(&mut check(Some(&env.path("absent.toml"))));
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("absent.toml"));
    let default = if nix::unistd::geteuid().is_root() {
        PathBuf::from("/etc/skiff/gitlab.toml")
    } else {
        env.path("config/skiff/gitlab.toml")
    };
    if !default.exists() {
        let out = common::ok(&mut check(None));
        assert_eq!(
            out.trim(),
            format!("{}: no such file; the defaults apply", default.display())
        );
    }
    let by_env = common::ok(check(None).env("SKIFF_GITLAB_CONFIG", &good));
    assert!(by_env.contains("image = alpine:3"), "{by_env}");

    // Without --check, the runner still gets its JSON.
    let mut plain = env.skiff();
    plain.args(["gitlab", "config", "--config"]).arg(&bad);
    assert_eq!(common::json(&mut plain)["driver"]["name"], "skiff");

    // prepare refuses the file before anything runs, as a system failure.
    let out = run(env
        .skiff()
        .args(["gitlab", "prepare", "--config"])
        .arg(&bad)
        .env("SYSTEM_FAILURE_EXIT_CODE", "7")
        .env("CUSTOM_ENV_CI_JOB_ID", "1"));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(common::stderr(&out).contains("privileged = true"));
}
