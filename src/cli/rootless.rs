//! Commands that run single-threaded in the store's user namespace: `unshare`, `mount`,
//! `unpack`.

use super::Context;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use skiff::runtime::rootfs::{self, OverlayDirs};
use skiff::runtime::userns;
use skiff::store::Store;
use skiff::unpack::{self, Format, Options};
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

/// Enters the user namespace (and, as root, a private mount namespace).
fn enter() -> Result<userns::Mapping> {
    let mapping = userns::detect();
    userns::enter(&mapping)?;
    if mapping.is_root() {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
        userns::make_mounts_private()?;
    }
    Ok(mapping)
}

/// Like `podman unshare`: a shell (or CMD) as root of the store's user namespace, with its
/// own mount namespace for `skiff mount`.
pub fn unshare(ctx: &Context, a: UnshareArgs) -> Result<()> {
    enter()?;
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
    let entry = super::images::resolve_one(&store, &a.image)?;
    let layers = store.image_layers(&entry)?;
    let mut lowers = Vec::new();
    for (_, diff_id) in layers.iter().rev() {
        let p = store.layer_path(diff_id);
        if !p.is_dir() {
            bail!(
                "layer {diff_id} of {} is not unpacked; run `skiff pull --policy missing {}` first",
                entry.name,
                entry.name
            );
        }
        lowers.push(p);
    }
    let id = &entry.manifest.digest.hex()[..12];
    let dir = ctx.root.join("mounts").join(format!("{id}-{session}"));
    let dirs = OverlayDirs::create(&dir)?;
    let forced = std::env::var("SKIFF_OVERLAY").ok();
    if forced.as_deref() == Some("copy") {
        // Last resort without any overlay: the flattened layers, copied.
        copy_layers(&store, &layers, &dirs.merged)?;
        tracing::info!("mounted {} by copying its layers", entry.name);
    } else {
        let driver = rootfs::mount_overlay(&lowers, &dirs, forced.as_deref())?;
        tracing::info!("mounted {} with {driver:?}", entry.name);
    }
    println!("{}", dirs.merged.display());
    Ok(())
}

/// The current user namespace's id map: (is it the initial one, does it map more than one id).
fn uid_map() -> (bool, bool) {
    let text = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let rows: Vec<Vec<u64>> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .collect();
    let initial = rows.len() == 1 && rows[0] == [0, 0, 4294967295];
    let many = rows
        .iter()
        .map(|r| r.get(2).copied().unwrap_or(0))
        .sum::<u64>()
        > 1;
    (initial, many)
}

fn copy_layers(
    store: &Store,
    layers: &[(skiff::oci::manifest::Descriptor, skiff::oci::digest::Digest)],
    dest: &std::path::Path,
) -> Result<()> {
    let (initial, many) = uid_map();
    let opts = Options {
        format: Format::Flatten,
        chown: many,
        devices: initial,
    };
    for (desc, diff_id) in layers {
        let blob = store.blob_path(&desc.digest);
        let f =
            std::fs::File::open(&blob).with_context(|| format!("opening {}", blob.display()))?;
        unpack::unpack_verified(f, dest, &opts, diff_id)
            .with_context(|| format!("layer {}", desc.digest))?;
    }
    Ok(())
}

/// Like `umoci unpack`: the image's layers applied in order into one plain directory,
/// whiteouts as deletions. Rootless, owners are kept through the user namespace.
pub fn unpack(ctx: &Context, a: UnpackArgs) -> Result<()> {
    let store = ctx.store()?;
    let entry = super::images::resolve_one(&store, &a.image)?;
    let layers = store.image_layers(&entry)?;
    match std::fs::read_dir(&a.dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                bail!("{} is not empty", a.dir.display());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(&a.dir)
            .with_context(|| format!("creating {}", a.dir.display()))?,
        Err(e) => return Err(e).with_context(|| format!("reading {}", a.dir.display())),
    }
    let mapping = enter()?;
    let opts = Options {
        format: Format::Flatten,
        chown: mapping.can_chown(),
        devices: mapping.is_root(),
    };
    let mut entries = 0;
    for (desc, diff_id) in &layers {
        let blob = store.blob_path(&desc.digest);
        let f =
            std::fs::File::open(&blob).with_context(|| format!("opening {}", blob.display()))?;
        let r = unpack::unpack_verified(f, &a.dir, &opts, diff_id)
            .with_context(|| format!("unpacking layer {} of {}", desc.digest, entry.name))?;
        entries += r.entries;
    }
    eprintln!(
        "unpacked {} ({} layers, {entries} entries) into {}",
        entry.name,
        layers.len(),
        a.dir.display()
    );
    Ok(())
}
