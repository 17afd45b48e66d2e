//! `skiff login`: the key a registry's credential is stored under, and the check of a
//! credential against the registry before it is stored.

use super::mirrors::RegistriesConf;
use super::{Client, ClientOptions, RegistryError};
use crate::auth::sources::AuthEnv;
use crate::auth::{AuthError, Credential, Source, config};
use crate::oci::reference::{DOCKER_HUB, DOCKER_HUB_API};
use std::path::PathBuf;

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

/// `skiff login`: `cred` verified against `registry`, then stored (mode 0600) in the file
/// `auth` names for logins; returns that file.
pub async fn login(
    registry: &str,
    cred: &Credential,
    auth: &AuthEnv,
    registries: &RegistriesConf,
    opts: ClientOptions,
) -> Result<PathBuf, RegistryError> {
    let key = login_key(registry);
    verify(&key, cred, registries, opts).await?;
    let file = auth.login_file().ok_or(AuthError::NoLoginFile)?;
    config::store_credential(&file, &key, cred)?;
    Ok(file)
}

/// `skiff logout`: removes `registry`'s stored credential, or with `None` the whole file;
/// returns the key removed (`None`: all of them).
pub fn logout(auth: &AuthEnv, registry: Option<&str>) -> Result<Option<String>, AuthError> {
    let file = auth.login_file().ok_or(AuthError::NoLoginFile)?;
    let Some(registry) = registry else {
        return match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AuthError::RemoveFile {
                path: file,
                source: e,
            }),
            _ => Ok(None),
        };
    };
    let key = login_key(registry);
    match config::remove_credential(&file, &key)? {
        true => Ok(Some(key)),
        false => Err(AuthError::NotLoggedIn { key, file }),
    }
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
