//! docker `config.json`, podman `auth.json` and legacy `.dockercfg`: parsing, key lookup with
//! docker's and containers/image's normalization rules, and atomic updates for login/logout.

use super::{AuthError, Credential, Secret};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// One parsed credential file (or `$DOCKER_AUTH_CONFIG`).
#[derive(Debug, Default, Clone)]
pub struct AuthConfig {
    pub auths: BTreeMap<String, AuthEntry>,
    pub cred_helpers: BTreeMap<String, String>,
    pub creds_store: Option<String>,
    pub legacy: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AuthEntry {
    pub auth: Option<Secret>,
    pub identity_token: Option<Secret>,
}

/// What a lookup in one file found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A credential from the file's `auths`.
    Found(Credential),
    /// An entry exists but holds nothing usable (e.g. `{}` next to a credsStore).
    Empty,
    NotFound,
}

impl AuthConfig {
    pub fn parse(text: &str, source_name: &str, legacy: bool) -> Result<AuthConfig, AuthError> {
        let perr = |reason: String| AuthError::Parse {
            source_name: source_name.to_string(),
            reason,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| perr(format!("unmarshaling JSON: {e}")))?;
        let Value::Object(top) = value else {
            return Err(perr("expected a JSON object".into()));
        };
        let mut cfg = AuthConfig {
            legacy,
            ..Default::default()
        };
        let auths = if legacy {
            Some(&top)
        } else {
            match top.get("auths") {
                None | Some(Value::Null) => None,
                Some(Value::Object(m)) => Some(m),
                Some(_) => return Err(perr("\"auths\" must be an object".into())),
            }
        };
        if let Some(auths) = auths {
            for (key, v) in auths {
                let Value::Object(entry) = v else {
                    return Err(perr(format!("entry {key:?} must be an object")));
                };
                let s = |k: &str| {
                    entry
                        .get(k)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                };
                cfg.auths.insert(
                    key.clone(),
                    AuthEntry {
                        auth: s("auth").map(Secret::new),
                        identity_token: s("identitytoken").map(Secret::new),
                    },
                );
            }
        }
        if !legacy {
            if let Some(Value::Object(h)) = top.get("credHelpers") {
                for (k, v) in h {
                    if let Some(name) = v.as_str() {
                        cfg.cred_helpers.insert(k.clone(), name.to_string());
                    }
                }
            }
            cfg.creds_store = top
                .get("credsStore")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
        }
        Ok(cfg)
    }

    /// Reads a file; a missing file is an empty config, an unparsable one is an error.
    pub fn load(path: &Path, legacy: bool) -> Result<Option<AuthConfig>, AuthError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(Self::parse(
                &text,
                &path.display().to_string(),
                legacy,
            )?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(AuthError::Read {
                path: path.to_path_buf(),
                error,
            }),
        }
    }

    /// The credential helper configured for `registry`: `credHelpers[host]`, else `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        let normalized = normalize_registry(registry);
        self.cred_helpers
            .iter()
            .find(|(k, _)| normalize_registry(&key_to_registry(k)) == normalized)
            .map(|(_, v)| v.as_str())
            .or(self.creds_store.as_deref())
    }

    /// The entry whose key names exactly `path` (`host[:port][/namespace...]`) as GitLab
    /// Runner reads keys (helpers/docker/auth `convertToRegistryPath`): with a scheme, its
    /// host alone; without, the path with a trailing `/` and a last segment's `:tag` cut; the
    /// host lowercased, `index.docker.io` as `docker.io`.
    pub fn lookup_path(&self, path: &str) -> Lookup {
        match self.auths.iter().find(|(k, _)| runner_key_path(k) == path) {
            Some((_, entry)) => decode(entry),
            None => Lookup::NotFound,
        }
    }

    /// Looks `name` (`registry/repo/path`) up in `auths`: the most specific key first
    /// (`quay.io/org/repo` before `quay.io/org` before `quay.io`), then keys normalized the
    /// way docker writes them (`https://index.docker.io/v1/`, schemes, `/v1/` paths).
    pub fn lookup(&self, name: &str) -> Lookup {
        let registry = name.split('/').next().unwrap_or(name);
        let candidates: Vec<&str> = if self.legacy {
            vec![registry]
        } else {
            lookup_order(name)
        };
        for key in candidates {
            if let Some(entry) = self.auths.get(key) {
                return decode(entry);
            }
        }
        let want = normalize_registry(registry);
        // BTreeMap order makes the choice deterministic when keys normalize alike.
        for (key, entry) in &self.auths {
            if normalize_registry(&key_to_registry_for(key, self.legacy)) == want {
                return decode(entry);
            }
        }
        Lookup::NotFound
    }
}

