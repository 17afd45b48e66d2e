use super::*;

/// A job as executors/custom/custom.go::createJobResponseFile writes it (every field of
/// `spec.Job`, nil slices as `null`, `&` escaped as Go's encoder does), pretty-printed here.
const FIXTURE: &str = include_str!("job_response.json");

fn write_fixture(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("response.json");
    std::fs::write(&path, text).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> ExecutorEnv {
    ExecutorEnv::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// `key`, `value` and flags: p(ublic) i(nternal) f(ile) m(asked) r(aw).
fn var(key: &str, value: &str, flags: &str) -> Variable {
    Variable {
        key: key.into(),
        value: value.into(),
        public: flags.contains('p'),
        internal: flags.contains('i'),
        file: flags.contains('f'),
        masked: flags.contains('m'),
        raw: flags.contains('r'),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The runner's environment for the fixture's job: every variable of the job as
/// `CUSTOM_ENV_*` (values expanded, file variables as their content), plus its own.
fn runner_env(response_file: &Path) -> ExecutorEnv {
    env(&[
        ("JOB_RESPONSE_FILE", response_file.to_str().unwrap()),
        ("BUILD_FAILURE_EXIT_CODE", "1"),
        ("CUSTOM_ENV_CI_JOB_TOKEN", "glcbt-64_jobtoken"),
        ("CUSTOM_ENV_CI_REGISTRY_PASSWORD", "glcbt-64_jobtoken"),
        ("CUSTOM_ENV_CI_PROJECT_PATH", "group/app"),
        ("CUSTOM_ENV_DB_PASSWORD", "s3cr3t&more"),
        ("CUSTOM_ENV_DB_URL", "postgres://app:s3cr3t&more@db/app"),
        ("CUSTOM_ENV_KUBECONFIG", "apiVersion: v1"),
        ("CUSTOM_ENV_SEED", "-- seed"),
        ("CUSTOM_ENV_DOCKER_AUTH_CONFIG", r#"{"auths":{}}"#),
        ("CUSTOM_ENV_POSTGRES_DB", "app"),
        ("CUSTOM_ENV_DATA_DIR", "/builds/group/app/data"),
        ("CUSTOM_ENV_CONN", "postgres://app:$DB_PASSWORD@db/app"),
        ("CUSTOM_ENV_LITERAL", "$CI_PROJECT_DIR"),
        // The runner's own: predefined, config.toml `environment`, a TLS file variable.
        ("CUSTOM_ENV_CI_PROJECT_DIR", "/builds/group/app"),
        (
            "CUSTOM_ENV_RUNNER_TEMP_PROJECT_DIR",
            "/builds/group/app.tmp",
        ),
        ("CUSTOM_ENV_BUILD_USER", "1000:1000"),
        ("CUSTOM_ENV_RUNNER_SITE_TOKEN", "from-config-toml"),
        (
            "CUSTOM_ENV_CI_SERVER_TLS_CA_FILE",
            "-----BEGIN CERTIFICATE-----",
        ),
        // Resolved `secrets:`.
        ("CUSTOM_ENV_VAULT_TOKEN_FILE", "hvs.vault-secret"),
        ("CUSTOM_ENV_API_KEY", "api-secret"),
        (
            "CUSTOM_ENV_CI_JOB_SERVICES",
            r#"[{"name":"postgres:16","alias":"db"}]"#,
        ),
    ])
}

#[test]
fn the_runners_file_reads_into_the_drivers_subset() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(dir.path(), FIXTURE);
    let p = JobPayload::read(&path).unwrap();
    assert_eq!(p.source, PayloadSource::File(path));
    assert_eq!((p.id, p.token.as_str()), (4711, "glcbt-64_jobtoken"));
    assert_eq!(
        (p.job_info.project_id, p.job_info.name.as_str()),
        (42, "test")
    );
    assert_eq!(p.job_info.project_full_path, "group/app");
    assert_eq!(p.runner_info.timeout(), Some(Duration::from_secs(3600)));
    assert_eq!(p.variables.len(), 12);
    assert_eq!(p.variables[3], var("DB_PASSWORD", "s3cr3t&more", "m"));
    assert_eq!(p.variables[5], var("KUBECONFIG", "apiVersion: v1", "f"));
    assert_eq!(p.variables[11], var("LITERAL", "$CI_PROJECT_DIR", "pr"));
    assert_eq!(p.features.token_mask_prefixes, ["glpat-", "glcbt-"]);
    assert_eq!(p.secrets.get("API_KEY").map(|s| s.file), Some(Some(false)));
    assert_eq!(
        p.secrets.get("VAULT_TOKEN_FILE").map(|s| s.file),
        Some(None)
    );

    let image = &p.image;
    assert_eq!(image.entrypoint, [""]);
    assert_eq!(image.entrypoint_override(), Some(vec![]));
    assert_eq!(
        image.pull_policies().unwrap(),
        [Policy::IfNotPresent, Policy::Always]
    );
    assert_eq!(image.executor_opts.docker.platform, "linux/arm64");
    assert_eq!(image.executor_opts.docker.user, "${BUILD_USER}");
    assert_eq!(
        p.image_spec().unwrap(),
        Some(ImageSpec {
            name: "registry.example.com/group/app/ci:1.2".into(),
            entrypoint: Some(vec![]),
            pull_policy: vec!["if-not-present".into(), "always".into()],
        })
    );

    let (pg, cache) = (&p.services[0], &p.services[1]);
    assert_eq!(pg.aliases(), ["db", "pg", "sql"]);
    assert_eq!(pg.entrypoint_override(), None, "absent: the image's own");
    assert_eq!(pg.ports[0].number, 5432);
    assert_eq!(pg.variables[3], var("TEMPLATE", "$POSTGRES_DB", "pr"));
    assert_eq!(cache.executor_opts.docker.user, "1000");
    assert_eq!(cache.pull_policies().unwrap(), [Policy::Never]);

    let registries: Vec<&str> = p
        .registry_credentials()
        .iter()
        .map(|c| c.url.as_str())
        .collect();
    assert_eq!(registries, ["registry.example.com", "gitlab.example.com"]);
}

#[test]
fn services_take_every_alias_after_gitlabs_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = JobPayload::read(&write_fixture(dir.path(), FIXTURE)).unwrap();
    let specs = p.service_specs().unwrap();
    assert_eq!(specs[0].aliases, ["postgres", "db", "pg", "sql"]);
    assert_eq!(
        specs[0].command.as_deref(),
        Some(&["postgres".to_string(), "-c".into(), "fsync=off".into()][..])
    );
    assert_eq!(specs[0].image.entrypoint, None);
    // `db` went to the first service (executors/docker/services.go warns and skips it).
    assert_eq!(
        specs[1].aliases,
        [
            "registry.example.com__tools__cache-server",
            "registry.example.com-tools-cache-server",
            "cache"
        ]
    );
    assert_eq!(
        specs[1].image.entrypoint.as_deref(),
        Some(&["/bin/sh".to_string(), "-c".into()][..])
    );
    assert_eq!(specs[1].image.pull_policy, ["never"]);
    assert_eq!(specs[1].command, None);
}

#[test]
fn the_environment_picks_the_file_and_adds_the_runners_variables() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(dir.path(), FIXTURE);
    let p = JobPayload::of(&runner_env(&path)).unwrap();
    assert_eq!(p.source, PayloadSource::File(path));
    let runner: Vec<(&str, bool, bool, bool)> = p
        .runner_variables
        .iter()
        .map(|v| (v.key.as_str(), v.internal, v.file, v.masked))
        .collect();
    assert_eq!(
        runner,
        [
            ("BUILD_USER", true, false, false),
            ("CI_PROJECT_DIR", true, false, false),
            ("CI_SERVER_TLS_CA_FILE", true, true, false),
            ("RUNNER_SITE_TOKEN", true, false, false),
            ("RUNNER_TEMP_PROJECT_DIR", true, false, false),
            // `secrets:`: masked, files unless `file: false`.
            ("API_KEY", false, false, true),
            ("VAULT_TOKEN_FILE", false, true, true),
        ]
    );
    let all = p.all_variables();
    let value = |k: &str| {
        all.iter()
            .rev()
            .find(|v| v.key == k)
            .map(|v| v.value.as_str())
    };
    assert_eq!(value("DB_URL"), Some("postgres://app:s3cr3t&more@db/app"));
    assert_eq!(value("DATA_DIR"), Some("/builds/group/app/data"));
    // One expansion only: `$DB_URL` is replaced by DB_URL as written.
    assert_eq!(value("CONN"), Some("postgres://app:$DB_PASSWORD@db/app"));
    assert_eq!(value("LITERAL"), Some("$CI_PROJECT_DIR"));
    assert_eq!(p.expand(&p.image.executor_opts.docker.user), "1000:1000");

    assert_eq!(
        p.service_env(0),
        pairs(&[
            ("BUILD_USER", "1000:1000"),
            ("CI_PROJECT_DIR", "/builds/group/app"),
            (
                "CI_SERVER_TLS_CA_FILE",
                "/builds/group/app.tmp/CI_SERVER_TLS_CA_FILE"
            ),
            ("RUNNER_SITE_TOKEN", "from-config-toml"),
            ("RUNNER_TEMP_PROJECT_DIR", "/builds/group/app.tmp"),
            ("CI_PROJECT_PATH", "group/app"),
            ("SEED", "/builds/group/app.tmp/SEED"),
            ("POSTGRES_DB", "app"),
            ("DATA_DIR", "/builds/group/app/data"),
            ("CONN", "postgres://app:$DB_PASSWORD@db/app"),
            ("LITERAL", "$CI_PROJECT_DIR"),
            ("POSTGRES_PASSWORD", "s3cr3t&more"),
            ("PGDATA", "/builds/group/app/data/pg"),
            ("POSTGRES_DB", "app_test"),
            ("TEMPLATE", "$POSTGRES_DB"),
        ])
    );
    assert_eq!(
        p.service_specs().unwrap()[0].variables,
        pairs(&[
            ("POSTGRES_PASSWORD", "s3cr3t&more"),
            ("PGDATA", "/builds/group/app/data/pg"),
            ("POSTGRES_DB", "app_test"),
            ("TEMPLATE", "$POSTGRES_DB"),
        ])
    );
    assert_eq!(
        p.service_env(1).len(),
        11,
        "no variables of its own: the job's public and internal ones"
    );

    assert_eq!(
        p.masked_values(),
        [
            "glcbt-64_jobtoken",
            "s3cr3t&more",
            "api-secret",
            "hvs.vault-secret"
        ]
    );
}

#[test]
fn debug_output_keeps_secrets_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(dir.path(), FIXTURE);
    let p = JobPayload::of(&runner_env(&path)).unwrap();
    let shown = format!("{p:?}");
    for secret in [
        "glcbt-64_jobtoken",
        "s3cr3t",
        "not-a-registry",
        "api-secret",
        "hvs.vault-secret",
        "from-config-toml",
        "apiVersion",
        "auths",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("group/app") && shown.contains("<redacted>"));
}

#[test]
fn without_the_file_the_job_comes_from_custom_env() {
    let e = env(&[
        ("CUSTOM_ENV_CI_JOB_ID", "7"),
        ("CUSTOM_ENV_CI_JOB_TOKEN", "job-token"),
        ("CUSTOM_ENV_CI_JOB_IMAGE", "alpine:3"),
        ("CUSTOM_ENV_CI_JOB_TIMEOUT", "600"),
        ("CUSTOM_ENV_CI_PROJECT_ID", "42"),
        ("CUSTOM_ENV_CI_REGISTRY", "registry.example.com"),
        ("CUSTOM_ENV_CI_REGISTRY_USER", "gitlab-ci-token"),
        ("CUSTOM_ENV_CI_REGISTRY_PASSWORD", "job-token"),
        ("CUSTOM_ENV_DOCKER_AUTH_CONFIG", r#"{"auths":{}}"#),
        ("CUSTOM_ENV_GLOBAL", "g"),
        // As a 19.0+ runner writes it: the first alias, variables already expanded.
        (
            "CUSTOM_ENV_CI_JOB_SERVICES",
            r#"[{"name":"postgres:16","alias":"db","entrypoint":null,"command":["postgres"],"variables":{"PGDATA":"$X-is-final","POSTGRES_PASSWORD":"pw"}},{"name":"redis","alias":"","entrypoint":[""],"command":null}]"#,
        ),
    ]);
    let p = JobPayload::of(&e).unwrap();
    assert_eq!(p.source, PayloadSource::Environment);
    assert_eq!((p.id, p.token.as_str()), (7, "job-token"));
    assert_eq!(p.job_info.project_id, 42);
    assert_eq!(p.runner_info.timeout(), Some(Duration::from_secs(600)));
    assert_eq!(p.image_spec().unwrap().unwrap().name, "alpine:3");
    let specs = p.service_specs().unwrap();
    assert_eq!(specs[0].aliases, ["postgres", "db"]);
    assert_eq!(specs[1].image.entrypoint, Some(vec![]));
    // Nothing tells a public variable from a secret: services get only their own.
    assert_eq!(
        p.service_env(0),
        pairs(&[("PGDATA", "$X-is-final"), ("POSTGRES_PASSWORD", "pw")])
    );
    assert!(p.service_env(1).is_empty());
    assert_eq!(p.masked_values(), ["job-token", "{\"auths\":{}}"]);
    let registry = p.registry_credentials();
    assert_eq!(registry.len(), 1);
    assert_eq!(
        (registry[0].url.as_str(), registry[0].password.as_str()),
        ("registry.example.com", "job-token")
    );
    // The older methods read the same environment.
    assert_eq!(e.services().unwrap()[0].aliases, specs[0].aliases);

    for (services, want) in [
        ("{", "not a JSON list"),
        (r#"[{"alias":"x"}]"#, "has no name"),
    ] {
        let err = JobPayload::of(&env(&[("CUSTOM_ENV_CI_JOB_SERVICES", services)])).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
}

/// The docker executor's service environment: common/build.go::GetServiceVariables (and
/// its test TestGetServiceVariables), common/spec/variables.go::ExpandWith, StringList,
/// Get; common/config.go::GetVariables for config.toml `environment` being internal.
#[test]
fn service_env_table() {
    struct Case {
        name: &'static str,
        runner: Vec<Variable>,
        job: Vec<Variable>,
        service: Vec<Variable>,
        want: &'static [(&'static str, &'static str)],
    }
    let tmp = || var("RUNNER_TEMP_PROJECT_DIR", "/b.tmp", "pir");
    let cases = [
        Case {
            name: "a public job variable reaches the service",
            runner: vec![],
            job: vec![var("PUBLIC", "v", "p")],
            service: vec![],
            want: &[("PUBLIC", "v")],
        },
        Case {
            name: "project variables, the job token and DOCKER_AUTH_CONFIG do not",
            runner: vec![],
            job: vec![
                var("SECRET", "s", ""),
                var("CI_JOB_TOKEN", "t", "m"),
                var("DOCKER_AUTH_CONFIG", "{}", ""),
            ],
            service: vec![],
            want: &[],
        },
        Case {
            name: "the runner's internal variables do, config.toml environment included",
            runner: vec![
                var("CI_PROJECT_DIR", "/b", "ir"),
                var("DOCKER_AUTH_CONFIG", "{}", "ir"),
            ],
            job: vec![],
            service: vec![],
            want: &[("CI_PROJECT_DIR", "/b"), ("DOCKER_AUTH_CONFIG", "{}")],
        },
        Case {
            name: "a public variable is expanded against internal ones",
            runner: vec![var("CI_PROJECT_DIR", "/b", "ir")],
            job: vec![var("DATA", "$CI_PROJECT_DIR/data", "p")],
            service: vec![],
            want: &[("CI_PROJECT_DIR", "/b"), ("DATA", "/b/data")],
        },
        Case {
            name: "a service variable may name a non-public one (dotenv, 19.3+)",
            runner: vec![],
            job: vec![var("DOTENV", "d", "")],
            service: vec![var("FROM_DOTENV", "$DOTENV", "")],
            want: &[("FROM_DOTENV", "d")],
        },
        Case {
            name: "a raw service variable stays as written",
            runner: vec![],
            job: vec![var("DOTENV", "d", "")],
            service: vec![var("RAW", "$DOTENV", "r")],
            want: &[("RAW", "$DOTENV")],
        },
        Case {
            name: "a public variable naming a secret through another is not re-expanded",
            runner: vec![],
            job: vec![
                var("DB_PASSWORD", "secret", "m"),
                var("DB_URL", "pg://u:$DB_PASSWORD@h", ""),
                var("CONN", "$DB_URL", "p"),
            ],
            service: vec![],
            want: &[("CONN", "pg://u:$DB_PASSWORD@h")],
        },
        Case {
            name: "a file variable is its path in the job's temporary directory",
            runner: vec![tmp()],
            job: vec![var("SEED", "-- sql", "pf")],
            service: vec![],
            want: &[
                ("RUNNER_TEMP_PROJECT_DIR", "/b.tmp"),
                ("SEED", "/b.tmp/SEED"),
            ],
        },
        Case {
            name: "a service variable naming a non-public file variable gets its path",
            runner: vec![tmp()],
            job: vec![var("KUBECONFIG", "apiVersion: v1", "f")],
            service: vec![var("KUBE", "$KUBECONFIG", "")],
            want: &[
                ("RUNNER_TEMP_PROJECT_DIR", "/b.tmp"),
                ("KUBE", "/b.tmp/KUBECONFIG"),
            ],
        },
        Case {
            name: "an undefined name is empty, $$ is $, ${} is dropped",
            runner: vec![],
            job: vec![],
            service: vec![var("A", "x${NOPE}y", ""), var("B", "$$1${}", "")],
            want: &[("A", "xy"), ("B", "$1")],
        },
        Case {
            name: "a resolved secret stays out unless a service variable names it",
            runner: vec![var("API_KEY", "k", "mr")],
            job: vec![],
            service: vec![var("KEY", "$API_KEY", "")],
            want: &[("KEY", "k")],
        },
        Case {
            name: "a service variable comes after the job's of the same name",
            runner: vec![],
            job: vec![var("POSTGRES_DB", "app", "p")],
            service: vec![var("POSTGRES_DB", "app_test", "")],
            want: &[("POSTGRES_DB", "app"), ("POSTGRES_DB", "app_test")],
        },
        Case {
            name: "service variables see each other unexpanded, the later of a name wins",
            runner: vec![],
            job: vec![],
            service: vec![var("A", "1", ""), var("B", "$A", ""), var("A", "2", "")],
            want: &[("A", "1"), ("B", "2"), ("A", "2")],
        },
    ];
    for case in cases {
        let p = JobPayload {
            runner_variables: case.runner,
            variables: case.job,
            services: vec![JobImage {
                name: "svc".into(),
                variables: case.service,
                ..JobImage::default()
            }],
            ..JobPayload::default()
        };
        assert_eq!(p.service_env(0), pairs(case.want), "{}", case.name);
    }
}

/// Go's os.Expand with the runner's Variables.Get.
#[test]
fn expansion_follows_go() {
    let vars = [
        var("A", "a", ""),
        var("A_B1c", "long", ""),
        var("B", "b", ""),
    ];
    let cases = [
        ("$A", "a"),
        ("${A}", "a"),
        ("$A$B", "ab"),
        ("$A_B1c-", "long-"),
        ("é$A", "éa"),
        ("${A B}", ""),
        ("$", "$"),
        ("a$", "a$"),
        ("$ x", "$ x"),
        ("$$", "$"),
        ("$1$*${#}", ""),
        ("$-", ""),
        ("${}", ""),
        ("x${", "x"),
        ("${A", "A"),
        ("$NOPE.", "."),
    ];
    for (input, want) in cases {
        assert_eq!(go_expand(input, |n| lookup(&vars, n)), want, "{input:?}");
    }
    for (dir, name, want) in [
        ("/b.tmp", "F", "/b.tmp/F"),
        ("/b.tmp/", "F", "/b.tmp/F"),
        ("", "F", "F"),
        ("/a/./b/../c", "F", "/a/c/F"),
        ("rel/..", "F", "F"),
    ] {
        assert_eq!(join_path(dir, name), want, "{dir:?} {name:?}");
    }
}

#[test]
fn pull_policies_table() {
    let image = |p: &[&str]| JobImage {
        name: "redis:7".into(),
        pull_policy: p.iter().map(|s| s.to_string()).collect(),
        ..JobImage::default()
    };
    type Want<'a> = Result<&'a [Policy], &'a str>;
    let cases: &[(&[&str], Want)] = &[
        (&[], Ok(&[])),
        (&["always"], Ok(&[Policy::Always])),
        (
            &["if-not-present", "never"],
            Ok(&[Policy::IfNotPresent, Policy::Never]),
        ),
        // skiff's own alias is not a runner value.
        (
            &["missing"],
            Err(r#"image "redis:7": unsupported pull_policy "missing""#),
        ),
        (&["always", ""], Err(r#"unsupported pull_policy """#)),
    ];
    for (policies, want) in cases {
        match (image(policies).pull_policies(), want) {
            (Ok(got), Ok(want)) => assert_eq!(&got, want),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
            (got, want) => panic!("{policies:?}: {got:?}, want {want:?}"),
        }
    }
    let p = JobPayload {
        services: vec![image(&["sometimes"])],
        ..JobPayload::default()
    };
    assert!(p.service_specs().is_err());
}

#[test]
fn malformed_files_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let cases: &[(&str, serde_json::Value, &str, &str)] = &[
        (
            "/services/1/entrypoint",
            "sh-not-a-list".into(),
            "services[1].entrypoint",
            "expected a sequence",
        ),
        (
            "/variables/3/public",
            "yes-please".into(),
            "variables[3].public",
            "expected a boolean",
        ),
        (
            "/image/executor_opts/docker/user",
            true.into(),
            "image.executor_opts.docker.user",
            "expected a string or an integer",
        ),
        (
            "/credentials/0/password",
            123456.into(),
            "credentials[0].password",
            "integer",
        ),
        (
            "/token",
            serde_json::json!(["glcbt-x"]),
            "token",
            "sequence",
        ),
        ("/id", "4711".into(), "id", "expected i64"),
        (
            "/runner_info/timeout",
            1.5.into(),
            "runner_info.timeout",
            "floating point",
        ),
        (
            "/services/0/ports/0/number",
            70000.into(),
            "services[0].ports[0].number",
            "u16",
        ),
    ];
    for (pointer, bad, field, reason) in cases {
        let mut doc = fixture.clone();
        *doc.pointer_mut(pointer).unwrap() = bad.clone();
        // As the runner writes it: one line.
        let path = write_fixture(dir.path(), &serde_json::to_string(&doc).unwrap());
        let err = JobPayload::read(&path).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, PayloadError::Malformed { field: f, .. } if f == field),
            "{pointer}: {text}"
        );
        assert!(text.contains(path.to_str().unwrap()), "{text}");
        assert!(text.contains(reason), "{pointer}: {text}");
        // The offending value is never quoted back.
        let value = bad.to_string();
        assert!(!text.contains(value.trim_matches('"')), "{text}");
    }

    for (text, want) in [
        (&FIXTURE[..200], "EOF while parsing"),
        ("{} {}", "trailing characters"),
    ] {
        let path = write_fixture(dir.path(), text);
        let err = JobPayload::read(&path).unwrap_err().to_string();
        assert!(err.contains(want) && err.contains("response.json"), "{err}");
    }
    let missing = dir.path().join("gone.json");
    let err = JobPayload::read(&missing).unwrap_err();
    assert!(matches!(err, PayloadError::Read { .. }));
    assert!(err.to_string().contains("gone.json"), "{err}");
    let err =
        JobPayload::of(&env(&[("JOB_RESPONSE_FILE", missing.to_str().unwrap())])).unwrap_err();
    assert!(err.to_string().contains("gone.json"), "{err}");
}

#[test]
fn serde_messages_lose_the_values_they_quote() {
    for (message, want) in [
        (
            r#"invalid type: string "s3cr\"et, expected x", expected a boolean at line 1 column 9"#,
            "invalid type: string, expected a boolean at line 1 column 9",
        ),
        (
            "invalid type: integer `123456`, expected a string at line 1 column 5",
            "invalid type: integer, expected a string at line 1 column 5",
        ),
        (
            "invalid value: floating point `1.5`, expected i64",
            "invalid value: floating point, expected i64",
        ),
        (
            "invalid type: sequence, expected a string",
            "invalid type: sequence, expected a string",
        ),
        (
            "EOF while parsing a value at line 1 column 0",
            "EOF while parsing a value at line 1 column 0",
        ),
    ] {
        assert_eq!(without_values(message), want);
    }
}

#[test]
fn null_fields_read_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(
        dir.path(),
        r#"{"id":1,"token":null,"variables":null,"image":{"name":"a","entrypoint":null,"executor_opts":{"docker":{"user":null}}},"services":null,"credentials":null,"runner_info":{"timeout":0}}"#,
    );
    let p = JobPayload::read(&path).unwrap();
    assert!(p.variables.is_empty() && p.services.is_empty() && p.credentials.is_empty());
    assert_eq!(p.image.executor_opts.docker.user, "");
    assert_eq!(p.runner_info.timeout(), None);
    assert!(p.masked_values().is_empty());
    assert_eq!(p.image_spec().unwrap().unwrap().entrypoint, None);
    assert_eq!(JobPayload::default().image_spec().unwrap(), None);
}
