//! Settings, resolved once per command: flags over the environment (clap reads both), over
//! the files (credential files and registries.conf, read by the library, once).

use super::Format;
use super::progress::ProgressMode;
use anyhow::{Context as _, Result};
use clap::Args;
use skiff::image::Puller;
use skiff::image::settings::RegistrySettings;
use skiff::oci::manifest::PlatformSpec;
use skiff::store::Store;
use std::path::PathBuf;

// Options shared by every command that talks to a registry (podman's names). A comment,
// not a doc comment: flattened into a deferred command, that would become its about line.
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Credential file to consult before the default locations
    #[arg(long, env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    /// Require HTTPS with verified certificates (false: allow plain HTTP and any certificate)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: Option<bool>,
    /// USERNAME[:PASSWORD] for this command only
    #[arg(long)]
    pub creds: Option<String>,
    /// registries.conf to use instead of the system and user files
    #[arg(long, env = "CONTAINERS_REGISTRIES_CONF")]
    pub registries_conf: Option<PathBuf>,
}

impl RegistryArgs {
    pub fn resolve(&self) -> Result<RegistrySettings> {
        Ok(RegistrySettings::resolve(
            self.authfile.clone(),
            self.creds.as_deref(),
            self.tls_verify,
            self.registries_conf.as_deref(),
        )?)
    }

    /// A puller with these settings, for commands that fetch images as a side effect.
    pub fn puller(&self, store: Store, progress: ProgressMode, unpack: bool) -> Result<Puller> {
        Ok(self
            .resolve()?
            .puller(store, PlatformSpec::host(), progress.observer(), unpack))
    }
}

/// What every command has: the store and the output format.
pub struct Context {
    pub root: PathBuf,
    pub format: Format,
}

impl Context {
    pub fn store(&self) -> Result<Store> {
        Store::open(&self.root).with_context(|| format!("opening store {}", self.root.display()))
    }
}
