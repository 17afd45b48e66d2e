//! `skiff save`: images as a docker-archive (`docker save` layout: `manifest.json`,
//! `<config>.json`, uncompressed `<diff_id>.tar` layers, `repositories`) or an oci-archive (an
//! OCI layout in a tar, names in `org.opencontainers.image.ref.name`). A file is written under
//! a temporary name and renamed, so a failure never leaves half an archive behind; a stream
//! (`-o -`) gets the archive as it is made.

use super::{ArchiveError, io_err};
use crate::oci::config::ImageConfig;
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, Descriptor, Parsed};
use crate::store::{ImageEntry, Store};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    DockerArchive,
    OciArchive,
}

/// The images `skiff save` writes for the user's words, each with its names in the archive:
/// given by name, that name; given by ID, every name the image has.
pub fn select(
    store: &Store,
    inputs: &[String],
) -> Result<Vec<(ImageEntry, Vec<String>)>, ArchiveError> {
    let mut images = Vec::new();
    for input in inputs {
        let lookup = store.lookup(input)?;
        if lookup.entries.len() > 1 {
            return Err(crate::store::StoreError::Ambiguous(input.clone()).into());
        }
        let entry = lookup
            .entries
            .into_iter()
            .next()
            .expect("a lookup finds one at least");
        let names = if lookup.by_name {
            vec![entry.name.clone()]
        } else {
            let mut names = store.names_of(std::slice::from_ref(&entry))?;
            names.retain(|n| !n.is_empty());
            names
        };
        images.push((entry, names));
    }
    Ok(images)
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

struct Writer<'a, W: std::io::Write> {
    builder: tar::Builder<W>,
    store: &'a Store,
    out: &'a Path,
    written: BTreeSet<String>,
}

impl<W: std::io::Write> Writer<'_, W> {
    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), ArchiveError> {
        if self.written.insert(name.to_string()) {
            let mut h = header(data.len() as u64);
            self.builder
                .append_data(&mut h, name, data)
                .map_err(|e| io_err("write", self.out, e))?;
        }
        Ok(())
    }
    fn dir(&mut self, name: &str) -> Result<(), ArchiveError> {
        let mut h = header(0);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        self.builder
            .append_data(&mut h, format!("{name}/"), std::io::empty())
            .map_err(|e| io_err("write", self.out, e))
    }
    fn file(&mut self, name: &str, path: &Path) -> Result<(), ArchiveError> {
        if self.written.insert(name.to_string()) {
            let f = std::fs::File::open(path).map_err(|e| io_err("open", path, e))?;
            let len = f.metadata().map_err(|e| io_err("stat", path, e))?.len();
            let mut h = header(len);
            self.builder
                .append_data(&mut h, name, f)
                .map_err(|e| io_err("write", self.out, e))?;
        }
        Ok(())
    }
    fn blob(&mut self, name: &str, d: &Digest) -> Result<(), ArchiveError> {
        let p = self.store.blob_path(d);
        self.file(name, &p)
    }
    /// A layer, uncompressed (docker save's form), named by its diff_id.
    fn layer_uncompressed(&mut self, name: &str, layer: &Descriptor) -> Result<(), ArchiveError> {
        if self.written.contains(name) {
            return Ok(());
        }
        let blob = self.store.blob_path(&layer.digest);
        let f = std::fs::File::open(&blob).map_err(|e| io_err("open", &blob, e))?;
        let (mut decoded, kind) =
            crate::unpack::compression::decompress(f).map_err(|e| ArchiveError::Read {
                source_name: layer.digest.to_string(),
                reason: e.to_string(),
            })?;
        if kind == crate::unpack::Compression::None {
            return self.blob(name, &layer.digest);
        }
        // The tar header needs the size first: decompress into a temporary file.
        let tmp = self.store.root().join("ingest").join(format!(
            "save.{}.{}",
            std::process::id(),
            layer.digest.hex()
        ));
        let res = (|| {
            let mut t = std::fs::File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
            std::io::copy(&mut decoded, &mut t).map_err(|e| io_err("decompress", &blob, e))?;
            self.file(name, &tmp)
        })();
        let _ = std::fs::remove_file(&tmp);
        res
    }
}

fn image_parts(
    store: &Store,
    e: &ImageEntry,
) -> Result<(Vec<u8>, manifest::ImageManifest), ArchiveError> {
    let bytes = store.read_blob(&e.manifest.digest)?;
    match manifest::parse(&bytes, Some(&e.manifest.media_type), &e.name) {
        Ok((Parsed::Image(m), _)) => Ok((bytes, *m)),
        _ => Err(ArchiveError::Read {
            source_name: e.name.clone(),
            reason: "the stored manifest does not parse".into(),
        }),
    }
}

