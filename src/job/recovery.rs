//! Job directories (`<store>/jobs/<id>`): private to their owner, since what a job keeps there
//! (its volumes; a driver job's files) may hold its secrets; and found again by `system cleanup` when
//! the `skiff job` that made one was killed before removing it.
//!
//! A directory is made under a staging name carrying the owner's pid (`.<id>.<pid>`), given
//! its owner file, then renamed; its removal takes the owner file last. So a directory without
//! an owner file is one whose removal was cut short, never a new one.

use super::JobError;
use std::path::{Path, PathBuf};

/// `jobs/<id>/owner`: the pid of the `skiff job` process the directory belongs to.
pub const OWNER: &str = "owner";

/// Where the store keeps job directories.
pub fn jobs_dir(root: &Path) -> PathBuf {
    root.join("jobs")
}

/// Makes `jobs/<id>`, private, owned by this process.
pub fn create(root: &Path, id: &str) -> Result<PathBuf, JobError> {
    let dir = jobs_dir(root).join(id);
    let staging = jobs_dir(root).join(format!(".{id}.{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(JobError::io("creating", &staging))?;
    make_private(&staging)?;
    let owner = staging.join(OWNER);
    std::fs::write(&owner, std::process::id().to_string())
        .map_err(JobError::io("writing", &owner))?;
    std::fs::rename(&staging, &dir).map_err(JobError::io("creating", &dir))?;
    Ok(dir)
}

/// Removes a job directory made by `create`, its owner file last: killed midway, this leaves
/// a directory that still names its (dead) owner for `system cleanup`.
pub fn remove(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name() != OWNER {
            let path = e.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Job directories whose owner is gone (or that have none left): for `system cleanup`.
pub fn abandoned(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(jobs_dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let owner = std::fs::read_to_string(e.path().join(OWNER))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                // `.<id>.<pid>`: still being made.
                .or_else(|| name.strip_prefix('.')?.rsplit('.').next()?.parse().ok());
            owner.is_none_or(|pid| !crate::proc::process_alive(pid))
        })
        .map(|e| e.path())
        .collect()
}

/// `skiff system cleanup`: what killed processes left behind, containers and pods
/// (`runtime::recovery`), then the files of jobs whose process is gone.
pub fn system_cleanup(root: &Path) -> Result<Vec<String>, JobError> {
    let mut report = crate::runtime::recovery::cleanup(root)?;
    report.extend(cleanup(root)?);
    Ok(report)
}

/// `system cleanup`'s part for jobs: removes the abandoned job directories; a line for each.
pub fn cleanup(root: &Path) -> Result<Vec<String>, JobError> {
    let mut dirs = abandoned(root);
    dirs.sort();
    crate::runtime::container::remove_paths(&dirs).map_err(|e| JobError::Remove {
        source: Box::new(e),
    })?;
    Ok(dirs
        .iter()
        .map(|d| {
            format!(
                "removed the files of job {}",
                d.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect())
}

/// Only the owner may enter. (Containers reach their bind-mounted subdirectory without
/// passing through it.)
pub fn make_private(dir: &Path) -> Result<(), JobError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(JobError::io("making private", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_private_then_found_abandoned_only_without_a_live_owner() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = create(root.path(), "abc").unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(abandoned(root.path()).is_empty(), "our own job is alive");

        let jobs = jobs_dir(root.path());
        // A dead owner, a staging directory of a dead process, and one without an owner file.
        let dead = jobs.join("dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(OWNER), u32::MAX.to_string()).unwrap();
        std::fs::create_dir(jobs.join(format!(".x.{}", u32::MAX))).unwrap();
        std::fs::create_dir(jobs.join("cut-short")).unwrap();
        let mut found = abandoned(root.path());
        found.sort();
        let mut want = vec![
            jobs.join(format!(".x.{}", u32::MAX)),
            jobs.join("cut-short"),
            dead,
        ];
        want.sort();
        assert_eq!(found, want);

        remove(&dir);
        assert!(!dir.exists());
    }
}
