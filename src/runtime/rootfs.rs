//! A container root from an image's layers: overlayfs with the layer directories as lowers
//! (appended one by one with `fsconfig("lowerdir+")`, so depth is not bound by the 4 KiB
//! mount-data page; classic `mount(2)` as fallback), `userxattr` so rootless overlay honours
//! `user.overlay.*`; fuse-overlayfs where native overlay is refused; a flattened copy last.

use crate::oci::digest::Digest;
use crate::store::{ImageEntry, Store, StoreError, layout};
use crate::unpack::{self, UnpackError};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mounting overlay on {}: {reason}", merged.display())]
    Mount { merged: PathBuf, reason: String },
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "layer {diff_id} of {image} is not unpacked; run `skiff pull --policy missing {image}` first"
    )]
    LayerNotUnpacked { diff_id: Digest, image: String },
    #[error("unpacking layer {digest} of {image}")]
    ImageLayer {
        digest: Digest,
        image: String,
        #[source]
        source: Box<UnpackError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Userns(#[from] super::userns::UsernsError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// Kernel overlayfs through the new mount API (`lowerdir+`).
    Native,
    /// Kernel overlayfs through mount(2) with a lowerdir= option string.
    NativeLegacy,
    FuseOverlayfs,
}

/// Work directories of one overlay: `upper` and `work` under `dir`, the mount point
/// `merged` under `transient` (which may be on another filesystem).
pub struct OverlayDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

/// A container's upper and work directories, in its directory.
pub const UPPER: &str = "upper";
pub const WORK: &str = "work";

impl OverlayDirs {
    pub fn create(dir: &Path, transient: &Path) -> Result<OverlayDirs, RootfsError> {
        let d = OverlayDirs {
            upper: dir.join(UPPER),
            work: dir.join(WORK),
            merged: transient.join("merged"),
        };
        for p in [&d.upper, &d.work, &d.merged] {
            std::fs::create_dir_all(p).map_err(|e| RootfsError::Io {
                op: "mkdir",
                path: p.clone(),
                source: e,
            })?;
        }
        Ok(d)
    }
}

/// Mounts a tmpfs at `at` (made here) in this process's mount namespace, for a container's
/// transient files. Each file the store's filesystem makes costs an inode allocation (on
/// ext4 without a journal, a scan past every inode freed in the last minute) and a removal
/// later; a start made some fifteen of them. Here they cost memory only, and go with the
/// namespace.
pub fn mount_transient(at: &Path) -> Result<(), RootfsError> {
    std::fs::create_dir_all(at).map_err(|source| RootfsError::Io {
        op: "mkdir",
        path: at.to_path_buf(),
        source,
    })?;
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=16m"),
    )
    .map_err(|e| RootfsError::Io {
        op: "mounting a tmpfs on",
        path: at.to_path_buf(),
        source: e.into(),
    })
}

/// The files every container's runtime binds over, in `etc`.
pub const BIND_TARGETS: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// Where the runtime mounts (or, for `etc`, binds into) in every container.
const MOUNT_POINTS: [&str; 4] = ["etc", "dev", "proc", "sys"];

/// Docker's init layer, under `at`, to be stacked on top of `lowers` (top first): the
/// [`MOUNT_POINTS`] as directories with the mode and owner of the image's (`owner_base` added
/// to its ids: the host ids of a container's own root; where the image has none, 0755 and
/// the container's root), and the [`BIND_TARGETS`] empty in `etc`. Without them the runtime
/// would make what the image lacks in the upper layer, copying `/etc` up first: new inodes
/// on the store's disk at every start. Mounts cover all of it but `etc` itself. A name whose
/// top-most entry in the image is not a directory is left out: a directory would hide it.
pub fn init_layer(
    at: &Path,
    lowers: &[PathBuf],
    owner_base: (u32, u32),
) -> Result<PathBuf, RootfsError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| RootfsError::Io { op, path, source }
    };
    'names: for name in MOUNT_POINTS {
        let mut image_dir = None;
        for lower in lowers {
            match std::fs::symlink_metadata(lower.join(name)) {
                Ok(m) if m.is_dir() => {
                    image_dir = Some(m);
                    break;
                }
                Ok(_) => continue 'names,
                Err(_) => continue,
            }
        }
        let (mode, uid, gid) = image_dir
            .map(|m| (m.mode() & 0o7777, m.uid(), m.gid()))
            .unwrap_or((0o755, 0, 0));
        let dir = at.join(name);
        std::fs::create_dir_all(&dir).map_err(io("mkdir", &dir))?;
        if name == "etc" {
            for target in BIND_TARGETS {
                let file = dir.join(target);
                std::fs::write(&file, b"").map_err(io("creating", &file))?;
            }
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", &dir))?;
        std::os::unix::fs::chown(&dir, Some(owner_base.0 + uid), Some(owner_base.1 + gid))
            .map_err(io("chown", &dir))?;
    }
    Ok(at.to_path_buf())
}

