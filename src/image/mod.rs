//! The image service: what the runtime and jobs ask of images. An image is resolved once
//! (manifest, config and layers read from the store a single time) and handed on typed.
//! Pulls report their progress to a `PullObserver`; drawing it is the caller's business.

pub mod listing;
pub mod prune;
pub mod pull;
pub mod settings;

use crate::oci::config::ImageConfig;
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, Descriptor, ImageManifest, Parsed};
use crate::oci::reference::ImageRef;
use crate::store::{ImageEntry, Store, StoreError};
use std::fmt;
use std::path::PathBuf;

pub use pull::{Policy, PullReport, Puller, parse_policies};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Boxed: the registry's errors are large, and most results here are not errors.
    #[error(transparent)]
    Registry(Box<crate::registry::RegistryError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Unpack(#[from] crate::unpack::UnpackError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Reference(#[from] crate::oci::reference::ReferenceError),
    #[error(transparent)]
    RegistriesConf(#[from] crate::registry::mirrors::ConfigError),
    /// A registry that registries.conf blocks.
    #[error("{0}")]
    Blocked(String),
    #[error("{reference}: invalid manifest: {reason}")]
    BadConfig { reference: String, reason: String },
    #[error("{reference}: invalid manifest: config is not JSON")]
    ConfigJson {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{name}: stored name points at an index")]
    StoredIndex { name: String },
    /// As `StoredIndex`, worded as `skiff images` and `inspect` always have.
    #[error("{name}: the stored name points at an index")]
    ListedIndex { name: String },
    /// A config blob that is not JSON, as serde reports it.
    #[error(transparent)]
    RawConfig(serde_json::Error),
    #[error("image {input} has several names ({}); remove them by name or use --force", names.join(", "))]
    SeveralNames { input: String, names: Vec<String> },
    #[error("{reference}: {}", format_attempts(.attempts))]
    AllSourcesFailed {
        reference: String,
        /// (source, its error with every cause).
        attempts: Vec<(String, String)>,
    },
    #[error("{reference}: image is not in the store and the pull policy is \"never\"")]
    NotPresent { reference: String },
    /// A stored image that was pulled with credentials, which this pull's credentials may
    /// not read from its registry.
    #[error(
        "{reference}: the stored image came from a registry that requires credentials, and {registry} refuses this job's"
    )]
    NotReadable { reference: String, registry: String },
    /// A blocking part of the pull (locks, commits) panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

impl From<crate::registry::RegistryError> for ImageError {
    fn from(e: crate::registry::RegistryError) -> Self {
        ImageError::Registry(Box::new(e))
    }
}

impl ImageError {
    /// Faults of this host (store, credentials): another endpoint would not help.
    fn is_local(&self) -> bool {
        use crate::registry::RegistryError as R;
        match self {
            ImageError::Store(_) | ImageError::Auth(_) => true,
            ImageError::Registry(e) => matches!(**e, R::Store(_) | R::Auth(_)),
            _ => false,
        }
    }
}

fn format_attempts(attempts: &[(String, String)]) -> String {
    match attempts {
        [] => "no source to pull from".into(),
        [(_, e)] => e.clone(),
        many => {
            let (primary, mirrors) = many.split_last().expect("non-empty");
            let list: Vec<String> = mirrors.iter().map(|(s, e)| format!("[{s}: {e}]")).collect();
            format!("{} (mirrors also failed: {})", primary.1, list.join(" "))
        }
    }
}

/// An image in the store, ready to run: everything a container needs of it, read once.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The name it is stored under (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The image ID: the config blob's digest.
    pub id: Digest,
    pub config: ImageConfig,
    /// The unpacked layer directories, top-most first (overlay's `lowerdir` order).
    pub lowers: Vec<PathBuf>,
}

/// A stored image with its manifest and config in memory. Everything about an image that a
/// pull policy or a run needs comes from here, so each blob is read once per command.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub entry: ImageEntry,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

impl StoredImage {
    /// Reads the manifest and the config blob of `entry` (once each), checking that the
    /// config names a diff_id for every layer. `reference` names the image in errors.
    pub fn load(store: &Store, entry: ImageEntry, reference: &str) -> Result<Self, ImageError> {
        let bytes = store.read_blob(&entry.manifest.digest)?;
        let (parsed, _) = manifest::parse(&bytes, Some(&entry.manifest.media_type), reference)?;
        let Parsed::Image(manifest) = parsed else {
            return Err(ImageError::StoredIndex { name: entry.name });
        };
        let config = read_config(&store.read_blob(&manifest.config.digest)?, reference)?;
        check_layers(&config, &manifest.layers, reference)?;
        Ok(StoredImage {
            entry,
            manifest: *manifest,
            config,
        })
    }

    /// The image ID: the config blob's digest.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// Each layer with its diff_id, lowest first.
    pub fn layers(&self) -> impl Iterator<Item = (&Descriptor, &Digest)> {
        self.manifest.layers.iter().zip(self.config.diff_ids())
    }

    /// What a container needs; the layer directories are where `store` unpacks them.
    pub fn into_resolved(self, store: &Store) -> ResolvedImage {
        let lowers = self
            .config
            .diff_ids()
            .iter()
            .rev()
            .map(|d| store.layer_path(d))
            .collect();
        ResolvedImage {
            name: self.entry.name,
            id: self.manifest.config.digest,
            config: self.config,
            lowers,
        }
    }
}

/// Parses a config blob; its diff_ids are checked against the layers by `check_layers`.
fn read_config(bytes: &[u8], reference: &str) -> Result<ImageConfig, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::ConfigJson {
        reference: reference.to_string(),
        source,
    })
}

