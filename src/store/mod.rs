//! The local store: an OCI image layout (`oci-layout`, `index.json` with
//! `org.opencontainers.image.ref.name` annotations, `blobs/sha256`) that skopeo and umoci can
//! read. Blobs are written ingest → verify → fsync → rename, so nothing partial is ever
//! visible; `index.json` is replaced atomically under a lock; gc and pulls exclude each
//! other through a shared/exclusive lock.

mod layers;
pub mod layout;
mod lock;
mod lookup;

use crate::oci::digest::{Algorithm, Digest, Digester};
use crate::oci::manifest::{self, Descriptor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub use lock::FileLock;
pub use lookup::Lookup;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Which endpoint served the image (a mirror or the registry itself).
pub const SOURCE_ANNOTATION: &str = "dev.skiff.image.source";
pub const PULLED_ANNOTATION: &str = "dev.skiff.image.pulled";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {}: {op} {}", root.display(), path.display())]
    Io {
        root: PathBuf,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {digest}: {reason}")]
    BadBlob { digest: Digest, reason: String },
    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),
    #[error("store {}: index.json is corrupt: {reason}", root.display())]
    CorruptIndex { root: PathBuf, reason: String },
    #[error("image {0} is not in the store")]
    UnknownImage(String),
    #[error("{0} matches several images; use a longer ID or a name")]
    Ambiguous(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexFile {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// One named image in the store.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub name: String,
    pub manifest: Descriptor,
}

impl ImageEntry {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.manifest
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub removed_blobs: usize,
    pub removed_layers: usize,
    pub freed_bytes: u64,
    pub removed_ingests: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub images_checked: usize,
    pub stale_ingests: usize,
    pub problems: Vec<String>,
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Removed {} blobs ({} bytes), {} layer directories and {} interrupted downloads",
            self.removed_blobs, self.freed_bytes, self.removed_layers, self.removed_ingests
        )
    }
}

/// The summary line, then a line per problem.
impl std::fmt::Display for FsckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "checked {} blobs ({} bytes) and {} images; {} interrupted downloads pending cleanup",
            self.blobs_checked, self.bytes_checked, self.images_checked, self.stale_ingests
        )?;
        self.problems
            .iter()
            .try_for_each(|p| write!(f, "\nproblem: {p}"))
    }
}

