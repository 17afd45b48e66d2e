//! Credential sources in order, first match wins:
//! `--creds` → `$DOCKER_AUTH_CONFIG` → `--authfile`/`$REGISTRY_AUTH_FILE` →
//! `$XDG_RUNTIME_DIR/containers/auth.json` → `$XDG_CONFIG_HOME/containers/auth.json` →
//! `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`) → `~/.dockercfg`.
//! Within a source: `credHelpers[host]` > `credsStore` > `auths`. A helper that is missing,
//! fails, or has no entry never breaks a pull: the lookup goes on, with a warning.

use super::config::{AuthConfig, Lookup, normalize_registry};
use super::{AuthError, Credential, Source, helper};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum SourceSpec {
    CommandLine(Credential),
    Env(String),
    File {
        path: PathBuf,
        legacy: bool,
    },
    /// A CI job's own: registry host[:port] and credentials (GitLab's registry and
    /// dependency proxy, with the job token).
    Job(Vec<(String, Credential)>),
}

#[derive(Debug, Clone, Default)]
pub struct CredentialResolver {
    pub sources: Vec<SourceSpec>,
    /// GitLab Runner's matching: the longest matching path across all sources wins, ties
    /// going to the earlier source (helpers/docker/auth `ConfigForImage`). Otherwise the
    /// first source with any match wins, as podman and skopeo read their files.
    pub longest_path_first: bool,
}

/// The environment the default chain is built from (injected so tests need no global state).
#[derive(Debug, Clone, Default)]
pub struct AuthEnv {
    pub docker_auth_config: Option<String>,
    pub authfile: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl AuthEnv {
    pub fn from_process(authfile_flag: Option<PathBuf>) -> AuthEnv {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        AuthEnv {
            docker_auth_config: std::env::var("DOCKER_AUTH_CONFIG")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            authfile: authfile_flag.or_else(|| var("REGISTRY_AUTH_FILE").map(PathBuf::from)),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
        }
    }

    /// Where `login` writes: `--authfile`, else podman's per-session file, else the user's
    /// config directory.
    pub fn login_file(&self) -> Option<PathBuf> {
        if let Some(p) = &self.authfile {
            return Some(p.clone());
        }
        if let Some(d) = &self.xdg_runtime_dir {
            return Some(d.join("containers/auth.json"));
        }
        self.config_home().map(|c| c.join("containers/auth.json"))
    }

    fn config_home(&self) -> Option<PathBuf> {
        self.xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
    }
}

impl CredentialResolver {
    pub fn new(env: &AuthEnv, command_line: Option<Credential>) -> CredentialResolver {
        let mut sources = Vec::new();
        if let Some(c) = command_line {
            sources.push(SourceSpec::CommandLine(c));
        }
        if let Some(j) = &env.docker_auth_config {
            sources.push(SourceSpec::Env(j.clone()));
        }
        let mut file = |path: PathBuf, legacy| sources.push(SourceSpec::File { path, legacy });
        if let Some(p) = &env.authfile {
            file(p.clone(), false);
        }
        if let Some(d) = &env.xdg_runtime_dir {
            file(d.join("containers/auth.json"), false);
        }
        if let Some(c) = env.config_home() {
            file(c.join("containers/auth.json"), false);
        }
        match (&env.docker_config, &env.home) {
            (Some(d), _) => file(d.join("config.json"), false),
            (None, Some(h)) => file(h.join(".docker/config.json"), false),
            _ => {}
        }
        if let Some(h) = &env.home {
            file(h.join(".dockercfg"), true);
        }
        CredentialResolver {
            sources,
            longest_path_first: false,
        }
    }

