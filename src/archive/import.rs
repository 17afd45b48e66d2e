//! `skiff import`: a flat rootfs tarball (any compression, or stdin) becomes a one-layer image.
//! The layer is stored uncompressed (its digest is its diff_id, as containers-storage keeps
//! imports) while the same bytes stream into the namespaced unpacker, so the file is read and
//! decompressed once. Importing the same file again reuses the layer through a cache keyed
//! by the file's sha256, so it costs a hash of the compressed file.

use super::{ArchiveError, Input, changes, io_err};
use crate::oci::digest::{Algorithm, Digest, Digester};
use crate::oci::manifest::{Descriptor, OCI_CONFIG, OCI_MANIFEST, PlatformSpec};
use crate::oci::reference::ImageRef;
use crate::store::Store;
use crate::unpack::{Report, compression};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Stdio;

pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The name to store, exactly; `None` keeps the image untagged (identified by its ID).
    pub name: Option<ImageRef>,
    pub platform: PlatformSpec,
    pub changes: Vec<String>,
    /// Seconds since the epoch for `created`; `None`: a file's mtime (as podman does, so one
    /// file gives one image ID), or now for a stream.
    pub created: Option<i64>,
    pub unpack: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub name: Option<String>,
    pub id: Digest,
    pub manifest_digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub compression: String,
    /// The layer came from an earlier import of the same file.
    pub reused: bool,
}

/// What `skiff import` says of a named image: `Imported NAME`, and whether its layer was reused.
impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Imported {}",
            self.name.as_deref().unwrap_or("(no name)")
        )?;
        match self.reused {
            true => write!(f, " (layer reused from an earlier import)"),
            false => Ok(()),
        }
    }
}

/// The name `skiff import` stores under, checked before anything is read or written: a
/// short name becomes `localhost/NAME`, and a digest is refused.
pub fn import_name(given: &str) -> Result<ImageRef, ArchiveError> {
    let parsed = ImageRef::parse_local(given).map_err(ArchiveError::BadName)?;
    if parsed.digest.is_some() {
        return Err(ArchiveError::DigestName(given.to_string()));
    }
    Ok(parsed)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sha256_file(path: &std::path::Path) -> Result<Digest, ArchiveError> {
    let mut f = std::fs::File::open(path).map_err(|e| io_err("opening", path, e))?;
    let mut d = Digester::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err("reading", path, e))?;
        if n == 0 {
            return Ok(d.finish());
        }
        d.update(&buf[..n]);
    }
}

