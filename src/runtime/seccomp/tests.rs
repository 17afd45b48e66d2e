use super::*;
use oci_spec::runtime::{LinuxSeccompAction, LinuxSyscall};

fn podman_caps() -> HashSet<Capability> {
    crate::runtime::caps::DEFAULT_CAPS.iter().copied().collect()
}

fn amd64() -> Host {
    Host {
        arch: "amd64",
        seccomp_arch: "SCMP_ARCH_X86_64",
        kernel: (6, 1),
    }
}

/// The rule that decides `name` for calls without arguments, the first to name it: libseccomp
/// keeps the first rule added for a syscall.
type Verdict = Option<(LinuxSeccompAction, Option<u32>)>;

fn verdict(spec: &LinuxSeccomp, name: &str) -> Verdict {
    spec.syscalls()
        .iter()
        .flatten()
        .find(|r: &&LinuxSyscall| r.names().iter().any(|n| n == name) && r.args().is_none())
        .map(|r| (r.action(), r.errno_ret()))
}

#[test]
fn the_builtin_profile_is_the_systems() {
    let path = Path::new("/usr/share/containers/seccomp.json");
    if !path.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is missing (containers-common): the built-in profile is checked against it",
            path.display()
        );
        eprintln!("skipped: {} is missing", path.display());
        return;
    }
    assert_eq!(Profile::read(path).unwrap(), builtin::profile());
}