    /// GitLab Runner's order for a job's images (helpers/docker/auth/auth.go `AllConfigs`):
    /// `$DOCKER_AUTH_CONFIG` (the job's, else the runner's environment), the runner user's
    /// `~/.docker/config.json` then `~/.dockercfg` (the runner reads no `$DOCKER_CONFIG`),
    /// the job's own credentials; then skiff's other sources.
    pub fn runner_order(env: &AuthEnv, job: Vec<(String, Credential)>) -> CredentialResolver {
        let mut sources = Vec::new();
        if let Some(j) = &env.docker_auth_config {
            sources.push(SourceSpec::Env(j.clone()));
        }
        if let Some(h) = &env.home {
            let file = |rel: &str, legacy| SourceSpec::File {
                path: h.join(rel),
                legacy,
            };
            sources.extend([file(".docker/config.json", false), file(".dockercfg", true)]);
        }
        if !job.is_empty() {
            sources.push(SourceSpec::Job(job));
        }
        let rest = CredentialResolver::new(
            &AuthEnv {
                docker_auth_config: None,
                ..env.clone()
            },
            None,
        );
        for spec in rest.sources {
            let known = sources.iter().any(|s| match (s, &spec) {
                (SourceSpec::File { path: a, .. }, SourceSpec::File { path: b, .. }) => a == b,
                _ => false,
            });
            if !known {
                sources.push(spec);
            }
        }
        CredentialResolver {
            sources,
            longest_path_first: true,
        }
    }

    /// Credentials for `name` (`registry/repository`), and where they came from.
    /// Unreadable or corrupt sources are errors: a typo in a config must not silently
    /// turn into an anonymous pull of the wrong thing.
    pub async fn resolve(&self, name: &str) -> Result<Option<(Credential, Source)>, AuthError> {
        if self.longest_path_first {
            return self.resolve_longest_path(name).await;
        }
        let registry = name.split('/').next().unwrap_or(name);
        for spec in &self.sources {
            let (cfg, source) = match spec {
                SourceSpec::CommandLine(c) => return Ok(Some((c.clone(), Source::CommandLine))),
                SourceSpec::Env(json) => (
                    AuthConfig::parse(json, "$DOCKER_AUTH_CONFIG", false)?,
                    Source::EnvDockerAuthConfig,
                ),
                SourceSpec::Job(entries) => {
                    let want = normalize_registry(registry);
                    let host = |url: &str| {
                        let bare = url.split_once("://").map_or(url, |(_, rest)| rest);
                        normalize_registry(bare.split('/').next().unwrap_or(bare))
                    };
                    match entries.iter().find(|(url, _)| host(url) == want) {
                        Some((_, c)) => return Ok(Some((c.clone(), Source::JobPayload))),
                        None => continue,
                    }
                }
                SourceSpec::File { path, legacy } => match AuthConfig::load(path, *legacy)? {
                    Some(c) => (c, Source::File(path.clone())),
                    None => continue,
                },
            };
            if let Some(helper_name) = cfg.helper_for(registry) {
                match helper::get(helper_name, registry).await {
                    Ok(Some(c)) => {
                        let src = Source::Helper {
                            name: helper_name.to_string(),
                            within: Box::new(source),
                        };
                        return Ok(Some((c, src)));
                    }
                    Ok(None) => tracing::debug!(
                        "credential helper docker-credential-{helper_name} has no entry for {registry}"
                    ),
                    Err(AuthError::HelperName(n)) => return Err(AuthError::HelperName(n)),
                    Err(e) => tracing::warn!("{e}; trying other credentials (from {source})"),
                }
            }
            match cfg.lookup(name) {
                Lookup::Found(c) => return Ok(Some((c, source))),
                Lookup::Empty | Lookup::NotFound => {}
            }
        }
        Ok(None)
    }
}

impl CredentialResolver {
    /// The runner's rule: every source read once, then each path from the most specific
    /// (`host/a/b`, `host/a`, `host`) asked of every source in order. Helpers (`credHelpers`,
    /// `credsStore`) answer for the host, as the runner expands them per server.
    async fn resolve_longest_path(
        &self,
        name: &str,
    ) -> Result<Option<(Credential, Source)>, AuthError> {
        let path = super::config::runner_image_path(name);
        let registry = path.split('/').next().unwrap_or(&path).to_string();
        let mut loaded = Vec::new();
        for spec in &self.sources {
            match spec {
                SourceSpec::CommandLine(c) => return Ok(Some((c.clone(), Source::CommandLine))),
                SourceSpec::Env(json) => loaded.push((
                    Loaded::Config(AuthConfig::parse(json, "$DOCKER_AUTH_CONFIG", false)?),
                    Source::EnvDockerAuthConfig,
                )),
                SourceSpec::File { path, legacy } => {
                    if let Some(c) = AuthConfig::load(path, *legacy)? {
                        loaded.push((Loaded::Config(c), Source::File(path.clone())));
                    }
                }
                SourceSpec::Job(entries) => loaded.push((Loaded::Job(entries), Source::JobPayload)),
            }
        }
        for candidate in super::config::lookup_order(&path) {
            for (source, from) in &loaded {
                let found = match source {
                    Loaded::Config(cfg) => {
                        if candidate == registry
                            && let Some(helper_name) = cfg.helper_for(&registry)
                        {
                            match helper::get(helper_name, &registry).await {
                                Ok(Some(c)) => {
                                    let src = Source::Helper {
                                        name: helper_name.to_string(),
                                        within: Box::new(from.clone()),
                                    };
                                    return Ok(Some((c, src)));
                                }
                                Ok(None) => {}
                                Err(AuthError::HelperName(n)) => {
                                    return Err(AuthError::HelperName(n));
                                }
                                Err(e) => {
                                    tracing::warn!("{e}; trying other credentials (from {from})")
                                }
                            }
                        }
                        match cfg.lookup_path(candidate) {
                            Lookup::Found(c) => Some(c),
                            Lookup::Empty | Lookup::NotFound => None,
                        }
                    }
                    Loaded::Job(entries) => entries
                        .iter()
                        .find(|(url, _)| {
                            let bare = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                            super::config::runner_image_path(bare.trim_end_matches('/'))
                                == candidate
                        })
                        .map(|(_, c)| c.clone()),
                };
                if let Some(c) = found {
                    return Ok(Some((c, from.clone())));
                }
            }
        }
        Ok(None)
    }
}

/// A source, read.
enum Loaded<'a> {
    Config(AuthConfig),
    Job(&'a [(String, Credential)]),
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// `body` at `rel` under `dir`, its directories made.
    fn write_under(dir: &std::path::Path, rel: &str, body: String) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
    }

