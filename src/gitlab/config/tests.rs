use super::*;

fn parse(text: &str) -> Result<AdminConfig, ConfigError> {
    AdminConfig::parse(text, Path::new("/etc/skiff/gitlab.toml"))
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const TOP_LEVEL: &str = r#"
image = "ruby:3.3"
pull_policy = ["always", "if-not-present"]
allowed_pull_policies = ["always", "if-not-present"]
allowed_images = ["ruby:*", "registry.example.com/**/*:*"]
allowed_services = ["postgres:*"]
helper_image = "registry.example.com/helper:x86_64-v${CI_RUNNER_VERSION}"
helper_image_flavor = "ubuntu"
volumes = ["/cache", "/srv/data:/data:ro", "/scratch:rw"]
cache_dir = "/var/cache/skiff"
cap_add = ["NET_ADMIN"]
cap_drop = ["cap_chown"]
dns = ["9.9.9.9", "2620:fe::fe"]
extra_hosts = ["db.example:10.0.0.5", "v6.example:::1"]
memory = "512m"
cpus = "1.5"
service_memory = "1g"
service_cpus = 0.5
shm_size = 300000
user = "1000:1000"
network_mode = "pasta"
wait_for_services_timeout = -1
services_limit = 3
disable_entrypoint_overwrite = true
tls_verify = true

[tmpfs]
"/var/lib/mysql" = "rw,noexec"
"/tmp" = ""

[services_tmpfs]
"/run" = "size=1m"

[[services]]
name = "postgres:16"
alias = "db, pg"
command = ["postgres", "-c", "fsync=off"]
environment = ["POSTGRES_PASSWORD=secret", "POSTGRES_DB=test"]

[[services]]
name = "redis:7"
entrypoint = ["redis-server"]
"#;

/// The same settings as `[runners.docker]` pasted from config.toml.
const PASTED: &str = r#"
[runners.docker]
  image = "ruby:3.3"
  pull_policy = ["always", "if-not-present"]
  allowed_pull_policies = ["always", "if-not-present"]
  allowed_images = ["ruby:*", "registry.example.com/**/*:*"]
  allowed_services = ["postgres:*"]
  helper_image = "registry.example.com/helper:x86_64-v${CI_RUNNER_VERSION}"
  helper_image_flavor = "ubuntu"
  volumes = ["/cache", "/srv/data:/data:ro", "/scratch:rw"]
  cache_dir = "/var/cache/skiff"
  cap_add = ["NET_ADMIN"]
  cap_drop = ["cap_chown"]
  dns = ["9.9.9.9", "2620:fe::fe"]
  extra_hosts = ["db.example:10.0.0.5", "v6.example:::1"]
  memory = "512m"
  cpus = "1.5"
  service_memory = "1g"
  service_cpus = 0.5
  shm_size = 300000
  user = "1000:1000"
  network_mode = "pasta"
  wait_for_services_timeout = -1
  services_limit = 3
  disable_entrypoint_overwrite = true
  tls_verify = true
  [runners.docker.tmpfs]
    "/var/lib/mysql" = "rw,noexec"
    "/tmp" = ""
  [runners.docker.services_tmpfs]
    "/run" = "size=1m"
  [[runners.docker.services]]
    name = "postgres:16"
    alias = "db, pg"
    command = ["postgres", "-c", "fsync=off"]
    environment = ["POSTGRES_PASSWORD=secret", "POSTGRES_DB=test"]
  [[runners.docker.services]]
    name = "redis:7"
    entrypoint = ["redis-server"]
"#;

#[test]
fn a_good_file_in_both_forms() {
    let top = parse(TOP_LEVEL).unwrap();
    assert_eq!(top.image.as_deref(), Some("ruby:3.3"));
    assert_eq!(top.pull_policy, vec![Policy::Always, Policy::IfNotPresent]);
    assert_eq!(top.allowed_pull_policies, top.pull_policy);
    assert_eq!(
        top.allowed_images,
        strings(&["ruby:*", "registry.example.com/**/*:*"])
    );
    assert_eq!(top.allowed_services, strings(&["postgres:*"]));
    assert_eq!(top.helper_image_flavor.as_deref(), Some("ubuntu"));
    assert_eq!(
        top.volumes,
        vec![
            VolumeSpec::Anonymous {
                destination: "/cache".into(),
                read_only: false
            },
            VolumeSpec::Bind {
                source: "/srv/data".into(),
                destination: "/data".into(),
                read_only: true
            },
            VolumeSpec::Anonymous {
                destination: "/scratch".into(),
                read_only: false
            },
        ]
    );
    assert_eq!(top.cache_dir, Some(PathBuf::from("/var/cache/skiff")));
    assert_eq!(top.cap_add, strings(&["NET_ADMIN"]));
    assert_eq!(top.cap_drop, strings(&["cap_chown"]));
    assert_eq!(top.dns, strings(&["9.9.9.9", "2620:fe::fe"]));
    assert_eq!(
        top.extra_hosts,
        vec![
            ("db.example".to_string(), "10.0.0.5".to_string()),
            ("v6.example".to_string(), "::1".to_string()),
        ]
    );
    assert_eq!(top.memory, Some(512 << 20));
    assert_eq!(top.cpus, Some(1.5));
    assert_eq!(top.service_memory, Some(1 << 30));
    assert_eq!(top.service_cpus, Some(0.5));
    assert_eq!(top.shm_size, Some(300000));
    assert_eq!(top.user.as_deref(), Some("1000:1000"));
    assert_eq!(top.network_mode.as_deref(), Some("pasta"));
    assert_eq!(top.wait_for_services_timeout, Some(-1));
    assert_eq!(top.services_wait_secs(), -1);
    assert_eq!(top.services_limit, Some(3));
    assert!(top.disable_entrypoint_overwrite);
    assert!(!top.disable_cache);
    assert_eq!(top.tmpfs, strings(&["/var/lib/mysql:rw,noexec", "/tmp"]));
    assert_eq!(top.services_tmpfs, strings(&["/run:size=1m"]));
    assert_eq!(
        top.services,
        vec![
            ServiceConfig {
                name: "postgres:16".into(),
                alias: Some("db, pg".into()),
                entrypoint: None,
                command: Some(strings(&["postgres", "-c", "fsync=off"])),
                environment: vec![
                    ("POSTGRES_PASSWORD".into(), "secret".into()),
                    ("POSTGRES_DB".into(), "test".into()),
                ],
            },
            ServiceConfig {
                name: "redis:7".into(),
                alias: None,
                entrypoint: Some(strings(&["redis-server"])),
                command: None,
                environment: vec![],
            },
        ]
    );
    assert_eq!(top.services[0].aliases(), strings(&["db", "pg"]));
    assert_eq!(
        top.ignored,
        vec![IgnoredKey {
            key: "tls_verify".into(),
            reason: "it configures the connection to a Docker daemon, which skiff does not use"
                .into()
        }]
    );

    let pasted = parse(PASTED).unwrap();
    let ignored = pasted.ignored.clone();
    assert_eq!(ignored[0].key, "runners.docker.tls_verify");
    assert_eq!(
        AdminConfig {
            ignored: vec![],
            ..pasted
        },
        AdminConfig {
            ignored: vec![],
            ..top
        }
    );
}

/// What `gitlab-runner register` writes, and the docker executor's documented example:
/// the unsupported keys hold their defaults, so the section is taken as it is.
#[test]
fn a_registered_section_pastes_unchanged() {
    let registered = r#"
[runners.docker]
  tls_verify = false
  image = "ruby:3.3"
  privileged = false
  disable_entrypoint_overwrite = false
  oom_kill_disable = false
  disable_cache = false
  volumes = ["/cache"]
  shm_size = 0
  network_mtu = 0
  dns_search = [""]
  devices = []
  host = ""
"#;
    let c = parse(registered).unwrap();
    assert_eq!(c.image.as_deref(), Some("ruby:3.3"));
    assert_eq!(c.shm_size, None);
    let keys: Vec<&str> = c.ignored.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "runners.docker.tls_verify",
            "runners.docker.privileged",
            "runners.docker.oom_kill_disable",
            "runners.docker.network_mtu",
            "runners.docker.dns_search",
            "runners.docker.devices",
            "runners.docker.host",
        ]
    );
    assert!(c.ignored[1].reason.starts_with("it holds its default"));
}