/// Each of `sources` (directories or files) idmapped through `userns` and attached at
/// `under/N` (made here, in this process's mount namespace): returns those paths. What is
/// owned by 0 on disk is owned by the namespace's root there. Host root only.
pub fn attach_idmapped(
    sources: &[PathBuf],
    under: &Path,
    userns: &std::os::fd::OwnedFd,
) -> Result<Vec<PathBuf>, RootfsError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| RootfsError::Io { op, path, source }
    };
    std::fs::create_dir_all(under).map_err(io("mkdir", under))?;
    let mut attached = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().enumerate() {
        let target = under.join(i.to_string());
        if source.is_dir() {
            std::fs::create_dir_all(&target).map_err(io("mkdir", &target))?;
        } else {
            std::fs::write(&target, b"").map_err(io("creating", &target))?;
        }
        let tree = super::sys::idmapped_tree(source, userns)
            .map_err(io("making an idmapped mount of", source))?;
        rustix::mount::move_mount(
            &tree,
            "",
            rustix::fs::CWD,
            target.as_path(),
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| io("attaching an idmapped mount at", &target)(e.into()))?;
        attached.push(target);
    }
    Ok(attached)
}

/// How an overlay's upper layer is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    /// Synced as the upper filesystem syncs.
    Kept,
    /// For a container removed when it exits (`--rm`): no sync reaches the upper filesystem,
    /// not even at unmount, as podman mounts such containers (overlay's `volatile`, where the
    /// kernel has it); after a crash the upper layer is only good for removing.
    Volatile,
}

/// Mounts `lowers` (top first) with `dirs`; `forced` picks a driver (SKIFF_OVERLAY).
pub fn mount_overlay(
    lowers: &[PathBuf],
    dirs: &OverlayDirs,
    upper: Upper,
    forced: Option<&str>,
) -> Result<Driver, RootfsError> {
    let merged = dirs.merged.clone();
    let fail = |reason: String| RootfsError::Mount {
        merged: merged.clone(),
        reason,
    };
    let mut errors = Vec::new();
    if forced.is_none_or(|f| f == "native") {
        match mount_new_api(lowers, dirs, upper) {
            Ok(()) => return Ok(Driver::Native),
            Err(e) => errors.push(format!("fsconfig: {e}")),
        }
    }
    if forced.is_none_or(|f| f == "native" || f == "legacy") {
        // Kernels before 5.10 refuse `volatile`: then without it.
        let legacy = mount_legacy(lowers, dirs, upper).or_else(|e| match upper {
            Upper::Volatile => mount_legacy(lowers, dirs, Upper::Kept),
            Upper::Kept => Err(e),
        });
        match legacy {
            Ok(()) => return Ok(Driver::NativeLegacy),
            Err(e) => errors.push(format!("mount(2): {e}")),
        }
    }
    if forced.is_none_or(|f| f == "fuse") {
        match mount_fuse(lowers, dirs) {
            Ok(()) => return Ok(Driver::FuseOverlayfs),
            Err(e) => errors.push(format!("fuse-overlayfs: {e}")),
        }
    }
    Err(fail(errors.join("; ")))
}

