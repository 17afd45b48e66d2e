//! Pulling an image into the store: names (short names, mirrors), manifest and platform,
//! config and layers (concurrent, locked per blob so each is downloaded once, teed into the
//! unpacker), then the ref. Pull policies decide whether the network is touched at all.

use super::{
    ImageError, PullEvent, PullObserver, ResolvedImage, StoredImage, check_layers, read_config,
};
use crate::auth::CredentialResolver;
use crate::error_chain;
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, Descriptor, MAX_CONFIG_SIZE, Parsed, PlatformSpec};
use crate::oci::reference::{ImageRef, is_short_name};
use crate::registry::mirrors::{PullSource, RegistriesConf};
use crate::registry::{BlobSink, Client, ClientOptions, RegistryError};
use crate::store::{ImageEntry, PULLED_ANNOTATION, REF_NAME, SOURCE_ANNOTATION, Store};
use crate::unpack::child::{LayerUnpacker, unpack_blob_file};
use serde::Serialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    Always,
    IfNotPresent,
    Never,
}

impl Policy {
    /// As GitLab Runner and its `pull_policy` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Always => "always",
            Policy::IfNotPresent => "if-not-present",
            Policy::Never => "never",
        }
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "always" => Ok(Policy::Always),
            "missing" | "if-not-present" => Ok(Policy::IfNotPresent),
            "never" => Ok(Policy::Never),
            o => Err(format!(
                "unknown pull policy {o:?} (expected always, missing/if-not-present, never)"
            )),
        }
    }
}

/// A comma-separated list is a fallback chain, as GitLab Runner's `pull_policy` list.
pub fn parse_policies(s: &str) -> Result<Vec<Policy>, String> {
    let list: Vec<Policy> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(Policy::from_str)
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err("empty pull policy".into());
    }
    Ok(list)
}

pub struct Puller {
    pub store: Store,
    pub credentials: CredentialResolver,
    pub registries: RegistriesConf,
    pub platform: PlatformSpec,
    pub client_options: ClientOptions,
    pub jobs: usize,
    pub observer: Arc<dyn PullObserver>,
    /// Unpack layers into `layers/<diff_id>` (skiff pull --no-unpack turns it off).
    pub unpack: bool,
    /// A stored image pulled with credentials is reused only if these credentials may read
    /// it from its registry (a CI job must not borrow another project's private image).
    pub verify_stored_access: bool,
}

/// Marks an image pulled with credentials.
pub const AUTHENTICATED_ANNOTATION: &str = "dev.skiff.image.authenticated";

#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The name the image is stored under.
    pub name: String,
    pub id: Digest,
    pub manifest_digest: Digest,
    /// The endpoint that served it, e.g. `http://127.0.0.1:5002` for a mirror.
    pub source: String,
    pub credentials_from: Option<String>,
    pub layers: Vec<LayerReport>,
    /// False when a policy let the stored image be used without any request.
    pub pulled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub digest: Digest,
    pub size: u64,
    pub downloaded: bool,
    pub diff_id: Option<Digest>,
    /// Unpacked by this command (false when it already was, or with --no-unpack).
    pub unpacked: bool,
}

impl Puller {
    /// The references an input may mean, in order (short names go through
    /// `unqualified-search-registries`; without any, Docker Hub as docker does).
    pub fn candidates(&self, input: &str) -> Result<Vec<ImageRef>, ImageError> {
        let search = &self.registries.unqualified_search_registries;
        if is_short_name(input) && !search.is_empty() {
            Ok(search
                .iter()
                .map(|r| ImageRef::parse(&format!("{r}/{input}")))
                .collect::<Result<_, _>>()?)
        } else {
            Ok(vec![ImageRef::parse(input)?])
        }
    }

    /// The stored image an input names, if any (short names also as `localhost/NAME`).
    pub fn find_local(&self, input: &str) -> Result<Option<(ImageRef, ImageEntry)>, ImageError> {
        let mut names = Vec::new();
        if is_short_name(input) {
            if let Ok(r) = ImageRef::parse_local(input) {
                names.push(r);
            }
        }
        names.extend(self.candidates(input)?);
        let images = self.store.images()?;
        for r in names {
            let wanted = r.to_string();
            if let Some(e) = images.iter().find(|e| e.name == wanted) {
                return Ok(Some((r, e.clone())));
            }
            if let Some(d) = &r.digest {
                if let Some(e) = images.iter().find(|e| {
                    &e.manifest.digest == d && e.name.starts_with(&format!("{}:", r.name()))
                }) {
                    return Ok(Some((r, e.clone())));
                }
            }
        }
        Ok(None)
    }

