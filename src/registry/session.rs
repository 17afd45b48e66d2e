//! Authorization for one registry endpoint: the `WWW-Authenticate` challenge (RFC 7235) it
//! sends, answered with Basic credentials or a Bearer token (the GET flow, optionally with
//! Basic credentials, or the OAuth2 POST flow for identity tokens, falling back to GET as
//! containerd does), and a token cache keyed by realm, service and scopes that honours the
//! 60-second minimum lifetime. Credentials themselves come from `auth`.

use super::{RegistryError, error_summary, read_limited};
use crate::auth::{Credential, Secret, Source};
use reqwest::Response;
use reqwest::header;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What a registry endpoint asked for and what was answered: one per `Client`.
pub struct Session {
    registry: String,
    http: reqwest::Client,
    credential: Option<(Credential, Source)>,
    challenge: std::sync::Mutex<Option<Challenge>>,
    extra_scopes: std::sync::Mutex<Vec<String>>,
    tokens: TokenCache,
}

impl Session {
    pub fn new(
        registry: &str,
        http: reqwest::Client,
        credential: Option<(Credential, Source)>,
    ) -> Session {
        Session {
            registry: registry.to_string(),
            http,
            credential,
            challenge: std::sync::Mutex::new(None),
            extra_scopes: std::sync::Mutex::new(Vec::new()),
            tokens: TokenCache::default(),
        }
    }

    pub fn credential_source(&self) -> Option<&Source> {
        self.credential.as_ref().map(|(_, s)| s)
    }

    /// How the credentials were chosen, for error messages (never the secret).
    pub fn via(&self) -> String {
        match self.credential_source() {
            Some(s) => format!(" with credentials from {s}"),
            None => " (no credentials configured for it)".into(),
        }
    }

    /// Remembers the challenge of the `/v2/` ping; it answers every later request.
    pub fn remember_challenge(&self, resp: &Response) {
        *self.challenge.lock().expect("lock") = pick_challenge(resp);
    }

    /// Asks tokens for one more scope as well (a mount reads its source repository).
    pub fn add_scope(&self, scope: String) {
        let mut extra = self.extra_scopes.lock().expect("lock");
        if !extra.contains(&scope) {
            extra.push(scope);
        }
    }

    /// Reacts to a 401: `insufficient_scope` asks for the scope the server names,
    /// `invalid_token` drops the cached token, a first challenge is remembered.
    pub async fn reauthenticate(&self, resp: &Response, scope: &str) -> bool {
        let Some(ch) = pick_challenge(resp) else {
            return false;
        };
        let key = self.token_key(&ch, scope);
        if ch.param("error") == Some("insufficient_scope") {
            if let Some(s) = ch.param("scope") {
                let mut extra = self.extra_scopes.lock().expect("lock");
                for one in s.split(' ') {
                    if one != scope && !extra.iter().any(|e| e == one) {
                        extra.push(one.to_string());
                    }
                }
            }
        }
        if let Some(k) = key {
            self.tokens.invalidate(&k).await;
        }
        *self.challenge.lock().expect("lock") = Some(ch);
        true
    }

    fn token_key(&self, ch: &Challenge, scope: &str) -> Option<TokenKey> {
        let realm = ch.param("realm")?.to_string();
        let mut scopes = vec![scope.to_string()];
        scopes.extend(self.extra_scopes.lock().expect("lock").iter().cloned());
        scopes.retain(|s| !s.is_empty());
        Some(TokenKey {
            realm,
            service: ch.param("service").unwrap_or_default().to_string(),
            scopes,
        })
    }

