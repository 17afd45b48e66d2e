//! One user's word for an image -> the stored entries it means: a name (as given, or
//! normalized), a prefix of the image ID (3 characters at least), or a manifest digest.

use super::{ImageEntry, Store, StoreError};
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, Parsed};
use crate::oci::reference::ImageRef;

/// What an input matched.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub entries: Vec<ImageEntry>,
    /// The input was a name (one entry), not an ID or digest (maybe several entries).
    pub by_name: bool,
}

impl Store {
    /// The image ID (config digest) of an entry, when its manifest and config are readable.
    fn image_id(&self, entry: &ImageEntry) -> Option<Digest> {
        let bytes = self.read_blob(&entry.manifest.digest).ok()?;
        let (parsed, _) =
            manifest::parse(&bytes, Some(&entry.manifest.media_type), &entry.name).ok()?;
        let Parsed::Image(m) = parsed else {
            return None;
        };
        // An unreadable config makes the image unaddressable by ID, as it always was.
        serde_json::from_slice::<serde_json::Value>(&self.read_blob(&m.config.digest).ok()?)
            .ok()?;
        Some(m.config.digest)
    }

    /// Every entry `input` means; an unknown input is an error.
    pub fn lookup(&self, input: &str) -> Result<Lookup, StoreError> {
        let images = self.images()?;
        let mut names = vec![input.to_string()];
        for r in [ImageRef::parse_local(input), ImageRef::parse(input)]
            .into_iter()
            .flatten()
        {
            names.push(r.to_string());
        }
        if let Some(e) = images.iter().find(|e| names.contains(&e.name)) {
            return Ok(Lookup {
                entries: vec![e.clone()],
                by_name: true,
            });
        }
        let hex = input.trim_start_matches("sha256:");
        if hex.len() >= 3 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<ImageEntry> = images
                .into_iter()
                .filter(|e| {
                    e.manifest.digest.hex().starts_with(hex)
                        || self.image_id(e).is_some_and(|id| id.hex().starts_with(hex))
                })
                .collect();
            if !hits.is_empty() {
                return Ok(Lookup {
                    entries: hits,
                    by_name: false,
                });
            }
        }
        Err(StoreError::UnknownImage(input.to_string()))
    }

    /// Exactly one entry for `input`.
    pub fn lookup_one(&self, input: &str) -> Result<ImageEntry, StoreError> {
        let mut hits = self.lookup(input)?.entries;
        if hits.len() > 1 {
            return Err(StoreError::Ambiguous(input.to_string()));
        }
        Ok(hits.remove(0))
    }

    /// Every name of the images among `entries` (several names may share one manifest).
    pub fn names_of(&self, entries: &[ImageEntry]) -> Result<Vec<String>, StoreError> {
        Ok(self
            .images()?
            .into_iter()
            .filter(|o| {
                entries
                    .iter()
                    .any(|h| h.manifest.digest == o.manifest.digest)
            })
            .map(|o| o.name)
            .collect())
    }
}
