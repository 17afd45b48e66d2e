//! `skiff bundle create`: every image a pipeline needs (job images, services, the helper) in
//! one docker-archive, to carry into an air-gapped network; `skiff load` reads it back.

use super::progress::ProgressMode;
use super::{Context, RegistryArgs};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use skiff::archive::bundle;
use skiff::helper::{self, HelperSpec};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
// Each command's options are defined only when it is the one given: clap would otherwise
// build every command's at each start.
#[command(defer = true)]
pub enum BundleCommand {
    /// Write one archive with every image a pipeline (or the given list) needs
    Create(CreateArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[arg(long, short)]
    pub output: PathBuf,
    /// Take the images of this pipeline's jobs (with its includes), resolved as skiff job
    /// resolves them for the checkout it is in: the jobs its rules run there
    #[arg(long)]
    pub ci_file: Option<PathBuf>,
    /// With --ci-file: every job's images, whatever its rules say here
    #[arg(long)]
    pub all_jobs: bool,
    #[command(flatten)]
    pub includes: super::job::IncludeArgs,
    /// Include the GitLab Runner helper image for this runner version (from the store)
    #[arg(long)]
    pub helper_version: Option<String>,
    #[arg(long, default_value = "alpine")]
    pub helper_flavor: String,
    /// More images
    pub images: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn run(ctx: &Context, cmd: BundleCommand) -> Result<()> {
    let BundleCommand::Create(a) = cmd;
    let mut wanted = a.images.clone();
    if let Some(file) = &a.ci_file {
        // The project is the checkout the file is in.
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let project = super::job::project(&dir, None, &a.includes)?;
        let pipeline = super::job::load(ctx, file, &project, &[], &a.includes)?;
        let found = skiff::job::project::pipeline_images(&pipeline, &project, a.all_jobs)?;
        for u in &found.undefined {
            eprintln!(
                "WARNING: {}: image name with an undefined variable, left out: {u}",
                file.display()
            );
        }
        for j in &found.left_out {
            eprintln!("Left out (not in this pipeline; --all-jobs takes it): {j}");
        }
        for image in found.images {
            if !wanted.contains(&image) {
                wanted.push(image);
            }
        }
    }
    if wanted.is_empty() && a.helper_version.is_none() {
        bail!("nothing to bundle: give --ci-file, images or --helper-version");
    }
    let puller = a
        .registry
        .puller(ctx.store()?, ProgressMode::Lines, false)?;
    let helper = a.helper_version.map(|v| HelperSpec {
        flavor: a.helper_flavor.clone(),
        arch: helper::runner_arch(""),
        pwsh: false,
        version: Some(v),
        revision: None,
    });
    let names = bundle::create(&puller, &wanted, helper.as_ref(), &a.output).await?;
    for n in &names {
        eprintln!("Bundled {n}");
    }
    eprintln!("Wrote {} images to {}", names.len(), a.output.display());
    Ok(())
}
