//! OCI distribution client: endpoints, challenges and tokens, manifests, blobs (streamed,
//! verified, resumed), retries, mirrors, uploads. Pulling into the store is `image::pull`'s.

pub mod client;
pub mod login;
pub mod mirrors;
pub mod push;
pub mod session;
pub mod tls;

use crate::auth::AuthError;
use crate::oci::digest::Digest;
use crate::store::StoreError;
use futures_util::StreamExt;
use std::path::PathBuf;

pub use client::{BlobSink, Client, ClientOptions};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: {method} {url}: {error}")]
    Connection {
        registry: String,
        method: String,
        url: String,
        error: String,
    },
    #[error("{registry}: {method} {url}: HTTP {status}{detail}")]
    Status {
        registry: String,
        method: String,
        url: String,
        status: u16,
        /// The first OCI error code in the body (`MANIFEST_UNKNOWN`, `DENIED`, ...).
        code: Option<String>,
        detail: String,
    },
    #[error("{registry}: authentication failed{via}: {reason}")]
    Unauthorized {
        registry: String,
        via: String,
        reason: String,
    },
    #[error("{url}: body exceeds the {limit}-byte limit")]
    TooLarge { url: String, limit: usize },
    #[error(transparent)]
    Manifest(#[from] crate::oci::manifest::ManifestError),
    #[error("{reference}: invalid manifest: {reason}")]
    BadManifest { reference: String, reason: String },
    #[error("{reference}: no image for platform {wanted} (the index has: {available})")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("{what} from {url}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} from {url}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("TLS setup for {registry} ({}): {reason}", path.display())]
    Tls {
        registry: String,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS setup for {registry} ({})", path.display())]
    TlsRead {
        registry: String,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] mirrors::ConfigError),
    #[error(transparent)]
    Reference(#[from] crate::oci::reference::ReferenceError),
    #[error("{image} has no name: give a destination")]
    NoDestination { image: String },
    #[error("{dest}: push to a tag, not a digest")]
    PushToDigest { dest: String },
    #[error("{registry}: invalid registry host")]
    InvalidHost {
        registry: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{url}: bad redirect {location:?}")]
    BadRedirect {
        url: String,
        location: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{url}: too many redirects")]
    TooManyRedirects { url: String },
    #[error("{registry}: upload reply without Location")]
    NoLocation { registry: String },
    #[error("{registry}: bad Location {location:?}")]
    BadLocation {
        registry: String,
        location: String,
        #[source]
        source: url::ParseError,
    },
    /// A blob file being uploaded.
    #[error("{}", path.display())]
    ReadUpload {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid media type {media_type:?}")]
    MediaType {
        media_type: String,
        #[source]
        source: reqwest::header::InvalidHeaderValue,
    },
    #[error("{name}: the stored manifest does not parse")]
    StoredManifest { name: String },
    #[error("{destination}: registry stored manifest {theirs}, expected {ours}")]
    PushedDigest {
        destination: String,
        theirs: String,
        ours: Digest,
    },
}

/// Reads a body, failing once it exceeds `limit` bytes (a registry cannot make us buffer more).
pub async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, RegistryError> {
    let url = resp.url().to_string();
    if resp.content_length().is_some_and(|l| l as usize > limit) {
        return Err(RegistryError::TooLarge { url, limit });
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Connection {
            registry: String::new(),
            method: "GET".into(),
            url: url.clone(),
            error: e.without_url().to_string(),
        })?;
        if out.len() + chunk.len() > limit {
            return Err(RegistryError::TooLarge { url, limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `": CODE: message"` from an OCI error envelope, or a short plain-text excerpt.
pub fn error_summary(body: &[u8]) -> String {
    error_code_and_summary(body).1
}

pub fn error_code_and_summary(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
        if let Some(first) = env.errors.first() {
            let parts: Vec<String> = env
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect();
            return (Some(first.code.clone()), format!(": {}", parts.join("; ")));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        (None, String::new())
    } else {
        let short: String = text.chars().take(200).collect();
        (None, format!(": {short}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let (code, s) = error_code_and_summary(body);
        assert_eq!(code.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(s, ": MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(error_summary(b""), "");
        assert_eq!(error_summary(b"  oops \n"), ": oops");
    }
}