    /// What a policy that found the image in the store reports: nothing downloaded.
    fn local_report(image: &StoredImage) -> PullReport {
        PullReport {
            name: image.entry.name.clone(),
            id: image.id().clone(),
            manifest_digest: image.entry.manifest.digest.clone(),
            source: image
                .entry
                .annotation(SOURCE_ANNOTATION)
                .unwrap_or("local")
                .to_string(),
            credentials_from: None,
            layers: image
                .manifest
                .layers
                .iter()
                .map(|l| LayerReport {
                    digest: l.digest.clone(),
                    size: l.size,
                    downloaded: false,
                    diff_id: None,
                    unpacked: false,
                })
                .collect(),
            pulled: false,
        }
    }

    /// Applies the policy chain; each failing policy falls through to the next.
    pub async fn ensure(&self, input: &str, policies: &[Policy]) -> Result<PullReport, ImageError> {
        Ok(self.ensure_image(input, policies).await?.0)
    }

    /// `ensure`, then the image as a container needs it: for an image already in the store,
    /// its index entry, manifest and config are each read once (and never again here).
    pub async fn ensure_resolved(
        &self,
        input: &str,
        policies: &[Policy],
    ) -> Result<ResolvedImage, ImageError> {
        let (_, image) = self.ensure_image(input, policies).await?;
        Ok(image.into_resolved(&self.store))
    }

