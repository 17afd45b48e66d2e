//! One registry endpoint: the ping that brings its challenge (answered by `session`),
//! retries with backoff and `Retry-After`, manual redirects (never sending `Authorization`
//! to another origin), manifests with a size cap, blob downloads that resume with `Range`,
//! and uploads.

use super::session::Session;
use super::{RegistryError, error_code_and_summary, read_limited, tls};
use crate::auth::{Credential, Source};
use crate::oci::manifest::{ACCEPT, Descriptor, MAX_MANIFEST_SIZE};
use futures_util::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Plain HTTP allowed and certificates not verified (`--tls-verify=false`, `insecure`).
    pub insecure: bool,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            max_attempts: 5,
            retry_base: Duration::from_millis(500),
            user_agent: format!("skiff/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Where a blob download writes: the store's ingest file, possibly teed into an unpacker.
pub trait BlobSink: Send {
    fn written(&self) -> u64;
    fn write(
        &mut self,
        bytes: &[u8],
    ) -> impl std::future::Future<Output = Result<(), RegistryError>> + Send;
    /// Start over (the server ignored our `Range`).
    fn reset(&mut self) -> impl std::future::Future<Output = Result<(), RegistryError>> + Send;
}

pub struct Client {
    http: reqwest::Client,
    /// The registry as named in references (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    base: Url,
    session: Session,
    opts: ClientOptions,
}

enum SendError {
    Retryable(String),
    Fatal(RegistryError),
}

impl Client {
    /// Connects to `api_host`: HTTPS first; plain HTTP only when insecure. The `/v2/` ping's
    /// challenge is used for every later request, as docker and containers/image do.
    pub async fn connect(
        registry: &str,
        api_host: &str,
        credential: Option<(Credential, Source)>,
        opts: ClientOptions,
    ) -> Result<Client, RegistryError> {
        let http = tls::client_for(registry, opts.insecure, &opts.user_agent)?;
        let mut last_err = String::new();
        let schemes: &[&str] = if opts.insecure {
            &["https", "http"]
        } else {
            &["https"]
        };
        for scheme in schemes {
            let base = Url::parse(&format!("{scheme}://{api_host}")).map_err(|source| {
                RegistryError::InvalidHost {
                    registry: registry.to_string(),
                    source,
                }
            })?;
            let client = Client {
                http: http.clone(),
                registry: registry.to_string(),
                base: base.clone(),
                session: Session::new(registry, http.clone(), credential.clone()),
                opts: opts.clone(),
            };
            let ping = base.join("/v2/").expect("static path");
            // A wrong scheme or a TLS mismatch is not transient: the ping retries little.
            // Probing HTTPS on a registry marked insecure is expected to fail: once, quietly.
            let mut ping_client = client;
            ping_client.opts.max_attempts = if opts.insecure && *scheme == "https" {
                1
            } else {
                opts.max_attempts.min(2)
            };
            let result = ping_client
                .send_with_retries(Method::GET, ping.clone(), HeaderMap::new(), None)
                .await;
            let mut client = ping_client;
            client.opts.max_attempts = opts.max_attempts;
            match result {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED {
                        client.session.remember_challenge(&resp);
                        return Ok(client);
                    }
                    if status.is_success() {
                        return Ok(client);
                    }
                    return Err(client.status_error("GET", resp).await);
                }
                Err(SendError::Fatal(e)) => return Err(e),
                Err(SendError::Retryable(e)) => {
                    tracing::debug!("{registry}: ping {ping} failed: {e}");
                    last_err = format!("GET {ping}: {e}");
                }
            }
        }
        Err(RegistryError::Connection {
            registry: registry.to_string(),
            method: "GET".into(),
            url: format!("{api_host}/v2/"),
            error: if opts.insecure {
                last_err
            } else {
                format!(
                    "{last_err} (if this registry speaks plain HTTP, mark it insecure in registries.conf or use --tls-verify=false)"
                )
            },
        })
    }

    pub fn credential_source(&self) -> Option<&Source> {
        self.session.credential_source()
    }

    pub fn endpoint(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("valid path")
    }

    /// Fetches a manifest; verifies its bytes when `reference` is a digest.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
        let resp = self.send(Method::GET, url.clone(), headers, repo).await?;
        if !resp.status().is_success() {
            return Err(self.status_error("GET", resp).await);
        }
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(resp, MAX_MANIFEST_SIZE)
            .await
            .map_err(|e| self.tag_registry(e))?;
        if let Ok(expected) = reference.parse::<crate::oci::digest::Digest>() {
            if let Err(crate::oci::digest::DigestError::Mismatch { expected, actual }) =
                expected.verify(&body)
            {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest".into(),
                    url: url.to_string(),
                    expected,
                    actual,
                });
            }
        }
        Ok((body, content_type))
    }

    /// Whether these credentials may read the manifest (a HEAD): `false` when the registry
    /// refuses (401, 403, or 404 as registries answer for what a client may not see).
    pub async fn can_read_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<bool, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
        let resp = self.send(Method::HEAD, url, headers, repo).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error("HEAD", resp).await),
        }
    }

    /// Fetches a small blob (a config) into memory, verified against `desc`.
    pub async fn get_small_blob(
        &self,
        repo: &str,
        desc: &Descriptor,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let mut sink = VecSink(Vec::new());
        if desc.size as usize > limit {
            return Err(RegistryError::TooLarge {
                url: self
                    .url(&format!("/v2/{repo}/blobs/{}", desc.digest))
                    .to_string(),
                limit,
            });
        }
        self.fetch_blob(repo, desc, &mut sink, &|_| {}).await?;
        let url = self
            .url(&format!("/v2/{repo}/blobs/{}", desc.digest))
            .to_string();
        if let Err(crate::oci::digest::DigestError::Mismatch { expected, actual }) =
            desc.digest.verify(&sink.0)
        {
            return Err(RegistryError::DigestMismatch {
                what: "config".into(),
                url,
                expected,
                actual,
            });
        }
        Ok(sink.0)
    }

    /// Streams a blob into `sink`, resuming with `Range` after a broken connection. Size is
    /// enforced here; the digest is checked by the sink's owner when it commits.
    pub async fn fetch_blob(
        &self,
        repo: &str,
        desc: &Descriptor,
        sink: &mut impl BlobSink,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{}", desc.digest));
        let mut resumes = 0u32;
        loop {
            let offset = sink.written();
            let mut headers = HeaderMap::new();
            if offset > 0 {
                headers.insert(
                    header::RANGE,
                    HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"),
                );
            }
            let resp = self.send(Method::GET, url.clone(), headers, repo).await?;
            let status = resp.status();
            if offset > 0 && status == StatusCode::PARTIAL_CONTENT {
                let start = resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(offset) {
                    tracing::warn!(
                        "{}: inconsistent Content-Range on resume; restarting",
                        desc.digest
                    );
                    sink.reset().await?;
                    continue;
                }
            } else if status.is_success() {
                if offset > 0 {
                    tracing::debug!("{}: server ignored Range; restarting from 0", desc.digest);
                    sink.reset().await?;
                }
            } else {
                return Err(self.status_error("GET", resp).await);
            }
            let mut stream = resp.bytes_stream();
            let mut broken = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => {
                        if sink.written() + bytes.len() as u64 > desc.size {
                            return Err(RegistryError::SizeMismatch {
                                what: format!("blob {}", desc.digest),
                                url: url.to_string(),
                                expected: desc.size,
                                actual: sink.written() + bytes.len() as u64,
                            });
                        }
                        sink.write(&bytes).await?;
                        progress(bytes.len() as u64);
                    }
                    Err(e) => {
                        broken = Some(e.without_url().to_string());
                        break;
                    }
                }
            }
            if broken.is_none() && sink.written() == desc.size {
                return Ok(());
            }
            let reason = broken.unwrap_or_else(|| {
                format!("body ended after {} of {} bytes", sink.written(), desc.size)
            });
            resumes += 1;
            if resumes >= self.opts.max_attempts {
                return Err(RegistryError::Connection {
                    registry: self.registry.clone(),
                    method: "GET".into(),
                    url: url.to_string(),
                    error: format!("{reason} (gave up after {resumes} attempts)"),
                });
            }
            tracing::warn!(
                "{}: {reason}; resuming at byte {}",
                desc.digest,
                sink.written()
            );
            tokio::time::sleep(self.backoff(resumes)).await;
        }
    }

    /// Checks the credentials: a token (or Basic) request that the registry accepts.
    pub async fn verify_login(&self, repo_hint: Option<&str>) -> Result<(), RegistryError> {
        let url = self.url("/v2/");
        let resp = match repo_hint {
            Some(r) => self.send(Method::GET, url, HeaderMap::new(), r).await?,
            // An empty scope still authenticates (docker login asks for no scope).
            None => {
                self.send_scoped(Method::GET, url, HeaderMap::new(), Some(String::new()))
                    .await?
            }
        };
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error("GET", resp).await)
        }
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        repo: &str,
    ) -> Result<Response, RegistryError> {
        self.send_scoped(
            method,
            url,
            headers,
            Some(format!("repository:{repo}:pull")),
        )
        .await
    }

    async fn send_scoped(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        scope: Option<String>,
    ) -> Result<Response, RegistryError> {
        match self
            .send_with_retries(method.clone(), url.clone(), headers, scope.as_deref())
            .await
        {
            Ok(r) => Ok(r),
            Err(SendError::Fatal(e)) => Err(e),
            Err(SendError::Retryable(error)) => Err(RegistryError::Connection {
                registry: self.registry.clone(),
                method: method.to_string(),
                url: url.to_string(),
                error,
            }),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        (self.opts.retry_base * 2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(Duration::from_secs(30))
    }

    async fn send_with_retries(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        scope: Option<&str>,
    ) -> Result<Response, SendError> {
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            match self.send_once(&method, url.clone(), &headers, scope).await {
                Err(SendError::Retryable(e)) if attempt < self.opts.max_attempts => {
                    let delay = self.backoff(attempt);
                    tracing::warn!(
                        "{} {url}: {e}; retrying in {delay:?} (attempt {attempt} of {})",
                        method,
                        self.opts.max_attempts
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
                Ok(resp) => {
                    let status = resp.status();
                    // The ping (no scope) expects a 401; everything else may re-authenticate once.
                    if status == StatusCode::UNAUTHORIZED && scope.is_some() && !reauthenticated {
                        reauthenticated = true;
                        if self
                            .session
                            .reauthenticate(&resp, scope.unwrap_or_default())
                            .await
                        {
                            attempt -= 1;
                            continue;
                        }
                    }
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
                    if retryable && attempt < self.opts.max_attempts {
                        let delay = retry_after(&resp).unwrap_or_else(|| {
                            if status == StatusCode::TOO_MANY_REQUESTS {
                                // containers/image: 2 s doubling, capped at 60 s.
                                (Duration::from_secs(2) * 2u32.pow(attempt - 1))
                                    .min(Duration::from_secs(60))
                            } else {
                                self.backoff(attempt)
                            }
                        });
                        tracing::warn!(
                            "{} {url}: HTTP {status}; retrying in {delay:?} (attempt {attempt} of {})",
                            method,
                            self.opts.max_attempts
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        mut url: Url,
        headers: &HeaderMap,
        scope: Option<&str>,
    ) -> Result<Response, SendError> {
        for _ in 0..10 {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            req = req.header("Docker-Distribution-API-Version", "registry/2.0");
            // Credentials go only to the registry's own origin, never to a redirect target.
            if scope.is_some() && url.origin() == self.base.origin() {
                if let Some(auth) = self
                    .session
                    .authorization(scope)
                    .await
                    .map_err(SendError::Fatal)?
                {
                    req = req.header(header::AUTHORIZATION, auth);
                }
            }
            let resp = req
                .send()
                .await
                .map_err(|e| SendError::Retryable(crate::error_chain(&e)))?;
            if resp.status().is_redirection() {
                if let Some(loc) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                {
                    url = url.join(loc).map_err(|source| {
                        SendError::Fatal(RegistryError::BadRedirect {
                            url: url.to_string(),
                            location: loc.to_string(),
                            source,
                        })
                    })?;
                    continue;
                }
            }
            return Ok(resp);
        }
        Err(SendError::Fatal(RegistryError::TooManyRedirects {
            url: url.to_string(),
        }))
    }

    // ---- push -------------------------------------------------------------------------

    fn push_scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    fn location(&self, resp: &Response) -> Result<Url, RegistryError> {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| RegistryError::NoLocation {
                registry: self.registry.clone(),
            })?;
        self.base
            .join(loc)
            .map_err(|source| RegistryError::BadLocation {
                registry: self.registry.clone(),
                location: loc.to_string(),
                source,
            })
    }

    /// Sends a request with a body, rebuilt by `body` for the one re-authentication a 401
    /// may need (a body stream cannot be replayed).
    async fn send_body(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        scope: &str,
        body: impl Fn() -> Result<reqwest::Body, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut reauthenticated = false;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .header("Docker-Distribution-API-Version", "registry/2.0")
                .body(body()?);
            if url.origin() == self.base.origin() {
                if let Some(a) = self.session.authorization(Some(scope)).await? {
                    req = req.header(header::AUTHORIZATION, a);
                }
            }
            let resp = req.send().await.map_err(|e| RegistryError::Connection {
                registry: self.registry.clone(),
                method: method.to_string(),
                url: url.to_string(),
                error: crate::error_chain(&e),
            })?;
            if resp.status() == StatusCode::UNAUTHORIZED && !reauthenticated {
                reauthenticated = true;
                if self.session.reauthenticate(&resp, scope).await {
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    pub async fn blob_exists(
        &self,
        repo: &str,
        digest: &crate::oci::digest::Digest,
    ) -> Result<bool, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send_scoped(
                Method::HEAD,
                url,
                HeaderMap::new(),
                Some(Self::push_scope(repo)),
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error("HEAD", resp).await),
        }
    }

    /// Cross-repository mount; `Ok(None)` when mounted, else the upload it started instead.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &crate::oci::digest::Digest,
        from: &str,
    ) -> Result<Option<Url>, RegistryError> {
        // The token must also allow reading the source repository.
        self.session.add_scope(format!("repository:{from}:pull"));
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let resp = self.post_empty(repo, url).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(self.location(&resp)?)),
            _ => Err(self.status_error("POST", resp).await),
        }
    }

    /// The bodiless POST that starts an upload session (or asks for a mount).
    async fn post_empty(&self, repo: &str, url: Url) -> Result<Response, RegistryError> {
        self.send_body(
            Method::POST,
            url,
            HeaderMap::new(),
            &Self::push_scope(repo),
            || Ok(reqwest::Body::from("")),
        )
        .await
    }

    pub async fn start_upload(&self, repo: &str) -> Result<Url, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self.post_empty(repo, url).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error("POST", resp).await);
        }
        self.location(&resp)
    }

    /// Uploads `path` to an upload session: one PUT, or PATCHes of `chunk` bytes then a PUT.
    pub async fn upload_blob(
        &self,
        repo: &str,
        mut location: Url,
        digest: &crate::oci::digest::Digest,
        path: &std::path::Path,
        chunk: Option<u64>,
    ) -> Result<(), RegistryError> {
        let scope = Self::push_scope(repo);
        let read_err = |source| RegistryError::ReadUpload {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        let read_range = |start: u64, len: u64| -> Result<Vec<u8>, RegistryError> {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(path).map_err(read_err)?;
            f.seek(SeekFrom::Start(start)).map_err(read_err)?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf).map_err(read_err)?;
            Ok(buf)
        };
        let octet = |len: u64| {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            h
        };
        let mut sent = 0u64;
        if let Some(chunk) = chunk.filter(|c| *c > 0 && *c < size) {
            while sent < size {
                let len = chunk.min(size - sent);
                let mut h = octet(len);
                h.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("{}-{}", sent, sent + len - 1)).expect("ascii"),
                );
                let resp = self
                    .send_body(Method::PATCH, location.clone(), h, &scope, || {
                        Ok(reqwest::Body::from(read_range(sent, len)?))
                    })
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(self.status_error("PATCH", resp).await);
                }
                location = self.location(&resp)?;
                sent += len;
            }
        }
        location
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let rest = size - sent;
        let resp = self
            .send_body(Method::PUT, location, octet(rest), &scope, || {
                if rest == 0 {
                    return Ok(reqwest::Body::from(""));
                }
                let f = std::fs::File::open(path).map_err(read_err)?;
                Ok(reqwest::Body::from(tokio::fs::File::from_std(f)))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error("PUT", resp).await);
        }
        Ok(())
    }

    /// Puts a manifest; returns the digest the registry reports (or ours, if it says none).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Option<String>, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|source| RegistryError::MediaType {
                media_type: media_type.to_string(),
                source,
            })?,
        );
        let body = bytes.to_vec();
        let resp = self
            .send_body(Method::PUT, url, h, &Self::push_scope(repo), || {
                Ok(reqwest::Body::from(body.clone()))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error("PUT", resp).await);
        }
        Ok(resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    pub async fn status_error(&self, method: &str, resp: Response) -> RegistryError {
        let status = resp.status().as_u16();
        let url = resp.url().to_string();
        let body = read_limited(resp, 1 << 20).await.unwrap_or_default();
        let (code, detail) = error_code_and_summary(&body);
        if status == 401 || (status == 403 && code.as_deref() == Some("DENIED")) {
            return RegistryError::Unauthorized {
                registry: self.registry.clone(),
                via: self.session.via(),
                reason: format!("{method} {url}: HTTP {status}{detail}"),
            };
        }
        RegistryError::Status {
            registry: self.registry.clone(),
            method: method.to_string(),
            url,
            status,
            code,
            detail,
        }
    }

    fn tag_registry(&self, e: RegistryError) -> RegistryError {
        match e {
            RegistryError::Connection {
                method, url, error, ..
            } => RegistryError::Connection {
                registry: self.registry.clone(),
                method,
                url,
                error,
            },
            other => other,
        }
    }
}

/// Downloads straight into the store: the store knows nothing of registries.
impl BlobSink for crate::store::Ingest {
    fn written(&self) -> u64 {
        crate::store::Ingest::written(self)
    }
    async fn write(&mut self, bytes: &[u8]) -> Result<(), RegistryError> {
        Ok(self.write_bytes(bytes)?)
    }
    async fn reset(&mut self) -> Result<(), RegistryError> {
        Ok(self.restart()?)
    }
}

struct VecSink(Vec<u8>);

impl BlobSink for VecSink {
    fn written(&self) -> u64 {
        self.0.len() as u64
    }
    async fn write(&mut self, bytes: &[u8]) -> Result<(), RegistryError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
    async fn reset(&mut self) -> Result<(), RegistryError> {
        self.0.clear();
        Ok(())
    }
}

/// `Retry-After` as seconds or an HTTP date; capped at five minutes.
fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = httpdate::parse_http_date(v).ok()?;
        when.duration_since(std::time::SystemTime::now()).ok()?
    };
    Some(d.min(Duration::from_secs(300)))
}
