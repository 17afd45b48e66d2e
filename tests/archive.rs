//! Archives between skiff and its peers: docker-archive and oci-archive from skopeo and
//! podman (one and several images, compressed, without names) load with their names; skiff's
//! own archives load into podman with the same names and image IDs; broken archives change
//! nothing.

mod common;

use common::images::images;
use common::{Env, fails, json, ok, require, run};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        Podman {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs"]);
        c
    }
}

fn skopeo(args: &[&str]) {
    ok(Command::new("skopeo").args(["copy", "-q"]).args(args));
}

fn layout(name: &str) -> String {
    format!("oci:{}:{name}", images().layout.display())
}

/// Rewrites one member of a tar archive (or drops it with `None`).
fn rewrite(src: &Path, dst: &Path, member: &str, with: Option<&dyn Fn(Vec<u8>) -> Vec<u8>>) {
    let mut out = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(std::fs::File::open(src).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let mut h = e.header().clone();
        if path == member {
            match with {
                None => continue,
                Some(f) => data = f(data),
            }
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append_data(&mut h, &path, &data[..]).unwrap();
    }
    std::fs::write(dst, out.into_inner().unwrap()).unwrap();
}

fn names(env: &Env) -> Vec<String> {
    json(env.skiff().args(["--format", "json", "images"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

fn loaded(env: &Env, file: &Path, extra: &[&str]) -> String {
    ok(env.skiff().args(["load", "-i"]).arg(file).args(extra))
}

#[test]
fn archives_from_skopeo_and_podman_load_with_their_names() {
    if !require(&["skopeo", "podman"]) {
        return;
    }
    let env = Env::new();
    let p = |n: &str| env.path(n);
    // skopeo writes fully qualified RepoTags; docker save writes familiar ones.
    skopeo(&[
        &layout("busybox"),
        &format!("docker-archive:{}:lab/busybox:1", p("skopeo.tar").display()),
    ]);
    rewrite(
        &p("skopeo.tar"),
        &p("docker.tar"),
        "manifest.json",
        Some(&|m| {
            String::from_utf8(m)
                .unwrap()
                .replace("docker.io/lab/busybox:1", "lab/busybox:1")
                .into_bytes()
        }),
    );
    rewrite(
        &p("skopeo.tar"),
        &p("notag.tar"),
        "manifest.json",
        Some(&|m| {
            String::from_utf8(m)
                .unwrap()
                .replace("\"docker.io/lab/busybox:1\"", "")
                .into_bytes()
        }),
    );
    skopeo(&[
        &layout("multi"),
        &format!("oci-archive:{}:lab/multi:2", p("skopeo-oci.tar").display()),
    ]);
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&std::fs::read(p("skopeo.tar")).unwrap())
            .unwrap();
        e.finish().unwrap()
    };
    std::fs::write(p("skopeo.tar.gz"), gz).unwrap();
    // podman: one image, and several in one docker-archive.
    let podman = Podman::new();
    skopeo(&[
        &layout("multi"),
        &format!(
            "docker-archive:{}:lab/multi:1",
            p("for-podman.tar").display()
        ),
    ]);
    ok(podman.cmd().args(["load", "-q", "-i"]).arg(p("skopeo.tar")));
    ok(podman
        .cmd()
        .args(["load", "-q", "-i"])
        .arg(p("for-podman.tar")));
    let ids: Vec<String> = ok(podman.cmd().args(["images", "-q", "--no-trunc"]))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 2);
    ok(podman.cmd().args(["tag", &ids[0], "quay.io/team/one:3"]));
    ok(podman.cmd().args(["tag", &ids[1], "quay.io/team/two:4"]));
    ok(podman
        .cmd()
        .args(["save", "-q", "-o"])
        .arg(p("podman.tar"))
        .arg("quay.io/team/one:3"));
    ok(podman
        .cmd()
        .args(["save", "-q", "--format", "oci-archive", "-o"])
        .arg(p("podman-oci.tar"))
        .arg("quay.io/team/two:4"));
    ok(podman
        .cmd()
        .args(["save", "-q", "-m", "-o"])
        .arg(p("podman-multi.tar"))
        .args(["quay.io/team/one:3", "quay.io/team/two:4"]));

    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "skopeo.tar",
            vec![],
            vec!["Loaded image: docker.io/lab/busybox:1"],
        ),
        (
            "docker.tar",
            vec![],
            vec!["Loaded image: localhost/lab/busybox:1"],
        ),
        (
            "skopeo.tar.gz",
            vec![],
            vec!["Loaded image: docker.io/lab/busybox:1"],
        ),
        (
            "skopeo-oci.tar",
            vec![],
            vec!["Loaded image: localhost/lab/multi:2"],
        ),
        (
            "podman.tar",
            vec![],
            vec!["Loaded image: quay.io/team/one:3"],
        ),
        (
            "podman-oci.tar",
            vec![],
            vec!["Loaded image: quay.io/team/two:4"],
        ),
        (
            "podman-multi.tar",
            vec![],
            vec![
                "Loaded image: quay.io/team/one:3",
                "Loaded image: quay.io/team/two:4",
            ],
        ),
        (
            "skopeo-oci.tar",
            vec!["--tag", "registry.example/helper:x86_64-v17.9.0"],
            vec!["Loaded image: registry.example/helper:x86_64-v17.9.0"],
        ),
        ("notag.tar", vec![], vec!["Loaded image ID: sha256:"]),
    ];
    for (file, extra, want) in cases {
        let out = loaded(&env, &p(file), &extra);
        for w in want {
            assert!(out.contains(w), "{file}: {out}");
        }
    }
    let all = names(&env);
    for n in [
        "docker.io/lab/busybox:1",
        "localhost/lab/busybox:1",
        "localhost/lab/multi:2",
        "quay.io/team/one:3",
        "quay.io/team/two:4",
        "registry.example/helper:x86_64-v17.9.0",
    ] {
        assert!(all.contains(&n.to_string()), "{n:?} missing from {all:?}");
    }
    assert!(!all.iter().any(|n| n.ends_with(":latest")), "{all:?}");
    // Loading the same archive again changes nothing.
    let before = common::count_files(&env.store().join("blobs/sha256"));
    loaded(&env, &p("podman-multi.tar"), &[]);
    assert_eq!(
        common::count_files(&env.store().join("blobs/sha256")),
        before
    );
    common::fsck_ok(&env);
}

