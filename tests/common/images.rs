//! Test images built offline from Debian's busybox-static into one OCI layout:
//! `busybox` (1 layer), `multi` (3 layers: base, additions, whiteouts), `index` (an OCI index
//! for linux/amd64 and linux/arm64/v8), `busybox-user` (busybox running as uid 1000) and
//! `runner-helper` (busybox with stand-ins for GitLab Runner's `gitlab-runner-helper` and
//! `gitlab-runner-build` at /usr/bin, where the runner's helper images keep them).
//! Reproducible: fixed mtimes, sorted entries.

use skiff::oci::digest::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub struct TestImages {
    pub layout: PathBuf,
    pub busybox_layer: Digest,
    pub busybox_manifest: Digest,
}

const MTIME: u64 = 1_700_000_000;
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "id", "true", "false", "sleep", "env", "mkdir", "rm", "touch", "wc",
    "nc", "printf",
];

/// What the stand-in helper (gitlab-runner-helper.sh) needs beyond the base applets, and `ln`
/// for the driver's `gitlab-runner` link.
const HELPER_APPLETS: &[&str] = &[
    "basename", "chmod", "crc32", "cut", "date", "dirname", "find", "head", "ln", "mktemp", "mv",
    "sort", "stat", "tr", "unzip", "wget",
];

enum Entry<'a> {
    Dir(&'a str, u32, u64),
    File(&'a str, &'a [u8], u32, u64),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn tar_layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(p, mode, owner) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*owner);
                h.set_gid(*owner);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::File(p, data, mode, owner) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*owner);
                h.set_gid(*owner);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            Entry::Hardlink(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Layout {
    dir: PathBuf,
    refs: Vec<serde_json::Value>,
}

impl Layout {
    fn blob(&self, bytes: &[u8]) -> Digest {
        let d = Digest::sha256_of(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        d
    }
    fn desc(&self, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let d = self.blob(bytes);
        serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": bytes.len()})
    }
    fn image(
        &self,
        layers: &[Vec<u8>],
        arch: &str,
        variant: Option<&str>,
    ) -> (serde_json::Value, Vec<u8>) {
        self.image_as(layers, arch, variant, None)
    }
    /// An image whose config names the `user` it runs as.
    fn image_as(
        &self,
        layers: &[Vec<u8>],
        arch: &str,
        variant: Option<&str>,
        user: Option<&str>,
    ) -> (serde_json::Value, Vec<u8>) {
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| Digest::sha256_of(l).to_string())
            .collect();
        let layer_descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| self.desc("application/vnd.oci.image.layer.v1.tar+gzip", &gzip(l)))
            .collect();
        let mut config = serde_json::json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layers.iter().map(|_| serde_json::json!({"created": "2023-11-14T22:13:20Z", "created_by": "skiff test image builder"})).collect::<Vec<_>>(),
        });
        if let Some(v) = variant {
            config["variant"] = v.into();
        }
        if let Some(u) = user {
            config["config"]["User"] = u.into();
        }
        let config_desc = self.desc(
            "application/vnd.oci.image.config.v1+json",
            config.to_string().as_bytes(),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc, "layers": layer_descs,
        });
        let bytes = manifest.to_string().into_bytes();
        (
            self.desc("application/vnd.oci.image.manifest.v1+json", &bytes),
            bytes,
        )
    }
    fn name(&mut self, mut desc: serde_json::Value, name: &str) {
        desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
        self.refs.push(desc);
    }
}

