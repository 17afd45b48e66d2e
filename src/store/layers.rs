//! Unpacked layers: `layers/<diff_id hex>/`, one overlay lower directory per distinct layer,
//! shared by every image that has it. Extraction happens in `layers/tmp-<hex>-<pid>-<n>` and
//! becomes visible by rename; a directory without the `tmp-` prefix is always complete.

use super::{FileLock, ImageEntry, Store, StoreError};
use crate::oci::config::ImageConfig;
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, Descriptor, Parsed};
use std::collections::BTreeSet;
use std::path::PathBuf;

impl Store {
    pub fn layers_dir(&self) -> PathBuf {
        super::layout::layers_dir(self.root())
    }

    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(diff_id.hex())
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    pub fn lock_layer(&self, diff_id: &Digest) -> Result<FileLock, StoreError> {
        let p = self
            .root()
            .join("locks")
            .join(format!("layer-{}.lock", diff_id.hex()));
        FileLock::exclusive(&p).map_err(|e| self.io("lock", &p, e))
    }

    /// Held by the process extracting a layer for as long as it runs: its temporary
    /// directories are stale exactly when nobody holds it (pids can be reused or linger).
    pub fn lock_unpacking(&self, diff_id: &Digest) -> Result<FileLock, StoreError> {
        let p = self.unpacking_lock_path(diff_id.hex());
        FileLock::exclusive(&p).map_err(|e| self.io("lock", &p, e))
    }

    /// Imports do not know their diff_id in advance: they share one lock (shared mode), so
    /// their temporary directories are stale only when no import is running.
    pub fn lock_unpacking_anonymous(&self) -> Result<FileLock, StoreError> {
        let p = self.unpacking_lock_path("anon");
        FileLock::shared(&p).map_err(|e| self.io("lock", &p, e))
    }

    fn unpacking_lock_path(&self, hex: &str) -> PathBuf {
        self.root().join("locks").join(format!("unpack-{hex}.lock"))
    }

    pub fn layer_tmp(&self, diff_id: Option<&Digest>) -> PathBuf {
        let hex = diff_id.map(|d| d.hex()).unwrap_or("anon");
        self.layers_dir().join(format!(
            "tmp-{hex}-{}-{}",
            std::process::id(),
            super::unique()
        ))
    }
    /// An image's layers with their diff_ids, lowest first.
    pub fn image_layers(
        &self,
        entry: &ImageEntry,
    ) -> Result<Vec<(Descriptor, Digest)>, StoreError> {
        let bytes = self.read_blob(&entry.manifest.digest)?;
        let bad = |reason: String| StoreError::CorruptIndex {
            root: self.root().to_path_buf(),
            reason,
        };
        let Ok((Parsed::Image(m), _)) =
            manifest::parse(&bytes, Some(&entry.manifest.media_type), &entry.name)
        else {
            return Err(bad(format!("{}: manifest does not parse", entry.name)));
        };
        let config: ImageConfig = serde_json::from_slice(&self.read_blob(&m.config.digest)?)
            .map_err(|e| bad(format!("{}: config: {e}", entry.name)))?;
        let diff_ids = config.diff_ids();
        if diff_ids.len() != m.layers.len() {
            return Err(bad(format!(
                "{}: {} diff_ids for {} layers",
                entry.name,
                diff_ids.len(),
                m.layers.len()
            )));
        }
        Ok(m.layers.into_iter().zip(diff_ids.iter().cloned()).collect())
    }

    /// Layer directories no stored image uses, and temporary ones of dead processes.
    pub fn unused_layers(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut used = BTreeSet::new();
        for img in self.images()? {
            if let Ok(layers) = self.image_layers(&img) {
                used.extend(layers.into_iter().map(|(_, d)| d.hex().to_string()));
            }
        }
        let dir = self.layers_dir();
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(rest) = name.strip_prefix("tmp-") {
                let hex = rest.split('-').next().unwrap_or_default();
                let lock = self.unpacking_lock_path(hex);
                if FileLock::try_exclusive(&lock)
                    .map_err(|e| self.io("lock", &lock, e))?
                    .is_some()
                {
                    out.push(e.path());
                }
            } else if !used.contains(&name) {
                out.push(e.path());
            }
        }
        Ok(out)
    }

    /// Mount directories (`mounts/<id>-<session pid>`) whose `skiff unshare` session ended.
    pub fn stale_mounts(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(super::layout::mounts_dir(self.root())) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
                pid.is_none_or(|p| !crate::proc::process_alive(p))
            })
            .map(|e| e.path())
            .collect()
    }
}
