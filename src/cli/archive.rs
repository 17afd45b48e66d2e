//! `skiff import` and `skiff helper resolve|import`: images from files, no network.

use super::{Context, Format, platform_or_host, print_json};
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use skiff::archive::import::{ImportOptions, import};
use skiff::helper::{self, HelperSpec, PrebuiltKind};
use skiff::oci::digest::{Algorithm, Digest, Digester};
use skiff::oci::reference::ImageRef;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Tarball of a root filesystem (.tar, .tar.gz, .tar.xz, .tar.zst), or - for stdin
    pub source: String,
    /// Name to store, exactly as given (a short name becomes localhost/NAME; no tag: latest)
    pub reference: Option<String>,
    /// Dockerfile instruction to apply: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR
    #[arg(long, short)]
    pub change: Vec<String>,
    /// OS/ARCH[/VARIANT] recorded in the config [default: this host]
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(long)]
    pub no_unpack: bool,
    /// Print only the image ID
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// docker-archive or oci-archive (plain, .gz, .xz, .zst), or - for stdin
    #[arg(long, short, default_value = "-")]
    pub input: String,
    /// Add this name to every loaded image (as GitLab Runner tags a loaded helper)
    #[arg(long)]
    pub tag: Option<String>,
    #[arg(long)]
    pub no_unpack: bool,
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Archive to write
    #[arg(long, short)]
    pub output: PathBuf,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum HelperCommand {
    /// Print the helper image reference, the source that would provide it, and why
    Resolve(HelperArgs),
    /// Import every prebuilt helper tarball found, under the runner's names
    Import(HelperArgs),
}

#[derive(Args, Debug, Clone)]
pub struct HelperArgs {
    /// GitLab Runner version (tags v<X.Y.Z> from 16.8)
    #[arg(long)]
    pub version: Option<String>,
    /// Runner revision, for runners before 16.8 (tags <arch>-<8 hex>)
    #[arg(long)]
    pub revision: Option<String>,
    /// Helper flavor (alpine is the default and never written into the tag)
    #[arg(long, default_value = "alpine")]
    pub flavor: String,
    /// Architecture as uname -m or Docker says it [default: this host]
    #[arg(long, default_value = "")]
    pub arch: String,
    /// The runner's shell is pwsh
    #[arg(long)]
    pub pwsh: bool,
    /// Directory with prebuilt-*.tar.xz files, searched before the runner's own
    #[arg(long)]
    pub dir: Vec<PathBuf>,
    /// The configured [runners.docker] helper_image, if any
    #[arg(long)]
    pub helper_image: Option<String>,
    /// Pull policy for the registry fallback
    #[arg(long, default_value = "always")]
    pub policy: String,
}

fn sha256_file(path: &Path) -> Result<Digest> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut d = Digester::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(d.finish());
        }
        d.update(&buf[..n]);
    }
}

fn import_file(
    ctx: &Context,
    source: &str,
    name: Option<ImageRef>,
    changes: Vec<String>,
    platform: Option<&str>,
    unpack: bool,
) -> Result<skiff::archive::import::ImportReport> {
    let store = ctx.store()?;
    let mut opts = ImportOptions {
        name,
        platform: platform_or_host(platform)?,
        changes,
        created: 0,
        unpack,
    };
    if source == "-" {
        opts.created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        return Ok(import(
            &store,
            "stdin",
            std::io::stdin().lock(),
            None,
            &opts,
        )?);
    }
    let path = Path::new(source);
    let meta = std::fs::metadata(path).with_context(|| format!("reading {source}"))?;
    // As podman does for files: created = the file's mtime, so one file gives one image ID.
    opts.created = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let digest = sha256_file(path)?;
    let file = std::fs::File::open(path).with_context(|| format!("opening {source}"))?;
    Ok(import(&store, source, file, Some(&digest), &opts)?)
}

