//! A command's registry settings, resolved once: credential sources, `--creds`,
//! registries.conf and TLS, and the puller they make.

use super::{ImageError, PullObserver, Puller};
use crate::auth::sources::AuthEnv;
use crate::auth::{Credential, CredentialResolver};
use crate::oci::manifest::PlatformSpec;
use crate::registry::ClientOptions;
use crate::registry::mirrors::RegistriesConf;
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct RegistrySettings {
    pub auth: AuthEnv,
    /// `--creds`.
    pub creds: Option<Credential>,
    pub registries: RegistriesConf,
    pub client: ClientOptions,
    /// A CI job's own registry credentials: the sources then go in GitLab Runner's order.
    pub job_credentials: Option<Vec<(String, Credential)>>,
}

impl RegistrySettings {
    /// `authfile`, `creds` (USERNAME[:PASSWORD]), `tls_verify` and `registries_conf` as
    /// podman takes them; the environment and the files are read here.
    pub fn resolve(
        authfile: Option<PathBuf>,
        creds: Option<&str>,
        tls_verify: Option<bool>,
        registries_conf: Option<&Path>,
    ) -> Result<Self, ImageError> {
        Ok(RegistrySettings {
            auth: AuthEnv::from_process(authfile),
            creds: creds.map(Credential::from_flag).transpose()?,
            registries: RegistriesConf::load(registries_conf)?,
            client: ClientOptions {
                insecure: tls_verify == Some(false),
                ..Default::default()
            },
            job_credentials: None,
        })
    }

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
        observer: Arc<dyn PullObserver>,
        unpack: bool,
    ) -> Puller {
        Puller {
            store,
            credentials: self.credentials(),
            registries: self.registries,
            platform,
            client_options: self.client,
            jobs: 4,
            observer,
            unpack,
            // A CI job's pulls: a stored private image only for credentials that read it.
            verify_stored_access: self.job_credentials.is_some(),
        }
    }
}
