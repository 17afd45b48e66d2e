//! What `skiff pipeline --list` shows: the pipeline's jobs by stage, each with how it runs
//! and the rule that put it in or left it out.

use super::Job;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Listing {
    /// `workflow:name`, expanded.
    pub name: Option<String>,
    /// Whether the pipeline is made at all (`workflow:rules`).
    pub created: bool,
    pub workflow: String,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Serialize)]
pub struct Stage {
    pub name: String,
    pub jobs: Vec<JobRow>,
}

#[derive(Debug, Serialize)]
pub struct JobRow {
    pub name: String,
    pub when: String,
    pub allow_failure: bool,
    pub needs: Vec<String>,
    pub image: Option<String>,
    pub reason: String,
    /// What skiff does not act on in the job, one line each (as `skiff job` warns).
    pub warnings: Vec<String>,
}

impl Listing {
    /// `jobs` (resolved) grouped by `stages`, in order; stages without jobs left out.
    pub fn new(
        name: Option<String>,
        workflow: &super::rules::Decision,
        stages: &[String],
        jobs: &[Job],
    ) -> Listing {
        Listing {
            name,
            created: workflow.when != "never",
            workflow: workflow.reason.clone(),
            stages: stages
                .iter()
                .map(|stage| Stage {
                    name: stage.clone(),
                    jobs: jobs
                        .iter()
                        .filter(|j| &j.stage == stage)
                        .map(|j| JobRow {
                            name: j.name.clone(),
                            when: j.when.clone(),
                            allow_failure: j.allow_failure,
                            needs: j.needs.clone(),
                            image: j.image.as_ref().map(|i| i.name.clone()),
                            reason: j.reason.clone(),
                            warnings: j.warnings.clone(),
                        })
                        .collect(),
                })
                .filter(|s| !s.jobs.is_empty())
                .collect(),
        }
    }
}

impl std::fmt::Display for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(name) = &self.name {
            writeln!(f, "pipeline: {name}")?;
        }
        if !self.created {
            writeln!(
                f,
                "no pipeline: workflow:rules say never ({})",
                self.workflow
            )?;
        }
        let width = self
            .stages
            .iter()
            .flat_map(|s| &s.jobs)
            .map(|j| j.name.chars().count())
            .max()
            .unwrap_or(0);
        for stage in &self.stages {
            writeln!(f, "{}", stage.name)?;
            for j in &stage.jobs {
                let mut how = j.when.clone();
                if j.allow_failure {
                    how.push_str(", allow_failure");
                }
                if !j.needs.is_empty() {
                    how.push_str(&format!(", needs: {}", j.needs.join(" ")));
                }
                writeln!(f, "  {:width$}  {how}  ({})", j.name, j.reason)?;
                for w in &j.warnings {
                    writeln!(f, "  {:width$}    WARNING: {w}", "")?;
                }
            }
        }
        Ok(())
    }
}
