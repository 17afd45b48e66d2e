//! Reading a CI configuration file as GitLab reads it: a repeated mapping key is no error
//! (the last one wins, in the place of the first, as in a Ruby hash), YAML anchors and `<<`
//! merge keys are applied, custom tags (`!reference`) are kept for later, and a file may
//! start with a `spec:` header document (`spec:` … `---` … the configuration).

use serde::de::{Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess};
use serde_yaml_ng::value::{Tag, TaggedValue};
use serde_yaml_ng::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct YamlError {
    pub file: String,
    /// With the line and column where the parser saw it.
    pub reason: String,
}

/// A configuration file's two parts.
#[derive(Debug, Clone, PartialEq)]
pub struct CiFile {
    /// The `spec:` header's contents (`inputs:`), when the file has one.
    pub spec: Option<Mapping>,
    pub config: Mapping,
}

/// A YAML value read with last-wins mapping keys.
struct Lenient(Value);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Lenient, E> {
                Ok(Lenient(Value::Bool(b)))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Lenient, E> {
                Ok(Lenient(Value::Number(i.into())))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Lenient, E> {
                Ok(Lenient(Value::Number(u.into())))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Lenient, E> {
                Ok(Lenient(Value::Number(f.into())))
            }
            fn visit_str<E>(self, s: &str) -> Result<Lenient, E> {
                Ok(Lenient(Value::String(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Lenient, E> {
                Ok(Lenient(Value::String(s)))
            }
            fn visit_unit<E>(self) -> Result<Lenient, E> {
                Ok(Lenient(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Lenient, E> {
                Ok(Lenient(Value::Null))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Lenient, D::Error> {
                Lenient::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient, A::Error> {
                let mut items = vec![];
                while let Some(Lenient(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Lenient(Value::Sequence(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lenient, A::Error> {
                let mut m = Mapping::new();
                while let Some((Lenient(k), Lenient(v))) = map.next_entry()? {
                    if k.as_str() == Some("<<") {
                        merge_into(&mut m, v).map_err(serde::de::Error::custom)?;
                    } else {
                        m.insert(k, v);
                    }
                }
                Ok(Lenient(Value::Mapping(m)))
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Lenient, A::Error> {
                let (tag, contents): (String, _) = data.variant()?;
                let Lenient(value) = contents.newtype_variant()?;
                Ok(Lenient(Value::Tagged(Box::new(TaggedValue {
                    tag: Tag::new(tag),
                    value,
                }))))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `<<` merge key as Ruby's YAML loader applies it, in place: the mapping's keys so far
/// are overwritten and new ones added; of a list of mappings the first wins. So a second
/// `<<` in one mapping merges too, and an explicit key before a `<<` gives way to it.
fn merge_into(m: &mut Mapping, v: Value) -> Result<(), String> {
    let not_a_mapping = || "a `<<` merge key takes a mapping or a list of mappings".to_string();
    match v {
        Value::Mapping(from) => m.extend(from),
        Value::Sequence(items) => {
            let mut merged = Mapping::new();
            for item in items.into_iter().rev() {
                match item {
                    Value::Mapping(from) => merged.extend(from),
                    _ => return Err(not_a_mapping()),
                }
            }
            m.extend(merged);
        }
        _ => return Err(not_a_mapping()),
    }
    Ok(())
}

/// Reads `text` (the file `file`) as GitLab does.
pub fn read(text: &str, file: &str) -> Result<CiFile, YamlError> {
    let err = |reason: String| YamlError {
        file: file.into(),
        reason,
    };
    let mut docs = vec![];
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let Lenient(v) = Lenient::deserialize(doc).map_err(|e| err(e.to_string()))?;
        docs.push(v);
    }
    let mapping = |v: Value| match v {
        Value::Mapping(m) => Ok(m),
        Value::Null => Ok(Mapping::new()),
        _ => Err(err("the top level is not a mapping".into())),
    };
    match docs.len() {
        0 => Ok(CiFile {
            spec: None,
            config: Mapping::new(),
        }),
        1 => Ok(CiFile {
            spec: None,
            config: mapping(docs.remove(0))?,
        }),
        2 => {
            let mut header = mapping(docs.remove(0))?;
            let spec = match header.remove("spec") {
                Some(Value::Mapping(s)) if header.is_empty() => s,
                Some(Value::Null) if header.is_empty() => Mapping::new(),
                _ => {
                    return Err(err(
                        "a file of two YAML documents must start with a `spec:` header".into(),
                    ));
                }
            };
            Ok(CiFile {
                spec: Some(spec),
                config: mapping(docs.remove(0))?,
            })
        }
        n => Err(err(format!(
            "{n} YAML documents: a CI file holds one, or a `spec:` header and one"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_as_gitlab_reads_them() {
        // Repeated keys, a repeated `<<` (as GitLab's own deploy templates have it).
        let f = read(
            ".a: &a {x: 1, y: 1}\n.b: &b {y: 2, z: 2}\njob:\n  <<: *a\n  <<: *b\n  script: one\n  script: two\n",
            "f",
        )
        .unwrap();
        let job = f.config.get("job").unwrap();
        assert_eq!(job.get("script"), Some(&Value::from("two")));
        assert_eq!(job.get("y"), Some(&Value::from(2)), "the later `<<` wins");
        assert_eq!(job.get("x"), Some(&Value::from(1)), "both `<<` merge");
        // A list of mappings: the first wins; a key before `<<` gives way, one after stays.
        let f = read(
            ".a: &a {y: 1}\n.b: &b {y: 2, z: 2}\njob: {z: 0, <<: [*a, *b], w: 3}\n",
            "f",
        )
        .unwrap();
        let job = f.config.get("job").unwrap();
        assert_eq!(job.get("y"), Some(&Value::from(1)));
        assert_eq!(job.get("z"), Some(&Value::from(2)));
        assert_eq!(job.get("w"), Some(&Value::from(3)));
        // The first key keeps its place.
        let f = read("b: 1\na: 2\nb: 3\n", "f").unwrap();
        let keys: Vec<_> = f.config.keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(f.config.get("b"), Some(&Value::from(3)));
        // !reference stays a tag.
        let f = read("a: !reference [b, c]\n", "f").unwrap();
        assert!(matches!(f.config.get("a"), Some(Value::Tagged(t)) if t.tag == "reference"));
        // A spec header.
        let f = read(
            "spec:\n  inputs:\n    stage: {default: test}\n---\njob: {script: x}\n",
            "f",
        )
        .unwrap();
        assert!(f.spec.unwrap().contains_key("inputs"));
        assert!(f.config.contains_key("job"));
        let cases: &[(&str, &str)] = &[
            ("a: [", "f: "),
            ("job:\n  script: [a\n", "line 2 column"),
            ("- a list", "the top level is not a mapping"),
            ("a: 1\n---\nb: 2\n", "must start with a `spec:` header"),
            ("spec: {}\n---\na: 1\n---\nb: 2\n", "3 YAML documents"),
            ("a: {<<: 1}", "merge key takes a mapping"),
        ];
        for (text, want) in cases {
            let e = read(text, "f").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
