//! `skiff pipeline` on a real git checkout: the job list with rules decided against the
//! commit, its branch or tag and its changes; the merged YAML; and `skiff job` refusing a
//! job the rules leave out, before anything is pulled.

mod common;

use common::{Env, require, run};
use std::path::Path;

const PIPELINE: &str = r#"
workflow:
  name: "Pipeline for $CI_COMMIT_REF_NAME"
  rules:
    - if: $CI_COMMIT_TAG
      variables: {DEPLOY_TO: production}
    - if: $CI_COMMIT_BRANCH
variables: {DEPLOY_TO: staging}
stages: [build, test, deploy]
.base: {image: "$CI_TEMPLATE_REGISTRY_HOST/alpine:3"}
build:
  extends: .base
  stage: build
  script: make
  artifacts: {paths: [out]}
test:
  extends: .base
  parallel:
    matrix:
      - OS: [linux, mac]
  needs: [build]
  script: [!reference [build, script], make test]
docs:
  rules:
    - changes: [docs/**/*]
  script: mkdocs
deploy:
  stage: deploy
  rules:
    - if: $CI_COMMIT_TAG
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
      when: manual
  script: echo "to $DEPLOY_TO"
"#;

fn git(dir: &Path, args: &[&str]) {
    let o = run(std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@example.com", "-c", "user.name=T"])
        .args(args));
    assert!(o.status.success(), "git {args:?}: {:?}", o);
}

