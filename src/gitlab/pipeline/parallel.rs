//! `parallel:`: the jobs GitLab makes of one job, named exactly as GitLab names them
//! (`test 1/3`; `deploy: [aws, app1]` for a matrix), with each one's node and variables.

use serde_yaml_ng::Value;

/// GitLab's limit on the jobs one `parallel:` makes.
const MAX_NODES: usize = 200;

/// Where one job of a parallel job stands: `CI_NODE_INDEX` of `CI_NODE_TOTAL`, and the
/// matrix's variables for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub index: usize,
    pub total: usize,
    pub matrix: Vec<(String, String)>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The jobs made of job `name` whose `parallel:` is `parallel` (none: the job itself).
pub fn expand(name: &str, parallel: Option<&Value>) -> Result<Vec<(String, Option<Node>)>, String> {
    let Some(parallel) = parallel else {
        return Ok(vec![(name.to_string(), None)]);
    };
    let combinations: Vec<Vec<(String, String)>> = match parallel {
        Value::Number(n) => {
            let total = n
                .as_u64()
                .filter(|n| (1..=MAX_NODES as u64).contains(n))
                .ok_or_else(|| format!("parallel: {n}: expected a number from 1 to {MAX_NODES}"))?
                as usize;
            return Ok((1..=total)
                .map(|index| {
                    (
                        format!("{name} {index}/{total}"),
                        Some(Node {
                            index,
                            total,
                            matrix: vec![],
                        }),
                    )
                })
                .collect());
        }
        Value::Mapping(m) => {
            let entries = m
                .get("matrix")
                .and_then(Value::as_sequence)
                .filter(|e| !e.is_empty())
                .ok_or("parallel: expected a number or `matrix:`, a list of variable sets")?;
            let mut all = vec![];
            for (i, entry) in entries.iter().enumerate() {
                let entry = entry
                    .as_mapping()
                    .filter(|e| !e.is_empty())
                    .ok_or_else(|| {
                        format!("parallel:matrix[{i}]: expected a mapping of variables")
                    })?;
                let mut product: Vec<Vec<(String, String)>> = vec![vec![]];
                for (k, v) in entry {
                    let key = scalar(k).ok_or_else(|| {
                        format!("parallel:matrix[{i}]: a variable name must be a string")
                    })?;
                    let values = match v {
                        Value::Sequence(s) => s.iter().map(scalar).collect::<Option<Vec<_>>>(),
                        other => scalar(other).map(|s| vec![s]),
                    }
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        format!("parallel:matrix[{i}]: {key}: expected a value or a list of values")
                    })?;
                    // The first variable varies slowest (Ruby's Array#product).
                    product = product
                        .into_iter()
                        .flat_map(|done| {
                            let key = &key;
                            values.iter().map(move |v| {
                                let mut next = done.clone();
                                next.push((key.clone(), v.clone()));
                                next
                            })
                        })
                        .collect();
                }
                all.extend(product);
            }
            all
        }
        _ => return Err("parallel: expected a number or `matrix:`".into()),
    };
    let total = combinations.len();
    if total > MAX_NODES {
        return Err(format!(
            "parallel:matrix makes {total} jobs, more than GitLab's {MAX_NODES}"
        ));
    }
    Ok(combinations
        .into_iter()
        .enumerate()
        .map(|(i, matrix)| {
            let values: Vec<&str> = matrix.iter().map(|(_, v)| v.as_str()).collect();
            (
                format!("{name}: [{}]", values.join(", ")),
                Some(Node {
                    index: i + 1,
                    total,
                    matrix,
                }),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(yaml: &str) -> Result<Vec<String>, String> {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        expand("job", Some(&v)).map(|jobs| jobs.into_iter().map(|(n, _)| n).collect())
    }

    #[test]
    fn jobs_named_as_gitlab_names_them() {
        let cases: &[(&str, &[&str])] = &[
            ("3", &["job 1/3", "job 2/3", "job 3/3"]),
            ("1", &["job 1/1"]),
            // GitLab's documented example.
            (
                "matrix:\n  - PROVIDER: aws\n    STACK: [monitoring, app1, app2]\n  - PROVIDER: [gcp, vultr]\n    STACK: [data, processing]\n",
                &[
                    "job: [aws, monitoring]",
                    "job: [aws, app1]",
                    "job: [aws, app2]",
                    "job: [gcp, data]",
                    "job: [gcp, processing]",
                    "job: [vultr, data]",
                    "job: [vultr, processing]",
                ],
            ),
            ("matrix:\n  - V: [1, 2]\n", &["job: [1]", "job: [2]"]),
        ];
        for (yaml, want) in cases {
            assert_eq!(names(yaml).unwrap(), *want, "{yaml}");
        }
        let v: Value = serde_yaml_ng::from_str("matrix: [{A: [x, y], B: z}]").unwrap();
        let jobs = expand("j", Some(&v)).unwrap();
        assert_eq!(
            jobs[1].1,
            Some(Node {
                index: 2,
                total: 2,
                matrix: vec![("A".into(), "y".into()), ("B".into(), "z".into())],
            })
        );
        let errors: &[(&str, &str)] = &[
            ("0", "from 1 to 200"),
            ("201", "from 1 to 200"),
            ("matrix: []", "a list of variable sets"),
            ("matrix: [x]", "matrix[0]: expected a mapping"),
            ("matrix: [{A: []}]", "A: expected a value"),
            ("matrix: [{A: [{b: c}]}]", "A: expected a value"),
            (
                "matrix: [{A: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15], B: [1,2,3,4,5,6,7,8,9,10,11,12,13,14]}]",
                "makes 210 jobs",
            ),
            ("[a]", "expected a number or `matrix:`"),
        ];
        for (yaml, want) in errors {
            let e = names(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