#[test]
fn podmans_capabilities_decide_the_rules() {
    let spec = builtin::profile()
        .to_spec(&podman_caps(), &amd64(), "builtin")
        .unwrap();
    assert_eq!(spec.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(spec.default_errno_ret(), Some(38));
    let arches: Vec<String> = spec
        .architectures()
        .iter()
        .flatten()
        .map(|a| {
            serde_json::to_value(a)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        arches,
        ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    );
    // 35 rules: the arch-only ones for other architectures, the allow half of each pair
    // whose capability podman leaves out, the deny half of chroot's, and CAP_AUDIT_WRITE's
    // plain allow are gone.
    assert_eq!(spec.syscalls().as_ref().unwrap().len(), 22);
    let allow = Some((LinuxSeccompAction::ScmpActAllow, None));
    let eperm = Some((LinuxSeccompAction::ScmpActErrno, Some(1)));
    let cases: &[(&str, Verdict)] = &[
        ("read", allow),
        ("keyctl", allow),
        ("clone", allow),
        ("chroot", allow),
        ("arch_prctl", allow),
        ("bpf", eperm),
        ("kexec_load", eperm),
        ("sethostname", eperm),
        ("add_key", None),
        ("set_tls", None),
    ];
    for (name, want) in cases {
        assert_eq!(verdict(&spec, name), *want, "{name}");
    }
    let mut caps = podman_caps();
    caps.insert(Capability::SysAdmin);
    caps.remove(&Capability::SysChroot);
    let spec = builtin::profile()
        .to_spec(&caps, &amd64(), "builtin")
        .unwrap();
    assert_eq!(verdict(&spec, "bpf"), allow);
    assert_eq!(verdict(&spec, "chroot"), eperm);
}

#[test]
fn conditions() {
    let rule = |includes: Filter, excludes: Filter| Rule {
        names: vec!["x".into()],
        action: "SCMP_ACT_ALLOW".into(),
        includes,
        excludes,
        ..Default::default()
    };
    let caps = |c: &[&str]| Filter {
        caps: c.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let arches = |a: &[&str]| Filter {
        arches: a.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let kernel = |k: &str| Filter {
        min_kernel: Some(k.into()),
        ..Default::default()
    };
    let held: HashSet<String> = ["CAP_CHOWN".to_string()].into();
    let none = Filter::default;
    let cases = [
        (rule(none(), none()), true),
        (rule(caps(&["CAP_CHOWN"]), none()), true),
        (rule(caps(&["CAP_CHOWN", "CAP_SYS_ADMIN"]), none()), false),
        (rule(none(), caps(&["CAP_CHOWN"])), false),
        (rule(none(), caps(&["CAP_SYS_ADMIN"])), true),
        (rule(arches(&["arm64", "amd64"]), none()), true),
        (rule(arches(&["arm64"]), none()), false),
        (rule(none(), arches(&["amd64"])), false),
        (rule(kernel("5.8"), none()), true),
        (rule(kernel("6.2"), none()), false),
        (rule(none(), kernel("6.1")), false),
        (rule(none(), kernel("6.2")), true),
    ];
    for (i, (rule, applies)) in cases.iter().enumerate() {
        assert_eq!(
            rule.applies(&held, &amd64()),
            *applies,
            "case {i}: {rule:?}"
        );
    }
}

#[test]
fn errno_names_win_over_numbers() {
    type Case = (Option<&'static str>, Option<u32>, Result<Option<u32>, ()>);
    let cases: &[Case] = &[
        (None, None, Ok(None)),
        (None, Some(5), Ok(Some(5))),
        (Some("EPERM"), Some(38), Ok(Some(1))),
        (Some("ENOSYS"), None, Ok(Some(38))),
        (Some("17"), None, Ok(Some(17))),
        (Some(""), Some(9), Ok(Some(9))),
        (Some("ENOPE"), None, Err(())),
    ];
    for (name, number, want) in cases {
        assert_eq!(
            errno_number(*name, *number).map_err(|_| ()),
            *want,
            "{name:?}"
        );
    }
}

#[test]
fn bad_profiles_are_named() {
    let cases: &[(&str, &str)] = &[
        ("{", "not a seccomp profile"),
        (r#"{"syscalls":[]}"#, "not a seccomp profile"),
        (
            r#"{"defaultAction":"SCMP_ACT_NOPE"}"#,
            "seccomp profile test.json",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrno":"ENOPE"}"#,
            "defaultErrno: unknown errno \"ENOPE\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ALLOW"}]}"#,
            "syscalls[0]: both name and names are set",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
            "both architectures and archMap are set",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_WHAT"}]}]}"#,
            "seccomp profile test.json",
        ),
    ];
    for (text, want) in cases {
        let err = Profile::parse(text.as_bytes(), "test.json").unwrap_err();
        let shown = crate::error_chain(&err);
        assert!(shown.contains(want), "{text}: {shown}");
        assert!(shown.contains("test.json"), "{text}: {shown}");
    }
    let good = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":null}"#;
    assert!(Profile::parse(good.as_bytes(), "good.json").is_ok());
}

/// `run` checks a profile before the container exists, once per content: a mark in the
/// store's cache remembers good bytes. The shim reads it without the check, and a profile
/// broken since fails when the shim converts it, named; `run` refuses it at once.
#[test]
fn a_profile_is_checked_once_per_content_and_converted_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let path = dir.path().join("own.json");
    let good = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ERRNO"}]}"#;
    std::fs::write(&path, good).unwrap();
    let policy = SeccompPolicy::File(path.clone());
    policy.check(&cache).unwrap();
    let marks = || std::fs::read_dir(&cache).map_or(0, |d| d.count());
    assert_eq!(marks(), 1);
    policy.check(&cache).unwrap();
    assert_eq!(marks(), 1, "checked again");
    // Broken on disk: the start reads it again; it parses, and its conversion names the
    // file. A new `run` refuses it.
    let broken = r#"{"defaultAction":"SCMP_ACT_NOPE"}"#;
    std::fs::write(&path, broken).unwrap();
    let read = policy.load_unchecked().unwrap().unwrap();
    let err = read
        .to_spec(&podman_caps(), &amd64(), &path.display().to_string())
        .unwrap_err();
    assert!(crate::error_chain(&err).contains("own.json"), "{err}");
    let err = policy.check(&cache).unwrap_err();
    assert!(crate::error_chain(&err).contains("own.json"), "{err}");
    assert_eq!(marks(), 1, "a broken profile marked");
    // The mark is the content's, wherever it comes from.
    SeccompPolicy::Inline(good.into()).check(&cache).unwrap();
    assert_eq!(marks(), 1);
    assert!(SeccompPolicy::Inline(broken.into()).check(&cache).is_err());
    // A missing file is named.
    let gone = SeccompPolicy::File(dir.path().join("gone.json"));
    assert!(crate::error_chain(&gone.check(&cache).unwrap_err()).contains("gone.json"));
}

#[test]
fn security_options() {
    let opts = |o: &[&str]| {
        SeccompPolicy::from_security_opts(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    let cases: &[(&[&str], Option<SeccompPolicy>)] = &[
        (&[], Some(SeccompPolicy::Default)),
        (&["seccomp=unconfined"], Some(SeccompPolicy::Unconfined)),
        (&["seccomp:unconfined"], Some(SeccompPolicy::Unconfined)),
        (&["seccomp=builtin"], Some(SeccompPolicy::Default)),
        (
            &["seccomp=/etc/p.json"],
            Some(SeccompPolicy::File("/etc/p.json".into())),
        ),
        (
            &["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"],
            Some(SeccompPolicy::Inline(
                "{\"defaultAction\":\"SCMP_ACT_ALLOW\"}".into(),
            )),
        ),
        (
            &["seccomp=unconfined", "seccomp=builtin"],
            Some(SeccompPolicy::Default),
        ),
        (
            &["no-new-privileges", "label=disable", "apparmor=unconfined"],
            Some(SeccompPolicy::Default),
        ),
        (&["no-new-privileges=false"], None),
        (&["label=type:spc_t"], None),
        (&["seccomp"], None),
        (&["seccomp="], None),
    ];
    for (given, want) in cases {
        assert_eq!(opts(given).ok(), *want, "{given:?}");
    }
}

#[test]
fn kernel_releases() {
    for (release, want) in [
        ("6.18.44-fc-v595", Some((6, 18))),
        ("5.10.0-28-amd64", Some((5, 10))),
        ("4.19", Some((4, 19))),
        ("6", None),
        ("", None),
    ] {
        assert_eq!(parse_kernel(release), want, "{release}");
    }
}
