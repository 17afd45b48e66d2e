//! The job's logic on recording fakes: what runs, in which order, what the log shows, and
//! that the teardown always comes last.

use super::fake::{FakeImages, FakeRuntime, RecordingLog, Script};
use super::log::Stream;
use super::{JobOutcome, JobPlan, driver};
use crate::gitlab::executor::ExecutorEnv;
use crate::gitlab::payload::JobPayload;
use crate::gitlab::pipeline::Pipeline;
use std::time::Duration;

const PIPELINE: &str = r#"
variables:
  GREETING: hello
test:
  image: alpine:3
  services:
    - name: redis:7
      alias: cache
  script:
    - echo $GREETING
  after_script:
    - echo after
"#;

struct Case {
    name: &'static str,
    runtime: FakeRuntime,
    images: FakeImages,
    timeout: Option<Duration>,
    /// Lines the log must hold, in this order.
    log_has: &'static [&'static str],
    log_lacks: &'static [&'static str],
    /// Calls that must have been made, in this order (others may come between).
    calls: &'static [&'static str],
    absent_calls: &'static [&'static str],
    outcome: JobOutcome,
}

fn script(output: &str, exit_code: i32, hang: bool) -> Script {
    Script {
        output: output.into(),
        exit_code,
        hang,
    }
}

fn runtime(scripts: &[(&str, Script)]) -> FakeRuntime {
    FakeRuntime {
        scripts: scripts
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ports_up: true,
        ..Default::default()
    }
}

fn plan(dir: &std::path::Path, timeout: Option<Duration>) -> JobPlan {
    let pipeline = Pipeline::parse(PIPELINE, "test.yml").unwrap();
    let mut job = pipeline
        .job("test", &[("TOKEN".into(), "s3cr3t-token-value".into())])
        .unwrap();
    if timeout.is_some() {
        job.timeout = timeout;
    }
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    JobPlan {
        id: "00000000abcd".into(),
        job,
        masked: vec!["s3cr3t-token-value".into()],
        project_dir: project,
        dir: super::recovery::create(dir, "00000000abcd").unwrap(),
        network: "private".into(),
        wait_for_services_timeout: 30,
        owner: Some(std::process::id()),
        admin: Default::default(),
    }
}

fn assert_in_order(haystack: &[String], wanted: &[&str], what: &str) {
    let mut at = 0;
    for w in wanted {
        match haystack[at..].iter().position(|h| h.contains(w)) {
            Some(i) => at += i + 1,
            None => panic!("{what}: {w:?} missing or out of order in {haystack:#?}"),
        }
    }
}