    async fn ensure_image(
        &self,
        input: &str,
        policies: &[Policy],
    ) -> Result<(PullReport, StoredImage), ImageError> {
        let mut last_err = None;
        for (attempt, policy) in policies.iter().enumerate() {
            if attempt > 0 {
                self.observer.event(&PullEvent::PolicyAttempt {
                    attempt: attempt + 1,
                    policy: *policy,
                });
            }
            let result = match policy {
                Policy::Never | Policy::IfNotPresent => match self.find_local(input)? {
                    Some((r, e)) => {
                        if self.verify_stored_access
                            && e.annotation(AUTHENTICATED_ANNOTATION).is_some()
                        {
                            self.check_access(&r).await?;
                        }
                        let image = StoredImage::load(&self.store, e, &r.to_string())?;
                        self.observer.event(&PullEvent::Local { policy: *policy });
                        let mut report = Self::local_report(&image);
                        self.ensure_unpacked(&image, &mut report).await?;
                        return Ok((report, image));
                    }
                    None if *policy == Policy::Never => Err(ImageError::NotPresent {
                        reference: input.to_string(),
                    }),
                    None => self.pull_image(input).await,
                },
                Policy::Always => self.pull_image(input).await,
            };
            match result {
                Ok(r) => return Ok(r),
                Err(e) => {
                    if policies.len() > 1 {
                        let reason = error_chain(&e);
                        self.observer.event(&PullEvent::PolicyFailed {
                            policy: *policy,
                            reason: &reason,
                        });
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one policy"))
    }

    /// Whether this pull's credentials may read `r` where it came from; an error when not.
    async fn check_access(&self, r: &ImageRef) -> Result<(), ImageError> {
        let cred = self.credentials.resolve(&r.name()).await?;
        let client =
            Client::connect(&r.registry, r.api_host(), cred, self.client_options.clone()).await?;
        match client
            .can_read_manifest(&r.repository, &r.manifest_reference())
            .await?
        {
            true => Ok(()),
            false => Err(ImageError::NotReadable {
                reference: r.to_string(),
                registry: r.registry.clone(),
            }),
        }
    }

    /// Pulls from the network: every candidate name, every endpoint (mirrors, then primary).
    pub async fn pull(&self, input: &str) -> Result<PullReport, ImageError> {
        Ok(self.pull_image(input).await?.0)
    }

    async fn pull_image(&self, input: &str) -> Result<(PullReport, StoredImage), ImageError> {
        let mut failures: Vec<(String, ImageError)> = Vec::new();
        for logical in &self.candidates(input)? {
            let sources = self
                .registries
                .pull_sources(logical, self.client_options.insecure)
                .map_err(ImageError::Blocked)?;
            for source in sources {
                let label = source.reference.to_string();
                match self.pull_from(logical, &source).await {
                    Ok(r) => return Ok(r),
                    // Local faults are not the endpoint's; trying a mirror would not help.
                    Err(e) if e.is_local() => return Err(e),
                    Err(e) => {
                        if source.mirror {
                            tracing::warn!(
                                "mirror {} failed for {logical}: {}",
                                source.reference.registry,
                                error_chain(&e)
                            );
                        } else {
                            tracing::debug!("pull of {label} failed: {}", error_chain(&e));
                        }
                        failures.push((label, e));
                    }
                }
            }
        }
        if failures.len() == 1 {
            // One place to try: keep its typed error.
            return Err(failures.pop().expect("one").1);
        }
        Err(ImageError::AllSourcesFailed {
            reference: input.to_string(),
            attempts: failures
                .into_iter()
                .map(|(l, e)| (l, error_chain(&e)))
                .collect(),
        })
    }

    async fn pull_from(
        &self,
        logical: &ImageRef,
        source: &PullSource,
    ) -> Result<(PullReport, StoredImage), ImageError> {
        let physical = &source.reference;
        self.observer.event(&PullEvent::Trying { source: physical });
        let cred = self.credentials.resolve(&physical.name()).await?;
        let authenticated = cred.is_some();
        if let Some((_, src)) = &cred {
            self.observer
                .event(&PullEvent::Authenticating { from: src });
            tracing::info!(
                "authenticating to {} with credentials from {src}",
                physical.registry
            );
        }
        let mut opts = self.client_options.clone();
        opts.insecure = source.insecure;
        let client = Client::connect(&physical.registry, physical.api_host(), cred, opts).await?;
        let repo = physical.repository.as_str();
        let label = physical.to_string();
        let (mut bytes, mut content_type) = client
            .get_manifest(repo, &physical.manifest_reference())
            .await?;
        let (mut parsed, mut media_type) =
            manifest::parse(&bytes, content_type.as_deref(), &label)?;
        let mut index_digest = None;
        if let Parsed::Index(index) = &parsed {
            let chosen = self.platform.select(&index.manifests).ok_or_else(|| {
                ImageError::from(RegistryError::NoPlatform {
                    reference: label.clone(),
                    wanted: self.platform.to_string(),
                    available: manifest::describe_platforms(&index.manifests),
                })
            })?;
            index_digest = Some(Digest::sha256_of(&bytes));
            let digest = chosen.digest.to_string();
            (bytes, content_type) = client.get_manifest(repo, &digest).await?;
            (parsed, media_type) = manifest::parse(
                &bytes,
                content_type.as_deref(),
                &format!("{label} ({digest})"),
            )?;
        }
        let Parsed::Image(image) = parsed else {
            return Err(RegistryError::BadManifest {
                reference: label,
                reason: "an index inside an index".into(),
            }
            .into());
        };
        let manifest_digest = Digest::sha256_of(&bytes);
        // Shared with other pulls, exclusive with gc; may wait for a running prune.
        let store = self.store.clone();
        let _use = tokio::task::spawn_blocking(move || store.use_lock()).await??;

        // Locked like the layers: concurrent pulls of one image fetch the config once.
        let config_digest = image.config.digest.clone();
        let config_lock = self.blocking(move |s| s.lock_blob(&config_digest)).await?;
        let config = if self.store.has_blob(&image.config.digest) {
            self.store.read_blob(&image.config.digest)?
        } else {
            let c = client
                .get_small_blob(repo, &image.config, MAX_CONFIG_SIZE)
                .await?;
            self.store.put_blob(&image.config.digest, &c)?;
            c
        };
        drop(config_lock);
        let config = read_config(&config, &label)?;
        check_layers(&config, &image.layers, &label)?;

        let layers = self
            .fetch_layers(&client, repo, &image.layers, config.diff_ids())
            .await?;
        self.store.put_blob(&manifest_digest, &bytes)?;

        let name = logical.to_string();
        let mut ann = BTreeMap::new();
        ann.insert(
            SOURCE_ANNOTATION.to_string(),
            format!("{}/{}", client.endpoint(), physical.repository),
        );
        ann.insert(PULLED_ANNOTATION.to_string(), crate::time::now_rfc3339());
        if authenticated {
            ann.insert(AUTHENTICATED_ANNOTATION.into(), "true".into());
        }
        if let Some(d) = &index_digest {
            ann.insert("dev.skiff.image.index.digest".into(), d.to_string());
        }
        let desc = Descriptor {
            media_type,
            digest: manifest_digest.clone(),
            size: bytes.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
        };
        // The entry as the index now holds it (`set_ref` adds the name).
        let mut entry = ImageEntry {
            name: name.clone(),
            manifest: desc.clone(),
        };
        let mut named = ann.clone();
        named.insert(REF_NAME.to_string(), name.clone());
        entry.manifest.annotations = Some(named);
        self.store.set_ref(&name, desc, ann)?;
        if physical.registry != logical.registry {
            self.observer.event(&PullEvent::FromMirror {
                name: &name,
                endpoint: &client.endpoint(),
            });
        }
        let report = PullReport {
            name: name.clone(),
            id: image.config.digest.clone(),
            manifest_digest,
            source: format!("{}/{}", client.endpoint(), physical.repository),
            credentials_from: client.credential_source().map(|s| s.to_string()),
            layers,
            pulled: true,
        };
        // What was just verified and stored: no need to read it back.
        let stored = StoredImage {
            entry,
            manifest: *image,
            config,
        };
        Ok((report, stored))
    }

    async fn fetch_layers(
        &self,
        client: &Client,
        repo: &str,
        layers: &[Descriptor],
        diff_ids: &[Digest],
    ) -> Result<Vec<LayerReport>, ImageError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<(&Descriptor, &Digest)> = layers
            .iter()
            .zip(diff_ids)
            .filter(|(l, _)| seen.insert(l.digest.clone()))
            .collect();
        stream::iter(unique)
            .map(|(layer, diff_id)| self.fetch_layer(client, repo, layer, diff_id))
            .buffered(self.jobs.max(1))
            .try_collect()
            .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ImageError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(store)).await??)
    }

    /// Takes the layer's lock if it still needs unpacking; `None` when there is nothing to do.
    async fn claim_layer(
        &self,
        diff_id: &Digest,
    ) -> Result<Option<crate::store::FileLock>, ImageError> {
        if !self.unpack || self.store.has_layer(diff_id) {
            return Ok(None);
        }
        let d = diff_id.clone();
        let lock = self.blocking(move |s| s.lock_layer(&d)).await?;
        // Another process may have finished it while we waited.
        Ok((!self.store.has_layer(diff_id)).then_some(lock))
    }

    async fn fetch_layer(
        &self,
        client: &Client,
        repo: &str,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<LayerReport, ImageError> {
        let digest = layer.digest.clone();
        // Another process may be downloading the same blob: wait for it, then reuse it.
        let _lock = self.blocking(move |s| s.lock_blob(&digest)).await?;
        let layer_lock = self.claim_layer(diff_id).await?;
        let mut report = LayerReport {
            digest: layer.digest.clone(),
            size: layer.size,
            downloaded: false,
            diff_id: Some(diff_id.clone()),
            unpacked: false,
        };
        if self.store.has_blob(&layer.digest) {
            self.observer.event(&PullEvent::LayerExists {
                digest: &layer.digest,
            });
            if layer_lock.is_some() {
                self.unpack_stored(layer, diff_id).await?;
                report.unpacked = true;
            }
            return Ok(report);
        }
        let ingest = self.store.ingest(layer.digest.clone(), layer.size)?;
        let unpacker = match &layer_lock {
            Some(_) => Some(LayerUnpacker::spawn(self.store.root(), diff_id)?),
            None => None,
        };
        let mut sink = TeeSink {
            ingest,
            unpacker,
            restarted: false,
        };
        self.observer.event(&PullEvent::LayerStarted {
            digest: &layer.digest,
            size: layer.size,
        });
        let progress = |n: u64| self.observer.progress(&layer.digest, n);
        let fetched = client.fetch_blob(repo, layer, &mut sink, &progress).await;
        let TeeSink {
            ingest,
            unpacker,
            restarted,
        } = sink;
        let committed = match fetched {
            Ok(()) => tokio::task::spawn_blocking(move || ingest.commit())
                .await
                .map_err(ImageError::from)
                .and_then(|r| r.map_err(ImageError::from)),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = committed {
            if let Some(u) = unpacker {
                u.abort().await;
            }
            return Err(e);
        }
        report.downloaded = true;
        match (unpacker, restarted) {
            (Some(u), false) => {
                u.finish().await?;
                report.unpacked = true;
            }
            (Some(u), true) => {
                // The teed stream restarted mid-way: unpack from the verified blob instead.
                u.abort().await;
                self.unpack_stored(layer, diff_id).await?;
                report.unpacked = true;
            }
            (None, _) => {}
        }
        self.observer.event(&PullEvent::LayerDone {
            digest: &layer.digest,
        });
        Ok(report)
    }

    /// Unpacks a layer from its verified blob in the store.
    async fn unpack_stored(&self, layer: &Descriptor, diff_id: &Digest) -> Result<(), ImageError> {
        unpack_blob_file(
            self.store.root(),
            diff_id,
            &self.store.blob_path(&layer.digest),
        )
        .await?;
        Ok(())
    }

    /// Unpacks whatever layers of a stored image are not unpacked yet (pulled with
    /// --no-unpack, or found by a pull policy without any download).
    async fn ensure_unpacked(
        &self,
        image: &StoredImage,
        report: &mut PullReport,
    ) -> Result<(), ImageError> {
        if !self.unpack {
            return Ok(());
        }
        for (i, (desc, diff_id)) in image.layers().enumerate() {
            if let Some(r) = report.layers.get_mut(i) {
                r.diff_id = Some(diff_id.clone());
            }
            if self.claim_layer(diff_id).await?.is_some() {
                self.unpack_stored(desc, diff_id).await?;
                if let Some(r) = report.layers.get_mut(i) {
                    r.unpacked = true;
                }
            }
        }
        Ok(())
    }
}

/// The download's sink: the store's ingest file, and the unpacker's stdin when teeing.
struct TeeSink {
    ingest: crate::store::Ingest,
    unpacker: Option<LayerUnpacker>,
    restarted: bool,
}

impl BlobSink for TeeSink {
    fn written(&self) -> u64 {
        self.ingest.written()
    }
    async fn write(&mut self, bytes: &[u8]) -> Result<(), RegistryError> {
        self.ingest.write_bytes(bytes)?;
        if !self.restarted {
            if let Some(u) = &mut self.unpacker {
                u.write(bytes).await;
            }
        }
        Ok(())
    }
    async fn reset(&mut self) -> Result<(), RegistryError> {
        self.ingest.restart()?;
        self.restarted = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stored_image_resolves_without_the_network() {
        let (_dir, store, entry) = super::super::tests::stored_image();
        let puller = Puller {
            store: store.clone(),
            credentials: CredentialResolver::default(),
            registries: RegistriesConf::default(),
            platform: PlatformSpec::host(),
            client_options: ClientOptions::default(),
            jobs: 1,
            observer: Arc::new(super::super::Quiet),
            unpack: false,
            verify_stored_access: false,
        };
        let image = puller
            .ensure_resolved("localhost/one:1", &[Policy::Never])
            .await
            .unwrap();
        assert_eq!(image.name, entry.name);
        assert_eq!(image.lowers.len(), 1);
        let e = puller
            .ensure_resolved("localhost/two:1", &[Policy::Never])
            .await
            .unwrap_err();
        assert!(matches!(e, ImageError::NotPresent { .. }), "{e}");
    }

    #[test]
    fn policy_lists() {
        assert_eq!(parse_policies("always").unwrap(), [Policy::Always]);
        assert_eq!(parse_policies("missing").unwrap(), [Policy::IfNotPresent]);
        assert_eq!(
            parse_policies("always,if-not-present").unwrap(),
            [Policy::Always, Policy::IfNotPresent]
        );
        assert!(parse_policies("sometimes").is_err());
        assert!(parse_policies("").is_err());
    }
}