fn mount_new_api(lowers: &[PathBuf], dirs: &OverlayDirs, upper: Upper) -> rustix::io::Result<()> {
    use rustix::mount::*;
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in lowers {
        fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
    }
    fsconfig_set_string(&fs, "upperdir", dirs.upper.as_path())?;
    fsconfig_set_string(&fs, "workdir", dirs.work.as_path())?;
    fsconfig_set_flag(&fs, "userxattr")?;
    // Kernels before 5.10 refuse the flag: the mount goes on without it.
    if upper == Upper::Volatile {
        let _ = fsconfig_set_flag(&fs, "volatile");
    }
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        dirs.merged.as_path(),
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

fn option_string(lowers: &[PathBuf], dirs: &OverlayDirs) -> String {
    let lower: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.join(":"),
        dirs.upper.display(),
        dirs.work.display()
    )
}

fn mount_legacy(lowers: &[PathBuf], dirs: &OverlayDirs, upper: Upper) -> Result<(), String> {
    let mut data = option_string(lowers, dirs);
    if upper == Upper::Volatile {
        data.push_str(",volatile");
    }
    if data.len() >= 4096 {
        return Err(format!("{} bytes of options exceed one page", data.len()));
    }
    nix::mount::mount(
        Some("overlay"),
        &dirs.merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| e.to_string())
}

