//! `skiff load`: docker-archive (`manifest.json` with `RepoTags`, several images) and
//! oci-archive (`index.json`; `io.containerd.image.name` preferred over
//! `org.opencontainers.image.ref.name`), plain or compressed, read in one pass: every member
//! becomes a content-addressed blob, then the images are assembled and checked. On any error
//! the blobs this load added are removed again, so the store is as before.

use super::{ArchiveError, Input, io_err};
use crate::oci::config::ImageConfig;
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, Descriptor, OCI_CONFIG, OCI_MANIFEST, Parsed, PlatformSpec};
use crate::oci::reference::ImageRef;
use crate::store::Store;
use crate::unpack::{Compression, compression};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

const SMALL: u64 = 4 << 20;
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadedImage {
    pub names: Vec<String>,
    pub id: Digest,
    pub manifest_digest: Digest,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub format: String,
    pub images: Vec<LoadedImage>,
}

struct Member {
    digest: Digest,
    size: u64,
    small: Option<Vec<u8>>,
}

/// `skiff load`: an archive from a file or stdin; `unpack` also unpacks every layer the loaded
/// images need that the store lacks, so a run needs no further work.
pub fn load_file(
    store: &Store,
    input: &Input,
    extra_tag: Option<&ImageRef>,
    platform: &PlatformSpec,
    unpack: bool,
) -> Result<LoadReport, ArchiveError> {
    let report = match input {
        Input::Stdin => load(store, "stdin", std::io::stdin().lock(), extra_tag, platform)?,
        Input::File(path) => {
            let f = std::fs::File::open(path).map_err(|e| io_err("opening", path, e))?;
            load(store, &input.name(), f, extra_tag, platform)?
        }
    };
    if unpack {
        for img in &report.images {
            let entry = store
                .images()?
                .into_iter()
                .find(|e| e.manifest.digest == img.manifest_digest)
                .ok_or(ArchiveError::Vanished)?;
            super::import::unpack_image_layers(store, &entry)?;
        }
    }
    Ok(report)
}

pub fn load(
    store: &Store,
    source_name: &str,
    input: impl Read,
    extra_tag: Option<&ImageRef>,
    platform: &PlatformSpec,
) -> Result<LoadReport, ArchiveError> {
    let _use = store.use_lock()?;
    let mut added = Vec::new();
    let result = load_inner(store, source_name, input, extra_tag, platform, &mut added);
    if result.is_err() {
        for d in added {
            let _ = std::fs::remove_file(store.blob_path(&d));
        }
    }
    result
}

