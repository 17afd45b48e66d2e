use super::progress::{Lines, QuietPush};
use super::{Context, Format, RegistryArgs, print_json};
use anyhow::{Context as _, Result};
use clap::Args;
use skiff::registry::push::{self, Pusher};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Image in the store (name or ID)
    pub image: String,
    /// Where to push [default: the image's name]
    pub destination: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Upload blobs larger than this many bytes in chunks (PATCH), instead of one PUT
    #[arg(long)]
    pub chunk_size: Option<u64>,
    #[arg(long, short)]
    pub quiet: bool,
}

pub async fn run(ctx: &Context, a: PushArgs) -> Result<()> {
    let store = ctx.store()?;
    let entry = store.lookup_one(&a.image)?;
    let dest = push::destination(&a.image, &entry, a.destination.as_deref())?;
    let settings = a.registry.resolve()?;
    let pusher = Pusher {
        store,
        credentials: settings.credentials(),
        registries: settings.registries,
        client_options: settings.client,
        chunk_size: a.chunk_size,
        observer: if a.quiet || ctx.format == Format::Json {
            Arc::new(QuietPush)
        } else {
            Arc::new(Lines)
        },
    };
    let report = pusher
        .push(&entry, &dest)
        .await
        .with_context(|| format!("pushing {} to {dest}", a.image))?;
    match ctx.format {
        Format::Json => print_json(&report)?,
        _ => outln!("{}", report.manifest_digest),
    }
    Ok(())
}