fn mount_fuse(lowers: &[PathBuf], dirs: &OverlayDirs) -> Result<(), String> {
    let lower: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dirs.upper.display(),
        dirs.work.display()
    );
    let out = Command::new("fuse-overlayfs")
        .args(["-o", &opts])
        .arg(&dirs.merged)
        .output()
        .map_err(|e| format!("{e} (install fuse-overlayfs)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `skiff mount`: the image's layers as an overlay under the store's `mounts/<id>-<session>`
/// (`session`: the `skiff unshare` it lives in), or with `forced` = `copy` a flattened copy
/// of them. Returns the merged directory. Runs inside the store's user namespace.
pub fn mount_image(
    store: &Store,
    entry: &ImageEntry,
    session: &str,
    forced: Option<&str>,
) -> Result<PathBuf, RootfsError> {
    let layers = store.image_layers(entry)?;
    let mut lowers = Vec::new();
    for (_, diff_id) in layers.iter().rev() {
        let p = store.layer_path(diff_id);
        if !p.is_dir() {
            return Err(RootfsError::LayerNotUnpacked {
                diff_id: diff_id.clone(),
                image: entry.name.clone(),
            });
        }
        lowers.push(p);
    }
    let id = &entry.manifest.digest.hex()[..12];
    let dir = layout::mounts_dir(store.root()).join(format!("{id}-{session}"));
    // `skiff mount` prints the merged path: it stays beside its upper directory.
    let dirs = OverlayDirs::create(&dir, &dir)?;
    if forced == Some("copy") {
        // Last resort without any overlay: the flattened layers, copied, keeping owners and
        // devices as far as this namespace's map allows.
        let map = super::userns::CurrentMap::current();
        let opts = unpack::Options::flatten(map.many, map.initial);
        unpack::flatten(store, &layers, &dirs.merged, &opts)?;
        tracing::info!("mounted {} by copying its layers", entry.name);
    } else {
        let driver = mount_overlay(&lowers, &dirs, Upper::Kept, forced)?;
        tracing::info!("mounted {} with {driver:?}", entry.name);
    }
    Ok(dirs.merged)
}

/// What `unpack_image` wrote.
pub struct Unpacked {
    pub image: String,
    pub layers: usize,
    pub entries: u64,
}

/// Like `umoci unpack`: `image`'s layers applied in order into the plain directory `dir`
/// (created, or empty), whiteouts as deletions. Enters the store's user namespace, so that
/// owners are kept rootless: single-threaded callers only.
pub fn unpack_image(store: &Store, image: &str, dir: &Path) -> Result<Unpacked, RootfsError> {
    let entry = store.lookup_one(image)?;
    let layers = store.image_layers(&entry)?;
    crate::unpack::prepare_empty_dir(dir)?;
    let mapping = super::userns::enter_with_mounts()?;
    let opts = crate::unpack::Options::flatten(mapping.can_chown(), mapping.is_root());
    let entries = crate::unpack::flatten(store, &layers, dir, &opts).map_err(|e| match e {
        // This verb names the image too.
        UnpackError::Layer { digest, source } => RootfsError::ImageLayer {
            digest,
            image: entry.name.clone(),
            source,
        },
        e => e.into(),
    })?;
    Ok(Unpacked {
        image: entry.name,
        layers: layers.len(),
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_layer_takes_the_image_s_directories_or_steps_aside() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
        // What each lower (top first) has at `etc`; whether the bottom one has `dev`, `proc`
        // (0555) and `sys`; the init layer's `etc` mode, or none.
        enum Etc {
            Missing,
            Dir(u32),
            Link,
        }
        let cases: &[(&str, &[Etc], bool, Option<u32>)] = &[
            ("the image's", &[Etc::Dir(0o750)], true, Some(0o750)),
            (
                "the top-most",
                &[Etc::Missing, Etc::Dir(0o711), Etc::Dir(0o700)],
                true,
                Some(0o711),
            ),
            (
                "a link would be hidden",
                &[Etc::Link, Etc::Dir(0o755)],
                true,
                None,
            ),
            ("an empty image", &[Etc::Missing], false, Some(0o755)),
        ];
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let dir = |path: &Path, mode: u32| {
            std::fs::create_dir(path).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        for (what, layers, system_dirs, want) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let mut lowers = Vec::new();
            for (i, etc) in layers.iter().enumerate() {
                let lower = tmp.path().join(format!("lower{i}"));
                std::fs::create_dir(&lower).unwrap();
                match etc {
                    Etc::Missing => {}
                    Etc::Dir(mode) => dir(&lower.join("etc"), *mode),
                    Etc::Link => symlink("usr/etc", lower.join("etc")).unwrap(),
                }
                lowers.push(lower);
            }
            if *system_dirs {
                let bottom = lowers.last().unwrap();
                for (name, mode) in [("dev", 0o755), ("proc", 0o555), ("sys", 0o555)] {
                    dir(&bottom.join(name), mode);
                }
            }
            let at = tmp.path().join("init");
            // The image's directories are ours on disk: no base added. What the image lacks
            // is the container root's, the base alone: then ours.
            let base = if *system_dirs { (0, 0) } else { me };
            assert_eq!(init_layer(&at, &lowers, base).unwrap(), at, "{what}");
            for (name, mode) in [("dev", 0o755), ("proc", 0o555), ("sys", 0o555)] {
                let made = std::fs::metadata(at.join(name)).unwrap();
                let mode = if *system_dirs { mode } else { 0o755 };
                assert_eq!(made.mode() & 0o7777, mode, "{what}: {name}");
                assert_eq!((made.uid(), made.gid()), me, "{what}: {name}");
            }
            match want {
                None => assert!(!at.join("etc").exists(), "{what}"),
                Some(mode) => {
                    let etc = std::fs::metadata(at.join("etc")).unwrap();
                    assert_eq!(etc.mode() & 0o7777, *mode, "{what}");
                    assert_eq!((etc.uid(), etc.gid()), me, "{what}");
                    for name in BIND_TARGETS {
                        let file = std::fs::metadata(at.join("etc").join(name)).unwrap();
                        assert!(file.is_file() && file.len() == 0, "{what}: {name}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_layer_not_unpacked_says_how_to_get_it() {
        let (_dir, store, entry) = crate::image::tests::stored_image();
        let err = mount_image(&store, &entry, "1", None).unwrap_err();
        let RootfsError::LayerNotUnpacked { diff_id, image } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(image, "localhost/one:1");
        assert_eq!(
            err.to_string(),
            format!(
                "layer {diff_id} of localhost/one:1 is not unpacked; run `skiff pull --policy missing localhost/one:1` first"
            )
        );
        assert!(
            !layout::mounts_dir(store.root()).exists(),
            "nothing is made for a mount that cannot be"
        );
    }
}
