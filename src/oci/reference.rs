//! Image references: the distribution grammar (`[domain/]path[:tag][@digest]`) with docker's
//! normalization, short-name detection, and the name forms the store and registries use.
//!
//! Parsed by hand rather than with oci-spec's `Reference`: that one compiles a large regex on
//! first use, which costs ~40 ms and ~18 MB per process, more than a whole warm `skiff run`
//! may take.

use crate::oci::digest::Digest;
use std::fmt;

pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// A fully normalized reference: `registry/repository[:tag][@digest]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// True when the first path component does not name a registry (no `.`, no `:`, not
/// `localhost`): such names are resolved through `unqualified-search-registries`.
pub fn is_short_name(input: &str) -> bool {
    let name = input.split('@').next().unwrap_or(input);
    match name.split_once('/') {
        None => true,
        Some((first, _)) => !is_domain_like(first),
    }
}

fn is_domain_like(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
}

/// `host[:port]`, host a domain name, IPv4 address or `[IPv6]`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host.split('.').all(valid_domain_component)
}

/// `[a-z0-9]+ (([._]|__|[-]*) [a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_LENGTH_MAX
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

impl ImageRef {
    /// Parses with docker's rules: `busybox` → `docker.io/library/busybox:latest`,
    /// `index.docker.io` → `docker.io`; `name:tag@digest` keeps both.
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(err("repository name must have at least one component"));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(d.parse::<Digest>().map_err(|e| match e {
                    crate::oci::digest::DigestError::Invalid { reason, .. } => {
                        err(&format!("invalid digest: {reason}"))
                    }
                    other => err(&other.to_string()),
                })?),
            ),
            None => (input, None),
        };
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if !name_tag[i + 1..].contains('/') => {
                (&name_tag[..i], Some(&name_tag[i + 1..]))
            }
            _ => (name_tag, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(err("invalid tag format"));
            }
        }
        if name.is_empty() {
            return Err(err("invalid reference format"));
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("cannot specify 64-byte hexadecimal strings as a name"));
        }
        let (mut registry, mut path) = match name.split_once('/') {
            Some((first, rest)) if is_domain_like(first) => {
                if !valid_domain(first) {
                    return Err(err("invalid reference format"));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        for component in path.split('/') {
            if !valid_path_component(component) {
                let lower = component.to_ascii_lowercase();
                return Err(err(if lower != component && valid_path_component(&lower) {
                    "repository name must be lowercase"
                } else {
                    "invalid reference format"
                }));
            }
        }
        if registry == "index.docker.io" {
            registry = DOCKER_HUB.to_string();
        }
        if registry == DOCKER_HUB && !path.contains('/') {
            path = format!("library/{path}");
        }
        if registry.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(err("repository name must not be more than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef {
            registry,
            repository: path,
            tag,
            digest,
        })
    }

    /// Local naming, as podman's `NormalizeName`: a short name becomes `localhost/NAME`
    /// (not Docker Hub), `:latest` only when neither tag nor digest was given.
    pub fn parse_local(input: &str) -> Result<ImageRef, ReferenceError> {
        if is_short_name(input) {
            ImageRef::parse(&format!("localhost/{input}"))
        } else {
            ImageRef::parse(input)
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What a registry is asked for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    pub fn with_registry(&self, registry: &str, repository: &str) -> ImageRef {
        ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }

    /// The host[:port] to connect to for this registry.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    #[test]
    fn normalization_table() {
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("index.docker.io/vendor/x:1", "docker.io/vendor/x:1"),
            ("vendor/product", "docker.io/vendor/product:latest"),
            ("localhost/foo", "localhost/foo:latest"),
            ("localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1"),
            (
                "127.0.0.1:5000/test/busybox:1",
                "127.0.0.1:5000/test/busybox:1",
            ),
            ("quay.io/a/b/c:tag", "quay.io/a/b/c:tag"),
            ("test.com:5000", "docker.io/library/test.com:5000"),
            ("a.b-c/d__e--f.g_h:T_a.g-1", "a.b-c/d__e--f.g_h:T_a.g-1"),
            ("x/a_b__c---d", "docker.io/x/a_b__c---d:latest"),
            ("[::1]:5000/x/y", "[::1]:5000/x/y:latest"),
            ("Host.Example:443/x", "Host.Example:443/x:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(
                ImageRef::parse(input).unwrap().to_string(),
                *want,
                "{input}"
            );
        }
    }

    #[test]
    fn digest_forms() {
        let r = ImageRef::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), D);
        let r = ImageRef::parse(&format!("quay.io/a/b:1.0@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.digest.as_ref().unwrap().to_string(), D);
        assert_eq!(r.manifest_reference(), D, "the digest wins over the tag");
        assert_eq!(r.to_string(), format!("quay.io/a/b:1.0@{D}"));
    }

    #[test]
    fn invalid_table() {
        let long = format!("quay.io/{}", "a".repeat(260));
        let cases: &[(&str, &str)] = &[
            ("", "at least one component"),
            ("Busybox", "lowercase"),
            ("Uppercase/lowercase:tag", "lowercase"),
            ("quay.io/Foo/bar", "lowercase"),
            (&long, "255"),
            (
                "busybox@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "length",
            ),
            (
                "busybox@md5:ffffffffffffffffffffffffffffffff",
                "unsupported",
            ),
            (
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "64-byte",
            ),
            ("a b", "invalid reference format"),
            (":tag", "invalid reference format"),
        ];
        for (input, want) in cases {
            let e = ImageRef::parse(input).unwrap_err();
            assert!(e.to_string().contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn short_names_and_local_naming() {
        for (input, short) in [
            ("busybox", true),
            ("ns/busybox", true),
            ("library/fedora", true),
            ("localhost/x", false),
            ("quay.io/x", false),
            ("host:5000/x", false),
        ] {
            assert_eq!(is_short_name(input), short, "{input}");
        }
        assert_eq!(
            ImageRef::parse_local("foo").unwrap().to_string(),
            "localhost/foo:latest"
        );
        assert_eq!(
            ImageRef::parse_local("ns/foo:2").unwrap().to_string(),
            "localhost/ns/foo:2"
        );
        assert_eq!(
            ImageRef::parse_local("quay.io/x:1").unwrap().to_string(),
            "quay.io/x:1"
        );
    }
}