#[test]
fn an_empty_file_is_the_defaults() {
    let c = parse("# nothing yet\n").unwrap();
    assert_eq!(
        c,
        AdminConfig {
            source: Some("/etc/skiff/gitlab.toml".into()),
            ..AdminConfig::default()
        }
    );
    assert_eq!(c.services_wait_secs(), 30);
}

/// Each class of mistake, with the exact message: file, line, key, value, reason.
#[test]
fn bad_keys_and_values_are_named() {
    let f = "/etc/skiff/gitlab.toml";
    let cases: &[(&str, &str)] = &[
        (
            "image = \"a\"\nprivileged = true\n",
            "line 2: privileged = true: not supported: skiff has no privileged containers: a rootless user namespace cannot grant the host's devices and capabilities",
        ),
        (
            "[runners.docker]\n  pull_polcy = \"always\"\n",
            "line 2: runners.docker.pull_polcy: unknown key: not one of GitLab Runner's [runners.docker] keys",
        ),
        (
            "devices = [\"/dev/net/tun\"]\n",
            "line 1: devices = [\"/dev/net/tun\"]: not supported: a rootless container cannot be given the host's devices; skiff passes none",
        ),
        (
            "runtime = \"nvidia\"\n",
            "line 1: runtime = \"nvidia\": not supported: skiff is the container runtime: there is no other to choose",
        ),
        (
            "memory = true\n",
            "line 1: memory = true: expected a size such as \"512m\" or \"1g\", or bytes, not boolean",
        ),
        (
            "memory = \"lots\"\n",
            "line 1: memory = \"lots\": expected a size such as \"512m\" or \"1g\" (b, k, m, g, t, p), or bytes",
        ),
        (
            "cpus = \"-1\"\n",
            "line 1: cpus = \"-1\": expected a positive number of CPUs such as \"1.5\"",
        ),
        (
            "pull_policy = \"sometimes\"\n",
            "line 1: pull_policy = \"sometimes\": expected always, if-not-present or never",
        ),
        (
            "allowed_pull_policies = [\"always\", \"missing\"]\n",
            "line 1: allowed_pull_policies[1] = \"missing\": expected always, if-not-present or never",
        ),
        (
            "network_mode = \"host\"\n",
            "line 1: network_mode = \"host\": not supported: a job's pod needs a network namespace of its own: its services and build container meet on its 127.0.0.1, and two jobs' services would take the same host ports; slirp4netns or pasta give outbound access",
        ),
        (
            "network_mode = \"my-net\"\n",
            "line 1: network_mode = \"my-net\": not supported: skiff makes no docker networks: each job's pod has a network namespace of its own (network_mode): use bridge (skiff's default), none, private, slirp4netns or pasta",
        ),
        (
            "volumes = [\"/cache\", \"certs:/certs\"]\n",
            "line 1: volumes[1] = \"certs:/certs\": named volumes are not supported: skiff has no docker volumes; give a host directory (an absolute path) or only the container path",
        ),
        (
            "volumes = [\"/src:/dst:z\"]\n",
            "line 1: volumes[0] = \"/src:/dst:z\": mode \"z\" is not supported: skiff takes ro or rw (no O overlays, z/Z relabelling or propagation)",
        ),
        (
            "userns_mode = \"remap\"\n",
            "line 1: userns_mode = \"remap\": not supported: skiff takes auto (\"\", the default: ids of the job's own from the containers subordinate range) or host",
        ),
        (
            "volumes = [\"/a\", \"/b:/a\"]\n",
            "line 1: volumes = \"/a\": two volumes at the same destination",
        ),
        (
            "cache_dir = \"cache\"\n",
            "line 1: cache_dir = \"cache\": expected an absolute path (the driver runs in the runner's working directory)",
        ),
        (
            "dns = [\"8.8.8.8\",\n  \"dns.example\"]\n",
            "line 2: dns[1] = \"dns.example\": not an IP address",
        ),
        (
            "extra_hosts = [\"db\"]\n",
            "line 1: extra_hosts[0] = \"db\": expected HOST:IP, with an IP address",
        ),
        (
            "cap_add = [\"FLY\"]\n",
            "line 1: cap_add[0] = \"FLY\": not a capability: expected a name such as NET_ADMIN, or ALL",
        ),
        (
            "allowed_images = [\"ruby:[23\"]\n",
            "line 1: allowed_images[0] = \"ruby:[23\": not a valid pattern (a [ is not closed): it would match no image",
        ),
        (
            "[tmpfs]\n\"tmp\" = \"\"\n",
            "line 2: tmpfs.\"tmp\" = \"\": the path must be absolute, and not /",
        ),
        (
            "[[services]]\nname = \"pg\"\nvariables = [\"A=1\"]\n",
            "line 3: services[0].variables: unknown key: a service has name, alias, entrypoint, command, environment",
        ),
        (
            "[[services]]\nalias = \"db\"\n",
            "line 1: services[0]: a service needs a name (its image)",
        ),
        (
            "[[services]]\nname = \"pg\"\nenvironment = [\"PASSWORD\"]\n",
            "line 3: services[0].environment[0]: expected KEY=VALUE",
        ),
        (
            "[[services]]\nname = \"pg\"\nenvironment = \"PASSWORD=hunter22\"\n",
            "line 3: services[0].environment: expected an array of \"KEY=VALUE\", not string",
        ),
        (
            "[services]\nname = \"pg\"\n",
            "line 1: services: expected [[services]] tables, not table",
        ),
        (
            "[[runners]]\nname = \"x\"\n[runners.docker]\nimage = \"a\"\n",
            "line 1: runners: [[runners]] is a whole runner: copy only its [runners.docker] section, with its [[runners.docker.services]]",
        ),
        (
            "image = \"a\"\n[runners.docker]\nmemory = \"1g\"\n",
            "line 1: image: a top-level key cannot be mixed with [runners.docker]: put it in that section, or write every key at the top level",
        ),
        (
            "[runners.cache]\nType = \"s3\"\n[runners.docker]\nimage = \"a\"\n",
            "line 1: runners.cache: only [runners.docker] is read from this file",
        ),
        (
            "wait_for_services_timeout = \"30s\"\n",
            "line 1: wait_for_services_timeout = \"30s\": expected an integer, not string",
        ),
    ];
    for (text, want) in cases {
        match parse(text) {
            Err(e @ ConfigError::Invalid { .. }) => {
                assert_eq!(e.to_string(), format!("{f}: {want}"), "for {text:?}")
            }
            other => panic!("{text:?}: expected a problem, got {other:?}"),
        }
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = parse("privileged = true\nnope = 1\nmemory = \"1x\"\n").unwrap_err();
    let ConfigError::Invalid { problems, .. } = &e else {
        panic!("{e:?}");
    };
    let keys: Vec<(Option<usize>, &str)> =
        problems.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        keys,
        [
            (Some(1), "privileged"),
            (Some(2), "nope"),
            (Some(3), "memory")
        ]
    );
    assert!(
        e.to_string().contains("\n  line 2: nope: unknown key"),
        "{e}"
    );
}