fn build(dir: &Path) -> TestImages {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static) is required");
    let mut entries = vec![
        Entry::Dir("bin", 0o755, 0),
        Entry::File("bin/busybox", &busybox, 0o755, 0),
    ];
    let links: Vec<String> = APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    for l in &links {
        entries.push(Entry::Symlink(l, "busybox"));
    }
    entries.extend([
        Entry::Dir("etc", 0o755, 0),
        Entry::File("etc/group", b"root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n", 0o644, 0),
        Entry::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n", 0o644, 0),
        Entry::File("etc/motd", b"welcome\n", 0o644, 0),
        Entry::Dir("home", 0o755, 0),
        Entry::Dir("home/user", 0o755, 1000),
        Entry::File("home/user/owned", b"mine\n", 0o600, 1000),
        Entry::Dir("root", 0o700, 0),
        Entry::Dir("tmp", 0o1777, 0),
    ]);
    let base = tar_layer(&entries);
    let add = tar_layer(&[
        Entry::Dir("data", 0o755, 0),
        Entry::File("data/a.txt", b"a\n", 0o644, 0),
        Entry::File("data/b.txt", b"b\n", 0o644, 0),
        Entry::Hardlink("data/a-link", "data/a.txt"),
        Entry::Symlink("data/abs", "/etc/passwd"),
    ]);
    let wh = tar_layer(&[
        Entry::Dir("etc", 0o755, 0),
        Entry::File("etc/.wh.motd", b"", 0o644, 0),
        Entry::Dir("data", 0o755, 0),
        Entry::File("data/.wh..wh..opq", b"", 0o644, 0),
        Entry::File("data/c.txt", b"c\n", 0o644, 0),
    ]);
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let mut layout = Layout {
        dir: dir.to_path_buf(),
        refs: vec![],
    };
    let (bb, bb_bytes) = layout.image(std::slice::from_ref(&base), "amd64", None);
    let (multi, _) = layout.image(&[base.clone(), add, wh], "amd64", None);
    let (arm, _) = layout.image(std::slice::from_ref(&base), "arm64", Some("v8"));
    let mut amd_entry = bb.clone();
    amd_entry["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
    let mut arm_entry = arm;
    arm_entry["platform"] =
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [arm_entry, amd_entry]});
    let helper_links: Vec<String> = HELPER_APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    let mut helper_entries = vec![
        Entry::Dir("bin", 0o755, 0),
        Entry::Dir("usr", 0o755, 0),
        Entry::Dir("usr/bin", 0o755, 0),
        Entry::File(
            "usr/bin/gitlab-runner-helper",
            include_bytes!("gitlab-runner-helper.sh"),
            0o755,
            0,
        ),
        // The helper container's command for every stage (helperimage's `bashCmd`): umask
        // 0000, then the shell reads the stage's script on stdin.
        Entry::File(
            "usr/bin/gitlab-runner-build",
            b"#!/bin/sh\numask 0000\nexec /bin/sh\n",
            0o755,
            0,
        ),
    ];
    for l in &helper_links {
        helper_entries.push(Entry::Symlink(l, "busybox"));
    }
    let (helper, _) = layout.image(&[base.clone(), tar_layer(&helper_entries)], "amd64", None);
    let (user, _) = layout.image_as(
        std::slice::from_ref(&base),
        "amd64",
        None,
        Some("1000:1000"),
    );
    let index_desc = layout.desc(
        "application/vnd.oci.image.index.v1+json",
        index.to_string().as_bytes(),
    );
    layout.name(bb, "busybox");
    layout.name(multi, "multi");
    layout.name(index_desc, "index");
    layout.name(helper, "runner-helper");
    layout.name(user, "busybox-user");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let idx = serde_json::json!({"schemaVersion": 2, "manifests": layout.refs});
    std::fs::write(dir.join("index.json"), idx.to_string()).unwrap();
    TestImages {
        layout: dir.to_path_buf(),
        busybox_layer: Digest::sha256_of(&gzip(&base)),
        busybox_manifest: Digest::sha256_of(&bb_bytes),
    }
}

/// Built once per test binary, in its own temporary directory.
pub fn images() -> &'static TestImages {
    static IMAGES: OnceLock<(tempfile::TempDir, TestImages)> = OnceLock::new();
    &IMAGES
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("skiff-images")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .unwrap();
            let imgs = build(dir.path());
            (dir, imgs)
        })
        .1
}

/// A prebuilt helper tarball in the runner's newer form (docker-archive, zstd), of the
/// `runner-helper` image.
pub fn helper_tarballs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let archive = dir.join("helper.tar");
    super::ok(
        std::process::Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(format!("oci:{}:runner-helper", images().layout.display()))
            .arg(format!("docker-archive:{}:some/name:1", archive.display())),
    );
    let zst = zstd::encode_all(&std::fs::read(&archive).unwrap()[..], 3).unwrap();
    std::fs::write(dir.join("prebuilt-alpine-x86_64.docker.tar.zst"), zst).unwrap();
    std::fs::remove_file(archive).unwrap();
}
