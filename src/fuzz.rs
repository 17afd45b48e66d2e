//! Entry points of the fuzz targets (`fuzz/`, run by `scripts/fuzz`) and of the test that
//! replays their corpus (`fixtures/fuzz`) on every run. Each takes arbitrary bytes and must
//! neither panic nor write outside its scratch directory; properties that must hold for
//! every accepted input are asserted here, so a fuzzer finding one broken is a crash.

use std::path::Path;

/// One fuzz target: arbitrary bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fixtures/fuzz/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("reference", reference),
    ("www_authenticate", www_authenticate),
    ("manifest", manifest),
    ("auth_config", auth_config),
    ("registries_conf", registries_conf),
    ("gitlab_ci", gitlab_ci),
    ("tar_unpack", tar_unpack),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// An accepted reference prints as a reference that parses to the same thing.
pub fn reference(data: &[u8]) {
    let Some(s) = text(data) else { return };
    for parse in [
        crate::oci::reference::ImageRef::parse,
        crate::oci::reference::ImageRef::parse_local,
    ] {
        if let Ok(r) = parse(s) {
            let printed = r.to_string();
            let again = crate::oci::reference::ImageRef::parse(&printed)
                .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?}, which fails: {e}"));
            assert_eq!(again.to_string(), printed, "{s:?} does not round-trip");
        }
    }
}

pub fn www_authenticate(data: &[u8]) {
    if let Some(s) = text(data) {
        let _ = crate::registry::session::parse_challenges(s);
    }
}

pub fn manifest(data: &[u8]) {
    for content_type in [
        None,
        Some("application/vnd.oci.image.manifest.v1+json"),
        Some("application/vnd.oci.image.index.v1+json"),
        Some("application/vnd.docker.distribution.manifest.v2+json"),
        Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    ] {
        let _ = crate::oci::manifest::parse(data, content_type, "fuzz");
    }
}

/// docker's config.json, podman's auth.json and DOCKER_AUTH_CONFIG share the parser; lookups
/// on whatever parsed must not panic either.
pub fn auth_config(data: &[u8]) {
    let Some(s) = text(data) else { return };
    for legacy in [false, true] {
        if let Ok(config) = crate::auth::config::AuthConfig::parse(s, "fuzz", legacy) {
            for name in [
                "docker.io/library/busybox",
                "registry.example:5000/a/b",
                "x",
            ] {
                let _ = config.lookup(name);
                let _ = config.helper_for(name.split('/').next().unwrap_or(name));
            }
        }
    }
}

pub fn registries_conf(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(conf) = crate::registry::mirrors::RegistriesConf::parse(s, Path::new("fuzz.conf")) {
        for name in ["docker.io/library/busybox:1", "registry.example:5000/a/b"] {
            if let Ok(r) = crate::oci::reference::ImageRef::parse(name) {
                let _ = conf.pull_sources(&r, false);
            }
        }
        let _ = conf.is_insecure("registry.example:5000");
    }
}

/// Parsing, listing the jobs and resolving each one (extends, !reference, variables).
pub fn gitlab_ci(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(pipeline) = crate::gitlab::pipeline::Pipeline::parse(s, "fuzz.yml") {
        for job in pipeline.jobs().iter().take(16) {
            let _ = pipeline.job(job, &[]);
        }
    }
}

/// Unpacks into `<scratch>/rootfs` (both formats, by the first byte): afterwards the scratch
/// directory holds nothing else, whatever links and paths the archive tried.
pub fn tar_unpack(data: &[u8]) {
    let Some((&mode, archive)) = data.split_first() else {
        return;
    };
    let scratch = std::env::temp_dir().join(format!(
        "skiff-fuzz-{}-{}",
        std::process::id(),
        crate::store::unique()
    ));
    let dest = scratch.join("rootfs");
    std::fs::create_dir_all(&dest).expect("the target directory");
    let opts = crate::unpack::Options {
        format: if mode & 1 == 0 {
            crate::unpack::Format::Overlay
        } else {
            crate::unpack::Format::Flatten
        },
        chown: false,
        devices: false,
    };
    let _ = crate::unpack::unpack(archive, &dest, &opts);
    let outside: Vec<_> = std::fs::read_dir(&scratch)
        .expect("listing the scratch directory")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "rootfs")
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the target: {outside:?}"
    );
    // Entries may be made unwritable; the scratch directory must still go away.
    let _ = crate::unpack::remove_tree(&scratch);
}
