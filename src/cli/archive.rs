//! `skiff import|load|save` and `skiff helper resolve|import`: images from files, no network.
//! Flags in, reports out; the work is `skiff::archive`'s.

use super::{Context, Format, print_json};
use anyhow::Result;
use clap::{Args, Subcommand};
use skiff::archive::Input;
use skiff::archive::helper::{HelperRequest, ImportedHelper, import_prebuilt_each, resolve_source};
use skiff::archive::import::{ImportOptions, import_file, import_name};
use skiff::archive::load::load_file;
use skiff::helper::{self, HelperSpec};
use skiff::oci::manifest::PlatformSpec;
use skiff::oci::reference::ImageRef;
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
    /// Archive to write, or - for standard output (the default; never a terminal)
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Subcommand, Debug)]
// Each command's options are defined only when it is the one given: clap would otherwise
// build every command's at each start.
#[command(defer = true)]
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

pub fn import_cmd(ctx: &Context, a: ImportArgs) -> Result<()> {
    // Names are checked before anything is read or written.
    let name = a.reference.as_deref().map(import_name).transpose()?;
    let store = ctx.store()?;
    let opts = ImportOptions {
        name,
        platform: PlatformSpec::parse_or_host(a.platform.as_deref()).map_err(anyhow::Error::msg)?,
        changes: a.change,
        created: None,
        unpack: !a.no_unpack,
    };
    let report = import_file(&store, &Input::from_arg(&a.source), opts)?;
    match ctx.format {
        Format::Json => print_json(&report),
        _ => {
            if !a.quiet && report.name.is_some() {
                eprintln!("{report}");
            }
            outln!("sha256:{}", report.id.hex());
            Ok(())
        }
    }
}

pub fn helper_cmd(ctx: &Context, cmd: HelperCommand) -> Result<()> {
    match cmd {
        HelperCommand::Resolve(a) => resolve(ctx, a),
        HelperCommand::Import(a) => helper_import(ctx, a),
    }
}

fn resolve(ctx: &Context, a: HelperArgs) -> Result<()> {
    let req = HelperRequest {
        spec: HelperSpec {
            flavor: a.flavor,
            arch: helper::runner_arch(&a.arch),
            pwsh: a.pwsh,
            version: a.version,
            revision: a.revision,
        },
        dirs: a.dir,
        configured: a.helper_image,
        policy: a.policy,
    };
    let resolution = resolve_source(&ctx.root, &req)?;
    match ctx.format {
        Format::Json => print_json(&resolution)?,
        _ => outln!("{resolution}"),
    }
    Ok(())
}

fn helper_import(ctx: &Context, a: HelperArgs) -> Result<()> {
    let (version, revision) = (a.version.as_deref(), a.revision.as_deref());
    let told = |h: &ImportedHelper| eprintln!("{h}");
    let imported = import_prebuilt_each(&ctx.store()?, &a.dir, version, revision, told)?;
    match ctx.format {
        Format::Json => print_json(&imported),
        _ => Ok(()),
    }
}

pub fn load_cmd(ctx: &Context, a: LoadArgs) -> Result<()> {
    let tag = a.tag.as_deref().map(ImageRef::parse_local).transpose()?;
    let store = ctx.store()?;
    let report = load_file(
        &store,
        &Input::from_arg(&a.input),
        tag.as_ref(),
        &PlatformSpec::host(),
        !a.no_unpack,
    )?;
    if ctx.format == Format::Json {
        return print_json(&report);
    }
    for img in &report.images {
        if img.names.is_empty() {
            outln!("Loaded image ID: sha256:{}", img.id.hex());
        }
        for n in &img.names {
            outln!("Loaded image: {n}");
        }
    }
    Ok(())
}

pub fn save_cmd(ctx: &Context, a: SaveArgs) -> Result<()> {
    use skiff::archive::save::{ArchiveFormat, save, select};
    // The global --format: docker-archive (default) or oci-archive, as podman save takes it.
    let format = match ctx.format {
        Format::OciArchive => ArchiveFormat::OciArchive,
        _ => ArchiveFormat::DockerArchive,
    };
    let to_stdout = a.output.as_os_str() == "-";
    // As docker and podman: a tar is no sight for a terminal.
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        anyhow::bail!("refusing to write an archive to a terminal: give -o FILE or redirect");
    }
    let store = ctx.store()?;
    let images = select(&store, &a.images)?;
    if to_stdout {
        // Standard output is line-buffered: a tar goes through a buffer of its own.
        let stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        skiff::archive::save::save_to(&store, &images, format, stdout, Path::new("stdout"))?;
        eprintln!("Saved {} image(s) to standard output", images.len());
    } else {
        save(&store, &images, format, &a.output)?;
        eprintln!("Saved {} image(s) to {}", images.len(), a.output.display());
    }
    Ok(())
}