#[test]
fn a_service_environment_value_is_never_shown() {
    let text = "[[services]]\nname = \"pg\"\nenvironment = [\"PASSWORD=hunter22\", 7]\n";
    let e = parse(text).unwrap_err().to_string();
    assert!(
        e.contains("services[0].environment[1] = 7: expected a string"),
        "{e}"
    );
    assert!(!e.contains("hunter22"), "{e}");
    let ok = parse("[[services]]\nname = \"pg\"\nenvironment = [\"PASSWORD=hunter22\"]\n").unwrap();
    let json = serde_json::to_string(&ok).unwrap();
    assert!(json.contains("\"environment\":[\"PASSWORD\"]"), "{json}");
    assert!(!json.contains("hunter22"));
    let settings = format!("{:?}", ok.settings());
    assert!(settings.contains("environment PASSWORD") && !settings.contains("hunter22"));
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let e = parse("image = \"ruby\"\nmemory = \n").unwrap_err();
    assert_eq!(e.to_string(), "/etc/skiff/gitlab.toml is not valid TOML");
    let cause = std::error::Error::source(&e).unwrap().to_string();
    assert!(cause.contains("line 2"), "{cause}");
    let dup = parse("image = \"a\"\nimage = \"b\"\n").unwrap_err();
    assert!(matches!(dup, ConfigError::Syntax { .. }));
}

