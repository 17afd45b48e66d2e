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

pub struct Pusher {
    pub store: Store,
    pub credentials: CredentialResolver,
    pub registries: RegistriesConf,
    pub client_options: ClientOptions,
    /// Upload blobs larger than this in chunks (PATCH); `None` uploads in one PUT.
    pub chunk_size: Option<u64>,
    pub quiet: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub destination: String,
    pub manifest_digest: Digest,
    pub blobs: Vec<(Digest, &'static str)>,
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
            return Err(RegistryError::Other(format!(
                "{}: the stored manifest does not parse",
                entry.name
            )));
        };
        let cred = self.credentials.resolve(&dest.name()).await?;
        if let (Some((_, src)), false) = (&cred, self.quiet) {
            eprintln!("Authenticating with credentials from {src}");
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
            let short = &desc.digest.hex()[..12];
            let how = if client.blob_exists(repo, &desc.digest).await? {
                "exists"
            } else {
                let session = match &from {
                    Some(f) => match client.mount_blob(repo, &desc.digest, f).await? {
                        None => {
                            blobs.push((desc.digest.clone(), "mounted"));
                            self.say(&format!("Copying blob {short} mounted from {f}"));
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
            self.say(&format!("Copying blob {short} {how}"));
            blobs.push((desc.digest.clone(), how));
        }
        let reference = dest.tag.clone().unwrap_or_else(|| "latest".into());
        let digest = Digest::sha256_of(&bytes);
        if let Some(theirs) = client
            .put_manifest(repo, &reference, &media_type, &bytes)
            .await?
        {
            if theirs != digest.to_string() {
                return Err(RegistryError::Other(format!(
                    "{dest}: registry stored manifest {theirs}, expected {digest}"
                )));
            }
        }
        self.say(&format!("Writing manifest {dest}"));
        Ok(PushReport {
            destination: dest.to_string(),
            manifest_digest: digest,
            blobs,
        })
    }

    fn say(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}
