//! The GitLab Runner helper image from what this host has, without the network: which source
//! provides it (configured, the store, a prebuilt tarball, the registry), and the import of
//! the runner's prebuilt tarballs under the runner's names. Blocking (an unpacker process per
//! layer) and silent, so an async caller can run it through `spawn_blocking`.

use super::import::{ImportOptions, ImportReport, import_file};
use super::load::{LoadReport, load_file};
use super::{ArchiveError, Input};
use crate::helper::{self, HelperSpec, PrebuiltKind};
use crate::oci::manifest::PlatformSpec;
use crate::oci::reference::ImageRef;
use crate::store::Store;
use std::path::{Path, PathBuf};

/// What `resolve_source` is asked.
#[derive(Debug, Clone)]
pub struct HelperRequest {
    pub spec: HelperSpec,
    /// Directories searched before the runner's own.
    pub dirs: Vec<PathBuf>,
    /// The configured `[runners.docker] helper_image`, if any.
    pub configured: Option<String>,
    /// The pull policy of the registry fallback, as configured (`always`, `never`, a list).
    pub policy: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperSource {
    Configured,
    Store,
    Prebuilt { path: PathBuf, kind: PrebuiltKind },
    Registry,
}

impl HelperSource {
    pub fn name(&self) -> &'static str {
        match self {
            HelperSource::Configured => "configured",
            HelperSource::Store => "store",
            HelperSource::Prebuilt { .. } => "prebuilt",
            HelperSource::Registry => "registry",
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            HelperSource::Prebuilt { path, .. } => Some(path),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HelperResolution {
    pub reference: String,
    pub source: HelperSource,
    /// Why that source, in a sentence.
    pub why: String,
}

/// `reference:`, `source:` (with the tarball's path) and `why:` lines.
impl std::fmt::Display for HelperResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "reference: {}", self.reference)?;
        match self.source.path() {
            Some(p) => writeln!(f, "source: {} {}", self.source.name(), p.display())?,
            None => writeln!(f, "source: {}", self.source.name())?,
        }
        write!(f, "why: {}", self.why)
    }
}

impl serde::Serialize for HelperResolution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "reference": self.reference, "source": self.source.name(),
            "path": self.source.path(), "why": self.why
        })
        .serialize(s)
    }
}

/// The runner's order: configured `helper_image` -> the store -> a prebuilt tarball -> the
/// registry, unless the policy is `never`. Takes the store's root, not a `Store`: the store
/// is opened (and so created) only when it is consulted.
pub fn resolve_source(
    store_root: &Path,
    req: &HelperRequest,
) -> Result<HelperResolution, ArchiveError> {
    let default_ref = req.spec.reference()?;
    let dirs = helper::search_dirs(&req.dirs);
    if let Some(img) = &req.configured {
        return Ok(HelperResolution {
            reference: img.clone(),
            source: HelperSource::Configured,
            why: format!(
                "helper_image is configured (default would be {default_ref}); it is pulled with policy {}",
                req.policy
            ),
        });
    }
    let store = Store::open(store_root).map_err(|error| ArchiveError::OpenStore {
        root: store_root.to_path_buf(),
        error,
    })?;
    let (source, why) = if store.find(&default_ref)?.is_some() {
        (
            HelperSource::Store,
            "already in the store: no network request".to_string(),
        )
    } else if let Some((path, kind)) = helper::find_prebuilt(&dirs, &req.spec) {
        let how = match kind {
            PrebuiltKind::RootfsXz => {
                "imported under that name with the runner's ENTRYPOINT re-added"
            }
            PrebuiltKind::DockerArchiveZst => "a docker-archive, loaded and tagged with that name",
        };
        (
            HelperSource::Prebuilt { path, kind },
            format!("not in the store; a prebuilt tarball exists, {how}; no network request"),
        )
    } else if req.policy.split(',').all(|p| p.trim() == "never") {
        return Err(ArchiveError::HelperUnavailable {
            reference: default_ref,
            searched: dirs,
        });
    } else {
        (
            HelperSource::Registry,
            format!(
                "not in the store and no prebuilt {}.tar.xz found: it would be pulled (policy {})",
                req.spec.prebuilt_base(),
                req.policy
            ),
        )
    };
    Ok(HelperResolution {
        reference: default_ref,
        source,
        why,
    })
}

