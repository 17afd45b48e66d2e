//! Credentials against real registries: htpasswd Basic auth through every source and their
//! precedence, credential helpers, login/logout, and token auth with a real JWT issuer.

mod common;

use base64::Engine as _;
use common::images::images;
use common::issuer::{Issuer, IssuerState};
use common::registry::{Auth, Registry, push};
use common::{Env, fails, fsck_ok, json, ok, require, run, stderr};
use std::os::unix::fs::PermissionsExt;

const PASSWORD: &str = "Pw-7f3a9c1e-do-not-print";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn auths(key: &str, user: &str, pass: &str) -> String {
    serde_json::json!({"auths": {key: {"auth": b64(&format!("{user}:{pass}"))}}}).to_string()
}

fn basic_registry() -> Registry {
    let reg = Registry::start(Auth::Htpasswd {
        user: "ci".into(),
        password: PASSWORD.into(),
    });
    push(
        &images().layout,
        "busybox",
        &format!("{}/test/busybox:1", reg.addr()),
        &["--dest-creds", &format!("ci:{PASSWORD}")],
    );
    reg
}

/// Pulls, asserting success or failure, and that the password never appears in any output.
fn pull(env: &Env, name: &str, extra: &[&str], expect_ok: bool) -> String {
    let out = run(env
        .skiff()
        .args(["pull", "--tls-verify=false"])
        .args(extra)
        .arg(name));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(
        out.status.success(),
        expect_ok,
        "pull {name} {extra:?}:\n{text}"
    );
    assert!(
        !text.contains(PASSWORD),
        "the secret leaked into output:\n{text}"
    );
    text
}

