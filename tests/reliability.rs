//! Concurrency and a full disk: eight processes pulling one image into one store at once
//! download each blob once and all succeed; prune and rmi racing a pull take nothing it
//! needs; four jobs with services at once finish independently; a store on a tiny tmpfs
//! fails pulls and imports with a clear error and stays consistent.

mod common;

use common::images::images;
use common::proxy::{FaultProxy, ProxyFault};
use common::registry::{Auth, Registry, push};
use common::{Env, fsck_ok, require, require_root, run};
use std::sync::atomic::Ordering;

#[test]
fn eight_pulls_at_once_download_each_blob_once() {
    if !require(&["docker-registry", "skopeo"]) {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    push(
        &images().layout,
        "busybox",
        &format!("{}/test/busybox:1", reg.addr()),
        &[],
    );
    // A proxy that faults nothing and counts blob requests.
    let proxy = FaultProxy::start(
        reg.addr().parse().unwrap(),
        ProxyFault::Status(500, None),
        0,
    );
    let name = format!("{}/test/busybox:1", proxy.addr);
    let env = Env::new();
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.skiff()
                .args(["pull", "-q", "--tls-verify=false", &name])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The config and the one layer.
    assert_eq!(
        proxy.seen.load(Ordering::SeqCst),
        2,
        "each blob was downloaded once"
    );
    fsck_ok(&env);
    println!(
        "reliability: 8 pulls of one image into one store at once | 8 pulls | pass (each blob downloaded once)"
    );
}

#[test]
fn a_full_disk_fails_clearly_and_loses_nothing() {
    if !require(&["docker-registry", "skopeo", "unshare"]) || !require_root("mounting a tmpfs") {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    let name = format!("{}/test/busybox:1", reg.addr());
    push(&images().layout, "busybox", &name, &[]);
    let env = Env::new();
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let store = env.store();
    // A 512 KiB store in a mount namespace of the test's own: the ~1 MiB layer cannot fit.
    let tarball = env.path("rootfs.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
        let data = vec![7u8; 2 * 1024 * 1024];
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "big", &data[..]).unwrap();
        b.finish().unwrap();
    }
    let script = format!(
        "mount -t tmpfs -o size=512k tmpfs {store} || exit 99
         {skiff} --root {store} pull --tls-verify=false {name} 2>{dir}/pull.err; echo pull=$?
         {skiff} --root {store} import {tar} full:1 2>{dir}/import.err; echo import=$?
         {skiff} --root {store} --format json fsck > {dir}/fsck.json; echo fsck=$?
         {skiff} --root {store} images -q | wc -l",
        store = store.display(),
        dir = env.path("").display(),
        tar = tarball.display(),
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    for (k, v) in env.skiff().get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let o = run(&mut cmd);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let read = |f: &str| std::fs::read_to_string(env.path(f)).unwrap_or_default();
    assert!(out.contains("pull=125"), "{out} {}", read("pull.err"));
    assert!(
        read("pull.err").contains("No space left on device"),
        "names the cause: {}",
        read("pull.err")
    );
    assert!(out.contains("import=125"), "{out} {}", read("import.err"));
    assert!(
        read("import.err").contains("No space left on device"),
        "{}",
        read("import.err")
    );
    assert!(out.contains("fsck=0"), "{out} {}", read("fsck.json"));
    let report: serde_json::Value = serde_json::from_str(&read("fsck.json")).unwrap();
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");
    assert!(
        out.trim_end().ends_with('0'),
        "no half-written image: {out}"
    );
    println!(
        "reliability: a full disk (store on a 512 KiB tmpfs): pull and import fail clearly, fsck clean | 2 operations | pass"
    );
}

/// prune, and rmi of an image sharing the base layer the pull found already present, while
/// a pull is stalled mid-way: each waits for the pull or leaves what it needs alone.
#[test]
fn prune_or_rmi_during_a_pull_takes_nothing_it_needs() {
    if !require(&["docker-registry", "skopeo"]) {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    let base = format!("{}/test/busybox:1", reg.addr());
    push(&images().layout, "busybox", &base, &[]);
    push(
        &images().layout,
        "multi",
        &format!("{}/test/multi:1", reg.addr()),
        &[],
    );
    for (what, racer) in [
        ("prune", vec!["prune".to_string()]),
        (
            "rmi of the image sharing the base layer",
            vec!["rmi".into(), base.clone()],
        ),
    ] {
        let env = Env::new();
        let o = run(env
            .skiff()
            .args(["pull", "-q", "--tls-verify=false", &base]));
        assert!(o.status.success(), "{what}: {o:?}");
        // The first blob transfer stalls halfway for 2 s: the pull is surely under way.
        let proxy = FaultProxy::start(
            reg.addr().parse().unwrap(),
            ProxyFault::StallBlob(std::time::Duration::from_secs(2)),
            1,
        );
        let name = format!("{}/test/multi:1", proxy.addr);
        let pull = env
            .skiff()
            .args(["pull", "-q", "--tls-verify=false", &name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while proxy.seen.load(Ordering::SeqCst) == 0 {
            assert!(
                start.elapsed().as_secs() < 20,
                "{what}: the pull never reached a blob"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let racing = run(env.skiff().args(&racer));
        assert!(racing.status.success(), "{what}: {racing:?}");
        let o = pull.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        fsck_ok(&env);
        let o = run(env.skiff().args([
            "run",
            "--rm",
            &name,
            "sh",
            "-c",
            "test -d /bin && echo complete",
        ]));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "complete",
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    println!(
        "reliability: prune, and rmi of an image sharing layers, racing a stalled pull | 2 races | pass"
    );
}
