//! Settings, resolved once per command: flags over the environment (clap reads both), over
//! the files (credential files and registries.conf, read here, once).

use super::Format;
use super::progress::ProgressMode;
use anyhow::{Context as _, Result};
use clap::Args;
use skiff::auth::sources::AuthEnv;
use skiff::auth::{Credential, CredentialResolver};
use skiff::image::Puller;
use skiff::oci::manifest::PlatformSpec;
use skiff::registry::ClientOptions;
use skiff::registry::mirrors::RegistriesConf;
use skiff::store::Store;
use std::path::PathBuf;

/// Options shared by every command that talks to a registry (podman's names).
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

/// A command's registry settings, resolved.
pub struct RegistrySettings {
    pub auth: AuthEnv,
    /// `--creds`.
    pub creds: Option<Credential>,
    pub registries: RegistriesConf,
    pub client: ClientOptions,
    /// A CI job's own registry credentials: the sources then go in GitLab Runner's order.
    pub job_credentials: Option<Vec<(String, Credential)>>,
}

impl RegistryArgs {
    pub fn resolve(&self) -> Result<RegistrySettings> {
        let creds = match &self.creds {
            None => None,
            Some(c) => {
                let (u, p) = c.split_once(':').unwrap_or((c.as_str(), ""));
                if u.is_empty() {
                    return Err(skiff::auth::AuthError::CredsFlag.into());
                }
                Some(Credential::basic(u, p))
            }
        };
        Ok(RegistrySettings {
            auth: AuthEnv::from_process(self.authfile.clone()),
            creds,
            registries: RegistriesConf::load(self.registries_conf.as_deref())?,
            client: ClientOptions {
                insecure: self.tls_verify == Some(false),
                ..Default::default()
            },
            job_credentials: None,
        })
    }

    /// A puller with these settings, for commands that fetch images as a side effect.
    pub fn puller(&self, store: Store, progress: ProgressMode, unpack: bool) -> Result<Puller> {
        Ok(self
            .resolve()?
            .puller(store, PlatformSpec::host(), progress, unpack))
    }
}

impl RegistrySettings {
    pub fn credentials(&self) -> CredentialResolver {
        match &self.job_credentials {
            Some(job) => CredentialResolver::runner_order(&self.auth, job.clone()),
            None => CredentialResolver::new(&self.auth, self.creds.clone()),
        }
    }

    /// A CI job's credentials (the runner's job payload): every source in GitLab Runner's
    /// order, `--creds` set aside.
    pub fn with_job_credentials(mut self, credentials: Vec<(String, Credential)>) -> Self {
        self.job_credentials = Some(credentials);
        self
    }

    /// A job's own `DOCKER_AUTH_CONFIG` comes before every other source, as in the runner;
    /// it stands in for `--creds` too.
    pub fn with_job_auth(mut self, docker_auth_config: Option<&str>) -> Self {
        if let Some(json) = docker_auth_config {
            self.auth.docker_auth_config = Some(json.to_string());
            self.creds = None;
        }
        self
    }

    pub fn puller(
        self,
        store: Store,
        platform: PlatformSpec,
        progress: ProgressMode,
        unpack: bool,
    ) -> Puller {
        Puller {
            store,
            credentials: self.credentials(),
            registries: self.registries,
            platform,
            client_options: self.client,
            jobs: 4,
            observer: progress.observer(),
            unpack,
            // A CI job's pulls: a stored private image only for credentials that read it.
            verify_stored_access: self.job_credentials.is_some(),
        }
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
