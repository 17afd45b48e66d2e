//! `skiff job`: example pipelines run end to end against a real registry, rootless (as
//! skiff-test) and as root: services reached by alias, failing scripts with after_script,
//! timeouts, variable precedence and masking, four jobs at once (one failing) with the same service port,
//! and nothing left behind.

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use common::user::{USER, setup};
use common::{Env, require, require_root, run};
use std::path::PathBuf;
use std::process::Output;

const TOOLS: &[&str] = &["docker-registry", "skopeo"];

struct Runner<'a> {
    skiff: &'a dyn Fn() -> std::process::Command,
    project: PathBuf,
    store: PathBuf,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
}

impl Runner<'_> {
    /// `skiff job` in the project directory.
    fn job(&self, args: &[&str]) -> Output {
        let mut c = (self.skiff)();
        c.current_dir(&self.project)
            .arg("job")
            .arg("--tls-verify=false");
        run(c.args(args))
    }
    fn write(&self, name: &str, body: &str) -> PathBuf {
        let p = self.project.join(name);
        std::fs::write(&p, body).unwrap();
        if let Some((u, g)) = self.owner {
            nix::unistd::chown(&p, Some(u), Some(g)).unwrap();
        }
        p
    }
    fn leftovers(&self) -> Vec<String> {
        ["containers", "pods", "jobs"]
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

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn for_each_runner(test: impl Fn(&Runner, &str)) {
    if !require(TOOLS) || !require_root("root mode, and switching to the test user") {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    let image = format!("{}/test/busybox:1", reg.addr());
    push(&images().layout, "busybox", &image, &[]);
    let env = Env::new();
    std::fs::create_dir_all(env.path("project")).unwrap();
    let root_skiff = || env.skiff();
    test(
        &Runner {
            skiff: &root_skiff,
            project: env.path("project"),
            store: env.store(),
            owner: None,
        },
        &image,
    );
    let Some(user) = setup(USER) else { return };
    let pw = nix::unistd::User::from_name(USER).unwrap().unwrap();
    let project = user.dir.path().join("home/project");
    std::fs::create_dir_all(&project).unwrap();
    nix::unistd::chown(&project, Some(pw.uid), Some(pw.gid)).unwrap();
    let user_skiff = || user.command(&[]);
    test(
        &Runner {
            skiff: &user_skiff,
            project,
            store: user.store(),
            owner: Some((pw.uid, pw.gid)),
        },
        &image,
    );
}

fn pipeline(image: &str) -> String {
    format!(
        r#"
variables:
  WHO: global
  ONLY_GLOBAL: g
.db: &db
  services:
    - name: {image}
      alias: db, database
      command: ["nc", "-ll", "-p", "5432", "-e", "echo", "pong"]
      variables: {{ HEALTHCHECK_TCP_PORT: "5432" }}
default:
  image: {image}
services-by-alias:
  <<: *db
  variables: {{ WHO: job }}
  before_script: [echo before]
  script:
    - nc db 5432 </dev/null
    - nc database 5432 </dev/null
    - echo "who=$WHO only=$ONLY_GLOBAL cli=$FROM_CLI dir=$CI_PROJECT_DIR pwd=$(pwd) job=$CI_JOB_NAME"
    - echo "secret=$TOKEN"
    - test -f /builds/*/*/.gitlab-ci.yml && echo sources-here
  artifacts: {{ paths: [x] }}
failing:
  script:
    - echo step one
    - exit 3
    - echo never
  after_script: [echo after runs anyway]
too-slow:
  timeout: 2s
  script: [echo started, sleep 30, echo never]
  after_script: ['echo "after_script: $CI_JOB_STATUS"']
dead-service:
  services:
    - name: {image}
      alias: silent
      command: ["sleep", "60"]
      variables: {{ HEALTHCHECK_TCP_PORT: "6000" }}
  script: [echo carried on]
# The build container starts again for each stage, through the image's entrypoint.
entrypoint-prepares:
  image:
    name: {image}
    entrypoint: ["/bin/sh", "-c", "echo entrypoint-ran; export PREPARED=yes; exec \"$@\"", "entry"]
  script: [echo "prepared=$PREPARED", touch /kept-between-stages]
  after_script: [echo "after prepared=$PREPARED", ls /kept-between-stages]
entrypoint-sh-c:
  image:
    name: {image}
    entrypoint: ["/bin/sh", "-c"]
  script: [echo shell-c-works]
entrypoint-missing:
  image:
    name: {image}
    entrypoint: ["/no/such/entrypoint"]
  script: [echo never]
# No image of its own (the runner's default), variables as GitLab and the runner expand them.
gitlab-variables:
  inherit: {{ default: false }}
  variables:
    PRICE: "$$5"
    RAW: {{ value: "keep $$HOME", expand: false }}
    NESTED: "$CI_PROJECT_PATH_SLUG/x"
  script:
    - echo "price=$PRICE raw=$RAW nested=$NESTED status=$CI_JOB_STATUS total=$CI_NODE_TOTAL slug=$CI_JOB_NAME_SLUG"
    - exit 4
  after_script: [echo "after status=$CI_JOB_STATUS"]
project-variables:
  script:
    - echo "cert at $CERT holds $(cat $CERT) token=$TOKEN where=$WHERE"
  variables:
    WHERE: "file $CERT"
matrix:
  parallel: {{ matrix: [{{ V: [a, b] }}] }}
  script: [echo "node=$CI_NODE_INDEX/$CI_NODE_TOTAL v=$V"]
"#
    )
}

#[test]
fn pipelines_run_as_the_runner_runs_them() {
    for_each_runner(|who, image| {
        who.write(".gitlab-ci.yml", &pipeline(image));
        let o = who.job(&[
            "--var",
            "FROM_CLI=c",
            "--var",
            "WHO=cli",
            "--masked-var",
            "TOKEN=hunter2-very-secret",
            "services-by-alias",
        ]);
        let log = out(&o);
        assert!(
            o.status.success(),
            "{log}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(log.matches("pong").count(), 2, "both aliases answer: {log}");
        assert!(
            log.contains("who=cli only=g cli=c dir=/builds/local/project pwd=/builds/local/project job=services-by-alias"),
            "--var over job over global; CI_* set: {log}"
        );
        assert!(
            log.contains("secret=[MASKED]") && !log.contains("hunter2"),
            "{log}"
        );
        assert!(log.contains("sources-here"), "{log}");
        assert!(log.contains("ignored (not supported): artifacts"), "{log}");
        assert!(
            log.contains("section_start:") && log.contains("Job succeeded"),
            "{log}"
        );

        let o = who.job(&["--default-image", image, "gitlab-variables"]);
        let log = out(&o);
        assert_eq!(o.status.code(), Some(4), "{log}");
        assert!(
            log.contains("price=$5 raw=keep $$HOME nested=local-project/x status=running total=1 slug=gitlab-variables"),
            "{log}"
        );
        assert!(log.contains("after status=failed"), "{log}");
        let vars = who.write(
            "variables.yml",
            "CERT: {value: pem-text, type: file}\nTOKEN: {value: hunter2-secret-value, masked: true}\n",
        );
        let o = who.job(&[
            "--variables-file",
            vars.to_str().unwrap(),
            "project-variables",
        ]);
        let log = out(&o);
        assert!(
            log.contains("cert at /builds/local/project.tmp/CERT holds pem-text token=[MASKED] where=file /builds/local/project.tmp/CERT"),
            "{log}"
        );
        assert!(!log.contains("hunter2"), "{log}");
        let o = who.job(&["matrix: [b]"]);
        assert!(out(&o).contains("node=2/2 v=b"), "{}", out(&o));

        // A reader that goes away after the first line (`| head -1`) ends nothing: the job
        // runs to its end and teardown, and its status is the script's.
        let mut c = (who.skiff)();
        let mut child = c
            .current_dir(&who.project)
            .args(["job", "--tls-verify=false", "failing"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
        drop(reader);
        let o = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{first}{said}");
        assert!(!said.contains("panicked"), "{said}");
        assert_eq!(who.leftovers(), Vec::<String>::new());

        let o = who.job(&["failing"]);
        let log = out(&o);
        assert_eq!(o.status.code(), Some(3), "{log}");
        assert!(log.contains("step one") && !log.contains("never"), "{log}");
        assert!(log.contains("after runs anyway"), "{log}");
        assert!(log.contains("ERROR: Job failed: exit code 3"), "{log}");

        let start = std::time::Instant::now();
        let o = who.job(&["too-slow"]);
        let log = out(&o);
        assert!(
            !o.status.success() && start.elapsed().as_secs() < 20,
            "{log}"
        );
        assert!(
            log.contains("execution took longer than 2 seconds"),
            "{log}"
        );
        assert!(
            log.contains("after_script: timedout") && !log.contains("never"),
            "{log}"
        );

        let o = who.job(&["--wait-for-services-timeout", "2", "dead-service"]);
        assert!(o.status.success(), "{o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("*** WARNING: Service") && err.contains("probably didn't start properly"),
            "{err}"
        );
        assert!(out(&o).contains("carried on"));

        // The runner's model: the entrypoint runs before each stage, with the job's
        // variables; the container's files persist between stages.
        let o = who.job(&["entrypoint-prepares"]);
        let log = out(&o);
        assert!(o.status.success(), "{log}");
        assert_eq!(log.matches("entrypoint-ran").count(), 2, "{log}");
        assert!(
            log.contains("prepared=yes") && log.contains("after prepared=yes"),
            "{log}"
        );
        assert!(log.contains("/kept-between-stages"), "{log}");
        let o = who.job(&["entrypoint-sh-c"]);
        assert!(out(&o).contains("shell-c-works"), "{}", out(&o));
        let o = who.job(&["entrypoint-missing"]);
        let log = out(&o);
        assert_eq!(o.status.code(), Some(125), "{log}");
        assert!(
            log.contains("ERROR: Job failed (system failure):")
                && log.contains("could not start")
                && log.contains("/no/such/entrypoint"),
            "{log}"
        );
        assert!(!log.contains("never"), "{log}");

        let o = who.job(&["no-such-job"]);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("no job"),
            "{o:?}"
        );
        assert_eq!(
            who.leftovers(),
            Vec::<String>::new(),
            "every job cleaned up"
        );
    });
}

/// Four jobs at once, each with its two services on the same port in a pod of its own; one
/// of them fails, and the others do not notice.
#[test]
fn four_jobs_at_once_with_the_same_service_port() {
    for_each_runner(|who, image| {
        who.write(".gitlab-ci.yml", &pipeline(image));
        let spawn = |job: &str| {
            let mut c = (who.skiff)();
            c.current_dir(&who.project)
                .args(["job", "--tls-verify=false", job])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        // The image must be in the store before the jobs' pulls race for it.
        assert!(who.job(&["services-by-alias"]).status.success());
        let jobs = [
            "services-by-alias",
            "failing",
            "services-by-alias",
            "services-by-alias",
        ];
        let children: Vec<_> = jobs.iter().map(|j| spawn(j)).collect();
        for (job, child) in jobs.iter().zip(children) {
            let o = child.wait_with_output().unwrap();
            if *job == "failing" {
                assert_eq!(o.status.code(), Some(3), "{}", out(&o));
            } else {
                assert!(o.status.success(), "{}", out(&o));
                assert_eq!(out(&o).matches("pong").count(), 2);
            }
        }
        assert_eq!(who.leftovers(), Vec::<String>::new());
        println!(
            "reliability: 4 jobs with services at once, one failing ({}) | 4 jobs, 8 services | pass",
            if who.owner.is_some() {
                "rootless"
            } else {
                "root"
            }
        );
    });
}

#[test]
fn interrupted_terminated_or_killed_job_cleans_up() {
    for_each_runner(|who, image| {
        who.write(".gitlab-ci.yml", &pipeline(image));
        for signal in [
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGKILL,
        ] {
            let mut c = (who.skiff)();
            let mut child = c
                .current_dir(&who.project)
                .args(["job", "--tls-verify=false", "too-slow"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
            while !line.contains("started") {
                line.clear();
                assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0);
            }
            // Mid-job, the job's directory (stage scripts with its variables) is private.
            let mut ids = vec![];
            for e in std::fs::read_dir(who.store.join("jobs")).unwrap().flatten() {
                ids.push(e.file_name().to_string_lossy().to_string());
                use std::os::unix::fs::PermissionsExt;
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o700, "{}", e.path().display());
            }
            // The signal goes to skiff itself: rootless, the child of runuser (which ignores
            // SIGINT, follows the SIGTERM it passes on with a SIGKILL two seconds later, and
            // cannot pass SIGKILL on).
            let mut target = child.id();
            if who.owner.is_some() {
                let children =
                    std::fs::read_to_string(format!("/proc/{target}/task/{target}/children"))
                        .unwrap();
                target = children.split_whitespace().next().unwrap().parse().unwrap();
            }
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(target as i32), signal).unwrap();
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
            let status = child.wait().unwrap();
            assert!(!status.success());
            // As GitLab cancels a job: the script ends, after_script runs and is told so.
            // (SIGKILL leaves no time for anything.)
            assert_eq!(
                rest.contains("after_script: canceled"),
                signal != nix::sys::signal::Signal::SIGKILL,
                "{signal}: {rest}"
            );
            assert!(!rest.contains("never"), "{signal}: {rest}");
            if signal == nix::sys::signal::Signal::SIGKILL {
                // No cleanup ran: the pod's infra saw its owner die and took the service and
                // the build container down; `system cleanup` then removes their files.
                let start = std::time::Instant::now();
                loop {
                    let ps = run((who.skiff)().arg("ps"));
                    let listed = String::from_utf8_lossy(&ps.stdout).to_string();
                    if listed.lines().count() <= 1 {
                        break;
                    }
                    assert!(
                        start.elapsed().as_secs() < 10,
                        "containers outlived a killed job: {listed}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                let o = run((who.skiff)().args(["system", "cleanup"]));
                assert!(o.status.success(), "{o:?}");
            }
            assert_eq!(
                who.leftovers(),
                Vec::<String>::new(),
                "{signal} still cleans up"
            );
            // Nor does the runtime's cgroup of a container whose shim the job killed.
            let cgroups = common::cgroups_named(|n| ids.iter().any(|id| n.contains(id.as_str())));
            assert!(cgroups.is_empty(), "{signal} left the cgroups {cgroups:?}");
        }
    });
}

#[test]
fn docker_auth_config_from_the_job_variables() {
    if !require(TOOLS) || !require_root("root mode") {
        return;
    }
    use base64::Engine;
    let password = "job-pull-password-9431";
    let reg = Registry::start(Auth::Htpasswd {
        user: "ci".into(),
        password: password.into(),
    });
    let image = format!("{}/private/busybox:1", reg.addr());
    push(
        &images().layout,
        "busybox",
        &image,
        &["--dest-creds", &format!("ci:{password}")],
    );
    // A second name for the same image, never pulled: the job without credentials asks for it.
    let other = format!("{}/private/busybox:2", reg.addr());
    push(
        &images().layout,
        "busybox",
        &other,
        &["--dest-creds", &format!("ci:{password}")],
    );
    let auth = serde_json::json!({"auths": {reg.addr(): {
        "auth": base64::engine::general_purpose::STANDARD.encode(format!("ci:{password}"))
    }}})
    .to_string();
    let env = Env::new();
    std::fs::create_dir_all(env.path("project")).unwrap();
    let yaml = format!(
        "with-auth:\n  image: {image}\n  script: [echo pulled-with-job-credentials]\nwithout:\n  image: {other}\n  script: [echo never]\n"
    );
    std::fs::write(env.path("project/.gitlab-ci.yml"), yaml).unwrap();
    let job = |args: &[&str]| {
        run(env
            .skiff()
            .current_dir(env.path("project"))
            .args(["job", "--tls-verify=false"])
            .args(args))
    };
    let o = job(&[
        "--masked-var",
        &format!("DOCKER_AUTH_CONFIG={auth}"),
        "with-auth",
    ]);
    let all = format!("{}{}", out(&o), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{all}");
    assert!(all.contains("pulled-with-job-credentials"));
    assert!(!all.contains(password), "the password is never printed");
    // Without the job's credentials the pull fails: a system failure naming the image.
    let o = job(&["without"]);
    let all = format!("{}{}", out(&o), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(125), "{all}");
    assert!(
        all.contains("system failure") && all.contains(&other),
        "{all}"
    );
}
