//! `--change` instructions (Dockerfile syntax, as podman import takes them) applied to an
//! image config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR.

use super::ArchiveError;
use serde_json::{Map, Value, json};

const SUPPORTED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// `["a", "b"]` (exec form) or `a b` (shell form, run by /bin/sh -c).
fn command(args: &str) -> Result<Vec<String>, String> {
    let t = args.trim();
    if t.starts_with('[') {
        serde_json::from_str::<Vec<String>>(t)
            .map_err(|e| format!("not a JSON array of strings: {e}"))
    } else if t.is_empty() {
        Err("empty command".into())
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), t.to_string()])
    }
}

/// `K=V K2="v 2"`, or the legacy `K V` form.
fn pairs(args: &str, legacy_space_form: bool) -> Result<Vec<(String, String)>, String> {
    let t = args.trim();
    if legacy_space_form && !t.split_whitespace().next().unwrap_or("").contains('=') {
        let (k, v) = t
            .split_once(char::is_whitespace)
            .ok_or("expected KEY=VALUE")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=').ok_or("expected KEY=VALUE")?;
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').ok_or("unterminated quote")?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        if k.trim().is_empty() {
            return Err("empty key".into());
        }
        out.push((k.trim().to_string(), v));
        rest = next.trim_start();
    }
    Ok(out)
}

/// Applies one instruction to the `config` object of an image config.
pub fn apply(config: &mut Map<String, Value>, instruction: &str) -> Result<(), ArchiveError> {
    let err = |reason: String| ArchiveError::Change {
        instruction: instruction.to_string(),
        reason,
    };
    let (keyword, args) = instruction
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((instruction.trim(), ""));
    let args = args.trim();
    match keyword.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), json!(command(args).map_err(err)?));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), json!(command(args).map_err(err)?));
        }
        "ENV" => {
            let env = config
                .entry("Env")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("array");
            for (k, v) in pairs(args, true).map_err(err)? {
                env.retain(|e| {
                    e.as_str().and_then(|s| s.split_once('=')).map(|(ek, _)| ek) != Some(k.as_str())
                });
                env.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let labels = config
                .entry("Labels")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("object");
            for (k, v) in pairs(args, false).map_err(err)? {
                labels.insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            let ports = config
                .entry("ExposedPorts")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("object");
            for p in args.split_whitespace() {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if port.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(err(format!("invalid port {p:?}")));
                }
                ports.insert(format!("{port}/{proto}"), json!({}));
            }
        }
        "VOLUME" => {
            let list: Vec<String> = if args.starts_with('[') {
                serde_json::from_str(args).map_err(|e| err(e.to_string()))?
            } else {
                args.split_whitespace().map(str::to_string).collect()
            };
            let vols = config
                .entry("Volumes")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("object");
            for v in list {
                vols.insert(v, json!({}));
            }
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" => {
            if args.is_empty() {
                return Err(err("needs a value".into()));
            }
            let key = match keyword.to_ascii_uppercase().as_str() {
                "WORKDIR" => "WorkingDir",
                "USER" => "User",
                _ => "StopSignal",
            };
            config.insert(key.into(), json!(args));
        }
        other => {
            return Err(err(format!(
                "unsupported instruction {other} (supported: {SUPPORTED})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_table() {
        let cases: &[(&str, &str, Value)] = &[
            (
                r#"ENTRYPOINT ["/usr/bin/dumb-init", "/entrypoint"]"#,
                "Entrypoint",
                json!(["/usr/bin/dumb-init", "/entrypoint"]),
            ),
            ("CMD echo hi", "Cmd", json!(["/bin/sh", "-c", "echo hi"])),
            (r#"cmd ["sh"]"#, "Cmd", json!(["sh"])),
            ("WORKDIR /builds", "WorkingDir", json!("/builds")),
            ("USER 1000:1000", "User", json!("1000:1000")),
            (
                "EXPOSE 80 53/udp",
                "ExposedPorts",
                json!({"80/tcp": {}, "53/udp": {}}),
            ),
            (
                r#"LABEL a=b c="d e""#,
                "Labels",
                json!({"a": "b", "c": "d e"}),
            ),
            (
                "VOLUME /data /cache",
                "Volumes",
                json!({"/data": {}, "/cache": {}}),
            ),
            ("STOPSIGNAL SIGTERM", "StopSignal", json!("SIGTERM")),
        ];
        for (instr, key, want) in cases {
            let mut c = Map::new();
            apply(&mut c, instr).unwrap();
            assert_eq!(c[*key], *want, "{instr}");
        }
        let mut c = Map::new();
        apply(&mut c, "ENV A=1 B=2").unwrap();
        apply(&mut c, "ENV A 3").unwrap();
        assert_eq!(
            c["Env"],
            json!(["B=2", "A=3"]),
            "a later ENV replaces the key"
        );
        for bad in [
            "RUN make",
            "EXPOSE http",
            "ENTRYPOINT [oops",
            "WORKDIR",
            "LABEL =x",
            "ENV",
        ] {
            assert!(apply(&mut Map::new(), bad).is_err(), "{bad}");
        }
    }
}
