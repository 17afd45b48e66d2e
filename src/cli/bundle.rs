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
pub enum BundleCommand {
    /// Write one archive with every image a pipeline (or the given list) needs
    Create(CreateArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[arg(long, short)]
    pub output: PathBuf,
    /// Take the images from this pipeline (image and services, everywhere)
    #[arg(long)]
    pub ci_file: Option<PathBuf>,
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
    let wanted = bundle::wanted_images(a.ci_file.as_deref(), &a.images)?;
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