    /// The `Authorization` value for a request in `scope`, if the challenge asks for one.
    pub async fn authorization(
        &self,
        scope: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        let ch = self.challenge.lock().expect("lock").clone();
        let Some(ch) = ch else { return Ok(None) };
        let cred = self.credential.as_ref().map(|(c, _)| c);
        match ch.scheme.as_str() {
            "basic" => Ok(cred.filter(|c| !c.username.is_empty()).map(|c| {
                use base64::Engine as _;
                let raw = format!("{}:{}", c.username, c.password.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )
            })),
            "bearer" => {
                let Some(key) = self.token_key(&ch, scope.unwrap_or_default()) else {
                    return Ok(None);
                };
                if let Some(t) = self.tokens.get(&key).await {
                    return Ok(Some(format!("Bearer {}", t.expose())));
                }
                match fetch_token(&self.http, &key, cred).await {
                    Ok((t, lifetime)) => {
                        let header = format!("Bearer {}", t.expose());
                        self.tokens.put(key, t, lifetime).await;
                        Ok(Some(header))
                    }
                    Err(reason) => Err(RegistryError::Unauthorized {
                        registry: self.registry.clone(),
                        via: self.via(),
                        reason: format!("token request to {} failed: {reason}", key.realm),
                    }),
                }
            }
            _ => Ok(None),
        }
    }
}

/// Bearer first, then Basic (containerd's priority); other schemes are ignored.
fn pick_challenge(resp: &Response) -> Option<Challenge> {
    let mut all: Vec<Challenge> = resp
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .filter(|c| c.scheme == "bearer" || c.scheme == "basic")
        .collect();
    all.sort_by_key(|c| if c.scheme == "bearer" { 0 } else { 1 });
    all.into_iter().next()
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased scheme: `basic`, `bearer`, ...
    pub scheme: String,
    /// Lower-cased parameter names with unescaped values.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Every kind of whitespace: trimming fewer kinds than end a scheme left a scheme of "\r"
/// unconsumed, and the parser looped forever (found by fuzzing).
fn separator(c: char) -> bool {
    c.is_whitespace() || c == ','
}

/// Parses one header value. Several comma-separated challenges in one value are split at a
/// token that is followed by a space and is not a `name=` parameter.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let scheme_end = rest.find(separator).unwrap_or(rest.len());
        let scheme = rest[..scheme_end].to_ascii_lowercase();
        rest = rest[scheme_end..].trim_start_matches(separator);
        let mut params = BTreeMap::new();
        while let Some(eq) = rest.find('=') {
            let name = rest[..eq].trim();
            // A bare token without '=' before the next space starts a new challenge.
            if name.is_empty() || name.contains(char::is_whitespace) || name.contains(',') {
                break;
            }
            let mut value = String::new();
            let mut after = &rest[eq + 1..];
            if let Some(stripped) = after.strip_prefix('"') {
                let mut chars = stripped.char_indices();
                let mut end = stripped.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                after = &stripped[end.min(stripped.len())..];
            } else {
                let end = after.find([',', ' ']).unwrap_or(after.len());
                value.push_str(&after[..end]);
                after = &after[end..];
            }
            params.insert(name.to_ascii_lowercase(), value);
            rest = after.trim_start_matches(separator);
        }
        if !scheme.is_empty() {
            out.push(Challenge { scheme, params });
        }
    }
    out
}

const MAX_TOKEN_BODY: usize = 1 << 20;
const MIN_LIFETIME: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "skiff";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    realm: String,
    service: String,
    scopes: Vec<String>,
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    expires: Instant,
}

#[derive(Default)]
struct TokenCache {
    entries: Mutex<HashMap<TokenKey, Cached>>,
}

impl TokenCache {
    async fn get(&self, key: &TokenKey) -> Option<Secret> {
        let entries = self.entries.lock().await;
        entries
            .get(key)
            .filter(|c| Instant::now() < c.expires)
            .map(|c| c.token.clone())
    }
    async fn put(&self, key: TokenKey, token: Secret, lifetime: Duration) {
        let expires = Instant::now() + lifetime.max(MIN_LIFETIME);
        self.entries
            .lock()
            .await
            .insert(key, Cached { token, expires });
    }
    async fn invalidate(&self, key: &TokenKey) {
        self.entries.lock().await.remove(key);
    }
}