/// One prebuilt tarball, now in the store.
#[derive(Debug, Clone)]
pub struct ImportedHelper {
    /// The runner's name for it.
    pub reference: String,
    pub path: PathBuf,
    pub how: HelperImport,
}

#[derive(Debug, Clone)]
pub enum HelperImport {
    /// A docker-archive, loaded and tagged.
    Loaded(LoadReport),
    /// A root filesystem, imported with the runner's entrypoint.
    Imported(ImportReport),
}

impl std::fmt::Display for ImportedHelper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.how {
            HelperImport::Loaded(_) => "Loaded",
            HelperImport::Imported(_) => "Imported",
        };
        write!(f, "{how} {} from {}", self.reference, self.path.display())
    }
}

/// A loaded archive as its name and file; an imported tarball as its import report.
impl serde::Serialize for ImportedHelper {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.how {
            HelperImport::Loaded(_) => serde_json::json!({
                "name": self.reference, "source": self.path.to_string_lossy()
            })
            .serialize(s),
            HelperImport::Imported(report) => report.serialize(s),
        }
    }
}

/// Imports every prebuilt helper tarball in `dirs` (searched before the runner's own
/// directories) under the runner's names for `version` (or `revision`, before 16.8).
pub fn import_prebuilt(
    store: &Store,
    dirs: &[PathBuf],
    version: Option<&str>,
    revision: Option<&str>,
) -> Result<Vec<ImportedHelper>, ArchiveError> {
    import_prebuilt_each(store, dirs, version, revision, |_| {})
}

/// `import_prebuilt`, telling `each` about every tarball as soon as it is in the store.
pub fn import_prebuilt_each(
    store: &Store,
    dirs: &[PathBuf],
    version: Option<&str>,
    revision: Option<&str>,
    mut each: impl FnMut(&ImportedHelper),
) -> Result<Vec<ImportedHelper>, ArchiveError> {
    let dirs = helper::search_dirs(dirs);
    let found = helper::list_prebuilt(&dirs, version, revision);
    if found.is_empty() {
        return Err(ArchiveError::NoPrebuilt { searched: dirs });
    }
    let mut out = Vec::new();
    for (path, spec) in found {
        let reference = spec.reference()?;
        let name = ImageRef::parse(&reference).map_err(ArchiveError::BadName)?;
        let how = import_one(store, &path, &spec, name)?;
        let imported = ImportedHelper {
            reference,
            path,
            how,
        };
        each(&imported);
        out.push(imported);
    }
    Ok(out)
}

fn import_one(
    store: &Store,
    path: &Path,
    spec: &HelperSpec,
    name: ImageRef,
) -> Result<HelperImport, ArchiveError> {
    let input = Input::File(path.to_path_buf());
    let failed = |op, error| ArchiveError::Prebuilt {
        op,
        path: path.to_path_buf(),
        error: Box::new(error),
    };
    if input.name().ends_with(".docker.tar.zst") {
        // What the runner does: load the archive, then tag what it loaded.
        return load_file(store, &input, Some(&name), &PlatformSpec::host(), true)
            .map(HelperImport::Loaded)
            .map_err(|e| failed("loading", e));
    }
    // `docker export` tarballs lose the entrypoint; the concrete flavors never had one.
    let changes = if spec.flavor.starts_with("concrete") {
        vec![]
    } else {
        vec![helper::HELPER_ENTRYPOINT.to_string()]
    };
    let arch = match spec.arch.as_str() {
        "x86_64" => "amd64",
        other => other,
    };
    let imported = PlatformSpec::parse(&format!("linux/{arch}"))
        .map_err(ArchiveError::Platform)
        .and_then(|platform| {
            let opts = ImportOptions {
                name: Some(name),
                platform,
                changes,
                created: None,
                unpack: true,
            };
            import_file(store, &input, opts)
        });
    imported
        .map(HelperImport::Imported)
        .map_err(|e| failed("importing", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GitLab driver runs the import on a blocking thread of its runtime.
    #[test]
    fn the_import_can_move_to_a_blocking_thread() {
        fn sendable<T: Send + 'static>(_: &T) {}
        let store = Store::open(tempfile::tempdir().unwrap().path()).unwrap();
        let dirs: Vec<PathBuf> = vec![];
        let job = move || import_prebuilt(&store, &dirs, Some("17.9.0"), None);
        sendable(&job);
        fn sendable_result<T: Send + Sync + 'static>() {}
        sendable_result::<Result<Vec<ImportedHelper>, ArchiveError>>();
    }
}
