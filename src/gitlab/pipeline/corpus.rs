//! Pipelines shaped like real projects' (written for these tests), each resolved on a branch,
//! a tag or a merge request: the jobs by stage with their `when`, and a few resolved fields.

use super::include::{Source, Sources};
use super::{Environment, Job, Pipeline};
use std::collections::BTreeMap;

struct Files(BTreeMap<String, String>);

impl Sources for Files {
    fn read(&self, source: &Source) -> Result<String, String> {
        let key = match source {
            Source::Local(p) => p.clone(),
            Source::Project { project, file, .. } => format!("{project}:{file}"),
            Source::Component { project, name, .. } => format!("{project}:templates/{name}.yml"),
            other => other.to_string(),
        };
        self.0
            .get(&key)
            .cloned()
            .ok_or_else(|| "no such file".into())
    }
    fn glob(&self, pattern: &str) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| super::include::glob_matches(pattern, k))
            .cloned()
            .collect()
    }
    fn variable(&self, _: &str) -> Option<String> {
        None
    }
    fn changed(&self, _: Option<&str>) -> Option<Vec<String>> {
        None
    }
    fn files(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// Where the pipeline runs.
#[derive(Clone, Copy)]
enum On {
    Branch(&'static str),
    Tag(&'static str),
    MergeRequest(&'static str),
}

struct Case {
    name: &'static str,
    /// `.gitlab-ci.yml` first, then the files it includes.
    files: &'static [(&'static str, &'static str)],
    on: On,
    /// Files that differ from the default branch.
    changed: &'static [&'static str],
    /// `stage/job: when`, in the pipeline's order.
    jobs: &'static [&'static str],
    /// `job`, `field` (image, script, services, needs, allow_failure, var:NAME), expected.
    fields: &'static [(&'static str, &'static str, &'static str)],
}

fn predefined(on: On) -> Vec<(String, String)> {
    let mut v = vec![
        ("CI_DEFAULT_BRANCH", "main".to_string()),
        ("CI_PROJECT_PATH", "group/app".into()),
        ("CI_REGISTRY_IMAGE", "registry.example.com/group/app".into()),
        ("CI_TEMPLATE_REGISTRY_HOST", "registry.gitlab.com".into()),
        ("CI_SERVER_FQDN", "gitlab.example.com".into()),
    ];
    match on {
        On::Branch(b) => {
            v.push(("CI_PIPELINE_SOURCE", "push".into()));
            v.push(("CI_COMMIT_BRANCH", b.into()));
            v.push(("CI_COMMIT_REF_NAME", b.into()));
        }
        On::Tag(t) => {
            v.push(("CI_PIPELINE_SOURCE", "push".into()));
            v.push(("CI_COMMIT_TAG", t.into()));
            v.push(("CI_COMMIT_REF_NAME", t.into()));
        }
        On::MergeRequest(b) => {
            v.push(("CI_PIPELINE_SOURCE", "merge_request_event".into()));
            v.push(("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", b.into()));
            v.push(("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main".into()));
            v.push(("CI_COMMIT_REF_NAME", b.into()));
        }
    }
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn field(job: &Job, field: &str) -> String {
    match field {
        "image" => job
            .image
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_default(),
        "script" => job.script.join("; "),
        "before_script" => job.before_script.join("; "),
        "services" => job
            .services
            .iter()
            .map(|s| format!("{}={}", s.image.name, s.aliases.join(",")))
            .collect::<Vec<_>>()
            .join(" "),
        "needs" => job.needs.join(" "),
        "allow_failure" => job.allow_failure.to_string(),
        "timeout" => job
            .timeout
            .map(|t| t.as_secs().to_string())
            .unwrap_or_default(),
        "node" => job
            .node
            .as_ref()
            .map(|n| format!("{}/{}", n.index, n.total))
            .unwrap_or_default(),
        other => {
            let name = other.strip_prefix("var:").expect("a known field");
            job.variables
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "<unset>".into())
        }
    }
}