/// The store's default place: `$XDG_DATA_HOME/skiff` rootless (else `~/.local/share/skiff`),
/// `/var/lib/skiff` as root.
pub fn default_root() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/skiff");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("skiff")
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in ["blobs/sha256", "ingest", "locks"] {
            let p = root.join(dir);
            std::fs::create_dir_all(&p).map_err(|e| store.io("create", &p, e))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            let _guard = store.index_lock()?;
            if !index.exists() {
                store.write_index(&IndexFile {
                    schema_version: 2,
                    media_type: Some(manifest::OCI_INDEX.into()),
                    manifests: vec![],
                })?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn io(&self, op: &'static str, path: &Path, error: std::io::Error) -> StoreError {
        StoreError::Io {
            root: self.root.clone(),
            op,
            path: path.to_path_buf(),
            source: error,
        }
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().name())
            .join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        match std::fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::MissingBlob(d.clone()))
            }
            Err(e) => Err(self.io("read", &p, e)),
        }
    }

    /// Stores bytes that are already in memory (manifests, configs), verified.
    pub fn put_blob(&self, expected: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        if self.has_blob(expected) {
            return Ok(());
        }
        let mut ingest = self.ingest(expected.clone(), bytes.len() as u64)?;
        ingest.write_bytes(bytes)?;
        ingest.commit()
    }

    /// A writer for one blob; dropped without `commit` it removes its temporary file.
    pub fn ingest(&self, digest: Digest, size: u64) -> Result<Ingest, StoreError> {
        let path = self.root.join("ingest").join(format!(
            "{}.{}.{}",
            digest.hex(),
            std::process::id(),
            unique()
        ));
        let file = File::create(&path).map_err(|e| self.io("create", &path, e))?;
        Ok(Ingest {
            store: self.clone(),
            file: Some(file),
            digester: Some(Digester::new(digest.algorithm())),
            digest,
            size,
            written: 0,
            path,
        })
    }

    pub fn lock_blob(&self, d: &Digest) -> Result<FileLock, StoreError> {
        let p = self
            .root
            .join("locks")
            .join(format!("blob-{}.lock", d.hex()));
        FileLock::exclusive(&p).map_err(|e| self.io("lock", &p, e))
    }

    /// Held (shared) by every pull and import for its whole duration; gc takes it exclusive,
    /// so it never removes a blob that a running pull wrote but has not named yet.
    pub fn use_lock(&self) -> Result<FileLock, StoreError> {
        let p = self.root.join("locks/gc.lock");
        FileLock::shared(&p).map_err(|e| self.io("lock", &p, e))
    }

    fn gc_lock(&self) -> Result<FileLock, StoreError> {
        let p = self.root.join("locks/gc.lock");
        FileLock::exclusive(&p).map_err(|e| self.io("lock", &p, e))
    }

    fn index_lock(&self) -> Result<FileLock, StoreError> {
        let p = self.root.join("locks/index.lock");
        FileLock::exclusive(&p).map_err(|e| self.io("lock", &p, e))
    }

    /// The store's records (index.json, oci-layout) are on disk before anything relies on them.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        crate::proc::write_atomic(path, bytes, crate::proc::Durability::Fsync)
            .map_err(|e| self.io("write", path, e))
    }

    fn read_index(&self) -> Result<IndexFile, StoreError> {
        let p = self.root.join("index.json");
        let text = std::fs::read(&p).map_err(|e| self.io("read", &p, e))?;
        serde_json::from_slice(&text).map_err(|e| StoreError::CorruptIndex {
            root: self.root.clone(),
            reason: e.to_string(),
        })
    }

    fn write_index(&self, index: &IndexFile) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(index).expect("serializable");
        self.write_atomic(&self.root.join("index.json"), &bytes)
    }

    pub fn images(&self) -> Result<Vec<ImageEntry>, StoreError> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .map(|d| {
                // An image without a name (imported or loaded untagged) has an empty one.
                let name = d
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .cloned()
                    .unwrap_or_default();
                ImageEntry { name, manifest: d }
            })
            .collect())
    }

    pub fn find(&self, name: &str) -> Result<Option<ImageEntry>, StoreError> {
        Ok(self
            .images()?
            .into_iter()
            .find(|e| !name.is_empty() && e.name == name))
    }

    /// Keeps an image without a name (like podman's `<none>`), once per manifest.
    pub fn add_untagged(
        &self,
        mut manifest: Descriptor,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        if !self.has_blob(&manifest.digest) {
            return Err(StoreError::MissingBlob(manifest.digest));
        }
        let blobs = self.root.join("blobs/sha256");
        sync_dir(&blobs).map_err(|e| self.io("fsync", &blobs, e))?;
        manifest.annotations = Some(annotations).filter(|a| !a.is_empty());
        let _guard = self.index_lock()?;
        let mut index = self.read_index()?;
        let already = index.manifests.iter().any(|d| d.digest == manifest.digest);
        if !already {
            index.manifests.push(manifest);
            self.write_index(&index)?;
        }
        Ok(())
    }

    /// Removes the unnamed entries of a manifest; returns how many there were.
    pub fn remove_untagged(&self, digest: &Digest) -> Result<usize, StoreError> {
        let _guard = self.index_lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| {
            !(d.digest == *digest
                && d.annotations
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_none())
        });
        let removed = before - index.manifests.len();
        if removed > 0 {
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// A blob whose digest is known only at the end (an import's uncompressed layer).
    pub fn ingest_any(&self) -> Result<IngestAny, StoreError> {
        let path =
            self.root
                .join("ingest")
                .join(format!("any.{}.{}", std::process::id(), unique()));
        let file = File::create(&path).map_err(|e| self.io("create", &path, e))?;
        Ok(IngestAny {
            store: self.clone(),
            file: Some(file),
            digester: Some(Digester::new(Algorithm::Sha256)),
            written: 0,
            path,
        })
    }

    /// Names `manifest` as `name`, replacing what the name pointed at before.
    pub fn set_ref(
        &self,
        name: &str,
        mut manifest: Descriptor,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        if !self.has_blob(&manifest.digest) {
            return Err(StoreError::MissingBlob(manifest.digest));
        }
        let mut ann = annotations;
        ann.insert(REF_NAME.into(), name.to_string());
        manifest.annotations = Some(ann);
        // Blob renames become durable before a name can point at them (one fsync per ref).
        let blobs = self.root.join("blobs/sha256");
        sync_dir(&blobs).map_err(|e| self.io("fsync", &blobs, e))?;
        let _guard = self.index_lock()?;
        let mut index = self.read_index()?;
        index.manifests.retain(|d| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .map(String::as_str)
                != Some(name)
        });
        index.manifests.push(manifest);
        self.write_index(&index)
    }

    /// Removes names; returns the ones that existed.
    pub fn remove_refs(&self, names: &[String]) -> Result<Vec<String>, StoreError> {
        let _guard = self.index_lock()?;
        let mut index = self.read_index()?;
        let mut removed = Vec::new();
        index.manifests.retain(|d| {
            let n = d.annotations.as_ref().and_then(|a| a.get(REF_NAME));
            match n {
                Some(n) if names.contains(n) => {
                    removed.push(n.clone());
                    false
                }
                _ => true,
            }
        });
        self.write_index(&index)?;
        Ok(removed)
    }

    /// Every blob a manifest (or index) needs, itself included.
    fn closure(&self, root: &Descriptor, out: &mut BTreeSet<Digest>, problems: &mut Vec<String>) {
        if !out.insert(root.digest.clone()) {
            return;
        }
        let bytes = match self.read_blob(&root.digest) {
            Ok(b) => b,
            Err(e) => {
                problems.push(e.to_string());
                return;
            }
        };
        match manifest::parse(&bytes, Some(&root.media_type), &root.digest.to_string()) {
            Ok((manifest::Parsed::Image(m), _)) => {
                for d in std::iter::once(&m.config).chain(m.layers.iter()) {
                    out.insert(d.digest.clone());
                    if !self.has_blob(&d.digest) {
                        problems.push(format!(
                            "manifest {} needs missing blob {}",
                            root.digest, d.digest
                        ));
                    }
                }
            }
            Ok((manifest::Parsed::Index(i), _)) => {
                for d in &i.manifests {
                    if self.has_blob(&d.digest) {
                        self.closure(d, out, problems);
                    }
                }
            }
            Err(e) => problems.push(format!("manifest {}: {e}", root.digest)),
        }
    }

    /// Removes blobs no name needs, and ingest files of processes that are gone.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        Ok(self.gc_holding_lock()?.0)
    }

    /// `gc`, returning the exclusive gc lock so more collection can happen under it.
    pub fn gc_holding_lock(&self) -> Result<(GcReport, FileLock), StoreError> {
        let gc = self.gc_lock()?;
        let mut keep = BTreeSet::new();
        let mut problems = Vec::new();
        for img in self.images()? {
            self.closure(&img.manifest, &mut keep, &mut problems);
        }
        let mut report = GcReport::default();
        let dir = self.root.join("blobs/sha256");
        for entry in std::fs::read_dir(&dir).map_err(|e| self.io("list", &dir, e))? {
            let entry = entry.map_err(|e| self.io("list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let keep_it = format!("sha256:{name}")
                .parse::<Digest>()
                .is_ok_and(|d| keep.contains(&d));
            if !keep_it {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(entry.path())
                    .map_err(|e| self.io("remove", &entry.path(), e))?;
                // No pull holds a blob lock now: pulls take them only under the shared gc lock.
                let _ =
                    std::fs::remove_file(self.root.join("locks").join(format!("blob-{name}.lock")));
                report.removed_blobs += 1;
                report.freed_bytes += size;
            }
        }
        report.removed_ingests = self.stale_ingests(true)?;
        Ok((report, gc))
    }

    fn stale_ingests(&self, remove: bool) -> Result<usize, StoreError> {
        let dir = self.root.join("ingest");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| self.io("list", &dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            let pid = name.split('.').nth(1).and_then(|p| p.parse::<u32>().ok());
            // A zombie writes no more: its ingest is as stale as a gone process's.
            let alive =
                pid.is_some_and(|p| p == std::process::id() || crate::proc::process_alive(p));
            if !alive {
                n += 1;
                if remove {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(n)
    }

    /// Re-hashes every blob and checks that every name's closure is present and parses.
    pub fn fsck(&self) -> Result<FsckReport, StoreError> {
        let mut report = FsckReport::default();
        let dir = self.root.join("blobs/sha256");
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| self.io("list", &dir, e))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                report
                    .problems
                    .push(format!("unexpected file blobs/sha256/{name}"));
                continue;
            };
            match hash_file(&entry.path(), Algorithm::Sha256) {
                Ok((actual, size)) => {
                    report.blobs_checked += 1;
                    report.bytes_checked += size;
                    if actual != digest {
                        report
                            .problems
                            .push(format!("blob {digest} has content {actual}"));
                    }
                }
                Err(e) => report.problems.push(format!("blob {digest}: {e}")),
            }
        }
        let mut seen = BTreeSet::new();
        for img in self.images()? {
            report.images_checked += 1;
            let mut problems = Vec::new();
            self.closure(&img.manifest, &mut seen, &mut problems);
            report
                .problems
                .extend(problems.into_iter().map(|p| format!("{}: {p}", img.name)));
            seen.clear();
        }
        report.stale_ingests = self.stale_ingests(false)?;
        Ok(report)
    }
}

/// A blob being written. Hashes as it goes; `commit` checks size and digest, fsyncs and
/// renames into `blobs/`. Dropped uncommitted, it deletes its file.
pub struct Ingest {
    store: Store,
    file: Option<File>,
    digester: Option<Digester>,
    digest: Digest,
    size: u64,
    written: u64,
    path: PathBuf,
}

impl Ingest {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let file = self.file.as_mut().expect("open until commit");
        file.write_all(bytes).map_err(|e| StoreError::Io {
            root: self.store.root.clone(),
            op: "write",
            path: self.path.clone(),
            source: e,
        })?;
        self.digester.as_mut().expect("open").update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn restart(&mut self) -> Result<(), StoreError> {
        let file = self.file.as_mut().expect("open");
        file.set_len(0)
            .and_then(|_| std::io::Seek::seek(file, std::io::SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| StoreError::Io {
                root: self.store.root.clone(),
                op: "truncate",
                path: self.path.clone(),
                source: e,
            })?;
        self.digester = Some(Digester::new(self.digest.algorithm()));
        self.written = 0;
        Ok(())
    }

    pub fn commit(mut self) -> Result<(), StoreError> {
        let actual = self.digester.take().expect("open").finish();
        if self.written != self.size {
            return Err(StoreError::BadBlob {
                digest: self.digest.clone(),
                reason: format!("expected {} bytes, got {}", self.size, self.written),
            });
        }
        if actual != self.digest {
            return Err(StoreError::BadBlob {
                digest: self.digest.clone(),
                reason: format!("content hashes to {actual}"),
            });
        }
        let file = self.file.take().expect("open");
        let dest = self.store.blob_path(&self.digest);
        let io = |op, e| StoreError::Io {
            root: self.store.root.clone(),
            op,
            path: dest.clone(),
            source: e,
        };
        file.sync_all().map_err(|e| io("fsync", e))?;
        drop(file);
        // The directory entry is made durable once, by `set_ref`, before any name points here.
        std::fs::rename(&self.path, &dest).map_err(|e| io("rename", e))?;
        Ok(())
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.file.is_some() || self.path.exists() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Like `Ingest`, named by its content on commit.
pub struct IngestAny {
    store: Store,
    file: Option<File>,
    digester: Option<Digester>,
    written: u64,
    path: PathBuf,
}

impl IngestAny {
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let file = self.file.as_mut().expect("open until commit");
        file.write_all(bytes)
            .map_err(|e| self.store.io("write", &self.path, e))?;
        self.digester.as_mut().expect("open").update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// fsync, then rename to `blobs/sha256/<digest>`; returns the digest and size.
    pub fn commit(self) -> Result<(Digest, u64), StoreError> {
        self.commit_new().map(|(d, n, _)| (d, n))
    }

    /// `commit`, also telling whether the blob is new to the store.
    pub fn commit_new(mut self) -> Result<(Digest, u64, bool), StoreError> {
        let digest = self.digester.take().expect("open").finish();
        let dest = self.store.blob_path(&digest);
        if dest.exists() {
            return Ok((digest, self.written, false)); // the temp file goes with Drop
        }
        let file = self.file.take().expect("open");
        file.sync_all()
            .map_err(|e| self.store.io("fsync", &self.path, e))?;
        drop(file);
        std::fs::rename(&self.path, &dest).map_err(|e| self.store.io("rename", &dest, e))?;
        Ok((digest, self.written, true))
    }
}

impl Drop for IngestAny {
    fn drop(&mut self) {
        if self.path.exists() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn hash_file(path: &Path, alg: Algorithm) -> std::io::Result<(Digest, u64)> {
    use std::io::Read as _;
    let mut f = File::open(path)?;
    let mut d = Digester::new(alg);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
        total += n as u64;
    }
    Ok((d.finish(), total))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (nanos << 16) ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = Digest::sha256_of(b"hello");
        let mut i = store.ingest(good.clone(), 5).unwrap();
        i.write_bytes(b"hellO").unwrap();
        assert!(i.commit().is_err());
        assert!(!store.has_blob(&good));
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0,
            "no leftovers"
        );
        drop(store.lock_blob(&good).unwrap());
        store.put_blob(&good, b"hello").unwrap();
        assert_eq!(store.read_blob(&good).unwrap(), b"hello");
        let short = store.ingest(Digest::sha256_of(b"abc"), 3).unwrap();
        drop(short);
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .count(),
            0
        );
        let report = store.fsck().unwrap();
        assert!(report.problems.is_empty());
        assert_eq!(report.blobs_checked, 1);
        let gc = store.gc().unwrap();
        assert_eq!(gc.removed_blobs, 1, "an unnamed blob is garbage");
        assert!(
            !dir.path()
                .join("locks")
                .join(format!("blob-{}.lock", good.hex()))
                .exists()
        );
    }

    #[test]
    fn fsck_finds_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"data");
        store.put_blob(&d, b"data").unwrap();
        std::fs::write(store.blob_path(&d), b"evil").unwrap();
        let report = store.fsck().unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    }
}