/// `skiff import`: a rootfs tarball from a file or stdin. A file is hashed first, so
/// importing it again reuses its layer.
pub fn import_file(
    store: &Store,
    input: &Input,
    mut opts: ImportOptions,
) -> Result<ImportReport, ArchiveError> {
    let path = match input {
        Input::Stdin => {
            opts.created.get_or_insert_with(now);
            return import(store, "stdin", std::io::stdin().lock(), None, &opts);
        }
        Input::File(path) => path,
    };
    let meta = std::fs::metadata(path).map_err(|e| io_err("reading", path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    opts.created.get_or_insert(mtime);
    let digest = sha256_file(path)?;
    let file = std::fs::File::open(path).map_err(|e| io_err("opening", path, e))?;
    import(store, &input.name(), file, Some(&digest), &opts)
}

/// Builds the config up front, so an invalid --change fails before anything is written.
fn config_object(opts: &ImportOptions) -> Result<Map<String, Value>, ArchiveError> {
    let mut config = Map::new();
    for c in &opts.changes {
        changes::apply(&mut config, c)?;
    }
    Ok(config)
}

fn cache_path(store: &Store, input: &Digest) -> std::path::PathBuf {
    store.root().join("imports").join(input.hex())
}

/// Imports `input` (named `source_name` in messages). `input_digest` is the sha256 of the
/// file as given (compressed), when known: it enables the re-import cache.
pub fn import(
    store: &Store,
    source_name: &str,
    input: impl Read,
    input_digest: Option<&Digest>,
    opts: &ImportOptions,
) -> Result<ImportReport, ArchiveError> {
    let config = config_object(opts)?;
    let _use = store.use_lock()?;
    let cached = input_digest
        .and_then(|d| std::fs::read_to_string(cache_path(store, d)).ok())
        .and_then(|s| s.trim().parse::<Digest>().ok());
    let (diff_id, size, kind, reused) = match cached.filter(|d| store.has_blob(d)) {
        Some(d) => {
            if opts.unpack && !store.has_layer(&d) {
                let blob = std::fs::File::open(store.blob_path(&d))
                    .map_err(|e| io_err("open", &store.blob_path(&d), e))?;
                unpack_child(store, source_name, Stdio::from(blob), |_| Ok(()))?;
            }
            let size = std::fs::metadata(store.blob_path(&d))
                .map_err(|e| io_err("stat", &store.blob_path(&d), e))?
                .len();
            (d, size, "cached".to_string(), true)
        }
        None => {
            let (d, size, kind) = ingest(store, source_name, input, opts.unpack)?;
            if let Some(input) = input_digest {
                let p = cache_path(store, input);
                std::fs::create_dir_all(p.parent().expect("imports dir"))
                    .map_err(|e| io_err("mkdir", &p, e))?;
                std::fs::write(&p, d.to_string()).map_err(|e| io_err("write", &p, e))?;
            }
            (d, size, kind, false)
        }
    };

    let created = crate::time::rfc3339(opts.created.unwrap_or_else(now));
    let mut cfg = json!({
        "created": created,
        "architecture": opts.platform.arch,
        "os": opts.platform.os,
        "config": Value::Object(config),
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": created, "created_by": format!("skiff import {source_name}"), "comment": "imported from a root filesystem tarball"}],
    });
    if let Some(v) = &opts.platform.variant {
        cfg["variant"] = json!(v);
    }
    let cfg_bytes = serde_json::to_vec(&cfg).expect("serializable");
    let cfg_digest = Digest::sha256_of(&cfg_bytes);
    store.put_blob(&cfg_digest, &cfg_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest.to_string(), "size": cfg_bytes.len()},
        "layers": [{"mediaType": LAYER_TAR, "digest": diff_id.to_string(), "size": size}],
    });
    let m_bytes = serde_json::to_vec(&manifest).expect("serializable");
    let m_digest = Digest::sha256_of(&m_bytes);
    store.put_blob(&m_digest, &m_bytes)?;
    let desc = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: m_digest.clone(),
        size: m_bytes.len() as u64,
        urls: None,
        annotations: None,
        platform: None,
    };
    let mut ann = BTreeMap::new();
    ann.insert(
        crate::store::SOURCE_ANNOTATION.to_string(),
        format!("import:{source_name}"),
    );
    match &opts.name {
        Some(n) => store.set_ref(&n.to_string(), desc, ann)?,
        None => store.add_untagged(desc, ann)?,
    }
    Ok(ImportReport {
        name: opts.name.as_ref().map(|n| n.to_string()),
        id: cfg_digest,
        manifest_digest: m_digest,
        diff_id,
        size,
        compression: kind,
        reused,
    })
}