#[test]
fn saved_archives_load_into_podman_with_the_same_names_and_ids() {
    if !require(&["skopeo", "podman"]) {
        return;
    }
    let env = Env::new();
    skopeo(&[
        &layout("multi"),
        &format!("oci:{}:quay.io/team/multi:5", env.store().display()),
    ]);
    let id = json(env.skiff().args(["inspect", "quay.io/team/multi:5"]))[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(env
        .skiff()
        .args(["tag", "quay.io/team/multi:5", "localhost/short:1"]));
    // podman refuses oci-archives with more than one named entry: one name there.
    for (format, file, names) in [
        (
            "docker-archive",
            "out-docker.tar",
            vec!["quay.io/team/multi:5", "localhost/short:1"],
        ),
        ("oci-archive", "out-oci.tar", vec!["quay.io/team/multi:5"]),
    ] {
        let out: PathBuf = env.path(file);
        ok(env
            .skiff()
            .args(["--format", format, "save", "-o"])
            .arg(&out)
            .args(&names));
        let podman = Podman::new();
        let loaded = ok(podman.cmd().args(["load", "-i"]).arg(&out));
        for n in &names {
            assert!(loaded.contains(n), "{format}: {loaded}");
        }
        let listed = ok(podman.cmd().args([
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ]));
        for line in listed.lines() {
            assert!(
                line.ends_with(&id),
                "{format}: podman's image ID is skiff's: {line} vs {id}"
            );
        }
    }
    let cfg = ok(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!(
            "docker-archive:{}:quay.io/team/multi:5",
            env.path("out-docker.tar").display()
        )));
    assert!(cfg.contains("\"diff_ids\""), "{cfg}");
    // To standard output (no -o, and -o -): the same bytes as the file, for both formats;
    // never to a terminal.
    for (format, file, name) in [
        ("docker-archive", "out-docker.tar", "localhost/short:1"),
        ("oci-archive", "out-oci.tar", "quay.io/team/multi:5"),
    ] {
        let file = env.path(file);
        ok(env
            .skiff()
            .args(["--format", format, "save", "-o"])
            .arg(&file)
            .arg(name));
        for args in [vec!["save", name], vec!["save", "-o", "-", name]] {
            let o = env
                .skiff()
                .args(["--format", format])
                .args(&args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{args:?}: {o:?}");
            assert!(
                o.stdout == std::fs::read(&file).unwrap(),
                "{format} {args:?}: standard output is not the file's archive"
            );
            assert!(!env.path("-").exists(), "{args:?} wrote a file named -");
        }
    }
    // A terminal on standard output (script(1) gives the command one): refused, by name.
    let mut on_terminal = Command::new("script");
    let skiff = env.skiff();
    for (k, v) in skiff.get_envs() {
        match v {
            Some(v) => on_terminal.env(k, v),
            None => on_terminal.env_remove(k),
        };
    }
    on_terminal.args(["-qec"]).arg(format!(
        "{} --root {} save localhost/short:1",
        env!("CARGO_BIN_EXE_skiff"),
        env.store().display()
    ));
    let o = on_terminal.arg("/dev/null").output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "saved to a terminal: {said}");
    assert!(
        said.contains("refusing to write an archive to a terminal"),
        "{said}"
    );
    assert!(said.len() < 1000, "an archive reached the terminal");
    // And back into a fresh skiff store.
    let env2 = Env::new();
    let out = loaded(&env2, &env.path("out-oci.tar"), &[]);
    assert!(out.contains("quay.io/team/multi:5"), "{out}");
    assert_eq!(
        json(env2.skiff().args(["inspect", "quay.io/team/multi:5"]))[0]["Id"],
        id
    );
}

