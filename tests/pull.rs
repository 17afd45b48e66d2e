//! Pulls from a real registry on loopback into the store, cross-checked with skopeo.

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use common::{Env, fails, fsck_ok, json, ok, require, run, stderr};

const TOOLS: &[&str] = &["docker-registry", "skopeo", "busybox"];

fn plain_with_images() -> Registry {
    let reg = Registry::start(Auth::Anonymous);
    let img = images();
    push(
        &img.layout,
        "busybox",
        &format!("{}/test/busybox:1", reg.addr()),
        &[],
    );
    push(
        &img.layout,
        "busybox",
        &format!("{}/test/busybox:v2s2", reg.addr()),
        &["--format", "v2s2"],
    );
    push(
        &img.layout,
        "multi",
        &format!("{}/test/multi:1", reg.addr()),
        &[],
    );
    push(
        &img.layout,
        "index",
        &format!("{}/test/busybox:index", reg.addr()),
        &["--all"],
    );
    reg
}

#[test]
fn pull_store_is_an_oci_layout_that_skopeo_reads() {
    if !require(TOOLS) {
        return;
    }
    let reg = plain_with_images();
    let env = Env::new();
    let name = format!("{}/test/busybox:1", reg.addr());
    let report = json(
        env.skiff()
            .args(["--format", "json", "pull", "--tls-verify=false", &name]),
    );
    assert_eq!(report["name"], name);
    assert_eq!(
        report["manifest_digest"],
        images().busybox_manifest.to_string()
    );
    assert_eq!(
        report["source"],
        format!("http://{}/test/busybox", reg.addr())
    );
    assert_eq!(
        report["layers"][0]["digest"],
        images().busybox_layer.to_string()
    );
    fsck_ok(&env);

    // skopeo reads the store as an OCI layout and sees the same manifest as the registry.
    let ours = ok(std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{name}", env.store().display())));
    let theirs = ok(std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}")));
    assert_eq!(ours, theirs);
    let copy = env.path("copy");
    ok(std::process::Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:{name}", env.store().display()))
        .arg(format!("dir:{}", copy.display())));

    // images / inspect / tag / rmi / prune
    let list = json(env.skiff().args(["--format", "json", "images"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["tag"], "1");
    let inspect = json(env.skiff().args(["inspect", &name]));
    assert_eq!(
        inspect[0]["Source"],
        format!("http://{}/test/busybox", reg.addr())
    );
    assert_eq!(inspect[0]["Architecture"], "amd64");
    let id = inspect[0]["Id"].as_str().unwrap().to_string();
    ok(env.skiff().args(["tag", &name, "mine:v1", "quay.io/x/y:2"]));
    let names: Vec<String> = json(env.skiff().args(["inspect", &id[..12]]))[0]["Names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"localhost/mine:v1".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"quay.io/x/y:2".to_string()));
    let e = fails(env.skiff().args(["rmi", &id[..12]]));
    assert!(e.contains("several names"), "{e}");
    ok(env.skiff().args(["rmi", "mine:v1", "quay.io/x/y:2"]));
    assert!(
        common::count_files(&env.store().join("blobs/sha256")) >= 3,
        "blobs still named by {name}"
    );
    ok(env.skiff().args(["rmi", &name]));
    assert_eq!(
        common::count_files(&env.store().join("blobs/sha256")),
        0,
        "rmi removes what no ref needs"
    );
    fsck_ok(&env);
    let e = fails(env.skiff().args(["inspect", &name]));
    assert!(e.contains("not in the store"), "{e}");
}

#[test]
fn docker_schema2_multi_layer_and_index() {
    if !require(TOOLS) {
        return;
    }
    let reg = plain_with_images();
    let env = Env::new();
    let v2s2 = format!("{}/test/busybox:v2s2", reg.addr());
    ok(env
        .skiff()
        .args(["pull", "-q", "--tls-verify=false", &v2s2]));
    let i = json(env.skiff().args(["inspect", &v2s2]));
    assert_eq!(
        i[0]["MediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    let multi = format!("{}/test/multi:1", reg.addr());
    let r = json(
        env.skiff()
            .args(["--format", "json", "pull", "--tls-verify=false", &multi]),
    );
    assert_eq!(r["layers"].as_array().unwrap().len(), 3);
    assert_eq!(
        r["layers"][0]["downloaded"], false,
        "the base layer is shared with busybox"
    );
    assert_eq!(
        r["layers"][0]["unpacked"], false,
        "and so is its unpacked directory"
    );
    // Every layer is a directory keyed by diff_id, in overlay form.
    let layer = |i: usize| {
        let d = r["layers"][i]["diff_id"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        env.store().join("layers").join(d)
    };
    assert!(layer(0).join("bin/busybox").is_file() && layer(0).join("bin/sh").is_symlink());
    assert_eq!(std::fs::read(layer(1).join("data/a.txt")).unwrap(), b"a\n");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let wh = std::fs::symlink_metadata(layer(2).join("etc/motd")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout as a 0:0 device"
    );
    let dir = std::fs::File::open(layer(2).join("data")).unwrap();
    let mut buf = [0u8; 4];
    let n = rustix::fs::fgetxattr(&dir, "user.overlay.opaque", &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"y",
        "opaque directory marked for overlay with userxattr"
    );
    assert_eq!(
        std::fs::metadata(layer(0).join("home/user/owned"))
            .unwrap()
            .uid(),
        1000,
        "owners kept (root mode)"
    );

    let index = format!("{}/test/busybox:index", reg.addr());
    let amd = json(env.skiff().args([
        "--format",
        "json",
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/amd64",
        &index,
    ]));
    let arm = json(env.skiff().args([
        "--format",
        "json",
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/arm64/v8",
        &index,
    ]));
    assert_ne!(amd["id"], arm["id"]);
    assert_eq!(
        amd["manifest_digest"],
        images().busybox_manifest.to_string()
    );
    let i = json(env.skiff().args(["inspect", &index]));
    assert_eq!(
        i[0]["Architecture"], "arm64",
        "the last pull names the arm64 image"
    );
    assert!(i[0]["IndexDigest"].as_str().unwrap().starts_with("sha256:"));
    let e = fails(env.skiff().args([
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/s390x",
        &index,
    ]));
    assert!(
        e.contains("no image for platform linux/s390x") && e.contains("linux/arm64/v8"),
        "{e}"
    );

    // Pull by digest verifies the bytes and keeps the digest in the name.
    let by_digest = format!("{}/test/busybox@{}", reg.addr(), images().busybox_manifest);
    let r = json(
        env.skiff()
            .args(["--format", "json", "pull", "--tls-verify=false", &by_digest]),
    );
    assert_eq!(r["name"], by_digest);
    fsck_ok(&env);
}

#[test]
fn policies_and_errors_name_what_failed() {
    if !require(TOOLS) {
        return;
    }
    let mut reg = plain_with_images();
    let env = Env::new();
    let name = format!("{}/test/busybox:1", reg.addr());
    let e = fails(env.skiff().args(["pull", "--policy", "never", &name]));
    assert!(e.contains("not in the store") && e.contains("never"), "{e}");

    let e = fails(env.skiff().args([
        "pull",
        "--tls-verify=false",
        &format!("{}/test/nothere:1", reg.addr()),
    ]));
    assert!(
        e.contains("MANIFEST_UNKNOWN") && e.contains("404") && e.contains(&reg.addr()),
        "{e}"
    );
    let e = fails(
        env.skiff()
            .args(["pull", &format!("{}/Test/x", reg.addr())]),
    );
    assert!(e.contains("must be lowercase"), "{e}");
    let e = fails(env.skiff().args(["pull", &name]));
    assert!(e.contains("HTTPS") || e.contains("https"), "{e}");
    assert!(
        e.contains("--tls-verify=false"),
        "plain HTTP needs an explicit opt-in: {e}"
    );

    ok(env
        .skiff()
        .args(["pull", "-q", "--tls-verify=false", &name]));
    let before = reg.requests();
    let out = run(env.skiff().args(["pull", "--policy", "missing", &name]));
    assert!(out.status.success(), "{}", stderr(&out));
    ok(env.skiff().args(["pull", "--policy", "never", &name]));
    assert_eq!(
        reg.requests(),
        before,
        "missing (satisfied) and never make no request"
    );

    // With the registry gone: always fails, always,if-not-present falls back to the store.
    reg.stop();
    let e = fails(env.skiff().args(["pull", "--tls-verify=false", &name]));
    assert!(e.contains(&reg.addr()), "{e}");
    ok(env.skiff().args([
        "pull",
        "--tls-verify=false",
        "--policy",
        "always,if-not-present",
        &name,
    ]));
}

#[test]
fn no_unpack_then_unpack_on_demand() {
    if !require(TOOLS) {
        return;
    }
    let reg = plain_with_images();
    let env = Env::new();
    let name = format!("{}/test/multi:1", reg.addr());
    let r = json(env.skiff().args([
        "--format",
        "json",
        "pull",
        "--no-unpack",
        "--tls-verify=false",
        &name,
    ]));
    assert!(
        r["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["unpacked"] == false)
    );
    assert_eq!(common::count_files(&env.store().join("layers")), 0);
    // A satisfied policy makes no request but unpacks what is missing.
    let r = json(
        env.skiff()
            .args(["--format", "json", "pull", "--policy", "missing", &name]),
    );
    assert_eq!(r["pulled"], false);
    assert!(
        r["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["unpacked"] == true),
        "{r}"
    );
    assert_eq!(common::count_files(&env.store().join("layers")), 3);
    ok(env.skiff().args(["rmi", &name]));
    assert_eq!(
        common::count_files(&env.store().join("layers")),
        0,
        "rmi removes layers no image uses"
    );
}