/// `quay.io/a/b` → [`quay.io/a/b`, `quay.io/a`, `quay.io`].
pub fn lookup_order(name: &str) -> Vec<&str> {
    let mut out = vec![name];
    let mut cur = name;
    while let Some(i) = cur.rfind('/') {
        cur = &cur[..i];
        out.push(cur);
    }
    out
}

fn decode(entry: &AuthEntry) -> Lookup {
    let Some(auth) = &entry.auth else {
        return match &entry.identity_token {
            Some(t) => Lookup::Found(Credential {
                username: String::new(),
                password: Secret::default(),
                identity_token: Some(t.clone()),
            }),
            None => Lookup::Empty,
        };
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(auth.expose().trim()) else {
        tracing::warn!("ignoring an auth entry that is not valid base64");
        return Lookup::Empty;
    };
    let text = String::from_utf8_lossy(&raw);
    let Some((user, pass)) = text.split_once(':') else {
        tracing::warn!("ignoring an auth entry without a ':' separator");
        return Lookup::Empty;
    };
    Lookup::Found(Credential {
        username: user.to_string(),
        password: Secret::new(pass.trim_matches('\0')),
        identity_token: entry.identity_token.clone(),
    })
}

/// docker's `ConvertToHostname`: strip a scheme and any path.
/// A config key as GitLab Runner turns it into a registry path (`lookup_path`).
pub fn runner_key_path(key: &str) -> String {
    let lower = key.to_ascii_lowercase();
    let path = match lower.split_once("://") {
        Some(_) => key_to_registry_for(key, true),
        None => {
            let trimmed = key.trim_end_matches('/');
            match trimmed.rsplit_once('/') {
                Some((head, last)) => match last.split_once(':') {
                    Some((name, _)) => format!("{head}/{name}"),
                    None => trimmed.to_string(),
                },
                None => trimmed.to_string(),
            }
        }
    };
    runner_image_path(&path)
}

/// An image's repository path as GitLab Runner matches it: the host lowercased,
/// `index.docker.io` as `docker.io`.
pub fn runner_image_path(name: &str) -> String {
    let (host, rest) = name.split_once('/').unwrap_or((name, ""));
    let host = match host.to_ascii_lowercase().as_str() {
        "index.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    };
    if rest.is_empty() {
        host
    } else {
        format!("{host}/{rest}")
    }
}

pub fn key_to_registry(key: &str) -> String {
    key_to_registry_for(key, true)
}

fn key_to_registry_for(key: &str, cut_path: bool) -> String {
    let lower = key.to_ascii_lowercase();
    let (stripped, had_scheme) = match lower.split_once("://") {
        Some((_, rest)) => (&key[key.len() - rest.len()..], true),
        None => (key, false),
    };
    if had_scheme || cut_path {
        stripped.split('/').next().unwrap_or(stripped).to_string()
    } else {
        stripped.to_string()
    }
}

/// Docker Hub has several spellings; everything else compares as is.
pub fn normalize_registry(registry: &str) -> String {
    match registry {
        "registry-1.docker.io" | "docker.io" | "index.docker.io" => "index.docker.io".into(),
        other => other.to_string(),
    }
}

/// The key a login writes: docker's historical key for Docker Hub, the name otherwise.
pub fn login_key(name: &str, docker_compat: bool) -> String {
    if docker_compat
        && matches!(
            name,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    {
        "https://index.docker.io/v1/".into()
    } else {
        name.to_string()
    }
}

/// Adds or replaces `key` in the file at `path`, keeping every other field; writes
/// atomically with mode 0600 in a 0700 directory.
pub fn store_credential(path: &Path, key: &str, cred: &Credential) -> Result<(), AuthError> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        cred.username,
        cred.password.expose()
    ));
    update_file(path, |auths| {
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(auth));
        if let Some(t) = &cred.identity_token {
            entry.insert(
                "identitytoken".into(),
                Value::String(t.expose().to_string()),
            );
        }
        auths.insert(key.to_string(), Value::Object(entry));
        true
    })
    .map(|_| ())
}

