//! `spec:inputs` and `$[[ inputs.NAME ]]`: an included file (a component, or any file with a
//! `spec:` header) declares its inputs, the `include:` entry gives them, and GitLab checks
//! them (required, `type`, `options`, `regex`) and interpolates them into the file before it
//! is merged. A value that is all one `$[[ ]]` keeps its type (a list stays a list).

use serde_yaml_ng::{Mapping, Value};

fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Sequence(_) => "array",
        _ => "other",
    }
}

/// The inputs' values: `given` checked against `spec` (the header's `spec:` mapping).
pub fn resolve(spec: Option<&Mapping>, given: Option<&Mapping>) -> Result<Mapping, String> {
    let declared = spec
        .and_then(|s| s.get("inputs"))
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let given = given.cloned().unwrap_or_default();
    if declared.is_empty() && !given.is_empty() {
        return Err("inputs given, but the included file declares none in `spec:inputs`".into());
    }
    if let Some(unknown) = given.keys().find(|k| !declared.contains_key(*k)) {
        return Err(format!(
            "unknown input name provided: `{}`",
            unknown.as_str().unwrap_or("?")
        ));
    }
    let mut values = Mapping::new();
    for (name, decl) in &declared {
        let n = name.as_str().unwrap_or("?");
        let decl = decl.as_mapping().cloned().unwrap_or_default();
        let value = match (given.get(name), decl.get("default")) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(format!("`{n}` input: required value has not been provided"));
            }
        };
        let want = decl.get("type").and_then(Value::as_str).unwrap_or("string");
        if !["string", "number", "boolean", "array"].contains(&want) {
            return Err(format!("`{n}` input: unknown type `{want}`"));
        }
        if kind(&value) != want {
            return Err(format!("`{n}` input: provided value is not a {want}"));
        }
        if let Some(options) = decl.get("options").and_then(Value::as_sequence)
            && !options.contains(&value)
        {
            return Err(format!(
                "`{n}` input: `{}` cannot be used because it is not in the list of allowed options",
                super::text(&value).unwrap_or_default()
            ));
        }
        if let Some(pattern) = decl.get("regex").and_then(Value::as_str) {
            let source = pattern.trim_start_matches('/').trim_end_matches('/');
            let re = regex::Regex::new(source)
                .map_err(|e| format!("`{n}` input: invalid regex {pattern}: {e}"))?;
            if !re.is_match(&super::text(&value).unwrap_or_default()) {
                return Err(format!(
                    "`{n}` input: provided value does not match required RegEx pattern"
                ));
            }
        }
        values.insert(name.clone(), value);
    }
    Ok(values)
}

/// One `$[[ inputs.NAME | fn | ... ]]`'s value.
fn evaluate(
    expr: &str,
    inputs: &Mapping,
    variable: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    let mut parts = expr.split('|').map(str::trim);
    let path = parts.next().unwrap_or_default();
    let name = path
        .strip_prefix("inputs.")
        .ok_or_else(|| format!("unknown interpolation key: `{path}`"))?;
    let mut value = inputs
        .get(name)
        .cloned()
        .ok_or_else(|| format!("unknown interpolation key: `{name}`"))?;
    for function in parts {
        let text = super::text(&value).ok_or_else(|| format!("{function}: not a string"))?;
        value = Value::String(match function {
            "expand_vars" => {
                let known: Vec<(String, String)> = super::references(&text)
                    .into_iter()
                    .filter_map(|(_, _, n)| Some((n.to_string(), variable(n)?)))
                    .collect();
                // Only defined variables are expanded; others stay as written.
                let mut out = text.clone();
                for (k, v) in known {
                    out = out
                        .replace(&format!("${{{k}}}"), &v)
                        .replace(&format!("${k}"), &v);
                }
                out
            }
            f if f.starts_with("truncate(") && f.ends_with(')') => {
                let args: Vec<usize> = f["truncate(".len()..f.len() - 1]
                    .split(',')
                    .map(|a| {
                        a.trim()
                            .parse()
                            .map_err(|_| format!("{f}: expected two numbers"))
                    })
                    .collect::<Result<_, _>>()?;
                let [start, length] = args[..] else {
                    return Err(format!("{f}: expected two numbers"));
                };
                text.chars().skip(start).take(length).collect()
            }
            other => return Err(format!("unknown interpolation function: `{other}`")),
        });
    }
    Ok(value)
}

