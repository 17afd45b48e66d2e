//! Pushing to real registries: monolithic and chunked uploads, existing blobs skipped,
//! cross-repository mounts, Basic auth; skopeo then sees exactly the digests skiff has.

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use common::{Env, fails, json, ok, require};
use std::process::Command;

fn raw_manifest(name: &str, extra: &[&str]) -> String {
    ok(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{name}")))
}

fn stored_manifest(env: &Env, name: &str) -> (String, String) {
    let i = json(env.skiff().args(["inspect", name]));
    let digest = i[0]["Digest"].as_str().unwrap().to_string();
    let bytes = std::fs::read_to_string(
        env.store()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    (digest, bytes)
}

#[test]
fn push_monolithic_chunked_existing_and_mounted() {
    if !require(&["docker-registry", "skopeo"]) {
        return;
    }
    let src = Registry::start(Auth::Anonymous);
    push(
        &images().layout,
        "multi",
        &format!("{}/test/multi:1", src.addr()),
        &[],
    );
    let dst = Registry::start(Auth::Anonymous);
    let env = Env::new();
    let name = format!("{}/test/multi:1", src.addr());
    ok(env
        .skiff()
        .args(["pull", "-q", "--no-unpack", "--tls-verify=false", &name]));
    let (digest, bytes) = stored_manifest(&env, &name);

    // Monolithic.
    let to = format!("{}/pushed/multi:1", dst.addr());
    let r = json(
        env.skiff()
            .args(["--format", "json", "push", "--tls-verify=false", &name, &to]),
    );
    assert_eq!(r["manifest_digest"], digest);
    assert!(
        r["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b[1] == "uploaded"),
        "{r}"
    );
    assert_eq!(
        raw_manifest(&to, &[]),
        bytes,
        "skopeo sees exactly skiff's manifest"
    );
    // Everything exists the second time.
    let r = json(
        env.skiff()
            .args(["--format", "json", "push", "--tls-verify=false", &name, &to]),
    );
    assert!(
        r["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b[1] == "exists"),
        "{r}"
    );

    // Chunked, to another repository.
    let to2 = format!("{}/chunked/multi:2", dst.addr());
    let r = json(env.skiff().args([
        "--format",
        "json",
        "push",
        "--tls-verify=false",
        "--chunk-size",
        "65536",
        &name,
        &to2,
    ]));
    assert!(
        r["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b[1] == "chunked"),
        "{r}"
    );
    assert!(
        dst.log()
            .lines()
            .filter(|l| l.contains("\"PATCH /v2/chunked/multi/blobs/uploads/"))
            .count()
            > 10,
        "many PATCH requests"
    );
    assert_eq!(raw_manifest(&to2, &[]), bytes);

    // An image pulled from the destination registry mounts its blobs into another repository.
    let env2 = Env::new();
    ok(env2
        .skiff()
        .args(["pull", "-q", "--no-unpack", "--tls-verify=false", &to]));
    let to3 = format!("{}/mounted/multi:3", dst.addr());
    let r = json(
        env2.skiff()
            .args(["--format", "json", "push", "--tls-verify=false", &to, &to3]),
    );
    assert!(
        r["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b[1] == "mounted"),
        "{r}"
    );
    assert!(
        dst.log().contains("mount=sha256"),
        "the registry saw cross-repository mounts"
    );
    assert_eq!(raw_manifest(&to3, &[]), bytes);
}

#[test]
fn push_with_basic_auth_and_imported_images() {
    if !require(&["docker-registry", "skopeo", "htpasswd"]) {
        return;
    }
    let reg = Registry::start(Auth::Htpasswd {
        user: "ci".into(),
        password: "push-secret-41".into(),
    });
    let env = Env::new();
    // An image built locally: push it by its name.
    let tar = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let file = env.path("rootfs.tar");
    std::fs::write(&file, tar).unwrap();
    let name = format!("{}/team/imported:1", reg.addr());
    ok(env.skiff().args(["import"]).arg(&file).arg(&name));
    let e = fails(env.skiff().args(["push", "--tls-verify=false", &name]));
    assert!(e.contains("401") && e.contains(&reg.addr()), "{e}");
    ok(env.skiff().args([
        "push",
        "--tls-verify=false",
        "--creds",
        "ci:push-secret-41",
        &name,
    ]));
    let (_, bytes) = stored_manifest(&env, &name);
    assert_eq!(
        raw_manifest(&name, &["--creds", "ci:push-secret-41"]),
        bytes
    );
    let e = fails(env.skiff().args([
        "push",
        "--tls-verify=false",
        &name,
        &format!("{}/team/x@sha256:{}", reg.addr(), "f".repeat(64)),
    ]));
    assert!(e.contains("not a digest"), "{e}");
}