#[tokio::test]
async fn job_runs_table() {
    let cases = vec![
        Case {
            name: "success: services, build container, script, after_script, teardown",
            runtime: runtime(&[
                ("echo $GREETING", script("hello\n", 0, false)),
                ("echo after", script("", 0, false)),
            ]),
            images: FakeImages::default(),
            timeout: None,
            log_has: &[
                "Pulling image alpine:3 ...",
                "Pulling image redis:7 ...",
                "Starting service redis:7 ...",
                "Waiting for services to be up and running (timeout 30 seconds)...",
                "hello",
                "Job succeeded",
            ],
            log_lacks: &["WARNING: Service"],
            calls: &[
                "create_pod job-00000000abcd private",
                "start job-00000000abcd-svc-0",
                "wait job-00000000abcd [6379]",
                "create job-00000000abcd-build",
                "run job-00000000abcd-build echo $GREETING",
                "run job-00000000abcd-build echo after",
                "remove_pod job-00000000abcd",
            ],
            absent_calls: &[],
            outcome: JobOutcome::Succeeded,
        },
        Case {
            name: "a failing script: after_script still runs, the script's code is the job's",
            runtime: runtime(&[
                ("echo $GREETING", script("", 3, false)),
                // after_script learns how the job ended, as from the runner.
                (
                    r"export CI_JOB_STATUS='\''failed'\''",
                    script("after runs anyway\n", 7, false),
                ),
            ]),
            images: FakeImages::default(),
            timeout: None,
            log_has: &["after runs anyway", "ERROR: Job failed: exit code 3"],
            log_lacks: &["Job succeeded"],
            calls: &[r"export CI_JOB_STATUS='\''failed'\''", "remove_pod"],
            absent_calls: &[],
            outcome: JobOutcome::Failed { exit_code: 3 },
        },
        Case {
            name: "a script past the job's timeout is killed; after_script runs; code 1",
            runtime: runtime(&[
                ("echo $GREETING", script("started\n", 0, true)),
                (
                    r"export CI_JOB_STATUS='\''timedout'\''",
                    script("", 0, false),
                ),
            ]),
            images: FakeImages::default(),
            timeout: Some(Duration::from_millis(200)),
            log_has: &[
                "started",
                "execution took longer than 0 seconds",
                "ERROR: Job failed: exit code 1",
            ],
            log_lacks: &[],
            calls: &[
                "run job-00000000abcd-build echo $GREETING",
                "kill job-00000000abcd-build",
                r"run job-00000000abcd-build export CI_JOB_STATUS='\''timedout'\''",
                "remove_pod",
            ],
            absent_calls: &[],
            outcome: JobOutcome::Failed { exit_code: 1 },
        },
        Case {
            name: "secrets are masked in lines and in the script's output",
            runtime: runtime(&[(
                "echo $GREETING",
                script("token is s3cr3t-token-value\n", 0, false),
            )]),
            images: FakeImages::default(),
            timeout: None,
            log_has: &["token is [MASKED]"],
            log_lacks: &["s3cr3t-token-value"],
            calls: &["remove_pod"],
            absent_calls: &[],
            outcome: JobOutcome::Succeeded,
        },
        Case {
            name: "a build image whose entrypoint cannot start: a system failure naming it",
            runtime: FakeRuntime {
                not_starting: vec!["job-00000000abcd-build".into()],
                ..runtime(&[])
            },
            images: FakeImages::default(),
            timeout: None,
            log_has: &[
                "ERROR: Job failed (system failure): job-00000000abcd-build could not start: /entry.sh: no such file or directory",
            ],
            log_lacks: &["exit code"],
            calls: &["run job-00000000abcd-build", "remove_pod"],
            absent_calls: &[],
            outcome: JobOutcome::SystemFailure {
                reason:
                    "job-00000000abcd-build could not start: /entry.sh: no such file or directory"
                        .into(),
            },
        },
        Case {
            name: "a service that does not start is a system failure; nothing else starts",
            runtime: FakeRuntime {
                failing: vec!["job-00000000abcd-svc-0".into()],
                ..runtime(&[])
            },
            images: FakeImages::default(),
            timeout: None,
            log_has: &[
                "ERROR: Job failed (system failure): starting service redis:7: no such image layer",
            ],
            log_lacks: &[],
            calls: &[
                "start job-00000000abcd-svc-0",
                "remove_pod job-00000000abcd",
            ],
            absent_calls: &["job-00000000abcd-build", "run "],
            outcome: JobOutcome::SystemFailure {
                reason: "starting service redis:7: no such image layer".into(),
            },
        },
        Case {
            name: "a service whose ports never answer: the runner's warning, the job carries on",
            runtime: FakeRuntime {
                ports_up: false,
                ..runtime(&[])
            },
            images: FakeImages::default(),
            timeout: None,
            log_has: &[
                "*** WARNING: Service job-00000000abcd-svc-0 probably didn't start properly.",
                "service \"job-00000000abcd-svc-0-wait-for-service\" timeout",
                "log of job-00000000abcd-svc-0",
                "Job succeeded",
            ],
            log_lacks: &[],
            calls: &["run job-00000000abcd-build", "remove_pod"],
            absent_calls: &[],
            outcome: JobOutcome::Succeeded,
        },
        Case {
            name: "an image that cannot be had: system failure naming it, teardown anyway",
            runtime: runtime(&[]),
            images: FakeImages {
                missing: vec!["redis:7".into()],
                ..Default::default()
            },
            timeout: None,
            log_has: &[
                "ERROR: Job failed (system failure): pulling redis:7: redis:7: manifest unknown",
            ],
            log_lacks: &[],
            calls: &["remove_pod job-00000000abcd"],
            absent_calls: &["create_pod", "start"],
            outcome: JobOutcome::SystemFailure {
                reason: "pulling redis:7: redis:7: manifest unknown".into(),
            },
        },
    ];
    for case in cases {
        let tmp = tempfile::tempdir().unwrap();
        let plan = plan(tmp.path(), case.timeout);
        let log = RecordingLog::default();
        let outcome = super::run(&plan, &case.runtime, &case.images, &log, never()).await;
        let text = log.text();
        assert_eq!(outcome, case.outcome, "{}\n{text}", case.name);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert_in_order(&lines, case.log_has, case.name);
        for l in case.log_lacks {
            assert!(!text.contains(l), "{}: {l:?} in\n{text}", case.name);
        }
        let calls = case.runtime.calls();
        assert_in_order(&calls, case.calls, case.name);
        assert!(
            calls.last().is_some_and(|c| c.starts_with("remove_pod")),
            "{}: the teardown is the last call: {calls:#?}",
            case.name
        );
        for a in case.absent_calls {
            assert!(
                !calls.iter().any(|c| c.contains(a)),
                "{}: {a:?} in {calls:#?}",
                case.name
            );
        }
        assert!(
            !plan.dir.exists(),
            "{}: the job directory is removed",
            case.name
        );
    }
}

