//! Bearer tokens: the GET flow (optionally with Basic credentials), the OAuth2 POST flow for
//! identity tokens (falling back to GET as containerd does), and a cache keyed by realm,
//! service and scopes that honours the 60-second minimum lifetime.

use super::{AuthError, Credential, Secret};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const MAX_TOKEN_BODY: usize = 1 << 20;
const MIN_LIFETIME: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "skiff";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub realm: String,
    pub service: String,
    pub scopes: Vec<String>,
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    expires: Instant,
}

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<TokenKey, Cached>>,
}

impl TokenCache {
    pub async fn get(&self, key: &TokenKey) -> Option<Secret> {
        let entries = self.entries.lock().await;
        entries
            .get(key)
            .filter(|c| Instant::now() < c.expires)
            .map(|c| c.token.clone())
    }
    pub async fn put(&self, key: TokenKey, token: Secret, lifetime: Duration) {
        let expires = Instant::now() + lifetime.max(MIN_LIFETIME);
        self.entries
            .lock()
            .await
            .insert(key, Cached { token, expires });
    }
    pub async fn invalidate(&self, key: &TokenKey) {
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
pub async fn fetch(
    http: &reqwest::Client,
    key: &TokenKey,
    cred: Option<&Credential>,
) -> Result<(Secret, Duration), AuthError> {
    let terr = |reason: String| AuthError::Token {
        realm: key.realm.clone(),
        reason,
    };
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
            .map_err(|e| terr(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        // Token servers without the OAuth2 endpoint answer these; GET is the universal flow.
        if !matches!(status, 400 | 401 | 404 | 405) {
            return read_reply(resp, &terr).await;
        }
        tracing::debug!(
            "OAuth2 POST to {} answered {status}; falling back to GET",
            key.realm
        );
    }
    let mut url = url::Url::parse(&key.realm).map_err(|e| terr(format!("invalid realm: {e}")))?;
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
    let resp = req
        .send()
        .await
        .map_err(|e| terr(e.without_url().to_string()))?;
    read_reply(resp, &terr).await
}

async fn read_reply(
    resp: reqwest::Response,
    terr: &impl Fn(String) -> AuthError,
) -> Result<(Secret, Duration), AuthError> {
    let status = resp.status();
    let body = crate::registry::read_limited(resp, MAX_TOKEN_BODY)
        .await
        .map_err(|e| terr(e.to_string()))?;
    if !status.is_success() {
        let detail = crate::registry::error_summary(&body);
        return Err(terr(format!("HTTP {status}{detail}")));
    }
    let reply: TokenReply =
        serde_json::from_slice(&body).map_err(|e| terr(format!("unparsable token reply: {e}")))?;
    let token = reply
        .token
        .filter(|t| !t.is_empty())
        .or(reply.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| terr("reply holds neither token nor access_token".into()))?;
    let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(60).max(60) as u64);
    Ok((Secret::new(token), lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

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