/// `s` with its `$[[ ]]` interpolated; all of it one `$[[ ]]`: the input's own value.
fn interpolate_text(
    s: &str,
    inputs: &Mapping,
    variable: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    if !s.contains("$[[") {
        return Ok(Value::String(s.to_string()));
    }
    let trimmed = s.trim();
    if let Some(inner) = trimmed
        .strip_prefix("$[[")
        .and_then(|r| r.strip_suffix("]]"))
        && !inner.contains("]]")
    {
        return evaluate(inner.trim(), inputs, variable);
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("$[[") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let end = after
            .find("]]")
            .ok_or_else(|| format!("an unclosed $[[ in {s:?}"))?;
        let value = evaluate(after[..end].trim(), inputs, variable)?;
        out.push_str(&match value {
            Value::Sequence(_) => serde_json::to_string(&value).unwrap_or_default(),
            other => super::text(&other).unwrap_or_default(),
        });
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// A file's configuration with its inputs applied: `given` checked against `spec` and
/// interpolated. Unchanged when the file declares none and none are given.
pub fn apply(
    config: Mapping,
    spec: Option<&Mapping>,
    given: Option<&Mapping>,
    variable: &dyn Fn(&str) -> Option<String>,
) -> Result<Mapping, String> {
    if spec.is_none() && given.is_none() {
        return Ok(config);
    }
    let values = resolve(spec, given)?;
    match interpolate(&Value::Mapping(config), &values, variable)? {
        Value::Mapping(m) => Ok(m),
        _ => unreachable!("a mapping interpolates to a mapping"),
    }
}

/// `config` with every `$[[ inputs.NAME ]]` (in keys and values) replaced.
pub fn interpolate(
    config: &Value,
    inputs: &Mapping,
    variable: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    Ok(match config {
        Value::String(s) => interpolate_text(s, inputs, variable)?,
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|v| interpolate(v, inputs, variable))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, v) in m {
                out.insert(
                    interpolate(k, inputs, variable)?,
                    interpolate(v, inputs, variable)?,
                );
            }
            Value::Mapping(out)
        }
        Value::Tagged(t) => Value::Tagged(Box::new(serde_yaml_ng::value::TaggedValue {
            tag: t.tag.clone(),
            value: interpolate(&t.value, inputs, variable)?,
        })),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Mapping {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn inputs_checked_and_interpolated() {
        let spec = yaml(
            "inputs:\n  stage: {default: test}\n  job-prefix: {}\n  parallel: {type: number, default: 1}\n  verbose: {type: boolean, default: false}\n  env: {options: [dev, prod], default: dev}\n  version: {regex: '^v\\d+', default: v1}\n  args: {type: array, default: [a, b]}\n",
        );
        let given = yaml("job-prefix: lint\nparallel: 3\nenv: prod\n");
        let inputs = resolve(Some(&spec), Some(&given)).unwrap();
        let config: Value = serde_yaml_ng::from_str(
            "\"$[[ inputs.job-prefix ]]-check\":\n  stage: $[[ inputs.stage ]]\n  parallel: $[[ inputs.parallel ]]\n  script: $[[ inputs.args ]]\n  variables:\n    V: \"on $[[ inputs.env ]] at $[[ inputs.version | truncate(1,1) ]]\"\n    HOME_DIR: $[[ inputs.stage | expand_vars ]]\n",
        )
        .unwrap();
        let out = interpolate(&config, &inputs, &|_| None).unwrap();
        let job = out.get("lint-check").expect("keys interpolated");
        assert_eq!(job.get("stage"), Some(&Value::from("test")), "a default");
        assert_eq!(
            job.get("parallel"),
            Some(&Value::from(3)),
            "a number stays a number"
        );
        assert_eq!(
            job.get("script"),
            Some(&serde_yaml_ng::from_str::<Value>("[a, b]").unwrap())
        );
        assert_eq!(
            job.get("variables").unwrap().get("V"),
            Some(&Value::from("on prod at 1"))
        );
        let errors: &[(&str, &str)] = &[
            (
                "{}",
                "`job-prefix` input: required value has not been provided",
            ),
            (
                "{job-prefix: x, nope: 1}",
                "unknown input name provided: `nope`",
            ),
            (
                "{job-prefix: x, parallel: three}",
                "`parallel` input: provided value is not a number",
            ),
            (
                "{job-prefix: x, env: qa}",
                "`qa` cannot be used because it is not in the list of allowed options",
            ),
            (
                "{job-prefix: x, version: 1.0}",
                "`version` input: provided value is not a string",
            ),
            (
                "{job-prefix: x, version: '1.0'}",
                "does not match required RegEx pattern",
            ),
        ];
        for (given, want) in errors {
            let e = resolve(Some(&spec), Some(&yaml(given))).unwrap_err();
            assert!(e.contains(want), "{given}: {e}");
        }
        let e = resolve(None, Some(&yaml("{a: 1}"))).unwrap_err();
        assert!(e.contains("declares none"), "{e}");
        let bad: Value = serde_yaml_ng::from_str("a: $[[ inputs.nope ]]").unwrap();
        assert!(
            interpolate(&bad, &inputs, &|_| None)
                .unwrap_err()
                .contains("`nope`")
        );
        let bad: Value = serde_yaml_ng::from_str("a: $[[ inputs.stage | shout ]]").unwrap();
        assert!(
            interpolate(&bad, &inputs, &|_| None)
                .unwrap_err()
                .contains("unknown interpolation function")
        );
    }
}