#[test]
fn basic_auth_every_source_in_order() {
    if !require(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let reg = basic_registry();
    let host = reg.addr();
    let name = format!("{host}/test/busybox:1");

    let e = pull(&Env::new(), &name, &[], false);
    assert!(
        e.contains("authentication failed") && e.contains("no credentials") && e.contains("401"),
        "{e}"
    );

    let env = Env::new();
    let out = pull(&env, &name, &["--creds", &format!("ci:{PASSWORD}")], true);
    assert!(
        out.contains("Authenticating with credentials from --creds"),
        "{out}"
    );
    fsck_ok(&env);

    // Each file location alone works and is named in the log.
    for rel in [
        "run/containers/auth.json",
        "config/containers/auth.json",
        "home/.docker/config.json",
        "custom/auth.json",
    ] {
        let env = Env::new();
        let path = env.write(rel, &auths(&host, "ci", PASSWORD));
        let extra: Vec<&str> = if rel.starts_with("custom") {
            vec!["--authfile", path.to_str().unwrap()]
        } else {
            vec![]
        };
        let out = pull(&env, &name, &extra, true);
        assert!(
            out.contains(&format!(
                "Authenticating with credentials from {}",
                path.display()
            )),
            "{rel}: {out}"
        );
    }
    let env = Env::new();
    let path = env.write(
        "home/.dockercfg",
        &serde_json::json!({host.clone(): {"auth": b64(&format!("ci:{PASSWORD}"))}}).to_string(),
    );
    assert!(pull(&env, &name, &[], true).contains(&path.display().to_string()));

    // Precedence: DOCKER_AUTH_CONFIG > --authfile > runtime auth.json > config auth.json > docker config.
    let env = Env::new();
    env.write("run/containers/auth.json", &auths(&host, "ci", "wrong"));
    env.write("home/.docker/config.json", &auths(&host, "ci", PASSWORD));
    let e = pull(&env, &name, &[], false);
    assert!(
        e.contains("run/containers/auth.json"),
        "the first source that matches is used: {e}"
    );
    std::fs::remove_file(env.path("run/containers/auth.json")).unwrap();
    let out = pull(&env, &name, &[], true);
    assert!(out.contains("home/.docker/config.json"), "{out}");
    // --authfile comes before the default files.
    let custom = env.write("custom.json", &auths(&host, "ci", "wrong"));
    let e = pull(
        &env,
        &name,
        &["--authfile", custom.to_str().unwrap()],
        false,
    );
    assert!(e.contains("custom.json"), "{e}");
}

#[test]
fn docker_auth_config_and_key_forms() {
    if !require(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let reg = basic_registry();
    let host = reg.addr();
    let name = format!("{host}/test/busybox:1");
    let env = Env::new();
    env.write("run/containers/auth.json", &auths(&host, "ci", "wrong"));
    let out = run(env
        .skiff()
        .env("DOCKER_AUTH_CONFIG", auths(&host, "ci", PASSWORD))
        .args(["pull", "--tls-verify=false", &name]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Authenticating with credentials from $DOCKER_AUTH_CONFIG"));
    let out = run(env
        .skiff()
        .env("DOCKER_AUTH_CONFIG", auths(&host, "ci", "wrong"))
        .args(["pull", "--tls-verify=false", &name]));
    assert!(
        !out.status.success() && stderr(&out).contains("$DOCKER_AUTH_CONFIG"),
        "{}",
        stderr(&out)
    );
    let out = run(env.skiff().env("DOCKER_AUTH_CONFIG", "{not json").args([
        "pull",
        "--tls-verify=false",
        &name,
    ]));
    assert!(
        !out.status.success()
            && stderr(&out).contains("$DOCKER_AUTH_CONFIG")
            && stderr(&out).contains("JSON"),
        "{}",
        stderr(&out)
    );

    // Keys as docker writes them, and the most specific key winning.
    for body in [
        auths(&format!("http://{host}/v2/"), "ci", PASSWORD),
        auths(&format!("https://{host}"), "ci", PASSWORD),
        serde_json::json!({"auths": {
            host.clone(): {"auth": b64("ci:wrong")},
            format!("{host}/test"): {"auth": b64(&format!("ci:{PASSWORD}"))},
            format!("{host}/other"): {"auth": b64("ci:wrong")},
        }})
        .to_string(),
    ] {
        let env = Env::new();
        env.write("home/.docker/config.json", &body);
        pull(&env, &name, &[], true);
    }
}

#[test]
fn credential_helpers_are_used_and_never_break_pulls() {
    if !require(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let reg = basic_registry();
    let host = reg.addr();
    let name = format!("{host}/test/busybox:1");
    let env = Env::new();
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = |n: &str, body: &str| {
        let p = bin.join(format!("docker-credential-{n}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    helper(
        "skifftest",
        &format!(
            r#"read server; [ "$1" = get ] || exit 2; echo "$server" >> "{}/helper-calls"; if [ "$server" = "{host}" ]; then printf '{{"ServerURL":"%s","Username":"ci","Secret":"{PASSWORD}"}}' "$server"; else echo "credentials not found in native keychain"; exit 1; fi"#,
            env.path("").display()
        ),
    );
    helper("broken", "echo 'keychain is locked' ; exit 1");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    env.write(
        "home/.docker/config.json",
        &serde_json::json!({"credHelpers": {host.clone(): "skifftest"}}).to_string(),
    );
    let out = run(env
        .skiff()
        .env("PATH", &path)
        .args(["pull", "--tls-verify=false", &name]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("credential helper docker-credential-skifftest"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(env.path("helper-calls"))
            .unwrap()
            .trim(),
        host,
        "the helper is asked about the registry host"
    );

    // A failing credsStore and a missing helper: warn, then the file's auths.
    for cfg in [
        serde_json::json!({"credsStore": "broken", "auths": {host.clone(): {"auth": b64(&format!("ci:{PASSWORD}"))}}}),
        serde_json::json!({"credHelpers": {host.clone(): "not-installed"}, "auths": {host.clone(): {"auth": b64(&format!("ci:{PASSWORD}"))}}}),
    ] {
        let env2 = Env::new();
        env2.write("home/.docker/config.json", &cfg.to_string());
        let out = run(env2
            .skiff()
            .env("PATH", &path)
            .args(["pull", "--tls-verify=false", &name]));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("WARN") && stderr(&out).contains("docker-credential-"),
            "{}",
            stderr(&out)
        );
    }
    // A credsStore without an entry for an anonymous registry does not break the pull.
    let public = Registry::start(Auth::Anonymous);
    push(
        &images().layout,
        "busybox",
        &format!("{}/test/busybox:1", public.addr()),
        &[],
    );
    let env3 = Env::new();
    env3.write("home/.docker/config.json", r#"{"credsStore": "broken"}"#);
    let out = run(env3.skiff().env("PATH", &path).args([
        "pull",
        "--tls-verify=false",
        &format!("{}/test/busybox:1", public.addr()),
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    // A helper name that walks out of $PATH is refused.
    let env4 = Env::new();
    env4.write(
        "home/.docker/config.json",
        &serde_json::json!({"credHelpers": {host.clone(): "../../bin/sh"}}).to_string(),
    );
    let e = fails(env4.skiff().args(["pull", "--tls-verify=false", &name]));
    assert!(e.contains("path traversal"), "{e}");
}

#[test]
fn login_verifies_and_writes_private_file() {
    if !require(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let reg = basic_registry();
    let host = reg.addr();
    let env = Env::new();
    let file = env.path("run/containers/auth.json");
    let e = fails(env.skiff().args([
        "login",
        "--tls-verify=false",
        "-u",
        "ci",
        "-p",
        "wrong",
        &host,
    ]));
    assert!(e.contains("401"), "{e}");
    assert!(!file.exists(), "a failed login writes nothing");
    let mut child = env
        .skiff()
        .args([
            "login",
            "--tls-verify=false",
            "-u",
            "ci",
            "--password-stdin",
            &host,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    pull(&env, &format!("{host}/test/busybox:1"), &[], true);
    ok(env.skiff().args(["logout", &host]));
    pull(&env, &format!("{host}/test/busybox:1"), &[], false);
}

fn token_setup(state: IssuerState) -> (tempfile::TempDir, Issuer, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::start(dir.path(), state);
    let reg = Registry::start(Auth::Token {
        realm: issuer.realm(),
        cert: issuer.cert.clone(),
    });
    for repo in ["test/busybox:1", "public/busybox:1", "test/multi:1"] {
        let src = if repo.contains("multi") {
            "multi"
        } else {
            "busybox"
        };
        push(
            &images().layout,
            src,
            &format!("{}/{repo}", reg.addr()),
            &["--dest-creds", &format!("alice:{PASSWORD}")],
        );
    }
    // Count only what skiff asks for, not the pushes above.
    {
        let mut st = issuer.state.lock().unwrap();
        st.gets = 0;
        st.posts = 0;
        st.authorizations_seen.clear();
    }
    (dir, issuer, reg)
}

fn issuer_state(post_disabled: bool) -> IssuerState {
    IssuerState {
        users: [("alice".to_string(), PASSWORD.to_string())].into(),
        refresh_tokens: [("refresh-a1b2c3".to_string(), "alice".to_string())].into(),
        anonymous_pull_prefix: Some("public/".into()),
        post_disabled,
        ..Default::default()
    }
}

#[test]
fn token_auth_anonymous_password_and_cache() {
    if !require(&["docker-registry", "skopeo", "openssl"]) {
        return;
    }
    let (_dir, issuer, reg) = token_setup(issuer_state(false));
    let host = reg.addr();
    let env = Env::new();
    pull(&env, &format!("{host}/public/busybox:1"), &[], true);
    let e = pull(&env, &format!("{host}/test/busybox:1"), &[], false);
    assert!(
        e.contains("authentication failed") && e.contains("401") && e.contains("UNAUTHORIZED"),
        "{e}"
    );
    let e = pull(
        &env,
        &format!("{host}/test/busybox:1"),
        &["--creds", "alice:wrong"],
        false,
    );
    assert!(
        e.contains("token request to") && e.contains("/token") && e.contains("401"),
        "{e}"
    );

    let gets_before = issuer.state.lock().unwrap().gets;
    let r = json(env.skiff().args([
        "--format",
        "json",
        "pull",
        "--tls-verify=false",
        "--creds",
        &format!("alice:{PASSWORD}"),
        &format!("{host}/test/multi:1"),
    ]));
    assert_eq!(r["layers"].as_array().unwrap().len(), 3);
    let st = issuer.state.lock().unwrap();
    assert_eq!(
        st.gets - gets_before,
        1,
        "one token serves the manifest, config and all layers"
    );
    assert!(
        st.authorizations_seen.iter().all(|a| !a.contains(PASSWORD)),
        "Basic is base64, never the raw secret"
    );
    drop(st);
    fsck_ok(&env);
}

#[test]
fn identity_tokens_post_then_get_fallback() {
    if !require(&["docker-registry", "skopeo", "openssl"]) {
        return;
    }
    for post_disabled in [false, true] {
        let (_dir, issuer, reg) = token_setup(issuer_state(post_disabled));
        let host = reg.addr();
        let env = Env::new();
        env.write(
            "run/containers/auth.json",
            &serde_json::json!({"auths": {host.clone(): {"auth": b64("alice:"), "identitytoken": "refresh-a1b2c3"}}}).to_string(),
        );
        let out = pull(&env, &format!("{host}/test/busybox:1"), &[], true);
        assert!(!out.contains("refresh-a1b2c3"), "{out}");
        let st = issuer.state.lock().unwrap();
        assert_eq!(
            st.posts, 1,
            "the OAuth2 refresh_token POST comes first (post_disabled={post_disabled})"
        );
        assert_eq!(
            st.gets,
            usize::from(post_disabled),
            "GET only as the fallback"
        );
    }
}