pub fn import_cmd(ctx: &Context, a: ImportArgs) -> Result<()> {
    // Names are checked before anything is read or written.
    let name = match &a.reference {
        Some(r) => {
            let parsed = ImageRef::parse_local(r)?;
            if parsed.digest.is_some() {
                bail!("{r}: an imported image is named by a tag, not a digest");
            }
            Some(parsed)
        }
        None => None,
    };
    let report = import_file(
        ctx,
        &a.source,
        name,
        a.change,
        a.platform.as_deref(),
        !a.no_unpack,
    )?;
    match ctx.format {
        Format::Json => print_json(&report)?,
        _ => {
            if !a.quiet {
                if let Some(n) = &report.name {
                    eprintln!(
                        "Imported {n}{}",
                        if report.reused {
                            " (layer reused from an earlier import)"
                        } else {
                            ""
                        }
                    );
                }
            }
            println!("sha256:{}", report.id.hex());
        }
    }
    Ok(())
}

fn spec(a: &HelperArgs) -> HelperSpec {
    HelperSpec {
        flavor: a.flavor.clone(),
        arch: helper::runner_arch(&a.arch),
        pwsh: a.pwsh,
        version: a.version.clone(),
        revision: a.revision.clone(),
    }
}

pub fn helper_cmd(ctx: &Context, cmd: HelperCommand) -> Result<()> {
    match cmd {
        HelperCommand::Resolve(a) => resolve(ctx, a),
        HelperCommand::Import(a) => helper_import(ctx, a),
    }
}

fn resolve(ctx: &Context, a: HelperArgs) -> Result<()> {
    let s = spec(&a);
    let default_ref = s.reference().map_err(anyhow::Error::msg)?;
    let dirs = helper::search_dirs(&a.dir);
    let (reference, source, path, why): (String, &str, Option<PathBuf>, String) = if let Some(img) =
        &a.helper_image
    {
        (
            img.clone(),
            "configured",
            None,
            format!(
                "helper_image is configured (default would be {default_ref}); it is pulled with policy {}",
                a.policy
            ),
        )
    } else if ctx.store()?.find(&default_ref)?.is_some() {
        (
            default_ref,
            "store",
            None,
            "already in the store: no network request".into(),
        )
    } else if let Some((p, kind)) = helper::find_prebuilt(&dirs, &s) {
        let how = match kind {
            PrebuiltKind::RootfsXz => {
                "imported under that name with the runner's ENTRYPOINT re-added"
            }
            PrebuiltKind::DockerArchiveZst => "a docker-archive, loaded and tagged with that name",
        };
        (
            default_ref,
            "prebuilt",
            Some(p),
            format!("not in the store; a prebuilt tarball exists, {how}; no network request"),
        )
    } else if a.policy.split(',').all(|p| p.trim() == "never") {
        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        bail!(
            "{default_ref}: not in the store, no prebuilt tarball (searched {}), and the pull policy is never",
            searched.join(", ")
        )
    } else {
        (
            default_ref,
            "registry",
            None,
            format!(
                "not in the store and no prebuilt {}.tar.xz found: it would be pulled (policy {})",
                s.prebuilt_base(),
                a.policy
            ),
        )
    };
    if ctx.format == Format::Json {
        return print_json(
            &serde_json::json!({"reference": reference, "source": source, "path": path, "why": why}),
        );
    }
    println!("reference: {reference}");
    match &path {
        Some(p) => println!("source: {source} {}", p.display()),
        None => println!("source: {source}"),
    }
    println!("why: {why}");
    Ok(())
}

