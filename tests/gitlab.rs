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

/// The runner's environment for every call of one job, and the job payload it writes to
/// `JOB_RESPONSE_FILE` (executors/custom: `createJobResponseFile`, the job as GitLab sent
/// it): the image, the service (if any), variables with their flags.
fn runner_env(
    tmp: &Path,
    image: &str,
    services: &[(&str, &str)],
    helper_dir: &Path,
    job: u64,
) -> Vec<String> {
    static WRITTEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    // Each service answers "pong" on 5432, reached by its alias.
    let command = ["nc", "-ll", "-p", "5432", "-e", "echo", "pong"];
    let services_env: Vec<serde_json::Value> = services
        .iter()
        .map(|(name, alias)| {
            serde_json::json!({"name": name, "alias": alias, "entrypoint": null,
                               "command": command, "variables": {"HEALTHCHECK_TCP_PORT": "5432"}})
        })
        .collect();
    let var = |key: &str, value: &str, public: bool, masked: bool| {
        serde_json::json!({"key": key, "value": value, "public": public, "masked": masked,
                           "file": false, "raw": false})
    };
    let token = format!("job-token-{job}-secret");
    let payload = serde_json::json!({
        "id": job,
        "token": token,
        "job_info": {"name": "test", "stage": "test", "project_id": 7},
        "variables": [
            var("CI_JOB_ID", &job.to_string(), true, false),
            var("CI_PROJECT_ID", "7", true, false),
            var("CI_JOB_TOKEN", &token, false, true),
        ],
        "image": {"name": image, "entrypoint": null, "pull_policy": null},
        "services": services.iter().map(|(name, alias)| serde_json::json!({
            "name": name, "alias": alias, "command": command,
            "variables": [var("HEALTHCHECK_TCP_PORT", "5432", true, false)],
        })).collect::<Vec<_>>(),
        "credentials": [],
    });
    let n = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let response = tmp.join(format!("response-{job}-{n}.json"));
    std::fs::write(&response, payload.to_string()).unwrap();
    [
        ("TMPDIR", tmp.display().to_string()),
        ("BUILD_FAILURE_EXIT_CODE", "1".into()),
        ("SYSTEM_FAILURE_EXIT_CODE", "2".into()),
        (
            "BUILD_EXIT_CODE_FILE",
            tmp.join("build_exit_code").display().to_string(),
        ),
        ("JOB_RESPONSE_FILE", response.display().to_string()),
        ("CUSTOM_ENV_CI_JOB_ID", job.to_string()),
        ("CUSTOM_ENV_CI_JOB_TOKEN", token.clone()),
        ("CUSTOM_ENV_CI_PROJECT_ID", "7".into()),
        ("CUSTOM_ENV_CI_RUNNER_ID", "3".into()),
        ("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0".into()),
        ("CUSTOM_ENV_CI_RUNNER_VERSION", "17.9.0".into()),
        ("CUSTOM_ENV_CI_RUNNER_REVISION", "abcdef12".into()),
        ("CUSTOM_ENV_CI_BUILDS_DIR", "/builds".into()),
        ("CUSTOM_ENV_CI_JOB_IMAGE", image.into()),
        (
            "CUSTOM_ENV_CI_JOB_SERVICES",
            serde_json::Value::from(services_env).to_string(),
        ),
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
    /// A stage script as the runner writes it: `<tmp>/script<rand>/script` (bash has no extension), mode 0700.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        self.script_file(
            name,
            &format!("#!/usr/bin/env bash\n\nset -eo pipefail 2>/dev/null || set -e\n{body}\n"),
        )
    }
    /// A script file with exactly `text`, where and how the runner writes them.
    fn script_file(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.tmp.join(format!("script{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("script");
        std::fs::write(&p, text).unwrap();
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
    let env = runner_env(&who.tmp, image, &[(image, "db")], helper_dir, 4242);
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

    cancelled_and_killed_stages(who, image, helper_dir);

    // A failed pull: prepare is a system failure; cleanup still succeeds.
    let env = runner_env(&who.tmp, missing, &[(image, "db")], helper_dir, 4242);
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
    as_root_and_rootless(|who, helper_dir| the_protocol(who, &image, &missing, helper_dir));
}

/// Runs `test` as root, then as the unprivileged test user, each with its own store, a
/// temporary directory the runner would use, and the prebuilt helper tarballs it can read.
fn as_root_and_rootless(test: impl Fn(&Runner, &Path)) {
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
    let root = Runner {
        skiff: &root_skiff,
        tmp: env.path("tmp"),
        store: env.store(),
        owner: None,
    };
    test(&root, &helper_dir);
    let Some(user) = setup(USER) else { return };
    let pw = nix::unistd::User::from_name(USER).unwrap().unwrap();
    let tmp = user.dir.path().join("home/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    nix::unistd::chown(&tmp, Some(pw.uid), Some(pw.gid)).unwrap();
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
    let rootless = Runner {
        skiff: &user_skiff,
        tmp,
        store: user.store(),
        owner: Some((pw.uid, pw.gid)),
    };
    test(&rootless, &user_helper);
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

    // So does a malformed job payload, naming the file and the field; nothing is made.
    let good = env.write("good.toml", "image = \"alpine:3\"\n");
    let payload = env.write(
        "response.json",
        r#"{"id": 1, "token": "t", "image": {"name": "alpine:3"}, "services": [{"name": "redis:7", "entrypoint": "not-a-list"}]}"#,
    );
    let out = run(env
        .skiff()
        .args(["gitlab", "prepare", "--config"])
        .arg(&good)
        .env("JOB_RESPONSE_FILE", &payload)
        .env("SYSTEM_FAILURE_EXIT_CODE", "7")
        .env("CUSTOM_ENV_CI_JOB_ID", "1"));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains(&payload.display().to_string()) && err.contains("services[0].entrypoint"),
        "{err}"
    );
    assert!(!env.store().join("gitlab").exists(), "nothing made");
}

/// What the artifacts endpoint received: one request.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    query: String,
    token: Option<String>,
    /// The multipart form's file part: its headers and content.
    part_headers: String,
    file: Vec<u8>,
}

/// GitLab's job artifacts API as far as the helper uses it: `POST /api/v4/jobs/<id>/artifacts`
/// (multipart form, file part `file`) answered 201, and `GET` of the same path answering the
/// zip stored for that job, both with the JOB-TOKEN header. On 127.0.0.1.
struct ArtifactsApi {
    server: common::http::Server,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl ArtifactsApi {
    fn start() -> ArtifactsApi {
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Received>::new()));
        let log = received.clone();
        let server = common::http::Server::start(move |req, stream| {
            let id = req
                .path
                .strip_prefix("/api/v4/jobs/")
                .and_then(|r| r.strip_suffix("/artifacts"))
                .map(str::to_string);
            let (part_headers, file) = match req.header("content-type") {
                Some(ct) if req.method == "POST" => multipart_file(ct, &req.body),
                _ => (String::new(), vec![]),
            };
            let got = Received {
                method: req.method.clone(),
                path: req.path.clone(),
                query: req.query.clone(),
                token: req.header("job-token").map(str::to_string),
                part_headers,
                file,
            };
            let mut log = log.lock().unwrap();
            let stored = log
                .iter()
                .rev()
                .find(|r| r.method == "POST" && r.path == req.path)
                .map(|r| r.file.clone());
            log.push(got);
            drop(log);
            match (req.method.as_str(), id, stored, req.header("job-token")) {
                (_, None, _, _) | (_, _, _, None) => common::http::respond(stream, 404, &[], b"{}"),
                ("POST", Some(_), _, Some(_)) => common::http::respond(stream, 201, &[], b"{}"),
                ("GET", Some(_), Some(zip), Some(_)) => {
                    common::http::respond(stream, 200, &[], &zip)
                }
                _ => common::http::respond(stream, 404, &[], b"{}"),
            }
        });
        ArtifactsApi { server, received }
    }
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// The headers and content of a multipart/form-data body's first part.
fn multipart_file(content_type: &str, body: &[u8]) -> (String, Vec<u8>) {
    let Some(boundary) = content_type.split("boundary=").nth(1) else {
        return (String::new(), vec![]);
    };
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let open = format!("--{boundary}\r\n");
    let close = format!("\r\n--{boundary}--");
    let (Some(start), Some(end)) = (
        find(body, open.as_bytes(), 0),
        find(body, close.as_bytes(), 0),
    ) else {
        return (String::new(), vec![]);
    };
    let headers_start = start + open.len();
    let Some(headers_end) = find(body, b"\r\n\r\n", headers_start) else {
        return (String::new(), vec![]);
    };
    (
        String::from_utf8_lossy(&body[headers_start..headers_end]).to_string(),
        body[headers_end + 4..end].to_vec(),
    )
}

/// Whether `bytes` is a zip (a local file header first, an end of central directory record
/// last) naming `entry`.
fn is_zip_with(bytes: &[u8], entry: &str) -> bool {
    let eocd = bytes.len() >= 22 && bytes[bytes.len() - 22..].starts_with(b"PK\x05\x06");
    bytes.starts_with(b"PK\x03\x04")
        && eocd
        && bytes.windows(entry.len()).any(|w| w == entry.as_bytes())
}

/// The runner's environment for one job of project 7, with these services (image, alias).
fn cache_job_env(
    who: &Runner,
    image: &str,
    services: &[(&str, &str)],
    helper_dir: &Path,
    id: u64,
) -> Vec<String> {
    runner_env(&who.tmp, image, services, helper_dir, id)
}

/// One stage as the runner runs it; its output (stdout and stderr).
fn stage(who: &Runner, env: &[String], stage: &str, script: &str) -> (Output, String) {
    let file = who.script_file(stage, script);
    let o = who.call(env, &["gitlab", "run", file.to_str().unwrap(), stage]);
    let t = text(&o);
    assert!(
        !t.contains("Missing gitlab-runner"),
        "{stage}: gitlab-runner is on the helper's PATH: {t}"
    );
    (o, t)
}

fn caches_and_artifacts(who: &Runner, image: &str, helper_dir: &Path, api: &ArtifactsApi) {
    use common::runner_script::{self as rs, Artifact, Dependency, Job};
    // The host's loopback as slirp4netns shows it to the pod when asked to (the test's API
    // listens on 127.0.0.1 only; real jobs keep the default, no host loopback).
    let url = format!("http://10.0.2.2:{}", api.server.port);
    let prepare = [
        "gitlab",
        "prepare",
        "--tls-verify=false",
        "--network",
        "slirp4netns:allow_host_loopback=true",
    ];
    let job = |id: u64| Job {
        id,
        token: format!("token-{id}"),
        server_url: url.clone(),
        project_dir: "/builds/g/p".into(),
        cache_dir: "/cache/g/p".into(),
        variables: [
            ("CI_JOB_ID", id.to_string()),
            ("CI_JOB_TOKEN", format!("token-{id}")),
            ("CI_SERVER_URL", url.clone()),
            ("CI_PROJECT_DIR", "/builds/g/p".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    };
    let checkout = ["mkdir -p /builds/g/p", "echo source > /builds/g/p/README"];

    // Job 1: no cache yet; builds as uid 1000, saves its cache and uploads its artifacts.
    // Job 1, the whole sequence: an image, two services, a cache and an artifact.
    let services = [(image, "db"), (image, "cache-db")];
    let (one, env) = (
        job(5001),
        cache_job_env(who, image, &services, helper_dir, 5001),
    );
    let _cleanup = Cleanup(who, env.clone());
    let o = who.call(&env, &prepare);
    assert!(o.status.success(), "prepare: {}", text(&o));
    assert!(!text(&o).contains("WARNING"), "{}", text(&o));
    let (o, t) = stage(who, &env, "get_sources", &rs::commands(&one, &checkout));
    assert!(o.status.success(), "get_sources: {t}");
    let (o, t) = stage(who, &env, "restore_cache", &rs::restore_cache(&one, "deps"));
    assert!(
        o.status.success()
            && t.contains("Checking cache for deps...")
            && t.contains("Cache file does not exist")
            && t.contains("Failed to extract cache"),
        "restore_cache without a cache: {t}"
    );
    let build = [
        "cd /builds/g/p",
        "echo \"uid $(id -u)\"",
        "mkdir vendor out",
        "echo dep-1 > vendor/dep.txt",
        "echo report-1 > out/report.txt",
        "nc db 5432 </dev/null",
        "nc cache-db 5432 </dev/null",
    ];
    let (o, t) = stage(who, &env, "build_script", &rs::commands(&one, &build));
    assert!(
        o.status.success() && t.contains("uid 1000"),
        "a build image's own user writes the checkout the helper made: {t}"
    );
    assert_eq!(t.matches("pong").count(), 2, "both services by alias: {t}");
    let (o, t) = stage(
        who,
        &env,
        "archive_cache",
        &rs::archive_cache(&one, "deps", &["vendor"]),
    );
    assert!(
        o.status.success() && t.contains("Creating cache deps...") && t.contains("Created cache"),
        "archive_cache: {t}"
    );
    let archive = who.store.join("gitlab-cache/7/cache/g/p/deps/cache.zip");
    let zip = std::fs::read(&archive).unwrap_or_default();
    assert!(
        is_zip_with(&zip, "vendor/dep.txt"),
        "{}: a zip of the cache paths",
        archive.display()
    );
    let artifacts = Artifact {
        paths: vec!["out/".into()],
        expire_in: Some("1 week".into()),
    };
    let (o, t) = stage(
        who,
        &env,
        "upload_artifacts_on_success",
        &rs::upload_artifacts(&one, &artifacts),
    );
    assert!(
        o.status.success() && t.contains("Uploading artifacts..."),
        "{t}"
    );
    let posts: Vec<Received> = api
        .received()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v4/jobs/5001/artifacts")
        .collect();
    assert_eq!(posts.len(), 1, "{:?}", api.received());
    let post = &posts[0];
    assert_eq!(post.token.as_deref(), Some("token-5001"));
    assert_eq!(
        post.query,
        "artifact_format=zip&artifact_type=archive&expire_in=1+week"
    );
    assert!(
        post.part_headers
            .contains("form-data; name=\"file\"; filename=\"artifacts.zip\""),
        "{}",
        post.part_headers
    );
    assert!(is_zip_with(&post.file, "out/report.txt"), "{post:?}");
    let o = who.call(&env, &["gitlab", "cleanup"]);
    assert!(o.status.success(), "{}", text(&o));

    // Job 2 of the same project: restores job 1's cache, downloads its artifacts, fails and
    // uploads its failure artifacts.
    let (two, env) = (job(5002), cache_job_env(who, image, &[], helper_dir, 5002));
    let _cleanup = Cleanup(who, env.clone());
    let o = who.call(&env, &prepare);
    assert!(o.status.success(), "prepare: {}", text(&o));
    let (o, t) = stage(who, &env, "get_sources", &rs::commands(&two, &checkout));
    assert!(o.status.success(), "get_sources: {t}");
    let (o, t) = stage(who, &env, "restore_cache", &rs::restore_cache(&two, "deps"));
    assert!(
        o.status.success() && t.contains("Successfully extracted cache"),
        "restore_cache: {t}"
    );
    let dependency = Dependency {
        id: 5001,
        name: "build".into(),
        token: two.token.clone(),
    };
    let (o, t) = stage(
        who,
        &env,
        "download_artifacts",
        &rs::download_artifacts(&two, &[dependency]),
    );
    assert!(
        o.status.success() && t.contains("Downloading artifacts for build (5001)..."),
        "download_artifacts: {t}"
    );
    let get = api
        .received()
        .into_iter()
        .find(|r| r.method == "GET")
        .expect("the helper asked for job 5001's artifacts");
    assert_eq!(
        (get.path.as_str(), get.token.as_deref()),
        ("/api/v4/jobs/5001/artifacts", Some("token-5002"))
    );
    let build = [
        "cd /builds/g/p",
        "cat vendor/dep.txt out/report.txt",
        "echo failed-2 > failure.log",
        "exit 3",
    ];
    let (o, t) = stage(who, &env, "build_script", &rs::commands(&two, &build));
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("dep-1") && t.contains("report-1"),
        "the cache and the artifacts are in the checkout: {t}"
    );
    let on_failure = Artifact {
        paths: vec!["failure.log".into()],
        expire_in: None,
    };
    let (o, t) = stage(
        who,
        &env,
        "upload_artifacts_on_failure",
        &rs::upload_artifacts(&two, &on_failure),
    );
    assert!(o.status.success(), "upload_artifacts_on_failure: {t}");
    let post = api
        .received()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/api/v4/jobs/5002/artifacts")
        .expect("job 5002's artifacts");
    assert_eq!(post.token.as_deref(), Some("token-5002"));
    assert_eq!(post.query, "artifact_format=zip&artifact_type=archive");
    assert!(is_zip_with(&post.file, "failure.log"), "{post:?}");
    let o = who.call(&env, &["gitlab", "cleanup"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(who.leftovers(), Vec::<String>::new());
}

#[test]
fn caches_and_artifacts_go_through_the_helper() {
    if !require(TOOLS)
        || !require(&["slirp4netns"])
        || !require_root("root mode, and switching to the test user")
    {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    let image = format!("{}/test/busybox-user:1", reg.addr());
    push(&images().layout, "busybox-user", &image, &[]);
    as_root_and_rootless(|who, helper_dir| {
        caches_and_artifacts(who, &image, helper_dir, &ArtifactsApi::start())
    });
}

/// The runner's own test vectors for its quoting (helpers/shell_escape_test.go), which the
/// stage scripts above are written with.
#[test]
fn runner_quoting_as_the_runner_quotes() {
    let cases = [
        ("unquoted", "unquoted"),
        ("standard string", "$'standard string'"),
        ("+\t\n\r&", "$'+\\t\\n\\r&'"),
        ("", "''"),
        ("hello, 世界", "$'hello, \\xe4\\xb8\\x96\\xe7\\x95\\x8c'"),
        ("blackslash \\n", "$'blackslash \\\\n'"),
        ("\x0c", "$'\\f'"),
        (
            "export variable='test' && echo $variable",
            "$'export variable=\\'test\\' && echo $variable'",
        ),
        ("$HOME", "$'$HOME'"),
        ("'$HOME'", "$'\\'$HOME\\''"),
    ];
    for (input, want) in cases {
        assert_eq!(common::runner_script::escape(input), want, "{input:?}");
    }
}

/// `register-template`: the runner's `[runners.custom]` steps on this binary, the admin file
/// by its absolute path on each, checked first.
#[test]
fn register_template_points_the_runner_at_skiff() {
    let env = Env::new();
    let good = env.write("gitlab.toml", "image = \"alpine:3\"\n");
    let out = common::ok(env.skiff().current_dir(good.parent().unwrap()).args([
        "gitlab",
        "register-template",
        "--config",
        "gitlab.toml",
    ]));
    let template: toml::Table = toml::from_str(&out).expect("TOML");
    let runner = &template["runners"].as_array().unwrap()[0];
    assert_eq!(runner["executor"].as_str(), Some("custom"));
    let custom = runner["custom"].as_table().unwrap();
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_skiff")).unwrap();
    let absolute = std::fs::canonicalize(&good).unwrap();
    for step in ["config", "prepare", "run", "cleanup"] {
        let exec = std::path::PathBuf::from(custom[&format!("{step}_exec")].as_str().unwrap());
        assert_eq!(std::fs::canonicalize(exec).unwrap(), binary, "{step}");
        let args: Vec<&str> = custom[&format!("{step}_args")]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args,
            ["gitlab", step, "--config", absolute.to_str().unwrap()],
            "{step}"
        );
    }
    let bad = env.write("bad.toml", "privileged = true\n");
    let out = run(env
        .skiff()
        .args(["gitlab", "register-template", "--config"])
        .arg(&bad));
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("privileged = true"),
        "{}",
        text(&out)
    );
}

/// The docker executor's registry credentials: a token-auth registry that only the job's own
/// credentials (the payload's `credentials`, GitLab's registry with the job token) open, for
/// the job image and a service image; without them, the default pull policy (`always`)
/// refuses the images already in the store.
#[test]
fn job_token_pulls_from_the_projects_registry() {
    use common::issuer::{Issuer, IssuerState};
    if !require(TOOLS) || !require_root("root mode") {
        return;
    }
    let token = "glcbt-64_job-token-of-4343";
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::start(
        dir.path(),
        IssuerState {
            users: [("gitlab-ci-token".to_string(), token.to_string())].into(),
            ..Default::default()
        },
    );
    let reg = Registry::start(Auth::Token {
        realm: issuer.realm(),
        cert: issuer.cert.clone(),
    });
    let creds = format!("gitlab-ci-token:{token}");
    let (image, service) = (
        format!("{}/group/project/ci:1", reg.addr()),
        format!("{}/group/project/db:1", reg.addr()),
    );
    for name in [&image, &service] {
        push(&images().layout, "busybox", name, &["--dest-creds", &creds]);
    }
    let env = Env::new();
    let helper_dir = env.path("helper-images");
    common::images::helper_tarballs(&helper_dir);
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let if_not_present = env.write("gitlab.toml", "pull_policy = \"if-not-present\"\n");
    let prepare = |job: u64, with_credentials: bool, config: Option<&Path>, policies: &[&str]| {
        let mut vars = runner_env(&tmp, &image, &[(&service, "db")], &helper_dir, job);
        if let Some(c) = config {
            vars.push(format!("SKIFF_GITLAB_CONFIG={}", c.display()));
        }
        let response = vars
            .iter()
            .find_map(|v| v.strip_prefix("JOB_RESPONSE_FILE="))
            .unwrap();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&std::fs::read(response).unwrap()).unwrap();
        if !policies.is_empty() {
            payload["image"]["pull_policy"] = serde_json::json!(policies);
        }
        if with_credentials {
            payload["credentials"] = serde_json::json!([{
                "type": "registry", "url": reg.addr(),
                "username": "gitlab-ci-token", "password": token
            }]);
        }
        std::fs::write(response, payload.to_string()).unwrap();
        let mut c = env.skiff();
        for v in &vars {
            let (k, val) = v.split_once('=').unwrap();
            c.env(k, val);
        }
        let out = run(c.args(["gitlab", "prepare", "--tls-verify=false"]));
        let mut c = env.skiff();
        for v in &vars {
            let (k, val) = v.split_once('=').unwrap();
            c.env(k, val);
        }
        assert!(run(c.args(["gitlab", "cleanup"])).status.success());
        out
    };
    let out = prepare(4343, true, None, &[]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("Authenticating with credentials from job payload (GitLab Registry)"),
        "the source is named: {log}"
    );
    assert!(!log.contains(token), "never the secret: {log}");
    // Both images are in the store now; without the job's credentials `always` still asks
    // the registry, which refuses.
    let out = prepare(4344, false, None, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&image), "{}", text(&out));
    // Beyond the runner: under if-not-present, a stored image that needed credentials is
    // reused only by a job whose credentials read it (one project cannot borrow another's).
    let out = prepare(4345, false, Some(&if_not_present), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("requires credentials") && text(&out).contains(&image),
        "{}",
        text(&out)
    );
    let out = prepare(4346, true, Some(&if_not_present), &[]);
    assert!(out.status.success(), "{}", text(&out));
    // The job's fallback chain, logged in the runner's words.
    // (Allowed by the admin: by default only the admin's own policies are.)
    let both = env.write(
        "both.toml",
        "allowed_pull_policies = [\"always\", \"if-not-present\"]\n",
    );
    let chain = prepare(4347, false, Some(&both), &["always", "if-not-present"]);
    let log = text(&chain);
    assert_eq!(chain.status.code(), Some(2), "{log}");
    assert!(
        log.contains("Using effective pull policy of [always if-not-present] for container")
            && log.contains("WARNING: Failed to pull image with policy \"always\":")
            && log.contains("Attempt #2: Trying \"if-not-present\" pull policy"),
        "{log}"
    );
    assert!(
        !text(&out).contains("Copying blob")
            && text(&out).contains(
                "Using locally found image version due to \"if-not-present\" pull policy"
            ),
        "reused from the store: {}",
        text(&out)
    );
}

/// Processes of this host whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> usize {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted))
        .count()
}

