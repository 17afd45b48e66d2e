use super::{Context, Format, print_json};
use anyhow::{Result, bail};
use clap::Args;
use skiff::oci::manifest::{self, ImageManifest, Parsed};
use skiff::oci::reference::ImageRef;
use skiff::store::{ImageEntry, PULLED_ANNOTATION, SOURCE_ANNOTATION, Store};
use std::collections::BTreeMap;

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

struct Loaded {
    entry: ImageEntry,
    manifest: ImageManifest,
    config: serde_json::Value,
}

fn load(store: &Store, entry: ImageEntry) -> Result<Loaded> {
    let bytes = store.read_blob(&entry.manifest.digest)?;
    let (parsed, _) = manifest::parse(&bytes, Some(&entry.manifest.media_type), &entry.name)?;
    let Parsed::Image(m) = parsed else {
        bail!("{}: the stored name points at an index", entry.name)
    };
    let config = serde_json::from_slice(&store.read_blob(&m.config.digest)?)?;
    Ok(Loaded {
        entry,
        manifest: *m,
        config,
    })
}

/// Names the input means: exact or normalized name, ID prefix, or manifest digest.
fn resolve(store: &Store, input: &str) -> Result<Vec<ImageEntry>> {
    Ok(resolve_kind(store, input)?.0)
}

/// Exactly one image for the input.
pub(super) fn resolve_one(store: &Store, input: &str) -> Result<ImageEntry> {
    let mut hits = resolve(store, input)?;
    if hits.len() > 1 {
        bail!("{input} matches several images; use a longer ID or a name");
    }
    Ok(hits.remove(0))
}

/// Like `resolve`, also telling whether the input was a name (true) or an ID/digest.
pub(super) fn resolve_kind(store: &Store, input: &str) -> Result<(Vec<ImageEntry>, bool)> {
    let images = store.images()?;
    let mut names = vec![input.to_string()];
    for r in [ImageRef::parse_local(input), ImageRef::parse(input)]
        .into_iter()
        .flatten()
    {
        names.push(r.to_string());
    }
    if let Some(e) = images.iter().find(|e| names.contains(&e.name)) {
        return Ok((vec![e.clone()], true));
    }
    let hex = input.trim_start_matches("sha256:");
    if hex.len() >= 3 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut hits = Vec::new();
        for e in images {
            if e.manifest.digest.hex().starts_with(hex) {
                hits.push(e);
                continue;
            }
            if let Ok(l) = load(store, e.clone()) {
                if l.manifest.config.digest.hex().starts_with(hex) {
                    hits.push(e);
                }
            }
        }
        if !hits.is_empty() {
            return Ok((hits, false));
        }
    }
    Err(skiff::store::StoreError::UnknownImage(input.to_string()).into())
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

