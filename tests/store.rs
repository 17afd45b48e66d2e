//! The store under concurrency and crashes: parallel pulls download each blob once, kill -9 at
//! any point leaves a store that fsck passes, prune during a pull never breaks the pull.

mod common;

use common::registry::{Auth, Registry, push};
use common::{Env, fsck_ok, json, ok, require};
use skiff::oci::digest::Digest;
use std::io::Write;
use std::time::Duration;

const TOOLS: &[&str] = &["docker-registry", "skopeo"];

/// An image of 4 layers of 4 MiB incompressible data, so a pull lasts long enough to be hit.
fn big_image_registry() -> (Registry, Vec<Digest>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let d = Digest::sha256_of(bytes);
        std::fs::write(root.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        d
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..4 {
        let mut data = vec![0u8; 4 << 20];
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        t.append_data(&mut h, format!("layer{i}.bin"), &data[..])
            .unwrap();
        let tar = t.into_inner().unwrap();
        diff_ids.push(Digest::sha256_of(&tar).to_string());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let blob = gz.finish().unwrap();
        layers.push((put(&blob), blob.len()));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).to_string();
    let config_d = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d.to_string(), "size": config.len()},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
    })
    .to_string();
    let md = put(manifest.as_bytes());
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.to_string(), "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "big"}}]});
    std::fs::write(root.join("index.json"), index.to_string()).unwrap();
    let reg = Registry::start(Auth::Anonymous);
    push(root, "big", &format!("{}/test/big:1", reg.addr()), &[]);
    (reg, layers.into_iter().map(|(d, _)| d).collect(), dir)
}

#[test]
fn parallel_pulls_download_each_blob_once() {
    if !require(TOOLS) {
        return;
    }
    let (reg, layers, _dir) = big_image_registry();
    let env = Env::new();
    let name = format!("{}/test/big:1", reg.addr());
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.skiff()
                .args(["--format", "json", "pull", "--tls-verify=false", &name])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut downloaded = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        downloaded += r["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["downloaded"] == true)
            .count();
    }
    assert_eq!(
        downloaded,
        layers.len(),
        "across all processes, each layer was downloaded once"
    );
    for d in &layers {
        assert_eq!(reg.blob_gets(&d.to_string()), 1, "registry served {d} once");
    }
    fsck_ok(&env);
}

#[test]
fn kill_9_at_any_point_leaves_a_store_fsck_passes() {
    if !require(TOOLS) {
        return;
    }
    let (reg, _layers, _dir) = big_image_registry();
    let env = Env::new();
    let name = format!("{}/test/big:1", reg.addr());
    // Measure a warm pull into an empty store, then kill at points spread over that duration.
    ok(env
        .skiff()
        .args(["pull", "-q", "--tls-verify=false", &name]));
    ok(env.skiff().args(["rmi", &name]));
    let t = std::time::Instant::now();
    ok(env
        .skiff()
        .args(["pull", "-q", "--tls-verify=false", &name]));
    let full = t.elapsed();
    ok(env.skiff().args(["rmi", &name]));
    let kills = 12;
    let mut interrupted = 0;
    for i in 0..kills {
        let delay = full.mul_f64(i as f64 / kills as f64);
        let mut child = env
            .skiff()
            .args(["pull", "-q", "--tls-verify=false", &name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Its unpack helpers outlive it until they have read the end of their input and
        // removed what they wrote; prune leaves alone what a live helper holds.
        let store = env.store().to_string_lossy().into_owned();
        let helpers = common::processes_with_args(&["__unpack-layer", &store]);
        assert!(
            helpers.is_empty(),
            "unpack helpers still running 5 s after their pull was killed: {helpers:?}"
        );
        fsck_ok(&env);
        if json(env.skiff().args(["--format", "json", "images"]))
            .as_array()
            .unwrap()
            .is_empty()
        {
            interrupted += 1;
        } else {
            ok(env.skiff().args(["rmi", &name]));
        }
        // Start the next pull from an empty store, so every kill lands in a full pull.
        ok(env.skiff().args(["prune"]));
        assert_eq!(
            common::count_files(&env.store().join("layers")),
            0,
            "prune removes half-unpacked layers"
        );
    }
    assert!(
        interrupted >= kills / 2,
        "only {interrupted} of {kills} kills hit a running pull (pull took {full:?})"
    );
    ok(env.skiff().args(["prune"]));
    assert_eq!(
        common::count_files(&env.store().join("ingest")),
        0,
        "prune removes leftovers of killed pulls"
    );
    ok(env
        .skiff()
        .args(["pull", "-q", "--tls-verify=false", &name]));
    fsck_ok(&env);
}

#[test]
fn prune_during_a_pull_never_removes_what_it_needs() {
    if !require(TOOLS) {
        return;
    }
    let (reg, _layers, _dir) = big_image_registry();
    let env = Env::new();
    let name = format!("{}/test/big:1", reg.addr());
    for _ in 0..3 {
        let mut pull = env
            .skiff()
            .args(["pull", "-q", "--tls-verify=false", &name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        while pull.try_wait().unwrap().is_none() {
            ok(env.skiff().args(["prune"]));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(pull.wait().unwrap().success());
        fsck_ok(&env);
        let list = json(env.skiff().args(["--format", "json", "images"]));
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(
            common::count_files(&env.store().join("layers")),
            4,
            "every layer directory survived the prunes"
        );
        ok(env.skiff().args(["rmi", &name]));
    }
}