const CASES: &[Case] = &[
    Case {
        name: "monorepo with a local include per service and rules on changes",
        files: &[
            (
                ".gitlab-ci.yml",
                "stages: [build, test]\ninclude:\n  - local: frontend/.gitlab-ci.yml\n  - local: backend/.gitlab-ci.yml\n",
            ),
            (
                "frontend/.gitlab-ci.yml",
                "frontend-build:\n  stage: build\n  image: node:20\n  script: [npm ci, npm run build]\n  rules:\n    - changes: [frontend/**/*]\n",
            ),
            (
                "backend/.gitlab-ci.yml",
                "backend-test:\n  image: golang:1.22\n  script: go test ./...\n  rules:\n    - changes: [backend/**/*]\n",
            ),
        ],
        on: On::Branch("feature"),
        changed: &["backend/main.go"],
        jobs: &[
            "build/frontend-build: never",
            "test/backend-test: on_success",
        ],
        fields: &[("backend-test", "image", "golang:1.22")],
    },
    Case {
        name: "a template-based pipeline: hidden jobs, extends chains, default",
        files: &[(
            ".gitlab-ci.yml",
            "default:\n  image: ruby:3.3\n  before_script: [bundle install]\n.test-base:\n  stage: test\n  variables: {RAILS_ENV: test}\n  script: [bundle exec rake test]\n.with-db:\n  extends: .test-base\n  services: [postgres:16]\nunit:\n  extends: .test-base\nintegration:\n  extends: .with-db\n  variables: {SUITE: integration}\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/unit: on_success", "test/integration: on_success"],
        fields: &[
            ("integration", "var:RAILS_ENV", "test"),
            ("integration", "var:SUITE", "integration"),
            ("integration", "services", "postgres:16=postgres"),
            ("unit", "before_script", "bundle install"),
        ],
    },
    Case {
        name: "a matrix build across versions and platforms",
        files: &[(
            ".gitlab-ci.yml",
            "test:\n  image: python:$PY\n  parallel:\n    matrix:\n      - PY: [\"3.11\", \"3.12\"]\n        OS: [linux]\n      - PY: \"3.13\"\n        OS: [linux, windows]\n  script: tox\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &[
            "test/test: [3.11, linux]: on_success",
            "test/test: [3.12, linux]: on_success",
            "test/test: [3.13, linux]: on_success",
            "test/test: [3.13, windows]: on_success",
        ],
        fields: &[
            ("test: [3.12, linux]", "image", "python:3.12"),
            ("test: [3.13, windows]", "node", "4/4"),
        ],
    },
    Case {
        name: "deploys: manual on the default branch, none elsewhere",
        files: &[(
            ".gitlab-ci.yml",
            "stages: [test, deploy]\ntest: {script: make test}\ndeploy:\n  stage: deploy\n  script: make deploy\n  rules:\n    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH\n      when: manual\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/test: on_success", "deploy/deploy: manual"],
        fields: &[("deploy", "allow_failure", "false")],
    },
    Case {
        name: "the same deploys on a feature branch",
        files: &[(
            ".gitlab-ci.yml",
            "stages: [test, deploy]\ntest: {script: make test}\ndeploy:\n  stage: deploy\n  script: make deploy\n  rules:\n    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH\n      when: manual\n",
        )],
        on: On::Branch("feature/x"),
        changed: &[],
        jobs: &["test/test: on_success", "deploy/deploy: never"],
        fields: &[],
    },
    Case {
        name: "releases on tags only",
        files: &[(
            ".gitlab-ci.yml",
            "build: {stage: build, script: make}\nrelease:\n  stage: deploy\n  image: registry.gitlab.com/gitlab-org/release-cli:latest\n  rules: [{if: $CI_COMMIT_TAG}]\n  script: echo release $CI_COMMIT_TAG\n",
        )],
        on: On::Tag("v1.4.0"),
        changed: &[],
        jobs: &["build/build: on_success", "deploy/release: on_success"],
        fields: &[(
            "release",
            "image",
            "registry.gitlab.com/gitlab-org/release-cli:latest",
        )],
    },
    Case {
        name: "merge request pipelines without duplicates (workflow rules)",
        files: &[(
            ".gitlab-ci.yml",
            "workflow:\n  rules:\n    - if: $CI_PIPELINE_SOURCE == \"merge_request_event\"\n    - if: $CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS\n      when: never\n    - if: $CI_COMMIT_BRANCH\nlint: {stage: test, script: make lint}\nreview:\n  stage: deploy\n  script: deploy review\n  rules: [{if: $CI_MERGE_REQUEST_SOURCE_BRANCH_NAME}]\n",
        )],
        on: On::MergeRequest("feature/y"),
        changed: &[],
        jobs: &["test/lint: on_success", "deploy/review: on_success"],
        fields: &[],
    },
    Case {
        name: "workflow rules set the environment per branch",
        files: &[(
            ".gitlab-ci.yml",
            "variables: {ENVIRONMENT: dev}\nworkflow:\n  rules:\n    - if: $CI_COMMIT_TAG\n      variables: {ENVIRONMENT: production}\n    - if: $CI_COMMIT_BRANCH == \"main\"\n      variables: {ENVIRONMENT: staging}\n    - when: always\ndeploy:\n  stage: deploy\n  script: deploy to $ENVIRONMENT\n  variables: {URL: \"https://$ENVIRONMENT.example.com\"}\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["deploy/deploy: on_success"],
        fields: &[
            ("deploy", "var:ENVIRONMENT", "staging"),
            ("deploy", "var:URL", "https://staging.example.com"),
        ],
    },
    Case {
        name: "a legacy pipeline with only and except",
        files: &[(
            ".gitlab-ci.yml",
            "test: {script: make test}\ndocs:\n  script: make docs\n  only: [main, /^release-.*$/]\nnightly:\n  script: make nightly\n  only: [schedules]\nexperimental:\n  script: make exp\n  except:\n    refs: [main]\n",
        )],
        on: On::Branch("release-2.0"),
        changed: &[],
        jobs: &[
            "test/test: on_success",
            "test/docs: on_success",
            "test/nightly: never",
            "test/experimental: on_success",
        ],
        fields: &[],
    },
    Case {
        name: "components from a shared project with inputs",
        files: &[
            (
                ".gitlab-ci.yml",
                "include:\n  - component: $CI_SERVER_FQDN/group/ci-components/sast@1.0.0\n    inputs: {stage: test}\n  - component: gitlab.example.com/group/ci-components/docker-build@2.1.0\n    inputs: {image-name: app}\nstages: [build, test]\n",
            ),
            (
                "group/ci-components:templates/sast.yml",
                "spec:\n  inputs:\n    stage: {default: test}\n---\nsast:\n  stage: $[[ inputs.stage ]]\n  image: $CI_TEMPLATE_REGISTRY_HOST/security-products/semgrep:5\n  script: scan\n",
            ),
            (
                "group/ci-components:templates/docker-build.yml",
                "spec:\n  inputs:\n    image-name: {}\n    stage: {default: build}\n---\n\"build-$[[ inputs.image-name ]]\":\n  stage: $[[ inputs.stage ]]\n  script: docker build -t $CI_REGISTRY_IMAGE/$[[ inputs.image-name ]] .\n",
            ),
        ],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["build/build-app: on_success", "test/sast: on_success"],
        fields: &[
            (
                "sast",
                "image",
                "registry.gitlab.com/security-products/semgrep:5",
            ),
            (
                "build-app",
                "script",
                "docker build -t $CI_REGISTRY_IMAGE/app .",
            ),
        ],
    },
    Case {
        name: "sharded tests with parallel: N",
        files: &[(
            ".gitlab-ci.yml",
            "rspec:\n  parallel: 3\n  script: bundle exec rspec --shard $CI_NODE_INDEX/$CI_NODE_TOTAL\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &[
            "test/rspec 1/3: on_success",
            "test/rspec 2/3: on_success",
            "test/rspec 3/3: on_success",
        ],
        fields: &[("rspec 2/3", "node", "2/3")],
    },
    Case {
        name: "a DAG with needs",
        files: &[(
            ".gitlab-ci.yml",
            "stages: [build, test, deploy]\nbuild-a: {stage: build, script: a}\nbuild-b: {stage: build, script: b}\ntest-a: {stage: test, needs: [build-a], script: ta}\ndeploy-a:\n  stage: deploy\n  needs: [{job: test-a, artifacts: false}]\n  script: da\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &[
            "build/build-a: on_success",
            "build/build-b: on_success",
            "test/test-a: on_success",
            "deploy/deploy-a: on_success",
        ],
        fields: &[
            ("test-a", "needs", "build-a"),
            ("deploy-a", "needs", "test-a"),
        ],
    },
    Case {
        name: "scripts shared with !reference",
        files: &[(
            ".gitlab-ci.yml",
            ".setup:\n  script: [apt-get update, apt-get install -y make]\n.cleanup:\n  after_script: [rm -rf tmp]\nbuild:\n  before_script:\n    - !reference [.setup, script]\n  script: [make]\n  after_script: !reference [.cleanup, after_script]\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/build: on_success"],
        fields: &[(
            "build",
            "before_script",
            "apt-get update; apt-get install -y make",
        )],
    },
    Case {
        name: "YAML anchors and merge keys, older style",
        files: &[(
            ".gitlab-ci.yml",
            ".job_template: &job_definition\n  image: ruby:2.6\n  services: [postgres, redis]\ntest1:\n  <<: *job_definition\n  script: [test1 project]\ntest2:\n  <<: *job_definition\n  image: ruby:3.0\n  script: [test2 project]\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/test1: on_success", "test/test2: on_success"],
        fields: &[
            ("test1", "image", "ruby:2.6"),
            ("test2", "image", "ruby:3.0"),
            ("test2", "services", "postgres=postgres redis=redis"),
        ],
    },
    Case {
        name: "variables with expand: false and $$",
        files: &[(
            ".gitlab-ci.yml",
            "variables:\n  PASSWORD_PATTERN: {value: \"$[a-z]+$\", expand: false}\n  PRICE: \"$$5\"\n  GREETING: hello\n  MESSAGE: \"$GREETING world\"\njob: {script: echo}\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/job: on_success"],
        fields: &[
            ("job", "var:PASSWORD_PATTERN", "$[a-z]+$"),
            ("job", "var:PRICE", "$$5"),
            ("job", "var:MESSAGE", "hello world"),
        ],
    },
    Case {
        name: "services reached by alias",
        files: &[(
            ".gitlab-ci.yml",
            "test:\n  image: python:3.12\n  services:\n    - name: postgres:16\n      alias: db\n    - name: registry.example.com/tools/redis-stack:7\n      alias: cache, redis\n  variables: {DATABASE_URL: \"postgres://db/app\"}\n  script: pytest\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/test: on_success"],
        fields: &[(
            "test",
            "services",
            "postgres:16=postgres,db registry.example.com/tools/redis-stack:7=registry.example.com__tools__redis-stack,registry.example.com-tools-redis-stack,cache,redis",
        )],
    },
    Case {
        name: "docker-in-docker image builds",
        files: &[(
            ".gitlab-ci.yml",
            "build:\n  image: docker:27\n  services: [docker:27-dind]\n  variables: {DOCKER_TLS_CERTDIR: /certs}\n  script: [docker build -t $CI_REGISTRY_IMAGE:$CI_COMMIT_REF_NAME .]\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/build: on_success"],
        fields: &[
            ("build", "services", "docker:27-dind=docker"),
            ("build", "var:DOCKER_TLS_CERTDIR", "/certs"),
        ],
    },
    Case {
        name: "an Auto DevOps-like job with a repeated merge key",
        files: &[(
            ".gitlab-ci.yml",
            ".auto-deploy: &auto-deploy\n  image: registry.gitlab.com/gitlab-org/cluster-integration/auto-deploy-image:v2\n.environment: &environment\n  variables: {KUBE_NAMESPACE: app}\nproduction:\n  <<: *auto-deploy\n  <<: *environment\n  stage: deploy\n  script: auto-deploy deploy\n  rules: [{if: $CI_COMMIT_BRANCH == \"main\", when: manual}]\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["deploy/production: manual"],
        fields: &[
            (
                "production",
                "image",
                "registry.gitlab.com/gitlab-org/cluster-integration/auto-deploy-image:v2",
            ),
            ("production", "var:KUBE_NAMESPACE", "app"),
        ],
    },
    Case {
        name: "jobs that run when a file exists",
        files: &[
            (
                ".gitlab-ci.yml",
                "docker-build:\n  script: docker build .\n  rules: [{exists: [Dockerfile]}]\nhelm-lint:\n  script: helm lint chart\n  rules: [{exists: [chart/Chart.yaml]}]\n",
            ),
            ("Dockerfile", "FROM scratch\n"),
        ],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/docker-build: on_success", "test/helm-lint: never"],
        fields: &[],
    },
    Case {
        name: "a never rule first, then the default",
        files: &[(
            ".gitlab-ci.yml",
            "test:\n  script: make test\n  rules:\n    - if: $CI_COMMIT_MESSAGE =~ /\\[skip tests\\]/\n      when: never\n    - if: $CI_COMMIT_BRANCH =~ /^wip-/\n      allow_failure: true\n    - when: on_success\n",
        )],
        on: On::Branch("wip-thing"),
        changed: &[],
        jobs: &["test/test: on_success"],
        fields: &[("test", "allow_failure", "true")],
    },
    Case {
        name: "defaults, and a job that inherits none",
        files: &[(
            ".gitlab-ci.yml",
            "default:\n  image: alpine:3.20\n  before_script: [echo setup]\n  timeout: 20m\nvariables: {GLOBAL: g}\nnormal: {script: x}\nbare:\n  inherit: {default: false, variables: false}\n  image: busybox\n  script: y\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/normal: on_success", "test/bare: on_success"],
        fields: &[
            ("normal", "timeout", "1200"),
            ("bare", "before_script", ""),
            ("bare", "var:GLOBAL", "<unset>"),
            ("normal", "var:GLOBAL", "g"),
        ],
    },
    Case {
        name: "a conditional include",
        files: &[
            (
                ".gitlab-ci.yml",
                "include:\n  - local: ci/release.yml\n    rules: [{if: $CI_COMMIT_TAG}]\n  - local: ci/test.yml\n",
            ),
            ("ci/release.yml", "release: {script: release}\n"),
            ("ci/test.yml", "test: {script: test}\n"),
        ],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/test: on_success"],
        fields: &[],
    },
    Case {
        name: "nested includes with a template overridden by the main file",
        files: &[
            (
                ".gitlab-ci.yml",
                "include: ci/all.yml\nunit:\n  variables: {LEVEL: main}\n",
            ),
            (
                "ci/all.yml",
                "include: [ci/base.yml]\nunit:\n  extends: .base\n  variables: {LEVEL: included, OTHER: kept}\n",
            ),
            (
                "ci/base.yml",
                ".base:\n  image: maven:3.9\n  script: [mvn test]\n",
            ),
        ],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["test/unit: on_success"],
        fields: &[
            ("unit", "var:LEVEL", "main"),
            ("unit", "var:OTHER", "kept"),
            ("unit", "image", "maven:3.9"),
        ],
    },
    Case {
        name: "a main file with a spec header and its input defaults",
        files: &[(
            ".gitlab-ci.yml",
            "spec:\n  inputs:\n    environment: {default: staging}\n---\ndeploy:\n  stage: deploy\n  script: deploy $[[ inputs.environment ]]\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &["deploy/deploy: on_success"],
        fields: &[("deploy", "script", "deploy staging")],
    },
    Case {
        name: "timeouts, allowed failures and delayed jobs",
        files: &[(
            ".gitlab-ci.yml",
            "slow:\n  timeout: 3h 30m\n  script: long\nflaky:\n  allow_failure: {exit_codes: [137]}\n  script: flaky\ncanary:\n  stage: deploy\n  when: delayed\n  start_in: 30 minutes\n  script: canary\nhotfix:\n  stage: deploy\n  when: manual\n  script: hotfix\n",
        )],
        on: On::Branch("main"),
        changed: &[],
        jobs: &[
            "test/slow: on_success",
            "test/flaky: on_success",
            "deploy/canary: delayed",
            "deploy/hotfix: manual",
        ],
        fields: &[
            ("slow", "timeout", "12600"),
            ("flaky", "allow_failure", "true"),
            ("hotfix", "allow_failure", "true"),
        ],
    },
];

#[test]
fn pipelines_shaped_like_real_projects() {
    assert!(CASES.len() >= 25, "{} cases", CASES.len());
    for case in CASES {
        let files = Files(
            case.files
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let p = Pipeline::parse_with(case.files[0].1, ".gitlab-ci.yml", &files)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let predefined = predefined(case.on);
        let changed = |_: Option<&str>| Some(case.changed.iter().map(|s| s.to_string()).collect());
        let project_files = || files.files();
        let env = Environment {
            predefined: &predefined,
            changed: &changed,
            files: &project_files,
            ..Environment::NONE
        };
        let jobs = p
            .resolve_all(&[], &env)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let listed: Vec<String> = jobs
            .iter()
            .map(|j| format!("{}/{}: {}", j.stage, j.name, j.when))
            .collect();
        let mut by_stage = listed.clone();
        let stages = p.stages();
        by_stage.sort_by_key(|l| stages.iter().position(|s| l.starts_with(&format!("{s}/"))));
        assert_eq!(by_stage, case.jobs, "{}", case.name);
        for (job, name, want) in case.fields {
            let j = jobs
                .iter()
                .find(|j| j.name == *job)
                .unwrap_or_else(|| panic!("{}: no job {job}", case.name));
            assert_eq!(field(j, name), *want, "{}: {job} {name}", case.name);
        }
    }
}