#[tokio::test]
async fn stage_scripts_and_containers_carry_the_jobs_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path(), None);
    let rt = runtime(&[]);
    let images = FakeImages::default();
    let log = RecordingLog::default();
    super::run(&plan, &rt, &images, &log, never()).await;
    let started = rt.started.lock().unwrap().clone();
    let service = &started[0];
    assert_eq!(service.hosts[0], ("redis".into(), "127.0.0.1".into()));
    assert!(service.hosts.iter().any(|(h, _)| h == "cache"));
    assert!(
        service.env.contains(&("GREETING".into(), "hello".into())),
        "services get the job's variables"
    );
    let build = &started[1];
    // The runner's shell detection, reading each stage on stdin; the job's variables in the
    // environment its entrypoint sees.
    assert_eq!(build.command, super::script::shell_command());
    assert!(
        build.command[2]
            .starts_with("if [ -x /usr/local/bin/bash ]; then\n\texec /usr/local/bin/bash \n")
    );
    assert!(build.env.contains(&("GREETING".into(), "hello".into())));
    assert!(build.env.contains(&("CI_JOB_NAME".into(), "test".into())));
    assert_eq!(build.workdir.as_deref(), Some("/builds/local/project"));
    assert_eq!(
        build.volumes.len(),
        1,
        "the project only: scripts come on stdin"
    );
    // Images without a pull_policy are taken from the store when present.
    let asked = images.asked.lock().unwrap().clone();
    assert_eq!(
        asked[0],
        (
            "alpine:3".to_string(),
            vec![crate::image::pull::Policy::IfNotPresent]
        )
    );
}

/// No cancellation, ever (its sender is gone).
fn never() -> super::Cancellations {
    tokio::sync::mpsc::unbounded_channel().1
}