fn load_inner(
    store: &Store,
    source_name: &str,
    input: impl Read,
    extra_tag: Option<&ImageRef>,
    platform: &PlatformSpec,
    added: &mut Vec<Digest>,
) -> Result<LoadReport, ArchiveError> {
    let read_err = |reason: String| ArchiveError::Read {
        source_name: source_name.to_string(),
        reason,
    };
    let (decoded, _) = compression::decompress(input).map_err(|e| read_err(e.to_string()))?;
    let mut members: HashMap<String, Member> = HashMap::new();
    let mut archive = tar::Archive::new(decoded);
    for entry in archive
        .entries()
        .map_err(|e| read_err(format!("not a tar archive: {e}")))?
    {
        let mut entry = entry.map_err(|e| {
            if members.is_empty() {
                read_err(format!("not a tar archive ({e})"))
            } else {
                read_err(format!("{e} (truncated or corrupt?)"))
            }
        })?;

        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| read_err(e.to_string()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let size = entry.header().size().unwrap_or(0);
        let mut ingest = store.ingest_any()?;
        let mut small = (size <= SMALL).then(Vec::new);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| read_err(format!("{path}: {e} (truncated or corrupt?)")))?;
            if n == 0 {
                break;
            }
            ingest.write_bytes(&buf[..n])?;
            if let Some(s) = &mut small {
                s.extend_from_slice(&buf[..n]);
            }
        }
        // Remember what this load adds, to undo it on failure.
        let (digest, size, new) = ingest.commit_new()?;
        if new {
            added.push(digest.clone());
        }
        members.insert(
            path,
            Member {
                digest,
                size,
                small,
            },
        );
    }
    let json_of = |name: &str| -> Result<Option<Value>, ArchiveError> {
        match members.get(name).and_then(|m| m.small.as_ref()) {
            None => Ok(None),
            Some(b) => serde_json::from_slice(b)
                .map(Some)
                .map_err(|e| read_err(format!("{name}: {e}"))),
        }
    };
    let (format, images) = if let Some(m) = json_of("manifest.json")? {
        (
            "docker-archive",
            docker_archive(store, &members, &m, &read_err)?,
        )
    } else if let Some(index) = json_of("index.json")? {
        (
            "oci-archive",
            oci_archive(store, &members, &index, platform, &read_err)?,
        )
    } else {
        return Err(read_err("payload does not match any of the supported image formats (docker-archive: no manifest.json; oci-archive: no index.json)".into()));
    };
    // Blobs this load added that no image uses (manifest.json and the like) go again.
    let mut keep = std::collections::BTreeSet::new();
    for (desc, _) in &images {
        keep.insert(desc.digest.clone());
        if let Ok((Parsed::Image(m), _)) = manifest::parse(
            &store.read_blob(&desc.digest)?,
            Some(&desc.media_type),
            source_name,
        ) {
            keep.insert(m.config.digest.clone());
            keep.extend(m.layers.iter().map(|l| l.digest.clone()));
        }
    }
    let mut report = LoadReport {
        format: format.to_string(),
        images: Vec::new(),
    };
    for (desc, mut names) in images {
        if let Some(t) = extra_tag {
            names.push(t.to_string());
        }
        let id = match manifest::parse(
            &store.read_blob(&desc.digest)?,
            Some(&desc.media_type),
            source_name,
        ) {
            Ok((Parsed::Image(m), _)) => m.config.digest.clone(),
            _ => return Err(read_err(format!("manifest {} does not parse", desc.digest))),
        };
        let mut ann = BTreeMap::new();
        ann.insert(
            crate::store::SOURCE_ANNOTATION.to_string(),
            format!("load:{source_name}"),
        );
        if names.is_empty() {
            store.add_untagged(desc.clone(), ann.clone())?;
        }
        for n in &names {
            store.set_ref(n, desc.clone(), ann.clone())?;
        }
        report.images.push(LoadedImage {
            names,
            id,
            manifest_digest: desc.digest.clone(),
        });
    }
    added.retain(|d| !keep.contains(d));
    for d in added.drain(..) {
        let _ = std::fs::remove_file(store.blob_path(&d));
    }
    Ok(report)
}

/// podman's naming for loaded names: short or familiar names get `localhost/`.
fn loaded_name(raw: &str) -> Result<String, ArchiveError> {
    Ok(ImageRef::parse_local(raw)?.to_string())
}

fn member<'a>(
    members: &'a HashMap<String, Member>,
    path: &str,
    what: &str,
    read_err: &impl Fn(String) -> ArchiveError,
) -> Result<&'a Member, ArchiveError> {
    members.get(path.trim_start_matches("./")).ok_or_else(|| {
        read_err(format!(
            "{what} {path} is named in the manifest but missing from the archive"
        ))
    })
}

