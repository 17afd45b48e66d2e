//! skiff's flattened unpack equals `umoci unpack` of the same image, entry by entry: type,
//! mode, owner, size, content hash and link target. Images: the ~126 MB Debian layer and the
//! 8-layer image from scripts/build-bench-images, and the small test image with owners,
//! hardlinks, whiteouts and an opaque directory.

mod common;

use common::images::images;
use common::registry::{Auth, Registry, push};
use common::{Env, ok, require, require_root};
use skiff::oci::digest::Digest;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("symlink -> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                format!(
                    "file {} {}",
                    md.len(),
                    Digest::sha256_of(&std::fs::read(&p).unwrap())
                )
            } else if ft.is_fifo() {
                "fifo".into()
            } else if ft.is_char_device() || ft.is_block_device() {
                format!("device {}", md.rdev())
            } else {
                "other".into()
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                md.mode() & 0o7777
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                format!("{what} mode={mode:o} owner={}:{}", md.uid(), md.gid()),
            );
        }
    }
    out
}

fn compare(env: &Env, reg: &Registry, layout: &Path, tag: &str, label: &str) -> usize {
    let name = format!("{}/cmp/{label}:1", reg.addr());
    push(layout, tag, &name, &[]);
    ok(env
        .skiff()
        .args(["pull", "-q", "--no-unpack", "--tls-verify=false", &name]));
    let ours = env.path(&format!("skiff-{label}"));
    ok(env.skiff().args(["unpack", &name]).arg(&ours));
    // umoci reads an OCI layout with a plain tag.
    let oci = env.path(&format!("oci-{label}"));
    ok(Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("oci:{}:{tag}", oci.display())));
    let bundle = env.path(&format!("umoci-{label}"));
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", oci.display()))
        .arg(&bundle));
    let (a, b) = (describe(&ours), describe(&bundle.join("rootfs")));
    let differences: Vec<String> = a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .take(20)
        .map(|k| format!("{k}: skiff={:?} umoci={:?}", a.get(k), b.get(k)))
        .collect();
    assert!(
        differences.is_empty(),
        "{label}: skiff and umoci differ:\n{}",
        differences.join("\n")
    );
    a.len()
}

#[test]
fn flattened_unpack_equals_umoci() {
    if !require(&[
        "docker-registry",
        "skopeo",
        "umoci",
        "tar",
        "gzip",
        "python3",
    ]) {
        return;
    }
    if !require_root("umoci keeps owners only as root; the rootless path is in tests/rootless.rs") {
        return;
    }
    let reg = Registry::start(Auth::Anonymous);
    let env = Env::new();
    assert!(compare(&env, &reg, &images().layout, "multi", "small") > 20);
    let bench = env.path("bench-images");
    ok(Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/build-bench-images"
    ))
    .arg(&bench));
    let debian = compare(&env, &reg, &bench, "debian", "debian");
    assert!(
        debian > 5000,
        "the Debian layer has thousands of entries, got {debian}"
    );
    compare(&env, &reg, &bench, "multi", "eight-layers");
}
