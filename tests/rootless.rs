//! Rootless, as the unprivileged `skiff-test` user (created by scripts/setup with a subuid
//! range): pulls unpack inside a user namespace with the full mapping, so image uid 1000 is
//! a subordinate id on the host and 1000 inside `skiff unshare`; overlay mounts (and every
//! fallback) show whiteouts and opaque directories applied; rmi removes files owned by
//! subordinate ids. `skiff-nosubid` has no range: ownership is squashed, with a warning.

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::user::{NOSUBID, USER, setup};

fn layer_dirs(store: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(store.join("layers"))
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn registry_with(image: &str) -> (Registry, String) {
    let reg = Registry::start(Auth::Anonymous);
    let name = format!("{}/test/{image}:1", reg.addr());
    push(&images().layout, image, &name, &[]);
    (reg, name)
}

fn base_diff_id(report: &serde_json::Value) -> String {
    report["layers"][0]["diff_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string()
}

#[test]
fn rootless_pull_ownership_overlay_and_cleanup() {
    let Some(user) = setup(USER) else { return };
    let (_reg, name) = registry_with("multi");
    let report = user.json(&["--format", "json", "pull", "--tls-verify=false", &name]);
    let base = base_diff_id(&report);
    let owned = user
        .store()
        .join("layers")
        .join(&base)
        .join("home/user/owned");

    // On the host the file belongs to the subordinate id for 1000; the layer dir to the user.
    let md = std::fs::metadata(&owned).unwrap();
    assert_eq!(
        md.uid(),
        user.subuid + 999,
        "image uid 1000 is subuid start + 999 on the host"
    );
    assert_eq!(
        std::fs::metadata(user.store().join("layers").join(&base).join("bin/busybox"))
            .unwrap()
            .uid(),
        user.uid
    );
    assert_eq!(md.mode() & 0o7777, 0o600);

    // Inside the namespace it is 1000 again.
    let inside = user.ok(&["unshare", "stat", "-c", "%u:%g", owned.to_str().unwrap()]);
    assert_eq!(inside.trim(), "1000:1000");
    let map = user.ok(&["unshare", "cat", "/proc/self/uid_map"]);
    assert!(
        map.contains(&user.subuid.to_string()),
        "full subordinate mapping: {map}"
    );

    // An overlay of the three layers: the whiteout hides etc/motd, the opaque dir keeps only c.txt.
    let script = format!(
        "m=$({} mount {name}) && test -f $m/bin/busybox && test ! -e $m/etc/motd && ls $m/data && stat -c %u $m/home/user/owned && grep -c ' overlay ' /proc/self/mountinfo",
        user.skiff.display()
    );
    let out = user.ok(&["unshare", "sh", "-c", &script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["c.txt", "1000"], "{out}");
    assert_ne!(lines[2], "0", "an overlay mount exists inside the session");

    // Every fallback gives the same view: mount(2), fuse-overlayfs, a flattened copy.
    for driver in ["legacy", "fuse", "copy"] {
        let script = format!(
            "m=$({} mount {name}) && test ! -e $m/etc/motd && ls $m/data && stat -c %u $m/home/user/owned",
            user.skiff.display()
        );
        let out = user.run_env(
            &[&format!("SKIFF_OVERLAY={driver}")],
            &["unshare", "sh", "-c", &script],
        );
        assert!(
            out.status.success(),
            "{driver}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .collect::<Vec<_>>(),
            ["c.txt", "1000"],
            "{driver}"
        );
    }

    // Writes inside a mount go to its upper dir only; the layers never change.
    let script = format!(
        "m=$({} mount {name}) && echo new > $m/data/c.txt && rm $m/bin/sh && echo $m",
        user.skiff.display()
    );
    let merged = PathBuf::from(user.ok(&["unshare", "sh", "-c", &script]).trim());
    let upper = merged.parent().unwrap().join("upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("data/c.txt")).unwrap(),
        "new\n"
    );
    let wh = std::fs::symlink_metadata(upper.join("bin/sh")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()),
        "a deletion is a whiteout in the upper dir"
    );
    assert!(
        layer_dirs(&user.store())
            .iter()
            .any(|l| l.join("bin/sh").is_symlink()),
        "lower layer untouched"
    );

    // A flattened copy keeps owners through the namespace too.
    let flat = user.dir.path().join("flat");
    user.ok(&["unpack", &name, flat.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(flat.join("home/user/owned"))
            .unwrap()
            .uid(),
        user.subuid + 999
    );
    assert!(!flat.join("etc/motd").exists());

    // rmi and prune remove subordinate-owned files from inside the namespace.
    user.ok(&["rmi", &name]);
    user.ok(&["prune"]);
    assert!(
        layer_dirs(&user.store()).is_empty(),
        "{:?}",
        layer_dirs(&user.store())
    );
    assert_eq!(
        common::count_files(&user.store().join("mounts")),
        0,
        "upper dirs of ended sessions are gone"
    );
    user.ok(&["unshare", "rm", "-rf", flat.to_str().unwrap()]);
    assert!(!flat.exists());
}

#[test]
fn without_subordinate_ids_ownership_is_squashed_with_a_warning() {
    let Some(user) = setup(NOSUBID) else { return };
    let (_reg, name) = registry_with("multi");
    let out = user.run(&["--format", "json", "pull", "--tls-verify=false", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let owned = user
        .store()
        .join("layers")
        .join(base_diff_id(&report))
        .join("home/user/owned");
    assert_eq!(
        std::fs::metadata(&owned).unwrap().uid(),
        user.uid,
        "squashed to the user"
    );
    let map = user.ok(&["unshare", "cat", "/proc/self/uid_map"]);
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", &user.uid.to_string(), "1"],
        "single-id map"
    );
    let warn = user.run(&["unshare", "true"]);
    assert!(
        String::from_utf8_lossy(&warn.stderr).contains("single id"),
        "{}",
        String::from_utf8_lossy(&warn.stderr)
    );
}

#[test]
fn leftovers_of_a_killed_unpack_are_cleaned_by_the_next_run() {
    let Some(user) = setup(USER) else { return };
    let (_reg, name) = registry_with("busybox");
    user.ok(&["pull", "-q", "--no-unpack", "--tls-verify=false", &name]);
    let inspect = user.json(&["inspect", &name]);
    let diff_id = inspect[0]["RootFS"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    // What a killed unpacker leaves: a temporary directory with subordinate-owned files.
    let stale = user
        .store()
        .join("layers")
        .join(format!("tmp-{diff_id}-4194304-1"));
    let script = format!(
        "mkdir -p {0}/home/u && echo x > {0}/home/u/f && chown -R 1000:1000 {0}/home/u",
        stale.display()
    );
    user.ok(&["unshare", "sh", "-c", &script]);
    assert_eq!(
        std::fs::metadata(stale.join("home/u/f")).unwrap().uid(),
        user.subuid + 999
    );
    user.ok(&["pull", "--policy", "missing", &name]);
    assert!(
        !stale.exists(),
        "the next unpack of the layer removed the leftover"
    );
    assert!(
        user.store()
            .join("layers")
            .join(&diff_id)
            .join("bin/busybox")
            .is_file()
    );
}

#[test]
fn info_reports_the_mapping_and_says_what_is_missing() {
    let Some(with) = setup(USER) else { return };
    let Some(without) = setup(NOSUBID) else {
        return;
    };
    let a = with.json(&["--format", "json", "info"]);
    assert_eq!(a["id_mapping"]["kind"], "full");
    assert_eq!(a["id_mapping"]["subuid"]["start"], with.subuid);
    assert!(
        a["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("crun"))
    );
    let b = without.json(&["--format", "json", "info"]);
    assert_eq!(b["id_mapping"]["kind"], "single");
    assert!(
        b["hints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h.as_str().unwrap().contains("usermod --add-subuids")),
        "{b}"
    );
}

/// Archives a user saves, skopeo run by the same user reads: containers/image unpacks an
/// oci-archive to a temporary directory, and makes the directories the archive does not list
/// itself, owned by root, which an unprivileged user cannot (skopeo's own archives list them).
#[test]
fn the_user_s_own_skopeo_reads_the_archives_they_save() {
    let Some(user) = setup(USER) else { return };
    let (_reg, name) = registry_with("busybox");
    user.ok(&["pull", "-q", "--no-unpack", "--tls-verify=false", &name]);
    let digest = user.json(&["inspect", &name])[0]["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    for (format, transport) in [
        ("oci-archive", "oci-archive"),
        ("docker-archive", "docker-archive"),
    ] {
        let file = user.dir.path().join("home").join(format!("{format}.tar"));
        let file = file.to_str().unwrap();
        user.ok(&["--format", format, "save", "-o", file, &name]);
        let o = std::process::Command::new("runuser")
            .args(["-u", USER, "--", "env", "-i", "PATH=/usr/bin:/bin"])
            .arg(format!("HOME={}", user.dir.path().join("home").display()))
            .arg(format!("TMPDIR={}", user.dir.path().join("home").display()))
            .args(["skopeo", "inspect", &format!("{transport}:{file}")])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let read: serde_json::Value = serde_json::from_str(&said).unwrap();
        if format == "oci-archive" {
            assert_eq!(read["Digest"], digest, "{format}: {said}");
        }
        assert_eq!(read["Layers"].as_array().map(Vec::len), Some(1), "{said}");
    }
}