#[test]
fn network_modes_map_to_the_pods() {
    let cases: &[(&str, Option<&str>)] = &[
        ("", None),
        ("bridge", None),
        ("default", None),
        ("none", Some("private")),
        ("private", Some("private")),
        ("slirp4netns", Some("slirp4netns")),
        (
            "slirp4netns:allow_host_loopback=true",
            Some("slirp4netns:allow_host_loopback=true"),
        ),
        ("pasta:--map-gw", Some("pasta:--map-gw")),
    ];
    for (mode, want) in cases {
        let c = parse(&format!("network_mode = {mode:?}\n")).unwrap();
        assert_eq!(c.network_mode.as_deref(), *want, "{mode}");
    }
    for bad in ["host", "container:abc", "slirp4netns:mtu=9", "gitlab-net"] {
        assert!(
            parse(&format!("network_mode = {bad:?}\n")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn sizes_in_dockers_units() {
    let cases: &[(&str, Option<i64>)] = &[
        ("1048576", Some(1 << 20)),
        ("512m", Some(512 << 20)),
        ("512M", Some(512 << 20)),
        ("512mb", Some(512 << 20)),
        ("512MiB", Some(512 << 20)),
        ("1g", Some(1 << 30)),
        ("1.5g", Some(3 << 29)),
        ("2 GB", Some(2 << 30)),
        ("1t", Some(1 << 40)),
        ("4k", Some(4096)),
        ("100b", Some(100)),
        ("10mbb", None),
        ("10x", None),
        ("-1m", None),
        ("m", None),
        ("", None),
        ("1  g", None),
    ];
    for (text, want) in cases {
        assert_eq!(docker_size(text), *want, "{text:?}");
    }
    assert_eq!(
        parse("shm_size = \"64m\"\n").unwrap().shm_size,
        Some(64 << 20)
    );
    assert_eq!(
        parse("memory = 1073741824\n").unwrap().memory,
        Some(1 << 30)
    );
    assert_eq!(parse("memory = \"\"\n").unwrap().memory, None);
    assert_eq!(parse("cpus = \"3/2\"\n").unwrap().cpus, Some(1.5));
    assert_eq!(parse("cpus = \"0\"\n").unwrap().cpus, None);
}

#[test]
fn default_locations() {
    let cases: &[(bool, Option<&str>, Option<&str>, &str)] = &[
        (true, Some("/x"), Some("/home/u"), "/etc/skiff/gitlab.toml"),
        (false, Some("/x"), Some("/home/u"), "/x/skiff/gitlab.toml"),
        (
            false,
            None,
            Some("/home/u"),
            "/home/u/.config/skiff/gitlab.toml",
        ),
    ];
    for (root, xdg, home, want) in cases {
        let got = default_path_for(*root, xdg.map(PathBuf::from), home.map(PathBuf::from));
        assert_eq!(got, PathBuf::from(want));
    }
}

#[test]
fn an_explicit_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gitlab.toml");
    let e = AdminConfig::load(Some(&missing)).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Read { path, .. } if *path == missing),
        "{e:?}"
    );
    std::fs::write(&missing, "image = \"alpine:3\"\n").unwrap();
    let c = AdminConfig::load(Some(&missing)).unwrap();
    assert_eq!(c.image.as_deref(), Some("alpine:3"));
    assert_eq!(c.source.as_deref(), Some(missing.as_path()));
}

/// The runner's cases: `helpers/pull_policies/pull_policies_test.go`
/// (`Test_ComputeEffectivePullPolicies`, `Test_GetPullPolicySource`), `common/config_test.go`
/// (`TestDockerConfig_GetPullPolicies`, `TestDockerConfig_GetAllowedPullPolicies`) and
/// `executors/docker/internal/pull/manager_test.go` (`TestPullPolicy*`).
#[test]
fn effective_pull_policies_as_the_runner() {
    use Policy::{Always, IfNotPresent, Never};
    type Case<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        Result<Vec<Policy>, &'a str>,
    );
    let cases: &[Case] = &[
        // (job, config, allowed, want)
        (&[], &[], &[], Ok(vec![Always])),
        (
            &[],
            &["always", "if-not-present", "never"],
            &[],
            Ok(vec![Always, IfNotPresent, Never]),
        ),
        (
            &["always", "never", "if-not-present"],
            &[],
            &["always", "never", "if-not-present"],
            Ok(vec![Always, Never, IfNotPresent]),
        ),
        (
            &["always", "always", "if-not-present", "if-not-present"],
            &[],
            &["always", "if-not-present"],
            Ok(vec![Always, Always, IfNotPresent, IfNotPresent]),
        ),
        (
            &["always", "never"],
            &[],
            &["never", "if-not-present"],
            Ok(vec![Never]),
        ),
        (
            &[],
            &["never"],
            &["if-not-present", "never"],
            Ok(vec![Never]),
        ),
        (
            &["if-not-present"],
            &["never"],
            &[],
            Err(
                r#"invalid pull policy for image "existing": pull_policy ([if-not-present]) defined in GitLab pipeline config is not one of the allowed_pull_policies ([never])"#,
            ),
        ),
        (
            &["if-not-present"],
            &[],
            &[],
            Err(
                r#"invalid pull policy for image "existing": pull_policy ([if-not-present]) defined in GitLab pipeline config is not one of the allowed_pull_policies ([always])"#,
            ),
        ),
        (
            &["if-not-present"],
            &[],
            &["never"],
            Err(
                r#"invalid pull policy for image "existing": pull_policy ([if-not-present]) defined in GitLab pipeline config is not one of the allowed_pull_policies ([never])"#,
            ),
        ),
        (
            &[],
            &["never", "if-not-present"],
            &["always"],
            Err(
                r#"invalid pull policy for image "existing": pull_policy ([never if-not-present]) defined in Runner config is not one of the allowed_pull_policies ([always])"#,
            ),
        ),
        (
            &[],
            &[],
            &["never"],
            Err(
                r#"invalid pull policy for image "existing": pull_policy ([always]) defined in Runner config (default) is not one of the allowed_pull_policies ([never])"#,
            ),
        ),
        (
            &[],
            &["invalid"],
            &["always"],
            Err(r#"unsupported pull_policy config: "invalid""#),
        ),
        (
            &[],
            &[""],
            &[],
            Err(r#"unsupported pull_policy config: """#),
        ),
        (
            &[],
            &["always"],
            &["invalid"],
            Err(r#"unsupported allowed_pull_policies config: "invalid""#),
        ),
        (
            &[],
            &[],
            &[""],
            Err(r#"unsupported allowed_pull_policies config: """#),
        ),
        // A value the runner does not know never passes the allowed list.
        (&["missing", "always"], &[], &[], Ok(vec![Always])),
    ];
    for (job, config, allowed, want) in cases {
        let got = effective_pull_policies(
            "existing",
            &strings(job),
            &strings(config),
            &strings(allowed),
        )
        .map_err(|e| e.to_string());
        assert_eq!(
            got,
            want.clone().map_err(str::to_string),
            "job {job:?}, config {config:?}, allowed {allowed:?}"
        );
    }
    let c = parse("pull_policy = \"if-not-present\"\n").unwrap();
    assert_eq!(
        c.pull_policies_for("alpine", &[]).unwrap(),
        vec![IfNotPresent]
    );
    assert!(
        c.pull_policies_for("alpine", &strings(&["always"]))
            .is_err()
    );
}

#[test]
fn allowed_images_and_services_as_the_runner() {
    // `common/allowed_images_test.go`: an internal image passes whatever the list says, and
    // an empty list allows all.
    assert!(
        verify_allowed_image(
            "gitlab/gitlab-runner-helper",
            "images",
            &strings(&["alpine"]),
            &strings(&["gitlab/gitlab-runner-helper"])
        )
        .is_ok()
    );
    assert!(verify_allowed_image("alpine", "images", &[], &[]).is_ok());
    let e = verify_allowed_image("alpine", "images", &strings(&["ruby:*", "python:*"]), &[]);
    assert_eq!(
        e.unwrap_err().to_string(),
        "The \"alpine\" image is not present on list of allowed images:\n- ruby:*\n- python:*\n\nPlease check runner's allowed_images configuration: https://docs.gitlab.com/runner/configuration/advanced-configuration/"
    );
    let c = parse(
        "image = \"ruby:3.3\"\nallowed_images = [\"python:*\"]\nallowed_services = [\"postgres:*\"]\n[[services]]\nname = \"redis:7\"\n",
    )
    .unwrap();
    assert!(c.verify_job_image("python:3.12").is_ok());
    assert!(
        c.verify_job_image("ruby:3.3").is_ok(),
        "the configured image is always allowed"
    );
    assert!(c.verify_job_image("").is_ok(), "no image: the default one");
    assert!(c.verify_job_image("ruby:3.4").is_err());
    assert!(c.verify_job_service("postgres:16").is_ok());
    assert!(
        c.verify_job_service("redis:7").is_ok(),
        "configured services are always allowed"
    );
    let e = c.verify_job_service("mysql:8").unwrap_err().to_string();
    assert!(
        e.starts_with("The \"mysql:8\" image is not present on list of allowed services:"),
        "{e}"
    );
}

/// The runner's `Test_Docker_UserIsAllowed` and `TestDockerImageWithUser`.
#[test]
fn the_build_user_as_the_runner() {
    type Case<'a> = (
        &'a [&'a str],
        Option<&'a str>,
        Option<&'a str>,
        Result<Option<&'a str>, ()>,
    );
    let cases: &[Case] = &[
        // (allowed_users, user, job user, want)
        (&[], None, None, Ok(None)),
        (&[], Some("baba"), None, Ok(Some("baba"))),
        (&[], None, Some("baba"), Ok(Some("baba"))),
        (&[], Some("baba"), Some("yaga"), Ok(Some("baba"))),
        (&["baba"], None, None, Ok(None)),
        (&["baba"], Some("baba"), None, Ok(Some("baba"))),
        (&["baba"], None, Some("baba"), Ok(Some("baba"))),
        (&["baba"], Some("baba"), Some("yaga"), Ok(Some("baba"))),
        (&["yaga"], Some("baba"), None, Err(())),
        (&["yaga"], None, Some("baba"), Err(())),
        (&["blammo"], Some("baba"), Some("yaga"), Err(())),
    ];
    for (allowed, user, job, want) in cases {
        let c = AdminConfig {
            allowed_users: strings(allowed),
            user: user.map(str::to_string),
            ..AdminConfig::default()
        };
        let got = c.build_user(*job);
        match want {
            Ok(w) => assert_eq!(got.unwrap().as_deref(), *w, "{allowed:?} {user:?} {job:?}"),
            Err(()) => assert!(
                got.unwrap_err()
                    .to_string()
                    .contains("is not an allowed user"),
                "{allowed:?} {user:?} {job:?}"
            ),
        }
    }
    // Without allowed_users, the configured user is the only one a job may ask for.
    let c = AdminConfig {
        user: Some("baba".into()),
        ..AdminConfig::default()
    };
    assert!(
        c.build_user(Some("yaga")).is_ok(),
        "the configured user wins over the job's"
    );
}

#[test]
fn services_limit_counts_every_service() {
    let c = parse("services_limit = 2\n").unwrap();
    assert!(c.check_services_limit(2).is_ok());
    assert_eq!(
        c.check_services_limit(3).unwrap_err().to_string(),
        "too many services requested: 3, only 2 allowed"
    );
    assert_eq!(parse("services_limit = -1\n").unwrap().services_limit, None);
    assert!(
        parse("services_limit = 0\n")
            .unwrap()
            .check_services_limit(1)
            .is_err()
    );
}

#[test]
fn the_helper_image_expands_as_the_runner_expands() {
    let vars = vec![
        ("CI_RUNNER_VERSION".to_string(), "17.9.0".to_string()),
        ("CI_RUNNER_REVISION".to_string(), "abcdef12".to_string()),
    ];
    let c = parse("helper_image = \"reg.example/helper:x86_64-v${CI_RUNNER_VERSION}\"\n").unwrap();
    assert_eq!(
        c.helper_image_for(&vars).as_deref(),
        Some("reg.example/helper:x86_64-v17.9.0")
    );
    assert_eq!(
        parse("helper_image = \"${NOTHING}\"\n")
            .unwrap()
            .helper_image_for(&vars),
        None
    );
    let lookup = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let cases = [
        ("x86_64-$CI_RUNNER_REVISION", "x86_64-abcdef12"),
        ("${CI_RUNNER_VERSION}-pwsh", "17.9.0-pwsh"),
        ("$UNKNOWN-x", "-x"),
        ("a$$b", "a$b"),
        ("$1x", "x"),
        ("${1}x", "x"),
        ("a${}b", "ab"),
        ("a${b", "ab"),
        ("cost $", "cost $"),
        ("a $ b", "a $ b"),
        ("no vars", "no vars"),
        ("ü$CI_RUNNER_VERSIONü", "ü17.9.0ü"),
    ];
    for (text, want) in cases {
        assert_eq!(expand_runner_value(text, lookup), want, "{text:?}");
    }
}

#[test]
fn anonymous_volume_names_are_stable_and_distinct() {
    assert_eq!(
        anonymous_volume_name("/data"),
        anonymous_volume_name("/data")
    );
    assert_ne!(
        anonymous_volume_name("/data"),
        anonymous_volume_name("/data2")
    );
    assert_eq!(anonymous_volume_name("/data").len(), 32);
}

#[test]
fn every_key_of_the_runners_docker_config_is_classified_once() {
    let mut seen = std::collections::BTreeSet::new();
    for (key, _) in KEYS {
        assert!(seen.insert(*key), "{key} twice");
    }
    // The runner's DockerConfig has 76 keys (docker.Credentials's three included).
    assert_eq!(KEYS.len(), 76);
}

#[test]
fn services_as_inline_tables_and_tmpfs_inline() {
    let c = parse(
        "services = [{ name = \"redis:7\", alias = \"cache\" }, { name = \"pg\", command = [\"-c\", \"x=1\"] }]\ntmpfs = { \"/tmp\" = \"size=1m\" }\n",
    )
    .unwrap();
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["redis:7", "pg"]);
    assert_eq!(c.services[0].aliases(), strings(&["cache"]));
    assert_eq!(c.services[1].command, Some(strings(&["-c", "x=1"])));
    assert_eq!(c.tmpfs, strings(&["/tmp:size=1m"]));
    let e = parse("services = [\"redis:7\"]\n").unwrap_err().to_string();
    assert!(
        e.ends_with("line 1: services[0]: expected a table, not string"),
        "{e}"
    );
}