/// Removes every key that matches `name` (exactly, or normalized). Returns whether one did.
pub fn remove_credential(path: &Path, name: &str) -> Result<bool, AuthError> {
    if !path.exists() {
        return Ok(false);
    }
    let want = normalize_registry(name);
    update_file(path, |auths| {
        let before = auths.len();
        auths.retain(|k, _| {
            k != name && (name.contains('/') || normalize_registry(&key_to_registry(k)) != want)
        });
        auths.len() != before
    })
}

fn update_file(
    path: &Path,
    f: impl FnOnce(&mut Map<String, Value>) -> bool,
) -> Result<bool, AuthError> {
    use std::os::unix::fs::DirBuilderExt;
    let werr = |error| AuthError::Write {
        path: path.to_path_buf(),
        error,
    };
    let mut top: Map<String, Value> = match std::fs::read_to_string(path) {
        Ok(t) => match serde_json::from_str(&t) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(AuthError::Parse {
                    source_name: path.display().to_string(),
                    reason: "not a JSON object; refusing to overwrite it".into(),
                });
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(error) => {
            return Err(AuthError::Read {
                path: path.to_path_buf(),
                error,
            });
        }
    };
    let auths = top
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let changed = f(auths.as_object_mut().expect("object"));
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(werr)?;
        }
    }
    let body = serde_json::to_vec_pretty(&Value::Object(top)).expect("serializable");
    crate::proc::write_atomic_mode(path, &body, Some(0o600), crate::proc::Durability::Fsync)
        .map_err(werr)?;
    Ok(changed)
}

