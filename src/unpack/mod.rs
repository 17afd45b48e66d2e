//! Layer tar → directory. Two forms: `Overlay` (one directory per layer, whiteouts as 0:0
//! character devices, opaque directories as `user.overlay.opaque=y`, for overlayfs with
//! `userxattr`) and `Flatten` (layers applied on top of each other, whiteouts as deletions, as
//! `umoci unpack` does).
//!
//! Safety: every parent directory is opened with `openat2(RESOLVE_IN_ROOT)`, so `..`, absolute
//! paths and symlinks (including ones created earlier in the same tar) resolve inside the
//! root, as if it were `/` (containerd's semantics). The final component is never followed:
//! creation, chown, chmod and time stamps use `*at` calls with `AT_SYMLINK_NOFOLLOW` or an fd
//! of the object just created.

pub mod child;
pub mod compression;
mod flatten;
pub mod layer;

use crate::oci::digest::{Algorithm, Digest, Digester};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps, XattrFlags};
use rustix::io::Errno;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub use compression::Compression;
pub use flatten::{flatten, prepare_empty_dir};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub const OPAQUE_XATTR: &str = "user.overlay.opaque";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the layer: {0}")]
    Decompress(String),
    #[error("unsupported layer compression {0}")]
    UnsupportedCompression(&'static str),
    #[error("invalid whiteout {}", .0.display())]
    BadWhiteout(PathBuf),
    #[error("hardlink {} points at {}, which is not in the layer", path.display(), target.display())]
    HardlinkTarget { path: PathBuf, target: PathBuf },
    #[error(
        "chown {} to {uid}:{gid} (the user namespace may not map this id: check /etc/subuid and /etc/subgid)",
        path.display()
    )]
    Chown {
        path: PathBuf,
        uid: u64,
        gid: u64,
        #[source]
        source: io::Error,
    },
    #[error("layer content is {actual}, but the image config says {expected}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("tar")]
    Tar(#[source] io::Error),
    /// One layer of several failed (`flatten`).
    #[error("layer {digest}")]
    Layer {
        digest: Digest,
        #[source]
        source: Box<UnpackError>,
    },
    #[error("{} is not empty", .0.display())]
    NotEmpty(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Overlay,
    Flatten,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    /// Apply owners from the tar. Off when the user namespace maps a single id.
    pub chown: bool,
    /// Create device nodes (root only; rootless they are skipped with a warning).
    pub devices: bool,
}

impl Options {
    /// For this process: real ownership and devices when it holds CAP_CHOWN/CAP_MKNOD
    /// (root, or root in a user namespace with a full id map).
    pub fn overlay(chown: bool, devices: bool) -> Options {
        Options {
            format: Format::Overlay,
            chown,
            devices,
        }
    }

    /// Layers applied on top of each other into one directory (`skiff unpack`, the copy
    /// fallback of `skiff mount`).
    pub fn flatten(chown: bool, devices: bool) -> Options {
        Options {
            format: Format::Flatten,
            chown,
            devices,
        }
    }
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub diff_id: Option<Digest>,
    pub compression: String,
    pub entries: u64,
    pub bytes: u64,
    pub skipped_devices: u64,
    pub skipped_xattrs: u64,
}

/// Unpacks a (possibly compressed) layer stream into `dest`, which must exist. Returns the
/// sha256 of the uncompressed stream (the layer's diff_id).
pub fn unpack(input: impl Read, dest: &Path, opts: &Options) -> Result<Report, UnpackError> {
    let (decoded, kind) = compression::decompress(input)?;
    let mut hashing = HashingReader {
        inner: decoded,
        digester: Some(Digester::new(Algorithm::Sha256)),
    };
    let mut report = {
        let mut archive = tar::Archive::new(&mut hashing);
        let mut x = Extractor::new(dest, opts.clone())?;
        for entry in archive.entries().map_err(UnpackError::Tar)? {
            let entry =
                entry.map_err(|e| UnpackError::Tar(io::Error::new(e.kind(), e.to_string())))?;
            x.apply(entry)?;
        }
        x.finish()?;
        x.report
    };
    // The diff_id covers the whole stream, end-of-archive blocks and padding included.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| UnpackError::Decompress(e.to_string()))?;
    report.diff_id = hashing.digester.take().map(Digester::finish);
    report.compression = format!("{kind:?}").to_lowercase();
    Ok(report)
}

/// `unpack`, then the diff_id check against the image config.
pub fn unpack_verified(
    input: impl Read,
    dest: &Path,
    opts: &Options,
    diff_id: &Digest,
) -> Result<Report, UnpackError> {
    let report = unpack(input, dest, opts)?;
    let actual = report.diff_id.clone().expect("computed");
    if &actual != diff_id {
        return Err(UnpackError::DiffIdMismatch {
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(report)
}

struct HashingReader<R> {
    inner: R,
    digester: Option<Digester>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(d) = &mut self.digester {
            d.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Lexically cleans a tar path: no root, no `.`, and `..` never climbs above the root.
fn clean(path: &Path) -> PathBuf {
    let mut out: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out.iter().collect()
}

struct Extractor {
    root: OwnedFd,
    root_path: PathBuf,
    root_real: PathBuf,
    opts: Options,
    parents: HashMap<PathBuf, OwnedFd>,
    /// Paths this layer created (Flatten: whiteouts apply only to lower layers).
    created: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, u64)>,
    report: Report,
    warned_xattr: bool,
}

fn io_err(op: &'static str, path: &Path, e: impl Into<io::Error>) -> UnpackError {
    UnpackError::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

impl Extractor {
    fn new(dest: &Path, opts: Options) -> Result<Extractor, UnpackError> {
        let root = rustix::fs::open(
            dest,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open", dest, e))?;
        let root_real = std::fs::canonicalize(dest).map_err(|e| io_err("resolve", dest, e))?;
        Ok(Extractor {
            root,
            root_real,
            root_path: dest.to_path_buf(),
            opts,
            parents: HashMap::new(),
            created: HashSet::new(),
            dir_times: Vec::new(),
            report: Report::default(),
            warned_xattr: false,
        })
    }

    fn display(&self, rel: &Path) -> PathBuf {
        self.root_path.join(rel)
    }

    /// The directory `rel` inside the root, created (0755) where missing. Symlinks on the way
    /// resolve inside the root; a dangling one gets its target created there (containerd's
    /// RootPath + MkdirAll).
    fn dir(&mut self, rel: &Path) -> Result<BorrowedFd<'_>, UnpackError> {
        self.dir_depth(rel, 0)?;
        Ok(if rel.as_os_str().is_empty() {
            self.root.as_fd()
        } else {
            self.parents[rel].as_fd()
        })
    }

    fn dir_depth(&mut self, rel: &Path, depth: u32) -> Result<(), UnpackError> {
        if rel.as_os_str().is_empty() || self.parents.contains_key(rel) {
            return Ok(());
        }
        if depth > 40 {
            return Err(io_err("resolve", &self.display(rel), Errno::LOOP));
        }
        let fd = match self.open_in_root(rel) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                let (parent, name) = split(rel);
                let name = name.to_os_string();
                self.dir_depth(&parent, depth + 1)?;
                let parent_fd = self
                    .resolve(&parent)
                    .map_err(|e| io_err("open", &self.display(&parent), e))?;
                match rustix::fs::mkdirat(&parent_fd, &name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        // A dangling symlink: create what it points at, inside the root.
                        let target = rustix::fs::readlinkat(&parent_fd, &name, Vec::new())
                            .map_err(|e| io_err("readlink", &self.display(rel), e))?;
                        let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                        let base = if target.is_absolute() {
                            PathBuf::new()
                        } else {
                            self.resolved_path(&parent_fd)?
                        };
                        let dest = clean(&base.join(target));
                        self.dir_depth(&dest, depth + 1)?;
                    }
                    Err(e) => return Err(io_err("mkdir", &self.display(rel), e)),
                }
                self.open_in_root(rel)
                    .map_err(|e| io_err("open", &self.display(rel), e))?
            }
            Err(Errno::NOTDIR) => {
                // A non-directory where a directory is needed: replace it, as umoci does.
                let (parent, name) = split(rel);
                let name = name.to_os_string();
                let parent_fd = self
                    .resolve(&parent)
                    .map_err(|e| io_err("open", &self.display(&parent), e))?;
                remove_at(parent_fd.as_fd(), &name, &self.display(rel))?;
                self.parents.clear();
                rustix::fs::mkdirat(&parent_fd, &name, Mode::from_raw_mode(0o755))
                    .map_err(|e| io_err("mkdir", &self.display(rel), e))?;
                self.open_in_root(rel)
                    .map_err(|e| io_err("open", &self.display(rel), e))?
            }
            Err(e) => return Err(io_err("open", &self.display(rel), e)),
        };
        self.parents.insert(rel.to_path_buf(), fd);
        Ok(())
    }

    /// Where an fd inside the root really is, relative to the root.
    fn resolved_path(&self, fd: &OwnedFd) -> Result<PathBuf, UnpackError> {
        use std::os::fd::AsRawFd;
        let at = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| io_err("readlink", &self.root_path, e))?;
        Ok(at
            .strip_prefix(&self.root_real)
            .map(Path::to_path_buf)
            .unwrap_or_default())
    }

    /// An fd for directory `rel` (the root itself when empty), resolved inside the root.
    fn resolve(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        if rel.as_os_str().is_empty() {
            return rustix::io::fcntl_dupfd_cloexec(&self.root, 0);
        }
        self.open_in_root(rel)
    }

    fn open_in_root(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        rustix::fs::openat2(
            &self.root,
            rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        )
    }

    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw_path = entry.path().map_err(UnpackError::Tar)?.into_owned();
        let rel = clean(&raw_path);
        let header = entry.header().clone();
        let kind = header.entry_type();
        self.report.entries += 1;
        let Some(base) = rel.file_name().map(|b| b.to_os_string()) else {
            return Ok(()); // the root itself: nothing to create
        };
        let base_bytes = base.as_bytes();
        if base_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&rel, &raw_path, base_bytes);
        }
        let (parent, name) = split(&rel);
        let name = name.to_os_string();
        let mode = header.mode().map_err(UnpackError::Tar)? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let shown = self.display(&rel);
        let parent_fd = self
            .dir(&parent)?
            .try_clone_to_owned()
            .map_err(|e| io_err("dup", &shown, e))?;
        let pfd = parent_fd.as_fd();

        let mut file: Option<File> = None;
        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(pfd, &name, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rustix::fs::statat(pfd, &name, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(|e| io_err("stat", &shown, e))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            self.replace(pfd, &name, &shown)?;
                            rustix::fs::mkdirat(pfd, &name, Mode::from_raw_mode(0o700))
                                .map_err(|e| io_err("mkdir", &shown, e))?;
                        }
                    }
                    Err(e) => return Err(io_err("mkdir", &shown, e)),
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = self.create_with(pfd, &name, &shown, |pfd, name| {
                    rustix::fs::openat(
                        pfd,
                        name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                })?;
                let mut f = File::from(fd);
                let n = io::copy(&mut entry, &mut f).map_err(|e| io_err("write", &shown, e))?;
                self.report.bytes += n;
                file = Some(f);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .unwrap_or_default()
                    .into_owned();
                self.create_with(pfd, &name, &shown, |pfd, name| {
                    rustix::fs::symlinkat(&target, pfd, name).map(|_| ())
                })?;
            }
            tar::EntryType::Link => {
                let target = clean(
                    &entry
                        .link_name()
                        .map_err(UnpackError::Tar)?
                        .unwrap_or_default(),
                );
                let (tparent, tname) = split(&target);
                let tparent_fd = match self.resolve(&tparent) {
                    Ok(fd) => fd,
                    Err(_) => return Err(UnpackError::HardlinkTarget { path: rel, target }),
                };
                let tname = tname.to_os_string();
                // Flags 0: a link to a symlink links the symlink itself, never what it points at.
                let r = self.create_with(pfd, &name, &shown, |pfd, name| {
                    rustix::fs::linkat(&tparent_fd, &tname, pfd, name, AtFlags::empty())
                });
                if let Err(UnpackError::Io { source, .. }) = &r {
                    if source.kind() == io::ErrorKind::NotFound {
                        return Err(UnpackError::HardlinkTarget { path: rel, target });
                    }
                }
                r?;
                self.created.insert(rel);
                return Ok(()); // a hardlink shares the target's inode and metadata
            }
            tar::EntryType::Fifo => {
                self.create_with(pfd, &name, &shown, |pfd, name| {
                    rustix::fs::mknodat(pfd, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                if !self.opts.devices {
                    self.report.skipped_devices += 1;
                    tracing::warn!(
                        "skipping device node {} (cannot create devices rootless)",
                        rel.display()
                    );
                    return Ok(());
                }
                let ft = if kind == tar::EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let dev = rustix::fs::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                self.create_with(pfd, &name, &shown, |pfd, name| {
                    rustix::fs::mknodat(pfd, name, ft, Mode::from_raw_mode(0o600), dev)
                })?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {
                return Ok(());
            }
            other => {
                tracing::warn!(
                    "skipping {} of unsupported tar type {other:?}",
                    rel.display()
                );
                return Ok(());
            }
        }
        self.created.insert(rel.clone());

        // Owner, then mode (chown clears set-id bits), then xattrs, then times.
        if self.opts.chown && (uid != 0 || gid != 0) {
            let r = match &file {
                Some(f) => rustix::fs::fchown(f, Some(uid_of(uid)), Some(gid_of(gid))),
                None => rustix::fs::chownat(
                    pfd,
                    &name,
                    Some(uid_of(uid)),
                    Some(gid_of(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                ),
            };
            r.map_err(|e| UnpackError::Chown {
                path: shown.clone(),
                uid,
                gid,
                source: e.into(),
            })?;
        }
        if kind != tar::EntryType::Symlink {
            let m = Mode::from_raw_mode(mode);
            match &file {
                Some(f) => rustix::fs::fchmod(f, m),
                // Not a symlink (just created or verified), so following is harmless here.
                None => rustix::fs::chmodat(pfd, &name, m, AtFlags::empty()),
            }
            .map_err(|e| io_err("chmod", &shown, e))?;
            self.xattrs(&mut entry, pfd, &name, file.as_ref(), kind, &shown)?;
        }
        if kind == tar::EntryType::Directory {
            self.dir_times.push((rel, mtime));
        } else {
            let t = times(mtime);
            match &file {
                Some(f) => rustix::fs::futimens(f, &t),
                None => rustix::fs::utimensat(pfd, &name, &t, AtFlags::SYMLINK_NOFOLLOW),
            }
            .map_err(|e| io_err("utimes", &shown, e))?;
        }
        Ok(())
    }

    /// Creates with `create`; on EEXIST removes what is there (a later entry replaces an
    /// earlier one) and tries once more.
    fn create_with<T>(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        shown: &Path,
        create: impl Fn(BorrowedFd<'_>, &OsStr) -> Result<T, Errno>,
    ) -> Result<T, UnpackError> {
        match create(pfd, name) {
            Ok(t) => Ok(t),
            Err(Errno::EXIST) => {
                self.replace(pfd, name, shown)?;
                create(pfd, name).map_err(|e| io_err("create", shown, e))
            }
            Err(e) => Err(io_err("create", shown, e)),
        }
    }

    fn replace(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        shown: &Path,
    ) -> Result<(), UnpackError> {
        remove_at(pfd, name, shown)?;
        // A removed directory may be a cached parent of later entries.
        self.parents.clear();
        Ok(())
    }

    fn xattrs<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        file: Option<&File>,
        kind: tar::EntryType,
        shown: &Path,
    ) -> Result<(), UnpackError> {
        let Ok(Some(exts)) = entry.pax_extensions() else {
            return Ok(());
        };
        let pairs: Vec<(String, Vec<u8>)> = exts
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                Some((
                    e.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string(),
                    e.value_bytes().to_vec(),
                ))
            })
            .collect();
        if pairs.is_empty()
            || !matches!(
                kind,
                tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::Continuous
            )
        {
            return Ok(());
        }
        let dir_fd;
        let target = match file {
            Some(f) => f.as_fd(),
            None => {
                dir_fd = rustix::fs::openat(
                    pfd,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err("open", shown, e))?;
                dir_fd.as_fd()
            }
        };
        for (key, value) in pairs {
            match rustix::fs::fsetxattr(target, key.as_str(), &value, XattrFlags::empty()) {
                Ok(()) => {}
                // Rootless cannot set trusted.* or security.*; some filesystems have no xattrs.
                Err(Errno::PERM | Errno::NOTSUP | Errno::ACCESS) => {
                    self.report.skipped_xattrs += 1;
                    if !self.warned_xattr {
                        self.warned_xattr = true;
                        tracing::warn!(
                            "cannot set xattr {key} on {} (not permitted here); skipping such xattrs",
                            shown.display()
                        );
                    }
                }
                Err(e) => return Err(io_err("setxattr", shown, e)),
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path, raw: &Path, base: &[u8]) -> Result<(), UnpackError> {
        let (parent, _) = split(rel);
        if base == OPAQUE_MARKER.as_bytes() {
            match self.opts.format {
                Format::Overlay => {
                    let shown = self.display(&parent);
                    self.dir(&parent)?;
                    let fd = rustix::fs::openat2(
                        &self.root,
                        &parent,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
                    )
                    .map_err(|e| io_err("open", &shown, e))?;
                    rustix::fs::fsetxattr(&fd, OPAQUE_XATTR, b"y", XattrFlags::empty())
                        .map_err(|e| io_err("setxattr", &shown, e))?;
                }
                Format::Flatten => {
                    // Opaque hides lower layers only: keep what this layer already put there.
                    let pfd = self
                        .dir(&parent)?
                        .try_clone_to_owned()
                        .map_err(|e| io_err("dup", &parent, e))?;
                    let dir = rustix::fs::openat(
                        &pfd,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| io_err("open", &parent, e))?;
                    let mut names = Vec::new();
                    for ent in rustix::fs::Dir::read_from(&dir)
                        .map_err(|e| io_err("readdir", &parent, e))?
                    {
                        let ent = ent.map_err(|e| io_err("readdir", &parent, e))?;
                        let n = OsStr::from_bytes(ent.file_name().to_bytes()).to_os_string();
                        if n != "." && n != ".." && !self.created.contains(&parent.join(&n)) {
                            names.push(n);
                        }
                    }
                    for n in names {
                        let shown = self.display(&parent.join(&n));
                        remove_at(pfd.as_fd(), &n, &shown)?;
                    }
                    self.parents.clear();
                }
            }
            return Ok(());
        }
        let victim = &base[WHITEOUT_PREFIX.len()..];
        // ".wh." alone, ".wh..", ".wh..." would name the directory itself or climb out of it.
        if victim.is_empty() || victim == b"." || victim == b".." || victim == b"..." {
            return Err(UnpackError::BadWhiteout(raw.to_path_buf()));
        }
        if victim.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            tracing::debug!("ignoring AUFS metadata entry {}", rel.display());
            return Ok(());
        }
        let victim = OsStr::from_bytes(victim).to_os_string();
        let target_rel = parent.join(&victim);
        if self.created.contains(&target_rel) {
            return Ok(()); // same-layer content wins over its own whiteout
        }
        let shown = self.display(&target_rel);
        let pfd = self
            .dir(&parent)?
            .try_clone_to_owned()
            .map_err(|e| io_err("dup", &shown, e))?;
        match self.opts.format {
            Format::Overlay => {
                match rustix::fs::mknodat(
                    &pfd,
                    &victim,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                ) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err("mknod (whiteout)", &shown, e)),
                }
            }
            Format::Flatten => match rustix::fs::statat(&pfd, &victim, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => {
                    remove_at(pfd.as_fd(), &victim, &shown)?;
                    self.parents.clear();
                }
                Err(Errno::NOENT) => {}
                Err(e) => return Err(io_err("stat", &shown, e)),
            },
        }
        Ok(())
    }

    /// Directory times last, deepest first, once nothing else will touch them.
    fn finish(&mut self) -> Result<(), UnpackError> {
        let mut dirs = std::mem::take(&mut self.dir_times);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
        for (rel, mtime) in dirs {
            let (parent, name) = split(&rel);
            let name = name.to_os_string();
            let shown = self.display(&rel);
            let pfd = match self.resolve(&parent) {
                Ok(fd) => fd,
                Err(_) => continue, // removed by a later entry of this layer
            };
            match rustix::fs::utimensat(&pfd, &name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(io_err("utimes", &shown, e)),
            }
        }
        Ok(())
    }
}

fn times(mtime: u64) -> Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn uid_of(id: u64) -> rustix::process::Uid {
    rustix::process::Uid::from_raw(id as u32)
}

fn gid_of(id: u64) -> rustix::process::Gid {
    rustix::process::Gid::from_raw(id as u32)
}

fn split(rel: &Path) -> (PathBuf, &OsStr) {
    (
        rel.parent().map(Path::to_path_buf).unwrap_or_default(),
        rel.file_name().unwrap_or_default(),
    )
}

/// Removes `name` in `dir` without following symlinks: files are unlinked, directories
/// emptied recursively through fds opened with `O_NOFOLLOW`.
pub fn remove_at(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<(), UnpackError> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io_err("unlink", shown, e)),
    }
    let sub = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
            return rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(|e| io_err("unlink", shown, e));
        }
        Err(Errno::ACCESS) => {
            // e.g. overlay's work/work (mode 000): make it ours to empty.
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())
                .map_err(|e| io_err("chmod", shown, e))?;
            rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err("open", shown, e))?
        }
        // Gone meanwhile: removed by another process (a runtime deleting its state).
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io_err("open", shown, e)),
    };
    let mut children = Vec::new();
    for ent in rustix::fs::Dir::read_from(&sub).map_err(|e| io_err("readdir", shown, e))? {
        let ent = ent.map_err(|e| io_err("readdir", shown, e))?;
        let n = OsStr::from_bytes(ent.file_name().to_bytes()).to_os_string();
        if n != "." && n != ".." {
            children.push(n);
        }
    }
    for c in children {
        remove_at(sub.as_fd(), &c, &shown.join(&c))?;
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(io_err("rmdir", shown, e)),
    }
}

/// Removes a whole tree (a layer or upper directory), never following symlinks.
pub fn remove_tree(path: &Path) -> Result<(), UnpackError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or_default();
    let pfd = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open", parent, e))?;
    remove_at(pfd.as_fd(), name, path)
}

#[cfg(test)]
mod tests;
