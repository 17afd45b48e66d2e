//! Service containers: their environment, the ports their health is probed on (the runner's
//! rules), and the warning block for one that did not come up.

use super::JobError;
use crate::gitlab::payload::expand_value;
use crate::gitlab::pipeline::ServiceSpec;
use crate::oci::config::ContainerConfig;

/// A service's environment: the job's variables as the runner has them, then its own,
/// expanded against all of them (common/build.go `GetServiceVariables`).
pub fn environment(
    job_variables: &[(String, String)],
    service: &ServiceSpec,
) -> Vec<(String, String)> {
    let source: Vec<(String, String)> = job_variables
        .iter()
        .chain(&service.variables)
        .cloned()
        .collect();
    let mut vars = job_variables.to_vec();
    vars.extend(
        service
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), expand_value(v, &source))),
    );
    vars
}

/// Which ports a service is probed on: `HEALTHCHECK_TCP_PORT` alone when set (any case),
/// else the image's exposed TCP ports, ascending, at most 20.
pub fn health_ports(
    service: &str,
    variables: &[(String, String)],
    image: &ContainerConfig,
) -> Result<Vec<u16>, JobError> {
    if let Some((_, v)) = variables
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case("HEALTHCHECK_TCP_PORT"))
    {
        return v
            .trim()
            .parse()
            .map(|p| vec![p])
            .map_err(|_| JobError::HealthPort {
                service: service.into(),
                value: v.clone(),
            });
    }
    let mut ports = image.exposed_tcp_ports();
    ports.truncate(20);
    if ports.is_empty() {
        return Err(JobError::NoPorts {
            service: service.into(),
        });
    }
    Ok(ports)
}

/// The runner's warning block for a service that did not come up; the job carries on.
pub fn service_warning(container: &str, error: &str, logs: &str) -> String {
    format!(
        "*** WARNING: Service {container} probably didn't start properly.\n\nHealth check error:\n{error}\n\nHealth check container logs:\n\n\nService container logs:\n{logs}\n\n*********\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_ports_table() {
        let config: ContainerConfig = serde_json::from_value(
            serde_json::json!({"ExposedPorts": {"6379/tcp": {}, "53/udp": {}, "80/tcp": {}}}),
        )
        .unwrap();
        let var = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        type Vars = Vec<(String, String)>;
        let cases: &[(Vars, &ContainerConfig, Option<&[u16]>)] = &[
            (vec![], &config, Some(&[80, 6379])),
            (var("healthcheck_tcp_port", "5432"), &config, Some(&[5432])),
            (
                var("HEALTHCHECK_TCP_PORT", " 8080 "),
                &config,
                Some(&[8080]),
            ),
            (var("HEALTHCHECK_TCP_PORT", "x"), &config, None),
            (vec![], &ContainerConfig::default(), None),
        ];
        for (vars, config, want) in cases {
            assert_eq!(
                health_ports("svc", vars, config).ok().as_deref(),
                *want,
                "{vars:?}"
            );
        }
    }

    #[test]
    fn service_variables_expand_against_the_jobs() {
        let svc = ServiceSpec {
            image: crate::gitlab::pipeline::ImageSpec {
                name: "postgres".into(),
                entrypoint: None,
                pull_policy: vec![],
            },
            aliases: vec![],
            command: None,
            variables: vec![("POSTGRES_DB".into(), "${DB}_test".into())],
        };
        let env = environment(&[("DB".into(), "app".into())], &svc);
        assert_eq!(
            env.last().unwrap(),
            &("POSTGRES_DB".into(), "app_test".into())
        );
    }
}