/// The config must list one diff_id per layer.
fn check_layers(
    config: &ImageConfig,
    layers: &[Descriptor],
    reference: &str,
) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::BadConfig {
        reference: reference.to_string(),
        reason,
    };
    if config.rootfs.is_none() {
        return Err(bad("config has no rootfs.diff_ids".into()));
    }
    let diff_ids = config.diff_ids();
    if diff_ids.len() != layers.len() {
        return Err(bad(format!(
            "config lists {} diff_ids for {} layers",
            diff_ids.len(),
            layers.len()
        )));
    }
    Ok(())
}

/// What a pull reports as it goes. `Display` gives the line skiff prints for it.
#[derive(Debug, Clone, Copy)]
pub enum PullEvent<'a> {
    /// An endpoint (a mirror, or the registry itself) is being tried.
    Trying {
        source: &'a ImageRef,
    },
    Authenticating {
        from: &'a crate::auth::Source,
    },
    /// The layer's blob is in the store already: no download.
    LayerExists {
        digest: &'a Digest,
    },
    LayerStarted {
        digest: &'a Digest,
        size: u64,
    },
    LayerDone {
        digest: &'a Digest,
    },
    /// The image came from a mirror, not from the registry its name is on.
    FromMirror {
        name: &'a str,
        endpoint: &'a str,
    },
    /// A pull policy of a chain failed; the next is tried.
    PolicyFailed {
        policy: pull::Policy,
        reason: &'a str,
    },
    /// The next policy of a chain (the first is attempt 1).
    PolicyAttempt {
        attempt: usize,
        policy: pull::Policy,
    },
    /// The stored image is used, as the policy allows.
    Local {
        policy: pull::Policy,
    },
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