#[derive(serde::Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// Fetches a token. Returns it with its lifetime (at least 60 s, per the token spec).
/// The error is the reason only: the caller names the realm and the credentials' source.
async fn fetch_token(
    http: &reqwest::Client,
    key: &TokenKey,
    cred: Option<&Credential>,
) -> Result<(Secret, Duration), String> {
    if let Some(Credential {
        identity_token: Some(refresh),
        ..
    }) = cred
    {
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh.expose().to_string()),
            ("service", key.service.clone()),
            ("client_id", CLIENT_ID.to_string()),
        ];
        if !key.scopes.is_empty() {
            form.push(("scope", key.scopes.join(" ")));
        }
        let resp = http
            .post(&key.realm)
            .form(&form)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status().as_u16();
        // Token servers without the OAuth2 endpoint answer these; GET is the universal flow.
        if !matches!(status, 400 | 401 | 404 | 405) {
            return read_reply(resp).await;
        }
        tracing::debug!(
            "OAuth2 POST to {} answered {status}; falling back to GET",
            key.realm
        );
    }
    let mut url = url::Url::parse(&key.realm).map_err(|e| format!("invalid realm: {e}"))?;
    {
        let mut q = url.query_pairs_mut();
        if !key.service.is_empty() {
            q.append_pair("service", &key.service);
        }
        for s in &key.scopes {
            q.append_pair("scope", s);
        }
        if let Some(c) = cred.filter(|c| !c.username.is_empty()) {
            q.append_pair("account", &c.username);
        }
    }
    let mut req = http.get(url);
    if let Some(c) = cred {
        // With only an identity token, it stands in for the password (containerd does the same).
        let secret = match (&c.identity_token, c.password.is_empty()) {
            (Some(t), true) => t.expose(),
            _ => c.password.expose(),
        };
        if !c.username.is_empty() || !secret.is_empty() {
            req = req.basic_auth(&c.username, Some(secret));
        }
    }
    let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
    read_reply(resp).await
}

async fn read_reply(resp: reqwest::Response) -> Result<(Secret, Duration), String> {
    let status = resp.status();
    let body = read_limited(resp, MAX_TOKEN_BODY)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        let detail = error_summary(&body);
        return Err(format!("HTTP {status}{detail}"));
    }
    let reply: TokenReply =
        serde_json::from_slice(&body).map_err(|e| format!("unparsable token reply: {e}"))?;
    let token = reply
        .token
        .filter(|t| !t.is_empty())
        .or(reply.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "reply holds neither token nor access_token".to_string())?;
    let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(60).max(60) as u64);
    Ok((Secret::new(token), lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        let c = parse_challenges(hub);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));

        let c = parse_challenges(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (c[0].scheme.as_str(), c[0].param("realm")),
            ("basic", Some("Registry Realm"))
        );

        let c = parse_challenges(r#"BEARER Realm="a\"b",Error="insufficient_scope", empty="""#);
        assert_eq!(c[0].param("realm"), Some("a\"b"));
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert_eq!(c[0].param("empty"), Some(""));

        let c = parse_challenges(r#"Basic realm="x", Bearer realm="https://t/token",service=s"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("service"), Some("s"));

        // Scopes whose resource name holds a port keep every colon.
        let c =
            parse_challenges(r#"Bearer realm="r",scope="repository:127.0.0.1:5000/x:pull,push""#);
        assert_eq!(
            c[0].param("scope"),
            Some("repository:127.0.0.1:5000/x:pull,push")
        );

        assert!(parse_challenges("").is_empty());
        // Whitespace of any kind between challenges and parameters ends (was an endless loop).
        let c = parse_challenges("Bearer\r realm=x,\u{a0}Basic\x0b,\x0crealm=y");
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].param("realm"), c[1].param("realm")),
            (Some("x"), Some("y"))
        );
        let c = parse_challenges("Negotiate");
        assert_eq!(c[0].scheme, "negotiate");
    }

    #[tokio::test]
    async fn cache_respects_expiry_and_minimum() {
        let cache = TokenCache::default();
        let key = TokenKey {
            realm: "r".into(),
            service: "s".into(),
            scopes: vec!["repository:a:pull".into()],
        };
        assert!(cache.get(&key).await.is_none());
        cache
            .put(key.clone(), Secret::new("t"), Duration::from_secs(1))
            .await;
        assert_eq!(
            cache.get(&key).await.unwrap().expose(),
            "t",
            "1s is raised to 60s"
        );
        cache.invalidate(&key).await;
        assert!(cache.get(&key).await.is_none());
    }
}
