//! `skiff import` and the GitLab helper flow: names exactly as asked, every compression and
//! stdin giving the same layer, skopeo reading the result, fast idempotent re-imports, bad
//! input leaving the store unchanged, and the helper imported in a network namespace with no
//! route at all.

mod common;

use common::{Env, fails, json, ok, require, require_root, run};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A busybox root filesystem as `docker export` writes one (no ./ prefix), as a tar.
fn rootfs_tar() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static");
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = |p: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    for d in ["bin", "etc", "usr", "usr/bin", "tmp"] {
        dir(d);
    }
    let mut file = |p: &str, data: &[u8], mode| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, p, data).unwrap();
    };
    file("bin/busybox", &busybox, 0o755);
    file("usr/bin/dumb-init", b"#!/bin/sh\nexec \"$@\"\n", 0o755);
    file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    b.into_inner().unwrap()
}

fn compress(tar: &[u8], kind: &str) -> Vec<u8> {
    match kind {
        "tar" => tar.to_vec(),
        "tar.gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        "tar.xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        "tar.zst" => zstd::encode_all(tar, 3).unwrap(),
        _ => unreachable!(),
    }
}

fn write(env: &Env, name: &str, bytes: &[u8]) -> PathBuf {
    let p = env.path(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn blob_count(env: &Env) -> usize {
    common::count_files(&env.store().join("blobs/sha256"))
}

#[test]
fn names_are_exactly_what_was_asked() {
    if !require(&["busybox"]) {
        return;
    }
    let env = Env::new();
    let file = write(&env, "rootfs.tar", &rootfs_tar());
    let f = file.to_str().unwrap();
    // (reference given, name stored)
    let cases: &[(&str, &str)] = &[
        (
            "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.9.0",
            "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v17.9.0",
        ),
        (
            "registry.example/helper:x86_64-deadbeef",
            "registry.example/helper:x86_64-deadbeef",
        ),
        ("foo", "localhost/foo:latest"),
        ("team/foo:2", "localhost/team/foo:2"),
        ("quay.io/a/b", "quay.io/a/b:latest"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
    ];
    for (given, stored) in cases {
        let r = json(env.skiff().args(["--format", "json", "import", f, given]));
        assert_eq!(r["name"], *stored, "{given}");
    }
    let names: Vec<String> = json(env.skiff().args(["--format", "json", "images"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    for (_, stored) in cases {
        assert!(names.contains(&stored.to_string()), "{stored} in {names:?}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("gitlab-runner-helper:latest")
                || n.ends_with("registry.example/helper:latest")),
        "no :latest invented: {names:?}"
    );

    // No name: untagged, listed as <none>, reachable by ID.
    let env2 = Env::new();
    let r = json(env2.skiff().args(["--format", "json", "import", f]));
    assert_eq!(r["name"], serde_json::Value::Null);
    let list = ok(env2.skiff().args(["images"]));
    assert!(list.contains("<none>"), "{list}");
    let id = r["id"].as_str().unwrap().trim_start_matches("sha256:")[..12].to_string();
    ok(env2.skiff().args(["inspect", &id]));

    // Invalid names fail before anything is written.
    for bad in [
        "Foo",
        "foo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a//b",
    ] {
        let env3 = Env::new();
        let e = fails(env3.skiff().args(["import", f, bad]));
        assert!(e.contains(bad.split('@').next().unwrap()), "{bad}: {e}");
        assert_eq!(blob_count(&env3), 0, "{bad}: nothing written");
    }
}

#[test]
fn every_compression_and_stdin_give_one_layer_skopeo_can_read() {
    if !require(&["busybox", "skopeo"]) {
        return;
    }
    let env = Env::new();
    let tar = rootfs_tar();
    let mut diff_ids = Vec::new();
    for kind in ["tar", "tar.gz", "tar.xz", "tar.zst"] {
        let file = write(&env, &format!("rootfs.{kind}"), &compress(&tar, kind));
        let r = json(
            env.skiff()
                .args([
                    "--format",
                    "json",
                    "import",
                    "--change",
                    "ENV A=1",
                    "--change",
                    "CMD [\"sh\"]",
                ])
                .arg(&file)
                .arg(format!("imp/{}", kind.replace('.', "-"))),
        );
        diff_ids.push(r["diff_id"].as_str().unwrap().to_string());
    }
    let mut child = env
        .skiff()
        .args(["--format", "json", "import", "-", "imp/stdin:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&compress(&tar, "tar.xz"))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    diff_ids.push(r["diff_id"].as_str().unwrap().to_string());
    assert!(diff_ids.iter().all(|d| *d == diff_ids[0]), "{diff_ids:?}");
    assert_eq!(
        diff_ids[0],
        skiff::oci::digest::Digest::sha256_of(&tar).to_string(),
        "diff_id is the sha256 of the uncompressed tar"
    );

    let i = json(env.skiff().args(["inspect", "localhost/imp/tar-xz:latest"]));
    assert_eq!(i[0]["Config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(i[0]["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(i[0]["Os"], "linux");
    let layer = env
        .store()
        .join("layers")
        .join(diff_ids[0].trim_start_matches("sha256:"));
    assert!(
        layer.join("bin/busybox").is_file(),
        "imported layers are unpacked like pulled ones"
    );
    // skopeo reads the result from the store.
    let raw = ok(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!(
            "oci:{}:localhost/imp/tar-xz:latest",
            env.store().display()
        )));
    assert!(raw.contains(&diff_ids[0]), "{raw}");
    ok(Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!(
            "oci:{}:localhost/imp/tar-gz:latest",
            env.store().display()
        ))
        .arg(format!("dir:{}", env.path("copy").display())));
    common::fsck_ok(&env);
}

#[test]
fn reimport_is_idempotent_and_bad_input_changes_nothing() {
    if !require(&["busybox"]) {
        return;
    }
    let env = Env::new();
    let tar = rootfs_tar();
    let xz = write(&env, "rootfs.tar.xz", &compress(&tar, "tar.xz"));
    let first = json(
        env.skiff()
            .args(["--format", "json", "import"])
            .arg(&xz)
            .arg("again:1"),
    );
    let second = json(
        env.skiff()
            .args(["--format", "json", "import"])
            .arg(&xz)
            .arg("again:1"),
    );
    assert_eq!(first["reused"], false);
    assert_eq!(second["reused"], true, "the second import reuses the layer");
    assert_eq!(first["id"], second["id"], "same file, same image ID");
    let before = blob_count(&env);
    let layers = common::count_files(&env.store().join("layers"));

    let full = compress(&tar, "tar.xz");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.tar.xz",
            full[..full.len() / 2].to_vec(),
            "truncated or corrupt",
        ),
        (
            "truncated.tar.gz",
            compress(&tar, "tar.gz")[..1000].to_vec(),
            "truncated or corrupt",
        ),
        (
            "text.tar",
            b"this is not a tar archive at all, just some text that goes on".repeat(20),
            "not a root filesystem tarball",
        ),
        (
            "empty.tar",
            vec![0u8; 1024],
            "not a root filesystem tarball",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = write(&env, name, &bytes);
        let e = fails(env.skiff().args(["import"]).arg(&p).arg("bad:1"));
        assert!(e.contains(want) && e.contains(name), "{name}: {e}");
        assert_eq!(blob_count(&env), before, "{name}: no blob added");
        assert_eq!(
            common::count_files(&env.store().join("layers")),
            layers,
            "{name}: no layer added"
        );
        assert_eq!(
            common::count_files(&env.store().join("ingest")),
            0,
            "{name}: no partial blob"
        );
    }
    let e = fails(
        env.skiff()
            .args(["import", "--change", "RUN make"])
            .arg(&xz)
            .arg("bad:1"),
    );
    assert!(e.contains("unsupported instruction RUN"), "{e}");
    assert!(
        !ok(env.skiff().args(["images"])).contains("bad"),
        "no name was written"
    );
    common::fsck_ok(&env);
}

/// An xz file in big blocks, as `xz -T` writes one, decodes in bounded memory: liblzma's threaded
/// decoder buffers a whole block per thread, so unbounded it took twice this budget.
#[test]
fn a_multi_block_xz_imports_within_64_mib() {
    if !require(&["busybox", "time"]) {
        return;
    }
    let env = Env::new();
    // Three 32 MiB files, varied enough that each block holds real work, in 32 MiB blocks.
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..3u32 {
        let data: Vec<u8> = (0..32u32 << 20)
            .map(|n| (n.wrapping_mul(2_654_435_761).rotate_left(i) >> 13) as u8 & 0x3f)
            .collect();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("data{i}"), &data[..])
            .unwrap();
    }
    let tar = b.into_inner().unwrap();
    let stream = liblzma::stream::MtStreamBuilder::new()
        .threads(2)
        .block_size(32 << 20)
        .preset(0)
        .encoder()
        .unwrap();
    let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    e.write_all(&tar).unwrap();
    let xz = write(&env, "big.tar.xz", &e.finish().unwrap());
    let blocks = Command::new("xz")
        .args(["--list", "--robot"])
        .arg(&xz)
        .output()
        .unwrap();
    let blocks = String::from_utf8_lossy(&blocks.stdout);
    assert!(
        blocks.lines().any(|l| l.starts_with("totals\t1\t4\t")),
        "four blocks expected: {blocks}"
    );

    // GNU time reports the peak RSS of skiff and of the unpacker it waited for.
    let mut import = env.skiff();
    import.args(["import", "-q"]).arg(&xz).arg("big:1");
    let mut timed = Command::new("time");
    timed
        .args(["-f", "maxrss %M"])
        .arg(import.get_program())
        .args(import.get_args());
    for (k, v) in import.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let kib: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {stderr}"));
    assert!(kib <= 64 * 1024, "peak RSS {} MiB > 64 MiB", kib / 1024);
    common::fsck_ok(&env);
}

#[test]
fn helper_image_from_a_prebuilt_tarball_without_any_network() {
    if !require(&["busybox", "unshare"]) {
        return;
    }
    if !require_root("a network namespace without any route") {
        return;
    }
    let env = Env::new();
    // Laid out like a runner installation from the deb package.
    let dir = env.path("runner/usr/lib/gitlab-runner/helper-images");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prebuilt-alpine-x86_64.tar.xz"),
        compress(&rootfs_tar(), "tar.xz"),
    )
    .unwrap();
    std::fs::write(
        dir.join("prebuilt-ubuntu-x86_64.tar.xz"),
        compress(&rootfs_tar(), "tar.xz"),
    )
    .unwrap();
    // The runner's newer form: a docker-archive, zstd-compressed, loaded then tagged.
    if common::which("skopeo").is_some() {
        let layout = format!("oci:{}:busybox", common::images::images().layout.display());
        let archive = env.path("helper-docker.tar");
        ok(Command::new("skopeo")
            .args(["copy", "-q", &layout])
            .arg(format!("docker-archive:{}:some/name:1", archive.display())));
        let zst = zstd::encode_all(&std::fs::read(&archive).unwrap()[..], 3).unwrap();
        std::fs::write(dir.join("prebuilt-alpine-arm64.docker.tar.zst"), zst).unwrap();
    }
    let offline = |args: &[&str]| {
        let c = env.skiff();
        let prog = c.get_program().to_owned();
        let envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = c
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        let pre: Vec<std::ffi::OsString> = c.get_args().map(|a| a.to_owned()).collect();
        let mut u = Command::new("unshare");
        u.arg("--net").arg("--").arg(prog).args(pre).args(args);
        for (k, v) in envs {
            match v {
                Some(v) => u.env(k, v),
                None => u.env_remove(k),
            };
        }
        u
    };
    let d = dir.to_str().unwrap();
    let helper = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper";
    let out = ok(&mut offline(&[
        "helper",
        "resolve",
        "--version",
        "17.9.0",
        "--arch",
        "amd64",
        "--dir",
        d,
    ]));
    assert!(
        out.contains(&format!("reference: {helper}:x86_64-v17.9.0"))
            && out.contains("source: prebuilt")
            && out.contains("prebuilt-alpine-x86_64.tar.xz"),
        "{out}"
    );
    let imported = run(&mut offline(&[
        "helper",
        "import",
        "--version",
        "17.9.0",
        "--dir",
        d,
    ]));
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let out = ok(&mut offline(&[
        "helper",
        "resolve",
        "--version",
        "17.9.0",
        "--arch",
        "amd64",
        "--dir",
        d,
    ]));
    assert!(out.contains("source: store"), "{out}");
    if common::which("skopeo").is_some() {
        let i = json(&mut offline(&[
            "inspect",
            &format!("{helper}:arm64-v17.9.0"),
        ]));
        assert_eq!(
            i[0]["Architecture"], "amd64",
            "the loaded archive's own config is kept"
        );
    }
    for tag in ["x86_64-v17.9.0", "ubuntu-x86_64-v17.9.0"] {
        let i = json(&mut offline(&["inspect", &format!("{helper}:{tag}")]));
        assert_eq!(
            i[0]["Config"]["Entrypoint"],
            serde_json::json!(["/usr/bin/dumb-init", "/entrypoint"]),
            "{tag}"
        );
        ok(&mut offline(&[
            "pull",
            "--policy",
            "never",
            &format!("{helper}:{tag}"),
        ]));
    }
    assert!(
        !ok(&mut offline(&["images"])).contains("latest"),
        "the podman bug: nothing lands as latest"
    );
    // Missing everywhere and a never policy: a clear error naming the search path.
    let e = fails(&mut offline(&[
        "helper",
        "resolve",
        "--version",
        "17.9.0",
        "--flavor",
        "ubi-fips",
        "--policy",
        "never",
        "--dir",
        d,
    ]));
    assert!(
        e.contains("ubi-fips") && e.contains("/usr/lib/gitlab-runner/helper-images"),
        "{e}"
    );
}
