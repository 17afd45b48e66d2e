//! Tar-builder table: each case is a layer built entry by entry (raw names, so `..` and
//! absolute paths get through), unpacked into `<tmp>/root` beside a `<tmp>/victim` directory
//! that must never change.

use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

enum E {
    Dir(&'static str, u32),
    File(&'static str, &'static [u8], u32),
    Owned(&'static str, u64, u64),
    Link(&'static str, &'static str),
    Hard(&'static str, &'static str),
    Fifo(&'static str),
    CharDev(&'static str, u32, u32),
    LongName(usize),
    Xattr(&'static str, &'static str, &'static [u8]),
}

fn header(name: &[u8], kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_old();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    // Raw bytes: the tar crate's set_path refuses `..`, and hostile archives do not.
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

fn build(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p, m) => b
                .append(
                    &header(p.as_bytes(), tar::EntryType::Directory, 0, *m),
                    io::empty(),
                )
                .unwrap(),
            E::File(p, data, m) => b
                .append(
                    &header(p.as_bytes(), tar::EntryType::Regular, data.len() as u64, *m),
                    *data,
                )
                .unwrap(),
            E::Owned(p, uid, gid) => {
                let mut h = header(p.as_bytes(), tar::EntryType::Regular, 1, 0o4755);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap()
            }
            E::Link(p, target) | E::Hard(p, target) => {
                let kind = if matches!(e, E::Link(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(p.as_bytes(), kind, 0, 0o777);
                h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                h.set_cksum();
                b.append(&h, io::empty()).unwrap()
            }
            E::Fifo(p) => b
                .append(
                    &header(p.as_bytes(), tar::EntryType::Fifo, 0, 0o640),
                    io::empty(),
                )
                .unwrap(),
            E::CharDev(p, maj, min) => {
                let mut h = tar::Header::new_ustar();
                h.set_path(p).unwrap();
                h.set_entry_type(tar::EntryType::Char);
                h.set_size(0);
                h.set_mode(0o666);
                h.set_device_major(*maj).unwrap();
                h.set_device_minor(*min).unwrap();
                h.set_cksum();
                b.append(&h, io::empty()).unwrap()
            }
            E::LongName(n) => {
                let name = format!("long/{}", "n".repeat(*n));
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(4);
                h.set_mode(0o644);
                b.append_data(&mut h, &name, &b"long"[..]).unwrap()
            }
            E::Xattr(p, key, value) => {
                b.append_pax_extensions([(format!("SCHILY.xattr.{key}").as_str(), *value)])
                    .unwrap();
                b.append(
                    &header(p.as_bytes(), tar::EntryType::Regular, 1, 0o644),
                    &b"x"[..],
                )
                .unwrap()
            }
        }
    }
    b.into_inner().unwrap()
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::create_dir(dir.path().join("victim")).unwrap();
        std::fs::write(dir.path().join("victim/secret"), "keep").unwrap();
        std::fs::set_permissions(
            dir.path().join("victim/secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        Case { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn unpack(&self, entries: &[E], format: Format) -> Result<Report, UnpackError> {
        let root_user = rustix::process::geteuid().is_root();
        unpack(
            &build(entries)[..],
            &self.root(),
            &Options {
                format,
                chown: root_user,
                devices: root_user,
            },
        )
    }
    fn victim_untouched(&self) {
        let v = self.dir.path().join("victim");
        let names: Vec<_> = std::fs::read_dir(&v)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("secret")],
            "victim directory changed"
        );
        let m = std::fs::metadata(v.join("secret")).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.nlink()),
            (0o600, 1),
            "victim file changed"
        );
        assert_eq!(std::fs::read_to_string(v.join("secret")).unwrap(), "keep");
    }
    fn kind(&self, rel: &str) -> Option<std::fs::FileType> {
        std::fs::symlink_metadata(self.root().join(rel))
            .ok()
            .map(|m| m.file_type())
    }
}

#[test]
fn breakouts_stay_inside_the_root() {
    // (name, entries, paths that must exist inside root afterwards, may it fail?)
    let cases: Vec<(&str, Vec<E>, Vec<&str>, bool)> = vec![
        (
            "dotdot name",
            vec![E::File("../victim/secret", b"pwned", 0o644)],
            vec!["victim/secret"],
            false,
        ),
        (
            "deep dotdot",
            vec![E::File("a/../../../../victim/x", b"pwned", 0o644)],
            vec!["victim/x"],
            false,
        ),
        (
            "absolute name",
            vec![E::File("/victim/x", b"pwned", 0o644)],
            vec!["victim/x"],
            false,
        ),
        (
            "symlink parent to ..",
            vec![
                E::Link("up", "../../victim"),
                E::File("up/x", b"pwned", 0o644),
            ],
            vec!["victim/x"],
            false,
        ),
        (
            "symlink parent absolute",
            vec![
                E::Link("abs", "/"),
                E::File("abs/victim/x", b"pwned", 0o644),
            ],
            vec!["victim/x"],
            false,
        ),
        (
            "symlink replaces a directory",
            vec![
                E::Dir("d", 0o755),
                E::Link("d", "../../victim"),
                E::File("d/secret", b"pwned", 0o644),
            ],
            vec!["victim/secret"],
            false,
        ),
        (
            "file written through a symlink name",
            vec![
                E::Link("s", "../../victim/secret"),
                E::File("s", b"pwned", 0o644),
            ],
            vec!["s"],
            false,
        ),
        (
            "chmod through a symlink",
            vec![E::Link("s", "/../victim/secret"), E::Dir("s", 0o777)],
            vec!["s"],
            false,
        ),
        (
            "hardlink out of the root",
            vec![E::Hard("h", "../../victim/secret")],
            vec![],
            true,
        ),
        (
            "hardlink through a symlinked dir",
            vec![E::Link("v", "../../victim"), E::Hard("h", "v/secret")],
            vec![],
            true,
        ),
        (
            "hardlink to a symlink links the symlink",
            vec![E::Link("s", "../../victim/secret"), E::Hard("h", "s")],
            vec!["h"],
            false,
        ),
    ];
    for (name, entries, exist, may_fail) in cases {
        let c = Case::new();
        let r = c.unpack(&entries, Format::Overlay);
        if !may_fail {
            r.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for p in exist {
            assert!(
                c.kind(p).is_some(),
                "{name}: {p} should exist inside the root"
            );
        }
        c.victim_untouched();
        if name == "hardlink to a symlink links the symlink" {
            assert!(c.kind("h").unwrap().is_symlink(), "{name}");
        }
    }
}

#[test]
fn overlay_whiteouts_and_opaque_dirs() {
    let c = Case::new();
    c.unpack(
        &[
            E::Dir("etc", 0o755),
            E::File("etc/.wh.gone", b"", 0o644),
            E::Dir("data", 0o755),
            E::File("data/kept", b"k", 0o644),
            E::File("data/.wh..wh..opq", b"", 0o644),
            E::File("deep/er/.wh..wh..opq", b"", 0o644),
            E::File("a.wh.b/file", b"ordinary", 0o644),
            E::File("same", b"s", 0o644),
            E::File(".wh.same", b"", 0o644),
        ],
        Format::Overlay,
    )
    .unwrap();
    let wh = std::fs::symlink_metadata(c.root().join("etc/gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0:0 char device"
    );
    let opq = |p: &str| {
        let f = rustix::fs::open(
            c.root().join(p),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let mut buf = [0u8; 4];
        rustix::fs::fgetxattr(&f, OPAQUE_XATTR, &mut buf).map(|n| buf[..n].to_vec())
    };
    assert_eq!(opq("data").unwrap(), b"y");
    assert_eq!(
        opq("deep/er").unwrap(),
        b"y",
        "an opaque marker in a directory the tar never listed"
    );
    assert!(opq("etc").is_err());
    assert_eq!(
        std::fs::read(c.root().join("data/kept")).unwrap(),
        b"k",
        "same-layer siblings stay"
    );
    assert!(
        !c.root().join("data/.wh..wh..opq").exists() && !c.root().join("etc/.wh.gone").exists()
    );
    assert_eq!(
        std::fs::read(c.root().join("a.wh.b/file")).unwrap(),
        b"ordinary"
    );
    assert!(
        c.kind("same").unwrap().is_file(),
        "a whiteout does not delete its own layer's file"
    );
}

#[test]
fn invalid_whiteouts_are_errors() {
    for bad in [".wh.", ".wh..", ".wh...", "d/.wh..", "d/.wh."] {
        let c = Case::new();
        let name: &'static str = Box::leak(bad.to_string().into_boxed_str());
        let e = c
            .unpack(&[E::File(name, b"", 0o644)], Format::Overlay)
            .unwrap_err();
        assert!(matches!(e, UnpackError::BadWhiteout(_)), "{bad}: {e}");
        c.victim_untouched();
    }
}

#[test]
fn flatten_applies_whiteouts_as_deletions_lower_layers_only() {
    let c = Case::new();
    c.unpack(
        &[
            E::Dir("etc", 0o755),
            E::File("etc/gone", b"1", 0o644),
            E::File("data/a", b"a", 0o644),
            E::File("data/b", b"b", 0o644),
        ],
        Format::Flatten,
    )
    .unwrap();
    c.unpack(
        &[
            E::File("etc/.wh.gone", b"", 0o644),
            E::File("data/c", b"c", 0o644),
            E::File("data/.wh..wh..opq", b"", 0o644),
            E::File("etc/.wh.missing", b"", 0o644),
        ],
        Format::Flatten,
    )
    .unwrap();
    assert!(c.kind("etc/gone").is_none());
    let mut names: Vec<_> = std::fs::read_dir(c.root().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["c"],
        "opaque empties lower content but keeps this layer's"
    );
}

#[test]
fn metadata_is_preserved() {
    let c = Case::new();
    let report = c
        .unpack(
            &[
                E::Dir("d", 0o750),
                E::File("d/f", b"content", 0o640),
                E::Hard("d/hard", "d/f"),
                E::Link("d/sym", "f"),
                E::Fifo("d/fifo"),
                E::LongName(180),
                E::Xattr("d/x", "user.skiff", b"v1"),
                E::File("sticky/.keep", b"", 0o644),
                E::Dir("sticky", 0o1777),
            ],
            Format::Overlay,
        )
        .unwrap();
    let md = |p: &str| std::fs::symlink_metadata(c.root().join(p)).unwrap();
    assert_eq!(md("d").mode() & 0o7777, 0o750);
    assert_eq!(md("d/f").mode() & 0o7777, 0o640);
    assert_eq!(md("d/f").mtime(), 1_600_000_000);
    assert_eq!(
        md("d").mtime(),
        1_600_000_000,
        "directory times survive their children"
    );
    assert_eq!(md("d/hard").ino(), md("d/f").ino());
    assert_eq!(
        std::fs::read_link(c.root().join("d/sym")).unwrap(),
        Path::new("f")
    );
    assert!(md("d/fifo").file_type().is_fifo());
    assert_eq!(md("sticky").mode() & 0o7777, 0o1777);
    assert_eq!(
        std::fs::read(c.root().join(format!("long/{}", "n".repeat(180)))).unwrap(),
        b"long"
    );
    let f = File::open(c.root().join("d/x")).unwrap();
    let mut buf = [0u8; 8];
    let n = rustix::fs::fgetxattr(&f, "user.skiff", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"v1");
    assert_eq!(report.entries, 9);
}

#[test]
fn owners_setid_bits_and_devices_as_root() {
    if !rustix::process::geteuid().is_root() {
        return; // covered as root in CI, and in a user namespace by the rootless tests
    }
    let c = Case::new();
    c.unpack(
        &[E::Owned("suid", 1000, 1001), E::CharDev("null", 1, 3)],
        Format::Overlay,
    )
    .unwrap();
    let m = std::fs::metadata(c.root().join("suid")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (1000, 1001, 0o4755),
        "set-id survives chown"
    );
    let d = std::fs::symlink_metadata(c.root().join("null")).unwrap();
    assert!(d.file_type().is_char_device() && d.rdev() == rustix::fs::makedev(1, 3));
    let c = Case::new();
    let r = unpack(
        &build(&[E::CharDev("null", 1, 3)])[..],
        &c.root(),
        &Options {
            format: Format::Overlay,
            chown: false,
            devices: false,
        },
    )
    .unwrap();
    assert_eq!(r.skipped_devices, 1);
    assert!(c.kind("null").is_none());
}

#[test]
fn diff_id_is_checked_and_covers_the_whole_stream() {
    let c = Case::new();
    let tar = build(&[E::File("f", b"x", 0o644)]);
    let want = Digest::sha256_of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let r = unpack_verified(&gz[..], &c.root(), &Options::overlay(false, false), &want).unwrap();
    assert_eq!(r.compression, "gzip");
    let other = Case::new();
    let e = unpack_verified(
        &gz[..],
        &other.root(),
        &Options::overlay(false, false),
        &Digest::sha256_of(b"x"),
    )
    .unwrap_err();
    assert!(matches!(e, UnpackError::DiffIdMismatch { .. }), "{e}");
}

#[test]
fn replacing_entries_and_removal() {
    let c = Case::new();
    c.unpack(
        &[
            E::Dir("x", 0o755),
            E::File("x/inner", b"i", 0o644),
            E::File("x", b"now a file", 0o644),
            E::File("y", b"file", 0o644),
            E::Dir("y", 0o755),
            E::File("y/z", b"z", 0o644),
        ],
        Format::Overlay,
    )
    .unwrap();
    assert!(c.kind("x").unwrap().is_file());
    assert!(c.kind("y").unwrap().is_dir() && c.kind("y/z").unwrap().is_file());
    remove_tree(&c.root()).unwrap();
    assert!(!c.root().exists());
    c.victim_untouched();
}
