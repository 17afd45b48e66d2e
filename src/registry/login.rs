//! `skiff login`: the key a registry's credential is stored under, and the check of a
//! credential against the registry before it is stored.

use super::mirrors::RegistriesConf;
use super::{Client, ClientOptions, RegistryError};
use crate::auth::{Credential, Source, config};
use crate::oci::reference::{DOCKER_HUB, DOCKER_HUB_API};

/// The credential file key for `input` (a host[:port], maybe with a namespace); Docker Hub's
/// other names become `docker.io`.
pub fn login_key(input: &str) -> String {
    let key = config::key_to_registry_for_login(input);
    match key.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => key,
    }
}

/// Authenticates with `cred` at the registry `key` names; a key with a namespace
/// (`quay.io/org`) is checked for a repository under it.
pub async fn verify(
    key: &str,
    cred: &Credential,
    registries: &RegistriesConf,
    mut opts: ClientOptions,
) -> Result<(), RegistryError> {
    let host = key.split('/').next().unwrap_or(key);
    opts.insecure |= registries.is_insecure(host);
    let api_host = if host == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        host
    };
    let client = Client::connect(
        host,
        api_host,
        Some((cred.clone(), Source::CommandLine)),
        opts,
    )
    .await?;
    let repo_hint = key.split_once('/').map(|(_, r)| r);
    client.verify_login(repo_hint).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names_share_one_key() {
        for hub in ["index.docker.io", "registry-1.docker.io", "docker.io"] {
            assert_eq!(login_key(hub), DOCKER_HUB, "{hub}");
        }
        assert_eq!(login_key("quay.io/org"), "quay.io/org");
    }
}