pub fn list(ctx: &Context, a: ImagesArgs) -> Result<()> {
    let store = ctx.store()?;
    let mut rows = Vec::new();
    for e in store.images()? {
        let l = load(&store, e)?;
        let size: u64 =
            l.manifest.layers.iter().map(|d| d.size).sum::<u64>() + l.manifest.config.size;
        let (repo, tag) = split_name(&l.entry.name);
        rows.push(serde_json::json!({
            "name": l.entry.name,
            "repository": repo,
            "tag": tag,
            "id": l.manifest.config.digest.to_string(),
            "digest": l.entry.manifest.digest.to_string(),
            "created": l.config.get("created").and_then(|c| c.as_str()).unwrap_or(""),
            "size": size,
        }));
    }
    if ctx.format == Format::Json {
        return print_json(&rows);
    }
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            let id = r["id"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("sha256:")[..12]
                .to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    println!(
        "{:<50} {:<20} {:<14} {:<22} {:>10}",
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
    );
    for r in rows {
        let id = &r["id"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("sha256:")[..12];
        let created: String = r["created"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(19)
            .collect();
        println!(
            "{:<50} {:<20} {:<14} {:<22} {:>10}",
            r["repository"].as_str().unwrap_or_default(),
            r["tag"].as_str().unwrap_or_default(),
            id,
            created,
            human(r["size"].as_u64().unwrap_or(0))
        );
    }
    Ok(())
}

fn split_name(name: &str) -> (String, String) {
    if let Some((n, d)) = name.split_once('@') {
        let (repo, _) = split_name(n);
        return (repo, d.chars().take(19).collect());
    }
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (name[..i].to_string(), name[i + 1..].to_string()),
        _ => (name.to_string(), "<none>".into()),
    }
}

pub fn inspect(ctx: &Context, a: InspectArgs) -> Result<()> {
    let store = ctx.store()?;
    let entries = resolve(&store, &a.image)?;
    let mut out = Vec::new();
    for e in entries {
        let l = load(&store, e)?;
        let names: Vec<String> = store
            .images()?
            .into_iter()
            .filter(|o| o.manifest.digest == l.entry.manifest.digest)
            .map(|o| o.name)
            .collect();
        out.push(serde_json::json!({
            "Id": l.manifest.config.digest.hex(),
            "Digest": l.entry.manifest.digest.to_string(),
            "Names": names,
            "MediaType": l.entry.manifest.media_type,
            "Source": l.entry.annotation(SOURCE_ANNOTATION),
            "Pulled": l.entry.annotation(PULLED_ANNOTATION),
            "IndexDigest": l.entry.annotation("dev.skiff.image.index.digest"),
            "Created": l.config.get("created"),
            "Architecture": l.config.get("architecture"),
            "Os": l.config.get("os"),
            "Variant": l.config.get("variant"),
            "Config": l.config.get("config"),
            "RootFS": l.config.get("rootfs"),
            "Layers": l.manifest.layers,
            "Size": l.manifest.layers.iter().map(|d| d.size).sum::<u64>(),
        }));
    }
    if ctx.format == Format::Text && out.len() == 1 {
        // podman prints a JSON array even in text mode; so do we.
    }
    print_json(&out)
}

pub fn tag(ctx: &Context, a: TagArgs) -> Result<()> {
    let store = ctx.store()?;
    let targets: Vec<ImageRef> = a
        .targets
        .iter()
        .map(|t| ImageRef::parse_local(t))
        .collect::<Result<_, _>>()?;
    let src = resolve(&store, &a.source)?;
    if src.len() > 1 {
        bail!(
            "{} matches several images; use a longer ID or a name",
            a.source
        );
    }
    let src = &src[0];
    for t in targets {
        let mut ann: BTreeMap<String, String> =
            src.manifest.annotations.clone().unwrap_or_default();
        ann.remove(skiff::store::REF_NAME);
        let mut desc = src.manifest.clone();
        desc.annotations = None;
        store.set_ref(&t.to_string(), desc, ann)?;
    }
    Ok(())
}

/// Blob gc, then the layer directories no image needs (removed inside the user namespace
/// that owns their files).
async fn collect(store: &Store) -> Result<skiff::store::GcReport> {
    // Pulls wait while the lock is held, so no layer they are about to name disappears.
    let (report, _gc) = store.gc_holding_lock()?;
    let unused = store.unused_layers()?;
    let mut paths = unused.clone();
    paths.extend(store.stale_mounts());
    skiff::unpack::child::remove_paths(&paths).await?;
    Ok(skiff::store::GcReport {
        removed_layers: unused.len(),
        ..report
    })
}

pub async fn rmi(ctx: &Context, a: RmiArgs) -> Result<()> {
    let store = ctx.store()?;
    let mut names = Vec::new();
    for input in &a.images {
        let (hits, by_name) = resolve_kind(&store, input)?;
        if !by_name && !a.force {
            // Given by ID: every name of it goes, but only when asked to.
            let all: Vec<String> = store
                .images()?
                .into_iter()
                .filter(|o| hits.iter().any(|h| h.manifest.digest == o.manifest.digest))
                .map(|o| o.name)
                .collect();
            if all.len() > 1 {
                bail!(
                    "image {input} has several names ({}); remove them by name or use --force",
                    all.join(", ")
                );
            }
            names.extend(all);
        } else if !by_name {
            names.extend(
                store
                    .images()?
                    .into_iter()
                    .filter(|o| hits.iter().any(|h| h.manifest.digest == o.manifest.digest))
                    .map(|o| o.name),
            );
        } else {
            names.extend(hits.into_iter().map(|h| h.name));
        }
    }
    for n in store.remove_refs(&names)? {
        println!("Untagged: {n}");
    }
    let report = collect(&store).await?;
    if report.removed_blobs + report.removed_layers > 0 {
        eprintln!(
            "Deleted {} blobs ({} bytes) and {} layer directories",
            report.removed_blobs, report.freed_bytes, report.removed_layers
        );
    }
    Ok(())
}

pub async fn prune(ctx: &Context) -> Result<()> {
    let report = collect(&ctx.store()?).await?;
    match ctx.format {
        Format::Json => print_json(&report),
        // Archive formats are refused for every command but save, before it runs.
        _ => {
            println!(
                "Removed {} blobs ({} bytes), {} layer directories and {} interrupted downloads",
                report.removed_blobs,
                report.freed_bytes,
                report.removed_layers,
                report.removed_ingests
            );
            Ok(())
        }
    }
}

pub fn fsck(ctx: &Context) -> Result<()> {
    let report = ctx.store()?.fsck()?;
    if ctx.format == Format::Json {
        print_json(&report)?;
    } else {
        println!(
            "checked {} blobs ({} bytes) and {} images; {} interrupted downloads pending cleanup",
            report.blobs_checked, report.bytes_checked, report.images_checked, report.stale_ingests
        );
        for p in &report.problems {
            println!("problem: {p}");
        }
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
