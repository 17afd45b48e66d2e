//! Registry credentials: where they come from (environment, auth files, credential helpers),
//! and how secrets stay secret. Answering a registry's challenge is `registry::session`'s.

pub mod config;
pub mod helper;
pub mod sources;

use std::fmt;
use std::path::PathBuf;

pub use sources::{CredentialResolver, SourceSpec};

/// A string that never shows up in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One set of credentials for a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: Secret,
    /// An OAuth2 refresh token (docker's `identitytoken`, or a helper's `<token>` user).
    pub identity_token: Option<Secret>,
}

impl Credential {
    pub fn basic(username: &str, password: &str) -> Self {
        Credential {
            username: username.to_string(),
            password: Secret::new(password),
            identity_token: None,
        }
    }

    /// `--creds USERNAME[:PASSWORD]`, as podman takes it.
    pub fn from_flag(value: &str) -> Result<Self, AuthError> {
        let (username, password) = value.split_once(':').unwrap_or((value, ""));
        if username.is_empty() {
            return Err(AuthError::CredsFlag);
        }
        Ok(Credential::basic(username, password))
    }
}

/// Where a credential was found; shown in logs, never with the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    EnvDockerAuthConfig,
    File(PathBuf),
    Helper {
        name: String,
        within: Box<Source>,
    },
    /// A CI job's own credentials (the runner's label for them).
    JobPayload,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::CommandLine => f.write_str("--creds"),
            Source::EnvDockerAuthConfig => f.write_str("$DOCKER_AUTH_CONFIG"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::JobPayload => f.write_str("job payload (GitLab Registry)"),
            Source::Helper { name, within } => {
                write!(
                    f,
                    "credential helper docker-credential-{name} (configured in {within})"
                )
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot parse credentials from {source_name}: {reason}")]
    Parse { source_name: String, reason: String },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("credential helper docker-credential-{helper} for {server}: {reason}")]
    Helper {
        helper: String,
        server: String,
        reason: String,
    },
    #[error("invalid credential helper name {0:?}: path traversal is not allowed")]
    HelperName(String),
    #[error("invalid --creds value: expected USERNAME[:PASSWORD]")]
    CredsFlag,
    #[error("no location for the credential file (set --authfile or HOME)")]
    NoLoginFile,
    #[error("not logged into {key} (in {})", file.display())]
    NotLoggedIn { key: String, file: PathBuf },
    #[error("removing {}", path.display())]
    RemoveFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Credential::basic("alice", "hunter2-very-secret");
        let shown = format!("{c:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