/// Writes `images` (each with the names to record) to `out`.
pub fn save(
    store: &Store,
    images: &[(ImageEntry, Vec<String>)],
    format: ArchiveFormat,
    out: &Path,
) -> Result<(), ArchiveError> {
    let tmp = out.with_file_name(format!(
        ".{}.tmp.{}",
        out.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("archive"),
        std::process::id()
    ));
    let file = std::fs::File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
    let res = write_archive(store, images, format, file, out).and_then(|f| {
        f.sync_all().map_err(|e| io_err("fsync", out, e))?;
        std::fs::rename(&tmp, out).map_err(|e| io_err("rename", out, e))
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Writes `images` to `stream` (standard output, a pipe) as the archive is made; `name` says
/// where it goes in errors. A failure leaves the reader a truncated tar, which it rejects.
pub fn save_to<W: std::io::Write>(
    store: &Store,
    images: &[(ImageEntry, Vec<String>)],
    format: ArchiveFormat,
    stream: W,
    name: &Path,
) -> Result<(), ArchiveError> {
    let mut stream = write_archive(store, images, format, stream, name)?;
    stream.flush().map_err(|e| io_err("write", name, e))
}

fn write_archive<W: std::io::Write>(
    store: &Store,
    images: &[(ImageEntry, Vec<String>)],
    format: ArchiveFormat,
    sink: W,
    out: &Path,
) -> Result<W, ArchiveError> {
    let mut w = Writer {
        builder: tar::Builder::new(sink),
        store,
        out,
        written: BTreeSet::new(),
    };
    match format {
        ArchiveFormat::DockerArchive => docker(&mut w, images)?,
        ArchiveFormat::OciArchive => oci(&mut w, images)?,
    }
    w.builder.into_inner().map_err(|e| io_err("write", out, e))
}

fn docker<W: std::io::Write>(
    w: &mut Writer<'_, W>,
    images: &[(ImageEntry, Vec<String>)],
) -> Result<(), ArchiveError> {
    let mut manifest = Vec::new();
    let mut repositories = serde_json::Map::new();
    for (e, names) in images {
        let (_, m) = image_parts(w.store, e)?;
        let config = w.store.read_blob(&m.config.digest)?;
        let cfg: ImageConfig =
            serde_json::from_slice(&config).map_err(|err| ArchiveError::Read {
                source_name: e.name.clone(),
                reason: err.to_string(),
            })?;
        let diff_ids = cfg.diff_ids();
        let config_name = format!("{}.json", m.config.digest.hex());
        w.bytes(&config_name, &config)?;
        let mut layers = Vec::new();
        for (l, d) in m.layers.iter().zip(diff_ids) {
            let name = format!("{}.tar", d.hex());
            w.layer_uncompressed(&name, l)?;
            layers.push(name);
        }
        for n in names {
            if let Some((repo, tag)) = n.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                let entry = repositories
                    .entry(repo.to_string())
                    .or_insert_with(|| json!({}));
                entry[tag] = json!(m.config.digest.hex());
            }
        }
        manifest.push(json!({"Config": config_name, "RepoTags": names, "Layers": layers}));
    }
    w.bytes(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
    )?;
    w.bytes(
        "repositories",
        &serde_json::to_vec(&repositories).expect("json"),
    )
}

fn oci<W: std::io::Write>(
    w: &mut Writer<'_, W>,
    images: &[(ImageEntry, Vec<String>)],
) -> Result<(), ArchiveError> {
    // The directories come first, as in the layouts skopeo and podman write: a reader that
    // unpacks the archive (containers/image does, to a temporary directory) otherwise makes
    // them itself and gives them to root, which fails when it is not root.
    for dir in ["blobs", "blobs/sha256"] {
        w.dir(dir)?;
    }
    let mut index = Vec::new();
    for (e, names) in images {
        let (bytes, m) = image_parts(w.store, e)?;
        w.bytes(&format!("blobs/sha256/{}", e.manifest.digest.hex()), &bytes)?;
        w.blob(
            &format!("blobs/sha256/{}", m.config.digest.hex()),
            &m.config.digest,
        )?;
        for l in &m.layers {
            w.blob(&format!("blobs/sha256/{}", l.digest.hex()), &l.digest)?;
        }
        let desc = json!({"mediaType": e.manifest.media_type, "digest": e.manifest.digest.to_string(), "size": e.manifest.size});
        if names.is_empty() {
            index.push(desc.clone());
        }
        for n in names {
            let mut d = desc.clone();
            d["annotations"] =
                json!({"org.opencontainers.image.ref.name": n, "io.containerd.image.name": n});
            index.push(d);
        }
    }
    w.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    w.bytes(
        "index.json",
        &serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": index}),
        )
        .expect("json"),
    )
}
