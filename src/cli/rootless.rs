//! Commands that run single-threaded in the store's user namespace: `unshare`, `mount`,
//! `unpack`.

use super::Context;
use anyhow::{Result, bail};
use clap::Args;
use skiff::runtime::{rootfs, userns};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct UnshareArgs {
    /// Command to run (default: $SHELL, else /bin/sh)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    pub image: String,
}

#[derive(Args, Debug)]
pub struct UnpackArgs {
    pub image: String,
    /// Directory to create (or an empty one) for the flattened root filesystem
    pub dir: PathBuf,
}

/// Like `podman unshare`: a shell (or CMD) as root of the store's user namespace, with its
/// own mount namespace for `skiff mount`.
pub fn unshare(ctx: &Context, a: UnshareArgs) -> Result<()> {
    userns::enter_with_mounts()?;
    let cmd = if a.command.is_empty() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())]
    } else {
        a.command
    };
    let err = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("SKIFF_UNSHARE", std::process::id().to_string())
        .env("SKIFF_ROOT", &ctx.root)
        .exec();
    bail!("running {}: {err}", cmd[0])
}

/// Mounts an image's layers as overlay and prints the merged directory.
pub fn mount(ctx: &Context, a: MountArgs) -> Result<()> {
    let Ok(session) = std::env::var("SKIFF_UNSHARE") else {
        bail!("run skiff mount inside `skiff unshare`: the mount lives in its mount namespace");
    };
    let store = ctx.store()?;
    let entry = store.lookup_one(&a.image)?;
    let forced = std::env::var("SKIFF_OVERLAY").ok();
    let merged = rootfs::mount_image(&store, &entry, &session, forced.as_deref())?;
    outln!("{}", merged.display());
    Ok(())
}

/// Like `umoci unpack`: the image's layers applied in order into one plain directory,
/// whiteouts as deletions. Rootless, owners are kept through the user namespace.
pub fn unpack(ctx: &Context, a: UnpackArgs) -> Result<()> {
    let done = rootfs::unpack_image(&ctx.store()?, &a.image, &a.dir)?;
    eprintln!(
        "unpacked {} ({} layers, {} entries) into {}",
        done.image,
        done.layers,
        done.entries,
        a.dir.display()
    );
    Ok(())
}
