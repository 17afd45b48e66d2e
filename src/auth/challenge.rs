//! `WWW-Authenticate` challenges (RFC 7235) as registries send them.

use std::collections::BTreeMap;

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
pub fn parse(header: &str) -> Vec<Challenge> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        let c = parse(hub);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));

        let c = parse(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (c[0].scheme.as_str(), c[0].param("realm")),
            ("basic", Some("Registry Realm"))
        );

        let c = parse(r#"BEARER Realm="a\"b",Error="insufficient_scope", empty="""#);
        assert_eq!(c[0].param("realm"), Some("a\"b"));
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert_eq!(c[0].param("empty"), Some(""));

        let c = parse(r#"Basic realm="x", Bearer realm="https://t/token",service=s"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("service"), Some("s"));

        // Scopes whose resource name holds a port keep every colon.
        let c = parse(r#"Bearer realm="r",scope="repository:127.0.0.1:5000/x:pull,push""#);
        assert_eq!(
            c[0].param("scope"),
            Some("repository:127.0.0.1:5000/x:pull,push")
        );

        assert!(parse("").is_empty());
        // Whitespace of any kind between challenges and parameters ends (was an endless loop).
        let c = parse("Bearer\r realm=x,\u{a0}Basic\x0b,\x0crealm=y");
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].param("realm"), c[1].param("realm")),
            (Some("x"), Some("y"))
        );
        let c = parse("Negotiate");
        assert_eq!(c[0].scheme, "negotiate");
    }
}