/// Cancellations as GitLab Runner treats a canceled job: the first ends the script, and
/// after_script still runs, told `CI_JOB_STATUS=canceled`; a second ends after_script too.
/// Either way the job is a system failure with the cancellation's words, torn down last.
#[tokio::test]
async fn a_cancelled_job_runs_after_script_then_is_torn_down() {
    const AFTER: &str = r"run job-00000000abcd-build export CI_JOB_STATUS='\''canceled'\''";
    // (case, after_script hangs, cancellations, calls in this order)
    let cases: [(&str, bool, usize, &[&str]); 2] = [
        (
            "one cancellation: after_script runs",
            false,
            1,
            &[
                "run job-00000000abcd-build echo $GREETING",
                "kill job-00000000abcd-build",
                AFTER,
                "remove_pod job-00000000abcd",
            ],
        ),
        (
            "a second cancellation ends after_script",
            true,
            2,
            &[
                "kill job-00000000abcd-build",
                AFTER,
                "kill job-00000000abcd-build",
                "remove_pod job-00000000abcd",
            ],
        ),
    ];
    for (name, after_hangs, signals, want_calls) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let plan = plan(tmp.path(), None);
        let rt = runtime(&[
            ("echo $GREETING", script("", 0, true)),
            (
                r"export CI_JOB_STATUS='\''canceled'\''",
                script("after a cancel\n", 0, after_hangs),
            ),
        ]);
        let log = RecordingLog::default();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sender = tokio::spawn(async move {
            for _ in 0..signals {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tx.send("interrupted (SIGINT)".to_string());
            }
            // Kept open: a closed channel is no cancellation.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let outcome = super::run(&plan, &rt, &FakeImages::default(), &log, rx).await;
        sender.abort();
        let text = log.text();
        assert_eq!(
            outcome,
            JobOutcome::SystemFailure {
                reason: "job interrupted (SIGINT)".into()
            },
            "{name}\n{text}"
        );
        assert_eq!(outcome.exit_code(), 125);
        let calls = rt.calls();
        let mut at = 0;
        for want in want_calls {
            let Some(found) = calls[at..].iter().position(|c| c == want) else {
                panic!("{name}: no {want} after call {at}: {calls:#?}");
            };
            at += found + 1;
        }
        assert_eq!(calls.last().unwrap(), "remove_pod job-00000000abcd");
        for line in [
            "after a cancel",
            "WARNING: script canceled: interrupted (SIGINT)",
            "ERROR: Job failed (system failure): job interrupted",
        ] {
            assert!(text.contains(line), "{name}: no {line:?} in\n{text}");
        }
    }
}

fn runner_env(extra: &[(&str, &str)]) -> ExecutorEnv {
    let mut vars: Vec<(String, String)> = [
        ("CUSTOM_ENV_CI_JOB_ID", "9"),
        ("CUSTOM_ENV_CI_PROJECT_ID", "4"),
        ("CUSTOM_ENV_CI_JOB_IMAGE", "alpine:3"),
        ("CUSTOM_ENV_CI_JOB_TOKEN", "job-token-secret"),
        (
            "CUSTOM_ENV_CI_JOB_SERVICES",
            r#"[{"name":"redis:7","alias":"cache"}]"#,
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ExecutorEnv::from_vars(vars)
}

#[tokio::test]
async fn driver_prepare_stages_and_cleanup() {
    let root = tempfile::tempdir().unwrap();
    let env = runner_env(&[]);
    let rt = runtime(&[
        ("build_script", script("built\n", 0, false)),
        ("step_script", script("", 4, false)),
        ("after_script", script("", 125, false)),
        ("hangs", script("", 0, true)),
    ]);
    let log = RecordingLog::default();
    let opts = driver::PrepareOptions {
        network: "private".into(),
        wait_for_services_timeout: -1,
        helper_image:
            "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.9.0"
                .into(),
        cache_dir: root.path().join("cache"),
        admin: Default::default(),
    };
    let payload = JobPayload::of(&env).unwrap();
    driver::prepare(
        root.path(),
        &env,
        &payload,
        &opts,
        &rt,
        &FakeImages::default(),
        &log,
    )
    .await
    .unwrap();
    let key = "gitlab-r0-p4-c0-j9";
    assert_in_order(
        &rt.calls(),
        &[
            &format!("create_pod {key} private"),
            &format!("start {key}-svc-0"),
            &format!("create {key}-helper"),
            &format!("create {key}-build"),
        ],
        "prepare",
    );
    let started = rt.started.lock().unwrap().clone();
    let service_env = &started[0].env;
    assert!(
        !service_env.iter().any(|(k, _)| k == "CI_JOB_TOKEN"),
        "without the job's payload, services get only their own variables"
    );
    let (helper, build) = (&started[1], &started[2]);
    // The runner's helper: its image's entrypoint, `gitlab-runner-build` reading the stage.
    assert_eq!(helper.entrypoint, None);
    assert_eq!(helper.command, ["gitlab-runner-build"]);
    assert_eq!(build.entrypoint, None);
    assert_eq!(build.command, super::script::shell_command());
    for c in [helper, build] {
        assert!(
            c.env.contains(&("CI_PROJECT_ID".into(), "4".into())),
            "{}",
            c.name
        );
    }
    assert!(root.path().join("cache").is_dir());

    let cases = [
        ("get_sources", "helper", driver::StageOutcome::Succeeded),
        ("build_script", "build", driver::StageOutcome::Succeeded),
        (
            "step_script",
            "build",
            driver::StageOutcome::BuildFailure { exit_code: 4 },
        ),
        // A script's own 125 is the script's: only skiff's failures are system failures.
        (
            "after_script",
            "build",
            driver::StageOutcome::BuildFailure { exit_code: 125 },
        ),
    ];
    let script_file = root.path().join("script");
    for (stage, container, want) in cases {
        // The runner's script for the stage, fed to the container on stdin.
        std::fs::write(&script_file, format!("# {stage}\necho hi\n")).unwrap();
        let never = std::future::pending();
        let got = driver::run_stage(root.path(), &env, &script_file, stage, &rt, &log, never)
            .await
            .unwrap();
        assert_eq!(got, want, "{stage}");
        let key_of_stage = if stage == "get_sources" { "-" } else { stage };
        assert_eq!(
            rt.calls().last().unwrap(),
            &format!("run {key}-{container} {key_of_stage}"),
            "{stage}"
        );
    }
    assert!(
        log.entries
            .lock()
            .unwrap()
            .contains(&(Some(Stream::Stdout), "built\n".into()))
    );
    // The runner's SIGTERM (a timeout or a cancellation): the container's processes are
    // killed, the stage is a system failure saying so.
    std::fs::write(&script_file, "# hangs\n").unwrap();
    let sigterm = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        "terminated (SIGTERM)".to_string()
    };
    let got = driver::run_stage(
        root.path(),
        &env,
        &script_file,
        "build_script",
        &rt,
        &log,
        sigterm,
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        driver::StageOutcome::SystemFailure {
            reason: format!("stage build_script terminated (SIGTERM): {key}-build stopped"),
        }
    );
    assert_eq!(rt.calls().last().unwrap(), &format!("kill {key}-build"));
    assert!(!log.text().contains("job-token-secret"));

    driver::cleanup(root.path(), &env, &rt).await.unwrap();
    assert_in_order(
        &rt.calls(),
        &[&format!("remove_pod {key}"), "remove_files 1"],
        "cleanup",
    );
    // A later cleanup (the runner always calls it) has nothing left to remove.
    std::fs::remove_dir_all(root.path().join("gitlab")).unwrap();
    driver::cleanup(root.path(), &env, &rt).await.unwrap();
    assert_eq!(rt.calls().last().unwrap(), &format!("remove_pod {key}"));
}

#[tokio::test]
async fn driver_errors_name_what_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let rt = runtime(&[]);
    let log = RecordingLog::default();
    let opts = driver::PrepareOptions {
        network: "private".into(),
        wait_for_services_timeout: -1,
        helper_image: "helper:1".into(),
        cache_dir: root.path().join("cache"),
        admin: Default::default(),
    };
    let cases: &[(ExecutorEnv, &str)] = &[
        (ExecutorEnv::default(), "CUSTOM_ENV_CI_JOB_ID is not set"),
        (
            ExecutorEnv::from_vars([("CUSTOM_ENV_CI_JOB_ID".to_string(), "1".to_string())]),
            "CUSTOM_ENV_CI_JOB_IMAGE is not set: the job has no image",
        ),
        (
            runner_env(&[("CUSTOM_ENV_CI_JOB_SERVICES", "not json")]),
            "CUSTOM_ENV_CI_JOB_SERVICES is not a JSON list",
        ),
    ];
    for (env, want) in cases {
        let err = match JobPayload::of(env) {
            Err(e) => crate::error_chain(&e),
            Ok(payload) => {
                let images = FakeImages::default();
                let prepared =
                    driver::prepare(root.path(), env, &payload, &opts, &rt, &images, &log).await;
                crate::error_chain(&prepared.unwrap_err())
            }
        };
        assert!(err.contains(want), "{err}");
    }
    assert!(!rt.calls().iter().any(|c| c.starts_with("start")));
}

/// The runner's payload and the admin's file together: who gets which variables, which
/// policies, which settings.
#[tokio::test]
async fn driver_prepare_follows_the_payload_and_the_admin_file() {
    use crate::gitlab::config::AdminConfig;
    use crate::image::pull::Policy::{Always, IfNotPresent};
    let root = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/gitlab/payload/job_response.json"
    );
    let mut job: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    // The fixture asks for linux/arm64: refused below (skiff runs the host's platform only).
    let host = crate::oci::manifest::PlatformSpec::host();
    job["image"]["executor_opts"]["docker"]["platform"] =
        format!("{}/{}", host.os, host.arch).into();
    let response = root.path().join("response.json");
    std::fs::write(&response, job.to_string()).unwrap();
    let env = runner_env(&[("JOB_RESPONSE_FILE", response.to_str().unwrap())]);
    let admin = AdminConfig::parse(
        r#"
pull_policy = "if-not-present"
allowed_pull_policies = ["always", "if-not-present", "never"]
cap_drop = ["NET_RAW"]
memory = "512m"
shm_size = 1048576
tmpfs = { "/scratch" = "rw,size=1m" }
extra_hosts = ["mirror:10.0.0.9"]
dns = ["10.0.0.53"]
volumes = ["/data"]
[[services]]
name = "redis:7"
alias = "cache"
environment = ["MODE=test"]
"#,
        std::path::Path::new("gitlab.toml"),
    )
    .unwrap();
    let opts = driver::PrepareOptions {
        network: "private".into(),
        wait_for_services_timeout: -1,
        helper_image: "helper:1".into(),
        cache_dir: root.path().join("cache/4"),
        admin,
    };
    let (rt, images, log) = (runtime(&[]), FakeImages::default(), RecordingLog::default());
    let payload = JobPayload::of(&env).unwrap();
    driver::prepare(root.path(), &env, &payload, &opts, &rt, &images, &log)
        .await
        .unwrap();
    let asked = images.asked.lock().unwrap().clone();
    assert_eq!(asked[0], ("helper:1".into(), vec![IfNotPresent]));
    assert_eq!(
        asked[1],
        (
            "registry.example.com/group/app/ci:1.2".into(),
            vec![IfNotPresent, Always]
        ),
        "the job's policies, within the allowed ones"
    );
    assert_eq!(
        asked[2],
        ("redis:7".into(), vec![IfNotPresent]),
        "the admin's"
    );
    let started = rt.started.lock().unwrap().clone();
    let env_of = |i: usize| started[i].env.clone();
    let (redis, postgres) = (env_of(0), env_of(1));
    assert!(redis.contains(&("MODE".into(), "test".into())), "{redis:?}");
    assert!(
        redis.iter().any(|(k, _)| k == "CI_PROJECT_PATH"),
        "public variables"
    );
    for service in [&redis, &postgres] {
        for secret in [
            "CI_JOB_TOKEN",
            "CI_REGISTRY_PASSWORD",
            "DB_PASSWORD",
            "DOCKER_AUTH_CONFIG",
        ] {
            assert!(
                !service.iter().any(|(k, _)| k == secret),
                "{secret} in {service:?}"
            );
        }
    }
    assert!(started[0].hosts.iter().any(|(h, _)| h == "cache"));
    let build = started.iter().find(|c| c.name.ends_with("-build")).unwrap();
    assert_eq!(build.entrypoint, Some(vec![]), "entrypoint: [\"\"]");
    assert!(
        build.env.iter().any(|(k, _)| k == "CI_JOB_TOKEN"),
        "the build gets them all"
    );
    assert_eq!(build.settings.cap_drop, ["NET_RAW"]);
    assert_eq!(build.settings.limits.memory, Some(512 << 20));
    assert!(
        build
            .settings
            .tmpfs
            .contains(&"/scratch:rw,size=1m".to_string())
    );
    assert!(
        build
            .settings
            .tmpfs
            .iter()
            .any(|t| t.starts_with("/dev/shm:size=1048576"))
    );
    let dests: Vec<&str> = build
        .volumes
        .iter()
        .map(|v| v.destination.as_str())
        .collect();
    assert_eq!(dests, ["/builds", "/cache", "/data"]);
    assert!(
        build.volumes[2]
            .source
            .starts_with(root.path().join("cache/4"))
    );
    assert!(
        build.volumes.iter().all(|v| v.idmap),
        "skiff's own directories are owned by each job's root"
    );
    assert_eq!(
        started[1].volumes, build.volumes,
        "services get the job's volumes"
    );
    let pod = rt.pods.lock().unwrap()[0].clone();
    assert_eq!(pod.hosts, [("mirror".to_string(), "10.0.0.9".to_string())]);
    assert_eq!(pod.dns, ["10.0.0.53"]);
    let text = log.text();
    assert!(text.contains("Using effective pull policy of [if-not-present always] for container registry.example.com/group/app/ci:1.2"), "{text}");
    assert!(!text.contains("glcbt-64_jobtoken"));

    let foreign = runner_env(&[("JOB_RESPONSE_FILE", fixture)]);
    let payload = JobPayload::of(&foreign).unwrap();
    let err = driver::prepare(root.path(), &foreign, &payload, &opts, &rt, &images, &log)
        .await
        .unwrap_err();
    if host.arch != "arm64" {
        assert!(
            err.to_string().contains("docker platform linux/arm64"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn driver_links_gitlab_runner_in_the_helper() {
    // The link command's outcome in the helper, and the warning the job log shows then.
    let cases: &[(i32, &str, Option<&str>)] = &[
        (0, "", None),
        (3, "", Some("has no gitlab-runner-helper on its PATH")),
        (
            1,
            "ln: /usr/bin/gitlab-runner: Read-only file system\n",
            Some(
                "could not link gitlab-runner to its gitlab-runner-helper (exit 1): \
                 ln: /usr/bin/gitlab-runner: Read-only file system",
            ),
        ),
    ];
    for (exit_code, output, warning) in cases {
        let root = tempfile::tempdir().unwrap();
        let env = runner_env(&[("CUSTOM_ENV_CI_JOB_SERVICES", "")]);
        let rt = runtime(&[(
            driver::LINK_RUNNER_COMMAND,
            script(output, *exit_code, false),
        )]);
        let log = RecordingLog::default();
        let opts = driver::PrepareOptions {
            network: "private".into(),
            wait_for_services_timeout: -1,
            helper_image: "helper:1".into(),
            cache_dir: root.path().join("cache"),
            admin: Default::default(),
        };
        let payload = JobPayload::of(&env).unwrap();
        let images = FakeImages::default();
        driver::prepare(root.path(), &env, &payload, &opts, &rt, &images, &log)
            .await
            .unwrap();
        let key = "gitlab-r0-p4-c0-j9";
        assert_in_order(
            &rt.calls(),
            &[
                &format!("create {key}-helper"),
                &format!("run {key}-helper {}", driver::LINK_RUNNER_COMMAND),
            ],
            "prepare",
        );
        let text = log.text();
        match warning {
            None => assert!(!text.contains("WARNING: the helper image"), "{text}"),
            Some(w) => assert!(
                text.contains(&format!(
                    "WARNING: the helper image helper:1 {w}; the runner skips caches and artifacts"
                )),
                "exit {exit_code}: {text}"
            ),
        }
    }
}

/// `skiff job` with the driver's admin file: the default image for a job without one, the
/// admin's services first, the runner's pull-policy rules, the build container's settings.
#[tokio::test]
async fn a_local_job_takes_the_admin_file() {
    use crate::gitlab::config::AdminConfig;
    use crate::image::pull::Policy::Always;
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::parse("imageless:\n  script: [echo hi]\n", "test.yml").unwrap();
    let admin = AdminConfig::parse(
        "image = \"alpine:3\"\ncap_drop = [\"NET_RAW\"]\nvolumes = [\"/data\"]\n\
         [[services]]\nname = \"redis:7\"\nalias = \"cache\"\n",
        std::path::Path::new("gitlab.toml"),
    )
    .unwrap();
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let plan = JobPlan::local(
        tmp.path(),
        pipeline.job("imageless", &[]).unwrap(),
        super::plan::LocalOptions {
            masked_keys: vec![],
            project_dir: project,
            network: "private".into(),
            wait_for_services_timeout: -1,
            admin,
        },
    )
    .unwrap();
    let (rt, images, log) = (runtime(&[]), FakeImages::default(), RecordingLog::default());
    let outcome = super::run(&plan, &rt, &images, &log, never()).await;
    assert_eq!(outcome, JobOutcome::Succeeded, "{}", log.text());
    let asked = images.asked.lock().unwrap().clone();
    assert_eq!(
        asked[0],
        ("alpine:3".into(), vec![Always]),
        "the runner's default"
    );
    assert_eq!(asked[1].0, "redis:7");
    let started = rt.started.lock().unwrap().clone();
    assert!(started[0].hosts.iter().any(|(h, _)| h == "cache"));
    let build = started.iter().find(|c| c.name.ends_with("-build")).unwrap();
    assert_eq!(build.settings.cap_drop, ["NET_RAW"]);
    assert!(build.volumes.iter().any(|v| v.destination == "/data"));
}