#[test]
fn broken_archives_change_nothing() {
    if !require(&["skopeo"]) {
        return;
    }
    let env = Env::new();
    let p = |n: &str| env.path(n);
    skopeo(&[
        &layout("busybox"),
        &format!("docker-archive:{}:lab/busybox:1", p("good.tar").display()),
    ]);
    skopeo(&[
        &layout("busybox"),
        &format!("oci-archive:{}:lab/busybox:1", p("good-oci.tar").display()),
    ]);
    let manifest: serde_json::Value = {
        let mut a = tar::Archive::new(std::fs::File::open(p("good.tar")).unwrap());
        let mut m = None;
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == "manifest.json" {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                m = Some(serde_json::from_str(&s).unwrap());
            }
        }
        m.unwrap()
    };
    let layer = manifest[0]["Layers"][0].as_str().unwrap().to_string();
    rewrite(&p("good.tar"), &p("missing-layer.tar"), &layer, None);
    let oci_blob = {
        let mut a = tar::Archive::new(std::fs::File::open(p("good-oci.tar")).unwrap());
        let mut biggest = (0, String::new());
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let size = e.header().size().unwrap();
            if size > biggest.0 {
                biggest = (size, e.path().unwrap().to_string_lossy().to_string());
            }
        }
        biggest.1
    };
    rewrite(
        &p("good-oci.tar"),
        &p("mismatch-oci.tar"),
        &oci_blob,
        Some(&|mut d| {
            d[1000] ^= 0xff;
            d
        }),
    );
    let good = std::fs::read(p("good.tar")).unwrap();
    std::fs::write(p("truncated.tar"), &good[..good.len() / 2]).unwrap();
    std::fs::write(p("text.tar"), b"hello, this is not an archive".repeat(100)).unwrap();
    let cases = [
        ("missing-layer.tar", "missing from the archive"),
        ("mismatch-oci.tar", "content is sha256:"),
        ("truncated.tar", "truncated or corrupt"),
        ("text.tar", "not a tar archive"),
    ];
    for (file, want) in cases {
        let out = run(env.skiff().args(["load", "-i"]).arg(p(file)));
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && e.contains(want) && e.contains(file),
            "{file}: {e}"
        );
        assert_eq!(
            common::count_files(&env.store().join("blobs/sha256")),
            0,
            "{file}: no blob left behind"
        );
        assert!(names(&env).is_empty(), "{file}: no name");
    }
    let e = fails(
        env.skiff()
            .args(["load", "-i"])
            .arg(p("good.tar"))
            .args(["--tag", "Bad"]),
    );
    assert!(e.contains("lowercase"), "{e}");
}

#[test]
fn a_bundle_carries_every_image_of_a_pipeline() {
    if !require(&["docker-registry", "skopeo"]) {
        return;
    }
    let reg = common::registry::Registry::start(common::registry::Auth::Anonymous);
    common::registry::push(
        &images().layout,
        "busybox",
        &format!("{}/test/busybox:1", reg.addr()),
        &[],
    );
    common::registry::push(
        &images().layout,
        "multi",
        &format!("{}/test/multi:1", reg.addr()),
        &[],
    );
    let env = Env::new();
    env.write(
        "registries.conf",
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr()
        ),
    );
    let ci = env.write(
        ".gitlab-ci.yml",
        &format!(
            "variables:\n  REG: {}\nimage: $REG/test/busybox:1\ntest:\n  services:\n    - name: ${{REG}}/test/multi:1\n      alias: db\n  script: [true]\nother:\n  image: $NOT_SET/x:1\n  script: [true]\n",
            reg.addr()
        ),
    );
    // The helper comes from the store (as `skiff helper import` leaves it).
    let arch = skiff::helper::runner_arch("");
    let helper =
        format!("registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:{arch}-v17.9.0");
    skopeo(&[
        &layout("busybox"),
        &format!("docker-archive:{}:x/y:1", env.path("h.tar").display()),
    ]);
    loaded(&env, &env.path("h.tar"), &["--tag", &helper]);
    let bundle = env.path("bundle.tar");
    let out = run(env
        .skiff()
        .args(["bundle", "create", "-o"])
        .arg(&bundle)
        .arg("--ci-file")
        .arg(&ci)
        .args(["--helper-version", "17.9.0"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("$NOT_SET/x:1"),
        "an unresolvable name is reported: {err}"
    );

    // Into a fresh store, with no registry: every name is there.
    let addr = reg.addr();
    drop(reg);
    let env2 = Env::new();
    let out = loaded(&env2, &bundle, &[]);
    let want = [
        format!("{addr}/test/busybox:1"),
        format!("{addr}/test/multi:1"),
        helper.clone(),
    ];
    for w in &want {
        assert!(out.contains(w.as_str()), "{w} in {out}");
    }
    for n in names(&env2) {
        ok(env2.skiff().args(["pull", "--policy", "never", &n]));
    }
    assert_eq!(names(&env2).len(), 3);
}
