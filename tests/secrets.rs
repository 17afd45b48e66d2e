//! Secrets never leak: every credential path runs with distinctive secrets, at the most
//! verbose log level, in text and `--format json`, succeeding and failing; the secrets must
//! appear in no output line or error, in no argument list of any process skiff starts, in
//! no log file, and in no world-readable file.

mod common;

use base64::Engine as _;
use common::images::images;
use common::issuer::{Issuer, IssuerState};
use common::registry::{Auth, Registry, push};
use common::{Env, require};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Distinct per run, so that nothing else on the machine can hold them.
fn secret(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{kind}-{:x}-{}", nanos, std::process::id())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// What the secrets look like wherever they could show: raw, and as Basic credentials.
struct Secrets {
    user: String,
    raw: Vec<String>,
}

impl Secrets {
    fn forms(&self) -> Vec<String> {
        let mut out = self.raw.clone();
        for s in &self.raw {
            out.push(b64(&format!("{}:{s}", self.user)));
        }
        out
    }
    fn found_in(&self, text: &str) -> Option<String> {
        self.forms().into_iter().find(|f| text.contains(f.as_str()))
    }
}

/// Runs a command while sampling every process's argument list, except the command's own
/// (where a user may put a secret by choice: `--creds`, `--masked-var`), also as seen in its
/// children between fork and exec.
fn run_watched(cmd: &mut Command, secrets: &Secrets, stdin: Option<&str>) -> (Output, Vec<String>) {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let own = child.id();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let forms = secrets.forms();
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut leaks = Vec::new();
            let me = std::process::id();
            // A child between fork and exec still shows our command's arguments. Read until
            // there are some: spawn returns once exec is past its point of no return, before
            // the kernel has set the new arguments up, and until then cmdline reads empty.
            let mut own_cmdline = Vec::new();
            for _ in 0..500 {
                own_cmdline = std::fs::read(format!("/proc/{own}/cmdline")).unwrap_or_default();
                if !own_cmdline.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            while !done.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    if pid == own || pid == me {
                        continue;
                    }
                    let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                        continue;
                    };
                    if cmdline == own_cmdline {
                        continue;
                    }
                    let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    if forms.iter().any(|f| text.contains(f.as_str())) {
                        leaks.push(format!("pid {pid}: {text}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            leaks
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    (out, sampler.join().unwrap())
}

/// Runs skiff at trace level; asserts the outcome and that no secret shows in its output or
/// in another process's arguments. Returns stdout and stderr.
fn check(
    what: &str,
    cmd: &mut Command,
    secrets: &Secrets,
    stdin: Option<&str>,
    expect_ok: bool,
    tally: &mut usize,
) -> String {
    cmd.env("SKIFF_LOG_LEVEL", "trace");
    let (out, argv_leaks) = run_watched(cmd, secrets, stdin);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.success(), expect_ok, "{what}:\n{text}");
    if let Some(f) = secrets.found_in(&text) {
        panic!("{what}: the secret {f:?} is in the output:\n{text}");
    }
    assert!(
        argv_leaks.is_empty(),
        "{what}: a secret in an argument list: {argv_leaks:?}"
    );
    *tally += 1;
    text
}

/// Every file under `dir` holding a secret must be out of other users' reach (its mode or a
/// directory above it); log files must not hold one at all.
fn check_files(dir: &Path, secrets: &Secrets, since: SystemTime, files: &mut usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            check_files(&path, secrets, since, files);
            continue;
        }
        if !meta.is_file() || meta.len() > 4 << 20 || meta.modified().is_ok_and(|m| m < since) {
            continue;
        }
        *files += 1;
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Some(f) = secrets.found_in(&String::from_utf8_lossy(&bytes)) else {
            continue;
        };
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            !(name == "log" || name.ends_with(".log")),
            "{} is a log and holds {f:?}",
            path.display()
        );
        assert!(
            !readable_by_others(&path),
            "{} holds {f:?} and others can read it",
            path.display()
        );
    }
}

fn readable_by_others(path: &Path) -> bool {
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    mode(path) & 0o004 != 0 && path.ancestors().skip(1).all(|d| mode(d) & 0o001 != 0)
}

