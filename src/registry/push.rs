//! Pushing a stored image: each blob is checked with HEAD first, mounted from the repository
//! it came from when that is on the same registry, else uploaded (monolithic, or in chunks),
//! then the manifest; the registry's digest must be ours.

use super::RegistryError;
use super::client::{Client, ClientOptions};
use super::mirrors::RegistriesConf;
use crate::auth::CredentialResolver;
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, Parsed};
use crate::oci::reference::ImageRef;
use crate::store::{ImageEntry, SOURCE_ANNOTATION, Store};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// What a push reports as it goes. `Display` gives the line skiff prints for it.
#[derive(Debug, Clone, Copy)]
pub enum PushEvent<'a> {
    Authenticating {
        from: &'a crate::auth::Source,
    },
    /// Mounted from another repository of the same registry: no upload.
    BlobMounted {
        digest: &'a Digest,
        from: &'a str,
    },
    /// `how`: exists, uploaded or chunked.
    Blob {
        digest: &'a Digest,
        how: &'static str,
    },
    ManifestWritten {
        destination: &'a ImageRef,
    },
}

impl fmt::Display for PushEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushEvent::Authenticating { from } => {
                write!(f, "Authenticating with credentials from {from}")
            }
            PushEvent::BlobMounted { digest, from } => {
                write!(
                    f,
                    "Copying blob {} mounted from {from}",
                    &digest.hex()[..12]
                )
            }
            PushEvent::Blob { digest, how } => {
                write!(f, "Copying blob {} {how}", &digest.hex()[..12])
            }
            PushEvent::ManifestWritten { destination } => {
                write!(f, "Writing manifest {destination}")
            }
        }
    }
}

/// Receives a push's progress (the CLI prints it, `-q` ignores it).
pub trait PushObserver: Send + Sync {
    fn event(&self, event: &PushEvent<'_>);
}

pub struct Pusher {
    pub store: Store,
    pub credentials: CredentialResolver,
    pub registries: RegistriesConf,
    pub client_options: ClientOptions,
    /// Upload blobs larger than this in chunks (PATCH); `None` uploads in one PUT.
    pub chunk_size: Option<u64>,
    pub observer: Arc<dyn PushObserver>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub destination: String,
    pub manifest_digest: Digest,
    pub blobs: Vec<(Digest, &'static str)>,
}

/// Where `skiff push IMAGE [DESTINATION]` goes: the destination, else the stored image's own
/// name (`image` as the user gave it, for the error); always a tag, never a digest.
pub fn destination(
    image: &str,
    entry: &ImageEntry,
    given: Option<&str>,
) -> Result<ImageRef, RegistryError> {
    let dest = match (given, entry.name.as_str()) {
        (Some(d), _) | (None, d) if !d.is_empty() => ImageRef::parse(d)?,
        _ => {
            return Err(RegistryError::NoDestination {
                image: image.to_string(),
            });
        }
    };
    match dest.digest {
        Some(_) => Err(RegistryError::PushToDigest {
            dest: dest.to_string(),
        }),
        None => Ok(dest),
    }
}

impl Pusher {
    pub async fn push(
        &self,
        entry: &ImageEntry,
        dest: &ImageRef,
    ) -> Result<PushReport, RegistryError> {
        let bytes = self.store.read_blob(&entry.manifest.digest)?;
        let Ok((Parsed::Image(m), media_type)) =
            manifest::parse(&bytes, Some(&entry.manifest.media_type), &entry.name)
        else {
            return Err(RegistryError::StoredManifest {
                name: entry.name.clone(),
            });
        };
        let cred = self.credentials.resolve(&dest.name()).await?;
        if let Some((_, src)) = &cred {
            self.observer
                .event(&PushEvent::Authenticating { from: src });
        }
        let mut opts = self.client_options.clone();
        opts.insecure |= self.registries.is_insecure(&dest.registry);
        let client = Client::connect(&dest.registry, dest.api_host(), cred, opts).await?;
        let repo = &dest.repository;
        // Mount source: the repository this image was pulled from, if on the same registry.
        let from = entry.annotation(SOURCE_ANNOTATION).and_then(|s| {
            let rest = s.strip_prefix(&format!("{}/", client.endpoint()))?;
            (rest != repo.as_str()).then(|| rest.to_string())
        });
        let mut blobs = Vec::new();
        for desc in m.layers.iter().chain(std::iter::once(&m.config)) {
            let how = if client.blob_exists(repo, &desc.digest).await? {
                "exists"
            } else {
                let session = match &from {
                    Some(f) => match client.mount_blob(repo, &desc.digest, f).await? {
                        None => {
                            blobs.push((desc.digest.clone(), "mounted"));
                            self.observer.event(&PushEvent::BlobMounted {
                                digest: &desc.digest,
                                from: f,
                            });
                            continue;
                        }
                        Some(loc) => loc,
                    },
                    None => client.start_upload(repo).await?,
                };
                client
                    .upload_blob(
                        repo,
                        session,
                        &desc.digest,
                        &self.store.blob_path(&desc.digest),
                        self.chunk_size,
                    )
                    .await?;
                if self.chunk_size.is_some_and(|c| c < desc.size) {
                    "chunked"
                } else {
                    "uploaded"
                }
            };
            self.observer.event(&PushEvent::Blob {
                digest: &desc.digest,
                how,
            });
            blobs.push((desc.digest.clone(), how));
        }
        let reference = dest.tag.clone().unwrap_or_else(|| "latest".into());
        let digest = Digest::sha256_of(&bytes);
        if let Some(theirs) = client
            .put_manifest(repo, &reference, &media_type, &bytes)
            .await?
        {
            if theirs != digest.to_string() {
                return Err(RegistryError::PushedDigest {
                    destination: dest.to_string(),
                    theirs,
                    ours: digest,
                });
            }
        }
        self.observer
            .event(&PushEvent::ManifestWritten { destination: dest });
        Ok(PushReport {
            destination: dest.to_string(),
            manifest_digest: digest,
            blobs,
        })
    }
}