fn docker_archive(
    store: &Store,
    members: &HashMap<String, Member>,
    m: &Value,
    read_err: &impl Fn(String) -> ArchiveError,
) -> Result<Vec<(Descriptor, Vec<String>)>, ArchiveError> {
    let entries = m
        .as_array()
        .ok_or_else(|| read_err("manifest.json is not a list".into()))?;
    let mut out = Vec::new();
    for e in entries {
        let cfg_path = e["Config"]
            .as_str()
            .ok_or_else(|| read_err("manifest.json entry without Config".into()))?;
        let cfg = member(members, cfg_path, "config", read_err)?;
        let config: ImageConfig = serde_json::from_slice(cfg.small.as_deref().unwrap_or_default())
            .map_err(|err| read_err(format!("{cfg_path}: {err}")))?;
        let diff_ids = config.diff_ids();
        let layer_paths: Vec<&str> = e["Layers"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l.as_str()).collect())
            .unwrap_or_default();
        if layer_paths.len() != diff_ids.len() {
            return Err(read_err(format!(
                "{cfg_path}: {} diff_ids for {} layers",
                diff_ids.len(),
                layer_paths.len()
            )));
        }
        let mut layers = Vec::new();
        for (p, diff_id) in layer_paths.iter().zip(diff_ids) {
            let l = member(members, p, "layer", read_err)?;
            let head = std::fs::File::open(store.blob_path(&l.digest)).and_then(|mut f| {
                let mut h = [0u8; 8];
                let n = f.read(&mut h)?;
                Ok(h[..n].to_vec())
            });
            let kind = Compression::sniff(&head.unwrap_or_default()).unwrap_or(Compression::None);
            let media_type = match kind {
                Compression::None => {
                    // An uncompressed layer is its own diff_id: check it here.
                    if &l.digest != diff_id {
                        return Err(read_err(format!(
                            "layer {p}: content is {}, but the config says {diff_id}",
                            l.digest
                        )));
                    }
                    super::import::LAYER_TAR
                }
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Xz => {
                    return Err(read_err(format!(
                        "layer {p}: xz-compressed layers are not part of the image spec"
                    )));
                }
            };
            layers.push(
                json!({"mediaType": media_type, "digest": l.digest.to_string(), "size": l.size}),
            );
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cfg.digest.to_string(), "size": cfg.size},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).expect("serializable");
        let digest = Digest::sha256_of(&bytes);
        store.put_blob(&digest, &bytes)?;
        let names = e["RepoTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str())
                    .map(loaded_name)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        out.push((
            Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest,
                size: bytes.len() as u64,
                urls: None,
                annotations: None,
                platform: None,
            },
            names,
        ));
    }
    Ok(out)
}

fn oci_archive(
    store: &Store,
    members: &HashMap<String, Member>,
    index: &Value,
    platform: &PlatformSpec,
    read_err: &impl Fn(String) -> ArchiveError,
) -> Result<Vec<(Descriptor, Vec<String>)>, ArchiveError> {
    let descs: Vec<Descriptor> = serde_json::from_value(index["manifests"].clone())
        .map_err(|e| read_err(format!("index.json: {e}")))?;
    let blob = |d: &Digest| -> Result<(), ArchiveError> {
        let path = format!("blobs/{}/{}", d.algorithm().name(), d.hex());
        let m = member(members, &path, "blob", read_err)?;
        // Blobs are named by their digest: the name must be the content.
        if &m.digest != d {
            return Err(read_err(format!("{path}: content is {}", m.digest)));
        }
        Ok(())
    };
    let mut out = Vec::new();
    for d in descs {
        blob(&d.digest)?;
        let ann = d.annotations.clone().unwrap_or_default();
        let mut chosen = d.clone();
        let bytes = store.read_blob(&d.digest)?;
        let (parsed, _) = manifest::parse(&bytes, Some(&d.media_type), &d.digest.to_string())
            .map_err(|e| read_err(e.to_string()))?;
        let image = match parsed {
            Parsed::Image(m) => m,
            Parsed::Index(i) => {
                let pick = platform.select(&i.manifests).ok_or_else(|| {
                    read_err(format!("no image for {platform} in the archive's index"))
                })?;
                blob(&pick.digest)?;
                chosen = pick.clone();
                match manifest::parse(
                    &store.read_blob(&pick.digest)?,
                    Some(&pick.media_type),
                    &pick.digest.to_string(),
                )
                .map_err(|e| read_err(e.to_string()))?
                {
                    (Parsed::Image(m), _) => m,
                    _ => return Err(read_err("nested index".into())),
                }
            }
        };
        blob(&image.config.digest)?;
        for l in &image.layers {
            blob(&l.digest)?;
        }
        chosen.annotations = None;
        chosen.platform = None;
        let name = match (ann.get(CONTAINERD_NAME), ann.get(crate::store::REF_NAME)) {
            (Some(n), _) => Some(loaded_name(n)?),
            // A bare tag ("latest", as buildkit writes) is not a name: load untagged.
            (None, Some(r)) if r.contains('/') || r.contains(':') || r.contains('.') => {
                Some(loaded_name(r)?)
            }
            (None, Some(r)) => {
                tracing::warn!(
                    "ref.name {r:?} is only a tag; loading the image untagged (use --tag)"
                );
                None
            }
            (None, None) => None,
        };
        out.push((chosen, name.into_iter().collect()));
    }
    Ok(out)
}