/// `skiff pipeline ARGS` in `dir`, as JSON.
fn listing(env: &Env, dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = run(env
        .skiff()
        .current_dir(dir)
        .args(["--format", "json", "pipeline"])
        .args(args));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `name: when (reason)` for every job.
fn jobs(l: &serde_json::Value) -> Vec<String> {
    l["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["jobs"].as_array().unwrap())
        .map(|j| {
            format!(
                "{}: {}",
                j["name"].as_str().unwrap(),
                j["when"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn pipelines_listed_as_gitlab_would_make_them() {
    if !require(&["git"]) {
        return;
    }
    let env = Env::new();
    let dir = env.path("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".gitlab-ci.yml"), PIPELINE).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(
        &dir,
        &[
            "remote",
            "add",
            "origin",
            "https://gitlab.example.com/group/app.git",
        ],
    );
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "first"]);

    // On the default branch, nothing changed against it.
    let l = listing(&env, &dir, &[]);
    assert_eq!(l["name"], "Pipeline for main");
    assert_eq!(
        jobs(&l),
        [
            "build: on_success",
            "test: [linux]: on_success",
            "test: [mac]: on_success",
            "docs: never",
            "deploy: manual",
        ]
    );
    assert_eq!(
        l["stages"][0]["jobs"][0]["warnings"],
        serde_json::json!(["job build: ignored (not supported): artifacts"])
    );
    let test = &l["stages"][1]["jobs"][0];
    assert_eq!(test["needs"], serde_json::json!(["build"]));
    assert_eq!(test["image"], "registry.gitlab.com/alpine:3");
    assert_eq!(l["stages"][1]["jobs"][2]["reason"], "no rule matched");

    // A branch with a docs change: docs in, deploy out.
    git(&dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(dir.join("docs/index.md"), "# docs\n").unwrap();
    let l = listing(&env, &dir, &[]);
    assert!(
        jobs(&l).contains(&"docs: on_success".to_string()),
        "untracked files count"
    );
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "docs"]);
    let l = listing(&env, &dir, &[]);
    let listed = jobs(&l);
    assert!(
        listed.contains(&"docs: on_success".to_string()),
        "{listed:?}"
    );
    assert!(listed.contains(&"deploy: never".to_string()), "{listed:?}");

    // A tag (detached): deploy runs, with workflow's variables.
    git(&dir, &["checkout", "-q", "main"]);
    git(&dir, &["tag", "v1.0"]);
    git(&dir, &["checkout", "-q", "v1.0"]);
    let l = listing(&env, &dir, &[]);
    assert!(jobs(&l).contains(&"deploy: on_success".to_string()), "{l}");
    let preview = run(env
        .skiff()
        .current_dir(&dir)
        .args(["pipeline", "--preview"]));
    let merged: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&preview.stdout).unwrap();
    assert_eq!(merged["test: [mac]"]["variables"]["OS"], "mac");
    assert_eq!(
        merged["test: [mac]"]["script"],
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>("[make, make test]").unwrap()
    );
    assert!(merged["build"].get("extends").is_none());

    // Not a branch or a tag: workflow makes no pipeline.
    let sha = String::from_utf8(
        run(std::process::Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(["rev-parse", "HEAD"]))
        .stdout,
    )
    .unwrap();
    git(&dir, &["tag", "-d", "v1.0"]);
    git(&dir, &["checkout", "-q", sha.trim()]);
    let l = listing(&env, &dir, &[]);
    assert_eq!(l["created"], false, "{l}");

    // skiff job refuses what the rules leave out, naming the rule, before any pull.
    git(&dir, &["checkout", "-q", "main"]);
    let o = run(env
        .skiff()
        .current_dir(&dir)
        .args(["job", "--network", "private", "docs"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains(
            "job \"docs\" is not in this pipeline (no rule matched); --force runs it anyway"
        ),
        "{err}"
    );
    // Any invalid job stops every job, before anything is pulled, as in GitLab.
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        "good: {script: x}\nbad: {stage: lint, script: x}\n",
    )
    .unwrap();
    let o = run(env.skiff().current_dir(&dir).args(["job", "good"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("job bad: chosen stage \"lint\" does not exist"),
        "{err}"
    );
    // A bad rule names the file and job.
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        "bad:\n  rules: [{if: '$A =~ /(/'}]\n  script: x\n",
    )
    .unwrap();
    let o = run(env.skiff().current_dir(&dir).args(["pipeline"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(".gitlab-ci.yml: job bad: rules[0]: if: $A =~ /(/"),
        "{err}"
    );
}

#[test]
fn includes_from_the_project_and_from_other_checkouts() {
    if !require(&["git"]) {
        return;
    }
    let env = Env::new();
    let dir = env.path("app");
    let tools = env.path("tools");
    for d in [&dir, &tools] {
        std::fs::create_dir_all(d.join("ci/jobs")).unwrap();
        git(d, &["init", "-q", "-b", "main"]);
    }
    // The other project: the file as it was at v1 is the one included.
    std::fs::write(tools.join("ci/lint.yml"), "lint: {script: lint-v1}\n").unwrap();
    git(&tools, &["add", "-A"]);
    git(&tools, &["commit", "-qm", "v1"]);
    git(&tools, &["tag", "v1"]);
    std::fs::write(tools.join("ci/lint.yml"), "lint: {script: lint-v2}\n").unwrap();
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        "include:\n  - local: ci/base.yml\n  - 'ci/jobs/*.yml'\n  - {project: group/tools, ref: v1, file: /ci/lint.yml}\nvariables: {WHO: main}\nunit: {script: [echo unit]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ci/base.yml"),
        "variables: {WHO: base, FROM_BASE: yes}\n.tpl: {image: alpine:3}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ci/jobs/build.yml"),
        "build: {extends: .tpl, stage: build, script: make}\n",
    )
    .unwrap();
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "first"]);
    let tools_map = format!("group/tools={}", tools.display());
    let l = listing(&env, &dir, &["--include-project", &tools_map]);
    assert_eq!(
        jobs(&l),
        // Included jobs first, in include order, then the main file's.
        ["build: on_success", "lint: on_success", "unit: on_success"]
    );
    assert_eq!(l["stages"][0]["jobs"][0]["image"], "alpine:3");
    let preview = run(env.skiff().current_dir(&dir).args([
        "pipeline",
        "--preview",
        "--include-project",
        &tools_map,
    ]));
    let merged: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&preview.stdout).unwrap();
    assert_eq!(merged["lint"]["script"], "lint-v1", "the file at ref v1");
    assert_eq!(merged["variables"]["WHO"], "main", "the main file wins");
    assert_eq!(merged["variables"]["FROM_BASE"], "yes");
    // Components: the project's templates at a version, ~latest the highest tag, inputs
    // checked and interpolated.
    std::fs::create_dir_all(tools.join("templates")).unwrap();
    for (version, image) in [("1.2.0", "scanner:1.2"), ("1.10.0", "scanner:1.10")] {
        std::fs::write(
            tools.join("templates/scan.yml"),
            format!(
                "spec:\n  inputs:\n    stage: {{default: test}}\n    target: {{options: [fs, image]}}\n---\n\"scan-$[[ inputs.target ]]\":\n  image: {image}\n  stage: $[[ inputs.stage ]]\n  script: scan\n"
            ),
        )
        .unwrap();
        git(&tools, &["add", "-A"]);
        git(&tools, &["commit", "-qm", version]);
        git(&tools, &["tag", version]);
    }
    std::fs::write(
        dir.join("components.yml"),
        "include:\n  - component: gitlab.example.com/group/tools/scan@1.2.0\n    inputs: {target: fs}\n  - component: gitlab.example.com/group/tools/scan@~latest\n    inputs: {target: image, stage: build}\n",
    )
    .unwrap();
    let l = listing(
        &env,
        &dir,
        &["-f", "components.yml", "--include-project", &tools_map],
    );
    let rows: Vec<(String, String, String)> = l["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["jobs"].as_array().unwrap().iter().map(move |j| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    j["name"].as_str().unwrap().to_string(),
                    j["image"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("build".into(), "scan-image".into(), "scanner:1.10".into()),
            ("test".into(), "scan-fs".into(), "scanner:1.2".into()),
        ]
    );
    std::fs::write(
        dir.join("components.yml"),
        "include:\n  - component: gitlab.example.com/group/tools/scan@1.2.0\n    inputs: {target: vm}\n",
    )
    .unwrap();
    let o = run(env.skiff().current_dir(&dir).args([
        "pipeline",
        "-f",
        "components.yml",
        "--include-project",
        &tools_map,
    ]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("components.yml: include[0]: component: group/tools/scan@1.2.0: `target` input: `vm` cannot be used"),
        "{err}"
    );
    // Missing: the including file and the entry are named; nothing is guessed.
    let o = run(env.skiff().current_dir(&dir).args(["pipeline"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(".gitlab-ci.yml: include[2]: project: group/tools, file: ci/lint.yml, ref: v1: no checkout of group/tools"),
        "{err}"
    );
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        "include: ci/nope.yml\nj: {script: x}\n",
    )
    .unwrap();
    let o = run(env.skiff().current_dir(&dir).args(["pipeline"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("include[0]: local: ci/nope.yml"), "{err}");
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        "include: ../tools/ci/lint.yml\n",
    )
    .unwrap();
    let o = run(env.skiff().current_dir(&dir).args(["pipeline"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("outside"), "{err}");
}

#[test]
fn remote_and_template_includes_fetched_once_then_offline() {
    use common::http::{Server, respond};
    let env = Env::new();
    let dir = env.path("project");
    std::fs::create_dir_all(&dir).unwrap();
    // GitLab's templates API and a remote file; no GitLab instance runs here.
    let server = Server::start(|req, stream| match req.path.as_str() {
        "/ci/remote.yml" => respond(stream, 200, &[], b"remote-job: {script: remote}\n"),
        "/api/v4/templates/gitlab_ci_ymls/Jobs%2FLint" => respond(
            stream,
            200,
            &[("Content-Type", "application/json".into())],
            br#"{"name":"Jobs/Lint","content":"lint-template: {stage: test, script: lint}\n"}"#,
        ),
        _ => respond(stream, 404, &[], b"not found"),
    });
    let base = format!("http://{}", server.addr());
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        format!(
            "include:\n  - remote: {base}/ci/remote.yml\n  - template: Jobs/Lint.gitlab-ci.yml\nmain-job: {{script: x}}\n"
        ),
    )
    .unwrap();
    let pipeline = |extra: &[&str]| {
        run(env
            .skiff()
            .current_dir(&dir)
            .args(["--format", "json", "pipeline"])
            .args(extra))
    };
    // Offline first: nothing is fetched without an instance.
    let o = pipeline(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "include[0]: remote: {base}/ci/remote.yml: remote: {base}/ci/remote.yml is not in the cache"
        )) && err.contains("give --gitlab-url to fetch it"),
        "{err}"
    );
    let o = pipeline(&["--gitlab-url", &base]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let l: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        jobs(&l),
        [
            "remote-job: on_success",
            "lint-template: on_success",
            "main-job: on_success"
        ]
    );
    // The server is gone: the store's copies serve.
    drop(server);
    let o = pipeline(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A file the instance does not have: its URL and status.
    let server = Server::start(|_, stream| respond(stream, 404, &[], b"no"));
    let base = format!("http://{}", server.addr());
    std::fs::write(
        dir.join(".gitlab-ci.yml"),
        format!("include: {base}/ci/none.yml\nj: {{script: x}}\n"),
    )
    .unwrap();
    let o = pipeline(&["--gitlab-url", &base]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{base}/ci/none.yml: HTTP 404")),
        "{err}"
    );
}