fn private_file(env: &Env, rel: &str, body: &str) -> PathBuf {
    let p = env.write(rel, body);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn auths(host: &str, user: &str, password: &str) -> String {
    serde_json::json!({"auths": {host: {"auth": b64(&format!("{user}:{password}"))}}}).to_string()
}

#[test]
fn no_secret_in_output_arguments_logs_or_readable_files() {
    if !require(&["docker-registry", "skopeo", "htpasswd", "openssl"]) {
        return;
    }
    let since = SystemTime::now() - Duration::from_secs(1);
    let password = secret("Pw");
    let masked = secret("Masked");
    let refresh = secret("Refresh");
    let wrong = secret("Wrong");
    let secrets = Secrets {
        user: "ci".into(),
        raw: vec![
            password.clone(),
            masked.clone(),
            refresh.clone(),
            wrong.clone(),
        ],
    };
    let reg = Registry::start(Auth::Htpasswd {
        user: "ci".into(),
        password: password.clone(),
    });
    let host = reg.addr();
    let name = format!("{host}/test/busybox:1");
    push(
        &images().layout,
        "busybox",
        &name,
        &["--dest-creds", &format!("ci:{password}")],
    );
    let env = Env::new();
    let mut runs = 0;
    let pull = |env: &Env| {
        let mut c = env.skiff();
        c.args(["--format", "json", "pull", "--tls-verify=false", &name]);
        c
    };
    let reset = |env: &Env| {
        let _ = env.skiff().args(["rmi", &name]).output();
        let _ = env.skiff().args(["prune"]).output();
    };

    // The sources, each alone: DOCKER_AUTH_CONFIG, docker's config.json, podman's auth.json,
    // REGISTRY_AUTH_FILE, a credential helper; each right, then with a wrong password.
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-secretstest");
    let helper_secret = env.path("helper-secret");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"ci\",\"Secret\":\"%s\"}}' \"$server\" \"$(cat {})\"\n",
            helper_secret.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    for (source, pw, expect_ok) in [
        ("DOCKER_AUTH_CONFIG", password.as_str(), true),
        ("DOCKER_AUTH_CONFIG", wrong.as_str(), false),
        ("config.json", password.as_str(), true),
        ("config.json", wrong.as_str(), false),
        ("auth.json", password.as_str(), true),
        ("auth.json", wrong.as_str(), false),
        ("REGISTRY_AUTH_FILE", password.as_str(), true),
        ("credential helper", password.as_str(), true),
        ("credential helper", wrong.as_str(), false),
    ] {
        let case = Env::new();
        let mut c = pull(&case);
        c.env("PATH", &path);
        match source {
            "DOCKER_AUTH_CONFIG" => {
                c.env("DOCKER_AUTH_CONFIG", auths(&host, "ci", pw));
            }
            "config.json" => {
                private_file(&case, "home/.docker/config.json", &auths(&host, "ci", pw));
            }
            "auth.json" => {
                private_file(&case, "run/containers/auth.json", &auths(&host, "ci", pw));
            }
            "REGISTRY_AUTH_FILE" => {
                let f = private_file(&case, "elsewhere/auth.json", &auths(&host, "ci", pw));
                c.env("REGISTRY_AUTH_FILE", f);
            }
            _ => {
                std::fs::write(&helper_secret, pw).unwrap();
                std::fs::set_permissions(&helper_secret, std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                private_file(
                    &case,
                    "home/.docker/config.json",
                    &serde_json::json!({"credHelpers": {host.clone(): "secretstest"}}).to_string(),
                );
            }
        }
        check(
            &format!("pull with {source}"),
            &mut c,
            &secrets,
            None,
            expect_ok,
            &mut runs,
        );
        check_files(case.dir.path(), &secrets, since, &mut 0);
    }

    // login (verified against the registry, right and wrong), then pull and push with the
    // stored credentials, inspect and images in JSON, logout.
    for (what, pw, expect_ok) in [
        ("login with a wrong password", &wrong, false),
        ("login", &password, true),
    ] {
        check(
            what,
            env.skiff().args([
                "login",
                "--tls-verify=false",
                "-u",
                "ci",
                "--password-stdin",
                &host,
            ]),
            &secrets,
            Some(pw),
            expect_ok,
            &mut runs,
        );
    }
    reset(&env);
    check(
        "pull after login",
        &mut pull(&env),
        &secrets,
        None,
        true,
        &mut runs,
    );
    let pushed = format!("{host}/test/pushed:1");
    check(
        "push after login",
        env.skiff().args([
            "--format",
            "json",
            "push",
            "--tls-verify=false",
            &name,
            &pushed,
        ]),
        &secrets,
        None,
        true,
        &mut runs,
    );
    for args in [
        vec!["--format", "json", "inspect", name.as_str()],
        vec!["--format", "json", "images"],
        vec!["--format", "json", "info"],
    ] {
        check(
            &args.join(" "),
            env.skiff().args(&args),
            &secrets,
            None,
            true,
            &mut runs,
        );
    }

    // A job whose image needs DOCKER_AUTH_CONFIG from its variables, with a masked variable
    // its script prints: the log shows [MASKED].
    let project = env.path("project");
    std::fs::create_dir_all(&project).unwrap();
    private_file(
        &env,
        "project/.gitlab-ci.yml",
        &format!(
            "variables:\n  DOCKER_AUTH_CONFIG: '{}'\ntest:\n  image: {name}\n  script:\n    - echo \"token is $TOKEN\"\n    - echo \"$DOCKER_AUTH_CONFIG\" | wc -c\n",
            auths(&host, "ci", &password)
        ),
    );
    let job_env = Env::new();
    let out = check(
        "job with DOCKER_AUTH_CONFIG and a masked variable",
        job_env.skiff().args([
            "job",
            "--network",
            "private",
            "--tls-verify=false",
            "-f",
            project.join(".gitlab-ci.yml").to_str().unwrap(),
            "--project-dir",
            project.to_str().unwrap(),
            "--masked-var",
            &format!("TOKEN={masked}"),
            "test",
        ]),
        &secrets,
        None,
        true,
        &mut runs,
    );
    assert!(out.contains("token is [MASKED]"), "{out}");

    // The custom-executor driver: DOCKER_AUTH_CONFIG as the runner passes it (CUSTOM_ENV_),
    // with the helper image from a prebuilt tarball; prepare, a stage, cleanup.
    let driver = Env::new();
    let tmp = driver.path("tmp");
    let helpers = driver.path("helpers");
    std::fs::create_dir_all(&tmp).unwrap();
    common::images::helper_tarballs(&helpers);
    let script = tmp.join("script1/script.");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(&script, "#!/usr/bin/env sh\necho stage ran\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let runner_vars = [
        ("TMPDIR", tmp.display().to_string()),
        ("BUILD_FAILURE_EXIT_CODE", "1".into()),
        ("SYSTEM_FAILURE_EXIT_CODE", "2".into()),
        (
            "BUILD_EXIT_CODE_FILE",
            tmp.join("code").display().to_string(),
        ),
        ("CUSTOM_ENV_CI_JOB_ID", "77".into()),
        ("CUSTOM_ENV_CI_PROJECT_ID", "7".into()),
        ("CUSTOM_ENV_CI_RUNNER_ID", "3".into()),
        ("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0".into()),
        ("CUSTOM_ENV_CI_RUNNER_VERSION", "17.9.0".into()),
        ("CUSTOM_ENV_CI_BUILDS_DIR", "/builds".into()),
        ("CUSTOM_ENV_CI_JOB_IMAGE", name.clone()),
        (
            "CUSTOM_ENV_DOCKER_AUTH_CONFIG",
            auths(&host, "ci", &password),
        ),
        ("SKIFF_HELPER_DIRS", helpers.display().to_string()),
    ];
    for (stage, args) in [
        ("prepare", vec!["gitlab", "prepare", "--tls-verify=false"]),
        (
            "run",
            vec!["gitlab", "run", script.to_str().unwrap(), "build_script"],
        ),
        ("cleanup", vec!["gitlab", "cleanup"]),
    ] {
        let mut c = driver.skiff();
        c.envs(runner_vars.iter().map(|(k, v)| (k, v))).args(&args);
        let out = check(
            &format!("gitlab {stage} with CUSTOM_ENV_DOCKER_AUTH_CONFIG"),
            &mut c,
            &secrets,
            None,
            true,
            &mut runs,
        );
        if stage == "run" {
            assert!(out.contains("stage ran"), "{out}");
        }
    }

    // Token auth: a refresh (identity) token in auth.json, and the password on a token
    // registry's login.
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::start(
        dir.path(),
        IssuerState {
            users: [("ci".to_string(), password.clone())].into(),
            refresh_tokens: [(refresh.clone(), "ci".to_string())].into(),
            ..Default::default()
        },
    );
    let token_reg = Registry::start(Auth::Token {
        realm: issuer.realm(),
        cert: issuer.cert.clone(),
    });
    let token_name = format!("{}/test/busybox:1", token_reg.addr());
    push(
        &images().layout,
        "busybox",
        &token_name,
        &["--dest-creds", &format!("ci:{password}")],
    );
    let token_env = Env::new();
    private_file(
        &token_env,
        "run/containers/auth.json",
        &serde_json::json!({"auths": {token_reg.addr(): {"identitytoken": refresh}}}).to_string(),
    );
    check(
        "pull with an identity token",
        token_env.skiff().args([
            "--format",
            "json",
            "pull",
            "--tls-verify=false",
            &token_name,
        ]),
        &secrets,
        None,
        true,
        &mut runs,
    );
    check(
        "login to a token registry",
        token_env.skiff().args([
            "login",
            "--tls-verify=false",
            "-u",
            "ci",
            "--password-stdin",
            &token_reg.addr(),
        ]),
        &secrets,
        Some(&password),
        true,
        &mut runs,
    );
    check(
        "logout",
        env.skiff().args(["logout", &host]),
        &secrets,
        None,
        true,
        &mut runs,
    );

    let mut files = 0;
    for dir in [
        env.dir.path(),
        job_env.dir.path(),
        driver.dir.path(),
        token_env.dir.path(),
    ] {
        check_files(dir, &secrets, since, &mut files);
    }
    check_files(&std::env::temp_dir(), &secrets, since, &mut files);
    println!(
        "reliability: secrets in no output, argument list, log or readable file (DOCKER_AUTH_CONFIG, config.json, auth.json, REGISTRY_AUTH_FILE, helper, login, identity token; push, job, custom-executor driver) | {runs} runs, {files} files scanned | pass"
    );
}
