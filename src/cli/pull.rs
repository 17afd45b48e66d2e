use super::progress::ProgressMode;
use super::{Context, Format, RegistryArgs, print_json};
use anyhow::{Context as _, Result};
use clap::Args;
use skiff::image::parse_policies;
use skiff::oci::manifest::PlatformSpec;
use std::io::IsTerminal;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference (short names go through unqualified-search-registries)
    pub image: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// OS/ARCH[/VARIANT] to pick from a multi-platform image
    #[arg(long)]
    pub platform: Option<String>,
    /// always, missing (if-not-present) or never; a comma-separated list is a fallback chain
    #[arg(long, default_value = "always")]
    pub policy: String,
    /// Print only the image ID
    #[arg(long, short)]
    pub quiet: bool,
    /// Layers downloaded at once
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Only download; do not unpack layers into layers/<diff_id>
    #[arg(long)]
    pub no_unpack: bool,
}

pub async fn run(ctx: &Context, a: PullArgs) -> Result<()> {
    let policies = parse_policies(&a.policy).map_err(anyhow::Error::msg)?;
    let progress = if a.quiet || ctx.format == Format::Json {
        ProgressMode::Quiet
    } else if std::io::stderr().is_terminal() {
        ProgressMode::Bars
    } else {
        ProgressMode::Lines
    };
    let mut puller = a.registry.resolve()?.puller(
        ctx.store()?,
        PlatformSpec::parse_or_host(a.platform.as_deref()).map_err(anyhow::Error::msg)?,
        progress.observer(),
        !a.no_unpack,
    );
    puller.jobs = a.jobs;
    let report = puller
        .ensure(&a.image, &policies)
        .await
        .with_context(|| format!("pulling {}", a.image))?;
    match ctx.format {
        Format::Json => print_json(&report)?,
        // Archive formats are refused for every command but save, before it runs.
        _ => {
            if !a.quiet && !report.pulled {
                eprintln!("Using {} from the store (policy {})", report.name, a.policy);
            }
            outln!("{}", report.id.hex());
        }
    }
    Ok(())
}
