//! A token issuer for the registry's `auth.token`: checks Basic credentials or an OAuth2
//! refresh token, and signs real RS256 JWTs (x5c header) the registry verifies.

use super::http::{Request, Server, respond};
use super::registry::{TOKEN_ISSUER, TOKEN_SERVICE};
use base64::Engine as _;
use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct IssuerState {
    pub users: HashMap<String, String>,
    pub refresh_tokens: HashMap<String, String>,
    /// Answer 404 to POST, like token servers without the OAuth2 endpoint.
    pub post_disabled: bool,
    /// Anonymous users may pull repositories under this prefix.
    pub anonymous_pull_prefix: Option<String>,
    pub gets: usize,
    pub posts: usize,
    pub authorizations_seen: Vec<String>,
}

pub struct Issuer {
    pub server: Server,
    pub cert: PathBuf,
    pub state: Arc<Mutex<IssuerState>>,
}

impl Issuer {
    pub fn start(dir: &Path, state: IssuerState) -> Issuer {
        super::openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "3650",
                "-subj",
                "/CN=skiff-test-issuer",
            ],
        );
        super::openssl(
            dir,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out",
                "key.der",
            ],
        );
        super::openssl(
            dir,
            &[
                "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
            ],
        );
        let key =
            ring::signature::RsaKeyPair::from_pkcs8(&std::fs::read(dir.join("key.der")).unwrap())
                .expect("pkcs8 key");
        let cert_der = std::fs::read(dir.join("cert.der")).unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert_der);
        let state = Arc::new(Mutex::new(state));
        let st = state.clone();
        let server = Server::start(move |req, stream| handle(&req, stream, &st, &key, &x5c));
        Issuer {
            server,
            cert: dir.join("cert.pem"),
            state,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn handle(
    req: &Request,
    stream: &mut TcpStream,
    state: &Arc<Mutex<IssuerState>>,
    key: &ring::signature::RsaKeyPair,
    x5c: &str,
) {
    let deny = |stream: &mut TcpStream, msg: &str| {
        let body =
            serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": msg}]}).to_string();
        respond(
            stream,
            401,
            &[("Content-Type", "application/json".into())],
            body.as_bytes(),
        );
    };
    if req.path != "/token" {
        respond(stream, 404, &[], b"not found");
        return;
    }
    let mut st = state.lock().unwrap();
    if let Some(a) = req.header("authorization") {
        st.authorizations_seen.push(a.to_string());
    }
    let (user, scopes): (Option<String>, Vec<String>) = match req.method.as_str() {
        "GET" => {
            st.gets += 1;
            let user = match req
                .header("authorization")
                .and_then(|a| a.strip_prefix("Basic "))
            {
                None => None,
                Some(b) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .unwrap_or_default();
                    let text = String::from_utf8_lossy(&raw).to_string();
                    let (u, p) = text.split_once(':').unwrap_or((&text, ""));
                    // A refresh token as the password is the GET fallback of the OAuth2 flow.
                    let valid = st.users.get(u).map(String::as_str) == Some(p)
                        || st.refresh_tokens.get(p).map(String::as_str) == Some(u);
                    if !valid {
                        drop(st);
                        return deny(stream, "invalid username/password");
                    }
                    Some(u.to_string())
                }
            };
            (user, req.query_all("scope"))
        }
        "POST" => {
            st.posts += 1;
            if st.post_disabled {
                drop(st);
                return respond(stream, 404, &[], b"404 page not found");
            }
            let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
                .into_owned()
                .collect();
            let user = match form.get("grant_type").map(String::as_str) {
                Some("refresh_token") => st
                    .refresh_tokens
                    .get(form.get("refresh_token").map(String::as_str).unwrap_or(""))
                    .cloned(),
                Some("password") => {
                    let u = form.get("username").cloned().unwrap_or_default();
                    (st.users.get(&u) == form.get("password")).then_some(u)
                }
                _ => None,
            };
            let Some(user) = user else {
                drop(st);
                return deny(stream, "invalid grant");
            };
            let scopes = form
                .get("scope")
                .map(|s| s.split(' ').map(str::to_string).collect())
                .unwrap_or_default();
            (Some(user), scopes)
        }
        _ => {
            drop(st);
            return respond(stream, 405, &[], b"");
        }
    };
    let mut access = Vec::new();
    for scope in scopes.iter().filter(|s| !s.is_empty()) {
        let Some((typ, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| match &user {
                Some(_) => true,
                None => {
                    *a == "pull"
                        && st
                            .anonymous_pull_prefix
                            .as_deref()
                            .is_some_and(|p| name.starts_with(p))
                }
            })
            .collect();
        if !granted.is_empty() {
            access.push(serde_json::json!({"type": typ, "name": name, "actions": granted}));
        }
    }
    drop(st);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": user.clone().unwrap_or_default(), "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 5, "iat": now, "jti": format!("{now}-{}", rand_u64()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    let token = format!("{signing_input}.{}", b64url(&sig));
    let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300, "issued_at": skiff::time::now_rfc3339()});
    respond(
        stream,
        200,
        &[("Content-Type", "application/json".into())],
        body.to_string().as_bytes(),
    );
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    u64::from_le_bytes(b)
}