    fn auth_json(host: &str, user: &str, pass: &str) -> String {
        let a = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        serde_json::json!({"auths": {host: {"auth": a}}}).to_string()
    }

    #[tokio::test]
    async fn precedence_table() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |rel: &str, body: String| write_under(d, rel, body);
        write("authfile.json", auth_json("reg.example", "authfile", "x"));
        write(
            "run/containers/auth.json",
            auth_json("reg.example", "runtime", "x"),
        );
        write(
            "cfg/containers/auth.json",
            auth_json("reg.example", "config", "x"),
        );
        write(
            "home/.docker/config.json",
            auth_json("reg.example", "docker", "x"),
        );
        write(
            "home/.dockercfg",
            r#"{"reg.example":{"auth":"bGVnYWN5Ong="}}"#.into(),
        );
        let full = AuthEnv {
            docker_auth_config: Some(auth_json("reg.example", "env", "x")),
            authfile: Some(d.join("authfile.json")),
            xdg_runtime_dir: Some(d.join("run")),
            xdg_config_home: Some(d.join("cfg")),
            docker_config: None,
            home: Some(d.join("home")),
        };
        let user = |env: &AuthEnv| {
            let env = env.clone();
            async move {
                CredentialResolver::new(&env, None)
                    .resolve("reg.example/a/b")
                    .await
                    .unwrap()
                    .map(|(c, _)| c.username)
            }
        };
        let mut env = full.clone();
        assert_eq!(user(&env).await.as_deref(), Some("env"));
        env.docker_auth_config = None;
        assert_eq!(user(&env).await.as_deref(), Some("authfile"));
        env.authfile = None;
        assert_eq!(user(&env).await.as_deref(), Some("runtime"));
        env.xdg_runtime_dir = None;
        assert_eq!(user(&env).await.as_deref(), Some("config"));
        env.xdg_config_home = Some(d.join("nothing-here"));
        assert_eq!(user(&env).await.as_deref(), Some("docker"));
        env.docker_config = Some(d.join("nothing-here"));
        assert_eq!(user(&env).await.as_deref(), Some("legacy"));
        env.home = Some(d.join("nothing-here"));
        assert_eq!(user(&env).await, None);
        // An entry for another registry does not match.
        let r = CredentialResolver::new(&full, None)
            .resolve("other.example/x")
            .await
            .unwrap();
        assert!(r.is_none());
    }

    #[tokio::test]
    async fn missing_helper_falls_back_to_auths() {
        let json = serde_json::json!({
            "auths": {"reg.example": {"auth": base64::engine::general_purpose::STANDARD.encode("static:pw")}},
            "credsStore": "skiff-test-helper-that-does-not-exist",
        })
        .to_string();
        let env = AuthEnv {
            docker_auth_config: Some(json),
            ..Default::default()
        };
        let (c, src) = CredentialResolver::new(&env, None)
            .resolve("reg.example/x")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "static");
        assert_eq!(src.to_string(), "$DOCKER_AUTH_CONFIG");
        let none = CredentialResolver::new(&env, None)
            .resolve("public.example/x")
            .await
            .unwrap();
        assert!(
            none.is_none(),
            "a missing credsStore helper must not break public pulls"
        );
    }

    #[tokio::test]
    async fn traversal_in_helper_name_is_refused() {
        let json = serde_json::json!({"credHelpers": {"reg.example": "../../bin/sh"}}).to_string();
        let env = AuthEnv {
            docker_auth_config: Some(json),
            ..Default::default()
        };
        let e = CredentialResolver::new(&env, None)
            .resolve("reg.example/x")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("path traversal"), "{e}");
    }

    #[tokio::test]
    async fn a_jobs_sources_go_in_the_runners_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |rel: &str, body: String| write_under(d, rel, body);
        write(
            "home/.docker/config.json",
            auth_json("reg.example", "docker", "x"),
        );
        write(
            "run/containers/auth.json",
            auth_json("reg.example", "podman", "x"),
        );
        write(
            "dc/config.json",
            auth_json("reg.example", "docker-config-var", "x"),
        );
        let job = vec![(
            "reg.example".to_string(),
            Credential::basic("gitlab-ci-token", "t"),
        )];
        let env = AuthEnv {
            docker_auth_config: Some(auth_json("reg.example", "env", "x")),
            xdg_runtime_dir: Some(d.join("run")),
            docker_config: Some(d.join("dc")),
            home: Some(d.join("home")),
            ..Default::default()
        };
        // Each row takes the winner away: the next source answers.
        let mut env_now = env.clone();
        let mut job_now = job.clone();
        let steps: &[(&str, &str)] = &[
            ("$DOCKER_AUTH_CONFIG", "env"),
            ("home docker config", "docker"),
            ("job payload", "gitlab-ci-token"),
            ("skiff's own files", "podman"),
            ("$DOCKER_CONFIG, read by skiff only", "docker-config-var"),
        ];
        for (i, (what, want)) in steps.iter().enumerate() {
            let found = CredentialResolver::runner_order(&env_now, job_now.clone())
                .resolve("reg.example/group/app")
                .await
                .unwrap()
                .map(|(c, src)| (c.username, src));
            let (user, source) = found.unwrap_or_else(|| panic!("{what}: nothing"));
            assert_eq!(user, *want, "{what}");
            if *want == "gitlab-ci-token" {
                assert_eq!(source.to_string(), "job payload (GitLab Registry)");
            }
            match i {
                0 => env_now.docker_auth_config = None,
                1 => std::fs::remove_file(d.join("home/.docker/config.json")).unwrap(),
                2 => job_now.clear(),
                3 => std::fs::remove_file(d.join("run/containers/auth.json")).unwrap(),
                _ => {}
            }
        }
        // The runner's matching: the longest path across all sources wins, whatever the
        // source's rank; a scheme key (docker's `https://host/v1/`) stands for its host.
        write(
            "home/.docker/config.json",
            auth_json("reg.example/group", "group-deploy", "x"),
        );
        let env = AuthEnv {
            docker_auth_config: Some(auth_json("https://reg.example/v1/", "env", "x")),
            home: Some(d.join("home")),
            ..Default::default()
        };
        let runner = CredentialResolver::runner_order(&env, job.clone());
        for (image, want) in [
            ("reg.example/group/app", "group-deploy"),
            ("reg.example/other/app", "env"),
        ] {
            let (c, _) = runner.resolve(image).await.unwrap().unwrap();
            assert_eq!(c.username, want, "{image}");
        }
        // podman's and skopeo's rule elsewhere: the first source with a match.
        let first = CredentialResolver::new(&env, None)
            .resolve("reg.example/group/app")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.0.username, "env");

        // The job's credentials are for their registry only (host and port as given).
        let other = CredentialResolver::runner_order(&AuthEnv::default(), job.clone())
            .resolve("reg.example:5000/group/app")
            .await
            .unwrap();
        assert!(other.is_none());
    }
}