/// The runner ending a stage: on a timeout or a cancellation it sends SIGTERM to the
/// driver's process group, then SIGKILL after its grace period, and always calls cleanup.
/// Either way the stage ends, cleanup leaves nothing, and a job with the same ids starts
/// clean.
fn cancelled_and_killed_stages(who: &Runner, image: &str, helper_dir: &Path) {
    use nix::sys::signal::{Signal, killpg};
    use std::os::unix::process::CommandExt;
    for (n, signal) in [(1, Signal::SIGTERM), (2, Signal::SIGKILL)] {
        let env = runner_env(&who.tmp, image, &[], helper_dir, 4300 + n);
        let _cleanup = Cleanup(who, env.clone());
        let o = who.call(&env, &["gitlab", "prepare", "--tls-verify=false"]);
        assert!(o.status.success(), "prepare: {}", text(&o));
        // The runner's shape: the script in a subshell, SIGTERM ending it with 1.
        let s = who.script_file(
            &format!("-cancel-{n}"),
            "#!/usr/bin/env bash\ntrap 'exit 1' TERM\n(trap 'exit 1' TERM; eval 'echo started; sleep 3011') < /dev/null\nexit 0\n",
        );
        let mut c = (who.skiff)(&env);
        c.current_dir(&who.tmp)
            .args(["gitlab", "run", s.to_str().unwrap(), "build_script"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        let mut child = c.spawn().unwrap();
        let started = std::time::Instant::now();
        while processes_running(&["sleep", "3011"]) == 0 {
            assert!(
                started.elapsed().as_secs() < 30,
                "{signal}: the stage never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        killpg(group, signal).unwrap();
        let ended = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                ended.elapsed().as_secs() < 15,
                "{signal}: the stage did not end"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(!status.success(), "{signal}: {status:?}");
        let o = who.call(&env, &["gitlab", "cleanup"]);
        assert!(o.status.success(), "{signal}: cleanup: {}", text(&o));
        assert_eq!(who.leftovers(), Vec::<String>::new(), "{signal}");
        assert_eq!(
            processes_running(&["sleep", "3011"]),
            0,
            "{signal}: nothing runs on"
        );
        // The same ids again: a clean start.
        let o = who.call(&env, &["gitlab", "prepare", "--tls-verify=false"]);
        assert!(o.status.success(), "{signal}: again: {}", text(&o));
        let s = who.script(&format!("-again-{n}"), "echo again");
        let o = who.call(
            &env,
            &["gitlab", "run", s.to_str().unwrap(), "build_script"],
        );
        assert!(
            o.status.success() && text(&o).contains("again"),
            "{}",
            text(&o)
        );
        let o = who.call(&env, &["gitlab", "cleanup"]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(who.leftovers(), Vec::<String>::new(), "{signal}");
    }
}