impl fmt::Display for PullEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PullEvent::Trying { source } => write!(f, "Trying to pull {source}..."),
            PullEvent::Authenticating { from } => {
                write!(f, "Authenticating with credentials from {from}")
            }
            PullEvent::LayerExists { digest } => {
                write!(f, "Copying blob {} skipped: already exists", short(digest))
            }
            PullEvent::LayerStarted { digest, size } => {
                write!(f, "Copying blob {} ({size} bytes)", short(digest))
            }
            PullEvent::LayerDone { digest } => write!(f, "Copying blob {} done", short(digest)),
            // GitLab Runner's words (executors/docker/internal/pull/manager.go).
            PullEvent::PolicyFailed { policy, reason } => write!(
                f,
                "WARNING: Failed to pull image with policy \"{}\": {reason}",
                policy.name()
            ),
            PullEvent::PolicyAttempt { attempt, policy } => write!(
                f,
                "Attempt #{attempt}: Trying \"{}\" pull policy",
                policy.name()
            ),
            PullEvent::Local { policy } => write!(
                f,
                "Using locally found image version due to \"{}\" pull policy",
                policy.name()
            ),
            PullEvent::FromMirror { name, endpoint } => {
                write!(f, "Pulled {name} from mirror {endpoint}")
            }
        }
    }
}

/// Receives a pull's progress: the CLI draws bars or prints lines, a job writes its log,
/// quiet mode ignores it. Called from concurrent layer downloads.
pub trait PullObserver: Send + Sync {
    fn event(&self, event: &PullEvent<'_>);
    /// `bytes` more of a layer arrived (often; for progress bars).
    fn progress(&self, _layer: &Digest, _bytes: u64) {}
}

/// Reports nothing.
pub struct Quiet;

impl PullObserver for Quiet {
    fn event(&self, _: &PullEvent<'_>) {}
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A stored image with one layer, named `localhost/one:1`: (store dir, store, entry).
    pub(crate) fn stored_image() -> (tempfile::TempDir, Store, ImageEntry) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = b"not really a tar";
        let layer_d = Digest::sha256_of(layer);
        let diff_id = Digest::sha256_of(b"uncompressed");
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let config_d = Digest::sha256_of(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_d}","size":{}}}]}}"#,
            manifest::OCI_MANIFEST,
            config.len(),
            layer.len()
        );
        let manifest_d = Digest::sha256_of(manifest.as_bytes());
        store.put_blob(&layer_d, layer).unwrap();
        store.put_blob(&config_d, config.as_bytes()).unwrap();
        store.put_blob(&manifest_d, manifest.as_bytes()).unwrap();
        let desc = Descriptor {
            media_type: manifest::OCI_MANIFEST.into(),
            digest: manifest_d,
            size: manifest.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
        };
        store
            .set_ref("localhost/one:1", desc, BTreeMap::new())
            .unwrap();
        let entry = store.find("localhost/one:1").unwrap().unwrap();
        (dir, store, entry)
    }

    #[test]
    fn an_image_is_resolved_from_one_read_of_each_blob() {
        let (_dir, store, entry) = stored_image();
        let manifest_d = entry.manifest.digest.clone();
        let image = StoredImage::load(&store, entry, "one").unwrap();
        // Everything after `load` works from memory: with the blobs gone, it still resolves.
        std::fs::remove_file(store.blob_path(&manifest_d)).unwrap();
        std::fs::remove_file(store.blob_path(image.id())).unwrap();
        assert_eq!(image.layers().count(), 1);
        let diff_id = image.config.diff_ids()[0].clone();
        let resolved = image.into_resolved(&store);
        assert_eq!(resolved.name, "localhost/one:1");
        assert_eq!(resolved.lowers, [store.layer_path(&diff_id)]);
        assert_eq!(
            resolved.config.container().cmd.as_deref(),
            Some(&["sh".to_string()][..])
        );
    }

    #[test]
    fn events_print_as_before() {
        let d = Digest::sha256_of(b"x");
        let s = short(&d).to_string();
        assert_eq!(
            PullEvent::LayerExists { digest: &d }.to_string(),
            format!("Copying blob {s} skipped: already exists")
        );
        assert_eq!(
            PullEvent::LayerStarted {
                digest: &d,
                size: 7
            }
            .to_string(),
            format!("Copying blob {s} (7 bytes)")
        );
    }
}
