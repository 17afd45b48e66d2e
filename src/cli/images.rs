//! `skiff images|inspect|tag|rmi|prune|fsck`: the store's images as tables and JSON.

use super::{Context, Format, print_json};
use anyhow::{Result, bail};
use clap::Args;
use skiff::image::{listing, prune};
use skiff::oci::reference::ImageRef;

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Print only image IDs
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Name, ID (or a prefix of at least 3 characters) or manifest digest
    pub image: String,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    #[arg(required = true)]
    pub targets: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove every name of an image given by ID
    #[arg(long, short)]
    pub force: bool,
}

pub fn list(ctx: &Context, a: ImagesArgs) -> Result<()> {
    let rows = listing::list(&ctx.store()?)?;
    if ctx.format == Format::Json {
        return print_json(&rows);
    }
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            let id = r.short_id();
            if seen.insert(id) {
                outln!("{id}");
            }
        }
        return Ok(());
    }
    outln!(
        "{:<50} {:<20} {:<14} {:<22} {:>10}",
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE"
    );
    for r in rows {
        let created: String = r.created.chars().take(19).collect();
        outln!(
            "{:<50} {:<20} {:<14} {:<22} {:>10}",
            r.repository,
            r.tag,
            r.short_id(),
            created,
            r.human_size()
        );
    }
    Ok(())
}

pub fn inspect(ctx: &Context, a: InspectArgs) -> Result<()> {
    let found = listing::inspect(&ctx.store()?, &a.image)?;
    // podman prints a JSON array even in text mode; so do we.
    print_json(&found.iter().map(|i| i.document()).collect::<Vec<_>>())
}

pub fn tag(ctx: &Context, a: TagArgs) -> Result<()> {
    let store = ctx.store()?;
    let targets: Vec<ImageRef> = a
        .targets
        .iter()
        .map(|t| ImageRef::parse_local(t))
        .collect::<Result<_, _>>()?;
    Ok(listing::tag(&store, &a.source, &targets)?)
}

pub async fn rmi(ctx: &Context, a: RmiArgs) -> Result<()> {
    let store = ctx.store()?;
    for n in prune::remove_names(&store, &a.images, a.force)? {
        outln!("Untagged: {n}");
    }
    let report = prune::collect(&store).await?;
    if report.removed_blobs + report.removed_layers > 0 {
        eprintln!(
            "Deleted {} blobs ({} bytes) and {} layer directories",
            report.removed_blobs, report.freed_bytes, report.removed_layers
        );
    }
    Ok(())
}

pub async fn prune(ctx: &Context) -> Result<()> {
    let report = prune::collect(&ctx.store()?).await?;
    match ctx.format {
        Format::Json => print_json(&report),
        // Archive formats are refused for every command but save, before it runs.
        _ => {
            outln!("{report}");
            Ok(())
        }
    }
}

pub fn fsck(ctx: &Context) -> Result<()> {
    let report = ctx.store()?.fsck()?;
    if ctx.format == Format::Json {
        print_json(&report)?;
    } else {
        outln!("{report}");
    }
    if !report.problems.is_empty() {
        bail!(
            "store {} has {} problems",
            ctx.root.display(),
            report.problems.len()
        );
    }
    Ok(())
}
