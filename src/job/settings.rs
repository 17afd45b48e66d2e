//! The admin file's settings (`gitlab::config`, GitLab Runner's `[runners.docker]` keys) as
//! the job's containers take them, for the GitLab driver and `skiff job` alike.

use super::JobError;
use super::seams::ContainerSettings;
use crate::gitlab::config::{AdminConfig, VolumeSpec, anonymous_volume_name, expand_runner_value};
use crate::runtime::plan::{Limits, Volume};
use crate::runtime::seccomp::SeccompPolicy;
use std::path::Path;

/// Processes per job container, as podman's default `pids_limit`: a fork bomb in a job stops
/// there, where the host's cgroups let skiff enforce it (see `runtime::spec::cgroup_limits`).
pub const JOB_PIDS_LIMIT: i64 = 2048;

/// The build container's: the user (the admin's over the job's, within `allowed_users`),
/// capabilities, tmpfs mounts with `shm_size` as /dev/shm's, memory and CPU limits.
pub fn build_settings(
    admin: &AdminConfig,
    job_user: Option<&str>,
) -> Result<ContainerSettings, JobError> {
    let mut tmpfs = admin.tmpfs.clone();
    if let Some(size) = admin.shm_size {
        tmpfs.push(format!(
            "/dev/shm:size={size},mode=1777,nosuid,nodev,noexec"
        ));
    }
    Ok(ContainerSettings {
        user: admin.build_user(job_user)?,
        cap_add: admin.cap_add.clone(),
        cap_drop: admin.cap_drop.clone(),
        seccomp: SeccompPolicy::from_security_opts(&admin.security_opt)?,
        tmpfs,
        limits: Limits {
            memory: admin.memory,
            cpus: admin.cpus,
            pids: Some(JOB_PIDS_LIMIT),
        },
    })
}

/// The helper container's: the capabilities and security options only.
pub fn helper_settings(admin: &AdminConfig) -> Result<ContainerSettings, JobError> {
    Ok(ContainerSettings {
        cap_add: admin.cap_add.clone(),
        cap_drop: admin.cap_drop.clone(),
        seccomp: SeccompPolicy::from_security_opts(&admin.security_opt)?,
        limits: Limits {
            pids: Some(JOB_PIDS_LIMIT),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Every service container's: `services_tmpfs`, `service_memory`, `service_cpus`,
/// `services_security_opt`.
pub fn service_settings(admin: &AdminConfig) -> Result<ContainerSettings, JobError> {
    Ok(ContainerSettings {
        tmpfs: admin.services_tmpfs.clone(),
        limits: Limits {
            memory: admin.service_memory,
            cpus: admin.service_cpus,
            pids: Some(JOB_PIDS_LIMIT),
        },
        seccomp: SeccompPolicy::from_security_opts(&admin.services_security_opt)?,
        ..Default::default()
    })
}

/// The admin's `volumes` as bind mounts: host directories as given, container-only paths as
/// directories under `anonymous` (made here), destinations expanded with `variables`.
pub fn admin_volumes(
    admin: &AdminConfig,
    anonymous: &Path,
    variables: &[(String, String)],
) -> Result<Vec<Volume>, JobError> {
    let expand = |text: &str| {
        expand_runner_value(text, |name| {
            variables
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };
    admin
        .volumes
        .iter()
        .map(|v| {
            Ok(match v {
                VolumeSpec::Bind {
                    source,
                    destination,
                    read_only,
                } => Volume {
                    source: source.clone(),
                    destination: expand(destination),
                    read_only: *read_only,
                    idmap: false,
                },
                VolumeSpec::Anonymous {
                    destination,
                    read_only,
                } => {
                    let destination = expand(destination);
                    let dir = anonymous.join(anonymous_volume_name(&destination));
                    std::fs::create_dir_all(&dir).map_err(JobError::io("creating", &dir))?;
                    // skiff's own directory, kept between jobs of different ids:
                    // each job's root owns it.
                    Volume {
                        source: dir,
                        destination,
                        read_only: *read_only,
                        idmap: true,
                    }
                }
            })
        })
        .collect()
}