/// A `login`/`logout` argument as a key: scheme and `/v1/`-style paths removed, a namespace kept.
pub fn key_to_registry_for_login(input: &str) -> String {
    let lower = input.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        key_to_registry(input)
    } else {
        input.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn cfg(entries: &[(&str, &str)], legacy: bool) -> AuthConfig {
        let mut m = Map::new();
        for (k, v) in entries {
            m.insert(k.to_string(), serde_json::json!({ "auth": b64(v) }));
        }
        let text = if legacy {
            Value::Object(m).to_string()
        } else {
            serde_json::json!({ "auths": m }).to_string()
        };
        AuthConfig::parse(&text, "test", legacy).unwrap()
    }

    fn user_of(c: &AuthConfig, name: &str) -> Option<String> {
        match c.lookup(name) {
            Lookup::Found(cred) => Some(format!("{}/{}", cred.username, cred.password.expose())),
            _ => None,
        }
    }

    // Vectors from containers/image's config_test.go.
    #[test]
    fn lookup_table() {
        let full = cfg(
            &[
                ("example.org", "example:org"),
                ("index.docker.io", "index:docker.io"),
                ("docker.io", "docker:io"),
                ("localhost", "local:host"),
                ("localhost:5000", "local:host-5000"),
                ("10.10.30.45", "10.10:30.45"),
                ("10.10.30.45:5000", "10.10:30.45-5000"),
                ("https://normalize.example.org/v1", "normalize:example"),
            ],
            false,
        );
        let abnormal = cfg(
            &[
                ("example.org", "example:org"),
                ("https://index.docker.io/v1", "index:docker.io"),
                ("https://127.0.0.1:5000", "127.0:0.1-5000"),
                ("http://localhost", "local:host"),
                ("https://localhost:5001", "local:host-5001"),
                ("localhost:5000", "local:host-5000"),
            ],
            false,
        );
        let refpath = cfg(
            &[
                ("example.org/repo", "example:org"),
                ("example.org", "local:host"),
                ("docker.io/vendor", "first:level"),
                ("docker.io", "top:level"),
                ("docker.io/library/busybox", "library:busybox"),
                ("docker.io/library", "library:other"),
            ],
            false,
        );
        let legacy = cfg(
            &[
                ("http://index.docker.io/v1", "docker:io-legacy"),
                ("https://localhost/v1", "local:host-legacy"),
            ],
            true,
        );
        let cases: &[(&AuthConfig, &str, Option<&str>)] = &[
            (&full, "example.org", Some("example/org")),
            (&full, "registry.example.org", None),
            (&full, "docker.io", Some("docker/io")),
            (&full, "normalize.example.org", Some("normalize/example")),
            (&full, "localhost", Some("local/host")),
            (&full, "10.10.30.45:5000", Some("10.10/30.45-5000")),
            (&abnormal, "docker.io", Some("index/docker.io")),
            (&abnormal, "localhost:5000", Some("local/host-5000")),
            (&abnormal, "127.0.0.1:5000/x/y", Some("127.0/0.1-5000")),
            (&refpath, "example.org/repo/image", Some("example/org")),
            (&refpath, "example.org/repo", Some("example/org")),
            (&refpath, "example.org/image", Some("local/host")),
            (
                &refpath,
                "docker.io/library/busybox",
                Some("library/busybox"),
            ),
            (
                &refpath,
                "docker.io/library/notbusybox",
                Some("library/other"),
            ),
            (&refpath, "docker.io/vendor/product", Some("first/level")),
            (
                &refpath,
                "docker.io/other-vendor/other-product",
                Some("top/level"),
            ),
            (&legacy, "localhost", Some("local/host-legacy")),
            (&legacy, "docker.io", Some("docker/io-legacy")),
        ];
        for (c, name, want) in cases {
            assert_eq!(user_of(c, name).as_deref(), *want, "{name}");
        }
    }

    #[test]
    fn identity_token_and_empty_entries() {
        let text = serde_json::json!({"auths": {
            "example.org": {"auth": b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": "some very long identity token"},
            "helper.example": {},
            "nocolon.example": {"auth": b64("justuser")},
        }, "credHelpers": {"ecr.example": "ecr-login"}, "credsStore": "desktop"})
        .to_string();
        let c = AuthConfig::parse(&text, "t", false).unwrap();
        let Lookup::Found(cred) = c.lookup("example.org") else {
            panic!()
        };
        assert_eq!(cred.username, "00000000-0000-0000-0000-000000000000");
        assert_eq!(
            cred.identity_token.unwrap().expose(),
            "some very long identity token"
        );
        assert_eq!(c.lookup("helper.example"), Lookup::Empty);
        assert_eq!(c.lookup("nocolon.example"), Lookup::Empty);
        assert_eq!(c.helper_for("ecr.example"), Some("ecr-login"));
        assert_eq!(c.helper_for("other.example"), Some("desktop"));
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let e =
            AuthConfig::parse("Json rocks! Unless it doesn't.", "auth.json", false).unwrap_err();
        assert!(e.to_string().contains("unmarshaling JSON"), "{e}");
    }

    #[test]
    fn key_normalization_table() {
        for (key, want) in [
            ("http://example.com", "example.com"),
            ("https://example.com/v2/", "example.com"),
            ("https://127.0.0.1:6555/v2/", "127.0.0.1:6555"),
            ("127.0.0.1:6556", "127.0.0.1:6556"),
            ("HTTPS://Example.com/v1/", "Example.com"),
        ] {
            assert_eq!(key_to_registry(key), want, "{key}");
        }
        assert_eq!(
            lookup_order("quay.io/user/image"),
            ["quay.io/user/image", "quay.io/user", "quay.io"]
        );
    }

    #[test]
    fn store_and_remove_keep_other_fields_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"keep.example":{"auth":"a2VlcDptZQ=="}},"credHelpers":{"x":"y"}}"#,
        )
        .unwrap();
        store_credential(&path, "new.example:5000", &Credential::basic("u", "p")).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let c = AuthConfig::load(&path, false).unwrap().unwrap();
        assert_eq!(user_of(&c, "new.example:5000").as_deref(), Some("u/p"));
        assert_eq!(user_of(&c, "keep.example").as_deref(), Some("keep/me"));
        assert_eq!(c.cred_helpers.get("x").map(String::as_str), Some("y"));
        assert!(remove_credential(&path, "new.example:5000").unwrap());
        assert!(!remove_credential(&path, "new.example:5000").unwrap());
        let c = AuthConfig::load(&path, false).unwrap().unwrap();
        assert_eq!(user_of(&c, "new.example:5000"), None);
    }
}
