//! `skiff bundle create`: every image a pipeline needs (job images, services, the helper) in
//! one docker-archive, to carry into an air-gapped network; `skiff load` reads it back.

use super::progress::ProgressMode;
use super::{Context, RegistryArgs};
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use skiff::helper::{self, HelperSpec};
use skiff::image::Policy;
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
    let mut wanted = a.images.clone();
    if let Some(f) = &a.ci_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let found = skiff::gitlab::ci::pipeline_images(&text, &f.display().to_string())?;
        for u in &found.unresolved {
            tracing::warn!(
                "{}: image name with an undefined variable, left out: {u}",
                f.display()
            );
        }
        wanted.extend(found.images);
    }
    if wanted.is_empty() && a.helper_version.is_none() {
        bail!("nothing to bundle: give --ci-file, images or --helper-version");
    }
    let store = ctx.store()?;
    let puller = a
        .registry
        .puller(store.clone(), ProgressMode::Lines, false)?;
    let mut names = Vec::new();
    for image in &wanted {
        let report = puller
            .ensure(image, &[Policy::IfNotPresent])
            .await
            .with_context(|| format!("bundling {image}"))?;
        if !names.contains(&report.name) {
            names.push(report.name);
        }
    }
    if let Some(v) = &a.helper_version {
        let spec = HelperSpec {
            flavor: a.helper_flavor.clone(),
            arch: helper::runner_arch(""),
            pwsh: false,
            version: Some(v.clone()),
            revision: None,
        };
        let r = spec.reference().map_err(anyhow::Error::msg)?;
        if store.find(&r)?.is_none() {
            bail!(
                "{r} is not in the store: run `skiff helper import --version {v}` (or pull it) first"
            );
        }
        names.push(r);
    }
    let mut images = Vec::new();
    for n in &names {
        let entry = store
            .find(n)?
            .with_context(|| format!("{n} vanished from the store"))?;
        images.push((entry, vec![n.clone()]));
    }
    skiff::archive::save::save(
        &store,
        &images,
        skiff::archive::save::ArchiveFormat::DockerArchive,
        &a.output,
    )?;
    for n in &names {
        eprintln!("Bundled {n}");
    }
    eprintln!("Wrote {} images to {}", names.len(), a.output.display());
    Ok(())
}
