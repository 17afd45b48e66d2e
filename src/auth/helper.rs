//! The docker-credential-helpers protocol: `docker-credential-<name> get`, server URL on stdin,
//! `{"ServerURL","Username","Secret"}` on stdout; "credentials not found" means none.

use super::{AuthError, Credential, Secret};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const NOT_FOUND: &str = "credentials not found in native keychain";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The server URL a helper is asked about: docker's historical key for Docker Hub.
pub fn server_url(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".into()
        }
        other => other.to_string(),
    }
}

pub fn validate_name(name: &str) -> Result<(), AuthError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(AuthError::HelperName(name.to_string()));
    }
    Ok(())
}

/// Runs `get`. `Ok(None)` when the helper has no entry for the server.
pub async fn get(helper: &str, registry: &str) -> Result<Option<Credential>, AuthError> {
    validate_name(helper)?;
    let server = server_url(registry);
    let herr = |reason: String| AuthError::Helper {
        helper: helper.to_string(),
        server: server.clone(),
        reason,
    };
    let program = format!("docker-credential-{helper}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                herr(format!("{program} not found in $PATH"))
            } else {
                herr(e.to_string())
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin is not an error by itself.
        let _ = stdin.write_all(server.as_bytes()).await;
    }
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| herr(format!("no answer within {}s", TIMEOUT.as_secs())))?
        .map_err(|e| herr(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.trim() == NOT_FOUND {
            return Ok(None);
        }
        // Helpers print their error to stdout; it never carries the secret.
        let msg = if stdout.trim().is_empty() {
            String::from_utf8_lossy(&output.stderr).trim().to_string()
        } else {
            stdout.trim().to_string()
        };
        return Err(herr(format!("exited with {}: {msg}", output.status)));
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let reply: Reply =
        serde_json::from_str(&stdout).map_err(|e| herr(format!("unparsable reply: {e}")))?;
    if reply.username.is_empty() && reply.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if reply.username == "<token>" {
        Credential {
            username: String::new(),
            password: Secret::default(),
            identity_token: Some(Secret::new(reply.secret)),
        }
    } else {
        Credential {
            username: reply.username,
            password: Secret::new(reply.secret),
            identity_token: None,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert!(validate_name("ecr-login").is_ok());
        assert!(validate_name("../../usr/bin/sudo").is_err());
        assert!(validate_name("").is_err());
        assert_eq!(server_url("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_url("quay.io"), "quay.io");
    }
}
