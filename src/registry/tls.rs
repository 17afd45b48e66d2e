//! TLS per registry host: system roots plus `certs.d/<host[:port]>` directories
//! (`*.crt` CAs, `*.cert`+`*.key` client pairs). The first existing directory wins.

use super::RegistryError;
use crate::error_chain;
use std::path::{Path, PathBuf};

pub fn certs_dirs(host: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SKIFF_CERTS_DIR") {
        dirs.push(PathBuf::from(d).join(host));
    }
    let cfg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(c) = cfg {
        dirs.push(c.join("containers/certs.d").join(host));
    }
    dirs.push(Path::new("/etc/containers/certs.d").join(host));
    dirs.push(Path::new("/etc/docker/certs.d").join(host));
    dirs
}

/// Builds the HTTP client for one registry host.
pub fn client_for(
    host: &str,
    insecure: bool,
    user_agent: &str,
) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(30))
        // A stalled registry must not hang a CI job: each read waits this long at most
        // (SKIFF_READ_TIMEOUT seconds, default 60), then the transfer is retried or fails.
        .read_timeout(std::time::Duration::from_secs(
            std::env::var("SKIFF_READ_TIMEOUT")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|s| *s > 0)
                .unwrap_or(60),
        ))
        .tls_built_in_native_certs(true)
        .danger_accept_invalid_certs(insecure);
    let terr = |path: &Path, reason: String| RegistryError::Tls {
        registry: host.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let read_err = |path: &Path, error| RegistryError::TlsRead {
        registry: host.to_string(),
        path: path.to_path_buf(),
        error,
    };
    let dir = certs_dirs(host).into_iter().find(|d| d.is_dir());
    if let Some(dir) = &dir {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| read_err(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in &entries {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => {
                    let pem = std::fs::read(path).map_err(|e| read_err(path, e))?;
                    for cert in reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|e| terr(path, e.to_string()))?
                    {
                        builder = builder.add_root_certificate(cert);
                    }
                }
                Some("cert") => {
                    let key = path.with_extension("key");
                    if !key.exists() {
                        return Err(terr(
                            path,
                            format!(
                                "missing key {} for client certificate; CA certificates should use the extension .crt",
                                key.display()
                            ),
                        ));
                    }
                    let mut pem = std::fs::read(path).map_err(|e| read_err(path, e))?;
                    pem.extend(std::fs::read(&key).map_err(|e| read_err(&key, e))?);
                    let id =
                        reqwest::Identity::from_pem(&pem).map_err(|e| terr(path, e.to_string()))?;
                    builder = builder.identity(id);
                }
                Some("key") if !path.with_extension("cert").exists() => {
                    return Err(terr(
                        path,
                        "key without a matching .cert client certificate".into(),
                    ));
                }
                _ => {}
            }
        }
    }
    builder.build().map_err(|e| RegistryError::Tls {
        registry: host.to_string(),
        path: dir.unwrap_or_default(),
        reason: error_chain(&e),
    })
}
