//! Image references: docker-style normalization on top of `oci_spec::distribution::Reference`,
//! short-name detection, and the name forms the store and registries use.

use crate::digest::Digest;
use oci_spec::distribution::{ParseError, Reference};
use std::fmt;

pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

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
        Some((first, _)) => !(first.contains('.') || first.contains(':') || first == "localhost"),
    }
}

impl ImageRef {
    /// Parses with docker's rules: `busybox` → `docker.io/library/busybox:latest`,
    /// `index.docker.io` → `docker.io`; `name:tag@digest` keeps both.
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        let err = |reason: String| ReferenceError {
            input: input.to_string(),
            reason,
        };
        let name = input.split(['@']).next().unwrap_or(input);
        let name_no_tag = strip_tag(name);
        if name_no_tag.len() == 64 && name_no_tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                "cannot specify 64-byte hexadecimal strings as a name".into()
            ));
        }
        let parsed = Reference::try_from(input).map_err(|e| {
            // oci-spec reports uppercase as a generic format error; name the real cause.
            let path = match name_no_tag.split_once('/') {
                Some((first, rest)) if !is_short_name(name_no_tag) => {
                    let _ = first;
                    rest
                }
                _ => name_no_tag,
            };
            if e == ParseError::ReferenceInvalidFormat
                && path.chars().any(|c| c.is_ascii_uppercase())
            {
                err("repository name must be lowercase".into())
            } else {
                err(e.to_string())
            }
        })?;
        // oci-spec treats "Upper/x" as a domain; docker requires a lowercase path after it.
        if is_short_name(name_no_tag) && name_no_tag.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase".into()));
        }
        let full_name = format!("{}/{}", parsed.registry(), parsed.repository());
        if full_name.len() > 255 {
            return Err(err(
                "repository name must not be more than 255 characters".into()
            ));
        }
        let digest = match parsed.digest() {
            Some(d) => Some(d.parse::<Digest>().map_err(|e| err(e.to_string()))?),
            None => None,
        };
        Ok(ImageRef {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag: parsed.tag().map(str::to_string),
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

fn strip_tag(name: &str) -> &str {
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
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
            ("busybox@sha256:abc", "invalid reference format"),
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
