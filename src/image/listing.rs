//! What `skiff images`, `inspect` and `tag` show and do, from the store. The config is kept
//! as stored (raw JSON): listing never fails on a config field skiff does not model.

use super::ImageError;
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, ImageManifest, Parsed};
use crate::oci::reference::ImageRef;
use crate::store::{ImageEntry, REF_NAME, Store};
use std::collections::BTreeMap;

/// A stored image with its manifest and its config exactly as stored.
#[derive(Debug, Clone)]
pub struct RawImage {
    pub entry: ImageEntry,
    pub manifest: ImageManifest,
    pub config: serde_json::Value,
}

impl RawImage {
    pub fn load(store: &Store, entry: ImageEntry) -> Result<RawImage, ImageError> {
        let bytes = store.read_blob(&entry.manifest.digest)?;
        let (parsed, _) = manifest::parse(&bytes, Some(&entry.manifest.media_type), &entry.name)?;
        let Parsed::Image(m) = parsed else {
            return Err(ImageError::ListedIndex { name: entry.name });
        };
        let config = serde_json::from_slice(&store.read_blob(&m.config.digest)?)
            .map_err(ImageError::RawConfig)?;
        Ok(RawImage {
            entry,
            manifest: *m,
            config,
        })
    }

    /// The image ID: the config blob's digest.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// The config's `created`, as written there ("" when absent).
    pub fn created(&self) -> &str {
        self.config
            .get("created")
            .and_then(|c| c.as_str())
            .unwrap_or("")
    }

    /// The compressed layers' sizes.
    pub fn layers_size(&self) -> u64 {
        self.manifest.layers.iter().map(|d| d.size).sum()
    }
}

/// One line of `skiff images` (and one object of its JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageRow {
    pub name: String,
    pub repository: String,
    /// The tag, the digest's first 19 characters for a digest name, or `<none>`.
    pub tag: String,
    pub id: Digest,
    pub digest: Digest,
    pub created: String,
    /// Layers and config, as stored.
    pub size: u64,
}

/// Every named (and untagged) image in the store, in index order.
impl ImageRow {
    /// The image ID as `images` shows it: the first 12 hex digits.
    pub fn short_id(&self) -> &str {
        &self.id.hex()[..12]
    }

    /// The size as podman shows it: decimal units, one decimal place.
    pub fn human_size(&self) -> String {
        let units = ["B", "kB", "MB", "GB"];
        let mut v = self.size as f64;
        let mut i = 0;
        while v >= 1000.0 && i < units.len() - 1 {
            v /= 1000.0;
            i += 1;
        }
        match i {
            0 => format!("{} B", self.size),
            _ => format!("{v:.1} {}", units[i]),
        }
    }
}

pub fn list(store: &Store) -> Result<Vec<ImageRow>, ImageError> {
    let mut rows = Vec::new();
    for e in store.images()? {
        let img = RawImage::load(store, e)?;
        let (repository, tag) = split_name(&img.entry.name);
        rows.push(ImageRow {
            repository,
            tag,
            id: img.id().clone(),
            digest: img.entry.manifest.digest.clone(),
            created: img.created().to_string(),
            size: img.layers_size() + img.manifest.config.size,
            name: img.entry.name,
        });
    }
    Ok(rows)
}

fn split_name(name: &str) -> (String, String) {
    if let Some((n, d)) = name.split_once('@') {
        let (repo, _) = split_name(n);
        return (repo, d.chars().take(19).collect());
    }
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (name[..i].to_string(), name[i + 1..].to_string()),
        _ => (name.to_string(), "<none>".into()),
    }
}

/// What `skiff inspect` shows of one image.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub image: RawImage,
    /// Every name the image has.
    pub names: Vec<String>,
}

impl Inspected {
    /// podman's shape of `inspect`: the config's own fields as stored, and the origin.
    pub fn document(&self) -> serde_json::Value {
        let (e, cfg) = (&self.image.entry, &self.image.config);
        serde_json::json!({
            "Id": self.image.id().hex(),
            "Digest": e.manifest.digest.to_string(),
            "Names": self.names,
            "MediaType": e.manifest.media_type,
            "Source": e.annotation(crate::store::SOURCE_ANNOTATION),
            "Pulled": e.annotation(crate::store::PULLED_ANNOTATION),
            "IndexDigest": e.annotation("dev.skiff.image.index.digest"),
            "Created": cfg.get("created"),
            "Architecture": cfg.get("architecture"),
            "Os": cfg.get("os"),
            "Variant": cfg.get("variant"),
            "Config": cfg.get("config"),
            "RootFS": cfg.get("rootfs"),
            "Layers": self.image.manifest.layers,
            "Size": self.image.layers_size(),
        })
    }
}

/// Every image `input` means (an ID prefix may mean several).
pub fn inspect(store: &Store, input: &str) -> Result<Vec<Inspected>, ImageError> {
    let mut out = Vec::new();
    for e in store.lookup(input)?.entries {
        let image = RawImage::load(store, e)?;
        let names = store.names_of(std::slice::from_ref(&image.entry))?;
        out.push(Inspected { image, names });
    }
    Ok(out)
}

/// Adds names to the image `source` means; the new names carry its annotations.
pub fn tag(store: &Store, source: &str, targets: &[ImageRef]) -> Result<(), ImageError> {
    let src = store.lookup_one(source)?;
    for t in targets {
        let mut ann: BTreeMap<String, String> =
            src.manifest.annotations.clone().unwrap_or_default();
        ann.remove(REF_NAME);
        let mut desc = src.manifest.clone();
        desc.annotations = None;
        store.set_ref(&t.to_string(), desc, ann)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_repository_and_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        for (name, repo, tag) in [
            (
                "docker.io/library/busybox:1.36",
                "docker.io/library/busybox",
                "1.36",
            ),
            ("localhost:5000/x", "localhost:5000/x", "<none>"),
            (&format!("quay.io/a/b@{d}"), "quay.io/a/b", &d[..19]),
            ("", "", "<none>"),
        ] {
            assert_eq!(split_name(name), (repo.to_string(), tag.to_string()));
        }
    }

    #[test]
    fn sizes_and_ids_as_podman_shows_them() {
        let digest = Digest::sha256_of(b"config");
        let row = |size| ImageRow {
            name: String::new(),
            repository: String::new(),
            tag: String::new(),
            id: digest.clone(),
            digest: digest.clone(),
            created: String::new(),
            size,
        };
        for (size, shown) in [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1.0 kB"),
            (4_321_000, "4.3 MB"),
            (7_000_000_000_000, "7000.0 GB"),
        ] {
            assert_eq!(row(size).human_size(), shown);
        }
        assert_eq!(row(0).short_id(), &digest.hex()[..12]);
    }

    #[test]
    fn a_stored_image_lists_and_inspects() {
        let (_dir, store, entry) = super::super::tests::stored_image();
        let rows = list(&store).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].repository.as_str(), rows[0].tag.as_str()),
            ("localhost/one", "1")
        );
        let by_id = inspect(&store, &rows[0].id.hex()[..6]).unwrap();
        assert_eq!(by_id[0].names, ["localhost/one:1"]);
        assert_eq!(by_id[0].image.entry.manifest.digest, entry.manifest.digest);
        tag(
            &store,
            "localhost/one:1",
            &[ImageRef::parse_local("two").unwrap()],
        )
        .unwrap();
        assert_eq!(inspect(&store, "two").unwrap()[0].names.len(), 2);
    }
}