fn helper_import(ctx: &Context, a: HelperArgs) -> Result<()> {
    let dirs = helper::search_dirs(&a.dir);
    let found = helper::list_prebuilt(&dirs, a.version.as_deref(), a.revision.as_deref());
    if found.is_empty() {
        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        bail!(
            "no prebuilt-<flavor>-<arch>.tar.xz in {}",
            searched.join(", ")
        );
    }
    let mut out = Vec::new();
    for (path, s) in found {
        let reference = s.reference().map_err(anyhow::Error::msg)?;
        let name = ImageRef::parse(&reference)?;
        let changes = if s.flavor.starts_with("concrete") {
            vec![]
        } else {
            vec![helper::HELPER_ENTRYPOINT.to_string()]
        };
        let platform = format!(
            "linux/{}",
            match s.arch.as_str() {
                "x86_64" => "amd64",
                other => other,
            }
        );
        let source = path.to_string_lossy().to_string();
        if source.ends_with(".docker.tar.zst") {
            // What the runner does: load the archive, then tag what it loaded.
            load_file(ctx, &source, Some(name), true)
                .with_context(|| format!("loading {source}"))?;
            eprintln!("Loaded {reference} from {}", path.display());
            out.push(serde_json::json!({"name": reference, "source": source}));
            continue;
        }
        let report = import_file(ctx, &source, Some(name), changes, Some(&platform), true)
            .with_context(|| format!("importing {source}"))?;
        eprintln!("Imported {reference} from {}", path.display());
        out.push(serde_json::to_value(&report)?);
    }
    if ctx.format == Format::Json {
        print_json(&out)?;
    }
    Ok(())
}

pub fn load_file(
    ctx: &Context,
    input: &str,
    tag: Option<ImageRef>,
    unpack: bool,
) -> Result<skiff::archive::load::LoadReport> {
    let store = ctx.store()?;
    let platform = platform_or_host(None)?;
    let report = if input == "-" {
        skiff::archive::load::load(
            &store,
            "stdin",
            std::io::stdin().lock(),
            tag.as_ref(),
            &platform,
        )?
    } else {
        let f = std::fs::File::open(input).with_context(|| format!("opening {input}"))?;
        skiff::archive::load::load(&store, input, f, tag.as_ref(), &platform)?
    };
    if unpack {
        for img in &report.images {
            let entry = store
                .images()?
                .into_iter()
                .find(|e| e.manifest.digest == img.manifest_digest)
                .context("a loaded image vanished")?;
            skiff::archive::import::unpack_image_layers(&store, &entry)?;
        }
    }
    Ok(report)
}

pub fn load_cmd(ctx: &Context, a: LoadArgs) -> Result<()> {
    let tag = a.tag.as_deref().map(ImageRef::parse_local).transpose()?;
    let report = load_file(ctx, &a.input, tag, !a.no_unpack)?;
    if ctx.format == Format::Json {
        return print_json(&report);
    }
    for img in &report.images {
        if img.names.is_empty() {
            println!("Loaded image ID: sha256:{}", img.id.hex());
        }
        for n in &img.names {
            println!("Loaded image: {n}");
        }
    }
    Ok(())
}

pub fn save_cmd(ctx: &Context, a: SaveArgs) -> Result<()> {
    use skiff::archive::save::{ArchiveFormat, save};
    // The global --format: docker-archive (default) or oci-archive, as podman save takes it.
    let format = match ctx.format {
        Format::OciArchive => ArchiveFormat::OciArchive,
        _ => ArchiveFormat::DockerArchive,
    };
    let store = ctx.store()?;
    let all = store.images()?;
    let mut images = Vec::new();
    for input in &a.images {
        let (mut hits, by_name) = super::images::resolve_kind(&store, input)?;
        if hits.len() > 1 {
            bail!("{input} matches several images; use a longer ID or a name");
        }
        let entry = hits.remove(0);
        // Given by name: that name; given by ID: every name the image has.
        let names: Vec<String> = if by_name {
            vec![entry.name.clone()]
        } else {
            all.iter()
                .filter(|e| e.manifest.digest == entry.manifest.digest && !e.name.is_empty())
                .map(|e| e.name.clone())
                .collect()
        };
        images.push((entry, names));
    }
    save(&store, &images, format, &a.output)?;
    eprintln!("Saved {} image(s) to {}", images.len(), a.output.display());
    Ok(())
}