/// Decompresses once, teeing the tar into the store (uncompressed blob) and the unpacker.
fn ingest(
    store: &Store,
    source_name: &str,
    input: impl Read,
    unpack: bool,
) -> Result<(Digest, u64, String), ArchiveError> {
    let read_err = |reason: String| ArchiveError::Read {
        source_name: source_name.to_string(),
        reason,
    };
    let (mut decoded, kind) =
        compression::decompress(input).map_err(|e| read_err(e.to_string()))?;
    let mut blob = store.ingest_any()?;
    let mut copy =
        |sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>| -> Result<(), ArchiveError> {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = decoded.read(&mut buf).map_err(|e| {
                    read_err(
                        format!("{} (truncated or corrupt {kind:?} data?)", e)
                            .replace("Gzip", "gzip")
                            .replace("Xz", "xz")
                            .replace("Zstd", "zstd"),
                    )
                })?;
                if n == 0 {
                    return Ok(());
                }
                blob.write_bytes(&buf[..n])?;
                // A failed unpacker stops reading; its own error is reported when it is waited for.
                let _ = sink(&buf[..n]);
            }
        };
    let report = if unpack {
        let mut result = Ok(());
        let report = unpack_child(store, source_name, Stdio::piped(), |stdin| {
            let mut stdin = stdin;
            result = copy(&mut |b| stdin.write_all(b));
            Ok(())
        });
        result?;
        Some(report?)
    } else {
        copy(&mut |_| Ok(()))?;
        None
    };
    let (diff_id, size) = blob.commit()?;
    if let Some(r) = report {
        if r.diff_id.as_ref() != Some(&diff_id) {
            return Err(ArchiveError::Mismatch(diff_id));
        }
    }
    Ok((diff_id, size, format!("{kind:?}").to_lowercase()))
}

/// Runs `skiff __unpack-layer STORE -` on `stdin`; `feed` writes into it when piped.
fn unpack_child(
    store: &Store,
    source_name: &str,
    stdin: Stdio,
    feed: impl FnOnce(std::process::ChildStdin) -> Result<(), ArchiveError>,
) -> Result<Report, ArchiveError> {
    unpack_child_for(store, source_name, None, stdin, feed)
}

/// Unpacks every layer of a stored image that is not unpacked yet, from its blob.
pub fn unpack_image_layers(
    store: &Store,
    entry: &crate::store::ImageEntry,
) -> Result<(), ArchiveError> {
    for (desc, diff_id) in store.image_layers(entry)? {
        if store.has_layer(&diff_id) {
            continue;
        }
        let _lock = store.lock_layer(&diff_id)?;
        if store.has_layer(&diff_id) {
            continue;
        }
        let path = store.blob_path(&desc.digest);
        let blob = std::fs::File::open(&path).map_err(|e| io_err("open", &path, e))?;
        unpack_child_for(
            store,
            &entry.name,
            Some(&diff_id),
            Stdio::from(blob),
            |_| Ok(()),
        )?;
    }
    Ok(())
}

fn unpack_child_for(
    store: &Store,
    source_name: &str,
    diff_id: Option<&Digest>,
    stdin: Stdio,
    feed: impl FnOnce(std::process::ChildStdin) -> Result<(), ArchiveError>,
) -> Result<Report, ArchiveError> {
    let helper = crate::proc::HelperCmd::UnpackLayer {
        store: store.root().to_path_buf(),
        diff_id: diff_id.map(|d| d.to_string()),
    };
    let mut child = helper
        .command()
        .map_err(|e| {
            io_err(
                "locate",
                std::path::Path::new("/proc/self/exe"),
                std::io::Error::other(e),
            )
        })?
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io_err("start unpacker", store.root(), e))?;
    if let Some(s) = child.stdin.take() {
        feed(s)?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| io_err("wait for unpacker", store.root(), e))?;
    let not_rootfs = |reason: String| ArchiveError::NotRootfs {
        source_name: source_name.to_string(),
        reason,
    };
    if !out.status.success() {
        return Err(not_rootfs(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let report: Report = serde_json::from_slice(&out.stdout)
        .map_err(|e| not_rootfs(format!("unreadable unpacker report: {e}")))?;
    if report.entries == 0 {
        return Err(not_rootfs("the tar has no entries".into()));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_names_are_tags_never_digests() {
        assert_eq!(
            import_name("tool").unwrap().to_string(),
            "localhost/tool:latest"
        );
        let given = format!("tool@sha256:{}", "0".repeat(64));
        assert_eq!(
            import_name(&given).unwrap_err().to_string(),
            format!("{given}: an imported image is named by a tag, not a digest")
        );
        assert!(matches!(
            import_name("Bad Name"),
            Err(ArchiveError::BadName(_))
        ));
    }
}
