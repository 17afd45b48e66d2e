//! Pulling an image into the store: names (short names, mirrors), manifest and platform,
//! config and layers (concurrent, locked per blob so each is downloaded once), then the ref.
//! Pull policies decide whether the network is touched at all.

use super::RegistryError;
use super::client::{Client, ClientOptions};
use super::mirrors::{PullSource, RegistriesConf};
use crate::auth::CredentialResolver;
use crate::oci::digest::Digest;
use crate::oci::manifest::{self, Descriptor, MAX_CONFIG_SIZE, Parsed, PlatformSpec};
use crate::oci::reference::{ImageRef, is_short_name};
use crate::store::{ImageEntry, PULLED_ANNOTATION, SOURCE_ANNOTATION, Store};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Bars,
    Lines,
    Quiet,
}

pub struct Puller {
    pub store: Store,
    pub credentials: CredentialResolver,
    pub registries: RegistriesConf,
    pub platform: PlatformSpec,
    pub client_options: ClientOptions,
    pub jobs: usize,
    pub progress: ProgressMode,
    /// Unpack layers into `layers/<diff_id>` (skiff pull --no-unpack turns it off).
    pub unpack: bool,
}

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
    fn say(&self, msg: &str) {
        if self.progress != ProgressMode::Quiet {
            eprintln!("{msg}");
        }
    }

    /// The references an input may mean, in order (short names go through
    /// `unqualified-search-registries`; without any, Docker Hub as docker does).
    pub fn candidates(&self, input: &str) -> Result<Vec<ImageRef>, RegistryError> {
        let search = &self.registries.unqualified_search_registries;
        if is_short_name(input) && !search.is_empty() {
            search
                .iter()
                .map(|r| {
                    ImageRef::parse(&format!("{r}/{input}"))
                        .map_err(|e| RegistryError::Other(e.to_string()))
                })
                .collect()
        } else {
            Ok(vec![
                ImageRef::parse(input).map_err(|e| RegistryError::Other(e.to_string()))?,
            ])
        }
    }

    /// The stored image an input names, if any (short names also as `localhost/NAME`).
    pub fn find_local(&self, input: &str) -> Result<Option<(ImageRef, ImageEntry)>, RegistryError> {
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

    fn local_report(&self, r: &ImageRef, e: &ImageEntry) -> Result<PullReport, RegistryError> {
        let bytes = self.store.read_blob(&e.manifest.digest)?;
        let (parsed, _) = manifest::parse(&bytes, Some(&e.manifest.media_type), &r.to_string())?;
        let Parsed::Image(m) = parsed else {
            return Err(RegistryError::Other(format!(
                "{}: stored name points at an index",
                e.name
            )));
        };
        Ok(PullReport {
            name: e.name.clone(),
            id: m.config.digest.clone(),
            manifest_digest: e.manifest.digest.clone(),
            source: e
                .annotation(SOURCE_ANNOTATION)
                .unwrap_or("local")
                .to_string(),
            credentials_from: None,
            layers: m
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
        })
    }

    /// Applies the policy chain; each failing policy falls through to the next.
    pub async fn ensure(
        &self,
        input: &str,
        policies: &[Policy],
    ) -> Result<PullReport, RegistryError> {
        let mut last_err = None;
        for policy in policies {
            let result = match policy {
                Policy::Never | Policy::IfNotPresent => match self.find_local(input)? {
                    Some((r, e)) => {
                        let mut report = self.local_report(&r, &e)?;
                        self.ensure_unpacked(&e, &mut report).await?;
                        return Ok(report);
                    }
                    None if *policy == Policy::Never => Err(RegistryError::NotPresent {
                        reference: input.to_string(),
                    }),
                    None => self.pull(input).await,
                },
                Policy::Always => self.pull(input).await,
            };
            match result {
                Ok(r) => return Ok(r),
                Err(e) => {
                    if policies.len() > 1 {
                        tracing::warn!("pull policy {policy:?} failed for {input}: {e}");
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one policy"))
    }

    /// Pulls from the network: every candidate name, every endpoint (mirrors, then primary).
    pub async fn pull(&self, input: &str) -> Result<PullReport, RegistryError> {
        let mut failures: Vec<(String, RegistryError)> = Vec::new();
        for logical in &self.candidates(input)? {
            let sources = self
                .registries
                .pull_sources(logical, self.client_options.insecure)
                .map_err(RegistryError::Blocked)?;
            for source in sources {
                let label = source.reference.to_string();
                match self.pull_from(logical, &source).await {
                    Ok(r) => return Ok(r),
                    // Local faults are not the endpoint's; trying a mirror would not help.
                    Err(e @ (RegistryError::Store(_) | RegistryError::Auth(_))) => return Err(e),
                    Err(e) => {
                        if source.mirror {
                            tracing::warn!(
                                "mirror {} failed for {logical}: {e}",
                                source.reference.registry
                            );
                        } else {
                            tracing::debug!("pull of {label} failed: {e}");
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
        Err(RegistryError::AllSourcesFailed {
            reference: input.to_string(),
            attempts: failures
                .into_iter()
                .map(|(l, e)| (l, e.to_string()))
                .collect(),
        })
    }

    async fn pull_from(
        &self,
        logical: &ImageRef,
        source: &PullSource,
    ) -> Result<PullReport, RegistryError> {
        let physical = &source.reference;
        self.say(&format!("Trying to pull {physical}..."));
        let cred = self.credentials.resolve(&physical.name()).await?;
        if let Some((_, src)) = &cred {
            self.say(&format!("Authenticating with credentials from {src}"));
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
                RegistryError::NoPlatform {
                    reference: label.clone(),
                    wanted: self.platform.to_string(),
                    available: manifest::describe_platforms(&index.manifests),
                }
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
            });
        };
        let manifest_digest = Digest::sha256_of(&bytes);
        // Shared with other pulls, exclusive with gc; may wait for a running prune.
        let store = self.store.clone();
        let _use = tokio::task::spawn_blocking(move || store.use_lock())
            .await
            .map_err(|e| RegistryError::Other(e.to_string()))??;

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
        let diff_ids = check_config(&config, &image.layers, &label)?;

        let layers = self
            .fetch_layers(&client, repo, &image.layers, &diff_ids)
            .await?;
        self.store.put_blob(&manifest_digest, &bytes)?;

        let name = logical.to_string();
        let mut ann = BTreeMap::new();
        ann.insert(
            SOURCE_ANNOTATION.to_string(),
            format!("{}/{}", client.endpoint(), physical.repository),
        );
        ann.insert(PULLED_ANNOTATION.to_string(), crate::time::now_rfc3339());
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
        self.store.set_ref(&name, desc, ann)?;
        if physical.registry != logical.registry {
            self.say(&format!("Pulled {name} from mirror {}", client.endpoint()));
        }
        Ok(PullReport {
            name,
            id: image.config.digest.clone(),
            manifest_digest,
            source: format!("{}/{}", client.endpoint(), physical.repository),
            credentials_from: client.credential_source().map(|s| s.to_string()),
            layers,
            pulled: true,
        })
    }

    async fn fetch_layers(
        &self,
        client: &Client,
        repo: &str,
        layers: &[Descriptor],
        diff_ids: &[Digest],
    ) -> Result<Vec<LayerReport>, RegistryError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let bars = (self.progress == ProgressMode::Bars).then(indicatif::MultiProgress::new);
        let bars = Arc::new(bars);
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<(&Descriptor, &Digest)> = layers
            .iter()
            .zip(diff_ids)
            .filter(|(l, _)| seen.insert(l.digest.clone()))
            .collect();
        let results: Vec<LayerReport> = stream::iter(unique)
            .map(|(layer, diff_id)| {
                let bars = bars.clone();
                async move {
                    self.fetch_layer(client, repo, layer, diff_id, bars.as_ref().as_ref())
                        .await
                }
            })
            .buffered(self.jobs.max(1))
            .try_collect()
            .await?;
        Ok(results)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| RegistryError::Other(e.to_string()))??)
    }

    /// Takes the layer's lock if it still needs unpacking; `None` when there is nothing to do.
    async fn claim_layer(
        &self,
        diff_id: &Digest,
    ) -> Result<Option<crate::store::FileLock>, RegistryError> {
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
        bars: Option<&indicatif::MultiProgress>,
    ) -> Result<LayerReport, RegistryError> {
        let short = &layer.digest.hex()[..12];
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
            self.say_line(
                bars,
                &format!("Copying blob {short} skipped: already exists"),
            );
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
        let bar = bars.map(|m| {
            let b = m.add(indicatif::ProgressBar::new(layer.size));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "Copying blob {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            b.set_message(short.to_string());
            b
        });
        if bar.is_none() {
            self.say_line(
                None,
                &format!("Copying blob {short} ({} bytes)", layer.size),
            );
        }
        let progress = |n: u64| {
            if let Some(b) = &bar {
                b.inc(n);
            }
        };
        let fetched = client.fetch_blob(repo, layer, &mut sink, &progress).await;
        let TeeSink {
            ingest,
            unpacker,
            restarted,
        } = sink;
        let committed = match fetched {
            Ok(()) => tokio::task::spawn_blocking(move || ingest.commit())
                .await
                .map_err(|e| RegistryError::Other(e.to_string()))
                .and_then(|r| r.map_err(RegistryError::from)),
            Err(e) => Err(e),
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
        match &bar {
            Some(b) => b.finish(),
            None => self.say_line(None, &format!("Copying blob {short} done")),
        }
        Ok(report)
    }

    /// Unpacks a layer from its verified blob in the store.
    async fn unpack_stored(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<(), RegistryError> {
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
    pub async fn ensure_unpacked(
        &self,
        entry: &ImageEntry,
        report: &mut PullReport,
    ) -> Result<(), RegistryError> {
        if !self.unpack {
            return Ok(());
        }
        for (i, (desc, diff_id)) in self.store.image_layers(entry)?.into_iter().enumerate() {
            if let Some(r) = report.layers.get_mut(i) {
                r.diff_id = Some(diff_id.clone());
            }
            if self.claim_layer(&diff_id).await?.is_some() {
                self.unpack_stored(&desc, &diff_id).await?;
                if let Some(r) = report.layers.get_mut(i) {
                    r.unpacked = true;
                }
            }
        }
        Ok(())
    }

    fn say_line(&self, bars: Option<&indicatif::MultiProgress>, msg: &str) {
        match bars {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => self.say(msg),
        }
    }
}

/// The config must be an image config whose diff_ids match the layers one to one.
fn check_config(
    config: &[u8],
    layers: &[Descriptor],
    reference: &str,
) -> Result<Vec<Digest>, RegistryError> {
    let bad = |reason: String| RegistryError::BadManifest {
        reference: reference.to_string(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| bad(format!("config is not JSON: {e}")))?;
    let diff_ids = v
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .ok_or_else(|| bad("config has no rootfs.diff_ids".into()))?;
    if diff_ids.len() != layers.len() {
        return Err(bad(format!(
            "config lists {} diff_ids for {} layers",
            diff_ids.len(),
            layers.len()
        )));
    }
    diff_ids
        .iter()
        .map(|d| {
            d.as_str()
                .and_then(|s| s.parse::<Digest>().ok())
                .ok_or_else(|| bad(format!("invalid diff_id {d}")))
        })
        .collect()
}

/// The download's sink: the store's ingest file, and the unpacker's stdin when teeing.
struct TeeSink {
    ingest: crate::store::Ingest,
    unpacker: Option<LayerUnpacker>,
    restarted: bool,
}

impl super::client::BlobSink for TeeSink {
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
