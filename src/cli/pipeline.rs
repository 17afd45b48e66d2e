//! `skiff pipeline [--list|--preview]`: a whole .gitlab-ci.yml resolved as GitLab resolves
//! it, without running anything.

use super::job::pair;
use super::{Context, Format};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PipelineArgs {
    /// The pipeline file
    #[arg(long, short, default_value = ".gitlab-ci.yml")]
    pub file: PathBuf,
    /// KEY=VALUE, above the file's variables (CI_PIPELINE_SOURCE=merge_request_event...)
    #[arg(long = "var")]
    pub vars: Vec<String>,
    /// The project (a git checkout: the commit, the changes, the files rules look at)
    #[arg(long, default_value = ".")]
    pub project_dir: PathBuf,
    /// The project's CI/CD variables (YAML: NAME: value, or NAME: {value, masked, type: file, expand}),
    /// above the file's and below --var
    #[arg(long, value_name = "FILE")]
    pub variables_file: Option<PathBuf>,
    #[command(flatten)]
    pub includes: super::job::IncludeArgs,
    /// The jobs by stage: how each runs, and the rule that put it in or left it out (the default)
    #[arg(long, conflicts_with = "preview")]
    pub list: bool,
    /// The configuration as GitLab merges it: anchors, extends, !reference, parallel jobs made
    #[arg(long)]
    pub preview: bool,
}

/// `--format json` (the global flag) prints either as JSON.
pub fn run(ctx: &Context, a: PipelineArgs) -> Result<()> {
    let vars = a.vars.iter().map(|v| pair(v)).collect::<Result<Vec<_>>>()?;
    let project = super::job::project(&a.project_dir, a.variables_file.as_deref(), &a.includes)?;
    let pipeline = super::job::load(ctx, &a.file, &project, &vars, &a.includes)?;
    if a.preview {
        let merged = pipeline.merged();
        match ctx.format {
            Format::Json => super::print_json(&merged)?,
            _ => super::print_text(&serde_yaml_ng::to_string(&merged)?)?,
        }
        return Ok(());
    }
    let listing = project.with_environment(|env| pipeline.listing(&vars, env))?;
    match ctx.format {
        Format::Json => super::print_json(&listing)?,
        _ => super::print_text(&listing.to_string())?,
    }
    Ok(())
}
